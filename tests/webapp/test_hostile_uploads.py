"""Hostile and unusual files in real multipart uploads (issue 20): the magic bytes pick
the one parser, no file makes GDAL reach the network, and every strange file fails alone
with its reason while the good ones in the same request are tagged."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from django.core.files.uploadedfile import SimpleUploadedFile
from rasterio.transform import from_origin

from tests.scene_files import geotiff
from tests.webapp.conftest import make_image
from webapp.models import Batch, BatchItem, Scene
from webapp.services import recognition

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quiet_queue(monkeypatch, settings):
    settings.TORCH_THREADS = 1
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: True)


@pytest.fixture
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it is offered."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.requests: list[bytes] = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                self.requests.append(conn.recv(1024))
            except OSError:
                self.requests.append(b"")
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.server.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def service_descriptions(port: int) -> dict[str, bytes]:
    url = f"http://127.0.0.1:{port}"
    return {
        "wmts.tif": (f"<GDAL_WMTS><GetCapabilitiesUrl>{url}/wmts</GetCapabilitiesUrl>"
                     "</GDAL_WMTS>").encode(),
        "tiledwms.tif": (f"<GDAL_WMS><Service name=\"TiledWMS\"><ServerUrl>{url}/twms"
                         "</ServerUrl><TiledGroupName>x</TiledGroupName></Service>"
                         "</GDAL_WMS>").encode(),
        "wcs.tif": (f"<WCS_GDAL><ServiceURL>{url}/wcs</ServiceURL><CoverageName>c"
                    "</CoverageName></WCS_GDAL>").encode(),
        "vrt.png": (f"<VRTDataset rasterXSize=\"8\" rasterYSize=\"8\"><VRTRasterBand "
                    f"dataType=\"Byte\" band=\"1\"><SimpleSource><SourceFilename>/vsicurl/"
                    f"{url}/vrt.tif</SourceFilename></SimpleSource></VRTRasterBand>"
                    "</VRTDataset>").encode(),
    }


def test_service_descriptions_named_like_images_send_no_request(api, listener, media):
    files = [SimpleUploadedFile(name, data)
             for name, data in service_descriptions(listener.port).items()]
    files.append(SimpleUploadedFile("good.jpg", make_image(seed=5)))
    response = api.post("/api/batches/", {"files": files}, format="multipart")
    assert response.status_code == 202, response.content
    images = response.json()["images"]
    assert [i["status"] for i in images] == ["failed"] * 4 + ["queued"]
    for item in images[:4]:
        assert item["error"].startswith("not an image or GeoTIFF this app reads")
    assert listener.requests == []


def _raster(path: Path, crs, transform, dtype="uint8", count=3, width=600, height=520,
            mask=False) -> bytes:
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": dtype, "crs": crs, "transform": transform}
    rng = np.random.default_rng(3)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as ds:
        ds.write(rng.integers(30, 200, (count, height, width)).astype(dtype))
        if mask:
            valid = np.full((height, width), 255, np.uint8)
            valid[:, :300] = 0
            ds.write_mask(valid)
    return path.read_bytes()


HDF5 = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4
NETCDF = b"CDF\x01" + b"\x00\x00\x00\x0a" + bytes(1024)


def test_strange_rasters_fail_alone_and_the_good_ones_are_tagged(api, media, tmp_path):
    files = {
        "container.nc": NETCDF,
        "container.h5": HDF5,
        "off_the_map.tif": _raster(tmp_path / "o.tif", "+proj=ortho +lat_0=0 +lon_0=0",
                                   from_origin(1e7, 1e7, 1000, 1000)),
        "local.tif": _raster(tmp_path / "l.tif", 'LOCAL_CS["site",UNIT["metre",1]]',
                             from_origin(0, 100, 1, 1)),
        "nan.tif": _raster(tmp_path / "n.tif", "EPSG:4326",
                           Affine(float("nan"), 0, 0, 0, -1, 0)),
        "complex.tif": _raster(tmp_path / "c.tif", None, Affine.identity(),
                               dtype="complex64", count=1, width=40, height=40),
        "masked.tif": _raster(tmp_path / "m.tif", "EPSG:32633",
                              from_origin(500000, 1536, 3, 3), mask=True),
        "scene.tif": geotiff(tmp_path / "s.tif", width=512, height=256).read_bytes(),
        "chip.jpg": make_image(seed=9),
    }
    response = api.post("/api/batches/", {"files": [SimpleUploadedFile(n, d)
                                                    for n, d in files.items()]},
                        format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    errors = {i["filename"]: i["error"] for i in body["images"] if i["status"] == "failed"}
    assert errors.keys() == {"container.nc", "container.h5", "off_the_map.tif",
                             "local.tif", "nan.tif", "complex.tif"}
    assert "not an image or GeoTIFF" in errors["container.nc"]
    assert "not an image or GeoTIFF" in errors["container.h5"]
    assert "cannot be placed on the map" in errors["off_the_map.tif"]
    assert "cannot be placed on the map" in errors["local.tif"]
    assert "geotransform holds NaN" in errors["nan.tif"]
    assert "complex numbers" in errors["complex.tif"]
    assert sorted(s["filename"] for s in body["scenes"]) == ["masked.tif", "scene.tif"]
    # only what was accepted is stored: two scenes and one chip, no refused file's bytes
    originals = sorted(p.suffix for p in (media / "originals").rglob("*") if p.is_file())
    assert originals == [".jpg", ".tif", ".tif"]

    recognition.process_batch(body["id"])
    batch = Batch.objects.get(pk=body["id"])
    assert batch.status == Batch.Status.DONE
    assert set(Scene.objects.values_list("status", flat=True)) == {"done"}
    masked = Scene.objects.get(filename="masked.tif")
    # 3 x 3 tiles of 256 px; the mask covers x < 300: the first column is skipped
    assert (masked.rows, masked.cols, masked.tiles, masked.tiles_nodata) == (3, 3, 6, 3)
    scene = Scene.objects.get(filename="scene.tif")
    assert (scene.tiles, scene.tiles_nodata) == (1, 1)
    tagged = BatchItem.objects.filter(batch=batch, status="done").count()
    assert tagged == 1 + 6 + 1  # the chip and every tile with data


def test_a_scene_with_no_tile_is_refused_at_upload(api, media, settings, tmp_path):
    settings.SCENE_EDGE = "drop"
    data = geotiff(tmp_path / "narrow.tif", width=600, height=200).read_bytes()
    body = api.post("/api/batches/", {"files": [SimpleUploadedFile("narrow.tif", data)]},
                    format="multipart").json()
    (item,) = body["images"]
    assert item["status"] == "failed" and "it would give no tile" in item["error"]
    assert not (media / "originals").exists() or not any((media / "originals").rglob("*.tif"))


def test_scenes_over_the_side_limit_or_the_pixel_quota_fail_alone(api, media, settings,
                                                                    tmp_path):
    settings.MAX_SCENE_SIDE = 1000
    wide = geotiff(tmp_path / "wide.tif", width=1200, height=256).read_bytes()
    settings_pixels = 600 * 512
    settings.MAX_PIXELS_PER_BATCH = settings_pixels + 10
    first = geotiff(tmp_path / "a.tif", width=600, height=512, seed=1).read_bytes()
    second = geotiff(tmp_path / "b.tif", width=600, height=512, seed=2).read_bytes()
    body = api.post("/api/batches/", {"files": [
        SimpleUploadedFile("wide.tif", wide), SimpleUploadedFile("a.tif", first),
        SimpleUploadedFile("b.tif", second)]}, format="multipart").json()
    errors = {i["filename"]: i["error"] for i in body["images"] if i["status"] == "failed"}
    assert "MAX_SCENE_SIDE" in errors["wide.tif"]
    assert "MAX_PIXELS_PER_BATCH" in errors["b.tif"]
    assert [s["filename"] for s in body["scenes"]] == ["a.tif"]
