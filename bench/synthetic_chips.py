"""Synthetic chips for the benchmarks: distinct, textured, JPEG-compressed like real ones."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image as PILImage


def synthetic_chips(count: int, seed: int = 0, size: int = 256) -> Iterator[tuple[str, bytes]]:
    """(name, JPEG bytes) of distinct textured chips: smooth random fields plus fine noise."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        smooth = np.asarray(PILImage.fromarray(coarse).resize((size, size),
                                                              PILImage.Resampling.BICUBIC))
        noise = rng.integers(-24, 25, (size, size, 3))
        rgb = np.clip(smooth.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        PILImage.fromarray(rgb).save(buffer, "JPEG", quality=90)
        yield f"chip{seed}-{i:03d}.jpg", buffer.getvalue()
