"""A toy regression task shared by the engine, fault and strategy tests."""

from __future__ import annotations

import torch

from bench_mlkan.tasks import FunctionRegression


def small_task(n_train: int = 64) -> FunctionRegression:
    """sin(3 x) y on [-1, 1] x [0, 2]: ``n_train`` training points, 32 test points."""
    return FunctionRegression(
        lambda p: torch.sin(3 * p[:, 0]) * p[:, 1],
        [(-1.0, 1.0), (0.0, 2.0)],
        n_train=n_train,
        n_test=32,
        eval_points_per_dim=9,
    )
