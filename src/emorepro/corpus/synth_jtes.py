"""A synthetic JTES in the exact release layout, spoken by espeak-ng's Japanese voice (the demo's JTES).

JTES (Takeishi et al. 2016) is licensed; Lee et al. (2023) train on it beside IEMOCAP.  The
stand-in keeps what their experiments depend on:

* **layout**: ``jtes_v1.1/wav/<spk>/<emo>/<spk>_<emo>_<NN>.wav`` (16 kHz mono PCM-16), read by the
  real parser (:mod:`emorepro.corpus.jtes`), plus ``sentences.tsv`` (``<emo>_<NN><TAB>text``, the
  parser's optional sentence list), ``synth_summary.json`` and the generator's marker
  (:mod:`emorepro.corpus.synth_guard`: only a tree with it is ever replaced);
* **speakers**: ``speakers_per_session`` women and as many men in each of the five sessions, with
  the *real* ids of the consecutive assignment (session k = ids 10k-9 .. 10k), so the demo's 2 + 2
  per session are ``f01 f02 m01 m02`` (session 1), ``f11 f12 m11 m12`` (session 2), ...; the full
  size (10 + 10 per session, 100 speakers) is ``speakers_per_session: 10``;
* **sentence-closed**: 4 emotions x ``sentences_per_emotion`` emotion-specific hiragana sentences
  (up to the release's 50), and every speaker reads all of them, so the words alone give the
  emotion, as in the release (Lee et al. report ~100 % UAR on JTES for that reason).  Sentence
  ``NN`` of an emotion is a fixed text whatever the seed, like a real sentence list;
* **acted prosody**: each emotion's pitch, rate and loudness from the acted IEMOCAP stand-in
  (:data:`emorepro.corpus.synth.PROSODY`, full expressiveness; ``joy`` speaks as ``hap``), a per-speaker
  voice (espeak-ng ``ja`` with the ``+f1..f5`` / ``+m1..m7`` variants) with pitch, rate and loudness
  offsets, a little per-utterance jitter, and a white-noise floor (``noise_db``).

Everything is a function of the seed: one ``numpy.random.Generator`` plans every speaker and
utterance in a fixed order; espeak-ng and the resampling are deterministic.
"""
from __future__ import annotations

import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import InputError, write_json, write_text
from .jtes import SESSION_BLOCK
from .synth import ESPEAK_RATE, PROSODY, SAMPLE_RATE, espeak_wav
from .synth_guard import staged_tree

log = logging.getLogger(__name__)

GENERATOR = "emorepro.corpus.synth_jtes"
#: top-level entries of a generated tree (glob patterns; see :mod:`.synth_guard`)
LAYOUT = ("wav", "sentences.tsv", "synth_summary.json")
EMOTIONS = ("ang", "joy", "neu", "sad")                    # the release's directory names
PROSODY_OF = {"ang": "ang", "joy": "hap", "neu": "neu", "sad": "sad"}
VARIANTS = {"f": ["f1", "f2", "f3", "f4", "f5"], "m": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]}
N_SESSIONS = 5
MAX_PER_SESSION = SESSION_BLOCK   # per gender: the release's 10 F + 10 M per session
MAX_SENTENCES = 50        # per emotion, as in the release

# Sentence NN (1-based) of an emotion = OPENINGS[i % 10] + "、" + CLOSINGS[(i + i // 10) % 5] with i = NN - 1:
# 50 distinct sentences per emotion (each opening meets each closing once), all in hiragana because
# espeak-ng's Japanese voice reads kana but not kanji.  Both halves carry the emotion, as the
# release's tweets chosen per emotion do.
OPENINGS = {
    "ang": ["なんでいつもこうなるの", "いいかげんにしてほしい", "まったくふざけないで", "またでんしゃがおくれた",
            "あのひとのたいどがゆるせない", "やくそくをやぶるなんてさいてい", "ほんとうにはらがたつ",
            "なんどいったらわかるの", "うるさいからしずかにして", "じぶんかってなひとばかり"],
    "joy": ["きょうはほんとうにたのしかった", "しけんにごうかくした", "ともだちからぷれぜんとをもらった",
            "ひさしぶりにかぞくとあえた", "ずっとほしかったほんがかえた", "おいしいけーきをたべた",
            "あしたからやすみだ", "ゆめがついにかなった", "みんながおいわいしてくれた", "てんきがよくてきもちいい"],
    "neu": ["あしたはくじにおきる", "えきまであるいてじゅっぷん", "きょうのかいぎはさんじから",
            "ほんをとしょかんにかえした", "ひるごはんはそばにした", "でんしゃはにばんせんからでる",
            "しゅうまつはいえでそうじをする", "あたらしいのーとをかった", "こんしゅうはあめがおおい",
            "らいげつひっこしのよていだ"],
    "sad": ["かっていたいぬがしんでしまった", "だいじなさいふをなくした", "ともだちとけんかしてしまった",
            "しけんにおちてしまった", "ひとりでごはんをたべている", "すきなひとにふられた",
            "ふるさとがとおくなった", "だれもへんじをくれない", "きょうもしっぱいばかりだった",
            "おわかれのひがきてしまった"],
}
CLOSINGS = {
    "ang": ["もうがまんできない", "いいかげんにしろ", "ぜったいにゆるさない", "あたまにくる", "ふざけるな"],
    "joy": ["すごくうれしい", "さいこうのきぶん", "しあわせだなあ", "ありがとうみんな", "やったね"],
    "neu": ["とくにかわりはない", "いつもどおりです", "そういうことです", "いじょうです", "よていどおりです"],
    "sad": ["とてもかなしい", "なみだがとまらない", "さびしくてたまらない", "もうなにもしたくない", "こころがいたい"],
}


@dataclass
class JtesSynthConfig:
    """Size and voice of the synthetic JTES (config ``corpora.<name>.synth``; defaults = the release's size)."""

    seed: int = 0
    speakers_per_session: int = 10     # per gender (the release: 10 F + 10 M in each of 5 sessions)
    sentences_per_emotion: int = 50    # the release: 50
    noise_db: float = -45.0            # white noise relative to full scale, so silence is not digital zero
    voice: str = "ja"                  # espeak-ng language
    threads: int = 2


def sentence(emo: str, nn: int) -> str:
    """The text of sentence ``nn`` (1-based) of emotion ``emo``."""
    i = nn - 1
    return f"{OPENINGS[emo][i % 10]}、{CLOSINGS[emo][(i + i // 10) % 5]}"


def speaker_ids(per_session: int) -> list[str]:
    """The real ids of ``per_session`` women and men per session under the consecutive assignment."""
    return [f"{g}{SESSION_BLOCK * s + j + 1:02d}" for g in "fm" for s in range(N_SESSIONS) for j in range(per_session)]


def _check(cfg: JtesSynthConfig) -> None:
    if not 1 <= cfg.speakers_per_session <= MAX_PER_SESSION:
        raise InputError(f"config: synth.speakers_per_session: {cfg.speakers_per_session} is not in 1..{MAX_PER_SESSION}")
    if not 1 <= cfg.sentences_per_emotion <= MAX_SENTENCES:
        raise InputError(f"config: synth.sentences_per_emotion: {cfg.sentences_per_emotion} is not in 1..{MAX_SENTENCES}")


def plan_jtes(cfg: JtesSynthConfig) -> list[dict]:
    """Every utterance's path parts, text, voice and prosody (all the randomness, in one fixed order)."""
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    speakers = {}
    for spk in speaker_ids(cfg.speakers_per_session):
        g, n = spk[0], int(spk[1:])
        speakers[spk] = {"voice": f"{cfg.voice}+{VARIANTS[g][(n - 1) % len(VARIANTS[g])]}",
                         "pitch": float(rng.normal(0, 6)), "rate": float(rng.normal(0, 10)), "amp": float(rng.normal(0, 8))}
    plan = []
    for spk, s in speakers.items():
        for emo in EMOTIONS:
            p0, r0, a0 = PROSODY[PROSODY_OF[emo]]
            for nn in range(1, cfg.sentences_per_emotion + 1):
                plan.append({
                    "speaker": spk, "emo": emo, "nn": nn, "utt_id": f"{spk}_{emo}_{nn:02d}", "text": sentence(emo, nn),
                    "voice": s["voice"], "pitch": int(np.clip(p0 + s["pitch"] + rng.normal(0, 3), 0, 99)),
                    "rate": int(np.clip(r0 + s["rate"] + rng.normal(0, 6), 80, 320)),
                    "amp": int(np.clip(a0 + s["amp"] + rng.normal(0, 5), 20, 190)),
                    "noise_seed": int(rng.integers(2**31))})
    return plan


def synthesize_jtes(out_root: str | Path, cfg: JtesSynthConfig) -> dict:
    """Write a JTES-layout tree at ``out_root`` (the ``jtes_v1.1`` folder: ``wav/``, ``sentences.tsv``).

    Parameters
    ----------
    out_root : the folder to write; it must be absent, empty, or an earlier corpus of this
        generator (its marker says so), which is replaced once the new one is complete.
    cfg : sizes, voice and seed.

    Returns
    -------
    dict with what was written (also saved as ``out_root/synth_summary.json``).

    Example
    -------
    >>> synthesize_jtes("results/jtes/synth/jtes_v1.1", JtesSynthConfig(speakers_per_session=2,
    ...                 sentences_per_emotion=6))  # doctest: +SKIP
    """
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed; run scripts/install.sh (apt package espeak-ng)")
    plan = plan_jtes(cfg)
    # Built next to the target and swapped in at the end: no partial corpus on failure.
    with staged_tree(out_root, GENERATOR, LAYOUT, cfg) as (stage, espeak_tmp):

        def render(u: dict) -> float:
            import soundfile as sf
            from scipy.signal import resample_poly

            x = espeak_wav(u["text"], u["voice"], u["pitch"], u["rate"], u["amp"], espeak_tmp / f"{u['utt_id']}.wav")
            x = resample_poly(x, SAMPLE_RATE // 50, ESPEAK_RATE // 50)            # 22.05 kHz -> 16 kHz
            x = x + np.random.default_rng(u["noise_seed"]).normal(0, 10 ** (cfg.noise_db / 20), x.shape)
            wav = stage / "wav" / u["speaker"] / u["emo"] / f"{u['utt_id']}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, np.clip(x, -1, 1).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
            return len(x) / SAMPLE_RATE

        with ThreadPoolExecutor(max_workers=max(1, cfg.threads)) as pool:
            durations = list(pool.map(render, plan))
        write_text(stage / "sentences.tsv", "".join(
            f"{emo}_{nn:02d}\t{sentence(emo, nn)}\n" for emo in EMOTIONS for nn in range(1, cfg.sentences_per_emotion + 1)))
        speakers = sorted({u["speaker"] for u in plan})
        summary = {"generator": GENERATOR, "seed": cfg.seed, "n_utterances": len(plan), "n_speakers": len(speakers),
                   "speakers": speakers, "speakers_per_session": cfg.speakers_per_session,
                   "sentences_per_emotion": cfg.sentences_per_emotion,
                   "label_counts": {e: sum(u["emo"] == e for u in plan) for e in EMOTIONS},
                   "seconds": round(float(sum(durations)), 3), "voice": cfg.voice, "noise_db": cfg.noise_db}
        write_json(stage / "synth_summary.json", summary)
    return summary
