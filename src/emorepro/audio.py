"""Waveforms, one way: read, crop, normalise, pad.

Every consumer of raw audio goes through these functions: the feature cache
(:func:`read_wav`), both frozen encoder backends (``transformers`` and ``fairseq2``:
:func:`prepare_waveform`) and the fine-tuning path (:class:`emorepro.encoders.finetune.AudioBatcher`:
:func:`read_wav`, :func:`crop`, :func:`prepare_waveform`, :func:`pad_batch`).  So a
fine-tuned encoder sees, at initialisation, exactly the input the frozen cache saw.

Order of operations for one utterance (the order of the reference fine-tuning recipes, where the
feature extractor normalises the clip the model is given):

    read (16 kHz mono float32)  ->  crop (training: random window; test: the configured policy)
    ->  zero-mean/unit-variance (when the checkpoint's preprocessor says ``do_normalize``)
    ->  zero-pad to the CNN's receptive field (400 samples for wav2vec2/HuBERT) if shorter

Importing this module imports numpy only (soundfile lazily, in :func:`read_wav`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .io import InputError

SAMPLE_RATE = 16_000


def read_wav(path: str) -> np.ndarray:
    """16 kHz mono float32 waveform; anything else is a clear error naming the file."""
    import soundfile as sf

    try:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        raise InputError(f"cannot read audio file {path}: {e}") from e
    if sr != SAMPLE_RATE:
        raise InputError(f"{path}: sample rate {sr} Hz, expected {SAMPLE_RATE} Hz mono (resample it at ingest)")
    if wav.shape[1] != 1:
        raise InputError(f"{path}: {wav.shape[1]} channels, expected mono")
    return np.ascontiguousarray(wav[:, 0])


def zero_mean_unit_var(x: np.ndarray) -> np.ndarray:
    """As ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`` on one unpadded utterance."""
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def conv_receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Samples the CNN feature encoder needs for one output frame (400 for wav2vec2/HuBERT)."""
    rf, jump = 1, 1
    for k, s in zip(kernels, strides):
        rf += (k - 1) * jump
        jump *= s
    return rf


def prepare_waveform(x, *, normalize: bool, min_samples: int, name: str = "") -> np.ndarray:
    """One utterance as the encoder's CNN receives it: float32, normalised if asked, at least ``min_samples`` long."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"encoder {name!r} expects mono 1-D waveforms, got shape {x.shape}")
    if normalize:
        x = zero_mean_unit_var(x)
    if len(x) < min_samples:
        x = np.pad(x, (0, min_samples - len(x)))
    return x


def crop(x: np.ndarray, max_samples: int | None, rng: np.random.Generator | None = None) -> np.ndarray:
    """At most ``max_samples`` samples: a window at a random start drawn from ``rng``, or the head without one.

    ``max_samples=None`` (or a clip that fits) returns the clip unchanged and draws nothing, so
    the random stream does not depend on which clips happen to be long.
    """
    if not max_samples or len(x) <= max_samples:
        return x
    start = int(rng.integers(0, len(x) - max_samples + 1)) if rng is not None else 0
    return x[start:start + max_samples]


def pad_batch(wavs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad 1-D waveforms into ``(B, S)`` float32 and their lengths ``(B,)`` int64."""
    lens = np.array([len(w) for w in wavs], dtype=np.int64)
    x = np.zeros((len(wavs), int(lens.max()) if len(wavs) else 0), dtype=np.float32)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = w
    return x, lens


class WavSource:
    """``source(utt_id)`` -> the utterance's waveform, read from the manifest's ``wav`` column.

    What a recipe receives as ``RunContext.audio``: raw audio without importing a reader.
    Nothing is cached (reading a clip is cheap beside encoding it; a corpus does not fit in memory).
    """

    def __init__(self, manifest):
        self._paths = dict(zip(manifest["utt_id"], manifest["wav"]))

    def __call__(self, utt_id: str) -> np.ndarray:
        try:
            return read_wav(self._paths[utt_id])
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} is not in the manifest") from None
