"""Single-instrument baselines ("X only", "Y only") of the four scenarios, full size.

Every fusion result is to be compared with what each instrument gives alone
(:mod:`xfusion.baselines`). This prints the four metrics of both baselines for each scenario of
the paper's Table 1 at full size, seed 0, as a Markdown table (the one in docs/scenarios.md).

ERGAS uses the pixel-size ratio d = 1/sqrt(vM·vN) that :func:`xfusion.baselines.baseline_report`
derives by default: 1/3 for the ``*_rebin`` scenarios (10″ vs 30″ pixels), 1 otherwise.

Run::

    python benchmarks/bench_baselines.py [--scale 1.0] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import xfusion as xf
from xfusion.baselines import baseline_report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)

    results = {}
    print(f"machine: {machine()}")
    print(f"xfusion {xf.__version__}, scale {args.scale}, seed {args.seed}\n")
    print("| scenario | baseline | NMSE (dB) ↑ | aSAM (rad) ↓ | acSSIM ↓ | ERGAS ↓ |")
    print("|---|---|---:|---:|---:|---:|")
    for name in xf.simulate.SCENARIOS:
        t0 = time.perf_counter()
        ds = xf.simulate.scenario(name, seed=args.seed, scale=args.scale)
        t_sim = time.perf_counter() - t0
        f = xf.rebin_factors(ds)
        ratio = 1.0 / (f.vM * f.vN) ** 0.5
        t0 = time.perf_counter()
        rep = baseline_report(ds)  # ratio=None: the same d as above
        t_rep = time.perf_counter() - t0
        results[name] = {"ergas_ratio": ratio, "simulate_s": t_sim, "report_s": t_rep, **rep}
        for base, r in rep.items():
            print(f"| `{name}` | {base} | {r['NMSE']:.2f} | {r['aSAM']:.4f} | "
                  f"{r['acSSIM']:.4f} | {r['ERGAS']:.4f} |")
        del ds
    print()
    for name, r in results.items():
        print(f"{name}: ERGAS d = {r['ergas_ratio']:.4g}; simulate {r['simulate_s']:.1f} s, "
              f"baselines + metrics {r['report_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "scale": args.scale, "seed": args.seed,
                       "results": results}, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
