"""Export curated labels (and optionally the images) for `python -m classifier train`."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db.models import Exists, OuterRef
from tqdm import tqdm

from webapp.models import BatchItem, Image, SceneTile
from webapp.services.export import write_dataset, write_labels_csv


class Command(BaseCommand):
    help = ("Write curated labels as a Planet CSV (image_name,tags); --dataset adds images. "
            "Scene tiles are images like any other (their chips are the files).")

    def add_arguments(self, parser):
        parser.add_argument("out", help="CSV file, or a folder with --dataset")
        parser.add_argument("--dataset", action="store_true",
                            help="write OUT/labels.csv and OUT/images/<image_name>.<ext>")
        parser.add_argument("--reviewed-only", action="store_true",
                            help="only images a person reviewed")
        parser.add_argument("--scene", type=int, action="append", default=[], metavar="ID",
                            help="only the tiles of this scene (repeatable)")
        parser.add_argument("--batch", type=int, action="append", default=[], metavar="ID",
                            help="only the images of this batch, scene tiles included")

    def handle(self, out, dataset, reviewed_only, scene, batch, **options):
        images = Image.objects.all()
        if scene:  # EXISTS, not a join: no DISTINCT over the whole collection
            images = images.filter(Exists(SceneTile.objects.filter(
                image=OuterRef("pk"), scene_id__in=scene)))
        if batch:
            images = images.filter(Exists(BatchItem.objects.filter(
                image=OuterRef("pk"), batch_id__in=batch)))
        if dataset:
            count = write_dataset(images, Path(out), reviewed_only)
            self.stdout.write(f"wrote {count} images and {Path(out) / 'labels.csv'}")
            return
        # streamed: rows go to the file as they are read, a chunk of images at a time
        with open(out, "w", encoding="utf-8", newline="") as stream, \
                tqdm(unit="img", desc="export", disable=options["verbosity"] < 1,
                     file=sys.stderr) as bar:
            count = write_labels_csv(images, stream, reviewed_only, progress=bar.update)
        self.stdout.write(f"wrote {out}: {count} images")
