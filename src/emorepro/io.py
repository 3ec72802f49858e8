"""Small I/O helpers shared by every stage: atomic writes and content hashes.

Every output of the pipeline is written through :func:`atomic_path` so that a killed job
never leaves a half-written file that Snakemake (or a reader) could mistake for a result.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20


class InputError(ValueError):
    """Bad user input: the message names the file and line, or the config key."""


# path -> ((inode, size, mtime_ns, ctime_ns), sha256): a file is hashed once per process while it is
# unchanged (a step checks a feature-cache shard against its sidecar, then the cache reader checks it again).
_SHA_MEMO: dict[str, tuple[tuple[int, int, int, int], str]] = {}


def sha256_file(path: str | os.PathLike) -> str:
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _SHA_MEMO.get(real)
    if hit is not None and hit[0] == key:
        return hit[1]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    _SHA_MEMO[real] = (key, h.hexdigest())
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    failed step leaves no partial output.  ``os.replace`` is atomic on POSIX when source
    and target are on the same file system, which holds because the temp file is a sibling.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; an output gets the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """The directory twin of :func:`atomic_path`: yield a temporary sibling directory to fill; on success it
    gets the mode a plain ``mkdir`` gives and replaces ``path`` (an earlier ``path`` is moved aside first and
    deleted after the swap); on any exception it is removed and ``path`` is left untouched.  The caller
    decides whether an existing ``path`` may be replaced at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        make_readable(tmp)   # mkdtemp made it 0700
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it back is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: str | os.PathLike) -> None:
    """Give a directory made by ``tempfile.mkdtemp`` (0700) the mode a plain ``mkdir`` would."""
    os.chmod(path, 0o777 & ~current_umask())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def write_csv(path: str | os.PathLike, df, **kwargs) -> None:
    """Write a pandas DataFrame atomically (``index=False`` unless told otherwise)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def _json_default(o: Any) -> Any:
    # numpy scalars/arrays and paths show up in results; make them JSON without a numpy import here.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
