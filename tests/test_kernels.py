"""Every evaluation kernel equals the Cox-de Boor reference and each other (issue 7).

Values, coefficient gradients, input gradients, second input derivatives and a
third-order mixed term, in float64 to ~1e-12; float32 accuracy at grid 80, cubic; the
kernel choice and the C fallback; what the tape saves; a smoke run of ``perf --quick``.
No timing is asserted anywhere.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from bench_mlkan import cache_files, kernels_c
from bench_mlkan import kernels as K
from bench_mlkan.cox_de_boor import (
    CoxDeBoorKAN,
    cox_de_boor_basis,
    cox_de_boor_layer_forward,
    extended_knots,
)
from bench_mlkan.devtools.perf import saved_tensor_bytes
from bench_mlkan.models import KAN, spline_layer_forward
from bench_mlkan.splines import Grid, bspline_basis, local_bspline

CPU = torch.device("cpu")
KERNELS_F64 = K.available_kernels(CPU, torch.float64)


def _inputs(grid: Grid, batch: int, P: int, dtype=torch.float64, seed: int = 0):
    """Interior points (the reference's half-open intervals give 0 at x == b exactly)."""
    gen = torch.Generator().manual_seed(seed)
    a, b = grid.grid_range
    t = torch.rand(batch, P, generator=gen, dtype=torch.float64) * 0.999 + 0.0005
    return (a + (b - a) * t).to(dtype)


def _derivatives(f, x0, coef, grid):
    """y, d(y.w)/dx, d|gx|^2/dx, and d(loss)/dcoef of a loss using all of them."""
    x = x0.clone().requires_grad_(True)
    y = f(x, coef, grid)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True, materialize_grads=True)
    (gxx,) = torch.autograd.grad((gx**2).sum(), x, create_graph=True, materialize_grads=True)
    loss = (y**2).sum() + (gx**2).sum() + gxx.sum()
    (gc,) = torch.autograd.grad(loss, coef, materialize_grads=True)
    return {"y": y, "grad_x": gx, "second_x": gxx, "grad_coef": gc}


def _rel(a, b):
    return float(((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).detach())


def test_c_kernel_builds_here():
    # the development machine and CI have a C compiler; elsewhere "auto" falls back
    assert kernels_c.load() is not None
    assert "c" in KERNELS_F64


@pytest.mark.parametrize("kernel", KERNELS_F64)
@pytest.mark.parametrize(
    "degree,grid_size,P,Q",
    [(0, 4, 3, 5), (1, 5, 2, 33), (2, 7, 3, 37), (3, 6, 2, 64), (3, 20, 4, 3), (5, 9, 1, 1)],
)
def test_kernel_matches_cox_de_boor(kernel, degree, grid_size, P, Q):
    grid = Grid(grid_size, degree, (-1.0, 2.0))
    x0 = _inputs(grid, 37, P)
    gen = torch.Generator().manual_seed(2)
    coef = torch.randn(Q, P, grid.num_basis, generator=gen, dtype=torch.float64)
    coef.requires_grad_(True)
    ref = _derivatives(cox_de_boor_layer_forward, x0, coef, grid)
    out = _derivatives(lambda x, c, g: spline_layer_forward(x, c, g, kernel=kernel), x0, coef, grid)
    for name in ref:
        assert _rel(out[name], ref[name]) <= 1e-12, (kernel, name, _rel(out[name], ref[name]))


@pytest.mark.parametrize("kernel", KERNELS_F64)
def test_kernels_agree_with_each_other_on_a_network(kernel):
    """A 3-layer tanh-squashed KAN: PINN-style Laplacian and its parameter gradient."""
    torch.manual_seed(0)
    model = KAN([2, 6, 5, 1], grid_size=8, degree=3, squash="tanh").double()
    X = (2 * torch.rand(40, 2, dtype=torch.float64) - 1).requires_grad_(True)

    def pinn(name):
        old = K.get_default_kernel()
        K.set_default_kernel(name)
        try:
            u = model(X)
            (g,) = torch.autograd.grad(u.sum(), X, create_graph=True)
            lap = sum(
                torch.autograd.grad(g[:, i].sum(), X, create_graph=True)[0][:, i] for i in (0, 1)
            )
            loss = (lap**2).mean() + (u**2).mean()
            return [u, g, lap, *torch.autograd.grad(loss, list(model.parameters()))]
        finally:
            K.set_default_kernel(old)

    ref, out = pinn("autograd"), pinn(kernel)
    cdb = CoxDeBoorKAN([2, 6, 5, 1], 8, 3).double().load_from(model)
    assert _rel(model(X), cdb(X)) <= 1e-13
    for a, b in zip(out, ref):
        assert _rel(a, b) <= 1e-12


def test_horner_basis_matches_cox_de_boor_basis():
    for degree in range(0, 6):
        grid = Grid(11, degree, (-2.0, 1.0))
        x = _inputs(grid, 500, 1)
        dense = bspline_basis(x[:, 0], grid)
        ref = cox_de_boor_basis(x, extended_knots(grid, 1), degree)[:, 0]
        assert float((dense - ref).abs().max()) <= 1e-14
        first, values = local_bspline(x[:, 0], grid)
        assert (values >= 0).all() and first.min() >= 0 and first.max() <= grid.grid_size - 1


@pytest.mark.parametrize("kernel", K.available_kernels(CPU, torch.float32))
def test_float32_accuracy_grid80_cubic(kernel):
    grid = Grid(80, 3)
    x64 = _inputs(grid, 2048, 16, seed=3)
    x32 = x64.float()
    # basis values within 1e-5 of float64 (at the float32-rounded inputs; dense, since at a
    # knot float32 may pick the neighbouring cell: same values, shifted local positions)
    b32 = bspline_basis(x32, grid)
    b64 = bspline_basis(x32.double(), grid)
    assert float((b32.double() - b64).abs().max()) <= 1e-5
    # layer outputs within 1e-4 relative of float64
    gen = torch.Generator().manual_seed(4)
    coef64 = torch.randn(8, 16, grid.num_basis, generator=gen, dtype=torch.float64)
    y32 = spline_layer_forward(x32, coef64.float(), grid, kernel=kernel)
    y64 = cox_de_boor_layer_forward(x32.double(), coef64, grid)
    assert y32.dtype == torch.float32
    assert _rel(y32.double(), y64) <= 1e-4


def test_auto_choice_and_errors(monkeypatch):
    grid = Grid(20, 3)
    assert K.resolve_kernel("auto", grid, CPU, torch.float64) == "c"
    assert K.resolve_kernel("dense", grid, CPU, torch.float64) == "dense"
    with pytest.raises(ValueError, match="known"):
        K.resolve_kernel("nope", grid, CPU, torch.float32)
    with pytest.raises(ValueError, match="known"):
        K.set_default_kernel("nope")
    # without the C library: pure PyTorch, same numbers
    monkeypatch.setattr(kernels_c, "_TRIED", False)
    monkeypatch.setattr(kernels_c, "_LOADED", None)
    monkeypatch.setenv("BENCH_MLKAN_NO_C", "1")
    assert kernels_c.load() is None
    assert K.resolve_kernel("auto", grid, CPU, torch.float64) in ("dense", "gather")
    assert "c" not in K.available_kernels(CPU, torch.float64)
    x = _inputs(grid, 10, 3)
    coef = torch.randn(2, 3, grid.num_basis, dtype=torch.float64)
    ref = cox_de_boor_layer_forward(x, coef, grid)
    assert _rel(spline_layer_forward(x, coef, grid), ref) <= 1e-13


def test_c_build_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_MLKAN_CACHE", str(tmp_path))
    first = kernels_c.build()
    assert first is not None and first.exists() and first.parent == tmp_path
    mtime = first.stat().st_mtime_ns
    assert kernels_c.build() == first and first.stat().st_mtime_ns == mtime
    # beside it: the library's sha256 (recomputed here with hashlib) and the build key
    meta = json.loads(cache_files.sidecar(first).read_text())
    assert meta["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert meta["key"] == kernels_c.build_key(meta["cc"]) and meta["key"][:16] in first.name


def test_maps_without_gradients_skip_the_autograd_function():
    grid = Grid(6, 3)
    spec = K.local_spec(6, 3, 0, torch.float64, CPU)
    u = torch.rand(5, 2, dtype=torch.float64) * 6
    tab = torch.randn(2 * grid.num_basis, 3, dtype=torch.float64, requires_grad=True)
    for name in ("c", "dense"):
        with_grad = K._contract(None, u, tab, spec, K.KERNELS[name])
        with torch.no_grad():
            plain = K._contract(None, u, tab, spec, K.KERNELS[name])
        assert with_grad.grad_fn is not None and plain.grad_fn is None
        assert torch.equal(plain, with_grad.detach())


def test_kernel_overhead_script(tmp_path):
    from bench_mlkan.devtools import kernel_overhead as ko

    rows = ko.measure(batches=(1, 3), kernels=["c", "dense"])
    assert [(r["kernel"], r["batch"]) for r in rows] == [("c", 1), ("dense", 1), ("c", 3),
                                                         ("dense", 3)]  # fmt: skip
    assert all(r[f"{m}_us"] > 0 for r in rows for m in ("contract", "sample", "scatter", "entry"))
    fake = [
        {"kernel": "c", "batch": 1, "contract_us": 5, "sample_us": 5, "scatter_us": 5},
        {"kernel": "dense", "batch": 1, "contract_us": 30, "sample_us": 30, "scatter_us": 30},
        {"kernel": "c", "batch": 9, "contract_us": 50, "sample_us": 60, "scatter_us": 70},
        {"kernel": "dense", "batch": 9, "contract_us": 55, "sample_us": 55, "scatter_us": 55},
    ]
    assert ko.crossover(fake) == 9  # mean 55 < 60
    assert ko.crossover(fake[:2]) is None
    out = tmp_path / "o.json"
    assert ko.main(["--batches", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["batch"] == 2


def test_tape_saves_only_batch_by_width_tensors():
    """The fused path never saves (batch, P, k+1) values or a dense basis."""
    torch.manual_seed(0)
    batch = 512
    model = KAN([2, 16, 16, 1], grid_size=20, degree=3, squash="tanh")
    X = (2 * torch.rand(batch, 2) - 1).requires_grad_(True)
    largest = {}
    for name in ("c", "autograd"):
        K.set_default_kernel(name)
        seen: list[int] = []

        def pack(t, seen=seen):
            seen.append(t.numel())
            return t

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                u = model(X)
                (g,) = torch.autograd.grad(u.sum(), X, create_graph=True)
                (gg,) = torch.autograd.grad(g[:, 0].sum(), X, create_graph=True)
        finally:
            K.set_default_kernel("auto")
        largest[name] = max(seen)
    assert largest["c"] <= batch * 16  # (batch, width) at most
    assert largest["autograd"] >= batch * 16 * 23  # the dense basis


def test_saved_tensor_bytes_counts_storages():
    x = torch.randn(100, requires_grad=True)
    with saved_tensor_bytes() as saved:
        y = (x * x).sum()
    assert saved["bytes"] == 400
    del y


def test_perf_quick_smoke(tmp_path):
    from bench_mlkan.devtools.perf import perf_main

    args = ["--quick", "--threads", "1", "--out", str(tmp_path), "--dtypes", "float64"]
    assert perf_main([*args, "--sections", "layer,pinn"]) == 0
    result = json.loads((tmp_path / "perf-cpu-quick.json").read_text())
    assert result["environment"]["torch_threads"] == 1
    assert "allocator" in result["environment"]
    assert {r["grid_size"] for r in result["layer"]} == {5, 80}
    assert result["pinn"]["max_rel_diff_vs_reference"] < 1e-5
    assert result["pinn"]["peak_bytes"]["auto"] > 0
    assert (tmp_path / "perf-cpu-quick.md").exists()
    assert (tmp_path / "perf-cpu-quick.png").exists()


def test_tanh_mlp_jets_do_the_matmul_work_of_nested_autograd():
    """The counted FLOPs of a tanh MLP PINN step are within 10% between the routes (why its
    jets step cannot be several times faster than its nested-autograd step)."""
    from bench_mlkan.baselines import baseline_config
    from bench_mlkan.devtools.perf import _adam_step, counted_flops
    from bench_mlkan.engine import build_model
    from bench_mlkan.tasks import TASKS

    task = TASKS["burgers_1d"](size="tiny")
    config = baseline_config("mlp_medium", "burgers_1d")
    model = build_model(config, task).double()
    flops = {r: counted_flops(_adam_step(task, model, config, r)) for r in ("jet", "autograd")}
    assert flops["jet"]["aten::mm"] > 0 and flops["autograd"]["aten::mm"] > 0
    ratio = sum(flops["jet"].values()) / sum(flops["autograd"].values())
    assert 0.9 < ratio < 1.1, ratio
