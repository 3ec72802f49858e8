"""Late fusion of trials by summing logits, and the exact best-subset search (Lee et al. 2023, Sec. 4.4-4.5).

Each *trial* (one trained model, pooled over the cross-validation folds) gives a logit
matrix ``(n_utts, n_classes)`` for the same utterances.  A late combination of a subset
``S`` of trials predicts ``argmax_c sum_{i in S} logits[i, u, c]``; the paper reports the
best UAR over all ``C(30, k)`` subsets for every ``k`` (Table 6: 78.45 % at ``k = 9``).
Picking the subset on the test labels is an optimistic figure, so this module also
provides honest variants (selection on the other folds or on a validation split).

Reference semantics (what every function here reproduces bit for bit)
--------------------------------------------------------------------
* Logits are converted to float64.  The fused score of a subset is
  ``np.argmax(logits[list(sorted_subset)].sum(axis=0), axis=1)``; numpy sums along axis
  0 sequentially in index order (pairwise summation only happens when a trial is a
  single number, where argmax is trivially 0), so the reference sums are the float64
  sums in increasing trial order.  The search reproduces them: its int16 kernels only
  decide outside a proven error band and recompute the reference sums inside it.
* Ties between classes go to the lowest class index (``np.argmax``).
* UAR = mean over the classes present in ``labels`` of ``correct_c / n_c``
  (``sklearn.metrics.recall_score(average="macro", labels=np.unique(labels))``);
  WAR = accuracy.  Subsets are compared on the integer score
  ``sum_c correct_c * (L / n_c)`` with ``L = lcm(n_c)``, which orders subsets exactly
  like UAR without any floating-point rounding.
* Ties between subsets of equal UAR go to the lexicographically smallest sorted index
  tuple (the first one ``itertools.combinations`` would produce).

Exact search
------------
:func:`exact_search` is a depth-first branch and bound over subsets in lexicographic
order (kernels in :mod:`emorepro.fusion_kernels`).  A node is a partial subset with
``r`` trials still to pick from the trials after its last one.  Per utterance and wrong
class, the margin of the label over that class can at best grow by the ``r`` largest
remaining per-trial margins and at worst by the ``r`` smallest, so each utterance is
*sure* (correct in every completion), *lost* or *open*; decided utterances leave the
node's list, and ``sure + open`` weight bounds every completion.  A node that cannot
beat the incumbent is pruned (a later node in lexicographic order needs a strictly
better score, which implements the subset tie rule).  The last six levels are scored
by vectorised passes over tables of the sums of every set of up to six trials, sizes
above ``n / 2`` search the complement of the subset (same leaves, fewer levels), and
the incumbents come from a beam search, so almost every leaf is dropped on its
not-wrong count alone.  The work is split into subtrees run on threads (the kernels
release the GIL).

Exactness: margins are quantised per utterance to int16 with a floor, so a subset's
quantised margin brackets the reference one within a band of ``k`` units plus a bound
on the float64 rounding; a decision outside the band is the reference's decision, and
an utterance inside it is re-scored with the reference float64 sums.  The winners are
re-scored with :func:`fused_predictions` and checked.

Cost: the per-utterance bound cannot see that one subset must serve all utterances at
once, so on trials as diverse as the paper's (single trials ~73 % UAR, full integration
~77 %) it prunes little: most of the ``C(n, k)`` leaves are still counted, each on a
list of a few hundred utterances, by int16 vector loops.  On the benchmark's 30 x 5,531
x 4 trials (``benchmarks/fusion_search.py``, 2 cores): k = 9 in about 1.8 s, every k in
about 60 s, peak memory about 550 MiB (the lane tables, twice for the complement).

Importing this module imports numba (about 0.5 s); the kernels are compiled on first use
and cached on disk (``cache=True``): a first-ever call pays 10-20 s of compilation.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numba
import numpy as np

from emorepro import fusion_kernels as FK
from emorepro.fusion_kernels import argmax_is

__all__ = [
    "FusionResult",
    "HonestResult",
    "TrialData",
    "exact_search",
    "full_integration",
    "greedy_forward",
    "beam_search",
    "cross_fold_selection",
    "validation_selection",
    "load_trials",
    "search_npz",
    "run_fusion",
    "fused_predictions",
    "score_predictions",
    "synthetic_trials",
]


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass
class FusionResult:
    """Score of one fused subset.

    Attributes
    ----------
    k : int
        Subset size.
    uar, war : float
        Unweighted average recall (macro recall over the classes present) and accuracy.
    subset : tuple of int
        Sorted 0-based trial indices.
    confusion : ndarray, shape (n_classes, n_classes)
        Counts, rows = truth, columns = prediction.
    seconds : float
        Time spent on this ``k`` (see :func:`exact_search` for the exact search).
    n_evaluated : int
        Subsets scored (heuristics) or search-tree nodes plus leaves scored (exact search).
    method : str
        ``"exact"``, ``"greedy"``, ``"beam"`` or ``"full"``.
    correct : tuple of int
        Correct utterances per class (exact numerators of the per-class recalls).
    support : tuple of int
        Utterances per class in ``labels``.
    """

    k: int
    uar: float
    war: float
    subset: tuple[int, ...]
    confusion: np.ndarray
    seconds: float
    n_evaluated: int
    method: str
    correct: tuple[int, ...] = ()
    support: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "uar": self.uar,
            "war": self.war,
            "subset": list(self.subset),
            "confusion": self.confusion.tolist(),
            "seconds": self.seconds,
            "n_evaluated": self.n_evaluated,
            "method": self.method,
            "correct": list(self.correct),
            "support": list(self.support),
        }


@dataclass
class HonestResult:
    """Score of a subset chosen without looking at the scored utterances' labels.

    Attributes
    ----------
    k : int
    uar, war : float
        Scores on the held-out utterances (pooled over folds for cross-fold selection).
    confusion : ndarray, shape (n_classes, n_classes)
    subsets : dict
        Chosen subset per held-out fold (cross-fold) or under the key ``"val"``.
    selection_uar : dict
        UAR of each chosen subset on the utterances it was chosen on.
    seconds : float
    method : str
        ``"crossfold"`` or ``"validation"``.
    """

    k: int
    uar: float
    war: float
    confusion: np.ndarray
    subsets: dict
    selection_uar: dict
    seconds: float
    method: str

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "uar": self.uar,
            "war": self.war,
            "confusion": self.confusion.tolist(),
            "subsets": {str(f): list(s) for f, s in self.subsets.items()},
            "selection_uar": {str(f): v for f, v in self.selection_uar.items()},
            "seconds": self.seconds,
            "method": self.method,
        }


# --------------------------------------------------------------------------------------
# Input checks, reference scoring
# --------------------------------------------------------------------------------------
def _check_inputs(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    logits = np.ascontiguousarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (n_trials, n_utts, n_classes), got shape {logits.shape}")
    n, n_utts, n_classes = logits.shape
    if n < 1 or n_utts < 1 or n_classes < 1:
        raise ValueError(f"empty logits of shape {logits.shape}")
    if labels.shape != (n_utts,):
        raise ValueError(f"labels must have shape ({n_utts},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError("labels must be integer class indices")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    if not np.isfinite(logits).all():
        # NaN would make argmax order-dependent and the bounds meaningless.
        raise ValueError("logits contain NaN or infinity")
    return logits, labels


def fused_predictions(logits: np.ndarray, subset: Sequence[int]) -> np.ndarray:
    """Reference prediction of a late combination: argmax of the float64 logit sum.

    Parameters
    ----------
    logits : array, shape (n_trials, n_utts, n_classes)
    subset : sequence of int
        Trial indices; they are sorted first, which fixes the float64 summation order.

    Returns
    -------
    ndarray of int64, shape (n_utts,)
    """
    idx = sorted(int(i) for i in subset)
    if not idx:
        raise ValueError("empty subset")
    summed = np.asarray(logits, dtype=np.float64)[idx].sum(axis=0)
    return np.argmax(summed, axis=1).astype(np.int64)


def score_predictions(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """UAR, WAR, confusion matrix and exact per-class counts of ``pred`` against ``labels``."""
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    conf = np.bincount(labels * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    support = conf.sum(axis=1)
    correct = np.diag(conf).copy()
    present = support > 0
    uar = float(np.mean(correct[present] / support[present]))
    war = float(correct.sum() / len(labels))
    return {
        "uar": uar,
        "war": war,
        "confusion": conf,
        "correct": tuple(int(c) for c in correct),
        "support": tuple(int(s) for s in support),
    }


class _Scorer:
    """Exact integer UAR scores: ``score = sum_c correct_c * (L // n_c)``, ``L = lcm(n_c)``."""

    def __init__(self, labels: np.ndarray, n_classes: int):
        support = np.bincount(labels, minlength=n_classes)
        present = [int(s) for s in support if s > 0]
        lcm = 1
        for s in present:
            lcm = lcm * s // math.gcd(lcm, s)
        self.total = lcm * len(present)  # score of a perfect classifier
        if self.total >= 2**62:
            raise ValueError(
                "exact integer UAR scoring needs lcm(class counts) * n_present_classes < 2**62; "
                f"got {self.total} (too many classes with coprime counts)"
            )
        self.class_weight = np.array([lcm // s if s > 0 else 0 for s in support], dtype=np.int64)
        self.weights = self.class_weight[labels]


def _result(logits, labels, subset, method, seconds, n_evaluated) -> FusionResult:
    subset = tuple(sorted(int(i) for i in subset))
    s = score_predictions(fused_predictions(logits, subset), labels, logits.shape[2])
    return FusionResult(
        k=len(subset), uar=s["uar"], war=s["war"], subset=subset, confusion=s["confusion"],
        seconds=seconds, n_evaluated=n_evaluated, method=method, correct=s["correct"], support=s["support"],
    )


def _exact_score(logits, labels, scorer: _Scorer, subset) -> int:
    pred = fused_predictions(logits, subset)
    return int(scorer.weights[pred == labels].sum())


def _normalise_ks(ks, n: int) -> list[int]:
    if ks is None or (isinstance(ks, str) and ks == "all"):
        return list(range(1, n + 1))
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    out = sorted({int(k) for k in ks})
    for k in out:
        if not 1 <= k <= n:
            raise ValueError(f"k={k} outside 1..{n} (number of trials)")
    return out


# --------------------------------------------------------------------------------------
# Beam helper (the search kernels are in emorepro.fusion_kernels)
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _extend_scores(S, logits, labels, weights, exclude):
    """Score of ``S + logits[i]`` for every trial ``i`` not excluded (-1 for excluded)."""
    n, N, C = logits.shape
    out = np.full(n, -1, np.int64)
    v = np.empty(C)
    for i in range(n):
        if exclude[i]:
            continue
        sc = 0
        for u in range(N):
            for c in range(C):
                v[c] = S[u, c] + logits[i, u, c]
            if argmax_is(v, labels[u]):
                sc += weights[u]
        out[i] = sc
    return out


# --------------------------------------------------------------------------------------
# Heuristics
# --------------------------------------------------------------------------------------
def _beam(logits, labels, scorer: _Scorer, width: int, kmax: int):
    """Beam search over subset sizes 1..kmax.

    Each level keeps the ``width`` best subsets (ties: lexicographically smallest) and
    extends every kept subset by every trial not in it.  Candidates are scored with
    incremental float64 sums (parent sum + new trial); the kept subsets are re-scored with
    the reference order afterwards, which can only differ on exact float ties.

    Returns dict k -> (exact score, subset), and the number of subsets scored.
    """
    n, N, C = logits.shape
    beam = [((), np.zeros((N, C)))]
    out = {}
    n_eval = 0
    for k in range(1, kmax + 1):
        cands = {}
        for subset, S in beam:
            excl = np.zeros(n, np.bool_)
            excl[list(subset)] = True
            scores = _extend_scores(S, logits, labels, scorer.weights, excl)
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
    ks = _normalise_ks(ks, logits.shape[0])
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


# --------------------------------------------------------------------------------------
# Exact search
# --------------------------------------------------------------------------------------
def _n_threads(n_threads):
    if n_threads is None:
        try:
            n_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            n_threads = os.cpu_count() or 1
    return max(1, int(n_threads))


# Subset counts below which a size is searched as one work item / split on the first index.
_SPLIT1 = 20_000
_SPLIT2 = 2_000_000


def _work_items(n: int, k: int):
    """Subset prefixes that split the search for size ``k`` into subtrees, with cost estimates.

    Listed in lexicographic order, so the rank of an item orders its subsets.
    """
    total = math.comb(n, k)
    if total <= _SPLIT1 or k == 1:
        return [((), total)]
    if total <= _SPLIT2 or k == 2:
        return [((i,), math.comb(n - 1 - i, k - 1)) for i in range(n - k + 1)]
    return [((i, j), math.comb(n - 1 - j, k - 2)) for i in range(n - k + 1) for j in range(i + 1, n - k + 2)]


class _ThreadScratch(threading.local):
    """Per-thread kernel buffers, reused across work items."""

    scratch = None


def exact_search(logits, labels, ks=None, *, incumbent_width: int = 8, n_threads: int | None = None,
                 _margin_rows: int = 3, _set_cuts=None, _complement: bool | None = None,
                 _stats: dict | None = None) -> dict[int, FusionResult]:
    """Exact best-UAR subset of trials for every requested size ``k``.

    Parameters
    ----------
    logits : array, shape (n_trials, n_utts, n_classes)
        Converted to float64; must be finite.
    labels : array of int, shape (n_utts,)
    ks : iterable of int, int, ``"all"`` or None (all sizes 1..n_trials)
    incumbent_width : int
        Beam width of the heuristic that provides the starting incumbents.  It only
        affects speed, never the result.
    n_threads : int, optional
        Worker threads (default: the CPUs this process may run on).

    Returns
    -------
    dict k -> FusionResult (``method="exact"``)
        The subset maximising UAR among all ``C(n, k)`` subsets.  Tie rules:

        * classes: the fused prediction is ``np.argmax`` of the float64 logit sum taken
          in increasing trial order, so a tie between classes goes to the lowest class
          index;
        * subsets: UAR is compared exactly (integer per-class counts), and among subsets
          of equal UAR the lexicographically smallest sorted index tuple wins.

        ``n_evaluated`` counts search-tree nodes plus leaves scored.  ``seconds``: for a
        single requested size, the wall time of the call; for several, the CPU time of
        that size's work summed over threads plus its share of the set-up (sizes are
        interleaved on the threads, so they have no wall time of their own).
    """
    logits, labels = _check_inputs(logits, labels)
    n, N, C = logits.shape
    ks = _normalise_ks(ks, n)
    scorer = _Scorer(labels, C)
    t_start = time.perf_counter()
    kmax = max(ks)

    # Starting incumbents: beam search, scored exactly.
    t0 = time.perf_counter()
    heur, _ = _beam(logits, labels, scorer, int(incumbent_width), kmax)
    t_heur = time.perf_counter() - t0

    # Sizes above n/2 search the complement (size n - k): a shallower tree whose last
    # levels fan out wider.  k = n has a single subset: the incumbent.
    comp = {k: (2 * k > n if _complement is None else bool(_complement)) and k < n for k in ks}
    t0 = time.perf_counter()
    kmax_direct = max([k for k in ks if not comp[k]] or [1])
    kmax_comp = max([n - k for k in ks if comp[k]] or [0])
    tables = {False: FK.build_tables(logits, labels, scorer.class_weight, kmax_direct, _margin_rows, _set_cuts)}
    if kmax_comp:
        tables[True] = FK.complement_tables(tables[False], kmax_comp, _set_cuts)
    t_tables = time.perf_counter() - t0
    setup = (t_heur + t_tables) / len(ks)
    depth = max(kmax_direct, kmax_comp)

    lock = threading.Lock()
    state = {}  # k -> [score, subset, rank of the work item that found it]
    items = []
    for k in ks:
        h_score, h_subset = heur[k]
        state[k] = [h_score, tuple(h_subset), 0]
        if k == n:
            continue
        size = n - k if comp[k] else k
        its = _work_items(n, size)
        searched = tuple(sorted(set(range(n)) - set(h_subset))) if comp[k] else tuple(h_subset)
        state[k][2] = next(r for r, (pre, _) in enumerate(its) if searched[: len(pre)] == pre)
        items += [(cost, k, r, pre) for r, (pre, cost) in enumerate(its)]
    items.sort(key=lambda t: -t[0])  # longest first, so that the threads finish together
    seconds = {k: setup for k in ks}
    nodes = {k: 0 for k in ks}
    local = _ThreadScratch()

    def run(item):
        _, k, rank, pre = item
        t_cpu = time.thread_time()
        t = tables[comp[k]]
        if local.scratch is None:
            local.scratch = FK.Scratch(t, depth)
        with lock:
            score, _, srank = state[k]
        # A subset of equal score earlier in lexicographic order wins the tie, so only the
        # subtrees after the incumbent's may prune at equality (before it, for complements:
        # their order is the reverse of the subsets').
        later = rank < srank if comp[k] else rank > srank
        thr = score if later else score - 1
        size = n - k if comp[k] else k
        best_set = np.zeros(size, np.int64)
        found, best, nn = FK.branch_and_bound(
            t.T, t.off, t.cut, t.start, t.sets, t.QB, t.L, t.y, t.W, t.Bf, t.Ptot, t.complement, k, size,
            np.array(pre, np.int64), thr, t.base, *local.scratch.arrays, best_set)
        dt = time.thread_time() - t_cpu
        with lock:
            nodes[k] += int(nn)
            seconds[k] += dt
            if found:
                cand = tuple(int(x) for x in best_set)
                if comp[k]:
                    cand = tuple(sorted(set(range(n)) - set(cand)))
                score, subset, _ = state[k]
                if best > score or (best == score and cand < subset):
                    state[k] = [int(best), cand, rank]

    threads = _n_threads(n_threads)
    if threads == 1 or len(items) == 1:
        for it in items:
            run(it)
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(run, items))

    if len(ks) == 1:
        seconds[ks[0]] = time.perf_counter() - t_start
    out = {}
    for k in ks:
        score, subset, _ = state[k]
        res = _result(logits, labels, subset, "exact", seconds[k], nodes[k])
        # The kernels reproduce the reference decisions; a disagreement would be a bug.
        check = _exact_score(logits, labels, scorer, subset)
        if check != score:  # pragma: no cover
            raise RuntimeError(f"exact search: k={k} kernel score {score} != reference {check}")
        out[k] = res
    if _stats is not None:
        t = tables[False]
        _stats.update(open_utts=t.U, base=t.base, band=t.Bf, set_cuts=t.cut.tolist(), heuristic_seconds=t_heur,
                      tables_seconds=t_tables, total_seconds=time.perf_counter() - t_start,
                      table_bytes=sum(x.nbytes for x in tables.values()) - (len(tables) - 1) * t.L.nbytes,
                      heuristic={k: heur[k] for k in ks})
    return out

# --------------------------------------------------------------------------------------
# Honest selection
# --------------------------------------------------------------------------------------
def _select(logits, labels, k, method, beam_width, n_threads):
    if method == "exact":
        return exact_search(logits, labels, [k], n_threads=n_threads)[k]
    if method == "beam":
        return beam_search(logits, labels, width=beam_width, ks=[k])[k]
    if method == "greedy":
        return greedy_forward(logits, labels, ks=[k])[k]
    raise ValueError(f"unknown selection method {method!r} (exact, beam, greedy)")


def cross_fold_selection(logits, labels, folds, k: int, *, method: str = "exact", beam_width: int = 8,
                         n_threads: int | None = None) -> HonestResult:
    """Choose the subset for each fold on the other folds, score it on that fold, pool.

    For every fold ``f`` the best size-``k`` subset is searched on the utterances whose
    fold differs from ``f`` (their logits and labels only), then used to predict fold
    ``f``.  The pooled predictions give UAR/WAR, an estimate free of selection on the
    scored labels.

    Parameters
    ----------
    logits : array, shape (n_trials, n_utts, n_classes)
    labels : array of int, shape (n_utts,)
    folds : array, shape (n_utts,)
        Fold (e.g. IEMOCAP session) of each utterance; at least two distinct values.
    k : int
    method : {"exact", "beam", "greedy"}

    Returns
    -------
    HonestResult (``method="crossfold"``)
    """
    logits, labels = _check_inputs(logits, labels)
    folds = np.asarray(folds)
    if folds.shape != labels.shape:
        raise ValueError(f"folds must have shape {labels.shape}, got {folds.shape}")
    fold_ids = list(dict.fromkeys(folds.tolist()))  # first-appearance order
    if len(fold_ids) < 2:
        raise ValueError("cross-fold selection needs at least two folds")
    t0 = time.perf_counter()
    pred = np.empty(len(labels), np.int64)
    subsets, sel = {}, {}
    for f in fold_ids:
        held = folds == f
        chosen = _select(logits[:, ~held], labels[~held], k, method, beam_width, n_threads)
        subsets[f] = chosen.subset
        sel[f] = chosen.uar
        pred[held] = fused_predictions(logits[:, held], chosen.subset)
    s = score_predictions(pred, labels, logits.shape[2])
    return HonestResult(k=k, uar=s["uar"], war=s["war"], confusion=s["confusion"], subsets=subsets,
                        selection_uar=sel, seconds=time.perf_counter() - t0, method="crossfold")


def validation_selection(val_logits, val_labels, test_logits, test_labels, k: int, *, method: str = "exact",
                         beam_width: int = 8, n_threads: int | None = None) -> HonestResult:
    """Choose the size-``k`` subset on a validation split, score it on the test split.

    Parameters
    ----------
    val_logits : array, shape (n_trials, n_val, n_classes)
    val_labels : array of int, shape (n_val,)
    test_logits : array, shape (n_trials, n_test, n_classes)
    test_labels : array of int, shape (n_test,)
    k : int
    method : {"exact", "beam", "greedy"}

    Returns
    -------
    HonestResult (``method="validation"``, ``subsets={"val": subset}``)
    """
    val_logits, val_labels = _check_inputs(val_logits, val_labels)
    test_logits, test_labels = _check_inputs(test_logits, test_labels)
    if val_logits.shape[0] != test_logits.shape[0] or val_logits.shape[2] != test_logits.shape[2]:
        raise ValueError(f"val logits {val_logits.shape} and test logits {test_logits.shape} disagree "
                         "on the number of trials or classes")
    t0 = time.perf_counter()
    chosen = _select(val_logits, val_labels, k, method, beam_width, n_threads)
    s = score_predictions(fused_predictions(test_logits, chosen.subset), test_labels, test_logits.shape[2])
    return HonestResult(k=k, uar=s["uar"], war=s["war"], confusion=s["confusion"], subsets={"val": chosen.subset},
                        selection_uar={"val": chosen.uar}, seconds=time.perf_counter() - t0, method="validation")


# --------------------------------------------------------------------------------------
# Loading trials
# --------------------------------------------------------------------------------------
@dataclass
class TrialData:
    """Logits of several trials over the same utterances.

    Attributes
    ----------
    names : list of str
    logits : ndarray, shape (n_trials, n_utts, n_classes), float64  (test split)
    labels, folds : ndarray, shape (n_utts,)
    utt_ids : list of str
    val_logits, val_labels, val_folds, val_utt_ids : validation split, or None when some
        trial has no ``val`` rows.
    """

    names: list
    logits: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    utt_ids: list
    val_logits: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    val_folds: np.ndarray | None = None
    val_utt_ids: list | None = None
    sources: dict = field(default_factory=dict)


def _read_predictions(path: Path):
    """Rows of one ``predictions.csv`` by split: utt ids, folds, labels, logits."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        need = ["utt_id", "fold", "split", "label"]
        missing = [c for c in need if c not in cols]
        logit_cols = sorted((c for c in cols if c.startswith("logit_")), key=lambda c: int(c[6:]))
        if missing or not logit_cols:
            raise ValueError(f"{path}: missing columns {missing or ['logit_0...']}")
        if [int(c[6:]) for c in logit_cols] != list(range(len(logit_cols))):
            raise ValueError(f"{path}: logit columns must be logit_0..logit_{{C-1}}, got {logit_cols}")
        out = {s: ([], [], [], []) for s in ("test", "val")}
        for line, row in enumerate(reader, start=2):
            split = row["split"]
            if split not in out:
                raise ValueError(f"{path}:{line}: split must be 'test' or 'val', got {split!r}")
            ids, fl, lab, lg = out[split]
            ids.append(row["utt_id"])
            fl.append(row["fold"])
            try:
                lab.append(int(row["label"]))
                lg.append([float(row[c]) for c in logit_cols])
            except ValueError as e:
                raise ValueError(f"{path}:{line}: {e}") from None
    return out, len(logit_cols)


def _check_same(name, ref_name, ref, cur, what):
    """Raise on the first position where ``cur`` (ids, folds, labels) differs from ``ref``."""
    ids0, folds0, lab0 = ref
    ids1, folds1, lab1 = cur
    for p in range(max(len(ids0), len(ids1))):
        a = ids0[p] if p < len(ids0) else None
        b = ids1[p] if p < len(ids1) else None
        if b is None:
            detail = f"missing utt_id {a!r} (present in trial {ref_name!r})"
        elif a is None:
            detail = f"extra utt_id {b!r} (absent from trial {ref_name!r})"
        elif a != b:
            detail = f"utt_id {b!r} (expected {a!r} as in trial {ref_name!r})"
        elif folds0[p] != folds1[p] or lab0[p] != lab1[p]:
            detail = (f"utt_id {b!r}: fold/label ({folds1[p]}, {lab1[p]}) != ({folds0[p]}, {lab0[p]}) "
                      f"in trial {ref_name!r}")
        else:
            continue
        raise ValueError(f"trial {name!r}: {what} rows differ at position {p}: {detail}")


def load_trials(trials: Mapping[str, Sequence[str | os.PathLike]]) -> TrialData:
    """Read and align the ``predictions.csv`` of several trials.

    Parameters
    ----------
    trials : mapping trial name -> list of run directories
        One run directory per fold; each holds ``predictions.csv`` with columns
        ``utt_id, fold, split, label, pred, logit_0 .. logit_{C-1}`` (``split`` is
        ``test`` or ``val``; ``pred`` is not used, predictions come from the logits;
        extra columns are ignored).  A trial's runs are pooled in the given order.  A
        path ending in ``.csv`` is read as the file itself.

    Returns
    -------
    TrialData
        Test rows are what gets fused; validation rows are kept when every trial has some.

    Raises
    ------
    ValueError
        When a trial's utterances (ids, order, labels or folds) differ from the first
        trial's: the message names the trial, the position and the first differing utt_id.
        Also on duplicate utterance ids, differing class counts or malformed files.
    """
    if not trials:
        raise ValueError("no trials given")
    names = list(trials)
    per_split = {"test": [], "val": []}
    n_classes = None
    ref_meta = {}
    sources = {}
    for name in names:
        runs = [Path(r) for r in trials[name]]
        if not runs:
            raise ValueError(f"trial {name!r}: no run directories")
        pooled = {s: ([], [], [], []) for s in ("test", "val")}
        for run in runs:
            path = run / "predictions.csv" if run.is_dir() or not run.suffix else run
            rows, C = _read_predictions(path)
            if n_classes is None:
                n_classes = C
            elif C != n_classes:
                raise ValueError(f"trial {name!r}: {path} has {C} logit columns, expected {n_classes}")
            for s in pooled:
                for acc, new in zip(pooled[s], rows[s]):
                    acc.extend(new)
        sources[name] = [str(r) for r in runs]
        if not pooled["test"][0]:
            raise ValueError(f"trial {name!r}: no test rows in {[str(r) for r in runs]}")
        for s in ("test", "val"):
            ids, fl, lab, lg = pooled[s]
            if len(set(ids)) != len(ids):
                seen = set()
                dup = next(u for u in ids if u in seen or seen.add(u))
                raise ValueError(f"trial {name!r}: utt_id {dup!r} occurs twice in the {s} rows")
            meta = (ids, fl, lab)
            if s in ref_meta:
                if ref_meta[s] is not None and ids:
                    _check_same(name, names[0], ref_meta[s], meta, s)
                elif ref_meta[s] is not None:
                    ref_meta[s] = None  # some trial lacks val rows: no validation split
            else:
                ref_meta[s] = meta if ids else None
            per_split[s].append(np.asarray(lg, np.float64).reshape(len(ids), n_classes) if ids else None)
    ids, fl, lab = ref_meta["test"]
    data = TrialData(names=names, logits=np.stack(per_split["test"]), labels=np.asarray(lab, np.int64),
                     folds=np.asarray(fl), utt_ids=list(ids), sources=sources)
    if ref_meta["val"] is not None and all(v is not None for v in per_split["val"]):
        vids, vfl, vlab = ref_meta["val"]
        data.val_logits = np.stack(per_split["val"])
        data.val_labels = np.asarray(vlab, np.int64)
        data.val_folds = np.asarray(vfl)
        data.val_utt_ids = list(vids)
    return data


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------
def _atomic_write_text(path, text: str) -> None:
    """Write ``text`` to a sibling temporary file, then ``os.replace`` it onto ``path``."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def search_npz(npz_path, ks=None, out_json=None, *, n_threads: int | None = None) -> dict:
    """Exact search on logits stored in an ``.npz`` file.

    Parameters
    ----------
    npz_path : path
        Holds ``logits`` (n_trials, n_utts, n_classes) and ``labels`` (n_utts,).
    ks : iterable of int, ``"all"`` or None (all sizes)
    out_json : path, optional
        Written atomically: ``{"n_trials", "n_utts", "n_classes", "results": {k: {uar,
        war, subset, seconds, n_evaluated, confusion}}}``.

    Returns
    -------
    dict, the JSON document.
    """
    with np.load(npz_path) as z:
        logits, labels = z["logits"], z["labels"]
    res = exact_search(logits, labels, ks, n_threads=n_threads)
    doc = {
        "source": str(npz_path),
        "n_trials": int(logits.shape[0]),
        "n_utts": int(logits.shape[1]),
        "n_classes": int(logits.shape[2]),
        "tie_rules": "class ties -> lowest class index; UAR ties -> lexicographically smallest subset",
        "results": {str(k): {"uar": r.uar, "war": r.war, "subset": list(r.subset), "seconds": r.seconds,
                             "n_evaluated": r.n_evaluated, "confusion": r.confusion.tolist()}
                    for k, r in res.items()},
    }
    if out_json is not None:
        _atomic_write_text(out_json, json.dumps(doc, indent=2) + "\n")
    return doc


_CSV_FIELDS = ["method", "k", "uar", "war", "subset", "subset_idx", "seconds", "gap_to_exact", "n_evaluated"]


def run_fusion(trials: Mapping[str, Sequence[str]], ks, out_csv, out_json, *, beam_width: int = 8,
               honest_ks: Iterable[int] | None = None, honest_method: str = "exact",
               n_threads: int | None = None) -> dict:
    """Late-combination table for the Snakemake rule: exact, heuristics, full integration, honest.

    Parameters
    ----------
    trials : mapping trial name -> list of run directories (see :func:`load_trials`)
    ks : iterable of int, ``"all"`` or None
        Subset sizes for the exact search and the heuristics.
    out_csv, out_json : path
        One CSV row per (method, k): ``method, k, uar, war, subset`` (trial names joined
        by ``+``), ``subset_idx`` (0-based indices joined by ``+``), ``seconds``,
        ``gap_to_exact`` (exact UAR minus this UAR, same k), ``n_evaluated``.  Methods:
        ``exact``, ``greedy``, ``beam``, ``full`` (k = n), ``crossfold`` (subset chosen on
        the other folds; its subset column lists ``fold=subset`` per fold, joined by
        ``;``) and ``validation`` (when every trial has val rows).  The JSON holds the
        same rows plus confusion matrices.
    beam_width : int
    honest_ks : iterable of int, optional
        Sizes for the honest figures.  Default: the size with the best exact UAR (the
        paper's headline; smallest such size on ties).  Cross-fold selection with
        ``honest_method="exact"`` costs one exact search per fold and size.
    honest_method : {"exact", "beam", "greedy"}

    Returns
    -------
    dict with ``rows`` (list of row dicts incl. confusion) and dataset metadata.
    """
    data = load_trials({k: list(v) for k, v in trials.items()})
    logits, labels = data.logits, data.labels
    n = logits.shape[0]
    ks = _normalise_ks(ks, n)
    names = data.names

    exact = exact_search(logits, labels, ks, n_threads=n_threads)
    if honest_ks is None:
        top = max(exact.values(), key=lambda r: (r.uar, -r.k))
        honest = [top.k]
    else:
        honest = _normalise_ks(list(honest_ks), n)
    rows = []

    def add(method, k, uar, war, subset, subset_idx, seconds, conf, n_eval, extra=None):
        row = {"method": method, "k": k, "uar": uar, "war": war, "subset": subset, "subset_idx": subset_idx,
               "seconds": round(seconds, 6), "gap_to_exact": (exact[k].uar - uar) if k in exact else None,
               "n_evaluated": n_eval, "confusion": conf.tolist()}
        row.update(extra or {})
        rows.append(row)

    def fr(r: FusionResult):
        add(r.method, r.k, r.uar, r.war, "+".join(names[i] for i in r.subset), "+".join(map(str, r.subset)),
            r.seconds, r.confusion, r.n_evaluated)

    for r in exact.values():
        fr(r)
    for r in greedy_forward(logits, labels, ks).values():
        fr(r)
    for r in beam_search(logits, labels, beam_width, ks).values():
        fr(r)
    fr(full_integration(logits, labels))
    if len(set(data.folds.tolist())) >= 2:
        for k in honest:
            h = cross_fold_selection(logits, labels, data.folds, k, method=honest_method, beam_width=beam_width,
                                     n_threads=n_threads)
            add("crossfold", k, h.uar, h.war,
                ";".join(f"{f}={'+'.join(names[i] for i in s)}" for f, s in h.subsets.items()),
                ";".join(f"{f}={'+'.join(map(str, s))}" for f, s in h.subsets.items()),
                h.seconds, h.confusion, None, {"selection_uar": {str(f): v for f, v in h.selection_uar.items()}})
    if data.val_logits is not None:
        for k in honest:
            h = validation_selection(data.val_logits, data.val_labels, logits, labels, k, method=honest_method,
                                     beam_width=beam_width, n_threads=n_threads)
            s = h.subsets["val"]
            add("validation", k, h.uar, h.war, "+".join(names[i] for i in s), "+".join(map(str, s)), h.seconds,
                h.confusion, None, {"selection_uar": h.selection_uar["val"]})

    doc = {"trials": names, "sources": data.sources, "n_utts": int(logits.shape[1]),
           "n_classes": int(logits.shape[2]), "ks": ks, "honest_ks": honest,
           "tie_rules": "class ties -> lowest class index; UAR ties -> lexicographically smallest subset",
           "rows": rows}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write_text(out_csv, buf.getvalue())
    _atomic_write_text(out_json, json.dumps(doc, indent=2) + "\n")
    return doc


# --------------------------------------------------------------------------------------
# Synthetic data (benchmark and tests)
# --------------------------------------------------------------------------------------
IEMOCAP4_COUNTS = (1103, 1636, 1084, 1708)  # angry, happy+excited, sad, neutral (5,531 utterances)


def synthetic_trials(n_trials: int = 30, n_utts: int = 5531, n_classes: int = 4, seed: int = 0, *,
                     signal: float = 1.75, shared: float = 1.0, noise: float = 0.45, bias: float = 0.15):
    """Correlated synthetic trials resembling the paper's 30 IEMOCAP trials.

    ``logits[i, u] = signal * onehot(y_u) + shared * z_u + noise * e_iu + bias * b_i`` with
    standard normal ``z`` (per utterance, shared by all trials: the utterance's
    difficulty), ``e`` (per trial and utterance) and ``b`` (per trial and class).  The
    defaults give single trials of about 73 % UAR and a full integration of about 77 %,
    like Tables 3 and 5 of the paper.  With 4 classes and 5,531 utterances the class
    sizes are IEMOCAP's.

    Returns
    -------
    logits : ndarray, shape (n_trials, n_utts, n_classes); labels : ndarray, shape (n_utts,)
    """
    rng = np.random.default_rng(seed)
    if n_classes == 4 and n_utts == sum(IEMOCAP4_COUNTS):
        labels = np.repeat(np.arange(4), IEMOCAP4_COUNTS)
        rng.shuffle(labels)
    else:
        labels = rng.integers(0, n_classes, n_utts)
    base = signal * np.eye(n_classes)[labels] + shared * rng.standard_normal((n_utts, n_classes))
    logits = (base[None] + noise * rng.standard_normal((n_trials, n_utts, n_classes))
              + bias * rng.standard_normal((n_trials, 1, n_classes)))
    return logits, labels.astype(np.int64)
