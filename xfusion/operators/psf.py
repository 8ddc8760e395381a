"""PSF convolution of every energy slice, zero boundary, exact adjoint."""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ..halo import map_with_halo
from .base import LinearOperator, float_dtype, is_dask

__all__ = ["PSFConvolution", "band_runs"]


def band_runs(psf: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Split an (L, ky, kx) PSF stack into runs of identical consecutive kernels.

    Returns
    -------
    kernels : ndarray (B, ky, kx)
        One kernel per run.
    runs : list of (start, stop, b)
        Energy slices ``start:stop`` use ``kernels[b]``.
    """
    if psf.ndim == 2:
        return psf[None], [(0, -1, 0)]
    kernels, runs = [psf[0]], []
    start = 0
    for e in range(1, psf.shape[0] + 1):
        if e == psf.shape[0] or not np.array_equal(psf[e], psf[start]):
            runs.append((start, e, len(kernels) - 1))
            if e < psf.shape[0]:
                kernels.append(psf[e])
                start = e
    return np.stack(kernels), runs


class PSFConvolution(LinearOperator):
    r"""2-D convolution of each energy slice with Y's PSF, same size, zero outside the image.

    Parameters
    ----------
    psf : array_like, shape (ky, kx) or (L, ky, kx)
        Odd-sized kernel(s) centred on the middle pixel. With an energy axis, each slice has
        its own kernel (stored once per run of identical consecutive slices, so a PSF that is
        piecewise constant over energy bands costs one FFT kernel per band).
    shape : tuple (L, M, N)

    Notes
    -----
    :math:`(Bz)_{e,i,j} = \sum_{a,b} k_{e,a,b}\, z_{e,\,i+h_y-a,\,j+h_x-b}` with :math:`z = 0`
    outside the image. The adjoint is the same operation with the flipped kernel
    :math:`k_{e,-a,-b}` (a correlation), which is exact for odd, centred kernels. Computed with
    real FFTs padded to ``M + ky - 1`` (no wrap-around); on dask arrays by blocks, with a halo of
    the kernel half-width and a zero boundary when y/x are chunked.
    """

    def __init__(self, psf, shape: tuple[int, int, int]):
        psf = np.asarray(psf, dtype=np.float64)
        if psf.shape[-1] % 2 == 0 or psf.shape[-2] % 2 == 0:
            raise ValueError(f"PSF sizes must be odd, got {psf.shape[-2:]}")
        if psf.ndim == 3 and psf.shape[0] != shape[0]:
            raise ValueError(f"PSF has {psf.shape[0]} energies, Z has {shape[0]}")
        self.psf = psf
        self.kernels, self.runs = band_runs(psf)
        self.energy_dependent = psf.ndim == 3 and len(self.runs) > 1
        self.half = (psf.shape[-2] // 2, psf.shape[-1] // 2)
        self.shape_in = self.shape_out = tuple(shape)
        self._cache: dict = {}

    def _khat(self, M: int, N: int, dtype, flip: bool):
        key = (M, N, np.dtype(dtype), flip)
        if key not in self._cache:
            ky, kx = self.kernels.shape[-2:]
            P, Q = sfft.next_fast_len(M + ky - 1, True), sfft.next_fast_len(N + kx - 1, True)
            k = self.kernels[:, ::-1, ::-1] if flip else self.kernels
            kh = sfft.rfft2(k.astype(dtype), s=(P, Q), axes=(-2, -1))
            self._cache[key] = (kh, (P, Q))
        return self._cache[key]

    def _apply(self, z, flip: bool, e0: int = 0, workers: int = -1):
        """Convolve a numpy block whose first slice is energy index ``e0`` (FFTs on
        ``workers`` threads: all cores in memory, one inside a dask task, where the
        scheduler already runs one task per core)."""
        dt = float_dtype(z)
        z = np.asarray(z, dtype=dt)
        Lb, M, N = z.shape
        kh, (P, Q) = self._khat(M, N, dt, flip)
        zh = sfft.rfft2(z, s=(P, Q), axes=(-2, -1), workers=workers)
        if len(self.runs) == 1:
            zh *= kh[0]
        else:
            for start, stop, b in self.runs:
                lo, hi = max(start - e0, 0), min(stop - e0, Lb)
                if lo < hi:
                    zh[lo:hi] *= kh[b]
        out = sfft.irfft2(zh, s=(P, Q), axes=(-2, -1), workers=workers, overwrite_x=True)
        hy, hx = self.half
        return np.ascontiguousarray(out[:, hy:hy + M, hx:hx + N], dtype=dt)

    def _dispatch(self, z, flip: bool):
        if not is_dask(z):
            return self._apply(z, flip)
        dt = float_dtype(z)
        offsets = np.concatenate([[0], np.cumsum(z.chunks[0])[:-1]])

        def block(b, block_info=None):
            e0 = int(offsets[block_info[0]["chunk-location"][0]]) if block_info else 0
            return self._apply(b, flip, e0, workers=1)

        return map_with_halo(block, z, self.depth, boundary=0, dtype=dt, small="raise")

    @property
    def depth(self) -> dict[int, int]:
        """The halo the convolution reads on chunked arrays: the kernel's half-widths along
        y and x."""
        return {1: self.half[0], 2: self.half[1]}

    def squared(self) -> PSFConvolution:
        return PSFConvolution(self.psf**2, self.shape_in)

    def forward(self, z):
        return self._dispatch(z, flip=False)

    def adjoint(self, y):
        return self._dispatch(y, flip=True)
