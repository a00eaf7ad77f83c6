"""F2 per image (beta = 2) and per label, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.metrics import f2_score, fbeta_per_sample, per_label_scores

# labels: a, b, c
ROWS = [
    # (true, pred, F2)
    ([1, 1, 0], [1, 0, 0], 5 / 9),  # tp 1, fn 1, fp 0: 5/(5+4) = 0.5556
    ([1, 0, 0], [1, 1, 0], 5 / 6),  # tp 1, fn 0, fp 1: 5/(5+0+1) = 0.8333
    ([0, 0, 0], [0, 0, 0], 1.0),  # nothing to find, nothing claimed
    ([1, 0, 0], [0, 0, 0], 0.0),
    ([0, 0, 0], [0, 1, 0], 0.0),
    ([1, 1, 1], [1, 1, 1], 1.0),
    ([1, 1, 0], [0, 0, 1], 0.0),
    ([1, 1, 1], [1, 0, 1], 10 / 14),  # tp 2, fn 1: 10/(10+4) = 0.7143
]


@pytest.mark.parametrize(("true", "pred", "expected"), ROWS)
def test_f2_per_sample_hand_values(true, pred, expected):
    out = fbeta_per_sample(np.array([true]), np.array([pred]))
    assert out.shape == (1,)
    assert out[0] == pytest.approx(expected, abs=1e-9)


def test_f2_hand_values_to_four_decimals():
    out = fbeta_per_sample(np.array([[1, 1, 0], [1, 0, 0]]), np.array([[1, 0, 0], [1, 1, 0]]))
    assert np.round(out, 4).tolist() == [0.5556, 0.8333]


def test_recall_weighs_more_than_precision():
    # missing one of two true labels is worse than one extra label
    miss = fbeta_per_sample(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]))[0]
    extra = fbeta_per_sample(np.array([[1, 0, 0]]), np.array([[1, 1, 0]]))[0]
    assert miss < extra


def test_beta_one_is_f1():
    out = fbeta_per_sample(np.array([[1, 1, 0]]), np.array([[1, 0, 1]]), beta=1.0)
    assert out[0] == pytest.approx(0.5)  # 2*1/(2+1+1)


def test_f2_score_is_mean_over_images():
    y_true = np.array([r[0] for r in ROWS])
    y_pred = np.array([r[1] for r in ROWS])
    assert f2_score(y_true, y_pred) == pytest.approx(np.mean([r[2] for r in ROWS]))
    assert isinstance(f2_score(y_true, y_pred), float)


def test_f2_score_accepts_float_and_bool_inputs():
    y_true = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    y_pred = np.array([[True, False], [True, True]])
    assert f2_score(y_true, y_pred) == pytest.approx((1 + 5 / 6) / 2)


def test_f2_score_empty_is_zero():
    assert f2_score(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_per_label_scores():
    y_true = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [1, 0, 0]])
    y_pred = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]])
    scores = per_label_scores(y_true, y_pred, ["a", "b", "c"])
    assert list(scores) == ["a", "b", "c"]
    # a: tp 2, fp 0, fn 1 -> P 1, R 2/3, F2 = 5*(2/3)/(4+2/3)
    assert scores["a"]["precision"] == pytest.approx(1.0)
    assert scores["a"]["recall"] == pytest.approx(2 / 3)
    assert scores["a"]["f2"] == pytest.approx(5 * (2 / 3) / (4 + 2 / 3))
    assert scores["a"]["support"] == 3
    # b: tp 1, fp 1, fn 1 -> P 0.5, R 0.5, F2 0.5
    assert scores["b"] == pytest.approx({"f2": 0.5, "precision": 0.5, "recall": 0.5,
                                         "support": 2})
    # c: tp 0, fp 0, fn 1 -> all zero, no division warnings
    assert scores["c"] == {"f2": 0.0, "precision": 0.0, "recall": 0.0, "support": 1}
    assert isinstance(scores["a"]["support"], int)


def test_per_label_f2_matches_fbeta_formula_on_random_data(rng):
    y_true = rng.random((50, 4)) < 0.4
    y_pred = rng.random((50, 4)) < 0.5
    scores = per_label_scores(y_true, y_pred, list("wxyz"))
    for j, label in enumerate("wxyz"):
        tp = np.sum(y_true[:, j] & y_pred[:, j])
        fp = np.sum(~y_true[:, j] & y_pred[:, j])
        fn = np.sum(y_true[:, j] & ~y_pred[:, j])
        assert scores[label]["f2"] == pytest.approx(5 * tp / (5 * tp + 4 * fn + fp))
