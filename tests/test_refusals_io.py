"""Bad input files for every reader of :mod:`xfusion.io`, one table row each.

Every row builds a good file with the project's own writers, corrupts it in one way (truncated
file, missing column, wrong unit, NaN, negative or null values, wrong HDU, empty table), and
states the outcome: a named exception whose message matches and names the file, or a warning
with the right counts and a result that leaves out exactly the bad values.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from astropy.io import fits

import xfusion as xf
from xfusion.io import FileFormatError

RA0, DEC0 = 83.63, 22.01
EDGES = np.linspace(0.5, 8.0, 16)
N_EPIC = 200  # enough events for the default grid's field rule (FIELD_MIN_EVENTS)


def sky(dy, dx):
    """Sky position of offsets (arcsec) along a north-up grid's y and x axes about (RA0, DEC0)."""
    w = xf.io.make_wcs((RA0, DEC0), 1.0, (1, 1))
    return w.wcs_pix2world(np.asarray(dx, float), np.asarray(dy, float), 0)


# ----------------------------------------------------------------------------- good files
def epic(d, n=N_EPIC, **kw):
    rng = np.random.default_rng(0)
    dy, dx = rng.uniform(-20, 20, (2, n))
    ra, dec = sky(dy, dx)
    energy = kw.pop("energy", rng.uniform(1.0, 7.0, n))
    return xf.io.write_events(d / "pn.fits", "epic", energy=energy, ra=ra, dec=dec,
                              exposure=1e3, pointing=(RA0, DEC0), **kw)


def resolve(d):
    pix = np.arange(36).repeat(3)
    energy = np.random.default_rng(1).uniform(1.0, 7.0, pix.size)
    return xf.io.write_events(d / "rsl.fits", "resolve", energy=energy, pixel=pix,
                              exposure=3e4, pointing=(RA0, DEC0))


def generic(d, n=50):
    """Float sky columns SKYX/SKYY with TC* keywords (1″ pixels), ENERGY in keV."""
    rng = np.random.default_rng(2)
    cols = [fits.Column("SKYX", "D", array=rng.uniform(90, 110, n)),
            fits.Column("SKYY", "D", array=rng.uniform(90, 110, n)),
            fits.Column("ENERGY", "D", unit="keV", array=rng.uniform(1.0, 7.0, n))]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    hdu.header.update({"TCTYP1": "RA---TAN", "TCTYP2": "DEC--TAN", "TCRPX1": 100.0,
                       "TCRPX2": 100.0, "TCRVL1": RA0, "TCRVL2": DEC0, "TCDLT1": -1 / 3600,
                       "TCDLT2": 1 / 3600, "EXPOSURE": 5.0})
    p = d / "gen.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    return p


def arf(d):
    lo = np.linspace(0.3, 9.0, 30)
    return xf.io.write_arf(d / "a.arf", lo, lo + 0.3, 100 + 10 * lo)


def rmf(d, variable_length=False):
    lo = np.linspace(0.5, 7.5, 15)
    hi = lo + 0.5
    e = np.arange(21) * 0.4
    emin, emax = e[:-1], e[1:]
    c = 0.5 * (lo + hi)
    M = np.exp(-0.5 * ((0.5 * (emin + emax))[None] - c[:, None]) ** 2 / 0.3**2)
    M[M < 1e-4] = 0
    M /= M.sum(axis=1, keepdims=True)
    return xf.io.write_rmf(d / "r.rmf", lo, hi, M, emin, emax, first_channel=0,
                           variable_length=variable_length)


def psf(d, images=None, **kw):
    y, x = np.mgrid[-10:11, -10:11]
    img = np.exp(-0.5 * (x**2 + y**2) / 9.0)
    return xf.io.write_psf(d / "psf.fits", img if images is None else images, pixel_size=1.0,
                           **kw)


# -------------------------------------------------------------------------------- damage
def truncate(p, size):
    """Keep the first ``size`` bytes (negative: drop that many from the end)."""
    with open(p, "rb") as f:
        data = f.read()
    with open(p, "wb") as f:
        f.write(data[:size])
    return p


def cut_in_data(p, ext, back=10):
    """Cut the file ``back`` bytes before the end of the data (table and heap) of ``ext``."""
    with fits.open(p) as h:
        i = h.index_of(ext)
        end = h.fileinfo(i)["datLoc"] + h[i].size
    return truncate(p, end - back)


def header(p, ext, delete=(), **keys):
    with fits.open(p, mode="update") as h:
        for k in delete:
            del h[ext].header[k]
        for k, v in keys.items():
            h[ext].header[k] = v
    return p


def values(p, ext, col, idx, value):
    """Set ``data[col][idx] = value`` in place (the column keeps its type)."""
    with fits.open(p, mode="update") as h:
        h[ext].data[col][idx] = value
    return p


def rebuild(p, ext, drop=(), replace=None, empty=False, name=None):
    """Rewrite table ``ext`` without columns ``drop``, with {name: Column} replaced, with no
    rows (``empty``) or with a new EXTNAME (HDUCLAS keywords removed)."""
    with fits.open(p) as h:
        hdus = []
        for i, hdu in enumerate(h):
            if i == 0 or hdu.name != ext:
                hdus.append(hdu.copy())
                continue
            cols = [(replace or {}).get(c.name, c) for c in hdu.columns if c.name not in drop]
            hdr = hdu.header.copy()
            if name is not None:
                hdr["EXTNAME"] = name
                for k in ("HDUCLAS1", "HDUCLAS2", "HDUCLAS3"):
                    hdr.remove(k, ignore_missing=True)
            if empty:
                new = fits.BinTableHDU(data=hdu.data[:0], header=hdr)
            else:
                new = fits.BinTableHDU.from_columns(cols, header=hdr)
            hdus.append(new)
        out = fits.HDUList(hdus)
        out.writeto(str(p) + ".new")
    os.replace(str(p) + ".new", p)
    return p


def float_col(p, ext, col, idx, value):
    """Turn integer column ``col`` into a float one and set ``[idx] = value`` (NaN, inf)."""
    with fits.open(p) as h:
        c = h[ext].columns[col]
        a = np.asarray(h[ext].data[col], float).copy()
    a[idx] = value
    new = fits.Column(c.name, "D", unit=c.unit, array=a, coord_type=c.coord_type,
                      coord_ref_point=c.coord_ref_point, coord_ref_value=c.coord_ref_value,
                      coord_inc=c.coord_inc)
    return rebuild(p, ext, replace={col: new})


def stray(d):
    """The EPIC events plus one event 5° north of the pointing."""
    rng = np.random.default_rng(0)
    dy, dx = rng.uniform(-20, 20, (2, N_EPIC))
    ra, dec = sky(dy, dx)
    ra, dec = np.append(ra, RA0), np.append(dec, DEC0 + 5.0)
    return xf.io.write_events(d / "pn.fits", "epic", energy=np.full(N_EPIC + 1, 2.0), ra=ra,
                              dec=dec, exposure=1e3, pointing=(RA0, DEC0))


def spread(d):
    """Two events 1° apart: the default 0.5″ grid holding both would be 7203² × 15."""
    return xf.io.write_events(d / "pn.fits", "epic", energy=[2.0, 2.0], ra=[RA0, RA0],
                              dec=[DEC0 - 0.5, DEC0 + 0.5], exposure=1e3, pointing=(RA0, DEC0))


def junk(d):
    p = d / "junk.fits"
    p.write_bytes(b"SIMPLE  = this is not a FITS header" + b"x" * 3000)
    return p


# -------------------------------------------------------------------------------- readers
def read_epic(p, **kw):
    return xf.io.read_events(p, energy_edges=EDGES, pixel_size=5.0, **kw)


def read_resolve(p):
    return xf.io.read_events(p, energy_edges=EDGES)


def read_generic(p):
    return xf.io.read_events(p, "generic", energy_edges=EDGES, x_col="SKYX", y_col="SKYY",
                             energy_col="ENERGY", pixel_size=1.0)


def read_psf(p, **kw):
    return xf.io.psf_from_fits(p, 1.0, **kw)


# -------------------------------------------------------------------------------- outcomes
def counted(total, small=None, **attrs):
    """Check: the cube holds ``total`` counts, the attrs given, and (``small``) a small grid."""
    def check(c):
        assert int(c.sum()) == total
        for k, v in attrs.items():
            assert c.attrs[k] == v, (k, c.attrs[k], v)
        if small is not None:
            assert c.sizes["y"] <= small and c.sizes["x"] <= small
    return check


def nonnegative_rmf(c):
    assert (c.values >= 0).all() and c.values.min() == 0
    assert c.values.sum(axis=1).max() <= 1.0 + 1e-5


@dataclass
class Case:
    id: str
    make: Callable
    read: Callable
    error: type | None = None
    match: str | None = None  # error message, or warning message (None: no warning)
    check: Callable | None = None


E = FileFormatError
CASES = [
    # ---------------------------------------------------------------- EPIC event lists
    Case("epic-truncated-data", lambda d: truncate(epic(d), 8640), read_epic, E,
         r"truncated or corrupt FITS file: HDU #1 \(EVENTS\) needs \d+ bytes"),
    Case("epic-truncated-header", lambda d: truncate(epic(d), 4000), read_epic, E,
         r"truncated or corrupt FITS file: 1120 bytes after the last complete HDU"),
    Case("epic-truncated-to-primary", lambda d: truncate(epic(d), 2880), read_epic, E,
         r"no EVENTS \(event list\) extension.*\['PRIMARY'\]"),
    Case("epic-truncated-within-primary", lambda d: truncate(epic(d), 100), read_epic, E,
         "not a readable FITS file"),
    Case("epic-not-fits", junk, read_epic, E, "not a readable FITS file"),
    Case("epic-missing-X", lambda d: rebuild(epic(d), "EVENTS", drop=("X",)), read_epic, E,
         "no column 'X'"),
    Case("epic-missing-PI", lambda d: rebuild(epic(d), "EVENTS", drop=("PI",)), read_epic, E,
         "no column 'PI'"),
    Case("epic-missing-FLAG", lambda d: rebuild(epic(d), "EVENTS", drop=("FLAG",)), read_epic,
         E, "no column 'FLAG'"),
    Case("epic-PI-wrong-unit", lambda d: header(epic(d), "EVENTS", TUNIT4="arcsec"), read_epic,
         E, "column 'PI' has unit 'arcsec'"),
    Case("epic-wrong-HDU", lambda d: rebuild(epic(d), "EVENTS", name="STDGTI"), read_epic, E,
         r"no EVENTS \(event list\) extension.*'STDGTI'"),
    Case("epic-empty-table", lambda d: rebuild(epic(d), "EVENTS", empty=True), read_epic, E,
         "event list 'EVENTS' is empty"),
    Case("epic-exposure-zero", lambda d: header(epic(d), "EVENTS", EXPOSURE=0.0), read_epic, E,
         r"EXPOSURE = 0\.0 in the EVENTS header is not a positive exposure; pass exposure="),
    Case("epic-exposure-negative", lambda d: header(epic(d), "EVENTS", EXPOSURE=-5.0),
         read_epic, E, r"EXPOSURE = -5\.0 in the EVENTS header is not a positive exposure"),
    Case("epic-exposure-not-a-number", lambda d: header(epic(d), "EVENTS", EXPOSURE="NaN"),
         read_epic, E, r"EXPOSURE = 'NaN' in the EVENTS header is not a positive exposure"),
    Case("epic-exposure-absent",
         lambda d: header(epic(d), "EVENTS", delete=("EXPOSURE", "LIVETIME", "ONTIME")),
         read_epic, E, "no exposure keyword"),
    Case("epic-per-ccd-livetimes-zero",
         lambda d: header(epic(d), "EVENTS", delete=("EXPOSURE", "LIVETIME", "ONTIME"),
                          LIVETI01=0.0, LIVETI04=0.0),
         read_epic, E, r"no positive exposure in the per-CCD keywords \(LIVETI01 = 0\.0"),
    Case("epic-X-TNULL", lambda d: values(header(epic(d), "EVENTS", TNULL2=-1), "EVENTS", "X",
                                          slice(0, 3), -1),
         read_epic, None, r"3 of 200 events left out for invalid values \(3 with X null "
         r"\(TNULL2 = -1\)\)", counted(197, small=11, n_invalid=3)),
    Case("epic-X-conventional-null", lambda d: values(epic(d), "EVENTS", "X", slice(0, 5),
                                                      -99999999),
         read_epic, None, r"5 of 200 events left out.*5 with X null \(-99999999\)",
         counted(195, small=11, n_invalid=5)),
    Case("epic-X-and-Y-null", lambda d: values(values(epic(d), "EVENTS", "X", [0, 1],
                                                      -99999999), "EVENTS", "Y", [1, 2],
                                               -99999999),
         read_epic, None, r"3 of 200 events left out.*2 with X null.*2 with Y null",
         counted(197, small=11, n_invalid=3)),
    Case("epic-X-NaN", lambda d: float_col(epic(d), "EVENTS", "X", [4, 7], np.nan), read_epic,
         None, r"2 of 200 events left out.*2 with X NaN or infinite",
         counted(198, small=11, n_invalid=2)),
    Case("epic-Y-infinite", lambda d: float_col(epic(d), "EVENTS", "Y", [0], np.inf),
         read_epic, None, r"1 of 200 events left out.*1 with Y NaN or infinite",
         counted(199, small=11, n_invalid=1)),
    Case("epic-X-above-TLMAX",
         lambda d: values(header(epic(d), "EVENTS", TLMIN2=1, TLMAX2=51840), "EVENTS", "X",
                          [3], 60000),
         read_epic, None, r"1 of 200 events left out.*1 with X above TLMAX2 = 51840",
         counted(199, small=11, n_invalid=1)),
    Case("epic-PI-TNULL", lambda d: values(header(epic(d), "EVENTS", TNULL4=-1), "EVENTS", "PI",
                                           slice(10, 14), -1),
         read_epic, None, r"4 of 200 events left out.*4 with PI null \(TNULL4 = -1\)",
         counted(196, n_invalid=4)),
    Case("epic-PI-negative", lambda d: values(epic(d), "EVENTS", "PI", slice(0, 6), -300),
         read_epic, None, None, counted(194, n_invalid=0, n_selected=194)),
    Case("epic-all-X-null", lambda d: values(epic(d), "EVENTS", "X", slice(None), -99999999),
         read_epic, E, r"no events left after selection \(valid X, Y, PI: 0"),
    Case("epic-stray-event-5-degrees", stray, read_epic, None,
         r"1 of 201 selected events lie far outside the field.*out to 5\.0\d*°.*"
         r"pass shape= or wcs=",
         counted(200, small=11, n_outside_field=1)),
    Case("epic-stray-event-explicit-grid", stray,
         lambda p: read_epic(p, shape=(11, 11), centre=(RA0, DEC0)), None, None,
         counted(200, n_binned=200)),
    Case("epic-default-grid-too-large", spread, lambda p: xf.io.read_events(
        p, energy_edges=EDGES, pixel_size=0.5), E,
        r"default grid \(7203×7203 pixels of 0\.5″ × 15 energies.*exceeds MAX_AUTO_VOXELS.*"
        r"pass shape= or wcs="),
    Case("epic-PI-above-int16", lambda d: epic(d, n=3, energy=[2.0, 40.0, 45.5]),
         lambda p: xf.io.read_events(p, energy_edges=[1.0, 35.0, 42.0, 50.0], pixel_size=5.0),
         None, None, lambda c: np.testing.assert_array_equal(c.values.sum(axis=(1, 2)),
                                                             [1, 1, 1])),
    # ------------------------------------------------------------- Resolve event lists
    Case("resolve-truncated", lambda d: truncate(resolve(d), -2000), read_resolve, E,
         r"truncated or corrupt FITS file: HDU #1 \(EVENTS\)"),
    Case("resolve-missing-PIXEL", lambda d: rebuild(resolve(d), "EVENTS", drop=("PIXEL",)),
         read_resolve, E, "no column 'PIXEL'"),
    Case("resolve-missing-ITYPE", lambda d: rebuild(resolve(d), "EVENTS", drop=("ITYPE",)),
         read_resolve, E, "no column 'ITYPE'"),
    Case("resolve-PI-wrong-unit", lambda d: header(resolve(d), "EVENTS", TUNIT3="arcsec"),
         read_resolve, E, "column 'PI' has unit 'arcsec'"),
    Case("resolve-empty-table", lambda d: rebuild(resolve(d), "EVENTS", empty=True), read_resolve,
         E, "is empty"),
    Case("resolve-wrong-HDU", lambda d: rebuild(resolve(d), "EVENTS", name="GTI"),
         read_resolve, E, r"no EVENTS \(event list\) extension"),
    Case("resolve-exposure-zero",
         lambda d: header(resolve(d), "EVENTS", EXPOSURE=0.0), read_resolve, E,
         r"EXPOSURE = 0\.0 in the EVENTS header is not a positive exposure"),
    Case("resolve-PIXEL-not-in-map", lambda d: values(resolve(d), "EVENTS", "PIXEL", [5], 40),
         read_resolve, E, r"PIXEL values \[40\] are not in the pixel map"),
    Case("resolve-PIXEL-TNULL",
         lambda d: values(header(resolve(d), "EVENTS", TNULL2=255), "EVENTS", "PIXEL", [0, 3],
                          255),
         lambda p: xf.io.read_events(p, energy_edges=EDGES, itype=None, exclude_pixels=()),
         None, r"2 of 108 events left out.*2 with PIXEL null \(TNULL2 = 255\)",
         counted(106, n_invalid=2)),
    Case("resolve-PI-TNULL",
         lambda d: values(header(resolve(d), "EVENTS", TNULL3=-1), "EVENTS", "PI", [0, 1, 2], -1),
         lambda p: xf.io.read_events(p, energy_edges=EDGES, itype=None, exclude_pixels=()),
         None, r"3 of 108 events left out.*3 with PI null \(TNULL3 = -1\)",
         counted(105, n_invalid=3)),
    Case("resolve-PI-NaN", lambda d: float_col(resolve(d), "EVENTS", "PI", [7], np.nan),
         lambda p: xf.io.read_events(p, energy_edges=EDGES, itype=None, exclude_pixels=()),
         None, r"1 of 108 events left out.*1 with PI NaN or infinite", counted(107, n_invalid=1)),
    Case("resolve-no-pointing", lambda d: header(resolve(d), "EVENTS", delete=("RA_NOM",)),
         read_resolve, E, "no RA_NOM keyword"),
    # ------------------------------------------------------------- generic event lists
    Case("generic-truncated", lambda d: truncate(generic(d), 5000), read_generic, E,
         "truncated or corrupt FITS file"),
    Case("generic-missing-energy",
         lambda d: rebuild(generic(d), "EVENTS", drop=("ENERGY",)), read_generic, E,
         "no column 'ENERGY'"),
    Case("generic-missing-x", lambda d: rebuild(generic(d), "EVENTS", drop=("SKYX",)),
         read_generic, E, "no column 'SKYX'"),
    Case("generic-energy-no-unit", lambda d: header(generic(d), "EVENTS", delete=("TUNIT3",)),
         read_generic, E, "energy column 'ENERGY' has no energy unit.*energy_unit="),
    Case("generic-energy-wrong-unit", lambda d: header(generic(d), "EVENTS", TUNIT3="arcsec"),
         read_generic, E, "column 'ENERGY' has unit 'arcsec'; expected something convertible"),
    Case("generic-energy-NaN", lambda d: values(generic(d), "EVENTS", "ENERGY", [1, 2],
                                                np.nan),
         read_generic, None, r"2 of 50 events left out.*2 with ENERGY NaN or infinite",
         counted(48, n_invalid=2)),
    Case("generic-x-NaN", lambda d: values(generic(d), "EVENTS", "SKYX", [0], np.nan),
         read_generic, None, r"1 of 50 events left out.*1 with SKYX NaN or infinite",
         counted(49, n_invalid=1)),
    Case("generic-y-minus-infinity", lambda d: values(generic(d), "EVENTS", "SKYY", [3, 4],
                                                      -np.inf),
         read_generic, None, r"2 of 50 events left out.*2 with SKYY NaN or infinite",
         counted(48, n_invalid=2)),
    Case("generic-no-sky-wcs", lambda d: header(generic(d), "EVENTS", delete=("TCRVL1",)),
         read_generic, E, "no sky WCS for column 'SKYX': missing TCRVL1"),
    Case("generic-not-celestial", lambda d: header(generic(d), "EVENTS", TCTYP1="DETX",
                                                   TCTYP2="DETY"),
         read_generic, E, "have WCS types.*not celestial"),
    Case("generic-empty-table", lambda d: rebuild(generic(d), "EVENTS", empty=True), read_generic,
         E, "is empty"),
    # ------------------------------------------------------------------------------ ARF
    Case("arf-truncated", lambda d: cut_in_data(arf(d), "SPECRESP"), xf.io.read_arf, E,
         r"truncated or corrupt FITS file: HDU #1 \(SPECRESP\)"),
    Case("arf-gzip-truncated", lambda d: _gzip(arf(d), keep=0.6), xf.io.read_arf, E,
         "truncated or corrupt gzip file"),
    Case("arf-gzip-good", lambda d: _gzip(arf(d)), xf.io.read_arf, None, None,
         lambda a: np.testing.assert_allclose(a.values, 100 + 10 * np.linspace(0.3, 9.0, 30),
                                              rtol=1e-6)),
    Case("arf-missing-SPECRESP", lambda d: rebuild(arf(d), "SPECRESP", drop=("SPECRESP",)),
         xf.io.read_arf, E, "no column 'SPECRESP'"),
    Case("arf-missing-ENERG_LO", lambda d: rebuild(arf(d), "SPECRESP", drop=("ENERG_LO",)),
         xf.io.read_arf, E, "no column 'ENERG_LO'"),
    Case("arf-energy-wrong-unit", lambda d: header(arf(d), "SPECRESP", TUNIT1="arcsec"),
         xf.io.read_arf, E, "column ENERG_LO has unit 'arcsec'"),
    Case("arf-area-wrong-unit", lambda d: header(arf(d), "SPECRESP", TUNIT3="keV"),
         xf.io.read_arf, E, "column SPECRESP has unit 'keV'; expected something convertible"),
    Case("arf-area-NaN", lambda d: values(arf(d), "SPECRESP", "SPECRESP", [2, 5], np.nan),
         xf.io.read_arf, E, r"column SPECRESP has 2 non-finite effective areas \(the first at "
         r"0\.9"),
    Case("arf-area-negative", lambda d: values(arf(d), "SPECRESP", "SPECRESP", [4], -3.0),
         xf.io.read_arf, E, r"column SPECRESP has 1 negative effective areas \(min -3 cm2"),
    Case("arf-energy-NaN", lambda d: values(arf(d), "SPECRESP", "ENERG_LO", [3], np.nan),
         xf.io.read_arf, E, "non-finite bin edges"),
    Case("arf-energy-decreasing", lambda d: values(arf(d), "SPECRESP", "ENERG_HI", [3], 0.1),
         xf.io.read_arf, E, "bin 3 has upper edge"),
    Case("arf-empty-table", lambda d: rebuild(arf(d), "SPECRESP", empty=True), xf.io.read_arf, E,
         "has no rows"),
    Case("arf-wrong-HDU", lambda d: rebuild(arf(d), "SPECRESP", name="EFFAREA"),
         xf.io.read_arf, E, r"no SPECRESP \(ARF\) extension.*'EFFAREA'"),
    # ------------------------------------------------------------------------------ RMF
    Case("rmf-truncated-heap", lambda d: cut_in_data(rmf(d, variable_length=True),
                                                          "MATRIX"),
         xf.io.read_rmf, E, r"truncated or corrupt FITS file: HDU #1 \(MATRIX\)"),
    Case("rmf-truncated-header", lambda d: truncate(rmf(d), 2880 * 2 + 100), xf.io.read_rmf,
         E, "truncated or corrupt FITS file"),
    Case("rmf-missing-MATRIX-column", lambda d: rebuild(rmf(d), "MATRIX", drop=("MATRIX",)),
         xf.io.read_rmf, E, "extension 'MATRIX' has no column 'MATRIX'"),
    Case("rmf-missing-N_GRP", lambda d: rebuild(rmf(d), "MATRIX", drop=("N_GRP",)),
         xf.io.read_rmf, E, "no column 'N_GRP'"),
    Case("rmf-missing-EBOUNDS", lambda d: rebuild(rmf(d), "EBOUNDS", name="CHANNELS"),
         xf.io.read_rmf, E, "no EBOUNDS extension"),
    Case("rmf-missing-E_MIN", lambda d: rebuild(rmf(d), "EBOUNDS", drop=("E_MIN",)),
         xf.io.read_rmf, E, "extension 'EBOUNDS' has no column 'E_MIN'"),
    Case("rmf-wrong-HDU", lambda d: rebuild(rmf(d), "MATRIX", name="RESPONSE"), xf.io.read_rmf,
         E, "no redistribution matrix extension"),
    Case("rmf-empty-matrix", lambda d: rebuild(rmf(d), "MATRIX", empty=True), xf.io.read_rmf, E,
         "matrix extension 'MATRIX' has no rows"),
    Case("rmf-energy-wrong-unit", lambda d: header(rmf(d), "MATRIX", TUNIT1="arcsec"),
         xf.io.read_rmf, E, "MATRIX column ENERG_LO has unit 'arcsec'"),
    Case("rmf-MATRIX-NaN", lambda d: values(rmf(d), "MATRIX", "MATRIX", (4, 0), np.nan),
         xf.io.read_rmf, E, r"MATRIX column MATRIX has 1 NaN or infinite values \(the first in "
         r"row 4\)"),
    Case("rmf-MATRIX-negative-noise",
         lambda d: values(values(rmf(d), "MATRIX", "MATRIX", (3, 0), -1e-6), "MATRIX", "MATRIX",
                          (6, 0), -2e-5),
         xf.io.read_rmf, None, r"r\.rmf: MATRIX column MATRIX has 2 negative values \(the most "
         r"negative -2e-05.*within RMF_NEGATIVE_TOLERANCE = 0\.001.*set to 0", nonnegative_rmf),
    Case("rmf-MATRIX-negative-large", lambda d: values(rmf(d), "MATRIX", "MATRIX", (3, 0), -0.2),
         xf.io.read_rmf, E, r"MATRIX column MATRIX has 1 negative values \(the most negative "
         r"-0\.2.*beyond RMF_NEGATIVE_TOLERANCE"),
    Case("rmf-N_GRP-negative", lambda d: values(rmf(d), "MATRIX", "N_GRP", [2], -1),
         xf.io.read_rmf, E, r"MATRIX column N_GRP has negative values \(min -1\)"),
    Case("rmf-N_CHAN-negative", lambda d: values(rmf(d), "MATRIX", "N_CHAN", [5], -4),
         xf.io.read_rmf, E, r"MATRIX column N_CHAN row 5 has negative values"),
    Case("rmf-group-past-last-channel", lambda d: values(rmf(d), "MATRIX", "F_CHAN", [5], 19),
         xf.io.read_rmf, E, r"row 5 group 0 covers channels 19\.\.\d+, outside 0\.\.19"),
    Case("rmf-E_MIN-NaN", lambda d: values(rmf(d), "EBOUNDS", "E_MIN", [7], np.nan),
         xf.io.read_rmf, E, r"EBOUNDS columns E_MIN/E_MAX have 1 non-finite values \(first at "
         r"channel 7\)"),
    Case("rmf-E_MAX-below-E_MIN", lambda d: values(rmf(d), "EBOUNDS", "E_MAX", [8], 0.1),
         xf.io.read_rmf, E, r"EBOUNDS channel 8 has E_MAX 0\.1 < E_MIN"),
    Case("rmf-DETCHANS-mismatch", lambda d: header(rmf(d), "MATRIX", DETCHANS=25),
         xf.io.read_rmf, E, "EBOUNDS has 20 channels but MATRIX DETCHANS = 25"),
    # ------------------------------------------------------------------------------ PSF
    Case("psf-truncated", lambda d: truncate(psf(d), 3000), read_psf, E,
         r"truncated or corrupt FITS file: HDU #0 \(PSF0\)"),
    Case("psf-NaN", lambda d: _psf_with(d, np.nan), read_psf, E,
         r"\[PSF0\]: PSF image has non-finite values"),
    Case("psf-negative", lambda d: _psf_with(d, -1.0), read_psf, E,
         r"\[PSF0\]: PSF image has negative values"),
    Case("psf-no-pixel-size", lambda d: header(psf(d), 0, delete=("CDELT1", "CDELT2")),
         read_psf, E, r"\[PSF0\]: no pixel size.*psf_pixel_size="),
    Case("psf-wrong-unit", lambda d: header(psf(d), 0, CUNIT1="keV"), read_psf, E,
         r"CUNIT1 = 'kev' is not an angle unit"),
    Case("psf-wrong-HDU", lambda d: _table_only(d), read_psf, E, "no image HDU with data"),
    Case("psf-3d", lambda d: psf(d, images=[np.ones((3, 5, 5))]), read_psf, E,
         r"PSF image must be 2-D, got shape \(3, 5, 5\)"),
    Case("psf-bands-without-energy", lambda d: psf(d, images=[np.ones((5, 5))] * 2),
         lambda p: read_psf(p, energy_edges=[1.0, 2.0, 3.0]), E,
         "not all have an ENERGY"),
    # ------------------------------------------------------- GTIs, per-CCD exposure, maps
    Case("epic-outside-gti-dropped", lambda d: epic(d, time=np.arange(N_EPIC) * 1.0,
                                                    gti=[[0, 100]]),
         read_epic, None, None, counted(100)),
    Case("epic-time-range", lambda d: epic(d, time=np.arange(N_EPIC) * 1.0, gti=[[0, 200]]),
         lambda p: read_epic(p, time_range=(50, 100)), None, None,
         counted(50, exposure=50.0)),  # |GTI ∩ S| × LIVETIME/ONTIME (1 here)
    Case("epic-gti-stop-before-start", lambda d: values(epic(d, gti=[[0, 100], [200, 300]]),
                                                        "GTI", "STOP", [1], 150.0),
         read_epic, E, r"GTI extension 'GTI' row 1 has STOP 150\.0 < START 200\.0"),
    Case("epic-gti-NaN", lambda d: values(epic(d, gti=[[0, 100]]), "GTI", "START", [0], np.nan),
         read_epic, E, "GTI extension 'GTI' has non-finite START/STOP"),
    Case("epic-gti-no-STOP", lambda d: rebuild(epic(d, gti=[[0, 100]]), "GTI", drop=("STOP",)),
         read_epic, E, "GTI extension 'GTI' has no column STOP"),
    Case("epic-time-range-without-gti", epic, lambda p: read_epic(p, time_range=(0, 1)), E,
         "a time selection needs the file's good time intervals"),
    Case("epic-ccd-without-live-time", lambda d: epic(d, ccd=np.full(N_EPIC, 3),
                                                      header={"LIVETI04": 900.0}),
         read_epic, E, r"events on CCD 3 \(CCDNR\), but no LIVETI03, ONTIME03 or STDGTI03"),
    Case("epic-ccd-live-time-negative", lambda d: epic(d, ccd=np.full(N_EPIC, 4),
                                                       header={"LIVETI04": -9.0}),
         read_epic, E, r"LIVETI04 = -9\.0 in the EVENTS header is not a positive exposure"),
    Case("epic-per-ccd-without-CCDNR",
         lambda d: header(epic(d, header={"LIVETI01": 5.0, "LIVETI04": 50.0}), "EVENTS",
                          delete=("EXPOSURE", "LIVETIME", "ONTIME")),
         read_epic, None, r"per-CCD exposures differ .*taking the largest, LIVETI04",
         counted(N_EPIC, exposure=50.0)),
    Case("expmap-no-wcs", lambda d: expmap(d, CTYPE1=None, CTYPE2=None), xf.io.read_expmap, E,
         "exposure map has no celestial WCS"),
    Case("expmap-NaN", lambda d: expmap(d, image=np.full((8, 8), np.nan)), xf.io.read_expmap,
         E, "exposure map has 64 non-finite values"),
    Case("expmap-negative", lambda d: expmap(d, image=np.full((8, 8), -1.0)),
         xf.io.read_expmap, E, "exposure map has negative values"),
    Case("expmap-wrong-unit", lambda d: expmap(d, BUNIT="erg"), xf.io.read_expmap, E,
         r"BUNIT = 'erg' is neither a time \(s\) nor an area × time"),
    Case("expmap-3d", lambda d: expmap(d, image=np.ones((2, 8, 8))), xf.io.read_expmap, E,
         r"exposure map must be a 2-D image, got shape \(2, 8, 8\)"),
    Case("expmap-bad-band", lambda d: expmap(d, PI_MIN="soft"), xf.io.read_expmap, E,
         "PI_MIN = 'soft', PI_MAX = 2000 are not numbers"),
    Case("expmap-table-only", lambda d: _table_only(d), xf.io.read_expmap, E,
         "no image HDU with data"),
]


def expmap(d, image=None, **keys):
    """An exposure map (8 × 8, 4″ pixels, 0.5–2 keV) with header keywords changed (None:
    removed); a 3-D ``image`` is written as it is."""
    img = np.full((8, 8), 500.0) if image is None else np.asarray(image, float)
    w = xf.io.make_wcs((RA0, DEC0), 4.0, (8, 8))
    hdu = fits.PrimaryHDU(img, header=w.to_header())
    hdu.header.update({"BUNIT": "s", "PI_MIN": 500, "PI_MAX": 2000})
    for k, v in keys.items():
        if v is None:
            hdu.header.remove(k, ignore_missing=True)
        else:
            hdu.header[k] = v
    p = d / "expmap.fits"
    hdu.writeto(p)
    return p


def _gzip(p, keep=1.0):
    with open(p, "rb") as f:
        data = gzip.compress(f.read())
    out = pathlib.Path(str(p) + ".gz")
    out.write_bytes(data[:int(len(data) * keep)])
    return out


def _psf_with(d, value):
    y, x = np.mgrid[-10:11, -10:11]
    img = np.exp(-0.5 * (x**2 + y**2) / 9.0)
    img[2, 3] = value
    return psf(d, images=img)


def _table_only(d):
    p = d / "psf.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("PSF", "E", array=[1.0, 2.0])], name="PSF")]).writeto(p)
    return p


def test_the_table_is_large_and_ids_are_unique():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(tmp_path, case):
    p = case.make(tmp_path)
    if case.error is not None:
        with pytest.raises(case.error, match=case.match) as exc, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. the count of invalid events
            case.read(p)
        assert str(p) in str(exc.value), "the message must name the file"
        assert "\n" not in str(exc.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = case.read(p)
    user = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if case.match is None:
        assert not user, user
    else:
        assert len(user) == 1, user
        assert str(p) in user[0]
        assert re.search(case.match, user[0]), (case.match, user[0])
    case.check(out)


# ------------------------------------------------------------------------------- writers
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, mask, expected):
    old = os.umask(mask)
    try:
        paths = [epic(tmp_path), arf(tmp_path), rmf(tmp_path), psf(tmp_path)]
    finally:
        os.umask(old)
    for p in paths:
        assert stat.S_IMODE(os.stat(p).st_mode) == expected, p


def test_overwrite_keeps_the_mode_of_the_replaced_file(tmp_path):
    p = arf(tmp_path)
    os.chmod(p, 0o640)
    lo = np.linspace(0.3, 9.0, 30)
    xf.io.write_arf(p, lo, lo + 0.3, 50 + lo, overwrite=True)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_write_events_pi_column_is_wide_enough(tmp_path):
    small = epic(tmp_path, n=2, energy=[1.0, 32.7])
    assert fits.getheader(small, "EVENTS")["TFORM4"] == "I"
    p = xf.io.write_events(tmp_path / "hi.fits", "epic", energy=[2.0, 32.768, 60.0],
                           ra=[RA0] * 3, dec=[DEC0] * 3, exposure=1.0)
    assert fits.getheader(p, "EVENTS")["TFORM4"] == "J"
    np.testing.assert_array_equal(fits.getdata(p, "EVENTS")["PI"], [2000, 32768, 60000])


@pytest.mark.parametrize("kw, match", [
    ({"energy": [1.0, np.nan]}, "energy has 1 NaN or infinite"),
    ({"ra": [RA0, np.nan]}, "ra, dec have NaN"),
    ({"pattern": [0, 300]}, r"pattern has values 0\.\.300, outside the uint8 range"),
    ({"pattern": [0.5, 1]}, "pattern has values that are not integers"),
    ({"flag": [0]}, r"flag has shape \(1,\); expected \(2,\)"),
])
def test_write_events_refuses_values_it_cannot_store(tmp_path, kw, match):
    args = {"energy": [1.0, 2.0], "ra": [RA0, RA0], "dec": [DEC0, DEC0], **kw}
    with pytest.raises(ValueError, match=match):
        xf.io.write_events(tmp_path / "w.fits", "epic", exposure=1.0, **args)
    assert not os.path.exists(tmp_path / "w.fits")


def test_write_events_resolve_pixel_out_of_range(tmp_path):
    with pytest.raises(ValueError, match=r"pixel has values -1\.\.5, outside the uint8"):
        xf.io.write_events(tmp_path / "r.fits", "resolve", energy=[1.0, 2.0], pixel=[-1, 5],
                           exposure=1.0, pointing=(RA0, DEC0))


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    from xfusion._atomic import atomic_path

    target = tmp_path / "sub" / "out.json"
    with atomic_path(target, suffix=".json") as tmp:
        assert os.path.dirname(tmp) == str(target.parent)
        with open(tmp, "w") as fh:
            fh.write("one")
    assert target.read_text() == "one"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_path(target):
            pass
    with pytest.raises(RuntimeError, match="half-written"):
        with atomic_path(target, overwrite=True) as tmp:
            with open(tmp, "w") as fh:
                fh.write("two")
            raise RuntimeError("half-written")
    assert target.read_text() == "one"
    assert sorted(os.listdir(target.parent)) == ["out.json"]
