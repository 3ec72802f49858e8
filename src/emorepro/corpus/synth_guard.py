"""Where a corpus generator may write: an absent or empty folder, or a corpus it generated itself.

A generator builds its corpus in a temporary folder next to the target and swaps it in at the
end (:func:`swap_in`), so a failure leaves no partial corpus.  Before it starts it calls
:func:`check_target`: a non-empty target is replaced only when its marker file (:data:`MARKER`,
written by :func:`mark`) names the same generator, so a mistyped path can never delete a real
corpus or anything else the user keeps there (house rule: never delete what you did not create).

The marker is a file of its own, not the corpus's ``synth_summary.json``: that summary is the
Snakemake rule's declared output, which Snakemake deletes before it re-runs the job, and the
re-run must still recognise the tree as its own.
"""
from __future__ import annotations

import json
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


def mark(stage: str | Path, generator: str) -> None:
    """Write the marker that lets ``generator`` replace this tree later (and nothing else)."""
    write_json(Path(stage) / MARKER, {"generator": generator})


def swap_in(stage: Path, out_dir: Path, trash: Path) -> None:
    """Move the finished ``stage`` tree to ``out_dir``; an earlier tree there goes to ``trash`` first.

    ``trash`` lies in the caller's temporary folder, which deletes it.  Call :func:`check_target` first.
    """
    if out_dir.exists():
        out_dir.rename(trash)
    stage.rename(out_dir)
