"""A derived corpus made of other corpora (config ``format: union``), for multi-corpus training.

Zhang et al. (2022) train on ACT+SPON and test on each corpus's own test split.  A union
corpus names its members and the fold protocol each member keeps::

    act_spon: {format: union, members: {iemocap: loso5, spon: random5}}

* its manifest is the members' manifests stacked, with two more columns: ``corpus`` (the
  member's key) and ``style`` (the member's ``corpora.<member>.style``, e.g. acted /
  spontaneous), read by the style multi-task recipe;
* its fold *k* is fold *k* of every member under the member's own protocol (IEMOCAP
  session *k* left out, SPON random part *k* left out): every member utterance keeps its
  split, so "test on each corpus's test split" needs no further bookkeeping;
* it has no feature cache of its own: training reads the members' caches through
  :class:`emorepro.features.union.UnionFeatureCache`, so features are extracted once per
  (member corpus, encoder).

Utterance ids must be unique across members; a collision is an error naming both corpora.
"""
from __future__ import annotations

from typing import Mapping

from ..io import InputError

UNION_COLUMNS = ("corpus", "style")


def union_manifest(members: Mapping[str, "object"], styles: Mapping[str, str | None]):
    """Stack member manifests (``name -> DataFrame``) and add the ``corpus`` and ``style`` columns."""
    import pandas as pd

    frames, owner = [], {}
    for name, df in members.items():
        style = styles.get(name)
        if not style:
            raise InputError(f"config: corpora.{name}.style is required for a member of a union corpus "
                             f"(e.g. acted, spontaneous)")
        clash = [c for c in UNION_COLUMNS if c in df.columns]
        if clash:
            raise InputError(f"manifest of {name!r} already has column(s) {clash}; a union member must be a plain corpus")
        for u in df["utt_id"]:
            if u in owner:
                raise InputError(f"utterance id {u!r} is in both {owner[u]!r} and {name!r}; ids must be unique "
                                 f"across the members of a union corpus")
            owner[u] = name
        frames.append(df.assign(corpus=name, style=style))
    if not frames:
        raise InputError("config: corpora.<union>.members is empty")
    return pd.concat(frames, ignore_index=True)


def union_folds(members: Mapping[str, "object"], n_folds: int):
    """Concatenate member fold tables (``name -> DataFrame utt_id, fold, split``); fold k = fold k of each."""
    import pandas as pd

    from ..folds import check_folds

    want = list(range(1, n_folds + 1))
    for name, f in members.items():
        have = sorted(int(k) for k in f["fold"].unique())
        if have != want:
            raise InputError(f"folds of member {name!r} are {have}; the union protocol needs folds {want} in every member")
    out = pd.concat(list(members.values()), ignore_index=True)[["utt_id", "fold", "split"]]
    check_folds(out, where="union folds of " + ", ".join(members))
    return out.sort_values(["fold"], kind="stable").reset_index(drop=True)
