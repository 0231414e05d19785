"""A row's model, basis, fidelity and schedule in the paper's words, from its config and
its baseline's family (never from the model's class name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..scoring.metadata import BaselineInfo
from .fmt import fmt_count

#: the basis a family trains in (METHOD.md 3); "-" for the others
FAMILY_BASIS = {"kan": "spline", "mcmlp": "ReLU"}
#: how the model is named in the tables
FAMILY_MODEL = {"kan": "KAN", "mcmlp": "KAN", "mlp": "MLP"}


def describe_model(config: Mapping[str, Any], info: BaselineInfo) -> tuple[str, str]:
    """(model, basis): ("KAN [2,5,1]", "spline"), ("MLP [2,5,1] relu", "-"), ..."""
    opts = config.get("model_options") or {}
    widths = "[" + ",".join(str(w) for w in opts.get("widths", [])) + "]"
    name = FAMILY_MODEL.get(info.family, info.family if info.family != "unknown" else "model")
    act = opts.get("activation")
    model = f"{name} {widths}" + (f" {act}" if act else "")
    return model, FAMILY_BASIS.get(info.family, "-")


def level_schedule(config: Mapping[str, Any]) -> list[float]:
    """Steps per level (schedule) or the budget fractions."""
    fr = config.get("budget_fractions")
    return list(fr) if fr is not None else list(config.get("schedule") or [])


def describe_fidelity(config: Mapping[str, Any], info: BaselineInfo) -> str:
    """The strategy with its grids ("multilevel (grid 5->40)"); "-" for a model without a
    grid (an MLP)."""
    grid = (config.get("model_options") or {}).get("grid_size")
    if grid is None:
        return "-"
    sched = level_schedule(config)
    used = [i for i, v in enumerate(sched) if v > 0]
    if not used:
        return info.strategy
    first, last = int(grid) * 2 ** used[0], int(grid) * 2 ** used[-1]
    grids = f"grid {first}" if first == last else f"grid {first}->{last}"
    strategy = info.strategy.replace("_", " ") if info.strategy != "unknown" else "levels"
    return f"{strategy} ({grids})"


def fmt_schedule(config: Mapping[str, Any]) -> str:
    """ "32/16/8/4" (steps per level) or "fractions 0.5/0.5 of 128"."""
    if config.get("budget_fractions") is not None:
        fr = "/".join(f"{f:g}" for f in config["budget_fractions"])
        return f"fractions {fr} of {fmt_count(config.get('work_budget'))}"
    return "/".join(str(s) for s in config.get("schedule") or [])
