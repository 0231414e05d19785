"""Which readings of the paper reproduce its claims, per task (METHOD.md section 5).

An ablation profile (e.g. ``bench_mlkan/profiles/ablation_regression.json``) runs a task's
baselines under several *readings* - experiments that share a ``variant`` name and a set
of overrides, described in the profile's ``"variants"`` map - and the bench writes one
record per run to ``<results>/<profile>/<task>/<baseline>@<variant>/seed<k>.json``.
This module turns those records into ``leaderboards/sensitivity/<task>.md``: for each of
the paper's claims on that task (``bench_mlkan/paper_results.json``, read through
``scoring.claims``; ``claims_for`` splits a claim against several rows into one part per
row), under which readings it holds and under which it fails, on the metric the task is
ranked by, with the per-seed numbers and the statistics of ``bench_mlkan.stats``.

A profile's ``"inherit": {variant: other}`` lets a reading that changes only some
baselines (e.g. carried optimizer moments: single-grid runs have no refinement) take the
other baselines' runs from reading ``other``; the page marks those cells.

Pure functions: ``collect`` (records -> values per reading and baseline),
``evaluate_claim`` (values -> ``ClaimResult``), ``render_page`` (-> markdown). The entry
point ``python -m bench_mlkan.sensitivity --profile ablation_regression`` reads the records
and the profile and writes one page per task of the profile (generated; never edit them
by hand).

Runs that diverged count as metric = +inf (worst rank, infinite mean); runs that failed
(crashed) are listed and left out of the statistics. Claims compare final values (the
paper's tables report the end of each run).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .stats import ALPHA, Comparison, Summary, compare, summarize

ClaimKind = Literal["within", "beats", "above", "no_gain"]

#: Baselines in the order of the page's tables (others follow, sorted).
BASELINE_ORDER = (
    "kan_coarse",
    "kan_fine",
    "kan_multilevel",
    "kan_multilevel_carry",
    "mcmlp_coarse",
    "mcmlp_fine",
    "mcmlp_multilevel",
    "mlp_small",
    "mlp_medium",
    "mlp_large",
)

#: Short names of baselines in claim texts.
LABELS = {
    "kan_coarse": "spline coarse",
    "kan_fine": "spline fine",
    "kan_multilevel": "spline multilevel",
    "mcmlp_coarse": "ReLU coarse",
    "mcmlp_fine": "ReLU fine",
    "mcmlp_multilevel": "ReLU multilevel",
}


@dataclass(frozen=True)
class Claim:
    """One part of a paper claim about the task's metric (lower is better).

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


KIND = {"near_paper": "within", "lower_by": "beats", "above": "above", "no_gain": "no_gain"}


def label(baseline: str) -> str:
    return LABELS.get(baseline, baseline)


def short_number(v: float) -> str:
    """3.67e-05 -> '3.67e-5', 0.1 -> '0.1'."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m.group(1).lstrip("+") + m.group(2), f"{v:.3g}")


def claim_text(kind: ClaimKind, a: str, b: str | None, factor: float, value: float | None) -> str:
    """The short text of one claim part, e.g. 'spline multilevel >= 10x below spline fine'."""
    if kind == "within":
        return f"{label(a)} within {factor:g}x of {short_number(value or math.nan)}"
    if kind == "above":
        return f"{label(a)} fails (median > {short_number(value or math.nan)})"
    if kind == "no_gain":
        return f"{label(a)} gains nothing over {label(b or '')} (< {factor:g}x)"
    return f"{label(a)} {f'>= {factor:g}x ' if factor != 1 else ''}below {label(b or '')}"


def claims_for(task: str, paper: dict[str, Any] | None = None) -> tuple[Claim, ...]:
    """The paper's claims on ``task`` (``paper_results.json`` via ``scoring.claims``), one
    part per compared row; key = the claim's id, with ``.i`` for the i-th part."""
    from .scoring.claims import load_paper, paper_claims

    paper = paper if paper is not None else load_paper()
    rows = paper.get("tasks", {}).get(task, {}).get("rows", {})
    out: list[Claim] = []
    for c in paper_claims(paper, task):
        kind: ClaimKind = KIND[c.kind]  # type: ignore[assignment]
        if kind == "within":
            value = float(rows[c.subject]["mean"])
            out.append(Claim(c.id, claim_text(kind, c.subject, None, c.factor, value), kind,
                             c.subject, factor=c.factor, value=value))  # fmt: skip
        elif kind == "above":
            out.append(Claim(c.id, claim_text(kind, c.subject, None, c.factor, c.value), kind,
                             c.subject, value=c.value))  # fmt: skip
        else:
            for i, b in enumerate(c.against):
                key = c.id if len(c.against) == 1 else f"{c.id}.{i + 1}"
                out.append(Claim(key, claim_text(kind, c.subject, b, c.factor, None), kind,
                                 c.subject, b, factor=c.factor))  # fmt: skip
    return tuple(out)


#: The claims of the paper's Table 2 (METHOD.md 5.1), split per compared row.
CLAIMS: tuple[Claim, ...] = claims_for("regression_rotated")


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
    inherit: str | None = None  # baselines this reading does not run come from this one


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
def reading_runs(
    data: dict[str, dict[str, list[Run]]], reading: Reading
) -> tuple[dict[str, list[Run]], set[str]]:
    """({baseline: runs} of one reading, the baselines taken from ``reading.inherit``): only
    baselines the reading does not run itself, and only once it has runs of its own."""
    own = data.get(reading.name, {})
    if not reading.inherit or not own:
        return own, set()
    base = data.get(reading.inherit, {})
    taken = set(base) - set(own) - set(reading.baselines)
    return {**{b: base[b] for b in taken}, **own}, taken


def baseline_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [b for b in BASELINE_ORDER if b in names] + sorted(names - set(BASELINE_ORDER))


def render_page(
    data: dict[str, dict[str, list[Run]]],
    readings: Sequence[Reading],
    *,
    task: str,
    profile: str,
    claims: Sequence[Claim] | None = None,
    summary_text: str | None = None,
    findings: Sequence[str] = (),
    paper: dict[str, tuple[float, float]] | None = None,
    metric_label: str | None = None,
    settings: str | None = None,
) -> str:
    """The markdown page: verdict paragraph, readings x claims, (findings,) readings x
    baselines, per-reading details, definitions. ``claims``: default ``claims_for(task)``,
    parts that no reading measures are left out and named; ``findings``: bullet texts kept
    with the profile (its ``"findings": {task: [...]}``), shown as written; ``paper``:
    {baseline: (mean, sd)} of the paper's table, shown as the first row of the metric
    table; ``metric_label``: default the task's; ``settings``: the profile's description."""
    if metric_label is None:
        from .scoring.metadata import task_info

        metric_label = task_info(task).metric_label
    runs_of = {r.name: reading_runs(data, r) for r in readings}
    every = [
        (c, [evaluate_claim(c, runs_of[r.name][0]) for r in readings])
        for c in (claims_for(task) if claims is None else claims)
    ]
    unmeasured = [c for c, res in every if all(x.verdict == "no data" for x in res)]
    claims = [c for c, res in every if c not in unmeasured]
    results = {
        r.name: [res[k] for c, res in every if c not in unmeasured] for k, r in enumerate(readings)
    }
    metric_cap = metric_label[:1].upper() + metric_label[1:]
    lines = [
        f"# Sensitivity of the paper's `{task}` claims to the readings it leaves open",
        "",
        f"Generated by `python -m bench_mlkan.sensitivity --profile {profile}` from the run "
        f"records under `leaderboards/results/{profile}/{task}/`; do not edit.",
        "",
        summary_text or verdict_paragraph(results, readings, claims, partial=bool(unmeasured)),
        "",
    ]
    if settings:
        lines += [f"Settings: {settings}", ""]
    if unmeasured:
        lines += [
            "Not measured by this profile (a baseline it names has no runs): "
            + "; ".join(f"{c.key} ({c.text})" for c in unmeasured)
            + ".",
            "",
        ]
    lines += [
        "## Claims x readings",
        "",
        f"Each cell: the verdict on {metric_label} over the seeds of that reading "
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
    present = baseline_order(b for r in readings for b in runs_of[r.name][0])
    lines += [
        "",
        f"## {metric_cap} per reading and baseline",
        "",
        "Mean / median over the seeds that finished (the paper reports means; a median "
        "resists one bad seed); 'div' = diverged runs (counted as +inf in the claims), "
        "'failed' = crashed runs (left out). Per-seed values further down."
        + (
            " A cell marked (= `r`) holds the runs of reading `r` (the reading does not "
            "change that baseline)."
            if any(runs_of[r.name][1] for r in readings)
            else ""
        ),
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
        runs, inherited = runs_of[r.name]
        cells = [
            cell(runs.get(b, [])) + (f" (= `{r.inherit}`)" if b in inherited else "")
            for b in present
        ]
        lines.append(f"| `{r.name}` | " + " | ".join(cells) + " |")
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
    lines += definitions(claims, metric_label)
    return "\n".join(lines).rstrip() + "\n"


def verdict_paragraph(
    results: dict[str, list[ClaimResult]],
    readings: Sequence[Reading],
    claims: Sequence[Claim],
    partial: bool = False,
) -> str:
    """The first paragraph: readings under which every claim holds, or which claims no
    reading reproduces; ``partial``: some claims are not measured (said so)."""
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
    what = "claims measured here" if partial else "claims"
    head = (
        f"**All {what} reproduce together under: " + ", ".join(f"`{n}`" for n in full) + ".**"
        if full
        else f"**No reading reproduces all {what} together.**"
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


def definitions(claims: Sequence[Claim], metric_label: str = "train MSE") -> list[str]:
    kinds = {c.kind for c in claims}

    def keys(kind: str) -> str:
        return ", ".join(c.key for c in claims if c.kind == kind)

    lines = [
        "## How the verdicts are computed",
        "",
        f"- Metric: {metric_label} at the end of the run (the task's ranking metric); the "
        "claims are those of `bench_mlkan/paper_results.json` on this task, a claim against "
        "several rows split into one part per row.",
    ]
    if "within" in kinds:
        lines.append(
            f"- **within** ({keys('within')}): the mean over seeds (the paper reports means) "
            "lies within the factor of the paper's mean."
        )
    if "beats" in kinds:
        lines.append(
            f"- **beats** ({keys('beats')}): ratio = geometric mean of B / geometric mean of "
            "A; 'holds' when ratio >= factor and the one-sided Mann-Whitney test of factor x "
            f"A < B has p < {ALPHA}; 'fails' when ratio < factor and the reverse test is "
            "significant; '(n.s.)' otherwise. With 5 seeds per group the smallest exact p is "
            "1/252 = 0.004 (3 seeds: 1/20 = 0.05, never significant; 2 seeds: 1/6); ties "
            "make it asymptotic."
        )
    if "above" in kinds:
        lines.append(f"- **above** ({keys('above')}): the median over seeds exceeds the threshold.")
    if "no_gain" in kinds:
        lines.append(
            f"- **no_gain** ({keys('no_gain')}): the negation of 'A beats B by the factor'."
        )
    lines.append(
        "- Diverged runs count as +inf; crashed runs are listed and left out. "
        "Statistics: `bench_mlkan/stats.py`."
    )
    return lines


# ----------------------------------------------------------------------------- entry point
def load_readings(profile: dict[str, Any], task: str) -> list[Reading]:
    """The readings (experiments with a ``variant``) of ``task`` in profile order; their
    descriptions come from the profile's top-level ``"variants": {name: text}``, what they
    inherit from its ``"inherit": {name: other}``."""
    texts, inherit = profile.get("variants", {}), profile.get("inherit", {})
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
            inherit.get(name),
        )
    return list(out.values())


def profile_tasks(profile: dict[str, Any]) -> list[str]:
    """The tasks of the profile's readings (experiments with a ``variant``), in order."""
    tasks = [e["task"] for e in profile.get("experiments", []) if e.get("variant")]
    return list(dict.fromkeys(tasks))


def paper_rows(task: str) -> dict[str, tuple[float, float]]:
    """{baseline: (mean, sd)} of the paper's table for ``task`` (``paper_results.json``)."""
    path = Path(__file__).with_name("paper_results.json")
    rows = json.loads(path.read_text()).get("tasks", {}).get(task, {}).get("rows", {})
    return {b: (r["mean"], r["sd"]) for b, r in rows.items() if "mean" in r and "sd" in r}


def render_task_page(
    profile: dict[str, Any], task: str, records: Iterable[dict[str, Any]], name: str
) -> str:
    """The page of ``task`` from the profile and its records (any task's; others ignored)."""
    from .scoring.metadata import task_info

    info = task_info(task)
    data = collect((r for r in records if r.get("task") == task), info.metric)
    return render_page(
        data,
        load_readings(profile, task),
        task=task,
        profile=name,
        findings=profile.get("findings", {}).get(task, ()),
        paper=paper_rows(task),
        metric_label=info.metric_label,
        settings=profile.get("settings", {}).get(task),
    )


def main(argv: Sequence[str] | None = None) -> int:
    from .bench import load_profile
    from .records import SHIPPED_LEADERBOARDS, SHIPPED_RESULTS, iter_records

    p = argparse.ArgumentParser(prog="python -m bench_mlkan.sensitivity", description=__doc__)
    p.add_argument("--profile", default="ablation_regression")
    p.add_argument("--task", default=None, help="default: every task of the profile")
    p.add_argument("--results", type=Path, default=SHIPPED_RESULTS, help="records root")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a folder (default leaderboards/sensitivity/), or a .md file with one task",
    )
    args = p.parse_args(argv)
    profile = load_profile(args.profile)
    name = profile.get("name", args.profile)
    tasks = [args.task] if args.task else profile_tasks(profile)
    out = Path(args.out) if args.out else SHIPPED_LEADERBOARDS / "sensitivity"
    if out.suffix == ".md" and len(tasks) != 1:
        p.error(f"--out {out}: a single page needs --task (the profile has {len(tasks)} tasks)")
    records = list(iter_records(Path(args.results) / name))
    for task in tasks:
        path = out if out.suffix == ".md" else out / f"{task}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_task_page(profile, task, records, name))
        n = sum(r.get("task") == task for r in records)
        print(f"wrote {path} ({n} records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
