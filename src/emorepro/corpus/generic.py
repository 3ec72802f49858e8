"""A corpus given as a CSV manifest (for corpora we cannot parse natively).

The CSV has the manifest columns of :mod:`emorepro.corpus.iemocap`; only ``utt_id``,
``wav`` and ``label_raw`` are required.  Missing optional columns are filled (speaker
``""`` means the corpus has no speaker labels, which the ``random5`` fold protocol handles).
Relative wav paths are resolved against the CSV's directory.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..io import InputError
from .iemocap import MANIFEST_COLUMNS, LabelPolicy, wav_info

REQUIRED = ("utt_id", "wav", "label_raw")


def ingest_generic(csv_path: str | os.PathLike, policy: LabelPolicy, *, sample_rate: int = 16_000):
    import pandas as pd

    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise InputError(f"{csv_path}: manifest CSV does not exist (config: corpora.<name>.root)")
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"{csv_path}:1: missing required column(s) {missing}")
    dup = df["utt_id"].duplicated()
    if dup.any():
        i = int(dup.idxmax())
        raise InputError(f"{csv_path}:{i + 2}: duplicate utterance id {df['utt_id'][i]!r}")
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        where = f"{csv_path}:{i + 2}"  # +1 header, +1 one-based
        wav = Path(r["wav"])
        if not wav.is_absolute():
            wav = csv_path.parent / wav
        duration, sr = wav_info(wav, sample_rate)
        row = {c: r.get(c, "") for c in MANIFEST_COLUMNS}
        row.update(wav=os.fspath(wav), duration=round(duration, 6), sample_rate=sr,
                   label=policy.apply(r["label_raw"], where))
        rows.append(row)
    out = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for k in ("valence", "arousal", "dominance"):
        v = pd.to_numeric(out[k], errors="coerce")
        out[k] = v
        out[f"{k}_norm"] = (v - 1.0) / 4.0
    for k in ("start", "end", "n_ratings"):
        out[k] = pd.to_numeric(out[k], errors="coerce")
    return out.sort_values("utt_id", kind="stable").reset_index(drop=True)
