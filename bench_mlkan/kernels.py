"""Evaluation kernels of a B-spline KAN layer, all computing the same thing:

    y[b, q] = sum_p sum_{r=0..k} coef[q, p, first[b, p] + r] * v[b, p, r]

where (first, v) = ``splines.local_bspline(x, grid)``: the k+1 nonzero B-splines per input.

The contraction is bilinear in (v, T) with T the coefficient table (P (n + k), Q), and its
three bilinear maps differentiate into each other (``_Contract``, ``_Sample``,
``_Scatter``), so a kernel only provides three forward loops and is differentiable to any
order (PINNs take ``create_graph=True`` double backward through it). Only v (batch, P, k+1),
the integer rows and the (batch, Q) output gradients are saved for backward: never a dense
(batch, P (n + k)) basis.

Kernels (``KERNELS``, a plain dict; pick one with ``spline_layer_forward(..., kernel=name)``,
``set_default_kernel(name)`` or the environment variable ``BENCH_MLKAN_KERNEL``):

- ``c``: the C loops of ``kernels_c`` (CPU, float32/float64; built with the system C
  compiler in about a second and cached; absent without a compiler).
- ``gather``: pure PyTorch; gathers the k+1 coefficient rows per input in batch chunks
  (bounded memory), then ``bmm``/``index_add_``; any device.
- ``dense``: pure PyTorch; scatters v into a dense (batch, P (n + k)) basis per call and uses
  one matmul per map (BLAS-fast on coarse grids; the basis is a temporary, never saved).
- ``autograd``: the dense basis + one matmul under plain autograd (the original path; saves
  the dense basis; the reference the others are tested against besides Cox-de Boor).

``"auto"`` (the default) takes ``c`` on CPU when it is available, except on grids so coarse
that the dense matmul wins (``dense`` when n + k <= ``DENSE_MAX_BASIS`` * (k + 1)); on
other devices ``gather`` (or ``dense`` on coarse grids). The thresholds come from
``make perf`` on the development machine (see leaderboards/perf/).
"""

from __future__ import annotations

import os
from typing import Protocol

import torch
from torch import Tensor

from . import kernels_c
from .splines import Grid, local_bspline

#: dense beats the local kernels when n + k <= DENSE_MAX_BASIS * (k + 1) (CPU, measured)
DENSE_MAX_BASIS = 1.0
#: elements of one gathered (chunk, P (k+1), Q) block in the ``gather`` kernel
GATHER_CHUNK_ELEMENTS = 1 << 22


class Kernel(Protocol):
    """Three forward loops on contiguous tensors (see the module docstring)."""

    name: str

    def available(self, device: torch.device, dtype: torch.dtype) -> bool: ...

    def contract(self, v: Tensor, base: Tensor, tab: Tensor) -> Tensor:
        """(batch, P, K1), (batch, P) int64, (rows, Q) -> (batch, Q)."""
        ...

    def sample(self, g: Tensor, base: Tensor, tab: Tensor, k1: int) -> Tensor:
        """(batch, Q), (batch, P), (rows, Q) -> (batch, P, K1)."""
        ...

    def scatter(self, v: Tensor, base: Tensor, g: Tensor, rows: int) -> Tensor:
        """(batch, P, K1), (batch, P), (batch, Q) -> (rows, Q)."""
        ...


def _rows(base: Tensor, k1: int) -> Tensor:
    """(batch, P (k+1)) table rows base[b, p] + r."""
    offsets = torch.arange(k1, device=base.device)
    return (base.unsqueeze(-1) + offsets).reshape(base.shape[0], -1)


class CKernel:
    name = "c"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return (
            device.type == "cpu"
            and dtype in (torch.float32, torch.float64)
            and (kernels_c.load() is not None)
        )

    def _lib(self) -> kernels_c.CKernels:
        lib = kernels_c.load()
        if lib is None:
            raise RuntimeError("the C kernel is unavailable (no C compiler or BENCH_MLKAN_NO_C)")
        return lib

    def contract(self, v: Tensor, base: Tensor, tab: Tensor) -> Tensor:
        return self._lib().contract(v, base, tab)

    def sample(self, g: Tensor, base: Tensor, tab: Tensor, k1: int) -> Tensor:
        return self._lib().sample(g, base, tab, k1)

    def scatter(self, v: Tensor, base: Tensor, g: Tensor, rows: int) -> Tensor:
        return self._lib().scatter(v, base, g, rows)


class GatherKernel:
    name = "gather"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return dtype.is_floating_point

    @staticmethod
    def _chunk(batch: int, width: int) -> int:
        return max(1, min(batch, GATHER_CHUNK_ELEMENTS // max(1, width)))

    def contract(self, v: Tensor, base: Tensor, tab: Tensor) -> Tensor:
        B, P, K1 = v.shape
        rows, vv = _rows(base, K1), v.reshape(B, 1, P * K1)
        c = self._chunk(B, P * K1 * tab.shape[1])
        parts = [torch.bmm(vv[i : i + c], tab[rows[i : i + c]]) for i in range(0, B, c)]
        return torch.cat(parts).squeeze(1)

    def sample(self, g: Tensor, base: Tensor, tab: Tensor, k1: int) -> Tensor:
        B, P = base.shape
        rows, gg = _rows(base, k1), g.unsqueeze(-1)
        c = self._chunk(B, P * k1 * tab.shape[1])
        parts = [torch.bmm(tab[rows[i : i + c]], gg[i : i + c]) for i in range(0, B, c)]
        return torch.cat(parts).reshape(B, P, k1)

    def scatter(self, v: Tensor, base: Tensor, g: Tensor, rows: int) -> Tensor:
        B, P, K1 = v.shape
        Q = g.shape[1]
        idx, vv = _rows(base, K1), v.reshape(B, P * K1, 1)
        out = torch.zeros(rows, Q, dtype=g.dtype, device=g.device)
        c = self._chunk(B, P * K1 * Q)
        for i in range(0, B, c):
            outer = (vv[i : i + c] * g[i : i + c].unsqueeze(1)).reshape(-1, Q)
            out.index_add_(0, idx[i : i + c].reshape(-1), outer)
        return out


class DenseKernel:
    name = "dense"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return dtype.is_floating_point

    @staticmethod
    def _basis(v: Tensor, base: Tensor, rows: int) -> Tensor:
        B, P, K1 = v.shape
        out = torch.zeros(B, rows, dtype=v.dtype, device=v.device)
        return out.scatter_(1, _rows(base, K1), v.reshape(B, -1))

    def contract(self, v: Tensor, base: Tensor, tab: Tensor) -> Tensor:
        return self._basis(v, base, tab.shape[0]) @ tab

    def sample(self, g: Tensor, base: Tensor, tab: Tensor, k1: int) -> Tensor:
        B, P = base.shape
        return (g @ tab.T).gather(1, _rows(base, k1)).reshape(B, P, k1)

    def scatter(self, v: Tensor, base: Tensor, g: Tensor, rows: int) -> Tensor:
        return self._basis(v, base, rows).T @ g


class AutogradKernel:
    """Marker: the dense basis + one matmul under plain autograd (see ``dense_autograd``)."""

    name = "autograd"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return dtype.is_floating_point

    def contract(self, v: Tensor, base: Tensor, tab: Tensor) -> Tensor:
        return DenseKernel._basis(v, base, tab.shape[0]) @ tab

    def sample(self, g: Tensor, base: Tensor, tab: Tensor, k1: int) -> Tensor:
        return DenseKernel().sample(g, base, tab, k1)

    def scatter(self, v: Tensor, base: Tensor, g: Tensor, rows: int) -> Tensor:
        return DenseKernel().scatter(v, base, g, rows)


#: kernel name -> kernel (a plain dict; add one by inserting an object with the 3 methods)
KERNELS: dict[str, Kernel] = {
    k.name: k for k in (CKernel(), GatherKernel(), DenseKernel(), AutogradKernel())
}
_DEFAULT = os.environ.get("BENCH_MLKAN_KERNEL", "auto")


def set_default_kernel(name: str) -> None:
    """Kernel used when ``kernel`` is None: a name in ``KERNELS`` or ``"auto"``."""
    global _DEFAULT
    if name != "auto" and name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; known: {['auto', *KERNELS]}")
    _DEFAULT = name


def get_default_kernel() -> str:
    return _DEFAULT


def resolve_kernel(name: str | None, grid: Grid, device: torch.device, dtype: torch.dtype) -> str:
    """The kernel name that ``name`` (None: the default; "auto": chosen here) stands for."""
    name = _DEFAULT if name is None else name
    if name != "auto":
        if name not in KERNELS:
            raise ValueError(f"unknown kernel {name!r}; known: {['auto', *KERNELS]}")
        return name
    coarse = grid.num_basis <= DENSE_MAX_BASIS * (grid.degree + 1)
    if device.type == "cpu":
        if coarse:
            return "dense"
        return "c" if KERNELS["c"].available(device, dtype) else "gather"
    return "dense" if coarse else "gather"


# ----------------------------------------------------------------------------- autograd
def _needed(ctx, i: int) -> bool:
    """Whether input i's gradient is used by the running backward pass.

    ``ctx.needs_input_grad`` is fixed at forward time; the engine knows better (e.g. in
    ``autograd.grad(u, x)`` the coefficient gradient is not needed). Asking it is a private
    torch API, so any failure means "needed".
    """
    if not ctx.needs_input_grad[i]:
        return False
    try:
        fn = ctx.next_functions[i][0]
        return fn is None or bool(torch._C._will_engine_execute_node(fn))
    except Exception:  # noqa: BLE001 - leaf inside autograd.grad, older torch, ...
        return True


class _Contract(torch.autograd.Function):
    """y = contract(v, T)."""

    @staticmethod
    def forward(ctx, v: Tensor, base: Tensor, tab: Tensor, kern: Kernel) -> Tensor:
        ctx.save_for_backward(v, base, tab)
        ctx.kern = kern
        return kern.contract(v, base, tab)

    @staticmethod
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        v, base, tab = ctx.saved_tensors
        k1, rows = v.shape[2], tab.shape[0]
        gv = _sample(gy, base, tab, k1, ctx.kern) if _needed(ctx, 0) else None
        gt = _scatter(v, base, gy, rows, ctx.kern) if _needed(ctx, 2) else None
        return gv, None, gt, None


class _Sample(torch.autograd.Function):
    """G = sample(g, T): G[b, p, r] = g[b] . T[base[b, p] + r] (the v-gradient of contract)."""

    @staticmethod
    def forward(ctx, g: Tensor, base: Tensor, tab: Tensor, k1: int, kern: Kernel) -> Tensor:
        ctx.save_for_backward(g, base, tab)
        ctx.kern = kern
        return kern.sample(g, base, tab, k1)

    @staticmethod
    def backward(ctx, gG: Tensor):  # type: ignore[override]
        g, base, tab = ctx.saved_tensors
        gg = _contract(gG, base, tab, ctx.kern) if _needed(ctx, 0) else None
        gt = _scatter(gG, base, g, tab.shape[0], ctx.kern) if _needed(ctx, 2) else None
        return gg, None, gt, None, None


class _Scatter(torch.autograd.Function):
    """S = scatter(v, g): S[base[b, p] + r] += v[b, p, r] g[b] (the T-gradient of contract)."""

    @staticmethod
    def forward(ctx, v: Tensor, base: Tensor, g: Tensor, rows: int, kern: Kernel) -> Tensor:
        ctx.save_for_backward(v, base, g)
        ctx.kern = kern
        return kern.scatter(v, base, g, rows)

    @staticmethod
    def backward(ctx, gS: Tensor):  # type: ignore[override]
        v, base, g = ctx.saved_tensors
        gv = _sample(g, base, gS, v.shape[2], ctx.kern) if _needed(ctx, 0) else None
        gg = _contract(v, base, gS, ctx.kern) if _needed(ctx, 2) else None
        return gv, None, gg, None, None


# Inputs are made contiguous *outside* the Functions: a copy made inside ``forward`` and
# saved would be cut off from the graph, silently dropping higher-order terms.
def _contract(v: Tensor, base: Tensor, tab: Tensor, kern: Kernel) -> Tensor:
    return _Contract.apply(v.contiguous(), base, tab.contiguous(), kern)


def _sample(g: Tensor, base: Tensor, tab: Tensor, k1: int, kern: Kernel) -> Tensor:
    return _Sample.apply(g.contiguous(), base, tab.contiguous(), k1, kern)


def _scatter(v: Tensor, base: Tensor, g: Tensor, rows: int, kern: Kernel) -> Tensor:
    return _Scatter.apply(v.contiguous(), base, g.contiguous(), rows, kern)


# ----------------------------------------------------------------------------- entry point
def dense_autograd(first: Tensor, v: Tensor, coef: Tensor) -> Tensor:
    """The original path: scatter v into a dense (batch, P (n + k)) basis, one matmul."""
    batch, P, k1 = v.shape
    Q, _, nb = coef.shape
    offsets = torch.arange(k1, device=v.device)
    basis = torch.zeros(batch, P, nb, dtype=v.dtype, device=v.device)
    basis = basis.scatter(-1, first.unsqueeze(-1) + offsets, v)
    return basis.reshape(batch, P * nb) @ coef.reshape(Q, P * nb).T


def spline_contract(x: Tensor, coef: Tensor, grid: Grid, kernel: str | None = None) -> Tensor:
    """y[b, q] = sum_p sum_i coef[q, p, i] B_i(x[b, p]) with the chosen kernel.

    Args:
        x: (batch, P); coef: (Q, P, n + k); kernel: a name in ``KERNELS``, "auto" or None
            (the default, see ``set_default_kernel``).
    Returns:
        (batch, Q).
    """
    name = resolve_kernel(kernel, grid, x.device, x.dtype)
    first, v = local_bspline(x, grid)  # (batch, P), (batch, P, k+1)
    if name == "autograd":
        return dense_autograd(first, v, coef)
    kern = KERNELS[name]
    Q, P, nb = coef.shape
    base = first + torch.arange(0, P * nb, nb, device=x.device)  # row of T per input
    tab = coef.permute(1, 2, 0).reshape(P * nb, Q)  # T[p (n + k) + i, q] = coef[q, p, i]
    return _contract(v, base, tab, kern)


#: for ``perf``: the kernels one can time on (device, dtype), auto first
def available_kernels(device: torch.device, dtype: torch.dtype) -> list[str]:
    return [name for name, k in KERNELS.items() if k.available(device, dtype)]


__all__ = [
    "KERNELS",
    "Kernel",
    "available_kernels",
    "dense_autograd",
    "get_default_kernel",
    "resolve_kernel",
    "set_default_kernel",
    "spline_contract",
]
