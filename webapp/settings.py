"""Settings, all overridable from the environment (twelve-factor style).

`make run` leaves everything at its embedded default (DEBUG off, SQLite under
var/, an embedded Redis, the shipped model). Production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS, MEDIA_ROOT; see README "Production".
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

import imagery.gdal_env  # noqa: F401 - GDAL confined before any module loads rasterio
from webapp import conf

BASE_DIR = conf.BASE_DIR
# var/ (private): the embedded database, the secret key, uploads. Created by manage.py,
# the WSGI entry point and the Celery app (conf.prepare_var_dir), never by this import.
VAR_DIR = conf.var_dir()


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


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = conf.secret_key()
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
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT compilation: it is made for long analytic queries. On this app's page
    # queries (a million images make their cost estimates large) compiling took 40-270
    # ms of queries that run in 10-300 ms (bench/bench_scale.py). Kept options from
    # DATABASE_URL (?options=...) come after these; a later -c wins, so one can change them.
    # Random reads priced as on SSDs or a cached database (PostgreSQL's default, 4,
    # prices spinning disks): the planner then reads a tag's capped count from the
    # covering gallery index (10 ms at 1M) instead of scanning the table (25-32 ms).
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = ("-c jit=off -c random_page_cost=1.1 "
                          + options.get("options", "")).strip()

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
# Password reset needs mail: offered only when an SMTP host is configured.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")

# The app's own settings (limits, quotas, model, scenes, search, healing) are in
# webapp/conf.py (DEFAULTS, each overridable by an environment variable of its name).
DATA_UPLOAD_MAX_NUMBER_FILES = conf.from_environment("MAX_FILES_PER_REQUEST")
FILE_UPLOAD_HANDLERS = [
    "webapp.services.upload_limits.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

_basemap_url = conf.from_environment("SCENE_BASEMAP_URL")
if _basemap_url:  # the scene page's map background: its origin joins img-src
    from urllib.parse import urlsplit

    _basemap = urlsplit(_basemap_url.replace("{s}", "*"))
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"].append(
        f"{_basemap.scheme}://{_basemap.netloc}")

_heal_every = conf.from_environment("HEAL_INTERVAL_SECONDS")
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
    "heal-queue": {"task": "webapp.tasks.heal_queue", "schedule": _heal_every,
                   "options": {"expires": _heal_every}},
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
    "NUM_PROXIES": conf.from_environment("NUM_PROXIES"),
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
    # "status" names several choice sets: each gets its own stable component name
    "ENUM_NAME_OVERRIDES": {
        "LongWorkStatusEnum": [(s, s) for s in ("queued", "running", "done", "failed",
                                                "cancelled")],
        "ImageStatusEnum": [("pending", "waiting for a worker"), ("ready", "predicted"),
                            ("broken", "cannot be decoded")]},
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
