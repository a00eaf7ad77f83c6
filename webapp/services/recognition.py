"""Worker side: predict a batch's queued images in chunks, one forward pass per chunk.

Idempotent by construction: an item is marked done in the same transaction that stores
its image's prediction, and a prediction is unique per (image, model). A worker killed
mid-chunk leaves that chunk queued; whoever runs the task next predicts it, and nothing
already stored is predicted again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from classifier.imageio import ImageDecodeError, decode_image
from classifier.predictor import Prediction as ModelOutput
from classifier.predictor import Predictor, load_predictor
from webapp.models import Batch, BatchItem, Image, ModelVersion, Prediction
from webapp.services.curation import apply_model_labels
from webapp.services.ingest import refresh_counts
from webapp.services.model_registry import active_model
from webapp.services.storage import save_display_copies
from webapp.tasks import encode_later

log = logging.getLogger(__name__)

_predictors: dict[str, Predictor] = {}
_lock = threading.Lock()


def predictor_for(model: ModelVersion) -> Predictor:
    """Loaded once per worker process and model version."""
    with _lock:
        if model.version not in _predictors:
            if settings.TORCH_THREADS:
                import torch

                torch.set_num_threads(settings.TORCH_THREADS)
            predictor = load_predictor(model.path, device=settings.CLASSIFIER_DEVICE)
            if predictor.version != model.version:
                raise RuntimeError(f"model directory {model.path} now holds "
                                   f"{predictor.version}, not {model.version}; register it again")
            _predictors[model.version] = predictor
        return _predictors[model.version]


@dataclass
class ChunkResult:
    predicted: int = 0
    reused: int = 0
    failed: int = 0
    predicted_ids: list[int] = field(default_factory=list)


def process_batch(batch_id: int, chunk_size: int | None = None) -> Batch | None:
    """Predict every queued item of a batch; progress is committed chunk by chunk."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status == Batch.Status.DONE:
        return batch
    chunk_size = chunk_size or settings.PREDICT_CHUNK_SIZE
    if batch.status == Batch.Status.QUEUED:
        Batch.objects.filter(pk=batch_id, status=Batch.Status.QUEUED).update(
            status=Batch.Status.RUNNING, started_at=timezone.now())
    model = active_model()
    while True:
        items = list(BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.QUEUED)
                     .select_related("image").order_by("position")[:chunk_size])
        if not items:
            break
        try:
            result = process_chunk(items, model)
            log.info("batch %s: chunk of %d items: predicted=%d reused=%d failed=%d",
                     batch_id, len(items), result.predicted, result.reused, result.failed)
            encode_later(result.predicted_ids)  # search codes, in their own task
        except DatabaseError:
            raise  # transient: the task retries, nothing of this chunk was committed
        except Exception as exc:  # a bug or a broken model must not loop forever
            log.exception("prediction failed for batch %s", batch_id)
            with transaction.atomic():
                _finish(items, BatchItem.Status.FAILED,
                        f"prediction failed ({type(exc).__name__}: {exc}); "
                        "upload the file again later or tell an administrator")
        with transaction.atomic():
            refresh_counts(Batch.objects.select_for_update().get(pk=batch_id))
        if settings.WORKER_CHUNK_PAUSE:
            time.sleep(settings.WORKER_CHUNK_PAUSE)
    with transaction.atomic():
        batch = refresh_counts(Batch.objects.select_for_update().get(pk=batch_id))
    return batch


def process_chunk(items: list[BatchItem], model: ModelVersion) -> ChunkResult:
    """Decode, predict the images that have no prediction by this model, store it all."""
    result = ChunkResult()
    by_image: dict[int, list[BatchItem]] = defaultdict(list)
    for item in items:
        by_image[item.image_id].append(item)
    images = {item.image_id: item.image for item in items}
    known = set(Prediction.objects.filter(model=model, image_id__in=list(images))
                .values_list("image_id", flat=True))
    decoded: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    for image_id, image in images.items():
        if image_id in known:
            continue
        try:
            with image.file.open("rb") as handle:
                decoded[image_id] = decode_image(handle.read(), settings.MAX_IMAGE_PIXELS)
        except ImageDecodeError as exc:
            errors[image_id] = str(exc)
        except OSError as exc:
            errors[image_id] = f"stored file cannot be read ({exc})"
    outputs: dict[int, ModelOutput] = {}
    if decoded:
        predictor = predictor_for(model)
        ids = list(decoded)
        outputs = dict(zip(ids, predictor.predict([decoded[i] for i in ids])))
    displays = {i: save_display_copies(images[i].sha256, decoded[i], settings.DISPLAY_SIZE)
                for i in outputs}
    with transaction.atomic():
        for image_id, group in by_image.items():
            image = Image.objects.select_for_update().get(pk=image_id)
            if image_id in errors:
                image.status, image.error = Image.Status.BROKEN, errors[image_id]
                image.save(update_fields=["status", "error"])
                _finish(group, BatchItem.Status.FAILED, errors[image_id])
                result.failed += len(group)
                continue
            if image_id in outputs:
                image.display, image.dehazed = displays[image_id]
                stored, created = store_prediction(image, model, outputs[image_id])
                result.predicted += int(created)
                result.predicted_ids.append(image_id)
            _finish(group, BatchItem.Status.DONE, "", reused=image_id in known)
            result.reused += len(group) if image_id in known else 0
    return result


def store_prediction(image: Image, model: ModelVersion,
                     output: ModelOutput) -> tuple[Prediction, bool]:
    """Save one prediction (once per image and model) and refresh the model's labels."""
    prediction, created = Prediction.objects.get_or_create(
        image=image, model=model,
        defaults={"probabilities": output.probabilities, "tags": output.tags,
                  "confidence": output.confidence})
    image.prediction, image.confidence = prediction, prediction.confidence
    image.status, image.error = Image.Status.READY, ""
    image.save(update_fields=["prediction", "confidence", "status", "error", "display",
                              "dehazed"])
    apply_model_labels(image, prediction)
    return prediction, created


def _finish(items: list[BatchItem], status: str, error: str, reused: bool = False) -> None:
    for item in items:
        item.status, item.error, item.reused = status, error, reused or item.reused
        item.save(update_fields=["status", "error", "reused", "updated_at"])
