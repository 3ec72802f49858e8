"""The cost of GMP-ATL's k-means (Pan et al.) at the real scale, extrapolated from timed pieces (issue 18).

    PYTHONPATH=src python benchmarks/gmp_kmeans.py                       # K = 64, 512, 4096, d = 768
    PYTHONPATH=src python benchmarks/gmp_kmeans.py --ks 4096 --frames 1000000 --threads 8

The real run fits scikit-learn's ``MiniBatchKMeans`` (the HuBERT recipe's settings, config
``pseudo_labels.pan2024_gmp.kmeans``) on the frames of a fold's training audio: IEMOCAP's 419 minutes
at 50 frames/s are ~1.26 M frames, four sessions of five ~1.0 M, of 768-d HuBERT-base features.
A whole fit at that size takes too long for a shared 2-core machine, so the pieces are timed on
random 768-d frames and extrapolated:

* ``init``: one k-means++ initialisation on ``init_size`` frames (sklearn: 3 x batch_size = 30,000),
  timed at n_init = 1; the fit runs ``n_init`` (20) of them;
* ``step``: one mini-batch step (``batch_size`` 10,000 frames), the median of a few; a fit runs at
  most ``max_iter x frames / batch_size`` steps (100 x 100 = 10,000 at 1 M frames) and usually stops
  earlier (``max_no_improvement``: 100 steps without improvement of the smoothed inertia), so the
  printed range is [``min_steps`` .. max] steps;
* ``assign``: labelling every frame (``predict``), timed on ``--assign-frames`` and scaled linearly.

Printed: seconds per piece and the estimated minutes per fit (per K and per pseudo-label job of the
three scales).  Figures depend on the machine and its load (BLAS threads: ``--threads``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="*", default=[64, 512, 4096])
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames of one fold's training audio")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--n-init", type=int, default=20)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--min-steps", type=int, default=500, help="lower end of the steps range (early stop)")
    ap.add_argument("--steps", type=int, default=5, help="timed mini-batch steps")
    ap.add_argument("--assign-frames", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    init_size = 3 * args.batch_size
    X = rng.standard_normal((max(init_size, args.assign_frames, args.batch_size * (args.steps + 1)), args.dim),
                            dtype=np.float32)
    max_steps = args.max_iter * args.frames // args.batch_size
    print(f"# {args.frames:,} frames x {args.dim}, batch {args.batch_size}, n_init {args.n_init}, max_iter "
          f"{args.max_iter} (<= {max_steps:,} steps), {args.threads} threads; machine shared (figures under load)")
    print("| K | init (s) | step (s) | assign / 1M frames (s) | fit estimate (min) |")
    print("|---|---|---|---|---|")
    total_lo = total_hi = 0.0
    with threadpool_limits(args.threads):
        for k in args.ks:
            km = MiniBatchKMeans(n_clusters=k, init="k-means++", batch_size=args.batch_size, n_init=1,
                                 init_size=init_size, random_state=0, max_iter=1, compute_labels=False)
            t0 = time.perf_counter()
            km.partial_fit(X[:init_size])          # the first partial_fit = one initialisation + one step
            t_first = time.perf_counter() - t0
            dts = []
            for i in range(args.steps):
                b = X[(i + 1) * args.batch_size:(i + 2) * args.batch_size]
                t0 = time.perf_counter()
                km.partial_fit(b)
                dts.append(time.perf_counter() - t0)
            step = statistics.median(dts)
            init = max(t_first - step, 0.0)
            t0 = time.perf_counter()
            km.predict(X[:args.assign_frames])
            assign = (time.perf_counter() - t0) * 1e6 / args.assign_frames
            lo = (args.n_init * init + args.min_steps * step + assign * args.frames / 1e6) / 60
            hi = (args.n_init * init + max_steps * step + assign * args.frames / 1e6) / 60
            total_lo, total_hi = total_lo + lo, total_hi + hi
            print(f"| {k} | {init:.2f} | {step:.3f} | {assign:.1f} | {lo:.0f} - {hi:.0f} |", flush=True)
    print(f"\none pseudo-label job (every K, one layer): {total_lo:.0f} - {total_hi:.0f} min of k-means "
          f"(+ one encoder pass over the fold's training audio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
