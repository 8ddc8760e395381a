"""The solver's fused element-wise step pieces: compiled loops against the array expressions."""

from __future__ import annotations

import numpy as np
import pytest

from xfusion import _step_ops as S
from xfusion.starlet import _jit as J

pytest.importorskip("numba")


def _operands(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(dtype)
    y = (x + 0.1 * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    P = (0.05 + rng.random(shape)).astype(dtype)
    return x, y, g, P


def _both(monkeypatch, fn, *args):
    monkeypatch.setenv("XFUSION_JIT", "0")
    assert not J.available()
    ref = fn(*args)
    monkeypatch.setenv("XFUSION_JIT", "1")
    assert J.available()
    return fn(*args), ref


@pytest.mark.parametrize("shape", [(1,), (7, 3, 5), (300, 17, 19)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_step_pieces_equal_the_expressions(shape, dtype, monkeypatch):
    monkeypatch.setattr(S, "_BLOCK", 64)            # several blocks on the thread pool
    x, y, g, P = _operands(shape, dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    got, ref = _both(monkeypatch, S.scaled_step, y, g, P, 0.37)
    assert got.dtype == ref.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    (dd, gd), (dd0, gd0) = _both(monkeypatch, S.step_products, x, y, g, P)
    assert dd == pytest.approx(dd0, rel=1e-6 if dtype == np.float32 else 1e-12)
    assert gd == pytest.approx(gd0, rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-12)
    got, ref = _both(monkeypatch, S.momentum_point, x, y, 0.63, 0.1)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    assert np.all(got >= 0.1 * x * (1 - tol))  # floored where the extrapolation dips


def test_step_pieces_without_metric_and_on_awkward_input(monkeypatch):
    x, y, g, P = _operands((20, 6, 5), np.float64, seed=1)
    v = S.scaled_step(y, g, None, 0.5)
    np.testing.assert_allclose(v, y - 0.5 * g)
    dd, gd = S.step_products(x, y, g, None)
    assert dd == pytest.approx(float(((x - y) ** 2).sum()))
    assert gd == pytest.approx(float((g * (x - y)).sum()))
    # a strided view and mixed dtypes take the expression path, same values
    xs = x[:, ::2]
    v = S.scaled_step(xs, g[:, ::2], P[:, ::2], 0.5)
    np.testing.assert_allclose(v, xs - 0.5 * P[:, ::2] * g[:, ::2])
    dd, _ = S.step_products(x.astype(np.float32), y, g, P)
    assert dd == pytest.approx(float(((x - y) ** 2 / P).sum()), rel=1e-6)


def test_step_pieces_on_dask_equal_numpy():
    da = pytest.importorskip("dask.array")
    x, y, g, P = _operands((40, 9, 8), np.float64, seed=2)
    c = [da.from_array(a, chunks=(15, 9, 4)) for a in (x, y, g, P)]
    np.testing.assert_allclose(S.scaled_step(c[1], c[2], c[3], 0.2).compute(),
                               S.scaled_step(y, g, P, 0.2), rtol=1e-12, atol=1e-14)
    dd, gd = S.step_products(*c)
    dd0, gd0 = S.step_products(x, y, g, P)
    assert dd == pytest.approx(dd0, rel=1e-12) and gd == pytest.approx(gd0, rel=1e-12)
    np.testing.assert_allclose(S.momentum_point(c[0], c[1], 0.4, 0.1).compute(),
                               S.momentum_point(x, y, 0.4, 0.1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_em_metric_equals_the_expression(dtype, monkeypatch):
    monkeypatch.setattr(S, "_BLOCK", 50)
    x, _, _, c = _operands((30, 7, 6), dtype, seed=3)
    x[0, 0] = -1.0                                   # below the floor
    got, ref = _both(monkeypatch, S.em_metric, x, c, 1e-3, dtype)
    assert got.dtype == ref.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert got[0, 0, 0] == pytest.approx(1e-3 / c[0, 0, 0], rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_abs_equals_numpy(dtype, monkeypatch):
    import dask.array as da

    x = (np.random.default_rng(4).standard_normal((70, 30, 40)) * 3).astype(dtype)
    ref = float(np.abs(x).mean(dtype=np.float64))
    assert S.mean_abs(x) == pytest.approx(ref, rel=1e-12)
    assert S.mean_abs(x[:, ::2]) == pytest.approx(float(np.abs(x[:, ::2]).mean()), rel=1e-6)
    assert S.mean_abs(da.from_array(x, chunks=20)) == pytest.approx(ref, rel=1e-12)
    monkeypatch.setenv("XFUSION_JIT", "0")
    assert S.mean_abs(x) == pytest.approx(ref, rel=1e-12)
