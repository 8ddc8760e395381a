"""Band edges: X channels left out of the likelihood (``observed_X``) and the mask chosen from
an RMF (``xf.io.out_of_band_fraction``, ``xf.io.observed_channels``)."""

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy.special import ndtr
from scipy.stats import norm

import xfusion as xf
from xfusion.fusion import initial_guess
from xfusion.goodness import cstat
from xfusion.io import FileFormatError
from xfusion.likelihood import PoissonLikelihood
from xfusion.operators import ForwardModel
from xfusion.parametrization import FullCube
from xfusion.testing import assert_adjoint

from .conftest import consistent_problem, tiny_problem

REGULARIZERS = ("none", "lr", "lrs", "w2d1d", "lrw2d")
FAST = dict(rank=3, max_iter=12, progress=False, dtype="float64", J2=1, J1=1)
pytestmark = pytest.mark.filterwarnings("ignore::xfusion.FitWarning")


def masked(ds, used=(False, True, True, True, True, False)):
    return ds.assign_coords(observed_X=("energy_coarse", np.array(used, bool)))


def garbage(ds, channels=(0, 5), extra=40):
    """The same problem with extra counts in the given X channels."""
    X = ds.X.values.copy()
    X[list(channels)] += extra
    return ds.assign(X=ds.X.copy(data=X))


# ---------------------------------------------------------------------- the operator
@pytest.mark.parametrize("kw", [{}, {"vignetting": True}])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_masked_channels_have_no_expected_counts_and_exact_adjoint(kw, dtype):
    ds = masked(tiny_problem(**kw))
    model = ForwardModel.from_dataset(ds)
    ref = ForwardModel.from_dataset(tiny_problem(**kw))
    Z = np.random.default_rng(1).random(model.shape).astype(dtype)
    mx, mxr = model.mu_X(Z), ref.mu_X(Z)
    assert float(np.abs(mx[[0, 5]]).max()) == 0.0
    np.testing.assert_array_equal(mx[1:5], mxr[1:5])
    assert_adjoint(model.op_X, dtype=dtype)
    r = np.random.default_rng(2).standard_normal(model.shape_X).astype(dtype)
    r2 = r.copy()
    r2[[0, 5]] = 1e6                              # whatever comes back from masked channels
    np.testing.assert_array_equal(model.adjoint_X(r), model.adjoint_X(r2))
    # the Gauss-Newton curvature and the EM column sums ignore the masked channels too
    h = np.abs(r) + 1
    h2 = h.copy()
    h2[[0, 5]] = 1e6
    hY = np.ones(model.shape_Y, dtype)
    np.testing.assert_array_equal(model.curvature(h, hY), model.curvature(h2, hY))
    Zr = ref.adjoint_X(np.where(np.array(ds.observed_X)[:, None, None], 1.0, 0.0)
                       * np.ones(model.shape_X, dtype))
    np.testing.assert_allclose(model.adjoint_X(np.ones(model.shape_X, dtype)), Zr, rtol=1e-6)


def test_masked_sparse_forward_and_summed_adjoint():
    ds = masked(tiny_problem())
    model = ForwardModel.from_dataset(ds, spatial="dense")
    rng = np.random.default_rng(3)
    z = np.zeros(model.shape)
    idx = np.sort(rng.choice(z.size, 17, replace=False))
    z.flat[idx] = rng.random(17)
    got = model.forward_sparse(idx, z.flat[idx])
    for a, b in zip(got, model.forward(z), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    rX, rY = rng.standard_normal(model.shape_X), rng.standard_normal(model.shape_Y)
    np.testing.assert_allclose(model.adjoint(rX, rY), model.adjoint_X(rX) + model.adjoint_Y(rY),
                               rtol=1e-12, atol=1e-12)


def test_forward_model_refuses_a_mask_of_the_wrong_length():
    ds = tiny_problem()
    with pytest.raises(ValueError, match=r"mask_X has shape \(4,\), expected \(6,\)"):
        ForwardModel(ds.response_X.values, ds.psf_Y.values, ds.arf_X.values, ds.arf_Y.values,
                     2e3, 5e3, (24, 9, 12), (3, 3), mask_X=np.ones(4, bool))


def test_likelihood_ignores_counts_of_masked_channels():
    ds = masked(consistent_problem(noise=True))
    param = FullCube(xf.forward_model(ds))
    Z = ds.Z_true.values * 1.1
    from xfusion.fusion import _used_counts_X

    vals = []
    for d in (ds, garbage(ds)):
        lik = PoissonLikelihood(param, _used_counts_X(d).values, d.Y.values, dtype=np.float64)
        mu = lik.forward(Z)
        vals.append((lik.value(mu), lik.value_and_grad(mu)[1], lik.colsum(), lik.curvature(mu)))
    for a, b in zip(*vals, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- the fusion
@pytest.mark.parametrize("reg", REGULARIZERS)
def test_counts_in_masked_channels_do_not_change_the_result(reg):
    ds = masked(consistent_problem(noise=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xf.FitWarning)
        a = xf.fuse(ds, reg, **FAST)
        b = xf.fuse(garbage(ds), reg, **FAST)
        c = xf.fuse(consistent_problem(noise=True), reg, **FAST)     # no mask: it matters
    np.testing.assert_array_equal(a.values, b.values)
    assert a.attrs["objective"] == b.attrs["objective"]
    assert a.attrs["cstat_X"] == b.attrs["cstat_X"]
    assert a.attrs["channels_X_used"] == 4 and "channels_X_used" not in c.attrs
    assert not np.array_equal(a.values, c.values)
    # the goodness of fit counts the used channels only
    mx = xf.forward(ds, a)[0]
    assert float(abs(mx.values[[0, 5]]).max()) == 0.0
    used = ds.observed_X.values
    assert a.attrs["cstat_X"] == pytest.approx(cstat(ds.X.values[used], mx.values[used]),
                                               rel=1e-9)


@pytest.mark.parametrize("reg", ["w2d1d", "lrs"])
def test_masked_channels_numpy_and_chunked_agree(reg):
    ds = masked(consistent_problem(noise=True, M=12, N=12))
    kw = dict(FAST, max_iter=8)
    a = xf.fuse(ds, reg, **kw)
    b = xf.fuse(garbage(ds), reg, chunks={"energy": 12, "y": 6, "x": 6}, **kw)
    np.testing.assert_allclose(b.values, a.values, rtol=1e-7, atol=1e-9 * float(a.max()))
    assert b.attrs["channels_X_used"] == 4


def test_initial_guess_and_x_only_ignore_masked_channels():
    ds = masked(consistent_problem(noise=True))
    np.testing.assert_array_equal(initial_guess(ds), initial_guess(garbage(ds)))
    z = xf.baselines.x_only(ds).values
    assert np.array_equal(z, xf.baselines.x_only(garbage(ds)).values)
    vL = 4
    ref = xf.baselines.x_only(consistent_problem(noise=True)).values
    np.testing.assert_array_equal(z[vL:5 * vL], ref[vL:5 * vL])        # used: unchanged
    np.testing.assert_array_equal(z[:vL], np.repeat(ref[vL:vL + 1], vL, 0))   # nearest used
    np.testing.assert_array_equal(z[5 * vL:], np.repeat(ref[5 * vL - 1:5 * vL], vL, 0))


def test_mask_survives_the_store_and_changes_the_fingerprint(tmp_path):
    from xfusion.checkpoint import problem_fingerprint

    ds = masked(consistent_problem(noise=True))
    back = xf.open_problem(xf.save_problem(ds, tmp_path / "p.zarr"))
    assert back.observed_X.dtype == bool
    np.testing.assert_array_equal(back.observed_X, ds.observed_X)
    a = xf.fuse(ds, "lr", **FAST)
    b = xf.fuse(back, "lr", **FAST)
    np.testing.assert_array_equal(a.values, b.values)
    plain = consistent_problem(noise=True)
    fp = problem_fingerprint(plain)
    assert problem_fingerprint(masked(plain))["responses"] != fp["responses"]
    assert problem_fingerprint(plain.copy()) == fp             # unchanged without a mask


def test_cli_fuse_of_a_masked_store(tmp_path, capsys):
    from xfusion.cli import main

    prob, fused = tmp_path / "p.zarr", tmp_path / "f.zarr"
    xf.save_problem(masked(consistent_problem(noise=True)), prob)
    assert main(["fuse", str(prob), "--out", str(fused), "--regularizer", "none",
                 "--max-iter", "5", "--quiet"]) == 0
    assert "X only" in capsys.readouterr().out
    assert xr.open_zarr(fused)["Z"].attrs["channels_X_used"] == 4


# ---------------------------------------------------------------------- refusals
def test_validate_refuses_bad_masks():
    ds = tiny_problem()
    with pytest.raises(xf.ProblemError, match="observed_X: dtype int64, expected bool"):
        xf.validate(ds.assign_coords(observed_X=("energy_coarse", np.ones(6, np.int64))))
    with pytest.raises(xf.ProblemError, match="observed_X: dims .*energy.*expected"):
        xf.validate(ds.assign_coords(observed_X=("energy", np.ones(24, bool))))
    with pytest.raises(xf.ProblemError, match="all 6 of X's channels are left out"):
        xf.validate(ds.assign_coords(observed_X=("energy_coarse", np.zeros(6, bool))))
    args = [ds.X.values, ds.Y.values, ds.response_X.values, ds.psf_Y.values, ds.arf_X.values,
            ds.arf_Y.values]
    kw = dict(exposure_X=2e3, exposure_Y=5e3, energy=ds.energy.values)
    with pytest.raises(xf.ProblemError, match=r"observed_X: shape \(5,\), expected \(6,\)"):
        xf.make_problem(*args, observed_X=np.ones(5, bool), **kw)
    with pytest.raises(xf.ProblemError, match="observed_X: dtype float64"):
        xf.make_problem(*args, observed_X=np.ones(6), **kw)
    ok = xf.make_problem(*args, observed_X=np.r_[False, np.ones(5, bool)], **kw)
    assert ok.observed_X.dims == ("energy_coarse",) and int(ok.observed_X.sum()) == 5


# ---------------------------------------------------------------------- the mask from an RMF
SIGMA = 0.05
BAND = (2.0, 3.0)


def gaussian_rmf(lo=1.0, hi=4.0, de=0.002, dch=0.01):
    """A Gaussian RMF of width SIGMA (keV) sampled at its rows' centres, and a flat ARF."""
    e = np.arange(lo, hi + de / 2, de)
    ch = np.arange(int(round(6.0 / dch)))
    emin, emax = ch * dch, (ch + 1) * dch
    Ec = 0.5 * (e[1:] + e[:-1])
    M = ndtr((emax[None] - Ec[:, None]) / SIGMA) - ndtr((emin[None] - Ec[:, None]) / SIGMA)
    rmf = xr.DataArray(M, dims=("energy_true", "channel"), coords={
        "energy_lo": ("energy_true", e[:-1]), "energy_hi": ("energy_true", e[1:]),
        "e_min": ("channel", emin), "e_max": ("channel", emax), "channel": ch},
        attrs={"filename": "gauss.rmf"})
    arf = xr.DataArray(np.full(Ec.size, 300.0), dims=("energy_true",), coords={
        "energy_lo": ("energy_true", e[:-1]), "energy_hi": ("energy_true", e[1:])},
        attrs={"filename": "flat.arf"})
    return rmf, arf


def analytic_fraction(a, b):
    """Out-of-band share of channel [a, b] for a flat spectrum through a Gaussian of SIGMA:
    1 − σ [Ψ(u_b) − Ψ(u_a)] / (b − a) from each edge, Ψ(u) = u Φ(u) + φ(u)."""
    def psi(u):
        return u * norm.cdf(u) + norm.pdf(u)

    low = (b - a) - SIGMA * (psi((b - BAND[0]) / SIGMA) - psi((a - BAND[0]) / SIGMA))
    high = (b - a) - SIGMA * (psi((BAND[1] - a) / SIGMA) - psi((BAND[1] - b) / SIGMA))
    return (low + high) / (b - a)


def test_out_of_band_fraction_of_a_gaussian_rmf_is_the_analytic_one():
    rmf, arf = gaussian_rmf()
    C = np.linspace(*BAND, 26)                   # 40 eV channels
    f = xf.io.out_of_band_fraction(rmf, arf, BAND, C)
    ref = analytic_fraction(C[:-1], C[1:])
    np.testing.assert_allclose(f.values, ref, atol=2e-4)
    assert f.values[0] > 0.3 and f.values[12] < 1e-6
    obs = xf.io.observed_channels(rmf, arf, BAND, C, tolerance=0.05)
    np.testing.assert_array_equal(obs.values, ref <= 0.05)
    assert obs.name == "observed_X" and obs.attrs["tolerance"] == 0.05
    # the reach: a 50 eV Gaussian puts 5 % from outside up to ~1.2 σ in: two channels per side
    assert (~obs.values).sum() == 4 and not obs.values[[0, 1, -2, -1]].any()
    np.testing.assert_allclose(obs.out_of_band, f)


def test_out_of_band_fraction_follows_the_spectrum_and_the_area():
    rmf, arf = gaussian_rmf()
    C = np.linspace(*BAND, 26)
    inside = xf.io.out_of_band_fraction(
        rmf, arf, BAND, C, spectrum=lambda E: ((E > BAND[0]) & (E < BAND[1])).astype(float))
    assert inside.values.max() < 1e-12 and inside.attrs["spectrum"] == "given"
    outside = xf.io.out_of_band_fraction(
        rmf, arf, BAND, C, spectrum=lambda E: ((E < BAND[0]) | (E > BAND[1])).astype(float))
    np.testing.assert_allclose(outside.values[[0, -1]], 1.0)
    # an area that doubles below the band: the low edge's share rises as 2f / (2f + 1 - f)
    flat = xf.io.out_of_band_fraction(rmf, arf, BAND, C)
    lo = arf.copy(data=np.where(arf.energy_hi.values <= BAND[0] + 1e-9, 600.0, 300.0))
    f = xf.io.out_of_band_fraction(rmf, lo, BAND, C)
    f0 = flat.values[0]
    assert f.values[0] == pytest.approx(2 * f0 / (1 + f0), rel=1e-6)


def test_out_of_band_fraction_refusals_and_warnings(tmp_path):
    rmf, arf = gaussian_rmf()
    C = np.linspace(*BAND, 26)
    with pytest.raises(FileFormatError, match="flat.arf: ARF energies .* do not cover"):
        xf.io.out_of_band_fraction(rmf, arf.isel(energy_true=slice(300, None)), BAND, C)
    cut = rmf.isel(energy_true=(rmf.energy_lo.values >= BAND[0] - 1e-9)
                   & (rmf.energy_hi.values <= BAND[1] + 1e-9))
    with pytest.warns(UserWarning, match="gauss.rmf: the RMF's true energies start at 2 keV.*"
                                         "lower bounds"):
        xf.io.out_of_band_fraction(cut, arf, BAND, C)
    for bad in (0, -0.1, 1.5, True, "5%"):
        with pytest.raises(ValueError, match="tolerance must be"):
            xf.io.observed_channels(rmf, arf, BAND, C, tolerance=bad)
    with pytest.raises(ValueError, match="energy_band"):
        xf.io.out_of_band_fraction(rmf, arf, (3.0, 2.0), C)
    with pytest.raises(ValueError, match="channel_edges"):
        xf.io.out_of_band_fraction(rmf, arf, BAND, C[::-1])
    with pytest.raises(ValueError, match=r"spectrum: values must be finite and ≥ 0"):
        xf.io.out_of_band_fraction(rmf, arf, BAND, C, spectrum=lambda E: -E)
    with pytest.raises(ValueError, match="arf_X= is needed"):
        xf.io.out_of_band_fraction(rmf, None, BAND, C)
    # files: an OGIP RMF and ARF written and read back give the same fractions
    p = xf.io.write_rmf(tmp_path / "g.rmf", rmf.energy_lo.values, rmf.energy_hi.values,
                        rmf.values, rmf.e_min.values, rmf.e_max.values, first_channel=0)
    a = xf.io.write_arf(tmp_path / "a.arf", arf.energy_lo.values, arf.energy_hi.values,
                        arf.values)
    np.testing.assert_allclose(xf.io.out_of_band_fraction(p, a, BAND, C).values,
                               xf.io.out_of_band_fraction(rmf, arf, BAND, C).values, atol=1e-6)


def test_from_files_default_tolerance_is_the_documented_one():
    import inspect

    p = inspect.signature(xf.io.from_files).parameters
    assert p["edge_tolerance"].default == xf.io.DEFAULT_EDGE_TOLERANCE == 0.05
