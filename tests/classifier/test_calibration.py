"""The recalibration layer learns label correlations (clear excludes cloudy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.calibration import (
    KINDS,
    Calibrator,
    cross_fitted_scores,
    fit_calibrator,
)
from classifier.thresholds import best_label_f2

CLEAR, CLOUDY, WATER = 0, 1, 2


def test_ridge_learns_that_clear_excludes_cloudy(mutually_exclusive_data):
    y, probs = mutually_exclusive_data(seed=0)
    layer = fit_calibrator("ridge", probs, y)
    assert layer.kind == "ridge"
    assert layer.coef.shape == (3, 3) and layer.intercept.shape == (3,)
    # cloudy's score leans on clear's (sharp) probability, with a negative sign
    assert layer.coef[CLOUDY, CLEAR] < -0.5
    assert abs(layer.coef[CLOUDY, CLEAR]) > abs(layer.coef[CLOUDY, CLOUDY])
    assert abs(layer.coef[CLOUDY, WATER]) < 0.2

    # evaluated on fresh data the recalibrated cloudy score is better than the raw one
    y_new, probs_new = mutually_exclusive_data(seed=1)
    scores = layer.transform(probs_new)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    raw_f2 = best_label_f2(y_new, probs_new)[CLOUDY]
    ridge_f2 = best_label_f2(y_new, scores)[CLOUDY]
    assert ridge_f2 > raw_f2 + 0.05
    assert ridge_f2 > 0.97
    truth = y_new[:, CLOUDY] > 0.5
    raw_acc = np.mean((probs_new[:, CLOUDY] > 0.5) == truth)
    ridge_acc = np.mean((scores[:, CLOUDY] > 0.5) == truth)
    assert ridge_acc > raw_acc + 0.1
    assert ridge_acc > 0.95


def test_transform_is_linear_then_clipped():
    layer = Calibrator("ridge", np.array([[2.0, 0.0], [-1.0, 0.5]]), np.array([-0.5, 0.6]))
    probs = np.array([[0.1, 0.4], [0.9, 0.2]])
    expected = np.clip(probs @ layer.coef.T + layer.intercept, 0, 1)
    np.testing.assert_allclose(layer.transform(probs), expected)
    np.testing.assert_allclose(layer.transform(probs), [[0.0, 0.7], [1.0, 0.0]])


def test_none_is_identity(mutually_exclusive_data, rng):
    y, probs = mutually_exclusive_data()
    layer = fit_calibrator("none", probs, y)
    assert layer.kind == "none"
    np.testing.assert_array_equal(layer.transform(probs), probs)
    other = rng.random((7, 3))
    np.testing.assert_array_equal(layer.transform(other), other)
    np.testing.assert_array_equal(cross_fitted_scores("none", probs, y), probs)


def test_lasso_fits_and_helps_cloudy(mutually_exclusive_data):
    y, probs = mutually_exclusive_data(seed=0)
    layer = fit_calibrator("lasso", probs, y)
    assert layer.kind == "lasso"
    assert layer.coef.shape == (3, 3) and layer.intercept.shape == (3,)
    assert layer.coef[CLOUDY, CLEAR] < -0.5
    y_new, probs_new = mutually_exclusive_data(seed=1)
    scores = layer.transform(probs_new)
    assert best_label_f2(y_new, scores)[CLOUDY] > best_label_f2(y_new, probs_new)[CLOUDY]


def test_lasso_with_constant_label_predicts_the_constant(mutually_exclusive_data):
    y, probs = mutually_exclusive_data(n=120)
    y[:, WATER] = 0.0
    layer = fit_calibrator("lasso", probs, y)
    np.testing.assert_array_equal(layer.coef[WATER], 0.0)
    np.testing.assert_allclose(layer.transform(probs)[:, WATER], 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_to_dict_from_dict_round_trip(kind, mutually_exclusive_data):
    y, probs = mutually_exclusive_data(n=150)
    layer = fit_calibrator(kind, probs, y)
    restored = Calibrator.from_dict(json.loads(json.dumps(layer.to_dict())))
    assert restored.kind == kind
    np.testing.assert_allclose(restored.coef, layer.coef)
    np.testing.assert_allclose(restored.intercept, layer.intercept)
    np.testing.assert_allclose(restored.transform(probs), layer.transform(probs))


@pytest.mark.parametrize("kind", ["ridge", "lasso"])
def test_cross_fitted_scores(kind, mutually_exclusive_data):
    y, probs = mutually_exclusive_data(n=150)
    out = cross_fitted_scores(kind, probs, y, folds=3)
    assert out.shape == probs.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    # every row was filled by a layer (rows are not left at zero) ...
    assert np.all(out.sum(axis=1) > 0)
    # ... and it is not the in-sample fit
    assert not np.allclose(out, fit_calibrator(kind, probs, y).transform(probs))
    # still, out-of-fold cloudy scores are much better than the raw ones
    assert best_label_f2(y, out)[CLOUDY] > best_label_f2(y, probs)[CLOUDY]


def test_cross_fitted_scores_deterministic(mutually_exclusive_data):
    y, probs = mutually_exclusive_data(n=100)
    a = cross_fitted_scores("ridge", probs, y, folds=4, seed=3)
    b = cross_fitted_scores("ridge", probs, y, folds=4, seed=3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["Ridge", "l2", "", "elastic"])
def test_invalid_kind_raises(kind, mutually_exclusive_data):
    y, probs = mutually_exclusive_data(n=40)
    with pytest.raises(ValueError, match="calibration must be one of"):
        fit_calibrator(kind, probs, y)
    with pytest.raises(ValueError):
        cross_fitted_scores(kind, probs, y, folds=2)


@pytest.mark.parametrize("kind", ["ridge", "lasso"])
def test_a_single_label_calibrates_like_many(kind, rng):
    """A model of one label (a curator's first new label) keeps 2-D scores."""
    y = (rng.random((40, 1)) < 0.4).astype(float)
    probs = np.clip(y * 0.6 + rng.random((40, 1)) * 0.4, 0, 1)
    scores = cross_fitted_scores(kind, probs, y)
    assert scores.shape == (40, 1)
    layer = fit_calibrator(kind, probs, y)
    assert layer.coef.shape == (1, 1) and layer.transform(probs).shape == (40, 1)
