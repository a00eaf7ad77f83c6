"""imagery.rasters and classifier.scenes on small GeoTIFFs written here: tiling, bounds
to the metre, WGS84 polygons, nodata tiles, 16-bit stretch, band order, the probability
raster, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image as PILImage
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from classifier import cli, scenes
from imagery import rasters
from tests.scene_files import ORIGIN, PIXEL, UTM33, geotiff


@pytest.mark.parametrize(("size", "tile", "overlap", "edge", "expected"), [
    (512, 256, 0, "pad", 2), (600, 256, 0, "pad", 3), (600, 256, 0, "drop", 2),
    (250, 256, 0, "pad", 1), (250, 256, 0, "drop", 0), (512, 256, 64, "pad", 3),
    (640, 256, 64, "drop", 3), (256, 256, 64, "pad", 1),
])
def test_grid_counts(size, tile, overlap, edge, expected):
    grid = rasters.TileGrid(size, size, tile, overlap, edge)
    assert (grid.rows, grid.cols) == (expected, expected)
    assert len(list(grid)) == expected * expected
    if expected:
        last = grid.tile(expected - 1, expected - 1)
        # every tile starts inside the scene, and padding covers the whole scene
        assert last.x < size and last.width == min(tile, size - last.x)
        if edge == "pad":
            assert last.x + last.width == size


def test_tile_windows_overlap_by_the_setting():
    grid = rasters.TileGrid(1000, 300, 256, 56, "pad")
    xs = [t.x for t in grid.row_tiles(0)]
    assert xs == [0, 200, 400, 600, 800]
    assert grid.tile(1, 0).y == 200 and grid.tile(1, 0).height == 100


def test_tile_bounds_to_the_metre_and_wgs84_polygons(tmp_path):
    path = geotiff(tmp_path / "s.tif", width=640, height=512)
    with rasters.SceneReader(path) as scene:
        assert scene.georeferenced and scene.epsg == 32633
        assert (scene.grid.rows, scene.grid.cols) == (2, 3)
        left, top = ORIGIN
        tile = scene.grid.tile(1, 2)  # partial: 128 px wide
        assert (tile.x, tile.y, tile.width, tile.height) == (512, 256, 128, 256)
        assert scene.tile_bounds(tile) == pytest.approx(
            (left + 512 * PIXEL, top - 512 * PIXEL, left + 640 * PIXEL, top - 256 * PIXEL),
            abs=1e-6)
        assert scene.bounds == pytest.approx((left, top - 512 * 3, left + 640 * 3, top))
        ring = scene.tile_polygons_wgs84([scene.grid.tile(1, 0)])[0]
    # easting 500000 is the zone's central meridian (15 E); northing 0 is the equator
    assert ring[0] == pytest.approx([15.0, 0.0], abs=1e-9)
    assert ring[-1] == ring[0] and len(ring) == 5
    lons, lats = zip(*ring[:4])
    assert lons[0] == lons[3] == pytest.approx(15.0, abs=1e-9)
    assert min(lats) == pytest.approx(0.0, abs=1e-9)
    # 768 m north of the equator and 768 m east of the meridian, in degrees (~111.3 km/deg)
    assert max(lats) == pytest.approx(768 / 110_574, rel=2e-3)
    assert max(lons) - 15.0 == pytest.approx(768 / 111_320, rel=2e-3)
    # counter-clockwise (RFC 7946): positive shoelace area
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))
    assert area > 0


def test_geographic_scene_polygons_are_the_bounds(tmp_path):
    path = geotiff(tmp_path / "g.tif", width=512, height=512, crs="EPSG:4326",
                   origin=(-60.0, -3.0), pixel=0.0001, nodata_corner=0)
    with rasters.SceneReader(path) as scene:
        ring = scene.tile_polygons_wgs84([scene.grid.tile(0, 1)])[0]
    assert ring == [[-59.9744, -3.0256], [-59.9488, -3.0256], [-59.9488, -3.0],
                    [-59.9744, -3.0], [-59.9744, -3.0256]]


def test_nodata_tiles_are_skipped_and_partial_ones_kept(tmp_path):
    path = geotiff(tmp_path / "n.tif", width=640, height=512, nodata_corner=300)
    with rasters.SceneReader(path) as scene:
        chips = [chip for _row, strip in scene.strips() for chip in strip]
    assert len(chips) == 6
    empty = [c.tile for c in chips if c.pixels is None]
    assert [(t.row, t.col) for t in empty] == [(0, 0)]
    by_cell = {(c.tile.row, c.tile.col): c for c in chips}
    # tile (0, 1) has x 256..511; nodata covers x < 300 of its rows: 44 of 256 columns
    assert by_cell[0, 1].coverage == pytest.approx(1 - 44 / 256)
    assert by_cell[0, 1].pixels[:, :44].max() == 0  # nodata shows black
    assert (by_cell[0, 1].pixels[:, 44:].max(axis=2) > 0).mean() > 0.95
    # the partial edge tile is padded with black: 128 of its 256 columns are scene
    edge = by_cell[1, 2]
    assert edge.pixels.shape == (256, 256, 3) and edge.pixels[:, 128:].max() == 0
    assert edge.coverage == pytest.approx(0.5)
    # the data window: what the model sees of a partial tile (imagery.partial)
    assert edge.window == (0, 0, 128, 256)
    assert by_cell[0, 1].window == (44, 0, 212, 256)
    assert by_cell[1, 0].window == (0, 44, 256, 212)
    # an L of nodata in a corner leaves the box whole: the window is a bounding box
    assert by_cell[1, 1].window is None and by_cell[1, 1].coverage < 1


def test_drop_leaves_out_partial_tiles(tmp_path):
    path = geotiff(tmp_path / "d.tif", width=640, height=512, nodata_corner=0)
    with rasters.SceneReader(path, rasters.TilingConfig(edge="drop")) as scene:
        cells = [(c.tile.row, c.tile.col) for _r, s in scene.strips() for c in s]
    assert cells == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_sixteen_bit_planet_order_red_band_comes_out_red(tmp_path):
    path = geotiff(tmp_path / "r.tif", bright=3)  # B, G, R, NIR: red is band 3
    with rasters.SceneReader(path) as scene:
        assert scene.rgb_bands == (3, 2, 1)
        chips = {(c.tile.row, c.tile.col): c for _r, s in scene.strips() for c in s}
        preview = scene.preview()
    red, green, blue = (chips[1, 1].pixels[..., k].astype(float).mean() for k in range(3))
    assert red > 180 and red > green + 50 and red > blue + 50
    red, green, blue = (chips[1, 0].pixels[..., k].astype(float).mean() for k in range(3))
    assert red < 60 < green and red < blue  # x < 256: the red band is dark there
    assert preview.shape[2] == 3 and max(preview.shape[:2]) <= 1024


def test_stretch_is_2nd_to_98th_percentile_of_valid_pixels():
    rng = np.random.default_rng(1)
    band = rng.integers(1000, 3001, (3, 200, 200)).astype(np.uint16)
    band[:, :50] = 0  # nodata must not drag the low end down
    valid = band[0] > 0
    limits = rasters.stretch_limits(band, valid)
    for low, high in limits:
        assert low == pytest.approx(1040, abs=5) and high == pytest.approx(2960, abs=5)
    rgb = rasters.to_rgb8(band, limits, valid)
    assert rgb.dtype == np.uint8 and rgb[:50].max() == 0  # band[:, :50]: rows 0-49
    values = band[0][valid]
    out = rgb[..., 0][valid]
    assert out[values <= 1040].max() == 0 and out[values >= 2960].min() == 255
    mid = (values > 1900) & (values < 2100)
    assert 110 < out[mid].mean() < 145


@pytest.mark.parametrize("tiled", [True, False])
def test_overview_without_file_overviews_is_gdals_nearest_read(tmp_path, tiled):
    """The strip-by-strip overview picks the very pixels GDAL's decimated read does."""
    path = geotiff(tmp_path / "o.tif", width=1300, height=700, seed=3)
    if not tiled:  # striped: 1-row blocks, as many writers leave them
        with rasterio.open(path) as ds:
            profile, data = ds.profile, ds.read()
        profile.update(tiled=False, blockysize=1)
        profile.pop("blockxsize")
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
    config = rasters.TilingConfig(overview_size=250)
    with rasters.SceneReader(path, config) as scene:
        assert not scene.dataset.overviews(1)
        bands, valid = scene.overview()
        expected, expected_valid = scene._read(out_shape=(3, *bands.shape[1:]))
    assert bands.shape == (3, 135, 250)
    assert np.array_equal(bands, expected) and np.array_equal(valid, expected_valid)
    assert not valid[:40, :40].any() and valid[60:].all()


def test_eight_bit_scenes_are_not_stretched(tmp_path):
    path = geotiff(tmp_path / "b.tif", dtype="uint8", bands=3, bright=1, nodata_corner=0)
    with rasterio.open(path) as ds:
        raw = ds.read(window=((0, 256), (0, 256)))
    with rasters.SceneReader(path) as scene:
        assert scene.limits is None
        chip = next(c for _r, s in scene.strips() for c in s)
    assert np.array_equal(chip.pixels, np.moveaxis(raw, 0, -1))


def test_colour_interpretation_and_band_names_choose_the_bands(tmp_path):
    ci = [ColorInterp.blue, ColorInterp.red, ColorInterp.green, ColorInterp.undefined]
    path = geotiff(tmp_path / "ci.tif", bright=2, colorinterp=ci)
    with rasters.SceneReader(path) as scene:
        assert scene.rgb_bands == (2, 3, 1)
    path = geotiff(tmp_path / "names.tif", bright=1,
                   descriptions=["Red", "Green", "Blue", "NIR"])
    with rasters.SceneReader(path) as scene:
        assert scene.rgb_bands == (1, 2, 3)
        chip = [c for _r, s in scene.strips() for c in s][4]  # tile (1, 1): x >= 256
    assert chip.pixels[..., 0].mean() > 180 > chip.pixels[..., 2].mean() + 50
    assert rasters.choose_rgb_bands(3) == (1, 2, 3)
    assert rasters.choose_rgb_bands(1) == (1, 1, 1)
    with rasters.SceneReader(path, rasters.TilingConfig(rgb_bands=(4, 4, 4))) as scene:
        assert scene.rgb_bands == (4, 4, 4)
    with pytest.raises(rasters.SceneError, match="band 5"):
        rasters.SceneReader(path, rasters.TilingConfig(rgb_bands=(5, 2, 1)))


def test_probability_raster_has_the_scene_crs_and_tile_grid(tmp_path):
    path = geotiff(tmp_path / "p.tif", width=640, height=512)
    with rasters.SceneReader(path) as scene:
        grid, transform, crs = scene.grid, scene.transform, scene.crs
    values = np.arange(2 * grid.rows * grid.cols, dtype=np.float32).reshape(2, grid.rows,
                                                                            grid.cols) / 10
    values[:, 0, 0] = np.nan
    data = rasters.probability_raster(grid, values, transform, crs, ["road", "water"])
    out = tmp_path / "out.tif"
    out.write_bytes(data)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32633 and ds.count == 2
        assert (ds.height, ds.width) == (2, 3)
        assert ds.transform == Affine(PIXEL * 256, 0, ORIGIN[0], 0, -PIXEL * 256, ORIGIN[1])
        assert ds.descriptions == ("road", "water")
        assert ds.dtypes[0] == "float32"
        got = ds.read()
    assert np.isnan(got[0, 0, 0])
    assert got[1, 1, 2] == pytest.approx(values[1, 1, 2])
    with pytest.raises(ValueError, match="shape"):
        rasters.probability_raster(grid, values[:1], transform, crs, ["road", "water"])


def test_large_plain_image_is_a_scene_without_geometry(tmp_path):
    path = tmp_path / "strip.png"
    PILImage.fromarray(np.full((250, 800, 3), 90, np.uint8)).save(path)
    info = rasters.inspect_scene(path)
    assert not info.georeferenced and info.driver == "PNG"
    with rasters.SceneReader(path) as scene:
        assert scene.crs is None and scene.epsg is None
        assert (scene.grid.rows, scene.grid.cols) == (1, 4)
        assert scene.tile_polygons_wgs84([scene.grid.tile(0, 0)]) is None


def test_broken_file_is_a_scene_error(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(rasters.SceneError, match="header is broken"):
        rasters.inspect_scene(path)


def test_truncated_pixels_are_a_scene_error(tmp_path):
    path = geotiff(tmp_path / "t.tif", width=512, height=512, nodata_corner=0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(rasters.SceneError, match="broken or truncated"):
        with rasters.SceneReader(path) as scene:
            for _row, _strip in scene.strips():
                pass


def test_predict_scene_cli_writes_geojson_and_raster(tmp_path, capsys):
    path = geotiff(tmp_path / "scene.tif", width=640, height=512)
    out, raster = tmp_path / "tiles.geojson", tmp_path / "probs.tif"
    assert cli.main(["predict-scene", str(path), "--out", str(out), "--raster", str(raster),
                     "--batch-size", "8"]) == 0
    collection = json.loads(out.read_text())
    assert collection["type"] == "FeatureCollection"
    assert collection["skipped_nodata_tiles"] == 1
    features = collection["features"]
    assert sorted((f["properties"]["row"], f["properties"]["col"]) for f in features) == [
        (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    first = next(f for f in features if (f["properties"]["row"], f["properties"]["col"])
                 == (1, 0))
    assert first["geometry"]["type"] == "Polygon"
    assert first["geometry"]["coordinates"][0][0] == pytest.approx([15.0, 0.0], abs=1e-9)
    props = first["properties"]
    assert len(props["probabilities"]) == 17
    assert set(props["tags"]) <= set(props["probabilities"])
    with rasterio.open(raster) as ds:
        assert ds.count == 17 and (ds.height, ds.width) == (2, 3)
        assert ds.crs.to_string() == UTM33
        values = ds.read()
        band = list(ds.descriptions).index("primary")
    assert np.isnan(values[:, 0, 0]).all()  # the nodata tile
    assert values[band, 1, 0] == pytest.approx(props["probabilities"]["primary"], abs=1e-4)
    assert "5 tiles tagged, 1 all-nodata" in capsys.readouterr().out


def test_predict_scene_sees_partial_tiles_as_told(tmp_path):
    """The edge tile (1, 2) is tagged from its mirrored data by default and from the
    padded tile with --partial-view pad; whole tiles are the same either way."""
    from classifier.predictor import Predictor

    path = geotiff(tmp_path / "scene.tif", width=640, height=512)
    predictor = Predictor("default", tta_views=1)

    def probabilities(view):
        result = scenes.predict_scene(path, predictor, partial_view=view)
        return {(t.tile.row, t.tile.col): t.probabilities for t in result.tiles}

    mirror, pad = probabilities("mirror"), probabilities("pad")
    assert mirror[1, 0] == pad[1, 0]
    assert mirror[1, 2] != pytest.approx(pad[1, 2], abs=1e-3)


def test_predict_scene_cli_reports_an_unreadable_scene(tmp_path, capsys):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"not a raster")
    assert cli.main(["predict-scene", str(path), "--out", str(tmp_path / "o.json")]) == 1
    assert "not an image or GeoTIFF this app reads" in capsys.readouterr().err


# --- hostile and unusual rasters (issue 20) ---------------------------------------

def _raster(path, crs, transform, dtype="uint8", count=3, mask=False, width=64, height=48):
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": dtype, "crs": crs, "transform": transform}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((count, height, width), 100, dtype))
        if mask:
            valid = np.full((height, width), 255, np.uint8)
            valid[:10] = 0
            ds.write_mask(valid)
    return path


def test_a_file_whose_magic_bytes_name_no_format_never_reaches_gdal(tmp_path):
    path = tmp_path / "scene.tif"
    path.write_text("<GDAL_WMTS><GetCapabilitiesUrl>http://127.0.0.1:9/x"
                    "</GetCapabilitiesUrl></GDAL_WMTS>")
    with pytest.raises(rasters.SceneError, match="not an image or GeoTIFF this app reads"):
        rasters.inspect_scene(path)
    with pytest.raises(rasters.SceneError, match="not an image or GeoTIFF"):
        rasters.SceneReader(path)


def test_a_tiff_is_opened_by_the_gtiff_driver_alone(tmp_path):
    path = geotiff(tmp_path / "s.tif", width=300, height=64, nodata_corner=0)
    assert rasters.inspect_scene(path).driver == "GTiff"
    png = tmp_path / "looks.tif"
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, "PNG")
    assert rasters.inspect_scene(png).driver == "PNG"  # the bytes decide, not the name
    with pytest.raises(rasters.SceneError, match="could not be read as GTiff"):
        rasters.inspect_scene(png, driver="GTiff")


def test_gdal_skips_the_drivers_that_fetch_urls():
    with rasterio.Env() as env:
        drivers = env.drivers()
    assert "GTiff" in drivers and "PNG" in drivers
    assert not {"WMS", "WMTS", "WCS", "VRT", "HTTP"} & set(drivers)


def test_complex_pixels_are_refused_with_a_message(tmp_path):
    path = _raster(tmp_path / "c.tif", None, Affine.identity(), dtype="complex64", count=1)
    with pytest.raises(rasters.SceneError, match="complex numbers"):
        rasters.inspect_scene(path)


def test_a_nan_geotransform_is_refused_with_a_message(tmp_path):
    path = _raster(tmp_path / "n.tif", "EPSG:4326", Affine(float("nan"), 0, 0, 0, -1, 0))
    with pytest.raises(rasters.SceneError, match="geotransform holds NaN"):
        rasters.inspect_scene(path)


@pytest.mark.parametrize("crs, transform", [
    ("+proj=ortho +lat_0=0 +lon_0=0 +datum=WGS84", from_origin(1e7, 1e7, 1000, 1000)),
    ('LOCAL_CS["arbitrary",UNIT["metre",1]]', from_origin(0, 100, 1, 1)),
], ids=["outside-projection-domain", "engineering-crs"])
def test_corners_that_cannot_be_placed_on_the_map_are_a_scene_error(tmp_path, crs, transform):
    path = _raster(tmp_path / "p.tif", crs, transform)
    with pytest.raises(rasters.SceneError, match="cannot be placed on the map"):
        rasters.SceneReader(path)


def test_an_internal_mask_of_a_three_band_raster_is_read_in_every_read(tmp_path):
    path = _raster(tmp_path / "m.tif", "EPSG:4326", from_origin(10, 10, 0.01, 0.01),
                   mask=True)
    config = rasters.TilingConfig(tile_size=16, overview_size=20)
    with rasters.SceneReader(path, config) as scene:
        bands, valid = scene.overview()  # a decimated read: the mask is 2-D
        assert bands.shape == (3, 15, 20) and valid.shape == (15, 20)
        assert not valid[:3].any() and valid[4:].all()
        chips = [chip for _row, strip in scene.strips() for chip in strip]
    # rows 0-9 masked: a top tile keeps 6 of its 16 rows, and they are black
    assert chips[0].coverage == pytest.approx(6 / 16)
    assert not chips[0].pixels[:10].any() and chips[0].pixels[10:].all()


def test_tile_rows_read_in_column_blocks_give_the_same_chips(tmp_path, monkeypatch):
    path = geotiff(tmp_path / "wide.tif", width=1100, height=300)
    config = rasters.TilingConfig(tile_size=100, overlap=10)
    with rasters.SceneReader(path, config) as scene:
        whole = [(c.tile, c.pixels, c.coverage) for _r, s in scene.strips() for c in s]
        overview = scene.overview()
    monkeypatch.setattr(rasters, "READ_BLOCK_WIDTH", 250)
    reads = []
    with rasters.SceneReader(path, config) as scene:
        original = scene._read
        scene._read = lambda window=None, **kw: reads.append(window) or original(window, **kw)
        blocks = [(c.tile, c.pixels, c.coverage) for _r, s in scene.strips() for c in s]
        scene._overview = None
        scene._limits = False
        blocked_overview = scene.overview()
    assert max(w.width for w in reads if w is not None) <= 250
    assert len(whole) == len(blocks)
    for (t1, p1, c1), (t2, p2, c2) in zip(whole, blocks):
        assert t1 == t2 and c1 == c2
        assert (p1 is None and p2 is None) or np.array_equal(p1, p2)
    assert np.array_equal(overview[0], blocked_overview[0])
    assert np.array_equal(overview[1], blocked_overview[1])


def test_skipping_drivers_this_build_lacks_logs_no_warning(tmp_path):
    """GDAL_SKIP names drivers some GDAL builds lack; a worker's log must not fill with
    'Unable to find driver' for each (it did, once per process and driver)."""
    import subprocess
    import sys

    path = geotiff(tmp_path / "s.tif", width=300, height=64, nodata_corner=0)
    code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stdout);"
            "from imagery import rasters; rasters.inspect_scene(sys.argv[1]); print('read')")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert "read" in out and "GDAL_SKIP" not in out
