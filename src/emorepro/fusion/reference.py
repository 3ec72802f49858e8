"""Reference semantics of late fusion: results, input checks and the scoring every search reproduces.

* Logits are converted to float64.  The fused prediction of a subset is
  ``np.argmax(logits[list(sorted_subset)].sum(axis=0), axis=1)``; numpy sums along axis
  0 sequentially in index order (pairwise summation only happens when a trial is a
  single number, where argmax is trivially 0), so the reference sums are the float64
  sums in increasing trial order.  Ties between classes go to the lowest class index.
* UAR = mean over the classes present in ``labels`` of ``correct_c / n_c``
  (``sklearn.metrics.recall_score(average="macro", labels=np.unique(labels))``);
  WAR = accuracy.  Subsets are compared on the integer score
  ``sum_c correct_c * (L / n_c)`` with ``L = lcm(n_c)`` (:class:`_Scorer`), which orders
  subsets exactly like UAR without any floating-point rounding.
* Ties between subsets of equal UAR go to the lexicographically smallest sorted index
  tuple (the first one ``itertools.combinations`` would produce).

(Own code rather than ``sklearn.metrics`` because the searches need the exact integer
score; :func:`score_predictions` agrees with scikit-learn, which the tests check.)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIE_RULES = "class ties -> lowest class index; UAR ties -> lexicographically smallest subset"


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
        Chosen subset per fold: for cross-fold selection chosen on the other folds' test
        utterances, for validation selection on the fold's own validation utterances
        (a single validation split without folds: under the key ``"val"``).
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
