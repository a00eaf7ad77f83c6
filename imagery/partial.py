"""Partial tiles: what the model sees of a tile that holds data in part of it only.

A scene's edge tiles (and tiles at the rim of a scene's footprint) are stored padded with
black to the full tile size, so that every tile of a scene has one size on the map. The
model was trained on chips that are all ground, and a black band is a feature it never
saw: a tile that is 85% padding came out "clear, partly_cloudy, primary, water". The
model therefore sees a *view* of the tile built from its real pixels only, the data
window (the bounding box of the pixels holding data), in one of these ways:

- ``pad``: the tile as stored, padding and all (what the app did before);
- ``fill``: the padding replaced by the data window's mean colour;
- ``mirror``: the data window reflected outwards until it covers the tile (scale and
  texture kept, no flat band);
- ``crop``: the data window alone, resized to the model's input by the predictor as any
  image is (scale changes along the cut side).

Which one the app uses is a setting (``PARTIAL_TILE_VIEW``), chosen on validation chips
cut the same way: ``python -m experiments.partial_tiles`` and docs/partial-tiles.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VIEWS = ("pad", "fill", "mirror", "crop")
#: the view chosen on validation: F2 0.874 against 0.795 for ``pad`` (3,238 Planet
#: validation chips x 3 cuts x 3 coverages; docs/partial-tiles.png)
DEFAULT_VIEW = "mirror"

#: (x, y, width, height) in pixels of the stored tile
Window = tuple[int, int, int, int]


def data_window(valid: np.ndarray) -> Window | None:
    """The bounding box of a tile's valid pixels (an H x W boolean mask); None when the
    box is the whole tile or the tile holds no data."""
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    if not rows.size:
        return None
    window = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
              int(rows[-1] - rows[0] + 1))
    return None if window == (0, 0, valid.shape[1], valid.shape[0]) else window


def scaled(window: Sequence[int], source: tuple[int, int], target: tuple[int, int]) -> Window:
    """``window`` of an image of ``source`` (width, height) on the same image resized to
    ``target`` (width, height): decoding may reduce a stored tile. At least 1 px."""
    sx, sy = target[0] / source[0], target[1] / source[1]
    x, y, w, h = window
    left, top = min(int(round(x * sx)), target[0] - 1), min(int(round(y * sy)), target[1] - 1)
    right = max(left + 1, min(target[0], int(round((x + w) * sx))))
    bottom = max(top + 1, min(target[1], int(round((y + h) * sy))))
    return left, top, right - left, bottom - top


def model_view(rgb: np.ndarray, window: Sequence[int] | None, view: str,
               source: tuple[int, int] | None = None) -> np.ndarray:
    """The pixels the model sees of ``rgb`` (H x W x 3 uint8) whose data lies in
    ``window`` (given on an image of ``source`` (width, height); default: ``rgb``'s own
    size). A tile without a window is all data and comes back as it is."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}")
    if window is None or view == "pad":
        return rgb
    height, width = rgb.shape[:2]
    x, y, w, h = scaled(window, source or (width, height), (width, height))
    data = rgb[y:y + h, x:x + w]
    if view == "crop":
        return np.ascontiguousarray(data)
    if view == "fill":
        out = np.empty_like(rgb)
        out[:] = data.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
        out[y:y + h, x:x + w] = data
        return out
    return _mirror(data, x, y, width, height)


def _mirror(data: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """``data`` placed at (x, y) of a width x height tile, the rest its mirror image
    (repeated reflections where the data is narrower than the padding)."""
    out = data
    pads = ((y, height - y - out.shape[0]), (x, width - x - out.shape[1]))
    while any(p > 0 for side in pads for p in side):
        step = tuple((min(before, out.shape[axis]), min(after, out.shape[axis]))
                     for axis, (before, after) in enumerate(pads))
        out = np.pad(out, (*step, (0, 0)), mode="symmetric")
        pads = tuple((before - s0, after - s1) for (before, after), (s0, s1) in zip(pads, step))
    return np.ascontiguousarray(out)
