"""xfusion.lines: line and velocity maps from continuum-subtracted moments."""

import numpy as np
import pytest
import xarray as xr
from scipy.special import ndtr

import xfusion as xf
from xfusion.lines import C_KMS, LINES, line_energy, line_map, upsample

E0 = LINES["Fe XXV"]


def synthetic(ny=8, nx=9, lo=6.55, hi=6.85, L=200, seed=0, flux=(1.0, 3.0),
              v_range=(-1500.0, 1500.0), sig=(0.003, 0.008), continuum=(0.004, 0.01), slope=3.0):
    """Gaussian lines of known velocity, width and flux on a linear continuum (per voxel)."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(lo, hi, L + 1)
    E = 0.5 * (edges[1:] + edges[:-1])
    v = rng.uniform(*v_range, (ny, nx))
    s = rng.uniform(*sig, (ny, nx))
    F = rng.uniform(*flux, (ny, nx))
    mu = E0 * (1 - v / C_KMS)
    prof = ndtr((edges[1:, None, None] - mu) / s) - ndtr((edges[:-1, None, None] - mu) / s)
    a = rng.uniform(*continuum, (ny, nx))
    slope = a * rng.uniform(-slope, slope, (ny, nx))  # per keV: positive over the band
    cont = a + slope * (E[:, None, None] - E0)
    Z = xr.DataArray(F * prof + cont, dims=("energy", "y", "x"), coords={"energy": E})
    dE = edges[1] - edges[0]
    return Z, {"velocity": v, "width": np.sqrt(s**2 + dE**2 / 12), "flux": F}


def poisson_draws(Z, t, n, seed):
    rng = np.random.default_rng(seed)
    d = rng.poisson(np.broadcast_to(Z.values * t, (n,) + Z.shape)) / t
    return xr.DataArray(d, dims=("draw",) + Z.dims, coords=Z.coords)


def test_noise_free_recovery():
    Z, truth = synthetic()
    m = line_map(Z, "Fe XXV")
    np.testing.assert_allclose(m.velocity, truth["velocity"], atol=0.01)  # km/s
    np.testing.assert_allclose(m.flux, truth["flux"], rtol=1e-6)
    np.testing.assert_allclose(m.width, truth["width"], rtol=1e-4)
    np.testing.assert_allclose(m.sigma_v, C_KMS * m.width / E0, rtol=1e-12)
    np.testing.assert_allclose(m.centroid, E0 * (1 - truth["velocity"] / C_KMS), atol=1e-7)
    assert m.attrs["continuum_model"] == "linear" and m.attrs["errors"] == "none"
    assert np.isnan(m.velocity_err).all() and "errors not computed" in m.attrs["note"]
    for v in m.data_vars:
        assert m[v].attrs["units"]
    assert m.velocity.dims == ("y", "x")


def test_velocity_sign_receding_is_positive():
    Z, truth = synthetic(ny=1, nx=1, v_range=(1500.0, 1500.0))
    m = line_map(Z, E0)
    assert m.velocity.item() == pytest.approx(1500.0, abs=0.1)
    assert m.centroid.item() < E0


def test_default_window_and_bands():
    Z, _ = synthetic(ny=2, nx=2)
    m = line_map(Z, "Fe XXV")
    half = E0 * 4000 / C_KMS
    assert m.attrs["window"] == pytest.approx([E0 - half, E0 + half])
    (a1, b1), (a2, b2) = m.attrs["continuum"]
    assert b1 == pytest.approx(E0 - half) and a2 == pytest.approx(E0 + half)
    assert b1 - a1 == pytest.approx(min(half, E0 - half - 6.55))
    # coarse channels: at least 3 channels either side
    Zc = Z.coarsen(energy=20).mean()
    mc = line_map(Zc, "Fe XXV", continuum="none")
    w = mc.attrs["window"]
    assert w[1] - w[0] >= 2 * 3 * 0.03 - 1e-9 or w[0] == pytest.approx(6.55)


def test_constant_continuum_at_band_edge():
    # band cut just above the window: one side band only, so a constant continuum, exact
    # for a flat one
    Z, truth = synthetic(ny=3, nx=3, v_range=(0.0, 0.0), slope=0.0)
    Zs = Z.sel(energy=slice(None, E0 + 0.05))
    m = line_map(Zs, E0, window=(E0 - 0.05, float(Zs.energy[-1])))
    assert m.attrs["continuum_model"] == "constant"
    assert len(m.attrs["continuum"]) == 1
    np.testing.assert_allclose(m.flux, truth["flux"], rtol=1e-5)
    np.testing.assert_allclose(m.velocity, 0.0, atol=0.5)


def test_no_line_and_absorption_give_nan():
    Z, _ = synthetic(ny=2, nx=3, flux=(1.0, 1.0))
    E = Z.energy
    cont = 0.005 + 0.01 * (E - E0)
    Zv = Z.values.copy()
    Zv[:, 0, 0] = cont                                         # no line at all
    Zv[:, 0, 1] = cont * (1 - 0.5 * np.exp(-0.5 * ((E - E0) / 0.005) ** 2))  # absorption
    # a residual no line could give: emission at one edge, a deeper dip at the other; F > 0
    # but the first moment lies far outside the window
    g = [np.exp(-0.5 * ((E - E0 - d) / 0.002) ** 2) for d in (0.08, -0.08)]
    Zv[:, 0, 2] = cont + 0.01 * (g[0] - 0.9 * g[1])
    m = line_map(Z.copy(data=Zv), E0)
    assert float(m.flux[0, 2]) > 0 and np.isnan(m.velocity[0, 2])
    assert np.isnan(m.velocity[0, 0]) and np.isnan(m.velocity[0, 1])
    assert np.isnan(m.width[0, 0]) and np.isnan(m.centroid[0, 1])
    assert np.isfinite(m.velocity[1]).all()
    assert float(m.flux[0, 1]) < 0  # the flux itself is kept


def test_draws_errors_are_calibrated():
    Z, truth = synthetic(ny=16, nx=16, seed=3, flux=(0.5, 1.5))
    t = 3000.0  # ~3000 line photons, S/N ~ 20-40
    obs = poisson_draws(Z, t, 1, seed=10).isel(draw=0)
    D = poisson_draws(Z, t, 60, seed=11)
    m = line_map(obs, E0, draws=D)
    ref = line_map(Z, E0)
    z = ((m.velocity - ref.velocity) / m.velocity_err).values.ravel()
    assert np.isfinite(z).all()
    frac = np.mean(np.abs(z) < 1)
    assert 0.55 <= frac <= 0.8, frac
    zf = ((m.flux - ref.flux) / m.flux_err).values.ravel()
    assert 0.55 <= np.mean(np.abs(zf) < 1) <= 0.8
    assert m.attrs["errors"] == "draws"


def test_sigma_propagation_agrees_with_draws():
    # bright lines on a faint continuum: every estimator (the width too) far from its noise
    Z, _ = synthetic(ny=10, nx=10, seed=5, flux=(1.0, 2.0), continuum=(0.0005, 0.001))
    t = 20000.0
    sigma = np.sqrt(Z / t)
    D = poisson_draws(Z, t, 150, seed=12)
    ms = line_map(Z, E0, sigma=sigma)
    md = line_map(Z, E0, draws=D)
    for v in ("flux_err", "velocity_err", "width_err", "sigma_v_err", "centroid_err"):
        r = (ms[v] / md[v]).values
        assert np.isfinite(r).all(), v
        assert 0.9 < np.median(r) < 1.1, (v, np.median(r))
        assert np.percentile(r, 90) < 1.35, v
    assert ms.attrs["errors"] == "sigma" and "independent" in ms.attrs["note"]


def test_min_snr_masks_faint_pixels():
    Z, _ = synthetic(ny=1, nx=4, flux=(1.0, 1.0))
    Zv = Z.values.copy()
    E = Z.energy.values
    faint = 0.005 * np.exp(-0.5 * ((E - E0) / 0.005) ** 2)
    Zv[:, 0, 0] = 0.005 + faint
    Zb = Z.copy(data=Zv)
    sigma = xr.full_like(Zb, 0.002)
    m = line_map(Zb, E0, sigma=sigma)
    assert float(m.flux[0, 0] / m.flux_err[0, 0]) < 3
    assert np.isnan(m.velocity[0, 0]) and np.isnan(m.velocity_err[0, 0])
    assert np.isfinite(m.velocity[0, 1:]).all()
    m0 = line_map(Zb, E0, sigma=sigma, min_snr=0)
    assert np.isfinite(m0.velocity[0, 0])


def test_dask_matches_numpy():
    pytest.importorskip("dask")
    import dask.array as da

    Z, _ = synthetic(ny=6, nx=8, seed=2)
    t = 5000.0
    D = poisson_draws(Z, t, 5, seed=1)
    sigma = np.sqrt(Z / t)
    for kw, kwd in (({}, {}), ({"sigma": sigma}, {"sigma": sigma.chunk({"y": 3})}),
                    ({"draws": D}, {"draws": D.chunk({"y": 3, "draw": 2})})):
        ref = line_map(Z, E0, **kw)
        lazy = line_map(Z.chunk({"y": 3, "energy": 50}), E0, **kwd)
        assert isinstance(lazy.velocity.data, da.Array)
        got = lazy.compute()
        for v in ref.data_vars:
            np.testing.assert_allclose(got[v], ref[v], rtol=1e-10, atol=1e-12, err_msg=v)


def test_line_names():
    assert line_energy("Fe XXV") == LINES["Fe XXV"]
    assert line_energy("fexxv") == LINES["Fe XXV"]
    assert line_energy(" o  viii ") == LINES["O VIII"]
    assert line_energy(6.4) == 6.4
    for name in ("Fe K", "Fe XXVI", "S XV", "Si XIII", "O VII", "O VIII", "Ne X", "Mg XI"):
        assert 0.3 < LINES[name] < 10
    Z, _ = synthetic(ny=1, nx=1)
    m = line_map(Z, "Fe XXV")
    assert m.attrs["line"] == LINES["Fe XXV"] and m.attrs["line_name"] == "Fe XXV"
    with pytest.raises(ValueError, match="line: unknown line name 'Fe XXX'"):
        line_energy("Fe XXX")


@pytest.mark.parametrize("call, match", [
    (lambda Z: line_map(Z.rename(energy="e")), "'energy' dim"),
    (lambda Z: line_map(Z.values), "DataArray"),
    (lambda Z: line_map(Z, 1.0), "line 1.0 .* outside Z's energy band"),
    (lambda Z: line_map(Z, "Fe K"), "line 'Fe K' .* outside"),
    (lambda Z: line_map(Z, -1.0), "line must be a positive"),
    (lambda Z: line_map(Z, "nonsense"), "line: unknown"),
    (lambda Z: line_map(Z, E0, window=(6.5, 6.8)), "window .* outside Z's energy band"),
    (lambda Z: line_map(Z, E0, window=(6.75, 6.8)), "window .* does not contain"),
    (lambda Z: line_map(Z, E0, window=(6.8, 6.6)), "window must be a finite pair"),
    (lambda Z: line_map(Z, E0, window=6.7), "window must be a pair"),
    (lambda Z: line_map(Z, E0, window=(6.7, 6.7012)), "window .* at least 3"),
    (lambda Z: line_map(Z, E0, continuum=[(6.6, 6.65)]), "continuum band .* overlaps"),
    (lambda Z: line_map(Z, E0, continuum=[(6.0, 6.6)]), "continuum .* outside"),
    (lambda Z: line_map(Z, E0, continuum="linear"), "continuum must be"),
    (lambda Z: line_map(Z, E0, continuum=[]), "continuum: an empty list"),
    (lambda Z: line_map(Z, E0, sigma=Z.isel(x=0)), "sigma must be a DataArray with Z's dims"),
    (lambda Z: line_map(Z, E0, sigma=Z.isel(x=slice(0, 2))), "sigma's sizes"),
    (lambda Z: line_map(Z, E0, draws=Z), "draws must be a DataArray with a 'draw' dim"),
    (lambda Z: line_map(Z, E0, draws=Z.expand_dims(draw=1)), "at least 2 draws"),
    (lambda Z: line_map(Z, E0, min_snr=-1), "min_snr"),
])
def test_refusals_name_the_argument(call, match):
    Z, _ = synthetic(ny=2, nx=3)
    with pytest.raises(ValueError, match=match):
        call(Z)


def test_window_filling_band_needs_continuum():
    Z, _ = synthetic(ny=1, nx=1, lo=6.68, hi=6.72, L=40)
    with pytest.raises(ValueError, match="continuum: the window .* fills Z's band"):
        line_map(Z, E0)
    m = line_map(Z, E0, continuum="none")
    assert m.attrs["continuum_model"] == "none"


def test_upsample_and_baseline_on_simulated_field():
    ds = xf.simulate.scenario("gaussian_6kev", seed=0, scale=0.2)
    m = line_map(ds.Z_true, "Fe XXV")
    assert m.velocity.shape == (ds.sizes["y"], ds.sizes["x"])
    ok = np.isfinite(m.velocity).values
    assert ok.mean() > 0.1
    w = m.attrs["window"]
    c = m.centroid.values[ok]
    assert ((c >= w[0]) & (c <= w[1])).all()
    wid = m.width.values[ok]
    assert (wid[np.isfinite(wid)] <= 0.5 * (w[1] - w[0])).all()
    assert (m.flux.values[ok] > 0).all() and np.isnan(m.width.values[m.flux.values <= 0]).all()
    coarse = xr.DataArray(np.ones((4, 2, 3)), dims=("energy", "y_coarse", "x_coarse"))
    like = xr.DataArray(np.zeros((4, 6, 9)), dims=("energy", "y", "x"))
    up = upsample(coarse, like)
    assert up.shape == (4, 6, 9) and float(up.sum()) == pytest.approx(24.0)
    with pytest.raises(ValueError, match="do not divide"):
        upsample(coarse, like.isel(x=slice(0, 8)))
