"""Per-label choice between the original-image and the dehazed-image model."""

from __future__ import annotations

import numpy as np

from classifier.choice import choose_dehazed, combine


def _two_models(gen: np.random.Generator, n: int = 200):
    """Label 0 (haze): the original model separates it, the dehazed one is noise.
    Label 1 (water): the other way round. Label 2: both equally good (identical scores)."""
    y = (gen.random((n, 3)) < 0.4).astype(np.float32)
    sharp = np.where(y > 0, 0.8, 0.2) + gen.normal(0, 0.05, y.shape)
    noise = gen.random(y.shape)
    p_original = np.stack([sharp[:, 0], noise[:, 1], sharp[:, 2]], axis=1)
    p_dehazed = np.stack([noise[:, 0], sharp[:, 1], sharp[:, 2]], axis=1)
    return y, p_original, p_dehazed


def test_choose_dehazed_picks_the_model_that_separates_each_label(rng):
    y, p_original, p_dehazed = _two_models(rng)
    mask = choose_dehazed(y, p_original, p_dehazed)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, [False, True, False])  # ties keep the original
    # swapping the models swaps the choice
    np.testing.assert_array_equal(choose_dehazed(y, p_dehazed, p_original), [True, False, False])


def test_min_gain_requires_a_margin(rng):
    y, p_original, p_dehazed = _two_models(rng)
    np.testing.assert_array_equal(choose_dehazed(y, p_original, p_dehazed, min_gain=0.99),
                                  [False, False, False])


def test_combine_takes_columns_from_the_chosen_model(rng):
    p_original = rng.random((5, 3))
    p_dehazed = rng.random((5, 3))
    out = combine(p_original, p_dehazed, np.array([False, True, False]))
    np.testing.assert_array_equal(out[:, 0], p_original[:, 0])
    np.testing.assert_array_equal(out[:, 1], p_dehazed[:, 1])
    np.testing.assert_array_equal(out[:, 2], p_original[:, 2])
    np.testing.assert_array_equal(combine(p_original, p_dehazed, np.ones(3, bool)), p_dehazed)


def test_combine_without_dehazed(rng):
    p_original = rng.random((4, 2))
    np.testing.assert_array_equal(combine(p_original, None, np.array([True, False])), p_original)
    np.testing.assert_array_equal(
        combine(p_original, rng.random((4, 2)), np.zeros(2, bool)), p_original)
