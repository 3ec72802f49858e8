"""The audit trail catches what it claims to catch: tampering, damage, drift and data loss (issue 14).

A real chain of steps (ingest -> folds -> feature cache -> 5 training runs -> scores -> table) is
built once on the synthetic corpus, through the same step functions the workflow calls; each test
damages a private copy of it the way a user, a disk or a second clone could, and checks that the
next step (or ``verify`` / ``trace``) stops with a message naming the file, or that nothing is lost.
The workflow-level cases (a re-run after an edit, a failed re-run, the clone's own code in every job)
run Snakemake and are marked ``slow``.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from emorepro import steps
from emorepro.cli import main
from emorepro.io import InputError
from emorepro.provenance import trace_cell, verify_tree
from tests.conftest import CLASSES, DROP, LABEL_MAP, REPO

EXPERIMENT = "zhang2022/baseline_act"
TINY = {"d_lstm": 8, "d_att": 8, "n_heads": 2, "d_fc1": 16, "d_fc2": 8}
TRAIN = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "selection": "last", "data": {"max_seconds": 1.0}}
FBANK = {"family": "fbank", "backend": "kaldi_fbank", "layers": [-1], "options": {"num_mel_bins": 40}}
R = "results"
MANIFEST = f"{R}/iemocap/manifest.csv"
FOLDS = f"{R}/iemocap/folds/loso5.csv"
CACHE = f"{R}/iemocap/features/fbank40/manifest.json"
TABLE = f"{R}/tables/t.tex"
SPEC = {"name": "t", "title": "t", "classes": CLASSES, "columns": [{"name": "UA", "metric": "uar"}],
        "rows": [{"name": "base", "experiment": EXPERIMENT}]}


def run_dir(fold: int) -> str:
    return f"{R}/runs/zhang2022/baseline_act/loso5/fold{fold}/seed1"


def train_run(fold: int, folds_csv: str = FOLDS, caches=None) -> None:
    steps.train(manifest_csv=MANIFEST, folds_csv=folds_csv, caches=caches or {"audio": CACHE},
                outputs={"predictions": f"{run_dir(fold)}/predictions.csv", "log_csv": f"{run_dir(fold)}/train_log.csv",
                         "model": f"{run_dir(fold)}/model.pt", "provenance": f"{run_dir(fold)}/provenance.json"},
                fold=fold, seed=1, classes=CLASSES, model="zhang_bilstm_att", model_params=TINY, train_params=TRAIN,
                run_id={"paper": "zhang2022", "variant": "baseline_act", "protocol": "loso5", "corpus": "iemocap"})


def table_runs(folds=range(1, 6)) -> dict:
    return {"base": [{"metrics": f"{run_dir(k)}/metrics.json", "fold": k, "seed": 1, "experiment": EXPERIMENT}
                     for k in folds]}


def build_table(out: str = TABLE, folds=range(1, 6)) -> None:
    steps.table(SPEC, table_runs(folds), out, out.replace(".tex", ".csv"), out.replace(".tex", ".md"))


@pytest.fixture(scope="module")
def chain_dir(synth_root, tmp_path_factory):
    """results/ of a whole chain, built with relative paths from its own directory (as Snakemake does)."""
    d = tmp_path_factory.mktemp("chain")
    old = os.getcwd()
    os.chdir(d)
    try:
        steps.ingest(str(synth_root), MANIFEST, fmt="iemocap", label_map=LABEL_MAP, drop_labels=DROP)
        steps.make_folds(MANIFEST, FOLDS, scheme="loso5", val_policy="none")
        steps.extract_features(MANIFEST, CACHE, name="fbank40", spec=FBANK)
        for k in range(1, 6):
            train_run(k)
            steps.score(f"{run_dir(k)}/predictions.csv", f"{run_dir(k)}/metrics.json", classes=CLASSES, fold=k, seed=1)
        build_table()
    finally:
        os.chdir(old)
    return d


@pytest.fixture
def chain(chain_dir, tmp_path, monkeypatch):
    """A private copy of the chain; the test runs from inside it."""
    d = tmp_path / "wd"
    shutil.copytree(chain_dir, d, symlinks=True)
    monkeypatch.chdir(d)
    return d


def flip_byte(path, offset: int = -3) -> None:
    b = bytearray(Path(path).read_bytes())
    b[offset] ^= 0xFF
    Path(path).write_bytes(b)


def shard(i: int = 0) -> Path:
    return Path(CACHE).parent / f"shard-{i:05d}.npy"


def test_the_untouched_chain_verifies(chain):
    n, problems = verify_tree(R)
    assert n >= 14 and problems == []
    lines, ok = trace_cell(TABLE, "base", "UA")
    assert ok, "\n".join(lines)


# --------------------------------------------------------------------------- never destroy a user's data


def test_corpus_synth_refuses_a_non_empty_directory_that_is_not_its_own(tmp_path, capsys):
    victim = tmp_path / "IEMOCAP_full_release"
    (victim / "Session1").mkdir(parents=True)
    (victim / "Session1" / "precious.wav").write_bytes(b"RIFF-real-data")
    (victim / "thesis.tex").write_text("four years of work\n")
    rc = main(["corpus", "synth", "iemocap", str(victim), "--turns-per-dialog", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds no generated corpus" in err and str(victim) in err
    assert (victim / "thesis.tex").read_text() == "four years of work\n"
    assert (victim / "Session1" / "precious.wav").read_bytes() == b"RIFF-real-data"
    assert not list(tmp_path.glob(".IEMOCAP_full_release.*")), "no temp tree left behind"


def test_corpus_synth_replaces_its_own_corpus_but_not_files_added_to_it(tmp_path):
    from emorepro.corpus.synth_guard import MARKER as SYNTH_MARKER

    root = tmp_path / "c"
    steps.synth_corpus(str(root), {"seed": 0, "turns_per_dialog": 2, "sessions": [1]})
    assert json.loads((root / SYNTH_MARKER).read_text())["generator"].startswith("emorepro.")
    steps.synth_corpus(str(root), {"seed": 1, "turns_per_dialog": 2, "sessions": [1]})   # its own: replaced
    assert json.loads((root / "synth_summary.json").read_text())["seed"] == 1
    (root / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"notes\.txt.*which the generator did not write"):
        steps.synth_corpus(str(root), {"seed": 2, "turns_per_dialog": 2, "sessions": [1]})
    assert (root / "notes.txt").read_text() == "mine"


def test_a_failed_rerun_keeps_the_previous_outputs_rules_declare_update():
    """Snakemake deletes a job's outputs before it runs, unless they are update(): every rule that writes a
    sidecar keeps (and on failure restores) its previous outputs, so none is lost and no sidecar is orphaned.
    (The behaviour itself: test_workflow_failed_rerun_restores_the_previous_outputs, slow.)  The one
    exception is the feature cache, which resumes itself shard by shard (emorepro.features.cache)."""
    import re

    seen = set()
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^( *)rule( \w+)?:\n(.*?)(?=^ *rule |^for |\Z)", text, re.DOTALL | re.MULTILINE):
            body = m.group(3)
            out = re.search(r"^( *)output:\n((?:\1 +\S.*\n)+)", body, re.MULTILINE)
            name = (m.group(2) or "").strip() or re.search(r"name:\n\s*(.*)", body).group(1).strip()
            if out is None or name == "extract_features":
                continue
            seen.add(name)
            block = out.group(2).splitlines()
            indent = len(block[0]) - len(block[0].lstrip())
            entries = [ln.strip() for ln in block   # name=... entries, not their continuation lines
                       if len(ln) - len(ln.lstrip()) == indent and re.match(r"\s*\w+=", ln)]
            assert entries and all(re.match(r"\w+=update\(", e) for e in entries), (smk.name, name, entries)
    assert {"synth_corpus", "ingest", "folds", "train", "table", "confusion", "fusion", "corpus_table",
            "summary", "synthesize"} <= seen, seen
    assert any("score" in n for n in seen)   # the scoring rules, defined in a loop


# --------------------------------------------------------------------------- feature-cache shards


def test_the_extraction_sidecar_lists_every_shard_and_the_index(chain):
    side = json.loads(Path(CACHE + ".prov.json").read_text())
    listed = {Path(o["path"]).name for o in side["outputs"]}
    man = json.loads(Path(CACHE).read_text())
    assert {"manifest.json", "index.csv"} | {s["file"] for s in man["shards"]} <= listed


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_verify_and_trace_catch_a_damaged_shard(chain, damage):
    flip_byte(shard()) if damage == "flip" else shard().unlink()
    _, problems = verify_tree(R)
    assert len(problems) == 1 and "shard-00000.npy" in problems[0]
    assert "emorepro features repair" in problems[0]
    lines, ok = trace_cell(TABLE, "base", "UA")
    assert not ok and any("shard-00000.npy" in line and "NOT matching" in line for line in lines)
    assert lines[-1].startswith("BROKEN")


def test_training_refuses_a_damaged_shard_naming_it_and_the_recovery_command(chain):
    flip_byte(shard())
    with pytest.raises(InputError) as e:
        train_run(1)
    assert "shard-00000.npy" in str(e.value) and "emorepro features repair" in str(e.value)


def test_repair_re_extracts_the_damaged_shard_and_keeps_every_result_valid(chain, capsys):
    good = shard().read_bytes()
    mtime = os.stat(CACHE).st_mtime_ns
    flip_byte(shard())
    assert main(["features", "repair", str(Path(CACHE).parent)]) == 0
    assert "byte-identical" in capsys.readouterr().out
    assert shard().read_bytes() == good
    assert os.stat(CACHE).st_mtime_ns == mtime, "same bytes: Snakemake must not re-run what reads the cache"
    assert verify_tree(R)[1] == []


# --------------------------------------------------------------------------- edited intermediates


def test_score_refuses_edited_predictions(chain):
    p = Path(run_dir(1)) / "predictions.csv"
    df = pd.read_csv(p)
    df["pred"] = df["label"]          # a perfect classifier, by hand
    df.to_csv(p, index=False)
    with pytest.raises(InputError, match=r"predictions\.csv: sha256 .* modified after it was produced"):
        steps.score(str(p), f"{run_dir(1)}/metrics.json", classes=CLASSES, fold=1, seed=1)


def test_training_refuses_an_edited_fold_file_and_a_leaking_one_even_with_a_forged_sidecar(chain):
    from emorepro.provenance import now, write_provenance

    before = Path(run_dir(1), "predictions.csv").read_bytes()
    folds = pd.read_csv(FOLDS)
    spk = folds["utt_id"].map(pd.read_csv(MANIFEST).set_index("utt_id")["speaker"])
    leak = (folds["fold"] == 1) & (spk == "Ses01_F")
    folds.loc[leak[leak].index[::2], "split"] = "train"   # half of a test speaker moves into training
    folds.to_csv(FOLDS, index=False)
    with pytest.raises(InputError, match=r"loso5\.csv: sha256 .* modified after it was produced"):
        train_run(1)
    write_provenance(FOLDS, rule="folds", params={}, inputs=None, outputs=[FOLDS], started=now())   # forged
    with pytest.raises(InputError, match=r"loso5\.csv: .*speaker in two splits of one fold"):
        train_run(1)
    assert Path(run_dir(1), "predictions.csv").read_bytes() == before, "nothing trained on the leak"


def test_folds_and_training_refuse_an_edited_manifest(chain):
    m = pd.read_csv(MANIFEST, keep_default_na=False)
    m.loc[m["label"] == "sad", "label"] = "ang"
    m.to_csv(MANIFEST, index=False)
    with pytest.raises(InputError, match=r"manifest\.csv: sha256 .* modified after it was produced"):
        steps.make_folds(MANIFEST, f"{R}/iemocap/folds/x.csv", scheme="loso5", val_policy="none")
    with pytest.raises(InputError, match=r"manifest\.csv: sha256"):
        train_run(1)
    with pytest.raises(InputError, match=r"manifest\.csv: sha256"):
        steps.extract_features(MANIFEST, f"{R}/iemocap/features/other/manifest.json", name="other", spec=FBANK)
    assert not Path(f"{R}/iemocap/folds/x.csv").exists()


def test_a_corrupt_sidecar_is_an_error_naming_it_never_a_traceback(chain):
    side = Path(FOLDS + ".prov.json")
    side.write_text('{"rule": "folds", "outputs": [')   # cut off mid-write by hand, or a disk fault
    with pytest.raises(InputError, match=r"loso5\.csv\.prov\.json: unreadable provenance sidecar"):
        train_run(1)
    assert any("loso5.csv.prov.json: unreadable" in p for p in verify_tree(R)[1])
    lines, ok = trace_cell(TABLE, "base", "UA")
    assert not ok and any("unreadable provenance sidecar" in line for line in lines)


def test_the_table_refuses_an_edited_metrics_file(chain):
    p = Path(run_dir(2)) / "metrics.json"
    m = json.loads(p.read_text())
    m["uar"] = 0.99
    p.write_text(json.dumps(m))
    before = Path(TABLE).read_bytes()
    with pytest.raises(InputError, match=r"metrics\.json: sha256"):
        build_table()
    assert Path(TABLE).read_bytes() == before


# --------------------------------------------------------------------------- folds against config


def test_folds_step_stops_when_config_n_folds_disagrees_with_the_data(chain):
    with pytest.raises(InputError, match=r"gives 5 folds .*n_folds is 3"):
        steps.make_folds(MANIFEST, f"{R}/iemocap/folds/loso3.csv", scheme="loso5", val_policy="none", n_folds=3,
                         protocol="loso5")
    side = json.loads(Path(FOLDS + ".prov.json").read_text())
    assert side["held_out"] == {str(k): [f"session {k}"] for k in range(1, 6)}


def test_a_table_refuses_to_average_fewer_folds_than_the_fold_file_holds(chain):
    with pytest.raises(InputError, match=r"averages folds \[1, 2, 3\] .* has 5 folds"):
        build_table(f"{R}/tables/three.tex", folds=range(1, 4))
    assert not Path(f"{R}/tables/three.tex").exists()


# --------------------------------------------------------------------------- from anywhere, of any age


def test_verify_and_trace_do_not_depend_on_the_working_directory(chain, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n, problems = verify_tree(chain / R)
    assert n >= 14 and problems == []
    lines, ok = trace_cell(chain / TABLE, "base", "UA", max_raw=None)
    assert ok, "\n".join(lines)
    assert any(".wav" in line and line.endswith("[ok]") for line in lines)


def test_sidecars_written_before_base_was_recorded_resolve_too(chain, tmp_path, monkeypatch):
    for side in Path(R).rglob("*.prov.json"):
        rec = json.loads(side.read_text())
        rec.pop("base")
        side.write_text(json.dumps(rec))
    for side in Path(R).rglob("provenance.json"):
        rec = json.loads(side.read_text())
        rec.pop("base")
        side.write_text(json.dumps(rec))
    monkeypatch.chdir(tmp_path)
    assert verify_tree(chain / R)[1] == []


# --------------------------------------------------------------------------- the code that ran


def test_every_sidecar_records_the_rule_that_wrote_it(chain, tmp_path, monkeypatch):
    import emorepro.provenance as P

    steps.union_folds({"iemocap": FOLDS}, f"{R}/u/folds.csv", n_folds=5)
    assert json.loads(Path(f"{R}/u/folds.csv.prov.json").read_text())["rule"] == "union_folds"
    # Run by Snakemake, the record says which rule ran the step (here: as the `folds` rule of a workflow).
    job = SimpleNamespace(rule="folds_by_hand", scriptdir=str(REPO / "workflow" / "scripts"))
    monkeypatch.setattr(sys.modules["__main__"], "snakemake", job, raising=False)
    steps.make_folds(MANIFEST, f"{R}/iemocap/folds/again.csv", scheme="loso5", val_policy="none")
    rec = json.loads(Path(f"{R}/iemocap/folds/again.csv.prov.json").read_text())
    assert rec["rule"] == "folds_by_hand" and rec["step"] == "folds"
    assert rec["code"]["path"] == str(P.PACKAGE_DIR)


def test_a_workflow_job_refuses_to_run_another_clones_code(chain, tmp_path, monkeypatch):
    other = tmp_path / "other-clone"
    (other / "src" / "emorepro").mkdir(parents=True)
    (other / "src" / "emorepro" / "__init__.py").write_text("")
    (other / "workflow" / "scripts").mkdir(parents=True)
    job = SimpleNamespace(rule="folds", scriptdir=str(other / "workflow" / "scripts"))
    monkeypatch.setattr(sys.modules["__main__"], "snakemake", job, raising=False)
    with pytest.raises(InputError, match="another clone's code"):
        steps.make_folds(MANIFEST, f"{R}/iemocap/folds/again.csv", scheme="loso5", val_policy="none")
    assert not Path(f"{R}/iemocap/folds/again.csv.prov.json").exists()


def test_two_clones_side_by_side_each_run_and_record_their_own_code(tmp_path):
    """A second clone sharing the venv (whose editable install points elsewhere) runs its own code."""
    clone = tmp_path / "clone2"
    for name in ("src", "scripts"):
        shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "requirements-lock.txt"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, clone / name)
    init = clone / "src" / "emorepro" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "clone2-'))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["EMOREPRO_VENV"] = str(Path(sys.executable).parents[1])
    code = "import json, emorepro; from emorepro.provenance import code_version; print(json.dumps(code_version()))"
    r = subprocess.run(["bash", "-c", f"source {clone}/scripts/env.sh && python -c '{code}'"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["path"] == str((clone / "src" / "emorepro").resolve())
    assert info["version"].startswith("clone2-")


def test_identical_runs_give_identical_model_bytes(chain):
    a = Path(run_dir(1)) / "model.pt"
    before = a.read_bytes()
    train_run(1)
    assert a.read_bytes() == before


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_mode_the_umask_says(chain, umask):
    old = os.umask(umask)
    try:
        steps.score(f"{run_dir(1)}/predictions.csv", f"{run_dir(1)}/m2.json", classes=CLASSES, fold=1, seed=1)
    finally:
        os.umask(old)
    for p in (f"{run_dir(1)}/m2.json", f"{run_dir(1)}/m2.json.prov.json"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask, p


# --------------------------------------------------------------------------- the workflow (Snakemake)

WF_CONFIG = """\
papers: [repro]
corpora:
  iemocap:
    synth: {seed: 0, turns_per_dialog: 6}
experiments:
  zhang2022:
    baseline_act:
      seeds: [1]
      folds_per_job: 1      # one job per run: the tests force-run the `train` rule
      model_params: {d_lstm: 8, d_att: 8, n_heads: 2, d_fc1: 16, d_fc2: 8}
      train: {epochs: 1, data: {max_seconds: 1.0}}
tables:
  repro:
    paper: repro
    title: repro
    columns: [{name: UA, metric: uar}]
    rows: [{name: base, experiment: zhang2022/baseline_act}]
"""
WF_ARGS = ("--cores", "2", "--configfile", "config/demo.yaml", "tamper.yaml")
WF_TABLE = "results/tables/repro.tex"


def snakemake(wd: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Snakemake without PYTHONPATH: the workflow itself must make its jobs import this clone's code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", PYTHONHASHSEED="0", **(env_extra or {}))
    return subprocess.run([str(Path(sys.executable).parent / "snakemake"), *args], cwd=wd, capture_output=True,
                          text=True, env=env, timeout=1800, check=False)


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory):
    from tests.workflow_utils import make_workdir

    wd = make_workdir(tmp_path_factory.mktemp("tamper_wf"))
    (wd / "tamper.yaml").write_text(WF_CONFIG)
    r = snakemake(wd, WF_TABLE, *WF_ARGS)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd


@pytest.fixture
def wf(workflow_dir, tmp_path):
    wd = tmp_path / "wd"
    shutil.copytree(workflow_dir, wd, symlinks=True)
    return wd


def _logs(wd: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((wd / "results" / "logs").rglob("*.log")))


@pytest.mark.slow
def test_workflow_jobs_run_and_record_this_clones_code_whatever_pythonpath_says(workflow_dir):
    sides = [json.loads(p.read_text()) for p in (workflow_dir / "results").rglob("*.prov.json")]
    assert sides and {s["code"]["path"] for s in sides} == {str(REPO / "src" / "emorepro")}
    rules = {s["rule"] for s in sides}
    assert rules >= {"synth_corpus", "ingest", "folds", "extract_features", "table"}
    assert "score_zhang2022_baseline_act" in rules   # the scoring rule of the experiment, as Snakemake ran it


@pytest.mark.slow
def test_workflow_rerun_after_an_edited_prediction_fails_naming_it_and_keeps_the_table(wf):
    p = wf / "results/runs/zhang2022/baseline_act/loso5/fold1/seed1/predictions.csv"
    df = pd.read_csv(p)
    df["pred"] = df["label"]
    df.to_csv(p, index=False)
    table, metrics = (wf / WF_TABLE).read_bytes(), (p.parent / "metrics.json").read_bytes()
    r = snakemake(wf, WF_TABLE, *WF_ARGS)
    assert r.returncode != 0
    assert "predictions.csv: sha256" in _logs(wf) and "modified after it was produced" in _logs(wf)
    assert (wf / WF_TABLE).read_bytes() == table and (p.parent / "metrics.json").read_bytes() == metrics


@pytest.mark.slow
def test_workflow_failed_rerun_restores_the_previous_outputs(wf):
    run = wf / "results/runs/zhang2022/baseline_act/loso5/fold1/seed1"
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    (wf / "bad.yaml").write_text("experiments: {zhang2022: {baseline_act: {train: {lr: -1.0}}}}\n")
    r = snakemake(wf, f"{run}/metrics.json", "--forcerun", "train", *WF_ARGS, "bad.yaml")
    assert r.returncode != 0
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before
    assert verify_tree(wf / "results")[1] == []


@pytest.mark.slow
def test_workflow_stops_on_a_damaged_shard_and_repair_restores_it(wf):
    cache = wf / "results/iemocap/features/fbank40"
    flip_byte(cache / "shard-00000.npy")
    r = snakemake(wf, WF_TABLE, "--forcerun", "train", *WF_ARGS)
    assert r.returncode != 0
    assert "shard-00000.npy" in _logs(wf) and f"emorepro features repair {cache.relative_to(wf)}" in _logs(wf)
    emorepro = str(Path(sys.executable).parent / "emorepro")
    r = subprocess.run([emorepro, "features", "repair", str(cache)], capture_output=True, text=True, cwd="/",
                       check=False)
    assert r.returncode == 0 and "byte-identical" in r.stdout, r.stdout + r.stderr
    assert verify_tree(wf / "results")[1] == []


@pytest.mark.slow
def test_workflow_stops_when_n_folds_disagrees_with_the_fold_file(wf):
    (wf / "nf3.yaml").write_text("protocols: {loso5: {n_folds: 3}}\n")
    table = (wf / WF_TABLE).read_bytes()
    r = snakemake(wf, WF_TABLE, *WF_ARGS, "nf3.yaml")
    assert r.returncode != 0 and "n_folds is 3" in _logs(wf) and "gives 5 folds" in _logs(wf)
    assert (wf / WF_TABLE).read_bytes() == table
