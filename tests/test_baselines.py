"""Tests for xfusion.baselines on tiny hand-built, noiseless fusion problems."""

import math

import numpy as np
import pytest
import xarray as xr

from xfusion import baselines as b

TX, TY = 100.0, 400.0


def make_ds(Z, vL=2, vM=2, vN=2, arf_X=None, arf_Y=None, noise_seed=None):
    """Fusion problem for the true flux Z (L, M, N), block-sum response, delta PSF."""
    L, M, N = Z.shape
    l, m, n = L // vL, M // vM, N // vN
    if arf_X is None:  # varies with energy, constant inside each coarse channel
        arf_X = np.repeat(np.linspace(50.0, 80.0, l), vL)
    if arf_Y is None:
        arf_Y = np.linspace(10.0, 20.0, L)
    aX = arf_X if arf_X.ndim == 3 else arf_X[:, None, None]
    aY = arf_Y if arf_Y.ndim == 3 else arf_Y[:, None, None]
    R = np.kron(np.eye(l), np.ones((1, vL)))  # (l, L) block sum
    X = TX * np.einsum("cl,lyx->cyx", R, aX * Z)
    Y = (TY * aY * Z).reshape(L, m, vM, n, vN).sum(axis=(2, 4))
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
        X, Y = rng.poisson(X).astype(float), rng.poisson(Y).astype(float)
    e = 0.5 + 0.01 * np.arange(L)
    y = 10.0 * np.arange(M)
    x = 10.0 * np.arange(N)
    fine3 = ("energy", "y", "x")
    return xr.Dataset(
        {
            "X": (("energy_coarse", "y", "x"), X, {"exposure": TX}),
            "Y": (("energy", "y_coarse", "x_coarse"), Y, {"exposure": TY}),
            "response_X": (("energy_coarse", "energy"), R),
            "psf_Y": (("psf_y", "psf_x"), np.ones((1, 1))),
            "arf_X": (fine3 if arf_X.ndim == 3 else ("energy",), arf_X),
            "arf_Y": (fine3 if arf_Y.ndim == 3 else ("energy",), arf_Y),
            "Z_true": (fine3, Z),
        },
        coords={
            "energy": ("energy", e, {"units": "keV"}),
            "energy_lo": ("energy", e - 0.005),
            "energy_coarse": e.reshape(l, vL).mean(axis=1),
            "y": y,
            "x": x,
            "y_coarse": y.reshape(m, vM).mean(axis=1),
            "x_coarse": x.reshape(n, vN).mean(axis=1),
        },
    )


def test_flat_cube_recovered_by_both():
    Z = np.full((4, 4, 6), 0.25)
    ds = make_ds(Z)
    for fn, method in ((b.x_only, "x_only"), (b.y_only, "y_only")):
        out = fn(ds)
        assert out.dims == ("energy", "y", "x")
        assert out.attrs == {"units": "photon cm-2 s-1", "method": method}
        np.testing.assert_allclose(out.values, Z, rtol=1e-12)
        for c in ("energy", "y", "x", "energy_lo"):
            np.testing.assert_array_equal(out[c].values, ds[c].values)
        assert "energy_coarse" not in out.coords


def test_x_only_exact_for_flux_flat_within_coarse_channels():
    # Any spatial structure, constant inside each coarse channel; ARF constant per block.
    rng = np.random.default_rng(0)
    Z = np.repeat(rng.random((3, 4, 4)), 2, axis=0)
    arf = np.repeat(np.array([30.0, 60.0, 90.0]), 2)
    np.testing.assert_allclose(b.x_only(make_ds(Z, arf_X=arf)).values, Z, rtol=1e-12)


def test_y_only_exact_for_flux_flat_within_coarse_pixels():
    # Any spectral structure, constant inside each 2x3 coarse pixel.
    rng = np.random.default_rng(1)
    Z = np.repeat(np.repeat(rng.random((5, 2, 2)), 2, axis=1), 3, axis=2)
    np.testing.assert_allclose(b.y_only(make_ds(Z, vL=5, vN=3)).values, Z, rtol=1e-12)


def test_flux_spread_exact_with_varying_area():
    # ARF varying within coarse channels and vignetting within coarse pixels:
    # "flux" spreading is exact for a flat cube, "counts" spreading is not.
    rng = np.random.default_rng(2)
    Z = np.full((4, 4, 4), 2.0)
    aX = 10 + 50 * rng.random(4)
    aY = 10 + 50 * rng.random((4, 4, 4))
    ds = make_ds(Z, arf_X=aX, arf_Y=aY)
    np.testing.assert_allclose(b.x_only(ds, spread="flux").values, Z, rtol=1e-12)
    np.testing.assert_allclose(b.y_only(ds, spread="flux").values, Z, rtol=1e-12)
    assert not np.allclose(b.x_only(ds, spread="counts").values, Z)
    assert not np.allclose(b.y_only(ds, spread="counts").values, Z)


@pytest.mark.parametrize("spread", ["counts", "flux"])
def test_photon_counts_conserved(spread):
    rng = np.random.default_rng(3)
    Z = rng.random((6, 4, 4)) * 3
    aX = 10 + 50 * rng.random(6)
    aY = 10 + 50 * rng.random((6, 4, 4))  # vignetted
    ds = make_ds(Z, vL=3, arf_X=aX, arf_Y=aY, noise_seed=4)
    zx = b.x_only(ds, spread=spread).values
    zy = b.y_only(ds, spread=spread).values
    assert np.sum(zx * TX * aX[:, None, None]) == pytest.approx(ds.X.values.sum(), rel=1e-12)
    assert np.sum(zy * TY * aY) == pytest.approx(ds.Y.values.sum(), rel=1e-12)
    # per coarse channel / coarse pixel too
    np.testing.assert_allclose(
        (zx * TX * aX[:, None, None]).reshape(2, 3, 4, 4).sum(1), ds.X.values, rtol=1e-12
    )
    np.testing.assert_allclose(
        (zy * TY * aY).reshape(6, 2, 2, 2, 2).sum((2, 4)), ds.Y.values, rtol=1e-12
    )


def test_zero_area_gives_zero():
    Z = np.ones((4, 2, 2))
    aX = np.array([0.0, 5.0, 5.0, 5.0])
    ds = make_ds(Z, arf_X=aX, vM=1, vN=1)
    out = b.x_only(ds, spread="counts").values
    assert np.all(out[0] == 0.0)
    assert np.all(np.isfinite(out))


def test_baseline_report():
    Z = np.full((4, 8, 8), 1.5)
    ds = make_ds(Z)
    r = b.baseline_report(ds)
    assert set(r) == {"X only", "Y only"}
    for v in r.values():
        assert set(v) == {"NMSE", "aSAM", "acSSIM", "ERGAS"}
        assert v["NMSE"] > 200 or v["NMSE"] == math.inf
        assert v["ERGAS"] == pytest.approx(0.0, abs=1e-12)

    rng = np.random.default_rng(5)
    ds = make_ds(rng.random((4, 8, 8)) + 0.5)
    r = b.baseline_report(ds)
    # default ratio d = 1 / v_M = 1/2
    assert r["Y only"]["ERGAS"] == pytest.approx(
        b.baseline_report(ds, ratio=1.0)["Y only"]["ERGAS"] / 2
    )


def test_errors():
    ds = make_ds(np.ones((4, 8, 8)))
    with pytest.raises(ValueError, match="Z_true"):
        b.baseline_report(ds.drop_vars("Z_true"))
    bad = ds.copy()
    bad["X"].attrs = {}
    with pytest.raises(ValueError, match="exposure"):
        b.x_only(bad)
    with pytest.raises(ValueError, match="spread"):
        b.y_only(ds, spread="nope")
