"""Regression tasks: the paper's rotated target (METHOD.md 5.1) and any user callable.

``REGRESSION_TARGETS`` names further targets on the unit square (smooth, oscillatory, a
sharp front, a kink) that ``regression_rotated`` fits instead of the paper's with
``target="name"`` (same points, normalisation and models), so a JSON config can ask
whether a claim is about the method or about the paper's target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bench_mlkan.task import Task, solution_metrics, uniform_grid


class FunctionRegression(Task):
    """Fit samples of ``fn`` drawn uniformly in ``domain`` (mean squared error loss).

    Args:
        fn: maps (N, input_dim) float64 points to (N,) or (N, output_dim) values.
        domain: [(lo, hi)] per input.
        n_train, n_test: uniform random training / held-out points.
        eval_points_per_dim: tensor grid on which rel_l2 / max_abs / mse are reported.
        normalize: min-max normalise targets to [0, 1] (statistics from the training set).
        seed: the data seed (the same data for every model seed).
    """

    name = "function_regression"
    display_name = "Regression of a function"
    metric = "test_mse"
    metric_label = "test MSE"
    metric_what = "mean squared error on held-out test points; train MSE beside it"
    extra_metrics = (("train_mse", "train MSE"),)
    target = 1e-3
    kind = "regression"
    derivative_order = 0

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        domain: Sequence[Sequence[float]],
        n_train: int = 1000,
        n_test: int = 1000,
        eval_points_per_dim: int = 101,
        normalize: bool = False,
        seed: int = 0,
        sample_domain: Sequence[Sequence[float]] | None = None,
    ):
        if n_train < 1 or n_test < 1:
            raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
        self.fn = fn
        self.domain = [(float(lo), float(hi)) for lo, hi in domain]
        self.input_dim = len(self.domain)
        sample = (
            self.domain if sample_domain is None else [tuple(map(float, d)) for d in sample_domain]
        )
        gen = torch.Generator().manual_seed(seed)
        lo = torch.tensor([d[0] for d in sample], dtype=torch.float64)
        hi = torch.tensor([d[1] for d in sample], dtype=torch.float64)
        draw = lambda n: (
            lo + (hi - lo) * torch.rand(n, self.input_dim, generator=gen, dtype=torch.float64)
        )  # noqa: E731
        self.x_train, self.x_test = draw(n_train), draw(n_test)
        raw = self._raw(self.x_train)
        self.output_dim = raw.shape[1]
        self.offset, self.span = (
            (raw.min(0).values, raw.max(0).values - raw.min(0).values)
            if normalize
            else (
                torch.zeros(self.output_dim, dtype=torch.float64),
                torch.ones(self.output_dim, dtype=torch.float64),
            )
        )
        self.y_train, self.y_test = self.reference(self.x_train), self.reference(self.x_test)
        self.eval_points_per_dim, self.normalize, self.seed = eval_points_per_dim, normalize, seed

    def _raw(self, x: Tensor) -> Tensor:
        y = self.fn(x.double())
        return y.reshape(x.shape[0], -1)

    def reference(self, x: Tensor) -> Tensor:
        y = (self._raw(x.double().cpu()) - self.offset) / self.span
        return y.to(dtype=x.dtype, device=x.device)

    def train_batch(self) -> dict[str, Tensor]:
        return {"x": self.x_train, "y": self.y_train}

    def loss_terms(self, model: nn.Module, batch, state, update_state: bool = False):
        err = self.predict(model, batch["x"]) - batch["y"]
        return {"mse": (err**2).sum() / (self.x_train.shape[0] * self.output_dim)}

    def eval_points(self) -> Tensor:
        return uniform_grid(self.domain, [self.eval_points_per_dim] * self.input_dim)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = super().evaluate(model)
        p = next(iter(model.parameters()))
        with torch.no_grad():
            for split, x, y in (
                ("train", self.x_train, self.y_train),
                ("test", self.x_test, self.y_test),
            ):
                pred = self.predict(model, x.to(device=p.device, dtype=p.dtype))
                out[f"{split}_mse"] = solution_metrics(pred, y.to(pred))["mse"]
        return out

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "domain": self.domain,
            "n_train": len(self.x_train),
            "n_test": len(self.x_test),
            "normalize": self.normalize,
            "seed": self.seed,
        }


def rotated_target(p: Tensor, angle: float = 0.175, centre: float = 0.5) -> Tensor:
    """METHOD.md 5.1: f(R^-1 (p - c) + c), f(x, y) = cos(4 pi x) + sin(pi y) + sin(2 pi y)
    + |sin(3 pi y^2)|, R the counter-clockwise rotation by ``angle`` about (c, c)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = p[:, 0] - centre, p[:, 1] - centre
    x, y = c * dx + s * dy + centre, -s * dx + c * dy + centre  # R^-1 = R(-angle)
    pi = math.pi
    return (
        torch.cos(4 * pi * x)
        + torch.sin(pi * y)
        + torch.sin(2 * pi * y)
        + torch.abs(torch.sin(3 * pi * y**2))
    )


def smooth_target(p: Tensor) -> Tensor:
    """exp(sin(pi x) + y^2): smooth, not a sum of ridge functions (the KAN paper's toy)."""
    return torch.exp(torch.sin(math.pi * p[:, 0]) + p[:, 1] ** 2)


def oscillatory_target(p: Tensor) -> Tensor:
    """sin(6 pi (x + y)) + cos(5 pi (x - y)): two high-frequency ridges."""
    x, y = p[:, 0], p[:, 1]
    return torch.sin(6 * math.pi * (x + y)) + torch.cos(5 * math.pi * (x - y))


def sharp_front_target(p: Tensor) -> Tensor:
    """tanh(40 (x + 0.6 y - 0.8)): a front of width ~1/40 across the square."""
    return torch.tanh(40 * (p[:, 0] + 0.6 * p[:, 1] - 0.8))


def kink_target(p: Tensor) -> Tensor:
    """|x + 0.5 y - 0.7| + (x - y)^2 / 2: continuous, with a kink along a line."""
    x, y = p[:, 0], p[:, 1]
    return torch.abs(x + 0.5 * y - 0.7) + 0.5 * (x - y) ** 2


#: Targets of ``regression_rotated`` by name: (N, 2) points in the unit square -> (N,).
#: "rotated" is the paper's (``rotated_target`` with the task's ``angle``).
REGRESSION_TARGETS: dict[str, Callable[[Tensor], Tensor]] = {
    "rotated": rotated_target,
    "smooth": smooth_target,
    "oscillatory": oscillatory_target,
    "sharp_front": sharp_front_target,
    "kink": kink_target,
}


class RotatedRegression(FunctionRegression):
    """The paper's regression (METHOD.md 5.1): 20,000 uniform points in [1e-4, 1 - 1e-4]^2,
    targets min-max normalised to [0, 1]; train MSE (as the paper) and held-out test MSE.

    ``size``: "paper" (20,000 train), "small" (4,000) or "tiny" (400); ``n_train`` overrides.
    ``target``: a name in ``REGRESSION_TARGETS`` ("rotated", the paper's, by default).
    """

    name = "regression_rotated"
    display_name = "Rotated regression"
    paper_section = "5.1 (Table 2)"
    metric = "train_mse"
    metric_label = "train MSE"
    metric_what = (
        "mean squared error on the training points (the paper's Table 2 reports train MSE); "
        "test MSE on held-out points beside it"
    )
    extra_metrics = (("test_mse", "test MSE"),)
    target = 1e-3
    target_source = "loss"
    SIZES = {"paper": 20000, "small": 4000, "tiny": 400}

    def __init__(
        self,
        size: str = "paper",
        n_train: int | None = None,
        n_test: int | None = None,
        eval_points_per_dim: int = 101,
        angle: float = 0.175,
        seed: int = 0,
        target: str = "rotated",
    ):
        if size not in self.SIZES:
            raise ValueError(f"unknown size {size!r}; known: {sorted(self.SIZES)}")
        if target not in REGRESSION_TARGETS:
            raise ValueError(f"unknown target {target!r}; known: {sorted(REGRESSION_TARGETS)}")
        n = n_train or self.SIZES[size]
        self.angle, self.size, self.target = angle, size, target
        box = [(1e-4, 1 - 1e-4)] * 2
        fn = (
            (lambda p: rotated_target(p, angle))
            if target == "rotated"
            else REGRESSION_TARGETS[target]
        )
        super().__init__(
            fn,
            box,
            n_train=n,
            n_test=n_test or max(n // 4, 100),
            eval_points_per_dim=eval_points_per_dim,
            normalize=True,
            seed=seed,
        )

    def describe(self) -> dict:
        return {**super().describe(), "size": self.size, "angle": self.angle, "target": self.target}
