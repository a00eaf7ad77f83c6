"""The worker's path in process: one decode and one forward pass per image give the tags,
the display copies and both search codes; memory stays at model and display size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from imagery.decode import decode_image
from retrieval.codes import to_int
from tests.webapp.conftest import make_image
from tests.webapp.helpers import upload
from webapp.conf import app_settings
from webapp.models import BatchItem, ImageCode, Prediction
from webapp.services import batches, recognition, search
from webapp.services.batches import do_submit_batch
from webapp.services.leases import LeaseLost

pytestmark = pytest.mark.django_db


def _submitted(user, files):
    batch, _ = upload(user, files)
    return do_submit_batch(batch)


@pytest.fixture
def quiet_queue(monkeypatch):
    """No broker round trips: what the services would send is recorded instead."""
    sent = []
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: sent.append(args) or True)
    return sent


def test_one_pass_stores_tags_display_copies_and_both_codes(user, settings, quiet_queue,
                                                              monkeypatch):
    """One decode per image. The search descriptors come from the classifier's own pass
    when its first original network is the search backbone (the same weights file);
    otherwise (the shipped default: EfficientNet-Lite0 tags, the search model keeps its
    VGG backbone) the backbone makes one more pass per chunk over the same decode."""
    settings.TORCH_THREADS = 1
    files = [(f"chip{i}.png", make_image("png", size=64, seed=i)) for i in range(5)]
    batch = _submitted(user, files)
    decodes = []
    real_decode = recognition.decode_image
    monkeypatch.setattr(recognition, "decode_image",
                        lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    model = search.retriever()
    predictor = recognition.predictor_for(recognition.active_model())
    shared = model.backbone_digest == predictor.feature_network_digest
    real_descriptors = model.image_descriptors
    backbone_passes = []

    def counted(images, *args, **kwargs):
        backbone_passes.append(len(images))
        return real_descriptors(images, *args, **kwargs)

    monkeypatch.setattr(model, "image_descriptors", counted)
    recognition.process_batch(batch.pk)
    # one extra pass per chunk over that chunk's images, none when the network is shared
    assert sum(backbone_passes) == (0 if shared else 5) and len(backbone_passes) <= 5

    assert len(decodes) == 5  # one decode per image
    assert Prediction.objects.count() == 5
    assert not any(args[0] == "webapp.tasks.encode_images" for args in quiet_queue)
    for item in BatchItem.objects.filter(batch=batch).select_related("image"):
        image = item.image
        assert item.status == "done" and image.display and image.dehazed
        code = ImageCode.objects.get(image=image)
        assert code.model == search.model_version() and code.bits == search.code_bits()
        # the same codes as encoding the image on its own with the search model
        with image.file.open("rb") as handle:
            rgb = decode_image(handle.read())
        expected_image = to_int(model.image_codes([rgb], code.bits))[0]
        labels = sorted(image.labels.values_list("label__name", flat=True))
        expected_text = to_int(model.text_codes([search.tags_text(labels)], code.bits,
                                                check=False))[0]
        assert (code.image_code, code.text_code) == (expected_image, expected_text)


def test_label_edit_re_encodes_the_text_code_only(user, curator, settings, quiet_queue,
                                                  monkeypatch,
                                                  django_capture_on_commit_callbacks):
    settings.TORCH_THREADS = 1
    batch = _submitted(user, [("a.png", make_image("png", seed=7))])
    recognition.process_batch(batch.pk)
    code = ImageCode.objects.get()
    decodes = []
    monkeypatch.setattr(search, "decode_image", lambda *a, **k: decodes.append(1))
    from webapp.services.curation import set_labels

    with django_capture_on_commit_callbacks(execute=True):
        set_labels(code.image, ["water", "cloudy"], curator)
    assert ("webapp.tasks.encode_images", [code.image_id], True) in quiet_queue
    assert search.encode_images([code.image_id], text_only=True) == 1
    fresh = ImageCode.objects.get()
    assert not decodes  # the pixels were not read again
    assert fresh.image_code == code.image_code
    assert fresh.text_code == to_int(search.retriever().text_codes(
        [search.tags_text(["cloudy", "water"])], fresh.bits, check=False))[0]
    assert fresh.updated_at > code.updated_at


def _flat_png(side: int) -> bytes:
    """A nearly flat large PNG: a few hundred KB for tens of megapixels."""
    pixels = np.full((side, side, 3), (90, 120, 60), np.uint8)
    pixels[::97, ::89] = 200
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def test_large_images_are_shrunk_while_decoding_and_chunks_keep_small_arrays(
        user, settings, quiet_queue, monkeypatch):
    settings.TORCH_THREADS = 1
    settings.SCENE_MIN_SIDE = 10**6  # the chip path (a 3000 px PNG is otherwise a scene)
    batch = _submitted(user, [("big.png", _flat_png(3000)), ("chip.jpg", make_image())])
    kept = []
    real = recognition.decode_for_pipeline
    monkeypatch.setattr(recognition, "decode_for_pipeline",
                        lambda *a, **k: kept.append(real(*a, **k)) or kept[-1])
    recognition.process_batch(batch.pk)
    assert BatchItem.objects.filter(batch=batch, status="done").count() == 2
    for decoded in kept:  # what a chunk holds: model-size inputs and display copies only
        assert decoded.model_input.shape == (32, 32, 3)
        assert max(decoded.display.shape[:2]) <= app_settings.DISPLAY_SIZE
    # the decoder itself never returns more than it was asked to keep
    small = decode_image(_flat_png(3000), keep_longest=512, keep_shortest=64)
    assert small.shape == (600, 600, 3)  # 3000 / 5: the largest factor keeping >= 512


def test_chunks_stop_at_the_pixel_budget_and_the_forward_batch_is_the_chunk_size(
        user, settings, quiet_queue):
    files = [(f"c{i}.png", make_image("png", size=64, seed=i)) for i in range(7)]
    batch = _submitted(user, files)
    settings.PREDICT_CHUNK_PIXELS = 3 * 64 * 64
    assert len(batches.next_chunk(batch.pk, 64)) == 3
    settings.PREDICT_CHUNK_PIXELS = 10**9
    assert len(batches.next_chunk(batch.pk, 5)) == 5
    settings.PREDICT_CHUNK_PIXELS = 1  # one image over budget still makes a chunk
    assert len(batches.next_chunk(batch.pk, 5)) == 1
    settings.PREDICT_CHUNK_SIZE = 5
    recognition._predictors.clear()
    try:
        model = recognition.active_model()
        assert recognition.predictor_for(model).batch_size == 5
    finally:
        recognition._predictors.clear()


def test_an_image_a_worker_died_on_is_retried_alone_then_fails_alone(user, settings,
                                                                     quiet_queue):
    settings.TORCH_THREADS = 1
    files = [(f"c{i}.jpg", make_image(seed=20 + i)) for i in range(4)]
    batch = _submitted(user, files)
    items = list(BatchItem.objects.filter(batch=batch).order_by("position"))
    # as if a worker had been killed twice on item 1 (in a chunk, then alone) and once
    # on the chunk that held items 2 and 3
    BatchItem.objects.filter(pk=items[1].pk).update(attempts=2)
    BatchItem.objects.filter(pk__in=[items[2].pk, items[3].pk]).update(attempts=1)
    batches.fail_poisoned(batch.pk)
    assert [i.pk for i in batches.next_chunk(batch.pk, 64)] == [items[2].pk]
    recognition.process_batch(batch.pk)
    failed = BatchItem.objects.get(pk=items[1].pk)
    assert failed.status == "failed" and failed.error == batches.POISONED
    assert failed.image.status == "broken"
    assert BatchItem.objects.filter(batch=batch, status="done").count() == 3
    # the same bytes uploaded again fail at once, without reaching a worker
    again, (item,) = upload(user, [("again.jpg", make_image(seed=21))])
    assert item.status == "failed" and item.error == batches.POISONED


def test_a_worker_commits_nothing_once_another_took_its_batch(user, settings, quiet_queue):
    from webapp.models import Batch

    settings.TORCH_THREADS = 1
    batch = _submitted(user, [("a.jpg", make_image(seed=40)), ("b.jpg", make_image(seed=41))])
    first = batches.lease(batch.pk)
    assert first.claim()
    second = batches.lease(batch.pk)
    assert not second.claim()  # a fresh heartbeat: the batch is taken
    settings.BATCH_STALE_SECONDS = 0.0
    assert second.claim()  # the first worker fell silent
    items = list(BatchItem.objects.filter(batch=batch).select_related("image"))
    with pytest.raises(LeaseLost):
        recognition.process_chunk(items, recognition.active_model(), first)
    assert not Prediction.objects.exists()
    assert BatchItem.objects.filter(batch=batch, status="queued").count() == 2
    with pytest.raises(LeaseLost):
        first.beat(force=True)
    second.release()
    assert Batch.objects.get(pk=batch.pk).worker == ""


def test_work_under_claims_runs_and_releases_whatever_happens(user, quiet_queue):
    from webapp.models import Batch
    from webapp.services.leases import work_under

    batch = _submitted(user, [("a.jpg", make_image(seed=42))])
    ran = []

    def held_by_another(lease):
        ran.append(lease.pk)
        assert not work_under(batches.lease(batch.pk), ran.append)  # taken: not run
        raise LeaseLost("taken over")  # ends the work quietly

    assert work_under(batches.lease(batch.pk), held_by_another)
    assert ran == [batch.pk]
    assert Batch.objects.get(pk=batch.pk).worker == ""  # released after LeaseLost

    def broken(lease):
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        work_under(batches.lease(batch.pk), broken)
    assert Batch.objects.get(pk=batch.pk).worker == ""  # released after any error
