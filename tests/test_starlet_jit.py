"""The compiled 2-D–1-D threshold (optional numba) against the numpy kernels."""

from __future__ import annotations

import numpy as np
import pytest

import xfusion.starlet as W
from xfusion.starlet import _jit as J
from xfusion.starlet import folding, transforms

pytest.importorskip("numba")


def rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("boundary", ["mirror", "reflect"])
def test_gather_table_is_the_folded_operator(boundary):
    for n in (1, 2, 3, 4, 7, 12, 25, 40):
        for d in (1, 2, 4):
            for lo in (True, False):
                for hi in (True, False):
                    try:
                        M = folding._local_matrix(n, d, lo, hi, boundary, False)
                    except ValueError:
                        with pytest.raises(ValueError, match="too short"):
                            J.smooth_table(n, d, lo, hi, boundary, "<f8")
                        continue
                    idx, w, off = J.smooth_table(n, d, lo, hi, boundary, "<f8")
                    D = np.zeros_like(M)
                    for i in range(idx.shape[0]):
                        np.add.at(D[i], idx[i], w[i])
                    np.testing.assert_allclose(D, M, atol=1e-15, err_msg=(n, d, lo, hi))
                    assert off == (0 if lo else 2 * d)


def _thresholds(T, shape, seed=1):
    """One of each kind: (factor, map), a second map, a broadcast array, a scalar, None."""
    rng = np.random.default_rng(seed)
    m1 = rng.random(shape) * 0.6
    m2 = rng.random(shape) * 0.4
    per_e = np.linspace(0.1, 0.5, shape[0]).reshape(-1, 1, 1)
    th = {}
    for n, (b, j) in enumerate(np.ndindex(T.J2 + 1, T.J1 + 1)):
        if (b, j) == T.coarse_index:
            continue
        th[(b, j)] = [(0.7, m1), (1.3, m2), per_e, 0.2, None][n % 5]
    return th


@pytest.mark.parametrize("shape", [(37, 10, 9), (64, 1, 1), (5, 3, 4), (90, 16, 13)])
@pytest.mark.parametrize("boundary", ["mirror", "reflect"])
def test_jit_threshold_equals_numpy(shape, boundary, monkeypatch):
    monkeypatch.setattr(transforms, "_BLOCK_ELEMS", 300)      # many energy blocks with halos
    T = W.Starlet2D1D(2, 3, boundary)
    z = rand(shape)
    th = _thresholds(T, shape)
    monkeypatch.setenv("XFUSION_JIT", "0")
    assert not J.available()
    ref, l1_ref = T.threshold(z, th, return_l1=True)
    monkeypatch.setenv("XFUSION_JIT", "1")
    assert J.available()
    got, l1 = T.threshold(z, th, return_l1=True)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert l1 == pytest.approx(l1_ref, rel=1e-12)
    # float32 in, float32 out, same map to float32 rounding
    got32 = T.threshold(z.astype(np.float32), th)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref, atol=2e-5 * np.abs(ref).max())


def test_jit_threshold_on_dask_chunks_with_spatial_halos(monkeypatch):
    da = pytest.importorskip("dask.array")
    T = W.Starlet2D1D(2, 3)
    z = rand((53, 29, 31))
    base = np.random.default_rng(4).random(z.shape) * 0.5
    g = T.noise_gains
    th = {(b, j): (float(g[b, j]), base) for b, j in np.ndindex(3, 4) if (b, j) != (2, 3)}
    monkeypatch.setenv("XFUSION_JIT", "0")
    ref = T.threshold(z, th)
    monkeypatch.setenv("XFUSION_JIT", "1")
    got = T.threshold(da.from_array(z, chunks=(17, 12, 11)), th).compute(scheduler="sync")
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(40, 9, 12), (3, 2, 2), (70, 1, 5)])
@pytest.mark.parametrize("boundary", ["mirror", "reflect"])
def test_finest_and_coarse_are_those_of_the_forward_transform(shape, boundary, monkeypatch):
    from xfusion.starlet import StarletBands

    T = W.Starlet2D1D(2, 3, boundary)
    z = rand(shape, seed=5)
    c = T.forward(z)
    fin, coarse = J.finest_and_coarse_2d1d(z, 2, 3, boundary)
    np.testing.assert_allclose(fin, c[0, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(coarse, c[2, 3], rtol=1e-12, atol=1e-12)
    B = StarletBands(T, shape)
    monkeypatch.setenv("XFUSION_JIT", "0")
    f0, c0 = B.finest_and_coarse(z)
    np.testing.assert_allclose(f0, fin, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c0, coarse, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sample", [(slice(None, None, 2),) * 3,
                                    (slice(1, None, 3), slice(None, None, 2), slice(2, 9, 5)),
                                    (slice(None),) * 3])
@pytest.mark.parametrize("boundary", ["mirror", "reflect"])
def test_finest_band_at_a_lattice_is_the_full_band_sliced(sample, boundary, monkeypatch):
    from xfusion.starlet import StarletBands

    z = rand((41, 11, 13), seed=6)
    c = W.Starlet2D1D(2, 3, boundary).forward(z)
    fin, coarse = J.finest_and_coarse_2d1d(z, 2, 3, boundary, sample=sample)
    np.testing.assert_allclose(fin, c[0, 0][sample], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(coarse, c[2, 3], rtol=1e-12, atol=1e-12)
    B = StarletBands(W.Starlet2D1D(2, 3, boundary), z.shape)
    monkeypatch.setenv("XFUSION_JIT", "0")
    f0, _ = B.finest_and_coarse(z, sample=sample)
    np.testing.assert_allclose(f0, fin, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(41, 11, 13), (200, 60, 60)])   # one block, three blocks
def test_threshold_reusing_the_estimates_spatial_smoothings(shape):
    """The prox given the spatial smoothings formed by the estimate equals the one that forms
    them itself (blocks with energy halos slice the whole-cube smoothings)."""
    from xfusion.starlet import StarletBands

    z = rand(shape, seed=7)
    T = W.Starlet2D1D(2, 3)
    B = StarletBands(T, shape)
    fin, coarse, levels = B.finest_and_coarse(z, levels=True)
    assert len(levels) == 2
    t = 0.2 * (np.abs(rand(shape, seed=8)) + 0.1)
    th = {b: (float(B.noise_gains[b]), t) for b in B.detail_bands}
    ref, l1_ref = B.threshold(z, th)
    got, l1 = B.threshold(z, th, levels=levels)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert l1 == pytest.approx(l1_ref, rel=1e-12)
    # smoothings of another cube are not silently used
    bad = [np.zeros((3,) + shape[1:])] * 2
    np.testing.assert_allclose(B.threshold(z, th, levels=bad)[0], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", [True, False])
def test_threshold_base_is_scale_times_k_times_root_step_metric(dtype, metric):
    c = rand((30, 7, 9), dtype, seed=8) - 0.5
    P = (np.abs(rand(c.shape, dtype, seed=9)) + 0.1) if metric else None
    m = float(np.median(np.abs(c)))
    k, base, sP = J.threshold_base(c, P, 0.3, 1.7, 4.0, 8.0, m, 2.0)
    k_ref = W.brightness_k(c, 4.0, 8.0, reference=m)
    np.testing.assert_allclose(k, k_ref, rtol=1e-6)
    Pf = np.ones_like(c) if P is None else P
    np.testing.assert_allclose(base, 1.7 * k_ref * np.sqrt(0.3 * Pf), rtol=2e-6)
    assert sP == pytest.approx(float(Pf.sum(dtype=np.float64)), rel=1e-6)
    # no brightness reference (an all-zero band): k = k_max everywhere
    k0, _, _ = J.threshold_base(np.zeros_like(c), P, 0.3, 1.7, 4.0, 8.0, 0.0, 2.0)
    assert np.all(k0 == 8.0)
    with pytest.raises(ValueError, match="metric of"):
        J.threshold_base(c, np.ones(5, dtype), 0.3, 1.7, 4.0, 8.0, m, 2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [2.0, 1.5])
def test_jit_brightness_map_equals_numpy(dtype, slope, monkeypatch):
    c = rand((40, 9, 11), dtype, seed=5)
    c[0, 0, 0] = 0.0
    monkeypatch.setenv("XFUSION_JIT", "0")
    ref = W.brightness_k(c, 0.5, 3.0, slope=slope)
    monkeypatch.setenv("XFUSION_JIT", "1")
    got = W.brightness_k(c, 0.5, 3.0, slope=slope)
    assert got.dtype == ref.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=1e-6 if dtype == np.float32 else 1e-13)
    assert got[0, 0, 0] == pytest.approx(3.0)


def test_finest_and_coarse_with_planes_split_over_threads(monkeypatch):
    # the spatial smoothing runs in blocks of planes on the pool: same bands as the transform
    z = rand((37, 12, 10))
    T = W.Starlet2D1D(2, 3)
    c = T.forward(z)
    fin, coarse = J.finest_and_coarse_2d1d(z, 2, 3, "mirror")
    np.testing.assert_allclose(fin, c[0, 0], atol=1e-12)
    np.testing.assert_allclose(coarse, c[2, 3], atol=1e-12)


@pytest.mark.parametrize("jit", ["1", "0"])
def test_threshold_with_positivity_clips_block_by_block(jit, monkeypatch):
    import dask.array as da

    monkeypatch.setenv("XFUSION_JIT", jit)
    z = rand((200, 60, 60), seed=9) - 0.4          # several blocks, negative values
    T = W.Starlet2D1D(2, 3)
    th = {(b, j): 0.05 for b in range(2) for j in range(4)}
    ref, l1_ref = T.threshold(z, th, return_l1=True)
    got, l1 = T.threshold(z, th, return_l1=True, positive=True)
    assert (ref < 0).any()
    np.testing.assert_array_equal(got, np.maximum(ref, 0))
    assert l1 == pytest.approx(l1_ref, rel=1e-12)   # (blocks may finish in any order)
    zd = da.from_array(z, chunks=(70, 60, 30))
    np.testing.assert_allclose(T.threshold(zd, th, positive=True).compute(scheduler="sync"),
                               np.maximum(ref, 0), atol=1e-12)
