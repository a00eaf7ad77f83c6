"""The label vocabulary: curators create labels the model does not know yet, and the
label list says how close each one is to being trainable.

A label is trained once it has MIN_LABEL_POSITIVES reviewed positives in the train set
(a positive is reviewed when a person added or checked it, or reviewed its image); the
evaluation set's positives are counted apart, since they are never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet

from webapp.conf import app_settings
from webapp.models import LABEL_NAME, Image, ImageLabel, Label
from webapp.services import label_index
from webapp.services.model_registry import active_model

__all__ = ["LabelRefused", "Readiness", "check_create_label", "do_create_label",
           "do_save_label", "label_table", "readiness"]


class LabelRefused(Exception):
    """A label name that is malformed or taken; ``forbidden``: the user may not create."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def check_create_label(user, name: str) -> None:
    if not user.has_perm("webapp.add_label"):
        raise LabelRefused("creating labels needs the add_label permission (curators)",
                           forbidden=True)
    try:
        LABEL_NAME(name)
    except ValidationError as exc:
        raise LabelRefused(" ".join(exc.messages)) from None
    if Label.objects.filter(name=name).exists():
        raise LabelRefused(f"the label {name!r} exists already")


def do_create_label(user, name: str, description: str = "", display_name: str = "") -> Label:
    """A new, active label; images carry it like any other (curation.set_labels)."""
    check_create_label(user, name)
    try:
        with transaction.atomic():
            return Label.objects.create(name=name, description=description,
                                        display_name=display_name)
    except IntegrityError:  # created by a parallel request
        raise LabelRefused(f"the label {name!r} exists already") from None


def do_save_label(label: Label, fields: list[str] | None = None) -> Label:
    """The admin's edits of a label (name, description, active), validated as the API's."""
    label.full_clean()
    label.save(update_fields=fields)
    return label


def label_table(labels: QuerySet[Label] | None = None) -> list[Label]:
    """Labels in name order, each with ``images`` (images carrying it: exact up to
    keyset.COUNT_CAP, else an estimate, ``images_exact`` False), ``reviewed_train`` and
    ``reviewed_evaluation`` (reviewed positives per set, exact). A few queries whatever
    the collection's size: the reviewed positives from the reviewed label rows (small,
    indexed), the counts from label_index.image_counts."""
    table = list((Label.objects.all() if labels is None else labels).order_by("name"))
    # A reviewed positive is a reviewed label row: reviewing an image marks every label
    # row of it reviewed (curation.mark_reviewed), and people's labels are born
    # reviewed. Two grouped reads, each from partial indexes alone: all reviewed rows
    # per label, and those on evaluation images (their ids: a partial index of the
    # image table); the train set's are the difference. Joining every reviewed row to
    # its image's split instead read the whole image table (250 ms at 1M images).
    reviewed = ImageLabel.objects.filter(reviewed=True).order_by()
    total = dict(reviewed.values("label_id").annotate(n=Count("*"))
                 .values_list("label_id", "n"))
    evaluation = dict(reviewed.filter(image__split=Image.Split.EVALUATION)
                      .values("label_id").annotate(n=Count("*"))
                      .values_list("label_id", "n"))
    counts = label_index.image_counts([label.pk for label in table])
    for label in table:
        label.images, label.images_exact = counts[label.pk]
        label.reviewed_evaluation = evaluation.get(label.pk, 0)
        label.reviewed_train = total.get(label.pk, 0) - label.reviewed_evaluation
    return table


@dataclass(frozen=True)
class Readiness:
    """What decides whether a label can be trained now."""

    known: frozenset[str]  # the labels the active model predicts
    minimum: int  # MIN_LABEL_POSITIVES

    def missing(self, reviewed_train: int) -> int:
        """Reviewed train positives still needed before a training takes the label."""
        return max(0, self.minimum - reviewed_train)


def readiness() -> Readiness:
    return Readiness(frozenset(active_model().labels), app_settings.MIN_LABEL_POSITIVES)
