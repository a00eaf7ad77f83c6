"""Fixtures for the web app: users, API clients, image files of every awkward kind, and a
real Celery worker process on the real Redis (tests/settings.py isolates queue and db)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image as PILImage
from rest_framework.test import APIClient

from webapp.conf import app_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def throttle_cache_breaker_closed(monkeypatch):
    """Each test starts with the throttles trusting their cache again (a test that takes
    the cache down must not switch the throttles off for the next one)."""
    from webapp.api import throttles

    monkeypatch.setattr(throttles, "_cache_down_until", 0.0)


def make_image(kind: str = "jpeg", size: int = 32, seed: int = 0) -> bytes:
    """Bytes of a small synthetic image (or of something that only looks like one)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    pil = PILImage.fromarray(rgb)
    buffer = io.BytesIO()
    if kind == "jpeg":
        pil.save(buffer, "JPEG", quality=90)
    elif kind == "png":
        pil.save(buffer, "PNG")
    elif kind == "cmyk":
        pil.convert("CMYK").save(buffer, "JPEG")
    elif kind == "rgba":
        pil.convert("RGBA").save(buffer, "PNG")
    elif kind == "palette":
        pil.convert("P").save(buffer, "GIF")
    elif kind == "gray16":
        arr = rng.integers(0, 65535, (size, size), dtype=np.uint16)
        PILImage.fromarray(arr).save(buffer, "PNG")
    elif kind == "tiff4":
        pil.convert("RGBA").save(buffer, "TIFF")
    elif kind == "truncated":
        pil.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()[: len(buffer.getvalue()) // 2]
    elif kind == "bomb":  # 100 M pixels in a few KB
        PILImage.new("1", (10_000, 10_000)).save(buffer, "PNG")
    elif kind == "text":
        return b"this is not an image\n"
    elif kind == "empty":
        return b""
    else:
        raise ValueError(kind)
    return buffer.getvalue()


@pytest.fixture
def image_file() -> Callable[..., SimpleUploadedFile]:
    def build(name: str = "chip.jpg", kind: str = "jpeg", seed: int = 0,
              size: int = 32) -> SimpleUploadedFile:
        return SimpleUploadedFile(name, make_image(kind, size, seed))

    return build


@pytest.fixture
def user(db) -> User:
    return User.objects.create_user("analyst", password="pw-analyst-1")


@pytest.fixture
def curator(db) -> User:
    person = User.objects.create_user("curator", password="pw-curator-1")
    person.groups.add(Group.objects.get(name="curators"))
    return User.objects.get(pk=person.pk)  # fresh permission cache


@pytest.fixture
def client(user) -> Client:
    """The browser of a logged-in analyst (reads need a login; see ``anon``)."""
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def anon(db) -> Client:
    """A visitor who is not logged in."""
    return Client()


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def curator_api(curator) -> APIClient:
    client = APIClient()
    client.force_authenticate(curator)
    return client


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker process that sees this test session's database,
    media folder, Redis and queue."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        database_url = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        host = f"{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        database_url = f"postgres://{auth}@{host}/{db['NAME']}"
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "TRAINING_QUEUE": settings.TRAINING_QUEUE,
        "CELERY_VISIBILITY_TIMEOUT": str(
            settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]),
        "PREDICT_CHUNK_SIZE": str(app_settings.PREDICT_CHUNK_SIZE),
        # the heal job (Celery beat inside each worker) on a test's time scale
        "BATCH_STALE_SECONDS": "3",
        "HEAL_INTERVAL_SECONDS": "1",
        "TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "SECRET_KEY": "test-worker",
    })
    env.update(extra or {})
    return env


class WorkerProcess:
    """A real `celery worker` process on the test queue, with its embedded beat (the heal
    job), as `make run` starts it; ``pool``: solo (tasks in the main process) or prefork
    (one child process that the main process replaces when it dies)."""

    def __init__(self, log_path: Path, extra_env: dict[str, str] | None = None,
                 pool: str = "solo", app: str = "webapp", queues: str | None = None) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", pool,
             "--concurrency", "1", "--beat", "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--hostname", self.name,
             *(["--queues", queues] if queues else [])],
            cwd=ROOT, env=worker_env(extra_env), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, as when a machine dies."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def start_worker(tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(pool: str = "solo", app: str = "webapp", queues: str | None = None,
              **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker{len(workers)}.log", extra_env, pool, app,
                               queues)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def worker(start_worker) -> WorkerProcess:
    return start_worker()


def wait_for_batch(batch_id: int, timeout: float = 90):
    """Poll the database until the batch is done (the worker writes progress there)."""
    from webapp.models import Batch

    deadline = time.time() + timeout
    while time.time() < deadline:
        batch = Batch.objects.get(pk=batch_id)
        if batch.status == Batch.Status.DONE:
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} not done after {timeout}s: {batch.status} "
                         f"{batch.done}/{batch.total} failed {batch.failed}")
