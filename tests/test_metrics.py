"""Tests for xfusion.metrics: hand-computed values, skimage agreement, dtype/backends."""

import math

import numpy as np
import pytest
import xarray as xr

from xfusion import metrics as m


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- NMSE
def test_nmse_hand():
    # Z_true = ones (2,2,2): sum Zt^2 = 8.  One voxel off by 1: sum err^2 = 1.
    t = np.ones((2, 2, 2))
    z = t.copy()
    z[1, 0, 1] += 1.0
    assert m.nmse(z, t) == pytest.approx(-10 * math.log10(1 / 8))  # = 9.03 dB


def test_nmse_hand_two_errors():
    # Zt = 2 everywhere: sum Zt^2 = 8*4 = 32; errors -1 and +3: sum err^2 = 1 + 9 = 10.
    t = np.full((2, 2, 2), 2.0)
    z = t.copy()
    z[0, 0, 0] -= 1.0
    z[1, 1, 1] += 3.0
    assert m.nmse(z, t) == pytest.approx(-10 * math.log10(10 / 32))


def test_nmse_zero_truth_raises():
    with pytest.raises(ValueError, match="zero"):
        m.nmse(np.ones((2, 2, 2)), np.zeros((2, 2, 2)))


# ----------------------------------------------------------------------------- SAM
def test_asam_hand():
    # energy=2, y=1, x=2.  Pixel 0: z=(1,0), t=(0,1) -> pi/2.
    # Pixel 1: z=(1,1), t=(1,0) -> cos = 1/sqrt(2) -> pi/4.  Mean = 3 pi / 8.
    z = np.array([[[1.0, 1.0]], [[0.0, 1.0]]])
    t = np.array([[[0.0, 1.0]], [[1.0, 0.0]]])
    assert m.asam(z, t) == pytest.approx(3 * math.pi / 8)
    np.testing.assert_allclose(m.sam_map(z, t), [[math.pi / 2, math.pi / 4]])


def test_asam_scale_invariant_and_antiparallel():
    # z = 5 t -> angle 0 ; z = -t -> angle pi.
    t = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])
    np.testing.assert_allclose(m.sam_map(5 * t, t), [[0.0, 0.0]], atol=1e-7)
    assert m.asam(-t, t) == pytest.approx(math.pi)


def test_asam_zero_norm_convention():
    # pixel 0: both spectra zero -> 0; pixel 1: only z zero -> pi/2;
    # pixel 2: only t zero -> pi/2; pixel 3: identical -> 0.  Mean = pi/4.
    z = np.array([[[0.0, 0.0, 1.0, 2.0]], [[0.0, 0.0, 1.0, 3.0]]])
    t = np.array([[[0.0, 1.0, 0.0, 2.0]], [[0.0, 1.0, 0.0, 3.0]]])
    np.testing.assert_allclose(m.sam_map(z, t), [[0.0, math.pi / 2, math.pi / 2, 0.0]], atol=1e-7)
    assert m.asam(z, t) == pytest.approx(math.pi / 4, abs=1e-7)


def test_asam_matches_reference_formula_exactly():
    rng = _rng(1)
    a = rng.random((30, 7, 8))
    b = a + 0.1 * rng.standard_normal(a.shape)
    ref = np.mean(
        np.arccos(
            np.clip((a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0), -1, 1)
        )
    )
    assert m.asam(a, b) == ref
    assert m.report(a, b)["aSAM"] == ref


# ----------------------------------------------------------------------------- ERGAS
def test_ergas_hand():
    # Slice 0: Zt = 2, Z = 3 everywhere -> RMSE 1, mu 2 -> ratio 1/2.
    # Slice 1: Zt = 4, Z = 4 but one pixel 6 -> errors (2,0,0,0) -> RMSE sqrt(4/4) = 1,
    #          mu 4 -> ratio 1/4.
    # ERGAS = d * sqrt((1/4 + 1/16) / 2).
    t = np.stack([np.full((2, 2), 2.0), np.full((2, 2), 4.0)])
    z = np.stack([np.full((2, 2), 3.0), np.full((2, 2), 4.0)])
    z[1, 0, 0] = 6.0
    expected = math.sqrt((1 / 4 + 1 / 16) / 2)
    assert m.ergas(z, t) == pytest.approx(expected)
    assert m.ergas(z, t, ratio=1 / 3) == pytest.approx(expected / 3)


def test_ergas_skips_zero_mean_slices():
    # Slice 1 of Zt has zero mean and is skipped: only slice 0 (ratio 1/2) counts.
    t = np.stack([np.full((2, 2), 2.0), np.zeros((2, 2))])
    z = np.stack([np.full((2, 2), 3.0), np.ones((2, 2))])
    assert m.ergas(z, t) == pytest.approx(0.5)
    with pytest.warns(RuntimeWarning):
        assert math.isnan(m.ergas(np.ones((2, 2, 2)), np.zeros((2, 2, 2))))


# ----------------------------------------------------------------------------- SSIM
def test_acssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    rng = _rng(2)
    t = rng.random((5, 16, 13))
    z = t + 0.2 * rng.standard_normal(t.shape)
    dr = t.max() - t.min()  # one data range for the whole cube
    ssim = [skm.structural_similarity(z[k], t[k], data_range=dr) for k in range(t.shape[0])]
    expected = float(np.mean(1 - np.array(ssim)))
    assert m.acssim(z, t) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert m.report(z, t)["acSSIM"] == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_acssim_matches_skimage_other_window():
    skm = pytest.importorskip("skimage.metrics")
    rng = _rng(3)
    t = rng.random((3, 9, 9)) * 50
    z = t * 1.1 + rng.standard_normal(t.shape)
    dr = t.max() - t.min()
    ssim = [skm.structural_similarity(z[k], t[k], data_range=dr, win_size=5) for k in range(3)]
    assert m.acssim(z, t, win_size=5) == pytest.approx(float(np.mean(1 - np.array(ssim))))


def test_acssim_blocks_agree(monkeypatch):
    rng = _rng(4)
    t = rng.random((11, 8, 8))
    z = t + 0.1 * rng.random(t.shape)
    full = m.acssim(z, t)
    monkeypatch.setattr(m, "_SSIM_BLOCK_VOXELS", 3 * 64)  # blocks of 3 slices
    assert m.acssim(z, t) == pytest.approx(full, rel=1e-12)


def test_acssim_too_small_raises_and_report_gives_nan():
    z = np.ones((2, 2, 2))
    with pytest.raises(ValueError, match="7x7"):
        m.acssim(z, z)
    with pytest.warns(RuntimeWarning, match="acSSIM"):
        r = m.report(z, z)
    assert math.isnan(r["acSSIM"])
    assert r["aSAM"] == pytest.approx(0.0, abs=1e-7)  # arccos(1 - eps), as the plain formula


def test_acssim_constant_truth_is_finite():
    t = np.full((2, 8, 8), 3.0)
    assert m.acssim(t, t) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(m.acssim(t + 0.5, t))


# ----------------------------------------------------------------------------- identical
def test_identical_inputs():
    t = _rng(5).random((4, 8, 9)) + 0.1
    r = m.report(t, t.copy(), ratio=0.5)
    assert set(r) == {"NMSE", "aSAM", "acSSIM", "ERGAS"}
    assert all(isinstance(v, float) for v in r.values())
    assert r["NMSE"] == math.inf
    assert r["aSAM"] == pytest.approx(0.0, abs=1e-7)  # arccos(1 - eps) ~ sqrt(2 eps)
    assert r["acSSIM"] == pytest.approx(0.0, abs=1e-12)
    assert r["ERGAS"] == 0.0


def test_report_keys_checker_style():
    rng = _rng(6)
    t = rng.random((6, 7, 8)) + 0.5
    z = t + 0.05 * rng.standard_normal(t.shape)
    r = {k.lower(): float(v) for k, v in m.report(z, t).items()}
    assert set(r) == {"nmse", "asam", "acssim", "ergas"}
    nmse_ref = -10 * np.log10(np.sum((z - t) ** 2) / np.sum(t**2))
    assert r["nmse"] == pytest.approx(nmse_ref, rel=1e-12)


# ----------------------------------------------------------------------------- backends
def test_float32_dask_xarray_agree():
    da = pytest.importorskip("dask.array")
    rng = _rng(7)
    t32 = (rng.random((5, 8, 8)) + 0.2).astype(np.float32)
    z32 = (t32 + 0.05 * rng.standard_normal(t32.shape)).astype(np.float32)
    ref = m.report(z32.astype(np.float64), t32.astype(np.float64), ratio=0.5)
    assert m.report(z32, t32, ratio=0.5) == ref
    dz = da.from_array(z32, chunks=(2, 4, 4))
    dt = da.from_array(t32, chunks=(3, 8, 4))
    assert m.report(dz, dt, ratio=0.5) == ref
    coords = {"energy": np.arange(5.0), "y": np.arange(8.0), "x": np.arange(8.0)}
    xz = xr.DataArray(z32, dims=("energy", "y", "x"), coords=coords)
    # a DataArray in another dim order is transposed to energy-first
    xt = xr.DataArray(t32, dims=("energy", "y", "x"), coords=coords).transpose("y", "x", "energy")
    assert m.report(xz, xt, ratio=0.5) == ref
    xdask = xr.DataArray(dz, dims=("energy", "y", "x"), coords=coords)
    assert m.nmse(xdask, t32) == ref["NMSE"]


def test_maps_from_dataarray_carry_coords():
    rng = _rng(8)
    coords = {"energy": np.arange(3.0), "y": np.arange(4.0) * 10, "x": np.arange(5.0) * 10}
    t = xr.DataArray(rng.random((3, 4, 5)), dims=("energy", "y", "x"), coords=coords)
    z = t * 1.1
    for fn in (
        lambda: m.sam_map(z, t),
        lambda: m.relative_error_map(z, t),
        lambda: m.spectral_variability(t),
    ):
        out = fn()
        assert isinstance(out, xr.DataArray)
        assert out.dims == ("y", "x")
        np.testing.assert_array_equal(out.x, coords["x"])
    np.testing.assert_allclose(m.relative_error_map(z, t), 0.1)
    assert isinstance(m.sam_map(z.values, t.values), np.ndarray)


# ----------------------------------------------------------------------------- errors
def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 3, 5\)"):
        m.nmse(np.ones((2, 3, 4)), np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="shape"):
        m.report(np.ones((2, 8, 8)), np.ones((3, 8, 8)))
    with pytest.raises(ValueError, match="3-D"):
        m.asam(np.ones((2, 3)), np.ones((2, 3)))


def test_nan_raises():
    t = np.ones((2, 2, 2))
    z = t.copy()
    z[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.nmse(z, t)
    with pytest.raises(ValueError, match="Z_true"):
        m.asam(t, z)


# ----------------------------------------------------------------------------- maps
def test_relative_error_map_hand():
    # pixel (0,0): sum Z = 1+2 = 3, sum Zt = 1+1 = 2 -> (3-2)/2 = 0.5
    # pixel (0,1): sum Zt = 0 -> NaN
    z = np.array([[[1.0, 5.0]], [[2.0, 0.0]]])
    t = np.array([[[1.0, 0.0]], [[1.0, 0.0]]])
    out = m.relative_error_map(z, t)
    assert out[0, 0] == pytest.approx(0.5)
    assert np.isnan(out[0, 1])


def test_spectral_variability_hand():
    # 3x3 image, 2 channels: every spectrum (1,0) except the centre (0,1).
    # corner: neighbours = 2 edges (angle 0) + centre (pi/2) -> pi/6
    # edge:   neighbours = 4 (angle 0) + centre (pi/2)      -> pi/10
    # centre: 8 neighbours at pi/2                           -> pi/2
    z = np.zeros((2, 3, 3))
    z[0] = 1.0
    z[:, 1, 1] = (0.0, 1.0)
    c, e = math.pi / 6, math.pi / 10
    expected = np.array([[c, e, c], [e, math.pi / 2, e], [c, e, c]])
    np.testing.assert_allclose(m.spectral_variability(z), expected, atol=1e-12)


def test_spectral_variability_brute_force():
    rng = _rng(9)
    z = rng.random((7, 4, 6))
    z[:, 2, 3] = 0.0  # a zero spectrum: pi/2 to its neighbours
    M, N = z.shape[1:]

    def ang(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 and nb == 0:
            return 0.0
        if na == 0 or nb == 0:
            return math.pi / 2
        return math.acos(min(1.0, max(-1.0, a @ b / na / nb)))

    ref = np.zeros((M, N))
    for i in range(M):
        for j in range(N):
            vals = [
                ang(z[:, i, j], z[:, i + di, j + dj])
                for di in (-1, 0, 1)
                for dj in (-1, 0, 1)
                if (di, dj) != (0, 0) and 0 <= i + di < M and 0 <= j + dj < N
            ]
            ref[i, j] = np.mean(vals)
    np.testing.assert_allclose(m.spectral_variability(z), ref, rtol=1e-12, atol=1e-12)


def test_spectral_variability_single_pixel_nan():
    assert np.isnan(m.spectral_variability(np.ones((3, 1, 1)))[0, 0])
