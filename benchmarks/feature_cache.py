"""Feature-cache benchmark (issue 3): extraction throughput, cached vs on-the-fly training
epoch, cache read throughput, and peak RSS of extraction at 1x and 4x corpus size.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/feature_cache.py --quick   # ~3 min on 2 cores
    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/feature_cache.py           # larger corpus

Everything runs on CPU with random-init demo checkpoints (tiny HuBERT: hidden 64, 2 layers;
base HuBERT: the 94 M-parameter HuBERT-base config) on a synthetic corpus of 16 kHz
sines + noise, 2-8 s per utterance (IEMOCAP averages ~4.5 s).  Figures depend on the
machine and on whatever else is running on it; the script prints torch's thread count.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

SR = 16_000


def make_corpus(root: Path, n: int, seed: int = 0, min_s: float = 2.0, max_s: float = 8.0) -> tuple[Path, float]:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows, total = [], 0.0
    for i in range(n):
        dur = float(rng.uniform(min_s, max_s))
        t = np.arange(int(dur * SR)) / SR
        f0 = 100 + 200 * rng.random()
        x = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
        p = root / f"utt{i:05d}.wav"
        sf.write(p, x.astype(np.float32), SR, subtype="PCM_16")
        rows.append([f"utt{i:05d}", str(p), f"{len(t) / SR:.4f}", f"utterance {i}", ["ang", "hap", "neu", "sad"][i % 4]])
        total += len(t) / SR
    return _write_manifest(root / "manifest.csv", rows), total


def _write_manifest(path: Path, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "wav", "duration", "transcript", "label"])
        w.writerows(rows)
    return path


def replicate_manifest(manifest: Path, k: int, out: Path) -> Path:
    """k x the corpus: same wavs under new utt_ids (k x the work, no extra disk)."""
    with open(manifest) as f:
        rows = list(csv.reader(f))[1:]
    return _write_manifest(out, [[f"{r[0]}-r{j}", *r[1:]] for j in range(k) for r in rows])


def subset_manifest(manifest: Path, n: int, out: Path) -> tuple[Path, float]:
    with open(manifest) as f:
        rows = list(csv.reader(f))[1:][:n]
    return _write_manifest(out, rows), sum(float(r[2]) for r in rows)


def read_rows(manifest: Path) -> list[dict]:
    with open(manifest) as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- pieces


def extraction_throughput(manifest: Path, spec, out_dir: Path, audio_s: float, **kw) -> dict:
    from emorepro.encoders import load_encoder
    from emorepro.features.cache import extract_to_cache

    t0 = time.perf_counter()
    enc = load_encoder(spec, device="cpu")
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = extract_to_cache(str(manifest), spec, str(out_dir), encoder=enc, progress=False, **kw)
    t = time.perf_counter() - t0
    return {"audio_s": audio_s, "wall_s": t, "load_s": t_load, "x_realtime": audio_s / t, "n_shards": rep["n_shards"],
            "encoder": enc}


class Head:
    """Small utterance-level head: Linear(dim,128)-ReLU -> masked mean pool -> Linear(128,4)."""

    def __init__(self, dim: int, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, 128), torch.nn.ReLU())
        self.out = torch.nn.Linear(128, 4)
        self.opt = torch.optim.Adam(list(self.net.parameters()) + list(self.out.parameters()), lr=1e-3)

    def step(self, feats: list, labels: list[int]) -> float:
        import torch

        lens = torch.tensor([f.shape[0] for f in feats])
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        mask = (torch.arange(x.shape[1])[None] < lens[:, None]).float()
        h = self.net(x)
        pooled = (h * mask[..., None]).sum(1) / lens[:, None].clamp(min=1)
        loss = torch.nn.functional.cross_entropy(self.out(pooled), torch.tensor(labels))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


LABELS = {"ang": 0, "hap": 1, "neu": 2, "sad": 3}


def epoch_cached(cache_dir: Path, rows: list[dict], batch: int) -> float:
    import torch

    from emorepro.features.cache import CachedSplitDataset, FeatureCache

    cache = FeatureCache(cache_dir, verify=False)
    ds = CachedSplitDataset(cache, [r["utt_id"] for r in rows], [LABELS[r["label"]] for r in rows], layer=-1)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, collate_fn=lambda b: list(zip(*b)),
                                     generator=torch.Generator().manual_seed(0))
    head = Head(cache.dim)
    t0 = time.perf_counter()
    for feats, labels, _ in dl:
        head.step(list(feats), list(labels))
    return time.perf_counter() - t0


def epoch_on_the_fly(encoder, rows: list[dict], batch: int) -> float:
    import torch

    from emorepro.features.cache import read_wav

    head = Head(encoder.dim)
    order = np.random.default_rng(0).permutation(len(rows))
    t0 = time.perf_counter()
    for s in range(0, len(rows), batch):
        b = [rows[i] for i in order[s:s + batch]]
        outs = encoder.encode([read_wav(r["wav"]) for r in b])  # frozen encoder, no grad
        head.step([torch.from_numpy(o[-1]) for o in outs], [LABELS[r["label"]] for r in b])
    return time.perf_counter() - t0


def read_throughput(cache_dir: Path, rounds: int = 3) -> dict:
    from emorepro.features.cache import FeatureCache

    t0 = time.perf_counter()
    c = FeatureCache(cache_dir, verify=True)
    c.verify_all()
    t_verify = time.perf_counter() - t0
    ids = c.utt_ids
    rng = np.random.default_rng(0)
    n, t0 = 0, time.perf_counter()
    for _ in range(rounds):
        for u in rng.permutation(ids):
            np.asarray(c.layer(u, -1), dtype=np.float32)  # copy out of the memmap, as the dataset does
            n += 1
    t = time.perf_counter() - t0
    return {"utts_per_s": n / t, "verify_s": t_verify, "n_utts": len(ids)}


RSS_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
from emorepro.encoders import EncoderSpec, load_encoder
from emorepro.features.cache import extract_to_cache

def hwm_kb():  # VmHWM: peak RSS of this process image (reset by exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

spec = EncoderSpec(**json.loads({spec!r}))
enc = load_encoder(spec, device="cpu")
base = hwm_kb()
t0 = time.perf_counter()
rep = extract_to_cache({manifest!r}, spec, {out!r}, encoder=enc, progress=False, shard_max_mb={shard_mb})
print(json.dumps({{"after_load_kb": base, "peak_kb": hwm_kb(),
                  "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "seconds": time.perf_counter() - t0, "n_shards": rep["n_shards"], "n_utts": rep["n_utts"],
                  "audio_s": rep["audio_seconds"]}}))
"""


def peak_rss(manifest: Path, spec, out_dir: Path, shard_mb: float, extra_env: dict | None = None) -> dict:
    from dataclasses import asdict

    d = asdict(spec)
    d["layers"] = list(spec.layers)
    code = RSS_CHILD.format(src=str(SRC), spec=json.dumps(d), manifest=str(manifest), out=str(out_dir), shard_mb=shard_mb)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", **(extra_env or {})))
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small corpus (~3 minutes on 2 cores)")
    ap.add_argument("--workdir", default=None, help="where to write the corpus and caches (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice; use 1 on a busy machine, where "
                         "OpenMP spin-waiting makes small ops erratic)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from emorepro.encoders import EncoderSpec
    from emorepro.encoders.demo import make_demo_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the RSS subprocesses

    n_utts, n_base, batch = (40, 8, 8) if args.quick else (160, 24, 8)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="emorepro-bench-"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"workdir {work}; torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; "
          f"{os.cpu_count()} cores, load average {load:.2f} at start")
    manifest, audio_s = make_corpus(work / "corpus", n_utts)
    print(f"corpus: {n_utts} utterances, {audio_s:.0f} s of audio")
    res: dict = {"n_utts": n_utts, "audio_s": audio_s}

    tiny_dir, base_dir = work / "ckpt" / "hubert-tiny", work / "ckpt" / "hubert-base"
    make_demo_checkpoint("hubert", str(tiny_dir), seed=0)
    make_demo_checkpoint("hubert", str(base_dir), seed=0, size="base")
    n_params = json.loads((base_dir / "demo_checkpoint.json").read_text())["n_params"]
    tiny = EncoderSpec("hubert-tiny", "hubert", "transformers", checkpoint=str(tiny_dir), layers=(0, 1, 2))
    base = EncoderSpec("hubert-base", "hubert", "transformers", checkpoint=str(base_dir), layers=tuple(range(13)))
    fbank = EncoderSpec("fbank40", "fbank", "kaldi_fbank", layers=(0,))

    # 1. extraction throughput
    print("\n== extraction throughput (CPU; model load excluded) ==")
    r_fb = extraction_throughput(manifest, fbank, work / "features" / "fbank40", audio_s)
    r_tiny = extraction_throughput(manifest, tiny, work / "features" / "hubert-tiny", audio_s)
    base_manifest, base_audio = subset_manifest(manifest, n_base, work / "corpus" / "base-subset.csv")
    r_base = extraction_throughput(base_manifest, base, work / "features" / "hubert-base", base_audio)
    for name, r in (("fbank40", r_fb), ("hubert-tiny (3 layers)", r_tiny),
                    (f"hubert-base {n_params / 1e6:.1f}M (13 layers)", r_base)):
        print(f"  {name:34s} {r['audio_s']:7.0f} s audio in {r['wall_s']:7.1f} s -> {r['x_realtime']:8.1f} s audio/s "
              f"(load {r['load_s']:.1f} s, {r['n_shards']} shards)")
        res[f"extract_{name.split()[0]}"] = {k: v for k, v in r.items() if k != "encoder"}
    res["hubert_base_params"] = n_params

    # 2. one epoch cached vs on the fly, same head
    print(f"\n== one training epoch, same head (batch {batch}), last layer ==")
    rows = read_rows(manifest)
    base_rows = read_rows(base_manifest)
    for name, enc, cdir, rr in (("hubert-tiny", r_tiny["encoder"], work / "features" / "hubert-tiny", rows),
                                ("hubert-base", r_base["encoder"], work / "features" / "hubert-base", base_rows)):
        t_c = epoch_cached(cdir, rr, batch)
        t_f = epoch_on_the_fly(enc, rr, batch)
        print(f"  {name:12s} {len(rr):4d} utts: cached {t_c:7.3f} s, on the fly {t_f:7.2f} s -> ratio {t_f / t_c:7.1f}x")
        res[f"epoch_{name}"] = {"cached_s": t_c, "on_the_fly_s": t_f, "ratio": t_f / t_c, "n_utts": len(rr)}

    # 3. cache read throughput
    print("\n== cache read throughput (warm page cache; layer -1 copied to float32) ==")
    for name in ("hubert-tiny", "hubert-base", "fbank40"):
        r = read_throughput(work / "features" / name)
        print(f"  {name:12s} {r['utts_per_s']:9.0f} utts/s   (first open with sha256 verify: {r['verify_s']:.2f} s, "
              f"{r['n_utts']} utts)")
        res[f"read_{name}"] = r

    # 4. peak RSS at 1x and 4x
    # A "wide" tiny HuBERT (hidden 768 like base, 2 layers, narrow CNN) so that the features
    # are big (3 x 768 x 50 frames/s in float16 = 230 kB per second of audio) but cheap to
    # compute: a non-streaming writer would show the 4x corpus in its peak RSS.
    wide_dir = work / "ckpt" / "hubert-wide"
    make_demo_checkpoint("hubert", str(wide_dir), seed=0, config_overrides=dict(
        hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_conv_pos_embedding_groups=16))
    wide = EncoderSpec("hubert-wide", "hubert", "transformers", checkpoint=str(wide_dir), layers=(0, 1, 2))
    shard_mb = 16
    print(f"\n== peak RSS of extraction (fresh subprocess, VmHWM), hubert-wide 768x2 layers, shard_max_mb={shard_mb} ==")
    m4 = replicate_manifest(manifest, 4, work / "corpus" / "manifest-x4.csv")
    bounded = {"MALLOC_MMAP_THRESHOLD_": "1048576", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}
    for env_name, env in (("default allocator", None), ("MALLOC_MMAP_THRESHOLD_=1M, ONEDNN_PRIMITIVE_CACHE_CAPACITY=64", bounded)):
        print(f"  [{env_name}]")
        for k, m in ((1, manifest), (4, m4)):
            out = work / "features" / f"rss-x{k}-{'b' if env else 'd'}"
            r = peak_rss(m, wide, out, shard_mb=shard_mb, extra_env=env)
            feat_mb = sum(p.stat().st_size for p in out.glob("shard-*.npy")) / 1e6
            print(f"    {k}x corpus ({r['n_utts']} utts, {r['audio_s']:.0f} s audio, {feat_mb:.0f} MB of features, "
                  f"{r['n_shards']} shards): peak {r['peak_kb'] / 1024:7.1f} MB = model load {r['after_load_kb'] / 1024:.1f} MB "
                  f"+ {(r['peak_kb'] - r['after_load_kb']) / 1024:.1f} MB; extraction {r['seconds']:.1f} s")
            r["features_mb"] = feat_mb
            res[f"rss_x{k}{'_bounded' if env else ''}"] = r
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
