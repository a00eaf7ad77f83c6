"""Scenes in the web app: which uploads are scenes, storing them, and reading them out.

An upload is a scene when it is a georeferenced GeoTIFF, when its longer side exceeds
SCENE_MIN_SIDE, or when only GDAL (not PIL) can read it (4-band 16-bit TIFFs); the rest
are chips, as before. A scene is stored whole (once per content) and described from its
header at upload; the worker cuts it into tiles (webapp.services.tiling). Reads: the
tiles as GeoJSON and a label's per-tile probability raster (imagery.rasters).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
from affine import Affine
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast
from PIL import Image as PILImage
from rasterio.crs import CRS

from imagery import formats, rasters
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, ModelVersion, Scene, SceneTile
from webapp.services import access, label_index
from webapp.services.storage import delete_original, save_original, upload_sha256
from webapp.services.upload_limits import Quota, UploadRejected, format_size

# GDAL driver -> storage format (webapp.services.storage.FORMATS): drivers taken as scenes
DRIVERS = {"GTiff": "TIFF", "JPEG": "JPEG", "PNG": "PNG"}


def tiling_config() -> rasters.TilingConfig:
    return rasters.TilingConfig(app_settings.SCENE_TILE_SIZE, app_settings.SCENE_TILE_OVERLAP,
                            app_settings.SCENE_EDGE, app_settings.SCENE_RGB_BANDS or None,
                            app_settings.SCENE_PREVIEW_SIZE)


def _gdal_source(upload: UploadedFile):
    """What rasterio opens for an upload: the temporary file's path, or the file object
    (small uploads are in memory)."""
    path = getattr(upload, "temporary_file_path", None)
    return path() if path else upload


@dataclass(frozen=True)
class Detected:
    """A scene's header, and whether GDAL must decode it whole (progressive JPEG,
    interlaced PNG: no windows), which holds it to the chip pixel limit."""

    info: rasters.SceneInfo
    decoded_whole: bool


def _pil_header(upload: UploadedFile, found: formats.Format
                ) -> tuple[str, int, int, bool] | None:
    """(format, width, height, decoded whole) as PIL reads the header with the one
    plugin the magic bytes name, or None."""
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(upload, formats=found.pil_formats) as img:
                whole = bool(img.info.get("progressive") or img.info.get("progression")
                             or img.info.get("interlace"))
                return img.format, img.size[0], img.size[1], whole
    except Exception:  # noqa: BLE001 - any failure: PIL cannot read it, GDAL may
        return None
    finally:
        upload.seek(0)


def detect(upload: UploadedFile, found: formats.Format) -> Detected | None:
    """The upload's raster header when it is to be tiled as a scene, else None (a chip).

    ``found`` is the format its magic bytes name; GDAL opens the file with that format's
    one driver, in a format GDAL never opens as a scene (GIF, BMP, WebP) not at all.
    Raise UploadRejected when neither PIL nor GDAL can use the file, with GDAL's reason.
    """
    if found.gdal_driver is None:
        return None
    pil = _pil_header(upload, found)
    if pil is not None and pil[0] != "TIFF" and max(pil[1:3]) <= app_settings.SCENE_MIN_SIDE:
        return None
    upload.seek(0)
    try:
        info = rasters.inspect_scene(_gdal_source(upload), found.gdal_driver)
    except rasters.SceneError as exc:
        if pil is None or max(pil[1:3]) > app_settings.SCENE_MIN_SIDE:
            raise UploadRejected(str(exc)) from None  # a scene GDAL cannot use
        return None  # a small image PIL reads (its georeferencing aside): a chip
    finally:
        upload.seek(0)
    if info.georeferenced or max(info.width, info.height) > app_settings.SCENE_MIN_SIDE \
            or pil is None:
        return Detected(info, bool(pil and pil[3]))
    return None


def _check_limits(upload: UploadedFile, detected: Detected) -> None:
    info = detected.info
    pixels = info.width * info.height
    if upload.size > app_settings.MAX_SCENE_BYTES:
        raise UploadRejected(f"scene file is {format_size(upload.size)}; the limit for "
                             f"scenes is {format_size(app_settings.MAX_SCENE_BYTES)}")
    if pixels > app_settings.MAX_SCENE_PIXELS:
        raise UploadRejected(f"scene has too many pixels: {info.width}x{info.height} = "
                             f"{pixels:,}; the limit for scenes is "
                             f"{app_settings.MAX_SCENE_PIXELS:,}")
    if max(info.width, info.height) > app_settings.MAX_SCENE_SIDE:
        raise UploadRejected(f"scene is {info.width}x{info.height} px; no side may be longer "
                             f"than {app_settings.MAX_SCENE_SIDE:,} px (MAX_SCENE_SIDE): cut it "
                             "into parts")
    if detected.decoded_whole and pixels > app_settings.MAX_IMAGE_PIXELS:
        raise UploadRejected(
            f"progressive JPEGs and interlaced PNGs cannot be read in windows, so they are "
            f"held to {app_settings.MAX_IMAGE_PIXELS:,} pixels; this one has {pixels:,}. Save "
            "it as a baseline JPEG, a plain PNG or a GeoTIFF")


def read_header(upload: UploadedFile, detected: Detected) -> dict:
    """The Scene fields the upload's header gives, read before anything is stored;
    raise UploadRejected with the reason when the header cannot be used."""
    upload.seek(0)
    try:
        with rasters.SceneReader(_gdal_source(upload), tiling_config(),
                             driver=detected.info.driver) as reader:
            fields = header_fields(reader)
            tiles = len(reader.grid)
    except rasters.SceneError as exc:
        raise UploadRejected(str(exc)) from None
    except ValueError as exc:  # a setting the file cannot satisfy (bands)
        raise UploadRejected(str(exc)) from None
    finally:
        upload.seek(0)
    if tiles == 0:
        raise UploadRejected(
            f"the scene ({fields['width']}x{fields['height']} px) is smaller than one "
            f"{app_settings.SCENE_TILE_SIZE} px tile, and partial tiles are dropped "
            "(SCENE_EDGE=drop): it would give no tile")
    return fields


def add_scene(batch: Batch, upload: UploadedFile, name: str, detected: Detected,
              quota: Quota) -> Scene:
    """Check a scene's header and limits, then store it once and describe it; raise
    UploadRejected (nothing is stored for a refused file)."""
    info = detected.info
    _check_limits(upload, detected)
    fields = read_header(upload, detected)
    sha = upload_sha256(upload)
    known = Scene.objects.filter(sha256=sha).exists()  # stored before: no new bytes
    with quota.reserve(0 if known else upload.size, info.width * info.height):
        path = save_original(sha, DRIVERS[info.driver], upload)
        try:
            return Scene.objects.create(batch=batch, filename=name, sha256=sha, file=path,
                                        driver=info.driver, size_bytes=upload.size, **fields)
        except BaseException:
            if not known and not Scene.objects.filter(sha256=sha).exists():
                delete_original(path)
            raise


def header_fields(reader: rasters.SceneReader) -> dict:
    """Scene model fields that the header gives (geometry, bands, grid)."""
    grid = reader.grid
    return {
        "width": reader.width, "height": reader.height, "bands": reader.count,
        "dtype": reader.dtype, "rgb_bands": list(reader.rgb_bands),
        "crs_wkt": reader.crs.to_wkt() if reader.crs is not None else "",
        "epsg": reader.epsg, "transform": list(reader.transform)[:6],
        "bounds": list(reader.bounds), "footprint": reader.footprint_wgs84(),
        "tile_size": grid.tile_size, "overlap": grid.overlap, "edge": grid.edge,
        "rows": grid.rows, "cols": grid.cols,
    }


# --- reading ---------------------------------------------------------------------------

def visible_scenes(user) -> QuerySet[Scene]:
    """Scenes of the batches this user may see (access.visible_batches)."""
    return Scene.objects.filter(batch__in=access.visible_batches(user)).select_related("batch")


def tiles_of_image(image, user) -> QuerySet[SceneTile]:
    """Where this image sits in the scenes this user may see (identical chips share one
    Image, so it may be several tiles)."""
    return (SceneTile.objects.filter(image=image, scene__in=visible_scenes(user))
            .select_related("scene").order_by("scene_id", "row", "col"))


def with_progress(scenes: QuerySet[Scene]) -> QuerySet[Scene]:
    """Annotate ``tiles_done`` (tiles whose item is done) and ``tiles_failed``."""
    return scenes.annotate(
        tiles_done=Count("tile_set", filter=Q(tile_set__item__status=BatchItem.Status.DONE)),
        tiles_failed=Count("tile_set",
                           filter=Q(tile_set__item__status=BatchItem.Status.FAILED)))


def grid_of(scene: Scene) -> rasters.TileGrid:
    return rasters.TileGrid(scene.width, scene.height, scene.tile_size, scene.overlap, scene.edge)


def _affine(scene: Scene):
    return Affine(*scene.transform)


def _crs(scene: Scene):
    return CRS.from_wkt(scene.crs_wkt) if scene.crs_wkt else None


def tiles_geojson(scene: Scene) -> str:
    """A FeatureCollection as JSON text: one Polygon per tile in WGS84 (null geometry for
    a scene without a CRS), with the tile's image, grid cell, tags, probabilities and
    labels. The stored JSON of each tile (ring, bounds) and prediction (tags,
    probabilities) is read as text and spliced in as it is: decoding and re-encoding
    them took most of the ~200 ms of a 1,600-tile scene (bench/bench_scale.py)."""
    names = label_index.label_names()
    ready = Image.Status.READY
    rows = (SceneTile.objects.filter(scene=scene).order_by("row", "col")
            .annotate(**{f"{key}_text": Cast(source, TextField())
                         for key, source in _STORED_JSON.items()})
            .values_list("image_id", "row", "col", "x", "y", "width", "height", "coverage",
                         "item__status", "image__status", "image__label_ids",
                         *(f"{key}_text" for key in _STORED_JSON)))
    features = []
    for (image_id, row, col, x, y, width, height, coverage, item_status, image_status,
         label_ids, ring, bounds, tags, probabilities) in rows:
        if image_status != ready or tags is None:
            tags, probabilities = "[]", "{}"
        geometry = "null" if ring is None or ring == "null" else \
            f'{{"type": "Polygon", "coordinates": [{ring}]}}'
        labels = json.dumps(label_index.named(label_ids, names))
        features.append(
            f'{{"type": "Feature", "geometry": {geometry}, "properties": {{'
            f'"image": {image_id}, "row": {row}, "col": {col}, "tags": {tags}, '
            f'"probabilities": {probabilities}, "labels": {labels}, '
            f'"status": {json.dumps(item_status)}, "coverage": {json.dumps(round(coverage, 4))}, '
            f'"bounds": {bounds}, "pixels": [{x}, {y}, {width}, {height}]}}}}')
    head = json.dumps(rasters.feature_collection(
        [], scene=scene.pk, epsg=scene.epsg, rows=scene.rows, cols=scene.cols,
        footprint=scene.footprint))
    return head[:-len("[]}")] + "[" + ", ".join(features) + "]}"


#: a tile's stored JSON read as text by tiles_geojson
_STORED_JSON = {"ring": "ring", "bounds": "bounds", "tags": "image__prediction__tags",
                "probabilities": "image__prediction__probabilities"}


@dataclass(frozen=True)
class Overview:
    """What the scene page shows besides the map: the labels the tiles' predictions
    score (the colouring's choices), tiles per current label, partial tiles hidden."""

    labels: list[str]
    counts: dict[str, int]
    partial_tiles: int


def overview(scene: Scene) -> Overview:
    """The scene page's figures from the tiles' image rows alone (label ids, coverage,
    the predicting model): no prediction is decoded, whatever the tile count."""
    names = label_index.label_names()
    counts: dict[str, int] = {}
    models, partial = set(), 0
    min_coverage = app_settings.MIN_TILE_COVERAGE
    for label_ids, coverage, model_id in (SceneTile.objects.filter(scene=scene).order_by()
                                          .values_list("image__label_ids", "image__coverage",
                                                       "image__prediction__model_id")):
        for label_id in label_ids:
            if label_id in names:
                counts[names[label_id]] = counts.get(names[label_id], 0) + 1
        partial += coverage < min_coverage
        if model_id is not None:
            models.add(model_id)
    labels = sorted({name for scored in ModelVersion.objects.filter(pk__in=models)
                     .values_list("labels", flat=True) for name in scored})
    return Overview(labels, dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                    partial)


def probability_tif(scene: Scene, label: str) -> bytes:
    """A single-band float32 GeoTIFF of ``label``'s probability per tile (NaN: no
    prediction or a skipped nodata tile), in the scene's CRS, origin and tile grid."""
    grid = grid_of(scene)
    values = np.full((1, grid.rows, grid.cols), np.nan, np.float32)
    for row, col, probabilities in (
            SceneTile.objects.filter(scene=scene, image__status=Image.Status.READY)
            .order_by().values_list("row", "col", "image__prediction__probabilities")):
        if probabilities and label in probabilities:
            values[0, row, col] = probabilities[label]
    return rasters.probability_raster(grid, values, _affine(scene), _crs(scene), [label])
