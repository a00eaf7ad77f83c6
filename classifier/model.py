"""The VGG16-BN multi-label network: VGG16's convolutional stages with batch norm, flatten,
a fully connected head with batch norm and LeakyReLU, one logit per label.

Built from torchvision's own VGG blocks (``make_layers`` and the "D" configuration).
``width`` scales every stage's channels so a narrower network trains on a CPU; at
``width=1.0`` the convolutional stages are exactly torchvision's ``vgg16_bn`` and can be
initialised from its ImageNet weights, from a local file only (nothing is downloaded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
VGG16_STAGES = 5


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; saved next to its weights.

    ``keep_resolution_after`` = N (1-4) skips the max-pool that ends VGG stage N, so the
    later stages see maps twice as large. At 32 px the last stage otherwise convolves 2 x 2
    maps (3 x 3 kernels on mostly padding); N = 4 gives it 4 x 4 maps for about 1.3x the
    compute, and the head reads 2 x 2 x C features instead of 1 x 1 x C. The layer indices
    (and so the weight names) stay those of VGG16, so such a network can start from one
    trained without it.
    """

    num_labels: int
    input_size: int = 32
    width: float = 0.5
    hidden: int = 512
    dropout: float = 0.3
    keep_resolution_after: int = 0

    def channels(self) -> list[int | str]:
        return [v if v == "M" else max(8, int(round(int(v) * self.width))) for v in cfgs["D"]]

    @property
    def pools(self) -> int:
        return VGG16_STAGES - (1 if self.keep_resolution_after else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VGGMultiLabel(nn.Module):
    """VGG16-BN features -> flatten -> Linear/BN/LeakyReLU/Dropout -> Linear (logits)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not 0 <= config.keep_resolution_after < VGG16_STAGES:
            raise ValueError("keep_resolution_after must be 0 (off) or a stage 1-4, "
                             f"got {config.keep_resolution_after}")
        if config.input_size % 2**VGG16_STAGES:
            raise ValueError(f"input_size must be a multiple of 32, got {config.input_size}")
        self.config = config
        channels = config.channels()
        self.features = make_layers(channels, batch_norm=True)
        if config.keep_resolution_after:
            pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
            self.features[pools[config.keep_resolution_after - 1]] = nn.Identity()
        spatial = config.input_size // 2**config.pools
        flat = int(channels[-2]) * spatial * spatial
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_labels),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: N x 3 x S x S floats in [0, 1]. Returns N x L logits."""
        return self.head(self.features(images - self.mean))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The head's hidden layer (after BN + LeakyReLU): an N x hidden image descriptor
        that other models (the cross-modal hashing ImgNet) build on."""
        return self.head[:4](self.features(images - self.mean))

    def forward_with_embedding(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, hidden descriptors) from one pass: ``forward`` and ``embed`` at once."""
        hidden = self.embed(images)
        return self.head[4:](hidden), hidden


def create_model(config: ModelConfig, imagenet_weights: str | Path | None = None) -> VGGMultiLabel:
    """Build the network; optionally copy ImageNet VGG16-BN conv weights from a local file."""
    model = VGGMultiLabel(config)
    if imagenet_weights is not None:
        load_imagenet_features(model, imagenet_weights)
    return model


def load_imagenet_features(model: VGGMultiLabel, path: str | Path) -> int:
    """Copy ``features.*`` tensors of a torchvision vgg16_bn state dict; returns how many."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    own = model.state_dict()
    copied = {k: v for k, v in state.items() if k.startswith("features.") and k in own
              and own[k].shape == v.shape and v.is_floating_point()}
    if not copied:
        raise ValueError(
            f"{path} has no vgg16_bn feature weights matching width={model.config.width}; "
            "ImageNet weights need width=1.0"
        )
    model.load_state_dict(copied, strict=False)
    return len(copied)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
