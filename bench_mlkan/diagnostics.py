"""Diagnostics of a trained model that a leaderboard must not hide (pure functions).

* ``outside_grid_fractions(model, x)``: per spline layer, the fraction of its input values
  outside the layer's grid range (clamped there: zero gradient, constant continuation).
  A layer whose inputs all lie outside is dead: its output cannot change with training.
* ``is_collapsed(pred)``: the prediction is constant over the evaluation set (relative
  spread below ``COLLAPSE_RTOL`` times the dtype's round-off), i.e. the model computes a
  constant function; such a run is marked ``collapsed``, not ranked beside trained ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

#: a prediction is "constant" when (max - min) <= COLLAPSE_RTOL * eps * max|pred|
COLLAPSE_RTOL = 64.0


def outside_grid_fractions(
    model: nn.Module, run: Callable[[], object], tol: float = 0.0
) -> list[float]:
    """Fraction of the inputs of every spline layer of ``model`` outside its grid range.

    Args:
        model: any module; its ``SplineLayer`` submodules (in order) are inspected.
        run: evaluates the model (e.g. ``lambda: task.predict(model, x)``).
        tol: slack on each side of [a, b], in units of the grid spacing h.
    Returns:
        one float in [0, 1] per spline layer (empty for models without spline layers).
    """
    from .models import SplineLayer

    layers = [m for m in model.modules() if isinstance(m, SplineLayer)]
    counts: list[list[int]] = [[0, 0] for _ in layers]

    def hook(i: int):
        def pre(module, args):
            (x,) = args[:1]
            a, b = module.grid.grid_range
            slack = tol * module.grid.h
            out = (x < a - slack) | (x > b + slack)
            counts[i][0] += int(out.sum())
            counts[i][1] += out.numel()

        return pre

    handles = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return [n_out / n if n else 0.0 for n_out, n in counts]


def relative_spread(pred: Tensor) -> float:
    """(max - min) / max|pred| over all entries (0 for an all-zero prediction)."""
    p = pred.detach().double()
    scale = float(p.abs().max()) if p.numel() else 0.0
    return 0.0 if scale == 0.0 else float(p.max() - p.min()) / scale


def is_collapsed(pred: Tensor) -> bool:
    """Whether ``pred`` is constant up to round-off of its dtype."""
    eps = torch.finfo(pred.dtype).eps if pred.is_floating_point() else 0.0
    return relative_spread(pred) <= COLLAPSE_RTOL * eps
