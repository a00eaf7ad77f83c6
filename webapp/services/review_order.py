"""What to review next: the review queue's orders.

- ``uncertain``: the model's least certain decisions first (lowest ``confidence``: some
  label sits near its threshold).
- ``informative``: uncertainty mixed with diversity, so that 50 reviews cover different
  kinds of images instead of 50 near-copies of one hard case. From the POOL most
  uncertain candidates, a greedy k-center walk over the images' search codes (Hamming
  distance): the first pick is the most uncertain image; each next pick maximises
  ``uncertainty x distance to the nearest image already picked``. (Sener & Savarese's
  core-set selection, weighted by uncertainty as in BADGE-style hybrids.) Images without
  a search code count as far from every pick.

Either order can be restricted to one label: candidates are the images the active model
gives that label a probability of at least LIKELY ("images likely to be water"; among
the SCAN least certain, so that the scan is bounded at a million images), or, for
a label the model does not know yet, the POOL nearest images to the label's words by
text search (the search model's own vocabulary), so curators find its first examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import FloatField, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from webapp.conf import app_settings
from webapp.models import Image, ImageCode, Label, Prediction
from webapp.services import access, search
from webapp.services.model_registry import active_model

__all__ = ["ORDERS", "ReviewOrderRefused", "review_queue"]

ORDERS = ("informative", "uncertain")
POOL = 2000
SCAN = 5_000  # a label narrows the queue among this many least certain images (water
# is likely on ~950 of them at a million images; 50,000 took 0.5-1.3 s, 10,000 ~120 ms)
LIKELY = 0.2  # a label's probability from which an image is a candidate for it (the
# shipped model's F2-optimal thresholds lie between 0.14 and 0.44: recall comes first)


class ReviewOrderRefused(Exception):
    """A label that cannot rank images (unknown to the model and to search)."""


@dataclass(frozen=True)
class Candidate:
    image_id: int
    uncertainty: float


def _unreviewed(user) -> QuerySet[Image]:
    images = Image.objects.filter(reviewed=False, status=Image.Status.READY,
                                  coverage__gte=app_settings.MIN_TILE_COVERAGE)
    return access.visible_images(user, images)


def _candidates(user, label: str | None) -> list[Candidate]:
    """Up to POOL unreviewed images with their uncertainty, in the order they are
    offered when diversity is not asked for."""
    images = _unreviewed(user)
    if not label:
        rows = images.order_by("confidence", "id").values_list("pk", "confidence")[:POOL]
        return [Candidate(pk, 1.0 - (c or 0.0)) for pk, c in rows]
    if not Label.objects.filter(name=label).exists():
        raise ReviewOrderRefused(f"no label {label!r}")
    if label in active_model().labels:
        return _likely(images, label)
    words = Label.objects.get(name=label).shown
    if not search.available():
        raise ReviewOrderRefused(f"the active model does not know {label!r} and search is "
                                 "off: no way to rank images for it")
    try:
        matches, _unknown = search.search_text(words, k=POOL)
    except search.UnknownQuery:
        raise ReviewOrderRefused(f"neither the active model nor the search model knows "
                                 f"{words!r}: review by uncertainty, or give the label a "
                                 "display name in words the search knows") from None
    allowed = dict(images.filter(pk__in=[m.image_id for m in matches])
                   .values_list("pk", "confidence"))
    return [Candidate(m.image_id, 1.0 - (allowed[m.image_id] or 0.0))
            for m in matches if m.image_id in allowed]


def _likely(images: QuerySet[Image], label: str) -> list[Candidate]:
    """Up to POOL images the model gives ``label`` a probability of at least LIKELY,
    most probable first, among the SCAN least certain unreviewed images: one walk of the
    confidence order picks those (a subquery), and the database compares the stored
    probability of them alone, so the work is bounded at any collection size (a label
    rarer than POOL in SCAN images gives fewer candidates)."""
    least_certain = (images.filter(prediction__isnull=False).order_by("confidence", "id")
                     .values("prediction_id")[:SCAN])
    # their current predictions, read by primary key; the key as a literal (a label
    # name may hold "__"), compared as a number
    probability = Cast(KeyTextTransform(label, "probabilities"), FloatField())
    rows = (Prediction.objects.filter(pk__in=least_certain).order_by()
            .annotate(p=probability).filter(p__gte=LIKELY)
            .values_list("image_id", "confidence", "p"))
    scored = sorted(((float(p), pk, c) for pk, c, p in rows),
                    key=lambda row: (-row[0], row[1]))[:POOL]
    return [Candidate(pk, 1.0 - (c or 0.0)) for _, pk, c in scored]


def _codes(ids: list[int]) -> dict[int, int]:
    if not search.available():
        return {}
    return dict(ImageCode.objects.filter(image_id__in=ids, model=search.model_version())
                .values_list("image_id", "image_code"))


def _popcount(values: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(values.view(np.uint8).reshape(len(values), 8), axis=1)
    return bits.sum(axis=1)


def diverse_order(candidates: list[Candidate], codes: dict[int, int], k: int) -> list[int]:
    """Greedy uncertainty-weighted k-center over 64-bit codes; returns ``k`` image ids."""
    if not candidates:
        return []
    n = len(candidates)
    uncertainty = np.array([c.uncertainty for c in candidates]) + 1e-3
    has_code = np.array([c.image_id in codes for c in candidates])
    values = np.array([codes.get(c.image_id, 0) for c in candidates], dtype=np.int64)
    far = 65.0  # farther than any two codes: no code, no known neighbour
    nearest = np.full(n, far)
    picked: list[int] = []
    chosen = np.zeros(n, bool)
    for _ in range(min(k, n)):
        score = np.where(chosen, -1.0, uncertainty * nearest)
        best = int(np.argmax(score))
        picked.append(best)
        chosen[best] = True
        if has_code[best]:
            distance = _popcount(values ^ values[best]).astype(float)
            distance[~has_code] = far
            nearest = np.minimum(nearest, distance)
    return [candidates[i].image_id for i in picked]


def review_queue(user, order: str = "informative", label: str | None = None,
                 limit: int = 50) -> list[Image]:
    """The next ``limit`` images to review, in the asked order."""
    if order not in ORDERS:
        raise ReviewOrderRefused(f"order must be one of {', '.join(ORDERS)}")
    candidates = _candidates(user, label)
    if order == "uncertain":
        ranked = sorted(candidates, key=lambda c: -c.uncertainty) if label else candidates
        ids = [c.image_id for c in ranked[:limit]]
    else:
        ids = diverse_order(candidates, _codes([c.image_id for c in candidates]), limit)
    found = (Image.objects.filter(pk__in=ids).select_related("prediction__model", "reviewed_by")
             .prefetch_related("labels__label", "labels__added_by"))
    by_id = {image.pk: image for image in found}
    return [by_id[i] for i in ids if i in by_id]
