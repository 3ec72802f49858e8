"""Tiny random-initialised checkpoints of the real augmentation models, in the real layouts.

Neither NLLB-200 nor YourTTS weights can be had offline, so these builders write directories
that the real backends load with exactly the code that loads the released models:

* :func:`make_tiny_nllb`: an ``M2M100ForConditionalGeneration`` (d_model 32, one encoder and
  one decoder layer) with an ``NllbTokenizerFast`` whose BPE is trained offline on ``texts``
  (the corpus transcripts) and which knows all 202 NLLB language codes, saved with
  ``save_pretrained`` as ``facebook/nllb-200-distilled-600M`` is (``config.json``,
  ``generation_config.json``, ``model.safetensors``, ``tokenizer.json``, ...).
* :func:`make_tiny_yourtts`: a coqui-tts VITS with d-vector input (16-d), a language embedding
  and the speaker-consistency flag as YourTTS has them (hidden 16, one layer per block,
  16 kHz), plus a random H/ASP ResNet speaker encoder (the class YourTTS uses; 16 mel bands,
  torch spectrogram) -- as the released directory: ``model_file.pth``, ``config.json``,
  ``model_se.pth``, ``config_se.json``, ``language_ids.json``.  Its ``config.json`` names the
  files under the path a coqui download would have used, as a copied release does; the
  backend re-points them.

Random weights speak noise and translate into word salad: these test code paths, not quality.
Each directory gets ``demo_checkpoint.json`` (seed, sizes, sha256 of every file); same
arguments -> same bytes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..io import atomic_dir, sha256_file, write_json

# Where coqui-tts would have unpacked the release: the released config.json holds such paths.
RELEASE_DIR = "/root/.local/share/tts/tts_models--multilingual--multi-dataset--your_tts"
YOURTTS_LANGUAGES = {"en": 0, "fr-fr": 1, "pt-br": 2}
GRAPHEMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\u00e0\u00e2\u00e7\u00e8\u00e9\u00ea\u00ee\u00f4\u00f9\u00fb"


def _atomic_dir(out_dir: str | os.PathLike, build: Callable[[Path], dict]) -> dict:
    """``build`` fills a fresh directory that replaces ``out_dir`` whole (:func:`emorepro.io.atomic_dir`)."""
    with atomic_dir(out_dir) as tmp:
        info = build(tmp)
        info["files_sha256"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / "demo_checkpoint.json", info)
    return info


def make_tiny_nllb(out_dir: str | os.PathLike, seed: int, texts: Sequence[str], *, vocab_size: int = 600) -> dict:
    """A tiny NLLB-layout checkpoint; its tokenizer is trained on ``texts``."""
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("make_tiny_nllb: no non-empty texts to train the tokenizer on")

    def build(d: Path) -> dict:
        import torch
        from tokenizers import (
            Tokenizer,
            decoders,
            models,
            normalizers,
            pre_tokenizers,
            trainers,
        )
        from transformers import (
            M2M100Config,
            M2M100ForConditionalGeneration,
            NllbTokenizerFast,
        )
        from transformers.models.nllb.tokenization_nllb_fast import (
            FAIRSEQ_LANGUAGE_CODES,
        )

        # NLLB's SentencePiece BPE: specials 0-3 as NLLB has them, then the language codes, then <mask>.
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
        specials = ["<s>", "<pad>", "</s>", "<unk>", *FAIRSEQ_LANGUAGE_CODES, "<mask>"]
        tok.train_from_iterator(texts, trainer=trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                                  show_progress=False))
        fast = NllbTokenizerFast(tokenizer_object=tok, src_lang="eng_Latn", model_max_length=1024)
        cfg = M2M100Config(vocab_size=len(fast), d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           max_position_embeddings=1024, pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                           eos_token_id=fast.eos_token_id, decoder_start_token_id=fast.eos_token_id,
                           scale_embedding=True, architectures=["M2M100ForConditionalGeneration"])
        torch.manual_seed(seed)
        model = M2M100ForConditionalGeneration(cfg).eval()
        model.save_pretrained(d, safe_serialization=True)
        fast.save_pretrained(d)
        return {"family": "nllb (M2M100)", "seed": seed, "n_params": int(sum(p.numel() for p in model.parameters())),
                "vocab_size": len(fast), "n_texts": len(texts),
                "texts_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}

    return _atomic_dir(out_dir, build)


def make_tiny_yourtts(out_dir: str | os.PathLike, seed: int) -> dict:
    """A tiny YourTTS-layout checkpoint (VITS with d-vectors + H/ASP ResNet speaker encoder)."""

    def build(d: Path) -> dict:
        import torch
        from TTS.config.shared_configs import BaseAudioConfig
        from TTS.encoder.configs.speaker_encoder_config import SpeakerEncoderConfig
        from TTS.encoder.utils.generic_utils import setup_encoder_model
        from TTS.tts.configs.shared_configs import CharactersConfig
        from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
        from TTS.tts.models import setup_model

        se_audio = BaseAudioConfig(sample_rate=16000, num_mels=16, fft_size=512, win_length=400, hop_length=160,
                                   preemphasis=0.97, resample=False, do_trim_silence=True, trim_db=60)
        se_cfg = SpeakerEncoderConfig(audio=se_audio, num_loader_workers=0, num_classes_in_batch=2,
                                      num_utter_per_class=2,
                                      model_params={"model_name": "resnet", "input_dim": 16, "proj_dim": 16,
                                                    "use_torch_spec": True, "log_input": True})
        torch.manual_seed(seed)
        se = setup_encoder_model(se_cfg).eval()
        torch.save({"model": se.state_dict()}, d / "model_se.pth")
        se_cfg.save_json(str(d / "config_se.json"))
        (d / "language_ids.json").write_text(json.dumps(YOURTTS_LANGUAGES, indent=4) + "\n")

        args = VitsArgs(
            hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2, num_layers_text_encoder=1,
            num_layers_posterior_encoder=1, num_layers_flow=1, resblock_type_decoder="2",
            resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3]],
            upsample_initial_channel_decoder=16, init_discriminator=False,
            use_d_vector_file=True, d_vector_dim=16, d_vector_file=[f"{RELEASE_DIR}/speakers.json"],
            use_language_embedding=True, embedded_language_dim=4, language_ids_file=f"{RELEASE_DIR}/language_ids.json",
            use_speaker_encoder_as_loss=True, speaker_encoder_model_path=f"{RELEASE_DIR}/model_se.pth",
            speaker_encoder_config_path=f"{RELEASE_DIR}/config_se.json")
        audio = BaseAudioConfig(sample_rate=16000, hop_length=256, win_length=1024, fft_size=1024, num_mels=80,
                                resample=False)
        chars = CharactersConfig(characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos="&", bos="*",
                                 blank=None, characters=GRAPHEMES, punctuations="!'(),-.:;? ", phonemes="",
                                 is_unique=True, is_sorted=True)
        cfg = VitsConfig(model_args=args, audio=audio, characters=chars, use_phonemes=False,
                         text_cleaner="multilingual_cleaners", add_blank=True, use_d_vector_file=True, d_vector_dim=16,
                         d_vector_file=[f"{RELEASE_DIR}/speakers.json"])
        # Build against this directory's files, then save the config with the release paths (as a copied release).
        build_cfg = copy.deepcopy(cfg)
        build_cfg.model_args.speaker_encoder_model_path = str(d / "model_se.pth")
        build_cfg.model_args.speaker_encoder_config_path = str(d / "config_se.json")
        build_cfg.model_args.language_ids_file = str(d / "language_ids.json")
        build_cfg.model_args.d_vector_file = build_cfg.d_vector_file = None
        torch.manual_seed(seed + 1)
        model = setup_model(build_cfg).eval()
        torch.save({"model": model.state_dict()}, d / "model_file.pth")
        cfg.save_json(str(d / "config.json"))
        n_tts = sum(v.numel() for v in model.state_dict().values())
        return {"family": "yourtts (VITS + H/ASP speaker encoder)", "seed": seed, "n_params": int(n_tts),
                "n_params_speaker_encoder": int(sum(p.numel() for p in se.parameters())), "d_vector_dim": 16,
                "sample_rate": 16000}

    return _atomic_dir(out_dir, build)


DEMO_BUILDERS = {"nllb": make_tiny_nllb, "yourtts": make_tiny_yourtts}
