r"""Functionals of the fusion objective and the contract every one of them keeps.

:class:`Functional` is that contract (PyProximal's ``ProxOperator`` and SCICO's
``Functional`` are the models): ``value(x)`` is valid for any ``x``; a differentiable
functional has ``grad(x)``; a prox-friendly one has ``prox(v, step, metric=None)``, the
minimiser of :math:`\varphi(u) + \|u - v\|^2_{P^{-1}} / 2s` with the solver's diagonal
metric :math:`P` (``None``: the identity); the class attributes ``has_grad`` and
``has_prox`` declare which. Functionals whose prox adapts to the data (the starlet
thresholds) also implement the hooks ``frozen``, ``end_iteration``, ``state`` and
``set_state``; the defaults here make them no-ops, so the solver never probes for them.

Every functional here works on numpy and dask arrays alike (element-wise operations and
reductions only); reductions are accumulated in float64 whatever the array dtype.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import xlogy

from .halo import is_dask
from .starlet.stats import soft_threshold  # the prox of t‖·‖₁, exported here too

__all__ = ["Functional", "PoissonLoss", "Sobolev", "Positivity", "Zero", "soft_threshold", "total"]

#: fewest elements per block of the Poisson loss's threaded pass
_LOSS_BLOCK = 1 << 17


def total(a) -> float:
    """Sum of all elements as a Python float, accumulated in float64."""
    return float(a.sum(dtype=np.float64))


class Functional:
    r"""The contract of a term of the objective (see the module docstring).

    Subclasses override :meth:`value` and, as they declare with ``has_grad`` / ``has_prox``,
    :meth:`grad` / :meth:`prox`. The adaptive hooks default to a functional that does not
    change during the run.
    """

    #: ``grad`` is implemented (the term is smooth and goes into the gradient step)
    has_grad: bool = False
    #: ``prox`` is implemented (the term is applied by the proximal step)
    has_prox: bool = False
    #: the prox depends on the solver's metric and asks the solver to hold the metric once
    #: :attr:`frozen` (:class:`xfusion.solver.FISTA`)
    hold_metric: bool = False
    #: the functional no longer changes (adaptive ones: their thresholds are frozen)
    frozen: bool = True

    def value(self, x) -> float:
        """The value at any ``x``."""
        raise NotImplementedError(f"{type(self).__name__}.value")

    def grad(self, x):
        """The gradient at ``x`` (``has_grad``)."""
        raise NotImplementedError(f"{type(self).__name__} is not differentiable")

    def prox(self, v, step: float, metric=None):
        r"""The prox of ``step`` × the functional at ``v`` in the metric ``metric`` (a
        diagonal :math:`P` or None) (``has_prox``)."""
        raise NotImplementedError(f"{type(self).__name__} has no prox")

    def prox_value(self, x) -> float:
        """The value at ``x``, the output of the last :meth:`prox`, as the objective counts it
        (the value by default; an approximate prox reports its own surrogate)."""
        return self.value(x)

    def lipschitz(self) -> float | None:
        """An upper bound of the gradient's Lipschitz constant, if known (for the EM metric)."""
        return None

    def diag(self) -> float | None:
        """The largest diagonal entry of the Hessian, if known (for the Jacobi metric)."""
        return None

    def end_iteration(self, iteration: int) -> None:
        """Called by the solver after iteration ``iteration`` (adaptive functionals)."""

    def state(self) -> dict:
        """What a checkpoint must keep to continue the run (adaptive functionals)."""
        return {}

    def set_state(self, s: dict) -> None:
        """Restore :meth:`state`."""


class PoissonLoss(Functional):
    r"""Negative Poisson log-likelihood of counts ``D`` given expected counts ``μ``, as a deviance.

    .. math::

        f(\mu) = \sum_i \mu_i - D_i + D_i \log(D_i / \mu_i)

    which is :math:`\sum \mu - D \log \mu` up to a constant, is 0 at :math:`\mu = D`, and
    makes relative changes of the objective meaningful.

    Parameters
    ----------
    D : array
        Observed counts (non-negative).
    eps : float
        Where :math:`D > 0`, below :math:`\mu = \varepsilon` the loss continues as its
        second-order Taylor expansion at :math:`\varepsilon` (curvature :math:`D/\varepsilon^2`,
        at least :math:`1/\varepsilon^2`); where :math:`D = 0` the deviance is exactly
        :math:`\mu` down to :math:`\mu = 0` and continues below 0 as
        :math:`\mu + \mu^2/2\varepsilon^2`. This keeps the loss finite, convex, bounded
        below and :math:`C^1` for every μ (including negative values) without changing it
        where the model is meaningful (:math:`\varepsilon \ll` 1 count). An earlier version
        started the extension at ε where :math:`D = 0` too, with curvature
        :math:`1/\varepsilon^2`: a spurious well at :math:`\mu \approx \varepsilon` in
        channels the model barely reaches, which EM-scaled steps overshot, so backtracking cut
        them to :math:`2^{-12}` and `lr` crept towards its minimiser (docs/solver.md).

    background : array, optional
        Known expected background counts :math:`B \ge 0` of D's shape (numpy or dask, like
        D). The loss is then one of the *source* expected counts μ,
        :math:`f(\mu) = \sum_i (\mu_i + B_i) - D_i + D_i \log(D_i / (\mu_i + B_i))`, every
        formula above (extension included) applied to the total :math:`\mu + B`. Without it
        (None) nothing is added: not even a pass over zeros.

    Notes
    -----
    Gradient :math:`\partial f / \partial \mu_i = 1 - D_i/(\mu_i + B_i)` (above
    :math:`\varepsilon`). A functional of the expected counts μ, not of the unknown
    (:class:`xfusion.likelihood.PoissonLikelihood` composes it with the model). The
    background is an offset of the loss rather than of the model, so that μ stays linear
    in the unknown (the solver extrapolates it between iterates).
    """

    has_grad = True

    def __init__(self, D, eps: float = 1e-6, dtype=np.float64, background=None):
        self.D = D.astype(dtype) if hasattr(D, "astype") else np.asarray(D, dtype)
        self.B = None
        if background is not None:
            B = background.astype(dtype) if hasattr(background, "astype") else \
                np.asarray(background, dtype)
            if tuple(B.shape) != tuple(self.D.shape):
                raise ValueError(f"background: shape {tuple(B.shape)}, the counts have "
                                 f"{tuple(self.D.shape)}")
            self.B = B if is_dask(B) else np.ascontiguousarray(B)
        self.eps = float(eps)
        self.const = total(xlogy(np.asarray(D, np.float64), np.asarray(D, np.float64))
                           - np.asarray(D, np.float64)) if not is_dask(D) else \
            float((_dask_xlogy(D) - D.astype(np.float64)).sum().compute())

    def _fast(self, mu) -> bool:
        """True when no element needs the quadratic extension (the usual case)."""
        return float(mu.min()) >= self.eps

    def total(self, mu):
        r"""The total expected counts :math:`\mu + B` (``mu`` itself without a background)."""
        return mu if self.B is None else mu + self.B

    def _blocks(self, mu, g=None) -> float | None:
        r""":math:`\sum_i f_i(\mu_i)` (without the constant) of an in-memory μ, one pass per
        block on the block threads; with ``g`` the gradient is written into it too.

        ``None`` when μ is not a C-contiguous numpy array of D's shape and dtype. The log is
        numpy's (vectorised; numpy releases the GIL); the sum and the gradient, extension
        included, are one compiled pass when numba is available; without it a block with some
        μ below the extension's start is evaluated with numpy where-expressions on that block.
        """
        D = self.D
        if not (type(mu) is np.ndarray and type(D) is np.ndarray and mu.flags.c_contiguous
                and D.flags.c_contiguous and mu.shape == D.shape and mu.dtype == D.dtype
                and (g is None or g.flags.c_contiguous)):
            return None
        from ._threads import each_block

        mf, df = mu.reshape(-1), D.reshape(-1)
        gf = None if g is None else g.reshape(-1)
        e = self.eps
        jit = _loss_kernels()

        def part(a, b):
            m, d = mf[a:b], df[a:b]
            inside = b == a or float(m.min()) >= e
            if jit is not None:               # the log in numpy, the rest compiled
                if inside:                    # (branch-free loops: they vectorise)
                    t = np.log(m)
                    return jit[0](m, d, t) if gf is None else jit[1](m, d, t, gf[a:b])
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = np.log(m)             # (not read where μ < ε or D = 0)
                if gf is None:
                    return jit[2](m, d, t, e)
                return jit[3](m, d, t, e, gf[a:b])
            if not inside:                    # numpy, with the extension where μ < its start
                ext = tuple(v.reshape(-1)[a:b] for v in self._extension())
                if gf is not None:
                    gf[a:b] = _terms_grad(m, d, e, *ext)
                return float(_terms(m, d, e, *ext).sum(dtype=np.float64))
            t = np.log(m)
            t *= d
            np.subtract(m, t, out=t)          # μ − D log μ, summed once in float64
            if gf is not None:
                gb = gf[a:b]
                np.divide(d, m, out=gb)
                np.subtract(1, gb, out=gb)
            return float(t.sum(dtype=np.float64))

        parts = each_block(part, mf.size, _LOSS_BLOCK)
        return None if any(p is None for p in parts) else sum(parts)

    def _dask_fast_value(self, mu):
        """Dask: the fast-path value and the min test in one pass over ``mu`` (one compute
        instead of three); None when some element needs the quadratic extension."""
        import dask

        D, e = self.D, self.eps
        m, s1, s2 = dask.compute(mu.min(), mu.sum(dtype=np.float64),
                                 (D * np.log(np.maximum(mu, e))).sum(dtype=np.float64))
        return float(s1) - float(s2) + self.const if float(m) >= e else None

    def value(self, mu) -> float:
        return self._value(self.total(mu))

    def grad(self, mu):
        return self._grad(self.total(mu))

    def value_and_grad(self, mu):
        """Value and gradient in one pass over the data (one ``min`` check for both)."""
        return self._value_and_grad(self.total(mu))

    # the private methods take the total expected counts μ + B
    def _value(self, mu) -> float:
        D, e = self.D, self.eps
        if is_dask(mu):
            v = self._dask_fast_value(mu)
            if v is not None:
                return v
        else:
            v = self._blocks(mu)
            if v is not None:
                return v + self.const
            if self._fast(mu):
                return total(mu) - total(D * np.log(mu)) + self.const
        return total(_terms(mu, D, e, *self._extension())) + self.const

    def _grad(self, mu):
        D, e = self.D, self.eps
        if self._fast(mu):
            return 1 - D / mu
        return _terms_grad(mu, D, e, *self._extension())

    def _extension(self):
        """Where the quadratic extension starts (ε, or 0 where D = 0), its slope and curvature
        there, per element (computed once)."""
        if getattr(self, "_ext", None) is None:
            D, e = self.D, self.eps
            counted = D > 0
            self._ext = (np.where(counted, e, 0).astype(D.dtype), 1 - D / e,
                         np.maximum(D, 1) / e**2)
        return self._ext

    def _value_and_grad(self, mu):
        D = self.D
        if is_dask(mu):  # one compute for the min test and both sums
            v = self._dask_fast_value(mu)
            if v is not None:
                return v, 1 - D / mu
            return self._value(mu), self._grad(mu)
        if type(mu) is np.ndarray:
            g = np.empty_like(mu)
            v = self._blocks(mu, g)
            if v is not None:
                return v + self.const, g
        if self._fast(mu):
            ratio = D / mu
            return total(mu) - total(D * np.log(mu)) + self.const, 1 - ratio
        return self._value(mu), self._grad(mu)


def _terms(mu, D, e, start, slope, curv):
    """Per-bin deviance (without its constant): μ − D log μ above the extension's ``start``
    (ε, or 0 where D = 0), the quadratic with ``slope`` and ``curv`` there below it."""
    h = mu - start
    inside = mu - D * np.log(np.maximum(mu, e))
    return np.where(h < 0, (start - D * np.log(e)) + slope * h + 0.5 * curv * h * h, inside)


def _terms_grad(mu, D, e, start, slope, curv):
    """Per-bin derivative of :func:`_terms`."""
    return np.where(mu - start < 0, slope + curv * (mu - start), 1 - D / np.maximum(mu, e))


@lru_cache(maxsize=1)
def _compiled_loss():
    from .starlet import _jit

    nb = _jit.numba
    if nb is None:  # pragma: no cover - numba is optional
        return None
    # no "arcp" (reciprocal approximation): the gradient equals numpy's 1 - D/μ bit for
    # bit; no "nnan"/"ninf": a NaN in μ must reach the sum (the solver stops on it)
    jit = nb.njit(nogil=True, cache=True, error_model="numpy",
                  fastmath={"reassoc", "contract", "nsz"})

    @jit
    def term(mi, di, lgi, e, le):  # pragma: no cover - compiled
        """f and f' of one bin (see PoissonLoss: the extension starts at ε, or 0 where D = 0)."""
        if di == 0:
            if mi >= 0:
                return np.float64(mi), 1.0
            h = np.float64(mi)
            return h + 0.5 * h * h / (e * e), 1.0 + h / (e * e)
        if mi >= e:
            return np.float64(mi - di * lgi), 1 - di / mi
        h = np.float64(mi) - e
        c = max(di, 1.0) / (e * e)
        return (e - di * le) + (1 - di / e) * h + 0.5 * c * h * h, (1 - di / e) + c * h

    @jit
    def value(m, d, lg):  # pragma: no cover - compiled
        s = 0.0
        for i in range(m.size):
            s += np.float64(m[i] - d[i] * lg[i])
        return s

    @jit
    def value_grad(m, d, lg, g):  # pragma: no cover - compiled
        s = 0.0
        for i in range(m.size):
            mi = m[i]
            di = d[i]
            s += np.float64(mi - di * lg[i])
            g[i] = 1 - di / mi
        return s

    @jit
    def value_ext(m, d, lg, e):  # pragma: no cover - compiled
        le = np.log(e)
        s = 0.0
        for i in range(m.size):
            s += term(m[i], d[i], lg[i], e, le)[0]
        return s

    @jit
    def value_grad_ext(m, d, lg, e, g):  # pragma: no cover - compiled
        le = np.log(e)
        s = 0.0
        for i in range(m.size):
            v, gi = term(m[i], d[i], lg[i], e, le)
            s += v
            g[i] = gi
        return s

    return value, value_grad, value_ext, value_grad_ext


def _loss_kernels():
    """The compiled sums of the Poisson loss (numba, ``XFUSION_JIT`` not ``0``), or None."""
    from .starlet import _jit

    return _compiled_loss() if _jit.available() else None


def _dask_xlogy(D):
    import dask.array as da

    Df = D.astype(np.float64)
    return da.map_blocks(xlogy, Df, Df, dtype=np.float64)


class Sobolev(Functional):
    r"""Smooth spatial penalty :math:`\varphi(W) = w \sum_r \|\nabla W_r\|_2^2`.

    :math:`\nabla` is the pair of first differences along y and x (no wrap-around; Neumann
    boundary), so :math:`\nabla^*\nabla` is the 5-point Laplacian with reflecting edges.

    Parameters
    ----------
    weight : float
        :math:`w` (the solver sets it from μ_D and the data term's curvature).

    Notes
    -----
    On a dask ``W`` the value and the gradient are computed chunk by chunk, each chunk with a
    one-pixel halo along y and x from its neighbours and, at the image's edges, a mirrored
    copy of the edge pixel (:math:`W_{-1} = W_0`, :math:`W_n = W_{n-1}`). The differences
    across a mirrored edge are exactly 0, so on the halo-extended block the formulas of the
    in-memory path give the Neumann values without a special case:

    .. math::

        (\nabla^*\nabla W)_i = -\big((W_{i+1} - W_i) - (W_i - W_{i-1})\big)

    along each axis (the same operations as in memory, so the gradient is equal to it bit for
    bit), and the value sums, per chunk, the squared differences that start in the chunk's
    core. The gradient keeps ``W``'s chunks: ``np.diff`` and ``np.pad`` on a dask array
    shift chunk boundaries by one pixel (slivers of one pixel), and the solver feeds the
    gradient back into the iterate, so the chunks would multiply every iteration.
    """

    has_grad = True

    def __init__(self, weight: float):
        self.weight = float(weight)

    @staticmethod
    def depth(ndim: int) -> dict[int, int]:
        """The halo the chunked value and gradient read: one pixel along y and x."""
        return {ndim - 2: 1, ndim - 1: 1}

    @staticmethod
    def _diffs(W):
        return np.diff(W, axis=-2), np.diff(W, axis=-1)

    def value(self, W) -> float:
        if is_dask(W):
            return self.weight * float(_sobolev_dask(W, _sobolev_sum, value=True).sum(
                dtype=np.float64).compute())
        dy, dx = self._diffs(W)
        return self.weight * (total(dy * dy) + total(dx * dx))

    def grad(self, W):
        if is_dask(W):
            return 2 * self.weight * _sobolev_dask(W, _sobolev_laplacian)
        dy, dx = self._diffs(W)
        return 2 * self.weight * (_diff_adjoint(dy, -2) + _diff_adjoint(dx, -1))

    def diag(self) -> float:
        """Largest diagonal entry of the Hessian, ``8 w`` (interior pixels)."""
        return 8 * self.weight

    def lipschitz(self) -> float:
        """Upper bound of the gradient's Lipschitz constant (``2 w ‖∇‖² ≤ 16 w``)."""
        return 16 * self.weight


def _sobolev_laplacian(We):
    r""":math:`\nabla^*\nabla W` on the core of a block ``We`` extended by one pixel on each
    side along the last two axes (:class:`Sobolev`, Notes)."""
    dy = np.diff(We[..., :, 1:-1], axis=-2)
    dx = np.diff(We[..., 1:-1, :], axis=-1)
    return -np.diff(dy, axis=-2) + -np.diff(dx, axis=-1)


def _sobolev_sum(We):
    r""":math:`\sum \|\nabla W\|^2` over the differences that start in the core of a block
    ``We`` extended by one pixel on each side along the last two axes, as a one-element
    block (the difference into a mirrored edge pixel is 0)."""
    dy = np.diff(We[..., 1:, 1:-1], axis=-2)
    dx = np.diff(We[..., 1:-1, 1:], axis=-1)
    s = total(dy * dy) + total(dx * dx)
    return np.full((1,) * We.ndim, s, np.float64)


def _sobolev_dask(W, kernel, value: bool = False):
    """``kernel`` of every chunk of dask ``W`` with its one-pixel y/x halo (mirrored at the
    image's edges): an array chunked like ``W`` or, with ``value``, one float64 per chunk."""
    import dask.array as da

    from .halo import plan

    nd = W.ndim
    W, halo = plan(W, Sobolev.depth(nd), "reflect", every_axis=True)
    We = halo.extend(W)
    if value:
        return da.map_blocks(kernel, We, chunks=tuple((1,) * n for n in W.numblocks),
                             dtype=np.float64, meta=np.empty((0,) * nd, np.float64))
    return da.map_blocks(kernel, We, chunks=W.chunks, dtype=W.dtype,
                         meta=np.empty((0,) * nd, W.dtype))


def _diff_adjoint(d, axis):
    """Adjoint of ``np.diff`` along ``axis``: ``-(d_i - d_{i-1})`` with zero ends."""
    pad = [(0, 0)] * d.ndim
    pad[axis] = (1, 1)
    p = np.pad(d, pad)
    return -np.diff(p, axis=axis)


class Positivity(Functional):
    r"""Indicator of the non-negative orthant, :math:`\iota_{x \ge 0}`: 0 where every entry is
    non-negative, :math:`+\infty` elsewhere; prox = projection ``max(v, 0)`` (in any diagonal
    metric)."""

    has_prox = True

    def value(self, x) -> float:
        return 0.0 if float(x.min()) >= 0 else math.inf

    def prox(self, v, step: float, metric=None):
        return np.maximum(v, 0)

    def prox_value(self, x) -> float:
        return 0.0  # a projection's output is feasible (no pass over x to check it)


class Zero(Functional):
    """φ = 0, the unconstrained case; prox = identity."""

    has_grad = True
    has_prox = True

    def value(self, x) -> float:
        return 0.0

    def grad(self, x):
        return 0 * x

    def prox(self, v, step: float, metric=None):
        return v
