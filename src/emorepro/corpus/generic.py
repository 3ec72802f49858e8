"""A corpus given as a CSV manifest (for corpora we cannot parse natively).

The CSV has the manifest columns of :mod:`emorepro.corpus.iemocap`; only ``utt_id``,
``wav`` and ``label_raw`` are required.  Missing optional columns are filled (speaker
``""`` means the corpus has no speaker labels, which the ``random5`` fold protocol handles).
Relative wav paths are resolved against the CSV's directory.  The CSV is decoded strictly
(``encoding``, UTF-8 by default: a byte that does not decode is an error naming the line);
``start``/``end``, when given, must be ordered and match the wav's length, and ratings follow
:func:`emorepro.corpus.iemocap.normalise_ratings`.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from ..io import InputError
from .iemocap import (
    MANIFEST_COLUMNS,
    LabelPolicy,
    check_duration,
    check_segment,
    normalise_ratings,
    read_text_lines,
    wav_info,
)

REQUIRED = ("utt_id", "wav", "label_raw")


def ingest_generic(csv_path: str | os.PathLike, policy: LabelPolicy, *, sample_rate: int = 16_000,
                   encoding: str = "utf-8"):
    import pandas as pd

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: manifest CSV does not exist" + (" (it is a directory)" if csv_path.is_dir() else "")
                         + " (config: corpora.<name>.root)")
    text = "\n".join(line for _, line in read_text_lines(csv_path, encoding))
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{csv_path}: not a readable CSV ({str(e).strip()})") from None
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
        if r.get("start", "") != "" and r.get("end", "") != "":
            try:
                start, end = float(r["start"]), float(r["end"])
            except ValueError:
                raise InputError(f"{where}: start/end must be numbers, got {r['start']!r} / {r['end']!r}") from None
            check_segment(start, end, where)
            check_duration(wav, duration, start, end, where)
        row = {c: r.get(c, "") for c in MANIFEST_COLUMNS}
        row.update(wav=os.fspath(wav), duration=round(duration, 6), sample_rate=sr,
                   label=policy.apply(r["label_raw"], where))
        rows.append(row)
    out = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for k in ("valence", "arousal", "dominance"):
        v = pd.to_numeric(out[k], errors="coerce")
        bad = v.isna() & (out[k].astype(str).str.strip() != "")
        if bad.any():
            i = int(bad.idxmax())
            raise InputError(f"{csv_path}: column {k}: {out[k][i]!r} is not a number (utterance {out['utt_id'][i]!r})")
        out[k] = v
    notes = {"ratings_outside_scale": normalise_ratings(out, csv_path)}
    for k in ("start", "end", "n_ratings"):
        out[k] = pd.to_numeric(out[k], errors="coerce")
    out = out.sort_values("utt_id", kind="stable").reset_index(drop=True)
    out.attrs["ingest_notes"] = notes
    return out
