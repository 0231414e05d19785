"""Per-call cost of the spline kernels on small problems, and the C / PyTorch crossover.

    python -m bench_mlkan.devtools.kernel_overhead [--threads 1] [--out FILE.json]

For each kernel and problem size (batch B, widths P = Q = 2, cubic, grid 5: the small PINN
of the user report) it times, after warm-up, the minimum over repeats of

- ``map``: one ``contract`` / ``sample`` / ``scatter`` call on contiguous tensors (what a
  kernel costs: checks + allocation + the arithmetic; for ``c`` also the ctypes call),
- ``entry``: ``kernels._contract`` with operands requiring grad (adds the autograd Function),

and reports, per size, the fastest kernel. ``crossover_batch`` is the smallest batch at
which a pure-PyTorch kernel beats ``c`` (None: ``c`` is fastest at every size measured).
Results go to stdout and, with ``--out``, to a JSON file. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable, Sequence

import torch

from .. import kernels as K
from ..splines import Grid

BATCHES = (1, 16, 128, 1024, 2600, 8192)


def _time(fn: Callable[[], object], budget_s: float = 0.05, repeat: int = 7) -> float:
    """Minimum seconds per call over ``repeat`` runs of about ``budget_s`` each."""
    fn()
    number = max(1, int(budget_s / max(timeit.timeit(fn, number=3) / 3, 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def _time_kernel(kern: K.Kernel, u, tab, g, spec) -> dict[str, float]:
    ug, tabg = u.clone().requires_grad_(True), tab.clone().requires_grad_(True)
    return {
        "contract": _time(lambda: kern.contract(None, u, tab, spec)),
        "sample": _time(lambda: kern.sample(g, u, tab, spec)),
        "scatter": _time(lambda: kern.scatter(None, u, g, spec, tab.shape[0])),
        "entry": _time(lambda: K._contract(None, ug, tabg, spec, kern)),
    }


def measure(
    batches: Sequence[int] = BATCHES,
    width: int = 2,
    grid: Grid | None = None,
    dtype: torch.dtype = torch.float64,
    kernels: Sequence[str] | None = None,
) -> list[dict]:
    """One row per (kernel, batch): microseconds per call of each map and of the entry."""
    grid = grid or Grid(5, 3)
    cpu = torch.device("cpu")
    names = [k for k in (kernels or K.available_kernels(cpu, dtype)) if k != "autograd"]
    spec = K.local_spec(grid.grid_size, grid.degree, 0, dtype, cpu)
    rows_out = []
    gen = torch.Generator().manual_seed(0)
    for B in batches:
        u = torch.rand(B, width, generator=gen, dtype=dtype) * grid.grid_size
        tab = torch.randn(width * grid.num_basis, width, generator=gen, dtype=dtype)
        g = torch.randn(B, width, generator=gen, dtype=dtype)
        for name in names:
            times = _time_kernel(K.KERNELS[name], u, tab, g, spec)
            rows_out.append(
                {"kernel": name, "batch": B, "width": width}
                | {f"{k}_us": round(v * 1e6, 2) for k, v in times.items()}
            )
    return rows_out


def crossover(rows: list[dict]) -> int | None:
    """Smallest batch where a pure-PyTorch kernel's mean map time beats ``c``."""
    by_batch: dict[int, dict[str, float]] = {}
    for r in rows:
        mean = (r["contract_us"] + r["sample_us"] + r["scatter_us"]) / 3
        by_batch.setdefault(r["batch"], {})[r["kernel"]] = mean
    for B in sorted(by_batch):
        times = by_batch[B]
        if "c" in times and min(v for k, v in times.items() if k != "c") < times["c"]:
            return B
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure([int(b) for b in args.batches.split(",")])
    print(f"{'kernel':8s} {'batch':>6s} {'contract':>9s} {'sample':>9s} {'scatter':>9s} "
          f"{'entry':>9s}  (us per call, min of repeats, {args.threads} thread(s))")  # fmt: skip
    for r in rows:
        print(f"{r['kernel']:8s} {r['batch']:6d} {r['contract_us']:9.1f} {r['sample_us']:9.1f} "
              f"{r['scatter_us']:9.1f} {r['entry_us']:9.1f}")  # fmt: skip
    cross = crossover(rows)
    print(f"crossover batch (a PyTorch kernel faster than c): {cross}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "rows": rows, "crossover_batch": cross}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
