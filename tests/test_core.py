"""The method's pieces, against hand computations and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_b2u.core import (
    UNet,
    b2u_loss,
    global_mapper,
    global_masker,
    interpolate,
    lambda_schedule,
    lr_schedule,
)


def test_interpolate_matches_hand_computation():
    y = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)
    out = interpolate(y)
    k = np.array([[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]]) / 6
    padded = np.pad(y[0, 0].numpy(), 1)
    expected = np.array(
        [[(padded[i : i + 3, j : j + 3] * k).sum() for j in range(5)] for i in range(5)]
    )
    np.testing.assert_allclose(out[0, 0].numpy(), expected)
    assert out.dtype == torch.float64


def test_interpolate_is_per_channel_and_blind_to_centre():
    y = torch.zeros(1, 2, 5, 5)
    y[0, 0, 2, 2] = 6.0
    out = interpolate(y)
    assert out[0, 0, 2, 2] == 0  # the centre never sees itself
    assert out[0, 1].abs().sum() == 0  # channels do not mix
    assert out[0, 0, 1, 2] == pytest.approx(1.0) and out[0, 0, 1, 1] == pytest.approx(0.5)


@pytest.mark.parametrize("cell", [2, 3, 4])
def test_every_pixel_hidden_in_exactly_one_copy(cell):
    y = torch.rand(3, 2, 13, 10)
    volume, masks = global_masker(y, cell)
    k = cell * cell
    assert volume.shape == (3 * k, 2, 13, 10) and masks.shape == (3 * k, 1, 13, 10)
    assert masks.dtype == y.dtype
    per_image = masks.view(3, k, 1, 13, 10).sum(1)
    assert torch.all(per_image == 1)
    # Copy k hides (row % cell, col % cell) == (k // cell, k % cell).
    for j in range(k):
        rows, cols = torch.nonzero(masks[j, 0], as_tuple=True)
        assert torch.all(rows % cell == j // cell) and torch.all(cols % cell == j % cell)


@pytest.mark.parametrize("cell", [2, 4])
def test_masked_volume_order_and_values(cell):
    y = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    volume, masks = global_masker(y, cell)
    y_c = interpolate(y)
    k = cell * cell
    for n in range(2):
        for j in range(k):
            m = masks[n * k + j]
            expected = y_c[n] * m + y[n] * (1 - m)
            torch.testing.assert_close(volume[n * k + j], expected)


def test_mapper_picks_hidden_pixels():
    cell, n = 2, 2
    y = torch.rand(n, 3, 6, 6)
    _, masks = global_masker(y, cell)
    # If the "network" returns copy index k everywhere, the blind image shows
    # at each pixel the copy that hid it.
    out = torch.arange(n * 4, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 6, 6) % 4
    blind = global_mapper(out, masks, cell)
    rows, cols = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    expected = ((rows % 2) * 2 + cols % 2).float()
    assert blind.shape == (n, 3, 6, 6)
    assert torch.all(blind == expected)


@pytest.mark.parametrize("cell", [2, 4])
def test_blind_output_ignores_the_pixel_itself(cell):
    torch.manual_seed(0)
    net = UNet(1, features=4, depth=2).double().eval()
    y = torch.rand(1, 1, 16, 16, dtype=torch.float64)

    @torch.no_grad()
    def blind(img):
        volume, masks = global_masker(img, cell)
        return global_mapper(net(volume), masks, cell)

    base = blind(y)
    for r, c in [(5, 7), (0, 0), (15, 3)]:
        y2 = y.clone()
        y2[0, 0, r, c] += 10.0
        changed = blind(y2)
        assert changed[0, 0, r, c] == pytest.approx(base[0, 0, r, c].item(), abs=1e-9)
        assert (changed - base).abs().max() > 1e-3  # other pixels do see it


def test_loss_equals_hand_computation_and_visible_gets_no_gradient():
    torch.manual_seed(0)
    blind = torch.rand(2, 1, 4, 4, requires_grad=True)
    visible = torch.rand(2, 1, 4, 4, requires_grad=True)
    y = torch.rand(2, 1, 4, 4)
    lam, eta = 3.5, 0.7
    loss, l_rev, l_reg = b2u_loss(blind, visible, y, lam, eta)
    b, v, t = blind.detach().numpy(), visible.detach().numpy(), y.numpy()
    rev = np.mean((b + lam * v - (lam + 1) * t) ** 2)
    reg = np.mean((b - t) ** 2)
    assert l_rev.item() == pytest.approx(rev, rel=1e-6)
    assert l_reg.item() == pytest.approx(reg, rel=1e-6)
    assert loss.item() == pytest.approx(rev + eta * reg, rel=1e-6)
    loss.backward()
    assert blind.grad is not None and blind.grad.abs().sum() > 0
    assert visible.grad is None
    assert b2u_loss(blind, visible, y, lam)[0].item() == pytest.approx(rev + reg, rel=1e-6)


def test_lambda_schedule():
    assert lambda_schedule(0.0, 0.4) == 2.0
    assert lambda_schedule(0.4, 0.4) == 2.0
    assert lambda_schedule(1.0, 0.4) == pytest.approx(20.0)
    assert lambda_schedule(0.7, 0.4) == pytest.approx(11.0)
    assert lambda_schedule(0.9, 0.8, lam0=1.0, lam1=3.0) == pytest.approx(2.0)
    assert lambda_schedule(2.0, 0.4) == pytest.approx(20.0)  # clipped
    assert lambda_schedule(0.5, 1.0) == 2.0


def test_lr_schedule_halves_at_milestones():
    assert lr_schedule(0.0, 1e-3) == 1e-3
    assert lr_schedule(0.19, 1e-3) == 1e-3
    assert lr_schedule(0.2, 1e-3) == pytest.approx(5e-4)
    assert lr_schedule(0.5, 1e-3) == pytest.approx(2.5e-4)
    assert lr_schedule(1.0, 1e-3) == pytest.approx(1e-3 / 16)


def test_unet_paper_size_and_shapes():
    net = UNet(1, features=48, depth=5)
    n = sum(p.numel() for p in net.parameters())
    assert 1.0e6 < n < 1.2e6
    acts = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.1 for a in acts)
    rgb = UNet(3, features=8, depth=3)
    assert rgb(torch.rand(2, 3, 32, 40)).shape == (2, 3, 32, 40)


@pytest.mark.parametrize("shape", [(37, 50), (5, 9), (1, 1), (64, 17)])
def test_unet_accepts_any_size(shape):
    net = UNet(1, features=4, depth=3)
    assert net(torch.rand(1, 1, *shape)).shape == (1, 1, *shape)


def test_masker_rejects_bad_input():
    with pytest.raises(ValueError, match="cell"):
        global_masker(torch.rand(1, 1, 4, 4), cell=1)
    with pytest.raises(ValueError, match="N, C, H, W"):
        global_masker(torch.rand(4, 4))
