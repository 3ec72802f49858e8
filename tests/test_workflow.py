"""End to end: Snakemake on a small demo config, from nothing to the table, twice."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.workflow_utils import REPO, make_workdir, run_snakemake

CONFIG = ("--configfile", "config/demo.yaml", "tests_e2e.yaml")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("e2e"))
    shutil.copy(REPO / "tests" / "config" / "e2e.yaml", wd / "tests_e2e.yaml")
    run_snakemake(wd, "--cores", "2", *CONFIG)
    return wd


@pytest.mark.slow
def test_table_is_built_above_chance_with_provenance(demo_run):
    wd = demo_run
    tex = (wd / "results/tables/zhang2022_table4.tex").read_text()
    assert r"\toprule" in tex and "Baseline (ACT)" in tex
    df = pd.read_csv(wd / "results/tables/zhang2022_table4.csv")
    ua = df[df["column"] == "UA"].iloc[0]
    assert ua["n_runs"] == 5 and ua["n_seeds"] == 1
    assert ua["ours_mean"] > 40.0, f"UA {ua['ours_mean']:.1f}% is not above chance (25%) on the demo corpus"
    assert ua["paper"] == 55.65
    # Each cell names the runs it aggregates, and the value is their fold mean.
    side = json.loads((wd / "results/tables/zhang2022_table4.tex.prov.json").read_text())
    cell = side["cells"]["Baseline (ACT) | UA"]
    vals = [r["value"] for r in cell["runs"]]
    assert len(vals) == 5 and sum(vals) / 5 == pytest.approx(ua["ours_mean"])
    for r in cell["runs"]:
        m = json.loads((wd / r["metrics"]).read_text())
        assert m["uar"] * 100 == pytest.approx(r["value"])
        prov = json.loads((wd / r["metrics"]).parent.joinpath("provenance.json").read_text())
        assert prov["seed"] == 1 and prov["params"]["fold"] == m["fold"]
        assert {"manifest", "folds", "feature_cache_audio"} <= set(prov["inputs"])


@pytest.mark.slow
def test_rerun_is_a_noop(demo_run):
    r = run_snakemake(demo_run, "-n", *CONFIG)
    assert "Nothing to be done" in r.stdout + r.stderr


@pytest.mark.slow
def test_same_seed_gives_identical_predictions(demo_run):
    wd = demo_run
    runs = sorted((wd / "results/runs").rglob("predictions.csv"))
    before = {p: p.read_bytes() for p in runs}
    table_before = (wd / "results/tables/zhang2022_table4.csv").read_bytes()
    run_snakemake(wd, "--cores", "2", *CONFIG, "--forcerun", "train")
    assert {p: p.read_bytes() for p in runs} == before
    assert (wd / "results/tables/zhang2022_table4.csv").read_bytes() == table_before


@pytest.mark.slow
def test_one_extraction_job_per_corpus_and_encoder(demo_run):
    # Training jobs depend on the cache and never re-run it: forcing training plans no extraction.
    r = run_snakemake(demo_run, "-n", *CONFIG, "--forcerun", "train")
    out = r.stdout + r.stderr
    assert "extract_features" not in out
    n_runs = len(list((demo_run / "results/runs").rglob("predictions.csv")))
    assert out.count("rule train:") + out.count("localrule train:") == n_runs
    # A union corpus (Zhang et al.'s ACT+SPON) reads its members' caches: nothing is extracted for it.
    assert sorted(p.name for p in (demo_run / "results/benchmarks/extract_features").iterdir()) == ["iemocap", "spon"]
    assert not (demo_run / "results/act_spon/features").exists()


@pytest.mark.slow
def test_zhang_tables_3_to_5_from_the_two_demo_corpora(demo_run):
    wd = demo_run
    t3, t4, t5 = (pd.read_csv(wd / f"results/tables/zhang2022_table{k}.csv") for k in (3, 4, 5))
    ua3, ua4, ua5 = (t[t["column"] == "UA"].set_index("row") for t in (t3, t4, t5))
    spon = "synthetic SPON"   # corpora.spon.name of the demo
    assert list(ua3.index) == [f"Baseline: ACT + {spon} (separate)", f"Combined: ACT + {spon}",
                               f"Combined: ACT + {spon} (half)", f"MTL: ACT + {spon}", f"MTL: ACT + {spon} (half)",
                               f"Selective MTL: ACT + {spon}", f"Selective MTL: ACT + {spon} (half)"]
    assert list(ua3["n_runs"]) == [10, 5, 5, 5, 5, 5, 5] and ua3["ours_mean"].notna().all()
    # Table 3 pools both corpora's test utterances per fold and seed (combine: pooled), recomputed here from
    # the confusion matrices of the runs each cell names.  (The CSVs keep 6 significant digits.)
    side = json.loads((wd / "results/tables/zhang2022_table3.tex.prov.json").read_text())
    assert "(pooled)" in side["aggregation_rule"]
    for row in ua3.index:
        pooled = {}
        for r in side["cells"][f"{row} | UA"]["runs"]:
            m = json.loads((wd / r["metrics"]).read_text())
            cm = np.asarray(m["confusion"], dtype=float)
            pooled[(r["seed"], r["fold"])] = pooled.get((r["seed"], r["fold"]), 0) + cm
        seeds = sorted({s for s, _ in pooled})
        want = np.mean([np.mean([np.mean(np.diag(cm) / cm.sum(1)) for (s, _), cm in pooled.items() if s == seed])
                        for seed in seeds]) * 100
        assert ua3.loc[row, "ours_mean"] == pytest.approx(want, abs=2e-4), row
    assert "(pooled)" in (wd / "results/tables/zhang2022_table3.tex").read_text()
    assert ua5.loc[f"MTL (ACT+{spon})", "metric"] == "by_corpus.spon.uar"
    style = t3[t3["column"] == "Style acc."].set_index("row")["ours_mean"]
    n_test = {c: sum(json.loads(p.read_text())["by_corpus"][c]["n"]
                     for p in (wd / "results/runs/zhang2022/mtl/member_folds").glob("fold*/seed1/metrics.json"))
              for c in ("iemocap", "spon")}
    # The style task is easy (the paper: >= 99.95 %); the e2e config trains only 4 epochs (8 on half the data), so
    # ask for more than the majority style of the pooled test utterances (what a constant head scores); well
    # more for plain MTL, whose style head also learns from the neutral utterances that selective MTL leaves out.
    majority = max(n_test[c] for c in n_test) / sum(n_test.values()) * 100
    assert style.iloc[:3].isna().all() and (style.iloc[3:] > majority).all(), (style, majority)
    assert (style[[f"MTL: ACT + {spon}", f"MTL: ACT + {spon} (half)"]] > majority + 10).all(), (style, majority)
    assert spon in (wd / "results/tables/zhang2022_table5.tex").read_text()
    for corpus in ("iemocap", "spon"):
        assert (wd / f"results/figures/confusion/zhang2022/selective_mtl/{corpus}.pdf").exists()
    # "(half)" trains on half of the combined training split.
    n = {v: json.loads((wd / f"results/runs/zhang2022/{v}/member_folds/fold1/seed1/provenance.json").read_text())
         ["summary"]["n"] for v in ("mtl", "mtl_half")}
    assert n["mtl_half"]["train"] == round(n["mtl"]["train"] / 2) and n["mtl_half"]["test"] == n["mtl"]["test"]


def test_lint_is_clean(tmp_path):
    wd = make_workdir(tmp_path)
    r = run_snakemake(wd, "--lint", "--configfile", "config/demo.yaml", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_trace_walks_a_cell_down_to_the_raw_wav_hashes(demo_run):
    import subprocess
    import sys
    from pathlib import Path

    emorepro = str(Path(sys.executable).parent / "emorepro")
    r = subprocess.run([emorepro, "trace", "results/tables/zhang2022_table4.tex", "--row", "Baseline (ACT)",
                        "--col", "UA", "--max-raw", "100000"], cwd=demo_run, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for rule in ("score", "train", "extract_features", "folds", "ingest"):
        assert f"{rule} " in out
    wavs = [l for l in out.splitlines() if l.strip().startswith("<- raw:") and ".wav" in l]
    assert wavs and all(l.endswith("[ok]") for l in wavs)
    assert "EmoEvaluation" in out and out.rstrip().endswith("VERIFIED: every link matches its recorded sha256")


@pytest.mark.slow
def test_confusion_figures_and_snakemake_report(demo_run):
    wd = demo_run
    fig = wd / "results/figures/confusion/zhang2022/baseline_act"
    assert fig.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert fig.with_suffix(".png").stat().st_size > 5000
    cm = pd.read_csv(fig.with_suffix(".csv"))
    table = pd.read_csv(wd / "results/tables/zhang2022_table4.csv")
    n_test = sum(json.loads(p.read_text())["n"] for p in (wd / "results/runs/zhang2022/baseline_act").rglob("metrics.json"))
    assert cm[["neu", "hap", "ang", "sad"]].to_numpy().sum() == n_test
    assert not table["ci_low"][table["column"] == "UA"].isna().any()  # the config asks for bootstrap CIs
    run_snakemake(wd, *CONFIG, "--report", "report.html")
    html = (wd / "report.html").read_text(errors="replace")
    assert "zhang2022_table4" in html and "Confusion matrices" in html


@pytest.mark.slow
def test_fusion_rule_runs_the_exact_search_on_a_configured_trial_set(demo_run):
    """Two experiments x seeds on the same folds become trials; the rule writes every k and honest rows."""
    wd = demo_run
    (wd / "fusion_e2e.yaml").write_text(
        "experiments:\n  zhang2022:\n    baseline_act_seed2:\n"
        "      {corpus: iemocap, protocol: loso5, inputs: {audio: fbank40}, model: zhang_bilstm_att, seeds: [2, 3],\n"
        "       model_params: {d_lstm: 32, d_att: 64, n_heads: 4, d_fc1: 128, d_fc2: 64},\n"
        "       train: {epochs: 4, lr: 1.0e-3, selection: last, data: {max_seconds: 3.0}}}\n"
        "fusion:\n  e2e_trials:\n    paper: zhang2022\n"
        "    experiments: [zhang2022/baseline_act, zhang2022/baseline_act_seed2]\n    ks: all\n")
    run_snakemake(wd, "--cores", "2", "results/fusion/e2e_trials.csv", *CONFIG, "fusion_e2e.yaml")
    df = pd.read_csv(wd / "results/fusion/e2e_trials.csv")
    exact = df[df["method"] == "exact"].set_index("k")
    assert list(exact.index) == [1, 2, 3]
    assert {"greedy", "beam", "full", "crossfold"} <= set(df["method"])
    # k = 1 is the best single trial: check it against that trial's own pooled test predictions.
    best_single = 0.0
    for trial in exact.loc[1, "subset"].split("+"):
        variant, seed = trial.split("/")
        preds = pd.concat(pd.read_csv(p) for p in sorted(
            (wd / f"results/runs/zhang2022/{variant}/loso5").glob(f"fold*/{seed}/predictions.csv")))
        preds = preds[preds["split"] == "test"]
        from sklearn.metrics import balanced_accuracy_score
        best_single = balanced_accuracy_score(preds["label"], preds["pred"])
    assert exact.loc[1, "uar"] == pytest.approx(best_single)
    assert (exact["gap_to_exact"] == 0).all()
    side = json.loads((wd / "results/fusion/e2e_trials.csv.prov.json").read_text())
    assert side["rule"] == "fusion" and len(side["inputs"]["predictions"]) == 15


def test_dry_run_plans_one_extraction_per_corpus_and_encoder(tmp_path):
    """Every paper of the demo config (Zhang: 4 variants x 2 corpora; Ispas: 16 rows x 10 folds x seeds) shares
    the caches: the plan has exactly one extract_features job per (corpus, encoder), and train jobs ask for a GPU."""
    import re

    wd = make_workdir(tmp_path)
    r = run_snakemake(wd, "-n", "--configfile", "config/demo.yaml")
    out = r.stdout + r.stderr
    planned = re.findall(r"output: (results/[^/]+/features/[^/]+/manifest\.json)", out)
    assert len(planned) == len(set(planned)) == 5, planned
    assert set(planned) == {f"results/iemocap/features/{e}/manifest.json"
                            for e in ("fbank40", "hubert_large", "deberta_v3_large", "roberta_large")} | {
                               "results/spon/features/fbank40/manifest.json"}
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("Reasons")[0], re.M))
    assert int(stats["extract_features"]) == 5 and int(stats["train"]) > 200
    assert re.search(r"rule train:(?:(?!\nrule ).)*resources:[^\n]*gpu=1", out, re.S)
