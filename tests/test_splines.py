"""Spline maths (bench_mlkan.splines) against independent references.

References: ``scipy.interpolate.BSpline`` (basis values, derivatives, refinement identity),
numpy formulas (power-ReLU basis, forward differences, binomial closed forms).

Tolerances (float64, eps = 2.2e-16):
* B-spline values, partition of unity, prolongation: 1e-12 absolute (values are <= 1).
* B = A psi: 1e-10, or 16 (n+k)^k eps where that is larger: the h-scaled power ReLUs reach
  (n+k)^k and the combination cancels down to O(1) values, so round-off of that size is
  inherent to the power-ReLU form (needed only for k >= 4 with n + k >= 25 here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import scipy_knots
from scipy.interpolate import BSpline

from bench_mlkan.splines import (
    MAX_DEGREE,
    Grid,
    bspline_basis,
    change_of_basis,
    change_of_basis_inverse,
    clamp_to_grid,
    local_bspline,
    power_relu_basis,
    prolongation,
    relu_cancellation_estimate,
)

EPS64 = float(np.finfo(np.float64).eps)
DEGREES = list(range(MAX_DEGREE + 1))
GRID_SIZES = [1, 2, 3, 5, 7, 12]
RANGES = [(-1.0, 1.0), (0.3, 2.9), (-7.1, -0.2)]


def inside_points(grid: Grid, num: int, seed: int = 0) -> np.ndarray:
    """Random points strictly inside (a, min(b, last knot)): scipy's base interval."""
    a, b = grid.grid_range
    t = scipy_knots(grid.grid_size, grid.degree, a, b)
    right = min(b, t[grid.grid_size + grid.degree])
    x = np.random.default_rng(seed).uniform(a, right, num)
    return x[(x > a) & (x < right)]


def scipy_basis(x: np.ndarray, grid: Grid) -> np.ndarray:
    """All n + k B-splines at x (design matrix of scipy on the same knots)."""
    a, b = grid.grid_range
    t = scipy_knots(grid.grid_size, grid.degree, a, b)
    return BSpline.design_matrix(x, t, grid.degree).toarray()


def numpy_power_relu(x: np.ndarray, grid: Grid, scaled: bool) -> np.ndarray:
    a, b = grid.grid_range
    k, n = grid.degree, grid.grid_size
    t = scipy_knots(n, k, a, b)[: n + k]
    z = np.clip(x, a, b)[:, None] - t
    if scaled:
        z = z / ((b - a) / n)
    return (z >= 0).astype(np.float64) if k == 0 else np.maximum(z, 0.0) ** k


def cob_tolerance(grid: Grid) -> float:
    return max(1e-10, 16 * (grid.num_basis**grid.degree) * EPS64)


# ----------------------------------------------------------------------------- grid
@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("degree", [0, 3, 5])
def test_grid_knots_spacing_and_count(degree, grid_range):
    g = Grid(7, degree, grid_range)
    a, b = grid_range
    assert g.h == pytest.approx((b - a) / 7, rel=1e-15)
    assert g.num_basis == 7 + degree
    knots = g.knots().numpy()
    np.testing.assert_allclose(knots, scipy_knots(7, degree, a, b), rtol=0, atol=1e-14)
    assert knots.shape == (7 + 2 * degree + 1,)
    assert knots[degree] == pytest.approx(a, abs=1e-15)
    assert knots[degree + 7] == pytest.approx(b, abs=1e-14)
    assert g.knots(dtype=torch.float32).dtype == torch.float32
    fine = g.refined()
    assert (fine.grid_size, fine.degree, fine.grid_range) == (14, degree, (a, b))


def test_grid_normalises_integer_types():
    g = Grid(np.int64(4), np.int32(3), (0, 1))
    assert type(g.grid_size) is int and type(g.degree) is int
    assert g.grid_range == (0.0, 1.0) and type(g.grid_range[0]) is float
    assert g == Grid(4, 3, (0.0, 1.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid_size=4, degree=6), "degree must be an integer in 0..5"),
        (dict(grid_size=4, degree=-1), "degree"),
        (dict(grid_size=4, degree=2.0), "degree"),
        (dict(grid_size=0, degree=3), "grid_size must be an integer >= 1"),
        (dict(grid_size=-2, degree=3), "grid_size"),
        (dict(grid_size=2.5, degree=3), "grid_size"),
        (dict(grid_size=True, degree=3), "grid_size"),
        (dict(grid_size=4, degree=3, grid_range=(1.0, 1.0)), "a < b"),
        (dict(grid_size=4, degree=3, grid_range=(1.0, -1.0)), "a < b"),
        (dict(grid_size=4, degree=3, grid_range=(0.0, math.inf)), "finite"),
        (dict(grid_size=4, degree=3, grid_range=(math.nan, 1.0)), "finite"),
        (dict(grid_size=4, degree=3, grid_range=(0.0, 1.0, 2.0)), "two numbers"),
        (dict(grid_size=4, degree=3, grid_range=1.0), "two numbers"),
    ],
)
def test_grid_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grid(**kwargs)


# ----------------------------------------------------------------------------- B-splines
@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("grid_size", GRID_SIZES)
@pytest.mark.parametrize("degree", DEGREES)
def test_bspline_basis_matches_scipy(degree, grid_size, grid_range, measured):
    g = Grid(grid_size, degree, grid_range)
    x = inside_points(g, 400, seed=degree * 100 + grid_size)
    if degree >= 1:  # continuous: the knots themselves are fair test points
        knots = scipy_knots(grid_size, degree, *grid_range)[degree + 1 : degree + grid_size]
        x = np.concatenate([x, knots])
    ours = bspline_basis(torch.tensor(x), g)
    assert ours.dtype == torch.float64 and ours.shape == (len(x), grid_size + degree)
    err = measured("bspline vs scipy", np.abs(ours.numpy() - scipy_basis(x, g)).max())
    assert err <= 1e-12, err


@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("grid_size", [1, 2, 5, 7])
@pytest.mark.parametrize("degree", DEGREES)
def test_bspline_basis_at_endpoints(degree, grid_size, grid_range, measured):
    """x = a and x = b: scipy with extrapolate=True at the end knots (the ends belong to the
    first / last interval)."""
    g = Grid(grid_size, degree, grid_range)
    a, b = grid_range
    t = scipy_knots(grid_size, degree, a, b)
    nb = grid_size + degree
    spline = BSpline(t, np.eye(nb), degree, extrapolate=True)
    x = np.array([a, b])
    expected = spline(x)
    ours = bspline_basis(torch.tensor(x), g).numpy()
    err = measured("bspline at ends vs scipy", np.abs(ours - expected).max())
    assert err <= 1e-12, (err, ours, expected)
    np.testing.assert_allclose(ours.sum(-1), 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("grid_size", GRID_SIZES)
@pytest.mark.parametrize("degree", DEGREES)
def test_partition_of_unity_and_nonnegativity(degree, grid_size, grid_range, measured):
    g = Grid(grid_size, degree, grid_range)
    a, b = grid_range
    x = torch.linspace(a, b, 1001, dtype=torch.float64)
    B = bspline_basis(x, g)
    err = measured("partition of unity", (B.sum(-1) - 1).abs().max().item())
    assert err <= 1e-13, err
    assert (B >= 0).all()
    assert ((B > 0).sum(-1) <= degree + 1).all()  # local support: at most k+1 nonzero


@pytest.mark.parametrize("degree", DEGREES)
def test_local_bspline_shapes_and_batching(degree):
    g = Grid(5, degree, (-2.0, 3.0))
    x = torch.rand(3, 4, 6, dtype=torch.float64) * 7 - 3  # some outside [a, b]
    first, values = local_bspline(x, g)
    assert first.shape == x.shape and first.dtype == torch.int64
    assert values.shape == (*x.shape, degree + 1)
    assert int(first.min()) >= 0 and int(first.max()) <= g.grid_size - 1
    dense = bspline_basis(x, g)
    assert dense.shape == (3, 4, 6, g.num_basis)
    flat = bspline_basis(x.reshape(-1), g).reshape(dense.shape)
    assert torch.equal(dense, flat)
    # the dense basis is the local values scattered at first .. first+k
    gathered = dense.gather(-1, first.unsqueeze(-1) + torch.arange(degree + 1))
    assert torch.equal(gathered, values)


@pytest.mark.parametrize("degree", DEGREES)
def test_inputs_outside_grid_are_clamped(degree):
    g = Grid(4, degree, (-0.5, 1.5))
    x = torch.tensor([-10.0, -0.5000001, 1.5000001, 7.0, -0.5, 1.5], dtype=torch.float64)
    cx = clamp_to_grid(x, g)
    assert torch.equal(cx, x.clamp(-0.5, 1.5))
    assert torch.equal(bspline_basis(x, g), bspline_basis(cx, g))
    assert torch.equal(power_relu_basis(x, g), power_relu_basis(cx, g))


@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("degree", range(1, MAX_DEGREE + 1))
def test_bspline_derivatives_match_scipy(degree, grid_range, measured):
    """d/dx and d2/dx2 of sum_i v_i B_i(x) through autograd vs BSpline.derivative."""
    g = Grid(5, degree, grid_range)
    a, b = grid_range
    t = scipy_knots(5, degree, a, b)
    x_np = inside_points(g, 300, seed=degree)
    knots = t[degree : degree + 6]
    x_np = x_np[np.abs(x_np[:, None] - knots).min(1) > 1e-6]  # away from knots
    v = np.random.default_rng(degree).standard_normal(g.num_basis)
    x = torch.tensor(x_np, requires_grad=True)
    f = bspline_basis(x, g) @ torch.tensor(v)
    (d1,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    spline = BSpline(t, v, degree)
    scale = np.abs(v).max() / g.h
    err1 = np.abs(d1.detach().numpy() - spline.derivative(1)(x_np)).max() / scale
    assert measured("bspline d/dx vs scipy (rel)", err1) <= 1e-12, err1
    if degree >= 2:
        (d2,) = torch.autograd.grad(d1.sum(), x)
        err2 = np.abs(d2.numpy() - spline.derivative(2)(x_np)).max() / (scale / g.h)
        assert measured("bspline d2/dx2 vs scipy (rel)", err2) <= 1e-12, err2


def test_bspline_zero_input_gradient_outside():
    g = Grid(4, 3)
    x = torch.tensor([-3.0, -1.2, 1.01, 2.0, 0.3], dtype=torch.float64, requires_grad=True)
    v = torch.randn(g.num_basis, dtype=torch.float64)
    (grad,) = torch.autograd.grad((bspline_basis(x, g) @ v).sum(), x)
    assert torch.equal(grad[:4], torch.zeros(4, dtype=torch.float64))
    assert grad[4] != 0


@pytest.mark.parametrize("degree", DEGREES)
def test_bspline_float32(degree):
    """float32 in -> float32 out, within 1e-6 of float64 (values <= 1; grid 40)."""
    g = Grid(40, degree, (-1.0, 1.0))
    x32 = torch.rand(2000) * 2 - 1
    B32 = bspline_basis(x32, g)
    B64 = bspline_basis(x32.double(), g)
    assert B32.dtype == torch.float32
    if degree == 0:  # piecewise constant: equal except within rounding of a knot
        assert (B32.double() != B64).any(-1).float().mean() < 1e-2
    else:  # u = (x - a)/h in float32 carries ~n eps32 absolute error; |dB/du| <= 1
        err = (B32.double() - B64).abs().max().item()
        assert err <= 1e-5, err


# ----------------------------------------------------------------------------- power ReLU
@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("degree", DEGREES)
def test_power_relu_basis_matches_numpy(degree, grid_range, scaled):
    g = Grid(6, degree, grid_range)
    a, b = grid_range
    x = np.random.default_rng(1).uniform(a - 1, b + 1, 500)
    ours = power_relu_basis(torch.tensor(x), g, scaled=scaled).numpy()
    ref = numpy_power_relu(x, g, scaled)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-13 * np.abs(ref).max())


# ----------------------------------------------------------------------------- change of basis
@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("grid_size", [1, 2, 3, 7, 20])
@pytest.mark.parametrize("degree", DEGREES)
def test_change_of_basis_reproduces_scipy_bsplines(degree, grid_size, grid_range, scaled, measured):
    """B = A psi on [a, b]: A from the package, psi from numpy, B from scipy."""
    g = Grid(grid_size, degree, grid_range)
    x = inside_points(g, 300, seed=grid_size)
    A = change_of_basis(g, scaled=scaled).numpy()
    B = numpy_power_relu(x, g, scaled) @ A.T
    err = np.abs(B - scipy_basis(x, g)).max()
    measured(f"B = A psi (scaled={scaled})", err)
    measured("B = A psi / ((n+k)^k eps)", err / (g.num_basis**degree * EPS64))
    if degree <= 3:
        measured("B = A psi, k <= 3", err)
    assert err <= cob_tolerance(g), (err, cob_tolerance(g))
    # and the package's own power-ReLU basis gives the same
    B2 = (power_relu_basis(torch.tensor(x), g, scaled=scaled) @ torch.tensor(A).T).numpy()
    assert np.abs(B2 - scipy_basis(x, g)).max() <= cob_tolerance(g)


@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("grid_size", [1, 2, 5, 9])
@pytest.mark.parametrize("degree", DEGREES)
def test_change_of_basis_structure(degree, grid_size, scaled):
    """Upper triangular, k+2 bands, (-1)^(k+1)/(k! h^k) times the (k+1)-th forward
    difference (columns past n+k-1 dropped, i.e. the vector padded with zeros)."""
    g = Grid(grid_size, degree, (0.2, 1.7))
    k, nb = degree, g.num_basis
    A = change_of_basis(g, scaled=scaled).numpy()
    assert A.shape == (nb, nb)
    rows, cols = np.nonzero(A)
    assert ((cols - rows >= 0) & (cols - rows <= k + 1)).all()  # upper, k+2 diagonals
    for m in range(min(k + 2, nb)):
        assert np.count_nonzero(np.diagonal(A, m)) == nb - m  # every band full
    scale = math.factorial(k) * (1.0 if scaled else g.h**k)
    for v in np.eye(nb):  # A v for each unit vector = one column of A
        diff = np.diff(np.concatenate([v, np.zeros(k + 1)]), n=k + 1)
        np.testing.assert_allclose(A @ v, (-1) ** (k + 1) * diff / scale, rtol=1e-14, atol=0)


@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("grid_size", [1, 4, 20])
@pytest.mark.parametrize("degree", DEGREES)
def test_change_of_basis_inverse_closed_form(degree, grid_size, scaled):
    """A^-1 = k! h^k C(j - i + k, k) (j >= i): the (k+1)-fold cumulative sum."""
    g = Grid(grid_size, degree, (-1.0, 0.5))
    k, nb = degree, g.num_basis
    scale = math.factorial(k) * (1.0 if scaled else g.h**k)
    i, j = np.meshgrid(np.arange(nb), np.arange(nb), indexing="ij")
    expected = np.where(
        j >= i, np.vectorize(lambda d: math.comb(d + k, k) if d >= 0 else 0)(j - i), 0
    ) * float(scale)
    Ainv = change_of_basis_inverse(g, scaled=scaled).numpy()
    # scaled: integers times k! (exact); unscaled: h^k is rounded, the solve adds ~nb eps
    np.testing.assert_allclose(Ainv, expected, rtol=1e-12 if scaled else 1e-11, atol=0)
    A = change_of_basis(g, scaled=scaled).numpy()
    np.testing.assert_allclose(A @ Ainv, np.eye(nb), rtol=0, atol=1e-12 * nb**k)


def test_change_of_basis_dtype_device_and_unscaled_relation():
    g = Grid(8, 3, (0.0, 2.0))
    A32 = change_of_basis(g, dtype=torch.float32)
    assert A32.dtype == torch.float32 and A32.device.type == "cpu"
    A_s = change_of_basis(g, scaled=True)
    A_u = change_of_basis(g, scaled=False)
    np.testing.assert_allclose(A_u.numpy(), A_s.numpy() / g.h**3, rtol=1e-15, atol=0)
    assert change_of_basis_inverse(g, dtype=torch.float32).dtype == torch.float32


# ----------------------------------------------------------------------------- prolongation
@pytest.mark.parametrize("grid_range", RANGES)
@pytest.mark.parametrize("grid_size", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("degree", DEGREES)
def test_prolongation_nests_scipy_bsplines(degree, grid_size, grid_range, measured):
    """Coarse B-splines = fine B-splines @ P on [a, b] (both from scipy)."""
    g = Grid(grid_size, degree, grid_range)
    fine = g.refined()
    x = inside_points(g, 400, seed=7 + grid_size)
    if degree == 0:  # piecewise constant: stay away from the (fine) knots
        tf = scipy_knots(fine.grid_size, 0, *grid_range)
        x = x[np.abs(x[:, None] - tf).min(1) > 1e-9]
    x = x[x < scipy_knots(fine.grid_size, degree, *grid_range)[fine.grid_size + degree]]
    P = prolongation(g).numpy()
    assert P.shape == (2 * grid_size + degree, grid_size + degree)
    err = np.abs(scipy_basis(x, fine) @ P - scipy_basis(x, g)).max()
    assert measured("prolongation: B_coarse = B_fine P", err) <= 1e-12, err
    # as functions: coarse coefficients c and fine coefficients P c agree (scipy both)
    c = np.random.default_rng(grid_size).standard_normal(g.num_basis)
    tc = scipy_knots(grid_size, degree, *grid_range)
    tf = scipy_knots(fine.grid_size, degree, *grid_range)
    yc = BSpline(tc, c, degree)(x)
    yf = BSpline(tf, P @ c, degree)(x)
    assert np.abs(yc - yf).max() <= 1e-12 * max(1.0, np.abs(c).max())


@pytest.mark.parametrize(
    "degree, mask",
    [
        (0, [1.0, 1.0]),
        (1, [1 / 2, 1.0, 1 / 2]),
        (2, [1 / 4, 3 / 4, 3 / 4, 1 / 4]),
        (3, [1 / 8, 4 / 8, 6 / 8, 4 / 8, 1 / 8]),
        (4, [1 / 16, 5 / 16, 10 / 16, 10 / 16, 5 / 16, 1 / 16]),
        (5, [1 / 32, 6 / 32, 15 / 32, 20 / 32, 15 / 32, 6 / 32, 1 / 32]),
    ],
)
def test_prolongation_masks(degree, mask):
    """METHOD.md section 4 (the corrected masks): column j holds the mask at fine rows
    2j .. 2j+k+1 (indices; positions shifted by k), dropped outside -k .. 2n-1."""
    n, k = 6, degree
    P = prolongation(Grid(n, k)).numpy()
    for i in range(n + k):  # coarse position i <-> index j = i - k
        col = np.zeros(2 * n + k)
        for s, m in enumerate(mask):
            fine_pos = 2 * (i - k) + s + k
            if 0 <= fine_pos < 2 * n + k:
                col[fine_pos] = m
        np.testing.assert_array_equal(P[:, i], col)
    # interior columns keep the whole mask: sum 2 (two fine cells per coarse cell)
    assert P[:, k].sum() == 2.0 or k == 0


def test_prolongation_dtype():
    P = prolongation(Grid(3, 2), dtype=torch.float32)
    assert P.dtype == torch.float32 and P.shape == (8, 5)


def test_relu_cancellation_estimate_orders():
    g = Grid(80, 3)
    est32 = relu_cancellation_estimate(g, torch.float32)
    est64 = relu_cancellation_estimate(g, torch.float64)
    assert est32 > 1e-2 and est64 < 1e-8  # grid 80 cubic: hopeless in float32, fine in 64
    assert relu_cancellation_estimate(Grid(160, 3), torch.float32) > est32


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("degree", DEGREES)
def test_cuda_basis_and_identities(degree):
    g = Grid(7, degree, (0.3, 2.9))
    x = torch.tensor(inside_points(g, 500, seed=degree))
    xc = x.cuda()
    Bc = bspline_basis(xc, g)
    assert Bc.device.type == "cuda"
    np.testing.assert_allclose(Bc.cpu().numpy(), scipy_basis(x.numpy(), g), rtol=0, atol=1e-12)
    A = change_of_basis(g, device="cuda")
    Bp = power_relu_basis(xc, g) @ A.T
    assert (Bp - Bc).abs().max().item() <= cob_tolerance(g)
    fine = g.refined()
    xin = xc[xc < fine.knots()[fine.grid_size + degree].item()]
    P = prolongation(g, device="cuda")
    assert (bspline_basis(xin, fine) @ P - bspline_basis(xin, g)).abs().max().item() <= 1e-12
