import numpy as np
import pytest

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


def consistent_problem(L=24, l=6, M=9, N=12, v=3, counts=2e4, seed=0, noise=False):
    """A small problem whose data come from its own Z_true (rounded or Poisson counts)."""
    base = tiny_problem(L=L, l=l, M=M, N=N, v=v, seed=seed)
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[0:M, 0:N]
    E = base.energy.values
    spec_a = 1 + np.exp(-0.5 * ((E - E.mean()) / 0.03) ** 2)
    spec_b = 1 + 2 * np.exp(-0.5 * ((E - E[L // 4]) / 0.02) ** 2)
    img_a = np.exp(-((yy - M / 3) ** 2 + (xx - N / 3) ** 2) / 8)
    img_b = np.exp(-((yy - 2 * M / 3) ** 2 + (xx - 2 * N / 3) ** 2) / 5)
    Z = spec_a[:, None, None] * img_a + spec_b[:, None, None] * img_b + 0.05
    model = xf.operators.ForwardModel.from_dataset(base)
    scale = counts / model.mu_X(Z).mean()
    Z = Z * scale
    mx, my = model.forward(Z)
    draw = (lambda a: rng.poisson(a)) if noise else np.round
    return base.assign(
        X=base.X.copy(data=draw(mx).astype(np.int64)),
        Y=base.Y.copy(data=draw(my).astype(np.int64)),
        Z_true=base.Z_true.copy(data=Z),
        X_true=(base.X.dims, mx), Y_true=(base.Y.dims, my),
    )
