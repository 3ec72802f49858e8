"""Foundation benchmarks (issue 2): demo DAG wall time, no-op re-run, full-size ingestion.

    python benchmarks/workflow.py [--skip-demo] [--skip-ingest] [--utterances 10039]

Prints one line per figure.  Runs in scratch directories; the repo's results/ is untouched.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def demo_dag(tmp: Path) -> None:
    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp)
    t = time.perf_counter()
    run_snakemake(wd, "--cores", "2", "--configfile", "config/demo.yaml")
    wall = time.perf_counter() - t
    n_jobs = sum(1 for _ in (wd / "results" / "logs").rglob("*.log"))
    print(f"demo DAG from empty results/ on {os.cpu_count()} cores: {wall:.1f} s wall, {n_jobs} jobs")
    t = time.perf_counter()
    r = run_snakemake(wd, "-n", "--configfile", "config/demo.yaml")
    noop = time.perf_counter() - t
    assert "Nothing to be done" in r.stdout + r.stderr
    print(f"no-op re-run (snakemake -n says nothing to do): {noop:.1f} s")


def full_size_ingest(tmp: Path, n_utts: int) -> None:
    """A synthetic release with the real release's size (10,039 utterances), short wavs."""
    from emorepro.corpus.iemocap import LabelPolicy, ingest_iemocap
    from emorepro.corpus.synth import SynthConfig, synthesize_iemocap

    dialogs = 13  # 5 sessions x 2 dialogs + impro05a, impro05b, script01_1b
    turns = -(-n_utts // dialogs)
    root = tmp / "IEMOCAP_full_release"
    t = time.perf_counter()
    synthesize_iemocap(root, SynthConfig(seed=0, turns_per_dialog=turns))
    synth = time.perf_counter() - t
    policy = LabelPolicy({"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"},
                         frozenset(["fru", "sur", "fea", "dis", "oth", "xxx"]))
    t = time.perf_counter()
    df = ingest_iemocap(root, policy)
    ingest = time.perf_counter() - t
    print(f"synthesise {len(df)} utterances: {synth:.1f} s; ingest them: {ingest:.2f} s "
          f"({len(df) / ingest:,.0f} utterances/s)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--utterances", type=int, default=10039)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not a.skip_demo:
            demo_dag(Path(tmp) / "demo")
        if not a.skip_ingest:
            (Path(tmp) / "ingest").mkdir()
            full_size_ingest(Path(tmp) / "ingest", a.utterances)


if __name__ == "__main__":
    main()
