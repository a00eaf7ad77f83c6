"""Image descriptors for ImgNet: the hidden layer of a VGG16-BN classifier network.

Training VGG16 end to end inside the hashing loop does not fit a 2-core CPU, so ImgNet
sits on a frozen backbone (METHOD.md allows it) and learns the hashing on top:

- ``default``: the shipped Planet classifier's network on original images (32 px): the
  right backbone for Planet chips, nothing to train.
- ``train``: a narrow VGG16-BN trained here on the training split's labels with the
  classifier's own training loop (BCE + soft F2 + focal, augmentation, early stopping on
  a held-out 10% of the training items, never on the retrieval queries); used for other
  imagery such as UC Merced, where Planet features transfer poorly
  (``retrieval.pipeline.train_backbone``: training code stays off the search path).
- a path to a classifier model directory (``python -m classifier train --out DIR``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from classifier.inference import to_tensor
from classifier.model import MultiLabelNetwork
from classifier.store import CLASSIFIER_DIRS, load_network, network_members, read_pipeline


def backbone_file(name: str | Path) -> Path:
    """A network file (.pt, e.g. another retrieval model's backbone.pt) or the first
    original-image network of a classifier model directory ('default' = shipped)."""
    if str(name).endswith(".pt"):
        return Path(name)
    model_dir = CLASSIFIER_DIRS.resolve(name)
    first = network_members(model_dir, read_pipeline(model_dir))["original"][0]
    return model_dir / f"{first}.pt"


def load_backbone(name: str | Path) -> MultiLabelNetwork:
    return load_network(backbone_file(name), torch.device("cpu"))


def backbone_size(name: str | Path) -> int:
    if str(name).endswith(".pt"):
        return int(load_backbone(name).config.input_size)
    return int(read_pipeline(CLASSIFIER_DIRS.resolve(name))["image_size"])


@torch.no_grad()
def describe(model: MultiLabelNetwork, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """N x hidden float32 descriptors of uint8 images at the backbone's input size."""
    model.eval()
    device = next(model.parameters()).device
    out = [model.embed(to_tensor(images[i:i + batch], device)).float().cpu()
           for i in range(0, len(images), batch)]
    hidden = model.embedding_dim
    return torch.cat(out).numpy() if out else np.zeros((0, hidden), np.float32)
