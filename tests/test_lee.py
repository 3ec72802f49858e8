"""Lee et al. (2023), issue 17: the lee_dann family (the gradient scale's sign, the fake-domain step 2),
several seeds per training job, the pooled per-trial statistics of Tables 2-4, fusion cells of Tables 5-6,
the intermediate concatenation and Fig. 4's confusion matrix.

The family runs through the real training loop on a small synthetic union corpus (two "corpora",
two genders, sine tones per emotion) with a tiny random-init HuBERT fine-tuned end to end, as the
real config does with HuBERT-large.  Tables and fusion read files written by the real steps.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

sf = pytest.importorskip("soundfile")

from emorepro import steps
from emorepro import tables as T
from emorepro import train as TR
from emorepro.io import InputError
from emorepro.models.lee_dann import DOMAINS, LeeConfig, LeeDANN, LeeLoss
from emorepro.provenance import write_provenance

CLASSES = ["neu", "hap", "ang", "sad"]
SR = 16_000


# --------------------------------------------------------------------------- the gradient scale


def _pair(d_in=6, hidden=5):
    torch.manual_seed(0)
    cfg = LeeConfig(d_in=d_in, n_classes=4, n_domains=4, domain_classifier=True, fe_hidden=hidden)
    mtl, dann = LeeDANN(cfg, gamma=1.0), LeeDANN(cfg, gamma=-1.0)
    dann.load_state_dict(mtl.state_dict())
    return mtl, dann


def _grads(net, x, y_emo, y_dom, which):
    net.zero_grad()
    out = net(pooled=x)
    loss = {"dom": F.cross_entropy(out["dom_logits"], y_dom), "emo": F.cross_entropy(out["logits"], y_emo)}
    sum(loss[w] for w in which).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_grl_sign_dann_negates_the_domain_gradient_mtl_passes_it():
    mtl, dann = _pair()
    g = torch.Generator().manual_seed(1)
    x, y_emo, y_dom = torch.randn(16, 6, generator=g), torch.randint(0, 4, (16,), generator=g), \
        torch.randint(0, 4, (16,), generator=g)
    fe = ("heads.fe_proj.0.weight", "heads.fe_proj.0.bias")
    g_mtl, g_dann = _grads(mtl, x, y_emo, y_dom, ["dom"]), _grads(dann, x, y_emo, y_dom, ["dom"])
    # the domain loss's gradient at the extractor: DANN's is MTL's negated (and not zero)
    for n in fe:
        assert g_mtl[n].abs().sum() > 0
        torch.testing.assert_close(g_dann[n], -g_mtl[n], rtol=0, atol=0)
    # the DC minimises its own loss in both systems: identical DC gradients
    for n in ("heads.dc.weight", "heads.dc.bias"):
        torch.testing.assert_close(g_dann[n], g_mtl[n], rtol=0, atol=0)
    # MTL's is the plain gradient: the same loss without any scale in between
    ref = LeeDANN(mtl.cfg, gamma=1.0)
    ref.load_state_dict(mtl.state_dict())
    ref.zero_grad()
    F.cross_entropy(ref.heads["dc"](ref.features(pooled=x)), y_dom).backward()
    for n in fe:
        torch.testing.assert_close(dict(ref.named_parameters())[n].grad, g_mtl[n], rtol=0, atol=0)
    # the emotion loss is untouched: DANN's extractor gets g_emo - g_dom, MTL's g_emo + g_dom
    g_emo = _grads(mtl, x, y_emo, y_dom, ["emo"])
    both_m, both_d = _grads(mtl, x, y_emo, y_dom, ["emo", "dom"]), _grads(dann, x, y_emo, y_dom, ["emo", "dom"])
    for n in fe:
        torch.testing.assert_close(both_m[n], g_emo[n] + g_mtl[n])
        torch.testing.assert_close(both_d[n], g_emo[n] - g_mtl[n])
    # forward is the identity: the same logits either way
    torch.testing.assert_close(mtl(pooled=x)["dom_logits"], dann(pooled=x)["dom_logits"], rtol=0, atol=0)


def test_vanilla_has_no_domain_classifier_and_bad_loss_configs_are_refused():
    assert not LeeLoss(gamma=0.0).uses_dc and LeeLoss(gamma=-1.0).uses_dc
    net = LeeDANN(LeeConfig(d_in=6, domain_classifier=LeeLoss().uses_dc))
    assert net.dc is None and "dom_logits" not in net(pooled=torch.zeros(2, 6))
    with pytest.raises(InputError, match="fake_domain 'XM' is not one of the domains"):
        LeeLoss(gamma=1.0, fake_domain="XM")
    with pytest.raises(InputError, match="gamma = \\+1"):
        LeeLoss(gamma=-1.0, fake_domain="JF")


# --------------------------------------------------------------------------- a tiny union corpus


@pytest.fixture(scope="module")
def union(tmp_path_factory):
    """48 utterances: corpus iemocap / jtes x gender F / M x 4 emotions; speakers S0..S5 (fold k tests
    S(k-1); no validation split, as the paper); manifest and fold file with sidecars."""
    root = tmp_path_factory.mktemp("lee")
    rng = np.random.default_rng(0)
    rows, folds = [], []
    for i in range(48):
        label, spk = CLASSES[i % 4], f"S{(i // 4) % 6}"
        corpus, gender = ("iemocap", "jtes")[(i // 2) % 2], "FM"[(i // 8) % 2]
        t = np.arange(int(rng.uniform(0.3, 0.6) * SR)) / SR
        f0 = {"neu": 150, "hap": 260, "ang": 200, "sad": 110}[label] * (1.3 if gender == "F" else 1.0)
        wav = root / f"u{i:02d}.wav"
        sf.write(wav, (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32), SR,
                 subtype="PCM_16")
        rows.append({"utt_id": f"u{i:02d}", "speaker": spk, "wav": str(wav), "label": label, "transcript": "x",
                     "corpus": corpus, "gender": gender})
        for k in range(1, 7):   # fold k tests speaker S(k-1): every utterance tested once
            folds.append({"utt_id": f"u{i:02d}", "fold": k, "split": "test" if spk == f"S{k - 1}" else "train"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(folds).to_csv(root / "folds.csv", index=False)
    for f in ("manifest.csv", "folds.csv"):
        write_provenance(root / f, rule="test_fixture", params={}, inputs={}, outputs=[str(root / f)],
                         started="2026-01-01T00:00:00Z")
    return root


def _train(union, hubert, out, *, seed=1, fold=1, parent=None, **train):
    cfg = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "selection": "last",
           "param_groups": {"heads.": {"lr": 1e-2}}, "finetune": {"audio": {"checkpoint": str(hubert)}}, **train}
    return TR.run_training(manifest_csv=str(union / "manifest.csv"), folds_csv=str(union / "folds.csv"), caches={},
                           fold=fold, seed=seed, classes=CLASSES, model="lee_dann", model_params={}, train=cfg,
                           out_dir=str(out), device="cpu", parent_model=parent)


def test_fake_domain_step2_starts_from_the_mtl_run_and_leaves_the_dc_unchanged(union, hubert, tmp_path,
                                                                               monkeypatch):
    parent = _train(union, hubert, tmp_path / "mtl", loss={"gamma": 1.0}, keep_model=True)
    p_rec = torch.load(tmp_path / "mtl/model.pt", weights_only=False)
    pred = pd.read_csv(tmp_path / "mtl/predictions.csv")
    assert {"corpus", "domain", "domain_pred"} <= set(pred.columns)          # every metric can be per corpus
    assert set(pred["corpus"]) == {"iemocap", "jtes"}
    # the step-2 targets: every utterance's domain is the fake one (JF), whatever its own
    import emorepro.models.lee_dann as L

    seen, real = [], L.lee_loss
    monkeypatch.setattr(L, "lee_loss", lambda out, batch: (seen.append(batch["domain"].clone()), real(out, batch))[1])
    fake = dict(loss={"gamma": 1.0, "fake_domain": "JF"}, init_from="lee2023/mc_mtl",
                parent=str(tmp_path / "mtl/model.pt"))
    child = _train(union, hubert, tmp_path / "jf", keep_model=True, **fake)
    assert seen and all((d == DOMAINS.index("JF")).all() for d in seen)
    # it started from every weight of the parent (heads in model.pt, the fine-tuned encoder beside it)
    assert child["init_from"]["parent_state_sha256"] == parent["model"]["state_sha256"]
    assert child["init_from"]["n_not_loaded"] == 0 and child["init_from"]["n_loaded"] >= len(p_rec["state_dict"])
    c_rec = torch.load(tmp_path / "jf/model.pt", weights_only=False)
    dc = [n for n in p_rec["state_dict"] if n.startswith("heads.dc.")]
    assert dc and all(torch.equal(c_rec["state_dict"][n], p_rec["state_dict"][n]) for n in dc)   # DC unchanged
    assert not torch.equal(c_rec["state_dict"]["heads.ec.weight"], p_rec["state_dict"]["heads.ec.weight"])
    from safetensors.torch import load_file

    enc_p = load_file(str(tmp_path / "mtl/encoder_audio/model.safetensors"))
    enc_c = load_file(str(tmp_path / "jf/encoder_audio/model.safetensors"))
    assert any(not torch.equal(enc_p[n], enc_c[n]) for n in enc_p)                  # the FE keeps training
    # with lr 0 the step-2 model is the parent's: its predictions are the parent's, byte for byte
    _train(union, hubert, tmp_path / "jf0", lr=0.0, param_groups={"heads.": {"lr": 0.0}}, epochs=1, **fake)
    assert (tmp_path / "jf0/predictions.csv").read_bytes() == (tmp_path / "mtl/predictions.csv").read_bytes()
    # step 2 without its parent is refused
    with pytest.raises(InputError, match="init_from"):
        _train(union, hubert, tmp_path / "x", loss={"gamma": 1.0, "fake_domain": "JF"})


def test_several_seeds_in_one_job_write_each_runs_own_files(union, hubert, tmp_path):
    """seeds_per_job: steps.train_seeds gives every seed its own run directory, files and sidecar, with the
    same predictions, byte for byte, as a job per seed."""
    kw = dict(manifest_csv=str(union / "manifest.csv"), folds_csv=str(union / "folds.csv"), caches={},
              classes=CLASSES, model="lee_dann", model_params={},
              train_params={"epochs": 1, "batch_size": 8, "lr": 1e-3, "selection": "last", "loss": {"gamma": -1.0},
                            "finetune": {"audio": {"checkpoint": str(hubert)}}},
              run_id={"paper": "lee2023", "variant": "mc_dann"})

    def outs(d):
        return {k: str(d / f) for k, f in (("predictions", "predictions.csv"), ("log_csv", "train_log.csv"),
                                           ("model", "model.pt"), ("provenance", "provenance.json"))}

    packed = [tmp_path / "packed" / f"seed{s}" for s in (1, 2)]
    steps.train_seeds(runs=[(2, 1), (2, 2)], outputs=[outs(d) for d in packed], parent_models=None, **kw)
    alone = tmp_path / "alone" / "seed2"
    steps.train(fold=2, seed=2, outputs=outs(alone), **kw)
    assert (packed[1] / "predictions.csv").read_bytes() == (alone / "predictions.csv").read_bytes()
    assert (packed[0] / "predictions.csv").read_bytes() != (packed[1] / "predictions.csv").read_bytes()
    for s, d in zip((1, 2), packed):
        side = json.loads((d / "provenance.json").read_text())
        assert side["seed"] == s and side["params"]["fold"] == 2
        assert {Path(o["path"]).name for o in side["outputs"]} >= {"predictions.csv", "train_log.csv", "model.pt"}
    a, b = (json.loads((d / "provenance.json").read_text())["params"] for d in (packed[1], alone))
    assert a == b
    with pytest.raises(ValueError, match="2 runs, 1 output sets"):
        steps.train_seeds(runs=[(2, 1), (2, 2)], outputs=[outs(packed[0])], parent_models=None, **kw)
    # folds_per_job: runs of other folds in the same process are those of jobs of their own too
    folds = [tmp_path / "folds" / f"fold{k}" for k in (1, 3)]
    steps.train_seeds(runs=[(1, 2), (3, 2)], outputs=[outs(d) for d in folds], parent_models=None, **kw)
    alone3 = tmp_path / "alone" / "fold3"
    steps.train(fold=3, seed=2, outputs=outs(alone3), **kw)
    assert (folds[1] / "predictions.csv").read_bytes() == (alone3 / "predictions.csv").read_bytes()
    assert json.loads((folds[0] / "provenance.json").read_text())["params"]["fold"] == 1


# --------------------------------------------------------------------------- pooled statistics (Tables 2-4)


def _write_pred(path: Path, rows: list[tuple], fold: int):
    """rows: (utt, corpus, label, logits); a predictions.csv with its sidecar, as a training run leaves it."""
    path.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame([{"utt_id": u, "fold": fold, "split": "test", "label": y, "pred": int(np.argmax(lg)), "corpus": c,
                        **{f"logit_{k}": float(v) for k, v in enumerate(lg)}} for u, c, y, lg in rows])
    df.to_csv(path / "predictions.csv", index=False)
    write_provenance(path / "predictions.csv", rule="train", params={}, inputs={},
                     outputs=[str(path / "predictions.csv")], started="2026-01-01T00:00:00Z")
    return path / "predictions.csv"


@pytest.fixture
def trials(tmp_path):
    """Two systems x 3 seeds x 3 folds of a union corpus's runs; folds differ in size, so pooling differs
    from averaging folds.  Returns (runs, predictions)."""
    rng = np.random.default_rng(3)
    runs, preds = {}, {}
    for variant, skill in (("mc_vanilla", 1.2), ("mc_mtl", 0.8)):
        for seed in (1, 2, 3):
            for fold, n in ((1, 12), (2, 30), (3, 18)):
                rows = []
                for j in range(n):
                    y = (j * 5 + fold) % 4
                    lg = rng.standard_normal(4)
                    lg[y] += skill * rng.uniform(0, 2)
                    rows.append((f"f{fold}_u{j:03d}", "jtes" if j % 3 == 0 else "iemocap", y, lg))
                d = tmp_path / "runs" / variant / f"fold{fold}" / f"seed{seed}"
                p = _write_pred(d, rows, fold)
                steps.score(str(p), str(d / "metrics.json"), classes=CLASSES, fold=fold, seed=seed)
                runs.setdefault(variant, []).append(T.RunRef(str(d / "metrics.json"), fold, seed, f"lee2023/{variant}"))
                preds[(variant, seed, fold)] = p
    return runs, preds


def _pooled_uar(preds, variant, seed, corpus):
    from sklearn.metrics import balanced_accuracy_score

    df = pd.concat(pd.read_csv(preds[(variant, seed, f)]) for f in (1, 2, 3))
    df = df[df["corpus"] == corpus]
    return 100 * balanced_accuracy_score(df["label"], df["pred"])


STAT_COLUMNS = [{"name": "Mean", "metric": "uar", "stat": "mean"}, {"name": "Stdev", "metric": "uar", "stat": "std"},
                {"name": "Max", "metric": "uar", "stat": "max"}, {"name": "Min", "metric": "uar", "stat": "min"}]


def test_pooled_seed_stats_equal_a_hand_computation(trials):
    runs, preds = trials
    spec = {"name": "t", "aggregate": "pooled_seed_stats", "scale": 100, "classes": CLASSES,
            "columns": STAT_COLUMNS,
            "rows": [{"name": "IEMOCAP: Vanilla", "experiment": "lee2023/mc_vanilla",
                      "metric_scope": "by_corpus.iemocap", "reported": {"Mean": 73.47}}]}
    df = T.build_table(spec, {"IEMOCAP: Vanilla": runs["mc_vanilla"]})
    got = dict(zip(df["column"].astype(str), df["ours_mean"]))
    per_seed = np.array([_pooled_uar(preds, "mc_vanilla", s, "iemocap") for s in (1, 2, 3)])
    hand = {"Mean": per_seed.mean(), "Stdev": per_seed.std(ddof=1), "Max": per_seed.max(), "Min": per_seed.min()}
    for k, v in hand.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
    # pooling is not the fold mean on these folds of unequal size (the test could not tell them apart otherwise)
    fold_mean = np.mean([[json.loads(Path(r.metrics).read_text())["by_corpus"]["iemocap"]["uar"] * 100
                          for r in runs["mc_vanilla"] if r.seed == s] for s in (1, 2, 3)], axis=1)
    assert abs(fold_mean.mean() - hand["Mean"]) > 0.1
    assert (df["n_seeds"] == 3).all() and (df["n_runs"] == 9).all()
    assert df.loc[df["column"] == "Mean", "diff"].item() == pytest.approx(hand["Mean"] - 73.47)
    # the whole test split (both corpora) when the row has no metric_scope
    spec["rows"][0]["metric_scope"] = None
    df = T.build_table(spec, {"IEMOCAP: Vanilla": runs["mc_vanilla"]})
    from sklearn.metrics import balanced_accuracy_score

    allc = [100 * balanced_accuracy_score(*pd.concat(pd.read_csv(preds[("mc_vanilla", s, f)]) for f in (1, 2, 3))
                                          [["label", "pred"]].to_numpy().T) for s in (1, 2, 3)]
    assert df.loc[df["column"] == "Max", "ours_mean"].item() == pytest.approx(max(allc))
    spec["columns"] = [{"name": "Mean", "metric": "uar", "stat": "median"}]
    with pytest.raises(InputError, match=r"columns\['Mean'\]\.stat: 'median'"):
        T.build_table(spec, {"IEMOCAP: Vanilla": runs["mc_vanilla"]})


def test_fusion_cells_read_the_fusion_output_down_to_the_trials(trials, tmp_path):
    runs, preds = trials
    tri = {f"{v}/seed{s}": [str(Path(preds[(v, s, f)]).parent) for f in (1, 2, 3)]
           for v in ("mc_vanilla", "mc_mtl") for s in (1, 2, 3)}
    out = tmp_path / "fusion"
    out.mkdir()
    steps.fusion(tri, ks="all", honest_ks=[2], out_csv=str(out / "s.csv"), out_json=str(out / "s.json"),
                 corpus="iemocap", name="s", heuristics=[])
    ref = {"s": T.FusionRef("s", str(out / "s.csv"), str(out / "s.json"))}
    spec = {"name": "t6", "aggregate": "pooled_seed_stats", "scale": 100, "classes": CLASSES,
            "columns": [{"name": "UAR", "metric": "uar", "fusion": {}}, {"name": "k", "metric": "k", "scale": 1,
                                                                          "fusion": {}},
                        {"name": "Vanilla", "metric": "count.mc_vanilla", "scale": 1, "fusion": {}},
                        {"name": "MTL", "metric": "count.mc_mtl", "scale": 1, "fusion": {}}],
            "rows": [{"name": "cited", "cited": "Someone 2022", "reported": {"UAR": 70.0}},
                     {"name": "best k=3", "fusion": {"set": "s", "method": "exact", "k": 3}},
                     {"name": "best", "fusion": {"set": "s", "method": "exact"}},
                     {"name": "full", "fusion": {"set": "s", "method": "full", "k": 6}},
                     {"name": "crossfold", "fusion": {"set": "s", "method": "crossfold", "k": 2}}]}
    df = T.build_table(spec, {}, fusion=ref).set_index(["row", "column"])
    doc = json.loads((out / "s.json").read_text())
    k3 = next(r for r in doc["rows"] if r["method"] == "exact" and r["k"] == 3)
    assert df.loc[("best k=3", "UAR"), "ours_mean"] == pytest.approx(100 * k3["uar"])
    names = k3["subset"].split("+")
    assert df.loc[("best k=3", "Vanilla"), "ours_mean"] == sum(n.startswith("mc_vanilla/") for n in names)
    assert df.loc[("best k=3", "MTL"), "ours_mean"] + df.loc[("best k=3", "Vanilla"), "ours_mean"] == 3
    best = max((r for r in doc["rows"] if r["method"] == "exact"), key=lambda r: (r["uar"], -r["k"]))
    assert df.loc[("best", "UAR"), "ours_mean"] == pytest.approx(100 * best["uar"])
    assert df.loc[("best", "k"), "ours_mean"] == best["k"]
    # the full integration by hand: the sum of the six trials' logits on the IEMOCAP test utterances
    from sklearn.metrics import balanced_accuracy_score

    frames = [pd.concat(pd.read_csv(f"{d}/predictions.csv") for d in tri[t]) for t in tri]
    keep = frames[0]["corpus"].to_numpy() == "iemocap"
    logits = sum(f[[f"logit_{c}" for c in range(4)]].to_numpy() for f in frames)[keep]
    hand = 100 * balanced_accuracy_score(frames[0]["label"].to_numpy()[keep], logits.argmax(1))
    assert df.loc[("full", "UAR"), "ours_mean"] == pytest.approx(hand)
    assert np.isnan(df.loc[("crossfold", "Vanilla"), "ours_mean"])     # a composition per fold: not one number
    assert np.isnan(df.loc[("cited", "UAR"), "ours_mean"]) and df.loc[("cited", "UAR"), "paper"] == 70.0
    # provenance: the cell names the fusion output and every fused trial's prediction files
    cells = df.loc[("best k=3", "UAR"), "_cells"]
    assert cells[0]["metrics"] == str(out / "s.csv")
    assert {c["metrics"] for c in cells[1:]} == {f"{d}/predictions.csv" for t in names for d in tri[t]}
    # a tampered fusion output is refused
    (out / "s.json").write_text((out / "s.json").read_text().replace('"uar"', '"uar" ', 1))
    with pytest.raises(InputError, match="differs from its sidecar"):
        T.build_table(spec, {}, fusion=ref)
    spec["rows"][1]["fusion"]["k"] = 9
    with pytest.raises(InputError):
        T.build_table(spec, {}, fusion=ref, verify_hashes=False)


# --------------------------------------------------------------------------- intermediate concatenation (Table 5)


def _emb_runs(tmp_path, n_trials=3, seed=0):
    """Trials x 2 folds of embeddings.npz (train and test ids) + a union manifest."""
    rng = np.random.default_rng(seed)
    utts = [f"u{i:03d}" for i in range(80)]
    labels = [CLASSES[i % 4] for i in range(80)]
    corpus = ["jtes" if i % 5 == 0 else "iemocap" for i in range(80)]
    pd.DataFrame({"utt_id": utts, "label": labels, "corpus": corpus}).to_csv(tmp_path / "manifest.csv", index=False)
    write_provenance(tmp_path / "manifest.csv", rule="test_fixture", params={}, inputs={},
                     outputs=[str(tmp_path / "manifest.csv")], started="2026-01-01T00:00:00Z")
    trials = {}
    for t in range(n_trials):
        runs = []
        for fold in (1, 2):
            test = [u for i, u in enumerate(utts) if i % 2 == fold - 1]
            train = [u for u in utts if u not in test]
            emb = {s: np.stack([np.eye(4)[CLASSES.index(labels[utts.index(u)])] * 0.6 + rng.standard_normal(4)
                                for u in ids]).astype(np.float32) for s, ids in (("train", train), ("test", test))}
            d = tmp_path / f"t{t}" / f"fold{fold}"
            d.mkdir(parents=True)
            np.savez(d / "embeddings.npz", train_ids=np.array(train), train_embedding=emb["train"],
                     test_ids=np.array(test), test_embedding=emb["test"])
            runs.append(str(d))
        trials[f"mc_vanilla/seed{t + 1}"] = runs
    return trials


def test_intermediate_concatenation_fits_on_training_utterances_only(tmp_path, monkeypatch):
    from emorepro.fusion import intermediate as I

    trials = _emb_runs(tmp_path)
    fits = []
    real = I.fit_intermediate
    monkeypatch.setattr(I, "fit_intermediate", lambda x, y, o: (fits.append((x.copy(), y.copy())), real(x, y, o))[1])
    doc = I.run_intermediate(trials, str(tmp_path / "manifest.csv"), CLASSES, tmp_path / "i.csv", tmp_path / "i.json",
                             corpus="iemocap", options=I.IntermediateOptions(C=0.1), verify=False)
    m = pd.read_csv(tmp_path / "manifest.csv").set_index("utt_id")
    # by hand: per fold, the concatenated training embeddings -> scaler + logistic regression -> test utterances
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    y_all, p_all = [], []
    for k in range(2):
        zs = [np.load(Path(trials[t][k]) / "embeddings.npz") for t in trials]
        xtr = np.concatenate([z["train_embedding"] for z in zs], 1)
        ytr = [CLASSES.index(c) for c in m.loc[zs[0]["train_ids"], "label"]]
        np.testing.assert_array_equal(fits[k][0], xtr)          # every training utterance of both corpora, no test one
        sc = StandardScaler().fit(xtr)
        clf = LogisticRegression(C=0.1, max_iter=1000).fit(sc.transform(xtr), ytr)
        te = m.loc[zs[0]["test_ids"], "corpus"].to_numpy() == "iemocap"
        xte = np.concatenate([z["test_embedding"] for z in zs], 1)[te]
        p_all += clf.predict(sc.transform(xte)).tolist()
        y_all += [CLASSES.index(c) for c in m.loc[zs[0]["test_ids"][te], "label"]]
    assert doc["rows"][0]["uar"] == pytest.approx(balanced_accuracy_score(y_all, p_all))
    assert doc["n_utts"] == 64 and doc["rows"][0]["k"] == 3 and doc["rows"][0]["method"] == "intermediate"
    assert set(doc["predictions"]["utt_id"]) == {u for u in m.index if m.loc[u, "corpus"] == "iemocap"}
    # train_corpus restricts the fit to one corpus's training utterances
    fits.clear()
    I.run_intermediate(trials, str(tmp_path / "manifest.csv"), CLASSES, tmp_path / "j.csv", tmp_path / "j.json",
                       corpus="iemocap", options=I.IntermediateOptions(train_corpus="jtes"), verify=False)
    assert all(len(x) == 8 for x, _ in fits)
    # trials whose utterances differ are refused, naming the file
    z = dict(np.load(Path(trials["mc_vanilla/seed2"][0]) / "embeddings.npz"))
    z["test_ids"] = z["test_ids"][::-1]
    np.savez(Path(trials["mc_vanilla/seed2"][0]) / "embeddings.npz", **z)
    with pytest.raises(InputError, match=r"t1/fold1/embeddings.npz: trial 'mc_vanilla/seed2': test utterances differ"):
        I.run_intermediate(trials, str(tmp_path / "manifest.csv"), CLASSES, tmp_path / "x.csv", tmp_path / "x.json",
                           verify=False)
    assert not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------- Fig. 4


def test_fig4_is_the_fusion_rows_confusion_in_the_papers_class_order(trials, tmp_path):
    runs, preds = trials
    tri = {f"mc_vanilla/seed{s}": [str(Path(preds[("mc_vanilla", s, f)]).parent) for f in (1, 2, 3)] for s in (1, 2, 3)}
    steps.fusion(tri, ks="all", honest_ks=[], out_csv=str(tmp_path / "f.csv"), out_json=str(tmp_path / "f.json"),
                 corpus="iemocap", heuristics=[])
    order = ["ang", "hap", "neu", "sad"]
    paper = {"ang": [82.77, 6.35, 9.79, 1.09], "hap": [3.61, 77.14, 15.22, 4.03],
             "neu": [3.51, 12.18, 72.72, 11.59], "sad": [1.75, 4.80, 12.27, 81.18]}
    out = {k: str(tmp_path / f"fig4.{k}") for k in ("pdf", "png", "tex", "csv")}
    steps.fusion_confusion(str(tmp_path / "f.csv"), str(tmp_path / "f.json"), classes=CLASSES, order=order,
                           method="exact", k=None, title="Fig. 4", reported=paper, **out)
    doc = json.loads((tmp_path / "f.json").read_text())
    best = max((r for r in doc["rows"] if r["method"] == "exact"), key=lambda r: (r["uar"], -r["k"]))
    cm = np.asarray(best["confusion"])                      # rows/cols in CLASSES order (neu, hap, ang, sad)
    idx = [CLASSES.index(c) for c in order]
    fig = pd.read_csv(out["csv"], index_col=0)
    assert list(fig.index) == order and Path(out["pdf"]).stat().st_size > 0
    np.testing.assert_array_equal(fig[order].to_numpy(), cm[np.ix_(idx, idx)])
    np.testing.assert_allclose(fig[[f"paper_{c}_percent" for c in order]].to_numpy(), [paper[c] for c in order])
    side = json.loads(Path(out["pdf"] + ".prov.json").read_text())
    assert side["params"]["selected"]["k"] == best["k"] and side["params"]["order"] == order
    with pytest.raises(InputError, match="must list each of"):
        steps.fusion_confusion(str(tmp_path / "f.csv"), str(tmp_path / "f.json"), classes=CLASSES,
                               order=["ang", "hap", "neu"], method="exact", k=None, title="x", **out)


# --------------------------------------------------------------------------- the workflow's plan


def test_demo_plans_lees_grid_from_training_runs_to_tables_and_fig4(tmp_path):
    """The demo's plan for Lee et al.: 9 packed training jobs, one per system (each writing the own run
    directories of its 5 folds x seeds), 19 fusion searches, 3 intermediate concatenations, Fig. 4 and Tables 1-6."""
    import re

    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    r = run_snakemake(wd, "-n", "--configfile", "config/demo.yaml", "--config", "papers=[lee2023]")
    out = r.stdout + r.stderr
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("Reasons")[0], re.M))
    packed = {k: int(v) for k, v in stats.items() if k.startswith("train_lee2023_")}
    assert sum(packed.values()) == 9 and "train" not in stats           # every run trained in a packed job
    assert int(stats["fusion"]) == 19 and int(stats["intermediate_fusion"]) == 3
    assert int(stats["fusion_confusion"]) == 1 and int(stats["table"]) == 5 and int(stats["corpus_table"]) == 1
    # the 30-trial set fuses 30 trials: 3 systems x 10 seeds x 5 folds of predictions
    m = re.search(r"rule fusion:\n\s+input: ([^\n]+)\n\s+output: results/fusion/lee2023_30\.csv", out)
    assert m and len(m.group(1).split(", ")) == 150
    # step 2 waits for its MTL parents: a packed fake-domain job reads the model.pt of each of its 5 x 3 runs
    m = re.search(r"rule train_lee2023_fake_jf_folds1_5_seeds1_3:\n\s+input: ([^\n]+)\n\s+output: ([^\n]+)", out)
    parents = [x for x in m.group(1).split(", ") if "mc_mtl/member_folds/fold" in x and x.endswith("model.pt")]
    assert len(parents) == 15 and {f"fold{k}/seed{s}" for k in range(1, 6) for s in (1, 2, 3)} == {
        "/".join(x.split("/")[-3:-1]) for x in parents}
    provs = [x.split(" ")[0] for x in m.group(2).split(", ") if x.split(" ")[0].endswith("provenance.json")]
    assert len(provs) == 15
    # run i of the job (its i-th output set) starts from parent i: the same fold and seed, in the same order
    assert ["/".join(x.split("/")[-3:-1]) for x in parents] == ["/".join(x.split("/")[-3:-1]) for x in provs]


def test_ks_full_is_full_integration_whatever_the_number_of_trials():
    from emorepro.fusion.budget import normalise_ks

    assert normalise_ks("full", 40) == [40] and normalise_ks("full", 70) == [70] and normalise_ks("all", 3) == [1, 2, 3]
