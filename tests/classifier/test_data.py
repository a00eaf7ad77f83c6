"""Planet-format labels, image loading from folders and tars, and reproducible splits."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image

from imagery.datasets import (
    LabelTable,
    iter_image_bytes,
    load_images,
    read_labels,
    split_indices,
    write_labels,
)

CSV = (
    "image_name,tags\n"
    "img_0,zebra moss zebra\n"
    "img_1,kiwi\n"
    "img_2,moss kiwi kiwi apricot\n"
    "img_3,\n"
)

COLOURS = {"img_0": (200, 10, 10), "img_1": (10, 200, 10), "img_2": (10, 10, 200),
           "img_3": (120, 120, 20)}


@pytest.fixture
def labels_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    return path


def test_read_labels_drops_duplicate_tags(labels_csv):
    table = read_labels(labels_csv)
    assert table.names == ["img_0", "img_1", "img_2", "img_3"]
    assert sorted(table.tags[0]) == ["moss", "zebra"]
    assert sorted(table.tags[2]) == ["apricot", "kiwi", "moss"]
    assert table.tags[3] == []


def test_duplicate_tags_count_once(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("image_name,tags\na,cultivation cultivation road\n")
    table = read_labels(path)
    assert sorted(table.tags[0]) == ["cultivation", "road"]
    assert table.matrix(table.vocabulary()).sum() == 2


def test_vocabulary_is_sorted_and_comes_from_the_data(labels_csv):
    assert read_labels(labels_csv).vocabulary() == ["apricot", "kiwi", "moss", "zebra"]


def test_matrix_over_given_labels(labels_csv):
    table = read_labels(labels_csv)
    y = table.matrix(["zebra", "kiwi", "unused"])  # apricot/moss ignored
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == np.float32


def test_subset_keeps_rows_in_order(labels_csv):
    sub = read_labels(labels_csv).subset([2, 0])
    assert sub.names == ["img_2", "img_0"]
    assert sorted(sub.tags[1]) == ["moss", "zebra"]


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "out.csv"
    write_labels(path, ["x", "y"], [["b", "a"], []])
    table = read_labels(path)
    assert table.names == ["x", "y"]
    assert sorted(table.tags[0]) == ["a", "b"] and table.tags[1] == []


def test_read_labels_rejects_bad_files(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,labels\na,b\n")
    with pytest.raises(ValueError, match="image_name"):
        read_labels(wrong)
    empty = tmp_path / "empty.csv"
    empty.write_text("image_name,tags\n")
    with pytest.raises(ValueError, match="no labelled rows"):
        read_labels(empty)


def _png(path, colour, size=(20, 14)):
    Image.new("RGB", size, colour).save(path)


def _check_loaded(result, expect_names, size):
    assert result.names == expect_names
    assert result.images.shape == (len(expect_names), size, size, 3)
    assert result.images.dtype == np.uint8
    assert result.labels == ["apricot", "kiwi", "moss", "zebra"]
    for i, name in enumerate(expect_names):  # (JPEG is lossy)
        assert np.all(np.abs(result.images[i].astype(int) - COLOURS[name]) <= 8), name
    table = read_labels_rows()
    expected_targets = table.subset([int(n[-1]) for n in expect_names]).matrix(result.labels)
    np.testing.assert_array_equal(result.targets, expected_targets)


def read_labels_rows() -> LabelTable:
    names = ["img_0", "img_1", "img_2", "img_3"]
    tags = [["moss", "zebra"], ["kiwi"], ["apricot", "kiwi", "moss"], []]
    return LabelTable(names, tags)


def test_load_images_from_folder_reports_missing_and_broken(tmp_path, labels_csv):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    _png(folder / "img_0.png", COLOURS["img_0"])
    _png(folder / "nested" / "img_2.jpg", COLOURS["img_2"], size=(30, 50))
    (folder / "img_1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (folder / "img_3.txt").write_text("not an image suffix")  # ignored, img_3 still missing
    result = load_images(read_labels(labels_csv), folder, size=16, progress=False)
    _check_loaded(result, ["img_0", "img_2"], 16)
    assert set(result.errors) == {"img_1", "img_3"}
    assert "no image file" in result.errors["img_3"]
    assert result.errors["img_1"]


def test_load_images_from_tar(tmp_path, labels_csv):
    staging = tmp_path / "staging" / "train-jpg"
    staging.mkdir(parents=True)
    for name in ("img_0", "img_1", "img_3"):
        _png(staging / f"{name}.jpg", COLOURS[name])
    (staging / "img_2.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    archive = tmp_path / "train.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(staging, arcname="train-jpg")
    result = load_images(read_labels(labels_csv), archive, size=8, progress=False)
    _check_loaded(result, ["img_0", "img_1", "img_3"], 8)
    assert list(result.errors) == ["img_2"]


def test_load_images_with_explicit_labels(tmp_path, labels_csv):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "img_2.png", COLOURS["img_2"])
    result = load_images(read_labels(labels_csv), folder, size=8, labels=["moss", "other"],
                         progress=False)
    assert result.labels == ["moss", "other"]
    np.testing.assert_array_equal(result.targets, [[1, 0]])


def test_load_images_none_readable(tmp_path, labels_csv):
    folder = tmp_path / "none"
    folder.mkdir()
    result = load_images(read_labels(labels_csv), folder, size=8, progress=False)
    assert result.images.shape == (0, 8, 8, 3)
    assert result.targets.shape == (0, 4)
    assert len(result.errors) == 4


def test_iter_image_bytes_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(iter_image_bytes(tmp_path / "missing.tar", {"a"}))


@pytest.mark.parametrize(("count", "fractions"), [(100, (0.2, 0.1)), (37, (0.15, 0.15)),
                                                   (10, (0.5,))])
def test_split_indices_sizes_and_disjointness(count, fractions):
    parts = split_indices(count, fractions, seed=3)
    assert len(parts) == len(fractions) + 1
    sizes = [int(round(count * f)) for f in fractions]
    assert [len(p) for p in parts[1:]] == sizes
    assert len(parts[0]) == count - sum(sizes)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(count))  # disjoint and complete
    for part in parts:
        assert np.all(np.diff(part) > 0)


def test_split_indices_deterministic_by_seed():
    a = split_indices(50, (0.2, 0.2), seed=7)
    b = split_indices(50, (0.2, 0.2), seed=7)
    c = split_indices(50, (0.2, 0.2), seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    # the split is shuffled, not just the first/last indices
    assert not np.array_equal(a[1], np.arange(30, 40))
