"""KAN, MultichannelMLP and MLP against an independent numpy/scipy evaluator.

The reference (tests/conftest.py) rebuilds every edge as ``scipy.interpolate.BSpline`` on
its own knots (or, for a MultichannelMLP's weights, as numpy power ReLUs) and applies the
documented network semantics; the package's evaluation code is never used for it.

Tolerances (float64, eps = 2.2e-16), relative to max(1, max|y|):
* KAN: model vs reference, refinement (4 levels) 1e-12; measured ~5e-15.
* KAN <-> MultichannelMLP conversion at the starting grids (n <= 5): 1e-10 (measured
  1.2e-11, k = 5).
* MultichannelMLP after refinement, both evaluation paths: 1e-12 + 100 (n+k)^k eps
  (n the finest grid). A ReLU-basis model stores w = c A, whose float64 rounding is
  amplified by the cancellation of channels that reach (n+k)^k (h-scaled); the
  "spline" path (c = w A^-1) meets the same amplification, since A^-1 has entries
  ~ n^k. Measured worst ~35 (n+k)^k eps (k = 1; 1e-12 dominates there), ~15 (k >= 2);
  with the h-scaled basis and the spline path it stays below 1e-12 for k <= 2 (5e-15).
* float32: see the float32 section.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch.func import functional_call

from bench_mlkan import KAN, MLP, MODELS, MultichannelMLP, count_parameters
from bench_mlkan.models import RELU_PATH_TOLERANCE

EPS64 = float(np.finfo(np.float64).eps)
DEGREES = list(range(6))

# Architectures: depth, width, squash, linear first layer (with/without bias), output bias,
# input domain, odd / tiny starting grids, non-symmetric grid ranges.
ARCHS = {
    "plain-2-3-1": dict(widths=[2, 3, 1], grid_size=3, grid_range=(-1.0, 1.0)),
    "deep-clamped": dict(widths=[2, 3, 3, 1], grid_size=5, grid_range=(-1.0, 1.0)),
    "deep-tanh-domain": dict(
        widths=[3, 4, 4, 2],
        grid_size=3,
        grid_range=(-0.7, 1.3),
        squash="tanh",
        output_bias=True,
        input_domain=[(0.0, 2.0), (-3.0, 1.0), (5.0, 6.0)],
    ),
    "linear-nobias-sigmoid": dict(
        widths=[2, 5, 1], grid_size=1, grid_range=(0.0, 1.0), linear_first=True, squash="sigmoid"
    ),
    "linear-bias-tanh-deep": dict(
        widths=[2, 4, 3, 1],
        grid_size=2,
        grid_range=(-1.0, 1.0),
        linear_first=True,
        linear_bias=True,
        squash="tanh",
        output_bias=True,
        input_domain=[(-2.0, 2.0), (0.0, 10.0)],
    ),
}
LEVELS = 4  # the original and three refinements: grid x 8


def build(cls, arch: str, degree: int, seed: int = 0, init_std: float = 1.0, **extra):
    """A float64 model with unit-size spline coefficients and a random output bias."""
    torch.manual_seed(seed)
    model = cls(degree=degree, init_std=init_std, **ARCHS[arch], **extra).double()
    if model.output_bias is not None:
        with torch.no_grad():
            model.output_bias.normal_()
    return model


def sample_inputs(arch: str, num: int = 2000, seed: int = 0, margin: float = 0.1) -> torch.Tensor:
    """Uniform points over the input domain, widened by ``margin`` on each side (so some
    inputs lie outside the grid range and are clamped)."""
    cfg = ARCHS[arch]
    dom = cfg.get("input_domain") or [cfg["grid_range"]] * cfg["widths"][0]
    lo = np.array([d[0] for d in dom])
    hi = np.array([d[1] for d in dom])
    u = np.random.default_rng(seed).uniform(-margin, 1 + margin, (num, len(dom)))
    return torch.tensor(lo + (hi - lo) * u)


def max_err(y, ref) -> float:
    """max |y - ref| / max(1, max |ref|)."""
    y = y.detach().cpu().double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    ref = np.asarray(ref)
    return float(np.abs(y - ref).max() / max(1.0, np.abs(ref).max()))


def relu_form_tolerance(model) -> float:
    """1e-12 + 100 (n+k)^k eps: the inherent round-off of a power-ReLU parametrisation."""
    g = model.layers[0].grid
    return 1e-12 + 100 * g.num_basis**g.degree * EPS64


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("arch", ARCHS)
def test_kan_matches_reference(arch, degree, reference, measured):
    model = build(KAN, arch, degree)
    x = sample_inputs(arch)
    y = model(x)
    assert y.shape == (len(x), ARCHS[arch]["widths"][-1]) and y.dtype == torch.float64
    err = measured("KAN vs scipy reference", max_err(y, reference(model, x)))
    assert err <= 1e-12, err


@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("arch", ["deep-tanh-domain", "linear-bias-tanh-deep"])
def test_default_dtype_model_made_double_keeps_float64_input_map(arch, degree, reference):
    """A model built under the default float32 dtype and then ``.double()``-ed must be a
    float64 model throughout (the input map once stayed rounded to float32: ~1e-7)."""
    torch.manual_seed(degree)
    model = KAN(degree=degree, init_std=1.0, **ARCHS[arch]).double()
    x = sample_inputs(arch, 500)
    assert max_err(model(x), reference(model, x)) <= 1e-12


# ----------------------------------------------------------------------------- refinement
@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("arch", ARCHS)
def test_kan_refinement_preserves_function(arch, degree, reference, measured):
    model = build(KAN, arch, degree)
    x = sample_inputs(arch, seed=degree)
    y0 = reference(model, x)
    n0 = model.grid_size
    current = model
    for level in range(1, LEVELS):
        current = current.refined()
        assert current.grid_size == n0 * 2**level
        assert all(layer.grid.grid_size == n0 * 2**level for layer in current.layers)
        assert current.config["grid_size"] == n0 * 2**level
        err_model = max_err(current(x), y0)
        err_ref = max_err(reference(current, x), y0)  # the refined coefficients, via scipy
        measured("KAN refinement (model)", err_model)
        measured("KAN refinement (scipy on refined coefficients)", err_ref)
        assert err_model <= 1e-12 and err_ref <= 1e-12, (level, err_model, err_ref)
    # refinement returns a new model: the original is untouched
    assert model.grid_size == n0 and max_err(model(x), y0) <= 1e-12


MC_REFINE_CASES = [
    *[(arch, ev, True) for arch in ARCHS for ev in ("spline", "relu")],
    # the unscaled power ReLUs (psi = ReLU(x - t)^k) on the two richest architectures
    *[
        (arch, ev, False)
        for arch in ("deep-tanh-domain", "linear-bias-tanh-deep")
        for ev in ("spline", "relu")
    ],
]


@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("arch, evaluation, scaled", MC_REFINE_CASES)
def test_multichannel_refinement_preserves_function(
    arch, evaluation, scaled, degree, reference, measured
):
    kan = build(KAN, arch, degree, seed=degree + 10)
    mc = kan.to_multichannel(scaled=scaled, evaluation=evaluation)
    x = sample_inputs(arch, 1000, seed=degree + 1)
    y0 = mc(x).detach().numpy()
    y_kan = reference(kan, x)
    current = mc
    for level in range(1, LEVELS):
        current = current.refined()
        assert isinstance(current, MultichannelMLP)
        assert current.scaled == scaled and current.evaluation == evaluation
        tol = relu_form_tolerance(current)
        g = current.layers[0].grid
        y = current(x).detach().numpy()
        err, err_kan = max_err(y, y0), max_err(y, y_kan)
        if level == LEVELS - 1:  # the refined weights, in numpy's power-ReLU form
            err_kan = max(err_kan, max_err(reference(current, x, basis="power_relu"), y_kan))
        key = f"MultichannelMLP refinement ({evaluation}) / ((n+k)^k eps)"
        measured(key, max(err, err_kan) / (g.num_basis**g.degree * EPS64))
        if degree <= 2 and scaled:
            measured(f"MultichannelMLP refinement ({evaluation}, k<=2, scaled)", err)
        assert max(err, err_kan) <= tol, (level, err, err_kan, tol)
    assert count_parameters(current) == count_parameters(kan.refined().refined().refined())


@pytest.mark.parametrize("degree", [1, 3, 5])
def test_refinement_commutes_with_conversion(degree, measured):
    """refine(to_multichannel(kan)).to_kan() == refine(kan) coefficient-wise."""
    kan = build(KAN, "deep-tanh-domain", degree)
    a = kan.refined().refined()
    b = kan.to_multichannel().refined().refined().to_kan()
    for la, lb in zip(a.layers, b.layers):
        ca, cb = la.spline_coefficients(), lb.spline_coefficients()
        g = la.grid
        err = (ca - cb).abs().max().item() / ca.abs().max().item()
        measured(
            "refine/convert commute (coef, rel) / ((n+k)^k eps)",
            err / (g.num_basis**degree * EPS64),
        )
        assert err <= 100 * g.num_basis**degree * EPS64 + 1e-12, err


# ----------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("degree", DEGREES)
@pytest.mark.parametrize("arch", ARCHS)
def test_kan_multichannel_conversion(arch, degree, scaled, reference, measured):
    kan = build(KAN, arch, degree, seed=3)
    x = sample_inputs(arch, 1000, seed=3)
    y = reference(kan, x)
    tol = 1e-10  # coarse grids (n <= 5): the (n+k)^k eps bound stays below this
    for evaluation in ("spline", "relu"):
        mc = kan.to_multichannel(scaled=scaled, evaluation=evaluation)
        assert isinstance(mc, MultichannelMLP) and mc.layers[0].weight.dtype == torch.float64
        err = measured("KAN -> MultichannelMLP", max_err(mc(x), y))
        err_np = max_err(reference(mc, x, basis="power_relu"), y)  # numpy power ReLUs on w
        measured("KAN -> MultichannelMLP (numpy power-ReLU of w)", err_np)
        assert err <= tol and err_np <= tol, (evaluation, err, err_np, tol)
        back = mc.to_kan()
        assert isinstance(back, KAN)
        err_back = measured("KAN -> MultichannelMLP -> KAN", max_err(back(x), y))
        assert err_back <= tol, err_back
        for la, lb in zip(kan.layers, back.layers):
            # (torch.testing.assert_close costs a 3 s import on first use: numpy instead)
            np.testing.assert_allclose(lb.coef.detach(), la.coef.detach(), rtol=0, atol=tol)
    assert count_parameters(mc) == count_parameters(kan)


@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("degree", DEGREES)
def test_multichannel_built_directly_converts_to_kan(degree, scaled, reference, measured):
    """A MultichannelMLP's own random weights (numpy power-ReLU form) == its KAN (scipy)."""
    arch = "linear-bias-tanh-deep"
    mc = build(MultichannelMLP, arch, degree, seed=5, scaled=scaled, evaluation="relu")
    x = sample_inputs(arch, seed=5)
    y_np = reference(mc, x, basis="power_relu")
    kan = mc.to_kan()
    tol = 1e-10
    err = measured("MultichannelMLP -> KAN", max_err(reference(kan, x), y_np))
    assert err <= tol and max_err(kan(x), y_np) <= tol and max_err(mc(x), y_np) <= tol
    spline = MultichannelMLP(degree=degree, scaled=scaled, evaluation="spline", **ARCHS[arch])
    spline = spline.double()
    spline.load_state_dict(mc.state_dict())
    assert max_err(spline(x), y_np) <= tol


@pytest.mark.parametrize("evaluation", ["auto", "spline", "relu"])
@pytest.mark.parametrize("squash", [None, "tanh", "sigmoid"])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_outside_grid_range_is_clamped_in_both_forms(degree, squash, evaluation, reference):
    """Inputs past [a, b]: every spline layer clamps; KAN and MultichannelMLP agree
    everywhere (not only on [a, b]); zero derivative along a clamped input."""
    kan = KAN([2, 3, 3, 1], 4, degree, (-0.5, 1.5), squash=squash, init_std=1.0).double()
    mc = kan.to_multichannel(evaluation=evaluation)
    rng = np.random.default_rng(degree)
    x = torch.tensor(rng.uniform(-3.0, 4.0, (1000, 2)))
    outside = (x < -0.5) | (x > 1.5)
    assert outside.any(1).float().mean() > 0.5
    y_kan, y_mc = kan(x), mc(x)
    assert max_err(y_kan, reference(kan, x)) <= 1e-12
    assert max_err(y_mc, y_kan.detach().numpy()) <= 1e-12
    x_clamped = x.clamp(-0.5, 1.5)
    assert max_err(kan(x_clamped), y_kan.detach().numpy()) <= 1e-14
    for model in (kan, mc):
        xg = x.clone().requires_grad_(True)
        # degree 0 is piecewise constant: its graph does not reach x at all (allow_unused)
        (grad,) = torch.autograd.grad(model(xg).sum(), xg, allow_unused=degree == 0)
        if grad is None:
            continue
        assert (grad[outside] == 0).all()
        if degree >= 1:
            assert (grad[~outside] != 0).float().mean() > 0.9


# ----------------------------------------------------------------------------- derivatives
def _gradcheck_model(model, x, atol: float = 1e-7):
    """gradcheck + gradgradcheck of model(x) wrt the inputs and every parameter.

    ``fast_mode`` checks random projections of the Jacobians (much cheaper, still a full
    comparison of analytical and numerical derivatives along those directions)."""
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())

    def f(x, *ps):
        return functional_call(model, dict(zip(names, ps)), (x,))

    inputs = (x.detach().clone().requires_grad_(True), *params)
    kw = dict(eps=1e-6, rtol=1e-5, fast_mode=True)
    assert torch.autograd.gradcheck(f, inputs, atol=atol, **kw)
    assert torch.autograd.gradgradcheck(f, inputs, atol=10 * atol, **kw)
    # and exhaustively (not fast_mode) for the input derivatives alone
    assert torch.autograd.gradcheck(lambda x: f(x, *params), inputs[:1], eps=1e-6, atol=atol)


def _points_away_from_knots(arch_cfg, num, seed, gap=1e-3):
    """Inputs inside the grid range whose (first-layer) values are >= gap from knots."""
    a, b = arch_cfg["grid_range"]
    n = arch_cfg["grid_size"]
    rng = np.random.default_rng(seed)
    h = (b - a) / n
    u = rng.uniform(0, n, (num * 4, arch_cfg["widths"][0]))
    ok = (np.abs(u - np.round(u)) * h > gap).all(1)
    return torch.tensor(a + h * u[ok][:num])


GRAD_ARCHS = {
    "kan-deep-tanh": (KAN, dict(widths=[2, 2, 2, 1], grid_size=3, grid_range=(-1.0, 1.0))),
    "kan-linear-bias-sigmoid": (
        KAN,
        dict(
            widths=[2, 3, 1],
            grid_size=4,
            grid_range=(0.0, 1.0),
            linear_first=True,
            linear_bias=True,
            squash="sigmoid",
            output_bias=True,
        ),
    ),
}


GRAD_CASES = [
    *[("kan", k) for k in (1, 3, 5)],
    # ReLU-basis parameters: d y / d w = psi up to (n+k)^k, so a finite-difference step of
    # 1e-6 in w moves hidden values by up to (n+k)^k * 1e-6 (0.03 for k = 5 here) and the
    # numerical Jacobian itself is wrong through the next layer's curvature; k <= 3.
    *[("mcmlp-spline", k) for k in (2, 3)],
    *[("mcmlp-relu", k) for k in (1, 3)],
]


@pytest.mark.parametrize("family, degree", GRAD_CASES)
@pytest.mark.parametrize("arch", GRAD_ARCHS)
def test_gradcheck_spline_families(arch, family, degree):
    cls, cfg = GRAD_ARCHS[arch]
    cfg = {**cfg, "squash": cfg.get("squash", "tanh")}
    torch.manual_seed(degree)
    kan = KAN(degree=degree, init_std=1.0, **cfg).double()
    if family == "kan":
        model = kan
    else:
        model = kan.to_multichannel(evaluation=family.split("-")[1])
    x = _points_away_from_knots(cfg, 4, seed=degree)
    # Finite differences of a power-ReLU form carry its cancellation round-off,
    # ~ (n+k)^k eps |f| / eps_fd: scale atol for the ReLU-basis parameters.
    nb = cfg["grid_size"] + degree
    _gradcheck_model(model, x, atol=1e-7 if family == "kan" else 1e-7 * max(1, nb**degree / 100))


def test_gradcheck_mlp_tanh():
    torch.manual_seed(0)
    model = MLP([2, 4, 4, 1], "tanh", output_bias=True, input_domain=[(0, 1), (-2, 3)]).double()
    _gradcheck_model(model, torch.rand(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("degree", [2, 3, 4, 5])
@pytest.mark.parametrize("arch", ["deep-tanh-domain", "linear-bias-tanh-deep", "deep-clamped"])
def test_input_derivatives_match_scipy_chain_rule(arch, degree, reference_derivatives, measured):
    """u_x and u_xx (PINNs) from autograd vs forward-mode chain rule with scipy's
    ``BSpline.derivative``, for every input coordinate."""
    model = build(KAN, arch, degree, seed=degree, init_std=0.5)
    x = sample_inputs(arch, 300, seed=degree, margin=0.0)
    for evaluation in ("kan", "spline", "relu"):
        m = model if evaluation == "kan" else model.to_multichannel(evaluation=evaluation)
        xg = x.clone().requires_grad_(True)
        u = m(xg)[:, 0]
        (du,) = torch.autograd.grad(u.sum(), xg, create_graph=True)
        for i in range(x.shape[1]):
            (d2u,) = torch.autograd.grad(du[:, i].sum(), xg, retain_graph=True)
            ref_u, ref_du, ref_d2u = reference_derivatives(model, x, i)
            s1 = max(1.0, np.abs(ref_du[:, 0]).max())
            s2 = max(1.0, np.abs(ref_d2u[:, 0]).max())
            e1 = np.abs(du[:, i].detach().numpy() - ref_du[:, 0]).max() / s1
            e2 = np.abs(d2u[:, i].numpy() - ref_d2u[:, 0]).max() / s2
            measured(f"u_x vs scipy chain rule ({evaluation}, rel)", e1)
            measured(f"u_xx vs scipy chain rule ({evaluation}, rel)", e2)
            tol = 1e-11 if evaluation != "relu" else max(1e-11, relu_form_tolerance(m))
            assert e1 <= tol and e2 <= tol, (evaluation, i, e1, e2)


def test_second_derivative_of_one_edge_is_the_spline_second_derivative():
    """KAN [1, 1], no squash: u_xx = S''(x) exactly (scipy), and 0 along a clamped input."""
    from conftest import scipy_knots
    from scipy.interpolate import BSpline

    torch.manual_seed(0)
    model = KAN([1, 1], 6, 3, (-2.0, 0.5), init_std=1.0).double()
    c = model.layers[0].coef.detach().numpy()[0, 0]
    spline = BSpline(scipy_knots(6, 3, -2.0, 0.5), c, 3)
    x = torch.linspace(-1.99, 0.49, 97, dtype=torch.float64).unsqueeze(1).requires_grad_(True)
    (du,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x)
    xs = x.detach().numpy()[:, 0]
    np.testing.assert_allclose(du.detach().numpy()[:, 0], spline.derivative(1)(xs), atol=1e-12)
    np.testing.assert_allclose(d2u.numpy()[:, 0], spline.derivative(2)(xs), atol=1e-11)
    xo = torch.tensor([[-2.5], [0.9]], dtype=torch.float64, requires_grad=True)
    (do,) = torch.autograd.grad(model(xo).sum(), xo, create_graph=True)
    assert (do == 0).all()


# ----------------------------------------------------------------------------- float32
def test_kan_float32_accuracy(measured):
    """One spline layer, grid 80, cubic, unit coefficients: float32 within 1e-5 of float64
    (relative to max|y|), on the same float32 inputs. Deeper: see the next test."""
    torch.manual_seed(0)
    m64 = KAN([4, 3], 80, 3, init_std=1.0).double()
    m32 = copy.deepcopy(m64).float()
    x32 = torch.rand(4000, 4) * 2 - 1
    y32 = m32(x32)
    assert y32.dtype == torch.float32
    err = measured(
        "KAN float32 vs float64, grid 80 cubic (rel)",
        max_err(y32, m64(x32.double()).detach().numpy()),
    )
    assert err <= 1e-5, err


def test_kan_float32_accuracy_deep_smooth(measured):
    """[4, 5, 5, 1], tanh squash, grid 10 refined to 80 (the multilevel case): <= 5e-5.

    (With unit *random* coefficients at grid 80 the network function itself has Lipschitz
    constants ~ 1/h per layer, and float32 input rounding alone changes it by ~1e-3.)"""
    torch.manual_seed(1)
    m64 = KAN([4, 5, 5, 1], 10, 3, squash="tanh", init_std=1.0).double()
    for _ in range(3):
        m64 = m64.refined()
    m32 = copy.deepcopy(m64).float()
    x32 = torch.rand(4000, 4) * 2 - 1
    err = max_err(m32(x32), m64(x32.double()).detach().numpy())
    assert measured("KAN float32 deep smooth grid 80 (rel)", err) <= 5e-5, err


def test_multichannel_spline_path_float32_accurate(measured):
    """evaluation="spline" in float32 computes the function of its (float32) weights to
    1e-5: compared with the same weights evaluated in float64 by numpy power ReLUs."""
    torch.manual_seed(2)
    kan = KAN([4, 3], 80, 3, init_std=1.0).double()
    mc32 = kan.to_multichannel(evaluation="spline").float()
    x32 = torch.rand(4000, 4) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y32 = mc32(x32)
    mc64 = copy.deepcopy(mc32).double()  # exactly the float32 weights, in float64
    ref = mc64(x32.double()).detach().numpy()
    err = measured("MultichannelMLP spline path float32 grid 80 (rel)", max_err(y32, ref))
    assert err <= 1e-5, err


def test_multichannel_relu_path_float32_warns_on_fine_grids():
    torch.manual_seed(3)
    kan = KAN([4, 3], 80, 3, init_std=1.0).double()
    mc32 = kan.to_multichannel(evaluation="relu").float()
    x32 = torch.rand(2000, 4) * 2 - 1
    with pytest.warns(UserWarning, match="power-ReLU evaluation in torch.float32"):
        y32 = mc32(x32)
    ref = copy.deepcopy(mc32).double()(x32.double()).detach().numpy()
    assert max_err(y32, ref) > 1e-3  # the warning is warranted: catastrophic cancellation
    with warnings.catch_warnings():  # float64: accurate, no warning
        warnings.simplefilter("error")
        kan.to_multichannel(evaluation="relu")(x32.double())


def test_multichannel_relu_path_float32_quiet_and_accurate_on_coarse_grids():
    """Below RELU_PATH_TOLERANCE (grid 3, linear) the literal form is accurate in float32."""
    torch.manual_seed(4)
    mc32 = KAN([3, 2], 3, 1, init_std=1.0).double().to_multichannel(evaluation="relu").float()
    x32 = torch.rand(2000, 3) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y32 = mc32(x32)
    ref = copy.deepcopy(mc32).double()(x32.double()).detach().numpy()
    assert max_err(y32, ref) <= max(1e-6, RELU_PATH_TOLERANCE * 1e-2)


# ----------------------------------------------------------------------------- counts
@pytest.mark.parametrize(
    "model, expected",
    [
        *[(KAN([3, 5, 1], n, 3), p) for n, p in [(4, 140), (8, 220), (16, 380), (32, 700)]],
        *[
            (KAN([2, 20, 20, 1], n, 3, linear_first=True, linear_bias=False), p)
            for n, p in [(5, 3400), (10, 5500), (20, 9700)]
        ],
        (KAN([2, 5, 1], 5, 4, linear_first=True, linear_bias=False), 55),
        (KAN([2, 5, 1], 40, 4, linear_first=True, linear_bias=False), 230),
        (KAN([2, 5, 1], 5, 3, linear_first=True, linear_bias=True), 55),
        (KAN([2, 5, 1], 40, 3, linear_first=True, linear_bias=True), 230),
        (MultichannelMLP([3, 5, 1], 4, 3), 140),
        (MLP([2, 5, 1], "relu"), 20),
        (MLP([2, 30, 1], "relu"), 120),
        (MLP([2, 20, 20, 1], "relu"), 500),
        (MLP([3, 16, 16, 1], "tanh"), 352),
        (MLP([2, 56, 56, 1], "tanh"), 3416),
    ],
    ids=lambda v: v if isinstance(v, int) else type(v).__name__,
)
def test_parameter_counts_match_the_paper(model, expected):
    assert count_parameters(model) == expected


def test_parameter_counts_follow_refinement():
    """Poisson 140 -> 220 -> 380 -> 700 and Burgers 3400 -> 5500 -> 9700 via refined()."""
    m = KAN([3, 5, 1], 4, 3)
    counts = [count_parameters(m)]
    for _ in range(3):
        m = m.refined()
        counts.append(count_parameters(m))
    assert counts == [140, 220, 380, 700]
    b = MultichannelMLP([2, 20, 20, 1], 5, 3, linear_first=True)
    assert [count_parameters(b), count_parameters(b.refined().refined())] == [3400, 9700]


def test_registry_names_the_three_families():
    assert MODELS["kan"] is KAN and MODELS["mcmlp"] is MultichannelMLP and MODELS["mlp"] is MLP
    with pytest.raises(KeyError, match="unknown model 'transformer'; known: .*kan, mcmlp, mlp"):
        MODELS["transformer"]


# ----------------------------------------------------------------------------- MLP
def test_mlp_matches_numpy_and_maps_input_domain():
    torch.manual_seed(0)
    model = MLP([2, 6, 5, 1], "tanh", input_domain=[(0.0, 4.0), (-1.0, 9.0)]).double()
    x = torch.rand(300, 2, dtype=torch.float64) * torch.tensor([4.0, 10.0]) + torch.tensor(
        [0.0, -1.0]
    )
    z = -1 + 2 * (x.numpy() - [0.0, -1.0]) / [4.0, 10.0]
    lins = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(lins):
        z = z @ lin.weight.detach().numpy().T
        if lin.bias is not None:
            z = z + lin.bias.detach().numpy()
        if i < len(lins) - 1:
            z = np.tanh(z)
    assert lins[-1].bias is None
    np.testing.assert_allclose(model(x).detach().numpy(), z, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: KAN([2, 3, 1], 5, 6), "degree must be an integer in 0..5"),
        (lambda: KAN([2, 3, 1], 0, 3), "grid_size must be an integer >= 1"),
        (lambda: KAN([2, 3, 1], 5, 3, (1.0, -1.0)), "grid_range must be finite with a < b"),
        (lambda: KAN([2, 3, 1], 5, 3, (0.0, 1.0, 2.0)), "grid_range must be two numbers"),
        (lambda: MultichannelMLP([2, 3, 1], 5, 3, (0.0, math.inf)), "grid_range"),
        (lambda: KAN([2, 3, 1], 5, 3, squash="relu"), "squash must be None, 'tanh' or"),
        (lambda: KAN([2], 5, 3), "widths must be >= 2 positive integers"),
        (lambda: KAN([2, 0, 1], 5, 3), "widths"),
        (lambda: KAN([2, 3.5, 1], 5, 3), "widths"),
        (lambda: KAN([2, 1], 5, 3, linear_first=True), "widths must be >= 3"),
        (lambda: MultichannelMLP([2, 1], 5, 3, evaluation="fast"), "evaluation must be"),
        (lambda: KAN([2, 1], 5, 3, input_domain=[(0, 1)]), "input_domain has 1 intervals"),
        (lambda: KAN([2, 1], 5, 3, input_domain=[(0, 1), (2, 2)]), "lo < hi"),
        (lambda: MLP([2, 3, 1], "swish"), "unknown activation 'swish'; known:"),
        (lambda: MLP([2]), "widths"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_integer_sizes_are_accepted():
    m = KAN([np.int64(2), np.int64(3), 1], np.int64(4), np.int64(3))
    assert m.widths == [2, 3, 1] and m.grid_size == 4 and type(m.grid_size) is int


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("degree", [0, 3, 5])
def test_cuda_refinement_and_conversion(degree, reference):
    arch = "linear-bias-tanh-deep"
    kan = build(KAN, arch, degree).cuda()
    x = sample_inputs(arch)
    y = reference(kan, x)
    xc = x.cuda()
    current = kan
    for _ in range(1, LEVELS):
        current = current.refined()
        assert current.layers[0].coef.device.type == "cuda"
        assert max_err(current(xc), y) <= 1e-12
    for evaluation in ("spline", "relu"):
        mc = kan.to_multichannel(evaluation=evaluation)
        assert mc.layers[0].weight.device.type == "cuda"
        assert max_err(mc(xc), y) <= max(1e-10, relu_form_tolerance(mc))
        assert max_err(mc.refined()(xc), y) <= relu_form_tolerance(mc.refined())
