"""Choice -> recalibration -> thresholds, fitted on validation outputs and saved as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.calibration import cross_fitted_scores, fit_calibrator
from classifier.postprocess import PostprocessConfig, Postprocessor, fit_postprocessor
from classifier.thresholds import apply_thresholds, expected_f2_decision, fit_thresholds

CLEAR, CLOUDY, WATER = 0, 1, 2


@pytest.fixture
def val_outputs(mutually_exclusive_data):
    """(y, p_original, p_dehazed): the dehazed model is better on water, worse elsewhere."""
    y, p_original = mutually_exclusive_data(n=240, seed=4)
    gen = np.random.default_rng(5)
    p_dehazed = gen.random(p_original.shape)
    p_dehazed[:, WATER] = np.where(y[:, WATER] > 0, 0.9, 0.1) + gen.normal(0, 0.02, len(y))
    p_original[:, WATER] = np.clip(np.where(y[:, WATER] > 0, 0.6, 0.3)
                                   + gen.normal(0, 0.2, len(y)), 0, 1)
    return y, p_original, np.clip(p_dehazed, 0, 1)


CONFIGS = [
    PostprocessConfig(),
    PostprocessConfig(dehaze="original"),
    PostprocessConfig(dehaze="dehazed"),
    PostprocessConfig(calibration="none"),
    PostprocessConfig(calibration="lasso"),
    PostprocessConfig(thresholds=0.2),
    PostprocessConfig(decision="expected-f2"),
    PostprocessConfig(dehaze="original", calibration="none", thresholds=0.5),
    PostprocessConfig(dehaze="stack"),
    PostprocessConfig(dehaze="stack", calibration="none"),
    PostprocessConfig(dehaze="stack", calibration="lasso"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.dehaze}-{c.calibration}-"
                                                           f"{c.thresholds}-{c.decision}")
def test_fit_postprocessor_with_each_config(config, val_outputs):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(config, y, p_original, p_dehazed)
    assert post.config == config
    assert post.use_dehazed.shape == (3,) and post.use_dehazed.dtype == bool
    assert post.thresholds.shape == (3,)
    assert post.calibrator.kind == config.calibration
    expected_mask = {"per-label": [False, False, True], "original": [False, False, False],
                     "dehazed": [True, True, True], "stack": [False, False, False]}[config.dehaze]
    np.testing.assert_array_equal(post.use_dehazed, expected_mask)
    stacked = config.dehaze == "stack"
    assert post.needs_dehazed == (stacked or any(expected_mask))
    assert post.needs_original == (stacked or not all(expected_mask))
    scores = post.scores(p_original, p_dehazed)
    assert scores.shape == y.shape
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    decided = post.decide(scores)
    assert decided.shape == y.shape and decided.dtype == bool
    if config.decision == "threshold":
        np.testing.assert_array_equal(decided, apply_thresholds(scores, post.thresholds))
    else:
        np.testing.assert_array_equal(decided, expected_f2_decision(scores))

    # round trip through JSON, as pipeline.json stores it
    restored = Postprocessor.from_dict(json.loads(json.dumps(post.to_dict())))
    assert restored.config == post.config
    np.testing.assert_array_equal(restored.use_dehazed, post.use_dehazed)
    np.testing.assert_array_equal(restored.thresholds, post.thresholds)
    np.testing.assert_allclose(restored.scores(p_original, p_dehazed), scores, atol=1e-12)
    np.testing.assert_array_equal(restored.decide(scores), decided)


def test_full_pipeline_fits_well_and_uses_the_ridge_layer(val_outputs):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(), y, p_original, p_dehazed)
    scores = post.scores(p_original, p_dehazed)
    # the layer is the one fitted on the combined probabilities
    combined = np.where(post.use_dehazed[None, :], p_dehazed, p_original)
    np.testing.assert_allclose(scores, fit_calibrator("ridge", combined, y).transform(combined))
    f2_full = _f2(y, post.decide(scores))
    bare = fit_postprocessor(PostprocessConfig(dehaze="original", calibration="none",
                                               thresholds=0.5), y, p_original, p_dehazed)
    f2_bare = _f2(y, bare.decide(bare.scores(p_original, p_dehazed)))
    assert f2_full > f2_bare + 0.05


def _f2(y, pred):
    from classifier.metrics import f2_score

    return f2_score(y, pred)


def test_fixed_threshold_config(val_outputs):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(thresholds=0.35), y, p_original, p_dehazed)
    np.testing.assert_array_equal(post.thresholds, [0.35, 0.35, 0.35])
    scores = post.scores(p_original, p_dehazed)
    np.testing.assert_array_equal(post.decide(scores), scores > 0.35)


@pytest.mark.parametrize("calibration", ["none", "ridge"])
def test_tuned_thresholds_come_from_out_of_fold_scores(calibration, val_outputs):
    """Thresholds are tuned on cross-fitted layer outputs (rows the layer never saw)."""
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(calibration=calibration), y, p_original,
                             p_dehazed, seed=2)
    combined = np.where(post.use_dehazed[None, :], p_dehazed, p_original)
    held_out = cross_fitted_scores(calibration, combined, y, seed=2)
    np.testing.assert_array_equal(post.thresholds, fit_thresholds(y, held_out))


def test_tuned_thresholds_differ_from_default_start(val_outputs):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(calibration="none"), y, p_original, p_dehazed)
    assert not np.allclose(post.thresholds, 0.2)


def test_original_mode_ignores_dehazed_probabilities(val_outputs, rng):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(dehaze="original"), y, p_original, p_dehazed)
    reference = post.scores(p_original, p_dehazed)
    np.testing.assert_array_equal(post.scores(p_original, None), reference)
    np.testing.assert_array_equal(post.scores(p_original, rng.random(p_dehazed.shape)), reference)
    # the fit does not depend on the dehazed outputs either
    other = fit_postprocessor(PostprocessConfig(dehaze="original"), y, p_original,
                              rng.random(p_dehazed.shape))
    np.testing.assert_allclose(other.calibrator.coef, post.calibrator.coef)
    np.testing.assert_array_equal(other.thresholds, post.thresholds)


def test_dehazed_mode_uses_only_dehazed_probabilities(val_outputs, rng):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(dehaze="dehazed"), y, p_original, p_dehazed)
    reference = post.scores(p_original, p_dehazed)
    np.testing.assert_array_equal(post.scores(None, p_dehazed), reference)
    np.testing.assert_array_equal(post.scores(rng.random(p_original.shape), p_dehazed), reference)
    with pytest.raises(ValueError, match="no dehazed network"):
        fit_postprocessor(PostprocessConfig(dehaze="dehazed"), y, p_original, None)


def test_per_label_without_dehazed_network_uses_original(val_outputs):
    y, p_original, _ = val_outputs
    post = fit_postprocessor(PostprocessConfig(), y, p_original, None)
    assert not post.use_dehazed.any()
    assert not post.needs_dehazed and post.needs_original
    assert post.scores(p_original, None).shape == y.shape


@pytest.mark.parametrize("kwargs", [{"dehaze": "both"}, {"decision": "argmax"},
                                    {"thresholds": 1.5}, {"thresholds": -0.1}])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        PostprocessConfig(**kwargs)


def _two_noisy_views(n: int, seed: int):
    """Two networks that see the same labels with independent noise: neither is better on
    any label, so choosing one wastes the other; averaging them (stacking) does not."""
    gen = np.random.default_rng(seed)
    y = (gen.random((n, 3)) < 0.4).astype(np.float32)
    views = [np.clip(0.3 + 0.4 * y + gen.normal(0, 0.3, y.shape), 0, 1) for _ in range(2)]
    return y, views[0], views[1]


def test_stacking_reads_both_networks_and_beats_choosing_one():
    y, p_original, p_dehazed = _two_noisy_views(2000, seed=8)
    fit, test = slice(0, 1000), slice(1000, None)
    stack = fit_postprocessor(PostprocessConfig(dehaze="stack"), y[fit], p_original[fit],
                              p_dehazed[fit])
    assert stack.calibrator.coef.shape == (3, 6)
    # every label leans on its own probability from both networks about equally
    own = np.array([[stack.calibrator.coef[j, j], stack.calibrator.coef[j, 3 + j]]
                    for j in range(3)])
    assert (own > 0.2).all() and np.allclose(own[:, 0], own[:, 1], atol=0.15)
    choice = fit_postprocessor(PostprocessConfig(), y[fit], p_original[fit], p_dehazed[fit])
    f2_stack = _f2(y[test], stack.decide(stack.scores(p_original[test], p_dehazed[test])))
    f2_choice = _f2(y[test], choice.decide(choice.scores(p_original[test], p_dehazed[test])))
    assert f2_stack > f2_choice + 0.01


def test_stacking_without_a_layer_averages_the_networks(val_outputs):
    y, p_original, p_dehazed = val_outputs
    post = fit_postprocessor(PostprocessConfig(dehaze="stack", calibration="none"), y,
                             p_original, p_dehazed)
    np.testing.assert_allclose(post.scores(p_original, p_dehazed), (p_original + p_dehazed) / 2)
    with pytest.raises(ValueError, match="no dehazed network"):
        fit_postprocessor(PostprocessConfig(dehaze="stack"), y, p_original, None)
    with pytest.raises(ValueError, match="stacking needs"):
        post.scores(p_original, None)


def test_validation_cv_scores_held_out_folds_and_pairs_differences(val_outputs):
    from classifier.evaluation import Setting, validation_cv
    from classifier.store import ValOutputs

    y, p_original, p_dehazed = val_outputs
    val = ValOutputs([f"i{k}" for k in range(len(y))], y,
                     {"original_tta8": p_original, "dehazed_tta8": p_dehazed,
                      "original_tta1": p_original, "dehazed_tta1": p_dehazed})
    settings = [Setting("full"), Setting("same again"),
                Setting("bare", post=PostprocessConfig(dehaze="original", calibration="none",
                                                       thresholds=0.5))]
    rows = validation_cv(val, settings, folds=4, repeats=2)
    assert [r["setting"] for r in rows] == ["full", "same again", "bare"]
    assert rows[0]["diff"] == 0.0 and rows[1]["diff"] == 0.0 and rows[1]["diff_se"] == 0.0
    # the full pipeline fitted on 3/4 still clearly beats the bare network on the last 1/4
    assert rows[2]["diff"] < -0.03 and rows[2]["diff_se"] > 0
    # held-out scoring: below the in-sample fit of the full pipeline on all rows
    post = fit_postprocessor(PostprocessConfig(), y, p_original, p_dehazed)
    in_sample = _f2(y, post.decide(post.scores(p_original, p_dehazed)))
    assert rows[0]["f2"] <= in_sample + 1e-9


def test_cv_splits_cover_every_row_once_per_shuffle(val_outputs):
    from classifier.evaluation import Setting, cv_scores, cv_splits
    from classifier.store import ValOutputs

    splits = cv_splits(50, folds=5, repeats=2)
    assert len(splits) == 10
    for shuffle in (splits[:5], splits[5:]):
        held = np.concatenate([h for _, h in shuffle])
        assert sorted(held.tolist()) == list(range(50))
        assert all(len(set(f) & set(h)) == 0 for f, h in shuffle)
    assert splits[0][1].tolist() != splits[5][1].tolist()  # a new shuffle

    y, p_original, p_dehazed = val_outputs
    val = ValOutputs([f"i{k}" for k in range(len(y))], y,
                     {"original_tta8": p_original, "dehazed_tta8": p_dehazed})
    plain = cv_scores(val, Setting("full"), folds=4, repeats=1)
    assert plain.shape == (4,) and (plain > 0.5).all()
    # held-out scoring: fitted on a quarter of the rows fewer than the whole, so the
    # scores differ from fold to fold
    assert len(set(np.round(plain, 6))) > 1
