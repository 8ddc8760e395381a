"""Spectral response as an (l × L) matrix acting along the energy axis."""

from __future__ import annotations

import numpy as np

from .base import LinearOperator, float_dtype, is_dask

__all__ = ["SpectralResponse", "apply_energy_matrix"]


def apply_energy_matrix(R: np.ndarray, z, out_chunks=None):
    """``out[c, y, x] = Σ_j R[c, j] z[j, y, x]`` for numpy (one GEMM) or dask arrays.

    ``out_chunks`` (dask only): chunks of the output's first axis, e.g. the cube's energy
    chunks when the output is Z-sized (without it that axis is a single chunk, which for a
    2048-channel cube is one chunk per spatial tile holding every energy).
    """
    if is_dask(z):
        import dask.array as da

        if out_chunks is not None:
            R = da.from_array(R, chunks=(tuple(out_chunks), z.chunks[0]))
        if len(z.chunks[0]) > 1:
            # the summed axis is chunked: partial GEMMs per chunk, then a sum
            return da.tensordot(R, z, axes=(1, 0))
        # one chunk along the summed axis (the adjoint: l ≪ L channels): one GEMM per output
        # block, without tensordot's extra length-1 axis and the pass that sums it away
        if not is_dask(R):
            R = da.from_array(R, chunks=(R.shape[0], z.chunks[0]))
        dt = np.promote_types(R.dtype, z.dtype)
        return da.blockwise(_gemm, "cyx", R, "cj", z, "jyx", concatenate=True, dtype=dt,
                            meta=np.empty((0, 0, 0), dt))
    return _gemm(R, z)


def _gemm(R, z):
    from .._threads import matmul

    shp = z.shape
    z2 = z.reshape(shp[0], -1)
    if type(z2) is not np.ndarray or type(R) is not np.ndarray:
        return (R @ z2).reshape((R.shape[0],) + shp[1:])
    return matmul(R, z2).reshape((R.shape[0],) + shp[1:])


class SpectralResponse(LinearOperator):
    r"""Redistribution matrix along energy: :math:`(Rz)_{c} = \sum_j R_{cj} z_j`.

    Covers a stationary spectral kernel followed by channel rebinning (``R = R_L S``) as well
    as a real, energy-dependent RMF re-gridded onto Z's energies.

    Parameters
    ----------
    R : array_like, shape (l, L)
    spatial_shape : tuple (M, N)

    Notes
    -----
    Adjoint: :math:`R^*y = R^{\mathsf T} y`.
    """

    def __init__(self, R, spatial_shape: tuple[int, int]):
        R = np.asarray(R, dtype=np.float64)
        if R.ndim != 2:
            raise ValueError(f"response must be a 2-D (l, L) matrix, got shape {R.shape}")
        self.R = R
        self.shape_in = (R.shape[1],) + tuple(spatial_shape)
        self.shape_out = (R.shape[0],) + tuple(spatial_shape)
        self._cache: dict = {}
        #: energy chunks of the adjoint's output on dask input (set by ForwardModel.set_chunks)
        self.energy_chunks = None

    def matrix(self, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype not in self._cache:
            self._cache[dtype] = (self.R.astype(dtype), np.ascontiguousarray(self.R.T, dtype))
        return self._cache[dtype]

    def squared(self) -> SpectralResponse:
        sq = SpectralResponse(self.R**2, self.shape_in[1:])
        sq.energy_chunks = self.energy_chunks
        return sq

    def forward(self, z):
        return apply_energy_matrix(self.matrix(float_dtype(z))[0], z)

    def adjoint(self, y):
        return apply_energy_matrix(self.matrix(float_dtype(y))[1], y, self.energy_chunks)
