"""What a finished run shows a person: one line per table (its headline cell, ours vs the paper's) and a page.

``results/summary.txt`` is what ``make demo`` prints at its end: where each table is and its headline cell,
and the best subset of each fusion set.  ``results/summary.html`` renders every table (ours beside the
paper's, per cell) and every fusion result; the Snakemake report (``results/report.html``) shows it
under "Summary", beside the confusion matrices.  Both read only the tables' and fusion's CSVs.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping

from .io import InputError, write_text


def _num(x: Any, digits: int = 2) -> str:
    return "--" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.{digits}f}"


def _pm(mean: Any, std: Any, digits: int) -> str:
    """"mean ± std", or "mean" when there is no std (one seed, or the paper gives none)."""
    has_std = std is not None and not (isinstance(std, float) and math.isnan(std))
    return _num(mean, digits) + (f" ± {_num(std, digits)}" if has_std else "")


def _cell(r: Mapping[str, Any], digits: int) -> tuple[str, str]:
    """("ours [± std]", "paper [± std]") of one table CSV row."""
    return _pm(r["ours_mean"], r.get("ours_std"), digits), _pm(r["paper"], r.get("paper_std"), digits)


def _digits(values) -> int:
    """3 decimals for values below 1 in magnitude (CCC), else 2 (percentages): as the tables print them."""
    finite = [abs(v) for v in values if v == v]
    return 3 if finite and max(finite) <= 1 else 2


def headline(table_csv: str, row: str | None, column: str | None) -> dict:
    """The headline cell of a table: ``row``/``column``, or the first cell with a reported value."""
    import pandas as pd

    df = pd.read_csv(table_csv)
    if row is None:
        reported = df[df["paper"].notna()]
        pick = (reported if len(reported) else df).iloc[0]
    else:
        hit = df[(df["row"] == row) & (df["column"] == column)]
        if hit.empty:
            raise InputError(f"{table_csv}: no cell row {row!r}, column {column!r} (config: tables.<name>.headline)")
        pick = hit.iloc[0]
    digits = _digits(df[df["column"] == pick["column"]]["ours_mean"].tolist() + [pick["paper"]])
    ours, paper = _cell(pick.to_dict(), digits)
    return {"row": pick["row"], "column": pick["column"], "ours": ours, "paper": paper,
            "n_runs": int(pick["n_runs"]) if pick["n_runs"] == pick["n_runs"] else 0}


def corpus_headline(table_csv: str, row: str = "No. of utterances") -> str:
    """A corpus-statistics table's line: ``row`` of each corpus column, ours vs the paper's (as printed)."""
    import pandas as pd

    df = pd.read_csv(table_csv, keep_default_na=False)
    hit = df[df["row"] == row]
    if hit.empty:
        raise InputError(f"{table_csv}: no row {row!r}")
    cells = [f"{r['column']} ours {r['ours_text']}, paper {r['paper_text'] or '-'}" for r in hit.to_dict("records")]
    return f"{row}: " + "; ".join(cells)


def _table_html(name: str, title: str, table_csv: str) -> str:
    """The table as rows x columns, each cell "ours / paper"."""
    import pandas as pd

    df = pd.read_csv(table_csv)
    rows, cols = list(dict.fromkeys(df["row"])), list(dict.fromkeys(df["column"]))
    grid = pd.DataFrame("", index=rows, columns=cols)
    for col in cols:
        part = df[df["column"] == col]
        digits = _digits(part["ours_mean"].tolist() + part["paper"].tolist())
        for r in part.to_dict("records"):
            ours, paper = _cell(r, digits)
            grid.loc[r["row"], col] = f"{ours} / {paper}"
    return (f"<h2 id='{html.escape(name)}'>{html.escape(title or name)}</h2>\n<p>results/tables/{html.escape(name)}"
            ".{tex,csv,md}; each cell: ours / the paper's</p>\n" + grid.to_html(escape=True, border=0))


def _fusion_rows(fusion_csv: str):
    import pandas as pd

    df = pd.read_csv(fusion_csv)
    return df[[c for c in ("method", "k", "uar", "war", "subset") if c in df.columns]]


def write_summary(tables: Mapping[str, Mapping[str, Any]], fusion: Mapping[str, str], out_txt: str,
                  out_html: str, corpus_tables: Mapping[str, str] | None = None) -> list[str]:
    """``tables``: name -> {csv, title, headline: {row, column} or None}; ``fusion``: name -> its CSV;
    ``corpus_tables``: name -> the CSV of a corpus-statistics table (Lee et al. Table 1).

    Writes the text summary (returned as lines) and the HTML page."""
    lines = [f"Tables ({len(tables)}), with the headline cell of each, ours vs the paper's:"]
    for name, t in tables.items():
        h = headline(t["csv"], *((t["headline"] or {}).get(k) for k in ("row", "column")))
        where = str(Path(t["csv"]).with_suffix("")) + ".{tex,csv,md}"
        lines.append(f"  {where}  {h['row']} | {h['column']}: ours {h['ours']}, paper {h['paper']}  "
                     f"({h['n_runs']} runs)")
    if corpus_tables:
        lines.append(f"Corpus statistics ({len(corpus_tables)}), counted from the manifests, ours vs the paper's:")
        for name, csv in corpus_tables.items():
            lines.append(f"  {str(Path(csv).with_suffix(''))}.{{tex,csv,md}}  {corpus_headline(csv)}")
    if fusion:
        lines.append(f"Late fusion ({len(fusion)}), the best subset over all sizes, the smallest on ties (exact search; test UAR, "
                     "selected on the test set: see the honest rows of each CSV):")
    for name, csv in fusion.items():
        df = _fusion_rows(csv)
        exact = df[df["method"] == "exact"]
        # the best UAR; on ties the smallest subset (tiny demo runs often tie across sizes)
        best = exact.sort_values(["uar", "k"], ascending=[False, True]).iloc[0] if len(exact) else None
        text = f"k={best['k']} UAR {100 * best['uar']:.2f} ({best['subset']})" if best is not None else "no exact rows"
        lines.append(f"  {str(Path(csv).with_suffix(''))}.{{csv,json}}  {text}")
    write_text(out_txt, "\n".join(lines) + "\n")

    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>emorepro summary</title>",
             "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:90%}"
             "td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd} th{background:#f4f4f4}</style>",
             "</head><body><h1>emorepro: tables and fusion results</h1>",
             "<pre>" + html.escape("\n".join(lines)) + "</pre>"]
    parts += [_table_html(name, t.get("title", ""), t["csv"]) for name, t in tables.items()]
    for name, csv in fusion.items():
        parts.append(f"<h2 id='{html.escape(name)}'>Late fusion: {html.escape(name)}</h2>\n<p>{html.escape(csv)}</p>\n"
                     + _fusion_rows(csv).to_html(index=False, border=0, float_format=lambda x: f"{x:.4f}"))
    write_text(out_html, "\n".join(parts) + "\n</body></html>\n")
    return lines
