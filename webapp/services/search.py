"""Cross-modal search over the collection with the retrieval model's hash codes.

Every ready image gets an ImageCode: the ImgNet code of its pixels and the TxtNet code of
the text of its current labels. The worker makes both in the pass that tags the image
(``store_codes``); re-tagging re-encodes the text only (``encode_images(text_only=True)``).

Each process keeps an in-memory Hamming index of the collection's image codes and brings
it up to date before a search (at most every SEARCH_SYNC_SECONDS): it reads only the code
rows changed since its last version (a short overlap window catches transactions that
committed late) and the tombstones of removed ones, so web processes need no shared state
and a search during ingestion costs little more than one on a quiet collection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from imagery.decode import ImageDecodeError, decode_image, resize_square
from retrieval import UnknownQuery, find_model, from_int, packed_from_int, read_cutoffs, to_int
from webapp.conf import app_settings
from webapp.models import Image, ImageCode, ImageLabel, RemovedImageCode
from webapp.services.dbclock import Now, database_now
from webapp.services.process_cache import ProcessCache

if TYPE_CHECKING:  # torch and faiss load with the first search, not at start-up
    from retrieval import LiveHammingIndex, Retriever

log = logging.getLogger(__name__)
_lock = threading.RLock()  # re-entered: _search_images -> _collection_index
_retrievers: ProcessCache[Retriever] = ProcessCache()
_cutoffs: ProcessCache = ProcessCache()

__all__ = ["UnknownQuery", "available", "Match", "search_text", "similar_images", "search_upload",
           "describe", "encode_images", "store_codes", "code_plan", "retriever",
           "model_version"]


def available() -> bool:
    """Whether a retrieval model is installed (search features switch off without one)."""
    try:
        find_model(app_settings.RETRIEVAL_MODEL)
    except FileNotFoundError:
        return False
    return True


def model_version() -> str:
    """The loaded retrieval model's version (codes of other versions are ignored)."""
    return retriever().version


def retriever() -> Retriever:
    """Loaded once per process."""
    model = app_settings.RETRIEVAL_MODEL
    from retrieval import Retriever  # torch loads with the first search, not at start-up

    return _retrievers.get(str(model), lambda: Retriever(model))


def code_bits() -> int:
    model = retriever()
    bits = app_settings.RETRIEVAL_BITS or max(model.bits)
    if bits not in model.bits:
        raise ValueError(f"RETRIEVAL_BITS={bits}, but the model has {model.bits}")
    return bits


# --- codes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodePlan:
    """How a worker makes image codes in its prediction pass.

    ``use_features``: the search model's backbone is the classifier's first
    original-image network (same weights file), so the descriptors of that pass are the
    ones ImgNet reads; otherwise the search backbone runs on ``image_size`` inputs made
    from the same decode.
    """

    use_features: bool
    image_size: int


def code_plan(feature_network_digest: str, model_size: int) -> CodePlan | None:
    """None when there is no search model (or it cannot be loaded: logged)."""
    if not available():
        return None
    try:
        model = retriever()
    except Exception:  # noqa: BLE001 - search is optional; tagging goes on without it
        log.exception("the retrieval model cannot be loaded; no search codes are made")
        return None
    same = model.backbone_digest == feature_network_digest and model.image_size == model_size
    return CodePlan(same, model.image_size)


def tags_text(labels: Sequence[str]) -> str:
    """The text of an image known by its labels, in the loaded model's words."""
    return retriever().tags_text(labels)


def _label_texts(image_ids: Sequence[int]) -> dict[int, str]:
    names: dict[int, list[str]] = {i: [] for i in image_ids}
    for image_id, name in (ImageLabel.objects.filter(image_id__in=list(image_ids))
                           .values_list("image_id", "label__name")):
        names[image_id].append(name)
    return {i: tags_text(sorted(n)) for i, n in names.items()}


def _save_codes(image_ids: Sequence[int], image_codes: Sequence[int] | None,
                text_codes: Sequence[int]) -> None:
    """Upsert ImageCode rows (``image_codes`` None: keep each row's image code)."""
    version, bits, now = model_version(), code_bits(), timezone.now()
    existing = {c.image_id: c for c in ImageCode.objects.filter(image_id__in=list(image_ids))}
    new, changed = [], []
    for n, image_id in enumerate(image_ids):
        row = existing.get(image_id) or ImageCode(image_id=image_id)
        row.model, row.bits, row.text_code, row.updated_at = version, bits, text_codes[n], now
        if image_codes is not None:
            row.image_code = image_codes[n]
        (changed if row.pk else new).append(row)
    ImageCode.objects.bulk_create(new)
    ImageCode.objects.bulk_update(changed, ["model", "bits", "image_code", "text_code",
                                            "updated_at"])
    # the change time by the database's clock, which every index's sync reads by too
    ImageCode.objects.filter(image_id__in=list(image_ids)).update(updated_at=Now())


def store_codes(image_ids: Sequence[int], descriptors: np.ndarray | None = None,
                pixels: np.ndarray | None = None) -> int:
    """Codes of freshly tagged images, from their prediction pass: image codes from the
    backbone ``descriptors`` (or the search backbone on model-size ``pixels``), text
    codes from the labels they have now."""
    model, bits = retriever(), code_bits()
    if descriptors is not None:
        image_codes = model.codes_from_descriptors(descriptors, bits)
    else:
        image_codes = model.image_codes(list(pixels), bits)
    texts = _label_texts(image_ids)
    text_codes = model.text_codes([texts[i] for i in image_ids], bits, check=False)
    _save_codes(list(image_ids), to_int(image_codes), to_int(text_codes))
    return len(image_ids)


def encode_images(image_ids: Sequence[int], text_only: bool = False) -> int:
    """(Re)compute the codes of these ready images; returns how many were stored.

    ``text_only`` (after a label edit): images whose image code is current get a new
    text code only; the others are decoded (shrunk while decoding, one at a time).
    """
    model, bits, version = retriever(), code_bits(), model_version()
    ids = list(Image.objects.filter(pk__in=list(image_ids), status=Image.Status.READY)
               .order_by("pk").values_list("pk", flat=True))
    current = set()
    if text_only:
        current = set(ImageCode.objects.filter(image_id__in=ids, model=version, bits=bits)
                      .values_list("image_id", flat=True))
    stored = 0
    if current:
        keep = [i for i in ids if i in current]
        texts = _label_texts(keep)
        with transaction.atomic():
            _save_codes(keep, None, to_int(model.text_codes([texts[i] for i in keep], bits,
                                                            check=False)))
        stored += len(keep)
    pixels, kept = [], []
    for image in Image.objects.filter(pk__in=[i for i in ids if i not in current]):
        try:
            with image.file.open("rb") as handle:
                rgb = decode_image(handle, app_settings.MAX_IMAGE_PIXELS,
                                   keep_shortest=2 * model.image_size)
        except (ImageDecodeError, OSError) as exc:
            log.warning("image %s not encoded: %s", image.pk, exc)
            continue
        pixels.append(resize_square(rgb, model.image_size))
        kept.append(image.pk)
    if kept:
        with transaction.atomic():
            stored += store_codes(kept, pixels=np.stack(pixels))
    return stored


# --- indexes ----------------------------------------------------------------------------

_ROW = np.dtype([("id", np.int64), ("image", np.int64)])


class _Collection:
    """One process's index of the collection's image codes (what text, image and
    "similar" queries are matched against) for one retrieval model version and code
    length, kept up to date incrementally."""

    def __init__(self, version: str, bits: int) -> None:
        self.version, self.bits = version, bits
        from retrieval import LiveHammingIndex  # faiss: loaded by the first search

        self.by_image = LiveHammingIndex(bits)
        self.synced_to: datetime | None = None  # changes from here (minus overlap) on
        self.checked = 0.0

    def _rows(self):
        return ImageCode.objects.filter(model=self.version, bits=self.bits)

    def sync(self) -> None:
        overlap = timedelta(seconds=app_settings.SEARCH_SYNC_OVERLAP)
        started = database_now()  # not this machine's clock: the writers' is the same
        rows = self._rows()
        removed: list[int] = []
        if self.synced_to is not None:
            since = self.synced_to - overlap
            rows = rows.filter(updated_at__gte=since)
            removed = list(RemovedImageCode.objects.filter(removed_at__gte=since)
                           .values_list("image_id", flat=True))
        table = np.fromiter(  # streamed: a million rows never sit in Python objects
            rows.filter(image__status=Image.Status.READY).values_list(
                "image_id", "image_code").iterator(chunk_size=10_000),
            dtype=_ROW)
        if removed:
            drop = np.array(removed, dtype=np.int64)
            self.by_image.remove(drop)
        if len(table):
            self.by_image.upsert_packed(table["id"], packed_from_int(table["image"], self.bits))
        self.synced_to, self.checked = started, time.monotonic()


_indexes: dict[tuple[str, int], _Collection] = {}


def _collection_index() -> LiveHammingIndex:
    """The index of the collection's image codes, brought up to date.

    Call it with ``_lock`` held, and search under the same hold (``_search_images``):
    an index must not change while it is searched (threaded servers).
    """
    key = (model_version(), code_bits())
    with _lock:
        collection = _indexes.get(key)
        if collection is None:
            from retrieval import set_search_threads

            set_search_threads(app_settings.SEARCH_THREADS)  # bench/bench_search.py
            _indexes.clear()
            collection = _indexes[key] = _Collection(*key)
            collection.sync()
        elif time.monotonic() - collection.checked >= app_settings.SEARCH_SYNC_SECONDS:
            collection.sync()
        return collection.by_image


def preload() -> bool:
    """Load the search model and the collection's index now, before any request; True
    when they were loaded.

    The WSGI entry point calls it (SEARCH_PRELOAD). Under gunicorn's ``preload_app``
    (gunicorn.conf.py) that is the master, before it forks: every worker starts with
    both in pages it shares with the others (torch and the model were ~450 MB of each
    process's own memory), and a worker's first search only reads the codes changed since
    (bench/bench_scale.py measures both). Made fork-safe here: torch runs single-threaded
    while loading (an OpenMP thread pool made before a fork hangs the child's first
    parallel loop), and the database connection it used is closed (a child must open
    its own). A database not migrated yet or unreachable, or a model that fails to
    load, leaves the loading to the first search, as without preloading: the web
    server starts either way.
    """
    if not available():
        return False
    from django.db import DatabaseError, connections

    from retrieval import loading_before_fork

    try:
        with loading_before_fork():
            _collection_index()
    except DatabaseError as exc:
        log.warning("search index not preloaded (the first search loads it): %s", exc)
        return False
    except Exception:  # noqa: BLE001 - search is optional; the site starts without it
        log.exception("search model not preloaded (the first search tries again)")
        return False
    finally:
        connections.close_all()
    return True


def _search_images(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes -> the nearest images of the collection by their image codes."""
    with _lock:
        return _collection_index().search(codes, k)


@dataclass
class Match:
    image_id: int
    distance: int
    strength: str = "strong"  # text search: "strong" or "weaker" (retrieval.cutoffs)


def _matches(distances: np.ndarray, ids: np.ndarray, exclude: int | None = None) -> list[Match]:
    return [Match(int(i), int(d)) for d, i in zip(distances, ids) if i >= 0 and i != exclude]


def search_text(query: str, k: int = 50) -> tuple[list[Match], list[str]]:
    """Text -> images, nearest first, and the query words the model does not know.

    Raises UnknownQuery when no word of the query is known.
    """
    model, bits = retriever(), code_bits()
    unknown = model.vocabulary.check(query)
    codes = model.text_codes([query], bits)
    distances, ids = _search_images(codes, k)
    return _within_cutoffs(_matches(distances[0], ids[0]), bits), unknown


def _within_cutoffs(matches: list[Match], bits: int) -> list[Match]:
    """Text search results within the model's relevance cut-off (chosen on validation:
    ``retrieval.cutoffs``), each named strong or weaker; strong ones first, and within
    each, images unlike the training imagery or mostly padding after the others."""
    cutoffs = _cutoffs.get(model_version(), lambda: read_cutoffs(retriever().model_dir))
    kept = []
    for match in matches:
        match.strength = cutoffs.strength(bits, match.distance)
        if match.strength is not None:
            kept.append(match)
    doubtful = set(Image.objects.filter(pk__in=[m.image_id for m in kept]).filter(
        Q(unusual=True) | Q(coverage__lt=app_settings.MIN_TILE_COVERAGE))
        .values_list("pk", flat=True))
    order = {"strong": 0, "weaker": 1}
    return sorted(kept, key=lambda m: (order[m.strength], m.image_id in doubtful))


def similar_images(image: Image, k: int = 50) -> list[Match]:
    """Image -> images by the stored code of an image of the collection."""
    code = ImageCode.objects.filter(image=image, model=model_version()).first()
    if code is None:
        encode_images([image.pk])
        code = ImageCode.objects.filter(image=image, model=model_version()).first()
        if code is None:
            return []
    distances, ids = _search_images(from_int([code.image_code], code.bits),
                                                      k + 1)
    return _matches(distances[0], ids[0], exclude=image.pk)[:k]


def search_upload(data: bytes, k: int = 50) -> list[Match]:
    """Image file -> images (raises ImageDecodeError for a bad file)."""
    size = retriever().image_size
    pixels = decode_image(data, app_settings.MAX_IMAGE_PIXELS, keep_shortest=2 * size)
    codes = retriever().image_codes([pixels], code_bits())
    distances, ids = _search_images(codes, k)
    return _matches(distances[0], ids[0])


@dataclass
class Description:
    text: str
    distance: int


def describe(image: Image, k: int = 5) -> list[Description]:
    """Image -> texts: the nearest distinct texts of the retrieval model's database."""
    code = ImageCode.objects.filter(image=image, model=model_version()).first()
    if code is None:
        return []
    model = retriever()
    hits = model.index("text", code.bits).search(from_int([code.image_code], code.bits),
                                                 min(20 * k, len(model.database.names)))
    seen: dict[str, int] = {}
    for distance, idx in zip(hits[0][0], hits[1][0]):
        text = model.database.texts[idx]
        if text not in seen:
            seen[text] = int(distance)
        if len(seen) == k:
            break
    return [Description(text, distance) for text, distance in seen.items()]
