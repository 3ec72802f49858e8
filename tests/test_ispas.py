"""Ispas et al. (2023) multi-task multi-modal head: switches, RMM, CCC loss, shapes, determinism.

Small synthetic feature caches are written in a temporary directory through the public
cache API (:func:`extract_to_cache`): a kaldi fbank cache for audio and a hashed-word text
encoder for text.  The fine-tuning test uses tiny random HuBERT / DeBERTa-v2 checkpoints
from :func:`emorepro.encoders.demo.make_demo_checkpoint`.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch

sf = pytest.importorskip("soundfile")

from emorepro.encoders.base import Encoder, EncoderSpec
from emorepro.features.cache import extract_to_cache
from emorepro.models import build_model, get_model
from emorepro.models import ispas_mm as I
from emorepro.train import run_training

CLASSES = ["neu", "hap", "ang", "sad"]
WORDS = {"neu": "the meeting is at ten", "hap": "this is wonderful news", "ang": "stop it right now",
         "sad": "I miss her so much"}
VA = {"neu": (0.5, 0.4), "hap": (0.8, 0.6), "ang": (0.2, 0.8), "sad": (0.2, 0.2)}
SR = 16_000
SMALL = dict(d_model=16, n_heads=4, n_bridge=5, d_head=8, dropout=0.0)


# --------------------------------------------------------------------------- fixtures


class HashedWords(Encoder):
    """A deterministic stand-in text encoder: one random vector per word, plus <s> and </s>."""

    def __init__(self, spec: EncoderSpec, dim: int = 24):
        self.spec, self.dim = spec, dim

    def encode(self, items):
        out = []
        for s in items:
            toks = ["<s>", *s.split(), "</s>"]
            vecs = [np.random.default_rng(int(hashlib.sha256(w.encode()).hexdigest()[:8], 16)).standard_normal(self.dim)
                    for w in toks]
            out.append(np.stack(vecs)[None].astype(np.float32))   # (1, T, dim)
        return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """32 utterances (8 per class), 4 speakers; wavs, manifest, one fold, and the two caches."""
    root = tmp_path_factory.mktemp("ispas")
    rng = np.random.default_rng(0)
    rows, folds = [], []
    for i in range(32):
        label = CLASSES[i % 4]
        spk = f"S{i // 8}"
        dur = float(rng.uniform(0.3, 0.9))
        t = np.arange(int(dur * SR)) / SR
        f0 = {"neu": 150, "hap": 260, "ang": 200, "sad": 110}[label]
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(len(t))
        wav = root / f"u{i:02d}.wav"
        sf.write(wav, x.astype(np.float32), SR, subtype="PCM_16")
        v, a = (np.clip(np.array(VA[label]) + 0.05 * rng.standard_normal(2), 0, 1)).tolist()
        rows.append({"utt_id": f"u{i:02d}", "speaker": spk, "wav": str(wav), "duration": f"{len(t) / SR:.4f}",
                     "transcript": WORDS[label] + (" you know" if i % 3 else ""), "label": label,
                     "valence_norm": round(v, 4), "arousal_norm": round(a, 4)})
        folds.append({"utt_id": f"u{i:02d}", "fold": 1, "split": {"S0": "val", "S1": "test"}.get(spk, "train")})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(folds).to_csv(root / "folds.csv", index=False)
    fbank = EncoderSpec(name="fbank40", family="fbank", backend="kaldi_fbank", layers=(0,))
    extract_to_cache(str(root / "manifest.csv"), fbank, str(root / "audio"), progress=False)
    words = EncoderSpec(name="words", family="bert", backend="transformers", layers=(-1,))
    extract_to_cache(str(root / "manifest.csv"), words, str(root / "text"), encoder=HashedWords(words), progress=False)
    return root


def train(corpus, out, *, seed=1, model_params=None, epochs=3, selection="val_uar", data=None, caches="both",
          **extra):
    cs = {"audio": str(corpus / "audio"), "text": str(corpus / "text")} if caches == "both" else {}
    return run_training(manifest_csv=str(corpus / "manifest.csv"), folds_csv=str(corpus / "folds.csv"), caches=cs,
                        fold=1, seed=seed, classes=CLASSES, model="ispas_mm",
                        model_params={**SMALL, **(model_params or {})}, out_dir=str(out), device="cpu",
                        train={"epochs": epochs, "batch_size": 8, "lr": 3e-3, "weight_decay": 0.0, "grad_clip": 1.0,
                               "selection": selection, "data": data or {}, **extra})


def toy_batch(B=3, Ta=20, Tt=6, da=12, dt=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, Ta, da, generator=g)
    t = torch.randn(B, Tt, dt, generator=g)
    la, lt = torch.tensor([Ta, 7, 3][:B]), torch.tensor([Tt, 2, 4][:B])
    am = torch.arange(Ta)[None] < la[:, None]
    tm = torch.arange(Tt)[None] < lt[:, None]
    y = {"label": torch.tensor([0, 1, 2][:B]), "valence": torch.rand(B, generator=g), "arousal": torch.rand(B, generator=g)}
    return (a * am[..., None], am, t * tm[..., None], tm), y


def model(**kw) -> I.IspasMM:
    torch.manual_seed(0)
    return I.IspasMM(I.IspasConfig(**{**SMALL, "d_audio": 12, "d_text": 10, **kw}))


# --------------------------------------------------------------------------- switches and shapes

SWITCHES = [dict(sa=sa, cra=cra, q=q) for sa in (False, True) for cra in (False, True) for q in (False, True)
            if cra or not q]


@pytest.mark.parametrize("sw", SWITCHES, ids=lambda d: "".join(k for k, v in d.items() if v) or "none")
def test_each_switch_is_in_the_computation(sw):
    net = model(**sw).train()
    called = []
    for name, mod in net.named_modules():
        if isinstance(mod, (I.SelfAttention, I.CrossAttention)):
            mod.register_forward_hook(lambda m, i, o, name=name: called.append((name, tuple(i[0].shape))))
    x, y = toy_batch()
    out = net(*x)
    I.ispas_loss(out, y, net.cfg)[0].backward()
    names = {n for n, _ in called}
    assert ({"sa.audio", "sa.text"} <= names) == sw["sa"] and ({"sa.audio", "sa.text"} & names == set()) == (not sw["sa"])
    assert ({"xattn.audio", "xattn.text"} <= names) == sw["cra"]
    assert (net.bridge is not None) == sw["q"]
    n = 20  # the shorter sequence (text, 6) is padded to the longer (audio, 20)
    for name, shape in called:
        if name.startswith("xattn"):
            # with Q the queries are the L bridge tokens; without, a modality's N positions
            assert shape == ((3, 5, 16) if sw["q"] else (3, n, 16)), (name, shape)
        else:
            assert shape == (3, n, 16)
    # every parameter of an enabled component is used: none is left without a gradient
    unused = [k for k, p in net.named_parameters() if p.grad is None]
    assert unused == [], unused
    assert out["fused"].shape == (3, 16 if sw["cra"] else 32)
    # and perturbing it changes the output (eval, so dropout plays no part)
    net.eval()
    with torch.no_grad():
        ref = net(*x)["logits"]
        for comp in ("sa", "xattn", "bridge"):
            mod = getattr(net, comp)
            if mod is None:
                continue
            saved = [p.detach().clone() for p in mod.parameters()]
            for p in mod.parameters():
                p.add_(0.5 * torch.randn_like(p))
            assert not torch.allclose(net(*x)["logits"], ref), comp
            for p, s in zip(mod.parameters(), saved):
                p.copy_(s)


def test_q_requires_cra_and_model_is_registered():
    with pytest.raises(AssertionError, match="cra"):
        I.IspasConfig(q=True, cra=False)
    entry = get_model("ispas_mm")
    assert entry.inputs == ("audio", "text") and entry.recipe is I.IspasRecipe
    net, cfg = build_model("ispas_mm", {**SMALL, "d_audio": 12, "d_text": 10})
    assert isinstance(net, I.IspasMM) and cfg.n_heads == 4


def test_bridge_token_shapes():
    net = model(sa=True, cra=True, q=True, n_bridge=7).eval()
    assert net.bridge["audio"].shape == net.bridge["text"].shape == (7, 16)
    x, _ = toy_batch()
    out = net(*x)
    assert out["bridge_audio"].shape == out["bridge_text"].shape == (3, 7, 16)   # (B, L, d)
    assert out["fused"].shape == (3, 16)
    # e_s = Mean(Stack(Mean_L(e_a), Mean_L(e_t)))
    ref = torch.stack([out["bridge_audio"].mean(1), out["bridge_text"].mean(1)], 1).mean(1)
    torch.testing.assert_close(out["fused"], ref)
    assert out["logits"].shape == (3, 4) and out["valence"].shape == out["arousal"].shape == (3,)
    assert ((out["valence"] > 0) & (out["valence"] < 1)).all()


@pytest.mark.parametrize("sw", SWITCHES, ids=lambda d: "".join(k for k, v in d.items() if v) or "none")
def test_padding_is_masked(sw):
    # An utterance's output does not depend on its batch mates (i.e. on how much padding it gets).
    net = model(**sw).eval()
    (a, am, t, tm), _ = toy_batch()
    with torch.no_grad():
        full = net(a, am, t, tm)
        for i in range(3):
            la, lt = int(am[i].sum()), int(tm[i].sum())
            alone = net(a[i:i + 1, :la], am[i:i + 1, :la], t[i:i + 1, :lt], tm[i:i + 1, :lt])
            for k in ("logits", "valence", "arousal"):
                torch.testing.assert_close(alone[k][0], full[k][i], atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------- loss


def test_ccc_loss_matches_an_independent_formula():
    rng = np.random.default_rng(0)
    for n in (2, 16, 500):
        x = rng.random(n)
        y = 0.6 * x + 0.3 * rng.random(n) + 0.2          # correlated, with a mean offset
        # Lin (1989) written through Pearson's r: rho_c = 2 r s_x s_y / (s_x^2 + s_y^2 + (mu_x - mu_y)^2)
        r = np.corrcoef(x, y)[0, 1]
        sx, sy = x.std(), y.std()
        ref = 2 * r * sx * sy / (sx ** 2 + sy ** 2 + (x.mean() - y.mean()) ** 2)
        got = 1 - I.ccc_loss(torch.tensor(x), torch.tensor(y)).item()
        assert got == pytest.approx(ref, rel=1e-6)
        # the paper's Eq. 2 (no square on the mean difference) would give something else
        eq2 = 2 * r * sx * sy / (sx ** 2 + sy ** 2 + (x.mean() - y.mean()))
        assert abs(got - eq2) > 1e-3
    assert 1 - I.ccc_loss(torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0.2, 0.5, 0.9])).item() == pytest.approx(1.0)


def test_multitask_loss_is_the_weighted_sum():
    net = model()
    x, y = toy_batch()
    out = net(*x)
    total, terms = I.ispas_loss(out, y, net.cfg)
    ce = torch.nn.functional.cross_entropy(out["logits"], y["label"])
    ref = 0.33 * ce + 0.33 * I.ccc_loss(out["valence"], y["valence"]) + 0.33 * I.ccc_loss(out["arousal"], y["arousal"])
    torch.testing.assert_close(total, ref)
    assert set(terms) == {"ce", "ccc_valence", "ccc_arousal"}
    # ce_reduction="sum": Eq. 1 as printed, the per-sample CE summed over the batch (by hand: -log softmax).
    net.cfg.ce_reduction = "sum"
    total_sum, terms_sum = I.ispas_loss(out, y, net.cfg)
    by_hand = -torch.log_softmax(out["logits"], dim=1)[torch.arange(len(y["label"])), y["label"]].sum()
    torch.testing.assert_close(terms_sum["ce"], by_hand)
    torch.testing.assert_close(total_sum - total, 0.33 * (by_hand - ce))
    with pytest.raises(ValueError, match="ce_reduction"):
        I.IspasConfig(ce_reduction="batchmean")


@pytest.mark.parametrize("task", ["disc", "con"])
def test_single_task_rows_compute_only_their_own_terms(task, monkeypatch):
    net = model(disc=task == "disc", con=task == "con").train()
    x, y = toy_batch()
    calls = {"ce": 0, "ccc": 0}
    ce, ccc = I.F.cross_entropy, I.ccc_loss

    def spy_ce(*a, **k):
        calls["ce"] += 1
        return ce(*a, **k)

    def spy_ccc(*a, **k):
        calls["ccc"] += 1
        return ccc(*a, **k)

    monkeypatch.setattr(I.F, "cross_entropy", spy_ce)
    monkeypatch.setattr(I, "ccc_loss", spy_ccc)
    total, terms = I.ispas_loss(net(*x), y, net.cfg)
    total.backward()
    unused, used = (net.regressor, net.classifier) if task == "disc" else (net.classifier, net.regressor)
    assert all(p.grad is None for p in unused.parameters()), "the unused head received a gradient"
    assert all(p.grad is not None for p in used.parameters())
    if task == "disc":
        assert calls == {"ce": 1, "ccc": 0} and set(terms) == {"ce"}
        torch.testing.assert_close(total, 0.33 * terms["ce"])
    else:
        assert calls == {"ce": 0, "ccc": 2} and set(terms) == {"ccc_valence", "ccc_arousal"}
    # the graph itself holds no CrossEntropy / CCC nodes of the other task
    seen, names, stack = set(), set(), [total.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(fn.name())
        stack += [f for f, _ in fn.next_functions]
    assert any("NllLoss" in n for n in names) == (task == "disc")
    assert any("Sigmoid" in n for n in names) == (task == "con")


# --------------------------------------------------------------------------- RMM


def test_rmm_schedule_is_cosine_with_floor():
    E = 20
    ps = [I.rmm_probability(e, E) for e in range(1, E + 1)]
    assert ps[0] == pytest.approx(0.8)
    for e, p in enumerate(ps, start=1):
        c = 0.8 * 0.5 * (1 + math.cos(math.pi * (e - 1) / (E - 1)))
        assert p == (0.0 if c < 0.1 else pytest.approx(c))
    assert all(a >= b for a, b in zip(ps, ps[1:]))
    assert min(p for p in ps if p > 0) >= 0.1 and ps[-1] == 0.0
    assert ps.index(0.0) == 15   # epochs 16..20 are never masked with the paper's settings
    assert I.rmm_probability(1, 1) == pytest.approx(0.8)


def test_rmm_zeroes_the_modality_in_training_only():
    net = model(sa=True, cra=True, q=True).train()
    seen = {}
    net.proj["text"].register_forward_pre_hook(lambda m, i: seen.__setitem__("text_in", i[0].detach().clone()))
    (a, am, t, tm), _ = toy_batch()
    net.set_masked_modality("text")
    out1 = net(a, am, t, tm)["logits"]
    assert torch.count_nonzero(seen["text_in"]) == 0
    # neither the text content nor its length reach the output
    out2 = net(a, am, torch.randn_like(t), torch.ones_like(tm))["logits"]
    torch.testing.assert_close(out1, out2)
    # the other modality still matters
    assert not torch.allclose(out1, net(a * 2, am, t, tm)["logits"])
    # evaluation never masks
    net.eval()
    assert not torch.allclose(net(a, am, t, tm)["logits"], net(a, am, torch.randn_like(t), tm)["logits"])
    assert torch.count_nonzero(seen["text_in"]) > 0


def test_rmm_freezes_the_masked_branch_and_releases_it():
    net = model(sa=True, cra=True, q=True).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = toy_batch()
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    net.set_masked_modality("audio")
    frozen = {id(p) for p in net.branch_parameters("audio")}
    assert frozen and all(not p.requires_grad for p in net.branch_parameters("audio"))
    opt.zero_grad(set_to_none=True)
    I.ispas_loss(net(*x), y, net.cfg)[0].backward()
    opt.step()
    for k, p in net.named_parameters():
        changed = not torch.equal(p, before[k])
        assert changed == (id(p) not in frozen), k
    net.set_masked_modality(None)
    assert all(p.requires_grad for p in net.parameters())


def test_rmm_in_training_runs_per_epoch(corpus, tmp_path, monkeypatch):
    """Through the shared loop: a masked epoch leaves its branch bit-identical, and the draws follow the seed."""
    snaps = []
    orig = I.IspasRecipe.on_epoch_start

    def spy(self, epoch, net):
        orig(self, epoch, net)
        snaps.append((self.rmm_history[-1], {k: p.detach().clone() for k, p in net.named_parameters()},
                      {k for k, p in net.named_parameters() if not p.requires_grad}))

    monkeypatch.setattr(I.IspasRecipe, "on_epoch_start", spy)
    # p = 1.0, 0.90, 0.65, 0.35, 0 (0.095 < floor), 0: epoch 1 is surely masked, 5 and 6 surely not
    params = {"rmm": True, "rmm_p_start": 1.0}
    train(corpus, tmp_path / "a", model_params=params, epochs=6, selection="last")
    hist = [h for h, _, _ in snaps]
    assert [h["epoch"] for h in hist] == list(range(1, 7))
    assert [round(h["p"], 3) for h in hist] == [1.0, 0.905, 0.655, 0.345, 0.0, 0.0]
    assert hist[0]["masked"] in ("audio", "text") and hist[4]["masked"] is None and hist[5]["masked"] is None
    for (h, p0, frozen), (_, p1, _) in zip(snaps, snaps[1:]):
        branch = {f"proj.{h['masked']}.", f"sa.{h['masked']}."} if h["masked"] else set()
        for k in p0:
            in_branch = any(k.startswith(b) for b in branch)
            assert (k in frozen) == in_branch, (h, k)
            assert torch.equal(p0[k], p1[k]) == in_branch, (h, k)
    first = [h["masked"] for h in hist]
    snaps.clear()
    train(corpus, tmp_path / "b", model_params=params, epochs=6, selection="last")
    assert [h["masked"] for h, _, _ in snaps] == first


def test_no_rmm_means_no_masking(corpus, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(I.IspasMM, "set_masked_modality", lambda self, m: seen.append(m))
    train(corpus, tmp_path / "r", model_params={"rmm": False}, epochs=2)
    assert seen == []


# --------------------------------------------------------------------------- runs


def test_same_seed_gives_identical_predictions(corpus, tmp_path):
    params = {"sa": True, "cra": True, "q": True, "rmm": True}
    s1 = train(corpus, tmp_path / "s1", model_params=params)
    train(corpus, tmp_path / "s1b", model_params=params)
    train(corpus, tmp_path / "s2", seed=2, model_params=params)
    a = (tmp_path / "s1/predictions.csv").read_bytes()
    assert a == (tmp_path / "s1b/predictions.csv").read_bytes()
    assert a != (tmp_path / "s2/predictions.csv").read_bytes()
    df = pd.read_csv(tmp_path / "s1/predictions.csv")
    assert set(df["split"]) == {"val", "test"} and len(df) == 16
    for c in ("valence_pred", "valence_true", "arousal_pred", "arousal_true", "logit_3"):
        assert c in df.columns
    assert df["valence_pred"].between(0, 1).all()
    man = pd.read_csv(corpus / "manifest.csv").set_index("utt_id")
    np.testing.assert_allclose(df["valence_true"], man.loc[df["utt_id"], "valence_norm"], atol=1e-6)
    log = pd.read_csv(tmp_path / "s1/train_log.csv")
    assert {"val_uar", "val_ccc_valence", "val_ccc_arousal"} <= set(log.columns)
    assert s1["selected_epoch"] == int(log["val_uar"].idxmax()) + 1


def test_single_task_runs_write_only_their_columns(corpus, tmp_path):
    from emorepro.metrics import score_predictions

    train(corpus, tmp_path / "d", model_params={"disc": True, "con": False}, epochs=2)
    df = pd.read_csv(tmp_path / "d/predictions.csv")
    assert not any(c.startswith(("valence", "arousal")) for c in df.columns)
    assert "ccc_valence" not in score_predictions(str(tmp_path / "d/predictions.csv"), CLASSES)

    s = train(corpus, tmp_path / "c", model_params={"disc": False, "con": True}, epochs=4, selection="val_ccc")
    log = pd.read_csv(tmp_path / "c/train_log.csv")
    mean_ccc = (log["val_ccc_valence"] + log["val_ccc_arousal"]) / 2
    assert s["selected_epoch"] == int(mean_ccc.idxmax()) + 1
    m = score_predictions(str(tmp_path / "c/predictions.csv"), CLASSES)
    assert {"ccc_valence", "ccc_arousal"} <= set(m)


# --------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def checkpoints(corpus, tmp_path_factory):
    pytest.importorskip("transformers")
    from emorepro.encoders.demo import make_demo_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    texts = pd.read_csv(corpus / "manifest.csv")["transcript"].tolist()
    make_demo_checkpoint("hubert", str(root / "hubert"), seed=0)
    make_demo_checkpoint("deberta-v2", str(root / "deberta"), seed=0, texts=texts, vocab_size=60)
    return root


def test_finetune_trains_transformers_but_not_cnn_or_embeddings(corpus, checkpoints, tmp_path, monkeypatch):
    import transformers
    from safetensors.torch import load_file

    from emorepro.audio import read_wav
    from emorepro.encoders import load_encoder

    finetune = {"audio": {"checkpoint": str(checkpoints / "hubert")}, "text": {"checkpoint": str(checkpoints / "deberta")}}
    # at initialisation the on-the-fly features equal the frozen encoder's (the cache's) features
    spec = EncoderSpec(name="h", family="hubert", backend="transformers", checkpoint=str(checkpoints / "hubert"))
    ref = load_encoder(spec, device="cpu")
    man = pd.read_csv(corpus / "manifest.csv")
    wavs = [read_wav(w) for w in man["wav"][:3]]
    snaps = []
    orig = I.IspasRecipe.on_epoch_start

    def spy(self, epoch, net):
        orig(self, epoch, net)
        if epoch == 1:
            net.eval()
            enc = self.ctx.encoders["audio"]
            assert net.audio_encoder is enc and net.text_encoder is self.ctx.encoders["text"]   # handed over, not loaded
            with torch.no_grad():
                out = enc(**enc.collate([self.ctx.audio(u) for u in man["utt_id"][:3]]))
            for i, r in enumerate(ref.encode(wavs)):
                np.testing.assert_allclose(out["hidden"][i, : int(out["mask"][i].sum())].numpy(), r[0], atol=1e-4, rtol=1e-4)
            net.train()
        snaps.append((self.rmm_history[-1]["masked"], {k: p.detach().clone() for k, p in net.named_parameters()}))

    monkeypatch.setattr(I.IspasRecipe, "on_epoch_start", spy)
    # p = 1.0 at epoch 1 (one encoder masked and frozen), 0 at epoch 2
    s = train(corpus, tmp_path / "ft", model_params={"rmm": True, "rmm_p_start": 1.0}, epochs=2, selection="last",
              caches="none", finetune=finetune, keep_model=True)
    (m1, p1), (m2, p2) = snaps
    assert m1 in ("audio", "text") and m2 is None
    rec = torch.load(tmp_path / "ft/model.pt", weights_only=False)
    assert not any(k.startswith(("audio_encoder.", "text_encoder.")) for k in rec["state_dict"])   # heads only
    hub = transformers.AutoModel.from_pretrained(str(checkpoints / "hubert")).state_dict()
    deb = transformers.AutoModel.from_pretrained(str(checkpoints / "deberta")).state_dict()
    for role, orig_sd in (("audio", hub), ("text", deb)):
        kept = load_file(str(tmp_path / f"ft/encoder_{role}/model.safetensors"))   # a loadable checkpoint directory
        assert rec["encoders"][role]["dir"] == f"encoder_{role}" and set(kept) == set(orig_sd)
        for k, v in orig_sd.items():
            if k.endswith("masked_spec_embed"):
                continue
            frozen = k.startswith(("feature_extractor.", "embeddings."))
            assert torch.equal(kept[k], v) == frozen, (role, k)
    assert s["encoders"]["audio"]["freeze_cnn"] and s["encoders"]["text"]["freeze_embeddings"]
    assert s["encoders"]["audio"]["layerdrop"] == pytest.approx(0.1)   # the checkpoint's, recorded as used
    # epoch 1: the masked modality's encoder did not move; the other one did
    masked_enc = "audio_encoder." if m1 == "audio" else "text_encoder."
    other_enc = "text_encoder." if m1 == "audio" else "audio_encoder."
    assert all(torch.equal(p1[k], p2[k]) for k in p1 if k.startswith(masked_enc))
    assert any(not torch.equal(p1[k], p2[k]) for k in p1 if k.startswith(other_enc))
    df = pd.read_csv(tmp_path / "ft/predictions.csv")
    assert len(df) == 16 and df["valence_pred"].between(0, 1).all()


# --------------------------------------------------------------------------- the table


def test_table2_spec_renders_single_task_cells_as_dashes(tmp_path, monkeypatch):
    """config.yaml's Table 2: single-task rows fill only their columns; V/A are CCCs with 3 decimals."""
    import yte

    from emorepro import steps
    from emorepro.provenance import now, write_provenance
    from tests.conftest import REPO

    monkeypatch.chdir(tmp_path)
    cfg = yte.process_yaml(open(REPO / "config/config.yaml"), require_use_yte=True)
    spec = {"name": "ispas2023_table2", **cfg["tables"]["ispas2023_table2"]}
    assert len(spec["rows"]) == 16 and [c["name"] for c in spec["columns"]] == ["UAR", "WAR", "V", "A"]
    exps = cfg["experiments"]["ispas2023"]
    assert len(exps) == 16 and {r["experiment"].split("/")[1] for r in spec["rows"]} == set(exps)
    rng = np.random.default_rng(0)
    runs = {}
    for r in spec["rows"]:
        e = exps[r["experiment"].split("/")[1]]
        mp = e["model_params"]
        assert e["seeds"] == ([1, 2, 3] if mp["disc"] and mp["con"] else [1])
        assert r.get("columns") in (None, ["UAR", "WAR"] if mp["disc"] and not mp["con"] else ["V", "A"])
        runs[r["name"]] = []
        for seed in e["seeds"]:
            for fold in (1, 2):
                d = tmp_path / r["experiment"] / f"fold{fold}/seed{seed}"
                d.mkdir(parents=True)
                y = rng.integers(0, 4, 40)
                df = pd.DataFrame({"utt_id": [f"u{i}" for i in range(40)], "fold": fold, "split": "test", "label": y,
                                   "pred": np.where(rng.random(40) < 0.7, y, rng.integers(0, 4, 40))})
                if mp["con"]:
                    v = rng.random(40)
                    df = df.assign(valence_pred=v + 0.1 * rng.random(40), valence_true=v,
                                   arousal_pred=v, arousal_true=v + 0.2 * rng.random(40))
                df.to_csv(d / "predictions.csv", index=False)
                write_provenance(d, rule="train", params={}, inputs=None, outputs=[d / "predictions.csv"],
                                 started=now())   # the score step checks its input against this
                steps.score(str(d / "predictions.csv"), str(d / "metrics.json"), classes=CLASSES, fold=fold, seed=seed)
                runs[r["name"]].append({"metrics": str(d / "metrics.json"), "fold": fold, "seed": seed})
    out = tmp_path / "t"
    steps.table(spec, runs, str(out / "t.tex"), str(out / "t.csv"), str(out / "t.md"))
    df = pd.read_csv(out / "t.csv").set_index(["row", "column"])
    disc, con, mt = ("HuBERT+DeBERTaV3; S/A; Disc", "HuBERT+DeBERTaV3; S/A; Con", "HuBERT+DeBERTaV3; S/A; Disc+Con")
    assert np.isnan(df.loc[(disc, "V"), "ours_mean"]) and df.loc[(disc, "V"), "n_runs"] == 0
    assert np.isnan(df.loc[(con, "UAR"), "ours_mean"]) and df.loc[(con, "V"), "n_runs"] == 2
    assert df.loc[(mt, "V"), "n_seeds"] == 3 and 0 < df.loc[(mt, "V"), "ours_mean"] <= 1      # CCC, not x100
    assert 1 < df.loc[(mt, "UAR"), "ours_mean"] <= 100                                          # percent
    assert df.loc[(mt, "V"), "paper"] == 0.737 and df.loc[(disc, "UAR"), "paper"] == 74.17
    md = (out / "t.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {mt} "))
    assert "0.737" in row and "73.92 ± 0.17" in row
