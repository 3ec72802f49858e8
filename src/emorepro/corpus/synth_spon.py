"""A synthetic *spontaneous, telephone* corpus written as a generic CSV corpus (demo SPON).

Zhang et al. (2022) combine IEMOCAP (acted) with a proprietary Japanese call-center corpus
(SPON: 6,597 utterances, about 750 speakers, no speaker labels).  Nobody but the authors has
that corpus, so the demo generates a stand-in that differs from the synthetic IEMOCAP
(:mod:`emorepro.corpus.synth`) in the ways the paper names (Sec. 4.5: speakers, language,
recording conditions) and in expressiveness:

* **telephone channel**: espeak-ng output is resampled to 8 kHz, band-passed to
  300-3400 Hz, mu-law companded (G.711, 8 bit), given line noise, then resampled back to
  16 kHz, so there is (almost) no energy above 4 kHz;
* **flatter prosody**: the emotion's pitch/rate/loudness offsets from neutral are scaled by
  ``expressiveness`` (acted = 1), the pitch range is narrowed (SSML ``prosody range``), and
  an automatic gain control levels the loudness of every utterance;
* **more speakers**: ``n_speakers`` voices (espeak-ng Japanese variants with per-speaker
  pitch and rate offsets), drawn at random per utterance; the CSV has **no speaker column**;
* **label distribution proportional to SPON** (anger 3,029, sad 692, happy 876, neutral
  2,000; plus ``disgust``, which the paper drops), with counts fixed by largest remainder;
* **mostly shared wording**: most sentences are emotion-neutral call-center phrases, so
  the words carry little emotion.

Neutral keeps the same pitch/rate targets as the acted corpus's neutral: the paper's
hypothesis (neutral is style-independent) is thereby built into the demo data, which
should be said whenever demo numbers are read as evidence.

Everything is a function of the seed (one ``numpy.random.Generator`` plans every utterance;
espeak-ng and the filters are deterministic).
"""
from __future__ import annotations

import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ..io import InputError, write_csv, write_json
from .synth import ESPEAK_RATE, PROSODY, SAMPLE_RATE, espeak_wav
from .synth_guard import check_target, staged_tree

log = logging.getLogger(__name__)

GENERATOR = "emorepro.corpus.synth_spon.synthesize_spon"

PHONE_RATE = 8_000                 # narrow-band telephone
PHONE_BAND = (300.0, 3400.0)       # ITU-T telephone band (Hz)
MU = 255                           # G.711 mu-law

# Paper Table 1 (SPON) and the raw label names of the demo CSV.
SPON_COUNTS = {"angry": 3029, "sad": 692, "happy": 876, "neutral": 2000}
RAW_TO_PROSODY = {"angry": "ang", "sad": "sad", "happy": "hap", "neutral": "neu", "disgust": "dis"}

# Call-center phrases (hiragana: the espeak-ng Japanese voice reads kana).  Most utterances
# use SHARED phrases whatever their emotion; a few use an emotion-specific one.
SHARED = [
    "もしもし、おせわになっております", "ちゅうもんのけんでおでんわしました", "ばんごうをかくにんしてもよろしいですか",
    "しょうしょうおまちください", "はい、わかりました", "あしたのごごにとどくよていです",
    "けいやくのないようについてききたいです", "もういちどおねがいします", "てつづきはおわっています",
    "にもつがまだとどいていません", "たんとうのものにかわります", "せつめいしょをよみました",
]
SPECIFIC = {
    "angry": ["なんかいでんわさせるんですか", "いいかげんにしてください", "はやくなんとかしてください"],
    "happy": ["ほんとうにたすかりました", "ありがとうございます、うれしいです", "すばらしいですね"],
    "sad": ["こまってしまって、どうしたらいいか", "ざんねんです", "もうだめかもしれません"],
    "neutral": ["じゅうしょをかえたいのですが", "かくにんします", "よろしくおねがいします"],
    "disgust": ["ほんとうにいやなたいおうですね", "もうけっこうです"],
}
VARIANTS = ["f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]


@dataclass
class SponSynthConfig:
    """Size, label mix and channel of the synthetic spontaneous corpus (config ``corpora.<name>.synth``)."""

    seed: int = 0
    n_utterances: int = 320            # demo size; the real SPON has 6,597
    n_speakers: int = 60               # the real SPON has about 750 (no labels)
    label_probs: dict[str, float] = field(default_factory=lambda: {**SPON_COUNTS, "disgust": 200})
    expressiveness: float = 0.5        # scale of the emotion offsets from neutral (acted corpus = 1)
    pitch_range: float = 35.0          # SSML prosody range in % of espeak's default (acted corpus = 100)
    noise_db: float = -38.0            # line noise at 8 kHz, dBFS
    agc_db: float = -22.0              # RMS level every utterance is levelled to (dBFS), +/- 1.5 dB
    specific_phrase_prob: float = 0.3  # share of sentences with an emotion-specific phrase
    voice: str = "ja"                  # espeak-ng language of the callers
    threads: int = 2

    def __post_init__(self):
        where = "synth (config corpora.<name>.synth)"
        for key in ("n_utterances", "n_speakers", "threads"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"{where}: {key} must be >= 1, got {getattr(self, key)}")


def label_counts(probs: dict[str, float], n: int) -> dict[str, int]:
    """Exact counts proportional to ``probs`` (largest remainder; ties by label name)."""
    labels = sorted(probs)
    w = np.array([float(probs[k]) for k in labels])
    if (w < 0).any() or w.sum() <= 0:
        raise InputError(f"config: synth.label_probs must be non-negative with a positive sum, got {probs}")
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(int)
    order = sorted(range(len(labels)), key=lambda i: (-(exact[i] - counts[i]), labels[i]))
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return {k: int(c) for k, c in zip(labels, counts)}


def telephone_channel(x: np.ndarray, sr: int, rng: np.random.Generator, noise_db: float, agc_db: float) -> np.ndarray:
    """``sr`` Hz float waveform -> 16 kHz waveform with the 8 kHz telephone channel applied."""
    from math import gcd

    from scipy.signal import butter, resample_poly, sosfilt

    g = gcd(PHONE_RATE, sr)
    y = resample_poly(x, PHONE_RATE // g, sr // g)                       # anti-aliased down to 8 kHz
    sos = butter(4, PHONE_BAND, btype="bandpass", fs=PHONE_RATE, output="sos")
    y = sosfilt(sos, y)
    rms = np.sqrt(np.mean(y ** 2)) + 1e-9
    y = y * (10 ** ((agc_db + rng.uniform(-1.5, 1.5)) / 20) / rms)       # AGC: loudness is levelled
    y = y + rng.normal(0, 10 ** (noise_db / 20), y.shape)                # line noise, in the band
    y = np.clip(y, -1, 1)
    q = np.round(np.sign(y) * np.log1p(MU * np.abs(y)) / np.log1p(MU) * 127) / 127   # 8-bit mu-law
    y = np.sign(q) * np.expm1(np.abs(q) * np.log1p(MU)) / MU
    z = resample_poly(y, SAMPLE_RATE // PHONE_RATE, 1)                   # 8k -> 16k: nothing above 4 kHz
    return np.clip(z, -1, 1).astype(np.float32)


def _espeak_ssml(text: str, voice: str, pitch: int, rate: int, amp: int, prange: float, out: Path) -> np.ndarray:
    ssml = f'<speak><prosody range="{prange:.0f}%">{escape(text)}</prosody></speak>'
    return espeak_wav(ssml, voice, pitch, rate, amp, out, ssml=True, dtype="float64")


def plan_spon(cfg: SponSynthConfig) -> list[dict]:
    """Every utterance's label, speaker, text and prosody (all the randomness, in one fixed order)."""
    rng = np.random.default_rng(cfg.seed)
    counts = label_counts(cfg.label_probs, cfg.n_utterances)
    labels = np.array([k for k in sorted(counts) for _ in range(counts[k])], dtype=object)
    labels = labels[rng.permutation(len(labels))]
    speakers = [dict(variant=VARIANTS[int(rng.integers(len(VARIANTS)))], pitch=float(rng.normal(0, 7)),
                     rate=float(rng.normal(0, 12)), prange=float(rng.uniform(0.8, 1.2)))
                for _ in range(cfg.n_speakers)]
    neu = PROSODY["neu"]
    plan = []
    for i, lab in enumerate(labels, 1):
        if lab not in RAW_TO_PROSODY:
            raise InputError(f"config: synth.label_probs: unknown label {lab!r}; known {sorted(RAW_TO_PROSODY)}")
        spk = int(rng.integers(cfg.n_speakers))
        s = speakers[spk]
        p0, r0, a0 = PROSODY[RAW_TO_PROSODY[lab]]
        e = cfg.expressiveness
        # The acted corpus's emotion offsets from neutral, shrunk: spontaneous speech is flatter.
        pitch = neu[0] + e * (p0 - neu[0]) + s["pitch"] + rng.normal(0, 4)
        rate = neu[1] + e * (r0 - neu[1]) + s["rate"] + rng.normal(0, 8)
        amp = neu[2] + e * (a0 - neu[2]) + rng.normal(0, 6)
        prange = cfg.pitch_range * s["prange"] * (1 + e * (a0 - neu[2]) / 100)
        pool = SPECIFIC[lab] if rng.random() < cfg.specific_phrase_prob else SHARED
        text = pool[int(rng.integers(len(pool)))]
        plan.append(dict(utt_id=f"spon_{i:05d}", label_raw=str(lab), speaker=spk, text=text,
                         voice=f"{cfg.voice}+{s['variant']}", pitch=int(np.clip(pitch, 0, 99)),
                         rate=int(np.clip(rate, 80, 320)), amp=int(np.clip(amp, 20, 190)),
                         prange=float(np.clip(prange, 5, 100)), channel_seed=int(rng.integers(2**31))))
    return plan


def synthesize_spon(out_csv: str | Path, cfg: SponSynthConfig) -> dict:
    """Write ``out_csv`` (columns ``utt_id, wav, label_raw, transcript``) and ``wav/<utt_id>.wav`` beside it.

    Parameters
    ----------
    out_csv : the manifest to write; its folder must not exist yet, be empty, or hold an earlier
        generated corpus (:func:`emorepro.corpus.synth_guard.check_target`), which is replaced.
    cfg : size, label mix, channel and seed.

    Returns
    -------
    dict with the counts written (also saved as ``synth_summary.json`` beside the CSV).

    Example
    -------
    >>> synthesize_spon("results/spon/synth/csv/corpus.csv", SponSynthConfig(seed=0))  # doctest: +SKIP
    """
    out_csv = Path(out_csv)
    out_dir = out_csv.parent
    layout = ("wav", out_csv.name, "synth_summary.json")
    check_target(out_dir, GENERATOR, layout)
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed; run scripts/install.sh (apt package espeak-ng)")
    plan = plan_spon(cfg)
    # Built next to the target and swapped in at the end: no partial corpus on failure (:mod:`.synth_guard`).
    with staged_tree(out_dir, GENERATOR, layout, cfg) as (stage, espeak_tmp):
        (stage / "wav").mkdir()

        def render(u: dict) -> float:
            import soundfile as sf

            x = _espeak_ssml(u["text"], u["voice"], u["pitch"], u["rate"], u["amp"], u["prange"],
                             espeak_tmp / f"{u['utt_id']}.wav")
            y = telephone_channel(x, ESPEAK_RATE, np.random.default_rng(u["channel_seed"]), cfg.noise_db, cfg.agc_db)
            sf.write(stage / "wav" / f"{u['utt_id']}.wav", y, SAMPLE_RATE, subtype="PCM_16")
            return len(y) / SAMPLE_RATE

        with ThreadPoolExecutor(max_workers=max(1, cfg.threads)) as pool:
            durations = list(pool.map(render, plan))
        import pandas as pd

        # No speaker column: like the real SPON, the corpus has no speaker labels.
        write_csv(stage / out_csv.name, pd.DataFrame({
            "utt_id": [u["utt_id"] for u in plan], "wav": [f"wav/{u['utt_id']}.wav" for u in plan],
            "label_raw": [u["label_raw"] for u in plan], "transcript": [u["text"] for u in plan]}))
        summary = {"seed": cfg.seed, "n_utterances": len(plan), "n_speakers_used": len({u["speaker"] for u in plan}),
                   "label_counts": dict(sorted(label_counts(cfg.label_probs, cfg.n_utterances).items())),
                   "seconds": round(float(sum(durations)), 3), "channel": {
                       "sample_rate": SAMPLE_RATE, "band_limited_at": PHONE_RATE, "band_hz": list(PHONE_BAND),
                       "codec": "mu-law 8 bit"}}
        write_json(stage / "synth_summary.json", summary)
    return summary
