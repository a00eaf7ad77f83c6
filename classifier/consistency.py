"""Consistent tag sets: the last stage of the method, after the thresholds.

Planet's labelling rule: every chip has exactly one of ``clear``, ``haze``,
``partly_cloudy``, ``cloudy``, and a ``cloudy`` chip shows no land (it carries no other
label). Per-label F2-optimal thresholds ignore the rule: recall counts twice precision,
so a chip between clear and hazy gets both, and a reader of "clear haze primary" stops
trusting every other tag. This stage restores sets a person can read:

1. keep exactly one weather label, the one with the highest score (also when no weather
   score reached its threshold: every chip has a weather);
2. when that label is ``cloudy``, drop every other label.

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
