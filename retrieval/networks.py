"""The networks of self-supervised adversarial hashing (METHOD.md section 3).

Every modality network maps its input to a semantic feature F (dimension s) and to K
continuous hash outputs H in (-1, 1); codes are B = sign(H).

- LabNet: label vector -> F^l, H^l, and the labels reconstructed from F^l.
- ImgNet: image descriptor (a VGG backbone's hidden layer, see features.py) -> F^v, H^v.
- TxtNet: text vector (bag of words or sentence embedding) -> F^t, H^t.
- Discriminator: a semantic feature -> logit of "came from LabNet".

``HashConfig`` is a training's settings, ``HashModel`` the trained networks that turn
descriptors and text vectors into codes (trained by retrieval.train, stored by
retrieval.store, used by retrieval.retriever).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from retrieval.codes import signs


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


@dataclass
class HashConfig:
    bits: int = 32
    method: str = "ssah"
    semantic: int = 128
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    lr_discriminator: float = 1e-4
    quantization: float = 1.0      # weight of ||H - B||^2
    reconstruction: float = 1.0    # LabNet's ||L_hat - L||^2
    adversarial: float = 0.05      # modality nets fooling the discriminators
    balance: float = 0.1           # DCMH only
    anchors: int = 4096            # other-side items per batch (sampled when N is larger)
    word_dropout: float = 0.0      # TxtNet input words dropped per item (bag of words only)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HashModel:
    """Trained networks; ``labnet`` and the discriminators are None for DCMH."""

    config: HashConfig
    imgnet: HashNet
    txtnet: HashNet
    labnet: HashNet | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @torch.no_grad()
    def codes(self, net: HashNet, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        """{-1, +1} int8 codes, N x bits."""
        net.eval()
        out = [signs(net(torch.from_numpy(x[i:i + batch]).float())[1])
               for i in range(0, len(x), batch)]
        codes = torch.cat(out) if out else torch.zeros(0, self.config.bits)
        return codes.to(torch.int8).numpy()

    def image_codes(self, features: np.ndarray) -> np.ndarray:
        return self.codes(self.imgnet, features)

    def text_codes(self, vectors: np.ndarray) -> np.ndarray:
        return self.codes(self.txtnet, vectors)

    @property
    def finished(self) -> bool:
        """False when ``max_epochs_this_run`` paused the training."""
        return len(self.history) >= self.config.epochs
