"""Faults that are not the images' are not verdicts on them (issue 20): database errors,
a model that cannot be loaded and a full disk take their attempt back and fail nothing;
a worker refuses to start with a damaged model; originals are written atomically and a
damaged copy is not reused."""

from __future__ import annotations

import json
import shutil

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError

from tests.webapp.conftest import make_image
from tests.webapp.helpers import sha256, upload
from webapp.models import Batch, BatchItem, Image
from webapp.services import recognition, storage
from webapp.services.batches import do_submit_batch


@pytest.fixture(autouse=True)
def quiet_queue(monkeypatch, settings):
    settings.TORCH_THREADS = 1
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: True)


def _submitted(user, n: int = 3) -> Batch:
    batch, _items = upload(user, [(f"c{i}.jpg", make_image(seed=40 + i)) for i in range(n)])
    return do_submit_batch(batch)


@pytest.mark.django_db
def test_two_database_errors_do_not_poison_an_image(user, monkeypatch):
    batch = _submitted(user)
    real = recognition.process_chunk
    calls = []

    def flaky(items, model, lease=None):
        calls.append(len(items))
        if len(calls) <= 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(items, model, lease)

    monkeypatch.setattr(recognition, "process_chunk", flaky)
    for _ in range(2):  # the task's retries after each database error
        with pytest.raises(OperationalError):
            recognition.process_batch(batch.pk)
        assert set(BatchItem.objects.values_list("attempts", flat=True)) == {0}
    recognition.process_batch(batch.pk)
    batch.refresh_from_db()
    assert calls == [3, 3, 3]  # never tried alone as a suspect
    assert (batch.status, batch.done, batch.failed) == ("done", 3, 0)
    assert not Image.objects.filter(status=Image.Status.BROKEN).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["model", "disk"])
def test_a_model_or_disk_fault_fails_nothing_and_the_batch_waits(user, monkeypatch, fault):
    batch = _submitted(user)
    if fault == "model":
        def broken(model):
            raise recognition.ModelUnavailable("original-1.pt is missing")
        monkeypatch.setattr(recognition, "predictor_for", broken)
        expected = recognition.ModelUnavailable
    else:
        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(recognition, "save_display_copies", full)
        expected = OSError
    with pytest.raises(expected):
        recognition.process_batch(batch.pk)
    batch.refresh_from_db()
    assert batch.status != "done" and batch.failed == 0 and batch.worker == ""
    assert set(BatchItem.objects.values_list("status", "attempts")) == {("queued", 0)}
    monkeypatch.undo()
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: True)
    recognition.process_batch(batch.pk)  # the fault is gone: the retry tags everything
    batch.refresh_from_db()
    assert (batch.status, batch.done, batch.failed) == ("done", 3, 0)


def test_the_tasks_retry_model_and_disk_faults():
    from webapp import tasks

    assert recognition.ModelUnavailable in tasks.predict_batch.autoretry_for
    assert OSError in tasks.predict_batch.autoretry_for


@pytest.mark.django_db
def test_a_damaged_network_file_is_refused_by_its_digest(tmp_path, settings):
    from classifier.store import CLASSIFIER_DIRS
    from imagery.digests import file_sha256
    from webapp.services.model_registry import register_model

    model_dir = tmp_path / "model"
    shutil.copytree(CLASSIFIER_DIRS.resolve("default"), model_dir)
    spec = json.loads((model_dir / "pipeline.json").read_text())
    for name in spec["networks"]:
        spec["networks"][name]["sha256"] = file_sha256(model_dir / f"{name}.pt")
    (model_dir / "pipeline.json").write_text(json.dumps(spec))
    register_model(str(model_dir), activate=True)
    assert recognition.check_model()
    network = model_dir / f"{next(iter(spec['networks']))}.pt"
    data = bytearray(network.read_bytes())
    data[len(data) // 2] ^= 0xFF
    network.write_bytes(bytes(data))
    with pytest.raises(recognition.ModelUnavailable, match="damaged or was replaced"):
        recognition.check_model()
    network.unlink()
    with pytest.raises(recognition.ModelUnavailable, match="is missing"):
        recognition.check_model()


@pytest.mark.django_db
def test_the_shipped_model_replaced_by_an_upgrade_becomes_active(tmp_path):
    """``make run`` after an upgrade that ships another default model: the active model's
    directory holds the new version, so the new one is activated (else every worker
    refuses to start); a model an operator activated from elsewhere stays active."""
    from classifier.store import CLASSIFIER_DIRS
    from webapp.models import ModelVersion
    from webapp.services.model_registry import (
        activate_model,
        register_model,
        register_shipped_model,
    )

    shipped, curated = tmp_path / "shipped", tmp_path / "curated"
    for folder in (shipped, curated):
        folder.mkdir()
        shutil.copy(CLASSIFIER_DIRS.resolve("default") / "pipeline.json", folder)
    first = register_shipped_model(str(shipped))
    assert first.is_active and register_shipped_model(str(shipped)).pk == first.pk

    spec = json.loads((shipped / "pipeline.json").read_text())
    spec["postprocess"]["thresholds"][0] = 0.123  # the upgrade's model: another version
    (shipped / "pipeline.json").write_text(json.dumps(spec))
    upgraded = register_shipped_model(str(shipped))
    assert upgraded.version != first.version and upgraded.is_active
    assert list(ModelVersion.objects.filter(is_active=True)) == [upgraded]
    assert CLASSIFIER_DIRS.version(shipped) == upgraded.version  # what workers check

    curated_spec = json.loads((curated / "pipeline.json").read_text())
    curated_spec["name"] = "curated"
    (curated / "pipeline.json").write_text(json.dumps(curated_spec))
    other = activate_model(register_model(str(curated)))  # an operator's choice
    spec["postprocess"]["thresholds"][0] = 0.456
    (shipped / "pipeline.json").write_text(json.dumps(spec))
    again = register_shipped_model(str(shipped))
    assert not again.is_active and ModelVersion.objects.get(is_active=True).pk == other.pk


@pytest.mark.django_db(transaction=True)
def test_a_worker_refuses_to_start_without_its_model(start_worker, tmp_path):
    from webapp.services.model_registry import register_model

    model_dir = tmp_path / "gone"
    from classifier.store import CLASSIFIER_DIRS

    shutil.copytree(CLASSIFIER_DIRS.resolve("default"), model_dir)
    register_model(str(model_dir), activate=True)
    spec = json.loads((model_dir / "pipeline.json").read_text())
    (model_dir / f"{next(iter(spec['networks']))}.pt").unlink()
    with pytest.raises(RuntimeError, match="worker exited") as failed:
        start_worker()
    assert "refused to start" in str(failed.value)


@pytest.mark.django_db
def test_originals_are_written_whole_and_a_damaged_copy_is_replaced(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    data = make_image(seed=77)
    digest = sha256(data)
    path = storage.save_original(digest, "JPEG", ContentFile(data))
    assert default_storage.open(path).read() == data
    with open(default_storage.path(path), "r+b") as stored:  # a crash's half-written copy
        stored.truncate(len(data) // 2)
    assert storage.save_original(digest, "JPEG", ContentFile(data)) == path
    assert default_storage.open(path).read() == data

    class Failing(ContentFile):
        def chunks(self, chunk_size=None):
            yield data[:100]
            raise OSError(28, "No space left on device")

    other = make_image(seed=78)
    with pytest.raises(OSError):
        storage.save_original(sha256(other), "JPEG", Failing(other))
    leftovers = [p.name for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert leftovers == [path.rsplit("/", 1)[-1]]  # no partial file, under any name


@pytest.mark.django_db
def test_a_scene_that_raises_while_cut_fails_at_once_and_the_batch_goes_on(user, tmp_path,
                                                                          monkeypatch):
    from imagery import rasters
    from tests.scene_files import geotiff
    from webapp.models import Scene

    strange = geotiff(tmp_path / "strange.tif", width=600, height=300, seed=1).read_bytes()
    good = geotiff(tmp_path / "good.tif", width=600, height=300, seed=2).read_bytes()
    batch, added = upload(user, [("strange.tif", strange), ("good.tif", good),
                                 ("chip.jpg", make_image(seed=50))])
    real_strips = rasters.SceneReader.strips

    def strips(self, start_row=0):
        if self.dataset.name.endswith(Scene.objects.get(filename="strange.tif").file.name):
            raise TypeError("complex values where numbers were expected")
        return real_strips(self, start_row)

    monkeypatch.setattr(rasters.SceneReader, "strips", strips)
    recognition.process_batch(do_submit_batch(batch).pk)
    batch.refresh_from_db()
    strange_scene = Scene.objects.get(filename="strange.tif")
    assert strange_scene.status == "failed" and "TypeError" in strange_scene.error
    assert strange_scene.attempts == 1  # failed on its first try, not after two heal cycles
    assert Scene.objects.get(filename="good.tif").status == "done"
    assert batch.status == "done" and batch.failed == 1


@pytest.mark.django_db
def test_a_database_error_while_cutting_a_scene_is_no_attempt(user, tmp_path, monkeypatch):
    from tests.scene_files import geotiff
    from webapp.models import Scene
    from webapp.services import tiling

    data = geotiff(tmp_path / "s.tif", width=600, height=300).read_bytes()
    batch, _ = upload(user, [("s.tif", data)])
    real = tiling._commit_row
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise OperationalError("the database restarted")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiling, "_commit_row", flaky)
    for _ in range(2):
        with pytest.raises(OperationalError):
            recognition.process_batch(do_submit_batch(batch).pk)
        assert Scene.objects.get().attempts == 0
    recognition.process_batch(batch.pk)
    assert Scene.objects.get().status == "done"


@pytest.mark.django_db(transaction=True)
def test_parallel_uploads_cannot_both_pass_the_daily_quota(user, settings, monkeypatch):
    """While one request stores its file, its quota share is reserved: a second request
    of the same user that would pass the quota only together with it is refused."""
    import threading

    from django.db import connection

    from webapp.services import ingest
    from webapp.services.batches import do_create_batch as create_batch
    from webapp.services.ingest import add_files

    first, second = make_image(seed=90, size=64), make_image(seed=91, size=64)
    settings.MAX_UPLOAD_BYTES_PER_DAY = len(first) + len(second) - 1
    storing, go_on = threading.Event(), threading.Event()
    real_save = ingest.save_original

    def slow_save(sha, image_format, content):
        if sha == sha256(first):
            storing.set()
            go_on.wait(10)
        return real_save(sha, image_format, content)

    monkeypatch.setattr(ingest, "save_original", slow_save)
    results = {}

    def send(name, data):
        from django.core.files.uploadedfile import SimpleUploadedFile

        try:
            (item,) = add_files(create_batch(user), [SimpleUploadedFile(name, data)])
            results[name] = (item.status, item.error)
        finally:
            connection.close()

    a = threading.Thread(target=send, args=("a.jpg", first))
    a.start()
    assert storing.wait(10)
    send_b = threading.Thread(target=send, args=("b.jpg", second))
    send_b.start()
    send_b.join(20)
    go_on.set()
    a.join(20)
    assert results["a.jpg"] == ("queued", "")
    assert results["b.jpg"][0] == "failed" and "quota" in results["b.jpg"][1]
