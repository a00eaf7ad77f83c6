"""Post-processing variants the pipeline does not ship, scored by validation CV.

Each variant is fitted on 4/5 of a model's stored validation outputs and scored on the
rest (5 folds x 2 shuffles, the splits of ``classifier.evaluation.cv_scores``), paired
with the shipped post-processing (per-label choice, ridge layer, tuned thresholds) on the
same splits. Nothing here touches the test split.

Variants:
- label structure after the thresholds: every Planet chip has exactly one weather label
  (clear, partly_cloudy, haze, cloudy) and a cloudy chip has no other label; the decision
  can add the most likely weather label where none passed, keep only the most likely
  one, or drop every other label when cloudy is likely;
- non-linear or logit-space layers in place of ridge: per-label logistic regression on
  the logits of the ensemble (and of the dehazed network, or of every member), and
  per-label gradient-boosted trees.

    python -m experiments.postprocess_variants [--model classifier/default_model]

Result on the shipped model (2026-11-26): none beats the shipped post-processing; see the
model card.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from classifier.evaluation import Setting, cv_scores, cv_splits, paired
from classifier.metrics import f2_score
from classifier.postprocess import fit_postprocessor
from classifier.store import VAL_OUTPUTS_FILE, ValOutputs
from classifier.thresholds import apply_thresholds, fit_thresholds

WEATHER = ("clear", "partly_cloudy", "haze", "cloudy")
Adjust = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (decided, scores) -> decided


def adjusted_cv_scores(val: ValOutputs, setting: Setting, adjust: Adjust) -> np.ndarray:
    """``cv_scores`` with the label sets changed by ``adjust`` before scoring (same splits)."""
    y = val.targets
    p_original, p_dehazed = val.get("original", setting.views), val.get("dehazed", setting.views)
    scores = []
    for fit, held in cv_splits(len(y)):
        post = fit_postprocessor(setting.post, y[fit], p_original[fit],
                                 None if p_dehazed is None else p_dehazed[fit])
        held_scores = post.scores(p_original[held],
                                  None if p_dehazed is None else p_dehazed[held])
        scores.append(f2_score(y[held], adjust(post.decide(held_scores), held_scores)))
    return np.asarray(scores)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def structure_rules(labels: list[str]) -> dict[str, Adjust]:
    """Label-structure rules applied to the shipped decision."""
    weather = np.array([labels.index(name) for name in WEATHER])
    cloudy = labels.index("cloudy")

    def at_least_one(decided: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = decided.copy()
        rows = np.flatnonzero(~out[:, weather].any(axis=1))
        out[rows, weather[scores[rows][:, weather].argmax(axis=1)]] = True
        return out

    def exactly_one(decided: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = decided.copy()
        out[:, weather] = False
        out[np.arange(len(out)), weather[scores[:, weather].argmax(axis=1)]] = True
        return out

    def cloudy_alone(level: float) -> Adjust:
        def rule(decided: np.ndarray, scores: np.ndarray) -> np.ndarray:
            out = decided.copy()
            rows = scores[:, cloudy] > level
            out[rows] = False
            out[rows, cloudy] = True
            return out
        return rule

    rules: dict[str, Adjust] = {"at least one weather label": at_least_one,
                                "exactly one weather label": exactly_one}
    rules.update({f"cloudy alone above {level}": cloudy_alone(level) for level in (0.5, 0.7, 0.9)})
    return rules


def layer_scores(y: np.ndarray, features: np.ndarray, fallback: np.ndarray,
                 make: Callable[[], object], splits: list[tuple[np.ndarray, np.ndarray]]
                 ) -> np.ndarray:
    """A per-label classifier on ``features`` as the layer; thresholds tuned on its
    cross-fitted outputs, as the shipped pipeline tunes them on ridge's. Labels with
    fewer than 5 positives keep the ensemble probability (``fallback``)."""
    scores = []
    for fit, held in splits:
        inner = fallback[fit].copy()
        outer = fallback[held].copy()
        for j in range(y.shape[1]):
            if y[fit, j].sum() < 5:
                continue
            model = make()
            inner[:, j] = cross_val_predict(model, features[fit], y[fit, j], cv=5,
                                            method="predict_proba")[:, 1]
            outer[:, j] = model.fit(features[fit], y[fit, j]).predict_proba(features[held])[:, 1]
        scores.append(f2_score(y[held], apply_thresholds(outer, fit_thresholds(y[fit], inner))))
    return np.asarray(scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="classifier/default_model")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    model = Path(args.model)
    labels = json.loads((model / "pipeline.json").read_text())["labels"]
    val = ValOutputs.load(model / VAL_OUTPUTS_FILE)
    y = val.targets.astype(bool)
    p_original, p_dehazed = val.get("original", 8), val.get("dehazed", 8)
    members = val.member_outputs("original", 8) or [p_original]
    splits = cv_splits(len(y))  # the splits of cv_scores, so the scores pair up

    shipped = Setting("shipped")
    baseline = cv_scores(val, shipped)
    rows = {"shipped (per-label choice, ridge, tuned thresholds)": baseline}
    for name, rule in structure_rules(labels).items():
        rows[name] = adjusted_cv_scores(val, shipped, rule)
    extra = [] if p_dehazed is None else [logit(p_dehazed)]
    layers = {
        "logistic layer on ensemble logits": (
            logit(p_original), lambda: LogisticRegression(C=1.0, max_iter=500)),
        "logistic layer on ensemble + dehazed logits": (
            np.hstack([logit(p_original), *extra]),
            lambda: LogisticRegression(C=0.3, max_iter=500)),
        "logistic layer on every member's logits": (
            np.hstack([*(logit(m) for m in members), *extra]),
            lambda: LogisticRegression(C=0.3, max_iter=500)),
        "gradient-boosted trees on ensemble logits": (
            logit(p_original), lambda: HistGradientBoostingClassifier(
                max_iter=100, learning_rate=0.05, max_leaf_nodes=8, min_samples_leaf=40)),
    }
    for name, (features, make) in layers.items():
        rows[name] = layer_scores(y, features, p_original, make, splits)

    print(f"validation CV of {model} ({len(y)} images, 5 folds x 2 shuffles)")
    print("| variant | F2 | vs shipped |\n|---|---:|---:|")
    for name, scores in rows.items():
        row = paired(scores, baseline)
        print(f"| {name} | {row['f2']:.4f} | {row['diff']:+.4f} ± {row['diff_se']:.4f} |")


if __name__ == "__main__":
    main()
