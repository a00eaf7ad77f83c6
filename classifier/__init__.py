"""Satellite chip recognition: dehazing, VGG16-BN multi-label networks, per-label model
choice, ridge recalibration, F2-optimal thresholds and test-time augmentation.

Plain Python/PyTorch; no web framework. The web app uses ``load_predictor``.
"""

from classifier.predictor import Prediction, Predictor, load_predictor

__all__ = ["Prediction", "Predictor", "load_predictor"]
