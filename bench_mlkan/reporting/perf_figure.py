"""The ``make perf`` figure (``leaderboards/perf/perf-<device>.png|svg``) from the result
dict that ``bench_mlkan.devtools.perf`` writes as JSON.

Top: the KAN layer sweep, one panel per grid size n: forward + backward time of each
evaluation path divided by the Cox-de Boor layer's (log axis; below 1 = faster), at each
layer shape and batch (x), marker = degree, filled = float64, open = float32. Bottom: the
paper's Fig. 3 network, time per forward + backward versus n (log-log) and the same as a
ratio to Cox-de Boor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.ticker import NullFormatter

from .style import figure, log_axis, save

BASELINE = "cox_de_boor"
#: one colour per evaluation path (cases of the perf result; others grey)
CASE_COLOURS = {
    "c": "#1f77b4",
    "gather": "#17becf",
    "dense": "#9467bd",
    "autograd": "#ff7f0e",
    "mlp": "#2ca02c",
    "kan": "#1f77b4",
    "power_relu": "#d62728",
    BASELINE: "#7f7f7f",
}
DEGREE_MARKERS = ("o", "s", "^", "D", "v")
DEGREE_STYLES = ("-", "--", ":", "-.")


def _case_colour(case: str) -> str:
    return CASE_COLOURS.get(case, "#444444")


def draw_perf(result: Mapping[str, Any], png: Path) -> list[Path]:
    """Draw the perf figure (sections present in ``result``); returns the files written."""
    layer, fig3 = result.get("layer") or [], result.get("fig3") or []
    if not layer and not fig3:
        return []
    env = result.get("environment") or {}
    fig = figure(15, 8.6 if layer and fig3 else 4.6)
    parts = fig.subfigures(2 if layer and fig3 else 1, 1, squeeze=False)[:, 0]
    if layer:
        _layer_panels(parts[0], layer)
    if fig3:
        _fig3_panels(parts[-1], fig3)
    fig.suptitle(
        f"make perf on {env.get('device_name') or env.get('device', '?')} "
        f"({env.get('torch_threads', '?')} threads, torch {env.get('torch', '?')}); "
        "medians of repeated forward + backward passes"
        + (" - quick mode" if result.get("quick") else ""),
        fontsize=10,
    )
    return save(fig, png)


def _layer_panels(sub, rows: list[dict]) -> None:
    grids = sorted({r["grid_size"] for r in rows})
    shapes = sorted({(tuple(r["widths"]), r["batch"]) for r in rows})
    degrees = sorted({r["degree"] for r in rows})
    cases = [c for c in rows[0]["ratio"] if c not in (BASELINE, "auto")]
    axes = sub.subplots(1, len(grids), sharey=True, squeeze=False)[0]
    handles: dict[str, Any] = {}
    width = 0.8 / max(len(cases), 1)
    for ax, n in zip(axes, grids):
        for r in (r for r in rows if r["grid_size"] == n):
            x0 = shapes.index((tuple(r["widths"]), r["batch"]))
            marker = DEGREE_MARKERS[degrees.index(r["degree"]) % len(DEGREE_MARKERS)]
            filled = r["dtype"] == "float64"
            for i, c in enumerate(cases):
                if c not in r["ratio"]:
                    continue
                colour = _case_colour(c)
                ax.plot(
                    [x0 - 0.4 + width * (i + 0.5)],
                    [r["ratio"][c]],
                    marker,
                    ms=5,
                    color=colour,
                    mfc=colour if filled else "white",
                    mew=1.0,
                    ls="none",
                )
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        log_axis(ax.yaxis)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([f"{p}x{q}\nB {b}" for (p, q), b in shapes], fontsize=7)
        for x in range(1, len(shapes)):
            ax.axvline(x - 0.5, color="0.85", lw=0.6)
        ax.set_title(f"KAN layer, grid n = {n}", fontsize=9)
        ax.set_xlabel("layer P x Q, batch B")
        ax.grid(True, axis="y", which="major", alpha=0.3)
    axes[0].set_ylabel("time / Cox-de Boor (log; < 1 faster)")
    import matplotlib.lines as mlines

    for c in cases:
        handles[f"{c} / Cox-de Boor"] = mlines.Line2D([], [], color=_case_colour(c), lw=6)
    for k, m in zip(degrees, DEGREE_MARKERS):
        handles[f"degree {k}"] = mlines.Line2D([], [], color="k", marker=m, ls="none")
    handles["float64 (filled)"] = mlines.Line2D([], [], color="k", marker="o", ls="none")
    handles["float32 (open)"] = mlines.Line2D([], [], color="k", marker="o", mfc="white", ls="none")
    sub.legend(
        list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False
    )


def _fig3_panels(sub, rows: list[dict]) -> None:
    degrees = sorted({r["degree"] for r in rows})
    cases = list(rows[0]["median_s"])
    ax_t, ax_r = sub.subplots(1, 2)
    handles: dict[str, Any] = {}
    for i, k in enumerate(degrees):
        sel = sorted((r for r in rows if r["degree"] == k), key=lambda r: r["grid_size"])
        ns = [r["grid_size"] for r in sel]
        ls = DEGREE_STYLES[i % len(DEGREE_STYLES)]
        for c in cases:
            colour = _case_colour(c)
            h = ax_t.plot(
                ns, [r["median_s"][c] * 1e3 for r in sel], ls, marker="o", ms=3, color=colour
            )[0]
            handles.setdefault(c, h)
            if c != BASELINE:
                ax_r.plot(ns, [r["ratio"][c] for r in sel], ls, marker="o", ms=3, color=colour)
        handles[f"degree {k}"] = ax_t.plot([], [], ls, color="k")[0]
    grids = sorted({r["grid_size"] for r in rows})
    for ax in (ax_t, ax_r):
        ax.set_xscale("log")
        ax.set_yscale("log")
        log_axis(ax.yaxis)
        ax.set_xticks(grids, [str(n) for n in grids])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("grid size n (log)")
        ax.grid(True, which="major", alpha=0.3)
    ax_r.axhline(1.0, color="k", lw=0.8)
    ax_t.set_ylabel("ms per forward + backward (log)")
    ax_r.set_ylabel("time / Cox-de Boor (log)")
    ax_t.set_title("Fig. 3 network (3 hidden layers of 64)", fontsize=9)
    ax_r.set_title("Fig. 3 network, relative to Cox-de Boor", fontsize=9)
    sub.legend(
        list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False
    )
