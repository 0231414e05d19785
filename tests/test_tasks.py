"""Tasks: the registry, the task contract, point sets, loss machinery, references and
a few training steps with every model family (plain torch loop and the engine).

The Burgers and Allen-Cahn references are also checked here at small scale; the full
Allen-Cahn reference (N = 4096, ~15-30 s to compute once) is checked in
tests/test_references.py (marked slow).
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import json  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bench_mlkan.models import KAN, MLP, MultichannelMLP  # noqa: E402
from bench_mlkan.tasks import (
    TASKS,  # noqa: E402
    pinn,  # noqa: E402
)
from bench_mlkan.tasks import allen_cahn as ac  # noqa: E402
from bench_mlkan.tasks import burgers as bg  # noqa: E402
from bench_mlkan.tasks import poisson_interface as pi2d  # noqa: E402

PI = math.pi
PINN_TASKS = [
    "poisson_interface_2d",
    "burgers_1d",
    "burgers_1d_standard",
    "allen_cahn_1d",
    "poisson_2d",
    "helmholtz_2d",
]


def make(name: str, **kw):
    """A tiny task; the Allen-Cahn reference stays in-process (no disk cache)."""
    if name == "allen_cahn_1d":
        kw.setdefault("cache_dir", "")
    return TASKS[name](size="tiny", **kw)


def random_points(task, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, task.input_dim, generator=g, dtype=torch.float64)
    lo = torch.tensor([d[0] for d in task.domain], dtype=torch.float64)
    hi = torch.tensor([d[1] for d in task.domain], dtype=torch.float64)
    return lo + (hi - lo) * u


def shards(d: dict, world: int):
    """The engine's sharding: every world-th point of every tensor."""
    return [{k: v[r::world] for k, v in d.items()} for r in range(world)]


# ----------------------------------------------------------------------------- registry
def test_registry_has_every_task():
    for name in PINN_TASKS + ["regression_rotated", "function_regression"]:
        assert name in TASKS and TASKS[name].name == name


def test_registry_unknown_name_lists_known():
    with pytest.raises(KeyError) as e:
        TASKS["no_such_task"]
    for name in PINN_TASKS:
        assert name in str(e.value)


def test_unknown_size_lists_known():
    with pytest.raises(ValueError, match="paper"):
        TASKS["burgers_1d"](size="huge")


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", PINN_TASKS)
def test_contract(name):
    task = make(name)
    assert task.kind == "pinn" and task.derivative_order == 2
    assert task.input_dim == len(task.domain) and task.output_dim == 1
    batch = task.train_batch()
    train_points = []
    n_points = {v.shape[0] for k, v in batch.items() if k.startswith("x_")}
    for key, v in batch.items():
        if key.startswith("x_"):  # point sets (the contract's naming)
            assert v.dtype == torch.float64 and v.ndim == 2 and v.shape[1] == task.input_dim, key
            train_points.append(v)
        elif v.is_floating_point():  # per-point data (e.g. a precomputed source term)
            assert v.dtype == torch.float64 and v.shape[0] in n_points, key
        else:  # point indices
            assert v.ndim == 1 and v.dtype == torch.int64, key
    for v in train_points:  # inside the domain
        for i, (lo, hi) in enumerate(task.domain):
            assert bool((v[:, i] >= lo).all() and (v[:, i] <= hi).all())
    state = task.make_state(batch)
    for v in state.values():
        assert v.shape[0] in [b.shape[0] for b in batch.values()]
    # features inside feature_domain, shape (N, feature_dim)
    x = random_points(task, 200)
    z = task.features(x)
    assert z.shape == (200, task.feature_dim) and len(task.feature_domain) == task.feature_dim
    for i, (lo, hi) in enumerate(task.feature_domain):
        assert bool((z[:, i] >= lo - 1e-12).all() and (z[:, i] <= hi + 1e-12).all())
    ref = task.reference(x)
    assert ref.shape == (200, 1) and ref.dtype == torch.float64 and torch.isfinite(ref).all()
    # evaluation points: in the domain, never a training point
    ev = task.eval_points()
    assert ev.dtype == torch.float64 and ev.shape[1] == task.input_dim
    dist = torch.cdist(ev, torch.cat(train_points)).min()
    assert float(dist) > 1e-6
    json.dumps(task.describe())
    json.dumps(task.metadata())


def test_point_set_sizes_match_the_paper():
    t = TASKS["poisson_interface_2d"]()
    assert (len(t.x_interior), len(t.x_boundary), len(t.x_interface)) == (2401, 200, 49)
    assert bool((t.x_interface[:, 0] == 0).all())
    assert torch.cdist(t.x_interface, t.x_interior).min(1).values.max() == 0  # I is in V
    t = TASKS["burgers_1d"]()
    assert (len(t.x_collocation), len(t.x_initial)) == (4096, 64)
    assert "x_boundary" not in t.train_batch()  # hard boundary: the paper's two terms
    t = TASKS["allen_cahn_1d"]()  # does not compute the reference
    assert (len(t.x_collocation), len(t.x_initial)) == (20000, 501)
    t = TASKS["poisson_2d"]()
    assert (len(t.x_interior), len(t.x_boundary)) == (2401, 200)


def test_explicit_count_overrides():
    t = TASKS["poisson_interface_2d"](size="tiny", points_per_dim=13)
    assert (len(t.x_interior), len(t.x_boundary), len(t.x_interface)) == (121, 48, 11)
    with pytest.raises(ValueError, match="odd"):
        TASKS["poisson_interface_2d"](points_per_dim=12)
    t = TASKS["burgers_1d"](size="tiny", n_x=7, n_t=5, n_initial=9, boundary="loss")
    b = t.train_batch()
    assert (len(b["x_collocation"]), len(b["x_initial"]), len(b["x_boundary"])) == (35, 9, 10)
    t = make("allen_cahn_1d", n_collocation=33, n_initial=7, n_boundary=5)
    b = t.train_batch()
    assert (len(b["x_collocation"]), len(b["x_initial"]), len(b["x_left"])) == (33, 7, 5)
    t = make("poisson_2d", points_per_dim=5)
    assert (len(t.x_interior), len(t.x_boundary)) == (9, 16)


@pytest.mark.parametrize("name", PINN_TASKS)
def test_loss_terms_are_additive_over_shards(name):
    """The engine shards every tensor as v[rank::world]; the shard losses sum to the loss."""
    torch.manual_seed(0)
    task = make(name)
    model = KAN([task.feature_dim, 4, 1], 4, 3, input_domain=task.feature_domain).double()
    batch = task.train_batch()
    full = task.loss_terms(model, batch, task.make_state(batch), update_state=False)
    parts = [
        task.loss_terms(model, b, s, update_state=False)
        for b, s in zip(shards(batch, 3), shards(task.make_state(batch), 3))
    ]
    for k, v in full.items():
        assert torch.allclose(sum(p[k] for p in parts), v, rtol=1e-12, atol=0), k


# ----------------------------------------------------------------------------- attention
def test_rba_update_formula_and_in_place_state():
    att = pinn.ResidualAttention("w", "i", mu=0.1)
    batch = {"i": torch.arange(4)}
    state = att.init_state(batch)
    r = torch.tensor([1.0, -2.0, 4.0, 0.0], dtype=torch.float64)
    w = att.weights(state, batch, r, update=True)
    expect = 0.9 * 1 + 0.1 * torch.tensor([0.25, 0.5, 1.0, 0.0], dtype=torch.float64)
    assert torch.allclose(state["w"], expect) and torch.allclose(w, expect)
    assert torch.equal(att.weights(state, batch, r, update=False), state["w"])
    # full state + global indices of a shard: only those entries change, global max local
    state = att.init_state(batch)
    shard = {"i": torch.tensor([1, 3])}
    att.weights(state, shard, torch.tensor([2.0, 1.0], dtype=torch.float64), update=True)
    assert torch.allclose(state["w"], torch.tensor([1.0, 1.0, 1.0, 0.95], dtype=torch.float64))


def test_rba_max_is_all_reduced_under_distributed(monkeypatch):
    """With torch.distributed initialised the max over |r| is global: sharded updates
    equal the unsharded one. (all_reduce is faked: two 'ranks' run in turn.)"""
    r = torch.tensor([1.0, -3.0, 0.5, 6.0, -2.0], dtype=torch.float64)
    att = pinn.ResidualAttention("w", "i", mu=0.3)
    batch = {"i": torch.arange(5)}
    full = att.init_state(batch)
    att.weights(full, batch, r, update=True)

    def all_reduce(t, op=None):
        assert op == torch.distributed.ReduceOp.MAX
        t.fill_(6.0)  # the max over all ranks

    monkeypatch.setattr(pinn.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(pinn.dist, "all_reduce", all_reduce)
    state = att.init_state(batch)
    for b, s, rr in zip(shards(batch, 2), shards(state, 2), (r[0::2], r[1::2])):
        att.weights(s, b, rr, update=True)
    assert torch.allclose(state["w"], full["w"], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["poisson_interface_2d", "allen_cahn_1d"])
def test_rba_state_updates_only_when_asked(name):
    task = make(name)
    model = MLP([task.feature_dim, 6, 1], input_domain=task.feature_domain).double()
    batch = task.train_batch()
    state = task.make_state(batch)
    (key,) = state
    assert bool((state[key] == 1).all())
    task.loss_terms(model, batch, state, update_state=False)
    assert bool((state[key] == 1).all())
    task.loss_terms(model, batch, state, update_state=True)
    w = state[key]
    assert bool((w <= 1).all() and (w >= 1 - task.attention.mu).all() and (w < 1).any())
    assert math.isclose(float(w.max()), 1.0, rel_tol=0, abs_tol=1e-15)  # the max residual


# ----------------------------------------------------------------------------- analytic
def _grad(u, x):
    return torch.autograd.grad(u.sum(), x, create_graph=True)[0]


def test_poisson_interface_reference_satisfies_pde_and_conditions():
    task = TASKS["poisson_interface_2d"](size="tiny")
    x = random_points(task, 2000, seed=1)
    x = x[x[:, 0].abs() > 1e-3].requires_grad_(True)
    u = task.reference(x)
    g = _grad(u, x)
    lap = _grad(g[:, 0], x)[:, 0] + _grad(g[:, 1], x)[:, 1]
    r = pi2d.coefficient(x) * lap - pi2d.source(x)
    assert float(r.detach().abs().max()) < 1e-8 * 10 * PI**2
    # boundary
    assert float(task.reference(task.x_boundary).abs().max()) < 1e-14
    # interface: continuity and continuous flux, each side from its own formula
    y = torch.linspace(-1, 1, 101, dtype=torch.float64)
    x0 = torch.stack([torch.zeros_like(y), y], -1).requires_grad_(True)
    left = torch.sin(PI * x0[:, 0]) * torch.sin(3 * PI * x0[:, 1])
    right = torch.sin(2 * PI * x0[:, 0]) * torch.sin(3 * PI * x0[:, 1])
    assert float((left - right).detach().abs().max()) < 1e-15
    flux = pi2d.EPS_LEFT * _grad(left, x0)[:, 0] - pi2d.EPS_RIGHT * _grad(right, x0)[:, 0]
    assert float(flux.detach().abs().max()) < 1e-12
    # the smooth feature-space form equals the piecewise reference
    xe = random_points(task, 500, seed=2)
    assert torch.allclose(pi2d.exact_in_features(task.features(xe)), task.reference(xe), atol=1e-14)


def test_poisson_interface_exact_model_has_zero_loss():
    """The exact solution as a function of (x, y, |x|): every loss term vanishes, which
    checks the one-sided derivatives and the flux term of the loss."""
    task = TASKS["poisson_interface_2d"]()
    batch = task.train_batch()
    terms = task.loss_terms(pi2d.exact_in_features, batch, task.make_state(batch), True)
    for k, v in terms.items():
        assert float(v.detach()) < 1e-20, k
    # a model with a wrong slope on one side has a flux jump
    wrong = lambda z: pi2d.exact_in_features(z) + 0.1 * z[:, 2:3] * torch.sin(3 * PI * z[:, 1:2])
    assert float(task.loss_terms(wrong, batch, task.make_state(batch))["interface"].detach()) > 1e-4


@pytest.mark.parametrize("name", ["poisson_2d", "helmholtz_2d"])
def test_dirichlet_references_satisfy_pde(name):
    task = make(name)
    x = random_points(task, 1000, seed=3).requires_grad_(True)
    u = task.reference(x)
    g = _grad(u, x)
    lap = _grad(g[:, 0], x)[:, 0] + _grad(g[:, 1], x)[:, 1]
    r = lap + task.k_squared * u[:, 0] - task.source(x)
    assert float(r.detach().abs().max()) < 1e-8 * task.source_max
    assert float(task.reference(task.x_boundary).abs().max()) < 1e-14
    paper = TASKS[name]()
    b = paper.train_batch()
    terms = paper.loss_terms(paper.reference, b, paper.make_state(b))
    for k, v in terms.items():
        assert float(v.detach()) < 1e-20, k


# ----------------------------------------------------------------------------- Burgers
@pytest.mark.parametrize("nu", [bg.NU_PAPER, bg.NU_STANDARD])
def test_burgers_reference_initial_boundary_symmetry(nu):
    x = torch.linspace(-1, 1, 201, dtype=torch.float64)
    zero = torch.zeros_like(x)
    assert torch.equal(bg.cole_hopf(torch.stack([x, zero], -1), nu)[:, 0], -torch.sin(PI * x))
    near0 = bg.cole_hopf(torch.stack([x, torch.full_like(x, 1e-9)], -1), nu)[:, 0]
    assert float((near0 + torch.sin(PI * x)).abs().max()) < 1e-6
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    for s in (-1.0, 1.0):
        ub = bg.cole_hopf(torch.stack([torch.full_like(t, s), t], -1), nu)
        assert float(ub.abs().max()) < bg.REFERENCE_ACCURACY
    p = random_points(TASKS["burgers_1d"](size="tiny"), 500, seed=4)
    q = torch.stack([-p[:, 0], p[:, 1]], -1)
    assert torch.allclose(bg.cole_hopf(q, nu), -bg.cole_hopf(p, nu), atol=1e-14, rtol=0)


def _burgers_points(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(300, 2, generator=g, dtype=torch.float64)
    p = torch.stack([2 * p[:, 0] - 1, 0.02 + 0.96 * p[:, 1]], -1)
    s = torch.rand(100, 2, generator=g, dtype=torch.float64)  # around the shock
    s = torch.stack([0.02 * (2 * s[:, 0] - 1), 0.3 + 0.7 * s[:, 1]], -1)
    return torch.cat([p, s])


@pytest.mark.parametrize("nu", [bg.NU_PAPER, bg.NU_STANDARD])
def test_burgers_reference_satisfies_pde_by_finite_differences(nu):
    """Independent of the quadrature's derivatives: central differences, h = 1e-5
    (truncation <~ 1e-6 of the terms' scale, up to |u u_x| ~ 115 at the shock)."""
    p, h = _burgers_points(5), 1e-5
    f = lambda q: bg.cole_hopf(q, nu)[:, 0]
    ex = torch.tensor([h, 0.0], dtype=torch.float64)
    et = torch.tensor([0.0, h], dtype=torch.float64)
    u, up, um = f(p), f(p + ex), f(p - ex)
    ut = (f(p + et) - f(p - et)) / (2 * h)
    ux, uxx = (up - um) / (2 * h), (up - 2 * u + um) / h**2
    r = ut + u * ux - nu * uxx
    scale = ut.abs() + (u * ux).abs() + nu * uxx.abs()
    assert float(scale.max()) > 30  # the points do reach the steep region
    assert bool((r.abs() <= 2e-5 * scale + 1e-7).all()), float((r.abs() / (scale + 1e-7)).max())


@pytest.mark.parametrize("nu", [bg.NU_PAPER, bg.NU_STANDARD])
def test_burgers_exact_model_has_zero_loss(nu):
    """Autograd through the quadrature: the PINN residual of the reference itself."""
    task = TASKS["burgers_1d"](nu=nu, boundary="none")
    batch = task.train_batch()
    batch["x_collocation"] = batch["x_collocation"][batch["x_collocation"][:, 1] > 0]
    ref = lambda z: bg.cole_hopf(z, nu)
    terms = task.loss_terms(ref, batch, {})
    assert float(terms["pde"].detach()) < 1e-24 and float(terms["initial"].detach()) == 0.0


@pytest.mark.parametrize("nu", [bg.NU_PAPER, bg.NU_STANDARD])
def test_burgers_reference_converged_under_refinement(nu):
    """Halving the quadrature step and widening the range change nothing above the
    stated accuracy."""
    p = _burgers_points(6)
    base = bg.cole_hopf(p, nu)
    finer = bg.cole_hopf(p, nu, bg.quadrature_nodes(nu, 1.0, refine=2, z_extra=4.0))
    assert float((finer - base).abs().max()) < bg.REFERENCE_ACCURACY


def test_burgers_known_steepest_slope():
    """nu = 0.01/pi: max_t |u_x(0, t)| = 152.00516 at t = 1.6037/pi = 0.51047
    (Basdevant et al. 1986, Comput. Fluids 14, 23-41)."""
    from scipy.optimize import minimize_scalar

    nu = bg.NU_STANDARD

    def slope(t: float) -> float:
        p = torch.tensor([[0.0, t]], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(bg.cole_hopf(p, nu).sum(), p)
        return float(g[0, 0])  # negative: the shock steepens downwards

    res = minimize_scalar(slope, bracket=(0.45, 0.5, 0.55), tol=1e-10)
    assert abs(-res.fun - 152.00516) < 5e-6
    assert abs(res.x - 1.6037 / PI) < 5e-5


def test_burgers_boundary_modes():
    hard = TASKS["burgers_1d"](size="tiny")
    model = MLP([2, 6, 1], input_domain=hard.feature_domain).double()
    edge = torch.tensor([[-1.0, 0.3], [1.0, 0.7]], dtype=torch.float64)
    assert float(hard.predict(model, edge).detach().abs().max()) == 0.0
    soft = TASKS["burgers_1d"](size="tiny", boundary="loss")
    b = soft.train_batch()
    assert set(soft.loss_terms(model, b, {})) == {"pde", "initial", "boundary"}
    with pytest.raises(ValueError, match="boundary"):
        TASKS["burgers_1d"](boundary="periodic")
    assert TASKS["burgers_1d_standard"](size="tiny").nu == pytest.approx(0.01 / PI)
    assert TASKS["burgers_1d"](size="tiny").nu == 0.01


# ----------------------------------------------------------------------------- Allen-Cahn
SMOOTH = ac.SpectralConfig(256, 1e-3, 1e-2, 0.5, 1e-2)  # eps = 1e-2: resolved at N = 256


def test_allen_cahn_initial_coefficients_are_exact():
    n = 2**16
    x = -1 + 2 * np.arange(n) / n
    fft = np.fft.rfft(x**2 * np.cos(PI * x)) / n
    c = ac.initial_coefficients(512)
    # the FFT aliases the 1/m^2 tail: ~ 4 / (pi^2 n^2) * zeta(2)-like sums ~ 1.6e-10 here
    assert np.abs(c[:-1] - fft[:256]).max() < 1e-9
    # the truncated series converges to u0 away from the kink at x = +-1
    c = ac.initial_coefficients(4096)
    xs = np.linspace(-0.8, 0.8, 9)
    m = np.arange(len(c))
    series = c[0].real + 2 * np.real(np.exp(1j * PI * np.outer(xs + 1, m[1:])) @ c[1:])
    assert np.abs(series - xs**2 * np.cos(PI * xs)).max() < 1e-6


def test_allen_cahn_solver_known_solutions():
    """Closed forms of the same equation: a constant state follows
    u' = 5u - 5u^3 (u = a e^5t / sqrt(1 + a^2 (e^10t - 1))); a tiny single mode grows
    at rate 5 - eps (pi m)^2."""
    cfg = ac.SpectralConfig(16, 1e-3, 1e-1, 1.0, 1e-4)
    c0 = np.zeros(9, complex)
    c0[0] = 0.3
    sol = ac.solve_allen_cahn(cfg, c0)
    t = cfg.snapshot_dt * np.arange(sol.shape[0])
    exact = 0.3 * np.exp(5 * t) / np.sqrt(1 + 0.09 * (np.exp(10 * t) - 1))
    assert np.abs(sol[:, 0].real - exact).max() < 1e-9
    assert np.abs(sol[:, 1:]).max() == 0
    cfg = ac.SpectralConfig(32, 1e-2, 1e-1, 0.5, 1e-2)
    c0 = np.zeros(17, complex)
    c0[3] = 1e-9
    sol = ac.solve_allen_cahn(cfg, c0)
    t = cfg.snapshot_dt * np.arange(sol.shape[0])
    growth = 1e-9 * np.exp((5 - 1e-2 * (3 * PI) ** 2) * t)
    assert np.abs(sol[:, 3].real / growth - 1).max() < 1e-8


def test_allen_cahn_small_reference_refinement_and_residual():
    sol = ac.compute_reference(SMOOTH)
    assert sol.accuracy is not None and sol.accuracy_after(0.05) < 1e-6
    fine = ac.solve_allen_cahn(SMOOTH.refined())
    diff = ac.sup_difference(sol.coeffs, fine)
    # doubling the modes and halving the step changes less than the stated accuracy
    assert bool((np.maximum(diff[:-1], diff[1:]) <= sol.accuracy).all())
    # PDE residual by central differences at random points (t >= 0.05)
    rng = np.random.default_rng(7)
    p = np.stack([rng.uniform(-1, 1, 200), rng.uniform(0.05, 0.45, 200)], 1)
    h = 1e-4
    u = sol(p)
    ut = (sol(p + [0, h]) - sol(p - [0, h])) / (2 * h)
    uxx = (sol(p + [h, 0]) - 2 * u + sol(p - [h, 0])) / h**2
    r = ut - SMOOTH.eps * uxx - 5 * u + 5 * u**3
    assert np.abs(r).max() < 5e-5
    # periodic and even in x (u0 is even)
    t = rng.uniform(0, 0.5, 50)
    assert (
        np.abs(sol(np.stack([-np.ones(50), t], 1)) - sol(np.stack([np.ones(50), t], 1))).max()
        < 1e-13
    )
    x = rng.uniform(-1, 1, 50)
    assert np.abs(sol(np.stack([x, t], 1)) - sol(np.stack([-x, t], 1))).max() < 1e-13


def test_allen_cahn_exact_model_has_small_loss():
    """The reference's interpolant (differentiable torch version) fed to the PINN loss:
    residual, periodicity and initial condition (up to the truncated series' Gibbs
    ripple at the kink x = +-1) nearly vanish - checks the loss's signs and terms."""
    cfg = ac.SpectralConfig(512, 1e-3, 1e-3, 1.0, 1e-4)
    task = make("allen_cahn_1d", reference=cfg)
    sol = task.solution()
    p = task.x_collocation[:40]
    assert np.abs(sol.torch_eval(p)[:, 0].numpy() - sol(p.numpy())).max() < 1e-13
    batch = task.train_batch()
    terms = task.loss_terms(sol.torch_eval, batch, task.make_state(batch))
    assert float(terms["pde"].detach()) < 1e-9 and float(terms["periodic"].detach()) < 1e-20
    assert float(terms["initial"].detach()) < 1e-4
    other = make("allen_cahn_1d", eps=1e-3)  # another equation: the residual shows it
    assert (
        float(other.loss_terms(sol.torch_eval, batch, other.make_state(batch))["pde"].detach())
        > 1e-6
    )


def test_allen_cahn_reference_is_deterministic_and_cached(tmp_path):
    cfg = ac.SpectralConfig(64, 1e-2, 5e-2, 0.2, 1e-2)
    a = ac.allen_cahn_reference(cfg, str(tmp_path))
    files = list(tmp_path.glob("allen_cahn_*.npz"))
    assert len(files) == 1
    ac.clear_reference_cache()
    b = ac.allen_cahn_reference(cfg, str(tmp_path))  # from disk
    c = ac.compute_reference(cfg)  # recomputed
    assert a is not b
    for s in (b, c):
        assert np.array_equal(s.coeffs, a.coeffs) and np.array_equal(s.accuracy, a.accuracy)


def test_allen_cahn_task_reference_and_periodicity_modes():
    task = make("allen_cahn_1d")
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)
    at0 = task.reference(torch.stack([x, torch.zeros_like(x)], -1))
    assert torch.equal(at0[:, 0], x**2 * torch.cos(PI * x))
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    left = task.reference(torch.stack([-torch.ones_like(t), t], -1))
    right = task.reference(torch.stack([torch.ones_like(t), t], -1))
    assert torch.allclose(left, right, atol=1e-13, rtol=0)
    info = task.describe()["reference"]
    assert info["accuracy"]["t>=0"] < 1e-2  # the coarse "tiny" reference states its accuracy
    feat = make("allen_cahn_1d", periodic="features")
    assert feat.feature_dim == 3 and "x_left" not in feat.train_batch()
    z = feat.features(torch.tensor([[-1.0, 0.5], [1.0, 0.5]], dtype=torch.float64))
    assert torch.allclose(z[0], z[1], atol=1e-15)
    model = MLP([2, 6, 1], input_domain=task.feature_domain).double()
    b = task.train_batch()
    assert set(task.loss_terms(model, b, task.make_state(b))) == {"pde", "initial", "periodic"}


# ----------------------------------------------------------------------------- training
FAMILIES = {
    "kan": (
        lambda task: KAN([task.feature_dim, 5, 1], 4, 3, input_domain=task.feature_domain),
        1e-2,
    ),
    "mcmlp": (
        lambda task: MultichannelMLP(
            [task.feature_dim, 5, 1], 4, 3, input_domain=task.feature_domain
        ),
        1e-5,  # the ReLU basis is ill-conditioned: larger Adam steps raise the loss
    ),
    "mlp": (lambda task: MLP([task.feature_dim, 8, 8, 1], input_domain=task.feature_domain), 1e-2),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", PINN_TASKS)
def test_a_few_adam_steps(name, family):
    torch.manual_seed(0)
    task = make(name)
    build, lr = FAMILIES[family]
    model = build(task).double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batch = task.train_batch()
    state = task.make_state(batch)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = sum(task.loss_terms(model, batch, state, update_state=True).values())
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    metrics = task.evaluate(model)
    for key in ("rel_l2", "max_abs", "mse", "loss"):
        assert math.isfinite(metrics[key])
    assert any(k.startswith("loss_") for k in metrics)


@pytest.mark.parametrize("name", PINN_TASKS)
def test_float32_models(name):
    """float64 task data is cast to the model's dtype; metrics stay finite."""
    torch.manual_seed(0)
    task = make(name)
    model = KAN([task.feature_dim, 4, 1], 4, 3, input_domain=task.feature_domain).float()
    batch = task.train_batch()
    terms = task.loss_terms(model, batch, task.make_state(batch), update_state=True)
    loss = sum(terms.values())
    assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(math.isfinite(v) for v in task.evaluate(model).values())


@pytest.mark.parametrize("name", PINN_TASKS)
def test_engine_multilevel_run(name):
    """Two levels through the training engine (exact refinement checked by the engine)."""
    engine = pytest.importorskip("bench_mlkan.engine")
    from bench_mlkan.config import RunConfig

    opts = {"size": "tiny"}
    if name == "allen_cahn_1d":
        opts["cache_dir"] = ""
    task = TASKS[name](**opts)
    config = RunConfig(
        task=name,
        task_options=opts,
        model="kan",
        model_options={"widths": [task.feature_dim, 4, 1], "grid_size": 3, "degree": 3},
        schedule=[2, 2],
        lr=1e-3,
        progress=False,
    )
    result = engine.train(config)
    assert result.status == "ok", result.error
    assert math.isfinite(result.final_metrics["rel_l2"])
    assert "loss_pde" in result.final_metrics and len(result.refinements) == 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mcmlp", "mlp"])
@pytest.mark.parametrize("name", PINN_TASKS)
def test_engine_other_families(name, model):
    engine = pytest.importorskip("bench_mlkan.engine")
    from bench_mlkan.config import RunConfig

    opts = {"size": "tiny"}
    if name == "allen_cahn_1d":
        opts["cache_dir"] = ""
    task = TASKS[name](**opts)
    if model == "mlp":
        options, schedule = {"widths": [task.feature_dim, 8, 8, 1]}, [3]
    else:
        options, schedule = (
            {"widths": [task.feature_dim, 4, 1], "grid_size": 3, "degree": 3},
            [2, 2],
        )
    result = engine.train(
        RunConfig(
            task=name,
            task_options=opts,
            model=model,
            model_options=options,
            schedule=schedule,
            lr=1e-4,
            progress=False,
        )
    )
    assert result.status == "ok", result.error
    assert math.isfinite(result.final_metrics["loss"])
