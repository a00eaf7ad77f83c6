"""Test-time input sizes: a model's networks run on the validation chips upsampled to
other sides than the one they were trained at (8 dihedral views each), and the outputs
scored by validation CV, alone and averaged with the stored ones.

Networks trained on upsampled chips often gain from a slightly larger side at test time
(the apparent objects grow under training augmentation; Touvron et al., "Fixing the
train-test resolution discrepancy", 2019). Whether these do is a validation question:

    python -m experiments.scale_tta --images ../shared/data/planet-32px/train-jpg.tar \
        --sizes 160 --out runs/scale_tta    # about 25 min per size on 2 cores
    python -m experiments.scale_tta --score runs/scale_tta

Outputs go to ``--out`` (one npz per size, resumable); nothing here touches the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from classifier.evaluation import StoredModel, cv_scores, paired
from classifier.predictor import load_predictor
from classifier.store import MEMBER_PREFIX, ValOutputs
from imagery.datasets import load_images, read_labels


def compute(model: str, images: str, sizes: list[int], out: Path, threads: int) -> None:
    predictor = load_predictor(model, threads=threads)
    table = read_labels(predictor.model_dir / "val.csv")
    data = load_images(table, images, predictor.image_size, predictor.labels, True)
    out.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        path = out / f"val_{size}.npz"
        if path.exists():
            continue
        for nets in predictor.networks.values():
            for net in nets:
                net.lite_config = dataclasses.replace(net.lite_config, input_size=size)
        with torch.inference_mode():
            outputs = predictor.member_outputs(data.images, 8)
        np.savez_compressed(path, names=np.array(data.names),
                            **{name: p for runs in outputs.values() for name, p in runs.items()})
        print(f"wrote {path}")


def score(model: str, out: Path) -> dict[str, dict[str, float]]:
    stored = StoredModel.load(model)
    val, shipped, labels = stored.val, stored.shipped, stored.labels
    index = {name: i for i, name in enumerate(val.names)}
    baseline = cv_scores(val, shipped, labels=labels)
    print("| test-time sides | F2 | vs shipped |\n|---|---:|---:|")
    print(f"| trained side only (shipped) | {baseline.mean():.4f} | |")
    table = {}
    for path in sorted(out.glob("val_*.npz")):
        size = path.stem.split("_")[1]
        with np.load(path) as data:
            order = [index[str(n)] for n in data["names"]]
            members = {k: data[k] for k in data.files if k != "names"}
        rows = np.argsort(order)  # stored order -> this file's rows
        for mix in ("alone", "averaged"):
            probs = dict(val.probs)
            for name, p in members.items():
                key = f"{MEMBER_PREFIX}{name}_tta8"
                new = p[rows]
                probs[key] = new if mix == "alone" else (val.probs[key] + new) / 2
            for kind in ("original", "dehazed"):
                names = [n for n in val.member_names(kind) if n in members]
                if names:
                    probs[f"{kind}_tta8"] = np.mean(
                        [probs[f"{MEMBER_PREFIX}{n}_tta8"] for n in names], axis=0)
            scores = cv_scores(ValOutputs(val.names, val.targets, probs), shipped,
                               labels=labels)
            row = table[f"{size} {mix}"] = paired(scores, baseline)
            print(f"| {size} px {mix} | {row['f2']:.4f} | {row['diff']:+.4f} ± "
                  f"{row['diff_se']:.4f} |")
    return table


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--images")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160])
    parser.add_argument("--out", type=Path, default=Path("runs/scale_tta"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score", type=Path)
    args = parser.parse_args(argv)
    if args.score:
        return score(args.model, args.score)
    compute(args.model, args.images, args.sizes, args.out, args.threads)
    return None


if __name__ == "__main__":
    main()
