"""decode_image turns every upload mode into HxWx3 uint8 RGB, or explains why it cannot."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imagery.decode import ImageDecodeError, decode_image, resize_square


def _rgb_array(h: int, w: int) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    arr[..., 2] = 90
    return arr


def _assert_rgb(arr: np.ndarray, h: int, w: int) -> None:
    assert arr.shape == (h, w, 3)
    assert arr.dtype == np.uint8


def test_rgb_png_is_lossless(encode):
    src = _rgb_array(12, 20)
    out = decode_image(encode(Image.fromarray(src), "PNG"))
    np.testing.assert_array_equal(out, src)


def test_cmyk_jpeg_becomes_rgb(encode):
    img = Image.new("CMYK", (24, 16), (0, 255, 255, 0))  # pure red ink-wise
    data = encode(img, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    _assert_rgb(out, 16, 24)
    r, g, b = out[8, 12].astype(int)
    assert r > 200 and g < 50 and b < 50


def test_rgba_png_is_composited_on_white(encode):
    rgba = np.zeros((10, 30, 4), np.uint8)
    rgba[:, :10] = (200, 20, 40, 255)  # opaque
    rgba[:, 10:20] = (0, 0, 0, 0)  # fully transparent
    rgba[:, 20:] = (0, 0, 0, 128)  # half-transparent black
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    _assert_rgb(out, 10, 30)
    np.testing.assert_array_equal(out[5, 5], (200, 20, 40))
    np.testing.assert_array_equal(out[5, 15], (255, 255, 255))
    assert np.all(np.abs(out[5, 25].astype(int) - 127) <= 2)


def test_palette_png(encode):
    img = Image.fromarray(_rgb_array(16, 16)).quantize(colors=8)
    assert img.mode == "P"
    data = encode(img, "PNG")
    out = decode_image(data)
    _assert_rgb(out, 16, 16)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(out, expected)


def test_palette_png_with_transparency_is_composited_on_white(encode):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([10, 20, 30] + [250, 0, 0] + [0] * (254 * 3))
    img.paste(1, (0, 0, 4, 8))
    data = encode(img, "PNG", transparency=0)
    out = decode_image(data)
    _assert_rgb(out, 8, 8)
    np.testing.assert_array_equal(out[2, 1], (250, 0, 0))
    np.testing.assert_array_equal(out[2, 6], (255, 255, 255))


def test_16bit_greyscale_png_is_scaled_not_clipped(encode):
    values = (np.arange(16 * 24, dtype=np.uint16).reshape(16, 24) * 100).astype(np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    _assert_rgb(out, 16, 24)
    assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])
    assert out.min() == 0 and out.max() == 255
    # a naive convert("L") clips everything above 255 to white: here only the max is 255
    assert (out[..., 0] == 255).mean() < 0.05
    expected = values.astype(np.float64) / values.max() * 255
    assert np.abs(out[..., 0].astype(float) - expected).max() <= 1.0
    # order of the grey levels is preserved
    flat = out[..., 0].reshape(-1).astype(int)
    assert np.all(np.diff(flat) >= 0)


def test_constant_16bit_image_does_not_divide_by_zero(encode):
    data = encode(Image.fromarray(np.full((5, 7), 4000, np.uint16)), "PNG")
    out = decode_image(data)
    _assert_rgb(out, 5, 7)


def test_greyscale_l_png(encode):
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))
    out = decode_image(encode(Image.fromarray(grey, "L"), "PNG"))
    _assert_rgb(out, 6, 25)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_exif_orientation_6_is_applied(encode):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall
    stored[:, :] = (0, 0, 255)
    stored[:10, :20] = (255, 0, 0)  # top-left quadrant red
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    _assert_rgb(out, 40, 20)  # width and height swapped
    # stored top-left ends up displayed top-right
    top_right = out[2:8, 12:18].reshape(-1, 3).mean(axis=0)
    bottom_left = out[32:38, 2:8].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[2] < 60
    assert bottom_left[2] > 200 and bottom_left[0] < 60


def test_decodes_paths_and_file_objects(tmp_path, encode):
    src = _rgb_array(9, 11)
    path = tmp_path / "chip.png"
    path.write_bytes(encode(Image.fromarray(src), "PNG"))
    np.testing.assert_array_equal(decode_image(path), src)
    np.testing.assert_array_equal(decode_image(str(path)), src)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(decode_image(handle), src)


def test_empty_bytes_raise_helpful_error():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_random_bytes_raise_helpful_error(rng):
    junk = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    with pytest.raises(ImageDecodeError, match="not an image|unknown format"):
        decode_image(junk)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_raises_helpful_error(encode, rng, keep):
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated|broken"):
        decode_image(data[: int(len(data) * keep)])


def test_missing_file_raises_image_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        decode_image(tmp_path / "nope.png")


def test_too_many_pixels_raise_before_decoding(encode):
    data = encode(Image.new("RGB", (100, 50), (1, 2, 3)), "PNG")
    with pytest.raises(ImageDecodeError, match="5,000 pixels") as info:
        decode_image(data, max_pixels=4_999)
    assert "limit" in str(info.value) and "4,999" in str(info.value)
    assert decode_image(data, max_pixels=5_000).shape == (50, 100, 3)


def test_image_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)


@pytest.mark.parametrize("shape", [(40, 60, 3), (60, 40, 3), (16, 16, 3), (100, 100, 3)])
def test_resize_square_output_size(shape, rng):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    out = resize_square(image, 32)
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8


def test_resize_square_keeps_flat_colour_and_same_size_input():
    flat = np.full((50, 70, 3), (12, 130, 240), np.uint8)
    out = resize_square(flat, 32)
    assert np.all(np.abs(out.astype(int) - (12, 130, 240)) <= 1)
    same = np.full((32, 32, 3), 7, np.uint8)
    np.testing.assert_array_equal(resize_square(same, 32), same)


def test_decode_errors_name_no_server_paths():
    from imagery.decode import plain_message as _plain

    raw = OSError("cannot read <_io.BufferedReader name='/srv/var/media/a.png'> "
                  "from /srv/var/media/originals/ab/a.png")
    assert "/srv" not in _plain(raw) and "BufferedReader" not in _plain(raw)
    assert _plain(OSError("image file is truncated (3 bytes not processed)")) == \
        "image file is truncated (3 bytes not processed)"
