"""MMER: multimodal multi-task SER (Ghosh et al., Interspeech 2023; arXiv 2203.16794), Table 1 and Fig. 2.

Reference: Ghosh, Tyagi, Ramaneswaran, Srivastava, Manocha, "MMER: Multimodal Multi-task
Learning for Speech Emotion Recognition" (Sec. 3, Fig. 1, Algorithm 1, Table 1).  The authors'
code (github.com/Sreyan88/MMER) was read as evidence of what they ran; nothing is copied from it.
d = 768 on the real checkpoints (wav2vec2-base, RoBERTa-base); the demo's tiny encoders are 64-d.

    A      = wav2vec2(wav)          fine-tuned, CNN frozen, last layer        (B, J, d_audio), mask (B, J)
           [or the `audio` feature cache: frozen wav2vec2, heads only (finetune: null; the demo's mode)]
    T      = RoBERTa(text)          frozen: the feature cache, last layer     (B, M, d_text),  mask (B, M)
    A, T   = in_a(A), in_t(T)       identities when d_audio = d_text = d      (B, J, d), (B, M, d)
    T      = SA(T)                  [text_self_attention: code only]          (B, M, d)
    P      = CME_B(q=A, kv=T)       speech-aware word representations, step 1 (B, J, d)
    R      = CME_C(q=T, kv=P)       speech-aware word representations         (B, M, d)
    Q      = CME_D(q=T, kv=A)       word-aware speech representations         (B, M, d)
    g      = sigmoid(W_g [R; Q] + b_g);  Q = g * Q      acoustic gate E (Eq. 2) (B, M, d)
    M      = [Q; R]                                                           (B, M, 2d)
    m      = mp(l(M))               paper: project 2d -> d, then max-pool     (B, d)
    m      = l(mp(M))               [project_then_pool: false, the code]      (B, d)
    h      = [mp(A); m]                                                       (B, 2d)
    logits = W_p h + b_p            emotion head (Eq. 3)                      (B, C)
    ctc    = W_c dropout(A) + b_c   CTC head over characters (Eq. 4)          (B, J, V)
    z      = m                      what SCL/ACL compare (paper: "M")         (B, d)
    z      = MLP_orig(h), z~ = MLP_aug(h~)   [contrastive_input: head + projection_heads: the code]  (B, d)
    loss   = CE + alpha CTC + beta SCL + gamma ACL          alpha = beta = gamma = 0.1 (Sec. 4)

With cached (frozen) audio features the CTC head shares no parameter with the emotion path (in_a
is the identity when d_audio = d), so CTC then changes nothing the emotion head sees: only a
fine-tuned encoder lets the CTC task shape A, as in the paper.

``mp`` is masked max pooling over time (padding never enters it; a test checks that an
utterance's output does not depend on what it is batched with).  ~h is the same network's forward
of the utterance's augmented copy (back-translated text from the feature cache of the augmented
corpus, its TTS audio through the same fine-tuned wav2vec2); it gets no CE or CTC.

Baselines of Table 1 (``fusion``): ``audio`` = fine-tuned wav2vec2 + max pool + linear;
``text`` = RoBERTa (frozen) + max pool + linear ("a single linear layer and softmax"); ``concat``
= a linear layer on [mp(A); mp(T)], single task (the "naive multimodal baseline").

Where the paper and the authors' code differ, the paper is the default and the code a switch:

* pooling vs projection order (``project_then_pool``): the paper projects M to d, then pools;
  the code pools M (2d) and projects after.
* what SCL/ACL compare (``contrastive_input``, ``projection_heads``): the paper says "the
  multimodal representations M" (here: the pooled m); the code puts two MLPs
  (Linear 2d->d, GELU, Linear d->d; one for the original view, one for the augmented view) on h.
* ``text_self_attention`` (code only): one BERT self-attention layer (and dropout) on T before
  the blocks.  ``audio_projections`` (code only): each use of A as queries (B) or keys/values (D)
  goes through its own Linear(d, d) first.
* SCL (``train.loss.scl_variant``): the paper's Algorithm 1 divides the similarities by tau
  inside the log-softmax; the code divides the log-softmax by tau (a 1/tau rescaling).
* CTC vocabulary (``train.data.ctc_vocab``): the paper's "unique characters and symbols in our
  corpus and an extra blank" (here: the characters of the fold's training transcripts,
  upper-cased, punctuation removed, ``|`` for the space, blank 0); the code's 32-token
  wav2vec2 character vocabulary (``<pad>`` = blank 0, ``<s> </s> <unk> |``, A-Z and the
  apostrophe), characters outside it dropped.
* Optimisation (config): the paper's lr 1e-5, batch 4, accumulation 4, 100 epochs; the code's
  lr 5e-5, batch 2 and AdamW.  One weight 0.1 for all three auxiliary losses in both.

Choices where both are silent, or where we follow the code (each a field below):

* CME block: one post-LN transformer layer with cross-attention (BERT layer layout: attention,
  dropout, residual + LayerNorm, GELU feed-forward, dropout, residual + LayerNorm) with the
  code's BERT sizes: 12 heads, feed-forward 3072, dropout 0.1, key padding masks.
* tau = 0.07 (the code; the paper gives none); no L2 normalisation (neither has one).
* CTC: summed over the batch (the code's ``reduction="sum"``: the 0.1 weight acts on a sum),
  ``zero_infinity`` on (the code's is off; an utterance whose audio has fewer frames than its
  transcript has characters would otherwise make the loss infinite and every gradient NaN), and
  computed on the CPU (the CUDA CTC backward has no deterministic implementation, which the
  engine enforces; the tensors are small).  Transcripts lose bracketed non-speech spans
  (``[LAUGHTER]``), as the code does.
* The emotion head is one linear layer; pooling is masked max pooling (Eq. 3 says both "max"
  and "attention" pooling; the code uses max).
* ACL: one augmented copy per training utterance and epoch, drawn with
  :func:`emorepro.augment.choose_copies` from the copies fold k may use
  (:func:`emorepro.augment.allowed_copies`: none voiced by a speaker held out of fold k, none
  made from a held-out utterance), so no fold trains on its test speakers' voices.  One direction
  only (original -> augmented), as Algorithm 1.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Recipe, masked_max

log = logging.getLogger(__name__)

FUSIONS = ("mmi", "concat", "audio", "text")

# --------------------------------------------------------------------------- CTC vocabulary

#: facebook/wav2vec2-base-960h's vocab.json, the authors' CTC vocabulary (32 symbols, blank = <pad> = 0)
WAV2VEC2_VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U",
                  "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z")
WORD_DELIMITER = "|"


def _clean(text: str) -> str:
    # bracketed non-speech spans ([LAUGHTER], [BREATHING]) dropped, as the authors' code does; IEMOCAP's pause
    # mark "--" separates words (deleting it as punctuation would join them)
    return " ".join(re.sub(r"\[[^\]]*\]|--", " ", str(text or "")).split())


class CharVocab:
    """Characters <-> CTC ids.  ``symbols[0]`` is the blank; ``|`` stands for the space between words.

    ``kind="corpus"`` (the paper): upper-cased, every punctuation mark removed (apostrophes too),
    the symbols are the characters that occur; ``kind="wav2vec2"`` (the code): the 32 fixed
    symbols, apostrophes kept, any other character outside the vocabulary dropped.
    """

    def __init__(self, symbols: Sequence[str], kind: str):
        assert symbols[0] in ("<blank>", "<pad>") and WORD_DELIMITER in symbols, symbols
        assert len(set(symbols)) == len(symbols), "duplicate CTC symbols"
        self.symbols = tuple(symbols)
        self.kind = kind
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def wav2vec2(cls) -> "CharVocab":
        return cls(WAV2VEC2_VOCAB, "wav2vec2")

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "CharVocab":
        chars = sorted({c for t in texts for c in cls.normalise_paper(t)} - {" "})
        return cls(("<blank>", WORD_DELIMITER, *chars), "corpus")

    @staticmethod
    def normalise_paper(text: str) -> str:
        t = "".join(c for c in _clean(text).upper() if c.isalnum() or c.isspace())
        return " ".join(t.split())

    def normalise(self, text: str) -> str:
        """The transcript as the CTC target spells it (spaces, not ``|``)."""
        if self.kind == "corpus":
            return " ".join("".join(c for c in self.normalise_paper(text) if c == " " or c in self.index).split())
        t = "".join(c for c in _clean(text).upper() if c == " " or (c in self.index and len(c) == 1
                                                                      and c != WORD_DELIMITER))
        return " ".join(t.split())

    def encode(self, text: str) -> list[int]:
        return [self.index[WORD_DELIMITER if c == " " else c] for c in self.normalise(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(" " if self.symbols[i] == WORD_DELIMITER else self.symbols[i] for i in ids if i != 0)

    def __len__(self) -> int:
        return len(self.symbols)


# --------------------------------------------------------------------------- config and pieces


@dataclass
class MMERConfig:
    fusion: str = "mmi"             # mmi (MMER rows) | concat (Multimodal baseline) | audio | text (unimodal rows)
    d_audio: int = 768              # wav2vec2-base hidden size (set from the encoder by the recipe)
    d_text: int = 768               # RoBERTa-base hidden size (set from the feature cache by the recipe)
    d_model: int = 768              # d (Sec. 4: "our d effectively takes a value of 768")
    n_heads: int = 12               # h: not given in the paper; the code's BERT layer config
    d_ff: int = 3072                # CME feed-forward size (the code's BERT config)
    dropout: float = 0.1            # CME dropout (the code's BERT config)
    n_classes: int = 4
    vocab_size: int = 0             # CTC symbols incl. the blank (set by the recipe from train.data.ctc_vocab)
    ctc_dropout: float = 0.1        # dropout on A before the CTC head (the code)
    text_self_attention: bool = False   # code only: one BERT self-attention layer on T before the CME blocks
    audio_projections: bool = False     # code only: a Linear(d, d) on A before each use (B's queries, D's keys/values)
    project_then_pool: bool = True      # paper: l(M) then max pool; false: max pool, then l (the code)
    contrastive_input: str = "mmi"      # what SCL/ACL compare: mmi = the pooled MMI output m (paper); head = h (code)
    projection_heads: bool = False      # code: separate MLPs for the original and the augmented view

    def __post_init__(self):
        assert self.fusion in FUSIONS, f"fusion must be one of {FUSIONS}, got {self.fusion!r}"
        assert self.contrastive_input in ("mmi", "head"), f"contrastive_input: mmi or head, got {self.contrastive_input!r}"
        assert self.d_model % self.n_heads == 0, f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}"
        assert not (self.fusion != "mmi" and self.contrastive_input == "mmi" and self.projection_heads), \
            "projection heads on m need the MMI (fusion: mmi)"


class CMEBlock(nn.Module):
    """Cross-Modal Encoder block: a post-LN transformer layer whose attention reads another stream.

    ``forward(q (B, Tq, d), kv (B, Tk, d), kv_mask (B, Tk) bool) -> (B, Tq, d)``; padded keys are
    masked; outputs at padded query positions are computed but never read unmasked downstream.
    """

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.ln1 = nn.LayerNorm(d, eps=1e-12)   # BERT's LayerNorm eps
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))
        self.ln2 = nn.LayerNorm(d, eps=1e-12)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        a = self.attn(q, kv, kv, key_padding_mask=~kv_mask, need_weights=False)[0]   # (B, Tq, d)
        x = self.ln1(q + self.drop(a))                                               # (B, Tq, d)
        return self.ln2(x + self.drop(self.ff(x)))                                   # (B, Tq, d)


class MMIModule(nn.Module):
    """The multimodal interaction module (Sec. 3.2.2): CME blocks B, C, D, acoustic gate E, M and l.

    ``forward(A (B, J, d), am (B, J), T (B, M, d), tm (B, M)) -> m (B, d)`` (masked pooling inside).
    """

    def __init__(self, cfg: MMERConfig):
        super().__init__()
        d = cfg.d_model
        block = lambda: CMEBlock(d, cfg.n_heads, cfg.d_ff, cfg.dropout)   # noqa: E731
        self.cfg = cfg
        self.text_sa = block() if cfg.text_self_attention else None
        self.text_drop = nn.Dropout(cfg.dropout)
        self.proj_b = nn.Linear(d, d) if cfg.audio_projections else nn.Identity()
        self.proj_d = nn.Linear(d, d) if cfg.audio_projections else nn.Identity()
        self.block_b, self.block_c, self.block_d = block(), block(), block()
        self.gate = nn.Linear(2 * d, d)                 # W_g in R^{2d x d}, b_g (Eq. 2)
        self.down = nn.Linear(2 * d, d)                 # l(.): 2d -> d

    def forward(self, A, am, T, tm):
        if self.text_sa is not None:
            T = self.text_drop(self.text_sa(T, T, tm))                  # (B, M, d)
        P = self.block_b(self.proj_b(A), T, tm)                         # (B, J, d): audio queries, text keys/values
        R = self.block_c(T, P, am)                                      # (B, M, d): text queries, P keys/values
        Q = self.block_d(T, self.proj_d(A), am)                         # (B, M, d): text queries, audio keys/values
        g = torch.sigmoid(self.gate(torch.cat([R, Q], dim=-1)))         # (B, M, d)
        M = torch.cat([g * Q, R], dim=-1)                               # (B, M, 2d): M = [Q; R]
        if self.cfg.project_then_pool:
            return masked_max(self.down(M), tm)                         # (B, d): mp(l(M)) (paper)
        return self.down(masked_max(M, tm))                             # (B, d): l(mp(M)) (code)


def _mlp(d_in: int, d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d))


class MMERNet(nn.Module):
    """All seven rows of Table 1: ``fusion`` picks the network, the loss weights pick the tasks.

    ``forward(wav (B, S), wav_lens (B,) | audio (B, J, d_audio), audio_mask (B, J), text (B, M, d_text),
    text_mask (B, M), aug_* the same for the augmented copies)`` -> ``logits`` (B, C), ``embedding`` (B, D_h); in training also ``ctc_logits``
    (B, J, V) + ``ctc_lengths`` (B,) (with a CTC head), ``z`` (B, D_z) and, given aug inputs, ``z_aug``.
    """

    def __init__(self, cfg: MMERConfig, audio_encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        # FinetuneAudioEncoder: (wav, wav_lens) -> hidden (B, J, d_audio), mask; None: frozen features arrive as
        # ``audio`` (B, J, d_audio) + ``audio_mask`` (B, J) from the feature cache (finetune: null)
        self.audio_encoder = audio_encoder
        uses_audio, uses_text = cfg.fusion != "text", cfg.fusion != "audio"
        assert uses_audio or audio_encoder is None, f"fusion {cfg.fusion!r} uses no audio encoder"
        self.mmi = None
        if cfg.fusion == "mmi":
            self.in_a = nn.Linear(cfg.d_audio, d) if cfg.d_audio != d else nn.Identity()
            self.in_t = nn.Linear(cfg.d_text, d) if cfg.d_text != d else nn.Identity()
            self.mmi = MMIModule(cfg)
            d_h = cfg.d_audio + d                                       # [mp(A); m]
        else:
            d_h = cfg.d_audio * uses_audio + cfg.d_text * uses_text     # [mp(A); mp(T)], mp(A) or mp(T)
        self.d_h = d_h
        self.head = nn.Linear(d_h, cfg.n_classes)                       # W_p, b_p
        self.ctc_head = None
        if cfg.vocab_size:
            assert uses_audio, "a CTC head needs the audio branch"
            self.ctc_drop = nn.Dropout(cfg.ctc_dropout)
            self.ctc_head = nn.Linear(cfg.d_audio, cfg.vocab_size)      # W_c, b_c
        d_z = d if cfg.contrastive_input == "mmi" else d_h
        self.proj_orig = _mlp(d_z, d) if cfg.projection_heads else None
        self.proj_aug = _mlp(d_z, d) if cfg.projection_heads else None

    def _encode(self, wav, wav_lens, audio, audio_mask, text, text_mask):
        """One view -> (h (B, D_h), z (B, D_z), A (B, J, d_audio) or None, its mask)."""
        A = am = None
        parts = []
        if self.cfg.fusion != "text":
            if self.audio_encoder is not None:
                a = self.audio_encoder(wav, wav_lens)
                A, am = a["hidden"], a["mask"]                                   # (B, J, d_audio), (B, J)
            else:
                assert audio is not None, "no audio encoder: cached audio features expected"
                A, am = audio, audio_mask.bool()                                 # (B, J, d_audio), (B, J)
            parts.append(masked_max(A, am))                                      # (B, d_audio)
        if self.mmi is not None:
            tm = text_mask.bool()
            m = self.mmi(self.in_a(A), am, self.in_t(text), tm)                  # (B, d)
            parts.append(m)
            h = torch.cat(parts, -1)                                             # (B, d_audio + d)
            z = m if self.cfg.contrastive_input == "mmi" else h
        else:
            if self.cfg.fusion != "audio":
                parts.append(masked_max(text, text_mask.bool()))                 # (B, d_text)
            h = torch.cat(parts, -1)                                             # (B, D_h)
            z = h
        return h, z, A, am

    def forward(self, wav=None, wav_lens=None, audio=None, audio_mask=None, text=None, text_mask=None, aug_wav=None,
                aug_wav_lens=None, aug_audio=None, aug_audio_mask=None, aug_text=None,
                aug_text_mask=None) -> dict[str, torch.Tensor]:
        h, z, A, am = self._encode(wav, wav_lens, audio, audio_mask, text, text_mask)
        out = {"logits": self.head(h), "embedding": h}                           # (B, C), (B, D_h)
        if not self.training:
            return out
        if self.ctc_head is not None:
            out["ctc_logits"] = self.ctc_head(self.ctc_drop(A))                  # (B, J, V)
            out["ctc_lengths"] = am.sum(1)                                       # (B,)
        out["z"] = self.proj_orig(z) if self.proj_orig is not None else z        # (B, D_z)
        if aug_text is not None or aug_wav is not None or aug_audio is not None:
            _, z_aug, _, _ = self._encode(aug_wav, aug_wav_lens, aug_audio, aug_audio_mask, aug_text, aug_text_mask)
            out["z_aug"] = self.proj_aug(z_aug) if self.proj_aug is not None else z_aug   # (B, D_z)
        return out


# --------------------------------------------------------------------------- losses


def scl_loss(z: torch.Tensor, labels: torch.Tensor, tau: float, variant: str = "paper") -> torch.Tensor:
    """Supervised contrastive loss over the batch (Algorithm 1).

    S = z z^T (B, B), self-pairs included; positives P = {(i, j): y_i = y_j} (i = j included);
    L = -(1/|P|) sum_P logP_ij with logP = log_softmax(S / tau) (paper) or log_softmax(S) / tau (code).
    """
    s = z.float() @ z.float().T                                                   # (B, B)
    logp = F.log_softmax(s / tau, dim=1) if variant == "paper" else F.log_softmax(s, dim=1) / tau
    pos = (labels[:, None] == labels[None, :]).to(logp.dtype)                     # (B, B)
    return -(logp * pos).sum() / pos.sum()


def acl_loss(z: torch.Tensor, z_aug: torch.Tensor, tau: float) -> torch.Tensor:
    """Augmented contrastive loss: InfoNCE from each utterance to its own copy among the batch's copies."""
    logits = z.float() @ z_aug.float().T / tau                                   # (B, B)
    return F.cross_entropy(logits, torch.arange(z.size(0), device=z.device))


def ctc_loss(out: dict, targets: list[list[int]], reduction: str, zero_infinity: bool) -> torch.Tensor:
    """CTC of the audio frames against the character targets, on the CPU (deterministic; see the module doc)."""
    logp = F.log_softmax(out["ctc_logits"].float(), dim=-1).transpose(0, 1).cpu()  # (J, B, V)
    tgt = torch.tensor([i for t in targets for i in t], dtype=torch.long)
    tlen = torch.tensor([len(t) for t in targets], dtype=torch.long)
    loss = F.ctc_loss(logp, tgt, out["ctc_lengths"].cpu(), tlen, blank=0, reduction=reduction,
                      zero_infinity=zero_infinity)
    return loss.to(out["ctc_logits"].device)


# --------------------------------------------------------------------------- recipe


@dataclass
class MMERData:
    """``train.data`` of an MMER experiment."""

    text_layer: int = -1            # position in the text cache's layers (the cache holds RoBERTa's last layer)
    audio_layer: int = -1           # position in the audio cache's layers (frozen wav2vec2 only: finetune null)
    ctc_vocab: str = "corpus"       # corpus: the paper's characters of the corpus + blank; wav2vec2: the code's 32 tokens

    def __post_init__(self):
        assert self.ctc_vocab in ("corpus", "wav2vec2"), f"train.data.ctc_vocab: corpus or wav2vec2, got {self.ctc_vocab!r}"


@dataclass
class MMERLoss:
    """``train.loss``: L = CE + alpha CTC + beta SCL + gamma ACL (Sec. 3.3; alpha = beta = gamma = 0.1, Sec. 4)."""

    alpha: float = 0.1              # CTC weight (0: no CTC head, the "w/o CTC" row)
    beta: float = 0.1               # SCL weight (0: "w/o SCL")
    gamma: float = 0.1              # ACL weight (0: "w/o ACL"; no augmented copies needed)
    tau: float = 0.07               # temperature of SCL and ACL (the code's; the paper gives none)
    scl_variant: str = "paper"      # paper: log_softmax(S / tau); code: log_softmax(S) / tau
    ctc_reduction: str = "sum"      # sum over the batch (the code), or mean (torch's per-target-length mean)
    ctc_zero_infinity: bool = True  # an impossible alignment gives 0, not inf (the code: false)

    def __post_init__(self):
        assert self.scl_variant in ("paper", "code"), f"train.loss.scl_variant: paper or code, got {self.scl_variant!r}"
        assert self.ctc_reduction in ("sum", "mean"), f"train.loss.ctc_reduction: sum or mean, got {self.ctc_reduction!r}"
        assert min(self.alpha, self.beta, self.gamma) >= 0 and self.tau > 0, "loss weights >= 0 and tau > 0"


class MMERRecipe(Recipe):
    """Feeds :class:`MMERNet`: raw audio to the fine-tuned wav2vec2 (``train.finetune.audio``, the paper)
    or frozen wav2vec2 frames from the ``audio`` cache (``finetune: null``: heads only, the demo's
    mode, as Ispas et al.'s demo rows), RoBERTa token features from the ``text`` cache, CTC targets from the transcripts and, for ACL, one
    augmented copy per training utterance and epoch (``ctx.extra_inputs["aug_copies"]``: the copies
    sidecar of the augmented corpus; its features are in the same ``text`` cache and its wavs in
    ``ctx.audio``, both handed over by the loop)."""

    finetune_roles = ("audio",)
    fusion: str | None = None        # subclasses fix it (the unimodal registry entries)
    input_keys = ("wav", "wav_lens", "audio", "audio_mask", "text", "text_mask", "aug_wav", "aug_wav_lens", "aug_audio",
                  "aug_audio_mask", "aug_text", "aug_text_mask")

    def __init__(self, ctx):
        super().__init__(ctx)
        from ..io import InputError

        self.data = MMERData(**ctx.cfg.data)
        self.lossc = MMERLoss(**ctx.cfg.loss)
        params = dict(ctx.model_params)
        if self.fusion is not None:
            if params.get("fusion", self.fusion) != self.fusion:
                raise InputError(f"config: model_params.fusion {params['fusion']!r}: this model is the "
                                 f"{self.fusion!r} baseline")
            params["fusion"] = self.fusion
        self.params = params
        fusion = params.get("fusion", "mmi")
        self.uses_audio, self.uses_text = fusion != "text", fusion != "audio"
        if fusion != "mmi" and (self.lossc.alpha or self.lossc.beta or self.lossc.gamma):
            raise InputError(f"config: fusion {fusion!r} is a single-task baseline: set train.loss alpha, beta and "
                             "gamma to 0")
        self.audio_cached = self.uses_audio and "audio" not in ctx.encoders
        if self.audio_cached and "audio" not in ctx.caches:
            raise InputError("config: MMER reads audio through wav2vec2: fine-tuned (the paper; list `audio` under "
                             "train.finetune) or frozen features from the `audio` cache (finetune: null)")
        if self.audio_cached:
            log.info("audio: frozen wav2vec2 features from the cache (heads only; the paper fine-tunes wav2vec2)")
        if self.uses_text and "text" not in ctx.caches:
            raise InputError("config: MMER reads RoBERTa's token features from the `text` feature cache (frozen, as "
                             "the paper); `text` must not be under train.finetune")
        # CTC targets of the training utterances (the vocabulary from their transcripts for `corpus`)
        self.vocab: CharVocab | None = None
        self.targets: dict[str, list[int]] = {}
        if self.lossc.alpha > 0:
            train = ctx.splits["train"]
            self.vocab = (CharVocab.wav2vec2() if self.data.ctc_vocab == "wav2vec2"
                          else CharVocab.from_texts([ctx.transcript(u) for u in train]))
            self.targets = {u: self.vocab.encode(ctx.transcript(u)) for u in train}
            empty = sum(not t for t in self.targets.values())
            log.info("CTC: %d symbols (%s), %d training transcripts, %d empty", len(self.vocab), self.data.ctc_vocab,
                     len(train), empty)
        # ACL: which copies this fold may train on
        self.allowed: dict[str, list[str]] = {}
        self.copy_of: dict[str, str] = {}
        copies = ctx.extra_inputs.get("aug_copies")
        if self.lossc.gamma > 0:
            if not copies:
                raise InputError("config: ACL (train.loss.gamma > 0) trains on augmented copies: set the experiment's "
                                 "`augment` to the augmented corpus (e.g. iemocap_aug)")
            self.allowed = self._allowed_copies(copies)
        elif copies:
            raise InputError("config: the experiment names an augmented corpus (`augment`) but trains without ACL "
                             "(train.loss.gamma = 0): drop `augment` so that nothing is synthesised for it")
        self.net: MMERNet | None = None
        self._terms: dict[str, list[float]] = {}

    def _allowed_copies(self, copies_csv: str) -> dict[str, list[str]]:
        import pandas as pd

        from ..augment import allowed_copies, read_copies
        from ..io import InputError

        ctx = self.ctx
        folds = pd.DataFrame([{"utt_id": u, "fold": ctx.fold, "split": s} for s, us in ctx.splits.items() for u in us])
        allowed = allowed_copies(read_copies(copies_csv), folds, ctx.fold,
                                 manifest=ctx.manifest.reset_index(drop=True)[["utt_id", "speaker"]])
        none = [u for u, cs in allowed.items() if not cs]
        if none:
            raise InputError(f"{copies_csv}: training utterance(s) {none[:3]} of fold {ctx.fold} have no copy this fold "
                             f"may use ({len(none)} in all): every copy is voiced by a held-out speaker")
        for role in [r for r, used in (("text", self.uses_text), ("audio", self.audio_cached)) if used]:
            missing = [c for cs in allowed.values() for c in cs if c not in ctx.caches[role]]
            if missing:
                raise InputError(f"the {role} feature cache has no augmented copy {missing[0]!r} ({len(missing)} "
                                 "missing): the loop must read the augmented corpus's cache with the source's")
        n = sum(len(v) for v in allowed.values())
        log.info("ACL: %d allowed copies for %d training utterances of fold %d", n, len(allowed), ctx.fold)
        return allowed

    # ----------------------------------------------------------------- model
    def build(self):
        from ..io import InputError

        unknown = sorted(set(self.params) - set(MMERConfig.__dataclass_fields__))
        if unknown:
            raise InputError(f"config: model_params {unknown} are not MMERConfig fields "
                             f"({sorted(MMERConfig.__dataclass_fields__)})")
        params = {**self.params, "n_classes": len(self.ctx.classes),
                  "vocab_size": len(self.vocab) if self.vocab is not None else 0}
        enc = self.ctx.encoders.get("audio") if self.uses_audio else None
        if enc is not None:
            params["d_audio"] = enc.dim
        elif self.uses_audio:
            params["d_audio"] = self.ctx.caches["audio"].dim
        if self.uses_text:
            params["d_text"] = self.ctx.caches["text"].dim
        self.net = MMERNet(MMERConfig(**params), enc)
        return self.net

    # ----------------------------------------------------------------- batches
    def _cached(self, role: str, utts: list[str], layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded cached sequences of ``role`` -> (B, M, d), mask (B, M)."""
        c = self.ctx.caches[role]
        seqs = [np.asarray(c.layer(u, layer), dtype=np.float32) for u in utts]                   # (M_i, d)
        lens = [len(s) for s in seqs]
        x = np.zeros((len(seqs), max(lens), seqs[0].shape[1]), dtype=np.float32)                # (B, M, d_text)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = s
        mask = np.arange(max(lens))[None, :] < np.asarray(lens)[:, None]                         # (B, M)
        d = self.ctx.device
        return torch.from_numpy(x).to(d), torch.from_numpy(mask).to(d)

    def _view(self, utts: list[str], prefix: str = "") -> dict:
        b = {}
        if self.uses_audio and self.audio_cached:
            b[f"{prefix}audio"], b[f"{prefix}audio_mask"] = self._cached("audio", utts, self.data.audio_layer)
        elif self.uses_audio:
            enc = self.ctx.encoders["audio"]
            a = enc.collate([self.ctx.audio(u) for u in utts], device=self.ctx.device)   # crops follow the mode
            b[f"{prefix}wav"], b[f"{prefix}wav_lens"] = a["wav"], a["wav_lens"]
        if self.uses_text:
            b[f"{prefix}text"], b[f"{prefix}text_mask"] = self._cached("text", utts, self.data.text_layer)
        return b

    def batch(self, split, idx):
        ctx = self.ctx
        utts = [ctx.splits[split][i] for i in idx]
        b = {"label": torch.from_numpy(ctx.labels(split)[idx]).to(ctx.device), "utt_ids": utts}
        b.update(self._view(utts))
        training = split == "train" and (self.net is None or self.net.training)
        if training and self.vocab is not None:
            b["ctc_targets"] = [self.targets[u] for u in utts]
        if training and self.lossc.gamma > 0:
            if not self.copy_of:
                raise RuntimeError("ACL: no copies chosen for this epoch (on_epoch_start was not called)")
            aug = [self.copy_of[u] for u in utts]
            b["aug_ids"] = aug
            b.update(self._view(aug, prefix="aug_"))
        return b

    # ----------------------------------------------------------------- training hooks
    def on_epoch_start(self, epoch, net):
        from ..augment import choose_copies

        if self._terms:
            log.info("epoch %d loss terms (mean over micro-batches): %s", epoch - 1,
                     {k: round(float(np.mean(v)), 5) for k, v in self._terms.items()})
            self._terms = {}
        if self.lossc.gamma > 0:
            self.copy_of = choose_copies(self.allowed, seed=self.ctx.seed, epoch=epoch)

    def loss(self, out, batch, epoch):
        lc = self.lossc
        terms = {"ce": F.cross_entropy(out["logits"], batch["label"])}
        total = terms["ce"]
        if lc.alpha > 0:
            terms["ctc"] = ctc_loss(out, batch["ctc_targets"], lc.ctc_reduction, lc.ctc_zero_infinity)
            total = total + lc.alpha * terms["ctc"]
        if lc.beta > 0:
            terms["scl"] = scl_loss(out["z"], batch["label"], lc.tau, lc.scl_variant)
            total = total + lc.beta * terms["scl"]
        if lc.gamma > 0:
            terms["acl"] = acl_loss(out["z"], out["z_aug"], lc.tau)
            total = total + lc.gamma * terms["acl"]
        for k, v in terms.items():
            self._terms.setdefault(k, []).append(float(v.detach()))
        return total


class MMERAudioRecipe(MMERRecipe):
    """Table 1 "wav2vec-2.0": fine-tuned wav2vec2-base, max pool, one linear layer (registry ``mmer_audio``)."""

    fusion = "audio"


class MMERTextRecipe(MMERRecipe):
    """Table 1 "RoBERTa-base": frozen RoBERTa features, max pool, one linear layer (registry ``mmer_text``)."""

    fusion = "text"
    finetune_roles = ()
