"""Dihedral symmetries, TTA averaging and batched training augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from classifier.augment import DIHEDRAL, augment_batch, dihedral, random_dihedral, random_warp
from classifier.tta import predict_proba, tta_views


@pytest.fixture
def asymmetric() -> torch.Tensor:
    return torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5) / 150


def _radially_symmetric(size: int = 32) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    r2 = coords[:, None] ** 2 + coords[None, :] ** 2
    base = torch.exp(-r2 / (2 * (size / 5) ** 2))
    return torch.stack([base, 1 - base, 0.5 * base + 0.2])[None]


def test_dihedral_gives_eight_distinct_results(asymmetric):
    outs = [dihedral(asymmetric, k) for k in range(DIHEDRAL)]
    for i in range(DIHEDRAL):
        assert outs[i].shape == asymmetric.shape
        for j in range(i):
            assert not torch.equal(outs[i], outs[j]), (i, j)
    assert torch.equal(outs[0], asymmetric)


def test_dihedral_covers_the_whole_group(asymmetric):
    outs = [dihedral(asymmetric, k) for k in range(DIHEDRAL)]
    expected = [
        asymmetric.flip(-1), asymmetric.flip(-2), asymmetric.transpose(-2, -1),
        asymmetric.flip(-1).flip(-2), asymmetric.transpose(-2, -1).flip(-1).flip(-2),
    ]
    for target in expected:
        assert any(torch.equal(o, target) for o in outs)


@pytest.mark.parametrize("k", range(DIHEDRAL))
def test_dihedral_is_invertible(k, asymmetric):
    moved = dihedral(asymmetric, k)
    inverses = [j for j in range(DIHEDRAL) if torch.equal(dihedral(moved, j), asymmetric)]
    assert len(inverses) == 1


def test_tta_views_layout(asymmetric):
    stacked = tta_views(asymmetric, 3)
    assert stacked.shape == (6, 3, 5, 5)
    for k in range(3):
        assert torch.equal(stacked[2 * k:2 * k + 2], dihedral(asymmetric, k))
    for bad in (0, 9):
        with pytest.raises(ValueError):
            tta_views(asymmetric, bad)


@pytest.fixture
def sharp_model(tiny_model):
    """An eval-mode tiny VGG whose logits are far from 0, so views really differ."""
    model = tiny_model(num_labels=4, input_size=32, seed=3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in (model.head[1], model.head[-1]):
            fan_in = layer.weight.shape[1]
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 3 / fan_in**0.5)
    return model.eval()


def test_predict_proba_symmetric_image_same_for_all_view_counts(sharp_model):
    for image in (_radially_symmetric(), torch.full((1, 3, 32, 32), 0.4)):
        for k in range(DIHEDRAL):
            assert torch.allclose(dihedral(image, k), image)
        one = predict_proba(sharp_model, image, views=1)
        eight = predict_proba(sharp_model, image, views=8)
        assert one.shape == (1, 4)
        torch.testing.assert_close(eight, one, atol=1e-5, rtol=1e-5)


def test_predict_proba_averages_views_per_image(sharp_model):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=gen)
    one = predict_proba(sharp_model, images, views=1)
    eight = predict_proba(sharp_model, images, views=8)
    assert eight.shape == (3, 4)
    assert (eight - one).abs().max() > 1e-3  # asymmetric: views disagree
    with torch.no_grad():
        manual = torch.stack([
            torch.stack([torch.sigmoid(sharp_model(dihedral(images[i:i + 1], k)))[0]
                         for k in range(DIHEDRAL)]).mean(0)
            for i in range(3)
        ])
    torch.testing.assert_close(eight, manual, atol=1e-5, rtol=1e-4)
    assert eight.min() >= 0 and eight.max() <= 1


def test_predict_proba_is_invariant_to_rotating_the_input(sharp_model):
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 32, generator=gen)
    base = predict_proba(sharp_model, images, views=8)
    for k in (1, 5):
        torch.testing.assert_close(predict_proba(sharp_model, dihedral(images, k), views=8),
                                   base, atol=1e-5, rtol=1e-4)


def test_random_dihedral_applies_one_symmetry_per_image():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 6, 6, generator=gen)
    out = random_dihedral(images, torch.Generator().manual_seed(1))
    used = set()
    for i in range(16):
        matches = [k for k in range(DIHEDRAL) if torch.equal(out[i], dihedral(images[i], k))]
        assert matches
        used.update(matches)
    assert len(used) > 2


def test_random_warp_without_rotation_or_elastic_is_identity():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = random_warp(images, p_rotate=0.0, p_elastic=0.0)
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_augment_batch_shape_and_range():
    gen = torch.Generator().manual_seed(0)
    images = 0.2 + 0.6 * torch.rand(8, 3, 32, 32, generator=gen)
    out = augment_batch(images, torch.Generator().manual_seed(2))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.2 - 1e-4 and out.max() <= 0.8 + 1e-4
    assert not torch.allclose(out, images)
    # a constant image stays constant under any warp
    flat = torch.full((4, 3, 32, 32), 0.3)
    torch.testing.assert_close(augment_batch(flat, torch.Generator().manual_seed(3)), flat)


def test_augment_batch_deterministic_with_generator():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    a = augment_batch(images, torch.Generator().manual_seed(7))
    b = augment_batch(images, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def _coordinates(n: int, size: int = 32) -> torch.Tensor:
    """Images whose channels 0 and 1 are the x and y coordinates of each pixel centre in
    grid_sample's [-1, 1] frame: bilinear sampling returns the sampled position itself,
    so a warped copy shows where each output pixel was taken from."""
    c = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y, torch.zeros_like(x)]).expand(n, 3, size, size).clone()


def _source_positions(out: torch.Tensor, inside: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel position, where it was sampled from), both K x 2, for the pixels within
    radius ``inside`` of the centre (well away from the reflected border)."""
    ident = _coordinates(1, out.shape[-1])[0, :2]
    keep = ident.pow(2).sum(0).sqrt() < inside
    return ident[:, keep].T, out[:2][:, keep].T


def test_random_rotation_is_a_rotation_about_the_centre_within_max_angle():
    """p_rotate=1 and no elastic field: each image's sampling positions are its pixel
    positions turned by one angle about the centre (no scale, shear, mirror or shift),
    the angles stay within +-max_angle degrees, and they vary in both directions."""
    images = _coordinates(32)
    out = random_warp(images, max_angle=20.0, p_rotate=1.0, p_elastic=0.0,
                      generator=torch.Generator().manual_seed(0))
    angles = []
    for i in range(len(out)):
        pos, src = _source_positions(out[i], inside=0.8)
        design = torch.cat([pos, torch.ones(len(pos), 1)], dim=1)
        fit = torch.linalg.lstsq(design, src).solution  # src = pos @ M + shift
        m, shift = fit[:2], fit[2]
        torch.testing.assert_close(design @ fit, src, atol=1e-4, rtol=0)  # affine
        torch.testing.assert_close(m.T @ m, torch.eye(2), atol=1e-4, rtol=0)  # no scale/shear
        assert torch.linalg.det(m) > 0  # no mirror
        assert shift.abs().max() < 1e-4  # about the centre
        angles.append(math.degrees(math.atan2(float(m[0, 1]), float(m[0, 0]))))
    angles = torch.tensor(angles)
    assert angles.abs().max() <= 20.0 + 1e-3
    assert (angles > 5).sum() >= 4 and (angles < -5).sum() >= 4
    assert angles.abs().min() > 0.1  # every image turned


def test_elastic_warp_is_a_small_smooth_non_rigid_displacement_scaled_by_alpha():
    """p_elastic=1 and no rotation: pixels are sampled from displaced positions; the
    displacement is about ``elastic_alpha`` in size, varies smoothly from pixel to pixel,
    is not a rigid or affine motion, and is proportional to ``elastic_alpha``."""
    images = _coordinates(8)

    def displacement(alpha: float) -> torch.Tensor:
        out = random_warp(images, elastic_alpha=alpha, p_rotate=0.0, p_elastic=1.0,
                          generator=torch.Generator().manual_seed(4))
        return out[:, :2] - images[:, :2]

    d = displacement(0.04)
    inner = d[:, :, 4:-4, 4:-4]  # away from the reflected border
    size = inner.pow(2).sum(1).sqrt()
    assert 0.01 < float(size.mean()) < 0.1 and float(size.max()) < 0.25
    step = max(float((inner[..., 1:, :] - inner[..., :-1, :]).abs().max()),
               float((inner[..., 1:] - inner[..., :-1]).abs().max()))
    assert step < 0.25 * float(size.max())  # smooth: neighbours move alike
    for i in range(len(images)):
        pos, src = _source_positions(images[i] + torch.cat([d[i], torch.zeros(1, 32, 32)]),
                                     inside=0.7)
        design = torch.cat([pos, torch.ones(len(pos), 1)], dim=1)
        residual = src - design @ torch.linalg.lstsq(design, src).solution
        assert residual.pow(2).sum(1).sqrt().mean() > 0.01  # not affine
    torch.testing.assert_close(displacement(0.08)[:, :, 4:-4, 4:-4], 2 * inner,
                               atol=1e-4, rtol=0)


def test_augment_batch_warps_most_images_beyond_the_eight_symmetries():
    """With the default probabilities (rotation 1/2, elastic 1/2) about three images in
    four are warped: not equal to any flip/rotation of their input."""
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = augment_batch(images, torch.Generator().manual_seed(1))
    warped = sum(
        all((out[i] - dihedral(images[i], k)).abs().max() > 0.05 for k in range(DIHEDRAL))
        for i in range(len(images)))
    assert 8 <= warped <= 15
    flipped = augment_batch(images, torch.Generator().manual_seed(1), warp=False)
    assert all(any(torch.equal(flipped[i], dihedral(images[i], k)) for k in range(DIHEDRAL))
               for i in range(len(images)))
