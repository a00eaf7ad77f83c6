"""End to end in headless Chromium: log in, upload several images including a broken one,
watch the waiting animation and the progress, land on the gallery with the model's tags,
and see the broken file's error. And a GeoTIFF scene: cut into tiles, its page with the
tiles coloured by a label over the overview and on a Leaflet map.

Needs Debian's chromium at /usr/bin/chromium (CI installs it; Playwright's own browsers
are never downloaded), Redis, and a real Celery worker (tests/webapp/conftest.py). Where
chromium is missing the test fails, or is skipped when E2E_OPTIONAL=1. With
SAVE_SCREENSHOTS=1 the screenshots go to docs/ (for the README), else to tmp_path.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connections
from PIL import Image as PILImage
from playwright.sync_api import Browser, expect, sync_playwright

from tests.scene_files import geotiff
from tests.webapp.conftest import ROOT, make_image
from webapp.models import Batch, ImageLabel, Scene, SceneTile

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "pw-e2e-uploader-1"
N_VALID = 7  # two chunks of PREDICT_CHUNK_SIZE=4, so the progress has a middle


def ground_photo() -> bytes:
    """scikit-image's coffee cup, small enough to be tagged whole: a ground-level photo,
    which the model flags as unlike its training imagery (novelty 1.6 x the threshold)."""
    import skimage.data

    buffer = io.BytesIO()
    PILImage.fromarray(skimage.data.coffee()).resize((300, 200)).save(buffer, "JPEG",
                                                                       quality=90)
    return buffer.getvalue()


def landscape(seed: int, image_format: str, size: int = 192) -> bytes:
    """A smooth synthetic aerial scene (fields, forest, a river): the model tags it like
    any image, and the gallery screenshot shows something better than noise."""
    rng = np.random.default_rng(seed)
    coarse = PILImage.fromarray((rng.random((5, 5)) * 255).astype(np.uint8))
    relief = np.asarray(coarse.resize((size, size), PILImage.BICUBIC), np.float64) / 255
    palette = np.array([[38, 78, 42], [66, 110, 52], [128, 136, 78], [176, 158, 112]])
    rgb = palette[np.clip((relief * len(palette)).astype(int), 0, len(palette) - 1)]
    rgb = rgb + rng.normal(0, 7, rgb.shape)
    rows, cols = np.mgrid[0:size, 0:size]
    wave = cols / size * 2 * np.pi * rng.uniform(0.4, 1.2) + rng.uniform(0, 2 * np.pi)
    course = size * (rng.uniform(0.35, 0.65) + rng.uniform(0.1, 0.25) * np.sin(wave))
    rgb[np.abs(rows - course) < size / 40 + 2] = [44, 72, 104]
    buffer = io.BytesIO()
    PILImage.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, image_format)
    return buffer.getvalue()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        return ROOT / "docs" / name
    return tmp_path / name


@pytest.fixture
def browser(monkeypatch) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package"
        if os.environ.get("E2E_OPTIONAL") == "1":
            pytest.skip(reason)
        pytest.fail(f"{reason} (or set E2E_OPTIONAL=1 to skip this test)", pytrace=False)
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls of
    # the test itself are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


RECORD_COUNTS = """() => {
  const text = (id) => document.getElementById(id).textContent;
  new MutationObserver(() => window.recordCounts({
    done: Number(text("n-done")), failed: Number(text("n-failed")),
    remaining: Number(text("n-remaining")), phase: text("phase"),
  })).observe(document.getElementById("waiting"),
              {subtree: true, childList: true, characterData: true});
}"""

ALL_TILE_IMAGES_LOADED = """() => {
  const images = [...document.querySelectorAll("#gallery .tile img")];
  return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


def test_upload_with_a_broken_file_ends_in_the_tagged_gallery(
        browser, live_server, start_worker, tmp_path):
    worker = start_worker(WORKER_CHUNK_PAUSE="1.0")  # progress visible for a few seconds
    User.objects.create_user("uploader", password=PASSWORD)
    valid = {}
    for seed in range(N_VALID - 1):
        jpeg = seed % 2 == 0
        valid[f"scene{seed}.{'jpg' if jpeg else 'png'}"] = landscape(
            seed, "JPEG" if jpeg else "PNG")
    valid["coffee.jpg"] = ground_photo()
    files = {**valid, "broken.jpg": make_image("text")}  # fails already at upload
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    counts: list[dict] = []
    page.expose_function("recordCounts", lambda snapshot: counts.append(snapshot))
    try:
        # The upload page needs a login: the real form, then back to the upload page.
        page.goto(f"{live_server.url}/upload/")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/upload/"))
        page.fill("#id_username", "uploader")
        page.fill("#id_password", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/upload/$"))

        page.set_input_files("#file-input", paths)
        rows = page.locator("#file-list li")
        expect(rows).to_have_count(len(files))
        expect(page.locator("#n-selected")).to_have_text(str(len(files)))
        expect(page.locator("#waiting")).to_be_hidden()
        page.evaluate(RECORD_COUNTS)
        page.click("#start")

        # The waiting block with its animated spinner.
        expect(page.locator("#waiting")).to_be_visible()
        spinner = page.locator("#waiting .spinner")
        expect(spinner).to_be_visible()
        assert spinner.locator("span").first.evaluate(
            "(el) => getComputedStyle(el).animationName") == "pulse"
        expect(page.locator("#start")).to_be_disabled()

        # Each file is uploaded on its own: the broken one fails with the server's reason.
        broken_row = rows.filter(has_text="broken.jpg")
        expect(broken_row).to_have_class(re.compile(r"\bfailed\b"))
        expect(broken_row.locator(".fstate")).to_contain_text("not an image")
        for name in valid:
            row = rows.filter(has_text=name)
            expect(row).to_have_class(re.compile(r"\bstored\b"))
            expect(row.locator(".fstate")).to_have_text("uploaded")
            expect(row.locator(".fbar span")).to_have_attribute("style", "width: 100%;")

        # Live counts from polling the batch while the worker tags.
        expect(page.locator("#n-failed")).to_have_text("1")
        expect(page.locator("#n-remaining")).not_to_have_text("0")
        page.screenshot(path=screenshot_path(tmp_path, "upload.png"), full_page=True)

        page.wait_for_url(re.compile(r"/gallery/\?batch=\d+"), timeout=120_000)
        batch_id = int(re.search(r"batch=(\d+)", page.url).group(1))
        batch = Batch.objects.get(pk=batch_id)
        assert (batch.status, batch.total, batch.done, batch.failed) == (
            "done", len(files), N_VALID, 1)

        # The progress went up while the page waited: never backwards, ending complete.
        polled = [c for c in counts if c["done"] + c["failed"] + c["remaining"] > 0]
        assert polled, f"the counts were never shown: {counts}"
        assert any(c["remaining"] > 0 for c in polled), counts
        assert all(c["failed"] == 1 for c in polled), counts
        done = [c["done"] for c in polled]
        assert done == sorted(done), counts
        last = counts[-1]
        assert (last["done"], last["failed"], last["remaining"]) == (N_VALID, 1, 0), counts
        assert counts[-1]["phase"].startswith("Done"), counts

        # The gallery of the batch: every valid image with the model's tags.
        expect(page.locator("h1 small")).to_contain_text(f"{N_VALID} tagged, 1 failed")
        tiles = page.locator("#gallery .tile")
        expect(tiles).to_have_count(N_VALID)
        shown = {}
        for tile in tiles.all():
            image_id = int(tile.get_attribute("data-image-id"))
            chips = sorted(tile.locator(".chip").all_inner_texts())
            assert chips, f"image {image_id} has no tag chips"
            # each label as people read it (display name; the key stays in the data)
            assert chips == sorted(il.label.shown for il in ImageLabel.objects.filter(
                image_id=image_id).select_related("label"))
            shown[tile.locator(".tile-name").inner_text()] = chips
            tile.scroll_into_view_if_needed()  # the thumbnails are loading="lazy"
        assert set(shown) == set(valid)
        page.wait_for_function(ALL_TILE_IMAGES_LOADED)

        # The broken file is listed with its reason.
        failures = page.locator("#batch-failures")
        expect(failures).to_be_visible()
        expect(failures.locator("li")).to_have_count(1)
        expect(failures.locator("li")).to_contain_text("broken.jpg")
        expect(failures.locator("li")).to_contain_text("not an image")

        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=screenshot_path(tmp_path, "gallery.png"), full_page=True)
        assert not js_errors, js_errors

        # The ground-level photo is flagged: a badge in the gallery, a note on its page.
        photo = tiles.filter(has_text="coffee.jpg")
        expect(photo.locator(".unusual-badge")).to_have_text("unusual")
        photo.locator("a").first.click()
        page.wait_for_url(re.compile(r"/images/\d+/$"))
        expect(page.locator("#unusual")).to_contain_text("Unlike the training imagery")
        page.screenshot(path=screenshot_path(tmp_path, "unusual.png"), full_page=True)
        assert not js_errors, js_errors
    finally:
        context.close()
        # ORM calls made while Playwright's event loop runs get their own connection
        # (Django keeps connections per async context); close it here, or PostgreSQL
        # refuses to drop the test database while it is still open.
        connections.close_all()
        print(f"worker log:\n{worker.log_path.read_text()[-4000:]}")  # shown on failure


def wait_for_scene(scene_id: int, timeout: float = 120) -> Scene:
    """Poll the database until the worker has tiled and tagged the scene."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        scene = Scene.objects.get(pk=scene_id)
        if scene.status in (Scene.Status.DONE, Scene.Status.FAILED):
            return scene
        time.sleep(0.3)
    raise AssertionError(f"scene {scene_id} not done after {timeout}s: {scene.status}, "
                         f"{scene.rows_tiled}/{scene.rows} rows tiled")


def test_scene_page_overlays_tiles_by_label_with_a_map(
        browser, live_server, start_worker, tmp_path):
    """A 4-band 16-bit GeoTIFF through the upload page: cut into 6 tiles (one all nodata,
    skipped; the right column's two only 48 px wide, partial), tagged; its page shows the
    tiles over the overview coloured by the chosen label's probability, the partial ones
    marked, the counts per label, and the tiles on a Leaflet map, all under the site's
    CSP and without a background map (offline). The gallery hides the partial tiles
    unless asked for."""
    worker = start_worker()
    User.objects.create_user("surveyor", password=PASSWORD)
    path = geotiff(tmp_path / "scene.tif", width=560, height=512)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []  # console errors (CSP violations among them) and page errors

    def on_console(message) -> None:
        where = message.location.get("url", "")
        # the browser's own favicon request (the site has none) is no error of the page
        if message.type == "error" and not where.endswith("/favicon.ico"):
            errors.append(f"console: {message.text} ({where})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    try:
        page.goto(f"{live_server.url}/upload/")
        page.fill("#id_username", "surveyor")
        page.fill("#id_password", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/upload/$"))
        page.set_input_files("#file-input", [str(path)])
        page.click("#start")
        row = page.locator("#file-list li").filter(has_text="scene.tif")
        expect(row).to_have_class(re.compile(r"\bstored\b"))
        expect(row.locator(".fstate")).to_have_text("scene: will be cut into tiles")
        scene = wait_for_scene(Scene.objects.get(filename="scene.tif").pk)
        assert (scene.status, scene.tiles, scene.tiles_nodata) == ("done", 5, 1), scene.error
        page.wait_for_url(re.compile(r"/gallery/\?batch=\d+"), timeout=120_000)

        # The batch page lists the scene with a link to its page.
        page.goto(f"{live_server.url}/batches/{scene.batch_id}/")
        scene_row = page.locator(f"#scenes tr[data-scene='{scene.pk}']")
        expect(scene_row.locator(".status")).to_have_text("done")
        expect(scene_row.locator(".tiles-done")).to_have_text("5")
        expect(scene_row.locator("a")).to_have_attribute("href", f"/scenes/{scene.pk}/")

        page.goto(f"{live_server.url}/scenes/{scene.pk}/")
        expect(page.locator("#scene-status")).to_have_text("done")
        expect(page.locator("#tiles-done")).to_have_text("5")
        tiles = page.locator(".tile")
        expect(tiles).to_have_count(5)  # 2 x 3 grid, the all-nodata corner tile skipped
        page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
        # the right column's tiles hold 48 of 256 px: marked, counted, and hidden from lists
        partial = page.locator("rect.tile.partial")
        expect(partial).to_have_count(2)
        assert {partial.nth(i).get_attribute("data-col") for i in range(2)} == {"2"}
        expect(page.locator("#tiles-partial b")).to_have_text("2")
        expect(partial.first.locator("title")).to_contain_text("partial: 19% data")

        records = {(t.row, t.col): t for t in
                   SceneTile.objects.filter(scene=scene).select_related("image__prediction")}
        assert len(records) == 5 and (0, 0) not in records

        def shown() -> dict[tuple[int, int], tuple[int, str]]:
            return {(int(t.get_attribute("data-row")), int(t.get_attribute("data-col"))):
                    (int(t.get_attribute("data-image")), t.get_attribute("data-p"))
                    for t in tiles.all()}

        def assert_probabilities(label: str) -> None:
            cells = shown()
            assert set(cells) == set(records)
            for cell, (image_id, p) in cells.items():
                record = records[cell]
                assert image_id == record.image_id
                expected = record.image.prediction.probabilities[label]
                # data-p: the probability with 3 decimals (JavaScript's toFixed(3))
                assert re.fullmatch(r"\d\.\d{3}", p), (cell, p)
                assert abs(float(p) - expected) <= 0.0005 + 1e-9, (label, cell, p, expected)

        select = page.locator("#overlay-label")
        first = select.input_value()
        assert first
        assert_probabilities(first)
        labels = select.locator("option").evaluate_all("(os) => os.map((o) => o.value)")
        other = next(name for name in labels if name != first)
        select.select_option(other)
        expect(page.locator("#legend-label")).to_have_text(other)
        expect(page.locator("#download-probabilities")).to_have_attribute(
            "href", f"/api/scenes/{scene.pk}/probabilities.tif?label={other}")
        assert_probabilities(other)
        expect(page.locator("#legend .ticks span")).to_have_text(["0", "0.5", "1"])

        # Clicking a label in the counts table colours the tiles by it.
        counts = page.locator("#label-counts tbody tr.pick")
        expect(counts.first).to_be_visible()
        picked = counts.first.get_attribute("data-label")
        counts.first.click()
        assert select.input_value() == picked
        assert_probabilities(picked)
        select.select_option(other)

        # The map: the tiles as interactive Leaflet paths (no basemap configured).
        expect(page.locator("#map.leaflet-container")).to_be_visible()
        expect(page.locator("#map path.leaflet-interactive")).to_have_count(5)
        # coloured like the overview: the same label, the same ramp
        overview_fill = {t.get_attribute("data-image"): t.get_attribute("fill")
                         for t in tiles.all()}
        map_fill = {path.get_attribute("data-image"): path.get_attribute("fill")
                    for path in page.locator("#map path.leaflet-interactive").all()}
        assert map_fill == overview_fill

        page.screenshot(path=screenshot_path(tmp_path, "scene.png"), full_page=True)
        assert not errors, errors

        page.click("#tiles-partial a")
        page.wait_for_url(re.compile(r"/gallery/\?batch=\d+&partial=true$"))
        expect(page.locator("#gallery .tile")).to_have_count(5)
        page.goto(f"{live_server.url}/gallery/?batch={scene.batch_id}")
        expect(page.locator("#gallery .tile")).to_have_count(3)
        page.goto(f"{live_server.url}/scenes/{scene.pk}/")
        tiles = page.locator(".tile")
        expect(tiles).to_have_count(5)

        tile = tiles.first
        image_id = int(tile.get_attribute("data-image"))
        tile.click()
        page.wait_for_url(re.compile(rf"/images/{image_id}/$"))
        assert not errors, errors
    finally:
        context.close()
        connections.close_all()  # as in the test above
        print(f"worker log:\n{worker.log_path.read_text()[-4000:]}")  # shown on failure


def test_review_page_keyboard_flow(browser, live_server, tmp_path):
    """A curator reviews with the keyboard only: toggle a label by its key, accept (the
    image is saved and the next one shown), skip, go back, undo the accept."""
    from django.contrib.auth.models import Group

    from tests.webapp.helpers import predict, upload
    from webapp.models import Image

    curator = User.objects.create_user("reviewer", password=PASSWORD)
    curator.groups.add(Group.objects.get(name="curators"))
    _, items = upload(curator, [(f"r{i}.png", landscape(40 + i, "PNG", 96)) for i in range(3)])
    for n, item in enumerate(items):
        predict(Image.objects.get(pk=item.image_id), ["clear", "primary"], 0.1 + n * 0.1)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.goto(f"{live_server.url}/review/?order=uncertain")
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/review/"))
    expect(page.locator("#position")).to_have_text(re.compile(r"^1 of 3"))
    expect(page.locator("#left")).to_have_text("3 unreviewed images left")
    first = items[0].image_id  # confidence 0.1: the least certain comes first
    water = page.locator("#toggles input[value=water]")
    key = water.get_attribute("data-key")
    expect(water).not_to_be_checked()
    page.keyboard.press(key)
    expect(water).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.locator("#position")).to_have_text(re.compile(r"^2 of 3"))
    expect(page.locator("#left")).to_have_text("2 unreviewed images left")
    image = Image.objects.get(pk=first)
    assert image.reviewed and {il.label.name for il in ImageLabel.objects.filter(
        image=image)} == {"clear", "primary", "water"}
    page.keyboard.press("s")  # skip the second
    expect(page.locator("#position")).to_have_text(re.compile(r"^3 of 3"))
    page.keyboard.press("p")
    expect(page.locator("#position")).to_have_text(re.compile(r"^2 of 3"))
    page.keyboard.press("u")  # undo the accept: the first image's labels come back
    expect(page.locator("#position")).to_have_text(re.compile(r"^1 of 3"))
    expect(water).not_to_be_checked()
    assert {il.label.name for il in ImageLabel.objects.filter(image_id=first)} == \
        {"clear", "primary"}
    assert not Image.objects.get(pk=items[1].image_id).reviewed  # skipped: untouched
    page.screenshot(path=str(screenshot_path(tmp_path, "review.png")))
    assert not js_errors, js_errors
    context.close()


def test_admin_lists_and_result_downloads_under_the_csp(browser, live_server, tmp_path):
    """The admin's list pages (bulk work) raise no Content-Security-Policy error in the
    console, and results come away as files: the gallery's CSV of the current filter and
    the batch page's CSV, with one row per image and the columns people read."""
    import csv

    from django.contrib.auth.models import Group

    from tests.webapp.helpers import predict, upload
    from webapp.models import Image

    curator = User.objects.create_user("bulk", password=PASSWORD, is_staff=True)
    curator.groups.add(Group.objects.get(name="curators"))
    batch, items = upload(curator, [(f"b{i}.png", landscape(60 + i, "PNG", 96))
                                    for i in range(3)])
    for item in items:
        predict(Image.objects.get(pk=item.image_id), ["clear", "primary"], 0.4)
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    try:
        page.goto(f"{live_server.url}/accounts/login/?next=/gallery/")
        page.fill("#id_username", "bulk")
        page.fill("#id_password", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/gallery/$"))
        for path in ("/admin/", "/admin/webapp/image/", "/admin/webapp/reviewqueue/",
                     "/admin/webapp/label/", "/admin/webapp/batch/",
                     "/admin/webapp/modelversion/",
                     f"/admin/webapp/image/{items[0].image_id}/change/"):
            page.goto(f"{live_server.url}{path}")
            expect(page.locator("#content")).to_be_visible()
            if path in ("/admin/webapp/image/", "/admin/webapp/reviewqueue/"):
                expect(page.locator("img.admin-thumb")).to_have_count(3)
        assert not errors, errors

        page.goto(f"{live_server.url}/gallery/?tags=clear")
        with page.expect_download() as gallery_download:
            page.click("#export-csv")
        rows = list(csv.DictReader(open(gallery_download.value.path(), encoding="utf-8")))
        assert sorted(row["filename"] for row in rows) == ["b0.png", "b1.png", "b2.png"]
        assert {row["tags"] for row in rows} == {"clear primary"}
        assert set(rows[0]) >= {"filename", "batch", "tags", "probabilities", "reviewed"}

        page.goto(f"{live_server.url}/batches/{batch.pk}/")
        with page.expect_download() as batch_download:
            page.click("#export-csv")
        assert batch_download.value.suggested_filename.endswith(".csv")
        rows = list(csv.DictReader(open(batch_download.value.path(), encoding="utf-8")))
        assert len(rows) == 3 and {row["batch"] for row in rows} == {str(batch.pk)}
        assert not errors, errors
    finally:
        context.close()
        connections.close_all()
