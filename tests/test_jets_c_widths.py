"""The fused spline-jet C kernel at every output width: full register blocks, the narrow
columns vectorised over inputs (``jfwd_tail`` / ``jbwd_tail``) and both together, on one and
two threads (thread-private table gradients), against the PyTorch maps of ``jets.spline``."""

from __future__ import annotations

import pytest
import torch

from bench_mlkan import jets, jets_c
from bench_mlkan.splines import Grid

needs_c = pytest.mark.skipif(jets_c.load() is None, reason="the C kernels are not built here")


def _spline_jet(x, X, tab, coef_shape, grid, pairs, use_c: bool):
    """(value, rows) of one spline layer and the gradients of a fixed loss of them."""
    x, X, tab = (t.detach().clone().requires_grad_(True) for t in (x, X, tab))
    Q, P, nb = coef_shape
    coef = tab.reshape(P, nb, Q).permute(2, 0, 1)
    jet = jets.Jet(x, X, 2, pairs)
    out = jets.spline(jet, coef, grid, kernel="c" if use_c else "dense")
    w = torch.linspace(0.5, 1.5, out.rest.numel(), dtype=x.dtype).reshape(out.rest.shape)
    loss = (out.value**2).sum() + (w * out.rest).sum() + (out.rest**2).sum()
    grads = torch.autograd.grad(loss, (x, X, tab))
    return (out.value.detach(), out.rest.detach(), *grads)


@needs_c
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("Q", [1, 3, 4, 5, 9, 20])
@pytest.mark.parametrize("P", [2, 5, 70])
def test_c_spline_jet_equals_pytorch_maps_at_every_width(P, Q, threads):
    grid = Grid(4, 3)
    pairs = ((0, 0), (0, 1))
    g = torch.Generator().manual_seed(P * 100 + Q)
    N = 301  # not a multiple of the row blocks
    x = 2.2 * torch.rand(N, P, generator=g, dtype=torch.float64) - 1.1  # some outside
    x[:7, 0] = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -1.0, 1.0], dtype=torch.float64)
    X = torch.randn(2 + len(pairs), N, P, generator=g, dtype=torch.float64)
    nb = grid.num_basis
    tab = torch.randn(P * nb, Q, generator=g, dtype=torch.float64)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = _spline_jet(x, X, tab, (Q, P, nb), grid, pairs, use_c=True)
    finally:
        torch.set_num_threads(old)
    want = _spline_jet(x, X, tab, (Q, P, nb), grid, pairs, use_c=False)
    for a, b in zip(got, want):
        scale = b.abs().max().clamp_min(1.0)
        assert ((a - b).abs().max() / scale).item() < 1e-12
