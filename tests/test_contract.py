"""The functional contract, the solver's setup/step/run, the step strategies and the options
object with its builders."""

import math

import numpy as np
import pytest

import xfusion as xf
from xfusion.builders import BUILDERS, build
from xfusion.functionals import Functional, Positivity, Sobolev, Zero
from xfusion.likelihood import PoissonLikelihood
from xfusion.options import REGULARIZERS, FuseOptions, OptionError
from xfusion.parametrization import FullCube
from xfusion.regularizers import StarletL1
from xfusion.solver import FISTA, RelativeChange
from xfusion.starlet import starlet_bands
from xfusion.steps import EMBacktracking, QuadraticBacktracking, step_size

from .conftest import consistent_problem


def _starlet(shape=(16, 12, 12), k=2.0):
    return StarletL1(starlet_bands("2d1d", 1, 1, shape), k=k, adapt_iter=3)


def test_base_functional_says_what_it_lacks():
    f = Functional()
    assert not f.has_grad and not f.has_prox and f.frozen and not f.hold_metric
    with pytest.raises(NotImplementedError, match="value"):
        f.value(np.zeros(3))
    with pytest.raises(NotImplementedError, match="not differentiable"):
        f.grad(np.zeros(3))
    with pytest.raises(NotImplementedError, match="no prox"):
        f.prox(np.zeros(3), 1.0)
    assert f.state() == {} and f.lipschitz() is None and f.diag() is None


def test_positivity_is_an_indicator_for_any_x():
    p = Positivity()
    assert p.value(np.array([0.0, 1.0])) == 0.0
    assert p.value(np.array([-1e-9, 1.0])) == math.inf
    np.testing.assert_array_equal(p.prox(np.array([-1.0, 2.0]), 0.5, np.ones(2)), [0.0, 2.0])
    z = Zero()
    v = np.array([-1.0, 2.0])
    assert z.value(v) == 0.0 and z.prox(v, 1.0) is v


def test_every_declared_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    W = rng.random((2, 7, 9))
    for f in (Sobolev(0.3), Zero()):
        assert f.has_grad
        d = rng.standard_normal(W.shape)
        h = 1e-6
        fd = (f.value(W + h * d) - f.value(W - h * d)) / (2 * h)
        assert abs(fd - float(np.vdot(np.asarray(f.grad(W)) + 0 * W, d))) <= 1e-6 * max(1, abs(fd))


def test_starlet_value_is_the_analysis_norm_for_any_x():
    rng = np.random.default_rng(2)
    shape = (16, 12, 12)
    reg = _starlet(shape)
    v = rng.random(shape) + 0.1
    assert reg.value(v) == 0.0                       # no thresholds yet
    P = rng.random(shape) + 0.5
    x = reg.prox(v, 0.7, P)
    # value of an arbitrary x: sum_b g_b base |W_b x| / (alpha P-bar)
    y = rng.random(shape)
    c = reg.bands.forward(y)
    g = reg.bands.noise_gains
    want = sum(g[b] * np.sum(np.abs(c[b]) * reg.base) for b in reg.bands.detail_bands)
    assert reg.value(y) == pytest.approx(want / reg.mean_metric, rel=1e-10)
    assert reg.value(y) > 0                          # not silently 0 off the last prox output
    # the objective counts the l1 of the thresholded coefficients at the prox output
    ct = reg.bands.forward(v)
    soft = [np.sign(ct[b]) * np.maximum(np.abs(ct[b]) - g[b] * reg.base, 0)
            for b in reg.bands.detail_bands]
    surrogate = sum(g[b] * np.sum(np.abs(s) * reg.base)
                    for b, s in zip(reg.bands.detail_bands, soft, strict=True)) / reg.mean_metric
    assert reg.prox_value(x) == pytest.approx(surrogate, rel=1e-8)
    assert reg.prox_value(x.copy()) == pytest.approx(reg.value(x), rel=1e-12)


def test_starlet_value_on_dask_equals_numpy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(3)
    shape = (16, 12, 12)
    reg = _starlet(shape)
    reg.prox(rng.random(shape) + 0.1, 1.0, rng.random(shape) + 0.5)
    y = rng.random(shape)
    for chunks in ((8, 12, 12), (16, 6, 6), (5, 7, 12)):
        assert reg.value(da.from_array(y, chunks=chunks)) == pytest.approx(reg.value(y),
                                                                            rel=1e-10)


def _solver(ds, reg="none", **kw):
    param = FullCube(xf.forward_model(ds))
    lik = PoissonLikelihood(param, ds.X.values, ds.Y.values, dtype=np.float64)
    prox = Positivity() if reg == "none" else _starlet(param.shape)
    return FISTA(lik, prox, stop=RelativeChange(1e-14), max_iter=12, **kw), param


@pytest.mark.parametrize("reg", ["none", "starlet"])
def test_stepping_by_hand_equals_run(reg):
    ds = consistent_problem(L=16, l=4, M=12, N=12, counts=80, noise=True)
    x0 = np.asarray(xf.fusion.initial_guess(ds), np.float64)
    a, _ = _solver(ds, reg)
    st_a = a.run(x0)
    b, _ = _solver(ds, reg)
    st_b = b.setup(x0)
    rels = [b.step() for _ in range(12)]
    assert st_b.iteration == st_a.iteration == 12 and len(rels) == 12
    np.testing.assert_array_equal(st_a.x, st_b.x)
    assert st_a.history == st_b.history


def test_callbacks_run_in_order_and_finish_once():
    ds = consistent_problem(L=16, l=4, M=12, N=12, counts=80, noise=True)
    seen = []

    class CB:
        def __init__(self, name):
            self.name = name

        def __call__(self, st, rel):
            seen.append((self.name, st.iteration))

        def finish(self, st):
            seen.append((self.name, "end"))

    s, _ = _solver(ds, callbacks=[CB("a"), CB("b")])
    s.run(np.asarray(xf.fusion.initial_guess(ds), np.float64))
    assert seen[:4] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert seen[-2:] == [("a", "end"), ("b", "end")]


def test_step_strategies():
    em, q, none = step_size("em"), step_size("jacobi"), step_size(None)
    assert isinstance(em, EMBacktracking) and isinstance(q, QuadraticBacktracking)
    assert em.uses_metric and em.positive_momentum and q.uses_metric and not none.uses_metric
    # quadratic bound: f_new ≤ f_y + gd + dd / 2s
    assert q.accept(0.8, 1.0, -0.2, 0.1, 1.0, 0.0) and not q.accept(0.9, 1.0, -0.2, 0.1, 1.0, 0.0)
    # EM also accepts a sufficient decrease along the step (Armijo)
    assert em.accept(0.9, 1.0, -0.2, 0.1, 1.0, 0.0)
    assert not em.accept(1.0, 1.0, -0.2, 0.1, 1.0, 0.0)
    assert em.grow(0.25, 1) == 0.5 and em.grow(0.75, 1) == 1.0 and em.grow(0.25, 3) == 0.25
    assert q.grow(1.0, 1) == pytest.approx(1.05) and q.grow(1.0, 2) == 1.0
    with pytest.raises(ValueError, match="metric"):
        step_size("newton")


def test_options_object_checks_and_normalises():
    o = FuseOptions.check("w2d1d", shape=(64, 16, 16), n_pixels_Y=16)
    assert o.k_range == (4.0, 8.0) and o.metric == "em" and o.dtype == np.float32
    assert not o.low_rank and FuseOptions.check("lrs", shape=(64, 16, 16),
                                                n_pixels_Y=16, rank=3).low_rank
    assert FuseOptions.check("lrw2d", shape=(64, 16, 16), n_pixels_Y=16, rank=3).k_range \
        == (0.1, 1.0)
    assert FuseOptions.check("lr", shape=(64, 16, 16), n_pixels_Y=16, rank=3).k_range \
        == (0.5, 3.0)
    with pytest.raises(OptionError, match="J2"):
        FuseOptions.check("w2d1d", shape=(64, 16, 16), n_pixels_Y=16, J2=9)
    with pytest.raises(TypeError, match="unknown option"):
        FuseOptions.check("w2d1d", shape=(64, 16, 16), n_pixels_Y=16, lamda=1.0)
    s = o.settings()
    assert s["regularizer"] == "w2d1d" and s["k_range"] == [4.0, 8.0] and s["dtype"] == "float32"


@pytest.mark.parametrize("reg", REGULARIZERS)
def test_every_regularizer_has_a_builder_in_the_contract(reg):
    assert set(BUILDERS) == set(REGULARIZERS)
    ds = consistent_problem(L=16, l=4, M=12, N=12, counts=80, noise=True)
    opts = FuseOptions.check(reg, shape=(16, 12, 12), n_pixels_Y=ds.sizes["y_coarse"]
                             * ds.sizes["x_coarse"], rank=3, J1=2)
    model = xf.forward_model(ds)
    if opts.low_rank:
        from xfusion.parametrization import LowRank, nmf_subspace

        V = nmf_subspace(ds.Y.values, float(ds.Y.attrs["exposure"]) * ds.arf_Y.values, 3)
        param = LowRank(model, V, np.float64)
    else:
        param = FullCube(model)
    lik = PoissonLikelihood(param, ds.X.values, ds.Y.values, dtype=np.float64)
    x0 = np.ones(param.shape if not opts.low_rank else (3, 12, 12))
    b = build(opts, lik, x0)
    assert isinstance(b.prox, Functional) and b.prox.has_prox
    assert b.smooth is None or b.smooth.has_grad
    assert b.prox.hold_metric == (reg == "w2d1d")
    assert (b.smooth is not None) == (reg == "lrs")
    assert np.isfinite(b.prox.value(x0))
