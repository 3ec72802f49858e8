"""UAR/WAR against hand-counted confusion matrices and scikit-learn (peers swap UA and WA)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from emorepro.metrics import ccc, classification_metrics


def test_uar_and_war_on_an_imbalanced_hand_count():
    # 8 neu (all right), 2 sad (both wrong): WAR = 8/10, UAR = (1 + 0)/2 over the present classes.
    y = [0] * 8 + [3] * 2
    p = [0] * 8 + [0] * 2
    m = classification_metrics(y, p, ["neu", "hap", "ang", "sad"])
    assert m["war"] == pytest.approx(0.8)
    assert m["uar"] == pytest.approx(0.5)
    assert m["recall"] == {"neu": 1.0, "hap": None, "ang": None, "sad": 0.0}
    assert m["confusion"][3] == [2, 0, 0, 0] and m["confusion"][0] == [8, 0, 0, 0]
    assert m["support"] == {"neu": 8, "hap": 0, "ang": 0, "sad": 2}


def test_random_cases_match_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 4, 200)
        p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
        m = classification_metrics(y, p, list("abcd"))
        assert m["uar"] == pytest.approx(balanced_accuracy_score(y, p))
        assert m["war"] == pytest.approx((y == p).mean())
        assert np.trace(np.array(m["confusion"])) == (y == p).sum()


def test_ccc_against_an_independent_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(0.5, 0.2, 500)
    y = 0.7 * x + rng.normal(0.1, 0.1, 500)
    # Lin (1989) written from Pearson r: 2 r sx sy / (sx^2 + sy^2 + (mx - my)^2), population moments.
    r = np.corrcoef(x, y)[0, 1]
    expected = 2 * r * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert ccc(x, y) == pytest.approx(expected, rel=1e-12)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, x + 0.3) < 1.0  # a shift is penalised: the squared mean difference is there


def test_a_stage_without_emotion_predictions_is_refused_by_name(tmp_path):
    """GMP-ATL's stage 2 writes frame-label counts, not emotion predictions: scoring it names the file and the
    missing column (it was a bare KeyError 'pred')."""
    from emorepro.io import InputError
    from emorepro.metrics import score_predictions

    csv = tmp_path / "predictions.csv"
    csv.write_text("utt_id,fold,split,label,n_frames\nu1,1,test,1,106\n")
    with pytest.raises(InputError, match=r"predictions\.csv: no column pred: not a run's emotion predictions"):
        score_predictions(str(csv), ["ang", "hap", "neu", "sad"])
    csv.write_text("utt_id,fold,split,label,pred\nu1,1,test,0,0\nu2,1,test,3,0\n")
    assert score_predictions(str(csv), ["ang", "hap", "neu", "sad"])["war"] == 0.5
