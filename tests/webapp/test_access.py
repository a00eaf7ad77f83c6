"""Private by default: every read needs a login, PUBLIC_READS opens the collection but
never originals or batches, and batches belong to their owners."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from tests.webapp.conftest import make_image
from tests.webapp.helpers import predicted_image, upload
from webapp.services.curation import set_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def collection(user, curator):
    image = predicted_image(user, 1, ["water"])
    set_labels(image, ["water", "road"], curator)
    batch = image.batch_items.get().batch
    upload(user, [("secret-contract-2024.pdf", b"%PDF-1.4 not an image")], batch=batch)
    return image, batch


def _reads(image) -> list[str]:
    return ["/gallery/", f"/images/{image.pk}/", f"/images/{image.pk}/display",
            "/api/images/", f"/api/images/{image.pk}/", "/api/labels/", "/api/models/",
            "/api/search/?q=water", f"/api/images/{image.pk}/similar/",
            f"/api/images/{image.pk}/describe/"]


def test_every_read_needs_a_login(collection):
    image, batch = collection
    anonymous = APIClient()
    for path in [*_reads(image), f"/images/{image.pk}/original", "/api/batches/",
                 f"/api/batches/{batch.pk}/", f"/batches/{batch.pk}/"]:
        response = anonymous.get(path)
        if path.startswith("/api/"):
            assert response.status_code in (401, 403), path
        else:
            assert response.status_code == 302, path
            assert response["Location"].startswith("/accounts/login/?next="), path


def test_public_reads_open_the_collection_but_never_originals_or_batches(collection,
                                                                          settings):
    settings.PUBLIC_READS = True
    image, batch = collection
    anonymous = APIClient()
    for path in _reads(image):
        assert anonymous.get(path).status_code in (200, 503), path  # 503: no search model
    body = anonymous.get(f"/api/images/{image.pk}/").json()
    assert body["reviewed_by"] is None  # curators' usernames stay private
    assert {label["added_by"] for label in body["labels"]} == {None}
    assert anonymous.get(f"/images/{image.pk}/original").status_code == 302
    assert anonymous.get(f"/api/batches/{batch.pk}/").status_code in (401, 403)
    assert anonymous.get(f"/batches/{batch.pk}/").status_code == 302
    page = Client().get("/gallery/", {"batch": batch.pk}).content.decode()
    assert "secret-contract-2024.pdf" not in page and "not an image" not in page
    assert f'data-image-id="{image.pk}"' not in page  # the batch's images are not listed


def test_failures_of_a_batch_are_shown_to_its_owner_only(collection, client):
    image, batch = collection
    own = client.get("/gallery/", {"batch": batch.pk}).content.decode()
    assert "secret-contract-2024.pdf" in own
    stranger = Client()
    stranger.force_login(User.objects.create_user("stranger", password="pw-stranger-1"))
    page = stranger.get("/gallery/", {"batch": batch.pk}).content.decode()
    assert "secret-contract-2024.pdf" not in page
    assert f'data-image-id="{image.pk}"' not in page
    other_api = APIClient()
    other_api.force_authenticate(User.objects.get(username="stranger"))
    listed = other_api.get("/api/images/", {"batch": batch.pk}).json()
    assert listed["results"] == []
    assert f"#{batch.pk}" not in stranger.get(f"/images/{image.pk}/").content.decode()


def test_worker_errors_carry_no_server_paths(user, settings, monkeypatch):
    """The log keeps the details; the user reads what to do."""
    from webapp.services import jobs, recognition
    from webapp.services.batches import do_submit_batch

    monkeypatch.setattr(jobs, "_send", lambda *args: True)
    batch, (item,) = upload(user, [("gone.jpg", make_image(seed=5))])
    do_submit_batch(batch)
    item.image.file.storage.delete(item.image.file.name)  # storage lost the file
    recognition.process_batch(batch.pk)
    item.refresh_from_db()
    assert item.status == "failed"
    assert item.error == "the stored file cannot be read; upload it again"
    assert str(settings.MEDIA_ROOT) not in item.image.error


def test_pending_images_are_seen_only_through_their_batch(user):
    """An image not tagged yet (its batch maybe still open) is not part of the shared
    collection: strangers get a 404 for its page, its files and its API record."""
    batch, (item,) = upload(user, [("draft.jpg", make_image(seed=31))])
    image = item.image
    owner = Client()
    owner.force_login(user)
    stranger = Client()
    stranger.force_login(User.objects.create_user("stranger2", password="pw-stranger-2"))
    stranger_api = APIClient()
    stranger_api.force_authenticate(User.objects.get(username="stranger2"))
    for path in (f"/images/{image.pk}/", f"/images/{image.pk}/original"):
        assert owner.get(path).status_code == 200, path
        assert stranger.get(path).status_code == 404, path
    assert stranger_api.get(f"/api/images/{image.pk}/").status_code == 404
