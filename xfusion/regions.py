r"""Regions of a fused cube: which pixels a spectrum sums over.

:func:`region_mask` turns any of these into a boolean (y, x) mask on a cube's pixel grid:

=====================================  =========================================================
region                                 pixels selected
=====================================  =========================================================
boolean (y, x) array or DataArray      where it is True (same shape as the cube's image)
sequence of ``(iy, ix)`` pairs         those pixels (0-based row, column; repeats count once)
``(ra, dec, radius)``                  centres within ``radius`` arcsec of (``ra``, ``dec``) deg
``regions.CircleSkyRegion``            centres within its radius of its centre (the same test)
any other ``regions.SkyRegion``        centres it contains (``region.contains(sky, wcs)``)
``regions.PixelRegion``                centres it contains, in the cube's 0-based array pixels
                                       (``x`` = column, ``y`` = row; regions' own convention)
=====================================  =========================================================

A pixel belongs to a region when its *centre* does: for a sky circle of centre
:math:`c` and radius :math:`r`, pixel :math:`p` is in when the angular separation
:math:`\theta(c, s_p) \le r` between the centre and the pixel's sky position :math:`s_p`
(the ``ra`` / ``dec`` coordinates of the cube, :mod:`xfusion.sky`). Sky regions need the
cube's celestial WCS; a region that selects no pixel is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["RegionError", "region_mask"]


class RegionError(ValueError):
    """A region that cannot be used on a cube; the message says why."""


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _image_shape(Z) -> tuple[int, int]:
    if not isinstance(Z, (xr.DataArray, xr.Dataset)) or "y" not in Z.dims or "x" not in Z.dims:
        raise RegionError("Z: a region needs a cube (DataArray or Dataset) with dims 'y' and 'x'")
    return int(Z.sizes["y"]), int(Z.sizes["x"])


def _sky_positions(Z):
    """SkyCoord of every pixel centre of ``Z`` (from its ra/dec coords, else its WCS)."""
    from astropy.coordinates import SkyCoord

    from . import sky

    if "ra" in Z.coords and "dec" in Z.coords:
        ra, dec = np.asarray(Z["ra"].values, float), np.asarray(Z["dec"].values, float)
    elif sky.has_wcs(Z):
        c = sky.sky_coords(Z)
        ra, dec = c["ra"][1], c["dec"][1]
    else:
        raise RegionError("region: a sky region needs Z's celestial WCS (Z.attrs['wcs'] or ra/dec "
                          "coordinates); this cube has none. Give a boolean mask or a list of "
                          "(iy, ix) pixels instead")
    return SkyCoord(ra, dec, unit="deg", frame="icrs")


def _circle(Z, centre, radius_arcsec: float) -> np.ndarray:
    import astropy.units as u

    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise RegionError(f"region: radius {radius_arcsec!r} arcsec must be positive and finite")
    pos = _sky_positions(Z)
    return np.asarray(pos.separation(centre).to_value(u.arcsec) <= radius_arcsec)


def _from_pixels(pixels, shape: tuple[int, int]) -> np.ndarray:
    try:
        p = np.asarray(pixels)
    except ValueError:
        raise RegionError("region: a pixel list must be a sequence of (iy, ix) pairs") from None
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
        raise RegionError(f"region: a pixel list must be a non-empty sequence of (iy, ix) pairs, "
                          f"got an array of shape {p.shape}")
    if p.dtype.kind == "f" and not (np.isfinite(p).all() and (p == np.round(p)).all()):
        raise RegionError("region: pixel indices must be whole numbers")
    if p.dtype.kind not in "iuf":
        raise RegionError(f"region: pixel indices must be integers, got dtype {p.dtype}")
    p = p.astype(np.int64)
    ny, nx = shape
    bad = (p[:, 0] < 0) | (p[:, 0] >= ny) | (p[:, 1] < 0) | (p[:, 1] >= nx)
    if bad.any():
        iy, ix = p[np.argmax(bad)]
        raise RegionError(f"region: pixel (iy={iy}, ix={ix}) is outside the {ny}×{nx} image "
                          f"({int(bad.sum())} pixels outside; indices are 0-based)")
    m = np.zeros(shape, bool)
    m[p[:, 0], p[:, 1]] = True
    return m


def region_mask(Z, region: Any) -> xr.DataArray:
    """The pixels of a cube that a region selects, as a boolean (y, x) DataArray.

    Parameters
    ----------
    Z : xarray.DataArray or Dataset
        A cube with dims ``y``, ``x`` (a fused cube; a problem works too).
    region : mask, pixel list, (ra, dec, radius), regions.SkyRegion or regions.PixelRegion
        See the module docstring: a boolean (y, x) array or DataArray; a sequence of
        ``(iy, ix)``; ``(ra_deg, dec_deg, radius_arcsec)``; a ``CircleSkyRegion`` (or any
        ``SkyRegion``); a ``PixelRegion`` in 0-based array pixels.

    Returns
    -------
    xarray.DataArray
        dtype bool, dims ``(y, x)``, with ``Z``'s ``y``, ``x`` (and ``ra``, ``dec``)
        coordinates; ``attrs["n_pixels"]`` counts the pixels selected.

    Raises
    ------
    RegionError
        ``Z`` without ``y``/``x``; a mask of another shape or dtype; pixels outside the image
        or not whole numbers; a non-positive radius; a sky region on a cube with no WCS; a
        region of a type not listed; a region that selects no pixel.
    """
    shape = _image_shape(Z)
    m = _mask_values(Z, region, shape)
    n = int(m.sum())
    if n == 0:
        raise RegionError(f"region: selects no pixel of the {shape[0]}×{shape[1]} image "
                          f"(outside the field, or smaller than a pixel and centred between "
                          f"pixel centres)")
    coords = {c: Z.coords[c] for c in Z.coords if set(Z.coords[c].dims) <= {"y", "x"}
              and Z.coords[c].dims}
    return xr.DataArray(m, dims=("y", "x"), coords=coords, name="region",
                        attrs={"n_pixels": n, "units": "1"})


def _mask_values(Z, region, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(region, xr.DataArray) and region.dims == ("y", "x") or (
            isinstance(region, np.ndarray) and region.ndim == 2 and region.dtype == bool):
        a = region.transpose("y", "x").values if isinstance(region, xr.DataArray) else region
        if a.dtype != bool:
            raise RegionError(f"region: a mask must be boolean, got dtype {a.dtype}")
        if a.shape != shape:
            raise RegionError(f"region: mask of shape {a.shape}, the image is {shape}")
        return np.asarray(a, bool)
    if isinstance(region, xr.DataArray):
        raise RegionError(f"region: a mask DataArray must have dims ('y', 'x'), got "
                          f"{region.dims}")
    try:
        import regions as _regions
    except ImportError:  # pragma: no cover - regions is a dependency of the sky helpers
        _regions = None
    if _regions is not None:
        if isinstance(region, _regions.CircleSkyRegion):
            import astropy.units as u

            return _circle(Z, region.center, float(region.radius.to_value(u.arcsec)))
        if isinstance(region, _regions.SkyRegion):
            from . import sky

            pos = _sky_positions(Z)
            try:
                w = sky.celestial_wcs(Z)
            except ValueError as e:
                raise RegionError(f"region: {e}") from None
            return np.asarray(region.contains(pos, w), bool).reshape(shape)
        if isinstance(region, _regions.PixelRegion):
            iy, ix = np.mgrid[0:shape[0], 0:shape[1]]
            return np.asarray(region.contains(_regions.PixCoord(x=ix, y=iy)), bool)
    if isinstance(region, np.ndarray) and region.ndim == 2 and region.shape == shape \
            and region.dtype != bool and region.shape[1] != 2:
        raise RegionError(f"region: a mask must be boolean, got dtype {region.dtype}")
    if isinstance(region, tuple) and len(region) == 3 and all(_is_number(v) for v in region):
        from astropy.coordinates import SkyCoord

        ra, dec, r = (float(v) for v in region)
        if not (np.isfinite(ra) and np.isfinite(dec) and -90 <= dec <= 90):
            raise RegionError(f"region: sky position ({ra}, {dec}) is not (ra, dec) in deg")
        return _circle(Z, SkyCoord(ra, dec, unit="deg", frame="icrs"), r)
    if isinstance(region, (Sequence, np.ndarray)) and not isinstance(region, (str, bytes)):
        return _from_pixels(region, shape)
    raise RegionError(
        f"region: {type(region).__name__} is not a region: give a boolean (y, x) mask, a list "
        f"of (iy, ix) pixels, (ra, dec, radius_arcsec), or a regions.SkyRegion / PixelRegion"
    )
