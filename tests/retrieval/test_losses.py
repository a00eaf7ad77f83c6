"""The losses prefer what the method wants."""

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
