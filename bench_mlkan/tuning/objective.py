"""The objective: train one trial at the fixed work budget, pruning at level boundaries.

``objective(spec, trial)`` returns ``log10`` of the task's metric at the end of the budget
(with several training seeds: the mean of log10 over them, each seed a full run).
``LevelPruning`` reports the metric (log10) at every level boundary (step = the level that
just ended) and stops the run when the pruner says so; the trial is then PRUNED. A diverged
run is PRUNED with ``user_attrs["reason"]``; a crashed run (or a config that buys no step)
is FAILED with ``user_attrs["error"]``. A W&B mirror (``--wandb``) gets the trial's state
(complete / pruned / failed) in its run summary and tags.
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import optuna

from ..config import ConfigError
from ..engine import RunResult, train
from .space import StudySpec, trial_config

#: the final-metric key of the training loss (tasks ranked by it, e.g. the paper's Burgers
#: table); at a level end it is the refinement record's ``loss_before``
TRAIN_LOSS = "train_loss"


class LevelPruning(L.Callback):
    """Report ``log10(metric)`` at every level boundary (step = the level that ended) and
    stop training when the trial should be pruned (``self.pruned`` then says where).

    It reads ``pl_module.refinements`` (each carries the ``level_end_metrics`` computed just
    before the refinement), so it needs no validation loop; stopping sets
    ``trainer.should_stop`` rather than raising, so the engine ends the run cleanly and the
    objective raises ``optuna.TrialPruned`` after ``train`` returns.
    """

    def __init__(self, trial: optuna.trial.BaseTrial, metric: str):
        self.trial, self.metric = trial, metric
        self.seen = 0
        self.pruned: dict[str, Any] | None = None

    def _check(self, trainer: L.Trainer, pl_module: Any) -> None:
        refinements = pl_module.refinements
        while self.seen < len(refinements):
            record = refinements[self.seen]
            self.seen += 1
            if record.get("kind") in ("restrict", "correct"):
                continue  # a V-cycle's transition, not the end of a nested-pass level
            metrics = dict(record.get("level_end_metrics") or {})
            if "loss_before" in record:  # the training loss at the level's end, exactly
                metrics.setdefault(TRAIN_LOSS, record["loss_before"])
            if self.metric not in metrics:
                raise ConfigError(
                    f"metric {self.metric!r} not among the task's metrics {sorted(metrics)}"
                )
            level = int(record["level"]) - 1
            value = log_value(metrics[self.metric])
            self.trial.report(value, step=level)
            if self.pruned is None and self.trial.should_prune():
                self.pruned = {"level": level, "step": record["step"], "value": value}
                trainer.should_stop = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._check(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)


def log_value(value: float) -> float:
    """log10 of a non-negative metric (nan stays nan; 0 -> -300)."""
    value = float(value)
    if not math.isfinite(value):
        return value
    return math.log10(max(value, 1e-300))


def tail(text: str | None, limit: int = 4000) -> str:
    """The last ``limit`` characters of ``text`` ("..." in front when cut)."""
    text = text or ""
    return text if len(text) <= limit else "..." + text[-limit:]


def objective(spec: StudySpec, trial: optuna.trial.BaseTrial) -> float:
    """Train one trial at the fixed work budget; return log10 of the metric at its end.

    Raises ``optuna.TrialPruned`` (pruned, diverged, non-finite metric) or an exception (the
    trial failed); the reason is in the trial's user attributes."""
    config, tuned = trial_config(spec, trial)
    trial.set_user_attr("config", tuned)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        trial.set_user_attr("cuda_visible_devices", os.environ["CUDA_VISIBLE_DEVICES"])
    pruning = LevelPruning(trial, spec.metric)
    logger = wandb_logger(spec, trial, config) if spec.wandb else None
    result: RunResult | None = None
    state, reason = "failed", ""
    try:
        result = train(config, callbacks=[pruning], loggers=[logger] if logger else None)
        value = _outcome(spec, trial, result, pruning)
        if spec.extra_seeds:
            value = _more_seeds(spec, trial, config, result, value)
        state = "complete"
        return value
    except optuna.TrialPruned as e:
        state, reason = "pruned", str(e)
        raise
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
        raise
    except BaseException as e:  # Ctrl-C, SIGTERM: the trial is re-queued, not failed
        state, reason = "interrupted", type(e).__name__
        raise
    finally:
        wandb_finish(logger, result, trial, spec.metric, state, reason)


def _outcome(
    spec: StudySpec,
    trial: optuna.trial.BaseTrial,
    result: RunResult,
    pruning: LevelPruning | None = None,
) -> float:
    """The trial's value from a finished run, or the exception that says why there is none."""
    trial.set_user_attr("status", result.status)
    trial.set_user_attr("work", result.work)
    trial.set_user_attr("steps", result.steps)
    trial.set_user_attr("wall_clock", result.wall_clock)
    if result.status == "failed":
        trial.set_user_attr("error", tail(result.error))
        raise RuntimeError(f"training failed: {tail(result.error, 300)}")
    if result.status == "diverged":
        reason = f"diverged: {result.diverged}"
        trial.set_user_attr("reason", reason)
        raise optuna.TrialPruned(reason)
    if pruning is not None and pruning.pruned is not None:
        p = pruning.pruned
        reason = f"pruned at the end of level {p['level']} ({spec.metric} log10 {p['value']:.4g})"
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("pruned_at_level", p["level"])
        raise optuna.TrialPruned(reason)
    if spec.metric not in result.final_metrics:
        raise ConfigError(
            f"metric {spec.metric!r} not among the task's metrics {sorted(result.final_metrics)}"
        )
    raw = result.final_metrics[spec.metric]
    trial.set_user_attr("metric_value", raw)
    value = log_value(raw)
    if not math.isfinite(value):
        reason = f"non-finite {spec.metric} {raw!r} at the end of the budget"
        trial.set_user_attr("reason", reason)
        raise optuna.TrialPruned(reason)
    return value


def _more_seeds(
    spec: StudySpec, trial: optuna.trial.BaseTrial, config: dict, first: RunResult, value: float
) -> float:
    """Train the trial's config on ``spec.extra_seeds`` too (no pruning: the first seed's
    run was watched); the mean of log10 metric over all seeds. A failed, diverged or
    non-finite extra run ends the trial as the first seed's would. The user attributes keep
    the per-seed values, ``metric_value`` their geometric mean, ``wall_clock`` the sum."""
    values = {str(spec.seeds[0]): value}
    raw = {str(spec.seeds[0]): first.final_metrics[spec.metric]}
    wall = first.wall_clock
    for seed in spec.extra_seeds:
        result = train({**config, "seed": seed})
        wall += result.wall_clock
        values[str(seed)] = _outcome(spec, trial, result)
        raw[str(seed)] = result.final_metrics[spec.metric]
    mean = sum(values.values()) / len(values)
    trial.set_user_attr("seed_metric_values", raw)
    trial.set_user_attr("metric_value", 10.0**mean)
    trial.set_user_attr("wall_clock", wall)
    return mean


def wandb_logger(spec: StudySpec, trial: optuna.trial.BaseTrial, config: dict) -> Any:
    """A W&B logger for one trial (None when W&B is off or fails to start)."""
    from ..wandb_utils import make_logger

    try:
        return make_logger(
            project=os.environ.get("WANDB_PROJECT", "bench-mlkan"),
            group=f"tune/{spec.study_name}",
            name=f"{spec.study_name}/trial{trial.number}",
            config={**config, "trial": trial.number, "params": dict(trial.params)},
            tags=["tune", spec.task, spec.baseline],
            save_dir=str(Path(spec.studies_dir) / spec.study_name),
        )
    except Exception as e:  # noqa: BLE001 - W&B must never break a trial
        warnings.warn(f"W&B logging off for this trial: {e}", stacklevel=2)
        return None


def wandb_finish(
    logger: Any,
    result: RunResult | None,
    trial: optuna.trial.BaseTrial,
    metric: str,
    state: str,
    reason: str,
) -> None:
    """Close a trial's W&B run with its state ("complete", "pruned", "failed",
    "interrupted") in the summary (``tune/state``, ``tune/reason``) and the tags; a failed
    trial's run is finished with exit code 1 (W&B shows it as failed)."""
    if logger is None:
        return
    from ..wandb_utils import log_summary

    try:
        run = logger.experiment
        summary: dict[str, Any] = {"trial": trial.number, "tune/state": state}
        if reason:
            summary["tune/reason"] = reason[:500]
        if result is not None:
            log_summary(logger, result.to_dict())
            if metric in result.final_metrics:
                summary[f"tune/log10_{metric}"] = log_value(result.final_metrics[metric])
        run.summary.update(summary)
        run.tags = (*tuple(run.tags or ()), state)
        run.finish(exit_code=0 if state in ("complete", "pruned") else 1)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"W&B summary failed: {e}", stacklevel=2)
