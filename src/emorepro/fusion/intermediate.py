"""Intermediate concatenation (Lee et al. 2023, Sec. 2.3 and Table 5): one classifier on the
concatenated feature-extractor outputs of n trials, beside the late combination (sum of logits).

The paper says only that this fusion "concatenates the output features of the FEs"; which
classifier reads the concatenation, and on what data it is trained, are not stated.  Our choice
(:class:`IntermediateOptions`, config ``fusion.<set>.intermediate``):

* per fold k, each trial's fold-k run supplies the pooled FE output ``f`` of every training and
  test utterance of that fold (``embeddings.npz``, written by the engine's ``save_embeddings``);
  the n vectors of an utterance are concatenated (trial order of the set): ``x = [f_1 .. f_n]``;
* the classifier is trained on the fold's **training utterances only** (by default every corpus
  the trials trained on; ``train_corpus`` restricts it to one), after standardising each feature
  with the training utterances' mean and standard deviation: multinomial logistic regression
  (L2, ``C``, lbfgs; scikit-learn), deterministic;
* it predicts the fold's test utterances of the set's ``corpus``; predictions are pooled over the
  folds and scored like the late combination (UAR, WAR, confusion).

A test utterance never enters a fit: the training and test ids of every fold are checked
disjoint, and the scaler and the classifier see the training rows only.  (The training
utterances' features come from FEs that were trained on them, the test features from FEs that
were not: the usual caveat of stacking, which the paper's wording does not let us avoid.)
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..io import InputError

log = logging.getLogger(__name__)


@dataclass
class IntermediateOptions:
    """``fusion.<set>.intermediate``: the classifier on the concatenated FE outputs (our choice, see above)."""

    train_corpus: str | None = None   # None: every training utterance of the fold; a corpus: only its utterances
    C: float = 1.0                    # inverse L2 strength of the logistic regression (scikit-learn's default)
    max_iter: int = 1000              # lbfgs iterations

    def __post_init__(self):
        if not self.C > 0:
            raise InputError(f"config: fusion.<set>.intermediate.C must be > 0, got {self.C}")
        if self.max_iter < 1:
            raise InputError(f"config: fusion.<set>.intermediate.max_iter must be >= 1, got {self.max_iter}")


def _read_embeddings(path: Path, verify: bool) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: missing: the trial's run saved no embeddings; set train.save_embeddings: "
                         "[train, test] for its experiment (intermediate concatenation reads them)")
    if verify:
        from ..provenance import check_against_sidecar

        check_against_sidecar(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    missing = [k for k in ("train_ids", "train_embedding", "test_ids", "test_embedding") if k not in arrays]
    if missing:
        raise InputError(f"{path}: lacks {missing}: the run must save the train and test splits' embeddings "
                         "(train.save_embeddings: [train, test])")
    return arrays


def fit_intermediate(x_train: np.ndarray, y_train: np.ndarray, options: IntermediateOptions):
    """Standardise with the training rows' statistics, then multinomial logistic regression: a fitted pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=options.C, max_iter=options.max_iter))
    return clf.fit(x_train, y_train)


def _concat(arrays: Sequence[dict[str, np.ndarray]], split: str, names: Sequence[str], files: Sequence[Path]):
    ids = arrays[0][f"{split}_ids"].astype(str)
    for a, name, f in zip(arrays[1:], names[1:], files[1:]):
        other = a[f"{split}_ids"].astype(str)
        if other.shape != ids.shape or (other != ids).any():
            p = int(np.flatnonzero(other != ids)[0]) if other.shape == ids.shape else min(len(ids), len(other))
            raise InputError(f"{f}: trial {name!r}: {split} utterances differ from trial {names[0]!r}'s at position {p} "
                             "(the trials of a set must share corpus, folds and order)")
    return ids, np.concatenate([a[f"{split}_embedding"].astype(np.float32) for a in arrays], axis=1)


def run_intermediate(trials: Mapping[str, Sequence[str | os.PathLike]], manifest_csv: str, classes: Sequence[str],
                     out_csv, out_json, *, corpus: str | None = None, options: IntermediateOptions | None = None,
                     verify: bool = True, threads: int = 1) -> dict:
    """Intermediate concatenation of every trial of a set (``trials``: name -> run directories in fold order);
    ``threads``: BLAS threads of the fits."""
    import pandas as pd

    from ..metrics import classification_metrics

    opts = options or IntermediateOptions()
    names = list(trials)
    runs = [[Path(d) for d in trials[n]] for n in names]
    n_folds = {len(r) for r in runs}
    if len(n_folds) != 1:
        raise InputError(f"trials have different numbers of runs (folds): {dict(zip(names, map(len, runs)))}")
    manifest = pd.read_csv(manifest_csv, keep_default_na=False).set_index("utt_id")
    index = {c: i for i, c in enumerate(classes)}
    for key, wanted in (("corpus", corpus), ("train_corpus", opts.train_corpus)):
        if wanted is not None and "corpus" not in manifest.columns:
            raise InputError(f"{manifest_csv}: no `corpus` column, so {key} {wanted!r} cannot be applied")
    t0 = time.time()
    pred_ids, preds, labels, folds, per_fold = [], [], [], [], []
    for k in range(n_folds.pop()):
        files = [r[k] / "embeddings.npz" for r in runs]
        arrays = [_read_embeddings(f, verify) for f in files]
        tr_ids, x_tr = _concat(arrays, "train", names, files)
        te_ids, x_te = _concat(arrays, "test", names, files)
        leak = sorted(set(tr_ids) & set(te_ids))
        if leak:
            raise InputError(f"{files[0]}: fold {k + 1}: utterances {leak[:3]} are both training and test utterances")
        unknown = sorted(set(tr_ids) - set(manifest.index))[:3] + sorted(set(te_ids) - set(manifest.index))[:3]
        if unknown:
            raise InputError(f"{files[0]}: utterances {unknown} are not in {manifest_csv}")
        keep_tr = np.ones(len(tr_ids), bool) if opts.train_corpus is None else \
            (manifest.loc[tr_ids, "corpus"] == opts.train_corpus).to_numpy()
        keep_te = np.ones(len(te_ids), bool) if corpus is None else (manifest.loc[te_ids, "corpus"] == corpus).to_numpy()
        if not keep_tr.any() or not keep_te.any():
            raise InputError(f"fold {k + 1}: no {'training' if not keep_tr.any() else 'test'} utterance of corpus "
                             f"{opts.train_corpus if not keep_tr.any() else corpus!r}")
        y_tr = np.array([index[c] for c in manifest.loc[tr_ids[keep_tr], "label"]], dtype=np.int64)
        y_te = np.array([index[c] for c in manifest.loc[te_ids[keep_te], "label"]], dtype=np.int64)
        # BLAS threads capped at the job's: on a busy machine OpenBLAS's extra threads spin (the demo's 662 x
        # 1,920 fit took 13 s with 2 threads under load, 0.4 s with 1)
        with threadpool_limits(limits=threads):
            model = fit_intermediate(x_tr[keep_tr], y_tr, opts)    # training utterances only
            p = model.predict(x_te[keep_te])
        pred_ids += te_ids[keep_te].tolist()
        preds.append(p)
        labels.append(y_te)
        folds += [k + 1] * int(keep_te.sum())
        per_fold.append({"fold": k + 1, "n_train": int(keep_tr.sum()), "n_test": int(keep_te.sum()),
                         "n_features": int(x_tr.shape[1]), "n_iter": int(np.max(model[-1].n_iter_))})
        log.info("fold %d: %d training x %d features -> %d test utterances", k + 1, keep_tr.sum(), x_tr.shape[1],
                 keep_te.sum())
    y, p = np.concatenate(labels), np.concatenate(preds)
    m = classification_metrics(y, p, classes)
    row = {"method": "intermediate", "k": len(names), "uar": m["uar"], "war": m["war"], "subset": "+".join(names),
           "subset_idx": "+".join(map(str, range(len(names)))), "seconds": round(time.time() - t0, 3),
           "gap_to_exact": None, "n_evaluated": 1, "confusion": m["confusion"]}
    doc = {"trials": names, "sources": {n: [str(d) for d in r] for n, r in zip(names, runs)}, "corpus": corpus,
           "n_utts": int(len(y)), "n_classes": len(classes), "classes": list(classes), "options": asdict(opts),
           "classifier": "StandardScaler + LogisticRegression (multinomial, L2, lbfgs), fit per fold on training "
                         "utterances only", "folds": per_fold, "rows": [row],
           "predictions": {"utt_id": pred_ids, "fold": folds, "label": y.tolist(), "pred": p.tolist()}}
    from .api import write_outputs

    write_outputs([row], doc, out_csv, out_json)
    return doc
