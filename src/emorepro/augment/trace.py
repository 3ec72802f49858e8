"""``emorepro trace-utt``: from one manifest row to its wav, and from an augmented copy to its source.

``emorepro trace`` walks a table cell down through the files' provenance records; an augmented
corpus shows there as ``ingest <- synthesize <- back_translate <- the source manifest``.  This
walks one *utterance*: its manifest row and wav (hash checked against the ingest record), and,
for a copy (``<source>__aug<j>``), the copies sidecar row (target speaker, texts, backends) and
the source utterance's row and wav in the source corpus, each hash re-checked.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..io import InputError, read_json, sha256_file
from ..provenance import sidecar_path


def _status(path: str, recorded: str | None) -> str:
    if recorded is None:
        return "NOT LISTED"
    if not os.path.exists(path):
        return "MISSING"
    return "ok" if sha256_file(path) == recorded else "MISMATCH"


def _recorded(rec: dict, path: str, *, outputs: bool) -> str | None:
    entries = rec.get("outputs", []) if outputs else [e for es in rec.get("inputs", {}).values() for e in es]
    ap = os.path.abspath(path)
    return next((e["sha256"] for e in entries if os.path.abspath(e["path"]) == ap), None)


def _row(manifest_csv: str, utt_id: str) -> dict:
    import pandas as pd

    df = pd.read_csv(manifest_csv, keep_default_na=False, dtype=str)
    hit = df[df["utt_id"] == utt_id]
    if hit.empty:
        raise InputError(f"{manifest_csv}: no utterance {utt_id!r}")
    return hit.iloc[0].to_dict()


def _manifest(manifest_csv: str, utt_id: str, label: str, lines: list[str]) -> tuple[dict, dict, bool]:
    side = sidecar_path(manifest_csv)
    if not side.exists():
        raise InputError(f"{manifest_csv}: no provenance sidecar ({side.name}); not a pipeline manifest")
    rec = read_json(side)
    st = _status(manifest_csv, _recorded(rec, manifest_csv, outputs=True))
    ok = st == "ok"
    lines.append(f"{label:<9} {manifest_csv}  [{st}]  ({rec['rule']}, code {str(rec.get('code', {}).get('commit'))[:10]})")
    row = _row(manifest_csv, utt_id)
    lines.append(f"  row     {utt_id}: speaker {row.get('speaker')}, session {row.get('session')}, "
                 f"label {row.get('label')} (raw {row.get('label_raw')}), {row.get('duration')} s")
    st = _status(row["wav"], _recorded(rec, row["wav"], outputs=False))
    ok &= st == "ok"
    lines.append(f"  wav     {row['wav']}  [{st}]")
    return rec, row, ok


def trace_utterance(manifest_csv: str | os.PathLike, utt_id: str) -> tuple[list[str], bool]:
    """Lines describing ``utt_id`` of ``manifest_csv`` (and its source, for an augmented copy); all hashes re-checked."""
    manifest_csv = os.fspath(manifest_csv)
    lines: list[str] = []
    rec, _, ok = _manifest(manifest_csv, utt_id, "manifest", lines)
    root = rec.get("params", {}).get("root")
    made = sidecar_path(root) if root else None
    synth = read_json(made) if made is not None and made.exists() else None
    if synth is None or synth.get("rule") != "synthesize":
        lines.append("  (not an augmented copy: the corpus was not made by rule synthesize)")
        lines.append("VERIFIED: every link matches its recorded sha256" if ok else "BROKEN: see MISMATCH/MISSING above")
        return lines, ok
    st = _status(root, _recorded(synth, root, outputs=True))
    ok &= st == "ok"
    copies = synth["copies"]
    cst = _status(copies, _recorded(synth, copies, outputs=True))
    ok &= cst == "ok"
    lines.append(f"corpus    {root}  [{st}]  (synthesize, seed={synth.get('seed')}, tts {synth['params']['tts']['backend']})")
    c = _row_copies(copies, utt_id)
    voice = f", voice {c['voice']}" if c.get("voice") else ""
    lines.append(f"copy of   {c['source_utt']}  (copies {copies} [{cst}]; target speaker {c['target_speaker']} of "
                 f"session {c['target_session']}{voice})")
    texts = synth["inputs"]["texts"][0]["path"]
    bt = read_json(sidecar_path(texts)) if sidecar_path(texts).exists() else {}
    tst = _status(texts, synth["inputs"]["texts"][0]["sha256"])
    ok &= tst == "ok"
    backend = bt.get("params", {}).get("back_translation", {}).get("backend", "?")
    lines.append(f"  text    {c['text_source']!r} -> {c['text']!r}  (back_translate {backend}, {texts} [{tst}])"
                 + (f"  note: {c['note']}" if c.get("note") else ""))
    src_manifest = synth["inputs"]["source_manifest"][0]
    sst = _status(src_manifest["path"], src_manifest["sha256"])
    ok &= sst == "ok"
    _, src_row, ok2 = _manifest(src_manifest["path"], c["source_utt"], "source", lines)
    ok &= ok2
    if src_row.get("speaker") != c["source_speaker"]:
        ok = False
        lines.append(f"  MISMATCH: copies.csv says source speaker {c['source_speaker']}")
    lines.append("VERIFIED: every link matches its recorded sha256" if ok else "BROKEN: see MISMATCH/MISSING above")
    return lines, ok


def _row_copies(copies_csv: str, utt_id: str) -> dict:
    if not Path(copies_csv).exists():
        raise InputError(f"{copies_csv}: the copies sidecar is missing")
    import pandas as pd

    df = pd.read_csv(copies_csv, keep_default_na=False, dtype=str)
    hit = df[df["aug_id"] == utt_id]
    if hit.empty:
        raise InputError(f"{copies_csv}: no copy {utt_id!r}")
    return hit.iloc[0].to_dict()
