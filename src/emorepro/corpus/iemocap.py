"""Parse the IEMOCAP_full_release tree into one manifest row per utterance.

Layout read (``SessionN`` directly under the root):

* ``SessionN/dialog/EmoEvaluation/<dialog>.txt``: a summary line per utterance
  ``[start - end]<TAB>utt_id<TAB>label<TAB>[V, A, D]`` followed by evaluator lines
  (``C-E2:<TAB>Neutral;<TAB>()``, ``A-E3:<TAB>val 3; act 2; dom  2;<TAB>()``).  The
  ``Categorical/``, ``Attribute/`` and ``Self-evaluation/`` subfolders are skipped.
* ``SessionN/dialog/transcriptions/<dialog>.txt``: ``utt_id [006.2901-008.2357]: text``;
  some lines have no wav and no evaluation (they are ignored).
* ``SessionN/sentences/wav/<dialog>/<utt_id>.wav``.

Pitfalls handled on purpose: gender comes from the *last* field of the utterance id
(``Ses03M_impro05a_F012`` is a female speaker in a male-led dialog), and the dialog is
everything before that field, so suffixed dialogs (``impro05a/b``, ``script01_1b``) work.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..io import InputError

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "utt_id", "session", "dialog", "speaker", "gender", "mode", "wav", "start", "end", "duration",
    "sample_rate", "label_raw", "label", "valence", "arousal", "dominance", "valence_norm",
    "arousal_norm", "dominance_norm", "transcript", "n_ratings",
]

_SUMMARY = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]\s+(?P<utt>\S+)\s+(?P<label>\S+)\s+"
    r"\[\s*(?P<v>\d+(?:\.\d+)?)\s*,\s*(?P<a>\d+(?:\.\d+)?)\s*,\s*(?P<d>\d+(?:\.\d+)?)\s*\]\s*$")
_UTT_ID = re.compile(r"^Ses0(?P<session>[1-9])(?P<lead>[FM])_(?P<rest>.+)_(?P<gender>[FM])(?P<num>\d{3})$")
_TRANSCRIPT = re.compile(r"^(?P<utt>\S+)\s+\[(?P<start>[\d.]+)-(?P<end>[\d.]+)\]:\s?(?P<text>.*)$")
_SKIP_DIRS = {"Categorical", "Attribute", "Self-evaluation"}


@dataclass(frozen=True)
class LabelPolicy:
    """How raw labels become classes (``label_map`` from config ``corpora.<name>.label_map``).

    ``label_map`` maps each kept raw label to its class (``exc: hap`` *adds* excited to
    happy; ``hap: hap`` keeps happy); ``drop`` lists known labels that are left out of the
    class set.  A label in neither is an error, so a typo in config cannot silently drop data.
    """

    label_map: Mapping[str, str]
    drop: frozenset[str]

    def apply(self, raw: str, where: str) -> str:
        if raw in self.label_map:
            return self.label_map[raw]
        if raw in self.drop:
            return ""
        raise InputError(f"{where}: unknown label {raw!r}; known: "
                         f"{sorted(set(self.label_map) | self.drop)} (config: label_map / drop_labels)")


def parse_utt_id(utt_id: str, where: str) -> dict:
    m = _UTT_ID.match(utt_id)
    if not m:
        raise InputError(f"{where}: malformed utterance id {utt_id!r} (expected e.g. Ses01F_impro01_F000)")
    session = int(m["session"])
    gender = m["gender"]  # the speaker's own gender: last field, not the dialog prefix
    dialog = utt_id.rsplit("_", 1)[0]
    mode = "improvised" if m["rest"].startswith("impro") else "scripted"
    return {"session": session, "dialog": dialog, "speaker": f"Ses0{session}_{gender}", "gender": gender,
            "mode": mode}


def parse_emo_evaluation(path: Path) -> list[dict]:
    """Summary lines of one ``EmoEvaluation/<dialog>.txt`` with their evaluator counts."""
    rows: list[dict] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.startswith("["):
                m = _SUMMARY.match(line)
                if not m:
                    raise InputError(f"{path}:{lineno}: malformed summary line {line!r} "
                                     "(expected '[start - end]<TAB>utt_id<TAB>label<TAB>[V, A, D]')")
                rows.append({"utt_id": m["utt"], "label_raw": m["label"], "start": float(m["start"]),
                             "end": float(m["end"]), "valence": float(m["v"]), "arousal": float(m["a"]),
                             "dominance": float(m["d"]), "n_ratings": 0, "_where": f"{path}:{lineno}"})
            elif re.match(r"^C-\S+:", line):
                if not rows:
                    raise InputError(f"{path}:{lineno}: evaluator line before any summary line")
                rows[-1]["n_ratings"] += 1
    return rows


def parse_transcriptions(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            m = _TRANSCRIPT.match(line)
            if m:
                out[m["utt"]] = m["text"].strip()
            elif _UTT_ID.match(line.split(" ", 1)[0]):
                raise InputError(f"{path}:{lineno}: malformed transcript line {line!r} "
                                 "(expected 'utt_id [start-end]: text')")
    return out


def wav_info(path: Path, expected_sr: int) -> tuple[float, int]:
    import soundfile as sf

    if not path.exists():
        raise InputError(f"{path}: missing wav")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError for truncated or non-wav files
        raise InputError(f"{path}: unreadable or not a wav file ({e})") from None
    if info.format != "WAV" or info.frames <= 0:
        raise InputError(f"{path}: not a valid wav file (format {info.format}, {info.frames} frames)")
    if info.samplerate != expected_sr:
        raise InputError(f"{path}: sample rate {info.samplerate} Hz, expected {expected_sr} Hz")
    if info.channels != 1:
        raise InputError(f"{path}: {info.channels} channels, expected mono")
    return info.frames / info.samplerate, info.samplerate


def ingest_iemocap(root: str | os.PathLike, policy: LabelPolicy, *, sample_rate: int = 16_000,
                   expected_counts: Mapping | None = None):
    """Parse an IEMOCAP release into a manifest DataFrame (one row per utterance).

    Parameters
    ----------
    root : the ``IEMOCAP_full_release`` directory (holding ``Session1`` .. ``Session5``).
    policy : label map and dropped labels from config.
    sample_rate : every wav must have this rate.
    expected_counts : optional breakdowns of the *kept* (mapped) utterances to check, e.g.
        ``{"total": 5531, "label": {...}, "session": {...}, "gender": {...}, "speaker": {...},
        "mode": {...}, "all_utterances": 10039}``.  A mismatch raises with every differing cell.

    Returns
    -------
    pandas.DataFrame with :data:`MANIFEST_COLUMNS`, sorted by utterance id.

    Example
    -------
    >>> df = ingest_iemocap("IEMOCAP_full_release", LabelPolicy({"neu": "neu", "exc": "hap"}, frozenset()))  # doctest: +SKIP
    """
    import pandas as pd

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: corpus root does not exist (config: corpora.<name>.root)")
    sessions = sorted(p for p in root.glob("Session[1-9]") if p.is_dir())
    if not sessions:
        raise InputError(f"{root}: wrong layout: no Session1..Session5 directories "
                         "(expected the IEMOCAP_full_release folder)")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for sdir in sessions:
        emo_dir = sdir / "dialog" / "EmoEvaluation"
        if not emo_dir.is_dir():
            raise InputError(f"{sdir}: wrong layout: missing dialog/EmoEvaluation/")
        for emo in sorted(p for p in emo_dir.glob("*.txt") if p.is_file()):
            if emo.parent.name in _SKIP_DIRS or emo.name.startswith("."):
                continue
            dialog = emo.stem
            transcripts = parse_transcriptions(sdir / "dialog" / "transcriptions" / f"{dialog}.txt")
            for r in parse_emo_evaluation(emo):
                where = r.pop("_where")
                utt = r["utt_id"]
                if utt in seen:
                    raise InputError(f"{where}: duplicate utterance id {utt!r} (first seen at {seen[utt]})")
                seen[utt] = where
                meta = parse_utt_id(utt, where)
                if meta["dialog"] != dialog or f"Session{meta['session']}" != sdir.name:
                    raise InputError(f"{where}: utterance {utt!r} does not belong to {sdir.name}/{dialog}")
                wav = sdir / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.exists():
                    raise InputError(f"{where}: missing wav {wav}")
                duration, sr = wav_info(wav, sample_rate)
                text = transcripts.get(utt, "")
                if not text:
                    log.warning("%s: empty or missing transcript for %s (kept)", where, utt)
                label = policy.apply(r["label_raw"], where)
                rows.append({**r, **meta, "wav": os.fspath(wav), "duration": round(duration, 6),
                             "sample_rate": sr, "label": label, "transcript": text})
    if not rows:
        raise InputError(f"{root}: wrong layout: no utterances found under Session*/dialog/EmoEvaluation/")
    df = pd.DataFrame(rows)
    for k in ("valence", "arousal", "dominance"):
        df[f"{k}_norm"] = (df[k] - 1.0) / 4.0  # 1-5 -> [0, 1] as Ispas et al. rescale
    df = df[MANIFEST_COLUMNS].sort_values("utt_id", kind="stable").reset_index(drop=True)
    if expected_counts:
        check_counts(df, expected_counts, root)
    return df


def check_counts(df, expected: Mapping, where) -> None:
    """Compare the kept utterances' breakdowns with config; raise listing every difference."""
    kept = df[df["label"] != ""]
    actual = {
        "all_utterances": len(df), "total": len(kept),
        "label": Counter(kept["label"]), "session": Counter(kept["session"].astype(str)),
        "gender": Counter(kept["gender"]), "speaker": Counter(kept["speaker"]), "mode": Counter(kept["mode"]),
    }
    diffs = []
    for key, exp in expected.items():
        if exp is None:
            continue
        if key not in actual:
            raise InputError(f"config: expected_counts.{key}: unknown breakdown; use one of {sorted(actual)}")
        act = actual[key]
        if isinstance(exp, Mapping):
            for cell in sorted(set(map(str, exp)) | set(map(str, act))):
                e = exp.get(cell, exp.get(int(cell)) if cell.isdigit() else None)
                a = act.get(cell, 0)
                if e != a:
                    diffs.append(f"{key}[{cell}]: expected {e}, found {a}")
        elif exp != act:
            diffs.append(f"{key}: expected {exp}, found {act}")
    if diffs:
        raise InputError(f"{where}: utterance counts differ from config expected_counts:\n  " + "\n  ".join(diffs))
