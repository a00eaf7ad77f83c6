"""The worker's thread pool for per-image work (webapp/services/threads.py)."""

from __future__ import annotations

import threading
import time

from webapp.services import threads


def test_results_come_in_input_order_from_several_threads(settings):
    settings.WORKER_THREADS = 3
    seen: set[str] = set()

    def slow_first(n: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.05 if n == 0 else 0.0)  # the first item finishes last
        return n * n

    assert list(threads.map_ordered(slow_first, range(6))) == [0, 1, 4, 9, 16, 25]
    assert len(seen) > 1 and all(name.startswith("worker-io") for name in seen)


def test_one_thread_runs_inline(settings):
    settings.WORKER_THREADS = 1
    names = list(threads.map_ordered(lambda _: threading.current_thread().name, range(3)))
    assert names == [threading.current_thread().name] * 3


def test_a_forked_process_makes_its_own_pool(settings, monkeypatch):
    settings.WORKER_THREADS = 2
    list(threads.map_ordered(abs, [-1, -2]))
    parent = threads._executor()
    monkeypatch.setattr(threads.os, "getpid", lambda: -1)  # as in a prefork child
    child = threads._executor()
    assert child is not parent
    assert list(threads.map_ordered(abs, [-3, -4])) == [3, 4]
