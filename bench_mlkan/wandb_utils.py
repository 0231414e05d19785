"""Weights & Biases, safely: offline unless an API key is set, never a hang without network.

Local JSON records stay the source of truth; W&B mirrors them. ``WANDB_MODE`` set by the
user (``disabled``, ``offline``, ``online``) is always honoured; ``WANDB_PROJECT`` and
``WANDB_ENTITY`` choose where runs go.

What one bench run puts into W&B (``bench --wandb`` / ``--logger wandb``):

* config: the RunConfig plus ``baseline``, ``row``, ``variant``, ``profile``, ``family``,
  ``strategy``, ``config_hash``, ``git_commit`` (``run_config``);
* metrics: the engine's per-step ``train/*`` rows (with ``work`` and
  ``trainer/global_step``), and ``eval/*`` rows - every level end, every ``eval_every``
  steps and the final evaluation - each carrying ``work`` and ``trainer/global_step``;
  ``define_metric`` plots ``eval/*`` and ``train/*`` against ``work`` by default
  (``EvalLogger``, ``define_work_metrics``);
* summary and tags: ``final/*``, ``status``, params, work, evaluations, wall-clock; tags
  task, baseline, profile and the status; a failed or diverged run ends with exit code 1
  (W&B shows it as failed) (``log_summary``, ``finish``);
* an artifact ``run-<task>-<row>-seed<k>`` (type ``run-record``): the JSON record, the
  weights ``.pt`` and the run's plot (``log_run_artifacts``, ``plot_run``).

At the end, ``bench --wandb`` publishes one ``wandb.Table`` per task (job type
``leaderboard``): numeric columns per row - mean, median, sd, geometric mean, min, max,
one column per seed, mean work, evaluations and params, status counts - and the links to
the rows' runs (``leaderboard_tables``, ``publish_leaderboards``). Everything goes into
one folder per bench, ``<outputs>/wandb`` (offline runs, and W&B's artifact staging and
cache unless ``WANDB_CACHE_DIR``/``WANDB_DATA_DIR`` are set; ``local_dirs``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L

#: finished statuses that W&B should show as failed runs
BAD_STATUSES = ("failed", "diverged")


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else "online" with an API key, else "offline"."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def default_project() -> str:
    """``$WANDB_PROJECT``, else "bench-mlkan"."""
    return os.environ.get("WANDB_PROJECT") or "bench-mlkan"


def default_entity() -> str | None:
    """``$WANDB_ENTITY`` (None: the account's default entity)."""
    return os.environ.get("WANDB_ENTITY") or None


def local_dirs(save_dir: str | os.PathLike[str]) -> None:
    """Keep W&B's artifact staging and cache inside ``<save_dir>/wandb`` (unless the user
    chose ``WANDB_CACHE_DIR`` / ``WANDB_DATA_DIR``), so a bench writes nowhere else."""
    root = Path(save_dir) / "wandb"
    os.environ.setdefault("WANDB_CACHE_DIR", str(root / ".cache"))
    os.environ.setdefault("WANDB_DATA_DIR", str(root / ".data"))


def make_logger(
    project: str,
    group: str,
    name: str,
    config: dict[str, Any],
    tags: list[str],
    save_dir: str,
    *,
    run_id: str | None = None,
    entity: str | None = None,
    job_type: str | None = None,
):
    """A Lightning ``WandbLogger`` around a freshly started run (None when W&B is disabled).
    Its files land in ``<save_dir>/wandb/``."""
    mode = wandb_mode()
    if mode == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    os.makedirs(save_dir, exist_ok=True)
    local_dirs(save_dir)
    run = wandb.init(
        project=project,
        entity=entity,
        id=run_id,
        group=group,
        name=name,
        job_type=job_type,
        config=config,
        tags=tags,
        dir=save_dir,
        mode=mode,  # type: ignore[arg-type]
        reinit="finish_previous",
        settings=_settings(),
    )
    define_work_metrics(run)
    return WandbLogger(experiment=run, project=project, save_dir=save_dir)


def _settings():
    import wandb

    # no console capture, no code saving; short init timeout so a dead network cannot hang a run
    return wandb.Settings(console="off", save_code=False, init_timeout=60, silent=True)


def new_run_id() -> str:
    """A fresh W&B run id (known before the run starts, so records can link to it)."""
    import secrets
    import string

    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def run_link(project: str, run_id: str, entity: str | None = None) -> dict[str, Any]:
    """Where a run lives: ``{"id", "project", "entity", "path", "url"}``; ``url`` only
    with a known entity (offline runs get theirs when synced: ``wandb sync <folder>``)."""
    path = "/".join(x for x in (entity, project, run_id) if x)
    url = f"https://wandb.ai/{entity}/{project}/runs/{run_id}" if entity else None
    return {"id": run_id, "project": project, "entity": entity, "path": path, "url": url}


def run_config(
    config: dict[str, Any],
    *,
    baseline: str,
    row: str,
    variant: str | None,
    profile: str | None,
    config_hash: str,
    git_commit: str | None,
    family: str | None,
    strategy: str | None,
) -> dict[str, Any]:
    """The W&B config of a bench run: the RunConfig fields plus the bench's identity."""
    return {
        **config,
        "baseline": baseline,
        "row": row,
        "variant": variant,
        "profile": profile,
        "family": family,
        "strategy": strategy,
        "config_hash": config_hash,
        "git_commit": git_commit,
    }


def define_work_metrics(run) -> None:
    """``train/*`` and ``eval/*`` plotted against ``work`` (``trainer/global_step`` is in
    every row too, so step is the other x-axis)."""
    run.define_metric("work")
    run.define_metric("trainer/global_step")
    for pattern in ("eval/*", "train/*"):
        run.define_metric(pattern, step_metric="work")


def eval_row(row: dict[str, Any]) -> dict[str, float]:
    """One W&B row from an ``eval_history`` entry (or final metrics with ``work``/``step``):
    ``work``, ``trainer/global_step``, ``eval/<metric>`` for every finite number."""
    out: dict[str, float] = {"work": float(row["work"]), "trainer/global_step": int(row["step"])}
    skip = {"work", "step"}
    for key, value in row.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[f"eval/{key}"] = float(value)
    return out


class EvalLogger(L.Callback):
    """Logs each new ``eval_history`` row of the module (level ends, ``eval_every``) to the
    W&B run as it appears, with ``work`` and the step (see ``eval_row``); a run resumed
    from a checkpoint sends the rows of its earlier sittings first."""

    def __init__(self, logger):
        self.logger, self.sent = logger, 0

    def _flush(self, pl_module) -> None:
        rows = getattr(pl_module, "eval_history", [])
        for row in rows[self.sent :]:
            self.logger.experiment.log(eval_row(row))
        self.sent = len(rows)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._flush(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._flush(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush(pl_module)


def log_summary(logger, record: dict[str, Any]) -> None:
    """Put a record's final numbers into the run summary and its status into the tags; log
    the final evaluation as the last ``eval/*`` row (at the run's work and step)."""
    if logger is None:
        return
    run = logger.experiment
    final = record.get("final_metrics") or {}
    run.summary.update({f"final/{k}": v for k, v in final.items()})
    run.summary.update(
        {
            "status": record["status"],
            "params": record.get("params", 0),
            "work": record.get("work", 0.0),
            "work_macs": record.get("work_macs", 0.0),
            "evaluations": record.get("evaluations", 0),
            "steps": record.get("steps", 0),
            "wall_clock": record.get("wall_clock", 0.0),
        }
    )
    if record.get("diverged"):
        run.summary.update({f"diverged/{k}": v for k, v in record["diverged"].items()})
    if record.get("error"):
        run.summary["error"] = _last_line(record["error"])
    if final:
        define_work_metrics(run)
        run.log(eval_row({"work": record.get("work", 0.0), "step": record.get("steps", 0),
                          **final}))  # fmt: skip
    run.tags = tuple(dict.fromkeys((*tuple(run.tags or ()), str(record["status"]))))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def artifact_name(task: str, row: str, seed: int) -> str:
    """``run-<task>-<row>-seed<k>`` with characters W&B refuses replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"run-{task}-{row}-seed{seed}")


def log_run_artifacts(logger, record: dict[str, Any], record_file: Path, plots: Iterable[Path]):
    """Log the record JSON, its weights ``.pt`` (when present) and the plots as one artifact
    (type ``run-record``); the plots also as images in the run."""
    import wandb

    run = logger.experiment
    row = record.get("row") or (
        f"{record['baseline']}@{record['variant']}" if record.get("variant") else record["baseline"]
    )
    art = wandb.Artifact(
        artifact_name(record["task"], row, record["seed"]),
        type="run-record",
        metadata={
            k: record.get(k)
            for k in ("task", "baseline", "variant", "seed", "profile", "status", "config_hash")
        },
    )
    record_file = Path(record_file)
    art.add_file(str(record_file), name="record.json")
    weights = record_file.with_suffix(".pt")
    if weights.exists() and not record_file.name.endswith(".failed.json"):
        art.add_file(str(weights), name="weights.pt")
    images = {}
    for plot in plots:
        art.add_file(str(plot), name=f"plots/{Path(plot).name}")
        images[f"plots/{Path(plot).stem}"] = wandb.Image(str(plot))
    if images:
        run.log(images)
    run.log_artifact(art)


def finish(logger, status: str) -> None:
    """End the run: exit code 1 for a failed or diverged run (W&B marks it failed)."""
    if logger is not None:
        logger.experiment.finish(exit_code=1 if status in BAD_STATUSES else 0)


def plot_run(record: dict[str, Any], out: Path) -> Path | None:
    """One PNG of a run: training loss and the evaluated metrics against work, with the
    refinements marked. None when the record has no history."""
    history = record.get("history") or []
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    work = [h["work"] for h in history]
    ax.semilogy(work, [max(h["loss"], 1e-300) for h in history], lw=1, label="training loss")
    evals = record.get("eval_history") or []
    keys = [k for k in ("rel_l2", "test_mse", "train_mse") if any(k in e for e in evals)]
    for key in keys[:1]:
        pts = [(e["work"], e[key]) for e in evals if isinstance(e.get(key), int | float)]
        if pts:
            ax.semilogy(*zip(*pts), "o-", ms=4, label=f"{key} (level ends)")
    for ref in record.get("refinements") or []:
        ax.axvline(ref["work"], color="grey", lw=0.5, ls="--")
    ax.set_xlabel(f"work ({record.get('work_unit') or 'units'})")
    ax.set_title(f"{record['task']} / {record['baseline']} / seed {record['seed']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


# ----------------------------------------------------------------------------- leaderboards
#: numeric summary columns of a leaderboard table, in order
SUMMARY_COLUMNS = ("mean", "median", "sd", "gmean", "min", "max")


def leaderboard_tables(
    records: Iterable[dict[str, Any]],
) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """``{task: (columns, rows)}``: one row per leaderboard row (baseline or
    baseline@variant), sorted by the mean of the task's main metric over ok seeds.

    Columns: row, baseline, family, strategy, metric (its key), seeds_ok, diverged, failed,
    ``SUMMARY_COLUMNS`` of the metric over the ok seeds (sd with n - 1), one ``seed <k>``
    column per seed of the task (None where that seed is not ok), work, evaluations,
    params (means over ok seeds), runs (the W&B links of the row's records). Numbers are
    floats (None when missing), so W&B can sort and plot them.
    """
    from .bench import main_metric

    by_task: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        row = f"{rec['baseline']}@{rec['variant']}" if rec.get("variant") else rec["baseline"]
        by_task.setdefault(rec["task"], {}).setdefault(row, []).append(rec)
    out = {}
    for task, rows in sorted(by_task.items()):
        seeds = sorted({int(r["seed"]) for recs in rows.values() for r in recs})
        key = _metric_key(task, rows)
        columns = ["row", "baseline", "family", "strategy", "metric", "seeds_ok", "diverged",
                   "failed", *SUMMARY_COLUMNS, *(f"seed {s}" for s in seeds), "work",
                   "evaluations", "params", "runs"]  # fmt: skip
        table = []
        for row, recs in rows.items():
            ok = [r for r in recs if r.get("status") == "ok"]
            values = {int(r["seed"]): main_metric(r)[1] for r in ok}
            finite = [v for v in values.values() if v is not None and math.isfinite(v)]
            summary = summary_stats(finite)
            base = recs[0]
            table.append(
                [row, base["baseline"], _family(base, "family"), _family(base, "strategy"), key,
                 len(ok), sum(r.get("status") == "diverged" for r in recs),
                 sum(r.get("status") == "failed" for r in recs),
                 *(summary[c] for c in SUMMARY_COLUMNS),
                 *(values.get(s) for s in seeds),
                 _mean([r.get("work") for r in ok]), _mean([r.get("evaluations") for r in ok]),
                 _mean([r.get("params") for r in ok]),
                 " ".join(_link(r) for r in sorted(recs, key=lambda r: r["seed"]) if _link(r))]
            )  # fmt: skip
        table.sort(key=lambda r: (r[8] is None, r[8] if r[8] is not None else 0.0, r[0]))
        out[task] = (columns, table)
    return out


def summary_stats(values: list[float]) -> dict[str, float | None]:
    """mean, median, sd (n - 1; None below 2), gmean (None unless all positive), min, max."""
    n = len(values)
    if n == 0:
        return dict.fromkeys(SUMMARY_COLUMNS)
    s = sorted(values)
    mean = sum(s) / n
    median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    sd = math.sqrt(sum((v - mean) ** 2 for v in s) / (n - 1)) if n > 1 else None
    gmean = math.exp(sum(math.log(v) for v in s) / n) if s[0] > 0 else None
    return {"mean": mean, "median": median, "sd": sd, "gmean": gmean, "min": s[0], "max": s[-1]}


def _metric_key(task: str, rows: dict[str, list[dict[str, Any]]]) -> str:
    from .scoring import task_info

    return task_info(task).metric


def _family(record: dict[str, Any], key: str) -> str | None:
    from bench_mlkan.baselines import BASELINES, load_baseline

    if record["baseline"] not in BASELINES:
        return None
    try:
        return load_baseline(record["baseline"]).get(key)
    except Exception:  # noqa: BLE001 - a table cell, best effort
        return None


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(nums) / len(nums) if nums else None


def _link(record: dict[str, Any]) -> str:
    w = record.get("wandb") or {}
    return str(w.get("url") or w.get("path") or "")


def publish_leaderboards(
    records: list[dict[str, Any]],
    profile: str,
    save_dir: str | os.PathLike[str],
    project: str | None = None,
    entity: str | None = None,
) -> dict[str, Any] | None:
    """Log ``leaderboard_tables(records)`` as ``leaderboard/<task>`` tables in one run (job
    type "leaderboard", name ``leaderboard-<profile>``) and each task's best row in its
    summary. Returns the run's link (``run_link``), None when W&B is disabled."""
    mode = wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    project = project or default_project()
    entity = entity or default_entity()
    os.makedirs(save_dir, exist_ok=True)
    local_dirs(save_dir)
    data = leaderboard_tables(records)
    run_id = new_run_id()
    run = wandb.init(
        project=project,
        entity=entity,
        id=run_id,
        job_type="leaderboard",
        group="leaderboard",
        name=f"leaderboard-{profile}",
        tags=["leaderboard", profile],
        config={"profile": profile, "tasks": sorted(data), "records": len(records)},
        dir=str(save_dir),
        mode=mode,  # type: ignore[arg-type]
        settings=_settings(),
        reinit="finish_previous",
    )
    try:
        for task, (columns, rows) in data.items():
            table = wandb.Table(columns=list[Any](columns), data=rows)
            run.log({f"leaderboard/{task}": table})
            if rows and rows[0][columns.index("mean")] is not None:
                run.summary[f"best/{task}"] = rows[0][0]
                run.summary[f"best/{task}/mean"] = rows[0][columns.index("mean")]
    finally:
        run.finish()
    return run_link(project, run_id, entity)
