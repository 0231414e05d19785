"""Leaderboards: golden tables from fixture records, the shipped tables match the shipped
records, plots are drawn, and the scoring/claim arithmetic on hand-made inputs.

The fixture records under ``tests/fixtures/records`` were produced once by the real engine
(``tests/fixtures/make_records.py``); they include a diverged and a failed run. Regenerate
the golden files only deliberately: ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_leaderboard.py``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402

from bench_mlkan import leaderboard as LB  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "records"
GOLDEN = HERE / "fixtures" / "golden"
SHIPPED = HERE.parent / "leaderboards"


def _md_files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.md"))}


# ----------------------------------------------------------------------------- golden
def test_tables_match_golden(tmp_path):
    written = LB.render(FIXTURES, tmp_path, plots=False)
    assert not written.errors
    got = _md_files(tmp_path)
    assert set(got) == {
        "README.md",
        "regression_rotated.md",
        "burgers_1d.md",
        "poisson_interface_2d.md",
        "allen_cahn_1d.md",
    }
    if os.environ.get("UPDATE_GOLDEN"):
        if GOLDEN.exists():
            shutil.rmtree(GOLDEN)
        GOLDEN.mkdir(parents=True)
        for name, text in got.items():
            (GOLDEN / name).write_text(text)
        pytest.skip("golden files regenerated (UPDATE_GOLDEN=1)")
    want = _md_files(GOLDEN)
    assert set(got) == set(want), "rendered files differ from the golden set"
    for name in sorted(want):
        assert got[name] == want[name], (
            f"{name} differs from tests/fixtures/golden/{name}; if the change is intended, "
            "regenerate with UPDATE_GOLDEN=1"
        )


def test_render_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    LB.render(FIXTURES, a, plots=False)
    LB.render(FIXTURES, b, plots=False)
    assert _md_files(a) == _md_files(b)


def test_failed_and_diverged_runs_are_listed(tmp_path):
    LB.render(FIXTURES, tmp_path, plots=False)
    text = (tmp_path / "regression_rotated.md").read_text()
    assert "1 failed" in text and "1 diverged" in text
    assert "`mcmlp_fine` seed 1234: failed" in text
    assert "`mlp_large` seed 1234: diverged at step" in text
    readme = (tmp_path / "README.md").read_text()
    assert "10/1/1" in readme  # ok/diverged/failed counts of regression_rotated


def test_shipped_tables_match_shipped_records(tmp_path):
    """Every shipped profile leaderboards/results/<p>/ renders exactly into leaderboards/<p>/,
    and the index leaderboards/README.md matches them all."""
    results = SHIPPED / "results"
    profiles = LB.profile_folders(results)
    assert "quick" in profiles, "the shipped quick records are missing from leaderboards/results"
    written = LB.render_all(results, tmp_path, plots=False)
    assert not written.errors
    assert (tmp_path / "README.md").read_text() == (SHIPPED / "README.md").read_text(), (
        "leaderboards/README.md does not match the records; run `make leaderboard`"
    )
    for name in profiles:
        got, shipped = _md_files(tmp_path / name), _md_files(SHIPPED / name)
        assert set(got) == set(shipped), f"leaderboards/{name}/: {set(got) ^ set(shipped)}"
        for page in sorted(got):
            assert shipped[page] == got[page], (
                f"leaderboards/{name}/{page} does not match its records; run `make leaderboard`"
            )


# ----------------------------------------------------------------------------- plots
@pytest.fixture
def small_plots(monkeypatch):
    from bench_mlkan import plots as P

    monkeypatch.setattr(P, "MAP_POINTS", 21)
    monkeypatch.setattr(P, "SPECTRUM_GRID", (16, 6))
    monkeypatch.setattr(P, "CONDITION_NS", (4, 8, 16))
    return P


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path.name


def test_plots_are_written(tmp_path, small_plots):
    """One plot of every kind (the full set is the slow test below)."""
    P = small_plots
    records = LB.load_records(FIXTURES)
    plan = {p.filename: p for p in P.plan(records, FIXTURES)}
    for name in (
        "regression_rotated_convergence.png",
        "burgers_1d_solution.png",
        "allen_cahn_1d_residual_spectra.png",
        "performance_profile.png",
        "ata_spectra.png",
        "condition_growth.png",
    ):
        plan[name].draw(tmp_path / name)
        _check_png(tmp_path / name)
    LB.render(FIXTURES, tmp_path, plots=False)
    readme = (tmp_path / "README.md").read_text()
    for name, spec in plan.items():  # every planned plot is linked from the summary page
        assert f"plots/{name}" in readme
        if spec.task is not None:
            assert f"plots/{name}" in (tmp_path / f"{spec.task}.md").read_text()


@pytest.mark.slow
def test_render_with_every_plot(tmp_path, small_plots):
    written = LB.render(FIXTURES, tmp_path, plots=True)
    assert not written.errors, written.errors
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == len(small_plots.plan(LB.load_records(FIXTURES), FIXTURES)) == 11
    for png in pngs:
        _check_png(png)


def test_residual_spectrum_of_a_known_function():
    """The spectrum code on u = sin(pi x) * 0 + ...: use a model whose residual is known."""
    import numpy as np
    import torch

    from bench_mlkan import plots as P

    class Task:
        name = "fake"

        def residual(self, model, x):  # r(x, t) = cos(3 pi x): one mode, m = 3
            return torch.cos(3 * math.pi * x[:, 0]) + 0 * model(x)[:, 0]

    model = torch.nn.Linear(2, 1).double()
    spec = P.residual_spectrum(Task(), model, 32, 4)
    assert int(np.argmax(spec)) == 3
    assert spec[3] == pytest.approx(0.5, rel=1e-12)
    assert np.delete(spec, 3).max() < 1e-12


# ----------------------------------------------------------------------------- maths
def test_condition_numbers_match_the_paper():
    """METHOD.md section 2: n = 10: ~175 (k = 0), ~3e6 (k = 2); n = 100: ~6.5e11 (k = 2)."""
    from bench_mlkan import plots as P

    assert P.condition_number(10, 0) == pytest.approx(175, rel=0.01)
    assert P.condition_number(10, 2) == pytest.approx(3e6, rel=0.02)
    assert P.condition_number(100, 2) == pytest.approx(6.5e11, rel=0.01)
    # growth like n^(2(k+1)) (pre-asymptotic at n = 64..128: 7.6 for k = 3)
    for k in range(4):
        slope = math.log(P.condition_number(128, k) / P.condition_number(64, k)) / math.log(2)
        assert abs(slope - 2 * (k + 1)) < 0.5


def test_formatting():
    assert LB.fmt_sci(3.67e-5) == "3.67e-5"
    assert LB.fmt_sci(1.35) == "1.35e0"
    assert LB.fmt_sci(0.0) == "0"
    assert LB.fmt_sci(None) == "-"
    assert LB.fmt_sci(float("inf")) == "inf"
    assert LB.fmt_sci(1.740e-3, 4) == "1.740e-3"
    assert LB.fmt_work(128.0) == "128"
    assert LB.fmt_work(12.5) == "12.5"
    assert LB.mean_sd([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert LB.mean_sd([1.0]) == (1.0, None)
    assert LB.median([1.0, math.inf, 3.0]) == 3.0
    assert LB.median([1.0, math.inf]) == math.inf


def _record(seed, status="ok", losses=(1.0, 0.1, 0.01), final=None, works=None):
    works = works or [float(i + 1) for i in range(len(losses))]
    hist = [
        {"step": i, "level": 0, "work": w, "work_macs": 10 * w, "loss": l}
        for i, (w, l) in enumerate(zip(works, losses))
    ]
    return {
        "seed": seed,
        "status": status,
        "history": hist,
        "eval_history": [],
        "final_metrics": {"train_loss": final, "train_mse": final} if status == "ok" else {},
        "work": works[-1],
        "work_macs": 10 * works[-1],
    }


def test_time_to_target_from_the_history():
    spec = LB.MetricSpec("train_mse", "train MSE", target=0.05, source="loss")
    # loss before step 2 is 0.01, reached after the work of step 1 (2.0); MACs 20
    rec = _record(1, losses=(1.0, 0.5, 0.01), final=0.001)
    assert LB.time_to_target(rec, spec, "work") == 2.0
    assert LB.time_to_target(rec, spec, "work_macs") == 20.0
    # only the final loss reaches it: the total work
    rec = _record(1, losses=(1.0, 0.5, 0.2), final=0.01)
    assert LB.time_to_target(rec, spec, "work") == 3.0
    assert LB.time_to_target(_record(1, status="failed"), spec) == math.inf
    # thinned history: steps 0 and 10 kept, 1 work per step
    rec = _record(1, losses=(1.0, 0.01), final=0.001, works=[1.0, 11.0])
    rec["history"][1]["step"] = 10
    assert LB.time_to_target(rec, spec, "work") == 10.0


def test_profile_and_score():
    ct = LB.CrossTask(
        tasks=["a", "b"],
        baselines=["x", "y", "z"],
        time={("a", "x"): 1.0, ("a", "y"): 2.0, ("b", "x"): 8.0, ("b", "y"): 4.0},
        reached={},
        quality={},
        specs={},
    )
    prof = ct.profile(ct.time, [1.0, 2.0, 4.0])
    assert prof["x"] == [0.5, 1.0, 1.0]
    assert prof["y"] == [0.5, 1.0, 1.0]
    assert prof["z"] == [0.0, 0.0, 0.0]
    score = ct.score(ct.time, 4.0)
    assert score["x"] == pytest.approx((1.0 + 0.5) / 2)
    assert score["y"] == pytest.approx((0.5 + 1.0) / 2)
    assert score["z"] == 0.0


def test_claims_verdicts():
    paper = LB.load_paper()
    spec = LB.metric_spec("regression_rotated", "regression")

    def row(name, values):
        recs = [
            {"seed": i, "status": "ok", "final_metrics": {"train_mse": v}, "config": {}}
            for i, v in enumerate(values)
        ]
        return LB.Row(name, recs, spec)

    rows = {
        "kan_multilevel": row("kan_multilevel", [5e-5, 7e-5]),
        "kan_coarse": row("kan_coarse", [1e-3]),
        "kan_fine": row("kan_fine", [2e-3]),
        "mcmlp_multilevel": row("mcmlp_multilevel", [1e-4]),
    }
    near, lower = [c for c in paper["claims"] if c["task"] == "regression_rotated"][:2]
    assert LB.check_claim(near, rows, paper).verdict == "reproduced"  # 6e-5 <= 3 * 3.67e-5
    res = LB.check_claim(lower, rows, paper)
    assert res.verdict == "not reproduced"  # mcmlp only 1.67x higher
    assert "short by a factor 6" in res.detail
    rows["mcmlp_multilevel"] = row("mcmlp_multilevel", [1e-2])
    assert LB.check_claim(lower, rows, paper).verdict == "reproduced"
    del rows["kan_multilevel"]
    assert LB.check_claim(lower, rows, paper).verdict == "not measured"


def test_paper_results_transcription():
    """paper_results.json carries METHOD.md's tables 5.1 and 5.3 exactly."""
    paper = LB.load_paper()
    reg = paper["tasks"]["regression_rotated"]["rows"]
    assert reg["kan_multilevel"]["mean"] == 3.67e-5 and reg["kan_multilevel"]["sd"] == 7.19e-5
    assert reg["mcmlp_fine"]["mean"] == 1.35 and reg["mlp_large"]["params"] == 500
    assert len(reg) == 9
    burgers = paper["tasks"]["burgers_1d"]["rows"]
    assert burgers["kan_multilevel"]["mean"] == 2.402e-5
    assert burgers["mlp_medium"]["params"] == 3416
    assert len(burgers) == 5
    from bench_mlkan.baselines import BASELINES

    for task in paper["tasks"].values():
        assert set(task["rows"]) <= set(BASELINES)


def test_cli_and_wandb_disabled(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rc = LB.leaderboard_main(
        ["--results", str(FIXTURES), "--out", str(tmp_path), "--no-plots", "--wandb"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "W&B disabled" in out
    assert (tmp_path / "README.md").exists()
    data = LB.task_table_data(LB.load_records(FIXTURES), LB.load_paper())
    cols, rows = data["regression_rotated"]
    assert cols[0] == "baseline" and all(len(r) == len(cols) for r in rows)


def test_empty_results(tmp_path):
    written = LB.render(tmp_path / "none", tmp_path / "out", plots=False)
    assert [p.name for p in written] == ["README.md"]
    assert "No run records yet" in (tmp_path / "out" / "README.md").read_text()
