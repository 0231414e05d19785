"""One look for every figure: a colour per model family, a line style per strategy, a
shade per row within its family and strategy; PNG at 200 dpi with an SVG beside it.

Figures are drawn on matplotlib's Agg canvas without pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..scoring.metadata import FAMILY_ORDER, STRATEGY_ORDER, baseline_info

DPI = 200
#: the paper's three families
FAMILY_COLOURS = {"kan": "#1f77b4", "mcmlp": "#d62728", "mlp": "#2ca02c"}
#: other known families (peers) take these in the order of their names
PEER_PALETTE = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
UNKNOWN_COLOUR = "#7f7f7f"
STRATEGY_STYLES = {
    "coarse": ":",
    "fine": "--",
    "multilevel": "-",
    "multilevel_carry": "-.",
    "vcycle": (0, (3, 1, 1, 1, 1, 1)),
    "adaptive": (0, (1, 1)),
    "single": "-",
}
OTHER_STYLE = (0, (5, 1, 1, 1))
assert set(STRATEGY_STYLES) == set(STRATEGY_ORDER)


def known_families() -> list[str]:
    """Families of the installed baselines (sorted)."""
    from bench_mlkan.baselines import BASELINES

    return sorted({baseline_info(name).family for name in BASELINES})


def family_colour(family: str) -> str:
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    peers = [f for f in known_families() if f not in FAMILY_ORDER and f != "unknown"]
    if family in peers:
        return PEER_PALETTE[peers.index(family) % len(PEER_PALETTE)]
    return UNKNOWN_COLOUR


def _shade(colour: str, t: float) -> tuple[float, float, float]:
    """``colour`` mixed with white (t > 0) or black (t < 0) by |t|."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    target = 1.0 if t > 0 else 0.0
    return tuple(c + abs(t) * (target - c) for c in (r, g, b))  # type: ignore[return-value]


def row_styles(rows: Sequence[str]) -> dict[str, dict]:
    """{row: {"color", "ls"}}: family colour, strategy style; rows sharing both (e.g. three
    MLP sizes, variants) get shades from dark to light in the given order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        info = baseline_info(row)
        groups.setdefault((info.family, info.strategy), []).append(row)
    out = {}
    for (family, strategy), members in groups.items():
        base = family_colour(family)
        for i, row in enumerate(members):
            t = 0.0 if len(members) == 1 else -0.35 + 0.8 * i / (len(members) - 1)
            out[row] = {
                "color": _shade(base, t) if t else base,
                "ls": STRATEGY_STYLES.get(strategy, OTHER_STYLE),
            }
    return out


def figure(width: float, height: float):
    """A constrained-layout figure on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, png: Path) -> list[Path]:
    """Write ``png`` (200 dpi) and the SVG beside it (no dates, fixed ids); return both."""
    import matplotlib

    png.parent.mkdir(parents=True, exist_ok=True)
    svg = png.with_suffix(".svg")
    fig.savefig(png, format="png", dpi=DPI, metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": "bench-mlkan", "svg.fonttype": "none"}):
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return [png, svg]


def compact_number(v: float, _pos: object = None) -> str:
    """Tick label: "20", "0.5", "1e7" (no mathtext, no offset)."""
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:g}"
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_axis(axis) -> None:
    """Log scale with compact labels; minor ticks labelled only within one decade."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(compact_number))
    lo, hi = axis.get_data_interval()
    spans_decade = lo > 0 and hi / lo > 10
    axis.set_minor_formatter(NullFormatter() if spans_decade else FuncFormatter(compact_number))
