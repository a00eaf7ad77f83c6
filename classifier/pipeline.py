"""``python -m classifier train``: the whole recognition method, end to end.

1. read the labels (vocabulary from the data) and decode the images at ``--size``;
2. split 80/20, and the 20% again into a validation half (early stopping, model choice,
   recalibration layer, thresholds) and a test half that nothing is fitted on;
3. dehaze every image (dark channel prior);
4. train the VGG16-BN network on the original images and another on the dehazed ones;
5. store both networks' validation probabilities (1 and 8 TTA views);
6. fit per-label choice -> ridge layer -> F2-optimal thresholds on them;
7. write the model directory (``store.py``) with metrics on the validation and test splits.

Re-running the same command continues from the last epoch checkpoints (``checkpoints/``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from classifier import plots
from classifier.data import load_images, read_labels, split_indices, write_labels
from classifier.dehaze import DehazeParams, dehaze
from classifier.distill import Distillation
from classifier.inference import predict_batches
from classifier.losses import LossWeights
from classifier.metrics import f2_score, per_label_scores
from classifier.model import ModelConfig, resolve_device
from classifier.model_dirs import provenance
from classifier.postprocess import PostprocessConfig, fit_postprocessor
from classifier.store import (
    MEMBER_PREFIX,
    VAL_OUTPUTS_FILE,
    ValOutputs,
    load_network,
    member_index,
    member_name,
    read_network_file,
    save_network,
    write_pipeline,
)
from classifier.train import TrainConfig, train_network

TTA_VIEWS = (1, 8)


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", required=True, help="Planet-format CSV: image_name,tags")
    parser.add_argument("--images", required=True, help="folder or .tar with <image_name>.jpg")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--size", type=int, default=32,
                        help="image size the chips are resized to and the network input "
                             "(a multiple of 32)")
    parser.add_argument("--epochs", type=int, default=30,
                        help="maximum epochs per network (0 with --init-from: keep the "
                             "starting network as it is)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--patience", type=int, default=3,
                        help="stop after this many epochs without a better validation F2")
    parser.add_argument("--lr-patience", type=int, default=1,
                        help="divide the learning rate by 10 after this many epochs without "
                             "a better validation F2")
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
    parser.add_argument("--no-dehazed-model", action="store_true",
                        help="train only the original-image network")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--calibration", default="ridge", choices=("none", "ridge", "lasso"))
    parser.add_argument("--combine", default="choice", choices=("choice", "stack"),
                        help="per-label choice between the two networks (the paper) or "
                             "stacking: the layer reads both networks' probabilities")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                        help="mixed precision (auto: on for CUDA, off on CPU)")
    parser.add_argument("--imagenet-weights", default=None,
                        help="local torchvision vgg16_bn state dict (width 1.0 only)")
    parser.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                        help="start each network from this model directory's network of the "
                             "same name (continued training; same architecture and split)")
    parser.add_argument("--network", choices=("original", "dehazed"), default=None,
                        help="train only this network and stop (to train the two in parallel "
                             "processes); the same command without it then finishes the model")
    parser.add_argument("--member", type=int, default=0,
                        help="with --network: train ensemble member K of that network (K > 0 "
                             "is saved as <network>-K.pt, seeded with --seed + K, and starts "
                             "from --init-from's <network>.pt, or with --epochs 0 keeps "
                             "--init-from's <network>-K.pt as it is); the finishing run "
                             "averages every member of a network")
    parser.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                        help="learning rate x0.1 on a validation plateau (the paper) or a "
                             "cosine decay over --epochs (short restarts for ensemble members)")
    parser.add_argument("--teacher", default=None, metavar="MODEL_DIR",
                        help="distillation: a model whose TTA probabilities become soft targets "
                             "(mixed into the labels by --teacher-weight, and alone on "
                             "--unlabeled images)")
    parser.add_argument("--teacher-weight", type=float, default=0.5,
                        help="weight of the teacher's probabilities in the training targets")
    parser.add_argument("--unlabeled", default=None, metavar="DIR|TAR",
                        help="unlabelled images the teacher labels (with --teacher)")
    parser.add_argument("--weights", choices=("fp16", "int8"), default="fp16",
                        help="how the networks are stored: fp16, or int8 per output channel "
                             "(half the size again; for ensembles)")
    parser.add_argument("--fp16-networks", default="", metavar="NAMES",
                        help="comma-separated network files kept in fp16 under --weights int8 "
                             "(e.g. original: the search model's default backbone)")
    parser.add_argument("--members", default="", metavar="NAMES",
                        help="finishing run: the comma-separated networks that make the model "
                             "(e.g. original-8,original-10,dehazed; default: every trained "
                             "member), chosen e.g. by validation cross-validation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--max-epochs-this-run", type=int, default=None,
                        help="stop after this many epochs (resume later with the same command)")
    parser.add_argument("--name", default=None, help="model name recorded in pipeline.json")
    return parser


def trained_members(checkpoint_dir: Path, kind: str) -> list[str]:
    """The extra members of ``kind`` that ``--network kind --member K`` runs trained here."""
    found = (member_index(kind, path.name[:-len("_last.pt")])
             for path in checkpoint_dir.glob(f"{kind}-*_last.pt"))
    return [member_name(kind, k) for k in sorted(k for k in found if k)]


def starting_network(init_from: str | None, kind: str, name: str, epochs: int,
                     config: ModelConfig) -> tuple[str, ModelConfig]:
    """The network file of ``--init-from`` a member starts from, and its architecture.

    Training members start from the kind's member 0 (in this run's architecture); with
    zero epochs a member that the starting model already has is kept as it is, in its own
    architecture, so an ensemble can be refitted with more members without its
    checkpoints."""
    path = Path(init_from) / f"{name}.pt" if init_from else None
    if epochs == 0 and path is not None and path.exists():
        return name, ModelConfig(**read_network_file(path)[0])
    return kind, config


def chosen_members(kind: str, trained: list[str], members: str) -> list[str]:
    """The members of ``kind`` that make the model: all trained ones, or those that
    ``--members`` names (each must have been trained here or kept with --epochs 0)."""
    if not members:
        return trained
    wanted = [name for name in members.split(",") if member_index(kind, name) is not None]
    missing = [name for name in wanted if name not in trained and name != kind]
    if missing:
        raise SystemExit(f"--members {members}: no trained {', '.join(missing)} in this "
                         f"run's checkpoints")
    if not wanted:
        raise SystemExit(f"--members {members} names no {kind} network")
    return sorted(wanted, key=lambda name: member_index(kind, name))


def _finished(checkpoint: Path) -> bool:
    """Whether a network's last checkpoint says its training is over (no data needed)."""
    if not checkpoint.exists():
        return False
    return bool(torch.load(checkpoint, map_location="cpu", weights_only=False)["finished"])


def _write_log(path: Path, histories: dict[str, list[dict[str, float]]]) -> None:
    rows = [{"network": name, **row} for name, hist in histories.items() for row in hist]
    if not rows:
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _split_report(y: np.ndarray, probs: dict[str, np.ndarray], post: Any,
                  labels: list[str]) -> dict[str, Any]:
    scores = post.scores(probs.get("original_tta8"), probs.get("dehazed_tta8"))
    decided = post.decide(scores)
    return {"f2": f2_score(y, decided), "n_images": int(len(y)),
            "per_label": per_label_scores(y, decided, labels)}


def _check_held_out_is_unseen(init_dir: Path, held_out: set[str],
                              option: str = "--init-from") -> None:
    """Continued training (or a teacher) must not validate or test on images the starting
    networks trained on: every held-out image must be in that model's own val/test split."""
    split_files = [init_dir / "val.csv", init_dir / "test.csv"]
    if not all(f.exists() for f in split_files):
        raise SystemExit(f"{option} {init_dir}: no val.csv/test.csv there, so it cannot be "
                         "checked that this run's validation and test images are unseen")
    unseen = {name for f in split_files for name in read_labels(f).names}
    leaked = held_out - unseen
    if leaked:
        raise SystemExit(f"{option} {init_dir}: {len(leaked)} of this run's validation/test "
                         f"images (e.g. {sorted(leaked)[0]}) were training images of that model; "
                         "use the same data and --seed as it was trained with")


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    if args.member and args.network is None:
        raise SystemExit("--member trains one network: give --network too")
    if args.member < 0:
        raise SystemExit("--member must be 0 or more")
    if args.unlabeled and not args.teacher:
        raise SystemExit("--unlabeled images need a --teacher to label them")
    if args.epochs == 0 and not args.init_from:
        raise SystemExit("--epochs 0 keeps the starting network: give --init-from")
    if args.combine == "stack" and args.no_dehazed_model:
        raise SystemExit("--combine stack needs the dehazed network (drop --no-dehazed-model)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = device.type == "cuda" if args.amp == "auto" else args.amp == "on"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    table = read_labels(args.labels)
    labels = table.vocabulary()
    data = load_images(table, args.images, args.size, labels)
    if data.errors:
        print(f"{len(data.errors)} images skipped, e.g. {next(iter(data.errors.items()))}")
    if len(data.names) < 10:
        raise SystemExit(f"only {len(data.names)} readable images; need at least 10")
    train_idx, val_idx, test_idx = split_indices(
        len(data.names), [args.val_fraction, args.test_fraction], args.seed)
    for split, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        write_labels(out / f"{split}.csv", [data.names[i] for i in idx],
                     [[labels[j] for j in np.flatnonzero(data.targets[i])] for i in idx])
    if args.init_from:
        _check_held_out_is_unseen(Path(args.init_from),
                                  {data.names[i] for i in (*val_idx, *test_idx)})
    distill = None
    if args.teacher:
        _check_held_out_is_unseen(Path(args.teacher),
                                  {data.names[i] for i in (*val_idx, *test_idx)}, "--teacher")
        distill = Distillation.load(args.teacher, labels, args.unlabeled, args.size,
                                    args.teacher_weight, args.device)
    print(f"{len(labels)} labels; {len(train_idx)} train / {len(val_idx)} val / "
          f"{len(test_idx)} test images of {args.size}px on {device}")

    dehaze_params = DehazeParams()
    sets = {"original": data.images}
    if not args.no_dehazed_model and args.network != "original":
        sets["dehazed"] = np.stack([dehaze(img, dehaze_params)
                                    for img in tqdm(data.images, desc="dehaze", unit="img")])

    model_config = ModelConfig(num_labels=len(labels), input_size=args.size, width=args.width,
                               hidden=args.hidden, dropout=args.dropout,
                               keep_resolution_after=args.keep_resolution_after)
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        lr_patience=args.lr_patience, init_from=args.init_from,
        loss=LossWeights(args.loss_bce, args.loss_f2, args.loss_focal),
        augment=not args.no_augment, warp=not args.no_warp, seed=args.seed, amp=amp,
        imagenet_weights=args.imagenet_weights, schedule=args.schedule,
        run_seed=args.seed + args.member if args.member else None)
    histories: dict[str, list[dict[str, float]]] = {}

    # parallel single-network runs keep their own logs; the finishing run writes all
    suffix = f"_{member_name(args.network, args.member)}" if args.network else ""

    def on_epoch(name: str, history: list[dict[str, float]]) -> None:
        histories[name] = history
        _write_log(out / f"train_log{suffix}.csv", histories)
        plots.learning_curves(histories, out / f"learning_curves{suffix}.png")

    y = data.targets
    val_probs: dict[str, np.ndarray] = {}
    test_probs: dict[str, np.ndarray] = {}
    if args.network is not None:
        if args.network not in sets:
            raise SystemExit(f"--network {args.network}: this run has no such network")
        sets = {args.network: sets[args.network]}
    members: dict[str, list[str]] = {}
    member_val: dict[str, np.ndarray] = {}
    member_test: dict[str, np.ndarray] = {}
    for kind, images in sets.items():
        names = [member_name(kind, args.member)] if args.network else \
            chosen_members(kind, [kind, *trained_members(out / "checkpoints", kind)],
                           args.members)
        for name in names:
            train_set = (images[train_idx], y[train_idx])
            if distill is not None and not _finished(out / "checkpoints" / f"{name}_last.pt"):
                train_set = distill.training_set(kind, data.images[train_idx], *train_set)
                print(f"[{name}] distillation: {len(train_set[0])} training images")
            init_name, config = starting_network(args.init_from, kind, name, args.epochs,
                                                 model_config)
            model, histories[name], finished = train_network(
                name, config, train_config, train_set,
                (images[val_idx], y[val_idx]), out / "checkpoints", device,
                args.max_epochs_this_run, on_epoch, init_name=init_name)
            on_epoch(name, histories[name])
            if not finished:
                print(f"[{name}] paused; run the same command again to resume")
                return {}
            fp16 = name in args.fp16_networks.split(",")
            save_network(model, out / f"{name}.pt", "fp16" if fp16 else args.weights)
            if args.network is not None:
                print(f"[{name}] trained; run the command without --network to finish the model")
                return {}
            # outputs of the weights as stored, so the layer is fitted on what ships
            model = load_network(out / f"{name}.pt", device)
            for views in TTA_VIEWS:
                member_val[f"{name}_tta{views}"] = predict_batches(
                    model, images[val_idx], device, views, amp=amp, progress=True,
                    desc=f"{name} val TTA{views}")
            member_test[f"{name}_tta8"] = predict_batches(
                model, images[test_idx], device, 8, amp=amp, progress=True,
                desc=f"{name} test TTA8")
        members[kind] = names
        # a kind's probability is its members' mean (one member: the network itself)
        for views in TTA_VIEWS:
            val_probs[f"{kind}_tta{views}"] = np.mean(
                [member_val[f"{n}_tta{views}"] for n in names], axis=0)
        test_probs[f"{kind}_tta8"] = np.mean([member_test[f"{n}_tta8"] for n in names], axis=0)
        if len(names) > 1:
            val_probs.update({MEMBER_PREFIX + k: v for k, v in member_val.items()
                              if k.rsplit("_tta", 1)[0] in names})

    ValOutputs([data.names[i] for i in val_idx], y[val_idx], val_probs).save(out / VAL_OUTPUTS_FILE)
    combine = "stack" if args.combine == "stack" else "per-label"
    post = fit_postprocessor(PostprocessConfig(dehaze=combine, calibration=args.calibration),
                             y[val_idx], val_probs["original_tta8"], val_probs.get("dehazed_tta8"),
                             args.seed)
    metrics = {"val": _split_report(y[val_idx], val_probs, post, labels),
               "test": _split_report(y[test_idx], test_probs, post, labels)}
    spec = {
        "format": 1,
        "name": args.name or out.name,
        "labels": labels,
        "image_size": args.size,
        "model": model_config.to_dict(),
        "members": members,
        "dehaze": asdict(dehaze_params),
        "postprocess": post.to_dict(),
        "metrics": {split: {"f2": m["f2"], "n_images": m["n_images"]}
                    for split, m in metrics.items()},
        "per_label_test": metrics["test"]["per_label"],
        "training": {
            **provenance("classifier", getattr(args, "argv", sys.argv[1:])),
            "train_config": train_config.to_dict(),
            "epochs": {name: len(hist) for name, hist in histories.items()},
            "best_val_f2_no_tta": {name: max((r["val_f2"] for r in hist), default=None)
                                   for name, hist in histories.items()},
            "seconds": round(time.time() - started, 1),
            "device": str(device),
            "n_images": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
            "skipped_images": len(data.errors),
        },
    }
    write_pipeline(out, spec)
    print(f"use_dehazed for: {[lab for lab, u in zip(labels, post.use_dehazed) if u]}")
    print(f"validation F2 {metrics['val']['f2']:.4f}  test F2 {metrics['test']['f2']:.4f}")
    print(json.dumps(spec["metrics"]))
    return spec
