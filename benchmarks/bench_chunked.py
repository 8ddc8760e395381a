"""Per-iteration wall time of chunked (dask) fusion, early and late in the run, per regularizer.

A chunked run whose arrays change chunks from one iteration to the next (each iteration
splitting them further) slows down iteration after iteration; one that keeps its chunks runs
every iteration in about the same time. For each regularizer this runs ``xf.fuse`` on dask
chunks for ``--iters`` iterations (``tol`` tiny, so none stops early), records
``time.perf_counter()`` after every iteration with a solver callback, and prints the wall time
of iteration 5 and of iteration 25, their ratio (target ≤ 1.5), the medians over iterations
3–7 and 23–27 (less sensitive to a busy machine) and the number of chunks of the iterate at
both.

Note that ``w2d1d`` and ``lrw2d`` re-estimate their thresholds during the first ``adapt_iter``
(20) iterations and freeze them after: their late iterations skip that estimate.

Usage::

    python benchmarks/bench_chunked.py                       # gaussian_1kev_rebin, scale 0.5
    python benchmarks/bench_chunked.py --chunks energy=300 y=12 x=12 --regs lrs
"""

from __future__ import annotations

import argparse
import time
import warnings
from unittest import mock

import dask
import numpy as np

import xfusion as xf
from xfusion.options import REGULARIZERS
from xfusion.solver import FISTA


def timed_fuse(ds, reg: str, chunks: dict, iters: int, dtype: str):
    """``xf.fuse`` on ``chunks`` for ``iters`` iterations; returns the result, the wall time
    of each iteration (s) and the number of chunks of the iterate after each."""
    stamps: list[float] = []
    nchunks: list[int] = []

    def record(st, rel):
        stamps.append(time.perf_counter())
        nchunks.append(int(np.prod(st.x.numblocks)) if dask.is_dask_collection(st.x) else 1)

    run = FISTA.run

    def run_recorded(self, *args, **kwargs):
        self.callbacks.append(record)
        stamps.append(time.perf_counter())       # the loop's start
        return run(self, *args, **kwargs)

    with mock.patch.object(FISTA, "run", run_recorded):
        Z = xf.fuse(ds, reg, chunks=chunks, max_iter=iters, tol=1e-30, progress=False,
                    dtype=dtype)
    # (the first interval includes the solver's set-up: the first objective and metric)
    return Z, np.diff(stamps), nchunks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="gaussian_1kev_rebin")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--chunks", nargs="*", default=["energy=300"],
                    help="dim=size pairs (energy, y, x)")
    ap.add_argument("--regs", nargs="*", default=list(REGULARIZERS))
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--scheduler", default="threads")
    a = ap.parse_args(argv)
    if a.iters < 27:
        ap.error("--iters must be at least 27 (iterations 23-27 are timed)")
    chunks = {k: int(v) for k, v in (c.split("=") for c in a.chunks)}
    ds = xf.simulate.scenario(a.scenario, seed=0, scale=a.scale)
    print(f"{a.scenario} scale {a.scale}: {dict(ds.sizes)}; chunks {chunks}; "
          f"{a.iters} iterations, {a.dtype}, scheduler {a.scheduler}")
    print(f"{'regularizer':<11} {'it 5 (s)':>9} {'it 25 (s)':>9} {'ratio':>6} "
          f"{'med 3-7':>8} {'med 23-27':>9} {'ratio':>6} {'chunks 5/25':>11} {'total (s)':>9}")
    with dask.config.set(scheduler=a.scheduler), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # RankWarning on unconverged short runs
        for reg in a.regs:
            t = time.perf_counter()
            _, dt, nch = timed_fuse(ds, reg, chunks, a.iters, a.dtype)
            total = time.perf_counter() - t
            e, late = dt[4], dt[24]                      # iterations 5 and 25
            me, ml = np.median(dt[2:7]), np.median(dt[22:27])
            print(f"{reg:<11} {e:9.3f} {late:9.3f} {late / e:6.2f} {me:8.3f} {ml:9.3f} "
                  f"{ml / me:6.2f} {nch[4]:>5}/{nch[24]:<5} {total:9.1f}", flush=True)


if __name__ == "__main__":
    main()
