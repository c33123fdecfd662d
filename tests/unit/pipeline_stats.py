"""Small statistics helpers for the offline pipeline tests (plain Python, no numpy).

Every tolerance in tests/unit/test_pipeline_offline.py is built from these, at a
two-sided 99.9 % level (z = 3.29), so a test fails for a wrong engine and passes
for any seed except about once in a thousand per assertion.
"""

from __future__ import annotations

import math
from typing import Sequence

#: two-sided 99.9 % normal quantile
Z999 = 3.2905


def binomial_tolerance(n: int, p: float, z: float = Z999) -> float:
    """z standard deviations of a Binomial(n, p) count."""
    return z * math.sqrt(n * p * (1.0 - p))


def mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def variance(xs: Sequence[float]) -> float:
    m = mean(xs)
    return math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def lag1_autocorrelation(xs: Sequence[float]) -> float:
    m = mean(xs)
    num = math.fsum((xs[i] - m) * (xs[i + 1] - m) for i in range(len(xs) - 1))
    den = math.fsum((x - m) ** 2 for x in xs)
    return num / den


def runs(flags: Sequence[bool], value: bool) -> list[int]:
    """Lengths of the maximal runs of `value`, without the first and last run
    (they are cut by the ends of the sample, so not geometric)."""
    lengths: list[int] = []
    current = 0
    for flag in flags:
        if flag == value:
            current += 1
        elif current:
            lengths.append(current)
            current = 0
    if flags and flags[0] == value and lengths:
        lengths.pop(0)
    return lengths  # a trailing open run was never appended


def solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (small dense systems)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col]:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def stationary(p: list[list[float]]) -> list[float]:
    """Stationary distribution pi (pi P = pi, sum pi = 1) of a transition matrix."""
    n = len(p)
    # (P^T - I) pi = 0 with the last equation replaced by sum(pi) = 1.
    a = [[p[j][i] - (1.0 if i == j else 0.0) for j in range(n)] for i in range(n)]
    a[-1] = [1.0] * n
    b = [0.0] * (n - 1) + [1.0]
    return solve(a, b)


def markov_mean_and_variance(p: list[list[float]], f: list[float]) -> tuple[float, float]:
    """For a stationary chain with transition matrix p and a function f of its
    state: E f and the asymptotic variance sigma^2 of the sample mean
    (Var of the mean of n steps ~ sigma^2 / n):
    sigma^2 = Var f + 2 sum_{k>=1} Cov(f(X_0), f(X_k))."""
    pi = stationary(p)
    mu = sum(w * x for w, x in zip(pi, f))
    g0 = [x - mu for x in f]
    var = sum(w * x * x for w, x in zip(pi, g0))
    total = var
    g = g0
    for _ in range(100_000):
        g = [sum(p[i][j] * g[j] for j in range(len(g))) for i in range(len(g))]
        cov = sum(w * x * y for w, x, y in zip(pi, g0, g))
        total += 2.0 * cov
        if max(abs(x) for x in g) < 1e-15:
            break
    return mu, total


def dkw_epsilon(n: int, alpha: float = 1e-3) -> float:
    """Dvoretzky–Kiefer–Wolfowitz (Massart): P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2)."""
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def empirical_cdf_gap(sorted_xs: Sequence[float], cdf, points: Sequence[float]) -> float:
    """max over `points` of |F_n(x) - F(x)| (F_n right-continuous)."""
    import bisect

    n = len(sorted_xs)
    return max(abs(bisect.bisect_right(sorted_xs, x) / n - cdf(x)) for x in points)


# ------------------------------------------------------------ jitter distributions
# The engine's standardized jitter z (delay = configured delay + z * jitter).

PARETO_XM = 2.0 / math.sqrt(3.0)  # Pareto(alpha=3, xm) shifted by -1.5 xm: mean 0, std 1


def uniform_cdf(x: float) -> float:
    return min(1.0, max(0.0, (x + 1.0) / 2.0))


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def pareto_cdf(x: float) -> float:
    v = x / PARETO_XM + 1.5  # the Pareto variable in units of xm, >= 1
    return 0.0 if v < 1.0 else 1.0 - v**-3


_PN_SCALE = math.sqrt(0.25**2 + 0.75**2)


def paretonormal_cdf(x: float) -> float:
    """z = (0.25 N + 0.75 P) / sqrt(0.625): integrate P's CDF over N (Simpson, [-9, 9])."""
    steps = 600
    h = 18.0 / steps
    total = 0.0
    for k in range(steps + 1):
        nval = -9.0 + k * h
        w = 1 if k in (0, steps) else (4 if k % 2 else 2)
        dens = math.exp(-0.5 * nval * nval) / math.sqrt(2.0 * math.pi)
        total += w * dens * pareto_cdf((x * _PN_SCALE - 0.25 * nval) / 0.75)
    return total * h / 3.0


def pareto_clipped_moments(c: float) -> tuple[float, float]:
    """Mean and variance of min(z, c) for the engine's standardized Pareto z.
    With V = Pareto(3, 1): E min(V,v) = 1.5 - 0.5/v^2, E min(V,v)^2 = 3 - 2/v."""
    v = c / PARETO_XM + 1.5
    m1 = 1.5 - 0.5 / v**2
    m2 = 3.0 - 2.0 / v
    return PARETO_XM * (m1 - 1.5), PARETO_XM**2 * (m2 - m1 * m1)
