"""A cube larger than the cluster's memory: ``w2d1d`` on ``LocalCluster(n_workers=2,
memory_limit=1.5GB)`` from a Zarr problem opened with chunks (docs/scaling.md).

The problem is ``bench_scale.make(M, L)`` (Y 8× coarser in space, X 32× coarser in energy),
written once to ``--store`` (reused when it exists). One run of ``--iters`` iterations; the time
of every iteration is logged from the solver's per-iteration callback, with the workers' spill
(bytes written to disk), the worker processes that died (nanny restarts) and the client's RSS.
Run it under a hard time limit, e.g.::

    timeout 1800 python benchmarks/bench_beyond_memory.py --size 512 --iters 3 \
        --store /tmp/p512.zarr --json /tmp/beyond.json

Z's chunks are ``--energy-chunk`` channels of whole images by default (``--spatial-chunk -1``),
passed to ``fuse(chunks=...)``: the store's own spatial chunks are much smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import xfusion as xf
import xfusion.fusion as xfusion_fusion

sys.path.insert(0, os.path.dirname(__file__))
from bench_scale import make  # noqa: E402

LOG: dict = {"events": []}
T0 = time.perf_counter()


def log(what, **kw):
    row = dict(t=round(time.perf_counter() - T0, 1), what=what, **kw)
    LOG["events"].append(row)
    print(json.dumps(row), flush=True)


def _worker_stats(dask_worker):
    import psutil

    m = getattr(dask_worker.data, "cumulative_metrics", {})
    return dict(disk_write=m.get(("disk-write", "bytes"), 0),
                disk_read=m.get(("disk-read", "bytes"), 0),
                rss=psutil.Process().memory_info().rss)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--channels", type=int, default=2048)
    ap.add_argument("--energy-chunk", type=int, default=64)
    ap.add_argument("--spatial-chunk", type=int, default=-1,
                    help="Z's y / x chunk (default -1: whole images, whatever the store's chunks)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--reg", default="w2d1d")
    ap.add_argument("--memory-limit", default="1.5GB")
    ap.add_argument("--store", default="/tmp/xfusion_beyond.zarr")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import psutil
    from distributed import Client, LocalCluster

    M, L = a.size, a.channels
    chunks = {"energy": a.energy_chunk, "y": a.spatial_chunk, "x": a.spatial_chunk}
    LOG.update(size=M, channels=L, reg=a.reg, chunks=chunks, iters=a.iters,
               memory_limit=a.memory_limit, load_before=os.getloadavg())
    if not os.path.exists(a.store):
        ds = make(M, L)
        log("problem made")
        xf.save_problem(ds, a.store)
        del ds
        log("problem saved", store=a.store)
    ds = xf.open_problem(a.store, chunks={"energy": a.energy_chunk})  # the store's y / x chunks

    # one log line per iteration, from the solver's per-iteration callback
    class Timer(xfusion_fusion.ProgressBar):
        def __call__(self, state, rel, force=False):
            log("iteration", i=int(state.iteration), objective=float(state.history[-1]),
                workers=len(client.scheduler_info()["workers"]),
                stats=client.run(_worker_stats),
                client_rss=psutil.Process().memory_info().rss)

        def finish(self, state=None):
            pass

    xfusion_fusion.ProgressBar = Timer
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=a.memory_limit,
                      dashboard_address=None) as cl, Client(cl) as client:
        pids0 = client.run(os.getpid)
        log("cluster", workers=list(pids0))
        t = time.perf_counter()
        try:
            Z = xf.fuse(ds, a.reg, max_iter=a.iters, tol=1e-12, dtype="float32",
                        progress=True, client=client, chunks=chunks,
                        output=a.store.rstrip("/") + ".fused.zarr")
        except Exception as e:  # logged before closing the cluster (which may time out)
            log("failed", error=f"{type(e).__name__}: {e}"[:2000])
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(LOG, f, indent=1)
            raise
        log("done", wall=time.perf_counter() - t, setup=Z.attrs["setup_time"],
            iteration_time=Z.attrs["iteration_time"], iterations=Z.attrs["iterations"],
            finite=bool(np.isfinite(float(Z.attrs["objective"] or np.nan))))
        pids1 = client.run(os.getpid)
        log("workers", restarted=sorted(set(pids0.values()) ^ set(pids1.values())),
            stats=client.run(_worker_stats))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(LOG, f, indent=1)


if __name__ == "__main__":
    main()
