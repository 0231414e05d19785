"""Search spaces as data (``baselines/<name>/search_space.json``) and trial -> run config.

``load_space`` reads a space, ``suggest`` turns it into Optuna suggestions, ``StudySpec``
says what a study tunes and ``trial_config`` builds a trial's full ``RunConfig`` dict plus
the overrides its tuned config stores. ``validate_spec`` checks every config a study can
produce (the base config and the corners of the space) before the first trial.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ..baselines import BASELINES, baseline_config, merge
from ..config import ConfigError, RunConfig
from ..home import home

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
#: ``--set`` keys kept out of tuned configs (problem sizes: a tuned config runs at full size).
STUDY_ONLY_KEYS = ("task_options",)


def load_space(baseline: str, task: str) -> dict[str, dict[str, Any]]:
    """The parameters of ``baselines/<baseline>/search_space.json`` on ``task`` (checked)."""
    path = BASELINES[baseline] / "search_space.json"
    if not path.exists():
        raise ConfigError(f"baseline {baseline!r} has no search space ({path})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    space = dict(data.get("parameters", {}))
    for key, entry in data.get("tasks", {}).get(task, {}).items():
        if entry is None:
            space.pop(key, None)
        else:
            space[key] = entry
    for key, entry in space.items():
        check_entry(key, entry)
    return space


def check_entry(key: str, entry: dict[str, Any]) -> None:
    """``ConfigError`` unless ``entry`` is a well-formed search-space entry."""
    kind = entry.get("type") if isinstance(entry, dict) else None
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


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}`` (leaves under dotted keys)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _categorical_texts(choices: list[Any]) -> list[Any]:
    """Optuna stores scalars only: lists/dicts are suggested by their JSON text."""
    if all(isinstance(c, str | int | float | bool) or c is None for c in choices):
        return list(choices)
    return [json.dumps(c) for c in choices]


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
                key, entry["low"], entry["high"], log=entry.get("log", False),
                step=entry.get("step"),
            )  # fmt: skip
        elif kind == "int":
            value = trial.suggest_int(
                key, entry["low"], entry["high"], log=entry.get("log", False),
                step=entry.get("step", 1),
            )  # fmt: skip
        elif kind == "categorical":
            texts = _categorical_texts(entry["choices"])
            value = trial.suggest_categorical(key, texts)
            if texts != entry["choices"]:
                value = json.loads(value)
        else:  # budget_split
            low, high = split_levels(entry, levels)
            n = trial.suggest_int("levels", low, high) if high > low else high
            weights = [
                -math.log(trial.suggest_float(f"budget_split.u{i}", 1e-6, 1.0))
                for i in range(n if n > 1 else 0)
            ]
            total = sum(weights)
            value = [w / total for w in weights] if total > 0 else [1.0 / n] * n
        set_dotted(out, key, value)
    return out


def split_levels(entry: dict[str, Any], levels: int) -> tuple[int, int]:
    """(low, high) number of levels of a ``budget_split`` entry (high null = ``levels``)."""
    lv = entry.get("levels", {})
    high = lv.get("high") or levels
    return min(lv.get("low", 1), high), high


def corner_params(space: dict[str, dict[str, Any]], levels: int) -> list[dict[str, Any]]:
    """Fixed-trial parameters at the corners of ``space``: every range at its low end, every
    range at its high end, and each categorical choice (the rest low). A budget split takes
    its fewest and its most levels, with an even split."""
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for key, entry in space.items():
        kind = entry["type"]
        if kind in ("float", "int"):
            step = entry.get("step") or (1 if kind == "int" else None)
            top = entry["high"]
            if step:  # the largest value on the step grid
                top = entry["low"] + math.floor((top - entry["low"]) / step + 1e-9) * step
            lows[key], highs[key] = entry["low"], top
        elif kind == "categorical":
            texts = _categorical_texts(entry["choices"])
            lows[key], highs[key] = texts[0], texts[-1]
        else:
            for params, n in zip((lows, highs), split_levels(entry, levels)):
                params["levels"] = n
                params.update({f"budget_split.u{i}": 0.5 for i in range(n if n > 1 else 0)})
    corners = [lows, highs]
    for key, entry in space.items():
        if entry["type"] == "categorical":
            corners += [{**lows, key: text} for text in _categorical_texts(entry["choices"])[1:]]
    return corners


def default_fractions(config: dict[str, Any]) -> list[float]:
    """The work share of each level of a schedule (a step at level l costs 2**l coarse steps
    for spline models, 1 for an MLP): one-hot for single-level recipes."""
    schedule = config["schedule"]
    cost = [1.0 if config["model"] == "mlp" else 2.0**level for level in range(len(schedule))]
    work = [s * c for s, c in zip(schedule, cost)]
    return [w / sum(work) for w in work]


def normalise_sets(sets: dict[str, Any]) -> dict[str, Any]:
    """``--set`` overrides (nested, from ``bench.parse_sets``) with top-level values coerced
    to their RunConfig field types (``lr=1`` -> ``1.0``); unknown fields raise ConfigError."""
    coerced = RunConfig.from_dict(sets)
    return {key: getattr(coerced, key) for key in sets}


@dataclass
class StudySpec:
    """What a study tunes; the same for every worker (checked against the stored study).

    ``sets``: the ``--set`` overrides as a nested dict; ``out``: the home of the outputs
    (``<out>/studies``, ``<out>/tuned``)."""

    task: str
    baseline: str
    budget: float
    metric: str
    direction: str = "minimize"
    sets: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    extra_seeds: tuple[int, ...] = ()
    accelerator: str | None = None
    wandb: bool = False
    study_name: str = ""
    out: Path = field(default_factory=home)

    @property
    def objective_name(self) -> str:
        """The objective as Optuna (and optuna-dashboard) names it."""
        return f"log10 {self.metric}"

    @property
    def studies_dir(self) -> Path:
        return Path(self.out) / "studies"

    @property
    def seeds(self) -> tuple[int, ...]:
        """Every training seed of a trial: ``seed`` (the one pruning watches; the baseline's
        when None), then the extra ones."""
        first = self.seed if self.seed is not None else int(self.base_config()["seed"])
        return (first, *self.extra_seeds)

    def meta(self) -> dict[str, Any]:
        meta = {
            "task": self.task,
            "baseline": self.baseline,
            "budget": self.budget,
            "metric": self.metric,
            "direction": self.direction,
            "sets": self.sets,
            "seed": self.seed,
        }
        if self.extra_seeds:  # absent for one seed: studies stored before stay compatible
            meta["extra_seeds"] = list(self.extra_seeds)
        return meta

    def base_config(self) -> dict[str, Any]:
        """The baseline's config on the task with the ``--set`` overrides applied."""
        cfg = baseline_config(self.baseline, self.task, seed=self.seed, overrides=self.sets)
        return cfg.to_dict()

    def space(self) -> dict[str, dict[str, Any]]:
        """The search space less the keys that ``--set`` fixes."""
        space = load_space(self.baseline, self.task)
        fixed = set(flatten(self.sets))
        return {
            k: v
            for k, v in space.items()
            if not any(k == f or k.startswith(f + ".") or f.startswith(k + ".") for f in fixed)
        }

    def stripped(self) -> dict[str, Any]:
        """The ``--set`` overrides kept out of tuned configs (dotted keys -> values)."""
        return flatten({k: v for k, v in self.sets.items() if k in STUDY_ONLY_KEYS})


def trial_config(spec: StudySpec, trial: optuna.trial.BaseTrial) -> tuple[dict, dict]:
    """(the full RunConfig dict of a trial, the overrides its tuned config stores).

    The tuned overrides are the trial's suggestions, the work budget and its split, and the
    ``--set`` fields, less placement fields and the study-only ``task_options``."""
    base = spec.base_config()
    overrides = suggest(trial, spec.space(), levels=len(base["schedule"]))
    if "budget_fractions" not in overrides:
        overrides["budget_fractions"] = base.get("budget_fractions") or default_fractions(base)
    overrides["work_budget"] = spec.budget
    kept = {
        k: v for k, v in spec.sets.items() if k not in PLACEMENT_KEYS and k not in STUDY_ONLY_KEYS
    }
    tuned = merge(kept, overrides)
    config = merge(base, overrides)
    config["progress"] = False
    if spec.accelerator:
        config.update(accelerator=spec.accelerator, devices=1, strategy="auto")
    return config, tuned


def validate_spec(spec: StudySpec) -> list[str]:
    """Check every config the study can produce before its first trial: the base config, the
    task built from it, and the configs at the corners of the search space. Raises
    ``ConfigError`` (one line); returns ``RunConfig.warnings()`` of the base config."""
    from ..engine import build_model
    from ..tasks import TASKS

    base = RunConfig.from_dict({**spec.base_config(), "work_budget": spec.budget}).validate()
    try:
        task = TASKS[spec.task](**base.task_options)
    except Exception as e:  # noqa: BLE001 - any refusal of the options is a config error
        raise ConfigError(f"task_options for {spec.task!r}: {type(e).__name__}: {e}") from None
    space = spec.space()
    for params in corner_params(space, levels=len(base.schedule)):
        config, _ = trial_config(spec, optuna.trial.FixedTrial(params))
        try:
            run = RunConfig.from_dict(config).validate()
            build_model(run, task, level=0)
        except ConfigError as e:
            shown = {k: v for k, v in params.items() if not k.startswith("budget_split.")}
            raise ConfigError(f"search space of {spec.baseline!r} at {shown}: {e}") from None
    return base.warnings()
