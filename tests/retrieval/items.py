"""Tiny made-up collections for ``python -m retrieval train`` tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from tests.synthetic import chip

TAGS = ("bright", "reddish", "striped")


def write_items(root: Path, count: int = 80) -> dict[str, Path]:
    """Labels, captions and a tar of ``count`` distinct chips."""
    rng = np.random.default_rng(3)
    labels, captions = [], []
    with tarfile.open(root / "images.tar", "w") as archive:
        for i in range(count):
            tags = {t for t in TAGS if rng.random() < 0.4} or {"bright"}
            buf = io.BytesIO()
            chip(rng, tags).save(buf, "PNG")
            info = tarfile.TarInfo(f"images/item_{i}.png")
            info.size = buf.tell()
            buf.seek(0)
            archive.addfile(info, buf)
            labels.append(f"item_{i}," + " ".join(sorted(tags)))
            captions.append(f"item_{i},a chip that is " + " and ".join(sorted(tags)))
    (root / "labels.csv").write_text("image_name,tags\n" + "\n".join(labels) + "\n")
    (root / "captions.csv").write_text("image_name,caption\n" + "\n".join(captions) + "\n")
    return {"labels": root / "labels.csv", "captions": root / "captions.csv",
            "images": root / "images.tar"}


# a few seconds: 80 items -> 54 backbone / 6 early stopping / 20 queries, 16 bits
TINY_MODEL = ["--bits", "16", "--text-encoder", "bow", "--size", "32", "--backbone-width",
              "0.125", "--backbone-epochs", "1", "--epochs", "1", "--batch-size", "16",
              "--val-fraction", "0.25", "--threads", "1"]
