"""Losses of METHOD.md section 3, averaged per pair / per entry so that learning rates do
not depend on the batch or database size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """S_ij = 1 when items i and j share at least one label."""
    return (labels_a @ labels_b.T > 0).float()


def pairwise_nll(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of log(1 + e^Theta) - S * Theta with Theta = 1/2 a_i . b_j.

    The negative log-likelihood of the similarities under a logistic model of the inner
    products: low when similar pairs have large and dissimilar pairs small products.
    softplus keeps it finite for any Theta.
    """
    theta = 0.5 * a @ b.T
    return (F.softplus(theta) - s * theta).mean()


def quantization(h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||H - B||^2 per entry: pulls continuous outputs to their binary codes."""
    return ((h - b) ** 2).mean()


def balance(h: torch.Tensor) -> torch.Tensor:
    """DCMH's bit balance: each bit should be +1 and -1 equally often."""
    return (h.mean(0) ** 2).mean()


def label_reconstruction(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """||L_hat - L||^2 with L_hat = sigmoid(logits)."""
    return ((torch.sigmoid(logits) - labels) ** 2).mean()


def adversarial(logits: torch.Tensor, from_labels: bool) -> torch.Tensor:
    """Binary cross-entropy towards 'came from LabNet' (1) or 'from a modality' (0)."""
    target = torch.full_like(logits, 1.0 if from_labels else 0.0)
    return F.binary_cross_entropy_with_logits(logits, target)
