"""How many spectra Y needs: goodness of fit of a rank-r NMF of Y alone, per scenario.

Run::

    python benchmarks/bench_rank.py [--scenarios ...] [--ranks 5 10 15 20 30] [--scale 1]

For each rank r the script takes the low-rank subspace the fusion uses
(:func:`xfusion.parametrization.nmf_subspace`, r non-negative spectra learnt from Y), refits the
coefficients of every Y pixel by Poisson EM (200 updates), and prints the C-statistic of Y's
counts against its expectation under the fitted model (:mod:`xfusion.goodness`): a ratio
near 1 (within a few σ) means r spectra describe Y to the noise; well above 1, the low-rank
regularizers (``lr``, ``lrs``, ``lrw2d``) at that rank carry a bias no solver removes.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import xfusion as xf
from xfusion.parametrization import nmf_subspace, subspace_fit


def y_fit(ds, rank: int, n_coef: int = 200) -> dict:
    """Goodness of fit of Y by ``rank`` NMF spectra with refitted non-negative coefficients."""
    aY = np.asarray(ds.arf_Y.values)
    aY = aY if aY.ndim == 1 else aY.mean(axis=(1, 2))
    wY = float(ds.Y.attrs["exposure"]) * aY
    Y = np.asarray(ds.Y.values, dtype=np.float64)
    return subspace_fit(Y, wY, nmf_subspace(Y, wY, rank), n_coef)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=list(xf.simulate.SCENARIOS))
    p.add_argument("--ranks", nargs="+", type=int, default=[5, 10, 15, 20, 30])
    p.add_argument("--scale", type=float, default=1.0)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    print("C/E[C] of Y fitted by r NMF spectra (and (C - E[C]) / σ)")
    for scen in a.scenarios:
        ds = xf.simulate.scenario(scen, seed=0, scale=a.scale)
        t0 = time.perf_counter()
        cells = []
        for r in a.ranks:
            g = y_fit(ds, r)
            z = (g["cstat"] - g["expected"]) / g["sigma"]
            cells.append(f"r={r}: {g['ratio']:.3f} ({z:+.0f}σ)")
        print(f"{scen:<22} " + "  ".join(cells) + f"   [{time.perf_counter() - t0:.1f} s]",
              flush=True)


if __name__ == "__main__":
    main()
