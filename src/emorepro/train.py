"""Train one (paper, variant, protocol, fold, seed) run and predict: the one training engine.

One call = one Snakemake job = one GPU job on a cluster.  The run directory receives:

* ``predictions.csv``: one row per val/test utterance: ``utt_id, fold, split, label, pred,
  logit_0..logit_{C-1}`` (plus recipe-specific columns, e.g. ``valence_pred``): the format
  the scorer and the fusion search read (a model whose forward returns no ``logits``, such as a
  masked-prediction stage, writes the rows without ``pred``/``logit_*``: nothing can score it);
* ``train_log.csv``: one row per evaluation point (every epoch, or every ``eval_every``
  optimiser steps): epoch, step, training loss, validation (and, for an oracle selection,
  test) scores, and ``selected`` (1 on the row whose weights were kept);
* ``model.pt``: what was selected (epoch, step, a sha256 of the selected weights) and, with
  ``train.keep_model``, the weights: everything except the encoders in ``state_dict``, each
  fine-tuned encoder as an ordinary checkpoint directory ``encoder_<role>/``.  Frozen encoders
  are never written (they equal their checkpoint, whose hashes provenance records);
* ``embeddings.npz`` (``train.save_embeddings``): the model's ``"embedding"`` output per utterance;
* ``provenance.json``: written by the caller through :mod:`emorepro.provenance`.

The contract with the families (:class:`~emorepro.models.base.Recipe`,
:class:`~emorepro.models.base.RunContext`, :class:`~emorepro.models.base.TrainConfig`) lives in
:mod:`emorepro.models.base`; this module imports the families, never the reverse.  Encoders to
fine-tune are loaded here (:mod:`emorepro.encoders.finetune`) and handed over in the context,
feature caches are opened here, waveforms are read here (:mod:`emorepro.audio`).

Determinism: the seed seeds torch, numpy and the data order; deterministic algorithms are
enforced (cuDNN included), and batches are built in-process.  On CPU the same seed gives
byte-identical predictions, which the test suite checks.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .folds import check_fold_splits
from .io import InputError, atomic_path, sha256_file, write_csv
from .models.base import ORACLE_SELECTIONS, SELECTIONS, Recipe, RunContext, TrainConfig  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

MODEL_FORMAT = "emorepro-run-model/2"


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
    """Model outputs for a whole split, in split order, as numpy arrays (eval mode, no gradients)."""
    import torch

    net.eval()
    n = len(recipe.ctx.splits[split])
    bs = recipe.ctx.cfg.eval_batch_size or recipe.ctx.cfg.batch_size
    outs: dict[str, list] = {}
    with torch.no_grad():
        for i in range(0, n, bs):
            out = _forward(net, recipe, recipe.batch(split, np.arange(i, min(i + bs, n))))
            for k, v in out.items():
                if torch.is_tensor(v) and v.dim() >= 1 and v.size(0) == min(bs, n - i):
                    outs.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


# --------------------------------------------------------------------------- evaluation and selection


def _selection_subset(ctx: RunContext, split: str) -> np.ndarray | None:
    """Positions of ``split`` that the selection scores (``selection_corpus``), or None for all."""
    corpus = ctx.cfg.selection_corpus
    if not corpus:
        return None
    if "corpus" not in ctx.manifest.columns:
        raise InputError(f"config: train.selection_corpus is {corpus!r} but the manifest has no `corpus` column "
                         "(only a union corpus has one)")
    keep = np.asarray(ctx.manifest.loc[ctx.splits[split], "corpus"] == corpus)
    if not keep.any():
        raise InputError(f"config: train.selection_corpus {corpus!r}: no {split} utterance of fold {ctx.fold} is in it")
    return keep


def _evaluate(net, recipe: Recipe, split: str, y: np.ndarray, subset: np.ndarray | None) -> dict[str, float]:
    from .metrics import uar, war

    out = predict(net, recipe, split)
    row: dict[str, float] = {}
    if "logits" in out:
        pred = out["logits"].argmax(1)
        yy, pp = (y, pred) if subset is None else (y[subset], pred[subset])
        row[f"{split}_uar"] = uar(yy, pp)
        row[f"{split}_war"] = war(yy, pp)
    row.update({f"{split}_{k}": float(v) for k, v in recipe.extra_columns(split, out).items() if np.ndim(v) == 0})
    return row


def _score(row: dict, selection: str) -> float:
    if selection == "last":
        return float(row["step"])
    if selection == "val_ccc":   # regression-only runs (Ispas et al. Con rows)
        return float(np.mean([row["val_ccc_valence"], row["val_ccc_arousal"]]))
    key = {"val_uar": "val_uar", "test_uar_oracle": "test_uar", "test_war_oracle": "test_war"}[selection]
    return float(row.get(key, -np.inf))


@dataclass
class FitResult:
    history: list[dict]          # one row per evaluation point
    epoch: int                   # selected epoch (the epoch the selected step belongs to)
    step: int                    # selected optimiser step
    state: dict                  # the selected state_dict (CPU tensors)


def _param_groups(net, recipe: Recipe, cfg: TrainConfig) -> list[dict]:
    groups = recipe.parameter_groups(net)
    if groups is not None:
        return groups
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not cfg.param_groups:
        return [{"params": [p for _, p in params]}]
    prefixes = sorted(cfg.param_groups, key=len, reverse=True)   # longest prefix wins
    by: dict[str | None, list] = {}
    for n, p in params:
        by.setdefault(next((q for q in prefixes if n.startswith(q)), None), []).append(p)
    unused = sorted(set(cfg.param_groups) - set(by))
    if unused:
        raise InputError(f"config: train.param_groups: {unused} match no trainable parameter name "
                         f"(names start with {sorted({n.split('.')[0] + '.' for n, _ in params})})")
    out = [{"params": by[None]}] if None in by else []
    for q in prefixes:
        if q in by:
            out.append({"params": by[q], **cfg.param_groups[q]})
    return out


def fit(net, recipe: Recipe) -> FitResult:
    """The shared training loop.

    Per optimiser step: ``accum_steps`` micro-batches of ``batch_size`` utterances, each loss
    weighted by its share of the step's utterances (for a per-utterance mean loss the update is
    that of one batch of ``batch_size * accum_steps``); clipping; Adam or AdamW.  Evaluation after
    every epoch, or every ``eval_every`` optimiser steps and after the last one; the selected
    evaluation point is the first best by ``selection`` (``last``: the final one).
    """
    import torch
    from tqdm import tqdm

    ctx, cfg = recipe.ctx, recipe.ctx.cfg
    groups = _param_groups(net, recipe, cfg)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(ctx.seed)
    n_train = len(ctx.splits["train"])
    if n_train == 0:
        raise InputError(f"fold {ctx.fold}: the training set is empty")
    y = {s: ctx.labels(s) for s in ("val", "test") if ctx.splits.get(s)}
    eval_splits = ["val"] if "val" in y else []
    if cfg.is_oracle:
        eval_splits.append("test")   # labelled variant: the test split is scored at every evaluation point
    subsets = {s: _selection_subset(ctx, s) for s in eval_splits}
    micro_per_epoch = math.ceil(n_train / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.accum_steps)
    last_step = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    history: list[dict] = []
    best, best_row, best_state = -np.inf, None, None
    t0 = time.time()
    step, run_loss, run_n = 0, 0.0, 0

    def evaluate(epoch: int) -> None:
        nonlocal best, best_row, best_state, run_loss, run_n
        row = {"epoch": epoch, "step": step, "train_loss": run_loss / max(run_n, 1),
               "seconds": round(time.time() - t0, 3)}
        run_loss, run_n = 0.0, 0
        for s in eval_splits:
            row.update(_evaluate(net, recipe, s, y[s], subsets[s]))
        history.append(row)
        score = _score(row, cfg.selection)
        if score > best:  # strict: the earliest best evaluation point wins ties
            best, best_row = score, row
            if cfg.selection != "last":
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        log.info("epoch %d step %d %s", epoch, step, row)

    done = False
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="epochs", mininterval=10, leave=False):
        recipe.on_epoch_start(epoch, net)
        net.train()
        perm = torch.randperm(n_train, generator=gen).numpy()
        micro = [perm[i:i + cfg.batch_size] for i in range(0, n_train, cfg.batch_size)]
        for g in range(0, len(micro), cfg.accum_steps):
            group = micro[g:g + cfg.accum_steps]
            n_group = sum(len(idx) for idx in group)
            opt.zero_grad(set_to_none=True)
            for idx in group:
                batch = recipe.batch("train", idx)
                loss = recipe.loss(_forward(net, recipe, batch), batch, epoch)
                (loss if len(group) == 1 else loss * (len(idx) / n_group)).backward()
                run_loss += loss.detach().item()
                run_n += 1
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            if step == last_step:
                done = True
                break
            if cfg.eval_every and step % cfg.eval_every == 0:
                evaluate(epoch)
                net.train()
        if done or not cfg.eval_every:
            evaluate(epoch)
        if done:
            break
    if cfg.selection == "last":
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    for r in history:
        r["selected"] = int(r is best_row)
    return FitResult(history, int(best_row["epoch"]), int(best_row["step"]), best_state)


# --------------------------------------------------------------------------- what a run keeps


def state_sha256(state: dict) -> str:
    """A digest of a state_dict's names, dtypes, shapes and bytes (sorted by name)."""
    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def encoder_prefixes(net, encoders: dict[str, Any]) -> dict[str, str]:
    """Role -> state_dict prefix of each handed-over encoder inside ``net`` (found by identity)."""
    out = {}
    for name, mod in net.named_modules():
        for role, enc in encoders.items():
            if mod is enc and role not in out:
                out[role] = f"{name}." if name else ""
    return out


def save_run_model(path: Path, net, state: dict, *, model: str, model_params: dict, fold: int, seed: int,
                   fit_result: FitResult, encoders: dict[str, Any], keep: bool) -> dict:
    """Write ``model.pt`` (and, when kept, ``encoder_<role>/`` next to it); returns its record without weights."""
    import torch

    prefixes = encoder_prefixes(net, encoders)
    record: dict[str, Any] = {
        "format": MODEL_FORMAT, "model": model, "model_params": dict(model_params), "fold": fold, "seed": seed,
        "selected": {"epoch": fit_result.epoch, "step": fit_result.step}, "kept": bool(keep),
        "state_sha256": state_sha256(state), "n_tensors": len(state), "encoders": {}}
    for role, enc in encoders.items():
        pre = prefixes.get(role)
        info: dict[str, Any] = {"prefix": pre, "checkpoint": getattr(enc, "checkpoint", None),
                                "trainable": bool(enc.trainable), "dir": None, "files": {}}
        if keep and enc.trainable and pre is not None:
            d = path.parent / f"encoder_{role}"
            enc.save_pretrained(d)   # the net holds the selected weights (fit loaded them)
            info["dir"] = d.name
            info["files"] = {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()}
        record["encoders"][role] = info
    skip = tuple(p for p in prefixes.values() if p)
    heads = {k: v for k, v in state.items() if not (skip and k.startswith(skip))} if keep else None
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # Saved through a file object: given a path, torch names the archive after the (random) temp file,
        # and identical runs would give different bytes.
        torch.save({**record, "state_dict": heads}, fh)
    return record


def load_parent_state(parent_model: str, net, encoders: dict[str, Any], *, fold: int, seed: int,
                      modules: Sequence[str] | None) -> dict:
    """``init_from``: load the parent run's kept weights into ``net``; returns what was loaded.

    Heads come from the parent's ``model.pt``, encoders from its ``encoder_<role>/`` directories
    (hash-checked against the record) mapped onto this net's encoder of the same role.
    ``modules``: parameter-name prefixes to take (every child key under them must come from the
    parent); None: every parent tensor the child has (the rest of the parent is listed as unused).
    """
    import torch
    from safetensors.torch import load_file

    p = Path(parent_model)
    if not p.is_file():
        raise InputError(f"train.init_from: the parent run's model {p} does not exist")
    rec = torch.load(p, map_location="cpu", weights_only=False)
    if rec.get("format") != MODEL_FORMAT:
        raise InputError(f"{p}: not a run model of format {MODEL_FORMAT} (got {rec.get('format')!r}); re-run the parent")
    if (rec["fold"], rec["seed"]) != (fold, seed):
        raise InputError(f"train.init_from: {p} is fold {rec['fold']} seed {rec['seed']}, this run is fold {fold} "
                         f"seed {seed}; a run starts only from the same fold and seed")
    if not rec["kept"]:
        raise InputError(f"train.init_from: the parent run {p.parent} did not keep its weights (keep_model was false); "
                         "the workflow keeps them for every experiment that another one starts from: re-run the parent")
    parent: dict[str, Any] = dict(rec["state_dict"] or {})
    child_prefix = encoder_prefixes(net, encoders)
    for role, info in rec["encoders"].items():
        if not info["dir"]:
            continue
        if role not in child_prefix:
            log.warning("init_from: the parent's fine-tuned %s encoder has no counterpart here; not loaded", role)
            continue
        d = p.parent / info["dir"]
        for name, sha in info["files"].items():
            if not (d / name).is_file() or sha256_file(d / name) != sha:
                raise InputError(f"train.init_from: {d / name} is missing or differs from the hash in {p}")
        for k, v in load_file(str(d / "model.safetensors")).items():
            parent[f"{child_prefix[role]}model.{k}"] = v
        if (d / "layer_combine.pt").is_file():
            w = torch.load(d / "layer_combine.pt", map_location="cpu")["layer_combine_weights"]
            parent[f"{child_prefix[role]}layer_combine.weights"] = w
    own = net.state_dict()
    if modules:
        want = [k for k in own if k.startswith(tuple(modules))]
        if not want:
            raise InputError(f"config: train.init_modules {list(modules)} match no parameter of this model")
        missing = [k for k in want if k not in parent]
        if missing:
            raise InputError(f"train.init_from: the parent {p} lacks {len(missing)} tensor(s) under init_modules "
                             f"{list(modules)}, e.g. {missing[:5]}")
    else:
        want = [k for k in own if k in parent]
    bad = [k for k in want if tuple(parent[k].shape) != tuple(own[k].shape)]
    if bad:
        raise InputError(f"train.init_from: shapes differ between {p} and this model for {bad[:5]} "
                         f"(e.g. {tuple(parent[bad[0]].shape)} vs {tuple(own[bad[0]].shape)})")
    if not want:
        raise InputError(f"train.init_from: no tensor of {p} matches this model's parameters")
    net.load_state_dict({k: parent[k] for k in want}, strict=False)
    unused = sorted(set(parent) - set(want))
    log.info("init_from %s: loaded %d tensors (%d of the parent unused)", p, len(want), len(unused))
    return {"model": str(p), "model_sha256": sha256_file(p), "parent_state_sha256": rec["state_sha256"],
            "parent_encoders": {r: {"dir": i["dir"], "files": i["files"]} for r, i in rec["encoders"].items()},
            "n_loaded": len(want), "unused": unused[:50], "n_unused": len(unused),
            "not_loaded": sorted(set(own) - set(want))[:50], "n_not_loaded": len(set(own) - set(want))}


def _wav_source(manifest, audio_manifests: Sequence[str]):
    """``ctx.audio``: the corpus's wavs, and those of ``audio_manifests`` (utterances outside every split)."""
    import pandas as pd

    from .audio import WavSource

    frames = [manifest[["utt_id", "wav"]]]
    for m in audio_manifests:
        more = pd.read_csv(m, keep_default_na=False, usecols=["utt_id", "wav"])
        clash = sorted(set(more["utt_id"]) & set(frames[0]["utt_id"]))
        if clash:
            raise InputError(f"{m}: utterance ids {clash[:3]} are also in the corpus manifest")
        frames.append(more)
    return WavSource(pd.concat(frames, ignore_index=True))


def _save_embeddings(path: Path, outs: dict[str, dict[str, np.ndarray]], splits: dict[str, list[str]]) -> None:
    arrays = {}
    for split, out in outs.items():
        if "embedding" not in out:
            raise InputError(f"config: train.save_embeddings lists {split!r} but the model returns no 'embedding'")
        arrays[f"{split}_ids"] = np.asarray(splits[split])
        arrays[f"{split}_embedding"] = out["embedding"].astype(np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


# --------------------------------------------------------------------------- one run


def run_training(*, manifest_csv: str, folds_csv: str, caches: dict[str, str], fold: int, seed: int,
                 classes: Sequence[str], model: str, model_params: dict, train: dict, out_dir: str,
                 device: str | None = None, parent_model: str | None = None,
                 extra_inputs: dict[str, str] | None = None, threads: int = 1,
                 outputs: dict[str, str] | None = None, audio_manifests: Sequence[str] = ()) -> dict:
    """Train and predict one fold; returns a summary dict (selected epoch/step, seconds, sizes).

    ``caches`` maps a role the recipe expects (``"audio"``, ``"text"``) to a cache directory, or to a
    list of directories (a union corpus reads its members' caches as one).  Roles listed in
    ``train.finetune`` are loaded as fine-tunable encoders instead.  ``parent_model``: the
    ``model.pt`` of the run that ``train.init_from`` names (same fold and seed).  ``outputs`` names the
    files to write (``predictions``, ``log_csv``, ``model``: a rule's declared outputs); by default
    they are ``predictions.csv``, ``train_log.csv`` and ``model.pt`` in ``out_dir``.  ``threads``:
    torch's CPU threads (the job's share of the machine).  ``audio_manifests``: more manifests whose
    utterances ``ctx.audio`` reads (never in a split: e.g. MMER's augmented copies, named by
    ``extra_inputs``); their ids must not collide with the corpus's.
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
    paths = {k: Path(v) for k, v in {"predictions": out / "predictions.csv", "log_csv": out / "train_log.csv",
                                     "model": out / "model.pt", **(outputs or {})}.items()}

    manifest = pd.read_csv(manifest_csv, keep_default_na=False).set_index("utt_id", drop=False)
    folds = pd.read_csv(folds_csv)
    f = folds[folds["fold"] == fold]
    if f.empty:
        raise InputError(f"{folds_csv}: no rows for fold {fold} (config: protocol folds)")
    if len(set(classes)) != len(classes):
        raise InputError(f"config: classes {list(classes)} lists a class twice (each class is one output)")
    unknown = sorted(set(f["utt_id"]) - set(manifest.index))
    if unknown:
        raise InputError(f"{folds_csv}: fold {fold} names utterances that are not in {manifest_csv}, e.g. {unknown[:3]}")
    check_fold_splits(f, manifest.reset_index(drop=True), where=folds_csv)   # no leak within the fold
    bad = sorted(set(manifest.loc[f["utt_id"], "label"]) - set(classes))
    if bad:
        raise InputError(f"{manifest_csv}: labels {bad} are not in config classes {list(classes)}")
    never = [c for c in classes if c not in set(manifest["label"])]
    if never:
        raise InputError(f"config: classes {never} never occur in {manifest_csv} (an output nothing trains); "
                         f"check classes against the corpus's label_map")
    splits = {s: f.loc[f["split"] == s, "utt_id"].tolist() for s in ("train", "val", "test")}
    if not splits["train"] or not splits["test"]:
        raise InputError(f"{folds_csv}: fold {fold} has an empty train or test split")
    if cfg.selection in ("val_uar", "val_ccc") and not splits["val"]:
        raise InputError(f"config: train.selection is {cfg.selection!r} but fold {fold} of {folds_csv} has no val split")
    if bool(cfg.init_from) != bool(parent_model):
        raise InputError("config: train.init_from needs the parent run's model.pt (the workflow passes it), and a "
                         "parent model needs train.init_from")
    overlap = sorted(set(cfg.finetune) & set(caches))
    if overlap:
        raise InputError(f"config: roles {overlap} are both fine-tuned (train.finetune) and read from a feature cache")

    spec = get_model(model)
    # Encoders to fine-tune: loaded here, handed to the recipe (a family never loads one itself).
    from .encoders.finetune import load_finetune_encoder

    encoders = {role: load_finetune_encoder(role, opts, seed=seed) for role, opts in cfg.finetune.items()}
    ctx = RunContext(manifest=manifest, splits=splits, classes=list(classes),
                     caches={k: open_cache(v) for k, v in caches.items()}, model_params=dict(model_params),
                     cfg=cfg, seed=seed, device=device, encoders=encoders,
                     audio=_wav_source(manifest, audio_manifests) if "wav" in manifest.columns else None,
                     fold=fold, run_dir=out, extra_inputs=dict(extra_inputs or {}))
    n_fold_train = len(splits["train"])
    chosen = spec.recipe.training_set(ctx)
    if chosen is not None:
        ctx.splits = {**splits, "train": list(chosen)}
        log.info("training set from the recipe: %d utterances (the fold's training split has %d)",
                 len(chosen), n_fold_train)
    recipe = spec.recipe(ctx)
    net = recipe.build().to(device)
    init = None
    if parent_model:
        init = load_parent_state(parent_model, net, encoders, fold=fold, seed=seed, modules=cfg.init_modules)
    t0 = time.time()
    res = fit(net, recipe)

    frames, emb_outs = [], {}
    for split in ("val", "test", "train"):
        if not ctx.splits[split] or (split == "train" and "train" not in cfg.save_embeddings):
            continue
        outs = predict(net, recipe, split)
        if split in cfg.save_embeddings:
            emb_outs[split] = outs
        if split == "train":
            continue
        df = pd.DataFrame({"utt_id": ctx.splits[split], "fold": fold, "split": split, "label": ctx.labels(split)})
        logits = outs.get("logits")   # None: a stage that makes no utterance-level prediction (GMP-ATL's retraining)
        if logits is not None:
            df["pred"] = logits.argmax(1)
            for c in range(logits.shape[1]):
                df[f"logit_{c}"] = logits[:, c]
        for k, v in recipe.extra_columns(split, outs).items():
            if np.ndim(v) == 1:
                df[k] = v
        frames.append(df)
    write_csv(paths["predictions"], pd.concat(frames, ignore_index=True), float_format="%.7g")
    write_csv(paths["log_csv"], pd.DataFrame(res.history), float_format="%.6g")
    if emb_outs:
        _save_embeddings(out / "embeddings.npz", emb_outs, ctx.splits)
    record = save_run_model(paths["model"], net, res.state, model=model, model_params=model_params, fold=fold,
                            seed=seed, fit_result=res, encoders=encoders, keep=cfg.keep_model)
    n_params = int(sum(p.numel() for p in net.parameters()))
    frozen = set().union(*(e._always_frozen for e in encoders.values())) if encoders else set()
    n_trainable = int(sum(p.numel() for p in net.parameters() if id(p) not in frozen))
    return {"selected_epoch": res.epoch, "selected_step": res.step, "selection": cfg.selection,
            "oracle": cfg.is_oracle, "epochs": cfg.epochs, "steps": res.history[-1]["step"],
            "train_seconds": round(time.time() - t0, 3), "device": device,
            "n": {s: len(u) for s, u in ctx.splits.items()}, "n_fold_train": n_fold_train,
            "n_parameters": n_params, "n_trainable_parameters": n_trainable,
            "encoders": {r: e.resolved() for r, e in encoders.items()},
            "init_from": None if init is None else {"experiment": cfg.init_from, **init},
            "model": {k: record[k] for k in ("kept", "state_sha256", "selected", "encoders")},
            "run_dir_bytes": int(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))}
