"""Science out: FITS cubes, regions, and OGIP spectra read back by astropy and gammapy."""

import os
import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import regions
import xarray as xr
from astropy.coordinates import SkyCoord, SpectralCoord
from astropy.io import fits
from astropy.wcs import WCS

import xfusion as xf
from xfusion import sky
from xfusion.io import ExportError
from xfusion.regions import RegionError, region_mask

RA0, DEC0, STEP = 350.85, 58.815, 10.0
LINE_E, LINE_S = 0.62, 0.012  # keV


def cube(L=24, M=9, N=12, uniform=True, wcs=True, seed=0):
    """A small cube (energy, y, x) with a Gaussian line on a continuum, like a fused result."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.5, 0.74, L + 1) if uniform else np.geomspace(0.5, 0.74, L + 1)
    E = 0.5 * (edges[1:] + edges[:-1])
    dE = np.diff(edges)
    spec = (1.0 + 40.0 * np.exp(-0.5 * ((E - LINE_E) / LINE_S) ** 2)) * dE * 1e-5
    yy, xx = np.mgrid[0:M, 0:N]
    img = np.exp(-((yy - 4) ** 2 + (xx - 6) ** 2) / 6.0) + 0.05
    Z = spec[:, None, None] * img[None] * (1 + 0.01 * rng.standard_normal((L, M, N)))
    da = xr.DataArray(Z, dims=("energy", "y", "x"), name="Z", coords={
        "energy": ("energy", E, {"units": "keV"}),
        "energy_lo": ("energy", edges[:-1], {"units": "keV"}),
        "energy_hi": ("energy", edges[1:], {"units": "keV"}),
        "y": ("y", (np.arange(M) - (M - 1) / 2) * STEP, {"units": "arcsec"}),
        "x": ("x", (np.arange(N) - (N - 1) / 2) * STEP, {"units": "arcsec"}),
    }, attrs={"units": "photon cm-2 s-1", "regularizer": "lrs"})
    if wcs:
        da.attrs["wcs"] = sky.nominal_wcs_header((M, N), STEP, (RA0, DEC0))
    return da.assign_coords(sky.cube_coords(da))


def fake_draws(Z, n=6, seed=1):
    rng = np.random.default_rng(seed)
    # correlated across pixels: one factor per draw and channel
    f = 1 + 0.05 * rng.standard_normal((n, Z.sizes["energy"], 1, 1))
    return xr.DataArray(Z.values[None] * f, dims=("draw", *Z.dims))


# ------------------------------------------------------------------------------ FITS cube
@pytest.mark.parametrize("uniform", [True, False])
def test_fits_cube_wcs_round_trip(tmp_path, uniform):
    Z = cube(uniform=uniform)
    sig = 0.1 * Z
    path = xf.io.write_fits_cube(Z, tmp_path / "c.fits", sigma=sig)
    with fits.open(path) as hdul:
        h = hdul[0].header
        assert h["BUNIT"] == "photon cm-2 s-1" and h["CTYPE1"] == "RA---TAN"
        assert h["CTYPE2"] == "DEC--TAN" and h["CUNIT3"] == "keV"
        assert h["CTYPE3"] == ("ENER" if uniform else "ENER-TAB")
        assert ("WCS-TAB" in hdul) == (not uniform)
        np.testing.assert_allclose(hdul[0].data, Z.values, rtol=1e-6)
        np.testing.assert_allclose(hdul["ERR"].data, sig.values, rtol=1e-6)
        eb = hdul["EBOUNDS"].data
        np.testing.assert_array_equal(eb["CHANNEL"], np.arange(1, 25))
        np.testing.assert_allclose(eb["E_MIN"], Z.energy_lo.values, rtol=1e-12)
        np.testing.assert_allclose(eb["E_MAX"], Z.energy_hi.values, rtol=1e-12)
        w = WCS(h, fobj=hdul)
        werr = WCS(hdul["ERR"].header, fobj=hdul)
    for k, iy, ix in ((0, 0, 0), (7, 3, 5), (23, 8, 11)):
        s = SkyCoord(Z.ra.values[iy, ix], Z.dec.values[iy, ix], unit="deg")
        e = SpectralCoord(Z.energy.values[k], u.keV)
        px, py, pe = w.world_to_pixel(s, e)
        np.testing.assert_allclose([px, py], [ix, iy], atol=1e-6)
        # wcslib's keV -> J factor (1.6021765e-16) differs from astropy's by 8e-8
        np.testing.assert_allclose(pe, k, atol=1e-6 + 1e-7 * Z.energy.values[k]
                                   / float(Z.energy_hi[k] - Z.energy_lo[k]))
        back_s, back_e = werr.pixel_to_world(ix, iy, k)
        assert back_s.separation(s).arcsec < 1e-6
        assert abs(back_e.to_value(u.keV) / Z.energy.values[k] - 1) < 2e-7


def test_fits_cube_of_cut_out_and_other_dim_order(tmp_path):
    Z = cube().isel(y=slice(2, 8), x=slice(1, 9)).transpose("y", "x", "energy")
    path = xf.io.write_fits_cube(Z, tmp_path / "c.fits")
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (24, 6, 8)
        w = WCS(hdul[0].header).celestial
    px, py = w.world_to_pixel(SkyCoord(Z.ra.values[4, 5], Z.dec.values[4, 5], unit="deg"))
    np.testing.assert_allclose([px, py], [5, 4], atol=1e-6)


def test_fits_cube_without_wcs_warns_and_writes_offsets(tmp_path):
    Z = cube(wcs=False)
    with pytest.warns(UserWarning, match="no celestial WCS"):
        path = xf.io.write_fits_cube(Z, tmp_path / "c.fits")
    h = fits.getheader(path)
    assert h["CTYPE1"] == "XOFFSET" and h["CUNIT1"] == "arcsec" and h["CDELT1"] == STEP
    assert h["CRVAL2"] == Z.y.values[0]


def test_fits_cube_refusals(tmp_path):
    Z = cube()
    with pytest.raises(ExportError, match="dims"):
        xf.io.write_fits_cube(Z.isel(energy=0), tmp_path / "a.fits")
    with pytest.raises(ExportError, match="DataArray"):
        xf.io.write_fits_cube(Z.values, tmp_path / "a.fits")
    bad = Z.copy(data=Z.values.copy())
    bad.values[3, 2, 1] = np.nan
    with pytest.raises(ExportError, match=r"Z: 1 non-finite values .*\(3, 2, 1\)"):
        xf.io.write_fits_cube(bad, tmp_path / "a.fits")
    with pytest.raises(ExportError, match="units 'counts'"):
        xf.io.write_fits_cube(Z.assign_attrs(units="counts"), tmp_path / "a.fits")
    with pytest.raises(ExportError, match="sigma: shape"):
        xf.io.write_fits_cube(Z, tmp_path / "a.fits", sigma=np.ones((2, 2, 2)))
    with pytest.raises(ExportError, match="sigma: .*negative"):
        xf.io.write_fits_cube(Z, tmp_path / "a.fits", sigma=-Z)
    assert not (tmp_path / "a.fits").exists()
    xf.io.write_fits_cube(Z, tmp_path / "a.fits")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        xf.io.write_fits_cube(Z, tmp_path / "a.fits")
    xf.io.write_fits_cube(Z, tmp_path / "a.fits", overwrite=True)


# -------------------------------------------------------------------------------- regions
def test_region_forms_select_the_same_pixels():
    Z = cube()
    iy, ix = 4, 6
    ra, dec = float(Z.ra[iy, ix]), float(Z.dec[iy, ix])
    r = 12.0  # arcsec: the centre pixel and its 4 edge neighbours (diagonals at 14.1")
    expect = np.zeros((9, 12), bool)
    for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        expect[iy + dy, ix + dx] = True
    centre = SkyCoord(ra, dec, unit="deg")
    forms = [
        expect,
        xr.DataArray(expect, dims=("y", "x")),
        [(iy, ix), (iy + 1, ix), (iy - 1, ix), (iy, ix + 1), (iy, ix - 1), (iy, ix)],
        np.argwhere(expect),
        (ra, dec, r),
        regions.CircleSkyRegion(centre, r * u.arcsec),
        regions.CirclePixelRegion(regions.PixCoord(x=ix, y=iy), radius=r / STEP),
        regions.RectangleSkyRegion(centre, 25 * u.arcsec, 5 * u.arcsec).union(
            regions.RectangleSkyRegion(centre, 5 * u.arcsec, 25 * u.arcsec)),
    ]
    for f in forms:
        m = region_mask(Z, f)
        assert m.dims == ("y", "x") and m.dtype == bool
        np.testing.assert_array_equal(m.values, expect, err_msg=type(f).__name__)
        assert m.attrs["n_pixels"] == 5


def test_region_refusals():
    Z = cube()
    with pytest.raises(RegionError, match="shape"):
        region_mask(Z, np.ones((3, 3), bool))
    with pytest.raises(RegionError, match="must be boolean"):
        region_mask(Z, np.ones((9, 12)))
    with pytest.raises(RegionError, match=r"pixel \(iy=9, ix=0\) is outside"):
        region_mask(Z, [(9, 0)])
    with pytest.raises(RegionError, match="outside"):
        region_mask(Z, [(-1, 0)])
    with pytest.raises(RegionError, match="whole numbers"):
        region_mask(Z, [(1.5, 0)])
    with pytest.raises(RegionError, match="selects no pixel"):
        region_mask(Z, np.zeros((9, 12), bool))
    with pytest.raises(RegionError, match="selects no pixel"):
        region_mask(Z, (RA0 + 10, DEC0, 30.0))
    with pytest.raises(RegionError, match="radius"):
        region_mask(Z, (RA0, DEC0, 0.0))
    with pytest.raises(RegionError, match="needs Z's celestial WCS"):
        region_mask(cube(wcs=False), (RA0, DEC0, 30.0))
    with pytest.raises(RegionError, match="not a region"):
        region_mask(Z, "circle(1,2,3)")
    with pytest.raises(RegionError, match="dims 'y' and 'x'"):
        region_mask(Z.isel(x=0), [(0, 0)])


# -------------------------------------------------------------------------------- spectra
def _read_pha(path):
    with fits.open(path) as hdul:
        return hdul["SPECTRUM"].header, hdul["SPECTRUM"].data.copy(), hdul["EBOUNDS"].data.copy()


def test_spectrum_read_back_by_gammapy_and_astropy(tmp_path):
    from gammapy.datasets import SpectrumDatasetOnOff

    Z = cube()
    region = (float(Z.ra[4, 6]), float(Z.dec[4, 6]), 25.0)
    m = region_mask(Z, region).values
    total = Z.values[:, m].sum(axis=1)
    draws = fake_draws(Z)
    files = xf.io.write_spectrum(Z, region, tmp_path / "s.pha", draws=draws, exposure=1e4,
                                 area=250.0)
    assert files == {k: str(tmp_path / f"s.{k}") for k in ("pha", "rmf", "arf")}
    h, spec, eb = _read_pha(files["pha"])
    for k, v in (("HDUCLASS", "OGIP"), ("HDUCLAS1", "SPECTRUM"), ("HDUCLAS3", "COUNT"),
                 ("RESPFILE", "s.rmf"), ("ANCRFILE", "s.arf"), ("EXPOSURE", 1e4),
                 ("POISSERR", False), ("DETCHANS", 24), ("XF_NPIX", int(m.sum()))):
        assert h[k] == v, k
    assert "BACKFILE" not in h
    assert abs(h["RA_OBJ"] - region[0]) < 1e-6 and abs(h["DEC_OBJ"] - region[1]) < 1e-6
    np.testing.assert_allclose(spec["COUNTS"] / (1e4 * 250.0), total, rtol=1e-12)
    err = draws.values[:, :, m].sum(axis=2).std(axis=0, ddof=1)
    np.testing.assert_allclose(spec["STAT_ERR"] / (1e4 * 250.0), err, rtol=1e-12)
    np.testing.assert_allclose(eb["E_MIN"], Z.energy_lo.values, rtol=1e-6)
    rmf = xf.io.read_rmf(files["rmf"])
    np.testing.assert_array_equal(rmf.values, np.eye(24))
    assert rmf.attrs["first_channel"] == 0
    np.testing.assert_array_equal(spec["CHANNEL"], np.arange(24))
    np.testing.assert_allclose(xf.io.read_arf(files["arf"]).values, 250.0)

    sd = SpectrumDatasetOnOff.read(files["pha"])
    flux = sd.counts.data.ravel() / sd.exposure.quantity.to_value("cm2 s").ravel()
    np.testing.assert_allclose(flux, total, rtol=1e-6)
    pdf = sd.edisp.get_edisp_kernel().pdf_matrix
    np.testing.assert_allclose(pdf, np.eye(24), atol=1e-6)
    np.testing.assert_allclose(sd.counts.geom.axes["energy"].edges.to_value("keV"),
                               np.append(Z.energy_lo.values, Z.energy_hi.values[-1]),
                               rtol=1e-6)


def test_spectrum_errors_from_sigma_and_none(tmp_path):
    Z = cube()
    sig = 0.1 * Z
    mask = np.zeros((9, 12), bool)
    mask[3:6, 5:8] = True
    files = xf.io.write_spectrum(Z, mask, tmp_path / "a.pha", sigma=sig)
    h, spec, _ = _read_pha(files["pha"])
    np.testing.assert_allclose(spec["STAT_ERR"],
                               np.sqrt((sig.values[:, mask] ** 2).sum(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(spec["COUNTS"], Z.values[:, mask].sum(axis=1), rtol=1e-12)
    assert "quadrature" in h["XF_ERR"]
    with pytest.warns(UserWarning, match="no\\s+STAT_ERR|STAT_ERR"):
        files = xf.io.write_spectrum(Z, mask, tmp_path / "b.pha")
    _, spec, _ = _read_pha(files["pha"])
    assert "STAT_ERR" not in spec.columns.names


def test_spectrum_refusals(tmp_path):
    Z = cube()
    m = np.ones((9, 12), bool)
    with pytest.raises(ExportError, match="not both"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.pha", sigma=Z, draws=fake_draws(Z))
    with pytest.raises(ExportError, match="at least 2"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.pha", draws=fake_draws(Z, n=1))
    with pytest.raises(ExportError, match="draws: dims"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.pha", draws=Z)
    with pytest.raises(ExportError, match="exposure"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.pha", sigma=Z, exposure=0)
    with pytest.raises(ExportError, match="area"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.pha", sigma=Z, area=float("nan"))
    with pytest.raises(ExportError, match=r"ends in \.rmf"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.rmf", sigma=Z)
    with pytest.raises(RegionError, match="needs Z's celestial WCS"):
        xf.io.write_spectrum(cube(wcs=False), (RA0, DEC0, 20.0), tmp_path / "s.pha", sigma=Z)
    assert not os.listdir(tmp_path)
    # an existing sibling blocks all three; nothing is written
    (tmp_path / "s.arf").write_text("mine")
    with pytest.raises(FileExistsError, match="s.arf"):
        xf.io.write_spectrum(Z, m, tmp_path / "s.pha", sigma=Z)
    assert sorted(os.listdir(tmp_path)) == ["s.arf"]
    xf.io.write_spectrum(Z, m, tmp_path / "s.pha", sigma=Z, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["s.arf", "s.pha", "s.rmf"]


def test_docs_example_fits_the_line(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parents[1] / "docs" / "export.md").read_text()
    block = re.search(r"<!-- example: fit -->\s*```python\n(.*?)```", text, re.S).group(1)
    Z = cube(L=48, M=9, N=12)
    monkeypatch.chdir(tmp_path)
    ns = {"Z": Z, "draws": fake_draws(Z, n=8)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(block, "docs/export.md", "exec"), ns)
    p, cov = ns["p"], ns["cov"]
    assert abs(p[2] - LINE_E) < 3 * np.sqrt(cov[2, 2]) + 1e-4
    assert abs(abs(p[3]) - LINE_S) < 0.1 * LINE_S
    assert "line at 0.62" in capsys.readouterr().out
    assert (tmp_path / "bright.rmf").exists() and (tmp_path / "bright.arf").exists()
