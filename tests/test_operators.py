import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

import xfusion as xf
from xfusion.operators import (
    Chain,
    EnergyRebin,
    Exposure,
    ForwardModel,
    PSFConvolution,
    SpatialMatrix,
    SpatialRebin,
    SpectralResponse,
)
from xfusion.testing import adjoint_error, assert_adjoint

from .conftest import tiny_problem

SHAPES = [(6, 9, 12), (5, 8, 7)]  # even and odd sizes


def _psf(k=5, seed=1):
    rng = np.random.default_rng(seed)
    p = rng.random((k, k))  # asymmetric: convolution and correlation differ
    return p / p.sum()


def operators(shape):
    L, M, N = shape
    rng = np.random.default_rng(0)
    ops = [
        Exposure(1e3, 1 + rng.random(L), shape),
        Exposure(1e3, 1 + rng.random(shape), shape),
        SpectralResponse(rng.random((3, L)) / L, (M, N)),
        PSFConvolution(_psf(), shape),
        PSFConvolution(np.stack([_psf(seed=1 + (e >= L // 2)) for e in range(L)]), shape),
    ]
    if M % 2 == 0 and N % 2 == 0:
        ops.append(SpatialRebin(shape, 2, 2))
    if M % 3 == 0 and N % 3 == 0:
        ops.append(SpatialRebin(shape, 3, 3))
        ops.append(SpatialMatrix.from_operator(Chain([PSFConvolution(_psf(), shape),
                                                      SpatialRebin(shape, 3, 3)])))
    if L % 2 == 0:
        ops.append(EnergyRebin(shape, 2))
    return ops


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_operator_is_adjoint(shape, dtype):
    for op in operators(shape):
        assert_adjoint(op, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [{}, {"psf_energy": True}, {"vignetting": True}])
@pytest.mark.parametrize("spatial", ["fft", "dense", "separable"])
def test_composed_models_are_adjoint(dtype, kw, spatial):
    if spatial != "fft" and kw.get("psf_energy"):
        pytest.skip("dense path needs an energy-independent PSF")
    ds = tiny_problem(**kw)
    model = ForwardModel.from_dataset(ds, spatial=spatial)
    assert_adjoint(model.op_X, dtype=dtype)
    assert_adjoint(model.op_Y, dtype=dtype)


def test_odd_sizes_composed():
    ds = tiny_problem(L=15, l=5, M=15, N=9, v=3)
    model = xf.forward_model(ds)
    assert_adjoint(model.op_Y)
    assert_adjoint(model.op_X)


def test_adjoint_test_detects_a_wrong_adjoint():
    op = PSFConvolution(_psf(), (4, 9, 9))
    err = adjoint_error(op, forward=op.forward, adjoint=op.forward)  # convolution != correlation
    assert err > 1e-3
    with pytest.raises(AssertionError):
        assert_adjoint(op, forward=op.forward, adjoint=op.forward)


def test_psf_is_true_convolution_with_zero_boundary():
    psf = _psf(5)
    z = np.random.default_rng(2).random((3, 11, 8))
    out = PSFConvolution(psf, z.shape).forward(z)
    ref = np.stack([ndimage.convolve(s, psf, mode="constant", cval=0.0) for s in z])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)


def test_dense_equals_fft():
    ds = tiny_problem()
    z = ds.Z_true.values
    a = ForwardModel.from_dataset(ds, spatial="dense").mu_Y(z)
    b = ForwardModel.from_dataset(ds, spatial="fft").mu_Y(z)
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_rebin_sums_blocks():
    z = np.arange(2 * 6 * 4, dtype=float).reshape(2, 6, 4)
    out = SpatialRebin(z.shape, 3, 2).forward(z)
    assert out.shape == (2, 2, 2)
    assert out[1, 1, 0] == z[1, 3:6, 0:2].sum()
    assert EnergyRebin(z.shape, 2).forward(z)[0, 0, 0] == z[0, 0, 0] + z[1, 0, 0]


def test_rebin_refuses_non_multiple():
    with pytest.raises(ValueError, match="not a whole number"):
        SpatialRebin((2, 7, 6), 3, 3)


@pytest.mark.parametrize("chunks", [(4, 9, 12), (3, 9, 12), (5, 9, 6), (7, 3, 6)])
def test_dask_equals_numpy(chunks):
    ds = tiny_problem()
    z = ds.Z_true.values
    model = ForwardModel.from_dataset(ds, spatial="fft")
    zd = da.from_array(z, chunks=chunks)
    for f in (model.mu_X, model.mu_Y):
        np.testing.assert_allclose(f(zd).compute(), f(z), rtol=1e-10, atol=1e-14)
    rX, rY = model.mu_X(z), model.mu_Y(z)
    np.testing.assert_allclose(model.adjoint_X(da.from_array(rX, chunks=(2, 3, 6))).compute(),
                               model.adjoint_X(rX), rtol=1e-10)
    np.testing.assert_allclose(model.adjoint_Y(da.from_array(rY, chunks=(5, 3, 2))).compute(),
                               model.adjoint_Y(rY), rtol=1e-10)


def test_dask_adjoints_keep_the_cube_chunks():
    """The adjoints of chunked counts come out chunked exactly like Z: one output block per
    input block (``da.repeat`` used to cut each chunk of the rebinning adjoint into ~v × v
    pieces, which made the 128² benchmark 90× slower than numpy)."""
    ds = tiny_problem()
    L, M, N = ds.Z_true.shape
    model = ForwardModel.from_dataset(ds, spatial="fft")
    vM, vN = model.rebin.v[1], model.rebin.v[2]
    zch = ((7, L - 7), (M,), (N,))
    model.set_chunks(zch)
    rX, rY = model.mu_X(ds.Z_true.values), model.mu_Y(ds.Z_true.values)
    gX = model.adjoint_X(da.from_array(rX, chunks=(rX.shape[0], M, N)))
    gY = model.adjoint_Y(da.from_array(rY, chunks=(zch[0], (M // vM,), (N // vN,))))
    assert gX.chunks == zch and gY.chunks == zch
    assert len(dict(gY.__dask_graph__())) < 20
    np.testing.assert_allclose(gX.compute(), model.adjoint_X(rX), rtol=1e-10)
    np.testing.assert_allclose(gY.compute(), model.adjoint_Y(rY), rtol=1e-10)
    y = da.from_array(rY, chunks=(5, 1, 2))
    up = SpatialRebin((L, M, N), vM, vN).adjoint(y)
    assert up.chunks == ((5,) * (L // 5) + ((L % 5,) if L % 5 else ()),
                         (vM,) * (M // vM), (2 * vN,) * (N // (2 * vN)))
    np.testing.assert_array_equal(up.compute(), rY.repeat(vM, 1).repeat(vN, 2))

def test_float32_stays_float32(problem):
    mx, my = problem.hifred.forward(problem.Z_true.astype(np.float32))
    assert mx.dtype == np.float32 and my.dtype == np.float32


def test_forward_matches_direct_formula(problem):
    ds = problem
    Z = ds.Z_true.values
    tX, tY = ds.X.exposure, ds.Y.exposure
    ax, ay = ds.arf_X.values, ds.arf_Y.values
    mx_ref = np.einsum("ce,eyx->cyx", ds.response_X.values, tX * ax[:, None, None] * Z)
    conv = np.stack([ndimage.convolve(s, ds.psf_Y.values, mode="constant")
                     for s in tY * ay[:, None, None] * Z])
    L, M, N = Z.shape
    my_ref = conv.reshape(L, M // 3, 3, N // 3, 3).sum((2, 4))
    mx, my = ds.hifred.forward(ds.Z_true)
    np.testing.assert_allclose(mx.values, mx_ref, rtol=1e-10)
    np.testing.assert_allclose(my.values, my_ref, rtol=1e-10)
    assert mx.dims == ds.X.dims and my.dims == ds.Y.dims


def test_forward_refuses_wrong_shape(problem):
    with pytest.raises(xf.ProblemError, match="shape"):
        problem.hifred.forward(np.zeros((3, 3, 3)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [{}, {"psf_energy": True}, {"vignetting": True}, {"mask": True}])
@pytest.mark.parametrize("spatial", ["fft", "dense", "separable"])
def test_sparse_forward_and_summed_adjoint(dtype, kw, spatial):
    if spatial != "fft" and kw.get("psf_energy"):
        pytest.skip("dense path needs an energy-independent PSF")
    ds = tiny_problem(**{k: v for k, v in kw.items() if k != "mask"})
    if kw.get("mask"):
        mask = np.ones((ds.sizes["y_coarse"], ds.sizes["x_coarse"]), bool)
        mask[1, 2] = False
        ds = ds.assign_coords(observed_Y=(("y_coarse", "x_coarse"), mask))
    model = ForwardModel.from_dataset(ds, spatial=spatial)
    rng = np.random.default_rng(3)
    z = np.zeros(model.shape, dtype)
    idx = np.sort(rng.choice(z.size, 23, replace=False))
    vals = rng.random(23).astype(dtype)
    z.flat[idx] = vals
    got = model.forward_sparse(idx, vals)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    if spatial == "fft":
        assert got is None  # no column form: the caller runs the full forward
    else:
        for a, b in zip(got, model.forward(z), strict=True):
            assert a.dtype == dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
    rX = rng.standard_normal(model.shape_X).astype(dtype)
    rY = rng.standard_normal(model.shape_Y).astype(dtype)
    ref = model.adjoint_X(rX) + model.adjoint_Y(rY)
    out = model.adjoint(rX, rY)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.abs(ref).max())
    lazy = model.adjoint(da.from_array(rX, chunks=(3, 9, 6)), da.from_array(rY, chunks=(8, 3, 4)))
    np.testing.assert_allclose(lazy.compute(), ref, rtol=tol, atol=tol * np.abs(ref).max())


def _two_gaussians(k=7):
    a = xf.kernels.gaussian_psf(1.0, size=k)
    b = xf.kernels.gaussian_psf(2.2, size=k)
    return 0.7 * a + 0.3 * b  # rank 2


@pytest.mark.parametrize("v", [1, 3])
@pytest.mark.parametrize("psf", ["gauss", "two", "asym"])
def test_separable_equals_fft_and_dense(v, psf):
    from xfusion.operators.separable import KroneckerSpatial

    shape = (5, 12, 9)
    k = {"gauss": xf.kernels.gaussian_psf(1.3, size=5), "two": _two_gaussians(),
         "asym": np.outer([1.0, 2.0, 4.0, 1.0, 0.5], [0.2, 1.0, 3.0])}[psf]
    k = k / k.sum()
    op = KroneckerSpatial.from_psf(k, shape, v, v if 9 % v == 0 else 1)
    vN = v if 9 % v == 0 else 1
    ref = Chain([PSFConvolution(k, shape), SpatialRebin(shape, v, vN)])
    assert op is not None and op.rank == (2 if psf == "two" else 1)
    z = np.random.default_rng(0).random(shape)
    np.testing.assert_allclose(op.forward(z), ref.forward(z), rtol=1e-12, atol=1e-15)
    y = np.random.default_rng(1).random(op.shape_out)
    np.testing.assert_allclose(op.adjoint(y), ref.adjoint(y), rtol=1e-12, atol=1e-15)
    assert_adjoint(op)
    # squared: the entry-wise square of the matrix (Jacobi curvature)
    dense = SpatialMatrix.from_operator(ref)
    np.testing.assert_allclose(op.squared().forward(z), dense.squared().forward(z),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(op.dense_T(np.float64), dense.A.T, atol=1e-15)
    zd = da.from_array(z, chunks=(2, 6, 9))
    np.testing.assert_allclose(op.forward(zd).compute(), ref.forward(z), rtol=1e-12)


def test_separable_is_refused_for_a_kernel_of_high_rank():
    from xfusion.operators.separable import KroneckerSpatial

    k = np.random.default_rng(0).random((5, 5))
    assert KroneckerSpatial.from_psf(k / k.sum(), (3, 10, 10)) is None
    ds = tiny_problem(psf_energy=True)
    with pytest.raises(ValueError, match="separable"):
        ForwardModel.from_dataset(ds, spatial="separable")
    assert ForwardModel.from_dataset(tiny_problem()).spatial_method == "separable"


def test_unknown_spatial_method_and_bad_kronecker_factors_are_refused():
    from xfusion.operators.separable import KroneckerSpatial

    with pytest.raises(ValueError, match="spatial must be 'auto', 'dense', 'fft' or 'separable'"):
        ForwardModel.from_dataset(tiny_problem(), spatial="fast")
    with pytest.raises(ValueError, match=r"need A \(r, m, M\) and B \(r, n, N\)"):
        KroneckerSpatial(np.ones((1, 3, 9)), np.ones((2, 3, 9)), 4)
