"""Distillation: soft targets from a teacher model, for training a network on more than
the labels.

    python -m experiments.distill --teacher MODEL_DIR [--teacher-weight 0.5]
        [--unlabeled DIR|TAR] TRAIN_ARGS...   (the arguments of `python -m classifier train`)

The teacher's TTA-averaged probabilities (the same network kind, so on the same scale)
become targets: on unlabelled chips alone (self-training, as Noisy Student does it,
with this network's own augmentation and dropout as the noise), and mixed into the
training labels with weight ``w``: target = (1 - w) * label + w * teacher. The losses
take soft targets as they are. The teacher must not have trained on this run's
validation or test images (checked). The network it writes is assembled like any other.
On the Planet thumbnails two distilled students reached validation F2 0.9061-0.9070
(1 view), but no ensemble with them beat the shipped one (the model card).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier import train
from classifier.dehaze import dehaze_many
from classifier.predictor import Predictor
from classifier.store import CLASSIFIER_DIRS
from imagery.datasets import LabelTable, list_image_names, load_images, read_labels


@dataclass
class Distillation:
    teacher: Predictor
    unlabeled: np.ndarray  # N x S x S x 3 uint8
    weight: float

    @classmethod
    def load(cls, teacher_dir: str | Path, labels: list[str], unlabeled: str | Path | None,
             size: int, weight: float, device: str) -> Distillation:
        if not 0.0 <= weight <= 1.0:
            raise SystemExit("--teacher-weight must be in [0, 1]")
        teacher = Predictor(teacher_dir, device=device, batch_size=256)
        if teacher.labels != labels:
            raise SystemExit(f"--teacher {teacher_dir} has labels {teacher.labels}, "
                             f"this run {labels}")
        images = np.zeros((0, size, size, 3), np.uint8)
        if unlabeled:
            names = list_image_names(unlabeled)
            data = load_images(LabelTable(names, [[] for _ in names]), unlabeled, size, labels)
            if data.errors:
                print(f"{len(data.errors)} unlabelled images skipped")
            images = data.images
        return cls(teacher, images, weight)

    def soft_targets(self, kind: str, images: np.ndarray) -> np.ndarray:
        """The teacher's probabilities for ``kind`` (8 TTA views, all its members)."""
        if kind not in self.teacher.networks:
            raise SystemExit(f"--teacher has no {kind} network")
        if not len(images):
            return np.zeros((0, len(self.teacher.labels)), np.float32)
        return self.teacher.network_outputs(images, 8, needed=[kind])[kind].astype(np.float32)

    def training_set(self, kind: str, raw: np.ndarray, inputs: np.ndarray,
                     targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labelled images (``inputs``: as the network sees them, ``raw``: as decoded,
        which is what the teacher takes) with teacher-mixed targets, then the unlabelled
        chips with the teacher's targets alone."""
        mixed = targets
        if self.weight > 0:
            mixed = (1 - self.weight) * targets + self.weight * self.soft_targets(kind, raw)
        extra = self.unlabeled
        if kind == "dehazed" and len(extra):
            extra = dehaze_many(extra, self.teacher.dehaze_params)
        return (np.concatenate([inputs, extra]),
                np.concatenate([mixed, self.soft_targets(kind, self.unlabeled)]).astype(np.float32))


def check_teacher_unseen(teacher_dir: Path, run_dir: Path) -> None:
    """Every validation/test image of this run must be in the teacher's own val/test."""
    unseen = {name for part in ("val", "test")
              for name in read_labels(teacher_dir / f"{part}.csv").names}
    held_out = {name for part in ("val", "test")
                for name in read_labels(run_dir / f"{part}.csv").names}
    leaked = held_out - unseen
    if leaked:
        raise SystemExit(f"--teacher {teacher_dir}: {len(leaked)} of this run's validation/"
                         f"test images (e.g. {sorted(leaked)[0]}) were its training images; "
                         "use the same data and --seed as it was trained with")


def main(argv: list[str] | None = None) -> Path | None:
    argv = sys.argv[1:] if argv is None else argv
    parser = train.get_args_parser(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--teacher", required=True, metavar="MODEL_DIR",
                        help="a model whose TTA probabilities become soft targets")
    parser.add_argument("--teacher-weight", type=float, default=0.5,
                        help="weight of the teacher's probabilities in the training targets")
    parser.add_argument("--unlabeled", default=None, metavar="DIR|TAR",
                        help="unlabelled images the teacher labels")
    args = parser.parse_args(argv)
    args.argv = argv
    args.program = "experiments.distill"  # the command recorded with the network
    teacher_dir = CLASSIFIER_DIRS.resolve(args.teacher)

    def training_set(kind: str, raw: np.ndarray, inputs: np.ndarray,
                     targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_teacher_unseen(teacher_dir, Path(args.out))  # the split is written by now
        labels = read_labels(args.labels).vocabulary()
        distillation = Distillation.load(teacher_dir, labels, args.unlabeled, args.size,
                                         args.teacher_weight, args.device)
        images, soft = distillation.training_set(kind, raw, inputs, targets)
        print(f"distillation: {len(images)} training images")
        return images, soft

    path = train.main(args, make_training_set=training_set)
    if path is not None:
        print(f"distilled from {teacher_dir}")
    return path


if __name__ == "__main__":
    main()
