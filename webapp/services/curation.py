"""Curating labels: people's edits, accepting predictions, review state.

Rules: a prediction writes labels with source "model" but never touches labels a person
added or reviewed; a person's edit marks the image reviewed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from webapp.models import Image, ImageLabel, Label, Prediction
from webapp.services import label_index
from webapp.services.jobs import encode_on_commit


class UnknownLabels(ValueError):
    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        super().__init__(f"unknown or inactive labels: {', '.join(self.names)}")


def resolve_labels(names: Iterable[str], allow_inactive: bool = False) -> dict[str, Label]:
    """Label objects for names; raise UnknownLabels naming every bad one."""
    wanted = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    labels = Label.objects.filter(name__in=wanted)
    if not allow_inactive:
        labels = labels.filter(active=True)
    found = {label.name: label for label in labels}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise UnknownLabels(missing)
    return found


def apply_model_labels_many(pairs: Sequence[tuple[Image, Prediction]]) -> None:
    """Replace the unreviewed model labels of a worker's whole chunk of images by their
    predictions' tags, in four queries: reviewed images are left alone; labels a person
    added or reviewed are kept."""
    pairs = [(image, prediction) for image, prediction in pairs if not image.reviewed]
    if not pairs:
        return
    ids = [image.pk for image, _ in pairs]
    unreviewed_model = Q(source=ImageLabel.Source.MODEL, reviewed=False)
    keep: dict[int, set[str]] = defaultdict(set)
    for image_id, name in (ImageLabel.objects.filter(image_id__in=ids).exclude(unreviewed_model)
                           .values_list("image_id", "label__name")):
        keep[image_id].add(name)
    ImageLabel.objects.filter(unreviewed_model, image_id__in=ids).delete()
    names = {name for _, prediction in pairs for name in prediction.tags}
    labels = resolve_labels(names, allow_inactive=True) if names else {}
    ImageLabel.objects.bulk_create([
        ImageLabel(image=image, label=labels[name], source=ImageLabel.Source.MODEL,
                   probability=prediction.probabilities.get(name))
        for image, prediction in pairs for name in dict.fromkeys(prediction.tags)
        if name not in keep[image.pk]
    ])
    label_index.refresh(ids)


@transaction.atomic
def set_labels(image: Image, names: Iterable[str], user) -> list[str]:
    """A person sets the image's labels; the image counts as reviewed by them.

    Labels already on the image keep their provenance (even if since deactivated); new
    ones must be active vocabulary labels.
    """
    wanted = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    current = {il.label.name: il for il in image.labels.select_related("label")}
    new = resolve_labels([n for n in wanted if n not in current])
    for name, entry in current.items():
        if name not in wanted:
            entry.delete()
    ImageLabel.objects.bulk_create([
        ImageLabel(image=image, label=label, source=ImageLabel.Source.PERSON, added_by=user,
                   reviewed=True) for label in new.values()])
    label_index.refresh([image.pk])
    mark_reviewed(Image.objects.filter(pk=image.pk), user)
    encode_on_commit([image.pk], text_only=True)  # its text code follows its labels
    image.refresh_from_db()
    return sorted(image.labels.values_list("label__name", flat=True))


@transaction.atomic
def mark_reviewed(images: QuerySet[Image], user) -> int:
    ids = list(images.values_list("pk", flat=True))
    ImageLabel.objects.filter(image_id__in=ids).update(reviewed=True)
    return Image.objects.filter(pk__in=ids).update(reviewed=True, reviewed_by=user,
                                                   reviewed_at=timezone.now())


@transaction.atomic
def accept_predictions(images: QuerySet[Image], user) -> int:
    """Labels := the latest prediction's tags, checked by this user."""
    count, touched = 0, []
    for image in images.select_related("prediction"):
        if image.prediction is None:
            continue
        touched.append(image.pk)
        image.labels.all().delete()
        labels = resolve_labels(image.prediction.tags, allow_inactive=True)
        ImageLabel.objects.bulk_create([
            ImageLabel(image=image, label=label, source=ImageLabel.Source.MODEL,
                       probability=image.prediction.probabilities.get(name),
                       added_by=user, reviewed=True)
            for name, label in labels.items()])
        count += 1
    label_index.refresh(touched)
    mark_reviewed(images.filter(prediction__isnull=False), user)
    encode_on_commit(images.values_list("pk", flat=True), text_only=True)
    return count


@transaction.atomic
def add_label(images: QuerySet[Image], label: Label, user) -> int:
    ids = set(images.values_list("pk", flat=True))
    have = set(ImageLabel.objects.filter(image_id__in=ids, label=label)
               .values_list("image_id", flat=True))
    ImageLabel.objects.bulk_create([
        ImageLabel(image_id=i, label=label, source=ImageLabel.Source.PERSON, added_by=user,
                   reviewed=True) for i in sorted(ids - have)])
    label_index.refresh(ids - have)
    encode_on_commit(ids - have, text_only=True)
    return len(ids - have)


@transaction.atomic
def remove_label(images: QuerySet[Image], label: Label) -> int:
    entries = ImageLabel.objects.filter(image__in=images, label=label)
    touched = list(entries.values_list("image_id", flat=True))
    encode_on_commit(touched, text_only=True)
    deleted, _ = entries.delete()
    label_index.refresh(touched)
    return deleted


def clear_broken(images: QuerySet[Image]) -> int:
    """Forget that these images were found broken (a fault that was not theirs, such as
    a worker lost twice to something else): the next batch holding one predicts it."""
    return images.filter(status=Image.Status.BROKEN).update(status=Image.Status.PENDING,
                                                            error="")
