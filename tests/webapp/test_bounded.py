"""Bounded and timed-out everywhere (issue 20): a batch answer pages its items, the
batch page polls counts only, a hung Redis cache costs one short timeout, the HTML
searches are throttled, the schema and docs need the API's read permission, and kept
database connections are health-checked."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.core.cache import caches
from django.test import Client
from rest_framework.test import APIClient

from webapp.models import Batch, BatchItem

pytestmark = pytest.mark.django_db


def _batch_of(user, n: int, failed_every: int = 3) -> Batch:
    batch = Batch.objects.create(owner=user, submitted=True)
    BatchItem.objects.bulk_create([
        BatchItem(batch=batch, position=i, filename=f"f{i}.jpg",
                  status="failed" if i % failed_every == 0 else "queued",
                  error="broken" if i % failed_every == 0 else "")
        for i in range(n)])
    return batch


def test_a_batch_answer_pages_its_items(api, user):
    batch = _batch_of(user, 1201)
    url = f"/api/batches/{batch.pk}/"
    seen, pages = [], 0
    while url:
        body = api.get(url).json()
        assert len(body["images"]) <= 500
        seen += [item["position"] for item in body["images"]]
        url, pages = body["images_next"], pages + 1
    assert pages == 3 and seen == list(range(1201))
    counts = api.get(f"/api/batches/{batch.pk}/?fields=counts").json()
    assert counts["images"] == [] and counts["images_next"] is None
    failed = api.get(f"/api/batches/{batch.pk}/?images_status=failed").json()
    assert {i["status"] for i in failed["images"]} == {"failed"}
    assert [i["position"] for i in failed["images"]][:3] == [0, 3, 6]
    assert api.get(f"/api/batches/{batch.pk}/?images_status=lost").status_code == 400


def test_the_batch_page_polls_counts_only():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "static/webapp/batch.js").read_text()
    assert '"?fields=counts"' in script and '"?images_status=failed"' in script


def test_schema_and_docs_need_the_apis_read_permission(api, settings):
    anonymous = APIClient()
    assert anonymous.get("/api/schema/").status_code in (401, 403)
    assert anonymous.get("/api/docs/").status_code in (401, 403)
    assert api.get("/api/schema/").status_code == 200
    assert api.get("/api/docs/").status_code == 200
    settings.PUBLIC_READS = True
    assert anonymous.get("/api/schema/").status_code == 200


def test_kept_database_connections_are_health_checked():
    from webapp import settings as app_settings

    assert app_settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


class HungServer:
    """Accepts connections and never answers (a hung Redis, not a stopped one)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self.running = True
        self.server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.running = False
        for conn in self.held:
            conn.close()
        self.server.close()


def test_a_hung_redis_cache_costs_one_short_timeout(api, settings):
    from webapp import settings as app_settings

    hung = HungServer()
    try:
        production = app_settings.CACHES["default"]
        settings.CACHES = {"default": {**production,
                                       "LOCATION": f"redis://127.0.0.1:{hung.port}/0"}}
        caches["default"].close() if hasattr(caches["default"], "close") else None
        started = time.monotonic()
        first = api.get("/api/labels/")
        first_took = time.monotonic() - started
        started = time.monotonic()
        codes = [api.get("/api/labels/").status_code for _ in range(5)]
        rest_took = time.monotonic() - started
    finally:
        hung.close()
    assert first.status_code == 200 and codes == [200] * 5
    assert 0.5 < first_took < 5  # it met the hung cache: one socket timeout (1 s)
    assert rest_took < first_took  # the throttles skip the hung cache for a while


def test_html_searches_and_tag_filters_are_throttled(user, settings, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    caches["default"].clear()
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES",
                        {**ScopedRateThrottle.THROTTLE_RATES, "gallery_search": "3/minute"})
    browser = Client()
    browser.force_login(user)
    codes = [browser.get("/gallery/", {"tags": "water"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    blocked = browser.get("/gallery/", {"q": "river"})
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) >= 1
    assert browser.get("/gallery/").status_code == 200  # plain browsing is not counted


def test_a_hung_broker_costs_a_send_about_a_second(tmp_path):
    """A process configured like a web server, its REDIS_URL a Redis that accepts and
    never answers: queueing a batch gives up within the socket timeout (logged; the heal
    job sends it again later) instead of holding the request."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    hung = HungServer()
    code = ("import time, django\ndjango.setup()\nfrom webapp.services import jobs\n"
            "t = time.monotonic(); ok = jobs._send('webapp.tasks.predict_batch', 1)\n"
            "print(ok, time.monotonic() - t)\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "SECRET_KEY": "x",
           "REDIS_URL": f"redis://127.0.0.1:{hung.port}/0", "VAR_DIR": str(tmp_path)}
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    finally:
        hung.close()
    sent, seconds = out.stdout.split()[-2:]
    assert sent == "False" and float(seconds) < 3.5, out.stdout + out.stderr[-2000:]
