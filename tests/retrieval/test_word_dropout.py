"""Word dropout for the bag-of-words text network: people type two words, captions have
ten, and a text network that only ever saw whole captions maps short queries badly."""

from __future__ import annotations

import numpy as np
import torch

from retrieval.data import tags_text
from retrieval.networks import HashConfig
from retrieval.text import BagOfWords
from retrieval.train import drop_words, train_hashing


def test_drop_words_only_removes_words_and_keeps_at_least_one() -> None:
    rng = np.random.default_rng(0)
    bags = torch.from_numpy((rng.random((2000, 40)) < 0.2).astype(np.float32))
    bags[0] = 0
    bags[0, 3] = 1  # a one-word caption keeps its word
    dropped = drop_words(bags, 0.5, rng)
    assert ((dropped == 0) | (dropped == bags)).all()  # nothing added, values unchanged
    assert (dropped.sum(dim=1) >= 1).all() and dropped[0, 3] == 1
    kept = dropped.sum() / bags.sum()
    assert 0.45 < float(kept) < 0.6  # about half, plus the rows that would lose every word
    assert torch.equal(drop_words(bags, 0.0, rng), bags)


def test_short_queries_find_their_items_only_with_word_dropout() -> None:
    """Captions made from Planet tags (eight to ten words), queries of one or two words:
    with word dropout each query's nearest item is of the right kind, without it most
    are not (1 of 6 here)."""
    kinds_tags = [["water", "primary", "clear"], ["agriculture", "clear", "road"], ["cloudy"]]
    rng = np.random.default_rng(0)
    kinds = np.arange(72) % 3
    captions = [tags_text(kinds_tags[k]) for k in kinds]
    encoder = BagOfWords()
    encoder.fit(captions)
    labels = np.eye(3, dtype=np.float32)[kinds]
    images = rng.normal(labels @ rng.normal(0, 1, (3, 32)), 0.3).astype(np.float32)
    queries = ["river water", "water", "fields", "clouds", "road", "forest"]
    wanted = np.array([0, 0, 1, 2, 1, 0])

    def right(word_dropout: float) -> int:
        model = train_hashing(images, encoder.encode(captions), labels,
                              HashConfig(bits=16, epochs=12, batch_size=16, seed=1,
                                         word_dropout=word_dropout), progress=False)
        image_codes = model.image_codes(images).astype(int)
        query_codes = model.text_codes(encoder.encode(queries)).astype(int)
        return int((kinds[np.argmax(query_codes @ image_codes.T, axis=1)] == wanted).sum())

    assert right(0.5) == len(queries)
    assert right(0.0) <= 3
