"""Per-image work of a worker (decoding, dehazing display copies, encoding and hashing
chips, writing files) spread over the machine's cores.

The forward pass already uses every core (torch's own threads); everything around it ran
on one. That work is in OpenCV, numpy, PIL, hashlib and file I/O, which release the GIL,
so plain threads run it in parallel. One pool per process, made on first use: a Celery
prefork child never inherits its parent's threads. ``WORKER_THREADS`` (0: one per core)
sizes it; 1 runs everything inline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from webapp.conf import app_settings

T = TypeVar("T")
R = TypeVar("R")

_pool: tuple[int, ThreadPoolExecutor] | None = None
_lock = threading.Lock()


def size() -> int:
    return app_settings.WORKER_THREADS or os.cpu_count() or 1


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(size(), thread_name_prefix="worker-io"))
        return _pool[1]


def map_ordered(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(fn, items)`` on the pool, results in order, as they become ready. Work that
    touches the database stays in the caller's thread (connections are per thread)."""
    items = list(items)
    if size() == 1 or len(items) < 2:
        return map(fn, items)
    return _executor().map(fn, items)
