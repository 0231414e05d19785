"""2-D Poisson interface problem (METHOD.md 5.2): div(eps grad u) = f on [-1, 1]^2, u = 0 on
the boundary, eps = 1 for x < 0 and 1/2 for x >= 0.

Exact solution (u has a kink at x = 0, the flux eps u_x is continuous)::

    u = sin(pi x) sin(3 pi y)     (x < 0),    f = -10 pi^2 sin(pi x) sin(3 pi y)
    u = sin(2 pi x) sin(3 pi y)   (x >= 0),   f = -6.5 pi^2 sin(2 pi x) sin(3 pi y)

Level-set input: the network sees z = (x, y, |x|) (``feature_dim`` = 3), so u is
continuous across x = 0 by construction and may have a kink there. Derivatives:

* volume points: ``pinn.derivatives`` with respect to the physical (x, y); the |x|
  feature is computed as x * s with s = +1 for x >= 0 and -1 for x < 0 held constant
  (``LevelSetFeatures``, also on jets), so at x = 0 (49 of the 2401 interior grid points
  lie on it) the derivatives are the right-sided ones, matching eps(0) = 1/2;
* interface points (x = 0): the one-sided x-derivatives are those of the two pieces,
  u(x, y, -x) and u(x, y, x) (``LevelSetFeatures(-1)`` / ``(+1)``), i.e. the feature
  gradient u_x(0-) = du/dz1 - du/dz3 and u_x(0+) = du/dz1 + du/dz3.

Loss (sums over points, METHOD.md 5.2)::

    1e-2 sum_V (lambda_i r_i)^2 + 1 sum_B u^2 + 1e-1 sum_I (eps_l u_x(0-) - eps_r u_x(0+))^2

with r = div(eps grad u) - f and residual-based attention weights lambda on V
(``pinn.ResidualAttention``, mu = 1e-4).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench_mlkan.jets import Jet

from .pinn import (
    PINNTask,
    ResidualAttention,
    as_input,
    cell_centred_grid,
    derivatives,
    derivatives_with_values,
    resolve_size,
    square_grid_sets,
)

PI = math.pi
EPS_LEFT, EPS_RIGHT = 1.0, 0.5


def exact_solution(x: Tensor) -> Tensor:
    """u(x, y): (N, 2) -> (N, 1)."""
    X, Y = x[:, 0], x[:, 1]
    s3 = torch.sin(3 * PI * Y)
    u = torch.where(X < 0, torch.sin(PI * X) * s3, torch.sin(2 * PI * X) * s3)
    return u.unsqueeze(-1)


def source(x: Tensor) -> Tensor:
    """f(x, y) = div(eps grad u): (N, 2) -> (N,)."""
    X, Y = x[:, 0], x[:, 1]
    s3 = torch.sin(3 * PI * Y)
    return torch.where(
        X < 0, -10 * PI**2 * torch.sin(PI * X) * s3, -6.5 * PI**2 * torch.sin(2 * PI * X) * s3
    )


def coefficient(x: Tensor) -> Tensor:
    """eps(x): 1 for x < 0, 1/2 for x >= 0: (N, 2) -> (N,)."""
    return torch.where(x[:, 0] < 0, EPS_LEFT, EPS_RIGHT).to(x.dtype)


def exact_in_features(z: Tensor) -> Tensor:
    """The exact solution written as a smooth function of the features (x, y, |x|):
    sin(3 pi y) [sin(pi (z1 - z3) / 2) + sin(pi (z1 + z3))]. (N, 3) -> (N, 1)."""
    z1, z2, z3 = z[:, 0], z[:, 1], z[:, 2]
    u = torch.sin(3 * PI * z2) * (torch.sin(PI * (z1 - z3) / 2) + torch.sin(PI * (z1 + z3)))
    return u.unsqueeze(-1)


class LevelSetFeatures:
    """The level-set input (x, y, s x) with s held constant (no derivative through s).

    side = 0: s = sign(x), +1 at x = 0 (the task's features: (x, y, |x|)); side = +1 / -1:
    s = +1 / -1 everywhere, the right / left piece continued across x = 0 (one-sided
    derivatives at the interface).
    """

    def __init__(self, side: int = 0):
        if side not in (-1, 0, 1):
            raise ValueError(f"side must be -1, 0 or +1, got {side}")
        self.side = side

    def sign(self, x: Tensor) -> Tensor:
        """s: (N, 1) in x's dtype."""
        if self.side:
            return torch.full_like(x[:, :1], float(self.side))
        return torch.where(x[:, :1] >= 0, 1.0, -1.0).to(x.dtype)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.cat([x, x[:, :1] * self.sign(x)], dim=-1)

    def jet(self, x: Jet) -> Jet:
        """The third feature's value and derivatives are s times those of x."""
        s = self.sign(x.value)
        return x.map(lambda t: torch.cat([t, t[..., :1] * s], dim=-1))


class PoissonInterface2D(PINNTask):
    """The paper's interface problem (METHOD.md 5.2); see the module docstring.

    Args:
        size: "paper" (51 x 51 grid: 2401 interior, 200 boundary, 49 interface points),
            "small" (27 x 27: 625 / 104 / 25) or "tiny" (11 x 11: 81 / 40 / 9).
        points_per_dim: explicit grid size (odd, so that x = 0 is a grid line).
        weights: (volume, boundary, interface) loss weights, default (1e-2, 1, 1e-1).
        rba: residual-based attention on the volume term; rba_mu: its mu.
        eval_cells_per_dim: the evaluation grid is the cell centres of this many cells
            per dimension (never a training point, never on x = 0).
    """

    name = "poisson_interface_2d"
    display_name = "Poisson interface 2-D"
    paper_section = "5.2 (Fig. 5, 6)"
    input_dim = 2
    output_dim = 1
    SIZES = {
        "paper": {"points_per_dim": 51, "eval_cells_per_dim": 100},
        "small": {"points_per_dim": 27, "eval_cells_per_dim": 60},
        "tiny": {"points_per_dim": 11, "eval_cells_per_dim": 20},
    }
    defaults = {
        "widths": [3, 5, 1],
        "degree": 3,
        "grid_sizes": [4, 8, 16, 32],
        "mlp_widths": [3, 16, 16, 1],
        "mlp_activation": "tanh",
        "optimizer": "adam",
        "lr": 1e-2,
        "lr_start": 1e-4,
        "warmup_steps": 10,
        "epochs": 5000,
        "refine_at": [1250, 2500, 3750],
    }

    def __init__(
        self,
        size: str = "paper",
        points_per_dim: int | None = None,
        weights: tuple[float, float, float] = (1e-2, 1.0, 1e-1),
        rba: bool = True,
        rba_mu: float = 1e-4,
        eval_cells_per_dim: int | None = None,
    ):
        opts = resolve_size(type(self).__name__, self.SIZES, size)
        n = int(points_per_dim or opts["points_per_dim"])
        if n < 3 or n % 2 == 0:
            raise ValueError(f"points_per_dim must be odd and >= 3 (x = 0 a grid line), got {n}")
        m = int(eval_cells_per_dim or opts["eval_cells_per_dim"])
        if m % 2:
            raise ValueError(f"eval_cells_per_dim must be even (no point on x = 0), got {m}")
        self.size, self.points_per_dim, self.eval_cells_per_dim = size, n, m
        self.weights = tuple(float(w) for w in weights)
        self.domain = [(-1.0, 1.0), (-1.0, 1.0)]
        interior, boundary = square_grid_sets(n)
        interface = interior[interior[:, 0] == 0]
        self.x_interior, self.x_boundary, self.x_interface = interior, boundary, interface
        self.attention = ResidualAttention("rba_weight", "interior_index", rba_mu) if rba else None
        self._eval_x = cell_centred_grid(self.domain, [m, m])

    # -- inputs ---------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return 3

    @property
    def feature_domain(self) -> list[tuple[float, float]]:
        return [(-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0)]

    def features(self, x: Tensor) -> Tensor:
        """(x, y, |x|) with |x| = x * s, s = sign(x) (s = +1 at x = 0) held constant."""
        return LevelSetFeatures()(x)

    def features_jet(self, x: Jet) -> Jet:
        return LevelSetFeatures().jet(x)

    # -- problem --------------------------------------------------------------------
    def reference(self, x: Tensor) -> Tensor:
        return exact_solution(x)

    def train_batch(self) -> dict[str, Tensor]:
        return {
            "x_interior": self.x_interior,
            "interior_index": torch.arange(self.x_interior.shape[0]),
            "x_boundary": self.x_boundary,
            "x_interface": self.x_interface,
            # fixed per point: computed once here, not at every step (sin was ~40% of a step)
            "eps_interior": coefficient(self.x_interior),
            "f_interior": source(self.x_interior),
        }

    def make_state(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {} if self.attention is None else self.attention.init_state(batch)

    #: the derivatives the residual reads ("u" is free: it rides along)
    RESIDUAL_NEEDS = ("u", "laplacian")

    def residual_of(
        self, d: dict[str, Tensor], x: Tensor, eps: Tensor | None = None, f: Tensor | None = None
    ) -> Tensor:
        """div(eps grad u) - f from ``derivatives`` ``d`` at points x (N, 2): (N,)."""
        lap = d["laplacian"]
        eps = coefficient(x) if eps is None else eps.to(lap)
        return eps * lap - (source(x) if f is None else f.to(lap))

    def residual(
        self, model: nn.Module, x: Tensor, eps: Tensor | None = None, f: Tensor | None = None
    ) -> Tensor:
        """div(eps grad u) - f at physical points x (N, 2): (N,); ``eps`` and ``f`` (N,) may
        be given precomputed (the training batch carries them)."""
        d = derivatives(self, model, x, self.RESIDUAL_NEEDS)
        return self.residual_of(d, as_input(x, model), eps, f)

    def flux_jump(self, model: nn.Module, x: Tensor) -> Tensor:
        """eps_l u_x(0-) - eps_r u_x(0+) at interface points x (on x = 0): (N,).

        u_x(0-) is the x-derivative of the left piece u(x, y, -x), u_x(0+) of the right
        piece u(x, y, x): the network's feature gradient (du/dz1 -+ du/dz3)."""
        left = derivatives(self, model, x, ("u_x",), features=LevelSetFeatures(-1))
        right = derivatives(self, model, x, ("u_x",), features=LevelSetFeatures(+1))
        return EPS_LEFT * left["u_x"] - EPS_RIGHT * right["u_x"]

    def loss_terms(self, model, batch, state, update_state: bool = False):
        w_v, w_b, w_i = self.weights
        # the boundary points ride along with the interior points: one pass
        x = as_input(batch["x_interior"], model)
        d, (u_b,) = derivatives_with_values(
            self, model, x, self.RESIDUAL_NEEDS, [batch["x_boundary"]]
        )
        r = self.residual_of(d, x, batch["eps_interior"], batch["f_interior"])
        if self.attention is not None:
            r = self.attention.weights(state, batch, r, update_state) * r
        jump = self.flux_jump(model, as_input(batch["x_interface"], model))
        return {
            "pde": w_v * (r**2).sum(),
            "boundary": w_b * (u_b**2).sum(),
            "interface": w_i * (jump**2).sum(),
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
            "n_interface": int(self.x_interface.shape[0]),
            "weights": list(self.weights),
            "rba_mu": None if self.attention is None else self.attention.mu,
            "features": "(x, y, |x|)",
            "eval_cells_per_dim": self.eval_cells_per_dim,
            "reference": "exact",
        }
