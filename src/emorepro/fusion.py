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
  sums in increasing trial order.  The search reproduces them: the float64 kernels add
  trials in that order, the float32 fast path only decides outside a proven error band
  and recomputes the reference sums inside it.
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
order, compiled with numba.  A node is a partial subset ``A`` (last index ``t``) with
``r`` trials still to pick from ``{t+1, ..., n-1}``.  For every utterance and wrong class
``j`` the margin ``m_j = S_A[y] - S_A[j]`` can at best grow by the sum of the ``r``
largest per-trial margins ``d_i[j] = l_i[y] - l_i[j]`` of the remaining trials and at
worst by the ``r`` smallest (tables per suffix and budget).  So an utterance is *sure*
(correct in every completion), *lost* (wrong in every completion) or *open*.  Decided
utterances leave the node's working list, so deep nodes touch few utterances, and
``sure weight + open weight`` bounds the score of every completion: the node is pruned
when that bound cannot beat the incumbent (a later node in lexicographic order needs a
strictly better score, which implements the subset tie rule).  Before the search,
utterances on which every trial is right (or one wrong class beats the truth in every
trial) are removed for all sizes.  Incumbents come from a beam search, so pruning is
strong from the first node, and the work is split into subtrees run on threads (the
kernels release the GIL).

Exactness: every bound test needs a margin beyond a slack that exceeds the worst-case
rounding error of the arithmetic used (float64, or float32 in the fast path for up to
five classes), so a pruning decision is never wrong; leaves are decided the same way
and an utterance whose margin falls inside the slack band is re-scored with the
reference float64 sums.  The winners are re-scored with :func:`fused_predictions`.

Cost: the per-utterance bound cannot see that one subset must serve all utterances at
once, so on trials as diverse as the paper's (single trials ~73 % UAR, full integration
~77 %) it prunes little above the last two levels: most of the ``C(n, k)`` leaves are
still scored, each on a working list of ~50-400 utterances with early exit.

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
# numba kernels
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _argmax_is(v, yy):
    """True when ``np.argmax(v) == yy`` (first maximum wins)."""
    sy = v[yy]
    for c in range(v.shape[0]):
        if c < yy:
            if v[c] >= sy:
                return False
        elif c > yy:
            if v[c] > sy:
                return False
    return True


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
            if _argmax_is(v, labels[u]):
                sc += weights[u]
        out[i] = sc
    return out


@numba.njit(cache=True, nogil=True)
def _suffix_tables(D, kmax, off, rmin):
    """Sums of the ``r`` largest / smallest per-trial margins over trial suffixes.

    ``D`` has shape (n, J, U): margin of the true class over wrong class ``j`` for every
    trial and utterance.  Row ``off[s] + r - rmin`` of the outputs (shape (P, J, U)) holds
    suffix ``s`` (trials ``s..n-1``) and budget ``r``, ``rmin <= r <= min(n - s, kmax)``.
    """
    n, J, U = D.shape
    P = off[n]
    top = np.zeros((max(P, 1), J, U))
    bot = np.zeros((max(P, 1), J, U))
    buf = np.empty(n)
    for u in range(U):
        for j in range(J):
            m = 0  # buf[:m] holds D[s:, j, u] sorted descending (insertion sort, n is small)
            for s in range(n - 1, -1, -1):
                x = D[s, j, u]
                p = m
                while p > 0 and buf[p - 1] < x:
                    buf[p] = buf[p - 1]
                    p -= 1
                buf[p] = x
                m += 1
                rmax = min(m, kmax)
                acc_t = 0.0
                acc_b = 0.0
                for r in range(1, rmax + 1):
                    acc_t += buf[r - 1]
                    acc_b += buf[m - r]
                    if r >= rmin:
                        top[off[s] + r - rmin, j, u] = acc_t
                        bot[off[s] + r - rmin, j, u] = acc_b
    return top, bot


@numba.njit(cache=True, nogil=True)
def _bb_generic(L, y, w, top, bot, off, slack, k, prefix, thr, base, lists, sums, best_subset):
    """Branch and bound for any number of classes (float64 sums; the C <= 5 path is faster).

    Parameters
    ----------
    L : (n, U, C) float64 logits of the open utterances; y, w : labels and integer weights.
    top, bot : :func:`_suffix_tables` with ``rmin=1`` over the per-trial margins.
    slack : float, exceeds any float64 rounding error of the margin bounds.
    k : subset size; prefix : forced first trials (strictly increasing).
    thr : report only subsets with score > thr (raised as better ones are found).
    base : score of the utterances correct in every subset.
    lists, sums, best_subset : scratch (k+1, U), (k+1, U, C), (k,) owned by the caller.

    Returns
    -------
    (found, best_score, nodes); the best subset is written to ``best_subset``.
    """
    n, U, C = L.shape
    plen = prefix.shape[0]
    cnt = np.zeros(k + 1, np.int64)
    fixed = np.zeros(k + 1, np.int64)
    rest = np.zeros(k + 1, np.int64)
    nxt = np.zeros(k + 1, np.int64)
    chosen = np.zeros(k + 1, np.int64)
    v = np.empty(C)
    r0 = 0
    for q in range(U):
        lists[0, q] = q
        for c in range(C):
            sums[0, q, c] = 0.0
        r0 += w[q]
    cnt[0] = U
    fixed[0] = base
    rest[0] = r0
    found = False
    best = thr
    nodes = 0
    a = 0
    nxt[0] = prefix[0] if plen > 0 else 0
    while a >= 0:
        hi = prefix[a] if a < plen else n - (k - a)
        i = nxt[a]
        if i > hi:
            a -= 1
            continue
        nxt[a] = i + 1
        nodes += 1
        r2 = k - a - 1  # trials still to pick after adding i
        b = a + 1
        fx = fixed[a]
        possible = fx + rest[a]  # upper bound, shrinks as utterances are found lost
        if possible <= best:
            # Siblings share the parent's bound (best may have risen), so the parent is done.
            a -= 1
            continue
        nc = 0
        rs = 0
        pruned = False
        if r2 == 0:
            for q in range(cnt[a]):
                u = lists[a, q]
                for c in range(C):
                    v[c] = sums[a, q, c] + L[i, u, c]
                if _argmax_is(v, y[u]):
                    fx += w[u]
                else:
                    possible -= w[u]
                    if possible <= best:
                        pruned = True
                        break
            if not pruned:
                best = fx
                found = True
                for t in range(a):
                    best_subset[t] = chosen[t]
                best_subset[a] = i
            continue
        p = off[i + 1] + r2 - 1
        for q in range(cnt[a]):
            u = lists[a, q]
            yy = y[u]
            for c in range(C):
                v[c] = sums[a, q, c] + L[i, u, c]
            sure = True
            lost = False
            jj = 0
            for c in range(C):
                if c == yy:
                    continue
                mg = v[yy] - v[c]
                if mg + top[p, jj, u] < -slack:
                    lost = True
                    break
                if mg + bot[p, jj, u] <= slack:
                    sure = False
                jj += 1
            if lost:
                possible -= w[u]
                if possible <= best:
                    pruned = True
                    break
            elif sure:
                fx += w[u]
            else:
                lists[b, nc] = u
                for c in range(C):
                    sums[b, nc, c] = v[c]
                nc += 1
                rs += w[u]
        if pruned:
            continue
        if nc == 0 and b >= plen:
            # Every completion scores fx; the lexicographically first one is i+1..i+r2.
            best = fx
            found = True
            for t in range(a):
                best_subset[t] = chosen[t]
            best_subset[a] = i
            for t in range(r2):
                best_subset[a + 1 + t] = i + 1 + t
            continue
        chosen[a] = i
        cnt[b] = nc
        fixed[b] = fx
        rest[b] = rs
        a = b
        nxt[a] = prefix[a] if a < plen else i + 1
    return found, best, nodes


# Fast path for up to 5 classes: the (at most 4) margins of an utterance live in four
# float32 structure-of-arrays rows (unused rows are +inf margins that never matter), so
# the inner loops are short, branch-free and vectorise.  float32 is not exact, so every
# decision needs a margin beyond the slack ``s`` (which bounds the float32 error); an
# utterance inside the band at a leaf is re-scored with the reference float64 sums.
@numba.njit(cache=True, nogil=True)
def _correct_exact(L, y, chosen, a, e1, e2, u):
    """Reference test for one utterance: float64 sums in increasing trial order, argmax."""
    C = L.shape[2]
    v = np.zeros(C)
    for t in range(a):
        for c in range(C):
            v[c] += L[chosen[t], u, c]
    if e1 >= 0:
        for c in range(C):
            v[c] += L[e1, u, c]
    for c in range(C):
        v[c] += L[e2, u, c]
    return _argmax_is(v, y[u])


@numba.njit(cache=True, nogil=True)
def _leaf_scan(lst, W, M0, M1, M2, M3, D0, D1, D2, D3, na, s, best, fx, possible):
    """Score a leaf on a working list; stop once it cannot beat ``best``.

    Returns (sure-correct weight, remaining upper bound, #utterances in the float32 band,
    #utterances visited).
    """
    ns = -s
    namb = 0
    q0 = 0
    while q0 < na:
        q1 = min(q0 + 64, na)
        for q in range(q0, q1):
            u = lst[q]
            v0 = M0[q] + D0[u]
            v1 = M1[q] + D1[u]
            v2 = M2[q] + D2[u]
            v3 = M3[q] + D3[u]
            ok = (v0 > s) & (v1 > s) & (v2 > s) & (v3 > s)
            lost = (v0 < ns) | (v1 < ns) | (v2 < ns) | (v3 < ns)
            fx += W[q] if ok else 0
            possible -= W[q] if lost else 0
            namb += 0 if (ok | lost) else 1
        q0 = q1
        if possible <= best:
            break
    return fx, possible, namb, q0


@numba.njit(cache=True, nogil=True)
def _leaf_exact(L, y, chosen, a, e1, e2, lst, W, M0, M1, M2, M3, D0, D1, D2, D3, na, s):
    """Exact score of a leaf's working list (float32 where safe, reference sums in the band)."""
    fx = 0
    ns = -s
    for q in range(na):
        u = lst[q]
        v0 = M0[q] + D0[u]
        v1 = M1[q] + D1[u]
        v2 = M2[q] + D2[u]
        v3 = M3[q] + D3[u]
        if (v0 > s) & (v1 > s) & (v2 > s) & (v3 > s):
            fx += W[q]
        elif (v0 < ns) | (v1 < ns) | (v2 < ns) | (v3 < ns):
            pass
        elif _correct_exact(L, y, chosen, a, e1, e2, u):
            fx += W[q]
    return fx


@numba.njit(cache=True, nogil=True)
def _add_rows(lst, M, D, na, out):
    for q in range(na):
        u = lst[q]
        out[0, q] = M[0, q] + D[0, u]
        out[1, q] = M[1, q] + D[1, u]
        out[2, q] = M[2, q] + D[2, u]
        out[3, q] = M[3, q] + D[3, u]


@numba.njit(cache=True, nogil=True)
def _filter_child(lst, W, M, D, T, B, na, s, cut, best, fx, possible, olst, OW, OM, st, V):
    """Working list of a child node: margins after adding one trial, then decide each utterance.

    Lost (cannot be correct in any completion), sure (correct in every completion) or open.
    The first pass is branch-free.  The second compacts the open utterances ordered by
    their best reachable margin ``min_j (m_j + top_j)`` in four buckets (bounds ``cut``):
    the ones that need nearly all the remaining budget come first, the leaves lose those,
    so their early exit comes sooner.  The compaction stores every entry at the next free
    slot and only advances past the kept ones, so the outputs need one spare column
    (index ``na``).  Returns (fx, possible, open weight, #open, pruned).
    """
    ns = -s
    c0 = cut[0]
    c1 = cut[1]
    c2 = cut[2]
    M0 = M[0]
    M1 = M[1]
    M2 = M[2]
    M3 = M[3]
    D0 = D[0]
    D1 = D[1]
    D2 = D[2]
    D3 = D[3]
    T0 = T[0]
    T1 = T[1]
    T2 = T[2]
    T3 = T[3]
    B0 = B[0]
    B1 = B[1]
    B2 = B[2]
    B3 = B[3]
    V0 = V[0]
    V1 = V[1]
    V2 = V[2]
    V3 = V[3]
    q0 = 0
    while q0 < na:
        q1 = min(q0 + 64, na)
        for q in range(q0, q1):
            u = lst[q]
            v0 = M0[q] + D0[u]
            v1 = M1[q] + D1[u]
            v2 = M2[q] + D2[u]
            v3 = M3[q] + D3[u]
            t0 = v0 + T0[u]
            t1 = v1 + T1[u]
            t2 = v2 + T2[u]
            t3 = v3 + T3[u]
            ta = t0 if t0 < t1 else t1
            tb = t2 if t2 < t3 else t3
            top = ta if ta < tb else tb
            lost = top < ns
            sure = (v0 + B0[u] > s) & (v1 + B1[u] > s) & (v2 + B2[u] > s) & (v3 + B3[u] > s)
            V0[q] = v0
            V1[q] = v1
            V2[q] = v2
            V3[q] = v3
            bucket = (1 if top >= c0 else 0) + (1 if top >= c1 else 0) + (1 if top >= c2 else 0)
            st[q] = -1 if (lost | sure) else bucket
            possible -= W[q] if lost else 0
            fx += W[q] if (sure & (not lost)) else 0
        q0 = q1
        if possible <= best:
            return fx, possible, 0, 0, True
    O0 = OM[0]
    O1 = OM[1]
    O2 = OM[2]
    O3 = OM[3]
    nc = 0
    rs = 0
    for bucket in range(4):
        for q in range(na):
            olst[nc] = lst[q]
            OW[nc] = W[q]
            O0[nc] = V0[q]
            O1[nc] = V1[q]
            O2[nc] = V2[q]
            O3[nc] = V3[q]
            take = st[q] == bucket
            rs += W[q] if take else 0
            nc += 1 if take else 0
    return fx, possible, rs, nc, False


@numba.njit(cache=True, nogil=True)
def _bb_fast(L, y, w, D, T, B, off, rmin, s, cut, k, prefix, thr, base, lists, WL, M, MP, st, V, best_subset):
    """Branch and bound below a fixed subset prefix for up to 5 classes, lexicographic order.

    Parameters
    ----------
    L : (n, U, C) float64 logits of the open utterances (for the exact re-scoring).
    y, w : labels and integer weights of the open utterances.
    D : (n, 4, U) float32 per-trial margins (true class minus each wrong class).
    T, B : (P, 4, U) float32 suffix tables (:func:`_suffix_tables`) rounded outwards (top
        up, bottom down), so they stay valid bounds.
    off, rmin : row offsets and smallest budget of the tables.  ``rmin=2``: a node with
        one trial left does not filter its list, its leaves scan the parent's list;
        ``rmin=1``: every level filters.
    s : float32 slack; cut : float32 (3,) bucket bounds of :func:`_filter_child`.
    k, prefix, thr, base as in :func:`_bb_generic`.
    lists, WL, M, MP, st, V, best_subset : scratch owned by the caller; the per-utterance
        axes need U + 1 entries (see :func:`_filter_child`).

    Returns
    -------
    (found, best_score, nodes, leaves_scanned)
    """
    n, U, C = L.shape
    plen = prefix.shape[0]
    cnt = np.zeros(k + 1, np.int64)
    fixed = np.zeros(k + 1, np.int64)
    rest = np.zeros(k + 1, np.int64)
    nxt = np.zeros(k + 1, np.int64)
    chosen = np.zeros(k + 1, np.int64)
    inf = np.float32(np.inf)
    zero = np.float32(0.0)
    r0 = 0
    for q in range(U):
        lists[0, q] = q
        WL[0, q] = w[q]
        for c in range(4):
            M[0, c, q] = zero if c < C - 1 else inf
        r0 += w[q]
    cnt[0] = U
    fixed[0] = base
    rest[0] = r0
    found = False
    best = thr
    nodes = 0
    leaves = 0
    a = 0
    nxt[0] = prefix[0] if plen > 0 else 0
    while a >= 0:
        hi = prefix[a] if a < plen else n - (k - a)
        i = nxt[a]
        if i > hi:
            a -= 1
            continue
        nxt[a] = i + 1
        nodes += 1
        r2 = k - a - 1
        b = a + 1
        if fixed[a] + rest[a] <= best:
            a -= 1
            continue
        na = cnt[a]
        if r2 == 0 or (r2 == 1 and rmin == 2):
            if r2 == 1:
                # Leaves (i, i2) for every i2 > i, scored on this node's list: filtering a
                # working list for so few leaves costs more than it saves.
                _add_rows(lists[a], M[a], D[i], na, MP)
                MS = MP
                lo2 = i + 1
                e1 = i
            else:  # this node's children are the leaves
                MS = M[a]
                lo2 = i
                e1 = -1
            for i2 in range(lo2, n if r2 == 1 else i + 1):
                leaves += 1
                fx, possible, namb, _ = _leaf_scan(lists[a], WL[a], MS[0], MS[1], MS[2], MS[3],
                                                   D[i2, 0], D[i2, 1], D[i2, 2], D[i2, 3], na, s, best,
                                                   fixed[a], fixed[a] + rest[a])
                if possible <= best:
                    continue
                if namb:
                    fx = fixed[a] + _leaf_exact(L, y, chosen, a, e1, i2, lists[a], WL[a], MS[0], MS[1], MS[2],
                                                MS[3], D[i2, 0], D[i2, 1], D[i2, 2], D[i2, 3], na, s)
                    if fx <= best:
                        continue
                best = fx
                found = True
                for t in range(a):
                    best_subset[t] = chosen[t]
                if r2 == 1:
                    best_subset[a] = i
                    best_subset[a + 1] = i2
                else:
                    best_subset[a] = i2
            continue
        p = off[i + 1] + r2 - rmin
        fx, possible, rs, nc, pruned = _filter_child(lists[a], WL[a], M[a], D[i], T[p], B[p], na, s, cut, best,
                                                     fixed[a], fixed[a] + rest[a], lists[b], WL[b], M[b], st, V)
        if pruned:
            continue
        if nc == 0 and b >= plen:
            # Every completion scores fx; the lexicographically first one is i+1..i+r2.
            best = fx
            found = True
            for t in range(a):
                best_subset[t] = chosen[t]
            best_subset[a] = i
            for t in range(r2):
                best_subset[a + 1 + t] = i + 1 + t
            continue
        chosen[a] = i
        cnt[b] = nc
        fixed[b] = fx
        rest[b] = rs
        a = b
        nxt[a] = prefix[a] if a < plen else i + 1
    return found, best, nodes, leaves


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
@dataclass
class _Prepared:
    """Per-dataset state shared by every k: open utterances and the bound tables."""

    L: np.ndarray  # (n, U, C) float64 logits of the open utterances, hardest first
    y: np.ndarray
    w: np.ndarray
    base: int  # score of the utterances correct in every subset
    fast: bool  # use _bb_fast (C <= 5) rather than _bb_generic
    D: np.ndarray  # fast: (n, 4, U) float32 margins
    top: np.ndarray
    bot: np.ndarray
    off: np.ndarray
    rmin: int  # smallest budget in the tables
    slack: float
    cut: np.ndarray  # fast: bucket bounds for the order of the working lists
    seconds: float


# Fast path: smallest remaining budget at which a node filters its working list (1 or 2).
_FAST_RMIN = 2


def _prepare(logits, labels, scorer: _Scorer, kmax: int, kernel: str = "auto") -> _Prepared:
    t0 = time.perf_counter()
    n, N, C = logits.shape
    # Per-trial margins d_i[u, j] = l_i[u, y] - l_i[u, j] for the C-1 wrong classes (class order).
    ly = np.take_along_axis(logits, labels[None, :, None], axis=2)
    mask = np.ones((N, C), bool)
    mask[np.arange(N), labels] = False
    D = (ly - logits)[:, mask].reshape(n, N, C - 1)
    # Any partial sum is bounded by A; the worst-case float64 error of a margin bound is
    # below (6n + 8) * 2**-53 * A, the slack is (16n + 32) * 2**-53 * A.
    A = float(np.abs(logits).max(axis=2).sum(axis=0).max())
    slack = (16 * n + 32) * 2.0**-53 * A
    if C == 1:
        always = np.ones(N, bool)  # one class: every utterance is always correct
        never = np.zeros(N, bool)
    else:
        # Correct in every non-empty subset if every trial is correct by more than the slack;
        # wrong in every subset if one wrong class beats the truth in every trial.
        always = (D.min(axis=0) > slack).all(axis=1)
        never = (D.max(axis=0) < -slack).any(axis=1)
    open_ = np.flatnonzero(~always & ~never)
    base = int(scorer.weights[always].sum())
    # Hardest utterances first (fewest trials right): they are the ones lost in most nodes,
    # so the running bound drops below the incumbent early.  Renumbering the utterances in
    # that order keeps every working list sorted, so the gathers walk memory forwards.
    own_correct = (D[:, open_, :].min(axis=2, initial=np.inf) > 0).sum(axis=0)
    open_ = open_[np.argsort(own_correct, kind="stable")]
    U = len(open_)
    Lc = np.ascontiguousarray(logits[:, open_, :])
    Dc = np.ascontiguousarray(D[:, open_, :].transpose(0, 2, 1))  # (n, C-1, U)
    fast = C <= 5 if kernel == "auto" else kernel == "fast"
    if fast and C > 5:
        raise ValueError("the fast kernel handles at most 5 classes")
    rmin = _FAST_RMIN if fast else 1
    off = np.zeros(n + 1, np.int64)
    for s in range(n):
        off[s + 1] = off[s] + max(0, min(n - s, kmax) - rmin + 1)
    if C > 1 and U:
        top, bot = _suffix_tables(Dc, kmax, off, rmin)
    else:
        top = bot = np.zeros((max(int(off[n]), 1), max(C - 1, 1), U))
    if fast:
        D32 = np.zeros((n, 4, U), np.float32)
        D32[:, : C - 1] = Dc
        # Round the tables outwards so that they remain bounds in float32.
        t32 = np.zeros((top.shape[0], 4, U), np.float32)
        b32 = np.zeros((bot.shape[0], 4, U), np.float32)
        t32[:, : C - 1] = top
        b32[:, : C - 1] = bot
        up = t32[:, : C - 1].astype(np.float64) < top
        t32[:, : C - 1][up] = np.nextafter(t32[:, : C - 1][up], np.float32(np.inf))
        dn = b32[:, : C - 1].astype(np.float64) > bot
        b32[:, : C - 1][dn] = np.nextafter(b32[:, : C - 1][dn], np.float32(-np.inf))
        # float32 margins drift from the exact ones by less than (n + 2) * 2**-24 * Am
        # (Am bounds every partial margin sum) plus the float64 error above; the band is
        # twice that, so a decision outside it is the same as the reference's.
        Am = float(np.abs(Dc).max(axis=1).sum(axis=0).max()) if U and C > 1 else 0.0
        s32 = np.float32((2 * n + 16) * 2.0**-24 * Am + slack)
        if float(s32) < (2 * n + 16) * 2.0**-24 * Am + slack:
            s32 = np.nextafter(s32, np.float32(np.inf))
        # Order of the working lists: bucket bounds on the best reachable margin, in units of
        # a typical per-trial margin.
        scale = float(np.median(np.abs(Dc))) if Dc.size else 1.0
        cut = (np.array([0.5, 1.0, 2.0]) * scale).astype(np.float32)
        return _Prepared(Lc, labels[open_].astype(np.int64), scorer.weights[open_].astype(np.int64), base, True,
                         D32, t32, b32, off, rmin, s32, cut, time.perf_counter() - t0)
    return _Prepared(Lc, labels[open_].astype(np.int64), scorer.weights[open_].astype(np.int64), base, False,
                     Dc, top, bot, off, rmin, slack, np.zeros(3, np.float32), time.perf_counter() - t0)


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


class _Scratch(threading.local):
    """Per-thread kernel buffers, reused across work items."""

    key = None


def exact_search(logits, labels, ks=None, *, incumbent_width: int = 8, n_threads: int | None = None,
                 _kernel: str = "auto", _stats: dict | None = None) -> dict[int, FusionResult]:
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

    prep = _prepare(logits, labels, scorer, kmax, _kernel)
    U = prep.L.shape[1]
    setup = (t_heur + prep.seconds) / len(ks)

    lock = threading.Lock()
    state = {}  # k -> [score, subset, rank of the work item that found it]
    items = []
    for k in ks:
        its = _work_items(n, k)
        h_score, h_subset = heur[k]
        h_rank = next(r for r, (pre, _) in enumerate(its) if tuple(h_subset[: len(pre)]) == pre)
        state[k] = [h_score, tuple(h_subset), h_rank]
        items += [(cost, k, r, pre) for r, (pre, cost) in enumerate(its)]
    items.sort(key=lambda t: -t[0])  # longest first, so that the threads finish together
    seconds = {k: setup for k in ks}
    nodes = {k: 0 for k in ks}
    scratch = _Scratch()

    def buffers():
        if scratch.key != (U, kmax):
            # One spare column: the branch-free compaction writes every entry somewhere and
            # parks the dropped ones at index U.
            Uc = U + 1
            if prep.fast:
                scratch.bufs = (np.empty((kmax + 1, Uc), np.int64), np.empty((kmax + 1, Uc), np.int64),
                                np.empty((kmax + 1, 4, Uc), np.float32), np.empty((4, Uc), np.float32),
                                np.empty(Uc, np.int8), np.empty((4, Uc), np.float32))
            else:
                scratch.bufs = (np.empty((kmax + 1, Uc), np.int64), np.empty((kmax + 1, Uc, C)))
            scratch.key = (U, kmax)
        return scratch.bufs

    def run(item):
        _, k, rank, pre = item
        t = time.thread_time()
        bufs = buffers()
        with lock:
            score, _, srank = state[k]
        # A subset of equal score in an earlier subtree would win the tie, so only later
        # subtrees may prune at equality.
        thr = score if rank > srank else score - 1
        best_subset = np.zeros(k, np.int64)
        prefix = np.array(pre, np.int64)
        if prep.fast:
            found, best, nn, nl = _bb_fast(prep.L, prep.y, prep.w, prep.D, prep.top, prep.bot, prep.off, prep.rmin,
                                           prep.slack, prep.cut,
                                           k, prefix, thr, prep.base, *bufs, best_subset)
            nn += nl
        else:
            found, best, nn = _bb_generic(prep.L, prep.y, prep.w, prep.top, prep.bot, prep.off, prep.slack, k,
                                          prefix, thr, prep.base, *bufs, best_subset)
        dt = time.thread_time() - t
        with lock:
            nodes[k] += int(nn)
            seconds[k] += dt
            if found:
                cand = tuple(int(x) for x in best_subset)
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
        # The kernels reproduce the reference sums; a disagreement would be a bug.
        check = _exact_score(logits, labels, scorer, subset)
        if check != score:  # pragma: no cover
            raise RuntimeError(f"exact search: k={k} kernel score {score} != reference {check}")
        out[k] = res
    if _stats is not None:
        _stats.update(open_utts=U, base=prep.base, fast=prep.fast, heuristic_seconds=t_heur,
                      prepare_seconds=prep.seconds, total_seconds=time.perf_counter() - t_start,
                      slack=float(prep.slack), table_bytes=int(prep.top.nbytes + prep.bot.nbytes),
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
