"""Where a corpus generator may write: an absent or empty folder, or a corpus it generated itself.

The one guard of every generator (synthetic IEMOCAP, SPON and JTES; house rule: never delete what
you did not create).  A generator writes its corpus inside :func:`staged_tree`: a temporary folder
next to the target that is swapped in only when the generator finishes, so a failure leaves no
partial corpus.  Before it starts, :func:`check_target` allows a non-empty target only when

* its marker file (:data:`MARKER`) names the *same* generator (a JTES run never replaces a
  synthetic IEMOCAP, let alone a real one), and
* it holds nothing but the generator's own top-level entries (its ``layout``), the marker and
  provenance sidecars: a file a user added to the folder is never deleted with it.

The marker is a file of its own, not the corpus's ``synth_summary.json``: that summary is the
Snakemake rule's declared output, which Snakemake deletes before it re-runs the job, and the
re-run must still recognise the tree as its own.  Trees written before the marker existed are
recognised by a ``synth_summary.json`` with the generators' keys, or by the JTES generator's first
marker name (:data:`LEGACY_MARKERS`).
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from ..io import InputError, write_json

MARKER = ".emorepro-synth.json"
#: marker names of earlier versions (the JTES generator's first one), still recognised
LEGACY_MARKERS = (".emorepro_synth.json",)
_LEGACY_SUMMARY_KEYS = {"seed", "n_utterances", "label_counts"}


def _owner(out: Path) -> str | None:
    """The generator named by the tree's marker (or a legacy sign of one of ours), else None."""
    for name in (MARKER, *LEGACY_MARKERS):
        if (out / name).is_file():
            try:
                owner = json.loads((out / name).read_text()).get("generator")
            except (OSError, ValueError, AttributeError):
                return None
            return owner if isinstance(owner, str) else None
    summary = out / "synth_summary.json"
    if summary.is_file():   # generated before the marker existed: the summary's keys say it was us
        try:
            keys = set(json.loads(summary.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return "emorepro (legacy)" if _LEGACY_SUMMARY_KEYS <= keys else None
    return None


def check_target(out_dir: str | Path, generator: str, layout: Sequence[str]) -> bool:
    """Raise unless ``out_dir`` is absent, empty, or a corpus written by ``generator`` and nothing else.

    ``layout``: the generator's top-level entries (glob patterns).  Returns whether ``out_dir`` holds an
    earlier corpus of ``generator`` (that will be replaced).  Every refusal is an :class:`InputError`
    naming the directory and what it holds.
    """
    out = Path(out_dir)
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory; refusing to write a corpus there")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    owner = _owner(out)
    if owner is None:
        raise InputError(f"{out}: exists, is not empty and holds no generated corpus (no {MARKER} of emorepro's "
                         f"generators); refusing to replace it. Holds: {entries[:8]}"
                         + (" ..." if len(entries) > 8 else "") + "; choose a new or empty directory")
    if owner not in (generator, "emorepro (legacy)"):
        raise InputError(f"{out / MARKER}: the directory holds a corpus of {owner!r}, not of {generator!r}; "
                         "refusing to replace it")
    allowed = (*layout, MARKER, *LEGACY_MARKERS, "*.prov.json")
    foreign = [e for e in entries if not any(fnmatch.fnmatchcase(e, pat) for pat in allowed)]
    if foreign:
        raise InputError(f"{out}: holds an earlier synthetic corpus but also {foreign[:8]}, which the generator did "
                         "not write; refusing to replace it (move them away, or choose another directory)")
    return True


@contextlib.contextmanager
def staged_tree(out_dir: str | Path, generator: str, layout: Sequence[str],
                cfg: Any = None) -> Iterator[tuple[Path, Path]]:
    """Yield ``(stage, scratch)``: write the corpus into ``stage``; ``scratch`` is for temporary files.

    On entry the target is checked (:func:`check_target`); on a clean exit the stage gets the
    generator's marker (with ``cfg``, a dataclass, when given) and replaces ``out_dir`` (an earlier
    tree of the same generator is moved aside, then deleted with the temporary folder); on an error
    nothing at ``out_dir`` changes.
    """
    out_dir = Path(out_dir)
    check_target(out_dir, generator, layout)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp = Path(tmp)
        stage, scratch = tmp / "tree", tmp / "scratch"
        stage.mkdir()
        scratch.mkdir()
        yield stage, scratch
        marker: dict[str, Any] = {"generator": generator}
        if cfg is not None:
            marker["config"] = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
        marker["note"] = "written by emorepro; the directory may be replaced by a re-generation"
        write_json(stage / MARKER, marker)
        if out_dir.exists():
            out_dir.rename(tmp / "previous")
        stage.rename(out_dir)
