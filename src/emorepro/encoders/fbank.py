"""Log-mel filterbank front-ends (family ``fbank``): Kaldi's and python_speech_features'.

Both are pushed through the same :class:`Encoder` interface as the neural encoders, so
they are cached by exactly the same code.  Input: 16 kHz mono float waveform in [-1, 1]
(as read by ``soundfile``); output per item: float32 ``(1, T, num_mel_bins)`` (one "layer"),
25 ms windows every 10 ms by default.

``kaldi_fbank`` (:class:`KaldiFbankEncoder`): ``torchaudio.compliance.kaldi.fbank``.

* the waveform is scaled to the int16 range first, because Kaldi's defaults (energy
  floor, dither) assume int16 samples; ``dither=0`` so the output is deterministic;
* Kaldi's defaults otherwise: Povey window, DC offset removed per frame, pre-emphasis 0.97
  per frame, mel triangles on 20 Hz - 8 kHz, ``snip_edges``: ``T = 1 + (n - 400) // 160``
  (0 frames for clips < 25 ms);
* options (``spec.options``): ``num_mel_bins`` (default 40), any other keyword of
  ``torchaudio.compliance.kaldi.fbank`` (e.g. ``frame_shift``, ``use_energy``).

``python_speech_features`` (:class:`PsfFbankEncoder`): ``python_speech_features.logfbank``
(PyPI ``python_speech_features`` 0.6), the front-end Zhang et al. (2022, Sec. 4.1) name:
"a 40-channel log mel-scale filter bank ... using python_speech_features".  The paper
gives no other setting, so the package's defaults stand:

* ``nfilt=40`` (the paper's channels; the package's default is 26), ``winlen=0.025``,
  ``winstep=0.01``, ``nfft=512``, ``lowfreq=0``, ``highfreq=None`` (= 8 kHz), ``preemph=0.97``
  on the whole signal, no window (rectangular: ``logfbank`` takes no ``winfunc``), no DC
  removal, no dither; power spectrum / nfft, triangles on FFT bins, ``log`` of the band
  energies (an exact zero floored at float eps), no energy coefficient;
* the last frame is zero-padded: ``T = 1 + ceil((n - 400) / 160)`` (one frame for a clip
  of at most 25 ms), one frame more than Kaldi's for most lengths;
* the waveform is scaled to the int16 range (``input_scale: int16``), the samples
  ``scipy.io.wavfile.read`` gives and the package's README feeds it; ``unit`` feeds
  [-1, 1] floats.  The scale adds a constant (2 ln 32768 = 20.8) to every log energy that
  is not floored; z-scored inputs (Zhang et al.'s recipe) do not see it;
* options: ``num_mel_bins`` (nfilt), ``winlen``, ``winstep``, ``nfft``, ``lowfreq``,
  ``highfreq``, ``preemph``, ``window`` (``rectangular``, ``hamming``, ``hanning``, ``blackman``:
  numpy's window of that name as ``fbank``'s ``winfunc``) and ``input_scale``.

How far apart the two are on the demo corpus: docs/usage.md, "Feature front-ends"
(``benchmarks/fbank_frontends.py`` measures it).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .base import AUDIO_SAMPLE_RATE, Encoder, EncoderSpec

_INT16_SCALE = 32768.0


def _fbank_options(spec: EncoderSpec) -> tuple[dict, int]:
    """A filterbank spec's options without ``num_mel_bins``, and that number (default 40)."""
    if spec.layers not in ((0,), (-1,)):
        raise ValueError(
            f"encoder {spec.name!r}: the {spec.backend} backend has a single output 'layer'; "
            f"set layers to [0] or [-1], not {list(spec.layers)}"
        )
    opts = dict(spec.options)
    return opts, int(opts.pop("num_mel_bins", 40))


class KaldiFbankEncoder(Encoder):
    frames_per_second = 100.0

    def __init__(self, spec: EncoderSpec, device: str | None = None):
        self.spec = spec
        opts, self.num_mel_bins = _fbank_options(spec)
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


_PSF_DEFAULTS = {"winlen": 0.025, "winstep": 0.01, "nfft": 512, "lowfreq": 0.0, "highfreq": None, "preemph": 0.97}
_WINDOWS = ("rectangular", "hamming", "hanning", "blackman")


class PsfFbankEncoder(Encoder):
    """``python_speech_features`` log-mel filterbank (see the module docstring for every setting)."""

    def __init__(self, spec: EncoderSpec, device: str | None = None):
        self.spec = spec
        opts, self.num_mel_bins = _fbank_options(spec)
        self.window = str(opts.pop("window", "rectangular"))
        self.input_scale = str(opts.pop("input_scale", "int16"))
        unknown = sorted(set(opts) - set(_PSF_DEFAULTS))
        if unknown:
            raise ValueError(f"config: encoders.{spec.name}.options: unknown {unknown} for backend python_speech_features; "
                             f"known: {sorted([*_PSF_DEFAULTS, 'num_mel_bins', 'window', 'input_scale'])}")
        if self.window not in _WINDOWS:
            raise ValueError(f"config: encoders.{spec.name}.options.window: {self.window!r} is not one of {list(_WINDOWS)}")
        if self.input_scale not in ("int16", "unit"):
            raise ValueError(f"config: encoders.{spec.name}.options.input_scale: {self.input_scale!r} is not int16 or unit")
        self._kwargs = {**_PSF_DEFAULTS, **opts}
        self.dim = self.num_mel_bins
        self.frames_per_second = 1.0 / float(self._kwargs["winstep"])
        self.device = "cpu"  # numpy

    def output_frames(self, n_samples: int) -> int:
        """Frames produced for a clip of ``n_samples`` samples (the package's framing, last frame zero-padded)."""
        if n_samples == 0:
            return 0
        # the package rounds half up (sigproc.round_half_up), not to even as round() does
        length = math.floor(AUDIO_SAMPLE_RATE * self._kwargs["winlen"] + 0.5)
        step = math.floor(AUDIO_SAMPLE_RATE * self._kwargs["winstep"] + 0.5)
        return 1 if n_samples <= length else 1 + -(-(n_samples - length) // step)

    def encode(self, items: Sequence[Any]) -> list[np.ndarray]:
        import python_speech_features as psf

        winfunc = (lambda n: np.ones((n,))) if self.window == "rectangular" else getattr(np, self.window)
        scale = _INT16_SCALE if self.input_scale == "int16" else 1.0
        out = []
        for wav in items:
            x = np.asarray(wav, dtype=np.float64)
            if x.ndim != 1:
                raise ValueError(f"python_speech_features expects a mono 1-D waveform, got shape {x.shape}")
            if len(x) == 0:
                out.append(np.zeros((1, 0, self.dim), dtype=np.float32))
                continue
            # logfbank(...) is log(fbank(...)[0]); fbank is called directly only to pass a window.
            feat, _ = psf.fbank(x * scale, samplerate=AUDIO_SAMPLE_RATE, nfilt=self.num_mel_bins, winfunc=winfunc,
                                **self._kwargs)
            out.append(np.log(feat).astype(np.float32)[None])
        return out
