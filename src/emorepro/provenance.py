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


# --------------------------------------------------------------------------- auditing

def find_sidecars(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    return sorted([*root.rglob(f"*{SIDECAR_SUFFIX}"), *root.rglob(RUN_SIDECAR)])


def check_sidecar(side: str | os.PathLike) -> list[str]:
    """Problems of one sidecar: outputs (and existing inputs) whose bytes changed, or files gone."""
    from .io import read_json, sha256_file

    side = Path(side)
    rec = read_json(side)
    problems = []
    for o in rec.get("outputs", []):
        p = o["path"]
        if not os.path.exists(p):
            problems.append(f"{side}: output {p} is missing")
        elif sha256_file(p) != o["sha256"]:
            problems.append(f"{side}: output {p} was modified after it was produced (sha256 differs)")
    for role, entries in rec.get("inputs", {}).items():
        for e in entries:
            p = e["path"]
            if not os.path.exists(p):
                problems.append(f"{side}: input {p} ({role}) is missing")
            elif sha256_file(p) != e["sha256"]:
                problems.append(f"{side}: input {p} ({role}) changed since this artefact was made")
    return problems


def verify_tree(root: str | os.PathLike) -> tuple[int, list[str]]:
    """Check every sidecar under ``root``; return (number checked, problems)."""
    sides = find_sidecars(root)
    problems: list[str] = []
    for s in sides:
        problems += check_sidecar(s)
    return len(sides), problems


def _status(path: str, sha: str) -> str:
    from .io import sha256_file

    if not os.path.exists(path):
        return "MISSING"
    return "ok" if sha256_file(path) == sha else "MISMATCH"


def trace_cell(table_tex: str | os.PathLike, row: str, col: str, *, max_raw: int | None = None) -> tuple[list[str], bool]:
    """Walk from one table cell down to the raw corpus files; re-verify every hash on the way.

    Returns the printed lines and whether every link verified.
    """
    from .io import read_json

    lines: list[str] = []
    ok = True
    table_side = sidecar_path(table_tex)
    if not table_side.exists():
        return [f"{table_tex}: no provenance sidecar ({table_side.name})"], False
    rec = read_json(table_side)
    key = f"{row} | {col}"
    if key not in rec.get("cells", {}):
        rows = sorted({k.split(" | ")[0] for k in rec.get("cells", {})})
        cols = sorted({k.split(" | ")[1] for k in rec.get("cells", {})}, key=str)
        return [f"{table_tex}: no cell row={row!r} col={col!r}; rows: {rows}; columns: {cols}"], False
    cell = rec["cells"][key]
    for o in rec["outputs"]:
        st = _status(o["path"], o["sha256"])
        ok &= st == "ok"
        lines.append(f"table   {o['path']}  [{st}]")
    lines.append(f"cell    {row} / {col} = {cell['value_mean']}"
                 + (f" ± {cell['value_std']}" if cell.get("value_std") is not None else "")
                 + f"  ({rec.get('aggregation_rule', cell['aggregation'])})")
    seen: set[str] = set()
    for run in cell["runs"]:
        lines.append(f"  run   fold {run['fold']} seed {run['seed']}: {cell['metric']} x {cell['scale']} = {run['value']}")
        ok &= _walk(run["metrics"], lines, "    ", seen, max_raw)
    lines.append("VERIFIED: every link matches its recorded sha256" if ok else "BROKEN: see MISMATCH/MISSING above")
    return lines, ok


def sidecar_for(path: str | os.PathLike) -> Path | None:
    """The sidecar that records ``path``: its own ``.prov.json``, or its run directory's."""
    own = sidecar_path(path)
    if own.exists():
        return own
    run = Path(path).parent / RUN_SIDECAR  # a file produced inside a training run directory
    return run if run.exists() else None


def _walk(path: str, lines: list[str], indent: str, seen: set[str], max_raw: int | None) -> bool:
    """Print ``path``'s own record and recurse into the inputs that have sidecars."""
    from .io import read_json

    side = sidecar_for(path)
    if side is None:
        lines.append(f"{indent}{path}: no sidecar (raw input)")
        return os.path.exists(path)
    rec = read_json(side)
    ok = True
    out = next((o for o in rec["outputs"] if os.path.abspath(o["path"]) == os.path.abspath(path)), None)
    st = _status(path, out["sha256"]) if out else "NOT LISTED"
    ok &= st == "ok"
    seed = f" seed={rec['seed']}" if rec.get("seed") is not None else ""
    code = rec.get("code", {})
    lines.append(f"{indent}{rec['rule']:<16} {path}  [{st}]{seed}  code {str(code.get('commit'))[:10]}"
                 f"{'+dirty' if code.get('dirty') else ''}  ({side.name})")
    if str(side) in seen:
        lines.append(f"{indent}  (inputs listed above)")
        return ok
    seen.add(str(side))
    if rec["rule"] == "train":
        p = rec["params"]
        lines.append(f"{indent}  config: model={p.get('model')} fold={p.get('fold')} train={p.get('train')}")
    for role, entries in rec.get("inputs", {}).items():
        shown = entries if (max_raw is None or role != "raw") else entries[:max_raw]
        for e in shown:
            st = _status(e["path"], e["sha256"])
            ok &= st == "ok"
            if sidecar_for(e["path"]) is not None:
                lines.append(f"{indent}  <- {role}: [{st}]")
                ok &= _walk(e["path"], lines, indent + "     ", seen, max_raw)
            else:
                lines.append(f"{indent}  <- {role}: {e['path']}  sha256 {e['sha256'][:16]}  [{st}]")
        if len(shown) < len(entries):
            bad = [e for e in entries[len(shown):] if _status(e["path"], e["sha256"]) != "ok"]
            ok &= not bad
            lines.append(f"{indent}  <- {role}: ... {len(entries) - len(shown)} more files, "
                         + (f"{len(bad)} NOT matching: {[b['path'] for b in bad[:3]]}" if bad else "all verified ok"))
    return ok
