"""Which view of a partial tile the model should see (imagery.partial), chosen on
validation chips cut the way a scene's edge cuts its tiles.

    python -m experiments.partial_tiles --model default \\
        --chips ../shared/data/planet-32px/train-jpg.tar [--split val] [--n 0] \\
        [--device auto] [--out DIR]

Every chip of the model's ``--split`` CSV (validation: the test split is not touched) is
cut as a scene's right edge (a left band of it holds data), its bottom edge (a top band)
and its corner (a top-left square), at 25%, 50% and 75% coverage, and the rest padded
black, as the tiler stores it. Each view of ``imagery.partial.VIEWS`` of each cut is tagged
by the shipped pipeline (TTA, ridge layer, thresholds, consistent sets) and scored against
the whole chip's labels (F2, sample-averaged), paired with ``pad`` (the tile as stored)
with a bootstrap 95% interval. The labels of a whole chip are a proxy for those of its
part (a road outside the cut is still in the truth): the same for every view, so the
comparison is fair, and F2 falls with coverage for every view.

Prints one JSON line per (view, coverage) and overall, writes ``partial_tiles.json`` and
``partial_tiles.png`` (F2 against coverage per view) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from classifier.evaluation import paired_bootstrap
from classifier.metrics import fbeta_per_sample
from classifier.predictor import Predictor
from classifier.store import CLASSIFIER_DIRS
from imagery.datasets import LabelTable, load_images, read_labels
from imagery.partial import VIEWS, model_view

COVERAGES = (0.25, 0.5, 0.75)
CUTS = ("right", "bottom", "corner")


def cut(chip: np.ndarray, kind: str, coverage: float) -> tuple[np.ndarray, tuple[int, ...]]:
    """``chip`` as an edge tile holding data in ``coverage`` of it: (padded, window)."""
    size = chip.shape[0]
    if kind == "right":
        w, h = max(1, round(size * coverage)), size
    elif kind == "bottom":
        w, h = size, max(1, round(size * coverage))
    else:
        w = h = max(1, round(size * math.sqrt(coverage)))
    padded = np.zeros_like(chip)
    padded[:h, :w] = chip[:h, :w]
    return padded, (0, 0, w, h)


def decided(predictor: Predictor, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(N x L tag matrix, novelty in units of the threshold) of the shipped pipeline."""
    index = {label: j for j, label in enumerate(predictor.labels)}
    results = predictor.predict(images)
    tags = np.zeros((len(results), len(index)), bool)
    for i, result in enumerate(results):
        tags[i, [index[t] for t in result.tags]] = True
    novelty = np.array([r.novelty if r.novelty is not None else np.nan for r in results])
    return tags, novelty


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--chips", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=0, help="first N chips only (0: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("runs/partial_tiles"))
    args = parser.parse_args(argv)
    if args.split == "test":
        raise SystemExit("the view is chosen on validation chips; the test split stays unseen")
    started = time.time()
    predictor = Predictor(args.model, device=args.device, batch_size=args.batch_size)
    table = read_labels(CLASSIFIER_DIRS.resolve(args.model) / f"{args.split}.csv")
    if args.n:
        table = LabelTable(table.names[:args.n], table.tags[:args.n])
    data = load_images(table, args.chips, predictor.image_size, predictor.labels)
    y = data.targets.astype(bool)
    whole, _ = decided(predictor, list(data.images))
    rows = [{"view": "whole chip", "coverage": 1.0,
             "f2": round(float(fbeta_per_sample(y, whole).mean()), 4)}]
    print(json.dumps(rows[0]), flush=True)
    per_view: dict[str, list[np.ndarray]] = {view: [] for view in VIEWS}
    for coverage in COVERAGES:
        scores: dict[str, np.ndarray] = {}
        for view in VIEWS:
            per_cut, flagged = [], []
            for kind in CUTS:
                cuts = [cut(chip, kind, coverage) for chip in data.images]
                tags, novelty = decided(predictor, [model_view(p, w, view) for p, w in cuts])
                per_cut.append(fbeta_per_sample(y, tags))
                flagged.append(novelty > 1)
            scores[view] = np.concatenate(per_cut)
            per_view[view].append(scores[view])
            row = {"view": view, "coverage": coverage,
                   "f2": round(float(scores[view].mean()), 4),
                   "unusual": round(float(np.nanmean(np.concatenate(flagged))), 4)}
            if view != "pad":
                low, high = paired_bootstrap(scores[view], scores["pad"])
                row["vs_pad"] = [round(float((scores[view] - scores["pad"]).mean()), 4),
                                 round(low, 4), round(high, 4)]
            rows.append(row)
            print(json.dumps(row), flush=True)
    overall = {view: np.concatenate(parts) for view, parts in per_view.items()}
    summary = []
    for view in VIEWS:
        row = {"view": view, "coverage": "all", "f2": round(float(overall[view].mean()), 4)}
        if view != "pad":
            low, high = paired_bootstrap(overall[view], overall["pad"])
            row["vs_pad"] = [round(float((overall[view] - overall["pad"]).mean()), 4),
                             round(low, 4), round(high, 4)]
        summary.append(row)
        print(json.dumps(row), flush=True)
    best = max(VIEWS, key=lambda view: overall[view].mean())
    report = {"model": predictor.version, "split": args.split, "chips": len(y),
              "cuts": list(CUTS), "coverages": list(COVERAGES), "rows": rows,
              "overall": summary, "best": best, "seconds": round(time.time() - started, 1),
              "device": str(predictor.device)}
    print(json.dumps({"best": best, "chips": len(y), "seconds": report["seconds"]}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "partial_tiles.json").write_text(json.dumps(report, indent=1))
    plot(rows, args.out / "partial_tiles.png", len(y))
    return report


def plot(rows: list[dict], path: Path, chips: int) -> None:
    """F2 against coverage, one line per view, the whole chip as a dashed line."""
    from imagery.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for view in VIEWS:
        points = [(r["coverage"], r["f2"]) for r in rows if r["view"] == view]
        ax.plot(*zip(*points), marker="o", label=view)
    ax.axhline(rows[0]["f2"], color="grey", linestyle="--", label="whole chip")
    ax.set_xlabel("share of the tile holding data")
    ax.set_ylabel("F2 against the whole chip's labels")
    ax.set_title(f"Partial tiles: what the model sees ({chips} validation chips x 3 cuts)")
    ax.legend()
    _save(fig, path)


if __name__ == "__main__":
    main()
