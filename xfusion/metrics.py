"""Quality metrics for fused hyperspectral cubes (paper Appendix A and eq. 22).

All functions take cubes of dims ``(energy, y, x)`` -- axis 0 is energy -- as
numpy arrays, dask arrays or :class:`xarray.DataArray` (a DataArray with an
``energy`` dimension is transposed so that ``energy`` comes first).  Dask
arrays are computed.  Everything is computed in float64 whatever the input
dtype.  Inputs containing NaN or infinities are refused with a
:class:`ValueError`, as are cubes whose shapes differ.

Scalar metrics (:func:`nmse`, :func:`asam`, :func:`acssim`, :func:`ergas`,
:func:`report`) return plain Python floats.  Maps (:func:`sam_map`,
:func:`relative_error_map`, :func:`spectral_variability`) return a numpy
array of shape ``(y, x)``, or an :class:`xarray.DataArray` carrying the
spatial coordinates when an input was a DataArray.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

__all__ = [
    "nmse",
    "asam",
    "acssim",
    "ergas",
    "sam_map",
    "relative_error_map",
    "spectral_variability",
    "report",
]

#: Constants of Wang et al. (2004), as in :func:`skimage.metrics.structural_similarity`.
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Upper bound on the number of voxels handled per block by acssim (bounds memory).
_SSIM_BLOCK_VOXELS = 4_000_000


# ----------------------------------------------------------------------------- input handling
def _to_numpy(a: Any, name: str) -> tuple[np.ndarray, Any]:
    """Return ``(float64 ndarray with energy first, DataArray-or-None)``."""
    da = None
    if hasattr(a, "dims") and hasattr(a, "data") and hasattr(a, "coords"):  # xarray.DataArray
        da = a
        if "energy" in a.dims:
            da = a.transpose("energy", ...)
        a = da.data
    if hasattr(a, "compute") and not isinstance(a, np.ndarray):  # dask array
        a = a.compute()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a 3-D cube with dims (energy, y, x); got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} infinite); "
            "metrics are undefined"
        )
    return arr, da


def _pair(Z: Any, Z_true: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    z, zda = _to_numpy(Z, "Z")
    t, tda = _to_numpy(Z_true, "Z_true")
    if z.shape != t.shape:
        raise ValueError(f"shape mismatch: Z has shape {z.shape} but Z_true has shape {t.shape}")
    return z, t, (tda if tda is not None else zda)


def _wrap_map(m: np.ndarray, template: Any, name: str, units: str) -> Any:
    """Wrap a (y, x) map as a DataArray like ``template`` (energy dropped), if any."""
    if template is None:
        return m
    import xarray as xr

    dims = template.dims[1:]
    coords = {k: v for k, v in template.coords.items() if set(v.dims) <= set(dims)}
    return xr.DataArray(m, dims=dims, coords=coords, name=name, attrs={"units": units})


# ----------------------------------------------------------------------------- angles
def _angles(dot: np.ndarray, na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Spectral angles from dot products and norms, with the zero-norm convention.

    ``arccos(clip(dot / na / nb, -1, 1))`` where both norms are non-zero;
    ``pi/2`` where exactly one is zero; ``0`` where both are zero.
    """
    ok = (na != 0) & (nb != 0)
    cos = np.zeros(np.broadcast(dot, na, nb).shape)
    np.divide(dot, na, out=cos, where=ok)
    np.divide(cos, nb, out=cos, where=ok)
    ang = np.arccos(np.clip(cos, -1.0, 1.0))
    ang[~ok] = np.where((na == 0) & (nb == 0), 0.0, np.pi / 2)[~ok]
    return ang


def _sam(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    dot = (z * t).sum(axis=0)
    return _angles(dot, np.linalg.norm(z, axis=0), np.linalg.norm(t, axis=0))


# ----------------------------------------------------------------------------- scalar metrics
def _nmse(z: np.ndarray, t: np.ndarray) -> float:
    err = float(np.sum((z - t) ** 2))
    ref = float(np.sum(t**2))
    if ref == 0.0:
        raise ValueError("NMSE is undefined: Z_true is identically zero")
    if err == 0.0:
        return float("inf")
    return float(-10.0 * np.log10(err / ref))


def nmse(Z: Any, Z_true: Any) -> float:
    r"""Normalised mean squared error in decibels (paper eq. A.1); higher is better.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)
        Estimated and true cubes.

    Returns
    -------
    float
        NMSE in dB. ``inf`` when ``Z == Z_true`` exactly.

    Raises
    ------
    ValueError
        On a shape mismatch, non-finite input, or an all-zero ``Z_true``.

    Notes
    -----
    .. math:: \mathrm{NMSE} = -10 \log_{10}
              \frac{\sum_i (Z_i - Z^{\mathrm{true}}_i)^2}{\sum_i (Z^{\mathrm{true}}_i)^2}

    where :math:`i` runs over all voxels.
    """
    z, t, _ = _pair(Z, Z_true)
    return _nmse(z, t)


def asam(Z: Any, Z_true: Any) -> float:
    r"""Average spectral angle mapper, in radians (paper eq. A.2); lower is better.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)
        Estimated and true cubes; spectra run along axis 0.

    Returns
    -------
    float
        Mean over pixels of the angle between estimated and true spectra.

    Notes
    -----
    For each pixel :math:`p` with spectra :math:`z_p` and :math:`t_p`,

    .. math:: \mathrm{SAM}_p = \arccos\left(\mathrm{clip}\left(
              \frac{\langle z_p, t_p\rangle}{\|z_p\|\,\|t_p\|}, -1, 1\right)\right),
              \qquad \mathrm{aSAM} = \frac{1}{MN}\sum_p \mathrm{SAM}_p .

    Pixels where a norm is zero, where the angle is undefined, are given
    :math:`\pi/2` when exactly one of the two spectra is zero (a zero spectrum is
    taken as orthogonal to anything else) and :math:`0` when both are zero (a
    perfect reconstruction of an empty pixel).  When no norm is zero the result
    equals ``np.mean(np.arccos(np.clip((a*b).sum(0) / norm(a, axis=0) /
    norm(b, axis=0), -1, 1)))`` exactly.
    """
    z, t, _ = _pair(Z, Z_true)
    return float(np.mean(_sam(z, t)))


def _ssim_constants(t: np.ndarray) -> tuple[float, float]:
    data_range = float(t.max() - t.min())
    if data_range <= 0.0:
        data_range = float(np.abs(t).max()) or 1.0
    return (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2


def _ssim_slices(z: np.ndarray, t: np.ndarray, win_size: int, C1: float, C2: float) -> np.ndarray:
    """Mean SSIM of every energy slice of a block, as skimage with a uniform window."""
    size = (1, win_size, win_size)
    NP = win_size**2
    cov_norm = NP / (NP - 1.0)  # sample covariance, as skimage's default
    ux = uniform_filter(z, size=size)
    uy = uniform_filter(t, size=size)
    uxx = uniform_filter(z * z, size=size)
    uyy = uniform_filter(t * t, size=size)
    uxy = uniform_filter(z * t, size=size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    S = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
    pad = (win_size - 1) // 2
    ny, nx = S.shape[1:]
    return S[:, pad : ny - pad, pad : nx - pad].mean(axis=(1, 2))


def _acssim(z: np.ndarray, t: np.ndarray, win_size: int = 7) -> float:
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer >= 3; got {win_size}")
    if min(z.shape[1:]) < win_size:
        raise ValueError(
            f"acSSIM needs energy slices of at least {win_size}x{win_size} pixels "
            f"(the SSIM window); got slices of shape {z.shape[1:]}; pass a smaller odd win_size"
        )
    C1, C2 = _ssim_constants(t)
    L = z.shape[0]
    step = max(1, _SSIM_BLOCK_VOXELS // (z.shape[1] * z.shape[2]))
    ssim = np.empty(L)
    for k0 in range(0, L, step):
        sl = slice(k0, min(L, k0 + step))
        ssim[sl] = _ssim_slices(z[sl], t[sl], win_size, C1, C2)
    return float(np.mean(1.0 - ssim))


def acssim(Z: Any, Z_true: Any, win_size: int = 7) -> float:
    r"""Average complementary SSIM over energy slices (paper eq. A.3); lower is better.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)
        Estimated and true cubes.
    win_size : int, default 7
        Side of the square uniform SSIM window (odd, >= 3). Slices must be at
        least this large.

    Returns
    -------
    float
        :math:`\frac1L\sum_k (1 - \mathrm{SSIM}(Z_k, Z^{\mathrm{true}}_k))`.

    Notes
    -----
    SSIM follows Wang et al. (2004) exactly as
    :func:`skimage.metrics.structural_similarity` computes it by default: a
    ``win_size`` x ``win_size`` *uniform* window (``scipy.ndimage.uniform_filter``,
    ``reflect`` boundary), sample (N-1) covariances, :math:`K_1 = 0.01`,
    :math:`K_2 = 0.03`, and the SSIM map averaged after cropping
    ``(win_size-1)//2`` pixels at each border:

    .. math:: \mathrm{SSIM} = \frac{(2\mu_z\mu_t + C_1)(2\sigma_{zt} + C_2)}
              {(\mu_z^2 + \mu_t^2 + C_1)(\sigma_z^2 + \sigma_t^2 + C_2)},
              \quad C_1 = (K_1 R)^2,\; C_2 = (K_2 R)^2 .

    The data range :math:`R` is one number for the whole cube,
    ``Z_true.max() - Z_true.min()`` (not per slice), so that faint slices are not
    judged on a stretched scale.  If ``Z_true`` is constant, ``R = max|Z_true|``,
    or 1 if that is zero too.  All slices are filtered at once (in blocks that
    bound memory), not in a Python loop over slices.
    """
    z, t, _ = _pair(Z, Z_true)
    return _acssim(z, t, win_size)


def _ergas(z: np.ndarray, t: np.ndarray, ratio: float) -> float:
    rmse = np.sqrt(np.mean((z - t) ** 2, axis=(1, 2)))
    mu = np.mean(t, axis=(1, 2))
    ok = mu != 0
    if not ok.any():
        warnings.warn(
            "ERGAS undefined: every slice of Z_true has zero mean; returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(ratio * np.sqrt(np.mean((rmse[ok] / mu[ok]) ** 2)))


def ergas(Z: Any, Z_true: Any, ratio: float = 1.0) -> float:
    r"""Relative dimensionless global error (ERGAS, paper eq. A.4); lower is better.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)
        Estimated and true cubes.
    ratio : float, default 1.0
        The pixel-size ratio :math:`d` between the two instruments: pixel size of
        X (fine) over pixel size of Y (coarse), e.g. 10"/30" = 1/3 for the
        paper's rebinned models, 1 when both have the same pixels.

    Returns
    -------
    float

    Notes
    -----
    .. math:: \mathrm{ERGAS} = d \sqrt{\frac{1}{L}\sum_{k=1}^{L}
              \left(\frac{\mathrm{RMSE}_k}{\mu_k}\right)^2}

    with :math:`\mathrm{RMSE}_k` the root-mean-square error of energy slice
    :math:`k` and :math:`\mu_k` the mean of the true slice :math:`k`.  The
    customary factor 100 of Wald's definition is *not* applied: the paper's
    values (about 0.1--0.3) can only come without it.  Slices whose true mean
    is exactly zero are skipped (the mean runs over the remaining slices); if
    all are zero a ``RuntimeWarning`` is issued and NaN returned.  Slices with
    a tiny but non-zero mean can dominate the value.
    """
    z, t, _ = _pair(Z, Z_true)
    return _ergas(z, t, float(ratio))


# ----------------------------------------------------------------------------- maps
def sam_map(Z: Any, Z_true: Any) -> Any:
    """Spectral angle between estimated and true spectra at each pixel, in radians.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)

    Returns
    -------
    numpy.ndarray or xarray.DataArray, shape (y, x)

    Notes
    -----
    Same definition and zero-norm convention as :func:`asam`, whose value is
    the mean of this map.
    """
    z, t, tpl = _pair(Z, Z_true)
    return _wrap_map(_sam(z, t), tpl, "sam", "rad")


def relative_error_map(Z: Any, Z_true: Any) -> Any:
    r"""Relative error of the energy-integrated flux at each pixel.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)

    Returns
    -------
    numpy.ndarray or xarray.DataArray, shape (y, x)
        NaN where the true integrated flux is zero.

    Notes
    -----
    .. math:: e_p = \frac{\sum_E Z_{E,p} - \sum_E Z^{\mathrm{true}}_{E,p}}
              {\sum_E Z^{\mathrm{true}}_{E,p}}
    """
    z, t, tpl = _pair(Z, Z_true)
    sz = z.sum(axis=0)
    st = t.sum(axis=0)
    out = np.full(st.shape, np.nan)
    np.divide(sz - st, st, out=out, where=st != 0)
    return _wrap_map(out, tpl, "relative_error", "1")


def spectral_variability(Z: Any) -> Any:
    r"""Mean spectral angle between each pixel and its neighbours (paper eq. 22).

    Parameters
    ----------
    Z : array_like or xarray.DataArray, shape (energy, y, x)

    Returns
    -------
    numpy.ndarray or xarray.DataArray, shape (y, x)
        :math:`\theta` in radians; NaN for a 1x1 image (no neighbours).

    Notes
    -----
    .. math:: \theta_k = \frac{1}{\mathrm{card}(\mathcal N_k)}
              \sum_{j\in\mathcal N_k} \arccos\left(
              \frac{\langle Z_k, Z_j\rangle}{\|Z_k\|\,\|Z_j\|}\right)

    where :math:`\mathcal N_k` are the 8 closest pixels of pixel :math:`k`
    (fewer at edges and corners: only the neighbours inside the image are
    used).  Angles follow the zero-norm convention of :func:`asam`.  Computed
    with four shifted whole-image products; each angle is added to both pixels
    of the pair.
    """
    z, tpl = _to_numpy(Z, "Z")
    _, M, N = z.shape
    nrm = np.linalg.norm(z, axis=0)
    total = np.zeros((M, N))
    count = np.zeros((M, N))
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        # pixel a = (i, j), neighbour b = (i+dy, j+dx), both inside the image
        ai = slice(0, M - dy)
        bi = slice(dy, M)
        aj = slice(max(0, -dx), N - max(0, dx))
        bj = slice(max(0, dx), N + min(0, dx))
        za, zb = z[:, ai, aj], z[:, bi, bj]
        ang = _angles((za * zb).sum(axis=0), nrm[ai, aj], nrm[bi, bj])
        total[ai, aj] += ang
        total[bi, bj] += ang
        count[ai, aj] += 1
        count[bi, bj] += 1
    theta = np.full((M, N), np.nan)
    np.divide(total, count, out=theta, where=count > 0)
    return _wrap_map(theta, tpl, "spectral_variability", "rad")


# ----------------------------------------------------------------------------- report
def report(Z: Any, Z_true: Any, ratio: float = 1.0) -> dict[str, float]:
    """The four scalar metrics of the paper's Table 2.

    Parameters
    ----------
    Z, Z_true : array_like or xarray.DataArray, shape (energy, y, x)
        Estimated and true cubes (converted once, then shared by all metrics).
    ratio : float, default 1.0
        Pixel-size ratio :math:`d` used by :func:`ergas`.

    Returns
    -------
    dict
        ``{"NMSE": float (dB), "aSAM": float (rad), "acSSIM": float, "ERGAS": float}``.

    Notes
    -----
    See :func:`nmse`, :func:`asam`, :func:`acssim` (7x7 uniform window) and
    :func:`ergas` for the definitions.  For images smaller than 7x7 pixels,
    where SSIM's window does not fit, "acSSIM" is NaN (with a
    ``RuntimeWarning``) and the other three are still computed.
    """
    z, t, _ = _pair(Z, Z_true)
    if min(z.shape[1:]) < 7:
        warnings.warn(
            f"acSSIM needs slices of at least 7x7 pixels; got {z.shape[1:]}; reporting NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        ac = float("nan")
    else:
        ac = _acssim(z, t)
    return {
        "NMSE": _nmse(z, t),
        "aSAM": float(np.mean(_sam(z, t))),
        "acSSIM": ac,
        "ERGAS": _ergas(z, t, float(ratio)),
    }
