"""F2-optimal per-label thresholds and the expected-F2 decision."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from classifier.metrics import f2_score
from classifier.thresholds import (
    GRID,
    apply_thresholds,
    best_label_f2,
    expected_f2_decision,
    f2_at,
    fit_thresholds,
)


def _low_scores(gen: np.random.Generator, n: int = 300, labels: int = 3):
    """Positives score ~0.3, negatives ~0.1: separable, but all below 0.5."""
    y = gen.random((n, labels)) < 0.35
    scores = np.where(y, 0.3, 0.1) + gen.normal(0, 0.03, y.shape)
    return y.astype(np.float32), np.clip(scores, 0, 1)


def _brute_expected_f2(p: np.ndarray, pred: np.ndarray) -> float:
    total = 0.0
    for outcome in itertools.product([False, True], repeat=len(p)):
        y = np.array(outcome)
        prob = float(np.prod(np.where(y, p, 1 - p)))
        tp, fp, fn = np.sum(y & pred), np.sum(~y & pred), np.sum(y & ~pred)
        denom = 5 * tp + 4 * fn + fp
        total += prob * (5 * tp / denom if denom else 1.0)
    return total


def _brute_best_topk(p: np.ndarray) -> tuple[list[float], np.ndarray]:
    order = np.argsort(-p)
    values = []
    for k in range(len(p) + 1):
        pred = np.zeros(len(p), bool)
        pred[order[:k]] = True
        values.append(_brute_expected_f2(p, pred))
    return values, order


def test_apply_thresholds_is_strict_and_per_label():
    scores = np.array([[0.2, 0.5, 0.9], [0.21, 0.49, 0.1]])
    out = apply_thresholds(scores, np.array([0.2, 0.4, 0.5]))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, [[False, True, True], [True, True, False]])


def test_fit_thresholds_beats_half_on_low_scores(rng):
    y, scores = _low_scores(rng)
    thresholds = fit_thresholds(y, scores)
    assert thresholds.shape == (3,)
    assert np.all((thresholds > 0.1) & (thresholds < 0.3))
    tuned = f2_at(y, scores, thresholds)
    assert tuned > 0.95
    assert tuned > f2_at(y, scores, np.full(3, 0.5)) + 0.3
    # and it generalises to fresh data from the same distribution
    y2, s2 = _low_scores(np.random.default_rng(99))
    assert f2_at(y2, s2, thresholds) > 0.95


def test_fit_thresholds_values_come_from_grid(rng):
    y, scores = _low_scores(rng)
    thresholds = fit_thresholds(y, scores)
    assert all(np.isclose(GRID, t).any() for t in thresholds)


def test_fit_thresholds_is_at_least_as_good_as_any_single_grid_value(rng):
    y = rng.random((200, 4)) < np.array([0.6, 0.2, 0.1, 0.4])
    scores = np.clip(np.where(y, 0.45, 0.2) + rng.normal(0, 0.15, y.shape), 0, 1)
    tuned = f2_at(y, scores, fit_thresholds(y, scores))
    best_common = max(f2_at(y, scores, np.full(4, t)) for t in GRID)
    assert tuned >= best_common - 1e-12


def test_f2_at_matches_f2_score(rng):
    y, scores = _low_scores(rng, n=50)
    t = np.array([0.15, 0.2, 0.25])
    assert f2_at(y, scores, t) == f2_score(y, scores > t)


def test_best_label_f2():
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])
    scores = np.array([
        [0.9, 0.3, 0.4],
        [0.8, 0.3, 0.6],
        [0.1, 0.3, 0.5],
        [0.2, 0.3, 0.7],
    ])
    best = best_label_f2(y, scores)
    assert best.shape == (3,)
    assert best[0] == pytest.approx(1.0)  # perfectly separable
    assert best[1] == pytest.approx(0.0)  # no positives: nothing to gain
    # c: scores are anti-correlated; best is predicting all (or all >= 0.4):
    # tp 2, fp 2, fn 0 -> 10 / 12
    assert best[2] == pytest.approx(10 / 12)


def test_expected_f2_decision_confident_labels():
    out = expected_f2_decision(np.array([[0.95, 0.9, 0.02]]))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, [[True, True, False]])


def test_expected_f2_decision_all_near_zero_is_empty():
    out = expected_f2_decision(np.array([[0.02, 0.01, 0.03, 0.005]]))
    assert not out.any()


def test_expected_f2_small_probabilities_matches_brute_force():
    # [0.3, 0.3]: E[F2] = 0.49 (empty), 0.26 (one), 0.44 (both) -> empty set is best
    p = np.array([0.3, 0.3])
    values, _ = _brute_best_topk(p)
    assert values == pytest.approx([0.49, 0.09 * 5 / 9 + 0.21, 0.09 + 2 * 0.21 * 5 / 6])
    assert not expected_f2_decision(p[None]).any()


@pytest.mark.parametrize("seed", range(6))
def test_expected_f2_decision_is_near_optimal_top_k(seed):
    gen = np.random.default_rng(seed)
    probs = gen.random((4, 3)) ** 2
    out = expected_f2_decision(probs)
    for p, pred in zip(probs, out):
        values, order = _brute_best_topk(p)
        k = int(pred.sum())
        # the decision is a top-k set ...
        assert set(np.flatnonzero(pred)) == set(order[:k].tolist())
        # ... whose expected F2 is exactly the best
        assert values[k] == pytest.approx(max(values))


def test_expected_f2_decision_chunks_and_rows_are_independent():
    probs = np.array([[0.95, 0.9, 0.02], [0.01, 0.02, 0.01], [0.9, 0.05, 0.97],
                      [0.99, 0.98, 0.97], [0.02, 0.96, 0.03]])
    expected = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 1, 0]], bool)
    np.testing.assert_array_equal(expected_f2_decision(probs), expected)
    for row, want in zip(probs, expected):
        np.testing.assert_array_equal(expected_f2_decision(row[None])[0], want)


def test_expected_f2_decision_shape_and_clipping():
    out = expected_f2_decision(np.array([[1.2, -0.1], [0.99, 0.98]]))
    np.testing.assert_array_equal(out, [[True, False], [True, True]])
