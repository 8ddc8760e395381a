"""Exposure from the files: GTIs, per-CCD live times, exposure maps, (energy, y, x) areas."""

import warnings

import dask
import numpy as np
import pytest
import xarray as xr

import xfusion as xf
from xfusion import ProblemError
from xfusion.io import FileFormatError
from xfusion.options import REGULARIZERS

from .conftest import consistent_problem
from .test_io_assemble import DEC0, PITCH, RA0, ROLL, rmf_arrays

EDGES = np.linspace(0.5, 8.0, 4)
T4, T5 = 39200.0, 40000.0  # live times of CCDs 4 and 5: CCD 4 is 2 % below the largest


# ---------------------------------------------------------------------------- intervals
def test_interval_algebra_against_a_fine_time_grid():
    rng = np.random.default_rng(0)
    t = np.arange(0, 1000, 0.25) + 0.125  # sample points (no point on an edge)
    for _ in range(20):
        a = np.sort(rng.uniform(0, 1000, (12, 2)), axis=1).round()
        b = np.sort(rng.uniform(0, 1000, (7, 2)), axis=1).round()
        ina = ((t[:, None] >= a[:, 0]) & (t[:, None] < a[:, 1])).any(1)
        inb = ((t[:, None] >= b[:, 0]) & (t[:, None] < b[:, 1])).any(1)
        m = xf.io.merge_intervals(a)
        assert (np.diff(m, axis=0)[:, 0] > 0).all() and (m[1:, 0] > m[:-1, 1]).all()
        np.testing.assert_array_equal(xf.io.in_intervals(t, a), ina)
        ab = xf.io.intersect_intervals(a, b)
        np.testing.assert_array_equal(xf.io.in_intervals(t, ab), ina & inb)
        assert xf.io.interval_length(a) == pytest.approx(0.25 * ina.sum())
        assert xf.io.interval_length(ab) == pytest.approx(0.25 * (ina & inb).sum())
    np.testing.assert_array_equal(xf.io.merge_intervals([[0, 1], [1, 2], [5, 5]]), [[0, 2]])


# ------------------------------------------------------------------------- EPIC per CCD
def grid():
    return xf.io.make_wcs((RA0, DEC0), 5.0, (10, 10))


def two_ccd_events(d, header=None, gti=None, exposure=None, n_per_pixel=3, **kw):
    """Events on a 10 × 10 grid of 5″ pixels: columns 0–4 on CCD 4, 5–9 on CCD 5, and in
    column 5 every third event on CCD 4 (a chip boundary); times 0, 10, ..., spread evenly."""
    iy, ix = np.mgrid[0:10, 0:10]
    iy, ix = (np.repeat(a.ravel(), n_per_pixel) for a in (iy, ix))
    n = iy.size
    ccd = np.where(ix < 5, 4, 5)
    ccd[(ix == 5) & (np.arange(n) % 3 == 0)] = 4
    ra, dec = grid().wcs_pix2world(ix.astype(float), iy.astype(float), 0)
    time = (np.arange(n) * 997) % 1000 + 0.5  # each time 0.5 .. 999.5 s
    hdr = {"LIVETIME": T4, "ONTIME": 40000.0, "LIVETI04": T4, "ONTIME04": 40000.0,
           "LIVETI05": T5, "ONTIME05": 40400.0}
    hdr.update(header or {})
    p = xf.io.write_events(d / "pn.fits", "epic", energy=np.full(n, 2.0), ra=ra, dec=dec,
                           time=time, ccd=ccd, exposure=exposure, pointing=(RA0, DEC0),
                           header=hdr, gti=gti, **kw)
    return p, dict(iy=iy, ix=ix, ccd=ccd, time=time)


def read(p, **kw):
    return xf.io.read_events(p, energy_edges=EDGES, wcs=grid(), **kw)


def test_epic_exposure_is_that_of_each_pixels_ccd(tmp_path):
    p, ev = two_ccd_events(tmp_path)
    c = read(p)
    # reference: CCD 4 holds most events (5 columns and 1/3 of column 5), not the largest T5
    assert c.attrs["exposure"] == T4 and c.attrs["exposure_keyword"].startswith("LIVETI04")
    assert c.attrs["ccds"] == [4, 5] and c.attrs["ccd_exposures"] == [T4, T5]
    m = c["exposure_map"].values
    assert c["exposure_map"].attrs["units"] == "s"
    np.testing.assert_array_equal(m[:, :5], T4)
    np.testing.assert_array_equal(m[:, 6:], T5)
    # column 5: the mean of its events' CCDs, by hand
    for iy in range(10):
        sel = (ev["iy"] == iy) & (ev["ix"] == 5)
        ref = np.mean(np.where(ev["ccd"][sel] == 4, T4, T5))
        assert m[iy, 5] == pytest.approx(ref, rel=1e-12)
    # an explicit exposure overrides everything, scalar
    c = read(p, exposure=1234.0)
    assert c.attrs["exposure"] == 1234.0 and "exposure_map" not in c.coords


def test_one_ccd_or_equal_live_times_give_a_scalar(tmp_path):
    p, _ = two_ccd_events(tmp_path, header={"LIVETI05": T4})
    c = read(p)
    assert c.attrs["exposure"] == T4 and "exposure_map" not in c.coords
    # a grid holding only CCD 4's events: CCD 4's live time, not the largest (CCD 5's)
    w = xf.io.make_wcs(tuple(grid().wcs_pix2world([[2.0, 4.5]], 0)[0]), 5.0, (10, 5))
    p, _ = two_ccd_events(tmp_path, overwrite=True)
    c = xf.io.read_events(p, energy_edges=EDGES, wcs=w)
    assert c.attrs["exposure"] == T4 and c.attrs["exposure_keyword"] == "LIVETI04"
    assert c.attrs["ccds"] == [4] and "exposure_map" not in c.coords


def test_gtis_drop_events_and_time_selection_sets_the_exposure(tmp_path):
    gti = {4: [[0, 400], [600, 1000]], 5: [[0, 1000]]}
    p, ev = two_ccd_events(tmp_path, gti=gti)
    c = read(p)
    g4 = ((ev["time"] < 400) | (ev["time"] >= 600))
    kept = np.where(ev["ccd"] == 4, g4, True)
    assert int(c.sum()) == kept.sum() < ev["time"].size
    assert "in GTIs" in c.attrs["selection"]
    assert c.attrs["ccd_exposures"] == [T4, T5]  # the keywords: the whole observation

    c = read(p, time_range=(200, 700))
    inside = kept & (ev["time"] >= 200) & (ev["time"] < 700)
    assert int(c.sum()) == inside.sum()
    # |GTI_c ∩ S| · LIVETIcc / ONTIMEcc, by hand: CCD 4 (200-400, 600-700), CCD 5 (200-700)
    assert c.attrs["ccd_exposures"] == pytest.approx([300 * T4 / 40000.0, 500 * T5 / 40400.0])
    assert "∩ selection" in c.attrs["exposure_keyword"]

    # a GTI file (START/STOP), intersected with time_range
    f = xf.io.write_events(tmp_path / "gti.fits", "epic", energy=[2.0], ra=[RA0], dec=[DEC0],
                           exposure=1.0, gti=[[0, 250], [650, 1000]])
    np.testing.assert_array_equal(xf.io.read_gti(f), [[0, 250], [650, 1000]])
    c = read(p, time_range=[(200, 700), (900, 950)], gti_file=f)
    S = xf.io.intersect_intervals([(200, 700), (900, 950)], [[0, 250], [650, 1000]])
    L4 = xf.io.interval_length(xf.io.intersect_intervals(gti[4], S))
    L5 = xf.io.interval_length(xf.io.intersect_intervals(gti[5], S))
    assert c.attrs["ccd_exposures"] == pytest.approx([L4 * T4 / 4e4, L5 * T5 / 40400.0])
    assert int(c.sum()) == (kept & xf.io.in_intervals(ev["time"], S)).sum()


def test_gtis_per_ccd_with_an_explicit_exposure_or_without_ccdnr(tmp_path):
    gti = {4: [[0, 400]], 5: [[500, 1000]]}
    p, ev = two_ccd_events(tmp_path, gti=gti)
    on4 = ev["ccd"] == 4
    kept = np.where(on4, ev["time"] < 400, ev["time"] >= 500)
    c = read(p, exposure=100.0)  # the exposure is given; the screening stays per CCD
    assert int(c.sum()) == kept.sum() and c.attrs["exposure"] == 100.0
    # no CCDNR column: the union of the CCDs' GTIs, and the global LIVETIME
    from astropy.io import fits
    q = tmp_path / "noccd.fits"
    with fits.open(p) as h:
        cols = [col for col in h["EVENTS"].columns if col.name != "CCDNR"]
        h["EVENTS"] = fits.BinTableHDU.from_columns(cols, header=h["EVENTS"].header,
                                                    name="EVENTS")
        h.writeto(q)
    c = read(q)
    union = (ev["time"] < 400) | (ev["time"] >= 500)
    assert int(c.sum()) == union.sum() and c.attrs["exposure"] == T4
    assert c.attrs["exposure_keyword"] == "LIVETIME"


def test_time_selection_without_per_ccd_keywords(tmp_path):
    """Resolve / single-exposure files: |GTI ∩ S| times LIVETIME/ONTIME."""
    pix = np.arange(36).repeat(10)
    time = np.tile(np.arange(10) * 100 + 50.0, 36)
    p = xf.io.write_events(tmp_path / "rsl.fits", "resolve", energy=np.full(pix.size, 2.0),
                           pixel=pix, time=time, exposure=900.0, pointing=(RA0, DEC0),
                           header={"ONTIME": 1000.0}, gti=[[0, 500], [600, 1000]])
    c = xf.io.read_events(p, energy_edges=EDGES)
    assert c.attrs["exposure"] == 900.0 and int(c.sum()) == 35 * 9  # pixel 12 out; 550 s out
    c = xf.io.read_events(p, energy_edges=EDGES, time_range=(0, 300))
    assert c.attrs["exposure"] == pytest.approx(300 * 900.0 / 1000.0)
    assert int(c.sum()) == 35 * 3
    # no GTIs in the file: a selection is refused (the exposure would be a guess)
    q = xf.io.write_events(tmp_path / "nogti.fits", "resolve", energy=[2.0], pixel=[0],
                           exposure=900.0, pointing=(RA0, DEC0))
    with pytest.raises(FileFormatError, match="nogti.fits: a time selection needs the file's "
                                              "good time intervals"):
        xf.io.read_events(q, energy_edges=EDGES, time_range=(0, 300))
    # without per-CCD keywords but with LIVETIME/ONTIME: that fraction
    p2 = xf.io.write_events(tmp_path / "rsl2.fits", "resolve", energy=np.full(pix.size, 2.0),
                            pixel=pix, time=time, exposure=None, pointing=(RA0, DEC0),
                            header={"EXPOSURE": 880.0, "LIVETIME": 950.0, "ONTIME": 1000.0},
                            gti=[[0, 1000]])
    c = xf.io.read_events(p2, energy_edges=EDGES, time_range=(0, 300))
    assert c.attrs["exposure"] == pytest.approx(300 * 0.95)


@pytest.mark.parametrize("kw, error, match", [
    ({"time_range": (5, 1)}, ValueError, "time_range must be"),
    ({"time_range": [(1, 2, 3)]}, ValueError, "time_range must be"),
    ({"time_range": (float("nan"), 1)}, ValueError, "time_range must be"),
])
def test_bad_time_range(tmp_path, kw, error, match):
    p, _ = two_ccd_events(tmp_path)
    with pytest.raises(error, match=match):
        read(p, **kw)


def drop_keys(p, *keys):
    from astropy.io import fits
    with fits.open(p, mode="update") as h:
        for k in keys:
            del h["EVENTS"].header[k]
    return p


def test_per_ccd_refusals(tmp_path):
    p = drop_keys(two_ccd_events(tmp_path)[0], "LIVETI05", "ONTIME05")
    with pytest.raises(FileFormatError, match=r"pn.fits: events on CCD 5 \(CCDNR\), but no "
                                              r"LIVETI05, ONTIME05 or STDGTI05"):
        read(p)
    p, _ = two_ccd_events(tmp_path, header={"LIVETI05": 0.0}, overwrite=True)
    with pytest.raises(FileFormatError, match=r"LIVETI05 = 0\.0 in the EVENTS header is not a "
                                              r"positive exposure"):
        read(p)
    p, _ = two_ccd_events(tmp_path, gti={4: [[0, 1000]]}, overwrite=True)
    with pytest.raises(FileFormatError, match="needs CCD 5's good time intervals"):
        read(p, time_range=(0, 500))
    with pytest.raises(ValueError, match="time selection is empty"):
        f = xf.io.write_events(tmp_path / "g.fits", "epic", energy=[2.0], ra=[RA0], dec=[DEC0],
                               exposure=1.0, gti=[[0, 5]])
        read(p, time_range=(10, 20), gti_file=f)
    with pytest.raises(FileFormatError, match="GTI extension 'STDGTI04' row 0 has STOP"):
        q = tmp_path / "badgti.fits"
        from astropy.io import fits
        with fits.open(p) as h:
            h["STDGTI04"].data["STOP"][0] = -1.0
            h.writeto(q)
        read(q)


# ------------------------------------------------------------------------ exposure maps
def map_wcs(step=2.0, shape=(60, 60), centre=(RA0, DEC0)):
    return xf.io.make_wcs(centre, step, shape)


def test_read_expmap_units_and_bands(tmp_path):
    img = np.full((60, 60), 5.0)
    p = xf.io.write_expmap(tmp_path / "e.fits", img, map_wcs(), band=(0.5, 2.0))
    m = xf.io.read_expmap(p)
    assert m.attrs["band"] == (0.5, 2.0) and m.attrs["units"] == "s"
    assert m.attrs["unit_from"] == "BUNIT" and m.dims == ("y", "x")
    cases = [({"PI_MIN": None, "PI_MAX": None, "DSTYP1": "PI", "DSVAL1": "500:2000"},
              (0.5, 2.0)),
             ({"PI_MIN": None, "PI_MAX": None, "ENERG_LO": 1.0, "ENERG_HI": 3.0}, (1.0, 3.0)),
             ({"PI_MIN": None, "PI_MAX": None, "ENERGY": 1.5}, (1.5, 1.5)),
             ({"PI_MIN": None, "PI_MAX": None}, None)]
    for hdr, band in cases:
        p = xf.io.write_expmap(tmp_path / "e.fits", img, map_wcs(), band=(0.5, 2.0),
                               header=hdr, overwrite=True)
        assert xf.io.read_expmap(p).attrs["band"] == band
    assert xf.io.read_expmap(p, band=(2.0, 4.5)).attrs["band"] == (2.0, 4.5)
    # cm**2 s (Chandra), ks, and no BUNIT (assumed seconds, checked later)
    p = xf.io.write_expmap(tmp_path / "c.fits", img, map_wcs(), unit="cm**2 s")
    assert xf.io.read_expmap(p).attrs["units"] == "cm2 s"
    p = xf.io.write_expmap(tmp_path / "k.fits", img, map_wcs(), unit="ks")
    np.testing.assert_allclose(xf.io.read_expmap(p).values, 5000.0)
    p = xf.io.write_expmap(tmp_path / "n.fits", img, map_wcs(), header={"BUNIT": None})
    assert xf.io.read_expmap(p).attrs["unit_from"] == "assumed"
    assert xf.io.read_expmap(p, unit="cm2 s").attrs["units"] == "cm2 s"


@pytest.mark.parametrize("change, match", [
    (lambda img, h: (img, {**h, "BUNIT": "keV"}), "neither a time"),
    (lambda img, h: (img, {**h, "BUNIT": "furlongs"}), "is not a unit"),
    (lambda img, h: (np.where(img > 0, np.nan, 0), h), "non-finite values"),
    (lambda img, h: (img - 10, h), "negative values"),
    (lambda img, h: (img, {**h, "CTYPE1": None, "CTYPE2": None}), "no celestial WCS"),
    (lambda img, h: (img, {**h, "PI_MIN": 3000}), "not a positive band"),
])
def test_read_expmap_refusals(tmp_path, change, match):
    img, hdr = change(np.full((6, 6), 5.0), {})
    p = xf.io.write_expmap(tmp_path / "bad.fits", img, map_wcs(shape=(6, 6)), band=(0.5, 2.0),
                           header=hdr)
    with pytest.raises(FileFormatError, match=match) as e:
        xf.io.read_expmap(p)
    assert "bad.fits" in str(e.value)


def test_expmap_on_grid_is_the_mean_over_each_pixel(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 100, (60, 60))
    p = xf.io.write_expmap(tmp_path / "e.fits", img, map_wcs(), band=(0.5, 2.0))
    m = xf.io.read_expmap(p)
    img = m.values  # float32 in the file
    # 10″ pixels aligned on the map's 2″ pixels: the mean of each 5 × 5 block, exactly
    wz = xf.io.make_wcs((RA0, DEC0), 10.0, (12, 12))
    got = xf.io.expmap_on_grid(m, wz, (12, 12))
    ref = img.reshape(12, 5, 12, 5).mean(axis=(1, 3))
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # a rotated grid sees a smooth map at its pixel centres (to the smoothness)
    yy, xx = np.mgrid[0:60, 0:60]
    smooth = 100 - 0.01 * ((yy - 29.5) ** 2 + (xx - 29.5) ** 2)
    m = m.copy(data=smooth)
    wr = xf.io.make_wcs((RA0, DEC0), 6.0, (8, 8), rotation=30.0)
    got = xf.io.expmap_on_grid(m, wr, (8, 8))
    py, px = np.mgrid[0:8, 0:8]
    mx, my = map_wcs().wcs_world2pix(*wr.wcs_pix2world(px.ravel(), py.ravel(), 0), 0)
    at = 100 - 0.01 * ((my - 29.5) ** 2 + (mx - 29.5) ** 2)
    np.testing.assert_allclose(got.ravel(), at, rtol=2e-3)
    with pytest.raises(ProblemError, match=r"e.fits: Z's 30×30 grid reaches beyond the "
                                           r"exposure map"):
        xf.io.expmap_on_grid(m, xf.io.make_wcs((RA0, DEC0), 10.0, (30, 30)), (30, 30))


def test_area_from_expmaps_interpolates_between_bands(tmp_path):
    wz = xf.io.make_wcs((RA0, DEC0), 10.0, (12, 12))
    yy, xx = np.mgrid[0:60, 0:60]
    v1 = 1 - 0.3 * (xx / 59.0)  # vignetting at 1 keV and at 3 keV
    v3 = 1 - 0.5 * (xx / 59.0)
    t = 1000.0
    maps = [xf.io.write_expmap(tmp_path / f"e{k}.fits", t * v, map_wcs(), band=b)
            for k, v, b in ((1, v1, (0.5, 1.5)), (3, v3, (2.5, 3.5)))]
    E = np.linspace(0.5, 4.0, 8)
    Ec = 0.5 * (E[1:] + E[:-1])
    area = 100 + 10 * Ec
    A = xf.io.area_from_expmaps(maps[::-1], area, t, E, wz, (12, 12))
    r1 = v1.reshape(12, 5, 12, 5).mean(axis=(1, 3))
    r3 = v3.reshape(12, 5, 12, 5).mean(axis=(1, 3))
    w3 = np.clip((Ec - 1.0) / 2.0, 0, 1)
    ref = area[:, None, None] * ((1 - w3)[:, None, None] * r1 + w3[:, None, None] * r3)
    np.testing.assert_allclose(A, ref, rtol=1e-6)
    # a cm2 s map: divided by the ARF averaged over its band
    lo = np.arange(0.2, 6.0, 0.1)
    arf = xf.io.read_arf(xf.io.write_arf(tmp_path / "a.arf", lo, lo + 0.1, 100 + 10 * (lo + 0.05)))
    c = xf.io.write_expmap(tmp_path / "c.fits", 250.0 * t * v1, map_wcs(), unit="cm2 s",
                           band=(0.5, 2.0))
    A = xf.io.area_from_expmaps(c, area, t, E, wz, (12, 12), arf=arf)
    np.testing.assert_allclose(A, area[:, None, None] * 250.0 / (100 + 10 * 1.25) * r1[None],
                               rtol=1e-5)
    # refusals
    with pytest.raises(FileFormatError, match="needs the ARF on its own energy grid"):
        xf.io.area_from_expmaps(c, area, t, E, wz, (12, 12))
    n = xf.io.write_expmap(tmp_path / "n.fits", 250.0 * t * v1, map_wcs(), header={"BUNIT": None})
    with pytest.raises(FileFormatError, match="n.fits: exposure map values reach .* the map has "
                                              "no BUNIT: if it is in cm2 s"):
        xf.io.area_from_expmaps(n, area, t, E, wz, (12, 12))
    with pytest.warns(UserWarning, match="longer time selection"):
        xf.io.area_from_expmaps(maps[0], area, t / 2, E, wz, (12, 12))
    nb = xf.io.write_expmap(tmp_path / "nb.fits", t * v1, map_wcs())
    with pytest.raises(FileFormatError, match="nb.fits: several exposure maps, but this one has "
                                              "no energy band"):
        xf.io.area_from_expmaps([maps[0], nb], area, t, E, wz, (12, 12))
    z = xf.io.write_expmap(tmp_path / "z.fits", 0 * v1, map_wcs())
    with pytest.raises(ProblemError, match="zero everywhere"):
        xf.io.area_from_expmaps(z, area, t, E, wz, (12, 12))


# ------------------------------------------------------------------------- from_files
V, BAND, L, VL = 3, (2.0, 8.0), 60, 10


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """EPIC events on two CCDs (left and right half of Z's grid), Resolve events, responses,
    and a vignetted exposure map covering the rolled field."""
    d = tmp_path_factory.mktemp("exposure")
    rng = np.random.default_rng(5)
    lo, hi, M, emin, emax = rmf_arrays()
    f = {"rmf": xf.io.write_rmf(d / "pn.rmf", lo, hi, M, emin, emax, first_channel=0),
         "arf_X": xf.io.write_arf(d / "pn.arf", lo, hi, 500 + 0 * lo),
         "arf_Y": xf.io.write_arf(d / "rsl.arf", lo, hi, 200 + 0 * lo)}
    yy, xx = np.mgrid[-30:31, -30:31]
    f["psf"] = xf.io.write_psf(d / "psf.fits", (1 + (yy**2 + xx**2) / 20.0**2) ** -1.5,
                               pixel_size=1.0)
    wa = xf.io.make_wcs((RA0, DEC0), PITCH, (6, 6), rotation=ROLL)
    wz = xf.io.subdivide_wcs(wa, V)
    X = rng.poisson(0.5, (L // VL, 18, 18))
    ie, iy, ix = np.nonzero(X)
    ie, iy, ix = (np.repeat(a, X[X > 0]) for a in (ie, iy, ix))
    ra, dec = wz.wcs_pix2world(ix.astype(float), iy.astype(float), 0)
    C = np.linspace(*BAND, L // VL + 1)
    f["events_X"] = xf.io.write_events(
        d / "pn.fits", "epic", energy=0.5 * (C[ie] + C[ie + 1]), ra=ra, dec=dec,
        ccd=np.where(ix < 9, 4, 5), exposure=None, pointing=(RA0, DEC0),
        header={"LIVETIME": T4, "ONTIME": 4e4, "LIVETI04": T4, "LIVETI05": T5})
    Y = rng.poisson(2.0, (L, 36))
    ie, pix = np.nonzero(Y)
    ie, pix = np.repeat(ie, Y[Y > 0]), np.repeat(pix, Y[Y > 0])
    Ez = np.linspace(*BAND, L + 1)
    f["events_Y"] = xf.io.write_events(d / "rsl.fits", "resolve",
                                       energy=0.5 * (Ez[ie] + Ez[ie + 1]), pixel=pix,
                                       exposure=9e4, pointing=(RA0, DEC0), roll=ROLL)
    my, mx = np.mgrid[0:80, 0:80]
    vig = 1 - 0.2 * ((my - 39.5) ** 2 + (mx - 39.5) ** 2) / 40.0**2
    vig[:, :5] = 0.0  # a chip gap / outside the field, well off Z's grid
    f["expmap"] = xf.io.write_expmap(d / "expmap.fits", T4 * vig, map_wcs(4.0, (80, 80)),
                                     band=(2.0, 8.0))
    f["wz"], f["X"] = wz, X
    return f


def build(f, **kw):
    return xf.io.from_files(f["events_X"], f["events_Y"], f["rmf"], kw.pop("arf_X", f["arf_X"]),
                            kw.pop("arf_Y", f["arf_Y"]), f["psf"], energy_band=BAND, n_energy=L,
                            vL=VL, pixel_size=PITCH / V, **kw)


def test_from_files_per_ccd_exposure_becomes_a_3d_area(files):
    ds = build(files)
    assert ds.arf_X.dims == ("energy", "y", "x")
    np.testing.assert_array_equal(ds.X.values, files["X"])
    t = ds.X.attrs["exposure"]
    X = files["X"]
    n4, n5 = X[:, :, :9].sum(), X[:, :, 9:].sum()
    assert t == (T4 if n4 >= n5 else T5)  # the CCD holding most events
    ref = np.broadcast_to(np.where(np.arange(18) < 9, T4, T5) / t * 500.0, (18, 18))
    seen = X.sum(axis=0) > 0  # (a pixel without events takes its nearest neighbour's)
    for k in range(ds.sizes["energy"]):
        np.testing.assert_allclose(ds.arf_X.values[k][seen], ref[seen], rtol=1e-12)
    assert ds.arf_Y.dims == ("energy",)
    xf.validate(ds)


def test_from_files_with_an_exposure_map(files, tmp_path):
    ds = build(files, expmap_X=files["expmap"])
    t = ds.X.attrs["exposure"]
    e = xf.io.expmap_on_grid(xf.io.read_expmap(files["expmap"]), files["wz"], (18, 18))
    np.testing.assert_allclose(ds.arf_X.values, 500.0 * np.broadcast_to(e / t, ds.arf_X.shape),
                               rtol=1e-6)
    assert 0.8 < ds.arf_X.values.min() / 500 and ds.arf_X.values.max() / 500 <= 1.0 + 1e-6
    assert ds.attrs["expmap_X"] == str(files["expmap"])
    back = xf.open_problem(xf.save_problem(ds, tmp_path / "p.zarr"))
    np.testing.assert_array_equal(back.arf_X.values, ds.arf_X.values)
    # a map that leaves pixels with counts unexposed: warned, and validate accepts zeros
    img = xf.io.read_expmap(files["expmap"]).values.copy()
    img[:, 38:] = 0.0
    z = xf.io.write_expmap(tmp_path / "gap.fits", img, map_wcs(4.0, (80, 80)))
    with pytest.warns(UserWarning, match=r"X: \d+ counts fall in \d+ pixels of zero exposure"):
        ds = build(files, expmap_X=z)
    assert (ds.arf_X.values == 0).any() and (ds.arf_X.values > 0).any()
    xf.validate(ds)


def test_from_files_takes_3d_areas(files):
    ref = build(files)
    a = ref.arf_X.values
    # a 3-D area and CCDs of different live times: refused (which one holds them?)
    with pytest.raises(ProblemError, match="arf_X is an .energy, y, x. area, and the events' "
                                           "CCDs differ"):
        build(files, arf_X=a)
    flat = {"exposure": T5}  # an explicit exposure: the area is taken as given
    for given in (a, xr.DataArray(a, dims=("energy", "y", "x"))):
        ds = build(files, arf_X=given, options_X=flat)
        np.testing.assert_array_equal(ds.arf_X.values, a)
    # on its own energy grid (energy_true with energy_lo/hi): averaged over Z's bins
    e = np.linspace(1.0, 9.0, 33)
    cube = xr.DataArray(np.broadcast_to(100 + 10 * 0.5 * (e[1:] + e[:-1])[:, None, None],
                                        (32, 18, 18)).copy(), dims=("energy_true", "y", "x"),
                        coords={"energy_lo": ("energy_true", e[:-1]),
                                "energy_hi": ("energy_true", e[1:])})
    ds = build(files, arf_Y=cube)
    ref = xf.io.area_on_grid(cube[:, 3, 4], np.linspace(*BAND, L + 1)).values
    np.testing.assert_allclose(ds.arf_Y.values, np.broadcast_to(ref[:, None, None],
                                                                (L, 18, 18)), rtol=1e-12)
    for bad, match in [(a[:, :9], r"arf_X: .* shape \(60, 9, 18\), expected \(60, 18, 18\)"),
                       (xr.DataArray(a, dims=("energy", "x", "y")), "dims"),
                       (xr.DataArray(a[:30], dims=("energy", "y", "x")), "30 energies"),
                       (xr.DataArray(a, dims=("energy", "y", "x"),
                                     coords={"y": np.arange(18.0)}), "y coordinates differ")]:
        with pytest.raises(ProblemError, match=match):
            build(files, arf_X=bad, options_X=flat)
    with pytest.raises(ProblemError, match="exposure maps would count the exposure twice"):
        build(files, arf_X=a, options_X=flat, expmap_X=files["expmap"])


# ---------------------------------------------------------- the solver with 3-D areas
@pytest.fixture(scope="module")
def vignetted():
    """A consistent problem whose X sees a vignetted area with one unexposed column."""
    base = consistent_problem(L=24, l=6, M=10, N=12, v=2)
    yy, xx = np.mgrid[0:10, 0:12]
    vig = 1 - 0.3 * ((yy - 4.5) ** 2 + (xx - 5.5) ** 2) / 50.0
    vig[:, 0] = 0.0
    a = base.arf_X.values[:, None, None] * vig[None]
    ds = base.assign(arf_X=(("energy", "y", "x"), a))
    mx, _ = xf.forward(ds, ds.Z_true)
    return ds.assign(X=ds.X.copy(data=np.round(mx.values).astype(np.int64)))


@pytest.mark.parametrize("reg", REGULARIZERS)
def test_fuse_with_zero_exposure_pixels_numpy_and_chunked(vignetted, reg):
    xf.validate(vignetted)
    kw = dict(dtype="float64", max_iter=10, tol=1e-30, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = xf.fuse(vignetted, reg, **kw)
        with dask.config.set(scheduler="synchronous"):
            Zc = xf.fuse(vignetted, reg, chunks={"y": 4, "x": 8}, **kw)
    assert np.isfinite(Z.values).all() and (Z.values >= 0).all()
    np.testing.assert_allclose(np.asarray(Zc.values), Z.values, rtol=1e-6,
                               atol=1e-6 * np.abs(Z.values).max())
    scores = xf.metrics.report(Z, vignetted.Z_true)
    assert all(np.isfinite(v) for v in scores.values())


def test_from_files_3d_area_picks_edge_channels_for_a_flat_area(files):
    a = build(files).arf_X.values
    with pytest.warns(UserWarning, match="flat effective area beyond the band"):
        ds = build(files, arf_X=a, options_X={"exposure": T5})
    np.testing.assert_array_equal(ds.arf_X.values, a)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        build(files, arf_X=a, options_X={"exposure": T5}, edge_tolerance=None)
