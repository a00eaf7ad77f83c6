"""App settings in one place (webapp/conf.py), and settings that write nothing on import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from webapp.conf import DEFAULTS, app_settings

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_settings_writes_nothing(tmp_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env.update(VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="webapp.settings")
    code = "import django; django.setup(); from django.conf import settings; " \
           "print(settings.DATABASES['default']['NAME'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == str(var / "db.sqlite3")
    assert not var.exists()  # no folder, no key file, no database file
    subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    assert (var / "secret_key").exists() and (var / "db.sqlite3").exists()
    assert oct((var / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert oct(var.stat().st_mode & 0o777) == "0o700"


def test_app_settings_read_django_then_the_environment_then_the_defaults(settings,
                                                                         monkeypatch):
    monkeypatch.delenv("MAX_TAG_FILTERS", raising=False)
    assert app_settings.MAX_TAG_FILTERS == DEFAULTS["MAX_TAG_FILTERS"]
    monkeypatch.setenv("MAX_TAG_FILTERS", "7")
    assert app_settings.MAX_TAG_FILTERS == 7
    settings.MAX_TAG_FILTERS = 3
    assert app_settings.MAX_TAG_FILTERS == 3
    monkeypatch.setenv("PUBLIC_READS", "yes")
    monkeypatch.setenv("SCENE_RGB_BANDS", "3,2,1")
    monkeypatch.setenv("WORKER_CHUNK_PAUSE", "0.25")
    assert app_settings.PUBLIC_READS is True
    assert app_settings.SCENE_RGB_BANDS == (3, 2, 1)
    assert app_settings.WORKER_CHUNK_PAUSE == 0.25
    monkeypatch.delenv("SCENE_MIN_SIDE", raising=False)
    settings.SCENE_TILE_SIZE = 100
    assert app_settings.SCENE_MIN_SIDE == 200  # follows the tile size unless set
    with pytest.raises(AttributeError):
        app_settings.NO_SUCH_SETTING  # noqa: B018 - a typo fails loudly


def test_the_app_reads_its_settings_only_through_conf():
    """A name in DEFAULTS read as django.conf.settings.X would skip the defaults."""
    names = "|".join(DEFAULTS)
    pattern = re.compile(rf"(?<![\w.])settings\.({names})\b")
    offenders = [f"{path.relative_to(ROOT)}: {match.group(0)}"
                 for path in (ROOT / "webapp").rglob("*.py")
                 if path.name not in ("settings.py", "conf.py")
                 for match in pattern.finditer(path.read_text())]
    assert offenders == []


def test_an_unknown_partial_tile_view_stops_the_start(settings):
    """A typo in PARTIAL_TILE_VIEW would fail every partial tile in the middle of a
    batch; Django's checks (run by migrate, which `make run` starts with, and runserver)
    refuse it."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    call_command("check")
    settings.PARTIAL_TILE_VIEW = "stretch"
    with pytest.raises(SystemCheckError, match="PARTIAL_TILE_VIEW"):
        call_command("check")
