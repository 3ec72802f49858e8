"""The training engine (issue 12): each fit() feature against a run without it, init_from, what a run keeps,
the fine-tunable encoders, the oracle mark in tables, and the contract that families never import the loop.

The fit() tests use a linear probe on manifest columns (:class:`LinearRecipe`) or a HuBERT probe on raw
audio (:class:`AudioProbe`), both defined here and handed to :func:`run_training` through a patched
registry lookup, so they exercise the real loop on real (synthetic) files.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sf = pytest.importorskip("soundfile")

from emorepro import train as T
from emorepro.io import InputError
from emorepro.models.base import Recipe, RunContext, TrainConfig, masked_mean

CLASSES = ["neu", "hap", "ang", "sad"]
SR = 16_000
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- two probe families


class LinearNet(nn.Module):
    def __init__(self, d=4, c=4):
        super().__init__()
        self.lin_a = nn.Linear(d, 8)
        self.lin_b = nn.Linear(8, c)
        self.dead = nn.Linear(d, c)        # trained with a zero gradient (AdamW vs Adam)

    def forward(self, x):
        # x: (B, d) -> logits (B, C), embedding (B, 8)
        h = torch.tanh(self.lin_a(x))
        return {"logits": self.lin_b(h) + 0.0 * self.dead(x), "embedding": h}


class LinearRecipe(Recipe):
    input_keys = ("x",)

    def __init__(self, ctx):
        super().__init__(ctx)
        cols = [c for c in ctx.manifest.columns if c.startswith("f")]
        self.x = {s: torch.tensor(ctx.manifest.loc[u, cols].to_numpy(np.float32)) for s, u in ctx.splits.items() if u}
        self.y = {s: torch.from_numpy(ctx.labels(s)) for s, u in ctx.splits.items() if u}

    def build(self):
        torch.manual_seed(0)
        return LinearNet()

    def batch(self, split, idx):
        return {"x": self.x[split][idx], "label": self.y[split][idx]}

    def loss(self, out, batch, epoch):
        return F.cross_entropy(out["logits"], batch["label"])


class ProbeNet(nn.Module):
    def __init__(self, encoder, c=4):
        super().__init__()
        self.encoder = encoder                  # a FinetuneAudioEncoder handed over by the loop
        self.head = nn.Linear(encoder.dim, c)

    def forward(self, wav, wav_lens):
        out = self.encoder(wav, wav_lens)       # hidden (B, T, d), mask (B, T)
        z = masked_mean(out["hidden"], out["mask"])
        return {"logits": self.head(z), "embedding": z}


class AudioProbe(Recipe):
    input_keys = ("wav", "wav_lens")

    def build(self):
        torch.manual_seed(0)
        return ProbeNet(self.ctx.encoders["audio"])

    def batch(self, split, idx):
        utts = [self.ctx.splits[split][i] for i in idx]
        b = self.ctx.encoders["audio"].collate([self.ctx.audio(u) for u in utts])
        b["label"] = torch.from_numpy(self.ctx.labels(split)[idx])
        return b

    def loss(self, out, batch, epoch):
        return F.cross_entropy(out["logits"], batch["label"])


@pytest.fixture
def registry(monkeypatch):
    """run_training looks families up by name: add the two probes."""
    import emorepro.models as M

    real = M.get_model
    probes = {"linear_probe": LinearRecipe, "audio_probe": AudioProbe}
    monkeypatch.setattr(M, "get_model", lambda name: SimpleNamespace(recipe=probes[name]) if name in probes else real(name))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """40 utterances (10 per class; speakers S0 = val, S1 = test), wavs, features f0..f3, one fold."""
    root = tmp_path_factory.mktemp("engine")
    rng = np.random.default_rng(0)
    rows, folds = [], []
    for i in range(40):
        label, spk = CLASSES[i % 4], f"S{i % 5}"
        t = np.arange(int(rng.uniform(0.3, 0.7) * SR)) / SR
        f0 = {"neu": 150, "hap": 260, "ang": 200, "sad": 110}[label]
        wav = root / f"u{i:02d}.wav"
        sf.write(wav, (0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32), SR,
                 subtype="PCM_16")
        feats = np.eye(4)[i % 4] + 0.8 * rng.standard_normal(4)
        rows.append({"utt_id": f"u{i:02d}", "speaker": spk, "wav": str(wav), "label": label, "transcript": "x",
                     **{f"f{k}": round(float(v), 5) for k, v in enumerate(feats)}})
        folds.append({"utt_id": f"u{i:02d}", "fold": 1, "split": {"S0": "val", "S1": "test"}.get(spk, "train")})
        folds.append({"utt_id": f"u{i:02d}", "fold": 2, "split": {"S1": "val", "S2": "test"}.get(spk, "train")})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(folds).to_csv(root / "folds.csv", index=False)
    return root


def run(data, out, *, model="linear_probe", fold=1, seed=1, parent=None, **train):
    cfg = {"epochs": 3, "batch_size": 8, "lr": 0.05, "weight_decay": 0.0, "selection": "last", **train}
    return T.run_training(manifest_csv=str(data / "manifest.csv"), folds_csv=str(data / "folds.csv"), caches={},
                          fold=fold, seed=seed, classes=CLASSES, model=model, model_params={}, train=cfg,
                          out_dir=str(out), device="cpu", parent_model=parent)


def ctx_for(data, **train) -> RunContext:
    m = pd.read_csv(data / "manifest.csv").set_index("utt_id", drop=False)
    f = pd.read_csv(data / "folds.csv")
    f = f[f["fold"] == 1]
    splits = {s: f.loc[f["split"] == s, "utt_id"].tolist() for s in ("train", "val", "test")}
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 8, "lr": 0.05, "weight_decay": 0.0, "selection": "last", **train})
    T.set_determinism(1, 1)
    return RunContext(manifest=m, splits=splits, classes=CLASSES, caches={}, model_params={}, cfg=cfg, seed=1,
                      device="cpu", fold=1)


# --------------------------------------------------------------------------- fit(): each feature


def test_accumulation_equals_a_bigger_batch(data):
    """4 micro-batches of 4 per step = one batch of 16 (24 training utterances: the last step has 2 x 4)."""
    def weights(**kw):
        r = LinearRecipe(ctx_for(data, **kw))
        net = r.build()
        res = T.fit(net, r)
        return {k: v.clone() for k, v in net.state_dict().items()}, res

    big, rb = weights(batch_size=16, accum_steps=1)
    acc, ra = weights(batch_size=4, accum_steps=4)
    small, _ = weights(batch_size=4, accum_steps=1)
    assert rb.history[-1]["step"] == ra.history[-1]["step"] == 3 * 2            # 2 optimiser steps per epoch
    for k in big:
        torch.testing.assert_close(acc[k], big[k], atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(small[k], big[k], atol=1e-4) for k in big)    # without accumulation: different


def test_eval_every_n_steps_picks_the_step_it_reports(data, registry, tmp_path):
    s = run(data, tmp_path / "a", eval_every=2, selection="val_uar", epochs=5, lr=0.05)
    log = pd.read_csv(tmp_path / "a/train_log.csv")
    # 24 training utterances / 8 = 3 steps per epoch, 15 in all: evaluated at 2, 4, ..., 14 and the last step
    assert log["step"].tolist() == [2, 4, 6, 8, 10, 12, 14, 15]
    best = int(log["val_uar"].to_numpy().argmax())                                   # first best wins ties
    assert s["selected_step"] == log["step"][best] and log["selected"].tolist() == [int(i == best) for i in range(8)]
    assert s["selected_epoch"] == log["epoch"][best] == (log["step"][best] - 1) // 3 + 1
    # the kept weights are those of that step: training only up to it and keeping the last gives the same bytes
    assert 2 < s["selected_step"] < 15              # neither the first nor the last evaluation point
    again = run(data, tmp_path / "b", selection="last", epochs=5, lr=0.05, max_steps=int(s["selected_step"]))
    assert again["steps"] == s["selected_step"]
    assert (tmp_path / "a/predictions.csv").read_bytes() == (tmp_path / "b/predictions.csv").read_bytes()


def test_test_set_oracle_selects_on_test_labels_and_logs_them(data, registry, tmp_path):
    s = run(data, tmp_path / "o", selection="test_uar_oracle", epochs=6, lr=0.2)
    log = pd.read_csv(tmp_path / "o/train_log.csv")
    assert s["oracle"] and {"test_uar", "test_war", "val_uar"} <= set(log.columns)
    assert s["selected_epoch"] == int(log["epoch"][log["test_uar"].to_numpy().argmax()])
    honest = run(data, tmp_path / "h", selection="val_uar", epochs=6, lr=0.2)
    assert "test_uar" not in pd.read_csv(tmp_path / "h/train_log.csv").columns and not honest["oracle"]


def test_param_groups_and_adamw(data):
    ctx = ctx_for(data, batch_size=24, epochs=1, lr=0.1, weight_decay=0.5, optimizer="adamw",
                  param_groups={"lin_b.": {"lr": 0.0}})
    r = LinearRecipe(ctx)
    net = r.build()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    T.fit(net, r)
    after = net.state_dict()
    assert torch.equal(after["lin_b.weight"], before["lin_b.weight"])          # its group's lr is 0
    assert not torch.equal(after["lin_a.weight"], before["lin_a.weight"])
    # `dead` gets a zero gradient: AdamW only decays it (p * (1 - lr wd)); Adam would move it by ~lr
    torch.testing.assert_close(after["dead.weight"], before["dead.weight"] * (1 - 0.1 * 0.5))
    r = LinearRecipe(ctx_for(data, batch_size=24, epochs=1, lr=0.1, weight_decay=0.5, optimizer="adam"))
    net = r.build()
    p0 = net.dead.weight.detach().clone()
    T.fit(net, r)
    torch.testing.assert_close(net.dead.weight.detach(), p0 - 0.1 * torch.sign(p0), atol=1e-4, rtol=0)
    r = LinearRecipe(ctx_for(data, param_groups={"nope.": {"lr": 1.0}}))
    with pytest.raises(InputError, match="match no trainable"):
        T.fit(r.build(), r)


def test_init_from_loads_the_parents_weights(data, registry, tmp_path):
    parent = run(data, tmp_path / "p", keep_model=True, epochs=4, lr=0.2)
    rec = torch.load(tmp_path / "p/model.pt", weights_only=False)
    assert rec["kept"] and set(rec["state_dict"]) == set(LinearNet().state_dict())
    # lr 0: the child's weights stay the parent's, so its predictions are the parent's, byte for byte
    child = run(data, tmp_path / "c", init_from="x/parent", parent=str(tmp_path / "p/model.pt"), lr=0.0, epochs=1)
    assert (tmp_path / "c/predictions.csv").read_bytes() == (tmp_path / "p/predictions.csv").read_bytes()
    assert child["init_from"]["n_loaded"] == len(rec["state_dict"]) and child["init_from"]["experiment"] == "x/parent"
    assert child["init_from"]["parent_state_sha256"] == parent["model"]["state_sha256"]
    fresh = run(data, tmp_path / "f", lr=0.0, epochs=1)                              # no parent: different
    assert (tmp_path / "f/predictions.csv").read_bytes() != (tmp_path / "p/predictions.csv").read_bytes()
    assert fresh["init_from"] is None
    # only some modules: the rest keeps its own initialisation
    part = run(data, tmp_path / "m", init_from="x/parent", parent=str(tmp_path / "p/model.pt"), lr=0.0, epochs=1,
               init_modules=["lin_a."])
    assert part["init_from"]["n_loaded"] == 2 and "lin_b.weight" in part["init_from"]["unused"]
    # a run starts only from the same fold and seed, and only from a kept model
    with pytest.raises(InputError, match="same fold and seed"):
        run(data, tmp_path / "x1", init_from="x/parent", parent=str(tmp_path / "p/model.pt"), seed=2)
    run(data, tmp_path / "nk", keep_model=False)
    with pytest.raises(InputError, match="did not keep"):
        run(data, tmp_path / "x2", init_from="x/parent", parent=str(tmp_path / "nk/model.pt"))


def test_training_set_hook_replaces_the_split_without_mutating_it(data, registry, tmp_path, monkeypatch):
    seen = {}

    def hook(cls, ctx):
        seen["before"] = list(ctx.splits["train"])
        return ctx.splits["train"][::2]

    monkeypatch.setattr(LinearRecipe, "training_set", classmethod(hook))
    s = run(data, tmp_path / "t")
    assert s["n"]["train"] == 12 and s["n_fold_train"] == 24 == len(seen["before"])


# --------------------------------------------------------------------------- what a run keeps


def test_run_keeps_no_weights_unless_asked_and_never_a_frozen_encoder(data, hubert, registry, tmp_path):
    enc = {"checkpoint": str(hubert), "layers": [-1]}
    s = run(data, tmp_path / "n", model="audio_probe", finetune={"audio": enc}, epochs=1)
    rec = torch.load(tmp_path / "n/model.pt", weights_only=False)
    assert rec["state_dict"] is None and not rec["kept"] and len(rec["state_sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["model.pt", "predictions.csv", "train_log.csv"]
    assert s["run_dir_bytes"] < 50_000
    # kept: the heads in model.pt, the fine-tuned encoder as a loadable checkpoint directory
    s = run(data, tmp_path / "k", model="audio_probe", finetune={"audio": enc}, epochs=1, keep_model=True,
            save_embeddings=["train", "test"])
    rec = torch.load(tmp_path / "k/model.pt", weights_only=False)
    assert sorted(rec["state_dict"]) == ["head.bias", "head.weight"]
    assert rec["encoders"]["audio"]["prefix"] == "encoder." and rec["encoders"]["audio"]["dir"] == "encoder_audio"
    from emorepro.encoders import EncoderSpec, load_encoder

    again = load_encoder(EncoderSpec("k", "hubert", "transformers", checkpoint=str(tmp_path / "k/encoder_audio")))
    assert again.dim == 64
    emb = np.load(tmp_path / "k/embeddings.npz")
    test_ids = pd.read_csv(tmp_path / "k/predictions.csv").query("split == 'test'")["utt_id"].tolist()
    assert emb["train_embedding"].shape == (24, 64) and len(emb["train_ids"]) == s["n"]["train"] == 24
    assert emb["test_embedding"].shape == (8, 64) and list(emb["test_ids"]) == test_ids
    # a frozen encoder computed on the fly is never written, even with keep_model
    run(data, tmp_path / "fz", model="audio_probe", finetune={"audio": {**enc, "freeze_encoder": True}}, epochs=1,
        keep_model=True)
    assert not (tmp_path / "fz/encoder_audio").exists()
    assert torch.load(tmp_path / "fz/model.pt", weights_only=False)["encoders"]["audio"]["trainable"] is False


def test_init_from_carries_a_fine_tuned_encoder(data, hubert, registry, tmp_path):
    enc = {"audio": {"checkpoint": str(hubert)}}
    run(data, tmp_path / "p", model="audio_probe", finetune=enc, epochs=2, lr=0.01, keep_model=True)
    s = run(data, tmp_path / "c", model="audio_probe", finetune=enc, epochs=1, lr=0.0, init_from="x/p",
            parent=str(tmp_path / "p/model.pt"))
    assert (tmp_path / "c/predictions.csv").read_bytes() == (tmp_path / "p/predictions.csv").read_bytes()
    assert s["init_from"]["n_not_loaded"] == 0
    # a tampered parent encoder is refused
    w = tmp_path / "p/encoder_audio/model.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="differs from the hash"):
        run(data, tmp_path / "c2", model="audio_probe", finetune=enc, epochs=1, init_from="x/p",
            parent=str(tmp_path / "p/model.pt"))


# --------------------------------------------------------------------------- the fine-tunable encoders


def test_audio_encoder_layers_crops_chunks_and_span_mask(hubert):
    from transformers import HubertModel

    from emorepro.encoders.finetune import load_finetune_encoder

    rng = np.random.default_rng(0)
    wavs = [rng.standard_normal(n).astype(np.float32) for n in (16000, 9000)]
    enc = load_finetune_encoder("audio", {"checkpoint": str(hubert), "layers": [-2]}).eval()
    ref = HubertModel.from_pretrained(str(hubert)).eval()
    with torch.no_grad():
        out = enc(**enc.collate(wavs))
        for i, w in enumerate(wavs):      # layer -2 = hidden_states[-2] of the model on the utterance alone
            x = torch.from_numpy((w - w.mean()) / np.sqrt(w.var() + 1e-7))[None]
            hs = ref(x, output_hidden_states=True).hidden_states[-2][0]
            n = int(out["mask"][i].sum())
            assert n == hs.shape[0]
            torch.testing.assert_close(out["hidden"][i, :n], hs, atol=1e-4, rtol=1e-4)
    # training crops: seeded random windows; evaluation: the head, or chunks that cover everything
    opts = {"checkpoint": str(hubert), "train_max_seconds": 0.5, "eval_max_seconds": 0.25}
    a = load_finetune_encoder("audio", opts, seed=3)
    b = load_finetune_encoder("audio", opts, seed=3)
    ca, cb = a.collate(wavs, train=True), b.collate(wavs, train=True)
    assert ca["wav_lens"].tolist() == [8000, 8000] and torch.equal(ca["wav"], cb["wav"])
    assert not torch.equal(a.collate(wavs, train=True)["wav"], ca["wav"])       # a new window each read
    assert a.collate(wavs, train=False)["wav_lens"].tolist() == [4000, 4000]
    ch = load_finetune_encoder("audio", {**opts, "eval_policy": "chunks"}).eval()
    with torch.no_grad():
        o = ch(**ch.collate(wavs, train=False))
    # windows of 4000 samples give 12 frames each; 9000 = 4000 + 4000 + a 1000-sample tail (2 frames)
    assert o["mask"].sum(1).tolist() == [4 * 12, 2 * 12 + 2]
    # HuBERT span masking: spans of 10 frames inside the real frames, replaced by masked_spec_embed
    enc.train()
    np.random.seed(0)
    mask = torch.arange(49)[None].expand(2, -1) < torch.tensor([49, 27])[:, None]
    m = enc.span_mask(mask, mask_prob=0.3, mask_length=10)
    assert m.shape == (2, 49) and not (m & ~mask).any() and m[0].sum() >= 10
    enc.model.masked_spec_embed.data.fill_(123.0)
    calls = []
    h = enc.model.encoder.register_forward_pre_hook(lambda mod, args: calls.append(args[0].detach().clone()))
    enc(**enc.collate(wavs, train=False), mask_time_indices=m)
    h.remove()
    assert (calls[0][m] == 123.0).all() and not (calls[0][~m & mask] == 123.0).all()


def test_text_encoder_tokenises_and_freezes_embeddings(tmp_path):
    pytest.importorskip("transformers")
    from emorepro.encoders.demo import make_demo_checkpoint
    from emorepro.encoders.finetune import load_finetune_encoder

    make_demo_checkpoint("roberta", str(tmp_path / "r"), seed=0)
    enc = load_finetune_encoder("text", {"checkpoint": str(tmp_path / "r"), "layers": [-1, -2], "layer_combine": "mean",
                                         "hidden_dropout": 0.0})
    assert enc.model.config.hidden_dropout_prob == 0.0 and enc.resolved()["hidden_dropout"] == 0.0
    t = enc.tokenize(["leave me alone", "oh my god, that's amazing news"])
    out = enc(**t)
    assert out["hidden"].shape[:2] == t["input_ids"].shape and out["mask"].tolist() == t["attention_mask"].bool().tolist()
    out["hidden"].sum().backward()
    assert all(p.grad is None for p in enc.model.embeddings.parameters())
    assert any(p.grad is not None for p in enc.model.encoder.parameters())
    with pytest.raises(ValueError, match="audio encoders only"):
        load_finetune_encoder("text", {"checkpoint": str(tmp_path / "r"), "layerdrop": 0.2})


# --------------------------------------------------------------------------- tables: the oracle mark


def test_oracle_rows_are_marked_and_the_same_experiment_shows_both_ways(tmp_path):
    from emorepro import steps

    from emorepro.provenance import now, write_provenance

    rng = np.random.default_rng(0)
    runs = {"Honest": [], "Oracle": []}
    for name, sel in (("Honest", "val_uar"), ("Oracle", "test_uar_oracle")):
        for fold in (1, 2):
            d = tmp_path / name / f"fold{fold}"
            d.mkdir(parents=True)
            y = rng.integers(0, 4, 30)
            pd.DataFrame({"utt_id": [f"u{i}" for i in range(30)], "fold": fold, "split": "test", "label": y,
                          "pred": np.where(rng.random(30) < 0.6, y, 0)}).to_csv(d / "predictions.csv", index=False)
            write_provenance(d / "predictions.csv", rule="train", params={}, inputs=None,   # the score step checks it
                             outputs=[d / "predictions.csv"], started=now())
            steps.score(str(d / "predictions.csv"), str(d / "metrics.json"), classes=CLASSES, fold=fold, seed=1)
            runs[name].append({"metrics": str(d / "metrics.json"), "fold": fold, "seed": 1, "experiment": "p/v",
                               "selection": sel})
    spec = {"name": "t", "title": "T", "columns": [{"name": "UAR", "metric": "uar"}],
            "rows": [{"name": "Honest", "experiment": "p/v"}, {"name": "Oracle", "experiment": "p/v_oracle"}]}
    steps.table(spec, runs, str(tmp_path / "t.tex"), str(tmp_path / "t.csv"), str(tmp_path / "t.md"))
    md, tex = (tmp_path / "t.md").read_text(), (tmp_path / "t.tex").read_text()
    assert "| Oracle \u2021 " in md and "| Honest \u2021" not in md and "Test-set oracle" in md
    assert r"Oracle$^\ddagger$" in tex and r"$^\ddagger$ Test-set oracle" in tex
    csv = pd.read_csv(tmp_path / "t.csv").set_index("row")
    assert bool(csv.loc["Oracle", "oracle"]) and not bool(csv.loc["Honest", "oracle"])
    side = json.loads((tmp_path / "t.tex.prov.json").read_text())
    assert side["cells"]["Oracle | UAR"]["oracle_selection"] and not side["cells"]["Honest | UAR"]["oracle_selection"]
    # without an oracle row there is no mark and no note
    steps.table({**spec, "rows": spec["rows"][:1]}, {"Honest": runs["Honest"]}, str(tmp_path / "h.tex"),
                str(tmp_path / "h.csv"), str(tmp_path / "h.md"))
    assert "\u2021" not in (tmp_path / "h.md").read_text() and "ddagger" not in (tmp_path / "h.tex").read_text()


# --------------------------------------------------------------------------- the contract


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            mods |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
    return mods


def test_no_family_imports_the_loop_the_encoder_backends_or_the_cache():
    forbidden = ("..train", "emorepro.train", "..encoders", "emorepro.encoders", "..features", "emorepro.features",
                 "..audio", "emorepro.audio", "transformers", "fairseq2")
    files = sorted((REPO / "src/emorepro/models").glob("*.py"))
    assert len(files) >= 5
    for f in files:
        bad = sorted(m for m in _imports(f) if m.startswith(forbidden))
        assert not bad, f"{f.name} imports {bad}: a family gets encoders, caches and audio through its RunContext"


def test_train_config_rejects_unknown_selection_and_bad_values():
    with pytest.raises(InputError, match="selection"):
        TrainConfig(selection="best_test")
    with pytest.raises(InputError, match="accum_steps"):
        TrainConfig(accum_steps=0)
    with pytest.raises(InputError, match="save_embeddings"):
        TrainConfig(save_embeddings=["dev"])
    assert TrainConfig(finetune=None).finetune == {} and TrainConfig(selection="test_war_oracle").is_oracle


def test_gradient_checkpointing_changes_memory_not_results(data, hubert, registry, tmp_path):
    """config.yaml turns it on for Ispas et al. as a memory measure: the predictions must be the same bytes."""
    enc = {"checkpoint": str(hubert), "hidden_dropout": 0.1, "layerdrop": 0.1}
    for on in (False, True):
        run(data, tmp_path / str(on), model="audio_probe", finetune={"audio": {**enc, "gradient_checkpointing": on}},
            epochs=2, lr=0.01)
    assert (tmp_path / "True/predictions.csv").read_bytes() == (tmp_path / "False/predictions.csv").read_bytes()
