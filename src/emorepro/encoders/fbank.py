"""Kaldi-compatible log-mel filterbank front-end (backend ``kaldi_fbank``).

This is the "foundation" fbank front-end pushed through the same :class:`Encoder`
interface as the neural encoders, so it is cached by exactly the same code.

* input: 16 kHz mono float waveform in [-1, 1] (as read by ``soundfile``);
* the waveform is scaled to the int16 range before ``torchaudio.compliance.kaldi.fbank``,
  because Kaldi's defaults (energy floor, dither) assume int16 samples;
* ``dither=0`` so the output is deterministic;
* output per item: float32 array ``(1, T, num_mel_bins)`` (one "layer"), 10 ms hop,
  25 ms window, so ``T = 1 + (n_samples - 400) // 160`` (0 frames for clips < 25 ms).

Options (``spec.options``): ``num_mel_bins`` (default 40), any other keyword accepted by
``torchaudio.compliance.kaldi.fbank`` (e.g. ``frame_shift``, ``use_energy``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import AUDIO_SAMPLE_RATE, Encoder, EncoderSpec

_INT16_SCALE = 32768.0


class KaldiFbankEncoder(Encoder):
    frames_per_second = 100.0

    def __init__(self, spec: EncoderSpec, device: str | None = None):
        if spec.layers not in ((0,), (-1,)):
            raise ValueError(
                f"encoder {spec.name!r}: the kaldi_fbank backend has a single output 'layer'; "
                f"set layers to [0] or [-1], not {list(spec.layers)}"
            )
        self.spec = spec
        opts = dict(spec.options)
        self.num_mel_bins = int(opts.pop("num_mel_bins", 40))
        opts.setdefault("dither", 0.0)
        opts.setdefault("sample_frequency", float(AUDIO_SAMPLE_RATE))
        self._kwargs = opts
        self.dim = self.num_mel_bins
        self.device = "cpu"  # cheap enough on CPU; keeps the output bit-reproducible

    def output_frames(self, n_samples: int) -> int:
        """Frames produced for a clip of ``n_samples`` samples (with default frame settings)."""
        shift = int(AUDIO_SAMPLE_RATE * self._kwargs.get("frame_shift", 10.0) / 1000)
        length = int(AUDIO_SAMPLE_RATE * self._kwargs.get("frame_length", 25.0) / 1000)
        return 0 if n_samples < length else 1 + (n_samples - length) // shift

    def encode(self, items: Sequence[Any]) -> list[np.ndarray]:
        import torch
        from torchaudio.compliance import kaldi

        out = []
        for wav in items:
            x = np.asarray(wav, dtype=np.float32)
            if x.ndim != 1:
                raise ValueError(f"kaldi_fbank expects a mono 1-D waveform, got shape {x.shape}")
            if self.output_frames(len(x)) == 0:
                out.append(np.zeros((1, 0, self.dim), dtype=np.float32))
                continue
            t = torch.from_numpy(x * _INT16_SCALE).unsqueeze(0)
            with torch.inference_mode():
                feats = kaldi.fbank(t, num_mel_bins=self.num_mel_bins, **self._kwargs)
            out.append(feats.numpy().astype(np.float32, copy=False)[None])
        return out
