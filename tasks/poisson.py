"""2-D Poisson problem (a standard PINN/KAN benchmark): lap u = f on [-1, 1]^2, u = 0 on the
boundary, f = -2 pi^2 sin(pi x) sin(pi y), exact u = sin(pi x) sin(pi y).

``DirichletSquare2D`` is the shared body of this task and ``helmholtz_2d``: a linear
operator lap u + k^2 u = f with a closed-form solution vanishing on the boundary, on an
n x n node grid (ends included; (n-2)^2 interior and 4(n-1) boundary points, the 51 x 51
grid of METHOD.md 5.2 by default). Loss (means over the global counts)::

    pde_weight * mean_V (lap u + k^2 u - f)^2 + boundary_weight * mean_B u^2

Decision: ``pde_weight`` defaults to 1 / max|f|^2, i.e. the residual is measured relative
to the source amplitude, so that both terms start on comparable scales whatever the
frequency of the solution; ``boundary_weight`` defaults to 1.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from .pinn import (
    PINNTask,
    as_input,
    cell_centred_grid,
    derivatives,
    derivatives_with_values,
    resolve_size,
    square_grid_sets,
)

PI = math.pi


class DirichletSquare2D(PINNTask):
    """lap u + k^2 u = f on [-1, 1]^2, u = 0 on the boundary, f from a closed-form u.

    Subclasses set ``name``, ``k_squared`` and implement ``exact(x)`` (N, 2) -> (N,)
    and ``source(x)`` (N, 2) -> (N,), plus ``source_max`` (max |f| on the square).
    """

    input_dim = 2
    output_dim = 1
    k_squared: float = 0.0
    SIZES: ClassVar[dict[str, dict]] = {
        "paper": {"points_per_dim": 51, "eval_cells_per_dim": 100},
        "small": {"points_per_dim": 26, "eval_cells_per_dim": 60},
        "tiny": {"points_per_dim": 11, "eval_cells_per_dim": 20},
    }

    def __init__(
        self,
        size: str = "paper",
        points_per_dim: int | None = None,
        pde_weight: float | None = None,
        boundary_weight: float = 1.0,
        eval_cells_per_dim: int | None = None,
    ):
        opts = resolve_size(type(self).__name__, self.SIZES, size)
        n = int(points_per_dim or opts["points_per_dim"])
        m = int(eval_cells_per_dim or opts["eval_cells_per_dim"])
        self.size, self.points_per_dim, self.eval_cells_per_dim = size, n, m
        self.domain = [(-1.0, 1.0), (-1.0, 1.0)]
        self.x_interior, self.x_boundary = square_grid_sets(n)
        self.pde_weight = 1.0 / self.source_max**2 if pde_weight is None else float(pde_weight)
        self.boundary_weight = float(boundary_weight)
        self._eval_x = cell_centred_grid(self.domain, [m, m])

    source_max: float = 1.0

    def exact(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def source(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def reference(self, x: Tensor) -> Tensor:
        return self.exact(x).unsqueeze(-1)

    def train_batch(self) -> dict[str, Tensor]:
        return {
            "x_interior": self.x_interior,
            "x_boundary": self.x_boundary,
            "f_interior": self.source(self.x_interior),  # fixed per point: computed once
        }

    #: the derivatives the residual reads
    RESIDUAL_NEEDS = ("u", "laplacian")

    def residual_of(self, d: dict[str, Tensor], x: Tensor, f: Tensor | None = None) -> Tensor:
        """lap u + k^2 u - f from ``derivatives`` ``d`` at points x (N, 2): (N,)."""
        f = self.source(x) if f is None else f
        return d["laplacian"] + self.k_squared * d["u"] - f.to(d["u"])

    def residual(self, model, x: Tensor, f: Tensor | None = None) -> Tensor:
        """lap u + k^2 u - f at physical points x (N, 2): (N,); ``f`` (N,) may be given
        precomputed (the training batch carries it)."""
        d = derivatives(self, model, x, self.RESIDUAL_NEEDS)
        return self.residual_of(d, as_input(x, model), f)

    def loss_terms(self, model, batch, state, update_state: bool = False):
        # the boundary points ride along with the interior points: one pass
        x = as_input(batch["x_interior"], model)
        d, (u_b,) = derivatives_with_values(
            self, model, x, self.RESIDUAL_NEEDS, [batch["x_boundary"]]
        )
        r = self.residual_of(d, x, batch["f_interior"])
        n_v, n_b = self.x_interior.shape[0], self.x_boundary.shape[0]
        return {
            "pde": self.pde_weight * (r**2).sum() / n_v,
            "boundary": self.boundary_weight * (u_b**2).sum() / n_b,
        }

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "domain": self.domain,
            "points_per_dim": self.points_per_dim,
            "n_interior": int(self.x_interior.shape[0]),
            "n_boundary": int(self.x_boundary.shape[0]),
            "pde_weight": self.pde_weight,
            "boundary_weight": self.boundary_weight,
            "eval_cells_per_dim": self.eval_cells_per_dim,
            "reference": "exact",
        }


class Poisson2D(DirichletSquare2D):
    """lap u = -2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2, u = 0 on the boundary.

    Args:
        size: "paper" (51 x 51 node grid: 2401 interior, 200 boundary points), "small"
            (26 x 26) or "tiny" (11 x 11); points_per_dim overrides.
        pde_weight: default 1 / (2 pi^2)^2 (see the module docstring); boundary_weight: 1.
        eval_cells_per_dim: evaluation on the cell centres of an m x m grid.
    """

    name = "poisson_2d"
    display_name = "Poisson 2-D"
    k_squared = 0.0
    source_max = 2 * PI**2

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, 0]) * torch.sin(PI * x[:, 1])

    def source(self, x: Tensor) -> Tensor:
        return -2 * PI**2 * self.exact(x)
