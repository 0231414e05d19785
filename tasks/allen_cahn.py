"""1-D Allen-Cahn equation (METHOD.md 5.4, standard signs)::

    u_t = eps u_xx + 5 u - 5 u^3,   x in [-1, 1] periodic, t in [0, 1],   eps = 1e-4,
    u(x, 0) = x^2 cos(pi x).

Reference: ``allen_cahn_reference`` (Fourier pseudo-spectral + ETDRK4, cached; its accuracy
and the independent check are described there).

Periodicity in the PINN: ``periodic="loss"`` (default; the paper's [2, 5, 5, 1] network
sees (x, t)) adds the term mean_B [(u(1,t) - u(-1,t))^2 + (u_x(1,t) - u_x(-1,t))^2];
``periodic="features"`` feeds (cos pi x, sin pi x, t) (``feature_dim`` = 3), exactly
periodic, and drops that term.

Loss (means over the global counts): pde_weight mean_C (lambda_i r_i)^2 with residual-based
attention (mu = 1e-4, METHOD.md 5.2) + initial_weight mean_I (u - u0)^2 (+ periodic term).
Decision (the paper gives no weights): pde 1, initial 100, periodic 1; the initial
condition is the only information that selects the solution.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn

from bench_mlkan import jets
from bench_mlkan.jets import Jet

from .allen_cahn_reference import (
    CACHE_VERSION,
    PI,
    SpectralConfig,
    SpectralSolution,
    allen_cahn_reference,
    clear_reference_cache,
    compute_reference,
    default_cache_dir,
    initial_coefficients,
    solve_allen_cahn,
    sup_difference,
    time_derivative,
)
from .pinn import (
    PINNTask,
    ResidualAttention,
    as_input,
    derivatives,
    derivatives_with_values,
    node_axis,
    resolve_size,
)

__all__ = [
    "AllenCahn1D",
    "PI",
    "CACHE_VERSION",
    "SpectralConfig",
    "SpectralSolution",
    "allen_cahn_reference",
    "clear_reference_cache",
    "compute_reference",
    "initial_coefficients",
    "solve_allen_cahn",
    "sup_difference",
    "time_derivative",
    "default_cache_dir",
]


class AllenCahn1D(PINNTask):
    """The paper's Allen-Cahn problem (METHOD.md 5.4); see the module docstring.

    Args:
        size: "paper" (20,000 random collocation + 501 initial + 201 periodic-pair points),
            "small" (4,000 + 201 + 101) or "tiny" (400 + 51 + 21); n_collocation,
            n_initial, n_boundary override.
        periodic: "loss" (default) or "features" (see the module docstring).
        pde_weight, initial_weight, periodic_weight: loss weights (1, 100, 1).
        rba, rba_mu: residual-based attention on the PDE term (on, 1e-4).
        seed: the collocation points' seed.
        reference: a ``SpectralConfig`` (default: N = 4096, dt = 2.5e-4, snapshots 1e-3 for
            "paper"/"small"; N = 512, dt = 1e-3, snapshots 1e-2 for "tiny" - a coarse
            reference for tests only, its accuracy stated in ``describe()``).
        eval_grid: (x points, t points): x = -1 + (2j + 1)/nx (cell centres, off the
            periodic-pair points), t = k/nt for k = 1..nt (t = 0 is training data);
            default (512, 200).
        cache_dir: reference cache ("" = in-process only).
    """

    name = "allen_cahn_1d"
    display_name = "Allen-Cahn 1-D"
    paper_section = "5.4 (Fig. 7-9)"
    input_dim = 2
    output_dim = 1
    coordinates = ("x", "t")
    SIZES = {
        "paper": {
            "n_collocation": 20000,
            "n_initial": 501,
            "n_boundary": 201,
            "eval_grid": (512, 200),
            "reference": SpectralConfig(),
        },
        "small": {
            "n_collocation": 4000,
            "n_initial": 201,
            "n_boundary": 101,
            "eval_grid": (256, 100),
            "reference": SpectralConfig(),
        },
        "tiny": {
            "n_collocation": 400,
            "n_initial": 51,
            "n_boundary": 21,
            "eval_grid": (64, 20),
            "reference": SpectralConfig(512, 1e-3, 1e-2),
        },
    }
    PERIODIC = ("loss", "features")

    def __init__(
        self,
        size: str = "paper",
        n_collocation: int | None = None,
        n_initial: int | None = None,
        n_boundary: int | None = None,
        periodic: str = "loss",
        eps: float = 1e-4,
        pde_weight: float = 1.0,
        initial_weight: float = 100.0,
        periodic_weight: float = 1.0,
        rba: bool = True,
        rba_mu: float = 1e-4,
        seed: int = 0,
        reference: SpectralConfig | dict | None = None,
        eval_grid: tuple[int, int] | None = None,
        cache_dir: str | None = None,
    ):
        opts = resolve_size(type(self).__name__, self.SIZES, size)
        if periodic not in self.PERIODIC:
            raise ValueError(f"periodic must be one of {self.PERIODIC}, got {periodic!r}")
        self.size, self.periodic, self.eps, self.seed = size, periodic, float(eps), seed
        self.n_collocation = int(n_collocation or opts["n_collocation"])
        self.n_initial = int(n_initial or opts["n_initial"])
        self.n_boundary = int(n_boundary or opts["n_boundary"])
        ref = opts["reference"] if reference is None else reference
        if isinstance(ref, dict):
            ref = SpectralConfig(**ref)
        if ref.eps != self.eps:
            ref = SpectralConfig(**{**asdict(ref), "eps": self.eps})
        self.reference_config: SpectralConfig = ref
        self.cache_dir = cache_dir
        self._solution: SpectralSolution | None = None
        self.weights = {
            "pde": float(pde_weight),
            "initial": float(initial_weight),
            "periodic": float(periodic_weight),
        }
        self.domain = [(-1.0, 1.0), (0.0, 1.0)]
        gen = torch.Generator().manual_seed(seed)
        u = torch.rand(self.n_collocation, 2, generator=gen, dtype=torch.float64)
        self.x_collocation = torch.stack([2 * u[:, 0] - 1, u[:, 1]], dim=-1)
        x0 = node_axis(-1.0, 1.0, self.n_initial)
        self.x_initial = torch.stack([x0, torch.zeros_like(x0)], dim=-1)
        tb = node_axis(0.0, 1.0, self.n_boundary)
        self.x_left = torch.stack([torch.full_like(tb, -1.0), tb], dim=-1)
        self.x_right = torch.stack([torch.full_like(tb, 1.0), tb], dim=-1)
        self.attention = (
            ResidualAttention("rba_weight", "collocation_index", rba_mu) if rba else None
        )
        nx, nt = (int(v) for v in (eval_grid or opts["eval_grid"]))
        self.eval_grid = (nx, nt)
        xs = -1.0 + (2.0 * torch.arange(nx, dtype=torch.float64) + 1.0) / nx
        ts = torch.arange(1, nt + 1, dtype=torch.float64) / nt
        X, T = torch.meshgrid(xs, ts, indexing="ij")
        self._eval_x = torch.stack([X.reshape(-1), T.reshape(-1)], dim=-1)

    # -- inputs ---------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return 3 if self.periodic == "features" else 2

    @property
    def feature_domain(self) -> list[tuple[float, float]]:
        if self.periodic == "features":
            return [(-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0)]
        return list(self.domain)

    def features(self, x: Tensor) -> Tensor:
        if self.periodic == "features":
            return torch.stack([torch.cos(PI * x[:, 0]), torch.sin(PI * x[:, 0]), x[:, 1]], dim=-1)
        return x

    def features_jet(self, x: Jet) -> Jet:
        return jets.pointwise(self.features, x) if self.periodic == "features" else x

    # -- problem --------------------------------------------------------------------
    def solution(self) -> SpectralSolution:
        """The spectral reference (computed and cached on first use)."""
        if self._solution is None:
            self._solution = allen_cahn_reference(self.reference_config, self.cache_dir)
        return self._solution

    def reference(self, x: Tensor) -> Tensor:
        values = self.solution()(x.detach().cpu().double().numpy())
        return torch.from_numpy(values).unsqueeze(-1).to(dtype=x.dtype, device=x.device)

    def initial_condition(self, x: Tensor) -> Tensor:
        """u0 = x^2 cos(pi x): (N, 2) -> (N, 1)."""
        return x[:, :1] ** 2 * torch.cos(PI * x[:, :1])

    def train_batch(self) -> dict[str, Tensor]:
        batch = {
            "x_collocation": self.x_collocation,
            "collocation_index": torch.arange(self.n_collocation),
            "x_initial": self.x_initial,
        }
        if self.periodic == "loss":
            batch["x_left"], batch["x_right"] = self.x_left, self.x_right
        return batch

    def make_state(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {} if self.attention is None else self.attention.init_state(batch)

    #: the derivatives the residual reads
    RESIDUAL_NEEDS = ("u", "u_t", "u_xx")

    def residual_of(self, d: dict[str, Tensor]) -> Tensor:
        """u_t - eps u_xx - 5u + 5u^3 from ``derivatives`` ``d`` (each (N,)): (N,)."""
        u = d["u"]
        return d["u_t"] - self.eps * d["u_xx"] - 5 * u + 5 * u**3

    def residual(self, model: nn.Module, x: Tensor) -> Tensor:
        """u_t - eps u_xx - 5u + 5u^3 at points x (N, 2): (N,)."""
        return self.residual_of(derivatives(self, model, x, self.RESIDUAL_NEEDS))

    def loss_terms(self, model, batch, state, update_state: bool = False):
        # the initial points ride along with the collocation points: one pass
        x0 = as_input(batch["x_initial"], model)
        d, (u0,) = derivatives_with_values(
            self, model, batch["x_collocation"], self.RESIDUAL_NEEDS, [x0]
        )
        r = self.residual_of(d)
        if self.attention is not None:
            r = self.attention.weights(state, batch, r, update_state) * r
        e0 = u0 - self.initial_condition(x0)[:, 0]
        terms = {
            "pde": self.weights["pde"] * (r**2).sum() / self.n_collocation,
            "initial": self.weights["initial"] * (e0**2).sum() / self.n_initial,
        }
        if self.periodic == "loss":
            n = batch["x_left"].shape[0]  # both ends in one pass: left rows, then right rows
            d = derivatives(
                self, model, torch.cat([batch["x_left"], batch["x_right"]]), ("u", "u_x")
            )
            u, u_x = d["u"], d["u_x"]
            jump = (u[n:] - u[:n]) ** 2 + (u_x[n:] - u_x[:n]) ** 2
            terms["periodic"] = self.weights["periodic"] * jump.sum() / self.n_boundary
        return terms

    def describe(self) -> dict:
        info: dict = {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "eps": self.eps,
            "domain": self.domain,
            "n_collocation": self.n_collocation,
            "n_initial": self.n_initial,
            "n_boundary": self.n_boundary if self.periodic == "loss" else 0,
            "periodic": self.periodic,
            "weights": self.weights,
            "rba_mu": None if self.attention is None else self.attention.mu,
            "seed": self.seed,
            "eval_grid": list(self.eval_grid),
            "reference": {
                "method": "Fourier pseudo-spectral + ETDRK4",
                **asdict(self.reference_config),
            },
        }
        # the accuracy is known once the reference exists; describe() never computes it
        if self._solution is not None:
            info["reference"]["accuracy"] = self._solution.accuracy_summary()
            info["reference"]["info"] = self._solution.info
        return info
