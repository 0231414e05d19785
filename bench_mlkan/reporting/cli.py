"""``python -m bench_mlkan leaderboard [--results DIR] [--out DIR] [--profile P ...]
[--no-plots] [--wandb]``: render the leaderboards (``make leaderboard``: every shipped
profile). Exit 0; 1 when a figure failed; 2 for a missing records folder or one without
records (nothing is written then)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..records import SHIPPED_RESULTS
from ..scoring.aggregate import aggregate_task
from ..scoring.claims import load_paper
from ..scoring.metadata import task_info, task_order
from .render import (
    default_out_root,
    is_profile_folder,
    load_records,
    profile_folders,
    render,
    render_all,
)
from .tables import cells, header


def task_table_data(folder: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{task: (columns, rows)}: the cells of the markdown tables of one profile's folder."""
    records, paper = load_records(folder), load_paper()
    return {
        task: (
            header(task_info(task)),
            [cells(a, (paper.get("tasks") or {}).get(task)) for a in aggregate_task(task, by)],
        )
        for task in task_order(records)
        for by in [records[task]]
    }


def push_wandb(folder: Path, project: str, name: str) -> bool:
    """Log every task table of one profile as a ``wandb.Table`` in one run (job type
    "leaderboard"); offline without an API key, nothing with ``WANDB_MODE=disabled``. A W&B
    error is reported, never raised (the local files are the source of truth)."""
    from ..wandb_utils import _settings, wandb_mode

    mode = wandb_mode()
    if mode == "disabled":
        print("W&B disabled (WANDB_MODE=disabled): tables not pushed")
        return False
    try:
        import wandb

        data = task_table_data(folder)
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
                run.log({f"leaderboard/{task}": wandb.Table(columns=columns, data=rows)})  # type: ignore[arg-type]
        finally:
            run.finish()
        print(f"W&B ({mode}): pushed {len(data)} leaderboard table(s) to project {project!r}")
        return True
    except Exception as e:  # noqa: BLE001 - W&B must never break the leaderboard
        print(f"warning: W&B push failed: {type(e).__name__}: {e}", file=sys.stderr)
        return False


def leaderboard_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench_mlkan leaderboard",
        description="Render the leaderboards (pages, tables as CSV/JSON, figures) from the run "
        "records: every profile under --results into <out>/<profile>/, plus <out>/README.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  make leaderboard                                  # re-render every shipped profile\n"
        "  python -m bench_mlkan leaderboard --profile paper --no-plots\n"
        "  python -m bench_mlkan leaderboard --results runs/results --out runs/leaderboards",
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
    parser.add_argument("--no-plots", action="store_true", help="pages and tables only")
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
