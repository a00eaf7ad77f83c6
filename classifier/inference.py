"""Inference helpers shared by prediction, evaluation and training's validation pass.

Prediction imports this module, not the training loop. ``predict_batches`` can also return
each image's hidden-layer descriptor from the same forward pass (view 0, the identity
view), so that the search codes of an image cost no second pass through the network.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm import tqdm

from classifier.model import MultiLabelNetwork
from classifier.tta import predict_proba, predict_proba_and_embedding


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float in [0, 1], channels_last on ``device``."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA, bfloat16 on CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict_batches(model: MultiLabelNetwork, images: np.ndarray, device: torch.device,
                    views: int = 1, batch_size: int = 256, amp: bool = False,
                    progress: bool = False, desc: str = "predict") -> np.ndarray:
    """Probabilities (N x L) for uint8 images, ``views`` dihedral TTA views averaged."""
    return predict_with_embeddings(model, images, device, views, batch_size, amp, progress,
                                   desc, embed=False)[0]


def predict_with_embeddings(model: MultiLabelNetwork, images: np.ndarray, device: torch.device,
                            views: int = 1, batch_size: int = 256, amp: bool = False,
                            progress: bool = False, desc: str = "predict",
                            embed: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities N x L, hidden-layer descriptors N x hidden or None), one pass.

    ``batch_size`` images (times ``views``) go through the network per forward pass.
    """
    model.eval()
    probs, hidden = [], []
    steps = range(0, len(images), batch_size)
    for start in tqdm(steps, desc=desc, disable=not progress, unit="batch"):
        batch = to_tensor(images[start:start + batch_size], device)
        with autocast(device, amp):
            if embed:
                p, h = predict_proba_and_embedding(model, batch, views)
                hidden.append(h.float().cpu().numpy())
            else:
                p = predict_proba(model, batch, views)
            probs.append(p.float().cpu().numpy())
    labels, width = model.config.num_labels, model.embedding_dim
    out = np.concatenate(probs) if probs else np.zeros((0, labels), np.float32)
    if not embed:
        return out, None
    return out, np.concatenate(hidden) if hidden else np.zeros((0, width), np.float32)
