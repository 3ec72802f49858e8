"""Workflow benchmarks (issues 2, 19): the demo DAG from an empty results/, per rule; no-op re-run; ingestion.

    python benchmarks/workflow.py [--skip-demo] [--skip-ingest] [--utterances 10039]
                                  [--cores 2] [--configfile EXTRA.yaml ...] [--keep DIR]
                                  [--snakemake-args "--scheduler greedy"]

The demo runs ``snakemake --cores N --configfile config/demo.yaml [EXTRA ...]`` in a scratch
working directory (``--keep DIR`` keeps it there), then prints per rule: jobs, total wall, total
CPU and mean start-up (process start to the first line of real work, i.e. the job's first read
of an input; the CPU spent by then beside it).  Each job writes those figures as the last line
of its log (``emorepro-job: ...``, :mod:`emorepro.jobstats`); a job's rule is read from
Snakemake's own report of the job.  The per-experiment scoring rules (``score_<paper>_<variant>``)
are summed as ``score_*``, the packed training rules (``train_<paper>_<variant>_[folds<a>_<b>_]seeds<c>_<d>``)
as ``train_<paper>_*``.  Then it times a no-op re-run (``snakemake -n``, nothing to do).
The repo's results/ is never touched.  Figures depend on the machine's load: say what it was.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JOB_LINE = re.compile(r"emorepro-job: wall ([\d.]+) s cpu ([\d.]+) s startup (?:([\d.]+) s startup_cpu ([\d.]+) s|-)")


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def job_logs(snakemake_output: str) -> list[tuple[str, list[str]]]:
    """(rule, log paths) of every job in Snakemake's report of a run ("rule train:" / "localrule all:" blocks)."""
    parts = re.split(r"^(?:local)?rule (\w+):$", snakemake_output, flags=re.M)
    jobs = []
    for rule, body in zip(parts[1::2], parts[2::2]):
        logs = re.search(r"^\s+log: (.+)$", body.split("\n\n", 1)[0], re.M)
        jobs.append((rule, [s.strip() for s in logs[1].split(",")] if logs else []))
    return jobs


PACKED = re.compile(r"^train_([a-z]+\d{4})_\w+?_(?:folds\d+_\d+_)?seeds\d+_\d+$")


def rule_group(rule: str) -> str:
    """score_<paper>_<variant> -> score_*; a packed training rule -> train_<paper>_* (its paper's packed jobs)."""
    if rule.startswith("score_"):
        return "score_*"
    m = PACKED.match(rule)
    return f"train_{m[1]}_*" if m else rule


def per_rule_table(wd: Path, snakemake_output: str) -> tuple[list[tuple], dict]:
    """Rows (rule, jobs, wall, cpu, mean startup, mean startup cpu, jobs with a start-up) and the totals."""
    acc: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "cpu": 0.0, "startup": [], "startup_cpu": [],
                                                "unmeasured": 0})
    for rule, logs in job_logs(snakemake_output):
        if not logs:   # a target rule (all): no process, no log
            continue
        a = acc[rule_group(rule)]
        a["jobs"] += 1
        lines = [m for log in logs if (wd / log).is_file()
                 for m in JOB_LINE.finditer((wd / log).read_text(errors="replace"))]
        if not lines:
            a["unmeasured"] += 1
            continue
        m = lines[-1]
        a["wall"] += float(m[1])
        a["cpu"] += float(m[2])
        if m[3]:
            a["startup"].append(float(m[3]))
            a["startup_cpu"].append(float(m[4]))
    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    rows = []
    for rule, a in sorted(acc.items(), key=lambda kv: -kv[1]["cpu"]):
        rows.append((rule, a["jobs"], a["wall"], a["cpu"], mean(a["startup"]), mean(a["startup_cpu"]),
                     a["unmeasured"]))
    totals = {"jobs": sum(r[1] for r in rows), "wall": sum(r[2] for r in rows), "cpu": sum(r[3] for r in rows)}
    return rows, totals


def print_table(rows, totals, wall: float, cpu_all: float, cores: int) -> None:
    def f(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    print(f"{'rule':<28} {'jobs':>5} {'wall s':>9} {'CPU s':>9} {'start-up s':>11} {'start-up CPU s':>15}")
    for rule, jobs, w, c, su, suc, unmeasured in rows:
        note = f"  ({unmeasured} without a job line)" if unmeasured else ""
        print(f"{rule:<28} {jobs:>5} {w:>9.1f} {c:>9.1f} {f(su, '.2f'):>11} {f(suc, '.2f'):>15}{note}")
    print(f"{'all jobs':<28} {totals['jobs']:>5} {totals['wall']:>9.1f} {totals['cpu']:>9.1f}")
    print(f"snakemake itself (CPU of the run minus its jobs'): {cpu_all - totals['cpu']:.1f} CPU-s")
    print(f"run: {wall:.1f} s wall ({wall / 60:.1f} min) on {cores} cores, {cpu_all:.1f} CPU-s "
          f"({cpu_all / 60:.1f} CPU-min) in all")


def demo_dag(wd: Path, cores: int, extra: list[str], args: list[str]) -> None:
    from tests.workflow_utils import run_snakemake

    for f in extra:
        shutil.copy(f, wd / Path(f).name)
    config = ["--configfile", "config/demo.yaml", *(Path(f).name for f in extra)]
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cpu0, t = _children_cpu(), time.perf_counter()
    r = run_snakemake(wd, "--cores", str(cores), *config, *args, timeout=4 * 3600)
    wall, cpu_all = time.perf_counter() - t, _children_cpu() - cpu0
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows, totals = per_rule_table(wd, r.stdout + r.stderr)
    print_table(rows, totals, wall, cpu_all, cores)
    cpu0, t = _children_cpu(), time.perf_counter()
    r = run_snakemake(wd, "-n", *config)
    noop, noop_cpu = time.perf_counter() - t, _children_cpu() - cpu0
    assert "Nothing to be done" in r.stdout + r.stderr, "the re-run after a complete run should have nothing to do"
    print(f"no-op re-run (snakemake -n says nothing to do): {noop:.1f} s wall, {noop_cpu:.1f} CPU-s")


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
    from tests.workflow_utils import make_workdir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--utterances", type=int, default=10039)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", nargs="*", default=[], help="config files merged over config/demo.yaml")
    p.add_argument("--keep", type=Path, help="run the demo in this (new) directory and keep it")
    p.add_argument("--snakemake-args", default="", help="more arguments of the demo's snakemake run")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not a.skip_demo:
            base = a.keep or Path(tmp) / "demo"
            base.mkdir(parents=True)
            wd = make_workdir(base)
            print(f"working directory: {wd}{'' if a.keep else ' (removed at the end)'}")
            demo_dag(wd, a.cores, [str(Path(f).resolve()) for f in a.configfile], a.snakemake_args.split())
        if not a.skip_ingest:
            (Path(tmp) / "ingest").mkdir()
            full_size_ingest(Path(tmp) / "ingest", a.utterances)


if __name__ == "__main__":
    main()
