"""Cox-de Boor reference: the way the common public KAN libraries evaluate a KAN layer.

Used only as a benchmark baseline (``make perf``) and as an independent cross-check in the
tests; the models never call it.

It follows efficient-kan's ``KANLinear.b_splines`` + ``F.linear``: the degree-0 indicator
functions of every knot interval of the extended grid (n + 2k intervals), then k rounds of
the Cox-de Boor recursion over *all* basis functions (dense tensors of shape
(batch, P, n + 2k - d)), then one contraction with the coefficients. Its cost is
O(batch P (n k + k^2)) elementwise work plus the dense (batch, P (n + k)) x (P (n + k), Q)
matmul, and autograd stores every intermediate of the recursion.

Differences from efficient-kan, kept minimal so the cost is the same:
- inputs are clamped to the grid range first, as in every path of this project (so both
  agree outside [a, b] as well, except at x == b exactly, see the warning);
- only the spline term: no SiLU base branch and no separate spline scaler.

Warning: the degree-0 indicators are half-open intervals [t_j, t_{j+1}), exactly as in
efficient-kan, so at x == b exactly every basis function is 0 (the true value is the
left limit). The project's kernels use the left limit; compare them on interior points.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .splines import Grid


def extended_knots(grid: Grid, in_features: int, dtype=torch.float64, device=None) -> Tensor:
    """The knots t_{-k} .. t_{n+k} repeated for every input: (P, n + 2k + 1), like efficient-kan."""
    t = grid.knots(dtype=dtype, device=device)
    return t.expand(in_features, -1).contiguous()


def cox_de_boor_basis(x: Tensor, knots: Tensor, degree: int) -> Tensor:
    """All n + k B-splines at each input by the Cox-de Boor recursion (efficient-kan style).

    Args:
        x: (batch, P) inputs (the caller clamps them); knots: (P, n + 2k + 1).
    Returns:
        (batch, P, n + k) basis values.
    """
    g = knots
    xe = x.unsqueeze(-1)  # (batch, P, 1)
    bases = ((xe >= g[:, :-1]) & (xe < g[:, 1:])).to(x.dtype)  # (batch, P, n + 2k)
    for d in range(1, degree + 1):
        bases = (xe - g[:, : -(d + 1)]) / (g[:, d:-1] - g[:, : -(d + 1)]) * bases[:, :, :-1] + (
            g[:, d + 1 :] - xe
        ) / (g[:, d + 1 :] - g[:, 1:-d]) * bases[:, :, 1:]
    return bases.contiguous()


def cox_de_boor_layer_forward(x: Tensor, coef: Tensor, grid: Grid, knots: Tensor | None = None):
    """y[b, q] = sum_p sum_i coef[q, p, i] B_i(x[b, p]) via the recursion, then one matmul.

    Args:
        x: (batch, P); coef: (Q, P, n + k); knots: optional precomputed ``extended_knots``.
    Returns:
        (batch, Q).
    """
    batch, P = x.shape
    Q = coef.shape[0]
    if knots is None:
        knots = extended_knots(grid, P, x.dtype, x.device)
    a, b = grid.grid_range
    basis = cox_de_boor_basis(x.clamp(a, b), knots, grid.degree)
    return F.linear(basis.view(batch, -1), coef.reshape(Q, -1))


class CoxDeBoorLayer(nn.Module):
    """A KAN layer evaluated by ``cox_de_boor_layer_forward`` (coefficients (Q, P, n + k))."""

    def __init__(self, in_features: int, out_features: int, grid: Grid, init_std: float = 0.1):
        super().__init__()
        self.in_features, self.out_features, self.grid = in_features, out_features, grid
        self.register_buffer("knots", extended_knots(grid, in_features, torch.get_default_dtype()))
        self.coef = nn.Parameter(
            torch.randn(out_features, in_features, grid.num_basis) * init_std / in_features**0.5
        )

    def forward(self, x: Tensor) -> Tensor:
        knots: Tensor = self.knots  # type: ignore[assignment]
        return cox_de_boor_layer_forward(x, self.coef, self.grid, knots)


class CoxDeBoorKAN(nn.Module):
    """A plain stack of ``CoxDeBoorLayer`` with ``squash`` (tanh onto the grid range) between.

    Mirrors ``models.KAN(widths, ..., squash="tanh")`` without input map or biases, so the
    two can share coefficients (``load_from``) and be timed against each other.
    """

    def __init__(self, widths, grid_size: int, degree: int, grid_range=(-1.0, 1.0), squash=True):
        super().__init__()
        self.grid = Grid(grid_size, degree, tuple(grid_range))
        self.squash = squash
        self.layers = nn.ModuleList(
            CoxDeBoorLayer(p, q, self.grid) for p, q in zip(widths[:-1], widths[1:])
        )

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.grid.grid_range
        mid, half = (a + b) / 2, (b - a) / 2
        for i, layer in enumerate(self.layers):
            if i > 0 and self.squash:
                x = mid + half * torch.tanh(x)
            x = layer(x)
        return x

    @torch.no_grad()
    def load_from(self, kan: Any) -> CoxDeBoorKAN:
        """Copy the B-spline coefficients of a ``models.KAN`` with the same widths."""
        for dst, src in zip(self.layers, kan.layers):
            dst.coef.copy_(src.spline_coefficients())  # type: ignore[operator]
        return self
