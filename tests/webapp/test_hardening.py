"""Hardening: CSP, throttles that trust only real proxies and are shared, login limits,
no password reset without mail, HTTPS redirect and HSTS, a private var/ folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle

from webapp.services.curation import set_labels

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def _settings_of(env: dict[str, str], code: str) -> dict:
    """Run ``code`` (which prints JSON) with webapp.settings loaded from ``env``."""
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", **env}
    script = "import django, json; django.setup(); from django.conf import settings; " + code
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=full, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_pages_send_a_strict_content_security_policy(client):
    policy = client.get("/gallery/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'self'" in client.get("/api/docs/")["Content-Security-Policy"]


@pytest.fixture
def tight_anon_limit(monkeypatch, settings):
    settings.PUBLIC_READS = True
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "3/minute"})
    cache.clear()
    yield
    cache.clear()


def test_a_new_forwarded_for_on_each_request_does_not_reset_the_limit(tight_anon_limit):
    anonymous = APIClient()
    codes = [anonymous.get("/api/labels/", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
             for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_behind_a_trusted_proxy_clients_are_told_apart_by_its_header(tight_anon_limit,
                                                                     settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    anonymous = APIClient()
    codes = [anonymous.get("/api/labels/", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
             for i in range(5)]
    assert codes == [200] * 5


def test_a_throttle_lets_requests_through_when_its_cache_is_down(tight_anon_limit,
                                                                monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "get", down)
    assert [APIClient().get("/api/labels/").status_code for _ in range(5)] == [200] * 5


def test_throttle_counters_live_in_the_shared_redis_cache(settings):
    """Two processes configured like two gunicorn workers see one counter."""
    env = {"REDIS_URL": settings.CELERY_BROKER_URL, "SECRET_KEY": "x"}
    key = f"shared-{os.getpid()}"
    first = _settings_of(env, "from django.core.cache import cache; "
                              f"cache.set('{key}', 7, 600); "
                              "print(json.dumps(settings.CACHES['default']['BACKEND']))")
    assert first.endswith("RedisCache")
    second = _settings_of(env, f"from django.core.cache import cache; "
                               f"print(json.dumps(cache.get('{key}')))")
    assert second == 7


def test_login_is_refused_after_repeated_failures_whatever_the_forwarded_header(user):
    browser = Client()
    codes = [browser.post("/accounts/login/", {"username": "analyst", "password": "no"},
                          HTTP_X_FORWARDED_FOR=f"10.1.0.{i}").status_code for i in range(5)]
    assert codes == [200, 200, 200, 200, 429]  # the form with its error, then refused
    locked = browser.post("/accounts/login/", {"username": "analyst",
                                               "password": "pw-analyst-1"})
    assert locked.status_code == 429
    User.objects.create_user("other", password="pw-other-1")
    from_same_client = Client().post("/accounts/login/", {"username": "other",
                                                          "password": "pw-other-1"})
    assert from_same_client.status_code == 429  # the client is locked out too


def test_password_reset_is_not_offered_without_mail(client):
    assert client.get("/accounts/password_reset/").status_code == 404
    assert "password_reset" not in client.get("/accounts/login/").content.decode()


def test_https_redirects_and_keeps_hsts_for_a_year():
    values = _settings_of({"HTTPS": "1", "SECRET_KEY": "x"}, "print(json.dumps(["
                          "settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, "
                          "settings.SESSION_COOKIE_SECURE]))")
    assert values == [True, 365 * 24 * 3600, True]


def test_var_folder_database_and_secret_key_are_private(tmp_path):
    """As manage.py (and `make run`) makes them; importing the settings makes nothing
    (tests/webapp/test_conf.py)."""
    var = tmp_path / "var"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "VAR_DIR": str(var),
           "SECRET_KEY": "", "DATABASE_URL": ""}
    subprocess.run([sys.executable, "manage.py", "shell", "-c",
                    "from django.db import connection; connection.ensure_connection()"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for name in ("db.sqlite3", "secret_key"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name


def test_csrf_trusted_origins_default_to_the_local_server():
    origins = _settings_of({"SECRET_KEY": "x"}, "print(json.dumps(settings.CSRF_TRUSTED_ORIGINS))")
    assert origins == ["http://127.0.0.1:8000", "http://localhost:8000"]


def test_too_many_tag_names_get_a_400_and_a_message(api, client, settings):
    settings.MAX_TAG_FILTERS = 50
    names = ",".join(f"tag{i}" for i in range(1300))
    response = api.get("/api/images/", {"tags": names})
    assert response.status_code == 400
    assert "at most 50" in response.json()["tags"][0]
    page = client.get("/gallery/", {"tags": names})
    assert page.status_code == 400 and "at most 50" in page.content.decode()
    assert api.get("/api/images/", {"tags": ",".join(f"t{i}" for i in range(50))}
                   ).status_code == 200


def test_image_search_checks_the_query_like_an_upload(api, settings):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image as PILImage

    icon = io.BytesIO()
    PILImage.new("RGB", (32, 32)).save(icon, "ICO")
    refused = api.post("/api/search/", {"file": SimpleUploadedFile("q.ico", icon.getvalue())},
                       format="multipart")
    assert refused.status_code == 400
    assert "not an image or GeoTIFF this app reads" in refused.json()["detail"]
    settings.MAX_IMAGE_PIXELS = 1000
    big = io.BytesIO()
    PILImage.new("RGB", (64, 64)).save(big, "PNG")
    too_big = api.post("/api/search/", {"file": SimpleUploadedFile("q.png", big.getvalue())},
                       format="multipart")
    assert too_big.status_code == 400 and "the limit is 1,000" in too_big.json()["detail"]


@pytest.mark.parametrize("page_size", [10, 500])
def test_image_lists_take_the_same_queries_whatever_the_page_size(api, user, curator,
                                                                  page_size,
                                                                  django_assert_max_num_queries):
    from tests.webapp.helpers import predicted_image

    for i in range(12):
        image = predicted_image(user, 600 + i, ["water"])
        set_labels(image, ["water", "road"], curator)  # person-added labels name curators
    with django_assert_max_num_queries(12):
        response = api.get("/api/images/", {"page_size": page_size})
    assert response.status_code == 200 and len(response.json()["results"]) == min(12,
                                                                                  page_size)


def test_files_over_the_batch_quota_fail_alone_with_a_message(api, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.webapp.conftest import make_image
    from webapp.models import Image

    settings.MAX_FILES_PER_BATCH = 3
    payload = [SimpleUploadedFile(f"c{i}.jpg", make_image(seed=700 + i)) for i in range(5)]
    body = api.post("/api/batches/", {"files": payload}, format="multipart").json()
    assert [i["status"] for i in body["images"]] == ["queued"] * 3 + ["failed"] * 2
    assert "limit of 3 files" in body["images"][3]["error"]
    assert Image.objects.count() == 3  # what fitted is stored and queued


def test_new_bytes_over_the_daily_quota_fail_alone_known_images_cost_nothing(api, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.webapp.conftest import make_image

    first, second = make_image(seed=801, size=64), make_image(seed=802, size=64)
    settings.MAX_UPLOAD_BYTES_PER_DAY = len(first) + len(second) // 2
    ok = api.post("/api/batches/", {"files": [SimpleUploadedFile("a.jpg", first)]},
                  format="multipart").json()
    assert ok["images"][0]["status"] == "queued"
    body = api.post("/api/batches/", {"files": [SimpleUploadedFile("b.jpg", second),
                                                SimpleUploadedFile("again.jpg", first)]},
                    format="multipart").json()
    over, known = body["images"]
    assert over["status"] == "failed" and "quota" in over["error"] and "per 24 hours" in over[
        "error"]
    assert known["status"] != "failed"  # already in the archive: stores nothing new
