"""End to end in headless Chromium: log in, upload several images including a broken one,
watch the waiting animation and the progress, land on the gallery with the model's tags,
and see the broken file's error.

Needs Debian's chromium at /usr/bin/chromium (CI installs it; Playwright's own browsers
are never downloaded), Redis, and a real Celery worker (tests/webapp/conftest.py). Where
chromium is missing the test fails, or is skipped when E2E_OPTIONAL=1. With
SAVE_SCREENSHOTS=1 the screenshots go to docs/ (for the README), else to tmp_path.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connections
from PIL import Image as PILImage
from playwright.sync_api import Browser, expect, sync_playwright

from tests.webapp.conftest import ROOT, make_image
from webapp.models import Batch, ImageLabel

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "pw-e2e-uploader-1"
N_VALID = 6  # two chunks of PREDICT_CHUNK_SIZE=4, so the progress has a middle


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
    for seed in range(N_VALID):
        jpeg = seed % 2 == 0
        valid[f"scene{seed}.{'jpg' if jpeg else 'png'}"] = landscape(
            seed, "JPEG" if jpeg else "PNG")
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
            assert chips == sorted(ImageLabel.objects.filter(image_id=image_id)
                                   .values_list("label__name", flat=True))
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
    finally:
        context.close()
        # ORM calls made while Playwright's event loop runs get their own connection
        # (Django keeps connections per async context); close it here, or PostgreSQL
        # refuses to drop the test database while it is still open.
        connections.close_all()
        print(f"worker log:\n{worker.log_path.read_text()[-4000:]}")  # shown on failure
