"""The REST API: batches (upload, incremental upload, submit, ownership), token auth,
images (filters, pagination, curation by PATCH), labels, models, schema and docs."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.webapp.conftest import make_image
from tests.webapp.helpers import LABELS, label_state, predicted_image, upload
from webapp.models import Batch, BatchItem, Image, Label
from webapp.services.curation import mark_reviewed
from webapp.services.model_registry import active_model

BATCH_KEYS = {"id", "status", "total", "done", "failed", "images"}
ITEM_KEYS = {"id", "filename", "status", "tags", "probabilities", "error"}


def files(*pairs: tuple[str, bytes]) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, data) for name, data in pairs]


def post_batch(client: APIClient, *pairs: tuple[str, bytes], **extra):
    return client.post("/api/batches/", {"files": files(*pairs), **extra}, format="multipart")


# --- batches ---------------------------------------------------------------------------------

def test_anonymous_cannot_upload(db):
    response = APIClient().post("/api/batches/", {"files": files(("a.jpg", make_image()))},
                                format="multipart")
    assert response.status_code in (401, 403)
    assert "detail" in response.json()
    assert not Batch.objects.exists() and not Image.objects.exists()


def test_upload_answers_202_with_the_documented_shape(api, user):
    response = post_batch(api, ("a.jpg", make_image(seed=1)), ("notes.txt", make_image("text")),
                          ("b.png", make_image("png", seed=2)))
    assert response.status_code == 202, response.content
    body = response.json()
    assert BATCH_KEYS <= set(body)
    assert (body["status"], body["total"], body["done"], body["failed"]) == ("queued", 3, 0, 1)
    assert [item["filename"] for item in body["images"]] == ["a.jpg", "notes.txt", "b.png"]
    for item in body["images"]:
        assert ITEM_KEYS <= set(item)
    ok, bad, ok2 = body["images"]
    assert (ok["status"], ok["tags"], ok["probabilities"], ok["error"]) == ("queued", [], {},
                                                                           None)
    assert ok["id"] == Image.objects.get(original_name="a.jpg").pk
    assert (bad["status"], bad["id"]) == ("failed", None)
    assert "not an image" in bad["error"]
    batch = Batch.objects.get(pk=body["id"])
    assert batch.owner == user and batch.submitted


def test_batch_predicted_in_process_shows_tags_and_probabilities(api, settings):
    """The real model on CPU (what a worker runs), then the poll the clients do."""
    from webapp.services.recognition import process_batch

    settings.TORCH_THREADS = 1
    created = post_batch(api, ("a.jpg", make_image(seed=3)), ("b.tif", make_image("tiff4", seed=4)),
                         ("empty.jpg", b"")).json()
    process_batch(created["id"])
    body = api.get(f"/api/batches/{created['id']}/").json()
    assert (body["status"], body["total"], body["done"], body["failed"]) == ("done", 3, 2, 1)
    for item in body["images"][:2]:
        assert item["status"] == "done" and item["error"] is None
        assert set(item["probabilities"]) == set(LABELS)
        assert all(0.0 <= p <= 1.0 for p in item["probabilities"].values())
        assert set(item["tags"]) <= set(LABELS)
        image = Image.objects.get(pk=item["id"])
        assert image.status == "ready" and image.display and image.dehazed
        assert {il.label.name for il in image.labels.all()} == set(item["tags"])
    assert body["images"][2]["status"] == "failed"
    assert "empty" in body["images"][2]["error"]


def test_post_without_files_is_400_with_a_clear_detail(api):
    for response in (api.post("/api/batches/", {}, format="multipart"),
                     api.post("/api/batches/", {}, format="json")):
        assert response.status_code == 400
        assert "files" in response.json()["detail"]
    assert not Batch.objects.exists()


def test_incremental_upload_then_submit(api, django_capture_on_commit_callbacks):
    created = api.post("/api/batches/", {"submit": "false"}, format="multipart")
    assert created.status_code == 202, created.content
    batch_id = created.json()["id"]
    assert (created.json()["submitted"], created.json()["total"]) == (False, 0)
    for i, name in enumerate(["one.jpg", "two.png"]):
        kind = "jpeg" if name.endswith("jpg") else "png"
        response = api.post(f"/api/batches/{batch_id}/files/",
                            {"files": files((name, make_image(kind, seed=10 + i)))},
                            format="multipart")
        assert response.status_code == 202, response.content
        assert response.json()["added"] == [
            {"position": i, "filename": name, "status": "queued", "error": None}]
        assert response.json()["total"] == i + 1
    assert not Batch.objects.get(pk=batch_id).submitted
    empty = api.post(f"/api/batches/{batch_id}/files/", {}, format="multipart")
    assert empty.status_code == 400 and "files" in empty.json()["detail"]

    with django_capture_on_commit_callbacks() as callbacks:  # the task is not run here
        submitted = api.post(f"/api/batches/{batch_id}/submit/")
    assert submitted.status_code == 202
    assert len(callbacks) == 1
    body = submitted.json()
    assert (body["submitted"], body["status"], body["total"]) == (True, "queued", 2)
    assert [i["filename"] for i in body["images"]] == ["one.jpg", "two.png"]

    late = api.post(f"/api/batches/{batch_id}/files/",
                    {"files": files(("late.jpg", make_image(seed=12)))}, format="multipart")
    assert late.status_code == 409
    assert BatchItem.objects.filter(batch_id=batch_id).count() == 2


def test_users_see_only_their_batches_and_the_staff_flag_grants_nothing(api, user):
    other = User.objects.create_user("someone-else", password="pw-other-1")
    theirs, _ = upload(other, [("theirs.jpg", make_image(seed=20))])
    mine, _ = upload(user, [("mine.jpg", make_image(seed=21))])
    assert api.get(f"/api/batches/{theirs.pk}/").status_code == 404
    assert api.post(f"/api/batches/{theirs.pk}/submit/").status_code == 404
    assert api.post(f"/api/batches/{theirs.pk}/files/",
                    {"files": files(("x.jpg", make_image(seed=22)))},
                    format="multipart").status_code == 404
    assert BatchItem.objects.filter(batch=theirs).count() == 1
    assert not Batch.objects.get(pk=theirs.pk).submitted
    listed = api.get("/api/batches/").json()
    assert [b["id"] for b in listed["results"]] == [mine.pk]
    assert api.get(f"/api/batches/{mine.pk}/").status_code == 200

    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("boss", password="pw-boss-1",
                                                      is_staff=True))
    assert staff.get(f"/api/batches/{theirs.pk}/").status_code == 404
    assert staff.get("/api/batches/").json()["results"] == []

    auditor_user = User.objects.create_user("auditor", password="pw-auditor-1")
    auditor_user.user_permissions.add(Permission.objects.get(codename="view_all_batches"))
    auditor = APIClient()
    auditor.force_authenticate(User.objects.get(pk=auditor_user.pk))
    assert auditor.get(f"/api/batches/{theirs.pk}/").json()["owner"] == "someone-else"
    assert {b["id"] for b in auditor.get("/api/batches/").json()["results"]} == {mine.pk,
                                                                               theirs.pk}
    # seeing is not owning: only the owner adds files or submits
    assert auditor.post(f"/api/batches/{theirs.pk}/submit/").status_code == 403
    assert auditor.post(f"/api/batches/{theirs.pk}/files/",
                        {"files": files(("y.jpg", make_image(seed=23)))},
                        format="multipart").status_code == 403
    assert BatchItem.objects.filter(batch=theirs).count() == 1
    assert not Batch.objects.get(pk=theirs.pk).submitted


def test_batch_list_carries_counts_not_images(api, user):
    batch, _ = upload(user, [("a.jpg", make_image(seed=23))])
    (row,) = api.get("/api/batches/").json()["results"]
    assert (row["id"], row["total"], row["images"]) == (batch.pk, 1, [])
    assert api.get(f"/api/batches/{batch.pk}/?fields=counts").json()["images"] == []


def test_unknown_batch_is_a_json_404(api):
    for path in ("/api/batches/999999/", "/api/batches/99999999999999999999999/"):
        response = api.get(path)
        assert response.status_code == 404 and "detail" in response.json()


# --- token authentication ----------------------------------------------------------------

def test_token_authentication(user):
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = post_batch(client, ("a.jpg", make_image(seed=30)))
    assert response.status_code == 202, response.content
    assert Batch.objects.get(pk=response.json()["id"]).owner == user
    assert client.get("/api/batches/").json()["count"] == 1

    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    refused = wrong.get("/api/batches/")
    assert refused.status_code in (401, 403)
    assert refused.json()["detail"] == "Invalid token."


def test_drf_create_token_command(user):
    out = io.StringIO()
    call_command("drf_create_token", "analyst", stdout=out)
    key = Token.objects.get(user=user).key
    assert key in out.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/batches/").status_code == 200


# --- images: list, filters, pagination ---------------------------------------------------

@dataclass
class Gallery:
    a: Image
    b: Image
    c: Image
    pending: Image
    batch1: Batch
    batch2: Batch

    def ids(self, *images: Image) -> list[int]:
        return [image.pk for image in images]


@pytest.fixture
def gallery(user, curator) -> Gallery:
    """a: water primary (0.1), b: water (0.5, reviewed), c: cloudy (0.9); pending: not
    predicted. a and b in batch1, c and pending in batch2."""
    a = predicted_image(user, 1, ["water", "primary"], confidence=0.1)
    batch1 = a.batch_items.get().batch
    b = predicted_image(user, 2, ["water"], confidence=0.5, batch=batch1)
    c = predicted_image(user, 3, ["cloudy"], confidence=0.9)
    batch2 = c.batch_items.get().batch
    _, (item,) = upload(user, [("pending.jpg", make_image(seed=4))], batch=batch2)
    mark_reviewed(Image.objects.filter(pk=b.pk), curator)
    return Gallery(a, b, c, item.image, batch1, batch2)


def listed(client: APIClient, query: str = "") -> list[int]:
    response = client.get(f"/api/images/?{query}")
    assert response.status_code == 200, response.content
    return [image["id"] for image in response.json()["results"]]


@pytest.mark.parametrize(("query", "expected"), [
    ("", "cba"),
    ("tags=water,cloudy", "cba"),
    ("tags=water", "ba"),
    ("tags=water,primary&match=all", "a"),
    ("tags=water&tags=primary&match=all", "a"),
    ("tags=primary,cloudy&match=all", ""),
    ("tags=primary,cloudy&match=any", "ca"),
    ("tag=cloudy", "c"),
    ("tags=no_such_label", ""),
    ("reviewed=true", "b"),
    ("reviewed=false", "ca"),
    ("min_confidence=0.5", "cb"),
    ("min_confidence=0.9", "c"),
    ("tags=water&min_confidence=0.3", "b"),
    ("tags=water&reviewed=false", "a"),
])
def test_image_filters(client, gallery, query, expected):
    assert listed(client, query) == [getattr(gallery, name).pk for name in expected]


def test_batch_filter(client, gallery):
    assert listed(client, f"batch={gallery.batch1.pk}") == gallery.ids(gallery.b, gallery.a)
    assert listed(client, f"batch={gallery.batch2.pk}") == gallery.ids(gallery.c)  # not pending
    assert listed(client, f"batch={gallery.batch2.pk + 100}") == []


def test_tags_filter_uses_curated_labels_not_predictions(client, curator_api, gallery):
    assert curator_api.patch(f"/api/images/{gallery.c.pk}/", {"tags": ["water"]},
                             format="json").status_code == 200
    assert listed(client, "tags=water") == gallery.ids(gallery.c, gallery.b, gallery.a)
    assert listed(client, "tags=cloudy") == []


def test_pagination(client, gallery):
    first = client.get("/api/images/?page_size=2").json()
    assert first["count"] == 3
    assert [i["id"] for i in first["results"]] == gallery.ids(gallery.c, gallery.b)
    assert first["next"] and first["previous"] is None
    second = client.get(first["next"]).json()
    assert [i["id"] for i in second["results"]] == gallery.ids(gallery.a)
    assert second["next"] is None and second["previous"]
    assert len(client.get("/api/images/?page_size=1").json()["results"]) == 1


@pytest.mark.parametrize("query", ["tags=", "tags=,,,", "match=all"])
def test_empty_filters_filter_nothing(client, gallery, query):
    assert listed(client, query) == gallery.ids(gallery.c, gallery.b, gallery.a)


@pytest.mark.parametrize("query, field", [
    ("batch=abc", "batch"), ("batch=", "batch"), ("batch=-3", "batch"), ("match=", "match"),
    ("batch=99999999999999999999999", "batch"), ("batch=1.5", "batch"),
    ("min_confidence=7", "min_confidence"), ("min_confidence=-1", "min_confidence"),
    ("min_confidence=abc", "min_confidence"), ("min_confidence=nan", "min_confidence"),
    ("min_confidence=inf", "min_confidence"), ("reviewed=maybe", "reviewed"),
    ("reviewed=null", "reviewed"), ("match=weird", "match"), ("page_size=abc", "page_size"),
    ("page_size=0", "page_size"), ("page_size=-5", "page_size"),
    ("page_size=100000", "page_size"), ("page_size=null&page_size=null", "page_size"),
])
def test_bad_filter_values_get_a_400_naming_the_parameter(client, gallery, query, field):
    """Programs get told (the schema says what is allowed); the gallery page stays lenient."""
    response = client.get(f"/api/images/?{query}")
    assert response.status_code == 400, query
    assert field in response.json(), response.json()


@pytest.mark.parametrize("path", ["/api/labels/?page_size=0", "/api/models/?page_size=x",
                                  "/api/batches/?page_size=501", "/api/search/?q=water&k=0",
                                  "/api/search/?q=water&k=999"])
def test_every_list_checks_its_paging_parameters(api, path):
    assert api.get(path).status_code in (400, 503), path


@pytest.mark.parametrize("query", ["tags=%00", "tags=a%00b&match=all", "tag=" + "x" * 5000,
                                   "tags=%F0%9F%9B%B0", "tags='%3B--"])
def test_odd_tag_values_match_nothing(client, gallery, query):
    assert listed(client, query) == []


@pytest.mark.parametrize("page", ["zzz", "999", "0", "-1"])
def test_bad_page_is_a_json_404_not_a_500(client, gallery, page):
    response = client.get(f"/api/images/?page={page}")
    assert response.status_code == 404
    assert "detail" in response.json()


def test_image_detail(client, gallery):
    body = client.get(f"/api/images/{gallery.a.pk}/").json()
    assert body["id"] == gallery.a.pk and body["name"] == f"img_{gallery.a.pk}"
    assert body["original_name"] == "chip1.jpg" and body["format"] == "JPEG"
    assert body["tags"] == ["primary", "water"]
    assert body["predicted_tags"] == ["water", "primary"]
    assert set(body["probabilities"]) == set(LABELS)
    assert body["probabilities"]["water"] == 0.9
    assert body["confidence"] == 0.1 and body["model"] == active_model().version
    assert {(lab["name"], lab["source"], lab["probability"]) for lab in body["labels"]} == {
        ("water", "model", 0.9), ("primary", "model", 0.9)}
    assert body["urls"]["original"].endswith(f"/images/{gallery.a.pk}/original")
    assert body["urls"]["display"].endswith(f"/images/{gallery.a.pk}/display")
    assert body["urls"]["dehazed"].endswith(f"/images/{gallery.a.pk}/dehazed")
    assert body["urls"]["page"].startswith("http") and f"/{gallery.a.pk}/" in body["urls"]["page"]
    pending = client.get(f"/api/images/{gallery.pending.pk}/").json()
    assert (pending["status"], pending["tags"], pending["probabilities"]) == ("pending", [], {})
    # a list resolves its URLs once: each image's own id, never the one before
    for row in client.get("/api/images/").json()["results"]:
        assert row["urls"]["original"].endswith(f"/images/{row['id']}/original")
        assert f"/{row['id']}/" in row["urls"]["page"]
    assert "display" not in pending["urls"]
    assert client.get("/api/images/999999/").status_code == 404


# --- curation by PATCH -----------------------------------------------------------------------

def test_patch_needs_the_curate_permission(api, gallery):
    image = gallery.a
    before = label_state(image)
    for who in (APIClient(), api):
        response = who.patch(f"/api/images/{image.pk}/", {"tags": ["road"]}, format="json")
        assert response.status_code in (401, 403)
    assert label_state(image) == before
    image.refresh_from_db()
    assert not image.reviewed


def test_curator_patch_sets_labels_with_provenance(curator_api, gallery):
    image = gallery.a
    response = curator_api.patch(f"/api/images/{image.pk}/", {"tags": ["water", "road"]},
                                 format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tags"] == ["road", "water"]
    assert body["reviewed"] is True and body["reviewed_by"] == "curator"
    assert body["reviewed_at"]
    labels = {lab["name"]: lab for lab in body["labels"]}
    assert (labels["road"]["source"], labels["road"]["added_by"]) == ("person", "curator")
    assert labels["road"]["probability"] is None
    assert (labels["water"]["source"], labels["water"]["probability"]) == ("model", 0.9)
    assert labels["water"]["added_by"] is None
    assert all(lab["reviewed"] for lab in body["labels"])
    assert body["predicted_tags"] == ["water", "primary"]  # the prediction is untouched
    assert label_state(image) == {"road": ("person", True, "curator"),
                                  "water": ("model", True, None)}
    image.refresh_from_db()
    assert image.reviewed and image.reviewed_by.username == "curator"


def test_patch_with_unknown_or_inactive_labels_is_400_naming_them(curator_api, gallery):
    Label.objects.filter(name="haze").update(active=False)
    before = label_state(gallery.a)
    response = curator_api.patch(f"/api/images/{gallery.a.pk}/",
                                 {"tags": ["water", "volcano", "haze"]}, format="json")
    assert response.status_code == 400
    message = response.json()["tags"][0]
    assert "volcano" in message and "haze" in message and "water" not in message
    assert label_state(gallery.a) == before
    gallery.a.refresh_from_db()
    assert not gallery.a.reviewed
    bad = curator_api.patch(f"/api/images/{gallery.a.pk}/", {"tags": "water"}, format="json")
    assert bad.status_code == 400
    assert curator_api.patch("/api/images/999999/", {"tags": []},
                             format="json").status_code == 404


def test_put_is_not_allowed(curator_api, gallery):
    response = curator_api.put(f"/api/images/{gallery.a.pk}/", {"tags": ["road"]},
                               format="json")
    assert response.status_code == 405


# --- labels, models, schema, docs ------------------------------------------------------------

def test_labels_endpoint_lists_the_vocabulary_with_counts(client, gallery):
    Label.objects.filter(name="haze").update(active=False)
    body = client.get("/api/labels/").json()
    assert body["count"] == 17
    rows = {row["name"]: row for row in body["results"]}
    assert list(rows) == sorted(LABELS)
    assert (rows["water"]["images"], rows["cloudy"]["images"], rows["road"]["images"]) == (2, 1,
                                                                                           0)
    assert rows["haze"]["active"] is False and rows["water"]["active"] is True


def test_models_endpoint(client, db):
    model = active_model()
    (row,) = client.get("/api/models/").json()["results"]
    assert (row["version"], row["is_active"], row["labels"]) == (model.version, True,
                                                                 list(LABELS))
    assert client.get(f"/api/models/{model.pk}/").json()["version"] == model.version
    assert client.post("/api/models/", {}).status_code in (401, 403, 405)


def test_schema_describes_the_api(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    assert text.startswith("openapi: 3")
    for path in ("/api/batches/:", "/api/batches/{id}/files/:", "/api/batches/{id}/submit/:",
                 "/api/images/:", "/api/images/{id}/:", "/api/labels/:", "/api/models/:"):
        assert path in text
    assert "min_confidence" in text and "multipart/form-data" in text


def test_swagger_ui_uses_only_local_assets(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=[\"']([^\"']+)", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:  # the sidecar's files, and the start-up script from this server
        assert asset.startswith(("/static/", "/api/docs/?script")), asset
    assert not re.search(r"<(?:script|link)\b[^>]*https?://", html)
    assert not re.search(r"<script>", html)  # nothing inline: the CSP allows none
    assert client.get(next(a for a in assets if a.endswith(".js"))).status_code == 200


def test_every_operation_documents_its_error_answers(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert "detail" in schema["components"]["schemas"]["Error"]["properties"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"200", "201", "202"} & set(operation["responses"]), (method, path)
            assert {"400", "401", "403", "404", "429"} <= set(operation["responses"]), \
                (method, path)
    similar = schema["paths"]["/api/images/{id}/similar/"]["get"]["responses"]["200"]
    assert similar["content"]["application/json"]["schema"]["$ref"].endswith("MatchPage")


def test_unknown_api_paths_answer_json_404(api):
    for path in ("/api/images/1.5/describe/", "/api/no-such-thing/"):  # no route matches
        response = api.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"].startswith("application/json"), path
        assert response.json() == {"detail": "not found"}


def test_results_export_as_csv_for_a_batch_and_for_a_gallery_filter(api, user, client, db):
    import csv as csv_module
    import io

    from tests.webapp.helpers import predicted_image
    from webapp.models import Batch

    first = predicted_image(user, seed=901, tags=["clear", "water"], name="river.jpg")
    batch = Batch.objects.filter(items__image=first).get()
    predicted_image(user, seed=902, tags=["cloudy"], name="cloud.jpg", batch=batch)

    def rows(response):
        assert response.status_code == 200 and response["Content-Type"] == "text/csv"
        assert "attachment" in response["Content-Disposition"]
        return list(csv_module.DictReader(io.StringIO(
            b"".join(response.streaming_content).decode())))

    got = rows(api.get(f"/api/batches/{batch.pk}/export/"))
    assert [r["filename"] for r in got] == ["river.jpg", "cloud.jpg"]
    assert got[0]["tags"] == "clear water" and got[0]["batch"] == str(batch.pk)
    assert got[0]["probabilities"].startswith(("clear:0.9000", "water:0.9000"))
    assert got[1]["tags"] == "cloudy" and got[1]["status"] == "done"
    refused = api.get(f"/api/batches/{batch.pk}/export/?format=")  # not in the schema's enum
    assert refused.status_code == 400 and refused["Content-Type"] == "application/json"
    assert rows(api.get(f"/api/batches/{batch.pk}/export/?format=csv"))
    only_water = rows(api.get("/api/images/export/", {"tags": "water"}))
    assert [r["filename"] for r in only_water] == ["river.jpg"]
    # another user may not export the batch; the images export lists what the gallery
    # lists for them (the tagged collection, as /api/images/ does)
    other = User.objects.create_user("stranger")
    api.force_authenticate(other)
    assert api.get(f"/api/batches/{batch.pk}/export/").status_code == 404
    listed = {r["id"] for r in api.get("/api/images/").json()["results"]}
    assert {int(r["image"]) for r in rows(api.get("/api/images/export/"))} == listed
    page = client.get(f"/batches/{batch.pk}/").content.decode()
    assert f"/api/batches/{batch.pk}/export/" in page
