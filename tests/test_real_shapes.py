"""Real-shaped checkpoints (issue 12): the papers' encoders in their hub layout load offline, and every
fine-tuning family completes a forward/backward on them.

Base-size shapes run here (slow tier: they are ~100 M parameters each); the large ones are measured by
benchmarks/real_shapes.py.  A shrunk copy of each layout keeps the loading paths in the fast tier.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from emorepro.encoders.real_shapes import REAL_CONFIGS, make_real_shaped_checkpoint
from tests.conftest import REPO

TEXTS = ["I can't believe you did that, this is wonderful news.", "Leave me alone, I don't want to talk about it.",
         "Well, I guess we could go to the beach tomorrow.", "Why would you say something like that to me?",
         "Oh my god, that's amazing, congratulations!", "It's fine. Really. Whatever you want."] * 5
SHRINK_AUDIO = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
                "codevector_dim": 8, "proj_codevector_dim": 8, "num_codevectors_per_group": 4}
SHRINK_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
LAYOUT = {   # the files each hub repository ships that a loader reads (real_shapes.json is ours)
    "facebook/hubert-large-ll60k": ["config.json", "preprocessor_config.json", "pytorch_model.bin"],
    "facebook/hubert-base-ls960": ["config.json", "pytorch_model.bin"],
    "facebook/wav2vec2-base": ["config.json", "preprocessor_config.json", "pytorch_model.bin", "special_tokens_map.json",
                               "tokenizer_config.json", "vocab.json"],
    "microsoft/deberta-v3-large": ["config.json", "pytorch_model.bin", "spm.model", "tokenizer_config.json"],
    "roberta-base": ["config.json", "merges.txt", "model.safetensors", "tokenizer.json", "vocab.json"],
    "roberta-large": ["config.json", "merges.txt", "model.safetensors", "tokenizer.json", "vocab.json"],
}


def _shrunk(name, out):
    audio = REAL_CONFIGS[name]["model_type"] in ("hubert", "wav2vec2")
    over = dict(SHRINK_AUDIO if audio else SHRINK_TEXT)
    if REAL_CONFIGS[name]["model_type"] != "wav2vec2":
        for k in ("codevector_dim", "proj_codevector_dim", "num_codevectors_per_group"):
            over.pop(k, None)
    return make_real_shaped_checkpoint(name, str(out), texts=TEXTS, vocab_size=300, config_overrides=over)


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_hub_layouts_load_offline_through_both_paths(name, tmp_path):
    """Each layout (shrunk) loads through the frozen backend and the fine-tuning loader, offline."""
    from emorepro.encoders import EncoderSpec, load_encoder
    from emorepro.encoders.finetune import load_finetune_encoder

    info = _shrunk(name, tmp_path / "ck")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == sorted([*LAYOUT[name], "real_shapes.json"]) and not info["real_shaped"]
    family = REAL_CONFIGS[name]["model_type"]
    cfg = json.loads((tmp_path / "ck/config.json").read_text())
    assert {k: v for k, v in cfg.items() if k not in {**SHRINK_AUDIO, **SHRINK_TEXT}} == \
        {k: v for k, v in REAL_CONFIGS[name].items() if k not in {**SHRINK_AUDIO, **SHRINK_TEXT}}
    frozen = load_encoder(EncoderSpec("x", family, "transformers", checkpoint=str(tmp_path / "ck")), device="cpu")
    enc = load_finetune_encoder("r", {"checkpoint": str(tmp_path / "ck")})
    assert not enc.model.is_gradient_checkpointing        # wav2vec2-base's config asks for it: off unless configured
    if family in ("hubert", "wav2vec2"):
        x = np.random.default_rng(0).standard_normal(12000).astype(np.float32)
        assert frozen.encode([x])[0].shape == (1, 37, 32)
        assert frozen.do_normalize is True                  # preprocessor_config says so, or the default without one
    else:
        out = frozen.encode(["Leave me alone, I don't want to talk about it."])[0]
        assert out.shape[0] == 1 and out.shape[2] == 32 and out.shape[1] > 5
        tok = enc.tokenizer
        assert tok.is_fast and tok.cls_token_id in enc.tokenize(["hello"])["input_ids"][0].tolist()


def test_debertav3_ships_only_spm_model_and_is_deterministic(tmp_path):
    from transformers import AutoTokenizer

    a = _shrunk("microsoft/deberta-v3-large", tmp_path / "a")
    b = _shrunk("microsoft/deberta-v3-large", tmp_path / "b")
    assert a["files_sha256"] == b["files_sha256"]
    assert not (tmp_path / "a/tokenizer.json").exists()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "a"), local_files_only=True, use_fast=True)
    assert type(tok).__name__ == "DebertaV2TokenizerFast"
    assert [tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    ids = tok("Leave me alone")["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2 and tok.decode(ids[1:-1]) == "Leave me alone"


@pytest.mark.slow
def test_real_debertav3_large_loads_offline(tmp_path):
    """The real DeBERTaV3-large shape (435 M parameters), spm.model only, as a user downloads it."""
    from emorepro.encoders import EncoderSpec, load_encoder

    info = make_real_shaped_checkpoint("microsoft/deberta-v3-large", str(tmp_path / "d"), texts=TEXTS, vocab_size=300)
    assert info["real_shaped"] and 430e6 < info["n_params"] < 440e6
    enc = load_encoder(EncoderSpec("deb", "deberta-v2", "transformers", checkpoint=str(tmp_path / "d")), device="cpu")
    out = enc.encode(["Why would you say something like that to me?"])[0]
    assert enc.dim == 1024 and enc.n_hidden == 25 and out.shape[2] == 1024 and enc.max_length == 512


def _family_experiment(model: str) -> dict:
    """The last experiment of config.yaml (the real run) that fine-tunes with ``model``."""
    import yte

    with open(REPO / "config/config.yaml") as f:
        cfg = yte.process_yaml(f, require_use_yte=True)
    found = [e for vs in cfg["experiments"].values() for e in vs.values()
             if e["model"] == model and (e["train"].get("finetune") or {})]
    assert found, f"no experiment in config/config.yaml fine-tunes with {model}"
    return found[-1]


@pytest.fixture(scope="module")
def base_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    for name in ("facebook/hubert-base-ls960", "facebook/wav2vec2-base", "roberta-base"):
        make_real_shaped_checkpoint(name, str(root / name.split("/")[-1]), texts=TEXTS, vocab_size=300)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("audio", ["hubert-base-ls960", "wav2vec2-base"])
def test_every_finetuning_family_steps_on_base_size_checkpoints(audio, base_checkpoints, tmp_path):
    """Every family that fine-tunes (Recipe.finetune_roles), with its real config's heads and encoder options,
    on real-shaped base-size encoders: one forward/backward on two short utterances."""
    import soundfile as sf

    from emorepro.audio import WavSource
    from emorepro.encoders.finetune import load_finetune_encoder
    from emorepro.models import MODELS
    from emorepro.models.base import RunContext, TrainConfig
    from emorepro.train import set_determinism

    rows = []
    for i, (label, n) in enumerate((("hap", 12000), ("sad", 20000))):
        x = 0.1 * np.random.default_rng(i).standard_normal(n).astype(np.float32)
        sf.write(tmp_path / f"u{i}.wav", x, 16000, subtype="PCM_16")
        rows.append({"utt_id": f"u{i}", "wav": str(tmp_path / f"u{i}.wav"), "label": label, "transcript": TEXTS[i],
                     "valence_norm": 0.5, "arousal_norm": 0.25 + 0.5 * i, "gender": "FM"[i],
                     "corpus": ("iemocap", "jtes")[i]})   # a union corpus's column (Lee et al.'s domains)
    manifest = pd.DataFrame(rows).set_index("utt_id", drop=False)
    ckpt = {"audio": base_checkpoints / audio, "text": base_checkpoints / "roberta-base"}
    families = [name for name, entry in MODELS.items() if entry.recipe.finetune_roles]
    assert {"ispas_mm", "mmer_audio"} <= set(families)
    for name in families:
        entry = MODELS[name]
        e = _family_experiment(name)
        if set(e["inputs"]) - set(e["train"]["finetune"]) or e.get("augment"):
            # reads a feature cache or augmented copies besides the fine-tuned encoders (MMER: RoBERTa features, ACL):
            # its fine-tuned step is tests/test_mmer.py's (a tiny wav2vec2)
            continue
        train = dict(e["train"])
        train["finetune"] = {role: {**(opts or {}), "checkpoint": str(ckpt[role])} for role, opts in train["finetune"].items()}
        cfg = TrainConfig(**{**train, "batch_size": 2})
        set_determinism(1, 2)
        encoders = {role: load_finetune_encoder(role, opts, seed=1) for role, opts in cfg.finetune.items()}
        extra = {}
        if e.get("pseudo_labels"):   # Pan et al.'s retraining: random frame labels of the real scales
            from emorepro.frame_labels import write_frame_labels

            ks = [64, 512, 4096]
            n = encoders["audio"].frame_lengths(torch.tensor([12000, 20000])).tolist()
            extra["pseudo_labels"] = str(tmp_path / f"{name}_labels.npz")
            write_frame_labels(extra["pseudo_labels"], ["u0", "u1"], n,
                               {k: np.random.default_rng(k).integers(0, k, sum(n)) for k in ks}, fold=1, seed=1,
                               layer=-3, hop_samples=encoders["audio"].hop_samples, source_state_sha256="random")
        ctx = RunContext(manifest=manifest, splits={"train": ["u0", "u1"], "val": [], "test": []},
                         classes=["neu", "hap", "ang", "sad"], caches={}, model_params=dict(e["model_params"]), cfg=cfg,
                         seed=1, device="cpu", encoders=encoders, audio=WavSource(manifest), fold=1,
                         extra_inputs=extra)
        recipe = entry.recipe(ctx)
        net = recipe.build().train()
        b = recipe.batch("train", np.arange(2))
        out = net(**{k: b[k] for k in recipe.input_keys if k in b})   # as the engine's _forward
        loss = recipe.loss(out, b, 1)
        loss.backward()
        assert torch.isfinite(loss)
        if "frames" in out:   # a masked-prediction stage: one (B, T, K) output per scale, no utterance logits
            assert [x.shape[-1] for x in out["frames"][0]] == [64, 512, 4096]
        else:
            assert out["logits"].shape == (2, 4)
        for role, enc in encoders.items():
            grads = [p.grad for p in enc.model.encoder.parameters()]
            assert any(g is not None and g.abs().sum() > 0 for g in grads), (name, role)
        assert all(p.grad is None for p in encoders["audio"].model.feature_extractor.parameters())   # CNN frozen
        assert all(enc.dim == 768 for enc in encoders.values())
