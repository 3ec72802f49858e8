"""Each job's log ends with its wall, CPU and start-up times (emorepro.jobstats), read by benchmarks/workflow.py."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

LINE = re.compile(r"^emorepro-job: wall ([\d.]+) s cpu ([\d.]+) s startup (?:([\d.]+) s startup_cpu ([\d.]+) s|- startup_cpu -)$")

JOB = """
import sys, time
from emorepro.steps import log_to
log_to(sys.argv[1], [sys.argv[2]] if len(sys.argv) > 2 else [])
t = time.process_time() + 0.3
while time.process_time() < t:   # 0.3 CPU-s before the first read of an input: start-up
    pass
if len(sys.argv) > 2:
    open(sys.argv[2]).read()
time.sleep(0.2)             # work after it
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_log_ends_with_wall_cpu_and_startup_up_to_the_first_input_read(tmp_path):
    inp = tmp_path / "data" / "input.csv"
    inp.parent.mkdir()
    inp.write_text("x\n")
    log = tmp_path / "job.log"
    subprocess.run([sys.executable, "-c", JOB, str(log), str(inp)], check=True)
    m = LINE.match(log.read_text().splitlines()[-1])
    assert m, log.read_text()
    wall, cpu, startup, startup_cpu = map(float, m.groups())
    assert 0.3 <= startup <= wall - 0.19   # the busy loop is start-up, the sleep after the read is not
    assert 0.3 <= startup_cpu <= cpu


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_job_without_inputs_has_no_startup(tmp_path):
    log = tmp_path / "job.log"
    subprocess.run([sys.executable, "-c", JOB, str(log)], check=True)
    m = LINE.match(log.read_text().splitlines()[-1])
    assert m and m[3] is None and float(m[1]) >= 0.5


def test_benchmark_reads_rules_and_job_lines_from_a_run(tmp_path):
    """benchmarks/workflow.py's per-rule table: jobs by Snakemake's report, figures from each job's log."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
    import workflow as bench

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/a.log").write_text("x\nemorepro-job: wall 2.000 s cpu 1.500 s startup 1.000 s startup_cpu 0.800 s\n")
    (tmp_path / "logs/b.log").write_text("emorepro-job: wall 4.000 s cpu 2.500 s startup 3.000 s startup_cpu 1.200 s\n")
    (tmp_path / "logs/c.log").write_text("emorepro-job: wall 1.000 s cpu 1.000 s startup - startup_cpu -\n")
    out = ("[Mon]\nrule train:\n    input: x\n    log: logs/a.log\n    jobid: 1\n\n"
           "[Mon]\nlocalrule train:\n    log: logs/b.log\n    jobid: 2\n\n"
           "[Mon]\nrule score_zhang2022_x:\n    log: logs/c.log\n    jobid: 3\n\n"
           "[Mon]\nlocalrule all:\n    input: y\n    jobid: 0\n\nFinished jobid: 0 (Rule: all)\n")
    rows, totals = bench.per_rule_table(tmp_path, out)
    assert rows == [("train", 2, 6.0, 4.0, 2.0, 1.0, 0), ("score_*", 1, 1.0, 1.0, None, None, 0)]
    assert totals == {"jobs": 3, "wall": 7.0, "cpu": 5.0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("fail", [False, True])
def test_job_done_ends_the_process_after_the_exit_handlers_and_keeps_failures_failures(tmp_path, fail):
    log = tmp_path / "job.log"
    code = ("import atexit, sys\nfrom emorepro.steps import job_done, log_to\n"
            f"log_to({str(log)!r})\n"
            "atexit.register(lambda: print('exit handler ran', file=sys.stderr))\n"
            "print('stdout is flushed', end='')\n"
            + ("raise RuntimeError('the step failed')\n" if fail else "") + "job_done()\nprint('never')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == (1 if fail else 0) and r.stdout == "stdout is flushed"
    lines = log.read_text().splitlines()
    assert LINE.match(lines[-1]) and "exit handler ran" in lines   # the job line comes last
    assert ("RuntimeError: the step failed" in log.read_text()) == fail
