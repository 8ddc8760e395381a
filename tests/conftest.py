import numpy as np
import pytest
import xarray as xr

import xfusion as xf


def tiny_problem(L=24, l=6, M=9, N=12, v=3, seed=0, psf_energy=False, vignetting=False):
    """A small valid problem built directly from arrays."""
    rng = np.random.default_rng(seed)
    E = 0.5 + 0.01 * np.arange(L)
    R = xf.kernels.gaussian_response(E, 0.02, vL=L // l)
    psf = xf.kernels.gaussian_psf(1.3, size=5)
    if psf_energy:
        psf = np.stack([psf if e < L // 2 else xf.kernels.gaussian_psf(0.8, size=5)
                        for e in range(L)])
    ax = 100 + 20 * np.sin(3 * E)
    ay = 50 + 5 * np.cos(4 * E)
    if vignetting:
        yy, xx = np.mgrid[0:M, 0:N]
        ax = ax[:, None, None] * (1 - 0.01 * ((yy - M / 2) ** 2 + (xx - N / 2) ** 2) / M)[None]
    Z = rng.gamma(2.0, 1.0, (L, M, N)) * 1e-3
    X = rng.poisson(5.0, (l, M, N))
    Y = rng.poisson(5.0, (L, M // v, N // v))
    return xf.make_problem(X, Y, R, psf, ax, ay, exposure_X=2e3, exposure_Y=5e3, energy=E,
                           Z_true=Z)


@pytest.fixture
def problem():
    return tiny_problem()
