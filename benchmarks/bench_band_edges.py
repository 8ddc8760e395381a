"""Band edges: photons from outside Z's band in X's edge channels (docs/real_data.md).

The simulated remnant (its Fe K lines: Fe I 6.4, Fe XX–XXV 6.5–6.7, Fe XXVI 6.97 keV, Doppler
shifted by up to ±7000 km/s, so they cross both edges) is built over a band 0.3 keV wider on
each side than Z's 6–7 keV. X (20 eV channels) is drawn through an EPIC-pn-like response
(``xf.simulate.response_epic``: Gaussian core, 4 % low-energy shoulder) over the whole wide
band, so its edge channels also hold photons with true energies outside 6–7 keV; Y (5 eV bins,
Z's grid) is drawn on Z's band only. Both are fused on Z's band with the response on 6–7 keV:

* "off": every X channel in the likelihood (what xfusion did before ``observed_X``);
* "on": the channels of which more than 5 % of the expected counts come from outside the band
  for a flat spectrum left out (``xf.io.observed_channels`` on the wide RMF and the ARF, written
  and read back as OGIP files: what ``from_files`` does by default).

Printed: the out-of-band share of the first and last 20 eV channel, the channels left out, and
for ``lrs`` and ``w2d1d``, averaged over three noise draws of X and Y (with their range): Z / truth
summed over the field within 60 eV of each edge, the worst single 20 eV step of those 60 eV, and
the NMSE (dB, higher is better) of the whole cube.

Run (under a minute on one core)::

    python benchmarks/bench_band_edges.py
    python benchmarks/bench_band_edges.py --std-1kev 0.051   # the scenarios' broader response
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
from scipy import ndimage

import xfusion as xf

BAND = (6.0, 7.0)
MARGIN = 0.3      # keV of sky beyond each side of the band
DE = 0.005        # Z's bins (keV)
VL = 4            # Z bins per X channel: 20 eV channels
EDGE = 0.06       # keV: the edge zones reported


def sky(M: int, std_1kev: float):
    """Truth over the wide band, the wide response, areas and counts of both instruments."""
    lo, hi = BAND[0] - MARGIN, BAND[1] + MARGIN
    Lw = int(round((hi - lo) / DE))
    edges = np.linspace(lo, hi, Lw + 1)
    E = 0.5 * (edges[1:] + edges[:-1])
    rem = xf.simulate.make_remnant(M)
    Z = xf.simulate.remnant_cube(rem, edges, lsf_sigma=0.0014)     # Y's line spread, in Z
    Z = ndimage.gaussian_filter(Z, (0, 1.1, 1.1), mode="constant")  # X's PSF, in Z
    R = xf.simulate.response_epic(E, edges, VL, std_1kev)        # (Lw / VL, Lw)
    return edges, E, Z, R


def write_rmf_arf(d: str, edges: np.ndarray, R: np.ndarray, area: np.ndarray):
    """The wide response as an OGIP RMF (20 eV channels) and the ARF, read back."""
    C = edges[::VL]
    rmf = xf.io.write_rmf(os.path.join(d, "pn.rmf"), edges[:-1], edges[1:], R.T, C[:-1], C[1:],
                          first_channel=0, instrument="EPN")
    arf = xf.io.write_arf(os.path.join(d, "pn.arf"), edges[:-1], edges[1:], area,
                          instrument="EPN")
    return xf.io.read_rmf(rmf), xf.io.read_arf(arf)


def edge_ratios(Z, Zt) -> dict[str, float]:
    """Field-summed Z / truth within EDGE of each end, and the worst 20 eV step there."""
    e = Zt.energy.values
    out = {}
    for side, sel in (("low", e < BAND[0] + EDGE), ("high", e > BAND[1] - EDGE)):
        z = Z.values[sel].sum(axis=(1, 2))
        t = Zt.values[sel].sum(axis=(1, 2))
        steps = z.reshape(-1, VL).sum(1) / t.reshape(-1, VL).sum(1)
        out[side] = float(z.sum() / t.sum())
        out[side + "_worst"] = float(steps[np.argmax(np.abs(steps - 1))])
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=18, help="Z's pixels per side (3 per Y pixel)")
    ap.add_argument("--std-1kev", type=float, default=0.026,
                    help="X's response std at 1 keV (keV; 0.026: ~150 eV FWHM at 6.5 keV)")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--counts-X", type=float, default=50.0, help="mean counts per X bin")
    ap.add_argument("--counts-Y", type=float, default=10.0, help="mean counts per Y bin")
    ap.add_argument("--max-iter", type=int, default=400)
    ap.add_argument("--regularizers", default="lrs,w2d1d")
    ap.add_argument("--seeds", default="0,1,2", help="noise seeds of X and Y (comma-separated)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    M = args.size
    edges, E, Zw, Rw = sky(M, args.std_1kev)
    inb = (E > BAND[0]) & (E < BAND[1])
    cw = 0.5 * (edges[::VL][1:] + edges[::VL][:-1])
    cin = (cw > BAND[0]) & (cw < BAND[1])
    aX, aY = xf.simulate.area_epic_pn(E), xf.simulate.area_resolve(E)
    tX = 5e4

    # X: all true energies of the wide band through the wide response; Y: Z's band only
    fx = tX * aX[:, None, None] * Zw
    Xw = (Rw[cin] @ fx.reshape(E.size, -1)).reshape(-1, M, M)
    Xin = (Rw[cin][:, inb] @ fx[inb].reshape(inb.sum(), -1)).reshape(-1, M, M)
    k = args.counts_X / Xw.mean()
    Zw, Xw, Xin = Zw * k, Xw * k, Xin * k
    Z = Zw[inb]
    R = Rw[cin][:, inb]
    psf = xf.kernels.gaussian_psf(30.0, size=min(29, 2 * M - 1), pixel_size=10.0)
    Ez = np.linspace(*BAND, Z.shape[0] + 1)
    ci = np.flatnonzero(cin)
    C = edges[::VL][ci[0]:ci[-1] + 2]                            # X's channel edges on the band
    base = xf.make_problem(np.ones(Xw.shape, np.int64), np.ones((Z.shape[0], M // 3, M // 3),
                           np.int64), R, psf, aX[inb], aY[inb], exposure_X=tX, exposure_Y=1.0,
                           energy_edges=Ez, pixel_size=10.0, Z_true=Z)
    _, mY = xf.forward(base, base.Z_true)
    tY = args.counts_Y / float(mY.mean())
    share = 1 - Xin.sum(axis=(1, 2)) / Xw.sum(axis=(1, 2))
    print(f"Z {Z.shape[0]}×{M}×{M} on {BAND[0]:g}–{BAND[1]:g} keV, sky over "
          f"{edges[0]:g}–{edges[-1]:g} keV; X {Xw.shape[0]} channels of {VL * DE * 1e3:.0f} eV "
          f"({Xw.sum():.3g} counts), Y {M // 3}×{M // 3} pixels ({mY.values.sum() * tY:.3g} "
          f"counts); response std {args.std_1kev:g}·sqrt(E) keV")
    print(f"X's counts from outside the band: first channel {share[0]:.1%}, last {share[-1]:.1%}"
          f" (whole X: {1 - Xin.sum() / Xw.sum():.2%})")

    with tempfile.TemporaryDirectory() as d:
        rmf, arf = write_rmf_arf(d, edges, Rw, aX)
        obs = xf.io.observed_channels(rmf, arf, BAND, C, tolerance=args.tolerance)
    left = ~obs.values
    fr = obs.out_of_band.values
    print(f"observed_channels(tolerance={args.tolerance:g}): {int(left.sum())} of {obs.size} "
          f"channels left out ({int(left[: obs.size // 2].sum())} low, "
          f"{int(left[obs.size // 2:].sum())} high); out-of-band share of the first/last "
          f"channel for a flat spectrum {fr[0]:.1%} / {fr[-1]:.1%} "
          f"({time.perf_counter() - t0:.1f} s)")

    seeds = [int(v) for v in args.seeds.split(",")]
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        X = rng.poisson(Xw).astype(np.int64)
        Y = rng.poisson(mY.values * tY).astype(np.int64)
        kw = dict(exposure_X=tX, exposure_Y=tY, energy_edges=Ez, pixel_size=10.0, Z_true=Z)
        problems = {"off": xf.make_problem(X, Y, R, psf, aX[inb], aY[inb], **kw),
                    "on": xf.make_problem(X, Y, R, psf, aX[inb], aY[inb], observed_X=obs, **kw)}
        for reg in args.regularizers.split(","):
            for name, ds in problems.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", xf.FitWarning)
                    Zf = xf.fuse(ds, reg, max_iter=args.max_iter, progress=False)
                r = edge_ratios(Zf, ds.Z_true)
                r["NMSE"] = float(xf.metrics.nmse(Zf, ds.Z_true))
                r["iterations"] = int(Zf.attrs["iterations"])
                runs.setdefault(f"{reg} {name}", []).append(r)

    print(f"\nmean over noise seeds {args.seeds} (min–max); Z/truth summed over the field")
    print(f"{'':<12}{'low 60 eV':>20}{'worst 20 eV':>13}{'high 60 eV':>20}{'worst 20 eV':>13}"
          f"{'NMSE (dB)':>11}{'iters':>7}")
    rows = {}
    for key, rs in runs.items():
        m = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        span = {k: (min(r[k] for r in rs), max(r[k] for r in rs)) for k in ("low", "high")}
        rows[key] = {**m, "low_range": span["low"], "high_range": span["high"]}
        print(f"{key:<12}{m['low']:>8.3f} ({span['low'][0]:.3f}–{span['low'][1]:.3f})"
              f"{m['low_worst']:>13.3f}{m['high']:>8.3f} ({span['high'][0]:.3f}–"
              f"{span['high'][1]:.3f}){m['high_worst']:>13.3f}{m['NMSE']:>11.2f}"
              f"{m['iterations']:>7.0f}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return {"share_first": float(share[0]), "share_last": float(share[-1]),
            "left_out": int(left.sum()), "rows": rows}


if __name__ == "__main__":
    main()
