"""The recalibration layer: for each label, a linear model over all labels' probabilities.

Labels are correlated (``clear`` excludes ``cloudy``, ``habitation`` comes with ``road``,
a ``cloudy`` chip has nothing else); a network with independent sigmoids cannot use that.
The paper stacks an L2-penalised linear regression (ridge) per label on top, fitted on
predictions for images the network did not train on, and found it better than Lasso (L1)
or no layer. All three are here. The fitted layer is plain coefficients, saved as JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("none", "ridge", "lasso")
RIDGE_ALPHAS = np.logspace(-3, 3, 13)


@dataclass
class Calibrator:
    """scores = probs @ coef.T + intercept (identity for kind "none")."""

    kind: str
    coef: np.ndarray
    intercept: np.ndarray

    def transform(self, probs: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return probs
        return np.clip(probs @ self.coef.T + self.intercept, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "coef": self.coef.tolist(), "intercept": self.intercept.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(data["kind"], np.asarray(data["coef"], dtype=np.float64),
                   np.asarray(data["intercept"], dtype=np.float64))


def fit_calibrator(kind: str, probs: np.ndarray, y_true: np.ndarray, seed: int = 0) -> Calibrator:
    # scikit-learn (1 s to import) fits; applying a Calibrator needs numpy alone, so a
    # process that only predicts or searches never loads it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LassoCV, RidgeCV
    from sklearn.model_selection import KFold

    """Fit one linear model per label on all label probabilities (the columns of ``probs``
    may also hold several networks' probabilities side by side: stacking)."""
    n_inputs, n_labels = probs.shape[1], y_true.shape[1]
    if kind not in KINDS:
        raise ValueError(f"calibration must be one of {KINDS}, got {kind!r}")
    if kind == "none":
        if n_inputs != n_labels:
            raise ValueError("calibration 'none' needs one probability per label")
        return Calibrator("none", np.eye(n_labels), np.zeros(n_labels))
    x = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.float64)
    if kind == "ridge":
        model = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True).fit(x, y)
        # one label: scikit-learn returns a 1-D coef and a scalar intercept
        return Calibrator("ridge", np.asarray(model.coef_).reshape(n_labels, n_inputs),
                          np.asarray(model.intercept_).reshape(n_labels))
    coef = np.zeros((n_labels, n_inputs))
    intercept = np.zeros(n_labels)
    for j in range(n_labels):
        if y[:, j].min() == y[:, j].max():
            intercept[j] = y[0, j]
            continue
        with warnings.catch_warnings():
            # the smallest alphas of the path may not converge; cross-validation skips them
            warnings.simplefilter("ignore", ConvergenceWarning)
            lasso = LassoCV(cv=KFold(3, shuffle=True, random_state=seed), alphas=20,
                            random_state=seed, max_iter=5000).fit(x, y[:, j])
        coef[j], intercept[j] = lasso.coef_, lasso.intercept_
    return Calibrator("lasso", coef, intercept)


def cross_fitted_scores(kind: str, probs: np.ndarray, y_true: np.ndarray, folds: int = 5,
                        seed: int = 0) -> np.ndarray:
    """Calibrated scores where each row comes from a layer that never saw it, so the
    thresholds tuned on them are not fooled by the layer's in-sample fit."""
    if kind == "none":
        return probs
    from sklearn.model_selection import KFold

    out = np.zeros((len(probs), y_true.shape[1]), dtype=np.float64)
    for fit_idx, apply_idx in KFold(folds, shuffle=True, random_state=seed).split(probs):
        layer = fit_calibrator(kind, probs[fit_idx], y_true[fit_idx], seed)
        out[apply_idx] = layer.transform(probs[apply_idx])
    return out
