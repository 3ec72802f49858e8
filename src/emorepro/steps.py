"""One function per pipeline step: what a Snakemake script or the CLI calls.

Each step takes plain paths and values (never the Snakemake config), does its work through
the library modules, writes its outputs atomically, and records a provenance sidecar with
:func:`emorepro.provenance.write_provenance`.  Scripts in ``workflow/scripts/`` only
unpack ``snakemake.input/output/params/log`` and call one of these.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .io import InputError, write_csv, write_json
from .provenance import now, write_provenance

log = logging.getLogger("emorepro")


def log_to(path: str | None, inputs: Sequence = ()) -> None:
    """Send this process's logging (and warnings, tqdm via stderr) to a Snakemake log file.

    The log ends with the job's wall, CPU and start-up times (:mod:`emorepro.jobstats`; start-up ends
    when the job first reads one of ``inputs``, the rule's inputs)."""
    from .jobstats import install

    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "a", buffering=1)
    install(inputs)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


def job_done() -> None:
    """The last line of every workflow script: end the job's process without CPython's slow finalization
    (:func:`emorepro.jobstats.exit_now`)."""
    from .jobstats import exit_now

    exit_now()


def _policy(label_map: Mapping[str, str], drop_labels: Sequence[str]):
    from .corpus.iemocap import LabelPolicy

    return LabelPolicy(dict(label_map), frozenset(drop_labels))


def synth_corpus(out_dir: str, params: Mapping[str, Any]) -> None:
    """Generate the demo IEMOCAP-layout corpus under ``out_dir``."""
    from .corpus.synth import SynthConfig, synthesize_iemocap

    started = now()
    cfg = SynthConfig(**{k: (tuple(v) if k == "sessions" else v) for k, v in params.items()})
    summary = synthesize_iemocap(out_dir, cfg, overwrite=True)  # the rule owns out_dir
    log.info("synthesised %s utterances into %s", summary["n_utterances"], out_dir)
    write_provenance(Path(out_dir) / "synth_summary.json", rule="synth_corpus", params=dict(params),
                     inputs=None, outputs=[Path(out_dir) / "synth_summary.json"], started=started,
                     seed=cfg.seed, extra={"note": "raw files are hashed by the ingest step's sidecar"})


def synth_spon_corpus(out_csv: str, params: Mapping[str, Any]) -> None:
    """Generate the demo spontaneous telephone-style corpus as a generic CSV corpus at ``out_csv``."""
    from .corpus.synth_spon import SponSynthConfig, synthesize_spon

    started = now()
    cfg = SponSynthConfig(**dict(params))
    summary = synthesize_spon(out_csv, cfg)
    log.info("synthesised %s utterances into %s", summary["n_utterances"], out_csv)
    write_provenance(out_csv, rule="synth_corpus", params=dict(params), inputs=None, outputs=[out_csv],
                     started=started, seed=cfg.seed, extra={"summary": summary,
                                                            "note": "wav files are hashed by the ingest step's sidecar"})


def union_corpus(manifests: Mapping[str, str], styles: Mapping[str, str | None], out_csv: str) -> None:
    """Stack member manifests (``member -> manifest.csv``) into a union corpus's manifest."""
    import pandas as pd

    from .corpus.union import union_manifest

    started = now()
    df = union_manifest({m: pd.read_csv(p, keep_default_na=False) for m, p in manifests.items()}, styles)
    write_csv(out_csv, df)
    log.info("union of %s: %d utterances", list(manifests), len(df))
    write_provenance(out_csv, rule="union_corpus", params={"members": list(manifests), "styles": dict(styles)},
                     inputs={f"manifest_{m}": p for m, p in manifests.items()}, outputs=[out_csv], started=started)


def union_folds(fold_csvs: Mapping[str, str], out_csv: str, *, n_folds: int) -> None:
    """Fold k of a union corpus = fold k of every member (``member -> fold file``)."""
    import pandas as pd

    from .corpus.union import union_folds as _union

    started = now()
    table = _union({m: pd.read_csv(p) for m, p in fold_csvs.items()}, n_folds)
    write_csv(out_csv, table)
    write_provenance(out_csv, rule="folds", params={"scheme": "union", "n_folds": n_folds, "members": list(fold_csvs)},
                     inputs={f"folds_{m}": p for m, p in fold_csvs.items()}, outputs=[out_csv], started=started)


def ingest(root: str, out_csv: str, *, fmt: str, label_map: Mapping[str, str], drop_labels: Sequence[str],
           sample_rate: int = 16_000, expected_counts: Mapping | None = None) -> None:
    """Parse a corpus (``fmt`` = ``iemocap`` or ``generic_csv``) into the manifest CSV."""
    from .corpus.generic import ingest_generic
    from .corpus.iemocap import ingest_iemocap

    started = now()
    policy = _policy(label_map, drop_labels)
    if fmt == "iemocap":
        df = ingest_iemocap(root, policy, sample_rate=sample_rate, expected_counts=expected_counts)
        raw = sorted({*df["wav"], *(str(p) for p in Path(root).glob("Session*/dialog/EmoEvaluation/*.txt")),
                      *(str(p) for p in Path(root).glob("Session*/dialog/transcriptions/*.txt"))})
    elif fmt == "generic_csv":
        df = ingest_generic(root, policy, sample_rate=sample_rate)
        raw = [root, *df["wav"]]
    else:
        raise InputError(f"config: corpora.<name>.format: unknown {fmt!r} (iemocap, generic_csv)")
    write_csv(out_csv, df)
    kept = df[df["label"] != ""]
    log.info("%d utterances, %d with a class label: %s", len(df), len(kept), kept["label"].value_counts().to_dict())
    write_provenance(out_csv, rule="ingest", params={"root": root, "format": fmt, "label_map": dict(label_map),
                     "drop_labels": list(drop_labels), "sample_rate": sample_rate,
                     "expected_counts": expected_counts}, inputs={"raw": raw}, outputs=[out_csv], started=started)


def make_folds(manifest_csv: str, out_csv: str, *, scheme: str, val_policy: str, seed: int = 0) -> None:
    import pandas as pd

    from . import folds as F

    started = now()
    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    table = F.make_folds(manifest, scheme, val_policy, seed=seed)
    F.check_folds(table, manifest[manifest["label"] != ""])
    write_csv(out_csv, table)
    write_provenance(out_csv, rule="folds", params={"scheme": scheme, "val_policy": val_policy}, seed=seed,
                     inputs={"manifest": manifest_csv}, outputs=[out_csv], started=started)


def extract_features(manifest_csv: str, out_manifest: str, *, name: str, spec: Mapping[str, Any],
                     seed: int = 0, device: str | None = None, options: Mapping[str, Any] | None = None) -> None:
    from .encoders.base import EncoderSpec
    from .features.cache import extract_to_cache

    started = now()
    out_dir = Path(out_manifest).parent
    es = EncoderSpec.from_dict(name, dict(spec))
    extract_to_cache(manifest_csv, es, str(out_dir), seed=seed, device=device, **dict(options or {}))
    inputs: dict[str, Any] = {"manifest": manifest_csv}
    if es.checkpoint and Path(es.checkpoint).is_dir():
        inputs["checkpoint"] = es.checkpoint
    write_provenance(out_manifest, rule="extract_features", params={"encoder": name, **dict(spec)}, seed=seed,
                     inputs=inputs, outputs=[out_manifest], started=started,
                     extra={"note": "shard hashes are in the cache manifest (the output)"})


def train(*, manifest_csv: str, folds_csv: str, caches: Mapping[str, Any], outputs: Mapping[str, str], fold: int,
          seed: int, classes: Sequence[str], model: str, model_params: Mapping, train_params: Mapping,
          run_id: Mapping, threads: int = 1) -> None:
    """Train one fold and seed; ``caches`` maps a role (audio, text) to a cache's manifest.json
    (or to a list of them: a union corpus reads its members' caches).  ``outputs``: the rule's declared
    ``predictions``, ``log_csv``, ``model`` and ``provenance`` (the run directory's sidecar)."""
    from .provenance import sidecar_path
    from .train import run_training

    started = now()
    out = Path(outputs["provenance"]).parent
    if sidecar_path(out) != Path(outputs["provenance"]):
        raise ValueError(f"outputs: provenance must be the run directory's sidecar {sidecar_path(out)}")
    files = {k: outputs[k] for k in ("predictions", "log_csv", "model")}
    caches = {role: (m if isinstance(m, (str, os.PathLike)) else [str(x) for x in m]) for role, m in caches.items()}
    summary = run_training(manifest_csv=manifest_csv, folds_csv=folds_csv,
                           caches={role: (str(Path(m).parent) if isinstance(m, (str, os.PathLike))
                                          else [str(Path(x).parent) for x in m]) for role, m in caches.items()},
                           fold=fold, seed=seed, classes=classes, model=model, model_params=dict(model_params),
                           train=dict(train_params), out_dir=str(out), threads=threads, outputs=files)
    write_provenance(out, rule="train", seed=seed,
                     params={**dict(run_id), "fold": fold, "classes": list(classes), "model": model,
                             "model_params": dict(model_params), "train": dict(train_params), "threads": threads},
                     inputs={"manifest": manifest_csv, "folds": folds_csv,
                             **{f"feature_cache_{role}": m for role, m in caches.items()}},
                     outputs=list(files.values()), started=started, extra={"summary": summary})


def score(pred_csv: str, out_json: str, *, classes: Sequence[str], fold: int, seed: int,
          corpus: str | None = None) -> None:
    """Test-split metrics; per corpus (``by_corpus``) from the predictions' ``corpus`` column, else ``corpus``."""
    from .metrics import score_predictions

    started = now()
    m = score_predictions(pred_csv, classes, split="test", corpus=corpus)
    m.update(fold=fold, seed=seed)
    write_json(out_json, m)
    write_provenance(out_json, rule="score", seed=seed,
                     params={"classes": list(classes), "split": "test", "corpus": corpus},
                     inputs={"predictions": pred_csv}, outputs=[out_json], started=started)


def score_runs(predictions: Sequence[str], metrics: Sequence[str], runs: Sequence[Mapping[str, int]], *,
               classes: Sequence[str], corpus: str | None = None) -> None:
    """Score every run of an experiment in one process: ``predictions[i]`` -> ``metrics[i]`` (run ``runs[i]``:
    its fold and seed), each with its own provenance sidecar, as if :func:`score` had run once per run."""
    if not len(predictions) == len(metrics) == len(runs):
        raise ValueError(f"score_runs: {len(predictions)} predictions, {len(metrics)} metrics, {len(runs)} runs")
    for pred_csv, out_json, run in zip(predictions, metrics, runs):
        score(pred_csv, out_json, classes=classes, fold=int(run["fold"]), seed=int(run["seed"]), corpus=corpus)


def table(spec: Mapping[str, Any], runs: Mapping[str, Sequence[Mapping[str, Any]]], out_tex: str, out_csv: str,
          out_md: str) -> None:
    from . import tables as T

    started = now()
    refs = {row: [T.RunRef(r["metrics"], int(r["fold"]), int(r["seed"]), r.get("experiment", "")) for r in rs]
            for row, rs in runs.items()}
    df = T.build_table(spec, refs)
    cells = T.render(spec, df, out_tex, out_csv, out_md)
    metrics = sorted({r.metrics for rs in refs.values() for r in rs})
    write_provenance(out_tex, rule="table", params={"spec": dict(spec)}, inputs={"metrics": metrics},
                     outputs=[out_tex, out_csv, out_md], started=started,
                     extra={"cells": cells, "aggregation_rule": T.caption_rule(spec)})


def summary(tables: Mapping[str, str], specs: Mapping[str, Mapping[str, Any]], fusion: Mapping[str, str],
            out_txt: str, out_html: str) -> None:
    """results/summary.{txt,html}: each table's headline cell, ours vs the paper's, and each fusion set's best subset.

    ``tables``: name -> table CSV; ``specs``: name -> {title, headline}; ``fusion``: name -> fusion CSV."""
    from .summary import write_summary

    started = now()
    lines = write_summary({t: {"csv": csv, **specs[t]} for t, csv in tables.items()}, fusion, out_txt, out_html)
    log.info("summary:\n%s", "\n".join(lines))
    write_provenance(out_txt, rule="summary", params={"tables": {t: dict(s) for t, s in specs.items()}},
                     inputs={"tables": list(tables.values()), "fusion": list(fusion.values())},
                     outputs=[out_txt, out_html], started=started)


def confusion(metrics_files: Sequence[str], *, classes: Sequence[str], title: str, pdf: str, png: str, tex: str,
              csv: str, corpus: str | None = None) -> None:
    """Confusion matrix summed over runs: figure (PDF, PNG), LaTeX tabular and CSV.

    ``corpus`` restricts a union corpus's runs to one member's test utterances (``by_corpus``)."""
    from .figures import summed_confusion, write_confusion

    started = now()
    counts = summed_confusion(metrics_files, classes, corpus=corpus)
    write_confusion(counts, classes, title, pdf, png, tex, csv)
    write_provenance(pdf, rule="confusion", params={"classes": list(classes), "title": title, "corpus": corpus},
                     inputs={"metrics": list(metrics_files)}, outputs=[pdf, png, tex, csv], started=started)


def demo_checkpoint(done_json: str, *, family: str, seed: int = 0, size: str = "tiny",
                    texts_from: str | None = None, manifest_csv: str | None = None) -> None:
    """Write a tiny random-initialised checkpoint directory (the demo's stand-in for a real one)."""
    import pandas as pd

    from .encoders.demo import make_demo_checkpoint

    started = now()
    out_dir = Path(done_json).parent
    texts = None
    if manifest_csv:
        texts = [t for t in pd.read_csv(manifest_csv, keep_default_na=False)["transcript"] if t]
    make_demo_checkpoint(family, str(out_dir), seed, texts=texts, size=size)
    files = sorted(p for p in out_dir.iterdir() if p.is_file() and not p.name.endswith(".prov.json"))
    write_provenance(done_json, rule="demo_checkpoint", seed=seed,
                     params={"family": family, "size": size, "texts_from": texts_from},
                     inputs={"transcripts": [manifest_csv]} if manifest_csv else None, outputs=files,
                     started=started)


def fusion(trials: Mapping[str, Sequence[str]], *, ks, honest_ks, out_csv: str, out_json: str, threads: int = 1) -> None:
    """Exact late-fusion search over a trial set (Lee et al. Sec. 4.4-4.5), with honest selection."""
    from .fusion import run_fusion
    from .tables import check_against_sidecar

    started = now()
    preds = [f"{d}/predictions.csv" for runs in trials.values() for d in runs]
    for p in preds:
        check_against_sidecar(p)
    doc = run_fusion({k: list(v) for k, v in trials.items()}, ks, out_csv, out_json, honest_ks=honest_ks,
                     n_threads=threads)
    best = max((r for r in doc["rows"] if r["method"] == "exact"), key=lambda r: r["uar"])
    log.info("best exact subset: k=%d UAR %.4f (%s)", best["k"], best["uar"], best["subset"])
    write_provenance(out_csv, rule="fusion", params={"trials": {k: list(v) for k, v in trials.items()}, "ks": ks,
                     "honest_ks": honest_ks}, inputs={"predictions": preds}, outputs=[out_csv, out_json],
                     started=started)
