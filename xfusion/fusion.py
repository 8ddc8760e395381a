"""``xf.fuse``: from a validated problem to the fused cube Z."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import time
import warnings
from typing import Literal

import numpy as np
import xarray as xr

from .functionals import Sobolev, total
from .operators import ForwardModel
from .operators.base import is_dask
from .parametrization import FullCube, LowRank, choose_rank, nmf_subspace
from .problem import ProblemError, validate
from .regularizers import REGULARIZERS, NoRegularizer, SmoothOnly, StarletL1
from .solver import (
    FISTA,
    HELD_PATIENCE,
    PATIENCE,
    Checkpointer,
    ProgressBar,
    SolverState,
    load_state,
)

__all__ = ["fuse", "initial_guess", "DEFAULT_TOL"]

#: Default relative-change tolerance of the objective (see docs/solver.md for how it was chosen).
DEFAULT_TOL = 1e-6

Regularizer = Literal["w2d1d", "lrs", "lrw2d", "lr", "none"]


def _blocks(a, vM, vN):
    L, M, N = a.shape
    return a.reshape(L, M // vM, vM, N // vN, vN)


def initial_guess(ds: xr.Dataset, dtype=np.float64) -> np.ndarray:
    r"""A positive starting cube from both instruments: Y's spectra, X's spatial detail.

    Notes
    -----
    In each coarse pixel ``P`` of Y, the flux spectrum :math:`Y_P/(t_Y \bar A_Y)` is shared
    among its fine pixels in proportion to X's broadband flux image
    :math:`I(p) = \sum_c X_c(p) / (t_X \bar A_X)`:

    .. math::

        Z_0(E, p) = \frac{Y_P(E)}{t_Y A_Y(E)}\,
                    \frac{I(p) + \epsilon}{\sum_{q\in P} I(q) + \epsilon}

    plus a small positive floor so that every voxel can move. Exact when the spectral shape is
    uniform inside each coarse pixel.
    """
    from .problem import rebin_factors

    f = rebin_factors(ds)
    L, M, N = ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"]
    tY = float(ds.Y.attrs["exposure"])
    aY = np.asarray(ds.arf_Y.values, np.float64)
    aY = aY if aY.ndim == 1 else aY.mean(axis=(1, 2))
    if is_dask(ds.Y.data):
        return _initial_guess_dask(ds, f, tY, aY, dtype)
    Y = np.asarray(ds.Y.values, np.float64)
    fluxY = np.divide(Y, tY * aY[:, None, None], out=np.zeros_like(Y), where=aY[:, None, None] > 0)
    img = np.asarray(ds.X.values, np.float64).sum(axis=0)
    ib = img.reshape(M // f.vM, f.vM, N // f.vN, f.vN)
    tiny = 1e-3 * max(img.mean(), 1e-30)
    share = (ib + tiny) / (ib.sum(axis=(1, 3), keepdims=True) + tiny * f.vM * f.vN)
    Z = fluxY[:, :, None, :, None] * share[None]
    Z = Z.reshape(L, M, N)
    floor = 1e-3 * max(Z.mean(), 1e-30)
    return (Z + floor).astype(dtype)


def _initial_guess_dask(ds, f, tY, aY, dtype):
    """:func:`initial_guess` on chunked data, chunked like Y's energies and X's pixels.

    The same formula written with the rebinning adjoint (``repeat``) instead of a 5-D reshape:
    Z0(E, p) = fluxY(E, P(p)) · share(p). The broadband image and the share map are (M, N)
    and computed in memory.
    """
    import dask.array as da

    from .operators.rebin import _repeat

    M, N = ds.sizes["y"], ds.sizes["x"]
    Y = ds.Y.data.astype(np.float64)
    w = (tY * aY)[:, None, None]
    fluxY = da.where(w > 0, Y / np.where(w > 0, w, 1.0), 0.0)
    Xd = ds.X.data
    img = np.asarray(Xd.sum(axis=0, dtype=np.float64).compute() if is_dask(Xd)
                     else np.asarray(Xd, np.float64).sum(axis=0))
    ib = img.reshape(M // f.vM, f.vM, N // f.vN, f.vN)
    tiny = 1e-3 * max(img.mean(), 1e-30)
    share = (ib + tiny) / (ib.sum(axis=(1, 3), keepdims=True) + tiny * f.vM * f.vN)
    Z = _repeat(fluxY, {1: f.vM, 2: f.vN}) * share.reshape(M, N)[None]
    floor = 1e-3 * max(float(Z.mean()), 1e-30)
    return (Z + floor).astype(dtype)


def _curvature(param, lossX, lossY, x, rng, smooth=None) -> float:
    """Mean curvature of the data term (Rayleigh quotient along a random direction)."""
    d = rng.standard_normal(x.shape).astype(x.dtype) * (1e-3 * float(np.abs(x).mean()) + 1e-30)
    mu0 = param.forward(x)
    mu1 = param.forward(x + d)
    g0 = param.adjoint(lossX.grad(mu0[0]), lossY.grad(mu0[1]))
    g1 = param.adjoint(lossX.grad(mu1[0]), lossY.grad(mu1[1]))
    return total((g1 - g0) * d) / total(d * d)


def _starlet(kind: str, J2: int, J1: int, shape):
    from .wavelets_bands import starlet_bands

    return starlet_bands(kind, J2, J1, shape)


#: default ``k_range`` of the brightness-dependent threshold, per regularizer (measured)
DEFAULT_K_RANGE = {"w2d1d": (4.0, 8.0), "lrw2d": (0.1, 1.0)}

#: a low-rank result whose C-statistic of Y exceeds this many times its expectation (and by
#: more than 5 σ) warns that the rank is too small for Y's spectra (:class:`RankWarning`)
RANK_MISFIT = 1.25


class RankWarning(UserWarning):
    """A low-rank fusion's spectra do not describe Y's counts: the rank is too small."""


def fuse(
    ds: xr.Dataset,
    regularizer: Regularizer = "w2d1d",
    *,
    rank: int | Literal["auto"] = 10,
    mu_sobolev: float = 3e-4,
    k: float | Literal["auto"] = "auto",
    k_range: tuple[float, float] | None = None,
    J2: int = 2,
    J1: int = 3,
    tol: float = DEFAULT_TOL,
    patience: int | None = None,
    max_iter: int = 3000,
    init: xr.DataArray | np.ndarray | None = None,
    dtype: str | np.dtype = "float32",
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: str | os.PathLike | None = None,
    spatial: Literal["auto", "dense", "fft", "separable"] = "auto",
    adapt_iter: int = 20,
    eps: float = 1e-6,
    metric: Literal["em", "jacobi"] | None = None,
    acceleration: bool = True,
    output: str | os.PathLike | None = None,
    chunks: dict | Literal["auto"] | None = None,
    client=None,
) -> xr.DataArray:
    r"""Fuse the two instruments of a problem into one cube Z (HIFReD).

    .. math::

        \hat Z = \arg\min_{Z} \mathcal L_P(X\mid\mu_X(Z)) + \mathcal L_P(Y\mid\mu_Y(Z))
                 + \varphi(Z)

    Parameters
    ----------
    ds : xarray.Dataset
        A fusion problem (:func:`xfusion.make_problem`, :func:`xfusion.simulate.scenario`,
        :func:`xfusion.open_problem`).
    regularizer : {"w2d1d", "lrs", "lrw2d", "lr", "none"}
        ``w2d1d``: l1 of 2-D–1-D starlet coefficients of Z, with Z ≥ 0.
        ``lrs``: Z = V W (V: ``rank`` non-negative spectra learnt from Y by least-squares NMF,
        :func:`xfusion.parametrization.nmf_subspace`) with a Sobolev penalty on W.
        ``lrw2d``: Z = V W with l1 of the 2-D starlet coefficients of each W_r.
        ``lr``: Z = V W alone. ``none``: likelihood only, Z ≥ 0.
    rank : int or "auto"
        Subspace dimension of the low-rank regularizers (paper: 10). ``"auto"``: the smallest
        of :data:`xfusion.parametrization.RANKS` whose NMF spectra describe Y's counts to the
        noise (:func:`xfusion.parametrization.choose_rank`; one NMF per rank tried, recorded
        in ``attrs["rank_trials"]``). With a fixed rank, a result whose C-statistic of Y is
        more than :data:`RANK_MISFIT` times its expectation warns (:class:`RankWarning`): the
        rank is too small for Y's spectra.
    mu_sobolev : float
        Sobolev weight μ_D, in units of the data term's mean curvature (so that it does not
        depend on exposure or flux units). Default 3e-4, chosen by measurement
        (docs/solver.md); the paper's 0.03 was in the units of its own code.
    k : float or "auto"
        Wavelet threshold in units of the one-step noise (see :class:`StarletL1`);
        ``"auto"`` varies it per voxel with the coarse-scale brightness over ``k_range``
        (dim → upper end, bright → lower end).
    k_range : (float, float), optional
        Default: (4, 8) for ``w2d1d``, (0.1, 1) for ``lrw2d`` — chosen by measurement
        (docs/solver.md): with the paper's 0.5–3 the ``w2d1d`` iteration settles on an
        under-regularized fixed point and NMSE drifts down for hundreds of iterations; with
        4–8 it converges in 25–80 iterations. ``lrw2d`` thresholds the ten smooth low-rank
        images, where the paper's 0.5–3 already over-smooths (0.1–1 is 0.1–0.7 dB better on
        every scenario measured).
    J2, J1 : int
        Number of 2-D (spatial) and 1-D (spectral) starlet scales (paper: 2 and 3; the paper
        used J1 = 1 for the realistic scenario, which here drifts instead of converging).
    tol, patience : float, int
        Stop when the relative change of the objective stays below ``tol`` for ``patience``
        consecutive iterations. Default patience: 5, and 10 once ``w2d1d``'s thresholds have
        frozen (its momentum, capped at β ≤ 0.9 there, remembers ~1/(1 − β) iterations;
        measured: with 5 the run stopped in a dip of the relative change on
        ``gaussian_6kev``, 0.12 dB from a 10× longer run; docs/solver.md).
    max_iter : int
        Upper bound on iterations (the result then has ``converged = 0``).
    init : DataArray or array (energy, y, x), optional
        Warm start (e.g. a previous result); default: :func:`initial_guess`.
    dtype : {"float32", "float64"}
        Working precision of the iterate (objective sums are always float64).
    progress : bool
        Show a one-line progress bar on stderr.
    checkpoint : path, optional
        Zarr store written atomically every ``checkpoint_every`` iterations and at the end.
    resume : path, optional
        Continue from a checkpoint written by an earlier (possibly interrupted) run with the
        same problem and options; the result equals that of an uninterrupted run.
    spatial : {"auto", "dense", "fft", "separable"}
        How Y's PSF and rebinning are applied (see :class:`xfusion.operators.ForwardModel`).
    adapt_iter : int
        Iterations during which wavelet thresholds follow the iterate before being frozen.
    eps : float
        Floor (in counts) of the Poisson term's quadratic extension.
    metric : {"em", "jacobi"}, optional
        Diagonal scaling of the gradient step (default ``"em"``: a unit step is the EM /
        Richardson–Lucy update; see docs/solver.md for the measurements behind the choice).
    acceleration : bool
        FISTA momentum with adaptive restart (default); ``False`` gives plain (scaled)
        proximal gradient.
    output : path, optional
        Write Z to this Zarr store (chunk by chunk, to a temporary store renamed into place)
        and return the DataArray backed by it (lazy, dask).
    chunks : dict or "auto", optional
        Chunks of Z ``{"energy": ..., "y": ..., "x": ...}`` on the dask path. Default: follow
        the problem's dask chunks (:func:`xfusion.open_problem` with ``chunks=``); numpy
        problems stay in memory unless they do not fit (then ``"auto"``: whole images, about
        64 MB per chunk). Spatial chunks are rounded to multiples of the rebinning factors.
    client : dask.distributed.Client, optional
        Run on this client. Without one, a chunked problem runs on the active client if any,
        else on dask's threaded scheduler — except a problem too large for memory, which
        starts a ``LocalCluster`` sized to the machine for the run (docs/scaling.md).

    Returns
    -------
    xarray.DataArray
        Z with dims (energy, y, x) in photons cm⁻² s⁻¹ per voxel and the problem's coordinates.
        ``attrs`` record the regularizer, every hyperparameter, ``iterations``, ``converged``
        (0/1), ``objective`` (final value), ``wall_time``, ``setup_time`` and
        ``iteration_time`` (s), and ``objective_history`` (the objective before the first and
        after every iteration, a list of floats).
    """
    t0 = time.perf_counter()
    validate(ds)
    if regularizer not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {regularizer!r}; choose one of {REGULARIZERS}")
    if not (rank == "auto" or (isinstance(rank, numbers.Integral) and rank >= 1)):
        raise ValueError(f"rank must be a whole number ≥ 1 or 'auto', got {rank!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if k_range is None:
        k_range = DEFAULT_K_RANGE.get(regularizer, (0.5, 3.0))
    k_range = tuple(float(v) for v in k_range)
    if len(k_range) != 2 or not 0 <= k_range[0] <= k_range[1]:
        raise ValueError(f"k_range must be (k_min, k_max) with 0 <= k_min <= k_max, "
                         f"got {k_range}")
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"need tol > 0 and max_iter ≥ 1, got tol={tol}, max_iter={max_iter}")
    if patience is not None and not (isinstance(patience, numbers.Real)
                                     and float(patience).is_integer() and patience >= 1):
        raise ValueError(f"patience must be a whole number ≥ 1 (or None), got {patience!r}")
    # -- numpy or dask (docs/scaling.md) -------------------------------------------------
    from . import _dask

    L, M, N = ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"]
    own_cluster = None
    if chunks is None and not (is_dask(ds.X.data) or is_dask(ds.Y.data)) \
            and _dask.needs_cluster((L, M, N), dtype):
        chunks = "auto"  # does not fit in memory: chunk it, on a cluster
        if client is None and _dask.active_client() is None:
            own_cluster = _start_local_cluster()
            client = own_cluster[1]
    kw = dict(rank=rank, mu_sobolev=mu_sobolev, k=k, k_range=k_range, J2=J2, J1=J1, tol=tol,
              patience=patience, max_iter=max_iter, init=init, dtype=dtype, progress=progress,
              checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
              spatial=spatial, adapt_iter=adapt_iter, eps=eps, metric=metric,
              acceleration=acceleration, output=output, chunks=chunks)
    try:
        with client.as_current() if client is not None else contextlib.nullcontext():
            return _fuse(ds, regularizer, t0, **kw)
    finally:
        if own_cluster is not None:
            own_cluster[1].close()
            own_cluster[0].close()


def _start_local_cluster():
    """A ``LocalCluster`` sized to the machine (distributed's defaults: workers and threads
    from the cores, memory split evenly between workers) and its client."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster()
    return cluster, Client(cluster)


def _fuse(ds, regularizer, t0, *, rank, mu_sobolev, k, k_range, J2, J1, tol, patience,
          max_iter, init, dtype, progress, checkpoint, checkpoint_every, resume, spatial,
          adapt_iter, eps, metric, acceleration, output, chunks) -> xr.DataArray:
    """The body of :func:`fuse`, with validated arguments, under the chosen scheduler."""
    from . import _dask
    from .problem import rebin_factors

    f = rebin_factors(ds)
    if "observed_Y" in ds.coords:
        # pixels that were not observed (e.g. Resolve's calibration pixel) carry no data: their
        # counts are ignored here and the model masks their expected counts (ForwardModel)
        obs = ds.coords["observed_Y"].astype(bool)
        ds = ds.assign(Y=ds.Y.where(obs, 0).astype(ds.Y.dtype).assign_attrs(ds.Y.attrs))
    psf_half = max(ds.psf_Y.shape[-2:]) // 2
    zchunks = _dask.plan_chunks(ds, (f.vM, f.vN), psf_half,
                                {"energy": "auto"} if chunks == "auto" else chunks)
    if zchunks is not None:
        # counts chunked like Z: X whole in its few channels, Y's pixels = Z's / factors
        ds = ds.copy()
        ds["X"] = ds.X.copy(data=_dask.to_dask(ds.X.data, ((ds.X.shape[0],),) + zchunks[1:]))
        ds["Y"] = ds.Y.copy(data=_dask.to_dask(ds.Y.data, (zchunks[0],)
                                               + tuple(tuple(c // v for c in ch) for ch, v in
                                                       zip(zchunks[1:], (f.vM, f.vN)))))
        if spatial == "auto" and (len(zchunks[1]) > 1 or len(zchunks[2]) > 1):
            spatial = "fft"  # a dense or separable spatial operator needs whole images
    model = ForwardModel.from_dataset(ds, spatial=spatial)
    if zchunks is not None:
        model.set_chunks(zchunks)
    L, M, N = model.shape
    Xd, Yd = ds.X.data, ds.Y.data

    low_rank = regularizer in ("lrs", "lrw2d", "lr")
    if low_rank:
        aY = np.asarray(ds.arf_Y.values)
        aY = aY if aY.ndim == 1 else aY.mean(axis=(1, 2))
        wY = float(ds.Y.attrs["exposure"]) * aY[:, None, None]
        if rank == "auto":
            rank, V, trials = choose_rank(np.asarray(ds.Y.values), wY[:, 0, 0])
        else:
            V = nmf_subspace(np.asarray(ds.Y.values), wY[:, 0, 0], rank)
            trials = None
        param = LowRank(model, V, dtype)
    else:
        param = FullCube(model)

    if init is not None:
        Z0 = init.transpose("energy", "y", "x").data if isinstance(init, xr.DataArray) else init
        if tuple(Z0.shape) != (L, M, N):
            raise ProblemError(f"init: shape {tuple(Z0.shape)} does not match Z's {(L, M, N)}")
        Z0 = np.asarray(Z0, dtype=np.float64)
        if not np.isfinite(Z0).all():
            raise ProblemError("init: contains NaN or Inf")
    else:
        Z0 = initial_guess(ds)
    if zchunks is not None:
        Z0 = _dask.to_dask(Z0, zchunks)
    x0 = param.from_cube(Z0.astype(dtype))
    if low_rank:  # a strictly positive start in the non-negative subspace
        # (on the dask path W = (r, M, N) stays chunked like Z's pixels, r in one chunk:
        # the counts it is compared with are chunked, so a numpy W would only move data)
        x0 = np.maximum(x0, 1e-3 * float(np.abs(x0).mean())).astype(dtype)

    solver = FISTA(param, Xd, Yd, None, tol=tol, patience=patience, max_iter=max_iter,
                   eps=eps, dtype=dtype, metric=metric or "em",
                   momentum=acceleration)
    hyper: dict = {"regularizer": regularizer}
    if low_rank and trials is not None:
        hyper["rank_trials"] = [f"{t['rank']}: C/E {t['ratio']:.3f} ({t['z']:+.0f} sigma)"
                                for t in trials]
    if regularizer == "none":
        reg = NoRegularizer(positive=True)
    elif regularizer == "lr":
        reg = NoRegularizer(positive=True)
        hyper["rank"] = int(rank)
    elif regularizer == "lrs":
        curv = _curvature(param, solver.lossX, solver.lossY, x0, np.random.default_rng(0))
        reg = SmoothOnly(Sobolev(mu_sobolev * curv), positive=True)
        hyper.update(rank=int(rank), mu_sobolev=float(mu_sobolev), sobolev_weight=reg.smooth.weight)
    else:
        if regularizer == "w2d1d":
            T = _starlet("2d1d", J2, J1, (L, M, N))
            hyper.update(J2=int(J2), J1=int(J1))
        else:
            T = _starlet("2d", J2, 0, (param.rank, M, N))
            hyper.update(rank=int(rank), J2=int(J2))
        # the metric is held with the thresholds for w2d1d only: measured at full size, it
        # raised w2d1d's NMSE on all four scenarios (+0.2 to +1.1 dB, fewer iterations) but
        # left lrw2d unconverged at 3000 iterations on two of them (docs/solver.md)
        reg = StarletL1(T, k=k, k_range=k_range, positive=True,
                        adapt_iter=adapt_iter, per_slice=low_rank,
                        hold_metric=regularizer == "w2d1d")
        hyper.update(k=k if isinstance(k, str) else float(k), k_min=float(k_range[0]),
                     k_max=float(k_range[1]), adapt_iter=int(adapt_iter))
    solver.reg = reg
    solver.smooth = getattr(reg, "smooth", None)
    hyper.update(solver="fista", metric=metric or "em", acceleration=int(acceleration))

    meta = {"regularizer": regularizer, "shape": [L, M, N], "dtype": str(dtype)}
    if progress:
        solver.callbacks.append(ProgressBar(max_iter))
    if checkpoint is not None:
        solver.checkpointer = Checkpointer(checkpoint, checkpoint_every, meta)
    state = None
    if resume is not None:
        state, saved = load_state(os.fspath(resume))
        if saved.get("regularizer") != regularizer or saved.get("shape") != [L, M, N]:
            raise ProblemError(f"resume: checkpoint {resume} was written for {saved}, not for "
                               f"regularizer={regularizer!r} on a {L}×{M}×{N} cube")
        state.x = np.asarray(state.x, dtype)
        state.x_prev = np.asarray(state.x_prev, dtype)
        if zchunks is not None:
            xch = zchunks if not low_rank else ((param.rank,),) + zchunks[1:]
            state.x, state.x_prev = (_dask.to_dask(a, xch) for a in (state.x, state.x_prev))
            if state.metric is not None:
                state.metric = _dask.to_dask(np.asarray(state.metric, dtype), xch)
    t_setup = time.perf_counter() - t0
    st: SolverState = solver.run(x0=x0, state=state)
    t_iter = time.perf_counter() - t0 - t_setup
    for cb in solver.callbacks:
        if hasattr(cb, "close"):
            cb.close()

    Z = param.to_cube(st.x)
    if is_dask(Z) and output is None:
        Z = Z.compute()
    coords = {c: ds.coords[c] for c in ds.coords
              if set(ds.coords[c].dims) <= {"energy", "y", "x"}}
    attrs = {
        "units": "photon cm-2 s-1",
        "long_name": "fused photon flux per voxel",
        **hyper,
        "tol": float(tol), "max_iter": int(max_iter),
        "patience": PATIENCE if patience is None else int(patience),
        "dtype": str(dtype),
        "iterations": int(st.iteration),
        "converged": int(st.converged),
        "objective": float(st.history[-1]),
        "wall_time": float(time.perf_counter() - t0),
        "setup_time": float(t_setup),
        "iteration_time": float(t_iter),
        "objective_history": [float(v) for v in st.history],
        "spatial_method": model.spatial_method,
    }
    if patience is None and getattr(reg, "metric_dependent", False):
        attrs["held_patience"] = HELD_PATIENCE      # the default once the metric is held
    attrs.update(_fit_attrs(param, st.x, Xd, Yd))
    if low_rank and trials is None and st.converged:   # (unconverged: the misfit may be that)
        _warn_rank_misfit(attrs, int(rank))
    if not math.isfinite(attrs["objective"]):
        attrs["objective"] = None
    out = xr.DataArray(Z, dims=("energy", "y", "x"), coords=coords, attrs=attrs, name="Z")
    if output is not None:
        out = _dask.write_zarr(out, output)
    return out


def _warn_rank_misfit(attrs: dict, rank: int) -> None:
    r"""Warn (:class:`RankWarning`) when a low-rank result leaves Y's counts unexplained.

    Y's spectra are averages over its large pixels, so a subspace that cannot fit them cannot
    fit the finer ones either: a C-statistic of Y well above its expectation under the fitted
    model (:mod:`xfusion.goodness`) is the rank's bias, not noise. Measured at full size with
    the default rank 10 (docs/benchmarks.md): C/E of Y 1.87–2.04 on ``realistic_1kev_rebin``
    (where ``rank="auto"`` gains 2–3 dB NMSE), 1.12 or below on the three Gaussian
    scenarios. A strong spatial penalty (``lrs``, ``lrw2d``) raises C too, by less (``lrw2d``
    2.04 against ``lr`` 1.87 there). Only converged runs are judged: a run stopped at
    ``max_iter`` may not fit the counts yet whatever the rank.
    """
    c, e, sd = (attrs.get(f"cstat_Y{k}") for k in ("", "_expected", "_sigma"))
    if c is None or not e or not sd:
        return
    if c > RANK_MISFIT * e and c - e > 5 * sd:
        warnings.warn(
            f"rank {rank}: the fused cube's spectra describe Y's counts with a C-statistic "
            f"{c / e:.2f} times its expectation ({(c - e) / sd:+.0f} sigma): Y's spectra need "
            f"more than {rank} components (or the spatial regularization is too strong). "
            f"rank='auto' chooses the rank from Y's counts "
            f"(xfusion.parametrization.choose_rank)", RankWarning, stacklevel=4)


def _fit_attrs(param, x, Xd, Yd) -> dict:
    """C-statistic of each instrument's counts at the result, with its expectation and spread
    under the fitted model (:mod:`xfusion.goodness`), as flat attrs."""
    from ._dask import persist
    from .goodness import goodness_of_fit

    mu = persist(*param.forward(x))     # (dask: computed once for the three sums below)
    out = {}
    for name, D, m in (("X", Xd, mu[0]), ("Y", Yd, mu[1])):
        try:
            g = goodness_of_fit(D, m)
        except ValueError:          # a count where the model expects none: C is infinite
            g = {"cstat": None, "expected": None, "sigma": None}
        out.update({f"cstat_{name}": g["cstat"], f"cstat_{name}_expected": g["expected"],
                    f"cstat_{name}_sigma": g["sigma"]})
    return out

