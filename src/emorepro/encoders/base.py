"""The one interface every feature front-end implements: a frozen encoder.

A feature front-end turns a list of items (16 kHz mono waveforms for audio, strings for
text) into per-item hidden states for a fixed set of layers.  The feature cache
(:mod:`emorepro.features.cache`) only ever talks to this interface, so the kaldi fbank
front-end, a tiny demo HuBERT and a real HuBERT-large go through exactly the same code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..audio import SAMPLE_RATE


@dataclass(frozen=True)
class EncoderSpec:
    """One entry of the ``encoders:`` registry in the config.

    name:       registry key, also the cache directory name (``results/<corpus>/features/<name>``).
    family:     model class family: ``hubert``, ``wav2vec2``, ``deberta-v2``, ``roberta``, ``bert`` or ``fbank``.
    backend:    ``transformers``, ``fairseq2``, ``kaldi_fbank`` or ``python_speech_features``.
    checkpoint: local directory (or hub id, honoured only when HF_HUB_OFFLINE is unset).
    layers:     hidden-state indices to expose; negative counts from the last layer
                (``0`` is the embedding/CNN output for transformer encoders).
    options:    backend-specific extras (e.g. ``num_mel_bins`` for fbank).
    """

    name: str
    family: str
    backend: str
    checkpoint: str | None = None
    layers: tuple[int, ...] = (-1,)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return "text" if self.family in TEXT_FAMILIES else "audio"

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "EncoderSpec":
        return cls(
            name=name,
            family=d["family"],
            backend=d["backend"],
            checkpoint=d.get("checkpoint"),
            layers=tuple(d.get("layers", (-1,))),
            options=dict(d.get("options", {})),
        )


TEXT_FAMILIES = frozenset({"deberta-v2", "roberta", "bert"})
AUDIO_SAMPLE_RATE = SAMPLE_RATE


class Encoder:
    """Base class: ``encode(items) -> [array (n_layers, T_i, dim) float32 per item]``.

    Subclasses set ``spec``, ``dim`` and implement :meth:`encode`.  ``encode`` must be
    deterministic and independent of batch composition up to float tolerance (padding is
    masked), because the cache batches utterances by length.
    """

    spec: EncoderSpec
    dim: int

    @property
    def modality(self) -> str:
        return self.spec.modality

    @property
    def n_layers(self) -> int:
        return len(self.spec.layers)

    def encode(self, items: Sequence[Any]) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError
