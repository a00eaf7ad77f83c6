"""Curation rules: a prediction rewrites only unreviewed model labels; a person's edit keeps
the provenance of kept labels and marks the image reviewed; inactive labels stay but
cannot be added; bulk accept/add/remove/mark-reviewed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.webapp.conftest import make_image
from tests.webapp.helpers import (
    label_names,
    label_state,
    output,
    predicted_image,
    second_model,
    store_prediction,
    upload,
)
from webapp.models import Image, ImageLabel, Label, Prediction
from webapp.services import curation


def label(name: str) -> Label:
    return Label.objects.get(name=name)


def probabilities(image: Image) -> dict[str, float | None]:
    return dict(ImageLabel.objects.filter(image=image).values_list("label__name", "probability"))


def only(image: Image):
    return Image.objects.filter(pk=image.pk)


@pytest.fixture
def other(db) -> User:
    return User.objects.create_user("other-curator", password="pw-other-1")


# --- apply_model_labels (through store_prediction, as the worker calls it) ----------------

def test_newer_prediction_replaces_only_unreviewed_model_labels(user, curator):
    image = predicted_image(user, 1, ["water", "primary", "haze"])
    curation.add_label(only(image), label("road"), curator)  # a person's label
    ImageLabel.objects.create(image=image, label=label("bare_ground"),  # admin inline style
                              source=ImageLabel.Source.PERSON, reviewed=False)
    ImageLabel.objects.filter(image=image, label__name="water").update(reviewed=True)

    newer = second_model()
    prediction, created = store_prediction(
        image, newer, output(["primary", "cloudy", "road", "water"], confidence=0.7,
                             probabilities={"primary": 0.77, "cloudy": 0.66, "road": 0.55,
                                            "water": 0.51}))
    assert created
    assert label_state(image) == {
        "water": ("model", True, None),  # reviewed: kept as it was
        "road": ("person", True, "curator"),  # a person's: untouched
        "bare_ground": ("person", False, None),
        "primary": ("model", False, None),
        "cloudy": ("model", False, None),
    }  # haze: an unreviewed model label the newer model dropped
    assert probabilities(image)["primary"] == 0.77  # rewritten from the newer prediction
    assert probabilities(image)["cloudy"] == 0.66
    assert probabilities(image)["water"] == 0.9  # the reviewed one keeps its old score
    assert probabilities(image)["road"] is None
    image.refresh_from_db()
    assert image.prediction == prediction and image.confidence == 0.7
    assert not image.reviewed


def test_reviewed_model_label_survives_a_prediction_without_it(user):
    image = predicted_image(user, 6, ["water", "haze"])
    ImageLabel.objects.filter(image=image, label__name="water").update(reviewed=True)
    store_prediction(image, second_model(), output(["cloudy"]))
    assert label_state(image) == {"water": ("model", True, None),
                                  "cloudy": ("model", False, None)}


def test_newer_prediction_does_not_touch_a_reviewed_image(user, curator):
    image = predicted_image(user, 2, ["water", "primary"])
    curation.mark_reviewed(only(image), curator)
    before = label_state(image)
    image.refresh_from_db()  # as the worker does: it reads the row under a lock
    prediction, _ = store_prediction(image, second_model(), output(["cloudy"]))
    assert label_state(image) == before
    image.refresh_from_db()
    assert image.prediction == prediction  # the prediction itself is recorded
    assert image.reviewed and image.reviewed_by == curator


def test_prediction_without_tags_clears_only_unreviewed_model_labels(user, curator):
    image = predicted_image(user, 3, ["water", "primary"])
    curation.add_label(only(image), label("road"), curator)
    store_prediction(image, second_model(), output([]))
    assert label_state(image) == {"road": ("person", True, "curator")}


def test_prediction_may_carry_inactive_labels(user):
    Label.objects.filter(name="haze").update(active=False)
    image = predicted_image(user, 4, ["haze", "water"])
    assert label_names(image) == {"haze", "water"}


def test_same_model_predicts_an_image_once(user):
    image = predicted_image(user, 5, ["water"])
    prediction, created = store_prediction(image, image.prediction.model, output(["cloudy"]))
    assert not created and prediction.tags == ["water"]
    assert Prediction.objects.filter(image=image).count() == 1
    assert label_names(image) == {"water"}


# --- set_labels --------------------------------------------------------------------------

def test_set_labels_keeps_provenance_of_kept_labels(user, curator, other):
    image = predicted_image(user, 10, ["water", "primary"])
    curation.add_label(only(image), label("road"), curator)
    names = curation.set_labels(image, ["water", "road", "cloudy"], other)
    assert names == ["cloudy", "road", "water"]
    assert label_state(image) == {
        "water": ("model", True, None),
        "road": ("person", True, "curator"),  # not re-attributed to the editor
        "cloudy": ("person", True, "other-curator"),
    }
    assert probabilities(image) == {"water": 0.9, "road": None, "cloudy": None}
    image.refresh_from_db()
    assert image.reviewed and image.reviewed_by == other and image.reviewed_at is not None


def test_set_labels_ignores_blanks_duplicates_and_whitespace(user, curator):
    image = predicted_image(user, 11, ["water"])
    assert curation.set_labels(image, [" cloudy ", "cloudy", "", "  ", "water"], curator) == [
        "cloudy", "water"]


def test_set_labels_to_nothing_is_a_review_too(user, curator):
    image = predicted_image(user, 12, ["water", "primary"])
    assert curation.set_labels(image, [], curator) == []
    image.refresh_from_db()
    assert label_names(image) == set() and image.reviewed
    store_prediction(image, second_model(), output(["water"]))
    assert label_names(image) == set()  # reviewed: a newer prediction adds nothing back


def test_inactive_label_stays_but_cannot_be_added(user, curator):
    image = predicted_image(user, 13, ["haze", "water"])
    Label.objects.filter(name__in=["haze", "slash_burn"]).update(active=False)
    assert curation.set_labels(image, ["haze", "water", "road"], curator) == [
        "haze", "road", "water"]
    assert label_state(image)["haze"] == ("model", True, None)

    before = label_state(image)
    with pytest.raises(curation.UnknownLabels) as raised:
        curation.set_labels(image, ["haze", "slash_burn"], curator)
    assert raised.value.names == ["slash_burn"]
    assert label_state(image) == before  # nothing half-done


def test_unknown_labels_are_all_named_and_nothing_changes(user, curator):
    image = predicted_image(user, 14, ["water"])
    with pytest.raises(curation.UnknownLabels) as raised:
        curation.set_labels(image, ["volcano", "water", "lava"], curator)
    assert raised.value.names == ["volcano", "lava"]
    assert "volcano" in str(raised.value) and "lava" in str(raised.value)
    assert label_state(image) == {"water": ("model", False, None)}
    image.refresh_from_db()
    assert not image.reviewed


def test_resolve_labels(db, user):
    predicted_image(user, 15, [])  # registers the vocabulary
    Label.objects.filter(name="haze").update(active=False)
    assert set(curation.resolve_labels(["water", " road ", ""])) == {"water", "road"}
    with pytest.raises(curation.UnknownLabels):
        curation.resolve_labels(["haze"])
    assert set(curation.resolve_labels(["haze"], allow_inactive=True)) == {"haze"}


# --- bulk operations ---------------------------------------------------------------------

def test_accept_predictions(user, curator, other):
    a = predicted_image(user, 20, ["water", "primary"])
    b = predicted_image(user, 21, ["cloudy"])
    curation.add_label(only(a), label("road"), curator)
    curation.set_labels(b, ["road"], curator)  # reviewed, and differs from the prediction
    _, (item,) = upload(user, [("pending.jpg", make_image(seed=22))])
    pending = item.image
    curation.add_label(only(pending), label("road"), curator)
    count = curation.accept_predictions(Image.objects.filter(pk__in=[a.pk, b.pk, pending.pk]),
                                        other)
    assert count == 2
    assert label_state(a) == {"water": ("model", True, "other-curator"),
                              "primary": ("model", True, "other-curator")}
    assert probabilities(a) == {"water": 0.9, "primary": 0.9}
    assert label_state(b) == {"cloudy": ("model", True, "other-curator")}
    for image in (a, b):
        image.refresh_from_db()
        assert image.reviewed and image.reviewed_by == other
    pending.refresh_from_db()
    assert not pending.reviewed  # no prediction to accept: left as it was
    assert label_state(pending) == {"road": ("person", True, "curator")}


def test_accept_predictions_with_an_inactive_predicted_label(user, curator):
    image = predicted_image(user, 23, ["haze"])
    Label.objects.filter(name="haze").update(active=False)
    assert curation.accept_predictions(only(image), curator) == 1
    assert label_state(image) == {"haze": ("model", True, "curator")}


def test_add_label_adds_only_where_missing(user, curator, other):
    a = predicted_image(user, 30, ["water"])
    b = predicted_image(user, 31, ["cloudy"])
    assert curation.add_label(only(b), label("road"), curator) == 1
    assert curation.add_label(Image.objects.filter(pk__in=[a.pk, b.pk]), label("road"),
                              other) == 1
    assert label_state(a)["road"] == ("person", True, "other-curator")
    assert label_state(b)["road"] == ("person", True, "curator")  # already there: kept
    assert curation.add_label(only(a), label("water"), other) == 0
    assert label_state(a)["water"] == ("model", False, None)
    assert curation.add_label(Image.objects.none(), label("water"), other) == 0


def test_remove_label(user, curator):
    a = predicted_image(user, 32, ["water", "primary"])
    b = predicted_image(user, 33, ["cloudy"])
    c = predicted_image(user, 34, ["water"])
    assert curation.remove_label(Image.objects.filter(pk__in=[a.pk, b.pk]), label("water")) == 1
    assert label_names(a) == {"primary"} and label_names(b) == {"cloudy"}
    assert label_names(c) == {"water"}  # not selected
    assert curation.remove_label(only(a), label("water")) == 0


def test_mark_reviewed(user, curator):
    a = predicted_image(user, 40, ["water"])
    b = predicted_image(user, 41, ["cloudy"])
    c = predicted_image(user, 42, ["road"])
    assert curation.mark_reviewed(Image.objects.filter(pk__in=[a.pk, b.pk]), curator) == 2
    for image in (a, b):
        image.refresh_from_db()
        assert image.reviewed and image.reviewed_by == curator and image.reviewed_at
        assert all(reviewed for _, reviewed, _ in label_state(image).values())
    c.refresh_from_db()
    assert not c.reviewed and label_state(c) == {"road": ("model", False, None)}
    store_prediction(a, second_model(), output(["primary"]))
    assert label_names(a) == {"water"}
