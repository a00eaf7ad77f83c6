"""Image descriptors for ImgNet: the hidden layer of a VGG16-BN classifier network.

Training VGG16 end to end inside the hashing loop does not fit a 2-core CPU, so ImgNet
sits on a frozen backbone (METHOD.md allows it) and learns the hashing on top:

- ``default``: the shipped Planet classifier's network on original images (32 px): the
  right backbone for Planet chips, nothing to train.
- ``train``: a narrow VGG16-BN trained here on the training split's labels with the
  classifier's own training loop (BCE + soft F2 + focal, augmentation, early stopping);
  used for other imagery such as UC Merced, where Planet features transfer poorly.
- a path to a classifier model directory (``python -m classifier train --out DIR``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from classifier.inference import to_tensor
from classifier.model import ModelConfig, VGGMultiLabel, resolve_device
from classifier.store import (
    load_network,
    network_members,
    read_pipeline,
    resolve_model_dir,
    save_network,
)
from classifier.train import TrainConfig, train_network


def backbone_file(name: str | Path) -> Path:
    """A network file (.pt, e.g. another retrieval model's backbone.pt) or the first
    original-image network of a classifier model directory ('default' = shipped)."""
    if str(name).endswith(".pt"):
        return Path(name)
    model_dir = resolve_model_dir(name)
    first = network_members(model_dir, read_pipeline(model_dir))["original"][0]
    return model_dir / f"{first}.pt"


def load_backbone(name: str | Path) -> VGGMultiLabel:
    return load_network(backbone_file(name), torch.device("cpu"))


def train_backbone(images: np.ndarray, labels: np.ndarray, val_images: np.ndarray,
                   val_labels: np.ndarray, out: Path, width: float = 0.25,
                   epochs: int = 30, seed: int = 0) -> VGGMultiLabel:
    """Train a classifier network on the training items only; saved as out/backbone.pt
    and returned as read back from it: the database codes must come from the weights
    that ship (fp16), not from the fp32 ones in memory, or ``retrieval verify`` and the
    app re-encode the database to slightly different codes."""
    config = ModelConfig(num_labels=labels.shape[1], input_size=images.shape[1], width=width)
    train_config = TrainConfig(epochs=epochs, seed=seed)
    model, _history, _finished = train_network(
        "backbone", config, train_config, (images, labels), (val_images, val_labels),
        out / "checkpoints", resolve_device("cpu"))
    save_network(model, out / "backbone.pt")
    return load_backbone(out / "backbone.pt")


def backbone_size(name: str | Path) -> int:
    if str(name).endswith(".pt"):
        return int(load_backbone(name).config.input_size)
    return int(read_pipeline(resolve_model_dir(name))["image_size"])


@torch.no_grad()
def describe(model: VGGMultiLabel, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """N x hidden float32 descriptors of uint8 images at the backbone's input size."""
    model.eval()
    device = next(model.parameters()).device
    out = [model.embed(to_tensor(images[i:i + batch], device)).float().cpu()
           for i in range(0, len(images), batch)]
    hidden = model.config.hidden
    return torch.cat(out).numpy() if out else np.zeros((0, hidden), np.float32)
