"""Statistics beyond the papers: bootstrap confidence intervals and paired tests.

Method (documented in every table caption that uses it):

* **Bootstrap CI.**  One replicate resamples, with replacement, the test utterances
  *within each fold* (so each fold keeps its size and the folds stay disjoint), using the
  same indices for every seed of the row (the seeds are predictions on the same
  utterances).  The cell's statistic is recomputed exactly as the table aggregates it
  (metric per fold, mean over folds per seed, mean over seeds).  The 95% interval is the
  2.5th and 97.5th percentiles over ``n`` replicates (percentile bootstrap), seeded.
* **Paired bootstrap test** between a row and the row it is compared with (same corpus and
  folds): the same resampled indices are applied to both rows, giving the distribution
  of the difference; the two-sided p-value is ``2 * min(P(d <= 0), P(d >= 0))``, floored
  at ``1 / n``.

The metrics are recomputed with numpy from the predictions (``uar``, ``war``,
``recall.<class>``): scikit-learn's per-call overhead would make 1,000 replicates x runs x
folds slow, and the formulas are tested against scikit-learn.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

SUPPORTED = ("uar", "war")


def _metric(y: np.ndarray, p: np.ndarray, metric: str, n_classes: int, classes: Sequence[str]) -> float:
    if metric == "war":
        return float((y == p).mean())
    support = np.bincount(y, minlength=n_classes)
    correct = np.bincount(y[y == p], minlength=n_classes)
    if metric == "uar":
        present = support > 0
        return float((correct[present] / support[present]).mean())
    if metric.startswith("recall."):
        c = list(classes).index(metric.split(".", 1)[1])
        return float(correct[c] / support[c]) if support[c] else np.nan
    raise ValueError(f"bootstrap: unsupported metric {metric!r}")


def supported(metric: str) -> bool:
    return metric in SUPPORTED or metric.startswith("recall.")


def load_row(pred_files: Mapping[tuple[int, int], str], corpus: str | None = None) -> dict:
    """(seed, fold) -> predictions.csv  ->  {seed: {fold: (utt_ids, y, p)}} for the test split.

    ``corpus`` keeps only that member corpus's utterances (the ``corpus`` column of a union corpus's runs)."""
    import pandas as pd

    out: dict = {}
    for (seed, fold), f in pred_files.items():
        df = pd.read_csv(f)
        df = df[df["split"] == "test"]
        if corpus is not None:
            df = df[df["corpus"] == corpus]
        out.setdefault(seed, {})[fold] = (df["utt_id"].to_numpy(), df["label"].to_numpy(int), df["pred"].to_numpy(int))
    return out


def _aggregate(row: dict, idx: Mapping[int, np.ndarray], metric: str, classes) -> float:
    per_seed = []
    for seed in sorted(row):
        vals = [_metric(row[seed][f][1][idx[f]], row[seed][f][2][idx[f]], metric, len(classes), classes)
                for f in sorted(row[seed])]
        per_seed.append(np.nanmean(vals))
    return float(np.mean(per_seed))


def _replicates(folds_n: Mapping[int, int], n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield {f: rng.integers(0, m, m) for f, m in sorted(folds_n.items())}


def _fold_sizes(row: dict) -> dict[int, int]:
    first = row[sorted(row)[0]]
    return {f: len(v[0]) for f, v in first.items()}


def bootstrap_ci(row: dict, metric: str, classes, n: int = 1000, seed: int = 0, level: float = 0.95):
    vals = np.array([_aggregate(row, idx, metric, classes) for idx in _replicates(_fold_sizes(row), n, seed)])
    a = (1 - level) / 2
    return float(np.nanquantile(vals, a)), float(np.nanquantile(vals, 1 - a))


def paired_test(row_a: dict, row_b: dict, metric: str, classes, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Observed difference (a - b) and the two-sided paired-bootstrap p-value."""
    sizes = _fold_sizes(row_a)
    if sizes != _fold_sizes(row_b):
        raise ValueError("paired test: the two rows do not cover the same folds and utterances")
    for f in sizes:
        ua = row_a[sorted(row_a)[0]][f][0]
        ub = row_b[sorted(row_b)[0]][f][0]
        if not np.array_equal(ua, ub):
            raise ValueError(f"paired test: fold {f} lists different utterances in the two rows")
    full = {f: np.arange(m) for f, m in sizes.items()}
    obs = _aggregate(row_a, full, metric, classes) - _aggregate(row_b, full, metric, classes)
    d = np.array([_aggregate(row_a, idx, metric, classes) - _aggregate(row_b, idx, metric, classes)
                  for idx in _replicates(sizes, n, seed)])
    p = 2 * min((d <= 0).mean(), (d >= 0).mean())
    return float(obs), float(min(1.0, max(p, 1.0 / n)))
