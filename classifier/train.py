"""``python -m classifier train``: one multi-label network, as the paper trains it: the
paper's VGG16-BN (``--arch vgg16_bn``, the default) or the ImageNet-pretrained
EfficientNet-Lite0 (``--arch efficientnet_lite0 --pretrained --input-size 96``), which
fine-tunes on chips upsampled inside the network.

Adam (lr 1e-4), the three losses combined by weights, augmentation on every batch,
learning rate x0.1 when validation F2 stops improving, early stop after ``patience``
epochs without improvement, the best checkpoint kept by validation F2. A resumable
checkpoint (model, optimizer, scheduler, epoch, history) is written after every epoch:
the same command continues an interrupted run. Shaped like torchvision's
``references/classification/train.py`` (``get_args_parser``, ``main``,
``train_one_epoch``, ``evaluate``).

One run writes into ``--out``: ``<name>.pt`` (the best network, fp32), ``<name>.json``
(its labels, split, configs and exact command), ``train_log_<name>.csv``,
``learning_curves_<name>.png``, ``checkpoints/`` and the split (``train.csv``,
``val.csv``, ``test.csv``; 80/10/10 by ``--seed``), which every network of one model
shares. ``python -m classifier assemble`` then makes a model from networks.
"""

from __future__ import annotations

import argparse
import csv
import sys
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
from classifier.dehaze import DehazeParams, dehaze
from classifier.inference import autocast, predict_batches, to_tensor
from classifier.losses import LossWeights, combined_loss
from classifier.metrics import f2_score
from classifier.model import (
    ARCHITECTURES,
    ModelConfig,
    MultiLabelNetwork,
    VGGMultiLabel,
    create_model,
    pretrained_weights_file,
    resolve_device,
)
from classifier.store import (
    NETWORKS,
    NetworkInfo,
    member_name,
    read_network_file,
    save_network,
)
from classifier.thresholds import apply_thresholds, fit_thresholds
from imagery import plots
from imagery.datasets import load_images, read_labels, split_indices, write_labels
from imagery.digests import file_sha256
from imagery.model_dirs import provenance


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
    pretrained: bool = False  # the ImageNet weights the architecture's package ships
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


@dataclass
class TrainingHooks:
    """What a caller that runs training for someone else (the web app's training jobs)
    hears while it runs. ``on_batch(done, total)`` is called after every batch and
    ``on_epoch(name, history)`` after every epoch's checkpoint; either may raise to stop
    the run (the checkpoint of the last finished epoch stays, and the same command
    resumes from it)."""

    on_batch: Callable[[int, int], None] | None = None
    on_epoch: Callable[[str, list[dict[str, float]]], None] | None = None


def train_one_epoch(model: MultiLabelNetwork, optimizer: torch.optim.Optimizer, images: np.ndarray,
                    targets: np.ndarray, config: TrainConfig, device: torch.device,
                    scaler: torch.amp.GradScaler, generator: torch.Generator, desc: str,
                    on_batch: Callable[[int, int], None] | None = None) -> float:
    model.train()
    order = torch.randperm(len(images), generator=generator).numpy()
    total, seen = 0.0, 0
    bar = tqdm(range(0, len(order), config.batch_size), desc=desc, unit="batch", leave=False)
    for step, start in enumerate(bar):
        if on_batch is not None:
            on_batch(step, len(bar))
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


def evaluate(model: MultiLabelNetwork, images: np.ndarray, targets: np.ndarray,
             device: torch.device, amp: bool = False) -> dict[str, float]:
    """Validation loss, F2 at 0.2 and F2 with tuned thresholds (no TTA, for speed)."""
    probs = predict_batches(model, images, device, amp=amp)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = float(F.binary_cross_entropy(torch.from_numpy(clipped), torch.from_numpy(targets)))
    thresholds = fit_thresholds(targets, probs, sweeps=1)
    return {"val_loss": loss,
            "val_f2_at_0.2": f2_score(targets, probs > 0.2),
            "val_f2": f2_score(targets, apply_thresholds(probs, thresholds))}


def _load_initial_weights(model: MultiLabelNetwork, path: Path,
                          labels: list[str] | None = None) -> None:
    """Start from an earlier network file (continued training: the optimizer and the
    schedule start afresh). The architectures must match, except that a network with
    ``keep_resolution_after`` may start from one without it (see ``adapt_head``).
    ``labels`` (fine-tuning): this run's labels, matched to the file's by name
    (``map_label_rows``), so the head may grow, shrink or reorder."""
    if not path.is_file():
        raise FileNotFoundError(f"--init-from: {path} is no network file")
    config, state = read_network_file(path)
    if labels is not None:
        state = map_label_rows(state, model, NetworkInfo.read(path).labels, labels)
        config = {**config, "num_labels": len(labels)}
    ours = model.config.to_dict()
    theirs = {**config, "keep_resolution_after": config.get("keep_resolution_after", 0)}
    if {**theirs, "keep_resolution_after": 0} != {**ours, "keep_resolution_after": 0}:
        raise ValueError(f"--init-from: {path} is a {config} network, "
                         f"this run trains {ours}")
    if theirs != ours:
        state = adapt_head(state, model)
    model.load_state_dict(state)
    print(f"initialised from {path}")


def map_label_rows(state: dict[str, torch.Tensor], model: MultiLabelNetwork,
                   theirs: list[str], ours: list[str]) -> dict[str, torch.Tensor]:
    """The trained output layer's rows for this run's labels, by name: a label both
    know keeps its trained row; a new label starts as the fresh model starts it (so the
    head grows for labels the trained network never saw); a label only they know is
    dropped. Everything before the output layer is taken as trained."""
    fresh = model.state_dict()
    layer = model.output_layer
    index = {name: i for i, name in enumerate(theirs)}
    mapped = dict(state)
    for key in (f"{layer}.weight", f"{layer}.bias"):
        rows = fresh[key].clone()
        for j, name in enumerate(ours):
            if name in index:
                rows[j] = state[key][index[name]]
        mapped[key] = rows
    return mapped


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
                  on_batch: Callable[[int, int], None] | None = None,
                  init_labels: list[str] | None = None,
                  ) -> tuple[MultiLabelNetwork, list[dict[str, float]], bool]:
    """Train (or resume) one network; returns the best model by validation F2, the log and
    whether training has finished (False when ``max_epochs_this_run`` paused it).
    ``config.init_from``: a network file to start from (``init_labels``: this run's
    labels, matched to that network's by name)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last_path = checkpoint_dir / f"{name}_last.pt"
    best_path = checkpoint_dir / f"{name}_best.pt"
    torch.manual_seed(config.generator_seed)
    generator = torch.Generator().manual_seed(config.generator_seed)
    resumed = last_path.exists()
    state = torch.load(last_path, map_location=device, weights_only=False) if resumed else {}
    if "model_config" in state:  # the architecture the run started with
        model_config = ModelConfig(**state["model_config"])
    model = create_model(model_config, config.imagenet_weights or config.pretrained or None)
    if config.init_from and not last_path.exists():
        _load_initial_weights(model, Path(config.init_from), init_labels)
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
                               generator, f"{name} epoch {epoch + 1}/{config.epochs}",
                               on_batch)
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
    if best_path.exists():
        state = torch.load(best_path, map_location=device, weights_only=True)
        model.load_state_dict(state["state_dict"])
    model.eval()
    return model, history, finished


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", required=True, help="Planet-format CSV: image_name,tags")
    parser.add_argument("--images", required=True, help="folder or .tar with <image_name>.jpg")
    parser.add_argument("--out", required=True,
                        help="run folder: the network file, its log and the split")
    parser.add_argument("--network", choices=NETWORKS, default="original",
                        help="train on the original chips or on their dehazed copies")
    parser.add_argument("--member", type=int, default=0,
                        help="ensemble member K > 0 of --network: saved as <network>-K, and "
                             "its initialisation, batch order and augmentation are seeded "
                             "with --seed + K (the split stays that of --seed)")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="vgg16_bn",
                        help="network architecture (vgg16_bn: the paper's)")
    parser.add_argument("--pretrained", action="store_true",
                        help="start from the ImageNet weights the architecture's package "
                             "ships (efficientnet_lite0; nothing is downloaded)")
    parser.add_argument("--size", type=int, default=32,
                        help="image size the chips are resized to (for VGG also the network "
                             "input: a multiple of 32)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="side the network upsamples the chips to (efficientnet_lite0; "
                             "default: --size)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--patience", type=int, default=3,
                        help="stop after this many epochs without a better validation F2")
    parser.add_argument("--lr-patience", type=int, default=1,
                        help="divide the learning rate by 10 after this many epochs without "
                             "a better validation F2 (--schedule plateau)")
    parser.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                        help="learning rate x0.1 on a validation plateau (the paper) or a "
                             "cosine decay over --epochs (short restarts for ensemble members)")
    parser.add_argument("--width", type=float, default=0.5,
                        help="channel multiplier of VGG16 (1.0 = the full network)")
    parser.add_argument("--hidden", type=int, default=512, help="units in the fully connected head")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--keep-resolution-after", type=int, default=0, metavar="STAGE",
                        help="skip the max-pool after this VGG stage (1-4; 0: none), so the "
                             "later stages see larger maps (4: the last stage sees 4x4 at 32px)")
    parser.add_argument("--loss-bce", type=float, default=1.0, help="weight of the log loss")
    parser.add_argument("--loss-f2", type=float, default=0.5, help="weight of the soft F2 loss")
    parser.add_argument("--loss-focal", type=float, default=1.0,
                        help="weight of the focal (hard example) loss")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--no-warp", action="store_true",
                        help="augment with the 8 flips/rotations only, no free rotation or "
                             "elastic warp (what test-time augmentation shows the network)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--init-from", default=None, metavar="NETWORK.pt",
                        help="start from this network file (continued training with a fresh "
                             "optimizer and schedule; trained on the same split)")
    parser.add_argument("--vocabulary", default=None, metavar="LABEL,LABEL,...",
                        help="the labels to learn, in this order (default: every tag of "
                             "--labels, sorted); other tags are ignored")
    parser.add_argument("--fine-tune", action="store_true",
                        help="with --init-from: the network was trained on other images or "
                             "labels; its output rows are matched to this run's labels by "
                             "name (new labels start fresh) and its split is not checked "
                             "against this run's (the caller keeps its held-out images out)")
    parser.add_argument("--imagenet-weights", default=None,
                        help="local ImageNet state dict: torchvision vgg16_bn (width 1.0 only) "
                             "or EfficientNet-Lite0")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                        help="mixed precision (auto: on for CUDA, off on CPU)")
    parser.add_argument("--seed", type=int, default=0, help="the split (and member 0's seed)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--max-epochs-this-run", type=int, default=None,
                        help="stop after this many epochs (resume later with the same command)")
    return parser


def _write_split(out: Path, split: dict[str, list[str]], tags: dict[str, list[str]]) -> None:
    """The run's split as Planet CSVs; a folder holding another split is refused, since
    every network of a model must validate on the same images."""
    for part, names in split.items():
        path = out / f"{part}.csv"
        if path.exists() and _split_names(path) != names:
            raise SystemExit(f"{path} holds another split (other --labels, --seed or "
                             "fractions): use another --out")
        write_labels(path, names, [tags[name] for name in names])


def _split_names(path: Path) -> list[str]:
    """The names a split CSV holds; none for a header only (an empty part)."""
    try:
        return read_labels(path).names
    except ValueError:
        return []


def check_unseen(init_from: Path, held_out: set[str]) -> None:
    """A network continued from another must not validate or test on images the starting
    network trained on: every held-out image must be in that network's own val/test."""
    info = NetworkInfo.read(init_from)
    unseen = set(info.split_names("val")) | set(info.split_names("test"))
    leaked = held_out - unseen
    if leaked:
        raise SystemExit(f"--init-from {init_from}: {len(leaked)} of this run's validation/test "
                         f"images (e.g. {sorted(leaked)[0]}) were training images of that "
                         "network; use the same data and --seed as it was trained with")


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    if history:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)


def check_architecture_args(args: argparse.Namespace) -> None:
    """Options that only one architecture understands are refused for the other."""
    if args.arch == "vgg16_bn":
        if args.input_size not in (None, args.size):
            raise SystemExit("--input-size: the VGG computes at the chip size; use --size")
        if args.pretrained:
            raise SystemExit("--pretrained: no vgg16_bn ImageNet weights come with a package; "
                             "give a local file with --imagenet-weights (width 1.0)")
    elif args.keep_resolution_after:
        raise SystemExit(f"--keep-resolution-after shapes the VGG only, not {args.arch}")
    if args.pretrained and args.imagenet_weights:
        raise SystemExit("--pretrained or --imagenet-weights, not both")


def pretrained_record(config: ModelConfig, args: argparse.Namespace) -> dict[str, str] | None:
    """Which ImageNet weights the network started from: file name and sha256."""
    path = pretrained_weights_file(config, args.imagenet_weights or args.pretrained or None)
    if path is None:
        return None
    return {"file": path.name, "sha256": file_sha256(path)}


TrainingSet = Callable[[str, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def main(args: argparse.Namespace, make_training_set: TrainingSet | None = None,
         hooks: TrainingHooks | None = None) -> Path | None:
    """Train one network; returns its file, or None when ``--max-epochs-this-run``
    paused the run (the same command resumes it). ``make_training_set(kind, decoded,
    inputs, targets)`` may replace the training images and targets (research runs such
    as ``experiments/distill.py``); ``hooks`` hear every batch and epoch."""
    hooks = hooks or TrainingHooks()
    started = time.time()
    if args.member < 0:
        raise SystemExit("--member must be 0 or more")
    if args.epochs < 1:
        raise SystemExit("--epochs must be at least 1 (assemble takes trained networks as "
                         "they are)")
    check_architecture_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = device.type == "cuda" if args.amp == "auto" else args.amp == "on"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = member_name(args.network, args.member)

    table = read_labels(args.labels)
    labels = args.vocabulary.split(",") if args.vocabulary else table.vocabulary()
    data = load_images(table, args.images, args.size, labels)
    if data.errors:
        print(f"{len(data.errors)} images skipped, e.g. {next(iter(data.errors.items()))}")
    if len(data.names) < 10:
        raise SystemExit(f"only {len(data.names)} readable images; need at least 10")
    parts = split_indices(len(data.names), [args.val_fraction, args.test_fraction], args.seed)
    split = {part: [data.names[i] for i in idx] for part, idx in zip(("train", "val", "test"),
                                                                     parts)}
    _write_split(out, split, {n: [labels[j] for j in np.flatnonzero(data.targets[i])]
                              for i, n in enumerate(data.names)})
    if args.fine_tune and not args.init_from:
        raise SystemExit("--fine-tune needs --init-from (the network to start from)")
    if args.init_from and not args.fine_tune:
        check_unseen(Path(args.init_from), set(split["val"]) | set(split["test"]))
    train_idx, val_idx, _ = parts
    print(f"[{name}] {len(labels)} labels; {len(train_idx)} train / {len(val_idx)} val images "
          f"of {args.size}px on {device}")
    images = data.images
    if args.network == "dehazed":
        params = DehazeParams()
        images = np.stack([dehaze(img, params)
                           for img in tqdm(images, desc="dehaze", unit="img")])

    model_config = ModelConfig(num_labels=len(labels), input_size=args.input_size or args.size,
                               width=args.width, hidden=args.hidden, dropout=args.dropout,
                               keep_resolution_after=args.keep_resolution_after, arch=args.arch)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        lr_patience=args.lr_patience, init_from=args.init_from,
        loss=LossWeights(args.loss_bce, args.loss_f2, args.loss_focal),
        augment=not args.no_augment, warp=not args.no_warp, seed=args.seed, amp=amp,
        imagenet_weights=args.imagenet_weights, pretrained=args.pretrained,
        schedule=args.schedule,
        run_seed=args.seed + args.member if args.member else None)

    def write_log(history: list[dict[str, float]]) -> None:
        _write_log(out / f"train_log_{name}.csv", history)
        plots.learning_curves({name: history}, out / f"learning_curves_{name}.png")

    def on_epoch(_name: str, history: list[dict[str, float]]) -> None:
        write_log(history)
        if hooks.on_epoch is not None:
            hooks.on_epoch(name, history)

    y = data.targets
    train_set = (images[train_idx], y[train_idx])
    if make_training_set is not None:
        train_set = make_training_set(args.network, data.images[train_idx], *train_set)
    model, history, finished = train_network(
        name, model_config, config, train_set, (images[val_idx], y[val_idx]),
        out / "checkpoints", device, args.max_epochs_this_run, on_epoch, hooks.on_batch,
        labels if args.fine_tune else None)
    write_log(history)
    if not finished:
        print(f"[{name}] paused; run the same command again to resume")
        return None
    path = out / f"{name}.pt"
    save_network(model, path, "fp32")
    best = max(r["val_f2"] for r in history)  # --epochs >= 1: never empty
    NetworkInfo(
        name=name, kind=args.network, labels=labels, image_size=args.size,
        model=model.config.to_dict(), train_config=config.to_dict(),
        epochs=len(history), best_val_f2_no_tta=best,
        pretrained=pretrained_record(model_config, args),
        split={"seed": args.seed, "val_fraction": args.val_fraction,
               "test_fraction": args.test_fraction, "n_images": {
                   part: len(names) for part, names in split.items()},
               "skipped_images": len(data.errors)},
        provenance={**provenance(getattr(args, "program", "classifier"),
                                 getattr(args, "argv", sys.argv[1:])),
                    "device": str(device), "seconds": round(time.time() - started, 1)},
    ).write(path)
    print(f"[{name}] wrote {path} (best validation F2 {best:.4f} without TTA); make a model: "
          f"python -m classifier assemble {path} [more networks] --images IMAGES --out DIR")
    return path
