r"""The multi-scale starlet kernels on one segment, and the consumers of their bands.

A segment is a whole array, a block of energy channels with halos (numpy driver) or a dask
chunk with halos; per filtered axis ``edges`` says whether each side is a true boundary and
``core`` which samples are produced. :func:`_forward_seg` / :func:`_adjoint_seg` run the
cascade of :func:`xfusion.starlet.smoothing._smooth` over some axes, the ``_2d1d`` variants
the 2-D–1-D transform; :func:`_filter_seg` / :func:`_filter_2d1d_seg` hand each band of the
core to a consumer instead of storing the coefficients: :class:`_ApplyFn` (sum of a per-band
function, :meth:`~xfusion.starlet.Starlet2D.filter`) or :class:`_SoftThreshold` (soft
thresholding and reconstruction, :meth:`~xfusion.starlet.Starlet2D.threshold`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .folding import starlet_depth
from .smoothing import _empty, _smooth, _Workspace

#: ``fn(index, band, loc)`` applied to each band block by
#: :meth:`~xfusion.starlet.Starlet2D.filter` & co.
BandFn = Callable[[Any, np.ndarray, tuple], "np.ndarray | None"]


Edges = Sequence[tuple[bool, bool]]
Core = Sequence[tuple[int, int]]


def _region(a: np.ndarray, axes: Sequence[int], start: Sequence[int],
            size: Sequence[int]) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    for ax, s0, m in zip(axes, start, size, strict=True):
        idx[ax] = slice(s0, s0 + m)
    return a[tuple(idx)]


def _smooth_axes(x: np.ndarray, axes: Sequence[int], d: int, edges: Edges, off: list[int],
                 boundary: str, transpose: bool, ws: _Workspace | None, role: str,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Separable smoothing over ``axes``; returns the result and its new offsets."""
    noff = list(off)
    for k, ax in enumerate(axes):
        lo, hi = edges[k]
        last = k == len(axes) - 1
        x = _smooth(x, ax, d, lo, hi, boundary, transpose, out=out if last else None, ws=ws,
                    role=role if last else role + "m")
        if not lo:
            noff[k] += 2 * d
    return x, noff


def _final_shape(shape: tuple[int, ...], axes: Sequence[int], edges: Edges, J: int,
                 off: Sequence[int]) -> tuple[tuple[int, ...], list[int]]:
    """Shape and offsets left after smoothing at dilations ``1 … 2^{J-1}``."""
    shp = list(shape)
    noff = list(off)
    D = starlet_depth(J) // 2
    for k, ax in enumerate(axes):
        lo, hi = edges[k]
        shp[ax] -= (0 if lo else D) + (0 if hi else D)
        noff[k] += 0 if lo else D
    return tuple(shp), noff


def _forward_seg(x: np.ndarray, axes: Sequence[int], J: int, edges: Edges, core: Core,
                 boundary: str, out: np.ndarray, ws: _Workspace | None = None,
                 tag: str = "f") -> np.ndarray:
    r"""Starlet analysis of a segment over ``axes``; writes the ``core`` into ``out``.

    :math:`c_0 = x`, :math:`c_j = G_{2^{j-1}} c_{j-1}` (separable over ``axes``),
    ``out[j-1] = c_{j-1} - c_j``, ``out[J] = c_J``.
    """
    c0 = [c[0] for c in core]
    size = [c[1] - c[0] for c in core]
    cur = x
    off = [0] * len(axes)          # where cur starts, in x's coordinates
    # the last smoothing can write straight into out[J] when it yields exactly the core
    fshape, foff = _final_shape(x.shape, axes, edges, J, off)
    direct = (fshape == out[J].shape and foff == c0 and out[J].flags.c_contiguous)
    for j in range(1, J + 1):
        d = 1 << (j - 1)
        nxt, noff = _smooth_axes(cur, axes, d, edges, off, boundary, False, ws,
                                 f"{tag}c{j % 2}", out[J] if (direct and j == J) else None)
        np.subtract(_region(cur, axes, [a - o for a, o in zip(c0, off, strict=True)], size),
                    _region(nxt, axes, [a - o for a, o in zip(c0, noff, strict=True)], size),
                    out=out[j - 1])
        cur, off = nxt, noff
    if not direct:
        np.copyto(out[J], _region(cur, axes, [a - o for a, o in zip(c0, off, strict=True)], size))
    return out


def _adjoint_seg(c: np.ndarray, axes: Sequence[int], J: int, edges: Edges, core: Core,
                 boundary: str, out: np.ndarray, ws: _Workspace | None = None,
                 tag: str = "a") -> np.ndarray:
    r"""Adjoint of :func:`_forward_seg` on a segment of coefficients ``c`` (scale axis first).

    With :math:`w_j` = ``c[j-1]`` and :math:`c_J` = ``c[J]``: :math:`t_J = c_J`,
    :math:`t_{j-1} = w_j + G_j^\top (t_j - w_j)`, result :math:`t_0` (restricted to ``core``).
    """
    c0 = [cc[0] for cc in core]
    size = [cc[1] - cc[0] for cc in core]
    t = c[J]
    off = [0] * len(axes)
    for j in range(J, 0, -1):
        d = 1 << (j - 1)
        w = c[j - 1]
        u = np.subtract(t, _region(w, axes, off, [t.shape[ax] for ax in axes]),
                        out=_empty(ws, f"{tag}u", t.shape, t.dtype))
        v, voff = _smooth_axes(u, axes, d, edges, off, boundary, True, ws, f"{tag}t{j % 2}")
        wv = _region(w, axes, voff, [v.shape[ax] for ax in axes])
        if j == 1 and voff == c0 and v.shape == out.shape:
            np.add(v, wv, out=out)
            return out
        np.add(v, wv, out=v)
        t, off = v, voff
    np.copyto(out, _region(t, axes, [a - o for a, o in zip(c0, off, strict=True)], size))
    return out


def _forward_2d1d_seg(x: np.ndarray, J2: int, J1: int, edges: Edges, core: Core,
                      boundary: str, out: np.ndarray, ws: _Workspace | None = None) -> np.ndarray:
    """2-D transform over axes (1, 2) of the whole segment, then 1-D over axis 0 of each band."""
    sp_core = [(core[1][0], core[1][1]), (core[2][0], core[2][1])]
    shp = (J2 + 1, x.shape[0], sp_core[0][1] - sp_core[0][0], sp_core[1][1] - sp_core[1][0])
    b2 = _forward_seg(x, (1, 2), J2, edges[1:], sp_core, boundary,
                      _empty(ws, "b2", shp, x.dtype), ws, "2")
    for b in range(J2 + 1):
        _forward_seg(b2[b], (0,), J1, edges[:1], core[:1], boundary, out[b], ws, "1")
    return out


def _adjoint_2d1d_seg(c: np.ndarray, J2: int, J1: int, edges: Edges, core: Core,
                      boundary: str, out: np.ndarray, ws: _Workspace | None = None) -> np.ndarray:
    """1-D adjoint over axis 0 of each 2-D band (halos consumed), then the 2-D adjoint."""
    n0 = core[0][1] - core[0][0]
    u = _empty(ws, "ub", (J2 + 1, n0) + c.shape[3:], c.dtype)
    for b in range(J2 + 1):
        _adjoint_seg(c[b], (0,), J1, edges[:1], core[:1], boundary, u[b], ws, "1")
    return _adjoint_seg(u, (1, 2), J2, edges[1:], core[1:], boundary, out, ws, "2")


def _filter_seg(x: np.ndarray, axes: Sequence[int], J: int, edges: Edges, core: Core,
                boundary: str, consumer: _Consumer, out: np.ndarray,
                ws: _Workspace | None = None) -> np.ndarray:
    """Forward transform of a segment, each band handed to ``consumer`` which fills ``out``."""
    c0 = [c[0] for c in core]
    size = [c[1] - c[0] for c in core]
    consumer.begin(_region(x, axes, c0, size), out)
    shp = list(x.shape)
    for ax, m in zip(axes, size, strict=True):
        shp[ax] = m
    cb = _forward_seg(x, axes, J, edges, core, boundary,
                      _empty(ws, "fc", (J + 1,) + tuple(shp), x.dtype), ws, "f")
    for j in range(J + 1):
        consumer.band(j, cb[j], out)
    return out


def _filter_2d1d_seg(x: np.ndarray, J2: int, J1: int, edges: Edges, core: Core, boundary: str,
                     consumer: _Consumer, out: np.ndarray,
                     ws: _Workspace | None = None) -> np.ndarray:
    """:func:`_filter_seg` for the 2-D–1-D transform (one 2-D band's 1-D bands at a time)."""
    c0 = [c[0] for c in core]
    size = [c[1] - c[0] for c in core]
    consumer.begin(_region(x, (0, 1, 2), c0, size), out)
    sp_core = [(core[1][0], core[1][1]), (core[2][0], core[2][1])]
    m, n = size[1], size[2]
    b2 = _forward_seg(x, (1, 2), J2, edges[1:], sp_core, boundary,
                      _empty(ws, "b2", (J2 + 1, x.shape[0], m, n), x.dtype), ws, "2")
    shp = (J1 + 1, size[0], m, n)
    for b in range(J2 + 1):
        ob = _forward_seg(b2[b], (0,), J1, edges[:1], core[:1], boundary,
                          _empty(ws, "fc", shp, x.dtype), ws, "1")
        for j in range(J1 + 1):
            consumer.band((b, j), ob[j], out)
    return out


class _Consumer:
    """Receives the bands of one block in the ``filter`` / ``threshold`` of the transforms
    (:class:`xfusion.starlet.transforms._Starlet`)."""

    def begin(self, z: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def band(self, index, band: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError


class _ApplyFn(_Consumer):
    """``out = Σ fn(band)``."""

    def __init__(self, fn: BandFn, loc: tuple[slice, ...]):
        self.fn, self.loc, self.first = fn, loc, True

    def begin(self, z, out):
        self.first = True

    def band(self, index, band, out):
        r = self.fn(index, band, self.loc)
        r = band if r is None else r
        if self.first:
            np.copyto(out, r)
            self.first = False
        else:
            np.add(out, r, out=out)


def _slice_like(t: np.ndarray, loc: tuple[slice, ...]) -> np.ndarray:
    """Restrict an array broadcastable to the data to the block ``loc`` (right-aligned)."""
    if t.ndim == 0:
        return t
    idx = [slice(None)] * t.ndim
    for k in range(1, t.ndim + 1):
        if t.shape[-k] != 1 and k <= len(loc):
            idx[-k] = loc[-k]
    return t[tuple(idx)]


class _SoftThreshold(_Consumer):
    r"""``out = z - Σ_b clip(c_b, -t_b, t_b)`` (= Σ soft(c_b) + kept bands), 2 passes a band."""

    def __init__(self, thresh: Callable, loc: tuple[slice, ...], l1: list | None, ws,
                 levels: tuple | None = None):
        self.thresh, self.loc, self.l1, self.ws = thresh, loc, l1, ws
        self.levels = levels                 # whole-cube spatial smoothings, when known
        self._neg: dict[int, tuple] = {}     # -t of this block, per threshold array

    def begin(self, z, out):
        np.copyto(out, z)

    def _bounds(self, t, dtype):
        if np.isscalar(t):
            t = dtype.type(t)
            return -t, t
        if isinstance(t, tuple):  # (scalar, per-voxel map): the map is sliced once per block
            f, m = t
            key = ("map", id(m))
            hit = self._neg.get(key)
            if hit is None or hit[0] is not m:
                hit = self._neg[key] = (m, np.asarray(_slice_like(np.asarray(m), self.loc),
                                                      dtype=dtype))
            ts = hit[1] * dtype.type(f)
            return -ts, ts
        key = id(t)
        hit = self._neg.get(key)
        if hit is None or hit[0] is not t:
            ts = np.asarray(_slice_like(np.asarray(t), self.loc), dtype=dtype)
            hit = self._neg[key] = (t, -ts, ts)
        return hit[1], hit[2]

    def band(self, index, band, out):
        t = self.thresh(index)
        if t is None:
            return
        lo, hi = self._bounds(t, band.dtype)
        if self.l1 is None:
            _clip(band, lo, hi, band)
            np.subtract(out, band, out=out)
            return
        # one clip serves both: out -= clip(c), and Σ t |soft(c)| with soft(c) = c - clip(c)
        clipped = _empty(self.ws, "l1", band.shape, band.dtype)
        _clip(band, lo, hi, clipped)
        np.subtract(out, clipped, out=out)
        np.subtract(band, clipped, out=band)
        np.abs(band, out=band)
        if np.ndim(hi):
            np.multiply(band, hi, out=band)
            self.l1.append(float(band.sum(dtype=np.float64)))
        else:
            self.l1.append(float(hi) * float(band.sum(dtype=np.float64)))


def _clip(x: np.ndarray, lo, hi, out: np.ndarray) -> np.ndarray:
    """``clip(x, lo, hi)``; with array bounds two ufuncs are ~4x faster than ``np.clip``."""
    if np.ndim(lo) == 0 and np.ndim(hi) == 0:
        return np.clip(x, lo, hi, out=out)
    np.minimum(x, hi, out=out)
    return np.maximum(out, lo, out=out)
