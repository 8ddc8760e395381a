"""Block-sum rebinning in y/x and in energy, and the rebinning factors of a problem."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._errors import ProblemError
from .base import LinearOperator, is_dask

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["SpatialRebin", "EnergyRebin", "Factors", "rebin_factors"]


@dataclass(frozen=True)
class Factors:
    """Rebinning factors between Z's grid and the data grids (``L = vL·l`` etc.)."""

    vL: int
    vM: int
    vN: int


def _integer_factor(fine: int, coarse: int, what: str) -> int:
    """The factor ``fine / coarse`` of an axis, refusing an empty axis or a non-integer factor."""
    if coarse <= 0 or fine <= 0:
        raise ProblemError(f"{what}: empty axis (fine size {fine}, coarse size {coarse})")
    if fine % coarse:
        raise ProblemError(
            f"{what}: fine size {fine} is not a whole multiple of coarse size {coarse} "
            f"(factor {fine / coarse:.4g} is not an integer)"
        )
    return fine // coarse


def _check_alignment(fine: np.ndarray, coarse: np.ndarray, v: int, what: str, raise_: bool):
    """Refuse (``raise_``) or warn about coarse centres that are not the means of groups of
    ``v`` fine centres."""
    fine = np.asarray(fine, dtype=float)
    coarse = np.asarray(coarse, dtype=float)
    expected = fine.reshape(-1, v).mean(axis=1)
    step = np.abs(np.diff(fine)).min() if fine.size > 1 else 1.0
    err = np.abs(expected - coarse).max()
    if err > 1e-3 * step:
        msg = (
            f"{what}: coarse bin centres are not the means of groups of {v} fine bins "
            f"(largest offset {err:.4g}, fine step {step:.4g}); the grids do not line up"
        )
        if raise_:
            raise ProblemError(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)


def rebin_factors(ds: xr.Dataset) -> Factors:
    """Derive and check the rebinning factors from the problem's coordinates.

    Raises
    ------
    ProblemError
        If a factor is not an integer, or the spatial coordinates do not line up.
    """
    L, l = ds.sizes.get("energy", 0), ds.sizes.get("energy_coarse", 0)
    M, m = ds.sizes.get("y", 0), ds.sizes.get("y_coarse", 0)
    N, n = ds.sizes.get("x", 0), ds.sizes.get("x_coarse", 0)
    vL = _integer_factor(L, l, "energy / energy_coarse")
    vM = _integer_factor(M, m, "y / y_coarse")
    vN = _integer_factor(N, n, "x / x_coarse")
    for fine, coarse, v in (("y", "y_coarse", vM), ("x", "x_coarse", vN)):
        if fine in ds.coords and coarse in ds.coords:
            _check_alignment(ds[fine].values, ds[coarse].values, v, f"{coarse} vs {fine}", True)
    if "energy" in ds.coords and "energy_coarse" in ds.coords:
        _check_alignment(ds["energy"].values, ds["energy_coarse"].values, vL,
                         "energy_coarse vs energy", False)
    return Factors(vL, vM, vN)


def _blocksum(z, axis_factors: dict[int, int]):
    if is_dask(z):
        import dask.array as da

        for ax, v in axis_factors.items():
            if any(c % v for c in z.chunks[ax]):
                raise ValueError(
                    f"chunks {z.chunks[ax]} along axis {ax} are not multiples of the "
                    f"rebinning factor {v}; rechunk so chunk boundaries align with it"
                )
        return da.coarsen(np.sum, z, axis_factors)
    shape = []
    sum_axes = []
    for ax, n in enumerate(z.shape):
        v = axis_factors.get(ax, 1)
        if n % v:
            raise ValueError(f"axis {ax} of size {n} is not a multiple of the factor {v}")
        shape += [n // v, v]
        sum_axes.append(2 * ax + 1)
    return z.reshape(shape).sum(axis=tuple(sum_axes))


def _repeat(y, axis_factors: dict[int, int]):
    for ax, v in axis_factors.items():
        if v > 1:
            y = y.repeat(v, axis=ax) if not is_dask(y) else _dask_repeat(y, v, ax)
    return y


def _dask_repeat(y, v, ax):
    """``np.repeat`` block by block: every chunk grows ``v`` times along ``ax``.

    Not ``da.repeat``: it cuts each chunk into ~``v`` slabs along ``ax`` (and again along the
    next repeated axis), so the block-sum adjoint of a (128, 16, 16) chunk came out as 7 × 7
    chunks of ~18 pixels and every later operation (PSF halo exchange, the sum with the X
    adjoint, the solver's element-wise updates) ran on 49 times as many, much smaller blocks
    (docs/scaling.md).
    """
    chunks = tuple(tuple(c * v for c in ch) if i == ax else ch
                   for i, ch in enumerate(y.chunks))
    return y.map_blocks(np.repeat, v, axis=ax, chunks=chunks, dtype=y.dtype)


class SpatialRebin(LinearOperator):
    r"""Sum ``vM × vN`` blocks of pixels: (L, M, N) → (L, M/vM, N/vN).

    Notes
    -----
    :math:`(R z)_{e,i,j} = \sum_{a<v_M, b<v_N} z_{e, v_M i + a, v_N j + b}`; the adjoint copies
    each coarse value onto its block (``repeat``).
    """

    def __init__(self, shape: tuple[int, int, int], vM: int, vN: int):
        L, M, N = shape
        if M % vM or N % vN:
            raise ValueError(f"image {M}×{N} is not a whole number of {vM}×{vN} blocks")
        self.v = {1: int(vM), 2: int(vN)}
        self.shape_in = tuple(shape)
        self.shape_out = (L, M // vM, N // vN)

    def squared(self) -> SpatialRebin:
        return self  # entries are 0 or 1

    def forward(self, z):
        return z if self.v == {1: 1, 2: 1} else _blocksum(z, self.v)

    def adjoint(self, y):
        return _repeat(y, self.v)


class EnergyRebin(LinearOperator):
    """Sum ``vL`` consecutive channels: (L, M, N) → (L/vL, M, N); adjoint repeats."""

    def __init__(self, shape: tuple[int, int, int], vL: int):
        L, M, N = shape
        if L % vL:
            raise ValueError(f"{L} channels are not a whole number of groups of {vL}")
        self.v = {0: int(vL)}
        self.shape_in = tuple(shape)
        self.shape_out = (L // vL, M, N)

    def squared(self) -> EnergyRebin:
        return self

    def forward(self, z):
        return z if self.v[0] == 1 else _blocksum(z, self.v)

    def adjoint(self, y):
        return _repeat(y, self.v)
