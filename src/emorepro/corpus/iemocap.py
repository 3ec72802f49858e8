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

Checks beyond the layout: text files are decoded strictly (``encoding``, UTF-8 by default; a
byte that does not decode is an error naming the file and line, never silently replaced), a
segment must start before it ends, and every wav must hold the audio its header declares and
last as long as its segment (within :data:`SEGMENT_TOLERANCE`).  Ratings outside the 1-5 scale
follow the policy of :func:`normalise_ratings` (kept as annotated, clipped in the ``*_norm``
columns, counted in the log and the ingest sidecar).  Sessions missing from ``Session1..5``
are a warning in the log and the sidecar (``expected_counts`` makes any count an error).
"""
from __future__ import annotations

import io
import logging
import os
import re
import struct
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
#: a wav may differ from its segment's length by this much (seconds, fraction of the segment) before it is an
#: error: generous, because the header check of :func:`wav_info` already catches a cut-off data chunk.
SEGMENT_TOLERANCE = (0.5, 0.10)
#: the rating scale of IEMOCAP's valence / activation / dominance (and of the manifest's raw columns)
VAD_SCALE = (1.0, 5.0)
IEMOCAP_SESSIONS = (1, 2, 3, 4, 5)


def read_text_lines(path: Path, encoding: str = "utf-8") -> list[tuple[int, str]]:
    """(line number, line without its newline) of a text file, decoded strictly.

    A byte sequence that is not valid ``encoding`` is an error naming the file and line: replacing
    it silently would change transcripts (and labels) without a trace.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{lineno}: bytes {data[e.start:e.end + 3]!r} are not valid {encoding} "
                         f"(config: corpora.<name>.encoding names the corpus's text encoding)") from None
    except LookupError:
        raise InputError(f"config: corpora.<name>.encoding: unknown encoding {encoding!r}") from None
    text = text.removeprefix("\ufeff")   # a byte-order mark (spreadsheet exports) is not content
    return [(i, line.rstrip("\n")) for i, line in enumerate(io.StringIO(text, newline=None), 1)]


def check_segment(start: float, end: float, where: str) -> None:
    if not end > start:
        raise InputError(f"{where}: segment ends before it starts ({start} - {end})")


def check_duration(wav: Path, duration: float, start: float, end: float, where: str) -> None:
    """The wav lasts as long as its segment (within :data:`SEGMENT_TOLERANCE`)."""
    seg = end - start
    tol = SEGMENT_TOLERANCE[0] + SEGMENT_TOLERANCE[1] * seg
    if abs(duration - seg) > tol:
        raise InputError(f"{where}: {wav} lasts {duration:.3f} s but its segment [{start} - {end}] is {seg:.3f} s "
                         f"(tolerance {tol:.2f} s): a truncated or wrong wav")


def normalise_ratings(df, where) -> dict:
    """Add ``valence_norm`` / ``arousal_norm`` / ``dominance_norm`` (1-5 -> [0, 1], as Ispas et al. rescale).

    Policy for a rating outside the 1-5 scale (real releases have a few): the raw column keeps the
    value as annotated; its ``*_norm`` is clipped to [0, 1] (the nearest point of the scale), so a recipe
    that trains on the ratings (Ispas et al.'s CCC task) gets a valid target instead of stopping the run.
    How many, and which utterances, is logged and returned for the ingest sidecar.  Missing ratings
    (a CSV corpus without them) stay missing (NaN).
    """
    import numpy as np

    lo, hi = VAD_SCALE
    flagged: dict[str, list[str]] = {}
    for k in ("valence", "arousal", "dominance"):
        v = df[k].astype(float)
        out = v.notna() & ((v < lo) | (v > hi))
        if out.any():
            flagged[k] = sorted(df.loc[out, "utt_id"].astype(str))
        df[f"{k}_norm"] = (np.clip(v, lo, hi) - lo) / (hi - lo)
    utts = sorted({u for us in flagged.values() for u in us})
    if utts:
        log.warning("%s: %d utterance(s) have a rating outside %g-%g (%s); kept as annotated, clipped to the scale in "
                    "the *_norm columns: %s", where, len(utts), lo, hi,
                    ", ".join(f"{k}: {len(u)}" for k, u in flagged.items()), utts[:10])
    return {"policy": f"outside {lo:g}-{hi:g}: raw value kept, *_norm clipped to [0, 1]", "n_utterances": len(utts),
            "by_rating": {k: len(u) for k, u in flagged.items()}, "utt_ids": utts[:100]}


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


def parse_emo_evaluation(path: Path, encoding: str = "utf-8") -> list[dict]:
    """Summary lines of one ``EmoEvaluation/<dialog>.txt`` with their evaluator counts."""
    rows: list[dict] = []
    for lineno, line in read_text_lines(path, encoding):
        if line.startswith("["):
            m = _SUMMARY.match(line)
            if not m:
                raise InputError(f"{path}:{lineno}: malformed summary line {line!r} "
                                 "(expected '[start - end]<TAB>utt_id<TAB>label<TAB>[V, A, D]')")
            check_segment(float(m["start"]), float(m["end"]), f"{path}:{lineno}")
            rows.append({"utt_id": m["utt"], "label_raw": m["label"], "start": float(m["start"]),
                         "end": float(m["end"]), "valence": float(m["v"]), "arousal": float(m["a"]),
                         "dominance": float(m["d"]), "n_ratings": 0, "_where": f"{path}:{lineno}"})
        elif re.match(r"^C-\S+:", line):
            if not rows:
                raise InputError(f"{path}:{lineno}: evaluator line before any summary line")
            rows[-1]["n_ratings"] += 1
    return rows


def parse_transcriptions(path: Path, encoding: str = "utf-8") -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for lineno, line in read_text_lines(path, encoding):
        if not line.strip():
            continue
        m = _TRANSCRIPT.match(line)
        if m:
            out[m["utt"]] = m["text"].strip()
        elif _UTT_ID.match(line.split(" ", 1)[0]):
            raise InputError(f"{path}:{lineno}: malformed transcript line {line!r} "
                             "(expected 'utt_id [start-end]: text')")
    return out


def _riff_data_shortfall(path: Path) -> tuple[int, int] | None:
    """(declared, present) bytes of a RIFF/WAVE file's ``data`` chunk when the file holds fewer than its header
    declares, else None.  Written here because libsndfile silently reports the frames that are present, so a
    wav cut off after an intact header reads as a shorter, valid file."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, n = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    present = size - pos - 8
                    return (n, present) if n != 0xFFFFFFFF and present < n else None
                pos += 8 + n + (n & 1)
    except OSError:
        return None
    return None


def wav_info(path: Path, expected_sr: int) -> tuple[float, int]:
    import soundfile as sf

    if not path.exists():
        raise InputError(f"{path}: missing wav")
    short = _riff_data_shortfall(path)
    if short is not None:
        raise InputError(f"{path}: truncated wav: its header declares {short[0]} bytes of audio, the file holds "
                         f"{short[1]}")
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
                   expected_counts: Mapping | None = None, encoding: str = "utf-8"):
    """Parse an IEMOCAP release into a manifest DataFrame (one row per utterance).

    Parameters
    ----------
    root : the ``IEMOCAP_full_release`` directory (holding ``Session1`` .. ``Session5``).
    policy : label map and dropped labels from config.
    sample_rate : every wav must have this rate.
    encoding : text encoding of the EmoEvaluation and transcription files (decoded strictly).
    expected_counts : optional breakdowns of the *kept* (mapped) utterances to check, e.g.
        ``{"total": 5531, "label": {...}, "session": {...}, "gender": {...}, "speaker": {...},
        "mode": {...}, "all_utterances": 10039}``.  A mismatch raises with every differing cell.

    Returns
    -------
    pandas.DataFrame with :data:`MANIFEST_COLUMNS`, sorted by utterance id.  ``df.attrs["ingest_notes"]``
    holds what the ingest sidecar reports: missing sessions and ratings outside the scale.

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
    notes: dict = {}
    found = sorted(int(p.name[len("Session"):]) for p in sessions)
    missing = [k for k in IEMOCAP_SESSIONS if k not in found]
    if missing:
        notes["missing_sessions"] = missing
        log.warning("%s: no Session%s (found sessions %s); their utterances are absent from the manifest "
                    "(set expected_counts to make this an error)", root, "/".join(map(str, missing)), found)
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
            transcripts = parse_transcriptions(sdir / "dialog" / "transcriptions" / f"{dialog}.txt", encoding)
            for r in parse_emo_evaluation(emo, encoding):
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
                check_duration(wav, duration, r["start"], r["end"], where)
                text = transcripts.get(utt, "")
                if not text:
                    log.warning("%s: empty or missing transcript for %s (kept)", where, utt)
                label = policy.apply(r["label_raw"], where)
                rows.append({**r, **meta, "wav": os.fspath(wav), "duration": round(duration, 6),
                             "sample_rate": sr, "label": label, "transcript": text})
    if not rows:
        raise InputError(f"{root}: wrong layout: no utterances found under Session*/dialog/EmoEvaluation/")
    df = pd.DataFrame(rows)
    notes["ratings_outside_scale"] = normalise_ratings(df, root)
    df = df[MANIFEST_COLUMNS].sort_values("utt_id", kind="stable").reset_index(drop=True)
    if expected_counts:
        check_counts(df, expected_counts, root)
    df.attrs["ingest_notes"] = notes
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
