"""What leaves the app as files.

- Curated labels as Planet-format CSV (image_name,tags): what `python -m classifier train
  --labels` reads. Image names are `img_<id>`; `write_dataset` also writes the images as
  <name>.<ext> so the pair trains as is.
- Results for people (``RESULT_COLUMNS``): a batch's items with their scene tile
  positions, or a gallery selection, with tags and probabilities; streamed.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from django.db.models import QuerySet

from webapp.models import Batch, BatchItem, Image, ImageLabel
from webapp.services import label_index


def _exported(images: QuerySet[Image], reviewed_only: bool) -> QuerySet[Image]:
    """The images an export writes: tagged ones (reviewed ones only, if asked)."""
    images = images.filter(status=Image.Status.READY)
    return images.filter(reviewed=True) if reviewed_only else images


def label_rows(images: QuerySet[Image], reviewed_only: bool = False,
               chunk: int = 5000) -> Iterator[tuple[str, str]]:
    """(image_name, space-separated tags, sorted) per image, in id order: read ``chunk``
    images at a time by id (keyset), their tags from the label-id column, so a million
    images stream in bounded memory."""
    images = _exported(images, reviewed_only)
    names = label_index.label_names()
    last = 0
    while True:
        rows = list(images.filter(pk__gt=last).order_by("pk")
                    .values_list("pk", "label_ids")[:chunk])
        for image_id, label_ids in rows:
            yield f"img_{image_id}", " ".join(label_index.named(label_ids, names))
        if len(rows) < chunk:
            return
        last = rows[-1][0]


def write_labels_csv(images: QuerySet[Image], stream: TextIO, reviewed_only: bool = False,
                     progress: Callable[[int], object] | None = None) -> int:
    """The Planet CSV written to ``stream`` row by row; returns the number of images."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["image_name", "tags"])
    count = 0
    for row in label_rows(images, reviewed_only):
        writer.writerow(row)
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(1000)
    if progress is not None:
        progress(count % 1000)
    return count


def labels_csv(images: QuerySet[Image], reviewed_only: bool = False) -> str:
    buffer = io.StringIO()
    write_labels_csv(images, buffer, reviewed_only)
    return buffer.getvalue()


def write_dataset(images: QuerySet[Image], out: Path, reviewed_only: bool = False) -> int:
    """out/labels.csv and out/images/<image_name>.<ext>; returns the number of images."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    with open(out / "labels.csv", "w", encoding="utf-8", newline="") as stream:
        write_labels_csv(images, stream, reviewed_only)
    count = 0
    for image in _exported(images, reviewed_only).order_by("pk").iterator(chunk_size=2000):
        suffix = Path(image.file.name).suffix
        with image.file.open("rb") as src, open(out / "images" / f"{image.name}{suffix}",
                                                "wb") as dst:
            shutil.copyfileobj(src, dst)
        count += 1
    return count


RESULT_COLUMNS = ["filename", "batch", "scene", "row", "col", "image", "status", "tags",
                  "probabilities", "reviewed", "split", "error"]
_CHUNK = 1000


def _labels_of(image_ids: list[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {i: [] for i in image_ids}
    for image_id, name in (ImageLabel.objects.filter(image_id__in=image_ids)
                           .order_by("label__name").values_list("image_id", "label__name")):
        tags[image_id].append(name)
    return tags


def _probabilities(prediction) -> str:
    """``label:probability`` pairs, highest first, 4 decimals (one CSV cell)."""
    if prediction is None:
        return ""
    pairs = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])
    return " ".join(f"{name}:{value:.4f}" for name, value in pairs)


def batch_result_rows(batch: Batch) -> Iterator[list]:
    """One row per item of a batch, in upload order (a scene's tiles with their scene,
    row and column), with the image's current labels and its prediction; streaming in
    chunks, so memory stays bounded for any batch size."""
    after = -1
    while True:
        items = list(BatchItem.objects.filter(batch=batch, position__gt=after)
                     .select_related("image__prediction", "scene_tile__scene")
                     .order_by("position")[:_CHUNK])
        if not items:
            return
        labels = _labels_of([item.image_id for item in items if item.image_id])
        for item in items:
            image, tile = item.image, getattr(item, "scene_tile", None)
            yield [item.filename, batch.pk, tile.scene.filename if tile else "",
                   tile.row if tile else "", tile.col if tile else "",
                   image.pk if image else "", item.status,
                   " ".join(labels.get(item.image_id, [])),
                   _probabilities(image.prediction if image else None),
                   image.reviewed if image else "", image.split if image else "",
                   item.error]
        after = items[-1].position


def image_result_rows(images: QuerySet[Image]) -> Iterator[list]:
    """One row per image of a (filtered, access-checked) queryset, newest first, in
    chunks by keyset: the gallery's export."""
    images = images.select_related("prediction").order_by("-id")
    last = None
    while True:
        chunk = list((images.filter(pk__lt=last) if last else images)[:_CHUNK])
        if not chunk:
            return
        labels = _labels_of([image.pk for image in chunk])
        for image in chunk:
            yield [image.original_name, "", "", "", "", image.pk, image.status,
                   " ".join(labels[image.pk]), _probabilities(image.prediction),
                   image.reviewed, image.split, image.error]
        last = chunk[-1].pk


def csv_lines(rows: Iterator[list]) -> Iterator[str]:
    """The header and each row as one CSV line (for a streamed response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow(row)
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
