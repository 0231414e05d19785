"""The paper's claims (``bench_mlkan/paper_results.json``) checked on one task's records.

Claim kinds (``Claim.kind``):

* ``near_paper`` - the subject's mean lies within ``factor`` of the paper's mean (either side).
* ``lower_by`` - the subject is below every row of ``against`` by >= ``factor`` x.
* ``no_gain`` - the subject is *not* below ``against`` by ``factor`` x.
* ``above`` - the subject's median exceeds ``value`` (the run "fails").

Every "A beats B" is checked twice (``stats.compare``: ratio of geometric means, bootstrap
interval, one-sided Mann-Whitney test over seeds):

* at **equal coarse steps** (the paper's unit; the verdict): each seed's metric after the
  smaller of the two rows' budgets (the recorded end when the budgets agree to
  ``BUDGET_RTOL``: a split of a work budget into whole steps per level leaves totals a few
  steps apart, e.g. 7496 and 7500);
* at **equal evaluations** (loss-and-gradient evaluations, weighted like coarse steps):
  each seed's metric after the smaller total of evaluations - possible where the metric
  is the training loss of every step (the task's ``target_source`` "loss").

Per seed: finished runs count with their metric (collapsed ones too, and are named),
diverged ones as +inf (worst rank), failed ones are left out. With few seeds a rank test
cannot reach significance; ``min_p_value`` says how small p can get.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import Record
from ..stats import ALPHA, Comparison, compare
from .aggregate import collapse_state
from .metadata import TaskInfo, task_info
from .trajectory import metric_at, total_work

PAPER_RESULTS = Path(__file__).resolve().parent.parent / "paper_results.json"
#: verdicts from best to worst; a claim over several rows takes the worst of its parts
VERDICTS = ("holds", "holds (n.s.)", "partly measured", "not measured", "fails (n.s.)", "fails")
NEGATION = {
    "holds": "fails",
    "holds (n.s.)": "fails (n.s.)",
    "fails": "holds",
    "fails (n.s.)": "holds (n.s.)",
    "not measured": "not measured",
}


def load_paper(path: Path = PAPER_RESULTS) -> dict[str, Any]:
    """The paper's numbers and claims."""
    return json.loads(Path(path).read_text())


@dataclass(frozen=True)
class Claim:
    """One claim of ``paper_results.json``."""

    id: str
    task: str
    kind: str
    subject: str
    text: str
    against: tuple[str, ...] = ()
    factor: float = 1.0
    value: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Claim:
        return cls(
            id=str(d["id"]),
            task=str(d["task"]),
            kind=str(d["kind"]),
            subject=str(d["subject"]),
            text=str(d["text"]),
            against=tuple(d.get("against", ())),
            factor=float(d.get("factor", 1.0)),
            value=None if d.get("value") is None else float(d["value"]),
        )


def paper_claims(paper: Mapping[str, Any], task: str | None = None) -> list[Claim]:
    """The claims of ``paper`` (of one ``task``), in file order."""
    claims = [Claim.from_dict(c) for c in paper.get("claims", [])]
    return [c for c in claims if task is None or c.task == task]


def worst(verdicts: Sequence[str]) -> str:
    """The worst verdict; "partly measured" when the measured parts hold but some are not
    measured."""
    if not verdicts:
        return "not measured"
    measured = [v for v in verdicts if v != "not measured"]
    if measured and len(measured) < len(verdicts) and worst(measured).startswith("holds"):
        return "partly measured"
    return max(verdicts, key=VERDICTS.index)


def min_p_value(n_lower: int, n_higher: int) -> float:
    """The smallest one-sided exact Mann-Whitney p-value with these group sizes:
    1 / C(n_lower + n_higher, n_lower)."""
    return 1.0 / math.comb(n_lower + n_higher, n_lower)


# ----------------------------------------------------------------------------- per-seed values
@dataclass(frozen=True)
class SeedValues:
    """A row's per-seed metric at one budget (+inf: diverged; failed seeds left out)."""

    row: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    collapsed: tuple[int, ...]  # seeds that collapsed (counted with their metric)
    budget: float | None  # the work (in the evidence's unit) at which values were read


def seed_values(row: str, recs: Sequence[Record], task: TaskInfo) -> SeedValues:
    """Final metric per seed (the recorded budget)."""
    seeds, values, collapsed = [], [], []
    for r in sorted(recs, key=lambda r: r.seed):
        v = math.inf if r.status == "diverged" else r.final(task.metric)
        if v is None or math.isnan(v):
            continue
        seeds.append(r.seed)
        values.append(v)
        if r.ok and collapse_state(r):
            collapsed.append(r.seed)
    return SeedValues(row, tuple(seeds), tuple(values), tuple(collapsed), None)


def values_at(
    row: str, recs: Sequence[Record], task: TaskInfo, unit: str, budget: float
) -> SeedValues | None:
    """The metric of every seed after ``budget`` work in ``unit``; None when a seed that
    did not fail cannot say (no trajectory in that unit, or it stopped earlier)."""
    seeds, values, collapsed = [], [], []
    for r in sorted(recs, key=lambda r: r.seed):
        if r.status == "failed":
            continue
        v = metric_at(r, task, unit, budget)
        if v is None or math.isnan(v):
            return None
        seeds.append(r.seed)
        values.append(v)
        if r.ok and collapse_state(r):
            collapsed.append(r.seed)
    return SeedValues(row, tuple(seeds), tuple(values), tuple(collapsed), budget)


#: totals of work within this relative spread count as one budget (whole-step rounding)
BUDGET_RTOL = 1e-2


def common_budget(groups: Sequence[Sequence[Record]], unit: str) -> tuple[float | None, bool]:
    """(the smallest total work of the finished runs of ``groups``, whether all agree to
    ``BUDGET_RTOL``)."""
    totals = [total_work(r, unit) for g in groups for r in g if r.ok]
    if not totals or any(t is None for t in totals):
        return None, False
    lo, hi = min(totals), max(totals)  # type: ignore[type-var]
    return lo, hi <= lo * (1 + BUDGET_RTOL) + 1e-12  # type: ignore[operator]


# ----------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class Evidence:
    """One comparison "subject below other by factor" at one budget."""

    unit: str  # "work" (coarse steps) | "work_evaluations"
    budget: float | None  # common budget; None when unavailable
    recorded_end: bool  # the budget is every run's recorded end (budgets agree)
    subject: SeedValues | None
    other: SeedValues | None
    comparison: Comparison | None
    verdict: str
    note: str = ""  # why the comparison is missing or approximated

    @property
    def min_p(self) -> float | None:
        if self.subject is None or self.other is None:
            return None
        return min_p_value(len(self.subject.values), len(self.other.values))

    @property
    def can_be_significant(self) -> bool:
        return self.min_p is not None and self.min_p < ALPHA


def _judge(subject: SeedValues, other: SeedValues, factor: float) -> tuple[Comparison | None, str]:
    a, b = subject.values, other.values
    if not a or not b:
        return None, "not measured"
    if any(v <= 0 for v in (*a, *b)):
        return None, "not measured"
    c = compare(a, b, factor)
    return c, c.verdict


def evidence(
    subject: tuple[str, Sequence[Record]],
    other: tuple[str, Sequence[Record]],
    task: TaskInfo,
    factor: float,
    unit: str,
) -> Evidence:
    """The comparison at the rows' common budget in ``unit``."""
    (sa, ra), (sb, rb) = subject, other
    budget, agree = common_budget([ra, rb], unit)
    if budget is None:
        what = "no finished run" if not any(r.ok for r in (*ra, *rb)) else "not recorded"
        return Evidence(
            unit, None, False, None, None, None, "not measured", f"work in {unit} {what}"
        )
    if agree:
        va, vb = seed_values(sa, ra, task), seed_values(sb, rb, task)
    else:
        at_a, at_b = values_at(sa, ra, task, unit, budget), values_at(sb, rb, task, unit, budget)
        if at_a is None or at_b is None:
            note = "budgets differ and the metric is not recorded along this work"
            return Evidence(unit, budget, False, None, None, None, "not measured", note)
        va, vb = at_a, at_b
    comparison, verdict = _judge(va, vb, factor)
    return Evidence(unit, budget, agree, va, vb, comparison, verdict)


@dataclass(frozen=True)
class PairCheck:
    """Subject against one other row: at equal coarse steps and at equal evaluations."""

    other: str
    at_steps: Evidence
    at_evaluations: Evidence
    evaluations_ratio: float | None  # median evaluations of other / of subject

    @property
    def verdict(self) -> str:
        return self.at_steps.verdict


@dataclass(frozen=True)
class ClaimCheck:
    """A claim with its verdict (at equal coarse steps), the verdict at equal evaluations,
    and the evidence behind both."""

    claim: Claim
    verdict: str
    verdict_evaluations: str
    subject: SeedValues | None
    pairs: tuple[PairCheck, ...] = ()
    ratio: float | None = None  # near_paper: mean / paper mean
    paper_value: float | None = None  # near_paper: the paper's mean; above: the threshold
    seeds_meeting: tuple[int, int] = (0, 0)  # near_paper / above: (seeds meeting, seeds)


def _median_work(recs: Sequence[Record], unit: str) -> float | None:
    vals = [v for r in recs if r.status != "failed" and (v := total_work(r, unit)) is not None]
    return statistics.median(vals) if vals else None


def check_pair(
    subject: tuple[str, Sequence[Record]],
    other: tuple[str, Sequence[Record]],
    task: TaskInfo,
    factor: float,
) -> PairCheck:
    ea, eb = (
        _median_work(subject[1], "work_evaluations"),
        _median_work(other[1], "work_evaluations"),
    )
    return PairCheck(
        other=other[0],
        at_steps=evidence(subject, other, task, factor, "work"),
        at_evaluations=evidence(subject, other, task, factor, "work_evaluations"),
        evaluations_ratio=eb / ea if ea and eb is not None else None,
    )


def check_claim(
    claim: Claim, by_row: Mapping[str, Sequence[Record]], paper: Mapping[str, Any]
) -> ClaimCheck:
    """Evaluate ``claim`` on the records of its task (``{row: [records]}``)."""
    task = task_info(claim.task)
    subject_recs = list(by_row.get(claim.subject, ()))
    subject = seed_values(claim.subject, subject_recs, task) if subject_recs else None
    if subject is None or not subject.values:
        return ClaimCheck(claim, "not measured", "not measured", subject)
    if claim.kind == "near_paper":
        ref = float(paper["tasks"][claim.task]["rows"][claim.subject]["mean"])
        mean = math.fsum(subject.values) / len(subject.values)
        ratio = mean / ref
        ok = 1 / claim.factor <= ratio <= claim.factor
        within = sum(1 / claim.factor <= v / ref <= claim.factor for v in subject.values)
        verdict = "holds" if ok else "fails"
        return ClaimCheck(
            claim,
            verdict,
            verdict,
            subject,
            ratio=ratio,
            paper_value=ref,
            seeds_meeting=(within, len(subject.values)),
        )
    if claim.kind == "above":
        assert claim.value is not None
        above = sum(v > claim.value for v in subject.values)
        verdict = "holds" if statistics.median(subject.values) > claim.value else "fails"
        return ClaimCheck(
            claim,
            verdict,
            verdict,
            subject,
            paper_value=claim.value,
            seeds_meeting=(above, len(subject.values)),
        )
    pairs = []
    for name in claim.against:
        recs = list(by_row.get(name, ()))
        if not recs:
            missing = Evidence("work", None, False, None, None, None, "not measured", "no runs")
            pairs.append(PairCheck(name, missing, missing, None))
            continue
        pairs.append(check_pair((claim.subject, subject_recs), (name, recs), task, claim.factor))
    flip = (lambda v: NEGATION[v]) if claim.kind == "no_gain" else (lambda v: v)
    return ClaimCheck(
        claim,
        worst([flip(p.at_steps.verdict) for p in pairs]),
        worst([flip(p.at_evaluations.verdict) for p in pairs]),
        subject,
        tuple(pairs),
    )
