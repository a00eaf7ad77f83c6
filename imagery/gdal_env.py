"""GDAL confined to local files of the formats we read, for the whole process.

Imported (for its effect) by every module that opens rasters, before rasterio opens one.
The magic bytes (``imagery.formats``) already choose the one driver that may open a file;
this is the second wall, in case a caller forgets or a driver follows a reference:

- no remote files: ``/vsicurl/`` and friends only for an extension no file has, no
  proxy-free HTTP retries, PROJ without its network grid fetches;
- drivers that fetch URLs or follow other files (WMS, WMTS, WCS, VRT, ...) are skipped:
  ``GDAL_SKIP`` keeps them from registering at all;
- no directory listing beside a file on open (no sidecar .aux.xml / .ovr / .msk of
  someone else's upload is picked up), no .aux.xml written beside stored scenes.

The options are set through the environment, which GDAL reads when rasterio first loads
it; ``os.environ.setdefault`` lets an operator loosen one knowingly.
"""

from __future__ import annotations

import logging
import os

# Drivers that open URLs, services or other files named inside the file.
NETWORK_DRIVERS = (
    "WMS", "WMTS", "WCS", "DAAS", "EEDAI", "EEDA", "OGCAPI", "PLMOSAIC", "PLSCENES",
    "STACIT", "STACTA", "NGW", "HTTP", "VRT", "Derived", "GTI", "TileDB", "Rasterlite",
    "MBTiles", "ESRIC", "XYZ", "SENTINEL2", "SAFE", "SAR_CEOS", "NITF", "RPFTOC",
    "ECRGTOC", "CEOS", "PDS", "PDS4", "ISIS3", "ISIS2", "VICAR", "netCDF", "HDF5",
    "HDF5Image", "HDF4", "HDF4Image", "KEA", "Zarr", "PostGISRaster", "GPKG",
)

SAFE_OPTIONS = {
    "GDAL_SKIP": " ".join(NETWORK_DRIVERS),
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".no-remote-files",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_TIMEOUT": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "1",
    "PROJ_NETWORK": "OFF",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "CPL_VSIL_USE_TEMP_FILE_FOR_RANDOM_WRITE": "NO",
    # GDAL's block cache (MB): its default, 5% of the machine's memory, would let one
    # worker keep gigabytes of a scene it reads once, strip by strip.
    "GDAL_CACHEMAX": "128",
    # Deflate/LZW/ZSTD blocks of one read are decompressed in parallel.
    "GDAL_NUM_THREADS": "ALL_CPUS",
}

for _name, _value in SAFE_OPTIONS.items():
    os.environ.setdefault(_name, _value)


class _AbsentDriverNoise(logging.Filter):
    """GDAL warns once per process for each GDAL_SKIP name its build lacks ("Unable to
    find driver X to unload"): the list names drivers some builds have, so that a new
    wheel cannot bring one back; the warning says nothing an operator can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "to unload from GDAL_SKIP" not in record.getMessage()


logging.getLogger("rasterio._env").addFilter(_AbsentDriverNoise())
