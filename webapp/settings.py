"""Settings, all overridable from the environment (twelve-factor style).

`make run` sets DEBUG=1 and leaves everything else at its embedded default (SQLite under
var/, an embedded Redis, the shipped model). Production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS, MEDIA_ROOT; see README "Production".
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

import imagery.gdal_env  # noqa: F401 - GDAL confined before any module loads rasterio

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
# var/ holds the database (password hashes, tokens), the secret key and uploads: private.
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/.

    Several web machines must share one key: set SECRET_KEY there.
    """
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = VAR_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS",
                                "http://127.0.0.1:8000,http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "webapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL names another (postgres://...).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        # a kept connection is checked before each request reuses it: a restarted
        # PostgreSQL costs a reconnect, not a 500 per thread
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker write at the same time: WAL, a busy timeout and immediate
    # transactions turn "database is locked" into a short wait.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that a Celery worker process can see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # Created private before SQLite opens it (its -wal and -shm files copy the mode).
    _name = str(DATABASES["default"]["NAME"])
    if _name != ":memory:" and not os.path.exists(_name):
        os.close(os.open(_name, os.O_WRONLY | os.O_CREAT, 0o600))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "upload"
LOGOUT_REDIRECT_URL = "gallery"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve straight from the app dirs when collectstatic was not run

MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Nothing is served from MEDIA_URL (no URL maps it): stored files reach browsers only
# through webapp.views.image_file and scene_preview, after the access check, with the
# content type of their detected format.
MEDIA_URL = "/files/"

# Security headers; HTTPS-only cookies and HSTS when served over TLS.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the proxy's health check speaks plain HTTP
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
# Content-Security-Policy (django-csp): everything from this origin, no inline script or
# style, no framing; served files get a stricter policy of their own (webapp.views).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Login limiting (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user
# name, or from one client address, further logins are refused (429) for the cool-off.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend",
                           "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "webapp.services.access.client_ip"
# Proxies in front of the web processes whose X-Forwarded-For is trusted; 0: none, the
# client is the connection's peer (throttles and login limits alike).
NUM_PROXIES = env_int("NUM_PROXIES", 0)
# Password reset needs mail: offered only when an SMTP host is configured.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
PASSWORD_RESET = bool(EMAIL_HOST)

# Uploads: files above 2.5 MB go to temporary files; every file passes the size limit
# handler first, so an oversize file fails alone instead of failing the request.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000)
MAX_FILES_PER_REQUEST = env_int("MAX_FILES_PER_REQUEST", 1000)
# Quotas per user: files in one batch, and bytes of new images stored per 24 hours.
MAX_FILES_PER_BATCH = env_int("MAX_FILES_PER_BATCH", 2000)
MAX_UPLOAD_BYTES_PER_DAY = env_int("MAX_UPLOAD_BYTES_PER_DAY", 5 * 1024**3)
# Decoded pixels bound the work an upload causes (tiles cut, stored and tagged), whatever
# its compressed size: per batch and per user over the last 24 hours.
MAX_PIXELS_PER_BATCH = env_int("MAX_PIXELS_PER_BATCH", 4_000_000_000)
MAX_PIXELS_PER_DAY = env_int("MAX_PIXELS_PER_DAY", 12_000_000_000)
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_REQUEST
FILE_UPLOAD_HANDLERS = [
    "webapp.services.upload_limits.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# Reads (gallery, image pages, read API, search) need a login unless PUBLIC_READS=1;
# originals and batches are never public (webapp.services.access).
PUBLIC_READS = env_bool("PUBLIC_READS", False)
MAX_TAG_FILTERS = env_int("MAX_TAG_FILTERS", 50)  # tag names in one gallery/API filter

# Recognition.
CLASSIFIER_MODEL = os.environ.get("CLASSIFIER_MODEL", "default")
CLASSIFIER_DEVICE = os.environ.get("CLASSIFIER_DEVICE", "auto")
# Images per forward pass (one chunk = one pass per network); a chunk also stops growing
# once its images hold PREDICT_CHUNK_PIXELS pixels as uploaded, so chunks of very large
# images stay short (a worker renews its lease between chunks).
PREDICT_CHUNK_SIZE = env_int("PREDICT_CHUNK_SIZE", 64)
PREDICT_CHUNK_PIXELS = env_int("PREDICT_CHUNK_PIXELS", 200_000_000)
TORCH_THREADS = env_int("TORCH_THREADS", 0)
# Threads for the per-image work around the forward pass (decoding, display copies,
# chip files); 0: one per core (webapp/services/threads.py).
WORKER_THREADS = env_int("WORKER_THREADS", 0)
DISPLAY_SIZE = env_int("DISPLAY_SIZE", 256)
# Whole scenes (classifier.scenes, webapp.services.scenes): any georeferenced GeoTIFF,
# and any image whose longer side exceeds SCENE_MIN_SIDE px, is cut into tiles of
# SCENE_TILE_SIZE px (the model's footprint: a Planet chip), SCENE_TILE_OVERLAP px shared
# by neighbours; partial edge tiles are padded with black ("pad") or dropped ("drop").
# Scenes are read in windows, so their limits are far above a chip's.
SCENE_TILE_SIZE = env_int("SCENE_TILE_SIZE", 256)
SCENE_TILE_OVERLAP = env_int("SCENE_TILE_OVERLAP", 0)
SCENE_EDGE = os.environ.get("SCENE_EDGE", "pad")
SCENE_MIN_SIDE = env_int("SCENE_MIN_SIDE", 2 * SCENE_TILE_SIZE)
# 1-based bands shown as red, green, blue, e.g. "3,2,1"; empty: the file's colour
# interpretation or band names, else Planet's analytic order B,G,R,NIR (-> 3,2,1).
SCENE_RGB_BANDS = tuple(int(b) for b in os.environ.get("SCENE_RGB_BANDS", "").split(",")
                        if b.strip())
# How tile chips are stored (both lossless): "PNG" (zlib level 1: 20-120 KB a 256 px chip,
# 4-11 ms to encode on the worker's threads) or "TIFF" (uncompressed: 192 KB, 0.5-1 ms).
# PNG by default: a small compressed scene must not become gigabytes of chips.
SCENE_CHIP_FORMAT = os.environ.get("SCENE_CHIP_FORMAT", "PNG")
MAX_SCENE_PIXELS = env_int("MAX_SCENE_PIXELS", 1_000_000_000)
MAX_SCENE_BYTES = env_int("MAX_SCENE_BYTES", 2 * 1024**3)
# A tile row is held while it is cut: its chips follow the scene's width, so no side of a
# scene may pass this (65,536 px: 256 chips a row).
MAX_SCENE_SIDE = env_int("MAX_SCENE_SIDE", 65_536)
SCENE_PREVIEW_SIZE = env_int("SCENE_PREVIEW_SIZE", 1024)  # overview's longer side, px
# Map background of the scene page, e.g. "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
# (its origin is added to the CSP). Empty (the default): no background, works offline.
SCENE_BASEMAP_URL = os.environ.get("SCENE_BASEMAP_URL", "")
SCENE_BASEMAP_ATTRIBUTION = os.environ.get("SCENE_BASEMAP_ATTRIBUTION", "")
if SCENE_BASEMAP_URL:
    from urllib.parse import urlsplit

    _basemap = urlsplit(SCENE_BASEMAP_URL.replace("{s}", "*"))
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"].append(
        f"{_basemap.scheme}://{_basemap.netloc}")

# Cross-modal search: a `python -m retrieval train` directory ('default' = shipped).
RETRIEVAL_MODEL = os.environ.get("RETRIEVAL_MODEL", "default")
RETRIEVAL_BITS = env_int("RETRIEVAL_BITS", 0)  # 0: the model's longest codes
# A process's search indexes read the codes changed since their last version at most
# every SEARCH_SYNC_SECONDS, re-reading SEARCH_SYNC_OVERLAP seconds of earlier changes
# (transactions that committed late; clock skew between machines).
SEARCH_SYNC_SECONDS = float(os.environ.get("SEARCH_SYNC_SECONDS", "0.5"))
SEARCH_SYNC_OVERLAP = float(os.environ.get("SEARCH_SYNC_OVERLAP", "5"))
SEARCH_THREADS = env_int("SEARCH_THREADS", 1)  # faiss threads per web process
# Seconds a worker sleeps between chunks: leaves CPU to the web server on a shared box.
WORKER_CHUNK_PAUSE = float(os.environ.get("WORKER_CHUNK_PAUSE", "0"))
# Self-healing queue: a batch whose worker has shown no sign of life (and that no message
# was sent for) for BATCH_STALE_SECONDS is sent again by the heal job, which Celery beat
# runs every HEAL_INTERVAL_SECONDS inside every worker (`celery worker --beat`).
BATCH_STALE_SECONDS = float(os.environ.get("BATCH_STALE_SECONDS", "120"))
HEAL_INTERVAL_SECONDS = float(os.environ.get("HEAL_INTERVAL_SECONDS", "30"))
# Celery on Redis. Tasks are acknowledged after they finish, so a killed worker's batch
# is delivered again (after the visibility timeout) and finished by another worker.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "webapp")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    # a hung (not down) Redis must not hold a web request: bounded connects and reads
    "socket_connect_timeout": float(os.environ.get("REDIS_CONNECT_TIMEOUT", "1")),
    "socket_timeout": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "1")),
}
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("REDIS_CONNECT_TIMEOUT", "1"))
# A message that cannot be sent at once is not retried in the request: the heal job
# sends the batch again once it is stale (webapp.services.healing).
CELERY_TASK_PUBLISH_RETRY = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A broker connection loss (Redis restart) lets a running batch finish: its progress is in
# the database and the heal job re-sends whatever the broker lost.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Beat keeps its schedule in memory: the only periodic job is the heal job, every worker
# may run it (it claims each batch it resends in the database), and nothing is lost when a
# worker or Redis restarts.
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"
CELERY_BEAT_SCHEDULE = {
    "heal-queue": {"task": "webapp.tasks.heal_queue", "schedule": HEAL_INTERVAL_SECONDS,
                   "options": {"expires": HEAL_INTERVAL_SECONDS}},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["webapp.api.permissions.ReadAccess"],
    "DEFAULT_PAGINATION_CLASS": "webapp.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "webapp.api.throttles.AnonThrottle",
        "webapp.api.throttles.UserThrottle",
    ],
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("THROTTLE_ANON", "120/minute"),
        "user": os.environ.get("THROTTLE_USER", "2000/minute"),
        "uploads": os.environ.get("THROTTLE_UPLOADS", "600/minute"),
        "image_search": os.environ.get("THROTTLE_IMAGE_SEARCH", "30/minute"),
        # HTML gallery pages that search (q, similar) or filter by tags
        "gallery_search": os.environ.get("THROTTLE_GALLERY_SEARCH", "120/minute"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Satellite image tagging API",
    "DESCRIPTION": "Batch uploads, predicted and curated tags, labels and model versions.",
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # the schema and the docs are read like the API: a login unless PUBLIC_READS is on
    "SERVE_PERMISSIONS": ["webapp.api.permissions.ReadAccess"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "webapp.api.schema.document_errors"],
}

def _cache_location(url: str) -> str:
    """Kombu's redis+socket:// (the embedded Redis of `make run`) as redis-py's unix://."""
    return "unix://" + url[len("redis+socket://"):] if url.startswith("redis+socket://") else url


# Shared by every web process: throttle counters (and anything else cached) live in Redis.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": _cache_location(REDIS_URL), "KEY_PREFIX": "webapp",
                      "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "faiss": {"level": "WARNING"}},
}
