"""Reference solution of the 1-D Allen-Cahn equation (METHOD.md 5.4, standard signs)::

    u_t = eps u_xx + 5 u - 5 u^3,   x in [-1, 1] periodic, t in [0, 1],   eps = 1e-4,
    u(x, 0) = x^2 cos(pi x).

Reference: Fourier pseudo-spectral in x, ETDRK4 in time (Cox & Matthews 2002) with the
contour-integral coefficients of Kassam & Trefethen (2005), linear part
L = -eps (pi m)^2 + 5, nonlinear part -5 u^3 evaluated on a 2x zero-padded grid (exact
dealiasing of the cubic). Warning: the periodic extension of u0 has a derivative jump of
4 at x = +-1, so its Fourier coefficients decay only like 1/m^2. The solver therefore
starts from the *exact* Fourier coefficients of u0 (closed form) instead of grid values
(grid interpolation would alias the slow tail onto every mode, an O(1/N) error that never
decays); the remaining truncation error sits at x = +-1 for small t (a Gibbs ripple) and is
damped like exp(-eps pi^2 (N/2)^2 t). Values at t = 0 are the exact u0.

Between stored snapshots (every ``snapshot_dt``) the solution is interpolated by cubic
Hermite in t (u_t from the PDE at the snapshots) and summed as a Fourier series in x.

Accuracy (measured by the convergence check that runs with every computation, stored in
the cache and in ``describe()``): the solution is also computed with N/2 modes and
2 dt; the sup-norm bound 2 sum_m |c_m - c'_m| of the difference at each snapshot, plus an
estimate of the Hermite interpolation error (1/16 of the error of interpolating over two
snapshot intervals), is the stated accuracy as a function of t (an upper estimate: it is
the error of the coarser solve). Default reference (N = 4096, dt = 2.5e-4, snapshots every
1e-3; ~15 s to compute here, once, then cached):

=================  ==========  =========================================================
t                  stated      measured (vs N = 8192, dt = 1.25e-4; + interpolation)
=================  ==========  =========================================================
t > 0              2.0e-4      1e-4 near x = +-1 for t < 1e-3 (Gibbs ripple of the kink)
t >= 0.005         1.7e-7      1.5e-11 at snapshots, 4.7e-9 with interpolation in t
t >= 0.01          1.0e-9      5.0e-10 (interpolation)
t >= 0.05          2.6e-11     1.5e-11 + 5.7e-12
=================  ==========  =========================================================

An independent Strang-splitting solver (exact reaction and diffusion steps, N = 2048,
dt = 1e-4) agrees to <= 5.3e-10 at t = 0.01 .. 0.5 and 3.2e-9 at t = 1 (its own O(dt^2)
error: 8e-10 at dt = 5e-5); tests/test_references.py repeats these checks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench_mlkan import cache_files

PI = math.pi
CACHE_VERSION = 2  # 2: a .sha256 sidecar beside every cache file


# ----------------------------------------------------------------------------- solver
@dataclass(frozen=True)
class SpectralConfig:
    """Resolution of the spectral reference: ``modes`` (even) Fourier grid points, time
    step ``dt``, snapshots every ``snapshot_dt`` (a multiple of dt), up to ``t_end``."""

    modes: int = 4096
    dt: float = 2.5e-4
    snapshot_dt: float = 1e-3
    t_end: float = 1.0
    eps: float = 1e-4
    contour_points: int = 64

    def __post_init__(self):
        if self.modes < 8 or self.modes % 2:
            raise ValueError(f"modes must be even and >= 8, got {self.modes}")
        steps = self.snapshot_dt / self.dt
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(f"snapshot_dt {self.snapshot_dt} is not a multiple of dt {self.dt}")
        snaps = self.t_end / self.snapshot_dt
        if abs(snaps - round(snaps)) > 1e-9:
            raise ValueError(f"t_end {self.t_end} is not a multiple of snapshot_dt")

    def coarsened(self) -> SpectralConfig:
        """The convergence check's resolution: N/2 modes, 2 dt (same snapshots)."""
        dt = 2 * self.dt
        if (
            round(self.snapshot_dt / dt) < 1
            or abs(self.snapshot_dt / dt - round(self.snapshot_dt / dt)) > 1e-9
        ):
            dt = self.dt
        return SpectralConfig(
            self.modes // 2, dt, self.snapshot_dt, self.t_end, self.eps, self.contour_points
        )

    def refined(self) -> SpectralConfig:
        """2N modes, dt / 2."""
        return SpectralConfig(
            2 * self.modes, self.dt / 2, self.snapshot_dt, self.t_end, self.eps, self.contour_points
        )


def initial_coefficients(modes: int) -> np.ndarray:
    """Exact Fourier coefficients c_m (m = 0 .. modes/2) of the 2-periodic extension of
    x^2 cos(pi x), u = sum_m c_m e^{i pi m (x + 1)} over m = -inf..inf (c_-m = c_m).
    The Nyquist coefficient is set to 0."""
    m = np.arange(modes // 2 + 1, dtype=np.float64)

    def moment(n: np.ndarray) -> np.ndarray:  # int_{-1}^{1} x^2 cos(pi n x) dx
        n = np.abs(n)
        safe = np.where(n == 0, 1.0, n)
        return np.where(n == 0, 2.0 / 3.0, 4.0 * (-1.0) ** n / (PI**2 * safe**2))

    c = (-1.0) ** m / 4.0 * (moment(m + 1) + moment(m - 1))
    c[-1] = 0.0
    return c.astype(np.complex128)


def _nonlinear(c: np.ndarray, modes: int) -> np.ndarray:
    """Coefficients of -5 u^3 for coefficient rows c (..., modes/2 + 1), dealiased by
    evaluating on a 2x grid; Nyquist set to 0."""
    P = 2 * modes
    u = np.fft.irfft(c, n=P, axis=-1) * P
    out = np.fft.rfft(-5.0 * u**3, axis=-1)[..., : modes // 2 + 1] / P
    out[..., -1] = 0.0
    return out


def _linear(modes: int, eps: float) -> np.ndarray:
    m = np.arange(modes // 2 + 1, dtype=np.float64)
    return -eps * (PI * m) ** 2 + 5.0


def solve_allen_cahn(cfg: SpectralConfig, initial: np.ndarray | None = None) -> np.ndarray:
    """ETDRK4 solution: snapshot coefficients (n_snapshots, modes/2 + 1), complex128,
    snapshot k at t = k * snapshot_dt (k = 0 is the exact projection of u0).

    ``initial``: other initial coefficients (modes/2 + 1,) in the same convention
    (u = sum_m c_m e^{i pi m (x + 1)}, c_-m = conj(c_m)); default: u0 = x^2 cos(pi x)."""
    N, h = cfg.modes, cfg.dt
    L = _linear(N, cfg.eps)
    E, E2 = np.exp(h * L), np.exp(h * L / 2)
    r = np.exp(1j * PI * (np.arange(1, cfg.contour_points + 1) - 0.5) / cfg.contour_points)
    LR = h * L[:, None] + r[None, :]
    Q = h * np.real(np.mean((np.exp(LR / 2) - 1) / LR, axis=1))
    f1 = h * np.real(np.mean((-4 - LR + np.exp(LR) * (4 - 3 * LR + LR**2)) / LR**3, axis=1))
    f2 = h * np.real(np.mean((2 + LR + np.exp(LR) * (-2 + LR)) / LR**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * LR - LR**2 + np.exp(LR) * (4 - LR)) / LR**3, axis=1))
    v = initial_coefficients(N) if initial is None else np.array(initial, dtype=np.complex128)
    if v.shape != (N // 2 + 1,):
        raise ValueError(f"initial coefficients need shape ({N // 2 + 1},), got {v.shape}")
    every = int(round(cfg.snapshot_dt / h))
    n_steps = every * int(round(cfg.t_end / cfg.snapshot_dt))
    snaps = [v.copy()]
    for n in range(1, n_steps + 1):
        Nv = _nonlinear(v, N)
        a = E2 * v + Q * Nv
        Na = _nonlinear(a, N)
        b = E2 * v + Q * Na
        Nb = _nonlinear(b, N)
        c = E2 * a + Q * (2 * Nb - Nv)
        Nc = _nonlinear(c, N)
        v = E * v + Nv * f1 + 2 * (Na + Nb) * f2 + Nc * f3
        if n % every == 0:
            snaps.append(v.copy())
    return np.array(snaps)


def time_derivative(c: np.ndarray, cfg: SpectralConfig) -> np.ndarray:
    """Coefficients of u_t = eps u_xx + 5u - 5u^3 for coefficient rows c."""
    N = 2 * (c.shape[-1] - 1)
    return _linear(N, cfg.eps) * c + _nonlinear(c, N)


def sup_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bound on max_x |u_a(x) - u_b(x)| per row: |d_0| + 2 sum_{m>0} |d_m| (zero-padded)."""
    M = max(a.shape[-1], b.shape[-1])
    pad = lambda c: np.pad(c, [(0, 0)] * (c.ndim - 1) + [(0, M - c.shape[-1])])
    d = np.abs(pad(a) - pad(b))
    return d[..., 0] + 2 * d[..., 1:].sum(-1)


class SpectralSolution:
    """A computed reference: evaluate u(x, t) anywhere in [-1, 1] x [0, t_end].

    Attributes:
        cfg: the resolution; coeffs: (n_snap, N/2 + 1) snapshot coefficients;
        accuracy: (n_snap - 1,) stated sup-norm accuracy on each snapshot interval (or
        None when no convergence check was run); info: timings and the check's resolution.
    """

    def __init__(
        self,
        cfg: SpectralConfig,
        coeffs: np.ndarray,
        accuracy: np.ndarray | None = None,
        info: dict | None = None,
    ):
        self.cfg, self.coeffs, self.accuracy = cfg, coeffs, accuracy
        self.info = dict(info or {})
        self.dcoeffs = time_derivative(coeffs, cfg)
        self.times = cfg.snapshot_dt * np.arange(coeffs.shape[0])

    # -- accuracy -------------------------------------------------------------------
    def accuracy_after(self, t0: float) -> float:
        """Stated accuracy (sup over x and over t >= t0)."""
        if self.accuracy is None:
            return float("nan")
        k = min(int(math.floor(t0 / self.cfg.snapshot_dt + 1e-9)), len(self.accuracy) - 1)
        return float(self.accuracy[k:].max())

    def accuracy_summary(self) -> dict[str, float]:
        return {f"t>={t0:g}": self.accuracy_after(t0) for t0 in (0.0, 0.005, 0.01, 0.05, 0.1)}

    # -- evaluation -----------------------------------------------------------------
    def _hermite(self, t: np.ndarray):
        """Snapshot index k and the four Hermite weights (incl. the dt factor)."""
        dt = self.cfg.snapshot_dt
        tt = np.clip(t, 0.0, self.times[-1])
        k = np.clip(np.floor(tt / dt).astype(np.int64), 0, len(self.times) - 2)
        s = (tt - k * dt) / dt
        w = (
            2 * s**3 - 3 * s**2 + 1,
            dt * (s**3 - 2 * s**2 + s),
            -2 * s**3 + 3 * s**2,
            dt * (s**3 - s**2),
        )
        return k, w

    def _coeff_rows(self, t: np.ndarray) -> np.ndarray:
        k, (w0, w1, w2, w3) = self._hermite(t)
        c, d = self.coeffs, self.dcoeffs
        return (
            w0[:, None] * c[k]
            + w1[:, None] * d[k]
            + w2[:, None] * c[k + 1]
            + w3[:, None] * d[k + 1]
        )

    def _phases(self, x: np.ndarray) -> np.ndarray:
        m = np.arange(self.coeffs.shape[1], dtype=np.float64)
        e = np.exp(1j * PI * np.outer(x + 1.0, m))
        e[:, 1:] *= 2.0
        return e

    def torch_eval(self, points: Tensor) -> Tensor:
        """The same interpolant in torch, differentiable in x and t (float64): (n, 2) ->
        (n, 1). For tests of the PINN loss on the reference itself; O(n N) memory."""
        x, t = points[:, 0].double(), points[:, 1].double()
        dt = self.cfg.snapshot_dt
        tt = t.clamp(0.0, float(self.times[-1]))
        k = torch.floor(tt.detach() / dt).long().clamp(0, len(self.times) - 2)
        s = (tt - k.to(torch.float64) * dt) / dt
        w = (
            2 * s**3 - 3 * s**2 + 1,
            dt * (s**3 - 2 * s**2 + s),
            -2 * s**3 + 3 * s**2,
            dt * (s**3 - s**2),
        )
        c, d = torch.from_numpy(self.coeffs), torch.from_numpy(self.dcoeffs)
        kk = k.cpu()
        rows = [c[kk], d[kk], c[kk + 1], d[kk + 1]]
        m = torch.arange(self.coeffs.shape[1], dtype=torch.float64, device=x.device)
        scale = torch.where(m == 0, 1.0, 2.0).to(torch.float64)
        phase = PI * (x[:, None] + 1.0) * m[None, :]
        cos, sin = torch.cos(phase) * scale, torch.sin(phase) * scale
        u = sum(
            wi * ((r.real.to(x.device) * cos).sum(1) - (r.imag.to(x.device) * sin).sum(1))
            for wi, r in zip(w, rows)
        )
        return u.unsqueeze(-1).to(points.dtype)  # type: ignore[union-attr]

    def __call__(self, points: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """u at (n, 2) points (x, t): (n,) float64. t = 0 gives the exact u0."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x, t = pts[:, 0], pts[:, 1]
        out = np.empty(len(pts))
        xu, xi = np.unique(x, return_inverse=True)
        tu, ti = np.unique(t, return_inverse=True)
        if len(xu) * len(tu) <= 4 * len(pts):  # tensor-grid-like: one matmul
            table = np.real(self._coeff_rows(tu) @ self._phases(xu).T)
            out = table[ti.reshape(-1), xi.reshape(-1)]
        else:
            for s in range(0, len(pts), chunk):
                rows = self._coeff_rows(t[s : s + chunk])
                out[s : s + chunk] = np.real((rows * self._phases(x[s : s + chunk])).sum(1))
        at0 = t == 0
        out[at0] = x[at0] ** 2 * np.cos(PI * x[at0])
        return out


# ----------------------------------------------------------------------------- caching
def default_cache_dir() -> Path:
    """``$BENCH_MLKAN_CACHE`` or ``~/.cache/bench_mlkan``."""
    env = os.environ.get("BENCH_MLKAN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "bench_mlkan"


def _cache_key(cfg: SpectralConfig, check: bool) -> str:
    """sha256 of what the cached reference is computed from (config, check, version)."""
    key = json.dumps({**asdict(cfg), "check": check, "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def _cache_file(cfg: SpectralConfig, check: bool, cache_dir: Path) -> Path:
    return cache_dir / f"allen_cahn_{cfg.modes}_{_cache_key(cfg, check)[:16]}.npz"


def compute_reference(cfg: SpectralConfig, check: bool = True) -> SpectralSolution:
    """Solve at ``cfg`` and (with ``check``) at ``cfg.coarsened()``; the stated accuracy
    per snapshot interval is the solver difference at its ends plus the interpolation
    estimate."""
    t0 = time.perf_counter()
    coeffs = solve_allen_cahn(cfg)
    info: dict = {"solve_seconds": time.perf_counter() - t0}
    accuracy = None
    if check:
        coarse = cfg.coarsened()
        t1 = time.perf_counter()
        diff = sup_difference(coeffs, solve_allen_cahn(coarse))
        info.update(
            check_modes=coarse.modes, check_dt=coarse.dt, check_seconds=time.perf_counter() - t1
        )
        interp = _interpolation_estimate(cfg, coeffs)
        accuracy = np.maximum(diff[:-1], diff[1:]) + interp
    return SpectralSolution(cfg, coeffs, accuracy, info)


def _interpolation_estimate(cfg: SpectralConfig, coeffs: np.ndarray) -> np.ndarray:
    """Per snapshot interval: 1/16 of the sup error of Hermite interpolation over two
    intervals at the skipped (odd) snapshot - cubic Hermite error scales like spacing^4."""
    d = time_derivative(coeffs, cfg)
    H = 2 * cfg.snapshot_dt
    n = coeffs.shape[0]
    est = np.zeros(n - 1)
    last = 0.0
    for k in range(1, n - 1, 2):
        mid = (coeffs[k - 1] + coeffs[k + 1]) / 2 + H / 8 * (d[k - 1] - d[k + 1])
        last = float(sup_difference(mid[None], coeffs[k][None])[0]) / 16.0
        est[k - 1 : k + 1] = last
    if (n - 1) % 2:
        est[-1] = last
    return est


def allen_cahn_reference(
    cfg: SpectralConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    check: bool = True,
) -> SpectralSolution:
    """The reference at ``cfg`` (default ``SpectralConfig()``): from the in-process cache,
    else from the disk cache (``cache_dir``, default ``default_cache_dir()``; "" disables
    it), else computed (and stored atomically). Deterministic: the same numbers on every
    call."""
    directory = (
        str(default_cache_dir()) if cache_dir is None else (str(cache_dir) if cache_dir else "")
    )
    return _reference(cfg or SpectralConfig(), directory, bool(check))


def clear_reference_cache() -> None:
    """Forget the in-process references (the disk cache stays)."""
    _reference.cache_clear()


@functools.lru_cache(maxsize=4)
def _reference(cfg: SpectralConfig, cache_dir: str, check: bool) -> SpectralSolution:
    """From the verified disk cache, else computed and stored. The cache file has a
    ``.sha256`` sidecar (``bench_mlkan.cache_files``): a truncated, modified or unreadable
    file gives one ``CacheWarning`` and is recomputed; builders wait on a file lock."""
    if not cache_dir:
        return compute_reference(cfg, check)
    path, key = _cache_file(cfg, check, Path(cache_dir)), _cache_key(cfg, check)
    sol, reason = _load_reference(cfg, path, key)
    if sol is not None:
        return sol
    try:
        with cache_files.build_lock(path):
            sol, reason = _load_reference(cfg, path, key)  # another process may have built it
            if sol is not None:
                return sol
            if reason != "missing":
                cache_files.warn_rebuild(path, reason)
            sol = compute_reference(cfg, check)
            _save_reference(sol, path, key)
    except OSError:  # read-only home: keep the in-process copy only
        pass
    return sol if sol is not None else compute_reference(cfg, check)


def _load_reference(
    cfg: SpectralConfig, path: Path, key: str
) -> tuple[SpectralSolution | None, str]:
    """(the solution, "") from a verified cache file, else (None, why not)."""
    reason = cache_files.verify(path, key)
    if reason is not None:
        return None, reason
    try:
        with np.load(path, allow_pickle=False) as f:
            acc = f["accuracy"] if f["accuracy"].size else None
            info = json.loads(str(f["info"]))
            coeffs = f["coeffs"]
        if coeffs.ndim != 2 or coeffs.shape[1] != cfg.modes // 2 + 1:
            return None, f"holds coefficients of shape {coeffs.shape}"
        return SpectralSolution(cfg, coeffs, acc, info), ""
    except Exception as err:  # noqa: BLE001 - any unreadable file (BadZipFile, ...): rebuild
        return None, f"unreadable ({type(err).__name__}: {err})"


def _save_reference(sol: SpectralSolution, path: Path, key: str) -> None:
    """Write to a unique temporary beside ``path``, fsync, install with its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                coeffs=sol.coeffs,
                accuracy=np.zeros(0) if sol.accuracy is None else sol.accuracy,
                info=json.dumps(sol.info),
            )
        os.chmod(tmp, 0o644)
        cache_files.install(Path(tmp), path, key)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- the task
