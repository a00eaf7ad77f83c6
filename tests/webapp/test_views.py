"""Browser pages: gallery filters, image page (probability bars, curation with CSRF),
upload and batch pages (login, ownership), served image files, health check."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image as PILImage

from tests.webapp.conftest import make_image
from tests.webapp.helpers import (
    LABELS,
    csrf_token,
    label_names,
    label_state,
    predicted_image,
    upload,
)
from webapp.models import Batch, Image
from webapp.services.curation import mark_reviewed
from webapp.services.model_registry import active_model


def tile_ids(response) -> list[int]:
    assert response.status_code == 200
    return [int(i) for i in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def logged_in(person: User, **options) -> Client:
    client = Client(**options)
    client.force_login(person)
    return client


@dataclass
class Pictures:
    a: Image  # water primary, 0.1, jpeg
    c: Image  # cloudy, 0.9, png, reviewed
    pending: Image
    batch: Batch  # holds c, pending and a failed file


@pytest.fixture
def pictures(user, curator) -> Pictures:
    a = predicted_image(user, 1, ["water", "primary"], confidence=0.1)
    c = predicted_image(user, 2, ["cloudy"], confidence=0.9, kind="png", name="scene.png")
    batch = c.batch_items.get().batch
    _, (pending, _) = upload(user, [("pending.jpg", make_image(seed=3)),
                                    ("broken.jpg", make_image("text"))], batch=batch)
    mark_reviewed(Image.objects.filter(pk=c.pk), curator)
    return Pictures(a, c, pending.image, batch)


# --- gallery ---------------------------------------------------------------------------------

def test_gallery_shows_predicted_images_newest_first(client, pictures):
    response = client.get("/gallery/")
    assert tile_ids(response) == [pictures.c.pk, pictures.a.pk]
    html = response.content.decode()
    assert "2 images" in html
    assert f'src="/images/{pictures.a.pk}/display"' in html
    assert "pending.jpg" not in html


@pytest.mark.parametrize(("query", "expected"), [
    ("tags=water", "a"),
    ("tags=water&tags=cloudy", "ca"),
    ("tags=water,primary&match=all", "a"),
    ("tags=water&tags=cloudy&match=all", ""),
    ("reviewed=true", "c"),
    ("reviewed=false", "a"),
    ("min_confidence=0.5", "c"),
])
def test_gallery_filters(client, pictures, query, expected):
    assert tile_ids(client.get(f"/gallery/?{query}")) == [getattr(pictures, n).pk
                                                          for n in expected]


def test_gallery_keeps_the_filter_in_the_form(client, pictures):
    html = client.get("/gallery/?tags=water&match=all&reviewed=false&min_confidence=0.05"
                      ).content.decode()
    assert re.search(r'value="water" checked', html)
    assert not re.search(r'value="cloudy" checked', html)
    assert '<option value="all" selected>' in html
    assert '<option value="false" selected>' in html
    assert 'name="min_confidence" min="0" max="1" step="0.05" value="0.05"' in html


def test_gallery_of_a_batch_lists_its_failures(client, pictures):
    response = client.get(f"/gallery/?batch={pictures.batch.pk}")
    assert tile_ids(response) == [pictures.c.pk]
    html = response.content.decode()
    assert 'id="batch-failures"' in html
    assert "<b>broken.jpg</b>: not an image" in html
    assert f"batch #{pictures.batch.pk}" in html


@pytest.mark.parametrize("query", [
    "batch=abc&min_confidence=7&page=zzz", "batch=99999999999999999999999", "batch=-1",
    "page=-1", "page=99999", "min_confidence=nan", "reviewed=maybe&match=none",
    "tags=&tag=,,", "page=1.5", "cursor=%00", "cursor=YnwxfDI", "page=99999999999999",
])
def test_gallery_ignores_junk_parameters(client, pictures, query):
    assert tile_ids(client.get(f"/gallery/?{query}")) == [pictures.c.pk, pictures.a.pk]


@pytest.mark.parametrize("query", ["tags=%00", "tags=no_such_label", "batch=999999"])
def test_gallery_with_filters_matching_nothing(client, pictures, query):
    response = client.get(f"/gallery/?{query}")
    assert tile_ids(response) == []
    assert "No images match" in response.content.decode()


def test_gallery_pages_keep_the_filter(client, pictures, monkeypatch):
    monkeypatch.setattr("webapp.views.GALLERY_PAGE_SIZE", 1)
    first = client.get("/gallery/?tags=water&tags=cloudy")
    assert tile_ids(first) == [pictures.c.pk]
    html = first.content.decode()
    assert '<span class="muted" id="result-count">2 images</span>' in html
    next_link = unescape(re.search(r'<a href="([^"]+)" rel="next">older', html).group(1))
    assert next_link.startswith("?tags=water&tags=cloudy&cursor=")
    assert 'rel="prev"' not in html
    second = client.get(f"/gallery/{next_link}")
    assert tile_ids(second) == [pictures.a.pk]
    html = second.content.decode()
    assert 'rel="next"' not in html
    back = unescape(re.search(r'<a href="([^"]+)" rel="prev">', html).group(1))
    assert tile_ids(client.get(f"/gallery/{back}")) == [pictures.c.pk]
    # a page number typed by hand still works; junk cursors show the first page
    assert tile_ids(client.get("/gallery/?tags=water&tags=cloudy&page=2")) == [pictures.a.pk]
    assert tile_ids(client.get("/gallery/?cursor=zzz")) == [pictures.c.pk]


def test_root_redirects_to_the_gallery(client, db):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/gallery/"


# --- image page ------------------------------------------------------------------------------

def test_image_page_shows_probability_bars_highest_first(client, user):
    image = predicted_image(user, 5, ["water", "primary"], confidence=0.42)
    image.prediction.probabilities.update({"water": 0.95, "primary": 0.7, "haze": 0.4})
    image.prediction.save()
    html = client.get(f"/images/{image.pk}/").content.decode()
    rows = re.findall(r'<div class="bar-row( on)?">\s*<span class="bar-label" title="[^"]*" '
                      r'data-label="([a-z_]+)">[^<]+</span>'
                      r'\s*<span class="bar"><span data-percent="([\d.]+)"></span></span>', html)
    assert len(rows) == 17 and {name for _, name, _ in rows} == set(LABELS)
    assert [name for _, name, _ in rows[:3]] == ["water", "primary", "haze"]
    assert [(on, width) for on, name, width in rows[:3]] == [(" on", "95.0"), (" on", "70.0"),
                                                               ("", "40.0")]
    assert {name for on, name, _ in rows if on} == {"water", "primary"}
    # labels as people read them, with their meaning; the data set's typo shown corrected
    assert 'data-label="artisinal_mine">Artisanal mine</span>' in html
    assert '<span class="chip model" title="' in html and ">Primary rainforest</span>" in html
    # the model by name and date (its version id as a tooltip); certainty explained
    assert "</dt><dd>0.42 <span" in html and "least certain label" in html
    assert active_model().name in html and active_model().version in html


def test_image_page_of_a_pending_image(client, pictures):
    html = client.get(f"/images/{pictures.pending.pk}/").content.decode()
    assert "No prediction yet." in html and "bar-row" not in html
    assert "not decoded yet" in html


def test_image_page_needs_a_login_and_has_no_edit_form_for_non_curators(anon, client,
                                                                         pictures):
    path = f"/images/{pictures.a.pk}/"
    assert anon.get(path)["Location"] == f"/accounts/login/?next={path}"
    html = client.get(path).content.decode()
    assert 'id="edit-labels"' not in html


@pytest.mark.parametrize("path", ["/images/999999/", "/images/99999999999999999999999/"])
def test_unknown_image_page_is_404(client, db, path):
    assert client.get(path).status_code == 404


def test_curator_edits_labels_with_the_forms_csrf_token(curator, pictures):
    image = pictures.a
    browser = logged_in(curator, enforce_csrf_checks=True)
    page = browser.get(f"/images/{image.pk}/")
    html = page.content.decode()
    assert 'id="edit-labels"' in html
    assert re.search(r'name="tags" value="water" checked', html)
    assert not re.search(r'name="tags" value="road" checked', html)
    token = csrf_token(html.split('id="edit-labels"')[1])

    refused = browser.post(f"/images/{image.pk}/", {"tags": ["road"]})  # no token
    assert refused.status_code == 403
    assert label_names(image) == {"water", "primary"}

    saved = browser.post(f"/images/{image.pk}/", {"tags": ["water", "road"],
                                                  "csrfmiddlewaretoken": token})
    assert saved.status_code == 302 and saved["Location"] == f"/images/{image.pk}/"
    assert label_state(image) == {"water": ("model", True, None),
                                  "road": ("person", True, "curator")}
    image.refresh_from_db()
    assert image.reviewed and image.reviewed_by == curator
    after = browser.get(f"/images/{image.pk}/").content.decode()
    assert "Labels saved; the image is marked reviewed." in after
    assert "yes, by curator" in after


def test_curator_posting_an_unknown_label_changes_nothing(curator, pictures):
    browser = logged_in(curator)
    response = browser.post(f"/images/{pictures.a.pk}/", {"tags": ["water", "volcano"]},
                            follow=True)
    assert response.status_code == 200
    assert "unknown or inactive labels: volcano" in response.content.decode()
    assert label_names(pictures.a) == {"water", "primary"}
    pictures.a.refresh_from_db()
    assert not pictures.a.reviewed


def test_non_curator_post_does_not_change_labels(user, pictures):
    browser = logged_in(user, enforce_csrf_checks=True)
    html = browser.get(f"/images/{pictures.a.pk}/").content.decode()
    assert 'id="edit-labels"' not in html and "Curators can edit labels here." in html
    before = label_state(pictures.a)
    response = browser.post(f"/images/{pictures.a.pk}/",
                            {"tags": ["road"], "csrfmiddlewaretoken": csrf_token(html)},
                            follow=True)
    assert response.status_code == 200
    assert "Editing labels needs curator rights." in response.content.decode()
    assert label_state(pictures.a) == before
    pictures.a.refresh_from_db()
    assert not pictures.a.reviewed


def test_anonymous_post_does_not_change_labels(anon, pictures):
    before = label_state(pictures.a)
    response = anon.post(f"/images/{pictures.a.pk}/", {"tags": ["road"]})
    assert response.status_code == 302
    assert label_state(pictures.a) == before


# --- upload and batch pages --------------------------------------------------------------

def test_upload_page_needs_a_login(anon, user):
    response = anon.get("/upload/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/upload/"
    html = logged_in(user).get("/upload/").content.decode()
    assert 'data-api="/api/batches/"' in html
    assert 'data-max-bytes="52428800"' in html
    assert active_model().version in html
    assert "longer than 512 px are scenes" in html and "256 x 256 px tiles" in html


def test_batch_page_only_for_its_owner_and_view_all_batches_holders(anon, user, pictures):
    path = f"/batches/{pictures.batch.pk}/"
    assert anon.get(path)["Location"] == f"/accounts/login/?next={path}"
    owner_page = logged_in(user).get(path)
    assert owner_page.status_code == 200
    html = owner_page.content.decode()
    assert "<td>broken.jpg</td>" in html and "not an image" in html
    stranger = User.objects.create_user("stranger", password="pw-stranger-1")
    assert logged_in(stranger).get(path).status_code == 404
    staff = User.objects.create_user("staff", password="pw-staff-1", is_staff=True)
    assert logged_in(staff).get(path).status_code == 404  # the staff flag grants nothing
    auditor = User.objects.create_user("auditor", password="pw-auditor-1")
    auditor.user_permissions.add(Permission.objects.get(codename="view_all_batches"))
    assert logged_in(auditor).get(path).status_code == 200


def test_unsubmitted_batch_page_offers_to_submit(user):
    batch, _ = upload(user, [("a.jpg", make_image(seed=7))])
    html = logged_in(user).get(f"/batches/{batch.pk}/").content.decode()
    assert f'action="/api/batches/{batch.pk}/submit/"' in html
    batch.submitted = True
    batch.save()
    html = logged_in(user).get(f"/batches/{batch.pk}/").content.decode()
    assert 'id="submit-form"' not in html


def test_batch_list_shows_only_own_batches(user, pictures):
    other = User.objects.create_user("other", password="pw-other-1")
    theirs, _ = upload(other, [("x.jpg", make_image(seed=8))])
    html = logged_in(user).get("/batches/").content.decode()
    assert f'href="/batches/{pictures.batch.pk}/"' in html
    assert f'href="/batches/{theirs.pk}/"' not in html


# --- served image files ------------------------------------------------------------------

def test_display_and_dehazed_are_jpeg_inline(client, pictures):
    image = pictures.c  # a PNG original
    for kind in ("display", "dehazed"):
        response = client.get(f"/images/{image.pk}/{kind}")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert response["Content-Disposition"] == f'inline; filename="img_{image.pk}.jpg"'
        assert response["X-Content-Type-Options"] == "nosniff"
        with PILImage.open(io.BytesIO(body(response))) as served:
            assert served.format == "JPEG" and served.size == (32, 32)


def test_original_is_an_attachment_with_the_stored_type(client, user):
    data = make_image("png", seed=9)
    _, (item,) = upload(user, [("page.html", data)])  # the name does not decide the type
    image = item.image
    response = client.get(f"/images/{image.pk}/original")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == f'attachment; filename="img_{image.pk}.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    csp = response["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp
    assert body(response) == data


def test_tiff_original_is_served_as_tiff(client, user):
    data = make_image("tiff4", seed=10)
    _, (item,) = upload(user, [("four.tif", data)])
    response = client.get(f"/images/{item.image_id}/original")
    assert response["Content-Type"] == "image/tiff"
    assert body(response) == data


@pytest.mark.parametrize("kind", ["thumbnail", "file", "ORIGINAL", "original.png", "sha256"])
def test_unknown_file_kind_is_404(client, pictures, kind):
    assert client.get(f"/images/{pictures.a.pk}/{kind}").status_code == 404


def test_missing_files_are_404(client, pictures):
    assert client.get(f"/images/{pictures.pending.pk}/display").status_code == 404
    assert client.get("/images/999999/original").status_code == 404
    default_storage.delete(pictures.a.display.name)
    assert client.get(f"/images/{pictures.a.pk}/display").status_code == 404


def test_image_files_are_read_only(client, pictures):
    response = client.post(f"/images/{pictures.a.pk}/original",
                           {"file": SimpleUploadedFile("x.jpg", b"x")})
    assert response.status_code == 405


def test_healthz(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_first_contact_a_favicon_a_friendly_404_and_a_login_page_that_says_what_this_is(
        anon, settings):
    settings.DEBUG = False
    icon = anon.get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"].endswith("webapp/favicon.svg")
    page = anon.get("/accounts/login/").content.decode()
    assert 'rel="icon"' in page and "satellite imagery" in page
    missing = anon.get("/no/such/page/")
    assert missing.status_code == 404
    assert "URLconf" not in missing.content.decode()  # not Django's debug page


def test_make_run_does_not_turn_debug_pages_on():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "DEBUG=" not in run  # DEBUG stays the user's choice (off unless set)
