"""Training of one VGG16-BN multi-label network, as the paper does it.

Adam (lr 1e-4), the three losses combined by weights, augmentation on every batch,
learning rate x0.1 when validation F2 stops improving, early stop after ``patience``
epochs without improvement, the best checkpoint kept by validation F2. A resumable
checkpoint (model, optimizer, scheduler, epoch, history) is written after every epoch.
Shaped like torchvision's ``references/classification/train.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from classifier.augment import augment_batch
from classifier.inference import autocast, predict_batches, to_tensor
from classifier.losses import LossWeights, combined_loss
from classifier.metrics import f2_score
from classifier.model import ModelConfig, VGGMultiLabel, create_model
from classifier.store import read_network_file
from classifier.thresholds import apply_thresholds, fit_thresholds


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    patience: int = 3
    lr_patience: int = 1
    loss: LossWeights = field(default_factory=LossWeights)
    augment: bool = True
    warp: bool = True  # free rotation + elastic warp on top of the dihedral transforms
    seed: int = 0
    amp: bool = False
    imagenet_weights: str | None = None
    init_from: str | None = None
    schedule: str = "plateau"
    run_seed: int | None = None

    @property
    def generator_seed(self) -> int:
        """Seeds initialisation, batch order and augmentation; the split keeps ``seed``,
        so ensemble members differ in everything but the data they may see."""
        return self.seed if self.run_seed is None else self.run_seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_one_epoch(model: VGGMultiLabel, optimizer: torch.optim.Optimizer, images: np.ndarray,
                    targets: np.ndarray, config: TrainConfig, device: torch.device,
                    scaler: torch.amp.GradScaler, generator: torch.Generator, desc: str) -> float:
    model.train()
    order = torch.randperm(len(images), generator=generator).numpy()
    total, seen = 0.0, 0
    bar = tqdm(range(0, len(order), config.batch_size), desc=desc, unit="batch", leave=False)
    for start in bar:
        idx = np.sort(order[start:start + config.batch_size])
        if len(idx) < 2:
            continue
        batch = to_tensor(images[idx], device)
        if config.augment:
            batch = augment_batch(batch, generator if device.type == "cpu" else None,
                                  warp=config.warp)
            batch = batch.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(targets[idx]).to(device)
        with autocast(device, config.amp):
            logits = model(batch)
        loss = combined_loss(logits, y, config.loss)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1)


def evaluate(model: VGGMultiLabel, images: np.ndarray, targets: np.ndarray,
             device: torch.device, amp: bool = False) -> dict[str, float]:
    """Validation loss, F2 at 0.2 and F2 with tuned thresholds (no TTA, for speed)."""
    probs = predict_batches(model, images, device, amp=amp)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = float(F.binary_cross_entropy(torch.from_numpy(clipped), torch.from_numpy(targets)))
    thresholds = fit_thresholds(targets, probs, sweeps=1)
    return {"val_loss": loss,
            "val_f2_at_0.2": f2_score(targets, probs > 0.2),
            "val_f2": f2_score(targets, apply_thresholds(probs, thresholds))}


def _load_initial_weights(model: VGGMultiLabel, path: Path) -> None:
    """Start from an earlier model's network (continued training: the optimizer and the
    schedule start afresh). The architectures must match, except that a network with
    ``keep_resolution_after`` may start from one without it (see ``adapt_head``)."""
    if not path.exists():
        raise FileNotFoundError(f"--init-from: {path} does not exist")
    config, state = read_network_file(path)
    ours = model.config.to_dict()
    theirs = {**config, "keep_resolution_after": config.get("keep_resolution_after", 0)}
    if {**theirs, "keep_resolution_after": 0} != {**ours, "keep_resolution_after": 0}:
        raise ValueError(f"--init-from: {path} is a {config} network, "
                         f"this run trains {ours}")
    if theirs != ours:
        state = adapt_head(state, model)
    model.load_state_dict(state)
    print(f"initialised from {path}")


def adapt_head(state: dict[str, torch.Tensor], model: VGGMultiLabel) -> dict[str, torch.Tensor]:
    """Fit a trained network's head to ``model``, whose last feature map has k times as
    many positions: each input weight is spread over its channel's k positions and divided
    by k, so the new head starts as "average the map, then the old head"."""
    key = "head.1.weight"
    old, new = state[key], model.state_dict()[key]
    k = new.shape[1] // old.shape[1]
    if k * old.shape[1] != new.shape[1]:
        raise ValueError(f"cannot spread a head of {old.shape[1]} inputs over {new.shape[1]}")
    return {**state, key: old.repeat_interleave(k, dim=1) / k}


Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Scheduler:
    """The paper's x0.1 on plateau, or a cosine decay over ``epochs`` (to 1% of the
    start): a short restart from a trained network that ends annealed, the way
    snapshot ensembles make their members."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(config.epochs, 1), eta_min=config.lr * 0.01)
    if config.schedule != "plateau":
        raise ValueError(f"unknown schedule {config.schedule!r} (plateau or cosine)")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.1, patience=config.lr_patience)


def train_network(name: str, model_config: ModelConfig, config: TrainConfig,
                  train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                  checkpoint_dir: Path, device: torch.device,
                  max_epochs_this_run: int | None = None,
                  on_epoch: Callable[[str, list[dict[str, float]]], None] | None = None,
                  init_name: str | None = None,
                  ) -> tuple[VGGMultiLabel, list[dict[str, float]], bool]:
    """Train (or resume) one network; returns the best model by validation F2, the log and
    whether training has finished (False when ``max_epochs_this_run`` paused it).

    ``init_name`` is the network file of ``config.init_from`` to start from (default:
    ``name``). With ``config.epochs == 0`` that starting network is kept unchanged."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last_path = checkpoint_dir / f"{name}_last.pt"
    best_path = checkpoint_dir / f"{name}_best.pt"
    torch.manual_seed(config.generator_seed)
    generator = torch.Generator().manual_seed(config.generator_seed)
    resumed = last_path.exists()
    state = torch.load(last_path, map_location=device, weights_only=False) if resumed else {}
    if "model_config" in state:  # a member may have its own architecture
        model_config = ModelConfig(**state["model_config"])
    model = create_model(model_config, config.imagenet_weights)
    if config.init_from and not last_path.exists():
        _load_initial_weights(model, Path(config.init_from) / f"{init_name or name}.pt")
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    history: list[dict[str, float]] = []
    best, stale, epoch, finished = -1.0, 0, 0, False
    if resumed:
        model.load_state_dict(state["model"])
        if not state["finished"]:  # a finished network (maybe another schedule) just loads
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        history, best, stale = state["history"], state["best"], state["stale"]
        epoch, finished = state["epoch"], state["finished"]
        print(f"[{name}] resumed after epoch {epoch} (best val F2 {best:.4f})")

    def save_last() -> None:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                    "history": history, "best": best, "stale": stale, "epoch": epoch,
                    "finished": finished, "train_config": config.to_dict(),
                    "model_config": model_config.to_dict()}, last_path)

    ran = 0
    while not finished and epoch < config.epochs:
        if max_epochs_this_run is not None and ran >= max_epochs_this_run:
            break
        started = time.time()
        loss = train_one_epoch(model, optimizer, train[0], train[1], config, device, scaler,
                               generator, f"{name} epoch {epoch + 1}/{config.epochs}")
        row = {"epoch": epoch + 1, "train_loss": loss,
               **evaluate(model, val[0], val[1], device, config.amp),
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
        history.append(row)
        epoch += 1
        ran += 1
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(row["val_f2"])
        else:
            scheduler.step()
        if row["val_f2"] > best:
            best, stale = row["val_f2"], 0
            torch.save({"config": model_config.to_dict(), "state_dict": model.state_dict(),
                        "epoch": epoch, "val_f2": best}, best_path)
        else:
            stale += 1
        finished = stale >= config.patience or epoch >= config.epochs
        print(f"[{name}] epoch {epoch}: loss {loss:.4f} val_loss {row['val_loss']:.4f} "
              f"val F2 {row['val_f2']:.4f} (@0.2 {row['val_f2_at_0.2']:.4f}) "
              f"lr {row['lr']:.0e} {row['seconds']:.0f}s" + ("  *best*" if stale == 0 else ""),
              flush=True)
        save_last()
        if on_epoch is not None:
            on_epoch(name, history)
    if not resumed and config.epochs == 0 and config.init_from:
        # zero epochs of continued training: the starting network joins as it is
        finished = True
        torch.save({"config": model_config.to_dict(), "state_dict": model.state_dict(),
                    "epoch": 0, "val_f2": None}, best_path)
        save_last()
    if best_path.exists():
        state = torch.load(best_path, map_location=device, weights_only=True)
        model.load_state_dict(state["state_dict"])
    model.eval()
    return model, history, finished
