"""Upload safety (file names, the per-file byte limit) and ingest: storing each image once,
batch items in order, per-file rejects, submitting and recounting batches."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from tests.webapp.conftest import make_image
from tests.webapp.helpers import predicted_image, sha256, upload
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image
from webapp.services import batches, ingest
from webapp.services.storage import original_path
from webapp.services.upload_limits import RejectedUpload, format_size, safe_filename


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """A media folder of this test's own, so that files on disk can be counted."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- safe_filename -------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("chip_01.jpg", "chip_01.jpg"),
    ("../../etc/passwd", "passwd"),
    ("/abs/path/to/scene.tif", "scene.tif"),
    ("C:\\Users\\me\\Desktop\\scene.png", "scene.png"),
    ("mixed/dirs\\and/more\\last.jpg", "last.jpg"),
    ("folder/..", "unnamed"),
    ("..", "unnamed"),
    (".", "unnamed"),
    ("", "unnamed"),
    (None, "unnamed"),
    ("dir/", "unnamed"),
    ("   ", "unnamed"),
    (".hidden.jpg", "hidden.jpg"),
    ("...jpg", "jpg"),
    ("tab\there\x00nul\x1fesc\x7f.jpg", "tabherenulesc.jpg"),
    ("evil\u202egpj.exe", "evilgpj.exe"),  # right-to-left override dropped
    ("Café Ünïcode 東京.jpg", "Café Ünïcode 東京.jpg"),
    ("ｆｕｌｌｗｉｄｔｈ.jpg", "fullwidth.jpg"),  # NFKC
    ('<script>"x";|$(rm).jpg', "_script__x____(rm).jpg"),
])
def test_safe_filename(raw, expected):
    assert safe_filename(raw) == expected


def test_safe_filename_decomposed_unicode_is_composed():
    assert safe_filename("Cafe\u0301.jpg") == "Caf\u00e9.jpg"


@pytest.mark.parametrize("ext", ["jpg", "tiff", "webp"])
def test_overlong_name_is_cut_but_keeps_its_extension(ext):
    name = safe_filename("x" * 500 + "." + ext)
    assert len(name) == 200
    assert name.endswith("." + ext) and name.startswith("xxx")


def test_overlong_name_without_extension_and_with_a_custom_limit():
    assert safe_filename("y" * 500) == "y" * 199
    assert safe_filename("z" * 50 + ".png", max_length=20) == "z" * 16 + ".png"


def test_overlong_extension_is_cut_too():
    name = safe_filename("a" * 300 + "." + "b" * 100)
    assert len(name) <= 200 and name.endswith("." + "b" * 16)


@pytest.mark.parametrize("raw", [
    "../" * 100 + "x.jpg", "..\\..\\..\\", "\x00\x01\x02", ". . .", "a/\u200b.jpg",
    "x" * 1000, "\\\\server\\share\\.bashrc", "\u0000.jpg", "名前" * 200 + ".png",
])
def test_safe_filename_never_returns_a_path_a_hidden_name_or_control_characters(raw):
    name = safe_filename(raw)
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name
    assert not name.startswith(".") and not name.startswith(" ")
    assert all(unicodedata.category(ch)[0] != "C" for ch in name)
    assert len(name) <= 200


# --- SizeLimitUploadHandler ------------------------------------------------------------------

def test_size_limit_handler_rejects_only_the_oversize_file(rf, settings):
    settings.MAX_UPLOAD_BYTES = settings.MAX_SCENE_BYTES = 2000
    big, good = make_image("jpeg", 64, seed=1), make_image("jpeg", 8, seed=2)
    assert len(big) > 2000 >= len(good)
    request = rf.post("/upload", {"files": [SimpleUploadedFile("big.jpg", big),
                                            SimpleUploadedFile("good.jpg", good)]})
    rejected, kept = request.FILES.getlist("files")
    assert isinstance(rejected, RejectedUpload)
    assert rejected.name == "big.jpg"
    assert rejected.size == 0 and rejected.read() == b""  # the bytes were not kept
    assert rejected.rejected_reason == (
        f"file is {format_size(len(big))}; the limit is 2.0 KB")
    assert not isinstance(kept, RejectedUpload)
    assert kept.name == "good.jpg" and kept.read() == good


def test_size_limit_handler_over_several_chunks_and_at_the_limit(rf, settings):
    settings.MAX_UPLOAD_BYTES = 200_000  # larger than one 64 KB chunk
    settings.MAX_SCENE_BYTES = 1000  # streaming stops at the larger of the two limits
    at_limit, over = b"a" * 200_000, b"b" * 200_001
    request = rf.post("/upload", {"at": SimpleUploadedFile("at.bin", at_limit),
                                  "over": SimpleUploadedFile("over.bin", over)})
    assert request.FILES["at"].read() == at_limit
    assert isinstance(request.FILES["over"], RejectedUpload)
    assert request.FILES["over"].size == 0
    assert "limit is 195.3 KB" in request.FILES["over"].rejected_reason


def test_chips_are_held_to_their_byte_limit_scenes_to_theirs(api, settings, media, tmp_path):
    from tests.scene_files import geotiff

    scene = geotiff(tmp_path / "s.tif").read_bytes()
    chip = make_image("png", 128, seed=5)
    settings.MAX_UPLOAD_BYTES = min(len(scene), len(chip)) - 1
    settings.MAX_SCENE_BYTES = len(scene)
    body = api.post("/api/batches/", {"files": [SimpleUploadedFile("s.tif", scene),
                                                SimpleUploadedFile("c.png", chip)]},
                    format="multipart").json()
    (item,) = body["images"]
    assert item["filename"] == "c.png" and item["status"] == "failed"
    assert f"the limit is {format_size(app_settings.MAX_UPLOAD_BYTES)}" in item["error"]
    assert [s["filename"] for s in body["scenes"]] == ["s.tif"]


def test_format_size():
    assert format_size(812) == "812 bytes"
    assert format_size(2000) == "2.0 KB"
    assert format_size(50 * 2**20) == "50.0 MB"
    assert format_size(500 * 2**10) == "500.0 KB"  # not "0 MB"


def test_oversize_file_in_a_multipart_post_fails_alone(api, settings, media):
    settings.MAX_UPLOAD_BYTES = 2000
    big, good = make_image("jpeg", 64, seed=3), make_image("jpeg", 8, seed=4)
    response = api.post("/api/batches/", {"files": [SimpleUploadedFile("big.jpg", big),
                                                     SimpleUploadedFile("good.jpg", good)]},
                        format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    first, second = body["images"]
    assert (first["filename"], first["status"], first["id"]) == ("big.jpg", "failed", None)
    assert "limit" in first["error"]
    assert (second["filename"], second["status"], second["error"]) == ("good.jpg", "queued", None)
    image = Image.objects.get()
    assert image.pk == second["id"] and image.sha256 == sha256(good)
    assert stored_files(media) == [image.file.name]
    assert (body["total"], body["failed"], body["done"]) == (2, 1, 0)


def test_rejected_upload_fails_with_its_reason(user, media):
    batch = batches.do_create_batch(user)
    (item,) = ingest.add_files(batch, [RejectedUpload("huge.tif", "file is 9 MB; the limit is 1")])
    assert (item.status, item.error, item.image) == ("failed", "file is 9 MB; the limit is 1",
                                                     None)
    assert not Image.objects.exists() and stored_files(media) == []


# --- ingest.add_files ------------------------------------------------------------------------

def test_same_bytes_are_stored_once(user, media):
    data = make_image("jpeg", seed=1)
    batch, items = upload(user, [("a.jpg", data), ("copy of a.jpg", data)])
    image = Image.objects.get()
    assert [i.image_id for i in items] == [image.pk, image.pk]
    assert [i.status for i in items] == ["queued", "queued"]
    assert stored_files(media) == [original_path(sha256(data), "JPEG")]
    # Again in another batch, under yet another name: still one row, one file.
    _, (again,) = upload(user, [("renamed.jpg", data)])
    assert again.image_id == image.pk
    assert Image.objects.count() == 1 and len(stored_files(media)) == 1
    assert Image.objects.get().original_name == "a.jpg"
    assert batch.total == 2


def test_original_is_stored_under_its_hash_not_the_users_name(user, media, tmp_path):
    data = make_image("png", seed=2)
    _, (item,) = upload(user, [("../../../outside/My Photo.PNG", data)])
    image = Image.objects.get(pk=item.image_id)
    digest = sha256(data)
    assert image.sha256 == digest
    assert image.file.name == f"originals/{digest[:2]}/{digest[2:4]}/{digest}.png"
    assert (media / image.file.name).read_bytes() == data
    assert (image.original_name, item.filename) == ("My Photo.PNG", "My Photo.PNG")
    assert (image.format, image.width, image.height, image.size_bytes) == ("PNG", 32, 32,
                                                                           len(data))
    assert image.uploaded_by == user and image.status == "pending"
    assert stored_files(media) == [image.file.name]
    assert not list(tmp_path.rglob("*Photo*"))


def test_items_keep_upload_order_and_positions_across_calls(user, media):
    batch, first = upload(user, [(f"f{i}.jpg", make_image(seed=10 + i)) for i in range(3)])
    _, second = upload(user, [("bad.txt", make_image("text")), ("f3.png", make_image("png"))],
                       batch=batch)
    items = list(BatchItem.objects.filter(batch=batch).order_by("position"))
    assert [(i.position, i.filename) for i in items] == [
        (0, "f0.jpg"), (1, "f1.jpg"), (2, "f2.jpg"), (3, "bad.txt"), (4, "f3.png")]
    assert [i.position for i in first + second] == [0, 1, 2, 3, 4]
    batch.refresh_from_db()
    assert (batch.total, batch.failed, batch.done) == (5, 1, 0)


@pytest.mark.parametrize(("kind", "words"), [
    ("empty", "the file is empty"),
    ("text", "not an image"),
    ("bomb", "too many pixels"),
])
def test_bad_file_fails_alone(user, media, kind, words):
    good = make_image("jpeg", seed=5)
    batch, (bad_item, good_item) = upload(user, [("bad.png", make_image(kind)),
                                                 ("good.jpg", good)])
    assert bad_item.status == "failed" and words in bad_item.error
    assert bad_item.image is None
    assert good_item.status == "queued" and good_item.image is not None
    assert list(Image.objects.values_list("sha256", flat=True)) == [sha256(good)]
    assert stored_files(media) == [original_path(sha256(good), "JPEG")]
    assert (batch.total, batch.failed) == (2, 1)


def test_image_over_the_pixel_limit_is_rejected(user, media, settings):
    settings.MAX_IMAGE_PIXELS = 1000
    _, (over, under) = upload(user, [("32.jpg", make_image(size=32)),
                                     ("31.jpg", make_image(size=31))])
    assert over.status == "failed"
    assert over.error == "image is 32x32 = 1,024 pixels; the limit is 1,000"
    assert under.status == "queued"


def test_unsupported_format_is_rejected_with_the_accepted_ones_named(user, media):
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), "green").save(buffer, "PPM")
    _, (item,) = upload(user, [("scene.ppm", buffer.getvalue())])
    assert item.status == "failed"
    assert item.error.startswith("not an image or GeoTIFF this app reads")
    for name in ("JPEG", "PNG", "TIFF"):
        assert name in item.error
    assert "MPO" not in item.error
    assert not Image.objects.exists() and stored_files(media) == []


@pytest.mark.parametrize(("kind", "image_format", "ext"), [
    ("png", "PNG", "png"), ("cmyk", "JPEG", "jpg"), ("palette", "GIF", "gif"),
    ("gray16", "PNG", "png"), ("tiff4", "TIFF", "tif"), ("rgba", "PNG", "png"),
])
def test_awkward_but_valid_formats_are_accepted(user, media, kind, image_format, ext):
    data = make_image(kind, seed=6)
    _, (item,) = upload(user, [(f"x.{ext}", data)])
    assert item.status == "queued", item.error
    image = item.image
    assert image.format == image_format
    assert image.file.name == original_path(sha256(data), image_format)
    assert image.file.name.endswith("." + ext)


def test_truncated_file_with_a_good_header_is_left_to_the_worker(user, media):
    _, (item,) = upload(user, [("half.jpg", make_image("truncated"))])
    assert item.status == "queued" and item.image.status == "pending"


def test_storage_failure_fails_only_that_file(user, media, monkeypatch):
    real_save = ingest.save_original
    first = make_image(seed=7)

    def failing_save(sha, image_format, content):
        if sha == sha256(first):
            raise OSError("disk full")
        return real_save(sha, image_format, content)

    monkeypatch.setattr(ingest, "save_original", failing_save)
    _, (bad, good) = upload(user, [("a.jpg", first), ("b.jpg", make_image(seed=8))])
    assert bad.status == "failed"
    assert bad.error == "the file could not be stored; upload it again later"  # no details
    assert good.status == "queued" and Image.objects.count() == 1


def test_known_image_is_reused_not_queued(user, media):
    known = predicted_image(user, seed=9, tags=["clear", "primary"])
    data = make_image(seed=9)
    batch, (item,) = upload(user, [("again.jpg", data)])
    assert (item.status, item.reused, item.image_id) == ("done", True, known.pk)
    assert (batch.total, batch.done, batch.reused) == (1, 1, 1)


def test_known_broken_image_fails_with_its_error(user, media):
    _, (first,) = upload(user, [("broken.jpg", make_image("truncated", seed=1))])
    Image.objects.filter(pk=first.image_id).update(status="broken",
                                                   error="image data is broken or truncated")
    _, (again,) = upload(user, [("broken-again.jpg", make_image("truncated", seed=1))])
    assert (again.status, again.error, again.image_id) == (
        "failed", "image data is broken or truncated", first.image_id)


# --- submit_batch and refresh_counts -------------------------------------------------------

def test_batch_of_only_failed_and_known_items_is_done_at_once(
        user, media, django_capture_on_commit_callbacks):
    predicted_image(user, seed=11, tags=["water"])
    batch, _ = upload(user, [("known.jpg", make_image(seed=11)), ("bad.txt", make_image("text"))])
    with django_capture_on_commit_callbacks() as callbacks:
        batch = batches.do_submit_batch(batch)
    assert callbacks == []  # nothing to predict: no task
    batch.refresh_from_db()
    assert batch.submitted and batch.status == Batch.Status.DONE
    assert batch.finished_at is not None
    assert (batch.total, batch.done, batch.failed, batch.reused) == (2, 1, 1, 1)


def test_batch_with_queued_items_is_sent_to_the_workers_once(
        user, media, django_capture_on_commit_callbacks):
    batch, _ = upload(user, [("new.jpg", make_image(seed=12))])
    with django_capture_on_commit_callbacks() as callbacks:  # not executed: no worker here
        batch = batches.do_submit_batch(batch)
    assert len(callbacks) == 1
    batch.refresh_from_db()
    assert batch.submitted and batch.status == Batch.Status.QUEUED
    assert batch.finished_at is None and batch.remaining == 1


def test_refresh_counts_recounts_from_the_items(user, media):
    batch, items = upload(user, [(f"{i}.jpg", make_image(seed=20 + i)) for i in range(3)])
    Batch.objects.filter(pk=batch.pk).update(total=99, done=42, failed=7)  # drifted
    batch.refresh_from_db()
    BatchItem.objects.filter(pk=items[0].pk).update(status="done", reused=True)
    BatchItem.objects.filter(pk=items[1].pk).update(status="failed", error="x")
    batches.refresh_counts(batch)
    batch.refresh_from_db()
    assert (batch.total, batch.done, batch.failed, batch.reused, batch.remaining) == (3, 1, 1, 1,
                                                                                      1)
    BatchItem.objects.filter(pk=items[2].pk).update(status="done")
    batches.refresh_counts(batch)
    batch.refresh_from_db()
    assert batch.remaining == 0
    assert batch.status == Batch.Status.QUEUED  # not submitted: more files may come
    batch.submitted = True
    batch.save(update_fields=["submitted"])
    batches.refresh_counts(batch)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE and batch.finished_at is not None


def test_batch_rules_hold_for_every_caller_not_only_the_api(user, media):
    """A submitted batch takes no files and a request adds at least one: the batch
    service refuses, so no caller (API, page, command) can go around the rules."""
    batch = batches.do_create_batch(user)
    with pytest.raises(batches.BatchRefused) as empty:
        ingest.add_files(batch, [])
    assert not empty.value.conflict
    with pytest.raises(batches.BatchRefused):
        batches.check_create(0, submit=True)
    batches.check_create(0, submit=False)  # files may follow
    batches.do_submit_batch(batch)
    with pytest.raises(batches.BatchRefused) as closed:
        ingest.add_files(batch, [SimpleUploadedFile("late.jpg", make_image(seed=40))])
    assert closed.value.conflict
    assert not BatchItem.objects.filter(batch=batch).exists()
    assert not Image.objects.exists()  # refused before anything was stored
