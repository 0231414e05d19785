"""``make perf`` / ``python -m bench_mlkan perf``: time the KAN evaluation paths.

Four sections, every number a ratio to a baseline timed in the same run, interleaved:

1. **layer**: one KAN layer, forward + backward with the input gradient (``autograd.grad``
   of a fixed random cotangent w.r.t. input and coefficients), for every kernel of
   ``bench_mlkan.kernels`` and ``auto`` (what the models use), the Cox-de Boor reference
   (``cox_de_boor``, efficient-kan style) and a same-parameter ``Linear + tanh`` MLP
   (P -> H -> Q with H chosen to match P Q (n + k) parameters); over degree {1, 3}, grid
   {5, 20, 80}, widths {(2, 32), (32, 32), (64, 64)}, batch {1024, 8192}, float32, float64.
2. **pinn**: a Poisson-type PINN training step (u, grad u, u_xx + u_yy by
   ``create_graph=True`` autograd, squared residual, backward to the parameters) of a
   [2, 32, 32, 1] cubic KAN with grid 20 (tanh squash) at 8192 points: every kernel vs the
   Cox-de Boor KAN with the same coefficients vs a [2, 32, 32, 1] tanh MLP; time and peak
   memory.
3. **fig3**: the paper's Fig. 3 network (2 -> 3 hidden layers of width 64 -> 1), degrees
   {1, 2, 3}, grids {5, 10, 20, 40, 80}, batch 4096, float32: our KAN (auto kernel), the
   literal power-ReLU multichannel MLP (``evaluation="relu"``), the Cox-de Boor KAN and a
   same-width tanh MLP, forward + backward.

4. **step**: one PINN training step (loss + backward + optimizer step) at the paper's sizes
   for burgers_1d, allen_cahn_1d and poisson_interface_2d, per family (the kan_coarse,
   mcmlp_coarse and mlp_medium baselines' models), with input derivatives by forward jets
   (``bench_mlkan.jets``, the default route) and by nested autograd: time and peak memory,
   and the top ops of the jet step (torch.profiler). Also the engine: ``train()`` of
   kan_coarse on burgers_1d per step against a plain PyTorch tanh MLP [2, 56, 56, 1]
   nested-autograd Burgers PINN step in the same process. float64 by default.

Timing: warm-up, then rounds in which every case of a configuration runs once (order
rotated each round); per case the median over rounds. Rounds adapt to a time budget
between ``--min-repeats`` and ``--repeats``. Ratios are medians divided by the baseline's
median in the same configuration, so machine-wide slow-downs cancel to first order.

Peak memory (pinn and step sections): on CPU, the peak of the CPU allocator's "Total Allocated"
counter reported by ``torch.profiler`` (profile_memory=True) over one step, measured from
the step's start (parameters and inputs excluded); on CUDA ``max_memory_allocated``. Also
the bytes the autograd tape saves (``saved_tensors_hooks``, unique storages) at the end of
the forward pass and derivative graph, before the final backward.

Warning: the machine, thread count, library versions and allocator settings are recorded
with the results because they change the ratios (glibc malloc without
``MALLOC_MMAP_MAX_=0`` / a large ``MALLOC_TRIM_THRESHOLD_`` page-faults on every large
temporary, slowing the dense paths several times; the Makefile sets both).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import jets
from .. import kernels as K
from ..cox_de_boor import CoxDeBoorKAN, cox_de_boor_layer_forward, extended_knots
from ..models import KAN, MLP, count_parameters, spline_layer_forward
from ..splines import Grid

BASELINE = "cox_de_boor"
DEFAULT_SECTIONS = ["layer", "pinn", "fig3", "step"]


# ----------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Per-case timings (seconds) of one configuration."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, case: str) -> float:
        return statistics.median(self.samples[case])

    def ratio(self, case: str, baseline: str = BASELINE) -> float:
        return self.median(case) / self.median(baseline)


def time_cases(
    cases: dict[str, Callable[[], Any]],
    device: torch.device,
    *,
    warmup: int = 1,
    min_repeats: int = 3,
    max_repeats: int = 15,
    budget_s: float = 2.0,
) -> Timing:
    """Interleaved repeats: each round runs every case once, rotating the order."""
    names = list(cases)
    first: dict[str, float] = {}
    for name in names:
        for _ in range(warmup):
            _sync(device)
            t0 = time.perf_counter()
            cases[name]()
            _sync(device)
            first[name] = time.perf_counter() - t0
    per_round = sum(first.values()) or 1e-3
    rounds = int(min(max_repeats, max(min_repeats, budget_s / per_round)))
    timing = Timing({n: [] for n in names})
    for r in range(rounds):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            _sync(device)
            t0 = time.perf_counter()
            cases[name]()
            _sync(device)
            timing.samples[name].append(time.perf_counter() - t0)
    return timing


# ----------------------------------------------------------------------------- memory
@contextlib.contextmanager
def saved_tensor_bytes():
    """Count bytes the autograd tape saves (unique storages) inside the block."""
    seen: dict[int, int] = {}
    out = {"bytes": 0}

    def pack(t: Tensor) -> Tensor:
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # pragma: no cover - exotic tensors
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield out
    out["bytes"] = sum(seen.values())


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak extra bytes allocated while ``fn`` runs (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    totals = [
        e["args"]["Total Allocated"]
        for e in events
        if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})
    ]
    return int(max(totals, default=0))


# ----------------------------------------------------------------------------- section 1
def same_param_hidden(P: int, Q: int, nb: int) -> int:
    """H with P H + H + H Q closest to P Q nb (the KAN layer's parameter count)."""
    return max(1, round(P * Q * nb / (P + Q + 1)))


def _bind_kernel(coef: Tensor, grid: Grid, name: str) -> Callable[[Tensor], Tensor]:
    return lambda z: spline_layer_forward(z, coef, grid, kernel=name)


def layer_cases(
    P: int,
    Q: int,
    grid: Grid,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
    kernels: list[str] | None = None,
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    gen = torch.Generator().manual_seed(0)
    a, b = grid.grid_range
    x = (a + (b - a) * torch.rand(batch, P, generator=gen, dtype=torch.float64)).to(
        dtype=dtype, device=device
    )
    x.requires_grad_(True)
    gy = torch.randn(batch, Q, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    coef = torch.randn(Q, P, grid.num_basis, generator=gen, dtype=torch.float64) / math.sqrt(P)
    coef = nn.Parameter(coef.to(dtype=dtype, device=device))
    knots = extended_knots(grid, P, dtype, device)
    H = same_param_hidden(P, Q, grid.num_basis)
    mlp = nn.Sequential(nn.Linear(P, H), nn.Tanh(), nn.Linear(H, Q)).to(dtype=dtype, device=device)
    mlp_params = list(mlp.parameters())

    def step(f: Callable[[Tensor], Tensor], params: list[Any]) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(f(x), [x, *params], gy)

    auto = K.resolve_kernel("auto", grid, device, dtype)
    names = K.available_kernels(device, dtype) if kernels is None else kernels
    cases: dict[str, Callable[[], Any]] = {}
    for name in dict.fromkeys([auto, *names]):
        cases[name] = step(_bind_kernel(coef, grid, name), [coef])
    cases[BASELINE] = step(lambda z: cox_de_boor_layer_forward(z, coef, grid, knots), [coef])
    cases["mlp"] = step(mlp, mlp_params)
    meta = {
        "auto": auto,
        "mlp_hidden": H,
        "params": coef.numel(),
        "mlp_params": sum(p.numel() for p in mlp_params),
    }
    return cases, meta


def run_layer_sweep(args, device: torch.device, log) -> list[dict]:
    rows = []
    if args.quick:
        configs = [(dt, 3, n, (16, 16), 256) for dt in args.dtypes for n in (5, 80)]
    else:
        configs = [
            (dt, k, n, (P, Q), B)
            for dt in args.dtypes
            for k in (1, 3)
            for n in (5, 20, 80)
            for (P, Q) in ((2, 32), (32, 32), (64, 64))
            for B in (1024, 8192)
        ]
    for dt, k, n, (P, Q), B in configs:
        grid = Grid(n, k)
        dtype = getattr(torch, dt)
        cases, meta = layer_cases(P, Q, grid, B, dtype, device, args.sweep_kernels)
        timing = time_cases(cases, device, **args.timing)
        ratios = {c: timing.ratio(c) for c in cases}
        ratios["auto"] = ratios[meta["auto"]]
        row = dict(
            dtype=dt,
            degree=k,
            grid_size=n,
            widths=[P, Q],
            batch=B,
            median_s={c: timing.median(c) for c in cases},
            repeats=len(timing.samples[BASELINE]),
            ratio=ratios,
            **meta,
        )
        rows.append(row)
        log(
            f"layer {dt:7s} k={k} n={n:2d} {P:2d}->{Q:2d} B={B:4d}  "
            f"cdb={timing.median(BASELINE) * 1e3:8.2f} ms  "
            + "  ".join(f"{c}={ratios[c]:.3f}" for c in [*cases, "auto"] if c != BASELINE)
            + f"  (auto={meta['auto']})"
        )
    return rows


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summarize_layers(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases = sorted({c for r in rows for c in r["ratio"]})
    for dt in sorted({r["dtype"] for r in rows}):
        sel = [r for r in rows if r["dtype"] == dt]
        out[dt] = {
            "all": {c: geomean([r["ratio"][c] for r in sel if c in r["ratio"]]) for c in cases},
            "grid80": {
                c: geomean([r["ratio"][c] for r in sel if c in r["ratio"] and r["grid_size"] == 80])
                for c in cases
            },
            "batch8192_64x64_grid80": {
                c: geomean(
                    [
                        r["ratio"][c]
                        for r in sel
                        if c in r["ratio"]
                        and r["grid_size"] == 80
                        and r["batch"] == 8192
                        and r["widths"] == [64, 64]
                    ]
                )
                for c in cases
            },
        }
    return out


# ----------------------------------------------------------------------------- section 2
def _laplacian(g: Tensor, X: Tensor) -> Tensor:
    """u_xx + u_yy from g = grad u (create_graph, so the result is differentiable)."""
    d2 = [torch.autograd.grad(g[:, i].sum(), X, create_graph=True)[0][:, i] for i in (0, 1)]
    return d2[0] + d2[1]


def _pinn_step(model: nn.Module, X: Tensor, f: Tensor) -> Callable[[], Any]:
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        u = model(X)  # (batch, 1)
        (g,) = torch.autograd.grad(u.sum(), X, create_graph=True)  # (batch, 2)
        lap = _laplacian(g, X)
        loss = ((lap - f) ** 2).mean() + (u.squeeze(-1) ** 2).mean()
        return torch.autograd.grad(loss, params)

    return step


def _pinn_tape(model: nn.Module, X: Tensor) -> int:
    with saved_tensor_bytes() as saved:
        u = model(X)
        (g,) = torch.autograd.grad(u.sum(), X, create_graph=True)
        lap = _laplacian(g, X)
        loss = (lap**2).mean() + (u**2).mean()
    del loss
    return saved["bytes"]


def run_pinn(args, device: torch.device, log) -> dict:
    dtype = getattr(torch, args.pinn_dtype)
    widths, n, k = [2, 32, 32, 1], 20, 3
    batch = 256 if args.quick else 8192
    torch.manual_seed(0)
    kan = KAN(widths, grid_size=n, degree=k, squash="tanh").to(dtype=dtype, device=device)
    cdb = CoxDeBoorKAN(widths, n, k).to(dtype=dtype, device=device).load_from(kan)
    mlp = MLP(widths, "tanh").to(dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(1)
    X = (2 * torch.rand(batch, 2, generator=gen, dtype=torch.float64) - 1).to(
        dtype=dtype, device=device
    )
    X.requires_grad_(True)
    f = torch.sin(3 * X[:, 0].detach()) * torch.cos(2 * X[:, 1].detach())

    kan_step = _pinn_step(kan, X, f)

    def with_kernel(name: str) -> Callable[[], Any]:
        def run():
            old = K.get_default_kernel()
            K.set_default_kernel(name)
            try:
                return kan_step()
            finally:
                K.set_default_kernel(old)

        return run

    cases: dict[str, Callable[[], Any]] = {
        name: with_kernel(name) for name in ["auto", *K.available_kernels(device, dtype)]
    }
    cases[BASELINE] = _pinn_step(cdb, X, f)
    cases["mlp"] = _pinn_step(mlp, X, f)
    # same function: our KAN and the reference agree
    u1, u2 = kan(X), cdb(X)
    agree = float(((u1 - u2).abs().max() / u2.abs().max().clamp_min(1e-30)).detach())
    timing = time_cases(cases, device, **args.timing)
    peak = {c: peak_bytes(fn, device) for c, fn in cases.items()}
    tape = {}
    for c in cases:
        if c in (BASELINE, "mlp"):
            tape[c] = _pinn_tape(cdb if c == BASELINE else mlp, X)
        else:
            old = K.get_default_kernel()
            K.set_default_kernel(c)
            try:
                tape[c] = _pinn_tape(kan, X)
            finally:
                K.set_default_kernel(old)
    res = dict(
        widths=widths,
        grid_size=n,
        degree=k,
        batch=batch,
        dtype=args.pinn_dtype,
        auto=K.resolve_kernel("auto", kan.grid, device, dtype),
        max_rel_diff_vs_reference=agree,
        median_s={c: timing.median(c) for c in cases},
        repeats=len(timing.samples[BASELINE]),
        time_ratio_vs_reference={c: timing.ratio(c) for c in cases},
        time_ratio_vs_mlp={c: timing.ratio(c, "mlp") for c in cases},
        peak_bytes=peak,
        peak_ratio_vs_mlp={c: peak[c] / max(1, peak["mlp"]) for c in cases},
        peak_ratio_vs_reference={c: peak[c] / max(1, peak[BASELINE]) for c in cases},
        tape_bytes=tape,
        tape_ratio_vs_mlp={c: tape[c] / max(1, tape["mlp"]) for c in cases},
    )
    for c in cases:
        log(
            f"pinn  {c:12s} {timing.median(c) * 1e3:9.2f} ms  "
            f"vs ref {res['time_ratio_vs_reference'][c]:6.3f}"
            f"  vs mlp {res['time_ratio_vs_mlp'][c]:6.2f}  peak {peak[c] / 2**20:8.2f} MiB"
            f" ({res['peak_ratio_vs_mlp'][c]:5.2f}x mlp)  tape {tape[c] / 2**20:8.2f} MiB"
        )
    return res


# ----------------------------------------------------------------------------- section 3
def run_fig3(args, device: torch.device, log) -> list[dict]:
    dtype = getattr(torch, args.fig3_dtype)
    widths = [2, 64, 64, 64, 1]
    degrees, grids, batch = (
        ((3,), (5, 20), 256) if args.quick else ((1, 2, 3), (5, 10, 20, 40, 80), 4096)
    )
    gen = torch.Generator().manual_seed(2)
    X = (2 * torch.rand(batch, 2, generator=gen, dtype=torch.float64) - 1).to(
        dtype=dtype, device=device
    )
    gy = torch.randn(batch, 1, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    torch.manual_seed(0)
    mlp = MLP(widths, "tanh").to(dtype=dtype, device=device)
    rows = []

    def step(model: nn.Module) -> Callable[[], Any]:
        params = list(model.parameters())
        return lambda: torch.autograd.grad(model(X), params, gy)

    for k in degrees:
        for n in grids:
            torch.manual_seed(0)
            kan = KAN(widths, grid_size=n, degree=k, squash="tanh").to(dtype=dtype, device=device)
            relu = kan.to_multichannel(evaluation="relu")
            cdb = CoxDeBoorKAN(widths, n, k).to(dtype=dtype, device=device).load_from(kan)
            cases = {
                "kan": step(kan),
                "power_relu": step(relu),
                BASELINE: step(cdb),
                "mlp": step(mlp),
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # float32 power-ReLU accuracy warning: timing only
                timing = time_cases(cases, device, **args.timing)
            row: dict[str, Any] = dict(
                degree=k,
                grid_size=n,
                batch=batch,
                auto=K.resolve_kernel("auto", kan.grid, device, dtype),
                median_s={c: timing.median(c) for c in cases},
                ratio={c: timing.ratio(c) for c in cases},
                repeats=len(timing.samples[BASELINE]),
            )
            rows.append(row)
            log(
                f"fig3  k={k} n={n:2d}  cdb={timing.median(BASELINE) * 1e3:8.2f} ms  "
                + "  ".join(f"{c}={row['ratio'][c]:.3f}" for c in cases if c != BASELINE)
            )
    return rows


# ----------------------------------------------------------------------------- section 4
#: task -> family -> baseline whose paper-size model the training-step section times
STEP_MODELS = {
    "burgers_1d": {"kan": "kan_coarse", "mcmlp": "mcmlp_coarse", "mlp": "mlp_medium"},
    "allen_cahn_1d": {"kan": "kan_coarse", "mcmlp": "mcmlp_coarse", "mlp": "mlp_medium"},
    "poisson_interface_2d": {"kan": "kan_coarse", "mcmlp": "mcmlp_coarse", "mlp": "mlp_medium"},
}
STEP_ROUTES = ("jet", "autograd")


def _adam_step(task, model: nn.Module, config, route: str) -> Callable[[], Any]:
    """One optimizer step of ``task``'s loss (loss + backward + step) on the given route."""
    from ..optim import make_optimizer
    from ..tasks.pinn import use_derivative_route

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(config.optimizer, params, config.lr, config.optimizer_options)
    batch = task.train_batch()
    state = task.make_state(batch)

    def step():
        with use_derivative_route(route):
            opt.zero_grad(set_to_none=True)
            terms = task.loss_terms(model, batch, state, update_state=True)
            loss = functools.reduce(torch.add, terms.values())
            loss.backward()
            opt.step()
        return loss

    return step


def _profile_top(fn: Callable[[], Any], rows: int = 8) -> list[dict]:
    """The ops with the most self CPU time over 3 calls of fn (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count // 3}
        for e in events[:rows]
    ]


def counted_flops(fn: Callable[[], Any]) -> dict[str, int]:
    """FLOPs of one call of fn by op, as torch.profiler counts them (``with_flops``: matmuls
    and elementwise ops from their shapes; ops it cannot count - e.g. the C kernels - are
    absent)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return {e.key: int(e.flops) for e in prof.key_averages() if e.flops}


def plain_mlp_pinn_step(task, dtype: torch.dtype) -> Callable[[], Any]:
    """A plain PyTorch tanh MLP [2, 56, 56, 1] Burgers PINN step (nested autograd, Adam):
    the reference the engine's kan_coarse step is measured against (same points, same
    hard boundary and loss as ``burgers_1d``, nothing from this package)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(2, 56), nn.Tanh(), nn.Linear(56, 56), nn.Tanh(), nn.Linear(56, 1)
    ).to(dtype)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xc = task.x_collocation.to(dtype)
    x0 = task.x_initial.to(dtype)
    u0 = -torch.sin(math.pi * x0[:, :1])
    nu = task.nu

    def u_of(x: Tensor) -> Tensor:
        return (1 - x[:, :1] ** 2) * net(x)

    def step():
        opt.zero_grad(set_to_none=True)
        x = xc.clone().requires_grad_(True)
        u = u_of(x)
        (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)
        r = g[:, 1] + u[:, 0] * g[:, 0] - nu * h[:, 0]
        loss = (r**2).mean() + ((u_of(x0) - u0) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    return step


def engine_step_times(task_name: str, baseline: str, steps: int, size: str) -> list[float]:
    """Per-step wall times of ``engine.train`` on the baseline's settings (``steps`` steps
    on the first level, no evaluation in between)."""
    import lightning as L

    from ..baselines import baseline_config
    from ..engine import train

    class StepTimer(L.Callback):
        def __init__(self):
            self.times: list[float] = []
            self.t0 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.t0)

    config = baseline_config(baseline, task_name)
    schedule = [steps] + [0] * (len(config.schedule) - 1)
    config = dataclasses.replace(
        config, schedule=schedule, task_options={**config.task_options, "size": size}
    )
    timer = StepTimer()
    result = train(config, callbacks=[timer])
    if result.status != "ok":
        raise RuntimeError(f"engine run {baseline} on {task_name}: {result.status} {result.error}")
    return list(timer.times)


def run_step(args, device: torch.device, log) -> dict:
    """Training-step section (see the module docstring)."""
    from ..baselines import baseline_config
    from ..engine import build_model
    from ..tasks import TASKS

    dtype = getattr(torch, args.step_dtype)
    size = "tiny" if args.quick else "paper"
    out: dict[str, Any] = {"dtype": args.step_dtype, "size": size, "tasks": {}}
    for task_name, families in STEP_MODELS.items():
        task = TASKS[task_name](size=size)
        cases: dict[str, Callable[[], Any]] = {}
        models: dict[str, dict] = {}
        for family, baseline in families.items():
            config = baseline_config(baseline, task_name)
            torch.manual_seed(0)
            model = build_model(config, task).to(dtype=dtype, device=device)
            models[family] = {"baseline": baseline, "params": count_parameters(model),
                              "supports_jets": jets.supports(model)}  # fmt: skip
            for route in STEP_ROUTES:
                cases[f"{family}-{route}"] = _adam_step(task, model, config, route)
        timing = time_cases(cases, device, **args.timing)
        peak = {c: peak_bytes(fn, device) for c, fn in cases.items()}
        med = {c: timing.median(c) for c in cases}
        row: dict[str, Any] = {
            "points": {
                k: int(v.shape[0]) for k, v in task.train_batch().items() if v.is_floating_point()
            },  # fmt: skip
            "models": models,
            "median_s": med,
            "repeats": len(timing.samples[next(iter(cases))]),
            "peak_bytes": peak,
            "jet_vs_autograd": {f: med[f"{f}-jet"] / med[f"{f}-autograd"] for f in families},
            "peak_jet_vs_autograd": {
                f: peak[f"{f}-jet"] / max(1, peak[f"{f}-autograd"]) for f in families
            },
            "kan_jet_vs_mlp_jet": med["kan-jet"] / med["mlp-jet"],
            "profile_jet": {f: _profile_top(cases[f"{f}-jet"]) for f in families},
            # the tanh MLP's work is all matmuls torch.profiler can count: jets vs nested
            # autograd do (almost) the same number, so time ratios near 1 are expected there
            "mlp_counted_flops": {r: counted_flops(cases[f"mlp-{r}"]) for r in STEP_ROUTES},
        }
        out["tasks"][task_name] = row
        for c in cases:
            log(f"step  {task_name:22s} {c:15s} {med[c] * 1e3:9.2f} ms  peak "
                f"{peak[c] / 2**20:8.2f} MiB")  # fmt: skip
        log(
            f"step  {task_name:22s} jet/autograd "
            + "  ".join(f"{f}={v:.3f}" for f, v in row["jet_vs_autograd"].items())
            + f"  kan jet / mlp jet {row['kan_jet_vs_mlp_jet']:.3f}"
        )
    # the engine's kan_coarse Burgers step against a plain PyTorch MLP PINN step
    task = TASKS["burgers_1d"](size=size)
    plain = plain_mlp_pinn_step(task, dtype)
    before = time_cases({"plain": plain}, device, **args.timing).samples["plain"]
    steps = 12 if args.quick else 60
    engine_times = engine_step_times("burgers_1d", "kan_coarse", steps, size)[5:]
    after = time_cases({"plain": plain}, device, **args.timing).samples["plain"]
    plain_med = statistics.median(before + after)
    engine_med = statistics.median(engine_times)
    out["engine"] = {
        "baseline": "kan_coarse",
        "task": "burgers_1d",
        "steps_timed": len(engine_times),
        "engine_step_s": engine_med,
        "plain_mlp_autograd_step_s": plain_med,
        "ratio": engine_med / plain_med,
    }
    log(
        f"step  engine kan_coarse burgers {engine_med * 1e3:.2f} ms vs plain PyTorch tanh MLP "
        f"[2, 56, 56, 1] nested autograd {plain_med * 1e3:.2f} ms: {engine_med / plain_med:.3f}"
    )
    return out


def render_step(s: dict) -> list[str]:
    lines = [f"## PINN training step: jets vs nested autograd ({s['dtype']}, size {s['size']})\n"]
    lines.append(
        "One optimizer step of the task's loss (loss terms + backward + Adam/AdamW step, the "
        "baselines' models at the paper's sizes: kan_coarse, mcmlp_coarse, mlp_medium), with "
        "input derivatives by forward jets (`jet`, the default) or by nested "
        "`torch.autograd.grad` (`autograd`). Medians of interleaved repeats after warm-up, one "
        "process. Peak: the CPU allocator's peak over one step from its start "
        "(torch.profiler, profile_memory) or CUDA max_memory_allocated.\n"
    )
    lines.append("| task | family | params | jet ms | autograd ms | jet / autograd "
                 "| jet peak MiB | autograd peak MiB | peak jet / autograd |")  # fmt: skip
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for task, row in s["tasks"].items():
        for f, info in row["models"].items():
            mj, ma = row["median_s"][f"{f}-jet"], row["median_s"][f"{f}-autograd"]
            pj, pa = row["peak_bytes"][f"{f}-jet"], row["peak_bytes"][f"{f}-autograd"]
            lines.append(
                f"| {task} | {f} ({info['baseline']}) | {info['params']} | {mj * 1e3:.2f} "
                f"| {ma * 1e3:.2f} | {_fmt(mj / ma)} | {pj / 2**20:.2f} | {pa / 2**20:.2f} "
                f"| {_fmt(pj / max(1, pa))} |"
            )
    lines.append("")
    lines.append("KAN jet step / tanh MLP jet step: " + ", ".join(
        f"{t} {_fmt(r['kan_jet_vs_mlp_jet'])}" for t, r in s["tasks"].items()) + "\n")  # fmt: skip
    flops = {t: r["mlp_counted_flops"] for t, r in s["tasks"].items() if "mlp_counted_flops" in r}
    if flops:
        parts = []
        for t, by_route in flops.items():
            jet, ag = (sum(by_route[r].values()) for r in ("jet", "autograd"))
            parts.append(f"{t} {jet / 1e6:.0f} M / {ag / 1e6:.0f} M = {_fmt(jet / max(1, ag))}")
        lines.append(
            "tanh MLP step, FLOPs counted by torch.profiler (with_flops: its matmuls and "
            "elementwise ops), jets / nested autograd: " + ", ".join(parts) + ". Both routes do "
            "about the same matmul work (value and the derivative rows through every 56-wide "
            "layer, forward and backward), so the MLP's jets cannot be much faster than its "
            "nested autograd on a machine where both run the same matmuls.\n"
        )
    e = s.get("engine")
    if e:
        lines.append(
            f"Engine: `train()` of kan_coarse on burgers_1d, median step "
            f"{e['engine_step_s'] * 1e3:.2f} ms over {e['steps_timed']} steps, vs a plain "
            f"PyTorch tanh MLP [2, 56, 56, 1] nested-autograd PINN step "
            f"{e['plain_mlp_autograd_step_s'] * 1e3:.2f} ms in the same process: "
            f"ratio {_fmt(e['ratio'])}.\n"
        )
    lines.append("Where the jet step's time goes (torch.profiler, self CPU time, top ops):\n")
    for task, row in s["tasks"].items():
        for f, top in row["profile_jet"].items():
            ops = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in top[:6])
            lines.append(f"- {task} {f}: {ops}")
    lines.append("")
    return lines


# ----------------------------------------------------------------------------- environment
def _allocator() -> dict[str, Any]:
    libs = []
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
        libs = sorted({lib for lib in ("tcmalloc", "jemalloc", "mimalloc") if lib in maps})
    except OSError:
        pass
    return {
        "malloc": libs[0] if libs else "glibc" if platform.libc_ver()[0] == "glibc" else "system",
        "libc": "-".join(platform.libc_ver()),
        "LD_PRELOAD": os.environ.get("LD_PRELOAD", ""),
        "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }


def environment(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    clib = K.kernels_c.load()
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "allocator": _allocator(),
        "c_kernel": str(clib.path) if clib is not None else None,
        "git_commit": commit,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "kernel_default": K.get_default_kernel(),
    }
    return env


# ----------------------------------------------------------------------------- report
def _fmt(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


#: result keys written by each section
SECTION_KEYS = {
    "layer": ("layer", "layer_summary"),
    "pinn": ("pinn",),
    "fig3": ("fig3",),
    "step": ("step",),
}


def carried_sections(path: Path, sections: list[str]) -> dict[str, Any]:
    """The results of the sections this run skips, from an earlier run's JSON at ``path``
    (so a partial run updates its own sections and keeps the others), with that run's
    environment under ``carried_over``; {} when there is none."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keep = [s for s in SECTION_KEYS if s not in sections and SECTION_KEYS[s][0] in previous]
    if not keep:
        return {}
    out: dict[str, Any] = {k: previous[k] for s in keep for k in SECTION_KEYS[s] if k in previous}
    earlier = previous.get("carried_over", {})
    out["carried_over"] = {
        s: earlier.get(s, previous.get("environment", {})) for s in keep
    }  # fmt: skip
    return out


def render_markdown(result: dict) -> str:
    env, lines = result["environment"], []
    lines.append(f"# KAN evaluation performance ({env['device']})\n")
    lines.append(
        "Generated by `make perf` (`python -m bench_mlkan perf`); do not edit. Ratios are "
        "medians of interleaved repeats divided by the Cox-de Boor reference's median in the "
        "same configuration (lower is faster; < 1 beats the reference).\n"
    )
    for sec, e in result.get("carried_over", {}).items():
        lines.append(
            f"Section {sec!r} is carried over from an earlier run (commit "
            f"{e.get('git_commit', '?')}, torch threads {e.get('torch_threads', '?')}, load "
            f"average at start {e.get('load_average', '?')}).\n"
        )
    lines.append(
        f"Machine: {env['device_name']}, {env['cpu_count']} CPUs, torch threads "
        f"{env['torch_threads']}, torch {env['torch']}, Python {env['python']}, allocator "
        f"{env['allocator']['malloc']} ({env['allocator']['libc']}, "
        f"{env['allocator']['env'] or 'no MALLOC_* settings'}), load average at start "
        f"{env['load_average']}, commit {env['git_commit']}.\n"
    )
    if "layer_summary" in result:
        lines.append("## KAN layer: forward + backward with input gradient\n")
        lines.append("Geometric mean of time / Cox-de Boor over the sweep:\n")
        summ = result["layer_summary"]
        cases = sorted({c for s in summ.values() for c in s["all"]})
        lines.append("| dtype | subset | " + " | ".join(cases) + " |")
        lines.append("|---|---|" + "---|" * len(cases))
        for dt, s in summ.items():
            for subset in ("all", "grid80", "batch8192_64x64_grid80"):
                vals = [_fmt(s[subset].get(c, float("nan"))) for c in cases]
                lines.append(f"| {dt} | {subset} | " + " | ".join(vals) + " |")
        lines.append("\nPer configuration (auto = the kernel the models use):\n")
        kern = [c for c in cases if c not in ("auto", BASELINE)]
        lines.append(
            "| dtype | k | n | P->Q | batch | reference ms | auto (kernel) | "
            + " | ".join(kern)
            + " |"
        )
        lines.append("|---|---|---|---|---|---|---|" + "---|" * len(kern))
        for r in result["layer"]:
            lines.append(
                f"| {r['dtype']} | {r['degree']} | {r['grid_size']} "
                f"| {r['widths'][0]}->{r['widths'][1]} | {r['batch']} "
                f"| {r['median_s'][BASELINE] * 1e3:.2f} "
                f"| {_fmt(r['ratio']['auto'])} ({r['auto']}) | "
                + " | ".join(_fmt(r["ratio"].get(c, float("nan"))) for c in kern)
                + " |"
            )
        lines.append("")
    if "pinn" in result:
        p = result["pinn"]
        lines.append(
            f"## PINN step: [2, 32, 32, 1] cubic KAN, grid {p['grid_size']}, "
            f"{p['batch']} points, {p['dtype']}\n"
        )
        lines.append(
            "u, grad u and u_xx + u_yy by autograd (create_graph), squared residual, gradient "
            "of the loss w.r.t. the parameters. Peak: CPU allocator peak over one step "
            "(torch.profiler) or CUDA max_memory_allocated; tape: bytes saved for backward. "
            f"Our KAN and the reference agree to {p['max_rel_diff_vs_reference']:.1e} (relative).\n"
        )
        lines.append(
            "| path | ms | time / reference | time / tanh MLP | peak MiB | peak / MLP "
            "| tape MiB | tape / MLP |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for c in p["median_s"]:
            name = f"auto ({p['auto']})" if c == "auto" else c
            lines.append(
                f"| {name} | {p['median_s'][c] * 1e3:.2f} "
                f"| {_fmt(p['time_ratio_vs_reference'][c])} "
                f"| {_fmt(p['time_ratio_vs_mlp'][c])} | {p['peak_bytes'][c] / 2**20:.2f} "
                f"| {_fmt(p['peak_ratio_vs_mlp'][c])} | {p['tape_bytes'][c] / 2**20:.2f} "
                f"| {_fmt(p['tape_ratio_vs_mlp'][c])} |"
            )
        lines.append("")
    if "fig3" in result:
        lines.append("## Paper Fig. 3 network: 2 -> 64 -> 64 -> 64 -> 1, forward + backward\n")
        rows = result["fig3"]
        cases = [c for c in rows[0]["ratio"] if c != BASELINE]
        lines.append(
            "| k | n | batch | reference ms | "
            + " | ".join(f"{c} / reference" for c in cases)
            + " |"
        )
        lines.append("|---|---|---|---|" + "---|" * len(cases))
        for r in rows:
            lines.append(
                f"| {r['degree']} | {r['grid_size']} | {r['batch']} "
                f"| {r['median_s'][BASELINE] * 1e3:.2f} | "
                + " | ".join(_fmt(r["ratio"][c]) for c in cases)
                + " |"
            )
        lines.append("")
    if "step" in result:
        lines.extend(render_step(result["step"]))
    if "targets" in result:
        lines.append("## Targets\n")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for t in result["targets"]:
            lines.append(f"| {t['target']} | {t['measured']:.3f} | {'yes' if t['met'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def targets(result: dict) -> list[dict]:
    out = []

    def add(name: str, value: float, limit: float) -> None:
        if value == value:  # not NaN
            out.append({"target": name, "measured": value, "limit": limit, "met": value <= limit})

    for dt, s in result.get("layer_summary", {}).items():
        add(f"layer auto / reference, geomean, {dt} <= 0.5", s["all"]["auto"], 0.5)
        add(f"layer auto / reference, grid 80, {dt} <= 0.35", s["grid80"]["auto"], 0.35)
        if "c" in s["batch8192_64x64_grid80"]:
            add(
                f"stretch: compiled (c) / reference, 8192, 64->64, grid 80, {dt} <= 0.1",
                s["batch8192_64x64_grid80"]["c"],
                0.1,
            )
    if "pinn" in result:
        p = result["pinn"]
        add("PINN step auto / reference <= 0.25", p["time_ratio_vs_reference"]["auto"], 0.25)
        add("PINN peak memory auto / tanh MLP <= 2", p["peak_ratio_vs_mlp"]["auto"], 2.0)
    s = result.get("step")
    if s:
        for task in ("burgers_1d", "allen_cahn_1d"):
            row = s["tasks"].get(task)
            if row:
                add(f"{task}: KAN step jets / nested autograd <= 0.125",
                    row["jet_vs_autograd"]["kan"], 0.125)  # fmt: skip
                add(f"{task}: tanh MLP step jets / nested autograd <= 0.25",
                    row["jet_vs_autograd"]["mlp"], 0.25)  # fmt: skip
        for task, row in s["tasks"].items():
            add(f"{task}: KAN jets step / tanh MLP jets step <= 1.5",
                row["kan_jet_vs_mlp_jet"], 1.5)  # fmt: skip
            for f, r in row["peak_jet_vs_autograd"].items():
                add(f"{task}: {f} peak memory jets / nested autograd <= 1", r, 1.0)
        if s.get("engine"):
            add("burgers_1d: engine kan_coarse step / plain PyTorch tanh MLP autograd step <= 0.5",
                s["engine"]["ratio"], 0.5)  # fmt: skip
    return out


def plot(result: dict, path: Path) -> None:
    """The figure of ``result``: ``path`` (PNG, 200 dpi) and an SVG beside it, grouped by
    grid size on log ratio axes (``bench_mlkan.reporting.perf_figure``)."""
    from ..reporting.perf_figure import draw_perf

    draw_perf(result, path)


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench_mlkan perf",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  make perf                                         # every section, 2 threads\n"
        "  python -m bench_mlkan perf --quick                # a small subset, < 1 min\n"
        "  python -m bench_mlkan perf --sections step --step-dtype float64 --threads 1",
    )
    p.add_argument("--quick", action="store_true", help="a small subset (well under a minute)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda: skipped if unavailable)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument("--repeats", type=int, default=11, help="max interleaved rounds per config")
    p.add_argument(
        "--min-repeats", type=int, default=5, help="rounds per config even past --budget"
    )
    p.add_argument(
        "--kernels",
        default="default",
        help="kernels in the layer sweep: 'default' (auto's kernel + autograd), 'all', or names",
    )
    p.add_argument("--budget", type=float, default=2.0, help="seconds of rounds per config")
    p.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help="comma-separated subset of " + ",".join(DEFAULT_SECTIONS) + " (default: all); "
        "a partial run keeps the other sections of the existing JSON, marked carried over",
    )
    p.add_argument("--dtypes", default="float32,float64", help="dtypes of the layer section")
    p.add_argument("--pinn-dtype", default="float32", help="dtype of the PINN-layer section")
    p.add_argument("--fig3-dtype", default="float32", help="dtype of the paper's Fig. 3 network")
    p.add_argument(
        "--step-dtype", default="float64", help="dtype of the PINN training-step section"
    )
    p.add_argument("--out", default="leaderboards/perf", help="output folder")
    return p


def perf_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if args.kernels == "all":
        args.sweep_kernels = None
    elif args.kernels == "default":
        args.sweep_kernels = ["autograd"]
    else:
        args.sweep_kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.quick:
        args.repeats, args.min_repeats, args.budget = (
            min(args.repeats, 5),
            min(args.min_repeats, 3),
            0.3,
        )
    args.timing = dict(min_repeats=args.min_repeats, max_repeats=args.repeats, budget_s=args.budget)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("perf: --device cuda requested but no CUDA device is available; nothing to do")
        return 0
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"perf-{device.type}" + ("-quick" if args.quick else "")

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.perf_counter()
    result: dict[str, Any] = {"environment": environment(device), "quick": args.quick, "argv": argv}
    result.update(carried_sections(out / f"{stem}.json", sections))
    env = result["environment"]
    log(
        f"perf on {env['device_name']} ({env['device']}), threads {env['torch_threads']}, torch "
        f"{env['torch']}, malloc {env['allocator']['malloc']} {env['allocator']['env']}, "
        f"C kernel {'built' if env['c_kernel'] else 'unavailable'}"
    )

    def write() -> None:  # after every section, so an interrupted run leaves its results
        result["targets"] = targets(result)
        result["wall_s"] = time.perf_counter() - t0
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
        (out / f"{stem}.md").write_text(render_markdown(result))

    if "layer" in sections:
        result["layer"] = run_layer_sweep(args, device, log)
        result["layer_summary"] = summarize_layers(result["layer"])
        write()
    if "pinn" in sections:
        result["pinn"] = run_pinn(args, device, log)
        write()
    if "fig3" in sections:
        result["fig3"] = run_fig3(args, device, log)
        write()
    if "step" in sections:
        result["step"] = run_step(args, device, log)
    write()
    plot(result, out / f"{stem}.png")
    log("")
    for dt, summ in result.get("layer_summary", {}).items():
        for subset, vals in summ.items():
            log(
                f"layer geomean {dt} {subset}: "
                + "  ".join(f"{c}={v:.3f}" for c, v in vals.items())
            )
    for t in result["targets"]:
        log(
            f"target: {t['target']}: measured {t['measured']:.3f} -> "
            + ("met" if t["met"] else "NOT met")
        )
    log(f"wrote {out / stem}.json/.md/.png in {result['wall_s']:.0f} s")
    return 0


main = perf_main
