"""Fault tests of the spline kernels: operand checks, fuzzing, AddressSanitizer, caches.

* Every kernel map (C and PyTorch) and ``spline_contract`` refuse operands that do not fit
  the coefficient table with a ValueError naming the shapes (a user report: the C kernel
  took the width from the input and read past the table: wrong results, NaN, segfaults).
* Fuzz, layer level: random widths P, Q (incl. 1), batch (incl. 1), grid sizes, degrees
  0..5, float32/float64, transposed/sliced inputs and coefficient views, points outside the
  grid, on knots and at the ends: every available kernel against the ``autograd`` reference
  in values, first and second input derivatives and coefficient gradients.
* Fuzz, map level: ``contract``/``sample``/``scatter`` of derivative orders 0..2 with
  multipliers (what ``jets.py`` calls) against dense B-spline derivatives from
  ``scipy.interpolate.BSpline`` (independent of the package).
* The C source built with ``-fsanitize=address`` and fuzzed in a subprocess (slow), with a
  negative control that proves the sanitizer sees an out-of-bounds read.
* Caches: a truncated or modified C library or Allen-Cahn reference gives one warning and
  is rebuilt; two processes building at once both succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from bench_mlkan import cache_files, jets_c, kernels_c
from bench_mlkan import kernels as K
from bench_mlkan.models import KAN, spline_layer_forward
from bench_mlkan.splines import Grid

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]
DTYPES = (torch.float32, torch.float64)
#: relative tolerance (to max(|reference|, 1)) per dtype
TOL = {torch.float64: 1e-10, torch.float32: 2e-4}


def _kernels(dtype) -> list[str]:
    return [k for k in K.available_kernels(CPU, dtype) if k != "autograd"]


def test_the_c_kernel_is_among_the_fuzzed():
    assert "c" in _kernels(torch.float64) and "c" in _kernels(torch.float32)


# ----------------------------------------------------------------------------- checks
def test_kan_refuses_inputs_of_the_wrong_width_on_every_kernel():
    """The user report: KAN([2, 5, 1]) on (4, 1) / (4, 3) / (4, 200) inputs."""
    model = KAN([2, 5, 1], grid_size=5, degree=3).double()
    for name in [*_kernels(torch.float64), "autograd", "auto"]:
        for width in (1, 3, 200):
            x = torch.rand(4, width, dtype=torch.float64)
            with pytest.raises(ValueError, match=rf"\(4, {width}\).*\(batch, 2\)"):
                spline_layer_forward(x, model.layers[0].coef, model.layers[0].grid, name)
            with pytest.raises(ValueError, match=rf"\(4, {width}\)"):
                K.set_default_kernel(name)
                try:
                    model(x)
                finally:
                    K.set_default_kernel("auto")
    coef = torch.randn(5, 2, 8, dtype=torch.float64)
    grid = Grid(5, 3)
    with pytest.raises(ValueError, match="dtype"):
        spline_layer_forward(torch.rand(4, 2), coef, grid)  # float32 x, float64 coef
    with pytest.raises(ValueError, match=r"\(5, 2, 9\).*n \+ k = 8"):
        spline_layer_forward(torch.rand(4, 2, dtype=torch.float64), torch.randn(5, 2, 9), grid)
    with pytest.raises(ValueError, match="expected"):
        spline_layer_forward(torch.rand(4, 2, 1, dtype=torch.float64), coef, grid)


def _map_operands(B=5, P=3, Q=4, n=6, k=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(B, P, generator=gen, dtype=dtype) * n
    tab = torch.randn(P * (n + k), Q, generator=gen, dtype=dtype)
    c = torch.randn(B, P, generator=gen, dtype=dtype)
    g = torch.randn(B, Q, generator=gen, dtype=dtype)
    return u, tab, c, g, K.local_spec(n, k, 0, dtype, CPU)


@pytest.mark.parametrize("name", _kernels(torch.float64))
def test_every_map_refuses_operands_that_do_not_fit(name):
    kern = K.KERNELS[name]
    u, tab, c, g, spec = _map_operands()
    rows = tab.shape[0]
    bad = {
        "u width": lambda: kern.contract(c, u[:, :2].contiguous(), tab, spec),
        "u 1-D": lambda: kern.contract(None, u.reshape(-1), tab, spec),
        "T rows": lambda: kern.contract(c, u, tab[:-1], spec),
        "T 3-D": lambda: kern.sample(g, u, tab.unsqueeze(0), spec),
        "c shape": lambda: kern.contract(c[:, :2].contiguous(), u, tab, spec),
        "c batch": lambda: kern.scatter(c[:4].contiguous(), u, g, spec, rows),
        "g batch": lambda: kern.sample(g[:4].contiguous(), u, tab, spec),
        "g width": lambda: kern.sample(g[:, :3].contiguous(), u, tab, spec),
        "g missing": lambda: kern.sample(None, u, tab, spec),
        "scatter rows": lambda: kern.scatter(c, u, g, spec, rows + 1),
        "scatter g batch": lambda: kern.scatter(None, u, g[:3].contiguous(), spec, rows),
        "dtype T": lambda: kern.contract(None, u, tab.float(), spec),
        "dtype c": lambda: kern.contract(c.float(), u, tab, spec),
        "dtype spec": lambda: kern.contract(
            None, u, tab, K.local_spec(6, 3, 0, torch.float32, CPU)
        ),
        "spec grid": lambda: kern.contract(None, u, tab, K.local_spec(7, 3, 0, torch.float64, CPU)),
        "spec degree": lambda: kern.sample(g, u, tab, K.local_spec(6, 2, 1, torch.float64, CPU)),
        "u transposed": lambda: kern.contract(None, u.T.contiguous().T, tab, spec),
        "T sliced": lambda: kern.contract(None, u, torch.cat([tab, tab], 1)[:, ::2], spec),
        "g transposed": lambda: kern.scatter(c, u, g.T.contiguous().T, spec, rows),
        "integer u": lambda: kern.contract(None, u.long(), tab.long(), spec),
    }
    for what, call in bad.items():
        with pytest.raises(ValueError, match="spline kernel") as info:
            call()
        assert (
            "got" in str(info.value)
            or "expected" in str(info.value)
            or "has" in str(info.value)
            or "not contiguous" in str(info.value)
        ), (what, str(info.value))
    # the fitting operands pass (and the vanishing orders check too, without a kernel call)
    kern.contract(c, u, tab, spec)
    with pytest.raises(ValueError, match="T has shape"):
        K._contract(None, u, tab[:-1], K.local_spec(6, 3, 4, torch.float64, CPU), kern)
    with pytest.raises(ValueError, match="rows"):
        K._scatter(c, u, g, K.local_spec(6, 3, 4, torch.float64, CPU), kern, rows - 1)


def test_c_kernel_refuses_dtypes_and_degrees_it_cannot_run():
    lib = kernels_c.load()
    assert lib is not None
    u, tab, c, g, _ = _map_operands(dtype=torch.float16)
    with pytest.raises(ValueError, match="float32/float64"):
        lib.contract(None, u, tab, K.local_spec(6, 3, 0, torch.float16, CPU))
    n, k = 3, kernels_c.KMAX  # degree past the C source's limit
    u = torch.rand(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="degree"):
        lib.contract(None, u, torch.zeros(n + k, 1, dtype=torch.float64),
                     K.local_spec(n, k, 0, torch.float64, CPU))  # fmt: skip


def test_checks_are_cheap_next_to_the_call():
    """The checks read metadata only: well under the cost of the smallest C call."""
    import timeit

    u, tab, c, g, spec = _map_operands(B=16, P=2, Q=2)
    lib = kernels_c.load()
    assert lib is not None
    check = lambda: K.check_map_operands("contract", c, u, tab, spec)  # noqa: E731
    call = lambda: lib.contract(c, u, tab, spec)  # noqa: E731
    for f in (check, call):
        f()
    t_check = min(timeit.repeat(check, number=2000, repeat=5))
    t_call = min(timeit.repeat(call, number=2000, repeat=5))
    assert t_check < t_call  # the call includes one check plus the ctypes call itself


# ----------------------------------------------------------------------------- fuzz: layer
def _layouts(leaf: torch.Tensor, kind: str, B: int, P: int) -> torch.Tensor:
    """A (B, P) view of ``leaf`` laid out as ``kind``."""
    if kind == "transposed":
        return leaf.t()
    if kind == "sliced":
        return leaf[:, ::2]
    return leaf


def _leaf_x(x0: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "transposed":
        return x0.t().contiguous().requires_grad_(True)
    if kind == "sliced":
        wide = torch.stack([x0, torch.full_like(x0, 7.0)], -1).reshape(x0.shape[0], -1)
        return wide.contiguous().requires_grad_(True)
    return x0.clone().requires_grad_(True)


def _coef_leaf(coef0: torch.Tensor, kind: str) -> torch.Tensor:
    """A leaf holding coef0 (Q, P, nb): contiguous, permuted (Q, nb, P) or interleaved."""
    if kind == "permuted":
        leaf = coef0.permute(0, 2, 1).contiguous()
    elif kind == "sliced":
        leaf = torch.stack([coef0, -coef0], -1).reshape(*coef0.shape[:2], -1).contiguous()
    else:
        leaf = coef0.clone()
    return leaf.requires_grad_(True)


def _coef_view(leaf: torch.Tensor, kind: str) -> torch.Tensor:
    """The (Q, P, nb) view of a ``_coef_leaf`` (a non-contiguous one unless "contiguous")."""
    if kind == "permuted":
        return leaf.transpose(1, 2)
    if kind == "sliced":
        return leaf[:, :, ::2]
    return leaf


def _grad(out: torch.Tensor, inp: torch.Tensor, create_graph: bool) -> torch.Tensor:
    if not out.requires_grad:
        return torch.zeros_like(inp)
    (g,) = torch.autograd.grad(out, inp, create_graph=create_graph, materialize_grads=True)
    return g


def _layer_jets(x0, xkind, coef0, ckind, grid, kernel, weights):
    """y, d(y.w1)/dx, d(gx.w2)/dx, d(loss)/dcoef with loss using all three."""
    w1, w2, w3, w4, w5 = weights
    x_leaf = _leaf_x(x0, xkind)
    x = _layouts(x_leaf, xkind, *x0.shape)
    coef_leaf = _coef_leaf(coef0, ckind)
    coef = _coef_view(coef_leaf, ckind)
    assert x.shape == x0.shape and coef.shape == coef0.shape
    y = spline_layer_forward(x, coef, grid, kernel)
    view = lambda t: _layouts(t, xkind, *x0.shape)  # noqa: E731  leaf layout -> (B, P)
    gx = view(_grad((y * w1).sum(), x_leaf, True))
    gxx = view(_grad((gx * w2).sum(), x_leaf, True))
    loss = (y * w3).sum() + (gx * w4).sum() + (gxx * w5).sum()
    gc = _coef_view(_grad(loss, coef_leaf, False), ckind)
    return {"y": y, "grad_x": gx, "second_x": gxx, "grad_coef": gc}


def _random_layer_case(rng: np.random.Generator):
    P, Q = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    B = int(rng.choice([1, 2, 3, 7, 16, 33]))
    degree, n = int(rng.integers(0, 6)), int(rng.integers(1, 13))
    dtype = DTYPES[int(rng.integers(0, 2))]
    a = float(rng.uniform(-2, 0))
    b = a + float(rng.uniform(0.5, 3))
    grid = Grid(n, degree, (a, b))
    t = rng.uniform(-0.15, 1.15, size=(B, P))  # some points outside [a, b] (clamped)
    special = rng.random((B, P))
    t[special < 0.1] = 0.0  # the ends
    t[(special >= 0.1) & (special < 0.2)] = 1.0
    knots = rng.integers(0, n + 1, size=(B, P)) / n
    t = np.where((special >= 0.2) & (special < 0.3), knots, t)  # on knots
    x0 = torch.tensor(a + (b - a) * t, dtype=dtype)
    coef0 = torch.tensor(rng.standard_normal((Q, P, n + degree)), dtype=dtype)
    xkind = ["contiguous", "transposed", "sliced"][int(rng.integers(0, 3))]
    ckind = ["contiguous", "permuted", "sliced"][int(rng.integers(0, 3))]
    weights = [torch.tensor(rng.standard_normal(s), dtype=dtype) for s in
               [(B, Q), (B, P), (B, Q), (B, P), (B, P)]]  # fmt: skip
    return dict(P=P, Q=Q, B=B, degree=degree, n=n, dtype=dtype, grid=grid, x0=x0,
                coef0=coef0, xkind=xkind, ckind=ckind, weights=weights)  # fmt: skip


def _compare(out: dict, ref: dict, dtype, what) -> None:
    for name in ref:
        a, b = out[name].detach().double(), ref[name].detach().double()
        assert a.shape == b.shape, (what, name, a.shape, b.shape)
        assert bool(torch.isfinite(a).all()), (what, name)
        bound = TOL[dtype] * max(float(b.abs().max()) if b.numel() else 0.0, 1.0)
        err = float((a - b).abs().max()) if b.numel() else 0.0
        assert err <= bound, (what, name, err, bound)


#: layer-level configurations (each against every kernel: c, gather, dense)
LAYER_CASES = 800


def test_fuzz_layers_every_kernel_matches_the_autograd_reference():
    rng = np.random.default_rng(20240611)
    start, compared, refused = time.perf_counter(), 0, 0
    for i in range(LAYER_CASES):
        case = _random_layer_case(rng)
        args = (case["x0"], case["xkind"], case["coef0"], case["ckind"], case["grid"])
        ref = _layer_jets(*args, "autograd", case["weights"])
        for name in _kernels(case["dtype"]):
            what = (i, name, {k: v for k, v in case.items() if k not in ("x0", "coef0", "weights")})
            _compare(_layer_jets(*args, name, case["weights"]), ref, case["dtype"], what)
            compared += 1
        # the same layer on an input one column too wide or too narrow must raise
        P = case["P"]
        for wrong in {P - 1, P + 1} - {0}:
            x = torch.zeros(case["B"], wrong, dtype=case["dtype"])
            for name in [*_kernels(case["dtype"]), "autograd"]:
                with pytest.raises(ValueError, match="expected"):
                    spline_layer_forward(x, case["coef0"], case["grid"], name)
                refused += 1
    elapsed = time.perf_counter() - start
    print(f"layer fuzz: {compared} (case, kernel) jets + {refused} refusals in {elapsed:.1f} s")
    assert compared >= 2000 and refused >= 4000


# ----------------------------------------------------------------------------- fuzz: maps
def _scipy_derivative_basis(u: np.ndarray, n: int, k: int, order: int) -> np.ndarray:
    """D[b, p, i] = d^order/du^order B_i(u[b, p]) on knots -k .. n+k (unit spacing), the
    cell of u clamped to 0 .. n-1 (points outside continue the end pieces)."""
    shape = u.shape
    if order > k:
        return np.zeros((*shape, n + k))
    t = np.arange(-k, n + k + 1, dtype=np.float64)
    spline = BSpline(t, np.eye(n + k), k, extrapolate=True)
    if order:
        spline = spline.derivative(order)
    return spline(u.reshape(-1)).reshape(*shape, n + k)


def _map_references(D, c, T, g):
    """contract (B, Q), sample (B, P), scatter (P nb, Q) from dense derivatives (numpy)."""
    B, P, nb = D.shape
    cD = D * (1.0 if c is None else c[:, :, None])
    contract = cD.reshape(B, P * nb) @ T
    sample = (D * (g @ T.T).reshape(B, P, nb)).sum(-1)
    scatter = cD.reshape(B, P * nb).T @ g
    return contract, sample, scatter


#: map-level configurations (each: 3 maps, direct and through the autograd entry points)
MAP_CASES = 1000


def test_fuzz_maps_of_orders_0_to_2_match_scipy():
    rng = np.random.default_rng(7)
    start, compared = time.perf_counter(), 0
    for i in range(MAP_CASES):
        B, P, Q = int(rng.choice([1, 2, 5, 17])), int(rng.integers(1, 6)), int(rng.integers(1, 6))
        k, n, order = int(rng.integers(0, 6)), int(rng.integers(1, 10)), int(rng.integers(0, 3))
        dtype = DTYPES[int(rng.integers(0, 2))]
        u64 = rng.uniform(-0.2, n + 0.2, size=(B, P))
        u64[rng.random((B, P)) < 0.2] = rng.integers(0, n + 1)  # on knots and ends
        u = torch.tensor(u64, dtype=dtype)
        c = None if rng.random() < 0.3 else torch.tensor(rng.standard_normal((B, P)), dtype=dtype)
        T = torch.tensor(rng.standard_normal((P * (n + k), Q)), dtype=dtype)
        g = torch.tensor(rng.standard_normal((B, Q)), dtype=dtype)
        D = _scipy_derivative_basis(u.double().numpy(), n, k, order)
        refs = _map_references(D, None if c is None else c.double().numpy(), T.double().numpy(),
                               g.double().numpy())  # fmt: skip
        spec = K.local_spec(n, k, order, dtype, CPU)
        rows = P * (n + k)
        for name in _kernels(dtype):
            kern = K.KERNELS[name]
            # through the autograd entry points, with non-contiguous operands
            nc = lambda t: None if t is None else t.T.contiguous().T  # noqa: E731
            outs = [
                K._contract(nc(c), nc(u), nc(T), spec, kern),
                K._sample(nc(g), nc(u), nc(T), spec, kern),
                K._scatter(nc(c), nc(u), nc(g), spec, kern, rows),
            ]
            if not spec.vanishes:  # the raw maps, contiguous operands
                outs += [kern.contract(c, u, T, spec), kern.sample(g, u, T, spec),
                         kern.scatter(c, u, g, spec, rows)]  # fmt: skip
            for j, out in enumerate(outs):
                ref = torch.from_numpy(refs[j % 3])
                what = (i, name, ["contract", "sample", "scatter"][j % 3], B, P, Q, n, k, order,
                        dtype, c is None)  # fmt: skip
                assert out.shape == ref.shape and out.dtype == dtype, what
                bound = TOL[dtype] * 10 * max(float(ref.abs().max()) if ref.numel() else 0, 1.0)
                err = float((out.double() - ref).abs().max()) if ref.numel() else 0.0
                assert err <= bound, (what, err, bound)
                compared += 1
    elapsed = time.perf_counter() - start
    print(f"map fuzz: {compared} map evaluations in {elapsed:.1f} s")
    assert compared >= 10000


# ----------------------------------------------------------------------------- sanitizer
_ASAN_FUZZ = """
import ctypes, sys
from pathlib import Path
import numpy as np, torch
from bench_mlkan import kernels as K, kernels_c
from bench_mlkan.splines import Grid
torch.set_num_threads(2)
lib = kernels_c.open_library(Path(sys.argv[1]))
kernels_c._LOADED, kernels_c._TRIED = lib, True
cpu, rng, n_calls = torch.device("cpu"), np.random.default_rng(3), 0
if sys.argv[2] == "overflow":  # negative control: bypass the checks, table one row short
    u = torch.full((4, 2), 4.99, dtype=torch.float64)
    tab = torch.randn(2 * 8 - 1, 3, dtype=torch.float64)
    out = torch.empty(4, 3, dtype=torch.float64)
    spec = K.local_spec(5, 3, 0, torch.float64, cpu)
    fn = lib._contract[torch.float64]  # the raw C function, no checks
    fn(None, u.data_ptr(), tab.data_ptr(), out.data_ptr(), 4, 2, 5, 4, 3, *spec.table_ptrs, 1)
    print("no report")
    sys.exit(0)
for i in range(300):
    B, P, Q = int(rng.choice([1, 3, 40, 700])), int(rng.integers(1, 7)), int(rng.integers(1, 40))
    k, n = int(rng.integers(0, 8)), int(rng.integers(1, 12))
    dtype = (torch.float32, torch.float64)[i % 2]
    u = torch.tensor(rng.uniform(-1, n + 1, (B, P)), dtype=dtype)
    u[0, 0] = float("nan")
    c = torch.tensor(rng.standard_normal((B, P)), dtype=dtype)
    T = torch.tensor(rng.standard_normal((P * (n + k), Q)), dtype=dtype)
    g = torch.tensor(rng.standard_normal((B, Q)), dtype=dtype)
    for order in range(min(k, 2) + 1):
        spec = K.local_spec(n, k, order, dtype, cpu)
        lib.contract(c, u, T, spec); lib.sample(g, u, T, spec)
        lib.scatter(c, u, g, spec, P * (n + k)); lib.scatter(None, u, g, spec, P * (n + k))
        n_calls += 4
    if k > 5:  # the maps also ran the generic (runtime K1) path; Grid stops at degree 5
        continue
    x = torch.tensor(rng.uniform(-1.5, 1.5, (B, P)), dtype=dtype, requires_grad=True)
    coef = torch.tensor(rng.standard_normal((Q, P, n + k)), dtype=dtype, requires_grad=True)
    y = K.spline_contract(x, coef, Grid(n, k), "c")
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    torch.autograd.grad(gx.square().sum(), [x, coef], allow_unused=True)
    for wrong in (P + 1, P + 200):
        try:
            K.spline_contract(torch.zeros(B, wrong, dtype=dtype), coef, Grid(n, k), "c")
        except ValueError:
            n_calls += 1
        else:
            sys.exit("a wrong width was accepted")
print("asan fuzz ok", n_calls)
"""


def _libasan() -> str | None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    out = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = out.stdout.strip()
    return path if out.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


def _asan_runner(tmp_path: Path, libasan: str, lib: Path, source: str, timeout: int):
    """run(mode): the fuzz script ``source`` with library ``lib`` in a child process with the
    AddressSanitizer runtime preloaded (leaks off, 2 OpenMP threads)."""
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               WANDB_MODE="disabled", OMP_NUM_THREADS="2")  # fmt: skip
    script = tmp_path / "fuzz.py"
    script.write_text(source)

    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(lib), mode], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    return run


@pytest.mark.slow
def test_c_kernel_under_address_sanitizer(tmp_path):
    libasan = _libasan()
    if libasan is None:
        pytest.skip("AddressSanitizer runtime not found (gcc -print-file-name=libasan.so)")
    path = kernels_c.build(verbose=True, flags=kernels_c.ASAN_FLAGS, directory=tmp_path)
    if path is None:
        pytest.skip("the compiler cannot build with -fsanitize=address")
    run = _asan_runner(tmp_path, libasan, path, _ASAN_FUZZ, timeout=900)
    control = run("overflow")  # the sanitizer is live: an unchecked short table is caught
    if "no report" in control.stdout and "AddressSanitizer" not in control.stderr:
        pytest.fail("ASan did not report a deliberate out-of-bounds read")
    assert "heap-buffer-overflow" in control.stderr, control.stderr[-2000:]
    fuzz = run("fuzz")
    assert fuzz.returncode == 0 and "asan fuzz ok" in fuzz.stdout, (
        fuzz.stdout[-2000:] + fuzz.stderr[-4000:]
    )
    assert "AddressSanitizer" not in fuzz.stderr, fuzz.stderr[-4000:]
    print(fuzz.stdout.strip())


_JET_ASAN_FUZZ = """
import ctypes, sys
from pathlib import Path
import numpy as np, torch
from bench_mlkan import jets, jets_c
from bench_mlkan.splines import Grid
torch.set_num_threads(2)
kern = jets_c.JetKernel(ctypes.CDLL(sys.argv[1]), Path(sys.argv[1]))
jets_c._LOADED, jets_c._TRIED = kern, True
rng, n_calls, compared = np.random.default_rng(5), 0, 0
if sys.argv[2] == "overflow":  # negative control: bypass the checks, table one row short
    grid = Grid(5, 3)
    x = torch.zeros(4, 2, dtype=torch.float64)
    X = torch.zeros(3, 4, 2, dtype=torch.float64)
    tab = torch.randn(2 * grid.num_basis - 1, 3, dtype=torch.float64)
    ints, rest = kern._common(x, tab, grid, 2, ((0, 0),), None)
    Y = torch.empty(4, 4, 3, dtype=torch.float64)
    kern._fns["jet_forward", torch.float64](
        x.data_ptr(), X.data_ptr(), tab.data_ptr(), Y.data_ptr(), *ints, *rest, 1)
    print("no report")
    sys.exit(0)
for i in range(int(sys.argv[2])):
    N = int(rng.choice([1, 3, 40, 300]))
    P, n, k = int(rng.integers(1, 8)), int(rng.integers(1, 9)), int(rng.integers(0, 6))
    Q = int(rng.choice([1, 2, 3, 5, 8, 9, 16, 17, 20, 33]))
    D = int(rng.integers(1, 4))
    all_pairs = [(a, b) for a in range(D) for b in range(a, D)]
    pairs = tuple(p for p in all_pairs if rng.random() < 0.5)
    dtype = (torch.float32, torch.float64)[i % 2]
    sq = [None, ("tanh", 0.0, 1.0), ("sigmoid", -1.0, 2.0)][i % 3]
    grid = Grid(n, k)
    x = torch.tensor(rng.uniform(-1.5, 1.5, (N, P)), dtype=dtype)
    x[0, 0] = float("nan") if i % 5 == 0 else x[0, 0]
    R = D + len(pairs)
    X = torch.tensor(rng.standard_normal((R, N, P)), dtype=dtype)
    tab = torch.tensor(rng.standard_normal((P * grid.num_basis, Q)), dtype=dtype)
    G = torch.tensor(rng.standard_normal((N, Q)), dtype=dtype)
    Gr = torch.tensor(rng.standard_normal((R, N, Q)), dtype=dtype)
    xin = torch.tanh(x) if sq and sq[0] == "tanh" else torch.sigmoid(x) if sq else x
    kern.forward(xin, X, tab, grid, D, pairs, sq)
    needs = [bool(b) for b in rng.integers(0, 2, 3)]
    kern.backward(xin, X, tab, G, Gr, grid, D, pairs, needs, sq)
    n_calls += 2
    if dtype == torch.float64 and i % 5:  # the C path against the PyTorch maps
        coef = tab.reshape(P, grid.num_basis, Q).permute(2, 0, 1).contiguous()
        jet = jets.Jet(x, X, D, pairs)
        first = None if sq is None else (sq[0], grid.grid_range[0], grid.grid_range[1])
        got = jets.spline(jet, coef, grid, "c", squash_first=first)
        ref_in = jet if first is None else jets.squash(jet, *first)
        ref = jets.spline(ref_in, coef, grid, "dense")
        for a, b in ((got.value, ref.value), (got.rest, ref.rest)):
            err = (a - b).abs().max() / (1 + b.abs().max())
            assert err < 1e-10, (i, N, P, Q, n, k, D, pairs, sq, float(err))
        compared += 1
print("jet asan fuzz ok", n_calls, compared)
"""


def test_jet_kernel_under_address_sanitizer(tmp_path):
    """The spline jet kernel (power form, padded tables, narrow path, the squash inside)
    built with -fsanitize=address: 3000 random shapes, degrees, directions, pairs, squashes
    and dtypes with no report, the float64 results equal to the PyTorch maps; a deliberate
    short table is reported."""
    libasan = _libasan()
    if libasan is None:
        pytest.skip("AddressSanitizer runtime not found (gcc -print-file-name=libasan.so)")
    cc = kernels_c._compiler()
    assert cc is not None
    src, lib = tmp_path / "jets.c", tmp_path / "jets_asan.so"
    src.write_text(jets_c.C_SOURCE)
    flags = [*kernels_c.ASAN_FLAGS, "-march=native"]
    if subprocess.run([cc, *flags, str(src), "-o", str(lib)], capture_output=True).returncode:
        pytest.skip("the compiler cannot build with -fsanitize=address")
    run = _asan_runner(tmp_path, libasan, lib, _JET_ASAN_FUZZ, timeout=600)
    control = run("overflow")
    assert "heap-buffer-overflow" in control.stderr, (control.stdout, control.stderr[-2000:])
    fuzz = run("3000")
    assert fuzz.returncode == 0 and "jet asan fuzz ok" in fuzz.stdout, (
        fuzz.stdout[-2000:] + fuzz.stderr[-4000:]
    )
    assert "AddressSanitizer" not in fuzz.stderr, fuzz.stderr[-4000:]
    print(fuzz.stdout.strip())


# ----------------------------------------------------------------------------- caches
def _cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, cache_files.CacheWarning)]


def _check_library(path: Path) -> None:
    """The library at ``path`` computes what the pure-PyTorch kernel computes."""
    lib = kernels_c.open_library(path)
    u, tab, c, g, spec = _map_operands(B=9, P=3, Q=4)
    ref = K.KERNELS["gather"]
    assert torch.allclose(lib.contract(c, u, tab, spec), ref.contract(c, u, tab, spec))
    assert torch.allclose(lib.scatter(c, u, g, spec, 27), ref.scatter(c, u, g, spec, 27))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_c_library_is_detected_and_rebuilt(tmp_path, monkeypatch):
    good = kernels_c.build()
    assert good is not None
    cc = kernels_c._compiler()
    assert cc is not None
    path = kernels_c.library_path(cc, directory=tmp_path)
    shutil.copy(good, path)  # a verified library in a private cache (saves one compile)
    shutil.copy(cache_files.sidecar(good), cache_files.sidecar(path))
    assert cache_files.verify(path, kernels_c.build_key(cc)) is None
    # truncated (the user's "Bus error" in every process): one warning, rebuilt, verified
    _truncate(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert kernels_c.build(directory=tmp_path) == path
    (message,) = _cache_warnings(record)
    assert str(path) in message and "sha256 mismatch" in message
    assert cache_files.verify(path, kernels_c.build_key(cc)) is None
    with warnings.catch_warnings(record=True) as record:  # verified now: no warning
        warnings.simplefilter("always")
        assert kernels_c.build(directory=tmp_path) == path
    assert _cache_warnings(record) == []
    # modified (same size), through load() as a fresh process would run it
    _flip_byte(path)
    monkeypatch.setenv("BENCH_MLKAN_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels_c, "_TRIED", False)
    monkeypatch.setattr(kernels_c, "_LOADED", None)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        lib = kernels_c.load()
    assert lib is not None and lib.path == path
    assert len(_cache_warnings(record)) == 1
    _check_library(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or p.is_dir()]


SMALL_AC = dict(modes=64, dt=1e-2, snapshot_dt=5e-2, t_end=0.2, eps=1e-2)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "other_arrays", "no_sidecar"])
def test_corrupt_allen_cahn_cache_is_detected_and_rebuilt(tmp_path, damage):
    from bench_mlkan.tasks import allen_cahn as ac

    cfg = ac.SpectralConfig(**SMALL_AC)
    exact = ac.compute_reference(cfg)
    ac.clear_reference_cache()
    ac.allen_cahn_reference(cfg, str(tmp_path))
    (path,) = tmp_path.glob("allen_cahn_*.npz")
    if damage == "truncate":  # the user's BadZipFile on every run
        _truncate(path)
    elif damage == "flip_byte":
        _flip_byte(path)
    elif damage == "other_arrays":  # a valid archive with other numbers
        np.savez(path, coeffs=exact.coeffs * 2, accuracy=exact.accuracy, info="{}")
    else:
        cache_files.sidecar(path).unlink()
    ac.clear_reference_cache()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sol = ac.allen_cahn_reference(cfg, str(tmp_path))
    (message,) = _cache_warnings(record)
    assert str(path) in message
    assert np.array_equal(sol.coeffs, exact.coeffs)
    assert np.array_equal(sol.accuracy, exact.accuracy)
    ac.clear_reference_cache()  # the next process reads the rebuilt file, silently
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = ac.allen_cahn_reference(cfg, str(tmp_path))
    assert _cache_warnings(record) == [] and np.array_equal(again.coeffs, exact.coeffs)
    ac.clear_reference_cache()


_CONCURRENT = """
import sys, time, warnings
from pathlib import Path
import numpy as np, torch
warnings.simplefilter("error")  # a cache warning here would mean a torn or corrupt file
from bench_mlkan import kernels as K, kernels_c
from bench_mlkan.tasks import allen_cahn as ac
folder = Path(sys.argv[1])
(folder / f"ready{sys.argv[2]}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
lib = kernels_c.load(verbose=True)
assert lib is not None and lib.path.parent == folder / "cache", lib
u = torch.rand(50, 3, dtype=torch.float64) * 6
tab = torch.randn(27, 4, dtype=torch.float64)
spec = K.local_spec(6, 3, 0, torch.float64, torch.device("cpu"))
ref = K.KERNELS["dense"].contract(None, u, tab, spec)
assert torch.allclose(lib.contract(None, u, tab, spec), ref)
cfg = ac.SpectralConfig(**%r)
sol = ac.allen_cahn_reference(cfg, str(folder / "cache"))
assert np.array_equal(sol.coeffs, ac.compute_reference(cfg).coeffs)
print("ok")
"""


def test_two_processes_building_the_caches_at_once(tmp_path):
    """Both start building the C library and the Allen-Cahn reference at the same moment."""
    script = tmp_path / "child.py"
    script.write_text(_CONCURRENT % SMALL_AC)
    env = dict(os.environ, BENCH_MLKAN_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled")
    env.pop("BENCH_MLKAN_NO_C", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(i)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs if p.poll() is not None
        ]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err[-3000:]
    cache = tmp_path / "cache"
    libraries = list(cache.glob("mlkan_kernels_*.so"))
    references = list(cache.glob("allen_cahn_*.npz"))
    assert len(libraries) == 1 and len(references) == 1
    cc = kernels_c._compiler()
    assert cc is not None
    assert cache_files.verify(libraries[0], kernels_c.build_key(cc)) is None
    assert not [p.name for p in cache.iterdir() if p.name.endswith(".tmp") or p.is_dir()]
