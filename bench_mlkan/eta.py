"""Time estimates of bench runs and the progress lines' ETA.

* ``estimate_all(specs, sources, calibrate_missing)``: per run, seconds and their source -
  records of the same task and row (else baseline) in ``sources`` (earlier folders first):
  their seconds per step and point times the run's steps and points; the dry run uses only
  records with the run's number of points and otherwise ``calibrate``s: a short in-process
  training of the config (CALIBRATION_WARMUP untimed + CALIBRATION_STEPS timed steps per
  level), median step time per level times the schedule's steps, plus the measured fixed
  cost of a run.
* ``Progress``: elapsed time and ETA from the estimates, corrected by finished runs.
* ``makespan``: wall time of a job list on N workers (each job to the first free one).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import RecordError, read_record, record_files, record_row

if TYPE_CHECKING:
    from .bench import RunSpec

#: calibration: optimizer steps per level, the first ones untimed
CALIBRATION_WARMUP, CALIBRATION_STEPS = 2, 5


def last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no error message"


def fmt_duration(seconds: float | None) -> str:
    """``1h02m``, ``4m05s``, ``12s``; "?" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if 0 < seconds < 0.5:
        return "<1s"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Elapsed time and ETA for progress lines, from estimates and finished runs' times.

    The ETA scales the remaining estimates by (sum of finished runs' times / sum of their
    estimates), per row (labels ``task/row/seed<k>``) once a run of that row finished, else
    over all finished runs (estimates borrowed from another variant of a baseline can be off
    by 30x for one row and not for the next); runs without an estimate count the mean time
    of finished runs; it divides the remaining time by the workers (never below the longest
    single remaining run).
    """

    def __init__(self, labels: list[str], estimates: dict[str, float | None], workers: int):
        self.total = len(labels)
        self.pending = set(labels)
        self.estimates = estimates
        self.workers = max(1, workers)
        self.t0 = time.perf_counter()
        self.running: dict[str, float] = {}
        self.actual: dict[str, float] = {}

    def start(self, label: str) -> None:
        self.running[label] = time.perf_counter()

    def finish(self, label: str) -> None:
        started = self.running.pop(label, None)
        self.pending.discard(label)
        if started is not None:
            self.actual[label] = time.perf_counter() - started

    @staticmethod
    def row_of(label: str) -> str:
        """``task/row`` of a run label ``task/row/seed<k>``."""
        return label.rsplit("/", 1)[0]

    def eta(self) -> float | None:
        sums: dict[str | None, list[float]] = {}  # row (None: all) -> [actual, estimated]
        for k, a in self.actual.items():
            e = self.estimates.get(k)
            if e:
                for key in (None, self.row_of(k)):
                    acc = sums.setdefault(key, [0.0, 0.0])
                    acc[0] += a
                    acc[1] += e
        mean_actual = sum(self.actual.values()) / len(self.actual) if self.actual else None
        now_ = time.perf_counter()
        left = []
        for label in self.pending:
            est = self.estimates.get(label)
            a, e = sums.get(self.row_of(label)) or sums.get(None) or (1.0, 1.0)
            guess = est * a / e if est else mean_actual
            if guess is None:
                return None
            left.append(max(guess - (now_ - self.running[label]), 0.0) if label in self.running
                        else guess)  # fmt: skip
        if not left:
            return 0.0
        return max(sum(left) / self.workers, max(left))

    def prefix(self) -> str:
        done = self.total - len(self.pending)
        elapsed = time.perf_counter() - self.t0
        return (
            f"[{done:>{len(str(self.total))}}/{self.total} elapsed {fmt_duration(elapsed)} "
            f"ETA {fmt_duration(self.eta())}]"
        )


@dataclass
class Estimate:
    seconds: float | None
    source: str


def _points(task: str, task_options: dict[str, Any], cache: dict[str, int | None]) -> int | None:
    """Training points of a task configuration (None when it cannot be built)."""
    key = json.dumps([task, task_options], sort_keys=True, default=str)
    if key not in cache:
        try:
            from bench_mlkan.engine import count_points
            from bench_mlkan.tasks import TASKS

            cache[key] = count_points(TASKS[task](**task_options).train_batch())
        except Exception:  # noqa: BLE001 - an estimate is best effort
            cache[key] = None
    return cache[key]


def planned_steps(config: dict[str, Any]) -> list[int] | None:
    """Steps per level from level 0 (the schedule, or what budget_fractions buy)."""
    if config.get("budget_fractions") is None:
        return list(config.get("schedule") or [])
    try:
        from bench_mlkan.config import RunConfig
        from bench_mlkan.engine import plan_schedule
        from bench_mlkan.tasks import TASKS

        cfg = RunConfig.from_dict(config)
        start, steps = plan_schedule(cfg, TASKS[cfg.task](**cfg.task_options))
        return [0] * start + list(steps)
    except Exception:  # noqa: BLE001
        return None


def reference_records(folders: list[Path]) -> dict[tuple[str, str], list[tuple[Path, dict]]]:
    """{(task, row): [(folder, record)]} of finished records with a wall-clock, in the order of
    ``folders`` (earlier folders are preferred sources)."""
    out: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if folder.resolve() in seen or not folder.is_dir():
            continue
        seen.add(folder.resolve())
        for path in record_files(folder):
            try:
                rec = read_record(path, verify_weights=False)
            except RecordError:
                continue
            if rec.get("status") in ("ok", "diverged") and rec.get("wall_clock"):
                out.setdefault((rec["task"], record_row(rec)), []).append((folder, rec))
    return out


def estimate_from_records(
    spec: RunSpec,
    refs: dict[tuple[str, str], list[tuple[Path, dict]]],
    cache: dict[str, int | None],
    same_points: bool = False,
) -> Estimate | None:
    """Seconds of ``spec`` from records of the same task and row (else baseline): their
    seconds per step and point times ``spec``'s steps and points (median over the records of
    the first folder that has usable ones). ``same_points``: only records with as many
    training points (step time is far from linear in the points at small sizes)."""
    found = refs.get((spec.task, spec.row)) or refs.get((spec.task, spec.baseline)) or []
    steps = planned_steps(spec.config)
    points = _points(spec.task, spec.config.get("task_options") or {}, cache)
    if not found or not steps or not points:
        return None
    size = sum(steps) * points
    by_folder: dict[Path, list[tuple[float, float]]] = {}
    for folder, rec in found:
        ref_steps = planned_steps(rec.get("config") or {})
        ref_points = _points(
            rec["task"], (rec.get("config") or {}).get("task_options") or {}, cache
        )
        if not ref_steps or not ref_points or sum(ref_steps) <= 0:
            continue
        if same_points and ref_points != points:
            continue
        ref_size = sum(ref_steps) * ref_points
        by_folder.setdefault(folder, []).append(
            (float(rec["wall_clock"]) / ref_size, size / ref_size)
        )
    if not by_folder:
        return None
    folder, pairs = next(iter(by_folder.items()))
    rate = sorted(r for r, _ in pairs)[len(pairs) // 2]
    scale = sorted(x for _, x in pairs)[len(pairs) // 2]
    how = "" if abs(scale - 1) < 1e-9 else f", scaled x{scale:.3g}"
    return Estimate(rate * size, f"records in {short_path(folder)} (n={len(pairs)}{how})")


def calibrate(config: dict[str, Any], threads: int | None = None) -> Estimate:
    """Seconds of a run from a short in-process training of its config: at every level
    CALIBRATION_WARMUP untimed + CALIBRATION_STEPS timed steps, the median step time per
    level times the schedule's steps there, plus the measured fixed cost of a run."""
    import lightning as L
    import torch

    from bench_mlkan.config import RunConfig
    from bench_mlkan.engine import train

    steps = planned_steps(config)
    if not steps:
        return Estimate(None, "calibration impossible (no schedule)")
    short = [min(s, CALIBRATION_WARMUP + CALIBRATION_STEPS) if s > 0 else 0 for s in steps]
    times: dict[int, list[float]] = {}

    class StepTimer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            level = int(getattr(pl_module, "level", 0))
            times.setdefault(level, []).append(time.perf_counter() - self.t)

    cfg = RunConfig.from_dict(config).replace(
        schedule=short, budget_fractions=None, work_budget=None, eval_every=0,
        checkpoint_dir=None, checkpoint_every=0, resume_from=None, progress=False, wandb=None,
        strategy_name="nested", strategy_options={},  # per-step cost: the plain level pass
    )  # fmt: skip
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        result = train(cfg, callbacks=[StepTimer()])
    except Exception as e:  # noqa: BLE001
        return Estimate(None, f"calibration failed ({type(e).__name__}: {last_line(str(e))})")
    finally:
        torch.set_num_threads(old_threads)
    if not times:
        why = last_line(result.error) if result.status == "failed" else "no step taken"
        return Estimate(None, f"calibration failed ({result.status}: {why})")
    per_level = {
        lvl: sorted(ts[CALIBRATION_WARMUP:] or ts)[len(ts[CALIBRATION_WARMUP:] or ts) // 2]
        for lvl, ts in times.items()
    }
    fixed = max(result.wall_clock - sum(sum(ts) for ts in times.values()), 0.0)
    slowest = max(per_level.values())
    total = fixed + sum(s * per_level.get(lvl, slowest) for lvl, s in enumerate(steps))
    n = sum(len(ts) for ts in times.values())
    return Estimate(total, f"calibration: {n} steps run in this process")


def estimate_all(
    specs: list[RunSpec],
    sources: list[Path],
    calibrate_missing: bool,
    threads: int | None = None,
) -> dict[str, Estimate]:
    """Per run label: seconds and where the number came from: records (with
    ``calibrate_missing``: only records with the run's number of points), else a calibration
    once per task x row when ``calibrate_missing``, else unknown."""
    refs = reference_records(sources)
    cache: dict[str, int | None] = {}
    out: dict[str, Estimate] = {}
    calibrated: dict[tuple[str, str], Estimate] = {}
    for s in specs:
        est = estimate_from_records(s, refs, cache, same_points=calibrate_missing)
        if est is None and calibrate_missing:
            key = (s.task, s.row)
            if key not in calibrated:
                calibrated[key] = calibrate(s.config, threads)
            est = calibrated[key]
        out[s.label] = est or Estimate(None, "no record to estimate from")
    return out


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of running ``seconds`` in order on ``workers`` (each job to the first free)."""
    free = [0.0] * max(1, workers)
    for s in seconds:
        i = free.index(min(free))
        free[i] += s
    return max(free)


def short_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_estimates(
    todo: list[RunSpec], estimates: dict[str, Estimate], workers: int, startup: float = 5.0
) -> None:
    """Per experiment and in total, with each estimate's source."""
    by_task: dict[str, list[RunSpec]] = {}
    for s in todo:
        by_task.setdefault(s.task, []).append(s)
    for task, specs in by_task.items():
        per_run = [estimates[s.label].seconds for s in specs]
        total = sum(x for x in per_run if x is not None)
        unknown = sum(x is None for x in per_run)
        print(
            f"  {task}: {len(specs)} run(s), {fmt_duration(total)} of run time"
            + (f" + {unknown} unknown" if unknown else "")
        )
        rows: dict[str, list[RunSpec]] = {}
        for s in specs:
            rows.setdefault(s.row, []).append(s)
        for row, group in rows.items():
            est = estimates[group[0].label]
            each = ", ".join(fmt_duration(estimates[s.label].seconds) for s in group)
            seeds = ",".join(str(s.seed) for s in group)
            print(f"    {row:<28} seeds {seeds:<24} {each}  [{est.source}]")
    secs = [estimates[s.label].seconds for s in todo]
    known = sorted((x for x in secs if x is not None), reverse=True)
    wall = makespan(known, workers) + (startup if workers > 0 else 0.0)
    missing = sum(x is None for x in secs)
    print(
        f"  total: {fmt_duration(sum(known))} of run time, about {fmt_duration(wall)} wall "
        f"with {max(workers, 1)} worker(s) (longest first; ~{startup:.0f}s worker start-up)"
        + (f"; {missing} run(s) without an estimate" if missing else "")
    )
