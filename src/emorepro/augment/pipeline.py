"""The two augmentation steps: plan + back-translate, then speak; both write atomically.

``back_translate_corpus`` reads the source manifest, plans the copies
(:func:`emorepro.augment.copies.plan_copies`) and writes ``texts.csv``: one row per copy with
the text it will speak.  ``synthesize_corpus`` speaks every row and writes the augmented corpus
as a directory it owns: ``corpus.csv`` (generic CSV, ingested like any corpus), ``copies.csv``
(the sidecar mapping every copy to its source), ``wav/`` and ``augment_summary.json``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..io import InputError, write_csv, write_json
from .backtranslate import BackTranslationConfig, back_translate
from .copies import PLAN_COLUMNS, plan_copies
from .tts import TTSConfig, make_tts

log = logging.getLogger(__name__)

# Spoken when a transcript is empty once bracketed non-speech is removed (e.g. "[LAUGHTER]"): a TTS
# needs text, and the copy must exist for every fold to find one.  Flagged in the `note` column.
EMPTY_TEXT_PLACEHOLDER = "hmm"
TEXT_COLUMNS = PLAN_COLUMNS + ["text", "note"]
CORPUS_COLUMNS = ["utt_id", "wav", "label_raw", "speaker", "gender", "session", "mode", "transcript",
                  "valence", "arousal", "dominance"]
SUMMARY = "augment_summary.json"


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def back_translate_corpus(manifest_csv: str, out_csv: str, *, seed: int, back_translation: Mapping[str, Any],
                          threads: int = 1, key: str = "augment", progress: bool = True) -> dict:
    """Plan the copies of ``manifest_csv``'s labelled utterances and give each its text (``texts.csv``).

    ``threads``: torch threads of the ``nllb`` backend."""
    import pandas as pd

    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    plan = plan_copies(manifest, seed=seed, where=str(manifest_csv))
    cfg = BackTranslationConfig.from_dict(dict(back_translation), f"{key}.back_translation")
    if cfg.backend == "nllb":
        _torch_threads(threads)
    if cfg.per_copy:
        keys, texts = list(plan["aug_id"]), list(plan["text_source"])
    else:  # one text per source, shared by its copies (the authors' single AugmentedText column)
        first = plan.drop_duplicates("source_utt")
        keys, texts = list(first["source_utt"]), list(first["text_source"])
    out, info = back_translate(texts, keys, cfg, seed=seed, progress=progress, key=f"{key}.back_translation")
    by_key = dict(zip(keys, out))
    plan["text"] = [by_key[k] for k in (plan["aug_id"] if cfg.per_copy else plan["source_utt"])]
    empty = plan["text"].str.strip() == ""
    plan["note"] = ""
    plan.loc[empty, "note"] = f"empty transcript: spoken as {EMPTY_TEXT_PLACEHOLDER!r}"
    plan.loc[empty, "text"] = EMPTY_TEXT_PLACEHOLDER
    write_csv(out_csv, plan[TEXT_COLUMNS])
    info.update(n_copies=len(plan), n_sources=int(plan["source_utt"].nunique()),
                copies_per_source=int(plan.groupby("source_utt").size().max()), per_copy=cfg.per_copy,
                n_empty_text=int(empty.sum()), n_label_mismatch=int((~plan["label_match"].astype(bool)).sum()))
    log.info("%d copies of %d utterances planned", info["n_copies"], info["n_sources"])
    return info


def _owned(out_dir: Path) -> bool:
    """A directory this step may replace: absent, empty, or one it wrote (it holds the summary)."""
    return not out_dir.exists() or not any(out_dir.iterdir()) or (out_dir / SUMMARY).is_file()


def synthesize_corpus(texts_csv: str, manifest_csv: str, out_csv: str, *, seed: int, tts: Mapping[str, Any],
                      sample_rate: int = 16_000, threads: int = 1, key: str = "augment", progress: bool = True) -> dict:
    """Speak every copy of ``texts_csv``; write the augmented corpus into ``out_csv``'s directory.

    The directory (``corpus.csv``, ``copies.csv``, ``wav/``, :data:`SUMMARY`) is built next to the
    target and renamed into place when complete; an existing directory is replaced only if this
    step wrote it.  ``threads``: parallel espeak-ng processes, or torch threads of ``yourtts``.
    """
    import pandas as pd
    import soundfile as sf
    from tqdm.auto import tqdm

    out_dir = Path(out_csv).parent
    if Path(out_csv).name != "corpus.csv":
        raise ValueError("synthesize_corpus: the output must be <dir>/corpus.csv")
    if not _owned(out_dir):
        raise InputError(f"{out_dir}: exists, is not empty and was not written by the augmentation (no {SUMMARY}); "
                         "refusing to replace it")
    plan = pd.read_csv(texts_csv, keep_default_na=False)
    missing = [c for c in TEXT_COLUMNS if c not in plan.columns]
    if missing:
        raise InputError(f"{texts_csv}:1: missing column(s) {missing}")
    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    cfg = TTSConfig.from_dict(dict(tts), f"{key}.tts")
    speakers = dict(zip(plan["target_speaker"], plan["target_gender"]))
    if cfg.backend == "yourtts":
        _torch_threads(threads)
    backend = make_tts(cfg, speakers, seed=seed, sample_rate=sample_rate, key=f"{key}.tts")
    backend_info = backend.prepare(manifest, plan)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        stage, scratch = tmp / "tree", tmp / "scratch"
        (stage / "wav").mkdir(parents=True)
        scratch.mkdir()
        rows = plan.to_dict("records")

        def render(r: dict) -> float:
            x = backend.speak(r, r["text"], scratch)
            sf.write(stage / "wav" / f"{r['aug_id']}.wav", x, sample_rate, subtype="PCM_16")
            return round(len(x) / sample_rate, 6)

        bar = {"total": len(rows), "desc": f"speaking copies ({cfg.backend})", "unit": "utt", "disable": not progress,
               "mininterval": 5}
        if cfg.backend == "espeak" and threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as pool:
                durations = list(tqdm(pool.map(render, rows), **bar))
        else:
            durations = [render(r) for r in tqdm(rows, **bar)]
        plan["wav"] = [f"wav/{a}.wav" for a in plan["aug_id"]]
        plan["duration"] = durations
        plan["tts_backend"] = cfg.backend
        if cfg.backend == "espeak":
            plan["voice"] = [backend.voices[s] for s in plan["target_speaker"]]
        corpus = pd.DataFrame({
            "utt_id": plan["aug_id"], "wav": plan["wav"], "label_raw": plan["label"],
            "speaker": plan["target_speaker"], "gender": plan["target_gender"], "session": plan["source_session"],
            "mode": plan["mode"], "transcript": plan["text"], "valence": plan["valence"],
            "arousal": plan["arousal"], "dominance": plan["dominance"]}, columns=CORPUS_COLUMNS)
        write_csv(stage / "corpus.csv", corpus)
        write_csv(stage / "copies.csv", plan)
        summary = {"n_copies": len(plan), "n_sources": int(plan["source_utt"].nunique()), "seed": seed,
                   "tts": {"backend": cfg.backend, **backend_info}, "sample_rate": sample_rate,
                   "seconds_of_audio": round(float(sum(durations)), 3),
                   "labels": {k: int(v) for k, v in sorted(plan["label"].value_counts().items())}}
        write_json(stage / SUMMARY, summary)
        if out_dir.exists():
            old = tmp / "old"
            os.replace(out_dir, old)  # our own previous tree (checked above), removed with tmp
        os.replace(stage, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%d copies spoken (%s, %.0f s of audio) into %s", len(plan), cfg.backend, summary["seconds_of_audio"],
             out_dir)
    return summary
