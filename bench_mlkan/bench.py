"""The benchmark runner: profiles -> runs -> one JSON record each -> leaderboards.

``python -m bench_mlkan bench --profile quick [--tasks ...] [--baselines ...] [--workers N]``
expands a profile (``bench_mlkan/profiles/<name>.json``: experiments = task x baselines x
seeds, with size overrides) into runs, skips every run whose record already exists with
the same config (so a killed bench resumes where it stopped), runs the rest in parallel
worker processes (one per visible GPU where there are GPUs), writes each record
atomically, then renders the leaderboards. A failed or diverged run is recorded and
never stops the others.

``python -m bench_mlkan run --task T --baseline B --seed S [--set key=value ...] --out F``
runs exactly one and writes exactly that record (+ ``F`` with ``.pt``: per-level weights).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import (
    DEFAULT_RESULTS,
    atomic_save_torch,
    atomic_write_json,
    config_hash,
    failed_record,
    make_record,
    now,
    profile_dir,
    read_record,
    record_path,
    record_row,
    row_name,
)

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


# ----------------------------------------------------------------------------- profiles
def load_profile(name_or_path: str) -> dict[str, Any]:
    """A profile by name (``bench_mlkan/profiles/<name>.json``) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.json"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.json"))
        raise SystemExit(f"unknown profile {name_or_path!r}; known: {', '.join(known)}")
    profile = json.loads(path.read_text())
    profile.setdefault("name", path.stem)
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


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["a.b=1", "schedule=[2,2]"]`` -> ``{"a": {"b": 1}, "schedule": [2, 2]}`` (values as JSON
    where they parse, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def expand(
    profile: dict[str, Any],
    tasks: list[str] | None = None,
    baselines: list[str] | None = None,
    tuned: bool = False,
    extra: dict[str, Any] | None = None,
) -> list[RunSpec]:
    """The runs of a profile (filtered by tasks/baselines), configs fully resolved."""
    from bench_mlkan.baselines import BASELINES, baseline_config, merge

    specs = []
    for exp in profile["experiments"]:
        if tasks and exp["task"] not in tasks:
            continue
        for name in exp["baselines"]:
            if baselines and name not in baselines:
                continue
            BASELINES[name]  # fails early, listing the known baselines
            overrides = merge(
                exp.get("overrides", {}), exp.get("baseline_overrides", {}).get(name, {})
            )
            overrides = merge(overrides, extra or {})
            for seed in exp["seeds"]:
                cfg = baseline_config(
                    name, exp["task"], seed=seed, overrides=overrides, tuned=tuned
                )
                if "schedule_scale" in exp and cfg.budget_fractions is None:
                    cfg = cfg.replace(schedule=scale_schedule(cfg.schedule, exp["schedule_scale"]))
                specs.append(RunSpec(exp["task"], name, seed, cfg.to_dict(), exp.get("variant")))
    return specs


def scale_schedule(schedule: list[int], factor: float) -> list[int]:
    """Scale every level's steps by ``factor`` (nonzero levels keep at least one step), so a
    reduced profile keeps the baselines' relative budgets."""
    return [max(1, round(s * factor)) if s > 0 else 0 for s in schedule]


def is_done(spec: RunSpec, folder: Path) -> bool:
    """A record with the same config exists in one profile's ``folder``."""
    path = record_path(folder, spec.task, spec.row, spec.seed)
    if not path.exists():
        return False
    try:
        return read_record(path).get("config_hash") == config_hash(spec.config)
    except (OSError, json.JSONDecodeError):
        return False


# ----------------------------------------------------------------------------- one run
def run_one(
    spec: RunSpec, out: Path, profile: str | None = None, use_wandb: bool = False
) -> dict[str, Any]:
    """Train ``spec`` and write its record to ``out`` (+ weights to ``out.with_suffix('.pt')``)."""
    from bench_mlkan.config import RunConfig
    from bench_mlkan.engine import train
    from bench_mlkan.tasks import TASKS

    started = now()
    meta: dict[str, Any] = dict(
        task=spec.task,
        baseline=spec.baseline,
        seed=spec.seed,
        profile=profile,
        variant=spec.variant,
    )
    logger = None
    try:
        config = RunConfig.from_dict(spec.config)
        task = TASKS[config.task](**config.task_options)
        if use_wandb:
            from .wandb_utils import make_logger

            logger = make_logger(
                project=os.environ.get("WANDB_PROJECT", "bench-mlkan"),
                group=spec.task,
                name=f"{spec.baseline}-seed{spec.seed}",
                config=spec.config,
                tags=[spec.task, spec.baseline, profile or "adhoc"],
                save_dir=os.environ.get("WANDB_DIR", "wandb"),
            )
        result = train(config, task=task, loggers=[logger] if logger else None)
        record = make_record(result, task_description=task.describe(), started=started, **meta)
        atomic_save_torch(
            out.with_suffix(".pt"), {"levels": result.level_states, "config": spec.config}
        )
    except Exception:  # noqa: BLE001 - a broken run is recorded, the bench goes on
        record = failed_record(spec.config, traceback.format_exc(), started=started, **meta)
    atomic_write_json(out, record)
    if logger is not None:
        from .wandb_utils import log_summary

        log_summary(logger, record)
        logger.experiment.finish()
    return record


def _summary_line(record: dict[str, Any]) -> str:
    m = record.get("final_metrics", {})
    metric = m.get("train_mse", m.get("rel_l2", m.get("train_loss")))
    shown = f"{metric:.3e}" if isinstance(metric, float) else "-"
    return (
        f"{record['task']}/{record_row(record)}/seed{record['seed']}: {record['status']:<8} "
        f"metric {shown}  work {record.get('work', 0):.4g}  {record.get('wall_clock', 0):.1f}s"
    )


# ----------------------------------------------------------------------------- workers
def _worker_init(gpu_queue, threads: int) -> None:
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())
    import torch

    torch.set_num_threads(threads)


def _worker_run(args: tuple[RunSpec, str, str | None, bool]) -> dict[str, Any]:
    spec, out, profile, use_wandb = args
    return run_one(spec, Path(out), profile, use_wandb)


def visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    return env.split(",") if env else [str(i) for i in range(torch.cuda.device_count())]


def run_all(
    specs: list[RunSpec], results: Path, workers: int, profile: str | None, use_wandb: bool = False
) -> list[dict[str, Any]]:
    """Run ``specs`` in ``workers`` processes (one per GPU when there are GPUs)."""
    gpus = visible_gpus()
    if gpus:
        workers = len(gpus)
        specs = [
            RunSpec(s.task, s.baseline, s.seed, {**s.config, "accelerator": "gpu"}, s.variant)
            for s in specs
        ]
    jobs = [
        (s, str(record_path(results, s.task, s.row, s.seed)), profile, use_wandb) for s in specs
    ]
    records = []
    t0 = time.perf_counter()
    if workers <= 1:
        for i, job in enumerate(jobs, 1):
            records.append(_worker_run(job))
            print(
                f"[{i}/{len(jobs)} {time.perf_counter() - t0:6.0f}s] {_summary_line(records[-1])}",
                flush=True,
            )
        return records
    ctx = mp.get_context("spawn")
    gpu_queue = None
    if gpus:
        gpu_queue = ctx.Queue()
        for g in gpus:
            gpu_queue.put(g)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ctx.Pool(
        workers, initializer=_worker_init, initargs=(gpu_queue, threads), maxtasksperchild=1
    ) as pool:
        for i, record in enumerate(pool.imap_unordered(_worker_run, jobs), 1):
            records.append(record)
            print(
                f"[{i}/{len(jobs)} {time.perf_counter() - t0:6.0f}s] {_summary_line(record)}",
                flush=True,
            )
    return records


# ----------------------------------------------------------------------------- CLI
def bench_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_mlkan bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profile", default="quick", help="smoke | quick | paper | path to a JSON profile"
    )
    parser.add_argument("--tasks", nargs="*", help="only these tasks")
    parser.add_argument("--baselines", nargs="*", help="only these baselines")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: profile's)"
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument(
        "--leaderboards", type=Path, default=None, help="where tables go (default: results/..)"
    )
    parser.add_argument("--tuned", action="store_true", help="use baselines/<b>/tuned/<task>.json")
    parser.add_argument(
        "--wandb", action="store_true", help="log every run to W&B (offline without a key)"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields"
    )
    parser.add_argument("--force", action="store_true", help="rerun runs whose record exists")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("--no-render", action="store_true", help="skip rendering the leaderboards")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    specs = expand(profile, args.tasks, args.baselines, args.tuned, parse_sets(args.set))
    folder = profile_dir(args.results, profile["name"])
    todo = specs if args.force else [s for s in specs if not is_done(s, folder)]
    workers = args.workers or int(profile.get("workers", 1))
    print(
        f"profile {profile['name']}: {len(specs)} runs, {len(specs) - len(todo)} already recorded, "
        f"{len(todo)} to run with {workers} worker(s); records in {args.results}",
        flush=True,
    )
    if args.dry_run:
        for s in todo:
            print("  ", s.label)
        return 0
    t0 = time.perf_counter()
    records = run_all(todo, folder, workers, profile["name"], args.wandb)
    bad = [r for r in records if r["status"] != "ok"]
    print(
        f"finished {len(records)} runs in {time.perf_counter() - t0:.0f}s "
        f"({len(bad)} not ok: {', '.join(_summary_line(r) for r in bad) or 'none'})",
        flush=True,
    )
    if not args.no_render:
        render(args.results, args.leaderboards, profile["name"])
    return 0


def render(results: Path, out: Path | None, profile: str) -> None:
    """Render one profile's leaderboards (``<out>/<profile>/``) and the index ``<out>``."""
    from . import leaderboard

    out = out or leaderboard.default_out_root(results)
    written = leaderboard.render_all(results, out, profiles=[profile])
    print(f"leaderboards: {len(written)} files under {out}")


def run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_mlkan run", description=__doc__.split("\n\n")[2])
    parser.add_argument("--task", required=True)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tuned", action="store_true")
    parser.add_argument("--wandb", action="store_true")
    args = parser.parse_args(argv)
    from bench_mlkan.baselines import baseline_config

    config = baseline_config(
        args.baseline, args.task, args.seed, parse_sets(args.set), tuned=args.tuned
    )
    config.validate()
    record = run_one(
        RunSpec(args.task, args.baseline, args.seed, config.to_dict()), args.out, None, args.wandb
    )
    print(_summary_line(record))
    return 0 if record["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
