"""Peer KAN libraries (bench_mlkan.peers): values against independent references (scipy,
numpy by hand), exact refinement where claimed, the model contract, and short runs of
every peer baseline through the engine."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

os.environ.setdefault("WANDB_MODE", "disabled")

from bench_mlkan.baselines import baseline_config, baseline_tasks  # noqa: E402
from bench_mlkan.config import ConfigError  # noqa: E402
from bench_mlkan.contracts import check_model  # noqa: E402
from bench_mlkan.engine import train  # noqa: E402
from bench_mlkan.models import MODELS, count_parameters  # noqa: E402
from bench_mlkan.peers import (  # noqa: E402
    EfficientKAN,
    EfficientKANLayer,
    FastKAN,
    FastKANLayer,
    PyKAN,
    _lstsq_driver,
    pykan_available,
)
from bench_mlkan.splines import Grid  # noqa: E402

needs_pykan = pytest.mark.skipif(not pykan_available(), reason="pykan not installed (.[peers])")


def scipy_basis(x: np.ndarray, knots: np.ndarray, degree: int) -> np.ndarray:
    """All B-splines on ``knots`` at x (0 outside each support): (len(x), len(knots)-k-1)."""
    out = np.zeros((len(x), len(knots) - degree - 1))
    for i in range(out.shape[1]):
        element = BSpline.basis_element(knots[i : i + degree + 2], extrapolate=False)
        out[:, i] = np.nan_to_num(element(x))
    return out


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def uniform_knots(n: int, k: int, a: float = -1.0, b: float = 1.0) -> np.ndarray:
    h = (b - a) / n
    return a + h * np.arange(-k, n + k + 1)


# ----------------------------------------------------------------------------- efficient-kan
def test_efficient_kan_layer_matches_scipy_everywhere_including_outside_the_grid():
    torch.manual_seed(0)
    P, Q, n, k = 3, 2, 6, 3
    layer = EfficientKANLayer(P, Q, Grid(n, k)).double()
    with torch.no_grad():  # make the spline branch count as much as the base branch
        layer.spline_weight.normal_()
    # inside [-1, 1], in the extension region (1, 1 + k h) and beyond it; off the knots
    x = torch.tensor(
        [[-0.93, 0.11, 0.77], [1.13, -1.37, 0.42], [2.61, -2.9, 1.01], [-1.0, -0.05, 0.0]],
        dtype=torch.float64,
    )
    got = layer(x).detach().numpy()
    knots = uniform_knots(n, k)
    W, C = layer.base_weight.detach().numpy(), layer.spline_weight.detach().numpy()
    S = layer.spline_scaler.detach().numpy()
    want = np.zeros((len(x), Q))
    xs = x.numpy()
    for p in range(P):
        B = scipy_basis(xs[:, p], knots, k)
        for q in range(Q):
            want[:, q] += W[q, p] * silu(xs[:, p]) + S[q, p] * B @ C[q, p]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11)
    # at x = b exactly: the left limit (the spline is continuous there)
    at_b = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(layer(at_b), layer(at_b - 1e-12), rtol=0, atol=1e-10)
    # beyond the extended knots the spline branch is exactly 0: only SiLU remains
    far = torch.tensor([[5.0, -5.0, 3.3]], dtype=torch.float64)
    base_only = torch.nn.functional.silu(far) @ layer.base_weight.T
    torch.testing.assert_close(layer(far), base_only, rtol=0, atol=0)


def test_efficient_kan_macs_count_the_recursion_and_the_matmuls():
    P, Q, n, k = 2, 3, 5, 3
    layer = EfficientKANLayer(P, Q, Grid(n, k)).double()
    # by hand: base 2*3 + SiLU 2 + recursion 2 inputs * 4 * (10 + 9 + 8) + contraction 2*3*8
    assert layer.macs_per_point() == 6 + 2 + 216 + 48
    # the matmul part agrees with torch's FLOP counter (2 FLOPs per MAC)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        layer(torch.rand(1, P, dtype=torch.float64))
    assert counter.get_total_flops() == 2 * (P * Q + P * Q * (n + k))


def _domain_net(**kw) -> EfficientKAN:
    torch.manual_seed(3)
    return EfficientKAN([2, 4, 3, 1], 4, 3, input_domain=[(0.0, 2.0), (-3.0, 1.0)], **kw).double()


def test_efficient_kan_refines_exactly_while_hidden_values_stay_in_the_grid():
    model = _domain_net()
    with torch.no_grad():  # small base weights keep every hidden value inside [-1, 1]
        for layer in model.layers:
            layer.base_weight.mul_(0.2)
            layer.spline_scaler.mul_(0.2)
    x = torch.rand(500, 2, dtype=torch.float64) * torch.tensor([2.0, 4.0]) + torch.tensor(
        [0.0, -3.0]
    )
    x.requires_grad_(True)
    y = model(x)
    assert model.exact_refinement
    fine = model.refined()
    assert fine.grid_size == 8 and model.grid_size == 4
    assert count_parameters(fine) - count_parameters(model) == 4 * (2 * 4 + 4 * 3 + 3 * 1)
    y_fine = fine(x)
    torch.testing.assert_close(y_fine, y, rtol=0, atol=1e-13)
    # input derivatives too (a PINN's loss sees them)
    g, g_fine = (torch.autograd.grad(v.sum(), x, create_graph=True)[0] for v in (y, y_fine))
    torch.testing.assert_close(g_fine, g, rtol=0, atol=1e-12)
    h, h_fine = (torch.autograd.grad(v[:, 0].sum(), x)[0] for v in (g, g_fine))
    torch.testing.assert_close(h_fine, h, rtol=0, atol=1e-10)
    # moments map like the parameters (the linear prolongation of the spline weights)
    for name, p in model.named_parameters():
        mapped = model.prolong_parameter_tensor(name, p.detach())
        torch.testing.assert_close(mapped, dict(fine.named_parameters())[name].detach())


def test_efficient_kan_reports_inexact_refinement_when_hidden_values_leave_the_grid():
    model = _domain_net()
    x = torch.rand(400, 2, dtype=torch.float64) * torch.tensor([2.0, 4.0]) + torch.tensor(
        [0.0, -3.0]
    )
    with torch.no_grad():
        model.layers[0].base_weight.fill_(3.0)  # hidden values far outside [-1, 1]
    y = model(x)
    assert not model.exact_refinement
    assert (model.refined()(x) - y).abs().max() > 1e-6  # and indeed it is not exact
    # the record restarts once a parameter changes: back inside, exact again
    with torch.no_grad():
        model.layers[0].base_weight.fill_(0.01)
        model.layers[0].spline_scaler.fill_(0.01)
        model.layers[1].base_weight.fill_(0.01)
        model.layers[1].spline_scaler.fill_(0.01)
    y = model(x)
    assert model.exact_refinement
    torch.testing.assert_close(model.refined()(x), y, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------- FastKAN
def test_fastkan_layer_matches_a_numpy_evaluation():
    torch.manual_seed(1)
    P, Q, G = 4, 3, 6
    layer = FastKANLayer(P, Q, G, (-2.0, 2.0), layernorm=True).double()
    with torch.no_grad():
        layer.layernorm.weight.uniform_(0.5, 1.5)
        layer.layernorm.bias.uniform_(-0.3, 0.3)
    x = torch.randn(7, P, dtype=torch.float64)
    xs = x.numpy()
    mu, var = xs.mean(1, keepdims=True), xs.var(1, keepdims=True)
    z = (xs - mu) / np.sqrt(var + 1e-5) * layer.layernorm.weight.detach().numpy()
    z = z + layer.layernorm.bias.detach().numpy()
    centres, h = np.linspace(-2, 2, G), 4 / (G - 1)
    phi = np.exp(-(((z[:, :, None] - centres) / h) ** 2)).reshape(7, P * G)
    want = phi @ layer.spline_weight.detach().numpy().T
    base = layer.base_linear
    want += silu(xs) @ base.weight.detach().numpy().T + base.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), want, rtol=1e-12, atol=1e-12)
    # MACs by hand: LN 4*4, RBF 3*4*6, contraction 4*6*3, base 4*3 + SiLU 4
    assert layer.macs_per_point() == 16 + 72 + 72 + 12 + 4


def test_fastkan_layernorm_on_two_inputs_keeps_only_their_order():
    """Why the baselines use layernorm="hidden": the LayerNorm of (u, v) is ~ +-(1, -1), so
    the RBF branch of a first layer with "all" sees only sign(u - v)."""
    points = torch.tensor([[0.2, 0.8], [0.1, 0.9], [0.45, 0.95]], dtype=torch.float64)
    features = {}
    for use in ("all", "hidden"):
        model = FastKAN([2, 5, 1], 8, layernorm=use, input_domain=[(0, 1), (0, 1)]).double()
        first = model.layers[0]
        x = model.input_map(points)
        z = x if first.layernorm is None else first.layernorm(x)
        features[use] = first.rbf(z).detach()
    spread = lambda f: float((f - f[0]).abs().max())  # noqa: E731
    assert spread(features["all"]) < 1e-3 * spread(features["hidden"])


def test_fastkan_is_single_level():
    model = FastKAN([2, 5, 1])
    check_model(model, multilevel=False)
    assert not hasattr(model, "refined")
    cfg = baseline_config("fastkan", "regression_rotated", overrides={"schedule": [4, 4]})
    with pytest.raises(ConfigError, match="cannot train on more than one level"):
        cfg.validate()


# ----------------------------------------------------------------------------- pykan
def test_lstsq_driver_works_around_gelsy_on_a_leading_zero_column():
    rng = np.random.default_rng(0)
    A = np.hstack([np.zeros((40, 1)), rng.normal(size=(40, 4))])
    b = A @ rng.normal(size=(5, 1))
    want = np.linalg.lstsq(A, b, rcond=None)[0]  # SVD, minimum norm
    with _lstsq_driver("gelsd"):
        got = torch.linalg.lstsq(torch.from_numpy(A), torch.from_numpy(b)).solution
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    assert torch.linalg.lstsq.__name__ == "linalg_lstsq"  # restored afterwards


@needs_pykan
def test_pykan_wrapper_matches_scipy_and_isolates_pykans_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002  (pykan seeds the legacy one)
    py_state = random.getstate()
    torch.manual_seed(0)
    model = PyKAN([2, 3, 1], 5, 3, input_domain=[(0, 1), (0, 1)]).double()
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert random.getstate() == py_state
    torch.manual_seed(0)
    same = PyKAN([2, 3, 1], 5, 3, input_domain=[(0, 1), (0, 1)]).double()
    for p, q in zip(model.parameters(), same.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # trainable: coef, scale_base, scale_sp only (symbolic branch and node affines frozen)
    assert count_parameters(model) == (2 * 3 + 3 * 1) * (5 + 3 + 2)
    x = torch.rand(50, 2, dtype=torch.float64)
    h = (2 * x - 1).numpy()
    knots = uniform_knots(5, 3)
    for layer in model.net.act_fun:
        coef, sb = layer.coef.detach().numpy(), layer.scale_base.detach().numpy()
        sp = layer.scale_sp.detach().numpy()
        out = np.zeros((len(h), coef.shape[1]))
        for p in range(coef.shape[0]):
            B = scipy_basis(h[:, p], knots, 3)
            out += silu(h[:, p])[:, None] * sb[p] + (B @ coef[p].T) * sp[p]
        h = out
    np.testing.assert_allclose(model(x).detach().numpy(), h, rtol=0, atol=1e-12)
    assert not (tmp_path / "model").exists()  # no pykan checkpoints written


@needs_pykan
def test_pykan_refine_is_pykans_least_squares_extension():
    torch.manual_seed(0)
    model = PyKAN([2, 3, 1], 5, 3, input_domain=[(0, 1), (0, 1)]).double()
    check_model(model, multilevel=True)
    assert model.exact_refinement is False
    with pytest.raises(RuntimeError, match="forward pass first"):
        model.refined()
    x = torch.rand(300, 2, dtype=torch.float64)
    y = model(x)
    fine = model.refined()
    assert fine.grid_size == 10 and next(fine.parameters()).dtype == torch.float64
    assert count_parameters(fine) == (2 * 3 + 3 * 1) * (10 + 3 + 2)
    # the fine spline space contains the coarse one and the data lie in [a, b]: the
    # least-squares fit reproduces the function at the data (gelsd)
    torch.testing.assert_close(fine(x), y, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- contract + engine
def test_peer_models_are_registered_and_keep_the_contract():
    assert MODELS["efficient_kan"] is EfficientKAN and MODELS["fastkan"] is FastKAN
    assert MODELS["pykan"] is PyKAN
    check_model(EfficientKAN([2, 3, 1]), multilevel=True, carry_moments=True)
    assert EfficientKAN([2, 3, 1], 5, 3).macs_per_point() == sum(
        EfficientKANLayer(p, q, Grid(5, 3)).macs_per_point() for p, q in ((2, 3), (3, 1))
    )


PEER_RUNS = [
    (b, t)
    for b in ("effkan_multilevel", "effkan_fine", "fastkan", "pykan_multilevel")
    for t in baseline_tasks(b)
]


def _short_schedule(schedule: list[int]) -> list[int]:
    return [min(s, 2) for s in schedule]


@pytest.mark.parametrize("baseline, task", PEER_RUNS)
def test_every_peer_baseline_trains_through_the_engine(baseline, task):
    if baseline.startswith("pykan"):
        if not pykan_available():
            pytest.skip("pykan not installed (.[peers])")
    cfg = baseline_config(baseline, task, seed=1)
    overrides = {
        **({"optimizer_options": {"max_iter": 4}} if cfg.optimizer == "lbfgs" else {}),
        "task_options": {"size": "tiny"},
        "schedule": _short_schedule(cfg.schedule),
        "progress": False,
    }
    result = train(baseline_config(baseline, task, seed=1, overrides=overrides))
    assert result.status == "ok", result
    assert result.work_macs > 0
    levels = len([s for s in overrides["schedule"] if s]) - 1
    assert len(result.refinements) == levels
    for r in result.refinements:
        if baseline.startswith("effkan"):  # exact unless hidden values left the grid
            assert r["rel_change"] <= 1e-9 or not r["exact"]
        else:
            assert r["exact"] is False
