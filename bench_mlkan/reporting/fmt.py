"""Number and table formatting shared by the pages (pure functions, fixed formats)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from ..scoring.aggregate import Moments, Spread


def fmt_sci(v: float | None, digits: int = 3) -> str:
    """``3.67e-5``: ``digits`` significant digits, compact exponent; "-" for None."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_count(v: float | None) -> str:
    """An integer where it is one, else 4 significant digits; "-" for None."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return fmt_sci(v)
    if float(v).is_integer() and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.4g}"


def fmt_seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def fmt_ratio(r: float | None) -> str:
    """``4.51x``; "-" for None or nan."""
    if r is None or math.isnan(r):
        return "-"
    if math.isinf(r):
        return "inf" if r > 0 else "0"
    if 1e3 <= r < 1e4:
        return f"{r:.0f}x"
    return f"{r:.3g}x" if 1e-3 <= r < 1e3 else f"{fmt_sci(r)}x"


def fmt_times(r: float) -> str:
    """How many times lower or higher: "4.51x lower" for r = 4.51, "2x higher" for 0.5."""
    if math.isnan(r):
        return "-"
    if r >= 1:
        return f"{fmt_ratio(r)} lower"
    return f"{fmt_ratio(1 / r) if r > 0 else 'inf'} higher"


def fmt_p(p: float) -> str:
    return "-" if math.isnan(p) else (f"{p:.3f}" if p >= 1e-3 else fmt_sci(p, 2))


def fmt_spread(s: Spread | None, fmt: Callable[[float | None], str] = fmt_count) -> str:
    """One value when every run agrees, else "median (min-max)"."""
    if s is None:
        return "-"
    lo, med, hi = fmt(s.lo), fmt(s.median), fmt(s.hi)
    return med if lo == hi else f"{med} ({lo}-{hi})"


def fmt_moments(m: Moments | None) -> str:
    """ "mean (sd)"; the mean alone for one value; "-" for none."""
    if m is None:
        return "-"
    return fmt_sci(m.mean) if m.sd is None else f"{fmt_sci(m.mean)} ({fmt_sci(m.sd)})"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Markdown table lines (pipes inside cells escaped)."""

    def cell(s: str) -> str:
        return str(s).replace("|", "\\|")

    out = ["| " + " | ".join(cell(h) for h in header) + " |"]
    out.append("|" + "|".join("---" for _ in header) + "|")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"
