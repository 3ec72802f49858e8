"""Feature cache: values, corruption detection, resumption, batch independence (fbank front-end).

Neural-encoder cache checks (tiny HuBERT) live in test_encoders.py.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from emorepro.encoders import EncoderSpec, load_encoder
from emorepro.features.cache import (
    CacheCorruptError,
    CachedSplitDataset,
    FeatureCache,
    extract_to_cache,
    read_wav,
    verify_cache,
)
from emorepro.io import InputError

SR = 16_000
FBANK = EncoderSpec(name="fbank40", family="fbank", backend="kaldi_fbank", layers=(0,))


def make_corpus(root: Path, n: int = 12, seed: int = 0, min_s: float = 0.3, max_s: float = 1.6) -> Path:
    """n synthetic 16 kHz mono wavs (sines + noise) and a manifest CSV; returns the CSV path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        dur = float(rng.uniform(min_s, max_s))
        t = np.arange(int(dur * SR)) / SR
        f0 = 120 + 30 * i
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t) + 0.03 * rng.standard_normal(len(t))
        p = root / f"utt{i:03d}.wav"
        sf.write(p, x.astype(np.float32), SR, subtype="PCM_16")
        rows.append([f"utt{i:03d}", str(p), f"{len(t) / SR:.4f}", f"sentence number {i} is {'happy' if i % 2 else 'sad'}"])
    csv_path = root / "manifest.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "wav", "duration", "transcript"])
        w.writerows(rows)
    return csv_path


def cache_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


SMALL_SHARDS = dict(shard_max_mb=0.03, progress=False)  # ~4-5 shards for the test corpus


def test_fbank_cache_equals_fresh_forward_pass(corpus, tmp_path):
    out = tmp_path / "fbank"
    rep = extract_to_cache(str(corpus), FBANK, str(out), **SMALL_SHARDS)
    assert rep["complete"] and rep["n_shards"] >= 3
    man = json.loads((out / "manifest.json").read_text())
    assert man["dim"] == 40 and man["n_utts"] == 12 and man["layers"] == [0]
    assert len(man["shards"]) == rep["n_shards"] and all(len(s["sha256"]) == 64 for s in man["shards"])

    cache = FeatureCache(out)
    enc = load_encoder(FBANK, device="cpu")
    assert len(cache) == 12 and cache.dim == 40 and cache.layers == (0,)
    with open(corpus) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        ref = enc.encode([read_wav(r["wav"])])[0]
        got = cache[r["utt_id"]]
        assert got.dtype == np.float16 and got.shape == ref.shape == (1, 1 + (int(round(float(r["duration"]) * SR)) - 400) // 160, 40)
        np.testing.assert_allclose(got.astype(np.float32), ref, rtol=1e-3, atol=2e-2)
        np.testing.assert_array_equal(cache.layer(r["utt_id"], 0), got[0])

    # shards are plain memory-mappable npy
    arr = np.load(out / "shard-00000.npy", mmap_mode="r")
    assert arr.dtype == np.float16 and arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[2] == 40

    ds = CachedSplitDataset(cache, [r["utt_id"] for r in rows[:5]], [0, 1, 2, 3, 0], layer=0)
    x, y, u = ds[2]
    assert u == rows[2]["utt_id"] and y == 2 and x.dtype.is_floating_point and x.shape == cache[u].shape[1:]
    ref = enc.encode([read_wav(rows[2]["wav"])])[0][0]
    np.testing.assert_allclose(x.numpy(), ref, rtol=1e-3, atol=2e-2)
    xa, _, _ = CachedSplitDataset(str(out), [u], {u: "ang"}, layer=None)[0]
    assert tuple(xa.shape) == (1, *x.shape)


def test_missing_utterance_and_incomplete_cache(corpus, tmp_path):
    out = tmp_path / "c"
    extract_to_cache(str(corpus), FBANK, str(out), progress=False)
    cache = FeatureCache(out)
    with pytest.raises(KeyError, match=r"nope.*" + str(out.name)):
        cache["nope"]
    assert "nope" not in cache and "utt000" in cache
    with pytest.raises(KeyError, match="not in the feature cache"):
        CachedSplitDataset(cache, ["utt000", "nope"], [0, 1])
    (out / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        FeatureCache(out)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corruption_detected_and_repaired(corpus, tmp_path, damage):
    out = tmp_path / "c"
    extract_to_cache(str(corpus), FBANK, str(out), **SMALL_SHARDS)
    good = cache_files(out)
    victim = out / "shard-00001.npy"
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        data[-3] ^= 0x55
    else:
        data = data[: len(data) - 1000]
    victim.write_bytes(bytes(data))

    cache = FeatureCache(out)
    utt_in_victim = next(u for u in cache.utt_ids if cache._index[u][0] == 1)
    utt_elsewhere = next(u for u in cache.utt_ids if cache._index[u][0] == 0)
    cache[utt_elsewhere]  # other shards stay readable
    with pytest.raises(CacheCorruptError) as ei:
        cache[utt_in_victim]
    msg = str(ei.value)
    assert "shard-00001.npy" in msg and str(out) in msg and "re-run" in msg
    assert isinstance(ei.value, ValueError)

    assert verify_cache(out) == ["shard-00001.npy"]
    assert verify_cache(out, invalidate=True) == ["shard-00001.npy"]
    assert not (out / "manifest.json").exists()  # so the Snakemake rule re-runs

    rep = extract_to_cache(str(corpus), FBANK, str(out), **SMALL_SHARDS)
    assert rep["computed_shards"] == [1] and 1 not in rep["reused_shards"]
    assert verify_cache(out) == []
    assert cache_files(out) == good  # repaired byte for byte
    FeatureCache(out).verify_all()


def test_resume_after_interruption_is_byte_identical(corpus, tmp_path):
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "resumed"
    ref = extract_to_cache(str(corpus), FBANK, str(ref_dir), **SMALL_SHARDS)
    n = ref["n_shards"]

    part = extract_to_cache(str(corpus), FBANK, str(dir_), max_shards=1, **SMALL_SHARDS)
    assert not part["complete"] and part["computed_shards"] == [0]
    assert not (dir_ / "manifest.json").exists()  # incomplete cache is never declared complete
    with pytest.raises(FileNotFoundError):
        FeatureCache(dir_)

    rest = extract_to_cache(str(corpus), FBANK, str(dir_), **SMALL_SHARDS)
    assert rest["complete"] and rest["reused_shards"] == [0] and rest["computed_shards"] == list(range(1, n))
    assert cache_files(dir_) == cache_files(ref_dir)


def test_resume_after_sigkill(corpus, tmp_path):
    """A real kill -9 right after shard 1 is written; the re-run computes only the rest."""
    out = tmp_path / "killed"
    code = f"""
import os, signal
from emorepro.encoders import EncoderSpec
from emorepro.features.cache import extract_to_cache
spec = EncoderSpec(name="fbank40", family="fbank", backend="kaldi_fbank", layers=(0,))
def die(i, meta):
    if i == 1:
        os.kill(os.getpid(), signal.SIGKILL)
extract_to_cache({str(corpus)!r}, spec, {str(out)!r}, shard_max_mb=0.03, progress=False, on_shard_done=die)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    assert not (out / "manifest.json").exists()
    assert {"shard-00000.json", "shard-00001.json"} <= set(os.listdir(out))
    rep = extract_to_cache(str(corpus), FBANK, str(out), **SMALL_SHARDS)
    assert rep["complete"] and rep["reused_shards"] == [0, 1] and rep["computed_shards"] == list(range(2, rep["n_shards"]))
    ref = tmp_path / "ref"
    extract_to_cache(str(corpus), FBANK, str(ref), **SMALL_SHARDS)
    assert cache_files(out) == cache_files(ref)


def test_batch_composition_does_not_change_values(corpus, tmp_path):
    a = extract_to_cache(str(corpus), FBANK, str(tmp_path / "a"), batch_max_seconds=1.0, **SMALL_SHARDS)
    b = extract_to_cache(str(corpus), FBANK, str(tmp_path / "b"), batch_max_seconds=1000.0, batch_max_items=64,
                         shard_max_mb=100, progress=False)
    assert a["n_shards"] > 1 and b["n_shards"] == 1
    ca, cb = FeatureCache(tmp_path / "a"), FeatureCache(tmp_path / "b")
    assert sorted(ca.utt_ids) == sorted(cb.utt_ids)
    for u in ca.utt_ids:
        np.testing.assert_array_equal(ca[u], cb[u])


def test_config_change_invalidates_shards(corpus, tmp_path):
    out = tmp_path / "c"
    extract_to_cache(str(corpus), FBANK, str(out), **SMALL_SHARDS)
    spec64 = EncoderSpec(name="fbank40", family="fbank", backend="kaldi_fbank", layers=(0,), options={"num_mel_bins": 64})
    rep = extract_to_cache(str(corpus), spec64, str(out), **SMALL_SHARDS)
    assert rep["reused_shards"] == [] and FeatureCache(out).dim == 64


def test_bad_audio_is_a_clear_error(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    sf.write(root / "a.wav", np.zeros(8000, dtype=np.float32), 8000)
    sf.write(root / "b.wav", np.zeros((16000, 2), dtype=np.float32), SR)
    for name, pat in [("a.wav", "8000 Hz"), ("b.wav", "2 channels")]:
        csv_path = root / f"{name}.csv"
        csv_path.write_text(f"utt_id,wav,duration,transcript\nx,{root / name},1.0,hi\n")
        with pytest.raises(InputError, match=pat) as ei:
            extract_to_cache(str(csv_path), FBANK, str(tmp_path / name), progress=False)
        assert name in str(ei.value)
