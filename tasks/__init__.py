"""Benchmark tasks (installed as ``bench_mlkan.tasks``): one module per problem.

``TASKS[name](**options)`` builds a task; see ``bench_mlkan.task`` for the contract.
"""

from __future__ import annotations

from bench_mlkan.registry import Registry
from bench_mlkan.task import Task

from .regression import FunctionRegression, RotatedRegression

TASKS: Registry[type[Task]] = Registry(
    "task",
    {
        RotatedRegression.name: RotatedRegression,
        FunctionRegression.name: FunctionRegression,
    },
)

__all__ = ["TASKS", "Task", "FunctionRegression", "RotatedRegression"]
