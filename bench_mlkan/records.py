"""Run records: one JSON file per run, the single source of truth for every leaderboard.

Layout: ``<results>/<task>/<baseline>/seed<k>.json`` (+ ``seed<k>.pt``: the weights at the
end of every level, ``{"levels": {level: state_dict}}``, for plots that need the model).

Record fields::

    schema            RECORD_SCHEMA (int)
    task, baseline, seed, profile
    config            the full RunConfig (dict); config_hash = sha256 of it (canonical JSON)
    task_description  task.describe()
    status            "ok" | "diverged" | "failed";  error (traceback or null); diverged
                      ({step, level, loss} or null)
    final_metrics     {rel_l2, max_abs, mse, train_loss, ...} (no split prefix; empty unless ok)
    params, params_per_level {level: count}
    steps, work, work_unit, work_macs, wall_clock (s)
    history           per optimizer step {step, level, work, work_macs, loss, lr, loss/<term>,
                      evaluations}; thinned to <= HISTORY_POINTS rows (always keeping the
                      first and last step of every level)
    eval_history      metrics at each level end (and every eval_every steps)
    refinements       {level, step, work, work_macs, loss_before, loss_after, rel_change,
                      level_end_metrics}
    device, environment (versions, machine, threads), git_commit, started, finished
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

RECORD_SCHEMA = 1
HISTORY_POINTS = 2000
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "leaderboards" / "results"


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config (the run's identity for resuming)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_path(results: Path, task: str, baseline: str, seed: int) -> Path:
    return Path(results) / task / baseline / f"seed{seed}.json"


def git_commit() -> str | None:
    """The repository's HEAD commit (None outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def thin_history(
    history: list[dict[str, Any]], points: int = HISTORY_POINTS
) -> list[dict[str, Any]]:
    """At most ~``points`` rows: a uniform stride plus each level's first and last step."""
    if len(history) <= points:
        return history
    stride = -(-len(history) // points)
    keep = set(range(0, len(history), stride)) | {len(history) - 1}
    for i in range(1, len(history)):
        if history[i]["level"] != history[i - 1]["level"]:
            keep |= {i - 1, i}
    return [history[i] for i in sorted(keep)]


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=True, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_torch(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def make_record(
    result,
    *,
    task: str,
    baseline: str,
    seed: int,
    profile: str | None,
    task_description: dict[str, Any],
    started: str,
) -> dict[str, Any]:
    """The record of a finished ``RunResult``."""
    body = result.to_dict()
    body["history"] = thin_history(body["history"])
    head = _identity(task, baseline, seed, profile, body["config"])
    return {**head, "task_description": task_description, **body, **_provenance(started)}


def failed_record(
    config: dict[str, Any],
    error: str,
    *,
    task: str,
    baseline: str,
    seed: int,
    profile: str | None,
    started: str,
) -> dict[str, Any]:
    """The record of a run that raised before producing a result."""
    return {
        **_identity(task, baseline, seed, profile, config),
        "config": config,
        "status": "failed",
        "error": error,
        "final_metrics": {},
        "history": [],
        "eval_history": [],
        "refinements": [],
        "diverged": None,
        "params": 0,
        "params_per_level": {},
        "steps": 0,
        "work": 0.0,
        "work_unit": "",
        "work_macs": 0.0,
        "wall_clock": 0.0,
        **_provenance(started),
    }


def _identity(
    task: str, baseline: str, seed: int, profile: str | None, config: dict[str, Any]
) -> dict:
    return {"schema": RECORD_SCHEMA, "task": task, "baseline": baseline, "seed": seed,
            "profile": profile, "config_hash": config_hash(config)}  # fmt: skip


def _provenance(started: str) -> dict[str, Any]:
    return {"git_commit": git_commit(), "started": started, "finished": now()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def iter_records(results: Path = DEFAULT_RESULTS) -> Iterator[dict[str, Any]]:
    """Every record under ``results`` (sorted by path)."""
    for path in sorted(Path(results).glob("*/*/seed*.json")):
        yield read_record(path)
