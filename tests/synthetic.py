"""Generated chips whose look follows made-up labels, for end-to-end tests of any model."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def chip(rng: np.random.Generator, tags: set[str], size: int = 32) -> Image.Image:
    """'bright' lifts the level, 'reddish' the red channel, 'striped' inverts every 4th row."""
    img = rng.normal(170 if "bright" in tags else 60, 12, (size, size, 3))
    if "reddish" in tags:
        img[:, :, 0] += 70
    if "striped" in tags:
        img[::4, :, :] = 250 - img[::4, :, :]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


LABELS = ("bright", "reddish", "striped")
# a tiny network on 120 chips: 60 train / 30 val / 30 test, a few seconds per run
TINY_TRAINING = ["--size", "32", "--width", "0.125", "--hidden", "32", "--batch-size", "16",
                 "--val-fraction", "0.25", "--test-fraction", "0.25", "--threads", "1"]


def write_dataset(root: Path, count: int = 120, seed: int = 0) -> tuple[Path, Path]:
    """A Planet-format CSV and a tar of ``count`` chips with made-up labels."""
    rng = np.random.default_rng(seed)
    rows = []
    with tarfile.open(root / "images.tar", "w") as archive:
        for i in range(count):
            tags = {label for label in LABELS if rng.random() < 0.5} or {"bright"}
            buf = io.BytesIO()
            chip(rng, tags).save(buf, "JPEG", quality=95)
            info = tarfile.TarInfo(f"imgs/chip_{i}.jpg")
            info.size = buf.tell()
            buf.seek(0)
            archive.addfile(info, buf)
            # a repeated tag must count once
            rows.append(f"chip_{i}," + " ".join(sorted(tags) + sorted(tags)[:1]))
    (root / "labels.csv").write_text("image_name,tags\n" + "\n".join(rows) + "\n")
    return root / "labels.csv", root / "images.tar"


def train_args(dataset: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    """``python -m classifier train`` arguments for a tiny network on ``dataset``."""
    labels, images = dataset
    return ["train", "--labels", str(labels), "--images", str(images), "--out", str(out),
            *TINY_TRAINING, *extra]
