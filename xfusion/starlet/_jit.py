r"""Compiled kernel for the 2-D–1-D starlet prox (soft threshold and reconstruct), via numba.

Optional: used by :meth:`xfusion.starlet.Starlet2D1D.threshold` when `numba
<https://numba.pydata.org>`_ is installed (``pip install xfusion[fast]``) and
``XFUSION_JIT`` is not ``0``; otherwise the numpy kernels of :mod:`xfusion.starlet` run. Both
compute the same map,

.. math::

    x = z - \sum_{(b, j) \ne (J_2, J_1)} \operatorname{clip}(c_{b,j}(z), -t_{b,j}, t_{b,j}),

with :math:`c_{b,j}` the 2-D–1-D starlet bands (see :class:`xfusion.starlet.Starlet2D1D`); the
numpy version needs about eight passes over memory per band (differences, two clips, the
update, the weighted l1), this one computes each spectral smoothing and thresholds the band it
completes in the same loop, so the whole prox costs the spatial smoothing plus
:math:`(J_2 + 1) J_1` fused passes.

Each one-dimensional smoothing is a gather through a small table ``(idx, w)`` of shape
``(n_out, 5)``: output row ``i`` is :math:`\sum_k w_{ik}\, x_{\mathrm{idx}_{ik}}`, where the
table holds the B3 taps with the boundary folded in exactly as
:func:`xfusion.starlet.folding._local_matrix` does (the tests compare the two), including the
"valid" rows of a segment whose side is a halo.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from .folding import B3_KERNEL, _fold

try:  # pragma: no cover - exercised when numba is installed
    import numba
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["available", "smooth_table", "threshold_2d1d_seg", "finest_and_coarse_2d1d",
           "brightness_k", "threshold_base"]

B3 = B3_KERNEL


def available() -> bool:
    """True when numba imports and ``XFUSION_JIT`` is not ``"0"`` (read at every call)."""
    return numba is not None and os.environ.get("XFUSION_JIT", "1") != "0"


@lru_cache(maxsize=256)
def smooth_table(n: int, d: int, lo: bool, hi: bool, boundary: str,
                 dtype: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Gather table of one dilated B3 smoothing on a segment of ``n`` samples.

    Same convention as :func:`xfusion.starlet.folding._local_matrix`: a side flagged ``True`` is a
    true boundary (folded, ``"mirror"`` or ``"reflect"``), a side flagged ``False`` a halo
    (``2d`` fewer outputs there). Returns ``(idx, w, off)``: ``idx`` and ``w`` of shape
    ``(n_out, 5)`` (taps that fold onto the same sample are merged; unused slots have weight
    0 and index of a valid sample) and ``off``, the segment position of output row 0.
    """
    pad_lo = 0 if lo else 4 * d + 2
    pad_hi = 0 if hi else 4 * d + 2
    nv = n + pad_lo + pad_hi
    r0 = pad_lo + (0 if lo else 2 * d)
    r1 = pad_lo + n - (0 if hi else 2 * d)
    if r1 <= r0:
        raise ValueError(f"segment of {n} samples is too short for a valid smoothing at "
                         f"dilation {d}")
    rows = np.arange(r0, r1)
    cols = _fold(rows[:, None] + d * np.arange(-2, 3)[None, :], nv, boundary) - pad_lo
    if cols.min() < 0 or cols.max() >= n:
        raise AssertionError("internal error: smoothing table leaves the segment")
    idx = np.empty_like(cols)
    w = np.zeros(cols.shape)
    for i in range(cols.shape[0]):
        u, inv = np.unique(cols[i], return_inverse=True)
        idx[i, :u.size] = u
        idx[i, u.size:] = u[0]
        np.add.at(w[i], inv, B3)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=dtype)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w, r0 - pad_lo


if numba is not None:  # pragma: no branch
    _jit_fast = numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy")

    @_jit_fast
    def _smooth_plane(src, iy, wy, ix, wx, ia, ib, d, q, h, tmp, dst):  # pragma: no cover
        """Separable 2-D smoothing of every plane: ``dst[e] = G_x G_y src[e]``.

        ``(iy, wy)`` and ``(ix, wx)`` are the gather tables of the two axes; along x the
        outputs ``ia ≤ i < ib`` are the plain stencil (source ``i + q + (k - 2) d``) and are
        computed without the table from the taps ``h`` (B3, in the data's dtype). ``tmp`` is one
        plane of scratch.
        """
        ne = dst.shape[0]
        h0, h1, h2 = h[0], h[1], h[2]
        ny, nx = tmp.shape[0], src.shape[2]
        nxo = dst.shape[2]
        flat = q == 0 and nxo == nx and ia >= 2 * d and nx - ib >= 2 * d
        for e in range(ne):
            se = src[e]
            for i in range(ny):
                j0, j1, j2, j3, j4 = iy[i, 0], iy[i, 1], iy[i, 2], iy[i, 3], iy[i, 4]
                w0, w1, w2, w3, w4 = wy[i, 0], wy[i, 1], wy[i, 2], wy[i, 3], wy[i, 4]
                s0, s1, s2, s3, s4 = se[j0], se[j1], se[j2], se[j3], se[j4]
                t = tmp[i]
                for p in range(nx):
                    t[p] = w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p] + w4 * s4[p]
            de = dst[e]
            if flat:
                # the stencil over the flattened plane (long contiguous loop); the columns
                # where it wraps into the next row are in [0, ia) ∪ [ib, nx), redone below
                tf_ = tmp.ravel()
                of_ = de.ravel()
                for k in range(2 * d, ny * nx - 2 * d):
                    of_[k] = (h2 * tf_[k] + h1 * (tf_[k - d] + tf_[k + d])
                              + h0 * (tf_[k - 2 * d] + tf_[k + 2 * d]))
            for r in range(ny):
                t = tmp[r]
                o = de[r]
                for i in range(ia):
                    o[i] = (wx[i, 0] * t[ix[i, 0]] + wx[i, 1] * t[ix[i, 1]]
                            + wx[i, 2] * t[ix[i, 2]] + wx[i, 3] * t[ix[i, 3]]
                            + wx[i, 4] * t[ix[i, 4]])
                for i in range(ia, ib if not flat else ia):
                    k = i + q
                    o[i] = (h2 * t[k] + h1 * (t[k - d] + t[k + d])
                            + h0 * (t[k - 2 * d] + t[k + 2 * d]))
                for i in range(ib, nxo):
                    o[i] = (wx[i, 0] * t[ix[i, 0]] + wx[i, 1] * t[ix[i, 1]]
                            + wx[i, 2] * t[ix[i, 2]] + wx[i, 3] * t[ix[i, 3]]
                            + wx[i, 4] * t[ix[i, 4]])

    @_jit_fast
    def _smooth_threshold(src, so, idx, w, dst, do, c0, c1, tmap, tf, thr_band, thr_dst,
                          tf_dst, out):  # pragma: no cover - compiled
        r"""One spectral smoothing ``dst = G src`` fused with the thresholding of the band
        ``src - dst`` (``thr_band``) and of ``dst`` itself (``thr_dst``) on the core rows.

        Arrays are ``(rows, P)``; ``src``/``dst`` row ``i`` is segment row ``i + so`` /
        ``i + do``; the core is segment rows ``[c0, c1)`` (``out`` and ``tmap`` rows
        ``0 … c1 - c0``). Thresholds are ``tf · tmap`` and ``tf_dst · tmap``. Subtracts the
        clipped coefficients from ``out`` and returns :math:`\sum t\,|\mathrm{soft}|`.
        """
        nd, P = dst.shape
        l1 = 0.0
        for i in range(nd):
            j0, j1, j2, j3, j4 = idx[i, 0], idx[i, 1], idx[i, 2], idx[i, 3], idx[i, 4]
            w0, w1, w2, w3, w4 = w[i, 0], w[i, 1], w[i, 2], w[i, 3], w[i, 4]
            s0, s1, s2, s3, s4 = src[j0], src[j1], src[j2], src[j3], src[j4]
            o = dst[i]
            g = i + do
            if g < c0 or g >= c1 or not (thr_band or thr_dst):
                for p in range(P):
                    o[p] = w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p] + w4 * s4[p]
                continue
            r = g - c0
            sc = src[g - so]
            acc = out[r]
            tm = tmap[r]
            part = tm[0] * 0
            # three loops rather than one with a zero factor for the band left alone: the
            # single loop was measured 10 % slower on the 2400×45×45 prox (50 → 55 ms)
            if thr_band and thr_dst:
                for p in range(P):
                    v = w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p] + w4 * s4[p]
                    o[p] = v
                    t = tf * tm[p]
                    c = sc[p] - v
                    cl = min(max(c, -t), t)
                    t2 = tf_dst * tm[p]
                    cl2 = min(max(v, -t2), t2)
                    acc[p] -= cl + cl2
                    part += t * abs(c - cl) + t2 * abs(v - cl2)
            elif thr_band:
                for p in range(P):
                    v = w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p] + w4 * s4[p]
                    o[p] = v
                    t = tf * tm[p]
                    c = sc[p] - v
                    cl = min(max(c, -t), t)
                    acc[p] -= cl
                    part += t * abs(c - cl)
            else:
                for p in range(P):
                    v = w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p] + w4 * s4[p]
                    o[p] = v
                    t2 = tf_dst * tm[p]
                    cl2 = min(max(v, -t2), t2)
                    acc[p] -= cl2
                    part += t2 * abs(v - cl2)
            l1 += part
        return l1


@lru_cache(maxsize=4)
def _taps(dtype: str) -> np.ndarray:
    return B3.astype(dtype)


@lru_cache(maxsize=256)
def _plain_range(n: int, d: int, lo: bool, hi: bool, boundary: str) -> tuple[int, int]:
    """Output rows ``[ia, ib)`` of :func:`smooth_table` that are the unfolded stencil."""
    idx, w, off = smooth_table(n, d, lo, hi, boundary, "<f8")
    i = np.arange(idx.shape[0])
    plain = np.all(idx == (i + off)[:, None] + d * np.arange(-2, 3)[None, :], axis=1)
    plain &= np.all(w == B3[None, :], axis=1)
    if not plain.any():
        return 0, 0
    ia = int(np.argmax(plain))
    ib = idx.shape[0] - int(np.argmax(plain[::-1]))
    if not plain[ia:ib].all():  # pragma: no cover - the folded rows are at the ends
        return 0, 0
    return ia, ib


def _planes(src, iy, wy, ix, wx, ia, ib, d, q, h, dst) -> None:
    """:func:`_smooth_plane` over all planes, in one block of planes per block thread (or on
    the calling thread when it is itself a block thread)."""
    from .._threads import each_block

    def block(a, b):
        tmp = np.empty((iy.shape[0], src.shape[2]), dst.dtype)
        _smooth_plane(src[a:b], iy, wy, ix, wx, ia, ib, d, q, h, tmp, dst[a:b])

    each_block(block, src.shape[0], 8)


def _spatial(x, J2, edges, core, boundary):
    """2-D bands ``(J2 + 1, E, m, n)`` of segment ``x`` on the spatial core."""
    dt = x.dtype
    cur, off = x, [0, 0]
    levels = [(x, [0, 0])]
    for j in range(1, J2 + 1):
        d = 1 << (j - 1)
        iy, wy, oy = smooth_table(cur.shape[1], d, *edges[1], boundary, dt.str)
        ix, wx, ox = smooth_table(cur.shape[2], d, *edges[2], boundary, dt.str)
        ia, ib = _plain_range(cur.shape[2], d, *edges[2], boundary)
        nxt = np.empty((cur.shape[0], iy.shape[0], ix.shape[0]), dt)
        _planes(cur, iy, wy, ix, wx, ia, ib, d, ox, _taps(dt.str), nxt)
        off = [off[0] + oy, off[1] + ox]
        levels.append((nxt, off))
        cur = nxt
    return _bands(levels, core)


def _bands(levels, core):
    """The 2-D bands ``(J2 + 1, E, m, n)`` on the spatial core from the smoothing levels
    ``[(array, [y offset, x offset]), ...]`` (level 0 the segment itself): differences of
    successive levels, then the last level."""
    (r0, r1), (q0, q1) = core[1], core[2]
    x = levels[0][0]
    J2 = len(levels) - 1
    b2 = np.empty((J2 + 1, x.shape[0], r1 - r0, q1 - q0), x.dtype)
    cut = [a[:, r0 - o[0]:r1 - o[0], q0 - o[1]:q1 - o[1]] for a, o in levels]
    for j in range(J2):
        np.subtract(cut[j], cut[j + 1], out=b2[j])
    np.copyto(b2[J2], cut[J2])
    return b2


def threshold_2d1d_seg(x: np.ndarray, J2: int, J1: int, edges, core, boundary: str,
                       thresh, restrict, out: np.ndarray, want_l1: bool,
                       levels: list | None = None) -> float:
    """Soft-threshold-and-reconstruct one segment (see the module notes).

    ``x`` is the segment with its halos, C-contiguous; ``edges``/``core`` as in
    :func:`xfusion.starlet.segments._filter_2d1d_seg`; ``thresh((b, j))`` returns ``None``, a
    scalar, an array or ``(factor, array)`` (arrays broadcastable to the whole data), and
    ``restrict(array)`` cuts an array down to this segment's core. Writes ``out`` and returns
    the weighted l1 of the kept parts (0 unless ``want_l1``). ``levels``: the ``J2`` spatial
    smoothings of ``x`` when already known (whole images, as
    :func:`finest_and_coarse_2d1d` forms them), used instead of recomputing them.
    """
    dt = x.dtype
    (c0, c1) = core[0]
    if levels is not None and len(levels) == J2 and tuple(edges[1]) == tuple(edges[2]) == (
            True, True) and all(lv.shape == x.shape and lv.dtype == dt for lv in levels):
        b2 = _bands([(x, (0, 0))] + [(lv, (0, 0)) for lv in levels], core)
    else:
        b2 = _spatial(x, J2, edges, core, boundary)
    np.copyto(out, x[c0:c1, core[1][0]:core[1][1], core[2][0]:core[2][1]])
    E = x.shape[0]
    P = out.shape[1] * out.shape[2]
    out2 = out.reshape(c1 - c0, P)
    ones = None
    maps: dict[int, tuple] = {}

    def parse(t):
        """(thresholded?, factor, map of shape (core rows, P))."""
        nonlocal ones
        if t is None:
            return False, dt.type(0), None
        if isinstance(t, tuple):
            f, m = t
        elif np.ndim(t) == 0:
            f, m = t, None
        else:
            f, m = 1.0, t
        if m is None:
            if ones is None:
                ones = np.ones((c1 - c0, P), dt)
            return True, dt.type(f), ones
        hit = maps.get(id(m))
        if hit is None or hit[0] is not m:     # keyed on the caller's array, kept alive here
            core_m = np.broadcast_to(np.asarray(restrict(np.asarray(m)), dt), out.shape)
            hit = maps[id(m)] = (m, np.ascontiguousarray(core_m).reshape(c1 - c0, P))
        return True, dt.type(f), hit[1]

    l1 = 0.0
    for b in range(J2 + 1):
        cur = b2[b].reshape(E, P)
        so = 0
        for j in range(1, J1 + 1):
            d = 1 << (j - 1)
            idx, w, off = smooth_table(cur.shape[0], d, *edges[0], boundary, dt.str)
            dst = np.empty((idx.shape[0], P), dt)
            do = so + off
            thr, tf, tm = parse(thresh((b, j - 1)))
            thr_d, tf_d, tm_d = parse(thresh((b, J1))) if j == J1 else (False, dt.type(0), None)
            if thr and thr_d and tm is not tm_d:
                # two different maps: threshold the last band in a pass of its own
                l1 += _smooth_threshold(cur, so, idx, w, dst, do, c0, c1, tm, tf, True, False,
                                        dt.type(0), out2)
                l1 += _coarse_threshold(dst, do, c0, c1, tm_d, tf_d, out2)
            else:
                m = tm if thr else (tm_d if thr_d else _dummy(dt))
                l1 += _smooth_threshold(cur, so, idx, w, dst, do, c0, c1, m, tf, thr, thr_d,
                                        tf_d, out2)
            cur, so = dst, do
    return l1 if want_l1 else 0.0


@lru_cache(maxsize=4)
def _dummy(dt):
    return np.zeros((1, 1), dt)


def _coarse_threshold(dst, do, c0, c1, tm, tf, out2):
    """Threshold rows ``[c0, c1)`` of ``dst`` itself at ``tf · tm`` (numpy; rare path)."""
    v = dst[c0 - do:c1 - do]
    t = tf * tm
    cl = np.minimum(np.maximum(v, -t), t)
    out2 -= cl
    return float((t * np.abs(v - cl)).sum(dtype=np.float64))


def finest_and_coarse_2d1d(z: np.ndarray, J2: int, J1: int, boundary: str,
                           sample: tuple[slice, slice, slice] | None = None,
                           levels: bool = False):
    """Bands ``c[0, 0]`` (finest detail) and ``c[J2, J1]`` (coarse) of the 2-D–1-D starlet
    of the whole cube ``z``, without forming the other bands (what the threshold estimate
    needs: the noise scale from the finest band, the k map from the coarse one). Every
    smoothing runs in blocks of planes or rows on the block threads.

    With ``sample`` (three slices, e.g. a regular lattice) the finest band is returned at
    those voxels only, ``c[0, 0][sample]``, and computed only along the sampled pixels' spectra
    (a quarter of the cube for a 2×2 spatial lattice) instead of over the whole cube. With
    ``levels`` the ``J2`` spatial smoothings of ``z`` are returned too, as a third item (the
    prox can reuse them: ``Starlet2D1D.threshold(..., levels=...)``)."""
    z = np.ascontiguousarray(z)
    dt = z.dtype
    E = z.shape[0]
    cur = z
    smooth = []
    for j in range(1, J2 + 1):   # spatial smoothings of the whole cube (no halos)
        d = 1 << (j - 1)
        iy, wy, _ = smooth_table(cur.shape[1], d, True, True, boundary, dt.str)
        ix, wx, _ = smooth_table(cur.shape[2], d, True, True, boundary, dt.str)
        ia, ib = _plain_range(cur.shape[2], d, True, True, boundary)
        nxt = np.empty_like(cur)
        _planes(cur, iy, wy, ix, wx, ia, ib, d, 0, _taps(dt.str), nxt)
        cur = nxt
        smooth.append(cur)
    c = cur.reshape(E, -1)       # the coarse band: J1 spectral smoothings of the last level
    for j in range(1, J1 + 1):
        c = _smooth_rows(c, *smooth_table(E, 1 << (j - 1), True, True, boundary, dt.str)[:2])
    # c[0, 0] = (1 - G_e)(z - S_1 z): the spatial detail on the sampled spectra only, then the
    # spectral smoothing of the sampled rows
    se, sp = (slice(None), (slice(None),) * 3) if sample is None else (
        sample[0], (slice(None),) + tuple(sample[1:]))
    band0 = np.subtract(z[sp], smooth[0][sp]) if J2 > 0 else np.zeros_like(z[sp])
    b0 = band0.reshape(E, -1)
    idx, w, _ = smooth_table(E, 1, True, True, boundary, dt.str)
    fin = b0[se] - _smooth_rows(b0, np.ascontiguousarray(idx[se]),
                                np.ascontiguousarray(w[se]))
    fin = fin.reshape((fin.shape[0],) + band0.shape[1:])
    return (fin, c.reshape(z.shape)) + ((smooth,) if levels else ())


def _smooth_rows(src: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``dst[i] = Σ_k w[i, k] src[idx[i, k]]`` (one spectral smoothing), in blocks of output
    rows on the block threads."""
    from .._threads import each_block

    dst = np.empty((idx.shape[0], src.shape[1]), src.dtype)
    one = np.ones((1, 1), src.dtype)
    zero = src.dtype.type(0)

    def block(a, b):
        _smooth_threshold(src, 0, idx[a:b], w[a:b], dst[a:b], 0, 0, 0, one, zero, False,
                          False, zero, dst[a:b])

    each_block(block, idx.shape[0], 8)
    return dst


def brightness_k(c: np.ndarray, k_min: float, k_max: float, m: float,
                 slope: float) -> np.ndarray:
    r""":math:`k_{\min} + (k_{\max} - k_{\min}) / (1 + (|c|/m)^s)` in one pass per block
    thread (the map of :func:`xfusion.starlet.stats.brightness_k`, whose numpy form takes seven)."""
    from .._threads import each_block

    c = np.ascontiguousarray(c)
    out = np.empty_like(c)
    cf, of = c.reshape(-1), out.reshape(-1)
    t = c.dtype.type
    each_block(lambda a, b: _brightness(cf[a:b], t(k_min), t(k_max - k_min), t(1.0 / m),
                                        float(slope), of[a:b]), cf.size)
    return out


if numba is not None:  # pragma: no branch
    @numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy", inline="always")
    def _k_of(c, k0, dk, inv_m, s):  # pragma: no cover - compiled
        """k = k0 + dk / (1 + (|c| / m)^s) at one coefficient."""
        r = abs(c) * inv_m
        rs = r * r if s == 2.0 else r ** s
        return k0 + dk / (1 + rs)

    @_jit_fast
    def _brightness(c, k0, dk, inv_m, s, out):  # pragma: no cover - compiled
        for i in range(c.size):
            out[i] = _k_of(c[i], k0, dk, inv_m, s)


def threshold_base(c: np.ndarray, P: np.ndarray | None, step: float, scale: float,
                   k_min: float, k_max: float, m: float, slope: float
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    r"""The k map of :func:`brightness_k` and the threshold base
    :math:`s\,k\,\sqrt{\alpha P}` in one pass per block thread, with :math:`\sum P`.

    ``P`` (the metric, ``c``'s shape) may be ``None`` (:math:`P = 1`); ``m <= 0`` gives
    ``k = k_max`` everywhere (as :func:`xfusion.starlet.stats.brightness_k` for an all-zero band).
    Returns ``(k, base, ΣP)`` (``ΣP`` summed in float64).
    """
    from .._threads import each_block

    c = np.ascontiguousarray(c)
    dt = c.dtype
    t = dt.type
    kout, bout = np.empty_like(c), np.empty_like(c)
    cf, kf, bf = c.reshape(-1), kout.reshape(-1), bout.reshape(-1)
    pf = None if P is None else np.ascontiguousarray(P, dt).reshape(-1)
    if pf is not None and pf.size != cf.size:
        raise ValueError(f"metric of {pf.size} entries for a band of {cf.size}")
    inv_m = t(1.0 / m) if m > 0 else t(0)
    args = (t(step), t(scale), t(k_min), t(k_max - k_min), inv_m, float(slope))

    def block(a, b):
        if pf is None:
            return _base_const(cf[a:b], *args, kf[a:b], bf[a:b])
        return _base(cf[a:b], pf[a:b], *args, kf[a:b], bf[a:b])

    sums = each_block(block, cf.size)
    return kout, bout, float(sum(sums))


if numba is not None:  # pragma: no branch
    @_jit_fast
    def _base(c, P, st, sc, k0, dk, inv_m, s, kout, bout):  # pragma: no cover - compiled
        tot = 0.0
        for i in range(c.size):
            k = _k_of(c[i], k0, dk, inv_m, s)
            kout[i] = k
            p = P[i]
            tot += p
            bout[i] = sc * k * np.sqrt(st * p)
        return tot

    @_jit_fast
    def _base_const(c, st, sc, k0, dk, inv_m, s, kout, bout):  # pragma: no cover - compiled
        f = sc * np.sqrt(st)
        for i in range(c.size):
            k = _k_of(c[i], k0, dk, inv_m, s)
            kout[i] = k
            bout[i] = f * k
        return float(c.size)
