"""OGIP ARF and RMF: round trips, layouts (variable/fixed length, TLMIN, several matrices),
bad files, and a cross-check against an independent reader (gammapy)."""

import os
import warnings

import numpy as np
import pytest
from astropy.io import fits
from scipy.special import ndtr

import xfusion as xf
from xfusion.io import FileFormatError


def gaussian_matrix(lo, hi, emin, emax, sigma=0.08, cut=1e-7):
    Ec = 0.5 * (lo + hi)
    M = ndtr((emax[None] - Ec[:, None]) / sigma) - ndtr((emin[None] - Ec[:, None]) / sigma)
    M[M < cut] = 0
    return M


@pytest.fixture(scope="module")
def grids():
    e = np.linspace(0.2, 10.0, 197)
    ch = np.arange(300)
    emin, emax = ch * 0.035, (ch + 1) * 0.035
    lo, hi = e[:-1], e[1:]
    return lo, hi, emin, emax, gaussian_matrix(lo, hi, emin, emax)


# ------------------------------------------------------------------------------------- ARF
def test_arf_round_trip(tmp_path):
    lo = np.linspace(0.1, 9.9, 50)
    hi = lo + 0.2
    area = 300 + 100 * np.sin(lo)
    p = xf.io.write_arf(tmp_path / "a.arf", lo, hi, area, telescope="XMM", instrument="EPN")
    a = xf.io.read_arf(p)
    assert a.dims == ("energy_true",)
    np.testing.assert_allclose(a.values, area, rtol=1e-6)
    np.testing.assert_allclose(a["energy_lo"], lo, rtol=1e-6)
    np.testing.assert_allclose(a["energy_hi"], hi, rtol=1e-6)
    np.testing.assert_allclose(a["energy_true"], 0.5 * (lo + hi), rtol=1e-6)
    assert a.attrs["units"] == "cm2" and a.attrs["instrument"] == "EPN"
    h = fits.getheader(p, "SPECRESP")
    assert (h["HDUCLASS"], h["HDUCLAS1"], h["HDUCLAS2"]) == ("OGIP", "RESPONSE", "SPECRESP")
    assert h["TUNIT1"] == "keV" and h["TUNIT3"] == "cm**2"
    # atomic write leaves no temporary file; overwrite is explicit
    assert os.listdir(tmp_path) == ["a.arf"]
    with pytest.raises(FileExistsError):
        xf.io.write_arf(p, lo, hi, area)
    xf.io.write_arf(p, lo, hi, 2 * area, overwrite=True)
    np.testing.assert_allclose(xf.io.read_arf(p).values, 2 * area, rtol=1e-6)


def _table(path, name, cols, header=None):
    hdu = fits.BinTableHDU.from_columns(cols, name=name)
    for k, v in (header or {}).items():
        hdu.header[k] = v
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def test_arf_units_converted_and_found_by_hduclas(tmp_path):
    lo = np.array([100.0, 200.0, 300.0])
    p = _table(tmp_path / "ev.arf", "WHATEVER", [
        fits.Column("ENERG_LO", "E", unit="eV", array=lo),
        fits.Column("ENERG_HI", "E", unit="eV", array=lo + 100),
        fits.Column("SPECRESP", "E", unit="m**2", array=[0.01, 0.02, 0.03]),
    ], {"HDUCLAS2": "SPECRESP"})
    a = xf.io.read_arf(p)
    np.testing.assert_allclose(a["energy_lo"], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(a.values, [100, 200, 300], rtol=1e-6)


@pytest.mark.parametrize("fault, match", [
    ("no_ext", "no SPECRESP"),
    ("no_col", "no column 'SPECRESP'"),
    ("bad_unit", "unit 'arcsec'"),
    ("not_area", "convertible to cm2"),
    ("negative", "negative effective areas"),
    ("decreasing", "upper edge"),
])
def test_arf_bad_files(tmp_path, fault, match):
    lo = np.array([1.0, 2.0, 3.0])
    cols = {"ENERG_LO": ("keV", lo), "ENERG_HI": ("keV", lo + 1),
            "SPECRESP": ("cm2", np.array([1.0, 2.0, 3.0]))}
    name = "SPECRESP"
    if fault == "no_ext":
        name = "OTHER"
    elif fault == "no_col":
        del cols["SPECRESP"]
    elif fault == "bad_unit":
        cols["ENERG_LO"] = ("arcsec", lo)
    elif fault == "not_area":
        cols["SPECRESP"] = ("keV", cols["SPECRESP"][1])
    elif fault == "negative":
        cols["SPECRESP"] = ("cm2", np.array([1.0, -2.0, 3.0]))
    elif fault == "decreasing":
        cols["ENERG_HI"] = ("keV", lo - 0.5)
    p = _table(tmp_path / "bad.arf", name,
               [fits.Column(k, "E", unit=u, array=v) for k, (u, v) in cols.items()])
    with pytest.raises(FileFormatError, match=match) as e:
        xf.io.read_arf(p)
    assert str(p) in str(e.value)


def test_missing_and_non_fits_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.arf"):
        xf.io.read_arf(tmp_path / "nope.arf")
    (tmp_path / "junk.rmf").write_text("not a fits file")
    with pytest.raises(FileFormatError, match="junk.rmf"):
        xf.io.read_rmf(tmp_path / "junk.rmf")


# ------------------------------------------------------------------------------------- RMF
@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("variable", [True, False])
def test_rmf_round_trip(tmp_path, grids, first, variable):
    lo, hi, emin, emax, M = grids
    p = xf.io.write_rmf(tmp_path / "r.rmf", lo, hi, M, emin, emax, first_channel=first,
                        variable_length=variable, instrument="EPN")
    r = xf.io.read_rmf(p)
    assert r.dims == ("energy_true", "channel")
    np.testing.assert_allclose(r.values, M, atol=1e-7)  # MATRIX is stored in float32
    assert r["channel"].values[0] == first and r.sizes["channel"] == 300
    np.testing.assert_allclose(r["e_min"], emin, rtol=1e-6)
    np.testing.assert_allclose(r["energy_hi"], hi, rtol=1e-6)
    assert not r.attrs["includes_area"] and r.attrs["first_channel"] == first
    h = fits.getheader(p, "MATRIX")
    assert h["HDUCLAS2"] == "RSP_MATRIX" and h["TLMIN4"] == first  # F_CHAN is column 4
    if variable:
        assert h["TFORM6"].startswith("PE")
        # compact: far fewer stored values than the dense matrix
        assert sum(len(m) for m in fits.getdata(p, "MATRIX")["MATRIX"]) < M.size / 5


def test_rmf_several_groups_per_row(tmp_path):
    lo, hi = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])
    emin = np.arange(10) * 0.5
    M = np.zeros((3, 10))
    M[0, [1, 2, 5, 8, 9]] = [0.1, 0.2, 0.3, 0.15, 0.05]
    M[2, 0] = 1.0  # row 1 is empty (N_GRP = 0)
    for variable in (True, False):
        p = xf.io.write_rmf(tmp_path / f"g{variable}.rmf", lo, hi, M, emin, emin + 0.5,
                            first_channel=1, variable_length=variable)
        d = fits.getdata(p, "MATRIX")
        assert list(d["N_GRP"]) == [3, 0, 1]
        np.testing.assert_allclose(xf.io.read_rmf(p).values, M, atol=1e-7)


def test_rmf_tlmin_beats_missing_and_defaults(tmp_path, grids):
    """Channel numbering: TLMIN of F_CHAN, else EBOUNDS' first CHANNEL."""
    lo, hi, emin, emax, M = grids
    p = xf.io.write_rmf(tmp_path / "r.rmf", lo, hi, M, emin, emax, first_channel=1)
    with fits.open(p) as h:
        del h["MATRIX"].header["TLMIN4"]
        h.writeto(tmp_path / "notlmin.rmf")
    r = xf.io.read_rmf(tmp_path / "notlmin.rmf")  # falls back on EBOUNDS CHANNEL[0] = 1
    assert r["channel"].values[0] == 1
    np.testing.assert_allclose(r.values, M, atol=1e-7)


def test_rmf_several_matrix_extensions(tmp_path, grids):
    lo, hi, emin, emax, M = grids
    a = xf.io.write_rmf(tmp_path / "a.rmf", lo, hi, M, emin, emax, first_channel=0)
    M2 = gaussian_matrix(lo, hi, emin, emax, sigma=0.2)
    b = xf.io.write_rmf(tmp_path / "b.rmf", lo, hi, M2 * 500, emin, emax, first_channel=0,
                        extname="SPECRESP MATRIX")
    with fits.open(a) as ha, fits.open(b) as hb:
        m2 = hb["SPECRESP MATRIX"]
        m2.header["EXTVER"] = 2
        fits.HDUList([ha[0], ha["MATRIX"], ha["EBOUNDS"], m2]).writeto(tmp_path / "both.rmf")
    p = tmp_path / "both.rmf"
    assert xf.io.rmf_extensions(p) == [(1, "MATRIX"), (3, "SPECRESP MATRIX")]
    first = xf.io.read_rmf(p)  # default: the first one
    np.testing.assert_allclose(first.values, M, atol=1e-7)
    for sel in ("SPECRESP MATRIX", 3, ("SPECRESP MATRIX", 2)):
        r = xf.io.read_rmf(p, extension=sel)
        np.testing.assert_allclose(r.values, 500 * M2, rtol=1e-5, atol=1e-4)
        assert r.attrs["includes_area"] and r.attrs["hduclas3"] == "FULL"
    with pytest.raises(FileFormatError, match="no matrix extension 'NOPE'"):
        xf.io.read_rmf(p, extension="NOPE")
    with pytest.raises(FileFormatError, match="HDU 2 is not a matrix"):
        xf.io.read_rmf(p, extension=2)


@pytest.mark.parametrize("fault, match", [
    ("no_matrix", "no redistribution matrix"),
    ("no_ebounds", "no EBOUNDS"),
    ("no_fchan", "no column 'F_CHAN'"),
    ("overflow", "outside 0..299"),
    ("detchans", "DETCHANS"),
    ("unit", "ENERG_LO has unit 'deg'"),
])
def test_rmf_bad_files(tmp_path, grids, fault, match):
    lo, hi, emin, emax, M = grids
    p = xf.io.write_rmf(tmp_path / "r.rmf", lo, hi, M, emin, emax, first_channel=0)
    with fits.open(p) as h:
        _break_rmf(h, fault)
    with pytest.raises(FileFormatError, match=match) as e:
        xf.io.read_rmf(tmp_path / "bad.rmf")
    assert "bad.rmf" in str(e.value)


def _break_rmf(h, fault):
    hdus = [h[0], h["MATRIX"], h["EBOUNDS"]]
    m = hdus[1]
    if fault == "no_matrix":
        m.header["EXTNAME"] = "OTHER"
        m.header["HDUCLAS2"] = "OTHER"
    elif fault == "no_ebounds":
        hdus = hdus[:2]
    elif fault == "no_fchan":
        cols = [c for c in m.columns if c.name != "F_CHAN"]
        hdus[1] = fits.BinTableHDU.from_columns(cols, header=m.header, name="MATRIX")
    elif fault == "overflow":
        m.data["F_CHAN"][100][0] = 295  # a group running past the last channel
    elif fault == "detchans":
        m.header["DETCHANS"] = 299
    elif fault == "unit":
        m.header["TUNIT1"] = "deg"
    fits.HDUList(hdus).writeto(os.path.join(os.path.dirname(h.filename()), "bad.rmf"))


# -------------------------------------------------------------- independent reader: gammapy
def _gammapy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("gammapy.irf"), pytest.importorskip("gammapy.maps")


def test_gammapy_reads_our_arf(tmp_path):
    _, maps = _gammapy()
    lo = np.linspace(0.3, 11.7, 58)
    area = 500 * np.exp(-((lo - 2) / 3) ** 2) + 20
    p = xf.io.write_arf(tmp_path / "a.arf", lo, lo + 0.2, area)
    m = maps.RegionNDMap.read(p, format="ogip-arf")
    axis = m.geom.axes["energy_true"]
    np.testing.assert_allclose(axis.edges.to_value("keV"), np.r_[lo, lo[-1] + 0.2], rtol=1e-6)
    np.testing.assert_allclose(m.quantity.to_value("cm2").ravel(), xf.io.read_arf(p).values,
                               rtol=1e-6)


def test_gammapy_reads_our_rmf(tmp_path, grids):
    irf, _ = _gammapy()
    lo, hi, emin, emax, M = grids
    # channels from 0: gammapy's F_CHAN-as-index reading agrees with ours exactly
    p = xf.io.write_rmf(tmp_path / "r0.rmf", lo, hi, M, emin, emax, first_channel=0)
    k = irf.EDispKernel.read(p)
    ours = xf.io.read_rmf(p)
    np.testing.assert_allclose(k.data, ours.values, atol=1e-7)
    np.testing.assert_allclose(k.axes["energy"].edges.to_value("keV")[:-1], ours["e_min"],
                               rtol=1e-6)
    np.testing.assert_allclose(k.axes["energy_true"].edges.to_value("keV")[1:],
                               ours["energy_hi"], rtol=1e-6)
    # channels from 1 (TLMIN = 1): gammapy ignores TLMIN and comes out shifted by
    # one channel; we place the groups where TLMIN says
    M1 = M.copy()
    M1[:, -1] = 0  # keep gammapy's shifted groups inside its array
    p1 = xf.io.write_rmf(tmp_path / "r1.rmf", lo, hi, M1, emin, emax, first_channel=1)
    k1 = irf.EDispKernel.read(p1)
    ours1 = xf.io.read_rmf(p1)
    np.testing.assert_allclose(ours1.values, M1, atol=1e-7)
    np.testing.assert_allclose(k1.data[:, 1:], ours1.values[:, :-1], atol=1e-7)
