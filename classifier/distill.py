"""Soft targets from a teacher model, for training a network on more than the labels.

The teacher's TTA-averaged probabilities (the same network kind, so on the same scale)
become targets: on unlabelled chips alone (self-training, as Noisy Student does it,
with this network's own augmentation and dropout as the noise), and mixed into the
training labels with weight ``w``: target = (1 - w) * label + w * teacher. The losses
take soft targets as they are. The teacher must not have trained on this run's
validation or test images; ``pipeline`` checks that like it does for ``--init-from``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.data import LabelTable, list_image_names, load_images
from classifier.dehaze import dehaze_many
from classifier.predictor import Predictor


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
