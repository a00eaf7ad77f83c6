"""Small synthetic scenes for the tests: GeoTIFFs written with rasterio with a known
transform and CRS, 4 bands (Planet's B, G, R, NIR), 16-bit, with a nodata corner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

# UTM zone 33N: its central meridian is 15 deg E, so easting 500000 is lon 15 exactly,
# and northing 0 is the equator.
UTM33 = "EPSG:32633"
ORIGIN = (500000.0, 1536.0)  # top-left corner (easting, northing), metres
PIXEL = 3.0  # metres


def geotiff(path: Path, width: int = 640, height: int = 512, bands: int = 4,
            dtype: str = "uint16", crs: str | None = UTM33, nodata_corner: int = 256,
            bright: int | None = 3, colorinterp=None, descriptions=None, seed: int = 0,
            origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL) -> Path:
    """Write a scene: noise in every band; band ``bright`` (1-based; by default the red
    band of Planet's order) bright where x >= 256, so after the per-band stretch the
    tiles there come out in that colour; the top-left ``nodata_corner`` px square set
    to nodata (0)."""
    rng = np.random.default_rng(seed)
    top = 255 if dtype == "uint8" else 4000
    data = rng.integers(top // 5, top // 3, (bands, height, width)).astype(dtype)
    if bright:
        data[bright - 1, :, 256:] = rng.integers(int(top * 0.7), top,
                                                 (height, width - 256)).astype(dtype)
    if nodata_corner:
        data[:, :nodata_corner, :nodata_corner] = 0
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands,
               "dtype": dtype, "nodata": 0, "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate"}
    if crs is not None:
        profile.update(crs=crs, transform=from_origin(*origin, pixel, pixel))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if colorinterp is not None:
            ds.colorinterp = colorinterp
        for index, text in enumerate(descriptions or [], start=1):
            ds.set_band_description(index, text)
    return path
