r"""Boundary folding of the starlet's B3 smoothing, and the halo its cascade needs.

Pure numpy, nothing else from the package. One dilated B3 smoothing :math:`G_d` (taps
:data:`B3_KERNEL` ``d`` samples apart) with the ``"mirror"`` (whole-sample) or ``"reflect"``
(half-sample) symmetric extension folded exactly into the operator (:func:`_fold`, repeated as
often as axes shorter than the kernel need): the dense matrix of a whole axis
(:func:`_folded_matrix`), of a segment whose sides are boundaries or halos
(:func:`_local_matrix`), and the few rows near a boundary that differ from the plain stencil
(:func:`_edge_blocks`), which :mod:`xfusion.starlet.smoothing` and the compiled kernels of
:mod:`xfusion.starlet._jit` apply. Also the checks of ``J`` and ``boundary`` and
:func:`starlet_depth`, the halo of ``J`` scales.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np

__all__ = ["B3_KERNEL", "Boundary", "starlet_depth"]

#: The B3-spline smoothing kernel :math:`[1, 4, 6, 4, 1]/16`.
B3_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0

Boundary = Literal["mirror", "reflect"]
_BOUNDARIES = ("mirror", "reflect")


# ----------------------------------------------------------------------------------------------
# validation, reach of the cascade
# ----------------------------------------------------------------------------------------------
def _check_J(J: Any, name: str = "J") -> int:
    if isinstance(J, bool) or not isinstance(J, (int, np.integer)) or J < 1:
        raise ValueError(f"{name} must be an integer >= 1 (number of wavelet scales), got {J!r}")
    return int(J)


def _check_boundary(boundary: str) -> str:
    if boundary not in _BOUNDARIES:
        raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
    return boundary


def starlet_depth(J: int) -> int:
    r"""Halo (in samples, per side) that ``J`` starlet scales need: :math:`2(2^J - 1)`.

    The smoothing at scale ``j`` reaches :math:`2\cdot 2^{j-1}` samples on each side; the
    reaches add up over the cascade.
    """
    return 2 * ((1 << _check_J(J)) - 1)



# ----------------------------------------------------------------------------------------------
# exact boundary folding of one dilated smoothing
# ----------------------------------------------------------------------------------------------
def _fold(idx: np.ndarray, n: int, boundary: str) -> np.ndarray:
    """Map integer positions onto ``[0, n)`` by (repeated) symmetric reflection.

    ``mirror``: whole-sample symmetry (``… c b | a b c …``, scipy's ``'mirror'``), period
    ``2(n - 1)``. ``reflect``: half-sample symmetry (``… b a | a b c …``, scipy's
    ``'reflect'``), period ``2n``.
    """
    idx = np.asarray(idx)
    if boundary == "mirror":
        if n == 1:
            return np.zeros_like(idx)
        p = 2 * (n - 1)
        i = np.mod(idx, p)
        return np.where(i >= n, p - i, i)
    p = 2 * n
    i = np.mod(idx, p)
    return np.where(i >= n, p - 1 - i, i)


def _folded_matrix(n: int, d: int, boundary: str) -> np.ndarray:
    """Dense ``(n, n)`` matrix of one dilated B3 smoothing with the boundary folded in."""
    G = np.zeros((n, n))
    rows = np.arange(n)
    for k, h in zip(range(-2, 3), B3_KERNEL, strict=True):
        np.add.at(G, (rows, _fold(rows + k * d, n, boundary)), h)
    return G


@lru_cache(maxsize=512)
def _local_matrix(n: int, d: int, lo: bool, hi: bool, boundary: str,
                  transpose: bool) -> np.ndarray:
    """Matrix of the smoothing (or its transpose) restricted to a segment of length ``n``.

    A side flagged ``True`` is a true boundary of the data (folded); a side flagged ``False``
    is interior data (a halo), where only the outputs whose stencil stays inside the segment
    are produced ("valid" mode, ``2d`` fewer per side). The segment's far side is emulated by a
    virtual extension, so the rows kept are exactly rows of the global operator — provided a
    halo side does not reach the end of the data: the transposed (adjoint) smoothing differs
    from the plain stencil up to ``2d + 1`` samples from a boundary, so a segment that touches
    the boundary must flag it ``True`` (the drivers do).
    """
    pad_lo = 0 if lo else 4 * d + 2
    pad_hi = 0 if hi else 4 * d + 2
    nv = n + pad_lo + pad_hi
    A = _folded_matrix(nv, d, boundary)
    if transpose:
        A = A.T
    r0 = pad_lo + (0 if lo else 2 * d)
    r1 = pad_lo + n - (0 if hi else 2 * d)
    if r1 <= r0:
        raise ValueError(f"segment of {n} samples is too short for a valid smoothing at "
                         f"dilation {d}")
    M = A[r0:r1]
    assert not M[:, :pad_lo].any() and not M[:, pad_lo + n:].any()
    M = np.ascontiguousarray(M[:, pad_lo:pad_lo + n])
    M.setflags(write=False)
    return M


def _banded_min(d: int) -> int:
    """Shortest segment handled by stencil + edge blocks (shorter ones use a dense matrix)."""
    return 8 * d + 8


@lru_cache(maxsize=128)
def _edge_blocks(d: int, boundary: str, transpose: bool, dtype: str):
    """Rows of the folded operator that differ from the plain stencil, near each boundary.

    Returns ``(E_lo, B_lo, E_hi, B_hi)``: the first ``E_lo`` output rows are ``B_lo`` (shape
    ``(E_lo, K_lo)``) applied to the first ``K_lo`` input samples; the last ``E_hi`` rows are
    ``B_hi`` applied to the last ``K_hi`` samples. ``E`` is at least ``2d`` (the rows the
    flat shifted sums cannot produce).
    """
    n = _banded_min(d)
    A = _local_matrix(n, d, True, True, boundary, transpose)
    pure = np.zeros(n, bool)
    for i in range(2 * d, n - 2 * d):
        ref = np.zeros(n)
        ref[i - 2 * d:i + 2 * d + 1:d] = B3_KERNEL
        pure[i] = np.array_equal(A[i], ref)
    E_lo = max(2 * d, int(np.argmax(pure)))
    E_hi = max(2 * d, int(np.argmax(pure[::-1])))
    assert pure[E_lo:n - E_hi].all() and E_lo + E_hi < n
    k_lo = int(np.nonzero(A[:E_lo].any(axis=0))[0].max()) + 1
    k_hi = n - int(np.nonzero(A[n - E_hi:].any(axis=0))[0].min())
    B_lo = np.ascontiguousarray(A[:E_lo, :k_lo], dtype=dtype)
    B_hi = np.ascontiguousarray(A[n - E_hi:, n - k_hi:], dtype=dtype)
    return E_lo, B_lo, E_hi, B_hi
