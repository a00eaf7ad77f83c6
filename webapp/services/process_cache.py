"""Models loaded once per process and kept: the predictor of each classifier version, the
retriever of each search model.

Loading one takes seconds and hundreds of MB, so each web or worker process loads it on
first use and reuses it. The lock is held while loading: threads asking at the same moment
wait for the one load instead of making their own; a load that raises caches nothing.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ProcessCache(Generic[V]):
    """Keyed values, each made once by the ``load`` given with its first ``get``."""

    def __init__(self) -> None:
        self._values: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        with self._lock:
            if key not in self._values:
                self._values[key] = load()
                # what a process loads once (a model: torch's ~500,000 objects on the
                # first one) lives as long as the process: out of the garbage
                # collector's reach, or each full collection walks it all (a 160-300 ms
                # pause of some request every few dozen; bench/bench_scale.py)
                gc.collect()
                gc.freeze()
            return self._values[key]

    def clear(self) -> None:
        """Forget every value (tests; a changed setting)."""
        with self._lock:
            self._values.clear()
