r"""Line and velocity maps of a cube: continuum-subtracted moments of one emission line per pixel.

>>> import xfusion as xf
>>> ds = xf.simulate.scenario("gaussian_6kev", seed=0, scale=0.2)
>>> m = xf.lines.line_map(ds.Z_true, "Fe XXV")
>>> sorted(m.data_vars)                                   # doctest: +NORMALIZE_WHITESPACE
['centroid', 'centroid_err', 'flux', 'flux_err', 'sigma_v', 'sigma_v_err', 'velocity',
 'velocity_err', 'width', 'width_err']

:func:`line_map` measures, in every pixel of a cube Z (energy, y, x) of photons cm⁻² s⁻¹ per
voxel, the flux, centroid energy, line-of-sight velocity and width of one line from the moments
of its continuum-subtracted spectrum inside an energy window, with their uncertainties from
per-voxel standard errors (first-order propagation) or from draws of the cube (the spread of
the estimates). Everything is a fixed linear map of the cube's channels followed by elementwise
arithmetic, so dask-backed cubes stay lazy (``.compute()`` the result).

Conventions
-----------
Velocity is :math:`v = c\,(1 - \bar E/E_0)` (km/s), positive = receding = redshift; it is the
exact inverse of the shift :math:`E = E_0 (1 - v/c)` that :mod:`xfusion.simulate` applies. The
redshift convention :math:`v = c\,(E_0/\bar E - 1)` differs from it by :math:`v^2/c` to second
order (160 km/s at 7000 km/s). See ``docs/lines.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["LINES", "C_KMS", "DEFAULT_HALF_WIDTH_KMS", "line_energy", "line_map", "upsample"]

#: Speed of light (km/s).
C_KMS = 299_792.458

#: Default half-width of the line window in velocity units (km/s); at least 3 channels.
DEFAULT_HALF_WIDTH_KMS = 4000.0

#: Rest energies (keV) of common X-ray lines. He-like ions: the resonance line (``w``);
#: H-like: the Ly-α doublet's weighted mean. Names are matched without case or spaces.
LINES: dict[str, float] = {
    "O VII": 0.5740,       # He-like resonance (f 0.5610, i 0.5686)
    "O VIII": 0.6536,      # Ly-α
    "Fe XVII": 0.8258,     # 3C
    "Ne IX": 0.9220,       # He-like resonance
    "Ne X": 1.0220,        # Ly-α
    "Mg XI": 1.3522,       # He-like resonance
    "Mg XII": 1.4726,      # Ly-α
    "Si XIII": 1.8650,     # He-like resonance
    "Si XIV": 2.0055,      # Ly-α
    "S XV": 2.4606,        # He-like resonance
    "S XVI": 2.6227,       # Ly-α
    "Ar XVII": 3.1398,     # He-like resonance
    "Ca XIX": 3.9024,      # He-like resonance
    "Fe K": 6.4000,        # neutral/low-ionisation Fe K-α
    "Fe XXV": 6.7004,      # He-like resonance (f 6.6366, i 6.6676)
    "Fe XXVI": 6.9662,     # Ly-α (α1 6.9732, α2 6.9520)
    "Ni XXVII": 7.8051,    # He-like resonance
}

_UNITS = {
    "centroid": "keV", "centroid_err": "keV",
    "velocity": "km/s", "velocity_err": "km/s",
    "width": "keV", "width_err": "keV",
    "sigma_v": "km/s", "sigma_v_err": "km/s",
    "flux": "photon cm-2 s-1", "flux_err": "photon cm-2 s-1",
}

_LONG = {
    "centroid": "line centroid energy (continuum-subtracted first moment)",
    "velocity": "line-of-sight velocity c (1 - centroid / E0), positive = receding",
    "width": "line Gaussian sigma from the second moment (includes any line spread in Z)",
    "sigma_v": "line width in velocity units c width / E0",
    "flux": "continuum-subtracted line flux in the window",
}


def _key(name: str) -> str:
    return "".join(str(name).split()).lower()


_LINE_KEYS = {_key(k): v for k, v in LINES.items()}


def line_energy(line: float | str) -> float:
    """Rest energy (keV) of ``line``: a number (returned as float) or a name of :data:`LINES`.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones) or a non-positive/non-finite energy.
    """
    if isinstance(line, str):
        try:
            return _LINE_KEYS[_key(line)]
        except KeyError:
            raise ValueError(f"line: unknown line name {line!r}; known names: "
                             f"{', '.join(LINES)} (or pass a rest energy in keV)") from None
    try:
        e0 = float(line)
    except (TypeError, ValueError):
        raise ValueError(f"line must be a rest energy in keV or a line name; got {line!r}") \
            from None
    if not (np.isfinite(e0) and e0 > 0):
        raise ValueError(f"line must be a positive, finite energy in keV; got {line!r}")
    return e0


# ----------------------------------------------------------------------------- grid
def _energy_grid(Z: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel centres, lower and upper edges (keV) of Z's energy axis."""
    E = np.asarray(Z["energy"].values, dtype=np.float64)
    if E.ndim != 1 or E.size < 3:
        raise ValueError(f"Z: the energy axis needs at least 3 channels; got {E.size}")
    if not np.all(np.isfinite(E)) or not np.all(np.diff(E) > 0):
        raise ValueError("Z: energy coordinate must be finite and strictly increasing (keV)")
    bname = Z["energy"].attrs.get("bounds", "energy_bounds")
    if bname in Z.coords and Z[bname].ndim == 2 and Z[bname].dims[0] == "energy":
        b = np.asarray(Z[bname].values, dtype=np.float64)
        lo, hi = b.min(axis=1), b.max(axis=1)
    elif "energy_lo" in Z.coords and "energy_hi" in Z.coords:
        lo = np.asarray(Z["energy_lo"].values, dtype=np.float64)
        hi = np.asarray(Z["energy_hi"].values, dtype=np.float64)
    else:
        mid = 0.5 * (E[1:] + E[:-1])
        lo = np.concatenate([[E[0] - (mid[0] - E[0])], mid])
        hi = np.concatenate([mid, [E[-1] + (E[-1] - mid[-1])]])
    return E, lo, hi


def _band(arg: str, band: Any, lo: float, hi: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in band)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a pair (lo, hi) of energies in keV; got {band!r}") \
            from None
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ValueError(f"{arg} must be a finite pair (lo, hi) with lo < hi (keV); got {band!r}")
    if a < lo - 1e-9 or b > hi + 1e-9:
        raise ValueError(f"{arg} {band!r} lies outside Z's energy band "
                         f"[{lo:.6g}, {hi:.6g}] keV")
    return a, b


def _channels(E: np.ndarray, a: float, b: float) -> np.ndarray:
    """Indices of the channels whose centre lies in [a, b]."""
    return np.flatnonzero((E >= a) & (E <= b))


# ----------------------------------------------------------------------------- weights
def _weights(E: np.ndarray, e0: float, win: np.ndarray, cont: np.ndarray, model: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Channels used and the weight vectors f, g, h of the flux and the first two moments.

    The continuum-subtracted spectrum in the window is :math:`s = K z` with
    :math:`K = [I_w \;|\; -A_w (A_c^T A_c)^{-1} A_c^T]` acting on the window and continuum
    channels; then :math:`F = f^T z`, :math:`G = g^T z`, :math:`H = h^T z` with
    :math:`f = K^T 1`, :math:`g = K^T x`, :math:`h = K^T x^2` and :math:`x = E - E_0`.
    """
    x = E - e0
    xw = x[win]
    nw, nc = win.size, cont.size
    K = np.zeros((nw, nw + nc))
    K[:, :nw] = np.eye(nw)
    if model != "none":
        deg = 1 if model == "linear" else 0
        # centred, scaled design for conditioning
        xs = x[cont]
        scale = max(float(np.ptp(xs)), 1e-12)
        Ac = np.vander((xs - xs.mean()) / scale, deg + 1, increasing=True)
        Aw = np.vander((xw - xs.mean()) / scale, deg + 1, increasing=True)
        K[:, nw:] = -Aw @ np.linalg.pinv(Ac)
    idx = np.concatenate([win, cont])
    f = K.sum(axis=0)
    g = xw @ K
    h = (xw**2) @ K
    return idx, f, g, h


def _select(da: xr.DataArray, idx: np.ndarray, vec: np.ndarray) -> xr.DataArray:
    """Σ_j vec_j da[energy=idx_j] over the energy dim (lazy for dask)."""
    sub = da.isel(energy=xr.DataArray(idx, dims="energy")).drop_vars(
        [c for c in da.coords if "energy" in da[c].dims], errors="ignore")
    w = xr.DataArray(vec, dims="energy")
    return xr.dot(sub, w, dim="energy")


def _moments(F: xr.DataArray, G: xr.DataArray, H: xr.DataArray, xa: float, xb: float
             ) -> tuple[xr.DataArray, xr.DataArray]:
    """Mean offset and variance from the three linear sums.

    NaN where F <= 0, and where no non-negative profile on the window's channels [xa, xb]
    could give them: a mean outside [xa, xb] or a variance above ((xb - xa)/2)² (Popoviciu).
    """
    Fs = F.where(F > 0)
    mean = G / Fs
    var = H / Fs - mean**2
    ok = (mean >= xa) & (mean <= xb) & (var <= 0.25 * (xb - xa) ** 2)
    return mean.where(ok), var.where(ok)


def _draw_std(a: xr.DataArray) -> xr.DataArray:
    """Standard deviation over ``draw`` of the finite values (ddof 1; NaN with fewer than 2)."""
    ok = a.notnull()
    n = ok.sum("draw")
    mean = a.fillna(0).sum("draw") / n.where(n > 0)
    d2 = ((a - mean) ** 2).where(ok).fillna(0).sum("draw")
    return np.sqrt(d2 / (n - 1).where(n >= 2))


# ----------------------------------------------------------------------------- main
def line_map(
    Z: xr.DataArray,
    line: float | str = 6.700,
    window: Sequence[float] | None = None,
    continuum: Sequence[Sequence[float]] | str | None = None,
    sigma: xr.DataArray | None = None,
    draws: xr.DataArray | None = None,
    *,
    min_snr: float = 3.0,
) -> xr.Dataset:
    r"""Flux, centroid, velocity and width of one emission line in every pixel of Z.

    Parameters
    ----------
    Z : xarray.DataArray
        Cube with an ``energy`` dim (channel centres in keV; edges from an
        ``energy_bounds`` (energy, nv) or ``energy_lo`` / ``energy_hi`` coord where present,
        else midway between centres) in photons cm⁻² s⁻¹ per voxel; every other dim
        (normally ``y``, ``x``) is kept. numpy or dask.
    line : float or str, default 6.700
        Rest energy :math:`E_0` (keV) or a name of :data:`LINES` (``"Fe XXV"``, ``"O VIII"``,
        ...; case and spaces ignored). It must lie inside Z's band.
    window : (float, float), optional
        Energy range (keV) of the line; channels whose centre lies in it are summed. Default
        :math:`E_0 \pm \max(3\,\Delta E,\; E_0\,v_w/c)` with :math:`v_w` = 4000 km/s
        (:data:`DEFAULT_HALF_WIDTH_KMS`) and :math:`\Delta E` the median channel width,
        clipped to Z's band.
    continuum : sequence of (float, float), or "none", optional
        Energy bands (keV) of the continuum, fitted per pixel by least squares with a
        straight line in energy (a constant where all bands lie on one side of the window)
        and subtracted in the window. Default: the two side bands of the window's half-width
        adjoining it on each side, clipped to Z's band (one side only, hence a constant, where
        the window touches an edge of the band). ``"none"``: no continuum subtraction.
    sigma : xarray.DataArray, optional
        Standard errors of Z's voxels, same dims as Z; errors by first-order propagation
        assuming independent voxels.
    draws : xarray.DataArray, optional
        Draws of the cube, dims of Z plus a leading ``draw`` dim (≥ 2 draws); errors are the
        standard deviation of the estimates over the draws (this keeps the correlations
        between voxels, and is preferred where available). With both, ``draws`` wins.
    min_snr : float, default 3
        Centroid, velocity and width are NaN where the flux is not positive, and, when errors
        are known, where ``flux / flux_err < min_snr``. 0 disables the S/N cut.

    Returns
    -------
    xarray.Dataset
        On Z's non-energy dims: ``flux``, ``centroid`` (keV), ``velocity`` (km/s), ``width``
        (keV), ``sigma_v`` (km/s) and their ``*_err`` (NaN without ``sigma`` or ``draws``).
        Every variable has ``units``; attrs record ``line`` (keV), ``line_name``, ``window``,
        ``continuum`` (bands), ``continuum_model``, ``channels_window``,
        ``channels_continuum``, ``method``, ``errors``, ``min_snr``, ``velocity_convention``
        and ``note``. Lazy (dask) if Z is.

    Raises
    ------
    ValueError
        Naming the argument: Z without an ``energy`` dim or with fewer than 3 channels; a line
        name not in :data:`LINES` or an energy outside Z's band; a window or continuum band
        that is malformed, outside Z's band or holds no channel; a continuum band overlapping
        the window; ``sigma`` / ``draws`` whose dims or sizes do not match Z; a negative
        ``min_snr``.

    Notes
    -----
    With :math:`x_j = E_j - E_0` the channel offsets and :math:`s_j = z_j - \hat c_j` the
    continuum-subtracted spectrum of a pixel over the window channels :math:`j \in W`:

    .. math::

        F = \sum_{j\in W} s_j, \qquad
        \bar x = \frac{1}{F}\sum_{j\in W} x_j s_j, \qquad
        w^2 = \frac{1}{F}\sum_{j\in W} (x_j-\bar x)^2 s_j,

    centroid :math:`\bar E = E_0 + \bar x`, velocity :math:`v = -c\,\bar x/E_0
    = c\,(1 - \bar E/E_0)`, width :math:`w` (a Gaussian's σ; it includes whatever line
    spread Z has, and the channel width's :math:`\Delta E^2/12`, with nothing subtracted),
    :math:`\sigma_v = c\,w/E_0`. The continuum :math:`\hat c = A_W (A_C^T A_C)^{-1} A_C^T z_C` is
    linear in the cube, so :math:`F`, :math:`G = F\bar x` and :math:`H = F(w^2 + \bar x^2)` are
    fixed linear combinations :math:`f^T z`, :math:`g^T z`, :math:`h^T z` of the cube's
    channels. First-order propagation with independent voxel errors :math:`\sigma_j`:

    .. math::

        \mathrm{Var}\,F = \sum_j \sigma_j^2 f_j^2, \quad
        \mathrm{Var}\,\bar x = \sum_j \sigma_j^2 \frac{(g_j - \bar x f_j)^2}{F^2}, \quad
        \mathrm{Var}\,w^2 = \sum_j \sigma_j^2 \frac{(h_j - 2\bar x g_j
        + (\bar x^2 - w^2) f_j)^2}{F^2},

    and :math:`\sigma_w = \sigma_{w^2}/(2w)`. Centroid, velocity and width are NaN where
    :math:`F \le 0` (or is rounding: :math:`F \le 10^{-9}\,|f|^T|z|`), and where no
    non-negative line on the window's channels could give the moments: a centroid outside
    the window or :math:`w` above half its width (Popoviciu's bound); the same rule applies
    to each draw, whose NaN estimates are left out of the spread. Ratio estimators are
    biased and heavy-tailed at low S/N; the propagated errors hold where :math:`F/\sigma_F`
    is large (hence ``min_snr``).
    """
    E, elo, ehi = _check_cube(Z)
    band_lo, band_hi = float(elo[0]), float(ehi[-1])
    dE = float(np.median(ehi - elo))
    e0 = line_energy(line)
    name = line if isinstance(line, str) else ""
    if not band_lo <= e0 <= band_hi:
        raise ValueError(f"line {line!r} ({e0:.6g} keV) lies outside Z's energy band "
                         f"[{band_lo:.6g}, {band_hi:.6g}] keV")
    wa, wb, win = _window_channels(E, e0, window, band_lo, band_hi, dE)
    bands, cont = _continuum_channels(E, win, wa, wb, continuum, band_lo, band_hi, dE)
    if not bands:
        model = "none"
    elif np.any(cont < win[0]) and np.any(cont > win[-1]) and cont.size >= 2:
        model = "linear"
    else:
        model = "constant"
    idx, f, g, h = _weights(E, e0, win, cont, model)
    min_snr = _check_min_snr(min_snr)
    errors = _error_source(Z, sigma, draws)

    # ---- estimates
    Zf = Z.astype(np.float64) if Z.dtype != np.float64 else Z
    F = _select(Zf, idx, f)
    xa, xb = float(E[win[0]] - e0), float(E[win[-1]] - e0)
    xbar, var = _moments(F, _select(Zf, idx, g), _select(Zf, idx, h), xa, xb)
    wid = np.sqrt(var.where(var > 0))
    if errors == "draws":
        F_err, x_err, w_err = _errors_from_draws(draws, idx, f, g, h, xa, xb)
    elif errors == "sigma":
        F_err, x_err, w_err = _errors_from_sigma(sigma, idx, f, g, h, F, xbar, var, wid)
    else:
        F_err = x_err = w_err = xr.full_like(F, np.nan)

    # a flux indistinguishable from rounding (e.g. a pure continuum, subtracted) is no line
    tiny = 1e-9 * _select(abs(Zf), idx, np.abs(f))
    good = F > tiny
    if errors != "none" and min_snr > 0:
        good = good & (F >= min_snr * F_err)
    out = _line_dataset(e0, F, F_err, xbar.where(good), x_err.where(good), wid.where(good),
                        w_err.where(good))
    note = {"draws": f"errors: standard deviation over {draws.sizes['draw']} draws"
                     if draws is not None else "",
            "sigma": "errors: first-order propagation of sigma, voxels taken as independent",
            "none": "errors not computed (pass sigma= or draws=): *_err are NaN; "
                    "no S/N cut applied"}[errors]
    out.attrs.update({
        "line": e0,
        "line_name": name,
        "window": [float(wa), float(wb)],
        "continuum": [[float(a), float(b)] for a, b in bands],
        "continuum_model": model,
        "channels_window": int(win.size),
        "channels_continuum": int(cont.size),
        "method": "moments: continuum-subtracted flux-weighted centroid and second moment",
        "errors": errors,
        "min_snr": min_snr,
        "velocity_convention": "v = c (1 - centroid / line), km/s, positive = receding",
        "note": note,
    })
    return out


def _check_cube(Z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refuse a ``Z`` that is not a cube with an energy dim; its channel centres and edges."""
    if not isinstance(Z, xr.DataArray):
        raise ValueError(f"Z must be an xarray.DataArray with an 'energy' dim; got "
                         f"{type(Z).__name__}")
    if "energy" not in Z.dims:
        raise ValueError(f"Z must have an 'energy' dim (keV); its dims are {Z.dims}")
    if "draw" in Z.dims:
        raise ValueError("Z must not have a 'draw' dim; pass draws of the cube as draws=")
    return _energy_grid(Z)


def _window_channels(E: np.ndarray, e0: float, window, band_lo: float, band_hi: float,
                     dE: float) -> tuple[float, float, np.ndarray]:
    """The line window ``(wa, wb)`` (keV; the default of :func:`line_map` if ``window`` is
    None) and the indices of the channels it holds (at least 3)."""
    if window is None:
        half = max(3 * dE, e0 * DEFAULT_HALF_WIDTH_KMS / C_KMS)
        wa, wb = max(e0 - half, band_lo), min(e0 + half, band_hi)
    else:
        wa, wb = _band("window", window, band_lo, band_hi)
        if not wa <= e0 <= wb:
            raise ValueError(f"window {tuple(window)!r} does not contain the line's rest "
                             f"energy {e0:.6g} keV")
    win = _channels(E, wa, wb)
    if win.size < 3:
        raise ValueError(f"window ({wa:.6g}, {wb:.6g}) keV holds {win.size} channel(s) of Z; "
                         "at least 3 are needed")
    return wa, wb, win


def _continuum_bands(continuum, wa: float, wb: float, band_lo: float, band_hi: float,
                     dE: float) -> list[tuple[float, float]]:
    """The continuum bands (keV) that ``continuum`` asks for: none for ``"none"``, the side
    bands of the window for None (see :func:`line_map`), else the checked bands given."""
    if isinstance(continuum, str):
        if continuum.lower() != "none":
            raise ValueError(f"continuum must be a sequence of (lo, hi) bands, None or "
                             f"'none'; got {continuum!r}")
        return []
    if continuum is None:
        hw = 0.5 * (wb - wa)
        bands = []
        if wa - band_lo > 0.5 * dE:
            bands.append((max(wa - hw, band_lo), wa))
        if band_hi - wb > 0.5 * dE:
            bands.append((wb, min(wb + hw, band_hi)))
        if not bands:
            raise ValueError(f"continuum: the window ({wa:.6g}, {wb:.6g}) keV fills Z's band; "
                             "pass continuum bands or continuum='none'")
        return bands
    try:
        raw = list(continuum)
    except TypeError:
        raise ValueError(f"continuum must be a sequence of (lo, hi) bands; got "
                         f"{continuum!r}") from None
    if raw and np.ndim(raw[0]) == 0:  # a single (lo, hi) pair
        raw = [raw]
    bands = [_band("continuum", b, band_lo, band_hi) for b in raw]
    if not bands:
        raise ValueError("continuum: an empty list of bands; use continuum='none' for no "
                         "continuum subtraction")
    return bands


def _continuum_channels(E: np.ndarray, win: np.ndarray, wa: float, wb: float, continuum,
                        band_lo: float, band_hi: float, dE: float
                        ) -> tuple[list[tuple[float, float]], np.ndarray]:
    """The continuum bands and the sorted indices of their channels, none in the window."""
    bands = _continuum_bands(continuum, wa, wb, band_lo, band_hi, dE)
    cont_sets = []
    for a, b in bands:
        ch = _channels(E, a, b)
        ch = ch[(E[ch] < E[win[0]]) | (E[ch] > E[win[-1]])] if continuum is None else ch
        if ch.size == 0:
            raise ValueError(f"continuum band ({a:.6g}, {b:.6g}) keV holds no channel of Z")
        if np.intersect1d(ch, win).size:
            raise ValueError(f"continuum band ({a:.6g}, {b:.6g}) keV overlaps the window "
                             f"({wa:.6g}, {wb:.6g}) keV")
        cont_sets.append(ch)
    cont = np.unique(np.concatenate(cont_sets)) if cont_sets else np.zeros(0, np.int64)
    return bands, cont


def _check_min_snr(min_snr) -> float:
    if min_snr is None or not np.isfinite(float(min_snr)) or float(min_snr) < 0:
        raise ValueError(f"min_snr must be a finite number >= 0; got {min_snr!r}")
    return float(min_snr)


def _error_source(Z: xr.DataArray, sigma, draws) -> str:
    """``"draws"``, ``"sigma"`` or ``"none"``: where :func:`line_map`'s errors come from,
    after checking that ``draws`` / ``sigma`` match ``Z``."""
    if draws is not None:
        if not isinstance(draws, xr.DataArray) or "draw" not in draws.dims:
            raise ValueError("draws must be a DataArray with a 'draw' dim and Z's dims")
        if set(draws.dims) - {"draw"} != set(Z.dims):
            raise ValueError(f"draws must have Z's dims {Z.dims} plus 'draw'; got {draws.dims}")
        if any(draws.sizes[d] != Z.sizes[d] for d in Z.dims):
            raise ValueError(f"draws' sizes {dict(draws.sizes)} do not match Z's "
                             f"{dict(Z.sizes)}")
        if draws.sizes["draw"] < 2:
            raise ValueError(f"draws needs at least 2 draws; got {draws.sizes['draw']}")
        return "draws"
    if sigma is not None:
        if not isinstance(sigma, xr.DataArray) or set(sigma.dims) != set(Z.dims):
            raise ValueError(f"sigma must be a DataArray with Z's dims {Z.dims}")
        if any(sigma.sizes[d] != Z.sizes[d] for d in Z.dims):
            raise ValueError(f"sigma's sizes {dict(sigma.sizes)} do not match Z's "
                             f"{dict(Z.sizes)}")
        return "sigma"
    return "none"


def _errors_from_draws(draws: xr.DataArray, idx, f, g, h, xa: float, xb: float):
    """Standard errors of the flux, centroid offset and width: their spread over the draws."""
    D = draws.astype(np.float64) if draws.dtype != np.float64 else draws
    Fd = _select(D, idx, f)
    xd, vd = _moments(Fd, _select(D, idx, g), _select(D, idx, h), xa, xb)
    wd = np.sqrt(vd.where(vd > 0))
    return _draw_std(Fd), _draw_std(xd), _draw_std(wd)


def _errors_from_sigma(sigma: xr.DataArray, idx, f, g, h, F, xbar, var, wid):
    """Standard errors of the flux, centroid offset and width by first-order propagation of
    independent voxel errors (the formulas in :func:`line_map`'s notes)."""
    s2 = sigma.astype(np.float64) ** 2

    def S(a: np.ndarray, b: np.ndarray) -> xr.DataArray:
        return _select(s2, idx, a * b)

    ff, fg, gg = S(f, f), S(f, g), S(g, g)
    fh, gh, hh = S(f, h), S(g, h), S(h, h)
    F_err = np.sqrt(ff)
    Fs = F.where(F > 0)
    x_err = np.sqrt(np.maximum(gg - 2 * xbar * fg + xbar**2 * ff, 0)) / Fs
    a = xbar**2 - var
    var_w2 = (hh + 4 * xbar**2 * gg + a**2 * ff - 4 * xbar * gh + 2 * a * fh
              - 4 * a * xbar * fg)
    w_err = np.sqrt(np.maximum(var_w2, 0)) / Fs / (2 * wid)
    return F_err, x_err, w_err


def _line_dataset(e0: float, F, F_err, xbar, x_err, wid, w_err) -> xr.Dataset:
    """The line map's variables, with units and long names, from the moments and errors."""
    k = C_KMS / e0
    out = xr.Dataset({
        "centroid": e0 + xbar, "centroid_err": x_err,
        "velocity": -k * xbar, "velocity_err": k * x_err,
        "width": wid, "width_err": w_err,
        "sigma_v": k * wid, "sigma_v_err": k * w_err,
        "flux": F, "flux_err": F_err,
    })
    for v in out.data_vars:
        out[v].attrs["units"] = _UNITS[v]
        base = v.removesuffix("_err")
        out[v].attrs["long_name"] = (_LONG[base] if v == base
                                     else f"standard error of {base}")
    return out


def upsample(cube_coarse: xr.DataArray, Z_like: xr.DataArray) -> xr.DataArray:
    """Spread a cube on a coarser pixel grid onto ``Z_like``'s (y, x) grid (flux per pixel).

    Every coarse pixel's flux is shared evenly among the ``vM × vN`` fine pixels it covers
    (the same as :func:`xfusion.baselines.y_only` with uniform areas). ``cube_coarse`` has
    dims (energy, y_coarse, x_coarse) with sizes dividing Z_like's (y, x).

    Raises
    ------
    ValueError
        Dims missing or sizes that are not integer multiples.
    """
    for d in ("energy", "y_coarse", "x_coarse"):
        if d not in cube_coarse.dims:
            raise ValueError(f"cube_coarse must have dims (energy, y_coarse, x_coarse); got "
                             f"{cube_coarse.dims}")
    for d in ("energy", "y", "x"):
        if d not in Z_like.dims:
            raise ValueError(f"Z_like must have dims (energy, y, x); got {Z_like.dims}")
    c = cube_coarse.transpose("energy", "y_coarse", "x_coarse")
    M, N = Z_like.sizes["y"], Z_like.sizes["x"]
    m, n = c.sizes["y_coarse"], c.sizes["x_coarse"]
    if M % m or N % n or c.sizes["energy"] != Z_like.sizes["energy"]:
        raise ValueError(f"cube_coarse's sizes {dict(c.sizes)} do not divide Z_like's "
                         f"{dict(Z_like.sizes)}")
    vM, vN = M // m, N // n
    z = np.repeat(np.repeat(np.asarray(c.values, float), vM, axis=1), vN, axis=2) / (vM * vN)
    coords = {k: v for k, v in Z_like.coords.items() if set(v.dims) <= {"energy", "y", "x"}}
    return xr.DataArray(z, dims=("energy", "y", "x"), coords=coords,
                        attrs={"units": cube_coarse.attrs.get("units", ""),
                               "method": "upsampled"})
