"""The retrieval model directory (searched by ``retrieval.retriever.Retriever``).

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagery.digests import file_sha256
from retrieval.model_dirs import RETRIEVAL_DIRS, SPEC_FILE  # noqa: F401 - re-exported
from retrieval.networks import HashConfig, HashModel, img_net, lab_net, txt_net
from retrieval.text import Wording


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
