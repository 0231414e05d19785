"""The reproduction notes: which profile the records come from, and every claim of the
paper checked on them with its per-seed evidence (text of ``scoring.claims`` results)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..records import Record
from ..scoring.claims import ClaimCheck, Evidence, PairCheck, SeedValues
from ..scoring.metadata import baseline_info, row_order, task_info
from ..scoring.profiles import median_inf, row_medians
from ..scoring.trajectory import UNITS
from ..stats import ALPHA
from .describe import fmt_schedule
from .fmt import fmt_count, fmt_p, fmt_ratio, fmt_sci, fmt_times


def profile_note(by_row: Mapping[str, Sequence[Record]], paper_task: Mapping | None) -> str:
    """Which profile and sizes the records came from, and where that differs from the paper."""
    recs = [r for rs in by_row.values() for r in rs]
    profiles = sorted({str(r.profile) for r in recs})
    sizes = sorted({str((r.config.get("task_options") or {}).get("size")) for r in recs})
    seeds = sorted({r.seed for r in recs})
    text = f"Profile {', '.join(f'`{p}`' for p in profiles)}; task size {', '.join(sizes)}; "
    text += f"seeds {', '.join(str(s) for s in seeds)}."
    reduced = []
    if any(s != "paper" for s in sizes):
        reduced.append("reduced point sets (task size not 'paper')")
    if paper_task:
        want = (paper_task.get("paper_profile") or {}).get("seeds")
        if want and len(seeds) < len(want):
            reduced.append(f"{len(seeds)} seed(s) instead of the paper's {len(want)}")
        for row, rs in sorted(by_row.items()):
            budget = ((paper_task.get("rows") or {}).get(row.partition("@")[0]) or {}).get("budget")
            sched = rs[0].config.get("schedule")
            if budget and sched and list(sched) != list(budget):
                reduced.append(
                    f"`{row}` steps per level {fmt_schedule(rs[0].config)} "
                    f"(paper {'/'.join(str(s) for s in budget)})"
                )
    if reduced:
        head = " **Reduced relative to the paper:** " if paper_task else " **Reduced:** "
        text += head + "; ".join(reduced) + "."
    elif paper_task:
        text += " Sizes, seeds and budgets as in the paper."
    return text


# ----------------------------------------------------------------------------- claims
def fmt_values(v: SeedValues) -> str:
    """ "1234: 1.33e-5, 1235: diverged (median 9.11e-5)"."""
    per = ", ".join(
        f"{s}: {'diverged' if math.isinf(x) else fmt_sci(x)}"
        + (" collapsed" if s in v.collapsed else "")
        for s, x in zip(v.seeds, v.values)
    )
    med = median_inf(v.values)
    return f"{per} (median {fmt_sci(med)})" if len(v.values) > 1 else per


def fmt_evidence(e: Evidence, subject: str) -> str:
    """ "equal coarse steps (128): 4.5x lower [1.3x-9x], p = 0.167 -> holds (n.s.)"."""
    unit = UNITS[e.unit]
    if e.comparison is None:
        return f"equal {unit}: not measured ({e.note or 'no values'})"
    c = e.comparison
    lo, hi = c.interval if c.ratio >= 1 else (1 / c.interval[1], 1 / c.interval[0])
    text = f"equal {unit} ({fmt_count(e.budget)}, "
    if e.recorded_end:
        text += "every run's end)"
    else:
        assert e.subject is not None and e.other is not None
        text += (
            f"the smaller total; there `{subject}` {fmt_values(e.subject)}, "
            f"`{e.other.row}` {fmt_values(e.other)})"
        )
    return (
        f"{text}: `{subject}` {fmt_times(c.ratio)} [{fmt_ratio(lo)}-{fmt_ratio(hi)}], "
        f"p = {fmt_p(c.p_value)} -> {e.verdict}"
    )


def fmt_pair(p: PairCheck, subject: str) -> str:
    e = p.at_steps
    if e.other is None and e.note == "no runs":
        return f"vs `{p.other}`: no runs."
    other = f"vs `{p.other}` ({fmt_values(e.other)})" if e.other else f"vs `{p.other}`"
    text = f"{other}: {fmt_evidence(e, subject)}"
    if p.evaluations_ratio is not None:
        text += f"; `{p.other}` used {fmt_ratio(p.evaluations_ratio)} the evaluations"
        text += f"; {fmt_evidence(p.at_evaluations, subject)}"
    return text + "."


def small_sample_note(check: ClaimCheck) -> str | None:
    """Which comparisons of a claim cannot reach significance with their seeds."""
    sizes = sorted(
        {
            (len(e.subject.values), len(e.other.values), e.min_p)
            for p in check.pairs
            for e in (p.at_steps, p.at_evaluations)
            if e.subject is not None and e.other is not None and not e.can_be_significant
        }
    )
    if not sizes:
        return None
    which = ", ".join(f"{a} vs {b} seeds: p >= {fmt_p(m or math.nan)}" for a, b, m in sizes)
    return f"Not significant at p < {ALPHA:g} whatever the values: with {which}."


def claim_lines(check: ClaimCheck) -> list[str]:
    """Markdown bullet (with sub-bullets) for one checked claim."""
    c = check.claim
    head = f"- **{check.verdict}** [{c.id}] {c.text}"
    if check.pairs and check.verdict_evaluations != check.verdict:
        head += f" - at equal coarse steps; at equal evaluations: **{check.verdict_evaluations}**"
    lines = [head + "."]
    label = task_info(c.task).metric_label
    if check.subject is None or not check.subject.values:
        return [*lines, f"  - no finished or diverged `{c.subject}` run."]
    subject = f"`{c.subject}` {label}: {fmt_values(check.subject)}"
    if c.kind == "near_paper":
        n_in, n = check.seeds_meeting
        lines.append(
            f"  - {subject}; mean {fmt_ratio(check.ratio)} the paper's "
            f"{fmt_sci(check.paper_value)} (bound: within {c.factor:g}x either side); "
            f"{n_in} of {n} seeds within the bound (one published number: no test)."
        )
    elif c.kind == "above":
        n_above, n = check.seeds_meeting
        lines.append(
            f"  - {subject}; {n_above} of {n} seeds above {fmt_sci(check.paper_value)} "
            "(verdict on the median)."
        )
    else:
        need = f">= {c.factor:g}x lower" if c.factor != 1 else "lower"
        lines.append(
            f"  - {subject}. Needed: {need} than each row below"
            + (" - the claim is that this does *not* happen." if c.kind == "no_gain" else ".")
        )
        lines += [f"  - {fmt_pair(p, c.subject)}" for p in check.pairs]
        truncated = any(
            e.comparison is not None and not e.recorded_end
            for p in check.pairs
            for e in (p.at_steps, p.at_evaluations)
        )
        if truncated and task_info(c.task).target_source == "eval":
            lines.append(
                "  - This metric is evaluated at level ends (and every `eval_every` steps): "
                "at a smaller budget than a run's own, its last evaluation within that budget "
                "is read."
            )
        note = small_sample_note(check)
        if note:
            lines.append(f"  - {note}")
    return lines


def ratios_line(by_row: Mapping[str, Sequence[Record]], subject: str, task: str) -> str | None:
    """For a task without claims: every row's median metric against ``subject``'s."""
    info = task_info(task)

    def median(row: str) -> float | None:
        v = [x for r in by_row.get(row, ()) if (x := r.final(info.metric)) is not None]
        return median_inf(v) if v else None

    ref = median(subject)
    if ref is None or ref <= 0:
        return None
    parts = [
        f"`{row}` {fmt_sci(m)} ({fmt_ratio(m / ref)})"
        for row in by_row
        if row != subject and (m := median(row)) is not None
    ]
    if not parts:
        return None
    return (
        f"`{subject}` median {info.metric_label} {fmt_sci(ref)}; others (their median / "
        f"{subject}'s): " + ", ".join(parts)
    )


def verdict_counts(checks: Sequence[ClaimCheck]) -> str:
    """ "3 of 5 hold (0 of 2 rank-tested significant)": claims that hold at equal coarse
    steps; of those resting on seed comparisons, how many significantly."""
    if not checks:
        return "-"
    held = [c for c in checks if c.verdict.startswith("holds")]
    tested = [c for c in held if c.pairs]
    sig = sum(c.verdict == "holds" for c in tested)
    return f"{len(held)} of {len(checks)} hold ({sig} of {len(tested)} rank-tested significant)"


# ----------------------------------------------------------------------------- strategies
#: strategies beyond the paper's nested iteration, compared with it in the notes
BEYOND_NESTED = ("vcycle", "adaptive")


def _medians(recs: Sequence[Record], task: str) -> tuple[float, float | None, float | None]:
    """``row_medians`` with nan for a row without a finished run."""
    final, best, work = row_medians(recs, task)
    return (math.nan if final is None else final), best, work


def strategy_lines(by_row: Mapping[str, Sequence[Record]], reference: str, task: str) -> list[str]:
    """Whether each V-cycle / adaptive row beats nested iteration (``reference``) on
    ``task`` at equal work: medians of the final and best-so-far metric, work beside."""
    info = task_info(task)
    if reference not in by_row:
        return []
    ref_final, ref_best, ref_work = _medians(by_row[reference], task)
    if not math.isfinite(ref_final):
        return []
    lower = info.lower_is_better
    out = []
    for row in row_order(by_row):
        if baseline_info(row).strategy not in BEYOND_NESTED:
            continue
        final, best, work = _medians(by_row[row], task)
        if not math.isfinite(final):
            out.append(f"- `{row}`: no finished run to compare with `{reference}`.")
            continue
        wins = final < ref_final if lower else final > ref_final
        equal = (
            work is not None and ref_work is not None and abs(work - ref_work) <= 0.01 * ref_work
        )
        n = len([r for r in by_row[row] if r.status == "ok"])
        tie = ref_final > 0 and final > 0 and abs(math.log(final / ref_final)) < math.log(1.1)
        verdict = "ties with (within 10%)" if tie else ("beats" if wins else "does not beat")
        out.append(
            f"- Beyond the paper: `{row}` {verdict} nested "
            f"iteration (`{reference}`) "
            + ("at equal work" if equal else "at unequal work")
            + f" ({fmt_count(work)} vs {fmt_count(ref_work)} coarse steps): median "
            f"{info.metric_label} {fmt_sci(final)} vs {fmt_sci(ref_final)} "
            f"({fmt_ratio(final / ref_final) if ref_final else '-'}); best-so-far "
            f"{fmt_sci(best)} vs {fmt_sci(ref_best)}; {n} seed(s), a point estimate, no test."
        )
    return out
