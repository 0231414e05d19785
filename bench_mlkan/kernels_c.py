"""A small C kernel for the local (k+1)-support spline contraction, loaded with ctypes.

Three loops, each O(batch * P * (k+1) * Q), for float32 and float64 (row-major, contiguous).
With u[b, p] = (x - a) / h in [0, n], cell = floor(u) (clamped to 0 .. n-1; NaN -> 0),
s = u - cell, row(b, p) = p (n + k) + cell and w_r = d^d/du^d B_{cell+r}(u) (Horner on
tables from ``kernels.derivative_tables``, computed on the fly, never stored):

    contract: y[b, q]  = sum_{p, r} c[b, p] w_r(u[b, p]) T[row(b, p) + r, q]
    sample:   G[b, p]  = sum_r w_r(u[b, p]) sum_q g[b, q] T[row(b, p) + r, q]
    scatter:  S[i, q] += c[b, p] w_r(u[b, p]) g[b, q]   at i = row(b, p) + r

(T is the coefficient table (P (n + k), Q); c may be NULL, meaning 1.) The autograd wrapper
in ``kernels.py`` differentiates each of them with the three maps of derivative order d or
d + 1, so every derivative order stays on this path and only (batch, P) and (batch, Q)
tensors are ever saved for backward. Each exported map switches on K1 = k + 1 inside its
parallel region, so degrees 0..5 run with a compile-time K1 (unrolled Horner loops: about
2x faster per element than a runtime K1); calls below ``PAR_WORK`` multiply-adds stay on
one thread.

Safety: the C code trusts its arguments, so ``CKernels`` checks every operand's shape, dtype,
device and contiguity against the coefficient table first (``kernel_checks``; metadata
only) and raises ``ValueError``; nothing reaches C that could index past a buffer.

Build: plain C, no torch headers, one ``cc -O3 -march=native -fopenmp -shared`` call (about
two seconds), cached under ``$BENCH_MLKAN_CACHE`` (default ``~/.cache/bench_mlkan``) as
``mlkan_kernels_<key>.so``, key = sha256 of the source, flags, compiler and CPU flags. Beside
it ``.so.sha256`` holds the library's own sha256 and the full key; the library is verified
before every ``ctypes.CDLL`` and rebuilt (one ``CacheWarning``) when it is missing,
truncated or modified. Builds run under a file lock, to a unique temporary name, fsynced,
then renamed atomically (``cache_files``), so concurrent workers never see a partial file.
OpenMP: the library links ``libgomp.so.1``, the same soname the torch wheel ships and has
already loaded, so it shares torch's OpenMP runtime; the thread count is
``torch.get_num_threads()`` at each call. ctypes releases the GIL.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor

from . import cache_files
from .kernel_checks import check_map_operands, is_c_compatible

#: bumped with every change of the C interface (checked after loading)
VERSION = 8
#: K1 = degree + 1 <= KMAX (the C source's limit)
KMAX = 16

C_HEADER = r"""#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#define INLINE static inline __attribute__((always_inline))
#define QB 32          /* contract: outputs kept in registers per block */
#define KMAX 16        /* K1 = degree + 1 <= KMAX (the wrapper checks) */
#define STACK_W 512    /* per-thread scratch on the stack up to this many values */
#define STACK_P 128
#define PAR_WORK 32768 /* multiply-adds below which a call runs on one thread */
"""

_C_TEMPLATE = r"""
/* ============================ scalar_t = @T@ ============================ */
/* cell = floor(u) clamped to 0 .. n-1 in floating point (NaN -> 0: no undefined cast) */
INLINE int64_t cell_@SUF@(@T@ uu, int64_t n, @T@* s) {
  @T@ f = floor(uu);
  if (!(f >= (@T@)0)) f = (@T@)0;
  if (f > (@T@)(n - 1)) f = (@T@)(n - 1);
  *s = uu - f;
  return (int64_t)f;
}

/* w[r] = cw * sum_m poly[m K1 + r] z_r^m with z_r = shift[r] + sign[r] s (Horner) */
INLINE void weights_@SUF@(@T@ s, @T@ cw, const @T@* poly, const @T@* sign,
                          const @T@* shift, const int64_t K1, @T@* w) {
  for (int64_t r = 0; r < K1; ++r) {
    const @T@ z = shift[r] + sign[r] * s;
    @T@ acc = poly[(K1 - 1) * K1 + r];
    for (int64_t m = K1 - 2; m >= 0; --m) acc = acc * z + poly[m * K1 + r];
    w[r] = cw * acc;
  }
}

/* o[q0 + j] = sum_{p, r} wall[p K1 + r] T[rows[p] + r Q + q0 + j], j < width <= QB */
INLINE void contract_block_@SUF@(const @T@* wall, const @T@* tab, const int64_t* rows,
                                 int64_t P, const int64_t K1, int64_t Q, int64_t q0,
                                 const int width, @T@* o) {
  @T@ acc[QB];
  for (int j = 0; j < width; ++j) acc[j] = 0;
  for (int64_t p = 0; p < P; ++p) {
    const @T@* wp = wall + p * K1;
    const @T@* row = tab + rows[p] + q0;
    for (int64_t r = 0; r < K1; ++r) {
      const @T@ wr = wp[r];
      const @T@* rr = row + r * Q;
#pragma omp simd
      for (int j = 0; j < width; ++j) acc[j] += wr * rr[j];
    }
  }
  for (int j = 0; j < width; ++j) o[q0 + j] = acc[j];
}

/* contract, batch rows b0 .. b1-1 */
INLINE void contract_rows_@SUF@(const @T@* c, const @T@* u, const @T@* tab, @T@* out,
                                int64_t b0, int64_t b1, int64_t P, int64_t n, const int64_t K1,
                                int64_t Q, const @T@* poly, const @T@* sign, const @T@* shift) {
  const int64_t nb = n + K1 - 1;
  @T@ wstack[STACK_W];
  int64_t rstack[STACK_P];
  const int heap = P * K1 > STACK_W || P > STACK_P;
  @T@* wall = heap ? (@T@*)malloc(sizeof(@T@) * P * K1) : wstack;
  int64_t* rows = heap ? (int64_t*)malloc(sizeof(int64_t) * P) : rstack;
  if (!wall || !rows) abort();
  for (int64_t b = b0; b < b1; ++b) {
    @T@* o = out + b * Q;
    for (int64_t p = 0; p < P; ++p) {
      @T@ s;
      const int64_t cell = cell_@SUF@(u[b * P + p], n, &s);
      weights_@SUF@(s, c ? c[b * P + p] : (@T@)1, poly, sign, shift, K1, wall + p * K1);
      rows[p] = (p * nb + cell) * Q;
    }
    int64_t q0 = 0;
    for (; q0 + QB <= Q; q0 += QB) /* QB outputs in registers across all p, r */
      contract_block_@SUF@(wall, tab, rows, P, K1, Q, q0, QB, o);
    const int64_t rem = Q - q0;
    if (rem == 1) {
      @T@ acc = 0;
      for (int64_t p = 0; p < P; ++p) {
        const @T@* wp = wall + p * K1;
        const @T@* row = tab + rows[p] + q0;
        for (int64_t r = 0; r < K1; ++r) acc += wp[r] * row[r * Q];
      }
      o[q0] = acc;
    } else if (rem > 1) { /* the last Q % QB outputs, vectorised as the full blocks */
      contract_block_@SUF@(wall, tab, rows, P, K1, Q, q0, (int)rem, o);
    }
  }
  if (heap) {
    free(wall);
    free(rows);
  }
}

/* sample, batch rows b0 .. b1-1: g . sum_r w_r T[row + r] (rows combined in comb) */
INLINE void sample_rows_@SUF@(const @T@* g, const @T@* u, const @T@* tab, @T@* out,
                              int64_t b0, int64_t b1, int64_t P, int64_t n, const int64_t K1,
                              int64_t Q, const @T@* poly, const @T@* sign, const @T@* shift) {
  const int64_t nb = n + K1 - 1;
  @T@ cstack[STACK_W];
  @T@* restrict comb = Q > STACK_W ? (@T@*)malloc(sizeof(@T@) * Q) : cstack;
  if (!comb) abort();
  for (int64_t b = b0; b < b1; ++b) {
    const @T@* restrict gb = g + b * Q;
    for (int64_t p = 0; p < P; ++p) {
      @T@ s, w[KMAX];
      const int64_t cell = cell_@SUF@(u[b * P + p], n, &s);
      weights_@SUF@(s, (@T@)1, poly, sign, shift, K1, w);
      const @T@* restrict row = tab + (p * nb + cell) * Q;
      @T@ total = 0;
      if (Q == 1) {
        for (int64_t r = 0; r < K1; ++r) total += w[r] * row[r];
        total *= gb[0];
      } else {
#pragma omp simd
        for (int64_t q = 0; q < Q; ++q) comb[q] = w[0] * row[q];
        for (int64_t r = 1; r < K1; ++r) {
          const @T@ wr = w[r];
          const @T@* restrict rr = row + r * Q;
#pragma omp simd
          for (int64_t q = 0; q < Q; ++q) comb[q] += wr * rr[q];
        }
#pragma omp simd reduction(+ : total)
        for (int64_t q = 0; q < Q; ++q) total += gb[q] * comb[q];
      }
      out[b * P + p] = total;
    }
  }
  if (Q > STACK_W) free(comb);
}

/* scatter, inputs p0 .. p1-1 (their rows of out never overlap); out zeroed by the caller */
INLINE void scatter_rows_@SUF@(const @T@* c, const @T@* u, const @T@* g, @T@* out,
                               int64_t B, int64_t p0, int64_t p1, int64_t P, int64_t n,
                               const int64_t K1, int64_t Q, const @T@* poly, const @T@* sign,
                               const @T@* shift) {
  const int64_t nb = n + K1 - 1;
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t b = 0; b < B; ++b) {
      @T@ s, w[KMAX];
      const int64_t cell = cell_@SUF@(u[b * P + p], n, &s);
      weights_@SUF@(s, c ? c[b * P + p] : (@T@)1, poly, sign, shift, K1, w);
      @T@* row = out + (p * nb + cell) * Q;
      const @T@* gb = g + b * Q;
      for (int64_t r = 0; r < K1; ++r) {
        const @T@ wr = w[r];
        @T@* rr = row + r * Q;
#pragma omp simd
        for (int64_t q = 0; q < Q; ++q) rr[q] += wr * gb[q];
      }
    }
  }
}

/* The exported maps: one parallel region, a static share of batch rows (contract, sample)
   or of inputs (scatter) per thread, and inside it a switch on K1 = k + 1 so that every
   degree 0 .. 5 runs with a compile-time K1 (unrolled Horner loops). */
#define DISPATCH(call, K1) \
  switch (K1) {            \
    case 1: call(1); break; \
    case 2: call(2); break; \
    case 3: call(3); break; \
    case 4: call(4); break; \
    case 5: call(5); break; \
    case 6: call(6); break; \
    default: call(K1);     \
  }

void mlkan_contract_@SUF@(const @T@* c, const @T@* u, const @T@* tab, @T@* out, int64_t B,
                          int64_t P, int64_t n, int64_t K1, int64_t Q, const @T@* poly,
                          const @T@* sign, const @T@* shift, int nthreads) {
  if (K1 < 1 || K1 > KMAX) return;
  const int par = nthreads > 1 && B > 1 && B * P * K1 * (Q + K1) > PAR_WORK;
#pragma omp parallel num_threads(nthreads) if (par)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t b0 = B * t / nt, b1 = B * (t + 1) / nt;
#define CALL(k) contract_rows_@SUF@(c, u, tab, out, b0, b1, P, n, k, Q, poly, sign, shift)
    DISPATCH(CALL, K1)
#undef CALL
  }
}

void mlkan_sample_@SUF@(const @T@* g, const @T@* u, const @T@* tab, @T@* out, int64_t B,
                        int64_t P, int64_t n, int64_t K1, int64_t Q, const @T@* poly,
                        const @T@* sign, const @T@* shift, int nthreads) {
  if (K1 < 1 || K1 > KMAX) return;
  const int par = nthreads > 1 && B > 1 && B * P * K1 * (Q + K1) > PAR_WORK;
#pragma omp parallel num_threads(nthreads) if (par)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t b0 = B * t / nt, b1 = B * (t + 1) / nt;
#define CALL(k) sample_rows_@SUF@(g, u, tab, out, b0, b1, P, n, k, Q, poly, sign, shift)
    DISPATCH(CALL, K1)
#undef CALL
  }
}

void mlkan_scatter_@SUF@(const @T@* c, const @T@* u, const @T@* g, @T@* out, int64_t B,
                         int64_t P, int64_t n, int64_t K1, int64_t Q, const @T@* poly,
                         const @T@* sign, const @T@* shift, int nthreads) {
  if (K1 < 1 || K1 > KMAX) return;
  const int par = nthreads > 1 && P > 1 && B * P * K1 * (Q + K1) > PAR_WORK;
#pragma omp parallel num_threads(nthreads) if (par)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t p0 = P * t / nt, p1 = P * (t + 1) / nt;
#define CALL(k) scatter_rows_@SUF@(c, u, g, out, B, p0, p1, P, n, k, Q, poly, sign, shift)
    DISPATCH(CALL, K1)
#undef CALL
  }
}
#undef DISPATCH
"""

C_SOURCE = (
    C_HEADER
    + "".join(
        _C_TEMPLATE.replace("@T@", t).replace("@SUF@", suf)
        for t, suf in (("float", "f32"), ("double", "f64"))
    )
    + f"int mlkan_version(void) {{ return {VERSION}; }}\n"
)

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
#: a separate AddressSanitizer build of the same source (tests only)
ASAN_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address", "-fopenmp",
              "-shared", "-fPIC", "-std=c11"]  # fmt: skip
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


def build_key(cc: str, flags: Sequence[str] = FLAGS) -> str:
    """sha256 of everything the library is built from: source, flags, compiler, CPU."""
    return hashlib.sha256("\0".join([C_SOURCE, *flags, cc, _cpu_tag()]).encode()).hexdigest()


def library_path(cc: str, flags: Sequence[str] = FLAGS, directory: Path | None = None) -> Path:
    name = "mlkan_kernels" if list(flags) == FLAGS else "mlkan_kernels_variant"
    return (directory or cache_dir()) / f"{name}_{build_key(cc, flags)[:16]}.so"


def build(
    verbose: bool = False, flags: Sequence[str] = FLAGS, directory: Path | None = None
) -> Path | None:
    """The verified library in the cache, compiled first if missing or corrupt; None when
    it cannot build. A corrupt cached library gives one ``CacheWarning`` and is rebuilt."""
    cc = _compiler()
    if cc is None:
        return None
    path, key = library_path(cc, flags, directory), build_key(cc, flags)
    if cache_files.verify(path, key) is None:
        return path
    with cache_files.build_lock(path):
        reason = cache_files.verify(path, key)  # another process may have built it
        if reason is None:
            return path
        if reason != "missing":
            cache_files.warn_rebuild(path, reason)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src = Path(tmp) / "mlkan_kernels.c"
            src.write_text(C_SOURCE)
            out = Path(tmp) / path.name
            proc = subprocess.run(
                [cc, *flags, str(src), "-o", str(out)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                if verbose:
                    print(proc.stderr)
                return None
            cache_files.install(out, path, key, cc=cc, flags=list(flags))
    return path


_threads = torch.get_num_threads


class CKernels:
    """The loaded library: ``contract``, ``sample``, ``scatter`` (shapes as in
    ``kernel_checks``), each checked before any pointer reaches C. The call path is kept
    lean (cached ctypes functions, raw ``data_ptr`` ints, table pointers cached on the spec):
    its fixed cost is what small problems pay ~30 times per PINN step."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.lib, self.path = lib, path
        fns: dict[str, dict[torch.dtype, Any]] = {}
        for op in ("contract", "sample", "scatter"):
            fns[op] = {}
            for dtype, suf in ((torch.float32, "f32"), (torch.float64, "f64")):
                fn = getattr(lib, f"mlkan_{op}_{suf}")
                fn.argtypes, fn.restype = _ARGTYPES, None
                fns[op][dtype] = fn
        self._contract, self._sample, self._scatter = fns["contract"], fns["sample"], fns["scatter"]

    @staticmethod
    def _refuse(op: str, u: Tensor, spec) -> NoReturn:
        if not is_c_compatible(u):
            raise ValueError(
                f"C kernel {op}: needs CPU float32/float64, got {u.dtype} on {u.device}"
            )
        raise ValueError(f"C kernel {op}: degree {spec.degree} outside 0 .. {KMAX - 1}")

    def contract(self, c: Tensor | None, u: Tensor, tab: Tensor, spec) -> Tensor:
        """y[b, q] = sum_{p, r} c[b, p] w_r(u[b, p]) T[row(b, p) + r, q]  (c None: 1)."""
        check_map_operands("contract", c, u, tab, spec)
        fn = self._contract.get(u.dtype)
        if fn is None or not u.is_cpu or spec.degree >= KMAX:
            self._refuse("contract", u, spec)
        B, P = u.shape
        Q = tab.shape[1]
        out = torch.empty((B, Q), dtype=u.dtype)
        poly, sign, shift = spec.table_ptrs
        fn(None if c is None else c.data_ptr(), u.data_ptr(), tab.data_ptr(), out.data_ptr(),
           B, P, spec.grid_size, spec.degree + 1, Q, poly, sign, shift, _threads())  # fmt: skip
        return out

    def sample(self, g: Tensor, u: Tensor, tab: Tensor, spec) -> Tensor:
        """G[b, p] = sum_r w_r(u[b, p]) g[b] . T[row(b, p) + r]."""
        check_map_operands("sample", g, u, tab, spec)
        fn = self._sample.get(u.dtype)
        if fn is None or not u.is_cpu or spec.degree >= KMAX:
            self._refuse("sample", u, spec)
        B, P = u.shape
        out = torch.empty((B, P), dtype=u.dtype)
        poly, sign, shift = spec.table_ptrs
        fn(g.data_ptr(), u.data_ptr(), tab.data_ptr(), out.data_ptr(), B, P, spec.grid_size,
           spec.degree + 1, tab.shape[1], poly, sign, shift, _threads())  # fmt: skip
        return out

    def scatter(self, c: Tensor | None, u: Tensor, g: Tensor, spec, rows: int) -> Tensor:
        """S[row(b, p) + r] += c[b, p] w_r(u[b, p]) g[b]."""
        check_map_operands("scatter", c, u, g, spec, rows)
        fn = self._scatter.get(u.dtype)
        if fn is None or not u.is_cpu or spec.degree >= KMAX:
            self._refuse("scatter", u, spec)
        B, P = u.shape
        Q = g.shape[1]
        out = torch.zeros((rows, Q), dtype=u.dtype)
        poly, sign, shift = spec.table_ptrs
        fn(None if c is None else c.data_ptr(), u.data_ptr(), g.data_ptr(), out.data_ptr(),
           B, P, spec.grid_size, spec.degree + 1, Q, poly, sign, shift, _threads())  # fmt: skip
        return out


def open_library(path: Path) -> CKernels:
    """``CKernels`` of the library at ``path`` (already verified by ``build``)."""
    lib = ctypes.CDLL(str(path))
    if lib.mlkan_version() != VERSION:
        raise OSError(f"{path}: interface version {lib.mlkan_version()}, expected {VERSION}")
    return CKernels(lib, path)


_LOADED: CKernels | None = None
_TRIED = False


def load(verbose: bool = False) -> CKernels | None:
    """Build (if needed), verify and load the C kernels once per process; None if
    unavailable."""
    global _LOADED, _TRIED
    if _TRIED:
        return _LOADED
    _TRIED = True
    if os.environ.get("BENCH_MLKAN_NO_C", "") not in ("", "0"):
        return None
    try:
        path = build(verbose)
        if path is not None:
            _LOADED = open_library(path)
    except (OSError, AttributeError, subprocess.SubprocessError) as err:  # pragma: no cover
        if verbose:
            print(f"C kernels unavailable: {err}")
        _LOADED = None
    return _LOADED
