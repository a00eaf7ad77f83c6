"""Items for cross-modal retrieval: (image, text, label vector) per image name.

Labels come from a Planet-format CSV; texts from a captions CSV (`image_name,caption`,
several rows per image allowed: an item's text is all its captions) or, without one,
from the image's tags and the everyday words for them ("partly cloudy clouds primary
rainforest forest trees jungle road roads"; ``retrieval.text.Wording``).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagery.datasets import LabelTable, load_images, read_labels
from retrieval.text import Wording, default_wording


@dataclass
class Collection:
    names: list[str]
    label_names: list[str]
    labels: np.ndarray          # N x C in {0, 1}
    texts: list[str]            # one text per item
    captions: list[list[str]]   # the single captions behind each text
    images: np.ndarray | None   # N x S x S x 3 uint8 (None when only texts are needed)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: np.ndarray) -> Collection:
        index = np.asarray(index)
        return Collection([self.names[i] for i in index], self.label_names,
                          self.labels[index], [self.texts[i] for i in index],
                          [self.captions[i] for i in index],
                          None if self.images is None else self.images[index])


def read_captions(path: str | Path) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or {"image_name", "caption"} - set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header 'image_name,caption'")
        for row in reader:
            text = (row["caption"] or "").strip()
            if text:
                captions[row["image_name"].strip()].append(text)
    return dict(captions)


def tags_text(tags: list[str], wording: Wording | None = None) -> str:
    """Text for an image known only by its tags, in ``wording``'s everyday words for them
    (default: the package's, see ``retrieval.text.Wording``)."""
    return (wording or default_wording()).tags_text(tags)


def load_collection(labels_csv: str | Path, images: str | Path | None, size: int,
                    captions_csv: str | Path | None = None,
                    label_names: list[str] | None = None,
                    progress: bool = True, wording: Wording | None = None) -> Collection:
    """Read labels, texts and (if ``images`` is given) decoded images of every item that
    has all it needs; items without an image or without a caption are left out. Without
    captions, texts are made from the tags in ``wording``'s words."""
    table: LabelTable = read_labels(labels_csv)
    label_names = label_names or table.vocabulary()
    captions = read_captions(captions_csv) if captions_csv else None
    keep = [i for i, name in enumerate(table.names) if captions is None or name in captions]
    table = table.subset(keep)
    if images is not None:
        decoded = load_images(table, images, size, label_names, progress=progress)
        names, pixels, targets = decoded.names, decoded.images, decoded.targets
    else:
        names, pixels, targets = table.names, None, table.matrix(label_names)
    tags = dict(zip(table.names, table.tags))
    caps = [captions[n] if captions is not None else [tags_text(sorted(set(tags[n])), wording)]
            for n in names]
    return Collection(list(names), list(label_names), targets.astype(np.float32),
                      [" ".join(c) for c in caps], caps, pixels)
