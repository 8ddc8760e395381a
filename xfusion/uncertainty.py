r"""Per-voxel uncertainty of a fused cube: parametric bootstrap (and a curvature estimate).

The fused cube :math:`\hat Z` minimises the Poisson negative log-likelihoods of both
instruments plus a regularizer. Its sampling distribution — how :math:`\hat Z` would scatter
over repeated observations of the same sky — is estimated by a *parametric bootstrap*: the
fitted expected counts :math:`\hat\mu_X = \mu_X(\hat Z)`, :math:`\hat\mu_Y = \mu_Y(\hat Z)`
stand in for the truth (plus the problem's known backgrounds :math:`B_X, B_Y`, if any:
the draws are Poisson(μ̂ + B) and each refit models the same background), new counts are drawn
from them,

.. math::

    X^{*b} \sim \mathrm{Poisson}(\hat\mu_X),\qquad Y^{*b} \sim \mathrm{Poisson}(\hat\mu_Y),
    \qquad b = 1 \dots B,

and each pair is fused again with the settings of :math:`\hat Z` (warm-started from it),
giving :math:`Z^{*b}`. The per-voxel error is the spread of the refits,

.. math::

    \sigma_i = \Bigl[\tfrac{1}{B-1}\sum_b (Z^{*b}_i - \bar Z^*_i)^2\Bigr]^{1/2},

and the error of any linear summary :math:`s = a^\top Z` (e.g. a region's spectrum) is the
spread of :math:`a^\top Z^{*b}`, which keeps the correlations between voxels
(:func:`region_error`). See docs/uncertainty.md for what this captures (variance, including
that of the low-rank subspace learnt from Y) and what it does not (the regularizer's bias),
the optional bias-inflated errors, the cost and the calibration on the simulated scenarios.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Literal

import numpy as np
import xarray as xr

from .options import REGULARIZERS, OptionError

__all__ = ["bootstrap", "uncertainty", "region_error", "region_spectrum", "fit_settings"]

_LOW_RANK = ("lrs", "lrw2d", "lr")
_PIX = ("energy", "y", "x")


def _coords(Z: xr.DataArray, dims: tuple[str, ...]) -> dict:
    """``Z``'s coordinates that live on ``dims`` (others, e.g. bounds, are left out)."""
    return {c: Z.coords[c] for c in Z.coords if set(Z.coords[c].dims) <= set(dims)}


# -- checks ---------------------------------------------------------------------------------
def _check_n(n_draws: Any, name: str = "n_draws") -> int:
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise OptionError(f"{name} must be a whole number ≥ 2 (a standard deviation needs two "
                          f"draws), got {n_draws!r}")
    return int(n_draws)


def _check_cube(ds: xr.Dataset, Z: Any, name: str = "Z") -> xr.DataArray:
    """``Z`` as a DataArray (energy, y, x) on ``ds``'s grid, finite and ≥ 0."""
    if not isinstance(Z, xr.DataArray):
        raise OptionError(f"{name} must be an xarray.DataArray (energy, y, x) such as "
                          f"xf.fuse returns, got {type(Z).__name__}")
    if set(Z.dims) != set(_PIX):
        raise OptionError(f"{name}: dims {Z.dims} are not (energy, y, x)")
    Z = Z.transpose(*_PIX)
    shape = tuple(ds.sizes[d] for d in _PIX)
    if Z.shape != shape:
        raise OptionError(f"{name}: shape {Z.shape} is not on the problem's grid "
                          f"(energy, y, x) = {shape}")
    for d in _PIX:
        if d in Z.coords and d in ds.coords:
            a, b = np.asarray(Z[d].values, float), np.asarray(ds[d].values, float)
            if not np.allclose(a, b, rtol=1e-9, atol=1e-12):
                raise OptionError(f"{name}: its {d!r} coordinate differs from the problem's "
                                  f"(not on ds's grid)")
    z = np.asarray(Z.values)
    if not np.issubdtype(z.dtype, np.floating) and not np.issubdtype(z.dtype, np.integer):
        raise OptionError(f"{name}: dtype {z.dtype} is not real numbers")
    bad = int(np.count_nonzero(~np.isfinite(z)))
    if bad:
        raise OptionError(f"{name}: {bad} voxels are NaN or Inf; a fitted cube is finite")
    if (z < 0).any():
        raise OptionError(f"{name}: {int((z < 0).sum())} voxels are negative "
                          f"(min {float(z.min()):.3g}); a flux cube is ≥ 0")
    return Z


def _check_draws(draws: Any, Z: xr.DataArray | None = None, name: str = "draws") -> xr.DataArray:
    if not isinstance(draws, xr.DataArray) or "draw" not in draws.dims:
        raise OptionError(f"{name} must be the DataArray (draw, energy, y, x) that "
                          f"xf.uncertainty.bootstrap returns")
    if set(draws.dims) != {"draw", *_PIX}:
        raise OptionError(f"{name}: dims {draws.dims} are not (draw, energy, y, x)")
    _check_n(draws.sizes["draw"], f"{name}: the number of draws")
    draws = draws.transpose("draw", *_PIX)
    if Z is not None and draws.shape[1:] != Z.shape:
        raise OptionError(f"{name}: cubes of shape {draws.shape[1:]}, Z has {Z.shape}")
    if not np.isfinite(np.asarray(draws.values)).all():
        raise OptionError(f"{name}: contains NaN or Inf")
    return draws


# -- the settings of Z ----------------------------------------------------------------------
def fit_settings(Z: xr.DataArray, regularizer: str | None = None, **overrides) -> dict:
    """The :func:`xfusion.fuse` keyword arguments that reproduce ``Z``'s fit, from its attrs.

    Parameters
    ----------
    Z : xarray.DataArray
        A result of :func:`xfusion.fuse` (its attrs record the regularizer and every
        hyperparameter).
    regularizer : str, optional
        Required when ``Z`` carries no ``regularizer`` attr (a cube not made by ``fuse``);
        otherwise it must agree with it.
    **overrides
        Any :func:`xfusion.fuse` argument, replacing what the attrs say (e.g. ``rank=``,
        ``max_iter=``).

    Returns
    -------
    dict
        ``regularizer`` and the hyperparameters: ``rank`` (the rank *used*, also when ``Z``
        was fused with ``rank="auto"``), ``mu_sobolev``, ``k``, ``k_range``, ``J2``, ``J1``,
        ``adapt_iter``, ``metric``, ``acceleration``, ``dtype``, ``tol``, ``patience``,
        ``max_iter``, ``spatial``.
    """
    a = dict(Z.attrs)
    reg = a.get("regularizer")
    if regularizer is not None:
        if regularizer not in REGULARIZERS:
            raise OptionError(f"regularizer: unknown {regularizer!r}; choose one of "
                              f"{REGULARIZERS}")
        if reg is not None and reg != regularizer:
            raise OptionError(f"regularizer={regularizer!r} but Z was fused with {reg!r} "
                              f"(Z.attrs['regularizer'])")
        reg = regularizer
    if reg is None:
        raise OptionError("Z.attrs has no 'regularizer' (Z was not made by xf.fuse): pass "
                          "regularizer= (and any hyperparameter that differs from fuse's "
                          "defaults) explicitly")
    if reg not in REGULARIZERS:
        raise OptionError(f"Z.attrs['regularizer'] = {reg!r} is not one of {REGULARIZERS}")
    kw: dict = {"regularizer": reg}
    if reg in _LOW_RANK:
        if "rank" in a:
            kw["rank"] = int(a["rank"])
        elif "rank" not in overrides:
            raise OptionError(f"Z.attrs has no 'rank' for the low-rank regularizer {reg!r}: "
                              f"pass rank= explicitly")
    if reg == "lrs" and "mu_sobolev" in a:
        kw["mu_sobolev"] = float(a["mu_sobolev"])
    if reg in ("w2d1d", "lrw2d"):
        if "k" in a:
            kw["k"] = a["k"] if isinstance(a["k"], str) else float(a["k"])
        if "k_min" in a and "k_max" in a:
            kw["k_range"] = (float(a["k_min"]), float(a["k_max"]))
        for name in ("J2", "J1", "adapt_iter") if reg == "w2d1d" else ("J2", "adapt_iter"):
            if name in a:
                kw[name] = int(a[name])
    if "metric" in a:
        kw["metric"] = str(a["metric"])
    if "acceleration" in a:
        kw["acceleration"] = bool(a["acceleration"])
    if "dtype" in a:
        kw["dtype"] = str(a["dtype"])
    if "tol" in a:
        kw["tol"] = float(a["tol"])
    if "patience" in a:   # fuse records its default patience too; held_patience marks None
        kw["patience"] = None if "held_patience" in a else int(a["patience"])
    if "max_iter" in a:
        kw["max_iter"] = int(a["max_iter"])
    if a.get("spatial_method") in ("dense", "fft", "separable"):
        kw["spatial"] = a["spatial_method"]
    kw.update(overrides)
    return kw


def _curvature_at(ds: xr.Dataset, Z: np.ndarray, kw: dict, V: np.ndarray) -> float:
    """The data term's mean curvature at the warm start ``Z`` (what :func:`xfusion.fuse`
    multiplies ``mu_sobolev`` by when started from ``init=Z``), for the subspace ``V``."""
    from .builders import data_curvature
    from .likelihood import PoissonLikelihood
    from .operators import ForwardModel
    from .parametrization import LowRank

    dtype = np.dtype(kw.get("dtype", "float32"))
    model = ForwardModel.from_dataset(ds, spatial=kw.get("spatial", "auto"))
    param = LowRank(model, V, dtype)
    x0 = param.from_cube(Z.astype(dtype))
    x0 = np.maximum(x0, 1e-3 * float(np.abs(x0).mean())).astype(dtype)
    bkg = {k: ds[k].data for k in ("background_X", "background_Y") if k in ds.data_vars}
    likelihood = PoissonLikelihood(param, ds.X.data, ds.Y.data, kw.get("eps", 1e-6), dtype,
                                   **bkg)
    return float(data_curvature(likelihood, x0, np.random.default_rng(0)))


def _subspace(ds: xr.Dataset, rank: int) -> np.ndarray:
    """The NMF subspace :func:`xfusion.fuse` learns from ``ds``'s Y at ``rank``."""
    from .parametrization import nmf_subspace

    aY = np.asarray(ds.arf_Y.values)
    aY = aY if aY.ndim == 1 else aY.mean(axis=(1, 2))
    bY = np.asarray(ds.background_Y.values) if "background_Y" in ds.data_vars else None
    return nmf_subspace(np.asarray(ds.Y.values), float(ds.Y.attrs["exposure"]) * aY, rank,
                        background=bY)


def _held_sobolev(ds: xr.Dataset, Z: np.ndarray, kw: dict) -> dict:
    """``kw`` with ``mu_sobolev`` rescaled so that a refit of ``ds`` warm-started from ``Z``
    applies the absolute Sobolev weight ``kw["_sobolev_weight"]`` (``Z``'s).

    :func:`xfusion.fuse` sets the weight to ``mu_sobolev`` times the data term's mean
    curvature *at its starting point*, for the subspace it learns from ``ds``'s Y. At
    ``init=Z`` that curvature is not the one at the default start (measured: ~17× larger on
    ``gaussian_1kev_rebin`` at scale 0.5), so the same ``mu_sobolev`` would be another
    estimator. The curvature is computed here as ``fuse`` will (same subspace, same start,
    same random direction), at the cost of one more NMF of Y per refit.
    """
    out = {k: v for k, v in kw.items() if k != "_sobolev_weight"}
    w = kw.get("_sobolev_weight")
    if w is None:
        return out
    V = _subspace(ds, int(kw["rank"]))
    c = _curvature_at(ds, Z, kw, V)
    if c > 0 and math.isfinite(c):
        out["mu_sobolev"] = float(w) / c
    return out


# -- the bootstrap --------------------------------------------------------------------------
def _fit_kwargs(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if not k.startswith("_")}


def _draw_problem(ds: xr.Dataset, mu_X: np.ndarray, mu_Y: np.ndarray, seed: int,
                  i: int) -> xr.Dataset:
    """Problem ``ds`` with counts drawn from the expected counts (draw ``i`` of ``seed``)."""
    rng = np.random.default_rng([int(seed), int(i)])
    X = rng.poisson(mu_X).astype(np.int64)
    Y = rng.poisson(mu_Y).astype(np.int64)
    return ds.assign(X=ds.X.copy(data=X), Y=ds.Y.copy(data=Y))


def _refit(i: int, ds: xr.Dataset, Z: np.ndarray, mu_X: np.ndarray, mu_Y: np.ndarray,
           seed: int, kw: dict, single_thread: bool = False) -> tuple[np.ndarray, dict]:
    """Draw ``i``: new counts, fused again from ``init=Z``; returns (Z*, its run record)."""
    import contextlib

    from .fusion import FitWarning, fuse

    t0 = time.perf_counter()   # the refit's cost: drawing, the held weight, the fit
    dsb = _draw_problem(ds, mu_X, mu_Y, seed, i)
    kw = _held_sobolev(dsb, Z, kw)
    limit = contextlib.nullcontext()
    if single_thread:
        try:
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(limits=1)
        except ImportError:  # pragma: no cover - optional
            pass
    # FitWarnings of the refits are silenced in this process (warnings filters are not
    # thread-safe, so a threaded worker leaves them alone) and counted from the attrs
    quiet = contextlib.nullcontext() if single_thread else warnings.catch_warnings()
    with limit, quiet:
        if not single_thread:
            warnings.simplefilter("ignore", FitWarning)
        Zb = fuse(dsb, init=Z, progress=False, **_fit_kwargs(kw))
    rec = {"iterations": int(Zb.attrs["iterations"]), "converged": int(Zb.attrs["converged"]),
           "wall_time": float(time.perf_counter() - t0), "fit_warning": _misfit(Zb.attrs)}
    if "sobolev_weight" in Zb.attrs:
        rec["sobolev_weight"] = float(Zb.attrs["sobolev_weight"])
    return np.asarray(Zb.values), rec


def _misfit(attrs: dict) -> int:
    """1 if :func:`xfusion.fuse` warned (:class:`xfusion.FitWarning`) for these attrs."""
    from .fusion import misfits

    return int(bool(misfits(attrs)))


class _Progress:
    def __init__(self, n: int, stream=None):
        self.n, self.stream, self.t0 = n, stream or sys.stderr, time.perf_counter()

    def __call__(self, done: int) -> None:
        el = time.perf_counter() - self.t0
        eta = f"{el / done * (self.n - done):6.1f} s" if done else "     —  "
        self.stream.write(f"\rbootstrap: draw {done}/{self.n}  elapsed {el:6.1f} s  "
                          f"eta {eta} ")
        self.stream.flush()
        if done == self.n:
            self.stream.write("\n")
            self.stream.flush()


def bootstrap(ds: xr.Dataset, Z: xr.DataArray, n_draws: int = 16, seed: int = 0,
              progress: bool = True, client=None, max_iter: int | None = None,
              **fuse_overrides) -> xr.DataArray:
    r"""Parametric bootstrap of a fused cube: ``n_draws`` refits of Poisson redraws.

    For :math:`b = 1 \dots B`: draw :math:`X^{*b} \sim \mathrm{Poisson}(\mu_X(\hat Z) + B_X)` and
    :math:`Y^{*b} \sim \mathrm{Poisson}(\mu_Y(\hat Z) + B_Y)` (:math:`B`: the problem's known
    backgrounds, kept in each redrawn problem; 0 without them), and fuse them with ``Z``'s settings
    (:func:`fit_settings`), warm-started from ``Z``. The refits :math:`Z^{*b}` sample the
    estimator's distribution around :math:`\hat Z`: their spread estimates its *variance*;
    the regularizer's *bias* (the shrinkage towards smooth / sparse / low-rank cubes) is not
    in it — :math:`\bar Z^* - \hat Z` estimates the bias of the refits around :math:`\hat Z`
    (see :func:`uncertainty`'s ``correction``).

    What is refitted and what is held:

    * Low-rank regularizers (``lrs``, ``lrw2d``, ``lr``): the subspace V is learnt again from
      each :math:`Y^{*b}` (inside :func:`xfusion.fuse`), so the errors include the
      subspace's variability. The rank is held at the one ``Z`` used (a ``rank="auto"`` fit
      is refitted at its chosen rank).
    * ``lrs``: the *absolute* Sobolev weight of ``Z`` (``attrs["sobolev_weight"]``) is held.
      ``fuse`` scales ``mu_sobolev`` by the data term's curvature at the starting point,
      which at ``init=Z`` is not the default start's; ``mu_sobolev`` is rescaled for the
      refits so that they apply ``Z``'s weight (each refit's weight is recorded).
    * ``w2d1d`` / ``lrw2d``: the thresholds are re-adapted from the warm start for
      ``adapt_iter`` iterations, as in the first fit, then frozen.

    Parameters
    ----------
    ds : xarray.Dataset
        The problem ``Z`` was fused from.
    Z : xarray.DataArray
        The fused cube (:func:`xfusion.fuse`); its attrs give the settings of the refits.
    n_draws : int
        Number of bootstrap draws B (≥ 2; 16 gives σ to ~18 % per voxel, 1/√(2(B−1))).
    seed : int
        Draw ``b`` uses ``numpy.random.default_rng([seed, b])``: the same draws whatever
        ``n_draws`` and with or without ``client``.
    progress : bool
        A line ``bootstrap: draw i/n, elapsed, eta`` on stderr.
    client : dask.distributed.Client, optional
        Run the draws in parallel as ``client.map`` tasks (one refit per task, BLAS on one
        thread), otherwise one after the other in this process.
    max_iter : int, optional
        Iteration cap of each refit (default: ``Z``'s).
    **fuse_overrides
        Any :func:`xfusion.fuse` argument replacing ``Z``'s recorded setting, and
        ``regularizer=`` (required when ``Z`` has no attrs, i.e. was not made by ``fuse``).

    Returns
    -------
    xarray.DataArray
        ``Z_draws`` with dims (``draw``, ``energy``, ``y``, ``x``) and ``Z``'s coordinates,
        plus per-draw coordinates ``iterations``, ``converged``, ``wall_time`` (s) and
        ``fit_warning`` (1 if the refit raised :class:`xfusion.FitWarning`); attrs
        ``method``, ``n_draws``, ``seed``, the settings of the refits (``fit_*``), and
        ``first_fit_time`` (``Z``'s wall time).

    Raises
    ------
    xfusion.OptionError
        ``n_draws`` < 2, ``Z`` not a (energy, y, x) DataArray on ``ds``'s grid, ``Z`` with NaN
        or negative voxels, ``Z`` without a ``regularizer`` attr and none given.
    """
    from .model import forward
    from .problem import validate

    n = _check_n(n_draws)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed must be a whole number ≥ 0, got {seed!r}")
    validate(ds)
    Z = _check_cube(ds, Z)
    kw = _refit_settings(ds, Z, fuse_overrides, max_iter)
    z = np.asarray(Z.values)
    mu_X, mu_Y = (np.clip(np.asarray(m.values, np.float64), 0, None) for m in forward(ds, Z))
    results = _run_refits(n, ds, z, mu_X, mu_Y, int(seed), kw, client, progress)
    return _draws_array(Z, results, kw, int(seed))


def _refit_settings(ds: xr.Dataset, Z: xr.DataArray, fuse_overrides: dict,
                    max_iter: int | None) -> dict:
    """The :func:`xfusion.fuse` settings of the bootstrap's refits: ``Z``'s (see
    :func:`fit_settings`) with the overrides, in-range J2 / J1 where unused, and ``Z``'s
    absolute Sobolev weight held for ``lrs``."""
    fuse_overrides = dict(fuse_overrides)
    regularizer = fuse_overrides.pop("regularizer", None)
    for bad in ("init", "progress", "output", "checkpoint", "resume", "client"):
        if bad in fuse_overrides:
            raise OptionError(f"{bad}: set by the bootstrap itself, not a fuse override")
    if max_iter is not None:
        fuse_overrides["max_iter"] = max_iter
    kw = fit_settings(Z, regularizer, **fuse_overrides)
    # fuse checks J2 / J1 against the grid even where the regularizer does not use them (and
    # then Z's attrs do not record them): keep the unused ones within range
    from .options import max_scales

    if kw["regularizer"] != "w2d1d":
        kw.setdefault("J1", min(3, max_scales(ds.sizes["energy"])))
        if kw["regularizer"] != "lrw2d":
            kw.setdefault("J2", min(2, max_scales(min(ds.sizes["y"], ds.sizes["x"]))))
    if (kw["regularizer"] == "lrs" and "sobolev_weight" in Z.attrs
            and "mu_sobolev" not in fuse_overrides):
        kw["_sobolev_weight"] = float(Z.attrs["sobolev_weight"])
    return kw


def _run_refits(n: int, ds: xr.Dataset, z: np.ndarray, mu_X: np.ndarray, mu_Y: np.ndarray,
                seed: int, kw: dict, client, progress: bool) -> list:
    """The ``n`` refits (:func:`_refit`), one after the other or as ``client.map`` tasks,
    with a progress line; their results in draw order."""
    show = _Progress(n) if progress else None
    if show:
        show(0)
    if client is None:
        results = []
        for i in range(n):
            results.append(_refit(i, ds, z, mu_X, mu_Y, seed, kw))
            if show:
                show(i + 1)
        return results
    from distributed import as_completed

    args = client.scatter([ds, z, mu_X, mu_Y], broadcast=True)
    futs = client.map(_refit, range(n), ds=args[0], Z=args[1], mu_X=args[2],
                      mu_Y=args[3], seed=seed, kw=kw, single_thread=True,
                      pure=False)
    for done, _ in enumerate(as_completed(futs), 1):
        if show:
            show(done)
    return client.gather(futs)


def _draws_array(Z: xr.DataArray, results: list, kw: dict, seed: int) -> xr.DataArray:
    """The refits as ``Z_draws`` (draw, energy, y, x) with their per-draw records as
    coordinates and the refits' settings as attrs."""
    n = len(results)
    cubes = np.stack([r[0] for r in results])
    recs = [r[1] for r in results]
    coords = _coords(Z, ("draw", *_PIX))
    coords["draw"] = np.arange(n)
    for name in ("iterations", "converged", "wall_time", "fit_warning"):
        coords[name] = ("draw", np.array([r[name] for r in recs]))
    attrs = {"units": Z.attrs.get("units", "photon cm-2 s-1"),
             "long_name": "bootstrap refits of the fused cube",
             "method": "parametric bootstrap", "n_draws": n, "seed": seed,
             **{f"fit_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()
                if not k.startswith("_")},
             "first_fit_time": float(Z.attrs.get("wall_time", float("nan")))}
    if all("sobolev_weight" in r for r in recs):
        coords["sobolev_weight"] = ("draw", np.array([r["sobolev_weight"] for r in recs]))
        if "sobolev_weight" in Z.attrs:
            attrs["sobolev_weight"] = float(Z.attrs["sobolev_weight"])
    return xr.DataArray(cubes, dims=("draw", *_PIX), coords=coords, attrs=attrs,
                        name="Z_draws")


# -- per-voxel errors -----------------------------------------------------------------------
def _fisher_std(ds: xr.Dataset, Z: xr.DataArray, kw: dict) -> np.ndarray:
    r"""Per-voxel :math:`[\mathrm{diag}\,F]^{-1/2}` of the Poisson likelihood at ``Z``.

    :math:`F = K^\top \mathrm{diag}(1/\mu) K` (both instruments), μ the total expected counts
    (with the known backgrounds); for low-rank fits in the coefficients W of :math:`Z = VW`,
    mapped back as :math:`\sum_r V_{Er}^2 / F_{rr}(p)`.
    """
    from .model import forward
    from .operators import ForwardModel
    from .parametrization import FullCube, LowRank

    model = ForwardModel.from_dataset(ds, spatial=kw.get("spatial", "auto"))
    z = np.asarray(Z.values, np.float64)
    mx, my = (np.asarray(m.values, np.float64)
              for m in forward(ds, z, spatial=kw.get("spatial", "auto")))
    hX = 1.0 / np.maximum(mx, 1e-12)
    hY = 1.0 / np.maximum(my, 1e-12)
    if kw["regularizer"] in _LOW_RANK:
        V = _subspace(ds, int(kw["rank"]))
        param = LowRank(model, V, np.float64)
        F = np.asarray(param.curvature(hX, hY), np.float64)         # (r, M, N)
        var = np.einsum("er,rmn->emn", V**2, 1.0 / np.maximum(F, 1e-300))
    else:
        F = np.asarray(FullCube(model).curvature(hX, hY), np.float64)
        var = 1.0 / np.maximum(F, 1e-300)
    return np.sqrt(var)


def uncertainty(ds: xr.Dataset, Z: xr.DataArray, n_draws: int = 16,
                draws: xr.DataArray | None = None,
                method: Literal["bootstrap", "fisher"] = "bootstrap",
                correction: Literal["bias"] | None = None, **kw) -> xr.DataArray:
    r"""Per-voxel standard error of a fused cube, as a DataArray like ``Z``.

    ``method="bootstrap"`` (default): the standard deviation over the parametric-bootstrap
    refits :math:`Z^{*b}` (:func:`bootstrap`),

    .. math:: \sigma_i = \Bigl[\tfrac{1}{B-1}\sum_b (Z^{*b}_i - \bar Z^*_i)^2\Bigr]^{1/2}.

    This is the estimator's *variance* only. With ``correction="bias"`` the bootstrap's own
    estimate of the bias, :math:`\hat b_i = \bar Z^*_i - \hat Z_i`, is added in quadrature
    (its own noise :math:`\sigma_i^2/B` subtracted, floored at 0):

    .. math:: \sigma_i' = \bigl[\sigma_i^2 + \max(\hat b_i^2 - \sigma_i^2/B,\,0)\bigr]^{1/2},

    i.e. a root-mean-square error assuming the regularizer pulls the truth towards
    :math:`\hat Z` as it pulls :math:`\hat Z` towards :math:`\bar Z^*`. It widens the
    intervals where the regularizer shrinks most (lines, edges); see docs/uncertainty.md for
    its calibration.

    ``method="fisher"``: :math:`[\mathrm{diag}\,F(\hat Z)]^{-1/2}`, with
    :math:`F = K^\top\mathrm{diag}(1/\mu)K` the Fisher information of both Poisson
    likelihoods (in W for low-rank fits). No refits (milliseconds), but it ignores the
    regularizer and the correlations between voxels, and is *not* calibrated for regularized
    fits (docs/uncertainty.md); a reference only.

    Parameters
    ----------
    ds : xarray.Dataset
        The problem ``Z`` was fused from.
    Z : xarray.DataArray
        The fused cube (:func:`xfusion.fuse`).
    n_draws : int
        Bootstrap draws when ``draws`` is not given (≥ 2).
    draws : xarray.DataArray, optional
        Refits from :func:`bootstrap` to use instead of refitting.
    method : {"bootstrap", "fisher"}
    correction : {"bias"}, optional
        Add the bootstrap bias estimate in quadrature (bootstrap only).
    **kw
        Passed to :func:`bootstrap` (``seed``, ``progress``, ``client``, ``max_iter``, fuse
        overrides).

    Returns
    -------
    xarray.DataArray
        ``Z_err``: dims, coords as ``Z``, units photon cm⁻² s⁻¹, attrs ``method``,
        ``n_draws``, ``seed``, ``correction`` and the settings of the fit (``fit_*``).
    """
    if method not in ("bootstrap", "fisher"):
        raise OptionError(f"method must be 'bootstrap' or 'fisher', got {method!r}")
    if correction not in (None, "bias"):
        raise OptionError(f"correction must be None or 'bias', got {correction!r}")
    Z = _check_cube(ds, Z)
    attrs: dict = {"units": Z.attrs.get("units", "photon cm-2 s-1")}
    if method == "fisher":
        if correction is not None:
            raise OptionError("correction: only for method='bootstrap'")
        reg = kw.pop("regularizer", None)
        kws = fit_settings(Z, reg, **{k: v for k, v in kw.items() if k in ("rank", "spatial")})
        err = _fisher_std(ds, Z, kws)
        attrs.update(long_name="standard error of the fused flux (inverse Fisher diagonal)",
                     method="fisher",
                     **{f"fit_{k}": v for k, v in kws.items() if not isinstance(v, tuple)})
        return xr.DataArray(err, dims=_PIX, coords=_coords(Z, _PIX),
                            attrs=attrs, name="Z_err")
    if draws is None:
        draws = bootstrap(ds, Z, n_draws=n_draws, **kw)
    draws = _check_draws(draws, Z)
    d = np.asarray(draws.values, np.float64)
    B = d.shape[0]
    sd = d.std(axis=0, ddof=1)
    if correction == "bias":
        b = d.mean(axis=0) - np.asarray(Z.values, np.float64)
        sd = np.sqrt(sd**2 + np.maximum(b**2 - sd**2 / B, 0.0))
    attrs.update({"long_name": "standard error of the fused flux per voxel",
                  "method": "parametric bootstrap", "n_draws": int(B),
                  "seed": draws.attrs.get("seed"), "correction": correction or "none"})
    attrs.update({k: v for k, v in draws.attrs.items() if k.startswith("fit_")})
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return xr.DataArray(sd, dims=_PIX, coords=_coords(Z, _PIX),
                        attrs=attrs, name="Z_err")


# -- regions --------------------------------------------------------------------------------
def _mask(region: Any, like: xr.DataArray) -> np.ndarray:
    """A boolean (y, x) mask of the pixels ``region`` selects on ``like``'s images
    (:func:`xfusion.regions.region_mask`: masks, pixel lists, sky circles, regions objects)."""
    from .regions import RegionError, region_mask

    try:
        return np.asarray(region_mask(like, region).values, bool)
    except RegionError as e:
        raise OptionError(str(e)) from None


def _region_sum(cube: xr.DataArray, m: np.ndarray, rebin: int | None) -> xr.DataArray:
    s = (cube * xr.DataArray(m, dims=("y", "x"))).sum(("y", "x"))
    if rebin is not None:
        if isinstance(rebin, bool) or not isinstance(rebin, (int, np.integer)) or rebin < 1 \
                or cube.sizes["energy"] % rebin:
            raise OptionError(f"rebin must be a whole number ≥ 1 dividing the "
                              f"{cube.sizes['energy']} channels, got {rebin!r}")
        # bin centres: the mean; bin edges (energy_lo / energy_hi): the outer ones
        funcs = {c: {"energy_lo": "min", "energy_hi": "max"}.get(c, "mean") for c in s.coords
                 if "energy" in s.coords[c].dims}
        s = s.coarsen(energy=int(rebin), coord_func=funcs).sum()
    return s


def region_error(draws: xr.DataArray, region: Any, rebin: int | None = None,
                 Z: xr.DataArray | None = None,
                 correction: Literal["bias"] | None = None) -> xr.DataArray:
    r"""Standard error of a region's summed spectrum, from bootstrap refits.

    .. math:: \sigma_S(E) = \mathrm{std}_b\Bigl(\sum_{p \in R} Z^{*b}(E, p)\Bigr)

    (ddof = 1). Summing each draw before taking the spread keeps the correlations between
    voxels (the regularizer makes neighbours move together, so this is generally larger
    than :math:`\sqrt{\sum_p \sigma_p^2}`).

    Parameters
    ----------
    draws : xarray.DataArray
        Refits (draw, energy, y, x) from :func:`bootstrap`.
    region : boolean (y, x) mask (DataArray or array) or sequence of (iy, ix)
        The pixels summed.
    rebin : int, optional
        Also sum ``rebin`` consecutive channels (energy coordinate: their mean).
    Z : xarray.DataArray, optional
        The fused cube the draws are refits of; needed for ``correction="bias"``.
    correction : {"bias"}, optional
        Add the bootstrap's bias estimate of the summed spectrum in quadrature,
        :math:`\sigma_S'^2 = \sigma_S^2 + \max(\hat b_S^2 - \sigma_S^2/B, 0)` with
        :math:`\hat b_S = \overline{S^*} - S(\hat Z)` (see :func:`uncertainty`).

    Returns
    -------
    xarray.DataArray
        ``flux_err`` (energy,), photons cm⁻² s⁻¹ per (rebinned) channel over the region.
    """
    if correction not in (None, "bias"):
        raise OptionError(f"correction must be None or 'bias', got {correction!r}")
    if correction is not None and Z is None:
        raise OptionError("correction='bias' needs Z= (the cube the draws are refits of)")
    draws = _check_draws(draws)
    m = _mask(region, draws.isel(draw=0))
    s = _region_sum(draws.astype(np.float64), m, rebin)
    out = s.std("draw", ddof=1)
    if correction == "bias":
        if not isinstance(Z, xr.DataArray) or set(Z.dims) != set(_PIX) \
                or Z.transpose(*_PIX).shape != draws.shape[1:]:
            raise OptionError(f"Z: must be a DataArray (energy, y, x) of the draws' shape "
                              f"{draws.shape[1:]}")
        b = s.mean("draw") - _region_sum(Z.transpose(*_PIX).astype(np.float64), m, rebin)
        B = draws.sizes["draw"]
        out = np.sqrt(out**2 + np.maximum(b.values**2 - out**2 / B, 0.0))
    keep = {c: out.coords[c] for c in out.coords if out.coords[c].dims == ("energy",)}
    return xr.DataArray(out.values, dims=("energy",), coords=keep, name="flux_err",
                        attrs={"units": draws.attrs.get("units", "photon cm-2 s-1"),
                               "long_name": "standard error of the region's summed flux",
                               "n_pixels": int(m.sum()), "n_draws": int(draws.sizes["draw"]),
                               "correction": correction or "none"})


def region_spectrum(Z: xr.DataArray, region: Any, draws: xr.DataArray | None = None,
                    rebin: int | None = None,
                    correction: Literal["bias"] | None = None) -> xr.Dataset:
    """A region's summed spectrum ``flux`` (energy,) and, with ``draws``, its ``flux_err``
    (:func:`region_error`).

    Parameters
    ----------
    Z : xarray.DataArray
        Fused cube (energy, y, x).
    region : boolean (y, x) mask or sequence of (iy, ix)
    draws : xarray.DataArray, optional
        Bootstrap refits of ``Z`` (:func:`bootstrap`); without them there is no ``flux_err``.
    rebin : int, optional
        Sum this many consecutive channels.
    correction : {"bias"}, optional
        Bias-inflated ``flux_err`` (:func:`region_error`).

    Returns
    -------
    xarray.Dataset
        ``flux`` (and ``flux_err``) in photons cm⁻² s⁻¹ per channel over the region.
    """
    if not isinstance(Z, xr.DataArray) or set(Z.dims) != set(_PIX):
        raise OptionError("Z must be a DataArray (energy, y, x)")
    Z = Z.transpose(*_PIX)
    m = _mask(region, Z)
    flux = _region_sum(Z.astype(np.float64), m, rebin)
    keep = {c: flux.coords[c] for c in flux.coords if flux.coords[c].dims == ("energy",)}
    out = xr.Dataset({"flux": xr.DataArray(
        flux.values, dims=("energy",), coords=keep,
        attrs={"units": Z.attrs.get("units", "photon cm-2 s-1"),
               "long_name": "summed flux over the region", "n_pixels": int(m.sum())})})
    if draws is not None:
        draws = _check_draws(draws, Z)
        out["flux_err"] = region_error(draws, m, rebin=rebin, Z=Z, correction=correction)
    return out


# ``xf.uncertainty`` is the function; its helpers are reachable from it too
# (``xf.uncertainty.bootstrap``, ``xf.uncertainty.region_spectrum``, ...).
uncertainty.bootstrap = bootstrap            # type: ignore[attr-defined]
uncertainty.region_error = region_error      # type: ignore[attr-defined]
uncertainty.region_spectrum = region_spectrum  # type: ignore[attr-defined]
uncertainty.fit_settings = fit_settings      # type: ignore[attr-defined]
