"""Where one solver iteration's time goes: the pieces of a FISTA step, timed one by one.

Run::

    python benchmarks/bench_iteration.py [--scenario gaussian_1kev_rebin] [--scale 1]
                                         [--repeat 7] [--regularizers w2d1d lrs]

For each regularizer the script builds the problem exactly as :func:`xfusion.fuse` does (it
runs ``fuse`` for ``adapt_iter`` + 2 iterations to get a state with frozen thresholds), then
times, interleaved round-robin ``repeat`` times, the pieces of one iteration:

* ``forward``: expected counts μ_X, μ_Y of the iterate;
* ``floor corr.``: the expected counts of the voxels the momentum floor raised (those of the
  momentum point are the extrapolated ones plus these; a second forward where the model has no
  column form or the floor moved more than 2 % of the voxels);
* ``loss+grad``: both Poisson terms and their count-space gradients;
* ``adjoint``: the gradient back to the unknowns;
* ``metric``: the EM metric P = x / Kᵀ1 (not recomputed once a wavelet regularizer's
  thresholds froze: counted 0 times per iteration there);
* ``prox``: positivity, or starlet threshold-and-reconstruct;
* ``vector ops``: the step, the descent test's inner products and the momentum point.

It prints the minimum and median ms per call, their sum per iteration, and the measured
per-iteration time of a full ``fuse`` run with frozen thresholds, with the load average.

``--whole-run N`` instead times N complete default runs of ``fuse`` with one time stamp per
iteration (a solver callback) and prints, per run, the iterations, the whole run's iteration
time over its iterations (the figure the solver issue's per-iteration target is about), and
the median iteration of the threshold-adaptation phase and after it.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import xfusion as xf
import xfusion.fusion as F
from xfusion._step_ops import momentum_point, scaled_step, step_products


def _capture(ds, reg, iters):
    """Run fuse for ``iters`` iterations and keep the solver (its parametrization and reg)."""
    box = {}
    orig = F.FISTA

    class Keep(orig):
        def run(self, *a, **k):
            st = super().run(*a, **k)
            box["solver"], box["state"] = self, st
            return st

    F.FISTA = Keep
    try:
        Z = xf.fuse(ds, reg, max_iter=iters, tol=1e-14, progress=False)
    finally:
        F.FISTA = orig
    return box["solver"], box["state"], Z


def _cases(s, x, xp, mu, P, g, gX, gY, v) -> dict:
    """The pieces of one iteration, as callables."""

    def vector_ops():  # as in FISTA.step (compiled when numba is installed)
        return (step_products(x, v, g, P), scaled_step(v, g, P, 1.0),
                momentum_point(x, xp, 0.5, 0.1, moved=True))

    # the voxels the momentum floor raises at this state, for the sparse correction
    _, index, values = momentum_point(x, xp, 0.5, 0.1, moved=True)
    sparse = getattr(s.param, "forward_sparse", None)

    return {
        "forward": lambda: s.param.forward(x),
        "floor corr.": (lambda: sparse(index, values)) if sparse else (lambda: None),
        "loss+grad": lambda: (s.likelihood.lossX.value_and_grad(mu[0]),
                              s.likelihood.lossY.value_and_grad(mu[1])),
        "adjoint": lambda: s.param.adjoint(gX.astype(s.dtype), gY.astype(s.dtype)),
        "metric": lambda: s.step_size.metric(s, mu, x),
        "prox": lambda: s.reg.prox(v, 1.0, P),
        "vector ops": vector_ops,
    }


def _whole_runs(ds, reg: str, n: int) -> None:
    """Time ``n`` default runs of ``fuse``, one time stamp per iteration."""
    stamps: list[float] = []
    orig = F.FISTA

    class Timed(orig):
        def run(self, *a, **k):
            self.callbacks.append(lambda st, rel: stamps.append(time.perf_counter()))
            stamps.append(time.perf_counter())
            return super().run(*a, **k)

    xf.fuse(ds, reg, max_iter=3, progress=False)          # compile and warm the caches
    F.FISTA = Timed
    try:
        for _ in range(n):
            stamps.clear()
            Z = xf.fuse(ds, reg, progress=False)
            d = 1e3 * np.diff(stamps)
            k = int(Z.attrs.get("adapt_iter", 20)) if reg in ("w2d1d", "lrw2d") else 0
            phases = (f"; adaptation median {np.median(d[:k]):.0f} ms, after it "
                      f"{np.median(d[k:]):.0f} ms" if 0 < k < d.size else "")
            print(f"{reg}: {Z.attrs['iterations']} iterations, {d.sum() / 1e3:.2f} s, "
                  f"{d.mean():.1f} ms per iteration{phases}; NMSE "
                  f"{xf.metrics.nmse(Z, ds.Z_true):.2f} dB; load {os.getloadavg()[0]:.2f}")
    finally:
        F.FISTA = orig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="gaussian_1kev_rebin")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--regularizers", nargs="+", default=["w2d1d", "lrs"])
    p.add_argument("--whole-run", type=int, default=0, metavar="N",
                   help="time N whole default runs per regularizer instead of the pieces")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    ds = xf.simulate.scenario(a.scenario, seed=0, scale=a.scale)
    print(f"{a.scenario} scale {a.scale}: Z {ds.sizes['energy']}×{ds.sizes['y']}×{ds.sizes['x']}"
          f", load average {os.getloadavg()[0]:.2f}")
    if a.whole_run:
        for reg in a.regularizers:
            _whole_runs(ds, reg, a.whole_run)
        return
    for reg in a.regularizers:
        s, st, _ = _capture(ds, reg, 22)
        x, xp = st.x, st.x_prev
        mu = s.param.forward(x)
        P = s.step_size.metric(s, mu, x)
        _, gX = s.likelihood.lossX.value_and_grad(mu[0])
        _, gY = s.likelihood.lossY.value_and_grad(mu[1])
        g = s.param.adjoint(gX.astype(s.dtype), gY.astype(s.dtype))
        v = x - P * g

        cases = _cases(s, x, xp, mu, P, g, gX, gY, v)
        times = {k: [] for k in cases}
        for _ in range(a.repeat):
            for k, fn in cases.items():
                t = time.perf_counter()
                fn()
                times[k].append(1e3 * (time.perf_counter() - t))
        per_it = {}
        if s.holding_metric():
            per_it["metric"] = 0  # held once the thresholds froze (FISTA hold_metric)
        print(f"\n## {reg}  (unknowns {tuple(x.shape)}, {x.dtype})")
        print(f"{'piece':>12} {'min ms':>8} {'median':>8} {'× per it':>9}")
        total = 0.0
        for k, ts in times.items():
            n = per_it.get(k, 1)
            total += n * min(ts)
            print(f"{k:>12} {min(ts):8.1f} {np.median(ts):8.1f} {n:9d}")
        print(f"{'sum':>12} {total:8.1f}")
        _, _, Z = _capture(ds, reg, 22 + 20)
        _, _, Z0 = _capture(ds, reg, 22)
        it_ms = 1e3 * (Z.attrs["iteration_time"] - Z0.attrs["iteration_time"]) / 20
        print(f"{'fuse, 20 it':>12} {it_ms:8.1f} ms per iteration (after the thresholds froze)"
              f"; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
