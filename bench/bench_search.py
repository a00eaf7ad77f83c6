"""Hamming search latency at 100k and 1M codes: faiss's exact binary index against a
brute-force numpy popcount scan measured in the same run; plus query encoding time; plus a
live index at 1M codes searched while codes are being upserted.

    python bench/bench_search.py [--sizes 100000,1000000] [--bits 64] [--queries 100]
                                 [--model default] [--live-size 1000000] [--add-rate 50]
                                 [--live-seconds 20] [--smoke]

Both searches return the exact top-k; the script checks that their distances agree.

The live section (``--live-size 0`` skips it) loads a LiveHammingIndex with ``--live-size``
codes and times single top-k searches: quiet (no changes), then for ``--live-seconds`` while
a writer thread upserts ``--add-rate`` codes/s (groups of 5, a mix of new ids and
replacements, with occasional removals; one lock serialises the writer and the searches, as
in a web process), then with the delta and the hidden rows just under the compaction
thresholds (the worst state between two compactions). It also times one compaction and, for
comparison, rebuilding a HammingIndex from every code (what each change cost before). The
target: p50 and p95 during ingestion <= 1.5x the quiet p50. Results are checked against a
rebuilt index at the end. faiss runs single-threaded there (``--live-threads``): with as
many OpenMP threads as cores, any other busy process on the machine stretches the p95 of a
single-query search from ~0.7 ms to 10-100 ms.

``--smoke`` (the test suite's run): 2,000 codes, 5 queries, the default model, a live
index of 5,000 codes for 1 s at 50 codes/s; seconds, no figures worth keeping.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.codes import pack  # noqa: E402
from retrieval.index import HammingIndex, LiveHammingIndex  # noqa: E402

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def brute_force(queries_packed: np.ndarray, db_packed: np.ndarray, k: int) -> np.ndarray:
    """Top-k distances by XOR + popcount table over every database code, per query."""
    out = np.empty((len(queries_packed), k), np.int32)
    for row, query in enumerate(queries_packed):
        distances = POPCOUNT[np.bitwise_xor(db_packed, query)].sum(axis=1, dtype=np.int32)
        top = np.argpartition(distances, k)[:k]
        out[row] = np.sort(distances[top])
    return out


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("-k", type=int, default=50)
    parser.add_argument("--model", default="default",
                        help="retrieval model for the encoding timings ('' to skip)")
    parser.add_argument("--live-size", type=int, default=1_000_000,
                        help="codes in the live-index section (0 to skip it)")
    parser.add_argument("--add-rate", type=float, default=50,
                        help="codes upserted per second during ingestion")
    parser.add_argument("--live-seconds", type=float, default=20,
                        help="how long the searches during ingestion run")
    parser.add_argument("--live-threads", type=int, default=1,
                        help="faiss OpenMP threads in the live section (0: faiss's default); "
                             "a web process's single-query searches gain nothing from more, "
                             "and on a busy machine more make the slow tail very long")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite: "
                        "--sizes 2000 --queries 5 --live-size 5000 --live-seconds 1")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.queries, args.live_size, args.live_seconds = "2000", 5, 5000, 1
    rng = np.random.default_rng(0)
    queries = np.where(rng.random((args.queries, args.bits)) > 0.5, 1, -1).astype(np.int8)
    print(f"{args.bits}-bit codes, {args.queries} queries, top {args.k}; best of 3 runs")
    print(f"{'database':>10} {'faiss ms/query':>15} {'numpy ms/query':>15} {'speed-up':>9}")
    for size in [int(s) for s in args.sizes.split(",")]:
        db = np.where(rng.random((size, args.bits)) > 0.5, 1, -1).astype(np.int8)
        index = HammingIndex(args.bits)
        index.add(np.arange(size), db)
        t_index, (distances, _ids) = timed(lambda ix=index: ix.search(queries, args.k))
        db_packed, q_packed = pack(db), pack(queries)
        t_brute, brute = timed(lambda d=db_packed, q=q_packed: brute_force(q, d, args.k),
                               repeat=1)
        assert (np.sort(distances, axis=1) == brute).all(), "faiss and brute force disagree"
        per = 1000 / args.queries
        print(f"{size:>10,} {t_index * per:15.3f} {t_brute * per:15.3f} "
              f"{t_brute / t_index:8.1f}x")
    if args.model:
        from imagery.decode import decode_image  # noqa: F401  (import cost not timed)
        from retrieval.retriever import Retriever

        start = time.perf_counter()
        retriever = Retriever(args.model)
        load = time.perf_counter() - start
        bits = max(retriever.bits)
        texts = ["water river forest", "clouds over farmland with a road", "houses"] * 20
        images = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(60)]
        retriever.text_codes(texts[:2], bits)  # warm-up
        retriever.image_codes(images[:2], bits)
        text_one = statistics.median(timed(lambda: retriever.text_codes([texts[0]], bits),
                                           5)[0] for _ in range(3))
        text_batch, _ = timed(lambda: retriever.text_codes(texts, bits))
        image_one = statistics.median(timed(lambda: retriever.image_codes([images[0]], bits),
                                            5)[0] for _ in range(3))
        image_batch, _ = timed(lambda: retriever.image_codes(images, bits))
        print(f"\nencoding with {args.model} ({retriever.encoder.name} texts, "
              f"{retriever.image_size}px images), model load {load:.2f} s")
        print(f"  text query:  {text_one * 1000:.2f} ms one, "
              f"{text_batch / len(texts) * 1000:.2f} ms/text in a batch of {len(texts)}")
        print(f"  image query: {image_one * 1000:.2f} ms one (256x256 RGB), "
              f"{image_batch / len(images) * 1000:.2f} ms/image in a batch of {len(images)}")

    if args.live_size:
        threads = faiss.omp_get_max_threads()
        if args.live_threads:
            faiss.omp_set_num_threads(args.live_threads)
        try:
            live_section(args, queries)
        finally:
            faiss.omp_set_num_threads(threads)


def random_codes(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    return np.where(rng.random((n, bits)) > 0.5, 1, -1).astype(np.int8)


def latencies(index, queries: np.ndarray, k: int, lock: threading.Lock,
              seconds: float | None = None, passes: int = 1) -> np.ndarray:
    """Seconds per single-query search, cycling over the queries (for `seconds` or `passes`)."""
    out, q = [], 0
    end = time.perf_counter() + (seconds or 0)
    while time.perf_counter() < end if seconds else q < passes * len(queries):
        query = queries[q % len(queries):q % len(queries) + 1]
        start = time.perf_counter()
        with lock:
            index.search(query, k)
        out.append(time.perf_counter() - start)
        q += 1
    return np.array(out)


class Writer(threading.Thread):
    """Upserts `rate` codes/s in groups of 5 (new ids and replacements), removes 2 ids every
    10th group; mirrors every change into a packed truth table for the final check."""

    def __init__(self, index: LiveHammingIndex, lock: threading.Lock, size: int, bits: int,
                 rate: float, truth: np.ndarray, alive: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.index, self.lock, self.bits = index, lock, bits
        self.interval = 5 / rate
        self.next_id, self.truth, self.alive = size, truth, alive
        self.rng = np.random.default_rng(1)
        self.stop = threading.Event()
        self.written = self.removed = self.groups = 0
        self.elapsed = 0.0
        self.longest = 0.0

    def run(self) -> None:
        start = due = time.perf_counter()
        while not self.stop.is_set():
            new = int(self.rng.integers(1, 4))  # 1-3 new ids, the rest replacements
            fresh = np.arange(self.next_id, self.next_id + new)
            if self.next_id + new > len(self.truth):
                break
            replaced = self.rng.integers(0, self.next_id, 5 - new)  # a removed one: re-added
            ids = np.concatenate([fresh, replaced])
            codes = random_codes(self.rng, len(ids), self.bits)
            gone = (self.rng.integers(0, self.next_id, 2) if self.groups % 10 == 9
                    else np.empty(0, np.int64))
            with self.lock:
                began = time.perf_counter()
                self.index.upsert(ids, codes)
                if len(gone):
                    self.removed += self.index.remove(gone)
                self.longest = max(self.longest, time.perf_counter() - began)
            self.next_id += new
            self.truth[ids], self.alive[ids] = pack(codes), True
            self.alive[gone] = False
            self.written += len(ids)
            self.groups += 1
            due += self.interval
            self.stop.wait(max(0.0, due - time.perf_counter()))
        self.elapsed = time.perf_counter() - start


def live_section(args, queries: np.ndarray) -> None:
    size, bits, k = args.live_size, args.bits, args.k
    rng = np.random.default_rng(2)
    db = random_codes(rng, size, bits)
    ids = np.arange(size)
    lock = threading.Lock()
    print(f"\nlive index: {size:,} {bits}-bit codes, single top-{k} searches over "
          f"{len(queries)} queries, {faiss.omp_get_max_threads()} faiss thread(s); "
          f"load average {os.getloadavg()[0]:.2f} at the start")

    t_rebuild, _ = timed(lambda: HammingIndex(bits).add(ids, db))
    t_load, index = timed(lambda: LiveHammingIndex.from_codes(ids, db))
    check = HammingIndex(bits)
    check.add(ids, db)
    assert (index.search(queries, k)[0] == check.search(queries, k)[0]).all()
    del check

    window = max(2.0, args.live_seconds / 4)  # long enough to average over background load
    latencies(index, queries, k, lock, passes=1)  # warm-up
    quiet = latencies(index, queries, k, lock, seconds=window)
    quiet_p50 = np.percentile(quiet, 50)

    capacity = size + int(args.add_rate * args.live_seconds) + 1000
    truth = np.zeros((capacity, bits // 8), np.uint8)
    truth[:size] = pack(db)
    alive = np.zeros(capacity, bool)
    alive[:size] = True
    writer = Writer(index, lock, size, bits, args.add_rate, truth, alive)
    writer.start()
    during = latencies(index, queries, k, lock, seconds=args.live_seconds)
    writer.stop.set()
    writer.join()
    compactions = index.compactions
    during_compaction = index.last_compaction_s if compactions else None
    state = f"delta {index.delta_size:,}, hidden {index.hidden:,}"

    # exact against a rebuild of the final state
    rebuilt = faiss_flat(truth[alive], bits)
    live_d = index.search(queries, k)[0]
    assert (live_d == rebuilt.search(pack(queries), k)[0]).all(), "live index is not exact"
    assert len(index) == int(alive.sum())

    # the worst state between compactions: delta and hidden rows just under the thresholds
    max_delta = max(index.min_delta, int(index.delta_fraction * index.base_size))
    index.compact()
    t_compact = index.last_compaction_s
    live_ids = np.flatnonzero(alive)
    hide = rng.choice(live_ids, index.max_hidden, replace=False)
    index.upsert(hide, random_codes(rng, len(hide), bits))  # hides max_hidden base rows
    fresh = np.arange(capacity, capacity + max_delta - len(hide))
    for lo in range(0, len(fresh), 5000):
        index.upsert(fresh[lo:lo + 5000], random_codes(rng, len(fresh[lo:lo + 5000]), bits))
    assert index.delta_size == max_delta and index.hidden == index.max_hidden
    worst_state = f"delta {index.delta_size:,}, hidden {index.hidden:,}"
    worst = latencies(index, queries, k, lock, seconds=window)

    # the bad case for the first search's margin: many hidden rows near the query (e.g. the
    # old text codes of a bulk re-tag). Those within bits/16 widen the first search of the
    # base; ones a little further make it search the base again, wider.
    per_query = 32
    near = queries[:max(1, index.max_hidden // per_query)]
    crowded = {}
    for label, flips in (("at", 0), ("beyond", bits // 16 + 2)):
        index.compact()
        crowd = np.repeat(near, per_query, axis=0)
        for code in crowd:
            code[rng.choice(bits, flips, replace=False)] *= -1
        crowd_ids = np.arange(len(crowd)) + capacity + max_delta + len(crowd) * (flips > 0)
        index.upsert(crowd_ids, crowd)
        index.compact()
        index.upsert(crowd_ids, -crowd)  # now hidden, per_query of them around each query
        extra = index.extra_searches
        times = latencies(index, near, k, lock, seconds=window)
        crowded[label] = (times, flips, (index.extra_searches - extra) / len(times))
    crowded_state = f"hidden {index.hidden:,}: {per_query} at each of {len(near)} queries"

    def row(name: str, times: np.ndarray, note: str) -> None:
        p50, p95 = np.percentile(times, 50) * 1000, np.percentile(times, 95) * 1000
        print(f"  {name:<26} {p50:8.3f} {p95:8.3f} {p50 / quiet_p50 / 1000:8.2f}x "
              f"{p95 / quiet_p50 / 1000:8.2f}x  {len(times):>6}  {note}")

    print(f"  {'searches':<26} {'p50 ms':>8} {'p95 ms':>8} {'p50/q50':>9} {'p95/q50':>9}  "
          f"{'count':>6}  state")
    row("quiet", quiet, "no changes")
    row(f"during ingestion ({args.live_seconds:g} s)", during,
        f"{state} at the end")
    row("at compaction thresholds", worst, worst_state)
    for name, (times, flips, extra) in zip(("hidden rows at the query", "hidden rows further out"),
                                           crowded.values()):
        row(name, times, f"{crowded_state}, distance {flips}; {extra:.1f} extra base "
            "searches per search")
    rate = writer.written / writer.elapsed if writer.elapsed else 0.0
    print(f"  writer: {writer.written:,} codes upserted ({rate:.1f}/s, groups of 5, "
          f"{writer.removed} removed), longest change {writer.longest * 1000:.2f} ms "
          "(inside the lock)")
    print(f"  compactions during ingestion: {compactions}"
          + (f" ({during_compaction * 1000:.1f} ms the last)" if during_compaction else "")
          + f"; one compaction of the final state: {t_compact * 1000:.1f} ms "
          f"(thresholds: delta > {max_delta:,} or hidden > {index.max_hidden:,})")
    print(f"  bulk load LiveHammingIndex.from_codes: {t_load * 1000:.1f} ms; "
          f"old way, rebuild HammingIndex from all {size:,} codes: {t_rebuild * 1000:.1f} ms "
          "per change")
    worst_ratio = max(np.percentile(during, 50), np.percentile(during, 95)) / quiet_p50
    print(f"  target p50 and p95 during ingestion <= 1.5x quiet p50: "
          f"{'met' if worst_ratio <= 1.5 else 'MISSED'} ({worst_ratio:.2f}x); "
          f"load average {os.getloadavg()[0]:.2f} at the end")


def faiss_flat(packed: np.ndarray, bits: int) -> faiss.IndexBinaryFlat:
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(np.ascontiguousarray(packed))
    return flat


if __name__ == "__main__":
    main()
