"""Parse a JTES release (Japanese Twitter-based Emotional Speech) into manifest rows.

Layout read (the folder ``jtes_v1.1`` is the corpus root)::

    jtes_v1.1/wav/<spk>/<emo>/<spk>_<emo>_<NN>.wav

with ``spk`` in ``f01..f50, m01..m50``, ``emo`` in ``ang joy neu sad`` and ``NN`` = ``01..50``, the
index of the sentence within its emotion (Takeishi et al. 2016; the layout as in nkululeko's
``data/jtes`` recipe).  Every speaker reads the same 50 emotion-specific sentences per emotion
(Lee et al. call it the "sentence-closed condition"): 100 x 4 x 50 = 20,000 utterances.

What the manifest gets, with the IEMOCAP parser's columns (:data:`MANIFEST_COLUMNS`):

* ``gender`` from the first letter of the speaker id (``f`` -> ``F``, ``m`` -> ``M``); the speaker
  is the whole id (``f01`` and ``m01`` are different people: nkululeko's ``int(name[1:3])`` merges them);
* ``session`` from config (``corpora.<name>.sessions``): ``consecutive`` (the default; Lee et al.
  say only "100 speakers are equally divided into five sessions, with each session comprising ten
  female and ten male speakers") puts ids ``10k-9 .. 10k`` of each gender into session ``k``;
  a mapping ``{session: [speaker ids]}`` gives any other assignment;
* ``dialog`` = the sentence id ``<emo>_<NN>`` (the text read: the same for every speaker);
* ``mode`` = ``acted``; ``label_raw`` = the emotion directory; ``label`` through the label map
  (``joy`` -> ``hap``);
* ``transcript`` = the sentence's text from a sentence list, when config names one
  (``corpora.<name>.sentences``: a UTF-8 TSV ``<emo>_<NN><TAB>text`` per line, relative to the
  root or absolute); else empty.  We do not know the file format in which the release ships its
  sentences, so the parser reads only this two-column form (convert yours once); the synthetic
  corpus writes one (``sentences.tsv``).  The Lee recipe reads audio only;
* ``start``, ``end``, ``valence``/``arousal``/``dominance`` (+ ``_norm``) and ``n_ratings`` are
  empty: the release has one wav per utterance and categorical labels only.

Checks, each an :class:`~emorepro.io.InputError` naming the path (and line): unknown speaker
ids, unknown emotion directories, file names that disagree with their directories, speakers
missing sentences that others read (the corpus is sentence-closed), wavs that are empty,
truncated, not wav or at the wrong rate, a speaker in no session, a malformed sentence list,
and the configured ``expected_counts``.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

from ..io import InputError
from .iemocap import MANIFEST_COLUMNS, LabelPolicy, check_counts, wav_info

log = logging.getLogger(__name__)

SPEAKER = re.compile(r"^(?P<g>[fm])(?P<n>\d{2})$")
FILE = re.compile(r"^(?P<spk>[fm]\d{2})_(?P<emo>[a-z]+)_(?P<nn>\d{2})\.wav$")
SENTENCE_ID = re.compile(r"^[a-z]+_\d{2}$")
SPEAKERS_PER_GENDER = 50       # f01..f50, m01..m50 in the release
SESSION_BLOCK = 10             # consecutive: ids 10k-9 .. 10k of each gender form session k
# Breakdowns checked here; the others go to iemocap.check_counts (total, label, session, gender, speaker, ...).
_OWN_COUNTS = ("speakers", "speakers_per_session")


def session_of(speaker: str, sessions: str | Mapping | None, where: str) -> int:
    """The session of ``speaker`` under config ``sessions`` (``consecutive``/None, or {session: [ids]})."""
    if sessions in (None, "consecutive"):
        n = int(SPEAKER.match(speaker)["n"])
        return (n - 1) // SESSION_BLOCK + 1
    if isinstance(sessions, Mapping):
        for s, ids in sessions.items():
            if speaker in ids:
                return int(s)
        raise InputError(f"{where}: speaker {speaker!r} is in no session (config: corpora.<name>.sessions)")
    raise InputError(f"config: corpora.<name>.sessions: {sessions!r} is neither 'consecutive' nor a "
                     "mapping {session: [speaker ids]}")


def describe_sessions(sessions: str | Mapping | None, name: str = "JTES", key: str = "jtes") -> str:
    """One sentence for table notes: which speakers form each session (Lee et al. do not say)."""
    if sessions in (None, "consecutive"):
        return (f"{name} sessions: consecutive speaker ids, session k = f(10k-9..10k) + m(10k-9..10k), e.g. f01-f10 + "
                f"m01-m10 = session 1 (config corpora.{key}.sessions); the paper says only that each session has "
                "ten female and ten male speakers, not which.")
    listed = "; ".join(f"{s}: {', '.join(ids)}" for s, ids in sorted(sessions.items(), key=lambda kv: int(kv[0])))
    return (f"{name} sessions as configured (corpora.{key}.sessions): {listed}; the paper says only that each "
            "session has ten female and ten male speakers, not which.")


def check_sessions(sessions: str | Mapping | None) -> None:
    """An explicit assignment must name valid speaker ids, each in one session, sessions 1..9."""
    if not isinstance(sessions, Mapping):
        session_of("f01", sessions, "config")   # raises on anything but consecutive/None
        return
    owner: dict[str, str] = {}
    for s, ids in sessions.items():
        if not str(s).isdigit() or not 1 <= int(s) <= 9:
            raise InputError(f"config: corpora.<name>.sessions: session {s!r} is not a number 1..9")
        for spk in ids:
            if not SPEAKER.match(str(spk)):
                raise InputError(f"config: corpora.<name>.sessions.{s}: {spk!r} is not a speaker id (f01..f50, m01..m50)")
            if spk in owner:
                raise InputError(f"config: corpora.<name>.sessions: speaker {spk!r} is in sessions {owner[spk]} and {s}")
            owner[spk] = str(s)


def read_sentences(path: Path) -> dict[str, str]:
    """``<emo>_<NN><TAB>text`` per line (blank lines and ``#`` comments skipped) -> {id: text}."""
    if not path.is_file():
        raise InputError(f"{path}: sentence list does not exist (config: corpora.<name>.sentences)")
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            sid, tab, text = line.partition("\t")
            if not tab or not SENTENCE_ID.match(sid) or not text.strip():
                raise InputError(f"{path}:{lineno}: malformed sentence line {line!r} (expected '<emo>_<NN><TAB>text', "
                                 "e.g. 'ang_01\\t...')")
            if sid in out:
                raise InputError(f"{path}:{lineno}: duplicate sentence id {sid!r} (first at line {first[sid]})")
            out[sid], first[sid] = text.strip(), lineno
    return out


def _dirs(parent: Path) -> list[Path]:
    """Sub-directories in name order; stray files are logged and skipped (hidden ones silently)."""
    out = []
    for p in sorted(parent.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            out.append(p)
        else:
            log.warning("%s: not a directory, skipped", p)
    return out


def ingest_jtes(root: str | os.PathLike, policy: LabelPolicy, *, sample_rate: int = 16_000,
                sessions: str | Mapping | None = "consecutive", sentences: str | os.PathLike | None = None,
                expected_counts: Mapping | None = None):
    """Parse a JTES release into a manifest DataFrame (one row per wav).

    Parameters
    ----------
    root : the ``jtes_v1.1`` directory (holding ``wav/``).
    policy : label map (``{ang: ang, joy: hap, neu: neu, sad: sad}``) and dropped labels, from config.
    sample_rate : every wav must have this rate.
    sessions : ``consecutive`` (session k = ids 10k-9..10k of each gender) or ``{session: [ids]}``.
    sentences : optional sentence list (``<emo>_<NN><TAB>text``), relative to ``root`` or absolute;
        gives the ``transcript`` column and must cover every sentence read.
    expected_counts : breakdowns to check, as for IEMOCAP (``total``, ``label``, ``session``,
        ``gender``, ``speaker``), plus ``speakers`` (number of distinct speakers) and
        ``speakers_per_session`` (``{F: 10, M: 10}``: speakers of each gender in every session).

    Returns
    -------
    pandas.DataFrame with :data:`MANIFEST_COLUMNS`, sorted by utterance id.

    Example
    -------
    >>> df = ingest_jtes("jtes_v1.1", LabelPolicy({"ang": "ang", "joy": "hap", "neu": "neu", "sad": "sad"},
    ...                  frozenset()))  # doctest: +SKIP
    """
    import pandas as pd

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: corpus root does not exist (config: corpora.<name>.root)")
    wav_root = root / "wav"
    if not wav_root.is_dir():
        raise InputError(f"{root}: wrong layout: no wav/ directory (expected the jtes_v1.1 folder holding "
                         "wav/<spk>/<emo>/<spk>_<emo>_<NN>.wav)")
    check_sessions(sessions)
    texts = None
    if sentences:
        sp = Path(sentences)
        texts = read_sentences(sp if sp.is_absolute() else root / sp)
    rows: list[dict] = []
    read: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))  # emo -> speaker -> NN
    speakers = []
    for sdir in _dirs(wav_root):
        spk = sdir.name
        speakers.append(spk)
        m = SPEAKER.match(spk)
        if not m or not 1 <= int(m["n"]) <= SPEAKERS_PER_GENDER:
            raise InputError(f"{sdir}: unknown speaker id {spk!r} (expected f01..f50 or m01..m50)")
        session = session_of(spk, sessions, str(sdir))
        gender = m["g"].upper()
        for edir in _dirs(sdir):
            emo = edir.name
            label = policy.apply(emo, f"{edir}: emotion directory")
            for wav in sorted(edir.iterdir()):
                if wav.name.startswith("."):
                    continue
                if wav.suffix.lower() != ".wav" or not wav.is_file():
                    log.warning("%s: not a wav file, skipped", wav)
                    continue
                fm = FILE.match(wav.name)
                if not fm:
                    raise InputError(f"{wav}: file name does not match <spk>_<emo>_<NN>.wav")
                if fm["spk"] != spk or fm["emo"] != emo:
                    raise InputError(f"{wav}: file name says speaker {fm['spk']!r}, emotion {fm['emo']!r}, but it is "
                                     f"in {spk}/{emo}/")
                nn = fm["nn"]
                if nn == "00":
                    raise InputError(f"{wav}: sentence number 00 (sentences are numbered from 01)")
                sid = f"{emo}_{nn}"
                text = ""
                if texts is not None:
                    if sid not in texts:
                        raise InputError(f"{wav}: sentence {sid!r} is not in the sentence list "
                                         f"(config: corpora.<name>.sentences)")
                    text = texts[sid]
                duration, sr = wav_info(wav, sample_rate)
                read[emo][spk].add(nn)
                rows.append({"utt_id": wav.stem, "session": session, "dialog": sid, "speaker": spk, "gender": gender,
                             "mode": "acted", "wav": os.fspath(wav), "duration": round(duration, 6),
                             "sample_rate": sr, "label_raw": emo, "label": label, "transcript": text})
    if not rows:
        raise InputError(f"{wav_root}: wrong layout: no wav files under wav/<spk>/<emo>/")
    _check_sentence_closed(wav_root, speakers, read)
    df = pd.DataFrame(rows).reindex(columns=MANIFEST_COLUMNS)
    df = df.sort_values("utt_id", kind="stable").reset_index(drop=True)
    if expected_counts:
        expected = dict(expected_counts)
        own = _speaker_count_diffs(df, {k: expected.pop(k) for k in _OWN_COUNTS if k in expected})
        try:
            check_counts(df, expected, root)
        except InputError as e:
            raise InputError("\n  ".join([str(e), *own])) from None
        if own:
            raise InputError(f"{root}: utterance counts differ from config expected_counts:\n  " + "\n  ".join(own))
    return df


def _check_sentence_closed(wav_root: Path, speakers: list[str], read: Mapping[str, Mapping[str, set[str]]]) -> None:
    """Every speaker reads every sentence that any speaker read (per emotion), or the corpus is broken."""
    problems = []
    for emo, by_spk in sorted(read.items()):
        union = set().union(*by_spk.values())
        for spk in speakers:
            missing = sorted(union - by_spk.get(spk, set()))
            if missing:
                problems.append(f"{wav_root / spk / emo}: missing sentence(s) " + ", ".join(f"{emo}_{n}" for n in missing))
    if problems:
        more = f"; ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise InputError("; ".join(problems[:10]) + more + " (every speaker reads the same sentences: JTES is "
                         "sentence-closed)")


def _speaker_count_diffs(df, expected: Mapping) -> list[str]:
    """Differences from ``speakers`` (how many) and ``speakers_per_session`` ({F: n, M: n} in every session)."""
    diffs = []
    kept = df[df["label"] != ""]
    spk_gender = kept.groupby("speaker")["gender"].first()
    if expected.get("speakers") is not None and len(spk_gender) != int(expected["speakers"]):
        diffs.append(f"speakers: expected {expected['speakers']}, found {len(spk_gender)}")
    per = expected.get("speakers_per_session")
    if per:
        spk_session = kept.groupby("speaker")["session"].first()
        for s in sorted(spk_session.unique()):
            have = Counter(spk_gender[spk_session[spk_session == s].index])
            for g in sorted(set(per) | set(have)):
                if int(per.get(g, 0)) != have.get(g, 0):
                    diffs.append(f"speakers_per_session[{s}][{g}]: expected {per.get(g, 0)}, found {have.get(g, 0)}")
    return diffs
