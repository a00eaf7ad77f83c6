"""The three training losses of the paper, combinable by weights.

- log loss (binary cross-entropy) on every label;
- a differentiable F2 loss, 1 - soft F2 per image (probabilities stand in for counts),
  which rewards recall twice as much as precision, like the metric;
- a hard-example loss: focal loss (Lin et al. 2017), which down-weights the easy,
  well-classified labels so the rare and confusable ones drive the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def soft_f2_loss(logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0,
                 eps: float = 1e-7) -> torch.Tensor:
    """Mean over images of 1 - soft F-beta, with sigmoid probabilities as soft counts."""
    probs = torch.sigmoid(logits)
    tp = (probs * targets).sum(dim=1)
    fp = (probs * (1 - targets)).sum(dim=1)
    fn = ((1 - probs) * targets).sum(dim=1)
    b2 = beta * beta
    f = ((1 + b2) * tp + eps) / ((1 + b2) * tp + b2 * fn + fp + eps)
    return (1 - f).mean()


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0,
               alpha: float = 0.5) -> torch.Tensor:
    """Binary focal loss; ``alpha`` weights positives (0.5 = balanced, scaled x2 to match BCE)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = torch.exp(-bce)
    weight = 2 * (alpha * targets + (1 - alpha) * (1 - targets))
    return (weight * (1 - p_t) ** gamma * bce).mean()


@dataclass(frozen=True)
class LossWeights:
    bce: float = 1.0
    f2: float = 0.5
    focal: float = 1.0

    def __post_init__(self) -> None:
        if min(self.bce, self.f2, self.focal) < 0 or self.bce + self.f2 + self.focal <= 0:
            raise ValueError("loss weights must be >= 0 and not all zero")


def combined_loss(logits: torch.Tensor, targets: torch.Tensor,
                  weights: LossWeights) -> torch.Tensor:
    """Weighted sum of the three losses (a zero weight skips that term)."""
    logits = logits.float()
    total = logits.new_zeros(())
    if weights.bce:
        total = total + weights.bce * F.binary_cross_entropy_with_logits(logits, targets)
    if weights.f2:
        total = total + weights.f2 * soft_f2_loss(logits, targets)
    if weights.focal:
        total = total + weights.focal * focal_loss(logits, targets)
    return total
