"""``RunConfig``: everything one training run needs, validated in full before any training.

Validation (``RunConfig.validate``) checks every field's type (coercing where the meaning is
unambiguous, e.g. ``precision=64`` -> ``"64"``, ``lr=1`` -> ``1.0``), every registry name
and every nested option key: ``model_options`` against the model class's constructor,
``task_options`` against the task's, ``optimizer_options`` against the optimizer's,
``lr_schedule_options`` against the schedule's. Errors are one line naming the field, the
value and what is allowed (``ConfigError``).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .models import MODELS
from .optim import OPTIMIZERS, SCHEDULES
from .work import COST_MODELS

#: default refinement-check tolerance per precision (relative loss change; see ``refine_rtol``)
REFINE_RTOL = {"64": 1e-9, "32": 1e-3}


class ConfigError(ValueError):
    """A run configuration that cannot be trained; the message says what is wrong."""


@dataclass
class RunConfig:
    """One training run: task x model x strategy x optimizer x seed.

    Strategy: ``schedule[l]`` optimizer steps at level l, where level l has grid_size
    ``model_options["grid_size"] * 2**l`` (full batch: one step is one epoch). Leading zeros
    start directly on a finer grid (fresh initialisation there: the paper's "fine"); zeros in
    between refine through; trailing zeros are never visited (the paper's "coarse").
    Alternatively ``budget_fractions`` with ``work_budget`` split a fixed work budget
    (in ``cost_model`` units) across levels. ``work_budget`` alone also stops a run early.

    ``refine_rtol``: allowed relative change of the loss across a refinement; ``None`` =
    the precision's default (``REFINE_RTOL``: 1e-9 in float64, 1e-3 in float32, where the
    loss of a well-trained model is itself a cancellation of float32 values).
    ``blowup_factor``: a loss above ``blowup_factor`` times the run's first loss counts as
    diverged, like a non-finite one.
    ``resume_from``: a local Lightning checkpoint file (no URLs), loaded with
    ``weights_only=True``.
    ``strategy_name`` / ``strategy_options``: how the levels are visited
    (``bench_mlkan.strategies.STRATEGIES``): ``"nested"`` (default: coarse to fine once),
    ``"vcycle"`` (FAS / MG-OPT coarse corrections after the nested pass), ``"adaptive"``
    (refine when the loss stalls, within ``work_budget``).
    """

    task: str = "regression_rotated"
    task_options: dict[str, Any] = field(default_factory=dict)
    model: str = "kan"
    model_options: dict[str, Any] = field(default_factory=dict)
    schedule: list[int] = field(default_factory=lambda: [100])
    budget_fractions: list[float] | None = None
    work_budget: float | None = None
    cost_model: str = "paper"
    optimizer: str = "adam"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    lr_start: float | None = None
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    lr_schedule_options: dict[str, Any] = field(default_factory=dict)
    carry_optimizer_state: bool = False
    refine_rtol: float | None = None
    blowup_factor: float = 1e8
    seed: int = 1234
    precision: str = "64"
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    eval_every: int = 0
    progress: bool | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume_from: str | None = None
    wandb: dict[str, Any] | None = None
    strategy_name: str = "nested"
    strategy_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a dict, failing on unknown keys (naming the closest known one) and
        coercing values to the fields' types."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"{key}: unknown config key{_did_you_mean(key, known)}")
        return cls(**{k: coerce_field(k, v) for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        """All fields; ``strategy_name``/``strategy_options`` only when not the default
        (nested iteration), so the configs (and hashes) of existing records stay as they were."""
        out = dataclasses.asdict(self)
        if out["strategy_name"] == "nested" and not out["strategy_options"]:
            del out["strategy_name"], out["strategy_options"]
        return out

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def num_levels(self) -> int:
        return (
            len(self.budget_fractions) if self.budget_fractions is not None else len(self.schedule)
        )

    @property
    def effective_refine_rtol(self) -> float:
        """``refine_rtol``, or the precision's default."""
        return self.refine_rtol if self.refine_rtol is not None else REFINE_RTOL[self.precision]

    def validate(self) -> RunConfig:
        """Raise ``ConfigError`` naming the first problem found; return self when valid."""
        from bench_mlkan.tasks import TASKS

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        for key in _FIELD_TYPES:
            coerce_field(key, getattr(self, key))  # types (from_dict coerces; direct use checks)
        for fname, registry, name in (
            ("task", TASKS, self.task),
            ("model", MODELS, self.model),
            ("optimizer", OPTIMIZERS, self.optimizer),
            ("lr_schedule", SCHEDULES, self.lr_schedule),
            ("cost_model", COST_MODELS, self.cost_model),
        ):
            need(
                name in registry,
                f"{fname}: unknown {registry.kind} {name!r}; known: {', '.join(sorted(registry))}",
            )
        model_cls = MODELS[self.model]
        check_options("model_options", self.model_options, model_cls, skip=("input_domain",))
        check_options("task_options", self.task_options, TASKS[self.task])
        check_options(
            "optimizer_options", self.optimizer_options, OPTIMIZERS[self.optimizer],
            skip=("params", "lr"),
        )  # fmt: skip
        check_options("lr_schedule_options", self.lr_schedule_options, SCHEDULES[self.lr_schedule])
        widths = self.model_options.get("widths")
        need(
            isinstance(widths, list | tuple)
            and len(widths) >= 2
            and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths),
            f"model_options.widths: must be a list of >= 2 positive integers, got {widths!r}",
        )
        missing = [
            name
            for name in required_options(model_cls)
            if name not in self.model_options and name not in ("widths", "input_domain")
        ]
        need(not missing, f"model_options: model {self.model!r} needs {', '.join(missing)}")
        if self.budget_fractions is not None:
            fr = self.budget_fractions
            need(
                len(fr) >= 1 and all(f >= 0 for f in fr),
                f"budget_fractions: must be non-negative numbers, got {fr!r}",
            )
            need(any(f > 0 for f in fr), f"budget_fractions: need a positive entry, got {fr!r}")
            need(abs(sum(fr) - 1.0) < 1e-6, f"budget_fractions: must sum to 1, got {sum(fr)!r}")
            need(
                self.work_budget is not None and self.work_budget > 0,
                "budget_fractions: need a positive work_budget",
            )
        else:
            s = self.schedule
            need(len(s) >= 1, f"schedule: must be a non-empty list, got {s!r}")
            need(
                all(v >= 0 for v in s),
                f"schedule: entries must be integers >= 0 (steps per level), got {s!r}",
            )
            need(sum(s) > 0, f"schedule: {s!r} trains for zero steps")
        need(
            self.work_budget is None or (math.isfinite(self.work_budget) and self.work_budget > 0),
            f"work_budget: must be positive, got {self.work_budget!r}",
        )
        if len(self.level_steps_nonzero()) > 1:
            need(
                callable(getattr(model_cls, "refined", None)),
                f"schedule: model {self.model!r} has no refined(), so it cannot train on more "
                "than one level; give it a one-level schedule",
            )
        need(self.lr > 0 and math.isfinite(self.lr), f"lr: must be positive, got {self.lr!r}")
        need(
            self.lr_start is None or self.lr_start > 0,
            f"lr_start: must be positive, got {self.lr_start!r}",
        )
        need(self.warmup_steps >= 0, f"warmup_steps: must be >= 0, got {self.warmup_steps!r}")
        need(
            self.precision in REFINE_RTOL,
            f"precision: must be one of {sorted(REFINE_RTOL)}, got {self.precision!r}",
        )
        need(self.devices >= 1, f"devices: must be >= 1, got {self.devices!r}")
        need(
            self.refine_rtol is None or self.refine_rtol > 0,
            f"refine_rtol: must be positive, got {self.refine_rtol!r}",
        )
        need(self.blowup_factor > 1, f"blowup_factor: must be > 1, got {self.blowup_factor!r}")
        need(self.eval_every >= 0, f"eval_every: must be >= 0, got {self.eval_every!r}")
        need(
            self.checkpoint_every >= 0,
            f"checkpoint_every: must be >= 0, got {self.checkpoint_every!r}",
        )
        need(
            not (self.carry_optimizer_state and self.optimizer not in ("adam", "adamw")),
            f"carry_optimizer_state: supported for adam/adamw only, not {self.optimizer!r}",
        )
        if self.resume_from is not None:
            check_local_file("resume_from", self.resume_from)
        if self.strategy_name != "nested" or self.strategy_options:
            from .strategies import check_strategy

            check_strategy(self)
        return self

    def warnings(self) -> list[str]:
        """Settings that are valid but probably left over from a replaced optimizer (e.g.
        ``--set optimizer=lbfgs`` on an Adam recipe keeps its warm-up ramp)."""
        out = []
        if self.optimizer == "lbfgs":
            if self.warmup_steps or self.lr_start is not None:
                out.append(
                    f"optimizer lbfgs with a warm-up ramp (lr_start={self.lr_start}, "
                    f"warmup_steps={self.warmup_steps}): the L-BFGS step length ramps from "
                    f"{self.lr_start} to {self.lr} at every level; set warmup_steps=0 and "
                    "lr_start=null unless that is intended"
                )
            if self.lr_schedule != "constant":
                out.append(f"optimizer lbfgs with lr_schedule {self.lr_schedule!r}: made for Adam")
        return out

    def level_steps_nonzero(self) -> list[tuple[int, int]]:
        """(level, steps) from the first to the last level with steps (schedule form)."""
        sched = (
            self.schedule
            if self.budget_fractions is None
            else [1 if f > 0 else 0 for f in self.budget_fractions]
        )
        nz = [i for i, v in enumerate(sched) if v > 0]
        if not nz:
            return []
        return [(level, sched[level]) for level in range(nz[0], nz[-1] + 1)]


# ----------------------------------------------------------------------------- types
_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(RunConfig)


def _did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; known: {', '.join(sorted(known))}"


def _allowed(tp: Any) -> list[Any]:
    """The member types of ``tp`` (unions flattened; ``None`` as ``type(None)``)."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [a for arg in typing.get_args(tp) for a in _allowed(arg)]
    return [tp]


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` or raise TypeError (only unambiguous conversions)."""
    origin = typing.get_origin(tp) or tp
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is typing.Any:
        return value
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TypeError
    if origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise TypeError
    if origin is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    if origin is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise TypeError
    if origin is list:
        if not isinstance(value, list | tuple):
            raise TypeError
        (item,) = typing.get_args(tp) or (typing.Any,)
        return [_coerce(v, item) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    raise TypeError


def _type_name(tp: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    parts = []
    for t in _allowed(tp):
        origin = typing.get_origin(t) or t
        if t is type(None):
            parts.append("null")
        elif origin is list:
            (item,) = typing.get_args(t) or (typing.Any,)
            parts.append(f"a list of {_type_name(item).removeprefix('a ').removeprefix('an ')}s")
        elif origin is dict:
            parts.append("an object")
        else:
            parts.append(names.get(origin, getattr(origin, "__name__", str(origin))))
    return " or ".join(parts)


def coerce_field(name: str, value: Any) -> Any:
    """``value`` converted to the type of RunConfig field ``name`` (e.g. ``64`` -> ``"64"``
    for ``precision``); ``ConfigError`` naming the field, the value and the type otherwise."""
    tp = _FIELD_TYPES[name]
    for member in _allowed(tp):
        try:
            return _coerce(value, member)
        except TypeError:
            continue
    raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r}")


# ----------------------------------------------------------------------------- options
def accepted_options(
    target: Any, skip: tuple[str, ...] = ()
) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters ``target`` (a class or callable) accepts, following ``**kwargs``
    up a class's MRO; ``None`` when anything goes (a bare ``**kwargs`` at the end)."""
    out: dict[str, inspect.Parameter] = {}
    chain = (
        [vars(c)["__init__"] for c in inspect.getmro(target) if "__init__" in vars(c)]
        if inspect.isclass(target)
        else [target]
    )
    for fn in chain:
        if fn is object.__init__:
            return out if out else None
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return None
        var_kw = False
        for p in params.values():
            if p.name in ("self", "cls") or p.name in skip:
                continue
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind is not p.VAR_POSITIONAL:
                out.setdefault(p.name, p)
        if not var_kw:
            return out
    return out


def required_options(target: Any) -> list[str]:
    """Keyword parameters of ``target`` without a default."""
    params = accepted_options(target) or {}
    return [n for n, p in params.items() if p.default is inspect.Parameter.empty]


def check_options(
    label: str, options: dict[str, Any], target: Any, skip: tuple[str, ...] = ()
) -> None:
    """Every key of ``options`` is a parameter ``target`` accepts (``ConfigError`` naming the
    key, the closest accepted one and all of them, otherwise)."""
    if not isinstance(options, dict):
        raise ConfigError(f"{label}: expected an object, got {options!r}")
    accepted = accepted_options(target, skip)
    if accepted is None:
        return
    for key in options:
        if key not in accepted and key not in skip:
            hint = _did_you_mean(key, accepted) if accepted else " (this takes no options)"
            raise ConfigError(f"{label}.{key}: unknown option{hint}")


def check_local_file(label: str, value: str) -> Path:
    """``value`` names an existing local file (no URL); ``ConfigError`` otherwise."""
    if "://" in value or value.startswith(("http:", "https:", "s3:", "gs:")):
        raise ConfigError(f"{label}: only local files are accepted, got the URL {value!r}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{label}: no such file {value!r}")
    return path
