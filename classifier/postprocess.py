"""Everything after the networks, in the paper's order: per-label model choice ->
recalibration layer -> thresholds (or the expected-F2 decision) -> consistent tag sets
(``consistency.py``: one weather label, nothing else when cloudy; beyond the paper).

``dehaze="stack"`` replaces the per-label choice by stacking: the layer reads both
networks' probabilities (2 x 17 inputs per label), the competition winner's way of
combining networks; without a layer the two networks are averaged.

A ``Postprocessor`` is fitted on the validation outputs that training stores in the model
directory, so any ablation (no choice, Lasso instead of ridge, a fixed threshold, ...)
can be refitted exactly the way the full pipeline was, on the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from classifier.calibration import Calibrator, cross_fitted_scores, fit_calibrator
from classifier.choice import choose_dehazed, combine
from classifier.consistency import TagRule
from classifier.thresholds import apply_thresholds, expected_f2_decision, fit_thresholds

DEHAZE_MODES = ("per-label", "original", "dehazed", "stack")


@dataclass(frozen=True)
class PostprocessConfig:
    """Which stages run. ``thresholds`` is "tuned" or a fixed number for every label;
    ``consistent``: the tag-set rule runs after the decision (where the labels have one)."""

    dehaze: str = "per-label"
    calibration: str = "ridge"
    thresholds: str | float = "tuned"
    decision: str = "threshold"
    consistent: bool = True

    def __post_init__(self) -> None:
        if self.dehaze not in DEHAZE_MODES:
            raise ValueError(f"dehaze must be one of {DEHAZE_MODES}")
        if self.decision not in ("threshold", "expected-f2"):
            raise ValueError("decision must be 'threshold' or 'expected-f2'")
        if self.thresholds != "tuned" and not 0.0 <= float(self.thresholds) <= 1.0:
            raise ValueError("a fixed threshold must be in [0, 1]")


@dataclass
class Postprocessor:
    config: PostprocessConfig
    use_dehazed: np.ndarray
    calibrator: Calibrator
    thresholds: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    rule: TagRule | None = None

    @property
    def needs_dehazed(self) -> bool:
        return self.config.dehaze == "stack" or bool(self.use_dehazed.any())

    @property
    def needs_original(self) -> bool:
        return self.config.dehaze == "stack" or not bool(self.use_dehazed.all())

    def scores(self, p_original: np.ndarray | None, p_dehazed: np.ndarray | None) -> np.ndarray:
        """Recalibrated per-label scores in [0, 1]."""
        if p_original is None:
            p_original = p_dehazed
        return self.calibrator.transform(
            layer_inputs(self.config, p_original, p_dehazed, self.use_dehazed))

    @property
    def consistent(self) -> bool:
        """Whether decided sets follow the labels' rule (recorded in the model)."""
        return self.config.consistent and self.rule is not None

    def decide(self, scores: np.ndarray) -> np.ndarray:
        if self.config.decision == "expected-f2":
            decided = expected_f2_decision(scores)
        else:
            decided = apply_thresholds(scores, self.thresholds)
        return self.rule.apply(scores, decided) if self.consistent else decided

    def to_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "use_dehazed": self.use_dehazed.tolist(),
                "calibrator": self.calibrator.to_dict(), "thresholds": self.thresholds.tolist(),
                "meta": self.meta, "rule": self.rule.to_dict() if self.rule else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Postprocessor:
        """A model written before the consistency stage has no ``rule``: its sets are
        decided as they were when it was assembled."""
        config = {"consistent": False, **data["config"]}
        return cls(PostprocessConfig(**config), np.asarray(data["use_dehazed"], bool),
                   Calibrator.from_dict(data["calibrator"]),
                   np.asarray(data["thresholds"], dtype=np.float64), data.get("meta", {}),
                   TagRule.from_dict(data.get("rule")))


def layer_inputs(config: PostprocessConfig, p_original: np.ndarray, p_dehazed: np.ndarray | None,
                 use_dehazed: np.ndarray) -> np.ndarray:
    """What the recalibration layer reads: each label's probability from its chosen network,
    or, when stacking, both networks' probabilities side by side (averaged without a layer)."""
    if config.dehaze != "stack":
        return combine(p_original, p_dehazed, use_dehazed)
    if p_dehazed is None:
        raise ValueError("stacking needs the dehazed network's probabilities")
    if config.calibration == "none":
        return (p_original + p_dehazed) / 2
    return np.hstack([p_original, p_dehazed])


def fit_postprocessor(config: PostprocessConfig, y_val: np.ndarray, p_original: np.ndarray,
                      p_dehazed: np.ndarray | None, seed: int = 0,
                      labels: Sequence[str] | None = None) -> Postprocessor:
    """Fit choice, layer and thresholds on validation outputs the networks never trained on.
    ``labels`` name the columns: the tag-set rule comes from them (none without them)."""
    n_labels = y_val.shape[1]
    if config.dehaze == "per-label" and p_dehazed is not None:
        use_dehazed = choose_dehazed(y_val, p_original, p_dehazed)
    elif config.dehaze in ("dehazed", "stack"):
        if p_dehazed is None:
            raise ValueError("this model has no dehazed network")
        use_dehazed = np.full(n_labels, config.dehaze == "dehazed")
    else:
        use_dehazed = np.zeros(n_labels, dtype=bool)
    probs = layer_inputs(config, p_original, p_dehazed, use_dehazed)
    calibrator = fit_calibrator(config.calibration, probs, y_val, seed)
    rule = TagRule.for_labels(labels) if labels is not None else None
    if config.thresholds == "tuned":
        held_out = cross_fitted_scores(config.calibration, probs, y_val, seed=seed)
        thresholds = fit_thresholds(y_val, held_out)
        if config.consistent and rule is not None:
            thresholds = rule.fit_thresholds_under_rule(y_val, held_out, thresholds)
    else:
        thresholds = np.full(n_labels, float(config.thresholds))
    return Postprocessor(config, use_dehazed, calibrator, thresholds, rule=rule)
