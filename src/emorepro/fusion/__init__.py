"""Late fusion of trials by summing logits, and the exact best-subset search (Lee et al. 2023, Sec. 4.4-4.5).

Each *trial* (one trained model, pooled over the cross-validation folds) gives a logit
matrix ``(n_utts, n_classes)`` for the same utterances.  A late combination of a subset
``S`` of trials predicts ``argmax_c sum_{i in S} logits[i, u, c]``; the paper reports the
best UAR over all ``C(30, k)`` subsets for every ``k`` (Table 6: 78.45 % at ``k = 9``).
Picking the subset on the test labels is an optimistic figure, so the package also
provides honest variants (selection on the other folds or on each fold's validation rows).

The package by role (every name below is importable from ``emorepro.fusion``):

* :mod:`.api`: the entry points, :func:`run_fusion` (the Snakemake rule's table) and
  :func:`search_npz` (the ``emorepro fusion search`` command);
* :mod:`.reference`: results, input checks and the reference scoring every search
  reproduces bit for bit (tie rules, exact integer UAR);
* :mod:`.exact`: :func:`exact_search`, the exact best subset per size;
* :mod:`.heuristics`: greedy forward selection, beam search, full integration;
* :mod:`.honest`: cross-fold and per-fold validation selection;
* :mod:`.trials`: reading and aligning the runs' ``predictions.csv`` (optionally one
  corpus of multi-corpus runs) or an ``.npz``; synthetic trials;
* :mod:`.budget`: the time estimate that refuses searches which cannot finish;
* :mod:`.kernels`: the numba-compiled loops.

Names are loaded on first use, so ``import emorepro.fusion.budget`` (the workflow's parse
step) does not import numba.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FusionResult": "reference",
    "HonestResult": "reference",
    "fused_predictions": "reference",
    "score_predictions": "reference",
    "TIE_RULES": "reference",
    "exact_search": "exact",
    "search_estimates": "exact",
    "beam_search": "heuristics",
    "greedy_forward": "heuristics",
    "full_integration": "heuristics",
    "cross_fold_selection": "honest",
    "validation_selection": "honest",
    "TrialData": "trials",
    "load_trials": "trials",
    "load_npz": "trials",
    "synthetic_trials": "trials",
    "IEMOCAP4_COUNTS": "trials",
    "SearchTooLarge": "budget",
    "DEFAULT_MAX_HOURS": "budget",
    "estimate_seconds": "budget",
    "search_npz": "api",
    "run_fusion": "api",
    # internals used by the tests and the benchmark
    "_n_threads": "exact",
}

__all__ = [name for name in _EXPORTS if not name.startswith("_")]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
