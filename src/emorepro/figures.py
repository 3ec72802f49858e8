"""Confusion matrices: counts summed over runs, row-normalised percentages (as Lee Fig. 4).

Written as a figure (PDF and PNG, matplotlib), a LaTeX tabular twin and a CSV, with the
class order from config.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .io import InputError, atomic_path, read_json, write_csv, write_text

# Display names for the usual IEMOCAP class codes; other codes are shown as they are.
CLASS_NAMES = {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad"}


def summed_confusion(metrics_files: Sequence[str], classes: Sequence[str], corpus: str | None = None) -> np.ndarray:
    """Sum the ``confusion`` counts of several runs, re-ordered to ``classes``.

    With ``corpus``, only that corpus's test utterances (``by_corpus.<corpus>.confusion``)."""
    from .provenance import check_against_sidecar

    total = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for f in metrics_files:
        check_against_sidecar(f)
        m = read_json(f)
        order = [m["classes"].index(c) if c in m["classes"] else None for c in classes]
        if None in order:
            raise InputError(f"{f}: classes {m['classes']} do not include all of {list(classes)}")
        if corpus is not None and corpus not in m.get("by_corpus", {}):
            raise InputError(f"{f}: no metrics for corpus {corpus!r} (by_corpus has {sorted(m.get('by_corpus', {}))})")
        cm = np.asarray(m["by_corpus"][corpus]["confusion"] if corpus is not None else m["confusion"], dtype=np.int64)
        total += cm[np.ix_(order, order)]
    return total


def reorder(counts: np.ndarray, classes: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """A confusion matrix in ``classes`` order (rows truth, columns predicted) re-ordered to ``order``
    (e.g. a paper's class order for its figure: Lee et al. Fig. 4 reads angry, happy, neutral, sad)."""
    missing = [c for c in order if c not in classes]
    if missing or len(set(order)) != len(classes):
        raise InputError(f"config: class order {list(order)} must list each of {list(classes)} once")
    idx = [list(classes).index(c) for c in order]
    return np.asarray(counts)[np.ix_(idx, idx)]


def row_percent(counts: np.ndarray) -> np.ndarray:
    rows = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, 100.0 * counts / np.maximum(rows, 1), np.nan)


def _save(fig, out_pdf: str, out_png: str) -> None:
    """Lay out, write the PDF and PNG atomically, close.  No creation date: the same counts give the same bytes."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(out_pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def write_confusion(counts: np.ndarray, classes: Sequence[str], title: str, out_pdf: str, out_png: str,
                    out_tex: str, out_csv: str, reported: dict[str, Sequence[float]] | None = None) -> None:
    """Figure, CSV and LaTeX twin of a confusion matrix (rows truth, columns predicted, in ``classes`` order).

    ``reported``: the paper's row percentages per truth class (same column order), written to the CSV
    beside ours (``paper_<c>_percent``, ``diff_<c>``) and to the LaTeX as a comment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    if reported:   # checked before anything is written
        bad = [c for c in classes if c not in reported or len(reported[c]) != len(classes)]
        if bad:
            raise InputError(f"config: the reported confusion needs a row of {len(classes)} percentages for {bad}")
        paper = np.array([[float(x) for x in reported[c]] for c in classes])
    names = [CLASS_NAMES.get(c, c) for c in classes]
    pct = row_percent(counts)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 1.5, 1.1 * len(classes) + 1.2))
    ax.imshow(np.nan_to_num(pct), cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{pct[i, j]:.1f}%\n({counts[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if pct[i, j] > 60 else "black")
    ax.set_xticks(range(len(classes)), names)
    ax.set_yticks(range(len(classes)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=9)
    _save(fig, out_pdf, out_png)
    df = pd.DataFrame(counts, index=pd.Index(classes, name="truth"), columns=classes)
    pct_df = pd.DataFrame(pct, index=classes, columns=[f"{c}_percent" for c in classes])
    parts = [df, pct_df]
    paper_line = ""
    if reported:
        parts += [pd.DataFrame(paper, index=classes, columns=[f"paper_{c}_percent" for c in classes]),
                  pd.DataFrame(pct - paper, index=classes, columns=[f"diff_{c}" for c in classes])]
        paper_line = "% paper (row %): " + "; ".join(f"{c}: {' '.join(f'{x:.2f}' for x in reported[c])}"
                                                    for c in classes) + "\n"
    write_csv(out_csv, pd.concat(parts, axis=1).reset_index(), float_format="%.4g")
    cells = pd.DataFrame([[f"{pct[i, j]:.1f} ({counts[i, j]})" for j in range(len(classes))]
                          for i in range(len(classes))], index=names, columns=names)
    tex = cells.style.to_latex(hrules=True, column_format="l" + "r" * len(classes))
    write_text(out_tex, "% " + title + ": row-normalised % (counts); rows = ground truth, columns = predicted\n"
               + paper_line + tex)


# --------------------------------------------------------------------------- several matrices in one figure
# A paper figure that shows several experiments' confusion matrices side by side (Ghosh et al. Fig. 2:
# MMER and its ablations), config ``figures.<name>``: one panel per experiment, pooled over its runs as
# above, plus a bias statistic per panel and the paper's qualitative claims checked against it.


def bias_toward(counts: np.ndarray, classes: Sequence[str], cls: str) -> float:
    """Percent of the utterances of the *other* classes predicted as ``cls`` (the off-diagonal mass of
    ``cls``'s column over those rows): "the bias toward neutral" for ``cls = neu``."""
    k = list(classes).index(cls)
    others = [i for i in range(len(classes)) if i != k]
    n = counts[others].sum()
    return float(100.0 * counts[others, k].sum() / n) if n else float("nan")


def check_claims(bias: dict[str, float], claims: Sequence[dict]) -> list[dict]:
    """Each claim ``{claim, lower, higher}`` holds when panel ``lower`` has the smaller bias than ``higher``."""
    out = []
    for c in claims:
        lo, hi = bias[c["lower"]], bias[c["higher"]]
        holds = bool(lo < hi)
        out.append({"claim": c["claim"], "lower": c["lower"], "higher": c["higher"], "bias_lower": lo,
                    "bias_higher": hi, "difference": hi - lo, "holds": holds})
    return out


def write_confusion_panels(panels: Sequence[tuple[str, np.ndarray]], classes: Sequence[str], title: str,
                           bias_class: str, claims: Sequence[dict], notes: Sequence[str], out_pdf: str,
                           out_png: str, out_tex: str, out_csv: str, out_md: str) -> list[dict]:
    """One figure with a confusion matrix per panel (row-normalised %, counts beneath), a CSV of every
    panel's counts and bias, a LaTeX tabular twin and a Markdown caption with the claims' verdicts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    names = [CLASS_NAMES.get(c, c) for c in classes]
    bias = {p: bias_toward(c, classes, bias_class) for p, c in panels}
    verdicts = check_claims(bias, claims)
    n = len(panels)
    ncol = min(n, 4) if n != 4 else 2
    nrow = -(-n // ncol)
    size = 1.0 * len(classes) + 1.0
    fig, axes = plt.subplots(nrow, ncol, figsize=(size * ncol, size * nrow + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, counts) in zip(axes.flat, panels):
        pct = row_percent(counts)
        ax.imshow(np.nan_to_num(pct), cmap="Blues", vmin=0, vmax=100)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{pct[i, j]:.1f}%\n({counts[i, j]})", ha="center", va="center", fontsize=7,
                        color="white" if pct[i, j] > 60 else "black")
        ax.set_xticks(range(len(classes)), names, fontsize=7)
        ax.set_yticks(range(len(classes)), names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("ground truth", fontsize=7)
        ax.set_title(f"{name}\n{CLASS_NAMES.get(bias_class, bias_class)} bias {bias[name]:.1f}%", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, out_pdf, out_png)
    rows = []
    for name, counts in panels:
        pct = row_percent(counts)
        for i, c in enumerate(classes):
            rows.append({"panel": name, "truth": c, **{p: int(counts[i, j]) for j, p in enumerate(classes)},
                         **{f"{p}_percent": pct[i, j] for j, p in enumerate(classes)},
                         f"bias_toward_{bias_class}": bias[name]})
    write_csv(out_csv, pd.DataFrame(rows), float_format="%.4g")
    blocks = []
    for name, counts in panels:
        pct = row_percent(counts)
        cells = pd.DataFrame([[f"{pct[i, j]:.1f} ({counts[i, j]})" for j in range(len(classes))]
                              for i in range(len(classes))], index=names, columns=names)
        blocks.append(f"% {name}: {bias_class} bias {bias[name]:.2f}%\n"
                      + cells.style.to_latex(hrules=True, column_format="l" + "r" * len(classes)))
    write_text(out_tex, "% " + title + ": row-normalised % (counts); rows = ground truth, columns = predicted\n"
               + "\n".join(blocks))
    what = CLASS_NAMES.get(bias_class, bias_class)
    lines = [f"**{title}**", "",
             f"Bias toward {what}: the percentage of the other classes' test utterances predicted {what} "
             "(pooled over every fold and seed of the panel's experiment).", ""]
    lines += [f"* {name}: {bias[name]:.2f}%" for name, _ in panels]
    if verdicts:
        lines += ["", "The paper's claims, checked on these runs:", ""]
        lines += [f"* {v['claim']}: {v['lower']} {v['bias_lower']:.2f}% vs {v['higher']} {v['bias_higher']:.2f}% "
                  f"-> {'holds' if v['holds'] else 'does NOT hold'} here" for v in verdicts]
    if notes:
        lines += ["", *notes]
    write_text(out_md, "\n".join(lines) + "\n")
    return verdicts
