"""Benchmark of the best-subset search for late fusion (emorepro.fusion).

Synthetic trials like the paper's (30 trials x 5,531 IEMOCAP utterances x 4 classes,
single trials ~73 % UAR, full integration ~77 %; seeded), then:

* naive: ``itertools.combinations`` + numpy argmax + integer UAR on a random sample of
  subsets, extrapolated to all subsets of size 9 and of every size;
* greedy forward selection and beam search, with their gap to the exact optimum;
* the exact search for k = 9 and for every k (unless ``--skip-all``), beside the time
  estimate the search refuses sizes by (:mod:`emorepro.fusion.budget`);
* ``--calibrate``: the estimate against single-thread measurements on several shapes
  (where the rate of :data:`emorepro.fusion.budget.RATE` comes from);
* ``--n70``: what Lee et al.'s full integration of 70 trials costs (exact, greedy and beam
  at k = 70, the honest selections at k = 70) and that every k is refused at once.

Prints subsets/s, seconds, speed-ups over naive measured in the same run and the peak
RSS; ``--json`` also writes the figures.  The first-ever run compiles the numba kernels
(reported separately; later runs load them from the cache).

Usage::

    PYTHONPATH=src python benchmarks/fusion_search.py            # full: 30 x 5531, all k
    PYTHONPATH=src python benchmarks/fusion_search.py --quick    # 16 x 2000, seconds
    PYTHONPATH=src python benchmarks/fusion_search.py --n 20 --utts 5531 --threads 2
    PYTHONPATH=src python benchmarks/fusion_search.py --calibrate --n70 --skip-all
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import sys
import time

import numpy as np


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def naive_rate(logits, labels, k, n_subsets, seed=0):
    """Subsets per second of the textbook loop (itertools + numpy), on a sample of size-k subsets."""
    n, _, C = logits.shape
    support = np.bincount(labels, minlength=C)
    present = support > 0
    combos = list(itertools.islice(itertools.combinations(range(n), k), 200_000))
    rng = np.random.default_rng(seed)
    sample = [combos[i] for i in rng.choice(len(combos), min(n_subsets, len(combos)), replace=False)]
    best = -1.0
    t = time.perf_counter()
    for subset in sample:
        pred = np.argmax(logits[list(subset)].sum(axis=0), axis=1)
        correct = np.bincount(labels[pred == labels], minlength=C)
        best = max(best, float(np.mean(correct[present] / support[present])))
    dt = time.perf_counter() - t
    return len(sample) / dt, dt


def naive_all_k_seconds(logits, labels, k_rate, n_subsets, seed=0):
    """Extrapolated naive time for every size: per-subset cost is linear in k (the sum)."""
    n = logits.shape[0]
    ks = sorted({1, max(1, n // 2), n} - {k_rate[0]})
    points = [k_rate] + [(k, naive_rate(logits, labels, k, max(200, n_subsets // 3), seed)[0]) for k in ks]
    kk = np.array([p[0] for p in points], float)
    cost = np.array([1.0 / p[1] for p in points])
    b, a = np.polyfit(kk, cost, 1)
    return float(sum(math.comb(n, k) * max(a + b * k, cost.min()) for k in range(1, n + 1)))


def calibrate(F) -> list:
    """Single-thread CPU seconds of the exact search against :func:`emorepro.fusion.budget.estimate_seconds`."""
    from emorepro.fusion.budget import RATE, estimate_seconds

    shapes = [(30, 5531, 4, 1.75, 0.45, (9, 11, 13)), (26, 1500, 4, 1.75, 0.45, (9, 11, 13)),
              (26, 5531, 4, 3.0, 0.3, (9, 11, 13)), (24, 2000, 6, 1.75, 0.45, (7, 9, 11))]
    rows = []
    print(f"\ncalibration (1 thread; RATE = {RATE:.1e} open-utterance x subset counts per CPU second):")
    print(f"{'shape':>22} {'k':>3} {'open':>5} {'subsets':>11} {'CPU s':>7} {'estimate':>8} {'ratio':>6} "
          f"{'rate':>8}")
    for n, N, C, signal, noise, ks in shapes:
        logits, labels = F.synthetic_trials(n, N, C, 0, signal=signal, noise=noise)
        for k in ks:
            st = {}
            c = time.process_time()
            F.exact_search(logits, labels, [k], n_threads=1, _stats=st)
            cpu = time.process_time() - c
            est = estimate_seconds(n, k, st["open_utts"], C, 1)
            leaves = math.comb(n, k)
            rows.append({"n": n, "utts": N, "classes": C, "k": k, "open_utts": st["open_utts"], "cpu_seconds": round(cpu, 2),
                         "estimated_seconds": round(est, 2), "rate": leaves * st["open_utts"] / cpu})
            print(f"{f'{n} x {N} x {C} (s={signal})':>22} {k:>3} {st['open_utts']:>5} {leaves:>11,} {cpu:>7.2f} "
                  f"{est:>8.2f} {est / cpu:>6.2f} {rows[-1]['rate']:>8.2e}")
    return rows


def n70(F, args) -> dict:
    """Lee et al.'s 70-trial full integration on IEMOCAP-sized synthetic trials, five folds."""
    logits, labels = F.synthetic_trials(70, 5531, 4, args.seed)
    folds = np.arange(len(labels)) % 5 + 1
    res = {}
    t = time.perf_counter()
    try:
        F.exact_search(logits, labels, "all", n_threads=args.threads)
    except F.SearchTooLarge as e:
        res["all_k_refused_seconds"] = round(time.perf_counter() - t, 3)
        print(f"\n70 trials x 5531: every k refused in {res['all_k_refused_seconds']:.2f} s: {str(e)[:160]}...")
    for name, fn in [("exact_k70", lambda: F.exact_search(logits, labels, [70], n_threads=args.threads)),
                     ("greedy_k70", lambda: F.greedy_forward(logits, labels, [70])),
                     ("beam_k70", lambda: F.beam_search(logits, labels, args.beam_width, [70])),
                     ("greedy_all_k", lambda: F.greedy_forward(logits, labels, "all")),
                     ("beam_all_k", lambda: F.beam_search(logits, labels, args.beam_width, "all")),
                     ("crossfold_k70", lambda: F.cross_fold_selection(logits, labels, folds, 70)),
                     ("validation_k70", lambda: F.validation_selection(logits, labels, logits, labels, 70,
                                                                       val_folds=np.roll(folds, 1), test_folds=folds))]:
        t = time.perf_counter()
        fn()
        res[name] = round(time.perf_counter() - t, 2)
    print("70 trials x 5531 (seconds): " + ", ".join(f"{k} {v}" for k, v in res.items()))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="trials (default 30, --quick 16)")
    ap.add_argument("--utts", type=int, default=None, help="utterances (default 5531, --quick 2000)")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--k", type=int, default=9, help="the single size timed on its own (paper: 9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.45,
                    help="per-trial noise of the generator (0.45: paper-like diversity)")
    ap.add_argument("--signal", type=float, default=1.75, help="class signal of the generator")
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: all CPUs)")
    ap.add_argument("--beam-width", type=int, default=8)
    ap.add_argument("--naive-subsets", type=int, default=3000)
    ap.add_argument("--skip-all", action="store_true", help="skip the exact search over every k")
    ap.add_argument("--quick", action="store_true", help="small problem (16 x 2000) for a smoke test")
    ap.add_argument("--calibrate", action="store_true", help="time estimate vs single-thread measurements")
    ap.add_argument("--n70", action="store_true", help="cost of a 70-trial full integration")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    n = args.n or (16 if args.quick else 30)
    utts = args.utts or (2000 if args.quick else 5531)
    k_one = min(args.k, n)

    t0 = time.perf_counter()
    from emorepro import fusion as F

    t_import = time.perf_counter() - t0
    logits, labels = F.synthetic_trials(n, utts, args.classes, args.seed, noise=args.noise, signal=args.signal)
    out = {"n_trials": n, "n_utts": utts, "n_classes": args.classes, "seed": args.seed, "noise": args.noise,
           "signal": args.signal,
           "threads": F._n_threads(args.threads), "import_seconds": round(t_import, 3)}

    # Compile (first run) or load the cached kernels on a tiny problem, timed apart.
    t = time.perf_counter()
    F.exact_search(logits[: min(n, 5), :50], labels[:50], [4], n_threads=1)
    F.exact_search(logits[: min(n, 5), :50, :], labels[:50], [4], n_threads=1, _margin_rows=4)
    out["compile_or_cache_load_seconds"] = round(time.perf_counter() - t, 2)

    singles = [F.fused_predictions(logits, [i]) for i in range(n)]
    out["single_trial_uar_mean"] = float(np.mean([F.score_predictions(p, labels, args.classes)["uar"]
                                                 for p in singles]))
    full = F.full_integration(logits, labels)
    out["full_integration_uar"] = full.uar

    rate, dt = naive_rate(logits, labels, k_one, args.naive_subsets, args.seed)
    n_k = math.comb(n, k_one)
    n_all = 2**n - 1
    naive_all = naive_all_k_seconds(logits, labels, (k_one, rate), args.naive_subsets, args.seed)
    out["naive"] = {f"subsets_per_s_k{k_one}": round(rate, 1), "sampled_seconds": round(dt, 2),
                    f"extrapolated_seconds_k{k_one}": round(n_k / rate, 1),
                    "extrapolated_seconds_all_k": round(naive_all, 1)}
    print(f"synthetic {n} trials x {utts} utts x {args.classes} classes (seed {args.seed}, noise {args.noise}): "
          f"single-trial UAR {out['single_trial_uar_mean']:.4f}, full integration {full.uar:.4f}")
    print(f"import {t_import:.2f} s; numba compile/cache load {out['compile_or_cache_load_seconds']:.2f} s; "
          f"threads {out['threads']}")
    print(f"naive itertools+numpy: {rate:,.0f} subsets/s at k={k_one} -> k={k_one}: {n_k / rate:,.0f} s, "
          f"all k: {naive_all:,.0f} s (extrapolated, cost linear in k)")

    ks = list(range(1, n + 1))
    t = time.perf_counter()
    greedy = F.greedy_forward(logits, labels, ks)
    t_greedy = time.perf_counter() - t
    t = time.perf_counter()
    beam = F.beam_search(logits, labels, args.beam_width, ks)
    t_beam = time.perf_counter() - t
    print(f"greedy forward: {t_greedy:.2f} s for all k; beam (width {args.beam_width}): {t_beam:.2f} s")

    stats = {}
    t = time.perf_counter()
    c = time.process_time()
    one = F.exact_search(logits, labels, [k_one], n_threads=args.threads, _stats=stats)[k_one]
    wall_one = time.perf_counter() - t
    cpu_one = time.process_time() - c
    out[f"exact_k{k_one}"] = {"wall_seconds": round(wall_one, 2), "cpu_seconds": round(cpu_one, 2),
                             "uar": one.uar, "war": one.war, "subset": list(one.subset),
                             "nodes": one.n_evaluated, "subsets_per_s_equivalent": round(n_k / wall_one),
                             "speedup_vs_naive": round(n_k / rate / wall_one, 1), "open_utts": stats["open_utts"],
                             "table_mib": round(stats["table_bytes"] / 2**20, 1)}
    print(f"exact k={k_one}: {wall_one:.2f} s wall ({cpu_one:.2f} s CPU), UAR {one.uar:.4f} WAR {one.war:.4f} "
          f"subset {list(one.subset)}; {n_k / wall_one:,.0f} subsets/s equivalent, "
          f"{n_k / rate / wall_one:,.0f}x naive; {one.n_evaluated:,} nodes; "
          f"{stats['open_utts']} open utterances; estimate {stats['estimated_seconds'][k_one]:.2f} s")
    out[f"exact_k{k_one}"]["estimated_seconds"] = round(stats["estimated_seconds"][k_one], 2)

    exact = {k_one: one}
    if not args.skip_all:
        t = time.perf_counter()
        c = time.process_time()
        exact = F.exact_search(logits, labels, ks, n_threads=args.threads)
        wall_all = time.perf_counter() - t
        cpu_all = time.process_time() - c
        out["exact_all_k"] = {"wall_seconds": round(wall_all, 2), "cpu_seconds": round(cpu_all, 2),
                              "subsets_per_s_equivalent": round(n_all / wall_all),
                              "speedup_vs_naive": round(naive_all / wall_all, 1),
                              "nodes": sum(r.n_evaluated for r in exact.values())}
        est_all = sum(F.search_estimates(logits, labels, ks, n_threads=args.threads).values())
        out["exact_all_k"]["estimated_seconds"] = round(est_all, 1)
        print(f"exact all k=1..{n}: {wall_all:.2f} s wall ({cpu_all:.2f} s CPU); "
              f"{n_all / wall_all:,.0f} subsets/s equivalent, {naive_all / wall_all:,.0f}x naive; "
              f"estimate {est_all:.1f} s")

    rows = []
    print(f"\n{'k':>3} {'exact UAR':>9} {'WAR':>7} {'greedy':>7} {'beam':>7} {'s(exact)':>9}  subset")
    for k in ks:
        if k not in exact:
            continue
        r = exact[k]
        rows.append({"k": k, "uar": r.uar, "war": r.war, "subset": list(r.subset), "seconds": round(r.seconds, 3),
                     "greedy_gap": r.uar - greedy[k].uar, "beam_gap": r.uar - beam[k].uar})
        print(f"{k:>3} {r.uar:9.4f} {r.war:7.4f} {r.uar - greedy[k].uar:+7.4f} {r.uar - beam[k].uar:+7.4f} "
              f"{r.seconds:9.2f}  {list(r.subset)}")
    out["per_k"] = rows
    if args.calibrate:
        out["calibration"] = calibrate(F)
    if args.n70:
        out["n70"] = n70(F, args)
    out["greedy_seconds"] = round(t_greedy, 2)
    out["beam_seconds"] = round(t_beam, 2)
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(f"\n(greedy/beam columns: exact UAR minus heuristic UAR)\npeak RSS {out['peak_rss_mib']:.0f} MiB")
    # The targets (30 x 5,531 x 4 on 2 cores): k = 9 <= 2 s, all k <= 60 s, < 1 GiB.
    checks = [(f"exact k={k_one} <= 2 s", wall_one <= 2.0), ("peak RSS < 1 GiB", out["peak_rss_mib"] < 1024)]
    if not args.skip_all:
        checks.append(("exact all k <= 60 s", wall_all <= 60.0))
    out["targets"] = {name: ok for name, ok in checks}
    size = "" if (n, utts, args.classes) == (30, 5531, 4) else " (they are set for 30 x 5531 x 4, not this size)"
    print(f"targets{size}: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
