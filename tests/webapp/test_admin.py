"""The curation admin: thumbnails, list filters, bulk actions, CSV export, the review
queue, who may enter, and the export_labels command feeding `classifier train`."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test import Client

from imagery.datasets import iter_image_bytes, load_images, read_labels
from tests.webapp.conftest import make_image
from tests.webapp.helpers import label_names, label_state, predicted_image, upload
from webapp.models import Image, ImageLabel, Label
from webapp.services.curation import add_label, mark_reviewed

CHANGELIST = "/admin/webapp/image/"
QUEUE = "/admin/webapp/reviewqueue/"


@dataclass
class Images:
    low: Image  # water primary, 0.1
    mid: Image  # water, 0.3
    high: Image  # cloudy, 0.8, reviewed, png, own batch
    pending: Image

    def all(self) -> list[Image]:
        return [self.low, self.mid, self.high, self.pending]


@pytest.fixture
def images(user, curator) -> Images:
    low = predicted_image(user, 1, ["water", "primary"], confidence=0.1)
    batch = low.batch_items.get().batch
    mid = predicted_image(user, 2, ["water"], confidence=0.3, batch=batch)
    high = predicted_image(user, 3, ["cloudy"], confidence=0.8, kind="png")
    mark_reviewed(Image.objects.filter(pk=high.pk), curator)
    _, (item,) = upload(user, [("pending.jpg", make_image(seed=4))], batch=batch)
    return Images(low, mid, high, item.image)


def shown(client: Client, path: str) -> list[int]:
    response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    return [image.pk for image in response.context["cl"].result_list]


def run_action(client: Client, action: str, selected: list[Image], path: str = CHANGELIST,
               label: Label | None = None, follow: bool = True):
    return client.post(path, {"action": action, "_selected_action": [i.pk for i in selected],
                              "index": 0, "label": label.pk if label else ""}, follow=follow)


# --- changelist, filters --------------------------------------------------------------------

def test_changelist_shows_thumbnails(admin_client, images):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for image in (images.low, images.mid, images.high):
        assert (f'<img class="admin-thumb" src="/images/{image.pk}/display" width="64" '
                'height="64"') in html
    assert f'src="/images/{images.pending.pk}/display"' not in html
    assert set(shown(admin_client, CHANGELIST)) == {i.pk for i in images.all()}


def test_change_page_shows_a_preview_and_probabilities(admin_client, images):
    html = admin_client.get(f"{CHANGELIST}{images.low.pk}/change/").content.decode()
    assert (f'<img class="admin-thumb" src="/images/{images.low.pk}/display" width="256" '
            'height="256"') in html
    assert "water: 0.90" in html and "cloudy: 0.05" in html


@pytest.mark.parametrize(("query", "expected"), [
    ("label=water", {"low", "mid"}),
    ("label=cloudy", {"high"}),
    ("label=road", set()),
    ("reviewed__exact=1", {"high"}),
    ("reviewed__exact=0", {"low", "mid", "pending"}),
    ("confidence=low", {"low"}),
    ("confidence=medium", {"mid"}),
    ("confidence=high", {"high"}),
    ("status__exact=pending", {"pending"}),
    ("label=water&confidence=medium", {"mid"}),
])
def test_list_filters(admin_client, images, query, expected):
    assert set(shown(admin_client, f"{CHANGELIST}?{query}")) == {
        getattr(images, name).pk for name in expected}


def test_batch_filter(admin_client, images):
    low_batch = images.low.batch_items.get().batch
    high_batch = images.high.batch_items.get().batch
    assert set(shown(admin_client, f"{CHANGELIST}?batch={low_batch.pk}")) == {
        images.low.pk, images.mid.pk, images.pending.pk}
    assert shown(admin_client, f"{CHANGELIST}?batch={high_batch.pk}") == [images.high.pk]
    html = admin_client.get(CHANGELIST).content.decode()
    assert f"?batch={high_batch.pk}" in html  # offered in the filter panel


def test_search_by_name_part_id_and_digest_prefix(admin_client, images):
    """Each on an index at scale (ImageAdmin.get_search_results; the name's trigram index
    on PostgreSQL, migration 0017)."""
    images.mid.original_name = "Scene_B12_north.TIF"
    images.mid.save(update_fields=["original_name"])
    assert shown(admin_client, f"{CHANGELIST}?q=b12_NOR") == [images.mid.pk]
    assert shown(admin_client, f"{CHANGELIST}?q=img_{images.high.pk}") == [images.high.pk]
    assert images.low.pk in shown(admin_client, f"{CHANGELIST}?q={images.low.pk}")
    prefix = images.pending.sha256[:10].upper()
    assert shown(admin_client, f"{CHANGELIST}?q={prefix}") == [images.pending.pk]
    assert shown(admin_client, f"{CHANGELIST}?q=nothing-like-this") == []
    assert len(shown(admin_client, f"{CHANGELIST}?q=%20")) == 4  # blank: everything
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'image_name_trigram'")
            assert cursor.fetchone()


@pytest.mark.parametrize(("query", "count"), [
    ("batch=abc", 0), ("batch=99999999999999999999999", 0), ("batch=-1", 0),
    ("label=no_such_label", 0), ("label=%00", 0), ("confidence=zzz", 4),
])
def test_junk_filter_values_are_no_500(admin_client, images, query, count):
    assert len(shown(admin_client, f"{CHANGELIST}?{query}")) == count


def test_filter_panel_lists_labels_and_confidence_bands(admin_client, images):
    html = admin_client.get(CHANGELIST).content.decode()
    for option in ("?label=water", "?label=slash_burn", "?confidence=low", "?confidence=high"):
        assert option in html


# --- actions ---------------------------------------------------------------------------------

def test_action_form_has_a_label_field_with_active_labels(admin_client, images):
    Label.objects.filter(name="haze").update(active=False)
    html = admin_client.get(CHANGELIST).content.decode()
    assert '<select name="label"' in html
    road = Label.objects.get(name="road")
    assert f'<option value="{road.pk}">road</option>' in html
    haze = Label.objects.get(name="haze")
    assert f'<option value="{haze.pk}">haze</option>' not in html
    for action in ("accept_predictions", "mark_reviewed", "add_label", "remove_label",
                   "export_csv"):
        assert f'<option value="{action}">' in html


def test_accept_predictions_action(admin_client, admin_user, images):
    add_label(Image.objects.filter(pk=images.low.pk), Label.objects.get(name="road"),
              admin_user)
    response = run_action(admin_client, "accept_predictions", [images.low, images.pending])
    assert "Accepted the predictions of 1 images." in response.content.decode()
    assert label_state(images.low) == {"water": ("model", True, "admin"),
                                       "primary": ("model", True, "admin")}
    assert set(ImageLabel.objects.filter(image=images.low)
               .values_list("probability", flat=True)) == {0.9}
    images.low.refresh_from_db()
    assert images.low.reviewed and images.low.reviewed_by == admin_user
    images.pending.refresh_from_db()
    assert not images.pending.reviewed
    images.mid.refresh_from_db()
    assert not images.mid.reviewed  # not selected


def test_mark_reviewed_action(admin_client, admin_user, images):
    response = run_action(admin_client, "mark_reviewed", [images.low, images.mid])
    assert "Marked 2 images reviewed." in response.content.decode()
    for image in (images.low, images.mid):
        image.refresh_from_db()
        assert image.reviewed and image.reviewed_by == admin_user and image.reviewed_at
        assert all(reviewed for _, reviewed, _ in label_state(image).values())
    assert set(shown(admin_client, QUEUE)) == set()


def test_add_and_remove_label_actions(admin_client, images):
    road = Label.objects.get(name="road")
    response = run_action(admin_client, "add_label", [images.low, images.high], label=road)
    assert "Added &#x27;road&#x27; to 2 images." in response.content.decode()
    assert label_state(images.low)["road"] == ("person", True, "admin")
    assert "road" in label_names(images.high) and "road" not in label_names(images.mid)

    water = Label.objects.get(name="water")
    run_action(admin_client, "add_label", [images.low, images.high], label=water)
    assert label_state(images.low)["water"] == ("model", False, None)  # kept as it was
    assert label_state(images.high)["water"] == ("person", True, "admin")

    response = run_action(admin_client, "remove_label", [images.low, images.mid], label=water)
    assert "Removed &#x27;water&#x27; from 2 images." in response.content.decode()
    assert label_names(images.low) == {"primary", "road"}
    assert label_names(images.mid) == set()
    assert "water" in label_names(images.high)  # not selected


def test_label_actions_without_a_usable_label_change_nothing(admin_client, images):
    haze = Label.objects.get(name="haze")
    haze.active = False
    haze.save()
    before = {image.pk: label_state(image) for image in images.all()}
    for action in ("add_label", "remove_label"):
        for label in ("", haze.pk, 999999, "abc"):
            response = admin_client.post(CHANGELIST, {
                "action": action, "_selected_action": [images.low.pk, images.mid.pk],
                "index": 0, "label": label}, follow=True)
            assert response.status_code == 200
            if label == "":
                assert "Choose a label next to the action first." in response.content.decode()
    assert {image.pk: label_state(image) for image in images.all()} == before


def test_export_csv_action_is_read_by_the_classifier(admin_client, images, tmp_path):
    add_label(Image.objects.filter(pk=images.high.pk), Label.objects.get(name="road"), None)
    response = run_action(admin_client, "export_csv", images.all(), follow=False)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="labels.csv"'
    path = tmp_path / "labels.csv"
    path.write_bytes(response.content)
    table = read_labels(path)
    ready = sorted([images.low, images.mid, images.high], key=lambda i: i.pk)
    assert table.names == [f"img_{i.pk}" for i in ready]  # the pending one is left out
    assert dict(zip(table.names, table.tags)) == {
        f"img_{images.low.pk}": ["primary", "water"], f"img_{images.mid.pk}": ["water"],
        f"img_{images.high.pk}": ["cloudy", "road"]}
    assert response.content.decode().splitlines()[0] == "image_name,tags"


def test_export_csv_of_a_selection(admin_client, images, tmp_path):
    response = run_action(admin_client, "export_csv", [images.mid], follow=False)
    path = tmp_path / "labels.csv"
    path.write_bytes(response.content)
    table = read_labels(path)
    assert (table.names, table.tags) == ([f"img_{images.mid.pk}"], [["water"]])


# --- review queue ----------------------------------------------------------------------------

def test_review_queue_lists_unreviewed_ready_images_least_certain_first(admin_client, user,
                                                                        images):
    least = predicted_image(user, 5, ["haze"], confidence=0.05)
    broken = predicted_image(user, 6, ["road"], confidence=0.01)
    Image.objects.filter(pk=broken.pk).update(status=Image.Status.BROKEN)
    assert shown(admin_client, QUEUE) == [least.pk, images.low.pk, images.mid.pk]
    html = admin_client.get(QUEUE).content.decode()
    positions = [html.index(f'src="/images/{i.pk}/display"')
                 for i in (least, images.low, images.mid)]
    assert positions == sorted(positions)
    assert f'src="/images/{images.high.pk}/display"' not in html
    # Once reviewed, an image leaves the queue.
    run_action(admin_client, "mark_reviewed", [least], path=QUEUE)
    assert shown(admin_client, QUEUE) == [images.low.pk, images.mid.pk]


def test_review_queue_filters(admin_client, images):
    assert shown(admin_client, f"{QUEUE}?label=primary") == [images.low.pk]
    assert shown(admin_client, f"{QUEUE}?confidence=medium") == [images.mid.pk]


# --- who may enter ---------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["user", "curator"])
def test_non_staff_users_cannot_open_the_admin(request, images, who):
    client = Client()
    client.force_login(request.getfixturevalue(who))
    for path in ("/admin/", CHANGELIST, QUEUE):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    before = label_state(images.low)
    client.post(CHANGELIST, {"action": "add_label", "_selected_action": [images.low.pk],
                             "index": 0, "label": Label.objects.get(name="road").pk})
    assert label_state(images.low) == before


def test_staff_curator_can_curate_in_the_admin(curator, images):
    curator.is_staff = True
    curator.save()
    client = Client()
    client.force_login(curator)
    assert shown(client, QUEUE) == [images.low.pk, images.mid.pk]
    run_action(client, "accept_predictions", [images.low], path=QUEUE)
    images.low.refresh_from_db()
    assert images.low.reviewed and images.low.reviewed_by == curator


def test_staff_without_curate_permission_gets_no_curation_actions(images):
    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_image"))
    client = Client()
    client.force_login(viewer)
    html = client.get(CHANGELIST).content.decode()
    assert '<option value="export_csv">' in html
    for action in ("accept_predictions", "mark_reviewed", "add_label", "remove_label"):
        assert f'<option value="{action}">' not in html
    run_action(client, "mark_reviewed", [images.low])
    images.low.refresh_from_db()
    assert not images.low.reviewed


def test_activating_a_model_needs_change_permission_on_model_versions(curator, images):
    """A curator (view permission on model versions) sees the list but cannot switch the
    model that tags uploads; change permission can."""
    from tests.webapp.helpers import second_model
    from webapp.models import ModelVersion

    curator.is_staff = True
    curator.save()
    other = second_model()
    active = ModelVersion.objects.get(is_active=True)
    client = Client()
    client.force_login(curator)
    path = "/admin/webapp/modelversion/"
    html = client.get(path).content.decode()
    assert client.get(path).status_code == 200 and '<option value="activate">' not in html
    client.post(path, {"action": "activate", "_selected_action": [other.pk], "index": 0})
    assert ModelVersion.objects.get(is_active=True) == active
    curator.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    client.force_login(User.objects.get(pk=curator.pk))
    client.post(path, {"action": "activate", "_selected_action": [other.pk], "index": 0})
    assert ModelVersion.objects.get(is_active=True) == other


def test_admin_batches_follow_the_site_rules(images, admin_user):
    """Staff with view permission on batches see only their own unless they hold
    view_all_batches (a superuser holds every permission)."""
    from webapp.models import Batch

    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_batch"))
    client = Client()
    client.force_login(viewer)
    html = client.get("/admin/webapp/batch/").content.decode()
    assert "0 batches" in html
    batch = Batch.objects.first()
    assert client.get(f"/admin/webapp/batch/{batch.pk}/change/").status_code in (302, 404)
    admin = Client()
    admin.force_login(admin_user)
    assert admin.get(f"/admin/webapp/batch/{batch.pk}/change/").status_code == 200


# --- export_labels command -------------------------------------------------------------------

def test_export_labels_command_writes_a_planet_csv(images, tmp_path):
    out = tmp_path / "labels.csv"
    call_command("export_labels", str(out), stdout=io.StringIO())
    table = read_labels(out)
    assert table.names == [f"img_{i.pk}" for i in sorted([images.low, images.mid, images.high],
                                                          key=lambda i: i.pk)]
    call_command("export_labels", str(out), "--reviewed-only", stdout=io.StringIO())
    assert read_labels(out).names == [f"img_{images.high.pk}"]


def test_export_streams_in_chunks_of_images_by_id(images, curator):
    """A chunk of 1 image at a time (bounded memory at any size) gives the same rows in
    id order, with each image's current labels sorted by name."""
    from webapp.services.export import label_rows

    add_label(Image.objects.filter(pk=images.low.pk), Label.objects.get(name="road"), curator)
    ready = sorted([images.low, images.mid, images.high], key=lambda i: i.pk)
    rows = list(label_rows(Image.objects.all(), chunk=1))
    assert rows == list(label_rows(Image.objects.all(), chunk=1000))
    assert [name for name, _ in rows] == [f"img_{i.pk}" for i in ready]
    assert dict(rows)[f"img_{images.low.pk}"] == "primary road water"


def test_export_labels_dataset_trains_as_is(images, tmp_path):
    out = tmp_path / "dataset"
    stdout = io.StringIO()
    call_command("export_labels", str(out), "--dataset", stdout=stdout)
    assert "wrote 3 images" in stdout.getvalue()
    table = read_labels(out / "labels.csv")
    ready = {f"img_{i.pk}": i for i in (images.low, images.mid, images.high)}
    assert set(table.names) == set(ready)
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == sorted([f"img_{images.low.pk}.jpg", f"img_{images.mid.pk}.jpg",
                            f"img_{images.high.pk}.png"])
    for name, data in iter_image_bytes(out / "images", set(table.names)):
        with ready[name].file.open("rb") as handle:
            assert data == handle.read()
    labels = ["cloudy", "primary", "water"]
    dataset = load_images(table, out / "images", size=32, labels=labels, progress=False)
    assert dataset.errors == {} and dataset.names == table.names
    assert dataset.images.shape == (3, 32, 32, 3) and dataset.images.dtype == np.uint8
    expected = {f"img_{images.low.pk}": [0, 1, 1], f"img_{images.mid.pk}": [0, 0, 1],
                f"img_{images.high.pk}": [1, 0, 0]}
    assert dataset.targets.tolist() == [expected[n] for n in dataset.names]


def test_export_labels_dataset_reviewed_only(images, tmp_path):
    out = tmp_path / "reviewed"
    call_command("export_labels", str(out), "--dataset", "--reviewed-only",
                 stdout=io.StringIO())
    assert read_labels(out / "labels.csv").names == [f"img_{images.high.pk}"]
    assert [p.name for p in Path(out / "images").iterdir()] == [f"img_{images.high.pk}.png"]


def test_admin_label_inline_writes_through_the_curation_rules(curator, images, monkeypatch):
    """Adding and removing labels in the change form: new labels are the curator's, the
    image is reviewed, its text code is re-encoded; provenance cannot be typed in."""
    sent = []
    monkeypatch.setattr("webapp.services.curation.encode_on_commit",
                        lambda ids, text_only=False: sent.append((sorted(ids), text_only)))
    curator.is_staff = True
    curator.save()
    client = Client()
    client.force_login(curator)
    image = images.low
    rows = list(image.labels.select_related("label").order_by("pk"))
    path = f"/admin/webapp/image/{image.pk}/change/"
    data = {"original_name": image.original_name, "labels-TOTAL_FORMS": len(rows) + 1,
            "labels-INITIAL_FORMS": len(rows), "labels-MIN_NUM_FORMS": 0,
            "labels-MAX_NUM_FORMS": 1000}
    for n, row in enumerate(rows):
        data.update({f"labels-{n}-id": row.pk, f"labels-{n}-image": image.pk,
                     f"labels-{n}-label": row.label.pk})
    data[f"labels-{0}-DELETE"] = "on"  # remove the first label
    new = len(rows)
    data.update({f"labels-{new}-image": image.pk,
                 f"labels-{new}-label": Label.objects.get(name="road").pk,
                 f"labels-{new}-source": "model", f"labels-{new}-probability": "0.99"})
    response = client.post(path, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    image.refresh_from_db()
    state = label_state(image)
    assert rows[0].label.name not in state
    assert state["road"] == ("person", True, "curator")  # not "model", whatever was posted
    assert ImageLabel.objects.get(image=image, label__name="road").probability is None
    assert image.reviewed and image.reviewed_by == curator
    assert sent == [([image.pk], True)]


def test_the_model_page_shows_its_figures_per_label_weakest_first(admin_client):
    from webapp.services.model_registry import active_model

    model = active_model()
    page = admin_client.get(f"/admin/webapp/modelversion/{model.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    rows = re.findall(r"<tr><td>([a-z_]+)</td><td>([\d.]+)</td>", html)
    assert len(rows) == len(model.metrics["per_label_test"]) == 17
    f2s = [float(f2) for _name, f2 in rows]
    assert f2s == sorted(f2s)  # the weakest label first
    assert "F2 (sample-averaged)" in html and "test: 0.9089" in html  # the shipped model
