"""Per-row aggregates of one task's records: the metric over seeds and the honest work.

A *row* is one baseline (or ``baseline@variant``) on one task. Its metric statistics use
the seeds that finished, trained and are not collapsed; every seed stays listed with its
status. Work columns (steps, evaluations, idle steps, work in coarse steps / coarse
evaluations / MACs, wall-clock) are spreads over the runs that trained (finished ones,
else the diverged ones).

A run is **collapsed** when its record says so (``diagnostics.collapsed``: the model
computes a constant) or when every input of its last spline layer lies outside the grid
(``diagnostics.outside_grid[-1] == 1``: a dead layer). Collapsed runs are excluded from
the means and medians here and rank last in the cross-task scores.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..records import Record
from .metadata import BaselineInfo, TaskInfo, baseline_info, row_order, task_info
from .trajectory import best_so_far

STATUSES = ("ok", "collapsed", "diverged", "failed")


def collapse_state(rec: Record) -> bool | None:
    """True when the run collapsed (see the module docstring), False when its diagnostics
    say it did not, None when the record carries no diagnostics."""
    d = rec.diagnostics
    if not d:
        return None
    if d.get("collapsed"):
        return True
    outside = d.get("outside_grid") or []
    return bool(outside) and float(outside[-1]) >= 1.0


@dataclass(frozen=True)
class SeedResult:
    """One seed of a row: its status and metric (None unless it finished)."""

    seed: int
    status: str  # "ok" | "collapsed" | "diverged" | "failed"
    value: float | None
    record: Record

    @property
    def counted(self) -> bool:
        """In the row's statistics: finished, finite metric, not collapsed."""
        return self.status == "ok" and self.value is not None and math.isfinite(self.value)


def seed_result(rec: Record, metric: str) -> SeedResult:
    status = rec.status if rec.status in ("ok", "diverged") else "failed"
    if status == "ok" and collapse_state(rec):
        status = "collapsed"
    return SeedResult(rec.seed, status, rec.final(metric), rec)


@dataclass(frozen=True)
class Spread:
    """Minimum, median and maximum of one quantity over a row's runs."""

    lo: float
    median: float
    hi: float
    n: int


def spread(values: Sequence[float | None]) -> Spread | None:
    """Spread of the values that are not None (None when there are none)."""
    v = sorted(float(x) for x in values if x is not None)
    return Spread(v[0], statistics.median(v), v[-1], len(v)) if v else None


@dataclass(frozen=True)
class Moments:
    """Mean, sample sd (n - 1; None for n < 2), median, min, max of finite values."""

    n: int
    mean: float
    sd: float | None
    median: float
    minimum: float
    maximum: float


def moments(values: Sequence[float]) -> Moments | None:
    v = [float(x) for x in values]
    if not v:
        return None
    mean = math.fsum(v) / len(v)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return Moments(len(v), mean, sd, statistics.median(v), min(v), max(v))


#: the work columns of a row, in table order: record field -> what it counts
WORK_FIELDS = {
    "steps": "optimizer steps",
    "evaluations": "loss-and-gradient evaluations",
    "idle_steps": "idle steps (changed no parameter)",
    "work": "work (coarse steps)",
    "work_evaluations": "work (coarse evaluations)",
    "work_macs": "work (MACs)",
    "wall_clock": "wall-clock (s)",
}


@dataclass(frozen=True)
class RowAggregate:
    """One row of a task table."""

    row: str
    info: BaselineInfo
    task: TaskInfo
    seeds: tuple[SeedResult, ...]
    metric: Moments | None
    extras: Mapping[str, Moments | None]
    counts: Mapping[str, int]
    params: tuple[int, ...]
    work: Mapping[str, Spread | None]
    derived: frozenset[str]
    diagnostics: str  # "recorded" | "partly recorded" | "not recorded"
    #: the best metric reached along each counted run (``trajectory.best_so_far``)
    best: Moments | None = None

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(s.record for s in self.seeds)

    @property
    def config(self) -> Mapping:
        return self.seeds[0].record.config

    @property
    def values(self) -> tuple[float, ...]:
        """The metric of the counted seeds (seed order)."""
        return tuple(float(s.value) for s in self.seeds if s.counted)  # type: ignore[arg-type]

    def trained(self) -> list[Record]:
        """Runs that trained: finished ones (collapsed included), else the diverged ones."""
        return trained_runs(self.seeds)


def trained_runs(seeds: Sequence[SeedResult]) -> list[Record]:
    """Finished runs (collapsed included), else the diverged ones: whose work is shown."""
    done = [s.record for s in seeds if s.status in ("ok", "collapsed")]
    return done or [s.record for s in seeds if s.status == "diverged"]


def aggregate_row(row: str, records: Sequence[Record], task: TaskInfo) -> RowAggregate:
    """The aggregate of one row's records (any order; sorted by seed here)."""
    recs = sorted(records, key=lambda r: (r.seed, str(r.path)))
    seeds = tuple(seed_result(r, task.metric) for r in recs)
    counted = [s.record for s in seeds if s.counted]
    trained = trained_runs(seeds)
    with_diagnostics = sum(collapse_state(r) is not None for r in trained)
    if trained and with_diagnostics == len(trained):
        diagnostics = "recorded"
    else:
        diagnostics = "partly recorded" if with_diagnostics else "not recorded"
    return RowAggregate(
        row=row,
        info=baseline_info(row),
        task=task,
        seeds=seeds,
        metric=moments([r.final_metrics[task.metric] for r in counted]),
        extras={key: moments(finite_finals(counted, key)) for key, _ in task.extra_metrics},
        counts={st: sum(s.status == st for s in seeds) for st in STATUSES},
        params=tuple(sorted({r.params for r in trained} - {0})),
        work={k: spread([getattr(r, k) for r in trained]) for k in WORK_FIELDS},
        derived=frozenset(f for r in trained for f in r.derived),
        diagnostics=diagnostics,
        best=moments([b for r in counted if (b := best_so_far(r, task)) is not None]),
    )


def finite_finals(records: Sequence[Record], key: str) -> list[float]:
    """The finite final ``key`` of each finished record that has it."""
    return [v for r in records if (v := r.final(key)) is not None and math.isfinite(v)]


def aggregate_task(task: str, by_row: Mapping[str, Sequence[Record]]) -> list[RowAggregate]:
    """Every row of ``task``, in table order (family, strategy, size)."""
    info = task_info(task)
    rows = {row: aggregate_row(row, recs, info) for row, recs in by_row.items()}
    params = {row: max(a.params, default=0) for row, a in rows.items()}
    return [rows[r] for r in row_order(rows, params)]
