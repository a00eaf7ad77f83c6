"""Worker side: predict a batch's queued images in chunks, one forward pass per chunk.

One pass per image. Each image is decoded once, shrunk while decoding (never held at
full size beyond its own decode), and turned into what the pipeline needs: the model
input and the display copy. The same forward pass gives the tags and the descriptor its
search image code is made of; the text code comes from the labels it then has. A chunk
holds model-size inputs and display copies only, and stops growing at
``PREDICT_CHUNK_PIXELS`` uploaded pixels.

Exactly once. An item is marked done in the same transaction that stores its image's
prediction, and a prediction is unique per (image, model). The worker runs a batch under
its lease (``webapp.services.leases``), renewed per chunk and per image, and commits a
chunk only while it still holds it.

Poison inputs fail alone and faults that are not the images' (the database or the
broker went away, the model cannot be loaded, the disk is full) take their attempt back
and stop the run: the task retries and the heal job resends, and nothing is failed.
Chunks, attempts and poison handling are the batch's own (``webapp.services.batches``);
this module is the method applied to one chunk.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from django.db import DatabaseError, transaction

from classifier import verify_model
from imagery import partial
from imagery.decode import ImageDecodeError, decode_image, resize_square
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, ModelVersion, Prediction
from webapp.services import batches, search, threads, tiling
from webapp.services.curation import apply_model_labels_many
from webapp.services.leases import Lease, LeaseLost, work_under
from webapp.services.model_registry import active_model
from webapp.services.process_cache import ProcessCache
from webapp.services.storage import display_array, save_display_copies

if TYPE_CHECKING:  # torch loads with the first prediction, not at start-up
    from classifier import Prediction as ModelOutput
    from classifier import Predictor

log = logging.getLogger(__name__)

POISONED = batches.POISONED
FAILED = ("prediction failed because of an internal error; upload the file again later "
          "or tell an administrator")

_predictors: ProcessCache[Predictor] = ProcessCache()


def predictor_for(model: ModelVersion) -> Predictor:
    """Loaded once per worker process and model version; one chunk = one forward pass."""
    return _predictors.get(model.version, lambda: _load_predictor(model))


class ModelUnavailable(RuntimeError):
    """The model's files are missing, damaged or changed: no image is to blame."""


def _load_predictor(model: ModelVersion) -> Predictor:
    try:
        from classifier import load_predictor  # torch loads with the first prediction

        predictor = load_predictor(model.path, threads=app_settings.TORCH_THREADS,
                                   device=app_settings.CLASSIFIER_DEVICE,
                                   batch_size=app_settings.PREDICT_CHUNK_SIZE)
    except Exception as exc:  # noqa: BLE001 - missing, truncated, unpicklable, wrong digest
        raise ModelUnavailable(f"model {model.version} at {model.path} cannot be loaded: "
                               f"{exc}") from exc
    if predictor.version != model.version:
        raise ModelUnavailable(f"model directory {model.path} now holds "
                               f"{predictor.version}, not {model.version}; register it again")
    return predictor


def check_model() -> str:
    """Verify the active model's files (every network there, with the sha256 it was
    assembled with) without loading the networks; a worker calls this before it takes any
    task and refuses to start when it raises ModelUnavailable. Returns the model's version."""
    model = active_model()
    try:
        version = verify_model(model.path).version
    except Exception as exc:  # noqa: BLE001 - missing folder, unreadable spec, bad digest
        raise ModelUnavailable(f"model {model.version} at {model.path}: {exc}") from exc
    if version != model.version:
        raise ModelUnavailable(f"model directory {model.path} now holds {version}, not "
                               f"{model.version}; register it again")
    return version


@dataclass
class ChunkResult:
    predicted: int = 0
    reused: int = 0
    failed: int = 0
    predicted_ids: list[int] = field(default_factory=list)


@dataclass
class Decoded:
    """What the pipeline keeps of one image: model input, display copy, search input."""

    model_input: np.ndarray
    display: np.ndarray
    search_input: np.ndarray | None = None


def process_batch(batch_id: int, chunk_size: int | None = None) -> Batch | None:
    """Predict every queued item of a batch; progress is committed chunk by chunk."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.status == Batch.Status.DONE:
        return batch
    size = chunk_size or app_settings.PREDICT_CHUNK_SIZE
    if not work_under(batches.lease(batch_id), lambda lease: _run(lease, size)):
        log.info("batch %s: not taken (not submitted, or another worker runs it)", batch_id)
        return batch
    return Batch.objects.get(pk=batch_id)


def _run(lease: Lease, chunk_size: int) -> None:
    batch_id = lease.pk
    model = active_model()
    while True:
        lease.beat(force=True)
        batches.fail_poisoned(batch_id)
        items = batches.next_chunk(batch_id, chunk_size)
        if len(items) < chunk_size and tiling.tile_some(batch_id, model, chunk_size, lease):
            continue  # a scene's next tile rows became items: take a fuller chunk
        if not items:
            break
        batches.count_attempt(items)  # committed: survives this process being killed
        try:
            result = process_chunk(items, model, lease)
            log.info("batch %s: chunk of %d items: predicted=%d reused=%d failed=%d",
                     batch_id, len(items), result.predicted, result.reused, result.failed)
        except (DatabaseError, LeaseLost, ModelUnavailable, OSError):
            # not the images' fault: nothing was committed; the attempt is taken back so
            # that only a worker's death counts, and the task retries or the heal resends
            batches.take_back_attempts(items)
            raise
        except Exception:  # a bug must not loop forever
            log.exception("prediction failed for batch %s", batch_id)
            with transaction.atomic():
                batches.finish_items(items, BatchItem.Status.FAILED, FAILED)
        batches.do_refresh_counts(batch_id)
        if app_settings.WORKER_CHUNK_PAUSE:
            time.sleep(app_settings.WORKER_CHUNK_PAUSE)
    batches.do_refresh_counts(batch_id)


def decode_for_pipeline(image: Image, model_size: int,
                        search_size: int | None = None) -> Decoded:
    """Decode one stored image straight to the model input and the display copy. A
    partial tile's model and search inputs are made of its data window alone
    (imagery.partial, PARTIAL_TILE_VIEW); its display copy is the tile as stored."""
    display_size = app_settings.DISPLAY_SIZE
    keep_shortest = 2 * max(model_size, search_size or 0)
    with image.file.open("rb") as handle:
        rgb = decode_image(handle, app_settings.MAX_IMAGE_PIXELS, keep_longest=2 * display_size,
                           keep_shortest=keep_shortest)
    seen = partial.model_view(rgb, image.data_window, app_settings.PARTIAL_TILE_VIEW,
                              source=(image.width, image.height))
    model_input = resize_square(seen, model_size)
    search_input = None
    if search_size:
        search_input = model_input if search_size == model_size else \
            resize_square(seen, search_size)
    return Decoded(model_input, display_array(rgb, display_size), search_input)


def process_chunk(items: list[BatchItem], model: ModelVersion,
                  lease: Lease | None = None) -> ChunkResult:
    """Decode, predict the images that have no prediction by this model, store it all:
    prediction, labels, display copies and search codes, in one transaction per chunk."""
    result = ChunkResult()
    by_image: dict[int, list[BatchItem]] = defaultdict(list)
    for item in items:
        by_image[item.image_id].append(item)
    images = {item.image_id: item.image for item in items}
    known = set(Prediction.objects.filter(model=model, image_id__in=list(images))
                .values_list("image_id", flat=True))
    todo = [i for i in images if i not in known]
    decoded: dict[int, Decoded] = {}
    errors: dict[int, str] = {}
    predictor = predictor_for(model) if todo else None
    plan = search.code_plan(predictor.feature_network_digest, predictor.image_size) \
        if predictor else None
    for image_id in todo:
        if images[image_id].status == Image.Status.BROKEN:
            errors[image_id] = images[image_id].error
    search_size = plan.image_size if plan and not plan.use_features else None

    def decode(image_id: int) -> Decoded | str:
        image = images[image_id]
        try:
            return decode_for_pipeline(image, predictor.image_size, search_size)
        except ImageDecodeError as exc:
            return str(exc)
        except OSError:
            log.exception("stored file of image %s cannot be read", image_id)
            return "the stored file cannot be read; upload it again"

    readable = [i for i in todo if i not in errors]
    for image_id, found in zip(readable, threads.map_ordered(decode, readable)):
        if lease is not None:
            lease.beat()
        if isinstance(found, str):
            errors[image_id] = found
        else:
            decoded[image_id] = found
    outputs: dict[int, ModelOutput] = {}
    if decoded:
        ids = list(decoded)
        outputs = dict(zip(ids, predictor.predict([decoded[i].model_input for i in ids],
                                                  features=bool(plan and plan.use_features))))
    displays = dict(zip(outputs, threads.map_ordered(
        lambda i: save_display_copies(images[i].sha256, decoded[i].display,
                                      app_settings.DISPLAY_SIZE), list(outputs))))
    if lease is not None:
        lease.beat()
    with transaction.atomic():
        if lease is not None:
            lease.hold()
        locked = {image.pk: image for image in
                  Image.objects.select_for_update().filter(pk__in=list(by_image))}
        for image_id, error in errors.items():
            Image.objects.filter(pk=image_id).update(status=Image.Status.BROKEN, error=error)
            batches.finish_items(by_image[image_id], BatchItem.Status.FAILED, error)
            result.failed += len(by_image[image_id])
        for image_id in outputs:
            locked[image_id].display, locked[image_id].dehazed = displays[image_id]
        created = store_predictions([locked[i] for i in outputs], model, outputs)
        result.predicted = sum(created.values())
        result.predicted_ids = list(outputs)
        batches.finish_items([item for i in by_image if i in outputs for item in by_image[i]],
                BatchItem.Status.DONE, "")
        reused = [item for i in by_image if i in known for item in by_image[i]]
        batches.finish_items(reused, BatchItem.Status.DONE, "", reused=True)
        result.reused = len(reused)
        if plan is not None and result.predicted_ids:
            _store_codes(plan, result.predicted_ids, decoded, outputs)
    return result


def _store_codes(plan: search.CodePlan, ids: list[int], decoded: dict[int, Decoded],
                 outputs: dict[int, ModelOutput]) -> None:
    """Search codes from this chunk's own pass; a failure leaves them to rebuild_index."""
    try:
        with transaction.atomic():
            if plan.use_features:
                search.store_codes(ids, descriptors=np.stack([outputs[i].features for i in ids]))
            else:
                search.store_codes(ids, pixels=np.stack([decoded[i].search_input for i in ids]))
    except DatabaseError:
        raise
    except Exception:  # noqa: BLE001 - search must never fail a prediction
        log.exception("search codes of %d images not made; run rebuild_index --missing-only",
                      len(ids))


def store_predictions(images: list[Image], model: ModelVersion,
                      outputs: dict[int, ModelOutput]) -> dict[int, bool]:
    """Save a chunk's predictions (once per image and model) and refresh the images'
    model labels, in a few queries; returns image id -> whether its prediction is new."""
    if not images:
        return {}
    stored, existing = store_prediction_rows(images, model, outputs)
    for image in images:  # one UPDATE each: cheaper than bulk_update's CASE per column
        prediction = stored[image.pk]
        image.prediction, image.confidence = prediction, prediction.confidence
        image.novelty, image.unusual = prediction.novelty, prediction.unusual
        image.status, image.error = Image.Status.READY, ""
        Image.objects.filter(pk=image.pk).update(
            prediction=prediction, confidence=prediction.confidence, status=image.status,
            novelty=prediction.novelty, unusual=prediction.unusual,
            error="", display=image.display.name, dehazed=image.dehazed.name)
    apply_model_labels_many([(image, stored[image.pk]) for image in images])
    return {image.pk: image.pk not in existing for image in images}


def store_prediction_rows(images: list[Image], model: ModelVersion,
                          outputs: dict[int, ModelOutput]
                          ) -> tuple[dict[int, Prediction], set[int]]:
    """The model's prediction rows for ``images`` (created from ``outputs`` where there
    is none yet: once per image and model); returns them by image id, and the ids that
    had one before. Labels are not touched (a candidate's predictions are kept apart)."""
    ids = [image.pk for image in images]
    existing = set(Prediction.objects.filter(model=model, image_id__in=ids)
                   .values_list("image_id", flat=True))
    Prediction.objects.bulk_create([
        Prediction(image=image, model=model, probabilities=outputs[image.pk].probabilities,
                   tags=outputs[image.pk].tags, confidence=outputs[image.pk].confidence,
                   novelty=outputs[image.pk].novelty, unusual=bool(outputs[image.pk].unusual))
        for image in images if image.pk not in existing], ignore_conflicts=True)
    stored = {p.image_id: p for p in Prediction.objects.filter(model=model, image_id__in=ids)}
    return stored, existing


def predict_stored(images: list[Image], model: ModelVersion
                   ) -> tuple[dict[int, ModelOutput], dict[int, str]]:
    """The model's outputs for the stored images that have no prediction by it yet (one
    forward pass), and the errors of those that cannot be read; writes nothing. For
    re-tagging and for scoring a candidate on the evaluation images."""
    known = set(Prediction.objects.filter(model=model, image_id__in=[i.pk for i in images])
                .values_list("image_id", flat=True))
    todo = [image for image in images if image.pk not in known]
    if not todo:
        return {}, {}
    predictor = predictor_for(model)

    def decode(image: Image) -> np.ndarray | str:
        try:
            return decode_for_pipeline(image, predictor.image_size).model_input
        except ImageDecodeError as exc:
            return str(exc)
        except OSError:
            return "the stored file cannot be read"

    inputs, errors = {}, {}
    for image, found in zip(todo, threads.map_ordered(decode, todo)):
        if isinstance(found, str):
            errors[image.pk] = found
        else:
            inputs[image.pk] = found
    ids = list(inputs)
    outputs = dict(zip(ids, predictor.predict([inputs[i] for i in ids]))) if ids else {}
    return outputs, errors
