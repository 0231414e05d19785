"""Scores from run records, as pure functions (no files written, nothing drawn).

* ``metadata`` - task metadata (``task_info``) and baseline family/strategy
  (``baseline_info``); the order of tasks and rows.
* ``aggregate`` - per-row aggregates: metric mean/sd/median per seed, honest work
  (steps, evaluations, idle steps, coarse steps, coarse evaluations, MACs, wall-clock),
  collapsed detection (``collapse_state``).
* ``trajectory`` - metric along the work, the metric at a budget, time-to-target.
* ``profiles`` - cross-task time-to-target and performance profiles.
* ``claims`` - the paper's claims with per-seed statistics (``bench_mlkan.stats``) at
  equal coarse steps and at equal evaluations.
"""

from .aggregate import RowAggregate, aggregate_row, aggregate_task, collapse_state
from .claims import Claim, ClaimCheck, check_claim, load_paper, paper_claims
from .metadata import BaselineInfo, TaskInfo, baseline_info, row_order, task_info, task_order
from .profiles import CrossTask, cross_task
from .trajectory import metric_at, time_to_target

__all__ = [
    "BaselineInfo",
    "Claim",
    "ClaimCheck",
    "CrossTask",
    "RowAggregate",
    "TaskInfo",
    "aggregate_row",
    "aggregate_task",
    "baseline_info",
    "check_claim",
    "collapse_state",
    "cross_task",
    "load_paper",
    "metric_at",
    "paper_claims",
    "row_order",
    "task_info",
    "task_order",
    "time_to_target",
]
