"""Late fusion and the exact best-subset search (emorepro.fusion).

The exact search is checked against an independent brute force: every subset through
``itertools.combinations``, predictions from numpy's argmax of the float64 sum, UAR as a
``Fraction`` of per-class counts (and the winner's value against scikit-learn).  Cases are
seeded and small (n <= 14 trials), with ties on purpose.
"""
from __future__ import annotations

import csv
import itertools
import json
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score

from emorepro import fusion as F
from emorepro.fusion import exact as FX


# --------------------------------------------------------------------------------------
# Brute force reference
# --------------------------------------------------------------------------------------
_BRUTE_CACHE: dict = {}


def brute_force(logits, labels, k):
    """(best UAR as Fraction, lexicographically first best subset) over all k-subsets."""
    logits = np.asarray(logits, dtype=np.float64)
    key = (logits.shape, logits.tobytes(), np.asarray(labels).tobytes(), k)  # shared by the kernel variants
    if key not in _BRUTE_CACHE:
        _BRUTE_CACHE[key] = _brute_force(logits, labels, k)
    return _BRUTE_CACHE[key]


def _brute_force(logits, labels, k):
    present = np.unique(labels)
    support = {int(c): int((labels == c).sum()) for c in present}
    best = None
    for subset in itertools.combinations(range(logits.shape[0]), k):  # lexicographic order
        pred = np.argmax(logits[list(subset)].sum(axis=0), axis=1)
        uar = sum(Fraction(int(((pred == c) & (labels == c)).sum()), support[int(c)]) for c in present)
        uar /= len(present)
        if best is None or uar > best[0]:  # strict: the first subset reaching the max wins
            best = (uar, subset)
    return best


def assert_matches_brute_force(logits, labels, ks, **kw):
    res = F.exact_search(logits, labels, ks, **kw)
    for k in ks:
        uar, subset = brute_force(logits, labels, k)
        r = res[k]
        assert r.subset == subset, f"k={k}: {r.subset} != brute force {subset}"
        n_present = int(np.count_nonzero(r.support))
        assert sum(Fraction(c, s) for c, s in zip(r.correct, r.support) if s) / n_present == uar
        pred = np.argmax(np.asarray(logits, np.float64)[list(subset)].sum(axis=0), axis=1)
        assert r.uar == pytest.approx(recall_score(labels, pred, average="macro", labels=np.unique(labels)), abs=1e-12)
        assert r.war == pytest.approx(accuracy_score(labels, pred), abs=1e-12)
        C = np.asarray(logits).shape[2]
        assert r.confusion.shape == (C, C)
        assert r.confusion.sum() == len(labels)
        np.testing.assert_array_equal(r.confusion.sum(axis=1), np.bincount(labels, minlength=C))
    return res


KERNEL_PATHS = {
    # margin rows padded to three: the vectorised loops (up to four classes); triples
    # tabulated for every trial (the default when they fit the memory budget)
    "vector": {"_margin_rows": 3},
    # four rows take the loops for any number of classes
    "generic-J": {"_margin_rows": 4},
    # no tables of 3+ trials: leaves three picks away go child x pair, four expand
    "pairs-only": {"_set_cuts": (10**6, 10**6, 10**6, 10**6)},
    # triples, no larger sets: four picks away go child x triple
    "triples": {"_set_cuts": (None, 10**6, 10**6, 10**6)},
    # sets of 3, 4, 5, 6 trials from trials 2, 4, 5, 5 on: every leaf path in one node
    "mixed": {"_set_cuts": (2, 4, 5, 5)},
    # every size searched through its complement (by default only sizes above n/2)
    "complement": {"_complement": True},
    "direct": {"_complement": False},
}


@pytest.fixture(params=list(KERNEL_PATHS))
def kernel(request):
    """Keyword arguments of exact_search selecting one kernel path."""
    return KERNEL_PATHS[request.param]


@pytest.fixture
def split_items(monkeypatch):
    """Force the work-item splitting (prefix subtrees, thread merge) even on tiny problems."""
    monkeypatch.setattr(FX, "_SPLIT1", 3)
    monkeypatch.setattr(FX, "_SPLIT2", 30)


def random_case(rng, integer):
    n = int(rng.integers(2, 11))
    N = int(rng.integers(5, 70))
    C = int(rng.integers(2, 6))
    if integer:
        logits = rng.integers(-2, 3, (n, N, C)).astype(np.float64)  # ties everywhere
    else:
        logits = rng.standard_normal((n, N, C)) + 0.8 * rng.standard_normal((1, N, C))  # correlated trials
    labels = rng.integers(0, C, N)
    return logits, labels


# --------------------------------------------------------------------------------------
# Exact search == brute force
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_exact_matches_brute_force_random(seed, kernel, split_items):
    rng = np.random.default_rng(seed)
    for integer in (False, True):
        logits, labels = random_case(rng, integer)
        n = logits.shape[0]
        assert_matches_brute_force(logits, labels, list(range(1, n + 1)), **kernel,
                                   n_threads=1 + seed % 2, incumbent_width=1 + seed % 3)


def test_exact_matches_brute_force_14_trials(split_items):
    # n = 14 crosses the prefix splitting thresholds with real work in each subtree.
    rng = np.random.default_rng(14)
    N, C = 120, 4
    labels = rng.integers(0, C, N)
    shared = 1.2 * np.eye(C)[labels] + rng.standard_normal((N, C))
    logits = shared[None] + 0.7 * rng.standard_normal((14, N, C))
    assert_matches_brute_force(logits, labels, [1, 2, 5, 7, 9, 13, 14], n_threads=2)


@pytest.mark.parametrize("seed", range(4))
def test_exact_single_class_labels(seed, kernel, split_items):
    # Only one class in the labels: often every open utterance is misclassified at a
    # node, which once made the branch-free compaction overwrite a margin row.
    rng = np.random.default_rng(100 + seed)
    n, N, C = 9, int(rng.integers(4, 12)), int(rng.integers(2, 5))
    logits = rng.standard_normal((n, N, C))
    labels = np.full(N, int(rng.integers(0, C)))
    assert_matches_brute_force(logits, labels, list(range(1, n + 1)), **kernel, incumbent_width=1)


# Found by random search against a build whose branch-free compaction lacked a spare
# slot: when every open utterance was misclassified it overwrote another margin row.
REGRESSION_CASES = [
    ([[[0.9, -1.3], [-1.0, 1.2], [-0.1, 2.2]], [[0.9, -0.9], [-0.1, -1.5], [0.8, 1.7]],
      [[-0.3, 0.9], [-0.0, 0.0], [0.2, -1.9]], [[0.5, -1.1], [0.3, 2.5], [-1.3, -1.0]],
      [[-0.4, 0.2], [-0.7, -1.7], [-0.2, 0.1]], [[0.0, 2.1], [-0.7, -1.4], [1.3, 0.5]],
      [[0.6, 0.7], [-0.7, 1.6], [0.8, -2.6]]], [1, 1, 0]),
    ([[[-0.2, -1.2], [-0.5, 0.2], [-0.1, -1.9]], [[-0.8, -1.1], [0.7, -0.3], [-3.6, -0.0]],
      [[0.8, 1.9], [0.1, 0.8], [0.8, -0.6]], [[-0.2, -1.1], [-0.4, -0.6], [-0.2, 1.0]],
      [[0.6, -0.2], [-0.6, -1.5], [0.1, -1.0]], [[0.2, 0.1], [1.3, -0.6], [-0.9, 1.2]],
      [[-1.8, -1.0], [0.1, -0.7], [0.9, -0.7]]], [0, 0, 0]),
]


@pytest.mark.parametrize("case", range(len(REGRESSION_CASES)))
def test_exact_regression_cases(case, kernel):
    logits, labels = (np.array(a) for a in REGRESSION_CASES[case])
    assert_matches_brute_force(logits.astype(float), labels, list(range(1, logits.shape[0] + 1)), **kernel)


def test_generic_kernel_many_classes():
    rng = np.random.default_rng(7)
    logits = rng.integers(-1, 2, (7, 40, 7)).astype(float)
    labels = rng.integers(0, 7, 40)
    assert_matches_brute_force(logits, labels, list(range(1, 8)))  # C = 7 -> generic kernel


def test_ties_between_subsets_pick_lexicographically_smallest(kernel):
    # Trials 1, 2 and 3 are copies of one good trial; 0 and 4 are poor.  Any non-empty
    # set of copies predicts like one copy, so (1,), (2,), (3,) tie, as do (1, 2), (1, 3),
    # (2, 3) and (1, 2, 3): the first in itertools order must win.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 30)
    good = 3.0 * np.eye(3)[labels] + rng.integers(-2, 3, (30, 3))
    poor = lambda: rng.integers(-3, 4, (30, 3)).astype(float)  # noqa: E731
    logits = np.stack([poor(), good, good, good, poor()])
    res = assert_matches_brute_force(logits, labels, [1, 2, 3], **kernel)
    assert res[1].subset == (1,) and res[2].subset == (1, 2) and res[3].subset == (1, 2, 3)
    assert res[1].uar == res[2].uar == res[3].uar


def test_class_ties_follow_numpy_argmax(kernel):
    # Two trials whose sum ties classes 1 and 2 exactly: argmax must pick class 1.
    logits = np.array([
        [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]],
        [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
    ])
    labels = np.array([1, 0])  # sample 0 ties 1 vs 2 -> 1 (correct); sample 1 ties all -> 0 (correct)
    res = assert_matches_brute_force(logits, labels, [1, 2], **kernel)
    assert res[2].uar == 1.0
    np.testing.assert_array_equal(F.fused_predictions(logits, (0, 1)), [1, 0])


def test_absent_class_and_constant_trial(kernel, split_items):
    rng = np.random.default_rng(11)
    n, N, C = 8, 60, 4
    labels = rng.choice([0, 1, 3], N)  # class 2 never occurs: UAR averages 3 recalls
    logits = rng.standard_normal((n, N, C)) + 1.0 * np.eye(C)[labels]
    logits[3] = 0.25  # a trial of constant logits: predicts class 0 everywhere on its own
    logits[5, :, 2] += 1.5  # a trial biased towards the absent class
    res = assert_matches_brute_force(logits, labels, list(range(1, n + 1)), **kernel)
    assert res[1].support[2] == 0
    pred = F.fused_predictions(logits, res[4].subset)
    expected = np.mean([np.mean(pred[labels == c] == c) for c in (0, 1, 3)])
    assert res[4].uar == pytest.approx(expected, abs=1e-15)


def test_float_summation_order_is_the_reference(kernel):
    # Magnitudes where float64 addition is not associative: (1e16 + 1) - 1e16 == 0, not 1.
    # The search must follow the sorted-order float64 sum that numpy computes.
    big = 1e16
    logits = np.zeros((4, 3, 2))
    logits[0, :, 1] = big
    logits[1, :, 1] = 1.0
    logits[1, :, 0] = 0.5
    logits[2, :, 1] = -big
    logits[3, 1, 0] = 0.25
    labels = np.array([0, 1, 0])
    # In exact arithmetic trials (0, 1, 2) give class 1 (1 > 0.5); in float64, class 0.
    assert F.fused_predictions(logits, (0, 1, 2)).tolist() == [0, 0, 0]
    res = assert_matches_brute_force(logits, labels, [1, 2, 3, 4], **kernel)
    assert res[3].subset == (0, 1, 2)


def test_set_tables_hold_the_sums_of_every_set():
    # Each lane table, whether extended from the next smaller one or gathered (a cut that
    # leaves the smaller table too short), holds the sum over its sets, in lexicographic
    # order, ending at the last lane.
    from emorepro.fusion import kernels as FK

    rng = np.random.default_rng(5)
    n = 9
    A = np.zeros((7, 3, 16), np.int16)
    A[:, :, :n] = rng.integers(-300, 300, (7, 3, n))
    for cuts in [(None, None, None, None), (0, 2, 4, 4), (5, 1, 0, 3), (9, 9, 9, 9)]:
        t = FK._lane_tables(A, n, 4, cuts)
        for z, (T, off, cut, sets) in enumerate(zip(t["T"], t["off"], t["cut"], t["sets"])):
            expect = list(itertools.combinations(range(cut, n), z + 1))
            assert [tuple(s) for s in sets] == expect
            for q, s in enumerate(expect):
                np.testing.assert_array_equal(T[:, :, off + q], A[:, :, list(s)].sum(axis=2))
            assert off + len(expect) == T.shape[2] or z == 0


def test_all_utterances_decided():
    # Every trial right everywhere: nothing is left open, every subset scores 100 %.
    labels = np.array([0, 1, 2, 1])
    logits = np.stack([5 * np.eye(3)[labels] + i for i in range(6)])
    res = F.exact_search(logits, labels, [1, 3, 6])
    assert [res[k].subset for k in (1, 3, 6)] == [(0,), (0, 1, 2), tuple(range(6))]
    assert all(res[k].uar == 1.0 for k in (1, 3, 6))


def test_single_class_logits():
    logits = np.random.default_rng(0).standard_normal((3, 5, 1))
    res = F.exact_search(logits, np.zeros(5, int), None)
    assert res[2].subset == (0, 1) and res[2].uar == 1.0


def test_input_validation():
    with pytest.raises(ValueError, match="NaN"):
        F.exact_search(np.full((2, 3, 2), np.nan), np.zeros(3, int), [1])
    with pytest.raises(ValueError, match="labels"):
        F.exact_search(np.zeros((2, 3, 2)), np.array([0, 1, 2]), [1])
    with pytest.raises(ValueError, match="outside"):
        F.exact_search(np.zeros((2, 3, 2)), np.zeros(3, int), [3])


# --------------------------------------------------------------------------------------
# Heuristics
# --------------------------------------------------------------------------------------
def test_heuristics_never_beat_exact_and_wide_beam_is_exact():
    rng = np.random.default_rng(5)
    logits, labels = random_case(rng, integer=False)
    n = logits.shape[0]
    ks = list(range(1, n + 1))
    exact = F.exact_search(logits, labels, ks)
    greedy = F.greedy_forward(logits, labels, ks)
    beam = F.beam_search(logits, labels, width=4, ks=ks)
    wide = F.beam_search(logits, labels, width=2**n, ks=ks)  # keeps every subset: exhaustive
    for k in ks:
        assert greedy[k].uar <= exact[k].uar + 1e-15
        assert beam[k].uar <= exact[k].uar + 1e-15
        assert wide[k].subset == exact[k].subset
    assert greedy[1].subset == exact[1].subset  # size 1 is exhaustive for both
    assert [greedy[k].method for k in (1, 2)] == ["greedy", "greedy"] and beam[1].method == "beam"
    # Greedy subsets are nested: each adds one trial to the previous.
    for k in range(2, n + 1):
        assert set(greedy[k - 1].subset) < set(greedy[k].subset)


def test_full_integration():
    rng = np.random.default_rng(2)
    logits, labels = random_case(rng, integer=False)
    full = F.full_integration(logits, labels)
    pred = np.argmax(logits.sum(axis=0), axis=1)
    assert full.k == logits.shape[0] and full.subset == tuple(range(logits.shape[0]))
    assert full.uar == pytest.approx(recall_score(labels, pred, average="macro", labels=np.unique(labels)))


# --------------------------------------------------------------------------------------
# Honest selection
# --------------------------------------------------------------------------------------
def _folded_case(seed=9, n=8, per_fold=40, n_folds=3, C=4):
    rng = np.random.default_rng(seed)
    N = per_fold * n_folds
    labels = rng.integers(0, C, N)
    folds = np.repeat(np.arange(1, n_folds + 1), per_fold)
    logits = 1.2 * np.eye(C)[labels] + rng.standard_normal((N, C)) + 0.8 * rng.standard_normal((n, N, C))
    return logits, labels, folds


def test_cross_fold_selection_does_not_use_held_out_labels():
    logits, labels, folds = _folded_case()
    k = 3
    ref = F.cross_fold_selection(logits, labels, folds, k)
    # Chosen subsets are the exact optimum on the other folds.
    for f, subset in ref.subsets.items():
        assert subset == F.exact_search(logits[:, folds != f], labels[folds != f], [k])[k].subset
    # The pooled figure scores each fold with its own subset.
    pred = np.empty(len(labels), int)
    for f, subset in ref.subsets.items():
        pred[folds == f] = F.fused_predictions(logits[:, folds == f], subset)
    assert ref.uar == pytest.approx(recall_score(labels, pred, average="macro", labels=np.unique(labels)))
    assert ref.war == pytest.approx(accuracy_score(labels, pred))
    # Scrambling fold 2's labels cannot change the subset chosen for fold 2 ...
    rng = np.random.default_rng(0)
    changed = False
    for _ in range(3):
        perturbed = labels.copy()
        perturbed[folds == 2] = rng.integers(0, 4, (folds == 2).sum())
        res = F.cross_fold_selection(logits, perturbed, folds, k)
        assert res.subsets[2] == ref.subsets[2]
        changed |= res.subsets[1] != ref.subsets[1] or res.subsets[3] != ref.subsets[3]
    # ... while the other folds' subsets do depend on those labels (the test has teeth).
    assert changed


def test_validation_selection_ignores_test_labels():
    logits, labels, folds = _folded_case(seed=4)
    val, test = folds == 1, folds != 1
    a = F.validation_selection(logits[:, val], labels[val], logits[:, test], labels[test], 3)
    assert a.subsets["val"] == F.exact_search(logits[:, val], labels[val], [3])[3].subset
    scrambled = np.random.default_rng(1).permutation(labels[test])
    b = F.validation_selection(logits[:, val], labels[val], logits[:, test], scrambled, 3)
    assert b.subsets == a.subsets
    pred = F.fused_predictions(logits[:, test], a.subsets["val"])
    assert a.uar == pytest.approx(recall_score(labels[test], pred, average="macro", labels=np.unique(labels[test])))


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
def write_run(path, rows, n_classes):
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "fold", "split", "label", "pred"] + [f"logit_{c}" for c in range(n_classes)])
        for utt, fold, split, label, logits in rows:
            w.writerow([utt, fold, split, label, int(np.argmax(logits))] + [repr(float(x)) for x in logits])


def make_trials(tmp_path, n_trials=3, n_folds=2, per_fold=6, C=4, seed=0, with_val=True):
    rng = np.random.default_rng(seed)
    trials = {}
    truth = {}
    for t in range(n_trials):
        runs = []
        for f in range(1, n_folds + 1):
            rows = []
            for j in range(per_fold):
                utt = f"Ses0{f}_utt{j:03d}"
                label = (f * 7 + j) % C
                lg = rng.standard_normal(C)
                rows.append((utt, f, "test", label, lg))
                truth[(t, utt)] = lg
                if with_val:
                    rows.append((f"val_f{f}_{j}", f, "val", (j + 1) % C, rng.standard_normal(C)))
            run = tmp_path / f"trial{t}" / f"fold{f}"
            write_run(run, rows, C)
            runs.append(run)
        trials[f"trial{t}"] = runs
    return trials, truth


def test_load_trials_pools_folds_in_order(tmp_path):
    trials, truth = make_trials(tmp_path)
    data = F.load_trials(trials)
    assert data.names == ["trial0", "trial1", "trial2"]
    assert data.logits.shape == (3, 12, 4)
    assert data.utt_ids[:2] == ["Ses01_utt000", "Ses01_utt001"] and data.utt_ids[6] == "Ses02_utt000"
    assert data.labels.tolist()[:3] == [(7 + j) % 4 for j in range(3)]
    assert data.folds.tolist() == ["1"] * 6 + ["2"] * 6
    np.testing.assert_array_equal(data.logits[1, 7], truth[(1, "Ses02_utt001")])  # exact float round trip
    assert data.val_logits.shape == (3, 12, 4) and data.val_utt_ids[0] == "val_f1_0"


def test_load_trials_without_val_rows(tmp_path):
    trials, _ = make_trials(tmp_path, with_val=False)
    data = F.load_trials(trials)
    assert data.val_logits is None and data.logits.shape == (3, 12, 4)


def test_load_trials_reports_first_mismatch(tmp_path):
    trials, _ = make_trials(tmp_path, with_val=False)
    # trial2, fold 2: swap two utterances -> first difference at pooled position 6 + 2.
    path = trials["trial2"][1] / "predictions.csv"
    lines = path.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"trial 'trial2'.*position 8.*'Ses02_utt003'"):
        F.load_trials(trials)


def test_load_trials_label_mismatch_and_missing_rows(tmp_path):
    trials, _ = make_trials(tmp_path, with_val=False)
    path = trials["trial1"][0] / "predictions.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    rows[5][3] = str((int(rows[5][3]) + 1) % 4)  # label of Ses01_utt004
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(ValueError, match=r"trial 'trial1'.*position 4.*'Ses01_utt004'"):
        F.load_trials(trials)
    trials2, _ = make_trials(tmp_path / "b", with_val=False)
    with pytest.raises(ValueError, match=r"trial 'trial1'.*position 6.*missing utt_id 'Ses02_utt000'"):
        F.load_trials({"trial0": trials2["trial0"], "trial1": trials2["trial1"][:1]})


def test_load_trials_rejects_duplicates_and_unknown_splits(tmp_path):
    trials, _ = make_trials(tmp_path, n_trials=2, with_val=False)
    path = trials["trial0"][1] / "predictions.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[1].replace("Ses02_utt000", "Ses01_utt000")]) + "\n")
    with pytest.raises(ValueError, match=r"trial 'trial0'.*'Ses01_utt000' occurs twice"):
        F.load_trials(trials)
    path.write_text("\n".join(lines + [lines[1].replace(",test,", ",train,")]) + "\n")
    with pytest.raises(ValueError, match=r"predictions.csv:8: split must be 'test' or 'val'"):
        F.load_trials(trials)
    path.write_text("\n".join(lines + [lines[1].replace("Ses02_utt000", "Ses02_extra")]) + "\n")
    with pytest.raises(ValueError, match=r"trial 'trial1'.*position 12.*missing utt_id 'Ses02_extra'"):
        F.load_trials(trials)


def test_search_npz_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    logits, labels = random_case(rng, integer=False)
    npz = tmp_path / "logits.npz"
    np.savez(npz, logits=logits, labels=labels)
    out = tmp_path / "out" / "best.json"
    doc = F.search_npz(npz, [1, 2, 3], out)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(doc))
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary behind
    exact = F.exact_search(logits, labels, [1, 2, 3])
    for k in (1, 2, 3):
        r = on_disk["results"][str(k)]
        assert tuple(r["subset"]) == exact[k].subset
        assert r["uar"] == exact[k].uar and r["war"] == exact[k].war
        assert r["seconds"] >= 0
    assert set(F.search_npz(npz, "all")["results"]) == {str(k) for k in range(1, logits.shape[0] + 1)}


def test_run_fusion_writes_table(tmp_path):
    trials, _ = make_trials(tmp_path, n_trials=4, per_fold=10)
    out_csv, out_json = tmp_path / "fusion.csv", tmp_path / "fusion.json"
    doc = F.run_fusion({k: [str(p) for p in v] for k, v in trials.items()}, [1, 2, 3], out_csv, out_json)
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    methods = [(r["method"], int(r["k"])) for r in rows]
    for m in ("exact", "greedy", "beam"):
        assert [k for mm, k in methods if mm == m] == [1, 2, 3]
    assert ("full", 4) in methods
    honest_k = max((r for r in doc["rows"] if r["method"] == "exact"), key=lambda r: (r["uar"], -r["k"]))["k"]
    assert ("crossfold", honest_k) in methods and ("validation", honest_k) in methods
    exact = {int(r["k"]): r for r in rows if r["method"] == "exact"}
    for r in rows:
        if r["method"] in ("greedy", "beam"):
            assert float(r["gap_to_exact"]) >= -1e-12
    data = F.load_trials(trials)
    for k, r in exact.items():
        idx = tuple(int(i) for i in r["subset_idx"].split("+"))
        assert r["subset"] == "+".join(data.names[i] for i in idx)
        assert idx == F.exact_search(data.logits, data.labels, [k])[k].subset
    js = json.loads(out_json.read_text())
    assert len(js["rows"]) == len(rows) and all(np.array(r["confusion"]).shape == (4, 4) for r in js["rows"])


# --------------------------------------------------------------------------------------
# Searches that cannot finish are refused, long ones show progress (issue 14)
# --------------------------------------------------------------------------------------
def _refuse_before_any_work(monkeypatch):
    """Make the beam (the search's first expensive step) fail loudly if it is reached."""
    def boom(*a, **k):
        raise AssertionError("the search started working instead of refusing")
    monkeypatch.setattr(FX, "_beam", boom)


def test_exact_search_refuses_sizes_that_cannot_finish(monkeypatch):
    logits, labels = F.synthetic_trials(64, 2000, 4, 0)
    _refuse_before_any_work(monkeypatch)
    with pytest.raises(F.SearchTooLarge) as e:
        F.exact_search(logits, labels, "all")
    msg = str(e.value)
    # names the largest sizes, their subset counts and estimates, and what would fit
    assert "exact search over 64 trials" in msg and "k=32: C(64,32) = 1.83e+18 subsets, about" in msg
    assert "years" in msg and "sizes within it on their own: 1-" in msg
    assert isinstance(e.value, ValueError)
    # the estimate scales with C(n, k) and the open utterances, and a budget lifts the refusal
    est = F.search_estimates(logits, labels, [8, 9])
    assert est[9] > 4 * est[8]
    with pytest.raises(F.SearchTooLarge, match=r"k=9: C\(64,9\)"):
        F.exact_search(logits, labels, [9], max_seconds=est[9] / 2)


def test_progress_bar_on_long_searches(capsys, monkeypatch):
    rng = np.random.default_rng(1)
    logits, labels = random_case(rng, integer=False)
    F.exact_search(logits, labels, [2], progress=True)
    assert "subsets" in capsys.readouterr().err  # tqdm's bar, in subsets
    F.exact_search(logits, labels, [2])  # default: tiny estimate, no bar
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(FX, "PROGRESS_SECONDS", 0.0)  # default: a bar once the estimate is long
    F.exact_search(logits, labels, [2])
    assert "exact search" in capsys.readouterr().err


def _cli(capsys, *args):
    """Run the emorepro CLI in-process: (exit code, stdout, stderr); any other exception (a
    traceback for a user) propagates and fails the test."""
    from emorepro.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_fusion_search_refuses_all_k_on_64_trials(tmp_path, capsys):
    logits, labels = F.synthetic_trials(64, 2000, 4, 0)
    npz, out = tmp_path / "t64.npz", tmp_path / "out.json"
    np.savez(npz, logits=logits, labels=labels)
    rc, _, err = _cli(capsys, "fusion", "search", "--npz", str(npz), "--all-k", "-o", str(out))
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"emorepro: error: {npz}: exact search over 64 trials") and "k=32: C(64,32)" in err
    assert not out.exists()
    # the sizes it names as fitting do run (and write their result)
    rc, _, err = _cli(capsys, "fusion", "search", "--npz", str(npz), "--k", "1", "2", "-o", str(out), "--no-progress")
    assert rc == 0 and json.loads(out.read_text())["results"].keys() == {"1", "2"}


def test_cli_fusion_search_bad_input_is_one_line_exit_2_naming_the_file(tmp_path, capsys):
    rng = np.random.default_rng(3)
    logits, labels = random_case(rng, integer=False)
    n, N, _ = logits.shape
    cases = {
        "missing.npz": None,
        "nolabels.npz": {"logits": logits},
        "flat.npz": {"logits": logits[0], "labels": labels},
        "nan.npz": {"logits": np.where(np.arange(N)[None, :, None] == 2, np.nan, logits), "labels": labels},
        "badlabel.npz": {"logits": logits, "labels": labels + 10},
        "ids1d.npz": {"logits": logits, "labels": labels, "utt_ids": np.array([f"u{j}" for j in range(N)])},
        "notnpz.npz": "text",
    }
    for name, arrays in cases.items():
        path = tmp_path / name
        if isinstance(arrays, dict):
            np.savez(path, **arrays)
        elif arrays == "text":
            path.write_text("not an npz\n")
        out = tmp_path / f"{name}.json"
        rc, _, err = _cli(capsys, "fusion", "search", "--npz", str(path), "--k", "1", "-o", str(out))
        assert rc == 2, (name, err)
        assert err.startswith(f"emorepro: error: {path}: ") and err.count("\n") == 1, (name, err)
        assert not out.exists()
    ok = tmp_path / "ok.npz"
    np.savez(ok, logits=logits, labels=labels)
    rc, _, err = _cli(capsys, "fusion", "search", "--npz", str(ok), "--k", str(n + 1), "-o", str(tmp_path / "o.json"))
    assert rc == 2 and f"{ok}: k={n + 1} outside 1..{n}" in err


def test_npz_utterance_ids_are_checked_like_the_csv_path(tmp_path, capsys):
    rng = np.random.default_rng(4)
    logits, labels = random_case(rng, integer=False)
    n, N, _ = logits.shape
    ids = np.array([[f"Ses01_u{j:03d}" for j in range(N)]] * n)
    good = tmp_path / "good.npz"
    np.savez(good, logits=logits, labels=labels, utt_ids=ids, trials=np.array([f"t{i}" for i in range(n)]))
    doc = F.search_npz(good, [1, 2])
    assert doc["utt_ids_checked"] and doc["trials"][0] == "t0"
    # the last trial lists two utterances in the other order: its rows no longer align
    swapped = ids.copy()
    swapped[-1, [3, 4]] = swapped[-1, [4, 3]]
    bad = tmp_path / "bad.npz"
    np.savez(bad, logits=logits, labels=labels, utt_ids=swapped, trials=np.array([f"t{i}" for i in range(n)]))
    with pytest.raises(ValueError, match=rf"bad.npz: trial 't{n - 1}': rows differ at position 3: "
                                         r"utt_id 'Ses01_u004' \(expected 'Ses01_u003'"):
        F.search_npz(bad, [1])
    rc, _, err = _cli(capsys, "fusion", "search", "--npz", str(bad), "--k", "1", "-o", str(tmp_path / "b.json"))
    assert rc == 2 and "position 3" in err
    # without ids the search runs, and says that it could not check
    plain = tmp_path / "plain.npz"
    np.savez(plain, logits=logits, labels=labels)
    rc, _, err = _cli(capsys, "fusion", "search", "--npz", str(plain), "--k", "1", "-o", str(tmp_path / "p.json"))
    assert rc == 0 and "no utt_ids" in err
    assert json.loads((tmp_path / "p.json").read_text())["utt_ids_checked"] is False


def test_config_check_refuses_at_parse_time_what_cannot_finish():
    from emorepro.fusion.budget import check_config

    check_config("lee_full70", {"ks": [70], "honest_ks": None, "max_hours": 4}, 70, 2)  # full integration
    check_config("lee30", {"ks": "all", "honest_ks": None, "max_hours": 4}, 30, 2)  # 2**30 subsets: minutes
    with pytest.raises(ValueError, match=r"config: fusion\.lee_all70\.ks \(70 trials.*k=35: C\(70,35\).*at least"):
        check_config("lee_all70", {"ks": "all", "honest_ks": None, "max_hours": 4}, 70, 2)
    with pytest.raises(ValueError, match=r"config: fusion\.x\.ks/honest_ks: k=31 outside 1\.\.30"):
        check_config("x", {"ks": [31]}, 30, 2)
    with pytest.raises(ValueError, match=r"config: fusion\.y\.honest_ks .*k=32"):
        check_config("y", {"ks": [64], "honest_ks": [32]}, 64, 2)


def test_workflow_plans_a_runtime_and_refuses_all_k_of_64_trials_at_parse_time(tmp_path):
    """snakemake -n: the fusion rule requests a runtime from max_hours; every k of 64 trials fails at parse."""
    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    base = ("fusion:\n  f:\n    paper: zhang2022\n    experiments: [zhang2022/baseline_act]\n")
    (wd / "f.yaml").write_text(base + "    ks: [1, 2]\n    max_hours: 0.5\n")
    r = run_snakemake(wd, "-n", "results/fusion/f.csv", "--configfile", "config/demo.yaml", "f.yaml")
    assert "runtime=75" in r.stdout  # 1.5 x 0.5 h + 30 min
    (wd / "g.yaml").write_text("experiments:\n  zhang2022:\n    baseline_act: {seeds: " + str(list(range(64))) + "}\n"
                               + base + "    ks: all\n")
    r = run_snakemake(wd, "-n", "results/fusion/f.csv", "--configfile", "config/demo.yaml", "g.yaml", check=False)
    assert r.returncode != 0
    assert "config: fusion.f.ks (64 trials" in r.stdout + r.stderr and "k=32: C(64,32)" in r.stdout + r.stderr


# --------------------------------------------------------------------------------------
# Validation selection per fold (issue 15)
# --------------------------------------------------------------------------------------
def _lospk_like_trials(root, labels, n_trials=6, n_folds=4, per_fold=30, C=4, seed=0, corpus_of=None):
    """Trials in the layout of lospk10 / loso5_val: fold f tests speaker f and validates on
    speaker f+1 (cyclic), so the validation rows of all folds cover every test utterance.

    ``labels``: utt_id -> label written in every row of that utterance (test or val);
    the logits do not depend on it (they come from ``seed`` and a fixed truth).
    """
    rng = np.random.default_rng(seed)
    utts = {f: [f"spk{f}_u{j:02d}" for j in range(per_fold)] for f in range(1, n_folds + 1)}
    truth = {u: (i * 7 + 3) % C for i, u in enumerate(u for f in utts for u in utts[f])}
    trials = {}
    for t in range(n_trials):
        quality = 1.0 + 0.05 * t  # trials of similar strength: the choice depends on the labels
        runs = []
        for f in range(1, n_folds + 1):
            rows = []
            for split, spk in (("test", f), ("val", f % n_folds + 1)):
                for u in utts[spk]:
                    lg = quality * np.eye(C)[truth[u]] + rng.standard_normal(C)
                    rows.append((u, f, split, labels.get(u, truth[u]), lg))
            run = root / f"trial{t}" / f"fold{f}"
            run.mkdir(parents=True, exist_ok=True)
            with open(run / "predictions.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                extra = ["corpus"] if corpus_of else []
                w.writerow(["utt_id", "fold", "split", "label", "pred"] + [f"logit_{c}" for c in range(C)] + extra)
                for u, fold, split, label, lg in rows:
                    w.writerow([u, fold, split, label, int(np.argmax(lg))] + [repr(float(x)) for x in lg]
                               + ([corpus_of(u)] if corpus_of else []))
            runs.append(run)
        trials[f"trial{t}"] = runs
    return trials, utts, truth


def _per_fold(row):
    return dict(part.split("=") for part in row["subset_idx"].split(";"))


def test_validation_selection_never_sees_the_labels_it_is_scored_on(tmp_path):
    """Permuting the labels of fold 2's test utterances (wherever they occur) leaves the subsets
    chosen for fold 2 unchanged, by validation and by cross-fold selection."""
    k, held = 3, "2"

    def fuse(tag, labels):
        trials, utts, truth = _lospk_like_trials(tmp_path / tag, labels)
        doc = F.run_fusion(trials, [k], tmp_path / f"{tag}.csv", tmp_path / f"{tag}.json", honest_ks=[k])
        rows = {r["method"]: r for r in doc["rows"] if r["k"] == k}
        data = F.load_trials(trials)
        pooled = F.exact_search(data.val_logits, data.val_labels, [k])[k].subset  # the old, pooled selection
        return _per_fold(rows["validation"]), _per_fold(rows["crossfold"]), pooled, utts, truth

    val0, cross0, pooled0, utts, truth = fuse("ref", {})
    assert set(val0) == {"1", "2", "3", "4"}  # one subset per fold, each chosen on its own validation rows
    rng = np.random.default_rng(0)
    pooled_moved = other_moved = False
    for i in range(6):
        perm = dict(zip(utts[2], rng.permutation([truth[u] for u in utts[2]]).tolist()))
        val, cross, pooled, _, _ = fuse(f"perm{i}", perm)
        assert val[held] == val0[held] and cross[held] == cross0[held]
        pooled_moved |= pooled != pooled0  # selection on all validation rows sees fold 2's labels
        other_moved |= val["1"] != val0["1"]  # fold 1 validates on fold 2's speaker: its choice may move
    assert pooled_moved and other_moved  # the test has teeth: the labels do matter to the other choices


def test_validation_selection_per_fold_scores_each_fold_with_its_own_subset():
    logits, labels, folds = _folded_case(seed=6, n_folds=3)
    val_folds = np.roll(folds, len(folds) // 3)  # fold f validates on the utterances fold f+1 tests
    h = F.validation_selection(logits, labels, logits, labels, 2, val_folds=val_folds, test_folds=folds)
    pred = np.empty(len(labels), int)
    for f, subset in h.subsets.items():
        assert subset == F.exact_search(logits[:, val_folds == f], labels[val_folds == f], [2])[2].subset
        pred[folds == f] = F.fused_predictions(logits[:, folds == f], subset)
    assert h.uar == pytest.approx(recall_score(labels, pred, average="macro", labels=np.unique(labels)))
    ids = [f"u{i}" for i in range(len(labels))]
    with pytest.raises(ValueError, match=r"fold 1: utterance 'u0' is both a validation and a test row"):
        F.validation_selection(logits, labels, logits, labels, 2, val_folds=folds, test_folds=folds,
                               val_utt_ids=ids, test_utt_ids=ids)


# --------------------------------------------------------------------------------------
# Lee et al.: one corpus of multi-corpus runs, 40 and 70 trials (issue 17)
# --------------------------------------------------------------------------------------
def test_fusion_set_restricted_to_one_corpus_uses_only_its_utterances(tmp_path):
    # Odd utterances of every speaker are "jtes", even ones "iemocap" (a union corpus's runs
    # carry the column; its fold k tests and validates on both corpora).
    def corpus_of(u):
        return "jtes" if int(u[-2:]) % 2 else "iemocap"

    trials, utts, _ = _lospk_like_trials(tmp_path / "union", {}, corpus_of=corpus_of)
    doc = F.run_fusion(trials, "all", tmp_path / "j.csv", tmp_path / "j.json", corpus="jtes")
    data = F.load_trials(trials, corpus="jtes")
    jtes = [u for f in utts for u in utts[f] if corpus_of(u) == "jtes"]
    assert doc["corpus"] == "jtes" and doc["n_utts"] == len(jtes) == 60
    assert sorted(data.utt_ids) == sorted(jtes) and set(data.val_utt_ids) == set(jtes)
    assert {"exact", "crossfold", "validation"} <= {r["method"] for r in doc["rows"]}
    # The same table as fusing files that hold the JTES rows only (no corpus column).
    only = {}
    for name, runs in trials.items():
        only[name] = []
        for run in runs:
            with open(run / "predictions.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            keep = [r for r in rows if r["corpus"] == "jtes"]
            out = tmp_path / "only" / name / run.name
            out.mkdir(parents=True)
            with open(out / "predictions.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != "corpus"], extrasaction="ignore")
                w.writeheader()
                w.writerows(keep)
            only[name].append(out)
    ref = F.run_fusion(only, "all", tmp_path / "o.csv", tmp_path / "o.json")
    def strip(d):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in d["rows"]]

    assert strip(doc) == strip(ref)
    # the exact k = 1 row is the best single trial on the JTES test utterances
    best1 = max(recall_score(data.labels, np.argmax(data.logits[i], axis=1), average="macro",
                             labels=np.unique(data.labels)) for i in range(6))
    assert next(r for r in doc["rows"] if r["method"] == "exact" and r["k"] == 1)["uar"] == pytest.approx(best1)
    with pytest.raises(ValueError, match=r"trial 'trial0': no test rows of corpus 'msp' .*corpora present: "
                                         r"iemocap, jtes"):
        F.load_trials(trials, corpus="msp")
    with pytest.raises(ValueError, match=r"only/trial0/fold1/predictions.csv: no `corpus` column.*'jtes'"):
        F.run_fusion(only, [1], tmp_path / "x.csv", tmp_path / "x.json", corpus="jtes")
    assert not (tmp_path / "x.csv").exists()
    # Speakers 1 and 3 "jtes": fold 1 validates on speaker 2, of the other corpus, so there is
    # no honest validation row for JTES, and the table says why.
    def by_speaker(u):
        return "jtes" if u.startswith(("spk1_", "spk3_")) else "iemocap"

    trials, _, _ = _lospk_like_trials(tmp_path / "union2", {}, corpus_of=by_speaker)
    doc = F.run_fusion(trials, [2], tmp_path / "s.csv", tmp_path / "s.json", corpus="jtes")
    assert "validation" not in {r["method"] for r in doc["rows"]} and doc["n_utts"] == 60
    assert "fold(s) 1, 3 have test rows but no validation rows of corpus 'jtes'" in doc["notes"][0]


def test_full_integration_of_70_trials_runs_and_all_k_is_refused(tmp_path, monkeypatch):
    n, folds, per_fold, C = 70, 2, 8, 4
    trials, _ = make_trials(tmp_path, n_trials=n, n_folds=folds, per_fold=per_fold, C=C, seed=7)
    doc = F.run_fusion(trials, [n], tmp_path / "f.csv", tmp_path / "f.json")
    rows = {(r["method"], r["k"]): r for r in doc["rows"]}
    assert set(rows) == {("exact", n), ("greedy", n), ("beam", n), ("full", n), ("crossfold", n), ("validation", n)}
    data = F.load_trials(trials)
    pred = np.argmax(data.logits.sum(axis=0), axis=1)
    full = recall_score(data.labels, pred, average="macro", labels=np.unique(data.labels))
    assert all(r["uar"] == pytest.approx(full) for (m, _), r in rows.items() if m in ("exact", "greedy", "beam", "full"))
    assert rows[("exact", n)]["subset_idx"] == "+".join(map(str, range(n)))
    # heuristics and honest rows are skippable by config
    lean = F.run_fusion(trials, [n], tmp_path / "g.csv", tmp_path / "g.json", heuristics=[], honest_ks=[])
    assert [(r["method"], r["k"]) for r in lean["rows"]] == [("exact", n), ("full", n)]
    # 40 and 70 trials over IEMOCAP's 5,531 utterances: full integration runs; every k is
    # refused before any work
    big = {n_trials: F.synthetic_trials(n_trials, 5531, 4, 0) for n_trials in (40, 70)}
    for n_trials, (logits, labels) in big.items():
        assert F.exact_search(logits, labels, [n_trials])[n_trials].subset == tuple(range(n_trials))
    _refuse_before_any_work(monkeypatch)
    for n_trials, (logits, labels) in big.items():
        with pytest.raises(F.SearchTooLarge, match=rf"exact search over {n_trials} trials"):
            F.exact_search(logits, labels, "all")
