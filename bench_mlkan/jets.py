"""Forward jets: a model's value and its input derivatives (order <= 2) in one forward pass.

A PINN loss needs u, grad u and a few second derivatives of u with respect to 1-3 input
coordinates. Nested ``autograd.grad(create_graph=True)`` builds them by differentiating the
forward graph twice and the loss's backward then differentiates *that* graph once more.
A jet instead carries, per point, the value and the wanted derivatives through the network
(forward-mode, Taylor arithmetic to order 2), so the loss's backward is one ordinary reverse
pass through ordinary ops.

A ``Jet`` of width W holds ``data`` (1 + D + M, N, W): row 0 the value, rows 1..D the first
derivatives along D input directions, rows 1+D.. the M second derivatives d2/(dir_i dir_j)
for ``pairs`` [(i, j), ...] (pure ones, and mixed ones only when asked). The rules:

* affine / ``Linear`` y = x W^T + b: every row times W^T, the bias only in the value;
* elementwise y = f(x): y_i = f' x_i,  y_ij = f' x_ij + f'' x_i x_j;
* product y = a b: y_i = a_i b + a b_i,  y_ij = a_ij b + a_i b_j + a_j b_i + a b_ij;
* spline layer y = S(x) with u = (clamp(x) - a) / h and m = 1 inside [a, b] (ends
  included, 0 outside: clamping has zero derivative), using the kernels' contraction
  contract_d(c, u, T) = sum_{p, r} c[b, p] w^d_r(u[b, p]) T[row + r, q] (``kernels``)::

      y    = contract_0(1)
      y_i  = contract_1(x_i m / h)
      y_ij = contract_1(x_ij m / h) + contract_2(x_i x_j m / h^2)

  with the multipliers of one derivative order stacked along the batch (u repeated), so a
  layer costs three contractions (orders 0, 1, 2), not one per component.

Models: ``forward(model, jet)`` dispatches on module types through ``JET_RULES`` (a plain
dict; a module whose class overrides ``forward`` of the registered class is not matched):
``KAN`` / ``MultichannelMLP`` (input map, optional linear first layer, squash, spline layers
through ``spline_coefficients()`` - a ``PowerReLULayer`` with ``evaluation="relu"`` is jetted
in its B-spline form, the same function - and output bias), ``MLP``, ``nn.Sequential``,
``nn.Linear`` and the elementwise activations of ``ACTIVATIONS``. ``supports(model)`` says
whether every part has a rule; the PINN tasks fall back to nested autograd otherwise.

Values are computed by the same operations as the model's own forward, so the jet's value
equals ``model(x)`` to the bit wherever that is cheap (spline layers, squash, activations),
and to round-off elsewhere (a stacked matmul).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import kernels as K
from .models import (
    MLP,
    BSplineLayer,
    InputMap,
    PowerReLULayer,
    SplineLayer,
    SplineNetwork,
    _Sin,
)
from .splines import Grid, clamp_to_grid

Pairs = tuple[tuple[int, int], ...]


# ----------------------------------------------------------------------------- the jet
@dataclass(frozen=True)
class Jet:
    """Value and input derivatives of a (N, W) quantity; see the module docstring.

    Attributes:
        data: (1 + D + M, N, W): value, D first derivatives, M second derivatives.
        pairs: M pairs (i, j), i <= j < D: row 1 + D + m is d2/(dir_i dir_j).
    """

    data: Tensor
    pairs: Pairs

    @property
    def num_directions(self) -> int:
        return self.data.shape[0] - 1 - len(self.pairs)

    @property
    def value(self) -> Tensor:
        """(N, W)."""
        return self.data[0]

    @property
    def first(self) -> Tensor:
        """(D, N, W)."""
        return self.data[1 : 1 + self.num_directions]

    @property
    def second(self) -> Tensor:
        """(M, N, W)."""
        return self.data[1 + self.num_directions :]

    @property
    def derivatives(self) -> Tensor:
        """First and second derivatives: (D + M, N, W)."""
        return self.data[1:]

    def column(self, k: int) -> Jet:
        """Column k as a width-1 jet."""
        return Jet(self.data[:, :, k : k + 1], self.pairs)


def _pair_index(pairs: Pairs) -> tuple[list[int], list[int]]:
    return [i for i, _ in pairs], [j for _, j in pairs]


def check_pairs(num_directions: int, pairs: Sequence[Sequence[int]]) -> Pairs:
    """Validated pairs (i, j), i <= j < D, without repeats."""
    out = tuple((int(i), int(j)) for i, j in pairs)
    for i, j in out:
        if not 0 <= i <= j < num_directions:
            raise ValueError(f"pair {(i, j)} needs 0 <= i <= j < {num_directions}")
    if len(set(out)) != len(out):
        raise ValueError(f"repeated pairs in {out}")
    return out


def seed(x: Tensor, directions: Sequence[int], pairs: Sequence[Sequence[int]] = ()) -> Jet:
    """The jet of the input itself: x (N, d), unit first derivatives along the coordinates
    ``directions`` (D of them), zero second derivatives for ``pairs`` (indices into
    directions)."""
    N, d = x.shape
    dirs = list(directions)
    if any(not 0 <= c < d for c in dirs):
        raise ValueError(f"directions {dirs} must be coordinates 0..{d - 1}")
    P = check_pairs(len(dirs), pairs)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)[dirs]  # (D, d)
    first = eye[:, None, :].expand(len(dirs), N, d)
    second = x.new_zeros(len(P), N, d)
    return Jet(torch.cat([x[None], first, second]), P)


def _assemble(value: Tensor, first: Tensor, second: Tensor | None, pairs: Pairs) -> Jet:
    parts = [value[None], first] + ([] if second is None or not pairs else [second])
    return Jet(torch.cat(parts), pairs)


# ----------------------------------------------------------------------------- elementwise
def elementwise(jet: Jet, value: Tensor, d1: Tensor, d2: Tensor | None) -> Jet:
    """y = f(x) with value f(x), f'(x), f''(x) (each (N, W); d2 None: f'' = 0)."""
    D = jet.num_directions
    if not jet.pairs:
        return Jet(torch.cat([value[None], d1 * jet.data[1:]]), jet.pairs)
    rest = d1 * jet.data[1:]  # (D + M, N, W)
    if d2 is None:
        return Jet(torch.cat([value[None], rest]), jet.pairs)
    I, J = _pair_index(jet.pairs)
    first = jet.first
    second = torch.addcmul(rest[D:], d2 * first[I], first[J])
    return _assemble(value, rest[:D], second, jet.pairs)


def scale_shift(jet: Jet, value: Tensor, scale: Tensor) -> Jet:
    """y = x * scale + shift (per column; ``value`` = y given): derivatives times scale."""
    return Jet(torch.cat([value[None], jet.data[1:] * scale]), jet.pairs)


def add_to_value(jet: Jet, bias: Tensor) -> Jet:
    """y = x + bias (derivatives unchanged)."""
    return Jet(torch.cat([(jet.value + bias)[None], jet.data[1:]]), jet.pairs)


def linear(jet: Jet, weight: Tensor, bias: Tensor | None = None) -> Jet:
    """y = x W^T + b: the value as ``F.linear`` computes it, derivatives without bias."""
    value = F.linear(jet.value, weight, bias)
    return Jet(torch.cat([value[None], jet.data[1:] @ weight.T]), jet.pairs)


def mul(a: Jet, b: Jet) -> Jet:
    """Product of two jets with the same directions and pairs (widths broadcast)."""
    if a.pairs != b.pairs or a.num_directions != b.num_directions:
        raise ValueError("jets of a product need the same directions and pairs")
    value = a.value * b.value
    first = a.first * b.value + a.value * b.first
    if not a.pairs:
        return _assemble(value, first, None, a.pairs)
    I, J = _pair_index(a.pairs)
    a1, b1 = a.first, b.first
    second = a.second * b.value + a.value * b.second + a1[I] * b1[J] + a1[J] * b1[I]
    return _assemble(value, first, second, a.pairs)


def pointwise(fn: Callable[[Tensor], Tensor], jet: Jet) -> Jet:
    """The jet of y = fn(x) for a fixed, parameter-free, pointwise map (row n of y depends
    only on row n of x), e.g. a task's input features: fn's own first and second derivatives
    by autograd at the (detached) value, then the chain rule. Costs F (1 + D) small autograd
    calls for F outputs; the result is differentiable in the incoming jet."""
    x0 = jet.value.detach().requires_grad_(True)
    need2 = bool(jet.pairs)
    with torch.enable_grad():
        y = fn(x0)
        F_out, d = y.shape[1], x0.shape[1]
        grads, hess = [], []
        for f in range(F_out):
            (g,) = torch.autograd.grad(
                y[:, f].sum(), x0, create_graph=need2, allow_unused=True, materialize_grads=True
            )
            grads.append(g if need2 else g.detach())  # (N, d)
            if need2:
                rows = []
                for a in range(d):
                    if not g.requires_grad:
                        rows.append(torch.zeros_like(x0))
                        continue
                    (h,) = torch.autograd.grad(
                        g[:, a].sum(), x0, retain_graph=True, allow_unused=True,
                        materialize_grads=True,
                    )  # fmt: skip
                    rows.append(h.detach())
                hess.append(torch.stack(rows, 1))  # (N, d, d)
    J = torch.stack([g.detach() for g in grads], -1)  # (N, d, F)
    value = fn(jet.value)
    first = torch.einsum("knd,ndf->knf", jet.first, J)
    if not jet.pairs:
        return _assemble(value, first, None, jet.pairs)
    H = torch.stack(hess, -1)  # (N, d, d, F)
    I, Jdx = _pair_index(jet.pairs)
    x1 = jet.first
    second = torch.einsum("mnd,ndf->mnf", jet.second, J) + torch.einsum(
        "mna,nabf,mnb->mnf", x1[I], H, x1[Jdx]
    )
    return _assemble(value, first, second, jet.pairs)


# ----------------------------------------------------------------------------- activations
Derivs = tuple[Tensor, Tensor | None]  # f'(x), f''(x) (None: 0)


def _tanh(z: Tensor, t: Tensor) -> Derivs:
    d = 1 - t * t
    return d, -2 * t * d


def _sigmoid(z: Tensor, s: Tensor) -> Derivs:
    d = s * (1 - s)
    return d, d * (1 - 2 * s)


def _silu(z: Tensor, y: Tensor) -> Derivs:
    s = torch.sigmoid(z)
    d = s * (1 - s)
    return s + z * d, d * (2 + z * (1 - 2 * s))


def _sin(z: Tensor, y: Tensor) -> Derivs:
    return torch.cos(z), -y


def _relu(z: Tensor, y: Tensor) -> Derivs:
    return (z > 0).to(z.dtype), None


def _gelu(z: Tensor, y: Tensor) -> Derivs:
    phi = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return Phi + z * phi, phi * (2 - z * z)


def power_relu_derivatives(k: int) -> Callable[[Tensor, Tensor], Derivs]:
    """f = ReLU(z)^k (k = 0: the Heaviside step z >= 0): f', f''."""

    def rule(z: Tensor, y: Tensor) -> Derivs:
        r = torch.relu(z)
        d1 = k * r ** (k - 1) if k >= 1 else torch.zeros_like(z)
        d2 = k * (k - 1) * r ** (k - 2) if k >= 2 else None
        return d1, d2

    return rule


#: activation name -> (f' , f'') from (z, f(z)); a plain dict
ACTIVATIONS: dict[str, Callable[[Tensor, Tensor], Derivs]] = {
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "silu": _silu,
    "sin": _sin,
    "relu": _relu,
    "gelu": _gelu,
    **{f"power_relu{k}": power_relu_derivatives(k) for k in range(6)},
}


def activation(jet: Jet, name: str, fn: Callable[[Tensor], Tensor]) -> Jet:
    """y = fn(x) elementwise with the derivative rule ``ACTIVATIONS[name]``."""
    z = jet.value
    y = fn(z)
    d1, d2 = ACTIVATIONS[name](z, y)
    return elementwise(jet, y, d1, d2)


# ----------------------------------------------------------------------------- splines
def spline(jet: Jet, coef: Tensor, grid: Grid, kernel: str | None = None) -> Jet:
    """The jet of a spline layer y[b, q] = sum_p S_qp(clamp(x[b, p])) (module docstring).

    Args:
        jet: width P; coef: (Q, P, n + k) B-spline coefficients; kernel: as
            ``kernels.spline_contract`` ("autograd" is served by "dense": same function).
    Returns:
        width Q.
    """
    x = jet.value
    name = K.resolve_kernel(kernel, grid, x.device, x.dtype)
    kern = K.KERNELS["dense" if name == "autograd" else name]
    Q, P, nb = coef.shape
    N, D, M = x.shape[0], jet.num_directions, len(jet.pairs)
    a, b = grid.grid_range
    u = (clamp_to_grid(x, grid) - a) / grid.h  # exactly as kernels.spline_contract
    tab = coef.permute(1, 2, 0).reshape(P * nb, Q)

    def spec(order: int) -> K.LocalSpec:
        return K.local_spec(grid.grid_size, grid.degree, order, x.dtype, x.device)

    y0 = K._contract(None, u, tab, spec(0), kern)
    R = D + M
    if R == 0:
        return Jet(y0[None], jet.pairs)
    du = ((x >= a) & (x <= b)).to(x.dtype) / grid.h  # d u / d x (clamp: 0 outside)
    c1 = (jet.data[1:] * du).reshape(R * N, P)
    y1 = K._contract(c1, u.repeat(R, 1), tab, spec(1), kern).reshape(R, N, Q)
    if M == 0 or grid.degree < 2:
        return Jet(torch.cat([y0[None], y1]), jet.pairs)
    I, J = _pair_index(jet.pairs)
    f = jet.first * du
    c2 = (f[I] * f[J]).reshape(M * N, P)
    y2 = K._contract(c2, u.repeat(M, 1), tab, spec(2), kern).reshape(M, N, Q)
    return Jet(torch.cat([y0[None], y1[:D], y1[D:] + y2]), jet.pairs)


# ----------------------------------------------------------------------------- modules
def _spline_network(net: nn.Module, jet: Jet) -> Jet:
    assert isinstance(net, SplineNetwork)
    lo, hi = net.grid.grid_range
    jet = forward(net.input_map, jet)
    squash = _squash_rule(net.squash, lo, hi)
    if net.linear is not None:
        jet = squash(forward(net.linear, jet))
    for i, layer in enumerate(net.layers):
        if i > 0:
            jet = squash(jet)
        jet = forward(layer, jet)
    return jet if net.output_bias is None else add_to_value(jet, net.output_bias)


def _squash_rule(name: str | None, a: float, b: float) -> Callable[[Jet], Jet]:
    """The models' fixed squash onto [a, b] (``models._squash_fn``) as a jet map."""
    if name is None:
        return lambda jet: jet
    mid, half, width = (a + b) / 2, (b - a) / 2, b - a

    def tanh(jet: Jet) -> Jet:
        t = torch.tanh(jet.value)
        d1 = half * (1 - t * t)
        return elementwise(jet, mid + half * t, d1, -2 * t * d1)

    def sigmoid(jet: Jet) -> Jet:
        s = torch.sigmoid(jet.value)
        d1 = width * (s * (1 - s))
        return elementwise(jet, a + width * s, d1, d1 * (1 - 2 * s))

    rules = {"tanh": tanh, "sigmoid": sigmoid}
    if name not in rules:
        raise ValueError(f"no jet rule for squash {name!r}")
    return rules[name]


def _spline_layer(layer: nn.Module, jet: Jet) -> Jet:
    assert isinstance(layer, SplineLayer)
    return spline(jet, layer.spline_coefficients(), layer.grid)


def _input_map(m: nn.Module, jet: Jet) -> Jet:
    assert isinstance(m, InputMap)
    if m.domain is None:
        return jet
    return scale_shift(jet, m(jet.value), m.scale.to(jet.data.dtype))


def _linear(m: nn.Module, jet: Jet) -> Jet:
    assert isinstance(m, nn.Linear)
    return linear(jet, m.weight, m.bias)


def _sequential(m: nn.Module, jet: Jet) -> Jet:
    for child in m.children():
        jet = forward(child, jet)
    return jet


def _mlp(m: nn.Module, jet: Jet) -> Jet:
    assert isinstance(m, MLP)
    return forward(m.net, forward(m.input_map, jet))


def _act(name: str) -> Callable[[nn.Module, Jet], Jet]:
    return lambda m, jet: activation(jet, name, m)


class JetRule(NamedTuple):
    """``apply(module, jet) -> jet`` and ``parts(module)``: submodules that need rules too."""

    apply: Callable[[nn.Module, Jet], Jet]
    parts: Callable[[nn.Module], list[nn.Module]] = lambda m: []


def _network_parts(m: nn.Module) -> list[nn.Module]:
    assert isinstance(m, SplineNetwork)
    return [m.input_map, *([m.linear] if m.linear is not None else []), *m.layers]


#: module class -> rule (a plain dict); subclasses match unless they override ``forward``
JET_RULES: dict[type[nn.Module], JetRule] = {
    SplineNetwork: JetRule(_spline_network, _network_parts),
    MLP: JetRule(_mlp, lambda m: [m.input_map, m.net]),  # type: ignore[list-item]
    nn.Sequential: JetRule(_sequential, lambda m: list(m.children())),
    InputMap: JetRule(_input_map),
    nn.Linear: JetRule(_linear),
    BSplineLayer: JetRule(_spline_layer),
    PowerReLULayer: JetRule(_spline_layer),
    nn.Identity: JetRule(lambda m, jet: jet),
    nn.Tanh: JetRule(_act("tanh")),
    nn.Sigmoid: JetRule(_act("sigmoid")),
    nn.SiLU: JetRule(_act("silu")),
    nn.ReLU: JetRule(_act("relu")),
    nn.GELU: JetRule(_act("gelu")),
    _Sin: JetRule(_act("sin")),
}


def find_rule(m: nn.Module) -> JetRule | None:
    """The rule of m's class or of its nearest registered base whose ``forward`` it keeps."""
    for cls in type(m).__mro__:
        rule = JET_RULES.get(cls)  # type: ignore[arg-type]
        if rule is not None:
            if type(m).forward is not cls.forward:  # type: ignore[attr-defined]
                return None
            if isinstance(m, nn.GELU) and m.approximate != "none":
                return None
            if isinstance(m, SplineNetwork) and m.squash not in (None, "tanh", "sigmoid"):
                return None
            return rule
    return None


def supports(model: object) -> bool:
    """Whether ``forward(model, jet)`` has a rule for the model and every part of it."""
    if not isinstance(model, nn.Module):
        return False
    rule = find_rule(model)
    return rule is not None and all(supports(p) for p in rule.parts(model))


def forward(model: nn.Module, jet: Jet) -> Jet:
    """Push ``jet`` through ``model`` (see the module docstring); fails without a rule."""
    rule = find_rule(model)
    if rule is None:
        raise TypeError(f"no jet rule for {type(model).__name__}; check jets.supports first")
    return rule.apply(model, jet)


__all__ = [
    "ACTIVATIONS",
    "JET_RULES",
    "Jet",
    "JetRule",
    "activation",
    "add_to_value",
    "elementwise",
    "find_rule",
    "forward",
    "linear",
    "mul",
    "pointwise",
    "power_relu_derivatives",
    "scale_shift",
    "seed",
    "spline",
    "supports",
]
