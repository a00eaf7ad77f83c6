"""Consistent tag sets: the last stage of the method, after the thresholds.

Planet's labelling rule: every chip has exactly one of ``clear``, ``haze``,
``partly_cloudy``, ``cloudy``, and a ``cloudy`` chip shows no land (it carries no other
label). Per-label F2-optimal thresholds ignore the rule: recall counts twice precision,
so a chip between clear and hazy gets both, and a reader of "clear haze primary" stops
trusting every other tag. This stage restores sets a person can read:

1. keep exactly one weather label, the one with the highest score (also when no weather
   score reached its threshold: every chip has a weather);
2. when that label is ``cloudy``, drop every other label.

The land labels' thresholds are fitted for the sets the rule leaves (``fit_thresholds_
under_rule``): F2 rewards recall, so a hedged pair of weather labels or land under a
doubtful cloudy was worth something to thresholds fitted without the rule.

The rule is the data's, not the code's: it is switched on for models whose labels
include the four weather labels (Planet's vocabulary) and recorded in the model, so a
model trained on other labels (UC Merced's, say) is left as it is. Its F2 cost is
measured on validation in ``assemble`` and shown as an ablation row by ``report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from classifier.thresholds import fit_thresholds

WEATHER_LABELS = ("clear", "partly_cloudy", "haze", "cloudy")
OVERCAST_LABEL = "cloudy"


@dataclass(frozen=True)
class TagRule:
    """Indices of the mutually exclusive weather labels and of the one among them that
    excludes every other label."""

    weather: tuple[int, ...]
    overcast: int

    @classmethod
    def for_labels(cls, labels: Sequence[str]) -> TagRule | None:
        """Planet's rule over ``labels``, or None when they lack a weather label."""
        if not set(WEATHER_LABELS) <= set(labels):
            return None
        index = {label: i for i, label in enumerate(labels)}
        return cls(tuple(index[w] for w in WEATHER_LABELS), index[OVERCAST_LABEL])

    def apply(self, scores: np.ndarray, decided: np.ndarray) -> np.ndarray:
        """``decided`` (N x L booleans after thresholds) made consistent; ``scores`` (N x L)
        pick the weather label."""
        out = np.asarray(decided, dtype=bool).copy()
        if not len(out):
            return out
        weather = np.asarray(self.weather)
        best = weather[np.argmax(np.asarray(scores)[:, weather], axis=1)]
        out[:, weather] = False
        rows = np.arange(len(out))
        out[rows, best] = True
        overcast = best == self.overcast
        out[overcast] = False
        out[overcast, self.overcast] = True
        return out

    def fit_thresholds_under_rule(self, y: np.ndarray, scores: np.ndarray,
                                  thresholds: np.ndarray) -> np.ndarray:
        """Thresholds of the labels the rule leaves to them, refitted for sets decided
        with the rule. Under it the weather label is the argmax, whatever its threshold,
        and a cloudy chip keeps no land label: those decisions are fixed in the scores
        (1 / 0) before the per-label search, so each land threshold is chosen for the
        sets the app will show. The weather thresholds stay as fitted without the rule
        (they still say how far a score is from a decision)."""
        fixed = np.asarray(scores, dtype=np.float64).copy()
        chosen = self.apply(scores, np.zeros_like(fixed, dtype=bool))
        weather = list(self.weather)
        fixed[:, weather] = chosen[:, weather]
        land = np.ones(fixed.shape[1], dtype=bool)
        land[weather] = False
        overcast = chosen[:, self.overcast]
        fixed[np.ix_(overcast, land)] = 0.0
        refitted = fit_thresholds(y, fixed, start=0.2)
        return np.where(land, refitted, thresholds)

    def to_dict(self) -> dict[str, Any]:
        return {"weather": list(self.weather), "overcast": self.overcast}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TagRule | None:
        if not data:
            return None
        return cls(tuple(int(i) for i in data["weather"]), int(data["overcast"]))


def violations(decided: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Shares of predicted sets that break Planet's rule: two or more weather labels, no
    weather label, ``cloudy`` with any other label. Empty for labels without the rule."""
    rule = TagRule.for_labels(labels)
    decided = np.asarray(decided, dtype=bool)
    if rule is None or not len(decided):
        return {}
    weather = decided[:, list(rule.weather)].sum(axis=1)
    others = decided.sum(axis=1) - weather
    return {"two_or_more_weather": float((weather >= 2).mean()),
            "no_weather": float((weather == 0).mean()),
            "cloudy_with_land": float((decided[:, rule.overcast] & (others > 0)).mean())}
