"""The ablation tooling: seed statistics, outside-grid continuations, ReLU-basis init,
named regression targets, the ablation profile and the sensitivity page.

References are independent: scipy's BSpline (extrapolation, basis elements), numpy sums
of power-ReLUs, exact rank-test p-values enumerated by hand, scipy.stats.bootstrap.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from scipy.interpolate import BSpline

from bench_mlkan import stats
from bench_mlkan.models import KAN, MultichannelMLP
from bench_mlkan.sensitivity import (
    CLAIMS,
    Reading,
    Run,
    collect,
    evaluate_claim,
    load_readings,
    render_page,
)
from bench_mlkan.splines import change_of_basis
from bench_mlkan.tasks import TASKS
from bench_mlkan.tasks.regression import REGRESSION_TARGETS


# ----------------------------------------------------------------------------- stats
def exact_mwu_less(a, b) -> float:
    """P(U_a <= u_obs) under H0 by enumerating every split of the pooled ranks (no ties)."""
    pooled = sorted(a + b)
    rank = {v: i + 1 for i, v in enumerate(pooled)}
    obs = sum(rank[v] for v in a)
    n = len(a)
    sums = [sum(c) for c in itertools.combinations(range(1, len(pooled) + 1), n)]
    return sum(s <= obs for s in sums) / len(sums)


def test_rank_test_matches_enumeration():
    a = [1e-5, 3e-5, 2e-4, 7e-6, 5e-5]
    b = [4e-4, 1e-3, 2.5e-5, 6e-3, 9e-4]
    # factor 1: "a < b"
    assert stats.rank_test_lower(a, b) == pytest.approx(exact_mwu_less(a, b), rel=1e-12)
    # fully separated: the smallest exact p, 1/252
    assert stats.rank_test_lower([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(1 / 252)
    # the factor shifts a: 10 * a vs b
    a10 = [10 * v for v in a]
    assert stats.rank_test_lower(a, b, 10.0) == pytest.approx(exact_mwu_less(a10, b), rel=1e-12)


def test_paired_test_by_hand():
    # every pair in the claimed direction: p = 1 / 2^5
    assert stats.paired_test_lower([1, 2, 3, 4, 5], [2, 5, 7, 9, 11]) == pytest.approx(1 / 32)
    # with the factor, 2 of 5 pairs reverse: |d| ranks by hand
    lower, higher = [1.0, 1.0, 1.0, 1.0, 1.0], [20.0, 50.0, 8.0, 5.0, 300.0]
    d = np.log(10.0) - np.log(higher)  # log(10 * lower) - log(higher)
    ranks = sps.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    # exact null: every sign pattern equally likely
    dist = [
        sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=5)
    ]
    p_hand = sum(w <= w_plus for w in dist) / 32
    assert stats.paired_test_lower(lower, higher, 10.0) == pytest.approx(p_hand)


def test_gmean_ratio_and_summary():
    a, b = [1e-5, 4e-5, 2e-5], [3e-3, 1e-3, 9e-3, 2e-3]
    assert stats.gmean_ratio(a, b) == pytest.approx(sps.gmean(b) / sps.gmean(a), rel=1e-12)
    s = stats.summarize(b)
    assert s.mean == pytest.approx(np.mean(b)) and s.sd == pytest.approx(np.std(b, ddof=1))
    assert s.median == pytest.approx(2.5e-3) and s.gmean == pytest.approx(sps.gmean(b))
    assert s.gsd == pytest.approx(math.exp(np.std(np.log(b), ddof=1)))
    # a diverged run (+inf): infinite mean and gmean, median an order statistic
    d = stats.summarize([1.0, 2.0, math.inf])
    assert d.mean == math.inf and d.gmean == math.inf and d.median == 2.0
    for bad in ([], [0.0], [-1.0], [math.nan]):
        with pytest.raises(ValueError):
            stats.summarize(bad)


def test_bootstrap_interval_against_scipy():
    rng = np.random.default_rng(5)
    a = np.exp(rng.normal(-10, 1.0, 5))
    b = np.exp(rng.normal(-6, 1.5, 5))
    lo, hi = stats.bootstrap_ratio_interval(a, b, n_resamples=40000, seed=1)
    ref = sps.bootstrap(
        (np.log(a), np.log(b)),
        lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        n_resamples=40000,
        method="percentile",
        paired=False,
        random_state=2,
    ).confidence_interval
    assert math.log(lo) == pytest.approx(ref.low, abs=0.05)
    assert math.log(hi) == pytest.approx(ref.high, abs=0.05)
    # constant groups: the interval collapses onto the ratio
    assert stats.bootstrap_ratio_interval([2.0] * 3, [8.0] * 4) == pytest.approx((4.0, 4.0))


def test_compare_verdicts():
    low = [1e-5, 2e-5, 1.5e-5, 3e-5, 1.2e-5]
    far = [1e-3, 2e-3, 5e-4, 3e-3, 8e-4]  # ~ 60x above
    near = [2e-5, 4e-5, 3e-5, 5e-5, 2.5e-5]  # ~ 2x above
    assert stats.compare(low, far, 10).verdict == "holds"
    assert stats.compare(low, near, 10).verdict == "fails"
    # 2 seeds each: the ratio passes but no rank test with n = 2 can be significant
    assert stats.compare(low[:2], far[:2], 10).verdict == "holds (n.s.)"
    c = stats.compare(low, [*far[:4], math.inf], 10)  # a diverged run in the worse group
    assert c.verdict == "holds" and c.ratio == math.inf


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("cls", [KAN, MultichannelMLP])
def test_extend_continues_the_end_pieces_like_scipy(cls):
    torch.manual_seed(0)
    model = cls([1, 1], 6, 3, (-1.0, 0.5), init_std=1.0, outside="extend").double()
    x = torch.linspace(-2.5, 2.0, 451, dtype=torch.float64)[:, None]
    kan = model if cls is KAN else model.to_kan()
    c = kan.layers[0].coef.detach()[0, 0].numpy()
    ref = BSpline(model.grid.knots().numpy(), c, 3, extrapolate=True)(x[:, 0].numpy())
    assert np.abs(model(x).detach().numpy()[:, 0] - ref).max() < 1e-9
    # exact under refinement everywhere, not only on the grid range
    assert (model.refined()(x) - model(x)).abs().max() < 1e-9


def test_literal_continuations():
    torch.manual_seed(1)
    kan = KAN([1, 1], 6, 3, (-1.0, 0.5), init_std=1.0, outside="literal").double()
    mc = kan.to_multichannel()
    assert mc.outside == "literal"
    x = torch.linspace(-2.5, 2.0, 451, dtype=torch.float64)[:, None]
    xs = x[:, 0].numpy()
    t, c = kan.grid.knots().numpy(), kan.layers[0].coef.detach()[0, 0].numpy()
    # spline form: B-splines on the extended knots, 0 past them
    basis = [
        np.nan_to_num(BSpline.basis_element(t[j : j + 5], extrapolate=False)(xs))
        for j in range(len(c))
    ]
    ref_spline = sum(cj * bj for cj, bj in zip(c, basis))
    assert np.abs(kan(x).detach().numpy()[:, 0] - ref_spline).max() < 1e-12
    # power-ReLU form: sum_j w_j ReLU((x - t_j) / h)^3 without a clamp
    w = c @ change_of_basis(kan.grid, True).numpy()
    psi = np.maximum((xs[:, None] - t[: len(c)]) / kan.grid.h, 0) ** 3
    assert np.abs(mc(x).detach().numpy()[:, 0] - psi @ w).max() < 1e-9
    # the two forms agree on the left and on [a, b], differ on the right
    left = xs <= 0.5
    assert np.abs(ref_spline[left] - (psi @ w)[left]).max() < 1e-9
    assert np.abs(ref_spline[~left] - (psi @ w)[~left]).max() > 1.0


def test_outside_options_do_not_change_the_default():
    torch.manual_seed(3)
    a = MultichannelMLP([2, 5, 1], 5, 3, linear_first=True, squash=None)
    torch.manual_seed(3)
    b = MultichannelMLP(
        [2, 5, 1], 5, 3, linear_first=True, squash=None, outside="clamp", init="spline_iid"
    )
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert "outside" not in a.config
    x = torch.randn(50, 2) * 3
    assert torch.equal(a(x), b(x))
    # inside the grid range every continuation is the clamped function
    inside = torch.rand(200, 1, dtype=torch.float64) * 2 - 1
    torch.manual_seed(4)
    ref = KAN([1, 2], 8, 3).double()
    for outside in ("extend", "literal"):
        torch.manual_seed(4)
        other = KAN([1, 2], 8, 3, outside=outside).double()
        assert (other(inside) - ref(inside)).abs().max() < 1e-12
    with pytest.raises(ValueError):
        KAN([1, 1], 4, 3, outside="mirror")
    with pytest.raises(ValueError):
        MultichannelMLP([1, 1], 4, 3, init="xavier")


def test_relu_iid_init_draws_the_weights():
    torch.set_default_dtype(torch.float64)  # no float32 rounding between draw and check
    try:
        torch.manual_seed(0)
        iid = MultichannelMLP([4, 50], 40, 3, init="relu_iid", init_std=0.3)
        torch.manual_seed(0)
        conv = MultichannelMLP([4, 50], 40, 3, init_std=0.3)
    finally:
        torch.set_default_dtype(torch.float32)
    w = iid.layers[0].weight.detach()
    assert w.std().item() == pytest.approx(0.3 / 2, rel=0.05)  # init_std / sqrt(fan_in)
    assert w.mean().abs().item() < 0.01
    c = conv.layers[0].spline_coefficients().detach()
    assert c.std().item() == pytest.approx(0.3 / 2, rel=0.05)
    # the same random draw, read as w (relu_iid) or as c (default)
    assert torch.allclose(c, w, atol=1e-8)


# ----------------------------------------------------------------------------- targets
def test_named_targets_by_hand():
    p = torch.tensor([[0.5, 1.0], [0.8, 0.0], [0.2, 1.0], [0.25, 0.25]], dtype=torch.float64)
    assert REGRESSION_TARGETS["smooth"](p)[0].item() == pytest.approx(math.exp(2.0))
    assert REGRESSION_TARGETS["sharp_front"](p)[1].item() == pytest.approx(0.0, abs=1e-15)
    assert REGRESSION_TARGETS["kink"](p)[2].item() == pytest.approx(0.0 + 0.5 * 0.64)
    osc = math.sin(6 * math.pi * 0.5) + math.cos(0.0)
    assert REGRESSION_TARGETS["oscillatory"](p)[3].item() == pytest.approx(osc, abs=1e-12)


def test_regression_task_picks_a_target():
    paper = TASKS["regression_rotated"](size="tiny")
    same = TASKS["regression_rotated"](size="tiny", target="rotated")
    assert torch.equal(paper.y_train, same.y_train)
    front = TASKS["regression_rotated"](size="tiny", target="sharp_front")
    assert torch.equal(front.x_train, paper.x_train)  # same points, another target
    ref = torch.tanh(40 * (front.x_train[:, 0] + 0.6 * front.x_train[:, 1] - 0.8))
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert torch.allclose(front.y_train[:, 0], ref, atol=1e-12)
    assert front.describe()["target"] == "sharp_front"
    with pytest.raises(ValueError, match="unknown target"):
        TASKS["regression_rotated"](size="tiny", target="nope")


# ----------------------------------------------------------------------------- profile
@pytest.mark.parametrize("name", ["ablation_regression", "ablation_burgers", "ablation_pinn"])
def test_ablation_profile_configs_validate(name):
    from bench_mlkan.bench import expand, load_profile

    profile = load_profile(name)
    variants = [e.get("variant") for e in profile["experiments"]]
    assert all(variants) and all(profile["variants"].get(v) for v in variants)
    specs = expand(profile)
    assert specs
    from bench_mlkan.config import RunConfig

    for spec in specs:
        RunConfig.from_dict(spec.config).validate()


# ----------------------------------------------------------------------------- page
def record(baseline, variant, seed, value, status="ok"):
    return {
        "task": "regression_rotated",
        "baseline": baseline,
        "variant": variant,
        "seed": seed,
        "status": status,
        "final_metrics": {"train_mse": value} if status == "ok" else {},
    }


def fixture_records():
    seeds = [1234, 1235, 1236, 1237, 1238]
    wiggle = [1.0, 1.5, 0.7, 1.2, 0.9]
    paper_like = {  # every claim holds
        "kan_coarse": 1.6e-3,
        "kan_fine": 2e-3,
        "kan_multilevel": 3e-5,
        "mcmlp_coarse": 1.1e-2,
        "mcmlp_fine": 1.3,
        "mcmlp_multilevel": 1.0e-2,
    }
    ours = {  # multilevel no better than fine; ReLU fine does not fail
        "kan_coarse": 1.4e-4,
        "kan_fine": 1.8e-5,
        "kan_multilevel": 7e-5,
        "mcmlp_coarse": 3e-3,
        "mcmlp_fine": 1e-2,
        "mcmlp_multilevel": 3e-3,
    }
    recs = []
    for variant, table in (("literal", paper_like), ("suite", ours)):
        for b, v in table.items():
            for s, w in zip(seeds, wiggle):
                recs.append(record(b, variant, s, v * w))
    recs[-1] = record("mcmlp_multilevel", "suite", 1238, None, status="diverged")
    recs.append(record("kan_fine", "suite", 1239, None, status="failed"))
    return recs


READINGS = [
    Reading("literal", "a reading under which the paper reproduces", {"a": 1}),
    Reading("suite", "the suite's defaults", {}),
]


def test_claims_on_fixture_records():
    data = collect(fixture_records())
    verdicts = {v: {c.key: evaluate_claim(c, data[v]).verdict for c in CLAIMS} for v in data}
    # the fixture has no MLP runs: 5.1c (spline multilevel below every MLP) is not measured
    assert {k for k, x in verdicts["literal"].items() if x == "no data"} == {
        "5.1c.1",
        "5.1c.2",
        "5.1c.3",
    }
    assert all(x == "holds" for k, x in verdicts["literal"].items() if not k.startswith("5.1c"))
    s = verdicts["suite"]
    assert s["5.1a"] == "holds"  # 7e-5 * mean(wiggle) = 7.4e-5, within 3x of 3.67e-5
    assert s["5.1b.2"] == "fails" and s["5.1d"] == "fails" and s["5.1e"] == "holds"
    assert s["5.1b.3"] == "holds"
    # the diverged run is +inf, the failed one is left out
    runs = data["suite"]["mcmlp_multilevel"]
    assert runs[-1].value == math.inf and len(data["suite"]["kan_fine"]) == 6
    assert evaluate_claim(CLAIMS[0], {}).verdict == "no data"
    low = {"kan_multilevel": [Run(1, "ok", 1e-6), Run(2, "ok", 2e-6)]}
    r = evaluate_claim(CLAIMS[0], low)
    assert r.verdict == "fails" and r.detail.endswith("(0.0409x, lower)")


def test_page_renders_from_fixture_records():
    page = render_page(
        collect(fixture_records()),
        READINGS,
        task="regression_rotated",
        profile="ablation_x",
        findings=["a finding"],
        paper={"kan_fine": (2.54e-3, 5.64e-3)},
    )
    first = page.split("\n\n")[2]
    assert first.startswith("**All claims measured here reproduce together under: `literal`.**")
    assert "5.1d (ReLU fine fails (median > 0.1)): `literal`;" in first
    assert (
        "Not measured by this profile" in page
        and "5.1c.3 (spline multilevel below mlp_large)" in page
    )
    row = next(line for line in page.splitlines() if line.startswith("| `suite` | **holds**"))
    assert "fails" in row
    assert "1 div" in page and "1 failed" in page and "1239: - (failed)" in page
    # mean / median of kan_fine@suite: 1.8e-5 x wiggle, by hand
    w = [1.0, 1.5, 0.7, 1.2, 0.9]
    row = next(line for line in page.splitlines() if line.startswith("| `suite` | 1."))
    assert f"{1.8e-5 * sum(w) / 5:.2e} / {1.8e-5:.2e}" in row
    assert "| **paper** (mean (sd)) |  | 2.54e-03 (5.64e-03) |" in page
    assert '`{"a": 1}`' in page and "## Findings\n\n- a finding" in page
    only_suite = render_page(
        collect(fixture_records()), READINGS[1:], task="regression_rotated", profile="x"
    )
    assert "Closest: `suite` (3 of 6 claims)." in only_suite.split("\n\n")[2]


def test_load_readings_merges_experiments():
    profile = {
        "variants": {"x": "d"},
        "experiments": [
            {"task": "regression_rotated", "variant": "x", "overrides": {"lr": 0.5},
             "baselines": ["kan_fine"], "seeds": [1]},
            {"task": "regression_rotated", "variant": "x", "overrides": {"lr": 0.5},
             "baselines": ["mlp_large"], "seeds": [1]},
            {"task": "burgers_1d", "variant": "y", "baselines": ["kan_fine"], "seeds": [1]},
        ],
    }  # fmt: skip
    (r,) = load_readings(json.loads(json.dumps(profile)), "regression_rotated")
    assert r == Reading("x", "d", {"lr": 0.5}, ("kan_fine", "mlp_large"))


def test_run_dataclass_order():
    data = collect([record("kan_fine", "v", 2, 1e-3), record("kan_fine@v", None, 1, 2e-3)])
    assert [r.seed for r in data["v"]["kan_fine"]] == [1, 2]
    assert data["v"]["kan_fine"][0] == Run(1, "ok", 2e-3)


def test_paper_rows_are_table_2():
    from bench_mlkan.sensitivity import paper_rows

    rows = paper_rows("regression_rotated")
    assert rows["kan_multilevel"] == (3.67e-5, 7.19e-5) and rows["mcmlp_fine"] == (1.35, 0.15)


def test_entry_point_writes_the_page(tmp_path):
    from bench_mlkan.sensitivity import main

    profile = {
        "variants": {"literal": "reproduces", "suite": "ours"},
        "findings": {"regression_rotated": ["the finding"]},
        "experiments": [
            {"task": "regression_rotated", "variant": v, "seeds": [1234], "baselines": ["kan_fine"]}
            for v in ("literal", "suite")
        ],
    }
    path = tmp_path / "ablation_fixture.json"
    path.write_text(json.dumps(profile))
    for rec in fixture_records():
        row = f"{rec['baseline']}@{rec['variant']}"
        out = (
            tmp_path
            / "results"
            / "ablation_fixture"
            / rec["task"]
            / row
            / f"seed{rec['seed']}.json"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec))
    page = tmp_path / "page.md"
    assert (
        main(["--profile", str(path), "--results", str(tmp_path / "results"), "--out", str(page)])
        == 0
    )
    text = page.read_text()
    assert "**All claims measured here reproduce together under: `literal`.**" in text
    assert "- the finding" in text and "| `suite` | ours |" in text


# ----------------------------------------------------------------------------- any task
def pinn_record(task, baseline, variant, seed, metrics, status="ok"):
    return {
        "task": task,
        "baseline": baseline,
        "variant": variant,
        "seed": seed,
        "status": status,
        "final_metrics": metrics if status == "ok" else {},
    }


def test_claims_for_every_paper_task_come_from_paper_results():
    from bench_mlkan.scoring.claims import load_paper, paper_claims
    from bench_mlkan.sensitivity import claims_for

    paper = load_paper()
    for task in ("burgers_1d", "poisson_interface_2d", "allen_cahn_1d"):
        parts = claims_for(task)
        ids = {c.id for c in paper_claims(paper, task)}
        assert ids and {p.key.split(".")[0] + "." + p.key.split(".")[1] for p in parts} == ids
    burgers = {c.key: c for c in claims_for("burgers_1d")}
    assert burgers["5.3a.2"].text == "spline multilevel >= 30x below spline fine"
    assert (burgers["5.3a.2"].kind, burgers["5.3a.2"].factor) == ("beats", 30.0)
    allen = {c.key: c for c in claims_for("allen_cahn_1d")}
    assert (allen["5.4c"].kind, allen["5.4c"].a, allen["5.4c"].value) == (
        "above",
        "mlp_medium",
        0.1,
    )


def test_burgers_page_ranks_by_training_loss_and_inherits_rows():
    """Burgers ranks by the training loss (not rel_l2); a reading that runs only the
    multilevel row takes coarse/fine from the reading it inherits."""
    from bench_mlkan.sensitivity import render_task_page

    loss = {"kan_coarse": 3e-3, "kan_fine": 2e-3, "kan_multilevel": 2e-5}
    recs = [
        pinn_record("burgers_1d", b, "suite", s, {"train_loss": v * w, "rel_l2": 1.0})
        for b, v in loss.items()
        for s, w in ((1234, 1.0), (1244, 1.3), (1254, 0.8))
    ]
    recs += [
        pinn_record(
            "burgers_1d", "kan_multilevel", "carry", s, {"train_loss": 1e-3, "rel_l2": 1e-9}
        )
        for s in (1234, 1244, 1254)
    ]
    recs.append(pinn_record("allen_cahn_1d", "kan_multilevel", "suite", 1, {"rel_l2": 1.0}))
    profile = {
        "variants": {"suite": "ours", "carry": "moments carried"},
        "inherit": {"carry": "suite"},
        "settings": {"burgers_1d": "the paper's sizes"},
        "experiments": [
            {"task": "burgers_1d", "variant": "suite", "seeds": [1234], "baselines": list(loss)},
            {"task": "burgers_1d", "variant": "carry", "seeds": [1],
             "baselines": ["kan_multilevel"]},
        ],
    }  # fmt: skip
    page = render_task_page(profile, "burgers_1d", recs, "ablation_x")
    lines = page.splitlines()
    assert "Settings: the paper's sizes" in page and "final training loss" in page
    claims_row = next(x for x in lines if x.startswith("| `carry` | "))
    # carry: 1e-3 vs coarse 3e-3 x wiggle -> ratio about 3, not 30: fails; suite holds (n.s.)
    assert claims_row.count("fails") == 2
    suite_row = next(x for x in lines if x.startswith("| `suite` | "))
    assert suite_row.count("holds (n.s.)") == 2  # 3 vs 3 seeds: p >= 1/20, never significant
    table_row = [x for x in lines if x.startswith("| `carry` | ")][1]
    assert table_row.count("(= `suite`)") == 2 and "1.00e-03 / 1.00e-03 |" in table_row
    assert "5.3b.1 (spline multilevel below mlp_small)" in page  # not measured, named
    assert "| **paper** (mean (sd)) | 6.64e-03 (4.06e-03) |" in page
    # a reading without runs of its own inherits nothing, nor the baselines it runs itself
    from bench_mlkan.sensitivity import reading_runs

    data = collect(recs[:9], "train_loss")
    carry = Reading("carry", "", {}, ("kan_multilevel",), "suite")
    assert reading_runs(data, carry) == ({}, set())
    data["carry"] = {"kan_fine": data["suite"]["kan_fine"]}
    runs, taken = reading_runs(data, carry)
    assert taken == {"kan_coarse"} and set(runs) == {"kan_coarse", "kan_fine"}


def test_pinn_page_checks_the_fail_claims_on_relative_l2():
    from bench_mlkan.sensitivity import render_task_page

    err = {"kan_multilevel": 0.02, "mcmlp_multilevel": 0.95, "mlp_medium": 0.05}
    recs = [
        pinn_record("allen_cahn_1d", b, "suite", s, {"rel_l2": v, "train_loss": 1e-9})
        for b, v in err.items()
        for s in (1234, 1235)
    ]
    profile = {
        "variants": {"suite": "ours"},
        "experiments": [
            {"task": "allen_cahn_1d", "variant": "suite", "seeds": [1234, 1235],
             "baselines": list(err)}
        ],
    }  # fmt: skip
    page = render_task_page(profile, "allen_cahn_1d", recs, "ablation_x")
    row = next(x for x in page.splitlines() if x.startswith("| `suite` | "))
    cells = row.split(" | ")[1:]
    # 5.4a.1, 5.4a.2 hold (n.s. with 2 seeds); 5.4b (ReLU fails) holds; 5.4c (MLP fails) fails
    assert [c.split("<br>")[0] for c in cells] == [
        "holds (n.s.)",
        "holds (n.s.)",
        "**holds**",
        "fails",
    ]
    assert "median 5.00e-02; 0/2 seeds > 1.00e-01" in row
    assert "relative L2" in page


def test_index_links_sensitivity_pages():
    from bench_mlkan.reporting.pages import render_index
    from bench_mlkan.reporting.render import sensitivity_tasks

    assert sensitivity_tasks("ablation_burgers") == ["burgers_1d"]
    assert sensitivity_tasks("ablation_pinn") == ["poisson_interface_2d", "allen_cahn_1d"]
    assert sensitivity_tasks("quick") == []
    text = render_index(
        {"abl": {"burgers_1d": {}}}, {}, {}, {"abl": ["burgers_1d", "allen_cahn_1d"]}
    )
    assert "[`sensitivity/burgers_1d.md`](sensitivity/burgers_1d.md)." in text
    assert "allen_cahn_1d.md" not in text  # no records of that task under the profile
