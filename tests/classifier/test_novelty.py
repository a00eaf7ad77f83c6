"""The "unlike the training imagery" score: fitted on validation descriptors, about 1% of
in-distribution chips flagged, images from elsewhere flagged."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.novelty import fit_novelty, load_novelty, save_novelty


def features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Descriptors on a 6-dimensional manifold inside 64 dimensions (as CNN features
    concentrate), plus a little noise; ``shift`` moves them off it."""
    basis = np.random.default_rng(7).normal(size=(6, 64))
    x = rng.normal(size=(n, 6)) @ basis + rng.normal(scale=0.1, size=(n, 64))
    if shift:
        x += shift * np.random.default_rng(8).normal(size=64)
    return x


def test_in_distribution_is_rarely_flagged_and_elsewhere_always(rng):
    detector, record = fit_novelty(features(rng, 2000))
    assert 0.005 <= record["flagged_in_calibration"] <= 0.02
    same = detector.flags(features(rng, 2000)).mean()
    other = detector.flags(features(rng, 500, shift=1.0)).mean()
    assert same < 0.03 and other > 0.95
    relative = detector.relative(features(rng, 500))
    assert np.quantile(relative, 0.5) < 1 < np.quantile(relative, 0.999)


def test_the_score_reads_the_features(rng):
    """A score that ignored the features (a constant, the mean) could not separate."""
    detector, _ = fit_novelty(features(rng, 1000))
    near = detector.score(features(rng, 200))
    far = detector.score(features(rng, 200, shift=0.5))
    assert far.min() > np.quantile(near, 0.9)
    assert detector.score(detector.mean[None, :])[0] < near.min()


def test_saved_and_loaded_alike_and_a_changed_file_is_refused(rng, tmp_path):
    detector, record = fit_novelty(features(rng, 300))
    save_novelty(tmp_path, detector, record)
    loaded = load_novelty(tmp_path)
    probe = features(rng, 20, shift=0.3)
    np.testing.assert_allclose(loaded.score(probe), detector.score(probe), rtol=1e-4)
    assert loaded.threshold == detector.threshold
    (tmp_path / "novelty.npz").write_bytes(b"changed")
    with pytest.raises(ValueError, match="is not the file"):
        load_novelty(tmp_path)
    assert load_novelty(tmp_path / "nowhere") is None
