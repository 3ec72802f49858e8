"""Feature cache: encoder outputs computed once per (corpus, encoder); see :mod:`.cache`."""
from .cache import CacheCorruptError, CachedSplitDataset, FeatureCache, extract_to_cache, verify_cache

__all__ = ["CacheCorruptError", "CachedSplitDataset", "FeatureCache", "extract_to_cache", "verify_cache"]
