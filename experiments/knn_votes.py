"""Neighbour votes as a second opinion: the labels of a chip's nearest training chips (by
the first network's pooled features, the descriptor the worker already computes for the
novelty score) given to the ridge layer beside the ensemble's probabilities, scored by
validation CV against the shipped post-processing.

    python -m experiments.knn_votes --images ../shared/data/planet-32px/train-jpg.tar \
        --out runs/knn     # features of the train and validation chips, ~10 min on 2 cores
    python -m experiments.knn_votes --score runs/knn

The votes go in as the layer's second block of inputs (``dehaze="stack"``, the stacking
path's 2 x L inputs per label; averaged with the probabilities for a model without a
layer), so the layer, the thresholds and the consistent sets are
fitted per fold exactly as shipped. Nothing here touches the test split.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from classifier.evaluation import Setting, StoredModel, cv_scores, paired
from classifier.inference import predict_with_embeddings
from classifier.predictor import load_predictor
from classifier.store import ValOutputs
from imagery.datasets import load_images, read_labels


def compute(model: str, images: str, out: Path, threads: int) -> None:
    predictor = load_predictor(model, threads=threads)
    net = predictor.networks["original"][0]
    out.mkdir(parents=True, exist_ok=True)
    for split in ("val", "train"):
        path = out / f"{split}.npz"
        if path.exists():
            continue
        table = read_labels(predictor.model_dir / f"{split}.csv")
        data = load_images(table, images, predictor.image_size, predictor.labels, True)
        with torch.inference_mode():
            _, features = predict_with_embeddings(net, data.images, predictor.device, 1, 64,
                                                  False, progress=True, desc=split)
        np.savez_compressed(path, names=np.array(data.names), targets=data.targets,
                            features=features.astype(np.float16))
        print(f"wrote {path}")


def votes(train: np.ndarray, targets: np.ndarray, queries: np.ndarray, k: int,
          batch: int = 1024) -> np.ndarray:
    """Mean label vector of each query's ``k`` most cosine-similar training chips."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)

    train, queries = unit(train), unit(queries)
    out = np.zeros((len(queries), targets.shape[1]), np.float32)
    for start in range(0, len(queries), batch):
        sims = queries[start:start + batch] @ train.T
        nearest = np.argpartition(-sims, k, axis=1)[:, :k]
        out[start:start + batch] = targets[nearest].mean(axis=1)
    return out


def score(model: str, out: Path, ks: list[int]) -> dict[str, dict[str, float]]:
    stored = StoredModel.load(model)
    val, labels = stored.val, stored.labels
    with np.load(out / "train.npz") as t, np.load(out / "val.npz") as v:
        train, targets = t["features"], t["targets"].astype(np.float32)
        index = {str(n): i for i, n in enumerate(v["names"])}
        queries = v["features"][[index[n] for n in val.names]]
    baseline = cv_scores(val, stored.shipped, labels=labels)
    table = {}
    print("| layer inputs | F2 | vs shipped |\n|---|---:|---:|")
    for k in ks:
        probs = {**val.probs, "dehazed_tta8": votes(train, targets, queries, k)}
        stacked = Setting("votes", post=replace(stored.shipped.post, dehaze="stack"))
        scores = cv_scores(ValOutputs(val.names, val.targets, probs), stacked, labels=labels)
        row = table[f"k={k}"] = paired(scores, baseline)
        print(f"| ensemble + votes of {k} neighbours | {row['f2']:.4f} | "
              f"{row['diff']:+.4f} ± {row['diff_se']:.4f} |")
    return table


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--images")
    parser.add_argument("--out", type=Path, default=Path("runs/knn"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score", type=Path)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 30, 100])
    args = parser.parse_args(argv)
    if args.score:
        return score(args.model, args.score, args.k)
    compute(args.model, args.images, args.out, args.threads)
    return None


if __name__ == "__main__":
    main()
