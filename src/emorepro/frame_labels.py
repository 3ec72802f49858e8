"""Frame-level label files: GMP-ATL's multi-scale pseudo-labels, one ``.npz`` per fold x seed x layer.

Written by the ``pseudo_labels`` step (:mod:`emorepro.pseudo_labels`), read by the retraining
stage's recipe (:mod:`emorepro.models.gmp_atl`) through ``ctx.extra_inputs["pseudo_labels"]``.
Imports numpy only, so a model family may read it.

Arrays in the file (``np.savez``, no pickles):

* ``format`` (0-d str): :data:`FORMAT`;
* ``utt_ids`` (N,) str: the labelled utterances (the fold's **training** split only);
* ``offsets`` (N + 1,) int64: utterance i owns frames ``offsets[i]:offsets[i + 1]`` of every label array;
* ``ks`` (S,) int64: the number of clusters of each scale, e.g. 64, 512, 4096;
* ``labels_<K>`` (total frames,) int16/int32: the cluster of every frame at scale K;
* ``fold``, ``seed``, ``layer``, ``hop_samples`` (0-d int64): what the labels belong to; ``hop_samples``
  is the encoder's frame hop (320 samples = 20 ms for HuBERT): frame j of an utterance covers samples
  ``[j * hop, j * hop + receptive field)`` of the whole clip, so a crop that starts at a multiple of the
  hop sees exactly frames ``start / hop ...`` (the CNN has no padding);
* ``source_state_sha256`` (0-d str): the weights of the encoder the frames came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .io import InputError, atomic_path

FORMAT = "emorepro-frame-labels/1"
META_INT = ("fold", "seed", "layer", "hop_samples")


@dataclass
class FrameLabels:
    """The labels of one file; ``of(utt)`` -> (S, T) int64, one row per scale (``ks`` order)."""

    path: str
    utt_ids: np.ndarray
    offsets: np.ndarray
    ks: list[int]
    labels: dict[int, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.index = {u: i for i, u in enumerate(self.utt_ids.tolist())}

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self.index

    def n_frames(self, utt_id: str) -> int:
        i = self._i(utt_id)
        return int(self.offsets[i + 1] - self.offsets[i])

    def of(self, utt_id: str) -> np.ndarray:
        i = self._i(utt_id)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return np.stack([self.labels[k][a:b].astype(np.int64) for k in self.ks])      # (S, T)

    def _i(self, utt_id: str) -> int:
        try:
            return self.index[utt_id]
        except KeyError:
            raise InputError(f"{self.path}: no frame labels for utterance {utt_id!r} (the file labels the "
                             f"{len(self.index)} training utterances of fold {self.meta.get('fold')})") from None


def write_frame_labels(path: str | Path, utt_ids: Sequence[str], lengths: Sequence[int],
                       labels: Mapping[int, np.ndarray], *, fold: int, seed: int, layer: int, hop_samples: int,
                       source_state_sha256: str) -> None:
    """Write a label file atomically; ``labels[K]`` holds every frame's cluster, utterances concatenated."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) != len(utt_ids) or (lengths < 1).any():
        raise ValueError(f"{path}: {len(utt_ids)} utterances but {len(lengths)} lengths (each >= 1 frame)")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    arrays = {"format": np.asarray(FORMAT), "utt_ids": np.asarray(list(utt_ids), dtype=str), "offsets": offsets,
              "ks": np.asarray(sorted(labels), dtype=np.int64), "source_state_sha256": np.asarray(source_state_sha256),
              **{k: np.asarray(v, dtype=np.int64) for k, v in
                 dict(fold=fold, seed=seed, layer=layer, hop_samples=hop_samples).items()}}
    for k, lab in labels.items():
        lab = np.asarray(lab)
        if lab.shape != (offsets[-1],) or lab.min() < 0 or lab.max() >= k:
            raise ValueError(f"{path}: labels of K={k} must be {offsets[-1]} values in [0, {k})")
        arrays[f"labels_{k}"] = lab.astype(np.int16 if k <= np.iinfo(np.int16).max else np.int32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def read_frame_labels(path: str | Path) -> FrameLabels:
    """Read and check a label file; a wrong or damaged file is an :class:`InputError` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable frame-label file ({e})") from None
    if str(data.get("format", "")) != FORMAT:
        raise InputError(f"{path}: not a frame-label file of format {FORMAT} (got {str(data.get('format'))!r})")
    ks = [int(k) for k in data["ks"]]
    offsets = data["offsets"].astype(np.int64)
    labels = {}
    for k in ks:
        lab = data.get(f"labels_{k}")
        if lab is None or lab.shape != (offsets[-1],):
            raise InputError(f"{path}: labels_{k} is missing or does not cover the {offsets[-1]} frames")
        labels[k] = lab
    if len(offsets) != len(data["utt_ids"]) + 1 or (np.diff(offsets) < 1).any():
        raise InputError(f"{path}: offsets do not describe {len(data['utt_ids'])} utterances of >= 1 frame")
    meta = {k: int(data[k]) for k in META_INT}
    meta["source_state_sha256"] = str(data["source_state_sha256"])
    return FrameLabels(str(path), data["utt_ids"], offsets, ks, labels, meta)
