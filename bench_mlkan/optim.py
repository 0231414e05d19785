"""Optimizers and learning-rate schedules (METHOD.md sections 4, 5).

Every level gets a fresh optimizer and a fresh ``LambdaLR`` whose factor is

    warmup(step) * schedule(step)

``warmup`` ramps linearly from ``lr_start / lr`` to 1 over ``warmup_steps`` (the paper's
ramp at the start and at every level change); ``schedule`` is one of ``SCHEDULES``:

* ``constant``: 1.
* ``cyclic_exp``: a triangular cycle of ``cycle`` steps between ``base_fraction`` and 1,
  damped by ``gamma ** step`` (torch's CyclicLR "exp_range" with max_lr = lr,
  base_lr = base_fraction * lr); the paper's Burgers setting is cycle 100, gamma 0.9995.
* ``exponential``: ``gamma ** step``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from .registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry(
    "optimizer",
    {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "lbfgs": torch.optim.LBFGS,
        "sgd": torch.optim.SGD,
    },
)


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, options: dict | None = None
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (``OPTIMIZERS``) with learning rate ``lr`` and ``options``."""
    options = dict(options or {})
    if name == "lbfgs":
        options.setdefault("line_search_fn", "strong_wolfe")
    return OPTIMIZERS[name](params, lr=lr, **options)


def _constant(step: int) -> float:
    return 1.0


def _cyclic_exp(cycle: int = 100, gamma: float = 0.9995, base_fraction: float = 0.1):
    def factor(step: int) -> float:
        phase = (step % cycle) / cycle
        tri = 1.0 - abs(2.0 * phase - 1.0)  # 0 -> 1 -> 0 over one cycle
        return (base_fraction + (1.0 - base_fraction) * tri) * gamma**step

    return factor


def _exponential(gamma: float = 0.999):
    return lambda step: gamma**step


SCHEDULES: Registry[Callable[..., Callable[[int], float]]] = Registry(
    "lr schedule",
    {"constant": lambda: _constant, "cyclic_exp": _cyclic_exp, "exponential": _exponential},
)


def lr_factor(
    lr: float,
    lr_start: float | None,
    warmup_steps: int,
    schedule: str = "constant",
    schedule_options: dict | None = None,
) -> Callable[[int], float]:
    """The LambdaLR factor: linear ramp lr_start -> lr over warmup_steps, times the schedule."""
    shape = SCHEDULES[schedule](**(schedule_options or {}))
    start = 1.0 if lr_start is None else lr_start / lr

    def factor(step: int) -> float:
        ramp = (
            start + (1.0 - start) * min(step, warmup_steps) / warmup_steps
            if warmup_steps > 0
            else 1.0
        )
        value = ramp * shape(step)
        return value if math.isfinite(value) else 0.0

    return factor
