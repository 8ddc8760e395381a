"""The halo module: planning, extended blocks, cores and frames against numpy slicing."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from xfusion.functionals import Sobolev  # noqa: E402
from xfusion.halo import is_dask, map_with_halo, plan  # noqa: E402
from xfusion.operators.psf import PSFConvolution  # noqa: E402

RNG = np.random.default_rng(3)


def _blocks(xo, halo):
    """Every extended block of ``xo`` with its chunk location."""
    out = {}
    for idx in np.ndindex(*xo.numblocks):
        out[idx] = xo.blocks[idx].compute()
    return out


@pytest.mark.parametrize("boundary", ["none", 0, "reflect"])
def test_extended_blocks_are_the_padded_array_around_each_chunk(boundary):
    a = RNG.random((3, 17, 12))
    x = da.from_array(a, chunks=(3, 6, 5))
    depth = {1: 2, 2: 3}
    x, halo = plan(x, depth, boundary)
    assert halo.depth == depth
    mode = {"none": None, 0: "constant", "reflect": "symmetric"}[boundary]
    pad = [(0, 0), (2, 2), (3, 3)]
    g = np.pad(a, pad, mode=mode) if mode else None
    starts = halo.starts
    for cl, b in _blocks(halo.extend(x), halo).items():
        core = halo.core(cl, b.shape)
        sl = tuple(slice(int(st[i]), int(st[i + 1])) for st, i in zip(starts, cl, strict=True))
        np.testing.assert_array_equal(b[core], a[sl])
        if g is not None:
            gsl = tuple(slice(s.start, s.stop + 2 * p[0]) for s, p in zip(sl, pad, strict=True))
            np.testing.assert_array_equal(b, g[gsl])


def test_frame_tells_edges_core_and_global_location():
    a = RNG.random((4, 20, 9))
    x, halo = plan(da.from_array(a, chunks=(4, 7, 9)), {1: 3, 2: 3}, "none")
    assert halo.depth == {1: 3}               # x is one chunk: no halo along it
    xo = halo.extend(x)
    for cl, b in _blocks(xo, halo).items():
        edges, core, loc = halo.frame(cl, [1, 2])
        i = cl[1]
        assert edges[0] == (i == 0, i == halo.numblocks[1] - 1)
        assert edges[1] == (True, True)
        (c0, c1), (d0, d1) = core
        np.testing.assert_array_equal(b[:, c0:c1, d0:d1], a[loc])


def test_small_chunks_are_merged_or_refused():
    x = da.zeros((2, 30, 30), chunks=(2, (10, 2, 18), 30))
    y, halo = plan(x, {1: 4}, small="merge")
    assert min(y.chunks[1]) >= 4 and sum(y.chunks[1]) == 30 and halo.chunks == y.chunks
    with pytest.raises(ValueError, match="axis 1 .*halo of 4"):
        plan(x, {1: 4}, small="raise")
    short = da.zeros((2, 6, 30), chunks=(2, 3, 30))
    z, halo = plan(short, {1: 3}, small="merge")  # no longer than twice the depth: one chunk
    assert z.numblocks[1] == 1 and halo.depth == {}
    with pytest.raises(ValueError, match="small"):
        plan(x, {1: 4}, small="grow")
    with pytest.raises(ValueError, match="axis 5"):
        plan(x, {5: 1})


@pytest.mark.parametrize("chunks", [(4, 10, 40), (4, 40, 8), (2, 10, 8)])
def test_psf_through_map_with_halo_equals_numpy(chunks):
    L, M, N = 4, 40, 40
    k = RNG.random((L, 7, 5))
    k /= k.sum(axis=(1, 2), keepdims=True)
    B = PSFConvolution(k, (L, M, N))
    z = RNG.random((L, M, N))
    zd = da.from_array(z, chunks=chunks)
    np.testing.assert_allclose(B.forward(zd).compute(), B.forward(z), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(B.adjoint(zd).compute(), B.adjoint(z), rtol=1e-12, atol=1e-14)
    assert B.depth == {1: 3, 2: 2}


def test_psf_refuses_chunks_smaller_than_its_half_width():
    B = PSFConvolution(np.ones((9, 9)) / 81, (2, 30, 30))
    zd = da.zeros((2, 30, 30), chunks=(2, (3, 27), 30))
    with pytest.raises(ValueError, match="halo of 4"):
        B.forward(zd)


def test_map_with_halo_trims_to_the_chunks():
    a = RNG.random((3, 25, 25))
    x = da.from_array(a, chunks=(3, 5, 5))
    out = map_with_halo(lambda b, block_info=None: b * 2, x, {1: 2, 2: 2}, boundary=0)
    assert is_dask(out) and out.chunks == x.chunks
    np.testing.assert_array_equal(out.compute(), 2 * a)


def test_sobolev_declares_its_depth_and_matches_numpy_on_chunks():
    W = RNG.random((3, 19, 14))
    S = Sobolev(0.7)
    assert S.depth(3) == {1: 1, 2: 1}
    Wd = da.from_array(W, chunks=(3, 5, 14))
    np.testing.assert_array_equal(S.grad(Wd).compute(), S.grad(W))
    assert S.value(Wd) == pytest.approx(S.value(W), rel=1e-12)
