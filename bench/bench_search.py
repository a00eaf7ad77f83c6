"""Hamming search latency at 100k and 1M codes: faiss's exact binary index against a
brute-force numpy popcount scan measured in the same run; plus query encoding time.

    python bench/bench_search.py [--sizes 100000,1000000] [--bits 64] [--queries 100]
                                 [--model default]

Both searches return the exact top-k; the script checks that their distances agree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.index import HammingIndex, pack  # noqa: E402

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
    args = parser.parse_args()
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
        from classifier.imageio import decode_image  # noqa: F401  (import cost not timed)
        from retrieval.store import Retriever

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


if __name__ == "__main__":
    main()
