"""A Hamming index over {-1, +1} codes on faiss's exact binary index.

add / remove by integer id, search top-k with distances, save / load. Codes are packed
into bits (faiss wants the bit count to be a multiple of 8: 16, 32, 64 all are).
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


def pack(codes: np.ndarray) -> np.ndarray:
    """{-1, +1} (or {0, 1}) N x bits -> N x bits/8 uint8."""
    return np.packbits((np.asarray(codes) > 0).astype(np.uint8), axis=1)


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
