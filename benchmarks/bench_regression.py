"""Behaviour check for refactors: every scenario × regularizer, in float64, against a reference.

Usage::

    python benchmarks/bench_regression.py --save ref.npz            # before a change
    python benchmarks/bench_regression.py --compare ref.npz         # after it
    python benchmarks/bench_regression.py --scale 1 --save ref.npz  # full-size scenarios
    python benchmarks/bench_regression.py --chunks y=16 x=16 --save ref_dask.npz   # dask path

Runs :func:`xfusion.fuse` in float64 (``dtype="float64"``, seed 0) on the paper's four
scenarios with the five regularizers, and records the fused cube, the iteration count and the
final objective of each run. ``--compare`` prints, per run, the largest relative difference of
the cube (max |Z − Z_ref| / max |Z_ref|), whether the iteration counts agree, and the wall time
of both (the reference's as recorded). ``--chunks`` runs the chunked (dask) path instead, with
Z chunked as given. It exits 1 when a cube differs by more than ``--rtol``
(default 1e-10) or an iteration count differs.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import xfusion as xf
from xfusion.options import REGULARIZERS

SCENARIOS = ("gaussian_1kev", "gaussian_6kev", "gaussian_1kev_rebin", "realistic_1kev_rebin")


def run(scale: float, scenarios, regularizers, max_iter: int,
        chunks: dict | None = None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in scenarios:
        ds = xf.simulate.scenario(name, seed=0, scale=scale)
        for reg in regularizers:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Z = xf.fuse(ds, reg, dtype="float64", progress=False, max_iter=max_iter,
                            chunks=chunks)
            wall = time.perf_counter() - t0
            key = f"{name}/{reg}"
            out[f"{key}/Z"] = np.asarray(Z.compute().values)
            out[f"{key}/meta"] = np.array([Z.attrs["iterations"], Z.attrs["converged"],
                                           Z.attrs["objective"] or np.nan, wall])
            print(f"{key:34s} iterations {Z.attrs['iterations']:5d}  converged "
                  f"{Z.attrs['converged']}  objective {Z.attrs['objective']:.12e}  "
                  f"{wall:7.1f} s", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    p.add_argument("--regularizers", nargs="+", default=list(REGULARIZERS))
    p.add_argument("--max-iter", type=int, default=3000)
    p.add_argument("--save", help="write the results to this .npz")
    p.add_argument("--compare", help="compare with the results in this .npz")
    p.add_argument("--rtol", type=float, default=1e-10)
    p.add_argument("--chunks", nargs="+", metavar="DIM=SIZE",
                   help="run the chunked path with these chunks of Z, e.g. y=16 x=16")
    a = p.parse_args(argv)
    chunks = None
    if a.chunks:
        chunks = {k: int(v) for k, v in (c.split("=", 1) for c in a.chunks)}
    res = run(a.scale, a.scenarios, a.regularizers, a.max_iter, chunks)
    if a.save:
        np.savez_compressed(a.save, scale=a.scale, **res)
    if not a.compare:
        return 0
    ref = np.load(a.compare)
    bad = 0
    print(f"\n{'run':34s} {'max rel diff':>13s} {'iters ref/new':>14s} {'wall ref/new s':>15s}")
    for key in sorted(k[:-2] for k in res if k.endswith("/Z")):
        if f"{key}/Z" not in ref:
            print(f"{key:34s} not in the reference")
            continue
        Zr, Zn = ref[f"{key}/Z"], res[f"{key}/Z"]
        d = float(np.max(np.abs(Zn - Zr)) / max(float(np.max(np.abs(Zr))), 1e-300))
        mr, mn = ref[f"{key}/meta"], res[f"{key}/meta"]
        same = int(mr[0]) == int(mn[0])
        ok = same and d <= a.rtol
        bad += not ok
        print(f"{key:34s} {d:13.2e} {int(mr[0]):6d}/{int(mn[0]):<6d} "
              f"{mr[3]:7.1f}/{mn[3]:<7.1f} {'ok' if ok else 'DIFFERS'}")
    print(f"\n{bad} run(s) differ" if bad else "\nall runs equal to the reference")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
