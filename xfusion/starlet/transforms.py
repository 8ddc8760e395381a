r"""Starlet transforms (isotropic undecimated à trous wavelets, B3-spline) and their drivers.

Cubes are ``(energy, y, x)`` arrays. Three transforms share one interface:

======================  ===========================  ================================
class                   acts on                      coefficients
======================  ===========================  ================================
:class:`Starlet2D`      every image (last two axes)  ``(J + 1, *shape)``
:class:`Starlet1D`      every spectrum (axis 0)      ``(J + 1, *shape)``
:class:`Starlet2D1D`    2-D, then 1-D on each band   ``(J2 + 1, J1 + 1, L, M, N)``
======================  ===========================  ================================

Each has ``forward(z)``, ``inverse(c)`` (exact reconstruction: the sum of all scales),
``adjoint(c)`` (the true adjoint of ``forward``; the starlet is redundant, so the adjoint is *not*
the inverse), ``coeff_shape(shape)``, ``coarse_index``, ``noise_gains`` and ``depth()``, plus two
fused operations that never store the whole coefficient array: ``filter(z, fn)``
(``inverse(fn(forward(z)))`` for any per-band function) and ``threshold(z, thresh)`` (soft
thresholding and reconstruction: the prox step of an l1 penalty on the details). Numpy and dask
inputs are accepted; float32 stays float32: numpy arrays run in cache-sized blocks on a thread
pool, dask arrays chunk by chunk with halos (one :mod:`xfusion.halo` exchange). The prox
helpers (:func:`~xfusion.starlet.stats.soft_threshold`, :func:`~xfusion.starlet.stats.mad_sigma`,
:func:`~xfusion.starlet.stats.brightness_k`, ...) are in :mod:`xfusion.starlet.stats`.

Coefficient layout
------------------
Along each scale axis, index ``j - 1`` holds the detail :math:`w_j = c_{j-1} - c_j`
(``j = 1 … J``; index 0 is the *finest* detail) and index ``J`` (the last) holds the coarse scale
:math:`c_J`. For :class:`Starlet2D1D`, ``c[b, j]`` is the 1-D band ``j`` of the 2-D band ``b``;
``c[J2, J1]`` is the coarse scale of both and ``c[0, 0]`` the finest detail of both.

Boundaries
----------
``"mirror"`` (default; whole-sample symmetric extension, scipy's ``'mirror'``) or ``"reflect"``
(half-sample, scipy's ``'reflect'``), folded exactly into the operator at every scale, repeated
as often as needed for axes shorter than the dilated kernel (any size ≥ 1 works). The adjoint
uses the transposed folded operator, which differs from the filter in the first and last
``2d + 1`` samples, so the dot-product test holds to rounding error.

Speed
-----
Each smoothing is the B3 kernel written as four dilated two-tap sums
(:math:`[1,4,6,4,1] = [1,1]^{*4}`), computed with shifted additions on the flattened array, so
that every pass runs over long contiguous memory whatever the axis. The rows near the boundary,
where the folding changes the weights, are then overwritten by small dense matrices holding the
exact folded (or, for the adjoint, transposed) weights (:mod:`xfusion.starlet.smoothing`,
:mod:`xfusion.starlet.folding`). Cubes are processed in cache-sized
blocks of energy channels (with a halo of :math:`2(2^{J_1}-1)` channels for the spectral
transform) on a small thread pool (numpy releases the GIL in these loops), with per-thread
scratch buffers. For the (2400, 45, 45) float32 cube and ``Starlet2D1D(2, 3)`` the coefficients
alone are 233 MB, so ``forward`` is bounded by memory traffic; ``threshold`` keeps them in
cache. Pass ``out=`` in loops to avoid page-faulting a fresh 233 MB array per call. Measured
times and the alternatives that lost are printed by ``benchmarks/bench_starlet.py``.

With `numba <https://numba.pydata.org>`_ installed (``pip install xfusion[fast]``),
:meth:`Starlet2D1D.threshold` (the ``w2d1d`` prox) runs a compiled kernel instead
(:mod:`xfusion.starlet._jit`: each spectral smoothing fused with the thresholding of the band
it completes; the same blocks, threads and dask halos), about 4× faster on the cube above.
Set the environment variable ``XFUSION_JIT=0`` to use the numpy kernels.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._threads import run_blocks
from ..halo import is_dask
from . import _jit
from .folding import Boundary, _check_boundary, _check_J, starlet_depth
from .segments import (
    BandFn,
    _adjoint_2d1d_seg,
    _adjoint_seg,
    _ApplyFn,
    _filter_2d1d_seg,
    _filter_seg,
    _forward_2d1d_seg,
    _forward_seg,
    _slice_like,
    _SoftThreshold,
)
from .smoothing import _float_dtype, _workspace

__all__ = ["Starlet1D", "Starlet2D", "Starlet2D1D"]

#: Target number of elements per block (a few of these fit in the L2/L3 cache together).
_BLOCK_ELEMS = 1 << 18


# ----------------------------------------------------------------------------------------------
# numpy driver: cache-sized energy blocks on a thread pool
# ----------------------------------------------------------------------------------------------
def _run(task: Callable[[tuple[int, int]], None], blocks: list[tuple[int, int]],
         n_threads: int) -> None:
    """Run ``task`` on every block on the shared pool (:func:`xfusion._threads.run_blocks`)."""
    run_blocks(task, blocks, n_threads)


def _blocks(n: int, inner: int, halo: int) -> list[tuple[int, int]]:
    """Split ``n`` rows into blocks of about ``_BLOCK_ELEMS`` elements (at least ``2·halo``)."""
    B = max(1, _BLOCK_ELEMS // max(inner, 1), 2 * halo)
    nb = max(1, round(n / B))
    edges = np.linspace(0, n, nb + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _prepare(z: Any) -> np.ndarray:
    z = np.asarray(z)
    return np.ascontiguousarray(z, dtype=_float_dtype(z.dtype))


def _out(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape "
                         f"{tuple(shape)}, got {out.dtype} {out.shape}")
    return out


# ----------------------------------------------------------------------------------------------
# dask driver: one halo exchange (xfusion.halo), then map_blocks that knows the global edges
# ----------------------------------------------------------------------------------------------
def _dask_apply(x, axes: Sequence[int], depth: dict[int, int], n_lead_in: int,
                lead_out: tuple[int, ...], kernel: Callable, dtype: np.dtype):
    """Run ``kernel(block, edges, core, loc)`` on every chunk of dask array ``x`` with halos.

    ``axes`` are the filtered data axes (data axes exclude the ``n_lead_in`` leading
    coefficient axes, which are made single chunks). Each chunked filtered axis gets
    ``depth[axis]`` samples of halo from its neighbours and no padding at the array's ends
    (``boundary='none'``): the kernel applies the exact boundary there. Chunks smaller than
    the depth are first merged (``ensure_minimum_chunksize``). The kernel receives the edge
    flags and core range of each filtered axis and the global location of the core (a tuple
    of slices over the data axes), and returns the core with ``lead_out`` leading axes.
    """
    import dask.array as da

    from ..halo import plan

    x = x.astype(dtype)
    if n_lead_in:
        x = x.rechunk({i: -1 for i in range(n_lead_in)})
    x, halo = plan(x, {ax + n_lead_in: depth[ax] for ax in axes}, "none", small="merge")
    xo = halo.extend(x)
    data_chunks = x.chunks[n_lead_in:]
    faxes = [ax + n_lead_in for ax in axes]

    def fn(block, block_info=None):
        cl = block_info[0]["chunk-location"]
        edges, core, loc = halo.frame(cl, faxes)
        return kernel(np.ascontiguousarray(block), edges, core, loc[n_lead_in:])

    chunks = tuple((s,) for s in lead_out) + data_chunks
    meta = np.empty((0,) * (len(lead_out) + len(data_chunks)), dtype)
    kw: dict[str, Any] = {}
    if len(lead_out) > n_lead_in:
        kw["new_axis"] = list(range(len(lead_out) - n_lead_in))
    elif n_lead_in > len(lead_out):
        kw["drop_axis"] = list(range(n_lead_in - len(lead_out)))
    return da.map_blocks(fn, xo, chunks=chunks, dtype=dtype, meta=meta, **kw)


# ----------------------------------------------------------------------------------------------
# public transforms
# ----------------------------------------------------------------------------------------------
class _Starlet:
    """Shared drivers (numpy blocks on threads, dask chunks with halos); see the subclasses."""

    boundary: str
    n_threads: int

    # -- to be provided by subclasses -----------------------------------------------------------
    @property
    def _lead(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _faxes(self, ndim: int) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _depth_of(self, ax: int, ndim: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_data(self, shape: tuple[int, ...]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _kfwd(self, x, edges, core, out, ws):  # pragma: no cover - abstract
        raise NotImplementedError

    def _kadj(self, c, edges, core, out, ws):  # pragma: no cover - abstract
        raise NotImplementedError

    def _kfilter(self, x, edges, core, consumer, out, ws):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared API ------------------------------------------------------------------------------
    def coeff_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of :meth:`forward`'s result for data of ``shape``."""
        shape = tuple(int(s) for s in shape)
        self._check_data(shape)
        return self._lead + shape

    def depth(self, ndim: int = 3) -> dict[int, int]:
        r"""Halo per data axis that a chunk needs: :math:`2(2^J - 1)` on filtered axes."""
        return {ax: self._depth_of(ax, ndim) for ax in self._faxes(ndim)}

    def forward(self, z, out: np.ndarray | None = None):
        """Analysis: data → coefficients (see the class notes for the layout).

        Parameters
        ----------
        z : array_like or dask array
            Data; integers are promoted to float64, float32 stays float32.
        out : ndarray, optional
            C-contiguous array of shape ``coeff_shape(z.shape)`` and ``z``'s float dtype to
            write into (saves allocating, and page-faulting, a large array every call).
        """
        if is_dask(z):
            return self._dask(z, 0, self._lead, self._dask_fwd)
        z = _prepare(z)
        out = _out(out, self.coeff_shape(z.shape), z.dtype)
        lead = (slice(None),) * len(self._lead)

        def work(s, e, a, b, edges, core, ws):
            self._kfwd(z[a:b], edges, core, out[lead + (slice(s, e),)], ws)

        self._drive(z.shape, work)
        return out

    def adjoint(self, coeffs, out: np.ndarray | None = None):
        """Adjoint of :meth:`forward` (Euclidean inner product): coefficients → data."""
        nl = len(self._lead)
        if is_dask(coeffs):
            self._check_coeffs(coeffs.shape)
            return self._dask(coeffs, nl, (), self._dask_adj)
        c = _prepare(coeffs)
        self._check_coeffs(c.shape)
        out = _out(out, c.shape[nl:], c.dtype)
        lead = (slice(None),) * nl

        def work(s, e, a, b, edges, core, ws):
            self._kadj(c[lead + (slice(a, b),)], edges, core, out[s:e], ws)

        self._drive(c.shape[nl:], work)
        return out

    def inverse(self, coeffs, out: np.ndarray | None = None):
        """Reconstruction: the sum of all scales (the exact inverse of :meth:`forward`)."""
        nl = len(self._lead)
        self._check_coeffs(np.shape(coeffs))
        if is_dask(coeffs):
            dt = _float_dtype(coeffs.dtype)
            return coeffs.astype(dt).sum(axis=tuple(range(nl)), dtype=dt)
        c = _prepare(coeffs)
        shape = c.shape[nl:]
        out = _out(out, shape, c.dtype)
        flat = c.reshape((-1,) + shape)
        if len(shape) == 0:
            np.sum(flat, axis=0, out=out)
            return out

        def task(blk):
            s, e = blk
            o = out[s:e]
            np.copyto(o, flat[0, s:e])
            for k in range(1, flat.shape[0]):
                np.add(o, flat[k, s:e], out=o)

        _run(task, _blocks(shape[0], math.prod(shape[1:]), 0), self.n_threads)
        return out

    def filter(self, z, fn: BandFn, out: np.ndarray | None = None):
        r"""``inverse(fn(forward(z)))`` computed block by block, never storing all coefficients.

        The wavelet-domain filtering step of a prox (threshold the details, reconstruct)
        without the round trip of the full coefficient array through memory (233 MB for a
        (2400, 45, 45) float32 cube with ``Starlet2D1D(2, 3)``): the coefficients of one block
        of energy channels live in cache and are summed as soon as ``fn`` has seen them. For
        plain soft thresholding :meth:`threshold` is faster still.

        Parameters
        ----------
        z : array_like or dask array
            Data.
        fn : callable ``fn(index, band, loc) -> array or None``
            Called once per band and block. ``index`` is the band's index in the coefficient
            array (an int, or ``(b, j)`` for :class:`Starlet2D1D`), ``band`` a scratch array
            holding that band's coefficients over the data region ``z[loc]`` (``loc`` is a
            tuple of slices in global data coordinates, e.g. to slice a per-voxel threshold
            map). Return the new coefficients, or modify ``band`` in place and return None.
            With numpy input ``fn`` may be called from several threads at once.
        out : ndarray, optional
            Output array (shape and dtype of ``z``).

        Returns
        -------
        array
            :math:`\sum_{\text{bands}} fn(c_{\text{band}})`; equals ``z`` when ``fn`` is the
            identity.

        Examples
        --------
        Soft-threshold all details at 0.1, keep the coarse scale:

        >>> import numpy as np
        >>> from xfusion.starlet import soft_threshold
        >>> T = Starlet2D1D(2, 3)
        >>> z = np.random.default_rng(0).random((32, 8, 8))
        >>> def shrink(index, band, loc):
        ...     if index != T.coarse_index:
        ...         soft_threshold(band, 0.1, out=band)
        >>> x = T.filter(z, shrink)
        >>> c = T.forward(z)
        >>> for b in range(3):
        ...     for j in range(4):
        ...         if (b, j) != T.coarse_index:
        ...             c[b, j] = soft_threshold(c[b, j], 0.1)
        >>> bool(np.allclose(x, T.inverse(c)))
        True
        """
        if is_dask(z):
            return self._dask(z, 0, (), functools.partial(self._dask_filter, _ApplyFn, fn))
        z = _prepare(z)
        self._check_data(z.shape)
        out = _out(out, z.shape, z.dtype)
        rest = tuple(slice(0, n) for n in z.shape[1:])

        def work(s, e, a, b, edges, core, ws):
            self._kfilter(z[a:b], edges, core, _ApplyFn(fn, (slice(s, e),) + rest), out[s:e],
                          ws)

        self._drive(z.shape, work)
        return out

    def threshold(self, z, thresh, out: np.ndarray | None = None, return_l1: bool = False,
                  levels: tuple | None = None, positive: bool = False):
        r"""Soft-threshold the coefficients of ``z`` and reconstruct, block by block.

        The prox step of an l1 penalty on starlet details (with the usual
        threshold-then-sum approximation for a redundant frame), at the cost of one forward
        transform: :math:`x = \sum_b \operatorname{soft}(c_b, t_b)` summed with the bands left
        untouched, computed as :math:`x = z - \sum_b \operatorname{clip}(c_b, -t_b, t_b)`
        (two passes per thresholded band, none for the others).

        Parameters
        ----------
        z : array_like or dask array
            Data.
        thresh : mapping or callable
            ``thresh[index]`` / ``thresh(index)`` gives band ``index``'s threshold: a scalar
            >= 0, an array broadcastable to ``z`` (e.g. a per-voxel map
            :math:`k(v)\,\sigma_b`), a pair ``(factor, map)`` meaning ``factor * map``
            (cheaper: the map is sliced once per block and shared by the bands), or None to
            keep the band (e.g. the coarse scale; indices missing from a mapping are kept
            too). Indices are ints, or ``(b, j)`` for :class:`Starlet2D1D`.
        out : ndarray, optional
            Output array (shape and dtype of ``z``).
        return_l1 : bool
            Also return :math:`\sum_b \sum_v t_b(v)\,|\operatorname{soft}(c_b, t_b)(v)|`, the
            weighted l1 norm of the thresholded coefficients (numpy input only).
        levels : tuple of ndarray, optional
            :class:`Starlet2D1D` with the compiled kernel only: the ``J2`` spatial smoothings
            of the whole numpy ``z`` (as :func:`xfusion.starlet._jit.finest_and_coarse_2d1d`
            returns them with ``levels=True``), reused instead of recomputed; ignored
            elsewhere.
        positive : bool
            Also clip the result at 0 (numpy input: block by block, while each block is in
            cache; the l1 is that of the thresholded coefficients either way).

        Returns
        -------
        x : array
            Reconstruction from the thresholded coefficients.
        l1 : float
            Only with ``return_l1``.

        Notes
        -----
        Equal to ``inverse(c')`` with ``c'[b] = soft_threshold(forward(z)[b], t_b)``;
        thresholds must be >= 0 (not checked here, for speed).
        """
        if isinstance(thresh, Mapping):
            get = dict(thresh).get
        elif callable(thresh):
            get = thresh
        else:
            raise TypeError(f"thresh must be a mapping or a callable, got {type(thresh)}")
        if is_dask(z):
            if return_l1:
                raise NotImplementedError("return_l1 is not available for dask input")
            x = self._dask(z, 0, (), functools.partial(self._dask_filter, _SoftThreshold, get))
            return x.clip(min=0) if positive else x
        z = _prepare(z)
        self._check_data(z.shape)
        out = _out(out, z.shape, z.dtype)
        rest = tuple(slice(0, n) for n in z.shape[1:])
        l1: list[float] | None = [] if return_l1 else None

        def work(s, e, a, b, edges, core, ws):
            self._kfilter(z[a:b], edges, core,
                          _SoftThreshold(get, (slice(s, e),) + rest, l1, ws, levels),
                          out[s:e], ws)
            if positive:
                np.maximum(out[s:e], 0, out=out[s:e])

        self._drive(z.shape, work)
        if return_l1:
            return out, float(np.sum(l1))
        return out

    # -- drivers ---------------------------------------------------------------------------------
    def _check_coeffs(self, shape: tuple[int, ...]) -> None:
        nl = len(self._lead)
        if tuple(shape[:nl]) != self._lead:
            raise ValueError(f"{self!r}: expected coefficients of shape {self._lead} + data "
                             f"shape, got {tuple(shape)}")
        self._check_data(tuple(shape[nl:]))

    def _drive(self, shape: tuple[int, ...], work: Callable) -> None:
        """Run ``work`` on blocks of rows of axis 0 (with a halo when axis 0 is filtered)."""
        ndim = len(shape)
        faxes = self._faxes(ndim)
        H = self._depth_of(0, ndim) if 0 in faxes else 0
        L = shape[0]

        def task(blk):
            s, e = blk
            a, b = max(s - H, 0), min(e + H, L)
            edges = [(a == 0, b == L) if ax == 0 else (True, True) for ax in faxes]
            core = [(s - a, e - a) if ax == 0 else (0, shape[ax]) for ax in faxes]
            work(s, e, a, b, edges, core, _workspace())

        _run(task, _blocks(L, math.prod(shape[1:]), H), self.n_threads)

    def _dask(self, x, n_lead_in: int, lead_out: tuple[int, ...], kernel: Callable):
        ndim = x.ndim - n_lead_in
        self._check_data(tuple(x.shape[n_lead_in:]))
        faxes = self._faxes(ndim)
        dep = {ax: self._depth_of(ax, ndim) for ax in faxes}
        return _dask_apply(x, faxes, dep, n_lead_in, lead_out, kernel, _float_dtype(x.dtype))

    def _dask_fwd(self, block, edges, core, loc):
        out = np.empty(self._lead + _core_shape(block, edges, core, self), block.dtype)
        return self._kfwd(block, edges, core, out, None)

    def _dask_adj(self, block, edges, core, loc):
        nl = len(self._lead)
        out = np.empty(_core_shape(block[(0,) * nl], edges, core, self), block.dtype)
        return self._kadj(block, edges, core, out, None)

    def _dask_filter(self, make, arg, block, edges, core, loc):
        out = np.empty(_core_shape(block, edges, core, self), block.dtype)
        if make is _ApplyFn:
            consumer = _ApplyFn(arg, loc)
        else:
            consumer = _SoftThreshold(arg, loc, None, None)
        return self._kfilter(block, edges, core, consumer, out, None)

    def _impulse_gains(self, shape: tuple[int, ...]) -> np.ndarray:
        x = np.zeros(shape)
        x[tuple(s // 2 for s in shape)] = 1.0
        c = self.forward(x)
        nl = len(self._lead)
        return np.sqrt((c.reshape(c.shape[:nl] + (-1,)) ** 2).sum(axis=-1))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def _params(self) -> dict:  # pragma: no cover - overridden
        return {}


def _core_shape(block: np.ndarray, edges, core, T: _Starlet) -> tuple[int, ...]:
    """Data shape of a block's core (``block`` has data axes only)."""
    shp = list(block.shape)
    for ax, (c0, c1) in zip(T._faxes(block.ndim), core, strict=True):
        shp[ax] = c1 - c0
    return tuple(shp)


class Starlet2D(_Starlet):
    r"""2-D starlet transform of every image of a cube (the last two axes).

    Parameters
    ----------
    J : int
        Number of detail scales (``J >= 1``).
    boundary : {"mirror", "reflect"}
        Symmetric extension at the image borders: ``"mirror"`` (whole-sample, ``c b | a b c``;
        the classic starlet choice, scipy's ``'mirror'``) or ``"reflect"`` (half-sample,
        ``b a | a b c``; scipy's ``'reflect'``). Images smaller than the dilated kernel are
        handled by repeated reflection (the extension is periodic), so any size works.
    n_threads : int, optional
        Threads for numpy inputs (default: the number of CPUs). Dask inputs run
        single-threaded kernels per chunk under dask's scheduler.

    Notes
    -----
    With :math:`h = [1, 4, 6, 4, 1]/16` dilated by :math:`2^{j-1}` (``2^{j-1} - 1`` zeros
    between taps) and :math:`G_j = h_j^{(y)} \otimes h_j^{(x)}` (separable, with the boundary
    folded in),

    .. math::

        c_0 = z,\quad c_j = G_j c_{j-1},\quad w_j = c_{j-1} - c_j\ (j = 1\ldots J),
        \qquad z = c_J + \sum_{j=1}^{J} w_j .

    ``forward(z)[j-1]`` is :math:`w_j` (index 0 the finest detail) and ``forward(z)[J]`` is
    :math:`c_J` (:attr:`coarse_index`). ``inverse`` sums the scales (exact reconstruction).
    ``adjoint`` is the Euclidean adjoint of ``forward``:

    .. math::

        W^\top (w_1, \ldots, w_J, c_J) = t_0,\qquad t_J = c_J,\quad
        t_{j-1} = w_j + G_j^\top (t_j - w_j),

    where :math:`G_j^\top` is the transposed folded matrix (not the same filter near the
    borders). Because the transform is redundant, :math:`W^\top W \ne I` while
    :math:`W^{+} W = I` for the sum-of-scales inverse :math:`W^{+}`.

    Examples
    --------
    >>> import numpy as np
    >>> T = Starlet2D(2)
    >>> z = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    >>> c = T.forward(z)
    >>> c.shape, c.dtype
    ((3, 3, 16, 16), dtype('float32'))
    >>> bool(np.allclose(T.inverse(c), z, atol=1e-6))
    True
    """

    def __init__(self, J: int, boundary: Boundary = "mirror", n_threads: int | None = None):
        self.J = _check_J(J)
        self.boundary = _check_boundary(boundary)
        self.n_threads = int(n_threads or os.cpu_count() or 1)

    def _params(self) -> dict:
        return {"J": self.J, "boundary": self.boundary}

    @property
    def _lead(self) -> tuple[int, ...]:
        return (self.J + 1,)

    @property
    def coarse_index(self) -> int:
        """Index of the coarse scale along the first coefficient axis (``J``, the last)."""
        return self.J

    @property
    def noise_gains(self) -> np.ndarray:
        r"""Std of each band of the transform of unit white noise (away from the borders).

        :math:`\|\psi_j\|_2`, shape ``(J + 1,)``; for the B3 starlet 0.890, 0.201, 0.086, …
        """
        n = 4 * starlet_depth(self.J) + 1
        return self._impulse_gains((n, n))

    def _faxes(self, ndim: int) -> tuple[int, ...]:
        return (ndim - 2, ndim - 1)

    def _depth_of(self, ax: int, ndim: int) -> int:
        return starlet_depth(self.J) if ax >= ndim - 2 else 0

    def _check_data(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 2:
            raise ValueError(f"Starlet2D needs arrays with at least 2 axes (…, y, x), got "
                             f"shape {shape}")

    def _kfwd(self, x, edges, core, out, ws):
        return _forward_seg(x, self._faxes(x.ndim), self.J, edges, core, self.boundary, out, ws)

    def _kadj(self, c, edges, core, out, ws):
        return _adjoint_seg(c, self._faxes(c.ndim - 1), self.J, edges, core, self.boundary,
                            out, ws)

    def _kfilter(self, x, edges, core, consumer, out, ws):
        return _filter_seg(x, self._faxes(x.ndim), self.J, edges, core, self.boundary,
                           consumer, out, ws)


class Starlet1D(_Starlet):
    r"""1-D starlet transform of every spectrum of a cube (along axis 0, energy).

    Parameters
    ----------
    J : int
        Number of detail scales (``J >= 1``).
    boundary : {"mirror", "reflect"}
        Symmetric extension at both ends of the energy axis (see :class:`Starlet2D`).
    n_threads : int, optional
        Threads for numpy inputs (default: the number of CPUs).

    Notes
    -----
    Same cascade as :class:`Starlet2D` with :math:`G_j` the dilated B3 smoothing along axis 0
    only: ``forward(z)[j-1]`` :math:`= w_j = c_{j-1} - c_j`, ``forward(z)[J]`` :math:`= c_J`,
    ``inverse`` = sum over the first axis, ``adjoint``
    :math:`t_{j-1} = w_j + G_j^\top(t_j - w_j)`.
    """

    def __init__(self, J: int, boundary: Boundary = "mirror", n_threads: int | None = None):
        self.J = _check_J(J)
        self.boundary = _check_boundary(boundary)
        self.n_threads = int(n_threads or os.cpu_count() or 1)

    def _params(self) -> dict:
        return {"J": self.J, "boundary": self.boundary}

    @property
    def _lead(self) -> tuple[int, ...]:
        return (self.J + 1,)

    @property
    def coarse_index(self) -> int:
        """Index of the coarse scale along the first coefficient axis (``J``, the last)."""
        return self.J

    @property
    def noise_gains(self) -> np.ndarray:
        r"""Std of each band for unit white noise (away from the ends), shape ``(J + 1,)``."""
        return self._impulse_gains((4 * starlet_depth(self.J) + 1,))

    def _faxes(self, ndim: int) -> tuple[int, ...]:
        return (0,)

    def _depth_of(self, ax: int, ndim: int) -> int:
        return starlet_depth(self.J) if ax == 0 else 0

    def _check_data(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 1:
            raise ValueError("Starlet1D needs arrays with at least 1 axis (energy, …)")

    def _kfwd(self, x, edges, core, out, ws):
        return _forward_seg(x, (0,), self.J, edges, core, self.boundary, out, ws)

    def _kadj(self, c, edges, core, out, ws):
        return _adjoint_seg(c, (0,), self.J, edges, core, self.boundary, out, ws)

    def _kfilter(self, x, edges, core, consumer, out, ws):
        return _filter_seg(x, (0,), self.J, edges, core, self.boundary, consumer, out, ws)


class Starlet2D1D(_Starlet):
    r"""2-D–1-D starlet transform of an ``(energy, y, x)`` cube.

    The 2-D transform with ``J2`` scales is applied to every energy slice, then the 1-D
    transform with ``J1`` scales to every spectrum of each of the ``J2 + 1`` 2-D bands.

    Parameters
    ----------
    J2, J1 : int
        Number of spatial (2-D) and spectral (1-D) detail scales (paper: ``J2 = 2``,
        ``J1 = 3``).
    boundary : {"mirror", "reflect"}
        Symmetric extension on all three axes (see :class:`Starlet2D`).
    n_threads : int, optional
        Threads for numpy inputs (default: the number of CPUs).

    Notes
    -----
    Coefficients have shape ``(J2 + 1, J1 + 1, L, M, N)``:

    .. math::

        c[b, j] = \Bigl(W^{(1)}_j \otimes W^{(2)}_b\Bigr) z ,

    where :math:`W^{(2)}_b` extracts 2-D band ``b`` (``b < J2``: detail
    :math:`w_{b+1}`, ``b = J2``: coarse) and :math:`W^{(1)}_j` 1-D band ``j`` likewise. The two
    factors act on different axes and commute. ``c[J2, J1]`` is the coarse scale of both
    (:attr:`coarse_index`), ``c[0, 0]`` the finest detail of both; ``c[b, J1]`` (``b < J2``)
    are spatial details of the spectrally smooth cube and ``c[J2, j]`` (``j < J1``) spectral
    details of the spatially smooth cube. The inverse is :math:`z = \sum_{b,j} c[b, j]`; the
    adjoint is :math:`\sum_{b,j} W^{(2)\top}_b W^{(1)\top}_j c[b,j]`, computed as the 1-D
    adjoint of each 2-D band followed by one 2-D adjoint.

    Examples
    --------
    >>> T = Starlet2D1D(2, 3)
    >>> T.coeff_shape((64, 9, 9))
    (3, 4, 64, 9, 9)
    >>> T.coarse_index
    (2, 3)
    """

    def __init__(self, J2: int, J1: int, boundary: Boundary = "mirror",
                 n_threads: int | None = None):
        self.J2 = _check_J(J2, "J2")
        self.J1 = _check_J(J1, "J1")
        self.boundary = _check_boundary(boundary)
        self.n_threads = int(n_threads or os.cpu_count() or 1)

    def _params(self) -> dict:
        return {"J2": self.J2, "J1": self.J1, "boundary": self.boundary}

    @property
    def _lead(self) -> tuple[int, ...]:
        return (self.J2 + 1, self.J1 + 1)

    @property
    def coarse_index(self) -> tuple[int, int]:
        """Index ``(J2, J1)`` of the coarse scale (both coefficient axes: the last entry)."""
        return (self.J2, self.J1)

    @property
    def noise_gains(self) -> np.ndarray:
        r"""Std of each band for unit white noise, shape ``(J2 + 1, J1 + 1)``.

        The 2-D and 1-D factors act on different axes, so the gains multiply:
        :math:`\|\psi_{b,j}\| = \|\psi^{(2)}_b\|\,\|\psi^{(1)}_j\|`.
        """
        g2 = Starlet2D(self.J2, self.boundary, 1).noise_gains
        g1 = Starlet1D(self.J1, self.boundary, 1).noise_gains
        return g2[:, None] * g1[None, :]

    def _faxes(self, ndim: int) -> tuple[int, ...]:
        return (0, 1, 2)

    def _depth_of(self, ax: int, ndim: int) -> int:
        return starlet_depth(self.J1) if ax == 0 else starlet_depth(self.J2)

    def _check_data(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise ValueError(f"Starlet2D1D needs (energy, y, x) cubes, got shape {shape}")

    def _kfwd(self, x, edges, core, out, ws):
        return _forward_2d1d_seg(x, self.J2, self.J1, edges, core, self.boundary, out, ws)

    def _kadj(self, c, edges, core, out, ws):
        return _adjoint_2d1d_seg(c, self.J2, self.J1, edges, core, self.boundary, out, ws)

    def _kfilter(self, x, edges, core, consumer, out, ws):
        if type(consumer) is _SoftThreshold and _jit.available():
            # compiled fused pass (optional numba; same map, see xfusion.starlet._jit)
            levels = None
            if consumer.levels is not None:      # rows [a, a + len(x)) of the whole cube
                a = consumer.loc[0].start - core[0][0]
                levels = [lv[a:a + x.shape[0]] for lv in consumer.levels]
            l1 = _jit.threshold_2d1d_seg(
                np.ascontiguousarray(x), self.J2, self.J1, edges, core, self.boundary,
                consumer.thresh, functools.partial(_slice_like, loc=consumer.loc), out,
                consumer.l1 is not None, levels=levels)
            if consumer.l1 is not None:
                consumer.l1.append(l1)
            return out
        return _filter_2d1d_seg(x, self.J2, self.J1, edges, core, self.boundary, consumer,
                                out, ws)
