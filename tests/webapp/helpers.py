"""Helpers for the web app tests that need no worker: images stored through the real
ingest service and predictions stored through the real recognition service, with
outputs made by hand (the real model runs only where a test says so)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from django.core.files.uploadedfile import SimpleUploadedFile

from classifier.predictor import Prediction as ModelOutput
from imagery.decode import decode_image
from tests.webapp.conftest import make_image
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, ImageLabel, ModelVersion, Prediction
from webapp.services.batches import do_create_batch as create_batch
from webapp.services.batches import refresh_counts
from webapp.services.ingest import add_files
from webapp.services.model_registry import active_model
from webapp.services.recognition import store_predictions
from webapp.services.storage import save_display_copies

LABELS = ("agriculture", "artisinal_mine", "bare_ground", "blooming", "blow_down", "clear",
          "cloudy", "conventional_mine", "cultivation", "habitation", "haze", "partly_cloudy",
          "primary", "road", "selective_logging", "slash_burn", "water")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(owner, files: Iterable[tuple[str, bytes]], batch: Batch | None = None
           ) -> tuple[Batch, list[BatchItem]]:
    """Store (name, bytes) pairs in a batch (a new one unless given) via ingest.add_files."""
    batch = batch or create_batch(owner)
    items = add_files(batch, [SimpleUploadedFile(name, data) for name, data in files])
    return batch, items


def output(tags: Sequence[str], confidence: float = 0.3,
           probabilities: dict[str, float] | None = None) -> ModelOutput:
    """A model output for all 17 labels: 0.9 for the tags, 0.05 for the others."""
    probs = {name: (0.9 if name in tags else 0.05) for name in LABELS}
    probs.update(probabilities or {})
    return ModelOutput(probabilities=probs, tags=list(tags), confidence=confidence)


def store_prediction(image: Image, model: ModelVersion,
                     output: ModelOutput) -> tuple[Prediction, bool]:
    """One image's prediction stored as the worker stores a chunk's: (it, whether new)."""
    created = store_predictions([image], model, {image.pk: output})[image.pk]
    return image.prediction, created


def predict(image: Image, tags: Sequence[str], confidence: float = 0.3,
            probabilities: dict[str, float] | None = None, model: ModelVersion | None = None,
            display: bool = True) -> Prediction:
    """Store a prediction as the worker does (display copies included, unless told not)."""
    if display:
        with image.file.open("rb") as handle:
            rgb = decode_image(handle.read())
        image.display, image.dehazed = save_display_copies(image.sha256, rgb,
                                                           app_settings.DISPLAY_SIZE)
    prediction, _ = store_prediction(image, model or active_model(),
                                     output(tags, confidence, probabilities))
    return prediction


def finish(batch: Batch) -> Batch:
    """Mark the queued items of predicted images done, as the worker does, and recount."""
    for item in batch.items.filter(status=BatchItem.Status.QUEUED).select_related("image"):
        if item.image and item.image.status == Image.Status.READY:
            item.status = BatchItem.Status.DONE
            item.save(update_fields=["status", "updated_at"])
    batch.refresh_from_db()
    return refresh_counts(batch)


def predicted_image(owner, seed: int, tags: Sequence[str], confidence: float = 0.3,
                    name: str | None = None, batch: Batch | None = None,
                    kind: str = "jpeg") -> Image:
    """A new image, uploaded in a batch and predicted with the given tags."""
    ext = {"jpeg": "jpg", "png": "png", "tiff4": "tif"}.get(kind, kind)
    batch, (item,) = upload(owner, [(name or f"chip{seed}.{ext}", make_image(kind, seed=seed))],
                            batch)
    image = Image.objects.get(pk=item.image_id)
    predict(image, tags, confidence)
    finish(batch)
    image.refresh_from_db()
    return image


def second_model() -> ModelVersion:
    """Another (inactive) model version over the same labels, to make a newer prediction."""
    return ModelVersion.objects.create(version="test-newer-1", name="newer", path="unused",
                                       labels=list(LABELS))


def label_state(image: Image) -> dict[str, tuple[str, bool, str | None]]:
    """label name -> (source, reviewed, added_by username)."""
    return {il.label.name: (il.source, il.reviewed, il.added_by.username if il.added_by else None)
            for il in ImageLabel.objects.filter(image=image).select_related("label", "added_by")}


def label_names(image: Image) -> set[str]:
    return set(ImageLabel.objects.filter(image=image).values_list("label__name", flat=True))


def csrf_token(html: str) -> str:
    """The csrfmiddlewaretoken of the first form in a page."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def assert_label_index_matches() -> None:
    """Every image's ``label_ids`` (the tag filters' indexed form) equals its label rows."""
    rows: dict[int, set[int]] = {}
    for image_id, label_id in ImageLabel.objects.values_list("image_id", "label_id"):
        rows.setdefault(image_id, set()).add(label_id)
    for image_id, ids in Image.objects.values_list("pk", "label_ids"):
        assert ids == sorted(rows.get(image_id, ())), (image_id, ids, rows.get(image_id))
