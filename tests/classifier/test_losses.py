"""Log loss, soft F2 loss and focal loss, combined by weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from classifier.losses import LossWeights, combined_loss, focal_loss, soft_f2_loss

TARGETS = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])


def _logits(sign: float, scale: float = 4.0) -> torch.Tensor:
    return sign * scale * (2 * TARGETS - 1)


def test_soft_f2_loss_prefers_correct_logits():
    right = soft_f2_loss(_logits(+1), TARGETS)
    wrong = soft_f2_loss(_logits(-1), TARGETS)
    unsure = soft_f2_loss(torch.zeros_like(TARGETS), TARGETS)
    assert right.ndim == 0
    assert 0.0 <= right < unsure < wrong <= 1.0
    assert right < 0.05 and wrong > 0.9


def test_soft_f2_loss_matches_hand_value():
    logits = torch.zeros(1, 3)  # p = 0.5 for all three
    targets = torch.tensor([[1.0, 1.0, 0.0]])
    # tp 1, fn 1, fp 0.5 -> F2 = 5 / (5 + 4 + 0.5) = 0.5263
    assert soft_f2_loss(logits, targets).item() == pytest.approx(1 - 5 / 9.5, abs=1e-6)
    # beta = 1: F1 = 2 / (2 + 1 + 0.5)
    assert soft_f2_loss(logits, targets, beta=1.0).item() == pytest.approx(1 - 2 / 3.5, abs=1e-6)


def test_soft_f2_loss_penalises_misses_more_than_false_alarms():
    targets = torch.tensor([[1.0, 0.0]])
    miss = soft_f2_loss(torch.tensor([[-6.0, -6.0]]), targets)
    false_alarm = soft_f2_loss(torch.tensor([[6.0, 6.0]]), targets)
    assert miss > false_alarm


def test_focal_loss_below_bce_on_easy_examples():
    logits = _logits(+1, scale=2.0)
    bce = F.binary_cross_entropy_with_logits(logits, TARGETS)
    focal = focal_loss(logits, TARGETS)
    assert focal > 0 and bce > 0
    assert focal < bce / 5


def test_focal_loss_keeps_hard_examples():
    easy, hard = _logits(+1, 3.0), _logits(-1, 3.0)
    ratio_easy = focal_loss(easy, TARGETS) / F.binary_cross_entropy_with_logits(easy, TARGETS)
    ratio_hard = focal_loss(hard, TARGETS) / F.binary_cross_entropy_with_logits(hard, TARGETS)
    assert ratio_hard > 0.9 and ratio_easy < 0.1


def test_focal_loss_with_gamma_zero_is_bce():
    logits = torch.linspace(-3, 3, 12).reshape(3, 4)
    torch.testing.assert_close(focal_loss(logits, TARGETS, gamma=0.0),
                               F.binary_cross_entropy_with_logits(logits, TARGETS))


def test_focal_loss_alpha_weights_positives():
    logits = torch.zeros(1, 1)
    positive, negative = torch.ones(1, 1), torch.zeros(1, 1)
    assert focal_loss(logits, positive, alpha=0.9) > focal_loss(logits, positive, alpha=0.1)
    assert focal_loss(logits, negative, alpha=0.9) < focal_loss(logits, negative, alpha=0.1)


def test_combined_loss_bce_only_equals_bce():
    logits = torch.linspace(-2, 2, 12).reshape(3, 4)
    out = combined_loss(logits, TARGETS, LossWeights(1.0, 0.0, 0.0))
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(logits, TARGETS))


def test_combined_loss_is_weighted_sum():
    logits = torch.linspace(-2, 2, 12).reshape(3, 4)
    weights = LossWeights(bce=0.3, f2=2.0, focal=0.7)
    expected = (0.3 * F.binary_cross_entropy_with_logits(logits, TARGETS)
                + 2.0 * soft_f2_loss(logits, TARGETS) + 0.7 * focal_loss(logits, TARGETS))
    torch.testing.assert_close(combined_loss(logits, TARGETS, weights), expected)


def test_combined_loss_accepts_half_logits_and_backpropagates():
    logits = torch.linspace(-2, 2, 12).reshape(3, 4).requires_grad_()
    loss = combined_loss(logits.half(), TARGETS, LossWeights())
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("args", [(0.0, 0.0, 0.0), (-1.0, 1.0, 1.0), (1.0, -0.5, 0.0),
                                  (0.0, 0.0, -1.0)])
def test_loss_weights_reject_all_zero_or_negative(args):
    with pytest.raises(ValueError):
        LossWeights(*args)


def test_loss_weights_accept_single_term():
    assert LossWeights(0.0, 1.0, 0.0).f2 == 1.0
