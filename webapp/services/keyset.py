"""Pages of the newest-first image lists that cost the same on page 1 and page 20,000.

An OFFSET page reads and throws away every row before it, and a page count runs
``COUNT(*)`` over every match: both grow with the collection. Here a page starts *after*
the last image of the page before (keyset, or cursor, pagination): the cursor holds that
image's ``(created_at, id)`` and the next page is ``WHERE (created_at, id) < cursor ORDER
BY created_at DESC, id DESC LIMIT n``, one range read of the gallery's order index
(``gallery_order``). Rows inserted meanwhile never shift a page, so following the links
never skips or repeats an image. The count is exact up to COUNT_CAP and otherwise says
"more than COUNT_CAP" (a count that stops reading there).

The gallery page and the image API share this; cursors are opaque URL-safe strings.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

COUNT_CAP = 10_000
#: pages a link may name by number (an OFFSET reads every row before it: bounded here);
#: deeper pages are reached by following the cursors, which cost the same at any depth
MAX_PAGE_NUMBER = 100


class BadCursor(ValueError):
    """A cursor this app did not write (or a damaged one)."""


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    pk: int
    backwards: bool = False  # True: the page before (newer images)

    def encode(self) -> str:
        raw = f"{'b' if self.backwards else 'a'}|{self.created_at.isoformat()}|{self.pk}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            direction, when, pk = raw.split("|")
            cursor = cls(datetime.fromisoformat(when), int(pk), direction == "b")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise BadCursor("not a cursor of this list; follow the next/previous links") \
                from exc
        if direction not in ("a", "b") or not 0 < cursor.pk < 2**63:
            raise BadCursor("not a cursor of this list; follow the next/previous links")
        return cursor


@dataclass
class KeysetPage:
    """One page: its images, the cursors of the pages around it, and the count."""

    object_list: list[Any]
    next_cursor: str | None
    previous_cursor: str | None
    count: int | None  # exact, or None when more than COUNT_CAP match
    count_cap: int = COUNT_CAP

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None

    @property
    def count_text(self) -> str:
        """"1 image", "235 images", "more than 10,000 images"."""
        if self.count is None:
            return f"more than {self.count_cap:,} images"
        return f"{self.count:,} image{'' if self.count == 1 else 's'}"


def capped_count(images: QuerySet, cap: int | None = None) -> int | None:
    """How many images match, reading at most ``cap + 1`` of them (default COUNT_CAP);
    None: more than that."""
    cap = COUNT_CAP if cap is None else cap
    found = images.order_by().values("pk")[:cap + 1].count()
    return found if found <= cap else None


def _before(cursor: Cursor) -> Q:
    """Older than the cursor's image. ``created_at <= t`` is the index range; the OR
    breaks ties between images of the same instant by id."""
    return Q(created_at__lte=cursor.created_at) & (
        Q(created_at__lt=cursor.created_at) | Q(pk__lt=cursor.pk))


def _after(cursor: Cursor) -> Q:
    return Q(created_at__gte=cursor.created_at) & (
        Q(created_at__gt=cursor.created_at) | Q(pk__gt=cursor.pk))


def newest_first(images: QuerySet) -> QuerySet:
    """``images`` in the pages' order: their own explicit ordering when they have one (a
    caller may order by the same keys written as expressions, to keep the planner off
    the order index for a small set such as one batch), else created_at, id descending."""
    return images if images.query.order_by else images.order_by("-created_at", "-id")


def page(images: QuerySet, size: int, cursor: str | None = None,
         count: bool = True) -> KeysetPage:
    """The page of ``images`` (any filter; newest first) that ``cursor`` points at (None:
    the first page). Raises BadCursor for a cursor this app did not write."""
    at = Cursor.decode(cursor) if cursor else None
    if at is not None and at.backwards:  # the page before: the next newer images
        rows = list(newest_first(images).filter(_after(at)).reverse()[:size + 1])
        newer, older = len(rows) > size, bool(rows)  # older: the page we came from
        rows = rows[:size][::-1]
    else:
        ordered = newest_first(images)
        rows = list((ordered.filter(_before(at)) if at else ordered)[:size + 1])
        newer, older = at is not None and bool(rows), len(rows) > size
        rows = rows[:size]
    next_cursor = Cursor(rows[-1].created_at, rows[-1].pk).encode() if older else None
    previous_cursor = (Cursor(rows[0].created_at, rows[0].pk, backwards=True).encode()
                       if newer else None)
    return KeysetPage(rows, next_cursor, previous_cursor,
                      capped_count(images) if count else None, COUNT_CAP)


def offset_page(images: QuerySet, size: int, number: int, count: bool = True) -> KeysetPage:
    """Page ``number`` (1-based) by offset, for links that name a page number; its
    next/previous cursors continue by keyset. Empty beyond the last image."""
    start = (number - 1) * size
    rows = list(newest_first(images)[start:start + size + 1])
    older, rows = len(rows) > size, rows[:size]
    return KeysetPage(
        rows, Cursor(rows[-1].created_at, rows[-1].pk).encode() if older else None,
        Cursor(rows[0].created_at, rows[0].pk, backwards=True).encode()
        if rows and number > 1 else None, capped_count(images) if count else None, COUNT_CAP)



def estimated_count(images: QuerySet, planner: bool = True) -> int:
    """Exact up to COUNT_CAP; beyond it PostgreSQL's planner estimate of the rows (EXPLAIN,
    no rows read), and COUNT_CAP + 1 where there is no planner to ask (SQLite) or where
    ``planner`` is False."""
    exact = capped_count(images)
    if exact is not None:
        return exact
    from django.db import connections

    connection = connections[images.db]
    if not planner or connection.vendor != "postgresql":
        return COUNT_CAP + 1
    sql, params = images.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return max(COUNT_CAP + 1, int(plan[0]["Plan"]["Plan Rows"]))
