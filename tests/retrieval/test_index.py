"""The Hamming index returns exactly what a brute-force scan returns."""

import numpy as np
import pytest

from retrieval.index import HammingIndex, LiveHammingIndex
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


# -- LiveHammingIndex: random changes and searches checked against a brute-force model ----

SMALL = {"min_delta": 6, "delta_fraction": 0.05, "max_hidden": 4}  # compacts often
LARGE = {"min_delta": 10**6, "max_hidden": 10**6}  # never compacts: hidden rows pile up


def _near(centers, n, flips, rng):
    """Codes a few bit flips away from random centers (clustered: ties, shared neighbours)."""
    codes = centers[rng.integers(0, len(centers), n)].copy()
    flip = rng.random(codes.shape) < flips / codes.shape[1]
    codes[flip] *= -1
    return codes


def _check_search(index, model, queries, k):
    """The index's answer equals brute force over the model (id -> current code)."""
    distances, found = index.search(queries, k)
    n = min(k, len(model))
    assert distances.shape == found.shape == (len(queries), n)
    if not model:
        return
    live = np.array(sorted(model))
    brute = hamming(queries, np.stack([model[i] for i in live]))
    for q in range(len(queries)):
        assert distances[q].tolist() == np.sort(brute[q])[:n].tolist()
        ids = found[q].tolist()
        assert len(set(ids)) == n  # no id twice (an old row of a replaced id would be)
        assert all(i in model for i in ids)  # removed ids never come back
        rows = np.searchsorted(live, ids)
        assert brute[q][rows].tolist() == distances[q].tolist()  # each at its current code


@pytest.mark.parametrize("thresholds", [SMALL, LARGE], ids=["compacting", "no-compaction"])
@pytest.mark.parametrize("bits", [16, 32, 64])
def test_live_index_equals_brute_force_under_random_changes(bits, thresholds):
    rng = np.random.default_rng(bits)
    centers = _codes(6, bits, bits + 1)
    start = rng.choice(300, 120, replace=False)
    start_codes = _near(centers, len(start), 3, rng)
    model = {int(i): c for i, c in zip(start, start_codes)}
    index = LiveHammingIndex.from_codes(start, start_codes, **thresholds)
    assert index.delta_size == 0 and len(index) == len(model)
    removed_ever = set()
    for step in range(250):
        op = rng.random()
        if op < 0.45:  # a group of upserts: new ids and replacements, repeats allowed
            ids = rng.integers(0, 400, rng.integers(1, 12))
            codes = _near(centers, len(ids), 3, rng)
            index.upsert(ids, codes)
            for i, c in zip(ids.tolist(), codes):
                model[i] = c  # the last code of a repeated id wins
                removed_ever.discard(i)
        elif op < 0.65:
            ids = rng.integers(0, 450, rng.integers(1, 8))  # some unknown
            expected = len(set(ids.tolist()) & set(model))
            assert index.remove(ids) == expected
            for i in ids.tolist():
                if model.pop(i, None) is not None:
                    removed_ever.add(i)
        else:
            queries = np.concatenate([_near(centers, 3, 4, rng), _codes(1, bits, step)])
            k = int(rng.choice([1, 5, 17, 50, 1000]))
            _check_search(index, model, queries, k)
        assert len(index) == len(model)
        if step % 25 == 0:  # a full listing holds exactly the live ids
            everything = index.search(centers[:1], 10**6)[1][0]
            assert sorted(everything.tolist()) == sorted(model)
            assert not removed_ever & set(everything.tolist())
            probe = int(rng.integers(0, 450))
            assert (probe in index) == (probe in model)
    if thresholds is SMALL:
        assert index.compactions > 0 and index.hidden <= 4
    else:
        assert index.compactions == 0 and index.hidden > 100


def _at_distance(center, n, distance, rng):
    """n codes exactly `distance` bits away from center (1 x bits)."""
    codes = np.repeat(center, n, axis=0)
    for row in codes:
        row[rng.choice(len(row), distance, replace=False)] *= -1
    return codes


@pytest.mark.parametrize("bits", [16, 64])
@pytest.mark.parametrize("distance", ["at", "beyond"])
def test_live_index_finds_neighbours_behind_many_hidden_rows(bits, distance):
    """Queries whose nearest base rows are mostly hidden: hidden rows within bits/16 of the
    query widen the first search, ones further away take more searches of the base."""
    rng = np.random.default_rng(3)
    center = _codes(1, bits, 4)
    radius = bits // 16 if distance == "at" else bits // 16 + 2
    crowd = _at_distance(center, 400, radius, rng)  # 400 codes around the query
    far = -_near(center, 600, 1, rng)  # and 600 at distance ~bits - 1
    ids = np.arange(1000)
    index = LiveHammingIndex.from_codes(ids, np.concatenate([crowd, far]), **LARGE)
    model = dict(zip(ids.tolist(), np.concatenate([crowd, far])))
    moved = ids[:390]  # all but 10 of the crowd move far away: 390 hidden base rows
    new_codes = -_near(center, len(moved), 1, rng)
    index.upsert(moved, new_codes)
    model.update(zip(moved.tolist(), new_codes))
    assert index.hidden == 390 and index.delta_size == 390
    for k in (5, 10, 20, 50):
        before = index.extra_searches
        _check_search(index, model, center, k)
        # near the query: one search of the base; further: widened until k + hidden
        assert (index.extra_searches == before) == (distance == "at")
    _check_search(index, model, np.concatenate([center, -center]), 30)


def test_live_index_replace_remove_and_edge_cases():
    db = _codes(50, 32, 2)
    index = LiveHammingIndex(32)
    assert len(index) == 0 and index.search(db[:2], 5)[1].shape == (2, 0)
    index.upsert(np.arange(50), db)  # into an empty index: straight into the base
    assert index.base_size == 50 and index.delta_size == 0 and len(index) == 50
    index.upsert(np.array([3]), -db[3:4])  # replace item 3 by its complement
    assert len(index) == 50 and index.hidden == 1 and index.delta_size == 1
    distances, ids = index.search(-db[3:4], 1)
    assert ids[0, 0] == 3 and distances[0, 0] == 0
    distances, ids = index.search(db[3:4], 50)  # its old code: item 3 only at distance 32
    assert distances[0, ids[0].tolist().index(3)] == 32
    assert index.remove(np.array([3, 4, 999, 4])) == 2
    assert len(index) == 48 and 3 not in index and 4 not in index and 5 in index
    assert 3 not in index.search(db, 48)[1]
    assert index.search(db[:1], 500)[0].shape == (1, 48)  # k > len
    assert index.search(db[:0], 5)[1].shape == (0, 5)  # no query
    index.compact()
    assert index.compactions == 1 and index.hidden == 0 and index.delta_size == 0
    assert index.base_size == 48
    index.remove(np.arange(50))
    assert len(index) == 0 and index.search(db[:1], 3)[0].shape == (1, 0)
    index.upsert(np.array([7, 8]), db[:2])
    assert len(index) == 2 and index.search(db[:1], 3)[1][0].tolist() == [7, 8]


def test_live_index_delta_only_and_bulk_load_with_repeated_ids():
    db = _codes(6, 16, 5)
    index = LiveHammingIndex(16, min_delta=100, max_hidden=100)
    index.upsert(np.array([1, 2, 3]), db[:3])
    index.upsert(np.array([1, 2, 3]), db[3:])  # every base row hidden, all live in the delta
    assert index.base_size == 3 and index.hidden == 3 and index.delta_size == 3
    _check_search(index, dict(zip([1, 2, 3], db[3:])), db, 2)
    # bulk load, ids unsorted and repeated: the last code of an id wins
    ids = np.array([9, 2, 5, 2, 9, 0])
    loaded = LiveHammingIndex.from_codes(ids, db)
    assert loaded.delta_size == 0 and len(loaded) == 4
    _check_search(loaded, {9: db[4], 2: db[3], 5: db[2], 0: db[5]}, db, 4)


def test_live_index_matches_hamming_index_and_refuses_bad_input():
    db, queries = _codes(2000, 64, 6), _codes(30, 64, 7)
    ids = np.arange(2000) * 5
    live, flat = LiveHammingIndex.from_codes(ids, db), HammingIndex(64)
    flat.add(ids, db)
    assert (live.search(queries, 20)[0] == flat.search(queries, 20)[0]).all()
    with pytest.raises(ValueError):
        LiveHammingIndex(12)
    with pytest.raises(ValueError):
        live.upsert(np.arange(2), _codes(2, 32, 0))
    with pytest.raises(ValueError):
        live.upsert(np.arange(3), _codes(2, 64, 0))
    with pytest.raises(ValueError):
        live.search(_codes(1, 32, 0), 5)
