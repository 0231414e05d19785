"""Moved: the numbers are ``bench_mlkan.scoring``, the pages, tables, figures and the
``leaderboard`` command ``bench_mlkan.reporting``. This module keeps only the names that
``bench.py`` and ``wandb_utils.py`` still import (``metric_spec``, ``default_out_root``,
``render_all``); new code uses ``scoring.task_info`` and ``reporting`` directly."""

from __future__ import annotations

from dataclasses import dataclass

from .reporting.render import default_out_root, render_all
from .scoring.metadata import task_info


@dataclass(frozen=True)
class MetricSpec:
    """The ranking metric of a task: ``final_metrics`` key and its label."""

    key: str
    label: str


def metric_spec(task: str, kind: str | None = None) -> MetricSpec:
    """The metric a task is ranked by, from its metadata (``kind`` is not needed)."""
    info = task_info(task)
    return MetricSpec(info.metric, info.metric_label)


__all__ = ["MetricSpec", "default_out_root", "metric_spec", "render_all"]
