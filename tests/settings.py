"""Settings for the test suite: webapp.settings with isolated media, queue and Redis db.

The database comes from DATABASE_URL as in production (SQLite by default; `make
test-postgres` points it at PostgreSQL); pytest-django creates the test database.
"""

import os
import tempfile
import uuid
from pathlib import Path

from webapp.conf import prepare_var_dir
from webapp.settings import *  # noqa: F403
from webapp.settings import REST_FRAMEWORK

prepare_var_dir()  # the SQLite test database lives in var/

MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="webapp-test-media-"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = f"test-{uuid.uuid4().hex[:10]}"
TRAINING_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}-training"
# A killed worker's task comes back after this many seconds (production: one hour).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PREDICT_CHUNK_SIZE = 4
# The conftest's "bomb" (a 10,000 x 10,000 PNG) is over this: scenes too have a limit.
MAX_SCENE_PIXELS = 60_000_000
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
    "anon": "1000/minute", "user": "10000/minute", "uploads": "10000/minute",
    "image_search": "10000/minute", "gallery_search": "10000/minute"}}
# Each test process keeps its own counters (production: the shared Redis cache).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SEARCH_SYNC_SECONDS = 0.0  # every search sees the codes committed before it
