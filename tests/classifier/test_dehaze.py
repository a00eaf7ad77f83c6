"""Dark-channel dehazing: it must undo synthetic haze that obeys the model I = J t + A (1 - t)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from classifier.dehaze import (
    DehazeParams,
    atmospheric_light,
    dark_channel,
    dehaze,
    dehaze_float,
    dehaze_many,
    guided_filter,
)

AIRLIGHT = np.array([0.85, 0.85, 0.9], dtype=np.float32)


def _smooth(gen: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = gen.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _hazy_scene(size: int, seed: int):
    """Haze-free J obeying the dark channel prior (one channel is 0 at every pixel),
    smooth transmission t in [0.4, 0.8] and A = (0.85, 0.85, 0.9).

    He et al.'s airlight estimate needs a haze-opaque region (the brightest dark-channel
    pixels must be ~A), so the top-left eighth is a cloud with t = 0.02; with t >= 0.4
    everywhere no implementation of the stated step 2 can recover A.
    """
    gen = np.random.default_rng(seed)
    colours = 0.1 + 0.8 * np.stack([_smooth(gen, size, 4) for _ in range(3)], axis=-1)
    zero_channel = (_smooth(gen, size, 3) * 2.999).astype(int)
    scene = colours.copy()
    np.put_along_axis(scene, zero_channel[..., None], 0.0, axis=2)
    transmission = 0.4 + 0.4 * _smooth(gen, size, 3)
    cloud = np.zeros((size, size), dtype=bool)
    cloud[: size // 8, : size // 8] = True
    transmission[cloud] = 0.02
    hazy = scene * transmission[..., None] + AIRLIGHT * (1.0 - transmission[..., None])
    to_u8 = lambda x: (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    return to_u8(scene), to_u8(hazy), ~cloud


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("seed", [0, 1])
def test_dehaze_recovers_haze_free_scene(size, seed):
    scene, hazy, clear_area = _hazy_scene(size, seed)
    restored = dehaze(hazy)
    assert _mse(restored, scene) * 3 < _mse(hazy, scene)
    # outside the (unrecoverable) cloud the restoration is far better still
    assert _mse(restored[clear_area], scene[clear_area]) * 8 < _mse(hazy[clear_area],
                                                                    scene[clear_area])


def _edge_scene(size: int, seed: int):
    """Like _hazy_scene, but the haze changes abruptly: t = 0.3 on the left half and
    0.85 on the right (a haze bank's edge)."""
    gen = np.random.default_rng(seed)
    colours = 0.1 + 0.8 * np.stack([_smooth(gen, size, 4) for _ in range(3)], axis=-1)
    zero_channel = (_smooth(gen, size, 3) * 2.999).astype(int)
    scene = colours.copy()
    np.put_along_axis(scene, zero_channel[..., None], 0.0, axis=2)
    transmission = np.full((size, size), 0.85, np.float32)
    transmission[:, : size // 2] = 0.3
    transmission[: size // 8, : size // 8] = 0.02
    hazy = scene * transmission[..., None] + AIRLIGHT * (1.0 - transmission[..., None])
    to_u8 = lambda x: (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    return to_u8(scene), to_u8(hazy)


@pytest.mark.parametrize("size", [64, 256])
def test_guided_refinement_reduces_halo_at_haze_edges(size):
    """The block-wise dark channel over-estimates t next to a haze edge (a halo); the
    guided filter is what removes it, so dehaze() must beat the unrefined recovery there."""
    scene, hazy = _edge_scene(size, seed=0)
    params = DehazeParams()
    window, _ = params.scaled(size, size)
    image = hazy.astype(np.float32) / 255
    light = atmospheric_light(image, dark_channel(image, window), params.top_fraction)
    raw_t = 1.0 - params.omega * dark_channel(image / light, window)
    unrefined = np.clip((image - light) / np.maximum(raw_t, params.t0)[..., None] + light, 0, 1)
    unrefined = (unrefined * 255 + 0.5).astype(np.uint8)
    restored = dehaze(hazy)
    band = (slice(size // 4, None), slice(size // 2 - window, size // 2 + window))
    gain_full = _mse(hazy[band], scene[band]) / _mse(restored[band], scene[band])
    gain_raw = _mse(hazy[band], scene[band]) / _mse(unrefined[band], scene[band])
    assert gain_full > 1.2 * gain_raw
    assert gain_full > 3.0


@pytest.mark.parametrize("colour", [(200, 210, 230), (120, 180, 250), (90, 90, 90)])
def test_pure_airlight_image_is_left_unchanged(colour):
    """An image that is nothing but haze is its own atmospheric light: J = (I - A)/t + A = I."""
    image = np.empty((32, 48, 3), np.uint8)
    image[:] = colour
    out = dehaze(image)
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1


@pytest.mark.parametrize("size", [64, 256])
def test_airlight_estimate_of_hazy_scene_is_close_to_true_airlight(size):
    _, hazy, _ = _hazy_scene(size, seed=0)
    image = hazy.astype(np.float32) / 255
    window, _ = DehazeParams().scaled(size, size)
    light = atmospheric_light(image, dark_channel(image, window), DehazeParams().top_fraction)
    np.testing.assert_allclose(light, AIRLIGHT, atol=0.04)


@pytest.mark.parametrize("shape", [(32, 32, 3), (48, 80, 3), (80, 48, 3), (256, 256, 3)])
def test_dehaze_preserves_shape_and_dtype(shape, rng):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    out = dehaze(image)
    assert out.shape == shape
    assert out.dtype == np.uint8


def test_dehaze_float_keeps_range(rng):
    image = rng.random((40, 56, 3), dtype=np.float32)
    out = dehaze_float(image)
    assert out.shape == image.shape
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_dehaze_many_stacks_and_handles_empty(rng):
    stack = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = dehaze_many(stack)
    assert out.shape == stack.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], dehaze(stack[1]))
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    assert dehaze_many(empty).shape == (0, 32, 32, 3)


@pytest.mark.parametrize(
    ("height", "width", "window", "radius"),
    [(256, 256, 15, 60), (32, 32, 3, 8), (512, 512, 31, 120), (32, 256, 3, 8), (256, 32, 3, 8)],
)
def test_params_scale_with_image_size(height, width, window, radius):
    assert DehazeParams().scaled(height, width) == (window, radius)


def test_scaled_window_is_always_odd():
    for size in range(16, 300, 7):
        window, radius = DehazeParams().scaled(size, size)
        assert window % 2 == 1 and window >= 3
        assert radius >= 1


def test_guided_filter_of_constant_is_constant():
    const = np.full((24, 30), 0.37, dtype=np.float32)
    out = guided_filter(const, const.copy(), radius=4, eps=1e-3)
    np.testing.assert_allclose(out, 0.37, atol=1e-5)


def test_guided_filter_with_itself_as_guide_preserves_edges(rng):
    """With guide == src and a small eps, a = var/(var+eps) ~ 1: edges are kept."""
    src = np.zeros((32, 32), dtype=np.float32)
    src[:, 16:] = 1.0
    src += rng.normal(0, 0.01, src.shape).astype(np.float32)
    out = guided_filter(src, src, radius=3, eps=1e-6)
    np.testing.assert_allclose(out, src, atol=0.02)
    # a plain box blur of the same radius would smear the edge
    assert abs(out[5, 15] - src[5, 15]) < 0.02 and abs(out[5, 16] - src[5, 16]) < 0.02


def test_guided_filter_smooths_noise_on_flat_guide(rng):
    guide = np.full((32, 32), 0.5, dtype=np.float32)
    noisy = (0.5 + rng.normal(0, 0.1, (32, 32))).astype(np.float32)
    out = guided_filter(guide, noisy, radius=4, eps=1e-3)
    assert out.std() < noisy.std() / 3


def test_dark_channel_is_windowed_channel_minimum():
    image = np.full((9, 9, 3), 0.8, dtype=np.float32)
    image[4, 4, 1] = 0.1
    dark = dark_channel(image, 3)
    expected = np.full((9, 9), 0.8, dtype=np.float32)
    expected[3:6, 3:6] = 0.1
    np.testing.assert_allclose(dark, expected)


def test_atmospheric_light_picks_brightest_region_not_brightest_pixel(rng):
    image = (rng.random((64, 64, 3)) * 0.3).astype(np.float32)
    image[40:52, 8:20] = (0.7, 0.8, 0.9)  # a hazy (bright in all channels) region
    image[5, 50] = (1.0, 1.0, 1.0)  # one isolated white pixel: not haze
    dark = dark_channel(image, 5)
    light = atmospheric_light(image, dark, top_fraction=0.01)
    np.testing.assert_allclose(light, (0.7, 0.8, 0.9), atol=1e-6)
    assert light.dtype == np.float32


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((32, 32, 3), np.float32),
        np.zeros((32, 32), np.uint8),
        np.zeros((32, 32, 4), np.uint8),
        np.zeros((32, 32, 3), np.uint16),
    ],
)
def test_dehaze_rejects_wrong_input(bad):
    with pytest.raises(ValueError):
        dehaze(bad)
