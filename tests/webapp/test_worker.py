"""Prediction by a real Celery worker process on the real Redis broker (no eager mode)."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from bench.redis_server import RedisServer
from tests.webapp.conftest import make_image, wait_for_batch
from webapp.models import Batch, BatchItem, Image, ImageCode, ImageLabel, Prediction

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = {  # name -> kind; every one of these must be tagged
    "plain.jpg": "jpeg", "lossless.png": "png", "planet_cmyk.jpg": "cmyk",
    "alpha.png": "rgba", "palette.gif": "palette", "depth16.png": "gray16",
    "fourband.tif": "tiff4",
}
WEATHER = {"clear", "haze", "partly_cloudy", "cloudy"}
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
        # the shipped model's sets follow Planet's rule: one weather label, alone if cloudy
        weather = set(item["tags"]) & WEATHER
        assert len(weather) == 1, item["tags"]
        assert weather != {"cloudy"} or item["tags"] == ["cloudy"], item["tags"]
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


def _items_done(batch_id: int) -> int:
    return BatchItem.objects.filter(batch_id=batch_id, status="done").count()


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_poison_image_fails_alone_and_the_rest_is_tagged(api, start_worker):
    """An image that kills the process decoding it (here: on purpose, by the test's own
    Celery app, tests/webapp/poison_worker.py) is retried alone once, then fails with a
    message; the worker is never killed in a loop."""
    files = {f"chip{i}.jpg": make_image("jpeg", seed=300 + i) for i in range(8)}
    poison = hashlib.sha256(files["chip2.jpg"]).hexdigest()
    worker = start_worker(pool="prefork", app="tests.webapp.poison_worker",
                          POISON_SHA256=poison)
    batch = wait_for_batch(_upload(api, files)["id"], timeout=120)
    assert (batch.total, batch.done, batch.failed) == (8, 7, 1)
    item = BatchItem.objects.get(batch=batch, filename="chip2.jpg")
    assert item.status == "failed"
    assert item.error == "the worker stopped while processing this image; it was not retried again"
    assert item.attempts == 2  # once in its chunk, once alone: never in a loop
    assert Prediction.objects.count() == 7
    assert _predicted_in_logs(worker) == 7
    log = worker.log_path.read_text()
    assert log.count("exited with 'signal 9 (SIGKILL)'") == 2, log[-3000:]


def test_whole_worker_killed_batch_healed_by_the_other_worker(api, start_worker):
    """A lost machine: the worker's whole process group is SIGKILLed. The broker would give
    the message back only after its visibility timeout (an hour, as in production); the
    heal job of the surviving worker sends the batch again once its heartbeat is stale."""
    n = 16
    files = {f"chip{i:02d}.jpg": make_image("jpeg", seed=400 + i) for i in range(n)}
    hour = {"CELERY_VISIBILITY_TIMEOUT": "3600", "WORKER_CHUNK_PAUSE": "1.0"}
    workers = [start_worker(**hour), start_worker(**hour)]
    batch_id = _upload(api, files)["id"]
    _wait_until(lambda: _items_done(batch_id) >= 4, 60, "first chunk never finished")
    holder = Batch.objects.get(pk=batch_id).worker
    pid = int(holder.split(":")[1])
    running = next(w for w in workers if w.process.pid == pid)
    running.kill()
    killed_at = time.time()
    done_before = _items_done(batch_id)
    assert done_before < n and Batch.objects.get(pk=batch_id).status == "running"

    batch = wait_for_batch(batch_id, timeout=90)
    took = time.time() - killed_at
    print(f"batch done {took:.1f} s after the kill ({n - done_before} items were left)")
    assert (batch.done, batch.failed) == (n, 0)
    assert Prediction.objects.count() == n
    assert _predicted_in_logs(*workers) == n  # nobody predicted an image twice
    survivor = next(w for w in workers if w is not running)
    assert _predicted_in_logs(survivor) == n - done_before
    assert "heal: sent 1 stalled batches again" in survivor.log_path.read_text()
    # stale timeout (3 s) + heal interval (1 s) + the rest of the batch, far below the
    # visibility timeout; generous so that a loaded machine does not make it flaky
    assert took < 60, f"healed after {took:.0f} s"


@pytest.fixture
def own_redis(tmp_path):
    from webapp.celery import app

    server = RedisServer(tmp_path)
    previous = app.conf.broker_url
    app.conf.broker_url = server.url
    app.pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    yield server
    app.conf.broker_url = previous
    app.pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    server.stop()


def test_redis_restarted_mid_batch_loses_no_batch(api, start_worker, own_redis):
    """Redis without persistence restarts while one batch runs and two wait: every queued
    and unacknowledged message is gone; the heal job sends the batches again."""
    worker = start_worker(REDIS_URL=own_redis.url, WORKER_CHUNK_PAUSE="0.5")
    batches = []
    for b in range(3):
        files = {f"b{b}-{i}.jpg": make_image("jpeg", seed=500 + 10 * b + i) for i in range(8)}
        batches.append(_upload(api, files)["id"])
    _wait_until(lambda: _items_done(batches[0]) >= 4, 60, "first chunk never finished")
    own_redis.restart()
    for batch_id in batches:
        batch = wait_for_batch(batch_id, timeout=90)
        assert (batch.done, batch.failed) == (8, 0)
    assert Prediction.objects.count() == 24
    assert _predicted_in_logs(worker) == 24  # each image predicted exactly once
    assert "heal: sent" in worker.log_path.read_text()
