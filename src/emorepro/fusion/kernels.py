"""Compiled kernels of the late-fusion searches (the exact search of :mod:`.exact`, the beam of :mod:`.heuristics`).

Why hand-written loops: the search scores about ``C(n, k)`` candidate subsets, each on
hundreds of utterances, and no library offers "argmax of a sum of logits over every
subset"; numpy pays ~100 us per call, so the inner loops are numba-compiled.

Representation
--------------
Only the *contested* utterances are kept (those not decided for every subset).  For
utterance ``u``, trial ``i`` and wrong class ``j`` (the ``J = C - 1`` classes other than the
label, in class order) the margin ``d = l_i[u, y_u] - l_i[u, j]`` is quantised to

    a[u, j, i] = floor(s_u * d)            (int16, s_u > 0 per utterance)

with ``s_u`` chosen so that the sum of ``|a|`` over all trials stays below 2**15; every
partial sum the kernels form is a sum over distinct trials, so int16 never overflows.
For a subset ``S`` of size ``k`` the scaled reference margin (numpy's float64 sums, see
:func:`emorepro.fusion.reference.fused_predictions`) lies in ``(sum_S a - E, sum_S a + k + E)``,
where ``E`` bounds the float64 rounding of the logits' sums, of the margins and of their
scaling (``E < Bf``).  Hence, with ``v = min_j sum_S a[u, j, :]``:

* ``v >= Bf``: every margin is positive, the label is the unique maximum: *correct*;
* ``v <= -(k + Bf)``: a wrong class beats the label: *wrong*;
* otherwise the utterance is re-scored with the reference float64 sums (rare).

For fewer than four classes the margin rows are padded to three by repeating row 0
(``min`` is unchanged); more than four classes take the generic ``J`` loops.

Search
------
Depth-first over subsets in lexicographic order.  A node is a prefix (last trial ``t``)
with ``r`` trials left to pick from ``t+1..n-1``; it holds the list of its *open*
utterances and their partial sums ``P[o, j]``.  ``QB[rr, u, 0, j, i]`` is ``a[u, j, i]`` plus
the sum of the ``rr`` largest ``a[u, j, i+1:]`` (``QB[rr, u, 1]``: smallest), so one pass
over the list gives, for every child ``i``, the utterances that are correct in every
completion (*sure*), wrong in every completion (*lost*) or *open*: the child's bound is
``sure + open`` weight, and a child that cannot beat the incumbent is pruned (a later
subset in lexicographic order needs a strictly better score: the tie rule).  The same
pass appends each utterance to the lists of the children where it is open.

The last levels are not expanded.  Their leaves are counted by passes over the node's
list, vectorised over *lanes* (int16, stride 1): tables ``T[s][u, j, q]`` hold the sum of
``a[u, j, :]`` over the ``q``-th set of ``s + 1`` trials (lexicographic order, so the sets
after any trial are a suffix of the lanes).  A node with ``r <= 6`` picks left reads one
run of ``r``-set lanes for its children (or, for children below the table's ``cut``, one
run of ``(r-1)``-set lanes per child); a narrow node with seven picks left does so once
per child.  The tables of sets of 3-6 trials are capped in memory (:data:`SET_BYTES`;
for 30 trials x 5,531 utterances 133 MB in all), hence the cuts.  A pass counts the
not-wrong utterances of every leaf per class; a leaf whose count cannot beat the
incumbent is dropped (almost all are: the incumbents come from a beam search), the
others are scored exactly.

Sizes ``k > n / 2`` search the complement ``T`` of the subset (size ``n - k``) on the
negated margins from the root sums over all trials: the same leaves, a shallower tree.
Lexicographic order of ``T`` is the reverse of that of the subsets, so there a later
set wins a tie.

Why not stronger pruning: the bound counts every open utterance, as if each could pick
its own completion; on trials as correlated as the papers' it prunes only the small
subtrees, and the search stays close to scoring every leaf (it is exhaustive on the
benchmark's data).  The speed comes from scoring leaves in bulk.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numba
import numpy as np

# Vector loops over lanes start at a multiple of LANE (stride-1 loops from an aligned
# start vectorise without a scalar prologue).
LANE = 16
# |sum of quantised margins| over all trials stays below this (int16).
_QMAX = 32767
# Largest tolerated rounding band (units of a): scales are reduced to keep Bf small.
_EMAX = 1000.0
_BIG = np.int16(32767)
# unsigned constant indices (see _count)
_0, _1, _2 = np.uint64(0), np.uint64(1), np.uint64(2)
# Nodes one pick above the largest set table with at most this many children are scored
# by passes (one per child) instead of being expanded: the bound pass is not worth it.
FUSE_NARROW = 5


@numba.njit(cache=True, nogil=True)
def argmax_is(v, yy):
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
def extend_scores(S, logits, labels, weights, exclude):
    """Beam step (:mod:`.heuristics`): integer score of ``S + logits[i]`` for every trial
    ``i`` not excluded (-1 for excluded).  ``S``: (N, C) float64 sums of the parent subset."""
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
# Tables
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _suffix_bound_tables(A, n, kmax):
    """QB[rr, u, 0 / 1, j, i] = A[u, j, i] + sum of the rr largest / smallest A[u, j, i+1:n].

    A: (U, J, NW) int16 (lanes >= n are padding).  Returns two (max(kmax, 1), U, J, NW)
    int16 arrays; entries with rr > n - 1 - i are unused.
    """
    U, J, NW = A.shape
    R = max(kmax, 1)
    QB = np.zeros((R, U, 2, J, NW), np.int16)
    buf = np.empty(max(n, 1), np.int64)  # A[u, j, i+1:] sorted descending
    for u in range(U):
        for j in range(J):
            m = 0
            for i in range(n - 1, -1, -1):
                x = np.int64(A[u, j, i])
                QB[0, u, 0, j, i] = x
                QB[0, u, 1, j, i] = x
                hi = x
                lo = x
                for rr in range(1, min(m, R - 1) + 1):
                    hi += buf[rr - 1]
                    lo += buf[m - rr]
                    QB[rr, u, 0, j, i] = hi
                    QB[rr, u, 1, j, i] = lo
                # insert A[u, j, i] for the next (smaller) i
                p = m
                while p > 0 and buf[p - 1] < x:
                    buf[p] = buf[p - 1]
                    p -= 1
                buf[p] = x
                m += 1
    return QB


@numba.njit(cache=True, nogil=True)
def _sum_table(A, idx, out, off):
    """out[u, j, off + q] = sum over t of A[u, j, idx[q, t]] (pair or triple sums)."""
    U, J = A.shape[0], A.shape[1]
    Q, T = idx.shape
    for u in range(U):
        for j in range(J):
            a = A[u, j]
            o = out[u, j]
            for q in range(Q):
                s = 0
                for t in range(T):
                    s += a[idx[q, t]]
                o[off + q] = s


@numba.njit(cache=True, nogil=True)
def _extend_table(A, prev, poff, pstart, start, off, cut, n, out):
    """The sets starting with trial f are f + the smaller sets after f, a suffix of prev:
    out[u, j, off + start[f] + q] = A[u, j, f] + prev[u, j, poff + pstart[f + 1] + q]."""
    U, J = A.shape[0], A.shape[1]
    for u in range(U):
        for j in range(J):
            a = A[u, j]
            src = prev[u, j]
            dst = out[u, j]
            for f in range(cut, n):
                x = a[f]
                lo = poff + pstart[f + 1]
                o = off + start[f]
                for q in range(start[f + 1] - start[f]):
                    dst[o + q] = x + src[lo + q]


class Tables(NamedTuple):
    """Quantised margins of the contested utterances and the lane and bound tables.

    A NamedTuple so that the compiled search takes it whole (numba reads its fields by name).
    """

    T: tuple  # T[s]: (U, J3, W_s) int16 sums of a over each (s+1)-set of trials >= cut[s]
    off: np.ndarray  # (S,) lane of set 0 in T[s] (sets end at the last lane; T[0]: 0)
    cut: np.ndarray  # (S,) T[s] holds the sets of trials >= cut[s] (memory budget)
    start: np.ndarray  # (S, n+1) first set of T[s] whose smallest trial is >= i
    sets: tuple  # sets[s]: (n_sets, s+1) int64, the sets of T[s] in lexicographic order
    QB: np.ndarray  # (kmax, U, 2, J3, NW) int16 bounds: [rr, u, 0] QHI, [rr, u, 1] QLO
    L: np.ndarray  # (U, n, C) float64 logits (reference re-scoring)
    y: np.ndarray  # (U,) labels
    W: np.ndarray  # (C,) int64 class weights of the integer UAR score
    Bf: int  # rounding band (units of a)
    base: int  # score of the utterances correct in every subset
    n: int
    Ptot: np.ndarray  # (U, J3) int16 partial sums of the root (complement search: all trials)
    complement: bool  # the tables search the complement T of the subset (A holds -a)

    @property
    def A(self) -> np.ndarray:
        return self.T[0]  # (U, J3, NW): a[u, j, i]; J3 = max(J, min_rows)

    @property
    def U(self) -> int:
        return self.A.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for x in self.T) + self.QB.nbytes + self.L.nbytes


# Largest set tables (bytes) for sets of 3, 4, 5 and 6 trials; pairs are always tabulated.
# (Measured on the benchmark: larger triple tables or a table of 7-sets gain nothing.)
SET_BYTES = (32 * 2**20, 64 * 2**20, 32 * 2**20, 32 * 2**20)


class Margins(NamedTuple):
    """Quantised margins of the utterances left open by :func:`quantise` (the search's input)."""

    A: np.ndarray  # (U, J3, NW) int16: a[u, j, i] in lanes i < n, zero padding after
    L: np.ndarray  # (U, n, C) float64 logits of the open utterances (reference re-scoring)
    y: np.ndarray  # (U,) their labels
    W: np.ndarray  # (C,) int64 class weights of the integer UAR score
    Bf: int  # rounding band (units of a)
    base: int  # score of the utterances correct in every subset
    n: int

    @property
    def U(self) -> int:
        return self.A.shape[0]


def quantise(logits: np.ndarray, labels: np.ndarray, class_weight: np.ndarray, min_rows: int = 3) -> Margins:
    """Quantise the margins and drop the utterances decided for every subset.

    logits: (n, N, C) float64, finite; labels: (N,) int64; class_weight: (C,) int64.
    ``min_rows``: margin rows are padded (repeating row 0) to at least this many; 3 is
    the vectorised path, more forces the generic-J loops (tests).  Cheap (a few passes
    over the logits): the search's cost estimate reads the number of open utterances
    before anything expensive is built.
    """
    n, N, C = logits.shape
    J = C - 1
    if J == 0:  # one class: every utterance is always correct
        always = np.ones(N, bool)
        open_ = np.zeros(0, np.int64)
        Aq = np.zeros((n, 0, max(min_rows, 3)))
        Bf = 2
    else:
        # d[i, u, j] = l_i[u, y] - l_i[u, j] over the wrong classes j (class order)
        ly = np.take_along_axis(logits, labels[None, :, None], axis=2)
        mask = np.ones((N, C), bool)
        mask[np.arange(N), labels] = False
        D = (ly - logits)[:, mask].reshape(n, N, J)
        Am = np.abs(D).sum(axis=0).max(axis=1)  # (N,) bounds every partial margin sum
        Lmag = np.abs(logits).max(axis=2).sum(axis=0)  # (N,) bounds every partial logit sum
        # Rounding of the reference sums (sequential float64, 2 sums of <= n terms), of the
        # margins and of the scaling, per unit of scale; generous constant.
        e = (4 * n + 16) * 2.0**-52 * (Lmag + Am)
        safe = np.where(Am > 0, Am, 1.0)
        scale = np.where(Am > 0, (_QMAX - 2 * n - 64) / safe, 1.0)
        scale = np.minimum(scale, _EMAX / np.maximum(e, 1e-300))
        Bf = int(math.ceil(float((scale * e).max()))) + 2 if N else 2
        Aq = np.floor(D * scale[None, :, None])  # (n, N, J)
        # Decided for every subset: each trial's margins are all >= Bf (any sum of them is),
        # or one wrong class has a <= -(Bf + 1) in every trial (sums of k: <= -(k + Bf)).
        always = (Aq.min(axis=0) >= Bf).all(axis=1)
        never = (Aq.max(axis=0) <= -(Bf + 1)).any(axis=1)
        open_ = np.flatnonzero(~always & ~never)
        Aq = Aq[:, open_, :]
        if J < min_rows:  # pad by repeating row 0: the min over j is unchanged
            Aq = np.concatenate([Aq] + [Aq[:, :, :1]] * (min_rows - J), axis=2)
    U = len(open_)
    J3 = Aq.shape[2]
    NW = max(LANE, -(-n // LANE) * LANE)
    A = np.zeros((U, J3, NW), np.int16)
    A[:, :, :n] = Aq.transpose(1, 2, 0)
    return Margins(A=A, L=np.ascontiguousarray(logits[:, open_, :].transpose(1, 0, 2)),
                   y=labels[open_].astype(np.int64), W=np.asarray(class_weight, np.int64), Bf=Bf,
                   base=int(class_weight[labels[always]].sum()), n=n)


def build_tables(m: Margins, kmax: int, set_cuts=None) -> Tables:
    """The lane and bound tables of the search for sizes up to ``kmax``.

    Sets of 3, 4 and 5 trials are tabulated for the largest trial range ``cut..n-1`` that
    fits :data:`SET_BYTES` (30 trials x 5,531 utterances: triples of trials 8-29, 30 MB;
    quadruples of trials 12-29, 60 MB; quintuples of trials 17-29, 25 MB; sextuples of
    trials 18-29, 18 MB); the sets with smaller trials serve only nodes that are rare at
    any k.  ``set_cuts`` sets the cuts of sizes 3, 4, ... directly (tests; missing
    entries: from the budget).
    """
    return Tables(**_lane_tables(m.A, m.n, kmax, set_cuts), L=m.L, y=m.y, W=m.W, Bf=m.Bf, base=m.base, n=m.n,
                  Ptot=np.zeros((m.U, m.A.shape[1]), np.int16), complement=False)


def complement_tables(t: Tables, kmax: int, set_cuts=None) -> Tables:
    """Tables of the search over complements: a subset ``S`` of size ``k`` is the complement
    of a set ``T`` of size ``n - k``, and ``sum_S a = sum_all a - sum_T a``, so the same
    search over ``T`` runs on ``-a`` from the root partial sums ``sum_all a``.  Cheaper for
    ``k > n / 2``: the search tree of the smaller size is shallower and its last levels
    fan out wider.  (Lexicographic order of ``S`` is the reverse of that of ``T``.)
    """
    n = t.n
    neg = np.zeros_like(t.A)
    neg[:, :, :n] = -t.A[:, :, :n]
    fields = {f: getattr(t, f) for f in ("L", "y", "W", "Bf", "base", "n")}
    return Tables(**_lane_tables(neg, n, kmax, set_cuts), **fields,
                  Ptot=t.A[:, :, :n].sum(axis=2, dtype=np.int64).astype(np.int16), complement=True)


def _set_table(A, n, size, max_bytes, cut, prev=None):
    """Sums of A over every ``size``-set of trials >= cut (lexicographic), at the end of
    the lanes; ``cut`` defaults to the smallest that keeps the table within max_bytes.
    ``prev``: the table of (size-1)-sets, whose suffixes give these sums by one add."""
    U, J3, _ = A.shape
    if cut is None:
        cut = 0
        while cut < n and math.comb(n - cut, size) * max(U, 1) * J3 * 2 > max_bytes:
            cut += 1
    cut = min(max(int(cut), 0), n)
    sets = np.array(list(itertools.combinations(range(cut, n), size)), np.int64).reshape(-1, size)
    width = max(LANE, -(-len(sets) // LANE) * LANE)
    table = np.zeros((U, J3, width), np.int16)
    offset = width - len(sets)
    start = np.searchsorted(sets[:, 0], np.arange(n + 1)).astype(np.int64)
    if prev is not None and prev[2] <= cut + 1:
        _extend_table(A, prev[0], prev[1], prev[3], start, offset, cut, n, table)
    else:
        _sum_table(A, sets, table, offset)
    return table, offset, cut, start, sets


def _lane_tables(A, n, kmax, set_cuts) -> dict:
    """Lane tables of the quantised margins A (U, J3, NW): A itself (single trials),
    pairs, and sets of 3-5 trials within SET_BYTES; and the bound tables."""
    tables = [(A, 0, 0, np.minimum(np.arange(n + 1), n).astype(np.int64), np.arange(n, dtype=np.int64)[:, None])]
    tables.append(_set_table(A, n, 2, np.inf, 0, tables[-1]))
    set_cuts = list(set_cuts or ()) + [None] * (len(SET_BYTES) - len(set_cuts or ()))
    for size, (max_bytes, cut) in enumerate(zip(SET_BYTES, set_cuts), start=3):
        tables.append(_set_table(A, n, size, max_bytes, cut, tables[-1]))
    T, off, cut, start, sets = zip(*tables)
    return dict(T=tuple(T), off=np.array(off, np.int64), cut=np.array(cut, np.int64), start=np.stack(start),
                sets=tuple(sets), QB=_suffix_bound_tables(A, n, kmax))


class Scratch(NamedTuple):
    """Per-thread working memory of :func:`branch_and_bound` (reused across work items)."""

    O: np.ndarray  # (d, U+1) int32: utterances of the list at each depth
    P: np.ndarray  # (d, U+1, J3) int16: their partial sums
    SU: np.ndarray  # (d, C, NW): sure members per class and child
    OP: np.ndarray  # (d, C, NW): open members per class and child
    CL: np.ndarray  # (d, NW, U+1) int32: children's lists (parent positions)
    CN: np.ndarray  # (d, NW) int32: their lengths
    f: np.ndarray  # (NW,) int32: open flags of one utterance
    NL: np.ndarray  # (C, NX): not-wrong counts of leaves per lane
    NLc: np.ndarray  # (C, n, NX): same, per child x lane
    cb: np.ndarray  # (S, n) int64: first lane of each child's sets
    tmp: np.ndarray  # (NX,) int16: generic-J minima
    tmp2: np.ndarray  # (NX,) int16
    cur: np.ndarray  # (d,) int64: next child at each depth
    mm: np.ndarray  # (d,) int64: list length at each depth
    bb: np.ndarray  # (d,) int64: sure weight at each depth
    sub: np.ndarray  # (n+1,) int64: the current subset

    @classmethod
    def allocate(cls, t: Tables, kmax: int) -> Scratch:
        """Buffers for searches of depth up to ``kmax`` on tables ``t``."""
        U, J3, NW = t.A.shape
        C = t.W.shape[0]
        NX = max(x.shape[2] for x in t.T)  # widest lane table
        S = len(t.T)
        cnt = np.int16 if U < _QMAX else np.int32  # per-class counts of list members
        d = kmax + 1
        n1 = max(t.n, 1)
        return cls(
            O=np.zeros((d, U + 1), np.int32), P=np.zeros((d, U + 1, J3), np.int16),
            SU=np.zeros((d, C, NW), cnt), OP=np.zeros((d, C, NW), cnt),
            CL=np.zeros((d, NW, U + 1), np.int32), CN=np.zeros((d, NW), np.int32), f=np.zeros(NW, np.int32),
            NL=np.zeros((C, NX), cnt), NLc=np.zeros((C, n1, NX), cnt), cb=np.zeros((S, n1), np.int64),
            tmp=np.zeros(NX, np.int16), tmp2=np.zeros(NX, np.int16),
            cur=np.zeros(d, np.int64), mm=np.zeros(d, np.int64), bb=np.zeros(d, np.int64),
            sub=np.zeros(n1 + 1, np.int64),
        )


class Search(NamedTuple):
    """One work item of :func:`branch_and_bound`: the best set of size ``k`` below ``prefix``.

    ``tables`` and ``scratch`` are shared by the items of one thread; ``kband`` is the
    size of the subsets scored (``n - k`` for complement tables, else ``k``; it sets the
    rounding band); only a score ``> thr`` counts; the winner is written to ``best``
    (int64, length ``k``).
    """

    tables: Tables
    scratch: Scratch
    kband: int
    k: int
    prefix: np.ndarray  # (p,) int64, sorted, p < k
    thr: int
    best: np.ndarray


# --------------------------------------------------------------------------------------
# Passes over a list (vectorised over the lanes: children or pairs)
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _min_rows(R, Pd, o, A, u, c1, c2, b0, W, out):
    """Generic-J path: out[q] = min_j(P[o, j] + A[u, j, c1] + A[u, j, c2] + R[j, q]) for
    b0 <= q < W (no A term for a column < 0)."""
    out[b0:W] = _BIG
    for j in range(R.shape[0]):
        pj = np.int64(Pd[o, j])
        if c1 >= 0:
            pj += A[u, j, c1]
        if c2 >= 0:
            pj += A[u, j, c2]
        p16 = np.int16(pj)
        rj = R[j]
        for q in range(np.uint64(b0), np.uint64(W)):
            out[q] = min(out[q], np.int16(p16 + rj[q]))


@numba.njit(cache=True, nogil=True)
def _count(Od, Pd, m, cls, T, lost, NL, b0, tmp, A, col):
    """NL[c, q] for lanes q >= b0: number of class-c list members with
    ``min_j(P[o, j] + A[u, j, col] + T[u, j, q]) > lost`` (not wrong in leaf q; no ``col``
    term if ``col < 0``)."""
    J, NW = T.shape[1], T.shape[2]
    NL[:, b0:NW] = 0
    for o in range(m):
        # Unsigned indices and no per-utterance array views: numba then skips the
        # negative-index test and the view set-up, and the lane loop vectorises.
        u = np.uint64(Od[o])
        c = np.uint64(cls[u])
        if J == 3:
            p0 = Pd[o, 0]
            p1 = Pd[o, 1]
            p2 = Pd[o, 2]
            if col >= 0:
                p0 = np.int16(p0 + A[u, 0, col])
                p1 = np.int16(p1 + A[u, 1, col])
                p2 = np.int16(p2 + A[u, 2, col])
            for q in range(np.uint64(b0), np.uint64(NW)):
                x = min(min(np.int16(p0 + T[u, _0, q]), np.int16(p1 + T[u, _1, q])), np.int16(p2 + T[u, _2, q]))
                NL[c, q] += x > lost
        else:
            row = NL[c]
            _min_rows(T[u], Pd, o, A, u, col, -1, b0, NW, tmp)
            for q in range(np.uint64(b0), np.uint64(NW)):
                row[q] += tmp[q] > lost


@numba.njit(cache=True, nogil=True)
def _count_child_lanes(Od, Pd, m, cls, A, PA, i_lo, i_hi, qb, lost, NL3, tmp, col):
    """NL3[c, i, q] for children i_lo <= i < i_hi and lanes q >= qb[i] (of the pair or
    triple table PA): number of class-c list members with
    ``min_j(P + A[u, j, col] + A[u, j, i] + PA[u, j, q]) > lost`` (no ``col`` term if
    ``col < 0``)."""
    J, NP = PA.shape[1], PA.shape[2]
    for i in range(i_lo, i_hi):
        NL3[:, i, qb[i]:NP] = 0
    for o in range(m):
        u = np.uint64(Od[o])
        c = np.uint64(cls[u])
        if J == 3:
            P0 = Pd[o, 0]
            P1 = Pd[o, 1]
            P2 = Pd[o, 2]
            if col >= 0:
                P0 += A[u, 0, col]
                P1 += A[u, 1, col]
                P2 += A[u, 2, col]
            for i in range(np.uint64(i_lo), np.uint64(i_hi)):
                p0 = np.int16(P0 + A[u, _0, i])
                p1 = np.int16(P1 + A[u, _1, i])
                p2 = np.int16(P2 + A[u, _2, i])
                for q in range(np.uint64(qb[i]), np.uint64(NP)):
                    x = min(min(np.int16(p0 + PA[u, _0, q]), np.int16(p1 + PA[u, _1, q])), np.int16(p2 + PA[u, _2, q]))
                    NL3[c, i, q] += x > lost
        else:
            rows = NL3[c]
            for i in range(i_lo, i_hi):
                b0 = qb[i]
                _min_rows(PA[u], Pd, o, A, u, i, col, b0, NP, tmp)
                row = rows[i]
                for q in range(np.uint64(b0), np.uint64(NP)):
                    row[q] += tmp[q] > lost


@numba.njit(cache=True, nogil=True)
def _bounds(Od, Pd, m, cls, QB, rr, lost, Bf, SU, OP, i_lo, i_hi, CL, CN, f, tmp, tmp2, A):
    """Per child i (lanes >= i_lo // LANE * LANE): SU/OP[c, i] = sure/open class-c members
    of the child; CL[i, :CN[i]] = positions of the child's open members."""
    J, NW = QB.shape[3], QB.shape[4]
    b0 = (i_lo // LANE) * LANE
    SU[:, b0:NW] = 0
    OP[:, b0:NW] = 0
    CN[:] = 0
    r_ = np.uint64(rr)
    for o in range(m):
        u = np.uint64(Od[o])
        c = np.uint64(cls[u])
        if J == 3:
            p0 = Pd[o, 0]
            p1 = Pd[o, 1]
            p2 = Pd[o, 2]
            for i in range(np.uint64(b0), np.uint64(NW)):
                h = min(min(np.int16(p0 + QB[r_, u, _0, _0, i]), np.int16(p1 + QB[r_, u, _0, _1, i])),
                        np.int16(p2 + QB[r_, u, _0, _2, i]))
                lo = min(min(np.int16(p0 + QB[r_, u, _1, _0, i]), np.int16(p1 + QB[r_, u, _1, _1, i])),
                         np.int16(p2 + QB[r_, u, _1, _2, i]))
                s = lo >= Bf
                q = (h > lost) & (lo < Bf)
                SU[c, i] += s
                OP[c, i] += q
                f[i] = q
        else:
            su = SU[c]
            op = OP[c]
            _min_rows(QB[rr, u, 0], Pd, o, A, u, -1, -1, b0, NW, tmp)
            _min_rows(QB[rr, u, 1], Pd, o, A, u, -1, -1, b0, NW, tmp2)
            for i in range(np.uint64(b0), np.uint64(NW)):
                s = tmp2[i] >= Bf
                q = (tmp[i] > lost) & (tmp2[i] < Bf)
                su[i] += s
                op[i] += q
                f[i] = q
        for i in range(i_lo, i_hi):  # branch-free append
            CL[i, CN[i]] = o
            CN[i] += f[i]


@numba.njit(cache=True, nogil=True)
def _correct_reference(L, y, sub, p, u, comp):
    """Reference test for one utterance: float64 sums in increasing trial order, argmax.

    The subset is ``sub[:p]`` (sorted), or with ``comp`` the trials not in it."""
    n, C = L.shape[1], L.shape[2]
    v = np.zeros(C)
    if comp:
        t = 0
        for i in range(n):
            if t < p and sub[t] == i:
                t += 1
                continue
            for c in range(C):
                v[c] += L[u, i, c]
    else:
        for t in range(p):
            for c in range(C):
                v[c] += L[u, sub[t], c]
    return argmax_is(v, y[u])


@numba.njit(cache=True, nogil=True)
def _leaf_score(Od, Pd, m, A, col, col2, T, q, cls, W, Bf, lost, L, y, sub, k, comp):
    """Exact score (without the node's sure weight) of the leaf ``sub[:k]``: list Od/Pd plus
    columns ``col`` and ``col2`` of A (those >= 0) plus lane ``q`` of T."""
    J = A.shape[1]
    sc = 0
    for o in range(m):
        u = Od[o]
        v = 1 << 30
        for j in range(J):
            x = np.int64(Pd[o, j]) + T[u, j, q]
            if col >= 0:
                x += A[u, j, col]
            if col2 >= 0:
                x += A[u, j, col2]
            v = min(v, x)
        if v >= Bf:  # noqa: SIM114  (sure: no reference re-scoring)
            sc += W[cls[u]]
        elif v > lost and _correct_reference(L, y, sub, k, u, comp):
            sc += W[cls[u]]
    return sc


# --------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def branch_and_bound(job):
    """Best set of size ``job.k`` among those starting with ``job.prefix`` (a :class:`Search`).

    Only a score ``> job.thr`` counts; returns (found, best score, nodes + leaves visited),
    and the best set in ``job.best`` when found: the first in lexicographic order, or with
    complement tables (the set is the complement of the subset, whose size ``job.kband``
    sets the rounding band) the last, i.e. the lexicographically first subset.
    """
    tabs, scr = job.tables, job.scratch
    T, off, cut, start, sets, QB = tabs.T, tabs.off, tabs.cut, tabs.start, tabs.sets, tabs.QB
    L, y, W, Bf, Ptot, comp, base0 = tabs.L, tabs.y, tabs.W, tabs.Bf, tabs.Ptot, tabs.complement, tabs.base
    O, P, SU, OP, CL, CN, f, NL, NLc, cb = scr.O, scr.P, scr.SU, scr.OP, scr.CL, scr.CN, scr.f, scr.NL, scr.NLc, scr.cb
    tmp, tmp2, cur, mm, bb, sub = scr.tmp, scr.tmp2, scr.cur, scr.mm, scr.bb, scr.sub
    kband, k, prefix, thr, best_subset = job.kband, job.k, job.prefix, job.thr, job.best
    A = T[0]
    U, J, NW = A.shape
    n = L.shape[1]
    C = W.shape[0]
    S = len(T)
    cls = y
    lost = np.int16(-(kband + Bf))
    bf = np.int16(Bf)
    p0 = prefix.shape[0]
    for t in range(p0):
        sub[t] = prefix[t]
    for z in range(S):  # first lane of the sets after trial i
        for i in range(n):
            cb[z, i] = ((start[z, min(max(i + 1, cut[z]), n)] + off[z]) // LANE) * LANE
    # Root: the list of the prefix (as the child prefix[-1] of prefix[:-1]).
    m = 0
    base = base0
    for u in range(U):
        if p0 == 0:
            for j in range(J):
                P[0, m, j] = Ptot[u, j]
            O[0, m] = u
            m += 1
            continue
        t_last = prefix[p0 - 1]
        rr = k - p0
        minhi = 1 << 30
        minlo = 1 << 30
        for j in range(J):
            s = np.int64(Ptot[u, j])
            for t in range(p0 - 1):
                s += A[u, j, prefix[t]]
            P[0, m, j] = s + A[u, j, t_last]
            minhi = min(minhi, s + QB[rr, u, 0, j, t_last])
            minlo = min(minlo, s + QB[rr, u, 1, j, t_last])
        if minhi <= lost:
            continue
        if minlo >= Bf:
            base += W[cls[u]]
            continue
        O[0, m] = u
        m += 1
    mm[0] = m
    bb[0] = base
    found = False
    found_sc = thr
    best = thr
    nodes = 1
    d = 0
    fresh = True
    while d >= 0:
        p = p0 + d
        r = k - p
        m = mm[d]
        base = bb[d]
        i_lo = sub[p - 1] + 1 if p > 0 else 0
        i_hi = n - r + 1
        # Nodes near the leaves are not expanded: their leaves are counted by passes over
        # the list, vectorised over lanes.  A node with r <= S picks left: its children
        # >= cut[r-1] in one run of r-set lanes, the others child x (r-1)-set lanes.  A
        # narrow node with S + 1 picks left: the same for each child g (column g added).
        fuse = r <= S and (r == 1 or i_lo >= cut[r - 1] or i_lo + 1 >= cut[r - 2])
        outer = (r == S + 1 and i_hi - i_lo <= FUSE_NARROW
                 and (i_lo + 1 >= cut[S - 1] or i_lo + 2 >= cut[S - 2]))
        if fuse or outer:
            g_lo, g_hi = (i_lo, i_hi) if outer else (-1, 0)
            for g in range(g_lo, g_hi):
                if g >= 0:
                    sub[p] = g
                    pp, rr, lo_, hi_ = p + 1, r - 1, g + 1, i_hi + 1
                else:
                    pp, rr, lo_, hi_ = p, r, i_lo, i_hi
                z = rr - 1  # table of rr-sets
                split = max(lo_, cut[z])  # children >= split: flat rr-set lanes
                if lo_ < split:
                    _count_child_lanes(O[d], P[d], m, cls, A, T[z - 1], lo_, min(split, hi_), cb[z - 1], lost,
                                       NLc, tmp, g)
                if split < hi_:
                    _count(O[d], P[d], m, cls, T[z], lost, NL, ((start[z, split] + off[z]) // LANE) * LANE, tmp,
                           A, g)
                for i in range(lo_, hi_):
                    flat = i >= split
                    if flat:  # the rr-sets whose smallest trial is i
                        qa, qz, zz, lane = start[z, i], start[z, i + 1], z, off[z]
                    else:  # child i and an (rr-1)-set after it
                        qa, qz, zz, lane = start[z - 1, i + 1], sets[z - 1].shape[0], z - 1, off[z - 1]
                    for q in range(qa, qz):
                        nodes += 1
                        hi = base
                        for c in range(C):
                            hi += W[c] * (NL[c, q + lane] if flat else NLc[c, i, q + lane])
                        if hi <= best:
                            continue
                        # the leaf: sub[:pp] + (i if not flat) + sets[zz][q]
                        e0 = pp if flat else pp + 1
                        sub[pp] = i
                        for e in range(zz + 1):
                            sub[e0 + e] = sets[zz][q, e]
                        sc = base + _leaf_score(O[d], P[d], m, A, -1 if flat else i, g, T[zz], q + lane, cls, W,
                                                Bf, lost, L, y, sub, k, comp)
                        if sc > best:
                            # complement search: a later set with the same score wins the tie
                            best = sc - 1 if comp else sc
                            found_sc = sc
                            found = True
                            for t in range(k):
                                best_subset[t] = sub[t]
            d -= 1
            fresh = False
            continue
        if fresh:
            _bounds(O[d], P[d], m, cls, QB, r - 1, lost, bf, SU[d], OP[d], i_lo, i_hi, CL[d], CN[d],
                    f, tmp, tmp2, A)
            cur[d] = i_lo
        # Next child whose bound beats the incumbent.
        i = cur[d]
        sure_w = 0
        while i < i_hi:
            sure_w = 0
            bound = base
            for c in range(C):
                sure_w += W[c] * SU[d, c, i]
                bound += W[c] * OP[d, c, i]
            if bound + sure_w > best:
                break
            i += 1
        if i >= i_hi:
            d -= 1
            fresh = False
            continue
        cur[d] = i + 1
        sub[p] = i
        m2 = CN[d, i]
        for q in range(m2):
            o = CL[d, i, q]
            u = O[d, o]
            O[d + 1, q] = u
            for j in range(J):
                P[d + 1, q, j] = P[d, o, j] + A[u, j, i]
        nodes += 1
        d += 1
        mm[d] = m2
        bb[d] = base + sure_w
        fresh = True
    return found, found_sc, nodes
