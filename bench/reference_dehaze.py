"""A straightforward dark-channel-prior dehazer as commonly published (float64, one numpy
or OpenCV step per line, a Python loop to pick the atmospheric light). It implements the
same method as ``classifier.dehaze`` (METHOD.md, steps 1-5) and is the benchmark's
baseline for speed and the yardstick for the optimised version's output."""

from __future__ import annotations

import cv2
import numpy as np


def dark_channel(image: np.ndarray, size: int) -> np.ndarray:
    b, g, r = image[:, :, 2], image[:, :, 1], image[:, :, 0]
    dc = np.minimum(np.minimum(r, g), b)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    return cv2.erode(dc, kernel, borderType=cv2.BORDER_REPLICATE)


def atm_light(image: np.ndarray, dark: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    imsz = h * w
    numpx = max(int(imsz / 1000), 1)
    darkvec = dark.reshape(imsz)
    imvec = image.reshape(imsz, 3)
    indices = darkvec.argsort()[imsz - numpx:]
    light = np.zeros(3)
    for ind in range(numpx):
        light = np.maximum(light, imvec[indices[ind]])
    return np.maximum(light, 1e-3)


def transmission_estimate(image: np.ndarray, light: np.ndarray, size: int,
                          omega: float = 0.95) -> np.ndarray:
    im3 = np.empty(image.shape, image.dtype)
    for ind in range(3):
        im3[:, :, ind] = image[:, :, ind] / light[ind]
    return 1 - omega * dark_channel(im3, size)


def guided_filter(im: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    k = (2 * r + 1, 2 * r + 1)
    mean_i = cv2.boxFilter(im, cv2.CV_64F, k, borderType=cv2.BORDER_REFLECT)
    mean_p = cv2.boxFilter(p, cv2.CV_64F, k, borderType=cv2.BORDER_REFLECT)
    mean_ip = cv2.boxFilter(im * p, cv2.CV_64F, k, borderType=cv2.BORDER_REFLECT)
    cov_ip = mean_ip - mean_i * mean_p
    mean_ii = cv2.boxFilter(im * im, cv2.CV_64F, k, borderType=cv2.BORDER_REFLECT)
    var_i = mean_ii - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = cv2.boxFilter(a, cv2.CV_64F, k, borderType=cv2.BORDER_REFLECT)
    mean_b = cv2.boxFilter(b, cv2.CV_64F, k, borderType=cv2.BORDER_REFLECT)
    return mean_a * im + mean_b


def recover(image: np.ndarray, t: np.ndarray, light: np.ndarray, tx: float = 0.1) -> np.ndarray:
    res = np.empty(image.shape, image.dtype)
    t = np.maximum(t, tx)
    for ind in range(3):
        res[:, :, ind] = (image[:, :, ind] - light[ind]) / t + light[ind]
    return res


def dehaze_reference(rgb_uint8: np.ndarray, window: int = 15, radius: int = 60,
                     eps: float = 1e-3) -> np.ndarray:
    image = rgb_uint8.astype(np.float64) / 255
    dark = dark_channel(image, window)
    light = atm_light(image, dark)
    te = transmission_estimate(image, light, window)
    grey = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255
    t = guided_filter(grey, te, radius, eps)
    out = np.clip(recover(image, t, light), 0, 1)
    return (out * 255 + 0.5).astype(np.uint8)
