"""Image.label_ids, the tag filters' indexed form of an image's labels: it matches the
label rows after every kind of write (model labels, re-tagging, a person's edit in the
API, the page and the admin, bulk admin actions), and the gallery's tag filters read it
(on PostgreSQL; SQLite filters through the rows) with the same answers."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.webapp.helpers import (
    assert_label_index_matches,
    csrf_token,
    label_names,
    predict,
    predicted_image,
    second_model,
)
from webapp.models import Image, ImageLabel, Label
from webapp.services import curation, label_index
from webapp.services.gallery import ImageFilter

pytestmark = pytest.mark.django_db


@pytest.fixture
def three(user):
    return [predicted_image(user, 1, ["water", "primary"]),
            predicted_image(user, 2, ["clear", "primary", "road"]),
            predicted_image(user, 3, ["cloudy"])]


def listed(tags: list[str], match: str = "any") -> set[int]:
    return set(ImageFilter(tags, match).apply(Image.objects.all()).values_list("pk", flat=True))


def by_rows(tags: list[str], match: str = "any") -> set[int]:
    """The same filter answered from the label rows alone (what the index stands for)."""
    out = set()
    for image in Image.objects.filter(status=Image.Status.READY):
        names = label_names(image)
        if (set(tags) <= names) if match == "all" else (set(tags) & names):
            out.add(image.pk)
    return out


QUERIES = [(["water"], "any"), (["water", "road"], "any"), (["primary", "road"], "all"),
           (["primary", "nonsense"], "all"), (["nonsense"], "any"), (["cloudy"], "all"),
           (["blow_down"], "any")]


def test_model_labels_fill_the_index_and_the_filters_read_it(three):
    assert_label_index_matches()
    water = Label.objects.get(name="water").pk
    assert water in Image.objects.get(pk=three[0].pk).label_ids
    for tags, match in QUERIES:
        assert listed(tags, match) == by_rows(tags, match), (tags, match)


def test_person_edits_and_newer_predictions_keep_it_current(three, curator, curator_api,
                                                            client):
    curation.set_labels(three[0], ["haze", "water"], curator)
    assert_label_index_matches()
    assert curator_api.patch(f"/api/images/{three[1].pk}/", {"tags": ["agriculture"]},
                             format="json").status_code == 200
    assert_label_index_matches()
    client.force_login(curator)
    page = client.get(f"/images/{three[2].pk}/").content.decode()
    client.post(f"/images/{three[2].pk}/", {"csrfmiddlewaretoken": csrf_token(page),
                                            "tags": ["cloudy", "haze"]})
    assert label_names(three[2]) == {"cloudy", "haze"}
    assert_label_index_matches()
    fresh = predicted_image(three[0].uploaded_by, 4, ["bare_ground"])
    predict(fresh, ["bare_ground", "road"], model=second_model())  # re-tagging's path
    assert label_names(fresh) == {"bare_ground", "road"}
    assert_label_index_matches()
    for tags, match in QUERIES + [(["agriculture"], "any"), (["haze", "water"], "all")]:
        assert listed(tags, match) == by_rows(tags, match), (tags, match)


def test_bulk_admin_actions_keep_it_current(three, admin_client):
    road = Label.objects.get(name="road")
    for action, label in (("add_label", road), ("remove_label", road),
                          ("accept_predictions", None), ("add_label", road)):
        response = admin_client.post("/admin/webapp/image/", {
            "action": action, "_selected_action": [i.pk for i in three], "index": 0,
            "label": label.pk if label else ""}, follow=True)
        assert response.status_code == 200
        assert_label_index_matches()
    assert listed(["road"]) == {i.pk for i in three}


def test_refresh_repairs_and_a_stale_index_would_be_caught(three):
    """The check itself can fail: a label row written behind the service's back leaves
    the column stale until ``refresh`` runs."""
    ImageLabel.objects.create(image=three[2], label=Label.objects.get(name="blow_down"),
                              source=ImageLabel.Source.PERSON)
    with pytest.raises(AssertionError):
        assert_label_index_matches()
    label_index.refresh_all()
    assert_label_index_matches()
    assert listed(["blow_down"]) == {three[2].pk}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the GIN index is PostgreSQL's")
def test_postgresql_filters_through_the_gin_index(three):
    from django.db.models import Q

    sql = str(ImageFilter(["water"]).apply(Image.objects.all()).query)
    assert "label_ids" in sql and "&&" in sql and "imagelabel" not in sql.lower()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                       "'image_label_ids_gin'")
        assert "gin (label_ids)" in cursor.fetchone()[0]
    assert Image.objects.filter(Q(label_ids__has_all=[])).count() == 3


def test_label_counts_are_exact_up_to_the_cap_then_estimated(three, monkeypatch, api):
    from webapp.services import keyset, labels

    table = {label.name: label for label in labels.label_table()}
    assert (table["primary"].images, table["primary"].images_exact) == (2, True)
    assert (table["blow_down"].images, table["blow_down"].images_exact) == (0, True)
    body = {row["name"]: row for row in api.get("/api/labels/?page_size=100").json()["results"]}
    assert body["primary"]["images"] == 2 and body["primary"]["images_exact"] is True
    monkeypatch.setattr(keyset, "COUNT_CAP", 1)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE webapp_image")
    primary = labels.label_table(Label.objects.filter(name="primary"))[0]
    if connection.vendor == "postgresql":  # the planner's statistics: 2 of 3 images
        assert (primary.images, primary.images_exact) == (2, False)
    else:
        assert (primary.images, primary.images_exact) == (2, True)
