"""The networks of self-supervised adversarial hashing (METHOD.md section 3).

Every modality network maps its input to a semantic feature F (dimension s) and to K
continuous hash outputs H in (-1, 1); codes are B = sign(H).

- LabNet: label vector -> F^l, H^l, and the labels reconstructed from F^l.
- ImgNet: image descriptor (a VGG backbone's hidden layer, see features.py) -> F^v, H^v.
- TxtNet: text vector (bag of words or sentence embedding) -> F^t, H^t.
- Discriminator: a semantic feature -> logit of "came from LabNet".
"""

from __future__ import annotations

import torch
from torch import nn


class HashNet(nn.Module):
    """input -> hidden -> semantic feature F (tanh) -> hash layer H (tanh)."""

    def __init__(self, in_dim: int, bits: int, semantic: int = 128, hidden: int = 1024,
                 dropout: float = 0.2, labels: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, semantic), nn.Tanh())
        self.hash = nn.Linear(semantic, bits)
        self.classify = nn.Linear(semantic, labels) if labels else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, torch.tanh(self.hash(features))

    def reconstruct(self, features: torch.Tensor) -> torch.Tensor:
        """Label logits from semantic features (LabNet's label-reconstruction head)."""
        assert self.classify is not None
        return self.classify(features)


def lab_net(labels: int, bits: int, semantic: int = 128) -> HashNet:
    return HashNet(labels, bits, semantic, hidden=512, dropout=0.0, labels=labels)


def img_net(in_dim: int, bits: int, semantic: int = 128) -> HashNet:
    return HashNet(in_dim, bits, semantic, hidden=1024, dropout=0.3)


def txt_net(in_dim: int, bits: int, semantic: int = 128) -> HashNet:
    return HashNet(in_dim, bits, semantic, hidden=1024, dropout=0.3)


class Discriminator(nn.Module):
    def __init__(self, semantic: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(semantic, hidden), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)
