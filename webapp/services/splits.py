"""The frozen evaluation set: every image is ``train`` or ``evaluation``, decided once.

The split follows the image's content hash (the first 60 bits of its sha256 as a number
in [0, 1) against EVALUATION_FRACTION, 15% by default), so the same file lands in the
same set in every installation and whenever it is uploaded again, and no later upload or
model changes it. Evaluation images are never trained on; models are compared on them.
Curators holding ``webapp.move_split`` may move an image (``do_move``).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from webapp.conf import app_settings
from webapp.models import Image

__all__ = ["SplitRefused", "check_move", "do_move", "do_move_many", "split_for"]

_SCALE = float(1 << 60)


class SplitRefused(Exception):
    """A move the user may not make, or to a set that does not exist."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def split_for(sha256: str, fraction: float | None = None) -> str:
    """``evaluation`` for a stable ``fraction`` of content hashes, else ``train``."""
    fraction = app_settings.EVALUATION_FRACTION if fraction is None else fraction
    position = int(sha256[:15], 16) / _SCALE
    return Image.Split.EVALUATION if position < fraction else Image.Split.TRAIN


def check_move(user, split: str) -> None:
    if split not in Image.Split.values:
        raise SplitRefused(f"split must be one of {', '.join(Image.Split.values)}")
    if not user.has_perm("webapp.move_split"):
        raise SplitRefused("moving an image between the train and evaluation sets needs "
                           "the move_split permission", forbidden=True)


def do_move(image: Image, split: str, user) -> Image:
    """Put ``image`` in ``split`` (idempotent)."""
    do_move_many(Image.objects.filter(pk=image.pk), split, user)
    image.split = split
    return image


def do_move_many(images: QuerySet[Image], split: str, user) -> int:
    """Put every image of ``images`` in ``split``; returns how many changed sets."""
    check_move(user, split)
    with transaction.atomic():
        return images.exclude(split=split).update(split=split)
