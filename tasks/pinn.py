"""Shared pieces of the physics-informed tasks: the input-derivative API, residual-based
attention, point grids and the ``PINNTask`` base class.

Input derivatives: every PINN task asks ``derivatives(task, model, x, want)`` for what its
loss needs, named in the task's physical coordinates (``task.coordinates``, e.g. ("x", "t")):
"u", "u_x", "u_t", "u_xx", a mixed "u_xy", or "laplacian" (the pure second derivatives
summed over every coordinate except "t"). The model is evaluated as ``task.predict(model,
x)`` = ``task.output_transform(x, model(task.features(x)))``, and the chain rule through the
features, the output transform and the model's own affine input map is part of every
derivative. Two routes compute the same numbers (to round-off):

* ``"jet"`` (the default): one forward pass of a ``bench_mlkan.jets.Jet`` (value, first
  derivatives, the asked second derivatives) through the features (``features_jet``), the
  model (``jets.forward``) and the output transform (``output_jet``); the loss's backward
  is then one ordinary reverse pass. Used when ``jets.supports(model)`` and the task does not
  override ``predict`` itself; otherwise the autograd route runs.
* ``"autograd"``: nested ``torch.autograd.grad(..., create_graph=True)`` (the reference).

Choose with ``route=``, ``set_derivative_route``/``use_derivative_route`` or the environment
variable ``BENCH_MLKAN_DERIVATIVES=jet|autograd``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bench_mlkan import jets
from bench_mlkan.jets import Jet
from bench_mlkan.task import Task, solution_metrics


# ----------------------------------------------------------------------------- derivatives
def gradient(y: Tensor, x: Tensor, create_graph: bool = True) -> Tensor:
    """d(sum y)/dx: for y (N,) or (N, 1) computed pointwise from x (N, d), the (N, d)
    gradient of each y_i with respect to its own x_i. Zero where y does not depend on x."""
    (g,) = torch.autograd.grad(
        y,
        x,
        grad_outputs=torch.ones_like(y),
        create_graph=create_graph,
        allow_unused=True,
    )
    return torch.zeros_like(x) if g is None else g


def model_placement(model: nn.Module | Callable, like: Tensor) -> tuple[torch.dtype, torch.device]:
    """(dtype, device) of the model's parameters; ``like``'s when it has none."""
    params = model.parameters() if isinstance(model, nn.Module) else iter(())
    p = next(iter(params), None)
    return (like.dtype, like.device) if p is None else (p.dtype, p.device)


def as_input(t: Tensor, model: nn.Module | Callable, requires_grad: bool = False) -> Tensor:
    """Points ``t`` in the model's dtype/device, a fresh leaf (optionally requiring grad)."""
    dtype, device = model_placement(model, t)
    out = t.detach().to(dtype=dtype, device=device)
    return out.requires_grad_(True) if requires_grad else out


# ----------------------------------------------------------------------------- routes
DERIVATIVE_ROUTES = ("jet", "autograd")
ROUTE_ENV = "BENCH_MLKAN_DERIVATIVES"
_route: str | None = None


def _check_route(name: str) -> str:
    if name not in DERIVATIVE_ROUTES:
        raise ValueError(f"unknown derivative route {name!r}; known: {list(DERIVATIVE_ROUTES)}")
    return name


def derivative_route() -> str:
    """The route in force: ``set_derivative_route``'s, else ``$BENCH_MLKAN_DERIVATIVES``,
    else "jet"."""
    return _check_route(_route or os.environ.get(ROUTE_ENV) or "jet")


def set_derivative_route(name: str | None) -> None:
    """Fix the route for this process (None: back to the environment variable / default)."""
    global _route
    _route = None if name is None else _check_route(name)


@contextlib.contextmanager
def use_derivative_route(name: str | None) -> Iterator[None]:
    """``set_derivative_route(name)`` inside the block only."""
    global _route
    old = _route
    set_derivative_route(name)
    try:
        yield
    finally:
        _route = old


class FeatureMap(Protocol):
    """Network inputs from physical points (N, d) -> (N, F), and the same map on jets."""

    def __call__(self, x: Tensor) -> Tensor: ...

    def jet(self, x: Jet) -> Jet: ...


# ----------------------------------------------------------------------------- requests
#: recipe of one asked name: ("u" | "first" | "second", coordinate indices / pairs)
Recipe = tuple[str, list]


def plan_derivatives(
    coordinates: Sequence[str], want: Sequence[str]
) -> tuple[list[int], list[tuple[int, int]], dict[str, Recipe]]:
    """What ``want`` needs: the coordinates with first derivatives (sorted), the coordinate
    pairs (i <= j) with second derivatives (sorted), and a recipe per name."""
    coords = list(coordinates)
    recipes: dict[str, Recipe] = {}
    for name in want:
        if name == "u":
            recipes[name] = ("u", [])
            continue
        if name == "laplacian":
            recipes[name] = ("second", [(c, c) for c, n in enumerate(coords) if n != "t"])
            continue
        m = re.fullmatch(r"u_([a-z])([a-z])?", name)
        if m is None or any(g is not None and g not in coords for g in m.groups()):
            raise ValueError(
                f"unknown derivative {name!r}; ask for 'u', 'laplacian' or u_<c>, u_<c><c> "
                f"with coordinates {coords}"
            )
        i = coords.index(m.group(1))
        if m.group(2) is None:
            recipes[name] = ("first", [i])
        else:
            j = coords.index(m.group(2))
            recipes[name] = ("second", [(min(i, j), max(i, j))])
    pairs = sorted({p for kind, ps in recipes.values() if kind == "second" for p in ps})
    firsts = {c for kind, cs in recipes.values() if kind == "first" for c in cs}
    directions = sorted(firsts | {c for p in pairs for c in p})
    return directions, pairs, recipes


def _defined_in(cls: type, attr: str) -> type:
    return next(c for c in cls.__mro__ if attr in vars(c))


def _jet_maps(task: PINNTask) -> tuple[Callable[[Jet], Jet], Callable[[Jet, Jet], Jet]] | None:
    """(features on jets, output transform on jets) of the task; None when its prediction
    cannot be jetted (``predict`` overridden, or ``output_transform`` overridden below its
    ``output_jet``). Features overridden below their ``features_jet`` are jetted generically
    (``jets.pointwise``)."""
    cls = type(task)
    if _defined_in(cls, "predict") is not PINNTask:
        return None
    if not issubclass(_defined_in(cls, "output_jet"), _defined_in(cls, "output_transform")):
        return None
    feats = _defined_in(cls, "features")
    if issubclass(_defined_in(cls, "features_jet"), feats) or feats is Task:
        return task.features_jet, task.output_jet
    return (lambda xj: jets.pointwise(task.features, xj)), task.output_jet


def derivatives(
    task: PINNTask,
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    want: Sequence[str],
    *,
    features: FeatureMap | None = None,
    route: str | None = None,
) -> dict[str, Tensor]:
    """The prediction and its derivatives in the task's physical coordinates.

    Args:
        task: the PINN task (its ``coordinates``, ``features``, ``output_transform``).
        model: network (N, F) -> (N, 1), or any callable (then the autograd route).
        x: (N, d) physical points (any dtype/device: moved to the model's; no grad needed).
        want: names, e.g. ("u", "u_t", "u_x", "u_xx"); see the module docstring.
        features: another feature map than the task's (e.g. one side of an interface).
        route: "jet" / "autograd" (default ``derivative_route()``); "jet" falls back to
            autograd where the model or the task has no jet rule.
    Returns:
        name -> (N,) tensor, differentiable in the model's parameters.
    """
    directions, pairs, recipes = plan_derivatives(task.coordinates, want)
    route = _check_route(route) if route is not None else derivative_route()
    maps = _jet_maps(task) if route == "jet" and jets.supports(model) else None
    if maps is not None:
        rows = _jet_rows(task, model, x, directions, pairs, features, maps)
    else:
        rows = _autograd_rows(task, model, x, directions, pairs, features)
    out: dict[str, Tensor] = {}
    for name, (kind, parts) in recipes.items():
        if kind == "u":
            out[name] = rows["u"]
        elif kind == "first":
            out[name] = rows[parts[0]]
        else:
            out[name] = functools.reduce(torch.add, [rows[p] for p in parts])
    return out


def derivatives_with_values(
    task: PINNTask,
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    want: Sequence[str],
    others: Sequence[Tensor],
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """``derivatives(task, model, x, want)`` and the prediction u (N_i,) at each point set of
    ``others``, in one pass over the concatenated points: one model evaluation (and one
    backward) instead of one per set, for the price of the derivative rows at the few
    extra points. ``want`` must contain "u"."""
    if "u" not in want:
        raise ValueError(f"derivatives_with_values needs 'u' among {list(want)}")
    xs = [as_input(t, model) for t in (x, *others)]
    d = derivatives(task, model, torch.cat(xs), want)
    sizes = [t.shape[0] for t in xs]
    parts = {name: v.split(sizes) for name, v in d.items()}
    return {name: p[0] for name, p in parts.items()}, list(parts["u"][1:])


def _jet_rows(task, model, x, directions, pairs, features, maps) -> dict:
    features_jet, output_jet = maps
    if features is not None:
        features_jet = features.jet
    xv = as_input(x, model)
    pos = {c: k for k, c in enumerate(directions)}
    xj = jets.seed(xv, directions, [(pos[i], pos[j]) for i, j in pairs])
    uj = output_jet(xj, jets.forward(model, features_jet(xj)))
    if uj.value.shape[-1] != 1:
        raise ValueError(f"derivatives() needs a scalar output, got width {uj.value.shape[-1]}")
    rest = uj.rest[..., 0].unbind(0)  # one node: its backward is one stack
    rows: dict = {"u": uj.value[:, 0]}
    rows.update(zip(directions, rest))
    rows.update(zip(pairs, rest[len(directions) :]))
    return rows


def _autograd_rows(task, model, x, directions, pairs, features) -> dict:
    xv = as_input(x, model, requires_grad=bool(directions))
    if features is None:
        u = task.predict(model, xv)
    else:
        u = task.output_transform(xv, model(features(xv)))
    if u.shape[-1] != 1:
        raise ValueError(f"derivatives() needs a scalar output, got width {u.shape[-1]}")
    rows: dict = {"u": u[:, 0]}
    if directions:
        g = gradient(u, xv)
        rows.update({c: g[:, c] for c in directions})
        for i in sorted({i for i, _ in pairs}):
            h = gradient(g[:, i], xv)
            rows.update({(a, b): h[:, b] for a, b in pairs if a == i})
    return rows


# ----------------------------------------------------------------------------- attention
def _global_max(x: Tensor) -> Tensor:
    """max over the local tensor, all-reduced (MAX) across ranks when torch.distributed runs."""
    m = x.max() if x.numel() else torch.zeros((), dtype=x.dtype, device=x.device)
    if dist.is_available() and dist.is_initialized():
        m = m.clone()
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
    return m


class ResidualAttention:
    """Residual-based attention (RBA) weights on one point set (METHOD.md 5.2).

    lambda_i starts at 1; with ``update``: lambda_i <- (1 - mu) lambda_i + mu |r_i| / max_j |r_j|
    (the max over *all* points: all-reduced when torch.distributed is initialized), and the
    loss uses the updated (detached) lambda_i as (lambda_i r_i)^2.

    The weights live in the task state under ``state_key`` (points along dim 0) and are
    updated in place. Two layouts work: the state sharded like the batch (same length as
    the residual; the engine's ``v[rank::world]``), or the full state with the batch's global
    point indices ``batch[index_key]`` selecting the shard's entries.
    """

    def __init__(self, state_key: str, index_key: str, mu: float = 1e-4):
        if not 0.0 <= mu <= 1.0:
            raise ValueError(f"RBA mu must lie in [0, 1], got {mu}")
        self.state_key, self.index_key, self.mu = state_key, index_key, mu

    def init_state(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        n = batch[self.index_key].shape[0]
        return {self.state_key: torch.ones(n, dtype=torch.float64)}

    def weights(
        self, state: dict[str, Tensor], batch: dict[str, Tensor], residual: Tensor, update: bool
    ) -> Tensor:
        """The (detached) lambda of the batch's points, after the update if ``update``."""
        lam = state[self.state_key]
        r = residual.detach().reshape(-1)
        local = lam.shape[0] == r.shape[0]
        idx = None if local else batch[self.index_key].to(lam.device)
        if update:
            with torch.no_grad():
                a = r.abs().to(lam.dtype).to(lam.device)
                m = _global_max(a).clamp_min(torch.finfo(a.dtype).tiny)
                if local:
                    lam.mul_(1.0 - self.mu).add_(self.mu * a / m)
                else:
                    lam[idx] = (1.0 - self.mu) * lam[idx] + self.mu * a / m
        w = lam if local else lam[idx]
        return w.detach().to(dtype=residual.dtype, device=residual.device)


# ----------------------------------------------------------------------------- point sets
def cell_centred_grid(domain: Sequence[Sequence[float]], cells_per_dim: Sequence[int]) -> Tensor:
    """Tensor grid of cell centres (no boundary points): (prod(cells_per_dim), len(domain))."""
    axes = []
    for (lo, hi), n in zip(domain, cells_per_dim):
        h = (hi - lo) / n
        axes.append(lo + h * (torch.arange(n, dtype=torch.float64) + 0.5))
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def node_axis(lo: float, hi: float, n: int) -> Tensor:
    """n equispaced nodes lo + (hi - lo) i / (n - 1), ends included (the midpoint of a
    symmetric interval is exactly 0, unlike ``torch.linspace``)."""
    i = torch.arange(n, dtype=torch.float64)
    return lo + (hi - lo) * i / (n - 1) if n > 1 else torch.tensor([lo], dtype=torch.float64)


def square_grid_sets(n: int, lo: float = -1.0, hi: float = 1.0) -> tuple[Tensor, Tensor]:
    """An n x n node grid (ends included) on [lo, hi]^2 split into ((n-2)^2 interior,
    4(n-1) boundary) points, float64."""
    if n < 3:
        raise ValueError(f"points_per_dim must be >= 3, got {n}")
    ax = node_axis(lo, hi, n)
    X, Y = torch.meshgrid(ax, ax, indexing="ij")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=-1)
    on_boundary = (pts[:, 0] == lo) | (pts[:, 0] == hi) | (pts[:, 1] == lo) | (pts[:, 1] == hi)
    return pts[~on_boundary], pts[on_boundary]


def resolve_size(cls_name: str, sizes: dict[str, dict], size: str) -> dict:
    """The point counts of a named size (fails listing the known sizes)."""
    if size not in sizes:
        raise ValueError(f"{cls_name}: unknown size {size!r}; known: {sorted(sizes)}")
    return dict(sizes[size])


# ----------------------------------------------------------------------------- base class
class PINNTask(Task):
    """Base of the physics-informed tasks (see ``bench_mlkan.task`` for the contract).

    Subclasses set ``domain``, build their point sets and eval points in ``__init__``,
    and implement ``reference`` and ``loss_terms``. ``evaluate`` reports the solution
    metrics on ``eval_points()`` (reference values cached) plus every loss component on
    the training sets as ``loss_<term>`` and their sum ``loss``.

    Warning: ``evaluate`` computes the loss components with a fresh state (attention
    weights lambda = 1), so they are the plain weighted losses, comparable across models
    and runs, not the attention-weighted training loss.
    """

    kind: ClassVar[str] = "pinn"
    derivative_order: ClassVar[int] = 2
    SIZES: ClassVar[dict[str, dict]] = {}
    #: single-letter names of the physical input coordinates (``derivatives`` names)
    coordinates: ClassVar[tuple[str, ...]] = ("x", "y")

    _eval_x: Tensor
    _eval_ref: Tensor | None = None

    # -- prediction = output_transform(x, model(features(x))) ----------------------------
    def predict(self, model: nn.Module | Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        return self.output_transform(x, model(self.features(x)))

    def output_transform(self, x: Tensor, out: Tensor) -> Tensor:
        """The prediction from the network output ``out`` (N, 1) at physical points x
        (identity; e.g. a built-in boundary condition). Override with ``output_jet``."""
        return out

    def output_jet(self, x: Jet, out: Jet) -> Jet:
        """``output_transform`` on jets: x the physical points' jet, out the network's."""
        return out

    def features_jet(self, x: Jet) -> Jet:
        """``features`` on a jet of physical points. Default: identity features pass it
        through; other features are jetted generically (``jets.pointwise``: autograd on the
        features alone, which must be pointwise and free of trainable parameters)."""
        if _defined_in(type(self), "features") is Task:
            return x
        return jets.pointwise(self.features, x)

    def eval_points(self) -> Tensor:
        return self._eval_x

    def eval_reference(self) -> Tensor:
        """Reference values on ``eval_points()`` (computed once, float64)."""
        if self._eval_ref is None:
            self._eval_ref = self.reference(self._eval_x).double()
        return self._eval_ref

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        x = self.eval_points()
        dtype, device = model_placement(model, x)
        with torch.no_grad():
            pred = self.predict(model, x.to(dtype=dtype, device=device))
        out = solution_metrics(pred, self.eval_reference().to(dtype=pred.dtype, device=pred.device))
        batch = self.train_batch()
        with torch.enable_grad():
            terms = self.loss_terms(model, batch, self.make_state(batch), update_state=False)
        for k, v in terms.items():
            out[f"loss_{k}"] = float(v.detach())
        out["loss"] = float(sum(float(v.detach()) for v in terms.values()))
        return out
