"""Dark-channel-prior dehazing (He, Sun & Tang 2009) with guided-filter refinement (He 2010).

The paper dehazes chips so that land labels (water, bare_ground, ...) become clearer;
the per-label model choice (``choice.py``) later decides where that helps. Steps, for an
RGB image I in [0, 1]:

1. dark channel D = min over a window of min over r, g, b;
2. atmospheric light A = per-channel maximum of I over the brightest 0.1% of D;
3. transmission t = 1 - w * dark_channel(I / A), w = 0.95;
4. t refined by a guided filter (guide: the grey image) to remove block artefacts;
5. J = (I - A) / max(t, t0) + A, clipped to [0, 1].

Window (15 px at 256 px) and guided-filter radius (60 px at 256 px) scale with the image
size, so 32 px thumbnails and 256 px uploads are treated alike. Everything is vectorised
with OpenCV in float32; the only per-pixel work is done by OpenCV kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIZE = 256


def _odd(value: float, minimum: int = 3) -> int:
    size = max(minimum, int(round(value)))
    return size if size % 2 == 1 else size + 1


@dataclass(frozen=True)
class DehazeParams:
    """Parameters as the paper gives them for 256 px images; they scale with size."""

    window: int = 15
    omega: float = 0.95
    t0: float = 0.1
    top_fraction: float = 0.001
    guided_radius: int = 60
    guided_eps: float = 1e-3

    def scaled(self, height: int, width: int) -> tuple[int, int]:
        """Window size and guided-filter radius for an image of this size."""
        scale = min(height, width) / REFERENCE_SIZE
        window = _odd(self.window * scale)
        radius = max(1, int(round(self.guided_radius * scale)))
        return window, radius


def channel_min(image: np.ndarray) -> np.ndarray:
    """Per-pixel minimum over the colour channels (cv2.min is ~10x numpy's min(axis=2))."""
    r, g, b = cv2.split(image)
    return cv2.min(cv2.min(r, g), b)


def dark_channel(image: np.ndarray, window: int) -> np.ndarray:
    """Minimum over colour channels, then over a window x window neighbourhood."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (window, window))
    return cv2.erode(channel_min(image), kernel, borderType=cv2.BORDER_REPLICATE)


def atmospheric_light(image: np.ndarray, dark: np.ndarray, top_fraction: float) -> np.ndarray:
    """Per-channel maximum of the image over the brightest ``top_fraction`` of the dark channel."""
    flat_dark = dark.reshape(-1)
    count = max(1, int(flat_dark.size * top_fraction))
    candidates = np.argpartition(flat_dark, flat_dark.size - count)[-count:]
    light = image.reshape(-1, 3)[candidates].max(axis=0)
    return np.maximum(light, 1e-3).astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` steered by ``guide`` (both float32, HxW)."""
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    mean_p = box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def dehaze_float(image: np.ndarray, params: DehazeParams = DehazeParams()) -> np.ndarray:
    """Dehaze an HxWx3 float32 RGB image in [0, 1]; returns the same shape and range."""
    height, width = image.shape[:2]
    window, radius = params.scaled(height, width)
    dark = dark_channel(image, window)
    light = atmospheric_light(image, dark, params.top_fraction)
    transmission = 1.0 - params.omega * dark_channel(image / light, window)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    transmission = guided_filter(grey, transmission.astype(np.float32), radius, params.guided_eps)
    transmission = np.maximum(transmission, params.t0)[:, :, None]
    recovered = (image - light) / transmission + light
    return np.clip(recovered, 0.0, 1.0)


def dehaze(image: np.ndarray, params: DehazeParams = DehazeParams()) -> np.ndarray:
    """Dehaze an HxWx3 RGB uint8 image; returns RGB uint8 of the same size."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    result = dehaze_float(image.astype(np.float32) * (1.0 / 255.0), params)
    return (result * 255.0 + 0.5).astype(np.uint8)


def dehaze_many(images: np.ndarray, params: DehazeParams = DehazeParams()) -> np.ndarray:
    """Dehaze an NxHxWx3 uint8 stack (one image at a time; each call is vectorised)."""
    return np.stack([dehaze(img, params) for img in images]) if len(images) else images.copy()
