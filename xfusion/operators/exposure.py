"""Exposure × effective area: a diagonal operator."""

from __future__ import annotations

import numpy as np

from .base import LinearOperator, float_dtype

__all__ = ["Exposure"]


class Exposure(LinearOperator):
    r"""Multiply by :math:`t\,A`, with :math:`A` of shape (L,) or (L, M, N).

    Parameters
    ----------
    exposure : float
        Exposure time t (s).
    area : array_like, shape (L,) or (L, M, N)
        Effective area (cm²) on Z's grid.
    shape : tuple (L, M, N)
        Shape of Z.

    Notes
    -----
    Diagonal, hence self-adjoint: :math:`E^* = E`.
    """

    def __init__(self, exposure: float, area, shape: tuple[int, int, int]):
        area = np.asarray(area, dtype=np.float64)
        L = shape[0]
        if area.ndim == 1:
            if area.shape != (L,):
                raise ValueError(f"effective area has {area.shape[0]} energies, Z has {L}")
            area = area[:, None, None]
        elif area.shape != tuple(shape):
            raise ValueError(f"effective area cube {area.shape} does not match Z {tuple(shape)}")
        self.weights = float(exposure) * area
        self.shape_in = self.shape_out = tuple(shape)
        self._cache: dict = {}

    @property
    def energy_only(self) -> bool:
        """True when the effective area depends on energy only (no vignetting)."""
        return self.weights.shape[1:] == (1, 1)

    def w(self, dtype) -> np.ndarray:
        """The weights ``t·A`` cast to ``dtype`` (cached)."""
        dtype = np.dtype(dtype)
        if dtype not in self._cache:
            self._cache[dtype] = self.weights.astype(dtype)
        return self._cache[dtype]

    def squared(self) -> Exposure:
        sq = Exposure.__new__(Exposure)
        sq.weights = self.weights**2
        sq.shape_in = sq.shape_out = self.shape_in
        sq._cache = {}
        return sq

    def forward(self, z):
        return z * self.w(float_dtype(z))

    adjoint = forward
