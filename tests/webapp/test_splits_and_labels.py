"""The frozen evaluation set and labels the model does not know yet (issue 22, parts 1-2)."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.auth.models import Permission, User

from tests.webapp.conftest import make_image
from tests.webapp.helpers import predicted_image, upload
from webapp.conf import app_settings
from webapp.models import Image, Label
from webapp.services import curation, splits


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_the_split_follows_the_content_hash_and_holds_the_fraction():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]
    chosen = [splits.split_for(sha) for sha in hashes]
    share = chosen.count("evaluation") / len(chosen)
    assert app_settings.EVALUATION_FRACTION == 0.15
    assert 0.14 < share < 0.16
    assert [splits.split_for(sha) for sha in hashes[:500]] == chosen[:500]  # stable
    assert splits.split_for(hashes[0], 0.0) == "train"
    assert splits.split_for(hashes[0], 1.0) == "evaluation"


def test_uploads_land_in_the_set_their_hash_gives(user, media):
    files = [(f"c{i}.png", make_image("png", seed=700 + i)) for i in range(40)]
    upload(user, files)
    images = list(Image.objects.all())
    assert len(images) == 40
    assert all(image.split == splits.split_for(image.sha256) for image in images)
    assert {image.split for image in images} == {"train", "evaluation"}  # both occur


def test_moving_an_image_needs_the_permission(curator_api, curator, api, user, media):
    image = predicted_image(user, seed=1, tags=["clear", "primary"])
    target = "evaluation" if image.split == "train" else "train"
    answer = api.patch(f"/api/images/{image.pk}/", {"split": target}, format="json")
    assert answer.status_code == 403  # an analyst may not curate at all
    answer = curator_api.patch(f"/api/images/{image.pk}/", {"split": "elsewhere"},
                               format="json")
    assert answer.status_code == 400
    answer = curator_api.patch(f"/api/images/{image.pk}/", {"split": target}, format="json")
    assert answer.status_code == 200 and answer.json()["split"] == target
    image.refresh_from_db()
    assert image.split == target
    curator.groups.clear()
    curator.user_permissions.add(Permission.objects.get(codename="curate_image"))
    plain = User.objects.get(pk=curator.pk)
    curator_api.force_authenticate(plain)
    answer = curator_api.patch(f"/api/images/{image.pk}/", {"split": "train"}, format="json")
    assert answer.status_code == 403 and "move_split" in answer.json()["split"][0]
    image.refresh_from_db()
    assert image.split == target


def test_curators_create_labels_and_see_how_far_each_is_from_training(
        curator_api, curator, api, user, media, settings):
    settings.MIN_LABEL_POSITIVES = 3
    assert api.post("/api/labels/", {"name": "solar_farm"}, format="json").status_code == 403
    created = curator_api.post("/api/labels/", {"name": "solar_farm",
                                                "description": "panels in rows"},
                               format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["name"], body["known"], body["missing"]) == ("solar_farm", False, 3)
    assert curator_api.post("/api/labels/", {"name": "solar_farm"},
                            format="json").status_code == 400  # taken
    assert curator_api.post("/api/labels/", {"name": "Solar Farm"},
                            format="json").status_code == 400  # not a label name
    # images carry it like any label; only reviewed positives count, per set
    images = [predicted_image(user, seed=10 + i, tags=["clear"]) for i in range(6)]
    train = [image for image in images if image.split == "train"]
    evaluation = [image for image in images if image.split == "evaluation"]
    if not evaluation:  # the hash decides; make one evaluation image for the test
        splits.do_move(images[-1], "evaluation", curator)
        train, evaluation = images[:-1], [images[-1]]
    for image in train[:2] + evaluation[:1]:
        curation.set_labels(image, ["clear", "solar_farm"], curator)  # reviewed by a person
    curation.add_label(Image.objects.filter(pk=train[2].pk), Label.objects.get(
        name="solar_farm"), curator)
    rows = {row["name"]: row for row in api.get("/api/labels/").json()["results"]}
    solar = rows["solar_farm"]
    assert (solar["reviewed_train"], solar["reviewed_evaluation"]) == (3, 1)
    assert solar["missing"] == 0 and solar["known"] is False
    assert rows["clear"]["known"] is True
    # the model's own "clear" on the unreviewed images is no reviewed positive
    assert rows["clear"]["reviewed_train"] == 2 and rows["clear"]["images"] == 6


@pytest.mark.django_db
def test_the_admin_label_list_shows_readiness(admin_client):
    Label.objects.create(name="flooded")
    page = admin_client.get("/admin/webapp/label/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "reviewed in train" in html.lower() and "flooded" in html


def test_labels_have_words_for_people_while_the_key_stays(api, client, user, media):
    image = predicted_image(user, seed=31, tags=["artisinal_mine", "primary"])
    mine = Label.objects.get(name="artisinal_mine")  # the data set's key, typo and all
    assert mine.shown == "Artisanal mine" and "small-scale" in mine.description.lower()
    rows = {row["name"]: row for row in api.get("/api/labels/").json()["results"]}
    assert rows["artisinal_mine"]["display_name"] == "Artisanal mine"
    page = client.get(f"/images/{image.pk}/").content.decode()
    assert "Artisanal mine" in page and "Primary rainforest" in page
    created = Label.objects.create(name="solar_farm")
    assert created.shown == "solar farm"  # no display name yet: the key in words
