"""Real-shaped random checkpoints: the papers' published encoders, laid out as their hub repositories are.

No real weights can be downloaded here, but the real architectures can be built.  For each
checkpoint the papers name, :func:`make_real_shaped_checkpoint` writes a directory with

* the repository's ``config.json`` (:data:`REAL_CONFIGS`: every field that sets a shape or a
  behaviour, as published; ``_name_or_path``/``transformers_version`` bookkeeping left out);
* the weights, random-initialised (seeded), under the repository's state_dict key layout and file
  name: ``wav2vec2.*`` + quantizer/projection heads for wav2vec2-base (``Wav2Vec2ForPreTraining``),
  ``deberta.*`` + an ``lm_predictions.*`` head for DeBERTaV3 (no ``architectures`` in its config),
  ``roberta.*`` + ``lm_head.*`` for RoBERTa (``RobertaForMaskedLM``), bare ``HubertModel`` keys for
  HuBERT.  The hub repositories also carry TF/Flax/ONNX copies, which no loader here reads;
* the preprocessor and tokenizer files **in the formats the repositories ship**: HuBERT-large and
  wav2vec2-base a ``preprocessor_config.json`` (hubert-base-ls960 has none, so the default
  ``do_normalize`` applies: a family fine-tuning it should set ``do_normalize`` explicitly);
  wav2vec2-base its 32-symbol CTC ``vocab.json``; RoBERTa ``vocab.json`` + ``merges.txt`` +
  ``tokenizer.json`` (byte-level BPE, trained here on ``texts``); DeBERTaV3 **only** ``spm.model``
  (a SentencePiece unigram model trained offline on ``texts`` with the real special pieces
  ``[PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3``) + ``tokenizer_config.json``, so loading it exercises the
  SentencePiece -> fast-tokenizer conversion a user's download goes through.

Tokenizer vocabularies are smaller than the real ones (they are trained on the corpus
transcripts); the embedding tables keep the real ``vocab_size``.  The configs were written from
the published files; values that only regularise (dropout, LayerDrop) are given explicitly in
config/config.yaml wherever a paper's run depends on them, so a difference in a user's download
cannot change a run silently.  ``real_shapes.json`` in each directory records the name, seed,
parameter count and per-file sha256.  Same arguments -> same bytes.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path
from typing import Sequence

from ..io import atomic_dir, sha256_file, write_json

_AUDIO = {  # what the three audio checkpoints share: the wav2vec2 CNN, conv positions, masking, CTC fields
    "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "num_feat_extract_layers": 7, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
    "apply_spec_augment": True, "mask_time_prob": 0.05, "mask_time_length": 10, "mask_feature_prob": 0.0,
    "mask_feature_length": 10, "hidden_act": "gelu", "feat_extract_activation": "gelu", "layer_norm_eps": 1e-5,
    "initializer_range": 0.02, "hidden_dropout": 0.1, "attention_dropout": 0.1, "feat_proj_dropout": 0.1,
    "ctc_loss_reduction": "sum", "ctc_zero_infinity": False, "vocab_size": 32, "pad_token_id": 0,
    "bos_token_id": 1, "eos_token_id": 2}
_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
         "feat_extract_norm": "group", "conv_bias": False, "do_stable_layer_norm": False}

_ROBERTA = {"architectures": ["RobertaForMaskedLM"], "model_type": "roberta", "attention_probs_dropout_prob": 0.1,
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "initializer_range": 0.02, "layer_norm_eps": 1e-5, "max_position_embeddings": 514, "type_vocab_size": 1,
            "vocab_size": 50265}

REAL_CONFIGS: dict[str, dict] = {
    "facebook/hubert-large-ll60k": {
        "architectures": ["HubertModel"], "model_type": "hubert", **_AUDIO,
        "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "feat_extract_norm": "layer", "conv_bias": True, "do_stable_layer_norm": True,
        "activation_dropout": 0.0, "feat_extract_dropout": 0.0, "final_dropout": 0.0, "layerdrop": 0.1,
        "gradient_checkpointing": False},
    "facebook/hubert-base-ls960": {
        "architectures": ["HubertModel"], "model_type": "hubert", **_AUDIO, **_BASE,
        "activation_dropout": 0.1, "feat_extract_dropout": 0.0, "final_dropout": 0.1, "layerdrop": 0.1,
        "gradient_checkpointing": False},
    "facebook/wav2vec2-base": {
        "architectures": ["Wav2Vec2ForPreTraining"], "model_type": "wav2vec2", **_AUDIO, **_BASE,
        "activation_dropout": 0.0, "feat_quantizer_dropout": 0.0, "final_dropout": 0.0, "layerdrop": 0.05,
        "gradient_checkpointing": True,   # as published: transformers turns it on when the model is built
        "freeze_feat_extract_train": True, "codevector_dim": 256, "proj_codevector_dim": 256,
        "num_codevector_groups": 2, "num_codevectors_per_group": 320, "num_negatives": 100,
        "contrastive_logits_temperature": 0.1, "diversity_loss_weight": 0.1, "mask_time_min_space": 1,
        "mask_channel_prob": 0.0, "mask_channel_length": 10, "use_weighted_layer_sum": False},
    "microsoft/deberta-v3-large": {
        "model_type": "deberta-v2", "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 4096,
        "max_position_embeddings": 512, "relative_attention": True, "position_buckets": 256,
        "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": "p2c|c2p", "layer_norm_eps": 1e-7,
        "max_relative_positions": -1, "position_biased_input": False, "num_attention_heads": 16,
        "num_hidden_layers": 24, "type_vocab_size": 0, "vocab_size": 128100},
    "roberta-base": {**_ROBERTA, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                     "num_hidden_layers": 12},
    "roberta-large": {**_ROBERTA, "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                      "num_hidden_layers": 24},
}
REAL_CONFIGS["FacebookAI/roberta-base"] = REAL_CONFIGS["roberta-base"]
REAL_CONFIGS["FacebookAI/roberta-large"] = REAL_CONFIGS["roberta-large"]

#: the weights file each repository's current loaders read first
WEIGHTS_FILE = {"hubert": "pytorch_model.bin", "wav2vec2": "pytorch_model.bin", "deberta-v2": "pytorch_model.bin",
                "roberta": "model.safetensors"}

_PREPROCESSOR = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                 "padding_side": "right", "padding_value": 0.0, "sampling_rate": 16000}
#: wav2vec2's 32-symbol CTC character vocabulary (pad/blank 0, <s>, </s>, <unk>, word delimiter |, letters, ')
W2V2_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U", "M",
              "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"]


def _texts(texts: Sequence[str] | None) -> list[str]:
    from .demo import DEFAULT_TEXTS

    out = [t for t in (texts or DEFAULT_TEXTS) if t and t.strip()]
    if not out:
        raise ValueError("no non-empty texts to train the tokenizer on")
    return out


def _sentencepiece(texts: list[str], vocab_size: int) -> bytes:
    """A SentencePiece unigram model with DeBERTaV3's special pieces, trained in memory (deterministic)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", character_coverage=1.0, num_threads=1, split_digits=True,
        normalization_rule_name="nmt_nfkc", minloglevel=2)
    return buf.getvalue()


def _roberta_tokenizer(texts: list[str], vocab_size: int, out: Path) -> None:
    """Byte-level BPE as RoBERTa ships it: vocab.json + merges.txt + tokenizer.json (no tokenizer_config)."""
    from .demo import _train_tokenizer

    fast = _train_tokenizer("roberta", texts, vocab_size)
    fast._tokenizer.model.save(str(out))                  # vocab.json, merges.txt
    fast._tokenizer.save(str(out / "tokenizer.json"))


def _state_dict(name: str, family: str, cfg_dict: dict, seed: int):
    """(the base model, the repository's state_dict) with the repository's key layout."""
    import torch
    import transformers as tf

    cfg_dict = copy.deepcopy(cfg_dict)
    torch.manual_seed(seed)
    if family == "hubert":
        model = tf.HubertModel(tf.HubertConfig(**cfg_dict))
        return model, model.state_dict()
    if family == "wav2vec2":
        full = tf.Wav2Vec2ForPreTraining(tf.Wav2Vec2Config(**cfg_dict))
        return full.wav2vec2, full.state_dict()
    if family == "roberta":
        full = tf.RobertaForMaskedLM(tf.RobertaConfig(**cfg_dict))
        sd = {k: v for k, v in full.state_dict().items() if k != "lm_head.decoder.weight"}   # tied to the embeddings
        return full.roberta, sd
    if family == "deberta-v2":
        model = tf.DebertaV2Model(tf.DebertaV2Config(**cfg_dict))
        d, v = model.config.hidden_size, model.config.vocab_size
        g = torch.Generator().manual_seed(seed + 1)
        sd = {f"deberta.{k}": t for k, t in model.state_dict().items()}
        sd.update({"lm_predictions.lm_head.dense.weight": 0.02 * torch.randn(d, d, generator=g),
                   "lm_predictions.lm_head.dense.bias": torch.zeros(d),
                   "lm_predictions.lm_head.LayerNorm.weight": torch.ones(d),
                   "lm_predictions.lm_head.LayerNorm.bias": torch.zeros(d),
                   "lm_predictions.lm_head.bias": torch.zeros(v)})
        return model, sd
    raise ValueError(f"no real-shaped layout for family {family!r}")


def make_real_shaped_checkpoint(name: str, out_dir: str, *, seed: int = 0, texts: Sequence[str] | None = None,
                                vocab_size: int = 8000, config_overrides: dict | None = None) -> dict:
    """Write the real-shaped random checkpoint ``name`` (a key of :data:`REAL_CONFIGS`) to ``out_dir`` atomically.

    ``texts`` train the tokenizer (text models); ``config_overrides`` shrink a model for a fast
    test (the result is then no longer real-shaped, and ``real_shapes.json`` says so).
    Returns the ``real_shapes.json`` record.
    """
    import torch

    if name not in REAL_CONFIGS:
        raise ValueError(f"no real config for {name!r}; known: {sorted(REAL_CONFIGS)}")
    cfg = {**copy.deepcopy(REAL_CONFIGS[name]), **dict(config_overrides or {})}
    family = cfg["model_type"]
    with atomic_dir(out_dir) as tmp:
        model, sd = _state_dict(name, family, cfg, seed)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        wf = WEIGHTS_FILE[family]
        seen, unique = set(), {}
        for k, v in sd.items():   # tied tensors (RoBERTa's lm_head biases) are stored once, as the hub files do
            if v.data_ptr() not in seen or v.numel() == 0:
                seen.add(v.data_ptr())
                unique[k] = v.contiguous()
        sd = unique
        if wf == "model.safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(tmp / wf), metadata={"format": "pt"})
        else:
            torch.save(sd, tmp / wf)
        info = {"name": name, "seed": seed, "real_shaped": not config_overrides, "config_overrides": config_overrides or {},
                "n_params": int(sum(p.numel() for p in model.parameters()))}
        if family in ("hubert", "wav2vec2") and name != "facebook/hubert-base-ls960":
            write_json(tmp / "preprocessor_config.json",
                       {**_PREPROCESSOR, "return_attention_mask": cfg["feat_extract_norm"] == "layer"})
        if family == "wav2vec2":
            write_json(tmp / "vocab.json", {s: i for i, s in enumerate(W2V2_VOCAB)})
            write_json(tmp / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                                         "pad_token": "<pad>"})
            write_json(tmp / "tokenizer_config.json", {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
                                                       "pad_token": "<pad>", "do_lower_case": False,
                                                       "word_delimiter_token": "|"})
        if family in ("roberta", "deberta-v2"):
            tx = _texts(texts)
            info.update(n_texts=len(tx), texts_sha256=hashlib.sha256("\n".join(tx).encode()).hexdigest())
            if family == "roberta":
                _roberta_tokenizer(tx, vocab_size, tmp)
            else:
                (tmp / "spm.model").write_bytes(_sentencepiece(tx, vocab_size))
                write_json(tmp / "tokenizer_config.json", {"do_lower_case": False, "vocab_type": "spm"})
        info["files_sha256"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / "real_shapes.json", info)
    return info
