"""The change of basis B = A psi (METHOD.md 2, paper Fig. 1, 2): eigenvalues and
eigenvectors of A^T A, its condition growth, and the table of quoted values. These do not
depend on any record; the figures say so in their titles."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from .fmt import fmt_sci, md_table
from .style import figure, save

SPECTRA_N = 50
SPECTRA_DEGREES = (0, 2)
CONDITION_NS = (4, 8, 16, 32, 64, 128, 256)
CONDITION_DEGREES = (0, 1, 2, 3)
#: The paper's quoted condition numbers (METHOD.md section 2): (n, degree) -> value.
PAPER_CONDITION = {(10, 0): 175.0, (10, 2): 3e6, (100, 2): 6.5e11}
INDEPENDENT = "computed from the spline maths, the same for every profile"


def ata(n: int, degree: int):
    """A^T A of the change of basis on [0, 1] with h = 1/n (float64 tensor)."""
    from ..splines import Grid, change_of_basis

    A = change_of_basis(Grid(n, degree, (0.0, 1.0)), scaled=False)
    return A.T @ A


@functools.lru_cache(maxsize=64)
def condition_number(n: int, degree: int) -> float:
    """cond_2(A^T A) = (||A||_2 ||A^-1||_2)^2 (largest singular values only: accurate even
    where the smallest eigenvalue of A^T A is below round-off)."""
    from ..splines import Grid, change_of_basis, change_of_basis_inverse

    g = Grid(n, degree, (0.0, 1.0))
    A, Ainv = change_of_basis(g).numpy(), change_of_basis_inverse(g).numpy()
    return float(np.linalg.norm(A, 2) * np.linalg.norm(Ainv, 2)) ** 2


def eig(n: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Ascending eigenvalues and eigenvectors (columns; largest entry positive)."""
    import torch

    w, V = torch.linalg.eigh(ata(n, degree))
    V = V.numpy()
    idx = np.argmax(np.abs(V), axis=0)
    V = V * np.sign(V[idx, np.arange(V.shape[1])])
    return w.numpy(), V


def draw_spectra(path: Path) -> list[Path]:
    fig = figure(13, 7.2)
    axes = fig.subplots(len(SPECTRA_DEGREES), 3, squeeze=False)
    n = SPECTRA_N
    for row, k in enumerate(SPECTRA_DEGREES):
        w, V = eig(n, k)
        ax = axes[row][0]
        ax.semilogy(np.arange(1, len(w) + 1), w, "o-", ms=2.5)
        ax.set_title(f"degree {k}: eigenvalues of A^T A (n = {n}), ascending", fontsize=9)
        ax.set_xlabel("index")
        ax.grid(True, alpha=0.3)
        for col, (sel, name) in enumerate(((range(5), "first five"), (range(-5, 0), "last five"))):
            ax = axes[row][col + 1]
            for pos, i in enumerate(sel):
                j = i % len(w)
                ax.plot(
                    V[:, j] - 0.6 * pos,
                    lw=1.0,
                    label=f"v{j + 1} (lambda {fmt_sci(float(w[j]), 2)})",
                )
            ax.set_title(f"degree {k}: {name} eigenvectors (offset for clarity)", fontsize=9)
            ax.set_xlabel("basis index")
            ax.set_yticks([])
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
            ax.grid(True, alpha=0.3)
    fig.suptitle(
        "Change of basis B = A psi on uniform knots, h = 1/n: A^T A behaves like a 2(k+1)-th "
        f"derivative (smooth eigenvectors small, oscillatory ones large);\n{INDEPENDENT}",
        fontsize=9,
    )
    return save(fig, path)


def draw_condition_growth(path: Path) -> list[Path]:
    fig = figure(7.2, 4.6)
    ax = fig.subplots()
    ns = np.array(CONDITION_NS, dtype=float)
    for k in CONDITION_DEGREES:
        c = np.array([condition_number(int(n), k) for n in ns])
        (line,) = ax.loglog(ns, c, "o-", ms=3, label=f"degree {k}")
        ax.loglog(
            ns, c[-1] * (ns / ns[-1]) ** (2 * (k + 1)), ls=":", color=line.get_color(), lw=0.8
        )
    ax.set_xlabel("n (grid intervals, log)")
    ax.set_ylabel("cond(A^T A)")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(f"Condition growth (dotted: n^(2(k+1)));\n{INDEPENDENT}", fontsize=9)
    return save(fig, path)


def condition_table() -> list[str]:
    """Markdown: cond(A^T A) for n = 10, 50, 100 and degrees 0..3, the growth exponent
    measured between n = 64 and 128, and the paper's quoted values."""
    ns = (10, 50, 100)
    rows = []
    for k in CONDITION_DEGREES:
        conds = [condition_number(n, k) for n in ns]
        slope = math.log(condition_number(128, k) / condition_number(64, k)) / math.log(2)
        quoted = ", ".join(
            f"n={n}: {fmt_sci(v, 2)}" for (n, kk), v in sorted(PAPER_CONDITION.items()) if kk == k
        )
        rows.append(
            [
                str(k),
                *[fmt_sci(c) for c in conds],
                f"{slope:.2f} (expected {2 * (k + 1)})",
                quoted or "-",
            ]
        )
    return [
        "cond(A^T A) of the change of basis on uniform knots, h = 1/n "
        "(computed as (||A|| ||A^-1||)^2; plots `plots/ata_spectra.png`, "
        "`plots/condition_growth.png`):",
        "",
        *md_table(
            ["degree", *[f"n = {n}" for n in ns], "growth exponent (n 64->128)", "paper quotes"],
            rows,
        ),
    ]
