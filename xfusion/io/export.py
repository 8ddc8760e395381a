r"""Science out: a fused cube as a FITS image cube, and the spectrum of a region as OGIP files.

:func:`write_fits_cube`
    The cube ``Z`` (energy, y, x) as the primary image of a FITS file (float32,
    ``BUNIT = 'photon cm-2 s-1'``) with a 3-D WCS: axes 1, 2 the celestial WCS of the cube
    (``RA---TAN`` / ``DEC--TAN``, :func:`xfusion.sky.celestial_wcs`), axis 3 the energy
    (``CTYPE3 = 'ENER'``, ``CUNIT3 = 'keV'``): linear (``CRVAL3`` the first bin centre,
    ``CDELT3`` the bin width) when the bins are of one width, otherwise tabular
    (``CTYPE3 = 'ENER-TAB'``, bin centres in the ``ENERGY`` column of a ``WCS-TAB`` table, FITS
    WCS paper III). Always an ``EBOUNDS`` table (``CHANNEL`` = image plane 1…L, ``E_MIN``,
    ``E_MAX`` in keV) and, with ``sigma=``, an ``ERR`` image of the same shape and WCS.

:func:`write_spectrum`
    The summed spectrum :math:`F_k = \sum_{p \in R} Z_{k p}` (photons cm⁻² s⁻¹ in channel
    :math:`k`) of a region :math:`R` (:func:`xfusion.regions.region_mask`) as an OGIP PHA file
    with a diagonal RMF and a flat ARF beside it. A flux is not a count, and fitting tools fold
    a model :math:`S(E)` (photons cm⁻² s⁻¹ keV⁻¹) through the files as

    .. math:: C_k = T \int_{E^{lo}_k}^{E^{hi}_k} A(E) \sum_j R_{jk} S(E) \, dE ,

    so the file holds :math:`C_k = F_k \, T A` with a constant ARF area :math:`A`
    (``area``, 1 cm² by default) and ``EXPOSURE`` :math:`T` (``exposure``, 1 s by default) and
    the identity RMF: any tool that divides by exposure × ARF (XSPEC, Sherpa, gammapy) recovers
    :math:`F_k`, and a model fitted to the spectrum is a model of the region's flux. The errors
    (``STAT_ERR``, ``POISSERR = F``) are those of :math:`F_k` times :math:`T A`:

    * ``draws=`` (a ``(draw, energy, y, x)`` DataArray of bootstrap refits,
      :func:`xfusion.uncertainty.bootstrap`): :math:`\sigma_k = \mathrm{std}_b \sum_{p \in R}
      Z^{*b}_{kp}` (ddof = 1), which keeps the correlations between pixels — preferred;
    * ``sigma=`` (per-voxel standard errors): :math:`\sigma_k = (\sum_{p \in R}
      \sigma_{kp}^2)^{1/2}`, which assumes the voxels independent (too small where the
      regularizer correlates neighbours).

    ``COUNTS`` are therefore real numbers: fit them with :math:`\chi^2` on ``STAT_ERR``
    (XSPEC ``statistic chi``, Sherpa ``set_stat("chi2")``), not a Poisson statistic.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import xarray as xr
from astropy.io import fits

from .. import sky
from ..regions import region_mask
from ._fits import fspath, write_atomic
from .ogip import write_arf, write_rmf

__all__ = ["ExportError", "write_fits_cube", "write_spectrum", "spectrum_paths"]

#: Unit of a fused cube (per voxel) as written in ``BUNIT``.
FLUX_UNIT = "photon cm-2 s-1"
#: Relative spread of bin widths (and of centres off a uniform grid) below which the energy
#: axis is written as linear rather than tabular.
UNIFORM_RTOL = 1e-6


class ExportError(ValueError):
    """A cube, region or error estimate that cannot be written as asked; the message says why."""


# ----------------------------------------------------------------------------- input checks
def _cube(Z, name: str = "Z") -> xr.DataArray:
    if not isinstance(Z, xr.DataArray):
        raise ExportError(f"{name}: expected a DataArray (energy, y, x), got {type(Z).__name__}")
    if set(Z.dims) != {"energy", "y", "x"}:
        raise ExportError(f"{name}: dims {Z.dims}, expected ('energy', 'y', 'x')")
    if any(s == 0 for s in Z.shape):
        raise ExportError(f"{name}: empty (shape {dict(Z.sizes)})")
    units = Z.attrs.get("units")
    if units is not None and str(units) != FLUX_UNIT:
        raise ExportError(f"{name}: units {units!r}, expected {FLUX_UNIT!r} (a fused cube)")
    Z = Z.transpose("energy", "y", "x")
    if np.dtype(Z.dtype).kind not in "iuf":
        raise ExportError(f"{name}: values must be real numbers, got dtype {Z.dtype}")
    return Z


def _finite(a: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
        raise ExportError(f"{name}: {int(bad.sum())} non-finite values (NaN or Inf; the first at "
                          f"index {idx})")


def _sigma(sigma, Z: xr.DataArray) -> np.ndarray:
    if isinstance(sigma, xr.DataArray):
        if set(sigma.dims) != {"energy", "y", "x"}:
            raise ExportError(f"sigma: dims {sigma.dims}, expected ('energy', 'y', 'x')")
        sigma = sigma.transpose("energy", "y", "x").values
    s = np.asarray(sigma, dtype=float)
    if s.shape != Z.shape:
        raise ExportError(f"sigma: shape {s.shape}, Z has {Z.shape}")
    _finite(s, "sigma")
    if (s < 0).any():
        raise ExportError(f"sigma: {int((s < 0).sum())} negative standard errors")
    return s


def _draws(draws, Z: xr.DataArray) -> np.ndarray:
    if isinstance(draws, xr.DataArray):
        if "draw" not in draws.dims or set(draws.dims) != {"draw", "energy", "y", "x"}:
            raise ExportError(f"draws: dims {draws.dims}, expected ('draw', 'energy', 'y', 'x')")
        draws = draws.transpose("draw", "energy", "y", "x").values
    d = np.asarray(draws, dtype=float)
    if d.ndim != 4 or d.shape[1:] != Z.shape:
        raise ExportError(f"draws: shape {d.shape}, expected (n_draws, *{Z.shape})")
    if d.shape[0] < 2:
        raise ExportError(f"draws: {d.shape[0]} draw(s); the spread needs at least 2")
    _finite(d, "draws")
    return d


# ------------------------------------------------------------------------------- FITS cube
def _energy_axis(Z: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Bin edges, centres, and whether the axis is linear (equal widths, centred bins)."""
    lo, hi = sky.energy_edges(Z)
    e = np.asarray(Z["energy"].values, float)
    w = hi - lo
    scale = float(np.abs(w).max())
    linear = bool(
        np.all(np.abs(w - w[0]) <= UNIFORM_RTOL * scale)
        and np.all(np.abs(e - (e[0] + w[0] * np.arange(e.size))) <= UNIFORM_RTOL * scale)
    )
    return lo, hi, e, linear


def _spatial_header(Z: xr.DataArray) -> fits.Header:
    """Axes 1, 2: the cube's celestial WCS, or linear offsets (arcsec) with a warning."""
    if sky.has_wcs(Z):
        try:
            return sky.celestial_wcs(Z).to_header()
        except ValueError as e:
            raise ExportError(str(e)) from None
    h = fits.Header()
    warnings.warn("Z has no celestial WCS (attrs['wcs']): axes 1, 2 of the FITS cube are "
                  "linear offsets in arcsec (CTYPE 'XOFFSET', 'YOFFSET'), not sky positions",
                  UserWarning, stacklevel=3)
    h["WCSAXES"] = 2
    for i, c in ((1, "x"), (2, "y")):
        v = np.asarray(Z[c].values, float) if c in Z.coords else np.arange(Z.sizes[c], float)
        step = float(v[1] - v[0]) if v.size > 1 else 1.0
        if v.size > 1 and np.abs(np.diff(v) - step).max() > 1e-6 * abs(step):
            raise ExportError(f"Z: coordinate {c!r} is not evenly spaced; without a celestial "
                              f"WCS a FITS cube needs a linear pixel grid")
        h[f"CTYPE{i}"] = f"{c.upper()}OFFSET"
        h[f"CUNIT{i}"] = "arcsec"
        h[f"CRPIX{i}"] = 1.0
        h[f"CRVAL{i}"] = float(v[0])
        h[f"CDELT{i}"] = step
    return h


def _cube_header(Z: xr.DataArray) -> tuple[fits.Header, list[fits.BinTableHDU]]:
    """The 3-D WCS header of the cube and the tables it needs (``WCS-TAB`` if tabular)."""
    h = _spatial_header(Z)
    h["WCSAXES"] = 3
    lo, hi, e, linear = _energy_axis(Z)
    tables = []
    h["CTYPE3"] = "ENER" if linear else "ENER-TAB"
    h["CUNIT3"] = "keV"
    if linear:
        h["CRPIX3"] = (1.0, "the first energy plane")
        h["CRVAL3"] = (float(e[0]), "[keV] centre of the first energy bin")
        h["CDELT3"] = (float(hi[0] - lo[0]), "[keV] energy bin width")
    else:
        # FITS WCS paper III: the world coordinate of plane p (1-based) is ENERGY[p]
        h["CRPIX3"], h["CRVAL3"], h["CDELT3"] = 1.0, 1.0, 1.0
        h["PS3_0"] = ("WCS-TAB", "table holding the energy axis")
        h["PS3_1"] = ("ENERGY", "column of bin centres (keV)")
        h["PV3_3"] = (1, "axis number in the coordinate array")
        col = fits.Column("ENERGY", format=f"{e.size}D", dim=f"(1,{e.size})", unit="keV",
                          array=e.reshape(1, e.size, 1))
        tables.append(fits.BinTableHDU.from_columns([col], name="WCS-TAB"))
    h["SPECSYS"] = "TOPOCENT"
    return h, tables


def _ebounds(lo: np.ndarray, hi: np.ndarray, fmt: str = "D", first: int = 1
             ) -> fits.BinTableHDU:
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=np.arange(first, first + lo.size, dtype=np.int32)),
        fits.Column("E_MIN", fmt, unit="keV", array=lo),
        fits.Column("E_MAX", fmt, unit="keV", array=hi),
    ], name="EBOUNDS")
    return hdu


def _provenance(h: fits.Header, Z: xr.DataArray) -> None:
    h["CREATOR"] = "xfusion"
    for key, attr in (("XF_REG", "regularizer"), ("XF_ITER", "iterations"),
                      ("XF_CONV", "converged")):
        v = Z.attrs.get(attr)
        if isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool):
            h[key] = (v.item() if hasattr(v, "item") else v, f"Z.attrs['{attr}']")


def write_fits_cube(Z: xr.DataArray, path, sigma=None, overwrite: bool = False) -> str:
    """Write a fused cube as a FITS image cube with its celestial and spectral WCS.

    Parameters
    ----------
    Z : xarray.DataArray
        Dims ``energy``, ``y``, ``x`` (any order), photons cm⁻² s⁻¹ per voxel; its celestial
        WCS from ``Z.attrs["wcs"]`` (:mod:`xfusion.sky`).
    path : str or path-like
        Output file, written atomically.
    sigma : array_like or DataArray (energy, y, x), optional
        Per-voxel standard errors, written as an ``ERR`` image with the same WCS.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ExportError
        ``Z`` not a DataArray with dims energy/y/x, empty, in other units, with NaN or Inf; a
        ``sigma`` of another shape, non-finite or negative; a cut-out whose ``ra``/``dec``
        do not match its WCS.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.

    Warns
    -----
    UserWarning
        ``Z`` has no celestial WCS: axes 1 and 2 are written as linear offsets in arcsec
        (``XOFFSET`` / ``YOFFSET``, from the ``x``/``y`` coordinates) instead.

    Notes
    -----
    HDUs: ``PRIMARY`` (float32 data, NAXIS1 = x, NAXIS2 = y, NAXIS3 = energy), ``EBOUNDS``
    (``CHANNEL`` 1…L = the image planes, ``E_MIN``, ``E_MAX`` keV), ``WCS-TAB`` when the
    energy bins are of unequal width (the axis is then ``ENER-TAB``; read it with
    ``astropy.wcs.WCS(header, fobj=hdul)``), ``ERR`` with ``sigma``.
    """
    Z = _cube(Z)
    data = np.asarray(Z.values, dtype=float)
    _finite(data, "Z")
    err = None if sigma is None else _sigma(sigma, Z)
    h, tables = _cube_header(Z)
    primary = fits.PrimaryHDU(data.astype(np.float32))
    primary.header.update(h)
    primary.header["BUNIT"] = FLUX_UNIT
    primary.header["BTYPE"] = "photon flux per voxel"
    _provenance(primary.header, Z)
    lo, hi = sky.energy_edges(Z)
    hdus: list[Any] = [primary, _ebounds(lo, hi), *tables]
    if err is not None:
        e = fits.ImageHDU(err.astype(np.float32), name="ERR")
        e.header.update(h)
        e.header["BUNIT"] = FLUX_UNIT
        e.header["BTYPE"] = "standard error of the photon flux per voxel"
        hdus.append(e)
    return write_atomic(fits.HDUList(hdus), path, overwrite)


# ---------------------------------------------------------------------------- OGIP spectra
def spectrum_paths(path) -> dict[str, str]:
    """The three files :func:`write_spectrum` writes: ``path`` and its ``.rmf``, ``.arf``
    siblings (``spec.pha`` → ``spec.rmf``, ``spec.arf``)."""
    path = fspath(path)
    stem, ext = os.path.splitext(path)
    if ext.lower() in (".rmf", ".arf"):
        raise ExportError(f"path: {path!r} ends in {ext}; the spectrum's own file needs "
                          f"another name (e.g. {stem}.pha), its RMF and ARF go beside it")
    if not os.path.basename(stem):
        raise ExportError(f"path: {path!r} has no file name")
    return {"pha": path, "rmf": stem + ".rmf", "arf": stem + ".arf"}


def _check_spectrum_args(exposure, area, sigma, draws) -> None:
    """Refuse a non-positive or non-finite ``exposure`` / ``area`` and both ``sigma`` and
    ``draws``."""
    for v, name in ((exposure, "exposure"), (area, "area")):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v <= 0:
            raise ExportError(f"{name}: {v!r} must be a positive finite number")
    if sigma is not None and draws is not None:
        raise ExportError("give sigma= (per-voxel errors) or draws= (bootstrap refits), not "
                          "both; draws keep the correlations between pixels")


def _region_spectrum(Z: xr.DataArray, data: np.ndarray, m: np.ndarray, sigma, draws):
    """The region's flux per energy bin, its error (None without ``sigma`` or ``draws``) and
    how the error was made; warns (at :func:`write_spectrum`'s caller) when there is none."""
    flux = data[:, m].sum(axis=1)
    err = None
    if draws is not None:
        d = _draws(draws, Z)
        err = d[:, :, m].sum(axis=2).std(axis=0, ddof=1)
        how = f"std of the region sum over {d.shape[0]} draws (ddof=1)"
    elif sigma is not None:
        s = _sigma(sigma, Z)
        err = np.sqrt((s[:, m] ** 2).sum(axis=1))
        how = "quadrature sum of voxel sigma (independent)"
    else:
        warnings.warn("write_spectrum: neither sigma= nor draws= given: the spectrum has no "
                      "STAT_ERR, so chi-square fits have no errors (bootstrap draws: "
                      "xfusion.uncertainty.bootstrap)", UserWarning, stacklevel=3)
        how = "none"
    return flux, err, how


def _pha_table(flux: np.ndarray, err: np.ndarray | None, scale: float) -> fits.BinTableHDU:
    """The PHA ``SPECTRUM`` table: channels 0…L-1, ``COUNTS`` (and ``STAT_ERR``) times
    ``scale``, ``QUALITY`` and ``BACKSCAL``."""
    L = flux.size
    cols = [fits.Column("CHANNEL", "J", array=np.arange(L, dtype=np.int32)),
            fits.Column("COUNTS", "D", unit="count", array=flux * scale)]
    if err is not None:
        cols.append(fits.Column("STAT_ERR", "D", unit="count", array=err * scale))
    cols += [fits.Column("QUALITY", "I", array=np.zeros(L, np.int16)),
             fits.Column("BACKSCAL", "E", array=np.ones(L, np.float32))]
    spec = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    spec.header["TLMIN1"], spec.header["TLMAX1"] = 0, L - 1
    return spec


def _pha_cards(paths: dict[str, str], L: int, n_pix: int, has_err: bool, how: str, *,
               exposure: float, area: float, telescope: str, instrument: str,
               obs_id: int) -> list[tuple[str, Any, str]]:
    """``(keyword, value, comment)`` cards of the PHA ``SPECTRUM`` header."""
    return [
        ("TELESCOP", telescope, "mission"), ("INSTRUME", instrument, "instrument"),
        ("FILTER", "NONE", ""), ("OBS_ID", int(obs_id), "observation id"),
        ("EXPOSURE", float(exposure), "[s] COUNTS = flux x EXPOSURE x ARF area"),
        ("AREASCAL", 1.0, ""), ("CORRSCAL", 0.0, ""), ("CORRFILE", "none", ""),
        ("RESPFILE", os.path.basename(paths["rmf"]), "identity RMF on Z's energy bins"),
        ("ANCRFILE", os.path.basename(paths["arf"]), f"constant ARF of {float(area):g} cm2"),
        ("HDUCLASS", "OGIP", ""), ("HDUCLAS1", "SPECTRUM", ""), ("HDUCLAS2", "TOTAL", ""),
        ("HDUCLAS3", "COUNT", ""), ("HDUCLAS4", "TYPE:I", ""), ("HDUVERS", "1.2.1", ""),
        ("CHANTYPE", "PI", ""), ("DETCHANS", L, "channels = Z's energy bins"),
        ("POISSERR", False, "errors are in STAT_ERR" if has_err else "no errors"),
        ("SYS_ERR", 0, ""), ("GROUPING", 0, ""),
        ("XF_NPIX", n_pix, "pixels of Z summed"),
        ("XF_AREA", float(area), "[cm2] ARF area used to encode the flux"),
        ("XF_ERR", how[:60], "STAT_ERR"),
        ("CREATOR", "xfusion", ""),
    ]


def _region_centre(h: fits.Header, mask: xr.DataArray, m: np.ndarray) -> None:
    """Set ``RA_OBJ`` / ``DEC_OBJ`` in ``h``: the mean position of the region's pixels."""
    from astropy.coordinates import SkyCoord

    pos = SkyCoord(mask["ra"].values[m], mask["dec"].values[m], unit="deg")
    xyz = pos.cartesian.xyz.value.mean(axis=1)
    ctr = SkyCoord(x=xyz[0], y=xyz[1], z=xyz[2], representation_type="cartesian")
    ctr = SkyCoord(ctr.spherical.lon, ctr.spherical.lat, frame="icrs")
    h["RA_OBJ"] = (float(ctr.ra.deg), "[deg] mean position of the region's pixels")
    h["DEC_OBJ"] = (float(ctr.dec.deg), "[deg] mean position of the region's pixels")


def write_spectrum(
    Z: xr.DataArray,
    region: Any,
    path,
    sigma=None,
    draws=None,
    overwrite: bool = False,
    *,
    exposure: float = 1.0,
    area: float = 1.0,
    telescope: str = "XFUSION",
    instrument: str = "FUSED",
    obs_id: int = 0,
) -> dict[str, str]:
    r"""Write the spectrum of a region of a fused cube as OGIP PHA + RMF + ARF files.

    Parameters
    ----------
    Z : xarray.DataArray
        The fused cube (energy, y, x), photons cm⁻² s⁻¹ per voxel.
    region : mask, pixel list, (ra, dec, radius_arcsec), regions.SkyRegion / PixelRegion
        The pixels summed (:func:`xfusion.regions.region_mask`); sky regions need Z's WCS.
    path : str or path-like
        The PHA file; the RMF and ARF are written beside it with suffixes ``.rmf``, ``.arf``
        (:func:`spectrum_paths`), named in ``RESPFILE`` / ``ANCRFILE`` without directory.
    sigma : array_like or DataArray (energy, y, x), optional
        Per-voxel standard errors; the region's error is
        :math:`(\sum_{p \in R} \sigma_{kp}^2)^{1/2}` (independent voxels).
    draws : DataArray (draw, energy, y, x) or array, optional
        Bootstrap refits; the error is :math:`\mathrm{std}_b \sum_{p\in R} Z^{*b}_{kp}`
        (ddof = 1; keeps the correlations between pixels). Give ``sigma`` or ``draws``, not
        both.
    overwrite : bool
        Replace existing files (all three are checked before any is written).
    exposure : float
        ``EXPOSURE`` :math:`T` (s) of the PHA, default 1.
    area : float
        The ARF's constant effective area :math:`A` (cm²), default 1. ``COUNTS`` are
        :math:`F_k T A`; exposure × ARF gives back :math:`F_k`.
    telescope, instrument : str
        ``TELESCOP`` / ``INSTRUME`` of the three files.
    obs_id : int
        ``OBS_ID`` (gammapy names the dataset after it).

    Returns
    -------
    dict
        ``{"pha": ..., "rmf": ..., "arf": ...}``, the paths written.

    Raises
    ------
    ExportError
        A bad cube (see :func:`write_fits_cube`), both ``sigma`` and ``draws``, errors of the
        wrong shape / non-finite / negative, fewer than 2 draws, a non-positive or non-finite
        ``exposure`` or ``area``, a ``path`` ending in ``.rmf`` / ``.arf``.
    xfusion.regions.RegionError
        A region that cannot be used (no pixel, outside the image, sky region without WCS).
    FileExistsError
        One of the three files exists and ``overwrite`` is False (none is written).

    Warns
    -----
    UserWarning
        Neither ``sigma`` nor ``draws``: the PHA has no ``STAT_ERR``, so a χ² fit has no
        errors to use.

    Notes
    -----
    PHA (``SPECTRUM``): ``CHANNEL`` (0…L-1, as EPIC and Resolve number theirs; gammapy
    reads an RMF's ``F_CHAN`` as 0-based whatever its ``TLMIN``), ``COUNTS`` (64-bit real,
    :math:`F_k T A`), ``STAT_ERR`` (with errors), ``QUALITY`` (0), ``BACKSCAL`` (1, as a
    column: gammapy reads it there); ``HDUCLASS = 'OGIP'``, ``HDUCLAS1 = 'SPECTRUM'``,
    ``HDUCLAS2 = 'TOTAL'``, ``HDUCLAS3 = 'COUNT'``, ``POISSERR = F``, ``EXPOSURE``,
    ``AREASCAL = 1``, ``RESPFILE``, ``ANCRFILE``, ``CORRFILE = 'none'``, ``OBS_ID``;
    ``RA_OBJ`` / ``DEC_OBJ`` (the mean position of the region's pixels) with a WCS;
    ``XF_NPIX`` the number of pixels, ``XF_AREA``, ``XF_ERR`` (how ``STAT_ERR`` was made).
    No ``BACKFILE`` keyword: gammapy would take even ``'none'`` for a file name, and XSPEC
    and Sherpa need none. The PHA also carries a copy of the RMF's ``EBOUNDS`` (gammapy reads
    the channel energies from the PHA). RMF: identity ``MATRIX`` on Z's bins, ``EBOUNDS`` =
    the bins, first channel 0 (:func:`write_rmf`); ARF: ``SPECRESP`` = ``area`` on Z's bins
    (:func:`write_arf`).
    """
    Z = _cube(Z)
    _check_spectrum_args(exposure, area, sigma, draws)
    paths = spectrum_paths(path)
    if not overwrite:
        there = [p for p in paths.values() if os.path.exists(p)]
        if there:
            raise FileExistsError(f"{', '.join(there)} exist(s); pass overwrite=True to "
                                  f"replace them")
    data = np.asarray(Z.values, dtype=float)
    _finite(data, "Z")
    mask = region_mask(Z, region)
    m = mask.values
    flux, err, how = _region_spectrum(Z, data, m, sigma, draws)
    lo, hi = sky.energy_edges(Z)
    L = lo.size
    scale = float(exposure) * float(area)

    # channels 0 … L-1 (as EPIC and Resolve): gammapy reads F_CHAN as 0-based whatever TLMIN says
    write_rmf(paths["rmf"], lo, hi, np.eye(L), lo, hi, first_channel=0, telescope=telescope,
              instrument=instrument, overwrite=overwrite)
    write_arf(paths["arf"], lo, hi, np.full(L, float(area)), telescope=telescope,
              instrument=instrument, overwrite=overwrite)

    spec = _pha_table(flux, err, scale)
    h = spec.header
    cards = _pha_cards(paths, L, int(m.sum()), err is not None, how, exposure=exposure,
                       area=area, telescope=telescope, instrument=instrument, obs_id=obs_id)
    with warnings.catch_warnings():  # a long file name leaves no room for its comment
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        for k, v, c in cards:
            h[k] = (v, c)
    if "ra" in mask.coords and "dec" in mask.coords:
        _region_centre(h, mask, m)
    h.add_comment("A fused photon flux F (photon cm-2 s-1 per channel), encoded as")
    h.add_comment("COUNTS = F x EXPOSURE x ARF area with an identity RMF. COUNTS are real:")
    h.add_comment("fit with chi-square on STAT_ERR, not a Poisson statistic.")
    eb = _ebounds(lo, hi, fmt="E", first=0)
    for k, v in (("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "EBOUNDS"),
                 ("CHANTYPE", "PI"), ("DETCHANS", L), ("HDUVERS", "1.2.0")):
        eb.header[k] = v
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = telescope
    primary.header["INSTRUME"] = instrument
    primary.header["CREATOR"] = "xfusion.io"
    write_atomic(fits.HDUList([primary, spec, eb]), paths["pha"], overwrite)
    return paths
