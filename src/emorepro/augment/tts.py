"""Text-to-speech backends for MMER's augmentation: ``yourtts`` or ``espeak``.

* ``yourtts`` (the paper's TTS, Casanova et al. 2022): coqui-tts' VITS with d-vector
  conditioning, loaded from a local copy of the released model directory
  (``model_file.pth``, ``config.json``, the H/ASP speaker encoder ``model_se.pth`` +
  ``config_se.json``, and ``language_ids.json``).  The released config names the paths of the
  machine that downloaded it; they are pointed at this directory in memory (the file is not
  changed).  Conditioning: the d-vector of the target speaker is the mean speaker-encoder
  embedding of that speaker's utterances *with the source's class* (the paper: "all utterances
  from a speaker ... expressing a similar emotion"); ``speaker_embedding: all`` takes all of
  the speaker's utterances instead (the authors' demo script).  Speaker-encoder input follows
  coqui's own ``compute_embedding_from_clip`` (silence trim and normalisation as the encoder's
  audio config says) but is read with soundfile.  Synthesis as the authors' script:
  ``length_scale`` 1.5 and both noise scales 0 (deterministic), language ``en``.
* ``espeak`` (the offline default): espeak-ng in the target speaker's voice (``voices``, or a
  seeded voice per speaker from the gender's espeak-ng variants) with the source label's
  prosody (:data:`emorepro.corpus.synth.PROSODY`) and a small seeded jitter; espeak has no
  emotion-bearing speaker embedding.  On the espeak-spoken demo corpus these copies are
  in-distribution, so ACL is easier than with YourTTS on real speech.

Both return float32 mono audio at the corpus rate (16 kHz), resampled with ``resample_poly``.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from ..io import InputError
from .backtranslate import config_from_dict
from .copies import seeded_rng

log = logging.getLogger(__name__)

BACKENDS = ("yourtts", "espeak")
SPEAKER_EMBEDDINGS = ("same_label", "all")
# File names of the released YourTTS directory (as coqui-tts' model manager looks them up).
YOURTTS_FILES = {
    "model": ("model_file.pth", "model_file.pth.tar", "model.pth", "checkpoint.pth"),
    "config": ("config.json",),
    "speaker encoder": ("model_se.pth", "model_se.pth.tar"),
    "speaker-encoder config": ("config_se.json",),
}
# espeak-ng voice variants a speaker without a configured voice is drawn from, by gender.
ESPEAK_POOLS = {
    "F": [f"{acc}+f{i}" for acc in ("en-us", "en-gb") for i in range(1, 6)],
    "M": [f"{acc}+m{i}" for acc in ("en-us", "en-gb") for i in range(1, 8)],
}


@dataclass
class TTSConfig:
    """Config ``corpora.<aug>.augment.tts`` (defaults as config/schema.yaml)."""

    backend: str = "espeak"
    checkpoint: str | None = None       # yourtts: the released model directory
    language: str = "en"
    length_scale: float = 1.5           # the authors' YourTTS script
    noise_scale: float = 0.0
    noise_scale_dp: float = 0.0
    speaker_embedding: str = "same_label"
    voices: dict | None = None          # espeak: speaker -> espeak-ng voice; null = seeded by gender
    noise_db: float = -45.0             # espeak: white-noise floor (as the synthetic corpus)
    device: str | None = None           # yourtts: cuda if available, else cpu
    demo: dict | None = None            # tiny random-init checkpoint built by the pipeline (config only)

    @classmethod
    def from_dict(cls, d: dict, key: str = "tts") -> TTSConfig:
        cfg = config_from_dict(cls, d, key, BACKENDS)
        if cfg.speaker_embedding not in SPEAKER_EMBEDDINGS:
            raise InputError(f"config: {key}.speaker_embedding: {cfg.speaker_embedding!r} is not one of "
                             f"{list(SPEAKER_EMBEDDINGS)}")
        return cfg


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def read_mono(path: str, sr_out: int) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(x.mean(axis=1), sr, sr_out)


# --------------------------------------------------------------------------- espeak

class EspeakTTS:
    """espeak-ng in the target speaker's voice with the source label's prosody."""

    name = "espeak"

    def __init__(self, cfg: TTSConfig, speakers: Mapping[str, str], *, seed: int, sample_rate: int = 16_000,
                 key: str = "tts"):
        if shutil.which("espeak-ng") is None:
            raise InputError("espeak-ng: executable not found on PATH (apt package espeak-ng; "
                             f"config: {key}.backend espeak)")
        self.cfg, self.sr, self.seed, self.key = cfg, sample_rate, seed, key
        self.voices = self._voices(speakers)
        for v in sorted(set(self.voices.values())):
            r = subprocess.run(["espeak-ng", "-v", v, "-q", "a"], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise InputError(f"config: {key}.voices: espeak-ng has no voice {v!r} ({r.stderr.strip()})")

    def _voices(self, speakers: Mapping[str, str]) -> dict[str, str]:
        if self.cfg.voices is not None:
            missing = sorted(s for s in speakers if s not in self.cfg.voices)
            if missing:
                raise InputError(f"config: {self.key}.voices: no voice for speaker(s) {missing}")
            return {s: str(self.cfg.voices[s]) for s in speakers}
        out = {}
        for g in sorted({str(x) for x in speakers.values()}):
            pool = ESPEAK_POOLS.get(g, ESPEAK_POOLS["F"] + ESPEAK_POOLS["M"])
            pool = [pool[i] for i in seeded_rng(self.seed, "espeak-voices", g).permutation(len(pool))]
            for i, s in enumerate(sorted(s for s, gg in speakers.items() if str(gg) == g)):
                out[s] = pool[i % len(pool)]
        return out

    def prepare(self, manifest, plan) -> dict:
        return {"voices": dict(sorted(self.voices.items()))}

    def speak(self, row: Mapping, text: str, tmpdir: Path) -> np.ndarray:
        from ..corpus.synth import ESPEAK_RATE, PROSODY, espeak_wav

        p0, r0, a0 = PROSODY.get(row["source_label_raw"]) or PROSODY.get(row["label"]) or PROSODY["neu"]
        rng = seeded_rng(self.seed, "espeak", row["aug_id"])
        pitch = int(np.clip(p0 + rng.normal(0, 4), 0, 99))
        rate = int(np.clip(r0 + rng.normal(0, 8), 80, 320))
        amp = int(np.clip(a0 + rng.normal(0, 6), 20, 190))
        x = espeak_wav(text, self.voices[row["target_speaker"]], pitch, rate, amp, tmpdir / f"{row['aug_id']}.wav")
        x = resample(x, ESPEAK_RATE, self.sr)
        noise = rng.normal(0, 10 ** (self.cfg.noise_db / 20), x.shape).astype(np.float32)
        return np.clip(x + noise, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------- yourtts

def _find(d: Path, what: str, key: str) -> Path:
    names = YOURTTS_FILES[what]
    for n in names:
        if (d / n).is_file():
            return d / n
    alt = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    raise InputError(f"{d / names[0]}: missing from the YourTTS checkpoint: the {what}{alt} "
                     f"(config: {key}.checkpoint)")


class YourTTS:
    """coqui-tts YourTTS (VITS + d-vectors from its speaker encoder) from a local directory."""

    name = "yourtts"

    def __init__(self, cfg: TTSConfig, *, seed: int, sample_rate: int = 16_000, key: str = "tts"):
        if not cfg.checkpoint:
            raise InputError(f"config: {key}.checkpoint: required for the yourtts backend (the model directory)")
        d = Path(cfg.checkpoint)
        if not d.is_dir():
            raise InputError(f"{d}: YourTTS checkpoint directory does not exist (config: {key}.checkpoint)")
        files = {w: _find(d, w, key) for w in YOURTTS_FILES}
        import torch
        from TTS.config import load_config
        from TTS.tts.models import setup_model

        self.cfg, self.seed, self.sr, self.key = cfg, seed, sample_rate, key
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        config = load_config(str(files["config"]))
        ma = config.model_args
        # The released config names files on the machine that downloaded it: point them here (in memory).
        ma.speaker_encoder_model_path = str(files["speaker encoder"])
        ma.speaker_encoder_config_path = str(files["speaker-encoder config"])
        ma.d_vector_file = None  # the training speakers' d-vectors are not needed: ours come from the encoder
        if "d_vector_file" in config:
            config.d_vector_file = None
        if ma.get("use_language_embedding"):
            lang_file = d / "language_ids.json"
            if not lang_file.is_file():
                raise InputError(f"{lang_file}: missing from the YourTTS checkpoint (the model has a language "
                                 f"embedding; config: {key}.checkpoint)")
            ma.language_ids_file = str(lang_file)
            if "language_ids_file" in config:
                config.language_ids_file = str(lang_file)
        self.model = setup_model(config)
        self.model.load_checkpoint(config, str(files["model"]), eval=True)
        self.model.to(self.device)
        sm = self.model.speaker_manager
        if sm is None or sm.encoder is None:
            raise InputError(f"{files['config']}: not a d-vector model with a speaker encoder "
                             "(model_args.use_d_vector_file and speaker_encoder_* must be set)")
        self.model.length_scale = cfg.length_scale
        self.model.inference_noise_scale = cfg.noise_scale
        self.model.inference_noise_scale_dp = cfg.noise_scale_dp
        lm = self.model.language_manager
        self.language_id = None
        if ma.get("use_language_embedding"):
            if cfg.language not in lm.name_to_id:
                raise InputError(f"config: {key}.language: {cfg.language!r} is not a language of the model "
                                 f"({sorted(lm.name_to_id)})")
            self.language_id = lm.name_to_id[cfg.language]
        self.out_sr = int(config.audio.get("output_sample_rate") or config.audio["sample_rate"])
        self.files = {w: str(p) for w, p in files.items()}
        self.d_vectors: dict[tuple[str, str], np.ndarray] = {}

    def _embed(self, wav: str) -> np.ndarray:
        import torch

        sm = self.model.speaker_manager
        ap = sm.encoder_ap
        x = read_mono(wav, ap.sample_rate)
        if ap.do_trim_silence:
            x = ap.trim_silence(x)
        if ap.do_sound_norm:
            x = ap.sound_norm(x)
        m = x if sm.encoder_config.model_params.get("use_torch_spec", False) else ap.melspectrogram(x)
        with torch.inference_mode():
            e = sm.encoder.compute_embedding(torch.from_numpy(np.ascontiguousarray(m)).float().unsqueeze(0)
                                             .to(self.device))
        return e[0].float().cpu().numpy()

    def prepare(self, manifest, plan) -> dict:
        """d-vector of every (target speaker, class) the plan needs; each clip is embedded once."""
        from tqdm.auto import tqdm

        lab = manifest[manifest["label"].fillna("") != ""]
        need = sorted(set(zip(plan["target_speaker"], plan["label"])))
        clips: dict[tuple[str, str], list[str]] = {}
        for spk, label in need:
            rows = lab[lab["speaker"] == spk]
            if self.cfg.speaker_embedding == "same_label" and (rows["label"] == label).any():
                rows = rows[rows["label"] == label]
            clips[(spk, label)] = sorted(rows["wav"])
        per_clip: dict[str, np.ndarray] = {}
        todo = sorted({w for ws in clips.values() for w in ws})
        for w in tqdm(todo, desc="speaker embeddings (yourtts)", unit="clip", mininterval=5):
            per_clip[w] = self._embed(w)
        for k, ws in clips.items():
            self.d_vectors[k] = np.mean([per_clip[w] for w in ws], axis=0)
        return {"speaker_embedding": self.cfg.speaker_embedding, "n_clips_embedded": len(todo),
                "clips_per_d_vector": {f"{s}/{lab_}": len(ws) for (s, lab_), ws in sorted(clips.items())},
                "files": self.files, "language": self.cfg.language, "length_scale": self.cfg.length_scale,
                "noise_scale": self.cfg.noise_scale, "noise_scale_dp": self.cfg.noise_scale_dp}

    def speak(self, row: Mapping, text: str, tmpdir: Path) -> np.ndarray:
        import torch

        ids = self.model.tokenizer.text_to_ids(text, language=self.cfg.language)
        if not ids:
            raise InputError(f"copy {row['aug_id']}: text {text!r} has no symbol the YourTTS model knows")
        d = torch.from_numpy(self.d_vectors[(row["target_speaker"], row["label"])]).float().unsqueeze(0)
        aux = {"d_vectors": d.to(self.device),
               "language_ids": None if self.language_id is None else torch.tensor([self.language_id], device=self.device)}
        torch.manual_seed(int(seeded_rng(self.seed, "yourtts", row["aug_id"]).integers(2**31)))
        out = self.model.inference(torch.tensor([ids], dtype=torch.long, device=self.device), aux_input=aux)
        x = out["model_outputs"][0].reshape(-1).float().cpu().numpy()
        return np.clip(resample(x, self.out_sr, self.sr), -1, 1)


def make_tts(cfg: TTSConfig, speakers: Mapping[str, str], *, seed: int, sample_rate: int = 16_000, key: str = "tts"):
    """The configured backend; ``speakers`` maps every target speaker to its gender."""
    if cfg.backend == "espeak":
        return EspeakTTS(cfg, speakers, seed=seed, sample_rate=sample_rate, key=key)
    return YourTTS(cfg, seed=seed, sample_rate=sample_rate, key=key)


def espeak_version() -> str | None:
    try:
        return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip() or None
    except OSError:
        return None

