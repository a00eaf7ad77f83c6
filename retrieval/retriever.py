"""The Retriever: a loaded retrieval model that encodes texts and images to hash codes
and searches its stored database (text -> image, image -> image, image -> text)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classifier.store import load_network
from imagery.decode import resize_square
from imagery.digests import file_sha256
from retrieval.features import backbone_file, describe
from retrieval.index import HammingIndex
from retrieval.store import RETRIEVAL_DIRS, SPEC_FILE, Database, load_hash_model, read_wording
from retrieval.text import TextEncoder, Vocabulary, encoder_from_dict


@contextmanager
def loading_before_fork() -> Iterator[None]:
    """Torch single-threaded for the duration (a Retriever loaded in a process that
    forks workers afterwards: gunicorn's preload_app). An OpenMP thread pool started
    before a fork hangs the child's first parallel loop; with one thread none is
    started, and the children start their own with the thread count restored here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Hit:
    name: str
    distance: int
    text: str


class Retriever:
    """Load once; encode texts and images to codes; search the stored database."""

    def __init__(self, model_dir: str | Path = "default") -> None:
        self.model_dir = RETRIEVAL_DIRS.resolve(model_dir)
        self.spec: dict[str, Any] = json.loads((self.model_dir / SPEC_FILE).read_text())
        self.version = RETRIEVAL_DIRS.version(self.model_dir)
        self.bits: list[int] = self.spec["bits"]
        self.label_names: list[str] = self.spec["labels"]
        self.image_size: int = self.spec["image_size"]
        self.wording = read_wording(self.model_dir, self.spec)
        self.encoder: TextEncoder = encoder_from_dict(self.spec["text_encoder"], self.wording)
        self.vocabulary = Vocabulary(self.spec["vocabulary"], self.wording)
        backbone = self.spec["backbone"]
        backbone_path = (self.model_dir / "backbone.pt" if backbone == "backbone.pt"
                         else backbone_file(backbone))
        self.backbone = load_network(backbone_path, torch.device("cpu"))
        #: sha256 of the backbone's weights file: a classifier whose first original-image
        #: network has the same digest yields these very descriptors from its own pass
        self.backbone_digest = file_sha256(backbone_path)
        self.models = {b: load_hash_model(self.model_dir / f"hash_{b}.pt") for b in self.bits}
        self.database = Database.load(self.model_dir / "database.npz")
        self._indexes: dict[tuple[str, int], HammingIndex] = {}

    def tags_text(self, tags: Sequence[str]) -> str:
        """The text of an item known by its tags, in this model's words."""
        return self.wording.tags_text(tags)

    def image_descriptors(self, images: list[np.ndarray]) -> np.ndarray:
        size = self.image_size
        batch = np.stack([resize_square(img, size) for img in images]) if images else \
            np.zeros((0, size, size, 3), np.uint8)
        return describe(self.backbone, batch)

    def text_vectors(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)

    def image_codes(self, images: list[np.ndarray], bits: int) -> np.ndarray:
        return self.codes_from_descriptors(self.image_descriptors(images), bits)

    def codes_from_descriptors(self, descriptors: np.ndarray, bits: int) -> np.ndarray:
        """Image codes from backbone descriptors computed elsewhere (e.g. by the
        classifier's own forward pass over the same network)."""
        return self.models[bits].image_codes(np.asarray(descriptors, dtype=np.float32))

    def text_codes(self, texts: list[str], bits: int, check: bool = True) -> np.ndarray:
        if check:
            for text in texts:
                self.vocabulary.check(text)
        return self.models[bits].text_codes(self.text_vectors(texts))

    def index(self, side: str, bits: int) -> HammingIndex:
        """Index over the database's image codes ('image') or text codes ('text')."""
        key = (side, bits)
        if key not in self._indexes:
            codes = (self.database.image_codes if side == "image"
                     else self.database.text_codes)[bits]
            index = HammingIndex(bits)
            index.add(np.arange(len(codes)), codes)
            self._indexes[key] = index
        return self._indexes[key]

    def _hits(self, distances: np.ndarray, ids: np.ndarray) -> list[Hit]:
        db = self.database
        return [Hit(db.names[i], int(d), db.texts[i]) for d, i in zip(distances, ids) if i >= 0]

    def search_text(self, query: str, k: int = 10, bits: int | None = None) -> list[Hit]:
        """Text -> images (raises text.UnknownQuery when no query word is known)."""
        bits = bits or max(self.bits)
        distances, ids = self.index("image", bits).search(self.text_codes([query], bits), k)
        return self._hits(distances[0], ids[0])

    def search_image(self, image: np.ndarray, k: int = 10, bits: int | None = None,
                     side: str = "image") -> list[Hit]:
        """Image -> images (side='image') or image -> texts (side='text')."""
        bits = bits or max(self.bits)
        distances, ids = self.index(side, bits).search(self.image_codes([image], bits), k)
        return self._hits(distances[0], ids[0])
