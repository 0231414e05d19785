"""Public KAN libraries as baselines ("peers"), behind the suite's model contract.

Three models, registered in ``MODELS`` when this module is imported (``bench_mlkan``
imports it):

``efficient_kan`` - ``EfficientKAN``: a re-implementation of efficient-kan's ``KANLinear``
    stack (efficient-kan by Blealtan, https://github.com/Blealtan/efficient-kan, MIT
    licence). Per layer ``y = base_weight @ SiLU(x) + (spline_weight * spline_scaler) . B(x)``
    with B the n + k B-splines on a uniform grid over ``grid_range`` with k extension
    knots each side, evaluated by the Cox-de Boor recursion over all basis functions
    (``cox_de_boor.cox_de_boor_basis``, which is efficient-kan's ``b_splines``).
    Multilevel: ``refined()`` prolongs ``spline_weight`` dyadically (``splines.prolongation``);
    ``base_weight`` and ``spline_scaler`` are unchanged.
``fastkan`` - ``FastKAN``: a re-implementation of FastKAN (FastKAN by ZiyaoLi,
    https://github.com/ZiyaoLi/fast-kan, Apache-2.0): per layer an optional LayerNorm,
    Gaussian RBFs exp(-((x - c_i) / h)^2) on ``num_grids`` uniform centres c_i over
    ``grid_range`` (h = their spacing), a bias-free linear map of the RBF values, plus
    ``Linear(SiLU(x))``. Single level: FastKAN has no grid refinement of its own, and a
    least-squares refit onto new centres would be our invention, so there is no ``refined()``.
``pykan`` - ``PyKAN``: wraps pykan's ``kan.KAN`` (pykan by Ziming Liu et al., MIT licence;
    optional: ``pip install .[peers]``). Multilevel: ``refined()`` is pykan's own
    ``refine(2 * grid)``, a least-squares fit of the fine splines to the coarse ones at
    sample points, hence ``exact_refinement = False`` (the strategy records the loss
    change at each refinement).

Differences from the suite's ``KAN`` that matter when reading results:

- Outside the grid. None of the three clamps its inputs and none applies anything
  between layers (neither library does). An efficient-kan or pykan spline is the sum of
  the B-splines on the extended knots t_{-k} .. t_{n+k}: past b (or before a) it decays
  to 0 within k knot spacings and is exactly 0 beyond them, so hidden values that leave
  ``grid_range`` see only the SiLU base branch. A FastKAN RBF decays like a Gaussian.
- Exactness of efficient-kan's refinement. Dyadic prolongation preserves a spline on
  [a, b] only (fine basis functions beyond the extension knots are dropped, as
  efficient-kan's finer grid has only k extension knots of the finer spacing). The task
  inputs are mapped into [a, b], but hidden values may leave it, so ``exact_refinement``
  is computed: True iff every layer input of every forward pass since the parameters last
  changed (i.e. of the loss evaluation just before the refinement) lay in [a, b]; when
  False the strategy records the loss change instead of checking it.
- efficient-kan's ``update_grid`` (and pykan's ``update_grid_from_samples``) move the
  knots to quantiles of the data: a different, data-adaptive operation that is not used
  here (every grid stays uniform on ``grid_range``).

Costs (``macs_per_point``) count what each forward computes, per point, every multiply or
divide as one MAC (additions and comparisons ride along, ``exp`` and SiLU count 1 per
element): the Cox-de Boor recursion costs 4 per basis value per round (two divides, two
multiplies), sum_{d=1..k} (n + 2k - d) values per input; this is more than the suite's
local kernel, which touches only the k+1 nonzero B-splines.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cox_de_boor import cox_de_boor_basis, extended_knots
from .models import MODELS, InputMap, _check_widths
from .splines import Grid, prolongation


# ----------------------------------------------------------------------------- costs
def cox_de_boor_macs(grid_size: int, degree: int) -> int:
    """MACs of the Cox-de Boor recursion for one input: 4 per value, k rounds of
    n + 2k - d values (d = 1..k)."""
    n, k = grid_size, degree
    return 4 * sum(n + 2 * k - d for d in range(1, k + 1))


# ----------------------------------------------------------------------------- efficient-kan
class EfficientKANLayer(nn.Module):
    """efficient-kan's ``KANLinear`` (standalone spline scaler, SiLU base), P -> Q.

    Parameters: ``base_weight`` (Q, P), ``spline_weight`` (Q, P, n + k), ``spline_scaler``
    (Q, P). Initialised as efficient-kan does: Kaiming-uniform base weight and scaler, the
    spline weight a least-squares fit of uniform noise at the n + 1 grid points.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid: Grid,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
    ):
        super().__init__()
        self.in_features, self.out_features, self.grid = in_features, out_features, grid
        self.register_buffer("knots", extended_knots(grid, in_features, torch.float64))
        Q, P, nb = out_features, in_features, grid.num_basis
        self.base_weight = nn.Parameter(torch.empty(Q, P))
        self.spline_weight = nn.Parameter(torch.empty(Q, P, nb))
        self.spline_scaler = nn.Parameter(torch.empty(Q, P))
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * scale_base)
        with torch.no_grad():
            n, k = grid.grid_size, grid.degree
            points = self.knots.T[k : k + n + 1]  # (n + 1, P): the grid points a .. b
            noise = (torch.rand(n + 1, P, Q, dtype=torch.float64) - 0.5) * scale_noise / n
            self.spline_weight.copy_(self._fit_coefficients(points, noise))
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * scale_spline)

    knots: Tensor

    def _fit_coefficients(self, x: Tensor, y: Tensor) -> Tensor:
        """efficient-kan's ``curve2coeff``: least-squares B-spline coefficients.

        Args:
            x: (batch, P); y: (batch, P, Q).
        Returns:
            (Q, P, n + k).
        """
        A = cox_de_boor_basis(x, self.knots.to(x.dtype), self.grid.degree).transpose(0, 1)
        # gelsd (SVD): the default gelsy can return rank 0 on CPU (pytorch/pytorch#187411)
        solution = torch.linalg.lstsq(A, y.transpose(0, 1), driver="gelsd").solution
        return solution.permute(2, 0, 1).contiguous()

    def scaled_spline_weight(self) -> Tensor:
        """spline_weight * spline_scaler: (Q, P, n + k)."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, P) -> (batch, Q); no clamp (efficient-kan's behaviour)."""
        batch = x.shape[0]
        base = F.linear(F.silu(x), self.base_weight)
        basis = cox_de_boor_basis(x, self.knots.to(x.dtype), self.grid.degree)
        weight = self.scaled_spline_weight().reshape(self.out_features, -1)
        return base + F.linear(basis.reshape(batch, -1), weight)

    def macs_per_point(self) -> int:
        """Base branch P Q (+ P SiLU), recursion, spline contraction P Q (n + k)."""
        P, Q, g = self.in_features, self.out_features, self.grid
        return P * Q + P + P * cox_de_boor_macs(g.grid_size, g.degree) + P * Q * g.num_basis

    def prolong_tensor(self, name: str, t: Tensor) -> Tensor:
        """Map a tensor shaped like parameter ``name`` onto the refined layer's."""
        if name == "spline_weight":
            return t @ prolongation(self.grid, t.dtype, t.device).T
        return t.clone()

    def refined(self) -> EfficientKANLayer:
        """The layer on the dyadically refined grid: the same function on [a, b]."""
        new = copy.deepcopy(self)
        new.grid = self.grid.refined()
        new.knots = extended_knots(new.grid, self.in_features, self.knots.dtype, self.knots.device)
        new.spline_weight = nn.Parameter(self.prolong_tensor("spline_weight", self.spline_weight))
        return new

    def extra_repr(self) -> str:
        g = self.grid
        return (
            f"{self.in_features} -> {self.out_features}, grid_size={g.grid_size}, "
            f"degree={g.degree}, grid_range={g.grid_range}"
        )


class EfficientKAN(nn.Module):
    """efficient-kan's ``KAN``: a plain stack of ``EfficientKANLayer`` (nothing between).

    Re-implemented from efficient-kan by Blealtan (MIT licence). Task inputs are mapped
    affinely from ``input_domain`` onto ``grid_range``; hidden values are not (see the
    module docstring: outside the extended grid a spline contributes 0).

    Args:
        widths: [in, hidden..., out]; grid_size: intervals n; degree: k (efficient-kan's
            ``spline_order``); grid_range: [a, b]; scale_noise / scale_base / scale_spline:
            efficient-kan's initialisation scales; input_domain: [(lo, hi)] per input.
    """

    def __init__(
        self,
        widths: Sequence[int],
        grid_size: int = 5,
        degree: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        input_domain: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        self.widths = _check_widths(widths, 2)
        self.grid = Grid(grid_size, degree, tuple(grid_range))  # type: ignore[arg-type]
        self.input_map = InputMap(input_domain, self.widths[0], self.grid.grid_range)
        self.layers = nn.ModuleList(
            EfficientKANLayer(p, q, self.grid, scale_noise, scale_base, scale_spline)
            for p, q in zip(self.widths[:-1], self.widths[1:])
        )
        self._reset_range_record()

    def _reset_range_record(self) -> None:
        self._record_versions: int | None = None
        self._all_inside: Tensor | bool = True

    @property
    def grid_size(self) -> int:
        return self.grid.grid_size

    @property
    def exact_refinement(self) -> bool:
        """Whether ``refined()`` preserves the last loss: every layer input of the forward
        passes since the parameters last changed lay in [a, b] (module docstring)."""
        return bool(self._all_inside)

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_map(x)
        a, b = self.grid.grid_range
        inside: list[Tensor] = []
        for layer in self.layers:
            with torch.no_grad():
                inside.append(((x >= a) & (x <= b)).all())
            x = layer(x)
        self._record_inside(torch.stack(inside).all())
        return x

    def _record_inside(self, inside: Tensor) -> None:
        """AND ``inside`` into the record, which restarts when a parameter was written
        (in-place version counters, no device sync)."""
        versions = sum(p._version for p in self.parameters())
        if versions != self._record_versions:
            self._record_versions, self._all_inside = versions, inside
        else:
            self._all_inside = self._all_inside & inside

    def macs_per_point(self) -> int:
        """Forward multiply-accumulates at one point (``EfficientKANLayer.macs_per_point``)."""
        return sum(layer.macs_per_point() for layer in self._layers())

    def _layers(self) -> list[EfficientKANLayer]:
        return [layer for layer in self.layers if isinstance(layer, EfficientKANLayer)]

    def refined(self) -> EfficientKAN:
        """The next level: every grid doubled, spline weights prolonged (module docstring)."""
        new = copy.deepcopy(self)
        new.layers = nn.ModuleList(layer.refined() for layer in self._layers())
        new.grid = self.grid.refined()
        new._reset_range_record()
        return new

    def prolong_parameter_tensor(self, name: str, t: Tensor) -> Tensor:
        """Map a tensor shaped like parameter ``name`` onto the refined model's parameter."""
        parts = name.split(".")
        if parts[0] == "layers" and len(parts) == 3:
            return self._layers()[int(parts[1])].prolong_tensor(parts[2], t)
        return t.clone()


# ----------------------------------------------------------------------------- FastKAN
LayerNormUse = Literal["all", "hidden", "none"]


class FastKANLayer(nn.Module):
    """FastKAN's ``FastKANLayer``: [LayerNorm] -> Gaussian RBFs -> Linear, plus Linear(SiLU(x)).

    Parameters: ``spline_weight`` (Q, P G) (FastKAN's ``spline_linear``, truncated-normal
    init, std ``spline_weight_init_scale``), ``base_linear`` (Q, P) + bias (Q,), and the
    LayerNorm's weight and bias (P,) each when ``layernorm``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_grids: int,
        grid_range: tuple[float, float],
        layernorm: bool,
        base_update: bool = True,
        spline_weight_init_scale: float = 0.1,
    ):
        super().__init__()
        if num_grids < 2:
            raise ValueError(f"num_grids must be >= 2, got {num_grids!r}")
        lo, hi = grid_range
        self.in_features, self.out_features, self.num_grids = in_features, out_features, num_grids
        self.layernorm = nn.LayerNorm(in_features) if layernorm else None
        self.register_buffer("centres", torch.linspace(lo, hi, num_grids, dtype=torch.float64))
        self.denominator = (hi - lo) / (num_grids - 1)
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features * num_grids))
        nn.init.trunc_normal_(self.spline_weight, mean=0.0, std=spline_weight_init_scale)
        self.base_linear = nn.Linear(in_features, out_features) if base_update else None

    centres: Tensor

    def rbf(self, x: Tensor) -> Tensor:
        """exp(-((x - c_i) / h)^2): (batch, P) -> (batch, P, G)."""
        c = self.centres.to(x.dtype)
        return torch.exp(-(((x.unsqueeze(-1) - c) / self.denominator) ** 2))

    def forward(self, x: Tensor) -> Tensor:
        z = x if self.layernorm is None else self.layernorm(x)
        out = F.linear(self.rbf(z).reshape(x.shape[0], -1), self.spline_weight)
        if self.base_linear is not None:
            out = out + self.base_linear(F.silu(x))
        return out

    def macs_per_point(self) -> int:
        """LayerNorm 4 P, RBF 3 per (input, centre) (divide, square, exp), RBF contraction
        P G Q, base branch P Q (+ P SiLU)."""
        P, Q, G = self.in_features, self.out_features, self.num_grids
        total = 3 * P * G + P * G * Q
        if self.layernorm is not None:
            total += 4 * P
        if self.base_linear is not None:
            total += P * Q + P
        return total


class FastKAN(nn.Module):
    """FastKAN (re-implemented from FastKAN by ZiyaoLi, Apache-2.0): a stack of
    ``FastKANLayer``, single level (no ``refined()``).

    Args:
        widths: [in, hidden..., out]; num_grids: RBF centres per input (FastKAN's default 8);
        grid_range: (grid_min, grid_max) of the centres (FastKAN's default (-2, 2));
        layernorm: where FastKAN's input LayerNorm is used - "all" layers (FastKAN's
            default), "hidden" (all but the first) or "none". Warning: on a 2-input layer a
            LayerNorm maps (u, v) to ~ +-(1, -1) (times its affine weights), so the RBF
            branch keeps only sign(u - v) (the SiLU branch sees the raw inputs); use
            "hidden" for low-dimensional task inputs;
        base_update: the Linear(SiLU(x)) branch; spline_weight_init_scale: init std;
        input_domain: [(lo, hi)] per input, mapped affinely onto grid_range.
    """

    def __init__(
        self,
        widths: Sequence[int],
        num_grids: int = 8,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        *,
        layernorm: LayerNormUse = "all",
        base_update: bool = True,
        spline_weight_init_scale: float = 0.1,
        input_domain: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        if layernorm not in ("all", "hidden", "none"):
            raise ValueError(f"layernorm must be 'all', 'hidden' or 'none', got {layernorm!r}")
        self.widths = _check_widths(widths, 2)
        lo, hi = (float(v) for v in grid_range)
        if not lo < hi:
            raise ValueError(f"grid_range must have grid_min < grid_max, got {grid_range!r}")
        self.num_grids, self.grid_range = int(num_grids), (lo, hi)
        self.input_map = InputMap(input_domain, self.widths[0], self.grid_range)
        norms = [
            layernorm == "all" or (layernorm == "hidden" and i > 0)
            for i in range(len(self.widths) - 1)
        ]
        init_scale = spline_weight_init_scale
        self.layers = nn.ModuleList(
            FastKANLayer(p, q, self.num_grids, self.grid_range, norm, base_update, init_scale)
            for p, q, norm in zip(self.widths[:-1], self.widths[1:], norms)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_map(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def macs_per_point(self) -> int:
        """Forward multiply-accumulates at one point (``FastKANLayer.macs_per_point``)."""
        return sum(
            layer.macs_per_point() for layer in self.layers if isinstance(layer, FastKANLayer)
        )


# ----------------------------------------------------------------------------- pykan
def pykan_available() -> bool:
    """Whether pykan (``import kan``) imports here."""
    try:
        import kan  # noqa: F401
    except Exception:  # ImportError, or one of its undeclared dependencies missing
        return False
    return True


@contextlib.contextmanager
def _lstsq_driver(driver: str | None) -> Iterator[None]:
    """Run with ``torch.linalg.lstsq`` defaulting to ``driver`` on CPU (None: unchanged).

    pykan's ``curve2coef`` calls it with the default driver, gelsy, which on CPU can
    return rank 0 and a zero solution for rank-deficient systems (a stale pivot array:
    pytorch/pytorch#187411, #92537) - the usual case in a refit where the data do not
    cover every basis function, e.g. hidden values in part of the grid.
    """
    if driver is None:
        yield
        return
    original = torch.linalg.lstsq

    def lstsq(A, B, rcond=None, **kwargs):
        if kwargs.get("driver") is None and A.device.type == "cpu":
            kwargs["driver"] = driver
        return original(A, B, rcond=rcond, **kwargs)

    torch.linalg.lstsq = lstsq
    try:
        yield
    finally:
        torch.linalg.lstsq = original


@contextlib.contextmanager
def _isolated_rng_and_dtype(seed: int, dtype: torch.dtype) -> Iterator[None]:
    """pykan reseeds torch, numpy and random globally and builds in the default dtype:
    run it with ``seed`` inside saved generator states and ``dtype`` as the default."""
    np_state = np.random.get_state()  # noqa: NPY002  (the legacy global state pykan seeds)
    py_state, old_dtype = random.getstate(), torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(old_dtype)
            np.random.set_state(np_state)  # noqa: NPY002
            random.setstate(py_state)


class PyKAN(nn.Module):
    """pykan's ``KAN(width, grid, k)`` behind the model contract (optional dependency).

    Built with ``symbolic_enabled=False``, ``save_act=False``, ``auto_save=False`` (no
    checkpoint files) and its affine node parameters frozen (pykan's default); the symbolic
    branch's parameters are frozen too (unused). Trainable: per layer ``coef`` (P, Q, n + k),
    ``scale_base`` and ``scale_sp`` (P, Q).

    Args:
        widths: [in, hidden..., out]; grid_size: pykan's ``grid``; degree: pykan's ``k``;
        grid_range: pykan's ``grid_range``; noise_scale: pykan's init noise;
        refine_points: at most this many points for pykan's least-squares refit (the
            largest input batch seen at the current level, evenly subsampled);
        lstsq_driver: the ``torch.linalg.lstsq`` driver pykan's init and refit use on CPU:
            "gelsd" (default; SVD) works around PyTorch's gelsy bug (``_lstsq_driver``),
            None keeps pykan's call as shipped (gelsy);
        input_domain: [(lo, hi)] per input, mapped affinely onto grid_range.
    """

    #: pykan's ``refine`` is a least-squares fit, not a nested-space prolongation
    exact_refinement = False

    def __init__(
        self,
        widths: Sequence[int],
        grid_size: int = 5,
        degree: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        noise_scale: float = 0.3,
        refine_points: int = 2048,
        lstsq_driver: str | None = "gelsd",
        input_domain: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        try:
            from kan import KAN as PykanKAN
        except Exception as e:
            raise ModuleNotFoundError(
                f"model 'pykan' needs pykan (pip install '.[peers]'): {e}"
            ) from e
        self.widths = _check_widths(widths, 2)
        self.grid = Grid(grid_size, degree, tuple(grid_range))  # type: ignore[arg-type]
        self.refine_points, self.lstsq_driver = int(refine_points), lstsq_driver
        self.input_map = InputMap(input_domain, self.widths[0], self.grid.grid_range)
        seed = int(torch.randint(0, 2**31 - 1, ()))  # from the run's seeded generator
        with _isolated_rng_and_dtype(seed, torch.get_default_dtype()), _lstsq_driver(lstsq_driver):
            net = PykanKAN(
                width=list(self.widths), grid=self.grid.grid_size, k=self.grid.degree,
                grid_range=list(self.grid.grid_range), noise_scale=noise_scale, seed=seed,
                symbolic_enabled=False, save_act=False, auto_save=False,
            )  # fmt: skip
        self.net = self._quiet(net)
        self._refit_data: Tensor | None = None
        self._set_uniform_knots()

    def _set_uniform_knots(self) -> None:
        """Write the exact uniform knots in each layer's dtype (pykan computes them in the
        default dtype, so after a cast to float64 they would be off by ~1e-8; its grids
        stay uniform here, as no data-adaptive grid update is used)."""
        for layer in self.net.act_fun:
            g = layer.grid
            layer.grid.data = self.grid.knots(g.dtype, g.device).expand_as(g).contiguous()

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if hasattr(self, "net"):
            self._set_uniform_knots()
        return out

    @staticmethod
    def _quiet(net: Any) -> Any:
        """No checkpoints, no saved activations, the unused symbolic branch frozen."""
        net.auto_save, net.save_act = False, False
        for p in net.symbolic_fun.parameters():
            p.requires_grad_(False)
        return net

    @property
    def grid_size(self) -> int:
        return self.grid.grid_size

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_map(x)
        if self._refit_data is None or x.shape[0] >= self._refit_data.shape[0]:
            self._refit_data = x.detach()
        y = self.net(x)
        self.net.cache_data = None  # pykan keeps the last input; we keep our own
        return y

    def macs_per_point(self) -> int:
        """Per layer: recursion, the per-edge contraction P Q (n + k), then scale_base,
        scale_sp and mask products 3 P Q, SiLU P; node and subnode affine 4 Q."""
        n, k = self.grid.grid_size, self.grid.degree
        total = 0
        for P, Q in zip(self.widths[:-1], self.widths[1:]):
            total += P * cox_de_boor_macs(n, k) + P * Q * (n + k) + 3 * P * Q + P + 4 * Q
        return total

    def refined(self) -> PyKAN:
        """pykan's ``refine(2 * grid)`` fitted at the largest input batch seen (subsampled
        to ``refine_points``): least squares, not exact."""
        if self._refit_data is None:
            raise RuntimeError("PyKAN.refined() needs one forward pass first (the refit data)")
        data = self._refit_data
        stride = max(1, math.ceil(data.shape[0] / self.refine_points))
        data = data[::stride]
        dtype = data.dtype
        seed = int(torch.randint(0, 2**31 - 1, ()))
        with (
            torch.no_grad(),
            _isolated_rng_and_dtype(seed, dtype),
            _lstsq_driver(self.lstsq_driver),
        ):
            self._sync_pykan_device(data.device)
            self.net.save_act = True
            try:
                self.net(data)
                fine = self.net.refine(2 * self.grid.grid_size)
            finally:
                self.net.save_act = False
                self.net.cache_data = None
        fine = self._quiet(fine)
        fine.cache_data = None
        new = copy.deepcopy(self)
        new.net = fine.to(data.device)
        new.grid = self.grid.refined()
        new.to(dtype=dtype)  # also writes the refined grid's exact knots
        return new

    def _sync_pykan_device(self, device: torch.device) -> None:
        """pykan keeps a ``device`` attribute per module and builds new tensors on it."""
        self.net.device = device
        for layer in self.net.act_fun:
            layer.device = device


MODELS.register("efficient_kan", EfficientKAN)
MODELS.register("fastkan", FastKAN)
MODELS.register("pykan", PyKAN)

__all__ = [
    "EfficientKAN",
    "EfficientKANLayer",
    "FastKAN",
    "FastKANLayer",
    "PyKAN",
    "cox_de_boor_macs",
    "pykan_available",
]
