"""Export curated labels (and optionally the images) for `python -m classifier train`."""

from pathlib import Path

from django.core.management.base import BaseCommand

from webapp.models import Image
from webapp.services.export import labels_csv, write_dataset


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
        if scene:
            images = images.filter(scene_tiles__scene_id__in=scene)
        if batch:
            images = images.filter(batch_items__batch_id__in=batch)
        images = images.distinct()
        if dataset:
            count = write_dataset(images, Path(out), reviewed_only)
            self.stdout.write(f"wrote {count} images and {Path(out) / 'labels.csv'}")
        else:
            Path(out).write_text(labels_csv(images, reviewed_only))
            self.stdout.write(f"wrote {out}")
