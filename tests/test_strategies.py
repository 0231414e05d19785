"""Multilevel strategies beyond nested iteration: L2 restriction, FAS / MG-OPT cycles,
adaptive refinement (bench_mlkan.strategies)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.interpolate import BSpline

os.environ.setdefault("WANDB_MODE", "disabled")

from toy import small_task  # noqa: E402

from bench_mlkan import KAN  # noqa: E402
from bench_mlkan.config import ConfigError, RunConfig  # noqa: E402
from bench_mlkan.engine import TaskModule, train  # noqa: E402
from bench_mlkan.splines import Grid, gram_matrix, prolongation, restriction  # noqa: E402
from bench_mlkan.strategies import (  # noqa: E402
    AdaptiveStrategy,
    _grads,
    apply_correction,
    coarse_correction,
    coarse_shift,
    vcycle_plan,
)


def scipy_spline(grid: Grid, coef: np.ndarray) -> BSpline:
    return BSpline(grid.knots().numpy(), coef, grid.degree, extrapolate=False)


# ----------------------------------------------------------------------------- restriction
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_gram_matrix_matches_scipy_quadrature(degree):
    grid = Grid(4, degree, (-1.0, 2.0))
    M = gram_matrix(grid).numpy()
    eye = np.eye(grid.num_basis)
    for i in (0, 2, grid.num_basis - 1):
        for j in (0, 1, 3, grid.num_basis - 1):
            bi, bj = scipy_spline(grid, eye[i]), scipy_spline(grid, eye[j])
            ref = sum(
                quad(lambda x, bi=bi, bj=bj: bi(x) * bj(x), lo, lo + grid.h)[0]
                for lo in np.linspace(-1.0, 2.0, 5)[:-1]
            )
            assert M[i, j] == pytest.approx(ref, abs=1e-13)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_restriction_inverts_prolongation(degree):
    coarse = Grid(5, degree, (-1.0, 1.0))
    R, P = restriction(coarse), prolongation(coarse)
    assert R.shape == (5 + degree, 10 + degree)
    torch.testing.assert_close(
        R @ P, torch.eye(5 + degree, dtype=torch.float64), atol=1e-12, rtol=0
    )
    c = torch.randn(5 + degree, dtype=torch.float64)
    torch.testing.assert_close(R @ (P @ c), c, atol=1e-12, rtol=0)


@pytest.mark.parametrize("degree", [1, 3])
def test_restriction_residual_is_l2_orthogonal_to_the_coarse_space(degree):
    a, b = -1.0, 2.0
    coarse = Grid(3, degree, (a, b))
    fine = coarse.refined()
    f = np.random.default_rng(0).normal(size=fine.num_basis)
    cc = (restriction(coarse) @ torch.tensor(f)).numpy()
    s_fine, s_coarse = scipy_spline(fine, f), scipy_spline(coarse, cc)
    breaks = np.linspace(a, b, fine.grid_size + 1)
    norm = sum(quad(lambda x: s_fine(x) ** 2, lo, hi)[0] for lo, hi in zip(breaks, breaks[1:]))
    for j in range(coarse.num_basis):
        bj = scipy_spline(coarse, np.eye(coarse.num_basis)[j])
        inner = sum(
            quad(lambda x, bj=bj: (s_fine(x) - s_coarse(x)) * bj(x), lo, hi)[0]
            for lo, hi in zip(breaks, breaks[1:])
        )
        assert abs(inner) < 1e-12 * np.sqrt(norm)
    # and it is not trivially zero: the generic fine spline is not in the coarse space
    resid = sum(
        quad(lambda x: (s_fine(x) - s_coarse(x)) ** 2, lo, hi)[0]
        for lo, hi in zip(breaks, breaks[1:])
    )
    assert resid > 1e-3 * norm


def test_network_coarsened_inverts_refined():
    torch.manual_seed(0)
    kan = KAN([2, 4, 3, 1], 5, 3, linear_first=True, linear_bias=True, squash="tanh").double()
    back = kan.refined().coarsened()
    assert back.grid_size == 5 and back.config["grid_size"] == 5
    for (n, p), (m, q) in zip(kan.named_parameters(), back.named_parameters()):
        assert n == m
        torch.testing.assert_close(q, p, atol=1e-12, rtol=0)
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(back(x), kan(x), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="odd"):
        kan.coarsened()


# ----------------------------------------------------------------------------- V-cycles
def small_config(**changes) -> RunConfig:
    base = RunConfig(
        task="function_regression",
        model="kan",
        model_options={
            "widths": [2, 3, 1],
            "grid_size": 3,
            "degree": 3,
            "squash": "tanh",
            "linear_first": False,
            "output_bias": True,
        },  # fmt: skip
        schedule=[4, 4],
        optimizer="adam",
        lr=1e-2,
        progress=False,
    )
    return base.replace(**changes)


def test_vcycle_plan_shapes():
    assert vcycle_plan([4, 4, 4], 0, 1, "V", 2, 3, 2) == [
        (0, 4), (1, 4), (2, 4), (1, 3), (0, 3), (1, 3), (2, 2)
    ]  # fmt: skip
    # a W-cycle's two visits of the coarsest level are one longer solve there
    assert vcycle_plan([4, 4, 4], 0, 1, "W", 2, 3, 2) == [
        (0, 4), (1, 4), (2, 4), (1, 3), (0, 6), (1, 3), (2, 2)
    ]  # fmt: skip
    assert vcycle_plan([1, 1, 1, 1], 0, 1, "W", 3, 3, 2) == [
        (0, 1), (1, 1), (2, 1), (3, 1),
        (2, 3), (1, 3), (0, 6), (1, 6), (0, 6), (1, 3), (2, 3), (3, 2),
    ]  # fmt: skip
    assert vcycle_plan([4, 0, 4], 0, 2, "V", 1, 0, 5) == [(0, 4), (2, 14)]


def test_coarse_shift_makes_the_coarse_gradient_the_pulled_back_fine_gradient():
    """grad [L_c(v) - <tau, v>] at v = R u equals d/de L_f(u + P e) at e = 0 (nested
    autograd through an explicit P)."""
    torch.manual_seed(1)
    task = small_task()
    config = small_config(model_options={**small_config().model_options, "linear_first": True,
                                         "widths": [2, 4, 3, 1]})  # fmt: skip
    module = TaskModule(config, level=1, task=task)
    module._place()
    fine = module.model
    fine_grad = _grads(module)
    coarse = fine.coarsened()
    module.model = coarse
    tau = coarse_shift(fine_grad, _grads(module), coarse)
    module.loss_shift = tau
    shifted = _grads(module)

    # reference: e -> L_f(u + P e) with P from splines.prolongation, through functional_call
    P = prolongation(coarse.grid)
    params = {n: p.detach() for n, p in fine.named_parameters()}
    e = {n: torch.zeros_like(p, requires_grad=True) for n, p in coarse.named_parameters()}
    moved = {n: params[n] + (e[n] @ P.T if n.startswith("layers.") else e[n]) for n in params}
    out_terms = task.loss_terms(
        lambda x: torch.func.functional_call(fine, moved, (x,)), module.data, module.state
    )
    loss = sum(out_terms.values())
    ref = torch.autograd.grad(loss, list(e.values()))
    for (name, g), r in zip(shifted.items(), ref):
        torch.testing.assert_close(g, r, atol=1e-13, rtol=1e-10, msg=name)
    # and the shift is not zero (the coarse gradient alone differs)
    assert any((tau[n].abs().max() > 1e-8) for n in tau)


def test_zero_correction_leaves_the_fine_model_bitwise():
    torch.manual_seed(2)
    fine = KAN([2, 3, 1], 6, 3, squash="tanh").double()
    before = [p.detach().clone() for p in fine.parameters()]
    coarse = fine.coarsened()
    start = {n: p.detach().clone() for n, p in coarse.named_parameters()}
    apply_correction(fine, dict(fine.named_parameters()), coarse_correction(coarse, start), 1.0)
    for p, q in zip(fine.parameters(), before):
        assert torch.equal(p, q)


def test_cycle_without_coarse_steps_is_plain_training_bit_for_bit():
    task = small_task()
    options = {"cycles": 2, "coarse_steps": 0, "fine_steps": 3}
    cyc = train(small_config(strategy_name="vcycle", strategy_options=options), task=task)
    plain = train(small_config(schedule=[4, 10]), task=task)
    assert cyc.status == plain.status == "ok"
    assert [h["loss"] for h in cyc.history] == [h["loss"] for h in plain.history]
    for p, q in zip(cyc.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)


def test_short_vcycle_run_records_the_levels_visited():
    task = small_task()
    options = {"cycles": 1, "coarse_steps": 3, "fine_steps": 2}
    r = train(small_config(strategy_name="vcycle", strategy_options=options), task=task)
    assert r.status == "ok", r.error
    assert [h["level"] for h in r.history] == [0] * 4 + [1] * 4 + [0] * 3 + [1] * 2
    assert [(x.get("kind"), x["level"], x["step"]) for x in r.refinements] == [
        (None, 1, 4), ("restrict", 0, 8), ("correct", 1, 11)
    ]  # fmt: skip
    assert r.level_stats[0]["steps"] == 7 and r.level_stats[1]["steps"] == 6
    assert r.work == pytest.approx(7 * 1 + 6 * 2)  # paper cost: a step at grid 6 costs 2
    correct = r.refinements[-1]
    assert 0 <= correct["alpha"] <= 1
    assert correct["loss_after"] <= r.refinements[1]["loss_before"] * (1 + 1e-12)
    assert all("loss/mgopt_shift" in h for h in r.history[8:11])
    assert not any("loss/mgopt_shift" in h for h in r.history[11:])


def test_a_vcycle_stopped_by_the_budget_in_a_coarse_visit_ends_on_the_fine_model():
    """The work budget runs out two steps into the coarse visit: the pending correction is
    applied, the run ends on level 1 and its train_loss is the fine objective."""
    task = small_task()
    options = {"cycles": 1, "coarse_steps": 3, "fine_steps": 2}
    config = small_config(strategy_name="vcycle", strategy_options=options, work_budget=14.0)
    r = train(config, task=task)
    assert r.status == "ok", r.error
    assert [h["level"] for h in r.history] == [0] * 4 + [1] * 4 + [0] * 2
    assert [(x.get("kind"), x["level"], x["step"]) for x in r.refinements] == [
        (None, 1, 4), ("restrict", 0, 8), ("correct", 1, 10)
    ]  # fmt: skip
    n_params = sum(p.numel() for p in r.model.parameters())
    assert n_params == r.params_per_level[1] != r.params_per_level[0]  # the fine model
    # the fine objective of the returned model (no coarse shift), never above the loss
    # the fine level had before the coarse visit (the correction's line search)
    assert r.final_metrics["train_loss"] > 0
    assert r.final_metrics["train_loss"] <= r.refinements[1]["loss_before"] * (1 + 1e-12)
    assert r.final_metrics["train_loss"] == pytest.approx(r.refinements[-1]["loss_after"])


def test_strategy_options_are_checked():
    with pytest.raises(ConfigError, match="strategy_options.cyles"):
        small_config(strategy_name="vcycle", strategy_options={"cyles": 1}).validate()
    with pytest.raises(ConfigError, match="depth"):
        small_config(strategy_name="vcycle", strategy_options={"depth": 2}).validate()
    with pytest.raises(ConfigError, match="strategy_name"):
        small_config(strategy_name="fmg").validate()
    with pytest.raises(ConfigError, match="work_budget"):
        small_config(strategy_name="adaptive").validate()
    assert "strategy_name" not in small_config().to_dict()  # default: hashes unchanged


# ----------------------------------------------------------------------------- adaptive
def test_should_refine_on_a_plateau_or_at_the_cap():
    s = AdaptiveStrategy([20, 20, 20], window=3, improve=0.99)
    assert s.should_refine(0, [1.0, 0.5, 0.25, 0.12]) is None  # improving fast
    assert s.should_refine(0, [1.0, 0.5, 0.25, 0.12, 0.1199]) is None  # 0.1199 < 0.99 * 0.5
    assert s.should_refine(0, [1.0, 0.5, 0.5, 0.5, 0.499]) == "stalled"
    assert s.should_refine(1, [2.0**-i for i in range(20)]) == "cap"
    assert s.should_refine(2, [1.0] * 100) is None  # the finest level never refines


def test_adaptive_run_refines_early_on_a_plateau_within_the_budget():
    task = small_task()
    config = small_config(
        schedule=[50, 50, 50],
        lr=1e-9,  # the loss plateaus at once
        strategy_name="adaptive",
        strategy_options={"window": 3, "improve": 0.99},
        work_budget=21.0,
    )
    r = train(config, task=task)
    assert r.status == "ok", r.error
    assert [(x["level"], x["step"], x["reason"]) for x in r.refinements] == [
        (1, 4, "stalled"), (2, 8, "stalled")
    ]  # fmt: skip
    assert r.work <= 21.0
    assert r.work == pytest.approx(4 * 1 + 4 * 2 + 2 * 4)  # a third level-2 step would overspend


def test_vcycle_with_budget_fractions_leaves_room_for_its_cycles():
    options = {"cycles": 1, "coarse_steps": 3, "fine_steps": 2}
    config = small_config(
        strategy_name="vcycle",
        strategy_options=options,
        budget_fractions=[0.5, 0.5],
        work_budget=40.0,
    )
    r = train(config, task=small_task())
    assert r.status == "ok", r.error
    # fractions buy [20, 10] steps (40 work); scaled by 1 - 7/40 to [16, 8], + the cycle's 7
    assert [h["level"] for h in r.history] == [0] * 16 + [1] * 8 + [0] * 3 + [1] * 2
    assert r.work == pytest.approx(39.0)
