"""Whole scenes: read a large or georeferenced raster in windows and cut it into chips.

A *scene* is any georeferenced GeoTIFF, or any image whose longer side exceeds a
threshold (twice the chip footprint by default). It is never held whole in memory:
rasterio (GDAL) reads one strip of tile rows at a time, and the preview and the
display stretch come from a downsampled read.

- **Bands.** ``rgb_bands`` (1-based) picks the bands shown as red, green, blue. Without
  it, the file's colour interpretation or band descriptions decide when they name red,
  green and blue; else 4+ bands are taken in Planet's analytic order (B, G, R, NIR ->
  bands 3, 2, 1), 3 bands as R, G, B, and 1-2 bands as grey.
- **Stretch.** 8-bit bands are used as they are (the model was trained on 8-bit
  chips). Deeper bands (16-bit, float) get a 2nd-98th percentile stretch per band,
  computed once on the downsampled overview over valid pixels only.
- **Tiling.** Chips of ``tile_size`` px, ``overlap`` px shared between neighbours.
  Partial tiles at the right and bottom edges are padded with black (``edge="pad"``,
  the default, so every scene pixel is in a tile) or dropped (``edge="drop"``). Tiles
  whose pixels are all nodata are skipped and counted. Row and column count from the
  top-left tile (0, 0).
- **Geometry.** A tile's bounds are those of its pixels inside the scene, in the
  scene's CRS and, as a polygon, in WGS84 (lon, lat). The probability raster has one
  cell per tile, of one stride (``tile_size - overlap``) scene pixels a side, starting
  at the scene's origin.

Shared by the web app (webapp.services.scenes, tiling) and the recognition method's
``predict_scene`` (classifier.scenes); no Django, no model here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import imagery.gdal_env  # noqa: F401 - GDAL confined (no network, few drivers) before use
from imagery import formats, partial

PLANET_RGB = (3, 2, 1)  # Planet analytic band order B, G, R, NIR -> R, G, B (1-based)
STRETCH_PERCENTILES = (2.0, 98.0)
WGS84 = "EPSG:4326"
EDGES = ("pad", "drop")
SCENE_DRIVERS = ("GTiff", "JPEG", "PNG")  # the GDAL drivers that ever open a scene
READ_BLOCK_WIDTH = 4096  # px of a tile row read at once: memory follows this, not the width


class SceneError(ValueError):
    """The file cannot be read as a scene; the message says why (no paths in it)."""


@dataclass(frozen=True)
class TilingConfig:
    tile_size: int = 256
    overlap: int = 0
    edge: str = "pad"
    rgb_bands: tuple[int, int, int] | None = None  # 1-based; None: from the file
    overview_size: int = 1024  # longer side of the preview and of the stretch sample

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ValueError("tile_size must be at least 16 px")
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError("overlap must be >= 0 and smaller than tile_size")
        if self.edge not in EDGES:
            raise ValueError(f"edge must be one of {', '.join(EDGES)}")
        if self.rgb_bands is not None and (len(self.rgb_bands) != 3
                                           or min(self.rgb_bands) < 1):
            raise ValueError("rgb_bands takes three 1-based band numbers")


@dataclass(frozen=True)
class Tile:
    """One chip: grid position and its pixel window inside the scene (clipped)."""

    row: int
    col: int
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Chip:
    """A tile's pixels (None: all nodata), the share of its footprint holding data and
    the box of its pixels that do (None: all of them; see imagery.partial)."""

    tile: Tile
    pixels: np.ndarray | None
    coverage: float
    window: partial.Window | None = None


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a ``width`` x ``height`` scene lie (no pixels needed)."""

    width: int
    height: int
    tile_size: int = 256
    overlap: int = 0
    edge: str = "pad"

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    def _count(self, length: int) -> int:
        if self.edge == "drop":
            return 0 if length < self.tile_size else (length - self.tile_size) // self.stride + 1
        return max(1, math.ceil((length - self.overlap) / self.stride))

    @property
    def cols(self) -> int:
        return self._count(self.width)

    @property
    def rows(self) -> int:
        return self._count(self.height)

    def __len__(self) -> int:
        return self.rows * self.cols

    def tile(self, row: int, col: int) -> Tile:
        x, y = col * self.stride, row * self.stride
        return Tile(row, col, x, y, min(self.tile_size, self.width - x),
                    min(self.tile_size, self.height - y))

    def row_tiles(self, row: int) -> list[Tile]:
        return [self.tile(row, col) for col in range(self.cols)]

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.rows):
            yield from self.row_tiles(row)


def choose_rgb_bands(count: int, colorinterp: Sequence[str] = (),
                     descriptions: Sequence[str | None] = ()) -> tuple[int, int, int]:
    """The 1-based bands to show as R, G, B (see the module docstring for the rule)."""
    for names in (list(colorinterp), [(d or "").strip().lower() for d in descriptions]):
        found = {}
        for index, name in enumerate(names, start=1):
            for colour in ("red", "green", "blue"):
                if name == colour or name.startswith(colour + " ") or name.endswith(" " + colour):
                    found.setdefault(colour, index)
        if len(found) == 3:
            return found["red"], found["green"], found["blue"]
    if count >= 4:
        return PLANET_RGB
    if count == 3:
        return (1, 2, 3)
    return (1, 1, 1)


def stretch_limits(bands: np.ndarray, valid: np.ndarray,
                   percentiles: tuple[float, float] = STRETCH_PERCENTILES
                   ) -> list[tuple[float, float]]:
    """Per-band (low, high) percentiles over valid pixels (bands: 3 x H x W)."""
    limits = []
    for band in bands:
        values = band[valid] if valid.any() else band.ravel()
        values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if not values.size:
            limits.append((0.0, 1.0))
            continue
        low, high = np.percentile(values, percentiles)
        limits.append((float(low), float(high) if high > low else float(low) + 1.0))
    return limits


def to_rgb8(bands: np.ndarray, limits: list[tuple[float, float]] | None,
            valid: np.ndarray | None = None) -> np.ndarray:
    """3 x H x W band values -> H x W x 3 uint8: stretched with ``limits`` (None: the
    bands are 8-bit already); invalid pixels black."""
    if limits is None:
        rgb = np.moveaxis(bands.astype(np.uint8, copy=False), 0, -1)
    else:
        out = np.empty(bands.shape, np.float32)
        for k, (low, high) in enumerate(limits):
            np.subtract(bands[k], low, out=out[k], dtype=np.float32)
            out[k] *= 255.0 / (high - low)
        np.clip(out, 0, 255, out=out)
        np.nan_to_num(out, copy=False)
        rgb = np.moveaxis(out.astype(np.uint8), 0, -1)
    rgb = np.ascontiguousarray(rgb)
    if valid is not None:
        rgb[~valid] = 0
    return rgb


def _driver_for(source: str | Path | BinaryIO) -> str:
    """The one GDAL driver allowed to open ``source``, from its magic bytes."""
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as stream:
                found = formats.sniff(stream.read(formats.HEAD_BYTES))
        except OSError as exc:
            raise SceneError("the file could not be read") from exc
    else:
        found = formats.sniff_file(source)
    if found is None or found.gdal_driver not in SCENE_DRIVERS:
        raise SceneError(formats.NOT_READABLE)
    return found.gdal_driver


def _open(source: str | Path | BinaryIO, driver: str | None = None):
    """Open with exactly one driver: ``driver``, or the one the magic bytes name."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    driver = driver or _driver_for(source)
    if driver not in SCENE_DRIVERS:
        raise SceneError(formats.NOT_READABLE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return rasterio.open(source, driver=driver)
        except RasterioIOError as exc:
            raise SceneError("the file's header is broken or truncated (it could not be "
                             "read as " + driver + ")") from exc
        except Exception as exc:  # noqa: BLE001 - any parser failure is this file's alone
            raise SceneError(f"the file's header could not be read ({_plain(exc)})") from exc


def _plain(exc: BaseException) -> str:
    """An exception as one short line without paths or dumps (for a user's message)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not text or any(ch in text for ch in '{}"/\\') or len(text) > 160:
        return type(exc).__name__
    return text


def _mask_kind(dataset) -> str:
    """How a dataset marks missing pixels: "nodata" (a value in every band: a pixel is
    missing where its colour bands all hold it), "none", or "mask" (an internal mask or
    alpha band, read through GDAL's dataset mask)."""
    from rasterio.enums import MaskFlags

    flags = dataset.mask_flag_enums
    if all(f == [MaskFlags.all_valid] for f in flags):
        return "none"
    if all(f == [MaskFlags.nodata] for f in flags) and dataset.nodata is not None:
        return "nodata"
    return "mask"


def is_georeferenced(dataset) -> bool:
    return dataset.crs is not None and not dataset.transform.is_identity


@dataclass(frozen=True)
class SceneInfo:
    """What a header tells about a scene (nothing decoded)."""

    driver: str
    width: int
    height: int
    count: int
    dtype: str
    georeferenced: bool


def check_header(dataset) -> None:
    """Raise SceneError for a header the pipeline cannot use: no bands at the top level
    (containers of subdatasets), complex pixels, a georeferencing that is not finite."""
    if dataset.count < 1 or dataset.width < 1 or dataset.height < 1:
        raise SceneError("the file holds no raster band at its top level (a container of "
                         "subdatasets, such as netCDF or HDF5, is not read); export the "
                         "band you want as a GeoTIFF")
    kinds = {np.dtype(dtype).kind for dtype in dataset.dtypes}
    if "c" in kinds:
        raise SceneError(f"the pixels are complex numbers ({dataset.dtypes[0]}); only real "
                         "values can be stretched to colours - save the amplitude instead")
    if not all(math.isfinite(v) for v in tuple(dataset.transform)[:6]):
        raise SceneError("the file's georeferencing is broken (its geotransform holds NaN "
                         "or infinity)")


def inspect_scene(source: str | Path | BinaryIO, driver: str | None = None) -> SceneInfo:
    """Read a raster's header with one driver; raise SceneError when it cannot be used."""
    with _open(source, driver) as ds:
        check_header(ds)
        return SceneInfo(ds.driver, ds.width, ds.height, ds.count, ds.dtypes[0],
                         is_georeferenced(ds))


class SceneReader:
    """An open scene: its geometry, its band choice and stretch, and its tiles' pixels.

    Use as a context manager. The stretch and preview are computed on first use from
    one downsampled read (``overview_size`` px on the longer side).
    """

    def __init__(self, source: str | Path | BinaryIO, config: TilingConfig = TilingConfig(),
                 max_pixels: int | None = None, driver: str | None = None) -> None:
        self.config = config
        self.dataset = _open(source, driver)
        try:
            self._describe(max_pixels)
        except BaseException:
            self.dataset.close()
            raise

    def _describe(self, max_pixels: int | None) -> None:
        ds, config = self.dataset, self.config
        check_header(ds)
        if max_pixels and ds.width * ds.height > max_pixels:
            raise SceneError(f"scene is {ds.width}x{ds.height} = {ds.width * ds.height:,} "
                             f"pixels; the limit for scenes is {max_pixels:,}")
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.dtype = ds.dtypes[0]
        self.georeferenced = is_georeferenced(ds)
        self.crs = ds.crs if self.georeferenced else None
        self.transform = ds.transform
        bands = config.rgb_bands or choose_rgb_bands(
            ds.count, [c.name for c in ds.colorinterp], ds.descriptions)
        if max(bands) > ds.count:
            raise SceneError(f"band {max(bands)} was asked for as a colour, but the file "
                             f"has {ds.count} band(s)")
        self.rgb_bands: tuple[int, int, int] = tuple(bands)  # type: ignore[assignment]
        self.grid = TileGrid(self.width, self.height, config.tile_size, config.overlap,
                             config.edge)
        try:
            self._mask_kind = _mask_kind(ds)
        except Exception as exc:  # noqa: BLE001
            raise SceneError("the raster's mask could not be read") from exc
        self._footprint = self._wgs84_footprint()
        self._limits: list[tuple[float, float]] | None | bool = False
        self._overview: tuple[np.ndarray, np.ndarray] | None = None

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.dataset.close()

    @property
    def epsg(self) -> int | None:
        return self.crs.to_epsg() if self.crs is not None else None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene's CRS (pixel units without one)."""
        from rasterio.windows import Window, bounds

        return tuple(bounds(Window(0, 0, self.width, self.height), self.transform))

    def _read(self, window=None, out_shape: tuple[int, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """(3 x h x w band values, h x w valid mask) of a window, or of a decimated read."""
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioError

        kwargs: dict[str, Any] = {"window": window}
        if out_shape is not None:
            kwargs.update(out_shape=out_shape, resampling=Resampling.nearest)
        try:
            bands = self.dataset.read(list(self.rgb_bands), **kwargs)
        except (RasterioError, ValueError, TypeError, IndexError, OverflowError) as exc:
            raise SceneError("the scene's pixel data is broken or truncated") from exc
        try:
            if self._mask_kind == "nodata":  # no second read: nodata where the bands hold it
                mask = (bands != self.dataset.nodata).any(axis=0)
            elif self._mask_kind == "none":
                mask = np.ones(bands.shape[1:], bool)
            else:  # an internal mask or an alpha band: GDAL's dataset mask, one 2-D array
                if out_shape is not None:
                    kwargs["out_shape"] = out_shape[-2:]
                mask = self.dataset.dataset_mask(**kwargs) > 0
        except (RasterioError, ValueError, TypeError, IndexError, OverflowError) as exc:
            raise SceneError("the raster's mask could not be read") from exc
        if bands.dtype.kind == "f":
            mask &= np.isfinite(bands).all(axis=0)
        return bands, mask

    def overview(self) -> tuple[np.ndarray, np.ndarray]:
        """A downsampled read of the whole scene: (3 x h x w values, valid mask), read
        once (GDAL uses the file's own overviews when it has them)."""
        if self._overview is None:
            scale = min(1.0, self.config.overview_size / max(self.width, self.height))
            shape = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
            if self.dataset.overviews(1) or shape == (self.height, self.width):
                self._overview = self._read(out_shape=(3, *shape))
            else:
                self._overview = self._sampled_read(shape)
        return self._overview

    def _sampled_read(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The overview of a file without overviews: full-resolution strips of whole
        blocks (decompressed in parallel), thinned to ``shape`` by the pixel centres
        GDAL's nearest resampling would pick. GDAL's own decimated read of such a file
        decodes the same blocks one at a time, about 3x slower on a 10,000 px GeoTIFF."""
        from rasterio.windows import Window

        height, width = shape
        rows = np.minimum(((np.arange(height) + 0.5) * self.height / height).astype(int),
                          self.height - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * self.width / width).astype(int),
                          self.width - 1)
        block_rows = self.dataset.block_shapes[0][0]
        step = max(block_rows, -(-256 // block_rows) * block_rows)
        bands = np.empty((3, height, width), self.dtype)
        valid = np.empty((height, width), bool)
        for top in range(0, self.height, step):
            wanted = np.flatnonzero((rows >= top) & (rows < top + step))
            if not wanted.size:
                continue
            picked = rows[wanted] - top
            for left in range(0, self.width, READ_BLOCK_WIDTH):  # memory: one block
                inside = np.flatnonzero((cols >= left) & (cols < left + READ_BLOCK_WIDTH))
                if not inside.size:
                    continue
                strip, mask = self._read(Window(left, top,
                                                min(READ_BLOCK_WIDTH, self.width - left),
                                                min(step, self.height - top)))
                at = cols[inside] - left
                bands[:, wanted[:, None], inside[None, :]] = strip[:, picked][:, :, at]
                valid[wanted[:, None], inside[None, :]] = mask[picked][:, at]
        return bands, valid

    @property
    def limits(self) -> list[tuple[float, float]] | None:
        """Per-band stretch (None: 8-bit, used as is), from the overview."""
        if self._limits is False:
            if self.dtype == "uint8":
                self._limits = None
            else:
                bands, valid = self.overview()
                self._limits = stretch_limits(bands, valid)
        return self._limits  # type: ignore[return-value]

    def preview(self) -> np.ndarray:
        """The overview as stretched RGB uint8 (H x W x 3)."""
        bands, valid = self.overview()
        return to_rgb8(bands, self.limits, valid)

    def use_limits(self, limits: list[tuple[float, float]] | None) -> None:
        """Stretch with limits computed before (a resumed tiling must match its start)."""
        self._limits = [tuple(pair) for pair in limits] if limits is not None else None

    def strips(self, start_row: int = 0) -> Iterator[tuple[int, list[Chip]]]:
        """(row, chips) per tile row from ``start_row``; a chip's pixels are ``tile_size``
        square RGB uint8 padded with black, or None when the tile is all nodata."""
        from rasterio.windows import Window

        size = self.config.tile_size
        limits = self.limits
        for row in range(start_row, self.grid.rows):
            tiles = self.grid.row_tiles(row)
            if not tiles:
                continue
            out: list[Chip] = []
            for block in _column_blocks(tiles, READ_BLOCK_WIDTH):
                x0 = block[0].x
                y, height = block[0].y, block[0].height
                x_end = block[-1].x + block[-1].width
                bands, valid = self._read(Window(x0, y, x_end - x0, height))
                for tile in block:
                    left = tile.x - x0
                    tile_valid = valid[:, left:left + tile.width]
                    if not tile_valid.any():
                        out.append(Chip(tile, None, 0.0))
                        continue
                    pixels = np.zeros((size, size, 3), np.uint8)
                    pixels[:tile.height, :tile.width] = to_rgb8(
                        bands[:, :, left:left + tile.width], limits, tile_valid)
                    held = np.zeros((size, size), bool)
                    held[:tile.height, :tile.width] = tile_valid
                    out.append(Chip(tile, pixels, float(tile_valid.sum()) / (size * size),
                                    partial.data_window(held)))
                del bands, valid
            yield row, out

    def tile_bounds(self, tile: Tile) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the tile's pixels in the scene's CRS."""
        from rasterio.windows import Window, bounds

        return tuple(bounds(Window(tile.x, tile.y, tile.width, tile.height), self.transform))

    def tile_polygons_wgs84(self, tiles: Sequence[Tile]) -> list[list[list[float]]] | None:
        """Each tile's footprint as a closed lon/lat ring (counter-clockwise, RFC 7946),
        or None for a scene without a CRS (a tile GDAL cannot place gets None alone)."""
        if self.crs is None:
            return None
        boxes = [self.tile_bounds(t) for t in tiles]
        try:
            return polygons_wgs84(boxes, self.crs)
        except SceneError:
            return [_ring_or_none(box, self.crs) for box in boxes]

    def footprint_wgs84(self) -> list[list[float]] | None:
        return self._footprint

    def _wgs84_footprint(self) -> list[list[float]] | None:
        if self.crs is None:
            return None
        return polygons_wgs84([self.bounds], self.crs)[0]


def _column_blocks(tiles: list[Tile], width: int) -> Iterator[list[Tile]]:
    """Consecutive tiles of a row grouped so that each group spans at most ``width`` px
    (one tile at least)."""
    block: list[Tile] = []
    for tile in tiles:
        if block and tile.x + tile.width - block[0].x > width:
            yield block
            block = []
        block.append(tile)
    if block:
        yield block


def _ring_or_none(box, crs) -> list[list[float]] | None:
    try:
        return polygons_wgs84([box], crs)[0]
    except SceneError:
        return None


def polygons_wgs84(boxes: Sequence[tuple[float, float, float, float]],
                   crs) -> list[list[list[float]]]:
    """Boxes (left, bottom, right, top) in ``crs`` -> closed lon/lat rings, 7 decimals.
    Raise SceneError when a corner cannot be placed on the globe (outside the
    projection's valid area, or a local engineering system)."""
    from rasterio.warp import transform

    xs, ys = [], []
    for left, bottom, right, top in boxes:
        xs += [left, right, right, left]
        ys += [bottom, bottom, top, top]
    try:
        lons, lats = transform(crs, WGS84, xs, ys)
    except Exception as exc:  # noqa: BLE001 - GDAL/PROJ errors of every kind
        raise SceneError("the raster's corners cannot be placed on the map: they lie "
                         "outside the valid area of its coordinate system, or the system "
                         f"is a local one ({_plain(exc)})") from exc
    if not (np.isfinite(lons).all() and np.isfinite(lats).all()):
        raise SceneError("the raster's corners cannot be placed on the map: they lie "
                         "outside the valid area of its coordinate system")
    rings = []
    for i in range(len(boxes)):
        ring = [[round(lons[4 * i + k], 7), round(lats[4 * i + k], 7)] for k in range(4)]
        rings.append([*ring, ring[0]])
    return rings


def feature_collection(features: list[dict], **members: Any) -> dict:
    return {"type": "FeatureCollection", **members, "features": features}


def tile_feature(ring: list[list[float]] | None, properties: dict) -> dict:
    """A GeoJSON Feature: the tile's polygon (null without a CRS) and its properties."""
    geometry = {"type": "Polygon", "coordinates": [ring]} if ring is not None else None
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def probability_raster(grid: TileGrid, values: np.ndarray, scene_transform, crs,
                       band_names: Sequence[str], destination: str | Path | BinaryIO | None = None
                       ) -> bytes | None:
    """Write a float32 GeoTIFF with one cell per tile and one band per name
    (values: bands x rows x cols; NaN where a tile was skipped). Returns the bytes when
    ``destination`` is None."""
    import rasterio
    from affine import Affine
    from rasterio.io import MemoryFile

    values = np.asarray(values, np.float32)
    if values.shape != (len(band_names), grid.rows, grid.cols):
        raise ValueError(f"values have shape {values.shape}, expected "
                         f"{(len(band_names), grid.rows, grid.cols)}")
    profile = {"driver": "GTiff", "width": grid.cols, "height": grid.rows,
               "count": len(band_names), "dtype": "float32", "nodata": float("nan"),
               "transform": scene_transform @ Affine.scale(grid.stride), "crs": crs,
               "compress": "deflate"}

    def write(ds) -> None:
        ds.write(values)
        for index, name in enumerate(band_names, start=1):
            ds.set_band_description(index, name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        if destination is not None:
            with rasterio.open(destination, "w", **profile) as ds:
                write(ds)
            return None
        with MemoryFile() as memfile:
            with memfile.open(**profile) as ds:
                write(ds)
            return memfile.read()
