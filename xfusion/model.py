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


def forward(ds: xr.Dataset, Z, spatial: str = "auto",
            background: bool = True) -> tuple[xr.DataArray, xr.DataArray]:
    r"""Expected counts :math:`(\mu_X(Z) + B_X, \mu_Y(Z) + B_Y)` on X's and Y's grids.

    Parameters
    ----------
    ds : xarray.Dataset
        A fusion problem.
    Z : DataArray or array, dims (energy, y, x)
        Photon flux per voxel (photons cm⁻² s⁻¹).
    spatial : {"auto", "dense", "fft", "separable"}
        How Y's PSF and rebinning are applied (:class:`xfusion.operators.ForwardModel`).
    background : bool
        Include the problem's known backgrounds ``background_X`` / ``background_Y`` (default;
        what the counts are compared with), or give the source's part alone,
        :math:`K Z` (``False``). Without backgrounds in ``ds`` both are :math:`K Z`.
        A background of Y is 0 at Y's unobserved pixels (``observed_Y``), like the model.

    Returns
    -------
    mu_X, mu_Y : xarray.DataArray
        With the dims and coordinates of ``ds.X`` and ``ds.Y``; attrs ``background`` (1 when
        a background was added).
    """
    model = forward_model(ds, spatial=spatial)
    z = _cube(ds, Z)
    if not model.psf.energy_dependent and np.dtype(z.dtype) not in (np.float32, np.float64):
        z = z.astype(np.float64)
    mx, my = model.forward(z)
    out = []
    for m, name in ((mx, "X"), (my, "Y")):
        da = ds[name]
        bkg = f"background_{name}"
        added = bool(background) and bkg in ds.data_vars
        if added:
            b = ds[bkg].transpose(*da.dims).data
            if name == "Y" and "observed_Y" in ds.coords:
                b = np.where(np.asarray(ds.coords["observed_Y"].values, bool)[None], b, 0)
            m = m + b
        what = "expected counts of " + name + (" (source + background)" if added else
                                               " (source)" if bkg in ds.data_vars else "")
        out.append(xr.DataArray(m, dims=da.dims, coords={d: da[d] for d in da.dims},
                                attrs={"units": "counts", "long_name": what,
                                       "background": int(added)}))
    return out[0], out[1]
