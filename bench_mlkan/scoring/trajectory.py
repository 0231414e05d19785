"""Metric trajectories along a run's work, the metric at a given budget, time-to-target.

Work units (``UNITS``): ``work`` = coarse steps (the paper's unit), ``work_evaluations`` =
coarse loss-and-gradient evaluations, ``work_macs`` = multiply-accumulates (METHOD.md 6).
A trajectory is a list of (work spent, value reached) pairs in increasing work.
"""

from __future__ import annotations

import math

from ..records import Record
from .metadata import TaskInfo

#: record field -> unit name
UNITS = {
    "work": "coarse steps",
    "work_evaluations": "coarse evaluations",
    "work_macs": "MACs",
}
#: the history key of the MG-OPT shift: on such rows the loss is not the task loss
SHIFT_TERM = "loss/mgopt_shift"
#: relative slack when comparing work (accumulated floats)
WORK_RTOL = 1e-9


def total_work(rec: Record, unit: str) -> float | None:
    """The run's work in ``unit`` (None when the record does not say)."""
    return {"work": rec.work, "work_evaluations": rec.work_evaluations, "work_macs": rec.work_macs}[
        unit
    ]


def loss_trajectory(rec: Record, unit: str) -> list[tuple[float, float]]:
    """(work spent, training loss) along the history, plus the final training loss.

    A history row holds the loss *before* its step and the work *after* it, so the loss of
    row i was reached with the work of row i-1 (exact for consecutive rows; across a thinned
    gap, the work of row i minus its step's share of the gap). Empty when the history rows
    lack ``unit``. Rows of a V-cycle's coarse correction steps (loss term ``SHIFT_TERM``:
    their logged loss is the shifted coarse objective, not the task loss) are left out.
    """
    hist = rec.history
    if not hist or any(unit not in h for h in hist):
        return []
    out: list[tuple[float, float]] = []
    for i, row in enumerate(hist):
        if i == 0:
            spent = 0.0
        else:
            prev = hist[i - 1]
            gap = max(int(row["step"]) - int(prev["step"]), 1)
            spent = float(row[unit]) - (float(row[unit]) - float(prev[unit])) / gap
        if SHIFT_TERM in row:
            continue  # a V-cycle's coarse correction step: its loss is not the task's
        out.append((spent, float(row["loss"])))
    final = rec.final("train_loss")
    total = total_work(rec, unit)
    if final is not None and total is not None:
        out.append((total, final))
    return out


def eval_trajectory(rec: Record, unit: str, metric: str) -> list[tuple[float, float]]:
    """(work, metric) at every evaluation (level ends, ``eval_every``) and at the end."""
    out = [
        (float(e[unit]), float(e[metric])) for e in rec.eval_history if metric in e and unit in e
    ]
    final = rec.final(metric)
    total = total_work(rec, unit)
    if final is not None and total is not None:
        out.append((total, final))
    return sorted(out)


def metric_trajectory(rec: Record, task: TaskInfo, unit: str) -> list[tuple[float, float]]:
    """The trajectory of the task's metric: the training loss of every step when the task
    says its metric is the training loss (``target_source`` "loss"), else the evaluations."""
    if task.target_source == "loss":
        return loss_trajectory(rec, unit)
    return eval_trajectory(rec, unit, task.metric)


def best_so_far(rec: Record, task: TaskInfo) -> float | None:
    """The best value of the task's metric along the run (every step's loss, or every
    evaluation and the end; the task's direction), None when the record has none."""
    values = [v for _, v in metric_trajectory(rec, task, "work") if math.isfinite(v)]
    if not values:
        values = [v for _, v in eval_trajectory(rec, "work", task.metric) if math.isfinite(v)]
    if not values:
        return None
    return min(values) if task.lower_is_better else max(values)


def value_at(trajectory: list[tuple[float, float]], budget: float) -> float | None:
    """The last value reached with at most ``budget`` work (None before the first point)."""
    found = None
    for spent, value in trajectory:
        if spent > budget * (1 + WORK_RTOL):
            break
        found = value
    return found


def metric_at(rec: Record, task: TaskInfo, unit: str, budget: float) -> float | None:
    """The task's metric after ``budget`` work in ``unit``: +inf for a run that diverged
    before it; None when the record cannot say (failed, no trajectory, budget past the end
    of a finished run, or before its first point)."""
    total = total_work(rec, unit)
    if rec.status == "failed" or total is None:
        return None
    if rec.status == "diverged" and budget > total * (1 + WORK_RTOL):
        return math.inf
    if rec.status == "ok" and budget > total * (1 + WORK_RTOL):
        return None
    return value_at(metric_trajectory(rec, task, unit), budget)


def reached(value: float, task: TaskInfo) -> bool:
    """Whether ``value`` meets the task's target (in the task's direction)."""
    if task.target is None or not math.isfinite(value):
        return False
    return value <= task.target if task.lower_is_better else value >= task.target


def time_to_target(rec: Record, task: TaskInfo, unit: str = "work_macs") -> float:
    """Work (``unit``) at which the metric first meets the task's target; inf when it never
    does (or the run failed)."""
    if task.target is None or rec.status == "failed":
        return math.inf
    for spent, value in metric_trajectory(rec, task, unit):
        if reached(value, task):
            return spent
    return math.inf
