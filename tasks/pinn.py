"""Shared pieces of the physics-informed tasks: input derivatives, residual-based
attention, point grids and the ``PINNTask`` base class.

Derivatives are taken with ``torch.autograd.grad(..., create_graph=True)`` with respect to
the *physical* coordinates: the model is called as ``task.predict(model, x)`` =
``model(task.features(x))``, so the chain rule through ``features`` (and through the
model's own affine input map onto its grid range) is part of the derivative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

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


def second_derivative(du: Tensor, x: Tensor, i: int, create_graph: bool = True) -> Tensor:
    """d/dx_i of a first derivative ``du`` (N,): (N,)."""
    return gradient(du, x, create_graph)[:, i]


def laplacian(u: Tensor, x: Tensor, create_graph: bool = True) -> Tensor:
    """Sum of the pure second derivatives of u (N, 1) with respect to x (N, d): (N,)."""
    g = gradient(u, x, create_graph=True)
    return sum(second_derivative(g[:, i], x, i, create_graph) for i in range(x.shape[1]))  # type: ignore[return-value]


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


# ----------------------------------------------------------------------------- attention
def _global_max(x: Tensor) -> Tensor:
    """max over the local tensor, all-reduced (MAX) across ranks when torch.distributed runs."""
    m = x.max() if x.numel() else torch.zeros((), dtype=x.dtype, device=x.device)
    if dist.is_available() and dist.is_initialized():
        m = m.clone()
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
    return m


class ResidualAttention:
    """Residual-based attention (RBA) weights on one point set (PAPER.md 5.2).

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

    _eval_x: Tensor
    _eval_ref: Tensor | None = None

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
