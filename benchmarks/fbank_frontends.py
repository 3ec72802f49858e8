"""How different are the two 40-channel log-mel front-ends (issue 15)?

python_speech_features (Zhang et al.'s, backend ``python_speech_features``) against Kaldi's
(torchaudio, backend ``kaldi_fbank``), both as config/config.yaml sets them (``fbank40`` and
``fbank40_kaldi``), on the utterances of one or more corpus manifests:

    PYTHONPATH=src python benchmarks/fbank_frontends.py results/iemocap/manifest.csv results/spon/manifest.csv

(the demo's manifests: ``snakemake results/iemocap/manifest.csv results/spon/manifest.csv
--cores 2 --configfile config/demo.yaml``).  Frames are aligned by index (both start frame
i at sample 160 i; python_speech_features pads one more frame at the end, which is dropped).
Per corpus it prints:

* frames: share of utterances where python_speech_features has one frame more;
* floor: share of values at each front-end's log floor (python_speech_features: an exact zero
  band energy becomes float64 eps, log = -36.04; Kaldi: float32 eps, log = -15.94);
* r: Pearson correlation of the two front-ends' values per channel over all frames (mean,
  min and the channel of the min); a per-channel affine map cannot remove 1 - r;
* z-RMS: the root-mean-square difference after z-scoring each front-end per channel with
  the corpus's statistics (what Zhang et al.'s recipe feeds the network), in standard
  deviations (0 = identical inputs, sqrt(2) = 1.41 = unrelated).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _encoders():
    import yaml

    from emorepro.encoders import EncoderSpec, load_encoder

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())["encoders"]
    return {name: load_encoder(EncoderSpec.from_dict(name, {**cfg[name], "layers": [0]}))
            for name in ("fbank40", "fbank40_kaldi")}


def compare(manifest: str, encoders) -> dict:
    from emorepro.features.cache import read_wav

    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("wav")]
    root = Path(manifest).resolve().parents[2]   # results/<corpus>/manifest.csv -> the working directory
    psf_all, kal_all, extra, secs = [], [], 0, {n: 0.0 for n in encoders}
    for r in rows:
        wav = r["wav"] if Path(r["wav"]).is_absolute() else str(root / r["wav"])
        x = read_wav(wav)
        out = {}
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            out[name] = enc.encode([x])[0][0]
            secs[name] += time.perf_counter() - t0
        p, k = out["fbank40"], out["fbank40_kaldi"]
        extra += int(len(p) > len(k))
        n = min(len(p), len(k))
        psf_all.append(p[:n])
        kal_all.append(k[:n])
    p, k = np.concatenate(psf_all).astype(np.float64), np.concatenate(kal_all).astype(np.float64)
    r = np.array([np.corrcoef(p[:, c], k[:, c])[0, 1] for c in range(p.shape[1])])
    zp = (p - p.mean(0)) / p.std(0)
    zk = (k - k.mean(0)) / k.std(0)
    return {"utterances": len(rows), "frames": len(p), "one_more_frame": extra / len(rows),
            "floor_psf": float((p < -36.0).mean()), "floor_kaldi": float((k < -15.9).mean()),
            "r_mean": float(r.mean()), "r_min": float(r.min()), "r_min_channel": int(r.argmin()),
            "z_rms": float(np.sqrt(((zp - zk) ** 2).mean())),
            "z_rms_per_channel_max": float(np.sqrt(((zp - zk) ** 2).mean(0)).max()),
            "seconds": secs}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifests", nargs="+")
    args = ap.parse_args(argv)
    encoders = _encoders()
    print("| corpus | utterances | frames | psf one frame more | floor psf / kaldi | r mean (min, channel) "
          "| z-RMS (worst channel) | seconds psf / kaldi |")
    print("|---|---|---|---|---|---|---|---|")
    for m in args.manifests:
        s = compare(m, encoders)
        print(f"| {Path(m).parent.name} | {s['utterances']} | {s['frames']} | {s['one_more_frame']:.1%} "
              f"| {s['floor_psf']:.2%} / {s['floor_kaldi']:.2%} | {s['r_mean']:.3f} ({s['r_min']:.3f}, {s['r_min_channel']}) "
              f"| {s['z_rms']:.3f} ({s['z_rms_per_channel_max']:.3f}) "
              f"| {s['seconds']['fbank40']:.1f} / {s['seconds']['fbank40_kaldi']:.1f} |")


if __name__ == "__main__":
    main()
