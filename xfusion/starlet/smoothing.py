r"""One dilated B3 smoothing along one axis of an array, and the scratch buffers it reuses.

:func:`_smooth` applies :math:`G_d` (or :math:`G_d^\top`, for the adjoint) along one axis
of a segment: the B3 kernel as four dilated two-tap sums (:math:`[1,4,6,4,1] = [1,1]^{*4}`)
done as shifted additions over the flattened array, so every pass runs over long contiguous
memory whatever the axis; then the rows near a true boundary, where the folding changes the
weights, are overwritten by the small dense blocks of :mod:`xfusion.starlet.folding` (short
segments take the whole dense matrix). Segment sides that are halos give "valid" outputs only.
Scratch arrays come from a per-thread :class:`_Workspace` (:func:`release_scratch` drops the
calling thread's).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .folding import _banded_min, _edge_blocks, _local_matrix

__all__ = ["release_scratch"]


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32, float64 stays float64, anything else is promoted."""
    dt = np.result_type(dtype, np.float32)
    if dt.kind == "c":
        raise TypeError(f"complex input is not supported (dtype {dtype})")
    return dt


def _sl(ndim: int, axis: int, a: int | None, b: int | None) -> tuple:
    idx = [slice(None)] * ndim
    idx[axis] = slice(a, b)
    return tuple(idx)


#: Largest ``m·n·k`` handed to one BLAS call: OpenBLAS goes multi-threaded above ~2.6e5, and its
#: spinning helper threads then compete with our own block threads (4x slower, measured).
_BLAS_SERIAL = 1 << 17


def _as_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    v = a.reshape(shape)
    if v.size and not np.may_share_memory(v, a):
        raise AssertionError("internal error: reshape of an output slab copied")
    return v


def _matmul_along(A: np.ndarray, x: np.ndarray, axis: int, out: np.ndarray) -> None:
    """``out = A ·_axis x``: contract ``A``'s columns with ``x`` along ``axis``.

    Work is split so that every BLAS call stays single-threaded.
    """
    A = A.astype(x.dtype, copy=False)
    E, K = A.shape
    if axis == x.ndim - 1:
        x2 = x.reshape(-1, K)
        o2 = _as_view(out, (-1, E))
        step = max(1, _BLAS_SERIAL // (E * K))
        AT = A.T
        for i in range(0, x2.shape[0], step):
            np.matmul(x2[i:i + step], AT, out=o2[i:i + step])
        return
    outer = math.prod(x.shape[:axis])
    inner = math.prod(x.shape[axis + 1:])
    x3 = x.reshape(outer, K, inner)
    o3 = _as_view(out, (outer, E, inner))
    step = max(1, _BLAS_SERIAL // (E * K))
    for i in range(0, inner, step):
        np.matmul(A, x3[:, :, i:i + step], out=o3[:, :, i:i + step])


class _Workspace:
    """Named scratch buffers reused across calls (one per thread, numpy driver only).

    Re-using buffers avoids the page faults of fresh large allocations, which on small blocks
    cost as much as the arithmetic. Arrays handed out under one role are only valid until the
    role is requested again.
    """

    #: Buffers larger than this are not kept (bytes).
    max_keep = 1 << 26

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        n = math.prod(shape) * np.dtype(dtype).itemsize
        if n > self.max_keep:
            return np.empty(shape, dtype)
        buf = self._bufs.get(role)
        if buf is None or buf.size < n:
            buf = self._bufs[role] = np.empty(max(n, 64), np.uint8)
        return buf[:n].view(dtype).reshape(shape)


_TLS = threading.local()


def _workspace() -> _Workspace:
    ws = getattr(_TLS, "ws", None)
    if ws is None:
        ws = _TLS.ws = _Workspace()
    return ws


def release_scratch() -> None:
    """Drop the calling thread's scratch buffers (up to 64 MB per role).

    For code that runs the transforms inside dask tasks: a worker thread would otherwise keep
    them between tasks as unmanaged memory, which makes the worker spill early.
    """
    _TLS.ws = None


def _empty(ws: _Workspace | None, role: str, shape: tuple[int, ...],
           dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype) if ws is None else ws.get(role, shape, dtype)


def _shift_sums_flat(x: np.ndarray, axis: int, d: int, out: np.ndarray, row0: int,
                     ws: _Workspace | None) -> None:
    """Stencil part on flattened contiguous arrays: ``out[row0 + i] = (h * x)[2d + i]``.

    Positions whose stencil wraps into the neighbouring line (only possible when ``axis`` is
    not the first) land in the first/last ``2d`` rows of that axis, which the caller then
    overwrites with the exact edge rows.
    """
    inner = math.prod(x.shape[axis + 1:])
    s = inner * d
    xf = x.reshape(-1)
    of = _as_view(out, (-1,))
    n = xf.size
    m = n - 4 * s
    start = row0 * inner
    b1 = _empty(ws, "s1", (n - s,), x.dtype)
    b2 = _empty(ws, "s2", (n - 2 * s,), x.dtype)
    np.add(xf[:n - s], xf[s:], out=b1)
    np.add(b1[:n - 2 * s], b1[s:], out=b2)
    np.add(b2[:n - 3 * s], b2[s:], out=b1[:n - 3 * s])
    dst = of[start:start + m]
    np.add(b1[:m], b1[s:n - 3 * s], out=dst)
    np.multiply(dst, x.dtype.type(1.0 / 16.0), out=dst)


def _shift_sums_axis(x: np.ndarray, axis: int, d: int, out: np.ndarray, row0: int,
                     ws: _Workspace | None) -> None:
    """Stencil part with slices along ``axis`` (any strides)."""
    n = x.shape[axis]
    nd = x.ndim

    def sl(a, b):
        return _sl(nd, axis, a, b)

    def shp(m):
        return x.shape[:axis] + (m,) + x.shape[axis + 1:]

    b1 = np.add(x[sl(0, n - d)], x[sl(d, n)], out=_empty(ws, "s1", shp(n - d), x.dtype))
    b2 = np.add(b1[sl(0, n - 2 * d)], b1[sl(d, n - d)],
                out=_empty(ws, "s2", shp(n - 2 * d), x.dtype))
    b3 = np.add(b2[sl(0, n - 3 * d)], b2[sl(d, n - 2 * d)],
                out=_empty(ws, "s3", shp(n - 3 * d), x.dtype))
    dst = out[sl(row0, row0 + n - 4 * d)]
    np.add(b3[sl(0, n - 4 * d)], b3[sl(d, n - 3 * d)], out=dst)
    np.multiply(dst, x.dtype.type(1.0 / 16.0), out=dst)


def _smooth(x: np.ndarray, axis: int, d: int, lo: bool, hi: bool, boundary: str,
            transpose: bool, out: np.ndarray | None = None, ws: _Workspace | None = None,
            role: str = "o") -> np.ndarray:
    r"""One dilated B3 smoothing :math:`G_d` (or :math:`G_d^\top`) of ``x`` along ``axis``.

    ``lo``/``hi`` say whether each side of the segment is a true boundary (folded) or a halo
    ("valid" mode: the output loses ``2d`` samples on that side). ``out``, if given, must be
    C-contiguous with the output shape; otherwise it comes from ``ws`` under ``role``.
    """
    n = x.shape[axis]
    off = 0 if lo else 2 * d
    n_out = n - off - (0 if hi else 2 * d)
    if n_out < 1:
        raise ValueError(f"segment of {n} samples is too short for dilation {d}")
    shape = x.shape[:axis] + (n_out,) + x.shape[axis + 1:]
    if out is None:
        out = _empty(ws, role, shape, x.dtype)
    if n < _banded_min(d):
        _matmul_along(_local_matrix(n, d, lo, hi, boundary, transpose), x, axis, out)
        return out
    if x.flags.c_contiguous and out.flags.c_contiguous and (axis == 0 or n_out == n):
        _shift_sums_flat(x, axis, d, out, 2 * d - off, ws)
    else:
        _shift_sums_axis(x, axis, d, out, 2 * d - off, ws)
    if lo or hi:
        E_lo, B_lo, E_hi, B_hi = _edge_blocks(d, boundary, transpose, x.dtype.str)
        nd = x.ndim
        if lo:
            _matmul_along(B_lo, x[_sl(nd, axis, 0, B_lo.shape[1])], axis,
                          out[_sl(nd, axis, 0, E_lo)])
        if hi:
            _matmul_along(B_hi, x[_sl(nd, axis, n - B_hi.shape[1], n)], axis,
                          out[_sl(nd, axis, n_out - E_hi, n_out)])
    return out
