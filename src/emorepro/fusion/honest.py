"""Honest subset selection: the subset that scores an utterance never saw that utterance's label.

Picking the subset on the test labels (the papers' "best of C(n, k)") is an optimistic
figure.  Both selections here choose a subset per fold without the labels of the
utterances that subset then predicts, score each fold's test utterances with its own
subset, and pool the predictions over folds:

* :func:`cross_fold_selection`: chosen on the *other folds'* test utterances;
* :func:`validation_selection`: chosen on the fold's *own validation* utterances.  Under
  ``lospk10`` and ``loso5_val`` the validation speakers of one fold are the test speakers
  of another, so the validation rows of all folds together cover (nearly) every test
  utterance: a selection on those rows pooled would see the labels it is scored on.  Per
  fold, the validation utterances are disjoint from the test utterances (checked when
  utterance ids are given).
"""
from __future__ import annotations

import time

import numpy as np

from .exact import exact_search
from .heuristics import beam_search, greedy_forward
from .reference import HonestResult, _check_inputs, fused_predictions, score_predictions


def _select(logits, labels, k, method, beam_width, n_threads, max_seconds, progress):
    if method == "exact":
        return exact_search(logits, labels, [k], n_threads=n_threads, max_seconds=max_seconds, progress=progress)[k]
    if method == "beam":
        return beam_search(logits, labels, width=beam_width, ks=[k])[k]
    if method == "greedy":
        return greedy_forward(logits, labels, ks=[k])[k]
    raise ValueError(f"unknown selection method {method!r} (exact, beam, greedy)")


def _per_fold(plan, test_logits, test_labels, k, how: dict, method: str, t0: float) -> HonestResult:
    """For each ``(key, selection logits, selection labels, test rows)`` of ``plan``: choose the
    size-``k`` subset on the selection rows, predict the test rows with it; pool and score."""
    pred = np.empty(len(test_labels), np.int64)
    subsets, sel = {}, {}
    for key, logits, labels, on_test in plan:
        chosen = _select(logits, labels, k, **how)
        subsets[key] = chosen.subset
        sel[key] = chosen.uar
        pred[on_test] = fused_predictions(test_logits[:, on_test], chosen.subset)
    s = score_predictions(pred, test_labels, test_logits.shape[2])
    return HonestResult(k=k, uar=s["uar"], war=s["war"], confusion=s["confusion"], subsets=subsets,
                        selection_uar=sel, seconds=time.perf_counter() - t0, method=method)


def cross_fold_selection(logits, labels, folds, k: int, *, method: str = "exact", beam_width: int = 8,
                         n_threads: int | None = None, max_seconds: float | None = None,
                         progress: bool | None = None) -> HonestResult:
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
    max_seconds, progress : of each exact search (:func:`.exact.exact_search`)

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
    plan = ((f, logits[:, folds != f], labels[folds != f], folds == f) for f in fold_ids)
    how = {"method": method, "beam_width": beam_width, "n_threads": n_threads, "max_seconds": max_seconds,
           "progress": progress}
    return _per_fold(plan, logits, labels, k, how, "crossfold", t0)


def validation_selection(val_logits, val_labels, test_logits, test_labels, k: int, *, val_folds=None,
                         test_folds=None, val_utt_ids=None, test_utt_ids=None, method: str = "exact",
                         beam_width: int = 8, n_threads: int | None = None, max_seconds: float | None = None,
                         progress: bool | None = None) -> HonestResult:
    """Choose the size-``k`` subset on validation utterances, score it on test utterances.

    With folds (what :func:`emorepro.fusion.run_fusion` passes), each fold's subset is
    chosen on that fold's validation rows and predicts that fold's test rows; the
    predictions are pooled.  Without folds, the two arrays are one validation and one test
    split (honest only if they share no utterance: never pass validation rows pooled over
    folds whose validation speakers are other folds' test speakers).

    Parameters
    ----------
    val_logits : array, shape (n_trials, n_val, n_classes)
    val_labels : array of int, shape (n_val,)
    test_logits : array, shape (n_trials, n_test, n_classes)
    test_labels : array of int, shape (n_test,)
    k : int
    val_folds, test_folds : array, shape (n_val,) / (n_test,), optional
        Fold of each row (both or neither).  Every fold with test rows needs validation rows.
    val_utt_ids, test_utt_ids : sequence of str, optional
        When given, a fold whose validation and test rows share an utterance is an error.
    method : {"exact", "beam", "greedy"}
    max_seconds, progress : of each exact search (:func:`.exact.exact_search`)

    Returns
    -------
    HonestResult (``method="validation"``; ``subsets``: fold -> subset, or ``{"val": subset}``
    without folds)
    """
    val_logits, val_labels = _check_inputs(val_logits, val_labels)
    test_logits, test_labels = _check_inputs(test_logits, test_labels)
    if val_logits.shape[0] != test_logits.shape[0] or val_logits.shape[2] != test_logits.shape[2]:
        raise ValueError(f"val logits {val_logits.shape} and test logits {test_logits.shape} disagree "
                         "on the number of trials or classes")
    if (val_folds is None) != (test_folds is None):
        raise ValueError("give both val_folds and test_folds, or neither")
    t0 = time.perf_counter()
    if val_folds is None:
        val_folds = np.zeros(len(val_labels), np.int64)
        test_folds = np.zeros(len(test_labels), np.int64)
        single = True
    else:
        val_folds, test_folds = np.asarray(val_folds), np.asarray(test_folds)
        if val_folds.shape != val_labels.shape or test_folds.shape != test_labels.shape:
            raise ValueError(f"folds must have shapes {val_labels.shape} and {test_labels.shape}, "
                             f"got {val_folds.shape} and {test_folds.shape}")
        single = False

    def plan():
        for f in dict.fromkeys(test_folds.tolist()):  # first-appearance order
            on_val, on_test = val_folds == f, test_folds == f
            if not on_val.any():
                raise ValueError(f"fold {f!r} has test rows but no validation rows: no honest validation selection")
            if val_utt_ids is not None and test_utt_ids is not None:
                test_ids = {test_utt_ids[i] for i in np.flatnonzero(on_test)}
                shared = [val_utt_ids[i] for i in np.flatnonzero(on_val) if val_utt_ids[i] in test_ids]
                if shared:
                    raise ValueError(f"fold {f!r}: utterance {shared[0]!r} is both a validation and a test row "
                                     f"({len(shared)} such): selecting on it would see a label it is scored on")
            yield "val" if single else f, val_logits[:, on_val], val_labels[on_val], on_test

    how = {"method": method, "beam_width": beam_width, "n_threads": n_threads, "max_seconds": max_seconds,
           "progress": progress}
    return _per_fold(plan(), test_logits, test_labels, k, how, "validation", t0)
