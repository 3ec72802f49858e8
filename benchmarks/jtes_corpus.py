"""Synthetic JTES benchmark: espeak-ng synthesis and ingestion time, audio hours and disk size,
at the demo size and (with --full) at the release's size (100 speakers x 4 emotions x 50 sentences).

    PYTHONPATH=src python benchmarks/jtes_corpus.py                 # demo size: 480 utterances, ~10 s
    PYTHONPATH=src python benchmarks/jtes_corpus.py --full          # 20,000 utterances, ~2 GB, minutes

The full-size tree is ingested with the real config's expected counts (20,000 utterances, 5,000 per
class, 4,000 per session, 100 speakers, 10 F + 10 M per session), so it also checks that those
counts hold for a tree in the release layout.  The tree is written to a temporary folder and
deleted afterwards.  Figures depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

REAL_COUNTS = {"total": 20000, "label": {"ang": 5000, "hap": 5000, "neu": 5000, "sad": 5000},
               "gender": {"F": 10000, "M": 10000}, "session": {str(k): 4000 for k in range(1, 6)},
               "speakers": 100, "speakers_per_session": {"F": 10, "M": 10}}


def main() -> None:
    from emorepro.corpus.iemocap import LabelPolicy
    from emorepro.corpus.jtes import ingest_jtes
    from emorepro.corpus.synth_jtes import JtesSynthConfig, synthesize_jtes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the release's size (10 + 10 speakers per session, 50 sentences)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", help="parent folder for the temporary tree (default: the system's)")
    a = ap.parse_args()
    cfg = JtesSynthConfig(seed=0, speakers_per_session=10 if a.full else 2, sentences_per_emotion=50 if a.full else 6,
                          threads=a.threads)
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="jtes-bench.") as tmp:
        root = Path(tmp) / "jtes_v1.1"
        t0 = time.perf_counter()
        summary = synthesize_jtes(root, cfg)
        t_synth = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        t0 = time.perf_counter()
        df = ingest_jtes(root, LabelPolicy({"ang": "ang", "joy": "hap", "neu": "neu", "sad": "sad"}, frozenset()),
                         sentences="sentences.tsv", expected_counts=REAL_COUNTS if a.full else None)
        t_ingest = time.perf_counter() - t0
    n = summary["n_utterances"]
    print(f"synthetic JTES: {n} utterances ({summary['n_speakers']} speakers x 4 emotions x "
          f"{cfg.sentences_per_emotion} sentences), {a.threads} espeak-ng threads")
    print(f"  synthesis : {t_synth:8.1f} s  ({1000 * t_synth / n:.1f} ms per utterance)")
    print(f"  audio     : {summary['seconds'] / 3600:8.2f} h  ({summary['seconds'] / n:.2f} s per utterance)")
    print(f"  disk      : {size / 2**20:8.1f} MB")
    print(f"  ingest    : {t_ingest:8.1f} s  ({len(df)} rows" + (", real expected_counts pass)" if a.full else ")"))
    print(f"  peak RSS  : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB")


if __name__ == "__main__":
    main()
