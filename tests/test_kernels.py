"""Instrument kernels: PSFs (Gaussian, King) and spectral responses."""

import numpy as np
import pytest
from scipy.stats import norm

import xfusion as xf
from xfusion.kernels import gaussian_psf, gaussian_response, king_psf, response_from_kernel


def _moments(psf):
    """Centroid (y, x) and second moments (var_y, var_x) in pixels."""
    h = psf.shape[0] // 2
    g = np.arange(-h, h + 1)
    py, px = psf.sum(1), psf.sum(0)
    cy, cx = (g * py).sum(), (g * px).sum()
    return (cy, cx), (((g - cy) ** 2 * py).sum(), ((g - cx) ** 2 * px).sum())


def _radius(psf):
    h = psf.shape[0] // 2
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    return np.hypot(yy, xx)


# -- Gaussian PSF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.5, 2.7, 6.0])
def test_gaussian_psf_normalised_symmetric_odd(sigma):
    p = gaussian_psf(sigma)
    assert p.ndim == 2 and p.shape[0] == p.shape[1] and p.shape[0] % 2 == 1
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p >= 0).all()
    np.testing.assert_allclose(p, p[::-1], atol=1e-15)
    np.testing.assert_allclose(p, p[:, ::-1], atol=1e-15)
    np.testing.assert_allclose(p, p.T, atol=1e-15)
    c = p.shape[0] // 2
    assert p.argmax() == c * p.shape[1] + c  # peak in the centre pixel
    # default size covers at least 4 sigma on each side
    assert c >= 4 * sigma


@pytest.mark.parametrize("sigma", [1.5, 2.0, 3.3, 5.0])
def test_gaussian_psf_second_moment(sigma):
    p = gaussian_psf(sigma)
    (cy, cx), (vy, vx) = _moments(p)
    assert abs(cy) < 1e-12 and abs(cx) < 1e-12
    # pixel integration adds 1/12 px^2; truncation at 4 sigma removes a little
    assert vy == pytest.approx(sigma**2 + 1 / 12, rel=5e-3)
    assert vx == pytest.approx(sigma**2, rel=0.04)


def test_gaussian_psf_pixel_size_and_size():
    p_arcsec = gaussian_psf(6.0, pixel_size=4.0, size=11)
    p_px = gaussian_psf(1.5, size=11)
    assert p_arcsec.shape == (11, 11)
    np.testing.assert_allclose(p_arcsec, p_px, rtol=1e-12)
    # a narrow PSF stays normalised and centred (pixel integrals, not samples)
    p = gaussian_psf(0.1, size=3)
    assert p[1, 1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kwargs", [dict(sigma=0.0), dict(sigma=-1.0),
                                    dict(sigma=1.0, size=4), dict(sigma=1.0, size=0),
                                    dict(sigma=1.0, size=-3)])
def test_gaussian_psf_errors(kwargs):
    with pytest.raises(ValueError):
        gaussian_psf(**kwargs)


# -- King PSF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rc, beta", [(1.0, 1.5), (2.5, 1.2), (0.7, 3.0)])
def test_king_psf_normalised_symmetric(rc, beta):
    p = king_psf(rc, beta, normalise="kernel")
    assert p.shape[0] == p.shape[1] and p.shape[0] % 2 == 1
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p > 0).all()
    np.testing.assert_allclose(p, p[::-1], rtol=1e-12)
    np.testing.assert_allclose(p, p.T, rtol=1e-12)
    # monotone along the axis from the centre
    c = p.shape[0] // 2
    assert (np.diff(p[c, c:]) < 0).all()


@pytest.mark.parametrize("rc, beta", [(2.0, 1.5), (3.0, 2.0)])
def test_king_psf_heavier_wings_than_gaussian(rc, beta):
    fwhm = 2 * rc * np.sqrt(2 ** (1 / beta) - 1)
    size = 61
    k = king_psf(rc, beta, size=size, normalise="kernel")
    g = gaussian_psf(fwhm / (2 * np.sqrt(2 * np.log(2))), size=size)
    r = _radius(k)
    # same half-maximum radius along an axis (the profile, before pixel integration) ...
    assert (1 + (fwhm / 2 / rc) ** 2) ** -beta == pytest.approx(0.5)
    # ... but much more flux far out
    for mult in (2, 3):
        out = r > mult * fwhm
        assert k[out].sum() > 10 * g[out].sum()
    assert k[r > 3 * fwhm].sum() > 0.02


@pytest.mark.parametrize("rc, beta, size", [(3.0, 1.5, 21), (2.0, 2.0, 15), (5.0, 1.2, 41)])
def test_king_psf_full_keeps_the_fraction_inside_the_kernel(rc, beta, size):
    """normalise='full': the kernel sums to the analytic fraction of the King PSF inside it
    (between the inscribed and the circumscribed discs' encircled fractions)."""
    p = king_psf(rc, beta, size=size, oversample=9)
    q = king_psf(rc, beta, size=size, normalise="kernel")
    np.testing.assert_allclose(p / p.sum(), q, rtol=1e-2)  # same shape, different sums

    def ef(r):
        return 1 - (1 + (r / rc) ** 2) ** (1 - beta)

    half = size / 2
    assert ef(half) < p.sum() < ef(half * np.sqrt(2)) < 1
    # square aperture: ∫∫ over the box, by fine quadrature of the analytic profile
    g = (np.arange(4000) + 0.5) / 4000 * size - half
    r2 = g[:, None] ** 2 + g[None, :] ** 2
    box = ((1 + r2 / rc**2) ** (-beta)).sum() * (size / 4000) ** 2 / (np.pi * rc**2 / (beta - 1))
    assert p.sum() == pytest.approx(box, abs=2e-3)


def test_king_psf_errors():
    for args in [(0.0, 1.5), (-1.0, 1.5), (1.0, 1.0), (1.0, 0.5)]:
        with pytest.raises(ValueError):
            king_psf(*args)
    with pytest.raises(ValueError):
        king_psf(1.0, 1.5, size=10)
    with pytest.raises(ValueError, match="normalise"):
        king_psf(1.0, 1.5, normalise="peak")


# -- spectral responses ----------------------------------------------------------------------------


E = 0.3 + 0.005 * np.arange(120)  # keV, 5 eV bins
DE = 0.005


@pytest.mark.parametrize("vL", [1, 4])
def test_gaussian_response_columns(vL):
    sigma = 0.02
    R = gaussian_response(E, sigma, vL=vL)
    assert R.shape == (E.size // vL, E.size)
    assert (R >= 0).all()
    col = R.sum(0)
    assert (col <= 1 + 1e-12).all()
    inner = (E - E[0] > 5 * sigma) & (E[-1] - E > 5 * sigma)
    np.testing.assert_allclose(col[inner], 1.0, atol=1e-6)
    # a line at the band edge loses about half its photons
    assert col[0] == pytest.approx(norm.cdf(0.5 * DE / sigma), abs=1e-9)
    # the mean recorded channel energy is the true energy
    Ec = E.reshape(-1, vL).mean(1)
    mean = (Ec[:, None] * R).sum(0) / col
    assert np.abs(mean - E)[inner].max() < vL * DE / 2 + 1e-9
    if vL == 1:
        np.testing.assert_allclose(mean[inner], E[inner], atol=1e-9)


def test_gaussian_response_rebinning_is_a_sum_of_rows():
    R1 = gaussian_response(E, 0.012)
    R4 = gaussian_response(E, 0.012, vL=4)
    np.testing.assert_allclose(R4, R1.reshape(-1, 4, E.size).sum(1), atol=1e-14)


def test_gaussian_response_energy_dependent_sigma():
    sig = 0.01 + 0.05 * (E - E[0])  # 10 eV .. ~40 eV
    R = gaussian_response(E, sig)
    inner = (E - E[0] > 5 * sig) & (E[-1] - E > 5 * sig)
    assert inner.sum() > 30
    var = ((E[:, None] - E[None, :]) ** 2 * R).sum(0) / R.sum(0)
    # variance of a binned Gaussian: sigma^2 + bin^2 / 12
    np.testing.assert_allclose(var[inner], sig[inner] ** 2 + DE**2 / 12, rtol=1e-3)
    # each column matches a constant-sigma response with that column's sigma
    for j in np.flatnonzero(inner)[::10]:
        np.testing.assert_allclose(R[:, j], gaussian_response(E, sig[j])[:, j], atol=1e-14)


def test_gaussian_response_explicit_edges():
    edges = np.concatenate([[0.0], np.cumsum(np.linspace(0.01, 0.03, 40))])
    Ec = 0.5 * (edges[1:] + edges[:-1])
    R = gaussian_response(Ec, 0.02, vL=2, energy_edges=edges)
    assert R.shape == (20, 40)
    # exact integrals over the coarse bins [edges[2c], edges[2c + 2]]
    j = 17
    c = np.arange(20)
    want = norm.cdf(edges[2 * c + 2], Ec[j], 0.02) - norm.cdf(edges[2 * c], Ec[j], 0.02)
    np.testing.assert_allclose(R[:, j], want, atol=1e-14)


def test_gaussian_response_errors():
    with pytest.raises(ValueError, match="multiple"):
        gaussian_response(E[:-1], 0.02, vL=4)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_response(E, -0.02)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_response(E, 0.0)
    sig = np.full(E.size, 0.02)
    sig[5] = -1
    with pytest.raises(ValueError, match="sigma"):
        gaussian_response(E, sig)


@pytest.mark.parametrize("vL", [1, 3])
def test_response_from_kernel_matches_gaussian_response(vL):
    s = 2.2  # channels
    k = gaussian_psf(s, size=2 * 10 * 3 + 1).sum(0)  # 1-D pixel-integrated Gaussian, +-30 sigma
    R = response_from_kernel(k, E.size, vL)
    np.testing.assert_allclose(R, gaussian_response(E, s * DE, vL=vL), atol=1e-12)


def test_response_from_kernel_convolution_and_edges():
    rng = np.random.default_rng(3)
    k = rng.random(7)
    k /= k.sum()  # asymmetric
    L = 30
    S = response_from_kernel(k, L, 1)
    z = rng.random(L)
    np.testing.assert_allclose(S @ z, np.convolve(z, k, mode="same"), rtol=1e-12)
    col = S.sum(0)
    np.testing.assert_allclose(col[3:-3], 1.0, rtol=1e-12)
    assert (col[:3] < 1).all() and (col[-3:] < 1).all()
    # photon at j shifted by +1 channel
    shift = response_from_kernel(np.array([0.0, 0.0, 1.0]), 5, 1)
    np.testing.assert_array_equal(shift, np.eye(5, k=-1))
    # rebinning sums groups of vL rows
    S5 = response_from_kernel(k, L, 5)
    np.testing.assert_allclose(S5, S.reshape(6, 5, L).sum(1), rtol=1e-12)
    assert (S5.sum(0) <= 1 + 1e-12).all()


def test_response_from_kernel_errors():
    with pytest.raises(ValueError, match="odd"):
        response_from_kernel(np.ones(4) / 4, 12, 1)
    with pytest.raises(ValueError, match="odd"):
        response_from_kernel(np.ones((3, 3)) / 9, 12, 1)
    with pytest.raises(ValueError, match="multiple"):
        response_from_kernel(np.ones(3) / 3, 13, 4)


def test_kernels_build_a_valid_problem():
    # make_problem accepts what the kernels produce without warnings
    import warnings

    from .conftest import tiny_problem

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = tiny_problem()
    xf.validate(ds)


def test_gaussian_response_bad_edges():
    with pytest.raises(ValueError, match="energy_edges"):
        gaussian_response(E, 0.02, energy_edges=E)  # centres passed as edges: one short
    with pytest.raises(ValueError, match="energy_edges"):
        gaussian_response(E, 0.02, vL=4, energy_edges=np.linspace(0.3, 0.9, 100))
    edges = 0.2975 + DE * np.arange(E.size + 1)
    edges[10] = edges[9]
    with pytest.raises(ValueError, match="energy_edges"):
        gaussian_response(E, 0.02, energy_edges=edges)
