"""From event files and calibration files to a fused cube.

No archive data can be downloaded here, so the script first *writes* realistic files from a
simulated sky (``xf.simulate.scenario("realistic_1kev_rebin", scale=0.4)``: an 18×18-pixel,
3′×3′ patch of a supernova remnant seen by a 6×6 Resolve array):

* ``pn_evt.fits`` — an XMM-Newton EPIC-pn event list (``X``/``Y`` sky columns in 0.05″ units,
  ``PI`` in eV, ``PATTERN``, ``FLAG``), photons redistributed by the RMF below;
* ``pn.rmf``, ``pn.arf`` — an OGIP RMF (5 eV channels starting at 0, variable-length rows) and
  ARF with the scenario's EPIC-pn-like response and effective area;
* ``rsl_evt.fits`` — a XRISM Resolve event list (``PIXEL`` 0–35, ``PI`` in 0.5 eV channels,
  ``ITYPE``; a roll of 30° in ``PA_NOM``; low-resolution grades and calibration-pixel events
  mixed in, to be screened out);
* ``rsl.arf`` and ``rsl_psf.fits`` — Resolve's effective area and a King PSF image sampled at 2″.

It then runs the same code a user runs on archive files: :func:`xfusion.io.from_files` bins
X's events on a grid cut from Resolve's array (3×3 pixels of 10″ per Resolve pixel, rolled like
the array), puts the RMF and ARFs on the problem's energy grid (0.5–1.4 keV in 2.5 eV bins; X
has 60 channels of 15 eV), resamples the PSF, and returns a validated problem; finally
:func:`xfusion.fuse` fuses it and the result is compared with the truth.

Run::

    python examples/real_data.py [--out DIR] [--exposure-factor 0.1] [--no-fuse]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import xfusion as xf

POINTING = (350.85, 58.815)  # (RA, Dec) in degrees
ROLL = 30.0  # Resolve PA_NOM (deg)
BAND, L, VL = (0.5, 1.4), 360, 6  # Z: 2.5 eV bins (5 Resolve channels); X: 15 eV (3 RMF channels)
RMF_STEP = 0.005  # keV: EPIC-pn channel width


def write_calibration(out: str, spec) -> dict[str, str]:
    """RMF, ARFs and PSF file of the scenario's instruments."""
    edges = np.arange(0.0, 2.0 + RMF_STEP / 2, RMF_STEP)  # channels 0..399, 0-2 keV
    centres = 0.5 * (edges[1:] + edges[:-1])
    R = xf.simulate.response_epic(centres, edges, 1, spec.response_X_std)  # (channel, energy)
    true = centres >= 0.2 - 1e-9  # true energies 0.2-2 keV
    M = R[:, true].T
    M[M < 1e-7] = 0.0
    lo, hi = edges[:-1][true], edges[1:][true]
    files = {
        "rmf": xf.io.write_rmf(os.path.join(out, "pn.rmf"), lo, hi, M, edges[:-1], edges[1:],
                               first_channel=0, telescope="XMM", instrument="EPN",
                               overwrite=True),
        "arf_X": xf.io.write_arf(os.path.join(out, "pn.arf"), lo, hi,
                                 xf.simulate.area_epic_pn(centres[true]), telescope="XMM",
                                 instrument="EPN", overwrite=True),
        "arf_Y": xf.io.write_arf(os.path.join(out, "rsl.arf"), lo, hi,
                                 xf.simulate.area_resolve(centres[true]), telescope="XRISM",
                                 instrument="RESOLVE", overwrite=True),
    }
    return files


def write_events(out: str, ds, rmf_path: str, factor: float, rng) -> dict[str, str]:
    """Draw photons from the scenario's truth and write EPIC-pn and Resolve event lists."""
    Z = ds.Z_true.values  # photons cm-2 s-1 per voxel, (L_s, 18, 18), 10" pixels
    Es = np.r_[ds.energy_lo.values, ds.energy_hi.values[-1]]
    tX = ds.X.attrs["exposure"] * factor
    tY = ds.Y.attrs["exposure"] * factor

    # --- EPIC-pn: photons in the fine pixels, energies through the RMF
    mu = tX * ds.arf_X.values[:, None, None] * Z
    n = rng.poisson(mu)
    ie, iy, ix = (np.repeat(a, n[n > 0]) for a in np.nonzero(n))
    e_true = Es[ie] + rng.random(ie.size) * np.diff(Es)[ie]
    wz = xf.io.subdivide_wcs(xf.io.make_wcs(POINTING, 30.0, (6, 6), rotation=ROLL), 3)
    ra, dec = wz.wcs_pix2world(ix + rng.random(ix.size) - 0.5, iy + rng.random(iy.size) - 0.5, 0)
    rmf = xf.io.read_rmf(rmf_path)
    row = np.searchsorted(rmf["energy_hi"].values, e_true, side="right")
    cdf = np.cumsum(rmf.values, axis=1)
    chan = np.full(e_true.size, -1)
    for r in np.unique(row):
        k = row == r
        u = rng.random(k.sum())
        c = np.searchsorted(cdf[r], u, side="right")
        chan[k] = np.where(c < cdf.shape[1], c, -1)  # beyond the last channel: lost
    ok = chan >= 0
    pi_keV = rmf["e_min"].values[chan[ok]] + rng.integers(0, 5, ok.sum()) * 1e-3
    ra, dec = ra[ok], dec[ok]
    # the ARF counts singles and doubles (PATTERN <= 4) with FLAG == 0; add the events the
    # standard screening removes: triples/quadruples and flagged events, 10 % and 2 % more
    pattern = rng.choice(5, size=pi_keV.size, p=[0.7, 0.1, 0.1, 0.05, 0.05])
    flag = np.zeros(pi_keV.size, int)
    extra = rng.random(pi_keV.size) < 0.12
    pattern = np.r_[pattern, rng.choice([5, 6, 12], size=extra.sum())]
    flag = np.r_[flag, np.where(rng.random(extra.sum()) < 0.2, 0x1, 0)]
    pi_keV, ra, dec = np.r_[pi_keV, pi_keV[extra]], np.r_[ra, ra[extra]], np.r_[dec, dec[extra]]
    ev_X = xf.io.write_events(os.path.join(out, "pn_evt.fits"), "epic", energy=pi_keV + 1e-4,
                              ra=ra, dec=dec, pattern=pattern, flag=flag,
                              exposure=tX, pointing=(POINTING[0] + 0.02, POINTING[1] - 0.01),
                              detector="EPN", overwrite=True)

    # --- Resolve: the expected counts per array pixel are the scenario's Y_true
    n = rng.poisson(ds.Y_true.values * factor)  # (L_s, 6, 6)
    ie, iy, ix = (np.repeat(a, n[n > 0]) for a in np.nonzero(n))
    pixel = xf.io.RESOLVE_PIXEL_MAP[iy, ix]
    energy = Es[ie] + rng.random(ie.size) * np.diff(Es)[ie]
    # the ARF is for high-resolution primaries (ITYPE 0); add 25 % lower grades (Mp, Ms) and
    # Mn K-alpha photons of the calibration source in pixel 12, which screening removes
    extra = rng.random(ie.size) < 0.25
    n_cal = 2000
    pixel = np.r_[pixel, pixel[extra], np.full(n_cal, 12)]
    energy = np.r_[energy, energy[extra], rng.normal(5.895, 0.002, n_cal)]
    itype = np.r_[np.zeros(ie.size, int), rng.choice([1, 2], size=extra.sum()),
                  np.zeros(n_cal, int)]
    ev_Y = xf.io.write_events(os.path.join(out, "rsl_evt.fits"), "resolve", energy=energy,
                              pixel=pixel, itype=itype, exposure=tY, pointing=POINTING,
                              roll=ROLL, overwrite=True)
    return {"events_X": ev_X, "events_Y": ev_Y}


def truth_on_grid(ds, energy_edges: np.ndarray) -> np.ndarray:
    """The scenario's truth re-binned (flux-conserving) onto the problem's energy grid."""
    W = xf.io.overlap_matrix(energy_edges[:-1], energy_edges[1:], ds.energy_lo.values,
                             ds.energy_hi.values)
    W /= (ds.energy_hi - ds.energy_lo).values[None, :]
    return np.tensordot(W, ds.Z_true.values, axes=1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="real_data_files")
    ap.add_argument("--exposure-factor", type=float, default=0.1,
                    help="fraction of the scenario's exposures to simulate (file sizes)")
    ap.add_argument("--no-fuse", action="store_true")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    sim = xf.simulate.scenario("realistic_1kev_rebin", seed=args.seed, scale=0.4)
    spec = xf.simulate.spec("realistic_1kev_rebin")
    files = write_calibration(args.out, spec)
    beta = sim.attrs["psf_Y_king_beta"]
    rc = sim.attrs["psf_Y_king_rcore_arcsec"]
    # the simulated sky's PSF is the King profile on the scenario's kernel, renormalised there
    # (no wings beyond it): written on 2" pixels over the same extent, it is the whole PSF
    size = 5 * int(sim.attrs["psf_Y_size"])  # 5 × 2" per 10" pixel
    files["psf_Y"] = xf.io.write_psf(
        os.path.join(args.out, "rsl_psf.fits"),
        xf.kernels.king_psf(rc, beta, size=size, pixel_size=2.0, normalise="kernel"),
        pixel_size=2.0, overwrite=True)
    files.update(write_events(args.out, sim, files["rmf"], args.exposure_factor, rng))
    print(f"wrote {len(files)} files to {args.out}/ in {time.perf_counter() - t0:.1f} s")

    # ---- from here on, the same code runs on archive files
    t0 = time.perf_counter()
    ds = xf.io.from_files(
        events_X=files["events_X"], events_Y=files["events_Y"], rmf_X=files["rmf"],
        arf_X=files["arf_X"], arf_Y=files["arf_Y"], psf_Y=files["psf_Y"],
        energy_band=BAND, n_energy=L, vL=VL, pixel_size=10.0,
    )
    print(f"problem in {time.perf_counter() - t0:.1f} s: X {dict(ds.X.sizes)} "
          f"({int(ds.X.sum())} counts, {ds.X.attrs['exposure']:.0f} s), "
          f"Y {dict(ds.Y.sizes)} ({int(ds.Y.sum())} counts, {ds.Y.attrs['exposure']:.0f} s), "
          f"PSF {ds.psf_Y.shape}, roll {ds.attrs['rotation']:.1f}°")
    out = {"problem": ds}
    if args.no_fuse:
        return out
    t0 = time.perf_counter()
    Z = xf.fuse(ds, regularizer="lrs", max_iter=args.max_iter, progress=False)
    truth = truth_on_grid(sim, np.r_[ds.energy_lo.values, ds.energy_hi.values[-1]])
    scores = xf.metrics.report(Z, truth)
    print(f"fused in {time.perf_counter() - t0:.1f} s; against the truth: "
          + ", ".join(f"{k} {v:.3g}" for k, v in scores.items()))
    out.update(Z=Z, truth=truth, scores=scores)
    return out


if __name__ == "__main__":
    main()
