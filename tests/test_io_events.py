"""Event lists: EPIC, Resolve and generic layouts, selections, exposure, binning, bad files."""

import warnings

import numpy as np
import pytest
from astropy.io import fits

import xfusion as xf
from xfusion.io import FileFormatError

RA0, DEC0 = 83.63, 22.01
EDGES = np.linspace(0.5, 8.0, 16)


def sky(dy, dx, centre=(RA0, DEC0), rotation=0.0):
    """Sky position of an offset (arcsec) along a grid's y and x axes."""
    w = xf.io.make_wcs(centre, 1.0, (1, 1), rotation=rotation)
    ra, dec = w.wcs_pix2world(np.asarray(dx, float), np.asarray(dy, float), 0)
    return ra, dec


# ------------------------------------------------------------------------------------ EPIC
def test_epic_positions_energies_and_wcs(tmp_path):
    # one event at the centre of chosen pixels of a 5" grid, energies in chosen bins
    dy = np.array([0, 10, -20, 35])
    dx = np.array([0, -5, 15, 35])
    E = np.array([0.7, 1.31, 5.0, 7.9])
    ra, dec = sky(dy, dx)
    p = xf.io.write_events(tmp_path / "pn.fits", "epic", energy=E, ra=ra, dec=dec,
                           exposure=1234.0, pointing=(RA0, DEC0))
    c = xf.io.read_events(p, energy_edges=EDGES, pixel_size=5.0, shape=(15, 15),
                          centre=(RA0, DEC0))
    assert c.dims == ("energy", "y", "x") and c.shape == (15, 15, 15)
    assert c.attrs["layout"] == "epic" and c.attrs["exposure"] == 1234.0
    iy, ix = 7 + dy // 5, 7 + dx // 5
    ie = np.searchsorted(EDGES, E, side="right") - 1
    expected = np.zeros(c.shape, int)
    expected[ie, iy, ix] = 1
    np.testing.assert_array_equal(c.values, expected)
    np.testing.assert_allclose(c["y"][iy], dy)
    np.testing.assert_allclose(c["energy_lo"], EDGES[:-1])
    # the WCS in attrs puts the pixels back on the sky
    w = xf.io.as_wcs(c.attrs["wcs"])
    r2, d2 = w.wcs_pix2world(ix, iy, 0)
    np.testing.assert_allclose(r2, ra, atol=0.05 / 3600)
    np.testing.assert_allclose(d2, dec, atol=0.05 / 3600)
    h = fits.getheader(p, "EVENTS")
    assert h["REFXCTYP"] == "RA---TAN" and h["REFYCDLT"] == pytest.approx(0.05 / 3600)


def test_epic_rotated_target_grid(tmp_path):
    ra, dec = sky([10.0], [0.0], rotation=40.0)  # 10" along the rotated grid's +y axis
    p = xf.io.write_events(tmp_path / "pn.fits", "epic", energy=[2.0], ra=ra, dec=dec,
                           exposure=1.0, pointing=(RA0, DEC0))
    w = xf.io.make_wcs((RA0, DEC0), 2.0, (11, 11), rotation=40.0)
    c = xf.io.read_events(p, energy_edges=EDGES, wcs=w)
    assert c.values.sum() == 1 and c.values.sum(axis=(0, 2))[5 + 5] == 1
    assert c.attrs["rotation"] == pytest.approx(40.0)


def test_epic_selections(tmp_path):
    n = 40
    pattern = np.arange(n) % 20  # 0..19
    flag = np.where(np.arange(n) % 4 == 0, 0x10, 0)
    ra, dec = sky(np.zeros(n), np.zeros(n))
    kw = dict(energy=np.full(n, 2.0), ra=ra, dec=dec, pattern=pattern, flag=flag, exposure=1.0)
    pn = xf.io.write_events(tmp_path / "pn.fits", "epic", detector="EPN", **kw)
    mos = xf.io.write_events(tmp_path / "mos.fits", "epic", detector="EMOS1", **kw)
    opts = dict(energy_edges=EDGES, pixel_size=5.0, shape=(3, 3))
    keep_flag = flag == 0
    assert xf.io.read_events(pn, **opts).sum() == (keep_flag & (pattern <= 4)).sum()
    assert xf.io.read_events(mos, **opts).sum() == (keep_flag & (pattern <= 12)).sum()
    assert xf.io.read_events(pn, pattern_max=None, flag_mask=None, **opts).sum() == n
    # a bit mask that does not include bit 0x10 keeps the flagged events
    assert xf.io.read_events(pn, pattern_max=None, flag_mask=0x20, **opts).sum() == n
    c = xf.io.read_events(pn, **opts)
    assert c.attrs["selection"].startswith("PATTERN<=4; FLAG==0")
    assert c.attrs["n_events"] == n


def test_default_shape_holds_every_event(tmp_path):
    ra, dec = sky([-30.0, 42.0], [12.0, -7.0])
    p = xf.io.write_events(tmp_path / "pn.fits", "epic", energy=[1.0, 2.0], ra=ra, dec=dec,
                           exposure=1.0, pointing=(RA0, DEC0))
    c = xf.io.read_events(p, energy_edges=EDGES, pixel_size=4.0)
    assert c.sizes["y"] % 2 == 1 and c.sizes["y"] == c.sizes["x"]
    assert c.sum() == 2 and c.attrs["n_binned"] == 2


@pytest.mark.parametrize("keys, expected", [
    ({"EXPOSURE": 10.0, "LIVETIME": 20.0}, (10.0, "EXPOSURE")),
    ({"LIVETIME": 20.0, "ONTIME": 30.0}, (20.0, "LIVETIME")),
    ({"ONTIME": 30.0}, (30.0, "ONTIME")),
    ({"LIVETI01": 5.0, "LIVETI04": 50.0, "ONTIME04": 60.0}, (50.0, "LIVETI04")),
])
def test_exposure_keywords(tmp_path, keys, expected):
    p = tmp_path / "g.fits"
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("RAWX", "E", array=[1.0]), fits.Column("RAWY", "E", array=[1.0]),
        fits.Column("ENERGY", "E", unit="keV", array=[2.0])], name="EVENTS")
    hdu.header.update(keys)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    w = xf.io.make_wcs((RA0, DEC0), 1.0, (3, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = xf.io.read_events(p, "generic", energy_edges=EDGES, x_col="RAWX", y_col="RAWY",
                              energy_col="ENERGY", event_wcs=w, wcs=w)
    assert (c.attrs["exposure"], c.attrs["exposure_keyword"]) == expected
    # differing per-CCD live times without a CCDNR column: the largest, never silently
    differ = "LIVETI01" in keys
    assert [str(m.message) for m in caught if "per-CCD exposures differ" in str(m.message)] \
        == ([f"{p}: the per-CCD exposures differ (LIVETI01 = 5, LIVETI04 = 50) and the events "
             f"carry no CCDNR column to tell which CCDs they fall on; taking the largest, "
             f"LIVETI04 = 50 s: pass exposure= (seconds) if the field is on another CCD"]
            if differ else [])
    assert xf.io.read_events(p, "generic", energy_edges=EDGES, x_col="RAWX", y_col="RAWY",
                             energy_col="ENERGY", event_wcs=w, wcs=w,
                             exposure=7.0).attrs["exposure"] == 7.0


def test_generic_columns_with_units_and_tc_keywords(tmp_path):
    # a generic list: sky columns with TC* WCS keywords, energy in eV (float)
    cols = [fits.Column("SKYX", "E", array=[10.0, 12.0]),
            fits.Column("SKYY", "E", array=[10.0, 10.0]),
            fits.Column("EN", "E", unit="eV", array=[1500.0, 6000.0])]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    for k, v in {"TCTYP1": "RA---TAN", "TCTYP2": "DEC--TAN", "TCRPX1": 10.0, "TCRPX2": 10.0,
                 "TCRVL1": RA0, "TCRVL2": DEC0, "TCDLT1": -1 / 3600, "TCDLT2": 1 / 3600,
                 "EXPOSURE": 5.0}.items():
        hdu.header[k] = v
    p = tmp_path / "gen.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    c = xf.io.read_events(p, energy_edges=[1.0, 2.0, 7.0], x_col="SKYX", y_col="SKYY",
                          energy_col="EN", pixel_size=1.0, shape=(5, 5), centre=(RA0, DEC0))
    assert c.attrs["layout"] == "generic"
    # SKYX 12 is 2 pixels to +x (west, RA decreasing) of the reference: same axis as the grid
    assert c.values[0, 2, 2] == 1 and c.values[1, 2, 4] == 1


def test_generic_needs_an_energy_unit(tmp_path):
    p = xf.io.write_events(tmp_path / "g.fits", "generic", exposure=1.0,
                           columns={"X": np.array([1.0]), "Y": np.array([1.0]),
                                    "E": np.array([3.0])})
    w = xf.io.make_wcs((RA0, DEC0), 1.0, (3, 3))
    with pytest.raises(FileFormatError, match="energy_unit"):
        xf.io.read_events(p, "generic", energy_edges=EDGES, energy_col="E", event_wcs=w, wcs=w)
    c = xf.io.read_events(p, "generic", energy_edges=EDGES, energy_col="E", energy_unit="keV",
                          event_wcs=w, wcs=w)
    assert c.sum() == 1
    with pytest.raises(FileFormatError, match="unit 'parsec'"):
        xf.io.read_events(p, "generic", energy_edges=EDGES, energy_col="E",
                          energy_unit="parsec", event_wcs=w, wcs=w)


# --------------------------------------------------------------------------------- Resolve
def test_resolve_pixel_map_grades_and_cal_pixel(tmp_path):
    pix = np.arange(36).repeat(3)
    itype = np.tile([0, 1, 0], 36)  # two Hp and one Mp per pixel
    E = np.full(pix.size, 6.4)
    p = xf.io.write_events(tmp_path / "rsl.fits", "resolve", energy=E, pixel=pix, itype=itype,
                           exposure=3e4, pointing=(RA0, DEC0), roll=0.0)
    c = xf.io.read_events(p, energy_edges=EDGES)
    assert c.shape == (15, 6, 6) and c.attrs["layout"] == "resolve"
    img = c.values.sum(axis=0)
    pm = xf.io.RESOLVE_PIXEL_MAP
    for k in range(36):
        iy, ix = np.argwhere(pm == k)[0]
        assert img[iy, ix] == (0 if k == 12 else 2), k
        assert bool(c["observed"][iy, ix]) == (k != 12)
    assert c.attrs["exposure"] == 3e4 and c.attrs["pixel_size"] == pytest.approx(30.0)
    # all grades and the calibration pixel on request
    c2 = xf.io.read_events(p, energy_edges=EDGES, itype=None, exclude_pixels=())
    assert c2.sum() == 108 and bool(c2["observed"].all())
    # energy: PI in 0.5 eV channels
    assert c.values.sum(axis=(1, 2))[np.searchsorted(EDGES, 6.4) - 1] == 70


def test_resolve_custom_map_and_wcs(tmp_path):
    pm = np.arange(36).reshape(6, 6)
    p = xf.io.write_events(tmp_path / "rsl.fits", "resolve", energy=[2.0, 2.0], pixel=[0, 35],
                           exposure=1.0, pointing=(RA0, DEC0), roll=25.0)
    c = xf.io.read_events(p, energy_edges=EDGES, pixel_map=pm)
    img = c.values.sum(axis=0)
    assert img[0, 0] == 1 and img[5, 5] == 1
    assert c.attrs["rotation"] == pytest.approx(25.0)
    w = xf.io.make_wcs((RA0 + 0.01, DEC0), 31.0, (6, 6), rotation=-10.0)
    c = xf.io.read_events(p, energy_edges=EDGES, pixel_map=pm, wcs=w)
    assert c.attrs["rotation"] == pytest.approx(-10.0)
    assert c.attrs["pixel_size"] == pytest.approx(31.0)
    # a pixel number not in the map
    with pytest.raises(FileFormatError, match=r"PIXEL values \[35\]"):
        xf.io.read_events(p, energy_edges=EDGES, pixel_map={0: (0, 0)})


def test_resolve_without_pointing_keywords(tmp_path):
    p = xf.io.write_events(tmp_path / "rsl.fits", "resolve", energy=[2.0], pixel=[0],
                           exposure=1.0, pointing=(RA0, DEC0), header={"PA_NOM": None})
    with fits.open(p, mode="update") as h:
        del h["EVENTS"].header["PA_NOM"]
    with pytest.raises(FileFormatError, match="PA_NOM"):
        xf.io.read_events(p, energy_edges=EDGES)
    c = xf.io.read_events(p, energy_edges=EDGES, wcs=xf.io.make_wcs((RA0, DEC0), 30, (6, 6)))
    assert c.sum() == 1


# ------------------------------------------------------------------------------- bad files
def test_empty_event_list(tmp_path):
    p = xf.io.write_events(tmp_path / "e.fits", "epic", energy=[], ra=[], dec=[], exposure=1.0,
                           pointing=(RA0, DEC0))
    with pytest.raises(FileFormatError, match="e.fits.*empty"):
        xf.io.read_events(p, energy_edges=EDGES, pixel_size=5.0)


def test_nothing_left_after_selection(tmp_path):
    ra, dec = sky([0.0], [0.0])
    p = xf.io.write_events(tmp_path / "s.fits", "epic", energy=[20.0], ra=ra, dec=dec,
                           pattern=[0], exposure=1.0)
    with pytest.raises(FileFormatError, match=r"no events left.*PATTERN<=4: 1.*keV: 0"):
        xf.io.read_events(p, energy_edges=EDGES, pixel_size=5.0)


def test_missing_extension_column_wcs_exposure(tmp_path):
    ra, dec = sky([0.0], [0.0])
    p = xf.io.write_events(tmp_path / "m.fits", "epic", energy=[2.0], ra=ra, dec=dec,
                           exposure=1.0)
    with pytest.raises(FileFormatError, match="no EVENTS2"):
        xf.io.read_events(p, energy_edges=EDGES, pixel_size=5.0, extension="EVENTS2")
    with fits.open(p) as h:
        ev = h["EVENTS"]
        cols = [c for c in ev.columns if c.name != "PATTERN"]
        t = fits.BinTableHDU.from_columns(cols, header=ev.header, name="EVENTS")
        fits.HDUList([h[0], t]).writeto(tmp_path / "nopat.fits")
    p = xf.io.write_events(tmp_path / "nowcs.fits", "epic", energy=[2.0], ra=ra, dec=dec,
                           exposure=1.0)
    with fits.open(p, mode="update") as h:
        for k in ("REFXCRVL", "TCRVL2", "EXPOSURE", "LIVETIME", "ONTIME"):
            del h["EVENTS"].header[k]
    with pytest.raises(FileFormatError, match="nopat.fits.*no column 'PATTERN'"):
        xf.io.read_events(tmp_path / "nopat.fits", energy_edges=EDGES, pixel_size=5.0)
    with pytest.raises(FileFormatError, match="nowcs.fits: no exposure keyword"):
        xf.io.read_events(tmp_path / "nowcs.fits", energy_edges=EDGES, pixel_size=5.0)
    with pytest.raises(FileFormatError, match="nowcs.fits: no sky WCS for column 'X'.*CRVL"):
        xf.io.read_events(tmp_path / "nowcs.fits", energy_edges=EDGES, pixel_size=5.0,
                          exposure=1.0)


def test_epic_pi_with_wrong_unit(tmp_path):
    ra, dec = sky([0.0], [0.0])
    p = xf.io.write_events(tmp_path / "u.fits", "epic", energy=[2.0], ra=ra, dec=dec,
                           exposure=1.0)
    with fits.open(p, mode="update") as h:
        h["EVENTS"].header["TUNIT4"] = "arcsec"
    with pytest.raises(FileFormatError, match="u.fits.*'PI' has unit 'arcsec'"):
        xf.io.read_events(p, energy_edges=EDGES, pixel_size=5.0)
