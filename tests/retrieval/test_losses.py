"""The losses prefer what the method wants."""

import math

import pytest
import torch

from retrieval import losses


def test_pairwise_nll_is_lower_for_codes_that_agree_with_the_labels():
    labels = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    s = losses.similarity(labels, labels)
    good = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [-1, -1, -1, -1], [-1, -1, -1, -1]])
    bad = torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, -1], [1, 1, 1, 1], [-1, -1, -1, -1]])
    assert losses.pairwise_nll(good, good, s) < losses.pairwise_nll(bad, bad, s)


def test_similarity_means_sharing_a_label():
    a = torch.tensor([[1.0, 1, 0], [0, 0, 1]])
    b = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 0, 0]])
    assert losses.similarity(a, b).tolist() == [[1, 1, 0], [0, 1, 0]]


def test_quantization_balance_reconstruction_and_adversarial():
    h = torch.tensor([[0.9, -0.8], [0.7, -0.9]])
    assert losses.quantization(h, torch.sign(h)) < losses.quantization(h, -torch.sign(h))
    assert losses.balance(torch.tensor([[1.0], [-1.0]])) == 0
    assert losses.balance(torch.tensor([[1.0], [1.0]])) == 1
    labels = torch.tensor([[1.0, 0]])
    assert losses.label_reconstruction(torch.tensor([[5.0, -5]]), labels) < \
        losses.label_reconstruction(torch.tensor([[-5.0, 5]]), labels)
    logits = torch.tensor([3.0])
    assert losses.adversarial(logits, True) < losses.adversarial(logits, False)


def test_pairwise_nll_matches_hand_computed_values():
    """Theta = 1/2 a_i . b_j, per pair log(1 + e^Theta) - S Theta, mean over all pairs."""
    a = torch.tensor([[2.0, 0], [0, 1]])
    b = torch.tensor([[1.0, 0], [0, 2], [1, 1]])
    s = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    # Theta = [[1, 0, 1], [0, 1, 1/2]]
    per_pair = [math.log(1 + math.e) - 1, math.log(2), math.log(1 + math.e),
                math.log(2), math.log(1 + math.e) - 1, math.log(1 + math.exp(0.5)) - 0.5]
    value = losses.pairwise_nll(a, b, s)
    assert value.item() == pytest.approx(sum(per_pair) / 6, abs=1e-6)
    assert value.item() == pytest.approx(0.633359, abs=1e-5)
    # finite and exact far out in both tails (softplus, not log(1 + exp))
    big = torch.tensor([[30.0]])
    assert losses.pairwise_nll(big, big, torch.ones(1, 1)).item() == pytest.approx(0, abs=1e-6)
    assert losses.pairwise_nll(big, big, torch.zeros(1, 1)).item() == pytest.approx(450)
    assert losses.pairwise_nll(big, -big, torch.zeros(1, 1)).item() == pytest.approx(0, abs=1e-6)


def test_pairwise_nll_gradient_pulls_similar_pairs_together():
    """d/da_i = 1/2 sum_j (sigmoid(Theta_ij) - S_ij) b_j / (number of pairs)."""
    a = torch.tensor([[0.5, -0.5]], requires_grad=True)
    b = torch.tensor([[1.0, 1], [1, -1]])
    s = torch.tensor([[1.0, 0]])
    losses.pairwise_nll(a, b, s).backward()
    theta = 0.5 * (a.detach() @ b.T)[0]
    expected = 0.5 * ((torch.sigmoid(theta) - s[0])[:, None] * b).sum(0) / 2
    torch.testing.assert_close(a.grad[0], expected)
    # one step down the gradient raises the similar pair's product, lowers the other's
    stepped = a.detach() - a.grad
    assert stepped @ b[0] > a.detach() @ b[0] and stepped @ b[1] < a.detach() @ b[1]


def test_other_losses_match_hand_computed_values():
    h = torch.tensor([[0.5, -1.0]])
    assert losses.quantization(h, torch.tensor([[1.0, -1]])).item() == pytest.approx(0.125)
    assert losses.balance(torch.tensor([[1.0, 1], [1, -1]])).item() == pytest.approx(0.5)
    logits = torch.tensor([[0.0, math.log(3)]])  # sigmoid: 1/2, 3/4
    assert losses.label_reconstruction(logits, torch.ones(1, 2)).item() == pytest.approx(
        (0.25 + 0.0625) / 2)
    logits = torch.tensor([0.0, 2.0])
    assert losses.adversarial(logits, True).item() == pytest.approx(
        (math.log(2) + math.log(1 + math.exp(-2))) / 2)
    assert losses.adversarial(logits, False).item() == pytest.approx(
        (math.log(2) + math.log(1 + math.exp(2))) / 2)
