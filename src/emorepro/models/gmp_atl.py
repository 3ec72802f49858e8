"""GMP-ATL (Pan et al., Interspeech 2024): gender-augmented multi-scale pseudo-labels, retraining, AM-softmax.

Reference: Pan, Yang, Lu, Ma, Zhao, "GMP-ATL: Gender-augmented Multi-scale Pseudo-label Enhanced
Adaptive Transfer Learning for Speech Emotion Recognition via HuBERT" (Sec. 3, Fig. 1, Eqs. 1-3).
HuBERT is ``facebook/hubert-base-ls960`` (footnote 1): 12 layers, 768-d, 50 frames/s.

Three stages per fold, each its own workflow step (config ``experiments.pan2024``):

**Stage 1, GMP extraction model** (Fig. 1a; model ``gmp_atl``, :class:`GmpRecipe`, ``gender_head: true``)::

    H     = HuBERT(wav)[layer -1]                  (B, T, 768)   fine-tuned (CNN frozen); frozen as an option
    Z     = BiLSTM(H)                              (B, T, 2 d_lstm)   packed: padding never enters
    z     = MeanPool_T(Z)                          (B, 2 d_lstm)      "MAP", over real frames only
    p     = LinearP(z) = W2 ReLU(W1 z)             (B, d_proj)
    y_emo = W_e p,  y_gen = W_g p                  (B, C), (B, 2)
    L     = 0.9 CE(y_emo) + 0.1 CE(y_gen)                              Eq. 1, alpha_e = 0.9

The gender target is the speaker's (manifest ``gender``, the last field of the utterance id), never the
session prefix (``Ses01F_impro01_M003`` is a man).

**GMPs** (rule ``pseudo_labels``, :mod:`emorepro.pseudo_labels`): frame features of the stage-1 HuBERT at
layer L (the paper: -3) of the fold's training utterances, k-means with K = 64, 512, 4096; frame labels
aligned to HuBERT's 50 Hz frames (:mod:`emorepro.frame_labels`).

**Stage 2, retraining** (Fig. 1b; model ``gmp_atl_retrain``, :class:`GmpRetrainRecipe`)::

    H       = HuBERT(wav, mask_time_indices)[-1]   (B, T, 768)   masked frames replaced by masked_spec_embed
    P       = LinearP(H)                           (B, T, d_proj)  per frame
    y_k     = W_k P  for K in (64, 512, 4096)      (B, T, K)     three softmax heads
    L       = sum_k w_k CE(y_k[masked], labels_k[masked])          CE on masked frames only, as HuBERT

**Stage 3, fine-tuning** (Fig. 1c; model ``gmp_atl``, ``head: ams``): the stage-2 HuBERT -> BiLSTM ->
MAP -> LinearP -> AM-softmax (Eqs. 2-3)::

    cos_j = x^T w_j / (|x| |w_j|)                  (B, C)
    L     = -mean_i log( e^{s(cos_y - m)} / (e^{s(cos_y - m)} + sum_{j != y} e^{s cos_j}) ),  s = 30, m = 0.2
    logits (predictions.csv) = s cos_j, without the margin (the margin exists only in training)

The "CE" rows of Table 3 replace the AM-softmax head with a linear layer and cross-entropy (``head: ce``);
the rows without GMPs are stage 3 alone, from the pre-trained HuBERT.

Choices the paper leaves open (each is a config key; config/config.yaml and the tables' notes repeat them):

* HuBERT in stage 1: the text calls it "a feature extractor", yet the pseudo-labels are
  "gender-augmented" only if stage 1 updates HuBERT: fine-tuned by default (CNN frozen, as every fine-tuning
  recipe here), frozen as an option (``train.finetune.audio.freeze_encoder: true``; the k-means step then
  clusters the original checkpoint's features).  Stages 2 and 3 fine-tune it too ("retrain", "fine-tune").
* The BiLSTM reads HuBERT's last layer in every stage; "Layer ID" only names where the pseudo-labels come
  from (the paper prints -3 on the rows without GMPs too, where no pseudo-label is used).
* Sizes: BiLSTM 256 per direction, LinearP 512 -> 256 -> 256 (:class:`GmpConfig`); no dropout in the heads.
* Stage starts: stage 2 starts from the stage-1 encoder (``init_from`` + ``init_modules: [encoder.]``),
  stage 3 from the stage-2 encoder; every stage's heads are new.
* Masking (stage 2): HuBERT's pre-training setting, span starts p = 0.08 per frame and spans of 10 frames
  (HF ``mask_prob`` = p x 10 = 0.8; about 1 - (1 - 0.08)^10 = 57 % of the frames end up masked).
* The three scales' losses are weighted equally (``scale_weights``: 1/3 each).
* Crops: a random window of the training clips (6 s on the real run; aligned to the 20 ms frame grid in
  stage 2 so that the labels stay aligned), full length at test.  Adam (lr 1e-4, batch 64, no weight decay:
  the paper's only settings), a fixed number of epochs, the last epoch kept (no validation split).
* k-means: scikit-learn MiniBatchKMeans with the HuBERT recipe's settings, fitted per fold on the
  training utterances only (never the test session), seeded (:mod:`emorepro.pseudo_labels`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..frame_labels import read_frame_labels
from ..io import InputError
from .base import Recipe, masked_mean

log = logging.getLogger(__name__)

GENDERS = ("F", "M")
IGNORE = -100   # target of frames that carry no loss (unmasked, padding)


# --------------------------------------------------------------------------- configs


@dataclass
class GmpConfig:
    """``model_params`` of ``gmp_atl`` (stages 1 and 3, and the rows without GMPs)."""

    d_in: int = 768              # HuBERT-base hidden size (set from the encoder by the recipe)
    n_classes: int = 4           # angry, happy (+excited), neutral, sad
    d_lstm: int = 256            # BiLSTM units per direction (unstated: choose)
    d_proj_hidden: int = 256     # LinearP's hidden layer (Linear - ReLU - Linear; sizes unstated)
    d_proj: int = 256            # LinearP's output, the utterance embedding the heads read
    head: str = "ams"            # "ams" (AM-softmax, Eq. 2) or "ce" (linear + cross-entropy, Table 3's CE rows)
    ams_s: float = 30.0          # AM-softmax scale s (paper: 30)
    ams_m: float = 0.2           # AM-softmax additive margin m (paper: 0.2)
    gender_head: bool = False    # stage 1: an auxiliary gender head (Eq. 1)

    def __post_init__(self):
        if self.head not in ("ams", "ce"):
            raise InputError(f"config: model_params.head must be 'ams' or 'ce', got {self.head!r}")
        if self.ams_s <= 0 or not 0 <= self.ams_m < 2:
            raise InputError(f"config: model_params.ams_s must be > 0 and ams_m in [0, 2), got {self.ams_s}, {self.ams_m}")


@dataclass
class GmpLoss:
    """``train.loss`` of ``gmp_atl``."""

    alpha_e: float = 0.9         # Eq. 1: L = alpha_e CE_emo + (1 - alpha_e) CE_gender (paper: 0.9); with a gender head

    def __post_init__(self):
        if not 0.0 <= self.alpha_e <= 1.0:
            raise InputError(f"config: train.loss.alpha_e must be in [0, 1], got {self.alpha_e}")


@dataclass
class GmpRetrainConfig:
    """``model_params`` of ``gmp_atl_retrain`` (stage 2)."""

    d_in: int = 768              # set from the encoder by the recipe
    d_proj_hidden: int = 256     # LinearP after HuBERT (sizes unstated)
    d_proj: int = 256
    ks: list[int] = field(default_factory=list)   # clusters per scale: set from the label file by the recipe


@dataclass
class GmpRetrainData:
    """``train.data`` of ``gmp_atl_retrain``."""

    mask_prob: float = 0.08      # span-start probability per frame (HuBERT: p = 8 %)
    mask_length: int = 10        # frames per span (HuBERT: l = 10)
    min_masks: int = 2           # at least this many spans per utterance (as transformers' default in span_mask)
    crop_seconds: float | None = None   # training crop, aligned to the frame hop (None: full length)

    def __post_init__(self):
        if not 0 < self.mask_prob * self.mask_length <= 1 or self.mask_length < 1:
            raise InputError(f"config: train.data: mask_prob x mask_length must be in (0, 1] (HF's mask_prob), got "
                             f"{self.mask_prob} x {self.mask_length}")


@dataclass
class GmpRetrainLoss:
    """``train.loss`` of ``gmp_atl_retrain``."""

    scale_weights: list[float] | None = None   # one weight per scale (ks order); None: equal, summing to 1


# --------------------------------------------------------------------------- pieces


class LinearP(nn.Sequential):
    """The paper's linear projection module: Linear - ReLU - Linear.  (..., d_in) -> (..., d_out)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class AMSoftmaxHead(nn.Module):
    """Class vectors w_j; ``forward(x)`` -> cos(theta_j) = x^T w_j / (|x| |w_j|).  (B, d) -> (B, C)."""

    def __init__(self, d: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, d))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).t()


def am_softmax_loss(cos: torch.Tensor, target: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """Eq. 2: cross-entropy of s (cos - m [j = y]).  cos (B, C), target (B,) -> scalar (batch mean).

    Written out because torch has no additive-margin softmax; it is the definition of Wang et al. (2018).
    """
    margin = F.one_hot(target, cos.size(-1)).to(cos.dtype) * m           # (B, C): m on the target class only
    return F.cross_entropy(s * (cos - margin), target)


def bilstm_packed(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A bidirectional LSTM over each sequence's real frames only: (B, T, d), (B, T) -> (B, T, 2h), padding 0."""
    lens = mask.sum(1).clamp(min=1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


# --------------------------------------------------------------------------- models


class GmpHeads(nn.Module):
    """Everything of Fig. 1a/1c after HuBERT: BiLSTM -> MAP -> LinearP -> emotion (+ gender) head."""

    def __init__(self, cfg: GmpConfig):
        super().__init__()
        self.cfg = cfg
        self.bilstm = nn.LSTM(cfg.d_in, cfg.d_lstm, batch_first=True, bidirectional=True)
        self.linear_p = LinearP(2 * cfg.d_lstm, cfg.d_proj_hidden, cfg.d_proj)
        self.emotion = AMSoftmaxHead(cfg.d_proj, cfg.n_classes) if cfg.head == "ams" else nn.Linear(cfg.d_proj, cfg.n_classes)
        self.gender = nn.Linear(cfg.d_proj, len(GENDERS)) if cfg.gender_head else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        # hidden: (B, T, d_in) zero-padded; mask: (B, T) bool, True on real frames
        z = masked_mean(bilstm_packed(self.bilstm, hidden, mask), mask)    # (B, 2 d_lstm)
        p = self.linear_p(z)                                               # (B, d_proj)
        out = {"embedding": p}
        if self.cfg.head == "ams":
            out["cos"] = self.emotion(p)                                   # (B, C)
            out["logits"] = self.cfg.ams_s * out["cos"]                    # (B, C): s cos, no margin
        else:
            out["logits"] = self.emotion(p)                                # (B, C)
        if self.gender is not None:
            out["gender_logits"] = self.gender(p)                          # (B, 2)
        return out


class GmpNet(nn.Module):
    """HuBERT (the engine's fine-tunable encoder) + :class:`GmpHeads`: (wav, wav_lens) -> logits."""

    def __init__(self, heads: GmpHeads, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder   # FinetuneAudioEncoder: (wav (B, S), wav_lens (B,)) -> hidden (B, T, d), mask (B, T)
        self.heads = heads

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.encoder(wav, wav_lens)
        return self.heads(e["hidden"], e["mask"])


class GmpRetrainNet(nn.Module):
    """Fig. 1b: HuBERT with span masking -> LinearP per frame -> one softmax head per k-means scale."""

    def __init__(self, cfg: GmpRetrainConfig, encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.linear_p = LinearP(cfg.d_in, cfg.d_proj_hidden, cfg.d_proj)
        self.scale_heads = nn.ModuleList(nn.Linear(cfg.d_proj, k) for k in cfg.ks)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor,
                mask_time_indices: torch.Tensor | None = None) -> dict:
        if not self.training:
            # Stage 2 makes no utterance-level prediction (its targets exist for training frames only):
            # predictions.csv lists the test utterances with their frame counts, and no encoder runs.
            return {"n_frames": self.encoder.frame_lengths(wav_lens)}        # (B,)
        e = self.encoder(wav, wav_lens, mask_time_indices)                   # hidden (B, T, d_in), mask (B, T)
        p = self.linear_p(e["hidden"])                                       # (B, T, d_proj)
        # a tuple: per-frame outputs are not per-utterance rows for the engine to collect
        return {"frames": (tuple(h(p) for h in self.scale_heads), e["mask"])}   # (B, T, K) per scale


# --------------------------------------------------------------------------- recipes


def _audio_encoder(ctx, model: str):
    enc = ctx.encoders.get("audio")
    if enc is None:
        raise InputError(f"config: model {model} trains HuBERT from raw audio: list `audio` under train.finetune "
                         "(freeze_encoder: true keeps it frozen)")
    return enc


class GmpRecipe(Recipe):
    """Stages 1 and 3 (and the rows without GMPs): utterance-level emotion (+ gender) from raw audio.

    Training clips are cropped by the encoder's options (``train.finetune.audio.train_max_seconds``,
    random window); validation and test clips are read whole (or per ``eval_max_seconds``).
    ``predictions.csv`` gains ``gender_true`` / ``gender_pred`` (indices into F, M) with a gender head.
    """

    input_keys = ("wav", "wav_lens")
    finetune_roles = ("audio",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.loss_cfg = GmpLoss(**ctx.cfg.loss)
        self.encoder = _audio_encoder(ctx, "gmp_atl")
        self.y = {s: ctx.labels(s) for s, u in ctx.splits.items() if u}
        self._cfg: GmpConfig | None = None
        self.gender: dict[str, np.ndarray] = {}

    def _genders(self) -> None:
        m = self.ctx.manifest
        if "gender" not in m.columns:
            raise InputError("manifest: no `gender` column (the speaker's gender: the last field of the IEMOCAP "
                             "utterance id); GMP-ATL's stage 1 trains a gender head on it")
        for split, utts in self.ctx.splits.items():
            if not utts:
                continue
            g = m.loc[utts, "gender"].astype(str).tolist()
            bad = [(u, x) for u, x in zip(utts, g) if x not in GENDERS]
            if bad:
                raise InputError(f"manifest: utterance {bad[0][0]} has gender {bad[0][1]!r}; the gender head needs "
                                 f"{list(GENDERS)} for every utterance ({len(bad)} without)")
            self.gender[split] = np.array([GENDERS.index(x) for x in g], dtype=np.int64)

    def build(self):
        from . import build_model

        heads, self._cfg = build_model("gmp_atl", {**self.ctx.model_params, "n_classes": len(self.ctx.classes),
                                                   "d_in": self.encoder.dim})
        if self._cfg.gender_head:
            self._genders()
        return GmpNet(heads, self.encoder)

    def batch(self, split, idx):
        ctx, d = self.ctx, self.ctx.device
        utts = [ctx.splits[split][i] for i in idx]
        b = self.encoder.collate([ctx.audio(u) for u in utts], device=d)    # crops follow net.train()/eval()
        b["label"] = torch.from_numpy(self.y[split][idx]).to(d)
        if self.gender:
            b["gender"] = torch.from_numpy(self.gender[split][idx]).to(d)
        return b

    def loss(self, out, batch, epoch):
        cfg = self._cfg
        if cfg.head == "ams":
            emo = am_softmax_loss(out["cos"], batch["label"], cfg.ams_s, cfg.ams_m)
        else:
            emo = F.cross_entropy(out["logits"], batch["label"])
        if not cfg.gender_head:
            return emo
        a = self.loss_cfg.alpha_e
        return a * emo + (1.0 - a) * F.cross_entropy(out["gender_logits"], batch["gender"])

    def extra_columns(self, split, outs):
        if "gender_logits" not in outs:
            return {}
        return {"gender_true": self.gender[split], "gender_pred": outs["gender_logits"].argmax(1)}


class GmpRetrainRecipe(Recipe):
    """Stage 2: masked prediction of the three pseudo-label scales (``ctx.extra_inputs["pseudo_labels"]``).

    The label file must be this run's fold and seed and label every training utterance (the workflow
    gives the file of the same fold, seed and the experiment's layer).  Training crops are drawn here,
    on the encoder's frame grid (a start at a multiple of the hop), and the labels are cut to the same
    frames; so the encoder's own crop (``train_max_seconds``) must stay unset.  Masks come from the
    encoder's ``span_mask`` (numpy's generator, which the loop seeds); crops from a generator seeded by
    the run's seed.  The training log (the job's log file) reports each epoch's masked-frame accuracy
    per scale.
    """

    input_keys = ("wav", "wav_lens", "mask_time_indices")
    finetune_roles = ("audio",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.data = GmpRetrainData(**ctx.cfg.data)
        self.encoder = _audio_encoder(ctx, "gmp_atl_retrain")
        if self.encoder.opts.train_max_seconds:
            raise InputError("config: gmp_atl_retrain crops on the label frames: use train.data.crop_seconds, not "
                             "train.finetune.audio.train_max_seconds")
        path = ctx.extra_inputs.get("pseudo_labels")
        if not path:
            raise InputError("config: model gmp_atl_retrain needs frame labels: set the experiment's "
                             "`pseudo_labels: {name: <pseudo_labels set>, layer: <L>}`")
        self.labels = read_frame_labels(path)
        meta = self.labels.meta
        if (meta["fold"], meta["seed"]) != (ctx.fold, ctx.seed):
            raise InputError(f"{path}: frame labels of fold {meta['fold']} seed {meta['seed']}, but this run is fold "
                             f"{ctx.fold} seed {ctx.seed}")
        if meta["hop_samples"] != self.encoder.hop_samples:
            raise InputError(f"{path}: labels on a {meta['hop_samples']}-sample frame hop, the encoder's is "
                             f"{self.encoder.hop_samples}")
        missing = [u for u in ctx.splits["train"] if u not in self.labels]
        if missing:
            raise InputError(f"{path}: {len(missing)} training utterance(s) of fold {ctx.fold} have no frame labels, "
                             f"e.g. {missing[:3]}")
        extra = sorted(set(self.labels.index) - set(ctx.splits["train"]))
        if extra:
            raise InputError(f"{path}: labels utterances outside fold {ctx.fold}'s training split, e.g. {extra[:3]} "
                             "(pseudo-labels come from training audio only)")
        loss = GmpRetrainLoss(**ctx.cfg.loss)
        n = len(self.labels.ks)
        w = loss.scale_weights if loss.scale_weights is not None else [1.0 / n] * n
        if len(w) != n or any(x < 0 for x in w) or not sum(w) > 0:
            raise InputError(f"config: train.loss.scale_weights: {n} non-negative weights (one per k-means scale "
                             f"{self.labels.ks}), got {w}")
        self.weights = [float(x) for x in w]
        self.rng = np.random.default_rng([ctx.seed, 0x6A5])                # training crops only
        self._stats: dict[int, list[int]] = {}

    def build(self):
        from . import get_model

        entry = get_model("gmp_atl_retrain")
        params = {**self.ctx.model_params, "d_in": self.encoder.dim, "ks": list(self.labels.ks)}
        unknown = set(params) - set(GmpRetrainConfig.__dataclass_fields__)
        if unknown:
            raise InputError(f"config: model gmp_atl_retrain has no parameter(s) {sorted(unknown)}")
        return entry.model_cls(GmpRetrainConfig(**params), self.encoder)

    # ----------------------------------------------------------------- batches
    def _crop(self, wav: np.ndarray) -> tuple[np.ndarray, int]:
        """A training window that starts on the frame grid: (its samples, its first frame)."""
        if not self.data.crop_seconds:
            return wav, 0
        n = int(round(self.data.crop_seconds * self.encoder.sample_rate))
        hop = self.encoder.hop_samples
        if len(wav) <= n:
            return wav, 0
        f0 = int(self.rng.integers(0, (len(wav) - n) // hop + 1))
        return wav[f0 * hop: f0 * hop + n], f0

    def batch(self, split, idx):
        ctx, d, enc = self.ctx, self.ctx.device, self.encoder
        utts = [ctx.splits[split][i] for i in idx]
        full = [ctx.audio(u) for u in utts]
        if not enc.training:   # prediction: nothing to mask or label
            return enc.collate(full, device=d)
        labels = [self.labels.of(u) for u in utts]                          # (S, T_full) each
        n_full = enc.frame_lengths(torch.tensor([max(len(w), enc.min_samples) for w in full]))
        for u, lab, n in zip(utts, labels, n_full.tolist()):
            if lab.shape[1] != n:
                raise InputError(f"{self.labels.path}: {u} has {lab.shape[1]} label frames, the encoder gives {n} "
                                 "for its audio (labels of another clip, encoder or frame rate?)")
        wavs, starts = zip(*(self._crop(w) for w in full))
        b = enc.collate(list(wavs), device=d)
        n = enc.frame_lengths(b["wav_lens"]).cpu()                          # (B,) frames of each crop
        T = int(n.max())
        frame_mask = torch.arange(T)[None, :] < n[:, None]                  # (B, T)
        target = torch.full((len(self.labels.ks), len(utts), T), IGNORE, dtype=torch.long)   # (S, B, T)
        for i, (lab, f0) in enumerate(zip(labels, starts)):
            target[:, i, : n[i]] = torch.from_numpy(lab[:, f0: f0 + int(n[i])])   # the crop's frames
        if T >= self.data.mask_length:
            masked = enc.span_mask(frame_mask, mask_prob=self.data.mask_prob * self.data.mask_length,
                                   mask_length=self.data.mask_length, min_masks=self.data.min_masks)
        else:   # clips shorter than one span: nothing to predict
            masked = torch.zeros_like(frame_mask)
        target[:, ~masked] = IGNORE                                         # loss on masked frames only
        b.update(mask_time_indices=masked.to(d), frame_target=target.to(d),
                 label=torch.from_numpy(ctx.labels(split)[idx]).to(d))
        return b

    # ----------------------------------------------------------------- training hooks
    def loss(self, out, batch, epoch):
        logits, _ = out["frames"]
        target = batch["frame_target"]                                      # (S, B, T)
        total = 0.0
        for s, (lg, w) in enumerate(zip(logits, self.weights)):
            t = target[s]
            if not (t != IGNORE).any():
                total = total + 0.0 * lg.sum()                              # keeps the graph; nothing masked
                continue
            total = total + w * F.cross_entropy(lg.reshape(-1, lg.size(-1)), t.reshape(-1), ignore_index=IGNORE)
            with torch.no_grad():
                hit = ((lg.argmax(-1) == t) & (t != IGNORE)).sum().item()
                st = self._stats.setdefault(s, [0, 0])
                st[0] += int(hit)
                st[1] += int((t != IGNORE).sum().item())
        return total

    def _log_accuracy(self, epoch: int) -> None:
        if self._stats:
            acc = {f"K={k}": round(self._stats[s][0] / max(self._stats[s][1], 1), 4)
                   for s, k in enumerate(self.labels.ks) if s in self._stats}
            log.info("epoch %d: masked-frame training accuracy per scale %s (chance about 1/K)", epoch, acc)
            self._stats = {}

    def on_epoch_start(self, epoch, net):
        self._log_accuracy(epoch - 1)

    def extra_columns(self, split, outs):
        self._log_accuracy(self.ctx.cfg.epochs)   # the last epoch's, when the test split is predicted
        return {"n_frames": outs["n_frames"]} if "n_frames" in outs else {}
