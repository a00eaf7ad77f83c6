"""Curated labels out as Planet-format CSV (image_name,tags): what `python -m classifier
train --labels` reads. Image names are `img_<id>`; `write_dataset` also writes the images
as <name>.<ext> so the pair trains as is."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

from django.db.models import QuerySet

from webapp.models import Image, ImageLabel


def label_rows(images: QuerySet[Image], reviewed_only: bool = False) -> Iterator[tuple[str, str]]:
    """(image_name, space-separated tags) per image, in id order, streaming."""
    images = images.filter(status=Image.Status.READY)
    if reviewed_only:
        images = images.filter(reviewed=True)
    ids = images.order_by("pk").values_list("pk", flat=True)
    for start in range(0, len(ids), 2000):
        chunk = list(ids[start:start + 2000])
        tags: dict[int, list[str]] = {i: [] for i in chunk}
        for image_id, name in (ImageLabel.objects.filter(image_id__in=chunk)
                               .order_by("label__name").values_list("image_id", "label__name")):
            tags[image_id].append(name)
        for image_id in chunk:
            yield f"img_{image_id}", " ".join(tags[image_id])


def labels_csv(images: QuerySet[Image], reviewed_only: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_name", "tags"])
    writer.writerows(label_rows(images, reviewed_only))
    return buffer.getvalue()


def write_dataset(images: QuerySet[Image], out: Path, reviewed_only: bool = False) -> int:
    """out/labels.csv and out/images/<image_name>.<ext>; returns the number of images."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    (out / "labels.csv").write_text(labels_csv(images, reviewed_only))
    count = 0
    names = {name for name, _ in label_rows(images, reviewed_only)}
    for image in images.filter(pk__in=[int(n[4:]) for n in names]).iterator():
        suffix = Path(image.file.name).suffix
        with image.file.open("rb") as src, open(out / "images" / f"{image.name}{suffix}",
                                                "wb") as dst:
            shutil.copyfileobj(src, dst)
        count += 1
    return count
