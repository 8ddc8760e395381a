"""Instrument kernels on Z's grid: PSFs (Gaussian, King) and spectral responses.

The spectral response of the fine-pixel instrument and its channel rebinning are combined into
one (l × L) matrix ``response_X`` (an RMF on Z's energy grid): entry ``(c, j)`` is the probability
that a photon of true energy ``E_j`` is recorded in channel ``c``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

__all__ = [
    "gaussian_psf",
    "king_psf",
    "gaussian_response",
    "response_from_kernel",
]


def _half_size(size: int | None, scale: float, nscale: float = 4.0) -> int:
    if size is None:
        return max(1, int(np.ceil(nscale * scale)))
    if size % 2 == 0 or size < 1:
        raise ValueError(f"PSF size must be a positive odd integer, got {size}")
    return size // 2


def gaussian_psf(sigma: float, size: int | None = None, pixel_size: float = 1.0) -> np.ndarray:
    r"""Circular Gaussian PSF integrated over pixels, normalised to sum to 1.

    Parameters
    ----------
    sigma : float
        Standard deviation, in the same unit as ``pixel_size`` (e.g. arcsec).
    size : int, optional
        Odd side length in pixels; default ``2·ceil(4σ/pixel) + 1``.
    pixel_size : float
        Pixel side length.

    Notes
    -----
    Each pixel holds :math:`\int\int G(y, x)\,dy\,dx` over the pixel (difference of error
    functions), so that narrow PSFs stay normalised and centred.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    s = sigma / pixel_size
    h = _half_size(size, s)
    edges = np.arange(-h, h + 2) - 0.5
    c = erf(edges / (np.sqrt(2) * s))
    p1 = np.diff(c)
    psf = np.outer(p1, p1)
    return psf / psf.sum()


def king_psf(
    r_core: float,
    beta: float = 1.5,
    size: int | None = None,
    pixel_size: float = 1.0,
    oversample: int = 5,
    normalise: str = "full",
) -> np.ndarray:
    r"""King-profile PSF, :math:`P(r) \propto (1 + (r/r_c)^2)^{-\beta}`, on a finite kernel.

    The profile used by XMM-Newton's and XRISM's calibration for the PSF core and wings.

    Parameters
    ----------
    r_core : float
        Core radius (same unit as ``pixel_size``).
    beta : float
        Slope; must exceed 1 for a finite integral.
    size : int, optional
        Odd side length in pixels; default covers ``8 r_c``.
    pixel_size : float
    oversample : int
        Sub-pixel samples per axis used to integrate over each pixel.
    normalise : ``"full"`` or ``"kernel"``
        ``"full"`` (default): normalised over the whole plane, so the kernel sums to the fraction
        of the PSF inside it (< 1; the wings beyond it are lost, as on the sky), from the analytic
        integral :math:`\int P\,dA = \pi r_c^2 / (\beta - 1)`. ``"kernel"``: renormalised to sum
        to 1 over the kernel (the wings' flux put back into it; the simulated scenarios' kernels).
    """
    if r_core <= 0 or beta <= 1:
        raise ValueError(f"King PSF needs r_core > 0 and beta > 1, got {r_core}, {beta}")
    if normalise not in ("full", "kernel"):
        raise ValueError(f"normalise must be 'full' or 'kernel', got {normalise!r}")
    rc = r_core / pixel_size
    h = _half_size(size, rc, 8.0)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    g = (np.arange(-h, h + 1)[:, None] + sub[None, :]).ravel()
    r2 = g[:, None] ** 2 + g[None, :] ** 2
    fine = (1 + r2 / rc**2) ** (-beta)
    n = 2 * h + 1
    psf = fine.reshape(n, oversample, n, oversample).sum(axis=(1, 3))
    if normalise == "kernel":
        return psf / psf.sum()
    # midpoint rule: each sub-sample stands for 1/oversample² of a pixel
    inside = psf.sum() / oversample**2 / (np.pi * rc**2 / (beta - 1))
    return psf / psf.sum() * min(float(inside), 1.0)


def response_from_kernel(kernel: np.ndarray, L: int, vL: int) -> np.ndarray:
    """(L/vL × L) response: stationary 1-D convolution kernel, then sum of ``vL`` channels.

    Parameters
    ----------
    kernel : ndarray, odd length
        Spectral response in units of fine channels, normalised to 1.
    L : int
        Number of fine channels.
    vL : int
        Channel rebinning factor; ``L`` must be a multiple.

    Notes
    -----
    Column ``j`` is the (truncated) kernel centred on channel ``j``: photons redistributed beyond
    the band are lost, so columns near the edges sum to less than 1, as a real RMF does.
    """
    kernel = np.asarray(kernel, float)
    if kernel.ndim != 1 or kernel.size % 2 == 0:
        raise ValueError(f"kernel must be 1-D with odd length, got shape {kernel.shape}")
    if L % vL:
        raise ValueError(f"L={L} is not a multiple of the rebinning factor vL={vL}")
    h = kernel.size // 2
    S = np.zeros((L, L))
    j = np.arange(L)
    for k in range(-h, h + 1):
        i = j + k
        ok = (i >= 0) & (i < L)
        S[i[ok], j[ok]] = kernel[k + h]
    return S.reshape(L // vL, vL, L).sum(axis=1)


def gaussian_response(energy: np.ndarray, sigma: float | np.ndarray, vL: int = 1,
                      energy_edges: np.ndarray | None = None) -> np.ndarray:
    r"""(l × L) response of a Gaussian line-spread function, optionally energy dependent.

    Parameters
    ----------
    energy : ndarray (L,)
        Fine bin centres (keV), increasing.
    sigma : float or ndarray (L,)
        Standard deviation (keV) of the line-spread function at each true energy.
    vL : int
        Number of fine channels summed into one channel of X.
    energy_edges : ndarray (L + 1,), optional
        Bin edges; default: midpoints between centres.

    Notes
    -----
    :math:`R_{cj} = \sum_{i \in c} \int_{e_i}^{e_{i+1}} \mathcal N(E; E_j, \sigma_j^2)\,dE`,
    exact integrals of the Gaussian over the detector bins, so columns sum to at most 1.
    """
    E = np.asarray(energy, float)
    L = E.size
    if L % vL:
        raise ValueError(f"L={L} is not a multiple of the rebinning factor vL={vL}")
    if energy_edges is None:
        mid = 0.5 * (E[1:] + E[:-1])
        energy_edges = np.concatenate([[2 * E[0] - mid[0]], mid, [2 * E[-1] - mid[-1]]])
    energy_edges = np.asarray(energy_edges, float)
    if energy_edges.shape != (L + 1,) or (np.diff(energy_edges) <= 0).any():
        raise ValueError(f"energy_edges must be {L + 1} strictly increasing edges for {L} "
                         f"channels, got shape {energy_edges.shape}")
    e = energy_edges[::vL]
    sig = np.broadcast_to(np.asarray(sigma, float), (L,))
    if (sig <= 0).any():
        raise ValueError("sigma must be positive")
    cdf = 0.5 * (1 + erf((e[:, None] - E[None, :]) / (np.sqrt(2) * sig[None, :])))
    return np.diff(cdf, axis=0)
