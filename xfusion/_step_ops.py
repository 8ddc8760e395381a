r"""The element-wise pieces of one solver step, each in one pass over memory.

:class:`xfusion.solver.FISTA` needs, per iteration and besides the operators and the prox,

* the scaled gradient step :math:`v = y - s\,P \odot g` (:func:`scaled_step`);
* the two inner products of the step test, :math:`\langle d, P^{-1} d\rangle` and
  :math:`\langle g, d\rangle` with :math:`d = x_{k+1} - y` (:func:`step_products`);
* the floored momentum point :math:`\max(x + \beta (x - x'), \theta x)`
  (:func:`momentum_point`);
* the EM metric :math:`P = \max(x, \epsilon) / c` (:func:`em_metric`).

Written as array expressions these cost 15–20 passes over the cube (each temporary is written
and read back); on numpy arrays, with `numba <https://numba.pydata.org>`_ installed and
``XFUSION_JIT`` not ``0``, each is one compiled loop run on the block threads
(:func:`xfusion._threads.run_blocks`). Inner products are accumulated in float64 either way. Dask
arrays (and numpy without numba) take the array expressions, so every backend computes the same
values (the tests compare the two).
"""

from __future__ import annotations

import numpy as np

from ._threads import each_block
from .functionals import total
from .starlet import _jit as _kernels

__all__ = ["scaled_step", "step_products", "momentum_point", "em_metric", "mean_abs"]

#: fewest elements per block handed to one thread (a few hundred kB of each operand)
_BLOCK = 1 << 16


def _compiled(*arrays) -> bool:
    """True when every operand is a C-contiguous numpy array and the kernels are available."""
    if not _kernels.available():
        return False
    a0 = arrays[0]
    return all(type(a) is np.ndarray and a.flags.c_contiguous and a.dtype == a0.dtype
               and a.shape == a0.shape for a in arrays)


def scaled_step(y, g, P, step: float):
    r""":math:`v = y - s\,P \odot g` (``P`` None: :math:`y - s\,g`)."""
    if P is not None and _compiled(y, g, P):
        v = np.empty_like(y)
        yf, gf, pf, vf = y.reshape(-1), g.reshape(-1), P.reshape(-1), v.reshape(-1)
        s = y.dtype.type(step)
        each_block(lambda a, b: _k_step(yf[a:b], gf[a:b], pf[a:b], s, vf[a:b]), yf.size,
                   _BLOCK)
        return v
    return y - step * (g if P is None else P * g)


def step_products(x, y, g, P) -> tuple[float, float]:
    r"""``(⟨d, d/P⟩, ⟨g, d⟩)`` with :math:`d = x - y` (``P`` None: ``(⟨d, d⟩, ⟨g, d⟩)``)."""
    if P is not None and _compiled(x, y, g, P):
        xf, yf, gf, pf = x.reshape(-1), y.reshape(-1), g.reshape(-1), P.reshape(-1)
        parts = each_block(lambda a, b: _k_products(xf[a:b], yf[a:b], gf[a:b], pf[a:b]),
                           xf.size, _BLOCK)
        return (float(sum(p[0] for p in parts)), float(sum(p[1] for p in parts)))
    d = x - y
    return total(d * d if P is None else d * (d / P)), total(g * d)


def momentum_point(x, x_prev, beta: float, floor: float, moved: bool = False):
    r""":math:`y = \max(x + \beta (x - x'),\, \theta x)` with :math:`\theta` = ``floor``.

    With ``moved=True`` (numpy input only) returns ``(y, index, values)``: the flat indices of
    the voxels the floor raised and by how much, :math:`y - (x + \beta (x - x')) > 0` there, so
    that the caller can get the expected counts of ``y`` from those of the linear
    extrapolation plus a sparse correction.
    """
    if _compiled(x, x_prev):
        y = np.empty_like(x)
        xf, pf, yf = x.reshape(-1), x_prev.reshape(-1), y.reshape(-1)
        b, th = x.dtype.type(beta), x.dtype.type(floor)
        if not moved:
            each_block(lambda a, c: _k_momentum(xf[a:c], pf[a:c], b, th, yf[a:c]), xf.size,
                       _BLOCK)
            return y

        def block(a, c):
            idx = np.empty(c - a, np.int64)    # pages are touched only where written
            val = np.empty(c - a, x.dtype)
            k = _k_momentum_moved(xf[a:c], pf[a:c], b, th, yf[a:c], idx, val, a)
            return idx[:k], val[:k]

        parts = each_block(block, xf.size, _BLOCK)
        return (y, np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]))
    lin = x + beta * (x - x_prev)
    y = np.maximum(lin, floor * x)
    if not moved:
        return y
    lin, y = np.asarray(lin), np.asarray(y)
    index = np.flatnonzero(y > lin)
    return y, index, (y.reshape(-1)[index] - lin.reshape(-1)[index])


def mean_abs(x) -> float:
    """:math:`\frac1n\\sum_i |x_i|`, summed in float64 (one pass, no temporary)."""
    if _compiled(x) and x.size:
        xf = x.reshape(-1)
        parts = each_block(lambda a, b: _k_abs_sum(xf[a:b]), xf.size, _BLOCK)
        return float(sum(parts)) / xf.size
    return float(np.abs(x).mean(dtype=np.float64))


def em_metric(x, colsum, floor: float, dtype):
    r""":math:`\max(x, f) / c` in ``dtype`` (``f`` = ``floor``, ``c`` = ``colsum``, > 0)."""
    dt = np.dtype(dtype)
    if _compiled(x, colsum) and x.dtype == dt:
        P = np.empty_like(x)
        xf, cf, pf = x.reshape(-1), colsum.reshape(-1), P.reshape(-1)
        f = dt.type(floor)
        each_block(lambda a, b: _k_em(xf[a:b], cf[a:b], f, pf[a:b]), xf.size, _BLOCK)
        return P
    return (np.maximum(x, floor) / colsum).astype(dt, copy=False)


if _kernels.numba is not None:  # pragma: no branch
    _jit = _kernels.numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy")

    @_jit
    def _k_step(y, g, p, s, v):  # pragma: no cover - compiled
        for i in range(y.size):
            v[i] = y[i] - s * (p[i] * g[i])

    @_jit
    def _k_products(x, y, g, p):  # pragma: no cover - compiled
        dd = 0.0
        gd = 0.0
        for i in range(x.size):
            d = x[i] - y[i]
            dd += np.float64(d * (d / p[i]))
            gd += np.float64(g[i] * d)
        return dd, gd

    @_jit
    def _k_momentum(x, xp, b, th, y):  # pragma: no cover - compiled
        for i in range(x.size):
            xi = x[i]
            t = xi + b * (xi - xp[i])
            f = th * xi
            y[i] = t if t > f else f

    @_jit
    def _k_abs_sum(x):  # pragma: no cover - compiled
        t = 0.0
        for i in range(x.size):
            t += np.float64(abs(x[i]))
        return t

    @_jit
    def _k_em(x, c, f, p):  # pragma: no cover - compiled
        for i in range(x.size):
            xi = x[i]
            p[i] = (xi if xi > f else f) / c[i]

    @_jit
    def _k_momentum_moved(x, xp, b, th, y, idx, val, base):  # pragma: no cover - compiled
        k = 0
        for i in range(x.size):
            xi = x[i]
            t = xi + b * (xi - xp[i])
            f = th * xi
            if f > t:
                y[i] = f
                idx[k] = base + i
                val[k] = f - t
                k += 1
            else:
                y[i] = t
        return k
