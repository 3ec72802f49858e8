"""One function per pipeline step: what a Snakemake script or the CLI calls.

Each step takes plain paths and values (never the Snakemake config), checks every input
against its provenance sidecar before using it (:func:`emorepro.provenance.check_against_sidecar`,
:func:`~emorepro.provenance.check_feature_cache`), does its work through the library modules,
writes its outputs atomically, and records a provenance sidecar with
:func:`emorepro.provenance.write_provenance`.  Scripts in ``workflow/scripts/`` only
unpack ``snakemake.input/output/params/log`` and call one of these.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .io import InputError, write_csv, write_json
from .provenance import (
    check_against_sidecar,
    check_code_origin,
    check_feature_cache,
    now,
    write_provenance,
)

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
    check_code_origin()   # a workflow job runs its own clone's code, or nothing


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
    write_provenance(out_csv, rule="synth_spon_corpus", params=dict(params), inputs=None, outputs=[out_csv],
                     started=started, seed=cfg.seed, extra={"summary": summary,
                                                            "note": "wav files are hashed by the ingest step's sidecar"})


def synth_jtes_corpus(out_dir: str, params: Mapping[str, Any]) -> None:
    """Generate the demo JTES-layout corpus (``jtes_v1.1``) at ``out_dir``."""
    from .corpus.synth_jtes import JtesSynthConfig, synthesize_jtes

    started = now()
    cfg = JtesSynthConfig(**dict(params))
    summary = synthesize_jtes(out_dir, cfg)
    log.info("synthesised %s utterances (%s speakers) into %s", summary["n_utterances"], summary["n_speakers"], out_dir)
    write_provenance(Path(out_dir) / "synth_summary.json", rule="synth_jtes_corpus", params=dict(params),
                     inputs=None, outputs=[Path(out_dir) / "synth_summary.json", Path(out_dir) / "sentences.tsv"],
                     started=started, seed=cfg.seed, extra={"note": "wav files are hashed by the ingest step's sidecar"})


def union_corpus(manifests: Mapping[str, str], styles: Mapping[str, str | None], out_csv: str) -> None:
    """Stack member manifests (``member -> manifest.csv``) into a union corpus's manifest."""
    import pandas as pd

    from .corpus.union import union_manifest

    started = now()
    for p in manifests.values():
        check_against_sidecar(p)
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
    for p in fold_csvs.values():
        check_against_sidecar(p)
    table = _union({m: pd.read_csv(p) for m, p in fold_csvs.items()}, n_folds)
    write_csv(out_csv, table)
    write_provenance(out_csv, rule="union_folds", params={"scheme": "union", "n_folds": n_folds,
                                                          "members": list(fold_csvs)},
                     inputs={f"folds_{m}": p for m, p in fold_csvs.items()}, outputs=[out_csv], started=started)


def ingest(root: str, out_csv: str, *, fmt: str, label_map: Mapping[str, str], drop_labels: Sequence[str],
           sample_rate: int = 16_000, expected_counts: Mapping | None = None,
           sessions: str | Mapping | None = None, sentences: str | None = None, encoding: str = "utf-8") -> None:
    """Parse a corpus (``fmt`` = ``iemocap``, ``jtes`` or ``generic_csv``) into the manifest CSV.

    ``sessions`` and ``sentences`` are JTES's speaker-to-session assignment and sentence list; ``encoding``
    decodes the transcripts / CSV strictly.  The sidecar's ``warnings`` list what was accepted but deserves
    a look (sessions missing from an IEMOCAP tree, ratings outside the 1-5 scale and how they were handled)."""
    from .corpus.generic import ingest_generic
    from .corpus.iemocap import ingest_iemocap

    started = now()
    policy = _policy(label_map, drop_labels)
    jtes_params = {}
    if fmt == "jtes":
        from .corpus.jtes import ingest_jtes

        sessions = sessions or "consecutive"
        jtes_params = {"sessions": sessions, "sentences": sentences}
        df = ingest_jtes(root, policy, sample_rate=sample_rate, sessions=sessions, sentences=sentences,
                         expected_counts=expected_counts)
        raw = [*df["wav"]]
        if sentences:
            raw.append(sentences if Path(sentences).is_absolute() else str(Path(root) / sentences))
    elif fmt == "iemocap":
        df = ingest_iemocap(root, policy, sample_rate=sample_rate, expected_counts=expected_counts, encoding=encoding)
        raw = sorted({*df["wav"], *(str(p) for p in Path(root).glob("Session*/dialog/EmoEvaluation/*.txt")),
                      *(str(p) for p in Path(root).glob("Session*/dialog/transcriptions/*.txt"))})
    elif fmt == "generic_csv":
        df = ingest_generic(root, policy, sample_rate=sample_rate, encoding=encoding)
        raw = [root, *df["wav"]]
    else:
        raise InputError(f"config: corpora.<name>.format: unknown {fmt!r} (iemocap, jtes, generic_csv)")
    notes = dict(df.attrs.get("ingest_notes", {}))
    write_csv(out_csv, df)
    kept = df[df["label"] != ""]
    log.info("%d utterances, %d with a class label: %s", len(df), len(kept), kept["label"].value_counts().to_dict())
    write_provenance(out_csv, rule="ingest", params={"root": root, "format": fmt, "label_map": dict(label_map),
                     "drop_labels": list(drop_labels), "sample_rate": sample_rate, "encoding": encoding,
                     "expected_counts": expected_counts, **jtes_params}, inputs={"raw": raw}, outputs=[out_csv],
                     started=started, extra={"warnings": notes})


def make_folds(manifest_csv: str, out_csv: str, *, scheme: str, val_policy: str, seed: int = 0,
               n_folds: int | None = None, protocol: str | None = None) -> None:
    """Write a protocol's fold file; with ``n_folds`` (config ``protocols.<name>.n_folds``) the folds the
    data give must be that many (a missing or extra session would otherwise renumber them silently)."""
    import pandas as pd

    from . import folds as F

    started = now()
    check_against_sidecar(manifest_csv)
    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    table = F.make_folds(manifest, scheme, val_policy, seed=seed)
    labelled = manifest[manifest["label"] != ""]
    F.check_folds(table, labelled, where=out_csv)
    groups = F.fold_groups(table, labelled)
    if n_folds is not None and len(groups) != int(n_folds):
        raise InputError(f"{manifest_csv}: the {scheme} protocol gives {len(groups)} folds "
                         f"({'; '.join(f'fold {k}: {v[0]}' for k, v in groups.items())}), but config "
                         f"protocols.{protocol or scheme}.n_folds is {n_folds}; make them agree (the number of folds "
                         f"comes from the data: a missing or extra session/speaker changes it)")
    write_csv(out_csv, table)
    write_provenance(out_csv, rule="folds", params={"scheme": scheme, "val_policy": val_policy, "n_folds": n_folds},
                     seed=seed, inputs={"manifest": manifest_csv}, outputs=[out_csv], started=started,
                     extra={"held_out": {str(k): v for k, v in groups.items()}})


def extract_features(manifest_csv: str, out_manifest: str, *, name: str, spec: Mapping[str, Any],
                     seed: int = 0, device: str | None = None, options: Mapping[str, Any] | None = None) -> None:
    """Fill a feature cache; its sidecar lists every shard and the index, so ``verify``/``trace`` re-hash them.

    A local checkpoint path is made absolute first (never mistaken for a Hub id; loaded with local
    files only)."""
    from .encoders.base import EncoderSpec
    from .features.cache import INDEX, extract_to_cache

    started = now()
    check_against_sidecar(manifest_csv)
    out_dir = Path(out_manifest).parent
    spec = dict(spec)
    if spec.get("checkpoint"):
        spec["checkpoint"] = os.path.abspath(spec["checkpoint"])
    es = EncoderSpec.from_dict(name, spec)
    report = extract_to_cache(manifest_csv, es, str(out_dir), seed=seed, device=device, **dict(options or {}))
    inputs: dict[str, Any] = {"manifest": manifest_csv}
    if es.checkpoint and Path(es.checkpoint).is_dir():
        inputs["checkpoint"] = es.checkpoint
    shards = [out_dir / s["file"] for s in report["manifest"]["shards"]]
    write_provenance(out_manifest, rule="extract_features", params={"encoder": name, **spec}, seed=seed,
                     inputs=inputs, outputs=[out_manifest, out_dir / INDEX, *shards], started=started)


def repair_features(cache_dir: str, *, device: str | None = None) -> dict:
    """Re-extract the damaged or missing shards of a complete feature cache, from what its manifest recorded.

    The good shards are kept (each after its own hash check).  When the re-extracted shards are
    byte-identical to the recorded ones (CPU extraction is deterministic), every downstream result stays
    valid: ``manifest.json`` keeps its bytes and its modification time, so Snakemake re-runs nothing.
    Otherwise the cache's sidecar is rewritten and the results built on the old shards no longer verify,
    so Snakemake (input newer than output) re-runs them.
    """
    import contextlib

    from .encoders.base import EncoderSpec
    from .features.cache import INDEX, MANIFEST, extract_to_cache
    from .io import read_json
    from .provenance import resolver, sidecar_path

    d = Path(cache_dir).absolute()
    mp = d / MANIFEST
    if not mp.is_file():
        raise InputError(f"{d}: no {MANIFEST}: not a complete feature cache (run the extraction)")
    before = mp.read_bytes()
    st = mp.stat()
    man = read_json(mp)
    side = sidecar_path(mp)
    # Relative paths in the manifest are relative to the run's working directory: work from there.
    base = resolver(side, read_json(side))(".") if side.exists() else os.getcwd()
    enc = dict(man["encoder"])
    es = EncoderSpec.from_dict(enc.pop("name"), enc)
    with contextlib.chdir(base):
        manifest_csv = man["manifest_csv"]
        report = extract_to_cache(manifest_csv, es, str(d), seed=man["seed"], device=device, progress=False,
                                  **man["settings"])
    same = mp.read_bytes() == before
    if same:
        os.utime(mp, ns=(st.st_atime_ns, st.st_mtime_ns))   # same bytes: downstream results stay valid
    else:
        shards = [d / s["file"] for s in report["manifest"]["shards"]]
        with contextlib.chdir(base):
            write_provenance(mp, rule="repair_features", seed=man["seed"], inputs={"manifest": manifest_csv},
                             params={"encoder": es.name, **enc, "checkpoint": es.checkpoint},
                             outputs=[mp, d / INDEX, *shards], started=now())
    return {"recomputed_shards": report["computed_shards"], "identical": same}


def train(*, manifest_csv: str, folds_csv: str, caches: Mapping[str, Any], outputs: Mapping[str, str], fold: int,
          seed: int, classes: Sequence[str], model: str, model_params: Mapping, train_params: Mapping,
          run_id: Mapping, threads: int = 1, parent_model: str | None = None,
          extra_inputs: Mapping[str, str] | None = None, audio_manifests: Sequence[str] = ()) -> None:
    """Train one fold and seed; ``caches`` maps a role (audio, text) to a cache's manifest.json
    (or to a list of them: a union corpus reads its members' caches).  Roles under
    ``train_params["finetune"]`` are read from their checkpoint directories instead; ``parent_model``
    is the ``model.pt`` of the run ``train.init_from`` starts from.  ``outputs``: the rule's declared
    ``predictions``, ``log_csv``, ``model`` and ``provenance`` (the run directory's sidecar).
    ``extra_inputs``: named files the recipe reads through ``ctx.extra_inputs`` (MMER: ``aug_copies``, the
    augmented corpus's copies sidecar; GMP-ATL: ``pseudo_labels``, its frame labels); ``audio_manifests``:
    manifests of utterances outside the folds whose wavs the recipe may read (MMER: the augmented corpus).
    Both are checked against their sidecars and recorded like the other inputs.

    Before training: the manifest, the fold file and every cache (shards included) are checked
    against their sidecars, and the fold file's soundness (no leak, every utterance tested once)
    is checked again, so a tampered or leaking input never reaches a result."""
    import pandas as pd

    from .folds import check_folds
    from .provenance import RUN_SIDECAR
    from .train import run_training

    started = now()
    out = Path(outputs["provenance"]).parent
    if Path(outputs["provenance"]).name != RUN_SIDECAR:
        raise ValueError(f"outputs: provenance must be the run directory's sidecar {out / RUN_SIDECAR}")
    files = {k: outputs[k] for k in ("predictions", "log_csv", "model")}
    caches = {role: (m if isinstance(m, (str, os.PathLike)) else [str(x) for x in m]) for role, m in caches.items()}
    check_against_sidecar(manifest_csv)
    check_against_sidecar(folds_csv)
    for f in [*(extra_inputs or {}).values(), *audio_manifests]:
        check_against_sidecar(f)
    for m in caches.values():
        for one in ([m] if isinstance(m, (str, os.PathLike)) else m):
            check_feature_cache(one)
    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    folds = pd.read_csv(folds_csv)
    check_folds(folds, manifest[manifest["label"] != ""], where=folds_csv)
    summary = run_training(manifest_csv=manifest_csv, folds_csv=folds_csv,
                           caches={role: (str(Path(m).parent) if isinstance(m, (str, os.PathLike))
                                          else [str(Path(x).parent) for x in m]) for role, m in caches.items()},
                           fold=fold, seed=seed, classes=classes, model=model, model_params=dict(model_params),
                           train=dict(train_params), out_dir=str(out), threads=threads, outputs=files,
                           parent_model=parent_model, extra_inputs=dict(extra_inputs or {}),
                           audio_manifests=list(audio_manifests))
    summary["n_folds"] = int(folds["fold"].nunique())   # the table checks it averages every fold of the file
    inputs: dict[str, Any] = {"manifest": manifest_csv, "folds": folds_csv,
                              **{f"feature_cache_{role}": m for role, m in caches.items()},
                              **dict(extra_inputs or {}),
                              **({"audio_manifests": list(audio_manifests)} if audio_manifests else {})}
    for role, opts in (train_params.get("finetune") or {}).items():
        if opts.get("checkpoint") and Path(opts["checkpoint"]).is_dir():
            inputs[f"checkpoint_{role}"] = opts["checkpoint"]
    if parent_model:
        parent = Path(parent_model)
        inputs["parent_model"] = [parent_model, *(str(parent.parent / e["dir"]) for e in
                                                  summary["init_from"]["parent_encoders"].values() if e["dir"])]
    written = [*files.values()]
    written += [out / e["dir"] for e in summary["model"]["encoders"].values() if e["dir"]]
    written += [p for p in (out / "embeddings.npz",) if p.is_file()]
    write_provenance(out, rule="train", seed=seed,
                     params={**dict(run_id), "fold": fold, "classes": list(classes), "model": model,
                             "model_params": dict(model_params), "train": dict(train_params), "threads": threads},
                     inputs=inputs, outputs=written, started=started, extra={"summary": summary})


def train_seeds(*, runs: Sequence[tuple[int, int]], outputs: Sequence[Mapping[str, str]],
                parent_models: Sequence[str] | None, **kwargs) -> None:
    """Several runs in one process (``experiments.<p>.<v>.seeds_per_job`` / ``folds_per_job``): :func:`train`
    once per ``runs[i]`` = (fold, seed), into ``outputs[i]``, from ``parent_models[i]`` (or None).  Each run gets
    the same files and sidecar as a job of its own (the seed resets every generator; a test compares the bytes)."""
    if len(outputs) != len(runs) or (parent_models is not None and len(parent_models) != len(runs)):
        raise ValueError(f"train_seeds: {len(runs)} runs, {len(outputs)} output sets, "
                         f"{None if parent_models is None else len(parent_models)} parent models")
    for i, (fold, seed) in enumerate(runs):
        log.info("fold %d seed %d (run %d of %d)", fold, seed, i + 1, len(runs))
        train(fold=int(fold), seed=int(seed), outputs=outputs[i],
              parent_model=parent_models[i] if parent_models else None, **kwargs)


def pseudo_labels(source_model: str, manifest_csv: str, folds_csv: str, out_npz: Sequence[str] | str, *, name: str,
                  fold: int, seed: int, layers: Sequence[int] | int, role: str, ks: Sequence[int],
                  kmeans: Mapping[str, Any] | None = None, kmeans_seed: int = 0, batch_size: int = 8, threads: int = 1,
                  device: str | None = None) -> list[dict]:
    """GMP-ATL's frame labels of one fold x seed, for each layer of ``layers`` (:mod:`emorepro.pseudo_labels`).

    ``source_model``: the ``model.pt`` of the source run (stage 1) of this fold and seed; its encoder
    (kept as ``encoder_<role>/``, or the checkpoint it stayed frozen at) gives the frame features of
    ``hidden_states[L]`` of the fold's **training** utterances (one encoder pass for every layer),
    clustered once per K in ``ks``.  ``out_npz[i]`` receives layer ``layers[i]``'s labels
    (:mod:`emorepro.frame_labels`) and its own sidecar: the source model and the encoder files, the
    manifest and the fold file as inputs; per K the fit's summary.  Returns the sidecars' ``kmeans`` lists."""
    import pandas as pd
    import torch

    from .audio import WavSource
    from .folds import check_folds
    from .frame_labels import write_frame_labels
    from .pseudo_labels import encode_frames, fit_kmeans, kmeans_options, options_record, source_encoder
    from .pseudo_labels import kmeans_seed as derive_seed

    started = now()
    key = f"pseudo_labels.{name}"
    layers = [int(layers)] if isinstance(layers, int) else [int(x) for x in layers]
    outs = [out_npz] if isinstance(out_npz, (str, os.PathLike)) else [str(x) for x in out_npz]
    if len(outs) != len(layers) or len(set(layers)) != len(layers):
        raise ValueError(f"{key}: {len(outs)} output files for layers {layers} (one file per distinct layer)")
    opts = kmeans_options(kmeans)
    if len(set(ks)) != len(ks) or any(int(k) < 2 for k in ks):
        raise InputError(f"config: {key}.ks: distinct cluster counts >= 2, got {list(ks)}")
    check_against_sidecar(manifest_csv)
    check_against_sidecar(folds_csv)
    run_rec = check_against_sidecar(source_model)          # the source run's provenance.json
    src = source_encoder(source_model, role, fold=fold, seed=seed)
    resolved = ((run_rec.get("summary") or {}).get("encoders") or {}).get(role) or {}
    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    folds = pd.read_csv(folds_csv)
    check_folds(folds, manifest[manifest["label"] != ""], where=folds_csv)
    f = folds[folds["fold"] == fold]
    if f.empty:
        raise InputError(f"{folds_csv}: no rows for fold {fold}")
    m = manifest.set_index("utt_id", drop=False)
    train_ids = f.loc[f["split"] == "train", "utt_id"].tolist()          # never the val or test split
    utts = sorted(train_ids, key=lambda u: (-float(m.at[u, "duration"]), u))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, threads))
    t0 = time.time()
    Xs, lengths, hop, n_hidden = encode_frames(src["checkpoint"], WavSource(m), utts, layers=layers,
                                               options={"do_normalize": resolved.get("do_normalize")}, device=device,
                                               batch_size=batch_size, seed=seed)
    t_encode = time.time() - t0
    log.info("fold %d seed %d layers %s: %d training utterances, %d frames x %d, encoded in %.1f s", fold, seed,
             layers, len(utts), len(Xs[0]), Xs[0].shape[1], t_encode)
    inputs: dict[str, Any] = {"source_model": [source_model, *src["files"]], "manifest": manifest_csv,
                              "folds": folds_csv}
    if not src["kept"] and Path(src["checkpoint"]).is_dir():   # a frozen source: the checkpoint itself
        inputs["checkpoint"] = src["checkpoint"]
    every = []
    for layer, X, out in zip(layers, Xs, outs):
        labels, infos = {}, []
        for k in ks:
            labels[int(k)], info = fit_kmeans(X, int(k), random_state=derive_seed(kmeans_seed, seed, fold, layer, int(k)),
                                              opts=opts, threads=threads, key=key)
            infos.append(info)
        write_frame_labels(out, utts, lengths, labels, fold=fold, seed=seed, layer=layer, hop_samples=hop,
                           source_state_sha256=src["state_sha256"])
        write_provenance(out, rule="pseudo_labels", seed=seed,
                         params={"name": name, "fold": fold, "layer": layer, "layers_of_job": layers, "role": role,
                                 "ks": [int(k) for k in ks], "kmeans": options_record(opts), "kmeans_seed": kmeans_seed,
                                 "batch_size": batch_size, "threads": threads},
                         inputs=inputs, outputs=[out], started=started,
                         extra={"kmeans": infos, "split": "train",
                                "source": {"checkpoint": src["checkpoint"], "kept": src["kept"],
                                           "state_sha256": src["state_sha256"],
                                           "do_normalize": resolved.get("do_normalize"), "n_hidden_states": n_hidden},
                                "frames": {"n_utterances": len(utts), "n_frames": int(len(X)), "dim": int(X.shape[1]),
                                           "hop_samples": hop, "encode_seconds": round(t_encode, 3), "device": device}})
        every.append(infos)
    return every


def score(pred_csv: str, out_json: str, *, classes: Sequence[str], fold: int, seed: int,
          corpus: str | None = None) -> None:
    """Test-split metrics; per corpus (``by_corpus``) from the predictions' ``corpus`` column, else ``corpus``."""
    from .metrics import score_predictions

    started = now()
    check_against_sidecar(pred_csv)
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
          out_md: str, fusion: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """A paper table from its runs' metrics and, for fusion cells, ``fusion``: set name -> its outputs
    (:class:`emorepro.tables.FusionRef` fields)."""
    from . import tables as T

    started = now()
    refs = {row: [T.RunRef(r["metrics"], int(r["fold"]), int(r["seed"]), r.get("experiment", ""),
                           r.get("selection") or "") for r in rs]
            for row, rs in runs.items()}
    frefs = {name: T.FusionRef(**{**f, "selections": tuple(f.get("selections") or ())})
             for name, f in (fusion or {}).items()}
    df = T.build_table(spec, refs, fusion=frefs)
    cells = T.render(spec, df, out_tex, out_csv, out_md)
    metrics = sorted({r.metrics for rs in refs.values() for r in rs})
    inputs: dict[str, Any] = {"metrics": metrics}
    if frefs:
        inputs["fusion"] = sorted({p for f in frefs.values()
                                   for p in (f.csv, f.json, f.intermediate_csv, f.intermediate_json)
                                   if p and os.path.exists(p)})
    write_provenance(out_tex, rule="table", params={"spec": dict(spec)}, inputs=inputs,
                     outputs=[out_tex, out_csv, out_md], started=started,
                     extra={"cells": cells, "aggregation_rule": T.caption_rule(spec)})


def corpus_table(spec: Mapping[str, Any], manifests: Mapping[str, str], out_tex: str, out_csv: str, out_md: str) -> None:
    """A table of corpus statistics (Lee et al. Table 1) from the manifests (``corpus -> manifest.csv``)."""
    from . import tables as T

    started = now()
    df = T.corpus_stats_table(spec, manifests)
    cells = T.render_corpus_stats(spec, df, out_tex, out_csv, out_md)
    write_provenance(out_tex, rule="corpus_table", params={"spec": dict(spec)},
                     inputs={f"manifest_{c}": p for c, p in manifests.items()}, outputs=[out_tex, out_csv, out_md],
                     started=started, extra={"cells": cells, "aggregation_rule": T.CORPUS_STATS_RULE})


def summary(tables: Mapping[str, str], specs: Mapping[str, Mapping[str, Any]], fusion: Mapping[str, str],
            out_txt: str, out_html: str, corpus_tables: Mapping[str, str] | None = None) -> None:
    """results/summary.{txt,html}: each table's headline cell, ours vs the paper's, each corpus table's utterance
    counts and each fusion set's best subset.

    ``tables``: name -> table CSV; ``specs``: name -> {title, headline}; ``fusion``: name -> fusion CSV;
    ``corpus_tables``: name -> corpus-statistics table CSV."""
    from .summary import write_summary

    started = now()
    corpus_tables = dict(corpus_tables or {})
    lines = write_summary({t: {"csv": csv, **specs[t]} for t, csv in tables.items()}, fusion, out_txt, out_html,
                          corpus_tables=corpus_tables)
    log.info("summary:\n%s", "\n".join(lines))
    write_provenance(out_txt, rule="summary", params={"tables": {t: dict(s) for t, s in specs.items()}},
                     inputs={"tables": list(tables.values()), "fusion": list(fusion.values()),
                             "corpus_tables": list(corpus_tables.values())},
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


def confusion_panels(metrics: Mapping[str, Sequence[str]], *, classes: Sequence[str], title: str, bias_class: str,
                     claims: Sequence[Mapping[str, str]], notes: Sequence[str], pdf: str, png: str, tex: str, csv: str,
                     md: str) -> None:
    """A figure of several experiments' confusion matrices (config ``figures.<name>``): ``metrics`` maps each
    panel's name to its runs' metrics.json; the bias toward ``bias_class`` and the claims are in the Markdown
    caption, the CSV and the sidecar."""
    from .figures import summed_confusion, write_confusion_panels

    started = now()
    panels = [(name, summed_confusion(files, classes)) for name, files in metrics.items()]
    verdicts = write_confusion_panels(panels, classes, title, bias_class, [dict(c) for c in claims], list(notes),
                                      pdf, png, tex, csv, md)
    for v in verdicts:
        log.info("claim %r: %s", v["claim"], "holds" if v["holds"] else "does not hold")
    write_provenance(pdf, rule="confusion_panels",
                     params={"classes": list(classes), "title": title, "bias_class": bias_class,
                             "claims": [dict(c) for c in claims]},
                     inputs={f"metrics: {name}": list(f) for name, f in metrics.items()},
                     outputs=[pdf, png, tex, csv, md], started=started,
                     extra={"panels": list(metrics), "claims_checked": verdicts})


def demo_checkpoint(done_json: str, *, family: str, seed: int = 0, size: str = "tiny",
                    texts_from: str | None = None, manifest_csv: str | None = None,
                    config: Mapping[str, Any] | None = None) -> None:
    """Write a tiny random-initialised checkpoint directory (the demo's stand-in for a real one);
    ``config``: config.json fields over the size's defaults (e.g. ``num_hidden_layers: 8``)."""
    import pandas as pd

    from .encoders.demo import make_demo_checkpoint

    started = now()
    out_dir = Path(done_json).parent
    texts = None
    if manifest_csv:
        check_against_sidecar(manifest_csv)
        texts = [t for t in pd.read_csv(manifest_csv, keep_default_na=False)["transcript"] if t]
    make_demo_checkpoint(family, str(out_dir), seed, texts=texts, size=size, config_overrides=dict(config or {}))
    files = sorted(p for p in out_dir.iterdir() if p.is_file() and not p.name.endswith(".prov.json"))
    write_provenance(done_json, rule="demo_checkpoint", seed=seed,
                     params={"family": family, "size": size, "texts_from": texts_from,
                             **({"config": dict(config)} if config else {})},   # as before for the other encoders
                     inputs={"transcripts": [manifest_csv]} if manifest_csv else None, outputs=files,
                     started=started)


def fusion(trials: Mapping[str, Sequence[str]], *, ks, honest_ks, out_csv: str, out_json: str, threads: int = 1,
           name: str = "", corpus: str | None = None, heuristics: Sequence[str] = ("greedy", "beam"),
           honest_method: str = "exact", max_hours: float | None = None) -> None:
    """Exact late-fusion search over a trial set (Lee et al. Sec. 4.4-4.5), with honest selection."""
    from .fusion import run_fusion
    from .fusion.budget import SearchTooLarge
    from .tables import check_against_sidecar

    started = now()
    preds = [f"{d}/predictions.csv" for runs in trials.values() for d in runs]
    for p in preds:
        check_against_sidecar(p)
    try:
        doc = run_fusion({k: list(v) for k, v in trials.items()}, ks, out_csv, out_json, honest_ks=honest_ks,
                         honest_method=honest_method, n_threads=threads, corpus=corpus, heuristics=heuristics,
                         max_seconds=None if max_hours is None else max_hours * 3600)
    except SearchTooLarge as e:
        raise SearchTooLarge(f"config: fusion.{name}.ks / honest_ks / max_hours: {e}") from None
    except InputError as e:  # a trial's file (named in the message), e.g. no `corpus` column
        raise InputError(f"fusion.{name}: {e}") from None
    best = max((r for r in doc["rows"] if r["method"] == "exact"), key=lambda r: r["uar"])
    log.info("best exact subset: k=%d UAR %.4f (%s)", best["k"], best["uar"], best["subset"])
    write_provenance(out_csv, rule="fusion", params={"trials": {k: list(v) for k, v in trials.items()}, "ks": ks,
                     "honest_ks": honest_ks, "honest_method": honest_method, "corpus": corpus,
                     "heuristics": list(heuristics), "max_hours": max_hours}, inputs={"predictions": preds},
                     outputs=[out_csv, out_json], started=started)



def intermediate_fusion(trials: Mapping[str, Sequence[str]], *, manifest_csv: str, classes: Sequence[str], out_csv: str,
                        out_json: str, name: str = "", corpus: str | None = None,
                        options: Mapping[str, Any] | None = None, threads: int = 1) -> None:
    """Intermediate concatenation of a trial set (Lee et al. Table 5): a classifier per fold on the trials'
    concatenated pooled FE outputs (their runs' embeddings.npz), trained on training utterances only."""
    from .fusion.intermediate import IntermediateOptions, run_intermediate

    started = now()
    check_against_sidecar(manifest_csv)
    preds = [f"{d}/predictions.csv" for runs in trials.values() for d in runs]
    embs = [f"{d}/embeddings.npz" for runs in trials.values() for d in runs]
    try:
        opts = IntermediateOptions(**dict(options or {}))
        doc = run_intermediate({k: list(v) for k, v in trials.items()}, manifest_csv, classes, out_csv, out_json,
                               corpus=corpus, options=opts, threads=threads)
    except InputError as e:
        raise InputError(f"fusion.{name}.intermediate: {e}") from None
    r = doc["rows"][0]
    log.info("intermediate concatenation of %d trials: UAR %.4f WAR %.4f", r["k"], r["uar"], r["war"])
    write_provenance(out_csv, rule="intermediate_fusion",
                     params={"trials": {k: list(v) for k, v in trials.items()}, "corpus": corpus,
                             "options": doc["options"], "classes": list(classes)},
                     inputs={"manifest": manifest_csv, "embeddings": embs, "predictions": [p for p in preds
                                                                                           if os.path.exists(p)]},
                     outputs=[out_csv, out_json], started=started)


def fusion_confusion(fusion_csv: str, fusion_json: str, *, classes: Sequence[str], order: Sequence[str] | None,
                     method: str, k: int | None, title: str, pdf: str, png: str, tex: str, csv: str,
                     reported: Mapping[str, Sequence[float]] | None = None) -> None:
    """The confusion matrix of one fusion output row (Lee et al. Fig. 4: the best subset of the 30 trials),
    in ``order`` (the paper's class order; default ``classes``, the logits' order)."""
    import numpy as np

    from .figures import reorder, write_confusion
    from .tables import FusionRef, load_fusion_output, select_fusion_row

    started = now()
    doc = load_fusion_output(FusionRef("figure", fusion_csv, fusion_json))   # checked against its sidecar
    row = select_fusion_row(doc, method, k, fusion_json)
    counts = np.asarray(row["confusion"], dtype=np.int64)
    names = list(order or classes)
    counts = reorder(counts, classes, names)
    full_title = f"{title} ({method}, k={row['k']}: UAR {100 * row['uar']:.2f}, WAR {100 * row['war']:.2f})"
    write_confusion(counts, names, full_title, pdf, png, tex, csv, reported=reported)
    write_provenance(pdf, rule="fusion_confusion", params={"classes": list(classes), "order": names, "method": method,
                     "k": k, "selected": {"k": row["k"], "subset": row["subset"], "uar": row["uar"], "war": row["war"]},
                     "title": full_title, "reported": dict(reported or {})},
                     inputs={"fusion": [fusion_csv, fusion_json]}, outputs=[pdf, png, tex, csv], started=started)


def back_translate(manifest_csv: str, out_csv: str, *, corpus: str, source: str, seed: int,
                   back_translation: Mapping[str, Any], threads: int = 1) -> None:
    """MMER augmentation, step 1: plan the copies of ``source``'s utterances and back-translate their text."""
    from .augment.pipeline import back_translate_corpus

    started = now()
    bt = dict(back_translation)
    info = back_translate_corpus(manifest_csv, out_csv, seed=seed, back_translation=bt, threads=threads,
                                 key=f"corpora.{corpus}.augment")
    inputs: dict[str, Any] = {"manifest": manifest_csv}
    if bt.get("backend") == "nllb":
        inputs["checkpoint"] = bt["checkpoint"]
    write_provenance(out_csv, rule="back_translate", seed=seed,
                     params={"corpus": corpus, "source": source, "back_translation": bt}, inputs=inputs,
                     outputs=[out_csv], started=started,
                     extra={"back_translation": info})


def synthesize(texts_csv: str, manifest_csv: str, out_csv: str, *, corpus: str, source: str, seed: int,
               tts: Mapping[str, Any], sample_rate: int = 16_000, threads: int = 1) -> None:
    """MMER augmentation, step 2: speak every copy; writes the augmented corpus (generic CSV) + copies sidecar."""
    from .augment.pipeline import SUMMARY, synthesize_corpus
    from .augment.tts import espeak_version

    started = now()
    cfg = dict(tts)
    summary = synthesize_corpus(texts_csv, manifest_csv, out_csv, seed=seed, tts=cfg, sample_rate=sample_rate,
                                threads=threads, key=f"corpora.{corpus}.augment")
    out_dir = Path(out_csv).parent
    copies = out_dir / "copies.csv"
    inputs: dict[str, Any] = {"texts": texts_csv, "source_manifest": manifest_csv}
    if cfg.get("backend") == "yourtts":
        inputs["checkpoint"] = cfg["checkpoint"]
    if cfg.get("backend") == "yourtts":  # torch's version is in every record's `packages`
        from importlib import metadata

        versions = {"coqui-tts": metadata.version("coqui-tts")}
    else:
        versions = {"espeak-ng": espeak_version()}
    write_provenance(out_csv, rule="synthesize", seed=seed,
                     params={"corpus": corpus, "source": source, "tts": cfg, "sample_rate": sample_rate},
                     inputs=inputs, outputs=[out_csv, copies, out_dir / SUMMARY, *sorted((out_dir / "wav").glob("*.wav"))],
                     started=started,
                     extra={"copies": os.fspath(copies), "source_corpus": source, "tts": summary["tts"],
                            "versions": versions})
    # The copies sidecar gets its own record too, so that a run reading it can be traced back to the sources.
    write_provenance(copies, rule="synthesize", seed=seed, params={"corpus": corpus, "source": source, "tts": cfg},
                     inputs={"texts": texts_csv, "source_manifest": manifest_csv}, outputs=[copies], started=started,
                     extra={"corpus_csv": os.fspath(out_csv), "source_corpus": source})


def augment_demo_checkpoint(done_json: str, *, backend: str, seed: int = 0, manifest_csv: str | None = None) -> None:
    """A tiny random-init checkpoint of an augmentation backend (``nllb``: tokenizer trained on the transcripts)."""
    import pandas as pd

    from .augment.demo import make_tiny_nllb, make_tiny_yourtts

    started = now()
    out_dir = Path(done_json).parent
    if backend == "nllb":
        texts = [t for t in pd.read_csv(manifest_csv, keep_default_na=False)["transcript"] if t]
        make_tiny_nllb(out_dir, seed, texts)
    elif backend == "yourtts":
        make_tiny_yourtts(out_dir, seed)
    else:
        raise InputError(f"config: augment demo checkpoint: no tiny model for backend {backend!r} (nllb, yourtts)")
    files = sorted(p for p in out_dir.iterdir() if p.is_file() and not p.name.endswith(".prov.json"))
    write_provenance(done_json, rule="augment_demo_checkpoint", seed=seed, params={"backend": backend},
                     inputs={"transcripts": [manifest_csv]} if manifest_csv else None, outputs=files, started=started)
