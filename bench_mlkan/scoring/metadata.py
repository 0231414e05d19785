"""What a leaderboard needs to know about tasks and baselines, from their own metadata.

* ``task_info(name)``: the task's ``Task.metadata()`` (metric ranked by, its label and
  direction, time-to-target threshold and source, display name, paper section). A task
  that is not registered (a plugin not imported) falls back to the ``Task`` contract's
  defaults, whose metric (``rel_l2``) every task reports.
* ``baseline_info(row)``: ``family`` and ``strategy`` from ``baselines/<name>/config.json``
  (``row`` may be ``baseline@variant``); unknown baselines get family "unknown".
* ``task_order`` / ``row_order``: paper experiments first (by paper section), then the
  rest by name; rows by family (kan, mcmlp, mlp, peers, unknown), then strategy, then size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Family groups in table order; every other known family is a "peer" (third-party KANs).
FAMILY_ORDER = ("kan", "mcmlp", "mlp")
#: Strategies in table order; others follow by name.
STRATEGY_ORDER = (
    "coarse",
    "fine",
    "multilevel",
    "multilevel_carry",
    "vcycle",
    "adaptive",
    "single",
)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class TaskInfo:
    """A task's ranking metadata (``Task.metadata()``; see ``bench_mlkan.task``)."""

    name: str
    display_name: str
    kind: str
    paper_section: str | None
    metric: str
    metric_label: str
    metric_what: str
    extra_metrics: tuple[tuple[str, str], ...]
    direction: str  # "minimize" | "maximize"
    target: float | None
    target_source: str  # "loss": training loss per step (= metric) | "eval": evaluations
    registered: bool = True

    @property
    def section_key(self) -> tuple[int, ...]:
        """(5, 3) for "5.3 (Table 3)"; () without a paper section."""
        m = re.match(r"\s*(\d+(?:\.\d+)*)", self.paper_section or "")
        return tuple(int(x) for x in m.group(1).split(".")) if m else ()

    @property
    def lower_is_better(self) -> bool:
        return self.direction != "maximize"


def task_info(name: str) -> TaskInfo:
    """The metadata of task ``name`` (the contract's defaults when it is not registered)."""
    from bench_mlkan.task import Task
    from bench_mlkan.tasks import TASKS

    registered = name in TASKS
    meta = (TASKS[name] if registered else Task).metadata()
    return TaskInfo(
        name=name,
        display_name=meta["display_name"] if registered else name,
        kind=meta["kind"],
        paper_section=meta["paper_section"] if registered else None,
        metric=meta["metric"],
        metric_label=meta["metric_label"],
        metric_what=meta["metric_what"],
        extra_metrics=tuple((str(k), str(v)) for k, v in meta["extra_metrics"]),
        direction=meta["direction"],
        target=meta["target"],
        target_source=meta["target_source"],
        registered=registered,
    )


def task_order(names: Iterable[str]) -> list[str]:
    """Paper experiments first (by section), then the others by name."""

    def key(name: str) -> tuple[int, tuple[int, ...], str]:
        section = task_info(name).section_key
        return (0 if section else 1, section, name)

    return sorted(set(names), key=key)


@dataclass(frozen=True)
class BaselineInfo:
    """A leaderboard row's recipe: ``baseline`` (``row`` without its ``@variant``)."""

    row: str
    baseline: str
    variant: str | None
    family: str
    strategy: str

    @property
    def family_group(self) -> int:
        """0 kan, 1 mcmlp, 2 mlp, 3 peers (other known families), 4 unknown."""
        if self.family in FAMILY_ORDER:
            return FAMILY_ORDER.index(self.family)
        return len(FAMILY_ORDER) + (self.family == UNKNOWN)


def _baseline_spec(name: str) -> tuple[str, str]:
    from bench_mlkan.baselines import BASELINES, load_baseline

    if name not in BASELINES:
        return UNKNOWN, UNKNOWN
    spec = load_baseline(name)
    return str(spec.get("family") or UNKNOWN), str(spec.get("strategy") or UNKNOWN)


def baseline_info(row: str) -> BaselineInfo:
    """Family and strategy of ``row`` (``baseline`` or ``baseline@variant``)."""
    baseline, _, variant = row.partition("@")
    family, strategy = _baseline_spec(baseline)
    return BaselineInfo(row, baseline, variant or None, family, strategy)


def row_order(rows: Iterable[str], params: Mapping[str, int] | None = None) -> list[str]:
    """Rows by family group, family, strategy, parameter count (``params``), name."""
    params = params or {}

    def key(row: str) -> tuple:
        info = baseline_info(row)
        s = info.strategy
        strategy = STRATEGY_ORDER.index(s) if s in STRATEGY_ORDER else len(STRATEGY_ORDER)
        return (
            info.family_group,
            info.family,
            strategy,
            s,
            params.get(row, 0),
            info.baseline,
            info.variant or "",
        )

    return sorted(set(rows), key=key)
