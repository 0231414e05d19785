"""Which readings of the paper reproduce its regression claims (Table 2, METHOD.md 5.1).

An ablation profile (``bench_mlkan/profiles/ablation_regression.json``) runs the Table 2
baselines under several *readings* - experiments that share a ``variant`` name and a set
of overrides, described in the profile's ``"variants"`` map - and the bench writes one
record per run to ``<results>/<profile>/<task>/<baseline>@<variant>/seed<k>.json``.
This module turns those records into ``leaderboards/sensitivity/<task>.md``: for each of
the paper's claims (``CLAIMS``), under which readings it holds and under which it fails,
with the per-seed numbers and the statistics of ``bench_mlkan.stats``.

Pure functions: ``collect`` (records -> values per reading and baseline),
``evaluate_claim`` (values -> ``ClaimResult``), ``render_page`` (-> markdown). The entry
point ``python -m bench_mlkan.sensitivity --profile ablation_regression`` reads the records
and the profile and writes the page (generated; never edit it by hand).

Runs that diverged count as MSE = +inf (worst rank, infinite mean); runs that failed
(crashed) are listed and left out of the statistics.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .stats import ALPHA, Comparison, Summary, compare, summarize

ClaimKind = Literal["within", "beats", "above", "no_gain"]

#: Baselines the claims name, in the order of the page's tables.
BASELINE_ORDER = (
    "kan_coarse",
    "kan_fine",
    "kan_multilevel",
    "mcmlp_coarse",
    "mcmlp_fine",
    "mcmlp_multilevel",
    "mlp_large",
)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper about train MSE (lower is better).

    kind:
        "within"  - mean(a) within a factor ``factor`` of the paper's ``value``.
        "beats"   - a is below b by >= ``factor`` x (``stats.compare``).
        "above"   - median(a) > ``value`` (the run "fails").
        "no_gain" - a is *not* below b by ``factor`` x (gm(b) / gm(a) < factor).
    """

    key: str
    text: str
    kind: ClaimKind
    a: str
    b: str | None = None
    factor: float = 1.0
    value: float | None = None


#: The claims of the paper's Table 2 (METHOD.md 5.1).
CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "spline multilevel within 3x of 3.67e-5", "within", "kan_multilevel",
          factor=3.0, value=3.67e-5),
    Claim("C2", "spline multilevel >= 10x below spline coarse", "beats", "kan_multilevel",
          "kan_coarse", factor=10.0),
    Claim("C3", "spline multilevel >= 10x below spline fine", "beats", "kan_multilevel",
          "kan_fine", factor=10.0),
    Claim("C4", "spline multilevel >= 10x below ReLU multilevel", "beats", "kan_multilevel",
          "mcmlp_multilevel", factor=10.0),
    Claim("C5", "ReLU fine fails (median MSE > 0.1)", "above", "mcmlp_fine", value=0.1),
    Claim("C6", "ReLU multilevel gains nothing over ReLU coarse (< 2x)", "no_gain",
          "mcmlp_multilevel", "mcmlp_coarse", factor=2.0),
)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One record reduced to what the page needs."""

    seed: int
    status: str
    value: float  # the metric; +inf when diverged, nan when failed


@dataclass(frozen=True)
class ClaimResult:
    """A claim evaluated under one reading."""

    claim: Claim
    verdict: str  # "holds", "holds (n.s.)", "fails", "fails (n.s.)", "no data"
    detail: str  # the numbers behind the verdict, one line of markdown
    comparison: Comparison | None = None
    summary: Summary | None = None


@dataclass(frozen=True)
class Reading:
    """One variant of the ablation profile: its name, what it changes, its overrides."""

    name: str
    description: str
    overrides: dict[str, Any]
    baselines: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- records
def split_row(row: str) -> tuple[str, str | None]:
    """``"b@v"`` -> ("b", "v"); ``"b"`` -> ("b", None)."""
    base, _, variant = row.partition("@")
    return base, variant or None


def collect(
    records: Iterable[dict[str, Any]], metric: str = "train_mse"
) -> dict[str, dict[str, list[Run]]]:
    """{variant: {baseline: [Run, ...] sorted by seed}} from run records.

    The variant is the record's ``variant`` (or the part after "@" of its baseline);
    records without one go under "" (the profile's plain rows).
    """
    out: dict[str, dict[str, list[Run]]] = {}
    for rec in records:
        base, from_row = split_row(str(rec["baseline"]))
        variant = rec.get("variant") or from_row or ""
        status = str(rec.get("status"))
        if status == "ok":
            value = float(rec.get("final_metrics", {}).get(metric, math.nan))
        elif status == "diverged":
            value = math.inf
        else:
            value = math.nan
        if status == "ok" and not (value > 0):  # exact zero or missing metric
            status, value = "failed", math.nan
        out.setdefault(variant, {}).setdefault(base, []).append(
            Run(int(rec["seed"]), status, value)
        )
    for runs in out.values():
        for lst in runs.values():
            lst.sort(key=lambda r: r.seed)
    return out


def usable(runs: Sequence[Run]) -> list[float]:
    """Values of the runs that finished or diverged (+inf); failed runs are left out."""
    return [r.value for r in runs if r.status in ("ok", "diverged")]


# ----------------------------------------------------------------------------- claims
def evaluate_claim(claim: Claim, runs: dict[str, list[Run]], alpha: float = ALPHA) -> ClaimResult:
    """The verdict of ``claim`` on one reading's runs ({baseline: runs})."""
    a = usable(runs.get(claim.a, []))
    b = usable(runs.get(claim.b, [])) if claim.b else []
    if not a or (claim.b and not b):
        return ClaimResult(claim, "no data", "")
    if claim.kind == "within":
        assert claim.value is not None
        s = summarize(a)
        lo, hi = claim.value / claim.factor, claim.value * claim.factor
        verdict = "holds" if lo <= s.mean <= hi else "fails"
        side = "" if lo <= s.mean <= hi else (", lower" if s.mean < lo else ", higher")
        detail = (
            f"mean {fmt(s.mean)} vs paper {fmt(claim.value)} "
            f"({fmt_ratio(s.mean / claim.value)}{side})"
        )
        return ClaimResult(claim, verdict, detail, summary=s)
    if claim.kind == "above":
        assert claim.value is not None
        s = summarize(a)
        above = sum(v > claim.value for v in a)
        verdict = "holds" if s.median > claim.value else "fails"
        detail = f"median {fmt(s.median)}; {above}/{len(a)} seeds > {fmt(claim.value)}"
        return ClaimResult(claim, verdict, detail, summary=s)
    c = compare(a, b, claim.factor, alpha=alpha)
    if claim.kind == "beats":
        verdict = c.verdict
    else:  # no_gain: the negation of "a beats b by factor"
        verdict = {
            "holds": "fails",
            "holds (n.s.)": "fails (n.s.)",
            "fails": "holds",
            "fails (n.s.)": "holds (n.s.)",
        }[c.verdict]
    detail = (
        f"ratio {fmt_ratio(c.ratio)} [{fmt_ratio(c.interval[0])}, {fmt_ratio(c.interval[1])}], "
        f"p {c.p_value:.3f}"
    )
    return ClaimResult(claim, verdict, detail, comparison=c)


# ----------------------------------------------------------------------------- formatting
def fmt(v: float) -> str:
    """3 significant digits, scientific ('inf' for diverged, '-' for nan)."""
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.2e}"


def fmt_ratio(v: float) -> str:
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "0"
    return f"{v:.3g}x"


def cell(runs: Sequence[Run]) -> str:
    """'mean / median' of a baseline under one reading (finished runs), then the count of
    diverged ('div') and crashed ('failed') runs."""
    if not runs:
        return ""
    vals = usable(runs)
    finite = [v for v in vals if math.isfinite(v)]
    div = sum(r.status == "diverged" for r in runs)
    failed = sum(r.status == "failed" for r in runs)
    parts = []
    if finite:
        s = summarize(finite)
        parts.append(f"{fmt(s.mean)} / {fmt(s.median)}")
    if div:
        parts.append(f"{div} div")
    if failed:
        parts.append(f"{failed} failed")
    return "; ".join(parts)


SYMBOL = {
    "holds": "**holds**",
    "holds (n.s.)": "holds (n.s.)",
    "fails": "fails",
    "fails (n.s.)": "fails (n.s.)",
    "no data": "-",
}


# ----------------------------------------------------------------------------- page
def render_page(
    data: dict[str, dict[str, list[Run]]],
    readings: Sequence[Reading],
    *,
    task: str,
    profile: str,
    claims: Sequence[Claim] = CLAIMS,
    summary_text: str | None = None,
    findings: Sequence[str] = (),
    paper: dict[str, tuple[float, float]] | None = None,
) -> str:
    """The markdown page: verdict paragraph, readings x claims, (findings,) readings x
    baselines, per-reading details, definitions. ``findings``: bullet texts kept with the
    profile (its ``"findings": {task: [...]}``), shown as written; ``paper``: {baseline:
    (mean, sd)} of the paper's table, shown as the first row of the MSE table."""
    results = {r.name: [evaluate_claim(c, data.get(r.name, {})) for c in claims] for r in readings}
    lines = [
        f"# Sensitivity of the paper's `{task}` claims to the readings it leaves open",
        "",
        f"Generated by `python -m bench_mlkan.sensitivity --profile {profile}` from the run "
        f"records under `leaderboards/results/{profile}/{task}/`; do not edit.",
        "",
        summary_text or verdict_paragraph(results, readings, claims),
        "",
        "## Claims x readings",
        "",
        "Each cell: the verdict on train MSE over the seeds of that reading "
        "(**holds** = significant at p < "
        f"{ALPHA}; n.s. = the point estimate says so, the rank test does not), then the "
        "numbers behind it. Ratios are of geometric means with a 95% bootstrap interval; "
        "p is the one-sided Mann-Whitney test of the claim's direction.",
        "",
        "| reading | " + " | ".join(f"{c.key}: {c.text}" for c in claims) + " |",
        "|---|" + "---|" * len(claims),
    ]
    for r in readings:
        cells = [f"{SYMBOL[x.verdict]}<br>{x.detail}" for x in results[r.name]]
        lines.append(f"| `{r.name}` | " + " | ".join(cells) + " |")
    if findings:
        lines += ["", "## Findings", ""] + [f"- {f}" for f in findings]
    present = [b for b in BASELINE_ORDER if any(b in data.get(r.name, {}) for r in readings)]
    lines += [
        "",
        "## Train MSE per reading and baseline",
        "",
        "Mean / median over the seeds that finished (the paper reports means; a median "
        "resists one bad seed); 'div' = diverged runs (counted as +inf in the claims), "
        "'failed' = crashed runs (left out). Per-seed values further down.",
        "",
        "| reading | " + " | ".join(f"`{b}`" for b in present) + " |",
        "|---|" + "---|" * len(present),
    ]
    if paper:
        lines.append(
            "| **paper** (mean (sd)) | "
            + " | ".join(
                f"{fmt(paper[b][0])} ({fmt(paper[b][1])})" if b in paper else "" for b in present
            )
            + " |"
        )
    for r in readings:
        runs = data.get(r.name, {})
        lines.append(f"| `{r.name}` | " + " | ".join(cell(runs.get(b, [])) for b in present) + " |")
    lines += ["", "## Readings", "", "| reading | what changes | overrides |", "|---|---|---|"]
    for r in readings:
        ov = json.dumps(r.overrides, sort_keys=True) if r.overrides else "(none)"
        lines.append(f"| `{r.name}` | {r.description} | `{ov}` |")
    lines += ["", "## Per-seed values", ""]
    for r in readings:
        runs = data.get(r.name, {})
        if not runs:
            continue
        lines += [
            f"### `{r.name}`",
            "",
            "| baseline | seeds | mean (sd) | median |",
            "|---|---|---|---|",
        ]
        for b in present:
            if b not in runs:
                continue
            per_seed = ", ".join(
                f"{x.seed}: {fmt(x.value) if x.status != 'diverged' else 'diverged'}"
                + ("" if x.status in ("ok", "diverged") else f" ({x.status})")
                for x in runs[b]
            )
            vals = usable(runs[b])
            s = summarize(vals) if vals else None
            mean = f"{fmt(s.mean)} ({fmt(s.sd)})" if s else "-"
            lines.append(f"| `{b}` | {per_seed} | {mean} | {fmt(s.median) if s else '-'} |")
        lines.append("")
    lines += definitions(claims)
    return "\n".join(lines).rstrip() + "\n"


def verdict_paragraph(
    results: dict[str, list[ClaimResult]], readings: Sequence[Reading], claims: Sequence[Claim]
) -> str:
    """The first paragraph: readings under which every claim holds, or which claims no
    reading reproduces."""
    full = [
        r.name
        for r in readings
        if results[r.name] and all(x.verdict.startswith("holds") for x in results[r.name])
    ]
    per_claim = []
    for i, c in enumerate(claims):
        ok = [r.name for r in readings if results[r.name][i].verdict.startswith("holds")]
        per_claim.append(
            f"{c.key} ({c.text}): " + (", ".join(f"`{n}`" for n in ok) if ok else "**no reading**")
        )
    head = (
        "**All claims reproduce together under: " + ", ".join(f"`{n}`" for n in full) + ".**"
        if full
        else "**No reading reproduces all claims together.**"
    )
    scored = [
        (sum(x.verdict.startswith("holds") for x in results[r.name]), r.name)
        for r in readings
        if any(x.verdict != "no data" for x in results[r.name])
    ]
    best = max((n for n, _ in scored), default=0)
    closest = (
        f" Closest: {', '.join(f'`{name}`' for n, name in scored if n == best)} "
        f"({best} of {len(claims)} claims)."
        if scored and not full
        else ""
    )
    return (
        head
        + closest
        + " Readings under which each claim holds (significant or not): "
        + "; ".join(per_claim)
        + "."
    )


def definitions(claims: Sequence[Claim]) -> list[str]:
    return [
        "## How the verdicts are computed",
        "",
        "- Metric: train MSE at the end of the run (the paper's Table 2 reports train MSE).",
        "- **within** (C1): the mean over seeds (the paper reports means) lies within the "
        "factor of the paper's mean.",
        "- **beats** (C2-C4): ratio = geometric mean of B / geometric mean of A; 'holds' when "
        f"ratio >= factor and the one-sided Mann-Whitney test of factor x A < B has p < {ALPHA}; "
        "'fails' when ratio < factor and the reverse test is significant; '(n.s.)' otherwise. "
        "With 5 seeds per group the smallest exact p is 1/252 = 0.004; ties make it "
        "asymptotic.",
        "- **above** (C5): the median over seeds exceeds the threshold.",
        "- **no_gain** (C6): the negation of 'A beats B by the factor'.",
        "- Diverged runs count as MSE = +inf; crashed runs are listed and left out. "
        "Statistics: `bench_mlkan/stats.py`.",
    ]


# ----------------------------------------------------------------------------- entry point
def load_readings(profile: dict[str, Any], task: str) -> list[Reading]:
    """The readings (experiments with a ``variant``) of ``task`` in profile order; their
    descriptions come from the profile's top-level ``"variants": {name: text}``."""
    texts = profile.get("variants", {})
    out: dict[str, Reading] = {}
    for exp in profile.get("experiments", []):
        if exp.get("task") != task:
            continue
        name = exp.get("variant") or ""
        prev = out.get(name)
        out[name] = Reading(
            name,
            texts.get(name, ""),
            prev.overrides if prev else exp.get("overrides", {}),
            (prev.baselines if prev else ()) + tuple(exp.get("baselines", ())),
        )
    return list(out.values())


def paper_rows(task: str) -> dict[str, tuple[float, float]]:
    """{baseline: (mean, sd)} of the paper's table for ``task`` (``paper_results.json``)."""
    path = Path(__file__).with_name("paper_results.json")
    rows = json.loads(path.read_text()).get("tasks", {}).get(task, {}).get("rows", {})
    return {b: (r["mean"], r["sd"]) for b, r in rows.items() if "mean" in r and "sd" in r}


def main(argv: Sequence[str] | None = None) -> int:
    from .bench import load_profile
    from .records import SHIPPED_LEADERBOARDS, SHIPPED_RESULTS, iter_records

    p = argparse.ArgumentParser(prog="python -m bench_mlkan.sensitivity", description=__doc__)
    p.add_argument("--profile", default="ablation_regression")
    p.add_argument("--task", default="regression_rotated")
    p.add_argument("--results", type=Path, default=SHIPPED_RESULTS, help="records root")
    p.add_argument("--out", type=Path, default=None, help="default: leaderboards/sensitivity/")
    args = p.parse_args(argv)
    profile = load_profile(args.profile)
    name = profile.get("name", args.profile)
    records = [r for r in iter_records(Path(args.results) / name) if r.get("task") == args.task]
    data = collect(records)
    page = render_page(
        data,
        load_readings(profile, args.task),
        task=args.task,
        profile=name,
        findings=profile.get("findings", {}).get(args.task, ()),
        paper=paper_rows(args.task),
    )
    out = args.out or SHIPPED_LEADERBOARDS / "sensitivity" / f"{args.task}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(f"wrote {out} ({len(records)} records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
