"""Spline maths on uniform grids: pure tensor functions, no Lightning.

Conventions (shared/PAPER.md section 1): a grid on [a, b] has ``grid_size`` = n intervals
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
from functools import lru_cache

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


def local_bspline(x: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """The k+1 nonzero B-splines at each input (uniform knots, inputs clamped to [a, b]).

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
    s = u - cell  # in [0, 1]; differentiable in x
    # Uniform Cox-de Boor on the local variable s: v_d[r] = N_{cell-d+r, d}, r = 0..d.
    values = [torch.ones_like(s)]
    for d in range(1, k + 1):
        new = []
        for r in range(d + 1):
            term = 0.0
            if r >= 1:
                term = term + (s + (d - r)) * values[r - 1]
            if r <= d - 1:
                term = term + ((r + 1) - s) * values[r]
            new.append(term / d)
        values = new
    return cell.long(), torch.stack(values, dim=-1)


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
        return (z >= 0).to(x.dtype)
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


def change_of_basis_inverse(
    grid: Grid, scaled: bool = True, dtype=torch.float64, device=None
) -> Tensor:
    """A^-1 (float64 triangular solve, then cast): (n + k, n + k)."""
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
    of shared/PAPER.md section 4); fine indices outside -k .. 2n-1 are dropped.
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
