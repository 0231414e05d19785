"""The tuned leaderboard beside the untuned one (a profile whose JSON says
``"compare_with": "<untuned profile>"``): per task, every row's final and best-so-far metric
untuned and tuned, the tuned settings, the paper's claims and the cross-task scores on both.

The *tuned leaderboard* of a task is the untuned rows with every row that has tuned runs
replaced by them (``merged``); claims and performance profiles are computed on it, so a
claim comparing a tuned row with an untuned one says so in the row list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..records import Record
from ..scoring.claims import check_claim, paper_claims
from ..scoring.metadata import row_order, task_info, task_order
from ..scoring.profiles import cross_task, median_inf
from ..scoring.trajectory import best_so_far
from .fmt import fmt_count, fmt_ratio, fmt_sci, md_table

Records = Mapping[str, Mapping[str, Sequence[Record]]]


def merged(untuned: Records, tuned: Records) -> dict[str, dict[str, Sequence[Record]]]:
    """Per task of either: the untuned rows, each replaced by its tuned runs if any."""
    return {t: {**dict(untuned.get(t, {})), **dict(tuned.get(t, {}))} for t in {*untuned, *tuned}}


def _stats(recs: Sequence[Record], task: str) -> tuple[float | None, float | None, float | None]:
    """(median final metric, median best-so-far, median work) of the finished runs."""
    info = task_info(task)
    finals = [(r, v) for r in recs if r.status == "ok" and (v := r.final(info.metric)) is not None]
    if not finals:
        return None, None, None
    done = [r for r, _ in finals]
    best = [b for r in done if (b := best_so_far(r, info)) is not None]
    work = [float(r.work) for r in done if r.work is not None]
    return (
        median_inf([float(v) for _, v in finals]),
        median_inf(best) if best else None,
        median_inf(work) if work else None,
    )


def tuned_settings(config: Mapping[str, Any]) -> str:
    """The tuned knobs of a run's config, short: lr, level split, strategy options."""
    parts = []
    if config.get("lr") is not None:
        parts.append(f"lr {fmt_sci(float(config['lr']))}")
    fractions = config.get("budget_fractions")
    if fractions:
        parts.append("split " + "/".join(f"{float(f):.2f}" for f in fractions))
    for key, value in sorted((config.get("strategy_options") or {}).items()):
        parts.append(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}")
    wd = (config.get("optimizer_options") or {}).get("weight_decay")
    if wd is not None:
        parts.append(f"weight decay {fmt_sci(float(wd))}")
    return ", ".join(parts) or "-"


def _seeds(recs: Sequence[Record]) -> str:
    return ",".join(str(r.seed) for r in sorted(recs, key=lambda r: r.seed)) or "-"


def task_rows(
    task: str,
    untuned: Mapping[str, Sequence[Record]],
    tuned: Mapping[str, Sequence[Record]],
    studies: Mapping[tuple[str, str], Mapping[str, Any]],
) -> list[list[str]]:
    """One line per row of the task (untuned rows first in table order)."""
    out = []
    for row in row_order({**untuned, **tuned}):
        u, t = untuned.get(row, ()), tuned.get(row, ())
        uf, ub, uw = _stats(u, task)
        tf, tb, tw = _stats(t, task)
        ratio = tf / uf if tf is not None and uf else None
        study = studies.get((row, task)) or {}
        trials = study.get("trials") or {}
        out.append(
            [
                f"`{row}`",
                f"{fmt_sci(uf)} ({_seeds(u)})" if u else "not run",
                fmt_sci(ub) if u else "-",
                f"{fmt_sci(tf)} ({_seeds(t)})" if t else "not tuned",
                fmt_sci(tb) if t else "-",
                fmt_ratio(ratio) if ratio is not None and math.isfinite(ratio) else "-",
                f"{fmt_count(uw)} / {fmt_count(tw)}",
                str(sum(trials.values())) if trials else "-",
                fmt_sci(study.get("metric_value")) if study else "-",
                tuned_settings(t[0].config) if t else "-",
            ]
        )
    return out


def claim_rows(
    task: str, untuned: Mapping, tuned_board: Mapping, paper: Mapping
) -> list[list[str]]:
    """Each claim of the paper on the task: its verdict untuned and on the tuned board."""
    return [
        [
            f"{c.id}",
            c.text,
            check_claim(c, untuned, paper).verdict,
            check_claim(c, tuned_board, paper).verdict,
        ]
        for c in paper_claims(paper, task)
    ]


def render_tuned(
    untuned: Records,
    tuned: Records,
    paper: Mapping[str, Any],
    names: tuple[str, str],
    studies: Mapping[tuple[str, str], Mapping[str, Any]],
    cross_task_lines: Any,
) -> str:
    """The comparison page; ``names`` = (untuned profile, tuned profile); ``studies``:
    {(baseline, task): the shipped tuned config's JSON}; ``cross_task_lines(ct, label)``:
    the cross-task section renderer of the summary pages."""
    plain, tuned_name = names
    board = merged(untuned, tuned)
    lines = [
        f"# Tuned vs untuned: profile `{tuned_name}` beside `{plain}`",
        "",
        "Generated by `python -m bench_mlkan leaderboard` from the run records; do not edit.",
        "",
        f"Every row of `{tuned_name}` ran its tuned config (`baselines/<row>/tuned/<task>.json`: "
        "the best trial of one Optuna study per row and task, at the same task size and work "
        f"budget as `{plain}`, on the tuning seed) on fresh seeds, never the tuning seed. The "
        f"*tuned board* of a task is `{plain}`'s rows with each tuned row swapped in; claims "
        "and cross-task scores below are computed on both. Values are medians over seeds "
        "(seeds in brackets); 'best-so-far' is the best value a run reached along the way; "
        "'study best' is the tuning trial's own value (on the tuning seed).",
        "",
    ]
    for task in task_order(tuned):
        info = task_info(task)
        lines += [f"## {info.display_name} (`{task}`): {info.metric_label}", ""]
        lines += md_table(
            [
                "row",
                f"untuned ({plain})",
                "untuned best-so-far",
                f"tuned ({tuned_name})",
                "tuned best-so-far",
                "tuned / untuned",
                "work untuned / tuned",
                "trials",
                "study best",
                "tuned settings",
            ],
            task_rows(task, untuned.get(task, {}), tuned[task], studies),
        )
        claims = claim_rows(task, untuned.get(task, {}), board[task], paper)
        if claims:
            lines += ["", f"Claims of the paper, `{plain}` vs the tuned board:", ""]
            lines += md_table(["claim", "text", f"`{plain}`", "tuned board"], claims)
        lines.append("")
    lines += [f"## Cross-task score, `{plain}`", ""]
    lines += cross_task_lines(cross_task(untuned), plain)
    lines += ["", "## Cross-task score, tuned board", ""]
    lines += cross_task_lines(cross_task(board), f"{tuned_name} (tuned board)")
    return "\n".join(lines) + "\n"


def studies_index(configs: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """``studies/README.md``: every shipped tuned config (``baselines/<b>/tuned/<task>.json``)
    with its study's trial counts, budget and best value; ``configs``: {(baseline, task): JSON}."""
    lines = [
        "# Tuning studies behind the shipped tuned configs",
        "",
        "Generated by `python -m bench_mlkan leaderboard` from `baselines/<b>/tuned/<task>.json`; "
        "do not edit. One Optuna study per baseline and task (`python -m bench_mlkan tune`, "
        "TPE, median pruning at level ends), objective log10 of the task's metric at the end "
        "of a fixed work budget, on one tuning seed; each study's summary is "
        "`<study>/README.md`, every trial is in `optuna.db` (`optuna-dashboard "
        "sqlite:///optuna.db`).",
        "",
    ]
    rows = []
    for (base, task), c in sorted(configs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        trials = c.get("trials") or {}
        study = c.get("study", "-")
        fixed = ", ".join(f"{k}={v}" for k, v in sorted((c.get("stripped") or {}).items()))
        rows.append(
            [
                f"`{task}`",
                f"`{base}`",
                f"[`{study}`]({study}/README.md)",
                fmt_count(c.get("work_budget")),
                fixed or "-",
                "/".join(str(trials.get(k, 0)) for k in ("complete", "pruned", "failed")),
                # the study minimises log10 of the metric; metric_value is the metric itself
                f"{str(c.get('metric', '-')).removeprefix('log10 ')} = "
                f"{fmt_sci(c.get('metric_value'))}",
                f"`baselines/{base}/tuned/{task}.json`",
            ]
        )
    lines += md_table(
        [
            "task",
            "baseline",
            "study",
            "work budget",
            "study-only settings",
            "trials complete/pruned/failed",
            "best (tuning seed)",
            "tuned config",
        ],
        rows,
    )
    return "\n".join(lines) + "\n"
