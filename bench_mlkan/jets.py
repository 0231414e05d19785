"""Forward jets: a model's value and its input derivatives (order <= 2) in one forward pass.

A PINN loss needs u, grad u and a few second derivatives of u with respect to 1-3 input
coordinates. Nested ``autograd.grad(create_graph=True)`` builds them by differentiating the
forward graph twice, and the loss's backward then differentiates *that* graph once more.
A jet instead carries, per point, the value and the wanted derivatives through the network
(forward mode, Taylor arithmetic to order 2), so the loss's backward is one ordinary reverse
pass.

A ``Jet`` of width W holds the value (N, W) and the derivative rows ``rest`` (D + M, N, W):
first the derivatives along D input directions, then the M second derivatives
d2/(dir_i dir_j) for ``pairs`` [(i, j), ...] (pure ones, and mixed ones only when asked).
The rules:

* affine / ``Linear`` y = x W^T + b: value and rows times W^T, the bias only in the value;
* elementwise y = f(x): y_i = f' x_i,  y_ij = f' x_ij + f'' x_i x_j;
* product y = a b: y_i = a_i b + a b_i,  y_ij = a_ij b + a_i b_j + a_j b_i + a b_ij;
* spline layer y = S(x) with u = (clamp(x) - a) / h and m = 1 inside [a, b] (ends
  included, 0 outside: clamping has zero derivative), using the kernels' contraction
  contract_d(c, u, T) = sum_{p, r} c[b, p] w^d_r(u[b, p]) T[row + r, q] (``kernels``)::

      y    = contract_0(1)
      y_i  = contract_1(x_i m / h)
      y_ij = contract_1(x_ij m / h) + contract_2(x_i x_j m / h^2)

Fast paths (CPU, float32/float64, the C kernels built; ``jets_c``): a spline layer is one
fused C call (each cell's power form, exact hand-written backward; a squash in front of it
applied inside the same call), the elementwise maps tanh, sigmoid, SiLU, sin and ReLU one C
call each way, and a squash on its own one autograd Function (value and rows; one C call for
both cotangents). Elsewhere (CUDA, no compiler, ``kernel`` other than "c") the same rules
run in PyTorch: the spline layer through ``kernels._contract`` with the multipliers of one
order stacked along the batch (u repeated), three contractions per layer.

Models: ``forward(model, jet)`` dispatches on module types through ``JET_RULES`` (a plain
dict; a module whose class overrides ``forward`` of the registered class is not matched):
``KAN`` / ``MultichannelMLP`` (input map, optional linear first layer, squash, spline layers
through ``spline_coefficients()`` - a ``PowerReLULayer`` with ``evaluation="relu"`` is jetted
in its B-spline form, the same function - and output bias), ``MLP``, ``nn.Sequential``,
``nn.Linear`` and the elementwise activations of ``ACTIVATIONS``. ``supports(model)`` says
whether every part has a rule; the PINN tasks fall back to nested autograd otherwise.

Values: on the PyTorch paths the same operations as the model's own forward (the jet's
value equals ``model(x)`` to the bit, except a ``PowerReLULayer`` evaluated literally); the C
spline kernel evaluates the same polynomials in power form, equal to round-off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import jets_c
from . import kernels as K
from .models import MLP, BSplineLayer, InputMap, PowerReLULayer, SplineLayer, SplineNetwork, _Sin
from .splines import Grid, clamp_to_grid

Pairs = tuple[tuple[int, int], ...]


# ----------------------------------------------------------------------------- the jet
@dataclass(frozen=True)
class Jet:
    """Value and input derivatives of a (N, W) quantity; see the module docstring.

    Attributes:
        value: (N, W).
        rest: (D + M, N, W): rows 0..D-1 the first derivatives along the D directions,
            row D + m the second derivative d2 / (dir_i dir_j) for (i, j) = pairs[m].
        num_directions: D.
        pairs: M pairs (i, j), i <= j < D.
    """

    value: Tensor
    rest: Tensor
    num_directions: int
    pairs: Pairs

    @property
    def first(self) -> Tensor:
        """(D, N, W) (a view of ``rest``)."""
        return self.rest[: self.num_directions]

    @property
    def second(self) -> Tensor:
        """(M, N, W) (a view of ``rest``)."""
        return self.rest[self.num_directions :]

    def replace(self, value: Tensor, rest: Tensor) -> Jet:
        """A jet with the same directions and pairs."""
        return Jet(value, rest, self.num_directions, self.pairs)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Jet:
        """``fn`` applied to the value and to the rows: for maps linear in the last
        dimension (column selection, fixed per-point combinations, ...)."""
        return self.replace(fn(self.value), fn(self.rest))

    def column(self, k: int) -> Jet:
        """Column k as a width-1 jet."""
        return self.map(lambda t: t[..., k : k + 1])


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
    rest = x.new_zeros(len(dirs) + len(P), N, d)
    for k, c in enumerate(dirs):
        rest[k, :, c] = 1
    return Jet(x, rest, len(dirs), P)


def _pad_second(jet: Jet, second: Tensor) -> Tensor:
    """(M, N, W) -> (D + M, N, W) with zero first-derivative rows (backward: a view)."""
    return F.pad(second, (0, 0, 0, 0, jet.num_directions, 0))


def _pair_products(jet: Jet, a: Tensor, b: Tensor) -> Tensor:
    """(M, N, W): a[i] * b[j] for the pairs (i, j) of the jet."""
    return torch.stack([a[i] * b[j] for i, j in jet.pairs])


# ----------------------------------------------------------------------------- basic rules
def elementwise(jet: Jet, value: Tensor, d1: Tensor, d2: Tensor | None) -> Jet:
    """y = f(x) with value f(x), f'(x), f''(x) (each (N, W); d2 None: f'' = 0)."""
    rest = d1 * jet.rest
    if d2 is not None and jet.pairs:
        rest = rest + _pad_second(jet, d2 * _pair_products(jet, jet.first, jet.first))
    return jet.replace(value, rest)


def scale_shift(jet: Jet, value: Tensor, scale: Tensor) -> Jet:
    """y = x * scale + shift (per column; ``value`` = y given): derivatives times scale."""
    return jet.replace(value, jet.rest * scale)


def add_to_value(jet: Jet, bias: Tensor) -> Jet:
    """y = x + bias (derivatives unchanged)."""
    return jet.replace(jet.value + bias, jet.rest)


def linear(jet: Jet, weight: Tensor, bias: Tensor | None = None) -> Jet:
    """y = x W^T + b: the value as ``F.linear`` computes it, the rows (one matmul) without
    the bias."""
    return jet.replace(F.linear(jet.value, weight, bias), jet.rest @ weight.T)


def mul(a: Jet, b: Jet) -> Jet:
    """Product of two jets with the same directions and pairs (widths broadcast)."""
    if a.pairs != b.pairs or a.num_directions != b.num_directions:
        raise ValueError("jets of a product need the same directions and pairs")
    rest = a.rest * b.value + a.value * b.rest
    if a.pairs:
        cross = _pair_products(a, a.first, b.first) + _pair_products(a, b.first, a.first)
        rest = rest + _pad_second(a, cross)
    return a.replace(a.value * b.value, rest)


def pointwise(fn: Callable[[Tensor], Tensor], jet: Jet) -> Jet:
    """The jet of y = fn(x) for a fixed, parameter-free, pointwise map (row n of y depends
    only on row n of x), e.g. a task's input features: fn's own first and second derivatives
    by autograd at the (detached) value, then the chain rule. Costs F (1 + d) small autograd
    calls for F outputs and d inputs; the result is differentiable in the incoming jet."""
    x0 = jet.value.detach().requires_grad_(True)
    need2 = bool(jet.pairs)
    grads, hess = [], []
    with torch.enable_grad():
        y = fn(x0)
        d = x0.shape[1]
        for f in range(y.shape[1]):
            (g,) = torch.autograd.grad(
                y[:, f].sum(), x0, create_graph=need2, allow_unused=True, materialize_grads=True
            )
            grads.append(g.detach())  # (N, d)
            if need2:
                rows = []
                for a in range(d):
                    if not g.requires_grad:  # fn is affine in x
                        rows.append(torch.zeros_like(x0))
                        continue
                    (h,) = torch.autograd.grad(
                        g[:, a].sum(), x0, retain_graph=True, allow_unused=True,
                        materialize_grads=True,
                    )  # fmt: skip
                    rows.append(h.detach())
                hess.append(torch.stack(rows, 1))  # (N, d, d)
    J = torch.stack(grads, -1)  # (N, d, F)
    rest = torch.einsum("rnd,ndf->rnf", jet.rest, J).contiguous()
    if need2:
        H = torch.stack(hess, -1)  # (N, d, d, F)
        x1 = jet.first
        curv = torch.stack([torch.einsum("na,nabf,nb->nf", x1[i], H, x1[j]) for i, j in jet.pairs])
        rest = rest + _pad_second(jet, curv)
    return jet.replace(fn(jet.value), rest)


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
    """f = ReLU(z)^k (k = 0: the Heaviside step z >= 0): f', f'' (0 where z <= 0)."""

    def rule(z: Tensor, y: Tensor) -> Derivs:
        r, on = torch.relu(z), (z > 0).to(z.dtype)
        d1 = k * r ** (k - 1) * on if k >= 1 else torch.zeros_like(z)
        d2 = k * (k - 1) * r ** (k - 2) * on if k >= 2 else None
        return d1, d2

    return rule


#: activation name -> (f', f'') from (z, f(z)); a plain dict
ACTIVATIONS: dict[str, Callable[[Tensor, Tensor], Derivs]] = {
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "silu": _silu,
    "sin": _sin,
    "relu": _relu,
    "gelu": _gelu,
    **{f"power_relu{k}": power_relu_derivatives(k) for k in range(6)},
}


class ActivationJetFunction(torch.autograd.Function):
    """Derivative rows (R, N, W) of y = scale * f(z) from the input rows X (R, N, W): the
    C kernel ``jets_c`` (``act_forward``); aux: f's torch-computed auxiliaries (detached).
    Once differentiable (exact hand-written backward)."""

    @staticmethod
    def forward(ctx, z, X, kind, scale, aux, D, pairs):  # type: ignore[override]
        kern = jets_c.load()
        assert kern is not None
        # tanh, sigmoid and sin read only their auxiliaries (f(z) is kept by torch anyway)
        keep_z = kind in ("silu", "relu")
        ctx.save_for_backward(z if keep_z else None, X, *[a for a in aux if a is not None])
        ctx.meta = (kern, kind, scale, [a is not None for a in aux], D, pairs)
        return kern.act_forward(kind, scale, z, aux, X, D, pairs)

    @staticmethod
    @once_differentiable
    def backward(ctx, gY):  # type: ignore[override]
        kern, kind, scale, present, D, pairs = ctx.meta
        z, X, *saved = ctx.saved_tensors
        it = iter(saved)
        aux = [next(it) if p else None for p in present]
        z = aux[0] if z is None else z  # not read by the kernel for these kinds
        gz, gX = kern.act_backward(kind, scale, z, aux, X, gY, D, pairs, ctx.needs_input_grad[:2])
        return gz, gX, None, None, None, None, None


class SquashJetFunction(torch.autograd.Function):
    """(value (N, W), rows (R, N, W)) of the squash y = shift + scale f(z), f = tanh or
    sigmoid, from z and the input rows X (R, N, W): f(z) by torch, the rows by the C kernel
    ``jets_c`` (``act_forward``); the backward is one C call for the value's and the rows'
    cotangents together. Once differentiable."""

    @staticmethod
    def forward(ctx, z, X, kind, shift, scale, D, pairs):  # type: ignore[override]
        kern = jets_c.load()
        assert kern is not None
        base = torch.tanh(z) if kind == "tanh" else torch.sigmoid(z)
        ctx.save_for_backward(X, base)
        ctx.meta = (kern, kind, scale, D, pairs)
        return base * scale + shift, kern.act_forward(kind, scale, z, [base, None], X, D, pairs)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_value, g_rest):  # type: ignore[override]
        kern, kind, scale, D, pairs = ctx.meta
        X, base = ctx.saved_tensors
        if g_rest is None:
            g_rest = torch.zeros_like(X)
        gz, gX = kern.act_backward(
            kind, scale, base, [base, None], X, g_rest, D, pairs, ctx.needs_input_grad[:2],
            value_grad=g_value,
        )  # fmt: skip
        return gz, gX, None, None, None, None, None


def _fast(t: Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)


def _activation_c(jet: Jet, kind: str, scale: float, z: Tensor, aux: list[Tensor | None]):
    """The rows of scale * f(z) through the C kernel, or None where it cannot run."""
    R = jet.rest.shape[0]
    if R == 0 or not _fast(z) or jets_c.load() is None or R + 1 > jets_c.RMAX:
        return None
    aux = [None if a is None else a.detach().contiguous() for a in aux]
    return ActivationJetFunction.apply(
        z.contiguous(), jet.rest.contiguous(), kind, scale, aux, jet.num_directions, jet.pairs
    )


def _c_aux(name: str, z: Tensor, y: Tensor) -> list[Tensor | None] | None:
    """The C kernel's auxiliaries of activation ``name`` at z (value y); None: no C kind."""
    if name in ("tanh", "sigmoid"):
        return [y, None]
    if name == "silu":
        return [torch.sigmoid(z), None]
    if name == "sin":
        return [torch.cos(z), y]
    if name == "relu":
        return [None, None]
    return None


def activation(jet: Jet, name: str, fn: Callable[[Tensor], Tensor]) -> Jet:
    """y = fn(x) elementwise with the derivative rule ``ACTIVATIONS[name]`` (fused C kernel
    for tanh, sigmoid, silu, sin, relu where available)."""
    z = jet.value
    y = fn(z)
    aux = _c_aux(name, z, y) if _fast(z) else None
    rest = None if aux is None else _activation_c(jet, name, 1.0, z, aux)
    if rest is not None:
        return jet.replace(y, rest)
    d1, d2 = ACTIVATIONS[name](z, y)
    return elementwise(jet, y, d1, d2)


def _squash_shift_scale(name: str, a: float, b: float) -> tuple[float, float]:
    """(shift, scale) of the squash onto [a, b]: shift + scale f(z)."""
    return ((a + b) / 2, (b - a) / 2) if name == "tanh" else (a, b - a)


def squash(jet: Jet, name: str | None, a: float, b: float) -> Jet:
    """The models' fixed squash onto [a, b] (``models._squash_fn``): mid + half tanh(z)
    or a + (b - a) sigmoid(z); None: identity."""
    if name is None:
        return jet
    if name not in ("tanh", "sigmoid"):
        raise ValueError(f"no jet rule for squash {name!r}")
    z = jet.value
    shift, scale = _squash_shift_scale(name, a, b)
    R = jet.rest.shape[0]
    if _fast(z) and 1 <= R <= jets_c.RMAX - 1 and jets_c.load() is not None:
        value, rest = SquashJetFunction.apply(
            z.contiguous(), jet.rest.contiguous(), name, shift, scale, jet.num_directions,
            jet.pairs,
        )  # fmt: skip
        return jet.replace(value, rest)
    base = torch.tanh(z) if name == "tanh" else torch.sigmoid(z)
    value = shift + scale * base
    d1, d2 = ACTIVATIONS[name](z, base)
    return elementwise(jet, value, scale * d1, None if d2 is None else scale * d2)


# ----------------------------------------------------------------------------- splines
class SplineJetFunction(torch.autograd.Function):
    """(value (N, Q), rows (R, N, Q)) of a spline layer from its inputs x (N, P), their rows
    X (R, N, P) and the table (P (n + k), Q): the fused C kernel of ``jets_c`` (clamping,
    u = (clamp(x) - a) / h and du/dx inside). Once differentiable (its backward is the
    kernel's exact gradient)."""

    @staticmethod
    def forward(ctx, x, X, tab, grid, D, pairs, squash=None):  # type: ignore[override]
        kern = jets_c.load()
        assert kern is not None
        if squash is not None:  # x is z: the kernel applies shift + scale f(z) and its jet
            x = torch.tanh(x) if squash[0] == "tanh" else torch.sigmoid(x)
        ctx.save_for_backward(x, X, tab)
        ctx.meta = (kern, grid, D, pairs, squash)
        Y = kern.forward(x, X, tab, grid, D, pairs, squash)
        return Y[0], Y[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, g_value, g_rest):  # type: ignore[override]
        x, X, tab = ctx.saved_tensors
        kern, grid, D, pairs, squash = ctx.meta
        needs = ctx.needs_input_grad[:3]
        gx, gX, gt = kern.backward(x, X, tab, g_value, g_rest, grid, D, pairs, needs, squash)
        return gx, gX, gt, None, None, None, None


def spline(
    jet: Jet,
    coef: Tensor,
    grid: Grid,
    kernel: str | None = None,
    squash_first: tuple[str | None, float, float] | None = None,
) -> Jet:
    """The jet of a spline layer y[b, q] = sum_p S_qp(clamp(x[b, p])) (module docstring).

    Runs the fused C kernel (``jets_c``) when ``kernel`` resolves to "c" and it is built,
    else the ``kernels`` maps of that kernel ("autograd" is served by "dense").

    Args:
        jet: width P; coef: (Q, P, n + k) B-spline coefficients; kernel: as
            ``kernels.spline_contract``; squash_first: (name, a, b) of a ``squash`` to apply
            to the jet first (the C kernel applies it inside, without materialising it).
    Returns:
        width Q.
    """
    x = jet.value
    name = K.resolve_kernel(kernel, grid, x.device, x.dtype)
    Q, P, nb = coef.shape
    R = jet.rest.shape[0]
    tab = coef.permute(1, 2, 0).reshape(P * nb, Q)
    fused = (
        name == "c"
        and _fast(x)
        and 1 <= R <= jets_c.RMAX - 1
        and grid.degree < jets_c.KMAX
        and jets_c.load() is not None
    )
    sq = None
    if squash_first is not None and squash_first[0] is not None:
        sq_name, lo, hi = squash_first
        if not fused or sq_name not in jets_c.SQUASH_KINDS:
            return spline(squash(jet, sq_name, lo, hi), coef, grid, kernel)
        sq = (sq_name, *_squash_shift_scale(sq_name, lo, hi))
    if fused:
        value, rest = SplineJetFunction.apply(
            x.contiguous(), jet.rest.contiguous(), tab.contiguous(), grid, jet.num_directions,
            jet.pairs, sq,
        )  # fmt: skip
        return jet.replace(value, rest)
    a, b = grid.grid_range
    u = (clamp_to_grid(x, grid) - a) / grid.h  # exactly as kernels.spline_contract
    kern = K.KERNELS["dense" if name == "autograd" else name]
    if R == 0:
        spec = K.local_spec(grid.grid_size, grid.degree, 0, x.dtype, x.device)
        return jet.replace(K._contract(None, u, tab, spec, kern), x.new_zeros(0, x.shape[0], Q))
    du = ((x >= a) & (x <= b)).to(x.dtype) / grid.h  # d u / d x (clamp: 0 outside)
    return _spline_by_maps(jet, u, jet.rest * du, tab, grid, kern)


def _spline_by_maps(jet: Jet, u: Tensor, C: Tensor, tab: Tensor, grid: Grid, kern) -> Jet:
    """``spline`` through the kernels' contract_0/1/2 (u repeated per stacked row)."""
    N, P = u.shape
    R, M = jet.rest.shape[0], len(jet.pairs)

    def contract(order: int, c: Tensor | None, copies: int) -> Tensor:
        spec = K.local_spec(grid.grid_size, grid.degree, order, u.dtype, u.device)
        return K._contract(c, u if copies == 1 else u.repeat(copies, 1), tab, spec, kern)

    value = contract(0, None, 1)
    rest = contract(1, C.reshape(R * N, P), R).reshape(R, N, -1)
    if M and grid.degree >= 2:
        c2 = _pair_products(jet, C, C).reshape(M * N, P)
        rest = rest + _pad_second(jet, contract(2, c2, M).reshape(M, N, -1))
    return jet.replace(value, rest)


# ----------------------------------------------------------------------------- modules
def _spline_network(net: nn.Module, jet: Jet) -> Jet:
    assert isinstance(net, SplineNetwork)
    lo, hi = net.grid.grid_range
    jet = forward(net.input_map, jet)
    if net.linear is not None:  # a linear first layer is always followed by a spline layer
        jet = forward(net.linear, jet)
    for i, layer in enumerate(net.layers):
        squashed = i > 0 or net.linear is not None  # a squash in front of this layer
        if squashed and getattr(find_rule(layer), "apply", None) is _spline_layer:
            # the squash goes into the spline layer's kernel (no squash jet in memory)
            assert isinstance(layer, SplineLayer)
            jet = spline(jet, layer.spline_coefficients(), layer.grid,
                         squash_first=(net.squash, lo, hi))  # fmt: skip
            continue
        if squashed:
            jet = squash(jet, net.squash, lo, hi)
        jet = forward(layer, jet)
    return jet if net.output_bias is None else add_to_value(jet, net.output_bias)


def _spline_layer(layer: nn.Module, jet: Jet) -> Jet:
    assert isinstance(layer, SplineLayer)
    return spline(jet, layer.spline_coefficients(), layer.grid)


def _input_map(m: nn.Module, jet: Jet) -> Jet:
    assert isinstance(m, InputMap)
    if m.domain is None:
        return jet
    return scale_shift(jet, m(jet.value), m.scale.to(jet.value.dtype))


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


def _mlp_parts(m: nn.Module) -> list[nn.Module]:
    assert isinstance(m, MLP)
    return [m.input_map, m.net]


#: module class -> rule (a plain dict); subclasses match unless they override ``forward``
JET_RULES: dict[type[nn.Module], JetRule] = {
    SplineNetwork: JetRule(_spline_network, _network_parts),
    MLP: JetRule(_mlp, _mlp_parts),
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
    "ActivationJetFunction",
    "Jet",
    "JetRule",
    "SplineJetFunction",
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
    "squash",
    "supports",
]
