"""End to end: Snakemake on a small demo config, from nothing to the table, twice."""
from __future__ import annotations

import json
import shutil

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
    assert out.count("rule train:") + out.count("localrule train:") == 5


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
    n_test = sum(json.loads(p.read_text())["n"] for p in (wd / "results/runs").rglob("metrics.json"))
    assert cm[["neu", "hap", "ang", "sad"]].to_numpy().sum() == n_test
    assert not table["ci_low"][table["column"] == "UA"].isna().any()  # the config asks for bootstrap CIs
    run_snakemake(wd, *CONFIG, "--report", "report.html")
    html = (wd / "report.html").read_text(errors="replace")
    assert "zhang2022_table4" in html and "Confusion matrices" in html
