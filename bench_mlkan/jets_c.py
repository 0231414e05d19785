"""A fused C kernel for the jet of a spline layer (``jets.spline``), loaded with ctypes.

For one spline layer with inputs u[b, p] = (clamp(x) - a) / h in [0, n], the coefficient
table T (P (n + k), Q) (``kernels``' layout), R = D + M derivative multipliers
c[k, b, p] (c[k] = X_k du/dx for the D first and M second derivatives of the input) and
pairs (I[m], J[m]) of the first ones, the layer's function of input p on its cell, with
s = u - cell, is a polynomial f(s) = sum_j pc_j s^j (the cell's "power form", pc_j =
sum_r mono[j, r] T[p (n + k) + cell + r], ``monomial_table``). With its derivatives
F_d = d^d f / ds^d (vectors over the Q outputs) every output row of the jet is::

    Y[0, b]         = sum_p F_0                                  (value)
    Y[1 + i, b]     = sum_p c[i] F_1                             (first derivative, i < D)
    Y[1 + D + m, b] = sum_p c[D + m] F_1 + c[I m] c[J m] F_2     (second derivative m)

``forward`` computes Y (1 + R, N, Q) in one pass. Per input the weights are the s-powers
d^d/ds^d s^j (zero for j < d: skipped), so F_0, F_1, F_2 take 4 + 3 + 2 multiply-adds per
output vector for a cubic; the outputs are vectors of 64 bytes over power-table rows padded
to whole vectors (narrow outputs, Q below a quarter vector, run vectorised over inputs
instead). ``backward`` returns, for a cotangent G (1 + R, N, Q), the gradients with respect
to u, c and T in one pass: with E1 = sum_k c[k] G[1 + k] and E2 = sum_m c[I m] c[J m]
G[1 + D + m] the power-table gradient gets s^j G[0] + j s^(j-1) E1 + j (j-1) s^(j-2) E2,
and dL/du = G[0] . F_1 + E1 . F_2 + E2 . F_3, dL/dc[k] = G[1 + k] . F_1, dL/d(c c)[m] =
G[1 + D + m] . F_2: 1 + R + M lane sums per input (thread-private power-table gradients,
summed and mapped back onto T at the end). The pair is exact first-order calculus
(``torch.autograd.gradcheck`` in the tests); the jet route needs no double backward.

With ``squash`` the kernel also applies the models' squash y = shift + scale f(z) (f tanh
or sigmoid; x then holds f(z)) and its jet rule to its inputs, block by block, and chains
the backward through it: the squash's value and rows never exist as tensors.

The power form evaluates the same polynomial as the B-spline form in other operations: the
values agree with the model's forward to round-off (not bit for bit).

Build: as ``kernels_c`` (plain C, ``cc -O3 -march=native -fopenmp``, plus fused multiply-adds
and ``-fno-trapping-math`` so that floor() vectorises: ``FLAGS``), cached under
``$BENCH_MLKAN_CACHE`` with a verified sidecar through ``cache_files``); ``load()`` returns
None without a compiler or with ``BENCH_MLKAN_NO_C=1``, and ``jets`` then uses the
``kernels`` maps instead (same numbers to round-off, slower).
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
from .splines import Grid, _local_monomials

VERSION = 18
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
#define NARROW_BELOW 4  /* outputs Q with Q * NARROW_BELOW < VL run over inputs (measured) */
"""

_C_TEMPLATE = r"""
/* ============================ scalar_t = @T@ ============================ */
#define VL_@SUF@ (64 / (int64_t)sizeof(@T@)) /* outputs per register block */
typedef @T@ jvec_@SUF@ __attribute__((vector_size(64), aligned(sizeof(@T@))));

typedef struct {
  const @T@ *x, *X, *tab, *G, *Gr, *mono; /* G: value cotangent, Gr: the rows'; mono: below */
  @T@ *Y, *gx, *gX, *gtab;
  const int64_t *pi, *pj;
  int64_t N, P, n, K1, Q, D, M;
  int64_t Qp; /* row stride of the power table: Q, or Q padded to whole vectors */
  @T@ lo, hi, h;
  /* a squash in front of the layer (sq = 0 tanh, 1 sigmoid, -1 none): x holds t = f(z), the
     layer's input is sq_shift + sq_scale t, its rows X pass through f's jet rule */
  int sq;
  @T@ sq_shift, sq_scale;
} jargs_@SUF@;

/* per-thread scratch for a block of L batch rows b0 .. b0 + L - 1, laid out over the
   flattened inputs i = (b - b0) P + p < PB = L P (SoA: prep and input gradients vectorise
   over i whatever P) */
typedef struct {
  int64_t PB;
  int64_t* prow; /* (PB) p n of input i */
  int64_t* row;  /* (PB) p n + cell: the input's block of K1 power-table rows */
  @T@* s;        /* (PB) position in the cell */
  @T@* du;       /* (PB) d u / d x: 1 / h inside [lo, hi] (ends included), else 0 */
  @T@* c;        /* (R, PB) multipliers X[k, b, p] du: row 1 + k's factor of f' */
  @T@* cc;       /* (M, PB) c[I m] c[J m]: row 1 + D + m's factor of f'' */
  @T@* w;        /* (4, K1, PB) d^d/ds^d s^j */
  @T@* g;        /* (1 + 2 R1, PB) backward: dL/du, dL/dc (by row), dL/dcc (by row) */
  @T@* v;        /* (K1 + 2 R1 + 3, PB) the narrow paths' gathers, rows and sums */
  @T@* rows;     /* (R1, Qp) one batch row's outputs or cotangents, zero padded */
  @T@* sx;       /* squash: (PB) the layer's inputs, (R, PB) their rows, (3, PB) the scaled
                    derivatives f1, f2, f3 of f */
} jscratch_@SUF@;

/* the squash y = shift + scale f(z) of the block's inputs from t = f(z) (x) and the rows X:
   sx = y, its rows f1 X[k] (k < D) and f1 X[D + m] + f2 X[I m] X[J m], and f1, f2, f3 (the
   scaled derivatives of f, for the backward) */
INLINE void jsquash_@SUF@(const jargs_@SUF@* A, int64_t b0, jscratch_@SUF@* S) {
  const int64_t N = A->N, P = A->P, D = A->D, M = A->M, R = D + M, PB = S->PB;
  const @T@* tb = A->x + b0 * P;
  const @T@ shift = A->sq_shift, scale = A->sq_scale;
  @T@* restrict y = S->sx;
  @T@* restrict f1 = S->sx + (1 + R) * PB;
  @T@* restrict f2 = f1 + PB;
  @T@* restrict f3 = f2 + PB;
  if (A->sq == 0)
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) {
      const @T@ t = tb[i], d = 1 - t * t;
      y[i] = shift + scale * t;
      f1[i] = scale * d, f2[i] = -2 * scale * t * d, f3[i] = -2 * scale * d * (1 - 3 * t * t);
    }
  else
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) {
      const @T@ t = tb[i], d = t * (1 - t);
      y[i] = shift + scale * t;
      f1[i] = scale * d, f2[i] = scale * d * (1 - 2 * t);
      f3[i] = scale * d * (1 - 6 * t + 6 * t * t);
    }
  for (int64_t k = 0; k < R; ++k) {
    const @T@* Xk = A->X + (k * N + b0) * P;
    @T@* restrict o = S->sx + (1 + k) * PB;
    if (k < D)
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) o[i] = f1[i] * Xk[i];
    else {
      const @T@* Xa = A->X + (A->pi[k - D] * N + b0) * P;
      const @T@* Xb = A->X + (A->pj[k - D] * N + b0) * P;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) o[i] = f1[i] * Xk[i] + f2[i] * Xa[i] * Xb[i];
    }
  }
}

/* the squash's backward for the block: from gy (PB) and gY (R, PB), the cotangents of the
   layer's inputs and rows, gz = f1 gy + sum_k f2 X[k] gY[k] (k < D)
   + sum_m (f2 X[D + m] + f3 X[I] X[J]) gY[D + m], gX[k] = f1 gY[k]
   + sum_m f2 gY[D + m] ([I = k] X[J] + [J = k] X[I]), gX[D + m] = f1 gY[D + m] */
INLINE void jsquash_backward_@SUF@(const jargs_@SUF@* A, int64_t b0, const @T@* gy,
                                   const @T@* gY, const jscratch_@SUF@* S) {
  const int64_t N = A->N, P = A->P, D = A->D, M = A->M, R = D + M, PB = S->PB;
  const @T@* f1 = S->sx + (1 + R) * PB;
  const @T@* f2 = f1 + PB;
  const @T@* f3 = f2 + PB;
  if (A->gx) {
    @T@* restrict g = A->gx + b0 * P;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) g[i] = f1[i] * gy[i];
    for (int64_t k = 0; k < R; ++k) {
      const @T@* Xk = A->X + (k * N + b0) * P;
      const @T@* gk = gY + k * PB;
      if (k < D)
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) g[i] += f2[i] * Xk[i] * gk[i];
      else {
        const @T@* Xa = A->X + (A->pi[k - D] * N + b0) * P;
        const @T@* Xb = A->X + (A->pj[k - D] * N + b0) * P;
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i)
          g[i] += (f2[i] * Xk[i] + f3[i] * Xa[i] * Xb[i]) * gk[i];
      }
    }
  }
  if (A->gX) {
    for (int64_t k = 0; k < R; ++k) {
      @T@* restrict g = A->gX + (k * N + b0) * P;
      const @T@* gk = gY + k * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] = f1[i] * gk[i];
    }
    for (int64_t m = 0; m < M; ++m) {
      const @T@* gm = gY + (D + m) * PB;
      const int64_t a = A->pi[m], b = A->pj[m];
      const @T@* Xa = A->X + (a * N + b0) * P;
      const @T@* Xb = A->X + (b * N + b0) * P;
      @T@* restrict ga = A->gX + (a * N + b0) * P;
      @T@* restrict gb = A->gX + (b * N + b0) * P;
      if (a == b) /* a pure second derivative: d(X_a^2) = 2 X_a */
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) ga[i] += 2 * f2[i] * gm[i] * Xa[i];
      else {
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) ga[i] += f2[i] * gm[i] * Xb[i];
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) gb[i] += f2[i] * gm[i] * Xa[i];
      }
    }
  }
}

/* cells, weights of orders 0 .. orders-1 and multipliers of the block's inputs */
INLINE void jprep_@SUF@(const jargs_@SUF@* A, int64_t b0, const int64_t K1, int orders,
                        jscratch_@SUF@* S) {
  const int64_t N = A->N, P = A->P, n = A->n, D = A->D, M = A->M, PB = S->PB;
  const @T@* xb = A->x + b0 * P;
  if (A->sq >= 0) { /* the squash's jet: its value and rows become the layer's inputs */
    jsquash_@SUF@(A, b0, S);
    xb = S->sx;
  }
  const @T@ top = (@T@)(n - 1), lo = A->lo, hi = A->hi, h = A->h, inv = (@T@)1 / A->h;
  @T@* restrict s = S->s;
  @T@* restrict du = S->du;
  int64_t* restrict row = S->row;
  const int64_t* restrict prow = S->prow;
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
    row[i] = prow[i] + (int64_t)f;
    du[i] = (x >= lo) & (x <= hi) ? inv : (@T@)0;
  }
  for (int64_t k = 0; k < D + M; ++k) {
    const @T@* Xk = A->sq >= 0 ? S->sx + (1 + k) * PB : A->X + (k * N + b0) * P;
    @T@* ck = S->c + k * PB;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) ck[i] = Xk[i] * S->du[i];
  }
  for (int64_t m = 0; m < M; ++m) {
    const @T@* ca = S->c + A->pi[m] * PB;
    const @T@* cb = S->c + A->pj[m] * PB;
    @T@* cm = S->cc + m * PB;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) cm[i] = ca[i] * cb[i];
  }
  /* w[d, j] = d^d/ds^d s^j = j w[d - 1, j - 1] (0 for j < d) */
  for (int64_t j = 0; j < K1; ++j) {
    @T@* wj = S->w + j * PB;
    if (j == 0)
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) wj[i] = 1;
    else
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) wj[i] = wj[i - PB] * S->s[i];
  }
  for (int d = 1; d < orders; ++d)
    for (int64_t j = 0; j < K1; ++j) {
      @T@* wj = S->w + (d * K1 + j) * PB;
      const @T@ fj = (@T@)j;
      if (j < d)
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) wj[i] = 0;
      else {
        const @T@* prev = S->w + ((d - 1) * K1 + j - 1) * PB;
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) wj[i] = fj * prev[i];
      }
    }
}

/* sum of the lanes, pairwise */
INLINE @T@ jhsum_@SUF@(jvec_@SUF@ v) {
  @T@ t[VL_@SUF@];
  memcpy(t, &v, sizeof(v));
  for (int64_t w = VL_@SUF@ / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) t[j] += t[j + w];
  return t[0];
}

/* Y[k, b, :] for row b (inputs off + p of the block), whole vectors of columns: per input
   F_d = sum_r w^d_r T[row + r, :] (the layer's function and its derivatives at the input),
   Y[0] += F_0, Y[1 + j] += c_j F_1, Y[1 + D + m] also += cc_m F_2 */
INLINE void jfwd_row_@SUF@(const jargs_@SUF@* A, const @T@* tab, int64_t b, int64_t off,
                           const int64_t K1, const int64_t R1, const int64_t D,
                           jscratch_@SUF@* S) {
  const int64_t Qp = A->Qp, Q = A->Q, N = A->N, P = A->P, PB = S->PB;
  const int64_t VL = VL_@SUF@, KPB = K1 * PB;
  const @T@* w0 = S->w + off;
  const @T@* c = S->c + off;
  const @T@* cc = S->cc + off;
  const int64_t* row = S->row + off;
  for (int64_t q0 = 0; q0 < Qp; q0 += VL) {
    jvec_@SUF@ acc[RMAX];
    for (int64_t k = 0; k < R1; ++k) acc[k] = (jvec_@SUF@){0};
    for (int64_t p = 0; p < P; ++p) {
      const @T@* tb = tab + row[p] * K1 * Qp + q0;
      jvec_@SUF@ F1 = {0}, F2 = {0};
      for (int64_t j = 0; j < K1; ++j) { /* the zero weights (j < d) skipped */
        const jvec_@SUF@ t = *(const jvec_@SUF@*)(tb + j * Qp);
        const @T@* w = w0 + j * PB + p;
        acc[0] += w[0] * t;
        if (R1 > 1 && j >= 1) F1 += w[KPB] * t;
        if (R1 > 1 + D && j >= 2) F2 += w[2 * KPB] * t;
      }
      for (int64_t k = 1; k < R1; ++k) { /* whole loops over k keep acc in registers */
        acc[k] += c[(k - 1) * PB + p] * F1;
        if (k > D) acc[k] += cc[(k - 1 - D) * PB + p] * F2;
      }
    }
    for (int64_t k = 0; k < R1; ++k) *(jvec_@SUF@*)(S->rows + k * Qp + q0) = acc[k];
  }
  for (int64_t k = 0; k < R1; ++k)
    memcpy(A->Y + (k * N + b) * Q, S->rows + k * Qp, sizeof(@T@) * Q);
}

/* the backward of ``jfwd_row`` for row b: with E1 = sum_k c_k G[1 + k] and
   E2 = sum_m cc_m G[1 + D + m], gtab[row + r, :] += w^0_r G[0] + w^1_r E1 + w^2_r E2 and (dots)
   the input's dL/du = (G[0] . F_1 + E1 . F_2 + E2 . F_3), dL/dc_k = G[1 + k] . F_1,
   dL/dcc_m = G[1 + D + m] . F_2 */
INLINE void jbwd_row_@SUF@(const jargs_@SUF@* A, const @T@* tab, int64_t b, int64_t off,
                           const int64_t K1, const int64_t R1, const int64_t D,
                           jscratch_@SUF@* S, @T@* gtab, int dots) {
  const int64_t Qp = A->Qp, Q = A->Q, N = A->N, P = A->P, PB = S->PB;
  const int64_t VL = VL_@SUF@, KPB = K1 * PB;
  @T@* Gp = S->rows; /* (R1, Qp), the padding stays zero */
  memcpy(Gp, A->G + b * Q, sizeof(@T@) * Q);
  for (int64_t k = 1; k < R1; ++k)
    memcpy(Gp + k * Qp, A->Gr + ((k - 1) * N + b) * Q, sizeof(@T@) * Q);
  const @T@* w0 = S->w + off;
  const @T@* c = S->c + off;
  const @T@* cc = S->cc + off;
  const int64_t* row = S->row + off;
  for (int64_t p = 0; p < P; ++p) {
    const @T@* tb = tab + row[p] * K1 * Qp;
    @T@* ob = gtab ? gtab + row[p] * K1 * Qp : 0;
    jvec_@SUF@ au = {0}, a1[RMAX], a2[RMAX];
    for (int64_t k = 0; k < R1; ++k) a1[k] = (jvec_@SUF@){0}, a2[k] = (jvec_@SUF@){0};
    for (int64_t q0 = 0; q0 < Qp; q0 += VL) {
      jvec_@SUF@ G[RMAX], E1 = {0}, E2 = {0};
      for (int64_t k = 0; k < R1; ++k) G[k] = *(const jvec_@SUF@*)(Gp + k * Qp + q0);
      for (int64_t k = 1; k < R1; ++k) {
        E1 += c[(k - 1) * PB + p] * G[k];
        if (k > D) E2 += cc[(k - 1 - D) * PB + p] * G[k];
      }
      jvec_@SUF@ F1 = {0}, F2 = {0}, F3 = {0};
      for (int64_t j = 0; j < K1; ++j) { /* the zero weights (j < d) skipped */
        const @T@* w = w0 + j * PB + p;
        if (ob) {
          jvec_@SUF@* o = (jvec_@SUF@*)(ob + j * Qp + q0);
          jvec_@SUF@ v = *o + w[0] * G[0];
          if (R1 > 1 && j >= 1) v += w[KPB] * E1;
          if (R1 > 1 + D && j >= 2) v += w[2 * KPB] * E2;
          *o = v;
        }
        if (dots && j >= 1) {
          const jvec_@SUF@ t = *(const jvec_@SUF@*)(tb + j * Qp + q0);
          F1 += w[KPB] * t;
          if (R1 > 1 && j >= 2) F2 += w[2 * KPB] * t;
          if (R1 > 1 + D && j >= 3) F3 += w[3 * KPB] * t;
        }
      }
      if (dots) {
        au += G[0] * F1;
        if (R1 > 1) au += E1 * F2;
        if (R1 > 1 + D) au += E2 * F3;
        for (int64_t k = 1; k < R1; ++k) {
          a1[k] += G[k] * F1;
          if (k > D) a2[k] += G[k] * F2;
        }
      }
    }
    if (dots) {
      S->g[off + p] = jhsum_@SUF@(au);
      for (int64_t k = 1; k < R1; ++k) {
        S->g[k * PB + off + p] = jhsum_@SUF@(a1[k]);
        if (k > D) S->g[(R1 + k) * PB + off + p] = jhsum_@SUF@(a2[k]);
      }
    }
  }
}

/* narrow outputs (Q below a vector): ``jfwd_row`` for every row of the block, vectorised
   over the block's inputs i = (b - c0) P + p, one column at a time */
INLINE void jfwd_narrow_@SUF@(const jargs_@SUF@* A, const @T@* restrict tab, int64_t c0,
                              int64_t rows, const int64_t K1, const int64_t R1,
                              const int64_t D, jscratch_@SUF@* S) {
  const int64_t Q = A->Q, N = A->N, P = A->P, PB = S->PB, KPB = K1 * PB;
  const int64_t* restrict row = S->row;
  @T@* restrict F = S->v;              /* (3, PB) F_0, F_1, F_2 of column q */
  @T@* restrict y = F + 3 * PB;        /* (PB) one output row's terms */
  const int second = R1 > 1 + D;
  for (int64_t q = 0; q < Q; ++q) {
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) { /* one gather per coefficient for F_0, F_1, F_2 */
      @T@ f0 = 0, f1 = 0, f2 = 0;
      for (int64_t j = 0; j < K1; ++j) {
        const @T@ t = tab[(row[i] * K1 + j) * Q + q];
        f0 += S->w[j * PB + i] * t;
        if (j >= 1 && R1 > 1) f1 += S->w[KPB + j * PB + i] * t;
        if (j >= 2 && second) f2 += S->w[2 * KPB + j * PB + i] * t;
      }
      F[i] = f0, F[PB + i] = f1, F[2 * PB + i] = f2;
    }
    for (int64_t k = 0; k < R1; ++k) {
      const @T@* restrict ck = S->c + (k - 1) * PB;
      const @T@* restrict cck = S->cc + (k - 1 - D) * PB;
      if (k == 0)
        memcpy(y, F, sizeof(@T@) * PB);
      else if (k <= D)
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) y[i] = ck[i] * F[PB + i];
      else
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i) y[i] = ck[i] * F[PB + i] + cck[i] * F[2 * PB + i];
      for (int64_t lb = 0; lb < rows; ++lb) {
        @T@ t = 0;
        for (int64_t p = 0; p < P; ++p) t += y[lb * P + p];
        A->Y[(k * N + c0 + lb) * Q + q] = t;
      }
    }
  }
}

/* the backward of ``jfwd_narrow`` (as ``jbwd_row``, one column at a time) */
INLINE void jbwd_narrow_@SUF@(const jargs_@SUF@* A, const @T@* restrict tab, int64_t c0,
                              int64_t rows, const int64_t K1, const int64_t R1,
                              const int64_t D, jscratch_@SUF@* S, @T@* gtab, int dots) {
  const int64_t Q = A->Q, N = A->N, P = A->P, PB = S->PB, KPB = K1 * PB;
  const int64_t* restrict row = S->row;
  @T@* restrict Gi = S->v;               /* (R1, PB) G[k, b(i), q] */
  @T@* restrict E = Gi + R1 * PB;        /* (2, PB) E1, E2 */
  @T@* restrict v = E + 2 * PB;          /* (K1, PB) the table gradients' terms */
  @T@* restrict gu = S->g;
  const int second = R1 > 1 + D;
  if (dots)
    for (int64_t i = 0; i < (1 + 2 * R1) * PB; ++i) S->g[i] = 0;
  for (int64_t q = 0; q < Q; ++q) {
    for (int64_t k = 0; k < R1; ++k) {
      const @T@* Gk = k == 0 ? A->G : A->Gr + (k - 1) * N * Q;
      for (int64_t lb = 0; lb < rows; ++lb) {
        const @T@ g = Gk[(c0 + lb) * Q + q];
        for (int64_t p = 0; p < P; ++p) Gi[k * PB + lb * P + p] = g;
      }
    }
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) {
      @T@ e1 = 0, e2 = 0;
      for (int64_t k = 1; k < R1; ++k) {
        e1 += S->c[(k - 1) * PB + i] * Gi[k * PB + i];
        if (k > D) e2 += S->cc[(k - 1 - D) * PB + i] * Gi[k * PB + i];
      }
      E[i] = e1, E[PB + i] = e2;
    }
    if (gtab) {
      for (int64_t j = 0; j < K1; ++j)
#pragma omp simd
        for (int64_t i = 0; i < PB; ++i)
          v[j * PB + i] = S->w[j * PB + i] * Gi[i] + S->w[KPB + j * PB + i] * E[i]
                          + S->w[2 * KPB + j * PB + i] * E[PB + i];
      for (int64_t i = 0; i < PB; ++i) { /* the scatter: K1 rows of one cell per input */
        @T@* o = gtab + row[i] * K1 * Q + q;
        for (int64_t j = 0; j < K1; ++j) o[j * Q] += v[j * PB + i];
      }
    }
    if (dots)
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) {
        @T@ f1 = 0, f2 = 0, f3 = 0;
        for (int64_t j = 1; j < K1; ++j) {
          const @T@ t = tab[(row[i] * K1 + j) * Q + q];
          f1 += S->w[KPB + j * PB + i] * t;
          f2 += S->w[2 * KPB + j * PB + i] * t;
          f3 += S->w[3 * KPB + j * PB + i] * t;
        }
        gu[i] += Gi[i] * f1 + E[i] * f2 + (second ? E[PB + i] * f3 : 0);
        for (int64_t k = 1; k < R1; ++k) {
          S->g[k * PB + i] += Gi[k * PB + i] * f1;
          if (k > D) S->g[(R1 + k) * PB + i] += Gi[k * PB + i] * f2;
        }
      }
  }
}

/* grad x and grad X of the block's inputs from dL/du, dL/dc, dL/dcc (chain rule through
   c = X du and cc = c_I c_J) */
INLINE void jbwd_inputs_@SUF@(const jargs_@SUF@* A, int64_t b0, const int64_t R1,
                              const jscratch_@SUF@* S) {
  const int64_t N = A->N, P = A->P, D = A->D, M = A->M, PB = S->PB;
  const @T@* gc = S->g + PB;             /* dL/dc_k at (1 + k) PB */
  const @T@* gcc = S->g + (R1 + 1 + D) * PB; /* dL/dcc_m at m PB */
  /* with a squash: the layer's input cotangents into scratch, then through the squash */
  const int sq = A->sq >= 0;
  @T@* gxs = sq ? S->v : A->gx ? A->gx + b0 * P : 0;
  @T@* gXs = sq ? S->v + PB : A->gX;
  const int64_t rs = sq ? PB : N * P; /* row stride of gXs */
  const int64_t o0 = sq ? 0 : b0 * P;
  if (gxs) {
    @T@* g = gxs;
#pragma omp simd
    for (int64_t i = 0; i < PB; ++i) g[i] = S->g[i] * S->du[i];
  }
  if (gXs) {
    for (int64_t j = 0; j < D; ++j) {
      @T@* g = gXs + j * rs + o0;
      memcpy(g, gc + j * PB, sizeof(@T@) * PB);
      for (int64_t m = 0; m < M; ++m) {
        const @T@* s2 = gcc + m * PB;
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
      @T@* g = gXs + (D + m) * rs + o0;
      const @T@* s1 = gc + (D + m) * PB;
#pragma omp simd
      for (int64_t i = 0; i < PB; ++i) g[i] = s1[i] * S->du[i];
    }
  }
  if (sq) jsquash_backward_@SUF@(A, b0, gxs, gXs, S);
}

/* specialisations: prep on K1 (1..KMAX); the row and narrow kernels on R1 (1..RMAX), for
   cubic splines (K1 = 4) and any other K1 */
#define JK_@SUF@(K)                                                                 \
  static void jprep_k##K##_@SUF@(const jargs_@SUF@* A, int64_t b0, int o,             \
                                 jscratch_@SUF@* S) { jprep_@SUF@(A, b0, K, o, S); }
JK_@SUF@(1) JK_@SUF@(2) JK_@SUF@(3) JK_@SUF@(4) JK_@SUF@(5) JK_@SUF@(6)
typedef void (*jprep_t_@SUF@)(const jargs_@SUF@*, int64_t, int, jscratch_@SUF@*);
static const jprep_t_@SUF@ JPREP_@SUF@[KMAX + 1] = {0, jprep_k1_@SUF@, jprep_k2_@SUF@,
    jprep_k3_@SUF@, jprep_k4_@SUF@, jprep_k5_@SUF@, jprep_k6_@SUF@};
#define JRK_@SUF@(R, K, KV, DV)                                                               \
  static void jfr_r##R##K##_@SUF@(const jargs_@SUF@* A, const @T@* t, int64_t b, int64_t off, \
                                  jscratch_@SUF@* S) {                                        \
    jfwd_row_@SUF@(A, t, b, off, KV, R, DV, S); }                                             \
  static void jbr_r##R##K##_@SUF@(const jargs_@SUF@* A, const @T@* t, int64_t b, int64_t off, \
                                  jscratch_@SUF@* S, @T@* gt, int d) {                        \
    jbwd_row_@SUF@(A, t, b, off, KV, R, DV, S, gt, d); }                                      \
  static void jfn_r##R##K##_@SUF@(const jargs_@SUF@* A, const @T@* t, int64_t c0,            \
                                  int64_t rows, jscratch_@SUF@* S) {                          \
    jfwd_narrow_@SUF@(A, t, c0, rows, KV, R, DV, S); }                                        \
  static void jbn_r##R##K##_@SUF@(const jargs_@SUF@* A, const @T@* t, int64_t c0,            \
                                  int64_t rows, jscratch_@SUF@* S, @T@* gt, int d) {          \
    jbwd_narrow_@SUF@(A, t, c0, rows, KV, R, DV, S, gt, d); }
#define JR_@SUF@(R) JRK_@SUF@(R, c, 4, A->D) JRK_@SUF@(R, k, A->K1, A->D)
JR_@SUF@(1) JR_@SUF@(2) JR_@SUF@(3) JR_@SUF@(4) JR_@SUF@(5) JR_@SUF@(6) JR_@SUF@(7)
JR_@SUF@(8) JR_@SUF@(9) JR_@SUF@(10)
/* cubic with two directions (u_x, u_t or u_x, u_y) and 0..2 second derivatives: the PINN
   tasks' common case, compiled with D known */
JRK_@SUF@(3, d2, 4, 2) JRK_@SUF@(4, d2, 4, 2) JRK_@SUF@(5, d2, 4, 2)
typedef void (*jfr_t_@SUF@)(const jargs_@SUF@*, const @T@*, int64_t, int64_t, jscratch_@SUF@*);
typedef void (*jbr_t_@SUF@)(const jargs_@SUF@*, const @T@*, int64_t, int64_t, jscratch_@SUF@*,
                            @T@*, int);
typedef void (*jfn_t_@SUF@)(const jargs_@SUF@*, const @T@*, int64_t, int64_t, jscratch_@SUF@*);
typedef void (*jbn_t_@SUF@)(const jargs_@SUF@*, const @T@*, int64_t, int64_t, jscratch_@SUF@*,
                            @T@*, int);
#define JTAB_@SUF@(n, K) {0, n##_r1##K##_@SUF@, n##_r2##K##_@SUF@, n##_r3##K##_@SUF@,       \
  n##_r4##K##_@SUF@, n##_r5##K##_@SUF@, n##_r6##K##_@SUF@, n##_r7##K##_@SUF@,              \
  n##_r8##K##_@SUF@, n##_r9##K##_@SUF@, n##_r10##K##_@SUF@}
#define JTAB_D2_@SUF@(n) {0, n##_r1c_@SUF@, n##_r2c_@SUF@, n##_r3d2_@SUF@, n##_r4d2_@SUF@, \
  n##_r5d2_@SUF@, n##_r6c_@SUF@, n##_r7c_@SUF@, n##_r8c_@SUF@, n##_r9c_@SUF@, n##_r10c_@SUF@}
/* [0: any K1, 1: cubic, 2: cubic with D = 2][R1] */
static const jfr_t_@SUF@ JFR_@SUF@[3][RMAX + 1] = {JTAB_@SUF@(jfr, k), JTAB_@SUF@(jfr, c),
                                                 JTAB_D2_@SUF@(jfr)};
static const jbr_t_@SUF@ JBR_@SUF@[3][RMAX + 1] = {JTAB_@SUF@(jbr, k), JTAB_@SUF@(jbr, c),
                                                 JTAB_D2_@SUF@(jbr)};
static const jfn_t_@SUF@ JFN_@SUF@[3][RMAX + 1] = {JTAB_@SUF@(jfn, k), JTAB_@SUF@(jfn, c),
                                                 JTAB_D2_@SUF@(jfn)};
static const jbn_t_@SUF@ JBN_@SUF@[3][RMAX + 1] = {JTAB_@SUF@(jbn, k), JTAB_@SUF@(jbn, c),
                                                 JTAB_D2_@SUF@(jbn)};
INLINE int jvariant_@SUF@(int64_t K1, int64_t D) { return K1 != 4 ? 0 : D == 2 ? 2 : 1; }

/* narrow outputs run over inputs, the others over whole vectors of columns */
INLINE int jnarrow_@SUF@(int64_t Q) { return Q * NARROW_BELOW < VL_@SUF@; }

/* scratch for blocks of L rows (L P ~ BLOCK_INPUTS inputs) */
static void jscratch_alloc_@SUF@(const jargs_@SUF@* A, int64_t L, jscratch_@SUF@* S,
                                 void** mem) {
  const int64_t P = A->P, K1 = A->K1, R1 = 1 + A->D + A->M, PB = L * P;
  const size_t nreal = PB * (2 + (R1 - 1) + A->M + 4 * K1 + (1 + 2 * R1)
                             + (K1 + 2 * R1 + 3) + (R1 + 3)) + R1 * A->Qp;
  char* m = (char*)calloc(2 * sizeof(int64_t) * PB + sizeof(@T@) * nreal + 64, 1);
  if (!m) abort();
  *mem = m;
  S->PB = PB;
  S->prow = (int64_t*)m;
  S->row = S->prow + PB;
  S->rows = (@T@*)(S->row + PB);
  S->s = S->rows + R1 * A->Qp;
  S->du = S->s + PB;
  S->c = S->du + PB;
  S->cc = S->c + (R1 - 1) * PB;
  S->w = S->cc + A->M * PB;
  S->g = S->w + 4 * K1 * PB;
  S->v = S->g + (1 + 2 * R1) * PB;
  S->sx = S->v + (K1 + 2 * R1 + 3) * PB;
  for (int64_t i = 0; i < PB; ++i) S->prow[i] = (i % P) * A->n;
}

INLINE void jrange_@SUF@(int64_t N, int64_t* b0, int64_t* b1) {
  const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
  const int64_t chunk = (N + T - 1) / T;
  *b0 = t * chunk;
  *b1 = *b0 + chunk < N ? *b0 + chunk : N;
}

INLINE int64_t jblock_rows_@SUF@(int64_t P) { return P >= BLOCK_INPUTS ? 1 : BLOCK_INPUTS / P; }

/* the power table (P n K1, Qp): row (p n + cell) K1 + j holds the coefficients of s^j of the
   spline on that cell, pc_j = sum_r mono[j, r] T[p (n + k) + cell + r] (zero padded) */
static @T@* jpower_table_@SUF@(const jargs_@SUF@* A) {
  const int64_t P = A->P, n = A->n, K1 = A->K1, Q = A->Q, Qp = A->Qp, nb = n + K1 - 1;
  @T@* t = (@T@*)calloc((size_t)(P * n * K1 * Qp), sizeof(@T@));
  if (!t) abort();
  for (int64_t p = 0; p < P; ++p)
    for (int64_t cell = 0; cell < n; ++cell)
      for (int64_t j = 0; j < K1; ++j) {
        @T@* o = t + ((p * n + cell) * K1 + j) * Qp;
        for (int64_t r = 0; r < K1; ++r) {
          const @T@ m = A->mono[j * K1 + r];
          const @T@* src = A->tab + (p * nb + cell + r) * Q;
          if (m != 0)
            for (int64_t q = 0; q < Q; ++q) o[q] += m * src[q];
        }
      }
  return t;
}

void mlkan_jet_forward_@SUF@(const @T@* x, const @T@* X, const @T@* tab, @T@* Y, int64_t N,
                             int64_t P, int64_t n, int64_t K1, int64_t Q, int64_t D,
                             int64_t M, const int64_t* pi, const int64_t* pj,
                             const @T@* mono, @T@ lo, @T@ hi, @T@ h, int sq, @T@ sq_shift,
                             @T@ sq_scale, int nthreads) {
  const int narrow = jnarrow_@SUF@(Q);
  const int64_t VL = VL_@SUF@, Qp = narrow ? Q : (Q + VL - 1) / VL * VL;
  const jargs_@SUF@ A = {x, X, tab, 0, 0, mono, Y, 0, 0, 0, pi, pj, N, P, n, K1, Q, D, M,
                         Qp, lo, hi, h, sq, sq_shift, sq_scale};
  const int64_t R1 = 1 + D + M, L = jblock_rows_@SUF@(P);
  const int nt = N * P * K1 * R1 * Q < PAR_WORK ? 1 : nthreads;
  @T@* pt = jpower_table_@SUF@(&A);
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
        JPREP_@SUF@[K1](&A, c0, R1 > 1 + D ? 3 : R1 > 1 ? 2 : 1, &S);
        if (narrow)
          JFN_@SUF@[jvariant_@SUF@(K1, D)][R1](&A, pt, c0, rows, &S);
        else
          for (int64_t b = c0; b < c0 + rows; ++b)
            JFR_@SUF@[jvariant_@SUF@(K1, D)][R1](&A, pt, b, (b - c0) * P, &S);
      }
      free(mem);
    }
  }
  free(pt);
}

/* gtab (P (n + k), Q) must be zeroed by the caller; gx, gX or gtab may be NULL (skipped) */
void mlkan_jet_backward_@SUF@(const @T@* x, const @T@* X, const @T@* tab, const @T@* G,
                              const @T@* Gr, @T@* gx, @T@* gX, @T@* gtab, int64_t N, int64_t P,
                              int64_t n, int64_t K1, int64_t Q, int64_t D, int64_t M,
                              const int64_t* pi, const int64_t* pj, const @T@* mono, @T@ lo,
                              @T@ hi, @T@ h, int sq, @T@ sq_shift, @T@ sq_scale,
                              int nthreads) {
  const int narrow = jnarrow_@SUF@(Q);
  const int64_t VL = VL_@SUF@, Qp = narrow ? Q : (Q + VL - 1) / VL * VL;
  const jargs_@SUF@ A = {x, X, tab, G, Gr, mono, 0, gx, gX, gtab, pi, pj, N, P, n, K1, Q, D,
                         M, Qp, lo, hi, h, sq, sq_shift, sq_scale};
  const int64_t R1 = 1 + D + M, L = jblock_rows_@SUF@(P), nb = n + K1 - 1;
  const int64_t size = P * n * K1 * Qp; /* one power-table gradient */
  const int nt = N * P * K1 * R1 * Q < PAR_WORK ? 1 : nthreads;
  const int dots = gx != 0 || gX != 0;
  @T@* pt = dots ? jpower_table_@SUF@(&A) : 0;
  /* per-thread gradients of the power table, mapped onto gtab at the end */
  @T@* priv = gtab ? (@T@*)calloc((size_t)(nt * size), sizeof(@T@)) : 0;
  if (gtab && !priv) abort();
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num();
    @T@* mine = priv ? priv + t * size : 0;
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
        if (narrow)
          JBN_@SUF@[jvariant_@SUF@(K1, D)][R1](&A, pt, c0, rows, &S, mine, dots);
        else
          for (int64_t b = c0; b < c0 + rows; ++b)
            JBR_@SUF@[jvariant_@SUF@(K1, D)][R1](&A, pt, b, (b - c0) * P, &S, mine, dots);
        if (dots) jbwd_inputs_@SUF@(&A, c0, R1, &S);
      }
      free(mem);
    }
  }
  if (priv) {
    for (int64_t t = 1; t < nt; ++t)
      for (int64_t e = 0; e < size; ++e) priv[e] += priv[t * size + e];
    /* gtab[p (n + k) + cell + r] += sum_j mono[j, r] gpc[(p n + cell) K1 + j] */
    for (int64_t p = 0; p < P; ++p)
      for (int64_t cell = 0; cell < n; ++cell)
        for (int64_t j = 0; j < K1; ++j) {
          const @T@* src = priv + ((p * n + cell) * K1 + j) * Qp;
          for (int64_t r = 0; r < K1; ++r) {
            const @T@ m = mono[j * K1 + r];
            @T@* o = gtab + (p * nb + cell + r) * Q;
            if (m != 0)
              for (int64_t q = 0; q < Q; ++q) o[q] += m * src[q];
          }
        }
    free(priv);
  }
  free(pt);
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

/* gz = sum_i f2 X[i] G[i] + sum_m (f2 X[D+m] + f3 X[I] X[J]) G[D+m] (+ f1 Gv: the value's
   cotangent, when given), gX[i] = f1 G[i] + sum_m f2 G[D+m] ([I=i] X[J] + [J=i] X[I]),
   gX[D+m] = f1 G[D+m]; gz, gX or Gv may be NULL (skipped) */
void mlkan_act_backward_@SUF@(int kind, @T@ scale, const @T@* z, const @T@* a, const @T@* b,
                              const @T@* X, const @T@* G, const @T@* Gv, @T@* gz, @T@* gX,
                              int64_t E,
                              int64_t D, int64_t M, const int64_t* pi, const int64_t* pj,
                              int nthreads) {
  const int64_t nblocks = (E + JBLOCK - 1) / JBLOCK;
  const int nt = E * (D + M) < PAR_WORK ? 1 : nthreads;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t e0 = blk * JBLOCK, len = E - e0 < JBLOCK ? E - e0 : JBLOCK;
    @T@ f1[JBLOCK], f2[JBLOCK], f3[JBLOCK], acc[JBLOCK];
    jact_derivs_@SUF@(kind, scale, z + e0, a ? a + e0 : 0, b ? b + e0 : 0, len, f1, f2, f3);
    if (Gv)
#pragma omp simd
      for (int64_t e = 0; e < len; ++e) acc[e] = f1[e] * Gv[e0 + e];
    else
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
        @T@* restrict oa = gX + pi[m] * E + e0;
        @T@* restrict ob = gX + pj[m] * E + e0;
#pragma omp simd
        for (int64_t e = 0; e < len; ++e) o[e] = f1[e] * g[e];
        if (pi[m] == pj[m]) /* a pure second derivative: d(x_a^2) = 2 x_a */
#pragma omp simd
          for (int64_t e = 0; e < len; ++e) oa[e] += 2 * f2[e] * g[e] * xa[e];
        else {
#pragma omp simd
          for (int64_t e = 0; e < len; ++e) oa[e] += f2[e] * g[e] * xb[e];
#pragma omp simd
          for (int64_t e = 0; e < len; ++e) ob[e] += f2[e] * g[e] * xa[e];
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
FLAGS = [*kernels_c.FLAGS, "-ffp-contract=fast", "-fno-trapping-math", "-mprefer-vector-width=512"]


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
def monomial_table(degree: int, dtype: torch.dtype) -> Tensor:
    """(K1, K1), CPU: entry [j, r] is the coefficient of s^j of the local B-spline r on a
    cell (``splines._local_monomials``), so sum_r T[cell + r] B_r(s) = sum_j pc_j s^j with
    pc_j = sum_r mono[j, r] T[cell + r]."""
    return torch.tensor(_local_monomials(degree), dtype=dtype)


@cache
def _pair_tensors(pairs: tuple[tuple[int, int], ...]) -> tuple[Tensor, Tensor]:
    i = torch.tensor([p[0] for p in pairs] or [0], dtype=torch.int64)
    j = torch.tensor([p[1] for p in pairs] or [0], dtype=torch.int64)
    return i, j


#: squashes the spline kernel can apply to its inputs (``forward``'s ``squash``)
SQUASH_KINDS = {"tanh": 0, "sigmoid": 1}

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
            sq = [ctypes.c_int, scalar, scalar]  # the squash in front (kind, shift, scale)
            for op, args in (
                ("jet_forward", [_P] * 4 + [_I] * 7 + [_P] * 3 + [scalar] * 3 + sq),
                ("jet_backward", [_P] * 8 + [_I] * 7 + [_P] * 3 + [scalar] * 3 + sq),
                ("act_forward", [ctypes.c_int, scalar] + [_P] * 5 + [_I] * 3 + [_P] * 2),
                ("act_backward", [ctypes.c_int, scalar] + [_P] * 8 + [_I] * 3 + [_P] * 2),
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

    def act_backward(
        self, kind, scale, z, aux, X, G, D: int, pairs, needs=(True, True),
        value_grad: Tensor | None = None,
    ):  # fmt: skip
        """(grad z (N, W), grad X (R, N, W)) for the cotangent G of the rows (R, N, W) and,
        when given, ``value_grad`` (N, W) of the value shift + scale f(z)."""
        self.check_act(kind, z, aux, X, D, pairs)
        if G.shape != X.shape or G.dtype != X.dtype:
            raise ValueError(f"jet kernel ({kind}): cotangent {tuple(G.shape)} does not fit")
        if value_grad is not None and (value_grad.shape != z.shape or value_grad.dtype != z.dtype):
            raise ValueError(f"jet kernel ({kind}): value cotangent {tuple(value_grad.shape)}")
        G = G.contiguous()
        Gv = None if value_grad is None else value_grad.contiguous()
        pi, pj = _pair_tensors(tuple(pairs))
        gz = torch.empty_like(z) if needs[0] else None
        gX = torch.empty_like(X) if needs[1] else None
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self._fns["act_backward", z.dtype](
            ACTIVATION_KINDS[kind], scale, z.data_ptr(), ptr(aux[0]), ptr(aux[1]),
            X.data_ptr(), G.data_ptr(), ptr(Gv), ptr(gz), ptr(gX), z.numel(), D, len(pairs),
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
    def _common(x: Tensor, tab: Tensor, grid: Grid, D: int, pairs, squash) -> tuple:
        N, P = x.shape
        pi, pj = _pair_tensors(tuple(pairs))
        tables = monomial_table(grid.degree, x.dtype)
        ints = (N, P, grid.grid_size, grid.degree + 1, tab.shape[1], D, len(pairs))
        lo, hi = grid.grid_range
        sq = (-1, 0.0, 1.0) if squash is None else (SQUASH_KINDS[squash[0]], *squash[1:])
        return ints, (pi.data_ptr(), pj.data_ptr(), tables.data_ptr(), lo, hi, grid.h, *sq)

    def forward(
        self, x: Tensor, X: Tensor, tab: Tensor, grid: Grid, D: int, pairs, squash=None
    ) -> Tensor:
        """Y (1 + R, N, Q) of the layer with inputs x (N, P) and input rows X (R, N, P);
        ``squash`` (name, shift, scale): the layer's input is shift + scale f(z) with
        x = f(z) (f tanh or sigmoid) and rows X of z (the squash's jet is applied inside)."""
        self.check(x, X, tab, grid, D, pairs)
        ints, rest = self._common(x, tab, grid, D, pairs, squash)
        Y = torch.empty((X.shape[0] + 1, x.shape[0], tab.shape[1]), dtype=x.dtype)
        self._fns["jet_forward", x.dtype](x.data_ptr(), X.data_ptr(), tab.data_ptr(), Y.data_ptr(),
                                          *ints, *rest, torch.get_num_threads())  # fmt: skip
        return Y

    def backward(
        self, x: Tensor, X: Tensor, tab: Tensor, G: Tensor, Gr: Tensor, grid: Grid, D: int,
        pairs, needs: Sequence[bool] = (True, True, True), squash=None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # fmt: skip
        """(grad x (N, P), grad X (R, N, P), grad table) for the cotangents G (N, Q) of the
        value and Gr (R, N, Q) of the rows; the ones not in ``needs`` are None. With a
        ``squash`` (as ``forward``), grad x is the gradient with respect to z."""
        self.check(x, X, tab, grid, D, pairs)
        N, Q, R = x.shape[0], tab.shape[1], X.shape[0]
        if G.shape != (N, Q) or Gr.shape != (R, N, Q) or {G.dtype, Gr.dtype} != {x.dtype}:
            raise ValueError(f"jet kernel: cotangents {tuple(G.shape)}, {tuple(Gr.shape)}")
        G, Gr = G.contiguous(), Gr.contiguous()
        ints, rest = self._common(x, tab, grid, D, pairs, squash)
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
