"""GMP-ATL (Pan et al., issue 18): AM-softmax, frame-label alignment, span masking, k-means on training audio
only, and the stage chain of one fold (stage 1 -> pseudo-labels -> stage 2 -> stage 3) on real (synthetic) wavs
through the real steps (emorepro.steps.train / pseudo_labels) and a tiny random-init HuBERT with 8 layers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

sf = pytest.importorskip("soundfile")
pytest.importorskip("transformers")

from emorepro.frame_labels import read_frame_labels, write_frame_labels
from emorepro.io import InputError
from emorepro.models.gmp_atl import AMSoftmaxHead, GmpRetrainData, am_softmax_loss

CLASSES = ["neu", "hap", "ang", "sad"]
SR = 16_000
HUBERT8 = {"num_hidden_layers": 8, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
           "conv_dim": [16] * 7}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hubert8(tmp_path_factory):
    """A tiny random-init HuBERT of the base layout with 8 transformer layers (as the demo's hubert_base)."""
    from emorepro.encoders.demo import make_demo_checkpoint

    d = tmp_path_factory.mktemp("ckpt") / "hubert8"
    make_demo_checkpoint("hubert", str(d), seed=0, config_overrides=HUBERT8)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """30 utterances of odd sample counts (5 speakers S0..S4, 6 each, speaker gender F/M alternating); fold k
    tests speaker S{k-1} (leave-one-speaker-out, no validation split); manifest and folds with sidecars."""
    from emorepro.provenance import now, write_provenance

    root = tmp_path_factory.mktemp("gmp")
    rng = np.random.default_rng(0)
    rows, folds = [], []
    for i in range(30):
        label, spk = CLASSES[i % 4], i % 5
        n = 2 * int(rng.integers(3000, 9000)) + 1                    # odd lengths: 0.4 - 1.1 s
        t = np.arange(n) / SR
        f0 = {"neu": 150, "hap": 260, "ang": 200, "sad": 110}[label]
        wav = root / f"u{i:02d}.wav"
        sf.write(wav, (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(n)).astype(np.float32), SR,
                 subtype="PCM_16")
        rows.append({"utt_id": f"u{i:02d}", "speaker": f"S{spk}", "gender": "FM"[spk % 2], "wav": str(wav),
                     "label": label, "transcript": "x", "duration": n / SR})
        for k in range(1, 6):
            folds.append({"utt_id": f"u{i:02d}", "fold": k, "split": "test" if spk == k - 1 else "train"})
    started = now()
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(folds).to_csv(root / "folds.csv", index=False)
    for f in ("manifest.csv", "folds.csv"):
        write_provenance(root / f, rule="test", params={}, inputs=None, outputs=[root / f], started=started)
    return root


def _train(root, out: Path, *, model, model_params, fold=1, seed=1, parent=None, extra=None, **train):
    from emorepro.steps import train as train_step

    cfg = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "selection": "last", **train}
    train_step(manifest_csv=str(root / "manifest.csv"), folds_csv=str(root / "folds.csv"), caches={},
               outputs={"predictions": str(out / "predictions.csv"), "log_csv": str(out / "train_log.csv"),
                        "model": str(out / "model.pt"), "provenance": str(out / "provenance.json")},
               fold=fold, seed=seed, classes=CLASSES, model=model, model_params=model_params, train_params=cfg,
               run_id={"paper": "pan2024", "variant": out.name}, parent_model=parent, extra_inputs=extra)
    return json.loads((out / "provenance.json").read_text())["summary"]


def _stage1(data, hubert8, out, fold=1, **kw):
    return _train(data, out, model="gmp_atl", fold=fold, keep_model=True, loss={"alpha_e": 0.9},
                  model_params={"head": "ce", "gender_head": True, "d_lstm": 8, "d_proj_hidden": 8, "d_proj": 8},
                  finetune={"audio": {"checkpoint": str(hubert8), "layers": [-1], "do_normalize": False,
                                      "train_max_seconds": 0.5}}, **kw)


def _labels(data, stage1_dir: Path, out, *, fold=1, layers=(-3,), ks=(4, 8)):
    from emorepro.steps import pseudo_labels

    outs = [str(out)] if isinstance(out, Path) else [str(o) for o in out]
    return pseudo_labels(str(stage1_dir / "model.pt"), str(data / "manifest.csv"), str(data / "folds.csv"), outs,
                         name="g", fold=fold, seed=1, layers=list(layers), role="audio", ks=list(ks),
                         kmeans={"batch_size": 256, "n_init": 1, "max_iter": 5, "max_no_improvement": 5})


def _retrain(data, hubert8, out, parent: Path, labels: Path, fold=1, **kw):
    return _train(data, out, model="gmp_atl_retrain", fold=fold, parent=str(parent / "model.pt"),
                  extra={"pseudo_labels": str(labels)}, init_from="pan2024/stage1", init_modules=["encoder."],
                  keep_model=True, model_params={"d_proj_hidden": 8, "d_proj": 8},
                  data={"mask_prob": 0.08, "mask_length": 10, "crop_seconds": 0.5},
                  finetune={"audio": {"checkpoint": str(hubert8), "layers": [-1], "do_normalize": False}}, **kw)


# --------------------------------------------------------------------------- AM-softmax


def test_am_softmax_is_cross_entropy_on_cosines_when_m0_s1():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    head = AMSoftmaxHead(5, 4)
    head.weight.data.copy_(w)
    cos = head(x)
    # the head's cosines are the normalised logits: x^T w_j / (|x| |w_j|), written independently here
    manual = torch.stack([torch.stack([x[i] @ w[j] / (x[i].norm() * w[j].norm()) for j in range(4)]) for i in range(7)])
    torch.testing.assert_close(cos, manual)
    assert cos.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(am_softmax_loss(cos, y, s=1.0, m=0.0), F.cross_entropy(manual, y))
    # the margin lowers the target's logit only: the loss grows with m
    assert am_softmax_loss(cos, y, s=1.0, m=0.2) > am_softmax_loss(cos, y, s=1.0, m=0.0)


def test_am_softmax_matches_a_hand_computation():
    # one sample, three classes, target 1: L = -log(e^{s(c1-m)} / (e^{s(c1-m)} + e^{s c0} + e^{s c2}))
    cos = torch.tensor([[0.1, 0.5, -0.3]], dtype=torch.float64)
    s, m = 30.0, 0.2
    num = math.exp(s * (0.5 - m))
    hand = -math.log(num / (num + math.exp(s * 0.1) + math.exp(s * -0.3)))   # = -log(e^9 / (e^9 + e^3 + e^-9))
    assert am_softmax_loss(cos, torch.tensor([1]), s=s, m=m).item() == pytest.approx(hand, rel=1e-12)
    # two samples: the batch mean
    cos2 = torch.tensor([[0.1, 0.5, -0.3], [0.9, 0.0, 0.2]], dtype=torch.float64)
    n2 = math.exp(s * (0.9 - m))
    hand2 = -math.log(n2 / (n2 + math.exp(0.0) + math.exp(s * 0.2)))
    got = am_softmax_loss(cos2, torch.tensor([1, 0]), s=s, m=m).item()
    assert got == pytest.approx((hand + hand2) / 2, rel=1e-12)


# --------------------------------------------------------------------------- frame alignment and masking


def _encoder(hubert8, **opts):
    from emorepro.encoders.finetune import load_finetune_encoder

    return load_finetune_encoder("audio", {"checkpoint": str(hubert8), "layers": [-3], "do_normalize": False, **opts},
                                 seed=0).eval()


@pytest.mark.parametrize("n", [401, 4799, 16_001])
def test_frame_labels_align_with_hubert_frames_for_odd_lengths(hubert8, tmp_path, n):
    from emorepro.pseudo_labels import encode_frames

    enc = _encoder(hubert8)
    wav = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    with torch.no_grad():
        cnn = enc.model.feature_extractor(torch.from_numpy(wav)[None])       # (1, C, T): the frames HuBERT makes
    T = cnn.shape[-1]
    assert T == int(enc.frame_lengths(torch.tensor([n]))[0]) == (n - 400) // 320 + 1
    (X,), lengths, hop, n_hidden = encode_frames(str(hubert8), lambda u: wav, ["u"], layers=[-3],
                                                 options={"do_normalize": False})
    assert lengths.tolist() == [T] and X.shape == (T, 32) and hop == 320 and n_hidden == 9
    # several layers in one pass: each equals its own pass
    (X3, X1), lengths2, _, _ = encode_frames(str(hubert8), lambda u: wav, ["u"], layers=[-3, -1],
                                             options={"do_normalize": False})
    assert lengths2.tolist() == [T] and np.array_equal(X3, X) and not np.allclose(X1, X)
    # a label file stores one label per frame; its reader gives them back per utterance
    lab = np.arange(T) % 4
    write_frame_labels(tmp_path / "l.npz", ["u", "v"], [T, 3], {4: np.concatenate([lab, [1, 2, 3]])}, fold=1, seed=1,
                       layer=-3, hop_samples=hop, source_state_sha256="x")
    r = read_frame_labels(tmp_path / "l.npz")
    assert r.of("u").tolist() == [lab.tolist()] and r.n_frames("v") == 3
    # a crop starting at frame f0 (sample f0 * hop) covers exactly the samples of the whole clip's frames
    # f0 ... f0 + n_crop - 1, so the retraining stage cuts the labels at f0 (the CNN has no padding).  Shown on the
    # CNN with per-frame (layer) norm, which is shift-equivariant; HuBERT-base's group norm of the first conv layer
    # normalises over the clip, which changes the values, not the grid.
    if n < 4000:
        return
    from emorepro.encoders.demo import make_demo_checkpoint

    make_demo_checkpoint("hubert", str(tmp_path / "ln"), seed=0, config_overrides={**HUBERT8, "feat_extract_norm": "layer"})
    enc = _encoder(tmp_path / "ln")
    with torch.no_grad():
        cnn = enc.model.feature_extractor(torch.from_numpy(wav)[None])
    for f0 in (0, 1, T // 3):
        crop = wav[f0 * hop: f0 * hop + 4001]
        if len(crop) < 400:                                 # shorter than one frame: the recipe never crops so
            continue
        with torch.no_grad():
            c = enc.model.feature_extractor(torch.from_numpy(np.ascontiguousarray(crop))[None])
        k = c.shape[-1]
        assert k == int(enc.frame_lengths(torch.tensor([len(crop)]))[0])
        torch.testing.assert_close(c, cnn[..., f0:f0 + k], atol=1e-5, rtol=1e-4)


def test_frame_label_files_refuse_misfit_labels(tmp_path):
    with pytest.raises(ValueError, match="must be 5 values"):
        write_frame_labels(tmp_path / "x.npz", ["a"], [5], {4: np.zeros(4, int)}, fold=1, seed=1, layer=-1,
                           hop_samples=320, source_state_sha256="x")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        write_frame_labels(tmp_path / "x.npz", ["a"], [2], {4: np.array([0, 4])}, fold=1, seed=1, layer=-1,
                           hop_samples=320, source_state_sha256="x")
    (tmp_path / "bad.npz").write_bytes(b"not a file")
    with pytest.raises(InputError, match="bad.npz"):
        read_frame_labels(tmp_path / "bad.npz")
    assert not (tmp_path / "x.npz").exists()


def test_span_mask_covers_the_configured_fraction(hubert8):
    enc = _encoder(hubert8)
    d = GmpRetrainData()                                   # HuBERT's p = 0.08 span starts, spans of 10 frames
    B, T = 400, 300
    lens = torch.tensor([T if i % 2 else T - 100 for i in range(B)])
    frame_mask = torch.arange(T)[None, :] < lens[:, None]
    np.random.seed(0)
    m = enc.span_mask(frame_mask, mask_prob=d.mask_prob * d.mask_length, mask_length=d.mask_length,
                      min_masks=d.min_masks)
    assert not (m & ~frame_mask).any()                     # padding is never masked
    for L in (T, T - 100):
        rows = m[lens == L].double()
        # distinct span starts, n = round(p L) of the L - 9 possible ones; a frame j stays unmasked iff none of the
        # starts j-9 .. j is drawn: P = C(N - w, n) / C(N, n) with w of those starts possible
        N, n = L - d.mask_length + 1, int(d.mask_prob * L + 0.5)
        cover = [min(j, N - 1) - max(0, j - d.mask_length + 1) + 1 for j in range(L)]   # starts covering frame j
        expected = np.mean([1 - math.comb(N - w, n) / math.comb(N, n) for w in cover])
        got = rows[:, :L].mean().item()
        assert got == pytest.approx(expected, abs=0.02), (L, got, expected)
        assert 0.5 < got < 0.6                             # about 1 - (1 - 0.08)^10 = 57 % of the frames


# --------------------------------------------------------------------------- k-means: training audio only


def test_kmeans_never_sees_test_session_audio(data, hubert8, tmp_path, monkeypatch):
    import emorepro.audio as A
    import emorepro.pseudo_labels as PL

    _stage1(data, hubert8, tmp_path / "s1")
    manifest = pd.read_csv(data / "manifest.csv")
    folds = pd.read_csv(data / "folds.csv").query("fold == 1")
    train_ids = set(folds.loc[folds["split"] == "train", "utt_id"])
    wav_of = dict(zip(manifest["wav"], manifest["utt_id"]))
    read, fitted = [], []
    real_read, real_fit = A.read_wav, PL.fit_kmeans
    monkeypatch.setattr(A, "read_wav", lambda p, *a, **k: (read.append(wav_of[str(p)]), real_read(p, *a, **k))[1])
    monkeypatch.setattr(PL, "fit_kmeans", lambda X, k, **kw: (fitted.append(len(X)), real_fit(X, k, **kw))[1])
    (infos,) = _labels(data, tmp_path / "s1", tmp_path / "l.npz")
    assert read and set(read) == train_ids                 # every training clip, nothing of the test session
    lab = read_frame_labels(tmp_path / "l.npz")
    assert set(lab.utt_ids.tolist()) == train_ids and lab.meta["fold"] == 1 and lab.ks == [4, 8]
    assert fitted == [int(lab.offsets[-1])] * 2 == [i["n_frames"] for i in infos]
    from emorepro.provenance import check_against_sidecar

    rec = check_against_sidecar(tmp_path / "l.npz")          # the sidecar says what the fit saw
    assert rec["split"] == "train" and rec["frames"]["n_utterances"] == len(train_ids)
    # one job for several layers (group_layers) writes each layer's file as its own job would
    read.clear()
    _labels(data, tmp_path / "s1", [tmp_path / "g-1.npz", tmp_path / "g-3.npz"], layers=(-1, -3))
    assert set(read) == train_ids
    g = read_frame_labels(tmp_path / "g-3.npz")
    assert all(np.array_equal(g.labels[k], lab.labels[k]) for k in (4, 8))
    assert read_frame_labels(tmp_path / "g-1.npz").meta["layer"] == -1
    assert check_against_sidecar(tmp_path / "g-1.npz")["params"]["layer"] == -1


# --------------------------------------------------------------------------- the stage chain of a fold


def test_stage_chain_of_a_fold_loads_that_folds_parents(data, hubert8, tmp_path):
    s1 = _stage1(data, hubert8, tmp_path / "s1_f1")
    _stage1(data, hubert8, tmp_path / "s1_f2", fold=2)
    _labels(data, tmp_path / "s1_f1", tmp_path / "l_f1.npz")
    _labels(data, tmp_path / "s1_f2", tmp_path / "l_f2.npz", fold=2)
    # stage 2 of fold 1 starts from stage 1 of fold 1: lr 0 keeps the encoder, so the kept encoder is the parent's
    s2 = _retrain(data, hubert8, tmp_path / "s2_f1", tmp_path / "s1_f1", tmp_path / "l_f1.npz", lr=0.0)
    assert s2["init_from"]["parent_state_sha256"] == s1["model"]["state_sha256"]
    assert s2["init_from"]["n_not_loaded"] == 0 or s2["init_from"]["n_loaded"] > 0
    a = (tmp_path / "s1_f1/encoder_audio/model.safetensors").read_bytes()
    b = (tmp_path / "s2_f1/encoder_audio/model.safetensors").read_bytes()
    from safetensors.torch import load

    pa, pb = load(a), load(b)
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    pred = pd.read_csv(tmp_path / "s2_f1/predictions.csv")
    assert "pred" not in pred.columns and (pred["n_frames"] > 0).all()     # stage 2 predicts no emotion
    # another fold's parent or labels are refused
    with pytest.raises(InputError, match="same fold and seed"):
        _retrain(data, hubert8, tmp_path / "x1", tmp_path / "s1_f2", tmp_path / "l_f1.npz")
    with pytest.raises(InputError, match="fold 2"):
        _retrain(data, hubert8, tmp_path / "x2", tmp_path / "s1_f1", tmp_path / "l_f2.npz")
    # stage 3 (AM-softmax) of fold 1 from stage 2 of fold 1; its logits are s cos (|logit| <= s)
    s3 = _train(data, tmp_path / "s3_f1", model="gmp_atl", parent=str(tmp_path / "s2_f1/model.pt"),
                init_from="pan2024/retrain_l3", init_modules=["encoder."],
                model_params={"head": "ams", "ams_s": 30.0, "ams_m": 0.2, "d_lstm": 8, "d_proj_hidden": 8,
                              "d_proj": 8},
                finetune={"audio": {"checkpoint": str(hubert8), "layers": [-1], "do_normalize": False}})
    assert s3["init_from"]["parent_state_sha256"] == s2["model"]["state_sha256"]
    logits = pd.read_csv(tmp_path / "s3_f1/predictions.csv").filter(like="logit_").to_numpy()
    assert logits.shape[1] == 4 and np.abs(logits).max() <= 30.0 + 1e-4


def test_workflow_chains_stages_within_one_fold_and_seed(tmp_path):
    """The demo config's DAG: the Table 4 cell's stage-3 run of fold 2 reads stage 2 of fold 2, which reads the
    pseudo-labels of fold 2 seed 1, which read stage 1 of fold 2 (the workflow's own input functions)."""
    import re

    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    run_dir = "results/runs/pan2024/{}/loso5/fold2/seed1"
    out = run_snakemake(wd, "-n", f"{run_dir.format('gmp_ams_l3')}/predictions.csv", "--configfile",
                        "config/demo.yaml").stdout
    jobs = {}
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        o = re.search(r"^\s+output: (.*)$", block, re.MULTILINE)
        i = re.search(r"^\s+input: (.*)$", block, re.MULTILINE)
        if m and o:
            for path in o.group(1).split(", "):
                jobs[path.split(" ")[0]] = (m.group(1), set((i.group(1) if i else "").split(", ")))
    chain = {"stage3": f"{run_dir.format('gmp_ams_l3')}/predictions.csv",
             "stage2": f"{run_dir.format('retrain_l3')}/predictions.csv",
             "labels": "results/pseudo_labels/pan2024_gmp/fold2/seed1/layer-3.npz",
             "stage1": f"{run_dir.format('stage1')}/predictions.csv"}
    # stage 3 (demo: folds_per_job 5) trains the five folds of seed 1 in one job, each run from its own fold's
    # stage 2; stage 2 reads frame labels, so it stays one job per run
    stage3_rule, stage3_in = jobs[chain["stage3"]]
    assert stage3_rule == "train_pan2024_gmp_ams_l3_folds1_5_seeds1_1"
    parents = {x for x in stage3_in if x.endswith("model.pt")}
    assert parents == {f"results/runs/pan2024/retrain_l3/loso5/fold{k}/seed1/model.pt" for k in range(1, 6)}
    assert jobs[chain["stage2"]][0] == "train"
    assert {f"{run_dir.format('stage1')}/model.pt", chain["labels"]} <= jobs[chain["stage2"]][1]
    assert jobs[chain["labels"]][0] == "pseudo_labels_pan2024_gmp"
    assert f"{run_dir.format('stage1')}/model.pt" in jobs[chain["labels"]][1]
    assert "results/iemocap/folds/loso5.csv" in jobs[chain["labels"]][1]
    one_run = [jobs[chain[k]][1] for k in ("stage2", "labels")]
    assert not any("fold1" in x or "fold3" in x for ins in one_run for x in ins if "runs/" in x)


# --------------------------------------------------------------------------- config checks


def test_config_checks_name_the_pseudo_label_key():
    from snakemake.utils import update_config, validate

    from emorepro.config import ConfigError, check_config
    from tests.workflow_utils import REPO
    import yaml

    def load():
        cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
        update_config(cfg, yaml.safe_load((REPO / "config/demo.yaml").read_text()))
        validate(cfg, str(REPO / "config/schema.yaml"))
        return json.loads(json.dumps(cfg))

    check_config(load())
    for change, key in [
        (lambda c: c["experiments"]["pan2024"]["retrain_l3"]["pseudo_labels"].update(layer=-9),
         "experiments.pan2024.retrain_l3.pseudo_labels.layer"),
        (lambda c: c["experiments"]["pan2024"]["retrain_l3"]["pseudo_labels"].update(name="nope"),
         "experiments.pan2024.retrain_l3.pseudo_labels.name"),
        (lambda c: c["pseudo_labels"]["pan2024_gmp"].update(source="pan2024/nope"), "pseudo_labels.pan2024_gmp.source"),
        (lambda c: c["experiments"]["pan2024"]["retrain_l3"].update(seeds=[1, 7]),
         "experiments.pan2024.retrain_l3.pseudo_labels"),
        (lambda c: c["experiments"]["pan2024"]["stage1"]["train"].update(finetune=None), "pseudo_labels.pan2024_gmp.role"),
    ]:
        cfg = load()
        change(cfg)
        with pytest.raises(ConfigError) as e:
            check_config(cfg)
        assert key in [k for k, _ in e.value.problems], (key, e.value.problems)


def test_table2_shows_cited_rows_as_cited_and_reproduces_only_its_own(tmp_path, monkeypatch):
    import yte

    from emorepro import steps
    from emorepro.config import check_tables
    from emorepro.provenance import now, write_provenance
    from emorepro.tables import CITED_MARK, CITED_TEXT
    from tests.workflow_utils import REPO

    monkeypatch.chdir(tmp_path)
    cfg = yte.process_yaml(open(REPO / "config/config.yaml"), require_use_yte=True)
    spec = {"name": "pan2024_table2", **cfg["tables"]["pan2024_table2"]}
    own = [r for r in spec["rows"] if not r.get("cited")]
    assert [r["experiment"] for r in own] == ["pan2024/gmp_ams_l3"] and len(spec["rows"]) == 15
    rng = np.random.default_rng(0)
    runs = {r["name"]: [] for r in spec["rows"] if not r.get("cited")}
    for seed in (1, 2):
        for fold in (1, 2):
            d = tmp_path / f"fold{fold}/seed{seed}"
            d.mkdir(parents=True)
            y = rng.integers(0, 4, 40)
            pd.DataFrame({"utt_id": [f"u{i}" for i in range(40)], "fold": fold, "split": "test", "label": y,
                          "pred": np.where(rng.random(40) < 0.7, y, rng.integers(0, 4, 40))}).to_csv(
                d / "predictions.csv", index=False)
            write_provenance(d, rule="train", params={}, inputs=None, outputs=[d / "predictions.csv"], started=now())
            steps.score(str(d / "predictions.csv"), str(d / "metrics.json"), classes=CLASSES, fold=fold, seed=seed)
            runs[own[0]["name"]].append({"metrics": str(d / "metrics.json"), "fold": fold, "seed": seed})
    steps.table(spec, runs, "t.tex", "t.csv", "t.md")
    df = pd.read_csv("t.csv").set_index(["row", "column"])
    assert df.loc[(own[0]["name"], "UAR"), "n_seeds"] == 2 and df.loc[(own[0]["name"], "UAR"), "paper"] == 82.0
    md = Path("t.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| GEmo-CLAP [16] (A + T) " + CITED_MARK))
    assert CITED_TEXT in line and "83.2" in line
    assert "Cited, not reproduced" in md and r"\S" in Path("t.tex").read_text()
    # a cited row with runs, or a row that is neither cited nor reproduced, is refused
    with pytest.raises(InputError, match="cited"):
        steps.table(spec, {**runs, "GEmo-CLAP [16] (A + T)": runs[own[0]["name"]]}, "u.tex", "u.csv", "u.md")
    bad = {"tables": {"t": {**cfg["tables"]["pan2024_table2"],
                            "rows": [{"name": "x", "cited": True, "experiment": "pan2024/gmp_ams_l3"}, {"name": "y"}]}},
           "experiments": cfg["experiments"]}
    keys = [k for k, _ in check_tables(bad)]
    assert "tables.t.rows['x'].experiment" in keys and "tables.t.rows['y']" in keys   # needs an experiment, a fusion set or cited
