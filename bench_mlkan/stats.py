"""Seed statistics for claims of the form "A is lower than B by at least f times".

Errors (MSE, relative L2) are positive and spread over orders of magnitude across seeds,
so the comparisons work on logarithms: the effect size is the ratio of geometric means
gm(B) / gm(A) ("A is that many times lower"), its uncertainty a percentile bootstrap
interval, and its significance a one-sided rank test on log(f * A) versus log(B)
(unpaired: Mann-Whitney U; paired by seed: Wilcoxon signed-rank). Rank tests need no
distributional assumption; with 5 seeds per group their smallest possible p-values are
1/252 (unpaired) and 1/32 (paired), so "not significant" is a frequent, honest answer.

All functions are pure (inputs: sequences of positive floats; outputs: dataclasses). A
run that diverged may be passed as ``math.inf``: it takes the worst rank in the tests and
makes means, geometric means and ratios infinite (an interval bound that mixes infinite
values of both groups is nan); NaN, zero and negative values are rejected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: Significance level of every verdict.
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    """Per-seed values of one group and their spread (``values`` in the given order)."""

    values: tuple[float, ...]
    n: int
    mean: float
    sd: float  # sample standard deviation (n - 1); nan for n < 2
    median: float
    minimum: float
    maximum: float
    gmean: float  # geometric mean
    gsd: float  # geometric standard deviation exp(sd(log x)); nan for n < 2


def summarize(values: Sequence[float]) -> Summary:
    """Summary of positive per-seed values (raises on empty or non-positive input)."""
    x = _positive(values, "values")
    logs = np.log(x)
    n, finite = len(x), bool(np.isfinite(x).all())
    with np.errstate(invalid="ignore"):
        return Summary(
            values=tuple(float(v) for v in x),
            n=n,
            mean=float(x.mean()),
            sd=float(x.std(ddof=1)) if n > 1 and finite else math.nan,
            median=float(np.quantile(x, 0.5, method="inverted_cdf"))
            if not finite
            else float(np.median(x)),
            minimum=float(x.min()),
            maximum=float(x.max()),
            gmean=float(np.exp(logs.mean())),
            gsd=float(np.exp(logs.std(ddof=1))) if n > 1 and finite else math.nan,
        )


def gmean_ratio(lower: Sequence[float], higher: Sequence[float]) -> float:
    """gm(higher) / gm(lower): how many times ``lower`` is below ``higher``."""
    a, b = _positive(lower, "lower"), _positive(higher, "higher")
    with np.errstate(invalid="ignore"):
        return float(np.exp(np.log(b).mean() - np.log(a).mean()))


def bootstrap_ratio_interval(
    lower: Sequence[float],
    higher: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of gm(higher) / gm(lower).

    Each group is resampled with replacement independently (unpaired), ``n_resamples``
    times, from ``numpy.random.default_rng(seed)`` (deterministic).
    """
    la, lb = np.log(_positive(lower, "lower")), np.log(_positive(higher, "higher"))
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(la), size=(n_resamples, len(la)))
    ib = rng.integers(0, len(lb), size=(n_resamples, len(lb)))
    with np.errstate(invalid="ignore"):
        log_ratio = lb[ib].mean(axis=1) - la[ia].mean(axis=1)
    tail = (1 - confidence) / 2
    if np.isfinite(log_ratio).all():
        lo, hi = np.quantile(log_ratio, [tail, 1 - tail])
    elif np.isnan(log_ratio).any():
        return math.nan, math.nan
    else:  # infinite resamples: order statistics, no interpolation between infinities
        lo, hi = np.quantile(log_ratio, [tail, 1 - tail], method="inverted_cdf")
    return float(np.exp(lo)), float(np.exp(hi))


def rank_test_lower(lower: Sequence[float], higher: Sequence[float], factor: float = 1.0) -> float:
    """One-sided Mann-Whitney U p-value of "factor * lower < higher" (unpaired seeds).

    Exact for small samples without ties (scipy's ``method="auto"``).
    """
    a = np.log(_positive(lower, "lower")) + math.log(factor)
    b = np.log(_positive(higher, "higher"))
    return float(sps.mannwhitneyu(a, b, alternative="less").pvalue)


def paired_test_lower(
    lower: Sequence[float], higher: Sequence[float], factor: float = 1.0
) -> float:
    """One-sided Wilcoxon signed-rank p-value of "factor * lower < higher", paired by seed.

    Pairing is meaningful only when seed k of both groups shares its randomness (data,
    initialisation); ``lower[i]`` pairs with ``higher[i]``.
    """
    a = np.log(_positive(lower, "lower")) + math.log(factor)
    b = np.log(_positive(higher, "higher"))
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    return float(sps.wilcoxon(a - b, alternative="less").pvalue)


@dataclass(frozen=True)
class Comparison:
    """The claim "``lower`` is below ``higher`` by >= ``factor`` x", with its evidence."""

    lower: Summary
    higher: Summary
    factor: float
    ratio: float  # gm(higher) / gm(lower)
    interval: tuple[float, float]  # bootstrap interval of ratio
    p_value: float  # one-sided Mann-Whitney: factor * lower < higher
    p_reverse: float  # one-sided Mann-Whitney: factor * lower > higher
    verdict: str  # "holds", "holds (n.s.)", "fails (n.s.)", "fails"


def compare(
    lower: Sequence[float],
    higher: Sequence[float],
    factor: float = 1.0,
    alpha: float = ALPHA,
    n_resamples: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Test "lower beats higher by >= factor x" (lower is better).

    Verdict: "holds" when the ratio of geometric means is >= factor and the rank test of
    factor * lower < higher is significant at ``alpha``; "holds (n.s.)" when the ratio
    is >= factor without significance; "fails" when the ratio is < factor and the reverse
    test (factor * lower > higher) is significant; "fails (n.s.)" otherwise.
    """
    ratio = gmean_ratio(lower, higher)
    p = rank_test_lower(lower, higher, factor)
    p_rev = rank_test_lower(higher, lower, 1.0 / factor)
    if ratio >= factor:
        verdict = "holds" if p < alpha else "holds (n.s.)"
    else:
        verdict = "fails" if p_rev < alpha else "fails (n.s.)"
    return Comparison(
        lower=summarize(lower),
        higher=summarize(higher),
        factor=factor,
        ratio=ratio,
        interval=bootstrap_ratio_interval(lower, higher, n_resamples=n_resamples, seed=seed),
        p_value=p,
        p_reverse=p_rev,
        verdict=verdict,
    )


def _positive(values: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(list(values), dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of numbers")
    if np.isnan(x).any() or not (x > 0).all():
        raise ValueError(f"{name} must be positive (or +inf), got {x.tolist()}")
    return x
