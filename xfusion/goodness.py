r"""Goodness of fit of expected counts to Poisson data: the C-statistic and its expectation.

The fit has no truth to be scored against on real data; what it has is how well the expected
counts of each instrument explain its counts. The C-statistic (Cash 1979, in the deviance form
that XSPEC's ``cstat`` reports)

.. math::

    C = 2 \sum_i \bigl(\mu_i - D_i + D_i \log(D_i/\mu_i)\bigr)

is twice the Poisson deviance the solver minimises. If the model were right, each bin would
contribute on average :math:`E_\lambda[C_i]` with :math:`D_i \sim \mathrm{Poisson}(\lambda =
\mu_i)`, which is ~1 for bright bins but much less than 1 for the low-count bins typical of
microcalorimeter channels (Kaastra 2017, A&A 605, A51). :func:`cstat_expected` gives the sum of
those expectations and variances, computed exactly (tabulated sums over the Poisson
distribution), so ``C / E[C]`` near 1 means the counts are explained to the noise, and well
above 1 a model (e.g. a low-rank subspace) that cannot describe the data.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import xlogy
from scipy.stats import poisson

from .functionals import total

__all__ = ["cstat", "cstat_expected", "goodness_of_fit"]

#: λ grid of the tabulated per-bin mean and variance (log-spaced); above it the
#: large-count limits (mean 1, variance 2) apply
_LAM_MIN, _LAM_MAX, _N_GRID = 1e-8, 1e4, 481


def cstat(D, mu) -> float:
    r"""C-statistic :math:`2\sum(\mu - D + D\log(D/\mu))` of counts ``D`` given ``mu``.

    Parameters
    ----------
    D, mu : arrays of the same shape (numpy or dask)
        Counts and expected counts (μ ≥ 0; μ = 0 only where D = 0).

    Raises
    ------
    ValueError
        When shapes differ, or μ ≤ 0 where counts were detected (C is then infinite).
    """
    if tuple(D.shape) != tuple(mu.shape):
        raise ValueError(f"cstat: counts have shape {tuple(D.shape)}, expected counts "
                         f"{tuple(mu.shape)}")
    Df = D.astype(np.float64)
    mf = mu.astype(np.float64)
    bad = total((Df > 0) & (mf <= 0))
    if bad:
        raise ValueError(f"cstat: {int(bad)} bins have counts but zero or negative expected "
                         f"counts (the C-statistic is infinite there)")
    safe = np.maximum(mf, 1e-300)
    return 2 * total(mf - Df + xlogy(Df, Df) - xlogy(Df, safe))


@lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log λ grid and the exact per-bin mean and variance of C under Poisson(λ)."""
    lam = np.logspace(np.log10(_LAM_MIN), np.log10(_LAM_MAX), _N_GRID)
    mean = np.empty_like(lam)
    var = np.empty_like(lam)
    for i, lm in enumerate(lam):
        k = np.arange(0, int(lm + 14 * np.sqrt(lm) + 40))
        p = poisson.pmf(k, lm)
        c = 2 * (lm - k + xlogy(k, k) - xlogy(k, lm))
        mean[i] = np.sum(p * c)
        var[i] = np.sum(p * (c - mean[i]) ** 2)
    return np.log(lam), mean, var


def _per_bin(mu: np.ndarray) -> np.ndarray:
    """(mean, variance) of each bin's C contribution, stacked on a new first axis."""
    loglam, mean, var = _table()
    m = np.asarray(mu, dtype=np.float64)
    x = np.log(np.maximum(m, _LAM_MIN))
    e = np.interp(x, loglam, mean, right=1.0)
    v = np.interp(x, loglam, var, right=2.0)
    small = m < _LAM_MIN                 # E, Var → 0 as λ → 0 (both ~ 2λ log(1/λ))
    e = np.where(small, 0.0, e)
    v = np.where(small, 0.0, v)
    return np.stack([e, v])


def cstat_expected(mu) -> tuple[float, float]:
    r"""Expectation and variance of the C-statistic if the counts were Poisson(μ).

    .. math::

        E[C] = \sum_i e(\mu_i),\qquad \mathrm{Var}[C] = \sum_i v(\mu_i)

    with :math:`e(\lambda) = E[2(\lambda - k + k\log(k/\lambda))]`, :math:`k \sim
    \mathrm{Poisson}(\lambda)` (and v its variance), summed exactly over k on a grid of λ
    from 10⁻⁸ to 10⁴ and interpolated in log λ; above the grid e = 1 and v = 2.

    Parameters
    ----------
    mu : array (numpy or dask)
        Expected counts per bin.
    """
    if type(mu).__module__.startswith("dask."):
        import dask.array as da

        ev = da.map_blocks(_per_bin, mu, new_axis=0, dtype=np.float64,
                           chunks=((2,),) + mu.chunks)
        e, v = (float(s) for s in ev.sum(axis=tuple(range(1, ev.ndim))).compute())
        return e, v
    ev = _per_bin(mu)
    return float(ev[0].sum()), float(ev[1].sum())


def goodness_of_fit(D, mu, background=None) -> dict:
    """C-statistic of ``D`` given ``mu``, its expectation and standard deviation under the model,
    their ratio, and the number of bins: ``{"cstat", "expected", "sigma", "ratio", "bins"}``.

    With ``background`` (known expected background counts of D's shape), ``mu`` is the
    source's expected counts and the statistic is that of the total ``mu + background``:
    the counts are Poisson draws of the source *and* the background.
    """
    if background is not None:
        if tuple(background.shape) != tuple(D.shape):
            raise ValueError(f"goodness_of_fit: background has shape "
                             f"{tuple(background.shape)}, the counts {tuple(D.shape)}")
        mu = mu + background
    c = cstat(D, mu)
    e, v = cstat_expected(mu)
    return {"cstat": c, "expected": e, "sigma": float(np.sqrt(v)),
            "ratio": c / e if e > 0 else float("nan"), "bins": int(np.prod(D.shape))}
