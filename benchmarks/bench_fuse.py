"""Fusion benchmark: quality and speed of every regularizer on the paper's four scenarios.

Usage::

    python benchmarks/bench_fuse.py                       # all scenarios × regularizers
    python benchmarks/bench_fuse.py --scenarios gaussian_1kev_rebin --regularizers lrs w2d1d
    python benchmarks/bench_fuse.py --converge 10          # also check convergence (10× longer)

Prints, per scenario: the single-instrument baselines and, per regularizer, NMSE (dB), aSAM
(rad), acSSIM, ERGAS, iterations, converged flag, wall time, ms/iteration, the NMSE margin
over the better baseline (dB) and each instrument's C-statistic over its expectation at the
result (:mod:`xfusion.goodness`; ~1 when the fit is as good as the noise allows);
writes the rows as JSON (``--json``). Timings are wall-clock on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np

import xfusion as xf
from xfusion.baselines import baseline_report

# The paper's own per-scenario settings (Lascar et al. 2025, §3.4.2): J1 = 1 and constant
# k = 0.5 for the realistic model. Off by default: xfusion's defaults are used everywhere
# (with J1 = 1 the wavelet iteration drifts instead of converging, docs/solver.md).
PAPER_SETTINGS = {
    "realistic_1kev_rebin": {"J1": 1, "k": 0.5},
}
SETTINGS: dict = {}


def ratio(ds) -> float:
    return ds.sizes["x"] and ds.sizes["x_coarse"] / ds.sizes["x"]


def run(name: str, regs: list[str], scale: float, converge: int, seed: int,
        max_iter: int | None = None, rank: int | str | None = None) -> list[dict]:
    t = time.perf_counter()
    ds = xf.simulate.scenario(name, seed=seed, scale=scale)
    t_sim = time.perf_counter() - t
    d = ratio(ds)
    rows = []
    base = baseline_report(ds, ratio=d)
    print(f"\n## {name} (scale {scale}, simulated in {t_sim:.1f} s; ERGAS ratio {d:.3g})")
    print(f"{'method':>10} {'NMSE':>7} {'aSAM':>7} {'acSSIM':>7} {'ERGAS':>7} {'iter':>5} "
          f"{'conv':>4} {'wall s':>7} {'ms/it':>7} {'margin':>6} {'C/E X':>6} {'C/E Y':>6}")
    for k, r in base.items():
        print(f"{k:>10} {r['NMSE']:7.2f} {r['aSAM']:7.3f} {r['acSSIM']:7.4f} {r['ERGAS']:7.3f}")
        rows.append({"scenario": name, "method": k, **r})
    best = max(r["NMSE"] for r in base.values())
    for reg in regs:
        kw = SETTINGS.get(name, {}) if reg in ("w2d1d", "lrw2d") else {}
        if reg == "lrw2d":
            kw = {k: v for k, v in kw.items() if k != "J1"}
        if max_iter and reg in ("w2d1d", "lrw2d"):
            kw = {**kw, "max_iter": max_iter}
        if rank is not None and reg in ("lr", "lrs", "lrw2d"):
            kw = {**kw, "rank": rank}
        t0 = time.perf_counter()
        Z = xf.fuse(ds, reg, progress=False, **kw)
        wall = time.perf_counter() - t0
        it = Z.attrs["iterations"]
        it_time = Z.attrs.get("iteration_time", wall)
        rep = xf.metrics.report(Z, ds.Z_true, ratio=d)
        row = {"scenario": name, "method": reg, **rep, "iterations": it,
               "converged": Z.attrs["converged"], "wall_s": wall,
               "setup_s": Z.attrs.get("setup_time", float("nan")),
               "ms_per_iter": 1e3 * it_time / max(it, 1),
               # dB over the better single-instrument baseline (the issue's >= 3 dB target)
               "margin_dB": rep["NMSE"] - best}
        for inst in ("X", "Y"):     # goodness of fit: C-statistic over its expectation
            c, e = Z.attrs.get(f"cstat_{inst}"), Z.attrs.get(f"cstat_{inst}_expected")
            row[f"C/E_{inst}"] = c / e if c is not None and e else float("nan")
        if "rank" in kw:
            row["rank"] = Z.attrs["rank"]
            kw = {**kw, "rank": Z.attrs["rank"]}      # the long run: the rank chosen
        if converge > 1:
            Zl = xf.fuse(ds, reg, progress=False, max_iter=converge * max(it, 1), tol=1e-14,
                         **kw)
            row["NMSE_long"] = xf.metrics.nmse(Zl, ds.Z_true)
            row["iterations_long"] = Zl.attrs["iterations"]
        rows.append(row)
        extra = (f"  | {row['iterations_long']} it: NMSE {row['NMSE_long']:.2f}"
                 if "NMSE_long" in row else "")
        extra += f"  (rank {row['rank']})" if "rank" in row else ""
        print(f"{reg:>10} {rep['NMSE']:7.2f} {rep['aSAM']:7.3f} {rep['acSSIM']:7.4f} "
              f"{rep['ERGAS']:7.3f} {it:5d} {row['converged']:4d} {wall:7.1f} "
              f"{row['ms_per_iter']:7.1f} {row['margin_dB']:+6.2f} {row['C/E_X']:6.2f} "
              f"{row['C/E_Y']:6.2f}{extra}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", nargs="+", default=list(xf.simulate.SCENARIOS))
    p.add_argument("--regularizers", nargs="+", default=["lr", "lrs", "lrw2d", "w2d1d"])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--converge", type=int, default=0,
                   help="also run N× more iterations (tol 1e-14) and report that NMSE")
    p.add_argument("--max-iter", type=int, default=None,
                   help="cap on iterations for the wavelet regularizers (w2d1d, lrw2d)")
    p.add_argument("--paper-settings", action="store_true",
                   help="use the paper's per-scenario wavelet settings instead of the defaults")
    p.add_argument("--rank", default=None,
                   help="rank of lr/lrs/lrw2d: a number or 'auto' (default: fuse's, 10)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.paper_settings:
        SETTINGS.update(PAPER_SETTINGS)
    warnings.filterwarnings("ignore")
    print(f"machine: {platform.node()} {platform.machine()}, {platform.python_version()}, "
          f"numpy {np.__version__}, xfusion {xf.__version__}")
    rows = []
    for name in a.scenarios:
        rows += run(name, a.regularizers, a.scale, a.converge, a.seed, a.max_iter,
                    None if a.rank is None else a.rank if a.rank == "auto" else int(a.rank))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
