"""Starlet transforms (xfusion.starlet): reconstruction, adjoints, dask, prox helpers."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import minimize_scalar

from xfusion import starlet as W
from xfusion.halo import is_dask
from xfusion.starlet import transforms as starlet_transforms
from xfusion.testing import adjoint_error, assert_adjoint

da = pytest.importorskip("dask.array")

BOUNDARIES = ("mirror", "reflect")
# odd, even, and smaller than the dilated kernel of J = 3 (span 17)
SHAPES = [(13, 9, 10), (12, 8, 8), (7, 5, 5), (3, 2, 1)]


def transforms(boundary="mirror", n_threads=None):
    return [W.Starlet2D(2, boundary, n_threads), W.Starlet2D(3, boundary, n_threads),
            W.Starlet1D(3, boundary, n_threads), W.Starlet1D(1, boundary, n_threads),
            W.Starlet2D1D(2, 3, boundary, n_threads), W.Starlet2D1D(1, 1, boundary, n_threads)]


def ids(Ts):
    return [repr(T) for T in Ts]


def rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture
def small_blocks(monkeypatch):
    """Force the numpy driver to cut energy into many blocks (halo logic, threads)."""
    monkeypatch.setattr(starlet_transforms, "_BLOCK_ELEMS", 150)


# -- definition ----------------------------------------------------------------------------------
def reference_forward(z, axes, J, mode):
    """Textbook à trous cascade with scipy.ndimage (same boundary semantics)."""
    out, c = [], z
    for j in range(1, J + 1):
        k = np.zeros(4 * 2 ** (j - 1) + 1)
        k[:: 2 ** (j - 1)] = W.B3_KERNEL
        n = c
        for ax in axes:
            n = ndi.correlate1d(n, k, axis=ax, mode=mode)
        out.append(c - n)
        c = n
    out.append(c)
    return np.stack(out)


@pytest.mark.parametrize("mode", BOUNDARIES)
def test_forward_matches_textbook_cascade(mode):
    z = rand((40, 23, 20))
    np.testing.assert_allclose(W.Starlet2D(3, mode).forward(z),
                               reference_forward(z, (1, 2), 3, mode), atol=1e-12)
    np.testing.assert_allclose(W.Starlet1D(3, mode).forward(z),
                               reference_forward(z, (0,), 3, mode), atol=1e-12)
    ref = np.stack([reference_forward(b, (0,), 3, mode)
                    for b in reference_forward(z, (1, 2), 2, mode)])
    np.testing.assert_allclose(W.Starlet2D1D(2, 3, mode).forward(z), ref, atol=1e-12)


def test_layout_and_coarse_index():
    z = rand((20, 12, 11))
    T = W.Starlet2D(2)
    c = T.forward(z)
    assert c.shape == T.coeff_shape(z.shape) == (3, 20, 12, 11)
    assert T.coarse_index == 2
    # coarse = last smoothing: smooth, so much smaller variance than the finest detail
    assert c[T.coarse_index].std() < 0.5 * c[0].std()
    T3 = W.Starlet2D1D(2, 3)
    assert T3.coeff_shape((20, 12, 11)) == (3, 4, 20, 12, 11)
    assert T3.coarse_index == (2, 3)
    assert W.Starlet1D(3).coeff_shape((20, 12, 11)) == (4, 20, 12, 11)
    assert W.starlet_depth(3) == 14 and W.Starlet2D1D(2, 3).depth() == {0: 14, 1: 6, 2: 6}


def test_noise_gains_match_literature():
    # Starck, Murtagh & Fadili (2010), table of the B3 starlet noise gains
    np.testing.assert_allclose(W.Starlet2D(4).noise_gains[:4], [0.890, 0.201, 0.086, 0.041],
                               atol=1.5e-3)
    np.testing.assert_allclose(W.Starlet1D(4).noise_gains[:4], [0.723, 0.285, 0.177, 0.122],
                               atol=1.5e-3)
    g = W.Starlet2D1D(2, 3).noise_gains
    assert g.shape == (3, 4)
    np.testing.assert_allclose(g[0, 0], 0.890 * 0.723, atol=2e-3)


# -- reconstruction and adjoint ------------------------------------------------------------------
@pytest.mark.parametrize("mode", BOUNDARIES)
@pytest.mark.parametrize("shape", SHAPES)
def test_exact_reconstruction(shape, mode):
    z = rand(shape)
    for T in transforms(mode):
        np.testing.assert_allclose(T.inverse(T.forward(z)), z, atol=1e-12, err_msg=repr(T))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", BOUNDARIES)
@pytest.mark.parametrize("shape", SHAPES)
def test_adjoint_dot_product(shape, mode, dtype):
    for T in transforms(mode):
        assert_adjoint(T, shape, T.coeff_shape(shape), dtype=dtype)


def test_adjoint_is_not_inverse():
    z, T = rand((16, 9, 9)), W.Starlet2D1D(2, 3)
    c = T.forward(z)
    assert np.abs(T.adjoint(c) - z).max() > 0.1
    np.testing.assert_allclose(T.inverse(c), z, atol=1e-12)


def test_starlet2d_on_single_image_and_1d_on_single_spectrum():
    assert_adjoint(W.Starlet2D(3), (17, 12), (4, 17, 12))
    assert_adjoint(W.Starlet1D(3), (30,), (4, 30))
    z = rand((17, 12))
    np.testing.assert_allclose(W.Starlet2D(3).inverse(W.Starlet2D(3).forward(z)), z, atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_blocked_driver_equals_single_block(small_blocks, n_threads, monkeypatch):
    z = rand((61, 6, 7))
    for T in transforms("mirror", n_threads):
        c = T.forward(z)
        y = rand(c.shape, seed=1)
        a = T.adjoint(y)
        f = T.filter(z, lambda i, b, loc: 0.5 * b)
        monkeypatch.setattr(starlet_transforms, "_BLOCK_ELEMS", 1 << 30)
        np.testing.assert_allclose(c, T.forward(z), atol=1e-12, err_msg=repr(T))
        np.testing.assert_allclose(a, T.adjoint(y), atol=1e-12, err_msg=repr(T))
        np.testing.assert_allclose(f, 0.5 * z, atol=1e-12, err_msg=repr(T))
        monkeypatch.setattr(starlet_transforms, "_BLOCK_ELEMS", 150)
        assert adjoint_error(T, z.shape, c.shape) < 1e-12


# -- dtypes and out= -----------------------------------------------------------------------------
def test_float32_in_float32_out_and_int_promoted():
    z = rand((20, 9, 8), np.float32)
    for T in transforms():
        c = T.forward(z)
        assert c.dtype == np.float32
        assert T.inverse(c).dtype == np.float32
        assert T.adjoint(c).dtype == np.float32
        assert T.filter(z, lambda i, b, loc: None).dtype == np.float32
        np.testing.assert_allclose(T.inverse(c), z, atol=1e-5)
    assert W.Starlet2D(1).forward(np.ones((2, 5, 5), int)).dtype == np.float64


def test_out_arguments():
    z = rand((20, 9, 8), np.float32)
    T = W.Starlet2D1D(2, 3)
    c = np.empty(T.coeff_shape(z.shape), np.float32)
    assert T.forward(z, out=c) is c
    zb = np.empty_like(z)
    assert T.inverse(c, out=zb) is zb
    np.testing.assert_allclose(zb, z, atol=1e-5)
    assert T.adjoint(c, out=zb) is zb
    with pytest.raises(ValueError, match="out must be"):
        T.forward(z, out=np.empty(T.coeff_shape(z.shape)))   # float64 for float32 data


# -- filter (fused forward → fn → inverse) -------------------------------------------------------
def test_filter_equals_threshold_then_inverse():
    z = rand((37, 10, 9))
    kmap = np.abs(rand(z.shape, seed=3))
    for T in transforms():
        def shrink(index, band, loc, T=T):
            if index != T.coarse_index:
                W.soft_threshold(band, 0.3 * kmap[loc], out=band)

        c = T.forward(z)
        for idx in np.ndindex(*c.shape[:c.ndim - 3]):
            key = idx[0] if len(idx) == 1 else idx
            if key != T.coarse_index:
                c[idx] = W.soft_threshold(c[idx], 0.3 * kmap)
        np.testing.assert_allclose(T.filter(z, shrink), T.inverse(c), atol=1e-12,
                                   err_msg=repr(T))
        np.testing.assert_allclose(T.filter(z, lambda i, b, loc: None), z, atol=1e-12)


def test_threshold_fast_path_and_l1():
    z = rand((37, 10, 9), np.float32)
    kmap = (0.2 + np.abs(rand(z.shape, seed=3))).astype(np.float32)
    per_energy = np.linspace(0.1, 0.5, z.shape[0]).reshape(-1, 1, 1)
    for T in transforms():
        c = T.forward(z)
        bands = list(np.ndindex(*c.shape[:c.ndim - 3]))
        keys = [i[0] if len(i) == 1 else i for i in bands]
        thr = {k: (0.3 * kmap if n % 3 == 0 else per_energy if n % 3 == 1 else 0.25)
               for n, k in enumerate(keys) if k != T.coarse_index}
        ref_c = c.copy()
        l1 = 0.0
        for idx, k in zip(bands, keys, strict=True):
            if k in thr:
                ref_c[idx] = W.soft_threshold(c[idx], thr[k])
                l1 += float(np.sum(np.abs(ref_c[idx]) * thr[k], dtype=np.float64))
        x, v = T.threshold(z, thr, return_l1=True)
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, T.inverse(ref_c), atol=2e-5, err_msg=repr(T))
        assert v == pytest.approx(l1, rel=1e-4)
        np.testing.assert_allclose(T.threshold(z, thr.get), x, atol=1e-6)
        np.testing.assert_allclose(T.threshold(z, {}), z, atol=1e-5)
        xd = T.threshold(da.from_array(z, chunks=(10, 5, 9)), thr)
        np.testing.assert_allclose(xd.compute(), x, atol=1e-5)
    with pytest.raises(TypeError, match="mapping or a callable"):
        W.Starlet2D(1).threshold(z, 0.5)


# -- dask ----------------------------------------------------------------------------------------
DASK_CASES = [
    (W.Starlet2D(2), (7, 21, 22)),          # energy chunks: map_blocks, no halo
    (W.Starlet2D(2), (30, 8, 9)),           # spatial chunks: halo 6, last chunk == depth
    (W.Starlet2D(3), (13, 5, 22)),          # chunks smaller than the depth: merged first
    (W.Starlet2D(2), (30, (8, 7, 6), 22)),  # a halo reaching the far edge (adjoint rows differ)
    (W.Starlet1D(3), ((16, 14), 21, 22)),
    (W.Starlet1D(3), (30, 5, 6)),           # spatial chunks: map_blocks
    (W.Starlet1D(3), (14, 10, 22)),         # energy chunks: halo 14
    (W.Starlet2D1D(2, 3), (15, 21, 22)),
    (W.Starlet2D1D(2, 3), (30, 7, 11)),
    (W.Starlet2D1D(1, 2), (9, 8, 8)),
]


@pytest.mark.parametrize("T, chunks", DASK_CASES, ids=[f"{T!r}-{c}" for T, c in DASK_CASES])
def test_dask_equals_numpy(T, chunks):
    z = rand((30, 21, 22))
    zd = da.from_array(z, chunks=chunks)
    c = T.forward(z)
    cd = T.forward(zd)
    assert isinstance(cd, da.Array)
    np.testing.assert_allclose(cd.compute(), c, atol=1e-10)
    y = rand(c.shape, seed=1)
    yd = da.from_array(y, chunks=(1,) * (y.ndim - 3) + chunks)
    np.testing.assert_allclose(T.adjoint(yd).compute(), T.adjoint(y), atol=1e-10)
    np.testing.assert_allclose(T.inverse(yd).compute(), T.inverse(y), atol=1e-10)

    gain = 1 + rand(z.shape, seed=2) ** 2          # a per-voxel map, sliced by loc

    def fn(i, b, loc):
        return np.where(np.abs(b) > 0.2, b, 0) * gain[loc]

    np.testing.assert_allclose(T.filter(zd, fn).compute(), T.filter(z, fn), atol=1e-10)


def test_dask_float32():
    z = rand((20, 9, 9), np.float32)
    T = W.Starlet2D1D(2, 1)
    cd = T.forward(da.from_array(z, chunks=(5, 9, 9)))
    assert cd.dtype == np.float32 and cd.compute().dtype == np.float32
    np.testing.assert_allclose(cd.compute(), T.forward(z), atol=1e-6)


# -- prox helpers --------------------------------------------------------------------------------
def test_soft_threshold_is_the_prox_of_l1():
    v = np.linspace(-3, 3, 41)
    t = 0.7
    p = W.soft_threshold(v, t)
    for vi, pi in zip(v, p, strict=True):
        res = minimize_scalar(lambda x, vi=vi: 0.5 * (x - vi) ** 2 + t * abs(x),
                              bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
        assert abs(res.x - pi) < 1e-6
    # Moreau: prox_{t|.|}(v) + t * proj_{[-1, 1]}(v / t) = v
    np.testing.assert_allclose(p + t * np.clip(v / t, -1, 1), v, atol=1e-15)


def test_soft_threshold_arrays_dtype_inplace_dask():
    w = rand((4, 5), np.float32)
    t = np.abs(rand((1, 5), seed=2))          # broadcast, float64 thresholds
    ref = np.sign(w) * np.maximum(np.abs(w) - t, 0)
    out = W.soft_threshold(w, t)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-6)
    w2 = w.copy()
    assert W.soft_threshold(w2, t, out=w2) is w2
    np.testing.assert_allclose(w2, ref, atol=1e-6)
    assert W.soft_threshold(w, np.float64(0.5)).dtype == np.float32
    wd = W.soft_threshold(da.from_array(w, chunks=2), 0.5)
    np.testing.assert_allclose(wd.compute(), W.soft_threshold(w, 0.5), atol=1e-7)
    with pytest.raises(ValueError, match="thresh"):
        W.soft_threshold(w, -0.1)
    with pytest.raises(ValueError, match="thresh"):
        W.soft_threshold(w, -t)


@pytest.mark.parametrize("n", [1, 2, 7, 10, 1001, 4096])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_median_equals_numpy(n, dtype):
    a = (np.random.default_rng(n).standard_normal(n) * 100).astype(dtype)
    a[: n // 3] = a[0]                                  # ties
    assert W.median(a) == pytest.approx(float(np.median(a)), rel=1e-6)
    assert W.median(a.reshape(1, -1)) == pytest.approx(float(np.median(a)), rel=1e-6)
    if np.issubdtype(dtype, np.floating):
        b = a.copy()
        b[n // 2] = np.nan
        assert np.isnan(W.median(b)) and np.isnan(np.median(b))
    assert np.isnan(W.median(np.array([])))


def test_mad_sigma():
    rng = np.random.default_rng(0)
    w = 2.0 * rng.standard_normal(200_000)
    w[:1000] = 1e3                                  # a few large "signal" coefficients
    assert abs(W.mad_sigma(w) - 2.0) < 0.03
    s = W.mad_sigma(np.stack([w, 3 * w]).reshape(2, 400, 500), axis=(1, 2))
    np.testing.assert_allclose(s, [2.0, 6.0], rtol=0.02)
    # noise of the finest starlet scale → noise of the data through the noise gains
    T = W.Starlet2D(2)
    z = rng.standard_normal((4, 64, 64))
    sig = W.mad_sigma(T.forward(z)[0]) / T.noise_gains[0]
    assert abs(sig - 1.0) < 0.03


def test_brightness_k_limits_monotone_and_scale_invariant():
    c = np.concatenate([np.zeros(1), np.logspace(-6, 6, 200)])
    k = W.brightness_k(c, 0.5, 3.0)
    assert k[0] == pytest.approx(3.0)                        # empty voxel: dimmest
    assert k[1] == pytest.approx(3.0, abs=1e-3)              # dim → k_max
    assert k[-1] == pytest.approx(0.5, abs=1e-3)             # bright → k_min
    assert np.all(np.diff(k) <= 1e-12)                       # brighter → smaller k
    med = np.median(c[c > 0])
    assert W.brightness_k(np.append(c, med), 0.5, 3.0)[-1] == pytest.approx(1.75)
    for a in (1e-8, 3.0, 1e6, -2.0):
        np.testing.assert_allclose(W.brightness_k(a * c), k, rtol=1e-10, atol=1e-12)
    cube = np.abs(rand((6, 5, 5))).astype(np.float32)
    kc = W.brightness_k(cube)
    assert kc.shape == cube.shape and kc.dtype == np.float32
    np.testing.assert_allclose(W.brightness_k(1e4 * cube), kc, rtol=1e-5)
    np.testing.assert_array_equal(W.brightness_k(np.zeros(4)), 3.0)
    with pytest.raises(ValueError, match="k_min"):
        W.brightness_k(c, 3.0, 0.5)


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("J", [0, -1, 1.5, True, None])
def test_bad_J(J):
    for make in (W.Starlet2D, W.Starlet1D):
        with pytest.raises(ValueError, match="J must be an integer >= 1"):
            make(J)
    with pytest.raises(ValueError, match="J2 must be"):
        W.Starlet2D1D(J, 2)
    with pytest.raises(ValueError, match="J1 must be"):
        W.Starlet2D1D(2, J)


def test_bad_boundary_and_shapes():
    with pytest.raises(ValueError, match="boundary must be one of"):
        W.Starlet2D(2, boundary="periodic")
    with pytest.raises(ValueError, match=r"\(energy, y, x\)"):
        W.Starlet2D1D(2, 3).forward(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="at least 2 axes"):
        W.Starlet2D(2).forward(np.zeros(5))
    with pytest.raises(ValueError, match="expected coefficients"):
        W.Starlet2D(2).inverse(np.zeros((2, 4, 5, 5)))
    with pytest.raises(ValueError, match="expected coefficients"):
        W.Starlet2D1D(2, 3).adjoint(np.zeros((3, 3, 4, 5, 5)))


def test_nested_use_inside_filter_callback_does_not_deadlock(small_blocks):
    z = rand((40, 6, 6))
    T = W.Starlet2D1D(1, 2, n_threads=2)
    inner = W.Starlet1D(2, n_threads=2)

    def fn(index, band, loc):
        return inner.inverse(inner.forward(band))     # runs serially inside pool threads

    np.testing.assert_allclose(T.filter(z, fn), z, atol=1e-12)


def test_subsample_is_regular_and_avoids_the_axes():
    a = np.arange(2400 * 45 * 45, dtype=np.float64).reshape(2400, 45, 45)
    s = W.subsample(a, n=1 << 18)
    step = int(s[1] - s[0])
    assert s[0] == 0 and np.all(np.diff(s) == step)
    assert all(d % step for d in a.shape)  # never lines up with rows or slices
    assert (1 << 17) <= s.size <= a.size // 2
    small = np.arange(100.0).reshape(10, 10)
    np.testing.assert_array_equal(W.subsample(small), small.ravel())
    # the sampled MAD agrees with the exact one on Gaussian noise
    w = np.random.default_rng(3).normal(0, 2.0, (1200, 45, 45))
    exact = np.median(np.abs(w - np.median(w))) / 0.6745
    assert W.mad_sigma(w) == pytest.approx(exact, rel=1e-2)


def test_lattice_sample_is_lazy_and_regular():
    da = pytest.importorskip("dask.array")
    a = np.random.default_rng(0).random((600, 40, 40))
    s = W.lattice_sample(a, n=1 << 14)
    assert (1 << 12) <= s.size <= 1 << 16 and np.shares_memory(s, a)
    d = W.lattice_sample(da.from_array(a, chunks=(100, 20, 20)), n=1 << 14)
    assert is_dask(d)
    np.testing.assert_array_equal(d.compute(), s)
    per = W.lattice_sample(a, n=1 << 10, keep_leading=True)
    assert per.shape[0] == 600
    assert W.lattice_sample(a[:2, :3, :4]).shape == (2, 3, 4)  # small: whole


def test_brightness_k_on_dask_with_reference_stays_lazy():
    da = pytest.importorskip("dask.array")
    c = np.random.default_rng(1).lognormal(size=(30, 16, 16)).astype(np.float32)
    ref = float(np.median(c))
    k = W.brightness_k(da.from_array(c, chunks=(7, 16, 5)), 4.0, 8.0, reference=ref)
    assert is_dask(k)
    np.testing.assert_allclose(k.compute(), W.brightness_k(c, 4.0, 8.0), rtol=1e-6)
