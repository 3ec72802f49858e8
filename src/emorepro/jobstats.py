"""One line per job in its log: wall time, CPU time and start-up, for ``benchmarks/workflow.py``.

:func:`emorepro.steps.log_to` calls :func:`install` in every Snakemake job.  When the process
exits it appends to the job's log::

    emorepro-job: wall 4.213 s cpu 3.950 s startup 2.310 s startup_cpu 1.870 s

* wall: from the process's start (the kernel's record, so the interpreter's own start-up counts);
* cpu: user + system time of the process and of the children it waited for (espeak-ng, ...);
* startup: from the process's start to the first line of real work, taken as the moment the
  job first opens one of its input files or a file beside one (interpreter, imports and config
  come before that); ``-`` for a job without inputs.  startup_cpu: this process's CPU time
  up to that moment (children excluded).  The moment is caught with an audit hook (:pep:`578`), so no
  step needs a marker of its own.

Linux only (``/proc``); elsewhere nothing is written.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable

_state: dict = {}


def process_start_time() -> float | None:
    """Epoch seconds at which this process started (``/proc/self/stat`` starttime), or None off Linux."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])   # field 22 of proc(5); fields[0] is field 3
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return btime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _flatten(paths) -> list[str]:
    out: list[str] = []
    for p in paths:
        if isinstance(p, (str, os.PathLike)):
            out.append(os.path.abspath(os.fspath(p)))
        else:
            out += _flatten(p)
    return out


def _hook(event: str, args: tuple) -> None:
    if event != "open" or "first_input" in _state:
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        p = os.path.abspath(os.fsdecode(path))
        if p in _state["inputs"] or p.startswith(_state["input_dirs"]):
            _state["first_input"] = time.time(), time.process_time()


def _report() -> None:
    import resource

    start = _state["start"]
    wall = time.time() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    first, first_cpu = _state.get("first_input", (None, None))
    startup = f"{first - start:.3f} s startup_cpu {first_cpu:.3f} s" if first else "- startup_cpu -"
    print(f"emorepro-job: wall {wall:.3f} s cpu {cpu:.3f} s startup {startup}", file=sys.stderr, flush=True)


def install(inputs: Iterable = ()) -> None:
    """Watch for the first read of one of ``inputs`` and write the job's line to stderr at exit (once per process)."""
    import atexit

    if _state or (start := process_start_time()) is None:
        return
    paths = _flatten(inputs)
    # A file in an input's directory counts too: an input may be a marker (a corpus's synth_summary.json)
    # whose siblings are what the job reads, or a cache manifest beside its shards.
    dirs = {p if os.path.isdir(p) else os.path.dirname(p) for p in paths}
    _state.update(start=start, inputs=frozenset(paths), input_dirs=tuple(sorted(d.rstrip("/") + "/" for d in dirs)))
    if paths:
        sys.addaudithook(_hook)
    atexit.register(_report)


def exit_now() -> None:
    """End a finished job's process: run the atexit handlers (the job line among them), flush, ``os._exit(0)``.

    CPython's finalization after them (tearing down every module and object) costs 0.3-0.8 CPU-s in a
    job that imported torch, sklearn or pandas (measured: 0.8 of a demo training job's 3.9 CPU-s) and
    does nothing a finished job needs: its outputs are written atomically and closed.  Call it only on
    success, as the last line of a script; a failing job never gets here and exits as usual.
    """
    import atexit
    import logging

    logging.shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)

