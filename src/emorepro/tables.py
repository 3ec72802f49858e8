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

#: rows cited from the literature (config ``rows[].cited``): no runs, only the paper's values (the smallest version
#: of the feature; the MMER branch adds the same key with label columns)
CITED_MARK = "\u00a7"                                       # section sign, after the row name
CITED_MARK_TEX = r"\S"
CITED_TEXT = "not reproduced"                                # what the "ours" cells of a cited row say
CITED_NOTE = (f"{CITED_MARK} Cited, not reproduced: the paper's value as it prints it (from the cited work, under "
              "that work's own protocol); nothing of it was run here.")

AGGREGATIONS = {
    "fold_mean_seed_mean_std": "mean over folds per seed, then mean +/- sample std (ddof=1) over seeds",
}

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


def build_table(spec: Mapping[str, Any], runs: Mapping[str, Sequence[RunRef]], *, verify_hashes: bool = True):
    """Aggregate runs into a tidy frame: one row per (table row, column).

    Raises :class:`InputError` naming the missing run, the tampered metrics file, or the
    reported key that matches no row/column.
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
    boot_rows = _load_bootstrap_rows(spec, runs) if stat_cols else {}
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
        for c in columns:
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
                         "runs": ";".join(str(Path(x["metrics"]).parent) for x in cells), "_cells": cells})
    df = pd.DataFrame(tidy)
    df["row"] = pd.Categorical(df["row"], row_names, ordered=True)
    df["column"] = pd.Categorical(df["column"], col_names, ordered=True)
    return df.sort_values(["row", "column"]).reset_index(drop=True)


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
    rows = [str(r) for r in df["row"].cat.categories]
    oracle_rows = set(df.loc[df["oracle"], "row"].astype(str)) if "oracle" in df.columns else set()
    cited_rows = {r["name"] for r in spec["rows"] if r.get("cited")}
    for r in cited_rows:
        for w in (wide_tex, wide_md):
            for cell in [c for c in w.get(r, {}) if c[1] == "ours"]:
                w[r][cell] = CITED_TEXT
    tex = _ordered(pd.DataFrame.from_dict(wide_tex, orient="index").reindex(rows).fillna(""), df)
    tex.columns = pd.MultiIndex.from_tuples(tex.columns, names=["", ""])
    tex.index = [_latex_escape(r) + (ORACLE_MARK_TEX if r in oracle_rows else "")
                 + (CITED_MARK_TEX if r in cited_rows else "") for r in tex.index]
    tex.columns = pd.MultiIndex.from_tuples([(_latex_escape(a), b) for a, b in tex.columns])
    caption = (_latex_escape(spec.get("title", spec["name"])) + ". "
               + _latex_escape(caption_rule(spec, oracle=bool(oracle_rows))).replace(ORACLE_MARK, ORACLE_MARK_TEX)
               .replace(CITED_MARK, CITED_MARK_TEX + "{}"))
    latex = tex.style.to_latex(hrules=True, column_format="l" + "r" * tex.shape[1], multicol_align="c",
                               caption=caption, label=f"tab:{spec['name']}", position="htbp")
    write_text(out_tex, latex)
    csv = df.drop(columns=["_cells"])
    write_csv(out_csv, csv, float_format="%.6g")
    md = _ordered(pd.DataFrame.from_dict(wide_md, orient="index").reindex(rows).fillna(""), df)
    md.columns = [f"{a} ({b})" for a, b in md.columns]
    md.index = [r + (f" {ORACLE_MARK}" if r in oracle_rows else "") + (f" {CITED_MARK}" if r in cited_rows else "")
                for r in md.index]
    write_text(out_md, f"**{spec.get('title', spec['name'])}**\n\n{md.to_markdown()}\n\n"
                       f"_{caption_rule(spec, oracle=bool(oracle_rows))}_\n")
    row_spec = {r["name"]: r for r in spec["rows"]}
    return {str(t["row"]) + " | " + str(t["column"]): {
        "value_mean": None if math.isnan(t["ours_mean"]) else t["ours_mean"],
        "value_std": None if math.isnan(t["ours_std"]) else t["ours_std"],
        "aggregation": spec.get("aggregate", "fold_mean_seed_mean_std"), "metric": t["metric"],
        **({"combine": spec.get("combine") or "pooled"} if combines_test_sets(row_spec[str(t["row"])]) else {}),
        "oracle_selection": bool(t.get("oracle", False)),
        "scale": float(_col(next(c for c in spec["columns"] if c["name"] == str(t["column"])), "scale",
                            spec.get("scale", 1.0))), "runs": t["_cells"]} for _, t in df.iterrows()}


def _ordered(wide, df):
    """Columns grouped by metric (spec order), sub-columns in a fixed order, whatever row came first."""
    kinds = ["ours", "paper", "diff", "95\\% CI", "95% CI", "p"]
    cols = [(str(c), k) for c in df["column"].cat.categories for k in kinds if (str(c), k) in wide.columns]
    return wide[cols]


def caption_rule(spec: Mapping[str, Any], oracle: bool = False) -> str:
    agg = AGGREGATIONS[spec.get("aggregate", "fold_mean_seed_mean_std")]
    parts = [f"Ours: {agg}."]
    if any(combines_test_sets(r) for r in spec.get("rows", [])):
        parts.append(f"Combined test sets ({spec.get('combine') or 'pooled'}): {COMBINE[spec.get('combine') or 'pooled']}.")
    parts.append("Paper: as reported; diff = ours - paper; dagger marks ours outside the paper's +/- band.")
    if oracle:
        parts.append(ORACLE_NOTE)
    if any(r.get("cited") for r in spec.get("rows", [])):
        parts.append(CITED_NOTE)
    if (spec.get("stats") or {}).get("columns"):
        st = spec["stats"]
        parts.append(f"95% CI: percentile bootstrap over utterances resampled within folds ({st.get('bootstrap', 1000)} "
                     f"replicates, seed {st.get('seed', 0)}); p: two-sided paired bootstrap against the row named in "
                     "compare_to, same replicates.")
    parts += list(spec.get("notes", []))
    return " ".join(parts)


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
