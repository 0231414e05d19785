"""Leaderboards: golden pages from fixture records, the shipped pages match the shipped
records, every page and figure names its profile, figures are drawn (PNG + SVG), the
CSV/JSON aggregates agree with the records, and the command line.

The fixture records under ``tests/fixtures/records`` were produced by the real engine
(``tests/fixtures/make_records.py``); they include diverged runs, a failed run and a
collapsed run (``poisson_interface_2d``/``mcmlp_multilevel``: its last spline layer's
inputs all lie outside the grid). Regenerate the golden files only deliberately:
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_leaderboard.py``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402

from bench_mlkan import reporting as LB  # noqa: E402
from bench_mlkan.records import Record  # noqa: E402
from bench_mlkan.reporting import figures, spectra  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "records"
GOLDEN = HERE / "fixtures" / "golden"
SHIPPED = HERE.parent / "leaderboards"


def _text_files(folder: Path) -> dict[str, str]:
    """Every page and data table (relative path -> text)."""
    files = [*folder.glob("*.md"), *folder.glob("tables/*.csv"), *folder.glob("tables/*.json")]
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(files)}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixture_pages")
    written = LB.render(FIXTURES, out, plots=False)
    assert not written.errors
    return out


# ----------------------------------------------------------------------------- golden
def test_pages_match_golden(rendered):
    got = _text_files(rendered)
    tasks = ["regression_rotated", "poisson_interface_2d", "burgers_1d", "allen_cahn_1d"]
    assert set(got) == {
        "README.md",
        *[f"{t}.md" for t in tasks],
        *[f"tables/{t}.{x}" for t in tasks for x in ("csv", "json")],
    }
    if os.environ.get("UPDATE_GOLDEN"):
        if GOLDEN.exists():
            shutil.rmtree(GOLDEN)
        for name, text in got.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(text)
        pytest.skip("golden files regenerated (UPDATE_GOLDEN=1)")
    want = _text_files(GOLDEN)
    assert set(got) == set(want), "rendered files differ from the golden set"
    for name in sorted(want):
        assert got[name] == want[name], (
            f"{name} differs from tests/fixtures/golden/{name}; if the change is intended, "
            "regenerate with UPDATE_GOLDEN=1"
        )


def test_render_is_deterministic(rendered, tmp_path):
    LB.render(FIXTURES, tmp_path, plots=False)
    assert _text_files(tmp_path) == _text_files(rendered)


def test_every_status_is_shown(rendered):
    text = (rendered / "regression_rotated.md").read_text()
    assert "1 failed" in text and "1 diverged" in text
    assert "`mcmlp_fine` seed 1234: failed: `ConfigError" in text
    assert re.search(r"`mlp_large` seed 1234: diverged at step \d+ \(level 0", text)
    readme = (rendered / "README.md").read_text()
    assert "| 10/0/1/1 |" in readme  # ok/collapsed/diverged/failed of regression_rotated


def test_collapsed_run_is_shown_and_not_averaged(rendered):
    """The fixture's collapsed run: marked in the table, out of mean and median, listed."""
    rec = Record.load(FIXTURES / "poisson_interface_2d" / "mcmlp_multilevel" / "seed1234.json")
    assert rec.diagnostics["collapsed"] and rec.diagnostics["outside_grid"][-1] == 1.0
    text = (rendered / "poisson_interface_2d.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `mcmlp_multilevel`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6] == "1 collapsed" and cells[7] == "-" and cells[8] == "-"
    assert cells[10].startswith("1234: collapsed (")
    assert "## Collapsed runs" in text
    data = json.loads((rendered / "tables" / "poisson_interface_2d.json").read_text())
    row_data = next(r for r in data["rows"] if r["row"] == "mcmlp_multilevel")
    assert row_data["runs"]["collapsed"] == 1 and row_data["metric"]["n"] == 0


def test_every_page_title_names_its_profile(rendered):
    for page in rendered.glob("*.md"):
        headings = [line for line in page.read_text().splitlines() if line.startswith("#")]
        top = [h for h in headings if h.startswith(("# ", "## "))]
        tables = [
            h
            for h in top
            if h.startswith(
                ("# ", "## Results", "## Work", "## Claims", "## Reproduction", "## Cross-task")
            )
        ]
        assert tables and all("profile `fixture`" in h for h in tables), (page.name, tables)


def test_table_aggregates_agree_with_the_records(rendered):
    """The CSV/JSON numbers, recomputed from the record files with the standard library."""
    folder = FIXTURES / "regression_rotated" / "kan_multilevel"
    raw = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*.json"))]
    values = [r["final_metrics"]["train_mse"] for r in raw]
    with open(rendered / "tables" / "regression_rotated.csv") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    row = rows["kan_multilevel"]
    assert float(row["train_mse_mean"]) == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert float(row["train_mse_sd"]) == pytest.approx(statistics.stdev(values), rel=1e-12)
    evaluations = [sum(h["evaluations"] for h in r["history"]) for r in raw]
    assert float(row["evaluations_median"]) == statistics.median(evaluations)
    assert float(row["work_median"]) == statistics.median(r["work"] for r in raw)
    data = json.loads((rendered / "tables" / "regression_rotated.json").read_text())
    jrow = next(r for r in data["rows"] if r["row"] == "kan_multilevel")
    assert [s["value"] for s in jrow["per_seed"]] == values
    assert data["profile"] == "fixture" and data["metric"] == "train_mse"


def test_rows_are_ordered_by_family_then_strategy(rendered):
    text = (rendered / "regression_rotated.md").read_text()
    rows = re.findall(r"^\| `([a-z_@0-9]+)` \| (?:KAN|MLP)", text, flags=re.M)
    assert rows == [
        "kan_coarse",
        "kan_fine",
        "kan_multilevel",
        "mcmlp_fine",
        "mcmlp_multilevel",
        "mlp_small",
        "mlp_large",
    ]


def test_shipped_pages_match_shipped_records(tmp_path):
    """Every shipped profile leaderboards/results/<p>/ renders exactly into leaderboards/<p>/
    (pages and CSV/JSON tables), and the index leaderboards/README.md matches them all."""
    results = SHIPPED / "results"
    profiles = LB.profile_folders(results)
    assert "quick" in profiles, "the shipped quick records are missing from leaderboards/results"
    written = LB.render_all(results, tmp_path, plots=False)
    assert not written.errors
    assert (tmp_path / "README.md").read_text() == (SHIPPED / "README.md").read_text(), (
        "leaderboards/README.md does not match the records; run `make leaderboard`"
    )
    for name in profiles:
        got, shipped = _text_files(tmp_path / name), _text_files(SHIPPED / name)
        assert set(got) == set(shipped), f"leaderboards/{name}/: {set(got) ^ set(shipped)}"
        for page in sorted(got):
            assert shipped[page] == got[page], (
                f"leaderboards/{name}/{page} does not match its records; run `make leaderboard`"
            )
    for page in sorted((tmp_path / "sensitivity").glob("*.md")):  # ablation profiles' pages
        assert page.read_text() == (SHIPPED / "sensitivity" / page.name).read_text(), (
            f"leaderboards/sensitivity/{page.name} does not match its records; "
            "run `make leaderboard`"
        )


def test_shipped_figures_exist_for_every_planned_figure():
    for name, folder in LB.profile_folders(SHIPPED / "results").items():
        for spec in figures.plan(LB.load_records(folder), name):
            for suffix in (".png", ".svg"):
                path = SHIPPED / name / "plots" / f"{spec.stem}{suffix}"
                assert path.exists(), f"{path} missing: run `make leaderboard`"


# ----------------------------------------------------------------------------- figures
@pytest.fixture
def small_figures(monkeypatch):
    monkeypatch.setattr(figures, "MAP_POINTS", 21)
    monkeypatch.setattr(figures, "SPECTRUM_GRID", (16, 6))
    monkeypatch.setattr(figures, "CURVE_POINTS", 40)
    monkeypatch.setattr(spectra, "CONDITION_NS", (4, 8, 16))


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path.name
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000 and height >= 600, (path.name, width, height)  # 200 dpi


def test_figures_are_written_with_svg_and_profile(tmp_path, small_figures, rendered):
    """One figure of every kind: PNG (200 dpi) + SVG, the profile in the title."""
    plan = {p.stem: p for p in figures.plan(LB.load_records(FIXTURES), "fixture")}
    for stem in (
        "poisson_interface_2d_convergence",
        "burgers_1d_solution",
        "allen_cahn_1d_residual_spectra",
        "performance_profile",
        "condition_growth",
    ):
        written = plan[stem].draw(tmp_path / f"{stem}.png")
        assert [p.name for p in written] == [f"{stem}.png", f"{stem}.svg"]
        _check_png(written[0])
        svg = written[1].read_text()
        assert "<svg" in svg and "Date" not in svg
        if plan[stem].task is not None or stem == "performance_profile":
            assert "profile fixture" in svg, stem
    svg = (tmp_path / "poisson_interface_2d_convergence.svg").read_text()
    assert "mcmlp_multilevel (collapsed)" in svg  # the collapsed seed is named, not averaged
    readme = (rendered / "README.md").read_text()
    for stem, spec in plan.items():  # every planned figure is linked from the summary page
        assert f"plots/{stem}.png" in readme
        if spec.task is not None:
            assert f"plots/{stem}.png" in (rendered / f"{spec.task}.md").read_text()


@pytest.mark.slow
def test_render_with_every_figure(tmp_path, small_figures):
    written = LB.render(FIXTURES, tmp_path, plots=True)
    assert not written.errors, written.errors
    plan = figures.plan(LB.load_records(FIXTURES), "fixture")
    assert len(plan) == 11
    for spec in plan:
        _check_png(tmp_path / "plots" / spec.filename)
        assert (tmp_path / "plots" / f"{spec.stem}.svg").exists()


def test_median_band_of_step_functions():
    """Two seeds as step functions on a common grid: median, min, max by hand."""
    import numpy as np

    a = [(0.0, 8.0), (1.0, 4.0), (2.0, 2.0)]  # value after 1 unit: 4, after 2: 2
    b = [(0.0, 6.0), (1.0, 5.0), (3.0, 1.0)]
    grid, med, lo, hi = figures.median_band([a, b], [2.0, 3.0])
    at = {round(float(x), 9): (m, l, h) for x, m, l, h in zip(grid, med, lo, hi)}
    assert at[1.0] == (4.5, 4.0, 5.0)
    x = grid[np.argmin(abs(grid - 1.5))]
    assert 1.0 < x < 2.0 and at[round(float(x), 9)] == (4.5, 4.0, 5.0)
    assert at[2.0] == (3.5, 2.0, 5.0)  # the band ends where seed a ended
    assert grid[-1] == pytest.approx(2.0)


def test_residual_spectrum_of_a_known_function():
    import numpy as np
    import torch

    class Task:
        name = "fake"

        def residual(self, model, x):  # r(x, t) = cos(3 pi x): one mode, m = 3
            return torch.cos(3 * math.pi * x[:, 0]) + 0 * model(x)[:, 0]

    model = torch.nn.Linear(2, 1).double()
    spec = figures.residual_spectrum(Task(), model, 32, 4)
    assert int(np.argmax(spec)) == 3
    assert spec[3] == pytest.approx(0.5, rel=1e-12)
    assert np.delete(spec, 3).max() < 1e-12


def test_perf_figure_is_grouped_and_readable(tmp_path):
    """The perf figure from a synthetic result: one panel per grid size, short labels."""
    from bench_mlkan.reporting.perf_figure import draw_perf

    layer = [
        {
            "dtype": dt,
            "degree": k,
            "grid_size": n,
            "widths": [p, p],
            "batch": b,
            "ratio": {"c": 0.1 * k, "autograd": 0.5, "mlp": 2.0, "cox_de_boor": 1.0, "auto": 0.1},
        }
        for dt in ("float32", "float64")
        for k in (1, 3)
        for n in (5, 80)
        for p in (2, 64)
        for b in (1024, 8192)
    ]
    fig3 = [
        {
            "degree": k,
            "grid_size": n,
            "median_s": {"kan": 0.01 * n, "cox_de_boor": 0.1 * n},
            "ratio": {"kan": 0.1, "cox_de_boor": 1.0},
        }
        for k in (1, 3)
        for n in (5, 10, 20)
    ]
    written = draw_perf(
        {"layer": layer, "fig3": fig3, "environment": {"device": "cpu"}}, tmp_path / "perf.png"
    )
    _check_png(written[0])
    svg = written[1].read_text()
    assert "KAN layer, grid n = 5" in svg and "KAN layer, grid n = 80" in svg
    assert svg.count("B 1024") == 4  # 2 shapes x 2 panels: one label per shape, not per row


def test_condition_numbers_match_the_paper():
    """METHOD.md section 2: n = 10: ~175 (k = 0), ~3e6 (k = 2); n = 100: ~6.5e11 (k = 2)."""
    assert spectra.condition_number(10, 0) == pytest.approx(175, rel=0.01)
    assert spectra.condition_number(10, 2) == pytest.approx(3e6, rel=0.02)
    assert spectra.condition_number(100, 2) == pytest.approx(6.5e11, rel=0.01)
    for k in range(4):  # growth like n^(2(k+1)) (pre-asymptotic: 7.6 for k = 3)
        slope = math.log(spectra.condition_number(128, k) / spectra.condition_number(64, k))
        assert abs(slope / math.log(2) - 2 * (k + 1)) < 0.5


# ----------------------------------------------------------------------------- command line
def test_cli_and_wandb_disabled(tmp_path, monkeypatch, capsys):
    from bench_mlkan.cli import COMMANDS, main

    assert COMMANDS["leaderboard"][0] == "bench_mlkan.reporting.cli"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rc = main(
        ["leaderboard", "--results", str(FIXTURES), "--out", str(tmp_path), "--no-plots", "--wandb"]
    )
    assert rc == 0
    assert "W&B disabled" in capsys.readouterr().out
    assert (tmp_path / "README.md").exists() and (tmp_path / "tables" / "burgers_1d.csv").exists()
    from bench_mlkan.reporting.cli import task_table_data

    cols, rows = task_table_data(FIXTURES)["regression_rotated"]
    assert cols[0] == "baseline" and all(len(r) == len(cols) for r in rows)


def test_empty_results(tmp_path):
    written = LB.render(tmp_path / "none", tmp_path / "out", plots=False)
    assert [p.name for p in written] == ["README.md"]
    assert "No run records yet" in (tmp_path / "out" / "README.md").read_text()


def test_profile_of_readings_gets_claims_per_reading(tmp_path):
    """An ablation-style profile (every row has a variant): one table of claims x readings,
    and no figure with more rows than stay readable."""
    from bench_mlkan.records import record_path, write_record

    folder = tmp_path / "abl"
    values = {
        "a": {
            "kan_multilevel": 1e-5,
            "kan_coarse": 1e-3,
            "kan_fine": 1e-3,
            "mcmlp_multilevel": 1e-3,
        },
        "b": {
            "kan_multilevel": 1e-3,
            "kan_coarse": 1e-3,
            "kan_fine": 1e-3,
            "mcmlp_multilevel": 1e-3,
        },
    }
    for variant, rows in values.items():
        for baseline, v in rows.items():
            for seed in (1, 2):
                rec = {
                    "task": "regression_rotated",
                    "baseline": baseline,
                    "variant": variant,
                    "seed": seed,
                    "status": "ok",
                    "profile": "abl",
                    "steps": 1,
                    "work": 1.0,
                    "final_metrics": {"train_mse": v * seed, "train_loss": v * seed},
                }
                write_record(
                    record_path(folder, "regression_rotated", f"{baseline}@{variant}", seed), rec
                )
    LB.render(folder, tmp_path / "out", plots=False)
    page = (tmp_path / "out" / "regression_rotated.md").read_text()
    assert "## Claims per reading, profile `abl`" in page
    a_row = next(line for line in page.splitlines() if line.startswith("| `a` |"))
    b_row = next(line for line in page.splitlines() if line.startswith("| `b` |"))
    assert a_row.split("|")[3].strip().startswith("holds (n.s.)")  # [5.1b]: 100x, 2 seeds
    assert b_row.split("|")[3].strip().startswith("fails (n.s.)")
    rows = [f"r{i}@v{i}" for i in range(figures.MAX_FIGURE_ROWS + 1)]
    assert figures.figure_rows(rows) == []
    assert figures.figure_rows(["kan_coarse", "kan_coarse@x"]) == ["kan_coarse"]
    assert figures.figure_rows(rows[:3]) == rows[:3]


def test_tuned_page_sets_tuned_rows_beside_untuned():
    from bench_mlkan.reporting.pages import render_cross_task
    from bench_mlkan.reporting.render import load_records
    from bench_mlkan.reporting.tuned import merged, render_tuned
    from bench_mlkan.scoring.claims import load_paper

    untuned = load_records(FIXTURES)
    tuned = {"burgers_1d": {"kan_multilevel": untuned["burgers_1d"]["kan_multilevel"]}}
    board = merged(untuned, tuned)
    assert set(board) == set(untuned) and board["burgers_1d"]["kan_fine"]
    studies = {("kan_multilevel", "burgers_1d"): {"trials": {"complete": 3}, "metric_value": 0.1}}
    page = render_tuned(untuned, tuned, load_paper(), ("q", "t"), studies, render_cross_task)
    row = next(x for x in page.splitlines() if x.startswith("| `kan_multilevel`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "1x" and cells[7] == "3" and cells[8] == "1.00e-1"
    assert "| `kan_fine` |" in page and "not tuned" in page
    assert "## Cross-task score, tuned board" in page


def test_studies_index_lists_every_tuned_config():
    from bench_mlkan.reporting.tuned import studies_index

    cfg = {
        "study": "kan_multilevel.poisson_2d.w7500",
        "work_budget": 7500.0,
        "trials": {"complete": 3, "pruned": 1, "failed": 0},
        "metric": "log10 rel_l2",
        "metric_value": 0.0123,
        "stripped": {"task_options.size": "small"},
    }
    page = studies_index({("kan_multilevel", "poisson_2d"): cfg})
    assert "| `poisson_2d` | `kan_multilevel` | [`kan_multilevel.poisson_2d.w7500`]" in page
    assert "| 7500 | task_options.size=small | 3/1/0 | rel_l2 = 1.23e-2 |" in page
