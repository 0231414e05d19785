"""Optuna studies: tune a baseline's hyperparameters and its split of a fixed work budget.

``python -m bench_mlkan tune --task T --baseline B --trials N --budget W`` (``make tune
TUNE_ARGS="..."``) searches ``baselines/B/search_space.json`` on task T. Every trial trains
with exactly ``work_budget = W`` (in the config's ``cost_model`` units, see ``work.py``) and
its objective is ``log10`` of the task's validation metric at the end of that budget
(``METRICS``; ``--metric`` overrides). Lower is better.

Search spaces (data, AlgoPerf style; ``suggest`` is the one function that reads them)::

    {"parameters": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": true},
                    "model_options.grid_size": {"type": "int", "low": 3, "high": 8},
                    "optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
                    "budget_fractions": {"type": "budget_split", "levels": {"low": 1, "high": 4}}},
     "tasks": {"regression_rotated": {"lr": {...}, "warmup_steps": null}}}

Keys are RunConfig fields; a dotted key reaches into a nested dict (``model_options.grid_size``
sets ``model_options["grid_size"]``). ``tasks[T]`` replaces entries on task T (``null``
removes one). Categorical choices may be lists or dicts (suggested by their JSON text).
The special ``budget_split`` entry makes "Optuna tunes budgets" literal: it suggests the
number of levels L (``levels``; ``high: null`` = the baseline's levels on the task) and one
``u_l`` in (0, 1] per level, and sets ``budget_fractions[l] = -log u_l / sum_m(-log u_m)``
(uniform u gives a Dirichlet(1, ..., 1) split). A single-level baseline keeps its one
trained level (``budget_fractions`` one-hot from its schedule). ``--set key=value`` fixes a
field for every trial (JSON values; dotted keys) and removes it from the space.

Warning: with ``cost_model`` "paper" a step costs grid_size / base grid, so a larger base
``grid_size`` is not charged more; compare grid sizes with ``--set cost_model='"macs"'``.

Pruning: ``LevelPruning`` reports the metric (log10) at every level boundary (step = the
level that just ended) and stops the run when the pruner says so; the trial is then PRUNED.
A diverged run is PRUNED with ``user_attrs["reason"]``; a crashed run (or a config that buys
no step) is FAILED with ``user_attrs["error"]``. Neither stops the study.

Trial queue and workers: ``--trials N`` is the study's target number of trials. The command
that creates the study queues N trials (``enqueue_trial``); a later command with a larger N
tops the queue up (do that from one machine at a time). Workers pop queued trials only,
so two workers can never run the same trial and a study never ends with more or fewer than
N counted trials. Each running trial sends a heartbeat (RDB storages: Optuna's
``heartbeat_interval``/``grace_period``; journal files: a timestamp in the trial's system
attrs); a trial whose worker died (no heartbeat for ``--grace`` seconds) is failed and
re-queued by Optuna's retry callback (at most 3 times), and a worker stopped by Ctrl-C /
SIGTERM re-queues its trial at once. Workers wait while other workers' trials run, so they
can pick up retries; the study is done when nothing is queued or running.

Distribution: ``--workers K`` starts K worker processes on one study; ``--gpus 0,1,...``
starts one single-device worker per GPU (``CUDA_VISIBLE_DEVICES`` pinned, round-robin when
K > number of GPUs). Never DDP inside a trial. Many machines join one study by running the
same command with the same ``--storage`` URL and ``--study`` name, e.g.::

    python -m bench_mlkan tune --task burgers_1d --baseline kan_multilevel --trials 200 \\
        --budget 1400 --study burgers-ml --gpus 0,1,2,3 \\
        --storage postgresql+psycopg2://optuna:secret@db.example.org/optuna

Storage: default ``sqlite:///leaderboards/studies/<study>/study.db`` (no server; one
machine); ``--storage journal`` or a path ending in ``.log``/``.jsonl`` uses Optuna's
journal file; any SQLAlchemy URL (PostgreSQL, MySQL) for many machines.

Results: the best trial is written to ``baselines/<B>/tuned/<T>.json`` (``{"config": {...}}``
is what ``baseline_config(..., tuned=True)`` merges; the rest says where it came from) and a
summary (``README.md``, ``history.png``) to ``leaderboards/studies/<study>/``. ``--wandb``
logs every trial to Weights & Biases (offline without a key; ``WANDB_MODE`` honoured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

try:  # optuna >= 4.9 renamed the retry callback and its RDBStorage argument
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback

    _RETRY_ARG = "heartbeat_stale_trial_callback"
except ImportError:  # pragma: no cover - older optuna
    from optuna.storages import RetryFailedTrialCallback as RetryCallback

    _RETRY_ARG = "failed_trial_callback"

from .baselines import BASELINES, baseline_config, load_baseline, merge, tuned_path
from .config import ConfigError
from .engine import train
from .records import REPO_ROOT, atomic_write_json

#: The validation metric each task is tuned on (log10 of it is minimised); others: rel_l2.
METRICS: dict[str, str] = {
    "regression_rotated": "test_mse",
    "function_regression": "test_mse",
}
DEFAULT_METRIC = "rel_l2"
STUDIES_DIR = REPO_ROOT / "leaderboards" / "studies"
#: RunConfig fields that say where a trial runs, not what it is: never in a tuned config.
PLACEMENT_KEYS = (
    "seed",
    "accelerator",
    "devices",
    "strategy",
    "progress",
    "checkpoint_dir",
    "checkpoint_every",
    "resume_from",
    "wandb",
)
META_KEY = "bench_mlkan"  # study user attr: what the study tunes (set once queued)
HEARTBEAT_KEY = "bench_mlkan:heartbeat"  # trial system attr (journal storages)
MAX_RETRY = 3


def metric_for(task: str) -> str:
    """The metric a study on ``task`` minimises (log10)."""
    return METRICS.get(task, DEFAULT_METRIC)


# ----------------------------------------------------------------------------- spaces
def load_space(baseline: str, task: str) -> dict[str, dict[str, Any]]:
    """The parameters of ``baselines/<baseline>/search_space.json`` on ``task``."""
    path = BASELINES[baseline] / "search_space.json"
    if not path.exists():
        raise ConfigError(f"baseline {baseline!r} has no search space ({path})")
    data = json.loads(path.read_text())
    space = dict(data.get("parameters", {}))
    for key, entry in data.get("tasks", {}).get(task, {}).items():
        if entry is None:
            space.pop(key, None)
        else:
            space[key] = entry
    for key, entry in space.items():
        _check_entry(key, entry)
    return space


def _check_entry(key: str, entry: dict[str, Any]) -> None:
    kind = entry.get("type")
    if kind in ("float", "int"):
        ok = "low" in entry and "high" in entry and entry["low"] <= entry["high"]
    elif kind == "categorical":
        ok = bool(entry.get("choices"))
    elif kind == "budget_split":
        ok = key == "budget_fractions"
    else:
        ok = False
    if not ok:
        raise ConfigError(
            f"bad search-space entry {key!r}: {entry!r} (types: float/int with low <= high, "
            "categorical with choices, budget_split under the key 'budget_fractions')"
        )


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``key = "a.b"`` (creating inner dicts)."""
    *path, last = key.split(".")
    for part in path:
        data = data.setdefault(part, {})
    data[last] = value


def suggest(
    trial: optuna.trial.BaseTrial, space: dict[str, dict[str, Any]], levels: int
) -> dict[str, Any]:
    """Turn a search space into Optuna suggestions: the RunConfig overrides (nested dict).

    Args:
        trial: the Optuna trial (or ``optuna.trial.FixedTrial``).
        space: ``load_space(...)``.
        levels: the default ``high`` of a budget split (the baseline's levels on the task).
    """
    out: dict[str, Any] = {}
    for key, entry in space.items():
        kind = entry["type"]
        if kind == "float":
            value: Any = trial.suggest_float(
                key,
                entry["low"],
                entry["high"],
                log=entry.get("log", False),
                step=entry.get("step"),
            )
        elif kind == "int":
            value = trial.suggest_int(
                key,
                entry["low"],
                entry["high"],
                log=entry.get("log", False),
                step=entry.get("step", 1),
            )
        elif kind == "categorical":
            choices = entry["choices"]
            if all(isinstance(c, str | int | float | bool) or c is None for c in choices):
                value = trial.suggest_categorical(key, choices)
            else:  # lists/dicts: suggest their JSON text
                value = json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in choices]))
        else:  # budget_split
            lv = entry.get("levels", {})
            high = lv.get("high") or levels
            low = min(lv.get("low", 1), high)
            n = trial.suggest_int("levels", low, high) if high > low else high
            weights = [
                -math.log(trial.suggest_float(f"budget_split.u{i}", 1e-6, 1.0))
                for i in range(n if n > 1 else 0)
            ]
            total = sum(weights)
            value = [w / total for w in weights] if total > 0 else [1.0 / n] * n
        set_dotted(out, key, value)
    return out


def default_fractions(config: dict[str, Any]) -> list[float]:
    """The work share of each level of a schedule (a step at level l costs 2**l coarse steps
    for spline models, 1 for an MLP): one-hot for single-level recipes."""
    schedule = config["schedule"]
    cost = [1.0 if config["model"] == "mlp" else 2.0**level for level in range(len(schedule))]
    work = [s * c for s, c in zip(schedule, cost)]
    return [w / sum(work) for w in work]


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b=3", "c=adam"]`` -> ``{"a.b": 3, "c": "adam"}`` (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        set_dotted(out, key, value)
    return out


# ----------------------------------------------------------------------------- objective
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
        self.reported: dict[int, float] = {}
        self.pruned: dict[str, Any] | None = None

    def _check(self, trainer: L.Trainer, pl_module: Any) -> None:
        refinements = pl_module.refinements
        while self.seen < len(refinements):
            record = refinements[self.seen]
            self.seen += 1
            metrics = record.get("level_end_metrics") or {}
            if self.metric not in metrics:
                raise ConfigError(
                    f"metric {self.metric!r} not among the task's metrics {sorted(metrics)}"
                )
            level = int(record["level"]) - 1
            value = log_value(metrics[self.metric])
            self.trial.report(value, step=level)
            self.reported[level] = value
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


@dataclass
class StudySpec:
    """What a study tunes; the same for every worker (checked against the stored study)."""

    task: str
    baseline: str
    budget: float
    metric: str
    sets: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    accelerator: str | None = None
    wandb: bool = False
    study_name: str = ""
    studies_dir: Path = STUDIES_DIR

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "baseline": self.baseline,
            "budget": self.budget,
            "metric": self.metric,
            "sets": self.sets,
            "seed": self.seed,
        }

    def base_config(self) -> dict[str, Any]:
        """The baseline's config on the task with the ``--set`` overrides applied."""
        cfg = baseline_config(self.baseline, self.task, seed=self.seed, overrides=nested(self.sets))
        return cfg.to_dict()

    def space(self) -> dict[str, dict[str, Any]]:
        """The search space less the keys that ``--set`` fixes."""
        space = load_space(self.baseline, self.task)
        fixed = set(self.sets)
        return {
            k: v
            for k, v in space.items()
            if not any(k == f or k.startswith(f + ".") or f.startswith(k + ".") for f in fixed)
        }


def trial_config(spec: StudySpec, trial: optuna.trial.BaseTrial) -> tuple[dict, dict]:
    """(the full RunConfig dict of a trial, the overrides a tuned config stores)."""
    base = spec.base_config()
    overrides = suggest(trial, spec.space(), levels=len(base["schedule"]))
    if "budget_fractions" not in overrides:
        overrides["budget_fractions"] = base.get("budget_fractions") or default_fractions(base)
    overrides["work_budget"] = spec.budget
    tuned = merge(
        {k: v for k, v in nested(spec.sets).items() if k not in PLACEMENT_KEYS}, overrides
    )
    config = merge(base, overrides)
    config["progress"] = False
    if spec.accelerator:
        config.update(accelerator=spec.accelerator, devices=1, strategy="auto")
    return config, tuned


def objective(spec: StudySpec, trial: optuna.trial.BaseTrial) -> float:
    """Train one trial at the fixed work budget; return log10 of the metric at its end."""
    config, tuned = trial_config(spec, trial)
    trial.set_user_attr("config", tuned)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        trial.set_user_attr("cuda_visible_devices", os.environ["CUDA_VISIBLE_DEVICES"])
    pruning = LevelPruning(trial, spec.metric)
    logger = _wandb_logger(spec, trial, config) if spec.wandb else None
    try:
        result = train(config, callbacks=[pruning], loggers=[logger] if logger else None)
    except BaseException:
        _wandb_finish(logger, None, trial, spec.metric)
        raise
    trial.set_user_attr("status", result.status)
    trial.set_user_attr("work", result.work)
    trial.set_user_attr("steps", result.steps)
    trial.set_user_attr("wall_clock", result.wall_clock)
    _wandb_finish(logger, result, trial, spec.metric)
    if result.status == "failed":
        trial.set_user_attr("error", _tail(result.error))
        raise RuntimeError(f"training failed: {_tail(result.error, 300)}")
    if result.status == "diverged":
        reason = f"diverged: {result.diverged}"
        trial.set_user_attr("reason", reason)
        raise optuna.TrialPruned(reason)
    if pruning.pruned is not None:
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


def _tail(text: str | None, limit: int = 4000) -> str:
    text = text or ""
    return text if len(text) <= limit else "..." + text[-limit:]


def _wandb_logger(spec: StudySpec, trial: optuna.trial.BaseTrial, config: dict) -> Any:
    from .wandb_utils import make_logger

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


def _wandb_finish(logger: Any, result: Any, trial: optuna.trial.BaseTrial, metric: str) -> None:
    if logger is None:
        return
    from .wandb_utils import log_summary

    try:
        summary: dict[str, Any] = {"trial": trial.number}
        if result is not None:
            log_summary(logger, result.to_dict())
            if metric in result.final_metrics:
                summary[f"tune/log10_{metric}"] = log_value(result.final_metrics[metric])
        logger.experiment.summary.update(summary)
        logger.experiment.finish()
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"W&B summary failed: {e}", stacklevel=2)


# ----------------------------------------------------------------------------- storage
def default_study_name(task: str, baseline: str, budget: float) -> str:
    return f"{baseline}.{task}.w{budget:g}"


def resolve_storage_url(storage: str | None, study: str, studies_dir: Path) -> str:
    """``None`` -> the study's SQLite file; "journal" -> its journal file; else as given."""
    folder = studies_dir / study
    if storage is None or storage == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(folder / 'study.db').resolve()}"
    if storage == "journal":
        folder.mkdir(parents=True, exist_ok=True)
        return str((folder / "journal.log").resolve())
    return storage


def is_journal(url: str) -> bool:
    return "://" not in url


def make_storage(url: str, heartbeat: int = 10, grace: int = 60) -> BaseStorage:
    """Optuna storage for ``url`` with heartbeats and retry of trials of dead workers.

    RDB URLs (``sqlite:///...``, ``postgresql+psycopg2://...``): Optuna's heartbeat
    (``heartbeat_interval``, ``grace_period``) with its retry callback for stale trials. A
    file path: a ``JournalStorage`` on a ``JournalFileBackend`` (our own heartbeat, see
    ``Heartbeat``).
    """
    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        storage: BaseStorage = JournalStorage(JournalFileBackend(url))
        storage._bench_mlkan_heartbeat = (heartbeat, grace)  # type: ignore[attr-defined]
        return storage
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    import sqlalchemy.exc

    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry: dict[str, Any] = {_RETRY_ARG: RetryCallback(max_retry=MAX_RETRY)}
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    **retry,
                )
        except sqlalchemy.exc.SQLAlchemyError:
            # commands started together on a fresh database race to create Optuna's tables;
            # the loser finds them made on the next try
            if attempt == 5:
                raise
            time.sleep(0.5 + random.random() * 2**attempt)
    raise AssertionError("unreachable")


def redact(url: str) -> str:
    """The URL without its password (for files that may be committed)."""
    if is_journal(url):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


def _heartbeat_settings(storage: BaseStorage) -> tuple[int, int]:
    if isinstance(storage, RDBStorage):
        interval = storage.heartbeat_interval or 10
        return interval, storage.grace_period or 2 * interval
    return getattr(storage, "_bench_mlkan_heartbeat", (10, 60))


class Heartbeat:
    """A thread that marks ``trial_id`` alive every ``interval`` seconds while it runs."""

    def __init__(self, storage: BaseStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.interval = _heartbeat_settings(storage)[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def beat(self) -> None:
        if isinstance(self.storage, RDBStorage):
            self.storage.record_heartbeat(self.trial_id)
        else:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_KEY, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the trial finished meanwhile, or a DB hiccup
                pass

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def fail_stale_trials(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating and re-queue them (max MAX_RETRY)."""
    if isinstance(storage, RDBStorage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        return sorted(after - before)
    grace = _heartbeat_settings(storage)[1]
    now, failed = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT_KEY)
        if beat is None:
            continue
        started = t.datetime_start.timestamp() if t.datetime_start else 0.0
        if now - max(float(beat), started) <= grace:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                _retry(study, storage, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return failed


def _retry(study: optuna.Study, storage: BaseStorage, trial_id: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryCallback(max_retry=MAX_RETRY)(study, storage.get_trial(trial_id))


# ----------------------------------------------------------------------------- the queue
def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; ``retried`` are failed trials that were re-queued (not counted)."""
    trials = study.get_trials(deepcopy=False)
    retried: set[int] = set()
    for t in trials:
        retried.update(t.system_attrs.get("retry_history", []))
    counts = dict.fromkeys(("complete", "pruned", "failed", "retried", "running", "waiting"), 0)
    for t in trials:
        if t.state == TrialState.FAIL:
            counts["retried" if t.number in retried else "failed"] += 1
        elif t.state.name.lower() in counts:
            counts[t.state.name.lower()] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    counts["live"] = counts["finished"] + counts["running"] + counts["waiting"]
    return counts


def prepare_study(
    storage: BaseStorage, name: str, n_trials: int, meta: dict[str, Any], wait_s: float = 60.0
) -> optuna.Study:
    """Create or join study ``name`` and top its queue up to ``n_trials`` live trials.

    The creator queues the trials and then stores ``meta`` (what the study tunes); a command
    joining an existing study waits for ``meta`` (so it never queues trials the creator is
    still queuing), refuses a study made for something else, and queues only the missing
    trials when ``n_trials`` exceeds the study's target.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        created = False
    stored = study.user_attrs.get(META_KEY)
    deadline = time.monotonic() + wait_s
    while not created and stored is None and time.monotonic() < deadline:
        time.sleep(0.5)
        stored = optuna.load_study(study_name=name, storage=storage).user_attrs.get(META_KEY)
    if stored is not None:
        mismatch = {
            k: (stored.get(k), v)
            for k, v in meta.items()
            if k != "target" and _jsonable(stored.get(k)) != _jsonable(v)
        }
        if mismatch:
            raise ConfigError(
                f"study {name!r} tunes something else: {mismatch} (stored, given); "
                "choose another --study"
            )
    target = int((stored or {}).get("target", 0))
    if created or stored is None or n_trials > target:
        missing = n_trials - trial_counts(study)["live"]
        for _ in range(max(missing, 0)):
            study.enqueue_trial({}, skip_if_exists=False)
        study.set_user_attr(META_KEY, {**meta, "target": max(n_trials, target)})
    return study


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _pop_waiting(storage: BaseStorage, study: optuna.Study) -> int | None:
    """Claim one queued trial (atomic in the storage), or None when the queue is empty."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class _Stop(BaseException):
    """SIGTERM in a worker: stop like Ctrl-C (re-queue the running trial, then exit)."""


def run_worker(
    spec: StudySpec,
    storage: BaseStorage,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    poll_s: float | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run queued trials of ``spec.study_name`` until none is queued or running; returns
    how many this worker ran. A trial interrupted by Ctrl-C/SIGTERM is re-queued before the
    exception propagates."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    study = optuna.load_study(
        study_name=spec.study_name, storage=storage, sampler=sampler, pruner=pruner
    )
    poll = poll_s if poll_s is not None else min(5.0, _heartbeat_settings(storage)[0] / 2)
    ran = 0
    while True:
        for number in fail_stale_trials(study, storage):
            log(f"[tune] trial {number}: its worker stopped beating; failed and re-queued")
        trial_id = _pop_waiting(storage, study)
        if trial_id is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return ran
            time.sleep(poll)
            continue
        trial = Trial(study, trial_id)
        ran += 1
        _run_trial(spec, study, storage, trial, log)


def _run_trial(
    spec: StudySpec, study: optuna.Study, storage: BaseStorage, trial: Trial, log: Callable
) -> None:
    state, value = TrialState.COMPLETE, None
    with Heartbeat(storage, trial._trial_id):
        try:
            value = objective(spec, trial)
        except optuna.TrialPruned as e:
            state = TrialState.PRUNED
            log(f"[tune] trial {trial.number} pruned: {e}")
        except (KeyboardInterrupt, SystemExit, _Stop):
            if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                _tell(study, trial, TrialState.FAIL, None)
                _retry(study, storage, trial._trial_id)
                log(f"[tune] trial {trial.number} interrupted: re-queued")
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            state = TrialState.FAIL  # finished elsewhere: handled below
        except Exception as e:  # noqa: BLE001 - a failed trial never stops the study
            state = TrialState.FAIL
            try:
                if "error" not in storage.get_trial(trial._trial_id).user_attrs:
                    trial.set_user_attr("error", _tail("".join(traceback.format_exception(e))))
            except Exception:  # noqa: BLE001
                pass
            log(f"[tune] trial {trial.number} failed: {e!r}")
    if storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
        log(
            f"[tune] trial {trial.number}: another worker declared it dead (heartbeat later than "
            "--grace) and re-queued it; this run's result is dropped"
        )
        return
    _tell(study, trial, state, value)
    if state == TrialState.COMPLETE:
        log(f"[tune] trial {trial.number}: log10 {spec.metric} = {value:.4f}  {trial.params}")


def _tell(study: optuna.Study, trial: Trial, state: TrialState, value: float | None) -> None:
    # skip_if_finished: another worker may have declared this trial stale and re-queued it
    try:
        if state == TrialState.COMPLETE:
            study.tell(trial, value, skip_if_finished=True)
        else:
            study.tell(trial, state=state, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


# ----------------------------------------------------------------------------- samplers
def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    """TPE; ``constant_liar`` keeps parallel workers from proposing the same point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
        "none": optuna.pruners.NopPruner,
    }
    if name not in pruners:
        raise ConfigError(f"unknown pruner {name!r}; known: {sorted(pruners)}")
    return pruners[name]()


# ----------------------------------------------------------------------------- results
def best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type, return-value]


def write_tuned(study: optuna.Study, spec: StudySpec, url: str) -> Path | None:
    """Write the best trial as ``baselines/<baseline>/tuned/<task>.json``; its path."""
    best = best_trial(study)
    if best is None:
        return None
    path = tuned_path(spec.baseline, spec.task)
    counts = trial_counts(study)
    atomic_write_json(
        path,
        {
            "config": best.user_attrs["config"],
            "value": best.value,
            "metric": f"log10 {spec.metric}",
            "metric_value": best.user_attrs.get("metric_value"),
            "work_budget": spec.budget,
            "study": study.study_name,
            "trial": best.number,
            "storage": redact(url),
            "params": best.params,
            "trials": {k: counts[k] for k in ("complete", "pruned", "failed")},
            "task": spec.task,
            "baseline": spec.baseline,
        },
    )
    return path


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """fANOVA parameter importances, or ({}, why not)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}, f"needs at least 2 complete trials (has {len(done)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study)), ""
    except Exception as e:  # noqa: BLE001 - e.g. no parameter shared by all trials
        return {}, f"not computable: {e}"


def plot_history(study: optuna.Study, path: Path, metric: str) -> None:
    """Optimisation history (matplotlib): complete trials, pruned ones at their last report,
    and the best value so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    trials = study.get_trials(deepcopy=False)
    done = [(t.number, t.value) for t in trials if t.state == TrialState.COMPLETE]
    pruned = [
        (t.number, t.intermediate_values[max(t.intermediate_values)])
        for t in trials
        if t.state == TrialState.PRUNED and t.intermediate_values
    ]
    if done:
        x, y = zip(*sorted(done))
        ax.plot(x, y, "o", color="C0", label="complete")
        best, run = [], math.inf
        for v in y:
            run = min(run, v)
            best.append(run)
        ax.step(x, best, where="post", color="C3", label="best so far")
    if pruned:
        x, y = zip(*pruned)
        ax.plot(x, y, "x", color="0.5", label="pruned (last level reported)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"log10 {metric}")
    ax.set_title(study.study_name, fontsize=9)
    if done or pruned:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_summary(
    study: optuna.Study, spec: StudySpec, url: str, folder: Path, tuned: Path | None
) -> Path:
    """``<folder>/README.md`` + ``history.png``: best value, trial counts, importances."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = trial_counts(study)
    best = best_trial(study)
    imp, why = importances(study)
    plot_history(study, folder / "history.png", spec.metric)
    meta = study.user_attrs.get(META_KEY, {})
    lines = [
        f"# Study `{study.study_name}`",
        "",
        "Generated by `python -m bench_mlkan tune`; do not edit.",
        "",
        f"- task `{spec.task}`, baseline `{spec.baseline}`, objective: log10 `{spec.metric}` "
        f"at the end of a work budget of {spec.budget:g} (cost model units)",
        f"- fixed settings (`--set`): `{json.dumps(spec.sets, sort_keys=True)}`",
        f"- storage `{redact(url)}`, target {meta.get('target', '?')} trials",
        "",
        "| complete | pruned | failed | failed + re-queued | running | queued |",
        "|---|---|---|---|---|---|",
        "| {complete} | {pruned} | {failed} | {retried} | {running} | {waiting} |".format(**counts),
        "",
    ]
    if best is not None:
        lines += [
            f"**Best**: trial {best.number}, log10 {spec.metric} = {best.value:.4f} "
            f"({spec.metric} = {10 ** float(best.value or 0.0):.4g})"
            + (f"; tuned config: `{_rel(tuned)}`" if tuned else ""),
            "",
            "| parameter | value |",
            "|---|---|",
            *[f"| `{k}` | {_fmt(v)} |" for k, v in best.params.items()],
            *[
                f"| `{k}` | {_fmt(v)} |"
                for k, v in best.user_attrs.get("config", {}).items()
                if k in ("budget_fractions", "work_budget")
            ],
            "",
        ]
    else:
        lines += ["**Best**: no complete trial yet.", ""]
    lines += ["## Parameter importances (fANOVA)", ""]
    if imp:
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in imp.items()]
    else:
        lines += [f"n/a: {why}"]
    lines += ["", "## Optimisation history", "", "![optimisation history](history.png)", ""]
    rows = sorted(
        study.get_trials(deepcopy=False),
        key=lambda t: (t.value is None, t.value if t.value is not None else 0.0),
    )[:10]
    lines += [
        "## Trials (best first, at most 10)",
        "",
        "| trial | state | log10 value | params | note |",
        "|---|---|---|---|---|",
    ]
    for t in rows:
        value = f"{t.value:.4f}" if t.value is not None else ""
        error = (t.user_attrs.get("error") or "").strip().splitlines()
        note = t.user_attrs.get("reason") or (error[-1][:120] if error else "")
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        lines.append(f"| {t.number} | {t.state.name} | {value} | {params} | {note} |")
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _rel(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench_mlkan tune",
        description="Optuna study over a baseline's search space at a fixed work budget.",
        epilog="Many machines join one study with the same --storage URL and --study name.",
    )
    p.add_argument("--task", required=True, help="task name (see bench_mlkan.tasks.TASKS)")
    p.add_argument(
        "--baseline", required=True, help="baseline name, or the path of a baseline folder"
    )
    p.add_argument("--trials", type=int, default=20, help="target number of trials of the study")
    p.add_argument(
        "--budget", type=float, required=True, help="work budget per trial (cost-model units)"
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: an RDB URL (sqlite:///..., postgresql+psycopg2://...), 'journal' "
        "or a journal file path; default: leaderboards/studies/<study>/study.db (SQLite)",
    )
    p.add_argument("--study", default=None, help="study name (default <baseline>.<task>.w<budget>)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--gpus", default=None, help="comma-separated GPU ids: one worker per GPU")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a RunConfig field for every trial (JSON value; dotted keys), e.g. "
        "--set task_options.size=tiny",
    )
    p.add_argument("--seed", type=int, default=None, help="training seed of every trial")
    p.add_argument("--sampler-seed", type=int, default=None, help="TPE seed (+ worker index)")
    p.add_argument("--metric", default=None, help="metric to minimise (log10); default per task")
    p.add_argument("--pruner", default="median", help="median | none")
    p.add_argument("--heartbeat", type=int, default=10, help="heartbeat interval (s)")
    p.add_argument("--grace", type=int, default=60, help="seconds without heartbeat = dead")
    p.add_argument("--studies-dir", type=Path, default=STUDIES_DIR, help="summaries go here")
    p.add_argument("--wandb", action="store_true", help="log every trial to W&B")
    p.add_argument("--no-write", action="store_true", help="write no tuned config or summary")
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--accelerator", default=None, help=argparse.SUPPRESS)
    return p.parse_args(list(argv))


def _baseline_name(value: str) -> str:
    """A baseline name; a folder path is registered under its folder name first."""
    path = Path(value)
    if (path / "config.json").exists() and ("/" in value or value not in BASELINES):
        name = path.resolve().name
        if name in BASELINES and Path(BASELINES[name]).resolve() != path.resolve():
            raise ConfigError(f"baseline {name!r} is already registered at {BASELINES[name]}")
        BASELINES.setdefault(name, path.resolve())
        return name
    if value not in BASELINES:
        raise ConfigError(f"unknown baseline {value!r}; known: {', '.join(sorted(BASELINES))}")
    return value


def spec_from_args(args: argparse.Namespace) -> tuple[StudySpec, str]:
    baseline = _baseline_name(args.baseline)
    load_baseline(baseline)
    sets = parse_sets(args.sets)
    study = args.study or default_study_name(args.task, baseline, args.budget)
    spec = StudySpec(
        task=args.task,
        baseline=baseline,
        budget=float(args.budget),
        metric=args.metric or metric_for(args.task),
        sets=sets,
        seed=args.seed,
        accelerator=args.accelerator,
        wandb=args.wandb,
        study_name=study,
        studies_dir=Path(args.studies_dir),
    )
    url = resolve_storage_url(args.storage, study, Path(args.studies_dir))
    return spec, url


def _worker_argv(args: argparse.Namespace, spec: StudySpec, url: str, index: int) -> list[str]:
    argv = [
        "--task", spec.task, "--baseline", str(BASELINES[spec.baseline]),
        "--budget", repr(spec.budget), "--storage", url, "--study", spec.study_name,
        "--metric", spec.metric, "--pruner", args.pruner, "--heartbeat", str(args.heartbeat),
        "--grace", str(args.grace), "--studies-dir", str(args.studies_dir),
        "--worker-only", "--worker-index", str(index),
    ]  # fmt: skip
    for item in args.sets:
        argv += ["--set", item]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.sampler_seed is not None:
        argv += ["--sampler-seed", str(args.sampler_seed)]
    if args.wandb:
        argv.append("--wandb")
    return argv


def launch_workers(
    args: argparse.Namespace, spec: StudySpec, url: str, workers: int, gpus: list[str]
) -> int:
    """Start ``workers`` worker processes (one per GPU, pinned) and wait for them all."""
    procs = []
    threads = max(1, (os.cpu_count() or 1) // workers)
    for i in range(workers):
        env = dict(os.environ)
        argv = _worker_argv(args, spec, url, i)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
            argv += ["--accelerator", "gpu"]
        env.setdefault("OMP_NUM_THREADS", str(threads))
        cmd = [sys.executable, "-m", "bench_mlkan", "tune", *argv]
        # own session: a terminal's Ctrl-C reaches only the parent, which stops each worker
        # once with SIGTERM (the worker re-queues its running trial and exits)
        procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
    try:
        codes = [p.wait() for p in procs]
    except (KeyboardInterrupt, _Stop):
        # SIGTERM, not SIGINT: a worker started from a background shell ignores SIGINT
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    bad = [c for c in codes if c != 0]
    return bad[0] if bad else 0


def tune(
    args: argparse.Namespace,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> int:
    """Run (or join) a study as ``args`` says; 0 when every worker ended normally."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, url = spec_from_args(args)
    storage = make_storage(url, args.heartbeat, args.grace)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    workers = args.workers or max(1, len(gpus))
    pruner = pruner or make_pruner(args.pruner)
    if args.worker_only:
        seed = None if args.sampler_seed is None else args.sampler_seed + args.worker_index
        with _sigterm_stops():
            try:
                run_worker(spec, storage, pruner, sampler or make_sampler(seed))
            except (KeyboardInterrupt, SystemExit, _Stop):
                return 130
        return 0
    if "model_options.grid_size" in spec.space() and spec.base_config()["cost_model"] == "paper":
        print(
            "[tune] note: grid_size is tuned under cost_model 'paper', which does not charge a "
            "larger base grid more; consider --set cost_model='\"macs\"'",
            file=sys.stderr,
        )
    prepare_study(storage, spec.study_name, args.trials, spec.meta())
    code = 0
    with _sigterm_stops():
        try:
            if workers == 1 and not gpus:
                run_worker(spec, storage, pruner, sampler or make_sampler(args.sampler_seed))
            else:
                code = launch_workers(args, spec, url, workers, gpus)
        except (KeyboardInterrupt, SystemExit, _Stop):
            code = 130
            print("[tune] interrupted: run the same command again to resume", file=sys.stderr)
    study = optuna.load_study(study_name=spec.study_name, storage=storage)
    counts = trial_counts(study)
    if not args.no_write:
        tuned = write_tuned(study, spec, url) if code == 0 else None
        summary = write_summary(study, spec, url, Path(args.studies_dir) / spec.study_name, tuned)
        print(f"[tune] summary: {summary}" + (f"\n[tune] tuned config: {tuned}" if tuned else ""))
    best = best_trial(study)
    print(
        f"[tune] study {spec.study_name}: {counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['failed']} failed, {counts['retried']} re-queued"
        + (f"; best log10 {spec.metric} {best.value:.4f} (trial {best.number})" if best else "")
    )
    return code


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


class _sigterm_stops:
    """While active, SIGTERM raises ``_Stop`` (main thread only; restored afterwards)."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _raise_stop)

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def tune_main(argv: Sequence[str]) -> int:
    """``python -m bench_mlkan tune ...`` (see the module docstring)."""
    try:
        return tune(parse_args(argv))
    except ConfigError as e:
        print(f"tune: {e}", file=sys.stderr)
        return 2


main = tune_main
