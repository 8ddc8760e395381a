"""Velocity maps from fused cubes against the single-instrument baselines.

For each field and line: the line map (``xf.lines.line_map``, default window and continuum) of
the truth ``Z_true`` is the reference; the velocity rms error over bright pixels is printed for
the fused cube (each regularizer), Y alone (``xfusion.baselines.y_only``: Y's channels, its
pixels spread over Z's) and X alone (``x_only``; only where X has Z's channels, vL = 1, else
its channels are wider than the window and it says nothing about velocities).

Bright pixels: those where the truth's line flux has S/N > 5 at Y's exposure as if Y's photons
were collected on Z's pixels (σ_j = √(Z_true,j / (t_Y A_Y,j)), propagated by ``line_map``).
A method's NaN estimates inside the mask (no positive line flux, or moments no line in the
window could give) are counted, ``(n)``; the rms of every method is over the same pixels, those
of the mask where all methods give a velocity (``common``), and ``true std`` is the spread of
the truth's velocities there.

Fields: the scenarios ``gaussian_6kev`` (X has Z's channels, 21 eV response) and
``gaussian_1kev_rebin`` (X's channels are 15 eV, 40 of Z's), and ``gaussian_6kev+shear``: the
same scenario with a velocity gradient added to the remnant, v_los += V·x/R (V = 3000 km/s,
x the cell's offset across the image, R the shell radius), every cell shifted.

    python benchmarks/bench_lines.py                       # scale 0.5, w2d1d and lrs
    python benchmarks/bench_lines.py --scale 1 --regularizers w2d1d
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from unittest import mock

import numpy as np

import xfusion as xf

LINES_OF = {
    "gaussian_6kev": ("Fe XXV", "Fe K"),
    "gaussian_6kev+shear": ("Fe XXV", "Fe K"),
    "gaussian_1kev_rebin": ("O VIII", "O VII", "Ne X", "Mg XI"),
    "realistic_1kev_rebin": ("O VIII", "O VII", "Ne X", "Mg XI"),
}


def field(name: str, scale: float, seed: int, shear: float = 3000.0):
    """A scenario, or (``+shear``) the scenario with a velocity gradient across the image."""
    base = name.split("+")[0]
    if not name.endswith("+shear"):
        return xf.simulate.scenario(base, seed=seed, scale=scale)
    make = xf.simulate.make_remnant

    def sheared(size=45, seed=xf.simulate.REMNANT_SEED):
        rem = make(size, seed)
        G = rem.shape[1]
        x = rem.pixel % G - (G - 1) / 2
        return replace(rem, v_los=rem.v_los + shear * x / (0.36 * G))

    with mock.patch.object(xf.simulate, "make_remnant", sheared):
        ds = xf.simulate.scenario(base, seed=seed, scale=scale)
    ds.attrs["velocity_shear_kms"] = shear
    return ds


def rms(est: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    d = (est - ref)[mask]
    return float(np.sqrt(np.mean(d**2))) if d.size else np.nan


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fields", nargs="+",
                   default=["gaussian_6kev", "gaussian_6kev+shear", "gaussian_1kev_rebin"])
    p.add_argument("--regularizers", nargs="+", default=["w2d1d", "lrs"])
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snr", type=float, default=5.0)
    a = p.parse_args(argv)
    warnings.simplefilter("ignore", xf.FitWarning)
    print("command: python benchmarks/bench_lines.py " + " ".join(sys.argv[1:] if argv is None
                                                                  else argv))
    print(f"scale {a.scale}, seed {a.seed}; velocity rms error (km/s) vs the truth's line map "
          f"over pixels with true line S/N > {a.snr:g} (pix) where every method gives one "
          f"(common); (n) = a method's NaN estimates in the mask")
    for name in a.fields:
        t0 = time.perf_counter()
        ds = field(name, a.scale, a.seed)
        fused = {}
        for reg in a.regularizers:
            t = time.perf_counter()
            fused[reg] = xf.fuse(ds, reg, progress=False)
            fused[reg].attrs["bench_wall"] = time.perf_counter() - t
        est = {"Y only": xf.baselines.y_only(ds)}
        vL = ds.sizes["energy"] // ds.sizes["energy_coarse"]
        if vL == 1:
            est["X only"] = xf.baselines.x_only(ds)
        est.update(fused)
        sig = np.sqrt(ds.Z_true / (ds.Y.attrs["exposure"] * ds.arf_Y)).transpose(
            *ds.Z_true.dims)
        print(f"\n## {name}  ({ds.sizes['energy']} channels, {ds.sizes['y']}x{ds.sizes['x']} "
              f"pixels; fuse wall s: "
              + ", ".join(f"{r} {z.attrs['bench_wall']:.1f} ({z.attrs['iterations']} it)"
                          for r, z in fused.items()) + ")")
        cols = list(est)
        print(f"{'line':>8} {'window keV':>15} {'pix':>5} {'common':>6} {'true std':>8} "
              + " ".join(f"{c:>12}" for c in cols)
              + " " + " ".join(f"{r + '/Y':>9}" for r in fused))
        for ln in LINES_OF[name]:
            try:
                ref = xf.lines.line_map(ds.Z_true, ln, sigma=sig, min_snr=0)
            except ValueError as e:
                print(f"{ln:>8}  skipped: {e}")
                continue
            mask = (ref.flux / ref.flux_err).values > a.snr
            mask &= np.isfinite(ref.velocity.values)
            w = ref.attrs["window"]
            head = f"{ln:>8} {w[0]:7.3f}-{w[1]:.3f} {int(mask.sum()):5d}"
            if mask.sum() < 10:
                print(head + "  fewer than 10 bright pixels")
                continue
            vt = ref.velocity.values
            v = {c: xf.lines.line_map(z, ln).velocity.values for c, z in est.items()}
            nan = {c: int((mask & ~np.isfinite(x)).sum()) for c, x in v.items()}
            common = mask & np.logical_and.reduce([np.isfinite(x) for x in v.values()])
            res = {c: rms(x, vt, common) for c, x in v.items()}
            print(head + f" {int(common.sum()):6d} {np.std(vt[common]):8.0f} "
                  + " ".join(f"{res[c]:7.0f} ({nan[c]:2d})" for c in v)
                  + " " + " ".join(f"{res[r] / res['Y only']:9.3f}" for r in fused))
        print(f"(field {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
