"""Evaluation kernels of a B-spline KAN layer, all computing the same thing:

    y[b, q] = sum_p sum_{r=0..k} coef[q, p, cell[b, p] + r] * B_{cell+r}(x[b, p])

using only the k+1 nonzero B-splines per input (uniform knots; inputs clamped to [a, b]).

How it is differentiated. With u = (clamp(x) - a) / h (plain PyTorch, so the clamp and the
1/h scale are ordinary autograd), T the coefficient table (P (n + k), Q) with
T[p (n + k) + i, q] = coef[q, p, i], and w^d_r(u) = d^d/du^d B_{cell+r}(u), a kernel provides
three maps for any derivative order d:

    contract_d(c, u, T)[b, q] = sum_{p, r} c[b, p] w^d_r(u[b, p]) T[row + r, q]
    sample_d(g, u, T)[b, p]   = sum_r w^d_r(u[b, p]) g[b] . T[row + r]
    scatter_d(c, u, g)[i, q]  = sum_{b, p, r: row + r = i} c[b, p] w^d_r(u[b, p]) g[b, q]

(c = None means 1.) They differentiate into each other - e.g. d contract_d / d u =
c * sample_{d+1}, d / d c = sample_d, d / d T = scatter_d - so every derivative order that
PINNs take (``create_graph=True``) stays on the same fast path, and only u, c (batch, P),
g (batch, Q) and T are ever saved for backward: no (batch, P, k+1) basis values, no
integer indices, no dense (batch, P (n + k)) basis.

Kernels (``KERNELS``, a plain dict; choose one with ``spline_layer_forward(..., kernel=name)``,
``set_default_kernel(name)`` or the environment variable ``BENCH_MLKAN_KERNEL``):

- ``c``: C loops (``kernels_c``) computing w on the fly (CPU, float32/float64; built with the
  system C compiler in about a second and cached; absent without a compiler).
- ``gather``: pure PyTorch; the k+1 coefficient rows per input gathered in batch chunks
  (bounded memory), then ``bmm`` / ``index_add_``; any device.
- ``dense``: pure PyTorch; the local values scattered into a dense (batch, P (n + k)) basis
  as a temporary (never saved), one BLAS matmul per map; any device.
- ``autograd``: the original path, dense basis + one matmul under plain autograd of
  ``splines.local_bspline`` (saves the dense basis; a reference).

``"auto"`` (the default): ``c`` on CPU where it is available (float32/float64), else
``dense`` on coarse grids (n + k <= ``DENSE_MAX_BASIS``) and ``gather`` on finer ones.
Which is fastest was measured by ``make perf`` (leaderboards/perf/); on CUDA the choice
is untested (no GPU was available when it was written).

Operand checks: every map of every kernel, the autograd entry points and
``spline_contract`` check shapes, dtypes, devices (and, for the maps, contiguity) of u, c,
g and T against the coefficient table (P (n + k), Q) and raise ``ValueError`` naming the
expected and actual shapes (``kernel_checks``; tensor metadata only, no device sync,
about 0.5 us). A wrong input width used to reach the C loops and read past the table.

Cost per call on small problems (``python -m bench_mlkan.devtools.kernel_overhead``; cubic, grid 5,
P = Q = 2, float64, 1 thread, min of repeats, old and new kernels interleaved in one
process on the shared 2-core development machine; us per call):

    batch  map       c before  c after    dense   (autograd entry ``_contract`` with c:
        1  contract       4.0      4.5     31      before 10.1 us, after 10.5 us)
       16  contract       4.4      4.5     35
     1024  contract      46.0     18.7     83      (sample 55 -> 33, scatter 56 -> 20)
     2600  contract     146       61      354      (sample 182 -> 97, scatter 136 -> 59)

The fixed cost of a C call is about 4.5 us (ctypes call with 13 arguments ~1 us, output
allocation ~1-1.5 us, checks ~0.5 us, C region ~0.3 us) and was already near that floor;
the 60-150 us calls of a 2,600-point PINN were per-element work (~13-17 ns per input and
map with a runtime degree), which the K1-specialised C loops halve (``kernels_c``). The
autograd Function adds ~6 us per call and is skipped where nothing needs a gradient. A
[2, 2, 1] cubic PINN step (u, grad, Laplacian, parameter gradient; 2,600 points) went
from 4.41 to 3.25 ms; [2, 5, 5, 1] 15.7 -> 10.9 ms; [2, 20, 20, 1] 85 -> 57 ms (same
gradients bit for bit). Crossover: none - ``c`` is faster than ``dense`` and ``gather``
at every batch measured (1 .. 8192; 7x at batch 1, where PyTorch's per-op overhead
dominates), so ``auto`` keeps ``c`` for small problems too.
"""

from __future__ import annotations

import math
import os
from functools import cache
from typing import Protocol

import torch
from torch import Tensor

from . import kernels_c
from .kernel_checks import check_layer_operands, check_map_operands
from .splines import Grid, _local_monomials, clamp_to_grid, local_bspline

#: without the C kernel: ``dense`` when n + k <= DENSE_MAX_BASIS, else ``gather``
DENSE_MAX_BASIS = 16
#: elements of one gathered (chunk, P (k+1), Q) block in the ``gather`` kernel
GATHER_CHUNK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------- local values
@cache
def derivative_tables(degree: int, order: int) -> tuple[list[float], list[float], list[float]]:
    """Horner tables of w^order_r (see the module docstring), as plain floats.

    Returns (poly, sign, shift): poly[m (k+1) + r] is the coefficient of z_r^m with
    z_r = shift[r] + sign[r] s, s = u - cell. Column r < (k+1)//2 is written in z = 1 - s
    (B_r(s) = B_{k-r}(1 - s)), the others in z = s, so each value is evaluated in the
    variable in which it vanishes at the cell end (exact zeros, no negative round-off).
    """
    M = _local_monomials(degree)  # M[m][r]: coefficient of s^m of column r
    k1 = degree + 1
    left = k1 // 2
    poly = [0.0] * (k1 * k1)
    sign = [-1.0 if r < left else 1.0 for r in range(k1)]
    shift = [1.0 if r < left else 0.0 for r in range(k1)]
    for r in range(k1):
        col = k1 - 1 - r if r < left else r
        for m in range(k1 - order):
            falling = math.factorial(m + order) / math.factorial(m)
            poly[m * k1 + r] = sign[r] ** order * falling * M[m + order][col]
    return poly, sign, shift


class LocalSpec:
    """What a kernel needs for derivative order ``order``: grid sizes and Horner tables."""

    def __init__(self, grid_size: int, degree: int, order: int, dtype, device):
        self.grid_size, self.degree, self.order = grid_size, degree, order
        self.dtype, self.device = dtype, device
        poly, sign, shift = derivative_tables(degree, order)
        mk = lambda t: torch.tensor(t, dtype=dtype, device=device)  # noqa: E731
        self.tables = (mk(poly), mk(sign), mk(shift))
        #: raw addresses of the tables (the C kernel's arguments; the tables live as long)
        self.table_ptrs = tuple(t.data_ptr() for t in self.tables)
        self.table_device = self.tables[0].device

    @property
    def vanishes(self) -> bool:
        """Derivatives past the degree are zero (inside cells)."""
        return self.order > self.degree

    def next(self) -> LocalSpec:
        return local_spec(self.grid_size, self.degree, self.order + 1, self.dtype, self.device)


@cache
def local_spec(grid_size: int, degree: int, order: int, dtype, device) -> LocalSpec:
    return LocalSpec(grid_size, degree, order, dtype, device)


def local_weights(u: Tensor, spec: LocalSpec) -> tuple[Tensor, Tensor]:
    """(cell (batch, P) int64, w^order (batch, P, k+1)) in plain PyTorch (no autograd use)."""
    n, k1 = spec.grid_size, spec.degree + 1
    cell = torch.floor(u).clamp_(0, n - 1)
    s = (u - cell).unsqueeze(-1)
    poly, sign, shift = spec.tables
    z = torch.addcmul(shift, s, sign)
    P = poly.view(k1, k1)
    w = P[k1 - 1].expand_as(z)
    for m in range(k1 - 2, -1, -1):
        w = torch.addcmul(P[m], w, z)
    return cell.long(), w.contiguous()


# ----------------------------------------------------------------------------- kernels
class Kernel(Protocol):
    """The three maps of the module docstring on contiguous tensors."""

    name: str

    def available(self, device: torch.device, dtype: torch.dtype) -> bool: ...

    def contract(self, c: Tensor | None, u: Tensor, tab: Tensor, spec: LocalSpec) -> Tensor: ...

    def sample(self, g: Tensor, u: Tensor, tab: Tensor, spec: LocalSpec) -> Tensor: ...

    def scatter(
        self, c: Tensor | None, u: Tensor, g: Tensor, spec: LocalSpec, rows: int
    ) -> Tensor: ...


class CKernel:
    name = "c"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return (
            device.type == "cpu"
            and dtype in (torch.float32, torch.float64)
            and kernels_c.load() is not None
        )

    @staticmethod
    def _lib() -> kernels_c.CKernels:
        lib = kernels_c.load()
        if lib is None:
            raise RuntimeError("the C kernel is unavailable (no C compiler or BENCH_MLKAN_NO_C)")
        return lib

    def contract(self, c, u, tab, spec):
        return self._lib().contract(c, u, tab, spec)

    def sample(self, g, u, tab, spec):
        return self._lib().sample(g, u, tab, spec)

    def scatter(self, c, u, g, spec, rows):
        return self._lib().scatter(c, u, g, spec, rows)


class _FromValues:
    """Pure-PyTorch kernels: local values w (batch, P, k+1) + rows, then three v-maps."""

    name = "values"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return dtype.is_floating_point

    @staticmethod
    def _setup(u: Tensor, spec: LocalSpec, nb_rows: int):
        cell, w = local_weights(u, spec)
        P = u.shape[1]
        nb = nb_rows // P
        base = cell + torch.arange(0, P * nb, nb, device=u.device)
        rows = (base.unsqueeze(-1) + torch.arange(spec.degree + 1, device=u.device)).reshape(
            u.shape[0], -1
        )
        return w, rows  # (B, P, K1), (B, P K1)

    def contract(self, c, u, tab, spec):
        check_map_operands("contract", c, u, tab, spec)
        w, rows = self._setup(u, spec, tab.shape[0])
        if c is not None:
            w = w * c.unsqueeze(-1)
        return self.contract_v(w.reshape(w.shape[0], -1), rows, tab)

    def sample(self, g, u, tab, spec):
        check_map_operands("sample", g, u, tab, spec)
        w, rows = self._setup(u, spec, tab.shape[0])
        return (self.sample_v(g, rows, tab).view_as(w) * w).sum(-1)

    def scatter(self, c, u, g, spec, rows):
        check_map_operands("scatter", c, u, g, spec, rows)
        w, idx = self._setup(u, spec, rows)
        if c is not None:
            w = w * c.unsqueeze(-1)
        return self.scatter_v(w.reshape(w.shape[0], -1), idx, g, rows)

    # v-maps on flat (B, P K1) values and rows
    def contract_v(self, v: Tensor, rows: Tensor, tab: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_v(self, g: Tensor, rows: Tensor, tab: Tensor) -> Tensor:
        raise NotImplementedError

    def scatter_v(self, v: Tensor, rows: Tensor, g: Tensor, nrows: int) -> Tensor:
        raise NotImplementedError


class GatherKernel(_FromValues):
    name = "gather"

    @staticmethod
    def _chunk(batch: int, width: int) -> int:
        return max(1, min(batch, GATHER_CHUNK_ELEMENTS // max(1, width)))

    def contract_v(self, v, rows, tab):
        B, W = v.shape
        c = self._chunk(B, W * tab.shape[1])
        vv = v.unsqueeze(1)
        parts = [torch.bmm(vv[i : i + c], tab[rows[i : i + c]]) for i in range(0, B, c)]
        return torch.cat(parts).squeeze(1)

    def sample_v(self, g, rows, tab):
        B, W = rows.shape
        c = self._chunk(B, W * tab.shape[1])
        gg = g.unsqueeze(-1)
        parts = [torch.bmm(tab[rows[i : i + c]], gg[i : i + c]) for i in range(0, B, c)]
        return torch.cat(parts).squeeze(-1)

    def scatter_v(self, v, rows, g, nrows):
        B, W = v.shape
        Q = g.shape[1]
        out = torch.zeros(nrows, Q, dtype=g.dtype, device=g.device)
        c = self._chunk(B, W * Q)
        for i in range(0, B, c):
            outer = (v[i : i + c].unsqueeze(-1) * g[i : i + c].unsqueeze(1)).reshape(-1, Q)
            out.index_add_(0, rows[i : i + c].reshape(-1), outer)
        return out


class DenseKernel(_FromValues):
    name = "dense"

    @staticmethod
    def _basis(v: Tensor, rows: Tensor, nrows: int) -> Tensor:
        out = torch.zeros(v.shape[0], nrows, dtype=v.dtype, device=v.device)
        return out.scatter_(1, rows, v)

    def contract_v(self, v, rows, tab):
        return self._basis(v, rows, tab.shape[0]) @ tab

    def sample_v(self, g, rows, tab):
        return (g @ tab.T).gather(1, rows)

    def scatter_v(self, v, rows, g, nrows):
        return self._basis(v, rows, nrows).T @ g


class AutogradKernel:
    """Marker for the plain-autograd dense path (``dense_autograd``); no fused maps."""

    name = "autograd"

    def available(self, device: torch.device, dtype: torch.dtype) -> bool:
        return dtype.is_floating_point

    def contract(self, c, u, tab, spec):  # pragma: no cover - never dispatched
        raise NotImplementedError

    sample = scatter = contract


#: kernel name -> kernel (a plain dict; add one by inserting an object with the 3 maps)
KERNELS: dict[str, Kernel] = {
    k.name: k  # type: ignore[misc]
    for k in (CKernel(), GatherKernel(), DenseKernel(), AutogradKernel())
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
    """The kernel that ``name`` (None: the default; "auto": chosen here) stands for."""
    name = _DEFAULT if name is None else name
    if name != "auto":
        if name not in KERNELS:
            raise ValueError(f"unknown kernel {name!r}; known: {['auto', *KERNELS]}")
        return name
    if KERNELS["c"].available(device, dtype):
        return "c"
    return "dense" if grid.num_basis <= DENSE_MAX_BASIS else "gather"


def available_kernels(device: torch.device, dtype: torch.dtype) -> list[str]:
    """Kernels that can run on (device, dtype)."""
    return [name for name, k in KERNELS.items() if k.available(device, dtype)]


# ----------------------------------------------------------------------------- autograd
def _needed(ctx, i: int) -> bool:
    """Whether input i's gradient is used by the running backward pass.

    ``ctx.needs_input_grad`` is fixed at forward time; the engine knows better (in
    ``autograd.grad(u, x)`` the coefficient gradient is not needed). Asking it is a private
    torch API, so any failure means "needed".
    """
    if not ctx.needs_input_grad[i]:
        return False
    try:  # next_functions has one edge per *tensor* input (None inputs have none)
        fn = ctx.next_functions[ctx.edges[i]][0]
        return fn is None or bool(torch._C._will_engine_execute_node(fn))
    except Exception:  # noqa: BLE001 - a leaf inside autograd.grad, an older torch, ...
        return True


def _edges(*inputs) -> list[int]:
    """Position of each input among the tensor inputs (its autograd edge)."""
    out, j = [], 0
    for t in inputs:
        out.append(j)
        j += isinstance(t, Tensor)
    return out


def _times(c: Tensor | None, t: Tensor) -> Tensor:
    return t if c is None else c * t


class _Contract(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, u, tab, spec, kern):  # type: ignore[override]
        ctx.save_for_backward(c, u, tab)
        ctx.spec, ctx.kern, ctx.edges = spec, kern, _edges(c, u, tab)
        return kern.contract(c, u, tab, spec)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        c, u, tab = ctx.saved_tensors
        spec, kern = ctx.spec, ctx.kern
        gc = _sample(gy, u, tab, spec, kern) if _needed(ctx, 0) else None
        gu = _times(c, _sample(gy, u, tab, spec.next(), kern)) if _needed(ctx, 1) else None
        gt = _scatter(c, u, gy, spec, kern, tab.shape[0]) if _needed(ctx, 2) else None
        return gc, gu, gt, None, None


class _Sample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, u, tab, spec, kern):  # type: ignore[override]
        ctx.save_for_backward(g, u, tab)
        ctx.spec, ctx.kern, ctx.edges = spec, kern, _edges(g, u, tab)
        return kern.sample(g, u, tab, spec)

    @staticmethod
    def backward(ctx, gG):  # type: ignore[override]
        g, u, tab = ctx.saved_tensors
        spec, kern = ctx.spec, ctx.kern
        gg = _contract(gG, u, tab, spec, kern) if _needed(ctx, 0) else None
        gu = gG * _sample(g, u, tab, spec.next(), kern) if _needed(ctx, 1) else None
        gt = _scatter(gG, u, g, spec, kern, tab.shape[0]) if _needed(ctx, 2) else None
        return gg, gu, gt, None, None


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, u, g, spec, kern, rows):  # type: ignore[override]
        ctx.save_for_backward(c, u, g)
        ctx.spec, ctx.kern, ctx.edges = spec, kern, _edges(c, u, g)
        return kern.scatter(c, u, g, spec, rows)

    @staticmethod
    def backward(ctx, gS):  # type: ignore[override]
        c, u, g = ctx.saved_tensors
        spec, kern = ctx.spec, ctx.kern
        gc = _sample(g, u, gS, spec, kern) if _needed(ctx, 0) else None
        gu = _times(c, _sample(g, u, gS, spec.next(), kern)) if _needed(ctx, 1) else None
        gg = _contract(c, u, gS, spec, kern) if _needed(ctx, 2) else None
        return gc, gu, gg, None, None, None


# Inputs are made contiguous *outside* the Functions: a copy made inside ``forward`` and
# saved would be cut off from the graph, silently dropping higher-order terms. Orders past
# the degree vanish: a constant zero (its derivatives are zero too).
def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _zeros(u: Tensor, *shape: int) -> Tensor:
    """Zeros that stay attached to u's graph (so later autograd.grad calls see an edge)."""
    if not u.requires_grad:
        return u.new_zeros(shape)
    return (u.reshape(-1)[:1] * 0).reshape([1] * len(shape)).expand(shape)


# The kernel maps check their operands (``kernel_checks``); the vanishing orders, which call
# no map, check here.
# Without a gradient to record (no_grad, or no operand requiring one: e.g. the last backward
# pass of a PINN step) the map runs directly, skipping the Function's fixed cost (~6 us).
def _plain(a: Tensor | None, b: Tensor, c: Tensor) -> bool:
    if not torch.is_grad_enabled():
        return True
    return not (b.requires_grad or c.requires_grad or (a is not None and a.requires_grad))


def _contract(c, u, tab, spec: LocalSpec, kern: Kernel) -> Tensor:
    if spec.vanishes:
        check_map_operands("contract", c, u, tab, spec, contiguous=False)
        return _zeros(u, u.shape[0], tab.shape[1])
    c, u, tab = _c(c), u.contiguous(), tab.contiguous()
    if _plain(c, u, tab):
        return kern.contract(c, u, tab, spec)
    return _Contract.apply(c, u, tab, spec, kern)


def _sample(g, u, tab, spec: LocalSpec, kern: Kernel) -> Tensor:
    if spec.vanishes:
        check_map_operands("sample", g, u, tab, spec, contiguous=False)
        return _zeros(u, *u.shape)
    g, u, tab = g.contiguous(), u.contiguous(), tab.contiguous()
    if _plain(g, u, tab):
        return kern.sample(g, u, tab, spec)
    return _Sample.apply(g, u, tab, spec, kern)


def _scatter(c, u, g, spec: LocalSpec, kern: Kernel, rows: int) -> Tensor:
    if spec.vanishes:
        check_map_operands("scatter", c, u, g, spec, rows, contiguous=False)
        return _zeros(u, rows, g.shape[1])
    c, u, g = _c(c), u.contiguous(), g.contiguous()
    if _plain(c, u, g):
        return kern.scatter(c, u, g, spec, rows)
    return _Scatter.apply(c, u, g, spec, kern, rows)


# ----------------------------------------------------------------------------- entry point
def dense_autograd(x: Tensor, coef: Tensor, grid: Grid) -> Tensor:
    """The original path: local values scattered into a dense basis, one matmul, autograd."""
    batch, P = x.shape
    Q, _, nb = coef.shape
    first, v = local_bspline(x, grid)
    offsets = torch.arange(grid.degree + 1, device=x.device)
    basis = torch.zeros(batch, P, nb, dtype=v.dtype, device=x.device)
    basis = basis.scatter(-1, first.unsqueeze(-1) + offsets, v)
    return basis.reshape(batch, P * nb) @ coef.reshape(Q, P * nb).T


def spline_contract(x: Tensor, coef: Tensor, grid: Grid, kernel: str | None = None) -> Tensor:
    """y[b, q] = sum_p sum_i coef[q, p, i] B_i(x[b, p]) with the chosen kernel.

    Args:
        x: (batch, P); coef: (Q, P, n + k); kernel: a name in ``KERNELS``, "auto" or None
            (the default, see ``set_default_kernel``).
    Returns:
        (batch, Q).
    Raises:
        ValueError: x does not fit coef (width, dtype, device) or coef not (Q, P, n + k).
    """
    check_layer_operands(x, coef, grid.num_basis)
    name = resolve_kernel(kernel, grid, x.device, x.dtype)
    if name == "autograd":
        return dense_autograd(x, coef, grid)
    Q, P, nb = coef.shape
    a, _ = grid.grid_range
    u = (clamp_to_grid(x, grid) - a) / grid.h  # (batch, P) in [0, n]
    tab = coef.permute(1, 2, 0).reshape(P * nb, Q)  # T[p (n + k) + i, q] = coef[q, p, i]
    spec = local_spec(grid.grid_size, grid.degree, 0, x.dtype, x.device)
    return _contract(None, u, tab, spec, KERNELS[name])


__all__ = [
    "KERNELS",
    "Kernel",
    "LocalSpec",
    "available_kernels",
    "dense_autograd",
    "derivative_tables",
    "get_default_kernel",
    "local_weights",
    "resolve_kernel",
    "set_default_kernel",
    "spline_contract",
]
