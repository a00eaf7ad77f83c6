"""Scenes in the web app, in process with the real model: which uploads are scenes,
tiling through the batch path (resumable, nodata skipped, failures alone), the scene API
(list, detail, tiles.geojson, probabilities.tif), permissions, quotas and export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from PIL import Image as PILImage
from rest_framework.test import APIClient

from tests.scene_files import ORIGIN, PIXEL, geotiff
from tests.webapp.conftest import make_image
from tests.webapp.helpers import upload
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, ImageLabel, Scene, SceneTile
from webapp.services import curation, recognition, tiling
from webapp.services.batches import do_submit_batch
from webapp.services.model_registry import active_model

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quiet_queue(monkeypatch, settings):
    """No broker round trips (the tests run the worker's code in process)."""
    settings.TORCH_THREADS = 1
    sent = []
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: sent.append(args) or True)
    return sent


def scene_bytes(tmp_path: Path, **options) -> bytes:
    return geotiff(tmp_path / "scene.tif", **options).read_bytes()


def plain(size: tuple[int, int], image_format: str = "PNG", **save) -> bytes:
    width, height = size
    rng = np.random.default_rng(width)
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(40, 200, (height, width, 3), dtype=np.uint8)).save(
        buffer, image_format, **save)
    return buffer.getvalue()


def tagged_scene(user, tmp_path, **options) -> tuple[Batch, Scene]:
    batch, (scene,) = upload(user, [("scene.tif", scene_bytes(tmp_path, **options))])
    assert isinstance(scene, Scene), scene
    recognition.process_batch(do_submit_batch(batch).pk)
    batch.refresh_from_db()
    scene.refresh_from_db()
    return batch, scene


def test_geotiff_is_tiled_tagged_and_described(user, tmp_path):
    batch, scene = tagged_scene(user, tmp_path, width=640, height=512)
    assert scene.status == Scene.Status.DONE and scene.error == ""
    assert (scene.rows, scene.cols, scene.tiles, scene.tiles_nodata) == (2, 3, 5, 1)
    assert scene.epsg == 32633 and scene.dtype == "uint16" and scene.bands == 4
    assert scene.rgb_bands == [3, 2, 1] and len(scene.stretch) == 3
    assert scene.preview
    assert (batch.status, batch.total, batch.done, batch.failed) == ("done", 5, 5, 0)
    tiles = {(t.row, t.col): t for t in SceneTile.objects.filter(scene=scene)}
    assert sorted(tiles) == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    left, top = ORIGIN
    assert tiles[1, 2].bounds == pytest.approx(
        [left + 512 * PIXEL, top - 512 * PIXEL, left + 640 * PIXEL, top - 256 * PIXEL])
    assert tiles[1, 0].ring[0] == pytest.approx([15.0, 0.0], abs=1e-9)
    assert tiles[1, 2].coverage == pytest.approx(0.5)
    for tile in tiles.values():
        image = tile.image
        assert (image.status, image.width, image.height, image.format) == ("ready", 256, 256,
                                                                          "PNG")
        assert image.display and image.prediction and tile.item.status == "done"
        assert image.original_name == f"scene_r{tile.row}_c{tile.col}.png"


def test_scene_api_list_detail_geojson_and_raster(user, api, tmp_path):
    batch, scene = tagged_scene(user, tmp_path, width=640, height=512)
    listed = api.get(f"/api/scenes/?batch={batch.pk}").json()
    assert listed["count"] == 1
    row = listed["results"][0]
    assert {k: row[k] for k in ("id", "filename", "width", "height", "crs", "tiles",
                                "tiles_done", "status")} == {
        "id": scene.pk, "filename": "scene.tif", "width": 640, "height": 512, "crs": 32633,
        "tiles": 5, "tiles_done": 5, "status": "done"}
    assert api.get(f"/api/scenes/{scene.pk}/").json()["tiles_nodata"] == 1
    assert api.get("/api/scenes/?batch=999999").json()["count"] == 0
    assert api.get("/api/scenes/?batch=x").status_code == 400

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = api.get(f"/api/scenes/{scene.pk}/tiles.geojson")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/geo+json"
    # a fixed number of queries whatever the tile count (1,600-tile scenes: issue 24)
    assert len(queries) == 3, [q["sql"][:90] for q in queries]  # scene, labels, tiles
    collection = json.loads(response.content)
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 5
    by_cell = {(f["properties"]["row"], f["properties"]["col"]): f
               for f in collection["features"]}
    feature = by_cell[1, 0]
    assert feature["geometry"]["type"] == "Polygon"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == pytest.approx([15.0, 0.0], abs=1e-9) and ring[-1] == ring[0]
    tile = SceneTile.objects.get(scene=scene, row=1, col=0)
    props = feature["properties"]
    assert props["image"] == tile.image_id
    assert props["tags"] == tile.image.prediction.tags
    assert props["probabilities"] == tile.image.prediction.probabilities
    assert props["labels"] == sorted(props["tags"])
    # every feature as the tile rows say, read the slow way (the GeoJSON splices the
    # stored JSON in as text: issue 24)
    for tile in SceneTile.objects.filter(scene=scene).select_related(
            "image__prediction", "item"):
        image = tile.image
        ready = image.status == image.Status.READY
        assert by_cell[tile.row, tile.col] == {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [tile.ring]},
            "properties": {
                "image": image.pk, "row": tile.row, "col": tile.col,
                "tags": image.prediction.tags if ready else [],
                "probabilities": image.prediction.probabilities if ready else {},
                "labels": sorted(image.labels.values_list("label__name", flat=True)),
                "status": tile.item.status, "coverage": round(tile.coverage, 4),
                "bounds": tile.bounds, "pixels": [tile.x, tile.y, tile.width, tile.height]}}
    assert {k: v for k, v in collection.items() if k != "features"} == {
        "type": "FeatureCollection", "scene": scene.pk, "epsg": 32633, "rows": 2, "cols": 3,
        "footprint": scene.footprint}

    response = api.get(f"/api/scenes/{scene.pk}/probabilities.tif?label=primary")
    assert response.status_code == 200 and response["Content-Type"] == "image/tiff"
    path = tmp_path / "p.tif"
    path.write_bytes(response.content)
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 32633 and ds.count == 1 and (ds.height, ds.width) == (2, 3)
        assert ds.transform == Affine(256 * PIXEL, 0, ORIGIN[0], 0, -256 * PIXEL, ORIGIN[1])
        values = ds.read(1)
    assert np.isnan(values[0, 0])
    assert values[1, 0] == pytest.approx(props["probabilities"]["primary"], abs=1e-6)
    bad = api.get(f"/api/scenes/{scene.pk}/probabilities.tif?label=volcano")
    assert bad.status_code == 400 and "unknown label" in bad.json()["label"][0]
    assert api.get(f"/api/scenes/{scene.pk}/probabilities.tif").status_code == 400


def test_scenes_are_private_to_their_batch(user, tmp_path, django_user_model):
    batch, scene = tagged_scene(user, tmp_path)
    other = APIClient()
    other.force_authenticate(django_user_model.objects.create_user("other", password="x"))
    for url in (f"/api/scenes/{scene.pk}/", f"/api/scenes/{scene.pk}/tiles.geojson",
                f"/api/scenes/{scene.pk}/probabilities.tif?label=primary"):
        assert other.get(url).status_code == 404, url
        assert APIClient().get(url).status_code in (401, 403), url
    assert other.get(f"/api/scenes/?batch={batch.pk}").json()["count"] == 0
    assert other.get("/api/scenes/").json()["count"] == 0


@pytest.mark.parametrize("geojson, tif", [("", ""), ("json", "json"), ("geojson", "tif")])
def test_file_endpoint_errors_are_json_whatever_format_is_asked(user, api, geojson, tif):
    """The schema documents every error as application/json (schemathesis, ST105)."""
    _, (scene,) = upload(user, [("strip.png", plain((800, 250)))])
    geojson, tif = ({"format": geojson} if geojson else {}), ({"format": tif} if tif else {})
    for url, query in (("/api/scenes/999999/tiles.geojson", geojson),
                       ("/api/scenes/999999/probabilities.tif", {**tif, "label": "primary"}),
                       (f"/api/scenes/{scene.pk}/probabilities.tif", {**tif, "label": "x"}),
                       (f"/api/scenes/{scene.pk}/probabilities.tif", tif)):
        response = api.get(url, query)
        assert response.status_code in (400, 404), url
        assert response["Content-Type"] == "application/json", url
        assert response.json(), url


def test_large_plain_image_is_a_scene_without_crs(user, api):
    batch, (scene,) = upload(user, [("strip.png", plain((800, 250)))])
    recognition.process_batch(do_submit_batch(batch).pk)
    scene.refresh_from_db()
    assert (scene.rows, scene.cols, scene.tiles, scene.epsg) == (1, 4, 4, None)
    assert scene.status == "done" and not scene.georeferenced
    body = api.get(f"/api/scenes/{scene.pk}/tiles.geojson").json()
    assert [f["geometry"] for f in body["features"]] == [None] * 4
    assert api.get(f"/api/scenes/{scene.pk}/").json()["crs"] is None


def test_which_uploads_are_scenes(user, settings):
    _, found = upload(user, [("chip.jpg", make_image("jpeg", size=256)),
                             ("wide.jpg", plain((600, 200), "JPEG")),
                             ("tiff4.tif", make_image("tiff4", size=64))])
    assert [type(x).__name__ for x in found] == ["BatchItem", "Scene", "BatchItem"]
    settings.SCENE_MIN_SIDE = 1000
    _, found = upload(user, [("wide2.jpg", plain((601, 200), "JPEG"))])
    assert isinstance(found[0], BatchItem)


def test_scene_limits_fail_alone_with_a_reason(user, settings, tmp_path):
    settings.MAX_SCENE_PIXELS = 100_000
    settings.MAX_IMAGE_PIXELS = 100_000
    _, items = upload(user, [
        ("big.tif", scene_bytes(tmp_path, width=640, height=512)),
        ("progressive.jpg", plain((400, 300), "JPEG", progressive=True)),
        ("chip.jpg", make_image("jpeg")),
    ])
    assert items[0].status == "failed" and "too many pixels" in items[0].error
    settings.MAX_SCENE_PIXELS = 10**9
    _, items2 = upload(user, [("progressive.jpg", plain((700, 300), "JPEG", progressive=True))])
    assert items2[0].status == "failed" and "progressive" in items2[0].error
    assert items[2].status == "queued"


def test_tiling_resumes_where_it_stopped_and_adds_nothing_twice(user, tmp_path):
    batch, (scene,) = upload(user, [("scene.tif", scene_bytes(tmp_path, width=512,
                                                             height=768))])
    do_submit_batch(batch)
    model = active_model()
    assert tiling.tile_some(batch.pk, model, want=1)  # one row, then it stops
    scene.refresh_from_db()
    assert (scene.status, scene.rows_tiled, scene.tiles, scene.tiles_nodata) == (
        "tiling", 1, 1, 1)
    stretch = scene.stretch
    assert tiling.tile_some(batch.pk, model, want=100)
    scene.refresh_from_db()
    assert (scene.status, scene.rows_tiled, scene.tiles) == ("tagging", 3, 5)
    assert scene.stretch == stretch
    assert not tiling.tile_some(batch.pk, model, want=100)  # nothing left to cut
    assert SceneTile.objects.filter(scene=scene).count() == 5
    assert BatchItem.objects.filter(batch=batch).count() == 5
    recognition.process_batch(batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.done) == ("done", 5)


def test_a_scene_that_killed_its_worker_twice_fails_alone(user, tmp_path):
    batch, found = upload(user, [("scene.tif", scene_bytes(tmp_path)),
                                 ("chip.jpg", make_image("jpeg"))])
    Scene.objects.filter(pk=found[0].pk).update(attempts=2)
    recognition.process_batch(do_submit_batch(batch).pk)
    batch.refresh_from_db()
    scene = Scene.objects.get(pk=found[0].pk)
    assert scene.status == "failed" and scene.error == tiling.POISONED
    assert (batch.status, batch.done, batch.failed) == ("done", 1, 1)
    failed = batch.items.get(status="failed")
    assert failed.filename == "scene.tif" and failed.error == tiling.POISONED


def test_broken_scene_pixels_fail_the_scene_not_the_batch(user, tmp_path):
    data = scene_bytes(tmp_path, width=512, height=512, nodata_corner=0)
    batch, found = upload(user, [("cut.tif", data[: len(data) * 2 // 3]),
                                 ("chip.jpg", make_image("jpeg"))])
    assert isinstance(found[0], Scene)  # the header is whole
    recognition.process_batch(do_submit_batch(batch).pk)
    batch.refresh_from_db()
    scene = Scene.objects.get(pk=found[0].pk)
    assert scene.status == "failed" and "broken or truncated" in scene.error
    assert batch.status == "done" and batch.failed == 1
    assert batch.items.get(filename="chip.jpg").status == "done"
    # the tile rows read before the damage are tagged
    assert batch.done == 1 + scene.tiles
    assert batch.items.get(status="failed").filename == "cut.tif"


def test_tiles_count_as_no_files_and_scenes_count_their_bytes(user, settings, tmp_path):
    settings.MAX_FILES_PER_BATCH = 2
    batch, found = upload(user, [("scene.tif", scene_bytes(tmp_path))])
    recognition.process_batch(do_submit_batch(batch).pk)
    assert Scene.objects.get(pk=found[0].pk).tiles == 5
    from webapp.services.upload_limits import Quota

    quota = Quota(Batch.objects.get(pk=batch.pk))
    assert quota.files_left == 1  # the scene is one file; its 5 tiles are not files
    used = app_settings.MAX_UPLOAD_BYTES_PER_DAY - quota.bytes_left
    assert used == found[0].size_bytes  # chip PNGs of tiles cost nothing more


def test_curated_tile_labels_export_like_any_image(user, curator, tmp_path):
    batch, scene = tagged_scene(user, tmp_path)
    tile = SceneTile.objects.get(scene=scene, row=1, col=1)
    curation.set_labels(tile.image, ["water", "clear"], curator)
    out = tmp_path / "export"
    call_command("export_labels", str(out), "--dataset", "--scene", str(scene.pk),
                 "--reviewed-only")
    lines = (out / "labels.csv").read_text().splitlines()
    assert lines == ["image_name,tags", f"img_{tile.image_id},clear water"]
    exported = out / "images" / f"img_{tile.image_id}.png"
    with PILImage.open(exported) as chip:
        assert chip.size == (256, 256)
    assert exported.read_bytes() == Path(Image.objects.get(pk=tile.image_id).file.path
                                         ).read_bytes()


def test_batch_api_and_page_list_scenes(user, api, client, tmp_path):
    batch, scene = tagged_scene(user, tmp_path)
    body = api.get(f"/api/batches/{batch.pk}/").json()
    assert body["scenes"] == [{"id": scene.pk, "filename": "scene.tif", "status": "done",
                               "rows": 2, "rows_tiled": 2, "tiles": 5, "tiles_done": 5,
                               "tiles_nodata": 1, "error": ""}]
    page = client.get(f"/batches/{batch.pk}/")
    assert page.status_code == 200 and f"/scenes/{scene.pk}/" in page.content.decode()
    scene_page = client.get(f"/scenes/{scene.pk}/")
    assert scene_page.status_code == 200
    preview = client.get(f"/scenes/{scene.pk}/preview.png")
    assert preview.status_code == 200 and preview["Content-Type"] == "image/png"
    with PILImage.open(io.BytesIO(b"".join(preview.streaming_content))) as img:
        assert img.size == (640, 512)  # smaller than SCENE_PREVIEW_SIZE: not enlarged


def test_a_tile_image_page_links_back_to_its_scene_for_those_who_see_it(
        user, client, tmp_path, django_user_model):
    _, scene = tagged_scene(user, tmp_path)
    tile = SceneTile.objects.get(scene=scene, row=1, col=2)
    page = client.get(f"/images/{tile.image_id}/").content.decode()
    assert f'href="/scenes/{scene.pk}/">scene.tif</a>, tile row 1 col 2' in page
    other = django_user_model.objects.create_user("other", password="x")
    other.user_permissions.add(Permission.objects.get(codename="view_all_batches"))
    stranger = django_user_model.objects.create_user("stranger", password="x")
    seen = {}
    for person in (other, stranger):
        browser = Client()
        browser.force_login(person)
        response = browser.get(f"/images/{tile.image_id}/")
        seen[person.username] = (response.status_code,
                                 f"/scenes/{scene.pk}/" in response.content.decode())
    assert seen["other"] == (200, True)
    assert seen["stranger"][1] is False  # the tile's scene is not theirs to see


def test_files_endpoint_reports_a_scene(user, api, tmp_path):
    batch = api.post("/api/batches/", {"submit": "false"}, format="multipart").json()
    upload_file = SimpleUploadedFile("s.tif", scene_bytes(tmp_path))
    body = api.post(f"/api/batches/{batch['id']}/files/", {"files": [upload_file]},
                    format="multipart").json()
    assert body["added"] == [{"position": None, "filename": "s.tif", "status": "scene",
                              "scene": Scene.objects.get().pk, "error": None}]


def test_partial_edge_tiles_are_hidden_unless_asked_for(user, api, client):
    """A tile that is mostly black padding keeps its coverage; the gallery, the image API
    and search leave it out by default (MIN_TILE_COVERAGE), ?partial=true shows it."""
    batch, (scene,) = upload(user, [("strip.png", plain((800, 250)))])
    recognition.process_batch(do_submit_batch(batch).pk)
    tiles = {(t.row, t.col): t.image for t in SceneTile.objects.filter(scene=scene)}
    edge = tiles[(0, 3)]  # 800 - 3 * 256 = 32 of 256 px wide: 250/256 rows hold data
    assert edge.coverage == pytest.approx(32 * 250 / 256**2, abs=1e-3)
    assert tiles[(0, 0)].coverage == pytest.approx(250 / 256, abs=1e-3)
    listed = {row["id"] for row in api.get("/api/images/").json()["results"]}
    assert tiles[(0, 0)].pk in listed and edge.pk not in listed
    everything = {row["id"] for row in
                  api.get("/api/images/", {"partial": "true"}).json()["results"]}
    assert edge.pk in everything
    page = client.get("/gallery/").content.decode()
    assert f"/images/{edge.pk}/" not in page and f"/images/{tiles[(0, 0)].pk}/" in page
    assert f"/images/{edge.pk}/" in client.get("/gallery/", {"partial": "true"}).content.decode()
    assert api.get(f"/api/images/{edge.pk}/").status_code == 200  # its own page stays
    # the scene page counts it as hidden, and tiles per label from the label rows
    scene_page = client.get(f"/scenes/{scene.pk}/")
    assert scene_page.context["partial_tiles"] == 1
    expected: dict[str, int] = {}
    for name in ImageLabel.objects.filter(image__scene_tiles__scene=scene).values_list(
            "label__name", flat=True):
        expected[name] = expected.get(name, 0) + 1
    assert scene_page.context["counts"] == expected and expected
    assert list(scene_page.context["counts"].values()) == sorted(expected.values(),
                                                                  reverse=True)
    assert scene_page.context["labels"] == sorted(edge.prediction.probabilities)


def test_partial_tiles_are_predicted_from_their_real_pixels(user, settings):
    """An edge tile stores its data window; the model sees that window reflected over
    the padding (PARTIAL_TILE_VIEW), not the black band, while its display copy and the
    scene keep the tile as cut. With "pad" the stored prediction would be the padded
    tile's, which is what the last assertion tells apart."""
    from imagery.partial import model_view

    assert app_settings.PARTIAL_TILE_VIEW == "mirror"
    batch, (scene,) = upload(user, [("strip.png", plain((800, 250)))])
    recognition.process_batch(do_submit_batch(batch).pk)
    tiles = {(t.row, t.col): t.image for t in SceneTile.objects.filter(scene=scene)}
    edge, inner = tiles[(0, 3)], tiles[(0, 0)]
    assert edge.data_window == [0, 0, 32, 250] and inner.data_window == [0, 0, 256, 250]
    predictor = recognition.predictor_for(active_model())
    seen = recognition.decode_for_pipeline(edge, 256).model_input
    assert seen.shape == (256, 256, 3) and seen.reshape(-1, 3).max(axis=1).min() >= 40
    with edge.file.open("rb") as handle:
        stored = np.asarray(PILImage.open(handle).convert("RGB"))
    assert stored[:, 32:].max() == 0  # the tile itself stays as cut
    mirrored, padded = predictor.predict([model_view(stored, edge.data_window, "mirror"),
                                          stored])
    kept = edge.prediction.probabilities
    assert kept == pytest.approx(mirrored.probabilities, abs=2e-3)
    assert kept != pytest.approx(padded.probabilities, abs=2e-3)


def test_a_scene_batch_total_is_known_at_submit_and_never_grows(user, tmp_path):
    """Forward-only progress: the grid comes from the scene's header at upload, so the
    total is final at submit (it drops only by the all-nodata tiles tiling skips)."""
    from webapp.services.batches import do_refresh_counts, seconds_left

    batch, _ = upload(user, [("scene.tif", scene_bytes(tmp_path, width=512, height=768)),
                             ("chip.png", plain((32, 32)))])
    batch = do_submit_batch(batch)
    totals = [batch.total]
    assert batch.total == 6 + 1 and batch.remaining == 7  # 2 x 3 tiles and the chip
    model = active_model()
    while tiling.tile_some(batch.pk, model, want=1):
        totals.append(do_refresh_counts(batch.pk).total)
    recognition.process_batch(batch.pk)
    batch.refresh_from_db()
    totals.append(batch.total)
    assert totals == sorted(totals, reverse=True) and totals[-1] == 5 + 1  # 1 nodata tile
    assert (batch.status, batch.done) == ("done", 6)
    assert seconds_left(batch) is None


def test_time_left_follows_the_measured_rate(user):
    from datetime import timedelta

    from django.utils import timezone

    from webapp.models import Batch
    from webapp.services.batches import seconds_left

    batch = Batch(owner=user, status="running", total=10, done=4, failed=1,
                  started_at=timezone.now() - timedelta(seconds=50))
    assert seconds_left(batch) == pytest.approx(50, abs=1)  # 5 in 50 s, 5 to go
    batch.done = batch.failed = 0
    assert seconds_left(batch) is None
