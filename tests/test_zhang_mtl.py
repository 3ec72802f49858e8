"""Zhang et al. (2022) Tables 3-5: the style loss and its selective mask, "half" data, the
synthetic spontaneous corpus, union corpora (folds, caches) and per-corpus scoring."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from emorepro.models.zhang_mtl import StyleLoss, ZhangStyleRecipe, stratified_subset, style_mtl_loss

CLASSES = ["neu", "hap", "ang", "sad"]
SPON_MAP = {"angry": "ang", "happy": "hap", "sad": "sad", "neutral": "neu"}


# --------------------------------------------------------------------------- the loss


def _ce(logits, target):
    """Cross-entropy by hand: -log softmax(logits)[target]."""
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def test_mtl_loss_is_lambda_weighted_sum_checked_by_hand():
    logits = [[2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 0.0, 0.0], [0.3, 0.3, 2.0, -2.0]]
    labels = [0, 1, 3]
    style_logits = [[1.0, -1.0], [0.0, 2.0], [0.5, 0.5]]
    styles = [0, 1, 1]
    lam = 0.8
    got = style_mtl_loss(torch.tensor(logits), torch.tensor(labels), torch.tensor(style_logits),
                         torch.tensor(styles), lam, torch.tensor([True, True, True])).item()
    ser = [_ce(l, t) for l, t in zip(logits, labels)]
    sty = [_ce(l, t) for l, t in zip(style_logits, styles)]
    # Eq. 3: L = lambda * L_SER + (1 - lambda) * L_style, each loss a batch mean.
    want = lam * sum(ser) / 3 + (1 - lam) * sum(sty) / 3
    assert got == pytest.approx(want, rel=1e-6)
    # lambda = 1 is the single-task SER loss.
    one = style_mtl_loss(torch.tensor(logits), torch.tensor(labels), torch.tensor(style_logits),
                         torch.tensor(styles), 1.0, torch.tensor([True] * 3)).item()
    assert one == pytest.approx(sum(ser) / 3, rel=1e-6)


def test_selective_mask_zeroes_the_style_loss_for_neutral_samples_only():
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 0, 2, 3, 0])                 # neu = 0
    style_on = labels != 0                                    # what the recipe builds for style_exclude [neu]
    logits = torch.randn(6, 4, requires_grad=True)
    style_logits = torch.randn(6, 2, requires_grad=True)
    styles = torch.tensor([0, 1, 1, 0, 1, 0])
    loss = style_mtl_loss(logits, labels, style_logits, styles, 0.8, style_on)
    loss.backward()
    g = style_logits.grad.abs().sum(1)
    assert (g[~style_on] == 0).all(), "neutral samples must get no style gradient"
    assert (g[style_on] > 0).all(), "every non-neutral sample must get a style gradient"
    # By hand: lambda_i = 1 for neutral (full SER loss, no style loss), 0.8 otherwise.
    ser = F.cross_entropy(logits, labels, reduction="none").detach()
    sty = F.cross_entropy(style_logits, styles, reduction="none").detach()
    lam = torch.where(style_on, torch.tensor(0.8), torch.tensor(1.0))
    assert loss.item() == pytest.approx(((lam * ser + (1 - lam) * sty).mean()).item(), rel=1e-6)
    # Changing a neutral sample's style target changes nothing; a non-neutral one's does.
    flip = styles.clone()
    flip[0] = 1 - flip[0]
    assert style_mtl_loss(logits, labels, style_logits, flip, 0.8, style_on).item() == pytest.approx(loss.item())
    flip = styles.clone()
    flip[1] = 1 - flip[1]
    assert style_mtl_loss(logits, labels, style_logits, flip, 0.8, style_on).item() != pytest.approx(loss.item())


def test_style_loss_options_are_checked():
    with pytest.raises(Exception, match="style_lambda"):
        StyleLoss(style_lambda=1.5)
    with pytest.raises(Exception, match="style_lambda"):
        StyleLoss(style_exclude=["neu"])


# --------------------------------------------------------------------------- the recipe on a fake cache


class _FakeCache:
    dim = 40

    def __init__(self, utts):
        self.frames = {u: np.full((50 + i % 7, 40), i % 5, dtype=np.float16) for i, u in enumerate(utts)}

    def layer(self, u, i):
        return self.frames[u]


def _union_ctx(loss=None, data=None, seed=1, n_per=(12, 10, 6, 8)):
    """A two-corpus manifest (acted / spontaneous) with n_per utterances per class and corpus."""
    from emorepro.train import RunContext, TrainConfig

    rows = []
    for corpus, style in (("act", "acted"), ("spon", "spontaneous")):
        for c, n in zip(CLASSES, n_per):
            rows += [{"utt_id": f"{corpus}_{c}_{i:02d}", "label": c, "corpus": corpus, "style": style} for i in range(n)]
    m = pd.DataFrame(rows).set_index("utt_id", drop=False)
    rng = np.random.default_rng(0)
    test = set(rng.choice(m.index, 20, replace=False))
    splits = {"train": [u for u in m.index if u not in test], "val": [], "test": sorted(test)}
    cfg = TrainConfig(epochs=1, batch_size=8, selection="last", data=dict(data or {}), loss=dict(loss or {}))
    return RunContext(manifest=m, splits=splits, classes=CLASSES, caches={"audio": _FakeCache(m.index)},
                      model_params={"d_lstm": 4, "d_att": 8, "n_heads": 2, "d_fc1": 8, "d_fc2": 8},
                      cfg=cfg, seed=seed, device="cpu")


def test_recipe_masks_exactly_the_neutral_samples_and_builds_a_style_head():
    ctx = _union_ctx(loss={"style_lambda": 0.8, "style_exclude": ["neu"]})
    r = ZhangStyleRecipe(ctx)
    y = r.y["train"]
    assert (r.style_on["train"] == (y != CLASSES.index("neu"))).all()
    want_style = (ctx.manifest.loc[ctx.splits["train"], "style"] == "spontaneous").astype(int).to_numpy()
    assert (r.style["train"] == want_style).all()
    net = r.build()
    assert net.style is not None and net.style.out_features == 2
    b = r.batch("train", np.arange(8))
    out = net(x=b["x"], lengths=b["lengths"])
    assert r.loss(out, b, 1).item() == pytest.approx(style_mtl_loss(
        out["logits"], b["label"], out["style_logits"], b["style"], 0.8, b["label"] != 0).item())
    cols = r.extra_columns("test", {"logits": np.zeros((20, 4)), "style_logits": np.zeros((20, 2))})
    assert list(cols["corpus"]) == list(ctx.manifest.loc[ctx.splits["test"], "corpus"])


def test_combined_has_no_style_head_and_plain_cross_entropy():
    r = ZhangStyleRecipe(_union_ctx())
    net = r.build()
    assert net.style is None
    b = r.batch("train", np.arange(8))
    out = net(x=b["x"], lengths=b["lengths"])
    assert r.loss(out, b, 1).item() == pytest.approx(F.cross_entropy(out["logits"], b["label"]).item())


# --------------------------------------------------------------------------- half data


def test_stratified_subset_takes_half_of_every_stratum_and_is_seeded():
    strata = ["a"] * 41 + ["b"] * 10 + ["c"] * 7 + ["d"] * 2
    ids = [f"u{i}" for i in range(len(strata))]
    half = stratified_subset(ids, strata, 0.5, seed=3)
    assert len(half) == round(len(ids) / 2) == 30
    kept = pd.Series(strata, index=ids)[half].value_counts()
    for s, n in pd.Series(strata).value_counts().items():
        assert abs(kept.get(s, 0) - n / 2) <= 0.5 + 1e-9, (s, kept.get(s, 0), n)
    assert stratified_subset(ids, strata, 0.5, seed=3) == half
    assert stratified_subset(ids, strata, 0.5, seed=4) != half
    assert half == [u for u in ids if u in set(half)]          # input order kept
    assert stratified_subset(ids, strata, 1.0, seed=3) == ids


def _with_training_set(ctx):
    """What the loop does: the recipe's training-set hook replaces the fold's training split."""
    before = list(ctx.splits["train"])
    chosen = ZhangStyleRecipe.training_set(ctx)
    assert ctx.splits["train"] == before                       # the hook never mutates the shared splits
    if chosen is not None:
        ctx.splits = {**ctx.splits, "train": chosen}
    return ctx


def test_half_variant_trains_on_half_of_the_combined_split_stratified_by_corpus_and_class():
    full = _union_ctx()
    n_train = len(full.splits["train"])
    test_before = list(full.splits["test"])
    ctx = _with_training_set(_union_ctx(data={"train_fraction": 0.5}))
    r = ZhangStyleRecipe(ctx)
    train = ctx.splits["train"]
    assert len(train) == round(n_train / 2) and len(r.y["train"]) == len(train)
    assert ctx.splits["test"] == test_before                   # the test split is untouched
    m = ctx.manifest
    before = m.loc[full.splits["train"]].groupby(["corpus", "label"]).size()
    after = m.loc[train].groupby(["corpus", "label"]).size().reindex(before.index, fill_value=0)
    assert ((after - before / 2).abs() <= 0.5 + 1e-9).all()
    # Seeded by the run's seed (or data.subsample_seed): same seed, same subset.
    again = _with_training_set(_union_ctx(data={"train_fraction": 0.5}))
    assert again.splits["train"] == train
    other = _with_training_set(_union_ctx(data={"train_fraction": 0.5}, seed=2))
    assert other.splits["train"] != train
    pinned = _with_training_set(_union_ctx(data={"train_fraction": 0.5, "subsample_seed": 1}, seed=2))
    assert pinned.splits["train"] == train


# --------------------------------------------------------------------------- the synthetic spontaneous corpus


@pytest.fixture(scope="module")
def spon(tmp_path_factory):
    """A tiny synthetic SPON (24 utterances) and its manifest."""
    from emorepro.corpus.iemocap import LabelPolicy
    from emorepro.corpus.generic import ingest_generic
    from emorepro.corpus.synth_spon import SponSynthConfig, synthesize_spon

    csv = tmp_path_factory.mktemp("spon") / "a" / "corpus.csv"
    summary = synthesize_spon(csv, SponSynthConfig(seed=0, n_utterances=24, n_speakers=8))
    manifest = ingest_generic(csv, LabelPolicy(SPON_MAP, frozenset({"disgust"})))
    return csv, summary, manifest


def test_spon_synth_is_deterministic_per_seed(spon, tmp_path):
    from emorepro.corpus.synth_spon import SponSynthConfig, synthesize_spon

    csv, _, _ = spon
    again = tmp_path / "b" / "corpus.csv"
    synthesize_spon(again, SponSynthConfig(seed=0, n_utterances=24, n_speakers=8))
    assert again.read_bytes() == csv.read_bytes()
    for w in sorted((csv.parent / "wav").glob("*.wav")):
        assert (again.parent / "wav" / w.name).read_bytes() == w.read_bytes(), w.name
    other = tmp_path / "c" / "corpus.csv"
    synthesize_spon(other, SponSynthConfig(seed=1, n_utterances=24, n_speakers=8))
    assert other.read_bytes() != csv.read_bytes()
    # A re-run (Snakemake deletes only the CSV) replaces the earlier generation; a foreign folder is refused.
    other.unlink()
    synthesize_spon(other, SponSynthConfig(seed=0, n_utterances=24, n_speakers=8))
    assert other.read_bytes() == csv.read_bytes()
    foreign = tmp_path / "d"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(Exception, match="no generated corpus"):
        synthesize_spon(foreign / "corpus.csv", SponSynthConfig(seed=0, n_utterances=24))


def test_spon_synth_is_band_limited_to_8khz_telephone_speech(spon):
    import soundfile as sf

    csv, summary, _ = spon
    for w in sorted((csv.parent / "wav").glob("*.wav")):
        x, sr = sf.read(w)
        assert sr == 16_000
        power = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / sr)
        assert power[f > 4000].sum() / power.sum() < 1e-3, f"{w.name}: energy above 4 kHz"      # < -30 dB
        assert power[f > 4500].sum() / power.sum() < 1e-5, f"{w.name}: energy above 4.5 kHz"    # < -50 dB
        assert power[(f > 300) & (f < 3400)].sum() / power.sum() > 0.8                         # telephone band
    assert summary["channel"]["band_limited_at"] == 8000


def test_spon_synth_has_spons_label_proportions_and_no_speakers(spon):
    from emorepro.corpus.synth_spon import SPON_COUNTS, label_counts

    csv, _, manifest = spon
    assert "speaker" not in pd.read_csv(csv).columns
    assert (manifest["speaker"] == "").all()
    counts = label_counts(SPON_COUNTS, 6597)
    assert counts == SPON_COUNTS                              # exact at the paper's size
    c = label_counts(SPON_COUNTS, 300)
    assert sum(c.values()) == 300
    for k, n in SPON_COUNTS.items():
        assert abs(c[k] - 300 * n / 6597) < 1
    raw = pd.read_csv(csv)["label_raw"].value_counts().to_dict()
    assert raw == {k: v for k, v in label_counts({**SPON_COUNTS, "disgust": 200}, 24).items() if v}


def test_random5_folds_of_the_spontaneous_corpus_are_sound(spon, tmp_path):
    from emorepro.folds import check_folds, make_folds
    from emorepro.provenance import now, write_provenance
    from emorepro.steps import make_folds as make_folds_step

    _, _, manifest = spon
    lab = manifest[manifest["label"] != ""]
    folds = make_folds(manifest, "random5", "none", seed=0)
    check_folds(folds, lab)
    assert folds.equals(make_folds(manifest, "random5", "none", seed=0))
    assert sorted(folds["fold"].unique()) == [1, 2, 3, 4, 5]
    for k, g in folds.groupby("fold"):
        assert set(g["split"]) == {"train", "test"}
        assert len(g) == len(lab)                              # every labelled utterance, once per fold
    test = folds[folds["split"] == "test"].merge(lab[["utt_id", "label"]], on="utt_id")
    sizes = test.groupby("fold").size()
    assert sizes.max() - sizes.min() <= 1                      # five equal parts
    per = test.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1      # stratified by class
    # The step writes the same table and checks it (speakers are absent, so only the split rules apply).
    mcsv = tmp_path / "manifest.csv"
    manifest.to_csv(mcsv, index=False)
    write_provenance(mcsv, rule="ingest", params={}, inputs=None, outputs=[mcsv], started=now())  # steps check it
    make_folds_step(str(mcsv), str(tmp_path / "random5.csv"), scheme="random5", val_policy="none", seed=0)
    assert pd.read_csv(tmp_path / "random5.csv").equals(folds)


# --------------------------------------------------------------------------- union corpus


def test_union_manifest_and_folds_keep_each_members_folds(spon, manifest):
    from emorepro.corpus.union import union_folds, union_manifest
    from emorepro.folds import make_folds
    from emorepro.io import InputError

    _, _, sman = spon
    act_folds = make_folds(manifest, "loso5", "none")
    spon_folds = make_folds(sman, "random5", "none", seed=0)
    u = union_manifest({"iemocap": manifest, "spon": sman}, {"iemocap": "acted", "spon": "spontaneous"})
    assert len(u) == len(manifest) + len(sman)
    assert set(u.loc[u["corpus"] == "spon", "style"]) == {"spontaneous"}
    assert set(u.loc[u["corpus"] == "iemocap", "style"]) == {"acted"}
    f = union_folds({"iemocap": act_folds, "spon": spon_folds}, 5)
    for k in range(1, 6):
        for name, mf in (("iemocap", act_folds), ("spon", spon_folds)):
            want = mf[mf["fold"] == k].set_index("utt_id")["split"]
            got = f[(f["fold"] == k) & f["utt_id"].isin(want.index)].set_index("utt_id")["split"]
            assert got.sort_index().equals(want.sort_index())   # fold k = member's fold k, split for split
    with pytest.raises(InputError, match="both"):
        union_manifest({"a": sman, "b": sman}, {"a": "acted", "b": "spontaneous"})
    with pytest.raises(InputError, match="style"):
        union_manifest({"iemocap": manifest}, {"iemocap": None})
    with pytest.raises(InputError, match="folds"):
        union_folds({"iemocap": act_folds, "spon": spon_folds[spon_folds["fold"] < 5]}, 5)


def test_union_feature_cache_reads_each_members_cache(spon, tmp_path):
    from emorepro.encoders.base import EncoderSpec
    from emorepro.features.cache import FeatureCache, extract_to_cache
    from emorepro.features.union import UnionFeatureCache, open_cache

    _, _, sman = spon
    spec = EncoderSpec.from_dict("fbank40", {"family": "fbank", "backend": "kaldi_fbank", "options": {"num_mel_bins": 40}})
    halves = [sman.iloc[:12], sman.iloc[12:]]
    dirs = []
    for i, h in enumerate(halves):
        h.to_csv(tmp_path / f"m{i}.csv", index=False)
        extract_to_cache(str(tmp_path / f"m{i}.csv"), spec, str(tmp_path / f"c{i}"))
        dirs.append(str(tmp_path / f"c{i}"))
    u = open_cache(dirs)
    assert isinstance(u, UnionFeatureCache) and len(u) == len(sman) and u.dim == 40
    for i, h in enumerate(halves):
        c = FeatureCache(dirs[i])
        for utt in h["utt_id"]:
            assert np.array_equal(u.layer(utt, 0), c.layer(utt, 0))
    with pytest.raises(ValueError, match="both"):
        UnionFeatureCache([FeatureCache(dirs[0]), FeatureCache(dirs[0])])
    assert isinstance(open_cache(dirs[0]), FeatureCache)


# --------------------------------------------------------------------------- per-corpus metrics and tables


def test_per_corpus_metrics_on_a_hand_example():
    from emorepro.metrics import corpus_metrics

    # corpus a: labels neu neu hap ang, preds neu hap hap ang -> recalls neu 1/2, hap 1, ang 1; UA 5/6, WA 3/4
    # corpus b: labels sad sad neu,     preds sad neu neu     -> recalls sad 1/2, neu 1;        UA 3/4, WA 2/3
    df = pd.DataFrame({"corpus": ["a"] * 4 + ["b"] * 3, "label": [0, 0, 1, 2, 3, 3, 0], "pred": [0, 1, 1, 2, 3, 0, 0],
                       "style": [0, 0, 0, 0, 1, 1, 1], "style_pred": [0, 0, 0, 0, 1, 1, 0]})
    m = corpus_metrics(df, CLASSES)
    a, b = m["by_corpus"]["a"], m["by_corpus"]["b"]
    assert a["uar"] == pytest.approx(5 / 6) and a["war"] == pytest.approx(3 / 4)
    assert a["recall"] == {"neu": 0.5, "hap": 1.0, "ang": 1.0, "sad": None}
    assert b["uar"] == pytest.approx(3 / 4) and b["war"] == pytest.approx(2 / 3)
    assert b["recall"] == {"neu": 1.0, "hap": None, "ang": None, "sad": 0.5}
    assert a["confusion"][0] == [1, 1, 0, 0] and b["confusion"][3] == [1, 0, 0, 1]
    mean = m["corpus_mean"]
    assert mean["uar"] == pytest.approx((5 / 6 + 3 / 4) / 2) and mean["war"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert mean["recall"]["neu"] == pytest.approx(0.75) and mean["recall"]["hap"] == 1.0
    assert a["style_accuracy"] == 1.0 and b["style_accuracy"] == pytest.approx(2 / 3)
    assert m["style"]["accuracy"] == pytest.approx(6 / 7) and mean["style_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    # A single-corpus run is its own by_corpus entry: the same numbers as the pooled metrics.
    one = corpus_metrics(df[df["corpus"] == "a"].drop(columns=["corpus", "style", "style_pred"]), CLASSES, corpus="a")
    assert one["by_corpus"]["a"]["uar"] == a["uar"] and one["corpus_mean"]["war"] == a["war"] and "style" not in one


def _metrics_file(path, **m):
    from emorepro.io import write_json
    from emorepro.provenance import write_provenance

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, m)
    write_provenance(path, rule="score", params={}, inputs=None, outputs=[path], started="2026-01-01T00:00:00+00:00")
    return str(path)


def test_table_rows_average_experiments_per_fold_and_read_a_metric_scope(tmp_path):
    # The equal-weight reading of a row over several test sets (combine: equal_weight).
    from emorepro.io import InputError
    from emorepro.tables import RunRef, build_table, fill_corpus_names

    runs_sep, runs_union = [], []
    for seed in (1, 2):
        for fold in (1, 2):
            a = 0.5 + 0.1 * fold + 0.01 * seed
            b = 0.3 + 0.1 * fold
            runs_sep.append(RunRef(_metrics_file(tmp_path / f"a{seed}{fold}.json", uar=a), fold, seed, "p/act"))
            runs_sep.append(RunRef(_metrics_file(tmp_path / f"b{seed}{fold}.json", uar=b), fold, seed, "p/spon"))
            runs_union.append(RunRef(_metrics_file(tmp_path / f"u{seed}{fold}.json", uar=0.0,
                                                   corpus_mean={"uar": (a + b) / 2},
                                                   by_corpus={"spon": {"uar": b}}), fold, seed, "p/u"))
    spec = fill_corpus_names({"name": "t", "title": "on {corpora.spon.name}", "scale": 100, "combine": "equal_weight",
                              "columns": [{"name": "UA", "metric": "uar"}], "rows": [
        {"name": "separate", "experiment": ["p/act", "p/spon"]},
        {"name": "union", "experiment": "p/u", "metric_scope": "corpus_mean"},
        {"name": "union on {corpora.spon.name}", "experiment": "p/u", "metric_scope": "by_corpus.spon"}]},
        {"spon": {"name": "our corpus"}})
    assert spec["title"] == "on our corpus" and spec["rows"][2]["name"] == "union on our corpus"
    df = build_table(spec, {"separate": runs_sep, "union": runs_union, "union on our corpus": runs_union})
    per_seed = [np.mean([(0.5 + 0.1 * f + 0.01 * s + 0.3 + 0.1 * f) / 2 for f in (1, 2)]) * 100 for s in (1, 2)]
    sep = df[df["row"] == "separate"].iloc[0]
    assert sep["ours_mean"] == pytest.approx(np.mean(per_seed)) and sep["ours_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert sep["n_runs"] == 8
    uni = df[df["row"] == "union"].iloc[0]
    assert uni["ours_mean"] == pytest.approx(sep["ours_mean"]) and uni["metric"] == "corpus_mean.uar"
    assert df[df["row"] == "union on our corpus"].iloc[0]["ours_mean"] == pytest.approx(100 * (0.3 + 0.15))
    # An experiment missing a (seed, fold) that the row's other experiment has: refused.
    with pytest.raises(InputError, match="same seeds and folds"):
        build_table(spec, {"separate": runs_sep[:-1], "union": runs_union, "union on our corpus": runs_union})


def _scored_run(d, df, fold, seed, corpus=None):
    """Write predictions.csv (+ its run sidecar) and score it as the score rule does; returns the RunRef args."""
    from emorepro import steps
    from emorepro.provenance import now, write_provenance

    d.mkdir(parents=True)
    df.to_csv(d / "predictions.csv", index=False)
    write_provenance(d, rule="train", params={"fold": fold}, seed=seed, inputs=None,
                     outputs=[d / "predictions.csv"], started=now())
    steps.score(str(d / "predictions.csv"), str(d / "metrics.json"), classes=CLASSES, fold=fold, seed=seed,
                corpus=corpus)
    return str(d / "metrics.json")


def test_pooled_rows_score_the_union_of_both_corpora_test_utterances(tmp_path):
    """combine: pooled (the default): a cell over both corpora is the metric of their pooled test utterances,
    whether the corpora come from one union run (metric_scope: corpora) or from one run per corpus."""
    import json

    from sklearn.metrics import accuracy_score, recall_score

    from emorepro.tables import RunRef, build_table, caption_rule, render

    rng = np.random.default_rng(3)
    runs = {"separate": [], "union": []}
    truth = {}
    for seed in (1, 2):
        for fold in (1, 2):
            # Corpora of different sizes and class mixes (as ACT 5,531 vs SPON 6,597): pooling != equal weight.
            frames = []
            for corpus, n, probs, acc in (("iemocap", 40, [0.3, 0.3, 0.2, 0.2], 0.7), ("spon", 90, [0.3, 0.1, 0.5, 0.1], 0.5)):
                y = rng.choice(4, size=n, p=probs)
                p = np.where(rng.random(n) < acc, y, rng.integers(0, 4, n))
                frames.append(pd.DataFrame({"utt_id": [f"{corpus}{i}" for i in range(n)], "fold": fold, "split": "test",
                                            "label": y, "pred": p, "corpus": corpus,
                                            "style": int(corpus == "spon"),
                                            "style_pred": np.where(rng.random(n) < 0.9, int(corpus == "spon"),
                                                                   int(corpus != "spon"))}))
            both = pd.concat(frames, ignore_index=True)
            truth[(seed, fold)] = both
            runs["union"].append(RunRef(_scored_run(tmp_path / f"u/{fold}/{seed}", both, fold, seed), fold, seed, "p/u"))
            for f in frames:
                c = f["corpus"].iloc[0]
                runs["separate"].append(RunRef(_scored_run(tmp_path / f"{c}/{fold}/{seed}",
                                                           f.drop(columns=["corpus", "style", "style_pred"]), fold, seed,
                                                           corpus=c), fold, seed, f"p/{c}"))
    spec = {"name": "t3", "scale": 100, "combine": "pooled",
            "columns": [{"name": "UA", "metric": "uar"}, {"name": "WA", "metric": "war"},
                        {"name": "Anger", "metric": "recall.ang"}, {"name": "Style", "metric": "style_accuracy"}],
            "rows": [{"name": "separate", "experiment": ["p/iemocap", "p/spon"], "columns": ["UA", "WA", "Anger"]},
                     {"name": "union", "experiment": "p/u", "metric_scope": "corpora"}]}
    df = build_table(spec, runs).set_index(["row", "column"])
    want = {"UA": lambda d: recall_score(d["label"], d["pred"], average="macro"),
            "WA": lambda d: accuracy_score(d["label"], d["pred"]),
            "Anger": lambda d: recall_score(d["label"], d["pred"], labels=[2], average=None)[0],
            "Style": lambda d: (d["style"] == d["style_pred"]).mean()}
    for col, f in want.items():
        expect = np.mean([np.mean([f(truth[(s, k)]) for k in (1, 2)]) for s in (1, 2)]) * 100
        assert df.loc[("union", col), "ours_mean"] == pytest.approx(expect, rel=1e-9)
        if col != "Style":
            assert df.loc[("separate", col), "ours_mean"] == pytest.approx(expect, rel=1e-9)
    # The pooled union row is the run's own whole-test-split metric (what metrics.json's top level holds).
    from pathlib import Path

    tops = [json.loads(Path(r.metrics).read_text())["uar"] for r in runs["union"]]
    assert df.loc[("union", "UA"), "ours_mean"] == pytest.approx(100 * np.mean(tops), rel=1e-9)
    assert df.loc[("union", "UA"), "metric"] == "by_corpus.*.uar"
    # The equal-weight reading gives a different number on the same runs (corpora differ in size and mix).
    eq = build_table({**spec, "combine": "equal_weight"}, runs).set_index(["row", "column"])
    assert abs(eq.loc[("union", "UA"), "ours_mean"] - df.loc[("union", "UA"), "ours_mean"]) > 0.5
    assert eq.loc[("union", "UA"), "ours_mean"] == pytest.approx(eq.loc[("separate", "UA"), "ours_mean"], rel=1e-9)
    # The caption says which reading the table uses; each cell records the rule and the per-fold pooled value.
    assert "(pooled)" in caption_rule(spec) and "(equal_weight)" in caption_rule({**spec, "combine": "equal_weight"})
    cells = render(spec, build_table(spec, runs), str(tmp_path / "t.tex"), str(tmp_path / "t.csv"), str(tmp_path / "t.md"))
    cell = cells["separate | UA"]
    assert cell["combine"] == "pooled" and len(cell["runs"]) == 8
    r0 = cell["runs"][0]
    assert r0["fold_value"] == pytest.approx(100 * recall_score(truth[(r0["seed"], r0["fold"])]["label"],
                                                                truth[(r0["seed"], r0["fold"])]["pred"], average="macro"))
    assert cells["union | UA"]["combine"] == "pooled"
    one = {**spec, "rows": [{"name": "spon", "experiment": "p/u", "metric_scope": "by_corpus.spon"}]}
    assert "combine" not in render(one, build_table(one, runs), str(tmp_path / "u.tex"), str(tmp_path / "u.csv"),
                                   str(tmp_path / "u.md"))["spon | UA"]
    assert "Combined test sets" not in caption_rule(one)


def test_pooling_refuses_a_metric_that_has_no_pooled_form(tmp_path):
    from emorepro.io import InputError
    from emorepro.tables import combine

    a = {"ccc_valence": 0.5, "n": 10}
    b = {"ccc_valence": 0.7, "n": 30}
    assert combine([a, b], "ccc_valence", "equal_weight") == pytest.approx(0.6)
    with pytest.raises(InputError, match="cannot be pooled"):
        combine([a, b], "ccc_valence", "pooled", "x.json")
    with pytest.raises(InputError, match="recall and support"):
        combine([{"uar": 0.5}, {"uar": 0.6}], "uar", "pooled", "x.json")
    with pytest.raises(InputError, match="unknown combine"):
        combine([a, b], "war", "sum", "x.json")
