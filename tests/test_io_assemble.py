"""Responses on Z's grid and assembly of a problem from files (alignment, refusals)."""

import warnings

import numpy as np
import pytest
from scipy.special import ndtr

import xfusion as xf
from xfusion import ProblemError
from xfusion.io import FileFormatError

RA0, DEC0, ROLL = 266.4, -29.0, 30.0
PITCH = 30.0


def rmf_arrays(e_lo=0.2, e_hi=12.0, de=0.01, dch=0.005, sigma=lambda E: 0.04 * np.sqrt(E)):
    e = np.arange(e_lo, e_hi + de / 2, de)
    lo, hi = e[:-1], e[1:]
    ch = np.arange(int(round(12.0 / dch)))
    emin, emax = ch * dch, (ch + 1) * dch
    Ec = 0.5 * (lo + hi)
    s = sigma(Ec)[:, None]
    M = ndtr((emax[None] - Ec[:, None]) / s) - ndtr((emin[None] - Ec[:, None]) / s)
    M[M < 1e-8] = 0
    return lo, hi, M, emin, emax


# ---------------------------------------------------------------------- response_from_rmf
def test_response_equals_gaussian_response_on_matching_grids(tmp_path):
    """RMF true bins = Z's bins: the re-gridded response is the exact channel integral."""
    E = np.linspace(1.0, 3.0, 81)  # Z: 25 eV bins
    Ec = 0.5 * (E[1:] + E[:-1])
    sig = 0.03 + 0.02 * (Ec - 1.0)  # energy-dependent resolution
    ch = np.arange(480)  # 25 eV channels from 0
    emin, emax = ch * 0.025, (ch + 1) * 0.025
    M = ndtr((emax[None] - Ec[:, None]) / sig[:, None]) - \
        ndtr((emin[None] - Ec[:, None]) / sig[:, None])
    p = xf.io.write_rmf(tmp_path / "g.rmf", E[:-1], E[1:], M, emin, emax, first_channel=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # edges on channel boundaries: no split warning
        R = xf.io.response_from_rmf(p, E, E[::8])
    ref = xf.kernels.gaussian_response(Ec, sig, vL=8, energy_edges=E)
    assert R.dims == ("energy_coarse", "energy") and R.shape == (10, 80)
    np.testing.assert_allclose(R.values, ref, atol=1e-6)
    np.testing.assert_allclose(R["energy_lo"], E[:-1])


def test_response_averages_finer_rmf_rows_and_sums_below_one():
    lo, hi, M, emin, emax = rmf_arrays()
    rmf = _da(lo, hi, M, emin, emax)
    E = np.linspace(2.0, 4.0, 41)
    R = xf.io.response_from_rmf(rmf, E, E[::5])
    col = R.values.sum(axis=0)
    assert (col <= 1 + 1e-12).all() and col[20] > 0.99 and col[0] < 0.7
    # bin j of Z averages the 5 RMF rows inside it, then sums channels in X's bins
    j = 13
    rows = M[(lo >= E[j] - 1e-9) & (hi <= E[j + 1] + 1e-9)].mean(axis=0)
    ref = [rows[(emin >= a - 1e-9) & (emax <= b + 1e-9)].sum() for a, b in
           zip(E[::5][:-1], E[::5][1:], strict=True)]
    np.testing.assert_allclose(R.values[:, j], ref, atol=1e-12)


def _da(lo, hi, M, emin, emax, **attrs):
    import xarray as xr
    return xr.DataArray(M, dims=("energy_true", "channel"), coords={
        "energy_lo": ("energy_true", lo), "energy_hi": ("energy_true", hi),
        "e_min": ("channel", emin), "e_max": ("channel", emax),
        "channel": np.arange(emin.size)}, attrs={"filename": "mem.rmf", **attrs})


def test_response_faults(tmp_path):
    lo, hi, M, emin, emax = rmf_arrays(e_lo=0.5, e_hi=8.0)
    p = xf.io.write_rmf(tmp_path / "short.rmf", lo, hi, M, emin, emax, first_channel=0)
    E = np.linspace(6.0, 9.0, 31)
    with pytest.raises(FileFormatError, match=r"short.rmf: RMF true energies .* 0.5–8 keV.*"
                                              r"does not cover .* 6–9 keV"):
        xf.io.response_from_rmf(p, E, E[::5])
    E = np.linspace(1.0, 2.0, 11)
    full = _da(lo, hi, 300 * M, emin, emax, includes_area=True)
    with pytest.raises(FileFormatError, match="includes the effective area"):
        xf.io.response_from_rmf(full, E, E[::5])
    red, area = xf.io.split_rsp(full)
    np.testing.assert_allclose(area.sel(energy_true=slice(None)).values, 300 * M.sum(1))
    R = xf.io.response_from_rmf(red, E, E[::5])
    assert R.values.sum(axis=0).max() <= 1.0
    # a gap in the true-energy grid
    gap = _da(np.r_[lo[:100], lo[101:]], np.r_[hi[:100], hi[101:]], np.r_[M[:100], M[101:]],
              emin, emax)
    with pytest.raises(FileFormatError, match="gap"):
        xf.io.response_from_rmf(gap, np.linspace(0.5, 2.0, 16), np.linspace(0.5, 2.0, 4))
    # rows summing to 1.001 (float32 round-off) are scaled back; 1.05 is refused
    R = xf.io.response_from_rmf(_da(lo, hi, M / M.sum(1, keepdims=True) * 1.001, emin, emax),
                                E, np.array([0.0, 12.0]))
    np.testing.assert_allclose(R.values.sum(axis=0), 1.0)
    with pytest.raises(FileFormatError, match="sums to 1.05"):
        xf.io.response_from_rmf(_da(lo, hi, M / M.sum(1, keepdims=True) * 1.05, emin, emax),
                                E, np.array([0.0, 12.0]))
    with pytest.warns(UserWarning, match="split RMF channels"):
        xf.io.response_from_rmf(_da(lo, hi, M, emin, emax), E, np.array([1.0, 1.5012, 2.0]))


def test_area_on_grid(tmp_path):
    lo = np.arange(0.1, 10.0, 0.1)
    p = xf.io.write_arf(tmp_path / "a.arf", lo, lo + 0.1, 100 + 10 * (lo + 0.05))
    E = np.linspace(1.0, 5.0, 9)
    a = xf.io.area_on_grid(p, E)
    np.testing.assert_allclose(a.values, 100 + 10 * 0.5 * (E[1:] + E[:-1]), rtol=1e-6)
    assert a.dims == ("energy",) and a.attrs["units"] == "cm2"
    with pytest.raises(FileFormatError, match="a.arf: ARF energies .* does not cover"):
        xf.io.area_on_grid(p, np.linspace(5.0, 12.0, 8))


# ------------------------------------------------------------------------------ from_files
V = 6  # Z pixels per Resolve pixel
BAND, L, VL = (2.0, 8.0), 120, 10  # Z: 50 eV bins; X: 500 eV channels


def array_wcs():
    return xf.io.make_wcs((RA0, DEC0), PITCH, (6, 6), rotation=ROLL)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Event files whose binned cubes are known exactly: one event per (channel, pixel) pick."""
    d = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(3)
    lo, hi, M, emin, emax = rmf_arrays()
    f = {"rmf": xf.io.write_rmf(d / "pn.rmf", lo, hi, M, emin, emax, first_channel=0,
                                instrument="EPN")}
    f["arf_X"] = xf.io.write_arf(d / "pn.arf", lo, hi, 500 + 0 * lo)
    f["arf_Y"] = xf.io.write_arf(d / "rsl.arf", lo, hi, 200 + 5 * (lo + hi))
    yy, xx = np.mgrid[-60:61, -60:61]
    f["psf"] = xf.io.write_psf(d / "psf.fits", (1 + (yy**2 + xx**2) / 20.0**2) ** -1.5,
                               pixel_size=1.0)
    # X: counts cube on Z's grid (Resolve array subdivided, rolled by ROLL)
    C = np.linspace(*BAND, L // VL + 1)
    X = rng.poisson(0.3, (L // VL, 6 * V, 6 * V))
    wz = xf.io.subdivide_wcs(array_wcs(), V)
    ie, iy, ix = np.nonzero(X)
    reps = X[ie, iy, ix]
    ie, iy, ix = (np.repeat(a, reps) for a in (ie, iy, ix))
    ra, dec = wz.wcs_pix2world(ix.astype(float), iy.astype(float), 0)
    E = 0.5 * (C[ie] + C[ie + 1])
    f["events_X"] = xf.io.write_events(d / "pn_evt.fits", "epic", energy=E, ra=ra, dec=dec,
                                       exposure=4e4, pointing=(RA0 + 0.01, DEC0 - 0.01))
    # Y: counts per Resolve pixel and Z channel
    Y = rng.poisson(2.0, (L, 36))
    ie, pix = np.nonzero(Y)
    reps = Y[ie, pix]
    ie, pix = np.repeat(ie, reps), np.repeat(pix, reps)
    Ez = np.linspace(*BAND, L + 1)
    f["events_Y"] = xf.io.write_events(d / "rsl_evt.fits", "resolve",
                                       energy=0.5 * (Ez[ie] + Ez[ie + 1]), pixel=pix,
                                       exposure=9e4, pointing=(RA0, DEC0), roll=ROLL)
    f["X"], f["Y"] = X, Y
    f["dir"] = d
    return f


def build(f, **kw):
    args = dict(energy_band=BAND, n_energy=L, vL=VL, pixel_size=PITCH / V)
    args.update(kw)
    return xf.io.from_files(f["events_X"], f["events_Y"], f["rmf"], f["arf_X"], f["arf_Y"],
                            f["psf"], **args)


def test_from_files_bins_both_instruments_on_aligned_grids(files):
    ds = build(files)
    assert xf.validate(ds) == xf.problem.Factors(VL, V, V)
    np.testing.assert_array_equal(ds.X.values, files["X"])  # exact, through the sky, rolled
    pm = xf.io.RESOLVE_PIXEL_MAP
    for k in range(36):
        iy, ix = np.argwhere(pm == k)[0]
        expected = 0 if k == 12 else files["Y"][:, k]
        np.testing.assert_array_equal(ds.Y.values[:, iy, ix], expected)
        assert bool(ds.observed_Y[iy, ix]) == (k != 12)
    assert ds.X.attrs["exposure"] == 4e4 and ds.Y.attrs["exposure"] == 9e4
    assert ds.attrs["rotation"] == pytest.approx(ROLL)
    np.testing.assert_allclose(ds.arf_X, 500, rtol=1e-6)
    np.testing.assert_allclose(ds.arf_Y, 200 + 10 * ds.energy, rtol=1e-5)
    assert ds.psf_Y.dims == ("psf_y", "psf_x") and ds.psf_Y.shape[0] % 2 == 1
    np.testing.assert_allclose(ds.energy_lo[::VL], ds.channel_lo)
    # Z's WCS: the centre of the fine block under Resolve pixel k is pixel k's sky position
    wz, wy = xf.io.as_wcs(ds.attrs["wcs"]), array_wcs()
    sky = wy.wcs_pix2world([[2.0, 4.0]], 0)
    np.testing.assert_allclose(wz.wcs_world2pix(sky, 0)[0], [2 * V + 2.5, 4 * V + 2.5],
                               atol=1e-6)
    # the coarse coordinates are the means of the fine ones
    np.testing.assert_allclose(ds.y_coarse, ds.y.values.reshape(6, V).mean(1))


def test_from_files_leaves_band_edge_channels_out(files, tmp_path):
    """RMF sigma 0.04 sqrt(E): the top 500 eV channel (7.5-8 keV) gets ~9 % of a flat
    spectrum's counts from above 8 keV, the bottom one (2-2.5 keV) ~4.5 % from below 2 keV."""
    with pytest.warns(UserWarning, match=r"pn.rmf: 1 of X's 12 channels left out of the "
                                         r"likelihood \(observed_X False: 7.5–8 keV\)"):
        ds = build(files)
    C = np.linspace(*BAND, L // VL + 1)
    ref = xf.io.out_of_band_fraction(files["rmf"], files["arf_X"], BAND, C)
    np.testing.assert_allclose(ds.out_of_band_X, ref)
    assert 0.04 < ref.values[0] < 0.05 and 0.08 < ref.values[-1] < 0.1
    np.testing.assert_array_equal(ds.observed_X, ref.values <= 0.05)
    assert ds.attrs["edge_tolerance"] == 0.05 and ds.attrs["edge_channels"] == [[7.5, 8.0]]
    np.testing.assert_array_equal(ds.X, files["X"])           # the counts are kept as read
    back = xf.open_problem(xf.save_problem(ds, tmp_path / "edges.zarr"))
    np.testing.assert_array_equal(back.observed_X, ds.observed_X)
    assert back.attrs["edge_channels"] == [[7.5, 8.0]]
    with pytest.warns(UserWarning, match="2 of X's 12 channels"):
        two = build(files, edge_tolerance=0.04)
    assert not two.observed_X.values[[0, -1]].any()
    for off in (None, 0):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            assert "observed_X" not in build(files, edge_tolerance=off).coords
    with pytest.raises(ProblemError, match="edge_tolerance=0.05 leaves none of X's 1 channels"):
        build(files, energy_band=(2.0, 2.5), n_energy=10)
    with pytest.raises(ValueError, match="tolerance must be in"):
        build(files, edge_tolerance=-0.1)


def test_from_files_problem_survives_zarr(files, tmp_path):
    ds = build(files)
    back = xf.open_problem(xf.save_problem(ds, tmp_path / "p.zarr"))
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.observed_Y, ds.observed_Y)
    assert back.attrs["wcs"] == ds.attrs["wcs"] and back.attrs["events_X"] == files["events_X"]


def test_from_files_with_explicit_grid_and_refusals(files):
    wz = xf.io.subdivide_wcs(array_wcs(), 3)
    ds = build(files, pixel_size=None, wcs=wz, shape=(18, 18))
    assert xf.validate(ds) == xf.problem.Factors(VL, 3, 3)
    with pytest.raises(ProblemError, match="ratio 4.28.* not an integer"):
        build(files, pixel_size=7.0)
    north_up = xf.io.make_wcs((RA0, DEC0), 5.0, (36, 36))
    with pytest.raises(ProblemError, match="rotated by -?30°"):
        build(files, pixel_size=None, wcs=north_up, shape=(36, 36))
    shifted = xf.io.subdivide_wcs(array_wcs(), 6)
    shifted.wcs.crpix = shifted.wcs.crpix + [0.5, 0.0]
    with pytest.raises(ProblemError, match="0.5 of a fine pixel"):
        build(files, pixel_size=None, wcs=shifted, shape=(36, 36))
    with pytest.raises(ProblemError, match="not a multiple of vL"):
        build(files, n_energy=125)
    with pytest.raises(FileFormatError, match=r"pn.rmf.*does not cover"):
        build(files, energy_band=(2.0, 14.0), n_energy=240)


def test_from_files_energy_dependent_psf_and_full_rsp(files, tmp_path):
    yy, xx = np.mgrid[-60:61, -60:61]
    imgs = [(1 + (yy**2 + xx**2) / r**2) ** -1.5 for r in (15.0, 30.0)]
    psf = xf.io.write_psf(tmp_path / "psf2.fits", imgs, pixel_size=1.0, energies=[3.0, 7.0])
    lo, hi, M, emin, emax = rmf_arrays()
    rsp = xf.io.write_rmf(tmp_path / "pn.rsp", lo, hi, 500 * M, emin, emax, first_channel=0,
                          extname="SPECRESP MATRIX")
    args = dict(energy_band=BAND, n_energy=L, vL=VL, pixel_size=PITCH / V)
    ds = xf.io.from_files(files["events_X"], files["events_Y"], rsp, None, files["arf_Y"], psf,
                          **args)
    assert ds.psf_Y.dims == ("energy", "psf_y", "psf_x")
    xf.validate(ds)
    ref = build(files)
    # area split off the full matrix: area × response is the same product
    np.testing.assert_allclose(ds.arf_X.values[None] * ds.response_X.values,
                               ref.arf_X.values[None] * ref.response_X.values, rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(FileFormatError, match="count twice"):
        xf.io.from_files(files["events_X"], files["events_Y"], rsp, files["arf_X"],
                         files["arf_Y"], psf, **args)


def test_from_files_generic_y_on_a_sky_grid(files, tmp_path):
    """A non-Resolve Y (e.g. another imaging spectrometer) binned on a north-up grid."""
    rng = np.random.default_rng(0)
    n = 500
    ra = RA0 + rng.uniform(-40, 40, n) / 3600 / np.cos(np.deg2rad(DEC0))
    dec = DEC0 + rng.uniform(-40, 40, n) / 3600
    ev = xf.io.write_events(tmp_path / "y.fits", "epic", energy=rng.uniform(2, 8, n), ra=ra,
                            dec=dec, exposure=1e3, pointing=(RA0, DEC0), detector="EMOS1")
    ds = xf.io.from_files(files["events_X"], ev, files["rmf"], files["arf_X"], files["arf_Y"],
                          files["psf"], energy_band=BAND, n_energy=L, vL=VL, pixel_size=5.0,
                          options_Y={"pixel_size": 20.0, "shape": (5, 5),
                                     "centre": (RA0, DEC0)})
    assert xf.validate(ds) == xf.problem.Factors(VL, 4, 4)
    assert ds.Y.sum() == n and ds.attrs["rotation"] == pytest.approx(0.0, abs=1e-9)
    assert "observed_Y" not in ds.coords
