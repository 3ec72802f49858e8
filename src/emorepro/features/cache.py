"""Feature cache: frozen-encoder hidden states computed once per (corpus, encoder).

Writer: :func:`extract_to_cache`.  Readers: :class:`FeatureCache` and
:class:`CachedSplitDataset`.

On-disk format (``results/<corpus>/features/<encoder>/``)
---------------------------------------------------------
``shard-00000.npy``, ``shard-00001.npy``, ...
    float16 ``.npy`` arrays of shape ``(n_layers, total_frames, dim)`` (layer-major, C order):
    utterances are concatenated along the frame axis.  Layer-major so that reading one layer
    of one utterance (the common case when training a head on a single layer) is one
    contiguous slice of the memory map.  Open with ``np.load(path, mmap_mode="r")``.
``shard-00000.json``, ...
    per-shard partial index, written (atomically) right after its shard:
    ``{"shard", "sha256", "n_frames", "shape", "config_key", "utts": [[utt_id, offset, n_frames], ...]}``.
    A shard counts as complete only when its ``.json`` exists, its ``config_key`` matches the
    current run and the ``.npy``'s sha256 equals the recorded one; this is what makes a killed
    extraction resumable and a corrupted shard repairable.
``index.csv``
    ``utt_id,shard,offset,n_frames`` for every utterance (``shard`` is the file name).
``manifest.json``
    written **last** (tmp file + ``os.replace``): its presence means the cache is complete.
    Holds the encoder spec, ``dim``, ``layers``, ``n_utts``, per-shard ``sha256``/``n_frames``,
    the manifest CSV's sha256, the checkpoint directory's per-file sha256 (local checkpoints),
    the seed and the extraction settings.

Frames: audio encoders give one row per frame (fbank 100/s, HuBERT/wav2vec2 50/s); text
encoders one row per token, special tokens included (``[CLS] ... [SEP]`` / ``<s> ... </s>``).

Importing this module imports numpy only (torch lazily, for :class:`CachedSplitDataset`
and during extraction); it never imports transformers or fairseq2.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..audio import read_wav
from ..encoders import load_encoder
from ..encoders.base import Encoder, EncoderSpec
from ..io import InputError, read_json, sha256_file, write_json, atomic_path

CACHE_FORMAT = "emorepro-feature-cache/1"
MANIFEST = "manifest.json"
INDEX = "index.csv"
_CHUNK = 1 << 22


class CacheCorruptError(ValueError):
    """A shard does not match the hash recorded for it (truncated, overwritten, bit rot)."""


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.npy"


def _shard_meta_name(i: int) -> str:
    return f"shard-{i:05d}.json"


# --------------------------------------------------------------------------- inputs


def read_manifest_csv(manifest_csv: str | os.PathLike, modality: str) -> list[dict]:
    """Rows of the corpus manifest (``utt_id``, ``wav``, ``duration``, ``transcript``...)."""
    path = Path(manifest_csv)
    need = ("utt_id", "wav") if modality == "audio" else ("utt_id", "transcript")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; have {reader.fieldnames}")
        rows, seen = [], set()
        for lineno, r in enumerate(reader, start=2):
            u = r["utt_id"]
            if not u:
                raise InputError(f"{path}:{lineno}: empty utt_id")
            if u in seen:
                raise InputError(f"{path}:{lineno}: duplicate utt_id {u!r}")
            seen.add(u)
            rows.append(r)
    if not rows:
        raise InputError(f"{path}: no utterances")
    return rows


def _length_key(row: dict, modality: str) -> float:
    if modality == "text":
        return float(len(row.get("transcript") or ""))
    d = row.get("duration")
    if d not in (None, ""):
        return float(d)
    import soundfile as sf

    info = sf.info(row["wav"])
    return info.frames / info.samplerate


def checkpoint_hashes(checkpoint: str | None) -> dict[str, str] | None:
    """sha256 of every file under a local checkpoint directory (or of a local checkpoint file,
    e.g. a fairseq2 asset card; the checkpoint it points to is not followed); None for hub ids."""
    if checkpoint and os.path.isfile(checkpoint):
        return {os.path.basename(checkpoint): sha256_file(checkpoint)}
    if not checkpoint or not os.path.isdir(checkpoint):
        return None
    root = Path(checkpoint)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


def _spec_dict(spec: EncoderSpec) -> dict:
    d = asdict(spec)
    d["layers"] = list(spec.layers)
    return d


# --------------------------------------------------------------------------- planning


def _estimate_frames(encoder: Encoder, row: dict, modality: str) -> float:
    if modality == "text":
        return len(row.get("transcript") or "") / 4.0 + 2.0
    return float(row["_len"]) * float(getattr(encoder, "frames_per_second", 50.0))


def plan_shards(rows: list[dict], encoder: Encoder, modality: str, shard_max_mb: float) -> list[list[dict]]:
    """Deterministic assignment of utterances to shards: longest first, then greedy fill.

    Shard sizes are estimated from durations (or transcript lengths) so that the plan is
    known before encoding: a resumed run recomputes exactly the same shards.
    """
    order = sorted(rows, key=lambda r: (-r["_len"], r["utt_id"]))
    bytes_per_frame = encoder.n_layers * encoder.dim * 2
    budget = shard_max_mb * 1e6
    shards, cur, cur_bytes = [], [], 0.0
    for r in order:
        b = _estimate_frames(encoder, r, modality) * bytes_per_frame
        if cur and cur_bytes + b > budget:
            shards.append(cur)
            cur, cur_bytes = [], 0.0
        cur.append(r)
        cur_bytes += b
    if cur:
        shards.append(cur)
    return shards


def plan_batches(rows: list[dict], modality: str, batch_max_seconds: float, batch_max_items: int) -> list[list[dict]]:
    """Consecutive (already length-sorted) rows into batches bounded by padded length."""
    batches, cur, cur_max = [], [], 0.0
    for r in rows:
        new_max = max(cur_max, r["_len"])
        too_big = modality == "audio" and new_max * (len(cur) + 1) > batch_max_seconds
        if cur and (too_big or len(cur) >= batch_max_items):
            batches.append(cur)
            cur, new_max = [], r["_len"]
        cur.append(r)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


# --------------------------------------------------------------------------- shard I/O


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f2", "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _write_shard(path: Path, items: list[np.ndarray], n_layers: int, dim: int) -> tuple[str, int]:
    """Stream ``items`` (each float16 (n_layers, T_i, dim)) into a layer-major .npy atomically.

    Writes layer by layer straight from the per-utterance buffers, so no second copy of the
    shard is built in memory.  Returns (sha256, total_frames).
    """
    total = sum(a.shape[1] for a in items)
    h = hashlib.sha256()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            hdr = _npy_header((n_layers, total, dim))
            f.write(hdr)
            h.update(hdr)
            for l in range(n_layers):
                for a in items:
                    b = np.ascontiguousarray(a[l]).tobytes()
                    f.write(b)
                    h.update(b)
            f.flush()
            os.fsync(f.fileno())
    return h.hexdigest(), total


def _expected_shard_bytes(shape: Sequence[int]) -> int:
    return len(_npy_header(tuple(shape))) + int(np.prod(shape)) * 2


def _shard_ok(out: Path, i: int, config_key: str, utt_ids: list[str] | None) -> dict | None:
    """The shard's meta if shard ``i`` is complete, current and uncorrupted, else None."""
    meta_p, npy_p = out / _shard_meta_name(i), out / shard_name(i)
    if not (meta_p.is_file() and npy_p.is_file()):
        return None
    try:
        meta = read_json(meta_p)
    except (OSError, ValueError):
        return None
    if meta.get("config_key") != config_key:
        return None
    if utt_ids is not None and [u[0] for u in meta.get("utts", [])] != utt_ids:
        return None
    if npy_p.stat().st_size != _expected_shard_bytes(meta["shape"]):
        return None
    if sha256_file(npy_p) != meta.get("sha256"):
        return None
    return meta


@contextlib.contextmanager
def _dir_lock(out: Path) -> Iterator[None]:
    import fcntl

    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{out}: another extraction is running on this cache directory") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- writer


def extract_to_cache(
    manifest_csv: str,
    spec: EncoderSpec,
    out_dir: str,
    *,
    seed: int = 0,
    batch_max_seconds: float = 60.0,
    batch_max_items: int = 32,
    shard_max_mb: float = 256.0,
    device: str | None = None,
    encoder: Encoder | None = None,
    max_shards: int | None = None,
    on_shard_done: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> dict:
    """Encode every utterance of ``manifest_csv`` with ``spec`` into a feature cache at ``out_dir``.

    Streaming (peak memory ~ one shard + one batch, whatever the corpus size), resumable
    (complete, hash-verified shards of the same configuration are reused; corrupt or
    truncated ones are recomputed) and atomic (``manifest.json`` is written last).

    batch_max_seconds: audio: padded seconds per batch (``max_len * batch_size``).
    batch_max_items:   cap on utterances per batch (the only bound for text encoders).
    shard_max_mb:      approximate shard size (estimated from durations before encoding).
    device:            None -> GPU when available.
    encoder:           an already-loaded encoder for ``spec`` (skips loading; tests, benchmarks).
    max_shards:        compute at most this many *new* shards then stop without writing
                       ``manifest.json`` (used to test resumption).
    on_shard_done:     callback ``(shard_index, shard_meta)`` after each newly written shard.

    Returns a report dict: ``complete``, ``computed_shards``, ``reused_shards``, ``n_shards``,
    ``audio_seconds`` / ``n_utts`` encoded in this call, ``seconds`` (wall) and ``manifest``
    (the manifest.json content, or None when stopped early).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    modality = spec.modality
    rows = read_manifest_csv(manifest_csv, modality)
    for r in rows:
        r["_len"] = _length_key(r, modality)
    manifest_sha = sha256_file(manifest_csv)
    ckpt_hashes = checkpoint_hashes(spec.checkpoint)

    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if encoder is None:
        encoder = load_encoder(spec, device=device)
    elif encoder.spec != spec:
        raise ValueError(f"encoder was built for {encoder.spec}, not {spec}")
    n_layers, dim = encoder.n_layers, encoder.dim
    settings = {"batch_max_seconds": batch_max_seconds, "batch_max_items": batch_max_items, "shard_max_mb": shard_max_mb}
    key_src = {
        "format": CACHE_FORMAT,
        "spec": _spec_dict(spec),
        "manifest_csv_sha256": manifest_sha,
        "checkpoint_sha256": ckpt_hashes,
        "seed": seed,
        "settings": settings,
        "dim": dim,
    }
    config_key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()

    shards = plan_shards(rows, encoder, modality, shard_max_mb)
    report: dict[str, Any] = {"computed_shards": [], "reused_shards": [], "n_shards": len(shards), "n_utts": 0, "audio_seconds": 0.0}

    with _dir_lock(out):
        for p in out.glob(".shard-*.tmp"):  # leftovers of a killed run
            p.unlink(missing_ok=True)
        metas: list[dict | None] = [_shard_ok(out, i, config_key, [r["utt_id"] for r in s]) for i, s in enumerate(shards)]
        todo = [i for i, m in enumerate(metas) if m is None]
        report["reused_shards"] = [i for i, m in enumerate(metas) if m is not None]
        if todo:
            (out / MANIFEST).unlink(missing_ok=True)  # the cache is about to change: not complete
        from tqdm import tqdm

        n_todo_utts = sum(len(shards[i]) for i in todo)
        bar = tqdm(total=n_todo_utts, desc=f"extract {spec.name}", unit="utt", file=sys.stderr,
                   disable=not progress or n_todo_utts == 0, mininterval=1.0)
        stopped = False
        with bar:
            for i in todo:
                if max_shards is not None and len(report["computed_shards"]) >= max_shards:
                    stopped = True
                    break
                metas[i] = _extract_shard(out, i, shards[i], encoder, modality, config_key,
                                          batch_max_seconds, batch_max_items, bar)
                _release_freed_memory()
                report["computed_shards"].append(i)
                report["n_utts"] += len(shards[i])
                if modality == "audio":
                    report["audio_seconds"] += sum(r["_len"] for r in shards[i])
                if on_shard_done is not None:
                    on_shard_done(i, metas[i])

        if stopped:
            report.update(complete=False, manifest=None, seconds=time.perf_counter() - t0)
            return report

        # stale shards of an earlier, larger plan
        for p in list(out.glob("shard-*.npy")) + list(out.glob("shard-*.json")):
            try:
                idx = int(p.stem.split("-")[1])
            except (IndexError, ValueError):
                continue
            if idx >= len(shards):
                p.unlink()

        with atomic_path(out / INDEX) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["utt_id", "shard", "offset", "n_frames"])
                for i, m in enumerate(metas):
                    for u, off, n in m["utts"]:
                        w.writerow([u, shard_name(i), off, n])
        manifest = {
            "format": CACHE_FORMAT,
            "encoder": _spec_dict(spec),
            "modality": modality,
            "dim": dim,
            "layers": list(spec.layers),
            "resolved_layers": list(getattr(encoder, "resolved_layers", spec.layers)),
            "n_layers": n_layers,
            "dtype": "float16",
            "shard_layout": "(n_layers, total_frames, dim)",
            "n_utts": len(rows),
            "n_frames": int(sum(m["n_frames"] for m in metas)),
            "shards": [{"file": shard_name(i), "sha256": m["sha256"], "n_frames": m["n_frames"], "n_utts": len(m["utts"])}
                       for i, m in enumerate(metas)],
            "index_sha256": sha256_file(out / INDEX),
            "manifest_csv": str(manifest_csv),
            "manifest_csv_sha256": manifest_sha,
            "checkpoint": spec.checkpoint,
            "checkpoint_sha256": ckpt_hashes,
            "seed": seed,
            "settings": settings,
            "config_key": config_key,
            "versions": _versions(),
        }
        mp = out / MANIFEST
        if not (mp.is_file() and _same_json(mp, manifest)):
            write_json(mp, manifest)
    report.update(complete=True, manifest=manifest, seconds=time.perf_counter() - t0)
    return report


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS after each shard (glibc ``malloc_trim``; no-op elsewhere).

    The writer holds at most one shard plus one batch, but glibc's dynamic mmap threshold
    lets freed shard buffers stay in the heap, where fragmentation slowly raises RSS.  For a
    hard bound also set ``MALLOC_MMAP_THRESHOLD_=1048576`` (and, for audio encoders,
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``: oneDNN caches one conv primitive per distinct input
    length, up to 1024 by default); see benchmarks/feature_cache.py.
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def _same_json(path: Path, obj: dict) -> bool:
    try:
        return read_json(path) == json.loads(json.dumps(obj))
    except (OSError, ValueError):
        return False


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for p in ("torch", "torchaudio", "transformers", "fairseq2", "numpy", "python_speech_features"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


def _extract_shard(out: Path, i: int, rows: list[dict], encoder: Encoder, modality: str, config_key: str,
                   batch_max_seconds: float, batch_max_items: int, bar) -> dict:
    n_layers, dim = encoder.n_layers, encoder.dim
    items: list[np.ndarray] = []
    utts: list[list] = []
    offset = 0
    for batch in plan_batches(rows, modality, batch_max_seconds, batch_max_items):
        inputs = [read_wav(r["wav"]) for r in batch] if modality == "audio" else [r.get("transcript") or "" for r in batch]
        outs = encoder.encode(inputs)
        if len(outs) != len(batch):
            raise RuntimeError(f"encoder {encoder.spec.name} returned {len(outs)} outputs for {len(batch)} inputs")
        for r, a in zip(batch, outs):
            if a.ndim != 3 or a.shape[0] != n_layers or a.shape[2] != dim:
                raise RuntimeError(f"encoder {encoder.spec.name}: output of {r['utt_id']} has shape {a.shape}, "
                                   f"expected ({n_layers}, T, {dim})")
            h = a.astype(np.float16)
            if not np.isfinite(h).all():
                raise ValueError(f"encoder {encoder.spec.name}: utterance {r['utt_id']} has non-finite values "
                                 f"after conversion to float16 (max |x| = {np.abs(a).max():.3g})")
            items.append(h)
            utts.append([r["utt_id"], offset, int(h.shape[1])])
            offset += int(h.shape[1])
        bar.update(len(batch))
    sha, total = _write_shard(out / shard_name(i), items, n_layers, dim)
    meta = {"shard": shard_name(i), "sha256": sha, "n_frames": total, "shape": [n_layers, total, dim],
            "config_key": config_key, "utts": utts}
    write_json(out / _shard_meta_name(i), meta)
    return meta


def verify_cache(cache_dir: str | os.PathLike, invalidate: bool = False) -> list[str]:
    """Hash every shard of a complete cache; return the names of bad shards.

    With ``invalidate=True`` a cache with bad shards loses its ``manifest.json``, so the
    Snakemake rule that declares it re-runs, and :func:`extract_to_cache` then recomputes
    only the bad shards (the good ones are reused after their own hash check).
    """
    d = Path(cache_dir)
    man = read_json(d / MANIFEST)
    bad = []
    for k, info in enumerate(man["shards"]):
        p = d / info["file"]
        shape = (man["n_layers"], int(info["n_frames"]), man["dim"])
        if not p.is_file() or p.stat().st_size != _expected_shard_bytes(shape) or sha256_file(p) != info["sha256"]:
            bad.append(info["file"])
    if bad and invalidate:
        (d / MANIFEST).unlink(missing_ok=True)
    return bad


# --------------------------------------------------------------------------- readers


class FeatureCache:
    """Read-only access to a complete feature cache directory.

    ``cache[utt_id]`` -> float16 array ``(n_layers, T, dim)``: a **read-only view on the
    shard's memory map** (no copy; ``np.array(x)`` or ``x.astype(np.float32)`` to own it).
    ``cache.layer(utt_id, i)`` -> ``(T, dim)`` view of position ``i`` of :attr:`layers`
    (``i`` indexes the configured layers, negative allowed; :meth:`layer_position` maps a
    model layer number to a position).

    With ``verify=True`` each shard's sha256 is checked against ``manifest.json`` the first
    time it is opened (a full read of the shard, once per process); a mismatch raises
    :class:`CacheCorruptError`.  File sizes are always checked.
    """

    def __init__(self, cache_dir: str | os.PathLike, verify: bool = True):
        self.cache_dir = Path(cache_dir)
        self.verify = verify
        mp = self.cache_dir / MANIFEST
        if not mp.is_file():
            raise FileNotFoundError(f"{self.cache_dir}: no {MANIFEST}, so the feature cache is missing or incomplete; "
                                    f"run the extraction (extract_to_cache / the features rule) first")
        self.manifest = read_json(mp)
        if self.manifest.get("format") != CACHE_FORMAT:
            raise ValueError(f"{mp}: unknown cache format {self.manifest.get('format')!r}, expected {CACHE_FORMAT!r}")
        self._shards = self.manifest["shards"]
        shard_pos = {s["file"]: k for k, s in enumerate(self._shards)}
        self._index: dict[str, tuple[int, int, int]] = {}
        with open(self.cache_dir / INDEX, newline="") as f:
            for r in csv.DictReader(f):
                self._index[r["utt_id"]] = (shard_pos[r["shard"]], int(r["offset"]), int(r["n_frames"]))
        if len(self._index) != self.manifest["n_utts"]:
            raise CacheCorruptError(f"{self.cache_dir}: {INDEX} lists {len(self._index)} utterances, manifest says "
                                    f"{self.manifest['n_utts']}; re-run extraction")
        self._mm: dict[int, np.memmap] = {}

    # metadata
    @property
    def utt_ids(self) -> list[str]:
        return list(self._index)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.manifest["layers"])

    @property
    def n_layers(self) -> int:
        return int(self.manifest["n_layers"])

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def n_frames(self, utt_id: str) -> int:
        return self._loc(utt_id)[2]

    def layer_position(self, layer: int) -> int:
        """Position in :attr:`layers` of a configured model layer number (e.g. -1 or 12)."""
        try:
            return self.layers.index(layer)
        except ValueError:
            raise KeyError(f"layer {layer} is not in the cache {self.cache_dir} (layers {list(self.layers)})") from None

    # data
    def _loc(self, utt_id: str) -> tuple[int, int, int]:
        try:
            return self._index[utt_id]
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} is not in the feature cache {self.cache_dir}") from None

    def _shard(self, k: int) -> np.ndarray:
        mm = self._mm.get(k)
        if mm is None:
            info = self._shards[k]
            path = self.cache_dir / info["file"]
            shape = (self.n_layers, int(info["n_frames"]), self.dim)
            hint = f"re-run the feature extraction for {self.cache_dir} (it re-extracts corrupt shards)"
            if not path.is_file():
                raise CacheCorruptError(f"shard {path.name} of feature cache {self.cache_dir} is missing; {hint}")
            if path.stat().st_size != _expected_shard_bytes(shape):
                raise CacheCorruptError(f"shard {path.name} of feature cache {self.cache_dir} is truncated or has the "
                                        f"wrong size ({path.stat().st_size} bytes, expected {_expected_shard_bytes(shape)}); {hint}")
            if self.verify and sha256_file(path) != info["sha256"]:
                raise CacheCorruptError(f"shard {path.name} of feature cache {self.cache_dir} does not match the sha256 "
                                        f"in {MANIFEST} (corrupted or modified); {hint}")
            try:
                mm = np.load(path, mmap_mode="r")
            except ValueError as e:
                raise CacheCorruptError(f"shard {path.name} of feature cache {self.cache_dir} is unreadable ({e}); {hint}") from e
            if mm.shape != shape or mm.dtype != np.float16:
                raise CacheCorruptError(f"shard {path.name} of feature cache {self.cache_dir} has shape {mm.shape} "
                                        f"{mm.dtype}, expected {shape} float16; {hint}")
            self._mm[k] = mm
        return mm

    def verify_all(self) -> None:
        """Open (and, with verify=True, hash) every shard now."""
        for k in range(len(self._shards)):
            self._shard(k)

    def __getitem__(self, utt_id: str) -> np.ndarray:
        k, off, n = self._loc(utt_id)
        return self._shard(k)[:, off:off + n, :]

    def layer(self, utt_id: str, layer_index: int) -> np.ndarray:
        k, off, n = self._loc(utt_id)
        if not -self.n_layers <= layer_index < self.n_layers:
            raise IndexError(f"layer position {layer_index} out of range for cache {self.cache_dir} "
                             f"with layers {list(self.layers)}")
        return self._shard(k)[layer_index, off:off + n, :]

    # memmaps are not picklable cheaply: reopen lazily in DataLoader workers
    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d["_mm"] = {}
        return d


class CachedSplitDataset:
    """torch-style ``Dataset`` over one fold split, read from a :class:`FeatureCache`.

    (Duck-typed: ``__len__`` + ``__getitem__``, which is all ``torch.utils.data.DataLoader``
    needs; not a subclass so that importing this module does not import torch.)

    ``ds[i] -> (features, label, utt_id)``; ``features`` is a float32 tensor ``(T, dim)`` for
    ``layer=<position in cache.layers>`` (default -1: the last configured layer) or
    ``(n_layers, T, dim)`` for ``layer=None``.  It is a fresh copy (safe to modify).
    ``labels``: a sequence aligned with ``utt_ids`` or a mapping ``utt_id -> label``.
    """

    def __init__(self, cache: FeatureCache | str | os.PathLike, utt_ids: Sequence[str],
                 labels: Sequence[Any] | Mapping[str, Any], layer: int | None = -1):
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        self.utt_ids = list(utt_ids)
        if isinstance(labels, Mapping):
            self.labels = [labels[u] for u in self.utt_ids]
        else:
            self.labels = list(labels)
            if len(self.labels) != len(self.utt_ids):
                raise ValueError(f"{len(self.utt_ids)} utt_ids but {len(self.labels)} labels")
        missing = [u for u in self.utt_ids if u not in self.cache]
        if missing:
            raise KeyError(f"{len(missing)} utterance(s) of the split are not in the feature cache "
                           f"{self.cache.cache_dir}, e.g. {missing[:5]}")
        if layer is not None and not -self.cache.n_layers <= layer < self.cache.n_layers:
            raise IndexError(f"layer position {layer} out of range for cache layers {list(self.cache.layers)}")
        self.layer = layer

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, i: int):
        import torch

        u = self.utt_ids[i]
        x = self.cache[u] if self.layer is None else self.cache.layer(u, self.layer)
        return torch.from_numpy(np.asarray(x, dtype=np.float32)), self.labels[i], u

