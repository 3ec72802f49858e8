"""Fold protocols: one long-format CSV per protocol with columns ``utt_id, fold, split``.

Each utterance appears once per fold, with ``split`` one of ``train``, ``val``, ``test``
(an utterance left out of a fold, e.g. a validation speaker when validation is disabled,
is simply absent from that fold).  Protocols:

``loso5``
    Leave one session out (5 folds).  ``val_policy`` is ``none`` (train on the 4 other
    sessions; papers that select models on the test set do this, and the tables flag it)
    or ``held_out_speaker``: one speaker of the next session (alternating F/M by fold) is
    held out of training for model selection.
``lospk10``
    Leave one speaker out (10 folds): test speaker = speaker *k*, validation = the other
    speaker of the same session, training = the 8 remaining speakers (Ispas et al.).
``random5``
    For corpora without speaker labels: 5 random equal parts, stratified by label and
    seeded; fold *k* tests part *k*, validates on part *k+1* when ``val_policy`` asks
    for it, and trains on the rest.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .io import InputError

SPLITS = ("train", "val", "test")


def _speakers(df) -> list[str]:
    spk = sorted(s for s in df["speaker"].unique() if s)
    if not spk or (df["speaker"] == "").any():
        raise InputError("manifest: protocol needs a speaker for every utterance; use random5 for a corpus without speakers")
    return spk


def loso5(df, val_policy: str = "none", seed: int = 0):
    sessions = sorted(df["session"].astype(int).unique())
    speakers = _speakers(df)
    out = []
    for k, s in enumerate(sessions, 1):
        test = df["session"].astype(int) == s
        split = np.where(test, "test", "train").astype(object)
        if val_policy == "held_out_speaker":
            nxt = sessions[k % len(sessions)]
            cand = [x for x in speakers if int(x[3:5]) == nxt] if all(x.startswith("Ses") for x in speakers) else []
            if not cand:
                cand = sorted(df.loc[df["session"].astype(int) == nxt, "speaker"].unique())
            val_spk = cand[(k - 1) % len(cand)]
            split = np.where(df["speaker"] == val_spk, "val", split)
        elif val_policy != "none":
            raise InputError(f"config: folds.val_policy: unknown value {val_policy!r} for loso5 (none, held_out_speaker)")
        out.append(_fold_frame(df, k, split))
    return _concat(out)


def lospk10(df, val_policy: str = "same_session", seed: int = 0):
    speakers = _speakers(df)
    spk_session = df.groupby("speaker")["session"].first().astype(int).to_dict()
    out = []
    for k, test_spk in enumerate(speakers, 1):
        split = np.where(df["speaker"] == test_spk, "test", "train").astype(object)
        if val_policy == "same_session":
            mates = [s for s in speakers if s != test_spk and spk_session[s] == spk_session[test_spk]]
            if len(mates) != 1:
                raise InputError(f"manifest: lospk10 expects exactly 2 speakers per session, "
                                 f"session {spk_session[test_spk]} has {len(mates) + 1}")
            split = np.where(df["speaker"] == mates[0], "val", split)
        elif val_policy != "none":
            raise InputError(f"config: folds.val_policy: unknown value {val_policy!r} for lospk10 (same_session, none)")
        out.append(_fold_frame(df, k, split))
    return _concat(out)


def random5(df, val_policy: str = "none", seed: int = 0, n_folds: int = 5):
    """Stratified random parts: shuffle each label's utterances with ``seed``, deal round-robin."""
    rng = np.random.default_rng(seed)
    part = np.empty(len(df), dtype=int)
    offset = 0
    for label in sorted(df["label"].unique()):
        idx = np.flatnonzero((df["label"] == label).to_numpy())
        idx = idx[rng.permutation(len(idx))]
        # Continue the deal where the previous label stopped so part sizes differ by at most one.
        part[idx] = (np.arange(len(idx)) + offset) % n_folds
        offset += len(idx)
    out = []
    for k in range(1, n_folds + 1):
        split = np.where(part == k - 1, "test", "train").astype(object)
        if val_policy == "next_part":
            split = np.where(part == k % n_folds, "val", split)
        elif val_policy != "none":
            raise InputError(f"config: folds.val_policy: unknown value {val_policy!r} for random5 (none, next_part)")
        out.append(_fold_frame(df, k, split))
    return _concat(out)


PROTOCOLS: dict[str, Callable] = {"loso5": loso5, "lospk10": lospk10, "random5": random5}


def _fold_frame(df, k: int, split):
    import pandas as pd

    return pd.DataFrame({"utt_id": df["utt_id"].to_numpy(), "fold": k, "split": split})


def _concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def make_folds(manifest, protocol: str, val_policy: str, seed: int = 0):
    """Fold table for the labelled utterances of ``manifest`` (rows with a class label)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"config: protocol {protocol!r} unknown; choose from {sorted(PROTOCOLS)}")
    df = manifest[manifest["label"].fillna("") != ""].reset_index(drop=True)
    if df.empty:
        raise InputError("manifest: no labelled utterances (check label_map)")
    return PROTOCOLS[protocol](df, val_policy=val_policy, seed=seed)


def check_folds(folds, manifest=None, where: str = "folds") -> None:
    """Soundness: no utterance or speaker in two splits of one fold, every utterance tested exactly once.

    Raises :class:`InputError` naming ``where`` (the fold file) and the first offenders.  The fold step
    runs it on what it writes, and the training step again on what it reads.
    """
    check_fold_splits(folds, manifest, where)
    tested = folds[folds["split"] == "test"]["utt_id"].value_counts()
    if (tested != 1).any():
        raise InputError(f"{where}: utterances tested more than once: {list(tested[tested != 1].index[:5])}")
    all_utts = set(folds["utt_id"])
    if set(tested.index) != all_utts:
        raise InputError(f"{where}: utterances never tested: {sorted(all_utts - set(tested.index))[:5]}")


def check_fold_splits(folds, manifest=None, where: str = "folds") -> None:
    """Within each fold: splits are train/val/test, no utterance in two splits, no speaker in two splits.

    (The per-fold part of :func:`check_folds`: what one training run relies on.)"""
    bad = sorted(set(folds["split"]) - set(SPLITS))
    if bad:
        raise InputError(f"{where}: unknown split(s) {bad}; expected {list(SPLITS)}")
    dup = folds.duplicated(["fold", "utt_id"], keep=False)
    if dup.any():
        rows = folds[dup]
        raise InputError(f"{where}: utterance(s) listed twice in one fold: "
                         f"{sorted(set(zip(rows['fold'].tolist(), rows['utt_id'].tolist())))[:3]}")
    if manifest is not None and "speaker" in manifest.columns and (manifest["speaker"].fillna("") != "").all():
        spk = manifest.set_index("utt_id")["speaker"]
        f = folds.assign(speaker=folds["utt_id"].map(spk))
        per = f.groupby(["fold", "speaker"])["split"].nunique()
        if (per > 1).any():
            raise InputError(f"{where}: speaker in two splits of one fold (a leak): {list(per[per > 1].index[:3])}")


def fold_groups(folds, manifest) -> dict[int, list[str]]:
    """What fold k holds out: the sessions (or speakers, when a fold tests one speaker) of its test split."""
    m = manifest.set_index("utt_id")
    out = {}
    for k, f in folds[folds["split"] == "test"].groupby("fold"):
        ids = f["utt_id"]
        if "session" in m.columns and m["session"].astype(str).ne("").all():
            sessions = sorted({str(x) for x in m.loc[ids, "session"]})
            speakers = sorted({str(x) for x in m.loc[ids, "speaker"]}) if "speaker" in m.columns else []
            out[int(k)] = [f"speaker {speakers[0]}"] if len(speakers) == 1 else [f"session {x}" for x in sessions]
        else:
            out[int(k)] = [f"{len(ids)} utterances"]
    return out
