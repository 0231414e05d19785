"""Cross-task scores: time-to-target per task and row, AlgoPerf-style performance profiles.

Per task and row: the median over seeds of the work (MACs, comparable across families) to
reach the task's target, and the median final metric; a failed, diverged, collapsed or
never-reaching seed counts as infinite (ranked last). rho_b(tau) = the fraction of tasks
on which row b is within a factor tau of the best row; score = area under rho_b over
log tau in [1, tau_max] / log tau_max.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..records import Record
from .aggregate import seed_result
from .metadata import TaskInfo, row_order, task_info, task_order
from .trajectory import best_so_far, time_to_target

TAU_MAX_TIME = 4.0
TAU_MAX_QUALITY = 100.0


def median_inf(values: Sequence[float]) -> float:
    """Median with +inf allowed (inf when the middle involves inf; inf for no values)."""
    v = sorted(values)
    if not v:
        return math.inf
    mid = len(v) // 2
    if len(v) % 2:
        return v[mid]
    a, b = v[mid - 1], v[mid]
    return math.inf if math.isinf(a) or math.isinf(b) else (a + b) / 2


def row_medians(
    recs: Sequence[Record], task: str
) -> tuple[float | None, float | None, float | None]:
    """(median final metric, median best-so-far, median work) of a row's finished runs;
    ``None`` where no run gives a value."""
    info = task_info(task)
    finals = [(r, v) for r in recs if r.status == "ok" and (v := r.final(info.metric)) is not None]
    done = [r for r, _ in finals]
    best = [b for r in done if (b := best_so_far(r, info)) is not None]
    work = [float(r.work) for r in done if r.work is not None]
    return (
        median_inf([float(v) for _, v in finals]) if finals else None,
        median_inf(best) if best else None,
        median_inf(work) if work else None,
    )


@dataclass(frozen=True)
class CrossTask:
    """Per (task, row): median MACs to target, seeds reaching it, median final metric."""

    tasks: list[str]
    rows: list[str]
    time: Mapping[tuple[str, str], float]
    reached: Mapping[tuple[str, str], str]
    quality: Mapping[tuple[str, str], float]
    infos: Mapping[str, TaskInfo]

    def ratios(self, table: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        """r[t, b] = value / best value on task t (inf: not run, not reached, failed)."""
        out = {}
        for t in self.tasks:
            best = min((table.get((t, b), math.inf) for b in self.rows), default=math.inf)
            for b in self.rows:
                v = table.get((t, b), math.inf)
                if not math.isfinite(v):
                    out[t, b] = math.inf
                elif best > 0:
                    out[t, b] = v / best
                else:
                    out[t, b] = 1.0 if v == best else math.inf
        return out

    def profile(self, table, taus: Sequence[float]) -> dict[str, list[float]]:
        """rho_b(tau): fraction of tasks on which b is within tau of the best."""
        r = self.ratios(table)
        n = max(len(self.tasks), 1)
        return {b: [sum(r[t, b] <= tau for t in self.tasks) / n for tau in taus] for b in self.rows}

    def score(self, table, tau_max: float) -> dict[str, float]:
        """Mean over tasks of max(0, 1 - log r / log tau_max) (area under rho_b)."""
        r = self.ratios(table)
        n = max(len(self.tasks), 1)
        lt = math.log(tau_max)
        return {
            b: sum(max(0.0, 1.0 - math.log(r[t, b]) / lt) for t in self.tasks if r[t, b] < math.inf)
            / n
            for b in self.rows
        }


def oriented(value: float | None, task: TaskInfo) -> float:
    """A final metric as "lower is better" (inf for None or non-finite)."""
    if value is None or not math.isfinite(value):
        return math.inf
    if task.lower_is_better:
        return value
    return 1.0 / value if value > 0 else math.inf


def cross_task(records: Mapping[str, Mapping[str, Sequence[Record]]]) -> CrossTask:
    """Cross-task tables of ``{task: {row: [records]}}`` (tasks with a target only)."""
    infos = {t: task_info(t) for t in records}
    tasks = [t for t in task_order(records) if infos[t].target is not None]
    rows = row_order({b for t in tasks for b in records[t]})
    time, reached, quality = {}, {}, {}
    for t in tasks:
        for b, recs in records[t].items():
            seeds = [seed_result(r, infos[t].metric) for r in recs]
            times = [
                math.inf if s.status == "collapsed" else time_to_target(s.record, infos[t])
                for s in seeds
            ]
            time[t, b] = median_inf(times)
            reached[t, b] = f"{sum(math.isfinite(x) for x in times)}/{len(times)}"
            quality[t, b] = median_inf(
                [oriented(s.value, infos[t]) if s.counted else math.inf for s in seeds]
            )
    return CrossTask(tasks, rows, time, reached, quality, infos)
