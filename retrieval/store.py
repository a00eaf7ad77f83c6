"""The retrieval model directory, and the Retriever that searches with it.

    retrieval.json       labels, text encoder (and its vocabulary), backbone, bit lengths,
                         training config, validation MAP, the exact command, and the
                         sha256 of the two word files (so that the version covers them)
    stopwords.json       words left out of texts and queries      } retrieval.text.Wording
    label_words.json     label -> everyday words of tag texts     }
    hash_<bits>.pt       ImgNet / TxtNet (/ LabNet) weights per code length
    database.npz         the database: names, labels, texts, image and text codes per bits
    backbone.pt          the image backbone, when it was trained for this model

No pickles: weights load with ``weights_only=True``, the rest is JSON / npz.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classifier.imageio import resize_square
from classifier.model_dirs import ModelDirs
from classifier.store import load_network
from imagery.digests import file_sha256
from retrieval.features import backbone_file, describe
from retrieval.index import HammingIndex
from retrieval.networks import img_net, lab_net, txt_net
from retrieval.text import TextEncoder, Vocabulary, Wording, encoder_from_dict
from retrieval.train import HashConfig, HashModel

SPEC_FILE = "retrieval.json"
RETRIEVAL_DIRS = ModelDirs("retrieval", SPEC_FILE,
                           Path(__file__).resolve().parent / "default_model", named_by="folder")


def save_hash_model(model: HashModel, path: Path) -> None:
    nets = {"imgnet": model.imgnet, "txtnet": model.txtnet, "labnet": model.labnet}
    torch.save({"config": model.config.to_dict(),
                "dims": {"image": model.imgnet.body[0].in_features,
                         "text": model.txtnet.body[0].in_features,
                         "labels": model.labnet.body[0].in_features if model.labnet else 0},
                **{k: v.state_dict() for k, v in nets.items() if v is not None}}, path)


def load_hash_model(path: Path) -> HashModel:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = HashConfig(**blob["config"])
    dims = blob["dims"]
    imgnet = img_net(dims["image"], config.bits, config.semantic)
    txtnet = txt_net(dims["text"], config.bits, config.semantic)
    imgnet.load_state_dict(blob["imgnet"])
    txtnet.load_state_dict(blob["txtnet"])
    labnet = None
    if "labnet" in blob:
        labnet = lab_net(dims["labels"], config.bits, config.semantic)
        labnet.load_state_dict(blob["labnet"])
    model = HashModel(config, imgnet.eval(), txtnet.eval(), labnet)
    return model


def read_wording(model_dir: Path, spec: dict[str, Any]) -> Wording:
    """The model's word files, refused when they differ from the ones it was trained
    with (their digests in the spec): other words give other text codes, under the same
    version. The shipped model predates the digests; a test pins its files instead."""
    for name, digest in spec.get("words", {}).items():
        if file_sha256(model_dir / name) != digest:
            raise ValueError(f"{model_dir / name} is not the file this model was trained "
                             "with: its text codes would change; retrain the model instead")
    return Wording.of_model(model_dir)


@dataclass
class Database:
    names: list[str]
    labels: np.ndarray
    texts: list[str]
    image_codes: dict[int, np.ndarray]
    text_codes: dict[int, np.ndarray]

    def save(self, path: Path) -> None:
        arrays = {f"image_{b}": c for b, c in self.image_codes.items()}
        arrays.update({f"text_{b}": c for b, c in self.text_codes.items()})
        np.savez_compressed(path, names=np.array(self.names), labels=self.labels,
                            texts=np.array(self.texts), **arrays)

    @classmethod
    def load(cls, path: Path) -> Database:
        with np.load(path, allow_pickle=False) as data:
            codes = {k: data[k] for k in data.files if k.startswith(("image_", "text_"))}
            return cls([str(n) for n in data["names"]], data["labels"],
                       [str(t) for t in data["texts"]],
                       {int(k[6:]): v for k, v in codes.items() if k.startswith("image_")},
                       {int(k[5:]): v for k, v in codes.items() if k.startswith("text_")})


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
