"""Checks of a run's config against itself and the file system, run when the workflow is parsed.

The schema catches wrong types and unknown keys; what it cannot see is caught here, so a
mistake stops ``snakemake -n`` naming the key instead of building nothing, or building the
wrong thing, after hours on a cluster:

* ``papers`` naming no table or fusion (a typo would silently build nothing);
* a corpus with both ``root`` and ``synth`` (the root would be silently ignored), or a corpus in
  use whose ``root`` is still the shipped ``PLACEHOLDER/...`` (a corpus no enabled paper uses
  may keep it: a user with IEMOCAP but no JTES builds the IEMOCAP papers);
* ``classes`` with a duplicate (one output would silently never be predicted), a class that no
  corpus in use maps a label to (an output nothing trains), or a label a corpus maps outside
  ``classes``;
* a configured checkpoint directory that does not exist (a relative path is resolved against the
  working directory and is never looked up on a model hub).

Only what the enabled tables and fusion sets use is checked: a config may keep entries for
papers it does not build.  Imports nothing heavy.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .io import InputError


def _experiments(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(paper, variant) of every experiment an enabled table or fusion set uses."""
    papers = set(config.get("papers") or [])
    out: list[tuple[str, str]] = []
    names: list[str] = []
    for spec in (config.get("tables") or {}).values():
        if spec.get("paper") in papers:
            for row in spec.get("rows", []):
                x = row.get("experiment")
                names += [x] if isinstance(x, str) else list(x or [])
    for spec in (config.get("fusion") or {}).values():
        if spec.get("paper") in papers:
            names += list(spec.get("experiments") or [])
    for x in names:
        p, _, v = x.partition("/")
        if v in (config.get("experiments") or {}).get(p, {}) and (p, v) not in out:
            out.append((p, v))
    return out


def check_config(config: Mapping[str, Any], workdir: str | os.PathLike | None = None) -> list[str]:
    """Raise :class:`InputError` naming the config key of the first problem; return warnings (none yet)."""
    workdir = os.fspath(workdir or os.getcwd())
    corpora = config.get("corpora") or {}
    # papers: each must build something
    known = sorted({s.get("paper") for key in ("tables", "corpus_tables", "fusion", "figures")
                    for s in (config.get(key) or {}).values()} - {None})
    for p in config.get("papers") or []:
        if p not in known:
            raise InputError(f"config: papers: {p!r} is the paper of no table, corpus table or fusion set, so it would build "
                             f"nothing; known papers: {known}")
    # corpora: root and synth are exclusive
    for name, c in corpora.items():
        if c.get("format") != "union" and c.get("root") and c.get("synth"):
            raise InputError(f"config: corpora.{name}: both `root` ({c['root']}) and `synth` are set; the generated "
                             f"corpus would silently replace the root. Set root: null for a generated corpus, or "
                             f"synth: null to read {c['root']}")
    # classes against the label maps of the corpora in use
    classes = list(config.get("classes") or [])
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise InputError(f"config: classes: {dup} listed twice; each class is one output of every model")
    papers_enabled = set(config.get("papers") or [])
    used = _experiments(config)
    in_use: list[str] = []
    for p, v in used:
        c = config["experiments"][p][v].get("corpus")
        members = list((corpora.get(c) or {}).get("members") or {}) if (corpora.get(c) or {}).get("format") == "union" else [c]
        in_use += [m for m in members if m in corpora and m not in in_use]
    needed = list(in_use)
    for spec in (config.get("corpus_tables") or {}).values():
        if spec.get("paper") in papers_enabled:
            needed += [c.get("corpus") for c in spec.get("columns") or []]
    for name in list(needed):   # an augmented corpus is made from its source
        src = ((corpora.get(name) or {}).get("augment") or {}).get("source")
        if src:
            needed.append(src)
    for name in dict.fromkeys(needed):
        root = (corpora.get(name) or {}).get("root")
        if isinstance(root, str) and root.startswith("PLACEHOLDER"):
            raise InputError(f"config: corpora.{name}.root: still the placeholder {root!r}; point it at your copy of "
                             f"the corpus (config/config.yaml says what it expects), or remove the papers that use "
                             f"it from `papers`")
    targets: set[str] = set()
    for name in in_use:
        lm = corpora[name].get("label_map") or {}
        outside = sorted(set(lm.values()) - set(classes))
        if outside:
            raise InputError(f"config: corpora.{name}.label_map maps to {outside}, which are not in classes {classes}")
        targets |= set(lm.values())
    never = [c for c in classes if c not in targets]
    if in_use and never:
        raise InputError(f"config: classes: {never} is the target of no label_map of the corpora in use "
                         f"({in_use}): an output nothing would train")
    # checkpoints of the encoders (and fine-tuning checkpoints) the enabled experiments use
    encoders = config.get("encoders") or {}
    for p, v in used:
        e = config["experiments"][p][v]
        for enc in (e.get("inputs") or {}).values():
            spec = encoders.get(enc) or {}
            ck = spec.get("checkpoint")
            if ck and not spec.get("demo"):
                _require_checkpoint(ck, f"encoders.{enc}.checkpoint", workdir)
        for key, ck in ((e.get("train") or {}).get("data") or {}).items():
            if key.endswith("_checkpoint") and ck:
                _require_checkpoint(ck, f"experiments.{p}.{v}.train.data.{key}", workdir)
    return []


def _require_checkpoint(path: str, key: str, workdir: str) -> None:
    full = os.path.normpath(os.path.join(workdir, path))
    if not os.path.exists(full):
        raise InputError(f"config: {key}: checkpoint {full} does not exist. Checkpoints are local directories "
                         f"(relative paths are relative to the working directory and never looked up on a model "
                         f"hub); download the model there first")


def resolve_checkpoint(path: str | None, workdir: str | os.PathLike | None = None) -> str | None:
    """A configured checkpoint as an absolute local path (so no loader mistakes it for a Hub id)."""
    if not path:
        return path
    return os.path.normpath(os.path.join(os.fspath(workdir or os.getcwd()), path))
