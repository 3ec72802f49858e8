"""A synthetic corpus in the exact IEMOCAP_full_release layout, spoken by espeak-ng.

Nobody may redistribute IEMOCAP, and the pipeline must be tested end to end on every
machine, so we generate a corpus with the same directory tree, file formats and quirks
as the real release (suffixed dialog names, distractor labels, evaluator lines with
irregular spacing, transcript lines without a wav, annotation subfolders the parser must
skip).  The real parser then reads it like the real thing.

Emotion is made learnable in both modalities:

* audio: each emotion has its own espeak prosody (pitch, rate, amplitude), jittered
  consistently with the utterance's valence/arousal, on top of a per-speaker voice;
* text: each sentence carries an emotion phrase plus a neutral filler.

Everything is a function of the seed: the label sequence, the V/A/D values, the texts and
the jitter come from one ``numpy.random.Generator``; espeak-ng itself is deterministic.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError, write_json
from .synth_guard import check_target, staged_tree

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050

# (pitch 0-99, words per minute, amplitude 0-200) per emotion, and mean (valence, arousal) on 1-5.
# Chosen so that arousal drives rate/loudness and valence drives pitch, as in acted speech.
PROSODY = {
    "neu": (45, 160, 100), "hap": (72, 185, 125), "exc": (78, 205, 150), "ang": (58, 215, 175),
    "sad": (22, 115, 65), "fru": (50, 185, 140), "sur": (85, 170, 120), "xxx": (50, 165, 110),
    "fea": (80, 210, 90), "dis": (35, 150, 120), "oth": (50, 160, 100),
}
VA_MEAN = {
    "neu": (3.0, 2.5), "hap": (4.0, 3.2), "exc": (4.1, 3.8), "ang": (1.8, 4.0), "sad": (1.8, 2.0),
    "fru": (2.0, 3.5), "sur": (3.6, 3.8), "xxx": (2.8, 3.0), "fea": (1.9, 3.7), "dis": (1.9, 3.2),
    "oth": (3.0, 3.0),
}
# How the evaluators' categorical line spells each label.
EVAL_NAMES = {
    "neu": "Neutral", "hap": "Happiness", "exc": "Excited", "ang": "Anger", "sad": "Sadness",
    "fru": "Frustration", "sur": "Surprise", "fea": "Fear", "dis": "Disgust", "oth": "Other",
}
PHRASES = {
    "neu": ["the meeting is at ten", "please pass me the form", "I will take the bus today",
            "the report is on the desk", "we can talk about it later", "the train leaves at noon"],
    "hap": ["this is wonderful news", "I am so happy for you", "I love it, thank you",
            "what a lovely day", "that is great, really great", "I am delighted"],
    "exc": ["wow, we actually won", "this is amazing, I can not wait", "yes, finally, fantastic",
            "I am thrilled about the trip", "that is awesome news"],
    "ang": ["I am so angry about this", "this is outrageous", "stop it right now",
            "I hate when you do that", "get out of my way", "how dare you say that"],
    "sad": ["I feel so lonely today", "I miss her so much", "everything is hopeless",
            "I lost my best friend", "nothing matters any more", "I am so sorry, it hurts"],
    "fru": ["this never works for me", "why is this so hard", "I tried again and again"],
    "sur": ["oh really, I did not expect that", "no way, are you serious", "what, since when"],
    "xxx": ["well, I do not know", "maybe it is fine, maybe not", "I guess we will see"],
    "fea": ["I am scared of the dark", "please do not leave me here"],
    "dis": ["that is disgusting", "ugh, I can not stand it"],
    "oth": ["hmm, okay then"],
}
FILLERS = ["you know", "about the thing", "at the office", "with my sister", "this morning",
           "on the phone", "after lunch", "in the car", "for the second time", "right now"]

# Rewordings of every PHRASES entry and filler: the offline stand-in for MMER's back-translation
# (emorepro.augment.backtranslate, backend `paraphrase`).  Each keeps the EMOTION_WORDS of its original,
# so a paraphrased copy still carries its label in the text.  Not used to generate the corpus itself.
PARAPHRASES = {
    # neu
    "the meeting is at ten": ["the meeting starts at ten", "we meet at ten", "at ten we have the meeting"],
    "please pass me the form": ["could you pass me the form", "pass the form to me, please", "hand me the form, please"],
    "I will take the bus today": ["today I will take the bus", "I am taking the bus today", "I'll go by bus today"],
    "the report is on the desk": ["the report lies on the desk", "you will find the report on the desk",
                                  "the report is sitting on the desk"],
    "we can talk about it later": ["we can discuss it later", "let us talk about it later", "we could talk it over later"],
    "the train leaves at noon": ["the train departs at noon", "at noon the train leaves", "our train goes at noon"],
    # hap
    "this is wonderful news": ["what wonderful news this is", "that is wonderful news", "such wonderful news"],
    "I am so happy for you": ["I'm so happy for you", "I am really happy for you", "I'm so very happy for you"],
    "I love it, thank you": ["thank you, I love it", "I love it, thanks", "I love it, thank you so much"],
    "what a lovely day": ["such a lovely day", "it is a lovely day", "what a lovely day it is"],
    "that is great, really great": ["that's great, really great", "really great, that is great", "that is great, truly great"],
    "I am delighted": ["I'm delighted", "I am truly delighted", "I am really delighted"],
    # exc
    "wow, we actually won": ["wow, we really won", "we actually won, wow", "wow, we won after all"],
    "this is amazing, I can not wait": ["this is amazing, I cannot wait", "it's amazing, I can't wait",
                                        "amazing, I can hardly wait"],
    "yes, finally, fantastic": ["finally, yes, fantastic", "yes, fantastic, finally", "yes, at last, fantastic"],
    "I am thrilled about the trip": ["I'm thrilled about the trip", "the trip, I am thrilled about it",
                                     "I am so thrilled about the trip"],
    "that is awesome news": ["that's awesome news", "what awesome news", "such awesome news"],
    # ang
    "I am so angry about this": ["I'm so angry about this", "this makes me so angry", "I am really angry about this"],
    "this is outrageous": ["this is absolutely outrageous", "that is outrageous", "how outrageous this is"],
    "stop it right now": ["stop it now", "stop that right now", "right now, stop it"],
    "I hate when you do that": ["I hate it when you do that", "when you do that, I hate it", "I really hate when you do that"],
    "get out of my way": ["get out of the way", "just get out of my way", "out of my way, get out"],
    "how dare you say that": ["how dare you say such a thing", "how dare you say that to me", "you dare say that"],
    # sad
    "I feel so lonely today": ["today I feel so lonely", "I feel very lonely today", "I am so lonely today"],
    "I miss her so much": ["I miss her a lot", "I miss her so very much", "I really miss her so much"],
    "everything is hopeless": ["it is all hopeless", "everything seems hopeless", "all of it is hopeless"],
    "I lost my best friend": ["I have lost my best friend", "my best friend, I lost her", "I've lost my best friend"],
    "nothing matters any more": ["nothing matters anymore", "nothing matters now", "nothing really matters any more"],
    "I am so sorry, it hurts": ["I'm so sorry, it hurts", "it hurts, I am so sorry", "I am really sorry, it hurts"],
    # fru
    "this never works for me": ["it never works for me", "this never works for me at all", "for me this never works"],
    "why is this so hard": ["why is it so hard", "why is this so very hard", "how is this so hard"],
    "I tried again and again": ["I tried over and over again", "again and again I tried", "I kept trying again and again"],
    # sur
    "oh really, I did not expect that": ["oh really, I didn't expect that", "really, I did not expect that",
                                         "oh really, I did not expect that at all"],
    "no way, are you serious": ["are you serious, no way", "no way, are you being serious", "no way, you are serious"],
    "what, since when": ["since when, what", "what, since when exactly", "wait, since when"],
    # xxx
    "well, I do not know": ["well, I don't know", "I do not know, well", "well, I really do not know"],
    "maybe it is fine, maybe not": ["perhaps it is fine, perhaps not", "maybe it's fine, maybe not",
                                    "it may be fine, or maybe not"],
    "I guess we will see": ["I guess we'll see", "we will see, I guess", "I suppose we will see"],
    # fea
    "I am scared of the dark": ["I'm scared of the dark", "I am so scared of the dark", "I am really scared of the dark"],
    "please do not leave me here": ["please don't leave me here", "do not leave me here, please",
                                    "please, do not leave me alone here"],
    # dis
    "that is disgusting": ["that's disgusting", "how disgusting that is", "that is just disgusting"],
    "ugh, I can not stand it": ["ugh, I cannot stand it", "ugh, I can't stand it", "I can not stand it, ugh"],
    # oth
    "hmm, okay then": ["okay then, hmm", "hmm, fine then", "hmm, all right then"],
    # fillers
    "you know": ["you see", "I mean", "as you know"],
    "about the thing": ["about that thing", "regarding the thing", "about the matter"],
    "at the office": ["at work", "in the office", "at my office"],
    "with my sister": ["together with my sister", "with my older sister", "along with my sister"],
    "this morning": ["earlier this morning", "today in the morning", "this very morning"],
    "on the phone": ["over the phone", "on the telephone", "by phone"],
    "after lunch": ["after we had lunch", "once lunch is over", "after lunchtime"],
    "in the car": ["inside the car", "in my car", "while in the car"],
    "for the second time": ["once again", "a second time", "for a second time"],
    "right now": ["at the moment", "just now", "at this moment"],
}
# The words that carry a phrase's emotion; a paraphrase keeps every one its original has.
EMOTION_WORDS = frozenset({
    "wonderful", "happy", "love", "lovely", "great", "delighted", "won", "amazing", "wait", "fantastic",
    "thrilled", "awesome", "angry", "outrageous", "stop", "hate", "dare", "lonely", "miss", "hopeless", "lost",
    "sorry", "hurts", "never", "hard", "serious", "scared", "leave", "disgusting", "stand",
})

# Per-session voices: (female, male).  Different espeak variants and accents per speaker.
VOICES = {
    1: ("en-us+f1", "en-us+m1"), 2: ("en-gb+f2", "en-gb+m2"), 3: ("en-us+f3", "en-us+m3"),
    4: ("en-gb+f4", "en-gb+m4"), 5: ("en-us+f5", "en-us+m7"),
}


@dataclass
class SynthConfig:
    """Size and label mix of the synthetic corpus (all from config ``demo_corpus``)."""

    seed: int = 0
    sessions: tuple[int, ...] = (1, 2, 3, 4, 5)
    turns_per_dialog: int = 24          # utterances per dialog (both speakers alternate)
    label_probs: dict[str, float] = field(default_factory=lambda: {
        "neu": 0.24, "hap": 0.10, "exc": 0.14, "ang": 0.17, "sad": 0.17,
        "fru": 0.08, "sur": 0.05, "xxx": 0.05})
    noise_db: float = -45.0             # white noise relative to full scale, so silence is not digital zero
    threads: int = 2

    def __post_init__(self):
        where = "synth (config corpora.<name>.synth, or the corpus synth command)"
        if int(self.turns_per_dialog) < 1:
            raise InputError(f"{where}: turns_per_dialog must be >= 1, got {self.turns_per_dialog}")
        if not self.sessions or any(not 1 <= int(s) <= 9 for s in self.sessions):
            raise InputError(f"{where}: sessions must be a non-empty list of 1..9, got {list(self.sessions)}")
        if int(self.threads) < 1:
            raise InputError(f"{where}: threads must be >= 1, got {self.threads}")
        bad = sorted(set(self.label_probs) - set(PROSODY))
        if bad:
            raise InputError(f"{where}: label_probs has unknown label(s) {bad}; known: {sorted(PROSODY)}")
        if any(float(v) < 0 for v in self.label_probs.values()) or sum(map(float, self.label_probs.values())) <= 0:
            raise InputError(f"{where}: label_probs must be >= 0 with a positive sum, got {self.label_probs}")


# --------------------------------------------------------------------------- the output directory guard

GENERATOR = "emorepro.corpus.synth.synthesize_iemocap"
#: top-level entries of a generated IEMOCAP-layout tree (glob patterns; see :mod:`.synth_guard`)
IEMOCAP_LAYOUT = ("Session[1-9]", "synth_summary.json")


def _dialogs(session: int) -> list[tuple[str, str]]:
    """(dialog name, mode) for one session, including the real release's suffixed names."""
    s = f"Ses0{session}"
    d = [(f"{s}F_impro01", "impro"), (f"{s}M_script01_1", "script")]
    if session == 3:
        d += [(f"{s}M_impro05a", "impro"), (f"{s}M_impro05b", "impro")]
    if session == 5:
        d += [(f"{s}M_script01_1b", "script")]
    return d


def espeak_wav(text: str, voice: str, pitch: int, rate: int, amp: int, out: Path, *, ssml: bool = False,
               dtype: str = "float32") -> np.ndarray:
    """Speak ``text`` (SSML markup with ``ssml``) with espeak-ng into ``out``; its samples at ESPEAK_RATE."""
    cmd = ["espeak-ng"] + (["-m"] if ssml else []) + [
        "-v", voice, "-p", str(pitch), "-s", str(rate), "-a", str(amp), "-w", str(out), text]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except FileNotFoundError as e:
        raise RuntimeError("espeak-ng is not installed; run scripts/install.sh (apt package espeak-ng)") from e
    import soundfile as sf

    x, sr = sf.read(out, dtype=dtype)
    assert sr == ESPEAK_RATE, f"espeak-ng wrote {sr} Hz, expected {ESPEAK_RATE}"
    return x


def _espeak(text: str, voice: str, pitch: int, rate: int, amp: int, tmpdir: Path, name: str) -> np.ndarray:
    from scipy.signal import resample_poly

    x = espeak_wav(text, voice, pitch, rate, amp, tmpdir / f"{name}.wav")
    return resample_poly(x, SAMPLE_RATE // 50, ESPEAK_RATE // 50).astype(np.float32)  # 22.05k -> 16k


def synthesize_iemocap(out_root: str | Path, cfg: SynthConfig, *, overwrite: bool = False) -> dict:
    """Write ``out_root/IEMOCAP_full_release``-style tree (``Session1`` ... directly under ``out_root``).

    Parameters
    ----------
    out_root : directory to create; must not exist yet (or be empty) unless ``overwrite``.
    cfg : sizes, label mix and seed.
    overwrite : replace an earlier synthetic corpus (the Snakemake rule owns its output folder
        and re-generates it when its parameters change); the old tree is removed only after the
        new one is complete.  Anything that is not an earlier synthetic corpus (see
        :func:`emorepro.corpus.synth_guard.check_target`) is refused whatever ``overwrite`` says.

    Returns
    -------
    dict with the counts written (also saved as ``out_root/synth_summary.json``).

    Example
    -------
    >>> synthesize_iemocap("results/demo/IEMOCAP_full_release", SynthConfig(seed=0))  # doctest: +SKIP
    """
    out_root = Path(out_root)
    if check_target(out_root, GENERATOR, IEMOCAP_LAYOUT) and not overwrite:
        raise InputError(f"{out_root}: output directory exists and is not empty (an earlier synthetic corpus; "
                         "overwrite=True replaces it)")
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed; run scripts/install.sh (apt package espeak-ng)")
    labels = list(cfg.label_probs)
    probs = np.array([cfg.label_probs[k] for k in labels], dtype=float)
    probs = probs / probs.sum()
    rng = np.random.default_rng(cfg.seed)

    # Build the whole plan first (all randomness in one fixed order), then render audio in parallel.
    plan = []  # one dict per utterance
    for session in cfg.sessions:
        for dialog, mode in _dialogs(session):
            t = float(rng.uniform(2.0, 6.0))
            counters = {"F": 0, "M": 0}
            for turn in range(cfg.turns_per_dialog):
                g = "FM"[(turn + (dialog[5] == "M")) % 2]
                lab = labels[rng.choice(len(labels), p=probs)]
                v0, a0 = VA_MEAN[lab]
                v = float(np.clip(np.round((v0 + rng.normal(0, 0.35)) * 2) / 2, 1, 5))
                a = float(np.clip(np.round((a0 + rng.normal(0, 0.35)) * 2) / 2, 1, 5))
                d = float(np.clip(np.round((a + rng.normal(0, 0.5)) * 2) / 2, 1, 5))
                phrase = PHRASES[lab][rng.integers(len(PHRASES[lab]))]
                filler = FILLERS[rng.integers(len(FILLERS))]
                text = f"{phrase}, {filler}" if rng.random() < 0.5 else f"{filler}, {phrase}"
                p0, r0, amp0 = PROSODY[lab]
                voice = VOICES[session][0 if g == "F" else 1]
                # Valence moves pitch, arousal moves rate and loudness: V/A-consistent jitter.
                pitch = int(np.clip(p0 + 6 * (v - v0) + rng.normal(0, 4), 0, 99))
                rate = int(np.clip(r0 + 18 * (a - a0) + rng.normal(0, 8), 80, 320))
                amp = int(np.clip(amp0 + 20 * (a - a0) + rng.normal(0, 6), 20, 190))
                utt = f"{dialog}_{g}{counters[g]:03d}"
                counters[g] += 1
                n_eval = int(rng.integers(3, 5))
                plan.append(dict(session=session, dialog=dialog, utt_id=utt, label=lab, v=v, a=a, d=d,
                                 text=text, voice=voice, pitch=pitch, rate=rate, amp=amp, start=t,
                                 n_eval=n_eval, eval_seed=int(rng.integers(2**31)),
                                 noise_seed=int(rng.integers(2**31))))
                t += 3.0 + float(rng.uniform(0.2, 1.5))

    # Built next to the target and swapped in at the end: no partial corpus on failure, and only a tree of
    # this generator is ever replaced (:mod:`.synth_guard`).
    with staged_tree(out_root, GENERATOR, IEMOCAP_LAYOUT, cfg) as (stage, espeak_tmp):

        def render(u: dict) -> float:
            x = _espeak(u["text"], u["voice"], u["pitch"], u["rate"], u["amp"], espeak_tmp, u["utt_id"])
            noise = np.random.default_rng(u["noise_seed"]).normal(0, 10 ** (cfg.noise_db / 20), x.shape)
            x = np.clip(x + noise.astype(np.float32), -1, 1)
            wav = stage / f"Session{u['session']}" / "sentences" / "wav" / u["dialog"] / f"{u['utt_id']}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            import soundfile as sf
            sf.write(wav, x, SAMPLE_RATE, subtype="PCM_16")
            return len(x) / SAMPLE_RATE

        with ThreadPoolExecutor(max_workers=max(1, cfg.threads)) as pool:
            durations = list(pool.map(render, plan))
        for u, dur in zip(plan, durations):
            u["end"] = u["start"] + dur
        _write_text_files(stage, plan)
        summary = _summary(plan, cfg)
        write_json(stage / "synth_summary.json", summary)
    return summary


def _write_text_files(stage: Path, plan: list[dict]) -> None:
    by_dialog: dict[tuple[int, str], list[dict]] = {}
    for u in plan:
        by_dialog.setdefault((u["session"], u["dialog"]), []).append(u)
    for (session, dialog), utts in by_dialog.items():
        sdir = stage / f"Session{session}" / "dialog"
        emo = sdir / "EmoEvaluation" / f"{dialog}.txt"
        emo.parent.mkdir(parents=True, exist_ok=True)
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for u in utts:
            lines.append(f"[{u['start']:.4f} - {u['end']:.4f}]\t{u['utt_id']}\t{u['label']}\t"
                         f"[{u['v']:.4f}, {u['a']:.4f}, {u['d']:.4f}]")
            r = np.random.default_rng(u["eval_seed"])
            for i in range(u["n_eval"]):
                name = EVAL_NAMES.get(u["label"], "Other")
                if u["label"] == "xxx":  # no majority: evaluators disagree
                    name = list(EVAL_NAMES.values())[int(r.integers(len(EVAL_NAMES)))]
                lines.append(f"C-E{i + 1}:\t{name};\t()")
            for i in range(u["n_eval"] - 1):
                vals = [int(np.clip(round(x + r.normal(0, 0.5)), 1, 5)) for x in (u["v"], u["a"], u["d"])]
                sp = " " * int(r.integers(1, 3))  # the release's spacing varies ("dom  2;")
                lines.append(f"A-E{i + 1}:\tval {vals[0]}; act {vals[1]}; dom{sp}{vals[2]};\t()")
            lines.append("")
        emo.write_text("\n".join(lines) + "\n")
        # Annotation subfolders exist in the release and hold per-evaluator files the parser must skip.
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            (emo.parent / sub).mkdir(exist_ok=True)
            (emo.parent / sub / f"{dialog}_e1.txt").write_text(
                f"{utts[0]['utt_id']} :Neutral state; ()\n[not a summary line\n")
        tr = sdir / "transcriptions" / f"{dialog}.txt"
        tr.parent.mkdir(parents=True, exist_ok=True)
        tlines = [f"{u['utt_id']} [{u['start']:08.4f}-{u['end']:08.4f}]: {u['text']}" for u in utts]
        # The release has transcript lines for segments that have no wav (e.g. overlapped speech).
        tlines.insert(1, f"{dialog}_MXX0 [{utts[0]['start']:08.4f}-{utts[0]['end']:08.4f}]: [LAUGHTER]")
        tr.write_text("\n".join(tlines) + "\n")


def _summary(plan: list[dict], cfg: SynthConfig) -> dict:
    counts: dict[str, int] = {}
    for u in plan:
        counts[u["label"]] = counts.get(u["label"], 0) + 1
    return {"seed": cfg.seed, "n_utterances": len(plan), "label_counts": dict(sorted(counts.items())),
            "sessions": list(cfg.sessions), "turns_per_dialog": cfg.turns_per_dialog}
