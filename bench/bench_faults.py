"""The operator's fault scenario in one command: many users upload at once, then a worker
machine is lost and Redis restarts (without persistence) while batches are predicted; the
heal job must finish every batch, and every image must be predicted exactly once.

    python bench/bench_faults.py [--users 50] [--chips 20] [--workers 2]
                                 [--database-url URL|sqlite] [--kill-at 10]
                                 [--redis-restart-at 20] [--window 300]
                                 [--stale SECONDS] [--heal-interval SECONDS] [--keep]
                                 [--smoke]

1. Setup: a temporary directory for VAR_DIR and MEDIA_ROOT; a fresh PostgreSQL database
   ``bench_faults_<random>`` on 127.0.0.1:5432 (user postgres), dropped at the end, unless
   ``--database-url`` names one (it should be empty: every count is over the whole
   database; ``sqlite``: a SQLite file in the temporary directory); a redis-server of its
   own on a free port (no persistence); ``manage.py migrate``; the shipped model
   registered and ``--users`` users with API tokens (``manage.py shell -c``).
2. Services, all with the same environment, each in its own process group: gunicorn
   (``webapp.wsgi -w 2 --timeout 120``) and ``--workers`` Celery workers
   (``celery -A webapp worker --beat -l INFO -c 1``: prefork, the embedded beat runs the
   heal job). BATCH_STALE_SECONDS / HEAL_INTERVAL_SECONDS keep their production defaults
   (120 s / 30 s) unless ``--stale`` / ``--heal-interval`` are given; TORCH_THREADS=1;
   upload throttles raised out of the way.
3. Load: ``--users`` threads each POST one batch of ``--chips`` distinct synthetic
   256x256 JPEG chips to /api/batches/ in one multipart request (urllib, body built by
   hand), all released at the same moment. One request per user, to 127.0.0.1 only.
4. Faults, timed from the moment the last upload answered (t=0): at ``--kill-at`` s the
   whole process group of the worker holding a running batch (Batch.worker is
   "host:pid:token"; else the first worker) is SIGKILLed and not restarted (a lost
   machine); at ``--redis-restart-at`` s Redis is killed and started again on the same
   port (every queued or unacknowledged message is lost). A negative time skips a fault.
5. Measure: the database is polled every second (psycopg or sqlite3 in this process; no
   Django here) for items still queued and batches not done; a timeline line every 10 s;
   it stops when everything is done or ``--window`` s after the last fault. Then every
   user reads their batch back with their token (GET /api/batches/<id>/), as a client
   polling it would: each answer must be 200, a non-empty body, and the batch done.

The report: items and batches unfinished at the end (expected 0), the time from the last
fault until the last batch finished, exactly-once (Prediction rows == distinct images, and
the sum of ``predicted=N`` in the workers' logs == Prediction rows), the batches read back
by their owners, the heal job's resends ("heal: sent" in the logs), 5xx answers during the
uploads, and a digest of the
warnings and errors in every log. Everything (processes, Redis, database, temporary
directory unless ``--keep``) is cleaned up at the end, also on Ctrl-C. Exit status 1 when
a check fails.

``--smoke`` (the test suite's run): 2 users x 4 chips, 2 workers, the kill at +1 s and the
Redis restart at +2 s, stale after 5 s, heal every 2 s, a 120 s window; the same checks.
About a minute, most of it starting the services.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from redis_server import RedisServer, free_port
from synthetic_chips import synthetic_chips

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtual environment's bin/ (gunicorn lives there)
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
START_TIMEOUT = 180  # seconds for gunicorn / a worker to come up on a busy 2-core box
UPLOAD_TIMEOUT = 600  # seconds per upload request (they queue behind 2 gunicorn workers)
TIMELINE_EVERY = 10


# --- small helpers -----------------------------------------------------------------------

def say(message: str) -> None:
    print(message, flush=True)


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with every file in the field ``files``."""
    boundary = f"bench-faults-{uuid.uuid4().hex}"
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                     f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode())
        parts.append(data)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# Only 127.0.0.1 is ever asked, and never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 5) -> tuple[int, bytes]:
    """(status, body); status 0 when no HTTP answer came (with the reason as body)."""
    request = urllib.request.Request(url, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc)).encode()


# --- database ----------------------------------------------------------------------------

class Database:
    """The run's database: created (and dropped) here unless given; read with plain SQL."""

    def __init__(self, url: str | None, folder: Path) -> None:
        self.created = ""
        self._conn = None
        if url is None:
            import psycopg

            self.created = f"bench_faults_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.created}"')
            url = f"postgres://postgres@127.0.0.1:5432/{self.created}"
        elif url == "sqlite":
            url = f"sqlite:///{folder / 'db.sqlite3'}"
        self.url = url
        self.sqlite = url.startswith("sqlite:")
        if not self.sqlite and not url.startswith(("postgres://", "postgresql://")):
            raise SystemExit("--database-url: a postgres:// URL or 'sqlite'")

    def describe(self) -> str:
        if self.created:
            return f"PostgreSQL {self.created} (fresh, dropped at the end)"
        return ("SQLite " if self.sqlite else "PostgreSQL ") + self.url

    def _connection(self):
        if self._conn is None:
            if self.sqlite:
                path = self.url.removeprefix("sqlite:///")
                self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            else:
                import psycopg

                self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def rows(self, sql: str) -> list[tuple]:
        try:
            return list(self._connection().execute(sql).fetchall())
        except Exception:
            self.close()  # a broken connection is opened again on the next query
            raise

    def value(self, sql: str):
        return self.rows(sql)[0][0]

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None

    def drop(self) -> None:
        self.close()
        if self.created:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.created}" WITH (FORCE)')


def epoch(value) -> float | None:
    """A timestamp column (psycopg datetime, or SQLite's UTC text) as Unix time."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass
class Snapshot:
    at: float
    items_queued: int
    batches_open: int
    batches_running: int
    predictions: int


def snapshot(db: Database) -> Snapshot:
    (queued, open_, running, predictions), = db.rows(
        "SELECT (SELECT count(*) FROM webapp_batchitem WHERE status = 'queued'),"
        " (SELECT count(*) FROM webapp_batch WHERE status <> 'done'),"
        " (SELECT count(*) FROM webapp_batch WHERE status = 'running'),"
        " (SELECT count(*) FROM webapp_prediction)")
    return Snapshot(time.time(), queued, open_, running, predictions)


# --- processes ---------------------------------------------------------------------------

class Service:
    """A child process in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log_path = name, log
        self._log = open(log, "ab")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        self.pid = self.process.pid
        self.killed_at: float | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL to the whole group: no cleanup, no acknowledgement (a lost machine)."""
        self.signal_group(signal.SIGKILL)
        self.killed_at = time.time()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is this service or one of its group (a prefork pool child)."""
        if pid == self.pid:
            return True
        try:
            return os.getpgid(pid) == self.pid
        except (ProcessLookupError, PermissionError):
            return False

    def close(self) -> None:
        self._log.close()


def stop_all(services: list[Service], grace: float = 15) -> None:
    """SIGTERM to every group, then SIGKILL to what is left after ``grace`` seconds."""
    for service in services:
        service.signal_group(signal.SIGTERM)
    deadline = time.time() + grace
    for service in services:
        try:
            service.process.wait(max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        service.signal_group(signal.SIGKILL)  # also orphans left in the group
        try:
            service.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        service.close()


def environment(args, db: Database, redis: RedisServer, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("BATCH_STALE_SECONDS", "HEAL_INTERVAL_SECONDS", "CELERY_VISIBILITY_TIMEOUT",
                 "WORKER_CHUNK_PAUSE", "DEBUG"):
        env.pop(name, None)  # production defaults, not whatever this shell has
    env.update({
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VAR_DIR": str(tmp / "var"),
        "MEDIA_ROOT": str(tmp / "media"),
        "DATABASE_URL": db.url,
        "REDIS_URL": redis.url,
        "CELERY_QUEUE": "bench-faults",
        "SECRET_KEY": f"bench-faults-{uuid.uuid4().hex}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "THROTTLE_USER": "1000000/minute",
        "THROTTLE_UPLOADS": "1000000/minute",
        "THROTTLE_ANON": "1000000/minute",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    if args.stale is not None:
        env["BATCH_STALE_SECONDS"] = str(args.stale)
    if args.heal_interval is not None:
        env["HEAL_INTERVAL_SECONDS"] = str(args.heal_interval)
    return env


SETUP = """
import json
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from webapp.conf import app_settings
from webapp.services.model_registry import register_model
register_model(app_settings.CLASSIFIER_MODEL, activate=True)
keys = []
for i in range({users}):
    user = User.objects.create_user(f"bench-faults-{{i:03d}}")
    keys.append(Token.objects.create(user=user).key)
print("TOKENS " + json.dumps(keys))
"""


def prepare(users: int, env: dict[str, str], tmp: Path) -> list[str]:
    """Migrate, register the model, create the users; returns their API tokens."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    steps = [("migrate", [*manage, "migrate", "--noinput", "-v", "0"]),
             ("users", [*manage, "shell", "-c", SETUP.format(users=users)])]
    out = ""
    for name, argv in steps:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        (tmp / f"setup-{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"setup step {name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        out = done.stdout
    for line in out.splitlines():
        if line.startswith("TOKENS "):
            return json.loads(line[len("TOKENS "):])
    raise RuntimeError(f"no tokens in the setup output:\n{out[-2000:]}")


def wait_ready(gunicorn: Service, port: int, workers: list[Service]) -> None:
    deadline = time.time() + START_TIMEOUT
    pending = [gunicorn, *workers]
    while pending:
        for service in list(pending):
            if not service.alive():
                raise RuntimeError(f"{service.name} exited:\n{service.text()[-3000:]}")
            if service is gunicorn:
                if http(f"http://127.0.0.1:{port}/healthz", timeout=2)[0]:
                    pending.remove(service)
            elif " ready." in service.text():
                pending.remove(service)
        if pending and time.time() > deadline:
            names = ", ".join(s.name for s in pending)
            raise RuntimeError(f"not up after {START_TIMEOUT} s: {names}\n"
                               f"{pending[0].text()[-3000:]}")
        time.sleep(0.5)


# --- load --------------------------------------------------------------------------------

@dataclass
class Upload:
    user: int
    status: int = 0
    seconds: float = 0.0
    batch: int | None = None
    detail: str = ""


def upload_all(port: int, tokens: list[str], bodies: list[tuple[bytes, str]]) -> list[Upload]:
    """One POST per user, all threads released at the same moment."""
    results = [Upload(user=i) for i in range(len(tokens))]
    gate = threading.Barrier(len(tokens) + 1)
    url = f"http://127.0.0.1:{port}/api/batches/"

    def run(i: int) -> None:
        body, content_type = bodies[i]
        headers = {"Authorization": f"Token {tokens[i]}", "Content-Type": content_type}
        gate.wait()
        start = time.perf_counter()
        status, answer = http(url, body, headers, timeout=UPLOAD_TIMEOUT)
        result = results[i]
        result.status, result.seconds = status, time.perf_counter() - start
        if status == 202:
            try:
                result.batch = json.loads(answer)["id"]
            except (ValueError, KeyError, TypeError):
                result.detail = "202 without a batch id"
        else:
            result.detail = answer[:300].decode(errors="replace")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    gate.wait()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    return results


def read_back(port: int, tokens: list[str], uploads: list[Upload]) -> tuple[int, list[str]]:
    """Each accepted batch as its owner's client sees it: (how many answered 200 with a
    non-empty body and status done, what the others answered)."""
    good, bad = 0, []
    for upload in uploads:
        if upload.batch is None:
            continue
        url = f"http://127.0.0.1:{port}/api/batches/{upload.batch}/"
        status, body = http(url, headers={"Authorization": f"Token {tokens[upload.user]}"},
                            timeout=30)
        try:
            state = json.loads(body).get("status") if status == 200 and body else None
        except (ValueError, AttributeError):
            state = None
        if state == "done":
            good += 1
        else:
            bad.append(f"user {upload.user} batch {upload.batch}: {status or 'no answer'} "
                       f"status {state!r} ({len(body)} bytes)")
    return good, bad


# --- faults and measurement --------------------------------------------------------------

@dataclass
class Run:
    uploads_done: float = 0.0  # time.time() when the last upload answered (t=0)
    faults: list[tuple[float, str]] = field(default_factory=list)
    victim: str = ""
    final: Snapshot | None = None
    all_done_seen: float | None = None
    poll_errors: int = 0
    hit_work: bool = False  # some batch was not done when a fault struck
    reason: str = ""


def running_lease_pids(db: Database) -> list[tuple[int, int]]:
    """(batch id, pid) of every running batch's lease holder, freshest heartbeat first."""
    pids = []
    for batch_id, worker in db.rows("SELECT id, worker FROM webapp_batch WHERE status = "
                                    "'running' AND worker <> '' ORDER BY heartbeat_at DESC"):
        parts = worker.split(":")
        if len(parts) >= 2 and parts[1].isdigit():
            pids.append((batch_id, int(parts[1])))
    return pids


def kill_a_worker(db: Database, workers: list[Service]) -> str:
    live = [w for w in workers if w.alive()]
    if not live:
        return "no live worker to kill"
    try:
        leases = running_lease_pids(db)
    except Exception as exc:  # noqa: BLE001 - then the first worker
        leases, note = [], f" (lease query failed: {exc})"
    else:
        note = ""
    for batch_id, pid in leases:
        for worker in live:
            if worker.holds(pid):
                worker.kill()
                return f"SIGKILL {worker.name} (group {worker.pid}), holding batch {batch_id}"
    live[0].kill()
    return f"SIGKILL {live[0].name} (group {live[0].pid}), no running batch found{note}"


def monitor(args, db: Database, redis: RedisServer, workers: list[Service], run: Run) -> None:
    t0 = run.uploads_done
    pending = []
    if args.kill_at >= 0:
        pending.append((t0 + args.kill_at, "kill"))
    if args.redis_restart_at >= 0:
        pending.append((t0 + args.redis_restart_at, "redis"))
    pending.sort()
    next_line = t0
    last: Snapshot | None = None
    while True:
        now = time.time()
        while pending and now >= pending[0][0]:
            _, kind = pending.pop(0)
            if kind == "kill":
                what = kill_a_worker(db, workers)
                run.victim = what
            else:
                redis.restart()
                what = f"Redis restarted on port {redis.port} (queue and unacked lost)"
            if last is not None:
                what += (f" [{last.items_queued} items unfinished, {last.batches_open} "
                         f"batches not done just before]")
                run.hit_work = run.hit_work or last.batches_open > 0
            run.faults.append((time.time(), what))
            say(f"  t={time.time() - t0:+6.1f}s  FAULT: {what}")
            now = time.time()
        try:
            last = snapshot(db)
        except Exception as exc:  # noqa: BLE001 - the database may hiccup; keep measuring
            run.poll_errors += 1
            say(f"  t={now - t0:+6.1f}s  poll failed: {exc}")
        if last is not None and now >= next_line:
            alive = sum(w.alive() for w in workers)
            say(f"  t={now - t0:+6.1f}s  items unfinished {last.items_queued:5d}  batches not "
                f"done {last.batches_open:3d} (running {last.batches_running:2d})  "
                f"predictions {last.predictions:5d}  workers alive {alive}/{len(workers)}")
            next_line += TIMELINE_EVERY
        finished = last is not None and last.items_queued == 0 and last.batches_open == 0
        if finished and run.all_done_seen is None:
            run.all_done_seen = now
        last_fault = run.faults[-1][0] if run.faults else t0
        if not pending and finished:
            run.reason = "everything done"
            break
        if not pending and now >= last_fault + args.window:
            run.reason = f"window of {args.window:.0f} s after the last fault ended"
            break
        if not any(w.alive() for w in workers) and not pending:
            run.reason = "no worker left alive"
            break
        time.sleep(max(0.0, 1.0 - (time.time() - now)))
    run.final = last
    if last is not None:
        alive = sum(w.alive() for w in workers)
        say(f"  t={time.time() - t0:+6.1f}s  items unfinished {last.items_queued:5d}  batches "
            f"not done {last.batches_open:3d} (running {last.batches_running:2d})  "
            f"predictions {last.predictions:5d}  workers alive {alive}/{len(workers)}  "
            f"(stop: {run.reason})")


def database_outcome(db: Database) -> dict[str, object]:
    (images, predictions, failed, done_items, batches, last_finished, dupes), = db.rows(
        "SELECT (SELECT count(DISTINCT image_id) FROM webapp_batchitem"
        "        WHERE image_id IS NOT NULL),"
        " (SELECT count(*) FROM webapp_prediction),"
        " (SELECT count(*) FROM webapp_batchitem WHERE status = 'failed'),"
        " (SELECT count(*) FROM webapp_batchitem WHERE status = 'done'),"
        " (SELECT count(*) FROM webapp_batch),"
        " (SELECT max(finished_at) FROM webapp_batch),"
        " (SELECT count(*) FROM (SELECT image_id FROM webapp_prediction"
        "        GROUP BY image_id, model_id HAVING count(*) > 1) AS twice)")
    attempts = dict(db.rows("SELECT attempts, count(*) FROM webapp_batchitem GROUP BY attempts"))
    errors = db.rows("SELECT error, count(*) FROM webapp_batchitem WHERE status = 'failed' "
                     "GROUP BY error ORDER BY count(*) DESC")
    return {"images": images, "predictions": predictions, "failed": failed,
            "done_items": done_items, "batches": batches,
            "last_finished": epoch(last_finished), "duplicates": dupes,
            "attempts": attempts, "errors": errors}


# --- logs --------------------------------------------------------------------------------

NOISE = re.compile(r"\b[0-9a-f]{8,}\b|\d+(\.\d+)?")
LOG_PREFIX = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T][\d:,.]+\]?\s*")


def digest(text: str, limit: int = 12) -> list[tuple[int, str]]:
    """Distinct WARNING/ERROR/CRITICAL/Traceback lines (numbers masked), most frequent first."""
    kinds: Counter[str] = Counter()
    for line in text.splitlines():
        if re.search(r"WARNING|ERROR|CRITICAL|Traceback|Exception|\bError\b", line):
            shape = NOISE.sub("#", LOG_PREFIX.sub("", line.strip()))[:160]
            kinds[shape] += 1
    return [(count, shape) for shape, count in kinds.most_common(limit)]


def heal_resends(text: str) -> tuple[int, list[int]]:
    total, ids = 0, []
    for count, listed in re.findall(r"heal: sent (\d+) stalled batches again: \[([^\]]*)\]",
                                    text):
        total += int(count)
        ids += [int(i) for i in re.findall(r"\d+", listed)]
    return total, ids


# --- main --------------------------------------------------------------------------------

def report(args, uploads: list[Upload], upload_seconds: float, chips_sent: int,
           distinct_sent: int, run: Run, outcome: dict, gunicorn: Service,
           workers: list[Service], read: tuple[int, list[str]]) -> bool:
    worker_text = {w.name: w.text() for w in workers}
    predicted_logged = {name: sum(int(n) for n in re.findall(r"predicted=(\d+)", text))
                        for name, text in worker_text.items()}
    resends = {name: heal_resends(text) for name, text in worker_text.items()}
    heal_total = sum(total for total, _ in resends.values())
    heal_batches = sorted({i for _, ids in resends.values() for i in ids})
    gunicorn_text = gunicorn.text()
    access = re.findall(r"^ACCESS (\S+) (\S+) (\d{3}) ", gunicorn_text, re.M)
    access_5xx = sum(1 for method, path, status in access
                     if status.startswith("5") and method == "POST" and path == "/api/batches/")
    codes = Counter(u.status for u in uploads)
    client_5xx = sum(n for code, n in codes.items() if code >= 500)
    no_answer = codes.get(0, 0)
    final = run.final
    last_fault = run.faults[-1][0] if run.faults else run.uploads_done
    unfinished_items = final.items_queued if final else -1
    unfinished_batches = final.batches_open if final else -1
    if unfinished_batches == 0 and outcome["last_finished"] is not None:
        recovery = f"{outcome['last_finished'] - last_fault:.1f} s"
        if outcome["last_finished"] < last_fault:
            recovery += " (all done before it)"
    else:
        recovery = f"n/a ({unfinished_batches} batches not done)"
    logged = sum(predicted_logged.values())
    latencies = [u.seconds for u in uploads if u.status]

    say("\nuploads: " + ", ".join(f"{n} x {code or 'no answer'}"
                                  for code, n in sorted(codes.items())) +
        f" in {upload_seconds:.1f} s; request seconds p50 "
        f"{statistics.median(latencies) if latencies else 0:.1f}, max "
        f"{max(latencies, default=0):.1f}")
    for u in uploads:
        if u.status != 202:
            say(f"  user {u.user}: {u.status or 'no answer'} {u.detail[:200]!r}")
    for when, what in run.faults:
        say(f"fault at t={when - run.uploads_done:+.1f}s: {what}")
    read_ok, read_bad = read
    for line in read_bad[:5]:
        say(f"  read back: {line}")
    say(f"items: {outcome['done_items']} done, {outcome['failed']} failed; attempts per item "
        f"{dict(sorted(outcome['attempts'].items()))}")
    for error, n in outcome["errors"][:5]:
        say(f"  failed x{n}: {error[:150]}")
    for name in worker_text:
        total, ids = resends[name]
        say(f"{name}: predicted={predicted_logged[name]} in its log, heal resends {total}"
            + (f" (batches {ids})" if ids else ""))
    say(f"heal resends in all: {heal_total} messages for {len(heal_batches)} distinct batches")

    say("\nlog digest (WARNING and worse, numbers masked; count, line):")
    for service in [gunicorn, *workers]:
        lines = digest(service.text())
        say(f"  {service.name}: {'nothing' if not lines else ''}")
        for count, shape in lines:
            say(f"    {count:5d}  {shape}")

    checks = [
        ("uploads answered 202", f"{codes.get(202, 0)}/{len(uploads)}",
         codes.get(202, 0) == len(uploads)),
        ("5xx answers during the uploads (client / access log)",
         f"{client_5xx} / {access_5xx}", client_5xx == 0 and access_5xx == 0),
        ("uploads without any HTTP answer", str(no_answer), no_answer == 0),
        ("faults struck while batches were unfinished", "yes" if run.hit_work else "no",
         run.hit_work if run.faults else None),
        ("items unfinished at the end", str(unfinished_items), unfinished_items == 0),
        ("batches not done at the end", str(unfinished_batches), unfinished_batches == 0),
        ("last fault -> last batch finished", recovery, unfinished_batches == 0),
        ("distinct images: sent / stored", f"{distinct_sent} / {outcome['images']}",
         distinct_sent == outcome["images"]),
        ("Prediction rows == distinct images", f"{outcome['predictions']} / {outcome['images']}",
         outcome["predictions"] == outcome["images"]),
        ("images predicted twice (same model)", str(outcome["duplicates"]),
         outcome["duplicates"] == 0),
        ("sum of predicted=N in logs == Prediction rows", f"{logged} / {outcome['predictions']}",
         logged == outcome["predictions"]),
        ("batches read back by their owners (200, done)",
         f"{read_ok}/{len(uploads)}", read_ok == len(uploads)),
        ("heal resends (\"heal: sent\")", f"{heal_total} ({len(heal_batches)} batches)", None),
        ("database poll errors", str(run.poll_errors), None),
    ]
    width = max(len(name) for name, _, _ in checks)
    say(f"\n{'check':<{width}}  {'value':<28} ok")
    say(f"{'-' * width}  {'-' * 28} --")
    for name, value, ok in checks:
        mark = "" if ok is None else ("yes" if ok else "NO")
        say(f"{name:<{width}}  {value:<28} {mark}")
    say(f"\n{args.users} users x {args.chips} chips = {chips_sent} files, {len(workers)} workers, "
        f"stale {args.stale if args.stale is not None else '120 (default)'} s, heal every "
        f"{args.heal_interval if args.heal_interval is not None else '30 (default)'} s; "
        f"stopped: {run.reason}")
    return all(ok for _, _, ok in checks if ok is not None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50, help="users, one batch each")
    parser.add_argument("--chips", type=int, default=20, help="256x256 JPEG chips per batch")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--database-url", default=None,
                        help="postgres:// URL of an empty database, or 'sqlite' (default: a "
                             "fresh PostgreSQL database on 127.0.0.1, dropped at the end)")
    parser.add_argument("--kill-at", type=float, default=10,
                        help="seconds after the uploads: SIGKILL a worker (<0: never)")
    parser.add_argument("--redis-restart-at", type=float, default=20,
                        help="seconds after the uploads: restart Redis (<0: never)")
    parser.add_argument("--window", type=float, default=300,
                        help="seconds after the last fault before giving up")
    parser.add_argument("--stale", type=float, default=None,
                        help="BATCH_STALE_SECONDS (default: the production 120)")
    parser.add_argument("--heal-interval", type=float, default=None,
                        help="HEAL_INTERVAL_SECONDS (default: the production 30)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (logs, media) and say where")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for the test suite: --users 2 --chips 4 --kill-at 1 "
                             "--redis-restart-at 2 --stale 5 --heal-interval 2 --window 120")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.chips, args.kill_at, args.redis_restart_at = 2, 4, 1, 2
        args.stale, args.heal_interval, args.window = 5, 2, 120
    if args.users < 1 or args.chips < 1 or args.workers < 1:
        parser.error("--users, --chips and --workers must be at least 1")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    tmp = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    db: Database | None = None
    redis: RedisServer | None = None
    services: list[Service] = []
    ok = False
    try:
        (tmp / "redis").mkdir()
        db = Database(args.database_url, tmp)
        redis = RedisServer(tmp / "redis")
        env = environment(args, db, redis, tmp)
        say(f"setup: {db.describe()}; Redis {redis.url}; temporary directory {tmp}")
        start = time.perf_counter()
        tokens = prepare(args.users, env, tmp)
        say(f"setup: migrated, model registered, {len(tokens)} users with tokens "
            f"({time.perf_counter() - start:.1f} s)")

        port = free_port()
        gunicorn = Service("gunicorn", [str(BIN / "gunicorn"), "webapp.wsgi", "-w", "2", "-b",
                                        f"127.0.0.1:{port}", "--timeout", "120",
                                        "--access-logfile", "-", "--error-logfile", "-",
                                        "--access-logformat", "ACCESS %(m)s %(U)s %(s)s %(L)s",
                                        "--no-control-socket"],  # not in ~/.gunicorn
                           env, tmp / "gunicorn.log")
        services.append(gunicorn)
        workers = []
        for i in range(args.workers):
            worker = Service(f"worker{i}", [sys.executable, "-m", "celery", "-A", "webapp",
                                            "worker", "--beat", "-l", "INFO", "-c", "1",
                                            "--hostname", f"bench-faults-{i}@%h"],
                             env, tmp / f"worker{i}.log")
            services.append(worker)
            workers.append(worker)
        start = time.perf_counter()
        wait_ready(gunicorn, port, workers)
        say(f"services: gunicorn on 127.0.0.1:{port} (2 workers), {args.workers} Celery "
            f"workers (groups {', '.join(str(w.pid) for w in workers)}) ready in "
            f"{time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        chips = [list(synthetic_chips(args.chips, seed=i)) for i in range(args.users)]
        sent = [data for files in chips for _, data in files]
        bodies = [multipart(files) for files in chips]
        del chips
        distinct = len({hashlib.sha256(data).digest() for data in sent})
        say(f"load: {len(sent)} chips ({distinct} distinct, "
            f"{sum(len(b) for b, _ in bodies) / 1e6:.1f} MB of request bodies) made in "
            f"{time.perf_counter() - start:.1f} s; {args.users} uploads at once")
        chips_sent = len(sent)
        del sent
        start = time.perf_counter()
        uploads = upload_all(port, tokens, bodies)
        upload_seconds = time.perf_counter() - start
        del bodies
        run = Run(uploads_done=time.time())
        accepted = sum(u.status == 202 for u in uploads)
        say(f"load: {accepted}/{len(uploads)} uploads accepted in {upload_seconds:.1f} s "
            f"(t=0); faults at t={args.kill_at:g}s (kill) and t={args.redis_restart_at:g}s "
            f"(Redis)")

        monitor(args, db, redis, workers, run)
        outcome = database_outcome(db)
        read = read_back(port, tokens, uploads)
        stop_all(services)  # logs complete before they are read
        ok = report(args, uploads, upload_seconds, chips_sent, distinct, run, outcome,
                    gunicorn, workers, read)
    except KeyboardInterrupt:
        say("\ninterrupted: cleaning up")
    finally:
        stop_all(services, grace=10)
        if redis is not None:
            redis.stop()
        if db is not None:
            try:
                db.drop()
            except Exception as exc:  # noqa: BLE001 - say so, go on cleaning
                say(f"could not drop the database {db.created}: {exc}")
        if args.keep:
            say(f"kept: {tmp} (logs: gunicorn.log, worker*.log, setup-*.log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
