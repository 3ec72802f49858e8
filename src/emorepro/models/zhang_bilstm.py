"""BiLSTM + multi-head self-attention pooling over log-mel filterbanks (Zhang et al. 2022).

References: Zhang et al., "Selective multi-task learning for speech emotion recognition
using corpora of different styles" (ICASSP 2022), Sec. 2.1, Sec. 4.1-4.2 and Table 2; the
attention is the structured self-attention of Lin et al. (2017), as in the paper's refs.
[14, 15], with a projection per head as the paper's Eq. 1 writes it.

    H          = BiLSTM^L(X)                          (B, T, 2*d_lstm)    L = n_lstm_layers
    alpha_i    = softmax_T(w2_i tanh(W1_i H^T))       (B, T) per head i   Eq. 1
    H_att      = concat_i(alpha_i H)                  (B, n_heads * 2*d_lstm)  Eq. 2
    logits     = Out(ReLU(FC2(ReLU(FC1(H_att)))))    (B, n_classes)

Choices the paper leaves open (each a field of :class:`ZhangConfig`, so config can change it):

* ``n_lstm_layers = 2``.  The paper speaks of "Bi-LSTM layers" (Sec. 2.1) and "a dropout
  probability of 0.2 in each Bi-LSTM layer" (Sec. 4.2) but gives no count (Table 2 lists
  only the 256 cells).  The plural rules out one; two is the fewest it allows.  Dropout 0.2
  is applied to every layer's output (between layers by ``nn.LSTM``, after the last here).
* ``att_w1 = "per_head"``.  Eq. 1 writes ``W_{1,i}``, one projection per head, each with
  ``d_att`` nodes (Table 2: 512); ``"shared"`` is Lin et al.'s single ``W1`` for all heads
  (the heads then differ only in ``w2_i``).
* Attention covers the zero padding (``mask_padding = False``), as zero-padding to 7.5 s
  (Sec. 4.1) implies; FC1 and FC2 have ReLU activations (Sec. 2.1 names ReLU for the FC).

An optional style head (acted vs spontaneous) shares everything up to FC2's output for
the multi-task variants (Sec. 2.2, Fig. 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ZhangConfig:
    n_mels: int = 40            # 40-channel log-mel filterbank (paper Sec. 4.1)
    d_lstm: int = 256           # cells per direction ("Number of cells in Bi-LSTM", Table 2)
    n_lstm_layers: int = 2      # "Bi-LSTM layers" (Sec. 2.1), count not given: the fewest the plural allows
    d_att: int = 512            # attention nodes (the output size of each head's W1_i, Table 2)
    n_heads: int = 8            # attention heads, one attention layer
    att_w1: str = "per_head"    # Eq. 1's W_{1,i}: "per_head" (the paper) or "shared" (Lin et al. 2017)
    d_fc1: int = 4096           # FC1 nodes
    d_fc2: int = 1024           # FC2 nodes
    n_classes: int = 4
    n_styles: int = 0           # 2 for the style multi-task variants, 0 = no style head
    dropout: float = 0.2        # "dropout probability of 0.2 in each Bi-LSTM layer" (Sec. 4.2)
    mask_padding: bool = False  # the paper zero-pads to 7.5 s and attends over the padding too

    def __post_init__(self):
        if self.att_w1 not in ("per_head", "shared"):
            raise ValueError(f"config: model_params.att_w1 must be 'per_head' or 'shared', got {self.att_w1!r}")
        if self.n_lstm_layers < 1:
            raise ValueError(f"config: model_params.n_lstm_layers must be >= 1, got {self.n_lstm_layers}")


class StructuredSelfAttention(nn.Module):
    """Eq. 1-2: ``n_heads`` attention distributions over time, each pooling H.

    ``per_head=True``: head i has its own ``W1_i`` (d_att x D) and ``w2_i`` (d_att), as Eq. 1
    writes; computed as one (D -> n_heads * d_att) projection split into heads.
    ``per_head=False``: one ``W1`` shared by the heads, ``W2`` (n_heads x d_att) (Lin et al. 2017).
    """

    def __init__(self, d_in: int, d_att: int, n_heads: int, per_head: bool = True):
        super().__init__()
        self.n_heads, self.d_att, self.per_head = n_heads, d_att, per_head
        if per_head:
            self.w1 = nn.Linear(d_in, n_heads * d_att, bias=False)
            # w2_i as rows of one parameter, initialised as nn.Linear(d_att, 1) would be
            self.w2 = nn.Parameter(torch.empty(n_heads, d_att).uniform_(-d_att ** -0.5, d_att ** -0.5))
        else:
            self.w1 = nn.Linear(d_in, d_att, bias=False)
            self.w2 = nn.Linear(d_att, n_heads, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # h: (B, T, D); mask: (B, T) True for real frames
        if self.per_head:
            u = torch.tanh(self.w1(h)).unflatten(-1, (self.n_heads, self.d_att))   # (B, T, n_heads, d_att)
            scores = torch.einsum("btha,ha->bth", u, self.w2)                      # (B, T, n_heads)
        else:
            scores = self.w2(torch.tanh(self.w1(h)))                               # (B, T, n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask[..., None], float("-inf"))
        alpha = torch.softmax(scores, dim=1)                  # over time
        pooled = torch.einsum("bth,btd->bhd", alpha, h)       # (B, n_heads, D)
        return pooled.flatten(1)                              # (B, n_heads * D)


class ZhangBiLSTM(nn.Module):
    def __init__(self, cfg: ZhangConfig):
        super().__init__()
        self.cfg = cfg
        # Dropout on every layer's output: between stacked layers (nn.LSTM's) and after the last (self.drop).
        self.lstm = nn.LSTM(cfg.n_mels, cfg.d_lstm, num_layers=cfg.n_lstm_layers, batch_first=True,
                            bidirectional=True, dropout=cfg.dropout if cfg.n_lstm_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.att = StructuredSelfAttention(2 * cfg.d_lstm, cfg.d_att, cfg.n_heads, per_head=cfg.att_w1 == "per_head")
        self.fc1 = nn.Linear(cfg.n_heads * 2 * cfg.d_lstm, cfg.d_fc1)
        self.fc2 = nn.Linear(cfg.d_fc1, cfg.d_fc2)
        self.out = nn.Linear(cfg.d_fc2, cfg.n_classes)
        self.style = nn.Linear(cfg.d_fc2, cfg.n_styles) if cfg.n_styles else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        # x: (B, T, n_mels) zero-padded; lengths: (B,) real frames
        assert x.size(-1) == self.cfg.n_mels, f"expected {self.cfg.n_mels} mel bins, got {x.size(-1)}"
        h, _ = self.lstm(x)                                   # (B, T, 2*d_lstm)
        h = self.drop(h)
        mask = None
        if self.cfg.mask_padding and lengths is not None:
            mask = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]
        z = self.att(h, mask)                                 # (B, n_heads*2*d_lstm)
        z = F.relu(self.fc2(F.relu(self.fc1(z))))             # (B, d_fc2)
        out = {"logits": self.out(z)}                         # (B, n_classes)
        if self.style is not None:
            out["style_logits"] = self.style(z)               # (B, n_styles)
        return out


# --------------------------------------------------------------------------- recipe

from dataclasses import dataclass as _dataclass  # noqa: E402

import numpy as np  # noqa: E402

from .base import Recipe  # noqa: E402


@_dataclass
class ZhangData:
    max_seconds: float = 7.5    # first 7.5 s, zero-padded (Zhang et al. Sec. 4.1)
    frame_rate: float = 100.0   # fbank frames per second (10 ms shift)
    layer: int = 0              # position in the cache's exposed layers
    normalize: bool = True      # z-score per channel with training-split statistics (padding stays zero); the paper is silent


class ZhangRecipe(Recipe):
    """Fixed-length fbank inputs: first ``max_seconds``, zero-padded; cross-entropy loss."""

    input_keys = ("x", "lengths")
    data_cls = ZhangData        # subclasses extend the data options (emorepro.models.zhang_mtl)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.data = self.data_cls(**ctx.cfg.data)
        cache = ctx.caches["audio"]
        max_frames = int(round(self.data.max_seconds * self.data.frame_rate))
        self.x, self.lengths = {}, {}
        for split, utts in ctx.splits.items():
            if not utts:
                continue
            x = np.zeros((len(utts), max_frames, cache.dim), dtype=np.float32)   # (N, T, D)
            lengths = np.zeros(len(utts), dtype=np.int64)
            for i, u in enumerate(utts):
                f = np.asarray(cache.layer(u, self.data.layer), dtype=np.float32)[:max_frames]
                x[i, : len(f)] = f
                lengths[i] = len(f)
            self.x[split], self.lengths[split] = x, lengths
        if self.data.normalize:
            xt, lt = self.x["train"], self.lengths["train"]
            real = np.concatenate([xt[i, :n] for i, n in enumerate(lt)])
            mu, sd = real.mean(0), real.std(0) + 1e-5
            for split, x in self.x.items():
                for i, n in enumerate(self.lengths[split]):
                    x[i, :n] = (x[i, :n] - mu) / sd
        self.y = {s: ctx.labels(s) for s in self.x}

    def build(self):
        from . import build_model

        return build_model("zhang_bilstm_att", {**self.ctx.model_params, "n_classes": len(self.ctx.classes),
                                                "n_mels": self.ctx.caches["audio"].dim})[0]

    def batch(self, split, idx):
        d = self.ctx.device
        return {"x": torch.from_numpy(self.x[split][idx]).to(d), "lengths": torch.from_numpy(self.lengths[split][idx]).to(d),
                "label": torch.from_numpy(self.y[split][idx]).to(d)}

    def loss(self, out, batch, epoch):
        return F.cross_entropy(out["logits"], batch["label"])
