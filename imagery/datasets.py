"""Planet-format multi-label data: ``image_name,tags`` CSVs and images in a folder or a tar.

The label vocabulary comes from the data (sorted, so it is stable), never from a
hard-wired list: the same code trains on Planet's 17 labels or UC Merced's 17 others.
Repeated tags on a row (``cultivation cultivation``) count once.
"""

from __future__ import annotations

import csv
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from imagery.decode import ImageDecodeError, decode_image, resize_square

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")


@dataclass
class LabelTable:
    """Image names and their tag sets, in file order."""

    names: list[str]
    tags: list[list[str]]

    def vocabulary(self) -> list[str]:
        return sorted({tag for row in self.tags for tag in row})

    def matrix(self, labels: Sequence[str]) -> np.ndarray:
        """Binary N x L matrix over ``labels``; tags outside ``labels`` are ignored."""
        index = {label: j for j, label in enumerate(labels)}
        y = np.zeros((len(self.names), len(labels)), dtype=np.float32)
        for i, row in enumerate(self.tags):
            for tag in row:
                if tag in index:
                    y[i, index[tag]] = 1.0
        return y

    def subset(self, indices: Sequence[int]) -> LabelTable:
        return LabelTable([self.names[i] for i in indices], [self.tags[i] for i in indices])


def read_labels(path: str | Path) -> LabelTable:
    """Read an ``image_name,tags`` CSV; tags are space separated, duplicates dropped."""
    names: list[str] = []
    tags: list[list[str]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"image_name", "tags"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: expected columns image_name,tags; missing {sorted(missing)}")
        for row in reader:
            name = (row["image_name"] or "").strip()
            if not name:
                continue
            names.append(name)
            tags.append(sorted(set((row["tags"] or "").split())))
    if not names:
        raise ValueError(f"{path}: no labelled rows")
    return LabelTable(names, tags)


def write_labels(path: str | Path, names: Sequence[str], tags: Sequence[Sequence[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_name", "tags"])
        for name, row in zip(names, tags):
            writer.writerow([name, " ".join(row)])


def _stem(member_name: str) -> str | None:
    path = PurePosixPath(member_name)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return path.stem


def list_image_names(source: str | Path) -> list[str]:
    """Every image name in a folder or a .tar (for unlabelled images: no CSV names them)."""
    source = Path(source)
    if source.is_dir():
        stems = (_stem(p.name) for p in source.rglob("*") if p.is_file())
    elif source.exists():
        with tarfile.open(source) as archive:
            stems = [_stem(m.name) for m in archive if m.isfile()]
    else:
        raise FileNotFoundError(f"image source not found: {source}")
    return sorted({stem for stem in stems if stem})


def iter_image_bytes(source: str | Path, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (image_name, file bytes) for the wanted names from a folder or a .tar file."""
    source = Path(source)
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            stem = _stem(path.name)
            if stem in wanted and path.is_file():
                yield stem, path.read_bytes()
        return
    if not source.exists():
        raise FileNotFoundError(f"image source not found: {source}")
    with tarfile.open(source) as archive:
        for member in archive:
            stem = _stem(member.name) if member.isfile() else None
            if stem in wanted:
                handle = archive.extractfile(member)
                if handle is not None:
                    yield stem, handle.read()


@dataclass
class ImageSet:
    """Decoded images (N x S x S x 3 uint8) with names and labels; unreadable ones listed."""

    names: list[str]
    images: np.ndarray
    targets: np.ndarray
    labels: list[str]
    errors: dict[str, str]


def load_images(
    table: LabelTable,
    source: str | Path,
    size: int,
    labels: Sequence[str] | None = None,
    progress: bool = True,
) -> ImageSet:
    """Decode every image named in ``table`` from ``source``, resized to size x size.

    Missing or unreadable files are reported in ``errors`` and left out, not fatal.
    """
    labels = list(labels) if labels is not None else table.vocabulary()
    position = {name: i for i, name in enumerate(table.names)}
    decoded: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    stream = iter_image_bytes(source, set(position))
    for name, blob in tqdm(stream, total=len(position), desc="decode", disable=not progress,
                           unit="img"):
        try:
            decoded[name] = resize_square(decode_image(blob), size)
        except ImageDecodeError as exc:
            errors[name] = str(exc)
    for name in table.names:
        if name not in decoded and name not in errors:
            errors[name] = "no image file with this name in the image source"
    kept = [name for name in table.names if name in decoded]
    images = (np.stack([decoded[n] for n in kept]) if kept
              else np.zeros((0, size, size, 3), np.uint8))
    targets = table.subset([position[n] for n in kept]).matrix(labels)
    return ImageSet(kept, images, targets, labels, errors)


def split_indices(
    count: int, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Shuffle 0..count-1 and cut it into parts of the given fractions (the rest first)."""
    order = np.random.default_rng(seed).permutation(count)
    sizes = [int(round(count * f)) for f in fractions]
    parts, start = [], count - sum(sizes)
    parts.append(np.sort(order[:start]))
    for size in sizes:
        parts.append(np.sort(order[start:start + size]))
        start += size
    return parts
