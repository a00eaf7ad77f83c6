"""Cross-modal search over the collection with the retrieval model's hash codes.

Every ready image gets an ImageCode: the ImgNet code of its pixels and the TxtNet code of
the text of its current labels (re-tagging changes the latter). Each process keeps
in-memory Hamming indexes built from those rows and rebuilds them when the rows change
(checked with one cheap aggregate per search), so web processes need no shared state.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from classifier.imageio import ImageDecodeError, decode_image
from retrieval.data import tags_text
from retrieval.index import HammingIndex
from retrieval.store import Retriever, resolve_model_dir
from retrieval.text import UnknownQuery
from webapp.models import Image, ImageCode

log = logging.getLogger(__name__)
_lock = threading.Lock()
_retrievers: dict[str, Retriever] = {}
_indexes: dict[tuple, tuple[HammingIndex, HammingIndex]] = {}

__all__ = ["UnknownQuery", "available", "Match", "search_text", "similar_images", "search_upload",
           "describe", "encode_images", "retriever", "model_version"]


def available() -> bool:
    """Whether a retrieval model is installed (search features switch off without one)."""
    try:
        resolve_model_dir(settings.RETRIEVAL_MODEL)
    except FileNotFoundError:
        return False
    return True


def model_version() -> str:
    """The loaded retrieval model's version (codes of other versions are ignored)."""
    return retriever().version


def retriever() -> Retriever:
    """Loaded once per process."""
    with _lock:
        key = str(settings.RETRIEVAL_MODEL)
        if key not in _retrievers:
            _retrievers[key] = Retriever(settings.RETRIEVAL_MODEL)
        return _retrievers[key]


def code_bits() -> int:
    model = retriever()
    bits = settings.RETRIEVAL_BITS or max(model.bits)
    if bits not in model.bits:
        raise ValueError(f"RETRIEVAL_BITS={bits}, but the model has {model.bits}")
    return bits


def to_int(codes: np.ndarray) -> list[int]:
    """{-1,+1} rows (<= 64 bits) -> signed 64-bit integers (what the database stores)."""
    bits = codes.shape[1]
    weights = np.left_shift(np.uint64(1), np.arange(bits - 1, -1, -1, dtype=np.uint64))
    unsigned = ((codes > 0).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return [int(v) - (1 << 64) if int(v) >= 1 << 63 else int(v) for v in unsigned]


def from_int(values: list[int], bits: int) -> np.ndarray:
    unsigned = np.array([v & ((1 << 64) - 1) for v in values], dtype=np.uint64)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    on = (unsigned[:, None] >> shifts) & np.uint64(1)
    return np.where(on == 1, 1, -1).astype(np.int8)


def encode_images(image_ids: list[int]) -> int:
    """(Re)compute the codes of these images; returns how many were stored."""
    model, bits, version = retriever(), code_bits(), model_version()
    images = list(Image.objects.filter(pk__in=image_ids, status=Image.Status.READY)
                  .prefetch_related("labels__label"))
    pixels, texts, kept = [], [], []
    for image in images:
        try:
            with image.file.open("rb") as handle:
                pixels.append(decode_image(handle.read(), settings.MAX_IMAGE_PIXELS))
        except (ImageDecodeError, OSError) as exc:
            log.warning("image %s not encoded: %s", image.pk, exc)
            continue
        texts.append(tags_text(sorted(il.label.name for il in image.labels.all())))
        kept.append(image)
    if not kept:
        return 0
    image_codes = to_int(model.image_codes(pixels, bits))
    text_codes = to_int(model.text_codes(texts, bits, check=False))
    for image, image_code, text_code in zip(kept, image_codes, text_codes):
        ImageCode.objects.update_or_create(image=image, defaults={
            "model": version, "bits": bits, "image_code": image_code, "text_code": text_code})
    return len(kept)


def _collection_indexes() -> tuple[HammingIndex, HammingIndex]:
    """(image-code index, text-code index) over the stored codes, rebuilt on change."""
    version, bits = model_version(), code_bits()
    rows = ImageCode.objects.filter(model=version, bits=bits,
                                    image__status=Image.Status.READY)
    state = rows.aggregate(n=Count("id"), last=Max("updated_at"))
    key = (version, bits, state["n"], state["last"])
    with _lock:
        if key not in _indexes:
            _indexes.clear()
            ids, image_codes, text_codes = [], [], []
            for image_id, image_code, text_code in rows.values_list(
                    "image_id", "image_code", "text_code").iterator(chunk_size=10_000):
                ids.append(image_id)
                image_codes.append(image_code)
                text_codes.append(text_code)
            by_image, by_text = HammingIndex(bits), HammingIndex(bits)
            if ids:
                by_image.add(np.array(ids), from_int(image_codes, bits))
                by_text.add(np.array(ids), from_int(text_codes, bits))
            _indexes[key] = (by_image, by_text)
        return _indexes[key]


@dataclass
class Match:
    image_id: int
    distance: int


def _matches(distances: np.ndarray, ids: np.ndarray, exclude: int | None = None) -> list[Match]:
    return [Match(int(i), int(d)) for d, i in zip(distances, ids) if i >= 0 and i != exclude]


def search_text(query: str, k: int = 50) -> tuple[list[Match], list[str]]:
    """Text -> images, nearest first, and the query words the model does not know.

    Raises UnknownQuery when no word of the query is known.
    """
    model, bits = retriever(), code_bits()
    unknown = model.vocabulary.check(query)
    codes = model.text_codes([query], bits)
    distances, ids = _collection_indexes()[0].search(codes, k)
    return _matches(distances[0], ids[0]), unknown


def similar_images(image: Image, k: int = 50) -> list[Match]:
    """Image -> images by the stored code of an image of the collection."""
    code = ImageCode.objects.filter(image=image, model=model_version()).first()
    if code is None:
        encode_images([image.pk])
        code = ImageCode.objects.filter(image=image).first()
        if code is None:
            return []
    distances, ids = _collection_indexes()[0].search(from_int([code.image_code], code.bits),
                                                      k + 1)
    return _matches(distances[0], ids[0], exclude=image.pk)[:k]


def search_upload(data: bytes, k: int = 50) -> list[Match]:
    """Image file -> images (raises ImageDecodeError for a bad file)."""
    pixels = decode_image(data, settings.MAX_IMAGE_PIXELS)
    codes = retriever().image_codes([pixels], code_bits())
    distances, ids = _collection_indexes()[0].search(codes, k)
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
