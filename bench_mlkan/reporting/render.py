"""Render one profile's records (``render``) or every profile (``render_all``) to files.

``render(results_dir, out_dir)`` reads every record of one profile's folder
(``<task>/<row>/seed<k>.json``) and writes into ``out_dir``: ``<task>.md`` per experiment,
``tables/<task>.csv|json`` (the same aggregates as data), ``README.md`` (summary,
reproduction notes, cross-task score) and ``plots/<name>.png|svg``. ``render_all`` does
that for every ``<results_root>/<profile>/`` and writes the index ``<out_root>/README.md``.

Everything is a pure function of the records and ``paper_results.json``: sorted rows and
seeds, fixed number formats, no timestamps; rendering twice gives the same text files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..records import SHIPPED_LEADERBOARDS, SHIPPED_RESULTS, Record, RecordError, record_files
from ..scoring.aggregate import aggregate_task
from ..scoring.claims import load_paper
from ..scoring.metadata import task_info, task_order
from . import figures, spectra
from .pages import Records, render_index, render_summary, render_task
from .tables import table_csv, table_json

#: ``render``'s defaults: the shipped quick profile
DEFAULT_RESULTS = SHIPPED_RESULTS / "quick"
DEFAULT_OUT = SHIPPED_LEADERBOARDS / "quick"
#: order of the profiles on the index page; others follow by name
PROFILE_ORDER = ("paper", "quick", "smoke")
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


class Written(list):
    """The paths written (a list), with ``errors``: the figures that failed."""

    errors: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.errors = []


def load_records(results: Path) -> dict[str, dict[str, list[Record]]]:
    """``{task: {row: [Record, ...]}}`` of one profile's folder, sorted by seed. A corrupt or
    incomplete record is named on stderr and skipped."""
    out: dict[str, dict[str, list[Record]]] = {}
    for path in record_files(Path(results)):
        try:
            rec = Record.load(path)
        except RecordError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
            continue
        out.setdefault(rec.task, {}).setdefault(rec.row, []).append(rec)
    for by_row in out.values():
        for recs in by_row.values():
            recs.sort(key=lambda r: (r.seed, str(r.path)))
    return out


def profile_name(records: Records, folder: Path) -> str:
    """The records' own profile when they agree on one, else the folder's name."""
    names = {r.profile for by in records.values() for rs in by.values() for r in rs}
    return str(names.pop()) if len(names) == 1 and None not in names else Path(folder).name


def render(
    results_dir: Path | str = DEFAULT_RESULTS,
    out_dir: Path | str = DEFAULT_OUT,
    plots: bool = True,
    records: Records | None = None,
) -> Written:
    """Write every page, table and (``plots``) figure of one profile's records folder.

    The pages do not depend on ``plots``: figure links are planned from the records. A
    figure that cannot be drawn is reported on stderr and in ``errors``; it never stops
    the pages.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if records is None:
        records = load_records(results_dir)
    profile = profile_name(records, results_dir)
    paper = load_paper()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Written()
    plan = figures.plan(records, profile)
    task_plots = {
        t: [(p.caption, f"plots/{p.filename}") for p in plan if p.task == t] for t in records
    }
    global_plots = [(p.caption, f"plots/{p.filename}") for p in plan if p.task is None]
    for task in task_order(records):
        page = out_dir / f"{task}.md"
        page.write_text(render_task(task, records[task], paper, profile, task_plots[task]))
        written.append(page)
        rows = aggregate_task(task, records[task])
        paper_task = (paper.get("tasks") or {}).get(task)
        tables = out_dir / "tables"
        tables.mkdir(exist_ok=True)
        (tables / f"{task}.csv").write_text(table_csv(rows, paper_task))
        (tables / f"{task}.json").write_text(table_json(task_info(task), profile, rows, paper_task))
        written += [tables / f"{task}.csv", tables / f"{task}.json"]
    summary = out_dir / "README.md"
    summary.write_text(
        render_summary(records, paper, profile, task_plots, global_plots, spectra.condition_table())
    )
    written.append(summary)
    if plots:
        for p in plan:
            try:
                written += p.draw(out_dir / "plots" / p.filename)
            except Exception as e:  # noqa: BLE001 - a figure never stops the leaderboard
                msg = f"plot {p.filename}: {type(e).__name__}: {e}"
                written.errors.append(msg)
                print(f"warning: {msg}", file=sys.stderr)
    return written


# ----------------------------------------------------------------------------- profiles
def is_profile_folder(folder: Path) -> bool:
    """True when ``folder`` holds records directly (``<task>/<row>/seed<k>.json``)."""
    return bool(record_files(folder))


def profile_folders(results_root: Path) -> dict[str, Path]:
    """``{profile: folder}`` of every ``<results_root>/<profile>/`` holding records, ordered."""
    root = Path(results_root)
    found = {p.name: p for p in root.iterdir() if p.is_dir() and is_profile_folder(p)}
    known = [n for n in PROFILE_ORDER if n in found]
    return {name: found[name] for name in known + sorted(set(found) - set(known))}


def default_out_root(results_root: Path) -> Path:
    """Where the pages of a records root go: ``runs/leaderboards`` for ``runs/results``,
    else the root's parent (``leaderboards/`` for ``leaderboards/results``)."""
    root = Path(results_root).resolve()
    return root.parent / "leaderboards" if root.parent.name == "runs" else root.parent


def profile_description(name: str) -> str | None:
    """The ``description`` of ``bench_mlkan/profiles/<name>.json`` (None when absent)."""
    path = PROFILES_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text()).get("description") if path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


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
    descriptions = {name: profile_description(name) for name in by_profile}
    pages = {name: sensitivity_tasks(name) for name in by_profile}
    for name, tasks in pages.items():
        if tasks and (not profiles or name in profiles):
            written += render_sensitivity(name, folders[name], out_root / "sensitivity", tasks)
    for name in by_profile:
        other = (load_profile_json(name) or {}).get("compare_with")
        if other in by_profile and (not profiles or name in profiles):
            page = out_root / name / "vs_untuned.md"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(tuned_page(by_profile[other], by_profile[name], (other, name)))
            written.append(page)
    configs = shipped_tuned_configs()
    if configs and not profiles:
        from .tuned import studies_index

        (out_root / "studies").mkdir(exist_ok=True)
        (out_root / "studies" / "README.md").write_text(studies_index(configs))
        written.append(out_root / "studies" / "README.md")
    index.write_text(render_index(by_profile, load_paper(), descriptions, pages))
    written.append(index)
    return written


def shipped_tuned_configs() -> dict[tuple[str, str], dict]:
    """{(baseline, task): JSON} of every ``baselines/<b>/tuned/<task>.json``."""
    from bench_mlkan.baselines import BASELINES

    out = {}
    for name in BASELINES:
        for path in sorted((BASELINES[name] / "tuned").glob("*.json")):
            out[name, path.stem] = json.loads(path.read_text())
    return out


def tuned_page(untuned: Records, tuned: Records, names: tuple[str, str]) -> str:
    """The tuned-vs-untuned page, with the shipped tuned configs' study summaries."""
    from bench_mlkan.baselines import BASELINES

    from .pages import render_cross_task
    from .tuned import render_tuned

    studies = {}
    for task, rows in tuned.items():
        for row in rows:
            base = row.partition("@")[0]
            path = BASELINES[base] / "tuned" / f"{task}.json" if base in BASELINES else None
            if path is not None and path.exists():
                studies[row, task] = json.loads(path.read_text())
    return render_tuned(untuned, tuned, load_paper(), names, studies, render_cross_task)


def load_profile_json(name: str) -> dict | None:
    """``bench_mlkan/profiles/<name>.json`` (None when absent or unreadable)."""
    path = PROFILES_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


def sensitivity_tasks(name: str) -> list[str]:
    """The tasks of profile ``name`` that get a sensitivity page (its readings' tasks)."""
    from ..sensitivity import profile_tasks

    profile = load_profile_json(name)
    return profile_tasks(profile) if profile else []


def render_sensitivity(name: str, folder: Path, out: Path, tasks: Sequence[str]) -> Written:
    """Write ``out/<task>.md`` for the ablation profile ``name`` (records in ``folder``)."""
    from ..records import iter_records
    from ..sensitivity import render_task_page

    profile = load_profile_json(name) or {}
    records = list(iter_records(folder))
    written = Written()
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        path = out / f"{task}.md"
        path.write_text(render_task_page(profile, task, records, name))
        written.append(path)
    return written
