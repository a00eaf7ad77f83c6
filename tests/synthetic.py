"""Generated chips whose look follows made-up labels, for end-to-end tests of any model."""

from __future__ import annotations

import numpy as np
from PIL import Image


def chip(rng: np.random.Generator, tags: set[str], size: int = 32) -> Image.Image:
    """'bright' lifts the level, 'reddish' the red channel, 'striped' inverts every 4th row."""
    img = rng.normal(170 if "bright" in tags else 60, 12, (size, size, 3))
    if "reddish" in tags:
        img[:, :, 0] += 70
    if "striped" in tags:
        img[::4, :, :] = 250 - img[::4, :, :]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
