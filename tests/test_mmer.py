"""MMER (Ghosh et al.; src/emorepro/models/mmer.py): CTC vocabulary, SCL/ACL against hand computation, padding
invariance of the multimodal interaction module and of the whole network, the registry entries.  That no fold
trains on its test speakers' copies is tests/test_augment.py's (emorepro.augment.allowed_copies, which the
recipe calls); the augmentation backends' missing-file errors are tested there too."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from emorepro.io import InputError
from emorepro.models.mmer import (WAV2VEC2_VOCAB, CharVocab, MMERConfig, MMERLoss, MMERNet, MMIModule, acl_loss,
                                  scl_loss)

# --------------------------------------------------------------------------- CTC vocabulary


def test_ctc_targets_round_trip_through_the_corpus_vocabulary(manifest):
    texts = list(manifest["transcript"])
    vocab = CharVocab.from_texts(texts)
    assert vocab.symbols[0] == "<blank>" and "|" in vocab.symbols
    n_nonempty = 0
    for t in texts:
        ids = vocab.encode(t)
        assert 0 not in ids                               # the blank is never a target
        assert vocab.decode(ids) == vocab.normalise(t)    # round trip: ids -> the normalised transcript
        assert vocab.normalise(t) == CharVocab.normalise_paper(t)   # nothing of the corpus falls outside
        n_nonempty += bool(ids)
    assert n_nonempty == len(texts)
    # the paper's normalisation: upper case, punctuation removed, bracketed non-speech and "--" dropped
    assert CharVocab.normalise_paper("Oh, [LAUGHTER] it's--fine!") == "OH ITS FINE"
    assert vocab.decode(vocab.encode("hello  world")) == "HELLO WORLD"


def test_ctc_targets_round_trip_through_the_wav2vec2_vocabulary():
    vocab = CharVocab.wav2vec2()
    assert len(vocab) == 32 and vocab.symbols == WAV2VEC2_VOCAB
    t = "Don't [BREATHING] go -- it's 5 o'clock, é!"
    ids = vocab.encode(t)
    assert vocab.decode(ids) == vocab.normalise(t) == "DON'T GO IT'S O'CLOCK"   # digits and accents dropped
    assert ids[:5] == [vocab.index[c] for c in "DON'T"] and vocab.index["|"] == 4
    with pytest.raises(AssertionError):
        CharVocab(("<blank>", "A"), "corpus")     # no word delimiter


# --------------------------------------------------------------------------- SCL and ACL by hand

Z = [[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]]
Z_AUG = [[0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]]
LABELS = [0, 0, 1]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _log_softmax_row(s, i, j):
    return s[i][j] - math.log(sum(math.exp(v) for v in s[i]))


def test_scl_equals_the_hand_computed_value_on_three_utterances():
    tau = 0.5
    s = [[_dot(a, b) for b in Z] for a in Z]
    pos = [(i, j) for i in range(3) for j in range(3) if LABELS[i] == LABELS[j]]   # self-pairs included: 5 pairs
    assert len(pos) == 5
    paper = -sum(_log_softmax_row([[v / tau for v in r] for r in s], i, j) for i, j in pos) / len(pos)
    code = -sum(_log_softmax_row(s, i, j) / tau for i, j in pos) / len(pos)
    z, y = torch.tensor(Z), torch.tensor(LABELS)
    assert scl_loss(z, y, tau, "paper").item() == pytest.approx(paper, rel=1e-6)
    assert scl_loss(z, y, tau, "code").item() == pytest.approx(code, rel=1e-6)
    assert paper != pytest.approx(code)           # the two readings differ: the switch matters
    # first term by hand: row 0 (label 0) with itself: s = [1, 0.6, 0] / 0.5 = [2, 1.2, 0]
    assert _log_softmax_row([[2, 1.2, 0]], 0, 0) == pytest.approx(2 - math.log(math.exp(2) + math.exp(1.2) + 1))


def test_acl_equals_the_hand_computed_value_on_three_utterances():
    tau = 0.5
    s = [[_dot(a, b) / tau for b in Z_AUG] for a in Z]     # each utterance against every copy of the batch
    want = -sum(_log_softmax_row(s, i, i) for i in range(3)) / 3   # own copy = the positive
    got = acl_loss(torch.tensor(Z), torch.tensor(Z_AUG), tau).item()
    assert got == pytest.approx(want, rel=1e-6)
    # the labels do not enter ACL; swapping two copies makes it worse
    worse = acl_loss(torch.tensor(Z), torch.tensor(Z_AUG)[[1, 0, 2]], tau).item()
    assert worse > got


def test_loss_config_rejects_bad_values():
    with pytest.raises(AssertionError, match="scl_variant"):
        MMERLoss(scl_variant="both")
    with pytest.raises(AssertionError, match="ctc_reduction"):
        MMERLoss(ctc_reduction="none")
    with pytest.raises(AssertionError):
        MMERLoss(gamma=-0.1)


# --------------------------------------------------------------------------- padding


class FrameEncoder(nn.Module):
    """Stand-in for the fine-tuned wav2vec2 (same interface): frames of 8 samples -> Linear -> (B, J, d)."""

    def __init__(self, d=16, hop=8):
        super().__init__()
        self.hop, self.dim = hop, d
        self.lin = nn.Linear(hop, d)

    def forward(self, wav, wav_lens):
        b, s = wav.shape
        j = s // self.hop
        hidden = torch.tanh(self.lin(wav[:, : j * self.hop].reshape(b, j, self.hop)))   # (B, J, d)
        mask = torch.arange(j)[None, :] < (wav_lens // self.hop)[:, None]               # (B, J)
        return {"hidden": hidden, "mask": mask}


def _pad(seqs):
    n = max(len(x) for x in seqs)
    out = torch.zeros(len(seqs), n, *seqs[0].shape[1:])
    for i, x in enumerate(seqs):
        out[i, : len(x)] = x
    return out, torch.arange(n)[None, :] < torch.tensor([len(x) for x in seqs])[:, None]


@pytest.mark.parametrize("project_then_pool", [True, False])
@pytest.mark.parametrize("code_options", [False, True])
def test_padding_does_not_change_the_mmi_output(project_then_pool, code_options):
    torch.manual_seed(0)
    cfg = MMERConfig(d_audio=16, d_text=16, d_model=16, n_heads=4, d_ff=32, project_then_pool=project_then_pool,
                     text_self_attention=code_options, audio_projections=code_options)
    mmi = MMIModule(cfg).eval()
    a0, t0 = torch.randn(7, 16), torch.randn(5, 16)         # the utterance of interest
    a1, t1 = torch.randn(19, 16), torch.randn(11, 16)       # a longer batch mate: a0 and t0 get padded
    alone = mmi(a0[None], torch.ones(1, 7, dtype=torch.bool), t0[None], torch.ones(1, 5, dtype=torch.bool))
    A, am = _pad([a0, a1])
    T, tm = _pad([t0, t1])
    A[0, 7:] = 1e3                                           # whatever sits in the padding must not matter
    T[0, 5:] = -1e3
    batched = mmi(A, am, T, tm)
    assert batched.shape == (2, 16)
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fusion", ["mmi", "concat", "audio", "text"])
def test_padding_does_not_change_the_networks_logits(fusion):
    torch.manual_seed(0)
    enc = FrameEncoder() if fusion != "text" else None
    net = MMERNet(MMERConfig(fusion=fusion, d_audio=16, d_text=12, d_model=16, n_heads=4, d_ff=32, vocab_size=0),
                  enc).eval()
    w0, w1 = torch.randn(80), torch.randn(200)
    t0, t1 = torch.randn(4, 12), torch.randn(9, 12)
    alone = net(wav=w0[None], wav_lens=torch.tensor([80]), text=t0[None], text_mask=torch.ones(1, 4))
    W, _ = _pad([w0[:, None], w1[:, None]])
    W = W[..., 0]
    W[0, 80:] = 5.0
    T, tm = _pad([t0, t1])
    T[0, 4:] = 7.0
    batched = net(wav=W, wav_lens=torch.tensor([80, 200]), text=T, text_mask=tm)
    torch.testing.assert_close(batched["logits"][0], alone["logits"][0], rtol=1e-5, atol=1e-5)


def test_training_forward_returns_the_auxiliary_outputs():
    torch.manual_seed(0)
    net = MMERNet(MMERConfig(fusion="mmi", d_audio=16, d_text=12, d_model=16, n_heads=4, d_ff=32, vocab_size=9),
                  FrameEncoder()).train()
    W, T = torch.randn(3, 96), torch.randn(3, 5, 12)
    lens, tm = torch.tensor([96, 64, 40]), torch.ones(3, 5)
    out = net(wav=W, wav_lens=lens, text=T, text_mask=tm, aug_wav=W.flip(0), aug_wav_lens=lens.flip(0),
              aug_text=T.flip(0), aug_text_mask=tm)
    assert out["logits"].shape == (3, 4) and out["ctc_logits"].shape == (3, 12, 9)
    assert out["ctc_lengths"].tolist() == [12, 8, 5]
    assert out["z"].shape == out["z_aug"].shape == (3, 16)
    with pytest.raises(AssertionError, match="audio encoder"):
        MMERNet(MMERConfig(fusion="text", d_text=12, d_model=16, n_heads=4), FrameEncoder())
    with pytest.raises(AssertionError, match="CTC head"):
        MMERNet(MMERConfig(fusion="text", d_text=12, d_model=16, n_heads=4, vocab_size=5), None)


def test_model_entries_name_their_data_and_loss_dataclasses():
    from emorepro.models import MODELS, get_model

    for name, fusion in (("mmer", None), ("mmer_audio", "audio"), ("mmer_text", "text")):
        assert MODELS[name].data == "MMERData" and MODELS[name].loss == "MMERLoss"
        assert get_model(name).recipe.fusion == fusion



# --------------------------------------------------------------------------- the recipe, both audio modes


class DictCache:
    """The feature-cache interface the recipe reads (``layer``, ``dim``, ``in``), from a dict of arrays."""

    def __init__(self, seqs: dict):
        self.seqs = seqs
        self.dim = next(iter(seqs.values())).shape[1]

    def __contains__(self, u):
        return u in self.seqs

    def layer(self, u, i):
        return self.seqs[u]


@pytest.fixture(scope="module")
def tiny_w2v2(tmp_path_factory):
    from emorepro.encoders.demo import make_demo_checkpoint

    out = tmp_path_factory.mktemp("w2v2") / "wav2vec2"
    make_demo_checkpoint("wav2vec2", str(out), seed=0)
    return out


def _acl_setup(tmp_path, manifest):
    """A 12-utterance loso-style split (session 1 = test) with copies voiced by speakers of other sessions."""
    import pandas as pd

    from emorepro.augment.copies import plan_copies

    m = manifest[manifest["label"].isin(["neu", "hap", "ang", "sad"])]
    m = m.groupby("session").head(4).head(12).set_index("utt_id", drop=False)   # sessions 1-3, 4 each
    plan = plan_copies(m.reset_index(drop=True), seed=0)
    aug = plan.assign(utt_id=plan["aug_id"], wav=[m.loc[u, "wav"] for u in plan["source_utt"]])
    copies = tmp_path / "copies.csv"
    plan.to_csv(copies, index=False)
    manifest_all = pd.concat([m, aug.set_index("utt_id", drop=False)[["utt_id", "wav"]]])
    test = list(m.loc[m["session"] == 1, "utt_id"])
    train = [u for u in m["utt_id"] if u not in test]
    return m, plan, aug, copies, manifest_all, train, test


@pytest.mark.parametrize("mode", ["finetune", "cached"])
def test_recipe_trains_one_step_with_every_loss_and_only_allowed_copies(mode, manifest, tiny_w2v2, tmp_path):
    """One training step of MMER (CE + CTC + SCL + ACL) on real synthetic audio: fine-tuned wav2vec2 (the
    paper: CNN frozen, transformer trained) or cached frozen features (the demo); the ACL copies are the
    fold's allowed ones, never voiced by a test speaker."""
    from emorepro.audio import WavSource
    from emorepro.encoders.finetune import load_finetune_encoder
    from emorepro.models import MODELS
    from emorepro.models.base import RunContext, TrainConfig
    from emorepro.train import set_determinism

    m, plan, aug, copies, manifest_all, train, test = _acl_setup(tmp_path, manifest)
    rng = np.random.default_rng(0)
    ids = list(m["utt_id"]) + list(aug["utt_id"])
    text = DictCache({u: rng.standard_normal((int(rng.integers(3, 9)), 24)).astype(np.float32) for u in ids})
    caches = {"text": text}
    ft = {}
    if mode == "finetune":
        ft = {"audio": {"checkpoint": str(tiny_w2v2), "freeze_cnn": True, "layers": [-1]}}
    else:
        caches["audio"] = DictCache({u: rng.standard_normal((int(rng.integers(20, 60)), 32)).astype(np.float32)
                                     for u in ids})
    cfg = TrainConfig(batch_size=len(train), lr=1e-3, optimizer="adamw", selection="last", finetune=ft,
                      loss={"alpha": 0.1, "beta": 0.1, "gamma": 0.1})
    set_determinism(1, 1)
    encoders = {r: load_finetune_encoder(r, o, seed=1) for r, o in ft.items()}
    ctx = RunContext(manifest=m, splits={"train": train, "val": [], "test": test}, classes=["neu", "hap", "ang", "sad"],
                     caches=caches, model_params={"d_model": 16, "n_heads": 4, "d_ff": 32}, cfg=cfg, seed=1,
                     device="cpu", encoders=encoders, audio=WavSource(manifest_all.reset_index(drop=True)), fold=1,
                     extra_inputs={"aug_copies": str(copies)})
    recipe = MODELS["mmer"].recipe(ctx)
    net = recipe.build().train()
    recipe.on_epoch_start(1, net)
    b = recipe.batch("train", np.arange(len(train)))
    held = set(m.loc[test, "speaker"])
    voiced = dict(zip(plan["aug_id"], plan["target_speaker"]))
    assert len(b["aug_ids"]) == len(train) and not {voiced[c] for c in b["aug_ids"]} & held
    assert all(plan.set_index("aug_id").loc[c, "source_utt"] == u for u, c in zip(train, b["aug_ids"]))
    assert ("wav" in b) == (mode == "finetune") and ("audio" in b) == (mode == "cached")
    out = net(**{k: b[k] for k in recipe.input_keys if k in b})
    loss = recipe.loss(out, b, 1)
    loss.backward()
    assert torch.isfinite(loss) and set(recipe._terms) == {"ce", "ctc", "scl", "acl"}
    assert all(recipe._terms[k][0] > 0 for k in recipe._terms)
    if mode == "finetune":
        enc = encoders["audio"]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.model.encoder.parameters())
        assert all(p.grad is None for p in enc.model.feature_extractor.parameters())      # CNN frozen
    assert net.mmi.block_b.attn.in_proj_weight.grad.abs().sum() > 0
    # test batches carry neither copies nor CTC targets
    net.eval()
    tb = recipe.batch("test", np.arange(len(test)))
    assert "aug_ids" not in tb and "ctc_targets" not in tb


def test_recipe_refuses_acl_without_copies_and_copies_without_acl(manifest, tmp_path):
    from emorepro.models import MODELS
    from emorepro.models.base import RunContext, TrainConfig

    m, _, aug, copies, _, train, test = _acl_setup(tmp_path, manifest)
    seqs = {u: np.ones((4, 8), np.float32) for u in list(m["utt_id"]) + list(aug["utt_id"])}
    caches = {"audio": DictCache(seqs), "text": DictCache(seqs)}

    def ctx(loss, extra, model_params=None):
        cfg = TrainConfig(batch_size=4, selection="last", finetune={}, loss=loss)
        return RunContext(manifest=m, splits={"train": train, "val": [], "test": test}, classes=["neu", "hap", "ang", "sad"],
                          caches=caches, model_params=model_params or {}, cfg=cfg, seed=1, device="cpu", encoders={},
                          audio=None, fold=1, extra_inputs=extra)

    with pytest.raises(InputError, match="set the experiment's `augment`"):
        MODELS["mmer"].recipe(ctx({"gamma": 0.1}, {}))
    with pytest.raises(InputError, match="drop `augment`"):
        MODELS["mmer"].recipe(ctx({"gamma": 0.0}, {"aug_copies": str(copies)}))
    with pytest.raises(InputError, match="single-task baseline"):
        MODELS["mmer"].recipe(ctx({"gamma": 0.0}, {}, {"fusion": "concat"}))
    with pytest.raises(InputError, match="the 'audio' baseline"):
        MODELS["mmer_audio"].recipe(ctx({"alpha": 0, "beta": 0, "gamma": 0}, {}, {"fusion": "mmi"}))
    del caches["audio"]
    with pytest.raises(InputError, match="fine-tuned .* or frozen features"):
        MODELS["mmer"].recipe(ctx({"gamma": 0.0}, {}))
