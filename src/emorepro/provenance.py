"""Provenance sidecars: the single format and the single writer for every artefact.

Every file the pipeline produces gets a JSON sidecar that says how it was made:

* ``rule`` and the resolved ``params`` (including the ``seed`` when there is one);
* ``inputs``: every input file with its sha256, grouped by role;
* ``outputs``: every output file with its sha256 (re-checked by ``emorepro verify``);
* ``code``: package version, git commit and dirty flag of the checkout that ran;
* ``packages``: versions of the scientific stack (read from metadata, nothing imported);
* ``host``, ``python``, ``started`` and ``ended`` (UTC, ISO 8601).

A sidecar is named ``<artefact>.prov.json``; a training run directory has one
``provenance.json`` that covers all files of the run.  Both use :func:`write_provenance`.
Sidecars are chained: an input that has its own sidecar can be followed down to the raw
corpus files, which is what ``emorepro trace`` does.
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import __version__
from .io import sha256_file, write_json

FORMAT = "emorepro-provenance/1"
SIDECAR_SUFFIX = ".prov.json"
RUN_SIDECAR = "provenance.json"

# The stack whose versions can change a number.  Read from installed metadata: importing
# them here would cost seconds per job.
TRACKED_PACKAGES = (
    "torch", "torchaudio", "transformers", "tokenizers", "fairseq2", "fairseq2n", "numpy",
    "scipy", "pandas", "scikit-learn", "soundfile", "numba", "pulp", "matplotlib", "snakemake",
    "snakemake-executor-plugin-slurm",
)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """Git commit and dirty flag of the source tree this package was imported from."""
    src = Path(__file__).resolve().parent
    info: dict[str, Any] = {"package": "emorepro", "version": __version__, "commit": None, "dirty": None}
    try:
        top = subprocess.run(["git", "-C", str(src), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        info["commit"] = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"],
                                        capture_output=True, text=True, check=True).stdout.strip()
        # Only tracked source counts as "dirty": results/ and caches are git-ignored.
        status = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout
        info["dirty"] = bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git checkout (e.g. an installed wheel): commit stays None, which is recorded
    return info


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _file_entries(paths: Iterable[str | os.PathLike]) -> list[dict[str, str]]:
    entries = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            # A directory input is recorded file by file so that a changed member is caught.
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                entries.append({"path": os.fspath(f), "sha256": sha256_file(f)})
        else:
            entries.append({"path": os.fspath(p), "sha256": sha256_file(p)})
    return entries


def _as_groups(files: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, list[dict[str, str]]]:
    if files is None:
        return {}
    if isinstance(files, Mapping):
        groups = {}
        for role, val in files.items():
            vals = [val] if isinstance(val, (str, os.PathLike)) else list(val)
            groups[role] = _file_entries(vals)
        return groups
    return {"files": _file_entries(files)}


def sidecar_path(artefact: str | os.PathLike) -> Path:
    p = Path(artefact)
    if p.is_dir():
        return p / RUN_SIDECAR
    return p.with_name(p.name + SIDECAR_SUFFIX)


def build_record(*, rule: str, params: Mapping[str, Any] | None, inputs, outputs,
                 started: str, seed: int | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    record = {
        "format": FORMAT,
        "rule": rule,
        "params": dict(params or {}),
        "seed": seed,
        "inputs": _as_groups(inputs),
        "outputs": _file_entries(outputs),
        "code": code_version(),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "started": started,
        "ended": now(),
    }
    if extra:
        record.update(extra)
    return record


def write_provenance(target: str | os.PathLike, **kwargs) -> Path:
    """Write the sidecar of ``target`` (a file, or a run directory) and return its path.

    ``kwargs`` are those of :func:`build_record`; output files are hashed after they are
    complete, so call this last.
    """
    path = sidecar_path(target)
    write_json(path, build_record(**kwargs))
    return path
