"""The table of one experiment: markdown page, CSV and JSON aggregates (pure functions of
the row aggregates of ``bench_mlkan.scoring``)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..records import Record, dumps_strict
from ..scoring.aggregate import WORK_FIELDS, RowAggregate, SeedResult, Spread, spread
from ..scoring.metadata import TaskInfo
from .describe import describe_fidelity, describe_model, fmt_schedule
from .fmt import fmt_count, fmt_moments, fmt_ratio, fmt_sci, fmt_seconds, fmt_spread

#: the mark of a value filled in from the per-step history
DERIVED_MARK = "†"


def paper_row(paper_task: Mapping[str, Any] | None, agg: RowAggregate) -> Mapping[str, Any]:
    """The paper's entry for a row (its baseline's; {} when the paper has none)."""
    return ((paper_task or {}).get("rows") or {}).get(agg.info.baseline) or {}


def fmt_paper(entry: Mapping[str, Any], digits: int) -> str:
    mean, sd = entry.get("mean"), entry.get("sd")
    if mean is None:
        return "-"
    return fmt_sci(mean, digits) + (f" ({fmt_sci(sd, digits)})" if sd else "")


def runs_cell(agg: RowAggregate) -> str:
    """ "2 ok, 1 collapsed" (every status present)."""
    return ", ".join(f"{n} {status}" for status, n in agg.counts.items() if n)


def seed_cell(s: SeedResult) -> str:
    if s.status == "ok":
        return f"{s.seed}: {fmt_sci(s.value)}"
    if s.status == "collapsed":
        return f"{s.seed}: collapsed ({fmt_sci(s.value)})"
    if s.status == "diverged":
        return f"{s.seed}: diverged (step {(s.record.diverged or {}).get('step', '?')})"
    return f"{s.seed}: failed"


def work_cell(agg: RowAggregate, key: str) -> str:
    fmt = {"work_macs": fmt_sci, "wall_clock": fmt_seconds}.get(key, fmt_count)
    text = fmt_spread(agg.work.get(key), fmt)
    return text + DERIVED_MARK if key in agg.derived and text != "-" else text


def header(task: TaskInfo) -> list[str]:
    return [
        "baseline",
        "model",
        "basis",
        "fidelity",
        "steps/level",
        "params",
        "runs",
        f"{task.metric_label} mean (sd)",
        "median",
        f"best-so-far {task.metric_label} mean (sd)",
        "per seed",
        *[f"{label} mean (sd)" for _, label in task.extra_metrics],
        *WORK_FIELDS.values(),
        f"paper {task.metric_label} mean (sd)",
        "ours / paper",
    ]


def cells(agg: RowAggregate, paper_task: Mapping[str, Any] | None) -> list[str]:
    model, basis = describe_model(agg.config, agg.info)
    entry = paper_row(paper_task, agg)
    digits = int((paper_task or {}).get("digits", 3))
    ours = agg.metric.mean if agg.metric else None
    ratio = ours / entry["mean"] if ours is not None and entry.get("mean") else None
    return [
        f"`{agg.row}`",
        model,
        basis,
        describe_fidelity(agg.config, agg.info),
        fmt_schedule(agg.config),
        "/".join(str(p) for p in agg.params) or "-",
        runs_cell(agg),
        fmt_moments(agg.metric),
        fmt_sci(agg.metric.median) if agg.metric else "-",
        fmt_moments(agg.best),
        ", ".join(seed_cell(s) for s in agg.seeds),
        *[fmt_moments(agg.extras.get(key)) for key, _ in agg.task.extra_metrics],
        *[work_cell(agg, key) for key in WORK_FIELDS],
        fmt_paper(entry, digits),
        fmt_ratio(ratio),
    ]


def level_rows(agg: RowAggregate) -> list[list[str]]:
    """Per level: grid, steps, evaluations, idle steps, seconds (medians over the runs that
    trained; "-" where the records do not say)."""
    recs = agg.trained()
    levels = sorted({lvl for r in recs for lvl in r.level_stats})
    grid = (agg.config.get("model_options") or {}).get("grid_size")
    mark = DERIVED_MARK if "level_stats" in agg.derived else ""
    out = []
    for lvl in levels:
        stats = [r.level_stats[lvl] for r in recs if lvl in r.level_stats]
        evals, idle = (
            spread([getattr(s, k) for s in stats]) for k in ("evaluations", "idle_steps")
        )
        out.append(
            [
                f"`{agg.row}`",
                str(lvl),
                str(int(grid) * 2**lvl) if grid is not None else "-",
                fmt_spread(spread([s.steps for s in stats])),
                fmt_spread(evals) + (mark if evals else ""),
                fmt_spread(idle) + (mark if idle else ""),
                fmt_spread(spread([s.wall_clock for s in stats]), fmt_seconds),
            ]
        )
    return out


# ----------------------------------------------------------------------------- data files
def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _spread_dict(s: Spread | None) -> dict[str, Any] | None:
    return None if s is None else {"min": s.lo, "median": s.median, "max": s.hi, "n": s.n}


def row_data(agg: RowAggregate, paper_task: Mapping[str, Any] | None) -> dict[str, Any]:
    """One row as plain data (the JSON aggregate)."""
    model, basis = describe_model(agg.config, agg.info)
    m = agg.metric
    entry = paper_row(paper_task, agg)
    return {
        "row": agg.row,
        "baseline": agg.info.baseline,
        "variant": agg.info.variant,
        "family": agg.info.family,
        "strategy": agg.info.strategy,
        "model": model,
        "basis": basis,
        "fidelity": describe_fidelity(agg.config, agg.info),
        "schedule": fmt_schedule(agg.config),
        "params": list(agg.params),
        "runs": dict(agg.counts),
        "metric": {
            "key": agg.task.metric,
            "label": agg.task.metric_label,
            "direction": agg.task.direction,
            **(
                {
                    "n": m.n,
                    "mean": m.mean,
                    "sd": m.sd,
                    "median": m.median,
                    "min": m.minimum,
                    "max": m.maximum,
                }
                if m
                else {"n": 0}
            ),
        },
        "best_so_far": (
            {"n": b.n, "mean": b.mean, "sd": b.sd, "median": b.median} if (b := agg.best) else None
        ),
        "per_seed": [{"seed": s.seed, "status": s.status, "value": s.value} for s in agg.seeds],
        "extra_metrics": {
            key: ({"n": e.n, "mean": e.mean, "sd": e.sd} if (e := agg.extras.get(key)) else None)
            for key, _ in agg.task.extra_metrics
        },
        "work": {key: _spread_dict(agg.work.get(key)) for key in WORK_FIELDS},
        "derived_from_history": sorted(agg.derived),
        "diagnostics": agg.diagnostics,
        "paper": {"mean": entry.get("mean"), "sd": entry.get("sd")} if entry else None,
    }


def table_json(
    task: TaskInfo, profile: str, rows: Sequence[RowAggregate], paper_task: Mapping | None
) -> str:
    """The JSON aggregate of one experiment (strict JSON; non-finite values listed)."""
    return dumps_strict(
        {
            "task": task.name,
            "display_name": task.display_name,
            "profile": profile,
            "metric": task.metric,
            "metric_label": task.metric_label,
            "direction": task.direction,
            "rows": [row_data(a, paper_task) for a in rows],
        }
    )


CSV_WORK = tuple(WORK_FIELDS)


def table_csv(rows: Sequence[RowAggregate], paper_task: Mapping | None) -> str:
    """One line per row: counts, metric statistics, extra means, work medians, paper."""
    if not rows:
        return ""
    task = rows[0].task
    extras = [key for key, _ in task.extra_metrics]
    head = [
        "row",
        "family",
        "strategy",
        "params",
        "ok",
        "collapsed",
        "diverged",
        "failed",
        f"{task.metric}_mean",
        f"{task.metric}_sd",
        f"{task.metric}_median",
        f"{task.metric}_min",
        f"{task.metric}_max",
        f"{task.metric}_best_so_far_mean",
        *[f"{k}_mean" for k in extras],
        *[f"{k}_median" for k in CSV_WORK],
        f"paper_{task.metric}_mean",
        f"paper_{task.metric}_sd",
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for a in rows:
        m, entry = a.metric, paper_row(paper_task, a)
        stats: list[float | None] = (
            [m.mean, m.sd, m.median, m.minimum, m.maximum] if m else [None] * 5
        )
        stats.append(a.best.mean if a.best else None)
        extra = [e.mean if (e := a.extras.get(k)) else None for k in extras]
        work = [s.median if (s := a.work.get(k)) else None for k in CSV_WORK]
        w.writerow(
            [
                a.row,
                a.info.family,
                a.info.strategy,
                max(a.params, default=""),
                *(a.counts[s] for s in ("ok", "collapsed", "diverged", "failed")),
                *(_csv(v) for v in (*stats, *extra, *work, entry.get("mean"), entry.get("sd"))),
            ]
        )
    return buf.getvalue()


def _csv(v: float | None) -> str:
    v = _num(v)
    return "" if v is None else repr(v)


def failure_reason(rec: Record) -> str:
    """One line: where a diverged run stopped and why, or the last line of a failure."""
    if rec.status == "diverged":
        d = rec.diverged or {}
        loss = d.get("loss")
        why = f", {d['reason']}" if d.get("reason") else ""
        return (
            f"diverged at step {d.get('step', '?')} (level {d.get('level', '?')}, loss "
            f"{fmt_sci(loss) if isinstance(loss, int | float) else '?'}{why})"
        )
    err = (rec.error or "").strip().splitlines()
    last = err[-1].strip() if err else "no error message"
    return f"{rec.status}: `{last[:200]}`"
