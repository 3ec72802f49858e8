"""Train one (paper, variant, protocol, fold, seed) run on cached features and predict.

One call = one Snakemake job = one GPU job on a cluster.  The run directory receives:

* ``predictions.csv``: one row per val/test utterance: ``utt_id, fold, split, label, pred,
  logit_0..logit_{C-1}`` (the format the fusion search and the scorer read);
* ``train_log.csv``: per-epoch training loss and validation scores;
* ``model.pt``: the selected weights;
* ``provenance.json``: written by the caller through :mod:`emorepro.provenance`.

Determinism: the seed seeds torch, numpy and the data order; deterministic algorithms are
enforced (cuDNN included), and the DataLoader runs in-process.  On CPU the same seed gives
byte-identical predictions, which the test suite checks.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io import InputError, atomic_path, write_csv

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 100               # Zhang et al.: 100 epochs
    batch_size: int = 32
    lr: float = 1e-4                # Adam 1e-4
    weight_decay: float = 1e-5      # "1e-5 decay rate", read as L2 weight decay
    grad_clip: float | None = None
    max_seconds: float = 7.5        # first 7.5 s, zero-padded (Zhang et al. Sec. 3.2)
    frame_rate: float = 100.0       # fbank frames per second (10 ms shift)
    feature_layer: int = 0          # index into the cache's exposed layers
    normalize: bool = True          # z-score features with training-split statistics
    selection: str = "val_uar"      # "val_uar" (needs a val split) or "last"
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def set_determinism(seed: int, threads: int) -> None:
    import random

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required for deterministic cuBLAS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(max(1, threads))


def _load_split(cache, utts: Sequence[str], cfg: TrainConfig):
    """Fixed-length (N, T, D) float32 array: first ``max_seconds``, zero-padded, plus lengths."""
    max_frames = int(round(cfg.max_seconds * cfg.frame_rate))
    dim = cache.dim
    x = np.zeros((len(utts), max_frames, dim), dtype=np.float32)
    lengths = np.zeros(len(utts), dtype=np.int64)
    for i, u in enumerate(utts):
        f = np.asarray(cache[u][cfg.feature_layer], dtype=np.float32)[:max_frames]  # (T, D)
        x[i, : len(f)] = f
        lengths[i] = len(f)
    return x, lengths


def run_training(*, manifest_csv: str, folds_csv: str, cache_dir: str, fold: int, seed: int,
                 classes: Sequence[str], model: str, model_params: dict, train: dict, out_dir: str,
                 device: str | None = None) -> dict:
    """Train and predict one fold; returns a summary dict (epochs, selected epoch, seconds)."""
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from .features.cache import FeatureCache
    from .models import build_model

    cfg = TrainConfig(**train)
    set_determinism(seed, cfg.threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    manifest = pd.read_csv(manifest_csv, keep_default_na=False)
    folds = pd.read_csv(folds_csv)
    f = folds[folds["fold"] == fold]
    if f.empty:
        raise InputError(f"{folds_csv}: no rows for fold {fold} (config: protocol folds)")
    cls_index = {c: i for i, c in enumerate(classes)}
    labels = manifest.set_index("utt_id")["label"]
    bad = sorted(set(labels[f["utt_id"]]) - set(cls_index))
    if bad:
        raise InputError(f"{manifest_csv}: labels {bad} are not in config classes {list(classes)}")
    splits = {s: f.loc[f["split"] == s, "utt_id"].tolist() for s in ("train", "val", "test")}
    if not splits["train"] or not splits["test"]:
        raise InputError(f"{folds_csv}: fold {fold} has an empty train or test split")
    if cfg.selection == "val_uar" and not splits["val"]:
        raise InputError(f"config: train.selection is 'val_uar' but fold {fold} of {folds_csv} has no val split")

    cache = FeatureCache(cache_dir)
    data = {s: _load_split(cache, u, cfg) for s, u in splits.items() if u}
    y = {s: np.array([cls_index[labels[u]] for u in splits[s]]) for s in data}
    if cfg.normalize:
        xt, lt = data["train"]
        real = np.concatenate([xt[i, :n] for i, n in enumerate(lt)])
        mu, sd = real.mean(0), real.std(0) + 1e-5
        for s, (x, lens) in data.items():
            for i, n in enumerate(lens):
                x[i, :n] = (x[i, :n] - mu) / sd  # padding stays exactly zero, as in the paper

    net, mcfg = build_model(model, {**model_params, "n_classes": len(classes)})
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)

    def predict(split: str) -> np.ndarray:
        net.eval()
        x, lens = data[split]
        outs = []
        with torch.no_grad():
            for i in range(0, len(x), cfg.batch_size):
                xb = torch.from_numpy(x[i:i + cfg.batch_size]).to(device)
                lb = torch.from_numpy(lens[i:i + cfg.batch_size]).to(device)
                outs.append(net(xb, lb)["logits"].float().cpu().numpy())
        return np.concatenate(outs)

    from sklearn.metrics import recall_score
    from tqdm import tqdm

    xtr, ltr = data["train"]
    ytr = torch.from_numpy(y["train"])
    history, best, best_state = [], -1.0, None
    t0 = time.time()
    for epoch in tqdm(range(1, cfg.epochs + 1), desc=f"fold{fold} seed{seed}", mininterval=5, leave=False):
        net.train()
        perm = torch.randperm(len(xtr), generator=gen).numpy()
        total, nb = 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb = torch.from_numpy(xtr[idx]).to(device)
            lb = torch.from_numpy(ltr[idx]).to(device)
            loss = F.cross_entropy(net(xb, lb)["logits"], ytr[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach().item()
            nb += 1
        row = {"epoch": epoch, "train_loss": total / nb, "seconds": round(time.time() - t0, 3)}
        if "val" in data:
            pv = predict("val").argmax(1)
            row["val_uar"] = float(recall_score(y["val"], pv, average="macro", labels=sorted(set(y["val"]))))
            row["val_war"] = float((pv == y["val"]).mean())
        history.append(row)
        score = row.get("val_uar", 0.0) if cfg.selection == "val_uar" else epoch
        if score > best:  # strict: the earliest best epoch wins ties
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        log.info("epoch %d %s", epoch, row)
    net.load_state_dict(best_state)

    rows = []
    for split in ("val", "test"):
        if split not in data:
            continue
        logits = predict(split)
        df = pd.DataFrame({"utt_id": splits[split], "fold": fold, "split": split, "label": y[split],
                           "pred": logits.argmax(1)})
        for c in range(logits.shape[1]):
            df[f"logit_{c}"] = logits[:, c]
        rows.append(df)
    preds = pd.concat(rows, ignore_index=True)
    write_csv(out / "predictions.csv", preds, float_format="%.7g")
    write_csv(out / "train_log.csv", pd.DataFrame(history), float_format="%.6g")
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"model": model, "config": asdict(mcfg), "state_dict": best_state}, tmp)
    return {"selected_epoch": best_epoch, "epochs": cfg.epochs, "train_seconds": round(time.time() - t0, 3),
            "device": device, "n": {s: len(u) for s, u in splits.items()}}
