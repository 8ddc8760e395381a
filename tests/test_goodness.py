import dask.array as da
import numpy as np
import pytest

import xfusion as xf
from xfusion.goodness import cstat, cstat_expected, goodness_of_fit

from .conftest import consistent_problem


@pytest.mark.parametrize("lam", [0.003, 0.2, 1.5, 25.0, 3e3])
def test_expected_cstat_matches_simulated_counts(lam):
    # mean and variance of a bin's C under Poisson(λ), against 400 000 simulated bins
    rng = np.random.default_rng(int(lam * 1000) + 1)
    n = 400_000
    k = rng.poisson(lam, n).astype(float)
    mu = np.full(n, lam)
    c = 2 * (mu - k + np.where(k > 0, k * np.log(np.where(k > 0, k, 1) / lam), 0))
    e, v = cstat_expected(mu)
    se_mean = np.sqrt(c.var() * n)                  # standard error of the sum
    assert abs(c.sum() - e) < 5 * se_mean
    assert v / n == pytest.approx(c.var(), rel=0.05)
    assert cstat(k, mu) == pytest.approx(c.sum(), rel=1e-9)


def test_expected_cstat_limits():
    # low counts contribute far less than 1 per bin, bright bins 1 (variance 2)
    e0, _ = cstat_expected(np.full(10, 0.01))
    e1, v1 = cstat_expected(np.full(10, 1e6))
    assert e0 / 10 < 0.2 and (e1, v1) == pytest.approx((10.0, 20.0), rel=1e-3)
    assert cstat_expected(np.zeros(5)) == (0.0, 0.0)


def test_cstat_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="shape"):
        cstat(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="1 bins have counts but zero"):
        cstat(np.array([0.0, 2.0]), np.array([1.0, 0.0]))


def test_dask_and_numpy_agree():
    rng = np.random.default_rng(5)
    mu = rng.uniform(0.01, 30, (6, 10, 12))
    D = rng.poisson(mu).astype(float)
    g = goodness_of_fit(D, mu)
    gd = goodness_of_fit(da.from_array(D, chunks=(3, 5, 6)), da.from_array(mu, chunks=(3, 5, 6)))
    for key in ("cstat", "expected", "sigma", "ratio"):
        assert gd[key] == pytest.approx(g[key], rel=1e-12)


def test_fuse_records_the_fit_and_the_truth_is_consistent_with_it():
    ds = consistent_problem(L=48, l=6, M=18, N=18, counts=50, noise=True)
    Z = xf.fuse(ds, "w2d1d", J1=2, progress=False, max_iter=60)
    mX, mY = ds.hifred.forward(Z)
    for name, D, mu in (("X", ds.X.values, mX.values), ("Y", ds.Y.values, mY.values)):
        g = goodness_of_fit(D, mu)
        got = [Z.attrs[f"cstat_{name}{suffix}"] for suffix in ("", "_expected", "_sigma")]
        np.testing.assert_allclose(got, [g["cstat"], g["expected"], g["sigma"]], rtol=1e-4)
    # the counts were drawn from the truth's expected counts: C is within a few σ of E[C]
    mX, mY = ds.hifred.forward(ds.Z_true)
    for D, mu in ((ds.X.values, mX.values), (ds.Y.values, mY.values)):
        g = goodness_of_fit(D, mu)
        assert abs(g["cstat"] - g["expected"]) < 5 * g["sigma"]


def test_choose_rank_finds_the_rank_y_needs():
    from xfusion.parametrization import choose_rank

    rng = np.random.default_rng(7)
    L, m, n, r_true = 120, 8, 8, 3
    E = np.linspace(0, 1, L)
    spectra = np.stack([np.exp(-0.5 * ((E - c) / 0.05) ** 2) + 0.05 for c in (0.2, 0.5, 0.8)], 1)
    maps = rng.gamma(2.0, 1.0, (r_true, m * n))
    w = np.full(L, 50.0)
    Y = rng.poisson(w[:, None] * (spectra @ maps)).reshape(L, m, n).astype(float)
    rank, V, trials = choose_rank(Y, w, ranks=(1, 2, 3, 5, 8))
    assert rank == 3 and V.shape == (L, 3)
    assert [t["rank"] for t in trials] == [1, 2, 3]
    assert trials[0]["ratio"] > 1.5 and trials[-1]["ratio"] <= 1.0
    with pytest.raises(ValueError, match="no candidate rank"):
        choose_rank(Y, w, ranks=(500,))


def test_fuse_rank_auto_records_the_choice():
    ds = consistent_problem(L=48, l=6, M=18, N=18, counts=50, noise=True)
    Z = xf.fuse(ds, "lr", rank="auto", progress=False, max_iter=30)
    assert Z.attrs["rank"] in (5, 10, 15, 20, 25, 30, 36)
    assert len(Z.attrs["rank_trials"]) >= 1 and "C/E" in Z.attrs["rank_trials"][-1]
    for bad in (0, 2.5, "ten"):
        with pytest.raises(ValueError, match="rank"):
            xf.fuse(ds, "lr", rank=bad, progress=False)


def test_choose_rank_searches_binned_y_when_it_has_many_pixels():
    from xfusion.parametrization import choose_rank, nmf_subspace

    rng = np.random.default_rng(8)
    L, m, n = 80, 20, 20
    E = np.linspace(0, 1, L)
    spectra = np.stack([np.exp(-0.5 * ((E - c) / 0.05) ** 2) + 0.05 for c in (0.3, 0.7)], 1)
    w = np.full(L, 20.0)
    Y = rng.poisson(w[:, None] * (spectra @ rng.gamma(2.0, 1.0, (2, m * n)))).reshape(L, m, n)
    full = choose_rank(Y, w, ranks=(1, 2, 4), max_pixels=10_000)
    binned = choose_rank(Y, w, ranks=(1, 2, 4), max_pixels=50)      # searched on 3 × 3 bins
    assert full[0] == binned[0] == 2
    # the subspace returned is the one learnt from the full Y at the chosen rank
    np.testing.assert_allclose(binned[1], nmf_subspace(Y, w, 2))


def test_a_rank_too_small_for_y_warns():
    # Z_true has three spectral components (two spectra and a flat floor): rank 2 leaves
    # Y's counts unexplained, rank 3 describes them
    import warnings

    ds = consistent_problem(L=48, l=6, M=18, N=18, counts=200, noise=True)
    with pytest.warns(xf.RankWarning, match="rank 2: .* C-statistic"):
        Z = xf.fuse(ds, "lr", rank=2, progress=False)
    assert Z.attrs["cstat_Y"] > xf.fusion.RANK_MISFIT * Z.attrs["cstat_Y_expected"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", xf.RankWarning)
        Z = xf.fuse(ds, "lr", rank=3, progress=False)
        xf.fuse(ds, "lr", rank="auto", progress=False)      # auto chooses: no warning
    assert Z.attrs["cstat_Y"] <= Z.attrs["cstat_Y_expected"] + 3 * Z.attrs["cstat_Y_sigma"]
