"""Scoring on hand-made records: the typed Record (work fields derived from a history),
collapse detection, per-row aggregates against the standard library, trajectories and
budgets by hand, time-to-target, performance profiles, and the paper's claims against
scipy's Mann-Whitney test and hand-computed geometric-mean ratios."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench_mlkan.records import Record
from bench_mlkan.scoring import claims as C
from bench_mlkan.scoring.aggregate import aggregate_row, aggregate_task, collapse_state
from bench_mlkan.scoring.metadata import baseline_info, row_order, task_info, task_order
from bench_mlkan.scoring.profiles import CrossTask, cross_task
from bench_mlkan.scoring.trajectory import (
    best_so_far,
    loss_trajectory,
    metric_at,
    time_to_target,
)

ROOT = Path(__file__).resolve().parent.parent


def record(
    seed=1,
    status="ok",
    losses=(1.0, 0.1, 0.01),
    final=0.001,
    works=None,
    evals=None,
    task="regression_rotated",
    baseline="kan_multilevel",
    optimizer="lbfgs",
    **extra,
):
    """A record whose step i costs works[i] - works[i-1] coarse steps and makes evals[i]
    evaluations; the loss before step i is losses[i]; ``final`` is the metric at the end."""
    works = works or [float(i + 1) for i in range(len(losses))]
    evals = evals or [1] * len(losses)
    hist = [
        {"step": i, "level": 0, "work": w, "work_macs": 10 * w, "loss": loss, "evaluations": e}
        for i, (w, loss, e) in enumerate(zip(works, losses, evals))
    ]
    metric = task_info(task).metric
    return Record.from_dict(
        {
            "task": task,
            "baseline": baseline,
            "seed": seed,
            "status": status,
            "config": {"optimizer": optimizer, "optimizer_options": {"max_iter": 20}},
            "history": hist,
            "steps": len(hist),
            "work": works[-1],
            "work_macs": 10 * works[-1],
            "final_metrics": {"train_loss": final, metric: final} if status == "ok" else {},
            **extra,
        }
    )


# ----------------------------------------------------------------------------- records
def test_record_derives_work_from_a_complete_history():
    # three L-BFGS steps: 21, 1 (idle: returned at once), 3 evaluations; costs 1, 1, 2
    r = record(evals=[21, 1, 3], works=[1.0, 2.0, 4.0])
    assert r.evaluations == 25 and r.idle_steps == 1
    assert r.work_evaluations == 21 * 1 + 1 * 1 + 3 * 2
    assert r.derived == {"evaluations", "idle_steps", "work_evaluations", "level_stats"}
    assert [h["work_evaluations"] for h in r.history] == [21, 22, 28]
    assert r.level_stats[0].steps == 3 and r.level_stats[0].evaluations == 25
    # Adam writes the parameters at every step: never idle
    assert record(evals=[1, 1, 1], optimizer="adam").idle_steps == 0
    # a thinned history (fewer rows than steps) does not allow it
    thin = Record.from_dict({**_raw(record()), "steps": 10})
    assert thin.evaluations is None and thin.work_evaluations is None and not thin.derived


def _raw(r: Record) -> dict:
    return {
        "task": r.task,
        "baseline": r.baseline,
        "seed": r.seed,
        "status": r.status,
        "config": dict(r.config),
        "history": [dict(h) for h in r.history],
        "steps": r.steps,
        "work": r.work,
    }


def test_recorded_work_fields_win_over_the_history():
    r = record(
        evaluations=7,
        idle_steps=0,
        work_evaluations=9.0,
        level_stats={"0": {"steps": 3, "evaluations": 7, "idle_steps": 0, "wall_clock": 1.5}},
    )
    assert (r.evaluations, r.idle_steps, r.work_evaluations) == (7, 0, 9.0)
    assert r.level_stats[0].wall_clock == 1.5 and not r.derived


def test_record_load_reads_a_fixture():
    path = ROOT / "tests/fixtures/records/regression_rotated/kan_coarse/seed1234.json"
    r = Record.load(path)
    assert r.row == "kan_coarse" and r.path == path and r.weights_path == path.with_suffix(".pt")
    assert r.evaluations == sum(h["evaluations"] for h in r.history) and not r.derived


def test_collapse_detection():
    assert collapse_state(record()) is None  # no diagnostics: not checked
    assert collapse_state(record(diagnostics={"collapsed": True, "outside_grid": [0.0]}))
    dead = {"collapsed": False, "outside_grid": [0.0, 1.0]}  # last spline layer dead
    assert collapse_state(record(diagnostics=dead))
    alive = {"collapsed": False, "outside_grid": [1.0, 0.3]}  # an earlier layer only
    assert collapse_state(record(diagnostics=alive)) is False
    assert collapse_state(record(diagnostics={"collapsed": False, "outside_grid": []})) is False


# ----------------------------------------------------------------------------- aggregates
def test_row_aggregate_against_the_standard_library():
    finals = [3e-3, 1e-3, 2e-3]
    recs = [record(seed=s, final=v, evals=[2, 3, 4]) for s, v in zip((3, 1, 2), finals)]
    recs.append(record(seed=4, final=1e-9, evals=[2, 3, 4], diagnostics={"collapsed": True}))
    recs.append(record(seed=5, status="diverged"))
    recs.append(
        Record.from_dict(
            {
                "task": "regression_rotated",
                "baseline": "kan_multilevel",
                "seed": 6,
                "status": "failed",
            }
        )
    )
    agg = aggregate_row("kan_multilevel", recs, task_info("regression_rotated"))
    assert [s.seed for s in agg.seeds] == [1, 2, 3, 4, 5, 6]
    assert [s.status for s in agg.seeds] == ["ok", "ok", "ok", "collapsed", "diverged", "failed"]
    assert agg.counts == {"ok": 3, "collapsed": 1, "diverged": 1, "failed": 1}
    assert agg.metric.mean == pytest.approx(statistics.fmean(finals), rel=1e-15)
    assert agg.metric.sd == pytest.approx(statistics.stdev(finals), rel=1e-14)
    assert agg.metric.median == statistics.median(finals) and agg.metric.n == 3
    # work of the runs that trained (collapsed included): 4 ok runs, 9 evaluations each
    assert agg.work["evaluations"].lo == agg.work["evaluations"].hi == 9
    assert agg.work["steps"].n == 4


def test_task_and_row_order_come_from_metadata():
    from bench_mlkan.tasks import TASKS

    order = task_order(TASKS)
    with_section = [t for t in order if task_info(t).paper_section]
    assert order[: len(with_section)] == with_section
    assert [task_info(t).section_key for t in with_section] == sorted(
        task_info(t).section_key for t in with_section
    )
    assert order[len(with_section) :] == sorted(order[len(with_section) :])
    rows = [
        "mlp_large",
        "fastkan",
        "mcmlp_fine",
        "kan_multilevel@x",
        "kan_coarse",
        "zz_mine",
        "mlp_small",
        "kan_multilevel",
        "mlp_medium",
    ]
    params = {"mlp_small": 20, "mlp_medium": 120, "mlp_large": 500}
    assert row_order(rows, params) == [
        "kan_coarse",
        "kan_multilevel",
        "kan_multilevel@x",
        "mcmlp_fine",
        "mlp_small",
        "mlp_medium",
        "mlp_large",
        "fastkan",
        "zz_mine",
    ]
    assert baseline_info("zz_mine").family == "unknown"
    assert baseline_info("kan_multilevel@x").strategy == "multilevel"


def test_a_user_task_is_ranked_by_its_own_metric():
    """function_regression ranks by test_mse (its metadata), not by a per-task list."""
    info = task_info("function_regression")
    assert info.metric == "test_mse"
    rows = aggregate_task(
        "function_regression",
        {"mlp_small": [record(task="function_regression", baseline="mlp_small", final=0.25)]},
    )
    assert rows[0].metric.mean == 0.25
    assert task_info("not_registered").metric == "rel_l2"  # the contract's default


def test_no_task_or_model_names_in_the_scoring_and_reporting_code():
    from bench_mlkan.tasks import TASKS

    for folder in ("scoring", "reporting"):
        for path in (ROOT / "bench_mlkan" / folder).glob("*.py"):
            text = path.read_text()
            for name in TASKS:
                assert f'"{name}"' not in text, (path.name, name)
            assert not re.search(r"""model["')\]]*\s*==\s*["']mlp""", text), path.name


# ----------------------------------------------------------------------------- trajectories
def test_metric_at_budgets_by_hand():
    info = task_info("regression_rotated")  # ranked by the training loss of every step
    r = record(losses=(1.0, 0.5, 0.2), final=0.1, works=[1.0, 2.0, 4.0], evals=[3, 5, 1])
    # the loss before step i was reached with the work of step i-1
    assert loss_trajectory(r, "work") == [(0.0, 1.0), (1.0, 0.5), (2.0, 0.2), (4.0, 0.1)]
    assert metric_at(r, info, "work", 3.0) == 0.2
    assert metric_at(r, info, "work", 4.0) == 0.1
    assert metric_at(r, info, "work", 5.0) is None  # past the end of a finished run
    # evaluations: 3 (cost 1), 5 (cost 1), 1 (cost 2) -> cumulative 3, 8, 10
    assert metric_at(r, info, "work_evaluations", 8.0) == 0.2
    assert metric_at(r, info, "work_evaluations", 7.9) == 0.5
    div = record(status="diverged", works=[1.0, 2.0, 3.0])
    assert metric_at(div, info, "work", 10.0) == math.inf


def test_best_so_far_beside_the_final_metric():
    info = task_info("regression_rotated")  # the training loss of every step
    ended_worse = [record(seed=s, losses=(1.0, 1e-4, 0.5), final=0.2) for s in (1, 2)]
    assert best_so_far(ended_worse[0], info) == 1e-4
    agg = aggregate_row("kan_multilevel", ended_worse, info)
    assert agg.metric.mean == 0.2 and agg.best.mean == 1e-4
    pinn = task_info("poisson_2d")  # rel. L2 at the evaluations and the end
    evals = [
        {"step": 1, "work": 1.0, pinn.metric: 1e-3},
        {"step": 2, "work": 2.0, pinn.metric: 0.3},
    ]
    r = record(task="poisson_2d", final=0.02, eval_history=evals)
    assert best_so_far(r, pinn) == 1e-3
    shifted = record(losses=(1.0, -5.0, 0.5), final=0.2)  # step 1: a V-cycle coarse step
    shifted.history[1]["loss/mgopt_shift"] = -5.5
    assert best_so_far(shifted, info) == 0.2
    assert [v for _, v in loss_trajectory(shifted, "work")] == [1.0, 0.5, 0.2]


def test_time_to_target_from_the_history():
    info = task_info("regression_rotated")
    assert info.target == 1e-3 and info.target_source == "loss"
    r = record(losses=(1.0, 0.5, 1e-4), final=1e-5)
    assert time_to_target(r, info, "work") == 2.0 and time_to_target(r, info) == 20.0
    assert time_to_target(record(losses=(1.0, 0.5, 0.2), final=1e-4), info, "work") == 3.0
    assert time_to_target(record(status="diverged"), info) == math.inf


def test_profile_and_score():
    ct = CrossTask(
        tasks=["a", "b"],
        rows=["x", "y", "z"],
        time={("a", "x"): 1.0, ("a", "y"): 2.0, ("b", "x"): 8.0, ("b", "y"): 4.0},
        reached={},
        quality={},
        infos={},
    )
    prof = ct.profile(ct.time, [1.0, 2.0, 4.0])
    assert prof == {"x": [0.5, 1.0, 1.0], "y": [0.5, 1.0, 1.0], "z": [0.0, 0.0, 0.0]}
    score = ct.score(ct.time, 4.0)
    assert score["x"] == pytest.approx((1.0 + 0.5) / 2) and score["z"] == 0.0


def test_collapsed_seeds_rank_last_in_the_cross_task_score():
    ok = record(seed=1, losses=(1.0, 1e-4), final=1e-5)
    gone = record(
        seed=1, losses=(1.0, 1e-4), final=1e-6, baseline="kan_fine", diagnostics={"collapsed": True}
    )
    ct = cross_task({"regression_rotated": {"kan_multilevel": [ok], "kan_fine": [gone]}})
    assert ct.quality["regression_rotated", "kan_fine"] == math.inf
    assert ct.time["regression_rotated", "kan_fine"] == math.inf
    assert ct.quality["regression_rotated", "kan_multilevel"] == 1e-5


# ----------------------------------------------------------------------------- claims
def _rows(**values):
    """{row: [records]} with the given final metrics per seed (inf: diverged)."""
    return {
        row: [
            record(seed=i, baseline=row, final=v)
            if math.isfinite(v)
            else record(seed=i, baseline=row, status="diverged")
            for i, v in enumerate(vs)
        ]
        for row, vs in values.items()
    }


def test_lower_by_claim_matches_scipy_and_hand_ratios():
    claim = C.Claim(
        "t",
        "regression_rotated",
        "lower_by",
        "kan_multilevel",
        "text",
        ("kan_coarse",),
        factor=10.0,
    )
    a, b = [1e-5, 2e-5, 4e-5, 3e-5], [1e-3, 3e-3, 2e-3, 4e-3]
    check = C.check_claim(claim, _rows(kan_multilevel=a, kan_coarse=b), C.load_paper())
    e = check.pairs[0].at_steps
    ratio = math.exp(np.mean(np.log(b)) - np.mean(np.log(a)))
    p = sps.mannwhitneyu(np.log(a) + math.log(10), np.log(b), alternative="less").pvalue
    assert e.comparison.ratio == pytest.approx(ratio, rel=1e-12)
    assert e.comparison.p_value == pytest.approx(p, rel=1e-12)
    assert e.recorded_end and e.budget == 3.0
    assert p == pytest.approx(1 / math.comb(8, 4))  # fully separated: the smallest p
    assert C.min_p_value(4, 4) == pytest.approx(p) and e.can_be_significant
    assert check.verdict == "holds"  # ratio ~ 100 >= 10 and p = 1/70 < 0.05
    assert (
        not C.check_claim(claim, _rows(kan_multilevel=a[:3], kan_coarse=b[:3]), C.load_paper())
        .pairs[0]
        .at_steps.can_be_significant
    )  # 1/20
    # with two seeds each the test cannot reach 0.05, whatever the values
    two = C.check_claim(claim, _rows(kan_multilevel=a[:2], kan_coarse=b[:2]), C.load_paper())
    assert two.verdict == "holds (n.s.)" and not two.pairs[0].at_steps.can_be_significant
    assert C.min_p_value(2, 2) == pytest.approx(
        sps.mannwhitneyu([1, 2], [3, 4], alternative="less").pvalue
    )


def test_claim_at_equal_evaluations_differs_from_equal_steps():
    """Equal coarse steps, but the subject used 10x the evaluations: at the other's total
    of evaluations the subject had only reached its first loss."""
    info = "regression_rotated"
    sub = [
        record(seed=s, task=info, losses=(1.0, 0.5, 1e-4), final=1e-5, evals=[10, 10, 10])
        for s in (1, 2)
    ]
    oth = [
        record(seed=s, baseline="kan_coarse", losses=(1.0, 0.3, 0.2), final=1e-2, evals=[1, 1, 1])
        for s in (1, 2)
    ]
    claim = C.Claim("t", info, "lower_by", "kan_multilevel", "text", ("kan_coarse",), 10.0)
    check = C.check_claim(claim, {"kan_multilevel": sub, "kan_coarse": oth}, C.load_paper())
    pair = check.pairs[0]
    assert pair.at_steps.comparison.ratio == pytest.approx(1e3)  # 1e-2 / 1e-5
    assert pair.evaluations_ratio == pytest.approx(0.1)
    ev = pair.at_evaluations
    assert ev.budget == 3.0 and not ev.recorded_end  # the other's 3 evaluations
    assert ev.subject.values == (1.0, 1.0) and ev.other.values == (1e-2, 1e-2)
    assert ev.verdict.startswith("fails") and check.verdict_evaluations.startswith("fails")
    assert check.verdict == "holds (n.s.)"


def test_near_paper_above_and_no_gain():
    paper = C.load_paper()
    claims = {c.id: c for c in C.paper_claims(paper, "regression_rotated")}
    near = C.check_claim(claims["5.1a"], _rows(kan_multilevel=[5e-5, 7e-5]), paper)
    assert near.verdict == "holds" and near.ratio == pytest.approx(6e-5 / 3.67e-5)
    far = C.check_claim(claims["5.1a"], _rows(kan_multilevel=[1e-6, 2e-6]), paper)
    assert far.verdict == "fails"  # 25x below the paper's number is not "within 3x"
    above = C.check_claim(claims["5.1d"], _rows(mcmlp_fine=[1.2, 0.05, 1.4]), paper)
    assert above.verdict == "holds" and above.seeds_meeting == (2, 3)
    same = _rows(mcmlp_multilevel=[1e-2, 1.1e-2, 0.9e-2], mcmlp_coarse=[1.1e-2, 1e-2, 1.2e-2])
    assert C.check_claim(claims["5.1e"], same, paper).verdict.startswith("holds")
    gain = _rows(
        mcmlp_multilevel=[1e-4, 1.1e-4, 0.9e-4, 1.2e-4], mcmlp_coarse=[1e-2, 1.1e-2, 1.2e-2, 0.9e-2]
    )
    assert C.check_claim(claims["5.1e"], gain, paper).verdict == "fails"


def test_diverged_and_missing_rows_in_claims():
    paper = C.load_paper()
    claim = next(c for c in C.paper_claims(paper) if c.id == "5.1c")  # every MLP
    rows = _rows(kan_multilevel=[1e-5, 2e-5], mlp_small=[1e-2, 2e-2], mlp_large=[math.inf])
    check = C.check_claim(claim, rows, paper)
    large = next(p for p in check.pairs if p.other == "mlp_large")
    assert large.at_steps.other.values == (math.inf,)  # diverged: worst rank, counted
    assert next(p for p in check.pairs if p.other == "mlp_medium").verdict == "not measured"
    assert check.verdict == "partly measured"
    assert C.check_claim(claim, {}, paper).verdict == "not measured"


def test_paper_results_transcription():
    """paper_results.json carries METHOD.md's tables 5.1 and 5.3 exactly; every claim
    names rows of its task and a known kind."""
    paper = C.load_paper()
    reg = paper["tasks"]["regression_rotated"]["rows"]
    assert reg["kan_multilevel"]["mean"] == 3.67e-5 and reg["kan_multilevel"]["sd"] == 7.19e-5
    assert reg["mcmlp_fine"]["mean"] == 1.35 and reg["mlp_large"]["params"] == 500
    burgers = paper["tasks"]["burgers_1d"]["rows"]
    assert burgers["kan_multilevel"]["mean"] == 2.402e-5 and len(burgers) == 5
    from bench_mlkan.baselines import BASELINES

    ids = [c.id for c in C.paper_claims(paper)]
    assert len(ids) == len(set(ids))
    for c in C.paper_claims(paper):
        assert c.kind in ("near_paper", "lower_by", "no_gain", "above")
        assert {c.subject, *c.against} <= set(BASELINES)
        assert c.task in paper["tasks"]


def test_budgets_a_few_whole_steps_apart_count_as_one():
    """7496 vs 7500 coarse steps (whole-step rounding of a split budget) is one budget, the
    runs' ends; 118 vs 128 is not (the smaller total, read along the trajectories)."""
    a = [record(seed=s, works=[1.0, 3000.0, 7496.0]) for s in (1, 2)]
    b = [record(seed=s, works=[1.0, 3000.0, 7500.0]) for s in (1, 2)]
    assert C.common_budget([a, b], "work") == (7496.0, True)
    c = [record(seed=s, works=[1.0, 60.0, 118.0]) for s in (1, 2)]
    d = [record(seed=s, works=[1.0, 60.0, 128.0]) for s in (1, 2)]
    assert C.common_budget([c, d], "work") == (118.0, False)
    assert C.BUDGET_RTOL == pytest.approx(0.01)
