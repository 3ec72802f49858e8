"""Where a corpus generator may write: an absent or empty folder, or a corpus it generated itself.

A generator writes its corpus inside :func:`staged_tree`: a temporary folder next to the target
that is swapped in only when the generator finishes, so a failure leaves no partial corpus.
Before it starts, :func:`check_target` allows a non-empty target only when its marker file
(:data:`MARKER`) names the same generator, so a mistyped path can never delete a real corpus or
anything else the user keeps there (house rule: never delete what you did not create).

The marker is a file of its own, not the corpus's ``synth_summary.json``: that summary is the
Snakemake rule's declared output, which Snakemake deletes before it re-runs the job, and the
re-run must still recognise the tree as its own.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..io import InputError, write_json

MARKER = ".emorepro_synth.json"


def check_target(out_dir: str | Path, generator: str) -> bool:
    """Raise unless ``out_dir`` is absent, empty, or a corpus written by ``generator``.

    Returns whether ``out_dir`` holds an earlier corpus of ``generator`` (that will be replaced).
    """
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory; refusing to write a corpus there")
    if not any(out_dir.iterdir()):
        return False
    marker = out_dir / MARKER
    if not marker.is_file():
        raise InputError(f"{out_dir}: exists, is not empty and holds no generated corpus (no {MARKER}); "
                         "refusing to replace it: choose an empty or new directory")
    try:
        owner = json.loads(marker.read_text()).get("generator")
    except (ValueError, AttributeError):
        owner = None
    if owner != generator:
        raise InputError(f"{marker}: the directory holds a corpus of {owner!r}, not of {generator!r}; "
                         "refusing to replace it")
    return True


@contextlib.contextmanager
def staged_tree(out_dir: str | Path, generator: str) -> Iterator[tuple[Path, Path]]:
    """Yield ``(stage, scratch)``: write the corpus into ``stage``; ``scratch`` is for temporary files.

    On entry the target is checked (:func:`check_target`); on a clean exit the stage gets the
    generator's marker and replaces ``out_dir`` (an earlier tree of the same generator is moved
    aside, then deleted with the temporary folder); on an error nothing at ``out_dir`` changes.
    """
    out_dir = Path(out_dir)
    check_target(out_dir, generator)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp = Path(tmp)
        stage, scratch = tmp / "tree", tmp / "scratch"
        stage.mkdir()
        scratch.mkdir()
        yield stage, scratch
        write_json(stage / MARKER, {"generator": generator})
        if out_dir.exists():
            out_dir.rename(tmp / "previous")
        stage.rename(out_dir)
