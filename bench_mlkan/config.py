"""``RunConfig``: everything one training run needs, validated before any training."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .models import MODELS
from .optim import OPTIMIZERS, SCHEDULES
from .work import COST_MODELS


class ConfigError(ValueError):
    """A run configuration that cannot be trained; the message says what is wrong."""


@dataclass
class RunConfig:
    """One training run: task x model x strategy x optimizer x seed.

    Strategy: ``schedule[l]`` optimizer steps at level l, where level l has grid_size
    ``model_options["grid_size"] * 2**l`` (full batch: one step is one epoch). Leading zeros
    start directly on a finer grid (fresh initialisation there: the paper's "fine"); zeros in
    between refine through; trailing zeros are never visited (the paper's "coarse").
    Alternatively ``budget_fractions`` with ``work_budget`` split a fixed work budget
    (in ``cost_model`` units) across levels. ``work_budget`` alone also stops a run early.
    """

    task: str = "regression_rotated"
    task_options: dict[str, Any] = field(default_factory=dict)
    model: str = "kan"
    model_options: dict[str, Any] = field(default_factory=dict)
    schedule: list[int] = field(default_factory=lambda: [100])
    budget_fractions: list[float] | None = None
    work_budget: float | None = None
    cost_model: str = "paper"
    optimizer: str = "adam"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    lr_start: float | None = None
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    lr_schedule_options: dict[str, Any] = field(default_factory=dict)
    carry_optimizer_state: bool = False
    refine_rtol: float = 1e-9
    seed: int = 1234
    precision: str = "64"
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    eval_every: int = 0
    progress: bool | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume_from: str | None = None
    wandb: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a dict, failing on unknown keys (listing the known ones)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def num_levels(self) -> int:
        return (
            len(self.budget_fractions) if self.budget_fractions is not None else len(self.schedule)
        )

    def validate(self) -> RunConfig:
        """Raise ``ConfigError`` naming the first problem found; return self when valid."""
        from bench_mlkan.tasks import TASKS

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        for registry, name in (
            (TASKS, self.task),
            (MODELS, self.model),
            (OPTIMIZERS, self.optimizer),
            (SCHEDULES, self.lr_schedule),
            (COST_MODELS, self.cost_model),
        ):
            need(name in registry, f"unknown {registry.kind} {name!r}; known: {sorted(registry)}")
        if self.budget_fractions is not None:
            fr = self.budget_fractions
            need(
                len(fr) >= 1 and all(isinstance(f, int | float) and f >= 0 for f in fr),
                f"budget_fractions must be non-negative numbers, got {fr!r}",
            )
            need(any(f > 0 for f in fr), f"budget_fractions must have a positive entry, got {fr!r}")
            need(abs(sum(fr) - 1.0) < 1e-6, f"budget_fractions must sum to 1, got {sum(fr)!r}")
            need(
                self.work_budget is not None and self.work_budget > 0,
                "budget_fractions need a positive work_budget",
            )
        else:
            s = self.schedule
            need(
                isinstance(s, list | tuple) and len(s) >= 1,
                f"schedule must be a non-empty list, got {s!r}",
            )
            need(
                all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in s),
                f"schedule entries must be integers >= 0 (steps per level), got {s!r}",
            )
            need(sum(s) > 0, f"schedule {s!r} trains for zero steps")
        need(
            self.work_budget is None or (math.isfinite(self.work_budget) and self.work_budget > 0),
            f"work_budget must be positive, got {self.work_budget!r}",
        )
        levels = self.level_steps_nonzero()
        if self.model == "mlp":
            need(len(levels) == 1, "an MLP cannot be refined: give it a one-level schedule")
        else:
            need(
                "grid_size" in self.model_options and "degree" in self.model_options,
                f"model {self.model!r} needs model_options grid_size and degree",
            )
        need("widths" in self.model_options, "model_options needs 'widths'")
        need(self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr!r}")
        need(
            self.lr_start is None or self.lr_start > 0,
            f"lr_start must be positive, got {self.lr_start!r}",
        )
        need(
            isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
            f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}",
        )
        need(
            self.precision in ("64", "32"),
            f"precision must be '64' or '32', got {self.precision!r}",
        )
        need(self.devices >= 1, f"devices must be >= 1, got {self.devices!r}")
        need(self.refine_rtol > 0, f"refine_rtol must be positive, got {self.refine_rtol!r}")
        need(
            self.eval_every >= 0 and self.checkpoint_every >= 0,
            "eval_every/checkpoint_every must be >= 0",
        )
        need(
            not (self.carry_optimizer_state and self.optimizer not in ("adam", "adamw")),
            "carry_optimizer_state supports adam/adamw only",
        )
        return self

    def level_steps_nonzero(self) -> list[tuple[int, int]]:
        """(level, steps) from the first to the last level with steps (schedule form)."""
        sched = (
            self.schedule
            if self.budget_fractions is None
            else [1 if f > 0 else 0 for f in self.budget_fractions]
        )
        nz = [i for i, v in enumerate(sched) if v > 0]
        if not nz:
            return []
        return [(level, sched[level]) for level in range(nz[0], nz[-1] + 1)]
