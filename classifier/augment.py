"""Training-time augmentation, batched on tensors: the 8 flips/rotations/transposes,
random rotations and elastic deformation (Simard et al. 2003).

Satellite chips have no "up", so every dihedral transform is a valid example. Rotation
and the elastic field are folded into a single ``grid_sample`` per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DIHEDRAL = 8


def dihedral(images: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 symmetries of the square: rotate k % 4 quarter turns, then
    mirror when k >= 4 (which also covers transposes)."""
    out = torch.rot90(images, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def random_dihedral(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    choice = torch.randint(0, DIHEDRAL, (images.shape[0],), generator=generator)
    out = torch.empty_like(images)
    for k in range(DIHEDRAL):
        mask = choice == k
        if mask.any():
            out[mask] = dihedral(images[mask], k)
    return out


def random_warp(images: torch.Tensor, max_angle: float = 45.0, elastic_alpha: float = 0.04,
                elastic_grid: int = 4, p_rotate: float = 0.5, p_elastic: float = 0.5,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation by up to ``max_angle`` degrees and a smooth random displacement
    field of about ``elastic_alpha`` (in [-1, 1] image coordinates), reflection padded."""
    n = images.shape[0]
    device = images.device
    rotate = torch.rand(n, generator=generator) < p_rotate
    angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_angle) * rotate
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta.to(device), list(images.shape), align_corners=False)
    elastic = (torch.rand(n, generator=generator) < p_elastic).float().view(n, 1, 1, 1)
    coarse = torch.randn(n, 2, elastic_grid, elastic_grid, generator=generator) * elastic_alpha
    field = F.interpolate(coarse * elastic, size=images.shape[-2:], mode="bicubic",
                          align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1).to(device)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def augment_batch(images: torch.Tensor, generator: torch.Generator | None = None,
                  warp: bool = True) -> torch.Tensor:
    """Dihedral symmetry, then (with ``warp``) rotation + elastic warp, on an
    N x 3 x S x S float batch."""
    flipped = random_dihedral(images, generator)
    return random_warp(flipped, generator=generator) if warp else flipped
