"""The method on volumes (section 10 of the method): 3x3x3 neighbours,
cell**3 copies in the same ordering, and the 3D UNet; 2D unchanged."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_b2u.core import UNet, b2u_loss, global_mapper, global_masker, interpolate


def test_3d_kernel_weights_faces_edges_corners():
    y = torch.zeros(1, 1, 3, 3, 3, dtype=torch.float64)
    y[0, 0, 1, 1, 1] = 14.0  # the response of a point is the (mirrored) kernel
    k = interpolate(y)[0, 0]
    assert k[1, 1, 1] == 0  # the centre never sees itself
    for offset in itertools.product((-1, 0, 1), repeat=3):
        moved = sum(o != 0 for o in offset)
        if moved:
            assert k[tuple(o + 1 for o in offset)] == pytest.approx({1: 1.0, 2: 0.5, 3: 0.25}[moved])
    assert k.sum() == pytest.approx(14.0)
    # its middle slice has the 2D kernel's pattern
    point = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    point[0, 0, 1, 1] = 6.0
    flat = interpolate(point)[0, 0]
    np.testing.assert_allclose((k[1] / k[1, 0, 1]).numpy(), (flat / flat[0, 1]).numpy())


def test_3d_interpolation_is_per_channel_with_zero_padding():
    y = torch.ones(1, 2, 4, 5, 6)
    y[:, 1] = 0
    out = interpolate(y)
    assert torch.all(out[:, 1] == 0)
    assert out[0, 0, 1, 1, 1] == pytest.approx(1.0)  # interior: weights sum to 1
    assert out[0, 0, 0, 0, 0] < 1.0  # corner: zero padding


@pytest.mark.parametrize("cell", [2, 3])
def test_every_voxel_hidden_in_exactly_one_copy_in_order(cell):
    y = torch.rand(2, 1, 5, 6, 7)
    volume, masks = global_masker(y, cell)
    k = cell**3
    assert volume.shape == (2 * k, 1, 5, 6, 7) and masks.shape == (2 * k, 1, 5, 6, 7)
    assert torch.all(masks.view(2, k, 1, 5, 6, 7).sum(1) == 1)
    for j in range(k):
        z, r, c = torch.nonzero(masks[j, 0], as_tuple=True)
        assert torch.all(z % cell == j // cell**2)
        assert torch.all(r % cell == (j // cell) % cell) and torch.all(c % cell == j % cell)
    assert torch.equal(masks[:k], masks[k:])  # row n*K + k is copy k of image n


def test_3d_mapper_inverts_the_maskers_hiding():
    y = torch.rand(2, 2, 4, 6, 6, dtype=torch.float64)
    volume, masks = global_masker(y, 2)
    # an identity "network": the blind image is exactly the interpolated values
    torch.testing.assert_close(global_mapper(volume, masks, 2), interpolate(y))
    with pytest.raises(ValueError, match="multiple"):
        global_mapper(volume[:-1], masks[:-1], 2)


def test_planar_masker_hides_each_voxel_once_without_leaking_it():
    y = torch.rand(1, 1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    volume, masks = global_masker(y, 2, planar=True)
    assert volume.shape[0] == 4 and torch.all(masks.sum(0) == 1)
    for k in range(4):
        hidden = masks[k, 0].bool()
        # the masked copy's values never depend on the voxels it hides
        grad = torch.autograd.grad(volume[k].sum(), y, retain_graph=True)[0][0, 0]
        assert torch.all(grad[hidden] == 0)
    assert global_mapper(volume, masks, 2, planar=True).shape == y.shape


def test_no_gradient_reaches_visible_in_3d():
    y = torch.rand(1, 1, 4, 8, 8)
    blind = torch.rand_like(y, requires_grad=True)
    visible = torch.rand_like(y, requires_grad=True)
    loss, _, _ = b2u_loss(blind, visible, y, lam=2.0)
    loss.backward()
    assert blind.grad is not None and visible.grad is None


@pytest.mark.parametrize("z_pool", [0, 1, 2])
def test_unet3d_shapes_and_z_pooling(z_pool):
    net = UNet(2, features=4, depth=2, dims=3, z_pool=z_pool)
    assert net.multiples == (2**z_pool, 4, 4)
    x = torch.rand(1, 2, 5, 13, 10)  # awkward sizes: padded and cropped back
    assert net(x).shape == x.shape
    assert sum(isinstance(m, torch.nn.Conv3d) for m in net.modules()) > 0
    with pytest.raises(ValueError):
        UNet(1, depth=2, dims=3, z_pool=3)


def test_2d_unet_is_unchanged():
    torch.manual_seed(0)
    net = UNet(1, features=48, depth=5)
    assert 1.0e6 < sum(p.numel() for p in net.parameters()) < 1.2e6  # the paper's size
    assert net.multiples == (32, 32) and net.dims == 2
    with pytest.raises(ValueError):
        UNet(1, depth=2, dims=2, z_pool=1)
