"""``xf.fuse``: from a validated problem to the fused cube Z."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from typing import Literal

import numpy as np
import xarray as xr

from . import sky
from ._store import OutputError, check_output, same_path, write_store
from .builders import build
from .checkpoint import check_identity, problem_fingerprint
from .likelihood import PoissonLikelihood
from .operators import ForwardModel
from .operators.base import is_dask
from .options import DEFAULT_K_RANGE, FuseOptions, Regularizer  # noqa: F401 (re-exported)
from .parametrization import FullCube, LowRank, choose_rank, nmf_subspace
from .problem import ProblemError, validate
from .solver import (
    FISTA,
    HOLD_PATIENCE,
    PATIENCE,
    Checkpointer,
    ProgressBar,
    RelativeChange,
    SolverState,
    load_state,
)
from .steps import step_size

__all__ = ["fuse", "initial_guess", "DEFAULT_TOL"]

#: Default tolerance on the objective's relative change per iteration (the stopping rule,
#: :class:`xfusion.solver.RelativeChange`; docs/solver.md).
DEFAULT_TOL = 1e-6

def _blocks(a, vM, vN):
    L, M, N = a.shape
    return a.reshape(L, M // vM, vM, N // vN, vN)


def _used_counts_X(ds: xr.Dataset) -> xr.DataArray:
    """X's counts with the channels left out of the likelihood (``observed_X`` False, e.g. band
    edges) set to 0; ``ds.X`` itself when the problem has no ``observed_X``."""
    if "observed_X" not in ds.coords:
        return ds.X
    obs = ds.coords["observed_X"].astype(bool)
    return ds.X.where(obs, 0).astype(ds.X.dtype).assign_attrs(ds.X.attrs)


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
    uniform inside each coarse pixel. X channels left out of the likelihood (``observed_X``)
    are left out of :math:`I`.
    With known backgrounds (``background_X``,
    ``background_Y``) the counts are first background-subtracted and clipped at 0
    (:math:`\max(Y - B_Y, 0)`, :math:`\max(X - B_X, 0)`).
    """
    from .problem import rebin_factors

    f = rebin_factors(ds)
    L, M, N = ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"]
    tY = float(ds.Y.attrs["exposure"])
    aY = np.asarray(ds.arf_Y.values, np.float64)
    aY = aY if aY.ndim == 1 else aY.mean(axis=(1, 2))
    if is_dask(ds.Y.data):
        return _initial_guess_dask(ds, f, tY, aY, dtype)
    Y = _source_counts(ds, "Y")
    fluxY = np.divide(Y, tY * aY[:, None, None], out=np.zeros_like(Y), where=aY[:, None, None] > 0)
    img = _source_counts(ds.assign(X=_used_counts_X(ds)), "X").sum(axis=0)
    ib = img.reshape(M // f.vM, f.vM, N // f.vN, f.vN)
    tiny = 1e-3 * max(img.mean(), 1e-30)
    share = (ib + tiny) / (ib.sum(axis=(1, 3), keepdims=True) + tiny * f.vM * f.vN)
    Z = fluxY[:, :, None, :, None] * share[None]
    Z = Z.reshape(L, M, N)
    floor = 1e-3 * max(Z.mean(), 1e-30)
    return (Z + floor).astype(dtype)


def _source_counts(ds: xr.Dataset, name: str):
    """Counts ``name`` in float64 less the problem's background, clipped at 0 (the counts
    themselves without a background); numpy or dask like the counts."""
    D = ds[name].data
    D = D.astype(np.float64) if is_dask(D) else np.asarray(D, np.float64)
    bkg = f"background_{name}"
    if bkg not in ds.data_vars:
        return D
    B = ds[bkg].data
    return np.maximum(D - (B if is_dask(B) else np.asarray(B, np.float64)), 0.0)


def _backgrounds(ds: xr.Dataset) -> dict:
    """The problem's known backgrounds as ``{"background_X": data, ...}`` (those it has)."""
    return {k: ds[k].data for k in ("background_X", "background_Y") if k in ds.data_vars}


def _initial_guess_dask(ds, f, tY, aY, dtype):
    """:func:`initial_guess` on chunked data, chunked like Y's energies and X's pixels.

    The same formula written with the rebinning adjoint (``repeat``) instead of a 5-D reshape:
    Z0(E, p) = fluxY(E, P(p)) · share(p). The broadband image and the share map are (M, N)
    and computed in memory.
    """
    import dask.array as da

    from .operators.rebin import _repeat

    M, N = ds.sizes["y"], ds.sizes["x"]
    Y = _source_counts(ds, "Y")
    w = (tY * aY)[:, None, None]
    fluxY = da.where(w > 0, Y / np.where(w > 0, w, 1.0), 0.0)
    dsu = ds.assign(X=_used_counts_X(ds))
    Xd = _source_counts(dsu, "X") if "background_X" in ds.data_vars else dsu.X.data
    img = np.asarray(Xd.sum(axis=0, dtype=np.float64).compute() if is_dask(Xd)
                     else np.asarray(Xd, np.float64).sum(axis=0))
    ib = img.reshape(M // f.vM, f.vM, N // f.vN, f.vN)
    tiny = 1e-3 * max(img.mean(), 1e-30)
    share = (ib + tiny) / (ib.sum(axis=(1, 3), keepdims=True) + tiny * f.vM * f.vN)
    Z = _repeat(fluxY, {1: f.vM, 2: f.vN}) * share.reshape(M, N)[None]
    floor = 1e-3 * max(float(Z.mean()), 1e-30)
    return (Z + floor).astype(dtype)


#: a result whose C-statistic exceeds this many times its expectation (and by more than
#: FIT_SIGMA σ) does not explain the counts (:class:`FitWarning`)
FIT_HIGH = 1.25
#: ... and one below this many times its expectation (by more than FIT_SIGMA σ) fits the noise
FIT_LOW = 0.6
#: how many standard deviations of the C-statistic a misfit must also exceed
FIT_SIGMA = 5.0
#: the threshold of :class:`RankWarning` (the same as :data:`FIT_HIGH`)
RANK_MISFIT = FIT_HIGH


class FitWarning(UserWarning):
    """The fused cube does not explain an instrument's counts (its C-statistic is far from the
    expectation under the fitted model, in either direction); the message gives C/E and σ."""


class RankWarning(FitWarning):
    """A low-rank fusion's spectra do not describe Y's counts: the rank is too small."""


#: the arguments of :func:`fuse` that :class:`~xfusion.options.FuseOptions` holds
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(FuseOptions)) - {"regularizer"}


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
    overwrite: bool = False,
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
        Checkpoint directory written atomically every ``checkpoint_every`` iterations and at
        the end (:mod:`xfusion.checkpoint`: two slots and a pointer, so one complete state
        always exists). It records the problem's fingerprint and the settings, so that a
        resume can be checked. An existing checkpoint is refused unless ``overwrite=True`` or
        it is the one being resumed.
    checkpoint_every : int
        Iterations between checkpoints (≥ 1).
    resume : path, optional
        Continue from a checkpoint written by an earlier (possibly interrupted) run; the
        result equals that of an uninterrupted run. Refused (:class:`CheckpointError`, naming
        what differs) when the checkpoint was written for another problem (other counts,
        e.g. another noise draw, or other responses) or other settings; only ``max_iter``,
        ``tol`` and ``patience`` may change.
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
        and return the DataArray backed by it (lazy, dask). Checked before any work: an
        existing path is refused unless ``overwrite=True``, and even then only a fused-cube
        store written by xfusion is replaced (never a user's file or directory); the
        problem's own store, the checkpoints, an unwritable directory or a disk without room
        for Z are refused (:class:`xfusion.OutputError`). If the final write still fails,
        the error says where the result is kept (the checkpoint) and, in memory, carries it
        as ``error.result``.
    chunks : dict or "auto", optional
        Chunks of Z ``{"energy": ..., "y": ..., "x": ...}`` on the dask path. Default: follow
        the problem's dask chunks (:func:`xfusion.open_problem` with ``chunks=``); numpy
        problems stay in memory unless they do not fit (then ``"auto"``: whole images, about
        64 MB per chunk). Spatial chunks are rounded to multiples of the rebinning factors.
    client : dask.distributed.Client, optional
        Run on this client. Without one, a chunked problem runs on the active client if any,
        else on dask's threaded scheduler — except a problem too large for memory, which
        starts a ``LocalCluster`` sized to the machine for the run (docs/scaling.md).
    overwrite : bool
        Allow ``output`` and ``checkpoint`` to replace existing stores of their kind that
        xfusion wrote (default: refuse).

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
    given = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
    validate(ds)
    L, M, N = ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"]
    opts = FuseOptions.check(regularizer, shape=(L, M, N),
                             n_pixels_Y=ds.sizes["y_coarse"] * ds.sizes["x_coarse"], **given)
    _check_outputs(ds, output=output, checkpoint=checkpoint, resume=resume,
                   overwrite=overwrite, shape=(L, M, N), dtype=opts.dtype,
                   rank=opts.rank if opts.low_rank else L)
    # -- numpy or dask (docs/scaling.md) -------------------------------------------------
    from . import _dask

    own_cluster = None
    if chunks is None and not (is_dask(ds.X.data) or is_dask(ds.Y.data)) \
            and _dask.needs_cluster((L, M, N), opts.dtype):
        opts = opts.replace(chunks="auto")  # does not fit in memory: chunk it, on a cluster
        if client is None and _dask.active_client() is None:
            own_cluster = _start_local_cluster()
            client = own_cluster[1]
    try:
        with client.as_current() if client is not None else contextlib.nullcontext():
            return _fuse(ds, opts, t0)
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


def _fuse(ds: xr.Dataset, opts: FuseOptions, t0: float) -> xr.DataArray:
    """The body of :func:`fuse`, with checked options, under the chosen scheduler."""
    ds, zchunks, spatial = _chunked(ds, opts)
    model = ForwardModel.from_dataset(ds, spatial=spatial)
    if zchunks is not None:
        model.set_chunks(zchunks)
    param, trials = _parametrization(ds, model, opts)
    rank = param.rank if opts.low_rank else opts.rank
    x0 = _start(ds, param, opts, zchunks)
    likelihood = PoissonLikelihood(param, ds.X.data, ds.Y.data, opts.eps, opts.dtype,
                                   **_backgrounds(ds))
    built = build(opts, likelihood, x0)
    hyper: dict = {"regularizer": opts.regularizer}
    if trials is not None:
        hyper["rank_trials"] = [f"{t['rank']}: C/E {t['ratio']:.3f} ({t['z']:+.0f} sigma)"
                                for t in trials]
    hyper.update(built.hyper)
    hyper.update(solver="fista", metric=opts.metric, acceleration=int(opts.acceleration))
    callbacks: list = [ProgressBar(opts.max_iter)] if opts.progress else []
    meta = {"regularizer": opts.regularizer, "shape": list(model.shape),
            "dtype": str(opts.dtype),
            "problem": problem_fingerprint(ds) if (opts.checkpoint or opts.resume) else None,
            "settings": opts.settings() | {"rank": rank if isinstance(rank, str)
                                           else int(rank)}}
    if opts.checkpoint is not None:
        callbacks.append(Checkpointer(opts.checkpoint, opts.checkpoint_every, meta))
    solver = FISTA(likelihood, built.prox, built.smooth, step=step_size(opts.metric),
                   stop=RelativeChange(opts.tol, opts.patience), max_iter=opts.max_iter,
                   callbacks=callbacks, momentum=opts.acceleration)
    state = _resume(opts, meta, param, zchunks) if opts.resume is not None else None
    t_setup = time.perf_counter() - t0
    st: SolverState = solver.run(x0=x0, state=state)
    t_iter = time.perf_counter() - t0 - t_setup

    Z = param.to_cube(st.x)
    if is_dask(Z) and opts.output is None:
        Z = Z.compute()
    coords = {c: ds.coords[c] for c in ds.coords
              if set(ds.coords[c].dims) <= {"energy", "y", "x"}}
    coords = sky.cube_coords(ds, coords)      # units on all; ra/dec with a WCS
    attrs = {
        "units": "photon cm-2 s-1",
        "long_name": "fused photon flux per voxel",
        **hyper,
        "tol": float(opts.tol), "max_iter": int(opts.max_iter),
        "patience": PATIENCE if opts.patience is None else int(opts.patience),
        "dtype": str(opts.dtype),
        "iterations": int(st.iteration),
        "converged": int(st.converged),
        "objective": float(st.history[-1]),
        "wall_time": float(time.perf_counter() - t0),
        "setup_time": float(t_setup),
        "iteration_time": float(t_iter),
        "objective_history": [float(v) for v in st.history],
        "spatial_method": model.spatial_method,
    }
    if "observed_X" in ds.coords:
        attrs["channels_X_used"] = int(ds.coords["observed_X"].sum())
    if opts.patience is None and built.prox.hold_metric:
        attrs["held_patience"] = HOLD_PATIENCE      # the default once the metric is held
    attrs.update(_fit_attrs(param, st.x, ds.X.data, ds.Y.data, **_backgrounds(ds)))
    _warn_fit(attrs, opts.regularizer,
              int(rank) if opts.low_rank and trials is None else None,
              converged=bool(st.converged))
    if not math.isfinite(attrs["objective"]):
        attrs["objective"] = None
    attrs.update(sky.cube_attrs(ds))          # Conventions, and the WCS string if any
    out = xr.DataArray(Z, dims=("energy", "y", "x"), coords=coords, attrs=attrs, name="Z")
    if opts.output is not None:
        out = _write_output(out, opts.output, opts.overwrite, opts.checkpoint)
    return out


def _chunked(ds: xr.Dataset, opts: FuseOptions):
    """The problem as the solver sees it: unobserved pixels of Y and unused channels of X
    zeroed, and on the dask path the counts chunked like Z; returns ``(ds, Z's chunks or
    None, spatial method)``."""
    from . import _dask
    from .problem import rebin_factors

    f = rebin_factors(ds)
    spatial = opts.spatial
    if "observed_Y" in ds.coords:
        # pixels that were not observed (e.g. Resolve's calibration pixel) carry no data: their
        # counts are ignored here and the model masks their expected counts (ForwardModel)
        obs = ds.coords["observed_Y"].astype(bool)
        ds = ds.assign(Y=ds.Y.where(obs, 0).astype(ds.Y.dtype).assign_attrs(ds.Y.attrs))
        if "background_Y" in ds.data_vars:    # (nor do they have a background)
            B = ds.background_Y
            ds = ds.assign(background_Y=B.where(obs, 0).astype(B.dtype).assign_attrs(B.attrs))
    if "observed_X" in ds.coords:
        # X channels left out (e.g. band edges fed from outside Z's band): their counts are
        # ignored here and the model sets their expected counts to 0 (ForwardModel)
        ds = ds.assign(X=_used_counts_X(ds))
    psf_half = max(ds.psf_Y.shape[-2:]) // 2
    chunks = opts.chunks
    zchunks = _dask.plan_chunks(ds, (f.vM, f.vN), psf_half,
                                {"energy": "auto"} if chunks == "auto" else chunks)
    if zchunks is not None:
        # counts chunked like Z: X whole in its few channels, Y's pixels = Z's / factors
        ds = ds.copy()
        ds["X"] = ds.X.copy(data=_dask.to_dask(ds.X.data, ((ds.X.shape[0],),) + zchunks[1:]))
        ds["Y"] = ds.Y.copy(data=_dask.to_dask(ds.Y.data, (zchunks[0],)
                                               + tuple(tuple(c // v for c in ch) for ch, v in
                                                       zip(zchunks[1:], (f.vM, f.vN)))))
        for name in ("X", "Y"):     # backgrounds chunked like their counts
            if f"background_{name}" in ds.data_vars:
                b = ds[f"background_{name}"]
                ds[f"background_{name}"] = b.copy(data=_dask.to_dask(b.data, ds[name].chunks))
        if spatial == "auto" and (len(zchunks[1]) > 1 or len(zchunks[2]) > 1):
            spatial = "fft"  # a dense or separable spatial operator needs whole images
    return ds, zchunks, spatial


def _parametrization(ds: xr.Dataset, model: ForwardModel, opts: FuseOptions):
    """The unknown: Z itself, or W with Z = V W and V the NMF spectra of Y (at the given rank
    or the one ``rank="auto"`` chooses); returns ``(param, rank trials or None)``."""
    if not opts.low_rank:
        return FullCube(model), None
    aY = np.asarray(ds.arf_Y.values)
    aY = aY if aY.ndim == 1 else aY.mean(axis=(1, 2))
    wY = float(ds.Y.attrs["exposure"]) * aY[:, None, None]
    bY = np.asarray(ds.background_Y.values) if "background_Y" in ds.data_vars else None
    if opts.rank == "auto":
        _, V, trials = choose_rank(np.asarray(ds.Y.values), wY[:, 0, 0], background=bY)
    else:
        V = nmf_subspace(np.asarray(ds.Y.values), wY[:, 0, 0], opts.rank, background=bY)
        trials = None
    return LowRank(model, V, opts.dtype), trials


def _start(ds: xr.Dataset, param, opts: FuseOptions, zchunks):
    """The starting point in the unknown's space: ``init`` or :func:`initial_guess`,
    strictly positive in a low-rank subspace."""
    dtype = opts.dtype
    if opts.init is not None:   # checked by FuseOptions.check: finite, ≥ 0, Z's shape
        Z0 = opts.init if is_dask(opts.init) else np.asarray(opts.init, dtype=np.float64)
    else:
        Z0 = initial_guess(ds)
    if zchunks is not None:
        from . import _dask

        Z0 = _dask.to_dask(Z0, zchunks)
    x0 = param.from_cube(Z0.astype(dtype))
    if opts.low_rank:  # a strictly positive start in the non-negative subspace
        # (on the dask path W = (r, M, N) stays chunked like Z's pixels, r in one chunk:
        # the counts it is compared with are chunked, so a numpy W would only move data)
        x0 = np.maximum(x0, 1e-3 * float(np.abs(x0).mean())).astype(dtype)
    return x0


def _resume(opts: FuseOptions, meta: dict, param, zchunks) -> SolverState:
    """The state saved in ``opts.resume``, checked against this run (problem, settings,
    shape) and placed like the run's arrays."""
    resume, dtype = opts.resume, opts.dtype
    state, saved = load_state(os.fspath(resume))
    check_identity(os.fspath(resume), saved, meta)
    if saved.get("shape") != meta["shape"] or (opts.low_rank
                                               and np.shape(state.x)[0] != param.rank):
        raise ProblemError(f"resume: checkpoint {resume} holds an iterate of shape "
                           f"{tuple(np.shape(state.x))}, not one for this run")
    state.x = np.asarray(state.x, dtype)
    state.x_prev = np.asarray(state.x_prev, dtype)
    if zchunks is not None:
        from . import _dask

        xch = zchunks if not opts.low_rank else ((param.rank,),) + zchunks[1:]
        state.x, state.x_prev = (_dask.to_dask(a, xch) for a in (state.x, state.x_prev))
        if state.metric is not None:
            state.metric = _dask.to_dask(np.asarray(state.metric, dtype), xch)
    return state


def _write_output(Z: xr.DataArray, output, overwrite: bool, checkpoint) -> xr.DataArray:
    """Write the result to ``output`` (:func:`xfusion._store.write_store`) and return it
    opened lazily; if the write fails, say where the result can be recovered."""
    from ._dask import regular

    ds = sky.to_dataset(Z.copy(data=regular(Z.data)), "Z")   # + CF energy_bounds
    for v in ds.variables.values():
        v.encoding = {}
    try:
        write_store(ds, output, "fused", overwrite=overwrite)
    except OutputError as e:
        where = (f"the final state is in the checkpoint {checkpoint}: resume=... from it "
                 f"writes the result without iterating again" if checkpoint is not None else
                 "no checkpoint was written (pass checkpoint= to keep one)")
        err = OutputError(f"{e}; {where}")
        err.result = None if is_dask(Z.data) else Z
        raise err from e
    return xr.open_zarr(os.fspath(output), consolidated=True)["Z"]


def _check_outputs(ds, *, output, checkpoint, resume, overwrite, shape, dtype, rank) -> None:
    """Refuse, before any work, outputs that would destroy an input or cannot be written
    (:func:`xfusion._store.check_output`): the problem's own store, the checkpoint being
    resumed, an existing store without ``overwrite=True``, a user's file or directory, an
    unwritable directory or a disk without room."""
    source = ds.encoding.get("source")
    L, M, N = shape
    item = np.dtype(dtype).itemsize
    # the iterate: (rank, M, N) for the low-rank regularizers ("auto": at most L), else Z
    nx = (rank if isinstance(rank, int) else L) * M * N * item
    if resume is not None and not os.path.exists(os.fspath(resume)):
        raise FileNotFoundError(f"resume: no checkpoint at {resume}")
    if output is not None:
        check_output(output, "output", overwrite=overwrite, kinds=("fused",),
                     inputs={"problem's store": source, "checkpoint to resume from": resume,
                             "checkpoint": checkpoint},
                     nbytes=L * M * N * item)
    if checkpoint is not None:
        continuing = resume is not None and same_path(checkpoint, resume)
        check_output(checkpoint, "checkpoint", overwrite=overwrite or continuing,
                     kinds=("checkpoint",), inputs={"problem's store": source},
                     nbytes=0 if continuing else 2 * 4 * nx)


def misfits(attrs: dict) -> list[tuple[str, str, float, float, float]]:
    """The instruments whose counts a result does not explain (see :func:`_warn_fit`).

    Returns
    -------
    list of (instrument, "high" or "low", C, E, z)
        ``z = (C - E) / σ``; empty when both fit.
    """
    out = []
    for inst in ("X", "Y"):
        c, e, sd = (attrs.get(f"cstat_{inst}{k}") for k in ("", "_expected", "_sigma"))
        if c is None or not e or not sd:
            continue
        z = (c - e) / sd
        if c > FIT_HIGH * e and z > FIT_SIGMA:
            out.append((inst, "high", c, e, z))
        elif c < FIT_LOW * e and z < -FIT_SIGMA:
            out.append((inst, "low", c, e, z))
    return out


def _warn_fit(attrs: dict, regularizer: str, rank: int | None, converged: bool = True) -> None:
    r"""Warn (:class:`FitWarning`) when the result does not explain either instrument's counts.

    With the C-statistic :math:`C` of an instrument at the result, its expectation :math:`E`
    and standard deviation :math:`\sigma` if the counts were Poisson draws of the fitted
    expected counts (:mod:`xfusion.goodness`), a result is flagged when

    * :math:`C > ` :data:`FIT_HIGH` :math:`E` and :math:`C - E > ` :data:`FIT_SIGMA`
      :math:`\sigma`: the model cannot describe the counts (a too-strong regularization, a
      too-small rank, or something the model leaves out: background, PSF wings, sources
      outside the field);
    * :math:`C < ` :data:`FIT_LOW` :math:`E` and :math:`E - C > ` :data:`FIT_SIGMA`
      :math:`\sigma`: the result fits the noise (a too-weak regularization).

    Both conditions are needed: on large problems σ is tiny and a few per cent of bias is many
    σ, while the regularized results that score best on the simulated scenarios sit at C/E
    0.69–1.26 (docs/benchmarks.md). A converged low-rank result with a fixed rank that misfits
    Y raises the subclass :class:`RankWarning`, which names the rank and ``rank="auto"``; a
    run stopped at ``max_iter`` says so (more iterations may be all it needs).
    """
    late = "" if converged else (" (the run stopped at max_iter before converging: more "
                                 "iterations may be all it needs)")
    for inst, verdict, c, e, z in misfits(attrs):
        if verdict == "high":
            if rank is not None and inst == "Y" and converged:
                warnings.warn(
                    f"rank {rank}: the fused cube's spectra describe Y's counts with a "
                    f"C-statistic {c / e:.2f} times its expectation ({z:+.0f} sigma): Y's "
                    f"spectra need more than {rank} components (or the spatial "
                    f"regularization is too strong). rank='auto' chooses the rank from Y's "
                    f"counts (xfusion.parametrization.choose_rank)", RankWarning,
                    stacklevel=4)
            else:
                warnings.warn(
                    f"{regularizer}: the fused cube does not explain {inst}'s counts: "
                    f"C-statistic {c / e:.2f} times its expectation ({z:+.0f} sigma); the "
                    f"regularization may be too strong, or the data hold what the model "
                    f"leaves out (a background not given as background_{inst}, sources "
                    f"outside the field){late}", FitWarning,
                    stacklevel=4)
        else:
            warnings.warn(
                f"{regularizer}: the fused cube fits {inst}'s noise: C-statistic {c / e:.2f} "
                f"times its expectation ({z:+.0f} sigma); the regularization is too weak "
                f"for these counts (a larger threshold k / k_range, or another regularizer)"
                f"{late}", FitWarning, stacklevel=4)


def _fit_attrs(param, x, Xd, Yd, background_X=None, background_Y=None) -> dict:
    """C-statistic of each instrument's counts at the result, with its expectation and spread
    under the fitted model (:mod:`xfusion.goodness`), as flat attrs; the model's expected
    counts include the known backgrounds."""
    from ._dask import persist
    from .goodness import goodness_of_fit

    mu = param.forward(x)
    mu = persist(*(m if b is None else m + b
                   for m, b in zip(mu, (background_X, background_Y), strict=True)))
    out = {}
    for name, D, m in (("X", Xd, mu[0]), ("Y", Yd, mu[1])):
        try:
            g = goodness_of_fit(D, m)
        except ValueError:          # a count where the model expects none: C is infinite
            g = {"cstat": None, "expected": None, "sigma": None}
        out.update({f"cstat_{name}": g["cstat"], f"cstat_{name}_expected": g["expected"],
                    f"cstat_{name}_sigma": g["sigma"]})
    return out

