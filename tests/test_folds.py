"""Fold protocols are sound: no speaker in two splits of a fold, each utterance tested once."""
from __future__ import annotations

import pytest

from emorepro.folds import check_folds, make_folds
from emorepro.io import InputError


def labelled(manifest):
    return manifest[manifest["label"] != ""].reset_index(drop=True)


@pytest.mark.parametrize("scheme,val_policy,n_folds", [
    ("loso5", "none", 5), ("loso5", "held_out_speaker", 5), ("lospk10", "same_session", 10),
    ("lospk10", "none", 10)])
def test_speaker_protocols_are_sound(manifest, scheme, val_policy, n_folds):
    folds = make_folds(manifest, scheme, val_policy)
    lab = labelled(manifest)
    assert sorted(folds["fold"].unique()) == list(range(1, n_folds + 1))
    check_folds(folds, lab)
    spk = lab.set_index("utt_id")["speaker"]
    f = folds.assign(speaker=folds["utt_id"].map(spk), session=folds["utt_id"].map(lab.set_index("utt_id")["session"]))
    for k, g in f.groupby("fold"):
        by_split = {s: set(x["speaker"]) for s, x in g.groupby("split")}
        # no speaker in two splits of one fold
        assert not (by_split.get("train", set()) & by_split.get("test", set()))
        assert not (by_split.get("val", set()) & (by_split.get("train", set()) | by_split["test"]))
        if scheme == "loso5":
            assert set(g.loc[g["split"] == "test", "session"]) == {k}
        if scheme == "lospk10":
            assert len(by_split["test"]) == 1
            if val_policy == "same_session":
                assert len(by_split["val"]) == 1 and len(by_split["train"]) == 8
        if val_policy == "none":
            assert "val" not in by_split
    tested = folds[folds["split"] == "test"]["utt_id"]
    assert tested.is_unique and set(tested) == set(lab["utt_id"])


def test_random5_is_stratified_seeded_and_sound(manifest):
    lab = labelled(manifest).assign(speaker="")  # a corpus without speaker labels
    a = make_folds(lab, "random5", "none", seed=3)
    b = make_folds(lab, "random5", "none", seed=3)
    c = make_folds(lab, "random5", "none", seed=4)
    assert a.equals(b) and not a.equals(c)
    check_folds(a, lab)
    test = a[a["split"] == "test"].merge(lab[["utt_id", "label"]], on="utt_id")
    sizes = test.groupby("fold").size()
    assert sizes.max() - sizes.min() <= 1
    per_label = test.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per_label.max(axis=1) - per_label.min(axis=1)).max() <= 1  # stratified
    v = make_folds(lab, "random5", "next_part", seed=3)
    for k, g in v.groupby("fold"):
        assert set(g.loc[g["split"] == "val", "utt_id"]) == set(a[(a["fold"] == k % 5 + 1) & (a["split"] == "test")]["utt_id"])


def test_speaker_protocol_refuses_a_corpus_without_speakers(manifest):
    with pytest.raises(InputError, match="random5"):
        make_folds(labelled(manifest).assign(speaker=""), "loso5", "none")


def test_check_folds_catches_leaks(manifest):
    folds = make_folds(manifest, "loso5", "none")
    leaked = folds.copy()
    i = leaked.index[(leaked["fold"] == 1) & (leaked["split"] == "train")][0]
    leaked.loc[i, "split"] = "test"  # one utterance now tested twice, its speaker in two splits
    with pytest.raises(InputError, match="speaker in two splits of one fold"):
        check_folds(leaked, labelled(manifest), where="loso5.csv")
