"""Spline maths on uniform grids: pure tensor functions, no Lightning.

Conventions (METHOD.md section 1): a grid on [a, b] has ``grid_size`` = n intervals
of width h = (b - a)/n and knots t_j = a + j h for j = -k .. n+k (k extension knots on each
side), k = ``degree``. There are n + k basis functions per edge, B_j for j = -k .. n-1,
stored at position i = j + k (0-based) along the last axis.

Inputs outside [a, b] are clamped to [a, b] by every evaluation path (see ``clamp_to_grid``),
so the spline form and the power-ReLU form define the same function on the whole real line:
constant continuation past the ends, with zero input derivative there.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cache, lru_cache

import torch
from torch import Tensor

MAX_DEGREE = 5


@dataclass(frozen=True)
class Grid:
    """A uniform grid: ``grid_size`` intervals on ``grid_range``, splines of ``degree``."""

    grid_size: int
    degree: int
    grid_range: tuple[float, float] = (-1.0, 1.0)

    def __post_init__(self) -> None:
        if not _is_integer(self.grid_size) or self.grid_size < 1:
            raise ValueError(f"grid_size must be an integer >= 1, got {self.grid_size!r}")
        if not _is_integer(self.degree) or not 0 <= self.degree <= MAX_DEGREE:
            raise ValueError(f"degree must be an integer in 0..{MAX_DEGREE}, got {self.degree!r}")
        try:
            a, b = (float(v) for v in self.grid_range)
        except (TypeError, ValueError):
            raise ValueError(
                f"grid_range must be two numbers (a, b), got {self.grid_range!r}"
            ) from None
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise ValueError(f"grid_range must be finite with a < b, got {self.grid_range!r}")
        object.__setattr__(self, "grid_size", int(self.grid_size))
        object.__setattr__(self, "degree", int(self.degree))
        object.__setattr__(self, "grid_range", (a, b))

    @property
    def h(self) -> float:
        """Knot spacing (b - a) / n."""
        a, b = self.grid_range
        return (b - a) / self.grid_size

    @property
    def num_basis(self) -> int:
        """Basis functions per edge: n + k."""
        return self.grid_size + self.degree

    def refined(self) -> Grid:
        """The dyadically refined grid (2n intervals, same range and degree)."""
        return Grid(2 * self.grid_size, self.degree, self.grid_range)

    def knots(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """All knots t_j, j = -k .. n+k: shape (n + 2k + 1,)."""
        a, _ = self.grid_range
        j = torch.arange(-self.degree, self.grid_size + self.degree + 1, dtype=dtype, device=device)
        return a + j * self.h


def _is_integer(v: object) -> bool:
    """True for ints and integer scalars such as numpy.int64; False for bools and floats."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def clamp_to_grid(x: Tensor, grid: Grid) -> Tensor:
    """Clamp inputs into [a, b]; the gradient is 1 inside (ends included) and 0 outside."""
    a, b = grid.grid_range
    return x.clamp(a, b)


@cache
def _local_monomials(degree: int) -> tuple[tuple[float, ...], ...]:
    """M[m][r]: the k+1 nonzero uniform B-splines on a cell as sum_m M[m][r] s^m, s in [0, 1].

    Built once per degree from the uniform Cox-de Boor recursion on polynomial coefficients
    (exact rationals): v_d[r] = ((s + d - r) v_{d-1}[r-1] + (r + 1 - s) v_{d-1}[r]) / d.
    """
    from fractions import Fraction

    def add(p: list, q: list) -> list:
        n = max(len(p), len(q))
        return [(p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(n)]

    def mul_linear(p: list, c0, c1) -> list:  # p(s) * (c0 + c1 s)
        return add([c0 * a for a in p], [0] + [c1 * a for a in p])

    values: list[list] = [[Fraction(1)]]
    for d in range(1, degree + 1):
        new = []
        for r in range(d + 1):
            term: list = [Fraction(0)]
            if r >= 1:
                term = add(term, mul_linear(values[r - 1], Fraction(d - r), Fraction(1)))
            if r <= d - 1:
                term = add(term, mul_linear(values[r], Fraction(r + 1), Fraction(-1)))
            new.append([c / d for c in term])
        values = new
    return tuple(
        tuple(float(v[m]) if m < len(v) else 0.0 for v in values) for m in range(degree + 1)
    )


def _local_horner(degree: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor, Tensor]:
    """Horner tables for ``local_bspline``: coefficients (k+1, k+1) [m, r], sign, shift (k+1,).

    Column r < (k+1)//2 is written in t = 1 - s (v_r(s) = v_{k-r}(1 - s), by symmetry), the
    others in s, so each value is evaluated in the variable in which it vanishes at the
    cell end: the result is exactly 0 there and never negative.
    """
    M = _local_monomials(degree)
    k1 = degree + 1
    left = k1 // 2
    cols = [k1 - 1 - r if r < left else r for r in range(k1)]
    table = [[M[m][c] for c in cols] for m in range(k1)]
    sign = [-1.0 if r < left else 1.0 for r in range(k1)]
    shift = [1.0 if r < left else 0.0 for r in range(k1)]
    as_tensor = lambda t: torch.tensor(t, dtype=dtype, device=device)  # noqa: E731
    return as_tensor(table), as_tensor(sign), as_tensor(shift)


def local_bspline(x: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """The k+1 nonzero B-splines at each input (uniform knots, inputs clamped to [a, b]).

    On cell c = floor((x - a) / h) (the last cell includes b) with s = (x - a)/h - c, the
    values are fixed polynomials of s (``_local_monomials``), evaluated by Horner's rule in s
    or 1 - s (``_local_horner``): k fused multiply-adds on (..., k+1) tensors, so autograd's
    first and second input derivatives are a few cheap ops. Matches the Cox-de Boor
    recursion to round-off.

    Args:
        x: (...,) inputs.
    Returns:
        first: (...,) int64 position i of the first nonzero basis function (0 .. n-1);
        values: (..., k+1) values of basis functions i = first .. first+k.
    """
    k, n = grid.degree, grid.grid_size
    a, _ = grid.grid_range
    u = (clamp_to_grid(x, grid) - a) / grid.h
    cell = torch.floor(u.detach()).clamp_(0, n - 1)
    s = (u - cell).unsqueeze(-1)  # in [0, 1]; differentiable in x
    if k == 0:
        return cell.long(), torch.ones_like(s)
    coeffs, sign, shift = _local_horner(k, x.dtype, x.device)
    z = torch.addcmul(shift, s, sign)  # (..., k+1): 1 - s for the left half, s for the right
    values = torch.addcmul(coeffs[k - 1], z, coeffs[k])
    for m in range(k - 2, -1, -1):
        values = torch.addcmul(coeffs[m], values, z)
    return cell.long(), values


def bspline_basis(x: Tensor, grid: Grid) -> Tensor:
    """All n + k B-splines at each input (dense; built from the local values).

    Args:
        x: (...,) inputs (clamped to [a, b]).
    Returns:
        (..., n + k) basis values; each row sums to 1.
    """
    first, values = local_bspline(x, grid)
    offsets = torch.arange(grid.degree + 1, device=x.device)
    out = torch.zeros(*x.shape, grid.num_basis, dtype=values.dtype, device=x.device)
    return out.scatter(-1, first.unsqueeze(-1) + offsets, values)


def power_relu_basis(x: Tensor, grid: Grid, scaled: bool = True) -> Tensor:
    """Power-ReLU basis psi_j(x) = ReLU(x - t_j)^k, j = -k .. n-1 (k = 0: Heaviside).

    With ``scaled`` (default) psi~_j = ReLU((x - t_j)/h)^k, the well-scaled variant.

    Warning: in float32 on fine grids the *combination* of these values cancels
    catastrophically (values reach (n+k)^k); see ``relu_cancellation_estimate``.

    Args:
        x: (...,) inputs (clamped to [a, b]).
    Returns:
        (..., n + k) basis values.
    """
    k = grid.degree
    t = grid.knots(dtype=x.dtype, device=x.device)[: grid.num_basis]  # t_{-k} .. t_{n-1}
    z = clamp_to_grid(x, grid).unsqueeze(-1) - t
    if scaled:
        z = z / grid.h
    if k == 0:
        return (z >= 0).to(x.dtype) + 0 * z  # Heaviside: derivative 0, but kept in the graph
    return torch.relu(z) ** k


@lru_cache(maxsize=256)
def _change_of_basis_f64(grid_size: int, degree: int, h: float, scaled: bool) -> Tensor:
    k, nb = degree, grid_size + degree
    scale = math.factorial(k) * (1.0 if scaled else h**k)
    A = torch.zeros(nb, nb, dtype=torch.float64)
    for i in range(nb):
        for m in range(k + 2):
            if i + m < nb:
                A[i, i + m] = (-1) ** m * math.comb(k + 1, m) / scale
    return A


def change_of_basis(grid: Grid, scaled: bool = True, dtype=torch.float64, device=None) -> Tensor:
    """Matrix A with B = A psi on [a, b]: shape (n + k, n + k), upper triangular, k+2 bands.

    A[i, i+m] = (-1)^m C(k+1, m) / (k! h^k)   (``scaled``: / k!, for psi~), dropping
    columns past n + k - 1 (those power-ReLUs vanish on [a, b]).
    """
    A = _change_of_basis_f64(grid.grid_size, grid.degree, grid.h, scaled)
    return A.to(dtype=dtype, device=device)


@lru_cache(maxsize=256)
def _change_of_basis_inverse_f64(grid_size: int, degree: int, h: float, scaled: bool) -> Tensor:
    A = _change_of_basis_f64(grid_size, degree, h, scaled)
    eye = torch.eye(A.shape[0], dtype=torch.float64)
    return torch.linalg.solve_triangular(A, eye, upper=True)


@lru_cache(maxsize=256)
def change_of_basis_inverse(
    grid: Grid, scaled: bool = True, dtype=torch.float64, device=None
) -> Tensor:
    """A^-1 (float64 triangular solve, then cast): (n + k, n + k).

    Cached per (grid, dtype, device): ``MultichannelMLP`` maps its weights through it on
    every forward, which must not copy it to the device each time. Do not modify in place.
    """
    Ainv = _change_of_basis_inverse_f64(grid.grid_size, grid.degree, grid.h, scaled)
    return Ainv.to(dtype=dtype, device=device)


@lru_cache(maxsize=256)
def _prolongation_f64(grid_size: int, degree: int) -> Tensor:
    k, n = degree, grid_size
    nc, nf = n + k, 2 * n + k
    P = torch.zeros(nf, nc, dtype=torch.float64)
    for i in range(nc):  # coarse position i <-> index j = i - k
        for s in range(k + 2):
            fine = 2 * i - k + s  # fine index 2j + s, stored at 2j + s + k
            if 0 <= fine < nf:
                P[fine, i] = math.comb(k + 1, s) / 2**k
    return P


def prolongation(grid: Grid, dtype=torch.float64, device=None) -> Tensor:
    """Dyadic prolongation P: (2n + k, n + k), with c_fine = P @ c_coarse exactly.

    B_j^coarse = sum_{s=0..k+1} 2^-k C(k+1, s) B_{2j+s}^fine on [a, b] (the corrected mask
    of METHOD.md section 4); fine indices outside -k .. 2n-1 are dropped.
    """
    return _prolongation_f64(grid.grid_size, grid.degree).to(dtype=dtype, device=device)


def relu_cancellation_estimate(grid: Grid, dtype: torch.dtype, scaled: bool = True) -> float:
    """Rough relative error of a power-ReLU evaluation (unit-size spline coefficients).

    Largest basis value (n+k)^k times the largest weight magnitude sum_m C(k+1, m)/k!,
    times machine epsilon: the size of the cancellation the sum over channels suffers.
    """
    eps = torch.finfo(dtype).eps
    k, nb = grid.degree, grid.num_basis
    top = float(nb) ** k if scaled else (nb * grid.h) ** k
    weight = 2 ** (k + 1) / math.factorial(k) * (1.0 if scaled else grid.h ** (-k))
    return eps * top * weight * math.sqrt(nb)


# ----------------------------------------------------------------------------- restriction
@lru_cache(maxsize=256)
def _gram_f64(grid_size: int, degree: int, a: float, b: float) -> Tensor:
    import numpy as np

    grid = Grid(grid_size, degree, (a, b))
    nodes, weights = np.polynomial.legendre.leggauss(degree + 1)  # exact for degree 2k + 1
    left = a + grid.h * torch.arange(grid_size, dtype=torch.float64)
    x = left[:, None] + 0.5 * grid.h * (torch.tensor(nodes, dtype=torch.float64) + 1.0)
    w = (0.5 * grid.h * torch.tensor(weights, dtype=torch.float64)).expand_as(x)
    B = bspline_basis(x.reshape(-1), grid)  # (n (k+1), n + k)
    return (B * w.reshape(-1, 1)).T @ B


def gram_matrix(grid: Grid, dtype=torch.float64, device=None) -> Tensor:
    """B-spline Gram matrix M_ij = int_a^b B_i B_j dx: (n + k, n + k).

    Exact up to round-off: Gauss-Legendre with k + 1 points per knot interval integrates the
    degree-2k products exactly; computed in float64.
    """
    a, b = grid.grid_range
    return _gram_f64(grid.grid_size, grid.degree, a, b).to(dtype=dtype, device=device)


@lru_cache(maxsize=256)
def _restriction_f64(grid_size: int, degree: int, a: float, b: float) -> Tensor:
    P = _prolongation_f64(grid_size, degree)
    M = _gram_f64(2 * grid_size, degree, a, b)
    PtM = P.T @ M
    return torch.linalg.solve(PtM @ P, PtM)


def restriction(grid: Grid, dtype=torch.float64, device=None) -> Tensor:
    """L2 restriction R: (n + k, 2n + k) from the refined grid onto ``grid`` (the coarse one).

    R = (P^T M_f P)^-1 P^T M_f, with P = ``prolongation(grid)`` and M_f the Gram matrix of
    the fine grid: c_coarse = R c_fine is the least-squares (L2 on [a, b]) projection of
    the fine spline onto the coarse space, so R P = I (a coarse spline is restricted to
    itself) and the residual f - P R f is L2-orthogonal to the coarse space.
    """
    a, b = grid.grid_range
    return _restriction_f64(grid.grid_size, grid.degree, a, b).to(dtype=dtype, device=device)
