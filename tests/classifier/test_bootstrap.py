"""The report's paired bootstrap interval of an ablation difference."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.evaluation import paired_bootstrap


def test_interval_covers_the_difference_and_shrinks_with_more_images():
    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 3200):
        base = rng.random(n)
        better = np.clip(base + 0.02 + rng.normal(0, 0.1, n), 0, 1)
        low, high = paired_bootstrap(better, base, seed=1)
        diff = (better - base).mean()
        assert low < diff < high
        widths.append(high - low)
    # the standard error falls as 1/sqrt(n): 16x the images, about 1/4 the width
    assert widths[1] == pytest.approx(widths[0] / 4, rel=0.25)


def test_interval_is_paired_not_two_sample():
    """The same images in both settings: a constant shift has no spread at all, however
    much the scores themselves vary from image to image."""
    scores = np.random.default_rng(2).random(500)
    low, high = paired_bootstrap(scores + 0.01, scores)
    assert low == pytest.approx(0.01) and high == pytest.approx(0.01)


def test_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(3)
    a, b = rng.random(2000), rng.random(2000)
    low, high = paired_bootstrap(a, b, resamples=4000)
    diff = a - b
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert low == pytest.approx(diff.mean() - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(diff.mean() + 1.96 * se, abs=0.25 * se)
