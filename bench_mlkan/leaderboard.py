"""Leaderboards: tables, reproduction notes, plots and cross-task scores, from records only.

``render(results_dir, out_dir)`` reads every run record of one profile's folder
``results_dir`` (``<task>/<row>/seed<k>.json``, see ``bench_mlkan.records``) and writes

* ``<task>.md`` - one table per experiment in the paper's layout (model | basis | fidelity |
  params | metric mean (sd) | per-seed values | work | wall-clock | the paper's number);
* ``README.md`` - links to every table and plot, the reproduction notes (does each claim of
  the paper hold in these records, by how much), and the cross-task score (time-to-target
  per task and an AlgoPerf-style performance profile);
* ``plots/*.png`` - see ``bench_mlkan.plots``.

``render_all(results_root, out_root)`` renders every ``<results_root>/<profile>/`` into
``<out_root>/<profile>/`` and writes the index ``<out_root>/README.md`` (every experiment
under every profile that has records).

Everything is a pure function of the records (and of ``paper_results.json``): rows and
seeds are sorted, numbers have a fixed format, no timestamps; rendering twice gives the same
markdown. ``python -m bench_mlkan leaderboard [--results DIR] [--out DIR] [--profile P ...]
[--no-plots] [--wandb]`` is the command line (``make leaderboard``: every shipped profile).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import (
    SHIPPED_LEADERBOARDS,
    SHIPPED_RESULTS,
    RecordError,
    read_record,
    record_files,
    record_row,
)

PAPER_RESULTS = Path(__file__).resolve().parent / "paper_results.json"
#: render()'s defaults: the shipped quick profile
DEFAULT_RESULTS = SHIPPED_RESULTS / "quick"
DEFAULT_OUT = SHIPPED_LEADERBOARDS / "quick"

#: Row order of the tables: spline KAN, ReLU-basis KAN, MLPs; unknown baselines follow sorted.
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
#: Order of the experiments on the summary page (the paper's order first).
TASK_ORDER = (
    "regression_rotated",
    "poisson_interface_2d",
    "burgers_1d",
    "burgers_1d_standard",
    "allen_cahn_1d",
    "poisson_2d",
    "helmholtz_2d",
)
STATUSES = ("ok", "diverged", "failed")


# ----------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class MetricSpec:
    """What a task's table ranks by, and its time-to-target definition.

    ``key``/``label``: the ``final_metrics`` entry of the table's main column (lower is
    better). ``extra``: further ``final_metrics`` columns. ``target``: the time-to-target
    threshold on the main metric; ``source`` says where its trajectory comes from:
    "loss" = the training loss of every optimizer step (``history``; equals ``key`` for
    these tasks), "eval" = ``eval_history`` (level ends, every ``eval_every`` steps) plus
    the final metrics.
    """

    key: str
    label: str
    extra: tuple[tuple[str, str], ...] = ()
    target: float | None = None
    source: str = "eval"
    what: str = ""


REGRESSION_SPEC = MetricSpec(
    "train_mse",
    "train MSE",
    (("test_mse", "test MSE"),),
    target=1e-3,
    source="loss",
    what="mean squared error on the training points (the paper's Table 2 reports train MSE); "
    "test MSE on held-out points beside it",
)
BURGERS_SPEC = MetricSpec(
    "train_loss",
    "final training loss",
    (("rel_l2", "rel. L2"),),
    target=1e-3,
    source="loss",
    what="the full training loss at the final parameters (PDE + initial condition terms, "
    "as the paper's Table 3); relative L2 error against the Cole-Hopf reference beside it",
)
PINN_SPEC = MetricSpec(
    "rel_l2",
    "relative L2 error",
    (("max_abs", "max abs error"),),
    target=1e-1,
    source="eval",
    what="relative L2 error ||u - u_ref|| / ||u_ref|| on the task's evaluation grid "
    "(never the training points); max absolute error beside it",
)
#: Per-task metric; tasks not listed use REGRESSION_SPEC or PINN_SPEC by their kind.
METRICS: dict[str, MetricSpec] = {
    "regression_rotated": REGRESSION_SPEC,
    "burgers_1d": BURGERS_SPEC,
    "burgers_1d_standard": BURGERS_SPEC,
    "poisson_2d": MetricSpec(**{**PINN_SPEC.__dict__, "target": 1e-2}),
}


def metric_spec(task: str, kind: str | None) -> MetricSpec:
    """The table metric of ``task`` (``kind`` from the records: "regression" or "pinn")."""
    if task in METRICS:
        return METRICS[task]
    return REGRESSION_SPEC if kind == "regression" else PINN_SPEC


# ----------------------------------------------------------------------------- formatting
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


def fmt_work(v: float | None) -> str:
    """Work in paper units: an integer where it is one, else 4 significant digits."""
    if v is None or not math.isfinite(v):
        return "-" if v is None else fmt_sci(v)
    if float(v).is_integer() and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.4g}"


def fmt_range(values: Sequence[float], fmt) -> str:
    """One value when all agree, else "min-max"."""
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.3g}x" if 1e-3 <= r < 1e4 else f"{fmt_sci(r)}x"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Markdown table lines (pipes inside cells escaped)."""

    def cell(s: str) -> str:
        return str(s).replace("|", "\\|")

    out = ["| " + " | ".join(cell(h) for h in header) + " |"]
    out.append("|" + "|".join("---" for _ in header) + "|")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; None for fewer than two values)."""
    if not values:
        return None, None
    m = math.fsum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def fmt_mean_sd(values: Sequence[float]) -> str:
    m, s = mean_sd(values)
    if m is None:
        return "-"
    return fmt_sci(m) if s is None else f"{fmt_sci(m)} ({fmt_sci(s)})"


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    n = len(v)
    if n == 0:
        return math.inf
    mid = n // 2
    if n % 2:
        return v[mid]
    a, b = v[mid - 1], v[mid]
    return math.inf if math.isinf(a) or math.isinf(b) else (a + b) / 2


# ----------------------------------------------------------------------------- loading
def load_records(results: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{task: {row: [record, ...]}}`` of one profile's folder (``<task>/<row>/seed<k>.json``),
    sorted by seed; each record gets ``_path``. ``row`` is the baseline or ``baseline@variant``.
    A corrupt or incomplete record is named on stderr and skipped."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path in record_files(Path(results)):
        try:
            rec = read_record(path)
        except RecordError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
            continue
        rec["_path"] = str(path)
        task = rec.get("task") or path.parent.parent.name
        row = record_row(rec) if rec.get("baseline") else path.parent.name
        out.setdefault(task, {}).setdefault(row, []).append(rec)
    for by_baseline in out.values():
        for recs in by_baseline.values():
            recs.sort(key=lambda r: (int(r.get("seed", 0)), r["_path"]))
    return out


def load_paper(path: Path = PAPER_RESULTS) -> dict[str, Any]:
    """The paper's numbers and claims (``paper_results.json``)."""
    with open(path) as f:
        return json.load(f)


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    names = set(names)
    return [n for n in order if n in names] + sorted(names - set(order))


def task_kind(records: dict[str, list[dict[str, Any]]]) -> str | None:
    for recs in records.values():
        for r in recs:
            kind = (r.get("task_description") or {}).get("kind")
            if kind:
                return kind
    return None


def final_value(rec: dict[str, Any], key: str) -> float | None:
    """A final metric of an ok run (None when absent or the run did not finish)."""
    if rec.get("status") != "ok":
        return None
    v = (rec.get("final_metrics") or {}).get(key)
    return None if v is None else float(v)


# ----------------------------------------------------------------------------- rows
def describe_model(config: dict[str, Any]) -> tuple[str, str]:
    """(model, basis) in the paper's words: "KAN [2,5,1]", "spline" | "ReLU" | "-"."""
    opts = config.get("model_options") or {}
    widths = "[" + ",".join(str(w) for w in opts.get("widths", [])) + "]"
    model = config.get("model", "?")
    if model == "kan":
        return f"KAN {widths}", "spline"
    if model == "mcmlp":
        return f"KAN {widths}", "ReLU"
    if model == "mlp":
        act = opts.get("activation")
        return (f"MLP {widths} {act}" if act else f"MLP {widths}"), "-"
    return f"{model} {widths}", "-"


def level_schedule(config: dict[str, Any]) -> list[float]:
    """Steps per level (schedule) or the budget fractions."""
    fr = config.get("budget_fractions")
    return list(fr) if fr is not None else list(config.get("schedule") or [])


def describe_fidelity(config: dict[str, Any]) -> str:
    """coarse / fine / multilevel (with grids), from the schedule; "-" for an MLP."""
    if config.get("model") == "mlp":
        return "-"
    sched = level_schedule(config)
    used = [i for i, v in enumerate(sched) if v > 0]
    grid = (config.get("model_options") or {}).get("grid_size")
    if not used:
        return "?"

    def g(level: int) -> str:
        return str(int(grid) * 2**level) if grid is not None else f"L{level}"

    if len(used) == 1:
        lvl = used[0]
        if len(sched) > 1 and lvl == 0:
            name = "coarse"
        elif len(sched) > 1 and lvl == len(sched) - 1:
            name = "fine"
        else:
            name = "single"
        return f"{name} (grid {g(lvl)})"
    name = "multilevel"
    if config.get("carry_optimizer_state"):
        name += ", carried Adam state"
    return f"{name} (grid {g(used[0])}->{g(used[-1])})"


def fmt_schedule(config: dict[str, Any]) -> str:
    if config.get("budget_fractions") is not None:
        fr = "/".join(f"{f:g}" for f in config["budget_fractions"])
        return f"fractions {fr} of {fmt_work(config.get('work_budget'))}"
    return "/".join(str(s) for s in config.get("schedule") or [])


def status_summary(recs: Sequence[dict[str, Any]]) -> str:
    """ "2 ok, 1 diverged" (counts of every status present)."""
    counts = {s: 0 for s in STATUSES}
    for r in recs:
        counts[r.get("status", "failed")] = counts.get(r.get("status", "failed"), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def seed_cell(rec: dict[str, Any], key: str) -> str:
    seed = rec.get("seed")
    status = rec.get("status")
    if status == "ok":
        return f"{seed}: {fmt_sci(final_value(rec, key))}"
    if status == "diverged":
        d = rec.get("diverged") or {}
        return f"{seed}: diverged (step {d.get('step', '?')})"
    return f"{seed}: {status}"


@dataclass
class Row:
    """One baseline on one task, aggregated over its seeds."""

    baseline: str
    records: list[dict[str, Any]]
    spec: MetricSpec
    paper: dict[str, Any] | None = None
    paper_digits: int = 3
    values: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        vals = [final_value(r, self.spec.key) for r in self.records]
        self.values = [v for v in vals if v is not None and math.isfinite(v)]

    @property
    def config(self) -> dict[str, Any]:
        return self.records[0].get("config") or {}

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "ok"]

    @property
    def mean(self) -> float | None:
        return mean_sd(self.values)[0]

    def ran(self) -> list[dict[str, Any]]:
        """Runs that trained (ok first; else diverged) - for work and wall-clock."""
        return self.ok or [r for r in self.records if r.get("status") == "diverged"]

    def params(self) -> str:
        counts = sorted({int(r.get("params") or 0) for r in self.ran()} - {0})
        return "/".join(str(c) for c in counts) or "-"

    def cells(self) -> list[str]:
        model, basis = describe_model(self.config)
        extra = [
            fmt_mean_sd(
                [
                    v
                    for v in (final_value(r, key) for r in self.records)
                    if v is not None and math.isfinite(v)
                ]
            )
            for key, _ in self.spec.extra
        ]
        ran = self.ran()
        paper_mean = (self.paper or {}).get("mean")
        paper_sd = (self.paper or {}).get("sd")
        paper = "-"
        if paper_mean is not None:
            d = self.paper_digits
            paper = fmt_sci(paper_mean, d) + (f" ({fmt_sci(paper_sd, d)})" if paper_sd else "")
        ratio = self.mean / paper_mean if (self.mean is not None and paper_mean) else None
        return [
            f"`{self.baseline}`",
            model,
            basis,
            describe_fidelity(self.config),
            fmt_schedule(self.config),
            self.params(),
            status_summary(self.records),
            fmt_mean_sd(self.values),
            ", ".join(seed_cell(r, self.spec.key) for r in self.records),
            *extra,
            fmt_range([float(r.get("work") or 0.0) for r in ran], fmt_work),
            fmt_range([float(r.get("work_macs") or 0.0) for r in ran], fmt_sci),
            fmt_range([float(r.get("wall_clock") or 0.0) for r in ran], lambda v: f"{v:.1f}"),
            paper,
            fmt_ratio(ratio),
        ]


def task_rows(
    task: str, by_baseline: dict[str, list[dict[str, Any]]], paper: dict[str, Any]
) -> list[Row]:
    spec = metric_spec(task, task_kind(by_baseline))
    paper_task = paper.get("tasks", {}).get(task) or {}
    paper_rows, digits = paper_task.get("rows", {}), int(paper_task.get("digits", 3))
    return [
        Row(b, by_baseline[b], spec, paper_rows.get(b), digits)
        for b in ordered(by_baseline, BASELINE_ORDER)
    ]


# ----------------------------------------------------------------------------- profile
def profile_note(by_baseline: dict[str, list[dict[str, Any]]], paper_task: dict | None) -> str:
    """Which profile and sizes the records came from, and whether that is the paper's."""
    recs = [r for recs in by_baseline.values() for r in recs]
    profiles = sorted({str(r.get("profile")) for r in recs})
    sizes = sorted({str((r.get("config") or {}).get("task_options", {}).get("size")) for r in recs})
    seeds = sorted({int(r.get("seed", 0)) for r in recs})
    text = f"Profile {', '.join(f'`{p}`' for p in profiles)}; task size {', '.join(sizes)}; "
    text += f"seeds {', '.join(str(s) for s in seeds)}."
    reduced = []
    if any(s != "paper" for s in sizes):
        reduced.append("reduced point sets (task size not 'paper')")
    if paper_task:
        want = paper_task.get("paper_profile", {}).get("seeds")
        if want and len(seeds) < len(want):
            reduced.append(f"{len(seeds)} seed(s) instead of the paper's {len(want)}")
        for b, recs_b in sorted(by_baseline.items()):
            budget = (paper_task.get("rows", {}).get(b) or {}).get("budget")
            sched = (recs_b[0].get("config") or {}).get("schedule")
            if budget and sched and list(sched) != list(budget):
                reduced.append(
                    f"`{b}` steps per level {fmt_schedule(recs_b[0]['config'])} "
                    f"(paper {'/'.join(str(s) for s in budget)})"
                )
    if reduced and paper_task:
        text += " **Reduced relative to the paper:** " + "; ".join(reduced) + "."
    elif reduced:
        text += " **Reduced:** " + "; ".join(reduced) + "."
    elif paper_task:
        text += " Sizes, seeds and budgets as in the paper."
    return text


# ----------------------------------------------------------------------------- task page
TABLE_HEADER_START = [
    "baseline",
    "model",
    "basis",
    "fidelity",
    "steps/level",
    "params",
    "runs",
]


def task_header(spec: MetricSpec) -> list[str]:
    return [
        *TABLE_HEADER_START,
        f"{spec.label} mean (sd)",
        "per seed",
        *[f"{label} mean (sd)" for _, label in spec.extra],
        "work (coarse steps)",
        "work (MACs)",
        "wall-clock (s)",
        f"paper {spec.label} mean (sd)",
        "ours / paper",
    ]


def render_task(
    task: str,
    by_baseline: dict[str, list[dict[str, Any]]],
    paper: dict[str, Any],
    plots: list[tuple[str, str]],
) -> str:
    """The markdown page of one experiment."""
    paper_task = paper.get("tasks", {}).get(task)
    rows = task_rows(task, by_baseline, paper)
    spec = rows[0].spec
    title = f"# `{task}`"
    if paper_task:
        where = ", ".join(
            x for x in (f"section {paper_task['section']}", paper_task.get("table")) if x
        )
        title += f": {paper_task['title']} (paper {where})"
    else:
        title += " (not in the paper)"
    lines = [
        title,
        "",
        "Generated by `python -m bench_mlkan leaderboard` from the run records; do not edit.",
        "",
        profile_note(by_baseline, paper_task),
        "",
    ]
    lines += md_table(task_header(spec), [row.cells() for row in rows])
    units = sorted(
        {str(r["work_unit"]) for recs in by_baseline.values() for r in recs if r.get("work_unit")}
    )
    lines += [
        "",
        f"- **Metric**: {spec.label} - {spec.what}. Lower is better. Mean and sample standard "
        "deviation (n - 1) over the seeds that finished (status ok); every run is listed in "
        "'per seed' and counted in 'runs', diverged and failed ones included.",
        "- **Work**: 'coarse steps' = optimizer steps weighted by grid size / base grid size "
        "(2^level; 1 per step for an MLP), the paper's work-matching unit"
        + (f" (records: {'; '.join(str(u) for u in units)})" if units else "")
        + ". 'MACs' = analytic multiply-accumulates of all loss evaluations (forward + "
        "backward, input derivatives included), comparable across model families. "
        "A single number when every seed agrees, else min-max.",
        "- **Paper**: the number the paper reports for the matching row "
        "(`bench_mlkan/paper_results.json`); '-' where it reports none. "
        "'ours / paper' = our mean / the paper's mean.",
    ]
    if paper_task and paper_task.get("reported"):
        lines.append(
            f"- **The paper reports** ({paper_task.get('figure', '')}): {paper_task['reported']}"
        )
    if paper_task:
        mapping = ", ".join(
            f"`{b}` = {r['paper_row']}" for b, r in sorted(paper_task.get("rows", {}).items())
        )
        lines.append(f"- **Paper rows**: {mapping}.")
    bad = [r for recs in by_baseline.values() for r in recs if r.get("status") != "ok"]
    if bad:
        lines += ["", "## Runs that did not finish", ""]
        for r in sorted(bad, key=lambda r: (r.get("baseline", ""), int(r.get("seed", 0)))):
            lines.append(f"- `{r.get('baseline')}` seed {r.get('seed')}: {failure_reason(r)}")
    if plots:
        lines += ["", "## Plots", ""]
        for caption, rel in plots:
            lines += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
        lines.pop()
    return "\n".join(lines) + "\n"


def failure_reason(rec: dict[str, Any]) -> str:
    """One line: where a diverged run stopped, or the last line of a failure's error."""
    if rec.get("status") == "diverged":
        d = rec.get("diverged") or {}
        return (
            f"diverged at step {d.get('step', '?')} (level {d.get('level', '?')}, "
            f"loss {fmt_sci(d.get('loss')) if isinstance(d.get('loss'), int | float) else '?'})"
        )
    err = (rec.get("error") or "").strip().splitlines()
    last = err[-1].strip() if err else "no error message"
    return f"{rec.get('status')}: `{last[:200]}`"


# ----------------------------------------------------------------------------- claims
@dataclass
class ClaimResult:
    text: str
    verdict: str  # "reproduced" | "not reproduced" | "not measured"
    detail: str


def check_claim(claim: dict[str, Any], rows: dict[str, Row], paper: dict[str, Any]) -> ClaimResult:
    """Evaluate one claim of ``paper_results.json`` on the aggregated rows of its task."""
    subject = rows.get(claim["subject"])
    label = subject.spec.label if subject else "metric"
    if subject is None or subject.mean is None:
        return ClaimResult(claim["text"], "not measured", f"no finished `{claim['subject']}` run")
    s_mean = subject.mean
    s_txt = f"`{subject.baseline}` {label} {fmt_sci(s_mean)} (n={len(subject.values)})"
    if claim["kind"] == "near_paper":
        paper_task = paper["tasks"][claim["task"]]
        ref = paper_task["rows"][claim["subject"]]["mean"]
        digits = int(paper_task.get("digits", 3))
        ratio = s_mean / ref
        factor = float(claim["factor"])
        ok = ratio <= factor
        how = "lower than" if ratio < 1 else "above"
        detail = f"{s_txt} vs the paper's {fmt_sci(ref, digits)}: {ratio:.3g}x the paper's value"
        if ok:
            detail += f" ({how} the paper's, within the {factor:g}x bound)"
        else:
            detail += f"; missed the {factor:g}x bound by a factor {ratio / factor:.3g}"
        return ClaimResult(claim["text"], "reproduced" if ok else "not reproduced", detail)
    # lower_by: subject lower than every `against` by at least `factor`
    factor = float(claim["factor"])
    parts, verdicts = [], []
    for other_name in claim["against"]:
        other = rows.get(other_name)
        if other is None or other.mean is None:
            parts.append(f"`{other_name}`: not measured")
            verdicts.append("not measured")
            continue
        ratio = other.mean / s_mean if s_mean > 0 else math.inf
        met = ratio >= factor
        direction = "lower" if ratio > 1 else "higher"
        shown = ratio if ratio >= 1 else 1 / ratio
        part = f"`{other_name}` {fmt_sci(other.mean)}: multilevel {shown:.3g}x {direction}"
        if not met:
            need = f">= {factor:g}x lower" if factor > 1 else "lower"
            part += f" (needed {need}; short by a factor {factor / ratio:.3g})"
        parts.append(part)
        verdicts.append("reproduced" if met else "not reproduced")
    if "not reproduced" in verdicts:
        verdict = "not reproduced"
    elif "not measured" in verdicts:
        verdict = "not measured" if "reproduced" not in verdicts else "partly measured"
    else:
        verdict = "reproduced"
    return ClaimResult(claim["text"], verdict, f"{s_txt}; " + "; ".join(parts))


def informative_ratios(rows: dict[str, Row]) -> str | None:
    """For tasks without a paper claim: ratios of every baseline to spline multilevel."""
    subject = rows.get("kan_multilevel")
    if subject is None or subject.mean is None:
        return None
    parts = []
    for name in ordered(rows, BASELINE_ORDER):
        other = rows[name]
        if name == subject.baseline or other.mean is None:
            continue
        parts.append(f"`{name}` {fmt_sci(other.mean)} ({fmt_ratio(other.mean / subject.mean)})")
    if not parts:
        return None
    return (
        f"`kan_multilevel` {subject.spec.label} {fmt_sci(subject.mean)}; others (their mean / "
        f"multilevel's): " + ", ".join(parts)
    )


# ----------------------------------------------------------------------------- time to target
def loss_trajectory(rec: dict[str, Any], unit: str) -> list[tuple[float, float]]:
    """(work spent, training loss reached) along the history, plus the final loss.

    A history row holds the loss *before* its step and the work *after* it, so the loss of
    row i was reached with the work of row i-1 (exact for consecutive rows; across a thinned
    gap, the work of row i minus its step's share of the gap).
    """
    key = "work" if unit == "work" else "work_macs"
    hist = rec.get("history") or []
    out: list[tuple[float, float]] = []
    for i, row in enumerate(hist):
        if i == 0:
            spent = 0.0
        else:
            prev = hist[i - 1]
            gap = max(int(row["step"]) - int(prev["step"]), 1)
            spent = float(row[key]) - (float(row[key]) - float(prev[key])) / gap
        out.append((spent, float(row["loss"])))
    final = (rec.get("final_metrics") or {}).get("train_loss")
    if final is not None and rec.get("status") == "ok":
        out.append((float(rec.get(key) or 0.0), float(final)))
    return out


def eval_trajectory(rec: dict[str, Any], unit: str, metric: str) -> list[tuple[float, float]]:
    """(work, metric) at every evaluation (level ends, eval_every) and at the end."""
    key = "work" if unit == "work" else "work_macs"
    out = [
        (float(e[key]), float(e[metric]))
        for e in rec.get("eval_history") or []
        if metric in e and key in e
    ]
    final = (rec.get("final_metrics") or {}).get(metric)
    if final is not None and rec.get("status") == "ok":
        out.append((float(rec.get(key) or 0.0), float(final)))
    return sorted(out)


def time_to_target(rec: dict[str, Any], spec: MetricSpec, unit: str = "work_macs") -> float:
    """Work (``unit``: "work" or "work_macs") at which the metric first reaches the target;
    inf when it never does (or the run failed)."""
    if spec.target is None or rec.get("status") == "failed":
        return math.inf
    traj = (
        loss_trajectory(rec, unit)
        if spec.source == "loss"
        else eval_trajectory(rec, unit, spec.key)
    )
    for spent, value in traj:
        if math.isfinite(value) and value <= spec.target:
            return spent
    return math.inf


TAU_MAX_TIME = 4.0
TAU_MAX_QUALITY = 100.0


@dataclass
class CrossTask:
    """Per task x baseline: median time-to-target (MACs) and median final metric."""

    tasks: list[str]
    baselines: list[str]
    time: dict[tuple[str, str], float]
    reached: dict[tuple[str, str], str]
    quality: dict[tuple[str, str], float]
    specs: dict[str, MetricSpec]

    def ratios(self, table: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        """r[t, b] = value / best value on task t (inf: not run, not reached or failed)."""
        out = {}
        for t in self.tasks:
            best = min((table.get((t, b), math.inf) for b in self.baselines), default=math.inf)
            for b in self.baselines:
                v = table.get((t, b), math.inf)
                if not math.isfinite(v):
                    out[t, b] = math.inf
                elif best > 0:
                    out[t, b] = v / best
                else:
                    out[t, b] = 1.0 if v == best else math.inf
        return out

    def profile(self, table, taus: Sequence[float]) -> dict[str, list[float]]:
        """rho_b(tau): fraction of tasks on which b is within tau of the best."""
        r = self.ratios(table)
        n = max(len(self.tasks), 1)
        return {
            b: [sum(r[t, b] <= tau for t in self.tasks) / n for tau in taus] for b in self.baselines
        }

    def score(self, table, tau_max: float) -> dict[str, float]:
        """AlgoPerf score: the area under rho_b(tau) over log tau in [1, tau_max], divided by
        log(tau_max), i.e. the mean over tasks of max(0, 1 - log r / log tau_max)."""
        r = self.ratios(table)
        n = max(len(self.tasks), 1)
        lt = math.log(tau_max)
        return {
            b: sum(max(0.0, 1.0 - math.log(r[t, b]) / lt) for t in self.tasks if r[t, b] < math.inf)
            / n
            for b in self.baselines
        }


def cross_task(records: dict[str, dict[str, list[dict[str, Any]]]]) -> CrossTask:
    tasks = [t for t in ordered(records, TASK_ORDER)]
    specs = {t: metric_spec(t, task_kind(records[t])) for t in tasks}
    tasks = [t for t in tasks if specs[t].target is not None]
    baselines = ordered({b for t in tasks for b in records[t]}, BASELINE_ORDER)
    time, reached, quality = {}, {}, {}
    for t in tasks:
        for b, recs in records[t].items():
            times = [time_to_target(r, specs[t]) for r in recs]
            time[t, b] = median(times)
            reached[t, b] = f"{sum(math.isfinite(x) for x in times)}/{len(times)}"
            vals = [final_value(r, specs[t].key) for r in recs]
            quality[t, b] = median(
                [v if v is not None and math.isfinite(v) else math.inf for v in vals]
            )
    return CrossTask(tasks, baselines, time, reached, quality, specs)


def render_cross_task(ct: CrossTask) -> list[str]:
    if not ct.tasks:
        return ["No task with a stated target has records yet."]
    lines = [
        "Time-to-target: the work (MACs, comparable across model families) at which a run "
        "first reaches the task's target (below); per baseline the median over its seeds, "
        "a failed, diverged or never-reaching seed counting as infinite. A training-loss "
        "target is checked after every optimizer step; an evaluation target only where the "
        "run was evaluated (each level end, every `eval_every` steps, the end), so a "
        "single-level run without `eval_every` is resolved only at its end. "
        "Targets: "
        + "; ".join(
            f"`{t}` {ct.specs[t].label} <= {fmt_sci(ct.specs[t].target)}"
            f" ({'training loss per step' if ct.specs[t].source == 'loss' else 'evaluations'})"
            for t in ct.tasks
        )
        + ".",
        "",
    ]
    header = ["baseline", *[f"`{t}` MACs to target (seeds reached)" for t in ct.tasks]]
    rows = []
    for b in ct.baselines:
        cells = [f"`{b}`"]
        for t in ct.tasks:
            if (t, b) not in ct.time:
                cells.append("not run")
            else:
                v = ct.time[t, b]
                cells.append(
                    f"{fmt_sci(v) if math.isfinite(v) else 'not reached'} ({ct.reached[t, b]})"
                )
        rows.append(cells)
    lines += md_table(header, rows)
    time_score = ct.score(ct.time, TAU_MAX_TIME)
    quality_score = ct.score(ct.quality, TAU_MAX_QUALITY)
    lines += [
        "",
        "Performance profiles (AlgoPerf style): rho_b(tau) = fraction of the "
        f"{len(ct.tasks)} tasks on which baseline b is within a factor tau of the best baseline "
        "on that task; a task a baseline did not run, or on which it never reached the "
        "target, counts as not within any tau. Score = area under rho_b over log tau in "
        f"[1, tau_max] / log tau_max (1 = best on every task): time-to-target with tau_max = "
        f"{TAU_MAX_TIME:g} (AlgoPerf's value), and final metric at the recorded work "
        f"(median over seeds) with tau_max = {TAU_MAX_QUALITY:g}.",
        "",
    ]
    rows = [
        [
            f"`{b}`",
            str(sum((t, b) in ct.time for t in ct.tasks)),
            f"{time_score[b]:.3f}",
            f"{quality_score[b]:.3f}",
        ]
        for b in sorted(ct.baselines, key=lambda b: (-time_score[b], -quality_score[b], b))
    ]
    lines += md_table(["baseline", "tasks run", "time-to-target score", "final-metric score"], rows)
    return lines


# ----------------------------------------------------------------------------- summary
def render_readme(
    records: dict[str, dict[str, list[dict[str, Any]]]],
    paper: dict[str, Any],
    task_plots: dict[str, list[tuple[str, str]]],
    global_plots: list[tuple[str, str]],
    spectra_table: list[str],
) -> str:
    tasks = ordered(records, TASK_ORDER)
    n_runs = sum(len(v) for by in records.values() for v in by.values())
    profiles = sorted(
        {str(r.get("profile")) for by in records.values() for v in by.values() for r in v}
    )
    lines = [
        "# Leaderboards",
        "",
        "Generated by `python -m bench_mlkan leaderboard` (`make leaderboard`) from the run "
        "records under `results/` (one JSON per task x baseline x seed) and the paper's "
        "numbers in `bench_mlkan/paper_results.json`; never edited by hand.",
        "",
    ]
    if not tasks:
        lines += ["No run records yet: run `make bench`.", ""]
    else:
        lines += [
            f"{n_runs} run{'s' * (n_runs != 1)} on {len(tasks)} task{'s' * (len(tasks) != 1)}, "
            "profile(s) "
            f"{', '.join(f'`{p}`' for p in profiles)}. The `quick` profile runs reduced point "
            "sets, seeds and step counts (stated per experiment below); only the `paper` "
            "profile is the paper's setting.",
            "",
            "## Experiments",
            "",
        ]
        rows = []
        for t in tasks:
            pt = paper.get("tasks", {}).get(t)
            where = (
                ", ".join(x for x in (f"§{pt['section']}", pt.get("table"), pt.get("figure")) if x)
                if pt
                else "not in the paper"
            )
            recs = [r for v in records[t].values() for r in v]
            counts = "/".join(str(sum(r.get("status") == s for r in recs)) for s in STATUSES)
            plots = ", ".join(f"[{c}]({rel})" for c, rel in task_plots.get(t, []))
            rows.append([f"[`{t}`]({t}.md)", where, str(len(records[t])), counts, plots or "-"])
        lines += md_table(
            ["experiment", "paper", "baselines", "runs ok/diverged/failed", "plots"], rows
        )
        lines += ["", "## Reproduction notes", ""]
        claims = paper.get("claims", [])
        for t in tasks:
            pt = paper.get("tasks", {}).get(t)
            head = f"### `{t}`" + (f" (paper §{pt['section']})" if pt else " (not in the paper)")
            lines += [head, "", profile_note(records[t], pt), ""]
            rows_by = {r.baseline: r for r in task_rows(t, records[t], paper)}
            task_claims = [c for c in claims if c["task"] == t]
            for c in task_claims:
                res = check_claim(c, rows_by, paper)
                lines.append(f"- **{res.verdict}** - {res.text}. Measured: {res.detail}.")
            if not task_claims:
                info = informative_ratios(rows_by)
                lines.append(
                    "- No claim of the paper to check. "
                    + (f"Measured: {info}." if info else "No `kan_multilevel` result yet.")
                )
            if pt and pt.get("sota"):
                s = pt["sota"]
                lines.append(
                    f"- For scale: the state of the art on this problem is "
                    f"{fmt_sci(s['rel_l2'])} relative L2 ({s['method']})."
                )
            lines.append("")
        missing = ordered({c["task"] for c in claims} - set(tasks), TASK_ORDER)
        if missing:
            lines += [
                "Experiments of the paper without records yet: "
                + ", ".join(f"`{t}`" for t in missing)
                + ".",
                "",
            ]
        lines += ["## Cross-task score", ""]
        lines += render_cross_task(cross_task(records))
        lines.append("")
    lines += ["## Plots", ""]
    for t in tasks:
        for caption, rel in task_plots.get(t, []):
            lines.append(f"- `{t}`: [{caption}]({rel})")
    for caption, rel in global_plots:
        lines.append(f"- [{caption}]({rel})")
    lines += ["", "## Change of basis A^T A (paper §2, Fig. 1, 2)", ""]
    lines += spectra_table
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- render
class Written(list):
    """The paths ``render`` wrote (a list), with ``errors``: the plots that failed."""

    errors: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.errors = []


def render(
    results_dir: Path | str = DEFAULT_RESULTS,
    out_dir: Path | str = DEFAULT_OUT,
    plots: bool = True,
    records: dict[str, dict[str, list[dict[str, Any]]]] | None = None,
) -> Written:
    """Write every table, the summary page and (``plots``) every plot of one profile's
    records folder (``records``: already loaded from it) into ``out_dir``; return the paths.

    The markdown does not depend on ``plots``: the plot links are planned from the records,
    so ``render(..., plots=False)`` writes the same tables. A plot that cannot be drawn is
    reported on stderr and in the result's ``errors``; it never stops the tables.
    """
    from . import plots as P

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if records is None:
        records = load_records(results_dir)
    paper = load_paper()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Written()
    plan = P.plan(records, results_dir)
    task_plots = {
        t: [(p.caption, f"plots/{p.filename}") for p in plan if p.task == t] for t in records
    }
    global_plots = [(p.caption, f"plots/{p.filename}") for p in plan if p.task is None]
    for task in ordered(records, TASK_ORDER):
        path = out_dir / f"{task}.md"
        path.write_text(render_task(task, records[task], paper, task_plots[task]))
        written.append(path)
    readme = out_dir / "README.md"
    readme.write_text(render_readme(records, paper, task_plots, global_plots, P.condition_table()))
    written.append(readme)
    if plots:
        plot_dir = out_dir / "plots"
        plot_dir.mkdir(parents=True, exist_ok=True)
        for p in plan:
            target = plot_dir / p.filename
            try:
                p.draw(target)
                written.append(target)
            except Exception as e:  # noqa: BLE001 - a plot never stops the leaderboard
                msg = f"plot {p.filename}: {type(e).__name__}: {e}"
                written.errors.append(msg)
                print(f"warning: {msg}", file=sys.stderr)
    return written


# ----------------------------------------------------------------------------- profiles
#: Order of the profiles on the index page; others follow sorted.
PROFILE_ORDER = ("paper", "quick", "smoke")
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


def is_profile_folder(folder: Path) -> bool:
    """True when ``folder`` holds records directly (``<task>/<row>/seed<k>.json``)."""
    return bool(record_files(folder))


def profile_folders(results_root: Path) -> dict[str, Path]:
    """``{profile: folder}`` of every ``<results_root>/<profile>/`` holding records, ordered."""
    root = Path(results_root)
    found = {p.name: p for p in root.iterdir() if p.is_dir() and is_profile_folder(p)}
    return {name: found[name] for name in ordered(found, PROFILE_ORDER)} if found else {}


def default_out_root(results_root: Path) -> Path:
    """Where the tables of a records root go: ``runs/leaderboards`` for ``runs/results``,
    else the root's parent (``leaderboards/`` for ``leaderboards/results``)."""
    root = Path(results_root).resolve()
    return root.parent / "leaderboards" if root.parent.name == "runs" else root.parent


def render_all(
    results_root: Path | str = SHIPPED_RESULTS,
    out_root: Path | str = SHIPPED_LEADERBOARDS,
    plots: bool = True,
    profiles: Sequence[str] | None = None,
) -> Written:
    """Render every profile ``<results_root>/<p>/`` (or only ``profiles``) into
    ``<out_root>/<p>/`` and the index ``<out_root>/README.md`` (every profile with records)."""
    results_root, out_root = Path(results_root), Path(out_root)
    folders = profile_folders(results_root) if results_root.is_dir() else {}
    by_profile = {name: load_records(folder) for name, folder in folders.items()}
    written = Written()
    for name, folder in folders.items():
        if profiles and name not in profiles:
            continue
        w = render(folder, out_root / name, plots=plots, records=by_profile[name])
        written += w
        written.errors += w.errors
    out_root.mkdir(parents=True, exist_ok=True)
    index = out_root / "README.md"
    index.write_text(render_index(by_profile, load_paper()))
    written.append(index)
    return written


def profile_description(name: str) -> str | None:
    """The ``description`` of ``bench_mlkan/profiles/<name>.json`` (None when absent)."""
    path = PROFILES_DIR / f"{name}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("description")
    except (OSError, json.JSONDecodeError):
        return None


def render_index(
    by_profile: dict[str, dict[str, dict[str, list[dict[str, Any]]]]], paper: dict[str, Any]
) -> str:
    """The index page: every experiment under every profile that has records."""
    lines = [
        "# Leaderboards",
        "",
        "Generated by `python -m bench_mlkan leaderboard` (`make leaderboard`) from the run "
        "records under `results/<profile>/<task>/<baseline>/seed<k>.json` and the paper's "
        "numbers in `bench_mlkan/paper_results.json`; never edited by hand. Each profile "
        "renders into its own folder `<profile>/`: one table per experiment (`<task>.md`), "
        "a summary page (`README.md`: reproduction notes - does each claim of the paper hold "
        "in these records, by how much -, cross-task score, plots) and `plots/`. Only the "
        "`paper` profile is the paper's setting; the others run reduced point sets, seeds "
        "and step counts (stated per experiment on their pages).",
        "",
    ]
    if not by_profile:
        return "\n".join([*lines, "No run records yet: run `make bench`.", ""])
    claims = paper.get("claims", [])
    for name, records in by_profile.items():
        tasks = ordered(records, TASK_ORDER)
        n_runs = sum(len(v) for by in records.values() for v in by.values())
        lines += [f"## Profile `{name}`", ""]
        desc = profile_description(name)
        if desc:
            lines += [desc, ""]
        lines += [
            f"{n_runs} run{'s' * (n_runs != 1)} on {len(tasks)} task{'s' * (len(tasks) != 1)}; "
            f"reproduction notes, cross-task score and plots: [`{name}/README.md`]"
            f"({name}/README.md).",
            "",
        ]
        rows = []
        for t in tasks:
            pt = paper.get("tasks", {}).get(t)
            where = (
                ", ".join(x for x in (f"§{pt['section']}", pt.get("table"), pt.get("figure")) if x)
                if pt
                else "not in the paper"
            )
            recs = [r for v in records[t].values() for r in v]
            counts = "/".join(str(sum(r.get("status") == s for r in recs)) for s in STATUSES)
            task_claims = [c for c in claims if c["task"] == t]
            rows_by = {r.baseline: r for r in task_rows(t, records[t], paper)}
            verdicts = [check_claim(c, rows_by, paper).verdict for c in task_claims]
            held = f"{verdicts.count('reproduced')} of {len(verdicts)}" if verdicts else "-"
            rows.append([f"[`{t}`]({name}/{t}.md)", where, str(len(records[t])), counts, held])
        lines += md_table(
            ["experiment", "paper", "baselines", "runs ok/diverged/failed", "claims reproduced"],
            rows,
        )
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- W&B
def task_table_data(
    records: dict[str, dict[str, list[dict[str, Any]]]], paper: dict[str, Any]
) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{task: (columns, rows)} - the same cells as the markdown tables."""
    out = {}
    for task in ordered(records, TASK_ORDER):
        rows = task_rows(task, records[task], paper)
        out[task] = (task_header(rows[0].spec), [r.cells() for r in rows])
    return out


def push_wandb(results_dir: Path, project: str = "bench-mlkan", name: str = "leaderboard") -> bool:
    """Log every task table as a ``wandb.Table`` in one run (job type "leaderboard").

    Offline without an API key, nothing with ``WANDB_MODE=disabled``; any W&B error is
    reported and swallowed (the local files are the source of truth). True when logged.
    """
    from .wandb_utils import _settings, wandb_mode

    mode = wandb_mode()
    if mode == "disabled":
        print("W&B disabled (WANDB_MODE=disabled): tables not pushed")
        return False
    try:
        import wandb

        data = task_table_data(load_records(results_dir), load_paper())
        run = wandb.init(
            project=project,
            job_type="leaderboard",
            name=name,
            mode=mode,  # type: ignore[arg-type]
            settings=_settings(),
            reinit="finish_previous",
        )
        try:
            for task, (columns, rows) in data.items():
                table = wandb.Table(columns=columns, data=rows)  # type: ignore[arg-type]
                run.log({f"leaderboard/{task}": table})
        finally:
            run.finish()
        print(f"W&B ({mode}): pushed {len(data)} leaderboard table(s) to project {project!r}")
        return True
    except Exception as e:  # noqa: BLE001 - W&B must never break the leaderboard
        print(f"warning: W&B push failed: {type(e).__name__}: {e}", file=sys.stderr)
        return False


# ----------------------------------------------------------------------------- CLI
def leaderboard_main(argv: list[str] | None = None) -> int:
    """Exit 0; 1 when a plot failed; 2 for a missing records folder or one without records
    (nothing is written then)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench_mlkan leaderboard",
        description="Render the leaderboards (tables, notes, plots) from the run records: "
        "every profile under --results into <out>/<profile>/, plus the index <out>/README.md.",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=SHIPPED_RESULTS,
        help="records root holding <profile>/ folders (default: the shipped leaderboards/results),"
        " or one profile's folder (<task>/<baseline>/seed<k>.json: rendered into --out)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: leaderboards/ for leaderboards/results, runs/leaderboards "
        "for runs/results, else the records root's parent)",
    )
    parser.add_argument("--profile", nargs="+", default=None, help="only these profiles")
    parser.add_argument("--no-plots", action="store_true", help="tables and notes only")
    parser.add_argument("--wandb", action="store_true", help="also push the tables to W&B")
    parser.add_argument("--project", default="bench-mlkan", help="W&B project")
    args = parser.parse_args(argv)
    results: Path = args.results
    if not results.is_dir():
        print(f"error: no records folder {results}", file=sys.stderr)
        return 2
    if is_profile_folder(results):  # one profile's folder
        if args.profile:
            print(
                "error: --profile needs a records root, not one profile's folder", file=sys.stderr
            )
            return 2
        out = args.out or default_out_root(results.parent) / results.name
        written = render(results, out, plots=not args.no_plots)
        pushed = {results.name: results}
    else:
        folders = profile_folders(results)
        unknown = sorted(set(args.profile or []) - set(folders))
        if not folders or unknown:
            what = f"no records for profile(s) {', '.join(unknown)}" if unknown else "no records"
            known = f"; profiles with records: {', '.join(folders)}" if folders else ""
            print(
                f"error: {what} under {results} (expected <profile>/<task>/<baseline>/"
                f"seed<k>.json){known}",
                file=sys.stderr,
            )
            return 2
        out = args.out or default_out_root(results)
        written = render_all(results, out, plots=not args.no_plots, profiles=args.profile)
        pushed = {p: f for p, f in folders.items() if not args.profile or p in args.profile}
    for path in written:
        print(path)
    if args.wandb:
        for name, folder in pushed.items():
            push_wandb(folder, args.project, name=f"leaderboard-{name}")
    return 1 if written.errors else 0


main = leaderboard_main
