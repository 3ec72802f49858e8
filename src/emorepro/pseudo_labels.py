"""GMP-ATL's multi-scale pseudo-labels: a run's encoder at one layer, frame features, k-means per scale.

The ``pseudo_labels`` step (:func:`emorepro.steps.pseudo_labels`, rule ``pseudo_labels`` in
rules/pseudo_labels.smk) calls, for one fold x seed x layer of a pseudo-label set:

1. :func:`source_encoder`: the encoder that the source run (GMP-ATL's stage 1 of the same fold and seed)
   kept as ``encoder_<role>/`` (its files checked against the hashes in ``model.pt``), or, if that run
   kept its encoder frozen, the checkpoint it started from;
2. :func:`encode_frames`: the frame features of ``hidden_states[layer]`` (each layer of the job, one encoder
   pass) for the fold's **training** utterances, each clip whole (no crop, no chunking: one frame per 20 ms of the clip, the grid the
   retraining stage crops on), through the same fine-tuning encoder class and options as the run
   (:mod:`emorepro.encoders.finetune`, frozen, eval mode);
3. :func:`fit_kmeans` once per K: scikit-learn's ``MiniBatchKMeans`` (seeded) fitted on those frames,
   then every frame assigned to its nearest centre; once per layer.  Defaults: the HuBERT recipe's settings
   (``learn_kmeans.py`` of fairseq's HuBERT example: k-means++, batch 10,000, n_init 20, max_iter 100,
   max_no_improvement 100, tol 0, reassignment_ratio 0), fitted on every training frame.

Nothing of the test (or validation) split is read: test-session audio never reaches a fit, and the
file labels the training utterances only (:mod:`emorepro.frame_labels`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .io import InputError, sha256_file

log = logging.getLogger(__name__)


@dataclass
class KMeansOptions:
    """``pseudo_labels.<set>.kmeans``: MiniBatchKMeans settings (defaults: the HuBERT recipe's)."""

    batch_size: int = 10_000
    n_init: int = 20
    max_iter: int = 100
    max_no_improvement: int = 100
    tol: float = 0.0
    reassignment_ratio: float = 0.0
    init_size: int | None = None          # frames per k-means++ initialisation (None: sklearn's 3 x batch_size)
    max_fit_frames: int | None = None     # fit on a seeded random subset of this many frames (None: all of them)


def kmeans_options(opts: dict | None) -> KMeansOptions:
    try:
        return KMeansOptions(**dict(opts or {}))
    except TypeError as e:
        raise InputError(f"config: pseudo_labels.<set>.kmeans: {e}; known keys: "
                         f"{sorted(KMeansOptions.__dataclass_fields__)}") from None


def source_encoder(model_pt: str | Path, role: str, *, fold: int, seed: int) -> dict[str, Any]:
    """Where the source run's ``role`` encoder is: ``{"checkpoint", "kept", "files", "state_sha256"}``.

    ``files`` are the kept encoder's files (checked here against the hashes ``model.pt`` records);
    a run whose encoder stayed frozen keeps none, and the checkpoint it was loaded from is returned.
    """
    import torch

    p = Path(model_pt)
    rec = torch.load(p, map_location="cpu", weights_only=False)
    if (rec.get("fold"), rec.get("seed")) != (fold, seed):
        raise InputError(f"{p}: the source run is fold {rec.get('fold')} seed {rec.get('seed')}; these labels are for "
                         f"fold {fold} seed {seed} (pseudo-labels come from the same fold's stage 1)")
    info = (rec.get("encoders") or {}).get(role)
    if info is None:
        raise InputError(f"{p}: the source run has no {role!r} encoder (it trained none under train.finetune)")
    if info["dir"]:
        d = p.parent / info["dir"]
        files = []
        for name, sha in info["files"].items():
            f = d / name
            if not f.is_file() or sha256_file(f) != sha:
                raise InputError(f"{f}: missing or differs from the hash recorded in {p}; re-run the source run")
            files.append(str(f))
        return {"checkpoint": str(d), "kept": True, "files": files, "state_sha256": rec["state_sha256"]}
    if info.get("trainable"):
        raise InputError(f"{p}: the source run fine-tuned its {role} encoder but did not keep it (keep_model); "
                         "re-run it (the workflow keeps the models of pseudo-label sources)")
    return {"checkpoint": info["checkpoint"], "kept": False, "files": [], "state_sha256": rec["state_sha256"]}


def encode_frames(checkpoint: str, audio: Callable[[str], np.ndarray], utts: Sequence[str], *,
                  layers: Sequence[int], options: dict[str, Any] | None = None, device: str = "cpu",
                  batch_size: int = 8, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, int, int]:
    """Frame features ``hidden_states[L]`` for each L of ``layers``, of every utterance, whole clips, in ``utts`` order.

    One encoder pass serves every layer.  ``options``: the source run's encoder options that shape the
    input (``do_normalize``; the rest is fixed here: frozen, full length).  Returns ``([X_L (total frames,
    d) float32 per layer], lengths (N,), hop_samples, n_hidden_states)``.  Utterances are batched in the
    given order (the frames do not depend on the batch: the CNN runs per utterance, the transformer with a
    padding mask).
    """
    import torch

    from .encoders.finetune import load_finetune_encoder

    layers = [int(x) for x in layers]
    opts = {"checkpoint": checkpoint, "layers": layers, "layer_combine": "stack", "freeze_encoder": True,
            **{k: v for k, v in (options or {}).items() if k in ("do_normalize", "family")}}
    enc = load_finetune_encoder("audio", opts, seed=seed).to(device).eval()
    feats: list[list[np.ndarray]] = [[] for _ in layers]
    lengths: list[int] = []
    with torch.no_grad():
        for s in range(0, len(utts), batch_size):   # callers pass utterances sorted by duration: little padding
            wavs = [audio(u) for u in utts[s:s + batch_size]]
            out = enc(**enc.collate(wavs, train=False, device=device))
            h = out["hidden"] if len(layers) > 1 else out["hidden"][:, None]          # (B, L, T, d)
            for j in range(len(wavs)):
                n = int(out["mask"][j].sum())
                lengths.append(n)
                for i in range(len(layers)):
                    feats[i].append(h[j, i, :n].float().cpu().numpy())
    X = [np.concatenate(f).astype(np.float32, copy=False) for f in feats]
    return X, np.array(lengths, dtype=np.int64), enc.hop_samples, enc.n_hidden


def kmeans_seed(seed: int, *parts: int) -> int:
    """A 32-bit random_state from the set's seed and what the fit is of (run seed, fold, layer, K)."""
    return int(np.random.SeedSequence([seed, *[int(p) % 2**32 for p in parts]]).generate_state(1)[0])


def fit_kmeans(X: np.ndarray, k: int, *, random_state: int, opts: KMeansOptions, threads: int = 1,
               key: str = "pseudo_labels") -> tuple[np.ndarray, dict[str, Any]]:
    """MiniBatchKMeans with ``k`` clusters fitted on ``X`` (or a seeded subset); every row's cluster, and a summary."""
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    n = len(X)
    fit_x = X
    if opts.max_fit_frames and n > opts.max_fit_frames:
        pick = np.sort(np.random.default_rng(random_state).choice(n, opts.max_fit_frames, replace=False))
        fit_x = X[pick]
    if k > len(fit_x):
        raise InputError(f"config: {key}.ks: K = {k} clusters but only {len(fit_x)} training frames to fit them on")
    km = MiniBatchKMeans(n_clusters=k, init="k-means++", batch_size=opts.batch_size, n_init=opts.n_init,
                         max_iter=opts.max_iter, max_no_improvement=opts.max_no_improvement, tol=opts.tol,
                         reassignment_ratio=opts.reassignment_ratio, init_size=opts.init_size,
                         random_state=random_state, compute_labels=False)
    t0 = time.time()
    with threadpool_limits(threads):
        km.fit(fit_x)
        t_fit = time.time() - t0
        labels = np.concatenate([km.predict(X[i:i + 200_000]) for i in range(0, n, 200_000)])
    counts = np.bincount(labels, minlength=k)
    info = {"k": k, "random_state": random_state, "n_frames": n, "n_fit_frames": len(fit_x),
            "n_steps": int(km.n_steps_), "n_iter": int(km.n_iter_), "inertia_per_frame": float(km.inertia_) / len(fit_x)
            if km.inertia_ is not None else None, "clusters_used": int((counts > 0).sum()),
            "fit_seconds": round(t_fit, 3), "assign_seconds": round(time.time() - t0 - t_fit, 3)}
    log.info("k-means K=%d: %d frames, %d steps, %d of %d clusters used, fit %.1f s", k, n, km.n_steps_,
             info["clusters_used"], k, t_fit)
    return labels, info


def options_record(opts: KMeansOptions) -> dict[str, Any]:
    return asdict(opts)
