"""Read several feature caches as one (the union corpus's view of its members' caches).

A union corpus (:mod:`emorepro.corpus.union`) has no cache of its own: each member's
features are extracted once, under the member's own ``results/<member>/features/<encoder>/``,
and :class:`UnionFeatureCache` dispatches every utterance to the cache that holds it.
It offers the reader interface the recipes use (``dim``, ``layers``, ``layer()``, ``[]``,
``in``, ``n_frames``...).  The members must come from the same encoder: same dim, layers
and modality.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from .cache import FeatureCache


class UnionFeatureCache:
    def __init__(self, caches: Sequence[FeatureCache]):
        if not caches:
            raise ValueError("UnionFeatureCache needs at least one cache")
        first = caches[0]
        for c in caches[1:]:
            for attr in ("dim", "layers", "modality"):
                if getattr(c, attr) != getattr(first, attr):
                    raise ValueError(f"feature caches {first.cache_dir} and {c.cache_dir} differ in {attr} "
                                     f"({getattr(first, attr)!r} vs {getattr(c, attr)!r}); a union reads one encoder")
        self.caches = list(caches)
        self._owner: dict[str, FeatureCache] = {}
        for c in self.caches:
            for u in c.utt_ids:
                if u in self._owner:
                    raise ValueError(f"utterance {u!r} is in both {self._owner[u].cache_dir} and {c.cache_dir}")
                self._owner[u] = c

    @property
    def cache_dir(self) -> str:
        return " + ".join(str(c.cache_dir) for c in self.caches)

    @property
    def utt_ids(self) -> list[str]:
        return list(self._owner)

    @property
    def dim(self) -> int:
        return self.caches[0].dim

    @property
    def layers(self) -> tuple[int, ...]:
        return self.caches[0].layers

    @property
    def n_layers(self) -> int:
        return self.caches[0].n_layers

    @property
    def modality(self) -> str:
        return self.caches[0].modality

    def __len__(self) -> int:
        return len(self._owner)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._owner

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner)

    def _cache(self, utt_id: str) -> FeatureCache:
        try:
            return self._owner[utt_id]
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} is in none of the feature caches {self.cache_dir}") from None

    def n_frames(self, utt_id: str) -> int:
        return self._cache(utt_id).n_frames(utt_id)

    def layer_position(self, layer: int) -> int:
        return self.caches[0].layer_position(layer)

    def __getitem__(self, utt_id: str) -> np.ndarray:
        return self._cache(utt_id)[utt_id]

    def layer(self, utt_id: str, layer_index: int) -> np.ndarray:
        return self._cache(utt_id).layer(utt_id, layer_index)

    def verify_all(self) -> None:
        for c in self.caches:
            c.verify_all()


def open_cache(where: str | os.PathLike | Sequence[str | os.PathLike]):
    """One cache directory -> :class:`FeatureCache`; a list of directories -> :class:`UnionFeatureCache`."""
    if isinstance(where, (str, os.PathLike)):
        return FeatureCache(where)
    return UnionFeatureCache([FeatureCache(w) for w in where])
