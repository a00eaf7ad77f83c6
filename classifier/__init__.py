"""Satellite chip recognition: dehazing, VGG16-BN / EfficientNet multi-label networks,
per-label model choice, ridge recalibration, F2-optimal thresholds, test-time
augmentation and consistent tag sets.

Plain Python/PyTorch; no web framework. What the web app uses is exported here, and only
this (tests/webapp/test_layers.py): find and verify a model directory, load a predictor
and predict, the dehazed display copy, fine-tune a model on curated images, and the
metrics that compare two models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.dehaze import dehaze
from classifier.evaluation import paired_bootstrap
from classifier.metrics import fbeta_per_sample, per_label_scores
from classifier.predictor import Prediction, Predictor, load_predictor
from classifier.store import CLASSIFIER_DIRS, read_pipeline, verify_model_files

if TYPE_CHECKING:
    from classifier.fine_tuning import FineTuneSettings, TrainingHooks, fine_tune

_TRAINING = {"FineTuneSettings", "TrainingHooks", "fine_tune"}


def __getattr__(name: str):
    """The training side (``fine_tune`` and its settings) is imported on first use only:
    prediction and search never load the training loop."""
    if name in _TRAINING:
        from classifier import fine_tuning as module

        globals().update({n: getattr(module, n) for n in _TRAINING})
        return getattr(module, name)
    raise AttributeError(f"module 'classifier' has no attribute {name!r}")


__all__ = ["FineTuneSettings", "ModelInfo", "Prediction", "Predictor", "TrainingHooks",
           "dehaze", "fbeta_per_sample", "fine_tune", "load_predictor", "model_info",
           "paired_bootstrap", "per_label_scores", "verify_model"]


@dataclass(frozen=True)
class ModelInfo:
    """A model directory as the web app records it: where, which version, its spec."""

    path: Path
    version: str
    spec: dict[str, Any]


def model_info(name_or_path: str | Path) -> ModelInfo:
    """The model directory ``name_or_path`` names ('default' = the shipped model);
    FileNotFoundError when there is none."""
    model_dir = CLASSIFIER_DIRS.resolve(name_or_path)
    return ModelInfo(model_dir, CLASSIFIER_DIRS.version(model_dir), read_pipeline(model_dir))


def verify_model(name_or_path: str | Path) -> ModelInfo:
    """``model_info`` after checking that every network file is there with the sha256
    it was assembled with (without loading any network)."""
    info = model_info(name_or_path)
    verify_model_files(info.path, info.spec)
    return info
