"""The gallery's filters, shared by the browser pages, the API and the admin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from django.db.models import F, OrderBy, Prefetch, QuerySet, Value
from django.db.models.functions import Coalesce

from webapp.conf import app_settings
from webapp.models import BatchItem, Image, ImageLabel
from webapp.services import access, label_index

if TYPE_CHECKING:  # the search engine (faiss, the hashing networks) is not needed here
    from webapp.services.search import Match


class TooManyTags(ValueError):
    """More tag names than MAX_TAG_FILTERS: refused with a message (a filter that long
    is no search a person makes, and it would blow up the SQL expression)."""


@dataclass
class ImageFilter:
    tags: list[str] = field(default_factory=list)
    match: Literal["any", "all"] = "any"
    batch: int | None = None
    reviewed: bool | None = None
    min_confidence: float | None = None
    include_pending: bool = False
    include_partial: bool = False  # tiles under MIN_TILE_COVERAGE (padded scene edges)
    unusual: bool | None = None  # unlike the training imagery (classifier.novelty)

    @classmethod
    def from_params(cls, params) -> ImageFilter:
        """Parse query parameters leniently: a bad value is ignored, never a 500."""
        tags: list[str] = []
        for raw in params.getlist("tags") + params.getlist("tag"):
            tags += [without_nul(t.strip()) for t in raw.split(",") if t.strip()]
        tags = list(dict.fromkeys(tags))
        if len(tags) > app_settings.MAX_TAG_FILTERS:
            raise TooManyTags(f"{len(tags)} tag names given; filter by at most "
                              f"{app_settings.MAX_TAG_FILTERS}")
        match = "all" if params.get("match") == "all" else "any"
        batch = parse_id(params.get("batch"))
        reviewed = {"true": True, "1": True, "yes": True, "false": False, "0": False,
                    "no": False}.get((params.get("reviewed") or "").lower())
        min_confidence = _float(params.get("min_confidence"))
        partial = (params.get("partial") or "").lower() in ("true", "1", "yes", "on")
        unusual = {"true": True, "1": True, "yes": True, "false": False, "0": False,
                   "no": False}.get((params.get("unusual") or "").lower())
        return cls(tags, match, batch, reviewed, min_confidence, include_partial=partial,
                   unusual=unusual)

    def apply(self, images: QuerySet[Image]) -> QuerySet[Image]:
        if not self.include_pending:
            images = images.filter(status=Image.Status.READY)
        if not self.include_partial:
            images = images.filter(coverage__gte=app_settings.MIN_TILE_COVERAGE)
        if self.tags:
            images = images.filter(label_index.tag_filter(self.tags, self.match))
        if self.batch is not None:
            # the batch's image ids first (an index read of at most a batch's files):
            # as a semi-join, the planner may walk the whole newest-first order looking
            # for an old batch's images
            images = images.filter(pk__in=list(BatchItem.objects.filter(
                batch_id=self.batch, image__isnull=False).values_list("image_id", flat=True)))
        if self.reviewed is not None:
            images = images.filter(reviewed=self.reviewed)
        if self.min_confidence is not None:
            images = images.filter(confidence__gte=self.min_confidence)
        if self.unusual is not None:
            images = images.filter(unusual=self.unusual)
        return images


_MAX_ID = 2**63 - 1  # ids are 64-bit; a larger number would overflow the database driver


def parse_id(value: str | None) -> int | None:
    """A database id from a query parameter; None when absent, junk or out of range."""
    try:
        number = int(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is None or 0 < number <= _MAX_ID else None


def without_nul(value: str) -> str:
    """PostgreSQL refuses NUL in text; as U+FFFD the value still matches no label."""
    return value.replace("\x00", "\ufffd")


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is None or 0.0 <= number <= 1.0 else None


def with_labels(images: QuerySet[Image]) -> QuerySet[Image]:
    """Images with their labels, each label's vocabulary entry and who added it, in a
    fixed number of queries whatever the page size."""
    return images.select_related("prediction__model", "reviewed_by").prefetch_related(
        Prefetch("labels", queryset=ImageLabel.objects.select_related("label", "added_by")))


# Newest first, the keys written as expressions: the same order, but no index provides
# it, so for one batch's images (a few thousand ids) the planner sorts them instead of
# walking the whole collection's order index looking for an old batch (0.4 s at 1M).
_SMALL_SET_ORDER = (OrderBy(Coalesce("created_at", "created_at"), descending=True),
                    OrderBy(F("id") + Value(0), descending=True))


def gallery_queryset(image_filter: ImageFilter, user) -> QuerySet[Image]:
    """Filtered images this user may see, with what a gallery card needs, newest first."""
    images = access.collection_images(user, image_filter.apply(Image.objects.all()))
    if image_filter.batch is not None:
        return with_labels(images).order_by(*_SMALL_SET_ORDER)
    return with_labels(images).order_by("-created_at", "-id")


def visible_matches(matches: Sequence[Match], user,
                    image_filter: ImageFilter | None = None) -> list[Match]:
    """The search matches this user may see in the collection (and that pass the
    filter), in rank order: decided before paging, so no page holds a hidden image."""
    images = (image_filter or ImageFilter()).apply(
        Image.objects.filter(pk__in=[match.image_id for match in matches]))
    allowed = set(access.collection_images(user, images).values_list("pk", flat=True))
    return [match for match in matches if match.image_id in allowed]


def ranked_images(matches: Sequence[Match]) -> list[Image]:
    """A page of matches as images with their labels, in rank order, each carrying its
    Hamming ``distance`` (the browser's and the API's search results alike)."""
    images = with_labels(Image.objects.all()).in_bulk([match.image_id for match in matches])
    ranked = []
    for match in matches:
        image = images.get(match.image_id)
        if image is not None:  # removed since the search
            image.distance, image.strength = match.distance, match.strength
            ranked.append(image)
    return ranked
