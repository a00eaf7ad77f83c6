"""Prediction by a real Celery worker process on the real Redis broker (no eager mode)."""

from __future__ import annotations

import re
import time

import pytest

from tests.webapp.conftest import make_image, wait_for_batch
from webapp.models import Batch, BatchItem, Image, ImageCode, ImageLabel, Prediction

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = {  # name -> kind; every one of these must be tagged
    "plain.jpg": "jpeg", "lossless.png": "png", "planet_cmyk.jpg": "cmyk",
    "alpha.png": "rgba", "palette.gif": "palette", "depth16.png": "gray16",
    "fourband.tif": "tiff4",
}
BAD = {  # name -> (kind, words the error must contain)
    "half.jpg": ("truncated", "truncated"), "notes.txt": ("text", "not an image"),
    "empty.jpg": ("empty", "empty"), "bomb.png": ("bomb", "pixels"),
}


def _upload(api, files: dict[str, bytes]):
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload = [SimpleUploadedFile(name, data) for name, data in files.items()]
    response = api.post("/api/batches/", {"files": payload}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()


def test_batch_with_bad_files_is_tagged_except_the_bad_ones(api, worker):
    files = {name: make_image(kind, seed=i) for i, (name, kind) in enumerate(AWKWARD.items())}
    files.update({name: make_image(kind) for name, (kind, _) in BAD.items()})
    files["copy_of_plain.jpg"] = files["plain.jpg"]  # same bytes twice in one batch
    created = _upload(api, files)
    batch = wait_for_batch(created["id"])
    assert (batch.total, batch.done, batch.failed) == (12, 8, 4)

    body = api.get(f"/api/batches/{batch.pk}/").json()
    assert body["status"] == "done"
    by_name = {item["filename"]: item for item in body["images"]}
    for name in [*AWKWARD, "copy_of_plain.jpg"]:
        item = by_name[name]
        assert item["status"] == "done" and item["error"] is None, item
        assert len(item["probabilities"]) == 17
        assert all(0.0 <= p <= 1.0 for p in item["probabilities"].values())
        assert set(item["tags"]) <= set(item["probabilities"])
    for name, (_, words) in BAD.items():
        assert by_name[name]["status"] == "failed"
        assert words in by_name[name]["error"], by_name[name]["error"]
    # Stored once, predicted once; model tags became (unreviewed) labels.
    assert Image.objects.filter(status="ready").count() == 7
    assert Prediction.objects.count() == 7
    ready = Image.objects.filter(status="ready").first()
    assert set(ImageLabel.objects.filter(image=ready).values_list("label__name", flat=True)) \
        == set(ready.prediction.tags)
    assert ready.display and ready.dehazed
    assert Image.objects.get(original_name="half.jpg").status == "broken"
    # The worker then gives every predicted image its search codes (its own task).
    deadline = time.time() + 90
    while ImageCode.objects.count() < 7:
        assert time.time() < deadline, "search codes were not made"
        time.sleep(0.3)
    assert set(ImageCode.objects.values_list("image__status", flat=True)) == {"ready"}


def test_uploading_known_images_again_predicts_nothing(api, worker):
    files = {f"chip{i}.jpg": make_image("jpeg", seed=i) for i in range(3)}
    first = wait_for_batch(_upload(api, files)["id"])
    assert first.done == 3 and first.reused == 0
    predicted_at = dict(Prediction.objects.values_list("id", "created_at"))

    again = _upload(api, {f"renamed{i}.jpg": data for i, data in enumerate(files.values())})
    assert again["status"] == "done"  # nothing new: done without a worker round trip
    assert [i["status"] for i in again["images"]] == ["done"] * 3
    assert all(i["reused"] and i["tags"] is not None for i in again["images"])
    assert dict(Prediction.objects.values_list("id", "created_at")) == predicted_at


def _predicted_in_logs(*workers) -> int:
    total = 0
    for w in workers:
        total += sum(int(n) for n in re.findall(r"predicted=(\d+)", w.log_path.read_text()))
    return total


def test_worker_killed_mid_batch_loses_nothing_and_predicts_once(api, start_worker):
    n = 16
    files = {f"chip{i:02d}.jpg": make_image("jpeg", seed=100 + i) for i in range(n)}
    first = start_worker(WORKER_CHUNK_PAUSE="1.0")  # 4 items per chunk, 1 s between chunks
    batch_id = _upload(api, files)["id"]
    deadline = time.time() + 60
    while BatchItem.objects.filter(batch_id=batch_id, status="done").count() < 4:
        assert time.time() < deadline, "first chunk never finished"
        time.sleep(0.05)
    first.kill()
    done_before = BatchItem.objects.filter(batch_id=batch_id, status="done").count()
    assert 4 <= done_before < n
    assert Batch.objects.get(pk=batch_id).status == "running"

    second = start_worker()  # the unacknowledged task comes back after the visibility timeout
    batch = wait_for_batch(batch_id, timeout=120)
    assert (batch.done, batch.failed) == (n, 0)
    assert Prediction.objects.count() == n
    assert _predicted_in_logs(first, second) == n  # nobody predicted an image twice
    assert _predicted_in_logs(second) == n - done_before
