"""The real workflow through ``snakemake --profile profiles/slurm`` on a real, local Slurm.

The module brings up the single-node Slurm of ``scripts/local-slurm-up.sh`` (munge, slurmdbd on
MariaDB, one fake GPU ``gpu:fakegpu:1``; as root it installs the packages itself) and stops it
again with ``scripts/local-slurm-down.sh``, also when a test fails (a Slurm that was already up
before the module is used and left up).  Not root and no sudo: skipped.  On a small config of the demo
(tests/config/slurm.yaml: Zhang et al. Table 4, baseline row only, 11 jobs) it checks that

1. every training job was submitted with a GPU request: the plugin's ``sbatch call`` lines
   (``--verbose``) carry ``-p gpu ... --gpus=fakegpu:1`` and Slurm's accounting records
   ``gres/gpu=1`` for every ``rule_train`` job;
2. every run's predictions.csv and the table CSV are byte-identical to a local ``--cores 2`` run;
3. a train job that fails on purpose (a dropout of 2.0) is reported as failed with its
   Slurm log path, which exists, snakemake exits non-zero and no output of the job is left;
4. a train job cancelled with ``scancel`` while its rule runs is retried (profile: ``retries: 1``)
   and the workflow completes.

Every snakemake call runs under ``timeout -k 30``, so a hang fails the test instead of eating CI's
time limit.  The fixture prints how long each phase took (bring-up, runs, teardown).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.workflow_utils import REPO, make_workdir, snakemake_bin

pytestmark = pytest.mark.slurm

UP = REPO / "scripts" / "local-slurm-up.sh"
DOWN = REPO / "scripts" / "local-slurm-down.sh"
TABLE = "results/tables/zhang2022_table4"
TARGET = f"{TABLE}.tex"
# One run of the failing experiment of tests/config/slurm.yaml; its inputs are built by the main run.
FAIL_DIR = "results/runs/zhang2022/slurm_fail/loso5/fold1/seed1"
CONFIG = ("--configfile", "config/demo.yaml", "slurm_test.yaml")
# The plugin polls job states i s after a poll that saw a job finish, then i + 10, i + 20, ... s
# after each poll that saw none (i = slurm-init-seconds-before-status-checks): with the profile's
# i = 5 a job of 6-20 s is noticed after 20 s, with i = 2 after 14 s.  Most levels of this DAG
# are such a job, so the test polls from 2 s (6 s less per level); the profile keeps its 5 s.
PROFILE = ("--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "2")
N_TRAIN = 5  # baseline_act: 5 folds x 1 seed
# Bounds (seconds).  A Slurm run takes 2-4 min on a 2-core machine (more when it is shared);
# `timeout -k 30` also kills a snakemake that ignores SIGTERM.
RUN_TIMEOUT = int(os.environ.get("EMOREPRO_SLURM_RUN_TIMEOUT", "480"))
UP_TIMEOUT = 900  # apt-get install of slurm-wlm, munge, slurmdbd, mariadb-server on a fresh CI machine


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}


def _smk_cmd(*args: str, timeout: int = RUN_TIMEOUT) -> list[str]:
    return ["timeout", "-k", "30", str(timeout), snakemake_bin(), *args]


def _snakemake(wd: Path, log_name: str, *args: str, timeout: int = RUN_TIMEOUT) -> "Run":
    """Run snakemake in ``wd`` (bounded), output to ``wd/<log_name>``."""
    log = wd / log_name
    t0 = time.monotonic()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(_smk_cmd(*args, timeout=timeout), cwd=wd, stdout=fh, stderr=subprocess.STDOUT,
                                env=_env(), timeout=timeout + 60).returncode
        except subprocess.TimeoutExpired:
            rc = -9
    return Run(wd, log, rc, time.monotonic() - t0)


@dataclass
class Run:
    wd: Path
    log: Path
    rc: int
    seconds: float

    @property
    def out(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 60) -> str:
        return f"--- last lines of {self.log} (rc {self.rc}, {self.seconds:.0f} s) ---\n" + \
            "\n".join(self.out.splitlines()[-n:])

    @property
    def run_uuid(self) -> str | None:
        m = re.search(r"^SLURM run ID: (\S+)", self.out, re.M)
        return m.group(1) if m else None


def _quiet(cmd: list[str], timeout: int = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 255, "", str(e))


def _slurm_responds() -> bool:
    """A usable cluster: slurmctld answers and accounting (sacct, needed by the plugin) works."""
    if not shutil.which("scontrol"):
        return False
    return "is UP" in _quiet(["scontrol", "ping"]).stdout and _quiet(["sacct", "-n", "-X", "-j", "1"]).returncode == 0


def _sacct(run_uuid: str) -> list[dict[str, str]]:
    """Slurm's accounting of every job of one snakemake run (the plugin names them after the run)."""
    fields = ["JobID", "Comment", "Partition", "State", "ReqTRES"]
    r = _quiet(["sacct", "-X", "-P", "-n", "-S", "now-1days", "--name", run_uuid, "-o", ",".join(fields)])
    return [dict(zip(fields, line.split("|"))) for line in r.stdout.splitlines() if line.strip()]


def _is_train(comment: str) -> bool:
    # The plugin's job comment: rule_<rule> or, for a rule with wildcards, rule_<rule>_wildcards_<values>.
    return comment == "rule_train" or comment.startswith("rule_train_wildcards_")


class CancelWatcher(threading.Thread):
    """Cancel the first train job caught inside its rule; record what was cancelled.

    Polls ``squeue`` every 0.5 s for a RUNNING job whose comment is the train rule's, waits until
    its Slurm log shows that the job step has started the rule (``localrule train:``, i.e. the
    training script is being run), then scancels it.  If a job finishes before that, the next
    train job is tried.
    """

    def __init__(self, wd: Path, deadline_s: float):
        super().__init__(daemon=True)
        self.wd, self.deadline = wd, time.monotonic() + deadline_s
        self.stop = threading.Event()
        self.cancelled: str | None = None
        self.comment: str | None = None
        self.detail = ""

    def _log_of(self, job_id: str) -> Path | None:
        hits = list((self.wd / ".snakemake" / "slurm_logs" / "rule_train").glob(f"*/{job_id}.log"))
        return hits[0] if hits else None

    def _wait_for_rule(self, job_id: str) -> bool:
        """True once the job's Slurm log shows its rule running; False if the job left RUNNING first."""
        while time.monotonic() < self.deadline and not self.stop.is_set():
            log = self._log_of(job_id)
            if log is not None and "localrule train:" in log.read_text(errors="replace"):
                return True
            if job_id not in _quiet(["squeue", "-h", "-t", "RUNNING", "-o", "%i"]).stdout.split():
                return False
            time.sleep(0.2)
        return False

    def run(self) -> None:
        seen: set[str] = set()
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            r = _quiet(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"])
            for line in r.stdout.splitlines():
                job_id, _, comment = line.strip().partition(" ")
                if job_id in seen or not _is_train(comment):
                    continue
                seen.add(job_id)
                t_running = time.monotonic()
                if not self._wait_for_rule(job_id):
                    continue  # finished (or failed) before its rule started: try the next one
                if _quiet(["scancel", job_id]).returncode == 0:
                    self.cancelled, self.comment = job_id, comment
                    self.detail = f"job {job_id} ({comment}) cancelled {time.monotonic() - t_running:.1f} s after " \
                                  "it was seen RUNNING, once its Slurm log showed 'localrule train:'"
                    return
            time.sleep(0.5)


@dataclass
class SlurmRuns:
    slurm_wd: Path
    local_wd: Path
    main: Run | None = None            # the workflow through the profile, one train job scancel'ed
    failing: Run | None = None         # one train job that fails on purpose, --retries 0
    local: Run | None = None           # the same config with --cores 2, no Slurm
    watcher: CancelWatcher | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _report(request, text: str) -> None:
    """Write to the terminal even from a fixture's teardown (output capture suspended)."""
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:  # pragma: no cover
        print(text)
        return
    with capman.global_and_fixture_disabled():
        tr.write_line(text)


@pytest.fixture(scope="module")
def slurm_runs(tmp_path_factory, request):
    t_module = time.monotonic()
    timings: dict[str, float] = {}
    slurm_wd = make_workdir(tmp_path_factory.mktemp("slurm"))
    local_wd = make_workdir(tmp_path_factory.mktemp("slurm_local"))
    for wd in (slurm_wd, local_wd):
        shutil.copy(REPO / "tests" / "config" / "slurm.yaml", wd / "slurm_test.yaml")

    # --- who may start Slurm -------------------------------------------------------------------
    sudo: list[str] = []
    already_up = _slurm_responds()
    if os.geteuid() != 0 and not already_up:
        if shutil.which("sudo") and _quiet(["sudo", "-n", "true"]).returncode == 0:
            sudo = ["sudo", "-n"]
        else:
            pytest.skip("no local Slurm is up and starting one (scripts/local-slurm-up.sh) needs root "
                        "or passwordless sudo; run `sudo scripts/local-slurm-up.sh` first or run the tests as root")
    # A cluster that was already up is someone else's: use it, leave it up.
    tear_down = not already_up

    # The local reference run needs no Slurm: start it now, so that it overlaps the package install
    # of a fresh machine; it is awaited before the first Slurm run, which then has the CPUs alone.
    t_local = time.monotonic()
    local_log = open(local_wd / "local.out", "w")
    local_proc = subprocess.Popen(_smk_cmd("--cores", "2", TARGET, *CONFIG), cwd=local_wd, stdout=local_log,
                                  stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    runs = SlurmRuns(slurm_wd, local_wd, timings=timings)
    try:
        t0 = time.monotonic()
        if not already_up:
            try:
                up = subprocess.run([*sudo, str(UP)], capture_output=True, text=True, timeout=UP_TIMEOUT)
                up_rc, up_out = up.returncode, up.stdout + up.stderr
            except subprocess.TimeoutExpired as e:
                up_rc, up_out = -9, f"timed out after {UP_TIMEOUT} s: {e}"
            timings["slurm up"] = time.monotonic() - t0
            if up_rc != 0 or not _slurm_responds():
                msg = f"scripts/local-slurm-up.sh failed (rc {up_rc}):\n{up_out[-4000:]}"
                if os.geteuid() == 0:
                    pytest.fail(msg)  # as root this is a broken script or machine, not a missing permission
                pytest.skip(f"could not bring up the local Slurm with sudo: {msg}")

        try:
            rc = local_proc.wait(timeout=RUN_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            os.killpg(local_proc.pid, signal.SIGKILL)
            rc = local_proc.wait()
        runs.local = Run(local_wd, local_wd / "local.out", rc, time.monotonic() - t_local)
        timings["local run (from its start, overlapping the bring-up)"] = runs.local.seconds

        # Checks 1, 2, 4: the workflow, with one train job scancel'ed while its rule runs.
        runs.watcher = CancelWatcher(slurm_wd, deadline_s=RUN_TIMEOUT)
        runs.watcher.start()
        runs.main = _snakemake(slurm_wd, "slurm_main.out", *PROFILE, "--verbose", TARGET, *CONFIG)
        runs.watcher.stop.set()
        runs.watcher.join(timeout=30)
        timings["Slurm run (11 jobs + 1 retry)"] = runs.main.seconds

        # Check 3: one train job that fails on purpose; --retries 0 or the profile would run it twice.
        runs.failing = _snakemake(slurm_wd, "slurm_fail.out", *PROFILE, "--retries", "0",
                                  f"{FAIL_DIR}/predictions.csv", *CONFIG)
        timings["failing Slurm run (1 job)"] = runs.failing.seconds
        yield runs
    finally:
        if local_proc.poll() is None:
            os.killpg(local_proc.pid, signal.SIGKILL)
            local_proc.wait()
        local_log.close()
        if tear_down:
            t0 = time.monotonic()
            down = _quiet([*sudo, str(DOWN)], timeout=300)
            timings["slurm down"] = time.monotonic() - t0
            if down.returncode != 0:
                _report(request, f"WARNING: scripts/local-slurm-down.sh exited {down.returncode}:\n"
                                 f"{(down.stdout + down.stderr)[-2000:]}")
        timings["module total"] = time.monotonic() - t_module
        lines = [f"  {k}: {v:.1f} s" for k, v in timings.items()]
        if runs.watcher is not None:
            lines.append(f"  scancel: {runs.watcher.detail or 'nothing cancelled'}")
        note = "" if tear_down else " (Slurm was up before this module: left up)"
        _report(request, "\ntests/test_slurm.py timings" + note + ":\n" + "\n".join(lines))
        (tmp_path_factory.getbasetemp() / "test_slurm_timings.json").write_text(json.dumps(timings, indent=1))


def _train_predictions(wd: Path) -> dict[str, bytes]:
    runs = sorted((wd / "results" / "runs" / "zhang2022" / "baseline_act").rglob("predictions.csv"))
    return {str(p.relative_to(wd)): p.read_bytes() for p in runs}


def test_train_jobs_request_a_gpu(slurm_runs):
    main = slurm_runs.main
    assert main.rc == 0, main.tail()
    # (a) The plugin's debug line for each submission (--verbose).
    calls = [line for line in main.out.splitlines() if "sbatch call: " in line]
    by_rule: dict[str, list[str]] = {}
    for line in calls:
        m = re.search(r"--comment (\S+)", line)
        assert m, f"sbatch call without a --comment: {line[:300]}"
        rule = re.sub(r"_wildcards_.*", "", m.group(1)).removeprefix("rule_")
        by_rule.setdefault(rule, []).append(line)
    train_calls = by_rule.get("train", [])
    assert len(train_calls) == N_TRAIN + 1, f"expected {N_TRAIN} train submissions + 1 retry: {sorted(by_rule)}"
    for line in train_calls:
        assert re.search(r" -p gpu ", line) and "--gpus=fakegpu:1" in line, line[:400]
    for rule, lines in by_rule.items():  # the CPU rules ask for no GPU
        if rule not in ("train", "extract_features"):
            assert not any("--gpus" in line for line in lines), rule
    # (b) Slurm's accounting: the requested TRES of every train job include the GPU.
    uuid = main.run_uuid
    assert uuid, "no 'SLURM run ID:' line in the snakemake output"
    deadline = time.monotonic() + 20  # slurmdbd may lag a little behind slurmctld
    while True:
        jobs = [j for j in _sacct(uuid) if _is_train(j["Comment"])]
        if len(jobs) >= N_TRAIN + 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(jobs) == N_TRAIN + 1, jobs
    for j in jobs:
        assert j["Partition"] == "gpu" and "gres/gpu=1" in j["ReqTRES"].split(","), j


def test_outputs_identical_to_a_local_run(slurm_runs):
    main, local = slurm_runs.main, slurm_runs.local
    assert local.rc == 0, local.tail()
    assert main.rc == 0, main.tail()
    ours, ref = _train_predictions(slurm_runs.slurm_wd), _train_predictions(slurm_runs.local_wd)
    assert len(ref) == N_TRAIN and sorted(ours) == sorted(ref)
    differing = [p for p in ref if ours[p] != ref[p]]
    assert not differing, f"predictions differ from the local run's: {differing}"
    table = f"{TABLE}.csv"
    assert (slurm_runs.slurm_wd / table).read_bytes() == (slurm_runs.local_wd / table).read_bytes()


def test_failing_job_is_reported_with_its_slurm_log_and_leaves_no_output(slurm_runs):
    run = slurm_runs.failing
    out = run.out
    assert run.rc not in (0, 124, 137, -9), run.tail()  # failed, and not by the timeout
    assert "Error in rule train:" in out, run.tail()
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", out), run.tail()
    logs = re.findall(r"(/\S*/\.snakemake/slurm_logs/rule_train/zhang2022_slurm_fail_\S*?/\d+\.log)", out)
    assert logs, f"no Slurm log path of the failed job in the output\n{run.tail()}"
    slurm_log = Path(logs[0])
    assert slurm_log.is_file() and slurm_log.resolve().is_relative_to(slurm_runs.slurm_wd.resolve()), slurm_log
    assert "Error in rule train:" in slurm_log.read_text(errors="replace")  # the job step's own report
    # It failed for the planned reason: the rule's log has the traceback, and the profile's
    # show-failed-logs prints that log in snakemake's output.
    rule_log = slurm_runs.slurm_wd / "results/logs/train/zhang2022/slurm_fail/loso5/fold1_seed1.log"
    assert "ValueError: dropout" in rule_log.read_text(errors="replace")   # torch refuses a dropout of 2.0
    assert "ValueError: dropout" in out
    run_dir = slurm_runs.slurm_wd / FAIL_DIR
    left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) if run_dir.exists() else []
    assert not left, f"the failed job left output behind: {left}"
    assert not (slurm_runs.slurm_wd / FAIL_DIR / "predictions.csv").exists()
    assert not (slurm_runs.slurm_wd / FAIL_DIR / "model.pt").exists()


def test_scancelled_job_is_retried_and_the_workflow_completes(slurm_runs):
    main, watcher = slurm_runs.main, slurm_runs.watcher
    assert watcher.cancelled, f"the watcher cancelled no train job\n{main.tail()}"
    job = watcher.cancelled
    assert main.rc == 0, main.tail()
    out = main.out
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in out, main.tail()
    assert "Trying to restart job" in out
    assert (slurm_runs.slurm_wd / f"{TABLE}.tex").is_file()
    # Accounting: the cancelled job, then a completed resubmission of the same rule and wildcards.
    deadline = time.monotonic() + 20
    while True:
        same = [j for j in _sacct(main.run_uuid) if j["Comment"] == watcher.comment]
        if len(same) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    states = {j["JobID"]: j["State"] for j in same}
    assert states.get(job, "").startswith("CANCELLED"), states
    retried = [i for i in states if i != job]
    assert [states[i] for i in retried] == ["COMPLETED"] and int(retried[0]) > int(job), states
