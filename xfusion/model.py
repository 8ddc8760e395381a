"""Labelled forward model: expected counts of a problem's instruments as DataArrays."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .operators import ForwardModel
from .problem import ProblemError, validate

__all__ = ["forward", "forward_model"]


def forward_model(ds: xr.Dataset, spatial: str = "auto") -> ForwardModel:
    """Validate ``ds`` and build its :class:`~xfusion.operators.ForwardModel`."""
    validate(ds)
    return ForwardModel.from_dataset(ds, spatial=spatial)


def _cube(ds: xr.Dataset, Z) -> np.ndarray:
    shape = (ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"])
    if isinstance(Z, xr.DataArray):
        if set(Z.dims) != {"energy", "y", "x"}:
            raise ProblemError(f"Z: dims {Z.dims}, expected ('energy', 'y', 'x')")
        Z = Z.transpose("energy", "y", "x").data
    if tuple(Z.shape) != shape:
        raise ProblemError(f"Z: shape {tuple(Z.shape)} does not match the problem's "
                           f"(energy, y, x) = {shape}")
    return Z


def forward(ds: xr.Dataset, Z, spatial: str = "auto") -> tuple[xr.DataArray, xr.DataArray]:
    r"""Expected counts :math:`(\mu_X(Z), \mu_Y(Z))` on X's and Y's grids.

    Parameters
    ----------
    ds : xarray.Dataset
        A fusion problem.
    Z : DataArray or array, dims (energy, y, x)
        Photon flux per voxel (photons cm⁻² s⁻¹).

    Returns
    -------
    mu_X, mu_Y : xarray.DataArray
        With the dims and coordinates of ``ds.X`` and ``ds.Y``.
    """
    model = forward_model(ds, spatial=spatial)
    z = _cube(ds, Z)
    if not model.psf.energy_dependent and np.dtype(z.dtype) not in (np.float32, np.float64):
        z = z.astype(np.float64)
    mx, my = model.forward(z)
    mu_X = xr.DataArray(mx, dims=ds.X.dims, coords={d: ds.X[d] for d in ds.X.dims},
                        attrs={"units": "counts", "long_name": "expected counts of X"})
    mu_Y = xr.DataArray(my, dims=ds.Y.dims, coords={d: ds.Y[d] for d in ds.Y.dims},
                        attrs={"units": "counts", "long_name": "expected counts of Y"})
    return mu_X, mu_Y
