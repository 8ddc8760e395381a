"""Tests of xfusion.simulate: the paper's Table 1 scenarios on the synthetic remnant."""

import json
import time

import numpy as np
import pytest
from scipy import ndimage

import xfusion as xf
from xfusion import simulate as sim

C_KMS = 299_792.458
NAMES = list(sim.SCENARIOS)

# paper Table 1: X (l, M, N), Y (L, m, n), band, counts X / Y
TABLE1 = {
    "gaussian_1kev": ((2500, 45, 45), (2500, 45, 45), (0.5, 1.4), 2.4e7, 2.3e7),
    "gaussian_6kev": ((2000, 45, 45), (2000, 45, 45), (6.2, 6.9), 3.2e7, 3.1e7),
    "gaussian_1kev_rebin": ((60, 45, 45), (2400, 15, 15), (0.5, 1.4), 2.7e6, 2.5e6),
    "realistic_1kev_rebin": ((60, 45, 45), (2400, 15, 15), (0.5, 1.4), 4.5e7, 3.0e7),
}


@pytest.fixture(scope="module")
def small():
    """Every scenario at scale 0.2, built once."""
    return {n: sim.scenario(n, seed=0, scale=0.2) for n in NAMES}


def _shapes(ds):
    return ((ds.sizes["energy_coarse"], ds.sizes["y"], ds.sizes["x"]),
            (ds.sizes["energy"], ds.sizes["y_coarse"], ds.sizes["x_coarse"]))


# ----------------------------------------------------------------------------- grids
@pytest.mark.parametrize("name", NAMES)
def test_full_size_grid_matches_table1(name):
    g = sim.grid(name)
    x, y, band, _, _ = TABLE1[name]
    assert (g["l"], g["M"], g["N"]) == x
    assert (g["L"], g["m"], g["n"]) == y
    assert sim.spec(name).band == band
    assert g["L"] == g["vL"] * g["l"] and g["M"] == g["vM"] * g["m"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [0.1, 0.2, 0.3, 0.55, 1.7])
def test_scaled_grids_keep_factors(name, scale):
    g, full = sim.grid(name, scale), sim.grid(name)
    assert (g["vL"], g["vM"], g["vN"]) == (full["vL"], full["vM"], full["vN"])
    assert g["L"] == g["vL"] * g["l"] and g["M"] == g["vM"] * g["m"] and g["M"] % 3 == 0
    assert g["M"] >= 9


def test_small_scenarios_have_expected_sizes(small):
    for name, ds in small.items():
        g = sim.grid(name, 0.2)
        assert _shapes(ds) == ((g["l"], g["M"], g["N"]), (g["L"], g["m"], g["n"]))
        assert ds.sizes["psf_y"] % 2 == 1 and ds.sizes["psf_y"] <= 2 * g["M"] - 1


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_size_scenario(name):
    t0 = time.perf_counter()
    ds = sim.scenario(name)
    elapsed = time.perf_counter() - t0
    x, y, band, cx, cy = TABLE1[name]
    assert _shapes(ds) == (x, y)
    assert ds.energy_lo.values[0] == pytest.approx(band[0])
    assert ds.energy_hi.values[-1] == pytest.approx(band[1])
    assert abs(ds.X.sum().item() / cx - 1) < 0.1
    assert abs(ds.Y.sum().item() / cy - 1) < 0.1
    assert elapsed < 30


# ----------------------------------------------------------------------------- problem
def test_scenarios_are_valid_problems(small):
    for name, ds in small.items():
        xf.validate(ds)
        assert ds.Z_true.dtype == np.float64
        assert np.issubdtype(ds.X.dtype, np.integer) and np.issubdtype(ds.Y.dtype, np.integer)
        assert (ds.Z_true.values >= 0).all()
        assert (ds.Z_true.values.sum(axis=0) > 0).all(), "every pixel has some flux"
        assert ds.energy.attrs["units"] == "keV"
        assert np.allclose(np.diff(ds.x.values), 10.0)
        a = ds.attrs
        assert a["scenario"] == name and a["seed"] == 0 and a["scale"] == 0.2
        json.dumps(a)  # JSON-safe
        for v in ds.variables.values():
            json.dumps(v.attrs)


def test_counts_match_scaled_targets(small):
    for name, ds in small.items():
        g, s = sim.grid(name, 0.2), sim.spec(name)
        ratio = g["L"] * g["M"] * g["N"] / (s.L * 45 * 45)
        tx, ty = TABLE1[name][3] * ratio, TABLE1[name][4] * ratio
        assert ds.attrs["target_counts_X"] == pytest.approx(tx)
        assert ds.X_true.sum().item() == pytest.approx(tx, rel=1e-9)
        assert ds.Y_true.sum().item() == pytest.approx(ty, rel=1e-3)  # exposure to 10 s
        assert abs(ds.X.sum().item() / tx - 1) < 0.1
        assert abs(ds.Y.sum().item() / ty - 1) < 0.1
        assert ds.X.attrs["exposure"] == sim.EXPOSURE_X


def test_instrument_parameters(small):
    g1 = small["gaussian_1kev"]
    assert g1.attrs["psf_Y_model"] == "gaussian" and g1.attrs["psf_Y_sigma_arcsec"] == 30.0
    assert np.ptp(g1.arf_X.values) == 0 and np.ptp(g1.arf_Y.values) == 0
    real = small["realistic_1kev_rebin"]
    assert real.attrs["psf_Y_model"] == "king"
    E = real.energy.values
    for arf in (real.arf_X.values, real.arf_Y.values):
        below, above = arf[E < 0.538][-1], arf[E >= 0.538][0]
        assert above < 0.95 * below, "O K edge dip"
        assert arf[-1] > arf[0]
    assert 100 < real.arf_Y.values.max() < 300 < real.arf_X.values.max() < 1000


def test_realistic_psf_and_response_widths():
    psf, info = sim._psf_Y(sim.spec("realistic_1kev_rebin"), 45)
    assert psf.shape == (sim.PSF_SIZE, sim.PSF_SIZE)
    assert info["psf_Y_std_arcsec"] == pytest.approx(33.0, abs=0.05)
    # sharper core and broad wings compared with a Gaussian of the same std
    gauss = xf.kernels.gaussian_psf(33.0, size=sim.PSF_SIZE, pixel_size=10.0)
    assert psf[14, 14] > 2 * gauss[14, 14]
    assert psf[14, 28] > 10 * gauss[14, 28] and psf[0, 0] > 1e3 * gauss[0, 0]
    e = np.linspace(0.2, 2.0, 3601)
    E = 0.5 * (e[1:] + e[:-1])
    R = sim.response_epic(E, e, 1)
    for E0, std in ((0.5, 0.051 * np.sqrt(0.5)), (1.0, 0.051), (1.4, 0.051 * np.sqrt(1.4))):
        p = R[:, np.argmin(abs(E - E0))]
        m = (p * E).sum() / p.sum()
        assert np.sqrt((p * (E - m) ** 2).sum() / p.sum()) == pytest.approx(std, rel=0.03)
    assert R.sum(axis=0).max() <= 1 + 1e-9


# ----------------------------------------------------------------------------- determinism
def test_deterministic_and_seeded():
    a = sim.scenario("gaussian_1kev_rebin", seed=3, scale=0.2)
    b = sim.scenario("gaussian_1kev_rebin", seed=3, scale=0.2)
    c = sim.scenario("gaussian_1kev_rebin", seed=4, scale=0.2)
    for v in ("X", "Y", "Z_true", "X_true", "Y_true"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert not np.array_equal(a.X.values, c.X.values)
    assert not np.array_equal(a.Y.values, c.Y.values)
    # the noise changes with the seed, the remnant does not (one "simulation", as in the paper)
    np.testing.assert_array_equal(a.Z_true.values, c.Z_true.values)
    d = sim.scenario("gaussian_1kev_rebin", seed=3, scale=0.2, remnant_seed=7)
    assert not np.allclose(a.Z_true.values, d.Z_true.values)


def test_scenarios_share_the_remnant(small):
    """The two 0.5-1.4 keV Gaussian models differ only in their grids."""
    img = {n: small[n].Z_true.values.sum(axis=0) for n in ("gaussian_1kev",
                                                           "gaussian_1kev_rebin")}
    a, b = (v / v.sum() for v in img.values())
    assert np.abs(a - b).max() < 0.02 * a.max()


def test_unknown_name_and_bad_scale():
    with pytest.raises(KeyError, match="gaussian_1kev_rebin.*realistic_1kev_rebin"):
        sim.scenario("gaussian")
    with pytest.raises(ValueError, match="valid names"):
        sim.scenario("nope")
    with pytest.raises(ValueError, match="scale"):
        sim.scenario("gaussian_1kev", scale=0)
    assert set(sim.SCENARIOS) == set(TABLE1)


def test_small_scale_is_fast():
    sim.scenario("gaussian_6kev", scale=0.2)  # warm up imports
    t0 = time.perf_counter()
    sim.scenario("gaussian_1kev_rebin", scale=0.2)
    assert time.perf_counter() - t0 < 1.0


# ----------------------------------------------------------------------------- consistency
def _loops(Z, R, psf, ax, ay, tx, ty, vM, vN):
    """Expected counts by explicit loops and ndimage.convolve (zero boundary)."""
    L, M, N = Z.shape
    X = np.zeros((R.shape[0], M, N))
    for c in range(R.shape[0]):
        for e in range(L):
            X[c] += R[c, e] * tx * ax[e] * Z[e]
    Y = np.zeros((L, M // vM, N // vN))
    for e in range(L):
        conv = ndimage.convolve(ty * ay[e] * Z[e], psf, mode="constant", cval=0.0)
        for i in range(M // vM):
            for j in range(N // vN):
                Y[e, i, j] = conv[i * vM:(i + 1) * vM, j * vN:(j + 1) * vN].sum()
    return X, Y


def test_expected_counts_fft_matches_direct_convolution():
    rng = np.random.default_rng(1)
    L, M, N = 4, 9, 12
    Z = rng.random((L, M, N))
    psf = rng.random((5, 7))  # asymmetric: convolution differs from correlation
    psf /= psf.sum()
    R = rng.random((2, L)) / L
    ax, ay = 1 + rng.random(L), 1 + rng.random(L)
    X, Y = sim.expected_counts(Z, R, psf, ax, ay, 3.0, 5.0, 3, 3)
    X2, Y2 = _loops(Z, R, psf, ax, ay, 3.0, 5.0, 3, 3)
    np.testing.assert_allclose(X, X2, rtol=1e-12)
    np.testing.assert_allclose(Y, Y2, rtol=1e-10)


@pytest.mark.parametrize("name", ["gaussian_1kev_rebin", "realistic_1kev_rebin"])
def test_truth_consistent_with_model(name):
    ds = sim.scenario(name, scale=0.1)
    g = sim.grid(name, 0.1)
    X, Y = _loops(ds.Z_true.values, ds.response_X.values, ds.psf_Y.values, ds.arf_X.values,
                  ds.arf_Y.values, ds.X.attrs["exposure"], ds.Y.attrs["exposure"],
                  g["vM"], g["vN"])
    np.testing.assert_allclose(ds.X_true.values, X, rtol=1e-9)
    np.testing.assert_allclose(ds.Y_true.values, Y, rtol=1e-9, atol=1e-12 * Y.max())
    mx, my = xf.forward(ds, ds.Z_true)  # and with the library's operators
    np.testing.assert_allclose(mx.values, ds.X_true.values, rtol=1e-9)
    np.testing.assert_allclose(my.values, ds.Y_true.values, rtol=1e-9, atol=1e-12 * Y.max())


def test_sharp_truth(small):
    ds = sim.scenario("gaussian_1kev_rebin", scale=0.2, sharp=True)
    blurred = small["gaussian_1kev_rebin"]
    assert ds.attrs["psf_X_sigma_arcsec_in_truth"] == 0.0
    img_s, img_b = ds.Z_true.values.sum(0), blurred.Z_true.values.sum(0)
    # the blur of X's PSF lowers the contrast of the image
    assert img_s.max() / img_s.mean() > img_b.max() / img_b.mean()


# ----------------------------------------------------------------------------- physics
@pytest.mark.parametrize("line", [0.6536, 1.0220])  # O VIII and Ne X Ly-alpha
def test_lines_split_at_the_centre(line):
    """Front and back of the shell: two peaks ~2 v/c E apart, a dip at the rest energy."""
    ds = sim.scenario("gaussian_1kev", scale=0.3)
    Z, E = ds.Z_true.values, ds.energy.values
    c = Z.shape[1] // 2
    s = Z[:, c - 1:c + 2, c - 1:c + 2].sum(axis=(1, 2))
    b = sim.V_MAX / C_KMS * line
    red = (E > line - 1.1 * b) & (E < line - 0.3 * b)
    blue = (E > line + 0.3 * b) & (E < line + 1.1 * b)
    e_red, e_blue = E[red][s[red].argmax()], E[blue][s[blue].argmax()]
    sep = e_blue - e_red
    assert 2 * 4000 / C_KMS * line < sep < 2 * 7500 / C_KMS * line
    rest = s[np.abs(E - line) < 0.1 * b].max()
    assert rest < 0.7 * min(s[red].max(), s[blue].max())


def test_velocities_and_temperatures_in_range():
    r = sim.make_remnant(27)
    ej = r.component == 0
    assert np.abs(r.v_los).max() <= sim.V_MAX
    assert r.v_los[ej].min() < -5000 and r.v_los[ej].max() > 5000
    assert 0.2 <= r.kT[ej].min() < 0.3 and 2.5 < r.kT[ej].max() <= 3.0
    assert 8 <= r.log_tau[ej].min() < 8.5 and 11 < r.log_tau[ej].max() <= 11.5


def test_bright_knot_in_the_south(small):
    ds = small["gaussian_1kev_rebin"]
    img = ds.Z_true.values.sum(axis=0)
    r = sim.make_remnant(img.shape[0])
    ky, kx = np.divmod(r.pixel[r.component == 1], img.shape[1])
    assert ky.max() < (img.shape[0] - 1) / 2  # south = negative y offsets
    assert img[ky, kx].max() > 0.5 * img.max()


def test_spectral_variability_larger_around_iron(small):
    """Paper Fig. 5: the 6.2-6.9 keV model varies most between neighbouring pixels."""
    theta = {}
    for scale in (0.2, 0.3):
        for name in ("gaussian_1kev", "gaussian_6kev"):
            ds = small[name] if scale == 0.2 else sim.scenario(name, scale=scale)
            theta[name, scale] = float(np.nanmean(
                xf.metrics.spectral_variability(ds.Z_true.values)))
        assert theta["gaussian_6kev", scale] > 1.05 * theta["gaussian_1kev", scale], theta


@pytest.mark.slow
def test_spectral_variability_full_size():
    theta = {n: float(np.nanmean(xf.metrics.spectral_variability(
        sim.scenario(n).Z_true.values))) for n in ("gaussian_1kev", "gaussian_6kev")}
    assert theta["gaussian_6kev"] > 1.05 * theta["gaussian_1kev"], theta


def test_fe_k_centroid_varies(small):
    ds = small["gaussian_6kev"]
    Z, E = ds.Z_true.values, ds.energy.values
    img = Z.sum(axis=0)
    bright = img > 0.2 * img.max()
    line = Z - Z.min(axis=0, keepdims=True)  # remove the continuum floor roughly
    centroid = (line * E[:, None, None]).sum(0) / line.sum(0)
    assert np.ptp(centroid[bright]) > 0.05  # keV
