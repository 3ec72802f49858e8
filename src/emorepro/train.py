"""Train one (paper, variant, protocol, fold, seed) run on cached features and predict.

One call = one Snakemake job = one GPU job on a cluster.  The run directory receives:

* ``predictions.csv``: one row per val/test utterance: ``utt_id, fold, split, label, pred,
  logit_0..logit_{C-1}`` (plus recipe-specific columns, e.g. ``valence_pred``): the format
  the scorer and the fusion search read;
* ``train_log.csv``: per-epoch training loss and validation scores;
* ``model.pt``: the selected weights;
* ``provenance.json``: written by the caller through :mod:`emorepro.provenance`.

The loop (:func:`fit`) is shared by every model family; what differs per family (how
batches are built from the feature cache, the loss, per-epoch hooks such as modality
masking) lives in a :class:`Recipe` registered in :data:`emorepro.models.MODELS`.

Determinism: the seed seeds torch, numpy and the data order; deterministic algorithms are
enforced (cuDNN included), and batches are built in-process.  On CPU the same seed gives
byte-identical predictions, which the test suite checks.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
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
    grad_clip: float | None = None  # max gradient norm (Ispas et al.: 1.0)
    selection: str = "val_uar"      # "val_uar", "val_ccc" (mean val CCC of V and A; needs a val split) or "last"
    data: dict[str, Any] = field(default_factory=dict)   # recipe-specific data options
    loss: dict[str, Any] = field(default_factory=dict)   # recipe-specific loss options


@dataclass
class RunContext:
    """Everything a recipe may read about its run (no Snakemake, no global config)."""

    manifest: Any                   # pandas DataFrame, indexed by utt_id
    splits: dict[str, list[str]]    # split -> utterance ids (train/val/test)
    classes: list[str]
    caches: dict[str, Any]          # name -> FeatureCache
    model_params: dict[str, Any]
    cfg: TrainConfig
    seed: int
    device: str

    def labels(self, split: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[self.manifest.at[u, "label"]] for u in self.splits[split]], dtype=np.int64)


class Recipe:
    """Per-family glue between cached features and a model.  Subclasses implement:

    ``build() -> nn.Module``; ``batch(split, idx) -> dict`` of tensors (with ``"label"``);
    ``loss(out, batch, epoch) -> Tensor``; optionally ``on_epoch_start(epoch, net)`` and
    ``extra_columns(split, outs) -> dict[str, array]`` for predictions.csv.
    The model's ``forward(**inputs)`` must return a dict with ``"logits"``.
    """

    input_keys: tuple[str, ...] = ()

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def build(self):  # pragma: no cover - interface
        raise NotImplementedError

    def batch(self, split: str, idx: np.ndarray) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, out: dict, batch: dict, epoch: int):  # pragma: no cover - interface
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, net) -> None:
        pass

    def extra_columns(self, split: str, outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {}


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


def _forward(net, recipe: Recipe, batch: dict) -> dict:
    return net(**{k: batch[k] for k in recipe.input_keys if k in batch})


def predict(net, recipe: Recipe, split: str) -> dict[str, np.ndarray]:
    """Model outputs for a whole split, in split order, as numpy arrays."""
    import torch

    net.eval()
    n = len(recipe.ctx.splits[split])
    bs = recipe.ctx.cfg.batch_size
    outs: dict[str, list] = {}
    with torch.no_grad():
        for i in range(0, n, bs):
            out = _forward(net, recipe, recipe.batch(split, np.arange(i, min(i + bs, n))))
            for k, v in out.items():
                if torch.is_tensor(v) and v.dim() >= 1 and v.size(0) == min(bs, n - i):
                    outs.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def fit(net, recipe: Recipe) -> tuple[list[dict], int, dict]:
    """The shared training loop: Adam, optional clipping, selection on validation UAR or last epoch."""
    import torch
    from sklearn.metrics import recall_score
    from tqdm import tqdm

    ctx, cfg = recipe.ctx, recipe.ctx.cfg
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(ctx.seed)
    n_train = len(ctx.splits["train"])
    y_val = ctx.labels("val") if ctx.splits.get("val") else None
    history, best, best_epoch, best_state = [], -np.inf, 0, None
    t0 = time.time()
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="epochs", mininterval=10, leave=False):
        recipe.on_epoch_start(epoch, net)
        net.train()
        perm = torch.randperm(n_train, generator=gen).numpy()
        total, nb = 0.0, 0
        for i in range(0, n_train, cfg.batch_size):
            batch = recipe.batch("train", perm[i:i + cfg.batch_size])
            loss = recipe.loss(_forward(net, recipe, batch), batch, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach().item()
            nb += 1
        row = {"epoch": epoch, "train_loss": total / nb, "seconds": round(time.time() - t0, 3)}
        if y_val is not None:
            out = predict(net, recipe, "val")
            if "logits" in out:
                pv = out["logits"].argmax(1)
                row["val_uar"] = float(recall_score(y_val, pv, average="macro", labels=sorted(set(y_val))))
                row["val_war"] = float((pv == y_val).mean())
            row.update({f"val_{k}": float(v) for k, v in recipe.extra_columns("val", out).items()
                        if np.ndim(v) == 0})
        history.append(row)
        score = row.get("val_uar", -np.inf) if cfg.selection == "val_uar" else epoch
        if cfg.selection == "val_ccc":  # regression-only runs (Ispas et al. Con rows)
            score = float(np.mean([row["val_ccc_valence"], row["val_ccc_arousal"]]))
        if score > best:  # strict: the earliest best epoch wins ties
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        log.info("epoch %d %s", epoch, row)
    net.load_state_dict(best_state)
    return history, best_epoch, best_state


def run_training(*, manifest_csv: str, folds_csv: str, caches: dict[str, str], fold: int, seed: int,
                 classes: Sequence[str], model: str, model_params: dict, train: dict, out_dir: str,
                 device: str | None = None, threads: int = 1, outputs: dict[str, str] | None = None) -> dict:
    """Train and predict one fold; returns a summary dict (selected epoch, seconds, sizes).

    ``caches`` maps a role the recipe expects (``"audio"``, ``"text"``) to a cache directory, or to a
    list of directories (a union corpus reads its members' caches as one).  ``outputs`` names the
    files to write (``predictions``, ``log_csv``, ``model``: a rule's declared outputs); by default
    they are ``predictions.csv``, ``train_log.csv`` and ``model.pt`` in ``out_dir``.  ``threads``:
    torch's CPU threads (the job's share of the machine).
    """
    import pandas as pd
    import torch

    from .features.union import open_cache
    from .models import get_model

    cfg = TrainConfig(**train)
    set_determinism(seed, threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": out / "predictions.csv", "log_csv": out / "train_log.csv", "model": out / "model.pt",
             **(outputs or {})}

    manifest = pd.read_csv(manifest_csv, keep_default_na=False).set_index("utt_id", drop=False)
    folds = pd.read_csv(folds_csv)
    f = folds[folds["fold"] == fold]
    if f.empty:
        raise InputError(f"{folds_csv}: no rows for fold {fold} (config: protocol folds)")
    bad = sorted(set(manifest.loc[f["utt_id"], "label"]) - set(classes))
    if bad:
        raise InputError(f"{manifest_csv}: labels {bad} are not in config classes {list(classes)}")
    splits = {s: f.loc[f["split"] == s, "utt_id"].tolist() for s in ("train", "val", "test")}
    if not splits["train"] or not splits["test"]:
        raise InputError(f"{folds_csv}: fold {fold} has an empty train or test split")
    if cfg.selection in ("val_uar", "val_ccc") and not splits["val"]:
        raise InputError(f"config: train.selection is {cfg.selection!r} but fold {fold} of {folds_csv} has no val split")

    spec = get_model(model)
    ctx = RunContext(manifest=manifest, splits=splits, classes=list(classes),
                     caches={k: open_cache(v) for k, v in caches.items()}, model_params=dict(model_params),
                     cfg=cfg, seed=seed, device=device)
    recipe = spec.recipe(ctx)
    net = recipe.build().to(device)
    t0 = time.time()
    history, best_epoch, best_state = fit(net, recipe)

    frames = []
    for split in ("val", "test"):
        if not splits[split]:
            continue
        outs = predict(net, recipe, split)
        logits = outs["logits"]
        df = pd.DataFrame({"utt_id": splits[split], "fold": fold, "split": split, "label": ctx.labels(split),
                           "pred": logits.argmax(1)})
        for c in range(logits.shape[1]):
            df[f"logit_{c}"] = logits[:, c]
        for k, v in recipe.extra_columns(split, outs).items():
            if np.ndim(v) == 1:
                df[k] = v
        frames.append(df)
    write_csv(paths["predictions"], pd.concat(frames, ignore_index=True), float_format="%.7g")
    write_csv(paths["log_csv"], pd.DataFrame(history), float_format="%.6g")
    with atomic_path(paths["model"]) as tmp:
        torch.save({"model": model, "model_params": dict(model_params), "state_dict": best_state}, tmp)
    return {"selected_epoch": best_epoch, "epochs": cfg.epochs, "train_seconds": round(time.time() - t0, 3),
            "device": device, "n": {s: len(u) for s, u in splits.items()},
            "n_parameters": int(sum(p.numel() for p in net.parameters()))}
