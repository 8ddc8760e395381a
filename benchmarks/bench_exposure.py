"""Exposure from the files: what the old reading of EPIC exposure costs the fused flux
(docs/real_data.md, "Exposure, GTIs and exposure maps").

A simulated scenario's X is redrawn as EPIC-pn sees a field on CCD 4, whose live time is 2 %
below that of CCD 1 (the largest ``LIVETInn`` of the file), through a vignetted telescope (an
``eexpmap``-like map in seconds: 1 on axis, 0.75 at the field's corners). The counts are written
as an EPIC event list (``CCDNR`` = 4, ``LIVETI01``/``LIVETI04``, no global ``EXPOSURE``) and the
map as a FITS image with a celestial WCS (2" pixels), then read back three ways:

* **old**: what xfusion did before (the largest ``LIVETInn`` — read here from the same file
  without its ``CCDNR`` column, which takes that path —, a 1-D ARF);
* **per CCD**: :func:`xfusion.io.read_events` now (the live time of the events' CCD), 1-D ARF;
* **per CCD + map**: and the (energy, y, x) area from the map
  (:func:`xfusion.io.area_from_expmaps`, what ``from_files(expmap_X=...)`` does).

Each problem (Y unchanged) is fused; printed: the total fused flux over the true total flux,
and the same for the X-only estimate (:func:`xfusion.baselines.x_only`, no fusion). Run (about a
minute on one core)::

    python benchmarks/bench_exposure.py
    python benchmarks/bench_exposure.py --scale 0.25 --regularizer w2d1d
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
from astropy.io import fits

import xfusion as xf

SUB = 5  # map pixels per Z pixel side


def vignetting(shape_map: tuple[int, int], drop: float) -> np.ndarray:
    """1 at the centre, ``1 - drop`` at the corners of the map (quadratic in radius)."""
    ny, nx = shape_map
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2) / (((ny - 1) / 2) ** 2 +
                                                                 ((nx - 1) / 2) ** 2)
    return 1 - drop * r2


def write_files(out: str, sim, X: np.ndarray, t1: float, t4: float, vig: np.ndarray, rng):
    """The EPIC event list of counts ``X`` (on CCD 4) and the exposure map ``t4 * vig``."""
    M, N = sim.sizes["y"], sim.sizes["x"]
    pix = float(sim.attrs["pixel_size_arcsec"])
    w = xf.io.make_wcs((83.63, 22.01), pix, (M, N))
    C = np.r_[sim.energy_lo.values[::sim.sizes["energy"] // sim.sizes["energy_coarse"]],
              sim.energy_hi.values[-1]]
    ie, iy, ix = (np.repeat(a, X[X > 0]) for a in np.nonzero(X))
    ra, dec = w.wcs_pix2world(ix + rng.uniform(-0.45, 0.45, ix.size),
                              iy + rng.uniform(-0.45, 0.45, iy.size), 0)
    energy = 0.5 * (C[ie] + C[ie + 1])
    ev = xf.io.write_events(os.path.join(out, "pn_evt.fits"), "epic", energy=energy, ra=ra,
                            dec=dec, ccd=np.full(ie.size, 4), exposure=None,
                            pointing=(83.63, 22.01), overwrite=True,
                            header={"LIVETI01": t1, "ONTIME01": t1 / 0.99,
                                    "LIVETI04": t4, "ONTIME04": t1 / 0.99})
    old = os.path.join(out, "pn_evt_noccd.fits")  # the same events without CCDNR: old reading
    with fits.open(ev) as h:
        cols = [c for c in h["EVENTS"].columns if c.name != "CCDNR"]
        new = fits.BinTableHDU.from_columns(cols, header=h["EVENTS"].header)
        fits.HDUList([h[0].copy(), new]).writeto(old, overwrite=True)
    wm = xf.io.make_wcs((83.63, 22.01), pix / SUB, (M * SUB, N * SUB))
    em = xf.io.write_expmap(os.path.join(out, "pn_expmap.fits"), t4 * vig, wm,
                            band=(float(C[0]), float(C[-1])), overwrite=True)
    return ev, old, em, w, C


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="gaussian_1kev_rebin")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--regularizer", default="lrs")
    ap.add_argument("--live-drop", type=float, default=0.02, help="CCD 4 below CCD 1")
    ap.add_argument("--vignetting", type=float, default=0.25, help="loss at the corners")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="directory for the files (default: temporary)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    sim = xf.simulate.scenario(args.scenario, seed=args.seed, scale=args.scale)
    base = sim.drop_vars(["X_true", "Y_true"], errors="ignore")
    M, N = base.sizes["y"], base.sizes["x"]
    t1 = float(base.X.attrs["exposure"])
    t4 = t1 * (1 - args.live_drop)
    vig = vignetting((M * SUB, N * SUB), args.vignetting).astype(np.float32).astype(float)
    rel = vig.reshape(M, SUB, N, SUB).mean(axis=(1, 3))  # the truth: the map's pixel means
    truth = base.assign(arf_X=(("energy", "y", "x"), base.arf_X.values[:, None, None] * rel))
    truth.X.attrs["exposure"] = t4
    mx, _ = xf.forward(truth, base.Z_true)
    rng = np.random.default_rng(args.seed + 1)
    X = rng.poisson(mx.values)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        os.makedirs(out, exist_ok=True)
        ev, ev_old, em, w, C = write_files(out, sim, X, t1, t4, vig, rng)
        kw = dict(energy_edges=C, wcs=w, shape=(M, N))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the old reading's "per-CCD exposures differ"
            X_old = xf.io.read_events(ev_old, "epic", **kw)
        X_new = xf.io.read_events(ev, "epic", **kw)
        assert (X_new.values == X).all() and (X_old.values == X).all()
        area = base.arf_X.values
        E = np.r_[base.energy_lo.values, base.energy_hi.values[-1]]
        a_map = xf.io.area_from_expmaps(em, area, X_new.attrs["exposure"], E, w, (M, N))
    print(f"{args.scenario} scale {args.scale}: Z {base.sizes['energy']}×{M}×{N}; X on CCD 4 "
          f"(LIVETI04 = {t4:.0f} s, {100 * args.live_drop:g} % below LIVETI01 = {t1:.0f} s), "
          f"vignetting {rel.min():.3f}–{rel.max():.3f}; X {int(X.sum())} counts, Y "
          f"{int(base.Y.sum())} counts ({time.perf_counter() - t0:.1f} s)")
    print(f"  exposure read: old {X_old.attrs['exposure']:.0f} s "
          f"({X_old.attrs['exposure_keyword']}), new {X_new.attrs['exposure']:.0f} s "
          f"({X_new.attrs['exposure_keyword']})")

    readings = {
        "old (largest LIVETInn, 1-D ARF)": (X_old.attrs["exposure"], area),
        "per CCD (1-D ARF)": (X_new.attrs["exposure"], area),
        "per CCD + exposure map": (X_new.attrs["exposure"], a_map),
    }
    true_total = float(base.Z_true.sum())
    res = {}
    for name, (t, a) in readings.items():
        ds = base.assign(X=(base.X.dims, X, {**base.X.attrs, "exposure": t}),
                         arf_X=(("energy",) if a.ndim == 1 else ("energy", "y", "x"), a))
        xf.validate(ds)
        t2 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FitWarning of the old reading's misfit
            Z = xf.fuse(ds, regularizer=args.regularizer, max_iter=args.max_iter,
                        progress=False)
        fused = float(Z.sum()) / true_total
        xonly = float(xf.baselines.x_only(ds).sum()) / true_total
        res[name] = {"fused": fused, "x_only": xonly}
        print(f"  {name:32s} fused / true flux {fused:.4f} ({100 * (fused - 1):+.2f} %), X only "
              f"{xonly:.4f} ({100 * (xonly - 1):+.2f} %), {Z.attrs.get('iterations', '?')} it, "
              f"{time.perf_counter() - t2:.1f} s")
    return res


if __name__ == "__main__":
    main()
