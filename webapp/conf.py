"""The app's own settings in one place: ``DEFAULTS``, read through ``app_settings``.

Each name is read, in this order, from Django's settings (so a test's ``settings``
fixture, ``override_settings`` or a settings module can set it), from the environment
variable of the same name (parsed as the default's type), else the default here. Django's
and its packages' own settings (databases, Celery, DRF, CSP) stay in ``webapp.settings``.

This module imports nothing from Django at import time and writes nothing: the
settings module reads it too. ``prepare_var_dir`` makes the private ``var/`` folder (the
embedded SQLite database, the generated secret key, collected static files); ``manage.py``,
the WSGI entry point and the Celery app call it before Django starts, never an import.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    # Uploads. Files above 2.5 MB go to temporary files; every file passes the size limit
    # handler first, so an oversize file fails alone instead of failing the request.
    "MAX_UPLOAD_BYTES": 50 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 40_000_000,
    "MAX_FILES_PER_REQUEST": 1000,
    # Quotas per user: files in one batch, bytes of new images stored per 24 hours, and
    # decoded pixels (the work an upload causes: tiles cut, stored and tagged, whatever
    # its compressed size) per batch and per 24 hours.
    "MAX_FILES_PER_BATCH": 2000,
    "MAX_UPLOAD_BYTES_PER_DAY": 5 * 1024**3,
    "MAX_PIXELS_PER_BATCH": 4_000_000_000,
    "MAX_PIXELS_PER_DAY": 12_000_000_000,
    # Reads (gallery, image pages, read API, search) need a login unless PUBLIC_READS=1;
    # originals and batches are never public (webapp.services.access).
    "PUBLIC_READS": False,
    "MAX_TAG_FILTERS": 50,  # tag names in one gallery/API filter
    # Proxies in front of the web processes whose X-Forwarded-For is trusted; 0: none,
    # the client is the connection's peer (throttles and login limits alike).
    "NUM_PROXIES": 0,
    # Recognition: a `python -m classifier assemble` directory ('default' = shipped).
    "CLASSIFIER_MODEL": "default",
    "CLASSIFIER_DEVICE": "auto",
    # Images per forward pass (one chunk = one pass per network); a chunk also stops
    # growing once its images hold PREDICT_CHUNK_PIXELS pixels as uploaded, so chunks of
    # very large images stay short (a worker renews its lease between chunks).
    "PREDICT_CHUNK_SIZE": 64,
    "PREDICT_CHUNK_PIXELS": 200_000_000,
    "TORCH_THREADS": 0,
    # Threads for the per-image work around the forward pass (decoding, display copies,
    # chip files); 0: one per core (webapp/services/threads.py).
    "WORKER_THREADS": 0,
    "DISPLAY_SIZE": 256,
    # Whole scenes (imagery.rasters, webapp.services.scenes): any georeferenced GeoTIFF,
    # and any image whose longer side exceeds SCENE_MIN_SIDE px (default: two tiles), is
    # cut into tiles of SCENE_TILE_SIZE px (the model's footprint: a Planet chip),
    # SCENE_TILE_OVERLAP px shared by neighbours; partial edge tiles are padded with
    # black ("pad") or dropped ("drop"). Scenes are read in windows, so their limits are
    # far above a chip's.
    "SCENE_TILE_SIZE": 256,
    "SCENE_TILE_OVERLAP": 0,
    "SCENE_EDGE": "pad",
    "SCENE_MIN_SIDE": None,
    # 1-based bands shown as red, green, blue, e.g. "3,2,1"; empty: the file's colour
    # interpretation or band names, else Planet's analytic order B,G,R,NIR (-> 3,2,1).
    "SCENE_RGB_BANDS": (),
    # How tile chips are stored (both lossless): "PNG" (zlib level 1: 20-120 KB a 256 px
    # chip, 4-11 ms to encode on the worker's threads) or "TIFF" (uncompressed: 192 KB,
    # 0.5-1 ms). PNG by default: a small compressed scene must not become gigabytes.
    "SCENE_CHIP_FORMAT": "PNG",
    "MAX_SCENE_PIXELS": 1_000_000_000,
    "MAX_SCENE_BYTES": 2 * 1024**3,
    # A tile row is held while it is cut: its chips follow the scene's width, so no side
    # of a scene may pass this (65,536 px: 256 chips a row).
    "MAX_SCENE_SIDE": 65_536,
    "SCENE_PREVIEW_SIZE": 1024,  # overview's longer side, px
    # Tiles with less data than this (a padded edge of a scene) are hidden from the gallery
    # and search unless asked for (?partial=true); they are still tagged and exported.
    "MIN_TILE_COVERAGE": 0.5,
    # What the model sees of a partial tile (imagery.partial.VIEWS): "mirror" (its data
    # reflected over the padding) scored F2 0.874 against 0.795 for the padded tile on
    # validation chips cut as scene edges (python -m experiments.partial_tiles).
    "PARTIAL_TILE_VIEW": "mirror",
    # Map background of the scene page, e.g. "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    # (its origin is added to the CSP). Empty (the default): no background, works offline.
    "SCENE_BASEMAP_URL": "",
    "SCENE_BASEMAP_ATTRIBUTION": "",
    # Cross-modal search: a `python -m retrieval train` directory ('default' = shipped).
    "RETRIEVAL_MODEL": "default",
    "RETRIEVAL_BITS": 0,  # 0: the model's longest codes
    # A process's search indexes read the codes changed since their last version at most
    # every SEARCH_SYNC_SECONDS, re-reading SEARCH_SYNC_OVERLAP seconds of earlier changes
    # (transactions that committed late).
    "SEARCH_SYNC_SECONDS": 0.5,
    "SEARCH_SYNC_OVERLAP": 5.0,
    "SEARCH_THREADS": 1,  # faiss threads per web process
    # Load the search model and the collection's index when the WSGI app loads (with
    # gunicorn.conf.py's preload_app: once, in the master, shared by every worker),
    # instead of in each process's first search (webapp.services.search.preload).
    "SEARCH_PRELOAD": True,
    # Seconds a worker sleeps between chunks: leaves CPU to the web server on a shared box.
    "WORKER_CHUNK_PAUSE": 0.0,
    # Long work heals itself: work whose worker has shown no sign of life (and that no
    # message was sent for) for BATCH_STALE_SECONDS is sent again by the heal job, which
    # Celery beat runs every HEAL_INTERVAL_SECONDS inside every worker.
    "BATCH_STALE_SECONDS": 120.0,
    "HEAL_INTERVAL_SECONDS": 30.0,
    # The frozen evaluation set (webapp.services.splits): this share of images, chosen by
    # content hash, is never trained on; models are compared on it.
    "EVALUATION_FRACTION": 0.15,
    # Reviewed positives in the train set a label needs before a training takes it.
    "MIN_LABEL_POSITIVES": 10,
    # Training jobs (webapp.services.trainings): their Celery queue, run folders (under
    # var/ by default), CPU threads (1 of 2 cores leaves the other to tagging), device
    # ("cpu", "cuda"), default and largest epochs budget per network, images per step.
    "TRAINING_QUEUE": "training",
    "TRAINING_DIR": "",
    "TRAINING_THREADS": 1,
    "TRAINING_DEVICE": "cpu",
    "TRAINING_EPOCHS": 4,
    "TRAINING_MAX_EPOCHS": 50,
    "TRAINING_MIN_IMAGES": 10,
    # Images per re-tagging chunk (one transaction, one forward pass).
    "RETAG_CHUNK_SIZE": 64,
    # Password reset needs mail: offered only when an SMTP host is configured (None: on
    # when EMAIL_HOST is set).
    "PASSWORD_RESET": None,
}


def _derived(name: str, read) -> Any:
    """Defaults that follow another setting."""
    if name == "SCENE_MIN_SIDE":
        return 2 * read("SCENE_TILE_SIZE")
    if name == "PASSWORD_RESET":
        return bool(os.environ.get("EMAIL_HOST", ""))
    raise KeyError(name)


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool) or name == "PASSWORD_RESET":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int) or name == "SCENE_MIN_SIDE":
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return tuple(int(part) for part in raw.split(",") if part.strip())
    return raw


def from_environment(name: str) -> Any:
    """A setting from the environment, else its default (no Django involved)."""
    default = DEFAULTS[name]
    raw = os.environ.get(name)
    if raw not in (None, ""):
        return _parse(name, raw, default)
    if default is None:
        return _derived(name, from_environment)
    if isinstance(default, tuple) and raw == "":
        return ()
    return default


class AppSettings:
    """Attribute access to the app's settings: Django's settings first, then the
    environment, then ``DEFAULTS``. Unknown names are an AttributeError (a typo fails)."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"no app setting {name!r} (see webapp.conf.DEFAULTS)")
        from django.conf import settings

        if hasattr(settings, name):
            return getattr(settings, name)
        if DEFAULTS[name] is None and os.environ.get(name) in (None, ""):
            if name == "PASSWORD_RESET":
                return bool(getattr(settings, "EMAIL_HOST", ""))
            return _derived(name, lambda other: getattr(self, other))
        return from_environment(name)


app_settings = AppSettings()


def var_dir() -> Path:
    return Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def prepare_var_dir() -> Path:
    """Create the private var/ folder and what the embedded defaults keep there: the
    secret key (unless SECRET_KEY is set) and an empty SQLite file made private before
    SQLite opens it (its -wal and -shm files copy the mode). Idempotent."""
    var = var_dir()
    # var/ holds the database (password hashes, tokens), the secret key and uploads
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = var / "secret_key"
    if not os.environ.get("SECRET_KEY") and not key.exists():
        try:
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
    if not os.environ.get("DATABASE_URL"):
        database = var / "db.sqlite3"
        if not database.exists():
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    Path(os.environ.get("STATIC_ROOT", var / "static")).mkdir(parents=True, exist_ok=True)
    return var


def secret_key() -> str:
    """SECRET_KEY from the environment, else the one kept in var/ (``prepare_var_dir``);
    a process started without either (a tool importing the settings) gets a random key
    of its own: what it signs is valid only in that process."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = var_dir() / "secret_key"
    if path.exists():
        return path.read_text().strip()
    return "unprepared-" + secrets.token_urlsafe(50)
