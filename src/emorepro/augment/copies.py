"""Which augmented copies exist, and which of them a fold may train on (torch-free).

The paper voices each back-translated transcript "as a different speaker from the training
corpus", with the speaker embedding computed from that speaker's utterances "expressing a
similar emotion" (Ghosh et al. 2022, Sec. 3.3).  Under leave-one-session-out the set of
training speakers changes with the fold, so a copy made for one fold could be voiced by a test
speaker of another.  The plan below makes one augmentation run serve every fold:

* **K copies per labelled utterance, one per other session** (K = 4 on IEMOCAP).  Copy ``j``
  (``<source>__aug<j>``, ``j`` counting the other sessions in ascending order) is voiced by a
  speaker of that session, drawn with the seed from the speakers who have utterances of the
  source's class (the paper's "similar emotion"), or from all of them if none has.
* **In fold k** (:func:`allowed_copies`), a training utterance may use only the copies whose
  target speaker is not held out of fold k's training (a test or validation speaker) and whose
  source is not a held-out utterance.  Under ``loso5`` that drops the copy voiced in the test
  session and leaves K - 1 = 3, of which the recipe samples one per epoch.

The choice of target speaker depends only on (seed, source id, target session), not on the
order or subset of the manifest, so adding utterances never changes the other copies.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Mapping

import numpy as np

from ..io import InputError

COPY_SEP = "__aug"
PLAN_COLUMNS = [
    "aug_id", "source_utt", "copy", "source_speaker", "source_session", "source_label_raw", "label",
    "target_speaker", "target_session", "target_gender", "label_match", "text_source", "mode",
    "valence", "arousal", "dominance",
]


def aug_id(source: str, j: int) -> str:
    """Id of copy ``j`` of utterance ``source``: ``<source>__aug<j>``."""
    return f"{source}{COPY_SEP}{j}"


def source_of(copy_id: str) -> str:
    """The source utterance of an augmented id (``Ses01F_impro01_F000__aug2`` -> ``Ses01F_impro01_F000``)."""
    src, sep, j = copy_id.rpartition(COPY_SEP)
    if not sep or not src or not j.isdigit():
        raise InputError(f"{copy_id!r} is not an augmented utterance id (<source>{COPY_SEP}<j>)")
    return src


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (CRC32 of each: stable across runs and machines)."""
    return np.random.default_rng([int(seed), *(zlib.crc32(str(k).encode()) for k in keys)])


def clean_text(text: str) -> str:
    """Transcript as spoken: bracketed non-speech spans (``[LAUGHTER]``, as MMER's code removes) dropped,
    whitespace collapsed."""
    import re

    return " ".join(re.sub(r"\[[^\]]*\]", " ", str(text)).split())


def plan_copies(manifest, *, seed: int, where: str = "manifest"):
    """The copies of every labelled utterance of ``manifest`` (a corpus manifest DataFrame).

    Returns a DataFrame with :data:`PLAN_COLUMNS`, one row per copy, sorted by ``aug_id``.
    Needs a speaker and a session for every labelled utterance and at least two sessions.
    """
    import pandas as pd

    df = manifest[manifest["label"].fillna("").astype(str) != ""].copy()
    if df.empty:
        raise InputError(f"{where}: no labelled utterances to augment (check label_map)")
    for col in ("speaker", "session"):
        blank = df[col].isna() | (df[col].astype(str) == "")
        if blank.any():
            raise InputError(f"{where}: utterance {df.loc[blank, 'utt_id'].iloc[0]!r} has no {col}; augmentation "
                             "voices each copy by a speaker of another session, so every utterance needs both")
    df = df.sort_values("utt_id", kind="stable").reset_index(drop=True)
    sessions = sorted(df["session"].unique())
    if len(sessions) < 2:
        raise InputError(f"{where}: augmentation needs at least two sessions (one copy per other session)")
    speakers = {s: sorted(df.loc[df["session"] == s, "speaker"].unique()) for s in sessions}
    labels_of = df.groupby("speaker")["label"].agg(lambda x: set(x)).to_dict()
    gender_of = df.groupby("speaker")["gender"].first().to_dict()
    rows = []
    for r in df.to_dict("records"):
        others = [s for s in sessions if s != r["session"]]
        for j, s in enumerate(others):
            matching = [p for p in speakers[s] if r["label"] in labels_of[p]]
            cands = matching or speakers[s]
            target = cands[int(seeded_rng(seed, r["utt_id"], str(s)).integers(len(cands)))]
            rows.append({
                "aug_id": aug_id(r["utt_id"], j), "source_utt": r["utt_id"], "copy": j,
                "source_speaker": r["speaker"], "source_session": r["session"], "source_label_raw": r["label_raw"],
                "label": r["label"], "target_speaker": target, "target_session": s,
                "target_gender": gender_of.get(target, ""), "label_match": bool(matching),
                "text_source": clean_text(r.get("transcript", "")), "mode": r.get("mode", ""),
                "valence": r.get("valence"), "arousal": r.get("arousal"), "dominance": r.get("dominance"),
            })
    return pd.DataFrame(rows, columns=PLAN_COLUMNS).sort_values("aug_id", kind="stable").reset_index(drop=True)


def read_copies(path: str | os.PathLike):
    """The copies sidecar (``results/<aug>/tts/copies.csv``) as a DataFrame, checked for its key columns."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in ("aug_id", "source_utt", "source_speaker", "target_speaker") if c not in df.columns]
    if missing:
        raise InputError(f"{path}:1: missing column(s) {missing} (not a copies sidecar?)")
    return df


def _frame(x, what: str):
    import pandas as pd

    if isinstance(x, (str, os.PathLike)):
        return read_copies(x) if what == "copies" else pd.read_csv(x, keep_default_na=False)
    return x


def allowed_copies(copies, folds, fold: int, *, manifest=None) -> dict[str, list[str]]:
    """``{training utterance of fold k: [its copies fold k may train on]}``.

    Parameters
    ----------
    copies : the copies sidecar (DataFrame or path; :func:`read_copies`), or the augmented corpus's
        manifest (``utt_id`` = ``<source>__aug<j>``, ``speaker`` = target speaker; then ``manifest``
        is required for the source speakers).
    folds : the source corpus's fold table (``utt_id, fold, split``; DataFrame or path).
    fold : the fold k.
    manifest : the source corpus's manifest (optional): speaker of each held-out utterance.

    A copy is allowed iff its source is a training utterance of fold k, its target speaker is
    not the speaker of any utterance held out of fold k's training (split ``test`` or ``val``),
    and it is not voiced by its own source speaker.  Every training utterance is a key (an
    empty list if none of its copies is allowed); one that has no copy at all is an error (the
    augmentation was made from another manifest).
    """
    copies = _frame(copies, "copies")
    folds = _frame(folds, "folds")
    if "aug_id" not in copies.columns and {"utt_id", "speaker"} <= set(copies.columns):
        if manifest is None:
            raise InputError("allowed_copies: given the augmented manifest, pass the source manifest too "
                             "(manifest=...) for the source speakers")
        copies = copies.assign(aug_id=copies["utt_id"], target_speaker=copies["speaker"],
                               source_utt=[source_of(u) for u in copies["utt_id"]])
    f = folds[folds["fold"].astype(int) == int(fold)]
    if f.empty:
        raise InputError(f"folds: no rows for fold {fold}")
    speaker_of: Mapping[str, str]
    if manifest is not None:
        manifest = _frame(manifest, "manifest")
        speaker_of = dict(zip(manifest["utt_id"], manifest["speaker"].astype(str)))
    else:
        speaker_of = dict(zip(copies["source_utt"], copies["source_speaker"].astype(str)))
    if "source_speaker" not in copies.columns:
        copies = copies.assign(source_speaker=[speaker_of.get(u, "") for u in copies["source_utt"]])
    held = f.loc[f["split"] != "train", "utt_id"].tolist()
    unknown = [u for u in held if not speaker_of.get(u)]
    if unknown:
        raise InputError(f"allowed_copies: no speaker for held-out utterance(s) {unknown[:3]} of fold {fold}; "
                         "pass the source manifest (manifest=...)")
    held_speakers = {speaker_of[u] for u in held}
    held_utts = set(held)
    train = sorted(f.loc[f["split"] == "train", "utt_id"])
    have = set(copies["source_utt"])
    missing = [u for u in train if u not in have]
    if missing:
        raise InputError(f"copies: no copy of training utterance(s) {missing[:3]} ({len(missing)} in all) of fold "
                         f"{fold}: was the augmented corpus made from another manifest?")
    ok = (~copies["target_speaker"].astype(str).isin(held_speakers) & ~copies["source_utt"].isin(held_utts)
          & (copies["target_speaker"].astype(str) != copies["source_speaker"].astype(str)))
    out: dict[str, list[str]] = {u: [] for u in train}
    for src, cid in zip(copies.loc[ok, "source_utt"], copies.loc[ok, "aug_id"]):
        if src in out:
            out[src].append(cid)
    return {u: sorted(v) for u, v in out.items()}


def choose_copies(allowed: Mapping[str, list[str]], *, seed: int, epoch: int) -> dict[str, str]:
    """One allowed copy per training utterance for one epoch (seeded by seed, epoch and utterance).

    ``allowed`` is :func:`allowed_copies`' result; utterances without an allowed copy are left out.
    The choice of an utterance does not depend on the other utterances, the batch order or the device.
    """
    return {u: cs[int(seeded_rng(seed, "epoch", str(epoch), u).integers(len(cs)))]
            for u, cs in allowed.items() if cs}
