"""Encoder registry: ``load_encoder(spec)`` -> :class:`~emorepro.encoders.base.Encoder`.

Backends are listed explicitly in :data:`BACKENDS` as ``"module:Class"`` strings and are
imported only when :func:`load_encoder` needs them, so ``import emorepro.encoders`` (and
``emorepro.features.cache``) never imports transformers or fairseq2.

=============== ======================================= ==========================================
backend         class                                   families
=============== ======================================= ==========================================
``kaldi_fbank`` :class:`.fbank.KaldiFbankEncoder`       ``fbank``
``python_speech_features`` :class:`.fbank.PsfFbankEncoder` ``fbank`` (Zhang et al.'s front-end)
``transformers`` :class:`.transformers_backend.TransformersEncoder` ``hubert``, ``wav2vec2``,
                                                        ``deberta-v2``, ``roberta``, ``bert``
``fairseq2``    :class:`.fairseq2_backend.Fairseq2Wav2Vec2Encoder` ``wav2vec2``
=============== ======================================= ==========================================
"""
from __future__ import annotations

import importlib

from .base import AUDIO_SAMPLE_RATE, TEXT_FAMILIES, Encoder, EncoderSpec

BACKENDS: dict[str, str] = {
    "kaldi_fbank": "emorepro.encoders.fbank:KaldiFbankEncoder",
    "python_speech_features": "emorepro.encoders.fbank:PsfFbankEncoder",
    "transformers": "emorepro.encoders.transformers_backend:TransformersEncoder",
    "fairseq2": "emorepro.encoders.fairseq2_backend:Fairseq2Wav2Vec2Encoder",
}

#: families each backend accepts (checked before the heavy import, for a fast clear error)
BACKEND_FAMILIES: dict[str, frozenset[str]] = {
    "kaldi_fbank": frozenset({"fbank"}),
    "python_speech_features": frozenset({"fbank"}),
    "transformers": frozenset({"hubert", "wav2vec2", "deberta-v2", "roberta", "bert"}),
    "fairseq2": frozenset({"wav2vec2"}),
}


def backend_class(backend: str) -> type[Encoder]:
    """The Encoder subclass of a backend name (imports that backend's module)."""
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown encoder backend {backend!r}; known: {sorted(BACKENDS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_encoder(spec: EncoderSpec, device: str | None = None) -> Encoder:
    """Instantiate the frozen encoder described by ``spec`` (eval mode, on ``device``).

    ``device=None`` picks the GPU when one is available.
    """
    families = BACKEND_FAMILIES.get(spec.backend)
    if families is None:
        raise ValueError(f"encoder {spec.name!r}: unknown backend {spec.backend!r}; known: {sorted(BACKENDS)}")
    if spec.family not in families:
        raise ValueError(
            f"encoder {spec.name!r}: backend {spec.backend!r} does not support family {spec.family!r} "
            f"(supported: {sorted(families)})"
        )
    return backend_class(spec.backend)(spec, device=resolve_device(device))


__all__ = [
    "AUDIO_SAMPLE_RATE",
    "BACKENDS",
    "BACKEND_FAMILIES",
    "TEXT_FAMILIES",
    "Encoder",
    "EncoderSpec",
    "backend_class",
    "load_encoder",
    "resolve_device",
]
