"""Scores from per-utterance predictions, computed with scikit-learn.

UAR (unweighted average recall) is the mean of the per-class recalls over the classes
present in the ground truth; WAR (weighted average recall) is plain accuracy.  Several
SER codebases swap the two names; both are taken from scikit-learn here, and the test
suite checks them against hand-counted confusion matrices.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .io import InputError


def uar(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (sklearn macro recall)."""
    from sklearn.metrics import recall_score

    y_true = np.asarray(y_true, dtype=int)
    return float(recall_score(y_true, np.asarray(y_pred, dtype=int), labels=sorted(set(y_true.tolist())),
                              average="macro", zero_division=0))


def war(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Accuracy (weighted average recall)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)))


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    from sklearn.metrics import confusion_matrix, recall_score

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    present = sorted(set(y_true.tolist()))
    all_idx = list(range(len(classes)))
    per_class = recall_score(y_true, y_pred, labels=all_idx, average=None, zero_division=0)
    return {
        "uar": uar(y_true, y_pred),
        "war": war(y_true, y_pred),
        "recall": {c: (float(per_class[i]) if i in present else None) for i, c in enumerate(classes)},
        "support": {c: int((y_true == i).sum()) for i, c in enumerate(classes)},
        "confusion": confusion_matrix(y_true, y_pred, labels=all_idx).tolist(),
        "classes": list(classes),
        "n": int(len(y_true)),
    }


def ccc(x, y) -> float:
    """Concordance correlation coefficient, with the squared mean difference (Lin 1989).

    Ispas et al.'s Eq. 2 omits the square; this is the standard definition.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return float(2 * cov / (x.var() + y.var() + (mx - my) ** 2))


def corpus_metrics(df, classes: Sequence[str], corpus: str | None = None) -> dict:
    """Per-corpus metrics of a predictions frame, their mean over corpora, and style accuracy.

    Rows belong to the corpus named in their ``corpus`` column (a union corpus's runs) or,
    without that column, all to ``corpus``.  Returns ``by_corpus.<name>`` (the
    :func:`classification_metrics` of that corpus's rows, plus ``style_accuracy`` when the
    frame has ``style``/``style_pred``), ``corpus_mean`` (``uar``, ``war`` and per-class
    ``recall`` averaged over corpora with equal weight: the ``equal_weight`` reading of Zhang et
    al.'s Table 3, "averaged over the two datasets"; also ``style_accuracy``) and, with a style
    head, ``style`` (``accuracy``, ``n`` pooled over all rows).  The pooled reading, which the
    paper's numbers support, is the whole-split metrics (:func:`emorepro.tables.combine`).
    """
    if "corpus" in df.columns:
        groups = [(str(name), g) for name, g in df.groupby("corpus", sort=True)]
    elif corpus is not None:
        groups = [(corpus, df)]
    else:
        return {}
    has_style = {"style", "style_pred"} <= set(df.columns)
    by = {}
    for name, g in groups:
        by[name] = classification_metrics(g["label"].to_numpy(), g["pred"].to_numpy(), classes)
        if has_style:
            by[name]["style_accuracy"] = float((g["style"] == g["style_pred"]).mean())
    rec = {c: [m["recall"][c] for m in by.values() if m["recall"][c] is not None] for c in classes}
    out = {"by_corpus": by, "corpus_mean": {
        "uar": float(np.mean([m["uar"] for m in by.values()])),
        "war": float(np.mean([m["war"] for m in by.values()])),
        "recall": {c: (float(np.mean(v)) if v else None) for c, v in rec.items()},
        "corpora": sorted(by)}}
    if has_style:
        out["corpus_mean"]["style_accuracy"] = float(np.mean([m["style_accuracy"] for m in by.values()]))
        out["style"] = {"accuracy": float((df["style"] == df["style_pred"]).mean()), "n": int(len(df))}
    return out


def score_predictions(pred_csv: str, classes: Sequence[str], split: str = "test", corpus: str | None = None) -> dict:
    """Metrics of one run's ``predictions.csv`` for one split (pooled, and per corpus: :func:`corpus_metrics`)."""
    import pandas as pd

    df = pd.read_csv(pred_csv)
    missing = [c for c in ("split", "label", "pred") if c not in df.columns]
    if missing:   # e.g. GMP-ATL's stage 2 (masked prediction of frame labels) predicts no emotion class
        raise InputError(f"{pred_csv}: no column {', '.join(missing)}: not a run's emotion predictions "
                         f"(columns: {', '.join(df.columns)}); nothing to score")
    df = df[df["split"] == split]
    if df.empty:
        raise ValueError(f"{pred_csv}: no rows for split {split!r}")
    out = classification_metrics(df["label"].to_numpy(), df["pred"].to_numpy(), classes)
    out.update(corpus_metrics(df, classes, corpus))
    for dim in ("valence", "arousal"):
        if f"{dim}_pred" in df.columns and df[f"{dim}_pred"].notna().all():
            out[f"ccc_{dim}"] = ccc(df[f"{dim}_pred"], df[f"{dim}_true"])
    return out
