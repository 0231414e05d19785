"""A fused C kernel for the jet of a spline layer (``jets.spline``), loaded with ctypes.

For one spline layer with inputs u[b, p] = (clamp(x) - a) / h in [0, n], the coefficient
table T (P (n + k), Q) (``kernels``' layout), R = D + M derivative multipliers
C[k, b, p] (C[k] = x_k du/dx for the D first and M second derivatives of the input) and
pairs (I[m], J[m]) of the first ones, every output row of the jet is one local contraction
with its own weights a[row, r] (w^d_r = d^d/du^d B_{cell+r}(u), ``kernels.derivative_tables``)::

    Y[row, b, q] = sum_{p, r} a[row, r](b, p) T[p (n + k) + cell + r, q]
    a[0]         = w^0                                  (value)
    a[1 + i]     = C[i] w^1                             (first derivative, i < D)
    a[1 + D + m] = C[D + m] w^1 + C[I m] C[J m] w^2     (second derivative m)

``forward`` computes Y (1 + R, N, Q) in one pass: the weights of an input are evaluated once
for all rows and each coefficient row is loaded once for all of them. ``backward`` returns,
for a cotangent G (1 + R, N, Q), the gradients with respect to u, C and T in one pass (dot
products of G with the k+1 coefficient rows, then closed-form sums with w^1, w^2, w^3;
thread-private table gradients summed at the end). The pair is exact first-order calculus
(``torch.autograd.gradcheck`` in the tests); the jet route needs no double backward.

Build: as ``kernels_c`` (plain C, ``cc -O3 -march=native -fopenmp``, plus fused multiply-adds:
``FLAGS``), cached under ``$BENCH_MLKAN_CACHE`` with a verified sidecar through
``cache_files``); ``load()`` returns None without a compiler or with ``BENCH_MLKAN_NO_C=1``,
and ``jets`` then uses the ``kernels`` maps instead (same numbers, slower).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from . import cache_files, kernels_c
from .kernels import derivative_tables
from .splines import Grid

VERSION = 13
#: K1 = degree + 1 <= KMAX; 1 + D + M <= RMAX output rows
KMAX, RMAX = 6, 10

_C_HEADER = r"""#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define INLINE static inline __attribute__((always_inline))
#define KMAX 6         /* K1 = degree + 1 <= KMAX */
#define RMAX 10        /* output rows 1 + D + M <= RMAX */
#define PAR_WORK 32768 /* multiply-adds below which a call runs on one thread */
#define BLOCK_INPUTS 64 /* inputs (rows x P) prepared together */
"""

_C_TEMPLATE = r"""
/* ============================ scalar_t = @T@ ============================ */
#define VL_@SUF@ (32 / (int64_t)sizeof(@T@)) /* outputs per register block */
typedef @T@ jvec_@SUF@ __attribute__((vector_size(32), aligned(sizeof(@T@))));

typedef struct {
  const @T@ *x, *X, *tab, *G, *Gr, *tables; /* G: value cotangent, Gr: the rows' */
  @T@ *Y, *gx, *gX, *gtab;
  const int64_t *pi, *pj;
  int64_t N, P, n, K1, Q, D, M;
  @T@ lo, hi, h;
} jargs_@SUF@;

/* per-thread scratch for a block of L batch rows b0 .. b0 + L - 1, laid out over the
   flattened inputs i = (b - b0) P + p < PB = L P (SoA: prep and input gradients vectorise
   over i whatever P) */
typedef struct {
  int64_t PB;
  int64_t* poff; /* (PB) p (n + k) Q of input i */
  int64_t* base; /* (PB) (p (n + k) + cell) Q */
  @T@* s;        /* (PB) position in the cell */
  @T@* du;       /* (PB) d u / d x: 1 / h inside [lo, hi] (ends included), else 0 */
  @T@* c;        /* (R, PB) multipliers X[k, b, p] du */
  @T@* w;        /* (4, K1, PB) w^d_r */
  @T@* a;        /* (R1, K1, PB) row coefficients */
  @T@* dot;      /* (R1, K1, PB) G[k, b, :] . T[base + r Q + :] */
  @T@* sums;     /* (3, R1, PB) sum_r w^1, w^2, w^3 times dot */
  @T@* tg;       /* (K1 + R1 + 1, PB) the narrow-column paths' gathers and sums */
} jscratch_@SUF@;

/* cells, weights of orders 0 .. orders-1 and coefficients of the block's inputs */
INLINE void jprep_@SUF@(const jargs_@SUF@* A, int64_t b0, const int64_t K1, int orders,
                        jscratch_@SUF@* S) {
  const int64_t N = A->N, P = A->P, n = A->n, Q = A->Q, D = A->D, M = A->M, PB = S->PB;
  const int64_t TS = K1 * K1 + 2 * K1;
  const @T@* xb = A->x + b0 * P;
  const @T@ top = (@T@)(n - 1), lo = A->lo, hi = A->hi, h = A->h, inv = (@T@)1 / A->h;
  @T@* restrict s = S->s;
  @T@* restrict du = S->du;
  int64_t* restrict base = S->base;
  const int64_t* restrict poff = S->poff;
#pragma omp simd
  for (int64_t i = 0; i < PB; ++i) {
    const @T@ x = xb[i];
    @T@ xc = x < lo ? lo : x; /* as torch.clamp (NaN stays NaN) */
    xc = xc > hi ? hi : xc;
    const @T@ u = (xc - lo) / h; /* as kernels.spline_contract */
    @T@ f = floor(u);
    f = f >= (@T@)0 ? f : (@T@)0; /* NaN -> 0 */
    f = f > top ? top : f;
    s[i] = u - f;
    base[i] = poff[i] + (int64_t)f * Q;
    du[i] = (x >= lo) & (x <= hi) ? inv : (@T@)0;
  }
  for (int64_t k = 0; k < D + M; ++k) {
    const @T@* Xk = A->X + (k * N + b0) * P;
    @T@* ck = S->c + k * PB;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) ck[i] = Xk[i] * S->du[i];
  }
  for (int d = 0; d < orders; ++d) {
    const @T@* poly = A->tables + d * TS;
    const @T@* sign = poly + K1 * K1;
    const @T@* shift = sign + K1;
    for (int64_t r = 0; r < K1; ++r) {
      @T@* wr = S->w + (d * K1 + r) * PB;
      const @T@ sg = sign[r], sh = shift[r];
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) {
        const @T@ z = sh + sg * S->s[i];
        @T@ acc = poly[(K1 - 1) * K1 + r];
        for (int64_t m = K1 - 2; m >= 0; --m) acc = acc * z + poly[m * K1 + r];
        wr[i] = acc;
      }
    }
  }
  for (int64_t r = 0; r < K1; ++r) {
    const @T@* w0 = S->w + r * PB;
    const @T@* w1 = S->w + (K1 + r) * PB;
    const @T@* w2 = S->w + (2 * K1 + r) * PB;
    @T@* a0 = S->a + r * PB;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) a0[i] = w0[i];
    for (int64_t j = 0; j < D; ++j) {
      const @T@* cj = S->c + j * PB;
      @T@* aj = S->a + ((1 + j) * K1 + r) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) aj[i] = cj[i] * w1[i];
    }
    for (int64_t m = 0; m < M; ++m) {
      const @T@* cm = S->c + (D + m) * PB;
      const @T@* ca = S->c + A->pi[m] * PB;
      const @T@* cb = S->c + A->pj[m] * PB;
      @T@* am = S->a + ((1 + D + m) * K1 + r) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) am[i] = cm[i] * w1[i] + ca[i] * cb[i] * w2[i];
    }
  }
}

/* Y[k, b, :] = sum_{p, r} a[k, r, p] T[base[p] + r Q + :] for row b (inputs off + p of the
   block): full blocks of VL outputs with R1 vector accumulators (the last Q % VL outputs:
   ``jfwd_tail``) */
INLINE void jfwd_gemm_@SUF@(const jargs_@SUF@* A, int64_t b, int64_t off, const int64_t R1,
                            const jscratch_@SUF@* S) {
  const int64_t Q = A->Q, N = A->N, P = A->P, K1 = A->K1, VL = VL_@SUF@, PB = S->PB;
  const int64_t qfull = Q - Q % VL, KPB = K1 * PB;
  const int64_t* base = S->base + off;
  for (int64_t q0 = 0; q0 < qfull; q0 += VL) {
    jvec_@SUF@ acc[RMAX];
    for (int64_t k = 0; k < R1; ++k) acc[k] = (jvec_@SUF@){0};
    for (int64_t p = 0; p < P; ++p) {
      const @T@* tb = A->tab + base[p] + q0;
      for (int64_t r = 0; r < K1; ++r) {
        const jvec_@SUF@ t = *(const jvec_@SUF@*)(tb + r * Q);
        const @T@* a = S->a + r * PB + off + p;
        for (int64_t k = 0; k < R1; ++k) acc[k] += a[k * KPB] * t;
      }
    }
    for (int64_t k = 0; k < R1; ++k) *(jvec_@SUF@*)(A->Y + (k * N + b) * Q + q0) = acc[k];
  }
}

/* dot[k, r, p] = G[k, b, :] . T[base[p] + r Q + :] and
   gtab[base[p] + r Q + :] += sum_k a[k, r, p] G[k, b, :] for row b: full blocks per
   coefficient row (R1 partial dots in registers), the last Q % VL columns over p */
INLINE void jbwd_gemm_@SUF@(const jargs_@SUF@* A, int64_t b, int64_t off, const int64_t R1,
                            jscratch_@SUF@* S, @T@* gtab, int dots) {
  const int64_t Q = A->Q, NQ = A->N * A->Q, P = A->P, K1 = A->K1, VL = VL_@SUF@, PB = S->PB;
  const int64_t qfull = Q - Q % VL, KPB = K1 * PB;
  const int64_t* base = S->base + off;
  const @T@* Gk[RMAX]; /* cotangent row k at batch row b */
  Gk[0] = A->G + b * Q;
  for (int64_t k = 1; k < R1; ++k) Gk[k] = A->Gr + (k - 1) * NQ + b * Q;
  if (qfull == VL) { /* one block of columns: the cotangents stay in registers */
    jvec_@SUF@ gv[RMAX];
    for (int64_t k = 0; k < R1; ++k) gv[k] = *(const jvec_@SUF@*)Gk[k];
    for (int64_t p = 0; p < P; ++p)
      for (int64_t r = 0; r < K1; ++r) {
        const jvec_@SUF@ t = *(const jvec_@SUF@*)(A->tab + base[p] + r * Q);
        const @T@* a = S->a + r * PB + off + p;
        if (gtab) {
          @T@* o = gtab + base[p] + r * Q;
          jvec_@SUF@ v = *(const jvec_@SUF@*)o;
          for (int64_t k = 0; k < R1; ++k) v += a[k * KPB] * gv[k];
          *(jvec_@SUF@*)o = v;
        }
        if (dots) {
          @T@* d = S->dot + r * PB + off + p;
          for (int64_t k = 0; k < R1; ++k) {
            const jvec_@SUF@ e = gv[k] * t;
            @T@ sum = 0;
            for (int64_t j = 0; j < VL; ++j) sum += e[j];
            d[k * KPB] = sum;
          }
        }
      }
  } else if (qfull)
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t r = 0; r < K1; ++r) {
        const @T@* tr = A->tab + base[p] + r * Q;
        const @T@* a = S->a + r * PB + off + p;
        @T@* o = gtab ? gtab + base[p] + r * Q : 0;
        jvec_@SUF@ acc[RMAX];
        for (int64_t k = 0; k < R1; ++k) acc[k] = (jvec_@SUF@){0};
        for (int64_t q0 = 0; q0 < qfull; q0 += VL) {
          const jvec_@SUF@ t = *(const jvec_@SUF@*)(tr + q0);
          jvec_@SUF@ v = o ? *(const jvec_@SUF@*)(o + q0) : (jvec_@SUF@){0};
          for (int64_t k = 0; k < R1; ++k) {
            const jvec_@SUF@ gk = *(const jvec_@SUF@*)(Gk[k] + q0);
            acc[k] += gk * t;
            v += a[k * KPB] * gk;
          }
          if (o) *(jvec_@SUF@*)(o + q0) = v;
        }
        if (dots) {
          @T@* d = S->dot + r * PB + off + p;
          for (int64_t k = 0; k < R1; ++k) {
            @T@ t = 0;
            for (int64_t j = 0; j < VL; ++j) t += acc[k][j];
            d[k * KPB] = t;
          }
        }
      }
    }
  else if (dots)
    for (int64_t k = 0; k < R1; ++k)
      for (int64_t r = 0; r < K1; ++r) {
        @T@* d = S->dot + (k * K1 + r) * PB + off;
        for (int64_t p = 0; p < P; ++p) d[p] = 0;
      }
}

/* the last columns q0 .. Q-1 of every row of the block, vectorised over the block's inputs i
   (narrow outputs: the per-row loops above would run over P alone):
   Y[k, b, q] = sum_p sum_r a[k, r, i] T[base[i] + r Q + q], i = (b - c0) P + p */
INLINE void jfwd_tail_@SUF@(const jargs_@SUF@* A, int64_t c0, int64_t rows, int64_t q0,
                            const int64_t K1, const int64_t R1, jscratch_@SUF@* S) {
  const int64_t Q = A->Q, N = A->N, P = A->P, PB = S->PB;
  const int64_t* restrict base = S->base;
  @T@* restrict t = S->tg;          /* (K1, PB) gathered coefficients of column q */
  @T@* restrict prod = t + K1 * PB; /* (PB) one output row's products */
  for (int64_t q = q0; q < Q; ++q) {
    for (int64_t r = 0; r < K1; ++r)
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) t[r * PB + i] = A->tab[base[i] + r * Q + q];
    for (int64_t k = 0; k < R1; ++k) {
      const @T@* restrict a = S->a + k * K1 * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) prod[i] = a[i] * t[i];
      for (int64_t r = 1; r < K1; ++r)
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) prod[i] += a[r * PB + i] * t[r * PB + i];
      for (int64_t lb = 0; lb < rows; ++lb) {
        @T@ v = 0;
        for (int64_t p = 0; p < P; ++p) v += prod[lb * P + p];
        A->Y[(k * N + c0 + lb) * Q + q] = v;
      }
    }
  }
}

/* the backward of ``jfwd_tail``: dot[k, r, i] += G[k, b, q] T[base[i] + r Q + q] and
   gtab[base[i] + r Q + q] += sum_k a[k, r, i] G[k, b, q] for the columns q0 .. Q-1 */
INLINE void jbwd_tail_@SUF@(const jargs_@SUF@* A, int64_t c0, int64_t rows, int64_t q0,
                            const int64_t K1, const int64_t R1, jscratch_@SUF@* S, @T@* gtab,
                            int dots) {
  const int64_t Q = A->Q, N = A->N, P = A->P, PB = S->PB, KPB = K1 * PB;
  const int64_t* restrict base = S->base;
  @T@* restrict t = S->tg;          /* (K1, PB) gathered coefficients of column q */
  @T@* restrict g = t + K1 * PB;    /* (R1, PB) G[k, b, q] per input */
  @T@* restrict v = g + R1 * PB;    /* (PB) one table-gradient row */
  for (int64_t q = q0; q < Q; ++q) {
    for (int64_t k = 0; k < R1; ++k)
      for (int64_t lb = 0; lb < rows; ++lb) {
        const @T@ gk = k == 0 ? A->G[(c0 + lb) * Q + q] : A->Gr[((k - 1) * N + c0 + lb) * Q + q];
        for (int64_t p = 0; p < P; ++p) g[k * PB + lb * P + p] = gk;
      }
    if (dots) {
      for (int64_t r = 0; r < K1; ++r)
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) t[r * PB + i] = A->tab[base[i] + r * Q + q];
      for (int64_t k = 0; k < R1; ++k)
        for (int64_t r = 0; r < K1; ++r) {
          @T@* restrict d = S->dot + k * KPB + r * PB;
#pragma omp simd
          for (int64_t i = 0; i < PB; ++i) d[i] += g[k * PB + i] * t[r * PB + i];
        }
    }
    if (gtab)
      for (int64_t r = 0; r < K1; ++r) {
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) v[i] = S->a[r * PB + i] * g[i];
        for (int64_t k = 1; k < R1; ++k)
#pragma omp simd
          for (int64_t i = 0; i < PB; ++i) v[i] += S->a[k * KPB + r * PB + i] * g[k * PB + i];
        for (int64_t i = 0; i < PB; ++i) gtab[base[i] + r * Q + q] += v[i];
      }
  }
}

/* grad x and grad X of the block's inputs from the dots (closed form, module docstring) */
INLINE void jbwd_inputs_@SUF@(const jargs_@SUF@* A, int64_t b0, const int64_t K1,
                              const jscratch_@SUF@* S) {
  const int64_t N = A->N, P = A->P, D = A->D, M = A->M, R1 = 1 + D + M, PB = S->PB;
  const int64_t KPB = K1 * PB;
  @T@* S1 = S->sums;
  @T@* S2 = S1 + R1 * PB;
  @T@* S3 = S2 + R1 * PB;
  for (int64_t k = 0; k < R1; ++k) {
    @T@* s1 = S1 + k * PB;
    @T@* s2 = S2 + k * PB;
    @T@* s3 = S3 + k * PB;
    const @T@* dk = S->dot + k * KPB;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) s1[i] = 0, s2[i] = 0, s3[i] = 0;
    for (int64_t r = 0; r < K1; ++r) {
      const @T@* w1 = S->w + (K1 + r) * PB;
      const @T@* w2 = S->w + (2 * K1 + r) * PB;
      const @T@* w3 = S->w + (3 * K1 + r) * PB;
      const @T@* d = dk + r * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) {
        s1[i] += w1[i] * d[i];
        s2[i] += w2[i] * d[i];
        s3[i] += w3[i] * d[i];
      }
    }
  }
  if (A->gx) {
    @T@* g = A->gx + b0 * P;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) g[i] = S1[i];
    for (int64_t j = 0; j < D; ++j) {
      const @T@* cj = S->c + j * PB;
      const @T@* s2 = S2 + (1 + j) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] += cj[i] * s2[i];
    }
    for (int64_t m = 0; m < M; ++m) {
      const @T@* cm = S->c + (D + m) * PB;
      const @T@* ca = S->c + A->pi[m] * PB;
      const @T@* cb = S->c + A->pj[m] * PB;
      const @T@* s2 = S2 + (1 + D + m) * PB;
      const @T@* s3 = S3 + (1 + D + m) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] += cm[i] * s2[i] + ca[i] * cb[i] * s3[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) g[i] *= S->du[i];
  }
  if (A->gX) {
    for (int64_t j = 0; j < D; ++j) {
      @T@* g = A->gX + (j * N + b0) * P;
      const @T@* s1 = S1 + (1 + j) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] = s1[i];
      for (int64_t m = 0; m < M; ++m) {
        const @T@* s2 = S2 + (1 + D + m) * PB;
        if (A->pi[m] == j) {
          const @T@* cb = S->c + A->pj[m] * PB;
#pragma omp simd
          for (int64_t i = 0; i < PB; ++i) g[i] += cb[i] * s2[i];
        }
        if (A->pj[m] == j) {
          const @T@* ca = S->c + A->pi[m] * PB;
#pragma omp simd
          for (int64_t i = 0; i < PB; ++i) g[i] += ca[i] * s2[i];
        }
      }
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] *= S->du[i];
    }
    for (int64_t m = 0; m < M; ++m) {
      @T@* g = A->gX + ((D + m) * N + b0) * P;
      const @T@* s1 = S1 + (1 + D + m) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] = s1[i] * S->du[i];
    }
  }
}

/* specialisations: prep and input gradients on K1 (1..KMAX), the gemms on R1 (2..RMAX) */
#define JK_@SUF@(K)                                                                 \
  static void jprep_k##K##_@SUF@(const jargs_@SUF@* A, int64_t b0, int o,             \
                                 jscratch_@SUF@* S) { jprep_@SUF@(A, b0, K, o, S); }  \
  static void jin_k##K##_@SUF@(const jargs_@SUF@* A, int64_t b0,                      \
                               jscratch_@SUF@* S) { jbwd_inputs_@SUF@(A, b0, K, S); }
JK_@SUF@(1) JK_@SUF@(2) JK_@SUF@(3) JK_@SUF@(4) JK_@SUF@(5) JK_@SUF@(6)
#define JR_@SUF@(R)                                                                       \
  static void jfg_r##R##_@SUF@(const jargs_@SUF@* A, int64_t b, int64_t off,                \
                               jscratch_@SUF@* S) { jfwd_gemm_@SUF@(A, b, off, R, S); }     \
  static void jbg_r##R##_@SUF@(const jargs_@SUF@* A, int64_t b, int64_t off,                \
                               jscratch_@SUF@* S, @T@* gt, int d) {                         \
    jbwd_gemm_@SUF@(A, b, off, R, S, gt, d); }
JR_@SUF@(2) JR_@SUF@(3) JR_@SUF@(4) JR_@SUF@(5) JR_@SUF@(6) JR_@SUF@(7) JR_@SUF@(8)
JR_@SUF@(9) JR_@SUF@(10)
typedef void (*jprep_t_@SUF@)(const jargs_@SUF@*, int64_t, int, jscratch_@SUF@*);
typedef void (*jin_t_@SUF@)(const jargs_@SUF@*, int64_t, jscratch_@SUF@*);
typedef void (*jfg_t_@SUF@)(const jargs_@SUF@*, int64_t, int64_t, jscratch_@SUF@*);
typedef void (*jbg_t_@SUF@)(const jargs_@SUF@*, int64_t, int64_t, jscratch_@SUF@*, @T@*, int);
static const jprep_t_@SUF@ JPREP_@SUF@[KMAX + 1] = {0, jprep_k1_@SUF@, jprep_k2_@SUF@,
    jprep_k3_@SUF@, jprep_k4_@SUF@, jprep_k5_@SUF@, jprep_k6_@SUF@};
static const jin_t_@SUF@ JIN_@SUF@[KMAX + 1] = {0, jin_k1_@SUF@, jin_k2_@SUF@, jin_k3_@SUF@,
    jin_k4_@SUF@, jin_k5_@SUF@, jin_k6_@SUF@};
static const jfg_t_@SUF@ JFG_@SUF@[RMAX + 1] = {0, 0, jfg_r2_@SUF@, jfg_r3_@SUF@,
    jfg_r4_@SUF@, jfg_r5_@SUF@, jfg_r6_@SUF@, jfg_r7_@SUF@, jfg_r8_@SUF@, jfg_r9_@SUF@,
    jfg_r10_@SUF@};
static const jbg_t_@SUF@ JBG_@SUF@[RMAX + 1] = {0, 0, jbg_r2_@SUF@, jbg_r3_@SUF@,
    jbg_r4_@SUF@, jbg_r5_@SUF@, jbg_r6_@SUF@, jbg_r7_@SUF@, jbg_r8_@SUF@, jbg_r9_@SUF@,
    jbg_r10_@SUF@};

/* scratch for blocks of L rows (L P ~ BLOCK_INPUTS inputs) */
static void jscratch_alloc_@SUF@(const jargs_@SUF@* A, int64_t L, jscratch_@SUF@* S,
                                 void** mem) {
  const int64_t P = A->P, K1 = A->K1, R1 = 1 + A->D + A->M, PB = L * P, KPB = K1 * PB;
  const size_t bytes = 2 * sizeof(int64_t) * PB
                       + sizeof(@T@) * (PB * (1 + R1) + 4 * KPB + 2 * R1 * KPB + 3 * R1 * PB
                                        + (K1 + R1 + 1) * PB);
  char* m = (char*)malloc(bytes);
  if (!m) abort();
  *mem = m;
  S->PB = PB;
  S->poff = (int64_t*)m;
  S->base = S->poff + PB;
  S->s = (@T@*)(S->base + PB);
  S->du = S->s + PB;
  S->c = S->du + PB;
  S->w = S->c + (R1 - 1) * PB;
  S->a = S->w + 4 * KPB;
  S->dot = S->a + R1 * KPB;
  S->sums = S->dot + R1 * KPB;
  S->tg = S->sums + 3 * R1 * PB;
  const int64_t nbq = (A->n + K1 - 1) * A->Q;
  for (int64_t i = 0; i < PB; ++i) S->poff[i] = (i % P) * nbq;
}

INLINE void jrange_@SUF@(int64_t N, int64_t* b0, int64_t* b1) {
  const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
  const int64_t chunk = (N + T - 1) / T;
  *b0 = t * chunk;
  *b1 = *b0 + chunk < N ? *b0 + chunk : N;
}

INLINE int64_t jblock_rows_@SUF@(int64_t P) { return P >= BLOCK_INPUTS ? 1 : BLOCK_INPUTS / P; }

void mlkan_jet_forward_@SUF@(const @T@* x, const @T@* X, const @T@* tab, @T@* Y, int64_t N,
                             int64_t P, int64_t n, int64_t K1, int64_t Q, int64_t D,
                             int64_t M, const int64_t* pi, const int64_t* pj,
                             const @T@* tables, @T@ lo, @T@ hi, @T@ h, int nthreads) {
  const jargs_@SUF@ A = {x, X, tab, 0, 0, tables, Y, 0, 0, 0, pi, pj, N, P, n, K1, Q, D, M,
                         lo, hi, h};
  const int64_t R1 = 1 + D + M, L = jblock_rows_@SUF@(P), qfull = Q - Q % VL_@SUF@;
  const int nt = N * P * K1 * R1 * Q < PAR_WORK ? 1 : nthreads;
#pragma omp parallel num_threads(nt)
  {
    int64_t b0, b1;
    jrange_@SUF@(N, &b0, &b1);
    if (b0 < b1) {
      jscratch_@SUF@ S;
      void* mem;
      jscratch_alloc_@SUF@(&A, L, &S, &mem);
      for (int64_t c0 = b0; c0 < b1; c0 += L) {
        const int64_t rows = b1 - c0 < L ? b1 - c0 : L;
        S.PB = rows * P;
        JPREP_@SUF@[K1](&A, c0, 3, &S);
        if (qfull)
          for (int64_t b = c0; b < c0 + rows; ++b) JFG_@SUF@[R1](&A, b, (b - c0) * P, &S);
        if (qfull < Q) jfwd_tail_@SUF@(&A, c0, rows, qfull, K1, R1, &S);
      }
      free(mem);
    }
  }
}

/* gtab (P (n + k), Q) must be zeroed by the caller; gx, gX or gtab may be NULL (skipped) */
void mlkan_jet_backward_@SUF@(const @T@* x, const @T@* X, const @T@* tab, const @T@* G,
                              const @T@* Gr, @T@* gx, @T@* gX, @T@* gtab, int64_t N, int64_t P,
                              int64_t n, int64_t K1, int64_t Q, int64_t D, int64_t M,
                              const int64_t* pi, const int64_t* pj, const @T@* tables, @T@ lo,
                              @T@ hi, @T@ h, int nthreads) {
  const jargs_@SUF@ A = {x, X, tab, G, Gr, tables, 0, gx, gX, gtab, pi, pj, N, P, n, K1, Q, D,
                         M, lo, hi, h};
  const int64_t R1 = 1 + D + M, size = P * (n + K1 - 1) * Q, L = jblock_rows_@SUF@(P);
  const int64_t qfull = Q - Q % VL_@SUF@;
  const int nt = N * P * K1 * R1 * Q < PAR_WORK ? 1 : nthreads;
  const int dots = gx != 0 || gX != 0;
  @T@* priv = gtab && nt > 1 ? (@T@*)calloc((size_t)(nt - 1) * size, sizeof(@T@)) : 0;
  if (gtab && nt > 1 && !priv) abort();
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num();
    @T@* mine = !gtab ? 0 : t == 0 ? gtab : priv + (t - 1) * size;
    int64_t b0, b1;
    jrange_@SUF@(N, &b0, &b1);
    if (b0 < b1) {
      jscratch_@SUF@ S;
      void* mem;
      jscratch_alloc_@SUF@(&A, L, &S, &mem);
      for (int64_t c0 = b0; c0 < b1; c0 += L) {
        const int64_t rows = b1 - c0 < L ? b1 - c0 : L;
        S.PB = rows * P;
        JPREP_@SUF@[K1](&A, c0, dots ? 4 : 3, &S);
        for (int64_t b = c0; b < c0 + rows; ++b)
          JBG_@SUF@[R1](&A, b, (b - c0) * P, &S, mine, dots);
        if (qfull < Q) jbwd_tail_@SUF@(&A, c0, rows, qfull, K1, R1, &S, mine, dots);
        if (dots) JIN_@SUF@[K1](&A, c0, &S);
      }
      free(mem);
    }
  }
  if (priv) {
    for (int64_t t = 0; t < nt - 1; ++t)
      for (int64_t i = 0; i < size; ++i) gtab[i] += priv[t * size + i];
    free(priv);
  }
}

/* ---------------------------------------------------------------- activations */
/* first, second and third derivatives (times scale) of the elementwise map of kind, from z
   and the torch-computed auxiliaries a (tanh: tanh z; sigmoid, silu: sigmoid z; sin: cos z)
   and b (sin: sin z) */
#define JBLOCK 128
INLINE void jact_derivs_@SUF@(int kind, @T@ scale, const @T@* restrict z,
                              const @T@* restrict a, const @T@* restrict b, int64_t len,
                              @T@* restrict f1, @T@* restrict f2, @T@* restrict f3) {
  switch (kind) {
    case 0: /* tanh */
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) {
        const @T@ t = a[e], d = 1 - t * t;
        f1[e] = scale * d, f2[e] = -2 * scale * t * d, f3[e] = -2 * scale * d * (1 - 3 * t * t);
      }
      break;
    case 1: /* sigmoid */
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) {
        const @T@ s = a[e], d = s * (1 - s);
        f1[e] = scale * d, f2[e] = scale * d * (1 - 2 * s);
        f3[e] = scale * d * (1 - 6 * s + 6 * s * s);
      }
      break;
    case 2: /* silu */
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) {
        const @T@ s = a[e], d = s * (1 - s), x = z[e];
        f1[e] = scale * (s + x * d), f2[e] = scale * d * (2 + x * (1 - 2 * s));
        f3[e] = scale * d * (3 * (1 - 2 * s) + x * (1 - 6 * s + 6 * s * s));
      }
      break;
    case 3: /* sin */
#pragma omp simd
      for (int64_t e = 0; e < len; ++e)
        f1[e] = scale * a[e], f2[e] = -scale * b[e], f3[e] = -scale * a[e];
      break;
    default: /* relu */
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) f1[e] = z[e] > 0 ? scale : 0, f2[e] = 0, f3[e] = 0;
      break;
  }
}

/* Y[i] = f1 X[i] (i < D), Y[D + m] = f1 X[D + m] + f2 X[I m] X[J m]; rows of E elements */
void mlkan_act_forward_@SUF@(int kind, @T@ scale, const @T@* z, const @T@* a, const @T@* b,
                             const @T@* X, @T@* Y, int64_t E, int64_t D, int64_t M,
                             const int64_t* pi, const int64_t* pj, int nthreads) {
  const int64_t nblocks = (E + JBLOCK - 1) / JBLOCK;
  const int nt = E * (D + M) < PAR_WORK ? 1 : nthreads;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t e0 = blk * JBLOCK, len = E - e0 < JBLOCK ? E - e0 : JBLOCK;
    @T@ f1[JBLOCK], f2[JBLOCK], f3[JBLOCK];
    jact_derivs_@SUF@(kind, scale, z + e0, a ? a + e0 : 0, b ? b + e0 : 0, len, f1, f2, f3);
    for (int64_t i = 0; i < D; ++i) {
      const @T@* restrict x = X + i * E + e0;
      @T@* restrict y = Y + i * E + e0;
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) y[e] = f1[e] * x[e];
    }
    for (int64_t m = 0; m < M; ++m) {
      const @T@* restrict x = X + (D + m) * E + e0;
      const @T@* xa = X + pi[m] * E + e0;
      const @T@* xb = X + pj[m] * E + e0;
      @T@* restrict y = Y + (D + m) * E + e0;
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) y[e] = f1[e] * x[e] + f2[e] * xa[e] * xb[e];
    }
  }
}

/* gz = sum_i f2 X[i] G[i] + sum_m (f2 X[D+m] + f3 X[I] X[J]) G[D+m],
   gX[i] = f1 G[i] + sum_m f2 G[D+m] ([I=i] X[J] + [J=i] X[I]), gX[D+m] = f1 G[D+m];
   gz or gX may be NULL (skipped) */
void mlkan_act_backward_@SUF@(int kind, @T@ scale, const @T@* z, const @T@* a, const @T@* b,
                              const @T@* X, const @T@* G, @T@* gz, @T@* gX, int64_t E,
                              int64_t D, int64_t M, const int64_t* pi, const int64_t* pj,
                              int nthreads) {
  const int64_t nblocks = (E + JBLOCK - 1) / JBLOCK;
  const int nt = E * (D + M) < PAR_WORK ? 1 : nthreads;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t e0 = blk * JBLOCK, len = E - e0 < JBLOCK ? E - e0 : JBLOCK;
    @T@ f1[JBLOCK], f2[JBLOCK], f3[JBLOCK], acc[JBLOCK];
    jact_derivs_@SUF@(kind, scale, z + e0, a ? a + e0 : 0, b ? b + e0 : 0, len, f1, f2, f3);
    for (int64_t e = 0; e < len; ++e) acc[e] = 0;
    for (int64_t i = 0; i < D; ++i) {
      const @T@* restrict x = X + i * E + e0;
      const @T@* restrict g = G + i * E + e0;
      if (gX) {
        @T@* restrict o = gX + i * E + e0;
#pragma omp simd
        for (int64_t e = 0; e < len; ++e) o[e] = f1[e] * g[e];
      }
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) acc[e] += f2[e] * x[e] * g[e];
    }
    for (int64_t m = 0; m < M; ++m) {
      const @T@* restrict x = X + (D + m) * E + e0;
      const @T@* xa = X + pi[m] * E + e0;
      const @T@* xb = X + pj[m] * E + e0;
      const @T@* restrict g = G + (D + m) * E + e0;
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) acc[e] += (f2[e] * x[e] + f3[e] * xa[e] * xb[e]) * g[e];
      if (gX) {
        @T@* restrict o = gX + (D + m) * E + e0;
        @T@* oa = gX + pi[m] * E + e0;
        @T@* ob = gX + pj[m] * E + e0;
#pragma omp simd
        for (int64_t e = 0; e < len; ++e) o[e] = f1[e] * g[e];
        for (int64_t e = 0; e < len; ++e) {
          const @T@ t = f2[e] * g[e];
          oa[e] += t * xb[e];
          ob[e] += t * xa[e];
        }
      }
    }
    if (gz) memcpy(gz + e0, acc, sizeof(@T@) * len);
  }
}
"""

C_SOURCE = (
    _C_HEADER
    + "".join(
        _C_TEMPLATE.replace("@T@", t).replace("@SUF@", suf)
        for t, suf in (("float", "f32"), ("double", "f64"))
    )
    + f"int mlkan_jet_version(void) {{ return {VERSION}; }}\n"
)

_P, _I = ctypes.c_void_p, ctypes.c_int64
#: the layer kernels' flags plus fused multiply-adds (ISO C mode turns contraction off) and
#: full-width vectors where the CPU has them
FLAGS = [*kernels_c.FLAGS, "-ffp-contract=fast", "-mprefer-vector-width=512"]


def build_key(cc: str) -> str:
    """sha256 of the source, flags, compiler and CPU (as ``kernels_c.build_key``)."""
    parts = [C_SOURCE, *FLAGS, cc, kernels_c._cpu_tag()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def build(verbose: bool = False) -> Path | None:
    """The verified library in the cache, compiled first if missing or corrupt; None when
    it cannot build."""
    cc = kernels_c._compiler()
    if cc is None:
        return None
    key = build_key(cc)
    path = kernels_c.cache_dir() / f"mlkan_jets_{key[:16]}.so"
    if cache_files.verify(path, key) is None:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache_files.build_lock(path):
        reason = cache_files.verify(path, key)
        if reason is None:
            return path
        if reason != "missing":
            cache_files.warn_rebuild(path, reason)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src, out = Path(tmp) / "mlkan_jets.c", Path(tmp) / path.name
            src.write_text(C_SOURCE)
            proc = subprocess.run(
                [cc, *FLAGS, str(src), "-o", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                if verbose:
                    print(proc.stderr)
                return None
            cache_files.install(out, path, key, cc=cc, flags=list(FLAGS))
    return path


@cache
def weight_tables(degree: int, dtype: torch.dtype) -> Tensor:
    """Horner tables of w^0..w^3 (``kernels.derivative_tables``), one row per order:
    (4, K1 K1 + 2 K1), CPU."""
    rows = [sum(derivative_tables(degree, d), []) for d in range(4)]
    return torch.tensor(rows, dtype=dtype)


@cache
def _pair_tensors(pairs: tuple[tuple[int, int], ...]) -> tuple[Tensor, Tensor]:
    i = torch.tensor([p[0] for p in pairs] or [0], dtype=torch.int64)
    j = torch.tensor([p[1] for p in pairs] or [0], dtype=torch.int64)
    return i, j


#: elementwise maps of ``act_forward`` / ``act_backward`` and their auxiliary inputs
ACTIVATION_KINDS = {"tanh": 0, "sigmoid": 1, "silu": 2, "sin": 3, "relu": 4}


class JetKernel:
    """The loaded library: the spline-layer jet (``forward``, ``backward``) and the
    elementwise jet (``act_forward``, ``act_backward``), operands checked before any
    pointer reaches C."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.lib, self.path = lib, path
        self._fns = {}
        for dtype, suf, scalar in (
            (torch.float32, "f32", ctypes.c_float),
            (torch.float64, "f64", ctypes.c_double),
        ):
            for op, args in (
                ("jet_forward", [_P] * 4 + [_I] * 7 + [_P] * 3 + [scalar] * 3),
                ("jet_backward", [_P] * 8 + [_I] * 7 + [_P] * 3 + [scalar] * 3),
                ("act_forward", [ctypes.c_int, scalar] + [_P] * 5 + [_I] * 3 + [_P] * 2),
                ("act_backward", [ctypes.c_int, scalar] + [_P] * 7 + [_I] * 3 + [_P] * 2),
            ):
                fn = getattr(lib, f"mlkan_{op}_{suf}")
                fn.argtypes, fn.restype = [*args, ctypes.c_int], None
                self._fns[op, dtype] = fn

    @staticmethod
    def check_act(kind: str, z: Tensor, aux: list[Tensor | None], X: Tensor, D: int, pairs):
        """ValueError unless the elementwise operands fit."""
        R = X.shape[0]
        ok = (
            kind in ACTIVATION_KINDS
            and z.dtype in (torch.float32, torch.float64)
            and all(
                t.dtype == z.dtype and t.is_cpu and t.is_contiguous() and t.shape == z.shape
                for t in [z, *(a for a in aux if a is not None)]
            )
            and X.dtype == z.dtype
            and X.is_cpu
            and X.is_contiguous()
            and X.shape == (R, *z.shape)
            and R == D + len(pairs)
            and all(0 <= i <= j < D for i, j in pairs)
            and (aux[0] is not None or kind == "relu")
            and (aux[1] is not None or kind != "sin")
        )
        if not ok:
            raise ValueError(
                f"jet kernel ({kind}): bad operands z {tuple(z.shape)} {z.dtype}, "
                f"X {tuple(X.shape)}, D {D}, pairs {pairs}"
            )

    def act_forward(self, kind, scale, z, aux, X, D: int, pairs) -> Tensor:
        """Derivative rows (R, N, W) of scale * f(z) from the input's rows X (R, N, W)."""
        self.check_act(kind, z, aux, X, D, pairs)
        pi, pj = _pair_tensors(tuple(pairs))
        Y = torch.empty_like(X)
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self._fns["act_forward", z.dtype](
            ACTIVATION_KINDS[kind], scale, z.data_ptr(), ptr(aux[0]), ptr(aux[1]),
            X.data_ptr(), Y.data_ptr(), z.numel(), D, len(pairs), pi.data_ptr(),
            pj.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        return Y

    def act_backward(self, kind, scale, z, aux, X, G, D: int, pairs, needs=(True, True)):
        """(grad z (N, W), grad X (R, N, W)) for the cotangent G of the rows (R, N, W)."""
        self.check_act(kind, z, aux, X, D, pairs)
        if G.shape != X.shape or G.dtype != X.dtype:
            raise ValueError(f"jet kernel ({kind}): cotangent {tuple(G.shape)} does not fit")
        G = G.contiguous()
        pi, pj = _pair_tensors(tuple(pairs))
        gz = torch.empty_like(z) if needs[0] else None
        gX = torch.empty_like(X) if needs[1] else None
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self._fns["act_backward", z.dtype](
            ACTIVATION_KINDS[kind], scale, z.data_ptr(), ptr(aux[0]), ptr(aux[1]),
            X.data_ptr(), G.data_ptr(), ptr(gz), ptr(gX), z.numel(), D, len(pairs),
            pi.data_ptr(), pj.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        return gz, gX

    @staticmethod
    def check(x: Tensor, X: Tensor, tab: Tensor, grid: Grid, D: int, pairs) -> None:
        """ValueError unless the operands fit one another and the C limits."""
        N, P = x.shape
        R = X.shape[0]
        ok = (
            x.dtype in (torch.float32, torch.float64)
            and all(t.dtype == x.dtype and t.is_cpu and t.is_contiguous() for t in (x, X, tab))
            and X.shape == (R, N, P)
            and R == D + len(pairs)
            and 1 <= R + 1 <= RMAX
            and 0 <= grid.degree < KMAX
            and tab.dim() == 2
            and tab.shape[0] == P * grid.num_basis
            and all(0 <= i <= j < D for i, j in pairs)
        )
        if not ok:
            raise ValueError(
                f"jet kernel: bad operands x {tuple(x.shape)} {x.dtype}, X {tuple(X.shape)}, "
                f"table {tuple(tab.shape)}, {grid}, D {D}, pairs {pairs}"
            )

    @staticmethod
    def _common(x: Tensor, tab: Tensor, grid: Grid, D: int, pairs) -> tuple:
        N, P = x.shape
        pi, pj = _pair_tensors(tuple(pairs))
        tables = weight_tables(grid.degree, x.dtype)
        ints = (N, P, grid.grid_size, grid.degree + 1, tab.shape[1], D, len(pairs))
        lo, hi = grid.grid_range
        return ints, (pi.data_ptr(), pj.data_ptr(), tables.data_ptr(), lo, hi, grid.h)

    def forward(self, x: Tensor, X: Tensor, tab: Tensor, grid: Grid, D: int, pairs) -> Tensor:
        """Y (1 + R, N, Q) of the layer with inputs x (N, P) and input rows X (R, N, P)."""
        self.check(x, X, tab, grid, D, pairs)
        ints, rest = self._common(x, tab, grid, D, pairs)
        Y = torch.empty((X.shape[0] + 1, x.shape[0], tab.shape[1]), dtype=x.dtype)
        self._fns["jet_forward", x.dtype](x.data_ptr(), X.data_ptr(), tab.data_ptr(), Y.data_ptr(),
                                          *ints, *rest, torch.get_num_threads())  # fmt: skip
        return Y

    def backward(
        self, x: Tensor, X: Tensor, tab: Tensor, G: Tensor, Gr: Tensor, grid: Grid, D: int,
        pairs, needs: Sequence[bool] = (True, True, True),
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # fmt: skip
        """(grad x (N, P), grad X (R, N, P), grad table) for the cotangents G (N, Q) of the
        value and Gr (R, N, Q) of the rows; the ones not in ``needs`` are None."""
        self.check(x, X, tab, grid, D, pairs)
        N, Q, R = x.shape[0], tab.shape[1], X.shape[0]
        if G.shape != (N, Q) or Gr.shape != (R, N, Q) or {G.dtype, Gr.dtype} != {x.dtype}:
            raise ValueError(f"jet kernel: cotangents {tuple(G.shape)}, {tuple(Gr.shape)}")
        G, Gr = G.contiguous(), Gr.contiguous()
        ints, rest = self._common(x, tab, grid, D, pairs)
        gx = torch.empty_like(x) if needs[0] else None
        gX = torch.empty_like(X) if needs[1] else None
        gt = torch.zeros_like(tab) if needs[2] else None
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self._fns["jet_backward", x.dtype](x.data_ptr(), X.data_ptr(), tab.data_ptr(),
                                           G.data_ptr(), Gr.data_ptr(), ptr(gx), ptr(gX),
                                           ptr(gt), *ints, *rest,
                                           torch.get_num_threads())  # fmt: skip
        return gx, gX, gt


_LOADED: JetKernel | None = None
_TRIED = False


def load(verbose: bool = False) -> JetKernel | None:
    """Build (if needed), verify and load the jet kernel once per process; None if
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
            lib = ctypes.CDLL(str(path))
            if lib.mlkan_jet_version() == VERSION:
                _LOADED = JetKernel(lib, path)
    except (OSError, AttributeError, subprocess.SubprocessError) as err:  # pragma: no cover
        if verbose:
            print(f"jet C kernel unavailable: {err}")
        _LOADED = None
    return _LOADED
