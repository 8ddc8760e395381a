r"""Y's spatial operator (PSF convolution, then block sum) as a short sum of Kronecker products.

A PSF kernel of low rank, :math:`k = \sum_r s_r u_r v_r^{\mathsf T}` (a Gaussian has rank 1),
convolves separably, and the block sum is separable too, so the (m·n × M·N) matrix of
:math:`R_{MN} B_Y` is

.. math::

    \sum_r A_r \otimes B_r,\qquad A_r = R_M\, C(\sqrt{s_r}\, u_r),\quad
    B_r = R_N\, C(\sqrt{s_r}\, v_r),

with :math:`C(u)` the same-size, zero-boundary 1-D convolution matrix and :math:`R_M` the sum
over blocks of ``vM`` rows. Each energy slice then costs :math:`r\,(M N n + M n m)`
multiply-adds instead of :math:`M N m n` for the dense matrix (45×45 → 15×15, rank 1: 40 000
against 455 625) and no FFTs.
"""

from __future__ import annotations

import numpy as np

from .._threads import matmul
from .base import LinearOperator, float_dtype, is_dask

__all__ = ["KroneckerSpatial"]

#: singular values of the kernel below this fraction of the largest are dropped
RANK_TOL = 1e-12
#: the Kronecker form is used up to this rank (beyond it the dense matrix or FFTs are cheaper)
MAX_RANK = 2


def _conv_matrix(u: np.ndarray, M: int) -> np.ndarray:
    """``C[i, i'] = u[i + h - i']`` (zero outside the kernel): same-size 1-D convolution with a
    zero boundary, kernel centred on its middle sample (as :class:`PSFConvolution`)."""
    k = u.shape[0]
    h = k // 2
    i = np.arange(M)[:, None]
    j = np.arange(M)[None, :]
    a = i + h - j
    ok = (a >= 0) & (a < k)
    return np.where(ok, u[np.clip(a, 0, k - 1)], 0.0)


def _block_sum_matrix(M: int, v: int) -> np.ndarray:
    return (np.arange(M)[None, :] // v == np.arange(M // v)[:, None]).astype(np.float64)


class KroneckerSpatial(LinearOperator):
    r"""``out[e] = Σ_r A_r z[e] B_rᵀ`` on every energy slice (see the module notes).

    Parameters
    ----------
    A : ndarray (r, m, M)
    B : ndarray (r, n, N)
    L : int
        Number of energy slices.
    """

    def __init__(self, A: np.ndarray, B: np.ndarray, L: int):
        A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
        if A.ndim != 3 or B.ndim != 3 or A.shape[0] != B.shape[0]:
            raise ValueError(f"need A (r, m, M) and B (r, n, N), got {A.shape} and {B.shape}")
        self.A, self.B = A, B
        self.rank = A.shape[0]
        self.shape_in = (int(L), A.shape[2], B.shape[2])
        self.shape_out = (int(L), A.shape[1], B.shape[1])
        self._cache: dict = {}

    @classmethod
    def from_psf(cls, psf: np.ndarray, shape: tuple[int, int, int], vM: int = 1, vN: int = 1,
                 tol: float = RANK_TOL, max_rank: int = MAX_RANK) -> KroneckerSpatial | None:
        """The operator of ``SpatialRebin ∘ PSFConvolution`` for a 2-D kernel ``psf``, or
        ``None`` when the kernel's rank (singular values above ``tol`` × the largest) exceeds
        ``max_rank``."""
        psf = np.asarray(psf, np.float64)
        if psf.ndim != 2:
            return None
        U, s, Vt = np.linalg.svd(psf)
        r = int(np.sum(s > tol * s[0])) if s.size and s[0] > 0 else 0
        if r == 0 or r > max_rank:
            return None
        L, M, N = shape
        RM, RN = _block_sum_matrix(M, vM), _block_sum_matrix(N, vN)
        A = np.stack([RM @ _conv_matrix(np.sqrt(s[i]) * U[:, i], M) for i in range(r)])
        B = np.stack([RN @ _conv_matrix(np.sqrt(s[i]) * Vt[i], N) for i in range(r)])
        return cls(A, B, L)

    def squared(self) -> KroneckerSpatial:
        """Entry-wise square: :math:`\\sum_{r,s} (A_r \\circ A_s) \\otimes (B_r \\circ B_s)`."""
        A = np.stack([a * b for a in self.A for b in self.A])
        B = np.stack([a * b for a in self.B for b in self.B])
        return KroneckerSpatial(A, B, self.shape_in[0])

    def _mats(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._cache:
            r, m, M = self.A.shape
            _, n, N = self.B.shape
            self._cache[dtype] = {
                "Bcat": np.ascontiguousarray(self.B.transpose(2, 0, 1).reshape(N, r * n), dtype),
                "A": np.ascontiguousarray(self.A, dtype),
                "AT": np.ascontiguousarray(self.A.transpose(0, 2, 1), dtype),
                "Bstack": np.ascontiguousarray(self.B.reshape(r * n, N), dtype),
            }
        return self._cache[dtype]

    def dense_T(self, dtype) -> np.ndarray:
        """The (M·N × m·n) matrix of the operator, transposed (built once per dtype)."""
        key = ("dense", np.dtype(dtype))
        if key not in self._cache:
            D = sum(np.kron(a, b) for a, b in zip(self.A, self.B, strict=True))
            self._cache[key] = np.ascontiguousarray(D.T, dtype)
        return self._cache[key]

    def _forward_np(self, z: np.ndarray) -> np.ndarray:
        # Σ_r A_r (Z_l B_rᵀ): one product over all images for the x axis, then the y axis as
        # a stack of small products (no transposed copies of the cube)
        dt = float_dtype(z)
        z = np.ascontiguousarray(z, dt)
        L, M, N = z.shape
        r, n = self.rank, self.shape_out[2]
        k = self._mats(dt)
        T = matmul(z.reshape(L * M, N), k["Bcat"]).reshape(L, M, r * n)
        out = np.matmul(k["A"][0], T[:, :, :n])
        for i in range(1, r):
            out += np.matmul(k["A"][i], T[:, :, i * n:(i + 1) * n])
        return out

    def adjoint_into(self, y: np.ndarray, out: np.ndarray | None = None,
                     accumulate: bool = False) -> np.ndarray:
        """The adjoint of numpy ``y`` as an (L·M × N) array, written into (or added to)
        ``out``."""
        dt = float_dtype(y) if out is None else out.dtype
        y = np.asarray(y, dt)
        L, m, n = y.shape
        r, M = self.rank, self.shape_in[1]
        k = self._mats(dt)
        U = np.empty((L, M, r * n), dt)                                  # A_rᵀ y_l, side by side
        for i in range(r):
            np.matmul(k["AT"][i], y, out=U[:, :, i * n:(i + 1) * n])
        return matmul(U.reshape(L * M, r * n), k["Bstack"], out=out, accumulate=accumulate)

    def _apply(self, z, adjoint: bool):
        if is_dask(z):
            dt = float_dtype(z)
            if z.numblocks[1] > 1 or z.numblocks[2] > 1:
                z = z.rechunk({1: -1, 2: -1})  # whole images (fuse picks FFTs when chunked)
            shape = self.shape_in if adjoint else self.shape_out
            return z.map_blocks(lambda b: self._apply(b, adjoint), dtype=dt,
                                chunks=(z.chunks[0],) + tuple((s,) for s in shape[1:]),
                                meta=np.empty((0, 0, 0), dt))
        if adjoint:
            L = z.shape[0]
            return self.adjoint_into(z).reshape((L,) + self.shape_in[1:])
        return self._forward_np(z)

    def forward(self, z):
        return self._apply(z, adjoint=False)

    def adjoint(self, y):
        return self._apply(y, adjoint=True)
