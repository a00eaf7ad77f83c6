"""Hamming indexes over {-1, +1} codes on faiss's exact binary index.

``HammingIndex``: add / remove by integer id, search top-k with distances, save / load.
Codes are packed into bits (faiss wants the bit count to be a multiple of 8: 16, 32, 64 all
are).

``LiveHammingIndex``: the same exact search over a collection that changes while it is
searched. Each web process keeps its own in-memory index of the collection's codes and, before
a search, applies the changes made since the version it last saw (new images, re-tagged
images whose text code changed, deleted images). Rebuilding an index from every code on each
change costs time proportional to the whole collection (and at 1,000,000 codes that is paid
by the search that notices the change), so ``LiveHammingIndex`` takes changes incrementally,
LSM style:

* a *base*: a faiss ``IndexBinaryFlat`` whose rows are the codes of a sorted array of ids
  (``np.searchsorted`` maps an id to its row: no per-id Python object, so 1M ids cost
  8 MB of ids + bits/8 bytes of code + 1 byte of mask each);
* an ``alive`` mask over the base rows: replacing or removing an id hides its base row;
* a small *delta* (numpy arrays of ids and packed codes) that receives upserts and is
  searched by brute force (XOR + ``np.bitwise_count``);
* *compaction* merges the delta and the live base rows into a new sorted base once the delta
  or the number of hidden rows passes a threshold, so both stay small and a search during
  ingestion costs at most a little more than a search on a quiet collection.

A search asks faiss for the base's top ``k + m`` rows and drops the hidden ones. The margin
``m`` is twice the hidden rows expected among the top k (``k * hidden / live``) + 16, plus
the most hidden rows found within bits/16 of a query (a brute-force count over the hidden
rows' codes: the old text codes of a bulk re-tag sit right at the query that matches them).
A query still left with fewer than ``k`` live rows searches the base again, wider, up to
``k + hidden`` rows, which always hold ``k`` live ones. The live base rows are merged with
the delta's top ``k``; results are exact. Asking for ``k + hidden`` rows every time would be
exact too, but faiss's heap makes a top-1074 search over 1M codes ~1.8x as slow as a top-50
one, while top-67 costs the same as top-50.

Measured at 1M 64-bit codes, top 50, one query (bench/bench_search.py): a search costs
~0.65 ms quiet and ~1.05-1.25x that during ingestion at 50 codes/s or with the delta and the
hidden rows at their compaction thresholds (20,000 and 1,024); a compaction ~10 ms, a bulk
load ~55 ms, against ~115 ms to rebuild a ``HammingIndex`` on every change. faiss uses
OpenMP: a web process searching one query at a time should call
``faiss.omp_set_num_threads(1)``; with a thread per core, any other busy process on the
machine stretches the slow tail of such searches from ~0.8 ms to 10-100 ms.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import faiss
import numpy as np

from retrieval.codes import pack


class HammingIndex:
    def __init__(self, bits: int) -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        self.bits = bits
        self.index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add (or replace) items; an id already present is replaced."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(codes):
            raise ValueError("one id per code")
        if codes.shape[1] != self.bits:
            raise ValueError(f"codes have {codes.shape[1]} bits, the index {self.bits}")
        self.remove(ids)
        self.index.add_with_ids(pack(codes), ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids) or not len(self):
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids), each Q x min(k, len); nearest first, exact."""
        k = min(k, len(self))
        if k == 0:
            empty = np.zeros((len(codes), 0), np.int64)
            return empty.astype(np.int32), empty
        distances, ids = self.index.search(pack(codes), k)
        return distances, ids

    def save(self, path: str | Path) -> None:
        faiss.write_index_binary(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path) -> HammingIndex:
        raw = faiss.read_index_binary(str(path))
        index = cls(raw.d)
        index.index = raw
        return index


def _word_dtype(nbytes: int) -> np.dtype:
    """The widest unsigned integer whose size divides a packed code (for XOR + popcount)."""
    for dtype in (np.uint64, np.uint32, np.uint16):
        if nbytes % np.dtype(dtype).itemsize == 0:
            return np.dtype(dtype)
    return np.dtype(np.uint8)


def set_search_threads(threads: int) -> None:
    """faiss's threads for searches in this process (one search is a millisecond of
    work: a thread per core only adds a long tail on a busy machine)."""
    faiss.omp_set_num_threads(threads)


class LiveHammingIndex:
    """Exact Hamming top-k over {-1, +1} codes that are upserted and removed by id while the
    index is searched (see the module docstring for the design).

    ``upsert(ids, codes)`` adds new ids and replaces the codes of known ones (within one call
    the last code of a repeated id wins); ``remove(ids)`` drops ids (unknown ones are
    ignored); ``search(codes, k)`` returns ``(distances, ids)`` exactly like
    ``HammingIndex.search``: Q x min(k, len), nearest first, exact (ties in any order).
    ``from_codes(ids, codes)`` (or an ``upsert`` into an empty index) builds the base
    directly, without going through the delta.

    Compaction runs inside ``upsert`` / ``remove`` once the delta holds more than
    ``max(min_delta, delta_fraction * base rows)`` items or more than ``max_hidden`` base rows
    are hidden; ``compact()`` forces one. ``compactions`` counts them and
    ``last_compaction_s`` is the duration of the latest; ``extra_searches`` counts the
    second (and later) searches of the base for queries crowded by hidden rows.

    Not thread safe: the caller serialises calls (e.g. one lock around ``upsert``,
    ``remove``, ``compact`` and ``search``). Searches may run concurrently with each other
    (they only bump ``extra_searches``), never with a change or a compaction.
    """

    def __init__(self, bits: int, *, min_delta: int = 4096, delta_fraction: float = 0.02,
                 max_hidden: int = 1024) -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        self.bits = bits
        self.code_size = bits // 8
        self.min_delta = min_delta
        self.delta_fraction = delta_fraction
        self.max_hidden = max_hidden
        self._word = _word_dtype(self.code_size)
        self._row = np.dtype((np.void, self.code_size))  # one packed code as a scalar
        self._set_base(np.empty(0, np.int64), np.empty((0, self.code_size), np.uint8))
        self._delta_ids = np.empty(0, np.int64)
        self._delta_codes = np.empty((0, self.code_size), np.uint8)
        self.compactions = 0
        self.last_compaction_s = 0.0
        self.extra_searches = 0

    @classmethod
    def from_codes(cls, ids: np.ndarray, codes: np.ndarray, **thresholds) -> LiveHammingIndex:
        """An index holding these items, built straight into the base."""
        index = cls(np.asarray(codes).shape[1], **thresholds)
        index.upsert(ids, codes)
        return index

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._base.ntotal - self._hidden + len(self._delta_ids)

    def __contains__(self, item_id: object) -> bool:
        try:
            key = np.int64(item_id)
        except (TypeError, ValueError, OverflowError):
            return False
        if (self._delta_ids == key).any():
            return True
        row = int(np.searchsorted(self._base_ids, key))
        return (row < len(self._base_ids) and self._base_ids[row] == key
                and bool(self._alive[row]))

    @property
    def delta_size(self) -> int:
        """Items waiting in the delta for the next compaction."""
        return len(self._delta_ids)

    @property
    def hidden(self) -> int:
        """Base rows hidden by a replacement or removal since the last compaction."""
        return self._hidden

    @property
    def base_size(self) -> int:
        """Rows in the base, hidden ones included."""
        return self._base.ntotal

    def _set_base(self, ids: np.ndarray, packed: np.ndarray) -> None:
        """ids sorted and unique, packed their N x code_size codes."""
        base = faiss.IndexBinaryFlat(self.bits)
        if len(ids):
            base.add(np.ascontiguousarray(packed))
        self._base = base
        self._base_ids = ids
        self._alive = np.ones(len(ids), bool)
        self._hidden = 0
        self._hidden_codes = np.empty((0, self.code_size), np.uint8)  # of the hidden rows

    def _base_codes(self) -> np.ndarray:
        """The base's codes as an N x code_size view of faiss's storage (no copy)."""
        n = self._base.ntotal
        if not n:
            return np.empty((0, self.code_size), np.uint8)
        flat = faiss.rev_swig_ptr(self._base.xb.data(), n * self.code_size)
        return flat.reshape(n, self.code_size)

    # -- changes -----------------------------------------------------------------------

    def _prepare(self, ids: np.ndarray, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validated ids sorted and unique (a repeated id keeps its last code), packed codes."""
        ids = np.array(ids, dtype=np.int64).ravel()  # a copy: the base keeps it
        packed = np.asarray(packed)
        if packed.ndim != 2 or len(ids) != len(packed):
            raise ValueError("one id per code (codes: N x bits)")
        if packed.shape[1] != self.code_size or packed.dtype != np.uint8:
            raise ValueError(f"packed codes must be N x {self.code_size} uint8")
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
            order = np.argsort(ids, kind="stable")
            ids, packed = ids[order], packed[order]
            last = np.append(ids[1:] != ids[:-1], True)  # stable sort: last of a run wins
            if not last.all():
                ids, packed = ids[last], packed[last]
        return ids, packed

    def _hide(self, ids: np.ndarray) -> int:
        """Hide the live base rows of these (sorted, unique) ids; returns how many."""
        n = len(self._base_ids)
        if not n or not len(ids):
            return 0
        rows = np.minimum(np.searchsorted(self._base_ids, ids), n - 1)
        rows = rows[self._base_ids[rows] == ids]
        rows = rows[self._alive[rows]]
        self._alive[rows] = False
        self._hidden += len(rows)
        if len(rows):
            self._hidden_codes = np.concatenate([self._hidden_codes, self._base_codes()[rows]])
        return len(rows)

    def _drop_delta(self, ids: np.ndarray) -> int:
        if not len(self._delta_ids) or not len(ids):
            return 0
        keep = ~np.isin(self._delta_ids, ids)
        dropped = len(keep) - int(keep.sum())
        if dropped:
            self._delta_ids = self._delta_ids[keep]
            self._delta_codes = self._delta_codes[keep]
        return dropped

    def upsert(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add new items and replace the codes of known ids ({-1, +1} N x bits)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or len(np.ravel(ids)) != len(codes):
            raise ValueError("one id per code (codes: N x bits)")
        if codes.shape[1] != self.bits:
            raise ValueError(f"codes have {codes.shape[1]} bits, the index {self.bits}")
        self.upsert_packed(ids, pack(codes))

    def upsert_packed(self, ids: np.ndarray, packed: np.ndarray) -> None:
        """``upsert`` of codes already packed (N x bits/8 uint8, codes.packed_from_int)."""
        ids, packed = self._prepare(ids, packed)
        if not len(ids):
            return
        if not len(self):  # bulk load (or reload of an emptied index): straight into the base
            self._set_base(ids, packed)
            self._delta_ids = np.empty(0, np.int64)
            self._delta_codes = np.empty((0, self.code_size), np.uint8)
            return
        self._hide(ids)
        self._drop_delta(ids)
        self._delta_ids = np.concatenate([self._delta_ids, ids])
        self._delta_codes = np.concatenate([self._delta_codes, packed])
        self._maybe_compact()

    def remove(self, ids: np.ndarray) -> int:
        """Drop these ids (unknown ones are ignored); returns how many were removed."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        removed = self._hide(ids) + self._drop_delta(ids)
        self._maybe_compact()
        return removed

    def _maybe_compact(self) -> None:
        max_delta = max(self.min_delta, int(self.delta_fraction * self._base.ntotal))
        if len(self._delta_ids) > max_delta or self._hidden > self.max_hidden:
            self.compact()

    def compact(self) -> None:
        """Merge the delta and the live base rows into a new sorted base."""
        if not len(self._delta_ids) and not self._hidden:
            return
        start = time.perf_counter()
        rows = self._base_codes().view(self._row).ravel()  # one void scalar per code
        ids = self._base_ids
        if self._hidden:
            ids, rows = ids[self._alive], rows[self._alive]  # copies
        else:
            rows = rows.copy()  # the view dies with the old base
        order = np.argsort(self._delta_ids)
        delta_ids = self._delta_ids[order]
        delta_rows = self._delta_codes[order].view(self._row).ravel()
        at = np.searchsorted(ids, delta_ids)  # delta ids are never live in the base
        ids, rows = np.insert(ids, at, delta_ids), np.insert(rows, at, delta_rows)
        self._set_base(ids, rows.view(np.uint8).reshape(len(ids), self.code_size))
        self._delta_ids = np.empty(0, np.int64)
        self._delta_codes = np.empty((0, self.code_size), np.uint8)
        self.compactions += 1
        self.last_compaction_s = time.perf_counter() - start

    # -- search ------------------------------------------------------------------------

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids), each Q x min(k, len); nearest first, exact."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.bits:
            raise ValueError(f"queries must be Q x {self.bits} codes")
        k = max(0, min(k, len(self)))
        if k == 0 or not len(codes):
            empty = np.zeros((len(codes), k), np.int64)
            return empty.astype(np.int32), empty
        queries = pack(codes)
        parts = []
        if self._base.ntotal > self._hidden:
            parts.append(self._search_base(queries, k))
        if len(self._delta_ids):
            parts.append(self._search_delta(queries, k))
        if not len(self._delta_ids):  # the base part alone: k live rows, sorted
            return parts[0]
        distances = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        line = np.arange(len(order))[:, None]
        return distances[line, order], ids[line, order]

    def _search_base(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top min(k, live base rows) live base rows of each query, nearest first."""
        n, hidden = self._base.ntotal, self._hidden
        want = min(k, n - hidden)
        if not hidden:
            distances, rows = self._base.search(queries, want)
            return distances, self._base_ids[rows]
        # expected hidden rows among the top k: k * hidden / live; ask for twice that + 16,
        # plus the hidden rows right at a query (the old codes of a bulk re-tag, say)
        margin = 16 + math.ceil(2 * k * hidden / (n - hidden))
        if hidden > margin:
            margin += self._most_hidden_near(queries)
        width = min(n, k + min(hidden, margin))
        distances, rows = self._base.search(queries, width)
        alive = self._alive[rows]
        if alive[:, :want].all():  # the common case: no hidden row among the top want
            return distances[:, :want], self._base_ids[rows[:, :want]]
        short = alive.sum(axis=1) < want  # never when width == n
        while short.any():
            # queries near many hidden rows (say the old codes of a bulk re-tag): widen to 4x
            # the hidden rows they met, or straight to k + hidden, which holds k live rows
            met = int((~alive[short]).sum(axis=1).max())
            grown = k + 4 * met + 16
            wider = min(n, k + hidden if grown > k + hidden // 2 else grown)
            found, more = self._base.search(queries[short], wider)
            self.extra_searches += 1
            pad = ((0, 0), (0, wider - width))
            distances, rows, alive = (np.pad(a, pad) for a in (distances, rows, alive))
            distances[short], rows[short] = found, more
            alive[short] = self._alive[more]
            short[short] = alive[short].sum(axis=1) < want
            width = wider
        # the first `want` live rows of each query, in distance order
        keep = np.argsort(~alive, axis=1, kind="stable")[:, :want]
        line = np.arange(len(keep))[:, None]
        return distances[line, keep], self._base_ids[rows[line, keep]]

    def _most_hidden_near(self, queries: np.ndarray) -> int:
        """The most hidden rows within bits/16 of one query (they would crowd out its top k)."""
        block = max(1, (1 << 22) // (self._hidden * self.code_size))
        return max(int((self._distances(queries[lo:lo + block], self._hidden_codes)
                        <= self.bits // 16).sum(axis=1).max())
                   for lo in range(0, len(queries), block))

    def _distances(self, queries: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """Q x M Hamming distances between packed codes (XOR + popcount, for small M)."""
        xor = np.bitwise_xor(queries.view(self._word)[:, None, :],
                             packed.view(self._word)[None, :, :])
        return np.bitwise_count(xor).sum(axis=2, dtype=np.int32)

    def _search_delta(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The delta's top min(k, delta size) of each query (unsorted), by brute force."""
        m = len(self._delta_ids)
        kk = min(k, m)
        block = max(1, (1 << 22) // (m * self.code_size))  # bounds the Q x M temporaries
        distances = np.empty((len(queries), kk), np.int32)
        ids = np.empty((len(queries), kk), np.int64)
        for lo in range(0, len(queries), block):
            dist = self._distances(queries[lo:lo + block], self._delta_codes)
            if kk < m:
                top = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
                distances[lo:lo + block] = dist[np.arange(len(top))[:, None], top]
                ids[lo:lo + block] = self._delta_ids[top]
            else:
                distances[lo:lo + block] = dist
                ids[lo:lo + block] = self._delta_ids
        return distances, ids
