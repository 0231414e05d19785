"""A small C kernel for the local (k+1)-support spline contraction, loaded with ctypes.

Three loops, each O(batch * P * (k+1) * Q), for float32 and float64 (row-major, contiguous):

    contract: y[b, q]     = sum_{p, r} v[b, p, r] * T[base[b, p] + r, q]
    sample:   G[b, p, r]  = sum_q g[b, q] * T[base[b, p] + r, q]
    scatter:  S[i, q]    += v[b, p, r] * g[b, q]   at i = base[b, p] + r

(T is the coefficient table (P * (n + k), Q); base[b, p] = p (n + k) + first cell.) The
autograd wrapper in ``kernels.py`` differentiates any of them with the other two, so
every derivative order stays on this path.

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

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>

#define QB 32 /* output columns kept in registers per pass */

#define DEFINE_KERNELS(T, SUF)                                                              \
void mlkan_contract_##SUF(const T* v, const int64_t* base, const T* tab, T* out,            \
                          int64_t B, int64_t P, int64_t K1, int64_t Q, int nthreads) {      \
  _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                        \
  for (int64_t b = 0; b < B; ++b) {                                                         \
    const T* vb = v + b * P * K1;                                                           \
    const int64_t* bb = base + b * P;                                                       \
    T* o = out + b * Q;                                                                     \
    int64_t q0 = 0;                                                                         \
    for (; q0 + QB <= Q; q0 += QB) {                                                        \
      T acc[QB];                                                                            \
      for (int j = 0; j < QB; ++j) acc[j] = 0;                                              \
      for (int64_t p = 0; p < P; ++p) {                                                     \
        const T* row = tab + bb[p] * Q + q0;                                                \
        const T* w = vb + p * K1;                                                           \
        for (int64_t r = 0; r < K1; ++r) {                                                  \
          const T wr = w[r];                                                                \
          const T* rr = row + r * Q;                                                        \
          _Pragma("omp simd")                                                               \
          for (int j = 0; j < QB; ++j) acc[j] += wr * rr[j];                                \
        }                                                                                   \
      }                                                                                     \
      for (int j = 0; j < QB; ++j) o[q0 + j] = acc[j];                                      \
    }                                                                                       \
    if (q0 < Q) {                                                                           \
      for (int64_t q = q0; q < Q; ++q) o[q] = 0;                                            \
      for (int64_t p = 0; p < P; ++p) {                                                     \
        const T* row = tab + bb[p] * Q;                                                     \
        const T* w = vb + p * K1;                                                           \
        for (int64_t r = 0; r < K1; ++r) {                                                  \
          const T wr = w[r];                                                                \
          const T* rr = row + r * Q;                                                        \
          for (int64_t q = q0; q < Q; ++q) o[q] += wr * rr[q];                              \
        }                                                                                   \
      }                                                                                     \
    }                                                                                       \
  }                                                                                         \
}                                                                                           \
                                                                                            \
void mlkan_sample_##SUF(const T* g, const int64_t* base, const T* tab, T* out,              \
                        int64_t B, int64_t P, int64_t K1, int64_t Q, int nthreads) {        \
  _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                        \
  for (int64_t b = 0; b < B; ++b) {                                                         \
    const T* gb = g + b * Q;                                                                \
    for (int64_t p = 0; p < P; ++p) {                                                       \
      const T* row = tab + base[b * P + p] * Q;                                             \
      T* o = out + (b * P + p) * K1;                                                        \
      for (int64_t r = 0; r < K1; ++r) {                                                    \
        const T* rr = row + r * Q;                                                          \
        T acc = 0;                                                                          \
        _Pragma("omp simd reduction(+ : acc)")                                              \
        for (int64_t q = 0; q < Q; ++q) acc += gb[q] * rr[q];                               \
        o[r] = acc;                                                                         \
      }                                                                                     \
    }                                                                                       \
  }                                                                                         \
}                                                                                           \
                                                                                            \
/* out must be zeroed by the caller; rows of different p never overlap, so p is split. */   \
void mlkan_scatter_##SUF(const T* v, const int64_t* base, const T* g, T* out,               \
                         int64_t B, int64_t P, int64_t K1, int64_t Q, int nthreads) {       \
  _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                        \
  for (int64_t p = 0; p < P; ++p) {                                                         \
    for (int64_t b = 0; b < B; ++b) {                                                       \
      const T* w = v + (b * P + p) * K1;                                                    \
      T* row = out + base[b * P + p] * Q;                                                   \
      const T* gb = g + b * Q;                                                              \
      for (int64_t r = 0; r < K1; ++r) {                                                    \
        const T wr = w[r];                                                                  \
        T* rr = row + r * Q;                                                                \
        _Pragma("omp simd")                                                                 \
        for (int64_t q = 0; q < Q; ++q) rr[q] += wr * gb[q];                                \
      }                                                                                     \
    }                                                                                       \
  }                                                                                         \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

int mlkan_version(void) { return 1; }
"""

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
_ARGTYPES = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.c_int]


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

    def contract(self, v: Tensor, base: Tensor, tab: Tensor) -> Tensor:
        B, P, K1 = v.shape
        Q = tab.shape[1]
        out = torch.empty(B, Q, dtype=tab.dtype)
        fn = self._fns["contract", tab.dtype]
        fn(v.data_ptr(), base.data_ptr(), tab.data_ptr(), out.data_ptr(), B, P, K1, Q,
           self._threads())  # fmt: skip
        return out

    def sample(self, g: Tensor, base: Tensor, tab: Tensor, K1: int) -> Tensor:
        B, Q = g.shape
        P = base.shape[1]
        out = torch.empty(B, P, K1, dtype=tab.dtype)
        fn = self._fns["sample", tab.dtype]
        fn(g.data_ptr(), base.data_ptr(), tab.data_ptr(), out.data_ptr(), B, P, K1, Q,
           self._threads())  # fmt: skip
        return out

    def scatter(self, v: Tensor, base: Tensor, g: Tensor, rows: int) -> Tensor:
        B, P, K1 = v.shape
        Q = g.shape[1]
        out = torch.zeros(rows, Q, dtype=g.dtype)
        fn = self._fns["scatter", g.dtype]
        fn(v.data_ptr(), base.data_ptr(), g.data_ptr(), out.data_ptr(), B, P, K1, Q,
           self._threads())  # fmt: skip
        return out


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
            if lib.mlkan_version() == 1:
                _LOADED = CKernels(lib, path)
    except (OSError, AttributeError, subprocess.SubprocessError) as err:  # pragma: no cover
        if verbose:
            print(f"C kernels unavailable: {err}")
        _LOADED = None
    return _LOADED
