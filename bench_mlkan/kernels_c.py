"""A small C kernel for the local (k+1)-support spline contraction, loaded with ctypes.

Three loops, each O(batch * P * (k+1) * Q), for float32 and float64 (row-major, contiguous).
With u[b, p] = (x - a) / h in [0, n], cell = floor(u) (clamped to 0 .. n-1), s = u - cell,
row(b, p) = p (n + k) + cell and w_r = d^d/du^d B_{cell+r}(u) (Horner on tables from
``kernels.DerivativeSpec``, computed on the fly, never stored):

    contract: y[b, q]  = sum_{p, r} c[b, p] w_r(u[b, p]) T[row(b, p) + r, q]
    sample:   G[b, p]  = sum_r w_r(u[b, p]) sum_q g[b, q] T[row(b, p) + r, q]
    scatter:  S[i, q] += c[b, p] w_r(u[b, p]) g[b, q]   at i = row(b, p) + r

(T is the coefficient table (P (n + k), Q); c may be NULL, meaning 1.) The autograd wrapper
in ``kernels.py`` differentiates each of them with the three maps of derivative order d or
d + 1, so every derivative order stays on this path and only (batch, P) and (batch, Q)
tensors are ever saved for backward.

Build: plain C, no torch headers, one ``cc -O3 -march=native -fopenmp -shared`` call (about
a second), cached under ``$BENCH_MLKAN_CACHE`` (default ``~/.cache/bench_mlkan``) by a hash
of the source, flags and compiler; written atomically, so parallel workers may race
safely. OpenMP: the library links ``libgomp.so.1``, the same soname the torch wheel ships
and has already loaded, so it shares torch's OpenMP runtime (no second spinning pool); the
thread count is ``torch.get_num_threads()`` at each call. ctypes releases the GIL.

Fallback: without a C compiler, or with ``BENCH_MLKAN_NO_C=1``, ``load()`` returns None and
the kernel registry falls back to the pure-PyTorch paths.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

_C_TEMPLATE = r"""
/* ---- scalar_t = @T@ ---- */
static inline void local_row_@SUF@(const @T@* c, const @T@* u, int64_t b, int64_t P, int64_t n,
                                   int64_t K1, int64_t Q, const @T@* tab, const @T@* poly,
                                   const @T@* sign, const @T@* shift, @T@* wall,
                                   const @T@** rows) {
  /* weights of every input p of batch row b first: independent Horner chains */
  const int64_t nb = n + K1 - 1;
  for (int64_t p = 0; p < P; ++p) {
    const @T@ uu = u[b * P + p];
    int64_t cell = (int64_t)floor(uu);
    if (cell < 0) cell = 0;
    if (cell > n - 1) cell = n - 1;
    const @T@ s = uu - (@T@)cell;
    const @T@ cw = c ? c[b * P + p] : (@T@)1;
    for (int64_t r = 0; r < K1; ++r) {
      const @T@ z = shift[r] + sign[r] * s;
      @T@ acc = poly[(K1 - 1) * K1 + r];
      for (int64_t m = K1 - 2; m >= 0; --m) acc = acc * z + poly[m * K1 + r];
      wall[p * K1 + r] = cw * acc;
    }
    rows[p] = tab + (p * nb + cell) * Q;
  }
}

void mlkan_contract_@SUF@(const @T@* c, const @T@* u, const @T@* tab, @T@* out, int64_t B,
                          int64_t P, int64_t n, int64_t K1, int64_t Q, const @T@* poly,
                          const @T@* sign, const @T@* shift, int nthreads) {
#pragma omp parallel num_threads(nthreads)
  {
    @T@* wall = (@T@*)malloc(sizeof(@T@) * P * K1);
    const @T@** rows = (const @T@**)malloc(sizeof(@T@*) * P);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      @T@* o = out + b * Q;
      local_row_@SUF@(c, u, b, P, n, K1, Q, tab, poly, sign, shift, wall, rows);
      int64_t q0 = 0;
      for (; q0 + QB <= Q; q0 += QB) { /* QB outputs in registers across all p, r */
        @T@ acc[QB];
        for (int j = 0; j < QB; ++j) acc[j] = 0;
        for (int64_t p = 0; p < P; ++p) {
          const @T@* wp = wall + p * K1;
          const @T@* row = rows[p] + q0;
          for (int64_t r = 0; r < K1; ++r) {
            const @T@ wr = wp[r];
            const @T@* rr = row + r * Q;
#pragma omp simd
            for (int j = 0; j < QB; ++j) acc[j] += wr * rr[j];
          }
        }
        for (int j = 0; j < QB; ++j) o[q0 + j] = acc[j];
      }
      for (int64_t q = q0; q < Q; ++q) {
        @T@ acc = 0;
        for (int64_t p = 0; p < P; ++p)
          for (int64_t r = 0; r < K1; ++r) acc += wall[p * K1 + r] * rows[p][r * Q + q];
        o[q] = acc;
      }
    }
    free(wall);
    free((void*)rows);
  }
}

void mlkan_sample_@SUF@(const @T@* g, const @T@* u, const @T@* tab, @T@* out, int64_t B,
                        int64_t P, int64_t n, int64_t K1, int64_t Q, const @T@* poly,
                        const @T@* sign, const @T@* shift, int nthreads) {
#pragma omp parallel num_threads(nthreads)
  {
    @T@* wall = (@T@*)malloc(sizeof(@T@) * P * K1);
    const @T@** rows = (const @T@**)malloc(sizeof(@T@*) * P);
    @T@* comb = (@T@*)malloc(sizeof(@T@) * Q);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      const @T@* gb = g + b * Q;
      local_row_@SUF@(0, u, b, P, n, K1, Q, tab, poly, sign, shift, wall, rows);
      for (int64_t p = 0; p < P; ++p) {
        out[b * P + p] = sample_dot_@SUF@(gb, wall + p * K1, rows[p], comb, K1, Q);
      }
    }
    free(comb);
    free(wall);
    free((void*)rows);
  }
}

/* out (P nb, Q) must be zeroed by the caller; rows of different p never overlap. */
void mlkan_scatter_@SUF@(const @T@* c, const @T@* u, const @T@* g, @T@* out, int64_t B,
                         int64_t P, int64_t n, int64_t K1, int64_t Q, const @T@* poly,
                         const @T@* sign, const @T@* shift, int nthreads) {
  const int64_t nb = n + K1 - 1;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t b = 0; b < B; ++b) {
      const @T@ uu = u[b * P + p];
      int64_t cell = (int64_t)floor(uu);
      if (cell < 0) cell = 0;
      if (cell > n - 1) cell = n - 1;
      const @T@ s = uu - (@T@)cell;
      const @T@ cw = c ? c[b * P + p] : (@T@)1;
      @T@* row = out + (p * nb + cell) * Q;
      const @T@* gb = g + b * Q;
      for (int64_t r = 0; r < K1; ++r) {
        const @T@ z = shift[r] + sign[r] * s;
        @T@ w = poly[(K1 - 1) * K1 + r];
        for (int64_t m = K1 - 2; m >= 0; --m) w = w * z + poly[m * K1 + r];
        const @T@ wr = cw * w;
        @T@* rr = row + r * Q;
#pragma omp simd
        for (int64_t q = 0; q < Q; ++q) rr[q] += wr * gb[q];
      }
    }
  }
}
"""

_C_DOT = r"""
/* g . sum_r w_r T[row + r]: rows combined into comb (Q, in L1), then one dot product */
static inline @T@ sample_dot_@SUF@(const @T@* restrict gb, const @T@* restrict wp,
                                  const @T@* restrict row, @T@* restrict comb, int64_t K1,
                                  int64_t Q) {
  const @T@ w0 = wp[0];
#pragma omp simd
  for (int64_t q = 0; q < Q; ++q) comb[q] = w0 * row[q];
  for (int64_t r = 1; r < K1; ++r) {
    const @T@ wr = wp[r];
    const @T@* restrict rr = row + r * Q;
#pragma omp simd
    for (int64_t q = 0; q < Q; ++q) comb[q] += wr * rr[q];
  }
  @T@ total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t q = 0; q < Q; ++q) total += gb[q] * comb[q];
  return total;
}
"""

C_SOURCE = (
    "#include <math.h>\n#include <stdint.h>\n#include <stdlib.h>\n#define QB 32\n"
    + "".join(
        (_C_DOT + _C_TEMPLATE).replace("@T@", t).replace("@SUF@", suf)
        for t, suf in (("float", "f32"), ("double", "f64"))
    )
    + "int mlkan_version(void) { return 7; }\n"
)

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
_ARGTYPES = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 5 + [ctypes.c_void_p] * 3 + [ctypes.c_int]


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_MLKAN_CACHE", Path.home() / ".cache" / "bench_mlkan"))


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + hashlib.sha1(flags.encode()).hexdigest()[:8]


def library_path(cc: str) -> Path:
    key = hashlib.sha1("\0".join([C_SOURCE, *FLAGS, cc, _cpu_tag()]).encode()).hexdigest()
    return cache_dir() / f"mlkan_kernels_{key[:16]}.so"


def build(verbose: bool = False) -> Path | None:
    """Compile the library into the cache (no-op when cached). None when it cannot build."""
    cc = _compiler()
    if cc is None:
        return None
    path = library_path(cc)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src = Path(tmp) / "mlkan_kernels.c"
        src.write_text(C_SOURCE)
        out = Path(tmp) / path.name
        proc = subprocess.run(
            [cc, *FLAGS, str(src), "-o", str(out)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            if verbose:
                print(proc.stderr)
            return None
        os.replace(out, path)
    return path


class CKernels:
    """The loaded library: ``contract``, ``sample``, ``scatter`` on contiguous CPU tensors."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.lib, self.path = lib, path
        self._fns = {}
        for op in ("contract", "sample", "scatter"):
            for dtype, suf in ((torch.float32, "f32"), (torch.float64, "f64")):
                fn = getattr(lib, f"mlkan_{op}_{suf}")
                fn.argtypes, fn.restype = _ARGTYPES, None
                self._fns[op, dtype] = fn

    @staticmethod
    def _threads() -> int:
        return max(1, torch.get_num_threads())

    def _call(self, op: str, a, u: Tensor, t: Tensor, out: Tensor, Q: int, spec) -> Tensor:
        B, P = u.shape
        poly, sign, shift = spec.tables
        fn = self._fns[op, out.dtype]
        fn(a.data_ptr() if a is not None else None, u.data_ptr(), t.data_ptr(), out.data_ptr(),
           B, P, spec.grid_size, spec.degree + 1, Q, poly.data_ptr(), sign.data_ptr(),
           shift.data_ptr(), self._threads())  # fmt: skip
        return out

    def contract(self, c: Tensor | None, u: Tensor, tab: Tensor, spec) -> Tensor:
        """y[b, q] = sum_{p, r} c[b, p] w_r(u[b, p]) T[row(b, p) + r, q]  (c None: 1)."""
        out = torch.empty(u.shape[0], tab.shape[1], dtype=tab.dtype)
        return self._call("contract", c, u, tab, out, tab.shape[1], spec)

    def sample(self, g: Tensor, u: Tensor, tab: Tensor, spec) -> Tensor:
        """G[b, p] = sum_r w_r(u[b, p]) g[b] . T[row(b, p) + r]."""
        out = torch.empty(u.shape, dtype=tab.dtype)
        return self._call("sample", g, u, tab, out, tab.shape[1], spec)

    def scatter(self, c: Tensor | None, u: Tensor, g: Tensor, spec, rows: int) -> Tensor:
        """S[row(b, p) + r] += c[b, p] w_r(u[b, p]) g[b]."""
        out = torch.zeros(rows, g.shape[1], dtype=g.dtype)
        return self._call("scatter", c, u, g, out, g.shape[1], spec)


_LOADED: CKernels | None = None
_TRIED = False


def load(verbose: bool = False) -> CKernels | None:
    """Build (if needed) and load the C kernels once per process; None if unavailable."""
    global _LOADED, _TRIED
    if _TRIED:
        return _LOADED
    _TRIED = True
    if os.environ.get("BENCH_MLKAN_NO_C", "") not in ("", "0"):
        return None
    try:
        path = build(verbose)
        if path is not None:
            lib = ctypes.CDLL(str(path))
            if lib.mlkan_version() == 7:
                _LOADED = CKernels(lib, path)
    except (OSError, AttributeError, subprocess.SubprocessError) as err:  # pragma: no cover
        if verbose:
            print(f"C kernels unavailable: {err}")
        _LOADED = None
    return _LOADED
