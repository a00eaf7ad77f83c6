"""An image's current labels in one indexed column, for the tag filters at scale.

``Image.label_ids`` holds the sorted ids of the image's current labels (its ImageLabel
rows). Filtering a million images by tag through the label rows means one EXISTS probe
per candidate image; on PostgreSQL the column is an ``integer[]`` under a GIN index, so
"has water" (``label_ids && {water}``) and "has all of water, road" (``@>``) are index
lookups, and the planner's element statistics tell a rare tag (walk the GIN matches,
sort the few) from a common one (walk the gallery's order index, filter).

The column is derived data: every write of labels goes through webapp.services.curation,
which calls ``refresh`` for the images it touched in the same transaction, so the column
never disagrees with the rows a reader sees (tests check it after every kind of write).
SQLite (the embedded default, small collections) keeps the column current too but
filters through the label rows, which needs no array support.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q

from webapp.models import Image, ImageLabel, Label

CHUNK = 5000  # images per UPDATE


def refresh(image_ids: Iterable[int]) -> None:
    """Recompute ``label_ids`` of these images from their label rows (one UPDATE per
    CHUNK images, inside the caller's transaction)."""
    ids = sorted({int(i) for i in image_ids})
    images, labels = Image._meta.db_table, ImageLabel._meta.db_table
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"UPDATE {images} AS i SET label_ids = COALESCE((SELECT array_agg("
                    f"DISTINCT l.label_id ORDER BY l.label_id) FROM {labels} l WHERE "
                    f"l.image_id = i.id), '{{}}') WHERE i.id = ANY(%s)", [chunk])
            else:
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    f"UPDATE {images} SET label_ids = COALESCE((SELECT json_group_array("
                    f"label_id) FROM (SELECT DISTINCT label_id FROM {labels} WHERE image_id "
                    f"= {images}.id ORDER BY label_id)), '[]') WHERE id IN ({marks})", chunk)


def refresh_all() -> None:
    """Recompute the column for every image (a migration, a repair)."""
    last = 0
    while True:
        ids = list(Image.objects.filter(pk__gt=last).order_by("pk")
                   .values_list("pk", flat=True)[:CHUNK])
        if not ids:
            return
        refresh(ids)
        last = ids[-1]


def label_names() -> dict[int, str]:
    """label id -> name (one query), to read ``label_ids`` back with ``named``."""
    return dict(Label.objects.values_list("pk", "name"))


def named(label_ids: Iterable[int], names: dict[int, str]) -> list[str]:
    """The names of these label ids, sorted (an id no label has any more is skipped)."""
    return sorted(names[i] for i in label_ids if i in names)


def tag_filter(names: Sequence[str], match: str = "any") -> Q:
    """Images carrying any (or all) of the labels ``names``; a name that is no label
    matches nothing."""
    ids = dict(Label.objects.filter(name__in=list(names)).values_list("name", "pk"))
    if match == "all" and len(ids) < len(set(names)):
        return Q(pk__in=[])
    if not ids:
        return Q(pk__in=[])
    if connection.vendor == "postgresql":
        wanted = sorted(ids.values())
        return Q(label_ids__has_all=wanted) if match == "all" else Q(label_ids__has_any=wanted)
    if match == "all":
        return Q(*(Exists(ImageLabel.objects.filter(image=OuterRef("pk"), label_id=pk))
                   for pk in ids.values()))
    return Q(Exists(ImageLabel.objects.filter(image=OuterRef("pk"),
                                              label_id__in=list(ids.values()))))


def image_counts(label_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
    """label id -> (images carrying it, exact?). SQLite: exact, one GROUP BY over the
    label rows. PostgreSQL: up to keyset.COUNT_CAP images in all, exact (each label
    counted up to the cap through the GIN index); beyond that the planner's statistics
    of the label-id column (ANALYZE, which autovacuum runs) estimate every label at
    once, and only labels estimated under EXACT_BELOW are counted exactly (a few rows
    each). Without statistics yet, each label is counted up to the cap."""
    from webapp.services import keyset

    wanted = [int(i) for i in label_ids]
    if connection.vendor != "postgresql":
        exact = dict(ImageLabel.objects.filter(label_id__in=wanted).values("label_id")
                     .annotate(n=Count("image_id", distinct=True)).values_list("label_id", "n"))
        return {i: (exact.get(i, 0), True) for i in wanted}
    statistics = _estimates()
    cap = keyset.COUNT_CAP
    exact_below = min(EXACT_BELOW, cap)
    out = {}
    for label_id in wanted:
        guess = None
        if statistics is not None and statistics[1] > cap:
            guess = statistics[0].get(label_id, 0)
        if guess is not None and guess >= exact_below:
            out[label_id] = (guess, False)
            continue
        exact = keyset.capped_count(Image.objects.filter(label_ids__has_any=[label_id]))
        out[label_id] = (exact, True) if exact is not None else (cap + 1, False)
    return out


#: labels the statistics put under this many images are counted exactly at any size
EXACT_BELOW = 1_000


def _estimates() -> tuple[dict[int, int], float] | None:
    """(label id -> estimated images, estimated rows of the table) from pg_stats; None:
    no statistics yet. A label missing from them is rarer than they can tell: 0."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.most_common_elems::text, s.most_common_elem_freqs, c.reltuples "
            "FROM pg_stats s JOIN pg_class c ON c.relname = s.tablename "
            "WHERE s.tablename = %s AND s.attname = 'label_ids'", [Image._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[2] is None or row[2] < 0:
        return None
    elems = [int(e) for e in row[0].strip("{}").split(",") if e]
    total = float(row[2])
    return {e: int(round(f * total)) for e, f in zip(elems, row[1])}, total
