"""Hashing training is resumable: a run paused after some epochs and started again with
the same checkpoint ends exactly where the uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.networks import HashConfig, HashModel
from retrieval.train import train_hashing


def _items(n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = (rng.random((n, 4)) < 0.35).astype(np.float32)
    labels[labels.sum(1) == 0, 0] = 1
    images = labels @ rng.normal(0, 1, (4, 12)) + rng.normal(0, 0.3, (n, 12))
    texts = (rng.random((n, 20)) < 0.3).astype(np.float32)
    return images.astype(np.float32), texts, labels


def _weights(model: HashModel) -> torch.Tensor:
    nets = [model.imgnet, model.txtnet] + ([model.labnet] if model.labnet else [])
    return torch.cat([v.flatten().float() for net in nets for v in net.state_dict().values()])


@pytest.mark.parametrize("method", ["ssah", "dcmh"])
def test_a_paused_run_resumes_to_the_uninterrupted_result(method: str, tmp_path: Path) -> None:
    items = _items()
    config = HashConfig(bits=8, semantic=16, method=method, epochs=5, batch_size=16,
                        anchors=30, word_dropout=0.3, seed=4)
    whole = train_hashing(*items, config, progress=False)
    checkpoint = tmp_path / "hash_8_last.pt"
    runs = []
    while True:
        model = train_hashing(*items, config, progress=False, checkpoint=checkpoint,
                              max_epochs_this_run=2)
        runs.append(len(model.history))
        if model.finished:
            break
    assert runs == [2, 4, 5] and checkpoint.exists()
    assert model.history == whole.history
    assert torch.equal(_weights(model), _weights(whole))
    assert np.array_equal(model.image_codes(items[0]), whole.image_codes(items[0]))
    assert np.array_equal(model.text_codes(items[1]), whole.text_codes(items[1]))
    # a finished checkpoint only loads: no further epoch runs
    again = train_hashing(*items, config, progress=False, checkpoint=checkpoint)
    assert again.history == whole.history and torch.equal(_weights(again), _weights(whole))


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path: Path) -> None:
    items = _items()
    checkpoint = tmp_path / "hash_8_last.pt"
    train_hashing(*items, HashConfig(bits=8, semantic=16, epochs=1, batch_size=16),
                  progress=False, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="checkpoint was made with"):
        train_hashing(*items, HashConfig(bits=8, semantic=16, epochs=1, batch_size=16,
                                         lr=1e-2), progress=False, checkpoint=checkpoint)
