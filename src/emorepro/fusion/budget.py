"""How long an exact search will take, and refusing the searches that cannot finish.

The exact search is close to exhaustive on trials as diverse as the papers' (see
:mod:`.kernels`), so its time is about the number of subsets ``C(n, k)`` times the cost of
counting one subset, which grows with the number of *open* utterances (those not decided
for every subset, known after the cheap quantisation step).  The model, per size ``k``::

    cpu_seconds = C(n, k) * (LEAF_SECONDS + n_open * rows_factor / RATE)

with ``rows_factor = 1`` up to four classes (the vectorised loops) and ``2 J / 3`` above
(the generic loops over ``J = C - 1`` wrong classes), divided by the worker threads.

Calibration (``python benchmarks/fusion_search.py --calibrate``, this 2-core machine under
load from other jobs, one thread): 2.1-3.7e10 open-utterance x subset counts per CPU
second for four classes at k = 9-13 on 30 trials x 5,531 utterances (3,399 open),
1.4-2.9e10 on 26 trials with about 900 open, 2.8-8.1e9 for six classes.  :data:`RATE`
takes the low end, so the estimate errs long: 1.3-1.9x the measured CPU time on the
IEMOCAP-sized shape, up to 3.6x on the small ones (the fixed part), and 108 s against
55 s measured for every k of 30 trials on 2 threads.  Only this machine was measured.

Nothing here imports numba: the workflow calls :func:`lower_bound_seconds` when it
parses the config.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from ..io import InputError

RATE = 2.0e10  # open-utterance x subset counts per CPU second (four classes), low end of the calibration
LEAF_SECONDS = 5e-9  # CPU seconds per subset however few utterances are open (measured: 30-60 ns at 500-900 open)
FIXED_SECONDS = 0.5  # beam incumbents, tables, threads: per size, small problems
LOWER_BOUND_LEAF_SECONDS = 1e-9  # no machine counts a subset in under 1 ns per thread (this one: >= 30 ns)
DEFAULT_MAX_HOURS = 4.0  # budget of one search (config `fusion.<name>.max_hours`, CLI --max-hours)


class SearchTooLarge(InputError):
    """An exact search whose estimated time exceeds its budget (raised before any work)."""


def estimate_seconds(n: int, k: int, n_open: int, n_classes: int = 4, threads: int = 1) -> float:
    """Estimated wall seconds of the exact search for size ``k`` of ``n`` trials."""
    if k >= n:
        return 0.0  # one subset: the full set
    J = max(n_classes - 1, 1)
    rows = 1.0 if J <= 3 else 2.0 * J / 3.0
    cpu = math.comb(n, k) * (LEAF_SECONDS + max(int(n_open), 0) * rows / RATE)
    return FIXED_SECONDS + cpu / max(int(threads), 1)


def lower_bound_seconds(n: int, k: int, threads: int = 1) -> float:
    """A time the search of size ``k`` cannot beat on any machine: ``C(n, k)`` ns per thread.

    For checks before the data exist (the workflow's parse step): what this refuses
    cannot finish whatever the utterances.
    """
    return 0.0 if k >= n else math.comb(n, k) * LOWER_BOUND_LEAF_SECONDS / max(int(threads), 1)


def format_seconds(s: float) -> str:
    """``42 s``, ``12 min``, ``3.1 h``, ``5 days``, ``2.4e+06 years``."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    if s < 365 * 86400:
        return f"{s / 86400:.0f} days"
    years = s / (365.25 * 86400)
    return f"{years:.0f} years" if years < 1e4 else f"{years:.1e} years"


def normalise_ks(ks, n: int) -> list[int]:
    """Sorted distinct sizes from ``"all"``/None (1..n), one integer or a list; each in 1..n."""
    if ks is None or (isinstance(ks, str) and ks == "all"):
        return list(range(1, n + 1))
    if isinstance(ks, str):
        raise ValueError(f"ks must be 'all', an integer or a list of integers, got {ks!r}")
    if isinstance(ks, numbers.Integral):
        ks = [ks]
    out = sorted({int(k) for k in ks})
    for k in out:
        if not 1 <= k <= n:
            raise ValueError(f"k={k} outside 1..{n} (number of trials)")
    return out


def check_config(name: str, spec: dict, n_trials: int, threads: int) -> None:
    """Parse-time check of the fusion set ``fusion.<name>`` (``spec``) of ``n_trials`` trials.

    Sizes must lie in 1..n; sizes whose :func:`lower_bound_seconds` exceeds the set's
    ``max_hours`` cannot finish whatever the data and are refused now, before their trials
    are trained (the job refines the estimate once the logits exist).  Raises
    :class:`InputError` naming the config key.
    """
    key = f"config: fusion.{name}"
    max_hours = spec.get("max_hours")
    max_seconds = (DEFAULT_MAX_HOURS if max_hours is None else float(max_hours)) * 3600
    try:
        ks = normalise_ks(spec.get("ks", "all"), n_trials)
        honest = spec.get("honest_ks")
        honest = None if honest is None else normalise_ks(list(honest), n_trials)
    except ValueError as e:
        raise InputError(f"{key}.ks/honest_ks: {e}") from None
    est = {k: lower_bound_seconds(n_trials, k, threads) for k in ks}
    check_budget(est, n_trials, max_seconds, f"{key}.ks ({n_trials} trials, max_hours {max_seconds / 3600:g})",
                 at_least=True)
    if honest:
        est = {k: lower_bound_seconds(n_trials, k, threads) for k in honest}
        check_budget(est, n_trials, max_seconds, f"{key}.honest_ks ({n_trials} trials)", at_least=True)


def check_budget(estimates: dict[int, float], n: int, max_seconds: float, what: str, *,
                 at_least: bool = False) -> None:
    """Raise :class:`SearchTooLarge` when the estimates (size -> seconds) exceed the budget.

    The message names every size over the budget (the largest first, at most four), its
    number of subsets and its estimate ("at least" for lower bounds), and the sizes that
    would fit.
    """
    about = "at least" if at_least else "about"
    total = sum(estimates.values())
    if total <= max_seconds:
        return
    over = sorted((k for k, s in estimates.items() if s > max_seconds), key=lambda k: -estimates[k])
    shown = over[:4] or sorted(estimates, key=lambda k: -estimates[k])[:4]
    sizes = "; ".join(f"k={k}: C({n},{k}) = {math.comb(n, k):.3g} subsets, {about} {format_seconds(estimates[k])}"
                      for k in shown)
    more = f" (and {len(over) - len(shown)} more sizes)" if len(over) > len(shown) else ""
    fit = sorted(k for k, s in estimates.items() if s <= max_seconds)
    head = (f"{what}: sizes over the time budget of {format_seconds(max_seconds)}" if over else
            f"{what}: {len(estimates)} sizes together need {about} {format_seconds(total)}, over the time budget "
            f"of {format_seconds(max_seconds)}")
    hint = (f"; sizes within it on their own: {_ranges(fit)}" if fit else "") + \
        "; ask for fewer or smaller sizes (the estimate is C(n, k) x a calibrated rate, see emorepro.fusion.budget)"
    raise SearchTooLarge(f"{head}: {sizes}{more}{hint}")


def _ranges(ks: Iterable[int]) -> str:
    """``[1, 2, 3, 5, 28, 29, 30]`` -> ``1-3, 5, 28-30``."""
    out, run = [], []
    for k in sorted(ks):
        if run and k == run[-1] + 1:
            run.append(k)
        else:
            if run:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = [k]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
