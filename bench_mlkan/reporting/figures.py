"""Figures of one profile's records (paper style), planned from the records alone.

* ``<task>_convergence`` - the task's metric (the training loss where the task ranks by
  it, else the training loss and, below, the evaluated metric) versus work in coarse
  steps, coarse evaluations and MACs, all on log axes: per row the median over its
  counted seeds with a min-max band, refinements marked (o), collapsed seeds drawn thin
  and named, diverged seeds ending in x (paper Fig. 4, 6, 7).
* ``<task>_solution`` - reference, prediction and |error| of each row's final model (its
  lowest finished seed), for 2-D PINN domains.
* ``<task>_residual_spectra`` - |FFT_x| of the PDE residual per level end, for tasks with
  a ``residual`` (paper Fig. 8, 9).
* ``performance_profile`` - the cross-task profiles of the summary page.
* ``ata_spectra`` / ``condition_growth`` - the change of basis (``reporting.spectra``).

Each figure is a PNG (200 dpi) with an SVG beside it; every title names the profile.
``plan(records, profile)`` lists what will be drawn, so the pages never depend on whether
drawing succeeded; ``FigureSpec.draw(png_path)`` draws and returns the files written.
Figures show the rows without a variant, or all rows when every row has one, up to
``MAX_FIGURE_ROWS`` (``figure_rows``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..records import Record
from ..scoring.aggregate import collapse_state, seed_result
from ..scoring.metadata import TaskInfo, row_order, task_info, task_order
from ..scoring.profiles import TAU_MAX_QUALITY, TAU_MAX_TIME, cross_task
from ..scoring.trajectory import UNITS, eval_trajectory, loss_trajectory, total_work
from . import spectra
from .fmt import fmt_sci
from .style import figure, log_axis, row_styles, save

MAP_POINTS = 101
SPECTRUM_GRID = (128, 50)  # (x points on the periodic grid, t points)
CURVE_POINTS = 240  # points of the common log-spaced work grid of a median curve
#: the most rows one figure shows (colours and legend stay readable)
MAX_FIGURE_ROWS = 12

Records = Mapping[str, Mapping[str, Sequence[Record]]]


@dataclass(frozen=True)
class FigureSpec:
    stem: str  # file name without suffix: <stem>.png and <stem>.svg
    caption: str
    task: str | None
    draw: Callable[[Path], list[Path]]

    @property
    def filename(self) -> str:
        return f"{self.stem}.png"


# ----------------------------------------------------------------------------- plan
def map_runs(by_row: Mapping[str, Sequence[Record]]) -> list[Record]:
    """Per row (table order) the lowest finished seed with saved weights."""
    out = []
    for row in row_order(by_row):
        for rec in sorted(by_row[row], key=lambda r: r.seed):
            if rec.ok and rec.weights_path is not None and rec.weights_path.exists():
                out.append(rec)
                break
    return out


def plan(records: Records, profile: str) -> list[FigureSpec]:
    """Every figure the records allow, in a fixed order."""
    specs: list[FigureSpec] = []
    records = {t: {r: by[r] for r in figure_rows(by)} for t, by in records.items()}
    for task in task_order(records):
        by = records[task]
        if not by:
            continue
        specs.append(
            FigureSpec(
                f"{task}_convergence",
                "convergence versus work",
                task,
                functools.partial(draw_convergence, task, by, profile),
            )
        )
        runs = map_runs(by)
        if runs and task_info(task).kind == "pinn":
            specs.append(
                FigureSpec(
                    f"{task}_solution",
                    "solution and error maps",
                    task,
                    functools.partial(draw_solution_maps, task, runs, profile),
                )
            )
        multi = [r for r in runs if len(r.params_per_level) > 1]
        if multi and periodic_in_x(task, multi[0]):
            specs.append(
                FigureSpec(
                    f"{task}_residual_spectra",
                    "PDE residual spectra per level",
                    task,
                    functools.partial(draw_residual_spectra, task, multi, profile),
                )
            )
    ct = cross_task(records)
    if ct.tasks and len(ct.rows) <= MAX_FIGURE_ROWS:
        specs.append(
            FigureSpec(
                "performance_profile",
                "cross-task performance profiles",
                None,
                functools.partial(draw_performance_profile, records, profile),
            )
        )
    specs.append(
        FigureSpec(
            "ata_spectra", "A^T A spectra and eigenvectors (n = 50)", None, spectra.draw_spectra
        )
    )
    specs.append(
        FigureSpec("condition_growth", "cond(A^T A) versus n", None, spectra.draw_condition_growth)
    )
    return specs


def figure_rows(rows: Iterable[str]) -> list[str]:
    """The rows a figure shows: those without a variant when there are any (a profile's
    plain experiments), else all; none when more than ``MAX_FIGURE_ROWS`` (an ablation
    profile: its pages compare the readings in tables)."""
    rows = list(rows)
    plain = [r for r in rows if "@" not in r]
    chosen = plain or rows
    return chosen if len(chosen) <= MAX_FIGURE_ROWS else []


def periodic_in_x(task: str, rec: Record) -> bool:
    """A space-time task, periodic in x, with a ``residual``: its residual has a spectrum
    in x (the record's task description names its ``periodic`` treatment)."""
    from bench_mlkan.tasks import TASKS

    cls = TASKS[task] if task in TASKS else None
    return (
        cls is not None
        and callable(getattr(cls, "residual", None))
        and tuple(getattr(cls, "coordinates", ())) == ("x", "t")
        and "periodic" in rec.task_description
    )


# ----------------------------------------------------------------------------- convergence
def step_values(traj: Sequence[tuple[float, float]], grid: np.ndarray, end: float) -> np.ndarray:
    """The trajectory as a step function on ``grid`` (the last value reached with at most
    that work); nan before its first point and past ``end``."""
    if not traj:
        return np.full(len(grid), np.nan)
    spent = np.array([s for s, _ in traj])
    vals = np.array([v for _, v in traj])
    idx = np.searchsorted(spent, grid * (1 + 1e-9), side="right") - 1
    out = np.where(idx >= 0, vals[np.clip(idx, 0, None)], np.nan)
    return np.where(grid <= end * (1 + 1e-9), out, np.nan)


def median_band(
    trajs: Sequence[Sequence[tuple[float, float]]], ends: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(grid, median, min, max) over seeds on a log-spaced work grid, where every seed has
    a value (up to the earliest end; the seeds that ran longer are drawn on their own)."""
    positive = [s for t in trajs for s, _ in t if s > 0]
    if not positive or not ends or min(ends) <= min(positive):
        return None
    grid = np.geomspace(min(positive), min(ends), CURVE_POINTS)
    stack = np.array([step_values(t, grid, e) for t, e in zip(trajs, ends)])
    keep = ~np.any(np.isnan(stack), axis=0)
    if not keep.any():
        return None
    s = stack[:, keep]
    return grid[keep], np.median(s, axis=0), s.min(axis=0), s.max(axis=0)


def _eval_median(trajs: Sequence[Sequence[tuple[float, float]]]):
    """(x, median, min, max) at the evaluation points every seed shares."""
    keyed = [{float(f"{x:.9g}"): v for x, v in t} for t in trajs if t]
    if not keyed:
        return None
    common = sorted(set.intersection(*(set(k) for k in keyed)))
    if not common:
        return None
    vals = np.array([[k[x] for x in common] for k in keyed])
    return np.array(common), np.median(vals, 0), vals.min(0), vals.max(0)


def _refinement_points(recs: Sequence[Record], unit: str, grid, med):
    """(x, y) of the median curve at the median work of each refinement."""
    works: dict[int, list[float]] = {}
    for r in recs:
        for ref in r.refinements:
            if unit in ref:
                works.setdefault(int(ref["level"]), []).append(float(ref[unit]))
    xs = [float(np.median(w)) for _, w in sorted(works.items())]
    ys = [float(np.interp(np.log(x), np.log(grid), med)) for x in xs if grid[0] <= x <= grid[-1]]
    return [x for x in xs if grid[0] <= x <= grid[-1]], ys


def draw_convergence(
    task: str, by: Mapping[str, Sequence[Record]], profile: str, path: Path
) -> list[Path]:
    info = task_info(task)
    with_eval = info.target_source == "eval"
    units = [u for u in UNITS if any(total_work(r, u) for rs in by.values() for r in rs)]
    fig = figure(4.3 * len(units) + 2.6, 7.4 if with_eval else 4.0)
    axes = fig.subplots(2 if with_eval else 1, len(units), squeeze=False)
    rows = row_order(by)
    styles = row_styles(rows)
    handles: dict[str, Any] = {}
    for col, unit in enumerate(units):
        panels = [("loss", axes[0][col])] + ([("eval", axes[1][col])] if with_eval else [])
        for what, ax in panels:
            for row in rows:
                _draw_row(ax, row, by[row], info, unit, what, styles[row], handles)
            if info.target is not None and (what == "eval") == with_eval:
                h = ax.axhline(info.target, color="k", ls=(0, (1, 2)), lw=0.9)
                handles.setdefault(f"target {fmt_sci(info.target)}", h)
            ax.set_xscale("log")
            ax.set_yscale("log")
            log_axis(ax.xaxis)
            ax.set_xlabel(f"work ({UNITS[unit]}, log)")
            ax.set_ylabel(
                ("training loss" + (f" (= {info.metric_label})" if not with_eval else ""))
                if what == "loss"
                else info.metric_label
            )
            ax.grid(True, which="major", alpha=0.3)
    fig.legend(
        list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False
    )
    fig.suptitle(
        f"{info.display_name} (`{task}`), profile {profile}: "
        f"{'training loss and ' + info.metric_label if with_eval else info.metric_label} "
        "versus work\nmedian over seeds, band min-max; o refinement; x diverged; "
        "thin grey: collapsed seed",
        fontsize=9,
    )
    return save(fig, path)


def _draw_row(ax, row, recs, info: TaskInfo, unit, what, style, handles) -> None:
    seeds = [seed_result(r, info.metric) for r in sorted(recs, key=lambda r: r.seed)]

    def traj(r: Record):
        return loss_trajectory(r, unit) if what == "loss" else eval_trajectory(r, unit, info.metric)

    counted = [s.record for s in seeds if s.status == "ok"]
    for s in seeds:  # collapsed and diverged seeds, drawn on their own
        t = traj(s.record)
        if not t:
            continue
        x, y = zip(*[(a, b) for a, b in t if a > 0] or [(math.nan, math.nan)])
        if s.status == "collapsed":
            h = ax.plot(x, y, color="0.55", lw=0.8, ls=style["ls"])[0]
            handles.setdefault(f"{row} (collapsed)", h)
        elif s.status == "diverged":
            ax.plot(x, y, color=style["color"], lw=0.6, alpha=0.6, ls=style["ls"])
            ax.plot([x[-1]], [y[-1]], "x", color=style["color"], ms=6)
    trajs = [traj(r) for r in counted]
    if what == "loss":
        ends = [total_work(r, unit) or 0.0 for r in counted]
        band = median_band([t for t in trajs if t], [e for t, e in zip(trajs, ends) if t])
        common = min((e for t, e in zip(trajs, ends) if t), default=math.inf)
        for t in trajs:  # seeds that ran past the common end: thin tails
            tail = [(a, b) for a, b in t if a >= common]
            if len(tail) > 1:
                ax.plot(*zip(*tail), color=style["color"], ls=style["ls"], lw=0.7, alpha=0.6)
    else:
        band = _eval_median(trajs)
    if band is None:
        return
    wx, med, lo, hi = band
    h = ax.plot(wx, med, color=style["color"], ls=style["ls"], lw=1.5)[0]
    handles.setdefault(f"{row} ({len(trajs)} seed{'s' * (len(trajs) != 1)})", h)
    if len(trajs) > 1:
        ax.fill_between(wx, lo, hi, color=style["color"], alpha=0.15, lw=0)
    if what == "loss":
        rx, ry = _refinement_points(counted, unit, wx, med)
        ax.plot(rx, ry, "o", ms=4, mfc="white", mec=style["color"], mew=1.0)
    elif len(wx):
        ax.plot(wx, med, "o", ms=2.5, color=style["color"])


# ----------------------------------------------------------------------------- models
def _task(rec: Record):
    from bench_mlkan.tasks import TASKS

    return TASKS[rec.task](**(rec.config.get("task_options") or {}))


def load_level_models(rec: Record, task) -> dict[int, Any]:
    """{level: model at that level's end} rebuilt from the record's config and weights."""
    import torch

    from ..config import RunConfig
    from ..engine import build_model

    if rec.weights_path is None:
        raise ValueError(f"{rec.row} seed {rec.seed}: a record without a file has no weights")
    config = RunConfig.from_dict(dict(rec.config))
    saved = torch.load(rec.weights_path, map_location="cpu", weights_only=True)
    dtype = torch.float64 if config.precision == "64" else torch.float32
    out = {}
    for level in sorted(int(k) for k in saved["levels"]):
        state = saved["levels"].get(level, saved["levels"].get(str(level)))
        model = build_model(config, task, level).to(dtype)
        model.load_state_dict(state)
        model.eval()
        out[level] = model
    return out


def _grid(domain, n: int):
    import torch

    (x0, x1), (y0, y1) = domain
    X, Y = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n), indexing="xy")
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], axis=-1), dtype=torch.float64)
    return X, Y, pts


def draw_solution_maps(
    task_name: str, runs: Sequence[Record], profile: str, path: Path
) -> list[Path]:
    import torch

    task = _task(runs[0])
    if task.input_dim != 2:
        raise ValueError(f"{task_name}: solution maps need a 2-D domain, got {task.input_dim}")
    X, Y, pts = _grid(task.domain, MAP_POINTS)
    ref = task.reference(pts).detach().cpu().numpy().reshape(X.shape)
    labels = tuple(getattr(task, "coordinates", ("x", "y")))
    n = len(runs)
    fig = figure(3.2 * (n + 1), 5.8)
    axes = fig.subplots(2, n + 1, squeeze=False)
    vmin, vmax = float(ref.min()), float(ref.max())
    extent = (X.min(), X.max(), Y.min(), Y.max())

    def show(ax, Z, title, cmap, lo=None, hi=None):
        im = ax.imshow(
            Z,
            origin="lower",
            extent=extent,
            aspect="auto",
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
        )
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])

    show(axes[0][0], ref, "reference", "RdBu_r", vmin, vmax)
    axes[1][0].axis("off")
    for j, rec in enumerate(runs, start=1):
        models = load_level_models(rec, task)
        with torch.no_grad():
            pred = task.predict(models[max(models)], pts).detach().cpu().numpy().reshape(X.shape)
        err = np.abs(pred - ref)
        rel = float(np.linalg.norm(pred - ref)) / max(float(np.linalg.norm(ref)), 1e-300)
        collapsed = " - collapsed" if collapse_state(rec) else ""
        show(axes[0][j], pred, f"{rec.row} (seed {rec.seed}){collapsed}", "RdBu_r", vmin, vmax)
        show(axes[1][j], err, f"|error|, rel. L2 {fmt_sci(rel)} on this grid", "magma")
    fig.suptitle(
        f"{task_info(task_name).display_name} (`{task_name}`), profile {profile}: "
        f"final models on a {MAP_POINTS} x {MAP_POINTS} grid",
        fontsize=9,
    )
    return save(fig, path)


def residual_spectrum(task, model, nx: int, nt: int) -> np.ndarray:
    """mean over t of |rfft_x(r(x, t))| / nx on the periodic grid x_j = -1 + 2j/nx."""
    import torch

    xs = -1.0 + 2.0 * torch.arange(nx, dtype=torch.float64) / nx
    ts = (torch.arange(nt, dtype=torch.float64) + 0.5) / nt
    T, Xg = torch.meshgrid(ts, xs, indexing="ij")  # (nt, nx)
    pts = torch.stack([Xg.reshape(-1), T.reshape(-1)], dim=-1)
    p = next(model.parameters())
    pts = pts.to(dtype=p.dtype).requires_grad_(True)
    with torch.enable_grad():
        r = task.residual(model, pts).detach().double().reshape(nt, nx).numpy()
    return np.abs(np.fft.rfft(r, axis=1)).mean(axis=0) / nx


def draw_residual_spectra(
    task_name: str, runs: Sequence[Record], profile: str, path: Path
) -> list[Path]:
    from matplotlib import colormaps

    task = _task(runs[0])
    n = len(runs)
    fig = figure(4.6 * n + 1.5, 4.0)
    axes = fig.subplots(1, n, squeeze=False)[0]
    nx, nt = SPECTRUM_GRID
    cmap = colormaps["viridis"]
    for ax, rec in zip(axes, runs):
        models = load_level_models(rec, task)
        grid = (rec.config.get("model_options") or {}).get("grid_size")
        for i, (level, model) in enumerate(sorted(models.items())):
            spec = residual_spectrum(task, model, nx, nt)
            g = f" (grid {int(grid) * 2**level})" if grid else ""
            ax.semilogy(
                np.arange(len(spec)),
                spec,
                color=cmap(i / max(len(models) - 1, 1)),
                label=f"end of level {level}{g}",
            )
        ax.set_xlabel("wavenumber m (x in [-1, 1], periodic)")
        ax.set_ylabel("mean over t of |FFT_x residual| / nx")
        ax.set_title(f"{rec.row} (seed {rec.seed})", fontsize=9)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    fig.suptitle(
        f"{task_info(task_name).display_name} (`{task_name}`), profile {profile}: "
        f"spectrum of the PDE residual per level end ({nx} x {nt} grid)",
        fontsize=9,
    )
    return save(fig, path)


# ----------------------------------------------------------------------------- profiles
def draw_performance_profile(records: Records, profile: str, path: Path) -> list[Path]:
    ct = cross_task(records)
    styles = row_styles(ct.rows)
    fig = figure(11.5, 4.2)
    axes = fig.subplots(1, 2)
    handles: dict[str, Any] = {}
    for ax, table, tau_max, title in (
        (axes[0], ct.time, TAU_MAX_TIME, "time-to-target (MACs)"),
        (axes[1], ct.quality, TAU_MAX_QUALITY, "final metric at the recorded work"),
    ):
        taus = np.exp(np.linspace(0.0, math.log(tau_max), 400))
        prof = ct.profile(table, list(taus))
        for b in ct.rows:
            h = ax.step(taus, prof[b], where="post", lw=1.4, **styles[b])[0]
            handles.setdefault(b, h)
        ax.set_xscale("log")
        log_axis(ax.xaxis)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("tau (ratio to the best row on a task, log)")
        ax.set_ylabel(f"fraction of {len(ct.tasks)} tasks within tau")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.legend(
        list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False
    )
    fig.suptitle(
        f"Performance profiles across tasks, profile {profile} (collapsed, diverged "
        "and failed seeds count as never reaching)",
        fontsize=9,
    )
    return save(fig, path)
