r"""Where a fused cube lies on the sky and in energy: CF coordinates and its celestial WCS.

A problem with a celestial WCS (``ds.attrs["wcs"]``, a FITS header string of Z's pixel grid, as
:func:`xfusion.io.from_files` and :func:`xfusion.simulate.scenario` store it) gives its result
``Z`` (dims ``energy, y, x``)

* 2-D coordinates ``ra``, ``dec`` (deg) on ``(y, x)``: the sky position of every pixel centre,
  :math:`(\alpha_{ij}, \delta_{ij}) = W(i_x = j, i_y = i)` for the WCS :math:`W` and 0-based
  array indices (row ``i`` is FITS pixel :math:`y = i + 1`, column ``j`` is :math:`x = j + 1`);
* ``Z.attrs["wcs"]``, the header string itself (a string survives Zarr and NetCDF);
* ``units`` on every coordinate and ``Conventions = "CF-1.8"`` in attrs;
* the energy bins as ``energy_lo`` / ``energy_hi`` coordinates and, in the Dataset form
  :func:`to_dataset` (what ``xf.fuse(..., output=)`` stores), as CF bounds: an
  ``energy_bounds`` coordinate (``energy``, ``nv``) holding :math:`[E^{lo}_k, E^{hi}_k]` with
  ``energy.attrs["bounds"] = "energy_bounds"``. (A DataArray cannot hold a coordinate with a
  dim it does not have, so ``Z`` itself carries only the edges.)

:func:`celestial_wcs` turns a cube back into an :class:`astropy.wcs.WCS` of *its own* pixels:
for a cube cut out of a larger one (``Z.isel(y=slice(4, 9))``) the stored header describes
the whole grid, so the reference pixel is moved by the offset at which the cut-out's ``ra`` /
``dec`` fall in the stored grid.

astropy is imported only when a WCS is there to be used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:  # pragma: no cover
    from astropy.wcs import WCS

__all__ = [
    "NOMINAL_CENTRE",
    "CONVENTIONS",
    "wcs_header",
    "has_wcs",
    "nominal_wcs_header",
    "sky_coords",
    "energy_edges",
    "cube_coords",
    "cube_attrs",
    "to_dataset",
    "celestial_wcs",
]

#: Sky position (RA, Dec in deg, ICRS) given to simulated problems: Cassiopeia A.
NOMINAL_CENTRE = (350.85, 58.815)
#: The CF version whose conventions the result's coordinates follow.
CONVENTIONS = "CF-1.8"
#: Largest mismatch (pixels) between a cube's ``ra`` / ``dec`` and its stored WCS.
PIXEL_TOL = 1e-3


def wcs_header(source) -> str | None:
    """The celestial WCS of ``source`` as a FITS header string, or None.

    Parameters
    ----------
    source : xarray.Dataset, xarray.DataArray, str, astropy.io.fits.Header or astropy.wcs.WCS
        A problem or cube (its ``attrs["wcs"]``), or the WCS itself.

    Returns
    -------
    str or None
        None when a Dataset / DataArray has no ``attrs["wcs"]`` (or it is empty).
    """
    if isinstance(source, (xr.Dataset, xr.DataArray)):
        h = source.attrs.get("wcs")
        return str(h) if h else None
    if isinstance(source, str):
        return source
    from astropy.io import fits
    from astropy.wcs import WCS

    if isinstance(source, fits.Header):
        return source.tostring(sep="\n")
    if isinstance(source, WCS):
        return source.celestial.to_header().tostring(sep="\n")
    raise TypeError(f"expected a Dataset, DataArray, header string, FITS Header or WCS, got "
                    f"{type(source).__name__}")


def has_wcs(source) -> bool:
    """Whether ``source`` (a problem or cube) carries a celestial WCS in ``attrs["wcs"]``."""
    return wcs_header(source) is not None


def _as_wcs(source, what: str = "wcs") -> WCS:
    from .io.grid import as_wcs

    h = wcs_header(source)
    if h is None:
        raise ValueError(f"{what}: no celestial WCS (attrs['wcs'] is missing)")
    return as_wcs(h, what)


def nominal_wcs_header(shape: Sequence[int], pixel_size: float,
                       centre: Sequence[float] = NOMINAL_CENTRE) -> str:
    """A north-up TAN header string for a grid of ``shape`` pixels of ``pixel_size`` arcsec.

    The image centre (pixel-centre offset 0 of :func:`xfusion.make_problem`'s default ``y``,
    ``x``) falls on ``centre``: FITS ``CRPIX = (n + 1) / 2`` per axis, ``CDELT1 = -s/3600``,
    ``CDELT2 = +s/3600`` deg (so ``x`` grows towards the west, ``y`` towards the north).

    Parameters
    ----------
    shape : (ny, nx)
    pixel_size : float
        arcsec.
    centre : (ra, dec)
        deg (ICRS); default :data:`NOMINAL_CENTRE`.

    Returns
    -------
    str
    """
    from .io._fits import header_str
    from .io.grid import make_wcs

    return header_str(make_wcs(centre, float(pixel_size), shape).to_header())


def sky_coords(source, shape: Sequence[int] | None = None) -> dict[str, tuple]:
    r"""``ra`` and ``dec`` (deg) of every pixel centre, as coordinates on ``(y, x)``.

    Parameters
    ----------
    source : Dataset, DataArray, header string, FITS Header or WCS
        The grid's celestial WCS (a problem's or cube's ``attrs["wcs"]``).
    shape : (ny, nx), optional
        Image shape; default the sizes of ``source``'s ``y`` and ``x`` dims.

    Returns
    -------
    dict
        ``{"ra": (("y", "x"), ra, attrs), "dec": (...)}`` ready for ``assign_coords``, with
        :math:`(\alpha, \delta)_{ij} = W(j, i)` in 0-based pixel coordinates; ``ra`` wrapped to
        [0, 360). Empty when ``source`` has no WCS.
    """
    if wcs_header(source) is None:
        return {}
    w = _as_wcs(source, "wcs")
    if shape is None:
        if not isinstance(source, (xr.Dataset, xr.DataArray)):
            raise ValueError("sky_coords: give shape=(ny, nx) with a bare WCS")
        shape = (source.sizes["y"], source.sizes["x"])
    ny, nx = (int(s) for s in shape)
    iy, ix = np.mgrid[0:ny, 0:nx]
    ra, dec = w.wcs_pix2world(ix.astype(float), iy.astype(float), 0)
    frame = str(w.wcs.radesys or "ICRS").strip() or "ICRS"
    return {
        "ra": (("y", "x"), np.mod(ra, 360.0),
               {"units": "deg", "long_name": f"right ascension ({frame}) of the pixel centre"}),
        "dec": (("y", "x"), np.asarray(dec, float),
                {"units": "deg", "long_name": f"declination ({frame}) of the pixel centre"}),
    }


def energy_edges(obj) -> tuple[np.ndarray, np.ndarray]:
    r"""Lower and upper edges (keV) of the energy bins of a problem or cube.

    From the ``energy_lo`` / ``energy_hi`` coordinates where present, else from the bin
    centres :math:`E_k`: inner edges at the midpoints :math:`(E_k + E_{k+1})/2`, outer edges
    mirrored (:math:`E_0 - (E_1 - E_0)/2`, likewise at the top).

    Parameters
    ----------
    obj : Dataset or DataArray with an ``energy`` dimension

    Returns
    -------
    (lo, hi) : two float arrays of length L
    """
    if "energy_lo" in obj.coords and "energy_hi" in obj.coords:
        return (np.asarray(obj["energy_lo"].values, float),
                np.asarray(obj["energy_hi"].values, float))
    e = np.asarray(obj["energy"].values, float)
    if e.size == 1:
        return e - 5e-4, e + 5e-4
    mid = 0.5 * (e[1:] + e[:-1])
    edges = np.concatenate([[e[0] - (mid[0] - e[0])], mid, [e[-1] + (e[-1] - mid[-1])]])
    return edges[:-1], edges[1:]


def cube_coords(ds, coords: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Coordinates of a cube on ``ds``'s grid: ``coords`` with units completed, plus ra/dec.

    Parameters
    ----------
    ds : Dataset or DataArray
        The problem (or a cube) with an ``energy`` dim and, optionally, ``attrs["wcs"]``.
    coords : mapping, optional
        The coordinates the cube already gets (name → DataArray or tuple); DataArrays without
        a ``units`` attribute get ``units = "1"`` (dimensionless), so that every coordinate
        states its unit.

    Returns
    -------
    dict
        The unit-completed ``coords``, ``energy_lo`` / ``energy_hi`` (keV, :func:`energy_edges`)
        if missing, and ``ra`` / ``dec`` when ``ds`` has a WCS. The CF bounds variable, which
        a DataArray cannot hold (its extra ``nv`` dim), is added by :func:`to_dataset`.
    """
    out: dict[str, Any] = {}
    for name, c in (coords or {}).items():
        if isinstance(c, xr.DataArray) and "units" not in c.attrs:
            c = c.copy()
            c.attrs["units"] = "1"
        out[name] = c
    if "energy" in ds.dims and not ("energy_lo" in out and "energy_hi" in out):
        lo, hi = energy_edges(ds)
        out["energy_lo"] = ("energy", lo, {"units": "keV"})
        out["energy_hi"] = ("energy", hi, {"units": "keV"})
    if has_wcs(ds) and "y" in ds.dims and "x" in ds.dims:
        out.update(sky_coords(ds))
    return out


def to_dataset(Z: xr.DataArray, name: str | None = None) -> xr.Dataset:
    """A cube as a CF-1.8 Dataset: the cube plus its energy bin edges as CF bounds.

    Parameters
    ----------
    Z : xarray.DataArray
        A cube with an ``energy`` dim (its bins from :func:`energy_edges`).
    name : str, optional
        Name of the cube's variable (default ``Z.name`` or ``"Z"``).

    Returns
    -------
    xarray.Dataset
        The cube, an ``energy_bounds`` coordinate (``energy``, ``nv``) holding
        :math:`[E^{lo}_k, E^{hi}_k]` in keV, ``energy.attrs["bounds"] = "energy_bounds"``, and
        ``Conventions = "CF-1.8"`` (with the cube's ``wcs``) in the Dataset's attrs. This is
        what ``xf.fuse(..., output=)`` stores; ``ds["Z"]`` gives the cube back (without the
        bounds, which a DataArray cannot hold; ``energy_lo`` / ``energy_hi`` stay).
    """
    name = name or (str(Z.name) if Z.name is not None else "Z")
    ds = Z.to_dataset(name=name)
    if "energy" in Z.dims:
        lo, hi = energy_edges(Z)
        ds = ds.assign_coords(energy_bounds=(("energy", "nv"), np.stack([lo, hi], axis=1),
                                             {"units": "keV",
                                              "long_name": "energy bin edges (lower, upper)"}))
        ds["energy"].attrs["bounds"] = "energy_bounds"
        ds["energy"].attrs.setdefault("units", "keV")
    ds.attrs["Conventions"] = CONVENTIONS
    if has_wcs(Z):
        ds.attrs["wcs"] = wcs_header(Z)
    return ds


def cube_attrs(ds) -> dict[str, str]:
    """Attributes a cube on ``ds``'s grid carries: ``Conventions`` and, if any, ``wcs``."""
    attrs = {"Conventions": CONVENTIONS}
    h = wcs_header(ds)
    if h is not None:
        attrs["wcs"] = h
    return attrs


def celestial_wcs(Z) -> WCS:
    """The celestial WCS of a cube's own pixels (0-based ``(x, y)`` = its array indices).

    Parameters
    ----------
    Z : DataArray or Dataset
        With ``attrs["wcs"]`` and, ideally, the ``ra`` / ``dec`` coordinates of
        :func:`cube_coords`.

    Returns
    -------
    astropy.wcs.WCS
        2-D, with ``pixel_shape = (nx, ny)``. For a cut-out (``Z.isel(...)``), the stored
        WCS's ``CRPIX`` moved by the cut-out's offset, found from where ``ra[0, 0]``,
        ``dec[0, 0]`` fall in the stored grid.

    Raises
    ------
    ValueError
        ``Z`` has no WCS; or its ``ra`` / ``dec`` do not sit on a whole-pixel shift of the
        stored grid (a strided or reordered selection), by more than :data:`PIXEL_TOL` pixels.
    """
    w = _as_wcs(Z, "Z").deepcopy()
    ny, nx = Z.sizes["y"], Z.sizes["x"]
    if "ra" in Z.coords and "dec" in Z.coords:
        ra = np.asarray(Z["ra"].values, float)
        dec = np.asarray(Z["dec"].values, float)
        px, py = w.wcs_world2pix(ra, dec, 0)
        ox, oy = float(np.round(px.flat[0])), float(np.round(py.flat[0]))
        iy, ix = np.mgrid[0:ny, 0:nx]
        err = max(np.abs(px - ox - ix).max(), np.abs(py - oy - iy).max())
        if not np.isfinite(err) or err > PIXEL_TOL:
            raise ValueError(
                f"Z: its ra/dec coordinates are not a whole-pixel cut-out of its WCS (off by "
                f"up to {err:.3g} pixels): a strided, reordered or resampled selection has no "
                f"celestial WCS of its own"
            )
        if ox or oy:
            w.wcs.crpix = np.asarray(w.wcs.crpix) - [ox, oy]
    w.pixel_shape = (nx, ny)
    return w
