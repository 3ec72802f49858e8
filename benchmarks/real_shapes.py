"""The fine-tuning papers' REAL configurations at the REAL model sizes, on CPU (issue 12).

    PYTHONPATH=src python benchmarks/real_shapes.py                      # every row below, both modes
    PYTHONPATH=src python benchmarks/real_shapes.py --rows ispas2023/deb_mt --modes finetune --steps 3
    PYTHONPATH=src python benchmarks/real_shapes.py --json real_shapes.json

For each row (an experiment of config/config.yaml, the real run, not the demo) and mode:

* ``finetune``: the experiment's own ``train`` (its ``train.finetune`` encoders and options) on
  real-shaped random checkpoints of the encoders its ``inputs`` name
  (:mod:`emorepro.encoders.real_shapes`: HuBERT-large, DeBERTaV3-large, RoBERTa-large, ...);
* ``frozen``: the same row with ``finetune: null``: its heads on feature caches extracted (here,
  from the same checkpoints) for the utterances used.

A role the row does not fine-tune reads its cache in both modes (MMER: RoBERTa-base).  A row with
ACL (``augment``, MMER) pairs each training utterance with one stand-in copy: the same wav and
transcript under the id ``<utt>__aug0``, voiced by a speaker no held-out utterance has, encoded
like the originals (a second forward through the fine-tuned encoder, as in the real run).

Each (row, mode) runs in a fresh subprocess, through :func:`emorepro.train.run_training`, on the
``--batch`` longest utterances of the demo corpus at full length (``results/iemocap/manifest.csv``:
``snakemake --configfile config/demo.yaml results/iemocap/manifest.csv`` makes it), for
``--steps`` optimiser steps after one warm-up step, with one validation and one test utterance.
Printed per row and mode:

* ``params`` / ``trainable``: parameters of the model, and those an optimiser updates;
* ``s/step``: median wall seconds per optimiser step after the warm-up (CPU, ``--threads``);
* ``peak RSS``: the subprocess's peak resident memory (CPU training keeps weights, gradients and
  Adam's moments in RAM) and ``RSS loaded``: after the encoders are loaded (what a GPU job keeps on
  the host);
* ``run dir``: bytes the run wrote (predictions, log, model.pt; ``keep_model`` as configured);
* ``GPU est``: an estimate of the GPU memory one training step of the real configuration needs,
  derived as ``4 B x params`` (fp32 weights) ``+ 4 B x trainable`` (gradients) ``+ 8 B x
  trainable`` (Adam's two moments) ``+ activations``, where activations are the bytes autograd
  saves for the backward pass, measured on this batch by ``torch.autograd.graph.saved_tensors_hooks``
  (parameters excluded) and scaled linearly to the configuration's batch size x accum-free
  micro-batch (``train.batch_size``) at the same utterance lengths.  ``+ckpt``: the same with
  gradient checkpointing (measured, not assumed).  Not included: the CUDA context (~0.5 GB),
  cuBLAS workspace and allocator fragmentation (add ~10-20 %).  Longer batches grow the attention
  part quadratically: IEMOCAP's longest utterance (34 s) is ~7x the demo's longest.

Figures depend on the machine and on whatever else runs on it (the numbers in docs/usage.md were
taken on a shared 2-core machine under load).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Lee et al.: sc_iemocap is every system's FE (HuBERT-large fine-tuned) + EC; MTL / DANN add a 4 KB linear DC.
ROWS = ["ispas2023/rob_mt", "ispas2023/deb_mt", "ispas2023/deb_sa_cra_q_rmm_mt", "lee2023/sc_iemocap", "ghosh2022/mmer",
        "pan2024/stage1", "pan2024/retrain_l3", "pan2024/gmp_ams_l3"]
MODES = ["finetune", "frozen"]
#: families that train only from raw audio (no frozen-cache mode): Pan et al.'s GMP-ATL stages
FINETUNE_ONLY = {"gmp_atl", "gmp_atl_retrain"}


def _config() -> dict:
    import yaml

    return yaml.safe_load(open(REPO / "config/config.yaml"))


def _real_name(checkpoint: str) -> str:
    """config.yaml's checkpoint path -> the hub name it is a local copy of (by its last path component)."""
    from emorepro.encoders.real_shapes import REAL_CONFIGS

    base = Path(checkpoint).name
    for name in REAL_CONFIGS:
        if name.split("/")[-1] == base:
            return name
    raise SystemExit(f"no real-shaped layout for checkpoint {checkpoint!r}; known: {sorted(REAL_CONFIGS)}")


def ensure_checkpoints(encoders: set[str], cfg: dict, ckpt_dir: Path, texts: list[str]) -> dict[str, str]:
    """Encoder config name -> a real-shaped checkpoint directory (written once, then reused)."""
    from emorepro.encoders.real_shapes import make_real_shaped_checkpoint

    out = {}
    for enc in sorted(encoders):
        name = _real_name(cfg["encoders"][enc]["checkpoint"])
        d = ckpt_dir / name.split("/")[-1]
        if not (d / "real_shapes.json").is_file():
            t0 = time.time()
            info = make_real_shaped_checkpoint(name, str(d), seed=0, texts=texts)
            print(f"# wrote {d} ({info['n_params'] / 1e6:.0f} M parameters, {time.time() - t0:.0f} s)", flush=True)
        out[enc] = str(d)
    return out


def _rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which starts afresh at exec.  (getrusage's
    ru_maxrss would not: Linux carries it over from the parent across fork + exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # not Linux: an upper bound


# --------------------------------------------------------------------------- one (row, mode): a subprocess


def extract_one(job: dict) -> dict:
    """The frozen caches of one encoder for the benchmark's utterances (its own subprocess: its own peak RSS)."""
    import torch

    from emorepro.encoders.base import EncoderSpec
    from emorepro.features.cache import extract_to_cache

    torch.set_num_threads(job["threads"])
    spec = EncoderSpec.from_dict(job["encoder"], {**job["encoder_cfg"], "checkpoint": job["checkpoint"]})
    t0 = time.time()
    extract_to_cache(job["manifest"], spec, job["out"], device="cpu", progress=False)
    return {"peak_rss_mb": _rss_mb(), "seconds": time.time() - t0}


def run_one(job: dict) -> dict:
    import torch

    from emorepro import train as T

    torch.set_num_threads(job["threads"])
    work = Path(job["work"])
    e, mode = job["experiment"], job["mode"]
    train = dict(e["train"])
    train.update(epochs=job["steps"] + 1, batch_size=job["batch"], eval_every=10 ** 6)   # threads: run_training's
    caches, extra = {}, {}
    # A stage that starts from its parent (init_from) starts here from the random real-shaped weights: same
    # shapes, same cost.  A stage reading pseudo-labels (Pan et al.'s retraining) gets random labels of the
    # real scales (pseudo_labels.<set>.ks) for the benchmark's training utterances.
    train.pop("init_from", None)
    train.pop("init_modules", None)
    if e.get("pseudo_labels"):
        extra["pseudo_labels"] = _random_frame_labels(job, work)
    if mode == "finetune":
        train["finetune"] = {role: {**(opts or {}), "checkpoint": job["checkpoints"][e["inputs"][role]],
                                    "gradient_checkpointing": job["grad_ckpt"]}
                             for role, opts in (train.get("finetune") or {}).items()}
    else:
        train["finetune"] = None
    aug = job.get("aug") if e.get("augment") else None
    caches = {role: (job["caches"][enc] if not aug else [job["caches"][enc], job["aug_caches"][enc]])
              for role, enc in e["inputs"].items() if role not in (train["finetune"] or {})}
    rss_loaded = [None]
    steps, saved = [], {"cur": 0, "peak": 0}
    param_ptrs: set[int] = set()

    def on_step(opt, args, kwargs):
        steps.append(time.perf_counter())
        saved["cur"] = 0
        seen.clear()

    def pack(t):
        # bytes of each storage autograd keeps for the backward pass, once; parameters are counted as weights
        st = t.untyped_storage()
        key = st.data_ptr()
        if key not in param_ptrs and key not in seen:
            seen.add(key)
            saved["cur"] += st.nbytes()
            saved["peak"] = max(saved["peak"], saved["cur"])
        return t

    seen: set[int] = set()
    orig_fit = T.fit

    def fit(net, recipe):
        rss_loaded[0] = _rss_mb()
        param_ptrs.update(p.untyped_storage().data_ptr() for p in net.parameters())
        return orig_fit(net, recipe)

    T.fit = fit
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(on_step)
    t0 = time.time()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s = T.run_training(manifest_csv=job["manifest"], folds_csv=job["folds"], caches=caches, fold=1, seed=1,
                           classes=["neu", "hap", "ang", "sad"], model=e["model"], model_params=e["model_params"],
                           train=train, out_dir=str(work / "run"), device="cpu",
                           extra_inputs={**extra, **({"aug_copies": aug["copies"]} if aug else {})},
                           audio_manifests=[aug["manifest"]] if aug else (), threads=job["threads"])
    handle.remove()
    dt = [b - a for a, b in itertools.pairwise(steps)]
    per_step = statistics.median(dt) if dt else float("nan")
    return {"params": s["n_parameters"], "trainable": s["n_trainable_parameters"], "s_per_step": per_step,
            "peak_rss_mb": _rss_mb(), "rss_loaded_mb": rss_loaded[0], "run_dir_bytes": s["run_dir_bytes"],
            "saved_activation_bytes": saved["peak"], "seconds": time.time() - t0,
            "files": sorted(p.name for p in (work / "run").iterdir())}


def _random_frame_labels(job: dict, work: Path) -> str:
    """A frame-label file (emorepro.frame_labels) of uniform random clusters at the real scales."""
    import numpy as np
    import pandas as pd
    import torch

    from emorepro.audio import WavSource
    from emorepro.encoders.finetune import load_finetune_encoder
    from emorepro.frame_labels import write_frame_labels

    m = pd.read_csv(job["manifest"], keep_default_na=False)
    f = pd.read_csv(job["folds"])
    utts = f.loc[f["split"] == "train", "utt_id"].tolist()
    role, opts = next(iter(job["experiment"]["train"]["finetune"].items()))
    enc = load_finetune_encoder(role, {**opts, "checkpoint": job["checkpoints"][job["experiment"]["inputs"][role]]})
    src = WavSource(m)
    n = enc.frame_lengths(torch.tensor([len(src(u)) for u in utts])).tolist()
    rng = np.random.default_rng(0)
    ks = job["ks"]
    out = work / "labels.npz"
    write_frame_labels(out, utts, n, {k: rng.integers(0, k, sum(n)) for k in ks}, fold=1, seed=1,
                       layer=job["experiment"]["pseudo_labels"]["layer"], hop_samples=enc.hop_samples,
                       source_state_sha256="random")
    return str(out)


# --------------------------------------------------------------------------- driver


def gpu_estimate(r: dict, batch_cfg: int, batch_here: int) -> float:
    """GB: fp32 weights + gradients + Adam moments + saved activations scaled to the configured batch."""
    b = 4 * r["params"] + 4 * r["trainable"] + 8 * r["trainable"]
    return (b + r["saved_activation_bytes"] * batch_cfg / batch_here) / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="*", default=ROWS, help="experiments of config/config.yaml (paper/variant)")
    ap.add_argument("--modes", nargs="*", default=MODES, choices=MODES)
    ap.add_argument("--steps", type=int, default=2, help="timed optimiser steps (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=2, help="utterances per step (the longest of the demo corpus)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--manifest", default=str(REPO / "results/iemocap/manifest.csv"))
    ap.add_argument("--ckpt-dir", default=str(REPO / "results/checkpoints/real_shapes"))
    ap.add_argument("--no-grad-ckpt", action="store_true", help="skip the gradient-checkpointing measurement")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--one", help=argparse.SUPPRESS)   # internal: run one job (JSON) and print its result
    args = ap.parse_args(argv)
    if args.one:
        job = json.loads(Path(args.one).read_text())
        print(json.dumps(extract_one(job) if job.get("kind") == "extract" else run_one(job)))
        return 0

    import pandas as pd

    cfg = _config()
    if not Path(args.manifest).is_file():
        raise SystemExit(f"{args.manifest} is missing: run `snakemake --configfile config/demo.yaml "
                         "results/iemocap/manifest.csv` first (the demo corpus supplies the utterances)")
    man = pd.read_csv(args.manifest, keep_default_na=False)
    man = man[man["label"] != ""]
    texts = [t for t in man["transcript"] if t]
    # the longest utterances train; test: the longest of another speaker; validation: the shortest utterance of
    # each class of the remaining speakers (the training step refuses a speaker in two splits of a fold, and a
    # class that no utterance of the manifest has)
    by_len = man.sort_values("duration", ascending=False)
    train_rows = by_len.head(args.batch)
    others = by_len[~by_len["speaker"].isin(train_rows["speaker"])]
    test_row = others.head(1)
    val_rows = others[others["speaker"] != test_row["speaker"].item()].iloc[::-1].drop_duplicates("label")
    pick = pd.concat([train_rows, val_rows, test_row])
    exps = {r: cfg["experiments"][r.split("/")[0]][r.split("/")[1]] for r in args.rows}
    ckpts = ensure_checkpoints({enc for e in exps.values() for enc in e["inputs"].values()}, cfg,
                               Path(args.ckpt_dir), texts)
    work_root = Path(tempfile.mkdtemp(prefix="real_shapes."))
    # every class occurs in the manifest (the engine refuses an output nothing could train): the shortest
    # utterance of each missing class is listed there but in no split
    extra = man[~man["label"].isin(pick["label"])].sort_values("duration").drop_duplicates("label")
    sub = pd.concat([pick, extra])
    sub.to_csv(work_root / "manifest.csv", index=False)
    split = ["train"] * args.batch + ["val"] * len(val_rows) + ["test"]
    pd.DataFrame({"utt_id": sub["utt_id"], "fold": 1, "split": split}).to_csv(work_root / "folds.csv", index=False)
    secs = sub["duration"].astype(float).tolist()
    print(f"# utterances: {args.batch} x train ({', '.join(f'{s:.1f}' for s in secs[:args.batch])} s), {len(val_rows)} val, 1 test; "
          f"{args.steps} timed steps after 1 warm-up; {args.threads} threads; machine shared (figures under load)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}

    def sub_run(job: dict, where: Path, what: str) -> dict:
        (where / "job.json").write_text(json.dumps(job))
        p = subprocess.run([sys.executable, __file__, "--one", str(where / "job.json")], capture_output=True,
                           text=True, env=env, check=False)
        if p.returncode != 0:
            print(p.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{what}: the subprocess failed")
        return json.loads(p.stdout.strip().splitlines()[-1])

    aug = None
    if any(e.get("augment") for e in exps.values()):   # ACL: one stand-in copy per utterance (module docstring)
        copies = sub.assign(utt_id=sub["utt_id"] + "__aug0", speaker="bench_copy_voice")
        copies.to_csv(work_root / "aug_manifest.csv", index=False)
        pd.DataFrame({"aug_id": copies["utt_id"], "source_utt": sub["utt_id"], "source_speaker": sub["speaker"],
                      "target_speaker": copies["speaker"]}).to_csv(work_root / "copies.csv", index=False)
        aug = {"manifest": str(work_root / "aug_manifest.csv"), "copies": str(work_root / "copies.csv")}
    # Pan et al.'s families read fine-tuned encoders only: no cache for them
    need = {enc for e in exps.values() if e["model"] not in FINETUNE_ONLY for role, enc in e["inputs"].items()
            if "frozen" in args.modes or role not in (e["train"].get("finetune") or {})}
    caches, aug_caches, extraction = {}, {}, {}
    for enc in sorted(need):
        for which, man, store in (("", "manifest.csv", caches), ("aug_", "aug_manifest.csv", aug_caches)):
            if which and not aug:
                continue
            where = work_root / f"{which}cache_{enc}"
            where.mkdir()
            r = sub_run({"kind": "extract", "encoder": enc, "encoder_cfg": cfg["encoders"][enc],
                         "checkpoint": ckpts[enc], "manifest": str(work_root / man),
                         "out": str(where / "cache"), "threads": args.threads}, where, f"extract {which}{enc}")
            store[enc] = str(where / "cache")
            if not which:
                extraction[enc] = r
            print(f"# extract_features {which}{enc}: peak RSS {r['peak_rss_mb'] / 1024:.2f} GB, {r['seconds']:.0f} s "
                  f"for {len(sub)} utterances", flush=True)
    results = []
    for row, e in exps.items():
        for mode in args.modes:
            if mode == "frozen" and e["model"] in FINETUNE_ONLY:
                continue
            for grad_ckpt in ([False, True] if mode == "finetune" and not args.no_grad_ckpt else [False]):
                work = work_root / f"{row.replace('/', '_')}_{mode}_{int(grad_ckpt)}"
                work.mkdir()
                job = {"experiment": e, "mode": mode, "grad_ckpt": grad_ckpt, "checkpoints": ckpts, "caches": caches,
                       "aug_caches": aug_caches, "aug": aug,
                       "work": str(work), "manifest": str(work_root / "manifest.csv"),
                       "folds": str(work_root / "folds.csv"), "steps": args.steps, "batch": args.batch,
                       "threads": args.threads,
                       "ks": (cfg.get("pseudo_labels") or {}).get((e.get("pseudo_labels") or {}).get("name"), {})
                       .get("ks")}
                r = sub_run(job, work, f"{row} {mode}")
                r.update(row=row, mode=mode + ("+ckpt" if grad_ckpt else ""), batch_cfg=int(e["train"]["batch_size"]))
                r["gpu_est_gb"] = gpu_estimate(r, r["batch_cfg"], args.batch)
                results.append(r)
                print(f"# {row} {r['mode']}: {r['seconds']:.0f} s", flush=True)
    print()
    hdr = ("row", "mode", "params (M)", "trainable (M)", "s/step", "peak RSS (GB)", "RSS loaded (GB)",
           "run dir (kB)", "activations/utt (GB)", "GPU est at batch_size (GB)")
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in results:
        lines.append("| " + " | ".join([
            r["row"], r["mode"], f"{r['params'] / 1e6:.1f}", f"{r['trainable'] / 1e6:.1f}", f"{r['s_per_step']:.2f}",
            f"{r['peak_rss_mb'] / 1024:.1f}", f"{(r['rss_loaded_mb'] or 0) / 1024:.1f}",
            f"{r['run_dir_bytes'] / 1e3:.0f}", f"{r['saved_activation_bytes'] / args.batch / 1e9:.2f}",
            f"{r['gpu_est_gb']:.1f} (batch {r['batch_cfg']})"]) + " |")
    print("\n".join(lines))
    print("\nGPU est = 4 B x params + 12 B x trainable (gradients, Adam moments) + autograd-saved activations of this "
          "batch scaled to the configured batch_size; excludes the CUDA context, workspace and fragmentation.")
    if args.json:
        Path(args.json).write_text(json.dumps({"batch": args.batch, "steps": args.steps, "threads": args.threads,
                                               "utterance_seconds": secs, "extraction": extraction,
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
