"""Alternating training of the hashing networks: SSAH (the method) and DCMH (baseline).

SSAH, one epoch: LabNet -> ImgNet -> TxtNet -> discriminators -> B = sign(H^v+H^t+H^l).
The modality networks learn against LabNet's features and codes of the whole training
set (kept in memory and refreshed after each LabNet step): the label network "teaches"
them. DCMH is the same code without LabNet and without discriminators: ImgNet and TxtNet
learn against each other's outputs, with DCMH's bit-balance term, B = sign(H^v + H^t).

``HashTraining`` holds one run; each step of the epoch is one method (``labnet_epoch``,
``modality_epoch``, ``discriminator_epoch``, together ``train_one_epoch``), and its
``state_dict`` is the resumable checkpoint that ``train_hashing`` writes after every epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from retrieval import losses
from retrieval.codes import signs
from retrieval.networks import (
    Discriminator,
    HashConfig,
    HashModel,
    HashNet,
    img_net,
    lab_net,
    txt_net,
)

METHODS = ("ssah", "dcmh")


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


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class HashTraining:
    """One run's networks, optimizers and shared state (the current outputs of every
    network on the whole training set, and the codes B), advanced one epoch at a time
    by ``train_one_epoch``; ``state_dict`` / ``load_state_dict`` make it resumable."""

    def __init__(self, image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray,
                 config: HashConfig) -> None:
        if config.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        torch.manual_seed(config.seed)
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.xv, self.xt, self.lab = _tensor(image_x), _tensor(text_x), _tensor(labels)
        self.n, bits, s_dim = len(self.lab), config.bits, config.semantic
        self.ssah = config.method == "ssah"
        self.imgnet = img_net(self.xv.shape[1], bits, s_dim)
        self.txtnet = txt_net(self.xt.shape[1], bits, s_dim)
        self.opt_v = torch.optim.Adam(self.imgnet.parameters(), lr=config.lr)
        self.opt_t = torch.optim.Adam(self.txtnet.parameters(), lr=config.lr)
        self.labnet: HashNet | None = None
        if self.ssah:
            self.labnet = lab_net(self.lab.shape[1], bits, s_dim)
            self.disc_v, self.disc_t = Discriminator(s_dim), Discriminator(s_dim)
            self.opt_l = torch.optim.Adam(self.labnet.parameters(), lr=config.lr)
            self.opt_d = torch.optim.Adam(
                [*self.disc_v.parameters(), *self.disc_t.parameters()],
                lr=config.lr_discriminator)
        self.hv = _outputs(self.imgnet, self.xv)[1]
        self.ht = _outputs(self.txtnet, self.xt)[1]
        self.fl, self.hl = _outputs(self.labnet, self.lab) if self.ssah else (None, None)
        self.codes = self.shared_codes()
        self.history: list[dict[str, float]] = []

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return len(self.history)

    def shared_codes(self) -> torch.Tensor:
        """B = sign(H^v + H^t + H^l) (SSAH) or sign(H^v + H^t) (DCMH)."""
        return signs(self.hv + self.ht + (self.hl if self.ssah else 0))

    def labnet_epoch(self) -> float:
        """SSAH step 1: LabNet on pairs of labels among themselves, the codes and the
        label reconstruction; then its features F^l and outputs H^l of every item."""
        config, labnet, lab = self.config, self.labnet, self.lab
        labnet.train()
        total = 0.0
        for idx in _batches(self.n, config.batch_size, self.rng):
            f, h = labnet(lab[idx])
            s = losses.similarity(lab[idx], lab[idx])
            loss = (losses.pairwise_nll(f, f, s) + losses.pairwise_nll(h, h, s)
                    + config.quantization * losses.quantization(h, self.codes[idx])
                    + config.reconstruction * losses.label_reconstruction(
                        labnet.reconstruct(f), lab[idx]))
            self.opt_l.zero_grad()
            loss.backward()
            self.opt_l.step()
            total += loss.item()
        self.fl, self.hl = _outputs(labnet, lab)
        return total

    def modality_epoch(self, side: str) -> float:
        """Steps 2 and 3: ImgNet (``side`` 'image') or TxtNet ('text'), taught by LabNet's
        current F^l and H^l and pushed towards them by the discriminator (SSAH), or
        taught by the other modality's current H (DCMH); then its H of every item."""
        config, rng, lab, image = self.config, self.rng, self.lab, side == "image"
        net, x, opt = ((self.imgnet, self.xv, self.opt_v) if image
                       else (self.txtnet, self.xt, self.opt_t))
        other_h = self.ht if image else self.hv
        disc = (self.disc_v if image else self.disc_t) if self.ssah else None
        net.train()
        total = 0.0
        for idx in _batches(self.n, config.batch_size, rng):
            inputs = x[idx]
            if not image and config.word_dropout > 0:
                inputs = drop_words(inputs, config.word_dropout, rng)
            f, h = net(inputs)
            # The other side of the pairs: every item, or a random sample of anchors on
            # large sets (an unbiased estimate of the same mean, batch x anchors).
            anchors = (torch.from_numpy(rng.choice(self.n, config.anchors, replace=False))
                       if 0 < config.anchors < self.n else slice(None))
            s = losses.similarity(lab[idx], lab[anchors])
            if self.ssah:
                loss = (losses.pairwise_nll(f, self.fl[anchors], s)
                        + losses.pairwise_nll(h, self.hl[anchors], s)
                        + config.quantization * losses.quantization(h, self.codes[idx])
                        + config.adversarial * losses.adversarial(disc(f), True))
            else:
                loss = (losses.pairwise_nll(h, other_h[anchors], s)
                        + config.quantization * losses.quantization(h, self.codes[idx])
                        + config.balance * losses.balance(h))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        fresh = _outputs(net, x)[1]
        if image:
            self.hv = fresh
        else:
            self.ht = fresh
        return total

    def discriminator_epoch(self) -> float:
        """SSAH step 4: the discriminators learn LabNet's features as "real" and the
        modality networks' as "fake"."""
        fv, ft = _outputs(self.imgnet, self.xv)[0], _outputs(self.txtnet, self.xt)[0]
        fl, disc_v, disc_t = self.fl, self.disc_v, self.disc_t
        disc_v.train()
        disc_t.train()
        total = 0.0
        for idx in _batches(self.n, self.config.batch_size, self.rng):
            loss = (losses.adversarial(disc_v(fl[idx]), True)
                    + losses.adversarial(disc_v(fv[idx]), False)
                    + losses.adversarial(disc_t(fl[idx]), True)
                    + losses.adversarial(disc_t(ft[idx]), False))
            self.opt_d.zero_grad()
            loss.backward()
            self.opt_d.step()
            total += loss.item()
        return total

    def train_one_epoch(self) -> dict[str, float]:
        """LabNet -> ImgNet -> TxtNet -> discriminators (SSAH; DCMH: ImgNet -> TxtNet),
        then the shared codes; returns the epoch's summed losses per network."""
        log: dict[str, float] = {"epoch": self.epoch + 1}
        if self.ssah:
            log["labnet"] = self.labnet_epoch()
        log["imgnet"] = self.modality_epoch("image")
        log["txtnet"] = self.modality_epoch("text")
        if self.ssah:
            log["discriminators"] = self.discriminator_epoch()
        self.codes = self.shared_codes()
        self.history.append(log)
        return log

    def _parts(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        parts: dict[str, nn.Module | torch.optim.Optimizer] = {
            "imgnet": self.imgnet, "txtnet": self.txtnet, "opt_v": self.opt_v,
            "opt_t": self.opt_t}
        if self.ssah:
            parts.update(labnet=self.labnet, disc_v=self.disc_v, disc_t=self.disc_t,
                         opt_l=self.opt_l, opt_d=self.opt_d)
        return parts

    def state_dict(self) -> dict[str, Any]:
        """Everything the next epoch depends on, random number generators included, so
        that a resumed run continues exactly as the uninterrupted one would."""
        return {"config": self.config.to_dict(), "history": self.history,
                "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "outputs": {"hv": self.hv, "ht": self.ht, "fl": self.fl, "hl": self.hl,
                            "codes": self.codes},
                **{name: part.state_dict() for name, part in self._parts().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config.to_dict():
            raise ValueError(f"the checkpoint was made with {state['config']}, this run "
                             f"has {self.config.to_dict()}")
        for name, part in self._parts().items():
            part.load_state_dict(state[name])
        outputs = state["outputs"]
        self.hv, self.ht, self.fl, self.hl = (outputs[k] for k in ("hv", "ht", "fl", "hl"))
        self.codes = outputs["codes"]
        self.history = state["history"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    def model(self) -> HashModel:
        for net in (self.imgnet, self.txtnet, self.labnet):
            if net is not None:
                net.eval()
        return HashModel(self.config, self.imgnet, self.txtnet, self.labnet, self.history)


def train_hashing(image_x: np.ndarray, text_x: np.ndarray, labels: np.ndarray,
                  config: HashConfig, progress: bool = True,
                  on_epoch: Callable[[dict[str, float]], None] | None = None,
                  checkpoint: Path | None = None,
                  max_epochs_this_run: int | None = None) -> HashModel:
    """Train on N aligned items: image descriptors, text vectors, label vectors.

    With ``checkpoint``, the run's state is written there after every epoch and a run
    that finds one continues from it; ``max_epochs_this_run`` pauses after that many
    epochs (``HashModel.finished`` then says False)."""
    training = HashTraining(image_x, text_x, labels, config)
    if checkpoint is not None and checkpoint.exists():
        training.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    ran = 0
    with tqdm(total=config.epochs, initial=training.epoch, disable=not progress, unit="epoch",
              desc=f"{config.method} {config.bits} bits") as bar:
        while training.epoch < config.epochs:
            if max_epochs_this_run is not None and ran >= max_epochs_this_run:
                break
            log = training.train_one_epoch()
            ran += 1
            if checkpoint is not None:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                partial = checkpoint.with_suffix(".partial")
                torch.save(training.state_dict(), partial)
                partial.replace(checkpoint)
            bar.update()
            if on_epoch:
                on_epoch(log)
    return training.model()
