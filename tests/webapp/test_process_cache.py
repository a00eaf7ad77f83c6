"""The per-process model cache: one load per key, even when threads ask at once."""

from __future__ import annotations

import threading
import time

import pytest

from webapp.services.process_cache import ProcessCache


def test_threads_asking_at_once_share_one_load_per_key():
    cache: ProcessCache[object] = ProcessCache()
    loads: list[str] = []

    def load(key: str) -> object:
        loads.append(key)
        time.sleep(0.05)
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("a", lambda: load("a"))))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["a"] and len({id(r) for r in results}) == 1
    assert cache.get("b", lambda: load("b")) is not results[0]
    cache.clear()
    cache.get("a", lambda: load("a"))
    assert loads == ["a", "b", "a"]


def test_a_failed_load_caches_nothing():
    cache: ProcessCache[int] = ProcessCache()

    def broken() -> int:
        raise RuntimeError("no model")

    with pytest.raises(RuntimeError):
        cache.get("a", broken)
    assert cache.get("a", lambda: 7) == 7
