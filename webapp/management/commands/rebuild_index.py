"""Recompute the search codes of every ready image (after changing the retrieval model)."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from webapp.models import Image, ImageCode
from webapp.services import search


class Command(BaseCommand):
    help = "Encode every ready image with the retrieval model (RETRIEVAL_MODEL) for search."

    def add_arguments(self, parser):
        parser.add_argument("--chunk", type=int, default=256)
        parser.add_argument("--missing-only", action="store_true",
                            help="only images without codes of the current model")

    def handle(self, chunk, missing_only, **options):
        if not search.available():
            raise CommandError("no retrieval model: set RETRIEVAL_MODEL or train one")
        images = Image.objects.filter(status=Image.Status.READY).order_by("pk")
        if missing_only:
            current = ImageCode.objects.filter(model=search.model_version(),
                                               bits=search.code_bits())
            images = images.exclude(pk__in=current.values("image_id"))
        ids = list(images.values_list("pk", flat=True))
        done = 0
        with tqdm(total=len(ids), desc="encoding", unit="img") as bar:
            for start in range(0, len(ids), chunk):
                part = ids[start:start + chunk]
                done += search.encode_images(part)
                bar.update(len(part))
        self.stdout.write(f"encoded {done} of {len(ids)} images with {search.model_version()}")
