"""Chunked (dask) fusion for every regularizer: equal to the in-memory run iterate by iterate,
with chunks that keep their shape across iterations; the chunk planner (``_dask.aligned``) and
the Sobolev penalty on dask.

The problem is :func:`tests.conftest.consistent_problem` with L = 24, M = 10, N = 12, rebinning
factor 2 and a 5 × 5 PSF (half-width 2), so that a spatial chunk can equal the PSF half-width
and the factor at once. Every run uses dask's synchronous scheduler.
"""

from __future__ import annotations

from unittest import mock

import dask
import dask.array as da
import numpy as np
import pytest

import xfusion as xf
from xfusion._dask import aligned, plan_chunks
from xfusion.functionals import Sobolev
from xfusion.options import REGULARIZERS
from xfusion.solver import FISTA

from .conftest import consistent_problem

#: float64, a fixed number of iterations (tol far below what is reached): both runs take the
#: same steps, so their iterates can be compared one by one
KW = dict(dtype="float64", max_iter=15, tol=1e-30, progress=False)

HALO = 2  # PSF half-width of the test problem (5 × 5)

#: (energy, y, x) chunkings: energy chunks that do not divide L = 24 (10, 10, 4); y / x chunks
#: that do not divide M = 10 and N = 12 ((4, 4, 2), (8, 4)); y chunks equal to the PSF
#: half-width and to the factor (2, 2, 2, 2, 2)
CHUNKINGS = {
    "energy": {"energy": 10},
    "yx": {"y": 4, "x": 8},
    "halo": {"y": HALO},
}
EXPECTED = {
    "energy": ((10, 10, 4), (10,), (12,)),
    "yx": ((24,), (4, 4, 2), (8, 4)),
    "halo": ((24,), (2, 2, 2, 2, 2), (12,)),
}


@pytest.fixture(scope="module")
def problem():
    return consistent_problem(L=24, l=6, M=10, N=12, v=2)


def _fuse_recorded(ds, reg, chunks=None):
    """``xf.fuse`` with a callback that records, after every iteration, the iterate (as
    numpy), its chunks and the size of its task graph."""
    seen = []

    def record(st, rel):
        x = st.x
        seen.append((np.asarray(x), getattr(x, "chunks", None),
                     len(x.dask) if dask.is_dask_collection(x) else 0))

    run = FISTA.run

    def run_recorded(self, *args, **kwargs):
        self.callbacks.append(record)
        return run(self, *args, **kwargs)

    with mock.patch.object(FISTA, "run", run_recorded), \
            dask.config.set(scheduler="synchronous"):
        Z = xf.fuse(ds, reg, chunks=chunks, **KW)
    return Z, seen


@pytest.fixture(scope="module")
def runs(problem):
    """Each (regularizer, chunking) run once, shared by the tests below; ``None`` is the
    in-memory run."""
    cache = {}

    def get(reg, name):
        if (reg, name) not in cache:
            cache[reg, name] = _fuse_recorded(problem, reg,
                                              None if name is None else CHUNKINGS[name])
        return cache[reg, name]

    return get


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


CASES = [(r, c) for r in REGULARIZERS for c in CHUNKINGS]


@pytest.mark.parametrize("reg,name", CASES, ids=[f"{r}-{c}" for r, c in CASES])
def test_chunked_iterates_equal_in_memory(runs, reg, name):
    Z, seen = runs(reg, name)
    ref, ref_seen = runs(reg, None)
    assert Z.attrs["iterations"] == ref.attrs["iterations"] == KW["max_iter"]
    assert len(seen) == len(ref_seen) == KW["max_iter"]
    for i, ((x, _, _), (r, _, _)) in enumerate(zip(seen, ref_seen, strict=True)):
        assert _rel(x, r) <= 1e-6, f"iteration {i + 1}: {_rel(x, r):.2e}"
    assert _rel(Z.values, ref.values) <= 1e-6
    # (a deviance: it falls from ~3e5 to ~1, so its last digits cancel: compared to the start)
    h, hr = np.asarray(Z.attrs["objective_history"]), np.asarray(ref.attrs["objective_history"])
    np.testing.assert_allclose(h, hr, rtol=1e-8, atol=1e-12 * np.abs(hr).max())


@pytest.mark.parametrize("reg", REGULARIZERS)
def test_iterate_chunks_do_not_change(runs, problem, reg):
    """The iterate keeps its chunks (and a graph of one task per chunk: it is persisted) at
    every iteration, on energy and on y / x chunks."""
    for name in ("energy", "yx"):
        _, seen = runs(reg, name)
        chunks = {c for _, c, _ in seen}
        graphs = {g for _, _, g in seen}
        assert len(chunks) == 1, (name, chunks)
        assert len(graphs) == 1, (name, graphs)
        ch = chunks.pop()
        want = EXPECTED[name]
        if reg in ("lrs", "lrw2d", "lr"):      # W = (rank, M, N): the rank in one chunk
            assert len(ch[0]) == 1
            assert ch[1:] == want[1:]
        else:
            assert ch == want
        assert graphs.pop() == np.prod([len(c) for c in ch])


# -- the chunk planner -------------------------------------------------------------------------
def test_aligned_two_chunks():
    """A short remainder after one full chunk merges into it (was an IndexError)."""
    assert aligned(24, 15, 3, 14) == (24,)
    assert aligned(24, 12, 3, 14) == (24,)   # 12 → halo 14 → 15 (factor 3)
    assert aligned(24, 16, 3, 14) == (24,)   # 16 → 18
    assert aligned(24, 18, 3, 14) == (24,)


def test_aligned_three_or_more_chunks_merge_into_the_last():
    assert aligned(54, 15, 3, 14) == (15, 15, 24)       # was (15, 24, 15)
    assert aligned(100, 12, 4, 8) == (12,) * 7 + (16,)


def test_aligned_keeps_a_remainder_of_at_least_the_halo():
    assert aligned(54, 15, 3, 9) == (15, 15, 15, 9)
    assert aligned(10, 4, 2, 2) == (4, 4, 2)


def test_aligned_rounds_to_the_factor_and_the_halo():
    assert aligned(24, 4, 3) == (6, 6, 6, 6)
    assert aligned(24, 1, 3, 5) == (6, 6, 6, 6)          # 1 → halo 5 → 6
    assert aligned(30, 7, 5, 0) == (10, 10, 10)
    assert aligned(7, 100, 1) == (7,)


@pytest.mark.parametrize("n,size,factor,halo,want", [
    (24, 12, 3, 14, (24,)),
    (24, 6, 3, 2, (6, 6, 6, 6)),
    (24, 9, 3, 2, (9, 9, 6)),
    (24, 9, 3, 7, (9, 15)),
    (24, 10, 2, 2, (10, 10, 4)),
    (54, 15, 3, 14, (15, 15, 24)),
    (10, 4, 2, 2, (4, 4, 2)),
    (10, 4, 2, 3, (4, 6)),
    (10, 3, 1, 0, (3, 3, 3, 1)),
    (10, 3, 1, 2, (3, 3, 4)),
    (12, 8, 2, 2, (8, 4)),
    (12, 12, 2, 2, (12,)),
    (12, -1, 2, 2, (2, 2, 2, 2, 2, 2)),   # (a size below 1 is raised to the halo)
    (5, 2, 1, 9, (5,)),                   # the axis is shorter than the halo
])
def test_aligned_table(n, size, factor, halo, want):
    assert aligned(n, size, factor, halo) == want


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("halo", [0, 1, 3, 7])
def test_aligned_invariants(factor, halo):
    """Chunks cover the axis, are multiples of the factor (the axis is), at least the halo
    (unless the axis is shorter), regular but for the last."""
    for n in range(factor, 60 * factor + 1, factor):
        for size in range(1, n + 3):
            ch = aligned(n, size, factor, halo)
            assert sum(ch) == n
            assert all(c % factor == 0 for c in ch), (n, size, ch)
            assert all(c >= min(halo, n) for c in ch), (n, size, ch)
            assert len(set(ch[:-1])) <= 1, (n, size, ch)


def test_plan_chunks_half_size_scenario():
    """``gaussian_1kev_rebin`` at half size (24 × 24 pixels, factor 3, PSF half-width 14):
    spatial chunks of 12, 16 or 18 pixels become one chunk (a second would be under the
    halo); they failed with an IndexError."""
    ds = xf.simulate.scenario("gaussian_1kev_rebin", seed=0, scale=0.5)
    assert (ds.sizes["y"], ds.sizes["x"]) == (24, 24)
    half = max(ds.psf_Y.shape[-2:]) // 2
    for c in (12, 16, 18):
        ch = plan_chunks(ds, (3, 3), half, {"energy": 300, "y": c, "x": c})
        assert ch == ((300,) * 4, (24,), (24,))


def test_plan_chunks_test_problem(problem):
    for name, chunks in CHUNKINGS.items():
        assert plan_chunks(problem, (2, 2), HALO, chunks) == EXPECTED[name]


# -- the Sobolev penalty on dask ---------------------------------------------------------------
@pytest.mark.parametrize("chunks", [(3, 10, 12), (1, 4, 5), (3, 1, 7), (2, (3, 3, 4), (1, 11)),
                                    (1, 2, 2)])
def test_sobolev_dask_equals_numpy_and_keeps_chunks(chunks):
    W = np.random.default_rng(0).random((3, 10, 12))
    S = Sobolev(0.37)
    Wd = da.from_array(W, chunks=chunks)
    g = S.grad(Wd)
    assert g.chunks == Wd.chunks
    np.testing.assert_array_equal(g.compute(), S.grad(W))    # the same operations: exact
    assert S.value(Wd) == pytest.approx(S.value(W), rel=1e-14)
