"""Results of a study: the tuned config, the summary and Optuna's plots.

``write_tuned`` writes ``<out>/tuned/<baseline>/<task>.json`` from the study's own best
trial only (with the study's name and the date); a study without a complete trial never
writes one and moves a previous file aside (``retire_tuned``). ``write_summary`` writes
``<out>/studies/<study>/README.md`` and ``save_plots`` the plots of
``optuna.visualization.matplotlib`` beside it (PNG at 200 dpi + SVG).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..records import atomic_write_json, now
from .queue import META_KEY, trial_counts
from .space import StudySpec
from .storage import dashboard_command, redact

#: plot file stem -> title
PLOTS: dict[str, str] = {
    "history": "optimisation history",
    "importances": "parameter importances (fANOVA)",
    "intermediate": "intermediate values (metric at each level boundary)",
    "parallel": "parallel coordinates",
}
DPI = 200


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial in the study's direction, or None."""
    try:
        return study.best_trial
    except ValueError:  # no complete trial
        return None


def write_tuned(study: optuna.Study, spec: StudySpec, url: str, path: Path) -> bool:
    """Write the study's best trial to ``path``; False (nothing written) without one."""
    best = best_trial(study)
    if best is None:
        return False
    counts = trial_counts(study)
    stripped = spec.stripped()
    atomic_write_json(
        path,
        {
            "config": best.user_attrs["config"],
            "study": study.study_name,
            "date": now(),
            "trial": best.number,
            "value": best.value,
            "metric": spec.objective_name,
            "direction": spec.direction,
            "metric_value": best.user_attrs.get("metric_value"),
            "seeds": list(spec.seeds),
            "seed_metric_values": best.user_attrs.get("seed_metric_values"),
            "work_budget": spec.budget,
            "storage": redact(url),
            "params": best.params,
            "trials": {k: counts[k] for k in ("complete", "pruned", "failed", "waiting")},
            "stripped": stripped,
            "stripped_note": (
                "--set values the study ran with that are not part of this config (problem "
                "sizes), so that it runs at full size"
                if stripped
                else ""
            ),
            "task": spec.task,
            "baseline": spec.baseline,
        },
    )
    return True


def retire_tuned(path: Path) -> Path | None:
    """Move a previous tuned config aside (``<task>.json.stale``) so that no tuned config
    seems to come from a study that completed no trial; the new path, or None."""
    if not path.exists():
        return None
    stale = path.with_name(path.name + ".stale")
    path.replace(stale)
    return stale


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


def _plotters(name: str) -> dict[str, Callable[[optuna.Study], Any]]:
    from optuna.visualization import matplotlib as vis

    return {
        "history": lambda s: vis.plot_optimization_history(s, target_name=name),
        "importances": lambda s: vis.plot_param_importances(s, target_name=name),
        "intermediate": lambda s: _label(vis.plot_intermediate_values(s), "level that ended", name),
        "parallel": lambda s: vis.plot_parallel_coordinate(s, target_name=name),
    }


def _label(ax: Any, xlabel: str, ylabel: str) -> Any:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def _plot_needs(study: optuna.Study, name: str) -> str:
    """Why plot ``name`` cannot be drawn ("" when it can)."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if name == "intermediate":
        ok = any(t.intermediate_values for t in trials)
        return "" if ok else "no trial reported a level boundary"
    if name == "history":
        return "" if done else "no complete trial"
    if not any(t.params for t in done):
        return "no complete trial with tuned parameters"
    if name == "importances" and len(done) < 2:
        return f"needs at least 2 complete trials (has {len(done)})"
    return ""


def save_plots(study: optuna.Study, folder: Path, objective_name: str) -> dict[str, str]:
    """Optuna's matplotlib plots as ``<folder>/<name>.png`` (200 dpi) and ``.svg``.

    Returns name -> "" when saved, else why not (too few trials, a plotting error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for name, plot in _plotters(objective_name).items():
        why = _plot_needs(study, name)
        for suffix in (".png", ".svg"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)  # never a stale plot
        if not why:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = plot(study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                fig.set_size_inches(7.0, 4.5)
                fig.tight_layout()
                fig.savefig(folder / f"{name}.png", dpi=DPI)
                fig.savefig(folder / f"{name}.svg")
                plt.close(fig)
            except Exception as e:  # noqa: BLE001 - a plot never fails the study
                why = f"plot failed: {type(e).__name__}: {e}"
                plt.close("all")
        out[name] = why
    return out


def write_summary(
    study: optuna.Study,
    spec: StudySpec,
    url: str,
    folder: Path,
    tuned: Path | None,
    plots: dict[str, str],
) -> Path:
    """``<folder>/README.md``: best value, trial counts, importances, plots, best trials."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = trial_counts(study)
    best = best_trial(study)
    imp, why = importances(study)
    meta = study.user_attrs.get(META_KEY, {})
    name = spec.objective_name
    lines = [
        f"# Study `{study.study_name}`",
        "",
        "Generated by `python -m bench_mlkan tune`; do not edit.",
        "",
        f"- task `{spec.task}`, baseline `{spec.baseline}`, objective: {name} "
        f"({spec.direction}) at the end of a work budget of {spec.budget:g} (cost model units)"
        + (
            f", mean over the training seeds {', '.join(map(str, spec.seeds))} (each trial "
            "trains once per seed; pruning watches the first)"
            if spec.extra_seeds
            else f", training seed {spec.seeds[0]}"
        ),
        f"- fixed settings (`--set`): `{json.dumps(spec.sets, sort_keys=True)}`",
        f"- storage `{redact(url)}`, target {meta.get('target', '?')} trials; browse with "
        f"`{dashboard_command(redact(url))}`",
        "",
        "| complete | pruned | failed | failed + re-queued | running | queued |",
        "|---|---|---|---|---|---|",
        "| {complete} | {pruned} | {failed} | {retried} | {running} | {waiting} |".format(**counts),
        "",
    ]
    if best is not None:
        lines += [
            f"**Best**: trial {best.number}, {name} = {best.value:.4f} "
            f"({spec.metric} = {10 ** float(best.value or 0.0):.4g})"
            + (f"; tuned config: `{tuned}`" if tuned else ""),
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
        lines += ["**Best**: no complete trial, so no tuned config.", ""]
    lines += ["## Parameter importances (fANOVA)", ""]
    if imp:
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in imp.items()]
    else:
        lines += [f"n/a: {why}"]
    lines += ["", "## Plots", ""]
    for stem, title in PLOTS.items():
        reason = plots.get(stem, "not drawn (--no-plots)")
        shown = f"![{title}]({stem}.png) ([svg]({stem}.svg))" if not reason else f"n/a: {reason}"
        lines += [f"### {title[0].upper()}{title[1:]}", "", shown, ""]
    sign = -1.0 if spec.direction == "maximize" else 1.0
    rows = sorted(
        study.get_trials(deepcopy=False),
        key=lambda t: (t.value is None, sign * (t.value or 0.0)),
    )[:10]
    lines += [
        "## Trials (best first, at most 10)",
        "",
        f"| trial | state | {name} | params | note |",
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
