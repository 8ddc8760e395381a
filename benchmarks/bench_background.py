"""Backgrounds: the fused flux with a known background ignored vs modelled (docs/real_data.md).

A simulated scenario gets a spatially flat, spectrally flat background making 30 % of X's and
50 % of Y's expected counts (``xf.simulate.add_background``: the source's counts are those of
the scenario, the background's drawn on top). It is then fused three times per regularizer:

* ``clean``: the scenario without any background (the reference: same source counts);
* ``ignored``: the counts with the background, the model without it (the old behaviour: the
  background is fitted as sky);
* ``modelled``: the counts with the background and ``background_X`` / ``background_Y`` in
  the problem (μ = K Z + B).

Printed per run: the fused total flux / the true total, the same over a faint region (the
quarter of the pixels with the lowest true broadband flux), NMSE (dB, higher is better) and
C/E of both instruments; and for ``modelled`` the fraction of the background's flux left in
the result, (F_modelled − F_clean) / (F_ignored − F_clean), in total and in the faint region
(0: all of it removed; 1: as if ignored).

Run (about 15 s on one core)::

    python benchmarks/bench_background.py
    python benchmarks/bench_background.py --scale 0.25 --fraction-x 0.5 --fraction-y 0.8
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import xfusion as xf


def _row(Z, truth, faint) -> dict:
    """Flux ratios (total and faint region), NMSE and C/E of a fused cube."""
    z, t = np.asarray(Z.values, np.float64), np.asarray(truth.values, np.float64)
    a = Z.attrs
    return {"flux": float(z.sum() / t.sum()),
            "faint": float(z[:, faint].sum() / t[:, faint].sum()),
            "NMSE": float(xf.metrics.report(Z, truth)["NMSE"]),
            "CE_X": a["cstat_X"] / a["cstat_X_expected"],
            "CE_Y": a["cstat_Y"] / a["cstat_Y_expected"],
            "iterations": int(a["iterations"]), "time": float(a["wall_time"])}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="gaussian_1kev_rebin")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--fraction-x", type=float, default=0.3)
    ap.add_argument("--fraction-y", type=float, default=0.5)
    ap.add_argument("--regularizers", default="lrs,w2d1d")
    ap.add_argument("--max-iter", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    clean = xf.simulate.scenario(args.scenario, seed=args.seed, scale=args.scale)
    ds = xf.simulate.add_background(clean, args.fraction_x, args.fraction_y,
                                    seed=args.seed + 1)
    ignored = ds.drop_vars(["background_X", "background_Y"])
    truth = ds.Z_true
    img = truth.sum("energy").values
    faint = img <= np.quantile(img, 0.25)
    print(f"{args.scenario} scale {args.scale}: Z {ds.sizes['energy']}×{ds.sizes['y']}×"
          f"{ds.sizes['x']}; background {args.fraction_x:.0%} of X's counts "
          f"({float(ds.background_X.sum()):.0f} of {int(ds.X.sum())}), {args.fraction_y:.0%} of "
          f"Y's ({float(ds.background_Y.sum()):.0f} of {int(ds.Y.sum())}); faint region: "
          f"{int(faint.sum())} of {faint.size} pixels ({time.perf_counter() - t0:.1f} s)")
    print(f"{'regularizer':<12}{'run':<10}{'flux/true':>10}{'faint/true':>12}{'NMSE dB':>9}"
          f"{'C/E X':>7}{'C/E Y':>7}{'iter':>6}{'s':>6}")
    out: dict = {}
    for reg in args.regularizers.split(","):
        for name, problem in (("clean", clean), ("ignored", ignored), ("modelled", ds)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", xf.FitWarning)
                Z = xf.fuse(problem, reg, max_iter=args.max_iter, progress=False)
            r = out.setdefault(reg, {})[name] = _row(Z, truth, faint)
            print(f"{reg:<12}{name:<10}{r['flux']:>10.4f}{r['faint']:>12.4f}{r['NMSE']:>9.2f}"
                  f"{r['CE_X']:>7.2f}{r['CE_Y']:>7.2f}{r['iterations']:>6d}{r['time']:>6.1f}")
        o = out[reg]
        left = {k: (o["modelled"][k] - o["clean"][k]) / (o["ignored"][k] - o["clean"][k])
                for k in ("flux", "faint")}
        o["background_left"] = left
        print(f"{reg:<12}background left in the modelled fit: {left['flux']:.2%} of its flux "
              f"in total, {left['faint']:.2%} in the faint region")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return out


if __name__ == "__main__":
    main()
