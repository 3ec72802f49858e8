"""transformers backend: HuBERT, wav2vec 2.0, DeBERTa-v2/v3, RoBERTa and BERT, frozen.

Loading
    ``from_pretrained(checkpoint)`` on a local directory (``local_files_only=True``), or on
    a hub id only when ``HF_HUB_OFFLINE`` is unset.  A missing directory or file is an
    error naming the expected files.  Weights that the checkpoint does not provide are an
    error too (``from_pretrained`` would silently random-initialise them).
    The model class is fixed by the family (``HubertModel``, ``Wav2Vec2Model``,
    ``DebertaV2Model``, ``RobertaModel``, ``BertModel``); a checkpoint saved with a head
    (``Wav2Vec2ForCTC``, ``HubertForCTC``, ``*ForMaskedLM``...) is loaded with that class
    and its base model (``.wav2vec2``/``.hubert``/...) is used.

Audio (``hubert``, ``wav2vec2``)
    * per-utterance zero-mean/unit-variance normalisation when the checkpoint's
      ``preprocessor_config.json`` says ``do_normalize`` (default True when the file is
      absent; ``spec.options["do_normalize"]`` overrides);
    * the CNN feature encoder runs on each utterance **unpadded** (one call per utterance),
      then the transformer runs on the zero-padded batch with a frame attention mask.  This
      makes the output independent of batch composition even for checkpoints whose first
      conv layer uses GroupNorm over time (``feat_extract_norm="group"``: wav2vec2-base,
      HuBERT-base), where padding the waveform would change every frame.  It is the same
      computation as ``model(input_values)`` on each utterance alone;
    * clips shorter than the CNN's receptive field (400 samples) are zero-padded to it.

Text (``deberta-v2``, ``roberta``, ``bert``)
    the checkpoint's fast tokenizer (``AutoTokenizer``), special tokens included,
    truncated to the model's maximum length (with a warning).

Output: for each item, ``hidden_states[l]`` for every configured layer ``l`` (index 0 is
the CNN/embedding output after positional encoding, ``-1`` the last layer), cut to the
item's true length: float32 ``(n_layers, T_i, dim)``.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..audio import conv_receptive_field, prepare_waveform, zero_mean_unit_var  # noqa: F401  (re-exported)
from .base import TEXT_FAMILIES, Encoder, EncoderSpec

FAMILY_CLASSES = {
    "hubert": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "deberta-v2": "DebertaV2Model",
    "roberta": "RobertaModel",
    "bert": "BertModel",
}
#: head classes whose base model we accept, per family
FAMILY_HEAD_CLASSES = {
    "hubert": {"HubertForCTC", "HubertForSequenceClassification"},
    "wav2vec2": {"Wav2Vec2ForCTC", "Wav2Vec2ForPreTraining", "Wav2Vec2ForSequenceClassification"},
    "deberta-v2": {"DebertaV2ForMaskedLM", "DebertaV2ForSequenceClassification"},
    "roberta": {"RobertaForMaskedLM", "RobertaForSequenceClassification"},
    "bert": {"BertForMaskedLM", "BertForPreTraining", "BertForSequenceClassification"},
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json + merges.txt", "vocab.txt", "spm.model", "tokenizer.model",
                   "sentencepiece.bpe.model")
# weights a base audio model declares but never uses in eval mode
_UNUSED_IN_EVAL = ("masked_spec_embed",)


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def looks_like_hub_id(s: str) -> bool:
    """``name`` or ``org/name`` (not absolute, not ./ or ../, at most one slash)."""
    return not (os.path.isabs(s) or s.startswith(".") or s.count("/") > 1 or s.endswith("/"))


def _expected_files(text: bool) -> str:
    s = f"config.json and weights ({' or '.join(WEIGHT_FILES[:2])})"
    if text:
        s += f" and tokenizer files ({' or '.join(TOKENIZER_FILES)})"
    return s


def check_checkpoint_dir(checkpoint: str, text: bool, name: str = "") -> None:
    """Raise FileNotFoundError naming the expected files if ``checkpoint`` is incomplete."""
    who = f"encoder {name!r}: " if name else ""
    d = Path(checkpoint)
    if not d.is_dir():
        raise FileNotFoundError(
            f"{who}checkpoint directory {checkpoint} does not exist"
            + (" (HF_HUB_OFFLINE is set, so it cannot be a hub id)" if hf_offline() else "")
            + f"; expected a directory with {_expected_files(text)}"
        )
    missing = []
    if not (d / "config.json").is_file():
        missing.append("config.json")
    if not any((d / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES[:2]))
    if text:
        has_tok = ((d / "tokenizer.json").is_file() or ((d / "vocab.json").is_file() and (d / "merges.txt").is_file())
                   or any((d / f).is_file() for f in ("vocab.txt", "spm.model", "tokenizer.model", "sentencepiece.bpe.model")))
        if not has_tok:
            missing.append("tokenizer files (" + " or ".join(TOKENIZER_FILES) + ")")
    if missing:
        raise FileNotFoundError(f"{who}checkpoint directory {checkpoint} is missing {', '.join(missing)}; "
                                f"expected {_expected_files(text)}")


def resolve_layers(layers: Sequence[int], n_hidden: int, name: str) -> tuple[int, ...]:
    """Configured layer indices -> absolute indices into ``hidden_states`` (length n_hidden)."""
    out = []
    for l in layers:
        a = l if l >= 0 else n_hidden + l
        if not 0 <= a < n_hidden:
            raise ValueError(f"encoder {name!r}: layer {l} out of range; the model has {n_hidden} hidden states "
                             f"(0 = embeddings/CNN output, {n_hidden - 1} = last layer)")
        out.append(a)
    return tuple(out)


def load_pretrained(checkpoint: str | None, family: str, name: str = "", config_overrides: dict | None = None):
    """The family's base model from a local checkpoint directory (or a hub id when online), all weights checked.

    Returns ``(model, local)``; ``model`` is in train mode with gradients on (the frozen backend
    and the fine-tuning module each set what they need).  ``config_overrides`` replace fields of
    the checkpoint's ``config.json`` before the model is built (e.g. ``{"layerdrop": 0.0}``).
    Shared by :class:`TransformersEncoder` and :mod:`emorepro.encoders.finetune`.
    """
    import transformers

    if family not in FAMILY_CLASSES:
        raise ValueError(f"encoder {name!r}: transformers backend has no family {family!r}; known: {sorted(FAMILY_CLASSES)}")
    if not checkpoint:
        raise ValueError(f"encoder {name!r}: no checkpoint given")
    text = family in TEXT_FAMILIES
    ckpt = checkpoint
    is_dir = os.path.isdir(ckpt)
    if is_dir or not looks_like_hub_id(ckpt):
        check_checkpoint_dir(ckpt, text, name)
    local = is_dir or hf_offline()
    try:
        cfg = transformers.AutoConfig.from_pretrained(ckpt, local_files_only=local)
    except OSError as e:
        if is_dir:
            raise
        raise FileNotFoundError(
            f"encoder {name!r}: checkpoint {ckpt!r} is neither a local directory nor loadable as a hub id"
            + (" from the local HF cache (HF_HUB_OFFLINE is set)" if hf_offline() else "")
            + f"; expected a directory with {_expected_files(text)} ({e})") from e
    overrides = dict(config_overrides or {})
    for k in overrides:
        if not hasattr(cfg, k):
            raise ValueError(f"encoder {name!r}: checkpoint config {ckpt}/config.json has no field {k!r} to override")
    cls_name = FAMILY_CLASSES[family]
    archs = list(getattr(cfg, "architectures", None) or [])
    if archs and archs[0] in FAMILY_HEAD_CLASSES[family]:
        cls_name = archs[0]
    cls = getattr(transformers, cls_name)
    # config fields given as keyword arguments replace the checkpoint's (from_pretrained's documented way)
    model, info = cls.from_pretrained(ckpt, local_files_only=local, output_loading_info=True, **overrides)
    missing = [k for k in info.get("missing_keys", []) if not k.endswith(_UNUSED_IN_EVAL)]
    if missing:
        raise ValueError(f"encoder {name!r}: checkpoint {ckpt} does not provide {len(missing)} weight(s) of "
                         f"{cls_name}, e.g. {missing[:5]}; wrong family ({family!r}) or a broken checkpoint?")
    model = model.base_model if cls_name != FAMILY_CLASSES[family] else model
    return model, local


def read_do_normalize(checkpoint: str, local: bool, default: bool = True) -> bool:
    """``do_normalize`` of the checkpoint's ``preprocessor_config.json`` (``default`` without one)."""
    pp = Path(checkpoint) / "preprocessor_config.json"
    if local and pp.is_file():
        return bool(json.loads(pp.read_text()).get("do_normalize", default))
    return default


def text_max_length(model_config, tokenizer, family: str) -> int:
    """Longest token sequence the model takes: its position table, capped by the tokenizer's limit."""
    max_pos = int(getattr(model_config, "max_position_embeddings", 512))
    if family == "roberta":
        max_pos -= model_config.pad_token_id + 1  # RoBERTa positions start after padding_idx
    tok_max = getattr(tokenizer, "model_max_length", None) or max_pos
    return int(min(max_pos, tok_max))


class TransformersEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, device: str = "cpu"):
        import transformers

        self.spec = spec
        self.device = device
        text = spec.modality == "text"
        ckpt = spec.checkpoint
        model, local = load_pretrained(ckpt, spec.family, spec.name)
        model.eval().requires_grad_(False).to(device)
        self.model = model
        self.config = model.config
        self.dim = int(self.config.hidden_size)
        self.n_hidden = int(self.config.num_hidden_layers) + 1
        self.resolved_layers = resolve_layers(spec.layers, self.n_hidden, spec.name)

        if text:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(ckpt, local_files_only=local, use_fast=True)
            self.max_length = text_max_length(self.config, self.tokenizer, spec.family)
        else:
            self.frames_per_second = 16000.0 / float(np.prod(self.config.conv_stride))
            self.min_samples = conv_receptive_field(self.config.conv_kernel, self.config.conv_stride)
            self.do_normalize = bool(spec.options.get("do_normalize", read_do_normalize(ckpt, local)))
            if getattr(self.config, "add_adapter", False):
                raise NotImplementedError(f"encoder {spec.name!r}: wav2vec2 adapters (add_adapter) are not supported")

    # ------------------------------------------------------------------ audio
    def _encode_audio(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        m = self.model
        feats = []
        for w in wavs:
            x = prepare_waveform(w, normalize=self.do_normalize, min_samples=self.min_samples, name=self.spec.name)
            t = torch.from_numpy(x).to(self.device)[None]
            feats.append(m.feature_extractor(t).transpose(1, 2)[0])  # (T_i, C)
        lens = [f.shape[0] for f in feats]
        B, T = len(feats), max(lens)
        padded = feats[0].new_zeros((B, T, feats[0].shape[1]))
        mask = torch.zeros((B, T), dtype=torch.bool, device=padded.device)
        for i, f in enumerate(feats):
            padded[i, : lens[i]] = f
            mask[i, : lens[i]] = True
        h = m.feature_projection(padded)
        if isinstance(h, tuple):  # Wav2Vec2FeatureProjection returns (hidden, normed_features)
            h = h[0]
        out = m.encoder(h, attention_mask=mask if B > 1 else None, output_hidden_states=True, return_dict=True)
        return self._collect(out.hidden_states, lens)

    # ------------------------------------------------------------------ text
    def _encode_text(self, texts: Sequence[str]) -> list[np.ndarray]:
        texts = [t if isinstance(t, str) else "" for t in texts]
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        lens = enc["attention_mask"].sum(1).tolist()
        if any(n >= self.max_length for n in lens):
            full = self.tokenizer(list(texts), truncation=False)["input_ids"]
            long = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
            if long:
                warnings.warn(f"encoder {self.spec.name!r}: {len(long)} text(s) truncated to {self.max_length} tokens")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(**enc, output_hidden_states=True, return_dict=True)
        if self.tokenizer.padding_side == "left":
            raise NotImplementedError("left-padding tokenizers are not supported")
        return self._collect(out.hidden_states, lens)

    def _collect(self, hidden_states, lens: list[int]) -> list[np.ndarray]:
        sel = torch.stack([hidden_states[l] for l in self.resolved_layers], dim=1)  # (B, L, T, D)
        sel = sel.float().cpu().numpy()
        return [np.ascontiguousarray(sel[i, :, : lens[i]]) for i in range(len(lens))]

    def encode(self, items: Sequence[Any]) -> list[np.ndarray]:
        if not items:
            return []
        with torch.inference_mode():
            if self.spec.modality == "text":
                return self._encode_text(items)
            return self._encode_audio(items)
