"""End to end: a large JPEG (../shared/data/examples/logging.jpg, 6600 x 2136 px) and a
4-band 16-bit GeoTIFF go through the API to a real Celery worker on the real Redis and
come back as tiled, tagged scenes."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.scene_files import geotiff
from tests.webapp.conftest import ROOT, wait_for_batch
from webapp.models import Scene, SceneTile

pytestmark = pytest.mark.django_db(transaction=True)

LOGGING = ROOT.parent / "shared" / "data" / "examples" / "logging.jpg"


def test_large_jpeg_and_geotiff_are_tiled_and_tagged_by_the_worker(api, start_worker,
                                                                    tmp_path):
    if not LOGGING.exists():
        pytest.skip(f"{LOGGING} is missing (the shared data sits beside the project)")
    start_worker(PREDICT_CHUNK_SIZE="32")
    scene_tif = geotiff(tmp_path / "planet.tif", width=640, height=512).read_bytes()
    files = [SimpleUploadedFile("logging.jpg", LOGGING.read_bytes()),
             SimpleUploadedFile("planet.tif", scene_tif)]
    response = api.post("/api/batches/", {"files": files}, format="multipart")
    assert response.status_code == 202, response.content
    batch = wait_for_batch(response.json()["id"], timeout=240)

    results = api.get(f"/api/scenes/?batch={batch.pk}").json()["results"]
    by_name = {r["filename"]: r for r in results}
    jpeg, tif = by_name["logging.jpg"], by_name["planet.tif"]
    # 6600 / 256 -> 26 columns, 2136 / 256 -> 9 rows, edge tiles padded
    assert (jpeg["width"], jpeg["height"], jpeg["crs"]) == (6600, 2136, None)
    assert (jpeg["tiles"], jpeg["tiles_done"], jpeg["status"]) == (234, 234, "done")
    assert (tif["crs"], tif["tiles"], tif["tiles_done"], tif["status"]) == (32633, 5, 5, "done")
    assert batch.total == batch.done == 239 and batch.failed == 0

    # every tile has its own tags: the scene is not squashed into one set
    scene = Scene.objects.get(pk=jpeg["id"])
    tag_sets = {tuple(t.image.prediction.tags) for t in
                SceneTile.objects.filter(scene=scene).select_related("image__prediction")}
    assert len(tag_sets) > 3
    collection = json.loads(api.get(f"/api/scenes/{tif['id']}/tiles.geojson").content)
    assert len(collection["features"]) == 5
    assert all(len(f["properties"]["probabilities"]) == 17 for f in collection["features"])
