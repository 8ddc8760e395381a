"""Calibration and cost of the parametric-bootstrap errors of a fused cube (docs/uncertainty.md).

For each (scenario, regularizer): simulate at ``--scale``, fuse, bootstrap ``--n-draws`` refits
(:func:`xfusion.bootstrap`), and score the errors against the simulation's truth ``Z_true``:

* voxels: the fraction of voxels whose truth lies within ±1σ of Z (σ: the bootstrap std, the
  bias-inflated σ of ``correction="bias"``, and the Fisher reference), within ±1σ of the
  bias-corrected ("basic bootstrap") centre 2Z − mean(Z*), and quantiles of the error in units
  of σ, (Z − Z_true)/σ, and of the bootstrap's own bias estimate (mean(Z*) − Z)/σ;
* regions: the same fraction for region-summed spectra (tiled square regions of 2×2 pixels,
  one Y pixel, 2×2 Y pixels), per fine channel and summed to X's coarse channels and to 10
  channels (a Gaussian interval covers 0.683);
* lines (when ``xfusion.lines`` is there): the fraction of pixels whose truth velocity lies
  within ±1σ_v of the fused cube's (σ_v from the draws);
* cost: the first fit's wall time and iterations against each refit's.

Run (about 5 minutes on 2 cores)::

    python benchmarks/bench_uncertainty.py                 # both scenarios, scale 0.5
    python benchmarks/bench_uncertainty.py --json out.json --n-draws 16 --scale 0.5
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import xfusion as xf
from xfusion.uncertainty import region_error

CASES = [("gaussian_1kev_rebin", "lrs"), ("gaussian_1kev_rebin", "w2d1d"),
         ("realistic_1kev_rebin", "w2d1d"), ("realistic_1kev_rebin", "lrs")]
GAUSS = 0.6827


def _cover(err, sd):
    sd = np.asarray(sd)
    ok = sd > 0
    return float(np.mean(np.abs(np.asarray(err))[ok] <= sd[ok]))


def _q(a, qs=(5, 16, 50, 84, 95)):
    a = np.asarray(a)
    a = a[np.isfinite(a)]
    return {f"p{q}": round(float(np.percentile(a, q)), 3) for q in qs}


def _tiles(cube, k):
    """Sum (..., L, M, N) over k×k pixel tiles → (..., L, M//k, N//k)."""
    *lead, L, M, N = cube.shape
    c = cube[..., : M // k * k, : N // k * k]
    return c.reshape(*lead, L, M // k, k, N // k, k).sum(axis=(-3, -1))


def _ebin(s, r):
    """Sum r consecutive channels of (..., L, a, b)."""
    *lead, L, a, b = s.shape
    return s[..., : L // r * r, :, :].reshape(*lead, L // r, r, a, b).sum(axis=-3)


def regions(Z, Zt, D, vM, vL):
    """Coverage of region-summed spectra per region size and channel binning."""
    z, t, d = (np.asarray(a, np.float64) for a in (Z, Zt, D))
    out = {}
    for label, k in (("2x2 px", 2), (f"Y pixel ({vM}x{vM})", vM), (f"2x2 Y px ({2 * vM}x{2 * vM})",
                                                                    2 * vM)):
        sz, st, sd = _tiles(z, k), _tiles(t, k), _tiles(d, k)
        row = {}
        bins = (("fine", 1), (f"X channels (/{vL})", vL), ("10 channels", z.shape[0] // 10))
        for blab, r in bins:
            bz, bt, bd = (_ebin(a, r) for a in (sz, st, sd))
            bm = bd.mean(axis=0)
            sig = bd.std(axis=0, ddof=1)
            B = bd.shape[0]
            bias = bm - bz
            infl = np.sqrt(sig**2 + np.maximum(bias**2 - sig**2 / B, 0))
            ratio = np.abs(bz - bt) / np.maximum(sig, 1e-300)
            row[blab] = {"n_bins": int(bz.size),
                         "cover": round(_cover(bz - bt, sig), 3),
                         "cover_basic": round(_cover(2 * bz - bm - bt, sig), 3),
                         "cover_bias": round(_cover(bz - bt, infl), 3),
                         "median |err|/sigma": round(float(np.median(ratio)), 2)}
        out[label] = row
    return out


def velocities(Z, Zt, D, lines=("O VIII", "Ne IX")):
    try:
        from xfusion.lines import line_map
    except ImportError:
        return None
    out = {}
    for name in lines:
        try:
            m = line_map(Z, name, draws=D)
            mt = line_map(Zt, name, min_snr=0)
        except Exception as e:  # noqa: BLE001 - report, do not stop the benchmark
            out[name] = f"failed: {e}"
            continue
        v, ve, vt = (np.asarray(a, float) for a in (m.velocity, m.velocity_err, mt.velocity))
        ok = np.isfinite(v) & np.isfinite(ve) & np.isfinite(vt) & (ve > 0)
        out[name] = {"n_pixels": int(ok.sum()),
                     "cover": round(_cover((v - vt)[ok], ve[ok]), 3) if ok.any() else None,
                     "median sigma_v (km/s)": round(float(np.median(ve[ok])), 1)
                     if ok.any() else None}
    return out


def run_case(name, reg, scale, n_draws, seed):
    ds = xf.simulate.scenario(name, seed=seed, scale=scale)
    f = xf.rebin_factors(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xf.FitWarning)
        Z = xf.fuse(ds, reg, progress=False)
    t0 = time.perf_counter()
    D = xf.bootstrap(ds, Z, n_draws=n_draws, seed=seed, progress=True)
    t_boot = time.perf_counter() - t0
    t1 = time.perf_counter()
    F = xf.uncertainty(ds, Z, method="fisher")
    t_fisher = time.perf_counter() - t1
    z, t, d = (np.asarray(a, np.float64) for a in (Z, ds.Z_true, D))
    sd = d.std(axis=0, ddof=1)
    dm = d.mean(axis=0)
    S = np.asarray(xf.uncertainty(ds, Z, draws=D, correction="bias"), np.float64)
    fis = np.asarray(F, np.float64)
    # region_error on one region equals the direct computation (a consistency check)
    mask = np.zeros((ds.sizes["y"], ds.sizes["x"]), bool)
    mask[: f.vM, : f.vN] = True
    re_ = np.asarray(region_error(D, mask))
    direct = d[:, :, : f.vM, : f.vN].sum(axis=(2, 3)).std(axis=0, ddof=1)
    assert np.allclose(re_, direct, rtol=1e-10)
    indep = np.sqrt((sd[:, : f.vM, : f.vN] ** 2).sum(axis=(1, 2)))
    res = {
        "scenario": name, "regularizer": reg, "scale": scale, "n_draws": n_draws,
        "shape": list(z.shape), "nmse_dB": round(xf.metrics.nmse(Z, ds.Z_true), 2),
        "cost": {"first_fit_s": round(Z.attrs["wall_time"], 2),
                 "first_fit_iterations": int(Z.attrs["iterations"]),
                 "per_draw_s": round(float(D.wall_time.mean()), 2),
                 "per_draw_iterations": round(float(D.iterations.mean()), 1),
                 "draws_converged": int(D.converged.sum()),
                 "draws_fit_warning": int(D.fit_warning.sum()),
                 "bootstrap_total_s": round(t_boot, 1), "fisher_s": round(t_fisher, 3)},
        "voxels": {
            "cover_Z": round(_cover(z - t, sd), 3),
            "cover_basic (2Z-mean*)": round(_cover(2 * z - dm - t, sd), 3),
            "cover_bias_inflated": round(_cover(z - t, S), 3),
            "cover_fisher": round(_cover(z - t, fis), 3),
            "refits within mean*±sigma": round(float(np.mean(np.abs(d - dm) <= sd)), 3),
            "(Z-Z_true)/sigma": _q((z - t) / np.maximum(sd, 1e-300)),
            "(mean*-Z)/sigma": _q((dm - z) / np.maximum(sd, 1e-300)),
            "fisher/bootstrap sigma": _q(fis / np.maximum(sd, 1e-300), (16, 50, 84)),
        },
        "regions": regions(z, t, d, f.vM, f.vL),
        "region_vs_independent (Y pixel, median ratio)":
            round(float(np.median(re_ / np.maximum(indep, 1e-300))), 2),
        "velocities": velocities(Z, ds.Z_true, D),
    }
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--n-draws", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", default=",".join(f"{s}:{r}" for s, r in CASES),
                    help="comma-separated scenario:regularizer")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    out = []
    for case in a.cases.split(","):
        name, reg = case.split(":")
        r = run_case(name, reg, a.scale, a.n_draws, a.seed)
        print(json.dumps(r, indent=1), flush=True)
        out.append(r)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
