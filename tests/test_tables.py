"""Tables: aggregation, reported-vs-reproduced, LaTeX that compiles, and the audit trail."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from emorepro import steps
from emorepro.cli import main
from emorepro.io import InputError
from emorepro.provenance import now, write_provenance

CLASSES = ["neu", "hap", "ang", "sad"]
SPEC = {
    "name": "toy_table", "paper": "toy", "title": "Toy table: 50% & more_underscores", "aggregate": "fold_mean_seed_mean_std",
    "scale": 100, "digits": 2,
    "columns": [{"name": "UA", "metric": "uar"}, {"name": "WA", "metric": "war"}, {"name": "Sad", "metric": "recall.sad"}],
    "rows": [{"name": "Model A", "experiment": "toy/a", "reported": {"UA": [60.0, 0.5], "WA": 61.0}},
             {"name": "Model_B", "experiment": "toy/b", "reported": {"UA": 40.0}}],
    "notes": ["A note with 5% and a_b."],
}


def _make_runs(tmp_path, accuracy):
    """Score synthetic predictions for 2 seeds x 3 folds; returns runs as the Snakefile passes them."""
    rng = np.random.default_rng(0)
    runs = []
    for seed in (1, 2):
        for fold in (1, 2, 3):
            d = tmp_path / f"runs/{accuracy}/fold{fold}/seed{seed}"
            d.mkdir(parents=True)
            y = rng.integers(0, 4, 60)
            p = np.where(rng.random(60) < accuracy, y, rng.integers(0, 4, 60))
            pd.DataFrame({"utt_id": [f"u{i}" for i in range(60)], "fold": fold, "split": "test", "label": y,
                          "pred": p}).to_csv(d / "predictions.csv", index=False)
            write_provenance(d, rule="train", params={"fold": fold}, seed=seed, inputs=None,
                             outputs=[d / "predictions.csv"], started=now())
            steps.score(str(d / "predictions.csv"), str(d / "metrics.json"), classes=CLASSES, fold=fold, seed=seed)
            runs.append({"metrics": str(d / "metrics.json"), "fold": fold, "seed": seed})
    return runs


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = {"Model A": _make_runs(tmp_path, 0.7), "Model_B": _make_runs(tmp_path, 0.4)}
    out = tmp_path / "tables"
    steps.table(SPEC, runs, str(out / "toy_table.tex"), str(out / "toy_table.csv"), str(out / "toy_table.md"))
    return out, runs


def test_cells_aggregate_fold_means_over_seeds(table):
    out, runs = table
    df = pd.read_csv(out / "toy_table.csv")
    ua = df[(df["row"] == "Model A") & (df["column"] == "UA")].iloc[0]
    per_seed = []
    for seed in (1, 2):
        per_seed.append(np.mean([json.load(open(r["metrics"]))["uar"] * 100 for r in runs["Model A"] if r["seed"] == seed]))
    assert ua["ours_mean"] == pytest.approx(np.mean(per_seed))
    assert ua["ours_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert ua["paper"] == 60.0 and ua["paper_std"] == 0.5
    assert ua["diff"] == pytest.approx(ua["ours_mean"] - 60.0)
    assert bool(ua["outside_paper_band"]) == (abs(ua["diff"]) > 0.5)
    assert ua["n_runs"] == 6 and ua["n_seeds"] == 2
    wa_b = df[(df["row"] == "Model_B") & (df["column"] == "WA")].iloc[0]
    assert np.isnan(wa_b["paper"]) and not wa_b["outside_paper_band"]
    tex = (out / "toy_table.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"Model\_B" in tex and r"50\% \& more\_underscores" in tex
    assert "Model A" in (out / "toy_table.md").read_text()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (scripts/install.sh installs it)")
def test_generated_latex_compiles(table, tmp_path):
    out, _ = table
    doc = tmp_path / "wrapper.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
                   "\\begin{document}\n\\input{" + str(out / "toy_table.tex") + "}\n\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "wrapper.pdf").stat().st_size > 1000


def test_tampered_metrics_are_named_by_verify_trace_and_the_table_rule(table, tmp_path, capsys):
    out, runs = table
    assert main(["verify", str(tmp_path)]) == 0
    victim = runs["Model A"][3]["metrics"]
    m = json.load(open(victim))
    m["uar"] = 0.99
    open(victim, "w").write(json.dumps(m))
    capsys.readouterr()
    assert main(["verify", str(tmp_path)]) == 1
    assert f"output {victim} was modified" in capsys.readouterr().out
    assert main(["trace", str(out / "toy_table.tex"), "--row", "Model A", "--col", "UA"]) == 1
    text = capsys.readouterr().out
    assert f"{victim}  [MISMATCH]" in text and "BROKEN" in text
    with pytest.raises(InputError, match=f"{victim}: sha256 .* does not match its sidecar"):
        steps.table(SPEC, runs, str(tmp_path / "t2.tex"), str(tmp_path / "t2.csv"), str(tmp_path / "t2.md"))
    assert not (tmp_path / "t2.tex").exists()


def test_missing_run_fails_instead_of_averaging_fewer(table, tmp_path):
    _, runs = table
    gone = runs["Model_B"][2]["metrics"]
    shutil.rmtree(gone.rsplit("/", 1)[0])
    with pytest.raises(InputError, match="row 'Model_B': missing run .*fold3/seed1"):
        steps.table(SPEC, runs, str(tmp_path / "t3.tex"), str(tmp_path / "t3.csv"), str(tmp_path / "t3.md"))
    assert not (tmp_path / "t3.tex").exists()


def test_reported_key_matching_no_column_is_an_error(table, tmp_path):
    _, runs = table
    bad = {**SPEC, "rows": [{**SPEC["rows"][0], "reported": {"UAR": 60.0}}, SPEC["rows"][1]]}
    with pytest.raises(InputError, match=r"rows\['Model A'\]\.reported: key\(s\) \['UAR'\] match no column"):
        steps.table(bad, runs, str(tmp_path / "t4.tex"), str(tmp_path / "t4.csv"), str(tmp_path / "t4.md"))


def test_trace_walks_to_the_predictions_and_reports_ok(table, capsys):
    out, runs = table
    assert main(["trace", str(out / "toy_table.tex"), "--row", "Model_B", "--col", "Sad"]) == 0
    text = capsys.readouterr().out
    assert "VERIFIED" in text
    assert text.count("<- predictions:") == 6
    assert main(["trace", str(out / "toy_table.tex"), "--row", "Nope", "--col", "Sad"]) == 1
    assert "no cell row='Nope'" in capsys.readouterr().out


STATS_SPEC = {**SPEC, "classes": CLASSES, "stats": {"bootstrap": 200, "seed": 7, "columns": ["UA", "Sad"]},
              "rows": [SPEC["rows"][0], {**SPEC["rows"][1], "compare_to": "Model A"}]}


def _independent_ci(runs, metric_fn, n, seed):
    """The documented method, written plainly with scikit-learn (slow, small n)."""
    rows = {}
    for r in runs:
        df = pd.read_csv(r["metrics"].replace("metrics.json", "predictions.csv"))
        rows.setdefault(r["seed"], {})[r["fold"]] = df
    rng = np.random.default_rng(seed)
    sizes = {f: len(d) for f, d in rows[1].items()}
    vals = []
    for _ in range(n):
        idx = {f: rng.integers(0, m, m) for f, m in sorted(sizes.items())}
        vals.append(np.mean([np.mean([metric_fn(d["label"].to_numpy()[idx[f]], d["pred"].to_numpy()[idx[f]])
                                      for f, d in sorted(rows[s].items())]) for s in sorted(rows)]))
    return np.quantile(vals, 0.025), np.quantile(vals, 0.975)


def test_bootstrap_ci_and_paired_test(tmp_path, monkeypatch):
    from sklearn.metrics import balanced_accuracy_score

    monkeypatch.chdir(tmp_path)
    runs = {"Model A": _make_runs(tmp_path, 0.7), "Model_B": _make_runs(tmp_path, 0.4)}
    # Same utterance ids in both rows: make B's predictions files list A's utterances (they do: u0..u59).
    out = tmp_path / "tables"
    steps.table(STATS_SPEC, runs, str(out / "s.tex"), str(out / "s.csv"), str(out / "s.md"))
    df = pd.read_csv(out / "s.csv")
    ua_a = df[(df["row"] == "Model A") & (df["column"] == "UA")].iloc[0]
    ua_b = df[(df["row"] == "Model_B") & (df["column"] == "UA")].iloc[0]
    assert ua_a["ci_low"] < ua_a["ours_mean"] < ua_a["ci_high"]
    lo, hi = _independent_ci(runs["Model A"], balanced_accuracy_score, 200, 7)
    assert (ua_a["ci_low"], ua_a["ci_high"]) == pytest.approx((lo * 100, hi * 100))
    assert ua_b["compare_to"] == "Model A" and ua_b["p_value"] < 0.01
    assert ua_b["diff_vs_compare"] == pytest.approx(ua_b["ours_mean"] - ua_a["ours_mean"])
    assert np.isnan(df[(df["row"] == "Model A") & (df["column"] == "WA")].iloc[0]["ci_low"])  # WA not requested
    tex = (out / "s.tex").read_text()
    assert r"95\% CI" in tex and "percentile bootstrap" in tex
    # Seeded: the same spec gives the same table bytes.
    steps.table(STATS_SPEC, runs, str(out / "t.tex"), str(out / "t.csv"), str(out / "t.md"))
    assert (out / "t.csv").read_bytes() == (out / "s.csv").read_bytes()


def test_compare_to_must_name_a_row(table, tmp_path):
    _, runs = table
    bad = {**STATS_SPEC, "rows": [STATS_SPEC["rows"][0], {**STATS_SPEC["rows"][1], "compare_to": "Nobody"}]}
    with pytest.raises(InputError, match="compare_to: 'Nobody' is not a row"):
        steps.table(bad, runs, str(tmp_path / "x.tex"), str(tmp_path / "x.csv"), str(tmp_path / "x.md"))


def test_confusion_outputs(table, tmp_path):
    from emorepro.figures import row_percent, summed_confusion, write_confusion

    _, runs = table
    files = [r["metrics"] for r in runs["Model A"]]
    counts = summed_confusion(files, ["sad", "neu", "hap", "ang"])  # a different display order
    direct = sum(np.array(json.load(open(f))["confusion"]) for f in files)
    order = [CLASSES.index(c) for c in ["sad", "neu", "hap", "ang"]]
    assert (counts == direct[np.ix_(order, order)]).all()
    pct = row_percent(counts)
    assert np.allclose(pct.sum(1), 100)
    out = tmp_path / "cm"
    write_confusion(counts, ["sad", "neu", "hap", "ang"], "toy", str(out / "a.pdf"), str(out / "a.png"),
                    str(out / "a.tex"), str(out / "a.csv"))
    assert (out / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "a.pdf").read_bytes()[:5] == b"%PDF-"
    tex = (out / "a.tex").read_text()
    assert r"\toprule" in tex and f"{pct[0, 0]:.1f} ({counts[0, 0]})" in tex
    first = (out / "a.pdf").read_bytes()
    write_confusion(counts, ["sad", "neu", "hap", "ang"], "toy", str(out / "a.pdf"), str(out / "a.png"),
                    str(out / "a.tex"), str(out / "a.csv"))
    assert (out / "a.pdf").read_bytes() == first
