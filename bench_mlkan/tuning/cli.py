"""``python -m bench_mlkan tune``: parse, validate, run (or join) a study, report.

Exit codes: 0 every trial of this command complete or pruned; 1 a trial failed or a worker
process died (one line says which); 2 bad input (unknown task/baseline/storage, an invalid
config anywhere in the search space, a plugin that does not import, a study that tunes
something else); 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna

from ..baselines import BASELINES, load_baseline
from ..bench import UsageError, add_set_argument, parse_sets
from ..config import ConfigError
from ..home import ENV as HOME_ENV
from ..home import home, tuned_file
from ..plugins import PluginError, load_plugins, load_plugins_from_env
from ..workers import threads_per_worker
from .queue import (
    PRUNERS,
    Stop,
    failed_trials,
    make_pruner,
    make_sampler,
    prepare_study,
    run_worker,
    sigterm_stops,
    trial_counts,
)
from .report import best_trial, retire_tuned, save_plots, write_summary, write_tuned
from .space import StudySpec, normalise_sets, validate_spec
from .storage import ACCEPTED, dashboard_command, make_storage, redact, resolve_storage


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench_mlkan tune",
        description="Optuna study over a baseline's search space at a fixed work budget.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Many machines join one study with the same --storage URL and --study name.\n\n"
        "examples:\n"
        "  make tune\n"
        "  python -m bench_mlkan tune --task regression_rotated --baseline kan_multilevel \\\n"
        "      --trials 40 --budget 128 --workers 2\n"
        "  python -m bench_mlkan tune --task burgers_1d --baseline kan_multilevel --trials 16 \\\n"
        "      --budget 1400 --set task_options.size=small --plugin my_ext.py",
    )
    p.add_argument("--task", required=True, help="task name (see bench_mlkan.tasks.TASKS)")
    p.add_argument(
        "--baseline", required=True, help="baseline name, or the path of a baseline folder"
    )
    p.add_argument("--trials", type=int, default=20, help="target number of trials of the study")
    p.add_argument(
        "--budget", type=float, required=True, help="work budget per trial (cost-model units)"
    )
    p.add_argument("--storage", default=None, help=f"Optuna storage: {ACCEPTED}")
    p.add_argument("--study", default=None, help="study name (default <baseline>.<task>.w<budget>)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--gpus", default=None, help="comma-separated GPU ids: one worker per GPU")
    add_set_argument(p)
    p.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="NAME",
        help="import a module or .py file that registers tasks/models/baselines (repeatable; "
        "workers import it too)",
    )
    p.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="training seed(s) of every trial; with several, a trial trains once per seed and "
        "its value is the mean of log10 metric over them (the geometric mean), pruning "
        "watches the first seed's run",
    )
    p.add_argument("--sampler-seed", type=int, default=None, help="TPE seed (+ worker index)")
    p.add_argument(
        "--metric", default=None, help="metric to optimise (log10); default: the task's metric"
    )
    p.add_argument(
        "--pruner",
        default="median",
        choices=sorted(PRUNERS),
        help="Optuna pruner applied at level boundaries (default: median; none: never prune)",
    )
    p.add_argument("--heartbeat", type=int, default=10, help="heartbeat interval (s)")
    p.add_argument("--grace", type=int, default=60, help="seconds without heartbeat = dead")
    p.add_argument(
        "--out",
        default=None,
        help=f"output home: <out>/studies (storage, summaries, plots) and <out>/tuned "
        f"(tuned configs); default ${HOME_ENV}, else the current directory",
    )
    p.add_argument("--wandb", action="store_true", help="mirror every trial to W&B")
    p.add_argument("--no-write", action="store_true", help="write no tuned config or summary")
    p.add_argument("--no-plots", action="store_true", help="write the summary without plots")
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--accelerator", default=None, help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def namespace_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The command line that ``parser`` parses back into ``args`` (options left at their
    default are omitted): flags, repeated options and multi-value options alike."""
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), None)
        flag = flag or action.option_strings[0]
        if action.nargs == 0:  # store_true / store_false / store_const
            argv.append(flag)
            continue
        items = value if isinstance(action, argparse._AppendAction) else [value]
        for item in items:
            words = item if isinstance(item, list) else [item]
            argv += [flag, *(repr(w) if isinstance(w, float) else str(w) for w in words)]
    return argv


def default_study_name(task: str, baseline: str, budget: float, n_seeds: int = 1) -> str:
    """``<baseline>.<task>.w<budget>``, ``.<n>seeds`` appended when trials train on several
    seeds (another objective, so another study)."""
    name = f"{baseline}.{task}.w{budget:g}"
    return name if n_seeds <= 1 else f"{name}.{n_seeds}seeds"


def baseline_name(value: str) -> str:
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
    """(what the study tunes, its storage URL) from parsed arguments (plugins loaded)."""
    from ..tasks import TASKS

    if args.task not in TASKS:
        raise ConfigError(f"unknown task {args.task!r}; known: {', '.join(sorted(TASKS))}")
    task = TASKS[args.task]
    baseline = baseline_name(args.baseline)
    load_baseline(baseline)
    seeds = list(args.seed or [])
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed: repeated seed in {seeds}")
    study = args.study or default_study_name(args.task, baseline, args.budget, len(seeds))
    spec = StudySpec(
        task=args.task,
        baseline=baseline,
        budget=float(args.budget),
        metric=args.metric or task.metric,
        direction=task.direction,
        sets=normalise_sets(parse_sets(args.set)),
        seed=seeds[0] if seeds else None,
        extra_seeds=tuple(seeds[1:]),
        accelerator=args.accelerator,
        wandb=args.wandb,
        study_name=study,
        out=home(args.out),
    )
    return spec, resolve_storage(args.storage, spec.studies_dir)


def worker_argv(
    args: argparse.Namespace, spec: StudySpec, url: str, index: int, gpu: bool
) -> list[str]:
    """The command line of worker ``index``: the parent's options (``--baseline``,
    ``--plugin`` and ``--set`` as given; a worker shares the parent's working directory)
    with the study, storage, metric and output resolved."""
    worker = argparse.Namespace(**vars(args))
    worker.storage, worker.study, worker.metric = url, spec.study_name, spec.metric
    worker.out = str(spec.out)
    worker.workers = worker.gpus = None
    worker.worker_only, worker.worker_index = True, index
    if gpu:
        worker.accelerator = "gpu"
    return namespace_argv(build_parser(), worker)


def launch_workers(
    args: argparse.Namespace, spec: StudySpec, url: str, workers: int, gpus: list[str]
) -> int:
    """Start ``workers`` worker processes (one per GPU, pinned) and wait for them all;
    0 when all ended normally, else 1 (each worker that did not is named)."""
    procs = []
    threads = threads_per_worker(workers)
    for i in range(workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        env.setdefault("OMP_NUM_THREADS", str(threads))
        argv = worker_argv(args, spec, url, i, bool(gpus))
        cmd = [sys.executable, "-m", "bench_mlkan", "tune", *argv]
        # own session: a terminal's Ctrl-C reaches only the parent, which stops each worker
        # once with SIGTERM (the worker re-queues its running trial and exits)
        procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
    try:
        codes = [p.wait() for p in procs]
    except (KeyboardInterrupt, Stop):
        # SIGTERM, not SIGINT: a worker started from a background shell ignores SIGINT
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    for i, c in enumerate(codes):
        if c != 0:
            print(f"[tune] worker {i} exited with code {c}", file=sys.stderr)
    return 1 if any(codes) else 0


def _failure_line(failed: list[optuna.trial.FrozenTrial], total: int) -> str:
    def why(t: optuna.trial.FrozenTrial) -> str:
        lines = (t.user_attrs.get("error") or "").strip().splitlines()
        return (lines[-1] if lines else "no error recorded")[:100]

    shown = "; ".join(f"trial {t.number}: {why(t)}" for t in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"tune: {len(failed)} of {total} trials failed: {shown}{more}"


def tune(
    args: argparse.Namespace,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> int:
    """Run (or join) a study as ``args`` says; the exit code (see the module docstring)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_plugins(args.plugins)
    load_plugins_from_env()
    spec, url = spec_from_args(args)
    pruner = pruner or make_pruner(args.pruner)
    if args.worker_only:
        storage = make_storage(url, args.heartbeat, args.grace)
        seed = None if args.sampler_seed is None else args.sampler_seed + args.worker_index
        with sigterm_stops():
            try:
                run_worker(spec, storage, pruner, sampler or make_sampler(seed))
            except (KeyboardInterrupt, SystemExit, Stop):
                return 130
        return 0
    for warning in validate_spec(spec):
        print(f"[tune] warning: {warning}", file=sys.stderr)
    if "model_options.grid_size" in spec.space() and spec.base_config()["cost_model"] == "paper":
        print(
            "[tune] note: grid_size is tuned under cost_model 'paper', which does not charge a "
            "larger base grid more; consider --set cost_model='\"macs\"'",
            file=sys.stderr,
        )
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    workers = args.workers or max(1, len(gpus))
    storage = make_storage(url, args.heartbeat, args.grace)
    study = prepare_study(
        storage, spec.study_name, args.trials, spec.meta(), metric_name=spec.objective_name
    )
    failed_before = {t.number for t in failed_trials(study)}
    code = 0
    with sigterm_stops():
        try:
            if workers == 1 and not gpus:
                run_worker(spec, storage, pruner, sampler or make_sampler(args.sampler_seed))
            else:
                code = launch_workers(args, spec, url, workers, gpus)
        except (KeyboardInterrupt, SystemExit, Stop):
            code = 130
            print("[tune] interrupted: run the same command again to resume", file=sys.stderr)
    study = optuna.load_study(study_name=spec.study_name, storage=storage)
    counts = trial_counts(study)
    best = best_trial(study)
    if not args.no_write:
        _write_results(study, spec, url, plots=not args.no_plots)
    print(
        f"[tune] study {spec.study_name}: {counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['failed']} failed, {counts['retried']} re-queued"
        + (f", {counts['waiting'] + counts['running']} not run" if code else "")
        + (f"; best {spec.objective_name} {best.value:.4f} (trial {best.number})" if best else "")
    )
    new_failures = [t for t in failed_trials(study) if t.number not in failed_before]
    if new_failures:
        print(_failure_line(new_failures, counts["finished"]), file=sys.stderr)
        code = code or 1
    return code


def _write_results(study: optuna.Study, spec: StudySpec, url: str, plots: bool) -> None:
    """The tuned config (from this study's best trial only), the summary and the plots."""
    folder = spec.studies_dir / spec.study_name
    path = tuned_file(spec.baseline, spec.task, spec.out)
    tuned = path if write_tuned(study, spec, url, path) else None
    if tuned is None:
        stale = retire_tuned(path)
        print(
            f"[tune] no trial of study {spec.study_name} completed: no tuned config written"
            + (f"; the previous one was moved to {stale}" if stale else ""),
            file=sys.stderr,
        )
    drawn = save_plots(study, folder, spec.objective_name) if plots else {}
    summary = write_summary(study, spec, url, folder, tuned, drawn)
    print(f"[tune] summary: {summary}" + (f"\n[tune] tuned config: {tuned}" if tuned else ""))
    print(f"[tune] browse all studies: {dashboard_command(redact(url))}")


def tune_main(argv: Sequence[str]) -> int:
    """``python -m bench_mlkan tune ...`` (see ``bench_mlkan.tuning``)."""
    try:
        return tune(parse_args(argv))
    except (ConfigError, UsageError, PluginError) as e:
        print(f"tune: {e}", file=sys.stderr)
        return 2


main = tune_main
