"""The three model families: ``KAN``, ``MultichannelMLP`` and ``MLP``.

All map (batch, widths[0]) -> (batch, widths[-1]). ``KAN`` trains B-spline coefficients
c[q, p, :]; ``MultichannelMLP`` trains power-ReLU weights w[q, p, :] = c[q, p, :] @ A
(METHOD.md section 2). Both represent the same function on the grid range, convert
into each other exactly (``to_multichannel`` / ``to_kan``) and refine exactly
(``refined``: every spline layer's grid_size doubled, same function).

Network layout (spline families)::

    x -> [affine map input_domain -> grid_range] -> [Linear (optional)] -> spline layers
    with a fixed ``squash`` applied to every hidden value that enters a spline layer,
    then an optional output bias.

Inputs of a spline layer outside ``grid_range`` are clamped (constant continuation,
zero input derivative) in both forms, so the two forms agree everywhere. ``outside``
chooses another continuation (``OUTSIDE``): "extend" continues the first / last polynomial
piece (exact under refinement), "literal" is what each basis computes without a clamp
(spline form: B-splines on the extended knots, 0 past them; power-ReLU form: 0 left of
t_{-k}, the last piece continued on the right; not exact under refinement outside [a, b]).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, cast

import torch
from torch import Tensor, nn

from .kernels import spline_contract
from .registry import Registry
from .splines import (
    Grid,
    _is_integer,
    bspline_basis,
    change_of_basis,
    change_of_basis_inverse,
    clamp_to_grid,
    power_relu_basis,
    prolongation,
    relu_cancellation_estimate,
    restriction,
)

Squash = Literal["tanh", "sigmoid"] | None
Evaluation = Literal["auto", "spline", "relu"]
Outside = Literal["clamp", "extend", "literal"]
ReLUInit = Literal["spline_iid", "relu_iid"]

#: Continuations of a spline layer outside its grid range (see the module docstring).
OUTSIDE = ("clamp", "extend", "literal")
#: Initialisations of ``MultichannelMLP``: "spline_iid" (default) draws i.i.d. B-spline
#: coefficients and converts them (w = c A); "relu_iid" draws the power-ReLU weights w
#: i.i.d. directly, as one would initialise an MLP.
RELU_INITS = ("spline_iid", "relu_iid")

#: Relative error above which the literal power-ReLU path warns (see ``PowerReLULayer``).
RELU_PATH_TOLERANCE = 1e-4


# ----------------------------------------------------------------------------- kernels
def spline_layer_forward(x: Tensor, coef: Tensor, grid: Grid, kernel: str | None = None) -> Tensor:
    """y[b, q] = sum_p sum_i coef[q, p, i] B_i(x[b, p]), using only the k+1 nonzero B_i.

    The evaluation kernel (``bench_mlkan.kernels``) is chosen automatically (the fastest
    measured for the device, dtype and grid) unless ``kernel`` or
    ``kernels.set_default_kernel`` / ``$BENCH_MLKAN_KERNEL`` names one; all agree to
    round-off, in values and in derivatives of every order.

    Args:
        x: (batch, P); coef: (Q, P, n + k).
    Returns:
        (batch, Q).
    """
    return spline_contract(x, coef, grid, kernel)


def power_relu_layer_forward(x: Tensor, weight: Tensor, grid: Grid, scaled: bool) -> Tensor:
    """y[b, q] = sum_p sum_i weight[q, p, i] psi_i(x[b, p]) (literal multichannel MLP).

    Args:
        x: (batch, P); weight: (Q, P, n + k).
    Returns:
        (batch, Q).
    """
    batch, P = x.shape
    Q, _, nb = weight.shape
    psi = power_relu_basis(x, grid, scaled=scaled)  # (batch, P, n + k)
    return psi.reshape(batch, P * nb) @ weight.reshape(Q, P * nb).T


def outside_basis_difference(x: Tensor, grid: Grid, outside: Outside, basis: str) -> Tensor:
    """phi_j(x) - phi_j(clamp(x)) for the continuation ``outside``; 0 wherever a <= x <= b.

    ``basis`` "bspline": phi = B_j (coefficients c); "relu": phi = psi~_j, the h-scaled
    power-ReLU basis (coefficients w = c A, scaled). "extend" continues the end pieces as
    polynomials (the same function in either basis); "literal" evaluates the basis itself
    unclamped (B-splines on the extended knots, or ReLU((x - t_j)/h)^k).

    Args:
        x: (batch, P).
    Returns:
        (batch, P, n + k).
    """
    a, b = grid.grid_range
    k, nb, h = grid.degree, grid.num_basis, grid.h
    t = grid.knots(dtype=x.dtype, device=x.device)[:nb]  # t_{-k} .. t_{n-1}
    xe = x.unsqueeze(-1)
    if outside == "clamp":
        return torch.zeros(*x.shape, nb, dtype=x.dtype, device=x.device)
    if outside == "extend":
        if basis != "relu":
            raise ValueError("outside='extend' is expressed in the relu basis")
        right = ((xe.clamp(min=b) - t) / h) ** k - ((b - t) / h) ** k
        left = ((xe.clamp(max=a) - t) / h) ** k - ((a - t) / h) ** k
        return right + left * (t <= a + 1e-12 * h).to(x.dtype)
    if outside != "literal":
        raise ValueError(f"outside must be one of {OUTSIDE}, got {outside!r}")
    out = ((xe < a) | (xe > b)).expand(*x.shape, nb)
    if basis == "bspline":  # uniform knots: B_j(x) = N((x - t_j) / h), N cardinal on [0, k+1]
        u = (xe - t) / h
        raw = sum(
            (-1) ** m * math.comb(k + 1, m) / math.factorial(k) * torch.relu(u - m) ** k
            for m in range(k + 2)
        )
        raw = torch.where((u >= 0) & (u <= k + 1), raw, torch.zeros_like(u))
        inside = bspline_basis(x, grid)
    else:
        raw = torch.relu((xe - t) / h) ** k
        inside = torch.relu((clamp_to_grid(x, grid).unsqueeze(-1) - t) / h) ** k
    return torch.where(out, raw - inside, torch.zeros_like(raw))


def outside_correction(
    x: Tensor, coef: Tensor, grid: Grid, outside: Outside, basis: str = "bspline"
) -> Tensor:
    """What ``outside`` adds to the clamped layer output, from B-spline coefficients.

    ``basis`` ("bspline" for a KAN layer, "relu" for a multichannel-MLP layer) matters
    only for "literal": each basis continues differently.

    Args:
        x: (batch, P); coef: (Q, P, n + k) B-spline coefficients.
    Returns:
        (batch, Q); zero rows for inputs inside the grid range.
    """
    a, b = grid.grid_range
    rows = ((x < a) | (x > b)).any(dim=1).nonzero().squeeze(1)  # only rows with work
    out = x.new_zeros(x.shape[0], coef.shape[0])
    if rows.numel() == 0:
        return out
    xo = x.index_select(0, rows)
    if outside == "literal" and basis == "bspline":
        diff = outside_basis_difference(xo, grid, outside, "bspline")
        contrib = torch.einsum("bpj,qpj->bq", diff, coef)
    else:
        w = coef @ change_of_basis(grid, True, coef.dtype, coef.device)
        diff = outside_basis_difference(xo, grid, outside, "relu")
        contrib = torch.einsum("bpj,qpj->bq", diff, w)
    return out.index_add(0, rows, contrib)


# ----------------------------------------------------------------------------- layers
class SplineLayer(nn.Module):
    """Base of the two spline-space layers: P inputs, Q outputs, one spline per edge."""

    outside: Outside = "clamp"
    basis = "bspline"

    def __init__(self, in_features: int, out_features: int, grid: Grid):
        super().__init__()
        self.in_features, self.out_features, self.grid = in_features, out_features, grid

    def _set_outside(self, outside: Outside) -> None:
        if outside not in OUTSIDE:
            raise ValueError(f"outside must be one of {OUTSIDE}, got {outside!r}")
        self.outside = outside

    def _continue_outside(self, x: Tensor, y: Tensor) -> Tensor:
        """y plus the ``outside`` continuation (y itself when clamping)."""
        if self.outside == "clamp":
            return y
        coef = self.spline_coefficients()
        return y + outside_correction(x, coef, self.grid, self.outside, self.basis)

    def spline_coefficients(self) -> Tensor:
        """B-spline coefficients c: (Q, P, n + k) (differentiable in the parameters)."""
        raise NotImplementedError

    def refined(self) -> SplineLayer:
        """The same layer on the dyadically refined grid, computing the same function."""
        raise NotImplementedError

    def prolong_tensor(self, t: Tensor) -> Tensor:
        """Map a parameter-shaped tensor to the refined layer's parameter shape (linear)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        g = self.grid
        return (
            f"{self.in_features} -> {self.out_features}, grid_size={g.grid_size}, "
            f"degree={g.degree}, grid_range={g.grid_range}"
        )


class BSplineLayer(SplineLayer):
    """KAN layer: trainable B-spline coefficients ``coef`` (Q, P, n + k)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid: Grid,
        init_std: float = 0.1,
        outside: Outside = "clamp",
    ):
        super().__init__(in_features, out_features, grid)
        self._set_outside(outside)
        self.coef = nn.Parameter(
            torch.randn(out_features, in_features, grid.num_basis)
            * init_std
            / math.sqrt(in_features)
        )

    def spline_coefficients(self) -> Tensor:
        return self.coef

    def forward(self, x: Tensor) -> Tensor:
        return self._continue_outside(x, spline_layer_forward(x, self.coef, self.grid))

    def prolong_tensor(self, t: Tensor) -> Tensor:
        return t @ prolongation(self.grid, t.dtype, t.device).T

    def refined(self) -> BSplineLayer:
        new = copy.deepcopy(self)
        new.grid = self.grid.refined()
        new.coef = nn.Parameter(self.prolong_tensor(self.coef.detach()))
        return new

    def restrict_tensor(self, t: Tensor) -> Tensor:
        """L2 projection onto the coarser grid: (..., 2m + k) -> (..., m + k)."""
        return t @ restriction(coarser_grid(self.grid), t.dtype, t.device).T

    def prolong_adjoint_tensor(self, g: Tensor) -> Tensor:
        """P^T g: a gradient on the refined grid (..., 2n + k) pulled back to this grid's
        coefficients (..., n + k) (the gradient of e -> L(c_fine + P e) at e = 0)."""
        return g @ prolongation(self.grid, g.dtype, g.device)

    def coarsened(self) -> BSplineLayer:
        """The layer on the coarser grid (n / 2), coefficients L2-projected."""
        new = copy.deepcopy(self)
        new.grid = coarser_grid(self.grid)
        new.coef = nn.Parameter(self.restrict_tensor(self.coef.detach()))
        return new


def coarser_grid(grid: Grid) -> Grid:
    """The grid with half the intervals (``grid_size`` must be even)."""
    if grid.grid_size % 2:
        raise ValueError(f"grid_size {grid.grid_size} is odd: no coarser dyadic grid")
    return Grid(grid.grid_size // 2, grid.degree, grid.grid_range)


class PowerReLULayer(SplineLayer):
    """Multichannel-MLP layer: trainable power-ReLU weights ``weight`` (Q, P, n + k).

    evaluation:
        "relu"   - the literal form: power-ReLU channels + one contraction.
                   Warning: cancels catastrophically in float32 on fine grids; warns when
                   ``relu_cancellation_estimate`` exceeds ``RELU_PATH_TOLERANCE``.
        "spline" - the same function via c = w A^-1 (computed in float64, then cast) and
                   the local B-spline kernel: accurate in float32; the gradient in w is the
                   same (chain rule through a fixed linear map).
        "auto"   - "spline" (accurate in every precision).

    init: "spline_iid" (default) - i.i.d. N(0, init_std^2 / P) B-spline coefficients,
        converted (w = c A); "relu_iid" - i.i.d. N(0, init_std^2 / P) weights w directly.
    """

    basis = "relu"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid: Grid,
        scaled: bool = True,
        evaluation: Evaluation = "auto",
        init_std: float = 0.1,
        outside: Outside = "clamp",
        init: ReLUInit = "spline_iid",
    ):
        super().__init__(in_features, out_features, grid)
        if evaluation not in ("auto", "spline", "relu"):
            raise ValueError(f"evaluation must be 'auto', 'spline' or 'relu', got {evaluation!r}")
        if init not in RELU_INITS:
            raise ValueError(f"init must be one of {RELU_INITS}, got {init!r}")
        self._set_outside(outside)
        self.scaled, self.evaluation, self.init = scaled, evaluation, init
        draw = torch.randn(out_features, in_features, grid.num_basis, dtype=torch.float64)
        draw *= init_std / math.sqrt(in_features)
        weight = draw if init == "relu_iid" else draw @ change_of_basis(grid, scaled)
        self.weight = nn.Parameter(weight.to(torch.get_default_dtype()))

    def spline_coefficients(self) -> Tensor:
        Ainv = change_of_basis_inverse(self.grid, self.scaled, torch.float64, self.weight.device)
        return (self.weight.double() @ Ainv).to(self.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if self.evaluation == "relu":
            if x.dtype != torch.float64:
                err = relu_cancellation_estimate(self.grid, x.dtype, self.scaled)
                if err > RELU_PATH_TOLERANCE:
                    warnings.warn(
                        f"power-ReLU evaluation in {x.dtype} on grid_size={self.grid.grid_size}, "
                        f"degree={self.grid.degree} loses accuracy (estimated relative error "
                        f"{err:.1e}); use float64 or evaluation='spline'",
                        stacklevel=2,
                    )
            y = power_relu_layer_forward(x, self.weight, self.grid, self.scaled)
        else:
            y = spline_layer_forward(x, self.spline_coefficients(), self.grid)
        return self._continue_outside(x, y)

    def prolong_tensor(self, t: Tensor) -> Tensor:
        g, fine = self.grid, self.grid.refined()
        u = t.double() @ change_of_basis_inverse(g, self.scaled, torch.float64, t.device)
        u = u @ prolongation(g, torch.float64, t.device).T
        return (u @ change_of_basis(fine, self.scaled, torch.float64, t.device)).to(t.dtype)

    def refined(self) -> PowerReLULayer:
        new = copy.deepcopy(self)
        new.grid = self.grid.refined()
        new.weight = nn.Parameter(self.prolong_tensor(self.weight.detach()))
        return new

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, scaled={self.scaled}, evaluation={self.evaluation!r}, "
            f"init={self.init!r}, outside={self.outside!r}"
        )


# ----------------------------------------------------------------------------- helpers
def _squash_fn(squash: Squash, grid_range: tuple[float, float]) -> Callable[[Tensor], Tensor]:
    a, b = grid_range
    mid, half = (a + b) / 2, (b - a) / 2
    if squash is None:
        return lambda z: z
    if squash == "tanh":
        return lambda z: mid + half * torch.tanh(z)
    if squash == "sigmoid":
        return lambda z: a + (b - a) * torch.sigmoid(z)
    raise ValueError(f"squash must be None, 'tanh' or 'sigmoid', got {squash!r}")


class InputMap(nn.Module):
    """Fixed affine map of each input from ``domain`` [(lo, hi), ...] onto ``target``."""

    def __init__(
        self, domain: Sequence[Sequence[float]] | None, dim: int, target: tuple[float, float]
    ):
        super().__init__()
        if domain is None:
            scale, shift = torch.ones(dim), torch.zeros(dim)
        else:
            if len(domain) != dim:
                raise ValueError(
                    f"input_domain has {len(domain)} intervals, the model {dim} inputs"
                )
            lo = torch.tensor([float(d[0]) for d in domain], dtype=torch.float64)
            hi = torch.tensor([float(d[1]) for d in domain], dtype=torch.float64)
            if not bool((hi > lo).all()):
                raise ValueError(f"input_domain intervals need lo < hi, got {domain!r}")
            scale = (target[1] - target[0]) / (hi - lo)
            shift = target[0] - lo * scale
        self.domain = None if domain is None else [tuple(map(float, d)) for d in domain]
        # Kept in float64 (cast to the input's dtype when applied): rounding them to the
        # default float32 here would cap a later ``.double()`` model at ~1e-7 accuracy.
        self.register_buffer("scale", scale.to(torch.float64))
        self.register_buffer("shift", shift.to(torch.float64))

    scale: Tensor
    shift: Tensor

    def forward(self, x: Tensor) -> Tensor:
        if self.domain is None:
            return x
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


def _check_widths(widths: Sequence[int], minimum: int) -> list[int]:
    widths = list(widths)
    if len(widths) < minimum or any(not _is_integer(w) or w < 1 for w in widths):
        raise ValueError(f"widths must be >= {minimum} positive integers, got {widths!r}")
    return [int(w) for w in widths]


# ----------------------------------------------------------------------------- networks
class SplineNetwork(nn.Module):
    """Shared body of ``KAN`` and ``MultichannelMLP`` (see the module docstring)."""

    layer_kind = "spline"

    @property
    def exact_refinement(self) -> bool:
        """``refined()`` preserves the function exactly (bench_mlkan.contracts): everywhere
        except with ``outside="literal"``, where the continuation past [a, b] changes."""
        return self.outside != "literal"

    def __init__(
        self,
        widths: Sequence[int],
        grid_size: int,
        degree: int,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        *,
        linear_first: bool = False,
        linear_bias: bool = False,
        squash: Squash = None,
        output_bias: bool = False,
        input_domain: Sequence[Sequence[float]] | None = None,
        init_std: float = 0.1,
        outside: Outside = "clamp",
    ):
        super().__init__()
        if outside not in OUTSIDE:
            raise ValueError(f"outside must be one of {OUTSIDE}, got {outside!r}")
        self.outside = outside
        self.config = dict(
            widths=list(widths),
            grid_size=grid_size,
            degree=degree,
            grid_range=tuple(grid_range),
            linear_first=linear_first,
            linear_bias=linear_bias,
            squash=squash,
            output_bias=output_bias,
            input_domain=input_domain,
            init_std=init_std,
        )
        if outside != "clamp":  # the default config stays as it was
            self.config["outside"] = outside
        self.widths = _check_widths(widths, 3 if linear_first else 2)
        self.grid = Grid(grid_size, degree, tuple(grid_range))  # type: ignore[arg-type]
        self.linear_first, self.linear_bias, self.squash = linear_first, linear_bias, squash
        self._squash = _squash_fn(squash, self.grid.grid_range)
        self.input_map = InputMap(input_domain, self.widths[0], self.grid.grid_range)
        self.linear = (
            nn.Linear(self.widths[0], self.widths[1], bias=linear_bias) if linear_first else None
        )
        spline_widths = self.widths[1:] if linear_first else self.widths
        self.layers = nn.ModuleList(
            self._make_layer(p, q, init_std) for p, q in zip(spline_widths[:-1], spline_widths[1:])
        )
        self.output_bias = nn.Parameter(torch.zeros(self.widths[-1])) if output_bias else None

    def _make_layer(self, p: int, q: int, init_std: float) -> SplineLayer:
        raise NotImplementedError

    @property
    def spline_layers(self) -> list[SplineLayer]:
        """The spline layers, typed (``self.layers`` holds only ``SplineLayer``s)."""
        return [cast(SplineLayer, layer) for layer in self.layers]

    @property
    def grid_size(self) -> int:
        return self.spline_layers[0].grid.grid_size

    @property
    def degree(self) -> int:
        return self.grid.degree

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_map(x)
        if self.linear is not None:
            x = self._squash(self.linear(x))
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self._squash(x)
            x = layer(x)
        return x if self.output_bias is None else x + self.output_bias

    def macs_per_point(self) -> int:
        """Forward multiply-accumulates at one point: P * Q * (n + k) per spline layer (the
        dense-equivalent basis contraction), P * Q for the optional Linear layer."""
        total = 0 if self.linear is None else self.linear.in_features * self.linear.out_features
        for layer in self.spline_layers:
            total += layer.in_features * layer.out_features * layer.grid.num_basis
        return total

    def refined(self) -> SplineNetwork:
        """The next level: every spline layer's grid_size doubled, the same function."""
        new = copy.deepcopy(self)
        new.layers = nn.ModuleList(layer.refined() for layer in self.spline_layers)
        new.grid = self.grid.refined()
        new.config = {**self.config, "grid_size": new.grid.grid_size}
        return new

    def prolong_parameter_tensor(self, name: str, t: Tensor) -> Tensor:
        """Map a tensor shaped like parameter ``name`` onto the refined model's parameter."""
        parts = name.split(".")
        if parts[0] == "layers" and len(parts) == 3:
            return self.spline_layers[int(parts[1])].prolong_tensor(t)
        return t.clone()

    def _convert(self, cls: type[SplineNetwork], **extra) -> SplineNetwork:
        """Build ``cls`` with the same architecture and the same function."""
        ref = self.spline_layers[0].spline_coefficients()
        new = cls(**{**self.config, **extra}).to(dtype=ref.dtype, device=ref.device)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("layers.")}
        new.load_state_dict(state, strict=False)
        with torch.no_grad():
            for src, dst in zip(self.spline_layers, new.spline_layers):
                coef = src.spline_coefficients().detach().double()
                if isinstance(dst, PowerReLULayer):
                    A = change_of_basis(dst.grid, dst.scaled, torch.float64, coef.device)
                    dst.weight.copy_(coef @ A)
                else:
                    cast(BSplineLayer, dst).coef.copy_(coef)
        return new


class KAN(SplineNetwork):
    """Spline KAN: trains B-spline coefficients ("spline basis" in the paper).

    Args:
        widths: [in, hidden..., out]; with ``linear_first`` the first map is a Linear layer.
        grid_size: intervals n per spline; degree: k (cubic = 3); grid_range: [a, b].
        linear_first / linear_bias: a plain Linear(widths[0], widths[1]) before the splines.
        squash: None (clamp only), "tanh" or "sigmoid": a fixed map of every hidden value
            that enters a spline layer onto the grid range.
        output_bias: a trainable bias on the output.
        input_domain: [(lo, hi)] per input, mapped affinely onto grid_range first.
        init_std: coefficients are i.i.d. N(0, init_std^2 / fan_in).
        outside: "clamp" (default), "extend" or "literal": the continuation of every
            spline layer outside grid_range (``OUTSIDE``, module docstring).
    """

    def _make_layer(self, p: int, q: int, init_std: float) -> SplineLayer:
        return BSplineLayer(p, q, self.grid, init_std, self.outside)

    def to_multichannel(
        self, scaled: bool = True, evaluation: Evaluation = "auto"
    ) -> MultichannelMLP:
        """The equivalent multichannel MLP (w = c A per edge), same function on grid_range."""
        return self._convert(MultichannelMLP, scaled=scaled, evaluation=evaluation)  # type: ignore[return-value]

    def coarsened(self) -> KAN:
        """The previous level (grid_size / 2): every spline L2-projected onto the coarser
        grid (``splines.restriction``); the linear first layer and biases are unchanged.
        ``coarsened().refined()`` is the projection; ``refined().coarsened()`` the identity."""
        new = copy.deepcopy(self)
        layers = [cast(BSplineLayer, layer) for layer in self.spline_layers]
        new.layers = nn.ModuleList(layer.coarsened() for layer in layers)
        new.grid = coarser_grid(self.grid)
        new.config = {**self.config, "grid_size": new.grid.grid_size}
        return new

    def restrict_parameter_tensor(self, name: str, t: Tensor) -> Tensor:
        """Map a tensor shaped like parameter ``name`` onto the coarsened model's (R t for
        spline coefficients, a copy for the shared parameters)."""
        parts = name.split(".")
        if parts[0] == "layers" and len(parts) == 3:
            return cast(BSplineLayer, self.spline_layers[int(parts[1])]).restrict_tensor(t)
        return t.clone()

    def prolong_adjoint_parameter_tensor(self, name: str, g: Tensor) -> Tensor:
        """P^T g for a gradient ``g`` shaped like parameter ``name`` of the refined model
        (this model is the coarse one); shared parameters: a copy."""
        parts = name.split(".")
        if parts[0] == "layers" and len(parts) == 3:
            return cast(BSplineLayer, self.spline_layers[int(parts[1])]).prolong_adjoint_tensor(g)
        return g.clone()


class MultichannelMLP(SplineNetwork):
    """Multichannel power-ReLU MLP: trains w = c A ("ReLU basis" in the paper).

    Same arguments as ``KAN`` plus ``scaled`` (h-scaled power-ReLU, default),
    ``evaluation`` ("auto", "spline", "relu"; see ``PowerReLULayer``) and ``init``
    ("spline_iid" default, "relu_iid": the weights w drawn i.i.d. like an MLP's).
    """

    def __init__(
        self,
        *args,
        scaled: bool = True,
        evaluation: Evaluation = "auto",
        init: ReLUInit = "spline_iid",
        **kwargs,
    ):
        self.scaled, self.evaluation, self.init = scaled, evaluation, init
        super().__init__(*args, **kwargs)

    def _make_layer(self, p: int, q: int, init_std: float) -> SplineLayer:
        return PowerReLULayer(
            p, q, self.grid, self.scaled, self.evaluation, init_std, self.outside, self.init
        )

    def to_kan(self) -> KAN:
        """The equivalent KAN (c = w A^-1 per edge), same function on grid_range."""
        return self._convert(KAN)  # type: ignore[return-value]


class MLP(nn.Module):
    """Plain MLP: Linear layers with ``activation`` between them.

    Hidden layers have biases; the output layer has one only with ``output_bias`` (the
    paper's MLP parameter counts have none). ``input_domain`` maps inputs onto [-1, 1].
    """

    ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "sin": lambda: _Sin(),
    }
    layer_kind = "mlp"

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "tanh",
        *,
        output_bias: bool = False,
        input_domain: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        self.widths = _check_widths(widths, 2)
        if activation not in self.ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; known: {sorted(self.ACTIVATIONS)}"
            )
        self.activation = activation
        self.input_map = InputMap(input_domain, self.widths[0], (-1.0, 1.0))
        mods: list[nn.Module] = []
        pairs = list(zip(self.widths[:-1], self.widths[1:]))
        for i, (p, q) in enumerate(pairs):
            last = i == len(pairs) - 1
            mods.append(nn.Linear(p, q, bias=output_bias if last else True))
            if not last:
                mods.append(self.ACTIVATIONS[activation]())
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.input_map(x))

    def macs_per_point(self) -> int:
        """Forward multiply-accumulates at one point: P * Q per Linear layer."""
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        return sum(m.in_features * m.out_features for m in linears)


class _Sin(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: Registry of model families by name (used by configs).
MODELS: Registry[type[nn.Module]] = Registry(
    "model", {"kan": KAN, "mcmlp": MultichannelMLP, "mlp": MLP}
)
