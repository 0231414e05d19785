"""The benchmark runner: profiles -> runs -> one JSON record each -> leaderboards.

``python -m bench_mlkan bench --profile quick [--tasks ...] [--baselines ...] [--workers N]``
expands a profile (``bench_mlkan/profiles/<name>.json``: experiments = task x baselines x
seeds, with size overrides; an experiment with ``"variant": "v"`` makes rows ``b@v``),
validates every config, plans the runs against the records of
``<results>/<profile>/`` (``runs/results`` by default, git-ignored; see
``bench_mlkan.records``), runs them in spawned worker processes (one per visible GPU where
there are GPUs), renders ``<leaderboards>/<profile>/`` (default ``runs/leaderboards``) and
compares the main metric with the shipped records of the same profile
(``leaderboards/results/<profile>/``).

Planning, per run (identity: profile, task, row, seed, config hash): an ``ok`` or
``diverged`` record of the same config is final (skipped); a ``failed`` one is retried
(``--no-retry-failed`` keeps it); a record of another config is replaced, except an ``ok``
one: that refuses the bench (exit 2) unless ``--force``; ``--force`` reruns everything. A
failed result never replaces an ok record (it is written beside it as
``seed<k>.failed.json``). A worker that dies (signal, OOM kill, segfault, exit) is noticed
within a second: its run gets a failed record naming the cause and a fresh worker takes
the next run (``bench_mlkan.workers``). SIGINT/SIGTERM kill the workers; rerunning the
command resumes. A bench holds ``<results>/<profile>/.lock``: a second one on the same
folder refuses (``--wait-lock`` waits). Progress lines carry the elapsed time and an ETA;
``--dry-run`` prints estimated times per run and in total (``bench_mlkan.eta``).

Exit codes: 0 every run ok (or nothing to run); 1 a run failed or diverged; 2 bad input
(unknown profile/task/baseline, a filter selecting nothing, an invalid config, an
unwritable folder, an ok record of another config) or the folder locked by another
bench; 128 + signal when interrupted.

``python -m bench_mlkan run --task T --baseline B --seed S [--set key=value ...] --out F``
runs exactly one and writes exactly that record (+ ``F`` with ``.pt``: per-level weights).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import home
from .eta import (
    Progress,
    estimate_all,
    fmt_duration,
    last_line,
    print_estimates,
    short_path,
)
from .records import (
    SHIPPED_RESULTS,
    LockHeld,
    RecordError,
    config_hash,
    failed_record,
    git_commit,
    make_record,
    now,
    profile_dir,
    read_record,
    record_files,
    record_path,
    record_row,
    remove_stale_temporaries,
    results_lock,
    row_name,
    write_record,
)
from .workers import WorkerPool, threads_per_worker, visible_gpus

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
#: --compare-tol default: "same" when ours / reference is within 1 +- this
COMPARE_TOL = 0.1
EXPERIMENT_KEYS = {
    "task",
    "seeds",
    "baselines",
    "overrides",
    "baseline_overrides",
    "schedule_scale",
    "variant",
    "tuned",
}


class UsageError(ValueError):
    """Bad input to the bench (the CLI prints ``error: <message>`` and exits 2)."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT received by the bench (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ----------------------------------------------------------------------------- profiles
def load_profile(name_or_path: str) -> dict[str, Any]:
    """A profile by name (``bench_mlkan/profiles/<name>.json``) or by path, checked."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.json"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.json"))
        raise UsageError(f"unknown profile {name_or_path!r}; known: {', '.join(known)}")
    try:
        profile = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"profile {path}: not valid JSON ({e})") from e
    profile.setdefault("name", path.stem)
    experiments = profile.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise UsageError(f"profile {path}: needs a non-empty list 'experiments'")
    for i, exp in enumerate(experiments):
        where = f"profile {path}, experiment {i}"
        if not isinstance(exp, dict) or not {"task", "seeds", "baselines"} <= set(exp):
            raise UsageError(f"{where}: needs 'task', 'seeds' and 'baselines'")
        unknown = sorted(set(exp) - EXPERIMENT_KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown keys {unknown}; known: {sorted(EXPERIMENT_KEYS)}")
        variant = exp.get("variant")
        if variant is not None and (
            not isinstance(variant, str) or not variant or set(variant) & set("/@\\")
        ):
            raise UsageError(f"{where}: variant must be a name without '/', '@', got {variant!r}")
    return profile


@dataclass
class RunSpec:
    """One run of a profile."""

    task: str
    baseline: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None

    @property
    def row(self) -> str:
        """``baseline`` or ``baseline@variant`` (the leaderboard row and record folder)."""
        return row_name(self.baseline, self.variant)

    @property
    def label(self) -> str:
        return f"{self.task}/{self.row}/seed{self.seed}"


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable (parse the result with parse_sets)."""
    parser.add_argument(
        "--set",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields (dotted keys, JSON values); repeatable",
    )


def parse_sets(pairs: Iterable[str | Iterable[str]]) -> dict[str, Any]:
    """``["a.b=1", "schedule=[2,2]"]`` -> ``{"a": {"b": 1}, "schedule": [2, 2]}`` (values as
    JSON where they parse, else strings). Accepts the nested lists of ``add_set_argument``.
    A key set twice keeps the last value; a key that is both a value and a parent of another
    key is an error."""
    out: dict[str, Any] = {}
    for pair in _flatten(pairs):
        key, sep, raw = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise UsageError(f"--set expects key=value (dotted key), got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"--set {pair!r}: {'.'.join(parts[: i + 1])} is already a value")
            node = child
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise UsageError(f"--set {pair!r}: {key} already has keys set below it")
        node[parts[-1]] = value
    return out


def _flatten(pairs: Iterable[str | Iterable[str]]) -> Iterator[str]:
    for item in pairs:
        if isinstance(item, str):
            yield item
        else:
            yield from item


def expand(
    profile: dict[str, Any],
    tasks: list[str] | None = None,
    baselines: list[str] | None = None,
    tuned: bool = False,
    extra: dict[str, Any] | None = None,
) -> list[RunSpec]:
    """The runs of a profile (filtered by tasks/baselines), configs fully resolved.

    Raises ``UsageError`` for a filter naming something the profile lacks, a filter that
    selects nothing, an unknown baseline, a baseline without settings for its task, or two
    experiments producing the same run."""
    from bench_mlkan.baselines import BASELINES, baseline_config, merge
    from bench_mlkan.config import ConfigError

    exps = profile["experiments"]
    have_tasks = list(dict.fromkeys(e["task"] for e in exps))
    if tasks:
        missing = [t for t in tasks if t not in have_tasks]
        if missing:
            from bench_mlkan.tasks import TASKS

            unknown = [t for t in missing if t not in TASKS]
            raise UsageError(
                f"--tasks {' '.join(missing)}: not in profile {profile['name']!r}; its tasks: "
                f"{', '.join(have_tasks)}"
                + (
                    f" (unknown tasks {', '.join(unknown)}; known: {', '.join(sorted(TASKS))})"
                    if unknown
                    else ""
                )
            )
    selected = [e for e in exps if not tasks or e["task"] in tasks]
    have_baselines = list(dict.fromkeys(b for e in selected for b in e["baselines"]))
    if baselines:
        missing = [b for b in baselines if b not in have_baselines]
        if missing:
            from bench_mlkan.baselines import BASELINES as KNOWN

            unknown = [b for b in missing if b not in KNOWN]
            raise UsageError(
                f"--baselines {' '.join(missing)}: not in the selected experiments of "
                f"profile {profile['name']!r}; they have: {', '.join(have_baselines)}"
                + (
                    f" (unknown baselines {', '.join(unknown)}; known: {', '.join(sorted(KNOWN))})"
                    if unknown
                    else ""
                )
            )
    specs: list[RunSpec] = []
    for exp in selected:
        for name in exp["baselines"]:
            if baselines and name not in baselines:
                continue
            if name not in BASELINES:
                raise UsageError(
                    f"profile {profile['name']!r}: unknown baseline {name!r}; "
                    f"known: {', '.join(sorted(BASELINES))}"
                )
            overrides = merge(
                exp.get("overrides", {}), exp.get("baseline_overrides", {}).get(name, {})
            )
            overrides = merge(overrides, extra or {})
            for seed in exp["seeds"]:
                try:
                    cfg = baseline_config(
                        name,
                        exp["task"],
                        seed=seed,
                        overrides=overrides,
                        tuned=tuned or bool(exp.get("tuned")),
                    )
                except (ConfigError, TypeError) as e:
                    label = f"{exp['task']}/{row_name(name, exp.get('variant'))}/seed{seed}"
                    raise UsageError(f"{label}: {e}") from e
                if "schedule_scale" in exp and cfg.budget_fractions is None:
                    cfg = cfg.replace(schedule=scale_schedule(cfg.schedule, exp["schedule_scale"]))
                specs.append(RunSpec(exp["task"], name, seed, cfg.to_dict(), exp.get("variant")))
    if not specs:
        raise UsageError(f"the filters select no run of profile {profile['name']!r}")
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UsageError(f"profile {profile['name']!r} lists runs twice: {', '.join(dup)}")
    return specs


def scale_schedule(schedule: list[int], factor: float) -> list[int]:
    """Scale every level's steps by ``factor`` (nonzero levels keep at least one step), so a
    reduced profile keeps the baselines' relative budgets."""
    return [max(1, round(s * factor)) if s > 0 else 0 for s in schedule]


def validate_specs(specs: list[RunSpec]) -> None:
    """``RunConfig.from_dict(c).validate()`` of every run; UsageError "<label>: <message>"."""
    from bench_mlkan.config import ConfigError, RunConfig

    for s in specs:
        try:
            RunConfig.from_dict(s.config).validate()
        except (ConfigError, TypeError) as e:
            raise UsageError(f"{s.label}: {e}") from e


def check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a probe file in it (then remove it); UsageError when that fails."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{what} {folder} is not writable: {e.strerror or e}") from e


# ----------------------------------------------------------------------------- planning
@dataclass
class Plan:
    """What a bench will do with each run of a profile in one records folder."""

    todo: list[RunSpec] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)  # label -> reason it runs
    skipped: list[RunSpec] = field(default_factory=list)
    conflicts: list[RunSpec] = field(default_factory=list)  # ok record of another config


def plan_runs(
    specs: list[RunSpec], folder: Path, force: bool = False, retry_failed: bool = True
) -> Plan:
    """Compare every run with the record at its path (rules: module docstring)."""
    plan = Plan()
    for s in specs:
        path = record_path(folder, s.task, s.row, s.seed)
        why = None
        if not path.exists():
            why = "new"
        else:
            try:
                rec = read_record(path)
            except RecordError as e:
                rec, why = None, f"rerun ({e})"
            if rec is not None:
                same = rec.get("config_hash") == config_hash(s.config)
                status = rec.get("status")
                if same and status in ("ok", "diverged"):
                    why = "forced" if force else None
                elif same:
                    why = "retry failed" if retry_failed or force else None
                elif status == "ok" and not force:
                    plan.conflicts.append(s)
                    continue
                else:
                    why = "config changed"
        if why is None:
            plan.skipped.append(s)
        else:
            plan.todo.append(s)
            plan.why[s.label] = why
    return plan


# ----------------------------------------------------------------------------- one run
#: Lightning loggers of ``--logger`` (tensorboard only where it is installed)
LOGGERS = ("csv", "tensorboard", "wandb")
#: auto checkpoints: runs estimated at >= this many seconds get mid-run checkpoints ...
CHECKPOINT_AFTER_S = 120.0
#: ... about every this many seconds of training
CHECKPOINT_PERIOD_S = 60.0
#: auto checkpoints without an estimate: every this many steps (runs with more steps only)
CHECKPOINT_FALLBACK_STEPS = 1000


@dataclass(frozen=True)
class RunOptions:
    """How the bench runs a job beyond its config (never part of the run's identity).

    loggers: Lightning loggers by name (``LOGGERS``); outputs: the folder for ``wandb/``
    and ``logs/`` (``home.outputs_root`` of the records root); checkpoint_every: steps
    between mid-run checkpoints (0: none; a checkpoint folder of the same config left by a
    killed bench is resumed either way)."""

    loggers: tuple[str, ...] = ()
    outputs: str | None = None
    checkpoint_every: int = 0


def checkpoint_dir(record_file: Path) -> Path:
    """``seed<k>.ckpt/`` beside ``seed<k>.json``: the run's mid-run checkpoints."""
    record_file = Path(record_file)
    return record_file.with_name(record_file.name.removesuffix(".json") + ".ckpt")


def checkpoint_every_for(spec: RunSpec, seconds: float | None, policy: int | None) -> int:
    """Steps between checkpoints of ``spec``: ``policy`` when given (0 = never); else (auto)
    about every CHECKPOINT_PERIOD_S of a run estimated at >= CHECKPOINT_AFTER_S, or every
    CHECKPOINT_FALLBACK_STEPS of a longer run without an estimate."""
    if not resumable(spec.config):
        return 0
    if policy is not None:
        return max(0, int(policy))
    from .eta import planned_steps

    steps = sum(planned_steps(spec.config) or [])
    if steps <= 1:
        return 0
    if seconds is None:
        return CHECKPOINT_FALLBACK_STEPS if steps > CHECKPOINT_FALLBACK_STEPS else 0
    if seconds < CHECKPOINT_AFTER_S:
        return 0
    return max(1, math.ceil(steps * CHECKPOINT_PERIOD_S / seconds))


def resumable(config: dict[str, Any]) -> bool:
    """Whether a run of ``config`` can continue from a checkpoint: not a V-cycle, whose open
    cycle (the fine models it will correct) lives only in memory; such a run is never
    checkpointed and a killed one restarts from step 0."""
    return config.get("strategy_name", "nested") != "vcycle"


def _checkpoint_step(path: Path) -> int:
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if path.stem.startswith("step") and digits else -1


def resumable_checkpoint(folder: Path, identity: str) -> Path | None:
    """The newest loadable checkpoint in ``folder`` written for the config ``identity``
    (its hash, in ``folder/identity``); a folder of another config is removed."""
    import shutil

    import torch

    folder = Path(folder)
    if not folder.is_dir():
        return None
    stamp = folder / "identity"
    if not stamp.exists() or stamp.read_text().strip() != identity:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    candidates = sorted(folder.glob("last*.ckpt"), key=lambda p: -p.stat().st_mtime)
    candidates += sorted(folder.glob("step*.ckpt"), key=lambda p: -_checkpoint_step(p))
    for path in candidates:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a checkpoint cut short by the kill: try an older one
            continue
        return path
    return None


def prepare_checkpoints(
    config, record_file: Path, identity: str, every: int
) -> tuple[Any, int | None]:
    """(config with checkpoint_dir / checkpoint_every / resume_from set, the step resumed
    from or None). Resumes from a checkpoint of the same config whatever ``every`` is."""
    import torch

    folder = checkpoint_dir(record_file)
    if not resumable(config.to_dict()):
        if folder.exists():
            print(f"[bench] {record_file.name}: strategy {config.strategy_name!r} cannot resume "
                  "from a checkpoint; restarting from step 0", flush=True)  # fmt: skip
            remove_checkpoints(record_file)
        return config, None
    resume = resumable_checkpoint(folder, identity)
    step = None
    changes: dict[str, Any] = {}
    if resume is not None:
        step = int(torch.load(resume, map_location="cpu", weights_only=True)["global_step"])
        changes["resume_from"] = str(resume)
    if every > 0 or resume is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "identity").write_text(identity + "\n")
        changes["checkpoint_dir"] = str(folder)
        changes["checkpoint_every"] = every if every > 0 else max(1, _largest_interval(folder))
    return (config.replace(**changes) if changes else config), step


def _largest_interval(folder: Path) -> int:
    steps = sorted(s for s in (_checkpoint_step(p) for p in folder.glob("step*.ckpt")) if s > 0)
    return steps[0] if steps else CHECKPOINT_FALLBACK_STEPS


def remove_checkpoints(record_file: Path) -> None:
    import shutil

    shutil.rmtree(checkpoint_dir(record_file), ignore_errors=True)


def make_loggers(
    names: Iterable[str],
    spec: RunSpec,
    profile: str | None,
    outputs: Path,
    run_id: str | None,
    commit: str | None = None,
) -> list[Any]:
    """The Lightning loggers of ``names`` for one run (W&B only when enabled; ``commit``: the
    git commit the run records)."""
    from .records import config_hash

    loggers: list[Any] = []
    version = f"seed{spec.seed}"
    where = f"{profile or 'adhoc'}/{spec.task}/{spec.row}"
    for name in dict.fromkeys(names):
        if name == "csv":
            from lightning.pytorch.loggers import CSVLogger

            loggers.append(CSVLogger(str(outputs / "logs"), name=where, version=version))
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(str(outputs / "logs"), name=where, version=version))
        elif name == "wandb":
            from bench_mlkan.baselines import BASELINES, load_baseline

            from . import wandb_utils as W

            spec_b = load_baseline(spec.baseline) if spec.baseline in BASELINES else {}
            try:
                logger = W.make_logger(
                    project=W.default_project(),
                    group=spec.task,
                    name=f"{spec.row}-seed{spec.seed}",
                    config=W.run_config(
                        spec.config,
                        baseline=spec.baseline,
                        row=spec.row,
                        variant=spec.variant,
                        profile=profile,
                        config_hash=config_hash(spec.config),
                        git_commit=commit,
                        family=spec_b.get("family"),
                        strategy=spec_b.get("strategy"),
                    ),
                    tags=[spec.task, spec.baseline, profile or "adhoc"],
                    save_dir=str(home.wandb_root(outputs)),
                    run_id=run_id,
                    entity=W.default_entity(),
                )
                if logger is not None:
                    _ = logger.experiment  # starts the run now: a W&B error is caught here
                    loggers.append(logger)
            except Exception as e:  # noqa: BLE001 - W&B must never break a run
                print(f"warning: W&B off for {spec.label}: {type(e).__name__}: {e}",
                      file=sys.stderr)  # fmt: skip
        else:
            raise UsageError(f"--logger {name}: unknown; known: {', '.join(LOGGERS)}")
    return loggers


def run_one(
    spec: RunSpec,
    out: Path,
    profile: str | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Train ``spec`` and write its record to ``out`` (+ weights to ``out.with_suffix('.pt')``)
    through ``records.write_record``; the returned record has ``_written`` (its path).

    With ``options.checkpoint_every`` the run checkpoints into ``checkpoint_dir(out)`` and a
    rerun resumes from there (the record says ``resumed_from_step``); the folder is removed
    once an ok or diverged record is written (a failed run keeps it, so a retry resumes).
    Loggers: ``options.loggers``; W&B runs get the bench's identity in their config, the
    evaluations against work, the record's artifacts and their true status."""
    from bench_mlkan.config import RunConfig
    from bench_mlkan.engine import train
    from bench_mlkan.tasks import TASKS

    options = options or RunOptions()
    out = Path(out)
    outputs = Path(options.outputs or home.outputs_root(home.default_results()))
    started = now()
    commit = git_commit()  # once: the record and the W&B config name the same commit
    meta: dict[str, Any] = dict(
        task=spec.task, baseline=spec.baseline, seed=spec.seed, profile=profile,
        variant=spec.variant,
    )  # fmt: skip
    loggers: list[Any] = []
    wandb_logger = None
    link = None
    weights = None
    resumed = None
    try:
        config = RunConfig.from_dict(spec.config)
        task = TASKS[config.task](**config.task_options)
        if "wandb" in options.loggers:
            from . import wandb_utils as W

            if W.wandb_mode() != "disabled":
                run_id = W.new_run_id()
                link = W.run_link(W.default_project(), run_id, W.default_entity())
        loggers = make_loggers(
            options.loggers, spec, profile, outputs, link["id"] if link else None, commit
        )
        wandb_logger = next((lg for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
        callbacks = []
        if wandb_logger is None:
            link = None  # W&B disabled, or it failed to start (warned)
        else:
            from . import wandb_utils as W

            callbacks.append(W.EvalLogger(wandb_logger))
            if W.wandb_mode() == "online" and link is not None:
                link = {**link, "url": wandb_logger.experiment.url or link["url"]}
        config, resumed = prepare_checkpoints(
            config, out, config_hash(spec.config), options.checkpoint_every
        )
        result = train(config, task=task, loggers=loggers or None, callbacks=callbacks)
        result.config = spec.config  # the run's identity, without checkpoint settings
        record = make_record(result, task_description=task.describe(), started=started, **meta)
        weights = {"levels": result.level_states, "config": spec.config}
    except Exception:  # noqa: BLE001 - a broken run is recorded, the bench goes on
        record = failed_record(spec.config, traceback.format_exc(), started=started, **meta)
    record["git_commit"] = commit
    if resumed is not None:
        record["resumed_from_step"] = resumed
    if link is not None:
        record["wandb"] = link
    written = write_record(out, record, weights)
    if record["status"] != "failed":
        remove_checkpoints(out)
    if wandb_logger is not None:
        _finish_wandb(wandb_logger, record, written, outputs)
    for logger in loggers:
        if logger is not wandb_logger:
            with contextlib.suppress(Exception):
                logger.finalize("success" if record["status"] == "ok" else "failed")
    return {**record, "_written": str(written)}


def _finish_wandb(logger, record: dict[str, Any], written: Path, outputs: Path) -> None:
    """Summary, artifacts (record, weights, plot) and the true status of a W&B run; a W&B
    error is reported, never fatal (the record is already written)."""
    from . import wandb_utils as W

    try:
        W.log_summary(logger, record)
        name = f"{record['task']}-{record_row(record)}-{Path(written).stem}.png"
        plot = W.plot_run(record, home.wandb_root(outputs) / "wandb" / "plots" / name)
        W.log_run_artifacts(logger, record, written, [plot] if plot else [])
    except Exception as e:  # noqa: BLE001
        print(f"warning: W&B logging failed: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            W.finish(logger, record["status"])


def main_metric(record: dict[str, Any]) -> tuple[str, float | None]:
    """(label, value) of the leaderboard's main metric of a record's task."""
    from .scoring import task_info

    info = task_info(record["task"])
    value = (record.get("final_metrics") or {}).get(info.metric)
    return info.metric_label, (float(value) if isinstance(value, int | float) else None)


def outcome(record: dict[str, Any]) -> str:
    """One line: the run, its status and metric, or why it did not finish."""
    head = f"{record['task']}/{record_row(record)}/seed{record['seed']}: {record['status']}"
    status = record["status"]
    if status == "failed":
        text = f"{head}  {last_line(record.get('error'))}"
        if "_written" in record and Path(record["_written"]).name.endswith(".failed.json"):
            text += " (the ok record was kept; this failure is in seed*.failed.json)"
        return text
    if status == "diverged":
        d = record.get("diverged") or {}
        return f"{head} at step {d.get('step', '?')} (level {d.get('level', '?')})"
    label, value = main_metric(record)
    shown = f"{value:.3e}" if value is not None else "-"
    return (
        f"{head}  {label} {shown}  work {float(record.get('work') or 0):.4g}  "
        f"{float(record.get('wall_clock') or 0):.1f}s"
    )


def run_all(
    specs: list[RunSpec],
    folder: Path,
    workers: int,
    profile: str | None,
    options: RunOptions | None = None,
    gpus: list[str] | None = None,
    estimates: dict[str, float | None] | None = None,
    checkpoint_policy: int | None = 0,
) -> list[dict[str, Any]]:
    """Run ``specs`` into one profile's ``folder``: in ``workers`` spawned processes (one per
    GPU in ``gpus``), or in this process when ``workers`` is 0. Prints a line per start and
    per result (elapsed, ETA); returns the records (without histories).

    ``checkpoint_policy``: steps between mid-run checkpoints, 0 none, None automatic from
    the estimates (``checkpoint_every_for``)."""
    gpus = gpus or []
    n = len(gpus) if gpus else workers
    estimates = estimates or {}
    options = options or RunOptions()
    progress = Progress([s.label for s in specs], estimates, max(n, 1))
    records: list[dict[str, Any]] = []
    jobs = []
    for s in specs:
        every = checkpoint_every_for(s, estimates.get(s.label), checkpoint_policy)
        job_options = RunOptions(options.loggers, options.outputs, every)
        jobs.append((s, str(record_path(folder, s.task, s.row, s.seed)), profile, job_options))

    def started(job: tuple, pid: int) -> None:
        progress.start(job[0].label)
        print(f"{progress.prefix()} start {job[0].label} (worker pid {pid})", flush=True)

    def done(job: tuple, record: dict[str, Any] | None, dead: str | None) -> None:
        spec = job[0]
        if record is None:
            rec = failed_record(
                spec.config, dead or "worker died", task=spec.task, baseline=spec.baseline,
                seed=spec.seed, profile=profile, started=now(), variant=spec.variant,
            )  # fmt: skip
            record = {**rec, "_written": str(write_record(Path(job[1]), rec))}
        progress.finish(spec.label)
        records.append(record)
        print(f"{progress.prefix()} {outcome(record)}", flush=True)

    def idle() -> None:
        now_ = time.perf_counter()
        running = ", ".join(
            f"{label} ({fmt_duration(now_ - t)})" for label, t in sorted(progress.running.items())
        )
        print(f"{progress.prefix()} running: {running}", flush=True)

    if not jobs:
        return records
    if n <= 0:
        for job in jobs:
            started(job, os.getpid())
            done(job, run_one(job[0], Path(job[1]), profile, job[3]), None)
        return records
    threads = threads_per_worker(n)
    pool = WorkerPool(min(n, len(jobs)), gpus, threads)
    try:
        pool.start()
        pool.run(jobs, started, done, idle)
    except BaseException:  # interrupted: no worker outlives the bench
        pool.kill_all()
        raise
    pool.close()
    return records


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into ``Interrupted`` in the main thread (restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------- comparison
def compare_with_reference(
    specs: list[RunSpec], folder: Path, reference: Path, tol: float = COMPARE_TOL
) -> list[str]:
    """Lines comparing the main metric per (task, row) with a reference folder: the mean over
    the seeds both have ok, ours / reference, "same" within 1 +- tol."""
    ours = {(r["task"], record_row(r), r["seed"]): r for r in _records(folder)}
    ref = {(r["task"], record_row(r), r["seed"]): r for r in _records(reference)}
    groups: dict[tuple[str, str], list[int]] = {}
    for s in specs:
        groups.setdefault((s.task, s.row), []).append(s.seed)
    lines, counts = [], {"same": 0, "differ": 0, "no reference": 0, "not ok": 0}
    width = max(len(f"{t}/{r}") for t, r in groups)
    for (task, row), seeds in groups.items():
        pairs = [
            (ours[task, row, s], ref[task, row, s])
            for s in seeds
            if (task, row, s) in ours and (task, row, s) in ref
        ]
        name = f"{task}/{row}".ljust(width)
        if not pairs:
            verdict = "no reference" if not any((task, row, s) in ref for s in seeds) else "not ok"
            counts[verdict] += 1
            lines.append(f"  {name}  {verdict}")
            continue
        a = [main_metric(o)[1] for o, _ in pairs]
        b = [main_metric(r)[1] for _, r in pairs]
        ok = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
        label = main_metric(pairs[0][0])[0]
        if not ok:
            counts["not ok"] += 1
            lines.append(f"  {name}  {label}: not ok in one of them")
            continue
        mine = sum(x for x, _ in ok) / len(ok)
        theirs = sum(y for _, y in ok) / len(ok)
        ratio = mine / theirs if theirs else (1.0 if mine == theirs else math.inf)
        verdict = "same" if abs(ratio - 1.0) <= tol else "differ"
        counts[verdict] += 1
        lines.append(
            f"  {name}  {label} {mine:.3e} vs {theirs:.3e}  ratio {ratio:.3g}  {verdict}"
            f" (seeds {len(ok)})"
        )
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return [*lines, f"  {summary}"]


def _records(folder: Path) -> Iterator[dict[str, Any]]:
    for path in record_files(folder):
        with contextlib.suppress(RecordError):
            yield read_record(path, verify_weights=False)


# ----------------------------------------------------------------------------- CLI
BENCH_EXAMPLES = """examples:
  python -m bench_mlkan bench --profile smoke                  # seconds: every code path
  python -m bench_mlkan bench --profile quick --tasks burgers_1d --baselines kan_multilevel \\
      mlp_small --workers 2 --set task_options.size=small       # one experiment, smaller grid
  WANDB_PROJECT=mine python -m bench_mlkan bench --profile quick --wandb --logger csv

exit codes: 0 all ok; 1 a run failed or diverged; 2 bad input or locked folder;
128 + signal when interrupted (rerun the same command to resume)"""

RUN_EXAMPLES = """examples:
  python -m bench_mlkan run --task regression_rotated --baseline kan_multilevel --seed 1 \\
      --out r.json
  python -m bench_mlkan run --task burgers_1d_standard --baseline mlp_small --seed 1234 \\
      --set task_options.size=tiny schedule=[50] --out b.json --logger csv
  python -m bench_mlkan run --plugin ./my_task.py --task my_task --baseline my_recipe \\
      --seed 1 --out m.json

exit codes: 0 ok; 1 failed or diverged; 2 bad input"""


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin NAME`` (repeatable): a module or ``.py`` file imported before anything else
    (``bench_mlkan.plugins``); worker processes import it too."""
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="NAME",
        help="a module or .py file that registers tasks, models or baselines, imported here "
        "and in every worker (repeatable)",
    )


def add_logger_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logger",
        dest="loggers",
        action="append",
        default=[],
        choices=LOGGERS,
        help="Lightning logger per run (repeatable): csv / tensorboard into <outputs>/logs/, "
        "wandb as --wandb (tensorboard needs `pip install tensorboard`)",
    )


def _parser_bench() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench_mlkan bench",
        description=__doc__.split("\n\n")[0],
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--profile",
        default="quick",
        help="smoke | quick | paper | a path to a JSON profile (default: quick)",
    )
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks")
    parser.add_argument("--baselines", nargs="+", metavar="BASELINE", help="only these baselines")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: the profile's; 0 = in this process, no isolation; "
        "with GPUs: one per visible GPU)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="records root; runs go to <results>/<profile>/ (default: runs/results under "
        "$BENCH_MLKAN_HOME or the current directory)",
    )
    parser.add_argument(
        "--leaderboards",
        type=Path,
        default=None,
        help="tables root; <leaderboards>/<profile>/ (default: runs/leaderboards beside the "
        "default results, else the results root's parent)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="records to compare with (default: the shipped leaderboards/results/<profile>)",
    )
    parser.add_argument(
        "--compare-tol",
        type=float,
        default=COMPARE_TOL,
        help=f"'same' when ours / reference is within 1 +- this (default {COMPARE_TOL})",
    )
    parser.add_argument(
        "--tuned", action="store_true", help="use baselines/<b>/tuned/<task>.json on top"
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="log every run to W&B ($WANDB_PROJECT, $WANDB_ENTITY; offline without an API "
        "key, into <outputs>/wandb) and publish per-task leaderboard tables at the end",
    )
    add_logger_argument(parser)
    add_set_argument(parser)
    add_plugin_argument(parser)
    parser.add_argument(
        "--checkpoint-every",
        type=_checkpoint_policy,
        default=None,
        metavar="STEPS|auto",
        help="mid-run checkpoints into <record>.ckpt/ every STEPS steps (0: none; default "
        f"auto: runs estimated at >= {CHECKPOINT_AFTER_S:.0f}s, about every "
        f"{CHECKPOINT_PERIOD_S:.0f}s); a killed bench resumes from them when rerun",
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun every run, replacing ok records"
    )
    parser.add_argument(
        "--no-retry-failed", action="store_true", help="keep failed records (default: rerun)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs with time estimates and exit"
    )
    parser.add_argument("--no-render", action="store_true", help="skip rendering the leaderboards")
    parser.add_argument(
        "--wait-lock", action="store_true", help="wait for another bench on the same folder"
    )
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    return parser


def _checkpoint_policy(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of steps or 'auto', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def bench_main(argv: list[str]) -> int:
    args = _parser_bench().parse_args(argv)
    try:
        return _bench(args)
    except (UsageError, LockHeld) as e:
        if args.traceback:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2


def load_user_plugins(names: list[str]) -> None:
    """``plugins.load_plugins(names)`` (and installed entry points); UsageError naming a
    plugin that fails to import."""
    from .plugins import PluginError, load_plugins

    try:
        load_plugins(names)
    except PluginError as e:
        raise UsageError(str(e)) from None


def check_loggers(names: list[str]) -> None:
    """UsageError for a logger whose package is missing (tensorboard)."""
    if "tensorboard" in names:
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
            raise UsageError(
                "--logger tensorboard: tensorboard is not installed (pip install tensorboard)"
            )


def config_warnings(specs: list[RunSpec]) -> list[str]:
    """``RunConfig.warnings()`` of every run, each distinct one once, with the runs it
    concerns (``"<warning> (<n> run(s): <labels>)"``)."""
    from bench_mlkan.config import RunConfig

    found: dict[str, list[str]] = {}
    for s in specs:
        for w in RunConfig.from_dict(s.config).warnings():
            found.setdefault(w, []).append(s.label)
    lines = []
    for w, labels in found.items():
        shown = ", ".join(labels[:3]) + (
            f", ... ({len(labels) - 3} more)" if len(labels) > 3 else ""
        )
        lines.append(f"{w} ({len(labels)} run(s): {shown})")
    return lines


def _bench(args: argparse.Namespace) -> int:
    load_user_plugins(args.plugins)
    check_loggers(args.loggers)
    if args.results is None:
        args.results = home.default_results()
    profile = load_profile(args.profile)
    name = profile["name"]
    specs = expand(profile, args.tasks, args.baselines, args.tuned, parse_sets(args.set))
    gpus = visible_gpus()
    if gpus:
        specs = [
            RunSpec(s.task, s.baseline, s.seed, {**s.config, "accelerator": "gpu"}, s.variant)
            for s in specs
        ]
    validate_specs(specs)
    for line in config_warnings(specs):
        print(f"warning: {line}", file=sys.stderr)
    folder = profile_dir(args.results, name)
    out_root = args.leaderboards
    if out_root is None:
        default = Path(args.results).resolve() == home.default_results().resolve()
        out_root = home.default_leaderboards() if default else Path(args.results).resolve().parent
    workers = len(gpus) if gpus else (
        args.workers if args.workers is not None else int(profile.get("workers", 1))
    )  # fmt: skip
    if args.dry_run:
        return _dry_run(args, specs, folder, workers)
    check_writable(folder, "--results folder")
    if not args.no_render:
        check_writable(out_root, "--leaderboards folder")

    def waiting(pid: int | None) -> None:
        print(f"waiting for the bench (pid {pid or '?'}) that holds {folder / '.lock'}", flush=True)

    try:
        with results_lock(folder, wait=args.wait_lock, on_wait=waiting):
            return _bench_locked(args, profile, specs, folder, out_root, workers, gpus)
    except LockHeld as e:
        raise UsageError(
            f"another bench (pid {e.pid or '?'}) is writing {folder} (lock {e.path}); "
            "wait for it, or pass --wait-lock"
        ) from None


def run_loggers(args: argparse.Namespace) -> tuple[str, ...]:
    """The loggers of ``--logger`` and ``--wandb`` (each once, in order)."""
    names = list(args.loggers) + (["wandb"] if args.wandb else [])
    return tuple(dict.fromkeys(names))


def _dry_run(args, specs: list[RunSpec], folder: Path, workers: int) -> int:
    plan = plan_runs(specs, folder, args.force, not args.no_retry_failed)
    print(_header(args, specs, plan, folder, workers), flush=True)
    _print_conflicts(plan, folder, error=False)
    if plan.todo:
        threads = threads_per_worker(workers)
        estimates = estimate_all(plan.todo, _estimate_sources(args, folder), True, threads)
        print("estimated wall time (from records of the same task, baseline and points scaled "
              "by steps, else a short calibration in this process):")  # fmt: skip
        print_estimates(plan.todo, estimates, workers)
    return 0


def _estimate_sources(args, folder: Path) -> list[Path]:
    name = folder.name
    root = Path(args.results)
    others = [p for p in sorted(root.glob("*")) if p.is_dir() and p.name != name]
    shipped = [p for p in sorted(SHIPPED_RESULTS.glob("*")) if p.is_dir() and p.name != name]
    return [folder, SHIPPED_RESULTS / name, *others, *shipped]


def _header(args, specs: list[RunSpec], plan: Plan, folder: Path, workers: int) -> str:
    reasons: dict[str, int] = {}
    for label in plan.why.values():
        reasons[label.split(" (")[0]] = reasons.get(label.split(" (")[0], 0) + 1
    why = ", ".join(f"{n} {r}" for r, n in reasons.items())
    return (
        f"profile {folder.name}: {len(specs)} runs, {len(plan.skipped)} already recorded, "
        f"{len(plan.todo)} to run{f' ({why})' if why else ''}"
        f"{f', {len(plan.conflicts)} refused' if plan.conflicts else ''} with "
        f"{workers or 'no'} worker process(es); records in {short_path(folder)}"
    )


def _print_conflicts(plan: Plan, folder: Path, error: bool) -> None:
    if not plan.conflicts:
        return
    labels = ", ".join(s.label for s in plan.conflicts)
    msg = (
        f"{len(plan.conflicts)} run(s) have an ok record of another config in {short_path(folder)} "
        f"(--force replaces them): {labels}"
    )
    if error:
        raise UsageError(msg)
    print(f"refused: {msg}")


def _bench_locked(args, profile, specs, folder: Path, out_root: Path, workers, gpus) -> int:
    remove_stale_temporaries(folder)
    plan = plan_runs(specs, folder, args.force, not args.no_retry_failed)
    _print_conflicts(plan, folder, error=True)
    print(_header(args, specs, plan, folder, workers), flush=True)
    for label, why in plan.why.items():
        if why.startswith("rerun ("):
            print(f"  {label}: {why}")
    estimates = {
        k: e.seconds
        for k, e in estimate_all(plan.todo, _estimate_sources(args, folder), False).items()
    }
    todo = sorted(plan.todo, key=lambda s: -(estimates.get(s.label) or 0.0))  # longest first
    options = RunOptions(run_loggers(args), str(home.outputs_root(args.results)))
    t0 = time.perf_counter()
    try:
        with signals_raise():
            records = run_all(
                todo, folder, workers, profile["name"], options, gpus, estimates,
                args.checkpoint_every,
            )  # fmt: skip
    except (Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Interrupted) else int(signal.SIGINT)
        print(
            f"interrupted by {signal.Signals(signum).name}: workers killed; rerun the same "
            "command to resume (finished runs are kept)",
            file=sys.stderr,
            flush=True,
        )
        return 128 + signum
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "diverged", "failed")}
    bad = [f"{r['task']}/{record_row(r)}/seed{r['seed']}" for r in records if r["status"] != "ok"]
    kept = [r for r in records if Path(r.get("_written", "")).name.endswith(".failed.json")]
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s == "ok")
    print(
        f"finished {len(records)} run(s) in {fmt_duration(time.perf_counter() - t0)}: {summary}"
        + (f": {', '.join(bad)}" if bad else ""),
        flush=True,
    )
    for r in kept:
        print(f"  the failed rerun is in {r['_written']}; the ok record beside it was kept")
    if not args.no_render:
        render(Path(args.results), out_root, profile["name"])
    if "wandb" in options.loggers:
        publish_wandb(folder, profile["name"], home.outputs_root(args.results))
    reference = args.reference or SHIPPED_RESULTS / profile["name"]
    if Path(reference).resolve() != folder.resolve():
        if record_files(reference):
            print(
                f"main metric vs the reference records in {short_path(reference)} (mean over the "
                f"seeds both have ok; 'same' = ratio within 1 +- {args.compare_tol:g}):"
            )
            for line in compare_with_reference(specs, folder, reference, args.compare_tol):
                print(line)
        else:
            print(f"no reference records in {short_path(reference)} to compare with")
    return 1 if bad else 0


def render(results: Path, out: Path | None, profile: str) -> None:
    """Render one profile's leaderboards (``<out>/<profile>/``) and the index ``<out>``."""
    from . import reporting

    out = out or reporting.default_out_root(results)
    written = reporting.render_all(results, out, profiles=[profile])
    print(f"leaderboards: {len(written)} files under {short_path(out)}")


def publish_wandb(folder: Path, profile: str, outputs: Path) -> None:
    """Publish the profile's per-task leaderboard tables to W&B (never fatal)."""
    from . import wandb_utils as W

    if W.wandb_mode() == "disabled":
        return
    try:
        link = W.publish_leaderboards(list(_records(folder)), profile, home.wandb_root(outputs))
        if link is not None:
            where = (
                link["url"]
                or f"{link['path']} (offline: wandb sync {home.wandb_root(outputs) / 'wandb'})"
            )
            print(f"W&B ({W.wandb_mode()}): leaderboard tables of {profile} in {where}")
    except Exception as e:  # noqa: BLE001 - the local records and tables are the truth
        print(f"warning: W&B leaderboard not published: {type(e).__name__}: {e}", file=sys.stderr)


def _parser_run() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench_mlkan run",
        description=__doc__.split("\n\n")[-1],
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, help="task name (bench_mlkan.tasks.TASKS)")
    parser.add_argument(
        "--baseline", required=True, help="baseline name (a folder under baselines/)"
    )
    parser.add_argument("--seed", type=int, required=True, help="training seed")
    add_set_argument(parser)
    parser.add_argument(
        "--out", type=Path, required=True, help="the record's path (weights: same name, .pt)"
    )
    parser.add_argument(
        "--tuned", action="store_true", help="use baselines/<b>/tuned/<task>.json on top"
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="log the run to W&B ($WANDB_PROJECT, $WANDB_ENTITY; offline without an API key, "
        "into runs/wandb under $BENCH_MLKAN_HOME or the current directory)",
    )
    add_logger_argument(parser)
    add_plugin_argument(parser)
    parser.add_argument(
        "--checkpoint-every",
        type=_checkpoint_policy,
        default=None,
        metavar="STEPS|auto",
        help="mid-run checkpoints into <out>.ckpt/ every STEPS steps (0: none; default auto: "
        f"every {CHECKPOINT_FALLBACK_STEPS} steps of a longer run); a rerun resumes from them",
    )
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    return parser


def run_main(argv: list[str]) -> int:
    args = _parser_run().parse_args(argv)
    from bench_mlkan.baselines import BASELINES, baseline_config
    from bench_mlkan.config import ConfigError

    label = f"{args.task}/{args.baseline}/seed{args.seed}"
    try:
        load_user_plugins(args.plugins)
        check_loggers(args.loggers)
        if args.baseline not in BASELINES:
            raise UsageError(
                f"unknown baseline {args.baseline!r}; known: {', '.join(sorted(BASELINES))}"
            )
        try:
            config = baseline_config(
                args.baseline, args.task, args.seed, parse_sets(args.set), tuned=args.tuned
            )
            config.validate()
        except (ConfigError, TypeError) as e:
            raise UsageError(f"{label}: {e}") from e
        check_writable(Path(args.out).parent, "--out folder")
    except UsageError as e:
        if args.traceback:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    spec = RunSpec(args.task, args.baseline, args.seed, config.to_dict())
    for line in config_warnings([spec]):
        print(f"warning: {line}", file=sys.stderr)
    every = checkpoint_every_for(spec, None, args.checkpoint_every)
    outputs = str(home.outputs_root(home.default_results()))
    record = run_one(spec, args.out, None, RunOptions(run_loggers(args), outputs, every))
    print(outcome(record))
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
