"""Heuristic subset choices: greedy forward selection, beam search, full integration.

No optimality guarantee: their rows sit beside the exact optimum (:mod:`.exact`) in the
fusion table with the gap to it.  The beam also gives the exact search its incumbents.
Cost: a level scores about ``width x n`` candidates over every utterance (compiled,
:func:`.kernels.extend_scores`), so all sizes cost about ``width x n**2 x n_utts x C``
operations: well under a minute even for 70 trials (``fusion.<name>.heuristics`` skips them).
"""
from __future__ import annotations

import time

import numpy as np

from .budget import normalise_ks
from .kernels import extend_scores
from .reference import (
    FusionResult,
    _check_inputs,
    _exact_score,
    _result,
    _Scorer,
)


def _beam(logits, labels, scorer: _Scorer, width: int, kmax: int):
    """Beam search over subset sizes 1..kmax.

    Each level keeps the ``width`` best subsets (ties: lexicographically smallest) and
    extends every kept subset by every trial not in it.  Candidates are scored with
    incremental float64 sums (parent sum + new trial); the kept subsets are re-scored with
    the reference order afterwards, which can only differ on exact float ties.

    Returns dict k -> (exact score, subset), and the number of subsets scored.  Size ``n``
    (every trial) is scored directly, so ``kmax = n`` costs no more than ``kmax = n - 1``.
    """
    n, N, C = logits.shape
    beam = [((), np.zeros((N, C)))]
    out = {}
    n_eval = 0
    if kmax >= n:  # a single subset of size n: no beam levels needed for it
        out[n] = (_exact_score(logits, labels, scorer, range(n)), tuple(range(n)))
        n_eval += 1
    for k in range(1, min(kmax, n - 1) + 1):
        cands = {}
        for subset, S in beam:
            excl = np.zeros(n, np.bool_)
            excl[list(subset)] = True
            scores = extend_scores(S, logits, labels, scorer.weights, excl)
            n_eval += int((~excl).sum())
            for i in np.flatnonzero(~excl):
                key = tuple(sorted(subset + (int(i),)))
                if key not in cands:
                    cands[key] = (int(scores[i]), S, int(i))
        ranked = sorted(cands.items(), key=lambda kv: (-kv[1][0], kv[0]))[:width]
        beam = [(key, S + logits[i]) for key, (_, S, i) in ranked]
        exact = sorted(((_exact_score(logits, labels, scorer, key), key) for key, _ in beam),
                       key=lambda t: (-t[0], t[1]))
        out[k] = exact[0]
    return out, n_eval


def beam_search(logits, labels, width: int = 8, ks=None) -> dict[int, FusionResult]:
    """Beam-search heuristic for the best-UAR subset of each size.

    Parameters
    ----------
    logits : array, shape (n_trials, n_utts, n_classes)
    labels : array of int, shape (n_utts,)
    width : int
        Subsets kept per size; ``width=1`` is greedy forward selection.
    ks : iterable of int, ``"all"`` or None (all sizes)

    Returns
    -------
    dict k -> FusionResult (``method="beam"``); ``seconds`` is the time of the whole beam
    up to that size.  No optimality guarantee: compare with :func:`exact_search`.
    """
    logits, labels = _check_inputs(logits, labels)
    ks = normalise_ks(ks, logits.shape[0])
    scorer = _Scorer(labels, logits.shape[2])
    t0 = time.perf_counter()
    best, n_eval = _beam(logits, labels, scorer, int(width), max(ks))
    dt = time.perf_counter() - t0
    method = "greedy" if width == 1 else "beam"
    return {k: _result(logits, labels, best[k][1], method, dt, n_eval) for k in ks}


def greedy_forward(logits, labels, ks=None) -> dict[int, FusionResult]:
    """Greedy forward selection: add the trial that maximises UAR (ties: lowest index).

    Same as ``beam_search(width=1)``; ``method="greedy"``.
    """
    return beam_search(logits, labels, width=1, ks=ks)


def full_integration(logits, labels) -> FusionResult:
    """Late combination of all trials (the paper's ``nCn``, Table 5)."""
    logits, labels = _check_inputs(logits, labels)
    t0 = time.perf_counter()
    res = _result(logits, labels, range(logits.shape[0]), "full", 0.0, 1)
    res.seconds = time.perf_counter() - t0
    return res
