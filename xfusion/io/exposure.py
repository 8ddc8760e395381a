"""Exposure from the files: good time intervals, per-CCD live times and exposure maps.

Three things decide how long, and how well, each pixel of an observation was exposed:

* **Good time intervals** (GTIs): ``STDGTInn`` extensions of an EPIC event list (one per CCD
  ``nn``), ``GTI`` of a Resolve (or generic) one; tables of ``START``/``STOP`` times (s). Events
  outside them are not part of the observation.
* **Per-CCD live times**: an EPIC event list carries ``LIVETInn`` (live time, s) and ``ONTIMEnn``
  (the sum of CCD ``nn``'s GTIs, s) for every CCD; its global ``LIVETIME``/``ONTIME`` are those
  of the central CCD only. The exposure of an event is that of the CCD it fell on (``CCDNR``).
  Restricted to a time selection S, CCD ``c``'s exposure is

  .. math:: t_c(S) = |\\mathrm{GTI}_c \\cap S| \\cdot \\mathrm{LIVETI}_c / \\mathrm{ONTIME}_c,

  the selected good time times the CCD's live fraction.
* **Exposure maps** as the standard pipelines write them (XMM-SAS ``eexpmap``: seconds with the
  vignetting, bad pixels and chip gaps folded in, one image per energy band; Chandra
  ``mkexpmap``/``fluximage``: cm² s): :func:`read_expmap` reads one, :func:`expmap_on_grid`
  averages it over each pixel of Z's grid through the two WCS, and :func:`area_from_expmaps`
  turns one or several into the (energy, y, x) effective area of the forward model.

:func:`xfusion.io.read_events` and :func:`xfusion.io.from_files` use these; see
``docs/real_data.md`` ("Exposure, GTIs and exposure maps").
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence

import astropy.units as u
import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from ..problem import ProblemError
from ._fits import FileFormatError, fspath, hdu_names, open_fits, write_atomic
from .grid import as_wcs, pixel_scale

__all__ = [
    "merge_intervals", "intersect_intervals", "interval_length", "in_intervals",
    "read_gti", "file_gtis", "pixel_exposure",
    "read_expmap", "write_expmap", "expmap_on_grid", "area_from_expmaps",
    "EXPMAP_SECONDS_TOL", "EXPMAP_BAND_KEYS",
]

#: A map in seconds may exceed the events' exposure by at most this factor (a map made for a
#: longer time selection than the events', or a map in cm² s without ``BUNIT``, is refused or
#: warned about beyond it).
EXPMAP_SECONDS_TOL = 1.1
#: Header keywords tried, in this order, for an exposure map's energy band: ``(low, high,
#: unit)``. XMM-SAS products name it in PI channels (eV); other tools in keV.
EXPMAP_BAND_KEYS = (
    ("PI_MIN", "PI_MAX", "eV"), ("PIMIN", "PIMAX", "eV"),
    ("ENERG_LO", "ENERG_HI", "keV"), ("E_MIN", "E_MAX", "keV"), ("EMIN", "EMAX", "keV"),
    ("ELO", "EHI", "keV"),
)
_STDGTI = re.compile(r"STDGTI(\d\d)$")


# ---------------------------------------------------------------------------- intervals
def merge_intervals(intervals) -> np.ndarray:
    """Union of time intervals as sorted, disjoint ``[start, stop)`` rows.

    Parameters
    ----------
    intervals : array_like (n, 2)
        ``(start, stop)`` pairs (s); empty ones (``stop <= start``) are dropped.

    Returns
    -------
    ndarray (k, 2)
        Sorted by start, non-overlapping (touching intervals are joined).
    """
    a = np.asarray(intervals, dtype=float).reshape(-1, 2)
    a = a[a[:, 1] > a[:, 0]]
    if not a.size:
        return np.zeros((0, 2))
    a = a[np.argsort(a[:, 0], kind="stable")]
    reach = np.maximum.accumulate(a[:, 1])
    first = np.flatnonzero(np.r_[True, a[1:, 0] > reach[:-1]])
    return np.column_stack([a[first, 0], np.maximum.reduceat(a[:, 1], first)])


def intersect_intervals(a, b) -> np.ndarray:
    """Intersection of two unions of intervals, as sorted disjoint rows.

    ``a`` and ``b`` are merged first (:func:`merge_intervals`); each row of ``a`` is paired with
    the rows of ``b`` it overlaps (found by binary search), so the cost is linear in the number
    of overlaps.
    """
    a, b = merge_intervals(a), merge_intervals(b)
    j0 = np.searchsorted(b[:, 1], a[:, 0], side="right")  # first b ending after a starts
    j1 = np.searchsorted(b[:, 0], a[:, 1], side="left")  # b starting before a ends: < j1
    cnt = np.maximum(j1 - j0, 0)
    ia = np.repeat(np.arange(len(a)), cnt)
    jb = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt) + np.repeat(j0, cnt)
    lo = np.maximum(a[ia, 0], b[jb, 0])
    hi = np.minimum(a[ia, 1], b[jb, 1])
    ok = hi > lo
    return np.column_stack([lo[ok], hi[ok]])


def interval_length(intervals) -> float:
    """Total length (s) of a union of intervals, :math:`\\sum_k (\\mathrm{stop}_k -
    \\mathrm{start}_k)` after merging."""
    m = merge_intervals(intervals)
    return float((m[:, 1] - m[:, 0]).sum())


def in_intervals(t, intervals) -> np.ndarray:
    """Boolean mask: ``start <= t < stop`` for some row of ``intervals``."""
    g = merge_intervals(intervals)
    t = np.asarray(t, dtype=float)
    i = np.searchsorted(g[:, 0], t, side="right") - 1
    ok = i >= 0
    ok[ok] = t[ok] < g[i[ok], 1]
    return ok


def _gti_table(hdu, path: str) -> np.ndarray:
    """``START``/``STOP`` rows of a GTI table, checked (finite, ``STOP >= START``)."""
    names = [c.name.upper() for c in hdu.columns]
    missing = [c for c in ("START", "STOP") if c not in names]
    if missing:
        raise FileFormatError(f"{path}: GTI extension {hdu.name!r} has no column "
                              f"{' or '.join(missing)} (columns: {', '.join(names)})")
    if hdu.data is None or len(hdu.data) == 0:
        return np.zeros((0, 2))
    g = np.column_stack([np.asarray(hdu.data["START"], float),
                         np.asarray(hdu.data["STOP"], float)])
    if not np.isfinite(g).all():
        raise FileFormatError(f"{path}: GTI extension {hdu.name!r} has non-finite START/STOP")
    bad = g[:, 1] < g[:, 0]
    if bad.any():
        k = int(np.argmax(bad))
        raise FileFormatError(f"{path}: GTI extension {hdu.name!r} row {k} has STOP "
                              f"{float(g[k, 1])!r} < START {float(g[k, 0])!r}")
    return merge_intervals(g)


def read_gti(path, extension: str | int | None = None) -> np.ndarray:
    """Read good time intervals from a FITS file (a GTI file or an event list).

    Parameters
    ----------
    path : str or path-like
        The file.
    extension : str or int, optional
        The GTI table; default the first table named ``GTI``, ``STDGTI`` or ``STDGTInn`` (the
        union of all ``STDGTInn`` when there are several), else the first table with ``START``
        and ``STOP`` columns.

    Returns
    -------
    ndarray (k, 2)
        Sorted disjoint ``(start, stop)`` rows (s).

    Raises
    ------
    FileFormatError
        No such table, no ``START``/``STOP`` column, NaN, or ``STOP < START``.
    """
    path = fspath(path)
    with open_fits(path) as hdul:
        if extension is not None:
            try:
                return _gti_table(hdul[extension], path)
            except KeyError:
                raise FileFormatError(f"{path}: no extension {extension!r} (the file has "
                                      f"{hdu_names(hdul)})") from None
        gtis = file_gtis(hdul, path)
        if gtis:
            return gtis.get(None, merge_intervals(np.concatenate(list(gtis.values()))))
        for h in hdul[1:]:
            if isinstance(h, fits.BinTableHDU) and {"START", "STOP"} <= {
                    c.name.upper() for c in h.columns}:
                return _gti_table(h, path)
        raise FileFormatError(f"{path}: no GTI table (EXTNAME GTI, STDGTI or STDGTInn, or "
                              f"START/STOP columns); the file has {hdu_names(hdul)}")


def file_gtis(hdul: fits.HDUList, path: str) -> dict[int | None, np.ndarray]:
    """The GTIs an event file holds: ``{ccd: intervals}`` for ``STDGTInn`` extensions and
    ``{None: intervals}`` for a ``GTI`` or ``STDGTI`` extension (applying to every event)."""
    out: dict[int | None, np.ndarray] = {}
    for h in hdul[1:]:
        if not isinstance(h, fits.BinTableHDU):
            continue
        name = str(h.name).upper()
        m = _STDGTI.match(name)
        if m:
            out[int(m.group(1))] = _gti_table(h, path)
        elif name in ("GTI", "STDGTI") and None not in out:
            out[None] = _gti_table(h, path)
    return out


# ----------------------------------------------------------------- per-pixel exposure
def pixel_exposure(iy: np.ndarray, ix: np.ndarray, t_event: np.ndarray,
                   shape: Sequence[int]) -> tuple[np.ndarray | None, float]:
    """Per-pixel exposure from the exposure of each event's CCD.

    Each pixel takes the mean exposure of the events binned in it,
    :math:`t(p) = \\sum_{k \\in p} t_k / n(p)` (a pixel on a chip boundary gets the events'
    mix of its CCDs); a pixel without events takes that of the nearest pixel with events
    (Euclidean distance, :func:`scipy.ndimage.distance_transform_edt`).

    Parameters
    ----------
    iy, ix : int arrays (n,)
        Pixel of each event (inside ``shape``).
    t_event : float array (n,)
        Exposure (s) of each event's CCD.
    shape : (ny, nx)

    Returns
    -------
    (ndarray (ny, nx) or None, float)
        The map (None when every event has the same exposure), and the reference exposure: that
        of the CCD holding the most events.
    """
    t_event = np.asarray(t_event, dtype=float)
    vals, counts = np.unique(t_event, return_counts=True)
    t_ref = float(vals[np.argmax(counts)])
    if vals.size == 1:
        return None, t_ref
    ny, nx = (int(s) for s in shape)
    flat = np.asarray(iy) * nx + np.asarray(ix)
    n = np.bincount(flat, minlength=ny * nx).reshape(ny, nx)
    s = np.bincount(flat, weights=t_event, minlength=ny * nx).reshape(ny, nx)
    m = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    if (n == 0).any():
        idx = ndimage.distance_transform_edt(n == 0, return_distances=False, return_indices=True)
        m = m[idx[0], idx[1]]
    return m, t_ref


# ------------------------------------------------------------------------ exposure maps
_SECONDS = {"s", "sec", "secs", "second", "seconds"}


def _parse_unit(unit: str, where: str) -> tuple[str, float]:
    """``('s' | 'cm2 s', factor)``: the canonical unit of an exposure map given in ``unit`` and
    the factor that converts its values to it; refuses anything else."""
    key = str(unit).strip()
    if key.lower() in _SECONDS:
        return "s", 1.0
    q = None
    for text, fmt in ((key, "fits"), (key.replace("**", "").replace("^", ""), None)):
        try:
            q = u.Unit(text, format=fmt)
            break
        except ValueError:
            continue
    if q is None:
        raise FileFormatError(f"{where} = {unit!r} is not a unit; pass unit='s' or 'cm2 s'")
    for canon, target in (("s", u.s), ("cm2 s", u.cm**2 * u.s)):
        if q.is_equivalent(target):
            return canon, float(q.to(target))
    raise FileFormatError(f"{where} = {unit!r} is neither a time (s) nor an area × time (cm2 s)")


def _header_band(h, path: str) -> tuple[float, float] | None:
    """An exposure map's energy band (keV) from its header, or None."""
    for lo_k, hi_k, unit in EXPMAP_BAND_KEYS:
        if lo_k in h and hi_k in h:
            try:
                lo, hi = float(h[lo_k]), float(h[hi_k])
            except (TypeError, ValueError):
                raise FileFormatError(f"{path}: {lo_k} = {h[lo_k]!r}, {hi_k} = {h[hi_k]!r} are "
                                      f"not numbers; pass band=(lo, hi) keV") from None
            f = 1e-3 if unit == "eV" else 1.0
            return _checked_band((lo * f, hi * f), f"{path}: {lo_k}/{hi_k}")
    # data-subspace keywords (DSTYPn = 'PI', DSVALn = 'lo:hi', in eV for EPIC)
    for k in h:
        m = re.fullmatch(r"DSTYP(\d+)", k)
        if m and str(h[k]).strip().upper() in ("PI", "ENERGY"):
            val = str(h.get(f"DSVAL{m.group(1)}", ""))
            parts = val.split(":")
            if len(parts) == 2:
                try:
                    lo, hi = float(parts[0]), float(parts[1])
                except ValueError:
                    continue
                unit = str(h.get(f"DSUNI{m.group(1)}", "eV" if h[k].strip().upper() == "PI"
                                  else "keV")).strip().lower()
                f = 1e-3 if unit in ("ev", "chan", "channel") else 1.0
                return _checked_band((lo * f, hi * f), f"{path}: DSVAL{m.group(1)}")
    if "ENERGY" in h:
        try:
            e = float(h["ENERGY"])
        except (TypeError, ValueError):
            raise FileFormatError(f"{path}: ENERGY = {h['ENERGY']!r} is not a number") from None
        return _checked_band((e, e), f"{path}: ENERGY")
    return None


def _checked_band(band, where: str) -> tuple[float, float]:
    lo, hi = (float(b) for b in band)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise FileFormatError(f"{where}: energy band {lo!r}–{hi!r} keV is not a positive band "
                              f"with low <= high")
    return lo, hi


def read_expmap(path, *, band: Sequence[float] | None = None, unit: str | None = None,
                extension: str | int | None = None) -> xr.DataArray:
    """Read an exposure map (an image with a celestial WCS).

    Parameters
    ----------
    path : str or path-like
        The FITS file (``eexpmap``, ``mkexpmap``/``fluximage``, or any image of exposure).
    band : (low, high) keV, optional
        The map's energy band, overriding the header. Default from the header: the first of
        :data:`EXPMAP_BAND_KEYS` present (``PI_MIN``/``PI_MAX`` in eV, ``ENERG_LO``/``ENERG_HI``
        in keV, ...), else data-subspace keywords ``DSTYPn = 'PI'`` with ``DSVALn = 'lo:hi'`` (eV),
        else ``ENERGY`` (keV, monochromatic); None when none is present.
    unit : str, optional
        ``'s'`` (a map of seconds, vignetting included) or ``'cm2 s'`` (area × time), overriding
        ``BUNIT``. Without either the map is taken as seconds and checked against the events'
        exposure by :func:`area_from_expmaps`.
    extension : str or int, optional
        The image HDU; default the first 2-D image with data.

    Returns
    -------
    xarray.DataArray
        Dims ``('y', 'x')`` (the file's rows and columns), attrs ``wcs`` (header string),
        ``units`` (``'s'``, ``'cm2 s'``), ``unit_from`` (``'BUNIT'``, ``'argument'`` or
        ``'assumed'``), ``band`` ((low, high) keV, or None), ``filename``.

    Raises
    ------
    FileFormatError
        No 2-D image, no celestial WCS, NaN or negative values, a unit that is not a time or an
        area × time, a band that is not a positive ``low <= high``.
    """
    path = fspath(path)
    with open_fits(path) as hdul:
        hdu = _image_hdu(hdul, path, extension)
        data = np.asarray(hdu.data, dtype=float)
        h = hdu.header
        name = str(h.get("EXTNAME", hdu.name or "PRIMARY"))
        if data.ndim != 2:
            raise FileFormatError(f"{path}[{name}]: exposure map must be a 2-D image, got shape "
                                  f"{data.shape}")
        try:
            w = WCS(h).celestial
        except Exception as exc:  # astropy raises several kinds on malformed WCS keywords
            raise FileFormatError(f"{path}[{name}]: unreadable WCS ({exc})") from None
        if w.naxis != 2 or not w.has_celestial:
            raise FileFormatError(f"{path}[{name}]: exposure map has no celestial WCS "
                                  f"(CTYPE1/2 RA---/DEC--)")
        w.pixel_shape = (data.shape[1], data.shape[0])
        if unit is not None:
            (canon, f), src = _parse_unit(unit, f"{path}: unit="), "argument"
        elif str(h.get("BUNIT") or "").strip():
            (canon, f), src = _parse_unit(h["BUNIT"], f"{path}: exposure map unit BUNIT"), "BUNIT"
        else:
            canon, f, src = "s", 1.0, "assumed"
        data = data * f
        b = _checked_band(band, f"{path}: band=") if band is not None else _header_band(h, path)
    if not np.isfinite(data).all():
        raise FileFormatError(f"{path}[{name}]: exposure map has {int((~np.isfinite(data)).sum())}"
                              f" non-finite values")
    if (data < 0).any():
        raise FileFormatError(f"{path}[{name}]: exposure map has negative values (min "
                              f"{data.min():.6g})")
    return xr.DataArray(data, dims=("y", "x"), name="expmap", attrs={
        "wcs": w.to_header().tostring(sep="\n"), "units": canon, "unit_from": src,
        "band": None if b is None else tuple(b), "filename": path})


def _image_hdu(hdul: fits.HDUList, path: str, extension):
    if extension is not None:
        try:
            return hdul[extension]
        except KeyError:
            raise FileFormatError(f"{path}: no extension {extension!r} (the file has "
                                  f"{hdu_names(hdul)})") from None
    for h in hdul:
        if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.data is not None:
            return h
    raise FileFormatError(f"{path}: no image HDU with data (HDUs: {hdu_names(hdul)})")


def write_expmap(path, image, wcs, *, unit: str = "s", band: Sequence[float] | None = None,
                 header: Mapping | None = None, overwrite: bool = False) -> str:
    """Write an exposure map as ``eexpmap`` does: a primary image with a celestial WCS,
    ``BUNIT`` and (``band``, keV) ``PI_MIN``/``PI_MAX`` in eV. Atomic; returns the path.

    ``header`` adds or (value None) removes keywords.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    hdu = fits.PrimaryHDU(img, header=as_wcs(wcs, "wcs").to_header())
    hdu.header["BUNIT"] = unit
    if band is not None:
        lo, hi = _checked_band(band, "band=")
        hdu.header["PI_MIN"] = (int(round(lo * 1000)), "[eV] low edge of the band")
        hdu.header["PI_MAX"] = (int(round(hi * 1000)), "[eV] high edge of the band")
    for k, v in dict(header or {}).items():
        if v is None:
            hdu.header.remove(k, ignore_missing=True)
        else:
            hdu.header[k] = v
    hdu.header["CREATOR"] = "xfusion.io"
    return write_atomic(fits.HDUList([hdu]), path, overwrite)


def _subsample(wZ: WCS, wm: WCS) -> int:
    """Sub-pixels per Z pixel side: at least 4, and at most half a map pixel wide."""
    z = min(pixel_scale(wZ))
    m = min(pixel_scale(wm))
    return int(max(4, np.ceil(2 * z / m)))


def expmap_on_grid(expmap, wcs, shape: Sequence[int], subsample: int | None = None
                   ) -> np.ndarray:
    """An exposure map averaged over each pixel of a target grid (Z's).

    Exposure is a property of each sky position (not a flux), so a target pixel takes the mean
    of the map over its area: :math:`\\bar e(p) = \\frac{1}{s^2} \\sum_{a, b < s}
    e(\\mathrm{map\\ pixel\\ at\\ } q_{ab})`, with :math:`q_{ab}` the centres of an
    :math:`s \\times s` sub-grid of ``p`` carried to the map's pixels through both WCS (any
    rotation, scale or projection) and the map taken constant over each of its pixels.

    Parameters
    ----------
    expmap : xarray.DataArray or path
        From :func:`read_expmap` (or a path to read).
    wcs : WCS, Header or str
        The target grid's celestial WCS.
    shape : (ny, nx)
        The target grid's shape.
    subsample : int, optional
        ``s``; default enough for sub-pixels at most half a map pixel wide (at least 4).

    Returns
    -------
    ndarray (ny, nx)
        The mean exposure (the map's unit).

    Raises
    ------
    ProblemError
        A target grid that reaches beyond the map (its exposure there is unknown).
    """
    if not isinstance(expmap, xr.DataArray):
        expmap = read_expmap(expmap)
    where = str(expmap.attrs.get("filename", "exposure map"))
    wm = as_wcs(expmap.attrs["wcs"], f"{where} WCS")
    wZ = as_wcs(wcs, "wcs")
    ny, nx = (int(s) for s in shape)
    s = int(subsample) if subsample is not None else _subsample(wZ, wm)
    if s < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    off = (np.arange(s) + 0.5) / s - 0.5
    sx = (np.arange(nx)[:, None] + off[None, :]).ravel()  # (nx * s,)
    sy = (np.arange(ny)[:, None] + off[None, :]).ravel()
    px, py = np.meshgrid(sx, sy)  # (ny * s, nx * s)
    lon, lat = wZ.wcs_pix2world(px.ravel(), py.ravel(), 0)
    mx, my = wm.wcs_world2pix(lon, lat, 0)
    jx, jy = np.floor(mx + 0.5), np.floor(my + 0.5)
    my_n, mx_n = expmap.shape
    inside = np.isfinite(jx) & np.isfinite(jy) & (jx >= 0) & (jx < mx_n) & (jy >= 0) & (jy < my_n)
    if not inside.all():
        out = int((~inside).sum())
        raise ProblemError(
            f"{where}: Z's {ny}×{nx} grid reaches beyond the exposure map ({my_n}×{mx_n} "
            f"pixels): {out} of {inside.size} sub-pixel centres fall outside it, where the "
            f"exposure is unknown; make the map on an image that covers the field")
    vals = np.asarray(expmap.values, float)[jy.astype(np.int64), jx.astype(np.int64)]
    return vals.reshape(ny, s, nx, s).mean(axis=(1, 3))


def _band_area(arf, band: tuple[float, float], where: str) -> float:
    """The ARF's mean over ``band`` (overlap-weighted), or its value at a monochromatic band."""
    lo, hi = band
    a = np.asarray(arf.values, float)
    alo, ahi = np.asarray(arf["energy_lo"].values, float), np.asarray(arf["energy_hi"].values,
                                                                      float)
    if lo < alo[0] - 1e-9 or hi > ahi[-1] + 1e-9:
        raise FileFormatError(f"{where}: the band {lo:.6g}–{hi:.6g} keV of a cm2 s exposure map "
                              f"is not covered by the ARF ({alo[0]:.6g}–{ahi[-1]:.6g} keV)")
    if hi <= lo:
        return float(np.interp(lo, 0.5 * (alo + ahi), a))
    w = np.clip(np.minimum(ahi, hi) - np.maximum(alo, lo), 0, None)
    return float((w * a).sum() / w.sum())


def area_from_expmaps(expmaps, area, exposure: float, energy_edges: Sequence[float], wcs,
                      shape: Sequence[int], arf=None, subsample: int | None = None,
                      name: str = "arf_X") -> np.ndarray:
    """The (energy, y, x) effective area from exposure maps.

    With :math:`e_b(p)` map ``b`` averaged over Z's pixel ``p`` (:func:`expmap_on_grid`), its
    relative exposure is :math:`r_b(p) = e_b(p) / t` for a map in seconds and
    :math:`r_b(p) = e_b(p) / (t \\bar A_b)` for a map in cm² s, :math:`\\bar A_b` the ARF
    averaged over the map's band, and

    .. math:: A(E, p) = A(E) \\cdot \\sum_b w_b(E)\\, r_b(p),

    :math:`w_b(E)` linear interpolation in energy between the bands' centres (constant below
    the first and above the last; one map: :math:`w = 1`). Then
    :math:`t \\cdot A(E, p)` is the map's exposure times the on-axis area: the ARF must *not*
    include vignetting (the map holds it). A pixel the map does not expose gets area 0.

    Parameters
    ----------
    expmaps : path, DataArray, or a sequence of them
        Maps from :func:`read_expmap`; several need an energy band each (distinct centres).
    area : array_like (L,)
        The ARF on Z's energy grid (cm², :func:`xfusion.io.area_on_grid`).
    exposure : float
        The exposure ``t`` (s) the problem carries (``X.attrs['exposure']``).
    energy_edges : array_like (L + 1,)
        Z's energy edges (keV).
    wcs, shape :
        Z's grid.
    arf : xarray.DataArray, optional
        The ARF on its own energy grid (``energy_lo``/``energy_hi``), to average over a cm² s
        map's band; needed for such maps.
    subsample : int, optional
        Passed to :func:`expmap_on_grid`.
    name : str
        The variable, for messages.

    Returns
    -------
    ndarray (L, ny, nx)
        cm².

    Raises
    ------
    FileFormatError
        Several maps without bands or with the same band centre; a map without ``BUNIT`` whose
        values exceed :data:`EXPMAP_SECONDS_TOL` times the exposure (a cm² s map?); a cm² s map
        without an ARF covering its band.
    ProblemError
        A grid beyond a map, or maps that expose no pixel of Z's grid.

    Warns
    -----
    UserWarning
        A map in seconds whose values exceed :data:`EXPMAP_SECONDS_TOL` times the exposure (made
        for a longer time selection than the events?).
    """
    maps = [expmaps] if isinstance(expmaps, (str, os.PathLike, xr.DataArray)) else list(expmaps)
    if not maps:
        raise ValueError(f"{name}: no exposure map given")
    maps = [m if isinstance(m, xr.DataArray) else read_expmap(m) for m in maps]
    where = [str(m.attrs.get("filename", f"exposure map {i}")) for i, m in enumerate(maps)]
    t = float(exposure)
    E = np.asarray(energy_edges, float)
    Ec = 0.5 * (E[1:] + E[:-1])
    area = np.asarray(area, float)
    if area.shape != (Ec.size,):
        raise ProblemError(f"{name}: exposure maps need a 1-D ARF on Z's {Ec.size} energies, got "
                           f"shape {area.shape} (an (energy, y, x) area would count the exposure "
                           f"twice)")
    bands = [m.attrs.get("band") for m in maps]
    if len(maps) > 1 and any(b is None for b in bands):
        k = bands.index(None)
        raise FileFormatError(f"{where[k]}: several exposure maps, but this one has no energy band "
                              f"(PI_MIN/PI_MAX, ...); pass read_expmap(path, band=(lo, hi))")
    ratios = []
    for m, w, b in zip(maps, where, bands, strict=True):
        e = expmap_on_grid(m, wcs, shape, subsample)
        if m.attrs["units"] == "cm2 s":
            if arf is None or "energy_lo" not in getattr(arf, "coords", {}):
                raise FileFormatError(f"{w}: a cm2 s exposure map needs the ARF on its own energy "
                                      f"grid (a file or read_arf's DataArray) to divide by its "
                                      f"band-averaged area")
            if b is None:
                b = (float(E[0]), float(E[-1]))
            r = e / (t * _band_area(arf, b, w))
        else:
            peak = float(np.asarray(m.values).max())
            if peak > EXPMAP_SECONDS_TOL * t:
                msg = (f"{w}: exposure map values reach {peak:.6g} s, above "
                       f"{EXPMAP_SECONDS_TOL:g} × the events' exposure {t:.6g} s")
                if m.attrs.get("unit_from") == "assumed":
                    raise FileFormatError(msg + "; the map has no BUNIT: if it is in cm2 s, pass "
                                                "read_expmap(path, unit='cm2 s')")
                warnings.warn(msg + " (made for a longer time selection than the events?)",
                              UserWarning, stacklevel=3)
            r = e / t
        ratios.append(r)
    if len(maps) == 1:
        rel = ratios[0][None]
    else:
        centres = np.array([0.5 * (lo + hi) for lo, hi in bands])
        if np.unique(centres).size != centres.size:
            raise FileFormatError(f"{', '.join(where)}: exposure maps with the same band centre "
                                  f"({centres.tolist()} keV)")
        order = np.argsort(centres)
        centres = centres[order]
        R = np.stack([ratios[i] for i in order])
        W = np.stack([np.interp(Ec, centres, np.eye(len(centres))[b])
                      for b in range(len(centres))], axis=1)  # (L, B)
        rel = np.tensordot(W, R, axes=1)
    if not rel.any():
        raise ProblemError(f"{', '.join(where)}: the exposure map(s) are zero everywhere on Z's "
                           f"grid")
    return area[:, None, None] * np.broadcast_to(rel, (Ec.size,) + tuple(rel.shape[1:]))
