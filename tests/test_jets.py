"""Forward jets (``bench_mlkan.jets``, ``jets_c``) and the PINN derivative API
(``tasks.pinn.derivatives``).

References, never the jet code itself: nested ``torch.autograd.grad`` on the same model (the
reference route; its spline maps are checked against scipy in test_kernels), scipy
``BSpline`` derivatives through ``conftest.reference_jet`` (numpy/scipy only), hand-derived
formulas, and ``torch.autograd.gradcheck`` (finite differences) for the custom Functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bench_mlkan import jets, jets_c
from bench_mlkan import kernels as K
from bench_mlkan.models import KAN, MLP, MultichannelMLP
from bench_mlkan.splines import Grid
from bench_mlkan.tasks import TASKS, pinn
from bench_mlkan.tasks.poisson_interface import LevelSetFeatures

C_BUILT = jets_c.load() is not None and K.KERNELS["c"].available(torch.device("cpu"), torch.float64)
needs_c = pytest.mark.skipif(not C_BUILT, reason="the C kernels are not built here")


# ----------------------------------------------------------------------------- helpers
def all_pairs(d: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(d) for j in range(i, d)]


def nested(fn, x: torch.Tensor, pairs):
    """(u (N,), first (d, N), second (M, N)) of a scalar-output fn by nested autograd."""
    x = x.detach().clone().requires_grad_(True)
    u = fn(x)
    g = pinn.gradient(u, x)
    second = [pinn.gradient(g[:, i], x)[:, j] for i, j in pairs]
    return u[:, 0], g.T, torch.stack(second) if second else g.new_zeros(0, x.shape[0])


def jetted(model, x: torch.Tensor, pairs):
    """The same from ``jets.forward`` with every coordinate a direction."""
    j = jets.forward(model, jets.seed(x, range(x.shape[1]), pairs))
    return j.value[:, 0], j.first[..., 0], j.second[..., 0]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max(1, max |b|)."""
    if a.numel() == 0:
        return 0.0
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def loss_of(u, first, second) -> torch.Tensor:
    """A loss using every row, with unequal weights (so no row can hide in a sum)."""
    terms = [u, *first, *second]
    return sum((k + 1.0) * (t**2).mean() + 0.1 * t.sum() / t.numel() for k, t in enumerate(terms))


def assert_routes_agree(model, x, rtol: float = 1e-10):
    pairs = all_pairs(x.shape[1])
    uj, fj, sj = jetted(model, x, pairs)
    un, fn_, sn = nested(model, x, pairs)
    errs = {"u": rel_err(uj, un), "first": rel_err(fj, fn_), "second": rel_err(sj, sn)}
    params = [p for p in model.parameters() if p.requires_grad]
    gj = torch.autograd.grad(loss_of(uj, fj, sj), params, allow_unused=True)
    gn = torch.autograd.grad(loss_of(un, fn_, sn), params, allow_unused=True)
    for k, (a, b) in enumerate(zip(gj, gn)):
        a = torch.zeros_like(params[k]) if a is None else a
        b = torch.zeros_like(params[k]) if b is None else b
        errs[f"grad{k}"] = rel_err(a, b)
    assert max(errs.values()) < rtol, errs
    return errs


def box(d: int) -> list[tuple[float, float]]:
    return [(-1.0, 1.0)] * d


def spline_model(family: str, arch: str, d: int, degree: int, seed: int = 0):
    """KAN / MultichannelMLP in one of the layouts the models support."""
    torch.manual_seed(seed)
    cls = KAN if family == "kan" else MultichannelMLP
    opts: dict = dict(grid_size=4, degree=degree, input_domain=box(d), init_std=1.0)
    if arch == "plain":
        widths = [d, 3, 1]
    elif arch == "tanh":
        widths, opts["squash"] = [d, 4, 3, 1], "tanh"
    elif arch == "linear-sigmoid":
        widths = [d, 4, 3, 1]
        opts.update(linear_first=True, linear_bias=True, squash="sigmoid", output_bias=True)
    else:  # "linear": values leave the grid (clamped) between layers
        widths, opts["linear_first"] = [d, 4, 3, 1], True
    model = cls(widths, **opts).double()
    if arch == "linear":
        with torch.no_grad():
            model.linear.weight.mul_(3.0)
    return model


def points(d: int, n: int = 40, seed: int = 1) -> torch.Tensor:
    """Random points in the box, points exactly on the knots of grid 4 (h = 1/2), on the
    ends and outside the box (clamped)."""
    g = torch.Generator().manual_seed(seed)
    inside = 2 * torch.rand(n, d, generator=g, dtype=torch.float64) - 1
    knots = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    on = knots[torch.randint(0, 5, (15, d), generator=g)]
    mixed = inside[:15].clone()
    mixed[:, 0] = knots[torch.randint(0, 5, (15,), generator=g)]
    outside = 1.5 * torch.sign(2 * torch.rand(6, d, generator=g, dtype=torch.float64) - 1)
    return torch.cat([inside, on, mixed, outside, inside[:4] * 1.3])


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("degree", range(6))
@pytest.mark.parametrize("arch", ["plain", "tanh", "linear-sigmoid", "linear"])
@pytest.mark.parametrize("family", ["kan", "mcmlp"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_spline_models_jets_equal_nested_autograd(family, arch, d, degree, measured):
    """Values, every first and second derivative (mixed included) and the parameter
    gradient of a loss built from them; points inside, on knots, on the ends and outside."""
    model = spline_model(family, arch, d, degree)
    assert jets.supports(model)
    errs = assert_routes_agree(model, points(d))
    measured(f"jets vs nested autograd, {family}", max(errs.values()))


@pytest.mark.parametrize("degree", [0, 1])
def test_low_degree_second_derivatives_vanish(degree):
    """Splines of degree 0/1 composed without a squash: piecewise constant/linear."""
    model = spline_model("kan", "plain", 2, degree)
    _, first, second = (t.detach() for t in jetted(model, points(2), all_pairs(2)))
    assert float(second.abs().max()) == 0.0
    assert (float(first.abs().max()) > 0) == (degree == 1)


@pytest.mark.parametrize("degree", range(6))
@pytest.mark.parametrize("arch", ["plain", "tanh", "linear-sigmoid"])
def test_jets_equal_scipy_bspline_derivatives(arch, degree, reference_derivatives, measured):
    """Independent reference: forward chain rule with scipy's BSpline.derivative (points
    off the knots and off the ends: the reference's one-sided choice is its own)."""
    model = spline_model("kan", arch, 2, degree, seed=3)
    g = torch.Generator().manual_seed(5)
    x = 1.8 * torch.rand(50, 2, generator=g, dtype=torch.float64) - 0.9
    x = x[((x * 2).frac().abs() > 1e-3).all(1)]  # off the knots of grid 4 (h = 1/2)
    pairs = [(0, 0), (1, 1)]
    u, first, second = jetted(model, x, pairs)
    for i in range(2):
        ru, r1, r2 = (torch.from_numpy(v[:, 0]) for v in reference_derivatives(model, x, i))
        err = max(rel_err(u, ru), rel_err(first[i], r1), rel_err(second[i], r2))
        assert err < 1e-11, (i, err)
        measured("jets vs scipy BSpline derivatives", err)


def test_mcmlp_literal_relu_evaluation_is_jetted_in_spline_form():
    """``evaluation="relu"`` models: the jet uses the same function in B-spline form; the
    literal route agrees to its cancellation error (coarse grid, float64)."""
    kan = spline_model("kan", "tanh", 2, 3)
    mc = kan.to_multichannel(evaluation="relu")
    assert jets.supports(mc)
    x = points(2)
    pairs = all_pairs(2)
    a, b = jetted(mc, x, pairs), nested(mc, x, pairs)
    assert max(rel_err(s, t) for s, t in zip(a, b)) < 1e-9


ACTS = ["tanh", "relu", "silu", "gelu", "sin"]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_mlp_jets_equal_nested_autograd(activation, d):
    torch.manual_seed(0)
    model = MLP([d, 7, 5, 1], activation, output_bias=True, input_domain=box(d)).double()
    assert jets.supports(model)
    assert_routes_agree(model, points(d))


def test_sequential_with_sigmoid_and_identity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Sigmoid(), nn.Identity(), nn.Linear(6, 1)).double()
    assert jets.supports(model)
    assert_routes_agree(model, points(2))


def test_tanh_mlp_jet_equals_hand_formula():
    """u = w2 . tanh(W1 x + b1): u' = w2 . (t' W1), u'' = w2 . (t'' W1^2), by hand."""
    torch.manual_seed(0)
    model = MLP([1, 6, 1], "tanh").double()
    W1, b1 = (p.detach().numpy() for p in (model.net[0].weight, model.net[0].bias))
    w2 = model.net[2].weight.detach().numpy()[0]
    x = np.linspace(-2, 2, 17)
    z = x[:, None] * W1[:, 0] + b1
    t = np.tanh(z)
    d1, d2 = 1 - t**2, -2 * t * (1 - t**2)
    ref = (t @ w2, (d1 * W1[:, 0]) @ w2, (d2 * W1[:, 0] ** 2) @ w2)
    u, first, second = jetted(model, torch.from_numpy(x[:, None]), [(0, 0)])
    for a, b in zip((u, first[0], second[0]), ref):
        assert np.abs(a.detach().numpy() - b).max() < 1e-14


@pytest.mark.parametrize("name", sorted(jets.ACTIVATIONS))
def test_activation_rules_equal_autograd(name):
    """Every rule of ``ACTIVATIONS`` (incl. power-ReLU 0..5) against autograd of f."""
    fns = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "silu": torch.nn.functional.silu,
        "sin": torch.sin,
        "relu": torch.relu,
        "gelu": torch.nn.functional.gelu,
    }
    k = int(name[-1]) if name.startswith("power_relu") else None
    fn = fns[name] if k is None else (lambda z: torch.relu(z) ** k)
    x = torch.linspace(-2.1, 2.3, 23, dtype=torch.float64)[:, None]  # z = 0 not included
    wrapped = lambda z: fn(3 * z - 0.2)  # noqa: E731 - an affine input: chain rule too
    jet = jets.scale_shift(jets.seed(x, [0], [(0, 0)]), 3 * x - 0.2, torch.tensor([3.0]))
    out = jets.activation(jet, name, fn)
    un, fn_, sn = nested(wrapped, x, [(0, 0)])
    assert rel_err(out.value[:, 0], un) < 1e-14
    assert rel_err(out.first[0, :, 0], fn_[0]) < 1e-13
    assert rel_err(out.second[0, :, 0], sn[0]) < 1e-13


# ----------------------------------------------------------------------------- other paths
@pytest.mark.parametrize("kernel", ["gather", "dense", "autograd"])
def test_pytorch_fallback_paths_equal_nested_autograd(kernel, monkeypatch):
    """Without the fused kernels (another kernel chosen, or no C build): the kernels' maps
    with stacked multipliers and the PyTorch elementwise rules."""
    monkeypatch.setattr(jets_c, "load", lambda verbose=False: None)
    old = K.get_default_kernel()
    K.set_default_kernel(kernel)
    try:
        for arch in ("tanh", "linear-sigmoid"):
            assert_routes_agree(spline_model("kan", arch, 2, 3), points(2))
        torch.manual_seed(0)
        assert_routes_agree(MLP([2, 6, 1], "silu").double(), points(2))
    finally:
        K.set_default_kernel(old)


@pytest.mark.parametrize("family", ["kan", "mlp"])
def test_float32_within_stated_tolerance(family):
    """float32 jets against float64 nested autograd of the same parameters: values 1e-5,
    first derivatives 1e-4, second derivatives 1e-3 (relative to max(1, max |ref|))."""
    torch.manual_seed(0)
    if family == "kan":
        model = KAN([2, 8, 8, 1], 5, 3, squash="tanh", input_domain=box(2), init_std=1.0)
    else:
        model = MLP([2, 16, 16, 1], "tanh", input_domain=box(2))
    model64 = model.double()
    import copy

    model32 = copy.deepcopy(model64).float()
    x = points(2)
    pairs = all_pairs(2)
    u, first, second = jetted(model32, x.float(), pairs)
    ru, r1, r2 = nested(model64, x, pairs)
    assert rel_err(u.double(), ru) < 1e-5
    assert rel_err(first.double(), r1) < 1e-4
    assert rel_err(second.double(), r2) < 1e-3


def test_pointwise_feature_jet_equals_autograd():
    """``jets.pointwise`` (generic feature jets) with mixed pairs, composed with a model."""
    torch.manual_seed(0)
    feats = lambda x: torch.stack(  # noqa: E731
        [torch.cos(x[:, 0] * x[:, 1]), x[:, 1] ** 3, torch.exp(0.3 * x[:, 0])], -1
    )
    model = MLP([3, 5, 1], "tanh").double()
    x = points(2)
    pairs = all_pairs(2)
    j = jets.forward(model, jets.pointwise(feats, jets.seed(x, [0, 1], pairs)))
    un, fn_, sn = nested(lambda z: model(feats(z)), x, pairs)
    assert rel_err(j.value[:, 0], un) < 1e-13
    assert rel_err(j.first[..., 0], fn_) < 1e-12
    assert rel_err(j.second[..., 0], sn) < 1e-12


def test_jet_product_rule():
    x = points(2)
    pairs = all_pairs(2)
    s = jets.seed(x, [0, 1], pairs)
    a = jets.activation(s.column(0), "sin", torch.sin)
    b = jets.activation(s.column(1), "tanh", torch.tanh)
    ab = jets.mul(a, jets.add_to_value(b, torch.tensor([0.5], dtype=torch.float64)))
    un, fn_, sn = nested(lambda z: torch.sin(z[:, :1]) * (torch.tanh(z[:, 1:]) + 0.5), x, pairs)
    assert rel_err(ab.value[:, 0], un) < 1e-15
    assert rel_err(ab.first[..., 0], fn_) < 1e-14
    assert rel_err(ab.second[..., 0], sn) < 1e-14


def test_unsupported_modules_are_reported():
    class Custom(nn.Module):
        def forward(self, x):
            return x**2

    class OwnForward(MLP):
        def forward(self, x):
            return super().forward(x) * 2

    assert not jets.supports(Custom())
    assert not jets.supports(nn.Sequential(nn.Linear(2, 2), Custom()))
    assert not jets.supports(OwnForward([2, 3, 1]))
    assert not jets.supports(nn.GELU(approximate="tanh"))
    assert not jets.supports(lambda z: z)
    with pytest.raises(TypeError, match="no jet rule"):
        jets.forward(Custom(), jets.seed(points(2), [0]))


def test_seed_and_pairs_are_checked():
    x = points(2)
    with pytest.raises(ValueError):
        jets.seed(x, [0, 2])
    with pytest.raises(ValueError):
        jets.seed(x, [0, 1], [(1, 0)])
    with pytest.raises(ValueError):
        jets.seed(x, [0, 1], [(0, 0), (0, 0)])


# ----------------------------------------------------------------------------- C kernels
@needs_c
@pytest.mark.parametrize("degree", range(6))
@pytest.mark.parametrize("width", [1, 2, 11])  # narrow path, one vector, two vectors + pad
@pytest.mark.parametrize("pairs", [((0, 0), (0, 1), (1, 1)), ((0, 0),)])  # any D; D = 2 compiled
def test_gradcheck_spline_jet_function(degree, width, pairs):
    grid = Grid(3, degree)
    D = 2
    g = torch.Generator().manual_seed(degree)
    h = grid.h
    cell = torch.randint(0, 3, (5, 3), generator=g).double()
    x = -1 + h * (cell + 0.1 + 0.8 * torch.rand(5, 3, generator=g, dtype=torch.float64))
    x[0, 0] = 1.7  # outside: clamped, zero derivative
    X = torch.randn(D + len(pairs), 5, 3, generator=g, dtype=torch.float64)
    tab = torch.randn(3 * grid.num_basis, width, generator=g, dtype=torch.float64)
    args = [t.requires_grad_(True) for t in (x, X, tab)]

    def fn(x, X, tab):
        return jets.SplineJetFunction.apply(x, X, tab, grid, D, pairs)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


@needs_c
@pytest.mark.parametrize("kind", sorted(jets_c.ACTIVATION_KINDS))
def test_gradcheck_activation_jet_function(kind):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64)
    z[z.abs() < 0.05] = 0.3  # relu: away from the kink
    X = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    D, pairs = 2, ((0, 0), (0, 1), (1, 1))

    def aux(z):
        base = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "silu": torch.sigmoid}
        if kind == "sin":
            return [torch.cos(z).detach(), torch.sin(z).detach()]
        return [base[kind](z).detach() if kind in base else None, None]

    def fn(z, X):
        return jets.ActivationJetFunction.apply(z, X, kind, 1.5, aux(z), D, pairs)

    assert torch.autograd.gradcheck(fn, [z.requires_grad_(True), X.requires_grad_(True)])


@needs_c
@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
@pytest.mark.parametrize("width", [1, 11])
def test_spline_jet_with_the_squash_inside(kind, width):
    """The spline kernel applying the squash to its inputs equals squash-then-spline done in
    PyTorch (the jet rule of f, the dense spline map), and its backward (gradients with
    respect to z, the rows and the table) passes gradcheck."""
    grid = Grid(3, 3)
    D, pairs = 2, ((0, 0), (0, 1), (1, 1))
    g = torch.Generator().manual_seed(width)
    z = 1.5 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    X = torch.randn(D + len(pairs), 5, 3, generator=g, dtype=torch.float64)
    tab = torch.randn(3 * grid.num_basis, width, generator=g, dtype=torch.float64)
    lo, hi = grid.grid_range
    shift, scale = jets._squash_shift_scale(kind, lo, hi)
    fused = jets.SplineJetFunction.apply(z, X, tab, grid, D, pairs, (kind, shift, scale))
    base = torch.tanh(z) if kind == "tanh" else torch.sigmoid(z)
    d1, d2 = jets.ACTIVATIONS[kind](z, base)
    sq = jets.elementwise(jets.Jet(z, X, D, pairs), shift + scale * base, scale * d1, scale * d2)
    coef = tab.reshape(3, grid.num_basis, width).permute(2, 0, 1)
    ref = jets.spline(sq, coef, grid, "dense")
    for a, b in zip(fused, (ref.value, ref.rest)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    args = [t.clone().requires_grad_(True) for t in (z, X, tab)]

    def fn(z, X, tab):
        return jets.SplineJetFunction.apply(z, X, tab, grid, D, pairs, (kind, shift, scale))

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


@needs_c
@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_gradcheck_squash_jet_function(kind):
    """Value and rows of shift + scale f(z) with one backward for both cotangents."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    X = torch.randn(5, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    D, pairs = 2, ((0, 0), (0, 1), (1, 1))

    def fn(z, X):
        return jets.SquashJetFunction.apply(z, X, kind, 0.25, 1.5, D, pairs)

    assert torch.autograd.gradcheck(fn, [z, X])
    value, _ = fn(z, X)
    f = torch.tanh if kind == "tanh" else torch.sigmoid
    torch.testing.assert_close(value, 0.25 + 1.5 * f(z), rtol=0, atol=1e-15)


@needs_c
def test_c_kernels_refuse_bad_operands():
    kern = jets_c.load()
    grid = Grid(3, 3)
    x = torch.zeros(4, 2, dtype=torch.float64)
    tab = torch.zeros(2 * grid.num_basis, 3, dtype=torch.float64)
    X = torch.zeros(3, 4, 2, dtype=torch.float64)
    with pytest.raises(ValueError):
        kern.forward(x, X, tab, grid, 1, ())  # rows != D + M
    with pytest.raises(ValueError):
        kern.forward(x, X.float(), tab, grid, 2, ((0, 0),))  # dtype
    with pytest.raises(ValueError):
        kern.forward(x, X, tab[:-1], grid, 2, ((0, 0),))  # table rows
    with pytest.raises(ValueError):
        kern.forward(x, X.transpose(1, 2).contiguous().transpose(1, 2), tab, grid, 2, ((0, 0),))
    with pytest.raises(ValueError):
        kern.act_forward("tanh", 1.0, x, [None, None], X, 2, ((0, 0),))  # tanh needs aux


# ----------------------------------------------------------------------------- the API
def pinn_models(task, seed: int = 0):
    torch.manual_seed(seed)
    F, fd = task.feature_dim, task.feature_domain
    return {
        "kan": KAN([F, 4, 3, 1], 4, 3, squash="tanh", input_domain=fd, init_std=1.0).double(),
        "kan-linear": KAN(
            [F, 5, 4, 1], 4, 3, linear_first=True, squash="sigmoid", input_domain=fd, init_std=1.0
        ).double(),  # fmt: skip
        "mcmlp": MultichannelMLP([F, 4, 1], 4, 2, input_domain=fd, init_std=1.0).double(),
        "mlp": MLP([F, 8, 8, 1], "tanh", input_domain=fd).double(),
    }


PINN_CASES = [
    ("burgers_1d", {}),
    ("burgers_1d", {"boundary": "loss"}),
    ("burgers_1d_standard", {"boundary": "none"}),
    ("allen_cahn_1d", {}),
    ("allen_cahn_1d", {"periodic": "features"}),
    ("poisson_2d", {}),
    ("helmholtz_2d", {}),
    ("poisson_interface_2d", {}),
]


@pytest.mark.parametrize("name, opts", PINN_CASES)
def test_pinn_loss_terms_equal_between_routes(name, opts, monkeypatch):
    """Every PINN task's loss terms and their parameter gradients: jets == nested autograd."""
    task = TASKS[name](size="tiny", **opts)
    calls = []
    real_forward = jets.forward
    monkeypatch.setattr(jets, "forward", lambda m, j: calls.append(1) or real_forward(m, j))
    for family, model in pinn_models(task).items():
        batch = task.train_batch()
        out = {}
        for route in ("jet", "autograd"):
            calls.clear()
            with pinn.use_derivative_route(route):
                terms = task.loss_terms(model, batch, task.make_state(batch), update_state=True)
            assert bool(calls) == (route == "jet"), (family, route)
            params = list(model.parameters())
            grads = torch.autograd.grad(sum(terms.values()), params)
            out[route] = ({k: v.detach() for k, v in terms.items()}, grads)
        (tj, gj), (ta, ga) = out["jet"], out["autograd"]
        assert tj.keys() == ta.keys()
        for k in tj:
            assert math.isclose(float(tj[k]), float(ta[k]), rel_tol=1e-10, abs_tol=1e-300), (
                family,
                k,
            )
        for a, b in zip(gj, ga):
            assert rel_err(a, b) < 1e-9, family


def test_interface_one_sided_derivatives_are_the_feature_gradient():
    """u_x(0-) = du/dz1 - du/dz3 and u_x(0+) = du/dz1 + du/dz3 at x = 0 (both routes)."""
    task = TASKS["poisson_interface_2d"](size="tiny")
    model = pinn_models(task)["kan"]
    x = task.x_interface
    z = task.features(x).requires_grad_(True)
    gz = pinn.gradient(model(z), z)
    for route in ("jet", "autograd"):
        for side, ref in ((-1, gz[:, 0] - gz[:, 2]), (1, gz[:, 0] + gz[:, 2])):
            d = pinn.derivatives(task, model, x, ["u_x"], features=LevelSetFeatures(side))
            got = pinn.derivatives(
                task, model, x, ["u_x"], features=LevelSetFeatures(side), route=route
            )["u_x"]
            assert rel_err(got, ref) < 1e-12 and rel_err(d["u_x"], ref) < 1e-12


def test_derivative_names_and_laplacian():
    task = TASKS["burgers_1d"](size="tiny", boundary="none")
    model = pinn_models(task)["mlp"]
    x = points(2)
    d = pinn.derivatives(task, model, x, ["u", "u_x", "u_t", "u_xx", "u_xt", "u_tx", "u_tt"])
    assert torch.equal(d["u_xt"], d["u_tx"])
    un, fn_, sn = nested(model, x, all_pairs(2))
    for name, ref in [("u", un), ("u_x", fn_[0]), ("u_t", fn_[1]), ("u_xx", sn[0]),
                      ("u_xt", sn[1]), ("u_tt", sn[2])]:  # fmt: skip
        assert rel_err(d[name], ref) < 1e-12, name
    # "laplacian" sums the pure second derivatives of the coordinates other than "t"
    assert torch.equal(pinn.derivatives(task, model, x, ["laplacian"])["laplacian"], d["u_xx"])
    poisson = TASKS["poisson_2d"](size="tiny")
    lap = pinn.derivatives(poisson, model, x, ["laplacian"])["laplacian"]
    assert rel_err(lap, sn[0] + sn[2]) < 1e-12
    for bad in ["u_y", "v_x", "u_xxx", "grad"]:
        with pytest.raises(ValueError, match="unknown derivative"):
            pinn.derivatives(task, model, x, [bad])


def test_derivatives_with_values_is_one_pass_with_the_same_numbers(monkeypatch):
    """Values at extra point sets ride along with the derivative pass: one jet forward, the
    same derivatives as ``derivatives`` and the same values as ``predict`` (both routes)."""
    task = TASKS["burgers_1d"](size="tiny")
    calls = []
    real_rows = pinn._jet_rows
    monkeypatch.setattr(pinn, "_jet_rows", lambda *a: calls.append(1) or real_rows(*a))
    x, x0, xb = task.x_collocation, task.x_initial, task.x_boundary
    want = ("u", "u_x", "u_t", "u_xx")
    for family, model in pinn_models(task).items():
        for route in ("jet", "autograd"):
            with pinn.use_derivative_route(route):
                calls.clear()
                d, (u0, ub) = pinn.derivatives_with_values(task, model, x, want, [x0, xb])
                assert len(calls) == (route == "jet"), (family, route)
                ref = pinn.derivatives(task, model, x, want)
            for name in want:
                assert rel_err(d[name], ref[name]) < 1e-12, (family, route, name)
            for got, pts in ((u0, x0), (ub, xb)):
                assert got.shape == (pts.shape[0],)
                assert rel_err(got, task.predict(model, pinn.as_input(pts, model))[:, 0]) < 1e-12
    with pytest.raises(ValueError, match="needs 'u'"):
        pinn.derivatives_with_values(task, model, x, ("u_x",), [x0])


def test_route_selection(monkeypatch):
    task = TASKS["poisson_2d"](size="tiny")
    model = pinn_models(task)["kan"]
    calls = []
    real_forward = jets.forward
    monkeypatch.setattr(jets, "forward", lambda m, j: calls.append(1) or real_forward(m, j))
    x = points(2)
    monkeypatch.delenv(pinn.ROUTE_ENV, raising=False)
    assert pinn.derivative_route() == "jet"
    pinn.derivatives(task, model, x, ["u_x"])
    assert calls
    calls.clear()
    monkeypatch.setenv(pinn.ROUTE_ENV, "autograd")
    assert pinn.derivative_route() == "autograd"
    pinn.derivatives(task, model, x, ["u_x"])
    assert not calls
    with pinn.use_derivative_route("jet"):
        pinn.derivatives(task, model, x, ["u_x"])
        assert calls
    assert pinn.derivative_route() == "autograd"
    monkeypatch.setenv(pinn.ROUTE_ENV, "forward")
    with pytest.raises(ValueError, match="unknown derivative route"):
        pinn.derivative_route()
    # callables and unsupported modules take the autograd route even when jets are asked
    monkeypatch.setenv(pinn.ROUTE_ENV, "jet")
    calls.clear()
    pinn.derivatives(task, lambda z: model(z), x, ["u_x"])
    assert not calls


def test_overridden_predict_falls_back_to_autograd(monkeypatch):
    """A task computing its prediction its own way is never jetted (it would be wrong)."""

    class Doubled(type(TASKS["poisson_2d"](size="tiny"))):
        def predict(self, model, x):
            return 2 * model(x)

    task, base = Doubled(size="tiny"), TASKS["poisson_2d"](size="tiny")
    model = pinn_models(task)["mlp"]
    x = points(2)
    got = pinn.derivatives(task, model, x, ["u_x"], route="jet")["u_x"]
    ref = pinn.derivatives(base, model, x, ["u_x"], route="autograd")["u_x"]
    assert rel_err(got, 2 * ref) < 1e-14
