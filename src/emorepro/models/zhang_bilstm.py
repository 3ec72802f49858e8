"""BiLSTM + multi-head self-attention pooling over log-mel filterbanks (Zhang et al. 2022).

References: Zhang et al., "Selective multi-task learning for speech emotion recognition
using corpora of different styles" (ICASSP 2022), Sec. 2.1 and Table 2; the attention is
the structured self-attention of Lin et al. (2017), as in Li et al. (Interspeech 2019).

    H      = BiLSTM(X)                            (B, T, 2*d_lstm)
    alpha  = softmax_T(W2 tanh(W1 H^T))           (B, n_heads, T)        Eq. 1
    H_att  = concat_i(alpha_i H)                  (B, n_heads * 2*d_lstm) Eq. 2
    logits = FC2(ReLU(FC1(H_att)))  -> classes    (B, n_classes)

An optional style head (acted vs spontaneous) shares everything up to FC2's output for
the multi-task variants.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ZhangConfig:
    n_mels: int = 40            # 40-channel log-mel filterbank (paper Sec. 3.2)
    d_lstm: int = 256           # cells per direction ("Number of cells in Bi-LSTM", Table 2)
    d_att: int = 512            # attention nodes (W1 output size)
    n_heads: int = 8            # attention heads, one attention layer
    d_fc1: int = 4096           # FC1 nodes
    d_fc2: int = 1024           # FC2 nodes
    n_classes: int = 4
    n_styles: int = 0           # 2 for the style multi-task variants, 0 = no style head
    dropout: float = 0.2        # "dropout probability of 0.2 in each Bi-LSTM layer"
    mask_padding: bool = False  # the paper zero-pads to 7.5 s and attends over the padding too


class StructuredSelfAttention(nn.Module):
    def __init__(self, d_in: int, d_att: int, n_heads: int):
        super().__init__()
        self.w1 = nn.Linear(d_in, d_att, bias=False)
        self.w2 = nn.Linear(d_att, n_heads, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # h: (B, T, D); mask: (B, T) True for real frames
        scores = self.w2(torch.tanh(self.w1(h)))             # (B, T, n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask[..., None], float("-inf"))
        alpha = torch.softmax(scores, dim=1)                  # over time
        pooled = torch.einsum("bth,btd->bhd", alpha, h)       # (B, n_heads, D)
        return pooled.flatten(1)                              # (B, n_heads * D)


class ZhangBiLSTM(nn.Module):
    def __init__(self, cfg: ZhangConfig):
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(cfg.n_mels, cfg.d_lstm, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.att = StructuredSelfAttention(2 * cfg.d_lstm, cfg.d_att, cfg.n_heads)
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
    max_seconds: float = 7.5    # first 7.5 s, zero-padded (Zhang et al. Sec. 3.2)
    frame_rate: float = 100.0   # fbank frames per second (10 ms shift)
    layer: int = 0              # position in the cache's exposed layers
    normalize: bool = True      # z-score with training-split statistics (padding stays zero)


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
