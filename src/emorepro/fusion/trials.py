"""Loading trials: the runs' ``predictions.csv`` (the workflow) or an ``.npz`` of logits (the CLI).

Every trial must give the same utterances in the same order with the same labels and
folds; both readers check it by utterance id and name the first difference (an npz
without ids cannot be checked, and says so).  A fusion set may be restricted to one
corpus of multi-corpus runs (their predictions carry a ``corpus`` column).
"""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import InputError


@dataclass
class TrialData:
    """Logits of several trials over the same utterances.

    Attributes
    ----------
    names : list of str
    logits : ndarray, shape (n_trials, n_utts, n_classes), float64  (test split)
    labels, folds : ndarray, shape (n_utts,)
    utt_ids : list of str
    val_logits, val_labels, val_folds, val_utt_ids : validation split, or None when some
        trial has no ``val`` rows.
    sources : dict, trial name -> its run directories
    corpus : str or None, the corpus the rows were restricted to
    """

    names: list
    logits: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    utt_ids: list
    val_logits: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    val_folds: np.ndarray | None = None
    val_utt_ids: list | None = None
    sources: dict = field(default_factory=dict)
    corpus: str | None = None


def _read_predictions(path: Path, corpus: str | None = None):
    """Rows of one ``predictions.csv`` by split: utt ids, folds, labels, logits.

    With ``corpus``, only the rows whose ``corpus`` column equals it (the file must have
    that column).  Also returns the set of corpora the file names (empty without the column).
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        need = ["utt_id", "fold", "split", "label"]
        missing = [c for c in need if c not in cols]
        logit_cols = sorted((c for c in cols if c.startswith("logit_")), key=lambda c: int(c[6:]))
        if missing or not logit_cols:
            raise InputError(f"{path}: missing columns {missing or ['logit_0...']}")
        if [int(c[6:]) for c in logit_cols] != list(range(len(logit_cols))):
            raise InputError(f"{path}: logit columns must be logit_0..logit_{{C-1}}, got {logit_cols}")
        if corpus is not None and "corpus" not in cols:
            raise InputError(f"{path}: no `corpus` column, so its rows cannot be restricted to corpus {corpus!r} "
                             "(only the predictions of multi-corpus runs carry one)")
        out = {s: ([], [], [], []) for s in ("test", "val")}
        seen = set()
        for line, row in enumerate(reader, start=2):
            split = row["split"]
            if split not in out:
                raise InputError(f"{path}:{line}: split must be 'test' or 'val', got {split!r}")
            if corpus is not None:
                seen.add(row["corpus"])
                if row["corpus"] != corpus:
                    continue
            ids, fl, lab, lg = out[split]
            ids.append(row["utt_id"])
            fl.append(row["fold"])
            try:
                lab.append(int(row["label"]))
                lg.append([float(row[c]) for c in logit_cols])
            except ValueError as e:
                raise InputError(f"{path}:{line}: {e}") from None
    return out, len(logit_cols), seen


def _check_same(name, ref_name, ref, cur, what):
    """Raise on the first position where ``cur`` (ids, folds, labels) differs from ``ref``."""
    ids0, folds0, lab0 = ref
    ids1, folds1, lab1 = cur
    for p in range(max(len(ids0), len(ids1))):
        a = ids0[p] if p < len(ids0) else None
        b = ids1[p] if p < len(ids1) else None
        if b is None:
            detail = f"missing utt_id {a!r} (present in trial {ref_name!r})"
        elif a is None:
            detail = f"extra utt_id {b!r} (absent from trial {ref_name!r})"
        elif a != b:
            detail = f"utt_id {b!r} (expected {a!r} as in trial {ref_name!r})"
        elif folds0[p] != folds1[p] or lab0[p] != lab1[p]:
            detail = (f"utt_id {b!r}: fold/label ({folds1[p]}, {lab1[p]}) != ({folds0[p]}, {lab0[p]}) "
                      f"in trial {ref_name!r}")
        else:
            continue
        raise InputError(f"trial {name!r}: {what} rows differ at position {p}: {detail}")


def load_trials(trials: Mapping[str, Sequence[str | os.PathLike]], corpus: str | None = None) -> TrialData:
    """Read and align the ``predictions.csv`` of several trials.

    Parameters
    ----------
    trials : mapping trial name -> list of run directories
        One run directory per fold; each holds ``predictions.csv`` with columns
        ``utt_id, fold, split, label, pred, logit_0 .. logit_{C-1}`` (``split`` is
        ``test`` or ``val``; ``pred`` is not used, predictions come from the logits;
        extra columns are ignored).  A trial's runs are pooled in the given order.  A
        path ending in ``.csv`` is read as the file itself.
    corpus : str, optional
        Keep only the rows (test and validation) of this corpus: the files must have a
        ``corpus`` column (multi-corpus runs write one), and every trial must keep some
        test rows.

    Returns
    -------
    TrialData
        Test rows are what gets fused; validation rows are kept when every trial has some.

    Raises
    ------
    InputError (a ValueError)
        When a trial's utterances (ids, order, labels or folds) differ from the first
        trial's: the message names the trial, the position and the first differing utt_id.
        Also on duplicate utterance ids, differing class counts, malformed files, a
        missing ``corpus`` column or a corpus with no test rows.
    """
    if not trials:
        raise InputError("no trials given")
    names = list(trials)
    per_split = {"test": [], "val": []}
    n_classes = None
    ref_meta = {}
    sources = {}
    for name in names:
        runs = [Path(r) for r in trials[name]]
        if not runs:
            raise InputError(f"trial {name!r}: no run directories")
        pooled = {s: ([], [], [], []) for s in ("test", "val")}
        corpora = set()
        for run in runs:
            path = run / "predictions.csv" if run.is_dir() or not run.suffix else run
            rows, C, seen = _read_predictions(path, corpus)
            corpora |= seen
            if n_classes is None:
                n_classes = C
            elif C != n_classes:
                raise InputError(f"trial {name!r}: {path} has {C} logit columns, expected {n_classes}")
            for s in pooled:
                for acc, new in zip(pooled[s], rows[s]):
                    acc.extend(new)
        sources[name] = [str(r) for r in runs]
        if not pooled["test"][0]:
            where = f" of corpus {corpus!r} (corpora present: {', '.join(sorted(corpora)) or 'none'})" if corpus else ""
            raise InputError(f"trial {name!r}: no test rows{where} in {[str(r) for r in runs]}")
        for s in ("test", "val"):
            ids, fl, lab, lg = pooled[s]
            if len(set(ids)) != len(ids):
                seen_ids = set()
                dup = next(u for u in ids if u in seen_ids or seen_ids.add(u))
                raise InputError(f"trial {name!r}: utt_id {dup!r} occurs twice in the {s} rows")
            meta = (ids, fl, lab)
            if s in ref_meta:
                if ref_meta[s] is not None and ids:
                    _check_same(name, names[0], ref_meta[s], meta, s)
                elif ref_meta[s] is not None:
                    ref_meta[s] = None  # some trial lacks val rows: no validation split
            else:
                ref_meta[s] = meta if ids else None
            per_split[s].append(np.asarray(lg, np.float64).reshape(len(ids), n_classes) if ids else None)
    ids, fl, lab = ref_meta["test"]
    data = TrialData(names=names, logits=np.stack(per_split["test"]), labels=np.asarray(lab, np.int64),
                     folds=np.asarray(fl), utt_ids=list(ids), sources=sources, corpus=corpus)
    if ref_meta["val"] is not None and all(v is not None for v in per_split["val"]):
        vids, vfl, vlab = ref_meta["val"]
        data.val_logits = np.stack(per_split["val"])
        data.val_labels = np.asarray(vlab, np.int64)
        data.val_folds = np.asarray(vfl)
        data.val_utt_ids = list(vids)
    return data


def load_npz(path) -> TrialData:
    """Trials from an ``.npz``: ``logits`` (n_trials, n_utts, n_classes), ``labels`` (n_utts,).

    Optional arrays: ``utt_ids`` (n_trials, n_utts) strings, each trial's utterance order,
    checked like the ``predictions.csv`` path (every row must equal the first; the error
    names the trial, the position and the id); ``trials`` (n_trials,) names; ``folds``
    (n_utts,).  Without ``utt_ids`` the alignment cannot be checked: ``utt_ids`` of the
    result is then empty.  Every error names the file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:  # not a zip/npy file, object arrays (pickles are refused)
        raise InputError(f"{path}: not a readable .npz of plain arrays ({e})") from None
    missing = [k for k in ("logits", "labels") if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing array(s) {missing} (has {sorted(arrays)}); expected logits "
                         "(n_trials, n_utts, n_classes) and labels (n_utts,)")
    logits, labels = arrays["logits"], arrays["labels"]
    if logits.ndim != 3:
        raise InputError(f"{path}: logits must be (n_trials, n_utts, n_classes), got shape {logits.shape}")
    n, N, _ = logits.shape
    names = [str(x) for x in arrays["trials"]] if "trials" in arrays else [f"trial{i}" for i in range(n)]
    if len(names) != n:
        raise InputError(f"{path}: trials has {len(names)} names for {n} trials")
    ids: list = []
    if "utt_ids" in arrays:
        u = arrays["utt_ids"]
        if u.shape != (n, N):
            raise InputError(f"{path}: utt_ids must be (n_trials, n_utts) = ({n}, {N}), one row per trial so that "
                             f"each trial's order is checked; got shape {u.shape}")
        u = u.astype(str)
        ref = u[0].tolist()
        if len(set(ref)) != len(ref):
            seen: set = set()
            dup = next(x for x in ref if x in seen or seen.add(x))
            raise InputError(f"{path}: utt_id {dup!r} occurs twice in trial {names[0]!r}")
        for i in range(1, n):
            bad = np.flatnonzero(u[i] != u[0])
            if len(bad):
                p = int(bad[0])
                raise InputError(f"{path}: trial {names[i]!r}: rows differ at position {p}: utt_id {str(u[i, p])!r} "
                                 f"(expected {str(u[0, p])!r} as in trial {names[0]!r})")
        ids = ref
    folds = arrays["folds"] if "folds" in arrays else np.zeros(N, np.int64)
    if folds.shape != (N,):
        raise InputError(f"{path}: folds must have shape ({N},), got {folds.shape}")
    return TrialData(names=names, logits=logits, labels=labels, folds=folds, utt_ids=ids,
                     sources={nm: [str(path)] for nm in names})


# --------------------------------------------------------------------------------------
# Synthetic data (benchmark and tests)
# --------------------------------------------------------------------------------------
IEMOCAP4_COUNTS = (1103, 1636, 1084, 1708)  # angry, happy+excited, sad, neutral (5,531 utterances)


def synthetic_trials(n_trials: int = 30, n_utts: int = 5531, n_classes: int = 4, seed: int = 0, *,
                     signal: float = 1.75, shared: float = 1.0, noise: float = 0.45, bias: float = 0.15):
    """Correlated synthetic trials resembling the paper's 30 IEMOCAP trials.

    ``logits[i, u] = signal * onehot(y_u) + shared * z_u + noise * e_iu + bias * b_i`` with
    standard normal ``z`` (per utterance, shared by all trials: the utterance's
    difficulty), ``e`` (per trial and utterance) and ``b`` (per trial and class).  The
    defaults give single trials of about 73 % UAR and a full integration of about 77 %,
    like Tables 3 and 5 of the paper.  With 4 classes and 5,531 utterances the class
    sizes are IEMOCAP's.

    Returns
    -------
    logits : ndarray, shape (n_trials, n_utts, n_classes); labels : ndarray, shape (n_utts,)
    """
    rng = np.random.default_rng(seed)
    if n_classes == 4 and n_utts == sum(IEMOCAP4_COUNTS):
        labels = np.repeat(np.arange(4), IEMOCAP4_COUNTS)
        rng.shuffle(labels)
    else:
        labels = rng.integers(0, n_classes, n_utts)
    base = signal * np.eye(n_classes)[labels] + shared * rng.standard_normal((n_utts, n_classes))
    logits = (base[None] + noise * rng.standard_normal((n_trials, n_utts, n_classes))
              + bias * rng.standard_normal((n_trials, 1, n_classes)))
    return logits, labels.astype(np.int64)
