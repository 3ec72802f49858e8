"""Fine-tunable encoders: HuBERT / wav2vec 2.0 from raw waveforms, DeBERTa / RoBERTa / BERT from text.

The training loop (:func:`emorepro.train.run_training`) builds these from ``train.finetune`` of an
experiment and hands them to the recipe in ``RunContext.encoders[role]``; a model family never
imports this module (it only calls the methods below on what it is given).

    enc = ctx.encoders["audio"]                                   # FinetuneAudioEncoder
    b = enc.collate([ctx.audio(u) for u in utts])                 # {"wav": (B, S), "wav_lens": (B,)}
    out = enc(**b)                                                # {"hidden": (B, T, d), "mask": (B, T) bool}
    pooled = masked_mean(out["hidden"], out["mask"])              # (B, d)

    txt = ctx.encoders["text"]                                    # FinetuneTextEncoder
    t = txt.tokenize(transcripts)                                 # {"input_ids", "attention_mask"}: (B, N)
    out = txt(**t)                                                # {"hidden": (B, N, d), "mask": (B, N) bool}

Audio computation (the same as the frozen cache's, so that at initialisation the features equal
the cached ones; a test checks it): the CNN feature encoder runs on each utterance **unpadded**
(GroupNorm over time in wav2vec2-base/HuBERT-base would otherwise see the padding), the
feature projection and the transformer on the zero-padded batch with a frame mask.
SpecAugment-style masking of ``HubertModel.forward`` is never applied implicitly: a family that
wants HuBERT's span masking (GMP-ATL stage 2) asks for it with :meth:`FinetuneAudioEncoder.span_mask`
and passes ``mask_time_indices`` (masked frames are replaced by the checkpoint's
``masked_spec_embed``, which trains).

Options (``train.finetune.<role>``, :class:`FinetuneOptions`), each recorded
in the run's provenance through the config and in the run summary with the values actually used
(``resolved``: the checkpoint's dropout/LayerDrop when the option is null):

* which hidden states: ``layers`` (indices into HF ``hidden_states``: 0 = CNN/embedding output,
  -1 = last layer, -3 = the output of layer L-2); several layers are combined by ``layer_combine``;
* what trains: ``freeze_cnn`` (default true), ``freeze_feature_projection`` (default false),
  ``freeze_encoder`` (true: the whole encoder is a frozen feature extractor computed on the fly),
  ``freeze_embeddings`` (text, default true);
* regularisation inherited from the checkpoint unless set: ``hidden_dropout``,
  ``attention_dropout``, ``activation_dropout``, ``feat_proj_dropout``, ``layerdrop``;
* length: ``train_max_seconds`` + ``train_crop`` (``random``: a window at a seeded random start,
  redrawn every time the clip is read; ``head``: the first seconds) and ``eval_max_seconds`` +
  ``eval_policy`` (``head``, or ``chunks``: consecutive windows encoded separately, frames
  concatenated, so memory is bounded and nothing is cut; IEMOCAP's longest clip is 34 s);
* memory: ``gradient_checkpointing`` (recompute each transformer layer in the backward pass;
  ``benchmarks/real_shapes.py`` prints when it is needed).

Kept encoders (``train.keep_model``) are written with ``save_pretrained`` plus the source
checkpoint's preprocessor/tokenizer files: an ordinary checkpoint directory that any later step
(a stage chain, feature extraction for k-means) loads as it would a downloaded one.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..audio import SAMPLE_RATE, conv_receptive_field, crop, pad_batch, prepare_waveform
from .base import TEXT_FAMILIES
from .transformers_backend import (
    FAMILY_CLASSES,
    load_pretrained,
    read_do_normalize,
    resolve_layers,
    text_max_length,
)

log = logging.getLogger(__name__)

AUDIO_FAMILIES = frozenset({"hubert", "wav2vec2"})
#: files copied from the source checkpoint next to a kept encoder's weights
_SIDE_FILES = ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.json", "merges.txt", "vocab.txt", "spm.model", "added_tokens.json")


@dataclass
class FinetuneOptions:
    """``train.finetune.<role>``: how one encoder is fine-tuned (or run frozen) inside the model.

    Audio-only fields (``freeze_cnn`` ... ``do_normalize``) must keep their defaults for a text
    encoder, and ``freeze_embeddings``/``max_tokens`` for an audio encoder.
    """

    checkpoint: str | None = None           # set by the workflow from encoders.<inputs.role>.checkpoint
    family: str | None = None               # idem (hubert, wav2vec2, deberta-v2, roberta, bert); None: config.json
    layers: list[int] = field(default_factory=lambda: [-1])   # hidden_states indices (negative from the top)
    layer_combine: str = "weighted_sum"     # several layers: weighted_sum (softmax weights, learnt; SUPERB), mean, stack
    freeze_encoder: bool = False            # true: nothing of the encoder trains (features computed on the fly)
    hidden_dropout: float | None = None     # None: the checkpoint's config.json value (HuBERT-large: 0.1)
    attention_dropout: float | None = None
    gradient_checkpointing: bool = False
    # audio only
    freeze_cnn: bool = True                 # the CNN feature encoder (all three papers' code freeze it)
    freeze_feature_projection: bool = False  # LayerNorm + Linear after the CNN (trains in a plain HF fine-tune)
    activation_dropout: float | None = None
    feat_proj_dropout: float | None = None
    layerdrop: float | None = None          # whole transformer layers skipped at random in training
    train_max_seconds: float | None = None  # crop training clips longer than this (None: full length)
    train_crop: str = "random"              # random | head
    eval_max_seconds: float | None = None   # validation/test clips longer than this follow eval_policy
    eval_policy: str = "head"               # head | chunks
    do_normalize: bool | None = None        # None: the checkpoint's preprocessor_config.json
    # text only
    freeze_embeddings: bool = True          # token/position embeddings (Ispas et al. Sec. 4.2)
    max_tokens: int | None = None           # None: the model's position table (512)

    AUDIO_ONLY = ("freeze_cnn", "freeze_feature_projection", "activation_dropout", "feat_proj_dropout", "layerdrop",
                  "train_max_seconds", "train_crop", "eval_max_seconds", "eval_policy", "do_normalize")
    TEXT_ONLY = ("freeze_embeddings", "max_tokens")

    def __post_init__(self):
        _check_choice("layer_combine", self.layer_combine, ("weighted_sum", "mean", "stack"))
        _check_choice("train_crop", self.train_crop, ("random", "head"))
        _check_choice("eval_policy", self.eval_policy, ("head", "chunks"))
        if not self.layers:
            raise ValueError("config: train.finetune.<role>.layers must list at least one hidden-state index")

    def check_modality(self, role: str, audio: bool) -> None:
        """Options of the other modality must keep their defaults (they would silently do nothing)."""
        default = FinetuneOptions()
        wrong = [k for k in (self.TEXT_ONLY if audio else self.AUDIO_ONLY) if getattr(self, k) != getattr(default, k)]
        if wrong:
            raise ValueError(f"config: train.finetune.{role}: {wrong} apply to {'text' if audio else 'audio'} "
                             f"encoders only; {self.checkpoint} is a {self.family} ({'audio' if audio else 'text'}) encoder")


def _check_choice(key: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"config: train.finetune.<role>.{key} must be one of {list(allowed)}, got {value!r}")


class LayerCombine(nn.Module):
    """Hidden states of several layers -> one sequence: softmax-weighted sum (learnt), mean, or a stack."""

    def __init__(self, n: int, how: str):
        super().__init__()
        self.how = how
        self.weights = nn.Parameter(torch.zeros(n)) if how == "weighted_sum" and n > 1 else None

    def forward(self, hs: list[torch.Tensor]) -> torch.Tensor:
        # hs: L tensors (B, T, d) -> (B, T, d), or (B, L, T, d) for "stack"
        if len(hs) == 1:
            return hs[0]
        x = torch.stack(hs, dim=1)                                        # (B, L, T, d)
        if self.how == "stack":
            return x
        if self.how == "mean":
            return x.mean(1)
        w = torch.softmax(self.weights, 0).to(x.dtype)                    # (L,)
        return (x * w[None, :, None, None]).sum(1)


class _Finetunable(nn.Module):
    """What both encoder kinds share: which parameters may train, and saving."""

    checkpoint: str
    family: str
    model: nn.Module

    def _setup(self, model: nn.Module, opts: FinetuneOptions) -> None:
        self.model, self.opts = model, opts
        self.checkpoint, self.family = str(opts.checkpoint), str(opts.family)
        self.dim = int(model.config.hidden_size)
        self.n_hidden = int(model.config.num_hidden_layers) + 1      # hidden_states: embeddings + each layer
        self.layer_index = resolve_layers(opts.layers, self.n_hidden, f"finetune:{self.family}")
        self.layer_combine = LayerCombine(len(self.layer_index), opts.layer_combine)
        self._always_frozen: set[int] = set()

    def _freeze(self, params) -> None:
        for p in params:
            p.requires_grad_(False)
            self._always_frozen.add(id(p))

    @property
    def trainable(self) -> bool:
        """True if any parameter of this encoder is ever trained (a kept model then saves it)."""
        return any(id(p) not in self._always_frozen for p in self.parameters())

    def set_trainable(self, flag: bool) -> None:
        """Freeze (False) or release (True) everything except what is always frozen (e.g. for one epoch)."""
        for p in self.parameters():
            p.requires_grad_(flag and id(p) not in self._always_frozen)

    def n_trainable(self) -> int:
        return int(sum(p.numel() for p in self.parameters() if id(p) not in self._always_frozen))

    def save_pretrained(self, out_dir: str | Path) -> dict[str, str]:
        """Write an ordinary checkpoint directory (weights, config.json, the source's side files).

        Returns the written file names.  Written into a temporary sibling and renamed, so a
        directory that exists is complete.
        """
        from ..io import atomic_dir

        out = Path(out_dir)
        with atomic_dir(out) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            if self.layer_combine.weights is not None:
                torch.save({"layer_combine_weights": self.layer_combine.weights.detach().cpu()}, tmp / "layer_combine.pt")
            src = Path(self.checkpoint)
            for name in _SIDE_FILES:
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
        return sorted(p.name for p in out.iterdir() if p.is_file())


class FinetuneAudioEncoder(_Finetunable):
    """A HuBERT / wav2vec 2.0 base model that trains from raw 16 kHz waveforms.

    ``forward(wav (B, S) float, wav_lens (B,) int, mask_time_indices (B, T) bool | None)``
    -> ``{"hidden": (B, T, d) [(B, L, T, d) for layer_combine=stack], "mask": (B, T) bool}``;
    padded frames of ``hidden`` are zero.
    """

    def __init__(self, model: nn.Module, opts: FinetuneOptions, *, do_normalize: bool, seed: int = 0):
        super().__init__()
        self._setup(model, opts)
        cfg = model.config
        self.do_normalize = do_normalize
        self.min_samples = conv_receptive_field(cfg.conv_kernel, cfg.conv_stride)
        self.frames_per_second = SAMPLE_RATE / float(np.prod(cfg.conv_stride))
        self.sample_rate = SAMPLE_RATE
        self.hop_samples = int(np.prod(cfg.conv_stride))        # samples per frame (320 = 20 ms): frame j starts at j * hop
        self.crop_rng = np.random.default_rng([seed, 0xC12C])   # training crops only
        if opts.freeze_cnn or opts.freeze_encoder:
            self._freeze(model.feature_extractor.parameters())
        if opts.freeze_feature_projection or opts.freeze_encoder:
            self._freeze(model.feature_projection.parameters())
        if opts.freeze_encoder:
            self._freeze(model.parameters())
        _set_gradient_checkpointing(model, opts.gradient_checkpointing)
        if getattr(cfg, "add_adapter", False):
            raise NotImplementedError(f"{self.checkpoint}: wav2vec2 adapters (add_adapter) are not supported")

    # ------------------------------------------------------------------ inputs
    def collate(self, wavs: Sequence[np.ndarray], *, train: bool | None = None,
                device: str | torch.device | None = None) -> dict:
        """Waveforms (as :func:`emorepro.audio.read_wav` returns them) -> the ``forward`` inputs.

        Training clips are cropped per ``train_max_seconds``/``train_crop``; validation/test
        clips per ``eval_max_seconds``/``eval_policy`` (``head`` crops here; ``chunks`` keeps
        the whole clip and :meth:`forward` splits it).  ``train=None``: this module's mode, which
        the loop sets (``net.train()`` while optimising, ``net.eval()`` when predicting any split).
        """
        o = self.opts
        train = self.training if train is None else train
        out = []
        for w in wavs:
            if train and o.train_max_seconds:
                w = crop(w, int(o.train_max_seconds * SAMPLE_RATE), self.crop_rng if o.train_crop == "random" else None)
            elif not train and o.eval_max_seconds and o.eval_policy == "head":
                w = crop(w, int(o.eval_max_seconds * SAMPLE_RATE))
            out.append(prepare_waveform(w, normalize=self.do_normalize, min_samples=self.min_samples,
                                        name=self.checkpoint))
        x, lens = pad_batch(out)
        return {"wav": torch.from_numpy(x).to(device or "cpu"), "wav_lens": torch.from_numpy(lens).to(device or "cpu")}

    def frame_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        """Frames the CNN gives for clips of ``wav_lens`` samples (B,) -> (B,)."""
        n = wav_lens.clone()
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n

    def span_mask(self, frame_mask: torch.Tensor, mask_prob: float, mask_length: int, min_masks: int = 2) -> torch.Tensor:
        """HuBERT's span masking (``_compute_mask_indices``), within each utterance's real frames.
        (B, T) bool -> (B, T) bool.  ``mask_prob`` has transformers' (and fairseq's) meaning: about
        ``mask_prob * T / mask_length`` spans of ``mask_length`` frames start at distinct frames, so
        HuBERT's "p = 8 % of the frames start a span of 10" is ``mask_prob = 0.8`` (spans overlap: about
        1 - (1 - 0.08)^10 = 57 % of the frames end up masked).  Draws from numpy's global generator,
        which the loop seeds with the run seed."""
        from transformers.models.hubert.modeling_hubert import _compute_mask_indices

        if getattr(self.model, "masked_spec_embed", None) is None:
            raise ValueError(f"{self.checkpoint}: the checkpoint has no masked_spec_embed (mask_time_prob is 0 in its "
                             "config.json); span masking needs it")
        m = _compute_mask_indices(tuple(frame_mask.shape), mask_prob=mask_prob, mask_length=mask_length,
                                  attention_mask=frame_mask.long().cpu(), min_masks=min_masks)
        return torch.from_numpy(m).to(frame_mask.device) & frame_mask

    # ------------------------------------------------------------------ forward
    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor,
                mask_time_indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        o = self.opts
        if not self.training and o.eval_max_seconds and o.eval_policy == "chunks":
            return self._forward_chunks(wav, wav_lens)
        return self._forward(wav, wav_lens, mask_time_indices)

    def _forward(self, wav, wav_lens, mask_time_indices=None) -> dict[str, torch.Tensor]:
        # wav: (B, S) zero-padded; wav_lens: (B,) samples
        m = self.model
        cnn_grad = torch.is_grad_enabled() and any(p.requires_grad for p in m.feature_extractor.parameters())
        with torch.set_grad_enabled(cnn_grad):   # a frozen CNN keeps no activations
            feats = [m.feature_extractor(wav[i: i + 1, : int(n)]).transpose(1, 2)[0]
                     for i, n in enumerate(wav_lens.tolist())]                    # (T_i, C) each
        lens = [f.size(0) for f in feats]
        x = nn.utils.rnn.pad_sequence(feats, batch_first=True)                  # (B, T, C)
        mask = torch.arange(x.size(1), device=x.device)[None, :] < torch.tensor(lens, device=x.device)[:, None]
        h = m.feature_projection(x)
        h = h[0] if isinstance(h, tuple) else h                                  # wav2vec2: (hidden, normed)
        if mask_time_indices is not None:
            assert mask_time_indices.shape == mask.shape, \
                f"mask_time_indices {tuple(mask_time_indices.shape)} != frames {tuple(mask.shape)}"
            h = h.clone()
            h[mask_time_indices] = m.masked_spec_embed.to(h.dtype)
        hs = m.encoder(h, attention_mask=mask if len(lens) > 1 else None, output_hidden_states=True,
                       return_dict=True).hidden_states
        z = self.layer_combine([hs[i] for i in self.layer_index])
        z = z * (mask[:, None, :, None] if z.dim() == 4 else mask[..., None])
        return {"hidden": z, "mask": mask}

    def _forward_chunks(self, wav, wav_lens) -> dict[str, torch.Tensor]:
        # each utterance -> windows of eval_max_seconds; all windows as one batch; frames re-joined
        step = int(self.opts.eval_max_seconds * SAMPLE_RATE)
        pieces, owner = [], []
        for i, n in enumerate(wav_lens.tolist()):
            for s in range(0, max(int(n), 1), step):
                e = min(int(n), s + step)
                if e - s < self.min_samples and s > 0:   # a tail shorter than one frame joins its neighbour
                    pieces[-1] = (pieces[-1][0], e)
                    continue
                pieces.append((s, e))
                owner.append(i)
        seg = [wav[o, s:e] for o, (s, e) in zip(owner, pieces)]
        seg_lens = torch.tensor([len(x) for x in seg], device=wav.device)
        padded = nn.utils.rnn.pad_sequence(seg, batch_first=True)
        out = self._forward(padded, seg_lens)
        h, m = out["hidden"], out["mask"]
        per_utt = [[] for _ in range(wav.size(0))]
        for j, o in enumerate(owner):
            per_utt[o].append(h[j][..., : int(m[j].sum()), :])
        joined = [torch.cat(p, dim=-2) for p in per_utt]                            # (T_i, d) or (L, T_i, d)
        lens = [x.size(-2) for x in joined]
        T = max(lens)
        z = h.new_zeros((len(joined), *joined[0].shape[:-2], T, h.size(-1)))
        for i, x in enumerate(joined):
            z[i, ..., : lens[i], :] = x
        mask = torch.arange(T, device=wav.device)[None, :] < torch.tensor(lens, device=wav.device)[:, None]
        return {"hidden": z, "mask": mask}

    def resolved(self) -> dict[str, Any]:
        """Options with the values actually in force (the checkpoint's where the option is null)."""
        c = self.model.config
        r = {k: v for k, v in asdict(self.opts).items() if k not in FinetuneOptions.TEXT_ONLY}
        for k in ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout", "layerdrop"):
            r[k] = float(getattr(c, k))
        r.update(do_normalize=self.do_normalize, n_hidden_states=self.n_hidden, dim=self.dim,
                 n_parameters=int(sum(p.numel() for p in self.parameters())), n_trainable=self.n_trainable())
        return r


class FinetuneTextEncoder(_Finetunable):
    """A DeBERTa-v2/v3 / RoBERTa / BERT base model with its tokenizer.

    ``tokenize(texts)`` -> ``{"input_ids", "attention_mask"}`` (B, N) on CPU;
    ``forward(input_ids, attention_mask)`` -> ``{"hidden": (B, N, d), "mask": (B, N) bool}``.
    """

    def __init__(self, model: nn.Module, tokenizer, opts: FinetuneOptions, *, max_tokens: int):
        super().__init__()
        self._setup(model, opts)
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        if opts.freeze_embeddings or opts.freeze_encoder:
            self._freeze(model.embeddings.parameters())
        if opts.freeze_encoder:
            self._freeze(model.parameters())
        _set_gradient_checkpointing(model, opts.gradient_checkpointing)
        if getattr(tokenizer, "padding_side", "right") != "right":
            raise NotImplementedError(f"{self.checkpoint}: left-padding tokenizers are not supported")

    def tokenize(self, texts: Sequence[str], device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        texts = [t if isinstance(t, str) else "" for t in texts]
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(device or "cpu"), "attention_mask": enc["attention_mask"].to(device or "cpu")}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = attention_mask.bool()                                               # (B, N)
        hs = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                        return_dict=True).hidden_states
        z = self.layer_combine([hs[i] for i in self.layer_index])
        z = z * (mask[:, None, :, None] if z.dim() == 4 else mask[..., None])
        return {"hidden": z, "mask": mask}

    def resolved(self) -> dict[str, Any]:
        c = self.model.config
        r = {k: v for k, v in asdict(self.opts).items() if k not in FinetuneOptions.AUDIO_ONLY}
        r.update(hidden_dropout=float(c.hidden_dropout_prob), attention_dropout=float(c.attention_probs_dropout_prob),
                 max_tokens=self.max_tokens, n_hidden_states=self.n_hidden, dim=self.dim,
                 n_parameters=int(sum(p.numel() for p in self.parameters())), n_trainable=self.n_trainable())
        return r


def _set_gradient_checkpointing(model, on: bool) -> None:
    # Explicit either way: facebook/wav2vec2-base's config.json says "gradient_checkpointing": true, which
    # transformers turns on silently when the model is built.
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif model.is_gradient_checkpointing:
        model.gradient_checkpointing_disable()


def _model_family(checkpoint: str) -> str:
    import json

    p = Path(checkpoint) / "config.json"
    try:
        mt = json.loads(p.read_text()).get("model_type")
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{p}: cannot read the checkpoint's config.json ({e})") from e
    if mt not in FAMILY_CLASSES:
        raise ValueError(f"{p}: model_type {mt!r} is not a family the fine-tuning path supports ({sorted(FAMILY_CLASSES)})")
    return mt


def load_finetune_encoder(role: str, options: dict[str, Any], *, seed: int = 0):
    """Build the fine-tunable encoder of one ``train.finetune.<role>`` entry (weights from its checkpoint).

    The modality follows the checkpoint's family: audio families give a
    :class:`FinetuneAudioEncoder`, text families a :class:`FinetuneTextEncoder`.
    """
    import transformers

    opts = dict(options)
    ck = opts.get("checkpoint")
    if not ck:
        raise ValueError(f"config: train.finetune.{role}.checkpoint is not set (the workflow sets it from the "
                         f"checkpoint of the encoder the experiment's inputs.{role} names)")
    family = opts.get("family") or _model_family(ck)
    opts["family"] = family
    name = f"train.finetune.{role}"
    try:
        o = FinetuneOptions(**opts)
    except TypeError as e:
        raise ValueError(f"config: {name}: {e}; known keys: {sorted(FinetuneOptions.__dataclass_fields__)}") from e
    if family in AUDIO_FAMILIES:
        o.check_modality(role, audio=True)
        over = {k: getattr(o, k) for k in ("hidden_dropout", "attention_dropout", "activation_dropout",
                                           "feat_proj_dropout", "layerdrop") if getattr(o, k) is not None}
        model, local = load_pretrained(ck, family, name, config_overrides=over)
        do_norm = o.do_normalize if o.do_normalize is not None else read_do_normalize(ck, local)
        return FinetuneAudioEncoder(model, o, do_normalize=do_norm, seed=seed)
    if family in TEXT_FAMILIES:
        o.check_modality(role, audio=False)
        over = {}
        if o.hidden_dropout is not None:
            over["hidden_dropout_prob"] = o.hidden_dropout
        if o.attention_dropout is not None:
            over["attention_probs_dropout_prob"] = o.attention_dropout
        model, local = load_pretrained(ck, family, name, config_overrides=over)
        tok = transformers.AutoTokenizer.from_pretrained(ck, local_files_only=local, use_fast=True)
        max_tokens = o.max_tokens or text_max_length(model.config, tok, family)
        return FinetuneTextEncoder(model, tok, o, max_tokens=max_tokens)
    raise ValueError(f"config: {name}: family {family!r} cannot be fine-tuned (audio: {sorted(AUDIO_FAMILIES)}, "
                     f"text: {sorted(TEXT_FAMILIES)})")
