"""Shared fixtures for the classifier tests.

Everything is kept tiny and single-threaded: the suite runs next to long training jobs.
"""

from __future__ import annotations

import io
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def encode():
    """encode(pil_image, "PNG", **save_options) -> file bytes."""

    def _encode(img: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, fmt, **options)
        return buffer.getvalue()

    return _encode


@pytest.fixture
def tiny_model():
    """tiny_model(num_labels, input_size=32, width=0.125, seed=0) -> eval-mode VGGMultiLabel."""
    from classifier.model import ModelConfig, VGGMultiLabel

    def _make(num_labels: int = 3, input_size: int = 32, width: float = 0.125,
              seed: int = 0, hidden: int = 16) -> VGGMultiLabel:
        torch.manual_seed(seed)
        model = VGGMultiLabel(ModelConfig(num_labels=num_labels, input_size=input_size,
                                          width=width, hidden=hidden))
        return model.eval()

    return _make


@pytest.fixture
def mutually_exclusive_data():
    """Validation-like outputs for labels (clear, cloudy, water): exactly one of clear/cloudy
    is true; the network's clear score is sharp, its cloudy score is noisy; water is
    independent and moderately well predicted."""

    def _make(n: int = 400, seed: int = 0):
        gen = np.random.default_rng(seed)
        clear = gen.random(n) < 0.6
        cloudy = ~clear
        water = gen.random(n) < 0.3
        y = np.stack([clear, cloudy, water], axis=1).astype(np.float32)
        p_clear = np.where(clear, 0.92, 0.08) + gen.normal(0, 0.03, n)
        p_cloudy = np.where(cloudy, 0.55, 0.35) + gen.normal(0, 0.2, n)
        p_water = np.where(water, 0.7, 0.2) + gen.normal(0, 0.12, n)
        probs = np.clip(np.stack([p_clear, p_cloudy, p_water], axis=1), 0.0, 1.0)
        return y, probs

    return _make
