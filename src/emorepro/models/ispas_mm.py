"""Multi-task, multi-modal categorical + dimensional SER heads (Ispas et al., 2023).

Reference: Ispas, Deschamps-Berger, Devillers, "A Multi-Task, Multi-Modal Approach for
Predicting Categorical and Dimensional Emotions" (Sec. 3, Fig. 1, Table 2).  The bridge
tokens and random modality masking come from their ref. [21]; the cross-attention from [8].

    a, t   = encoder features, the shorter padded to the longer      (B, N, d_audio), (B, N, d_text)
    a, t   = Proj_a(a), Proj_t(t)                                    (B, N, d)       (identity when d_in == d)
    a', t' = SA_a(a), SA_t(t)                       [S/A]            (B, N, d)       Sec. 3.2
    e_a    = MHA(Q_a, K=a', V=t'), e_t = MHA(Q_t, K=t', V=a')   [CR/A + Q]  (B, L, d)   Sec. 3.3-3.4
    e_a    = MHA(a', K=t', V=t'),  e_t = MHA(t', K=a', V=a')    [CR/A, no Q] (B, N, d)
    e_s    = Mean(Stack(Mean(e_a), Mean(e_t)))                       (B, d)          Sec. 3.4
    e_s    = Concat(Mean(a'), Mean(t'))                 [no CR/A]    (B, 2d)
    logits = Classifier(e_s); (v, a) = sigmoid(Regressor(e_s))       (B, C), (B, 2)  Fig. 2
    loss   = h1 CE + h2 (1 - CCC_V) + h3 (1 - CCC_A)                                 Eq. 3

Every component is a switch of :class:`IspasConfig` (the 16 rows of Table 2 are settings
of ``sa``, ``cra``, ``q``, ``rmm``, ``disc``, ``con`` and the text encoder).  Means over
sequence positions are masked means: padding never enters a result (a test checks that an
utterance's output does not depend on what it is batched with).

Choices the paper leaves open (each is a field below, so it can be changed in config):

* S/A is a post-norm residual block ``LN(x + MHA(x, x, x))`` without a feed-forward layer;
  the cross-attention layers are the plain ``Multihead(Q, K, V)`` of the paper's equation.
* Without bridge tokens the query comes from one modality and key/value from the other
  (Sec. 3.4); e_a (audio queries) is mean-pooled over audio frames, e_t over text tokens.
* Without CR/A there is no cross-modal module to fuse through, so the two masked means
  are concatenated (the simplest late fusion); the heads then read 2d features.
* With Q, key position j of one modality is paired with value position j of the other,
  exactly as the paper describes; the key's padding mask is used.
* Fig. 2 (the heads) is not in our copy of the paper: each head is ``Linear -> ReLU ->
  Dropout -> Linear`` with ``d_head`` hidden units (``d_head=0``: one linear layer).
* Eq. 1 sums the cross-entropy over the batch; ``ce_reduction="mean"`` averages it, so that
  with h = 0.33 each the CE and the two CCC terms (batch statistics) weigh alike; ``"sum"``
  follows Eq. 1.  Single-task rows keep h = 0.33 on their terms (Sec. 4.2 sets "all
  hyperparameters" to 0.33 and says nothing of single-task rows).
* Random modality masking (Sec. 3.5): for an epoch drawn as masked, the modality's encoder
  output is zeroed (training only), its padding mask becomes the other modality's (so no
  attention row is left without keys and not even its length leaks), and its side of the
  network -- encoder (fine-tuning), projection and S/A -- is frozen for that epoch.
  p(e) = p_start * (1 + cos(pi (e-1)/(E-1))) / 2 for e = 1..E, set to 0 below ``rmm_floor``.
* Fine-tuning (``train.finetune``, the engine's encoders of :mod:`emorepro.encoders.finetune`):
  the paper freezes the CNN feature extractor and the text embeddings (Sec. 4.2) and says nothing
  of the rest.  config/config.yaml writes out what fine-tuning the published checkpoints with
  transformers' defaults does, the most plausible reading: HuBERT's feature projection trains,
  dropout 0.1 in both encoders and HuBERT's LayerDrop 0.1 (their config.json values), the last
  hidden layer of each, full-length audio.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Recipe, masked_mean

log = logging.getLogger(__name__)

MODALITIES = ("audio", "text")


@dataclass
class IspasConfig:
    d_audio: int = 1024         # HuBERT-large hidden size (set from the feature cache by the recipe)
    d_text: int = 1024          # DeBERTaV3-large / RoBERTa-large hidden size (idem)
    d_model: int = 1024         # d_e (Sec. 3.2): both encoders are 1024-d, so the projections are identities
    n_heads: int = 32           # "Each multi-head attention layer had a total of 32 heads" (Sec. 4.2)
    n_bridge: int = 30          # L learnable bridge tokens per group, "the optimal number reported in [21]"
    n_classes: int = 4          # neutral, happy(+excited), angry, sad
    d_head: int = 256           # hidden units of the classifier and of the regressor (Fig. 2 unavailable: assumption)
    dropout: float = 0.1        # attention and head dropout; not stated in the paper (the nn.Transformer default)
    # components (Table 2 columns)
    sa: bool = True             # S/A: one self-attention refinement module per modality
    cra: bool = True            # CR/A: two multi-head cross-attention layers
    q: bool = True              # Q: learnable bridge tokens as the cross-attention queries (needs cra)
    rmm: bool = True            # RMM: random modality masking during training
    disc: bool = True           # Disc: train the classifier (cross-entropy term)
    con: bool = True            # Con: train the regressor (two CCC terms)
    # loss weights h1, h2, h3 (Eq. 3, Sec. 4.2: "all hyperparameters set to 0.33"); single-task rows keep 0.33
    # on their own terms (the paper does not say it renormalises)
    h_ce: float = 0.33
    h_valence: float = 0.33
    h_arousal: float = 0.33
    ce_reduction: str = "mean"  # Eq. 1 sums CE over the batch ("sum"); "mean" keeps it on the CCC terms' scale
    # random modality masking schedule (Sec. 3.5, Fig. 3)
    rmm_p_start: float = 0.8    # masking chance at the first epoch
    rmm_floor: float = 0.1      # "If the probability goes below the threshold of 0.1, it is set automatically to 0"
    rmm_p_text: float = 0.6     # given a masked epoch: text is masked w.p. 0.6 ("more prone to mask the textual modality")
    rmm_p_audio: float = 0.4    # ... and audio w.p. 0.4

    def __post_init__(self):
        if self.ce_reduction not in ("mean", "sum"):
            raise ValueError(f"config: model_params.ce_reduction must be 'mean' or 'sum', got {self.ce_reduction!r}")
        assert self.d_model % self.n_heads == 0, f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}"
        assert not self.q or self.cra, "q (bridge tokens) are the queries of the cross-attention layers: set cra too"
        assert self.disc or self.con, "at least one task (disc, con) must be trained"
        assert self.n_bridge >= 1, f"n_bridge must be >= 1, got {self.n_bridge}"
        assert 0.0 <= self.rmm_floor <= self.rmm_p_start <= 1.0, \
            f"need 0 <= rmm_floor ({self.rmm_floor}) <= rmm_p_start ({self.rmm_p_start}) <= 1"
        assert self.rmm_p_text >= 0 and self.rmm_p_audio >= 0 and self.rmm_p_text + self.rmm_p_audio > 0, \
            "rmm_p_text and rmm_p_audio are non-negative weights, not both zero"


# --------------------------------------------------------------------------- pieces


def pad_to(x: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (B, T, d) and its (B, T) mask to length n along T."""
    assert x.size(1) <= n, f"cannot pad length {x.size(1)} down to {n}"
    if x.size(1) == n:
        return x, mask
    return F.pad(x, (0, 0, 0, n - x.size(1))), F.pad(mask, (0, n - mask.size(1)), value=False)


class SelfAttention(nn.Module):
    """S/A refinement of one modality (Sec. 3.2): LN(x + Dropout(MHA(x, x, x)))."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, N, d); mask: (B, N)
        h, _ = self.attn(x, x, x, key_padding_mask=~mask, need_weights=False)   # (B, N, d)
        return self.ln(x + self.drop(h)) * mask[..., None]                      # padding stays 0


class CrossAttention(nn.Module):
    """Multihead(Q, K, V) = Concat(h_1..h_n) W^O with K and V given separately (Sec. 3.4)."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # q: (B, Lq, d); k, v: (B, N, d); key_mask: (B, N) -> (B, Lq, d)
        assert k.shape == v.shape, f"key {tuple(k.shape)} and value {tuple(v.shape)} must align position by position"
        out, _ = self.attn(q, k, v, key_padding_mask=~key_mask, need_weights=False)
        return out


def _head(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Module:
    if d_hidden <= 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


# --------------------------------------------------------------------------- model


class IspasMM(nn.Module):
    """The heads on top of the two encoders: everything of Fig. 1 after HuBERT and DeBERTaV3."""

    def __init__(self, cfg: IspasConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.proj = nn.ModuleDict({
            "audio": nn.Identity() if cfg.d_audio == d else nn.Linear(cfg.d_audio, d),
            "text": nn.Identity() if cfg.d_text == d else nn.Linear(cfg.d_text, d),
        })
        self.sa = nn.ModuleDict({m: SelfAttention(d, cfg.n_heads, cfg.dropout) for m in MODALITIES}) if cfg.sa else None
        if cfg.cra:
            # xattn["audio"] produces e_a (audio keys, or audio queries without Q); xattn["text"] produces e_t
            self.xattn = nn.ModuleDict({m: CrossAttention(d, cfg.n_heads, cfg.dropout) for m in MODALITIES})
        else:
            self.xattn = None
        if cfg.q:
            # Q_a, Q_t in R^{L x d}; small init as for token embeddings
            self.bridge = nn.ParameterDict({m: nn.Parameter(0.02 * torch.randn(cfg.n_bridge, d)) for m in MODALITIES})
        else:
            self.bridge = None
        d_fused = d if cfg.cra else 2 * d
        self.classifier = _head(d_fused, cfg.d_head, cfg.n_classes, cfg.dropout)
        self.regressor = _head(d_fused, cfg.d_head, 2, cfg.dropout)
        self.masked: str | None = None          # modality masked by RMM for the current epoch (training only)
        self._always_frozen: set[int] = set()   # ids of parameters never trained (see IspasFinetune)

    # ----------------------------------------------------------------- RMM
    def branch_parameters(self, modality: str) -> list[nn.Parameter]:
        """The parameters on ``modality``'s side of the network (frozen when RMM masks it)."""
        assert modality in MODALITIES, f"unknown modality {modality!r}; expected one of {MODALITIES}"
        ps = list(self.proj[modality].parameters())
        if self.sa is not None:
            ps += list(self.sa[modality].parameters())
        return ps

    def set_masked_modality(self, modality: str | None) -> None:
        """Mask ``modality`` (or nothing) in training forwards and freeze its branch until the next call."""
        assert modality in (None, *MODALITIES), f"modality must be None, 'audio' or 'text', got {modality!r}"
        self.masked = modality
        for m in MODALITIES:
            for p in self.branch_parameters(m):
                p.requires_grad_(m != modality and id(p) not in self._always_frozen)

    # ----------------------------------------------------------------- forward
    def forward(self, audio: torch.Tensor, audio_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        # audio: (B, Ta, d_audio), audio_mask: (B, Ta) bool; text: (B, Tt, d_text), text_mask: (B, Tt) bool
        cfg = self.cfg
        B = audio.size(0)
        assert text.size(0) == B, f"audio batch {B} != text batch {text.size(0)}"
        assert audio.size(-1) == cfg.d_audio, f"expected {cfg.d_audio}-d audio features, got {audio.size(-1)}"
        assert text.size(-1) == cfg.d_text, f"expected {cfg.d_text}-d text features, got {text.size(-1)}"
        assert audio_mask.dtype == torch.bool and text_mask.dtype == torch.bool, "masks must be bool (True = real)"
        assert audio_mask.any(1).all() and text_mask.any(1).all(), "every utterance needs >= 1 audio frame and text token"

        # Sec. 3.2: pad the shorter sequence to the longer one; masks carried through
        n = max(audio.size(1), text.size(1))
        a, am = pad_to(audio, audio_mask, n)                              # (B, N, d_audio), (B, N)
        t, tm = pad_to(text, text_mask, n)                                # (B, N, d_text), (B, N)

        # RMM (Sec. 3.5): the masked modality carries no information, not even its length
        if self.training and self.masked == "audio":
            a, am = torch.zeros_like(a), tm
        elif self.training and self.masked == "text":
            t, tm = torch.zeros_like(t), am

        a = self.proj["audio"](a) * am[..., None]                         # (B, N, d)
        t = self.proj["text"](t) * tm[..., None]                          # (B, N, d)
        if self.sa is not None:
            a = self.sa["audio"](a, am)                                   # (B, N, d)
            t = self.sa["text"](t, tm)                                    # (B, N, d)

        out: dict[str, torch.Tensor] = {}
        if self.xattn is None:
            z = torch.cat([masked_mean(a, am), masked_mean(t, tm)], dim=-1)        # (B, 2d)
        else:
            if self.bridge is not None:
                qa = self.bridge["audio"].expand(B, -1, -1)                # (B, L, d)
                qt = self.bridge["text"].expand(B, -1, -1)                 # (B, L, d)
                e_a = self.xattn["audio"](qa, k=a, v=t, key_mask=am)       # (B, L, d): audio keys, text values
                e_t = self.xattn["text"](qt, k=t, v=a, key_mask=tm)        # (B, L, d): text keys, audio values
                za, zt = e_a.mean(1), e_t.mean(1)                          # (B, d) each: mean over the L tokens
                out["bridge_audio"], out["bridge_text"] = e_a, e_t
            else:
                e_a = self.xattn["audio"](a, k=t, v=t, key_mask=tm)        # (B, N, d): audio queries text
                e_t = self.xattn["text"](t, k=a, v=a, key_mask=am)         # (B, N, d): text queries audio
                za, zt = masked_mean(e_a, am), masked_mean(e_t, tm)        # (B, d) each
            z = torch.stack([za, zt], dim=1).mean(1)                       # (B, d): e_s = Mean(Stack(...))
        out["fused"] = z
        out["logits"] = self.classifier(z)                                 # (B, C)
        va = torch.sigmoid(self.regressor(z))                              # (B, 2) in [0, 1]
        out["valence"], out["arousal"] = va[:, 0], va[:, 1]                # (B,), (B,)
        return out


# --------------------------------------------------------------------------- loss and schedule


def ccc_loss(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - CCC over the batch, with the squared mean difference (Lin 1989; the paper's Eq. 2 drops the square).

    Population (biased) moments, as :func:`emorepro.metrics.ccc`; ``eps`` keeps a batch of one finite.
    """
    assert pred.shape == true.shape and pred.dim() == 1, f"need two (B,) vectors, got {tuple(pred.shape)}, {tuple(true.shape)}"
    mp, mt = pred.mean(), true.mean()
    cov = ((pred - mp) * (true - mt)).mean()
    ccc = 2 * cov / (pred.var(unbiased=False) + true.var(unbiased=False) + (mp - mt) ** 2 + eps)
    return 1 - ccc


def ispas_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: IspasConfig):
    """Eq. 3: h1 CE + h2 (1 - CCC_V) + h3 (1 - CCC_A); single-task rows compute only their own terms.

    CE is the batch mean (``ce_reduction="mean"``, our choice) or, as Eq. 1 writes it, the sum over the
    batch (``"sum"``): with Adam the sum weighs CE ``batch_size`` times more against the CCC terms, which
    are statistics of the whole batch.  Single-task rows keep their 0.33 weight: under Adam a constant
    factor changes the update only through gradient clipping and Adam's epsilon.

    Returns ``(total, terms)`` with ``terms`` the unweighted terms actually computed.
    """
    terms: dict[str, torch.Tensor] = {}
    total = 0.0
    if cfg.disc:
        terms["ce"] = F.cross_entropy(out["logits"], batch["label"], reduction=cfg.ce_reduction)
        total = total + cfg.h_ce * terms["ce"]
    if cfg.con:
        terms["ccc_valence"] = ccc_loss(out["valence"], batch["valence"])
        terms["ccc_arousal"] = ccc_loss(out["arousal"], batch["arousal"])
        total = total + cfg.h_valence * terms["ccc_valence"] + cfg.h_arousal * terms["ccc_arousal"]
    return total, terms


def rmm_probability(epoch: int, n_epochs: int, p_start: float = 0.8, floor: float = 0.1) -> float:
    """Masking chance of ``epoch`` (1-based): cosine decay from p_start to 0 over the run, 0 below ``floor``."""
    assert 1 <= epoch <= n_epochs, f"epoch {epoch} outside 1..{n_epochs}"
    frac = (epoch - 1) / (n_epochs - 1) if n_epochs > 1 else 0.0
    p = p_start * 0.5 * (1.0 + math.cos(math.pi * frac))
    return 0.0 if p < floor else p


# --------------------------------------------------------------------------- fine-tuning wrapper


class IspasFinetune(nn.Module):
    """Encoders + heads for fine-tuning (``train.finetune`` lists ``audio`` and ``text``).

    The encoders are the engine's fine-tunable modules (:mod:`emorepro.encoders.finetune`), handed
    over by the loop in ``ctx.encoders``; what trains is their config (Sec. 4.2: the transformer
    layers train, the CNN feature extractor and the text embeddings stay frozen).  At
    initialisation the audio features equal the frozen cache's (same computation).  RMM freezes
    the masked modality's encoder for the epoch, besides its projection and S/A.
    """

    def __init__(self, heads: IspasMM, audio_encoder: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.heads = heads
        self.audio_encoder = audio_encoder   # FinetuneAudioEncoder: (wav, wav_lens) -> hidden (B, Ta, d_audio), mask
        self.text_encoder = text_encoder     # FinetuneTextEncoder: (input_ids, attention_mask) -> hidden (B, Tt, d_text), mask

    @property
    def cfg(self) -> IspasConfig:
        return self.heads.cfg

    def branch_parameters(self, modality: str) -> list[nn.Parameter]:
        enc = self.audio_encoder if modality == "audio" else self.text_encoder
        return [*enc.parameters(), *self.heads.branch_parameters(modality)]

    def set_masked_modality(self, modality: str | None) -> None:
        self.heads.set_masked_modality(modality)
        self.audio_encoder.set_trainable(modality != "audio")
        self.text_encoder.set_trainable(modality != "text")

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        masked = self.heads.masked if self.training else None
        tmask = attention_mask.bool()                                       # (B, Tt)
        if masked == "text":   # zeroed anyway by the heads: skip the encoder
            text = wav.new_zeros(input_ids.shape + (self.heads.cfg.d_text,))
        else:
            text = self.text_encoder(input_ids, attention_mask)["hidden"]   # (B, Tt, d_text)
        if masked == "audio":
            n = self.audio_encoder.frame_lengths(wav_lens)
            audio = wav.new_zeros((wav.size(0), int(n.max()), self.heads.cfg.d_audio))
            amask = torch.arange(audio.size(1), device=wav.device)[None, :] < n[:, None]
        else:
            a = self.audio_encoder(wav, wav_lens)
            audio, amask = a["hidden"], a["mask"]                           # (B, Ta, d_audio), (B, Ta)
        return self.heads(audio, amask, text, tmask)


# --------------------------------------------------------------------------- recipe


@dataclass
class IspasData:
    """``train.data`` of an Ispas experiment (frozen-cache mode; fine-tuning options are ``train.finetune``)."""

    audio_layer: int = -1                 # position in the audio cache's layers
    text_layer: int = -1                  # same for text (caches of text encoders are token-level)
    max_audio_seconds: float | None = None  # cut longer utterances (None: the paper cuts nothing)
    audio_frame_rate: float = 50.0        # frames/s of the audio cache (HuBERT/wav2vec2: 20 ms frames)


class IspasRecipe(Recipe):
    """Feeds :class:`IspasMM` from the ``audio`` and ``text`` caches, or :class:`IspasFinetune` from raw input.

    Mode: fine-tuning when the loop hands over fine-tunable ``audio`` and ``text`` encoders
    (``train.finetune``), else the frozen feature caches.  Targets: the class label, and
    ``valence_norm`` / ``arousal_norm`` of the manifest (ratings rescaled from [1, 5] to [0, 1]; a rating
    outside 1-5 was clipped to the scale at ingestion, and the ingest sidecar counts them, so such an
    utterance trains the Con task on the nearest valid target).  RMM's draws come from a generator seeded
    by the run seed (two uniforms per epoch, whatever p is, so the draws of one epoch never depend on the
    schedule of another).
    """

    finetune_roles = MODALITIES

    def __init__(self, ctx):
        super().__init__(ctx)
        if "encoders" in ctx.cfg.data or any(k.endswith("_checkpoint") for k in ctx.cfg.data):
            raise ValueError("config: train.data.encoders / *_checkpoint are gone: list the encoders to fine-tune "
                             "under train.finetune (audio, text); without it the feature caches are read")
        self.data = IspasData(**ctx.cfg.data)
        self.finetune = bool(ctx.encoders)
        if self.finetune:
            assert set(ctx.encoders) == set(MODALITIES), \
                f"ispas_mm fine-tunes both encoders: train.finetune must list {MODALITIES}, got {sorted(ctx.encoders)}"
            assert self.data.max_audio_seconds is None, \
                "config: train.data.max_audio_seconds applies to cached features; when fine-tuning use " \
                "train.finetune.audio.train_max_seconds / eval_max_seconds"
        else:
            for role in MODALITIES:
                assert role in ctx.caches, f"ispas_mm reads caches with roles {MODALITIES}; got {sorted(ctx.caches)}"
        self.input_keys = ("wav", "wav_lens", "input_ids", "attention_mask") if self.finetune else \
            ("audio", "audio_mask", "text", "text_mask")
        m = ctx.manifest
        self.y, self.va = {}, {}
        for split, utts in ctx.splits.items():
            if not utts:
                continue
            self.y[split] = ctx.labels(split)
            va = np.stack([np.asarray(m.loc[utts, c], dtype=np.float32) for c in ("valence_norm", "arousal_norm")], 1)
            if not (np.isfinite(va).all() and (va >= 0).all() and (va <= 1).all()):
                # Ingestion clips out-of-scale ratings into [0, 1] (emorepro.corpus.iemocap.normalise_ratings,
                # counted in its sidecar); what is left here is a corpus without ratings: a config error.
                from ..io import InputError

                raise InputError(f"manifest: valence_norm/arousal_norm of the {split} split must be ratings in [0, 1] "
                                 f"(got {np.nanmin(va)}..{np.nanmax(va)}, {int((~np.isfinite(va)).sum())} missing); "
                                 "the Con task needs a corpus with valence/arousal ratings")
            self.va[split] = va                                          # (N, 2)
        self.rng = np.random.default_rng([ctx.seed, 0x1595])             # RMM draws only
        self.rmm_history: list[dict[str, Any]] = []
        self._model_cfg: IspasConfig | None = None

    # ----------------------------------------------------------------- model
    def build(self):
        from . import build_model

        params = {**self.ctx.model_params, "n_classes": len(self.ctx.classes)}
        if not self.finetune:
            params.update(d_audio=self.ctx.caches["audio"].dim, d_text=self.ctx.caches["text"].dim)
            net, self._model_cfg = build_model("ispas_mm", params)
            return net
        audio_enc, text_enc = self.ctx.encoders["audio"], self.ctx.encoders["text"]
        params.update(d_audio=audio_enc.dim, d_text=text_enc.dim)
        heads, self._model_cfg = build_model("ispas_mm", params)
        return IspasFinetune(heads, audio_enc, text_enc)

    # ----------------------------------------------------------------- batches
    def _pad(self, seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        lens = [len(s) for s in seqs]
        x = np.zeros((len(seqs), max(lens), seqs[0].shape[1]), dtype=np.float32)   # (B, T, d)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = s
        mask = np.arange(max(lens))[None, :] < np.asarray(lens)[:, None]            # (B, T)
        d = self.ctx.device
        return torch.from_numpy(x).to(d), torch.from_numpy(mask).to(d)

    def batch(self, split, idx):
        utts = [self.ctx.splits[split][i] for i in idx]
        d = self.ctx.device
        b = {"label": torch.from_numpy(self.y[split][idx]).to(d),
             "valence": torch.from_numpy(self.va[split][idx, 0]).to(d),
             "arousal": torch.from_numpy(self.va[split][idx, 1]).to(d)}
        if self.finetune:
            ctx = self.ctx
            audio_enc, text_enc = ctx.encoders["audio"], ctx.encoders["text"]
            b.update(audio_enc.collate([ctx.audio(u) for u in utts], device=d))   # crops follow net.train()/eval()
            b.update(text_enc.tokenize([ctx.transcript(u) for u in utts], device=d))
            return b
        ca, ct = self.ctx.caches["audio"], self.ctx.caches["text"]
        max_frames = None
        if self.data.max_audio_seconds:
            max_frames = max(1, int(round(self.data.max_audio_seconds * self.data.audio_frame_rate)))
        b["audio"], b["audio_mask"] = self._pad([np.asarray(ca.layer(u, self.data.audio_layer)[:max_frames], dtype=np.float32)
                                                 for u in utts])
        b["text"], b["text_mask"] = self._pad([np.asarray(ct.layer(u, self.data.text_layer), dtype=np.float32)
                                               for u in utts])
        return b

    # ----------------------------------------------------------------- training hooks
    def loss(self, out, batch, epoch):
        return ispas_loss(out, batch, self._model_cfg)[0]

    def on_epoch_start(self, epoch, net):
        cfg = self._model_cfg
        if not cfg.rmm:
            return
        p = rmm_probability(epoch, self.ctx.cfg.epochs, cfg.rmm_p_start, cfg.rmm_floor)
        u, v = self.rng.random(2)
        masked = None
        if u < p:
            masked = "text" if v < cfg.rmm_p_text / (cfg.rmm_p_text + cfg.rmm_p_audio) else "audio"
        net.set_masked_modality(masked)
        self.rmm_history.append({"epoch": epoch, "p": p, "masked": masked})
        log.info("RMM epoch %d: p=%.3f, masked=%s", epoch, p, masked)

    def extra_columns(self, split, outs):
        if not self._model_cfg.con:
            return {}   # no trained regressor: no V/A columns (the table shows '--')
        from ..metrics import ccc

        va = self.va[split]
        cols = {"valence_pred": outs["valence"], "valence_true": va[:, 0],
                "arousal_pred": outs["arousal"], "arousal_true": va[:, 1]}
        cols["ccc_valence"] = np.float64(ccc(cols["valence_pred"], cols["valence_true"]))   # 0-d: train log only
        cols["ccc_arousal"] = np.float64(ccc(cols["arousal_pred"], cols["arousal_true"]))
        return cols
