"""Per-voxel uncertainty of a fused cube (xfusion/uncertainty.py): bootstrap, errors, regions."""

import warnings

import numpy as np
import pytest
import xarray as xr

import xfusion as xf
from tests.conftest import consistent_problem
from xfusion.uncertainty import fit_settings, region_spectrum

QUIET = {"progress": False}


def identity_problem(L=6, M=6, N=6, counts=400.0, exposure=1.0, seed=0):
    """Both instruments see every voxel directly (identity response, 1-pixel PSF, no
    rebinning): the unregularized estimate is (X + Y) / (t_X A_X + t_Y A_Y) per voxel, with
    variance Z / (t_X A_X + t_Y A_Y)."""
    rng = np.random.default_rng(seed)
    E = 0.5 + 0.01 * np.arange(L)
    Zt = rng.uniform(0.5, 1.5, (L, M, N))
    tX, tY = counts / 100 * exposure, counts / 50 * exposure
    X = rng.poisson(Zt * tX * 100)
    Y = rng.poisson(Zt * tY * 50)
    return xf.make_problem(X, Y, np.eye(L), np.ones((1, 1)), np.full(L, 100.0),
                           np.full(L, 50.0), exposure_X=tX, exposure_Y=tY, energy=E, Z_true=Zt)


def _fuse(ds, reg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xf.FitWarning)
        return xf.fuse(ds, reg, progress=False, **kw)


@pytest.fixture(scope="module")
def lr_fit():
    ds = consistent_problem(noise=True)
    Z = _fuse(ds, "lr", rank=3, max_iter=40)
    D = xf.bootstrap(ds, Z, n_draws=3, seed=1, **QUIET)
    return ds, Z, D


@pytest.fixture(scope="module")
def ident_fit():
    ds = identity_problem()
    Z = _fuse(ds, "none", J1=1, J2=1)
    return ds, Z


def test_exports_callable():
    assert callable(xf.uncertainty)
    assert xf.uncertainty.bootstrap is xf.bootstrap
    assert xf.uncertainty.region_spectrum is region_spectrum
    assert {"uncertainty", "bootstrap", "region_error"} <= set(xf.__all__)


def test_bootstrap_shape_coords_attrs(lr_fit):
    ds, Z, D = lr_fit
    assert D.dims == ("draw", "energy", "y", "x")
    assert D.shape == (3, *Z.shape)
    for c in ("energy", "y", "x"):
        np.testing.assert_array_equal(D[c], Z[c])
    np.testing.assert_array_equal(D.draw, [0, 1, 2])
    for c in ("iterations", "converged", "wall_time", "fit_warning"):
        assert D[c].dims == ("draw",)
    assert D.attrs["method"] == "parametric bootstrap"
    assert D.attrs["n_draws"] == 3 and D.attrs["seed"] == 1
    assert D.attrs["fit_regularizer"] == "lr" and D.attrs["fit_rank"] == 3
    assert D.attrs["fit_max_iter"] == 40
    assert (D.iterations <= 40).all()
    assert np.isfinite(D.values).all() and (D.values >= 0).all()
    # the refits differ from one another and from Z
    assert not np.allclose(D[0], D[1])


def test_uncertainty_like_Z(lr_fit):
    ds, Z, D = lr_fit
    E = xf.uncertainty(ds, Z, draws=D)
    assert E.name == "Z_err" and E.dims == Z.dims and E.shape == Z.shape
    for c in ("energy", "y", "x"):
        np.testing.assert_array_equal(E[c], Z[c])
    assert E.attrs["units"] == "photon cm-2 s-1"
    assert E.attrs["method"] == "parametric bootstrap"
    assert E.attrs["n_draws"] == 3 and E.attrs["seed"] == 1
    assert E.attrs["fit_regularizer"] == "lr" and E.attrs["correction"] == "none"
    np.testing.assert_allclose(E, D.astype(np.float64).std("draw", ddof=1))
    Eb = xf.uncertainty(ds, Z, draws=D, correction="bias")
    assert (Eb.values >= E.values - 1e-12).all() and Eb.attrs["correction"] == "bias"


def test_reproducible_with_seed():
    ds = consistent_problem(noise=True)
    Z = _fuse(ds, "none", max_iter=15)
    a = xf.bootstrap(ds, Z, n_draws=2, seed=3, **QUIET)
    b = xf.bootstrap(ds, Z, n_draws=2, seed=3, **QUIET)
    c = xf.bootstrap(ds, Z, n_draws=2, seed=4, **QUIET)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # draw b does not depend on how many draws are made
    d = xf.uncertainty(ds, Z, n_draws=3, seed=3, **QUIET)
    assert d.attrs["n_draws"] == 3


def test_std_scales_with_exposure_and_matches_fisher(ident_fit):
    ds, Z = ident_fit
    s1 = xf.uncertainty(ds, Z, n_draws=8, **QUIET)
    ds2 = identity_problem(exposure=2.0)
    Z2 = _fuse(ds2, "none", J1=1, J2=1)
    s2 = xf.uncertainty(ds2, Z2, n_draws=8, **QUIET)
    ratio = float((s2 / s1).median())
    assert 0.62 < ratio < 0.80, ratio            # 1/sqrt(2) = 0.707
    # here the inverse Fisher diagonal is exact: sqrt(Z / (t_X A_X + t_Y A_Y))
    F = xf.uncertainty(ds, Z, method="fisher")
    assert F.attrs["method"] == "fisher" and F.dims == Z.dims
    exact = np.sqrt(Z / (ds.X.attrs["exposure"] * 100 + ds.Y.attrs["exposure"] * 50))
    np.testing.assert_allclose(F, exact, rtol=1e-6)
    assert 0.85 < float((s1 / F).median()) < 1.15


def test_lrs_holds_sobolev_weight():
    ds = consistent_problem(noise=True)
    Z = _fuse(ds, "lrs", rank=3, max_iter=60)
    D = xf.bootstrap(ds, Z, n_draws=2, **QUIET)
    np.testing.assert_allclose(D.sobolev_weight, Z.attrs["sobolev_weight"], rtol=1e-5)
    assert D.attrs["fit_mu_sobolev"] == Z.attrs["mu_sobolev"]


def _synthetic_draws(B=40, L=4, M=6, N=6, correlated=True, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(1, 2, (L, M, N))
    if correlated:   # every voxel of a draw moves together
        d = base + 0.1 * rng.standard_normal((B, 1, 1, 1)) * np.ones((1, L, M, N))
    else:
        d = base + 0.1 * rng.standard_normal((B, L, M, N))
    return xr.DataArray(d, dims=("draw", "energy", "y", "x"),
                        coords={"draw": np.arange(B), "energy": 0.5 + 0.1 * np.arange(L),
                                "y": np.arange(M), "x": np.arange(N)})


def test_region_error_keeps_correlations():
    mask = np.zeros((6, 6), bool)
    mask[1:4, 2:5] = True
    for corr in (True, False):
        D = _synthetic_draws(correlated=corr)
        err = xf.region_error(D, mask)
        assert err.dims == ("energy",) and err.name == "flux_err"
        direct = D.values[:, :, mask].sum(axis=-1).std(axis=0, ddof=1)
        np.testing.assert_allclose(err, direct, rtol=1e-12)
        indep = np.sqrt((D.std("draw", ddof=1).values[:, mask] ** 2).sum(axis=-1))
        ratio = float(np.median(err / indep))
        if corr:
            np.testing.assert_allclose(ratio, 3.0, rtol=1e-6)   # n_pix / sqrt(n_pix), 9 px
        else:
            assert 0.6 < ratio < 1.4
    # a list of (iy, ix) is the same region; a DataArray mask too
    pix = [(iy, ix) for iy in range(1, 4) for ix in range(2, 5)]
    np.testing.assert_allclose(xf.region_error(D, pix), xf.region_error(D, mask))
    np.testing.assert_allclose(xf.region_error(D, xr.DataArray(mask, dims=("y", "x"))),
                               xf.region_error(D, mask))
    # rebinning sums consecutive channels of each draw first
    r2 = xf.region_error(D, mask, rebin=2)
    s = D.values[:, :, mask].sum(axis=-1)
    np.testing.assert_allclose(r2, (s[:, 0::2] + s[:, 1::2]).std(axis=0, ddof=1))
    np.testing.assert_allclose(r2.energy, 0.5 * (D.energy[0::2].values + D.energy[1::2].values))
    De = D.assign_coords(energy_lo=D.energy - 0.05, energy_hi=D.energy + 0.05)
    r2e = xf.region_error(De, mask, rebin=2)
    np.testing.assert_allclose(r2e.energy_lo, De.energy_lo[0::2])
    np.testing.assert_allclose(r2e.energy_hi, De.energy_hi[1::2])


def test_region_spectrum():
    D = _synthetic_draws()
    Z = D.isel(draw=0, drop=True)
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[5, 5] = True
    s = region_spectrum(Z, mask, draws=D)
    np.testing.assert_allclose(s.flux, Z.values[:, 0, 0] + Z.values[:, 5, 5])
    np.testing.assert_allclose(s.flux_err, xf.region_error(D, mask))
    assert "flux_err" not in region_spectrum(Z, mask)


@pytest.mark.filterwarnings("ignore::xfusion.FitWarning")
def test_client_equals_sequential():
    distributed = pytest.importorskip("distributed")
    ds = consistent_problem(noise=True)
    Z = _fuse(ds, "lr", rank=3, max_iter=20)
    seq = xf.bootstrap(ds, Z, n_draws=2, seed=2, **QUIET)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        par = xf.bootstrap(ds, Z, n_draws=2, seed=2, client=client, **QUIET)
    np.testing.assert_allclose(par, seq, rtol=1e-5, atol=1e-12 * float(abs(seq).max()))
    np.testing.assert_array_equal(par.iterations, seq.iterations)


def test_refusals(lr_fit):
    ds, Z, D = lr_fit
    for n in (1, 0, 2.5, True, "4"):
        with pytest.raises(xf.OptionError, match="n_draws"):
            xf.bootstrap(ds, Z, n_draws=n, **QUIET)
    with pytest.raises(xf.OptionError, match="n_draws"):
        xf.uncertainty(ds, Z, n_draws=1, **QUIET)
    bad = Z.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(xf.OptionError, match="NaN"):
        xf.bootstrap(ds, bad, **QUIET)
    with pytest.raises(xf.OptionError, match="negative"):
        xf.uncertainty(ds, -Z, **QUIET)
    with pytest.raises(xf.OptionError, match="grid"):
        xf.bootstrap(ds, Z.assign_coords(x=Z.x + 1.0), **QUIET)
    with pytest.raises(xf.OptionError, match="grid"):
        xf.bootstrap(ds, Z.isel(x=slice(0, 6)), **QUIET)
    with pytest.raises(xf.OptionError, match="DataArray"):
        xf.bootstrap(ds, Z.values, **QUIET)
    plain = xr.DataArray(Z.values, dims=Z.dims, coords={c: Z[c] for c in Z.dims})
    with pytest.raises(xf.OptionError, match="regularizer="):
        xf.bootstrap(ds, plain, **QUIET)
    with pytest.raises(xf.OptionError, match="rank="):
        xf.bootstrap(ds, plain, regularizer="lr", **QUIET)
    with pytest.raises(xf.OptionError, match="regularizer"):
        xf.bootstrap(ds, Z, regularizer="w2d1d", **QUIET)
    with pytest.raises(xf.OptionError, match="init"):
        xf.bootstrap(ds, Z, init=Z, **QUIET)
    with pytest.raises(xf.OptionError, match="method"):
        xf.uncertainty(ds, Z, draws=D, method="jackknife")
    with pytest.raises(xf.OptionError, match="correction"):
        xf.uncertainty(ds, Z, draws=D, correction="shift")
    with pytest.raises(xf.OptionError, match="draws"):
        xf.uncertainty(ds, Z, draws=D.isel(draw=0))
    with pytest.raises(xf.OptionError, match="draws"):
        xf.uncertainty(ds, Z, draws=D.isel(draw=[0]))
    with pytest.raises(xf.OptionError, match="region"):
        xf.region_error(D, np.zeros((ds.sizes["y"], ds.sizes["x"]), bool))
    with pytest.raises(xf.OptionError, match="region"):
        xf.region_error(D, np.ones((2, 2), bool))
    with pytest.raises(xf.OptionError, match="region"):
        xf.region_error(D, [(0, 99)])
    with pytest.raises(xf.OptionError, match="rebin"):
        xf.region_error(D, [(0, 0)], rebin=5)


def test_plain_cube_with_explicit_regularizer(ident_fit):
    ds, Z = ident_fit
    plain = xr.DataArray(Z.values, dims=Z.dims, coords={c: Z[c] for c in Z.dims})
    kw = fit_settings(plain, "none", J1=1, J2=1)
    assert kw["regularizer"] == "none"
    D = xf.bootstrap(ds, plain, n_draws=2, regularizer="none", J1=1, J2=1, **QUIET)
    assert D.attrs["fit_regularizer"] == "none"


def test_region_error_bias_correction():
    D = _synthetic_draws(correlated=False)
    Z = D.isel(draw=0, drop=True) + 0.05          # the refits sit 0.05 below Z on average
    mask = np.ones((6, 6), bool)
    plain = xf.region_error(D, mask)
    corr = xf.region_error(D, mask, Z=Z, correction="bias")
    s = D.values.sum(axis=(2, 3))
    sd = s.std(axis=0, ddof=1)
    b = s.mean(axis=0) - Z.values.sum(axis=(1, 2))
    np.testing.assert_allclose(corr, np.sqrt(sd**2 + np.maximum(b**2 - sd**2 / 40, 0)))
    assert (corr >= plain).all() and corr.attrs["correction"] == "bias"
    s2 = region_spectrum(Z, mask, draws=D, correction="bias")
    np.testing.assert_allclose(s2.flux_err, corr)
    with pytest.raises(xf.OptionError, match="Z="):
        xf.region_error(D, mask, correction="bias")
