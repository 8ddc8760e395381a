"""The solver on chunked (dask) problems equals the in-memory one; Zarr output; clusters."""

import os

import dask
import numpy as np
import pytest

import xfusion as xf

from .conftest import consistent_problem

# few iterations: on these tiny problems every iteration is dask overhead (~0.3-1 s)
KW = dict(dtype="float64", max_iter=6, progress=False, tol=1e-12)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "problem.zarr"
    xf.save_problem(consistent_problem(), path)
    return path


@pytest.fixture(scope="module")
def reference(store):
    ds = xf.open_problem(store)
    return {reg: xf.fuse(ds, reg, **KW) for reg in ("none", "lr", "w2d1d")}


def _close(a, b, rtol=1e-6):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= rtol * np.abs(b).max()


# L=24, M=9, N=12, factor 3: odd (3, 9) and even (6, 12) spatial chunks, ragged energy chunks
CASES = [("none", {"energy": 7, "y": 3, "x": 6}), ("lr", {"energy": 7, "y": 3, "x": 6}),
         ("w2d1d", {"energy": 7, "y": 3, "x": 6}), ("w2d1d", {"energy": 5, "y": 6, "x": 3}),
         ("lr", {"energy": 10, "y": 9, "x": 3}), ("none", {"energy": 24, "y": 9, "x": 12})]


@pytest.mark.parametrize("reg,chunks", CASES,
                         ids=[f"{r}-{c['energy']}-{c['y']}-{c['x']}" for r, c in CASES])
def test_chunked_equals_in_memory(store, reference, reg, chunks):
    import warnings

    with warnings.catch_warnings():  # chunks that split the store's chunks: intended here
        warnings.simplefilter("ignore", UserWarning)
        ds = xf.open_problem(store, chunks=chunks)
    assert dask.is_dask_collection(ds.X.data)
    Z = xf.fuse(ds, reg, **KW)
    ref = reference[reg]
    _close(Z.values, ref.values)
    assert Z.attrs["iterations"] == ref.attrs["iterations"]
    np.testing.assert_allclose(Z.attrs["objective_history"], ref.attrs["objective_history"],
                               rtol=1e-8)


def test_numpy_problem_with_chunks_argument(store, reference):
    """A numpy problem runs chunked when asked; unaligned chunks are rounded to the factor."""
    Z = xf.fuse(xf.open_problem(store), "w2d1d", chunks={"energy": 8, "y": 4, "x": 5}, **KW)
    _close(Z.values, reference["w2d1d"].values)


def test_output_zarr(store, reference, tmp_path):
    out = tmp_path / "fused.zarr"
    ds = xf.open_problem(store, chunks={"energy": 12})
    Z = xf.fuse(ds, "w2d1d", output=out, **KW)
    assert dask.is_dask_collection(Z.data)          # backed by the store
    assert os.path.isdir(out) and not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    _close(Z.values, reference["w2d1d"].values)
    assert Z.attrs["iterations"] == reference["w2d1d"].attrs["iterations"]
    # numpy problems can write their result too
    Z2 = xf.fuse(xf.open_problem(store), "none", output=tmp_path / "n.zarr", **KW)
    _close(Z2.values, reference["none"].values)


def test_resume_from_checkpoint_chunked(store, tmp_path):
    """An interrupted chunked run resumes from its Zarr checkpoint to the uninterrupted result."""
    ds = xf.open_problem(store, chunks={"energy": 12, "y": 3})
    kw = dict(KW, max_iter=8, adapt_iter=3)  # resumes with frozen thresholds
    full = xf.fuse(ds, "w2d1d", **kw)
    ck = tmp_path / "ck.zarr"
    xf.fuse(ds, "w2d1d", **dict(kw, max_iter=5), checkpoint=ck, checkpoint_every=2)
    done = xf.fuse(ds, "w2d1d", resume=ck, **kw)
    _close(done.values, full.values)


# -- dask.distributed ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  memory_limit="1GB", dashboard_address=None) as cl, \
            distributed.Client(cl, set_as_default=False) as c:   # used only where passed
        yield c


def test_distributed_equals_in_memory(store, reference, client, capsys):
    ds = xf.open_problem(store, chunks={"energy": 12, "y": 3, "x": 6})
    Z = xf.fuse(ds, "w2d1d", client=client, **dict(KW, progress=True))
    _close(Z.values, reference["w2d1d"].values)
    err = capsys.readouterr().err
    assert "HIFReD iter" in err and f"{KW['max_iter']}/{KW['max_iter']}" in err


def test_spills_when_data_exceed_worker_memory(tmp_path):
    """Z (96×128×128 float64, 12.6 MB) is larger than a worker's whole memory limit (10 MB); the
    persisted working set (iterate, momentum point, gradient, metric, expected counts: ~7 Z)
    ~4× the cluster's: the run finishes by spilling to disk, no worker lost, in-memory result.

    In-process workers (``processes=False``) share pytest's RSS, so spilling is driven by
    managed memory only (``target``); the RSS thresholds (spill / pause / terminate) are off.
    """
    distributed = pytest.importorskip("distributed")
    ds = consistent_problem(L=96, l=24, M=128, N=128, v=4)
    kw = dict(KW, max_iter=3)
    ref = xf.fuse(ds, "none", **kw)
    limit = 10_000_000
    assert ref.nbytes > limit
    cfg = {"distributed.worker.memory.target": 0.5, "distributed.worker.memory.spill": False,
           "distributed.worker.memory.pause": False,
           "distributed.worker.memory.terminate": False}
    with dask.config.set(cfg), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                     memory_limit=limit, dashboard_address=None,
                                     local_directory=str(tmp_path)) as cl, \
            distributed.Client(cl) as c:
        workers = set(cl.scheduler.workers)
        Z = xf.fuse(ds, "none", client=c, chunks={"energy": 8}, **kw)
        written = [w.data.cumulative_metrics["disk-write", "bytes"]
                   for w in cl.workers.values()]
        assert set(cl.scheduler.workers) == workers          # no worker lost or restarted
    _close(Z.values, ref.values)
    print('bytes written to disk per worker:', written)
    assert all(b > limit for b in written), written           # each spilled > its limit


def _kill_after(monkeypatch, cluster, n):
    """Close a worker (its data are lost, not handed over) right after the n-th persist of the
    solver: the persisted iterate, gradient, ... on it are gone mid-iteration."""
    from xfusion import _dask

    calls, persist = [], _dask.persist

    def kill(*arrays):
        out = persist(*arrays)
        calls.append(1)
        if len(calls) == n:
            victim = next(iter(cluster.workers.values()))
            cluster.sync(victim.close)     # not close_gracefully: no data handed over
        return out

    monkeypatch.setattr(_dask, "persist", kill)
    return calls


def test_survives_a_killed_worker(store, reference, monkeypatch):
    """A worker lost mid-run: the scheduler recomputes the lost persisted chunks from their
    lineage (the graph of every persisted array is kept by the scheduler) and the run ends at
    the undisturbed result."""
    distributed = pytest.importorskip("distributed")
    ds = xf.open_problem(store, chunks={"energy": 12})   # one chunk on each worker
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  memory_limit="1GB", dashboard_address=None) as cl, \
            distributed.Client(cl, set_as_default=False) as c:
        calls = _kill_after(monkeypatch, cl, 12)   # ~ iteration 2 of 6
        Z = xf.fuse(ds, "w2d1d", client=c, **KW)
        assert len(cl.scheduler.workers) == 1 and len(calls) > 12
    _close(Z.values, reference["w2d1d"].values)
    assert Z.attrs["iterations"] == KW["max_iter"]


def test_auto_local_cluster(store, reference, monkeypatch):
    """A numpy problem whose working set does not fit runs chunked on a LocalCluster that
    ``fuse`` starts, uses and closes (the memory estimate is faked; the cluster is made
    in-process and small so that the test is quick)."""
    distributed = pytest.importorskip("distributed")
    from xfusion import _dask

    started = []

    class Small(distributed.LocalCluster):
        def __init__(self, **kw):
            super().__init__(n_workers=1, threads_per_worker=1, processes=False,
                             dashboard_address=None, **kw)
            started.append(self)

    seen = []
    persist = _dask.persist

    def spy(*arrays):
        c = _dask.active_client()
        seen.append((c and c.scheduler.address, any(_dask.is_dask(a) for a in arrays)))
        return persist(*arrays)

    monkeypatch.setattr(distributed, "LocalCluster", Small)
    monkeypatch.setattr(_dask, "memory_available", lambda: 1000)
    monkeypatch.setattr(_dask, "persist", spy)
    assert _dask.active_client() is None
    Z = xf.fuse(xf.open_problem(store), "w2d1d", **KW)
    _close(Z.values, reference["w2d1d"].values)
    assert len(started) == 1
    cl = started[0]
    assert seen and all(a == cl.scheduler_address and d for a, d in seen)  # chunked, on it
    assert cl.status.name == "closed" and _dask.active_client() is None
    # a problem that fits starts nothing
    monkeypatch.setattr(_dask, "memory_available", lambda: 10**12)
    seen.clear()
    xf.fuse(xf.open_problem(store), "none", **dict(KW, max_iter=2))
    assert len(started) == 1 and not any(d for _, d in seen)


# -- HPC ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,marker", [("slurm", "#SBATCH"), ("pbs", "#PBS")])
def test_cluster_job_script(kind, marker):
    pytest.importorskip("dask_jobqueue")
    cl = xf.cluster(kind, cores=8, memory="32GB", processes=4, walltime="02:00:00",
                    queue="regular", account="xproj",
                    job_extra_directives=["--constraint=cpu"] if kind == "slurm" else ["-V"],
                    scheduler_options={"dashboard_address": None})
    try:
        script = cl.job_script()
    finally:
        cl.close()
    assert marker in script and "02:00:00" in script and "xproj" in script
    assert "regular" in script and "distributed" in script
    assert ("--constraint=cpu" if kind == "slurm" else "-V") in script
    assert "--nworkers 4" in script or "--nprocs 4" in script


def test_cluster_refuses_old_keywords():
    pytest.importorskip("dask_jobqueue")
    with pytest.raises(TypeError, match="job_extra_directives"):
        xf.cluster("slurm", cores=1, memory="1GB", job_extra=["-x"])
    with pytest.raises(ValueError, match="kind"):
        xf.cluster("sge")


@pytest.mark.parametrize("kind,shape,chunks,k", [
    ("2d1d", (40, 20, 22), (7, 3, 6), "auto"),      # chunks smaller than the halo: merged
    ("2d1d", (64, 30, 30), (20, 15, 10), 2.0),
    ("2d", (3, 30, 33), (1, 11, 12), "auto"),
])
@pytest.mark.parametrize("per_slice", [False, True])
def test_starlet_prox_chunked_equals_numpy(kind, shape, chunks, k, per_slice):
    """The per-chunk fused prox (halo, l1 of the core only) equals the in-memory one."""
    import dask.array as da

    from xfusion.regularizers import StarletL1
    from xfusion.starlet import starlet_bands

    rng = np.random.default_rng(1)
    v = rng.random(shape)
    P = rng.random(shape) + 0.5
    a = StarletL1(starlet_bands(kind, 2, 3, shape), k=k, per_slice=per_slice)
    b = StarletL1(starlet_bands(kind, 2, 3, shape), k=k, per_slice=per_slice)
    xa = a.prox(v, 0.3, P)
    vd = da.from_array(v, chunks=chunks)
    with dask.config.set(scheduler="threads"):
        xb = b.prox(vd, 0.3, da.from_array(P, chunks=chunks))
        assert xb.chunks == vd.chunks
        np.testing.assert_allclose(xb.compute(), xa, rtol=1e-6, atol=1e-9)
        assert b.value(xb) == pytest.approx(a.value(xa), rel=1e-6)
        np.testing.assert_allclose(np.asarray(b.kmap.compute() if k == "auto" else b.kmap),
                                   a.kmap, rtol=1e-6)
        assert np.allclose(b.scale, a.scale, rtol=1e-6)


def test_starlet_prox_tasks_run_serial_and_keep_no_scratch(monkeypatch):
    """Inside dask tasks the starlet runs on the task's thread (no pool of its own) and drops
    its scratch buffers when the task ends (kept buffers are unmanaged memory of a worker)."""
    import dask.array as da

    from xfusion.regularizers import StarletL1
    from xfusion.starlet import smoothing, starlet_bands, transforms

    threads = []
    run = transforms._run

    def spy(task, blocks, n_threads):
        threads.append(n_threads)
        return run(task, blocks, n_threads)

    monkeypatch.setattr(transforms, "_run", spy)
    shape, chunks = (40, 24, 24), (20, 12, 12)
    v = np.random.default_rng(3).random(shape)
    r = StarletL1(starlet_bands("2d1d", 2, 3, shape))
    smoothing._TLS.ws = None
    with dask.config.set(scheduler="synchronous"):  # tasks on this thread
        r.prox(da.from_array(v, chunks=chunks), 0.3, da.from_array(v + 0.5, chunks=chunks))
    assert threads and set(threads) == {1}
    assert getattr(smoothing._TLS, "ws", None) is None


@pytest.mark.parametrize("per_slice", [False, True])
def test_starlet_estimate_samples_chunk_by_chunk(monkeypatch, per_slice):
    """The lattice samples taken inside the chunks' tasks equal the global ones."""
    import functools

    import dask.array as da

    import xfusion.starlet as st
    from xfusion.regularizers import StarletL1
    from xfusion.starlet import starlet_bands

    monkeypatch.setattr(st, "lattice_sample", functools.partial(st.lattice_sample, n=97))
    shape = (50, 23, 29)
    rng = np.random.default_rng(2)
    v = rng.random(shape) ** 3
    P = rng.random(shape) + 0.5
    a = StarletL1(starlet_bands("2d1d", 2, 2, shape), per_slice=per_slice)
    b = StarletL1(starlet_bands("2d1d", 2, 2, shape), per_slice=per_slice)
    a._estimate(v, np.sqrt(P))
    with dask.config.set(scheduler="threads"):
        b._estimate(da.from_array(v, chunks=(13, 9, 8)), np.sqrt(da.from_array(P, chunks=7)))
        np.testing.assert_allclose(b.kmap.compute(), a.kmap, rtol=1e-10)
    np.testing.assert_allclose(b.scale, a.scale, rtol=1e-10)
