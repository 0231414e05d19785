"""Work accounting: the cost of one training step, in a documented unit.

Three cost models (``COST_MODELS``); every run records the work in all three, and matches
budgets in the one its config names.

``paper`` - unit "coarse steps": one optimizer step (one epoch, full batch) of a spline
    model costs grid_size / base_grid_size, i.e. 2^level on a dyadic hierarchy (the paper,
    "cost per step proportional to the level's size"). A model without a grid
    (MLP) costs 1 per step. The paper's regression budgets {128,0,0,0}, {0,0,0,16} and
    {32,16,8,4} all come to 128.

``evaluations`` - unit "coarse evaluations": like ``paper`` but per loss-and-gradient
    evaluation instead of per optimizer step. An L-BFGS step makes 1 to max_eval
    evaluations (one when it ends at once because the gradient is below tolerance_grad),
    so equal "coarse steps" can hide a 6x difference in evaluations; tables show both.

``macs`` - unit "MAC" (multiply-accumulates): an analytic count from the model's size and
    the task's points and derivative order, per loss evaluation (an L-BFGS step makes
    several)::

        forward MACs per point = sum over layers P * Q * width(layer)
            width = n + k for a spline layer (dense-equivalent basis contraction,
            as the forward pass computes it), 1 for a Linear layer
        loss evaluation = points * forward * 3 * (1 + d * input_dim)

    3 = forward + backward (backward ~ 2x forward). Input derivatives are propagated as
    forward jets (``bench_mlkan.jets``, the default route): a jet carries the value, the
    input_dim first derivatives and, for d = 2, the input_dim pure second derivatives, so
    it costs (1 + d * input_dim) forward passes, and its backward is one reverse pass.
    (Nested autograd, the reference route, costs about 1 + 2 * d * input_dim passes.)

    Warning: the derivative factor is an approximation (a task that needs fewer second
    derivatives, e.g. Burgers' u_xx only, propagates fewer rows; mixed derivatives add
    rows); the forward count is exact for the matmul FLOPs (``torch.utils.flop_counter``
    counts 2 * MACs; tested), and the measured-time check lives in the perf benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .registry import Registry


def forward_macs_per_point(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass at one point (the model's own count,
    ``macs_per_point()``: part of the model contract, ``bench_mlkan.contracts``)."""
    return int(model.macs_per_point())  # type: ignore[operator]


@dataclass(frozen=True)
class CostModel:
    """Cost of one optimizer step; subclasses define ``step_cost``."""

    name: str = ""
    unit: str = ""

    def step_cost(
        self,
        model: nn.Module,
        points: int,
        derivative_order: int,
        input_dim: int,
        evaluations: int,
        base_grid_size: int | None,
    ) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class PaperCost(CostModel):
    name: str = "paper"
    unit: str = "coarse steps (1 = one full-batch step at the base grid)"

    def step_cost(self, model, points, derivative_order, input_dim, evaluations, base_grid_size):
        grid_size = getattr(model, "grid_size", None)
        if grid_size is None:
            return 1.0
        return grid_size / float(base_grid_size or grid_size)


@dataclass(frozen=True)
class MacsCost(CostModel):
    name: str = "macs"
    unit: str = "MAC (analytic multiply-accumulates, fwd+bwd incl. input derivatives)"

    def step_cost(self, model, points, derivative_order, input_dim, evaluations, base_grid_size):
        per_eval = points * forward_macs_per_point(model) * 3 * (1 + derivative_order * input_dim)
        return float(per_eval * evaluations)


@dataclass(frozen=True)
class EvaluationsCost(CostModel):
    name: str = "evaluations"
    unit: str = "coarse evaluations (1 = one loss-and-gradient evaluation at the base grid)"

    def step_cost(self, model, points, derivative_order, input_dim, evaluations, base_grid_size):
        return evaluations * PaperCost().step_cost(
            model, points, derivative_order, input_dim, evaluations, base_grid_size
        )


COST_MODELS: Registry[CostModel] = Registry(
    "cost model",
    {"paper": PaperCost(), "macs": MacsCost(), "evaluations": EvaluationsCost()},
)
