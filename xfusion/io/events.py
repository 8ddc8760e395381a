"""Event lists (FITS ``EVENTS`` tables) in, counts cubes (energy, y, x) out — and simulated
event lists out, so that tests and examples can exercise the same path as archive files.

Three layouts are understood:

``'epic'`` — XMM-Newton EPIC (pn, MOS1, MOS2) as produced by the SAS (``epchain``/``emchain``):
    ``X``, ``Y`` sky coordinates in 0.05″ units whose celestial WCS is given by the ``REFXCTYP``,
    ``REFXCRPX``, ``REFXCRVL``, ``REFXCDLT`` keywords and their ``REFY*`` twins (or the column
    keywords ``TCTYPn``, ``TCRPXn``, ``TCRVLn``, ``TCDLTn``); ``PI`` in eV; ``PATTERN``; ``FLAG``.
``'resolve'`` — XRISM Resolve: ``PIXEL`` (0–35) of the 6×6 microcalorimeter array, ``PI`` in
    0.5 eV channels, ``ITYPE`` (event grade: 0 Hp, 1 Mp, 2 Ms, 3 Lp, 4 Ls).
``'generic'`` — any table: name the x, y and energy columns, their WCS and units.

The counts cube is a :class:`xarray.DataArray` with dims ``('energy', 'y', 'x')``, energy bin
centres and edges (``energy_lo``, ``energy_hi``, keV) as coordinates, ``y``/``x`` as offsets in
arcsec from the image centre, and attrs ``wcs`` (celestial FITS header string of the image),
``exposure`` (s), ``exposure_keyword``, ``pixel_size`` (arcsec), ``telescope``, ``instrument``,
``filename`` and event counts before/after selection.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS

from ._fits import (
    FileFormatError,
    column,
    column_index,
    column_unit,
    fspath,
    get_table,
    header_str,
    open_fits,
    to_unit,
    write_atomic,
)
from .grid import as_wcs, grid_rotation, make_wcs, offsets, pixel_scale

__all__ = [
    "read_events",
    "write_events",
    "detect_instrument",
    "RESOLVE_PIXEL_MAP",
    "RESOLVE_PIXEL_PITCH",
    "RESOLVE_CHANNEL_WIDTH",
    "EPIC_SKY_PIXEL",
    "FLAG_ALL",
]

#: EPIC sky pixel (``X``, ``Y`` columns) in arcsec.
EPIC_SKY_PIXEL = 0.05
#: Reference pixel of the EPIC sky coordinates used by :func:`write_events` (as in SAS products).
EPIC_REF_PIXEL = 25921.0
#: Resolve ``PI`` channel width in keV (0.5 eV).
RESOLVE_CHANNEL_WIDTH = 0.0005
#: Resolve pixel pitch on the sky (arcsec), used when the array's WCS is built from
#: ``RA_NOM``/``DEC_NOM``/``PA_NOM``. Pass ``pixel_size=`` or ``wcs=`` to use another value.
RESOLVE_PIXEL_PITCH = 30.0
#: ``flag_mask`` meaning "every bit": keep only ``FLAG == 0`` events.
FLAG_ALL = -1

#: Default Resolve pixel map: ``RESOLVE_PIXEL_MAP[iy, ix]`` is the ``PIXEL`` number at detector
#: position ``DETY = iy + 1``, ``DETX = ix + 1`` (row 0 at the bottom, as in a FITS image).
#: Modelled on the published Hitomi-SXS / XRISM-Resolve layout, with the calibration pixel 12 in
#: a corner; the authoritative map is the instrument's CALDB (teldef) — check it against your
#: CALDB and pass ``pixel_map=`` to :func:`read_events` when it differs.
RESOLVE_PIXEL_MAP = np.array([
    [12, 11, 9, 19, 21, 23],
    [14, 13, 10, 20, 22, 24],
    [16, 15, 17, 18, 25, 26],
    [8, 7, 0, 35, 33, 34],
    [6, 4, 2, 28, 31, 32],
    [5, 3, 1, 27, 29, 30],
])[::-1].copy()

_EXPOSURE_KEYS = ("EXPOSURE", "LIVETIME", "ONTIME")


def detect_instrument(header) -> str:
    """``'epic'``, ``'resolve'`` or ``'generic'`` from ``TELESCOP``/``INSTRUME``."""
    tel = str(header.get("TELESCOP", "")).upper()
    ins = str(header.get("INSTRUME", "")).upper()
    if ins.startswith(("EPN", "EMOS")) or (tel == "XMM" and ins.startswith("E")):
        return "epic"
    if "RESOLVE" in ins:
        return "resolve"
    return "generic"


def _exposure(path: str, headers, exposure: float | None) -> tuple[float, str]:
    if exposure is not None:
        return float(exposure), "user"
    for key in _EXPOSURE_KEYS:
        for h in headers:
            if h is not None and key in h and float(h[key]) > 0:
                return float(h[key]), key
    # EPIC: per-CCD LIVETInn / ONTIMEnn keywords; take the largest (the aim-point CCD)
    for pat in (r"LIVETI\d\d", r"ONTIME\d\d"):
        vals = [(k, float(v)) for h in headers if h is not None for k, v in h.items()
                if re.fullmatch(pat, k) and float(v) > 0]
        if vals:
            k, v = max(vals, key=lambda kv: kv[1])
            return v, k
    raise FileFormatError(
        f"{path}: no exposure keyword ({', '.join(_EXPOSURE_KEYS)}, LIVETInn or ONTIMEnn) in the "
        f"EVENTS or primary header; pass exposure= (seconds)"
    )


def _column_wcs(hdu: fits.BinTableHDU, xcol: str, ycol: str, path: str) -> WCS:
    """Celestial WCS of the (x, y) column values from REFX*/REFY* or TC*n keywords."""
    h = hdu.header
    out = {}
    for axis, col, ref in (("x", xcol, "REFX"), ("y", ycol, "REFY")):
        n = column_index(hdu, col)
        keys = {}
        for name in ("CTYP", "CRPX", "CRVL", "CDLT"):
            for k in (f"T{name}{n}", f"{ref}{name}"):
                if k in h:
                    keys[name] = h[k]
                    break
        missing = [k for k in ("CTYP", "CRPX", "CRVL", "CDLT") if k not in keys]
        if missing:
            raise FileFormatError(
                f"{path}: no sky WCS for column {col!r}: missing "
                f"{', '.join(f'T{m}{n} / {ref}{m}' for m in missing)}; pass event_wcs="
            )
        out[axis] = keys
    w = WCS(naxis=2)
    w.wcs.ctype = [out["x"]["CTYP"], out["y"]["CTYP"]]
    w.wcs.crpix = [float(out["x"]["CRPX"]), float(out["y"]["CRPX"])]
    w.wcs.crval = [float(out["x"]["CRVL"]), float(out["y"]["CRVL"])]
    w.wcs.cdelt = [float(out["x"]["CDLT"]), float(out["y"]["CDLT"])]
    if not w.has_celestial:
        raise FileFormatError(f"{path}: columns {xcol!r}, {ycol!r} have WCS types "
                              f"{list(w.wcs.ctype)}, not celestial")
    return w


def _energy_keV(hdu, col: str, path: str, layout: str, energy_unit: str | None) -> np.ndarray:
    raw = np.asarray(column(hdu, col, path))
    unit = energy_unit or column_unit(hdu, col)
    chan = unit is None or unit.strip().lower() in ("chan", "channel", "channels", "adu")
    if layout == "epic" and chan:
        return (raw.astype(float) + 0.5) * 1e-3  # PI in eV: centre of its 1 eV channel
    if layout == "resolve" and chan:
        return (raw.astype(float) + 0.5) * RESOLVE_CHANNEL_WIDTH
    if chan:
        raise FileFormatError(f"{path}: energy column {col!r} has no energy unit (TUNIT "
                              f"{unit!r}); pass energy_unit= ('eV' or 'keV')")
    return to_unit(raw.astype(float), unit, "keV", None, path, f"column {col!r}")


def _edges(energy_edges) -> np.ndarray:
    e = np.asarray(energy_edges, dtype=float)
    if e.ndim != 1 or e.size < 2 or (np.diff(e) <= 0).any() or not np.isfinite(e).all():
        raise ValueError("energy_edges must be a 1-D increasing array of at least 2 edges (keV)")
    return e


def _cube(counts: np.ndarray, edges: np.ndarray, w: WCS, shape, step: float, attrs: dict,
          name: str) -> xr.DataArray:
    ny, nx = shape
    coords = {
        "energy": ("energy", 0.5 * (edges[1:] + edges[:-1]), {"units": "keV"}),
        "energy_lo": ("energy", edges[:-1], {"units": "keV"}),
        "energy_hi": ("energy", edges[1:], {"units": "keV"}),
        "y": ("y", offsets(ny, step), {"units": "arcsec"}),
        "x": ("x", offsets(nx, step), {"units": "arcsec"}),
    }
    w = w.deepcopy()
    w.pixel_shape = (nx, ny)
    attrs = {**attrs, "wcs": header_str(w.to_header()), "pixel_size": float(step),
             "rotation": grid_rotation(w), "units": "counts"}
    return xr.DataArray(counts, dims=("energy", "y", "x"), coords=coords, attrs=attrs, name=name)


def _bin(iy: np.ndarray, ix: np.ndarray, ie: np.ndarray, shape3) -> np.ndarray:
    L, ny, nx = shape3
    flat = (ie * ny + iy) * nx + ix
    return np.bincount(flat, minlength=L * ny * nx).reshape(L, ny, nx)


def read_events(
    path,
    instrument: str | None = None,
    *,
    energy_edges: Sequence[float],
    pixel_size: float | None = None,
    shape: Sequence[int] | None = None,
    centre: Sequence[float] | None = None,
    wcs=None,
    pattern_max: int | None | str = "default",
    flag_mask: int | None = FLAG_ALL,
    itype: Sequence[int] | None = (0,),
    exclude_pixels: Sequence[int] = (12,),
    pixel_map: np.ndarray | Mapping[int, tuple[int, int]] | None = None,
    x_col: str = "X",
    y_col: str = "Y",
    energy_col: str = "PI",
    energy_unit: str | None = None,
    event_wcs=None,
    exposure: float | None = None,
    extension: str = "EVENTS",
) -> xr.DataArray:
    """Read an event list and bin it into a counts cube (energy, y, x).

    Parameters
    ----------
    path : str or path-like
        The event file.
    instrument : {'epic', 'resolve', 'generic'} or None
        Layout; None detects it from ``TELESCOP``/``INSTRUME`` (anything not recognised as EPIC
        or Resolve is read as 'generic').
    energy_edges : array_like (n + 1,)
        Energy bin edges (keV). An event falls in bin ``i`` if ``lo_i <= E < hi_i``, with ``E``
        the centre of its PI channel (``(PI + 0.5)`` eV for EPIC, ``(PI + 0.5) · 0.5`` eV for
        Resolve); events outside are dropped.
    pixel_size : float, optional
        EPIC / generic: image pixel size in arcsec (when ``wcs`` is not given).
        Resolve: pixel pitch for a WCS built from ``RA_NOM``/``DEC_NOM``/``PA_NOM`` (default
        :data:`RESOLVE_PIXEL_PITCH`).
    shape : (ny, nx), optional
        EPIC / generic image shape. Default: the smallest odd square holding every selected event.
    centre : (ra, dec) deg, optional
        EPIC / generic image centre (tangent point of a north-up TAN grid). Default: the event
        WCS reference point (``REFXCRVL``, ``REFYCRVL``).
    wcs : WCS, Header or str, optional
        EPIC / generic: celestial WCS of the output image (any orientation; ``shape`` from its
        ``pixel_shape`` if not given). Resolve: the WCS of the 6×6 array image (pixel
        ``(ix + 1, iy + 1)`` is detector position ``DETX = ix + 1``, ``DETY = iy + 1``); default
        built from ``RA_NOM``, ``DEC_NOM`` and ``PA_NOM`` (taken as the angle of the array's +y
        axis east of north — check it against your teldef) with ``pixel_size``.
    pattern_max : int, None or 'default'
        EPIC: keep ``PATTERN <= pattern_max``. 'default': 4 for pn (singles and doubles, the
        recommended spectral selection), 12 for MOS. None: no selection.
    flag_mask : int or None
        EPIC: keep events with ``FLAG & flag_mask == 0``. The default :data:`FLAG_ALL` keeps
        ``FLAG == 0`` (the strictest standard selection); pass the SAS ``#XMMEA_EP``/``#XMMEA_EM``
        bit mask from your SAS version for those selections; None: no selection.
    itype : sequence of int or None
        Resolve: grades to keep (default ``(0,)``, high-resolution primaries Hp). None: all.
    exclude_pixels : sequence of int
        Resolve: pixels to drop (default ``(12,)``, the calibration pixel). Their positions in the
        cube are flagged ``False`` in the ``observed`` coordinate.
    pixel_map : (6, 6) int array or {pixel: (iy, ix)}, optional
        Resolve pixel layout; default :data:`RESOLVE_PIXEL_MAP`.
    x_col, y_col, energy_col : str
        Generic (and EPIC) column names.
    energy_unit : str, optional
        Unit of the energy column when its ``TUNIT`` is missing or wrong ('eV', 'keV').
    event_wcs : WCS, Header or str, optional
        Generic: celestial WCS of the (x, y) column values, with pixel coordinate = column value
        (FITS, 1-based convention); default from ``TC*n``/``REF*`` keywords.
    exposure : float, optional
        Exposure (s), overriding the header (``EXPOSURE``, ``LIVETIME``, ``ONTIME``, then the
        largest ``LIVETInn``/``ONTIMEnn``).
    extension : str
        Name of the events table.

    Returns
    -------
    xarray.DataArray
        Counts (int64), dims ``('energy', 'y', 'x')``; see the module docstring for coords and
        attrs. Resolve cubes have a boolean ``observed`` (y, x) coordinate.

    Raises
    ------
    FileFormatError
        Missing extension or column, wrong units, no sky WCS, no exposure, an empty event list,
        or no event left after selection (the message gives the count after each cut).
    """
    path = fspath(path)
    edges = _edges(energy_edges)
    with open_fits(path) as hdul:
        hdu = get_table(hdul, path, (extension,), f"{extension} (event list)")
        h = hdu.header
        prim = hdul[0].header
        layout = (instrument or detect_instrument(h if "INSTRUME" in h else prim)).lower()
        if layout not in ("epic", "resolve", "generic"):
            raise ValueError(f"instrument must be 'epic', 'resolve', 'generic' or None, "
                             f"got {instrument!r}")
        n_all = 0 if hdu.data is None else len(hdu.data)
        if n_all == 0:
            raise FileFormatError(f"{path}: the event list {hdu.name!r} is empty (no events)")
        t_exp, exp_key = _exposure(path, (h, prim), exposure)
        meta = {
            "telescope": str(h.get("TELESCOP", prim.get("TELESCOP", ""))),
            "instrument": str(h.get("INSTRUME", prim.get("INSTRUME", ""))),
            "filename": path, "layout": layout, "exposure": t_exp, "exposure_keyword": exp_key,
            "n_events": int(n_all),
        }
        ecol = "PI" if layout in ("epic", "resolve") else energy_col
        energy = _energy_keV(hdu, ecol, path, layout, energy_unit)
        keep = np.ones(n_all, bool)
        cuts = []
        if layout == "epic":
            ins = meta["instrument"].upper()
            if pattern_max == "default":
                pattern_max = 4 if ins.startswith("EPN") else 12
            if pattern_max is not None:
                keep &= np.asarray(column(hdu, "PATTERN", path)) <= int(pattern_max)
                cuts.append((f"PATTERN<={pattern_max}", int(keep.sum())))
            if flag_mask is not None:
                flag = np.asarray(column(hdu, "FLAG", path)).astype(np.int64)
                keep &= (flag & int(flag_mask)) == 0 if flag_mask != FLAG_ALL else flag == 0
                cuts.append(("FLAG==0" if flag_mask == FLAG_ALL else f"FLAG&{flag_mask:#x}==0",
                             int(keep.sum())))
        if layout == "resolve":
            pix = np.asarray(column(hdu, "PIXEL", path)).astype(int)
            if itype is not None:
                keep &= np.isin(np.asarray(column(hdu, "ITYPE", path)).astype(int), list(itype))
                cuts.append((f"ITYPE in {tuple(itype)}", int(keep.sum())))
            if len(exclude_pixels):
                keep &= ~np.isin(pix, list(exclude_pixels))
                cuts.append((f"PIXEL not in {tuple(exclude_pixels)}", int(keep.sum())))
        ie = np.searchsorted(edges, energy, side="right") - 1
        keep &= (ie >= 0) & (ie < edges.size - 1)
        cuts.append((f"{edges[0]:g} <= E < {edges[-1]:g} keV", int(keep.sum())))
        if not keep.any():
            raise FileFormatError(
                f"{path}: no events left after selection ("
                + ", ".join(f"{c}: {n}" for c, n in cuts) + f", of {n_all})"
            )
        meta["selection"] = "; ".join(c for c, _ in cuts)
        meta["n_selected"] = int(keep.sum())

        if layout == "resolve":
            return _resolve_cube(path, h, prim, pix[keep], ie[keep], edges, meta, wcs,
                                 pixel_size, pixel_map, exclude_pixels)
        xs = np.asarray(column(hdu, x_col if layout == "generic" else "X", path), float)[keep]
        ys = np.asarray(column(hdu, y_col if layout == "generic" else "Y", path), float)[keep]
        ew = (as_wcs(event_wcs, "event_wcs") if event_wcs is not None else
              _column_wcs(hdu, x_col if layout == "generic" else "X",
                          y_col if layout == "generic" else "Y", path))
    ie = ie[keep]
    lon, lat = ew.wcs_pix2world(xs, ys, 1)
    if wcs is not None:
        tw = as_wcs(wcs)
        if shape is None:
            if tw.pixel_shape is None:
                raise ValueError("shape= is needed when wcs has no pixel_shape (NAXIS1/2)")
            shape = (tw.pixel_shape[1], tw.pixel_shape[0])
    else:
        if pixel_size is None:
            raise ValueError("pixel_size= (arcsec) or wcs= is needed to bin EPIC/generic events")
        c = centre if centre is not None else tuple(ew.wcs.crval)
        if shape is None:
            probe = make_wcs(c, pixel_size, (1, 1))
            px, py = probe.wcs_world2pix(lon, lat, 0)
            half = int(np.ceil(max(np.abs(px).max(), np.abs(py).max()) + 0.5))
            shape = (2 * half + 1, 2 * half + 1)
        tw = make_wcs(c, pixel_size, shape)
    ny, nx = (int(s) for s in shape)
    px, py = tw.wcs_world2pix(lon, lat, 0)
    ix, iy = np.floor(px + 0.5).astype(np.int64), np.floor(py + 0.5).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    meta["n_binned"] = int(inside.sum())
    if not inside.any():
        raise FileFormatError(f"{path}: none of the {meta['n_selected']} selected events falls "
                              f"in the {ny}×{nx} image (check centre/wcs)")
    counts = _bin(iy[inside], ix[inside], ie[inside], (edges.size - 1, ny, nx))
    sy, sx = pixel_scale(tw)
    if abs(sy - sx) > 1e-6 * sx:
        warnings.warn(f"{path}: non-square pixels ({sy:g}″ × {sx:g}″); y/x offsets use x's",
                      UserWarning, stacklevel=2)
    return _cube(counts, edges, tw, (ny, nx), sx, meta, "counts")


def _pixel_positions(pixel_map) -> dict[int, tuple[int, int]]:
    if pixel_map is None:
        pixel_map = RESOLVE_PIXEL_MAP
    if isinstance(pixel_map, Mapping):
        return {int(k): (int(v[0]), int(v[1])) for k, v in pixel_map.items()}
    pm = np.asarray(pixel_map)
    if pm.ndim != 2:
        raise ValueError(f"pixel_map must be a 2-D array of pixel numbers, got shape {pm.shape}")
    return {int(pm[iy, ix]): (iy, ix) for iy in range(pm.shape[0]) for ix in range(pm.shape[1])}


def _resolve_cube(path, h, prim, pix, ie, edges, meta, wcs, pixel_size, pixel_map,
                  exclude_pixels) -> xr.DataArray:
    pos = _pixel_positions(pixel_map)
    ny = max(p[0] for p in pos.values()) + 1
    nx = max(p[1] for p in pos.values()) + 1
    unknown = np.setdiff1d(np.unique(pix), list(pos))
    if unknown.size:
        raise FileFormatError(f"{path}: PIXEL values {unknown.tolist()} are not in the pixel map "
                              f"(pixels {min(pos)}..{max(pos)})")
    lut_y = np.zeros(max(pos) + 1, np.int64)
    lut_x = np.zeros(max(pos) + 1, np.int64)
    for p, (iy, ix) in pos.items():
        lut_y[p], lut_x[p] = iy, ix
    counts = _bin(lut_y[pix], lut_x[pix], ie, (edges.size - 1, ny, nx))
    observed = np.zeros((ny, nx), bool)
    for p, (iy, ix) in pos.items():
        observed[iy, ix] = p not in set(int(e) for e in exclude_pixels)
    if wcs is not None:
        w = as_wcs(wcs)
    else:
        keys = {}
        for k in ("RA_NOM", "DEC_NOM", "PA_NOM"):
            for hh in (h, prim):
                if k in hh:
                    keys[k] = float(hh[k])
                    break
        missing = [k for k in ("RA_NOM", "DEC_NOM", "PA_NOM") if k not in keys]
        if missing:
            raise FileFormatError(f"{path}: no {', '.join(missing)} keyword to place the Resolve "
                                  f"array on the sky; pass wcs= (the 6×6 array's WCS)")
        w = make_wcs((keys["RA_NOM"], keys["DEC_NOM"]), pixel_size or RESOLVE_PIXEL_PITCH,
                     (ny, nx), rotation=keys["PA_NOM"])
    meta["n_binned"] = int(ie.size)
    meta["excluded_pixels"] = [int(e) for e in exclude_pixels]
    sy, sx = pixel_scale(w)
    da = _cube(counts, edges, w, (ny, nx), sx, meta, "counts")
    return da.assign_coords(observed=(("y", "x"), observed,
                                      {"long_name": "pixel observed (False: excluded or absent)"}))


# ------------------------------------------------------------------------------------ writing
def write_events(
    path,
    instrument: str,
    *,
    energy=None,
    ra=None,
    dec=None,
    pixel=None,
    time=None,
    pattern=None,
    flag=None,
    itype=None,
    exposure: float,
    pointing: Sequence[float] | None = None,
    roll: float = 0.0,
    detector: str | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
    header: Mapping | None = None,
    overwrite: bool = False,
) -> str:
    """Write a simulated event list in the EPIC, Resolve or a generic layout, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    instrument : {'epic', 'resolve', 'generic'}
        Layout.
    energy : array_like (n,)
        Photon energies in keV (EPIC: ``PI = floor(1000 E)`` eV; Resolve:
        ``PI = floor(E / 0.0005)``).
    ra, dec : array_like (n,)
        EPIC: sky positions (deg), written as ``X``, ``Y`` in 0.05″ units on a TAN projection
        about ``pointing``.
    pixel : array_like (n,) of int
        Resolve: ``PIXEL`` (0–35).
    time, pattern, flag, itype : array_like (n,), optional
        ``TIME`` (default 0), EPIC ``PATTERN``/``FLAG`` (default 0), Resolve ``ITYPE`` (default 0).
    exposure : float
        Exposure (s): written as ``EXPOSURE``, ``LIVETIME`` and ``ONTIME``.
    pointing : (ra, dec) deg
        EPIC: sky-coordinate reference (``REFXCRVL``, ``REFYCRVL``); Resolve: ``RA_NOM``,
        ``DEC_NOM``. Default: mean of ``ra``/``dec`` (EPIC), required for Resolve.
    roll : float
        Resolve ``PA_NOM`` (deg).
    detector : str, optional
        ``INSTRUME``: default 'EPN' (EPIC) or 'RESOLVE'.
    columns : mapping, optional
        Generic: column name → array (all written as given); for EPIC/Resolve, extra columns.
    header : mapping, optional
        Extra keywords for the EVENTS header.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.
    """
    instrument = instrument.lower()
    cols: list[fits.Column] = []
    hdr: dict = {}
    n = None

    def arr(v, default, dtype):
        return np.full(n, default, dtype) if v is None else np.asarray(v).astype(dtype)

    if instrument in ("epic", "resolve"):
        if energy is None:
            raise ValueError("energy= (keV) is required")
        energy = np.asarray(energy, float)
        n = energy.size
    if instrument == "epic":
        if ra is None or dec is None:
            raise ValueError("EPIC events need ra= and dec= (deg)")
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        if pointing is None:
            pointing = (float(np.mean(ra)), float(np.mean(dec))) if n else (0.0, 0.0)
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crpix = [EPIC_REF_PIXEL, EPIC_REF_PIXEL]
        w.wcs.crval = [float(pointing[0]), float(pointing[1])]
        w.wcs.cdelt = [-EPIC_SKY_PIXEL / 3600, EPIC_SKY_PIXEL / 3600]
        x, y = w.wcs_world2pix(ra, dec, 1)
        cols = [
            fits.Column("TIME", "D", unit="s", array=arr(time, 0.0, float)),
            fits.Column("X", "J", array=np.round(x).astype(np.int32)),
            fits.Column("Y", "J", array=np.round(y).astype(np.int32)),
            fits.Column("PI", "I", unit="eV", array=np.floor(energy * 1000).astype(np.int16)),
            fits.Column("PATTERN", "B", array=arr(pattern, 0, np.uint8)),
            fits.Column("FLAG", "J", array=arr(flag, 0, np.int32)),
        ]
        for i, c in ((2, "X"), (3, "Y")):
            ref = "REFX" if c == "X" else "REFY"
            k = 0 if c == "X" else 1
            vals = {"CTYP": w.wcs.ctype[k], "CRPX": EPIC_REF_PIXEL, "CRVL": w.wcs.crval[k],
                    "CDLT": w.wcs.cdelt[k]}
            for name, v in vals.items():
                hdr[f"T{name}{i}"] = v
                hdr[f"{ref}{name}"] = v
        hdr.update({"TELESCOP": "XMM", "INSTRUME": detector or "EPN", "RADECSYS": "ICRS"})
    elif instrument == "resolve":
        if pixel is None:
            raise ValueError("Resolve events need pixel= (0-35)")
        if pointing is None:
            raise ValueError("Resolve events need pointing=(ra, dec) for RA_NOM/DEC_NOM")
        cols = [
            fits.Column("TIME", "D", unit="s", array=arr(time, 0.0, float)),
            fits.Column("PIXEL", "B", array=arr(pixel, 0, np.uint8)),
            fits.Column("PI", "J", unit="chan",
                        array=np.floor(energy / RESOLVE_CHANNEL_WIDTH).astype(np.int32)),
            fits.Column("ITYPE", "B", array=arr(itype, 0, np.uint8)),
        ]
        hdr.update({"TELESCOP": "XRISM", "INSTRUME": detector or "RESOLVE",
                    "RA_NOM": float(pointing[0]), "DEC_NOM": float(pointing[1]),
                    "PA_NOM": float(roll)})
    elif instrument == "generic":
        if not columns:
            raise ValueError("generic events need columns={name: array}")
    else:
        raise ValueError(f"instrument must be 'epic', 'resolve' or 'generic', got {instrument!r}")
    for name, values in (columns or {}).items():
        values = np.asarray(values)
        fmt = {"f": "D", "i": "K", "u": "K", "b": "L"}.get(values.dtype.kind)
        if fmt is None:
            raise ValueError(f"column {name!r}: unsupported dtype {values.dtype}")
        cols.append(fits.Column(name, fmt, array=values))
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    hdr.update({"EXPOSURE": float(exposure), "LIVETIME": float(exposure),
                "ONTIME": float(exposure), "HDUCLASS": "OGIP", "HDUCLAS1": "EVENTS"})
    hdr.update(dict(header or {}))
    for k, v in hdr.items():
        hdu.header[k] = v
    prim = fits.PrimaryHDU()
    for k in ("TELESCOP", "INSTRUME"):
        if k in hdr:
            prim.header[k] = hdr[k]
    prim.header["CREATOR"] = "xfusion.io"
    return write_atomic(fits.HDUList([prim, hdu]), path, overwrite)
