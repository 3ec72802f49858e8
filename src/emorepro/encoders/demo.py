"""Demo encoders: tiny (or base-size) random-initialised checkpoints of the real classes.

``make_demo_checkpoint(family, out_dir, seed)`` writes an ordinary local checkpoint
directory (``save_pretrained``), so a demo encoder goes through exactly the code path of a
real one: ``load_encoder(EncoderSpec(..., backend="transformers", checkpoint=out_dir))``.

* audio families (``hubert``, ``wav2vec2``): config + ``model.safetensors`` +
  ``preprocessor_config.json`` (``Wav2Vec2FeatureExtractor``).  ``size="tiny"``: hidden 64,
  2 layers, 4 heads, 7 conv layers of 32 channels (the real strides, so 50 frames/s);
  ``size="base"``: the default HuBERT-base / wav2vec2-base config (~94 M parameters).
* text families (``roberta``, ``deberta-v2``, ``bert``): a tokenizer trained offline on
  ``texts`` with the ``tokenizers`` library (byte-level BPE for RoBERTa, Unigram for
  DeBERTa-v2 as its SentencePiece model is, WordPiece for BERT), saved as a fast tokenizer
  (``tokenizer.json``) loadable with ``AutoTokenizer``.

Every directory gets ``demo_checkpoint.json``: family, size, seed, parameter count, the
sha256 of each tokenizer file and of the training texts.  Same arguments -> same bytes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

from ..io import atomic_dir, sha256_file, write_json

DEFAULT_TEXTS = [
    "I can't believe you did that, this is wonderful news.",
    "Leave me alone, I don't want to talk about it.",
    "Well, I guess we could go to the beach tomorrow.",
    "Why would you say something like that to me?",
    "Oh my god, that's amazing, congratulations!",
    "I'm so tired of waiting for you every single day.",
    "It's fine. Really. Whatever you want.",
    "Do you remember the house by the lake?",
]

TINY_AUDIO = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                  vocab_size=32)
TINY_TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 max_position_embeddings=130)


def _texts_or_default(texts: Sequence[str] | None) -> list[str]:
    texts = [t for t in (texts or DEFAULT_TEXTS) if t]
    if not texts:
        raise ValueError("no non-empty texts to train the demo tokenizer on")
    return texts


def _train_tokenizer(family: str, texts: list[str], vocab_size: int):
    """A ``PreTrainedTokenizerFast`` trained on ``texts``, with the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if family == "roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                          add_prefix_space=False, trim_offsets=True)
        kw = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                  pad_token="<pad>", mask_token="<mask>")
    elif family == "deberta-v2":
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Replace("''", '"')])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="[UNK]",
                                          show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        kw = dict(bos_token="[CLS]", eos_token="[SEP]", sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]",
                  pad_token="[PAD]", mask_token="[MASK]")
    elif family == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        kw = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    else:
        raise ValueError(f"no demo tokenizer for family {family!r}")
    if family in ("deberta-v2", "bert"):
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, padding_side="right", **kw)
    return fast


def _model_and_config(family: str, size: str, vocab_size: int | None, pad_id: int | None, overrides: dict):
    import transformers as tf

    if size not in ("tiny", "base"):
        raise ValueError(f"size must be 'tiny' or 'base', not {size!r}")
    if family in ("hubert", "wav2vec2"):
        kw = dict(TINY_AUDIO) if size == "tiny" else {}
        kw.update(overrides)
        cfg_cls, model_cls = (tf.HubertConfig, tf.HubertModel) if family == "hubert" else (tf.Wav2Vec2Config, tf.Wav2Vec2Model)
        cfg = cfg_cls(**kw)
    elif family in ("roberta", "deberta-v2", "bert"):
        kw = dict(TINY_TEXT) if size == "tiny" else {}
        kw.update(vocab_size=vocab_size, pad_token_id=pad_id)
        if family == "roberta":
            kw["max_position_embeddings"] = kw.get("max_position_embeddings", 512) + pad_id + 1
            kw.update(bos_token_id=0, eos_token_id=2)
            cfg_cls, model_cls = tf.RobertaConfig, tf.RobertaModel
        elif family == "deberta-v2":
            kw.update(relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
                      max_relative_positions=-1, position_buckets=32 if size == "tiny" else 256, norm_rel_ebd="layer_norm",
                      share_att_key=True, type_vocab_size=0)
            cfg_cls, model_cls = tf.DebertaV2Config, tf.DebertaV2Model
        else:
            cfg_cls, model_cls = tf.BertConfig, tf.BertModel
        kw.update(overrides)
        cfg = cfg_cls(**kw)
    else:
        raise ValueError(f"no demo model for family {family!r}; known: hubert, wav2vec2, roberta, deberta-v2, bert")
    cfg.architectures = [model_cls.__name__]
    return model_cls, cfg


def make_demo_checkpoint(family: str, out_dir: str, seed: int, texts: list[str] | None = None,
                         size: str = "tiny", config_overrides: dict | None = None,
                         vocab_size: int = 400) -> None:
    """Write a seeded random-init checkpoint directory of ``family`` to ``out_dir`` (atomically).

    ``config_overrides``: extra config fields (e.g. ``{"feat_extract_norm": "layer",
    "do_stable_layer_norm": True}`` for a HuBERT/wav2vec2-large-like layout).
    ``vocab_size``: target size of the trained text tokenizer (tiny corpora give fewer).
    """
    import torch

    overrides = dict(config_overrides or {})
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_dir() and any(out.iterdir()) and not (out / "demo_checkpoint.json").is_file():
        # never replace a directory this function did not write (e.g. a real checkpoint given by mistake)
        raise FileExistsError(f"{out}: exists, is not empty and holds no demo_checkpoint.json; refusing to replace it")
    with atomic_dir(out) as tmp:
        info: dict = {"family": family, "size": size, "seed": seed, "config_overrides": overrides}
        tokenizer = None
        if family in ("roberta", "deberta-v2", "bert"):
            tx = _texts_or_default(texts)
            tokenizer = _train_tokenizer(family, tx, vocab_size)
            info["texts_sha256"] = hashlib.sha256("\n".join(tx).encode()).hexdigest()
            info["n_texts"] = len(tx)
        model_cls, cfg = _model_and_config(
            family, size, len(tokenizer) if tokenizer is not None else None,
            tokenizer.pad_token_id if tokenizer is not None else None, overrides)
        torch.manual_seed(seed)
        model = model_cls(cfg).eval()
        model.save_pretrained(tmp, safe_serialization=True)
        info["n_params"] = int(sum(p.numel() for p in model.parameters()))
        if tokenizer is not None:
            files = tokenizer.save_pretrained(tmp)
            info["tokenizer_sha256"] = {Path(f).name: sha256_file(f) for f in sorted(files) if os.path.isfile(f)}
        else:
            from transformers import Wav2Vec2FeatureExtractor

            feat_norm = getattr(cfg, "feat_extract_norm", "group")
            Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                     return_attention_mask=feat_norm == "layer").save_pretrained(tmp)
        info["files_sha256"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / "demo_checkpoint.json", info)
