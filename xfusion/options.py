"""The arguments of :func:`xfusion.fuse`, checked before any work is done.

Every argument is checked up front, and a bad one is refused with a :class:`OptionError`
(a ``ValueError``) that names the argument, the value given and the allowed range — never
discovered after minutes of set-up, or turned into a "converged" result that means nothing.
The ranges (docs/refusals.md):

=================  =========================================================================
argument           allowed
=================  =========================================================================
``rank``           a whole number 1 … min(L, Y's pixels), or ``"auto"`` (low-rank only)
``mu_sobolev``     finite, ≥ 0
``k``              finite, ≥ 0, or ``"auto"``
``k_range``        two finite numbers 0 ≤ k_min ≤ k_max
``J2``             a whole number 1 … log2(min(M, N)) (the coarsest scale fits the image)
``J1``             a whole number 1 … log2(L)
``tol``            finite, > 0
``patience``       a whole number ≥ 1, or None
``max_iter``       a whole number ≥ 1
``adapt_iter``     a whole number ≥ 0
``checkpoint_every``  a whole number ≥ 1
``eps``            finite, > 0
``init``           finite, ≥ 0, of Z's shape (energy, y, x)
``dtype``          float32 or float64
``spatial``        auto, dense, fft, separable
``metric``         em, jacobi or None
``acceleration``, ``progress``  True or False
=================  =========================================================================
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any, Literal

import numpy as np

__all__ = ["OptionError", "FuseOptions", "check_options", "whole", "real", "REGULARIZERS",
           "LOW_RANK", "DEFAULT_K_RANGE"]

#: the regularizers of :func:`xfusion.fuse` (each has a builder in :mod:`xfusion.builders`)
REGULARIZERS = ("w2d1d", "lrs", "lrw2d", "lr", "none")
#: those that fuse in a low-rank subspace, Z = V W
LOW_RANK = ("lrs", "lrw2d", "lr")
Regularizer = Literal["w2d1d", "lrs", "lrw2d", "lr", "none"]
#: default ``k_range`` of the brightness-dependent threshold, per regularizer (measured,
#: docs/solver.md); the others use the paper's (0.5, 3)
DEFAULT_K_RANGE = {"w2d1d": (4.0, 8.0), "lrw2d": (0.1, 1.0)}
PAPER_K_RANGE = (0.5, 3.0)

SPATIAL = ("auto", "dense", "fft", "separable")
METRICS = ("em", "jacobi")


class OptionError(ValueError):
    """An argument of :func:`xfusion.fuse` outside its allowed range (the message names the
    argument, the value and the range)."""


def whole(name: str, v, lo: int, hi: int | None = None) -> int:
    """``v`` as an int in ``[lo, hi]``, else :class:`OptionError` naming ``name``."""
    ok = (isinstance(v, numbers.Integral) and not isinstance(v, bool)) or (
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        and float(v).is_integer())
    if not ok or v < lo or (hi is not None and v > hi):
        rng = f"{lo} … {hi}" if hi is not None else f"≥ {lo}"
        raise OptionError(f"{name} must be a whole number {rng}, got {v!r}")
    return int(v)


def real(name: str, v, *, lo: float = -math.inf, strict: bool = False,
         extra: str = "") -> float:
    """``v`` as a finite float ≥ ``lo`` (> ``lo`` if ``strict``), else :class:`OptionError`."""
    given = v
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
    if ok:
        v = float(v)
        ok = v > lo if strict else v >= lo
    if not ok:
        rel = ">" if strict else "≥"
        raise OptionError(f"{name} must be a finite number {rel} {lo:g}{extra}, "
                          f"got {given!r}")
    return v


def _flag(name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise OptionError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def max_scales(n: int) -> int:
    """The most starlet scales an axis of ``n`` samples holds (2^J ≤ n, at least 1)."""
    return max(1, int(math.floor(math.log2(max(n, 1)))))


def check_options(regularizer, *, shape, n_pixels_Y, rank, mu_sobolev, k, k_range, J2, J1,
                  tol, patience, max_iter, init, dtype, progress, checkpoint_every, spatial,
                  adapt_iter, eps, metric, acceleration, **_) -> dict:
    """Check the arguments of :func:`xfusion.fuse` against ``shape = (L, M, N)`` of Z.

    Returns
    -------
    dict
        The normalised values (ints, floats, a numpy dtype, ``k_range`` as a tuple).

    Raises
    ------
    OptionError
        The first argument outside its range, named with the range.
    """
    L, M, N = shape
    if regularizer not in REGULARIZERS:
        raise OptionError(f"unknown regularizer {regularizer!r}; choose one of {REGULARIZERS}")
    out: dict = {}
    most = min(L, n_pixels_Y)
    if regularizer not in LOW_RANK:
        out["rank"] = rank           # unused by the full-cube regularizers
    elif isinstance(rank, str):
        if rank != "auto":
            raise OptionError(f"rank must be a whole number 1 … {most} or 'auto', got {rank!r}")
        out["rank"] = rank
    else:
        try:
            out["rank"] = whole("rank", rank, 1, most)
        except OptionError:
            raise OptionError(f"rank must be a whole number 1 … {most} (Y has {L} channels "
                              f"and {n_pixels_Y} pixels) or 'auto', got {rank!r}") from None
    out["mu_sobolev"] = real("mu_sobolev", mu_sobolev, lo=0.0)
    if isinstance(k, str):
        if k != "auto":
            raise OptionError(f"k must be a finite number ≥ 0 or 'auto', got {k!r}")
        out["k"] = k
    else:
        out["k"] = real("k", k, lo=0.0, extra=" or 'auto'")
    if k_range is not None:
        try:
            kr = tuple(k_range)
        except TypeError:
            kr = ()
        if len(kr) != 2:
            raise OptionError(f"k_range must be (k_min, k_max) with 0 ≤ k_min ≤ k_max, "
                              f"got {k_range!r}")
        lo_, hi_ = (real("k_range", v, lo=0.0) for v in kr)
        if lo_ > hi_:
            raise OptionError(f"k_range must be (k_min, k_max) with 0 ≤ k_min ≤ k_max, "
                              f"got {k_range!r}")
        out["k_range"] = (lo_, hi_)
    else:
        out["k_range"] = None
    out["J2"] = whole("J2", J2, 1, max_scales(min(M, N)))
    out["J1"] = whole("J1", J1, 1, max_scales(L))
    out["tol"] = real("tol", tol, lo=0.0, strict=True)
    out["patience"] = None if patience is None else whole("patience", patience, 1)
    out["max_iter"] = whole("max_iter", max_iter, 1)
    out["adapt_iter"] = whole("adapt_iter", adapt_iter, 0)
    out["checkpoint_every"] = whole("checkpoint_every", checkpoint_every, 1)
    out["eps"] = real("eps", eps, lo=0.0, strict=True)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise OptionError(f"dtype must be float32 or float64, got {dtype!r}")
    out["dtype"] = dt
    if spatial not in SPATIAL:
        raise OptionError(f"spatial must be one of {SPATIAL}, got {spatial!r}")
    if metric is not None and metric not in METRICS:
        raise OptionError(f"metric must be one of {METRICS} or None, got {metric!r}")
    out["progress"] = _flag("progress", progress)
    out["acceleration"] = _flag("acceleration", acceleration)
    if init is not None:
        out["init"] = check_init(init, (L, M, N))
    return out


def check_init(init, shape):
    """``init`` as an (energy, y, x) array of ``shape``, finite and ≥ 0 (numpy or dask)."""
    import xarray as xr

    from .operators.base import is_dask

    if isinstance(init, xr.DataArray):
        if set(init.dims) != {"energy", "y", "x"}:
            raise OptionError(f"init: dims {init.dims} are not (energy, y, x)")
        Z0 = init.transpose("energy", "y", "x").data
    else:
        Z0 = init if is_dask(init) else np.asarray(init)
    if tuple(Z0.shape) != tuple(shape):
        raise OptionError(f"init: shape {tuple(Z0.shape)} does not match Z's {tuple(shape)}")
    if not np.issubdtype(Z0.dtype, np.number) or np.issubdtype(Z0.dtype, np.complexfloating):
        raise OptionError(f"init: dtype {Z0.dtype} is not real numbers")
    bad = ~np.isfinite(Z0)
    neg = Z0 < 0
    if is_dask(Z0):
        import dask

        n_bad, n_neg = dask.compute(bad.sum(), neg.sum())
    else:
        n_bad, n_neg = bad.sum(), neg.sum()
    if n_bad:
        raise OptionError(f"init: {int(n_bad)} voxels are NaN or Inf")
    if n_neg:
        raise OptionError(f"init: {int(n_neg)} voxels are negative (min {float(Z0.min()):.3g});"
                          f" a flux cube is ≥ 0")
    return Z0


@dataclasses.dataclass(frozen=True)
class FuseOptions:
    """Every argument of :func:`xfusion.fuse` after checking, as one object.

    Built by :meth:`check` (which refuses a bad argument with :class:`OptionError`); the
    meaning of each field is documented in :func:`xfusion.fuse`. ``k_range`` holds the
    regularizer's default when none was given, ``metric`` the default ``"em"``.
    """

    regularizer: str = "w2d1d"
    rank: int | str = 10
    mu_sobolev: float = 3e-4
    k: float | str = "auto"
    k_range: tuple[float, float] = PAPER_K_RANGE
    J2: int = 2
    J1: int = 3
    tol: float = 1e-6
    patience: int | None = None
    max_iter: int = 3000
    init: Any = None
    dtype: np.dtype = np.dtype("float32")
    progress: bool = True
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int = 50
    resume: str | os.PathLike | None = None
    spatial: str = "auto"
    adapt_iter: int = 20
    eps: float = 1e-6
    metric: str = "em"
    acceleration: bool = True
    output: str | os.PathLike | None = None
    chunks: Any = None
    overwrite: bool = False

    @classmethod
    def check(cls, regularizer: str, *, shape: tuple[int, int, int], n_pixels_Y: int,
              **kwargs) -> FuseOptions:
        """Check ``fuse``'s arguments against Z's ``shape`` and Y's pixel count; the
        normalised options, or :class:`OptionError` naming the first bad one."""
        names = {f.name for f in dataclasses.fields(cls)} - {"regularizer"}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}")
        # (k_range: None means the regularizer's default)
        given = {f.name: f.default for f in dataclasses.fields(cls)} | {"k_range": None} | kwargs
        given.pop("regularizer")
        out = check_options(regularizer, shape=shape, n_pixels_Y=n_pixels_Y, **given)
        kr = out["k_range"] or DEFAULT_K_RANGE.get(regularizer, PAPER_K_RANGE)
        return cls(**{**given, **out, "regularizer": regularizer, "k_range": kr,
                      "metric": given["metric"] or "em"})

    @property
    def low_rank(self) -> bool:
        """Whether the regularizer fuses in a low-rank subspace."""
        return self.regularizer in LOW_RANK

    def replace(self, **changes) -> FuseOptions:
        """A copy with ``changes`` (not re-checked)."""
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict:
        """The settings that decide the result (what a checkpoint records and a resume must
        match)."""
        return {"regularizer": self.regularizer,
                "rank": self.rank if isinstance(self.rank, str) else int(self.rank),
                "mu_sobolev": float(self.mu_sobolev),
                "k": self.k if isinstance(self.k, str) else float(self.k),
                "k_range": [float(v) for v in self.k_range], "J2": int(self.J2),
                "J1": int(self.J1), "adapt_iter": int(self.adapt_iter), "eps": float(self.eps),
                "metric": self.metric, "acceleration": bool(self.acceleration),
                "dtype": str(self.dtype)}
