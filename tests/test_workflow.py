"""End to end: Snakemake on a small demo config, from nothing to the table, twice."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

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


# The run the determinism check trains again: a union run with the style head and a seeded half of the
# training data, so every random draw of training is in it.  Its tables, figures and fusion are rebuilt too.
FORCED_RUN = "results/runs/zhang2022/mtl_half/member_folds/fold2/seed1"


@pytest.mark.slow
def test_same_seed_gives_identical_predictions(demo_run):
    wd = demo_run
    same_bytes = [f"{FORCED_RUN}/predictions.csv", f"{FORCED_RUN}/metrics.json", "results/tables/zhang2022_table3.csv",
                  "results/figures/confusion/zhang2022/mtl_half.csv"]
    timed = {f"{FORCED_RUN}/train_log.csv": "seconds", "results/fusion/e2e_trials.csv": "seconds"}  # wall-clock columns

    def state():
        return ({p: (wd / p).read_bytes() for p in same_bytes},
                {p: pd.read_csv(wd / p).drop(columns=col) for p, col in timed.items()})

    (bytes_before, timed_before), mtime = state(), (wd / FORCED_RUN / "predictions.csv").stat().st_mtime_ns
    r = run_snakemake(wd, "--cores", "2", *CONFIG, "--forcerun", f"{FORCED_RUN}/predictions.csv")
    out = r.stdout + r.stderr
    assert len(re.findall(r"^(?:local)?rule train:", out, re.M)) == 1, "exactly one run is trained again"
    assert "rule score_zhang2022_mtl_half:" in out and "rule table:" in out and "rule fusion:" in out
    assert (wd / FORCED_RUN / "predictions.csv").stat().st_mtime_ns > mtime   # it was written again
    bytes_after, timed_after = state()
    assert bytes_after == bytes_before
    for p, df in timed_before.items():
        pd.testing.assert_frame_equal(timed_after[p], df, check_exact=True)


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


# The snapshot of the end-to-end run (in the manner of nf-core's nf-test snapshots): every output path and
# the stable columns of every table and fusion result, so a missing or new output or a changed number shows
# as a diff.  Update it after an intended change with
#     python -m pytest -m slow tests/test_workflow.py -k snapshot --update-snapshots
# and commit the file with the change (docs/usage.md, "Tests").
SNAPSHOT = REPO / "tests" / "snapshots" / "e2e.yaml"
SNAPSHOT_IGNORE = (   # fnmatch patterns (`*` crosses `/`): what is not worth a line each
    "results/*/synth/IEMOCAP_full_release/Session*",   # the generated corpora's audio and transcripts,
    "results/*/synth/generic_csv/wav/*",               # hashed by the ingest sidecar (which is listed)
    "*/.lock",                                         # the feature cache's lock file: not an output
)
TABLE_COLUMNS = ("row", "column", "metric", "n_seeds", "n_runs", "paper", "ours_mean", "ours_std", "ci_low",
                 "ci_high", "p_value")   # not: diffs derived from these, and the run paths (listed under files)
FUSION_COLUMNS = ("method", "k", "uar", "war", "subset")   # not: seconds, search statistics


def _cells(df, columns) -> list[str]:
    def fmt(v):
        return "-" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else str(v)

    return [" | ".join(fmt(v) for v in rec) for rec in df[list(columns)].itertuples(index=False)]


def e2e_snapshot(wd) -> dict:
    from fnmatch import fnmatch

    files = sorted(str(p.relative_to(wd)) for p in (wd / "results").rglob("*") if p.is_file())
    return {
        "files": [f for f in files if not any(fnmatch(f, pat) for pat in SNAPSHOT_IGNORE)],
        "table_columns": " | ".join(TABLE_COLUMNS),
        "tables": {p.stem: _cells(pd.read_csv(p), TABLE_COLUMNS)
                   for p in sorted((wd / "results/tables").glob("*.csv"))},
        "fusion_columns": " | ".join(FUSION_COLUMNS),
        "fusion": {p.stem: _cells(pd.read_csv(p), FUSION_COLUMNS)
                   for p in sorted((wd / "results/fusion").glob("*.csv"))},
    }


def _snapshot_text(snap: dict) -> str:
    import yaml

    return ("# Snapshot of the end-to-end run of tests/test_workflow.py (tests/config/e2e.yaml): every output\n"
            "# path but SNAPSHOT_IGNORE, and the stable columns of the tables and fusion results (4 significant\n"
            "# digits; numbers are CPU results, identical for the same seeds).  Rewrite it with\n"
            "#   python -m pytest -m slow tests/test_workflow.py -k snapshot --update-snapshots\n"
            + yaml.safe_dump(snap, sort_keys=False, width=1000, allow_unicode=True))


@pytest.mark.slow
def test_outputs_and_numbers_match_the_snapshot(demo_run, request):
    import difflib

    text = _snapshot_text(e2e_snapshot(demo_run))
    if request.config.getoption("--update-snapshots"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    old = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(SNAPSHOT), "this run"))
    assert not diff, f"the e2e run differs from its snapshot (intended? rerun with --update-snapshots):\n{diff}"


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
    for rule in ("score_zhang2022_baseline_act", "train", "extract_features", "folds", "ingest"):
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
    run_snakemake(wd, *CONFIG, "--report", "report.html")   # as `make demo` does, into results/
    html = (wd / "report.html").read_text(errors="replace")
    assert "zhang2022_table4" in html and "Confusion matrices" in html and "summary.html" in html


@pytest.mark.slow
def test_summary_gives_each_tables_headline_cell_and_each_fusion_sets_best_subset(demo_run):
    wd = demo_run
    lines = (wd / "results/summary.txt").read_text().splitlines()
    spon = "synthetic SPON"
    t4 = pd.read_csv(wd / "results/tables/zhang2022_table4.csv").set_index(["row", "column"])
    cell = t4.loc[(f"Selective MTL (ACT+{spon})", "UA")]   # config: tables.zhang2022_table4.headline
    assert (f"  results/tables/zhang2022_table4.{{tex,csv,md}}  Selective MTL (ACT+{spon}) | UA: "
            f"ours {cell['ours_mean']:.2f}, paper 59.47  (5 runs)") in lines
    assert sum(line.startswith("  results/tables/") for line in lines) == 3
    fusion = pd.read_csv(wd / "results/fusion/e2e_trials.csv")
    exact = fusion[fusion["method"] == "exact"]
    best = exact[exact["uar"] == exact["uar"].max()].sort_values("k").iloc[0]   # ties: the smallest subset
    assert f"  results/fusion/e2e_trials.{{csv,json}}  k={best['k']} UAR {100 * best['uar']:.2f} ({best['subset']})" in lines
    page = (wd / "results/summary.html").read_text()
    assert page.count("<table") == 4 and f"Selective MTL (ACT+{spon})" in page


@pytest.mark.slow
def test_fusion_rule_runs_the_exact_search_on_a_configured_trial_set(demo_run):
    """The e2e config's fusion set: the six ACT+SPON variants' runs (one seed each) are the trials."""
    from sklearn.metrics import balanced_accuracy_score

    wd = demo_run
    df = pd.read_csv(wd / "results/fusion/e2e_trials.csv")
    exact = df[df["method"] == "exact"].set_index("k")
    assert list(exact.index) == [1, 2, 3, 4, 5, 6]
    assert {"greedy", "beam", "full", "crossfold"} <= set(df["method"])
    # k = 1 is the best single trial: check it against every trial's own pooled test predictions.
    single = {}
    for variant in ("combined", "combined_half", "mtl", "mtl_half", "selective_mtl", "selective_mtl_half"):
        preds = pd.concat(pd.read_csv(p) for p in sorted(
            (wd / f"results/runs/zhang2022/{variant}/member_folds").glob("fold*/seed1/predictions.csv")))
        preds = preds[preds["split"] == "test"]
        single[f"{variant}/seed1"] = balanced_accuracy_score(preds["label"], preds["pred"])
    assert exact.loc[1, "uar"] == pytest.approx(single[exact.loc[1, "subset"]]) == pytest.approx(max(single.values()))
    assert (exact["gap_to_exact"] == 0).all()
    side = json.loads((wd / "results/fusion/e2e_trials.csv.prov.json").read_text())
    assert side["rule"] == "fusion" and len(side["inputs"]["predictions"]) == 30


def test_dry_run_plans_one_extraction_per_corpus_and_encoder(tmp_path):
    """Every paper of the demo config (Zhang: 4 variants x 2 corpora; Ispas: 16 rows x 10 folds x seeds; Lee; Ghosh: 8
    rows x 5 folds, one augmented corpus) shares
    the caches: the plan has exactly one extract_features job per (corpus, encoder), and train jobs ask for a GPU."""

    wd = make_workdir(tmp_path)
    r = run_snakemake(wd, "-n", "--configfile", "config/demo.yaml")
    out = r.stdout + r.stderr
    planned = re.findall(r"output: (results/[^/]+/features/[^/]+/manifest\.json)", out)
    # Lee et al.: IEMOCAP + JTES; Ghosh et al. (MMER): RoBERTa-base and frozen wav2vec2-base, of IEMOCAP and its copies
    assert len(planned) == len(set(planned)) == 10, planned
    assert set(planned) == {f"results/iemocap/features/{e}/manifest.json"
                            for e in ("fbank40", "hubert_large", "deberta_v3_large", "roberta_large", "roberta_base",
                                      "wav2vec2_base")} | {
                               "results/spon/features/fbank40/manifest.json",
                               "results/jtes/features/hubert_large/manifest.json"} | {
                               f"results/iemocap_aug/features/{e}/manifest.json" for e in ("roberta_base", "wav2vec2_base")}
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("Reasons")[0], re.M))
    # 320 runs of 16 + 8 + 9 + 8 + 21 experiments; one-run jobs only where a run reads augmented copies (MMER) or
    # frame labels (Pan et al.'s stage 2), every other run in a packed job (folds_per_job, seeds_per_job)
    train_jobs = {k: int(v) for k, v in stats.items() if k == "train" or k.startswith("train_")}
    assert int(stats["extract_features"]) == 10 and int(stats["train"]) == 25 + 45 and sum(train_jobs.values()) == 129
    assert re.search(r"rule train:(?:(?!\nrule ).)*resources:[^\n]*gpu=1", out, re.S)
    assert re.search(r"rule train_zhang2022_baseline_act_folds1_5_seeds1_2:(?:(?!\nrule ).)*resources:[^\n]*gpu=1",
                     out, re.S)


def test_dry_run_wires_the_engine_into_the_dag(tmp_path):
    """init_from is a file dependency on the parent's run of the same fold and seed; fine-tuned roles read their
    checkpoints, not a feature cache; only neural encoders' extraction asks for a GPU."""
    import re

    wd = make_workdir(tmp_path)
    shutil.copy(REPO / "tests" / "config" / "e2e.yaml", wd / "tests_e2e.yaml")
    child = "results/runs/zhang2022/baseline_act_cont/loso5/fold2/seed1/predictions.csv"
    ft = "results/runs/ispas2023/finetune_demo/lospk10/fold3/seed1/predictions.csv"
    r = run_snakemake(wd, "-n", child, ft, *CONFIG)
    out = r.stdout + r.stderr
    jobs = {m.group(1): m.group(0) for m in re.finditer(r"rule train:\n(?:    .*\n)*?    output: ([^,\s]+)[^\n]*\n(?:    .*\n)*",
                                                        out)}
    inputs = {o: re.search(r"input: ([^\n]*)", j).group(1) for o, j in jobs.items()}
    child_in = inputs[child]
    assert "results/runs/zhang2022/baseline_act/loso5/fold2/seed1/model.pt" in child_in
    assert "results/runs/zhang2022/baseline_act/loso5/fold2/seed1/predictions.csv" in inputs   # the parent runs first
    ft_in = inputs[ft]
    assert "results/checkpoints/demo/hubert_large/demo_checkpoint.json" in ft_in
    assert "results/checkpoints/demo/roberta_large/demo_checkpoint.json" in ft_in and "features" not in ft_in
    ext = re.findall(r"rule extract_features:\n(?:    .*\n)*", out)
    fbank = [j for j in ext if "features/fbank40" in j]
    assert fbank and all("gpu=0" in j for j in fbank)


@pytest.mark.slow
def test_init_from_chain_and_finetuning_through_the_workflow(demo_run):
    """The child run loads its parent's kept weights (checked by hash); the oracle variant logs test scores;
    a fine-tuning run keeps its encoders as checkpoint directories listed in provenance."""
    wd = demo_run
    child = "results/runs/zhang2022/baseline_act_cont/loso5/fold1/seed1"
    ft = "results/runs/ispas2023/finetune_demo/lospk10/fold1/seed1"
    run_snakemake(wd, "--cores", "2", f"{child}/predictions.csv", f"{ft}/predictions.csv", *CONFIG)
    parent = wd / "results/runs/zhang2022/baseline_act/loso5/fold1/seed1"
    prov = json.loads((wd / child / "provenance.json").read_text())
    assert prov["params"]["train"]["init_from"] == "zhang2022/baseline_act"
    (p_in,) = [x for x in prov["inputs"]["parent_model"] if x["path"].endswith("model.pt")]
    from emorepro.io import sha256_file

    assert p_in["sha256"] == sha256_file(parent / "model.pt")
    assert prov["summary"]["init_from"]["n_loaded"] > 0
    assert prov["summary"]["init_from"]["n_not_loaded"] == 0 and prov["summary"]["oracle"]
    assert json.loads((parent / "provenance.json").read_text())["params"]["train"]["keep_model"] is True
    assert "test_uar" in pd.read_csv(wd / child / "train_log.csv").columns
    fp = json.loads((wd / ft / "provenance.json").read_text())
    outs = {Path(o["path"]).relative_to(ft).parts[0] for o in fp["outputs"]}   # paths relative to the workdir
    assert {"encoder_audio", "encoder_text", "model.pt"} <= outs
    assert {"checkpoint_audio", "checkpoint_text"} <= set(fp["inputs"]) and not any(k.startswith("feature_cache")
                                                                                      for k in fp["inputs"])
    enc = fp["summary"]["encoders"]
    assert enc["audio"]["train_max_seconds"] == 1.0 and enc["audio"]["freeze_cnn"] and enc["text"]["freeze_embeddings"]
