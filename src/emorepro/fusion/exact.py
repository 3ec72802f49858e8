"""The exact best-subset search: the best UAR over all ``C(n, k)`` subsets of trials.

:func:`exact_search` is a depth-first branch and bound over subsets in lexicographic
order (kernels in :mod:`.kernels`).  A node is a partial subset with ``r`` trials still
to pick from the trials after its last one.  Per utterance and wrong class, the margin of
the label over that class can at best grow by the ``r`` largest remaining per-trial
margins and at worst by the ``r`` smallest, so each utterance is *sure* (correct in every
completion), *lost* or *open*; decided utterances leave the node's list, and
``sure + open`` weight bounds every completion.  A node that cannot beat the incumbent is
pruned (a later node in lexicographic order needs a strictly better score, which
implements the subset tie rule).  The last six levels are scored by vectorised passes
over tables of the sums of every set of up to six trials, sizes above ``n / 2`` search
the complement of the subset (same leaves, fewer levels), and the incumbents come from a
beam search (:mod:`.heuristics`), so almost every leaf is dropped on its not-wrong count
alone.  The work is split into subtrees run on threads (the kernels release the GIL).

Exactness: margins are quantised per utterance to int16 with a floor, so a subset's
quantised margin brackets the reference one within a band of ``k`` units plus a bound on
the float64 rounding; a decision outside the band is the reference's decision, and an
utterance inside it is re-scored with the reference float64 sums.  The winners are
re-scored with :func:`.reference.fused_predictions` and checked.

Cost: the per-utterance bound cannot see that one subset must serve all utterances at
once, so on trials as diverse as the paper's (single trials ~73 % UAR, full integration
~77 %) it prunes little: most of the ``C(n, k)`` leaves are still counted, each on a list
of a few hundred utterances, by int16 vector loops.  On the benchmark's 30 x 5,531 x 4
trials (``benchmarks/fusion_search.py``, 2 cores shared with other jobs): k = 9 in about
1.5 s, every k in about 55 s, peak memory about 570 MiB (the lane tables, twice for the
complement).  Before
any of that, the search estimates its time (:mod:`.budget`) and refuses sizes over its
budget (every k of 40 or more trials, for instance), and it shows a progress bar when the
estimate is long.

Importing this module imports numba (about 0.5 s); the kernels are compiled on first use
and cached on disk (``cache=True``): a first-ever call pays 10-20 s of compilation.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import kernels as FK
from .budget import DEFAULT_MAX_HOURS, check_budget, estimate_seconds, normalise_ks
from .heuristics import _beam
from .reference import (
    FusionResult,
    _check_inputs,
    _exact_score,
    _result,
    _Scorer,
)

# Searches estimated longer than this show a progress bar on stderr (``progress=None``).
PROGRESS_SECONDS = 30.0


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


def search_estimates(logits, labels, ks=None, *, n_threads: int | None = None) -> dict[int, float]:
    """Estimated wall seconds of :func:`exact_search` per size (:mod:`.budget`); cheap."""
    logits, labels = _check_inputs(logits, labels)
    n, _, C = logits.shape
    ks = normalise_ks(ks, n)
    m = FK.quantise(logits, labels, _Scorer(labels, C).class_weight)
    threads = _n_threads(n_threads)
    return {k: estimate_seconds(n, k, m.U, C, threads) for k in ks}


def exact_search(logits, labels, ks=None, *, incumbent_width: int = 8, n_threads: int | None = None,
                 max_seconds: float | None = None, progress: bool | None = None,
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
    max_seconds : float, optional
        Time budget (default :data:`.budget.DEFAULT_MAX_HOURS`; ``math.inf``: none).  The
        search estimates its time from ``C(n, k)`` and the number of open utterances
        before any expensive step and raises :class:`.budget.SearchTooLarge` (a
        ``ValueError``) naming every size over the budget and its estimate.
    progress : bool, optional
        Progress bar on stderr (tqdm) over the subsets searched; default: when the
        estimate exceeds :data:`PROGRESS_SECONDS`.

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
    n, _, C = logits.shape
    ks = normalise_ks(ks, n)
    scorer = _Scorer(labels, C)
    t_start = time.perf_counter()
    threads = _n_threads(n_threads)

    # Quantise first (cheap), then estimate the time and refuse what cannot finish
    # before anything expensive (beam, lane tables) is built.
    t0 = time.perf_counter()
    margins = FK.quantise(logits, labels, scorer.class_weight, _margin_rows)
    estimates = {k: estimate_seconds(n, k, margins.U, C, threads) for k in ks}
    budget = DEFAULT_MAX_HOURS * 3600 if max_seconds is None else float(max_seconds)
    check_budget(estimates, n, budget, f"exact search over {n} trials ({margins.U} open utterances)")
    t_quant = time.perf_counter() - t0

    # Starting incumbents: beam search, scored exactly (k = n: the full set, no beam).
    t0 = time.perf_counter()
    heur, _ = _beam(logits, labels, scorer, int(incumbent_width), max(ks))
    t_heur = time.perf_counter() - t0

    # Sizes above n/2 search the complement (size n - k): a shallower tree whose last
    # levels fan out wider.  k = n has a single subset: the incumbent.
    comp = {k: (2 * k > n if _complement is None else bool(_complement)) and k < n for k in ks}
    t0 = time.perf_counter()
    kmax_direct = max([k for k in ks if not comp[k] and k < n] or [1])
    kmax_comp = max([n - k for k in ks if comp[k]] or [0])
    tables = {}
    if any(k < n for k in ks):
        tables[False] = FK.build_tables(margins, kmax_direct, _set_cuts)
        if kmax_comp:
            tables[True] = FK.complement_tables(tables[False], kmax_comp, _set_cuts)
    t_tables = time.perf_counter() - t0 + t_quant
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

    show = sum(estimates.values()) > PROGRESS_SECONDS if progress is None else bool(progress)
    bar = None
    if show and items:
        from tqdm import tqdm

        bar = tqdm(total=sum(it[0] for it in items), unit="subsets", unit_scale=True, file=sys.stderr,
                   desc=f"exact search, {n} trials, k={_short(ks)}", mininterval=2.0, smoothing=0.05)

    def run(item):
        cost, k, rank, pre = item
        t_cpu = time.thread_time()
        t = tables[comp[k]]
        if local.scratch is None:
            local.scratch = FK.Scratch.allocate(t, depth)
        with lock:
            score, _, srank = state[k]
        # A subset of equal score earlier in lexicographic order wins the tie, so only the
        # subtrees after the incumbent's may prune at equality (before it, for complements:
        # their order is the reverse of the subsets').
        later = rank < srank if comp[k] else rank > srank
        thr = score if later else score - 1
        size = n - k if comp[k] else k
        best_set = np.zeros(size, np.int64)
        job = FK.Search(tables=t, scratch=local.scratch, kband=k, k=size, prefix=np.array(pre, np.int64), thr=thr,
                        best=best_set)
        found, best, nn = FK.branch_and_bound(job)
        dt = time.thread_time() - t_cpu
        with lock:
            nodes[k] += int(nn)
            seconds[k] += dt
            if bar is not None:
                bar.update(cost)
            if found:
                cand = tuple(int(x) for x in best_set)
                if comp[k]:
                    cand = tuple(sorted(set(range(n)) - set(cand)))
                score, subset, _ = state[k]
                if best > score or (best == score and cand < subset):
                    state[k] = [int(best), cand, rank]

    try:
        if threads == 1 or len(items) == 1:
            for it in items:
                run(it)
        else:
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(run, items))
    finally:
        if bar is not None:
            bar.close()

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
        t = tables.get(False)
        _stats.update(open_utts=margins.U, base=margins.base, band=margins.Bf,
                      set_cuts=t.cut.tolist() if t is not None else [], heuristic_seconds=t_heur,
                      tables_seconds=t_tables, total_seconds=time.perf_counter() - t_start,
                      table_bytes=sum(x.nbytes for x in tables.values()) - max(len(tables) - 1, 0) * margins.L.nbytes,
                      heuristic={k: heur[k] for k in ks}, estimated_seconds=estimates)
    return out


def _short(ks: list[int]) -> str:
    return f"{ks[0]}..{ks[-1]}" if len(ks) > 2 and ks == list(range(ks[0], ks[-1] + 1)) else ",".join(map(str, ks))
