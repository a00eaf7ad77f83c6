"""Worker side of scenes: cut a batch's scenes into tiles that become batch items.

The worker running a batch (webapp.services.recognition) calls ``tile_some`` whenever
it has fewer queued items than one chunk, so tagging starts with the first tile rows
and the batch's progress moves while a large scene is still being cut.

- **Resumable, exactly once.** Tile rows are committed one at a time, with their chip
  Images, SceneTiles and BatchItems, under the batch lease; ``Scene.rows_tiled`` says
  where to go on. The display stretch is stored before the first row, so a resumed
  scene is cut with the same one.
- **Bounded memory.** One strip of tile rows is held (imagery.rasters).
- **Failures alone.** A scene whose pixels turn out broken fails with a message (its
  tiles cut so far are still tagged) and adds a failed item naming it; one that killed
  its worker twice without committing a row fails as a poison input would.
"""

from __future__ import annotations

import hashlib
import io
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image as PILImage

from imagery import rasters
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, ModelVersion, Scene, SceneTile
from webapp.services import threads
from webapp.services.batches import do_append_items, set_initial_state
from webapp.services.leases import Lease, LeaseLost
from webapp.services.scenes import grid_of, tiling_config
from webapp.services.splits import split_for
from webapp.services.storage import FORMATS, save_original

log = logging.getLogger(__name__)

POISONED = "the worker stopped twice while cutting this scene into tiles; it was not retried"
UNTILED = (Scene.Status.QUEUED, Scene.Status.TILING)


def tile_some(batch_id: int, model: ModelVersion, want: int, lease: Lease | None = None
              ) -> bool:
    """Cut tile rows of the batch's next unfinished scene until ``want`` tiles were added
    or the scene is finished; False when no scene was left to cut. Each call moves a
    scene on (rows committed, or the scene finished or failed), so callers may loop.

    Whatever the raster does while it is read (broken pixels, a mask GDAL cannot read,
    a bug in a driver) fails that scene at once with the reason, and the batch goes on.
    Database and lease errors are not the scene's: its attempt is taken back and the
    error goes up (the task retries). Only a worker that died while cutting it counts."""
    scene = (Scene.objects.filter(batch_id=batch_id, status__in=UNTILED)
             .select_related("batch").order_by("id").first())
    if scene is None:
        return False
    if scene.attempts >= 2:
        _fail(scene, POISONED, lease)
        return True
    if not len(grid_of(scene)):
        _fail(scene, "the scene is smaller than one tile and partial tiles are dropped: "
                     "it gives no tile", lease)
        return True
    Scene.objects.filter(pk=scene.pk).update(attempts=F("attempts") + 1,
                                             status=Scene.Status.TILING)
    added = 0
    try:
        with rasters.SceneReader(default_storage.path(scene.file.name), tiling_config_of(scene),
                             driver=scene.driver or None) as reader:
            if scene.rows_tiled == 0 and not scene.preview:
                _store_preview(scene, reader)
            reader.use_limits(scene.stretch)
            for row, chips in reader.strips(scene.rows_tiled):
                added += _commit_row(scene, reader, row, chips, model, lease)
                if added >= want:
                    break
    except (DatabaseError, LeaseLost):
        _take_back_attempt(scene)
        raise
    except rasters.SceneError as exc:
        _fail(scene, str(exc), lease)
        return True
    except FileNotFoundError:
        _fail(scene, "the stored scene file is missing; upload it again", lease)
        return True
    except OSError:
        _take_back_attempt(scene)
        raise  # the disk (full, unmounted): not the scene's fault; the task retries
    except Exception as exc:  # noqa: BLE001 - a driver's surprise fails this scene alone
        log.exception("scene %s could not be cut into tiles", scene.pk)
        _fail(scene, f"the scene could not be cut into tiles ({type(exc).__name__}); "
                     "it was not retried", lease)
        return True
    scene.refresh_from_db()
    if scene.rows_tiled >= scene.rows:
        Scene.objects.filter(pk=scene.pk).update(
            status=Scene.Status.TAGGING if scene.tiles else Scene.Status.DONE,
            tiled_at=timezone.now(), attempts=0)
    return True


def _take_back_attempt(scene: Scene) -> None:
    try:
        Scene.objects.filter(pk=scene.pk, attempts__gt=0).update(attempts=F("attempts") - 1)
    except DatabaseError:
        log.warning("could not take back the attempt on scene %s", scene.pk)


def tiling_config_of(scene: Scene) -> rasters.TilingConfig:
    """The tiling the scene was described with at upload (settings may change since)."""
    base = tiling_config()
    return rasters.TilingConfig(scene.tile_size, scene.overlap, scene.edge,
                            tuple(scene.rgb_bands) or None, base.overview_size)


def _store_preview(scene: Scene, reader: rasters.SceneReader) -> None:
    """The overview (never the full raster) as a PNG, and the stretch it gives."""
    limits = reader.limits
    buffer = io.BytesIO()
    PILImage.fromarray(reader.preview()).save(buffer, "PNG")
    path = f"previews/{scene.sha256[:2]}/{scene.sha256}_{scene.pk}.png"
    default_storage.delete(path)
    scene.preview = default_storage.save(path, ContentFile(buffer.getvalue()))
    scene.stretch = [list(pair) for pair in limits] if limits is not None else None
    Scene.objects.filter(pk=scene.pk).update(preview=scene.preview.name, stretch=scene.stretch)


CHIP_FORMATS = {  # SCENE_CHIP_FORMAT -> (PIL save options, storage format); lossless both
    "TIFF": ({"format": "TIFF"}, "TIFF"),  # uncompressed: 0.5-1 ms a chip, 192 KB
    "PNG": ({"format": "PNG", "compress_level": 1}, "PNG"),  # 4-11 ms, 20-120 KB
}


def _encode(pixels) -> bytes:
    """A chip's stored bytes (its content hash is the Image's identity)."""
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, **CHIP_FORMATS[app_settings.SCENE_CHIP_FORMAT][0])
    return buffer.getvalue()


def _encode_and_hash(chip: rasters.Chip) -> tuple[bytes, str]:
    data = _encode(chip.pixels)
    return data, hashlib.sha256(data).hexdigest()


def _chip_name(scene: Scene, tile: rasters.Tile, image_format: str) -> str:
    stem = scene.filename.rsplit(".", 1)[0][:180]
    return f"{stem}_r{tile.row}_c{tile.col}.{FORMATS[image_format][0]}"


def _chip_images(scene: Scene, chips: list[rasters.Chip]) -> list[Image]:
    """The stored Images of a row's chips, one per content hash (identical chips, here or
    in any earlier upload, share one). Encoding, hashing and writing the files run on the
    worker's threads before any transaction; one query finds the known chips and one
    insert adds the others (a chip added elsewhere meanwhile is taken as it is)."""
    image_format = CHIP_FORMATS[app_settings.SCENE_CHIP_FORMAT][1]
    encoded = list(threads.map_ordered(_encode_and_hash, chips))
    shas = [sha for _data, sha in encoded]
    known = set(Image.objects.filter(sha256__in=shas).values_list("sha256", flat=True))
    new: dict[str, tuple[rasters.Chip, bytes]] = {}
    for chip, (data, sha) in zip(chips, encoded):
        if sha not in known:
            new.setdefault(sha, (chip, data))
    paths = dict(zip(new, threads.map_ordered(
        lambda sha: save_original(sha, image_format, ContentFile(new[sha][1])), list(new))))
    size = scene.tile_size
    Image.objects.bulk_create([
        Image(sha256=sha, file=paths[sha], original_name=_chip_name(scene, chip.tile,
                                                                     image_format),
              format=image_format, size_bytes=len(data), width=size, height=size,
              uploaded_by=scene.batch.owner, scene_only=True, split=split_for(sha),
              coverage=round(chip.coverage, 4),
              data_window=list(chip.window) if chip.window is not None else None)
        for sha, (chip, data) in new.items()], ignore_conflicts=True)
    by_sha = Image.objects.select_related("prediction").in_bulk(shas, field_name="sha256")
    return [by_sha[sha] for sha in shas]


def _commit_row(scene: Scene, reader: rasters.SceneReader, row: int, chips: list[rasters.Chip],
                model: ModelVersion, lease: Lease | None) -> int:
    """Store one tile row: chips, tiles and items in one transaction; returns tiles added."""
    if lease is not None:
        lease.beat()
    kept = [chip for chip in chips if chip.pixels is not None]
    images = _chip_images(scene, kept)
    rings = reader.tile_polygons_wgs84([chip.tile for chip in kept]) or [None] * len(kept)
    with transaction.atomic():
        if lease is not None:
            lease.hold()
        locked = Scene.objects.select_for_update().get(pk=scene.pk)
        if locked.rows_tiled > row:  # committed by an earlier run: nothing to redo
            return 0
        items, tiles = [], []
        for chip, image, ring in zip(kept, images, rings):
            tile = chip.tile
            item = BatchItem(filename=f"{scene.filename} (tile r{tile.row} c{tile.col})")
            set_initial_state(item, image, model)
            items.append(item)
            tiles.append(SceneTile(
                scene=scene, row=tile.row, col=tile.col, x=tile.x, y=tile.y,
                width=tile.width, height=tile.height, coverage=chip.coverage,
                bounds=[round(v, 6) for v in reader.tile_bounds(tile)], ring=ring,
                image=item.image))
        do_append_items(scene.batch, items)
        for tile, item in zip(tiles, items):
            tile.item = item
        SceneTile.objects.bulk_create(tiles)
        Scene.objects.filter(pk=scene.pk).update(
            rows_tiled=row + 1, tiles=F("tiles") + len(kept), attempts=0,
            tiles_nodata=F("tiles_nodata") + len(chips) - len(kept))
    return len(kept)


def _fail(scene: Scene, message: str, lease: Lease | None) -> None:
    """The scene fails with ``message``; a failed item names it in the batch's counts."""
    log.warning("scene %s (%s) failed: %s", scene.pk, scene.filename, message)
    with transaction.atomic():
        if lease is not None:
            lease.hold()
        Scene.objects.filter(pk=scene.pk).update(status=Scene.Status.FAILED, error=message)
        do_append_items(Batch.objects.get(pk=scene.batch_id), [BatchItem(
            filename=scene.filename, status=BatchItem.Status.FAILED, error=message)])
