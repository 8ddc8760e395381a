import numpy as np
import pytest
from scipy.optimize import nnls

from xfusion.parametrization import nmf_subspace


def _rank3_counts(noise: bool, seed: int = 3):
    rng = np.random.default_rng(seed)
    L, m, n = 90, 7, 7
    E = np.linspace(0, 1, L)
    spectra = np.stack([np.exp(-0.5 * ((E - c) / 0.04) ** 2) + 0.02 for c in (0.2, 0.5, 0.8)],
                       1)
    maps = rng.gamma(2.0, 1.0, (3, m * n))
    w = np.linspace(20.0, 80.0, L)                 # t_Y A_Y varies over channels
    mu = w[:, None] * (spectra @ maps)
    Y = rng.poisson(mu) if noise else mu
    return Y.reshape(L, m, n).astype(float), w, spectra


@pytest.mark.parametrize("divergence", ["frobenius", "kl"])
def test_nmf_subspace_recovers_the_spectra_of_noiseless_counts(divergence):
    Y, w, _ = _rank3_counts(noise=False)
    V = nmf_subspace(Y, w, 3, divergence=divergence, n_iter=3000)
    assert V.shape == (90, 3) and (V >= 0).all()
    np.testing.assert_allclose(V.sum(0), 1.0)
    # the flux spectra of Y (mixtures of three spectra) are described by non-negative
    # combinations of the three learnt ones (the generators themselves need not be: a
    # non-negative factorisation is unique only up to cones that contain the data)
    F = (Y / w[:, None, None]).reshape(90, -1)
    worst = max(nnls(V, F[:, j])[1] / np.linalg.norm(F[:, j]) for j in range(F.shape[1]))
    assert worst < 1e-3, worst
    # with one component fewer it cannot be (the test has teeth)
    V2 = nmf_subspace(Y, w, 2, divergence=divergence, n_iter=3000)
    assert max(nnls(V2, F[:, j])[1] / np.linalg.norm(F[:, j]) for j in range(F.shape[1])) > 1e-2


def test_least_squares_subspace_fits_flux_better_than_the_poisson_one():
    # the default (least squares on the flux) minimises what it is judged by: the squared
    # error of the flux spectra, here with Poisson noise and a rank below the truth's
    Y, w, _ = _rank3_counts(noise=True)
    F = (Y / w[:, None, None]).reshape(90, -1)

    def err(V):
        return sum(nnls(V, F[:, j])[1] ** 2 for j in range(F.shape[1]))

    assert err(nmf_subspace(Y, w, 2)) < err(nmf_subspace(Y, w, 2, divergence="kl"))


def test_nmf_subspace_refuses_bad_arguments():
    Y, w, _ = _rank3_counts(noise=True)
    with pytest.raises(ValueError, match="rank must be between 1 and 49"):
        nmf_subspace(Y, w, 50)
    with pytest.raises(ValueError, match="divergence"):
        nmf_subspace(Y, w, 2, divergence="itakura")
