"""imagery.partial: what the model sees of a tile that holds data in part of it."""

from __future__ import annotations

import numpy as np
import pytest

from imagery.partial import VIEWS, data_window, model_view, scaled


def tile(width: int = 24, height: int = 32, size: int = 32) -> np.ndarray:
    """A size x size tile whose top-left width x height holds data, the rest black."""
    rng = np.random.default_rng(width * 100 + height)
    out = np.zeros((size, size, 3), np.uint8)
    out[:height, :width] = rng.integers(30, 220, (height, width, 3), dtype=np.uint8)
    return out


def test_data_window_is_the_box_of_the_valid_pixels():
    valid = np.zeros((8, 10), bool)
    assert data_window(valid) is None  # no data: nothing to look at
    valid[2:5, 3:9] = True
    assert data_window(valid) == (3, 2, 6, 3)
    assert data_window(np.ones((8, 10), bool)) is None  # all data: no window


def test_pad_and_no_window_leave_the_tile_as_stored():
    chip = tile()
    assert model_view(chip, (0, 0, 24, 32), "pad") is chip
    assert model_view(chip, None, "mirror") is chip
    with pytest.raises(ValueError, match="one of"):
        model_view(chip, (0, 0, 24, 32), "stretch")


def test_mirror_reflects_the_data_over_the_padding():
    chip = tile(width=10)  # narrower than the padding: reflected more than once
    seen = model_view(chip, (0, 0, 10, 32), "mirror")
    assert seen.shape == chip.shape
    np.testing.assert_array_equal(seen[:, :10], chip[:, :10])  # the data stays in place
    np.testing.assert_array_equal(seen[:, 10:20], chip[:, 9::-1])  # its mirror image
    np.testing.assert_array_equal(seen[:, 20:30], chip[:, :10])
    assert seen.reshape(-1, 3).max(axis=1).min() >= 30  # no black left


def test_mirror_of_a_window_inside_the_tile_grows_both_ways():
    chip = np.zeros((16, 16, 3), np.uint8)
    chip[4:8, 6:10] = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) + 50
    seen = model_view(chip, (6, 4, 4, 4), "mirror")
    np.testing.assert_array_equal(seen[4:8, 6:10], chip[4:8, 6:10])
    np.testing.assert_array_equal(seen[3], seen[4])  # symmetric: the edge row repeats
    assert seen.min() >= 50


def test_fill_paints_the_padding_in_the_mean_colour():
    chip = tile()
    seen = model_view(chip, (0, 0, 24, 32), "fill")
    np.testing.assert_array_equal(seen[:, :24], chip[:, :24])
    mean = chip[:, :24].reshape(-1, 3).mean(axis=0).round()
    np.testing.assert_array_equal(seen[5, 30], mean)


def test_crop_keeps_the_data_alone():
    chip = tile()
    seen = model_view(chip, (0, 0, 24, 32), "crop")
    assert seen.shape == (32, 24, 3)
    np.testing.assert_array_equal(seen, chip[:, :24])


def test_a_window_follows_a_reduced_decode():
    """Decoding may reduce a 256 px tile: the window scales with it, at least 1 px."""
    assert scaled((0, 0, 128, 256), (256, 256), (64, 64)) == (0, 0, 32, 64)
    assert scaled((0, 0, 1, 256), (256, 256), (32, 32)) == (0, 0, 1, 32)
    chip = tile(width=16, size=32)
    small = chip[::2, ::2]  # the same tile at half size
    seen = model_view(small, (0, 0, 16, 32), "crop", source=(32, 32))
    assert seen.shape == (16, 8, 3)


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_gives_the_predictor_an_rgb_array(view):
    seen = model_view(tile(width=5, height=7), (0, 0, 5, 7), view)
    assert seen.dtype == np.uint8 and seen.ndim == 3 and seen.shape[2] == 3
