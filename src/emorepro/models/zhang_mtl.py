"""Zhang et al. (2022) multi-corpus variants: combined, style MTL, selective MTL, and "half".

Same network as the baseline (:class:`~emorepro.models.zhang_bilstm.ZhangBiLSTM`, whose
optional style head classifies acted vs spontaneous from FC2's output); what differs is
the recipe, configured per experiment through ``train.loss`` and ``train.data``:

``loss.style_lambda`` (lambda of Eq. 3)
    ``null``: no style head, cross-entropy on emotion only (baseline, *combined*).
    A number: a style head is added and, per sample *i*,
    ``L_i = lambda_i * CE_SER,i + (1 - lambda_i) * CE_style,i`` with ``lambda_i = lambda``;
    the batch loss is the mean of ``L_i`` (for plain MTL this is exactly
    ``lambda * L_SER + (1 - lambda) * L_style`` of Eq. 3).  The paper uses 0.8.
``loss.style_exclude`` (selective MTL, Sec. 2.3)
    Emotion classes whose samples get no style loss: ``lambda_i = 1`` for them ("the style
    recognition loss is not computed for the neutral category.  The value of lambda
    becomes 1 for the neutral category"), so their SER loss keeps full weight.
``loss.styles``
    Style names in head order; each utterance's style is the union manifest's ``style``.
``data.train_fraction`` / ``data.subsample_seed`` (the "(half)" rows of Table 3)
    Train on this fraction of the fold's combined training split, stratified by
    (corpus, emotion) and seeded (default: the run's seed); the test split is untouched.

Predictions gain ``corpus`` (for per-corpus scoring), and with a style head ``style`` and
``style_pred`` (indices into ``loss.styles``): the style classifier accuracy the paper
reports (>= 99.95%) is scored from them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..io import InputError
from .zhang_bilstm import ZhangBiLSTM, ZhangConfig, ZhangData, ZhangRecipe

__all__ = ["ZhangBiLSTM", "ZhangConfig", "ZhangStyleRecipe", "StyleLoss", "style_mtl_loss", "stratified_subset"]

log = logging.getLogger(__name__)


@dataclass
class StyleLoss:
    style_lambda: float | None = None      # lambda of Eq. 3 (paper: 0.8); None = no style task
    style_exclude: list[str] = field(default_factory=list)   # selective MTL: ["neu"]
    styles: list[str] = field(default_factory=lambda: ["acted", "spontaneous"])

    def __post_init__(self):
        if self.style_lambda is not None and not 0.0 <= self.style_lambda <= 1.0:
            raise InputError(f"config: train.loss.style_lambda must be in [0, 1], got {self.style_lambda}")
        if self.style_exclude and self.style_lambda is None:
            raise InputError("config: train.loss.style_exclude needs a style task (train.loss.style_lambda)")


@dataclass
class ZhangStyleData(ZhangData):
    train_fraction: float = 1.0            # 0.5 for the "(half)" rows
    subsample_seed: int | None = None      # None: the run's seed


def style_mtl_loss(logits: torch.Tensor, labels: torch.Tensor, style_logits: torch.Tensor, styles: torch.Tensor,
                   style_lambda: float, style_on: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``lambda_i CE_SER,i + (1 - lambda_i) CE_style,i``.

    logits (B, C), labels (B,), style_logits (B, S), styles (B,); style_on (B,) bool:
    False where the sample's class is excluded from the style task (then lambda_i = 1).
    """
    ser = F.cross_entropy(logits, labels, reduction="none")                  # (B,)
    sty = F.cross_entropy(style_logits, styles, reduction="none")            # (B,)
    lam = torch.where(style_on, torch.full_like(ser, style_lambda), torch.ones_like(ser))
    return (lam * ser + (1.0 - lam) * sty).mean()


def stratified_subset(ids: list[str], strata: list, fraction: float, seed: int) -> list[str]:
    """``round(fraction * len(ids))`` ids, each stratum kept in proportion (within one), seeded.

    Each stratum keeps ``floor(fraction * n_s)``; the remaining slots go to the strata with
    the largest remainders (ties by stratum name).  Ids keep their input order.
    """
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"config: train.data.train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return list(ids)
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        by.setdefault(str(s), []).append(i)
    keys = sorted(by)
    exact = {k: fraction * len(by[k]) for k in keys}
    take = {k: int(np.floor(exact[k])) for k in keys}
    extra = int(round(fraction * len(ids))) - sum(take.values())
    for k in sorted(keys, key=lambda k: (-(exact[k] - take[k]), k))[:extra]:
        take[k] += 1
    keep = []
    for k in keys:  # sorted strata, one permutation each: the same seed gives the same subset
        idx = np.asarray(by[k])
        keep.extend(idx[rng.permutation(len(idx))[: take[k]]].tolist())
    return [ids[i] for i in sorted(keep)]


class ZhangStyleRecipe(ZhangRecipe):
    """:class:`ZhangRecipe` plus the style head and loss, selective masking and training-data fraction."""

    data_cls = ZhangStyleData

    @classmethod
    def training_set(cls, ctx):
        """The "(half)" rows: a stratified, seeded fraction of the fold's training split (None: all of it)."""
        data = ZhangStyleData(**ctx.cfg.data)
        if data.train_fraction >= 1.0:
            return None
        m, train = ctx.manifest, ctx.splits["train"]
        corpus = m.loc[train, "corpus"] if "corpus" in m.columns else [""] * len(train)
        strata = [f"{c}/{lab}" for c, lab in zip(corpus, m.loc[train, "label"])]
        seed = ctx.seed if data.subsample_seed is None else data.subsample_seed
        subset = stratified_subset(train, strata, data.train_fraction, seed)
        log.info("train_fraction %.3g: %d of %d training utterances (stratified by corpus/label, seed %d)",
                 data.train_fraction, len(subset), len(train), seed)
        return subset

    def __init__(self, ctx):
        self.loss_cfg = StyleLoss(**ctx.cfg.loss)
        m = ctx.manifest
        super().__init__(ctx)
        self.corpus = {s: (m.loc[u, "corpus"].to_numpy() if "corpus" in m.columns else None)
                       for s, u in ctx.splits.items() if u}
        if self.loss_cfg.style_lambda is not None:
            if "style" not in m.columns:
                raise InputError("train.loss.style_lambda needs a `style` column in the manifest "
                                 "(train on a union corpus whose members set corpora.<name>.style)")
            index = {s: i for i, s in enumerate(self.loss_cfg.styles)}
            bad = sorted(set(m["style"]) - set(index))
            if bad:
                raise InputError(f"manifest styles {bad} are not in train.loss.styles {self.loss_cfg.styles}")
            unknown = sorted(set(self.loss_cfg.style_exclude) - set(ctx.classes))
            if unknown:
                raise InputError(f"config: train.loss.style_exclude {unknown} are not classes {ctx.classes}")
            excluded = [ctx.classes.index(c) for c in self.loss_cfg.style_exclude]
            self.style = {s: np.array([index[v] for v in m.loc[u, "style"]], dtype=np.int64)
                          for s, u in ctx.splits.items() if u}
            self.style_on = {s: ~np.isin(self.y[s], excluded) for s in self.y}

    def build(self):
        from . import build_model

        n_styles = len(self.loss_cfg.styles) if self.loss_cfg.style_lambda is not None else 0
        return build_model("zhang_bilstm_att", {**self.ctx.model_params, "n_classes": len(self.ctx.classes),
                                                "n_mels": self.ctx.caches["audio"].dim, "n_styles": n_styles})[0]

    def batch(self, split, idx):
        b = super().batch(split, idx)
        if self.loss_cfg.style_lambda is not None:
            d = self.ctx.device
            b["style"] = torch.from_numpy(self.style[split][idx]).to(d)
            b["style_on"] = torch.from_numpy(self.style_on[split][idx]).to(d)
        return b

    def loss(self, out, batch, epoch):
        if self.loss_cfg.style_lambda is None:
            return F.cross_entropy(out["logits"], batch["label"])
        return style_mtl_loss(out["logits"], batch["label"], out["style_logits"], batch["style"],
                              self.loss_cfg.style_lambda, batch["style_on"])

    def extra_columns(self, split, outs):
        cols = {}
        if self.corpus.get(split) is not None:
            cols["corpus"] = self.corpus[split]
        if "style_logits" in outs:
            cols["style"] = self.style[split]
            cols["style_pred"] = outs["style_logits"].argmax(1)
        return cols
