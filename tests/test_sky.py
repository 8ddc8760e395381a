"""The fused cube on the sky: ra/dec, WCS and CF attributes on Z, and their round trips."""

import importlib.util
import warnings

import numpy as np
import pytest
import xarray as xr
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

import xfusion as xf
from xfusion import sky
from xfusion.io._fits import header_str

from .conftest import tiny_problem

RA0, DEC0, ROLL = 83.63, 22.01, 30.0


def rotated_header(M=9, N=12, step=10.0):
    return header_str(xf.io.make_wcs((RA0, DEC0), step, (M, N), rotation=ROLL).to_header())


def quick_fuse(ds, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xf.FitWarning)
        return xf.fuse(ds, "lrs", rank=3, max_iter=8, progress=False, **kw)


@pytest.fixture(scope="module")
def Z():
    ds = tiny_problem()
    ds.attrs["wcs"] = rotated_header()
    return quick_fuse(ds)


def test_result_carries_sky_coords_wcs_and_units(Z):
    assert Z.attrs["Conventions"] == "CF-1.8"
    w = WCS(fits.Header.fromstring(Z.attrs["wcs"], sep="\n"))
    assert Z["ra"].dims == Z["dec"].dims == ("y", "x")
    iy, ix = np.mgrid[0:Z.sizes["y"], 0:Z.sizes["x"]]
    ra, dec = w.wcs_pix2world(ix.astype(float), iy.astype(float), 0)
    np.testing.assert_allclose(Z["ra"].values, ra, rtol=0, atol=1e-10)
    np.testing.assert_allclose(Z["dec"].values, dec, rtol=0, atol=1e-10)
    # the grid is rotated: ra changes along y too
    assert np.ptp(Z["ra"].values[:, 0]) > 0
    for c in Z.coords:
        assert "units" in Z[c].attrs, c
    assert Z["ra"].attrs["units"] == Z["dec"].attrs["units"] == "deg"
    assert {"energy_lo", "energy_hi"} <= set(Z.coords)


def test_no_wcs_no_sky_coords_but_cf_attrs():
    Z = quick_fuse(tiny_problem())
    assert "ra" not in Z.coords and "wcs" not in Z.attrs
    assert Z.attrs["Conventions"] == "CF-1.8"
    with pytest.raises(ValueError, match="no celestial WCS"):
        sky.celestial_wcs(Z)


def test_to_dataset_has_cf_bounds(Z):
    ds = sky.to_dataset(Z)
    assert ds["energy"].attrs["bounds"] == "energy_bounds"
    b = ds["energy_bounds"]
    assert b.dims == ("energy", "nv") and b.attrs["units"] == "keV"
    np.testing.assert_array_equal(b.values[:, 0], Z["energy_lo"].values)
    np.testing.assert_array_equal(b.values[:, 1], Z["energy_hi"].values)
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["wcs"] == Z.attrs["wcs"]


def _check_back(back, Z):
    z = back["Z"]
    assert z.attrs["wcs"] == Z.attrs["wcs"] and z.attrs["Conventions"] == "CF-1.8"
    np.testing.assert_allclose(z["ra"].values, Z["ra"].values)
    np.testing.assert_allclose(z["dec"].values, Z["dec"].values)
    assert back["energy"].attrs["bounds"] == "energy_bounds"
    np.testing.assert_allclose(back["energy_bounds"].values[:, 1], Z["energy_hi"].values)
    assert back["ra"].attrs["units"] == "deg"
    np.testing.assert_array_equal(z.values, Z.values)


def test_zarr_round_trip(Z, tmp_path):
    sky.to_dataset(Z).to_zarr(tmp_path / "z.zarr")
    _check_back(xr.open_zarr(tmp_path / "z.zarr").load(), Z)


def test_fuse_output_store_has_bounds_and_sky(tmp_path):
    ds = tiny_problem()
    ds.attrs["wcs"] = rotated_header()
    out = quick_fuse(ds, output=tmp_path / "fused.zarr")
    back = xr.open_zarr(tmp_path / "fused.zarr")
    assert "energy_bounds" in back.coords and "ra" in out.coords
    assert out.attrs["wcs"] == ds.attrs["wcs"]


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="no netcdf engine")
def test_netcdf_round_trip(Z, tmp_path):
    engine = next((e for e in ("h5netcdf", "netCDF4") if importlib.util.find_spec(e)), "scipy")
    ds = sky.to_dataset(Z)
    ds.to_netcdf(tmp_path / "z.nc", engine=engine)
    with xr.open_dataset(tmp_path / "z.nc", engine=engine) as back:
        _check_back(back.load(), Z)


def test_celestial_wcs_of_cut_out_and_refusal(Z):
    w = sky.celestial_wcs(Z)
    assert w.pixel_shape == (Z.sizes["x"], Z.sizes["y"])
    cut = Z.isel(y=slice(2, 7), x=slice(3, 10))
    wc = sky.celestial_wcs(cut)
    ra, dec = wc.wcs_pix2world([[0.0, 0.0], [6.0, 4.0]], 0).T
    np.testing.assert_allclose(ra, [cut.ra.values[0, 0], cut.ra.values[4, 6]], atol=1e-9)
    np.testing.assert_allclose(dec, [cut.dec.values[0, 0], cut.dec.values[4, 6]], atol=1e-9)
    with pytest.raises(ValueError, match="not a whole-pixel cut-out"):
        sky.celestial_wcs(Z.isel(x=slice(None, None, 2)))


def test_sky_coords_of_bare_header():
    c = sky.sky_coords(rotated_header(), (9, 12))
    s = SkyCoord(c["ra"][1], c["dec"][1], unit="deg")
    # neighbouring pixels are one pixel (10") apart, whatever the roll
    assert np.allclose(s[:, 1:].separation(s[:, :-1]).arcsec, 10.0, rtol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        sky.sky_coords(rotated_header())
    assert sky.sky_coords(xr.DataArray(np.zeros((2, 2)), dims=("y", "x"))) == {}


def test_simulated_scenario_is_on_a_nominal_sky():
    ds = xf.simulate.scenario("gaussian_1kev_rebin", seed=0, scale=0.2)
    assert "wcs" in ds.attrs and "nominal" in ds.attrs["wcs_nominal"]
    c = sky.sky_coords(ds)
    M, N = ds.sizes["y"], ds.sizes["x"]
    centre = SkyCoord(*sky.NOMINAL_CENTRE, unit="deg")
    # the image centre (offset 0) is the nominal position; pixels are 10" apart
    s = SkyCoord(c["ra"][1], c["dec"][1], unit="deg")
    assert s[M // 2, N // 2].separation(centre).arcsec < 1e-6
    assert np.allclose(s[:, 1:].separation(s[:, :-1]).arcsec, 10.0, rtol=1e-4)
    # x grows west (ra falls), y north (dec rises)
    assert c["ra"][1][0, 1] < c["ra"][1][0, 0] and c["dec"][1][1, 0] > c["dec"][1][0, 0]
