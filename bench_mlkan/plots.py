"""Leaderboard plots (PNG, matplotlib's Agg canvas, no pyplot state): drawn from run records,
from the weights saved beside them, and from the spline maths.

* ``<task>_convergence.png`` - training loss versus work (paper units and MACs), every seed
  thin, the median over seeds bold, dashed vertical lines at refinements (paper Fig. 4, 6, 7);
  PINN tasks add the evaluation metric (relative L2) versus work.
* ``<task>_solution.png`` - reference, prediction and |error| maps of the final model of
  each baseline (lowest finished seed), for PINN tasks on 2-D or space-time domains.
* ``<task>_residual_spectra.png`` - Allen-Cahn: |FFT_x| of the PDE residual
  u_t - eps u_xx - 5u + 5u^3 averaged over t, one curve per level end (paper Fig. 8, 9).
* ``ata_spectra.png`` / ``condition_growth.png`` - eigenvalues and first/last five
  eigenvectors of A^T A for n = 50, degrees 0 and 2; cond(A^T A) versus n for degrees 0..3
  (paper Fig. 1, 2; no records needed).
* ``performance_profile.png`` - the cross-task performance profiles of the summary page.

``plan(records, results_dir)`` lists what will be drawn (from the records alone, so the
markdown never depends on whether drawing succeeded); each ``PlotSpec.draw(path)`` draws.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import leaderboard as LB

#: Fixed colours per baseline (tab10 order of ``BASELINE_ORDER``), grey for unknown ones.
_PALETTE = [
    "#1f77b4",
    "#17becf",
    "#d62728",
    "#9467bd",
    "#ff7f0e",
    "#bcbd22",
    "#8c564b",
    "#2ca02c",
    "#7f7f7f",
    "#e377c2",
]
SPECTRA_N = 50
SPECTRA_DEGREES = (0, 2)
CONDITION_NS = (4, 8, 16, 32, 64, 128, 256)
CONDITION_DEGREES = (0, 1, 2, 3)
MAP_POINTS = 101
SPECTRUM_GRID = (128, 50)  # (x points on the periodic grid, t points)


def colour(baseline: str) -> str:
    if baseline in LB.BASELINE_ORDER:
        return _PALETTE[LB.BASELINE_ORDER.index(baseline) % len(_PALETTE)]
    return "#444444"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})


@dataclass
class PlotSpec:
    filename: str
    caption: str
    task: str | None
    draw: Callable[[Path], None]


# ----------------------------------------------------------------------------- plan
def weights_path(rec: dict[str, Any]) -> Path:
    return Path(rec["_path"]).with_suffix(".pt")


def map_runs(by_baseline: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per baseline the lowest finished seed with saved weights."""
    out = []
    for b in LB.ordered(by_baseline, LB.BASELINE_ORDER):
        for rec in by_baseline[b]:
            if rec.get("status") == "ok" and weights_path(rec).exists():
                out.append(rec)
                break
    return out


def plan(records: dict[str, dict[str, list[dict[str, Any]]]], results_dir: Path) -> list[PlotSpec]:
    """Every plot the records allow, in a fixed order."""
    specs: list[PlotSpec] = []
    for task in LB.ordered(records, LB.TASK_ORDER):
        by = records[task]
        specs.append(
            PlotSpec(
                f"{task}_convergence.png",
                "convergence versus work",
                task,
                functools.partial(draw_convergence, task, by),
            )
        )
        runs = map_runs(by)
        if LB.task_kind(by) == "pinn" and runs:
            specs.append(
                PlotSpec(
                    f"{task}_solution.png",
                    "solution and error maps",
                    task,
                    functools.partial(draw_solution_maps, task, runs),
                )
            )
        multi = [r for r in runs if len(r.get("params_per_level") or {}) > 1]
        if task.startswith("allen_cahn") and multi:
            specs.append(
                PlotSpec(
                    f"{task}_residual_spectra.png",
                    "PDE residual spectra per level",
                    task,
                    functools.partial(draw_residual_spectra, task, multi),
                )
            )
    if LB.cross_task(records).tasks:
        specs.append(
            PlotSpec(
                "performance_profile.png",
                "cross-task performance profiles",
                None,
                functools.partial(draw_performance_profile, records),
            )
        )
    specs.append(
        PlotSpec("ata_spectra.png", "A^T A spectra and eigenvectors (n = 50)", None, draw_spectra)
    )
    specs.append(
        PlotSpec("condition_growth.png", "cond(A^T A) versus n", None, draw_condition_growth)
    )
    return specs


# ----------------------------------------------------------------------------- convergence
def _median_curve(recs: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Median training loss over the finished seeds at the steps all of them recorded."""
    hists = [r["history"] for r in recs if r.get("status") == "ok" and r.get("history")]
    if len(hists) < 2:
        return None
    common = set.intersection(*({int(h["step"]) for h in hist} for hist in hists))
    if not common:
        return None
    steps = sorted(common)
    by_step = [{int(h["step"]): h for h in hist} for hist in hists]
    work = np.array([float(by_step[0][s][key]) for s in steps])
    loss = np.median(np.array([[float(b[s]["loss"]) for s in steps] for b in by_step]), axis=0)
    return work, loss


def draw_convergence(task: str, by: dict[str, list[dict[str, Any]]], path: Path) -> None:
    spec = LB.metric_spec(task, LB.task_kind(by))
    with_eval = spec.source == "eval"
    fig = _figure(12, 8.5 if with_eval else 4.6)
    axes = fig.subplots(2 if with_eval else 1, 2, squeeze=False)
    units = (("work", "work (coarse steps)"), ("work_macs", "work (MACs)"))
    for col, (key, xlabel) in enumerate(units):
        ax = axes[0][col]
        for b in LB.ordered(by, LB.BASELINE_ORDER):
            c, recs = colour(b), by[b]
            med = _median_curve(recs, key)
            for rec in recs:
                hist = rec.get("history") or []
                if not hist:
                    continue
                x = [float(h[key]) for h in hist]
                y = [float(h["loss"]) for h in hist]
                thin = med is not None or rec.get("status") != "ok"
                ax.plot(
                    x,
                    y,
                    color=c,
                    lw=0.6 if thin else 1.6,
                    alpha=0.35 if thin else 1.0,
                    label=None if thin else b,
                )
                if rec.get("status") == "diverged" and x:
                    ax.plot([x[-1]], [y[-1]], "x", color=c, ms=7)
            if med is not None:
                ax.plot(med[0], med[1], color=c, lw=1.6, label=f"{b} (median)")
            first_ok = next((r for r in recs if r.get("status") == "ok"), None)
            for ref in (first_ok or {}).get("refinements") or []:
                ax.axvline(float(ref[key]), color=c, ls="--", lw=0.8, alpha=0.6)
        if spec.source == "loss" and spec.target is not None:
            ax.axhline(spec.target, color="k", ls=":", lw=0.8, label="time-to-target level")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training loss")
        ax.grid(True, which="major", alpha=0.3)
        if with_eval:
            ax2 = axes[1][col]
            for b in LB.ordered(by, LB.BASELINE_ORDER):
                c = colour(b)
                for i, rec in enumerate(by[b]):
                    traj = LB.eval_trajectory(rec, key, spec.key)
                    if traj:
                        ax2.plot(
                            *zip(*traj),
                            "o-",
                            color=c,
                            ms=3,
                            lw=1.0,
                            alpha=1.0 if i == 0 else 0.35,
                            label=b if i == 0 else None,
                        )
            if spec.target is not None:
                ax2.axhline(spec.target, color="k", ls=":", lw=0.8, label="target")
            ax2.set_yscale("log")
            ax2.set_xlabel(xlabel)
            ax2.set_ylabel(spec.label)
            ax2.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    if with_eval:
        axes[1][0].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"{task}: training loss versus work (dashed: refinements; thin: single seeds, "
        "bold: median over finished seeds; x: diverged)",
        fontsize=10,
    )
    _save(fig, path)


# ----------------------------------------------------------------------------- models
def _task(config: dict[str, Any]):
    from bench_mlkan.tasks import TASKS

    return TASKS[config["task"]](**(config.get("task_options") or {}))


def load_level_models(rec: dict[str, Any], task) -> dict[int, Any]:
    """{level: model at that level's end} rebuilt from the record's config and weights."""
    import torch

    from .config import RunConfig
    from .engine import build_model

    config = RunConfig.from_dict(rec["config"])
    saved = torch.load(weights_path(rec), map_location="cpu", weights_only=True)
    dtype = torch.float64 if config.precision == "64" else torch.float32
    out = {}
    for level in sorted(int(k) for k in saved["levels"]):
        state = saved["levels"].get(level, saved["levels"].get(str(level)))
        model = build_model(config, task, level).to(dtype)
        model.load_state_dict(state)
        model.eval()
        out[level] = model
    return out


def _grid(domain, n: int) -> tuple[np.ndarray, np.ndarray, Any]:
    import torch

    (x0, x1), (y0, y1) = domain
    xs = np.linspace(x0, x1, n)
    ys = np.linspace(y0, y1, n)
    X, Y = np.meshgrid(xs, ys, indexing="xy")  # rows: second coordinate
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], axis=-1), dtype=torch.float64)
    return X, Y, pts


def draw_solution_maps(task_name: str, runs: list[dict[str, Any]], path: Path) -> None:
    import torch

    task = _task(runs[0]["config"])
    if task.input_dim != 2:
        raise ValueError(f"{task_name}: solution maps need a 2-D domain, got {task.input_dim}")
    X, Y, pts = _grid(task.domain, MAP_POINTS)
    ref = task.reference(pts).detach().cpu().numpy().reshape(X.shape)
    labels = ("x", "t") if task_name.startswith(("burgers", "allen_cahn")) else ("x", "y")
    n = len(runs)
    fig = _figure(3.4 * (n + 1), 6.2)
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
        model = models[max(models)]
        with torch.no_grad():
            pred = task.predict(model, pts).detach().cpu().numpy().reshape(X.shape)
        err = np.abs(pred - ref)
        rel = float(np.linalg.norm(pred - ref)) / max(float(np.linalg.norm(ref)), 1e-300)
        b = rec["baseline"]
        show(axes[0][j], pred, f"{b} (seed {rec['seed']})", "RdBu_r", vmin, vmax)
        show(axes[1][j], err, f"|error|, rel. L2 {LB.fmt_sci(rel)} on this grid", "magma")
    fig.suptitle(f"{task_name}: final models ({MAP_POINTS} x {MAP_POINTS} grid)", fontsize=10)
    _save(fig, path)


def residual(task, model, x):
    """The task's PDE residual at points x (a leaf requiring grad)."""
    if hasattr(task, "residual"):
        return task.residual(model, x)
    raise ValueError(f"task {task.name!r} has no residual()")


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
        r = residual(task, model, pts).detach().double().reshape(nt, nx).numpy()
    return np.abs(np.fft.rfft(r, axis=1)).mean(axis=0) / nx


def draw_residual_spectra(task_name: str, runs: list[dict[str, Any]], path: Path) -> None:
    task = _task(runs[0]["config"])
    n = len(runs)
    fig = _figure(5.0 * n, 4.2)
    axes = fig.subplots(1, n, squeeze=False)[0]
    nx, nt = SPECTRUM_GRID
    for ax, rec in zip(axes, runs):
        models = load_level_models(rec, task)
        cmap = __import__("matplotlib").colormaps["viridis"]
        grid = (rec["config"].get("model_options") or {}).get("grid_size")
        for i, (level, model) in enumerate(sorted(models.items())):
            spec = residual_spectrum(task, model, nx, nt)
            g = f"grid {int(grid) * 2**level}" if grid else ""
            ax.semilogy(
                np.arange(len(spec)),
                spec,
                color=cmap(i / max(len(models) - 1, 1)),
                label=f"end of level {level} {g}",
            )
        ax.set_xlabel("wavenumber m (x in [-1, 1] periodic)")
        ax.set_ylabel("mean over t of |FFT_x residual| / nx")
        ax.set_title(f"{rec['baseline']} (seed {rec['seed']})", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{task_name}: spectrum of the residual u_t - eps u_xx - 5u + 5u^3 ({nx} x {nt} grid)",
        fontsize=10,
    )
    _save(fig, path)


# ----------------------------------------------------------------------------- profiles
def draw_performance_profile(records, path: Path) -> None:
    ct = LB.cross_task(records)
    fig = _figure(11, 4.4)
    axes = fig.subplots(1, 2)
    for ax, table, tau_max, title in (
        (axes[0], ct.time, LB.TAU_MAX_TIME, "time-to-target (MACs)"),
        (axes[1], ct.quality, LB.TAU_MAX_QUALITY, "final metric at the recorded work"),
    ):
        taus = np.exp(np.linspace(0.0, math.log(tau_max), 400))
        prof = ct.profile(table, list(taus))
        score = ct.score(table, tau_max)
        for b in ct.baselines:
            ax.step(taus, prof[b], where="post", color=colour(b), label=f"{b} ({score[b]:.2f})")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("tau (ratio to the best baseline on a task)")
        ax.set_ylabel(f"fraction of {len(ct.tasks)} tasks within tau")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, title="baseline (score)", title_fontsize=7)
    fig.suptitle("Performance profiles across tasks", fontsize=10)
    _save(fig, path)


# ----------------------------------------------------------------------------- spectra
def ata(n: int, degree: int):
    """A^T A of the change of basis on [0, 1] with h = 1/n (float64 tensor)."""
    from .splines import Grid, change_of_basis

    A = change_of_basis(Grid(n, degree, (0.0, 1.0)), scaled=False)
    return A.T @ A


@functools.lru_cache(maxsize=64)
def condition_number(n: int, degree: int) -> float:
    """cond_2(A^T A) = (||A||_2 ||A^-1||_2)^2 (largest singular values only: accurate even
    where the smallest eigenvalue of A^T A is below round-off)."""
    from .splines import Grid, change_of_basis, change_of_basis_inverse

    g = Grid(n, degree, (0.0, 1.0))
    A, Ainv = change_of_basis(g).numpy(), change_of_basis_inverse(g).numpy()
    return float(np.linalg.norm(A, 2) * np.linalg.norm(Ainv, 2)) ** 2


def _eig(n: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    w, V = torch.linalg.eigh(ata(n, degree))
    V = V.numpy()
    idx = np.argmax(np.abs(V), axis=0)
    V = V * np.sign(V[idx, np.arange(V.shape[1])])  # fixed sign: largest entry positive
    return w.numpy(), V


def draw_spectra(path: Path) -> None:
    fig = _figure(13, 7.5)
    axes = fig.subplots(len(SPECTRA_DEGREES), 3, squeeze=False)
    n = SPECTRA_N
    for row, k in enumerate(SPECTRA_DEGREES):
        w, V = _eig(n, k)
        ax = axes[row][0]
        ax.semilogy(np.arange(1, len(w) + 1), w, "o-", ms=2.5)
        ax.set_title(f"degree {k}: eigenvalues of A^T A (n = {n}), ascending", fontsize=9)
        ax.set_xlabel("index")
        ax.grid(True, alpha=0.3)
        for col, (sel, name) in enumerate(((range(5), "first five"), (range(-5, 0), "last five"))):
            ax = axes[row][col + 1]
            for pos, i in enumerate(sel):
                j = i % len(w)
                ax.plot(
                    V[:, j] - 0.6 * pos,
                    lw=1.0,
                    label=f"v{j + 1} (lambda {LB.fmt_sci(float(w[j]), 2)})",
                )
            ax.set_title(f"degree {k}: {name} eigenvectors (offset for clarity)", fontsize=9)
            ax.set_xlabel("basis index")
            ax.set_yticks([])
            ax.legend(fontsize=6, loc="upper right")
            ax.grid(True, alpha=0.3)
    fig.suptitle(
        "Change of basis B = A psi on uniform knots, h = 1/n: A^T A behaves like a 2(k+1)-th "
        "derivative (smooth eigenvectors small, oscillatory ones large)",
        fontsize=10,
    )
    _save(fig, path)


def draw_condition_growth(path: Path) -> None:
    fig = _figure(6.5, 4.8)
    ax = fig.subplots()
    ns = np.array(CONDITION_NS, dtype=float)
    for k in CONDITION_DEGREES:
        c = np.array([condition_number(int(n), k) for n in ns])
        (line,) = ax.loglog(ns, c, "o-", ms=3, label=f"degree {k}")
        ax.loglog(
            ns, c[-1] * (ns / ns[-1]) ** (2 * (k + 1)), ls=":", color=line.get_color(), lw=0.8
        )
    ax.set_xlabel("n (grid intervals)")
    ax.set_ylabel("cond(A^T A)")
    ax.set_title("Condition growth (dotted: n^(2(k+1)))", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


#: The paper's quoted condition numbers (METHOD.md section 2): (n, degree) -> value.
PAPER_CONDITION = {(10, 0): 175.0, (10, 2): 3e6, (100, 2): 6.5e11}


def condition_table() -> list[str]:
    """Markdown: cond(A^T A) for n = 10, 50, 100 and degrees 0..3, the growth exponent
    measured between n = 128 and 256, and the paper's quoted values."""
    ns = (10, 50, 100)
    rows = []
    for k in CONDITION_DEGREES:
        conds = [condition_number(n, k) for n in ns]
        slope = math.log(condition_number(128, k) / condition_number(64, k)) / math.log(2)
        quoted = ", ".join(
            f"n={n}: {LB.fmt_sci(v, 2)}"
            for (n, kk), v in sorted(PAPER_CONDITION.items())
            if kk == k
        )
        rows.append(
            [
                str(k),
                *[LB.fmt_sci(c) for c in conds],
                f"{slope:.2f} (expected {2 * (k + 1)})",
                quoted or "-",
            ]
        )
    return [
        "cond(A^T A) of the change of basis on uniform knots, h = 1/n "
        "(computed as (||A|| ||A^-1||)^2; plots `plots/ata_spectra.png`, "
        "`plots/condition_growth.png`):",
        "",
        *LB.md_table(
            ["degree", *[f"n = {n}" for n in ns], "growth exponent (n 64->128)", "paper quotes"],
            rows,
        ),
    ]
