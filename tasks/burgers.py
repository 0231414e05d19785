"""1-D viscous Burgers equation (METHOD.md 5.3)::

    u_t + u u_x - nu u_xx = 0,   x in [-1, 1], t in [0, 1],
    u(x, 0) = -sin(pi x),        u(-1, t) = u(1, t) = 0,

nu = 0.01 (the paper) or 0.01 / pi (the standard PINN benchmark, ``burgers_1d_standard``).

Reference: the Cole-Hopf solution (Basdevant et al. 1986, Comput. Fluids 14, 23-41, eq. for
u0 = -sin(pi x)). With f(y) = exp(-cos(pi y) / (2 pi nu)) and eta = sqrt(4 nu t) z::

    u(x, t) = - int sin(pi (x - eta)) f(x - eta) exp(-z^2) dz / int f(x - eta) exp(-z^2) dz

Both integrals are evaluated by the trapezoidal rule on z in [-Z, Z] (float64, exponents
shifted by their maximum, so the e^(1/(pi nu)) dynamic range of f cannot overflow). The
integrands are entire and decay like exp(-z^2), so the rule converges geometrically: the
peaks have width >= 1 / sqrt(2 + 2 pi t) in z whatever nu, and the default step
dz = 0.05 / sqrt(max(1, t_max)) puts >= 7 nodes on each; Z = sqrt(1 / (pi nu) + 60)
makes the truncated tails < e^-60 of the peak. Measured (node doubling, and Z + 4, at
thousands of points and at the shock): changes <= 2e-15 absolute for both viscosities,
so the stated accuracy is 1e-13 (``REFERENCE_ACCURACY``). The implementation is plain
torch, so autograd gives exact derivatives of the quadrature (used by the tests).

Known value reproduced (tests): for nu = 0.01 / pi the steepest slope at x = 0 is
|u_x| = 152.00516 at t = 0.51047 (= 1.6037 / pi), Basdevant et al. 1986, Table 1.

Decision (the paper names only two loss terms, PDE and initial condition, weights 1 and
1): the boundary condition is built in by default, ``boundary="hard"``: the prediction is
(1 - x^2) * model(x, t), so u(+-1, t) = 0 exactly and the loss has the paper's two terms.
``boundary="loss"`` instead adds a mean-squared boundary term on x = +-1 at the grid's
times (weight ``boundary_weight``); ``boundary="none"`` leaves the boundary free.

Points: a tensor grid of n_x values in [-1, 1] and n_t values in [0, 1] (ends included;
4096 = 64 x 64 collocation points) and n_initial equispaced points on t = 0 (64). Loss
terms are means over the global counts: mean_C r^2 + mean_I (u - u0)^2 (+ boundary).

Metrics (``evaluate``), against the Cole-Hopf reference on the cell-centred evaluation grid:
``rel_l2`` (L2RE = ||u - u_ref||_2 / ||u_ref||_2), ``rel_l1`` (L1RE = ||u - u_ref||_1 /
||u_ref||_1), ``max_abs``, ``mse``; with nu = 0.01 / pi also ``pinnacle_rel_l2`` and
``pinnacle_rel_l1``: the same errors on the evaluation points of PINNacle's Burgers1d-C
(Hao et al., "PINNacle: A Comprehensive Benchmark of Physics-Informed Neural Networks for
Solving PDEs", arXiv 2306.08827; its reference file ref/burgers1d.dat is a COMSOL
solution on x = -1 + 0.02 i, i = 0..100, at t = 0, 0.1, ..., 1: 101 x 11 = 1111 points,
t = 0 included). That file is not shipped or downloaded here:
the same grid is regenerated (``pinnacle_points``) and its reference values come from the
Cole-Hopf solution. Comparability: PINNacle's COMSOL values are themselves off the exact
solution - measured once against the published file, L2RE 1.33e-2, L1RE 8.3e-3, largest
pointwise difference 0.088 next to the shock (x = -0.02, t = 0.4), 5e-4 at x = -0.5,
t = 0.5 - so a model's error here and its error against PINNacle's file can differ by up
to about 1.3e-2 (the size of PINNacle's published vanilla-PINN L2RE, 1.45e-2:
``bench_mlkan/paper_results.json``, "literature").
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from bench_mlkan import jets
from bench_mlkan.jets import Jet

from .pinn import (
    PINNTask,
    as_input,
    cell_centred_grid,
    derivatives,
    derivatives_with_values,
    node_axis,
    resolve_size,
)

PI = math.pi
NU_PAPER = 0.01
NU_STANDARD = 0.01 / PI
#: Stated absolute accuracy of ``cole_hopf`` with the default nodes (see the module docstring).
REFERENCE_ACCURACY = 1e-13
#: PINNacle's Burgers1d-C evaluation grid (regenerated): 101 x nodes on [-1, 1] x 11 times 0..1
PINNACLE_NX, PINNACLE_NT = 101, 11


def quadrature_nodes(
    nu: float, t_max: float = 1.0, refine: int = 1, z_extra: float = 0.0
) -> Tensor:
    """Trapezoidal nodes z in [-Z, Z] for ``cole_hopf`` (``refine`` halves the step
    log2(refine) times; ``z_extra`` widens the range): float64 (K,)."""
    z_max = math.sqrt(1.0 / (PI * nu) + 60.0) + z_extra
    dz = 0.1 / math.sqrt(max(1.0, t_max)) / refine
    half = math.ceil(z_max / dz)
    return dz * torch.arange(-half, half + 1, dtype=torch.float64)


def cole_hopf(x: Tensor, nu: float, nodes: Tensor | None = None, chunk: int = 8192) -> Tensor:
    """Cole-Hopf solution of Burgers' equation with u0 = -sin(pi x) on the whole line
    (2-periodic and odd about x = 0 and x = +-1, hence u(+-1, t) = 0).

    Args:
        x: (N, 2) points (x, t), t >= 0, any float dtype (computed in float64;
            differentiable in x and t for t > 0).
        nu: viscosity; nodes: trapezoidal nodes (default ``quadrature_nodes(nu, max t)``).
    Returns:
        (N, 1) in x's dtype.
    """
    xd = x.to(torch.float64)
    X, T = xd[:, 0], xd[:, 1]
    if nodes is None:
        t_max = float(T.detach().max()) if T.numel() else 1.0
        nodes = quadrature_nodes(nu, t_max)
    z = nodes.to(device=x.device, dtype=torch.float64)
    positive = T > 0
    T_safe = torch.where(positive, T, torch.ones_like(T))  # finite gradients on t = 0
    out = []
    for start in range(0, X.shape[0], chunk):
        Xc, Tc = X[start : start + chunk], T_safe[start : start + chunk]
        y = Xc[:, None] - torch.sqrt(4 * nu * Tc)[:, None] * z[None, :]
        expo = -torch.cos(PI * y) / (2 * PI * nu) - z[None, :] ** 2
        w = torch.exp(expo - expo.max(dim=1, keepdim=True).values.detach())
        out.append(-(torch.sin(PI * y) * w).sum(1) / w.sum(1))
    u = torch.cat(out) if out else X.new_zeros(0)
    u = torch.where(positive, u, -torch.sin(PI * X))
    return u.unsqueeze(-1).to(x.dtype)


def pinnacle_points() -> Tensor:
    """PINNacle's Burgers1d-C evaluation points, regenerated: x = -1 + 0.02 i (i = 0..100)
    times t = 0, 0.1, ..., 1, x-major as PINNacle reads its file (for each x all t):
    (1111, 2) float64 columns (x, t)."""
    xs = node_axis(-1.0, 1.0, PINNACLE_NX)
    ts = node_axis(0.0, 1.0, PINNACLE_NT)
    X, T = torch.meshgrid(xs, ts, indexing="ij")
    return torch.stack([X.reshape(-1), T.reshape(-1)], dim=-1)


def relative_l1(pred: Tensor, ref: Tensor) -> float:
    """L1RE = sum |pred - ref| / sum |ref| (same shapes; computed in float64)."""
    p, r = pred.detach().double().reshape(-1), ref.detach().double().reshape(-1)
    return float((p - r).abs().sum() / r.abs().sum())


def relative_l2(pred: Tensor, ref: Tensor) -> float:
    """L2RE = ||pred - ref||_2 / ||ref||_2 (same shapes; computed in float64)."""
    p, r = pred.detach().double().reshape(-1), ref.detach().double().reshape(-1)
    return float(torch.linalg.vector_norm(p - r) / torch.linalg.vector_norm(r))


class Burgers1D(PINNTask):
    """Burgers' equation (METHOD.md 5.3); see the module docstring.

    Args:
        nu: viscosity (0.01 = the paper; 0.01 / pi = the standard benchmark).
        size: "paper" (64 x 64 grid + 64 initial points), "small" (32 x 32 + 32) or
            "tiny" (12 x 12 + 12); n_x, n_t, n_initial override.
        boundary: "hard" (default; u = (1 - x^2) model), "loss" or "none".
        pde_weight, initial_weight, boundary_weight: loss weights (1, 1, 1).
        eval_cells: (x cells, t cells) of the cell-centred evaluation grid.
    """

    name = "burgers_1d"
    display_name = "Burgers 1-D (nu = 0.01)"
    paper_section = "5.3 (Table 3)"
    metric = "train_loss"
    metric_label = "final training loss"
    metric_what = (
        "the full training loss at the final parameters (PDE + initial condition terms, "
        "as the paper's Table 3); relative L2 error against the Cole-Hopf reference beside it"
    )
    extra_metrics: ClassVar[tuple[tuple[str, str], ...]] = (
        ("rel_l2", "rel. L2"),
        ("rel_l1", "rel. L1"),
    )
    target = 1e-3
    target_source = "loss"
    input_dim = 2
    output_dim = 1
    coordinates = ("x", "t")
    SIZES = {
        "paper": {"n_x": 64, "n_t": 64, "n_initial": 64, "eval_cells": (256, 100)},
        "small": {"n_x": 32, "n_t": 32, "n_initial": 32, "eval_cells": (128, 50)},
        "tiny": {"n_x": 12, "n_t": 12, "n_initial": 12, "eval_cells": (64, 20)},
    }
    BOUNDARY = ("hard", "loss", "none")
    defaults = {
        "widths": [2, 20, 20, 1],
        "linear_first": True,
        "linear_bias": False,
        "degree": 3,
        "grid_sizes": [5, 10, 20],
        "mlp_widths": [[2, 20, 20, 1], [2, 56, 56, 1]],
        "mlp_activation": "tanh",
        "optimizer": "adamw",
        "lr": 1e-3,
        "lr_schedule": "exponential_cyclic (cycle 100 steps, gamma 0.9995)",
        "steps_multilevel": [800, 400, 200],
        "seeds": [1234, 1244, 1254, 1264, 1274],
    }

    def __init__(
        self,
        nu: float = NU_PAPER,
        size: str = "paper",
        n_x: int | None = None,
        n_t: int | None = None,
        n_initial: int | None = None,
        boundary: str = "hard",
        pde_weight: float = 1.0,
        initial_weight: float = 1.0,
        boundary_weight: float = 1.0,
        eval_cells: tuple[int, int] | None = None,
        quadrature_refine: int = 1,
    ):
        opts = resolve_size(type(self).__name__, self.SIZES, size)
        if not nu > 0:
            raise ValueError(f"nu must be positive, got {nu}")
        if boundary not in self.BOUNDARY:
            raise ValueError(f"boundary must be one of {self.BOUNDARY}, got {boundary!r}")
        self.nu, self.size, self.boundary = float(nu), size, boundary
        self.n_x = int(n_x or opts["n_x"])
        self.n_t = int(n_t or opts["n_t"])
        self.n_initial = int(n_initial or opts["n_initial"])
        if min(self.n_x, self.n_t, self.n_initial) < 2:
            raise ValueError("n_x, n_t and n_initial must be >= 2")
        self.weights = {
            "pde": float(pde_weight),
            "initial": float(initial_weight),
            "boundary": float(boundary_weight),
        }
        self.domain = [(-1.0, 1.0), (0.0, 1.0)]
        xs, ts = node_axis(-1.0, 1.0, self.n_x), node_axis(0.0, 1.0, self.n_t)
        X, T = torch.meshgrid(xs, ts, indexing="ij")
        self.x_collocation = torch.stack([X.reshape(-1), T.reshape(-1)], dim=-1)
        x0 = node_axis(-1.0, 1.0, self.n_initial)
        self.x_initial = torch.stack([x0, torch.zeros_like(x0)], dim=-1)
        self.x_boundary = torch.cat(
            [torch.stack([torch.full_like(ts, s), ts], dim=-1) for s in (-1.0, 1.0)]
        )
        self.eval_cells = tuple(int(c) for c in (eval_cells or opts["eval_cells"]))
        self._eval_x = cell_centred_grid(self.domain, self.eval_cells)
        self.quadrature_refine = int(quadrature_refine)
        self._nodes = quadrature_nodes(self.nu, 1.0, refine=self.quadrature_refine)

    # -- problem --------------------------------------------------------------------
    def output_transform(self, x: Tensor, out: Tensor) -> Tensor:
        """``boundary="hard"``: (1 - x^2) * out, so u(+-1, t) = 0 exactly."""
        return (1 - x[:, :1] ** 2) * out if self.boundary == "hard" else out

    def output_jet(self, x: Jet, out: Jet) -> Jet:
        if self.boundary != "hard":
            return out
        xs = x.column(0)
        z = xs.value
        factor = jets.elementwise(xs, 1 - z**2, -2 * z, torch.full_like(z, -2.0))
        return jets.mul(factor, out)

    def initial_condition(self, x: Tensor) -> Tensor:
        """u0(x) = -sin(pi x): (N, 2) points -> (N, 1)."""
        return -torch.sin(PI * x[:, :1])

    def reference(self, x: Tensor) -> Tensor:
        return cole_hopf(x, self.nu, self._nodes)

    def train_batch(self) -> dict[str, Tensor]:
        batch = {"x_collocation": self.x_collocation, "x_initial": self.x_initial}
        if self.boundary == "loss":
            batch["x_boundary"] = self.x_boundary
        return batch

    #: the derivatives the residual reads
    RESIDUAL_NEEDS = ("u", "u_x", "u_t", "u_xx")

    def residual_of(self, d: dict[str, Tensor]) -> Tensor:
        """u_t + u u_x - nu u_xx from ``derivatives`` ``d`` (each (N,)): (N,)."""
        return d["u_t"] + d["u"] * d["u_x"] - self.nu * d["u_xx"]

    def residual(self, model: nn.Module, x: Tensor) -> Tensor:
        """u_t + u u_x - nu u_xx at points x (N, 2): (N,)."""
        return self.residual_of(derivatives(self, model, x, self.RESIDUAL_NEEDS))

    def loss_terms(self, model, batch, state, update_state: bool = False):
        # the initial (and boundary) points ride along with the collocation points: one pass
        x0 = as_input(batch["x_initial"], model)
        others = [x0] + ([batch["x_boundary"]] if self.boundary == "loss" else [])
        d, u_others = derivatives_with_values(
            self, model, batch["x_collocation"], self.RESIDUAL_NEEDS, others
        )
        r = self.residual_of(d)
        e0 = u_others[0] - self.initial_condition(x0)[:, 0]
        terms = {
            "pde": self.weights["pde"] * (r**2).sum() / self.x_collocation.shape[0],
            "initial": self.weights["initial"] * (e0**2).sum() / self.x_initial.shape[0],
        }
        if self.boundary == "loss":
            u_b = u_others[1]
            terms["boundary"] = self.weights["boundary"] * (u_b**2).sum() / self.x_boundary.shape[0]
        return terms

    # -- metrics ----------------------------------------------------------------------
    @property
    def pinnacle(self) -> bool:
        """Whether this is PINNacle's Burgers1d-C (nu = 0.01 / pi): then ``evaluate`` adds
        the errors on its evaluation points."""
        return abs(self.nu - NU_STANDARD) <= 1e-15

    _pinnacle_ref: Tensor | None = None

    def _predict_no_grad(self, model: nn.Module, x: Tensor) -> Tensor:
        p = next(iter(model.parameters()), None)
        dtype, device = (x.dtype, x.device) if p is None else (p.dtype, p.device)
        with torch.no_grad():
            return self.predict(model, x.to(dtype=dtype, device=device))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``PINNTask.evaluate`` plus ``rel_l1`` and, for nu = 0.01 / pi, ``pinnacle_rel_l2``
        and ``pinnacle_rel_l1`` on PINNacle's grid (module docstring)."""
        out = super().evaluate(model)
        out["rel_l1"] = relative_l1(
            self._predict_no_grad(model, self.eval_points()).cpu(), self.eval_reference()
        )
        if self.pinnacle:
            x = pinnacle_points()
            if self._pinnacle_ref is None:
                self._pinnacle_ref = cole_hopf(x, self.nu, self._nodes)
            pred = self._predict_no_grad(model, x).cpu()
            out["pinnacle_rel_l2"] = relative_l2(pred, self._pinnacle_ref)
            out["pinnacle_rel_l1"] = relative_l1(pred, self._pinnacle_ref)
        return out

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "nu": self.nu,
            "domain": self.domain,
            "n_collocation": int(self.x_collocation.shape[0]),
            "n_initial": int(self.x_initial.shape[0]),
            "grid": [self.n_x, self.n_t],
            "boundary": self.boundary,
            "weights": self.weights,
            "eval_cells": list(self.eval_cells),
            "reference": "Cole-Hopf, trapezoidal rule in float64",
            "reference_nodes": int(self._nodes.numel()),
            "reference_accuracy": REFERENCE_ACCURACY,
            "pinnacle_eval": (
                "PINNacle Burgers1d-C points regenerated: x = -1 + 0.02 i (i = 0..100) x "
                "t = 0, 0.1, ..., 1 (1111 points), Cole-Hopf reference"
                if self.pinnacle
                else None
            ),
        }


class Burgers1DStandard(Burgers1D):
    """``burgers_1d`` with the standard benchmark's viscosity nu = 0.01 / pi."""

    name = "burgers_1d_standard"
    display_name = "Burgers 1-D (nu = 0.01/pi)"
    paper_section = None
    extra_metrics = (
        ("rel_l2", "rel. L2"),
        ("rel_l1", "rel. L1"),
        ("pinnacle_rel_l2", "L2RE on PINNacle's points"),
    )

    def __init__(self, nu: float = NU_STANDARD, **kw):
        super().__init__(nu=nu, **kw)
