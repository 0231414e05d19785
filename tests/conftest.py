"""Shared test set-up and the independent (numpy/scipy) reference evaluator.

The reference never calls the package's evaluation code: it reads a model's parameters
(``layer.spline_coefficients()``, the linear layer, the output bias, the *documented*
input domain) and rebuilds the network with ``scipy.interpolate.BSpline`` on knots
t_j = a + j h, j = -k .. n+k, applying the documented semantics of ``bench_mlkan.models``:

    x -> affine map input_domain -> grid_range -> [Linear] -> squash -> spline layer
      -> squash -> spline layer ... -> [+ output bias]

with every spline-layer input clamped to [a, b].
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.interpolate import BSpline  # noqa: E402

torch.set_num_threads(1)


def scipy_knots(n: int, k: int, a: float, b: float) -> np.ndarray:
    """Uniform knots a + j (b - a)/n, j = -k .. n+k (float64), built independently."""
    h = (b - a) / n
    return a + np.arange(-k, n + k + 1, dtype=np.float64) * h


def reference_spline_layer(x: np.ndarray, coef: np.ndarray, n: int, k: int, a: float, b: float):
    """y[:, q] = sum_p S_{q,p}(clamp(x[:, p])) with S_{q,p} = BSpline(t, coef[q, p], k).

    Args:
        x: (N, P); coef: (Q, P, n + k).
    """
    t = scipy_knots(n, k, a, b)
    xc = np.clip(x, a, b)
    y = np.zeros((x.shape[0], coef.shape[0]))
    for p in range(coef.shape[1]):
        # One BSpline per input p, vector-valued over the Q edges leaving it. extrapolate
        # only matters at x == b when a + n h rounds below b (the last piece continues).
        spline = BSpline(t, coef[:, p, :].T, k, extrapolate=True)
        y += spline(xc[:, p])
    return y


def reference_power_relu_layer(
    x: np.ndarray, weight: np.ndarray, n: int, k: int, a: float, b: float, scaled: bool
) -> np.ndarray:
    """y[:, q] = sum_p sum_j w[q, p, j] psi_j(clamp(x_p)), psi_j = ReLU(x - t_j)^k (numpy).

    ``scaled``: psi~_j = ReLU((x - t_j)/h)^k. k = 0: Heaviside (x >= t_j).
    """
    t = scipy_knots(n, k, a, b)[: n + k]
    h = (b - a) / n
    z = np.clip(x, a, b)[:, :, None] - t  # (N, P, n + k)
    if scaled:
        z = z / h
    psi = (z >= 0).astype(np.float64) if k == 0 else np.maximum(z, 0.0) ** k
    return np.einsum("npj,qpj->nq", psi, weight)


def _squash_jet(z: np.ndarray, squash, a: float, b: float):
    """Squash value and its first two derivatives."""
    if squash is None:
        return z, np.ones_like(z), np.zeros_like(z)
    if squash == "tanh":
        th, half = np.tanh(z), (b - a) / 2
        return (a + b) / 2 + half * th, half * (1 - th**2), -2 * half * th * (1 - th**2)
    if squash == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        d = s * (1 - s)
        return a + (b - a) * s, (b - a) * d, (b - a) * d * (1 - 2 * s)
    raise AssertionError(squash)


def _spline_layer_jet(z, dz, d2z, coef, n, k, a, b):
    """Value, first and second derivative (along one input direction) of a spline layer."""
    t = scipy_knots(n, k, a, b)
    inside = (z > a) & (z < b)  # clamped outside: constant, zero derivatives
    zc = np.clip(z, a, b)
    y = np.zeros((z.shape[0], coef.shape[0]))
    dy, d2y = np.zeros_like(y), np.zeros_like(y)
    for p in range(coef.shape[1]):
        s = BSpline(t, coef[:, p, :].T, k, extrapolate=True)
        y += s(zc[:, p])
        if k >= 1:
            s1 = s.derivative(1)(zc[:, p]) * inside[:, p, None]
            dy += s1 * dz[:, p, None]
            d2y += s1 * d2z[:, p, None]
        if k >= 2:
            s2 = s.derivative(2)(zc[:, p]) * inside[:, p, None]
            d2y += s2 * dz[:, p, None] ** 2
    return y, dy, d2y


def reference_jet(model, x, i: int):
    """(u, du/dx_i, d2u/dx_i^2) of a KAN / MultichannelMLP by forward-mode chain rule, with
    the spline derivatives from ``BSpline.derivative`` (numpy/scipy only, float64)."""
    x = np.asarray(torch.as_tensor(x).detach().cpu().double(), dtype=np.float64)
    cfg = model.config
    a, b = (float(v) for v in cfg["grid_range"])
    dz = np.zeros_like(x)
    dz[:, i] = 1.0
    if cfg["input_domain"] is not None:
        lo = np.array([float(d[0]) for d in cfg["input_domain"]])
        hi = np.array([float(d[1]) for d in cfg["input_domain"]])
        x = a + (x - lo) / (hi - lo) * (b - a)
        dz = dz * (b - a) / (hi - lo)
    z, d2z = x, np.zeros_like(x)
    squash = cfg["squash"]

    def apply_squash(z, dz, d2z):
        s, s1, s2 = _squash_jet(z, squash, a, b)
        return s, s1 * dz, s2 * dz**2 + s1 * d2z

    if model.linear is not None:
        W = model.linear.weight.detach().cpu().double().numpy()
        z, dz, d2z = z @ W.T, dz @ W.T, d2z @ W.T
        if model.linear.bias is not None:
            z = z + model.linear.bias.detach().cpu().double().numpy()
        z, dz, d2z = apply_squash(z, dz, d2z)
    for j, layer in enumerate(model.layers):
        if j > 0:
            z, dz, d2z = apply_squash(z, dz, d2z)
        coef = layer.spline_coefficients().detach().cpu().double().numpy()
        g = layer.grid
        z, dz, d2z = _spline_layer_jet(z, dz, d2z, coef, g.grid_size, g.degree, a, b)
    if model.output_bias is not None:
        z = z + model.output_bias.detach().cpu().double().numpy()
    return z, dz, d2z


def _squash_np(z: np.ndarray, squash, a: float, b: float) -> np.ndarray:
    return _squash_jet(z, squash, a, b)[0]


def reference_network(model, x, basis: str = "spline") -> np.ndarray:
    """Evaluate a ``KAN`` / ``MultichannelMLP`` with numpy + scipy only (float64).

    basis="spline": every edge is ``BSpline(t, layer.spline_coefficients()[q, p], k)``.
    basis="power_relu": a MultichannelMLP's own weights in the power-ReLU form (numpy),
    without going through its spline coefficients.
    """
    x = np.asarray(torch.as_tensor(x).detach().cpu().double(), dtype=np.float64)
    cfg = model.config
    a, b = (float(v) for v in cfg["grid_range"])
    if cfg["input_domain"] is not None:
        lo = np.array([float(d[0]) for d in cfg["input_domain"]])
        hi = np.array([float(d[1]) for d in cfg["input_domain"]])
        x = a + (x - lo) / (hi - lo) * (b - a)
    squash = cfg["squash"]
    if model.linear is not None:
        W = model.linear.weight.detach().cpu().double().numpy()
        x = x @ W.T
        if model.linear.bias is not None:
            x = x + model.linear.bias.detach().cpu().double().numpy()
        x = _squash_np(x, squash, a, b)
    for i, layer in enumerate(model.layers):
        if i > 0:
            x = _squash_np(x, squash, a, b)
        n, k = layer.grid.grid_size, layer.grid.degree
        if basis == "power_relu":
            w = layer.weight.detach().cpu().double().numpy()
            x = reference_power_relu_layer(x, w, n, k, a, b, layer.scaled)
        else:
            coef = layer.spline_coefficients().detach().cpu().double().numpy()
            x = reference_spline_layer(x, coef, n, k, a, b)
    if model.output_bias is not None:
        x = x + model.output_bias.detach().cpu().double().numpy()
    return x


@pytest.fixture
def reference():
    """The independent evaluator ``reference(model, x, basis="spline") -> np.ndarray``."""
    return reference_network


@pytest.fixture
def reference_derivatives():
    """``reference_derivatives(model, x, i) -> (u, u_i, u_ii)`` (numpy/scipy, float64)."""
    return reference_jet


#: Worst measured error per identity, filled by the tests (printed with -s and
#: BENCH_MLKAN_REPORT_ERRORS=1; the values are also in the tests' failure messages).
MEASURED: dict[str, float] = {}


def record(name: str, value: float) -> float:
    MEASURED[name] = max(MEASURED.get(name, 0.0), float(value))
    return float(value)


@pytest.fixture
def measured():
    """``measured(name, err)`` records the worst error per identity; returns err."""
    return record


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("BENCH_MLKAN_REPORT_ERRORS") and MEASURED:
        terminalreporter.section("worst measured errors")
        for name in sorted(MEASURED):
            terminalreporter.write_line(f"{name:60s} {MEASURED[name]:.3e}")


@pytest.fixture(autouse=True)
def _restore_torch_defaults():
    """Tests must not leak a changed default dtype or seed-dependent state."""
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
