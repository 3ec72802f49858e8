"""MMER augmentation stage (issue 16): time and memory of each backend on the demo corpus.

    PYTHONPATH=src python benchmarks/augment.py                       # demo-size corpus, 2 threads
    PYTHONPATH=src python benchmarks/augment.py --manifest results/iemocap/manifest.csv --json out.json

Figures (wall clock; they depend on the machine and on whatever else runs on it):

* ``paraphrase`` back-translation and ``espeak`` TTS of every labelled utterance (4 copies each),
  the demo's configuration;
* the tiny random-init NLLB (``nllb`` backend): seconds per text for 5 sampled returns in each
  direction, batches of 16 (a random model never stops early, so every sample runs to the cap of
  3 x input + 10 tokens: an upper bound for the real model's step count, not its speed);
* the tiny random-init YourTTS (``yourtts`` backend): seconds per speaker-encoder clip and per
  spoken copy (real-time factor);
* the cost of the backends' imports in a fresh interpreter: seconds and peak RSS of
  ``from TTS.tts.models.vits import Vits`` (coqui-tts) and of transformers' M2M100, beside
  ``import torch`` alone.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

IMPORTS = {
    "torch": "import torch",
    "coqui-tts (Vits)": "from TTS.tts.models.vits import Vits",
    "transformers (M2M100 + NllbTokenizerFast)": "from transformers import M2M100ForConditionalGeneration, NllbTokenizerFast",
}


def _import_cost(stmt: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a fresh interpreter running ``stmt``."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
    code = (f"import time; t = time.perf_counter(); {stmt}; dt = time.perf_counter() - t; "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
            "print(dt, int(hwm) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", help="a corpus manifest (default: generate the demo-size synthetic corpus)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nllb-texts", type=int, default=32, help="texts back-translated by the tiny NLLB")
    ap.add_argument("--yourtts-copies", type=int, default=16, help="copies spoken by the tiny YourTTS")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import pandas as pd
    import torch

    from emorepro.augment.backtranslate import BackTranslationConfig, back_translate
    from emorepro.augment.demo import make_tiny_nllb, make_tiny_yourtts
    from emorepro.augment.pipeline import back_translate_corpus, synthesize_corpus
    from emorepro.corpus.synth import VOICES
    from emorepro.io import write_csv

    torch.set_num_threads(a.threads)
    fig: dict = {"threads": a.threads}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.manifest:
            manifest = Path(a.manifest)
        else:
            from emorepro.corpus.iemocap import LabelPolicy, ingest_iemocap
            from emorepro.corpus.synth import SynthConfig, synthesize_iemocap

            synthesize_iemocap(tmp / "corpus", SynthConfig(seed=0, turns_per_dialog=32, threads=a.threads))
            policy = LabelPolicy({"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"},
                                 frozenset(["fru", "sur", "fea", "dis", "oth", "xxx"]))
            manifest = tmp / "manifest.csv"
            write_csv(manifest, ingest_iemocap(tmp / "corpus", policy))
        m = pd.read_csv(manifest, keep_default_na=False)
        n_lab = int((m["label"] != "").sum())
        fig["labelled_utterances"] = n_lab

        t = time.perf_counter()
        info = back_translate_corpus(str(manifest), str(tmp / "p" / "texts.csv"), seed=0,
                                     back_translation={"backend": "paraphrase"}, progress=False)
        fig["paraphrase_s"] = round(time.perf_counter() - t, 2)
        fig["copies"] = info["n_copies"]
        voices = {f"Ses0{s}_{g}": VOICES[s][i] for s in VOICES for i, g in enumerate("FM")}
        tts = {"backend": "espeak"} | ({"voices": voices} if set(m["speaker"]) <= set(voices) else {})
        t = time.perf_counter()
        s = synthesize_corpus(str(tmp / "p" / "texts.csv"), str(manifest), str(tmp / "p" / "tts" / "corpus.csv"),
                              seed=0, tts=tts, threads=a.threads, progress=False)
        fig["espeak_s"] = round(time.perf_counter() - t, 2)
        fig["espeak_s_per_copy"] = round(fig["espeak_s"] / info["n_copies"], 4)
        fig["espeak_audio_s"] = s["seconds_of_audio"]

        # Tiny NLLB on the first labelled sources.
        texts = list(m.loc[m["label"] != "", "transcript"].head(a.nllb_texts))
        t = time.perf_counter()
        make_tiny_nllb(tmp / "nllb", 0, list(m["transcript"]))
        fig["nllb_tiny_build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        cfg = BackTranslationConfig(backend="nllb", checkpoint=str(tmp / "nllb"), device="cpu")
        back_translate(texts, [str(i) for i in range(len(texts))], cfg, seed=0, progress=False)
        fig["nllb_tiny_s_per_text"] = round((time.perf_counter() - t) / len(texts), 3)

        # Tiny YourTTS: the d-vectors of the copies' (speaker, class) pairs, then the copies.
        plan = pd.read_csv(tmp / "p" / "texts.csv", keep_default_na=False).head(a.yourtts_copies)
        write_csv(tmp / "yt.csv", plan)
        t = time.perf_counter()
        make_tiny_yourtts(tmp / "yourtts", 0)
        fig["yourtts_tiny_build_s"] = round(time.perf_counter() - t, 2)
        from emorepro.augment.tts import TTSConfig, YourTTS

        t = time.perf_counter()
        yt = YourTTS(TTSConfig(backend="yourtts", checkpoint=str(tmp / "yourtts"), device="cpu"), seed=0)
        fig["yourtts_tiny_load_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        prep = yt.prepare(m, plan)
        fig["yourtts_tiny_s_per_clip_embedded"] = round((time.perf_counter() - t) / prep["n_clips_embedded"], 3)
        t = time.perf_counter()
        audio = sum(len(yt.speak(r, r["text"], tmp)) for r in plan.to_dict("records")) / 16000
        dt = time.perf_counter() - t
        fig["yourtts_tiny_s_per_copy"] = round(dt / len(plan), 3)
        fig["yourtts_tiny_real_time_factor"] = round(dt / audio, 4)

    for name, stmt in IMPORTS.items():
        sec, mb = _import_cost(stmt)
        fig[f"import {name}"] = {"s": round(sec, 2), "peak_rss_mb": round(mb)}
    fig["this_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    for k, v in fig.items():
        print(f"{k:<48} {v}")
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
