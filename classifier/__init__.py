"""Satellite chip recognition: dehazing, VGG16-BN / EfficientNet multi-label networks,
per-label model choice, ridge recalibration, F2-optimal thresholds, test-time
augmentation and consistent tag sets.

Plain Python/PyTorch; no web framework. What the web app uses is exported here, and only
this (tests/webapp/test_layers.py): find and verify a model directory, load a predictor
and predict, the dehazed display copy, fine-tune a model on curated images, and the
metrics that compare two models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# eager, and needing no torch: the function must shadow its own submodule's name
from classifier.dehaze import dehaze
from classifier.model_files import CLASSIFIER_DIRS, read_pipeline, verify_model_files

if TYPE_CHECKING:
    from classifier.fine_tuning import FineTuneSettings, TrainingHooks, fine_tune
    from classifier.metrics import fbeta_per_sample, paired_bootstrap, per_label_scores
    from classifier.predictor import Prediction, Predictor, load_predictor

#: exported name -> the module that defines it, imported on first use: finding and
#: checking a model needs no network (classifier.model_files), so the web app and its
#: commands start without torch; the first prediction loads it, and only a training
#: worker loads the training loop
_LAZY = {"Prediction": "classifier.predictor", "Predictor": "classifier.predictor",
         "load_predictor": "classifier.predictor",
         "fbeta_per_sample": "classifier.metrics", "per_label_scores": "classifier.metrics",
         "paired_bootstrap": "classifier.metrics",
         "FineTuneSettings": "classifier.fine_tuning", "TrainingHooks": "classifier.fine_tuning",
         "fine_tune": "classifier.fine_tuning"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
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
