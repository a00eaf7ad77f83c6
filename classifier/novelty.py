""""Unlike the training imagery": an out-of-distribution score from the features the
forward pass already computes.

The descriptor is the first original-image network's pooled features (view 0), the one
``Predictor.predict(features=True)`` returns at no extra cost. The detector is a
Mahalanobis distance in a principal subspace plus the distance to that subspace (a
probabilistic-PCA reading of the feature distribution): with ``z`` the K standardised
principal coordinates of ``f - mean`` and ``r`` the residual outside them,

    score = (sum(z**2) + |r|**2 / mean residual**2) / (K + 1)

so a chip like the validation chips scores about 1. It is fitted on the validation
images (never trained on), and the flag threshold is the ``quantile`` (99%) of
*out-of-fold* scores there: each half is scored by a detector fitted on the other half,
so about 1% of chips like the training imagery are flagged, whatever the detector's own
fit. Stored beside the networks as ``novelty.npz`` + ``novelty.json`` (its sha256,
threshold and how it was made); it changes no tag, so it is not part of the model's
version, and a model without it simply has no score.

``python -m classifier novelty --model DIR --images IMAGES`` fits it for an assembled
model from its ``val.csv``; ``assemble`` fits it for every new model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagery.digests import file_sha256

__all__ = ["NOVELTY_FILE", "NoveltyDetector", "fit_novelty", "load_novelty", "save_novelty"]

NOVELTY_FILE = "novelty.npz"
NOVELTY_SPEC = "novelty.json"
COMPONENTS = 32
QUANTILE = 0.99


@dataclass
class NoveltyDetector:
    mean: np.ndarray  # D
    components: np.ndarray  # K x D, orthonormal rows
    variances: np.ndarray  # K
    residual: float  # mean squared residual outside the K components on the fit set
    threshold: float = float("inf")  # scores above it are flagged

    def score(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, np.float64) - self.mean
        coords = centred @ self.components.T
        inside = (coords ** 2 / self.variances).sum(axis=1)
        outside = ((centred - coords @ self.components) ** 2).sum(axis=1) / self.residual
        return (inside + outside) / (len(self.variances) + 1)

    def flags(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold


def _fit(features: np.ndarray, components: int) -> NoveltyDetector:
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    # at least 5 images per component: a subspace that fits its few images exactly
    # leaves no residual to measure, and every other image would look infinitely far
    k = max(1, min(components, len(x) // 5, x.shape[1]))
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variances = singular[:k] ** 2 / max(len(x) - 1, 1) + 1e-9
    basis = vt[:k]
    total = (centred ** 2).sum(axis=1).mean()
    residual = max(((centred - centred @ basis.T @ basis) ** 2).sum(axis=1).mean(),
                   0.01 * total) + 1e-9
    return NoveltyDetector(mean, basis, variances, float(residual))


def fit_novelty(features: np.ndarray, components: int = COMPONENTS,
                quantile: float = QUANTILE, seed: int = 0) -> tuple[NoveltyDetector, dict]:
    """The detector on all ``features``, with its threshold from out-of-fold scores;
    returns it and a record (threshold, quantile, counts, out-of-fold flag rate)."""
    x = np.asarray(features, np.float64)
    if len(x) < 8:
        raise ValueError(f"{len(x)} validation images: too few to fit a novelty detector")
    order = np.random.default_rng(seed).permutation(len(x))
    halves = (order[: len(x) // 2], order[len(x) // 2:])
    held_out = np.empty(len(x))
    for fit_part, score_part in (halves, halves[::-1]):
        held_out[score_part] = _fit(x[fit_part], components).score(x[score_part])
    detector = _fit(x, components)
    detector.threshold = float(np.quantile(held_out, quantile))
    record = {"threshold": detector.threshold, "quantile": quantile,
              "components": len(detector.variances), "n_images": int(len(x)),
              "flagged_out_of_fold": float((held_out > detector.threshold).mean())}
    return detector, record


def save_novelty(model_dir: Path, detector: NoveltyDetector, record: dict[str, Any]) -> None:
    np.savez(model_dir / NOVELTY_FILE, mean=detector.mean.astype(np.float32),
             components=detector.components.astype(np.float32),
             variances=detector.variances, residual=np.float64(detector.residual))
    spec = {**record, "file": NOVELTY_FILE, "sha256": file_sha256(model_dir / NOVELTY_FILE)}
    (model_dir / NOVELTY_SPEC).write_text(json.dumps(spec, indent=1))


def load_novelty(model_dir: Path) -> NoveltyDetector | None:
    """The model's detector, or None when it has none (or its file does not match)."""
    spec_path = model_dir / NOVELTY_SPEC
    if not spec_path.exists():
        return None
    spec = json.loads(spec_path.read_text())
    path = model_dir / spec["file"]
    if not path.exists() or file_sha256(path) != spec["sha256"]:
        raise ValueError(f"{path} is missing or is not the file {spec_path} describes")
    with np.load(path) as data:
        return NoveltyDetector(data["mean"].astype(np.float64),
                               data["components"].astype(np.float64),
                               data["variances"], float(data["residual"]),
                               float(spec["threshold"]))
