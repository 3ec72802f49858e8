"""Entry points: the fusion table of the Snakemake rule (:func:`run_fusion`) and the CLI's npz search."""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..io import InputError
from .budget import (
    DEFAULT_MAX_HOURS,
    SearchTooLarge,
    check_budget,
    format_seconds,
    normalise_ks,
)
from .exact import exact_search, search_estimates
from .heuristics import beam_search, full_integration, greedy_forward
from .honest import cross_fold_selection, validation_selection
from .reference import TIE_RULES, FusionResult
from .trials import load_npz, load_trials

log = logging.getLogger(__name__)

HEURISTICS = ("greedy", "beam")
HONEST_METHODS = ("exact", "beam", "greedy")


def _atomic_write_text(path, text: str) -> None:
    """Write ``text`` to a sibling temporary file, then ``os.replace`` it onto ``path``."""
    from ..io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def search_npz(npz_path, ks=None, out_json=None, *, n_threads: int | None = None, max_seconds: float | None = None,
               progress: bool | None = None) -> dict:
    """Exact search on logits stored in an ``.npz`` file.

    Parameters
    ----------
    npz_path : path
        Holds ``logits`` (n_trials, n_utts, n_classes) and ``labels`` (n_utts,), and
        optionally ``utt_ids`` (n_trials, n_utts) and ``trials`` (see
        :func:`.trials.load_npz`): with ``utt_ids`` every trial's utterance order is checked.
    ks : iterable of int, ``"all"`` or None (all sizes)
    out_json : path, optional
        Written atomically: ``{"source", "trials", "utt_ids_checked", "n_trials", "n_utts",
        "n_classes", "results": {k: {uar, war, subset, seconds, n_evaluated, confusion}}}``.
    max_seconds, progress : see :func:`.exact.exact_search` (sizes over the budget are
        refused before any search).

    Returns
    -------
    dict, the JSON document.

    Raises
    ------
    InputError
        Naming the file: unreadable, missing or misshapen arrays, trials in different
        utterance orders, bad labels or sizes, or sizes over the time budget.
    """
    data = load_npz(npz_path)
    try:
        res = exact_search(data.logits, data.labels, ks, n_threads=n_threads, max_seconds=max_seconds,
                           progress=progress)
    except SearchTooLarge as e:
        raise SearchTooLarge(f"{npz_path}: {e}") from None
    except ValueError as e:  # input checks of the search (shapes, labels, NaN, sizes)
        raise InputError(f"{npz_path}: {e}") from None
    logits = data.logits
    doc = {
        "source": str(npz_path),
        "trials": data.names,
        "utt_ids_checked": bool(data.utt_ids),
        "n_trials": int(logits.shape[0]),
        "n_utts": int(logits.shape[1]),
        "n_classes": int(logits.shape[2]),
        "tie_rules": TIE_RULES,
        "results": {str(k): {"uar": r.uar, "war": r.war, "subset": list(r.subset), "seconds": r.seconds,
                             "n_evaluated": r.n_evaluated, "confusion": r.confusion.tolist()}
                    for k, r in res.items()},
    }
    if out_json is not None:
        _atomic_write_text(out_json, json.dumps(doc, indent=2) + "\n")
    return doc


_CSV_FIELDS = ["method", "k", "uar", "war", "subset", "subset_idx", "seconds", "gap_to_exact", "n_evaluated"]


def _check_plan(data, ks, honest, honest_method, n_threads, max_seconds) -> dict:
    """Refuse a fusion whose exact searches (test set, then per fold for the honest rows)
    would exceed the budget, before any of them starts.  Returns the exact estimates."""
    n = data.logits.shape[0]
    est = search_estimates(data.logits, data.labels, ks, n_threads=n_threads)
    what = f"fusion of {n} trials ({len(data.labels)} test utterances)"
    check_budget(est, n, max_seconds, what + ", exact search")
    if honest_method != "exact" or honest == []:
        return est
    n_folds = len(set(data.folds.tolist()))
    searches = (n_folds if n_folds >= 2 else 0) + (n_folds if data.val_logits is not None else 0)
    # Each per-fold search runs on fewer utterances than the test set: the test set's
    # estimate bounds it.  The default honest size is the best exact one: any of ks.
    cand = honest if honest is not None else ks
    more = [k for k in cand if k not in est]
    per = {**est, **(search_estimates(data.logits, data.labels, more, n_threads=n_threads) if more else {})}
    extra = searches * max(per[k] for k in cand)
    total = sum(est.values()) + extra
    if total > max_seconds:
        raise SearchTooLarge(
            f"{what}: the honest selections ({searches} exact searches, one per fold and method, at "
            f"k={', '.join(map(str, cand))}) need up to {format_seconds(extra)} on top of the exact search's "
            f"{format_seconds(sum(est.values()))}, over the time budget of {format_seconds(max_seconds)}; "
            "choose honest_ks (or [] to skip them) or honest_method beam")
    return est


def run_fusion(trials: Mapping[str, Sequence[str]], ks, out_csv, out_json, *, beam_width: int = 8,
               honest_ks: Iterable[int] | None = None, honest_method: str = "exact",
               n_threads: int | None = None, corpus: str | None = None,
               heuristics: Iterable[str] = HEURISTICS, max_seconds: float | None = None,
               progress: bool | None = None) -> dict:
    """Late-combination table for the Snakemake rule: exact, heuristics, full integration, honest.

    Parameters
    ----------
    trials : mapping trial name -> list of run directories (see :func:`.trials.load_trials`)
    ks : iterable of int, ``"all"`` or None
        Subset sizes for the exact search and the heuristics.
    out_csv, out_json : path
        One CSV row per (method, k): ``method, k, uar, war, subset`` (trial names joined
        by ``+``), ``subset_idx`` (0-based indices joined by ``+``), ``seconds``,
        ``gap_to_exact`` (exact UAR minus this UAR, same k), ``n_evaluated``.  Methods:
        ``exact``, ``greedy``, ``beam``, ``full`` (k = n), ``crossfold`` (subset chosen on
        the other folds) and ``validation`` (chosen per fold on that fold's validation
        rows, when every trial has val rows and every fold some: otherwise the JSON's
        ``notes`` say why there is no such row); for these two the subset columns list
        ``fold=subset`` per fold, joined by ``;``.  The JSON holds the same rows plus
        confusion matrices.
    beam_width : int
    honest_ks : iterable of int, optional
        Sizes for the honest figures.  Default: the size with the best exact UAR (the
        paper's headline; smallest such size on ties); ``[]``: no honest rows.
        Cross-fold and validation selection with ``honest_method="exact"`` cost one exact
        search per fold and size each.
    honest_method : {"exact", "beam", "greedy"}
    corpus : str, optional
        Restrict every trial to the rows of this corpus (see :func:`.trials.load_trials`).
    heuristics : iterable of {"greedy", "beam"}
        Heuristic rows to add (empty: none).
    max_seconds : float, optional
        Time budget of the exact searches (default :data:`.budget.DEFAULT_MAX_HOURS`):
        the whole plan is estimated first and refused with
        :class:`.budget.SearchTooLarge` if over it.
    progress : bool, optional
        Progress bars on stderr (default: for searches estimated over 30 s).

    Returns
    -------
    dict with ``rows`` (list of row dicts incl. confusion) and dataset metadata.
    """
    heuristics = list(heuristics)
    unknown = [h for h in heuristics if h not in HEURISTICS]
    if unknown:
        raise InputError(f"unknown heuristics {unknown} (choose from {list(HEURISTICS)})")
    if honest_method not in HONEST_METHODS:
        raise InputError(f"unknown honest_method {honest_method!r} (choose from {list(HONEST_METHODS)})")
    data = load_trials({k: list(v) for k, v in trials.items()}, corpus=corpus)
    logits, labels = data.logits, data.labels
    n = logits.shape[0]
    ks = normalise_ks(ks, n)
    honest_given = None if honest_ks is None else normalise_ks(list(honest_ks), n)
    names = data.names
    budget = DEFAULT_MAX_HOURS * 3600 if max_seconds is None else float(max_seconds)
    estimates = _check_plan(data, ks, honest_given, honest_method, n_threads, budget)

    exact = exact_search(logits, labels, ks, n_threads=n_threads, max_seconds=budget, progress=progress)
    if honest_given is None:
        top = max(exact.values(), key=lambda r: (r.uar, -r.k))
        honest = [top.k]
    else:
        honest = honest_given
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

    def per_fold(h):
        return (";".join(f"{f}={'+'.join(names[i] for i in s)}" for f, s in h.subsets.items()),
                ";".join(f"{f}={'+'.join(map(str, s))}" for f, s in h.subsets.items()))

    for r in exact.values():
        fr(r)
    if "greedy" in heuristics:
        for r in greedy_forward(logits, labels, ks).values():
            fr(r)
    if "beam" in heuristics:
        for r in beam_search(logits, labels, beam_width, ks).values():
            fr(r)
    fr(full_integration(logits, labels))
    # The plan was checked above; each per-fold search is smaller than the whole plan.
    sub = {"method": honest_method, "beam_width": beam_width, "n_threads": n_threads, "max_seconds": budget,
           "progress": progress}
    if len(set(data.folds.tolist())) >= 2:
        for k in honest:
            h = cross_fold_selection(logits, labels, data.folds, k, **sub)
            add("crossfold", k, h.uar, h.war, *per_fold(h), h.seconds, h.confusion, None,
                {"selection_uar": {str(f): v for f, v in h.selection_uar.items()}})
    notes = []
    if data.val_logits is not None:
        lacking = sorted(set(data.folds.tolist()) - set(data.val_folds.tolist()))
        if lacking:  # e.g. a corpus restriction that leaves a fold validation rows of the other corpus only
            notes.append(f"no validation row: fold(s) {', '.join(map(str, lacking))} have test rows but no "
                         f"validation rows{f' of corpus {corpus!r}' if corpus else ''}")
            log.warning("fusion: %s", notes[-1])
    if data.val_logits is not None and not notes:
        for k in honest:
            h = validation_selection(data.val_logits, data.val_labels, logits, labels, k, val_folds=data.val_folds,
                                     test_folds=data.folds, val_utt_ids=data.val_utt_ids, test_utt_ids=data.utt_ids,
                                     **sub)
            add("validation", k, h.uar, h.war, *per_fold(h), h.seconds, h.confusion, None,
                {"selection_uar": {str(f): v for f, v in h.selection_uar.items()}})

    doc = {"trials": names, "sources": data.sources, "corpus": corpus, "n_utts": int(logits.shape[1]),
           "n_classes": int(logits.shape[2]), "ks": ks, "honest_ks": honest, "honest_method": honest_method,
           "heuristics": heuristics, "estimated_seconds": {str(k): round(s, 3) for k, s in estimates.items()},
           "tie_rules": TIE_RULES, "notes": notes, "rows": rows}
    write_outputs(rows, doc, out_csv, out_json)
    return doc


def write_outputs(rows: Sequence[Mapping[str, Any]], doc: Mapping[str, Any], out_csv, out_json) -> None:
    """A fusion output pair: one CSV line per row (``_CSV_FIELDS``), and the JSON document; atomic writes."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write_text(out_csv, buf.getvalue())
    _atomic_write_text(out_json, json.dumps(doc, indent=2) + "\n")

