"""Baselines (installed as ``bench_mlkan.baselines``): one folder per compared recipe.

Each folder ``baselines/<name>/`` holds

* ``config.json`` - ``{"description", "family", "strategy", "defaults": {RunConfig fields},
  "tasks": {task name: {RunConfig fields}}}``: the run settings of this recipe on each
  task it supports (the paper's settings). A task's entry is applied on top of
  ``defaults``; nested dicts (``model_options``, ...) are merged key by key.
  ``"extend": "<other baseline>"`` makes the file a diff: the other baseline's config
  (itself possibly extending another) with this file merged on top; a task set to
  ``null`` is removed. E.g. ``kan_fine`` is ``kan_multilevel`` with other schedules.
* ``search_space.json`` - the hyperparameters the tuning may vary (see bench_mlkan.tuning).
* ``README.md`` - what the recipe is and where it deviates from the paper.
* ``tuned/<task>.json`` (optional) - the best trial of a study, used with ``--tuned``.

``BASELINES`` maps names to folders (found at import); a user adds a recipe by adding a
folder, or at run time with ``BASELINES.register(name, path)``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench_mlkan.config import ConfigError, RunConfig
from bench_mlkan.registry import Registry

ROOT = Path(__file__).resolve().parent

BASELINES: Registry[Path] = Registry(
    "baseline", {p.parent.name: p.parent for p in sorted(ROOT.glob("*/config.json"))}
)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``update`` wins; nested dicts merge key by key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_baseline(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``config.json`` of baseline ``name``, with ``extend`` resolved."""
    if name in _seen:
        raise ConfigError(f"baseline {name!r}: 'extend' cycle {' -> '.join((*_seen, name))}")
    with open(BASELINES[name] / "config.json") as f:
        spec = json.load(f)
    parent = spec.pop("extend", None)
    if parent is None:
        return spec
    if parent not in BASELINES:
        raise ConfigError(
            f"baseline {name!r} extends unknown baseline {parent!r}; known: {sorted(BASELINES)}"
        )
    out = merge(load_baseline(parent, (*_seen, name)), spec)
    out["tasks"] = {t: v for t, v in out.get("tasks", {}).items() if v is not None}
    return out


def tuned_path(name: str, task: str) -> Path:
    """Where the tuned config of ``name`` on ``task`` lives: the user's own
    (``$BENCH_MLKAN_HOME`` or the current directory: ``tuned/<name>/<task>.json``, written by
    ``tune``) when it exists, else the one shipped in ``baselines/<name>/tuned/<task>.json``."""
    from bench_mlkan.home import tuned_file

    user = tuned_file(name, task)
    return user if user.exists() else BASELINES[name] / "tuned" / f"{task}.json"


def baseline_tasks(name: str) -> list[str]:
    """Tasks this baseline has settings for."""
    return sorted(load_baseline(name)["tasks"])


def baseline_config(
    name: str,
    task: str,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    tuned: bool = False,
) -> RunConfig:
    """The ``RunConfig`` of baseline ``name`` on ``task`` (+ tuned params, + ``overrides``)."""
    spec = load_baseline(name)
    if task not in spec["tasks"]:
        raise ConfigError(
            f"baseline {name!r} has no settings for task {task!r}; it has: {sorted(spec['tasks'])}"
        )
    data = merge(spec.get("defaults", {}), spec["tasks"][task])
    if tuned:
        path = tuned_path(name, task)
        if not path.exists():
            raise ConfigError(
                f"no tuned config for {name!r} on {task!r} (expected {path}); run `make tune` first"
            )
        data = merge(data, json.loads(path.read_text())["config"])
    data = merge(data, overrides or {})
    data["task"] = task
    if seed is not None:
        data["seed"] = seed
    return RunConfig.from_dict(data)


__all__ = [
    "BASELINES",
    "baseline_config",
    "baseline_tasks",
    "load_baseline",
    "merge",
    "tuned_path",
]
