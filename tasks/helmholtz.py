"""2-D Helmholtz problem (the standard PINN benchmark of Wang, Teng & Perdikaris 2021,
"Understanding and mitigating gradient pathologies in PINNs"): lap u + k^2 u = q on
[-1, 1]^2, u = 0 on the boundary, exact u = sin(a1 pi x) sin(a2 pi y) with a1 = 1, a2 = 4,
k = 1, so q = (k^2 - (a1^2 + a2^2) pi^2) u. Points and loss as ``poisson.DirichletSquare2D``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .poisson import DirichletSquare2D

PI = math.pi


class Helmholtz2D(DirichletSquare2D):
    """lap u + k^2 u = q on [-1, 1]^2 with exact u = sin(a1 pi x) sin(a2 pi y).

    Args:
        size, points_per_dim, boundary_weight, eval_cells_per_dim: as ``Poisson2D``.
        pde_weight: default 1 / max|q|^2.
        a1, a2, k: the solution's frequencies and the wave number (1, 4, 1).
    """

    name = "helmholtz_2d"
    display_name = "Helmholtz 2-D"

    def __init__(
        self, size: str = "paper", *, a1: float = 1.0, a2: float = 4.0, k: float = 1.0, **kw
    ):
        self.a1, self.a2, self.k = float(a1), float(a2), float(k)
        self.k_squared = self.k**2
        self.source_max = abs(self.k_squared - (self.a1**2 + self.a2**2) * PI**2)
        if not (self.a1.is_integer() and self.a2.is_integer()):
            raise ValueError(f"a1, a2 must be integers (u = 0 on the boundary), got {a1}, {a2}")
        if self.source_max == 0:
            raise ValueError("k^2 = (a1^2 + a2^2) pi^2 makes q vanish; choose another k")
        super().__init__(size, **kw)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(self.a1 * PI * x[:, 0]) * torch.sin(self.a2 * PI * x[:, 1])

    def source(self, x: Tensor) -> Tensor:
        return (self.k_squared - (self.a1**2 + self.a2**2) * PI**2) * self.exact(x)

    def describe(self) -> dict:
        return {**super().describe(), "a1": self.a1, "a2": self.a2, "k": self.k}
