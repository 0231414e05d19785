"""Reference solutions against independent computations.

* Burgers: the trapezoidal Cole-Hopf quadrature against scipy's adaptive quadrature
  (QUADPACK) of the same integrals in the physical variable (fast).
* Allen-Cahn: the full cached reference (N = 4096, dt = 2.5e-4; computed once, ~15-30 s,
  into ``$BENCH_MLKAN_CACHE`` or ~/.cache/bench_mlkan) against a refined solve, an
  independent Strang-splitting solver and its own PDE residual (slow).
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bench_mlkan.tasks import TASKS  # noqa: E402
from bench_mlkan.tasks import allen_cahn as ac  # noqa: E402
from bench_mlkan.tasks import burgers as bg  # noqa: E402

PI = math.pi


# ----------------------------------------------------------------------------- Burgers
def _cole_hopf_quadpack(x: float, t: float, nu: float) -> float:
    """u = -int sin(pi y) f(y) G(x - y) dy / int f(y) G(x - y) dy by QUADPACK in y."""
    from scipy.integrate import quad

    s = math.sqrt(4 * nu * t)
    half = s * math.sqrt(1 / (PI * nu) + 60)
    lo, hi = x - half, x + half
    ys = np.linspace(lo, hi, 20001)

    def expo(y):
        return -np.cos(PI * y) / (2 * PI * nu) - (x - y) ** 2 / (4 * nu * t)

    shift = expo(ys).max()
    breaks = list(ys[1:-1:1000])

    def g(y):
        return math.exp(expo(y) - shift)

    kw = dict(points=breaks, epsabs=1e-15, epsrel=1e-13, limit=2000)
    num = quad(lambda y: math.sin(PI * y) * g(y), lo, hi, **kw)[0]
    den = quad(g, lo, hi, **kw)[0]
    return -num / den


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("nu", [bg.NU_PAPER, bg.NU_STANDARD])
def test_burgers_reference_matches_adaptive_quadrature(nu):
    rng = np.random.default_rng(11)
    pts = np.concatenate(
        [
            np.stack([rng.uniform(-1, 1, 20), rng.uniform(0.01, 1, 20)], 1),
            np.stack([rng.uniform(-0.02, 0.02, 10), rng.uniform(0.3, 1, 10)], 1),  # shock
        ]
    )
    indep = np.array([_cole_hopf_quadpack(x, t, nu) for x, t in pts])
    ours = bg.cole_hopf(torch.from_numpy(pts), nu)[:, 0].numpy()
    assert np.abs(indep - ours).max() < 1e-12


# ----------------------------------------------------------------------------- Allen-Cahn
@pytest.fixture(scope="module")
def full_reference():
    """The default reference, from the disk cache or computed once."""
    return ac.allen_cahn_reference(ac.SpectralConfig())


def _strang(modes: int, dt: float, times, eps: float = 1e-4) -> tuple[np.ndarray, dict]:
    """Independent solver: Strang splitting, exact reaction (u' = 5u - 5u^3 in closed
    form) and exact diffusion in Fourier space, second order in dt."""
    x = -1 + 2 * np.arange(modes) / modes
    u = np.fft.irfft(ac.initial_coefficients(modes), n=modes) * modes
    k = PI * np.arange(modes // 2 + 1)
    decay = np.exp(-eps * k**2 * dt)

    def react(v, tau):
        return v * np.exp(5 * tau) / np.sqrt(1 + v * v * (np.exp(10 * tau) - 1))

    wanted = {int(round(t / dt)): t for t in times}
    out = {}
    u = react(u, dt / 2)
    for n in range(1, max(wanted) + 1):
        u = np.fft.irfft(decay * np.fft.rfft(u), n=modes)
        if n in wanted:
            out[wanted[n]] = react(u, dt / 2)
        u = react(u, dt)
    return x, out


@pytest.mark.slow
def test_allen_cahn_stated_accuracy(full_reference):
    acc = full_reference.accuracy_summary()
    assert acc["t>=0.005"] < 1e-6 and acc["t>=0.05"] < 1e-9, acc


@pytest.mark.slow
def test_allen_cahn_refined_solve_changes_less_than_stated(full_reference):
    """2N modes and dt/2 over t in [0, 0.1], where the early kink makes it hardest."""
    cfg = ac.SpectralConfig()
    short = ac.SpectralConfig(2 * cfg.modes, cfg.dt / 2, cfg.snapshot_dt, 0.1, cfg.eps)
    fine = ac.solve_allen_cahn(short)
    n = fine.shape[0]
    diff = ac.sup_difference(full_reference.coeffs[:n], fine)
    assert bool((np.maximum(diff[:-1], diff[1:]) <= full_reference.accuracy[: n - 1]).all())
    assert diff[5:].max() < 1e-9  # measured 1.5e-11 for t >= 0.005


@pytest.mark.slow
def test_allen_cahn_matches_independent_strang_solver(full_reference):
    times = [0.01, 0.05, 0.25, 0.5, 1.0]
    x, out = _strang(2048, 1e-4, times)
    for t, values in out.items():
        ours = full_reference(np.stack([x, np.full_like(x, t)], 1))
        assert np.abs(ours - values).max() < 1e-8, t  # Strang's own O(dt^2) error ~3e-9


@pytest.mark.slow
def test_allen_cahn_residual_symmetry_periodicity(full_reference):
    sol = full_reference
    rng = np.random.default_rng(3)
    p = np.stack([rng.uniform(-1, 1, 400), rng.uniform(0.01, 0.99, 400)], 1)
    h = 1e-4
    u = sol(p)
    ut = (sol(p + [0, h]) - sol(p - [0, h])) / (2 * h)
    uxx = (sol(p + [h, 0]) - 2 * u + sol(p - [h, 0])) / h**2
    r = ut - 1e-4 * uxx - 5 * u + 5 * u**3
    assert np.abs(r).max() < 2e-5  # central-difference error; measured 2.9e-6
    t = rng.uniform(0, 1, 100)
    assert (
        np.abs(sol(np.stack([-np.ones(100), t], 1)) - sol(np.stack([np.ones(100), t], 1))).max()
        < 1e-12
    )
    xs = rng.uniform(-1, 1, 100)
    assert np.abs(sol(np.stack([xs, t], 1)) - sol(np.stack([-xs, t], 1))).max() < 1e-12
    # the interfaces have formed by t = 1: plateaus at +-1
    final = sol(np.stack([np.linspace(-1, 1, 2001), np.ones(2001)], 1))
    assert final.max() > 0.99 and final.min() < -0.99


@pytest.mark.slow
def test_allen_cahn_paper_task_uses_the_cached_reference(full_reference):
    task = TASKS["allen_cahn_1d"]()
    assert task.solution() is full_reference
    ref = task.eval_reference()
    assert ref.shape == (512 * 200, 1) and torch.isfinite(ref).all()
    acc = task.describe()["reference"]["accuracy"]
    assert acc["t>=0.005"] < 1e-6
