"""Known additive backgrounds: schema, Poisson loss on K x + B, fusion, and the PHA readers."""

import warnings

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from dask import is_dask_collection

import xfusion as xf
from xfusion import ProblemError
from xfusion.functionals import PoissonLoss
from xfusion.io import FileFormatError
from xfusion.likelihood import PoissonLikelihood
from xfusion.parametrization import FullCube, LowRank, nmf_subspace, subspace_fit

from . import test_io_assemble as t
from .conftest import consistent_problem, tiny_problem
from .test_io_assemble import files  # noqa: F401,F811  (the event-file fixture)

QUIET = dict(progress=False)
# tiny or truncated runs misfit on purpose here; what they say is tested in test_goodness
pytestmark = pytest.mark.filterwarnings("ignore::xfusion.FitWarning")


@pytest.fixture(scope="module")
def pair():
    """A consistent noisy problem and the same with a flat background (30 % of X's counts,
    50 % of Y's) drawn into its counts."""
    ds0 = consistent_problem(counts=50.0, noise=True)
    return ds0, xf.simulate.add_background(ds0, fraction_X=0.3, fraction_Y=0.5, seed=4)


# ------------------------------------------------------------------------------ the schema
def test_make_problem_takes_cube_or_spectrum_and_survives_zarr(tmp_path):
    base = tiny_problem()
    l, M, N = base.X.shape
    L, m, n = base.Y.shape
    bx = np.linspace(1, 2, l)
    bY = np.random.default_rng(0).uniform(0, 3, (L, m, n))
    ds = xf.make_problem(base.X, base.Y, base.response_X, base.psf_Y, base.arf_X, base.arf_Y,
                         energy=base.energy.values, background_X=bx, background_Y=bY)
    assert ds.background_X.dims == ("energy_coarse", "y", "x")
    np.testing.assert_array_equal(ds.background_X.values, np.broadcast_to(bx[:, None, None],
                                                                          (l, M, N)))
    np.testing.assert_array_equal(ds.background_Y.values, bY)
    back = xf.open_problem(xf.save_problem(ds, tmp_path / "p.zarr"))
    np.testing.assert_array_equal(back.background_X.values, ds.background_X.values)
    np.testing.assert_array_equal(back.background_Y.values, bY)
    # with_background on an existing problem, a spectrum per Y pixel
    ds2 = xf.with_background(base, background_Y=np.full(L, 0.5))
    assert "background_X" not in ds2 and float(ds2.background_Y.sum()) == 0.5 * L * m * n


def test_background_refusals():
    base = tiny_problem()
    l, M, N = base.X.shape
    with pytest.raises(ProblemError, match=r"background_X: shape \(5,\), expected \(6, 9, 12\)"):
        xf.with_background(base, background_X=np.ones(5))
    with pytest.raises(ProblemError, match="background_Y: shape"):
        xf.with_background(base, background_Y=np.ones((2, 3, 4)))
    bad = np.ones((l, M, N))
    bad[0, 0, 0] = -1
    with pytest.raises(ProblemError, match="background_X: 1 negative values"):
        xf.with_background(base, background_X=bad)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ProblemError, match="background_X: 1 non-finite"):
        xf.with_background(base, background_X=bad)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ProblemError, match="background_X: 1 non-finite"):
        xf.validate(base.assign(background_X=(("energy_coarse", "y", "x"), bad)))
    with pytest.raises(ProblemError, match="background_Y: dims"):
        xf.validate(base.assign(background_Y=(("energy", "y", "x"),
                                              np.ones((base.sizes["energy"], M, N)))))
    with pytest.raises(ProblemError, match="background_X: values must be real"):
        xf.with_background(base, background_X=np.ones((l, M, N), bool))


# ---------------------------------------------------------------- the loss and its gradient
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_with_background_is_the_loss_of_the_total(dtype):
    rng = np.random.default_rng(1)
    D = rng.poisson(3.0, 5000).astype(float)
    D[:100] = 0
    B = rng.uniform(0.5, 2.0, D.size)
    mu = rng.uniform(0.1, 4.0, D.size).astype(dtype)
    lb = PoissonLoss(D, dtype=dtype, background=B)
    ref = PoissonLoss(D, dtype=dtype)
    tot = (mu + B.astype(dtype)).astype(dtype)
    assert lb.value(mu) == ref.value(tot)
    v, g = lb.value_and_grad(mu)
    v2, g2 = ref.value_and_grad(tot)
    assert v == v2 and np.array_equal(g, g2) and np.array_equal(lb.grad(mu), ref.grad(tot))
    # the deviance written out, in float64
    m = mu.astype(np.float64) + B.astype(dtype).astype(np.float64)
    dev = np.sum(m - D + np.where(D > 0, D * np.log(np.where(D > 0, D, 1) / m), 0))
    assert v == pytest.approx(dev, rel=1e-6 if dtype == np.float32 else 1e-12)
    # background 0 is no background, bit for bit (fast path and the quadratic extension)
    z = PoissonLoss(D, dtype=dtype, background=np.zeros(D.size))
    for x in (mu, mu - dtype(0.5)):
        assert z.value(x) == ref.value(x)
        assert np.array_equal(z.value_and_grad(x)[1], ref.value_and_grad(x)[1])


def test_likelihood_gradient_with_background_matches_finite_differences(pair):
    _, ds = pair
    model = xf.forward_model(ds)
    bkg = dict(background_X=ds.background_X.values, background_Y=ds.background_Y.values)
    rng = np.random.default_rng(2)
    V = nmf_subspace(ds.Y.values, ds.Y.attrs["exposure"] * ds.arf_Y.values, 3,
                     background=ds.background_Y.values)
    for param, x in ((FullCube(model), ds.Z_true.values * rng.uniform(0.5, 1.5, model.shape)),
                     (LowRank(model, V, np.float64), rng.uniform(0.5, 2, (3,) + model.shape[1:])
                      * float(ds.Z_true.mean()))):
        lik = PoissonLikelihood(param, ds.X.values, ds.Y.values, dtype=np.float64, **bkg)
        f0, g = lik.value_and_grad(lik.forward(x))
        d = rng.standard_normal(x.shape) * float(np.abs(x).mean())
        h = 1e-4     # central differences: error ~ h² (1e-6 here), well above rounding
        fp = lik.value(lik.forward(x + h * d))
        fm = lik.value(lik.forward(x - h * d))
        fd = (fp - fm) / (2 * h)
        assert np.sum(g * d) == pytest.approx(fd, rel=1e-5)
        # and the gradient is Kᵀ(1 − D/(K x + B)) written out
        mx, my = lik.forward(x)
        ref = param.adjoint(1 - ds.X.values / (mx + bkg["background_X"]),
                            1 - ds.Y.values / (my + bkg["background_Y"]))
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_chunked_loss_with_background_equals_numpy(pair):
    import dask.array as da

    _, ds = pair
    D, B = ds.Y.values, ds.background_Y.values
    mu = np.random.default_rng(3).uniform(0, 3, D.shape)
    ref = PoissonLoss(D, background=B)
    chunks = (7, 2, 2)
    lz = PoissonLoss(da.from_array(D, chunks), background=da.from_array(B, chunks))
    v, g = lz.value_and_grad(da.from_array(mu, chunks))
    v0, g0 = ref.value_and_grad(mu)
    assert v == pytest.approx(v0, rel=1e-12)
    np.testing.assert_allclose(g.compute(), g0, rtol=1e-12)


# ------------------------------------------------------------------------------ the fusion
REGS = ("w2d1d", "lrs", "lrw2d", "lr", "none")


@pytest.mark.parametrize("reg", REGS)
def test_zero_background_is_no_background_exactly(pair, reg):
    ds0, _ = pair
    kw = dict(QUIET, max_iter=8, rank=3)
    zero = xf.with_background(ds0, background_X=np.zeros(ds0.sizes["energy_coarse"]),
                              background_Y=np.zeros(ds0.sizes["energy"]))
    a, b = xf.fuse(ds0, reg, **kw), xf.fuse(zero, reg, **kw)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.attrs["objective_history"] == b.attrs["objective_history"]


# every iteration of a chunked run on these tiny problems is dask overhead: the full cube and
# the low-rank parametrization in the quick run, the other regularizers in the slow one
CHUNKED = [pytest.param(r, marks=() if r in ("w2d1d", "lrs") else pytest.mark.slow)
           for r in REGS]


@pytest.mark.parametrize("reg", CHUNKED)
def test_chunked_fusion_with_background_equals_in_memory(pair, reg, tmp_path):
    _, ds = pair
    kw = dict(QUIET, max_iter=4, rank=3, dtype="float64", tol=1e-12)
    ref = xf.fuse(ds, reg, **kw)
    chunks = {"energy": 7, "y": 3, "x": 6}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if reg == "w2d1d":      # a dask-backed problem store (background chunked on disk)
            lazy = xf.open_problem(xf.save_problem(ds, tmp_path / "p.zarr"), chunks=chunks)
            assert is_dask_collection(lazy.background_Y.data)
            Z = xf.fuse(lazy, reg, **kw)
        else:                   # a numpy problem run chunked
            Z = xf.fuse(ds, reg, chunks=chunks, **kw)
    assert np.abs(Z.values - ref.values).max() <= 1e-6 * np.abs(ref.values).max()
    np.testing.assert_allclose(Z.attrs["objective_history"], ref.attrs["objective_history"],
                               rtol=1e-8)
    assert Z.attrs["cstat_Y"] == pytest.approx(ref.attrs["cstat_Y"], rel=1e-8)


@pytest.fixture(scope="module")
def strong():
    """gaussian_1kev_rebin with a background of 30 % of X's and 50 % of Y's counts."""
    ds0 = xf.simulate.scenario("gaussian_1kev_rebin", scale=0.25)
    return ds0, xf.simulate.add_background(ds0, fraction_X=0.3, fraction_Y=0.5, seed=1)


@pytest.mark.parametrize("reg", ["lrs", "w2d1d"])
def test_modelled_background_recovers_the_truth_ignored_one_biases_it(strong, reg):
    ds0, ds = strong
    kw = dict(QUIET, max_iter=150)
    truth = float(ds.Z_true.sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xf.FitWarning)
        clean = xf.fuse(ds0, reg, **kw)
        ignored = xf.fuse(ds.drop_vars(["background_X", "background_Y"]), reg, **kw)
        modelled = xf.fuse(ds, reg, **kw)
    nmse = {k: xf.metrics.report(Z, ds.Z_true)["NMSE"]
            for k, Z in (("clean", clean), ("ignored", ignored), ("modelled", modelled))}
    assert float(ignored.sum()) / truth > 1.5          # the background is fitted as sky
    assert abs(float(modelled.sum()) / truth - 1) < 0.05
    # NMSE in dB (higher is better): close to the background-free problem, far above ignoring
    assert nmse["modelled"] > nmse["clean"] - 1.5 and nmse["modelled"] > nmse["ignored"] + 2
    # the model with the background explains the counts as well as the clean fit does its
    # own; without it, X's are far off
    for inst in ("X", "Y"):
        r = modelled.attrs[f"cstat_{inst}"] / modelled.attrs[f"cstat_{inst}_expected"]
        r0 = clean.attrs[f"cstat_{inst}"] / clean.attrs[f"cstat_{inst}_expected"]
        assert abs(r - r0) < 0.15
    assert ignored.attrs["cstat_X"] / ignored.attrs["cstat_X_expected"] > 1.2 * (
        modelled.attrs["cstat_X"] / modelled.attrs["cstat_X_expected"])


def test_rank_auto_and_subspace_fit_account_for_the_background(strong):
    _, ds = strong
    w = ds.Y.attrs["exposure"] * ds.arf_Y.values
    B = ds.background_Y.values
    V = nmf_subspace(ds.Y.values, w, 5, background=B)
    with_b = subspace_fit(ds.Y.values, w, V, background=B)
    without = subspace_fit(ds.Y.values, w, nmf_subspace(ds.Y.values, w, 5))
    assert with_b["ratio"] < 1.2 and with_b["ratio"] <= without["ratio"] + 0.05
    # the subspace learnt from Y − B equals the one from the expected source counts, nearly
    Vt = nmf_subspace(ds.Y_true.values, w, 5)
    Vb = nmf_subspace(ds.Y_true.values + B, w, 5, background=B)
    np.testing.assert_allclose(Vb, Vt, rtol=1e-3, atol=1e-9)   # (HALS, 500 sweeps)
    Z = xf.fuse(ds, "lrs", rank="auto", max_iter=5, **QUIET)
    assert "rank_trials" in Z.attrs


def test_forward_goodness_and_baselines_include_the_background(pair):
    _, ds = pair
    mX, mY = xf.forward(ds, ds.Z_true)
    sX, sY = xf.forward(ds, ds.Z_true, background=False)
    np.testing.assert_allclose(mX.values, sX.values + ds.background_X.values)
    np.testing.assert_allclose(mY.values, sY.values + ds.background_Y.values)
    np.testing.assert_allclose(sX.values, ds.X_true.values, rtol=1e-10)
    assert mX.attrs["background"] == 1 and sX.attrs["background"] == 0
    g = xf.goodness.goodness_of_fit(ds.Y.values, sY.values, background=ds.background_Y.values)
    assert g == xf.goodness.goodness_of_fit(ds.Y.values, mY.values)
    # baselines subtract the background: on noiseless counts (source + B) they equal the
    # source-only baselines
    noiseless = ds.assign(X=ds.X.copy(data=ds.X_true.values + ds.background_X.values),
                          Y=ds.Y.copy(data=ds.Y_true.values + ds.background_Y.values))
    source = ds.drop_vars(["background_X", "background_Y"]).assign(
        X=ds.X.copy(data=ds.X_true.values), Y=ds.Y.copy(data=ds.Y_true.values))
    for f in (xf.baselines.x_only, xf.baselines.y_only):
        np.testing.assert_allclose(f(noiseless).values, f(source).values, rtol=1e-10,
                                   atol=1e-12 * float(np.abs(f(source).values).max()))


def test_unobserved_pixels_carry_no_background(pair):
    _, ds = pair
    obs = np.ones(ds.Y.shape[1:], bool)
    obs[0, 0] = False
    dso = ds.assign_coords(observed_Y=(("y_coarse", "x_coarse"), obs))
    mY = xf.forward(dso, dso.Z_true)[1]
    assert float(np.abs(mY.values[:, 0, 0]).max()) == 0
    Z = xf.fuse(dso, "none", max_iter=3, **QUIET)
    assert np.isfinite(Z.attrs["cstat_Y"])


def test_bootstrap_draws_source_plus_background(strong):
    """Draws of Poisson(μ) alone would refit a flux ~ the background fraction low."""
    _, ds = strong
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xf.FitWarning)
        Z = xf.fuse(ds, "lrs", max_iter=60, **QUIET)
        draws = xf.bootstrap(ds, Z, n_draws=2, max_iter=30, progress=False)
    ratio = draws.sum(("energy", "y", "x")).values / float(Z.sum())
    np.testing.assert_allclose(ratio, 1.0, atol=0.05)
    err = xf.uncertainty(ds, Z, method="fisher")
    assert np.isfinite(err.values).all() and (err.values > 0).all()


def test_cli_simulate_with_background_and_fuse(tmp_path, capsys):
    from xfusion.cli import main

    prob, out = tmp_path / "p.zarr", tmp_path / "z.zarr"
    assert main(["simulate", "gaussian_1kev_rebin", "--scale", "0.1", "--background",
                 "0.3,0.5", "--out", str(prob), "-q"]) == 0
    ds = xf.open_problem(prob)
    assert ds.attrs["background_fraction_Y"] == 0.5 and "background_X" in ds
    assert main(["fuse", str(prob), "--out", str(out), "--regularizer", "lrs",
                 "--max-iter", "20", "-q"]) == 0
    assert "C-statistic" in capsys.readouterr().out
    assert main(["simulate", "gaussian_1kev_rebin", "--scale", "0.1", "--background", "0.3",
                 "--out", str(tmp_path / "q.zarr"), "-q"]) == 2


# ------------------------------------------------------------------------- reading spectra
def test_pha_round_trip_and_scaling(tmp_path):
    n = 400
    ch = np.arange(n)
    counts = np.random.default_rng(5).poisson(20.0, n).astype(float)
    bs = np.linspace(2.0, 3.0, n)
    p = xf.io.write_pha(tmp_path / "bkg.pha", counts, 2e4, backscal=bs, areascal=0.8,
                        e_min=0.5 + ch * 0.005, e_max=0.5 + (ch + 1) * 0.005, first_channel=0)
    pha = xf.io.read_pha(p)
    np.testing.assert_array_equal(pha.values, counts)
    np.testing.assert_allclose(pha.backscal, bs, rtol=1e-6)
    assert pha.attrs["exposure"] == 2e4 and pha.attrs["hduclas2"] == "BKG"
    assert pha.attrs["backscal_column"] and not pha.attrs["areascal_column"]
    edges = np.linspace(0.6, 2.4, 13)                  # 150 eV bins, on channel boundaries
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        B = xf.io.background_spectrum(p, edges, 5e4, backscal=0.25, areascal=1.0)
    scale = 5e4 * 0.25 * 1.0 / (2e4 * pha.backscal.values * 0.8)
    s = counts * scale
    lo = pha.e_min.values
    ref = [s[(lo >= a - 1e-7) & (lo < b - 1e-7)].sum() for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_allclose(B.values, ref, rtol=1e-5)
    # pixels=: BACKSCAL of one pixel = the file's / pixels
    Bp = xf.io.background_spectrum(pha, edges, 5e4, pixels=10)
    ref = [(counts * 5e4 / (2e4 * 0.8 * 10))[(lo >= a - 1e-7) & (lo < b - 1e-7)].sum()
           for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_allclose(Bp.values, ref, rtol=1e-5)
    # edges inside channels share them, with a warning
    with pytest.warns(UserWarning, match="split the spectrum's channels"):
        Bs = xf.io.background_spectrum(pha, [0.6, 1.0012, 1.5], 5e4, pixels=10)
    assert Bs.values.sum() == pytest.approx(
        (counts * 5e4 / (2e4 * 0.8 * 10))[(lo >= 0.6 - 1e-7) & (lo < 1.5 - 1e-7)].sum(),
        rel=1e-5)


def _hand_pha(path, n=300, rate=True, ebounds=False, **header):
    """A PHA written with astropy alone: RATE, 1-based channels, QUALITY and GROUPING."""
    ch = np.arange(1, n + 1)
    val = np.full(n, 0.01)
    cols = [fits.Column("CHANNEL", "I", array=ch),
            fits.Column("RATE" if rate else "COUNTS", "E", unit="count/s" if rate else "count",
                        array=val if rate else val * 1e3),
            fits.Column("QUALITY", "I", array=np.r_[np.ones(3), np.zeros(n - 3)]),
            fits.Column("GROUPING", "I", array=np.where(ch % 2, 1, -1))]
    spec = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    for k, v in {"EXPOSURE": 1e3, "BACKSCAL": 4.0, "AREASCAL": 1.0, "HDUCLAS1": "SPECTRUM",
                 "HDUCLAS2": "BKG", **header}.items():
        if v is not None:
            spec.header[k] = v
    hdus = [fits.PrimaryHDU(), spec]
    if ebounds:
        hdus.append(fits.BinTableHDU.from_columns([
            fits.Column("CHANNEL", "I", array=ch),
            fits.Column("E_MIN", "E", unit="keV", array=ch * 0.01),
            fits.Column("E_MAX", "E", unit="keV", array=(ch + 1) * 0.01)], name="EBOUNDS"))
    fits.HDUList(hdus).writeto(path)
    return path


def test_hand_written_pha_rate_quality_and_channel_width(tmp_path):
    p = _hand_pha(tmp_path / "h.pha")
    pha = xf.io.read_pha(p)
    np.testing.assert_allclose(pha.values, 10.0, rtol=1e-6)        # RATE × EXPOSURE
    assert pha.attrs["column"] == "RATE" and pha.attrs["bad_quality"] == 3
    assert pha.attrs["grouped"] and int(pha.channel[0]) == 1
    with pytest.raises(FileFormatError, match="no EBOUNDS"):
        xf.io.background_spectrum(pha, [1.0, 2.0], 1e3, pixels=1)
    # 10 eV channels, channel c covering [c, c + 1) × 10 eV
    B = xf.io.background_spectrum(pha, [1.0, 1.5, 2.0], 2e3, backscal=1.0, ebounds=0.01)
    np.testing.assert_allclose(B.values, 50 * 10.0 * 2e3 / (1e3 * 4.0), rtol=1e-6)
    # the same from an RMF's EBOUNDS
    r = xf.io.write_rmf(tmp_path / "r.rmf", [0.0], [5.0], np.ones((1, 400)) / 400,
                        np.arange(400) * 0.01, np.arange(1, 401) * 0.01, first_channel=0)
    B2 = xf.io.background_spectrum(pha, [1.0, 1.5, 2.0], 2e3, backscal=1.0, ebounds=r)
    np.testing.assert_allclose(B2.values, B.values)
    with pytest.raises(FileFormatError, match="cover the problem's bin 2.5"):
        xf.io.background_spectrum(pha, [2.0, 2.5, 3.5], 2e3, backscal=1.0, ebounds=0.01)
    with pytest.raises(ValueError, match="exactly one of backscal= .* and pixels="):
        xf.io.background_spectrum(pha, [1.0, 2.0], 2e3, ebounds=0.01)
    with pytest.raises(ValueError, match="exactly one of"):
        xf.io.background_spectrum(pha, [1.0, 2.0], 2e3, backscal=1, pixels=2, ebounds=0.01)


def test_bad_pha_files(tmp_path):
    with pytest.raises(FileFormatError, match="no usable EXPOSURE"):
        xf.io.read_pha(_hand_pha(tmp_path / "a.pha", EXPOSURE=None))
    with pytest.raises(FileFormatError, match="BACKSCAL must be positive"):
        xf.io.read_pha(_hand_pha(tmp_path / "b.pha", BACKSCAL=0.0))
    with pytest.raises(FileFormatError, match="RATE has unit 'keV'"):
        p = tmp_path / "c.pha"
        _hand_pha(p)
        with fits.open(p, mode="update") as h:
            h[1].header["TUNIT2"] = "keV"
        xf.io.read_pha(p)
    p = xf.io.write_pha(tmp_path / "d.pha", np.ones(5), 10.0)
    with fits.open(p) as h:
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column("CHANNEL", "J", array=np.arange(5)),
             fits.Column("COUNTS", "D", array=-np.ones(5))], header=h[1].header)])
    hdul.writeto(tmp_path / "e.pha")
    with pytest.raises(FileFormatError, match="5 negative values .* net"):
        xf.io.read_pha(tmp_path / "e.pha")
    type2 = fits.BinTableHDU.from_columns(
        [fits.Column("CHANNEL", "5J", array=np.tile(np.arange(5), (2, 1))),
         fits.Column("COUNTS", "5D", array=np.ones((2, 5)))], name="SPECTRUM")
    type2.header["EXPOSURE"] = 1.0
    fits.HDUList([fits.PrimaryHDU(), type2]).writeto(tmp_path / "f.pha")
    with pytest.raises(FileFormatError, match="type II"):
        xf.io.read_pha(tmp_path / "f.pha")
    with pytest.raises(FileFormatError, match="no SPECTRUM"):
        xf.io.read_pha(xf.io.write_arf(tmp_path / "g.arf", [1.0], [2.0], [1.0]))
    with pytest.raises(FileFormatError, match="have no channel 10 "):
        xf.io.background_spectrum(_hand_pha(tmp_path / "h.pha"), [1.0, 2.0], 1.0, pixels=1,
                                  ebounds=xf.io.read_ebounds(
                                      xf.io.write_pha(tmp_path / "i.pha", np.ones(10), 1.0,
                                                      e_min=np.arange(10.0),
                                                      e_max=np.arange(1.0, 11.0))))


def test_gammapy_reads_our_background_pha(tmp_path):
    maps = pytest.importorskip("gammapy.maps")
    n = 200
    ch = np.arange(n)
    counts = np.random.default_rng(6).poisson(7.0, n).astype(float)
    bs = np.linspace(1.0, 2.0, n)
    p = xf.io.write_pha(tmp_path / "b.pha", counts, 1e4, backscal=bs,
                        e_min=1.0 + ch * 0.005, e_max=1.0 + (ch + 1) * 0.005)
    c = maps.RegionNDMap.read(p, format="ogip")
    b = maps.RegionNDMap.read(p, format="ogip", ogip_column="BACKSCAL")
    np.testing.assert_array_equal(c.data.ravel(), counts)
    np.testing.assert_allclose(b.data.ravel(), bs, rtol=1e-6)
    e = c.geom.axes["energy"].edges.to_value("keV")
    np.testing.assert_allclose(e, np.r_[1.0 + ch * 0.005, 1.0 + n * 0.005], rtol=1e-6)
    # gammapy's off-counts scaling for equal exposures, alpha = BACKSCAL_on / BACKSCAL_off,
    # equals ours channel by channel
    B = xf.io.background_spectrum(p, e, 1e4, backscal=0.5)
    np.testing.assert_allclose(B.values, c.data.ravel() * 0.5 / b.data.ravel(), rtol=1e-6)


def test_from_files_reads_background_spectra(files):  # noqa: F811
    d = files["dir"]
    pn = xf.io.write_pha(d / "pn_bkg.pha", np.full(2400, 3.0), 2e4, backscal=100.0)
    rsl = xf.io.write_pha(d / "rsl_bkg.pha", np.full(24000, 0.7), 9e4, backscal=1.0)
    ds = t.build(files, background_X=pn, background_options_X={"backscal": 25.0},
                 background_Y=rsl, background_options_Y={"pixels": 35})
    # X: 5 eV channels (the RMF's EBOUNDS), 500 eV X channels = 100 of them
    np.testing.assert_allclose(ds.background_X.values, 100 * 3.0 * (4e4 * 25) / (2e4 * 100))
    # Y: 0.5 eV Resolve channels, 50 eV Z bins = 100 of them, over 35 pixels
    np.testing.assert_allclose(ds.background_Y.values, 100 * 0.7 / 35, rtol=1e-5)
    assert ds.attrs["background_X"].endswith("pn_bkg.pha")
    assert ds.background_Y.attrs["source"].endswith("rsl_bkg.pha")
    with pytest.raises(ValueError, match="exactly one of backscal"):
        t.build(files, background_X=pn)
    arr = t.build(files, background_Y=np.full(t.L, 0.02))
    assert float(arr.background_Y.sum()) == pytest.approx(0.02 * t.L * 36)


def test_background_dataarray_in_make_problem_keeps_its_source():
    base = tiny_problem()
    b = xr.DataArray(np.ones(base.sizes["energy"]), dims=("bin",), attrs={"source": "f.pha"})
    ds = xf.with_background(base, background_Y=b)
    assert ds.background_Y.attrs["source"] == "f.pha"


def test_resume_refuses_another_background(pair, tmp_path):
    _, ds = pair
    ck = tmp_path / "ck.zarr"
    xf.fuse(ds, "none", max_iter=2, checkpoint=ck, **QUIET)
    other = xf.with_background(ds, background_Y=2 * ds.background_Y.values)
    with pytest.raises(xf.CheckpointError):
        xf.fuse(other, "none", max_iter=4, resume=ck, **QUIET)
    Z = xf.fuse(ds, "none", max_iter=4, resume=ck, checkpoint=ck, **QUIET)
    assert Z.attrs["iterations"] == 4
