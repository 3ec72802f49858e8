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

Paths are recorded as the step saw them (relative to the working directory of the run);
``base`` (the working directory relative to the sidecar's folder) lets ``verify`` and
``trace`` resolve them from anywhere.  ``rule`` is the Snakemake rule that ran the step
(the step's own name when it ran from the CLI), ``step`` the step function's name.

The checks every step runs on its inputs before using them live here too
(:func:`check_against_sidecar`, :func:`check_feature_cache`), as does the guard that a
workflow job runs the code of its own clone (:func:`check_code_origin`).
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import __version__
from .io import InputError, read_json, sha256_file, write_json

FORMAT = "emorepro-provenance/1"
SIDECAR_SUFFIX = ".prov.json"
RUN_SIDECAR = "provenance.json"

# The stack whose versions can change a number.  Read from installed metadata: importing
# them here would cost seconds per job.
TRACKED_PACKAGES = (
    "torch", "torchaudio", "transformers", "tokenizers", "fairseq2", "fairseq2n", "numpy",
    "scipy", "pandas", "scikit-learn", "soundfile", "numba", "pulp", "matplotlib", "snakemake",
    "snakemake-executor-plugin-slurm",
    # back-ends that change numbers: Zhang's fbank front-end option, RoBERTa/DeBERTa tokenisers, the TTS stage
    "python-speech-features", "sentencepiece", "coqui-tts", "torchcodec",
)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """Git commit and dirty flag of the source tree this package was imported from (the code that runs).

    ``path`` is that package directory, so two clones side by side are told apart; a dirty tree
    also records ``diff_sha256`` (of ``git diff HEAD``), so two different edits are told apart.
    """
    src = PACKAGE_DIR
    info: dict[str, Any] = {"package": "emorepro", "version": __version__, "path": os.fspath(src), "commit": None,
                            "dirty": None}
    try:
        top = subprocess.run(["git", "-C", str(src), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        info["commit"] = subprocess.run(["git", "-C", top, "rev-parse", "HEAD"],
                                        capture_output=True, text=True, check=True).stdout.strip()
        # Only tracked source counts as "dirty": results/ and caches are git-ignored.
        status = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout
        info["dirty"] = bool(status.strip())
        if info["dirty"]:
            diff = subprocess.run(["git", "-C", top, "diff", "HEAD", "--binary"], capture_output=True,
                                  check=True).stdout
            info["diff_sha256"] = hashlib.sha256(diff).hexdigest()
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git checkout (e.g. an installed wheel): commit stays None, which is recorded
    return info


def _snakemake_job():
    """The ``snakemake`` object of the Snakemake script this process runs, if any."""
    return getattr(sys.modules.get("__main__"), "snakemake", None)


def expected_package_dir() -> Path | None:
    """Where the running workflow's own ``emorepro`` package lies, when this process runs a workflow job.

    A Snakemake script job knows its script directory (``<clone>/workflow/scripts``); the workflow
    also exports ``EMOREPRO_SRC`` (``<clone>/src``).  None outside a workflow, or when the clone has
    no ``src/emorepro`` (an installed package).
    """
    job = _snakemake_job()
    candidates = []
    if job is not None and getattr(job, "scriptdir", None):
        candidates.append(Path(job.scriptdir).resolve().parents[1] / "src" / "emorepro")
    if os.environ.get("EMOREPRO_SRC"):
        candidates.append(Path(os.environ["EMOREPRO_SRC"]).resolve() / "emorepro")
    return next((c for c in candidates if (c / "__init__.py").is_file()), None)


def check_code_origin() -> None:
    """Refuse to run a workflow job with another clone's code (e.g. a shared venv's editable install).

    Two clones side by side share the project venv; its editable install points at whichever clone
    installed last.  ``scripts/env.sh`` and the workflow put the clone's ``src`` first on PYTHONPATH;
    this check makes a miss an error instead of a result recorded under the wrong code.
    """
    want = expected_package_dir()
    if want is not None and want.resolve() != PACKAGE_DIR:
        raise InputError(f"this job imported emorepro from {PACKAGE_DIR}, but the workflow is the one in "
                         f"{want.parent.parent}: it would run (and record) another clone's code. Source that "
                         f"clone's scripts/env.sh (it puts src/ first on PYTHONPATH) and run again")


def current_rule(step: str) -> str:
    """The Snakemake rule running this step (``step`` itself when it runs outside Snakemake)."""
    job = _snakemake_job()
    return str(getattr(job, "rule", None) or step)


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
    """The sidecar content.  ``rule`` is the step's name; the record's ``rule`` is the Snakemake rule that
    actually ran it when there is one (``step`` keeps the step's name)."""
    record = {
        "format": FORMAT,
        "rule": current_rule(rule),
        "step": rule,
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
    complete, so call this last.  Refuses to record a workflow job run with another clone's code.
    """
    check_code_origin()
    path = sidecar_path(target)
    record = build_record(**kwargs)
    # Recorded paths are relative to the working directory: say where it is, relative to the sidecar.
    record["base"] = os.path.relpath(os.getcwd(), os.path.abspath(path.parent))
    write_json(path, record)
    return path


# --------------------------------------------------------------------------- resolving recorded paths


def _legacy_base(side: Path, rec: Mapping[str, Any]) -> Path:
    """The working directory of a sidecar written before ``base`` was recorded: where its outputs lie."""
    d = side.parent.absolute()
    for o in rec.get("outputs", []):
        p = Path(o["path"])
        if p.is_absolute() or ".." in p.parts:
            continue
        parts = p.parent.parts
        if not parts:
            return d
        if d.parts[-len(parts):] == parts:
            return Path(*d.parts[:-len(parts)])
    return Path.cwd()


def resolver(side: str | os.PathLike, rec: Mapping[str, Any]):
    """A function mapping a path recorded in ``rec`` (the record of sidecar ``side``) to an absolute path."""
    side = Path(side)
    base = (side.parent.absolute() / rec["base"]) if rec.get("base") is not None else _legacy_base(side, rec)

    def resolve(p: str) -> str:
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))

    return resolve


def read_sidecar(side: str | os.PathLike) -> dict:
    """A sidecar's record; an unreadable or non-JSON one is an :class:`InputError` naming it."""
    try:
        rec = read_json(side)
    except (OSError, ValueError) as e:
        raise InputError(f"{side}: unreadable provenance sidecar ({e})") from None
    if not isinstance(rec, dict) or "outputs" not in rec:
        raise InputError(f"{side}: not a provenance sidecar (no outputs)")
    return rec


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


# --------------------------------------------------------------------------- checks before use


def sidecar_for(path: str | os.PathLike) -> Path | None:
    """The sidecar that records ``path``: its own ``.prov.json``, or its run directory's."""
    own = sidecar_path(path)
    if own.exists():
        return own
    run = Path(path).parent / RUN_SIDECAR  # a file produced inside a training run directory
    return run if run.exists() else None


_RECOVERY = "restore it, or delete it (and its sidecar) so that the workflow re-creates it"


def check_against_sidecar(path: str | os.PathLike) -> dict:
    """Refuse an input whose bytes differ from what its provenance sidecar recorded; return that record.

    Every step calls this on each input before using it, so an edited intermediate (a manifest, a
    fold file, predictions) never flows into a result with a fresh sidecar of its own.
    """
    side = sidecar_for(path)
    if side is None:
        raise InputError(f"{path}: no provenance sidecar {sidecar_path(path).name}; cannot vouch for it "
                         f"(every input of a step must have been written by the step that records it)")
    rec = read_sidecar(side)
    res = resolver(side, rec)
    for o in rec.get("outputs", []):
        if _same(res(o["path"]), path):
            if not os.path.exists(path):
                raise InputError(f"{path}: missing (recorded by {side}); {_RECOVERY}")
            actual = sha256_file(path)
            if actual != o["sha256"]:
                raise InputError(f"{path}: sha256 {actual[:12]}… does not match its sidecar {side} "
                                 f"({o['sha256'][:12]}…): the file was modified after it was produced; "
                                 f"{_RECOVERY}")
            return rec
    raise InputError(f"{side}: does not list {path} among its outputs")


def repair_command(cache_dir: str | os.PathLike) -> str:
    return f"emorepro features repair {cache_dir}"


def check_feature_cache(manifest_json: str | os.PathLike) -> None:
    """A feature cache is intact: its ``manifest.json`` matches its sidecar, and every shard and the index
    match the hashes recorded for them.  A damaged or missing shard is an error naming it and the command
    that re-extracts only the damaged shards."""
    rec = check_against_sidecar(manifest_json)
    side = sidecar_for(manifest_json)
    res = resolver(side, rec)
    listed = {os.path.realpath(res(o["path"])): o["sha256"] for o in rec.get("outputs", [])}
    cache_dir = Path(manifest_json).parent
    man = read_json(manifest_json)
    files = [(cache_dir / sh["file"], sh["sha256"]) for sh in man.get("shards", [])]
    if man.get("index_sha256"):
        files.append((cache_dir / "index.csv", man["index_sha256"]))
    fix = f"re-extract it with: {repair_command(cache_dir)}"
    for f, sha in files:
        want = listed.get(os.path.realpath(f), sha)   # sidecars from before shards were listed: the manifest's hash
        if not f.is_file():
            raise InputError(f"{f}: feature-cache file is missing (recorded in {side}); {fix}")
        if sha256_file(f) != want:
            raise InputError(f"{f}: feature-cache file is damaged (sha256 differs from {side}); {fix}")


# --------------------------------------------------------------------------- auditing

def find_sidecars(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    return sorted([*root.rglob(f"*{SIDECAR_SUFFIX}"), *root.rglob(RUN_SIDECAR)])


def check_sidecar(side: str | os.PathLike) -> list[str]:
    """Problems of one sidecar: outputs (and existing inputs) whose bytes changed, or files gone.

    Recorded paths are resolved against the sidecar's ``base``, so the result does not depend on
    the directory ``emorepro verify`` runs from."""
    side = Path(side)
    try:
        rec = read_sidecar(side)
    except InputError as e:
        return [str(e)]
    res = resolver(side, rec)
    problems = []
    hint = ""
    if rec.get("step", rec.get("rule")) == "extract_features" and rec.get("outputs"):
        hint = f"; re-extract the damaged shards with: {repair_command(Path(res(rec['outputs'][0]['path'])).parent)}"
    for o in rec.get("outputs", []):
        p = res(o["path"])
        if not os.path.exists(p):
            problems.append(f"{side}: output {o['path']} is missing{hint}")
        elif sha256_file(p) != o["sha256"]:
            problems.append(f"{side}: output {o['path']} was modified after it was produced (sha256 differs){hint}")
    for role, entries in rec.get("inputs", {}).items():
        for e in entries:
            p = res(e["path"])
            if not os.path.exists(p):
                problems.append(f"{side}: input {e['path']} ({role}) is missing")
            elif sha256_file(p) != e["sha256"]:
                problems.append(f"{side}: input {e['path']} ({role}) changed since this artefact was made")
    return problems


def verify_tree(root: str | os.PathLike) -> tuple[int, list[str]]:
    """Check every sidecar under ``root``; return (number checked, problems)."""
    sides = find_sidecars(root)
    problems: list[str] = []
    for s in sides:
        problems += check_sidecar(s)
    return len(sides), problems


def _status(path: str, sha: str) -> str:
    if not os.path.exists(path):
        return "MISSING"
    return "ok" if sha256_file(path) == sha else "MISMATCH"


def trace_cell(table_tex: str | os.PathLike, row: str, col: str, *, max_raw: int | None = None) -> tuple[list[str], bool]:
    """Walk from one table cell down to the raw corpus files; re-verify every hash on the way.

    Every file a step recorded is re-hashed (a feature cache's shards too), whatever the
    working directory.  Returns the printed lines and whether every link verified.
    """
    lines: list[str] = []
    ok = True
    table_side = sidecar_path(table_tex)
    if not table_side.exists():
        return [f"{table_tex}: no provenance sidecar ({table_side.name})"], False
    try:
        rec = read_sidecar(table_side)
    except InputError as e:
        return [str(e)], False
    res = resolver(table_side, rec)
    key = f"{row} | {col}"
    if key not in rec.get("cells", {}):
        rows = sorted({k.split(" | ")[0] for k in rec.get("cells", {})})
        cols = sorted({k.split(" | ")[1] for k in rec.get("cells", {})}, key=str)
        return [f"{table_tex}: no cell row={row!r} col={col!r}; rows: {rows}; columns: {cols}"], False
    cell = rec["cells"][key]
    for o in rec["outputs"]:
        st = _status(res(o["path"]), o["sha256"])
        ok &= st == "ok"
        lines.append(f"table   {o['path']}  [{st}]")
    lines.append(f"cell    {row} / {col} = {cell['value_mean']}"
                 + (f" ± {cell['value_std']}" if cell.get("value_std") is not None else "")
                 + f"  ({rec.get('aggregation_rule', cell['aggregation'])})")
    seen: set[str] = set()
    for run in cell["runs"]:
        lines.append(f"  run   fold {run['fold']} seed {run['seed']}: {cell['metric']} x {cell['scale']} = {run['value']}")
        ok &= _walk(res(run["metrics"]), run["metrics"], lines, "    ", seen, max_raw)
    lines.append("VERIFIED: every link matches its recorded sha256" if ok else "BROKEN: see MISMATCH/MISSING above")
    return lines, ok


def _walk(path: str, shown_as: str, lines: list[str], indent: str, seen: set[str], max_raw: int | None) -> bool:
    """Print ``path``'s own record and recurse into the inputs that have sidecars.

    ``path`` is absolute (resolved); ``shown_as`` is how the record that led here spells it."""
    side = sidecar_for(path)
    if side is None:
        lines.append(f"{indent}{shown_as}: no sidecar (raw input)")
        return os.path.exists(path)
    try:
        rec = read_sidecar(side)
    except InputError as e:
        lines.append(f"{indent}{shown_as}: {e}  [BROKEN]")
        return False
    res = resolver(side, rec)
    ok = True
    out = next((o for o in rec["outputs"] if _same(res(o["path"]), path)), None)
    st = _status(path, out["sha256"]) if out else "NOT LISTED"
    ok &= st == "ok"
    seed = f" seed={rec['seed']}" if rec.get("seed") is not None else ""
    code = rec.get("code", {})
    lines.append(f"{indent}{rec['rule']:<16} {shown_as}  [{st}]{seed}  code {str(code.get('commit'))[:10]}"
                 f"{'+dirty' if code.get('dirty') else ''}  ({side.name})")
    if str(side) in seen:
        lines.append(f"{indent}  (inputs listed above)")
        return ok
    seen.add(str(side))
    others = [o for o in rec["outputs"] if o is not out]
    if others:   # the step's other outputs (a feature cache's shards and index): re-hashed too
        bad = [o["path"] for o in others if _status(res(o["path"]), o["sha256"]) != "ok"]
        ok &= not bad
        lines.append(f"{indent}  outputs: {len(others)} more file(s) of this step, "
                     + (f"{len(bad)} NOT matching: {bad[:3]}" if bad else "all verified ok"))
    if rec["rule"] == "train":
        p = rec["params"]
        lines.append(f"{indent}  config: model={p.get('model')} fold={p.get('fold')} train={p.get('train')}")
    for role, entries in rec.get("inputs", {}).items():
        shown = entries if (max_raw is None or role != "raw") else entries[:max_raw]
        for e in shown:
            p = res(e["path"])
            st = _status(p, e["sha256"])
            ok &= st == "ok"
            if sidecar_for(p) is not None:
                lines.append(f"{indent}  <- {role}: [{st}]")
                ok &= _walk(p, e["path"], lines, indent + "     ", seen, max_raw)
            else:
                lines.append(f"{indent}  <- {role}: {e['path']}  sha256 {e['sha256'][:16]}  [{st}]")
        if len(shown) < len(entries):
            bad = [e for e in entries[len(shown):] if _status(res(e["path"]), e["sha256"]) != "ok"]
            ok &= not bad
            lines.append(f"{indent}  <- {role}: ... {len(entries) - len(shown)} more files, "
                         + (f"{len(bad)} NOT matching: {[b['path'] for b in bad[:3]]}" if bad else "all verified ok"))
    return ok
