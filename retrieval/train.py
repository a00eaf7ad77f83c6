"""Alternating training of the hashing networks: SSAH (the method) and DCMH (baseline).

SSAH, one epoch: LabNet -> ImgNet -> TxtNet -> discriminators -> B = sign(H^v+H^t+H^l).
The modality networks learn against LabNet's features and codes of the whole training
set (kept in memory and refreshed after each LabNet step): the label network "teaches"
them. DCMH is the same code without LabNet and without discriminators: ImgNet and TxtNet
learn against each other's outputs, with DCMH's bit-balance term, B = sign(H^v + H^t).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from retrieval import losses
from retrieval.codes import signs
from retrieval.networks import Discriminator, HashNet, img_net, lab_net, txt_net

METHODS = ("ssah", "dcmh")


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


def _batches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, size):
        idx = order[start:start + size]
        if len(idx) > 1:  # BatchNorm needs two samples
            yield torch.from_numpy(idx)


def drop_words(bags: torch.Tensor, rate: float, rng: np.random.Generator) -> torch.Tensor:
    """Each word of each bag-of-words row dropped with probability ``rate``, keeping at
    least one: the text network then also learns the short queries people type, not
    only whole captions."""
    dropped = bags * torch.from_numpy(rng.random(tuple(bags.shape)) >= rate)
    empty = dropped.sum(dim=1) == 0
    dropped[empty] = bags[empty]
    return dropped


@torch.no_grad()
def _outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    net.eval()
    features, hashes = net(x)
    return features, hashes


def train_hashing(image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray,
                  config: HashConfig, progress: bool = True,
                  on_epoch: Callable[[dict[str, float]], None] | None = None) -> HashModel:
    """Train on N aligned items: image descriptors, text vectors, label vectors."""
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    xv = torch.from_numpy(np.ascontiguousarray(image_x, dtype=np.float32))
    xt = torch.from_numpy(np.ascontiguousarray(text_x, dtype=np.float32))
    lab = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
    n, bits, s_dim = len(lab), config.bits, config.semantic

    imgnet, txtnet = img_net(xv.shape[1], bits, s_dim), txt_net(xt.shape[1], bits, s_dim)
    opt_v = torch.optim.Adam(imgnet.parameters(), lr=config.lr)
    opt_t = torch.optim.Adam(txtnet.parameters(), lr=config.lr)
    ssah = config.method == "ssah"
    if ssah:
        labnet = lab_net(lab.shape[1], bits, s_dim)
        disc_v, disc_t = Discriminator(s_dim), Discriminator(s_dim)
        opt_l = torch.optim.Adam(labnet.parameters(), lr=config.lr)
        opt_d = torch.optim.Adam([*disc_v.parameters(), *disc_t.parameters()],
                                 lr=config.lr_discriminator)
    else:
        labnet = None

    hv = _outputs(imgnet, xv)[1]
    ht = _outputs(txtnet, xt)[1]
    fl, hl = _outputs(labnet, lab) if ssah else (None, None)
    codes = signs(hv + ht + (hl if ssah else 0))
    history: list[dict[str, float]] = []
    for epoch in tqdm(range(1, config.epochs + 1), desc=f"{config.method} {bits} bits",
                      disable=not progress, unit="epoch"):
        log: dict[str, float] = {"epoch": epoch}
        if ssah:
            # 1. LabNet: pairs of labels among themselves, codes, label reconstruction.
            labnet.train()
            total = 0.0
            for idx in _batches(n, config.batch_size, rng):
                f, h = labnet(lab[idx])
                s = losses.similarity(lab[idx], lab[idx])
                loss = (losses.pairwise_nll(f, f, s) + losses.pairwise_nll(h, h, s)
                        + config.quantization * losses.quantization(h, codes[idx])
                        + config.reconstruction * losses.label_reconstruction(
                            labnet.reconstruct(f), lab[idx]))
                opt_l.zero_grad()
                loss.backward()
                opt_l.step()
                total += loss.item()
            log["labnet"] = total
            fl, hl = _outputs(labnet, lab)
        # 2./3. ImgNet and TxtNet, taught by LabNet (SSAH) or by each other (DCMH).
        for name, net, x, opt in (("imgnet", imgnet, xv, opt_v), ("txtnet", txtnet, xt, opt_t)):
            net.train()
            disc = (disc_v if name == "imgnet" else disc_t) if ssah else None
            other_h = (ht if name == "imgnet" else hv)
            total = 0.0
            for idx in _batches(n, config.batch_size, rng):
                inputs = x[idx]
                if name == "txtnet" and config.word_dropout > 0:
                    inputs = drop_words(inputs, config.word_dropout, rng)
                f, h = net(inputs)
                # The other side of the pairs: every item, or a random sample of anchors
                # on large sets (an unbiased estimate of the same mean, batch x anchors).
                anchors = (torch.from_numpy(rng.choice(n, config.anchors, replace=False))
                           if 0 < config.anchors < n else slice(None))
                s = losses.similarity(lab[idx], lab[anchors])
                if ssah:
                    loss = (losses.pairwise_nll(f, fl[anchors], s)
                            + losses.pairwise_nll(h, hl[anchors], s)
                            + config.quantization * losses.quantization(h, codes[idx])
                            + config.adversarial * losses.adversarial(disc(f), True))
                else:
                    loss = (losses.pairwise_nll(h, other_h[anchors], s)
                            + config.quantization * losses.quantization(h, codes[idx])
                            + config.balance * losses.balance(h))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
            log[name] = total
            fresh = _outputs(net, x)[1]
            if name == "imgnet":
                hv = fresh
            else:
                ht = fresh
        if ssah:
            # 4. Discriminators: LabNet's features are "real", the modalities' "fake".
            fv, ft = _outputs(imgnet, xv)[0], _outputs(txtnet, xt)[0]
            disc_v.train()
            disc_t.train()
            total = 0.0
            for idx in _batches(n, config.batch_size, rng):
                loss = (losses.adversarial(disc_v(fl[idx]), True)
                        + losses.adversarial(disc_v(fv[idx]), False)
                        + losses.adversarial(disc_t(fl[idx]), True)
                        + losses.adversarial(disc_t(ft[idx]), False))
                opt_d.zero_grad()
                loss.backward()
                opt_d.step()
                total += loss.item()
            log["discriminators"] = total
        # 5. Shared codes.
        codes = signs(hv + ht + (hl if ssah else 0))
        history.append(log)
        if on_epoch:
            on_epoch(log)
    imgnet.eval()
    txtnet.eval()
    if labnet is not None:
        labnet.eval()
    return HashModel(config, imgnet, txtnet, labnet, history)
