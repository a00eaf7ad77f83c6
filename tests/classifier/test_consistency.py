"""The consistent tag-set stage on hand-made score rows: one weather label, the most
probable; nothing else when it is cloudy; off for labels without Planet's weather."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.consistency import TagRule, violations
from classifier.postprocess import PostprocessConfig, Postprocessor, fit_postprocessor

LABELS = ["agriculture", "clear", "cloudy", "haze", "partly_cloudy", "primary", "water"]


def sets(decided: np.ndarray) -> list[set[str]]:
    return [{LABELS[j] for j in np.flatnonzero(row)} for row in decided]


@pytest.fixture
def rule() -> TagRule:
    found = TagRule.for_labels(LABELS)
    assert found is not None
    return found


def test_keeps_only_the_most_probable_weather_label(rule: TagRule) -> None:
    scores = np.array([[0.1, 0.7, 0.0, 0.4, 0.0, 0.9, 0.0],    # clear haze primary
                       [0.1, 0.3, 0.0, 0.6, 0.5, 0.9, 0.6]])   # haze partly_cloudy ...
    decided = scores > 0.35
    assert sets(rule.apply(scores, decided)) == [{"clear", "primary"},
                                                  {"haze", "primary", "water"}]


def test_a_set_without_weather_gets_the_most_probable(rule: TagRule) -> None:
    scores = np.array([[0.0, 0.1, 0.05, 0.2, 0.15, 0.9, 0.0]])
    assert sets(rule.apply(scores, scores > 0.5)) == [{"haze", "primary"}]


def test_cloudy_drops_every_land_label(rule: TagRule) -> None:
    scores = np.array([[0.6, 0.1, 0.8, 0.3, 0.5, 0.7, 0.4]])
    assert sets(rule.apply(scores, scores > 0.35)) == [{"cloudy"}]


def test_land_labels_stay_when_cloudy_is_not_the_weather(rule: TagRule) -> None:
    scores = np.array([[0.6, 0.1, 0.5, 0.3, 0.7, 0.7, 0.4]])
    assert sets(rule.apply(scores, scores > 0.35)) == [
        {"agriculture", "partly_cloudy", "primary", "water"}]


def test_violations_count_what_the_rule_forbids() -> None:
    decided = np.array([[0, 1, 0, 1, 0, 1, 0],    # two weather labels
                        [1, 0, 1, 0, 0, 0, 0],    # cloudy with land
                        [0, 0, 0, 0, 0, 1, 0],    # no weather
                        [0, 1, 0, 0, 0, 1, 1]], bool)
    assert violations(decided, LABELS) == {"two_or_more_weather": 0.25, "no_weather": 0.25,
                                           "cloudy_with_land": 0.25}


def test_labels_without_planets_weather_have_no_rule() -> None:
    assert TagRule.for_labels(["bright", "reddish", "striped"]) is None
    assert violations(np.ones((2, 3), bool), ["bright", "reddish", "striped"]) == {}


def planet_like_validation(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores where the thresholds alone give ambiguous weather and cloudy-with-land."""
    gen = np.random.default_rng(seed)
    weather = gen.integers(0, 4, n)  # clear, cloudy, haze, partly_cloudy
    y = np.zeros((n, len(LABELS)), np.float32)
    y[np.arange(n), 1 + weather] = 1
    land = weather != 1
    y[:, 5] = land & (gen.random(n) < 0.9)
    y[:, 0] = land & (gen.random(n) < 0.4)
    y[:, 6] = land & (gen.random(n) < 0.3)
    probs = np.clip(y * 0.55 + gen.normal(0.25, 0.15, y.shape), 0, 1)
    return y, probs


def test_the_postprocessor_decides_consistent_sets_and_can_be_switched_off() -> None:
    y, probs = planet_like_validation()
    on = fit_postprocessor(PostprocessConfig(), y, probs, None, labels=LABELS)
    off = fit_postprocessor(PostprocessConfig(consistent=False), y, probs, None, labels=LABELS)
    scores = on.scores(probs, None)
    assert on.consistent and not off.consistent
    assert violations(off.decide(scores), LABELS)["two_or_more_weather"] > 0.05
    assert violations(on.decide(scores), LABELS) == {
        "two_or_more_weather": 0.0, "no_weather": 0.0, "cloudy_with_land": 0.0}
    # the rule travels with the model; models from before it decide as they did
    again = Postprocessor.from_dict(on.to_dict())
    assert np.array_equal(again.decide(scores), on.decide(scores))
    legacy = on.to_dict()
    legacy["config"].pop("consistent")
    legacy.pop("rule")
    assert not Postprocessor.from_dict(legacy).consistent
