"""The Hamming index returns exactly what a brute-force scan returns."""

import numpy as np
import pytest

from retrieval.index import HammingIndex
from retrieval.metrics import hamming


def _codes(n, bits, seed):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, bits)) > 0.5, 1, -1).astype(np.int8)


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_search_equals_brute_force(bits):
    db, queries = _codes(500, bits, 0), _codes(20, bits, 1)
    ids = np.arange(500) * 3 + 7
    index = HammingIndex(bits)
    index.add(ids, db)
    distances, found = index.search(queries, 10)
    brute = hamming(queries, db)
    for q in range(len(queries)):
        expected = np.sort(brute[q])[:10]
        assert distances[q].tolist() == expected.tolist()
        # every returned id has exactly the reported distance
        assert [brute[q][(i - 7) // 3] for i in found[q]] == distances[q].tolist()


def test_add_replaces_remove_deletes_and_save_load_round_trips(tmp_path):
    db = _codes(50, 32, 2)
    index = HammingIndex(32)
    index.add(np.arange(50), db)
    index.add(np.array([3]), -db[3:4])  # replace item 3 by its complement
    assert len(index) == 50
    distances, ids = index.search(-db[3:4], 1)
    assert ids[0, 0] == 3 and distances[0, 0] == 0
    assert index.remove(np.array([3, 4, 999])) == 2
    assert len(index) == 48
    assert 3 not in index.search(db, 48)[1]
    index.save(tmp_path / "codes.index")
    loaded = HammingIndex.load(tmp_path / "codes.index")
    assert len(loaded) == 48 and loaded.bits == 32
    assert (loaded.search(db[:5], 5)[0] == index.search(db[:5], 5)[0]).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        HammingIndex(12)
    index = HammingIndex(16)
    with pytest.raises(ValueError):
        index.add(np.arange(2), _codes(2, 32, 0))
    assert index.search(_codes(1, 16, 0), 5)[1].shape == (1, 0)
