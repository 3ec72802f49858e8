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


def row_percent(counts: np.ndarray) -> np.ndarray:
    rows = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, 100.0 * counts / np.maximum(rows, 1), np.nan)


def write_confusion(counts: np.ndarray, classes: Sequence[str], title: str, out_pdf: str, out_png: str,
                    out_tex: str, out_csv: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

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
    fig.tight_layout()
    with atomic_path(out_pdf) as tmp:
        # No creation date: the same counts give the same bytes.
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)
    df = pd.DataFrame(counts, index=pd.Index(classes, name="truth"), columns=classes)
    pct_df = pd.DataFrame(pct, index=classes, columns=[f"{c}_percent" for c in classes])
    write_csv(out_csv, pd.concat([df, pct_df], axis=1).reset_index(), float_format="%.4g")
    cells = pd.DataFrame([[f"{pct[i, j]:.1f} ({counts[i, j]})" for j in range(len(classes))]
                          for i in range(len(classes))], index=names, columns=names)
    tex = cells.style.to_latex(hrules=True, column_format="l" + "r" * len(classes))
    write_text(out_tex, "% " + title + ": row-normalised % (counts); rows = ground truth, columns = predicted\n" + tex)
