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
``filename`` and event counts before/after selection. EPIC exposures are read per CCD
(``CCDNR``, ``LIVETInn``) and events are screened by the good time intervals
(:mod:`xfusion.io.exposure`); a cube whose events come from CCDs of different live times has an
``exposure_map`` (y, x) coordinate (s).
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
from .exposure import (
    file_gtis,
    in_intervals,
    intersect_intervals,
    interval_length,
    merge_intervals,
    pixel_exposure,
    read_gti,
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
    "SKY_NULL",
    "MAX_AUTO_VOXELS",
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

#: Conventional null value of integer sky-coordinate columns (``X``, ``Y``): the SAS writes it
#: for events without a sky position. Such events are left out like those equal to ``TNULLn``.
SKY_NULL = -99999999
#: The default EPIC / generic grid (no ``shape``, no ``wcs``) leaves out events farther from the
#: image centre than ``FIELD_FACTOR`` times the radius holding ``FIELD_QUANTILE`` of the events
#: (plus one pixel), when there are at least ``FIELD_MIN_EVENTS`` of them.
FIELD_FACTOR = 2.0
FIELD_QUANTILE = 0.99
FIELD_MIN_EVENTS = 100
#: Largest default cube (energies × pixels) :func:`read_events` builds on its own (2**27
#: voxels, 1 GiB of int64 counts); a larger one needs an explicit ``shape=`` or ``wcs=``.
MAX_AUTO_VOXELS = 2**27


def detect_instrument(header) -> str:
    """``'epic'``, ``'resolve'`` or ``'generic'`` from ``TELESCOP``/``INSTRUME``."""
    tel = str(header.get("TELESCOP", "")).upper()
    ins = str(header.get("INSTRUME", "")).upper()
    if ins.startswith(("EPN", "EMOS")) or (tel == "XMM" and ins.startswith("E")):
        return "epic"
    if "RESOLVE" in ins:
        return "resolve"
    return "generic"


def _positive_exposure(path: str, key: str, value, where: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = np.nan
    if not (np.isfinite(t) and t > 0):
        raise FileFormatError(f"{path}: {key} = {value!r} in the {where} header is not a positive "
                              f"exposure; pass exposure= (seconds)")
    return t


def _exposure(path: str, headers, exposure: float | None) -> tuple[float, str]:
    """Exposure (s) and the keyword it came from; ``headers`` are ``(name, header)`` pairs."""
    if exposure is not None:
        return _positive_exposure(path, "exposure=", exposure, "argument"), "user"
    for key in _EXPOSURE_KEYS:
        for where, h in headers:
            if h is not None and key in h:
                return _positive_exposure(path, key, h[key], where), key
    # EPIC: per-CCD LIVETInn / ONTIMEnn keywords; take the largest (the aim-point CCD)
    for pat in (r"LIVETI\d\d", r"ONTIME\d\d"):
        found = [(k, v) for _, h in headers if h is not None for k, v in h.items()
                 if re.fullmatch(pat, k)]
        vals = []
        for k, v in found:
            try:
                if np.isfinite(float(v)) and float(v) > 0:
                    vals.append((k, float(v)))
            except (TypeError, ValueError):
                pass
        if found and not vals:
            raise FileFormatError(
                f"{path}: no positive exposure in the per-CCD keywords "
                f"({', '.join(f'{k} = {v!r}' for k, v in found)}); pass exposure= (seconds)"
            )
        if vals:
            k, v = max(vals, key=lambda kv: kv[1])
            if len({val for _, val in vals}) > 1:
                warnings.warn(
                    f"{path}: the per-CCD exposures differ "
                    f"({', '.join(f'{kk} = {vv:.6g}' for kk, vv in vals)}) and the events carry no "
                    f"CCDNR column to tell which CCDs they fall on; taking the largest, {k} = "
                    f"{v:.6g} s: pass exposure= (seconds) if the field is on another CCD",
                    UserWarning, stacklevel=4)
            return v, k
    raise FileFormatError(
        f"{path}: no exposure keyword ({', '.join(_EXPOSURE_KEYS)}, LIVETInn or ONTIMEnn) in the "
        f"EVENTS or primary header; pass exposure= (seconds)"
    )


def _invalid(hdu: fits.BinTableHDU, col: str, values, sky: bool) -> list[tuple[str, np.ndarray]]:
    """``(reason, mask)`` for each kind of unusable value found in column ``col``.

    NaN/infinite values (float columns), the column's ``TNULLn`` (integer columns) and, for sky
    coordinates (``sky=True``), the conventional null :data:`SKY_NULL` and values outside
    ``TLMINn``..``TLMAXn``.
    """
    n = column_index(hdu, col)
    h = hdu.header
    v = np.asarray(values)
    out = []
    if v.dtype.kind == "f":
        out.append(("NaN or infinite", ~np.isfinite(v)))
    tnull = h.get(f"TNULL{n}")
    if tnull is not None and not isinstance(tnull, (int, np.integer)):
        tnull = None  # FITS allows TNULLn on integer columns only; a float one has no meaning
    if tnull is not None and v.dtype.kind in "iu":
        out.append((f"null (TNULL{n} = {tnull})", v == int(tnull)))
    if sky:
        if tnull is None or int(tnull) != SKY_NULL:
            out.append((f"null ({SKY_NULL})", v == SKY_NULL))
        with np.errstate(invalid="ignore"):
            for key, op in ((f"TLMIN{n}", np.less), (f"TLMAX{n}", np.greater)):
                lim = h.get(key)
                if lim is not None:
                    word = "below" if key.startswith("TLMIN") else "above"
                    m = op(v, float(lim)) & (v != SKY_NULL)
                    out.append((f"{word} {key} = {lim}", m))
    return [(r, m) for r, m in out if m.any()]


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


def _outside_field(r: np.ndarray) -> np.ndarray:
    """Events far outside the field: ``r`` (pixels from the centre) beyond ``FIELD_FACTOR``
    times the ``FIELD_QUANTILE`` radius plus one pixel (or not finite)."""
    far = ~np.isfinite(r)
    good = np.sort(r[~far])
    if good.size >= FIELD_MIN_EVENTS:
        bulk = good[int(np.ceil(FIELD_QUANTILE * good.size)) - 1]
        with np.errstate(invalid="ignore"):
            far |= r > FIELD_FACTOR * bulk + 1.0
    return far


def _bin(iy: np.ndarray, ix: np.ndarray, ie: np.ndarray, shape3) -> np.ndarray:
    L, ny, nx = shape3
    flat = (ie * ny + iy) * nx + ix
    return np.bincount(flat, minlength=L * ny * nx).reshape(L, ny, nx)


def _events_meta(path: str, hdu, prim, instrument: str | None,
                 exposure: float | None, hdul=None) -> tuple[str, int, dict]:
    """Layout, number of events and the cube's starting attrs of an events table.

    Refuses an unknown ``instrument`` and an empty event list; reads the exposure (left to
    :func:`_selected_exposure` when the exposure is per CCD: ``meta['per_ccd']``).
    """
    h = hdu.header
    layout = (instrument or detect_instrument(h if "INSTRUME" in h else prim)).lower()
    if layout not in ("epic", "resolve", "generic"):
        raise ValueError(f"instrument must be 'epic', 'resolve', 'generic' or None, "
                         f"got {instrument!r}")
    n_all = 0 if hdu.data is None else len(hdu.data)
    if n_all == 0:
        raise FileFormatError(f"{path}: the event list {hdu.name!r} is empty (no events)")
    per_ccd = hdul is not None and _per_ccd(hdul, hdu, prim, layout, exposure)
    if per_ccd:
        t_exp, exp_key = None, None  # per CCD, once the events are selected
    else:
        t_exp, exp_key = _exposure(path, ((hdu.name, h), ("primary", prim)), exposure)
    meta = {
        "telescope": str(h.get("TELESCOP", prim.get("TELESCOP", ""))),
        "instrument": str(h.get("INSTRUME", prim.get("INSTRUME", ""))),
        "filename": path, "layout": layout, "exposure": t_exp, "exposure_keyword": exp_key,
        "n_events": int(n_all),
    }
    if per_ccd:
        meta["per_ccd"] = True
    return layout, n_all, meta


_CCD_KEY = re.compile(r"(LIVETI|ONTIME)\d\d")


def _per_ccd(hdul, hdu, prim, layout: str, exposure) -> bool:
    """Whether the exposure is read per CCD: an EPIC list with a ``CCDNR`` column and per-CCD
    ``LIVETInn``/``ONTIMEnn`` keywords or ``STDGTInn`` extensions, and no ``exposure=``."""
    if exposure is not None or layout != "epic":
        return False
    if "CCDNR" not in [c.name.upper() for c in hdu.columns]:
        return False
    if any(_CCD_KEY.fullmatch(k) for hh in (hdu.header, prim) for k in hh):
        return True
    return any(re.fullmatch(r"STDGTI\d\d", str(x.name).upper()) for x in hdul[1:])


def _time_selection(time_range, gti_file) -> np.ndarray | None:
    """The user's time selection as merged intervals (``time_range`` ∩ ``gti_file``), or None."""
    sel = None
    if time_range is not None:
        a = np.asarray(time_range, dtype=float)
        a = a.reshape(1, -1) if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[1] != 2 or np.isnan(a).any() or (a[:, 1] <= a[:, 0]).any():
            raise ValueError(f"time_range must be (start, stop) or a sequence of (start, stop) "
                             f"pairs with start < stop (s), got {time_range!r}")
        sel = merge_intervals(a)
    if gti_file is not None:
        g = read_gti(gti_file)
        sel = g if sel is None else intersect_intervals(sel, g)
    if sel is not None and not len(sel):
        raise ValueError(f"the time selection is empty (time_range={time_range!r}, "
                         f"gti_file={gti_file!r} do not overlap)")
    return sel


def _time_cuts(hdul, hdu, path: str, meta: dict, keep: np.ndarray, cuts: list,
               sel: np.ndarray | None) -> tuple[dict, np.ndarray | None]:
    """Drop (in ``keep``) the events outside the file's GTIs and outside the selection ``sel``.

    An EPIC event of CCD ``c`` (``CCDNR``) is checked against ``STDGTIcc`` (else the file's
    ``GTI``/``STDGTI``); without ``CCDNR``, against ``GTI``/``STDGTI`` or the union of the
    ``STDGTInn``. Returns the file's GTIs and the ``CCDNR`` column (per-CCD mode) or None.
    """
    gtis = file_gtis(hdul, path)
    has_ccd = (meta["layout"] == "epic"
               and "CCDNR" in [c.name.upper() for c in hdu.columns])
    ccd = np.asarray(column(hdu, "CCDNR", path)).astype(np.int64) if has_ccd else None
    per_ccd = ccd if meta.get("per_ccd") else None
    if not gtis and sel is None:
        return gtis, per_ccd
    time = np.asarray(column(hdu, "TIME", path), dtype=float)
    if gtis:
        good = np.zeros(time.size, bool)
        if ccd is None or not any(k is not None for k in gtis):
            common = gtis.get(None)
            if common is None:
                common = merge_intervals(np.concatenate(list(gtis.values())))
            good = in_intervals(time, common)
        else:
            for c in np.unique(ccd[keep]):
                on = ccd == c
                g = gtis.get(int(c), gtis.get(None))
                good[on] = True if g is None else in_intervals(time[on], g)
        keep &= good
        cuts.append(("in GTIs", int(keep.sum())))
    if sel is not None:
        keep &= in_intervals(time, sel)
        cuts.append((f"in time selection ({len(sel)} interval{'s' * (len(sel) > 1)}, "
                     f"{interval_length(sel):.6g} s)", int(keep.sum())))
    return gtis, per_ccd


def _header_value(path: str, headers, key: str) -> float | None:
    """Keyword ``key`` of the first header holding it, checked positive; None when absent."""
    for where, h in headers:
        if h is not None and key in h:
            return _positive_exposure(path, key, h[key], where)
    return None


def _live_fraction(path: str, headers) -> tuple[float | None, str]:
    """``LIVETIME / ONTIME`` of the headers, or None when either is absent."""
    live, on = _header_value(path, headers, "LIVETIME"), _header_value(path, headers, "ONTIME")
    if live is None or on is None:
        return None, ""
    return live / on, "LIVETIME/ONTIME"


def _ccd_exposure(path: str, headers, c: int, gtis: dict,
                  sel: np.ndarray | None) -> tuple[float, str]:
    """Exposure (s) of CCD ``c`` and where it came from.

    Whole observation: ``LIVETIcc``, else ``ONTIMEcc`` or the length of ``STDGTIcc`` times the
    global ``LIVETIME/ONTIME``. Time selection ``S``: ``|GTI_c ∩ S|`` times the CCD's live
    fraction ``LIVETIcc/ONTIMEcc`` (else ``LIVETIcc/|GTI_c|``, else ``LIVETIME/ONTIME``).
    """
    n = f"{c:02d}"
    live = _header_value(path, headers, f"LIVETI{n}")
    on = _header_value(path, headers, f"ONTIME{n}")
    g = gtis.get(c, gtis.get(None))
    gname = f"STDGTI{n}" if c in gtis else "GTI"
    frac, fsrc = _live_fraction(path, headers)
    if sel is None:
        if live is not None:
            return live, f"LIVETI{n}"
        base, src = ((on, f"ONTIME{n}") if on is not None else
                     (interval_length(g), f"|{gname}|") if g is not None else (None, None))
        if base is None:
            raise FileFormatError(f"{path}: events on CCD {c} (CCDNR), but no LIVETI{n}, "
                                  f"ONTIME{n} or STDGTI{n} to give its exposure; pass exposure= "
                                  f"(seconds)")
        return (base * frac, f"{src} × {fsrc}") if frac else (base, f"{src} (no live fraction)")
    if g is None:
        raise FileFormatError(f"{path}: a time selection needs CCD {c}'s good time intervals "
                              f"(STDGTI{n} or GTI extension), which the file does not have; pass "
                              f"exposure= (seconds)")
    length = interval_length(intersect_intervals(g, sel))
    if live is not None and on is not None:
        f, fsrc = live / on, f"LIVETI{n}/ONTIME{n}"
    elif live is not None:
        f, fsrc = live / interval_length(g), f"LIVETI{n}/|{gname}|"
    elif frac is None:
        f, fsrc = 1.0, "1 (no live fraction)"
    else:
        f = frac
    return length * f, f"|{gname} ∩ selection| × {fsrc}"


def _selected_exposure(path: str, hdu, prim, meta: dict, gtis: dict, ccd, sel,
                       keep: np.ndarray) -> np.ndarray | None:
    """The exposure of the selected events.

    Per-CCD mode: returns each kept event's CCD and records each CCD's exposure in
    ``meta['_ccd_exposure']`` (the cube's exposure, scalar or per pixel, is set when binning:
    :func:`_ccd_cube_exposure`). Otherwise,
    with a time selection ``S`` (and no ``exposure=``), ``meta['exposure']`` becomes
    ``|GTI ∩ S|`` times ``LIVETIME/ONTIME`` (else times ``exposure / |GTI|``); returns None.
    """
    headers = ((hdu.name, hdu.header), ("primary", prim))
    if ccd is None:
        if sel is None or meta["exposure_keyword"] == "user":
            return None
        g = gtis.get(None)
        if g is None and gtis:
            g = merge_intervals(np.concatenate(list(gtis.values())))
        if g is None:
            raise FileFormatError(f"{path}: a time selection needs the file's good time intervals "
                                  f"(GTI, STDGTI or STDGTInn extension), and it has none; pass "
                                  f"exposure= (seconds)")
        frac, fsrc = _live_fraction(path, headers)
        if frac is None:
            frac = meta["exposure"] / interval_length(g)
            fsrc = f"{meta['exposure_keyword']}/|GTI|"
        meta["exposure"] = interval_length(intersect_intervals(g, sel)) * frac
        meta["exposure_keyword"] = f"|GTI ∩ selection| × {fsrc}"
        return None
    cs = [int(c) for c in np.unique(ccd[keep])]
    meta["_ccd_exposure"] = {c: _ccd_exposure(path, headers, c, gtis, sel) for c in cs}
    return ccd[keep]


def _ccd_cube_exposure(meta: dict, ccd_event: np.ndarray, iy: np.ndarray, ix: np.ndarray,
                       shape) -> np.ndarray | None:
    """Per-CCD mode: the cube's ``exposure`` and ``exposure_keyword`` from the binned events'
    CCDs (the reference CCD is the one holding the most of them, the lowest number on a tie),
    ``ccds``/``ccd_exposures``/``ccd_exposure_keywords``, and the per-pixel exposure map (None
    when those CCDs share one exposure)."""
    found = meta.pop("_ccd_exposure")
    cs, n = np.unique(ccd_event, return_counts=True)
    ref = int(cs[np.argmax(n)])
    meta["ccds"] = [int(c) for c in cs]
    meta["ccd_exposures"] = [found[c][0] for c in meta["ccds"]]
    meta["ccd_exposure_keywords"] = [found[c][1] for c in meta["ccds"]]
    lut = np.zeros(int(cs.max()) + 1)
    for c in meta["ccds"]:
        lut[c] = found[c][0]
    emap, _ = pixel_exposure(iy, ix, lut[ccd_event], shape)
    meta["exposure"] = float(found[ref][0])
    meta["exposure_keyword"] = found[ref][1]
    if emap is not None:
        meta["exposure_keyword"] += (f" (CCD {ref}, the reference; per pixel from CCDs "
                                     f"{', '.join(map(str, meta['ccds']))}: exposure_map)")
    return emap


def _valid_events(hdu, path: str, layout: str, energy: np.ndarray, ecol: str, x_col: str,
                  y_col: str, n_all: int, meta: dict) -> tuple[np.ndarray, list]:
    """Mask of the events with valid positions and energies, and the first selection cut.

    Sets ``meta['n_invalid']`` and warns (at :func:`read_events`' caller) when events are left
    out.
    """
    sky_cols = {"epic": ("X", "Y"), "generic": (x_col, y_col), "resolve": ()}[layout]
    checked = [(c, True) for c in sky_cols] + [(ecol, False)]
    if layout == "resolve":
        checked.insert(0, ("PIXEL", False))
    bad = np.zeros(n_all, bool)
    reasons = []
    for col, is_sky in checked:
        for why, m in _invalid(hdu, col, column(hdu, col, path), is_sky):
            reasons.append(f"{int(m.sum())} with {col} {why}")
            bad |= m
    bad |= ~np.isfinite(energy)
    keep = ~bad
    cuts = [(f"valid {', '.join(c for c, _ in checked)}", int(keep.sum()))]
    meta["n_invalid"] = int(bad.sum())
    if bad.any():
        warnings.warn(f"{path}: {int(bad.sum())} of {n_all} events left out for invalid "
                      f"values ({'; '.join(reasons)})", UserWarning, stacklevel=3)
    return keep, cuts


def _epic_cuts(hdu, path: str, meta: dict, keep: np.ndarray, cuts: list, pattern_max,
               flag_mask) -> None:
    """Apply the EPIC ``PATTERN`` and ``FLAG`` selections to ``keep`` in place, noting the cuts."""
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


def _resolve_cuts(hdu, path: str, keep: np.ndarray, cuts: list, itype,
                  exclude_pixels) -> np.ndarray:
    """Apply the Resolve ``ITYPE`` and excluded-pixel selections to ``keep`` in place.

    Returns the ``PIXEL`` column (0 where the event was already left out).
    """
    pix = np.where(keep, np.asarray(column(hdu, "PIXEL", path)), 0).astype(int)
    if itype is not None:
        keep &= np.isin(np.asarray(column(hdu, "ITYPE", path)).astype(int), list(itype))
        cuts.append((f"ITYPE in {tuple(itype)}", int(keep.sum())))
    if len(exclude_pixels):
        keep &= ~np.isin(pix, list(exclude_pixels))
        cuts.append((f"PIXEL not in {tuple(exclude_pixels)}", int(keep.sum())))
    return pix


def _energy_cut(path: str, edges: np.ndarray, energy: np.ndarray, keep: np.ndarray,
                cuts: list, n_all: int, meta: dict) -> np.ndarray:
    """Energy bin of each event; drops (in ``keep``) those outside the edges.

    Refuses a selection that leaves no event (the message gives the count after each cut) and
    records the selection in ``meta``.
    """
    ie = np.searchsorted(edges, np.where(keep, energy, -np.inf), side="right") - 1
    keep &= (ie >= 0) & (ie < edges.size - 1)
    cuts.append((f"{edges[0]:g} <= E < {edges[-1]:g} keV", int(keep.sum())))
    if not keep.any():
        raise FileFormatError(
            f"{path}: no events left after selection ("
            + ", ".join(f"{c}: {n}" for c, n in cuts) + f", of {n_all})"
        )
    meta["selection"] = "; ".join(c for c, _ in cuts[1:])  # cuts[0]: valid values
    meta["n_selected"] = int(keep.sum())
    return ie


def _sky_columns(hdu, path: str, layout: str, keep: np.ndarray, x_col: str, y_col: str,
                 event_wcs) -> tuple[np.ndarray, np.ndarray, WCS]:
    """Sky-coordinate column values of the kept EPIC / generic events and their WCS."""
    xs = np.asarray(column(hdu, x_col if layout == "generic" else "X", path), float)[keep]
    ys = np.asarray(column(hdu, y_col if layout == "generic" else "Y", path), float)[keep]
    ew = (as_wcs(event_wcs, "event_wcs") if event_wcs is not None else
          _column_wcs(hdu, x_col if layout == "generic" else "X",
                      y_col if layout == "generic" else "Y", path))
    return xs, ys, ew


def _default_shape(path: str, c, pixel_size: float, lon: np.ndarray, lat: np.ndarray,
                   ie: np.ndarray, edges: np.ndarray, meta: dict, ccd_event=None):
    """The default grid's shape about ``c``, leaving out events far outside the field.

    Returns ``(shape, lon, lat, ie, ccd_event)`` of the events kept; sets
    ``meta['n_outside_field']``, warns (at :func:`read_events`' caller) when events are left out
    and refuses a grid above :data:`MAX_AUTO_VOXELS`.
    """
    probe = make_wcs(c, pixel_size, (1, 1))
    px, py = probe.wcs_world2pix(lon, lat, 0)
    r = np.maximum(np.abs(px), np.abs(py))
    far = _outside_field(r)
    meta["n_outside_field"] = int(far.sum())
    if far.all():
        raise FileFormatError(f"{path}: none of the {r.size} selected events can be "
                              f"placed on a grid centred on {tuple(c)}; pass centre= "
                              f"or wcs=")
    if far.any():
        with np.errstate(invalid="ignore"):
            lim = float(r[~far].max())
            r_far = np.where(np.isfinite(r), r, np.inf)[far].max() * pixel_size
        warnings.warn(
            f"{path}: {int(far.sum())} of {r.size} selected events lie far outside the "
            f"field (the other events lie within {lim * pixel_size / 60:.3g}′ of the image "
            f"centre, these out to {r_far / 3600:.3g}°) and are left out of the default "
            f"grid; pass shape= or wcs= to bin them", UserWarning, stacklevel=3)
        lon, lat, ie, r = lon[~far], lat[~far], ie[~far], r[~far]
        ccd_event = None if ccd_event is None else ccd_event[~far]
    half = int(np.ceil(r.max() + 0.5))
    shape = (2 * half + 1, 2 * half + 1)
    voxels = (edges.size - 1) * shape[0] * shape[1]
    if voxels > MAX_AUTO_VOXELS:
        raise FileFormatError(
            f"{path}: the default grid ({shape[0]}×{shape[1]} pixels of {pixel_size:g}″ "
            f"× {edges.size - 1} energies, {voxels * 8 / 2**30:.3g} GiB) exceeds "
            f"MAX_AUTO_VOXELS = {MAX_AUTO_VOXELS}; pass shape= or wcs= for an explicit "
            f"grid, or a larger pixel_size")
    return shape, lon, lat, ie, ccd_event


def _bin_sky(path: str, tw: WCS, shape, lon: np.ndarray, lat: np.ndarray, ie: np.ndarray,
             edges: np.ndarray, meta: dict, ccd_event=None) -> xr.DataArray:
    """Bin events at ``(lon, lat)`` with energy bins ``ie`` on the image grid ``tw``.

    Refuses a grid that no event falls in; warns (at :func:`read_events`' caller) for
    non-square pixels. With ``ccd_event`` (each event's CCD, per-CCD mode) the cube's exposure
    is the reference CCD's and, when the binned events' CCDs differ in exposure, an
    ``exposure_map`` (y, x) coordinate holds each pixel's (:func:`xfusion.io.pixel_exposure`).
    """
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
                      UserWarning, stacklevel=3)
    emap = None
    if ccd_event is not None:
        emap = _ccd_cube_exposure(meta, ccd_event[inside], iy[inside], ix[inside], (ny, nx))
    da = _cube(counts, edges, tw, (ny, nx), sx, meta, "counts")
    if emap is not None:
        da = da.assign_coords(exposure_map=(("y", "x"), emap, {
            "units": "s", "long_name": "exposure of the CCD(s) each pixel's events fall on"}))
    return da


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
    time_range=None,
    gti_file=None,
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
        EPIC / generic image shape. Default: the smallest odd square about ``centre`` holding
        every selected event of the field. With :data:`FIELD_MIN_EVENTS` (100) or more selected
        events, those farther from the centre than :data:`FIELD_FACTOR` (2) times the radius
        holding :data:`FIELD_QUANTILE` (99 %) of them, plus one pixel, are taken as lying far
        outside the field (a stray event degrees away): they are left out of the default grid
        with a warning that counts them (``attrs['n_outside_field']``). A default grid above
        :data:`MAX_AUTO_VOXELS` voxels is refused. Pass ``shape`` or ``wcs`` to choose the grid.
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
        Exposure (s), overriding the header and the per-CCD live times (events are still
        screened by the GTIs and ``time_range``). Default, EPIC with a ``CCDNR`` column and
        per-CCD ``LIVETInn``/``ONTIMEnn`` keywords or ``STDGTInn`` extensions: the exposure of
        the CCD(s) the selected events fall on (``LIVETInn``; see Notes). Otherwise ``EXPOSURE``,
        ``LIVETIME``, ``ONTIME`` of the EVENTS or primary header, then ``LIVETInn``/``ONTIMEnn``
        (the largest, with a warning when they differ, since nothing says which CCD the events
        are on).
    extension : str
        Name of the events table.
    time_range : (start, stop) or sequence of (start, stop), optional
        Keep only events with ``start <= TIME < stop`` (s, the file's time system) in one of
        the intervals; the exposure becomes the selected good time (see Notes).
    gti_file : path, optional
        A GTI file (:func:`xfusion.io.read_gti`: ``START``/``STOP`` table, e.g. from
        ``tabgtigen``) to select on, intersected with ``time_range``.

    Returns
    -------
    xarray.DataArray
        Counts (int64), dims ``('energy', 'y', 'x')``; see the module docstring for coords and
        attrs. Resolve cubes have a boolean ``observed`` (y, x) coordinate.

    Raises
    ------
    FileFormatError
        A truncated or corrupt file, missing extension or column, wrong units, no sky WCS, no
        exposure or an exposure keyword that is zero, negative or not a number, an empty event
        list, no event left after selection (the message gives the count after each cut), a
        default grid above :data:`MAX_AUTO_VOXELS`, a time selection on a file without GTIs,
        or events on a CCD with no live time, on-time or GTI of its own.
    ValueError
        A ``time_range`` that is not (start, stop) pairs with start < stop, or a selection that
        ``gti_file`` leaves empty.

    Warns
    -----
    UserWarning
        When events with invalid values are left out: NaN or infinite positions or energies,
        positions or energies equal to the column's ``TNULLn``, sky positions equal to
        :data:`SKY_NULL` or outside ``TLMINn``..``TLMAXn`` (the message counts them by cause;
        ``attrs['n_invalid']`` holds their number), and when the default grid leaves out events
        far outside the field (see ``shape``).

    Notes
    -----
    **Good time intervals.** Events outside the file's GTIs are dropped (``STDGTInn`` for the
    events of CCD ``nn``, else ``GTI``/``STDGTI``; without a ``CCDNR`` column the union of the
    ``STDGTInn``), as are events outside ``time_range``/``gti_file``.

    **Per-CCD exposure** (EPIC): CCD ``c`` is exposed for ``LIVETIcc`` s (else ``ONTIMEcc`` or
    ``|STDGTIcc|`` times ``LIVETIME/ONTIME``). With a time selection S it is
    ``|GTI_c ∩ S| · LIVETIcc/ONTIMEcc``. The cube's ``exposure`` is that of the CCD holding
    the most binned events (``attrs['ccds']``, ``attrs['ccd_exposures']`` list them all); when
    the events' CCDs differ in exposure, an ``exposure_map`` (y, x) coordinate gives each
    pixel's exposure (s): the mean over its events' CCDs, and for a pixel without events that
    of the nearest pixel with events (:func:`xfusion.io.pixel_exposure`).
    :func:`xfusion.io.from_files` folds ``exposure_map / exposure`` into X's effective area.

    **Time selection without per-CCD keywords**: ``|GTI ∩ S|`` times ``LIVETIME/ONTIME`` (else
    times the header exposure over ``|GTI|``). A selection on a file without GTIs is refused.
    """
    path = fspath(path)
    edges = _edges(energy_edges)
    with open_fits(path) as hdul:
        hdu = get_table(hdul, path, (extension,), f"{extension} (event list)")
        h = hdu.header
        prim = hdul[0].header
        sel = _time_selection(time_range, gti_file)
        layout, n_all, meta = _events_meta(path, hdu, prim, instrument, exposure, hdul)
        ecol = "PI" if layout in ("epic", "resolve") else energy_col
        energy = _energy_keV(hdu, ecol, path, layout, energy_unit)
        keep, cuts = _valid_events(hdu, path, layout, energy, ecol, x_col, y_col, n_all, meta)
        if layout == "epic":
            _epic_cuts(hdu, path, meta, keep, cuts, pattern_max, flag_mask)
        if layout == "resolve":
            pix = _resolve_cuts(hdu, path, keep, cuts, itype, exclude_pixels)
        gtis, ccd = _time_cuts(hdul, hdu, path, meta, keep, cuts, sel)
        ie = _energy_cut(path, edges, energy, keep, cuts, n_all, meta)
        ccd_event = _selected_exposure(path, hdu, prim, meta, gtis, ccd, sel, keep)

        if layout == "resolve":
            return _resolve_cube(path, h, prim, pix[keep], ie[keep], edges, meta, wcs,
                                 pixel_size, pixel_map, exclude_pixels)
        xs, ys, ew = _sky_columns(hdu, path, layout, keep, x_col, y_col, event_wcs)
    meta.pop("per_ccd", None)
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
            shape, lon, lat, ie, ccd_event = _default_shape(path, c, pixel_size, lon, lat, ie,
                                                            edges, meta, ccd_event)
        tw = make_wcs(c, pixel_size, shape)
    return _bin_sky(path, tw, shape, lon, lat, ie, edges, meta, ccd_event)


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
def _ints(a, dtype, name: str) -> np.ndarray:
    """``a`` as ``dtype``, refusing values that are not integers or that the type cannot hold."""
    a = np.asarray(a)
    info = np.iinfo(dtype)
    if a.size:
        if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise ValueError(f"{name} has values that are not integers")
        if a.dtype.kind not in "fiub":
            raise ValueError(f"{name} has dtype {a.dtype}, not integers")
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            raise ValueError(f"{name} has values {lo}..{hi}, outside the {np.dtype(dtype).name} "
                             f"range {info.min}..{info.max} of its column")
    return a.astype(dtype)


def _per_event(v, default, dtype, name: str, n: int) -> np.ndarray:
    """An optional per-event column: ``default`` everywhere when ``v`` is None, else ``v`` checked
    to be of length ``n`` and converted to ``dtype`` (integers through :func:`_ints`)."""
    if v is None:
        return np.full(n, default, dtype)
    a = np.asarray(v)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}; expected ({n},) like energy")
    if np.dtype(dtype).kind == "f":
        return a.astype(dtype)
    return _ints(a, dtype, name)


def _event_energies(energy) -> tuple[np.ndarray, int]:
    """Photon energies (keV) as a finite 1-D float array, and their number."""
    if energy is None:
        raise ValueError("energy= (keV) is required")
    energy = np.asarray(energy, float)
    if energy.ndim != 1:
        raise ValueError(f"energy must be 1-D, got shape {energy.shape}")
    n = energy.size
    if not np.isfinite(energy).all():
        raise ValueError(f"energy has {int((~np.isfinite(energy)).sum())} NaN or infinite "
                         f"values")
    return energy, n


def _epic_sky(ra, dec, n: int, pointing) -> tuple[WCS, np.ndarray, np.ndarray]:
    """EPIC sky-coordinate WCS about ``pointing`` and the ``X``, ``Y`` values of ``ra``, ``dec``."""
    if ra is None or dec is None:
        raise ValueError("EPIC events need ra= and dec= (deg)")
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if ra.shape != (n,) or dec.shape != (n,):
        raise ValueError(f"ra, dec have shapes {ra.shape}, {dec.shape}; expected ({n},) like "
                         f"energy")
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        raise ValueError("ra, dec have NaN or infinite values")
    if pointing is None:
        pointing = (float(np.mean(ra)), float(np.mean(dec))) if n else (0.0, 0.0)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [EPIC_REF_PIXEL, EPIC_REF_PIXEL]
    w.wcs.crval = [float(pointing[0]), float(pointing[1])]
    w.wcs.cdelt = [-EPIC_SKY_PIXEL / 3600, EPIC_SKY_PIXEL / 3600]
    x, y = w.wcs_world2pix(ra, dec, 1)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("some ra, dec cannot be projected about the pointing (more than "
                         "90° away)")
    return w, x, y


def _epic_columns(energy: np.ndarray, n: int, ra, dec, time, pattern, flag, pointing,
                  detector: str | None) -> tuple[list[fits.Column], dict]:
    """Columns and header keywords of an EPIC events table."""
    w, x, y = _epic_sky(ra, dec, n, pointing)
    pi = np.floor(energy * 1000)
    pi_type = np.int16 if n == 0 or np.abs(pi).max() <= np.iinfo(np.int16).max else np.int32
    cols = [
        fits.Column("TIME", "D", unit="s", array=_per_event(time, 0.0, float, "time", n)),
        fits.Column("X", "J", array=_ints(np.round(x), np.int32, "X (from ra)")),
        fits.Column("Y", "J", array=_ints(np.round(y), np.int32, "Y (from dec)")),
        fits.Column("PI", "I" if pi_type == np.int16 else "J", unit="eV",
                    array=_ints(pi, pi_type, "PI (from energy)")),
        fits.Column("PATTERN", "B", array=_per_event(pattern, 0, np.uint8, "pattern", n)),
        fits.Column("FLAG", "J", array=_per_event(flag, 0, np.int32, "flag", n)),
    ]
    hdr: dict = {}
    for i, c in ((2, "X"), (3, "Y")):
        ref = "REFX" if c == "X" else "REFY"
        k = 0 if c == "X" else 1
        vals = {"CTYP": w.wcs.ctype[k], "CRPX": EPIC_REF_PIXEL, "CRVL": w.wcs.crval[k],
                "CDLT": w.wcs.cdelt[k]}
        for name, v in vals.items():
            hdr[f"T{name}{i}"] = v
            hdr[f"{ref}{name}"] = v
    hdr.update({"TELESCOP": "XMM", "INSTRUME": detector or "EPN", "RADECSYS": "ICRS"})
    return cols, hdr


def _resolve_columns(energy: np.ndarray, n: int, pixel, time, itype, pointing, roll: float,
                     detector: str | None) -> tuple[list[fits.Column], dict]:
    """Columns and header keywords of a Resolve events table."""
    if pixel is None:
        raise ValueError("Resolve events need pixel= (0-35)")
    if pointing is None:
        raise ValueError("Resolve events need pointing=(ra, dec) for RA_NOM/DEC_NOM")
    cols = [
        fits.Column("TIME", "D", unit="s", array=_per_event(time, 0.0, float, "time", n)),
        fits.Column("PIXEL", "B", array=_per_event(pixel, 0, np.uint8, "pixel", n)),
        fits.Column("PI", "J", unit="chan",
                    array=_ints(np.floor(energy / RESOLVE_CHANNEL_WIDTH), np.int32,
                                "PI (from energy)")),
        fits.Column("ITYPE", "B", array=_per_event(itype, 0, np.uint8, "itype", n)),
    ]
    hdr = {"TELESCOP": "XRISM", "INSTRUME": detector or "RESOLVE",
           "RA_NOM": float(pointing[0]), "DEC_NOM": float(pointing[1]),
           "PA_NOM": float(roll)}
    return cols, hdr


def _extra_columns(columns: Mapping[str, np.ndarray] | None) -> list[fits.Column]:
    """FITS columns for the ``columns=`` mapping (floats, integers and booleans)."""
    cols = []
    for name, values in (columns or {}).items():
        values = np.asarray(values)
        fmt = {"f": "D", "i": "K", "u": "K", "b": "L"}.get(values.dtype.kind)
        if fmt is None:
            raise ValueError(f"column {name!r}: unsupported dtype {values.dtype}")
        cols.append(fits.Column(name, fmt, array=values))
    return cols


def _events_hdulist(cols: list[fits.Column], hdr: dict, exposure: float | None,
                    header: Mapping | None, gti=None) -> fits.HDUList:
    """Primary HDU, ``EVENTS`` table with the exposure, layout and user keywords, and the GTI
    extensions (:func:`_gti_hdus`)."""
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    if exposure is not None:
        hdr.update({"EXPOSURE": float(exposure), "LIVETIME": float(exposure),
                    "ONTIME": float(exposure)})
    hdr.update({"HDUCLASS": "OGIP", "HDUCLAS1": "EVENTS"})
    hdr.update(dict(header or {}))
    for k, v in hdr.items():
        hdu.header[k] = v
    prim = fits.PrimaryHDU()
    for k in ("TELESCOP", "INSTRUME"):
        if k in hdr:
            prim.header[k] = hdr[k]
    prim.header["CREATOR"] = "xfusion.io"
    return fits.HDUList([prim, hdu, *_gti_hdus(gti)])


def _gti_hdus(gti) -> list[fits.BinTableHDU]:
    """GTI tables: ``GTI`` for an (n, 2) array, ``STDGTInn`` for each ``{nn: (n, 2)}`` entry."""
    if gti is None:
        return []
    items = gti.items() if isinstance(gti, Mapping) else [(None, gti)]
    out = []
    for c, g in items:
        g = np.asarray(g, dtype=float).reshape(-1, 2)
        if not np.isfinite(g).all() or (g[:, 1] < g[:, 0]).any():
            raise ValueError(f"gti{'' if c is None else f'[{c}]'}: intervals must be finite "
                             f"(start, stop) pairs with start <= stop")
        name = "GTI" if c is None else f"STDGTI{int(c):02d}"
        h = fits.BinTableHDU.from_columns([fits.Column("START", "D", unit="s", array=g[:, 0]),
                                           fits.Column("STOP", "D", unit="s", array=g[:, 1])],
                                          name=name)
        h.header["HDUCLASS"], h.header["HDUCLAS1"] = "OGIP", "GTI"
        if c is not None:
            h.header["CCDID"] = int(c)
        out.append(h)
    return out


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
    exposure: float | None,
    pointing: Sequence[float] | None = None,
    roll: float = 0.0,
    detector: str | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
    header: Mapping | None = None,
    overwrite: bool = False,
    ccd=None,
    gti=None,
) -> str:
    """Write a simulated event list in the EPIC, Resolve or a generic layout, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    instrument : {'epic', 'resolve', 'generic'}
        Layout.
    energy : array_like (n,)
        Photon energies in keV (EPIC: ``PI = floor(1000 E)`` eV, written as 16-bit integers,
        or 32-bit when some ``PI`` exceeds 32767 eV; Resolve: ``PI = floor(E / 0.0005)``, 32-bit).
        Values that a column cannot hold (NaN, out of range) are refused, never wrapped.
    ra, dec : array_like (n,)
        EPIC: sky positions (deg), written as ``X``, ``Y`` in 0.05″ units on a TAN projection
        about ``pointing``.
    pixel : array_like (n,) of int
        Resolve: ``PIXEL`` (0–35).
    time, pattern, flag, itype : array_like (n,), optional
        ``TIME`` (default 0), EPIC ``PATTERN``/``FLAG`` (default 0), Resolve ``ITYPE`` (default 0).
    exposure : float or None
        Exposure (s): written as ``EXPOSURE``, ``LIVETIME`` and ``ONTIME``; None writes none of
        them (give per-CCD ``LIVETInn``/``ONTIMEnn`` in ``header``, as in an EPIC file).
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
    ccd : array_like (n,) of int, optional
        EPIC: the ``CCDNR`` column (1–12 for pn, 1–7 for MOS).
    gti : (k, 2) array or {ccd: (k, 2) array}, optional
        Good time intervals (``START``, ``STOP``, s): a ``GTI`` extension, or one ``STDGTInn``
        extension per CCD ``nn`` (as EPIC files have).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        Arrays of another length than ``energy``, NaN or infinite energies or positions, and
        values their column cannot hold (e.g. ``pixel`` above 255, non-integer ``pattern``).
    """
    instrument = instrument.lower()
    cols: list[fits.Column] = []
    hdr: dict = {}
    n = None
    if instrument in ("epic", "resolve"):
        energy, n = _event_energies(energy)
    if instrument == "epic":
        cols, hdr = _epic_columns(energy, n, ra, dec, time, pattern, flag, pointing, detector)
    elif instrument == "resolve":
        cols, hdr = _resolve_columns(energy, n, pixel, time, itype, pointing, roll, detector)
    elif instrument == "generic":
        if not columns:
            raise ValueError("generic events need columns={name: array}")
    else:
        raise ValueError(f"instrument must be 'epic', 'resolve' or 'generic', got {instrument!r}")
    if ccd is not None:
        if instrument != "epic":
            raise ValueError("ccd= (CCDNR) is for EPIC event lists")
        cols.append(fits.Column("CCDNR", "B", array=_per_event(ccd, 0, np.uint8, "ccd", n)))
    cols += _extra_columns(columns)
    return write_atomic(_events_hdulist(cols, hdr, exposure, header, gti), path, overwrite)
