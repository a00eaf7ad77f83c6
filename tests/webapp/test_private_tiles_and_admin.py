"""Privacy holds in the admin and for scene tiles (issue 20): a staff curator without
view_all_batches sees no other user's pending uploads or batches in the admin, and a
scene's tiles are as private as the scene."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.test import APIClient

from tests.scene_files import geotiff
from tests.webapp.conftest import make_image
from tests.webapp.helpers import predicted_image, upload
from webapp.models import Image, SceneTile
from webapp.services import recognition
from webapp.services.batches import do_submit_batch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quiet_queue(monkeypatch, settings):
    settings.TORCH_THREADS = 1
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: True)


@pytest.fixture
def other(db) -> User:
    return User.objects.create_user("other", password="pw-other-1")


def _staff_curator(curator) -> Client:
    curator.is_staff = True
    curator.save()
    client = Client()
    client.force_login(curator)
    return client


def test_the_admin_shows_a_curator_only_what_access_allows(user, curator):
    tagged = predicted_image(user, 1, ["water"])
    batch, (item,) = upload(user, [("secret_pending.jpg", make_image(seed=61))])
    client = _staff_curator(curator)
    listed = client.get("/admin/webapp/image/")
    assert listed.status_code == 200
    shown = [image.pk for image in listed.context["cl"].result_list]
    assert tagged.pk in shown and item.image_id not in shown
    html = listed.content.decode()
    assert f"#{batch.pk} analyst" not in html  # the batch filter lists no one else's batch
    assert "secret_pending.jpg" not in html
    page = client.get(f"/admin/webapp/image/{item.image_id}/change/")
    assert page.status_code == 302  # "does not exist": redirected to the list
    filtered = client.get(f"/admin/webapp/image/?batch={batch.pk}")
    assert item.image_id not in [image.pk for image in filtered.context["cl"].result_list]
    curator.user_permissions.add(Permission.objects.get(codename="view_all_batches"))
    client = _staff_curator(User.objects.get(pk=curator.pk))
    assert client.get(f"/admin/webapp/image/{item.image_id}/change/").status_code == 200


def test_a_curator_can_clear_a_broken_mark(user, curator):
    _, (item,) = upload(user, [("b.jpg", make_image(seed=62))])
    Image.objects.filter(pk=item.image_id).update(status=Image.Status.BROKEN, error="x")
    curator.user_permissions.add(Permission.objects.get(codename="view_all_batches"))
    client = _staff_curator(User.objects.get(pk=curator.pk))
    client.post("/admin/webapp/image/", {"action": "clear_broken", "index": 0,
                                         "_selected_action": [item.image_id]}, follow=True)
    image = Image.objects.get(pk=item.image_id)
    assert (image.status, image.error) == ("pending", "")
    _, (again,) = upload(user, [("b.jpg", make_image(seed=62))])
    assert again.status == "queued"  # uploaded again: predicted, not failed at once


def test_a_scenes_tiles_are_as_private_as_the_scene(user, other, tmp_path):
    data = geotiff(tmp_path / "private.tif", width=512, height=256, nodata_corner=0)
    batch, (scene,) = upload(user, [("private.tif", data.read_bytes())])
    recognition.process_batch(do_submit_batch(batch).pk)
    tiles = list(SceneTile.objects.filter(scene=scene).values_list("image_id", flat=True))
    assert len(tiles) == 2 and Image.objects.filter(pk__in=tiles, status="ready").count() == 2
    chip = predicted_image(user, 5, ["water"])

    owner, stranger = APIClient(), APIClient()
    owner.force_authenticate(user)
    stranger.force_authenticate(other)
    ids = lambda client: {i["id"] for i in client.get("/api/images/").json()["results"]}  # noqa: E731
    assert set(tiles) | {chip.pk} <= ids(owner)
    assert chip.pk in ids(stranger) and not set(tiles) & ids(stranger)
    assert stranger.get(f"/api/scenes/{scene.pk}/").status_code == 404
    for tile in tiles:
        assert stranger.get(f"/api/images/{tile}/").status_code == 404
        assert owner.get(f"/api/images/{tile}/").status_code == 200
    browser = Client()
    browser.force_login(other)
    assert browser.get(f"/images/{tiles[0]}/display").status_code == 404
    assert browser.get(f"/images/{tiles[0]}/").status_code == 404


def test_a_tiles_bytes_uploaded_as_a_file_join_the_collection(user, other, tmp_path):
    data = geotiff(tmp_path / "s.tif", width=512, height=256, nodata_corner=0)
    batch, (scene,) = upload(user, [("s.tif", data.read_bytes())])
    recognition.process_batch(do_submit_batch(batch).pk)
    tile = SceneTile.objects.filter(scene=scene).first().image
    assert tile.scene_only
    stranger = APIClient()
    stranger.force_authenticate(other)
    assert stranger.get(f"/api/images/{tile.pk}/").status_code == 404
    with tile.file.open("rb") as handle:
        upload(user, [("chip.png", handle.read())])  # the same bytes, as a file of its own
    tile.refresh_from_db()
    assert not tile.scene_only
    assert stranger.get(f"/api/images/{tile.pk}/").status_code == 200
