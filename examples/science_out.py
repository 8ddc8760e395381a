"""From a simulated observation to a velocity map and a fitted region spectrum, with errors.

    python examples/science_out.py [--scale 0.5] [--draws 8] [--out science-out]

Steps (docs/walkthrough.md): simulate ``gaussian_6kev`` (an Fe K remnant on the sky), fuse it,
estimate the fused cube's errors by a parametric bootstrap, map the Fe XXV velocity with its
error, write the spectrum of a 25″ circle as OGIP files, and fit a Gaussian line to it.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from astropy.io import fits
from scipy.optimize import curve_fit

import xfusion as xf


def line(E, dE, c, n, e0, s):
    """A constant c plus a Gaussian line of total flux n (photons cm⁻² s⁻¹), per channel of
    width dE (keV)."""
    return c + n * np.exp(-0.5 * ((E - e0) / s) ** 2) / (np.sqrt(2 * np.pi) * s) * dE


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--out", default="science-out")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)

    # 1. a problem and its fused cube (on the sky: Z.ra, Z.dec, Z.attrs["wcs"])
    ds = xf.simulate.scenario("gaussian_6kev", seed=0, scale=a.scale)
    Z = xf.fuse(ds, "w2d1d", progress=False)
    # 2. errors: refits of Poisson redraws of the fitted expected counts
    draws = xf.bootstrap(ds, Z, n_draws=a.draws, progress=False)
    Z_err = xf.uncertainty(ds, Z, draws=draws)
    # 3. the Fe XXV velocity map with errors from the same draws
    lm = xf.lines.line_map(Z, "Fe XXV", draws=draws)
    ok = lm.velocity.notnull()
    print(f"Fe XXV velocity in {int(ok.sum())} of {ok.size} pixels: median "
          f"{float(lm.velocity.median()):+.0f} km/s, median error "
          f"{float(lm.velocity_err.median()):.0f} km/s")
    # 4. the spectrum of a 25" circle around the brightest pixel, for XSPEC / Sherpa / gammapy
    iy, ix = np.unravel_index(int(np.argmax(Z.sum("energy").values)), Z.shape[1:])
    ra, dec = float(Z.ra[iy, ix]), float(Z.dec[iy, ix])
    files = xf.io.write_spectrum(Z, (ra, dec, 25.0), os.path.join(a.out, "bright.pha"),
                                 draws=draws, overwrite=True)
    xf.io.write_fits_cube(Z, os.path.join(a.out, "cube.fits"), sigma=Z_err, overwrite=True)
    # 5. fit a Gaussian line on a constant to the spectrum read back (weighted least squares)
    with fits.open(files["pha"]) as pha:
        spec, bins = pha["SPECTRUM"].data, pha["EBOUNDS"].data
        exposure = pha["SPECTRUM"].header["EXPOSURE"]
    area = fits.getdata(files["arf"], "SPECRESP")["SPECRESP"]
    flux = spec["COUNTS"] / (exposure * area)
    err = spec["STAT_ERR"] / (exposure * area)
    E = 0.5 * (bins["E_MIN"] + bins["E_MAX"])
    dE = bins["E_MAX"] - bins["E_MIN"]
    win = np.abs(E - 6.68) < 0.08
    p0 = (float(np.median(flux[win])), float(flux[win].sum()), 6.68, 0.01)
    popt, pcov = curve_fit(lambda e, *q: line(e, dE[win], *q), E[win], flux[win], p0=p0,
                           sigma=err[win], absolute_sigma=True, maxfev=20000)
    resid = (flux[win] - line(E[win], dE[win], *popt)) / err[win]
    chi2 = float(resid @ resid) / max(int(win.sum()) - 4, 1)
    # a single Gaussian on a blended complex may not describe the spectrum: the errors are
    # scaled by sqrt(chi2/dof) when it exceeds 1 (the fit's own scatter, not only STAT_ERR's)
    perr = np.sqrt(np.diag(pcov) * max(chi2, 1.0))
    v = 299792.458 * (1 - popt[2] / xf.lines.line_energy("Fe XXV"))
    print(f"region spectrum: line at {popt[2]:.4f} ± {perr[2]:.4f} keV "
          f"({v:+.0f} km/s), width {1e3 * abs(popt[3]):.1f} ± {1e3 * perr[3]:.1f} eV, "
          f"flux {popt[1]:.3g} ± {perr[1]:.2g} photons cm-2 s-1; chi2/dof {chi2:.2f}")
    print(f"wrote {', '.join(sorted(os.listdir(a.out)))} to {a.out}/")
    return {"velocity": lm, "fit": popt, "fit_err": perr, "files": files}


if __name__ == "__main__":
    main()
