"""Operand checks of the spline kernels: metadata only (shape, dtype, device, strides).

Every kernel map reads its operands by position (the C kernel through raw pointers), so an
operand that does not fit the coefficient table must be refused *before* any index is
computed: a wrong width would otherwise read or write past the table. The checks look at
tensor metadata only (no values, so no device synchronisation) and raise ``ValueError``
naming the expected and the actual shapes.

Shapes (``nb`` = n + k, from the ``LocalSpec``):

    contract(c, u, T):  c (B, P) or None, u (B, P), T (P nb, Q)  ->  (B, Q)
    sample(g, u, T):    g (B, Q),         u (B, P), T (P nb, Q)  ->  (B, P)
    scatter(c, u, g):   c (B, P) or None, u (B, P), g (B, Q)     ->  (rows = P nb, Q)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _fail(op: str, msg: str) -> None:
    raise ValueError(f"spline kernel {op}: {msg}")


def check_map_operands(
    op: str,
    first: Tensor | None,
    u: Tensor,
    second: Tensor,
    spec: Any,
    rows: int | None = None,
    contiguous: bool = True,
) -> None:
    """Raise ValueError unless the operands of map ``op`` fit each other and ``spec``.

    Args:
        op: "contract" (first = c or None, second = T), "sample" (first = g, second = T) or
            "scatter" (first = c or None, second = g, ``rows`` = P nb).
        u: (B, P) cell coordinates; spec: a ``kernels.LocalSpec`` (grid_size, degree,
            dtype and its ``tables`` on the operands' device).
        contiguous: also require row-major contiguous operands (what the maps need).
    """
    if _fits(op, first, u, second, spec, rows, contiguous):
        return
    _diagnose(op, first, u, second, spec, rows, contiguous)
    raise ValueError(f"spline kernel {op}: operands do not fit")  # pragma: no cover


def _fits(op, first, u, second, spec, rows, contiguous) -> bool:
    """The fast path: one pass over the metadata, no message building (~0.5 us)."""
    us, ss = u.shape, second.shape
    if len(us) != 2 or len(ss) != 2:
        return False
    B, P = us
    dtype, device = u.dtype, u.device
    if spec.dtype is not dtype or spec.table_device != device or second.dtype is not dtype:
        return False
    if second.device != device or not dtype.is_floating_point:
        return False
    nb = spec.grid_size + spec.degree
    if op == "scatter":
        if rows != P * nb or ss[0] != B:
            return False
    elif ss[0] != P * nb:
        return False
    if first is not None:
        if first.shape != ((B, ss[1]) if op == "sample" else us):
            return False
        if first.dtype is not dtype or first.device != device:
            return False
        if contiguous and not first.is_contiguous():
            return False
    elif op == "sample":
        return False
    return not contiguous or (u.is_contiguous() and second.is_contiguous())


def _diagnose(op, first, u, second, spec, rows, contiguous) -> None:
    """Raise the ValueError that says what does not fit."""
    if u.dim() != 2:
        _fail(op, f"u must be 2-D (batch, P), got shape {_shape(u)}")
    B, P = u.shape
    nb = spec.grid_size + spec.degree
    if second.dim() != 2:
        name = "g" if op == "scatter" else "T"
        _fail(op, f"{name} must be 2-D, got shape {_shape(second)}")
    Q = second.shape[1]
    if op == "scatter":
        if rows != P * nb:
            _fail(op, f"rows = {rows}, expected P (n + k) = {P * nb} for u of shape {(B, P)}")
        if second.shape[0] != B:
            _fail(op, f"g has shape {_shape(second)}, expected (batch, Q) = ({B}, Q)")
    elif second.shape[0] != P * nb:
        _fail(
            op,
            f"T has shape {_shape(second)}, expected (P (n + k), Q) = ({P * nb}, Q) for u of "
            f"shape {(B, P)} with n = {spec.grid_size}, k = {spec.degree}",
        )
    if op == "sample":
        if first is None or _shape(first) != (B, Q):
            got = None if first is None else _shape(first)
            _fail(op, f"g has shape {got}, expected (batch, Q) = {(B, Q)}")
    elif first is not None and _shape(first) != (B, P):
        _fail(op, f"c has shape {_shape(first)}, expected (batch, P) = {(B, P)}")
    dtype, device = u.dtype, u.device
    if not dtype.is_floating_point:
        _fail(op, f"u must be floating point, got {dtype}")
    table = spec.tables[0]
    if spec.dtype != table.dtype or spec.table_device != table.device:
        _fail(op, f"spec says {spec.dtype} on {spec.table_device}, its tables are not")
    for name, t in (("c" if op != "sample" else "g", first), ("", second), ("spec", table)):
        if t is None:
            continue
        name = name or ("g" if op == "scatter" else "T")
        if t.dtype != dtype:
            _fail(op, f"{name} has dtype {t.dtype}, u has {dtype}")
        if t.device != device:
            _fail(op, f"{name} is on {t.device}, u on {device}")
    if contiguous:
        for name, t in (("u", u), ("c/g", first), ("T/g", second)):
            if t is not None and not t.is_contiguous():
                _fail(op, f"{name} of shape {_shape(t)} is not contiguous (stride {t.stride()})")


def check_layer_operands(x: Tensor, coef: Tensor, num_basis: int) -> None:
    """Raise ValueError unless x (batch, P) fits coef (Q, P, n + k) (same dtype, device)."""
    if coef.dim() != 3 or coef.shape[2] != num_basis:
        raise ValueError(
            f"spline layer: coef has shape {_shape(coef)}, expected (Q, P, n + k) with "
            f"n + k = {num_basis}"
        )
    if x.dim() != 2 or x.shape[1] != coef.shape[1]:
        raise ValueError(
            f"spline layer: input has shape {_shape(x)}, expected (batch, {coef.shape[1]}) "
            f"for coef of shape {_shape(coef)}"
        )
    if x.dtype != coef.dtype or not x.dtype.is_floating_point:
        raise ValueError(f"spline layer: input dtype {x.dtype}, coef dtype {coef.dtype}")
    if x.device != coef.device:
        raise ValueError(f"spline layer: input on {x.device}, coef on {coef.device}")


def is_c_compatible(t: Tensor) -> bool:
    """CPU float32/float64 (what the C kernel reads)."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
