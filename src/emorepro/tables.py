"""Render any paper table from a declarative spec, with reported-vs-reproduced columns.

A table spec (config ``tables.<name>``) says which rows exist (each an experiment, i.e. a
set of runs over folds and seeds), which columns (each a metric path in ``metrics.json``),
how runs are aggregated, and what the paper reported.  The same aggregated frame is written
as LaTeX (booktabs, through pandas' Styler), CSV and Markdown, and the provenance sidecar
maps every cell to the metric files and values it aggregates.

Aggregation rules (``aggregate``):

``fold_mean_seed_mean_std``
    For each seed, average the per-fold metric over folds; report the mean and the sample
    standard deviation (ddof=1) of those per-seed means.  (Ispas et al. Table 2: "Every
    experiment which implied multi-task learning was conducted on three different seeds and
    it displays the mean and the standard deviation"; how folds are combined is not stated
    there, nor in Zhang et al.)

``pooled_seed_stats`` (Lee et al. Tables 2-4)
    For each seed (a *trial*), pool the test predictions of all its folds (the runs' confusion
    matrices summed, within the row's ``metric_scope`` corpus) and compute the metric on the
    pool; the column's ``stat`` then summarises the seeds: ``mean``, ``std`` (ddof=1), ``max``,
    ``min`` or ``mean_std`` (mean +/- std, the default).

Several test sets in one cell (``combine``, Zhang et al.'s Table 3).  A row may list several
experiments ("Baseline, ACT+SPON (separate)": one model per corpus), or read a union
corpus's runs with ``metric_scope: corpora`` (each member corpus's test utterances).  For
each (fold, seed) those test sets are combined before the rule above:

``pooled`` (default)
    one test set: their utterances pooled.  Per-class recall is the support-weighted mean
    of the parts' recalls (= recall on the summed confusion matrix), UA the mean of those
    over the classes present, WA (and ``style_accuracy``) the size-weighted mean.
``equal_weight``
    each test set's value, averaged with equal weight (the ``corpus_mean`` of metrics.json).

Each experiment of a row must have run every (fold, seed) of the others.

Cells from the late-fusion outputs (Lee et al. Tables 2-6): a column with ``fusion`` (e.g.
``{method: exact}``) reads, for each row, the fusion set the row names (``row.fusion.set``):
the row of ``results/fusion/<set>.json`` with that method and ``k`` (``exact`` without ``k``:
the best UAR over every size, the papers' "Max nCk"; ``intermediate``: the intermediate
concatenation's output ``<set>.intermediate.json``).  Row and column ``fusion`` keys merge
(the row's win).  Metrics of a fusion row: ``uar``, ``war``, ``recall.<class>`` (from its
confusion matrix), ``k``, ``n_trials`` and ``count.<variant>`` (how many of the subset's trials
come from that experiment).  A row with ``cited`` shows the paper's values only (prior work the
paper quotes; not reproduced).
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .io import InputError, read_json, write_csv, write_text
from .models.base import ORACLE_SELECTIONS
from .provenance import (
    check_against_sidecar,  # moved to provenance.py; still importable from here
)

#: rows whose runs kept the checkpoint that scored best on the test labels (train.selection test_*_oracle)
ORACLE_MARK = "\u2021"                                       # double dagger, after the row name
ORACLE_MARK_TEX = r"$^\ddagger$"
ORACLE_NOTE = (f"{ORACLE_MARK} Test-set oracle: each run of this row kept the checkpoint that scored best on the "
               "test labels it is then scored on (the paper's protocol, or its code's), so the cell overstates a "
               "held-out result; a row without the mark selects without looking at test labels.")

#: rows cited from the literature (config ``rows[].cited``): no runs, only the paper's values (MMER's prior art)
CITED_MARK = "\u00a7"                                       # section sign, after the row name
CITED_MARK_TEX = r"\S"
CITED_TEXT = "not reproduced"                                # what the "ours" cells of a cited row say
CITED_NOTE = (f"{CITED_MARK} Cited, not reproduced: the paper's value as it prints it (from the cited work, under "
              "that work's own protocol); nothing of it was run here.")

AGGREGATIONS = {
    "fold_mean_seed_mean_std": "mean over folds per seed, then mean +/- sample std (ddof=1) over seeds",
    "pooled_seed_stats": ("per seed (trial), the metric on its test predictions pooled over all folds; then the "
                          "column's statistic over seeds (std: ddof=1)"),
}
#: a column's summary of the per-seed values (``pooled_seed_stats``)
SEED_STATS = ("mean_std", "mean", "std", "max", "min")
#: methods of a fusion output row a cell may read (emorepro.fusion.api.run_fusion; intermediate: its own rule)
FUSION_METHODS = ("exact", "full", "greedy", "beam", "crossfold", "validation", "intermediate")
FUSION_NOTE = ("Late-fusion cells (sum of logits over a subset of trials, test predictions pooled over the folds): "
               "'exact' without k is the best UAR over every subset of every size, chosen on the test labels "
               "themselves (the paper's Max nCk: an optimistic estimate); 'crossfold' chooses each fold's subset on "
               "the other folds (honest); 'full' fuses every trial.")

#: How a cell combines several test sets of one (fold, seed): a row's experiments, or a union
#: corpus's members (``metric_scope: corpora``).  The text goes into the caption.
COMBINE = {
    "pooled": "a row over several test sets (one model per corpus, or both corpora of a union run) pools their "
              "utterances per fold and seed: recall per class over the pooled utterances, UA the mean of those "
              "recalls, WA the accuracy over all of them",
    "equal_weight": "a row over several test sets (one model per corpus, or both corpora of a union run) averages "
                    "their values per fold and seed with equal weight",
}


@dataclass(frozen=True)
class RunRef:
    """One run feeding a row: its metrics file, fold and seed."""

    metrics: str
    fold: int
    seed: int
    experiment: str = ""    # which of the row's experiments (a row may average several)
    selection: str = ""     # the run's train.selection: a test-set oracle marks the row's cells


@dataclass(frozen=True)
class FusionRef:
    """A fusion set's outputs feeding fusion cells: results/fusion/<set>.{csv,json} (+ .intermediate.*)."""

    name: str
    csv: str
    json: str
    intermediate_csv: str = ""
    intermediate_json: str = ""
    selections: tuple[str, ...] = ()   # train.selection of the set's experiments (a test oracle marks the row)


def metric_value(metrics: Mapping[str, Any], path: str, where: str) -> float:
    cur: Any = metrics
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise InputError(f"{where}: metric {path!r} not found")
        cur = cur[part]
    if cur is None:
        return math.nan
    return float(cur)


def _aggregate(values: dict[int, dict[int, float]]) -> tuple[float, float, int]:
    import numpy as np

    per_seed = [float(np.mean([v for _, v in sorted(folds.items())])) for _, folds in sorted(values.items())]
    mean = float(np.mean(per_seed))
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan
    return mean, std, len(per_seed)


def _scope_parts(metrics: Mapping[str, Any], scope: str | None, where: str) -> list[Mapping[str, Any]]:
    """The test sets one run gives a row: each member corpus (``corpora``), or the sub-dict at ``scope``."""
    if scope == "corpora":
        by = metrics.get("by_corpus")
        if not isinstance(by, Mapping) or not by:
            raise InputError(f"{where}: metric_scope corpora needs per-corpus metrics (by_corpus), found none")
        return [by[k] for k in sorted(by)]
    cur: Any = metrics
    for part in (scope.split(".") if scope else []):
        if not isinstance(cur, Mapping) or part not in cur:
            raise InputError(f"{where}: metric scope {scope!r} not found")
        cur = cur[part]
    return [cur]


def combine(parts: Sequence[Mapping[str, Any]], metric: str, rule: str, where: str = "") -> float:
    """One metric over several test sets (``parts``: metrics.json-shaped dicts), by ``rule`` (:data:`COMBINE`).

    ``pooled`` needs, per part, ``recall`` and ``support`` (for ``uar``, ``recall.<class>``) or ``n`` (for
    ``war``, ``style_accuracy``): recall of class c = sum(recall_c * support_c) / sum(support_c), which is the
    recall on the summed confusion matrix; UA = mean of those over the classes with support; WA = sum(war * n)
    / sum(n).  Written here rather than recomputed from predictions so that the same function scores the
    paper's own per-corpus numbers (tests/test_tables.py recomputes its Table 3 from Tables 4-5).
    """
    import numpy as np

    if len(parts) == 1:
        return metric_value(parts[0], metric, where)
    if rule == "equal_weight":
        vals = [v for v in (metric_value(p, metric, where) for p in parts) if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan
    if rule != "pooled":
        raise InputError(f"{where}: unknown combine rule {rule!r}; choose {sorted(COMBINE)}")
    if metric == "uar" or metric.startswith("recall."):
        classes = [metric.split(".", 1)[1]] if metric != "uar" else list(dict.fromkeys(
            c for p in parts for c in (p.get("recall") or {})))
        recalls = []
        for c in classes:
            num = den = 0.0
            for p in parts:
                n = metric_value(p, f"support.{c}", where)
                if n > 0:
                    num += metric_value(p, f"recall.{c}", where) * n
                    den += n
            recalls.append(num / den if den > 0 else math.nan)
        if metric != "uar":
            return recalls[0]
        if not classes:
            raise InputError(f"{where}: pooling uar needs per-class recall and support in every test set")
        present = [r for r in recalls if not math.isnan(r)]
        return float(np.mean(present)) if present else math.nan
    if metric in ("war", "style_accuracy"):
        n = np.array([metric_value(p, "n", where) for p in parts])
        v = np.array([metric_value(p, metric, where) for p in parts])
        return float((v * n).sum() / n.sum())
    raise InputError(f"{where}: metric {metric!r} cannot be pooled over test sets (uar, war, recall.<class> and "
                     "style_accuracy can); set the table's combine to equal_weight")


def _reported(val) -> tuple[float, float]:
    if val is None:
        return math.nan, math.nan
    if isinstance(val, (list, tuple)):
        return float(val[0]), float(val[1]) if len(val) > 1 else math.nan
    return float(val), math.nan


def _col(column: Mapping[str, Any], key: str, default):
    """A column's own ``scale``/``digits`` when set (not None), else the table's."""
    v = column.get(key)
    return default if v is None else v


def _fmt(mean: float, std: float, digits: int, latex: bool) -> str:
    if math.isnan(mean):
        return "--" if latex else ""
    s = f"{mean:.{digits}f}"
    if not math.isnan(std):
        s += (r" $\pm$ " if latex else " ± ") + f"{std:.{digits}f}"
    return s


def build_table(spec: Mapping[str, Any], runs: Mapping[str, Sequence[RunRef]], *, verify_hashes: bool = True,
                fusion: Mapping[str, FusionRef] | None = None):
    """Aggregate runs into a tidy frame: one row per (table row, column).

    ``fusion``: set name -> its outputs, for the cells of ``fusion`` columns.  Raises
    :class:`InputError` naming the missing run, the tampered metrics file, or the reported key
    that matches no row/column.
    """
    import pandas as pd

    columns = spec["columns"]
    col_names = [c["name"] for c in columns]
    row_names = [r["name"] for r in spec["rows"]]
    scale = float(spec.get("scale", 1.0))
    agg = spec.get("aggregate", "fold_mean_seed_mean_std")
    if agg not in AGGREGATIONS:
        raise InputError(f"config: tables.{spec['name']}.aggregate: unknown {agg!r}; choose {sorted(AGGREGATIONS)}")
    rule = spec.get("combine") or "pooled"
    if rule not in COMBINE:
        raise InputError(f"config: tables.{spec['name']}.combine: unknown {rule!r}; choose {sorted(COMBINE)}")
    for r in spec["rows"]:
        bad = sorted(set(r.get("reported") or {}) - set(col_names))
        if bad:
            raise InputError(f"config: tables.{spec['name']}.rows[{r['name']!r}].reported: key(s) {bad} match no "
                             f"column; columns are {col_names}")
        bad = sorted(set(r.get("columns") or []) - set(col_names))
        if bad:
            raise InputError(f"config: tables.{spec['name']}.rows[{r['name']!r}].columns: {bad} match no column; "
                             f"columns are {col_names}")
    stats = spec.get("stats") or {}
    stat_cols = set(stats.get("columns", [])) if stats else set()
    bad = sorted(stat_cols - set(col_names))
    if bad:
        raise InputError(f"config: tables.{spec['name']}.stats.columns: {bad} match no column; columns are {col_names}")
    for r in spec["rows"]:
        if r.get("compare_to") and r["compare_to"] not in row_names:
            raise InputError(f"config: tables.{spec['name']}.rows[{r['name']!r}].compare_to: {r['compare_to']!r} "
                             f"is not a row; rows are {row_names}")
    _check_lee_spec(spec, agg, fusion or {})
    boot_rows = _load_bootstrap_rows(spec, runs) if stat_cols else {}
    fusion_docs: dict[tuple[str, bool], dict] = {}
    labels = list(spec.get("label_columns") or [])
    tidy = []
    for r in spec["rows"]:
        refs = runs.get(r["name"], [])
        if r.get("cited") and refs:
            raise InputError(f"table {spec['name']}: row {r['name']!r} is cited (not reproduced) but has runs")
        loaded = []
        for ref in refs:
            if not os.path.exists(ref.metrics):
                raise InputError(f"table {spec['name']}: row {r['name']!r}: missing run {Path(ref.metrics).parent} "
                                 f"(no {Path(ref.metrics).name}); refusing to average fewer runs")
            if verify_hashes:
                check_against_sidecar(ref.metrics)
            loaded.append((ref, read_json(ref.metrics)))
        _check_experiments_cover(spec["name"], r["name"], refs)
        several = combines_test_sets(r)
        _check_every_fold(spec["name"], r["name"], refs)
        oracle = any(ref.selection in ORACLE_SELECTIONS for ref in refs)
        extra = {**({"cited": bool(r.get("cited"))} if _has_cited(spec) else {}),
                 **{f"label_{k}": str((r.get("labels") or {}).get(k, "")) for k in labels}}
        for c in columns:
            if c.get("fusion") is not None:   # a late-fusion output, not the row's runs
                tidy.append({**_fusion_cell(spec, r, c, fusion or {}, fusion_docs, verify_hashes), **extra})
                continue
            if agg == "pooled_seed_stats":
                tidy.append({**_pooled_cell(spec, r, c, loaded if c["name"] in (r.get("columns") or col_names) else [],
                                            oracle), **extra})
                continue
            c_scale = float(_col(c, "scale", scale))
            parts: dict[tuple[int, int], list] = defaultdict(list)   # (seed, fold) -> test sets
            cells = []
            shown = c["name"] in (r.get("columns") or col_names)   # a row may fill only some columns (others: --)
            for ref, m in (loaded if shown else []):
                own = _scope_parts(m, r.get("metric_scope"), ref.metrics)
                parts[(ref.seed, ref.fold)] += own
                cells.append({"metrics": ref.metrics, "fold": ref.fold, "seed": ref.seed,
                              "value": combine(own, c["metric"], rule, ref.metrics) * c_scale})
            values: dict[int, dict[int, float]] = defaultdict(dict)
            for (seed, fold), ps in parts.items():
                values[seed][fold] = combine(ps, c["metric"], rule, f"table {spec['name']}: row {r['name']!r}") * c_scale
            if several:   # the run's own value above; the (fold, seed) value combines the row's test sets
                for x in cells:
                    x["fold_value"] = values[x["seed"]][x["fold"]]
            mean, std, n_seeds = _aggregate(values) if values else (math.nan, math.nan, 0)
            p_mean, p_std = _reported((r.get("reported") or {}).get(c["name"]))
            diff = mean - p_mean
            outside = bool(not math.isnan(p_std) and not math.isnan(diff) and abs(diff) > p_std)
            st = _cell_stats(spec, r, c, boot_rows) if c["name"] in stat_cols else {}
            tidy.append({"row": r["name"], "column": c["name"], "metric": scoped_metric(r, c), "ours_mean": mean,
                         "ours_std": std, "n_seeds": n_seeds, "n_runs": len(cells), "paper": p_mean,
                         "paper_std": p_std, "diff": diff, "outside_paper_band": outside,
                         "ci_low": st.get("ci_low", math.nan), "ci_high": st.get("ci_high", math.nan),
                         "compare_to": st.get("compare_to", ""), "diff_vs_compare": st.get("diff_vs_compare", math.nan),
                         "p_value": st.get("p_value", math.nan), "oracle": oracle,
                         "runs": ";".join(str(Path(x["metrics"]).parent) for x in cells), "_cells": cells, **extra})
    df = pd.DataFrame(tidy)
    df["row"] = pd.Categorical(df["row"], row_names, ordered=True)
    df["column"] = pd.Categorical(df["column"], col_names, ordered=True)
    return df.sort_values(["row", "column"]).reset_index(drop=True)


# --------------------------------------------------------------------------- pooled statistics, fusion cells


def _cell(row, column, metric, mean, std, n_seeds, n_runs, oracle, cells, **extra) -> dict:
    """One tidy row (a table cell), the reported value beside ours."""
    p_mean, p_std = _reported((row.get("reported") or {}).get(column["name"]))
    diff = mean - p_mean
    outside = bool(not math.isnan(p_std) and not math.isnan(diff) and abs(diff) > p_std)
    return {"row": row["name"], "column": column["name"], "metric": metric, "ours_mean": mean, "ours_std": std,
            "n_seeds": n_seeds, "n_runs": n_runs, "paper": p_mean, "paper_std": p_std, "diff": diff,
            "outside_paper_band": outside, "ci_low": math.nan, "ci_high": math.nan, "compare_to": "",
            "diff_vs_compare": math.nan, "p_value": math.nan, "oracle": oracle,
            "runs": ";".join(dict.fromkeys(str(Path(x["metrics"]).parent) for x in cells)), "_cells": cells, **extra}


def pooled_metric(confusion, classes: Sequence[str], metric: str) -> float:
    """``uar`` (mean recall over the classes present), ``war`` (accuracy) or ``recall.<class>`` of a confusion
    matrix (rows = truth, in ``classes`` order): the same numbers as :mod:`emorepro.metrics` on the predictions."""
    import numpy as np

    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(1)
    if metric == "war":
        return float(np.trace(cm) / cm.sum()) if cm.sum() else math.nan
    if metric == "uar":
        present = support > 0
        return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else math.nan
    if metric.startswith("recall."):
        c = metric.split(".", 1)[1]
        if c not in classes:
            raise InputError(f"metric {metric!r}: {c!r} is not a class ({list(classes)})")
        i = list(classes).index(c)
        return float(cm[i, i] / support[i]) if support[i] else math.nan
    raise InputError(f"metric {metric!r} cannot be computed from pooled predictions (uar, war, recall.<class>)")


def seed_stat(values: Sequence[float], stat: str) -> tuple[float, float]:
    """(value, std-or-nan) of per-seed values: mean_std, mean, std (ddof=1), max, min."""
    import numpy as np

    if not len(values):
        return math.nan, math.nan
    v = np.asarray(values, dtype=np.float64)
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
    return {"mean_std": (float(v.mean()), sd), "mean": (float(v.mean()), math.nan), "std": (sd, math.nan),
            "max": (float(v.max()), math.nan), "min": (float(v.min()), math.nan)}[stat]


def _pooled_cell(spec, row, column, loaded, oracle) -> dict:
    """``pooled_seed_stats``: per seed, the runs' confusion matrices (one per fold) summed, the metric on the sum."""
    import numpy as np

    scope = row.get("metric_scope") or ""
    if scope and not scope.startswith("by_corpus."):
        raise InputError(f"config: tables.{spec['name']}.rows[{row['name']!r}].metric_scope {scope!r}: pooled "
                         "predictions are per corpus (by_corpus.<member>) or all (null)")
    scale = float(_col(column, "scale", spec.get("scale", 1.0)))
    pooled: dict[int, Any] = {}
    order: list[str] | None = None
    cells = []
    for ref, m in loaded:
        block = m
        for part in scope.split(".") if scope else []:
            if not isinstance(block, Mapping) or part not in block:
                raise InputError(f"{ref.metrics}: no {scope!r} (the row's metric_scope)")
            block = block[part]
        if "confusion" not in block:
            raise InputError(f"{ref.metrics}: no confusion matrix under {scope or 'the top level'!r}")
        classes = list(m["classes"])
        if order is None:
            order = classes
        elif classes != order:
            raise InputError(f"{ref.metrics}: classes {classes} differ from the row's other runs ({order})")
        cm = np.asarray(block["confusion"], dtype=np.int64)
        pooled[ref.seed] = pooled.get(ref.seed, 0) + cm
        cells.append({"metrics": ref.metrics, "fold": ref.fold, "seed": ref.seed,
                      "value": f"confusion {cm.tolist()} (pooled with the seed's other folds)"})
    per_seed = {s: pooled_metric(cm, order, column["metric"]) * scale for s, cm in sorted(pooled.items())}
    stat = column.get("stat") or "mean_std"
    mean, std = seed_stat(list(per_seed.values()), stat)
    metric = f"{scope + '.' if scope else ''}{column['metric']} pooled over folds; {stat} over seeds"
    return _cell(row, column, metric, mean, std, len(per_seed), len(cells), oracle, cells,
                 per_seed=";".join(f"seed{s}={v:.6g}" for s, v in per_seed.items()))


def _check_lee_spec(spec, agg, fusion) -> None:
    """Config errors of stat / fusion / cited keys, named by key."""
    key = f"config: tables.{spec['name']}"
    for c in spec["columns"]:
        stat = c.get("stat")
        if stat is not None and stat not in SEED_STATS:
            raise InputError(f"{key}.columns[{c['name']!r}].stat: {stat!r} is not one of {list(SEED_STATS)}")
        if stat not in (None, "mean_std") and agg != "pooled_seed_stats" and c.get("fusion") is None:
            raise InputError(f"{key}.columns[{c['name']!r}].stat: a statistic over seeds needs aggregate "
                             "pooled_seed_stats")
        m = (c.get("fusion") or {}).get("method")
        if m is not None and m not in FUSION_METHODS:
            raise InputError(f"{key}.columns[{c['name']!r}].fusion.method: {m!r} is not one of {list(FUSION_METHODS)}")
    for where, x in [*((f"rows[{r['name']!r}]", r) for r in spec["rows"]),
                     *((f"columns[{c['name']!r}]", c) for c in spec["columns"])]:
        fset = (x.get("fusion") or {}).get("set")
        if fset is not None and fset not in fusion:
            raise InputError(f"{key}.{where}.fusion.set: {fset!r} is not a fusion set given to the table "
                             f"({sorted(fusion)})")
    for r in spec["rows"]:
        f = r.get("fusion") or {}
        if f.get("method") is not None and f["method"] not in FUSION_METHODS:
            raise InputError(f"{key}.rows[{r['name']!r}].fusion.method: {f['method']!r} is not one of "
                             f"{list(FUSION_METHODS)}")
        if r.get("cited") and (r.get("experiment") or f):
            raise InputError(f"{key}.rows[{r['name']!r}]: a cited row quotes the paper only: no experiment or fusion")
        if not (r.get("cited") or r.get("experiment") or f or any(c.get("fusion") for c in spec["columns"])):
            raise InputError(f"{key}.rows[{r['name']!r}]: needs an experiment, a fusion set or `cited`")


def load_fusion_output(ref: FusionRef, intermediate: bool = False, verify_hashes: bool = True) -> dict:
    """A fusion set's JSON, checked (with its CSV) against the CSV's provenance sidecar."""
    from .provenance import read_sidecar, resolver, sidecar_path

    csv, js = (ref.intermediate_csv, ref.intermediate_json) if intermediate else (ref.csv, ref.json)
    if not csv or not os.path.exists(js):
        what = "intermediate concatenation (fusion.<set>.intermediate)" if intermediate else "late fusion"
        raise InputError(f"fusion set {ref.name!r}: no {what} output {js or '(not configured)'}")
    if verify_hashes:
        check_against_sidecar(csv)
        side = sidecar_path(csv)
        rec = read_sidecar(side)
        res = resolver(side, rec)
        entry = next((o for o in rec["outputs"] if os.path.realpath(res(o["path"])) == os.path.realpath(js)), None)
        from .io import sha256_file

        if entry is None or sha256_file(js) != entry["sha256"]:
            raise InputError(f"{js}: missing from or differs from its sidecar {side}; re-run the fusion")
    return read_json(js)


def select_fusion_row(doc: Mapping[str, Any], method: str, k: int | None, where: str) -> dict:
    """The output row of ``method`` at size ``k``; ``exact`` without ``k``: the best UAR over all sizes
    (the smallest size on ties, as the fusion rule's default honest size)."""
    rows = [r for r in doc["rows"] if r["method"] == method]
    if method == "exact" and k is None:
        if not rows:
            raise InputError(f"{where}: no exact rows")
        return max(rows, key=lambda r: (r["uar"], -r["k"]))
    if k is not None:
        rows = [r for r in rows if r["k"] == int(k)]
    if len(rows) != 1:
        have = sorted({(r["method"], r["k"]) for r in doc["rows"]})
        raise InputError(f"{where}: {len(rows)} rows of method {method!r}{'' if k is None else f' at k={k}'} "
                         f"(the output has {have[:12]}{'...' if len(have) > 12 else ''}): set the fusion set's ks / "
                         "honest_ks, or the cell's k")
    return rows[0]


def _subset_trials(row: Mapping[str, Any]) -> list[str]:
    """Trial names of a fusion row's subset (crossfold/validation: the union over the folds' subsets)."""
    sub = row.get("subset") or ""
    if "=" in sub:
        return list(dict.fromkeys(t for part in sub.split(";") for t in part.split("=", 1)[1].split("+") if t))
    return [t for t in sub.split("+") if t]


def fusion_value(row: Mapping[str, Any], metric: str, classes: Sequence[str], per_fold: bool) -> float:
    if metric in ("uar", "war"):
        return float(row[metric])
    if metric == "k":
        return float(row["k"])
    if metric == "n_trials":
        return float(len(_subset_trials(row)))
    if metric.startswith("count."):
        if per_fold:   # each fold chose its own subset: no single composition
            return math.nan
        variant = metric.split(".", 1)[1]
        return float(sum(t.rsplit("/", 1)[0] == variant for t in _subset_trials(row)))
    if metric.startswith("recall."):
        return pooled_metric(row["confusion"], classes, metric)
    raise InputError(f"fusion cells know uar, war, recall.<class>, k, n_trials and count.<variant>, not {metric!r}")


def _fusion_cell(spec, row, column, fusion, docs, verify) -> dict:
    sel = {**{k: v for k, v in (column.get("fusion") or {}).items() if v is not None},
           **{k: v for k, v in (row.get("fusion") or {}).items() if v is not None}}
    shown = column["name"] in (row.get("columns") or [c["name"] for c in spec["columns"]])
    if not sel.get("set") or not shown or row.get("cited"):
        return _cell(row, column, column["metric"], math.nan, math.nan, 0, 0, False, [])
    ref = fusion[sel["set"]]
    method, k = sel.get("method") or "exact", sel.get("k")
    inter = method == "intermediate"
    if (sel["set"], inter) not in docs:
        docs[(sel["set"], inter)] = load_fusion_output(ref, inter, verify)
    doc = docs[(sel["set"], inter)]
    out_csv = ref.intermediate_csv if inter else ref.csv
    fr = select_fusion_row(doc, method, k, f"table {spec['name']}: row {row['name']!r}: {out_csv}")
    scale = float(_col(column, "scale", spec.get("scale", 1.0)))
    metric = column["metric"]
    per_fold = method in ("crossfold", "validation")
    v = fusion_value(fr, metric, spec.get("classes") or [], per_fold)
    if metric in ("uar", "war") or metric.startswith("recall."):
        v *= scale
    trials = _subset_trials(fr)
    cells = [{"metrics": out_csv, "fold": "all", "seed": "-",
              "value": f"{method} k={fr['k']} UAR {fr['uar']:.6f} WAR {fr['war']:.6f}: {fr['subset']}"}]
    for t in trials:
        for i, d in enumerate(doc.get("sources", {}).get(t, [])):
            cells.append({"metrics": str(Path(d) / "predictions.csv"), "fold": i + 1, "seed": t, "value": "fused"})
    oracle = any(x in ORACLE_SELECTIONS for x in ref.selections)
    what = f"fusion {sel['set']}: {method}" + (f" k={k}" if k is not None else (" best k" if method == "exact" else ""))
    return _cell(row, column, f"{what}; {metric}", v, math.nan, len(trials), len(cells) - 1, oracle, cells,
                 fusion_k=fr["k"], fusion_subset=fr["subset"])
def _has_cited(spec: Mapping[str, Any]) -> bool:
    return any(r.get("cited") for r in spec["rows"])


def scoped_metric(row: Mapping[str, Any], column: Mapping[str, Any]) -> str:
    """The metric path of a cell: the column's, under the row's ``metric_scope`` when it has one.

    ``metric_scope: by_corpus.iemocap`` reads one member corpus's test utterances of a union
    corpus's runs; ``corpora`` each member's, combined by the table's ``combine`` rule (shown as
    ``by_corpus.*.<metric>``); ``corpus_mean`` their equal-weight mean as stored in metrics.json.
    """
    scope = row.get("metric_scope")
    if scope == "corpora":
        return f"by_corpus.*.{column['metric']}"
    return f"{scope}.{column['metric']}" if scope else column["metric"]


def combines_test_sets(row: Mapping[str, Any]) -> bool:
    """Does a row's cell combine several test sets per (fold, seed) (the table's ``combine`` rule)?"""
    exps = row.get("experiment")
    return row.get("metric_scope") == "corpora" or (isinstance(exps, (list, tuple)) and len(exps) > 1)


def _load_bootstrap_rows(spec, runs) -> dict:
    from .stats import load_row

    out = {}
    for r in spec["rows"]:
        scope = r.get("metric_scope") or ""
        if (scope and not scope.startswith("by_corpus.")) or len({ref.experiment for ref in runs.get(r["name"], [])}) > 1:
            out[r["name"]] = None   # a mean over corpora or experiments has no single set of test utterances
            continue
        files = {}
        for ref in runs.get(r["name"], []):
            pred = str(Path(ref.metrics).parent / "predictions.csv")
            if not os.path.exists(pred):
                raise InputError(f"table {spec['name']}: row {r['name']!r}: missing {pred} (needed for the bootstrap)")
            check_against_sidecar(pred)
            files[(ref.seed, ref.fold)] = pred
        out[r["name"]] = load_row(files, corpus=scope.split(".", 1)[1] if scope else None) if files else None
    return out


def _cell_stats(spec, row, col, boot_rows) -> dict:
    from . import stats as S

    metric, st = col["metric"], spec["stats"]
    if not S.supported(metric) or boot_rows.get(row["name"]) is None:
        return {}
    classes = spec.get("classes") or []
    if metric.startswith("recall.") and not classes:
        raise InputError(f"config: tables.{spec['name']}: per-class bootstrap needs the class list")
    scale = float(spec.get("scale", 1.0))
    n, seed = int(st.get("bootstrap", 1000)), int(st.get("seed", 0))
    lo, hi = S.bootstrap_ci(boot_rows[row["name"]], metric, classes, n=n, seed=seed)
    out = {"ci_low": lo * scale, "ci_high": hi * scale}
    other = row.get("compare_to")
    if other and boot_rows.get(other) is not None:
        d, p = S.paired_test(boot_rows[row["name"]], boot_rows[other], metric, classes, n=n, seed=seed)
        out.update(compare_to=other, diff_vs_compare=d * scale, p_value=p)
    return out


def _check_experiments_cover(table: str, row: str, refs: Sequence[RunRef]) -> None:
    """A row that averages several experiments (per fold and seed) needs each at every (seed, fold)."""
    experiments = sorted({r.experiment for r in refs})
    have: dict[tuple[int, int], list[str]] = defaultdict(list)
    for r in refs:
        have[(r.seed, r.fold)].append(r.experiment)
    for (seed, fold), exps in sorted(have.items()):
        if sorted(exps) != experiments:
            raise InputError(f"table {table}: row {row!r}: seed {seed} fold {fold} has runs of {sorted(exps)} but the "
                             f"row averages {experiments}; give its experiments the same seeds and folds")


def _check_every_fold(table: str, row: str, refs: Sequence[RunRef]) -> None:
    """A row averages every fold of its fold file: a config ``n_folds`` smaller than the data's would
    otherwise average, say, 3 of 5 sessions.  Each run records how many folds its fold file has."""
    from .provenance import RUN_SIDECAR, read_sidecar

    folds: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in refs:
        folds[(r.experiment, r.seed)].add(r.fold)
    for r in refs:
        side = Path(r.metrics).parent / RUN_SIDECAR
        n = (read_sidecar(side).get("summary") or {}).get("n_folds") if side.is_file() else None
        have = sorted(folds[(r.experiment, r.seed)])
        if n is not None and have != list(range(1, int(n) + 1)):
            raise InputError(f"table {table}: row {row!r} averages folds {have} of seed {r.seed}, but the fold file "
                             f"of {Path(r.metrics).parent} has {n} folds: config protocols.<name>.n_folds disagrees "
                             f"with the fold file")


def fill_corpus_names(spec: Mapping[str, Any], corpora: Mapping[str, Mapping[str, Any]]) -> dict:
    """``{corpora.<key>.name}`` in a spec's title, notes and row names -> that corpus's ``name`` (default: its key).

    So a table names the user's own corpus (Zhang et al.'s SPON rows name "our spontaneous corpus").
    """
    import copy
    import re

    def fill(text: str) -> str:
        def sub(m):
            if m.group(1) not in corpora:
                raise InputError(f"config: tables.{spec.get('name', '?')}: {m.group(0)} names no corpus")
            return corpora[m.group(1)].get("name") or m.group(1)
        return re.sub(r"\{corpora\.([A-Za-z0-9_\-]+)\.name\}", sub, text)

    out = copy.deepcopy(dict(spec))
    if "title" in out:
        out["title"] = fill(out["title"])
    out["notes"] = [fill(n) for n in out.get("notes", [])]
    out["rows"] = [{**r, "name": fill(r["name"]), **({"compare_to": fill(r["compare_to"])} if r.get("compare_to") else {})}
                   for r in out["rows"]]
    return out


def render(spec: Mapping[str, Any], df, out_tex: str, out_csv: str, out_md: str) -> dict:
    """Write the LaTeX/CSV/Markdown twins; return the cell map for the provenance sidecar."""
    import pandas as pd

    col_digits = {c["name"]: int(_col(c, "digits", spec.get("digits", 2))) for c in spec["columns"]}
    cited_rows = {r["name"] for r in spec["rows"] if r.get("cited")}
    labels = list(spec.get("label_columns") or [])
    wide_tex, wide_md = {}, {}
    for _, t in df.iterrows():
        key = str(t["row"])
        digits = col_digits[str(t["column"])]
        wide_tex.setdefault(key, {})
        wide_md.setdefault(key, {})
        for kind, val in (("ours", _fmt(t["ours_mean"], t["ours_std"], digits, True)),
                          ("paper", _fmt(t["paper"], t["paper_std"], digits, True)),
                          ("diff", "--" if math.isnan(t["diff"]) else f"{t['diff']:+.{digits}f}"
                           + (r"$^\dagger$" if t["outside_paper_band"] else ""))):
            wide_tex[key][(str(t["column"]), kind)] = val
        wide_md[key][(str(t["column"]), "ours")] = _fmt(t["ours_mean"], t["ours_std"], digits, False)
        wide_md[key][(str(t["column"]), "paper")] = _fmt(t["paper"], t["paper_std"], digits, False)
        wide_md[key][(str(t["column"]), "diff")] = "" if math.isnan(t["diff"]) else (
            f"{t['diff']:+.{digits}f}" + (" †" if t["outside_paper_band"] else ""))
        if not math.isnan(t["ci_low"]):
            wide_tex[key][(str(t["column"]), "95\\% CI")] = f"[{t['ci_low']:.{digits}f}, {t['ci_high']:.{digits}f}]"
            wide_md[key][(str(t["column"]), "95% CI")] = f"[{t['ci_low']:.{digits}f}, {t['ci_high']:.{digits}f}]"
        if t["compare_to"]:
            wide_tex[key][(str(t["column"]), "p")] = f"{t['p_value']:.3f}"
            wide_md[key][(str(t["column"]), "p")] = f"{t['p_value']:.3f} (vs {t['compare_to']})"
        if key in cited_rows:
            wide_tex[key][(str(t["column"]), "ours")] = wide_md[key][(str(t["column"]), "ours")] = CITED_TEXT
        for k in labels:
            wide_md[key][(k, "")] = str(t[f"label_{k}"])
            wide_tex[key][(k, "")] = _latex_escape(wide_md[key][(k, "")])
    rows = [str(r) for r in df["row"].cat.categories]
    oracle_rows = set(df.loc[df["oracle"], "row"].astype(str)) if "oracle" in df.columns else set()

    def mark(r: str, tex: bool) -> str:
        return ((ORACLE_MARK_TEX if tex else f" {ORACLE_MARK}") * (r in oracle_rows)
                + (CITED_MARK_TEX if tex else f" {CITED_MARK}") * (r in cited_rows))

    tex = _ordered(pd.DataFrame.from_dict(wide_tex, orient="index").reindex(rows).fillna(""), df, labels)
    tex.columns = pd.MultiIndex.from_tuples(tex.columns, names=["", ""])
    tex.index = [_latex_escape(r) + mark(r, True) for r in tex.index]
    tex.columns = pd.MultiIndex.from_tuples([(_latex_escape(a), b) for a, b in tex.columns])
    rule = caption_rule(spec, oracle=bool(oracle_rows))
    rule = " ".join(x for x in (rule, trials_note(spec, df), chance_note(spec)) if x)
    caption = (_latex_escape(spec.get("title", spec["name"])) + ". "
               + _latex_escape(rule).replace(ORACLE_MARK, ORACLE_MARK_TEX).replace(CITED_MARK, CITED_MARK_TEX + "{}"))
    latex = tex.style.to_latex(hrules=True, column_format="l" + "r" * tex.shape[1], multicol_align="c",
                               caption=caption, label=f"tab:{spec['name']}", position="htbp")
    write_text(out_tex, latex)
    csv = df.drop(columns=["_cells"])
    write_csv(out_csv, csv, float_format="%.6g")
    md = _ordered(pd.DataFrame.from_dict(wide_md, orient="index").reindex(rows).fillna(""), df, labels)
    md.columns = [f"{a} ({b})" if b else a for a, b in md.columns]
    md.index = [r + mark(r, False) for r in md.index]
    write_text(out_md, f"**{spec.get('title', spec['name'])}**\n\n{md.to_markdown()}\n\n_{rule}_\n")
    row_spec = {r["name"]: r for r in spec["rows"]}
    return {str(t["row"]) + " | " + str(t["column"]): {
        "value_mean": None if math.isnan(t["ours_mean"]) else t["ours_mean"],
        "value_std": None if math.isnan(t["ours_std"]) else t["ours_std"],
        "aggregation": spec.get("aggregate", "fold_mean_seed_mean_std"), "metric": t["metric"],
        **({"combine": spec.get("combine") or "pooled"} if combines_test_sets(row_spec[str(t["row"])]) else {}),
        "oracle_selection": bool(t.get("oracle", False)), **({"cited": True} if str(t["row"]) in cited_rows else {}),
        "scale": float(_col(next(c for c in spec["columns"] if c["name"] == str(t["column"])), "scale",
                            spec.get("scale", 1.0))), "runs": t["_cells"]} for _, t in df.iterrows()}


def _ordered(wide, df, labels=()):
    """Label columns first, then columns grouped by metric (spec order), sub-columns in a fixed order."""
    kinds = ["ours", "paper", "diff", "95\\% CI", "95% CI", "p"]
    cols = [(k, "") for k in labels]
    cols += [(str(c), k) for c in df["column"].cat.categories for k in kinds if (str(c), k) in wide.columns]
    return wide[cols]


def caption_rule(spec: Mapping[str, Any], oracle: bool = False) -> str:
    agg = AGGREGATIONS[spec.get("aggregate", "fold_mean_seed_mean_std")]
    parts = [f"Ours: {agg}."]
    if any(combines_test_sets(r) for r in spec.get("rows", [])):
        parts.append(f"Combined test sets ({spec.get('combine') or 'pooled'}): {COMBINE[spec.get('combine') or 'pooled']}.")
    parts.append("Paper: as reported; diff = ours - paper; dagger marks ours outside the paper's +/- band.")
    if oracle:
        parts.append(ORACLE_NOTE)
    if any(c.get("fusion") is not None for c in spec.get("columns", [])):
        parts.append(FUSION_NOTE)
    if _has_cited(spec):
        parts.append(CITED_NOTE)
    if (spec.get("stats") or {}).get("columns"):
        st = spec["stats"]
        parts.append(f"95% CI: percentile bootstrap over utterances resampled within folds ({st.get('bootstrap', 1000)} "
                     f"replicates, seed {st.get('seed', 0)}); p: two-sided paired bootstrap against the row named in "
                     "compare_to, same replicates.")
    parts += list(spec.get("notes", [])) + list(spec.get("notes_extra") or [])
    return " ".join(parts)


def trials_note(spec: Mapping[str, Any], df) -> str:
    """``pooled_seed_stats``: how many trials (seeds) each row pools, beside the paper's ``paper_trials``."""
    if spec.get("aggregate") != "pooled_seed_stats":
        return ""
    if "per_seed" not in df.columns:
        return ""
    stats = df[df["per_seed"].notna() & (df["n_seeds"] > 0)]
    per_row = {str(r): int(g["n_seeds"].max()) for r, g in stats.groupby("row", observed=True)}
    if not per_row:
        return ""
    counts = sorted(set(per_row.values()))
    paper = spec.get("paper_trials")
    ours = (f"{counts[0]} trials (seeds) per row" if len(counts) == 1
            else "trials (seeds) per row: " + ", ".join(f"{r} {n}" for r, n in per_row.items()))
    differs = paper is not None and counts != [int(paper)]
    return f"Ours: {ours}" + (f" (the paper: {paper})" if paper is not None else "") + (
        "; the statistics and the best subset are over these trials." if differs else ".")


def chance_note(spec: Mapping[str, Any]) -> str:
    """The chance level of the table's UA/UAR columns (``metric: uar``), so that a reader can place a number
    (the demo's above all) against it: 100/C for C classes, whatever the class balance."""
    cols = [str(c["name"]) for c in spec.get("columns", []) if c.get("metric") == "uar"]
    classes = spec.get("classes") or []
    if not cols or not classes:
        return ""
    names = "/".join(dict.fromkeys(c for c in cols if c in ("UA", "UAR"))) or "UAR"
    return (f"Chance level: {names} {100 / len(classes):.2f} ({len(classes)} classes; any classifier that ignores "
            "its input scores this, whatever the class balance).")


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _latex_escape(s: str) -> str:
    # Styler.to_latex does not escape index/column labels unless asked per element;
    # the labels come from config, so escape them here once.
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(s))


# --------------------------------------------------------------------------- corpus statistics
# A table of corpora rather than of runs (Lee et al. Table 1): config ``corpus_tables.<name>``,
# one column per corpus, counted from its manifest.  It shares the LaTeX escaping, the
# {corpora.<key>.name} filling and the sidecar check above, and records per cell the manifest it
# counted, in the ``runs`` list that ``emorepro trace`` walks (the manifest stands where a run's
# metrics.json would; fold "all").

CORPUS_STATS_RULE = ("Ours: counted from each corpus's manifest (utterances with a class label; speakers = distinct "
                     "speaker ids, f/m from the manifest's gender column; expression = the manifest's mode values, "
                     "most frequent first); percentages of the labelled utterances rounded by largest remainder so "
                     "that they sum to 100. Paper: as printed; diff = ours - paper.")


def percent_largest_remainder(counts: Mapping[str, int]) -> dict[str, int]:
    """Integer percentages that sum to 100 (largest remainder; ties by key).

    Why our own: plain rounding gives 20/30/31/20 for IEMOCAP's 1103/1636/1708/1084, which sums to
    101; the paper prints 20/29/31/20, which is exactly the largest-remainder apportionment.
    """
    from .corpus.synth_spon import label_counts

    return label_counts(dict(counts), 100) if sum(counts.values()) else {k: 0 for k in counts}


def fill_corpus_table_names(spec: Mapping[str, Any], corpora: Mapping[str, Mapping[str, Any]]) -> dict:
    """``{corpora.<key>.name}`` in a corpus table's title, notes and column names -> the corpus's name."""
    as_rows = {"name": spec.get("name", "?"), "title": spec.get("title", ""), "notes": list(spec.get("notes") or []),
               "rows": [{"name": c["name"]} for c in spec["columns"]]}
    filled = fill_corpus_names(as_rows, corpora)
    out = dict(spec, title=filled["title"], notes=filled["notes"])
    out["columns"] = [dict(c, name=r["name"]) for c, r in zip(spec["columns"], filled["rows"])]
    return out


def session_notes(used: Sequence[str], corpora: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One note per JTES-format corpus among ``used`` (or their union members): which speakers form its sessions."""
    from .corpus.jtes import describe_sessions

    seen: list[str] = []
    for c in used:
        for m in (corpora[c].get("members") or {c: None}) if c in corpora else []:
            if m not in seen and corpora.get(m, {}).get("format") == "jtes":
                seen.append(m)
    return [describe_sessions(corpora[m].get("sessions"), corpora[m].get("name") or m, m) for m in seen]


def corpus_table_spec(name: str, spec: Mapping[str, Any], corpora: Mapping[str, Mapping[str, Any]]) -> dict:
    """A corpus table's config ready to render: names filled, checked, and a note per JTES column
    saying which speakers form its sessions (config ``corpora.<corpus>.sessions``)."""
    from .corpus.jtes import describe_sessions

    check_corpus_table_spec({"name": name, **spec}, corpora)
    out = fill_corpus_table_names({"name": name, **spec}, corpora)
    for c in out["columns"]:
        cc = corpora[c["corpus"]]
        if cc.get("format") == "jtes":
            out["notes"] = [*out["notes"], describe_sessions(cc.get("sessions"), c["name"], c["corpus"])]
    return out


def check_corpus_table_spec(spec: Mapping[str, Any], corpora: Mapping[str, Any]) -> None:
    """Config errors of a corpus table, named by key, before anything runs."""
    key = f"config: corpus_tables.{spec.get('name', '?')}"
    names = [c["name"] for c in spec["columns"]]
    if len(set(names)) != len(names):
        raise InputError(f"{key}.columns: duplicate column names {names}")
    for i, c in enumerate(spec["columns"]):
        if c["corpus"] not in corpora:
            raise InputError(f"{key}.columns[{i}].corpus: {c['corpus']!r} is not a key of corpora")
        bad = sorted(set(c.get("reported") or {}) - {*spec["classes"], "utterances", "speakers", "language", "expression"})
        if bad:
            raise InputError(f"{key}.columns[{i}].reported: unknown key(s) {bad}; use the classes {list(spec['classes'])}, "
                             "utterances, speakers, language, expression")
    missing = sorted(set(spec["classes"]) - set(spec.get("class_names") or {}))
    if missing:
        raise InputError(f"{key}.class_names: no row name for class(es) {missing}")


def _count_text(n: float, pct: float | None = None) -> str:
    if math.isnan(n):
        return ""
    return f"{int(n):,}" + (f" ({int(pct)}%)" if pct is not None and not math.isnan(pct) else "")


def corpus_stats_table(spec: Mapping[str, Any], manifests: Mapping[str, str], *, verify_hashes: bool = True):
    """One tidy row per (table row, corpus column): ours counted from the manifest, the paper's beside it.

    ``manifests`` maps each column's ``corpus`` to its ``manifest.csv``.  Rows: Language, one per
    class (``class_names``), No. of utterances, No. of speakers, Emotional expression.
    """
    import pandas as pd

    classes = list(spec["classes"])
    names = spec["class_names"]
    tidy = []
    for c in spec["columns"]:
        path = manifests[c["corpus"]]
        if not os.path.exists(path):
            raise InputError(f"table {spec['name']}: column {c['name']!r}: missing manifest {path}")
        if verify_hashes:
            check_against_sidecar(path)
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = sorted({"label", "speaker", "gender", "mode"} - set(df.columns))
        if missing:
            raise InputError(f"{path}:1: manifest lacks column(s) {missing}")
        kept = df[df["label"] != ""]
        other = sorted(set(kept["label"]) - set(classes))
        if other:
            raise InputError(f"{path}: labels {other} are not among the table's classes {classes} "
                             f"(config: corpus_tables.{spec['name']}.classes)")
        counts = {k: int((kept["label"] == k).sum()) for k in classes}
        pct = percent_largest_remainder(counts)
        spk = kept.groupby("speaker")["gender"].agg(lambda g: "/".join(sorted(set(g))))
        two = spk[spk.str.contains("/")]
        if len(two):
            raise InputError(f"{path}: speaker {two.index[0]!r} has utterances of genders {two.iloc[0]}")
        n_f, n_m = int((spk == "F").sum()), int((spk == "M").sum())
        modes = kept["mode"].value_counts()
        rep = c.get("reported") or {}
        cells: list[dict] = []

        def add(row, stat, ours, ours_pct, ours_text, paper, paper_text, paper_pct=math.nan, cells=cells):
            cells.append({"row": row, "stat": stat, "ours": ours, "ours_percent": ours_pct, "ours_text": ours_text,
                          "paper": paper, "paper_percent": paper_pct, "paper_text": paper_text, "diff": ours - paper})

        add("Language", "config: language", math.nan, math.nan, c.get("language") or "", math.nan,
            str(rep.get("language") or ""))
        for k in classes:
            r = rep.get(k)
            p, p_pct = (float(r[0]), float(r[1])) if isinstance(r, (list, tuple)) else (
                (float(r), math.nan) if r is not None else (math.nan, math.nan))
            add(names[k], f"label == {k}", float(counts[k]), float(pct[k]), _count_text(counts[k], pct[k]), p,
                _count_text(p, None if math.isnan(p_pct) else p_pct), p_pct)
        total = rep.get("utterances")
        add("No. of utterances", "labelled utterances", float(len(kept)), math.nan, _count_text(len(kept)),
            math.nan if total is None else float(total), "" if total is None else _count_text(float(total)))
        s = rep.get("speakers")
        add("No. of speakers", "distinct speakers (f, m)", float(len(spk)), math.nan, f"{len(spk)} (f:{n_f}, m:{n_m})",
            math.nan if s is None else float(s[0]), "" if s is None else f"{s[0]} (f:{s[1]}, m:{s[2]})")
        add("Emotional expression", "mode values", math.nan, math.nan, " & ".join(modes.index), math.nan,
            str(rep.get("expression") or ""))
        tidy += [{**x, "column": c["name"], "corpus": c["corpus"], "manifest": path} for x in cells]
    rows = ["Language", *[names[k] for k in classes], "No. of utterances", "No. of speakers", "Emotional expression"]
    out = pd.DataFrame(tidy)[["row", "column", "corpus", "stat", "ours", "ours_percent", "ours_text", "paper",
                              "paper_percent", "paper_text", "diff", "manifest"]]
    out["row"] = pd.Categorical(out["row"], rows, ordered=True)
    out["column"] = pd.Categorical(out["column"], [c["name"] for c in spec["columns"]], ordered=True)
    return out.sort_values(["row", "column"]).reset_index(drop=True)


def render_corpus_stats(spec: Mapping[str, Any], df, out_tex: str, out_csv: str, out_md: str) -> dict:
    """Write the LaTeX/CSV/Markdown twins of a corpus table; return the cell map for the sidecar."""
    import pandas as pd

    kinds = ("ours", "paper", "diff")
    wide: dict[str, dict] = {}
    for _, t in df.iterrows():
        cell = wide.setdefault(str(t["row"]), {})
        cell[(str(t["column"]), "ours")] = t["ours_text"]
        cell[(str(t["column"]), "paper")] = t["paper_text"]
        cell[(str(t["column"]), "diff")] = "" if math.isnan(t["diff"]) else f"{int(t['diff']):+,}"
    cols = [(str(c), k) for c in df["column"].cat.categories for k in kinds]
    rows = [str(r) for r in df["row"].cat.categories]
    table = pd.DataFrame.from_dict(wide, orient="index").reindex(index=rows, columns=cols).fillna("")
    caption = spec.get("title", spec["name"]) + ". " + " ".join([CORPUS_STATS_RULE, *spec.get("notes", [])])
    tex = table.copy()
    tex.index = [_latex_escape(r) for r in tex.index]
    tex.columns = pd.MultiIndex.from_tuples([(_latex_escape(a), b) for a, b in cols])
    tex = tex.map(_latex_escape)
    latex = tex.style.to_latex(hrules=True, column_format="l" + "r" * tex.shape[1], multicol_align="c",
                               caption=_latex_escape(caption), label=f"tab:{spec['name']}", position="htbp")
    write_text(out_tex, latex)
    write_csv(out_csv, df, float_format="%.6g")
    md = table.copy()
    md.columns = [f"{a} ({b})" for a, b in cols]
    write_text(out_md, f"**{spec.get('title', spec['name'])}**\n\n{md.to_markdown()}\n\n"
                       f"_{' '.join([CORPUS_STATS_RULE, *spec.get('notes', [])])}_\n")
    return {f"{t['row']} | {t['column']}": {
        "value_mean": None if math.isnan(t["ours"]) else t["ours"], "value_std": None, "text": t["ours_text"],
        "percent": None if math.isnan(t["ours_percent"]) else t["ours_percent"], "aggregation": "corpus_stats",
        "metric": t["stat"], "scale": 1.0,
        "runs": [{"metrics": t["manifest"], "fold": "all", "seed": "-", "value": t["ours_text"]}]}
        for _, t in df.iterrows()}


# --------------------------------------------------------------------------- augmented rows (MMER's ACL)


def augmentation_notes(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict:
    """``spec`` with a note per augmented corpus its rows train with (experiments' ``augment``): how the
    copies were made, so that a table built on stand-ins (the demo's paraphrases spoken by espeak-ng) says so
    where its numbers are read.  Written from the config the rule runs with, never by hand."""
    from .config import row_experiments

    corpora, experiments = config.get("corpora") or {}, config.get("experiments") or {}
    used: dict[str, list[str]] = {}
    for r in spec["rows"]:
        for x in row_experiments(r):
            p, _, v = x.partition("/")
            a = (experiments.get(p, {}).get(v) or {}).get("augment")
            if a:
                used.setdefault(a, []).append(r["name"])
    notes = list(spec.get("notes", []))
    for a, rows in used.items():
        aug = corpora[a]["augment"]
        bt, tts = aug.get("back_translation") or {}, aug.get("tts") or {}
        src = aug.get("source")
        text = {"nllb": (f"back-translated by NLLB-200 ({bt.get('src_lang', 'eng_Latn')} -> {bt.get('pivot_lang', 'fra_Latn')} "
                         f"-> back, {bt.get('num_return_sequences', 5)} sampled returns per direction)"),
                "paraphrase": "reworded by the offline paraphrase backend (rule-based, keeping the emotion words): "
                              "NOT back-translation",
                "none": "the source transcript unchanged (no back-translation)"}.get(bt.get("backend"), str(bt.get("backend")))
        if bt.get("demo"):
            text += " with a tiny random-initialised NLLB (it exercises the code; its texts are word salad)"
        voice = {"yourtts": f"spoken by YourTTS (d-vector: the target speaker's {tts.get('speaker_embedding', 'same_label')} "
                            "utterances)",
                 "espeak": "spoken by espeak-ng in the target speaker's voice with the label's prosody, not by "
                           "YourTTS"}.get(tts.get("backend"), str(tts.get("backend")))
        if tts.get("demo"):
            voice += " with a tiny random-initialised YourTTS (noise, not speech)"
        note = (f"ACL rows ({', '.join(rows)}): each training utterance is paired, per epoch, with one copy of corpus "
                f"{a}, {text}, {voice}; one copy per other session, voiced by a speaker of that session, and fold k "
                "uses only copies voiced by none of its test speakers.")
        if tts.get("backend") == "espeak" and (corpora.get(src) or {}).get("synth"):
            note += (f" The source corpus {src} is itself spoken by espeak-ng, so its espeak copies are in-distribution: "
                     "ACL is easier here than with YourTTS on real speech.")
        notes.append(note)
    return {**spec, "notes": notes}
