"""The task contract: what the training engine needs from a problem.

A task owns its physical domain, its training points, its loss and its reference
solution. The engine never looks inside; it calls, in order::

    task.train_batch()                 -> dict of point tensors (float64, CPU), full batch
    task.make_state(batch)             -> dict of per-point state tensors (e.g. RBA weights)
    task.loss_terms(model, batch, state, update_state=True)
                                       -> dict of weighted loss terms; their sum is the loss
    task.evaluate(model)               -> dict of metrics on the evaluation grid

Contract details (every task module in ``tasks/`` follows them):

* ``domain``: the physical box, one (lo, hi) per input coordinate.
* ``features(x)``: physical coordinates (N, input_dim) -> network inputs (N, feature_dim)
  (identity by default; e.g. the level-set input (x, y, |x|)). ``feature_domain`` bounds
  them; models map ``feature_domain`` affinely onto their grid range (``input_domain``).
* Loss terms are **additive over point shards**: each term is a sum over its points of a
  per-point quantity, divided (if at all) by the *global* number of points of that set, so
  that under data parallelism the sum of the shard losses is the full loss. Every tensor in
  the batch (and in the state) has the points along dim 0 so the engine can shard it.
* ``reference(x)``: (N, input_dim) physical -> (N, output_dim) reference solution.
* ``evaluate(model)``: metrics on ``eval_points()``, never on training points. Keys without
  split prefix (the engine adds ``val/``, ``test/``): at least ``rel_l2``, ``max_abs``,
  ``mse``; PINNs add each loss component.
* ``kind``: "regression" or "pinn"; ``derivative_order``: highest input derivative the
  loss takes (0 for regression) - used by the work accounting.

Metadata (class attributes; leaderboards, tuning, plots and scoring read them from here,
through ``Task.metadata()``, which the bench also stores in every record):

* ``metric`` / ``metric_label``: the ``final_metrics`` key a run is ranked *and* tuned by
  (lower is better: ``direction = "minimize"``), ``extra_metrics``: columns beside it;
  ``metric_what``: one sentence on what it measures.
* ``target`` / ``target_source``: the time-to-target threshold on ``metric`` and where its
  trajectory comes from ("loss": the training loss of every step, which equals ``metric``;
  "eval": level-end and periodic evaluations plus the final metrics).
* ``display_name`` and ``paper_section`` (e.g. "5.3 (Table 3)"; None for other problems).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric


class RelativeL2(Metric):
    """Relative L2 error ||pred - target||_2 / ||target||_2 over all accumulated points.

    Example:
        >>> m = RelativeL2()
        >>> m.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
        >>> round(float(m.compute()), 6)
        0.707107
    """

    higher_is_better = False
    is_differentiable = True
    full_state_update = False
    err_sq: Tensor
    ref_sq: Tensor

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state(
            "err_sq", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "ref_sq", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        self.err_sq += ((preds - target).double() ** 2).sum()
        self.ref_sq += (target.double() ** 2).sum()

    def compute(self) -> Tensor:
        return torch.sqrt(self.err_sq / self.ref_sq)


def solution_metrics(pred: Tensor, ref: Tensor) -> dict[str, float]:
    """rel_l2, max_abs and mse of a prediction against the reference (same shape)."""
    rel = RelativeL2(sync_on_compute=False)  # local: callers may run on one rank of many
    rel.update(pred.detach().cpu(), ref.detach().cpu())
    err = (pred - ref).detach().double()
    return {
        "rel_l2": float(rel.compute()),
        "max_abs": float(err.abs().max()),
        "mse": float((err**2).mean()),
    }


def uniform_grid(domain: Sequence[Sequence[float]], points_per_dim: Sequence[int]) -> Tensor:
    """Tensor-product grid including the boundary: (prod(points_per_dim), len(domain))."""
    axes = [
        torch.linspace(lo, hi, n, dtype=torch.float64)
        for (lo, hi), n in zip(domain, points_per_dim)
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


class Task(abc.ABC):
    """Base class of every benchmark task (see the module docstring for the contract)."""

    name: ClassVar[str] = "task"
    kind: ClassVar[str] = "regression"
    derivative_order: ClassVar[int] = 0
    input_dim: int = 1
    output_dim: int = 1
    domain: list[tuple[float, float]] = []
    # -- metadata (see the module docstring) --
    display_name: ClassVar[str] = ""
    paper_section: ClassVar[str | None] = None
    metric: ClassVar[str] = "rel_l2"
    metric_label: ClassVar[str] = "relative L2 error"
    metric_what: ClassVar[str] = (
        "relative L2 error ||u - u_ref|| / ||u_ref|| on the task's evaluation grid "
        "(never the training points)"
    )
    extra_metrics: ClassVar[tuple[tuple[str, str], ...]] = (("max_abs", "max abs error"),)
    direction: ClassVar[str] = "minimize"
    target: ClassVar[float | None] = 1e-1
    target_source: ClassVar[str] = "eval"

    @classmethod
    def metadata(cls) -> dict:
        """The task's ranking metadata as JSON (stored in run records)."""
        return {
            "name": cls.name,
            "display_name": cls.display_name or cls.name,
            "kind": cls.kind,
            "paper_section": cls.paper_section,
            "metric": cls.metric,
            "metric_label": cls.metric_label,
            "metric_what": cls.metric_what,
            "extra_metrics": [list(m) for m in cls.extra_metrics],
            "direction": cls.direction,
            "target": cls.target,
            "target_source": cls.target_source,
        }

    @property
    def feature_dim(self) -> int:
        """Number of network inputs (input_dim unless ``features`` augments them)."""
        return self.input_dim

    @property
    def feature_domain(self) -> list[tuple[float, float]]:
        """Bounds of ``features(x)`` over ``domain``."""
        return list(self.domain)

    def features(self, x: Tensor) -> Tensor:
        """Physical coordinates (N, input_dim) -> network inputs (N, feature_dim)."""
        return x

    def predict(self, model: nn.Module | Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """Model output at physical points x: (N, output_dim)."""
        return model(self.features(x))

    @abc.abstractmethod
    def reference(self, x: Tensor) -> Tensor:
        """Reference solution at physical points: (N, input_dim) -> (N, output_dim)."""

    @abc.abstractmethod
    def train_batch(self) -> dict[str, Tensor]:
        """The full training batch: point tensors (points along dim 0), float64, CPU.

        Input point sets are keyed ``x`` or ``x_<set>`` (the work accounting counts their
        rows as points); targets (``y``) and index tensors may sit beside them."""

    def make_state(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-point training state (e.g. residual-based attention weights); none by default."""
        return {}

    @abc.abstractmethod
    def loss_terms(
        self,
        model: nn.Module,
        batch: dict[str, Tensor],
        state: dict[str, Tensor],
        update_state: bool = False,
    ) -> dict[str, Tensor]:
        """Weighted loss terms (additive over point shards); the loss is their sum."""

    @abc.abstractmethod
    def eval_points(self) -> Tensor:
        """Evaluation points (N, input_dim), float64, never the training points."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics on the evaluation grid (no split prefix)."""
        x = self.eval_points()
        p = next(iter(model.parameters()))
        x = x.to(device=p.device, dtype=p.dtype)
        with torch.no_grad():
            pred = self.predict(model, x)
        return solution_metrics(pred, self.reference(x).to(pred.dtype))

    def describe(self) -> dict:
        """JSON-able description (name, sizes, options) stored in run records."""
        return {"name": self.name, "kind": self.kind}
