r"""Regularizers φ of the fusion objective (docs/model.md), in the functional contract.

Every regularizer is a :class:`~xfusion.functionals.Functional`: ``value(x)`` for any ``x``,
``prox(v, step, metric=None)`` (the prox of ``step·φ`` plus any constraint), and, for the
data-driven thresholds, the adaptive hooks ``frozen`` / ``end_iteration`` / ``state`` /
``set_state``. The positivity constraint alone is :class:`~xfusion.functionals.Positivity`;
smooth penalties (:class:`~xfusion.functionals.Sobolev`) go into the solver's gradient step.
Which regularizer :func:`xfusion.fuse` builds for which name is in :mod:`xfusion.builders`.

Wavelet thresholds
------------------
Starlet detail coefficients of band ``b`` are soft-thresholded, voxel by voxel, at
:math:`t_b = k\,s\,g_b\sqrt{\alpha P}`: ``g_b`` is the band's white-noise gain, ``s`` the noise
scale (the MAD of the finest band of the current gradient step, in units of
:math:`\sqrt{\alpha P}`), ``α`` the step and ``P`` the solver's diagonal metric. ``k`` is a
constant or varies per voxel with the brightness of the coarse scale (k → k_max in dim voxels,
→ k_min in bright ones; :func:`xfusion.starlet.brightness_k`). As in the paper the thresholds
follow the iterate during the first ``adapt_iter`` iterations; they are then **frozen** as the
weights :math:`\lambda_b = k\,s\,g_b\sqrt{\alpha P}/(\alpha\bar P)` (``P̄`` the mean metric when
they froze) of a fixed objective :math:`\varphi(x) = \sum_b \|\lambda_b \cdot W_b x\|_1`, so the
run converges to a well-defined point and the stopping rule measures a real objective. The prox
of the analysis l1 norm of a redundant transform has no closed form; we use the standard
approximation — threshold the coefficients, reconstruct by the starlet inverse — and the
objective counts φ on the thresholded coefficients (:meth:`StarletL1.prox_value`);
:meth:`StarletL1.value` is the analysis norm of any ``x``.
"""

from __future__ import annotations

import copy
import functools

import numpy as np

from .functionals import Functional
from .halo import is_dask

__all__ = ["StarletL1"]


def _first(r):
    """The reconstruction of a ``(x, l1)`` task result."""
    return r[0]


def _second(r):
    """The second entry of a task result."""
    return r[1]


def _third(r):
    """The third entry of a task result."""
    return r[2]


class _Lattice:
    """Stands in for an array in :func:`~xfusion.starlet.lattice_sample`: yields its index."""

    def __init__(self, shape):
        self.shape = shape

    def __getitem__(self, idx):
        return idx


def _serial(bands):
    """``bands`` (a :class:`~xfusion.starlet.StarletBands`) with its transform run on the
    calling thread only, for use inside dask tasks: the scheduler already runs one task per
    core, and the transform's own thread pool would oversubscribe the cores and keep a set of
    scratch buffers per pool thread in every worker."""
    t = copy.copy(bands.transform)
    t.n_threads = 1
    S = copy.copy(bands)
    S.transform = t
    return S


def _in_task(fn):
    """Wrap a dask task that runs the starlet on numpy blocks: the scratch buffers the
    transform keeps on the calling thread (:class:`xfusion.starlet.smoothing._Workspace`, up to
    64 MB per role) are dropped when the task ends, so that they do not stay in the worker between
    tasks as unmanaged memory (which makes the worker spill its managed data early)."""
    from .starlet import release_scratch

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_scratch()

    return run


def _l1_of(r):
    """The l1 of a ``(x, l1)`` task result, as a one-element block."""
    return np.full((1,) * r[0].ndim, r[1], np.float64)


class StarletL1(Functional):
    r"""Weighted l1 norm of starlet detail coefficients, with noise-scaled thresholds.

    Parameters
    ----------
    transform : StarletBands
        The 2-D–1-D (on Z) or 2-D (on each low-rank image W_r) starlet, kept as
        :attr:`bands`.
    k : float or "auto"
        Threshold in units of the band noise; ``"auto"`` varies it per voxel with the
        brightness of the coarse scale over ``k_range`` (dim → k_max, bright → k_min).
    positive : bool
        Project onto x ≥ 0 after reconstruction.
    adapt_iter : int
        Iterations during which the noise scale and the k map follow the iterate; they are
        then frozen.
    per_slice : bool
        One noise scale per leading index (per low-rank image).
    hold_metric : bool
        Ask the solver to hold its metric once the thresholds freeze.

    Notes
    -----
    The gradient step is taken in the diagonal metric P of the solver, whose entries are the
    variance of a one-step estimate (for the EM metric, :math:`P_j = x_j / (K^T 1)_j`). The
    noise of band ``b`` at voxel ``j`` is therefore modelled as
    :math:`s\,g_b\sqrt{P_j}` with ``g_b`` the band's white-noise gain and ``s`` a scalar
    estimated as MAD(finest band / (g_0 √P)) / 0.6745 — the paper's MAD rule, made
    heteroscedastic. Coefficients are soft-thresholded at :math:`k\,s\,g_b\sqrt{\alpha P_j}`
    and the cube is rebuilt from the thresholded coefficients. After ``adapt_iter`` iterations
    the whole threshold map is frozen, so the iteration becomes a fixed scaled
    forward–backward map (measured: letting the map keep following √P lets dim voxels lose
    their regularization as P → 0 there, and NMSE drifts down by several dB over hundreds of
    iterations).
    """

    def __init__(self, transform, k: float | str = "auto", k_range=(0.5, 3.0),
                 positive: bool = True, adapt_iter: int = 20, per_slice: bool = False,
                 hold_metric: bool = True):
        #: the :class:`~xfusion.starlet.StarletBands` the penalty acts on
        self.bands = transform
        #: the thresholds are set from the solver's metric P; when True the solver holds P
        #: once they freeze (:meth:`xfusion.solver.FISTA.holding_metric`)
        self.hold_metric = bool(hold_metric)
        self.k = k
        self.k_range = tuple(float(v) for v in k_range)
        self.positive = positive
        self.adapt_iter = int(adapt_iter)
        self.per_slice = per_slice
        self.frozen = False
        self.scale = None
        self.kmap = None
        self.base = None
        #: α P̄: the step times the mean metric when the thresholds were set, which turns
        #: thresholds t = α P λ into objective weights λ ≈ t / (α P̄)
        self.mean_metric = 1.0
        self._last = (None, 0.0)
        self._levels = None   # (prox input, its spatial smoothings) kept by the estimate

    def _shape_scale(self, s):
        if self.per_slice:
            return np.asarray(s).reshape((-1,) + (1,) * (self.bands.ndim_data - 1))
        return float(s)

    def _estimate(self, v, sqrtP, fused: tuple | None = None) -> None:
        """Set the noise scale and the k map from ``v`` (and, with ``fused = (step, P)``,
        the threshold base and P̄ too, in one compiled pass; ``sqrtP`` is then not used)."""
        from .starlet import brightness_k, lattice_sample, mad_sigma, median

        g = self.bands.noise_gains
        # both medians are taken over regular samples of ~10⁶ coefficients (the same on numpy
        # and dask); on dask only the samples come back to the client (one pass over the
        # transform, each chunk's coefficients sampled inside its task) and the k map is built
        # chunk by chunk, staying on the workers
        if is_dask(v):
            import dask

            from ._dask import persist

            fin, amp, coarse = self._samples_dask(v)
            fin = fin / v.dtype.type(g[0]) / (lattice_sample(sqrtP, keep_leading=self.per_slice)
                                              if np.ndim(sqrtP) else sqrtP)
            # one forward transform per chunk gives the samples and the coarse band; the
            # coarse band waits on the workers (one cube) until the k map is built from it
            if self.k == "auto":
                fin, amp, coarse = persist(fin, amp, coarse)
            fin, amp = dask.compute(fin, amp)
        else:
            # the finest band only at the lattice's voxels (the lattice depends on the shape
            # only), then scaled by the noise model there
            idx = lattice_sample(_Lattice(tuple(v.shape)), keep_leading=self.per_slice)
            idx = (slice(None),) * v.ndim if isinstance(idx, _Lattice) else tuple(idx)
            if fused is not None:   # the prox reuses the spatial smoothings of v
                fin, coarse, lv = self.bands.finest_and_coarse(v, sample=idx, levels=True)
                self._levels = (v, lv)
            else:
                fin, coarse = self.bands.finest_and_coarse(v, sample=idx)
            fin = fin / v.dtype.type(g[0])
            if fused is not None:
                step, P = fused
                sqrtP = np.sqrt(step) if P is None else np.sqrt(
                    np.multiply(np.broadcast_to(P, v.shape)[idx], step, dtype=v.dtype))
                fin = fin / sqrtP
            elif np.ndim(sqrtP):
                fin = fin / np.broadcast_to(sqrtP, v.shape)[idx]
            else:
                fin = fin / sqrtP
            amp = abs(lattice_sample(coarse))
        nz = amp[amp > 0]
        reference = median(nz) if nz.size else 0.0
        if self.per_slice:
            self.scale = np.array([float(mad_sigma(fin[i])) for i in range(fin.shape[0])])
        else:
            self.scale = float(mad_sigma(fin))
        if self.k == "auto":
            if fused is not None:
                # k map and threshold base in one pass (fused = (step, P))
                from .starlet import _jit

                step, P = fused
                k_min, k_max = self.k_range
                self.kmap, self.base, sP = _jit.threshold_base(
                    coarse, P, step, self.scale, k_min, k_max, reference, 2.0)
                self.mean_metric = step * sP / v.size
                return
            km = brightness_k(coarse, *self.k_range, reference=reference)
            self.kmap = km.astype(v.dtype) if is_dask(km) else np.asarray(km, v.dtype)
        else:
            self.kmap = float(self.k)

    def _fused(self, v, P) -> bool:
        """Whether the in-memory estimate can build the threshold base in one compiled pass
        (per-voxel k map, one scale, a metric of ``v``'s shape)."""
        from .starlet import _jit

        return (self.k == "auto" and not self.per_slice and _jit.available()
                and (P is None or (not is_dask(P) and np.shape(P) == np.shape(v)))
                and np.dtype(v.dtype) in (np.float32, np.float64))

    def _samples_dask(self, v):
        """The lattice samples of the finest band and of |coarse|, and the coarse band, of a
        chunked ``v``, lazily.

        One task per chunk (with the starlet's halo) forms the chunk's coefficients and keeps
        only the lattice points (:func:`~xfusion.starlet.lattice_sample`'s global strides)
        that fall in its core and the core of the coarse band, so no coefficient block leaves
        its task and the transform runs once per chunk.
        """
        import dask.array as da

        from .starlet import lattice_sample

        shape = tuple(int(d) for d in v.shape)

        def steps(**kw):
            idx = lattice_sample(_Lattice(shape), **kw)
            if isinstance(idx, _Lattice):            # small enough: every entry
                return (1,) * len(shape)
            return tuple(sl.step or 1 for sl in idx)

        fst, ast = steps(keep_leading=self.per_slice), steps()
        v, halo = self._halo(v)
        vo = halo.extend(v)
        starts = halo.starts

        def local(st, ax, i):
            s0, s1 = starts[ax][i], starts[ax][i + 1]
            return slice((-s0) % st, s1 - s0, st)

        def counts(st):
            return tuple(tuple(len(range(*local(st[ax], ax, i).indices(n)))
                               for i, n in enumerate(v.chunks[ax])) for ax in range(v.ndim))

        B = _serial(self.bands)

        @_in_task
        def task(vb, block_info=None):
            cl = block_info[0]["chunk-location"]
            core = halo.core(cl, vb.shape)
            c = B.forward(np.ascontiguousarray(vb))
            fl = tuple(local(fst[ax], ax, i) for ax, i in enumerate(cl))
            al = tuple(local(ast[ax], ax, i) for ax, i in enumerate(cl))
            co = np.array(B.coarse(c)[core])
            return (np.array(B.finest(c)[core][fl]), np.abs(co[al]), co)

        dt = np.dtype(v.dtype) if np.issubdtype(v.dtype, np.floating) else np.dtype(np.float64)
        meta = np.empty((0,) * v.ndim, dt)
        res = da.map_blocks(task, vo, chunks=v.chunks, dtype=dt, meta=meta)
        fin = res.map_blocks(_first, chunks=counts(fst), dtype=dt, meta=meta)
        amp = res.map_blocks(_second, chunks=counts(ast), dtype=dt, meta=meta)
        coarse = res.map_blocks(_third, chunks=v.chunks, dtype=dt, meta=meta)
        return fin, amp, coarse

    def _halo(self, v):
        """``v`` (small chunks merged) and the plan of its exchange of the starlet's halo
        (:func:`xfusion.halo.plan`)."""
        from .halo import plan

        return plan(v, self.bands.transform.depth(v.ndim), "none", small="merge")

    has_prox = True

    def prox(self, v, step: float, metric=None):
        r"""Threshold the starlet details of ``v`` at :math:`k s g_b \sqrt{\alpha P}` and rebuild
        (``metric`` = the solver's P, or None for the identity); the thresholds follow ``v``
        until :attr:`frozen`."""
        P = metric
        if is_dask(v):
            return self._prox_dask(v, step, P)
        if self.frozen and self.base is not None:
            base = self.base
        elif self._fused(v, P):
            self._estimate(v, None, fused=(step, P))
            base = self.base
        else:
            if P is not None:
                sqrtP = np.multiply(P, P.dtype.type(step), dtype=v.dtype)
                np.sqrt(sqrtP, out=sqrtP)
            else:
                sqrtP = np.sqrt(step)
            self._estimate(v, sqrtP)
            sc = self._shape_scale(self.scale)
            if np.ndim(sqrtP) and np.shape(self.kmap) == np.shape(sqrtP):
                base = np.multiply(self.kmap, sqrtP, out=sqrtP)   # sqrtP is not used after
                base *= np.asarray(sc, dtype=v.dtype)
            else:
                base = sc * self.kmap * sqrtP
            self.base = np.asarray(base, dtype=v.dtype)
            self.mean_metric = step * float(np.mean(P, dtype=np.float64)) if P is not None else step
        g = self.bands.noise_gains
        base = np.asarray(base, dtype=v.dtype)
        if base.shape != tuple(v.shape):
            base = np.broadcast_to(base, v.shape)
        th = {b: (float(g[b]), base) for b in self.bands.detail_bands}
        kept, self._levels = self._levels, None
        levels = kept[1] if kept is not None and kept[0] is v else None
        x, l1 = self.bands.threshold(v, th, levels=levels, positive=self.positive)
        # φ in objective units: thresholds t = α P λ, so λ ≈ t / (α P̄) (a surrogate with the
        # mean metric at the time the thresholds were frozen)
        self._last = (x, l1 / self.mean_metric)
        return x

    def _prox_dask(self, v, step: float, P=None):
        """The same prox on a chunked ``v``: the fused numpy pass, one task per chunk.

        Each task receives its chunk of ``v`` and of the threshold map with the starlet's halo
        (``2(2^J - 1)`` samples per filtered axis from the neighbours, none at the array's
        ends, where the numpy starlet applies its own mirror boundary) and runs
        :meth:`StarletBands.threshold` on it, so no coefficient block ever leaves its task
        (building ``forward(v)`` as a dask array let dask hold the 12-band coefficients of
        nearly every chunk at once). The threshold map is set to zero on the halo: there the
        coefficients are kept unchanged and add nothing to the l1 sum, so the task's l1 counts
        exactly its core, and the core of the reconstruction (pointwise in the coefficients,
        which are exact on the core) is unaffected. The l1 term is left lazy and computed
        only for the accepted step (:meth:`value`).
        """
        from ._dask import persist, to_dask

        if self.frozen and self.base is not None:
            base = self.base
            if not is_dask(base):  # restored from a checkpoint: back onto the workers
                base = np.asarray(base, v.dtype)
                base, = persist(to_dask(base, v.chunks) if base.ndim else base)
                self.base = base
        else:
            sqrtP = np.sqrt(step * P) if P is not None else np.sqrt(step)
            # the MAD scale and the k map need medians: computed in memory, as in numpy
            self._estimate(v, sqrtP)
            kmap = self.kmap
            if np.ndim(kmap):  # the k map lives on the workers, chunked like v
                kmap, = persist(to_dask(kmap, v.chunks))
                self.kmap = kmap  # the persisted map, not the graph from the coarse band
            base = (self._shape_scale(self.scale) * kmap * sqrtP).astype(v.dtype)
            self.base, = persist(base)
            base = self.base
            self.mean_metric = float(np.mean(step * P)) if P is not None else step
        x, l1 = self._threshold_dask(v, base)
        if self.positive:
            x = np.maximum(x, 0)
        if x.chunks != v.chunks:  # chunks smaller than the halo were merged
            x = x.rechunk(v.chunks)
        x, l1 = persist(x, l1)
        self._last = (x, (l1, self.mean_metric))
        return x

    def _threshold_dask(self, v, base):
        """``StarletBands.threshold`` of a dask ``v`` chunk by chunk: lazy ``(x, l1)``."""
        import dask.array as da

        dt = np.dtype(v.dtype)
        if not np.issubdtype(dt, np.floating):
            dt = np.dtype(np.float64)
        v, halo = self._halo(v.astype(dt))
        vo, nb = halo.extend(v), halo.numblocks
        base = da.asarray(base).astype(dt)
        if base.shape != tuple(v.shape):
            base = da.broadcast_to(base, v.shape)
        bo = halo.extend(base)
        B = _serial(self.bands)
        g = [float(gb) for gb in B.noise_gains]
        details = list(B.detail_bands)

        @_in_task
        def task(vb, bb, block_info=None):
            core = halo.core(block_info[0]["chunk-location"], vb.shape)
            t = np.zeros(vb.shape, dt)              # no thresholding (and no l1) on the halo
            t[core] = bb[core]
            x, l1 = B.threshold(np.ascontiguousarray(vb, dtype=dt),
                                {b: (g[b], t) for b in details})
            return x[core], float(l1)

        meta = np.empty((0,) * v.ndim, dt)
        res = da.map_blocks(task, vo, bo, chunks=v.chunks, dtype=dt, meta=meta)
        x = res.map_blocks(_first, chunks=v.chunks, dtype=dt, meta=meta)
        l1 = res.map_blocks(_l1_of, chunks=tuple((1,) * n for n in nb), dtype=np.float64,
                            meta=np.empty((0,) * v.ndim, np.float64))
        return x, l1.sum(dtype=np.float64)

    def end_iteration(self, iteration: int) -> None:
        if not self.frozen and iteration >= self.adapt_iter:
            self.frozen = True

    def prox_value(self, x) -> float:
        r"""φ as the objective counts it at ``x``, the output of the last :meth:`prox`: the
        weighted l1 norm of the thresholded coefficients,
        :math:`\sum_b \sum_v t_b(v) |\mathrm{soft}(c_b, t_b)(v)| / \alpha\bar P` (computed by the
        prox itself; on dask, once, when asked). Any other ``x``: :meth:`value`."""
        last, val = self._last
        if isinstance(val, tuple):  # dask: (lazy l1, scale), computed once, when asked
            val = float(val[0].compute()) / val[1]
            self._last = (last, val)
        if x is last:
            return val
        if is_dask(x) and is_dask(last) and x.name == last.name:  # persisted copy of last
            return val
        return self.value(x)

    def value(self, x) -> float:
        r"""The weighted analysis l1 norm of any ``x`` with the current thresholds,
        :math:`\sum_b \sum_v t_b(v)\,|(W_b x)(v)| / \alpha\bar P` (0 before the first prox has
        set them)."""
        if self.base is None:
            return 0.0
        g = self.bands.noise_gains
        if is_dask(x):
            return self._value_dask(x)
        c = self.bands.forward(np.asarray(x))
        base = np.broadcast_to(np.asarray(self.base, c.dtype), c.shape[1:])
        s = sum(float(g[b]) * float(np.sum(np.abs(c[b]) * base, dtype=np.float64))
                for b in self.bands.detail_bands)
        return s / self.mean_metric

    def _value_dask(self, x) -> float:
        """:meth:`value` of a chunked ``x``: one task per chunk (with the starlet's halo) sums
        the weighted coefficients of its core."""
        import dask.array as da

        dt = np.dtype(x.dtype) if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        x, halo = self._halo(x.astype(dt))
        xo, nb = halo.extend(x), halo.numblocks
        base = da.asarray(self.base).astype(dt)
        if base.shape != tuple(x.shape):
            base = da.broadcast_to(base, x.shape)
        bo = halo.extend(base)
        B = _serial(self.bands)
        g = [float(gb) for gb in B.noise_gains]
        details = list(B.detail_bands)

        @_in_task
        def task(xb, bb, block_info=None):
            core = halo.core(block_info[0]["chunk-location"], xb.shape)
            c = B.forward(np.ascontiguousarray(xb, dtype=dt))
            s = sum(g[b] * float(np.sum(np.abs(c[b][core]) * bb[core], dtype=np.float64))
                    for b in details)
            return np.full((1,) * xb.ndim, s, np.float64)

        parts = da.map_blocks(task, xo, bo, chunks=tuple((1,) * n for n in nb),
                              dtype=np.float64, meta=np.empty((0,) * x.ndim, np.float64))
        return float(parts.sum(dtype=np.float64).compute()) / self.mean_metric

    def state(self) -> dict:
        out = {"frozen": np.array(int(self.frozen))}
        if self.scale is not None:
            out["scale"] = np.asarray(self.scale)
            # a chunked k map stays chunked (written chunk by chunk by the checkpoint)
            out["kmap"] = self.kmap if is_dask(self.kmap) else np.asarray(self.kmap)
            if self.base is not None:
                out["base"] = self.base if is_dask(self.base) else np.asarray(self.base)
                out["mean_metric"] = np.asarray(self.mean_metric)
        return out

    def set_state(self, s: dict) -> None:
        self.frozen = bool(int(np.asarray(s["frozen"])))
        if "scale" in s:
            sc = np.asarray(s["scale"])
            self.scale = float(sc) if sc.ndim == 0 else sc
            km = np.asarray(s["kmap"])
            self.kmap = float(km) if km.ndim == 0 else km
            if "base" in s:
                self.base = np.asarray(s["base"])
                key = "mean_metric" if "mean_metric" in s else "pbar"   # older checkpoints
                self.mean_metric = float(np.asarray(s[key]))
