""""Unlike the training imagery": an out-of-distribution score from the features the
forward pass already computes.

The descriptor is the first original-image network's pooled features (view 0), the one
``Predictor.predict(features=True)`` returns at no extra cost. The detector is the
Mahalanobis distance to the validation descriptors, with the covariance shrunk by
Ledoit-Wolf (1,280 dimensions from a few thousand chips need it), divided by the
dimension. It was chosen among
PCA-subspace and k-nearest-neighbour scores on the shipped model's features (validation
fit, test chips against scikit-image's sample photographs and UC Merced images): it
separated both best (AUROC 0.96 and 0.95; the 32-component PCA score 0.81 and 0.67).

It is fitted on one half of the validation images (never trained on), and the flag
threshold is the ``quantile`` (99%) of its scores on the other half, images it did not
see: so about 1% of chips like the training imagery are flagged, whatever the fit.

Stored beside the networks as ``novelty.npz`` + ``novelty.json`` (its sha256, threshold
and how it was made); it changes no tag, so it is not part of the model's version, and a
model without it simply has no score.

``python -m classifier novelty --model DIR --images IMAGES`` fits it for an assembled
model from its ``val.csv``; ``assemble`` fits it for every new model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

from imagery.digests import file_sha256

__all__ = ["NOVELTY_FILE", "NoveltyDetector", "fit_novelty", "load_novelty", "save_novelty"]

NOVELTY_FILE = "novelty.npz"
NOVELTY_SPEC = "novelty.json"
QUANTILE = 0.99


@dataclass
class NoveltyDetector:
    mean: np.ndarray  # D
    precision: np.ndarray  # D x D, the inverse of the shrunk covariance
    threshold: float = float("inf")  # scores above it are flagged

    def score(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, np.float64) - self.mean
        return np.einsum("ij,jk,ik->i", centred, self.precision, centred) / len(self.mean)

    def flags(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def relative(self, features: np.ndarray) -> np.ndarray:
        """Scores in units of the threshold: above 1 is flagged (what people are shown:
        99% of chips like the training imagery score below 1)."""
        return self.score(features) / self.threshold


def _fit(features: np.ndarray) -> NoveltyDetector:
    covariance = LedoitWolf().fit(features)
    return NoveltyDetector(covariance.location_, covariance.get_precision())


def fit_novelty(features: np.ndarray, quantile: float = QUANTILE,
                seed: int = 0) -> tuple[NoveltyDetector, dict]:
    """The detector fitted on one half of ``features`` (shuffled by ``seed``), with its
    threshold the ``quantile`` of its scores on the other half: calibrated on images it
    did not see, as every image it will score. Returns it and a record."""
    x = np.asarray(features, np.float64)
    if len(x) < 8:
        raise ValueError(f"{len(x)} validation images: too few to fit a novelty detector")
    order = np.random.default_rng(seed).permutation(len(x))
    fit_part, held_out = order[: len(x) // 2], order[len(x) // 2:]
    detector = _fit(x[fit_part])
    scores = detector.score(x[held_out])
    detector.threshold = float(np.quantile(scores, quantile))
    record = {"threshold": detector.threshold, "quantile": quantile,
              "dimensions": int(x.shape[1]), "n_fit": int(len(fit_part)),
              "n_calibration": int(len(held_out)),
              "flagged_in_calibration": float((scores > detector.threshold).mean())}
    return detector, record


def save_novelty(model_dir: Path, detector: NoveltyDetector, record: dict[str, Any]) -> None:
    np.savez(model_dir / NOVELTY_FILE, mean=detector.mean.astype(np.float32),
             precision=detector.precision.astype(np.float32))
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
                               data["precision"].astype(np.float64), float(spec["threshold"]))
