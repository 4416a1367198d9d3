"""The re-visible loss with its regulariser (method section 4)."""

from __future__ import annotations

import torch


def b2u_loss(
    blind: torch.Tensor,
    visible: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    eta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blind2Unblind training loss.

    ``L_rev = mean((blind + lam * visible - (lam + 1) * y) ** 2)``,
    ``L_reg = mean((blind - y) ** 2)``, ``loss = L_rev + eta * L_reg``.

    Parameters
    ----------
    blind : torch.Tensor
        ``h(f(Omega_y))``, ``(N, C, H, W)``; gradients flow through it.
    visible : torch.Tensor
        ``f(y)``; detached here, so it never receives a gradient.
    y : torch.Tensor
        The noisy images, same shape.
    lam : float
        Current lambda of the re-visible term.
    eta : float
        Weight of the regulariser.

    Returns
    -------
    loss, l_rev, l_reg : torch.Tensor
        Scalars; means are over all elements.
    """
    visible = visible.detach()
    l_rev = torch.mean((blind + lam * visible - (lam + 1.0) * y) ** 2)
    l_reg = torch.mean((blind - y) ** 2)
    return l_rev + eta * l_reg, l_rev, l_reg
