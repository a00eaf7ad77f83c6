"""How often a model's "unlike the training imagery" flag fires, on chips like its
training imagery and on imagery from elsewhere.

    python -m experiments.novelty_rates --model default \\
        --chips ../shared/data/planet-32px/train-jpg.tar --split test \\
        --other ../shared/data/ucm/images.tar [--other ...] [--photos] [--n 2000]

``--chips`` with the model's ``--split`` CSV (test: never used to fit anything, the
detector included): the in-distribution flag rate (the threshold targets 1%).
``--other``: folders or tars of other imagery (UC Merced's 30 cm aerial photographs, the
example scenes); the flag rate there, and the AUROC of the score separating the two.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from classifier.predictor import Predictor
from classifier.store import CLASSIFIER_DIRS
from imagery.datasets import LabelTable, load_images, read_labels


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of an outside image > score of an inside one), ties counted half."""
    both = np.concatenate([inside, outside])
    ranks = both.argsort().argsort().astype(float) + 1
    outside_ranks = ranks[len(inside):]
    n_in, n_out = len(inside), len(outside)
    return float((outside_ranks.sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def scores(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """Novelty in units of the model's threshold (above 1: flagged)."""
    return np.array([p.novelty for p in predictor.predict(list(images))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--chips", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--other", action="append", default=[])
    parser.add_argument("--photos", action="store_true",
                        help="also scikit-image's bundled sample photographs (a cat, coffee, "
                             "an astronaut, textures...: ground-level pictures)")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    predictor = Predictor(args.model, batch_size=64, tta_views=1)  # the score reads view 0
    if predictor.novelty is None:
        raise SystemExit(f"{args.model} has no novelty detector: python -m classifier novelty")
    table = read_labels(CLASSIFIER_DIRS.resolve(args.model) / f"{args.split}.csv")
    table = LabelTable(table.names[:args.n], table.tags[:args.n])
    chips = load_images(table, args.chips, predictor.image_size, predictor.labels).images
    inside = scores(predictor, chips)
    threshold = predictor.novelty.threshold
    print(json.dumps({"name": f"{args.split} chips", "n": len(inside),
                      "flagged": round(float((inside > 1).mean()), 4),
                      "median_score": round(float(np.median(inside)), 2),
                      "threshold": round(threshold, 2)}))
    if args.photos:
        outside = scores(predictor, sample_photos(predictor.image_size))
        print(json.dumps({"name": "scikit-image sample photographs", "n": len(outside),
                          "flagged": round(float((outside > 1).mean()), 4),
                          "median_score": round(float(np.median(outside)), 2),
                          "auroc": round(auroc(inside, outside), 4)}))
    for other in args.other:
        names = _names(Path(other))[:args.n]
        data = load_images(LabelTable(names, [[] for _ in names]), other,
                           predictor.image_size, [])
        outside = scores(predictor, data.images)
        print(json.dumps({"name": other, "n": len(outside),
                          "flagged": round(float((outside > 1).mean()), 4),
                          "median_score": round(float(np.median(outside)), 2),
                          "auroc": round(auroc(inside, outside), 4)}))


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel", "logo", "brick", "camera", "grass",
          "gravel", "moon", "page", "text", "horse", "checkerboard", "clock")


def sample_photos(size: int) -> np.ndarray:
    """scikit-image's bundled pictures as RGB uint8 at the model's size."""
    import skimage.data

    from imagery.decode import resize_square

    found = []
    for name in PHOTOS:
        picture = getattr(skimage.data, name)()
        picture = np.asarray(picture[0] if isinstance(picture, tuple) else picture)
        if picture.ndim == 2:
            picture = np.stack([picture] * 3, axis=-1)
        picture = picture[..., :3].astype(np.float64)
        picture = 255 * (picture - picture.min()) / max(np.ptp(picture), 1e-9)
        found.append(resize_square(picture.astype(np.uint8), size))
    return np.stack(found)


def _names(source: Path) -> list[str]:
    """Image stems of a folder or tar (the names ``load_images`` looks up)."""
    import tarfile

    suffixes = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
    if source.is_dir():
        return sorted(p.stem for p in source.iterdir() if p.suffix.lower() in suffixes)
    with tarfile.open(source) as archive:
        return sorted(Path(m.name).stem for m in archive if m.isfile()
                      and Path(m.name).suffix.lower() in suffixes)


if __name__ == "__main__":
    main()
