"""``python -m classifier assemble NETWORK... --out MODEL_DIR``: a model from trained networks.

The paper's method after training, in one place:

1. check that the networks fit together: the same labels, image size and split (every
   network's folder holds the ``val.csv`` / ``test.csv`` that ``train`` wrote);
2. store each network as it will ship (fp16, or int8 per output channel) and compute its
   validation (1 and 8 TTA views) and test (8 views) probabilities *from the stored
   weights*, so that everything is fitted on what ships;
3. average the members of each kind (original / dehazed): an ensemble;
4. fit per-label choice (or stacking) -> recalibration layer -> F2-optimal thresholds on
   the validation outputs only (``postprocess.py``), then the consistent tag sets
   (``consistency.py``; its F2 cost on validation is recorded);
5. score validation and, once, test (``--no-test`` for candidates that are compared on
   validation only); write ``pipeline.json`` with each network's own command, configs and
   training log, plus ``val_outputs.npz`` for the ablations;
6. fit the "unlike the training imagery" detector on the validation descriptors
   (``novelty.py``).

Networks of different architectures and input sizes (VGG16-BN at 32 px, EfficientNet-
Lite0 upsampling to 96 px) assemble alike: every network reads the same 32 px chips.

Networks of an assembled model directory can be assembled again (its ``pipeline.json``
describes them), e.g. to refit a model with fewer or more members.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from classifier.consistency import violations
from classifier.dehaze import DehazeParams, dehaze
from classifier.inference import predict_batches, predict_with_embeddings
from classifier.metrics import f2_score, per_label_scores
from classifier.model import ModelConfig, create_model, resolve_device
from classifier.novelty import fit_novelty, save_novelty
from classifier.postprocess import PostprocessConfig, Postprocessor, fit_postprocessor
from classifier.store import (
    MEMBER_PREFIX,
    NETWORKS,
    VAL_OUTPUTS_FILE,
    NetworkInfo,
    ValOutputs,
    load_network,
    member_index,
    read_network_file,
    save_network,
    stored_precision,
    write_pipeline,
)
from imagery import plots
from imagery.datasets import load_images, read_labels
from imagery.digests import file_sha256
from imagery.model_dirs import provenance

TTA_VIEWS = (1, 8)


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__)
    parser.add_argument("networks", nargs="+", metavar="NETWORK.pt",
                        help="network files written by `train` (or of an assembled model): "
                             "original[-K].pt and dehazed[-K].pt")
    parser.add_argument("--images", required=True,
                        help="folder or .tar with the validation and test images")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--name", default=None, help="model name (default: --out's name)")
    parser.add_argument("--combine", default="choice", choices=("choice", "stack"),
                        help="per-label choice between the two kinds (the paper) or "
                             "stacking: the layer reads both kinds' probabilities")
    parser.add_argument("--calibration", default="ridge", choices=("none", "ridge", "lasso"))
    parser.add_argument("--weights", choices=("fp16", "int8"), default="fp16",
                        help="how the networks are stored: fp16, or int8 per output channel "
                             "(half the size again; for ensembles)")
    parser.add_argument("--fp16-networks", default="", metavar="NAMES",
                        help="comma-separated networks kept in fp16 under --weights int8 "
                             "(e.g. original: the search model's default backbone)")
    parser.add_argument("--consistency", choices=("on", "off"), default="on",
                        help="consistent tag sets after the thresholds: one weather label, "
                             "nothing else when cloudy (for labels with Planet's weather)")
    parser.add_argument("--no-test", action="store_true",
                        help="do not score the test split (a candidate compared on "
                             "validation only; the shipped model is scored once)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the post-processing fit")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    return parser


def check_compatible(infos: list[NetworkInfo]) -> dict[str, list[str]]:
    """Kind -> member names (member 0 first); refuses networks that do not fit together."""
    names = [info.name for info in infos]
    if len(set(names)) != len(names):
        raise SystemExit(f"two networks are named alike ({', '.join(names)}): train "
                         "ensemble members with --member K")
    first = infos[0]
    split = {part: first.split_names(part) for part in ("val", "test")}
    for info in infos:
        if member_index(info.kind, info.name) is None or info.kind not in NETWORKS:
            raise SystemExit(f"{info.path}: {info.name!r} is no member of {info.kind!r}")
        if info.labels != first.labels or info.image_size != first.image_size:
            raise SystemExit(f"{info.path} has other labels or another image size than "
                             f"{first.path}")
        for part in ("val", "test"):
            if info.split_names(part) != split[part]:
                raise SystemExit(f"{info.path} was validated on another {part} split than "
                                 f"{first.path} (train them with the same --labels and --seed)")
    members: dict[str, list[str]] = {}
    for kind in NETWORKS:
        found = sorted((i.name for i in infos if i.kind == kind),
                       key=lambda n: member_index(kind, n))
        if found:
            members[kind] = found
    if "original" not in members:
        raise SystemExit("a model needs at least one network on the original images")
    return members


def split_report(y: np.ndarray, probs: dict[str, np.ndarray], post: Postprocessor,
                 labels: list[str]) -> dict[str, Any]:
    scores = post.scores(probs.get("original_tta8"), probs.get("dehazed_tta8"))
    decided = post.decide(scores)
    report = {"f2": f2_score(y, decided), "n_images": int(len(y)),
              "per_label": per_label_scores(y, decided, labels),
              "violations": violations(decided, labels)}
    if post.consistent:  # what the rule costs: the same scores decided without it
        unruled = replace(post, config=replace(post.config, consistent=False)).decide(scores)
        report["f2_without_consistency"] = f2_score(y, unruled)
        report["violations_without_consistency"] = violations(unruled, labels)
    return report


def _training_logs(infos: list[NetworkInfo], out: Path) -> None:
    """The networks' own logs, one table and one chart for the model."""
    histories: dict[str, list[dict[str, float]]] = {}
    for info in infos:
        log = info.path.parent / f"train_log_{info.name}.csv"
        if log.exists():
            with open(log, newline="") as handle:
                histories[info.name] = [{k: float(v) for k, v in row.items()}
                                        for row in csv.DictReader(handle)]
    rows = [{"network": name, **row} for name, hist in histories.items() for row in hist]
    if rows:
        with open(out / "train_log.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plots.learning_curves(histories, out / "learning_curves.png")


def fit_model_novelty(model_dir: Path, network: str, val_images: np.ndarray,
                      device: torch.device, amp: bool = False) -> dict[str, Any]:
    """Fit the model's "unlike the training imagery" detector (``classifier.novelty``) on
    the stored network's descriptors of the validation images; writes it beside it."""
    stored = load_network(model_dir / f"{network}.pt", device)
    _, features = predict_with_embeddings(stored, val_images, device, 1, amp=amp,
                                          progress=True, desc=f"{network} features")
    try:
        detector, record = fit_novelty(features)
    except ValueError as exc:  # too few validation images: the model has no detector
        return {"skipped": str(exc)}
    save_novelty(model_dir, detector, {**record, "network": network})
    return record


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = device.type == "cuda" if args.amp == "auto" else args.amp == "on"
    infos = [NetworkInfo.read(Path(path)) for path in args.networks]
    members = check_compatible(infos)
    if args.combine == "stack" and "dehazed" not in members:
        raise SystemExit("--combine stack needs a network on dehazed images")
    first = infos[0]
    labels, size = first.labels, first.image_size
    fp16 = set(filter(None, args.fp16_networks.split(",")))
    unknown = fp16 - {info.name for info in infos}
    if unknown:
        raise SystemExit(f"--fp16-networks: no network named {', '.join(sorted(unknown))}")

    parts = ("val",) if args.no_test else ("val", "test")
    splits = {}
    for part in parts:
        table = read_labels(first.path.parent / f"{part}.csv")
        data = load_images(table, args.images, size, labels)
        if data.errors:
            raise SystemExit(f"{len(data.errors)} {part} images cannot be read from "
                             f"{args.images} (e.g. {next(iter(data.errors))}): the model must "
                             "be scored on the split its networks were validated on")
        splits[part] = data
    dehaze_params = DehazeParams()
    inputs = {(part, "original"): data.images for part, data in splits.items()}
    if "dehazed" in members:
        for part, data in splits.items():
            inputs[part, "dehazed"] = np.stack([
                dehaze(img, dehaze_params)
                for img in tqdm(data.images, desc=f"dehaze {part}", unit="img")])

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for part in ("train", "val", "test"):
        source = first.path.parent / f"{part}.csv"
        if source.exists() and source.resolve() != (out / f"{part}.csv").resolve():
            shutil.copyfile(source, out / f"{part}.csv")
    outputs: dict[str, np.ndarray] = {}
    networks: dict[str, dict[str, Any]] = {}
    for info in infos:
        precision = "fp16" if info.name in fp16 else args.weights
        target = out / f"{info.name}.pt"
        if stored_precision(info.path) == precision:
            # already stored as it ships: the very bytes (digests that other models,
            # such as the search backbone, refer to stay valid)
            if info.path.resolve() != target.resolve():
                shutil.copyfile(info.path, target)
        else:
            config, state = read_network_file(info.path)  # read before a same-place write
            model = create_model(ModelConfig(**config))
            model.load_state_dict(state)
            save_network(model, target, precision)
        networks[info.name] = {**info.to_dict(), "precision": precision,
                               "sha256": file_sha256(target)}  # checked when loaded
        stored = load_network(out / f"{info.name}.pt", device)  # outputs of what ships
        for part, views_list in (("val", TTA_VIEWS), ("test", (8,)))[:len(parts)]:
            for views in views_list:
                outputs[f"{part}:{info.name}_tta{views}"] = predict_batches(
                    stored, inputs[part, info.kind], device, views, amp=amp, progress=True,
                    desc=f"{info.name} {part} TTA{views}")

    probs: dict[str, dict[str, np.ndarray]] = {part: {} for part in parts}
    for kind, names in members.items():  # a kind's probability: its members' mean
        for part, views_list in (("val", TTA_VIEWS), ("test", (8,)))[:len(parts)]:
            for views in views_list:
                probs[part][f"{kind}_tta{views}"] = np.mean(
                    [outputs[f"{part}:{n}_tta{views}"] for n in names], axis=0)
        if len(names) > 1:
            probs["val"].update({f"{MEMBER_PREFIX}{n}_tta{v}": outputs[f"val:{n}_tta{v}"]
                                 for n in names for v in TTA_VIEWS})
    y_val = splits["val"].targets
    ValOutputs(splits["val"].names, y_val, probs["val"]).save(out / VAL_OUTPUTS_FILE)
    combine = "stack" if args.combine == "stack" else "per-label"
    post = fit_postprocessor(PostprocessConfig(dehaze=combine, calibration=args.calibration,
                                               consistent=args.consistency == "on"),
                             y_val, probs["val"]["original_tta8"],
                             probs["val"].get("dehazed_tta8"), args.seed, labels)
    metrics = {part: split_report(splits[part].targets, probs[part], post, labels)
               for part in parts}
    spec = {
        "format": 2,
        "name": args.name or out.name,
        "labels": labels,
        "image_size": size,
        "model": next(n for n in networks.values() if n["kind"] == "original")["model"],
        "members": members,
        "dehaze": asdict(dehaze_params),
        "postprocess": post.to_dict(),
        "metrics": {part: {k: v for k, v in m.items() if k != "per_label"}
                    for part, m in metrics.items()},
        "per_label_test": metrics["test"]["per_label"] if "test" in metrics else None,
        "networks": networks,
        "assembly": {**provenance("classifier", getattr(args, "argv", sys.argv[1:])),
                     "device": str(device), "seconds": round(time.time() - started, 1)},
    }
    write_pipeline(out, spec)
    _training_logs(infos, out)
    novelty = fit_model_novelty(out, members["original"][0], inputs["val", "original"],
                                device, amp)
    if "skipped" in novelty:
        print(f"no novelty detector: {novelty['skipped']}")
    else:
        print(f"novelty detector: threshold {novelty['threshold']:.2f} "
              f"({novelty['quantile']:.0%} of the scores of {novelty['n_calibration']} "
              "validation images it was not fitted on)")
    print(f"use_dehazed for: {[lab for lab, u in zip(labels, post.use_dehazed) if u]}")
    print("  ".join(f"{part} F2 {m['f2']:.4f}" for part, m in metrics.items()))
    if post.consistent:
        val = metrics["val"]
        print(f"consistent tag sets: validation F2 {val['f2_without_consistency']:.4f} -> "
              f"{val['f2']:.4f}; violations {val['violations_without_consistency']} -> "
              f"{val['violations']}")
    print(json.dumps(spec["metrics"]))
    return spec
