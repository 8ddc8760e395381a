"""Simulated fusion problems: the four toy models of the paper's Table 1 on a synthetic remnant.

>>> import xfusion as xf
>>> ds = xf.simulate.scenario("gaussian_1kev_rebin", seed=0, scale=0.2)
>>> ds.sizes["energy"], ds.sizes["y"], ds.sizes["y_coarse"]
(480, 9, 3)

Scenarios (:data:`SCENARIOS`; full size, see ``docs/scenarios.md``)
-------------------------------------------------------------------
=========================  ==============  =============  ===============  ==================
name                       X (l, M, N)     Y (L, m, n)    band (keV)       counts X / Y
=========================  ==============  =============  ===============  ==================
``gaussian_1kev``          2500 × 45 × 45  2500 × 45 × 45 0.5–1.4          2.4e7 / 2.3e7
``gaussian_6kev``          2000 × 45 × 45  2000 × 45 × 45 6.2–6.9          3.2e7 / 3.1e7
``gaussian_1kev_rebin``    60 × 45 × 45    2400 × 15 × 15 0.5–1.4          2.7e6 / 2.5e6
``realistic_1kev_rebin``   60 × 45 × 45    2400 × 15 × 15 0.5–1.4          4.5e7 / 3.0e7
=========================  ==============  =============  ===============  ==================

The sky
-------
The paper's truth came from a hydrodynamic simulation (Orlando et al. 2016) that we do not have.
:func:`make_remnant` builds a physically motivated stand-in on a coarse 3-D grid of emitting cells
(one cell per fine pixel on each axis): a clumpy, rippled ejecta shell in homologous expansion
(line-of-sight velocities up to ±7000 km/s, so lines split in two at the centre), a fainter
forward-shock shell, a bright compact knot in the south, and a faint diffuse foreground. Each cell
has an electron temperature (0.2–3 keV), an ionisation age ``log τ`` (8–11.5), a velocity and
abundances of O, Ne, Mg and Fe (O-rich and Fe-rich ejecta). :func:`remnant_cube` turns the cells
into spectra — a bremsstrahlung-like continuum plus the main lines of the band (O VII/VIII, Fe L,
Ne IX/X, Mg XI near 1 keV; Fe K 6.4 keV, Fe XX–XXIV, Fe XXV and Fe XXVI near 6.5 keV) whose
strengths follow a phenomenological ionisation balance, with thermal and Doppler widths — and
projects them along the line of sight, with interstellar absorption. All of it is vectorised.

The truth's resolution
----------------------
Z is meant to keep X's pixels and Y's channels, and the forward model (docs/model.md) has neither
X's PSF nor Y's line-spread function. So, by default, ``Z_true`` is the sky *seen at that
resolution*: lines carry Y's line-spread function (added in quadrature to their widths) and
every energy slice is blurred by X's PSF (the paper's "PSF std" of X, Table 1). ``X_true`` and
``Y_true`` are then exactly the model applied to ``Z_true``. Pass ``sharp=True`` for the sky
without either.

Photon counts
-------------
``Z_true`` is normalised so that the expected counts of X match the target of Table 1 exactly
(exposure of X fixed at 50 ks); Y's exposure is then chosen (to 10 s) so that Y's counts match
its target. For ``scale < 1`` the targets are multiplied by the ratio of Z's voxel numbers
(``M·N·L``), which keeps the counts per voxel, hence the noise level, as at full size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.signal import fftconvolve
from scipy.special import ndtr

from .kernels import gaussian_psf, gaussian_response, king_psf
from .problem import make_problem

__all__ = [
    "SCENARIOS",
    "REMNANT_SEED",
    "UnknownScenarioError",
    "Remnant",
    "ScenarioSpec",
    "spec",
    "grid",
    "scenario",
    "add_background",
    "make_remnant",
    "remnant_cube",
    "expected_counts",
    "area_epic_pn",
    "area_resolve",
    "response_epic",
    "absorption",
    "ionisation_temperature",
    "Line",
    "LINES",
]

C_KMS = 299_792.458
AMU_KEV = 931_494.10242
#: Seed of the remnant shared by all scenarios and noise seeds (the paper used one simulation).
REMNANT_SEED = 2025
#: Hydrogen column (cm⁻²) of the interstellar absorption applied to the sky.
NH_DEFAULT = 0.1e22
#: Pixel size of Z and X (arcsec), as in the paper.
PIXEL_SIZE = 10.0
#: Side of the PSF kernel in fine pixels (the paper's figures show 4′50″ ≈ 29 × 10″).
PSF_SIZE = 29
#: Exposure of X (s); Y's exposure is solved to reach its count target.
EXPOSURE_X = 50_000.0
#: Largest line-of-sight speed in the remnant (km/s).
V_MAX = 7000.0

_ELEMENTS = ("O", "Ne", "Mg", "Fe")
_MASS = {"O": 16.0, "Ne": 20.18, "Mg": 24.31, "Fe": 55.85}


# ----------------------------------------------------------------------------- scenarios
class UnknownScenarioError(KeyError, ValueError):
    """An unknown scenario name; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ScenarioSpec:
    """Full-size definition of one scenario (paper Table 1, plus our instrument choices).

    Attributes
    ----------
    name, description : str
    band : (float, float)
        Energy range of Z (keV).
    L, l : int
        Channels of Y / Z and of X at full size (``vL = L / l``).
    m, vM : int
        Pixels per side of Y and the spatial rebinning factor (``M = vM·m``).
    psf_Y, psf_Y_std : str, float
        Y's PSF model (``"gaussian"`` or ``"king"``) and its per-axis standard deviation in arcsec
        (for the King profile, of the kernel truncated to ``PSF_SIZE`` pixels).
    king_beta : float
        King slope of Y's PSF.
    psf_X_std : float
        X's PSF (arcsec, Gaussian); blurs ``Z_true`` only (not in the forward model).
    response_X, response_X_std : str, float
        X's spectral response (``"gaussian"`` or ``"epic"``) and its std (keV) at 1 keV.
    lsf_Y_std : float
        Y's line-spread function std (keV); broadens the lines of ``Z_true`` only.
    areas : str
        ``"flat"`` (constant ``area_X``, ``area_Y``) or ``"realistic"`` (EPIC-pn- and
        Resolve-shaped curves).
    area_X, area_Y : float
        Flat effective areas (cm²), used when ``areas == "flat"``.
    counts_X, counts_Y : float
        Target expected counts at full size.
    """

    name: str
    description: str
    band: tuple[float, float]
    L: int
    l: int
    m: int
    vM: int
    psf_Y: str
    psf_Y_std: float
    psf_X_std: float
    response_X: str
    response_X_std: float
    lsf_Y_std: float
    areas: str
    counts_X: float
    counts_Y: float
    king_beta: float = 2.0
    area_X: float = 600.0
    area_Y: float = 200.0

    @property
    def vL(self) -> int:
        """Channel rebinning factor ``L / l``."""
        return self.L // self.l


_SPECS: dict[str, ScenarioSpec] = {
    s.name: s
    for s in (
        ScenarioSpec(
            "gaussian_1kev",
            "Gaussian PSF and response, flat areas, same grids for X and Y (45x45x2500), "
            "0.5-1.4 keV",
            (0.5, 1.4), 2500, 2500, 45, 1, "gaussian", 30.0, 10.0, "gaussian", 0.021, 0.0025,
            "flat", 2.4e7, 2.3e7),
        ScenarioSpec(
            "gaussian_6kev",
            "Gaussian PSF and response, flat areas, same grids (45x45x2000), 6.2-6.9 keV "
            "(Fe K), strong spectral variability",
            (6.2, 6.9), 2000, 2000, 45, 1, "gaussian", 30.0, 10.0, "gaussian", 0.021, 0.0025,
            "flat", 3.2e7, 3.1e7),
        ScenarioSpec(
            "gaussian_1kev_rebin",
            "Gaussian PSF and response, flat areas, X 45x45x60 and Y 15x15x2400, 0.5-1.4 keV",
            (0.5, 1.4), 2400, 60, 15, 3, "gaussian", 30.0, 10.0, "gaussian", 0.021, 0.0025,
            "flat", 2.7e6, 2.5e6),
        ScenarioSpec(
            "realistic_1kev_rebin",
            "King PSF with broad wings, energy-dependent EPIC-like response with a low-energy "
            "shoulder, EPIC-pn- and Resolve-shaped areas, X 45x45x60 and Y 15x15x2400, "
            "0.5-1.4 keV",
            (0.5, 1.4), 2400, 60, 15, 3, "king", 33.0, 11.0, "epic", 0.051, 0.0014,
            "realistic", 4.5e7, 3.0e7),
    )
}

#: Scenario names and one-line descriptions.
SCENARIOS: dict[str, str] = {k: v.description for k, v in _SPECS.items()}


def spec(name: str) -> ScenarioSpec:
    """Return the full-size :class:`ScenarioSpec` of a scenario.

    Raises
    ------
    UnknownScenarioError
        (a ``KeyError`` and ``ValueError``) for an unknown name; the message lists the valid ones.
    """
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise UnknownScenarioError(f"unknown scenario {name!r}; valid names: "
                       f"{', '.join(sorted(_SPECS))}") from None


def grid(name: str, scale: float = 1.0) -> dict[str, int]:
    """Grid sizes of a scenario at ``scale`` without building it.

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`.
    scale : float
        Shrink factor in (0, 4]: ``m = max(3, round(15·scale))`` coarse pixels per side
        (``M = 3m`` fine pixels, also for the scenarios without spatial rebinning),
        ``l = max(lmin, round(l_full·scale))`` channels of X and ``L = vL·l`` (halves round
        up).

    Returns
    -------
    dict
        ``L, l, M, N, m, n, vL, vM, vN``.
    """
    s = spec(name)
    scale = _check_scale(scale)
    m3 = max(3, _round_half_up(15 * scale))
    M = 3 * m3
    m = M // s.vM
    lmin = 3 if s.vL > 1 else 60
    l = max(lmin, _round_half_up(s.l * scale))
    return {"L": l * s.vL, "l": l, "M": M, "N": M, "m": m, "n": m,
            "vL": s.vL, "vM": s.vM, "vN": s.vM}


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _check_scale(scale: float) -> float:
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale must be a number, got {scale!r}") from None
    if not (0 < scale <= 4):
        raise ValueError(f"scale must be in (0, 4], got {scale}")
    return scale


# ----------------------------------------------------------------------------- instruments
def absorption(energy: np.ndarray, nH: float = NH_DEFAULT) -> np.ndarray:
    r"""Interstellar transmission :math:`e^{-N_H\sigma(E)}` (approximate).

    :math:`\sigma(E) = 2.4\times10^{-22}\,(E/\mathrm{keV})^{-8/3}` cm² per H atom above the
    O K edge (0.538 keV) and 0.6 times that below it: a two-piece power law close to
    Morrison & McCammon (1983) over 0.3–10 keV (within ~30 %).
    """
    E = np.asarray(energy, float)
    sigma = 2.4e-22 * E ** (-8.0 / 3.0) * np.where(E < 0.538, 0.6, 1.0)
    return np.exp(-nH * sigma)


def _filter(E: np.ndarray, tau_low: float, tau_edge: float) -> np.ndarray:
    """Transmission of a thin filter: continuum absorption plus an O K edge at 0.538 keV."""
    tau = tau_low * (E / 0.5) ** -2.6 + tau_edge * (E / 0.538) ** -2.6 * (E >= 0.538)
    return np.exp(-tau)


def area_epic_pn(energy: np.ndarray) -> np.ndarray:
    """Effective area (cm²) shaped like XMM-Newton/EPIC-pn with the medium filter.

    A mirror/QE rise ``900 (1 - exp(-(E/0.45)^2.5))`` times a filter transmission with an O K
    edge: about 460 cm² at 0.5 keV, a ~20 % dip just above 0.538 keV, 650 cm² at 0.7 keV,
    800 cm² at 1 keV and 850 cm² at 1.4 keV. The shape, not the calibration, is the point.
    """
    E = np.asarray(energy, float)
    return 900.0 * (1 - np.exp(-((E / 0.45) ** 2.5))) * _filter(E, 0.35, 0.25)


def area_resolve(energy: np.ndarray) -> np.ndarray:
    """Effective area (cm²) shaped like XRISM/Resolve with the gate valve open.

    ``250 (1 - exp(-(E/0.5)^2))`` times the transmission of the optical blocking filters (a
    steep low-energy cut-off and the O K edge): about 50 cm² at 0.5 keV, 110 cm² at 0.7 keV,
    190 cm² at 1 keV, 225 cm² at 1.4 keV and ~250 cm² near 6.5 keV. With the gate valve closed
    (its Be window) Resolve sees nothing below ~1.7 keV, so that configuration would leave this
    band empty; the roll-off here is the filters'.
    """
    E = np.asarray(energy, float)
    return 250.0 * (1 - np.exp(-((E / 0.5) ** 2))) * _filter(E, 1.2, 0.35)


def _epic_shape(E: np.ndarray, std_1kev: float) -> tuple[np.ndarray, float, float]:
    """Core sigma(E), shoulder fraction and scale with total std ∝ sqrt(E), std_1kev at 1 keV."""
    frac, s = 0.04, 0.06
    total = std_1kev * np.sqrt(E)
    core2 = (total**2 - 2 * frac * s**2 + (frac * s) ** 2) / (1 - frac)
    return np.sqrt(np.maximum(core2, (0.2 * total) ** 2)), frac, s


def response_epic(energy: np.ndarray, energy_edges: np.ndarray, vL: int,
                  std_1kev: float = 0.051) -> np.ndarray:
    r"""(l × L) CCD-like response: Gaussian core plus a low-energy shoulder, varying with energy.

    Parameters
    ----------
    energy, energy_edges : ndarray
        Z's bin centres (L,) and edges (L + 1,), keV.
    vL : int
        Channel rebinning factor.
    std_1kev : float
        Standard deviation (keV) of the whole response at 1 keV.

    Notes
    -----
    A fraction :math:`f = 0.04` of the photons of true energy :math:`E` land in an exponential
    shoulder :math:`\propto e^{-(E-e)/s}` below :math:`E` (:math:`s = 60` eV, partial charge
    collection), the rest in a Gaussian core. The core width is chosen so that the standard
    deviation of the whole response is ``std_1kev·sqrt(E / 1 keV)`` (Fano-like), i.e. 51 eV at
    1 keV, 36 eV at 0.5 keV and 60 eV at 1.4 keV with the default. Photons redistributed out of
    the band are lost (columns sum to less than 1 near the edges).
    """
    E = np.asarray(energy, float)
    edges = np.asarray(energy_edges, float)
    core, frac, s = _epic_shape(E, std_1kev)
    R = (1 - frac) * gaussian_response(E, core, vL=vL, energy_edges=edges)
    e = edges[::vL]
    F = np.exp(-np.maximum(E[None, :] - e[:, None], 0.0) / s)  # shoulder CDF at coarse edges
    F = np.where(e[:, None] >= E[None, :], 1.0, F)
    return R + frac * np.diff(F, axis=0)


def _std_axis(psf: np.ndarray, pixel: float) -> float:
    h = psf.shape[-1] // 2
    g = np.arange(-h, h + 1) * pixel
    return float(np.sqrt((psf.sum(axis=0) * g**2).sum()))


def _king_rcore(std: float, beta: float, size: int, pixel: float) -> float:
    """Core radius giving a truncated King kernel of per-axis std ``std`` (bisection)."""
    lo, hi = 0.5, 20 * std
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _std_axis(king_psf(mid, beta, size, pixel, normalise="kernel"), pixel) < std:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _psf_size(M: int) -> int:
    return int(min(PSF_SIZE, 2 * M - 1) // 2 * 2 + 1)


# ----------------------------------------------------------------------------- the remnant
@dataclass
class Remnant:
    """Emitting cells of a synthetic remnant, projected onto an (M, N) pixel grid.

    Each attribute is an array over the K cells unless stated.

    Attributes
    ----------
    shape : (int, int)
        Pixel grid (M, N) the cells project onto.
    pixel : ndarray of int
        Flat pixel index ``y·N + x`` of each cell.
    em : ndarray
        Emission measure (arbitrary units).
    kT : ndarray
        Electron temperature (keV).
    log_tau : ndarray
        Ionisation age log10(n_e t / cm⁻³ s).
    v_los : ndarray
        Line-of-sight velocity (km/s, positive = receding = redshift).
    sigma_v : ndarray
        Velocity dispersion inside the cell (km/s): turbulence and the velocity gradient.
    abundance : ndarray (K, 4)
        O, Ne, Mg, Fe abundances relative to solar.
    component : ndarray of int8
        0 ejecta shell, 1 knot, 2 forward shock, 3 foreground.
    powerlaw : ndarray (M·N,)
        Per-pixel normalisation of a Γ = 1.4 power law (unresolved background sources).
    """

    shape: tuple[int, int]
    pixel: np.ndarray
    em: np.ndarray
    kT: np.ndarray
    log_tau: np.ndarray
    v_los: np.ndarray
    sigma_v: np.ndarray
    abundance: np.ndarray
    component: np.ndarray
    powerlaw: np.ndarray

    COMPONENTS = ("ejecta", "knot", "forward_shock", "foreground")

    def __len__(self) -> int:
        return int(self.pixel.size)


def _field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth Gaussian random field, zero mean and unit standard deviation."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), max(sigma, 0.5), mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-300)


@dataclass(frozen=True)
class _RemnantGrid:
    """The ``G``³ grid of cells of :func:`make_remnant`: centred (z, y, x) offsets in cells,
    radius, shell radius ``R``, cells per full-size cell ``u`` and each cell's flat pixel."""

    G: int
    u: float
    c: float
    zz: np.ndarray
    yy: np.ndarray
    xx: np.ndarray
    r: np.ndarray
    R: float
    pix: np.ndarray


def _remnant_grid(G: int) -> _RemnantGrid:
    """The cell grid of a ``G``³ remnant."""
    u = G / 45.0  # cells per full-size cell
    c = (G - 1) / 2
    ax = np.arange(G) - c
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")  # (z, y, x)
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    R = 0.36 * G
    pix = np.broadcast_to((np.arange(G)[:, None] * G + np.arange(G)[None, :])[None], (G, G, G))
    return _RemnantGrid(G, u, c, zz, yy, xx, r, R, pix)


def _remnant_fields(rng: np.random.Generator, g: _RemnantGrid) -> dict[str, np.ndarray]:
    """Every random draw of the remnant, in a fixed order (the same seed, the same remnant)."""
    G, R, u = g.G, g.R, g.u
    f = {}
    f["ripple"] = _field(rng, (G, G, G), 0.3 * R)
    f["clumps"] = _field(rng, (G, G, G), 1.0 * u)
    f["g_fe"] = _field(rng, (G, G, G), 0.25 * R)
    f["g_T"] = _field(rng, (G, G, G), 0.12 * R)
    f["g_tau"] = _field(rng, (G, G, G), 0.12 * R)
    f["g_turb"] = _field(rng, (G, G, G), 0.15 * R)
    f["g_pec"] = _field(rng, (G, G, G), 2.0 * u)
    f["g_bulk"] = _field(rng, (G, G, G), 0.3 * R)
    f["scatter"] = rng.standard_normal((4, G, G, G))
    dip = rng.standard_normal(3)
    dip /= np.linalg.norm(dip)
    f["dip"] = dip
    return f


def _ejecta_shell(g: _RemnantGrid,
                  f: dict[str, np.ndarray]) -> tuple[tuple, np.ndarray, np.ndarray]:
    """The ejecta shell's cells (a part of :func:`_remnant_from_parts`), the emission measure of
    every cell of the grid and the mask of the cells kept."""
    zz, yy, xx, r, R = g.zz, g.yy, g.xx, g.r, g.R
    clumps, dip, f_fe_field = f["clumps"], f["dip"], f["g_fe"]
    width = max(0.045 * g.G, 0.6)
    R_loc = R * (1 + 0.07 * f["ripple"])
    rho = np.exp(-0.5 * ((r - R_loc) / width) ** 2) * np.exp(0.5 * clumps - 0.125)
    rn = np.maximum(r, 1e-9)
    rho *= 1 + 0.2 * (zz * dip[0] + yy * dip[1] + xx * dip[2]) / rn
    em = rho**2
    keep = em > 1e-4 * em.max()

    f_fe = 1 / (1 + np.exp(-2.5 * (f_fe_field - 0.4)))  # ~35 % of the shell Fe-rich
    t = ndtr((0.8 * f["g_T"] + 0.6 * (2 * f_fe - 1)) / np.hypot(0.8, 0.45))
    kT = 0.2 * 15.0**t
    log_tau = 8 + 3.5 * ndtr(0.6 * f["g_tau"] + 0.6 * clumps)
    o_rich = np.array([6.0, 4.0, 3.0, 2.0])[:, None, None, None]
    fe_rich = np.array([1.0, 1.0, 1.0, 8.0])[:, None, None, None]
    ab = (o_rich * (1 - f_fe) + fe_rich * f_fe) * np.exp(0.1 * f["scatter"])
    v_exp = 6000.0
    v_pec = 300.0 * f["g_turb"] + 1000.0 * f["g_pec"] + 1500.0 * f["g_bulk"] * f_fe
    v_los = np.clip(v_exp * zz / R + v_pec, -V_MAX, V_MAX)
    sig_v = np.hypot(300.0, v_exp / R / np.sqrt(12)) * np.ones_like(r)
    part = (g.pix[keep], em[keep], kT[keep], log_tau[keep], v_los[keep], sig_v[keep],
            ab[:, keep].T, 0)
    return part, em, keep


def _knot(g: _RemnantGrid) -> tuple:
    """The bright compact knot in the south (negative y offset), on the shell."""
    R, u = g.R, g.u
    kc = np.array([0.05 * R, -0.92 * R, 0.12 * R])  # (z, y, x) offsets in cells
    ks = max(1.1 * u, 0.6)
    d2 = (g.zz - kc[0]) ** 2 + (g.yy - kc[1]) ** 2 + (g.xx - kc[2]) ** 2
    rho_k = 7.0 * np.exp(-0.5 * d2 / ks**2)
    kk = rho_k > 1e-2
    nk = int(kk.sum())
    return (g.pix[kk], rho_k[kk] ** 2, np.full(nk, 1.8), np.full(nk, 11.0),
            np.full(nk, 1500.0), np.full(nk, 250.0),
            np.tile([8.0, 6.0, 5.0, 3.0], (nk, 1)), 1)


def _forward_shock(g: _RemnantGrid, f: dict[str, np.ndarray], em: np.ndarray) -> tuple:
    """The forward shock: swept-up interstellar gas in a thin shell at 0.45·size."""
    G = g.G
    R_fs = 0.45 * G
    rho_fs = 0.25 * np.exp(-0.5 * ((g.r - R_fs * (1 + 0.03 * f["ripple"]))
                                   / max(0.025 * G, 0.5)) ** 2)
    rho_fs *= np.exp(0.3 * f["clumps"])
    fk = rho_fs**2 > 1e-4 * em.max()
    nf = int(fk.sum())
    return (g.pix[fk], rho_fs[fk] ** 2, np.full(nf, 2.0), np.full(nf, 10.5),
            np.clip(4000.0 * g.zz[fk] / R_fs, -V_MAX, V_MAX), np.full(nf, 300.0),
            np.ones((nf, 4)), 2)


def _foreground(g: _RemnantGrid, em: np.ndarray, keep: np.ndarray) -> tuple[tuple, np.ndarray]:
    """The faint diffuse foreground (one emitter per pixel) and the per-pixel power law."""
    G, c = g.G, g.c
    P = G * G
    py, px = np.divmod(np.arange(P), G)
    grad = 1 + 0.2 * ((px - c) - 0.5 * (py - c)) / G
    fg = 2e-4 * grad * em[keep].sum() / P
    part = (np.arange(P), fg, np.full(P, 0.2), np.full(P, 12.0), np.zeros(P),
            np.full(P, 100.0), np.ones((P, 4)), 3)
    powerlaw = 5e-4 * grad * em[keep].sum() / P
    return part, powerlaw


def _remnant_from_parts(G: int, parts: list[tuple], powerlaw: np.ndarray) -> Remnant:
    """Concatenate the components' cells ``(pixel, em, kT, log_tau, v_los, sigma_v, abundance,
    component)`` into a :class:`Remnant`."""
    cat = [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(6)]
    return Remnant(
        shape=(G, G),
        pixel=cat[0].astype(np.int64),
        em=cat[1].astype(float),
        kT=cat[2].astype(float),
        log_tau=cat[3].astype(float),
        v_los=cat[4].astype(float),
        sigma_v=cat[5].astype(float),
        abundance=np.concatenate([p[6] for p in parts]).astype(float),
        component=np.concatenate([np.full(len(p[0]), p[7], np.int8) for p in parts]),
        powerlaw=powerlaw.astype(float),
    )


def make_remnant(size: int = 45, seed: int = REMNANT_SEED) -> Remnant:
    """Build the synthetic remnant on a ``size``³ grid of cells (one cell per fine pixel).

    Parameters
    ----------
    size : int
        Cells per axis; the image is ``size × size`` pixels.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same remnant.

    Returns
    -------
    Remnant

    Notes
    -----
    Lengths are fractions of ``size`` (45 at full size), so smaller grids hold the same remnant
    at a coarser sampling:

    * ejecta shell of radius 0.36·size (16 cells), rippled by ±7 %, Gaussian radial profile
      (σ = 0.045·size), a density modulated by lognormal clumps (σ_ln = 0.5, correlation
      length ~1 cell) and a 20 % brightness dipole; emission measure ∝ density²;
    * homologous expansion ``v = 6000 km/s · r / R`` plus peculiar velocities (300 km/s on
      0.15 R, 1000 km/s on ~2 cells, and 1500 km/s bulk motions of the Fe-rich plumes on
      0.3 R); line-of-sight speed clipped at 7000 km/s; the dispersion inside a cell is
      300 km/s of turbulence plus the velocity step across it (``6000/R/√12``);
    * kT roughly log-uniform over 0.2–3 keV (a smooth field on 0.12 R, hotter where Fe-rich)
      and log τ roughly uniform over 8–11.5 (smooth field on 0.12 R plus the clumps: denser
      gas is more ionised);
    * O-rich (O 6, Ne 4, Mg 3, Fe 2 × solar) and Fe-rich (O 1, Ne 1, Mg 1, Fe 8) ejecta mixed
      by a smooth field on 0.25 R (~35 % Fe-rich), with 10 % cell-to-cell scatter;
    * a bright compact knot in the south (Gaussian, σ ≈ 1.1 cells, peak density 7× the shell's,
      kT 1.8 keV, log τ 11, O 8, Ne 6, Mg 5, Fe 3, receding at 1500 km/s);
    * a forward-shock shell at 0.45·size (density 0.25, kT 2 keV, log τ 10.5, solar,
      4000 km/s · z / R_fs);
    * a faint diffuse foreground (kT 0.2 keV, solar, at rest) with a gentle gradient and a
      faint Γ = 1.4 power law, so that no pixel is empty.
    """
    G = int(size)
    if G < 3:
        raise ValueError(f"size must be at least 3, got {G}")
    rng = np.random.default_rng(seed)
    g = _remnant_grid(G)
    f = _remnant_fields(rng, g)
    shell, em, keep = _ejecta_shell(g, f)
    parts = [shell, _knot(g), _forward_shock(g, f, em)]
    foreground, powerlaw = _foreground(g, em, keep)
    parts.append(foreground)
    return _remnant_from_parts(G, parts, powerlaw)


# ----------------------------------------------------------------------------- spectra
@dataclass(frozen=True)
class Line:
    """An emission line: rest energy (keV), element, ionisation-balance peak and width.

    ``strength`` is the equivalent width (keV) at solar abundance and the peak of the ion's
    ionisation balance; ``kT_peak`` (keV) and ``width`` (in ln kT) describe that balance as a
    Gaussian in ln kT_z; ``E_exc`` (keV) is the excitation energy (default: the line's).
    """

    name: str
    energy: float
    element: str
    strength: float
    kT_peak: float
    width: float
    E_exc: float | None = None


#: Lines of the two bands (rest energies in keV).
LINES: tuple[Line, ...] = (
    # oxygen
    Line("O VII f", 0.5610, "O", 0.045, 0.15, 0.7),
    Line("O VII i", 0.5686, "O", 0.015, 0.15, 0.7),
    Line("O VII r", 0.5740, "O", 0.060, 0.15, 0.7),
    Line("O VII He-beta", 0.6656, "O", 0.010, 0.15, 0.7),
    Line("O VIII Ly-alpha", 0.6536, "O", 0.080, 0.35, 0.6),
    Line("O VIII Ly-beta", 0.7746, "O", 0.012, 0.35, 0.6),
    # Fe L
    Line("Fe XVII 3G/M2", 0.7252, "Fe", 0.010, 0.45, 0.5),
    Line("Fe XVII 3F", 0.7271, "Fe", 0.010, 0.45, 0.5),
    Line("Fe XVII 3E", 0.7389, "Fe", 0.012, 0.45, 0.5),
    Line("Fe XVII 3D", 0.8124, "Fe", 0.012, 0.45, 0.5),
    Line("Fe XVII 3C", 0.8258, "Fe", 0.030, 0.45, 0.5),
    Line("Fe XVIII", 0.8540, "Fe", 0.010, 0.7, 0.45),
    Line("Fe XVIII", 0.8730, "Fe", 0.020, 0.7, 0.45),
    Line("Fe XIX", 0.9178, "Fe", 0.020, 0.85, 0.45),
    Line("Fe XX", 0.9650, "Fe", 0.015, 1.0, 0.45),
    Line("Fe XXI", 1.0093, "Fe", 0.015, 1.2, 0.45),
    Line("Fe XXII", 1.0530, "Fe", 0.012, 1.4, 0.45),
    Line("Fe XXIV", 1.1100, "Fe", 0.010, 2.0, 0.45),
    Line("Fe XXIII", 1.1290, "Fe", 0.015, 1.6, 0.45),
    Line("Fe XXIV", 1.1675, "Fe", 0.015, 2.0, 0.45),
    # neon and magnesium
    Line("Ne IX f", 0.9051, "Ne", 0.030, 0.3, 0.6),
    Line("Ne IX i", 0.9149, "Ne", 0.010, 0.3, 0.6),
    Line("Ne IX r", 0.9220, "Ne", 0.040, 0.3, 0.6),
    Line("Ne X Ly-alpha", 1.0220, "Ne", 0.050, 0.6, 0.6),
    Line("Ne IX He-beta", 1.0740, "Ne", 0.006, 0.3, 0.6),
    Line("Ne X Ly-beta", 1.2109, "Ne", 0.008, 0.6, 0.6),
    Line("Mg XI f", 1.3312, "Mg", 0.022, 0.55, 0.6),
    Line("Mg XI i", 1.3433, "Mg", 0.008, 0.55, 0.6),
    Line("Mg XI r", 1.3522, "Mg", 0.030, 0.55, 0.6),
    # Fe K
    Line("Fe K-alpha (Fe I-XVII)", 6.4000, "Fe", 0.30, 0.4, 1.2, 7.1),
    Line("Fe K (Fe XX-XXII)", 6.5200, "Fe", 0.20, 1.0, 0.5, 7.3),
    Line("Fe K (Fe XXIII-XXIV)", 6.5900, "Fe", 0.20, 1.6, 0.5, 7.5),
    Line("Fe XXV f", 6.6366, "Fe", 0.16, 4.0, 0.8),
    Line("Fe XXV i", 6.6676, "Fe", 0.16, 4.0, 0.8),
    Line("Fe XXV r", 6.7004, "Fe", 0.50, 4.0, 0.8),
    Line("Fe XXVI Ly-alpha2", 6.9520, "Fe", 0.03, 10.0, 0.6),
    Line("Fe XXVI Ly-alpha1", 6.9732, "Fe", 0.06, 10.0, 0.6),
)

_TAU_EQ = 3e11  # cm^-3 s: ionisation age at which kT_z reaches ~70 % of kT


def ionisation_temperature(kT: np.ndarray, log_tau: np.ndarray) -> np.ndarray:
    r"""Phenomenological ionisation temperature of an under-ionised plasma.

    :math:`kT_z = kT\,(\tau/(\tau+\tau_{eq}))^{0.3}` with :math:`\tau_{eq} = 3\times10^{11}`
    cm⁻³ s: 9 % of kT at log τ = 8, 35 % at 10, 82 % at 11.5 (equilibrium as τ → ∞).
    """
    tau = 10.0 ** np.asarray(log_tau, float)
    return np.asarray(kT, float) * (tau / (tau + _TAU_EQ)) ** 0.3


def _uniform_edges(edges: np.ndarray) -> tuple[float, float]:
    edges = np.asarray(edges, float)
    d = np.diff(edges)
    if not np.allclose(d, d[0], rtol=1e-6, atol=0):
        raise ValueError("remnant_cube needs uniformly spaced energy edges")
    return float(edges[0]), float(d[0])


def _continuum(remnant: Remnant, E: np.ndarray, dE: float) -> np.ndarray:
    """Bremsstrahlung-like continuum (P, L) of every pixel: log-linear interpolation between
    temperature nodes (one GEMM)."""
    M, N = remnant.shape
    P = M * N
    kT = remnant.kT
    nodes = np.geomspace(0.1, 5.0, 48)
    pos = np.clip(np.interp(np.log(kT), np.log(nodes), np.arange(nodes.size)), 0,
                  nodes.size - 1 - 1e-9)
    k0 = pos.astype(np.int64)
    w1 = pos - k0
    W = (np.bincount(remnant.pixel * nodes.size + k0, remnant.em * (1 - w1),
                     minlength=P * nodes.size)
         + np.bincount(remnant.pixel * nodes.size + k0 + 1, remnant.em * w1,
                       minlength=P * nodes.size)).reshape(P, nodes.size)
    B = np.exp(-E[None, :] / nodes[:, None]) / (np.sqrt(nodes)[:, None] * E[None, :]) * dE
    return W @ B


def _lines_in_reach(remnant: Remnant, edges: np.ndarray, dE: float, hL: int,
                    lines: tuple[Line, ...]) -> list[tuple[Line, np.ndarray, int]]:
    """The lines that can reach the band: ``(line, per-cell sigma (keV), half-width in bins)``."""
    beta_max = V_MAX / C_KMS
    todo = []
    for ln in lines:
        sig = ln.energy / C_KMS * np.sqrt(
            remnant.sigma_v**2 + remnant.kT / (_MASS[ln.element] * AMU_KEV) * C_KMS**2)
        smax = float(sig.max())
        reach = 5 * smax + (hL + 1) * dE
        if (ln.energy * (1 + beta_max) + reach < edges[0]
                or ln.energy * (1 - beta_max) - reach > edges[-1]):
            continue
        todo.append((ln, sig, int(np.ceil(5 * smax / dE)) + 1))
    return todo


def _add_line(lc: np.ndarray, remnant: Remnant, ln: Line, sig: np.ndarray, h: int, H: int,
              L: int, Lp: int, e0: float, dE: float, kTz: np.ndarray) -> None:
    """Add one line's profiles, integrated over the bins, to the flat padded cube ``lc``."""
    kT = remnant.kT
    sqkT = np.sqrt(kT)
    ab_index = {el: i for i, el in enumerate(_ELEMENTS)}
    g = np.exp(-0.5 * (np.log(kTz / ln.kT_peak) / ln.width) ** 2)
    E_exc = ln.energy if ln.E_exc is None else ln.E_exc
    w = (remnant.em * remnant.abundance[:, ab_index[ln.element]] * ln.strength * g
         * np.exp(-E_exc / kT) / (sqkT * ln.energy))
    mu = ln.energy * (1 - remnant.v_los / C_KMS)
    centre = np.floor((mu - e0) / dE).astype(np.int64)
    ok = (w > 0) & (centre >= h - H) & (centre < L + H - h - 1)
    if not ok.any():
        return
    centre, mu, w, s = centre[ok], mu[ok], w[ok], sig[ok]
    off = (e0 + centre * dE - mu) / s  # lower edge of the centre bin, in sigmas
    j = np.arange(-h, h + 2)
    cdf = ndtr(off[:, None] + (j * dE)[None, :] / s[:, None])
    prob = np.diff(cdf, axis=1)
    prob *= w[:, None]
    base = remnant.pixel[ok] * Lp + H + centre
    lc += np.bincount((base[:, None] + j[None, :-1]).ravel(), prob.ravel(),
                      minlength=lc.size)


def _line_spectra(remnant: Remnant, edges: np.ndarray, e0: float, dE: float, lsf_sigma: float,
                  lines: tuple[Line, ...]) -> np.ndarray:
    """Line emission (P, L) of every pixel: intrinsic (Doppler + thermal) profiles integrated
    over the bins on a padded axis, then the line-spread function."""
    L = edges.size - 1
    M, N = remnant.shape
    P = M * N
    kTz = ionisation_temperature(remnant.kT, remnant.log_tau)
    lsf_kernel = _lsf_kernel(lsf_sigma / dE) if lsf_sigma > 0 else np.ones(1)
    hL = lsf_kernel.size // 2
    todo = _lines_in_reach(remnant, edges, dE, hL, lines)
    H = max([h for *_, h in todo], default=0) + hL + 1
    Lp = L + 2 * H
    lc = np.zeros(P * Lp)
    for ln, sig, h in todo:
        _add_line(lc, remnant, ln, sig, h, H, L, Lp, e0, dE, kTz)
    lc = lc.reshape(P, Lp)
    if hL:
        lc = ndimage.correlate1d(lc, lsf_kernel, axis=1, mode="constant")
    return lc[:, H:H + L]


def remnant_cube(
    remnant: Remnant,
    energy_edges: np.ndarray,
    lsf_sigma: float = 0.0,
    nH: float = NH_DEFAULT,
    lines: tuple[Line, ...] = LINES,
) -> np.ndarray:
    r"""Project the remnant's spectra onto a (L, M, N) cube of photons per bin (arbitrary units).

    Parameters
    ----------
    remnant : Remnant
    energy_edges : ndarray (L + 1,)
        Uniformly spaced bin edges (keV).
    lsf_sigma : float
        Line-spread function (keV) added in quadrature to every line width.
    nH : float
        Absorbing column (cm⁻²), see :func:`absorption`.
    lines : tuple of Line

    Returns
    -------
    ndarray (L, M, N), float64

    Notes
    -----
    Per cell of emission measure EM, temperature kT and ionisation temperature kT_z
    (:func:`ionisation_temperature`):

    * continuum :math:`EM\,e^{-E/kT}/(\sqrt{kT}\,E)` photons per keV (bremsstrahlung-like),
      interpolated between 48 temperature nodes (one GEMM per cube);
    * line :math:`EM\,A_{el}\,w\,g(kT_z)\,e^{-E_{exc}/kT}/(\sqrt{kT}\,E_0)` photons, where w is
      the equivalent width at solar abundance and g the ionisation balance; centred at
      :math:`E_0(1 - v/c)`, Gaussian with :math:`\sigma^2 = E_0^2(\sigma_v^2 + kT/m_{ion})/c^2
      + \sigma_{LSF}^2`, integrated exactly over each bin.
    """
    e0, dE = _uniform_edges(energy_edges)
    edges = np.asarray(energy_edges, float)
    L = edges.size - 1
    E = 0.5 * (edges[1:] + edges[:-1])
    M, N = remnant.shape
    P = M * N
    cube = np.zeros((P, L))
    cube += _continuum(remnant, E, dE)
    cube += remnant.powerlaw[:, None] * (E ** -1.4 * dE)[None, :]
    cube += _line_spectra(remnant, edges, e0, dE, lsf_sigma, lines)
    cube *= absorption(E, nH)[None, :]
    return np.ascontiguousarray(cube.T).reshape(L, M, N)


def _lsf_kernel(sigma_bins: float) -> np.ndarray:
    """Gaussian line-spread function sampled at whole bins, normalised (odd length).

    Sampling (not bin integration) because the intrinsic profiles it convolves are already
    integrated over the bins; the variance of the normalised sampled kernel is within 1 % of
    ``sigma_bins²`` down to ``sigma_bins ≈ 0.7``.
    """
    h = max(1, int(np.ceil(5 * sigma_bins)))
    k = np.exp(-0.5 * (np.arange(-h, h + 1) / sigma_bins) ** 2)
    return k / k.sum()


def _blur_spatial(cube: np.ndarray, sigma_pix: float) -> np.ndarray:
    """Blur each slice with the pixel-integrated Gaussian (separable, zero boundary)."""
    p = gaussian_psf(sigma_pix, size=None, pixel_size=1.0)
    k = p.sum(axis=0)
    out = ndimage.correlate1d(cube, k, axis=1, mode="constant")
    return ndimage.correlate1d(out, k, axis=2, mode="constant")


# ----------------------------------------------------------------------------- counts
def expected_counts(
    Z: np.ndarray,
    response_X: np.ndarray,
    psf_Y: np.ndarray,
    arf_X: np.ndarray,
    arf_Y: np.ndarray,
    exposure_X: float,
    exposure_Y: float,
    vM: int,
    vN: int,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Noiseless expected counts of both instruments (docs/model.md), computed directly.

    Independent of :mod:`xfusion.operators` (used to cross-check them).

    Parameters
    ----------
    Z : ndarray (L, M, N)
        Photon flux per voxel.
    response_X : ndarray (l, L)
    psf_Y : ndarray (ky, kx)
        Odd-sized, centred kernel.
    arf_X, arf_Y : ndarray (L,) or (L, M, N)
    exposure_X, exposure_Y : float
    vM, vN : int
        Spatial rebinning factors of Y.

    Returns
    -------
    X_true : ndarray (l, M, N)
        :math:`R\,(t_X A_X Z)` (``einsum('ce,eyx->cyx')``).
    Y_true : ndarray (L, M/vM, N/vN)
        Block sums of the zero-padded 'same' convolution of :math:`t_Y A_Y Z` with the PSF.
    """
    Z = np.asarray(Z, float)
    L, M, N = Z.shape

    def area(a):
        a = np.asarray(a, float)
        return a[:, None, None] if a.ndim == 1 else a

    fx = exposure_X * area(arf_X) * Z
    X_true = (np.asarray(response_X, float) @ fx.reshape(L, -1)).reshape(-1, M, N)
    fy = exposure_Y * area(arf_Y) * Z
    conv = fftconvolve(fy, np.asarray(psf_Y, float)[None], mode="same", axes=(1, 2))
    conv = np.maximum(conv, 0.0)  # FFT rounding can leave tiny negatives in empty regions
    Y_true = conv.reshape(L, M // vM, vM, N // vN, vN).sum(axis=(2, 4))
    return X_true, Y_true


# ----------------------------------------------------------------------------- scenario
def _areas(s: ScenarioSpec, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if s.areas == "flat":
        return np.full(E.size, s.area_X), np.full(E.size, s.area_Y)
    return area_epic_pn(E), area_resolve(E)


def _psf_Y(s: ScenarioSpec, M: int) -> tuple[np.ndarray, dict]:
    size = _psf_size(M)
    if s.psf_Y == "gaussian":
        psf = gaussian_psf(s.psf_Y_std, size=size, pixel_size=PIXEL_SIZE)
        info = {"psf_Y_model": "gaussian", "psf_Y_sigma_arcsec": s.psf_Y_std}
    else:
        # calibrate on the full-size kernel so that the profile does not change with scale
        rc = _king_rcore(s.psf_Y_std, s.king_beta, PSF_SIZE, PIXEL_SIZE)
        psf = king_psf(rc, s.king_beta, size=size, pixel_size=PIXEL_SIZE, normalise="kernel")
        info = {"psf_Y_model": "king", "psf_Y_king_rcore_arcsec": round(rc, 4),
                "psf_Y_king_beta": s.king_beta}
    info.update({"psf_Y_size": int(size), "psf_Y_std_arcsec": round(_std_axis(psf, PIXEL_SIZE), 4)})
    return psf, info


def _response_X(s: ScenarioSpec, E: np.ndarray, edges: np.ndarray, vL: int) -> np.ndarray:
    if s.response_X == "gaussian":
        return gaussian_response(E, s.response_X_std, vL=vL, energy_edges=edges)
    return response_epic(E, edges, vL, s.response_X_std)


def _scenario_attrs(s: ScenarioSpec, name: str, *, seed: int, scale: float, remnant_seed: int,
                    sharp: bool, nH: float, t_Y: float, targets: tuple[float, float],
                    expected: tuple[float, float], areas: tuple[np.ndarray, np.ndarray],
                    psf_info: dict) -> dict:
    """JSON-safe attrs of a simulated scenario: the scenario, its instruments and counts."""
    (target_X, target_Y), (aX, aY) = targets, areas
    return {
        "title": f"xfusion simulated scenario {name}",
        "scenario": name,
        "description": s.description,
        "seed": int(seed),
        "scale": scale,
        "remnant_seed": int(remnant_seed),
        "sharp": bool(sharp),
        "nH_cm2": float(nH),
        "pixel_size_arcsec": PIXEL_SIZE,
        "energy_band_keV": [float(s.band[0]), float(s.band[1])],
        "exposure_X_s": EXPOSURE_X,
        "exposure_Y_s": float(t_Y),
        "target_counts_X": float(target_X),
        "target_counts_Y": float(target_Y),
        "expected_counts_X": float(expected[0]),
        "expected_counts_Y": float(expected[1]),
        "response_X_model": s.response_X,
        "response_X_std_keV_at_1keV": s.response_X_std,
        "psf_X_sigma_arcsec_in_truth": 0.0 if sharp else s.psf_X_std,
        "lsf_Y_sigma_keV_in_truth": 0.0 if sharp else s.lsf_Y_std,
        "areas": s.areas,
        "area_X_cm2_mean": float(aX.mean()),
        "area_Y_cm2_mean": float(aY.mean()),
        **psf_info,
        "paper_table1": json.dumps(_paper_row(s)),
    }


def scenario(
    name: str,
    seed: int = 0,
    scale: float = 1.0,
    *,
    remnant_seed: int = REMNANT_SEED,
    sharp: bool = False,
    nH: float = NH_DEFAULT,
) -> xr.Dataset:
    """Build one of the paper's simulated fusion problems (Table 1) with its truth.

    Parameters
    ----------
    name : str
        One of :data:`SCENARIOS`: ``"gaussian_1kev"``, ``"gaussian_6kev"``,
        ``"gaussian_1kev_rebin"``, ``"realistic_1kev_rebin"``.
    seed : int
        Seed of the Poisson draws of X and Y (:func:`numpy.random.default_rng`).
    scale : float
        Grid shrink factor in (0, 4] (see :func:`grid`); count targets scale with Z's voxel
        number. Instrument widths (arcsec, eV) and the band stay as at full size.
    remnant_seed : int
        Seed of the remnant's structure; by default the same remnant for every scenario and
        noise seed, as the paper used one hydrodynamic simulation.
    sharp : bool
        If True, ``Z_true`` is the sky on the grid without X's PSF and Y's line-spread function
        (see the module notes).
    nH : float
        Interstellar absorbing column (cm⁻²).

    Returns
    -------
    xarray.Dataset
        A validated problem (:func:`xfusion.make_problem`) with ``Z_true`` (photons cm⁻² s⁻¹
        per voxel, float64), ``X_true`` and ``Y_true`` (noiseless expected counts), integer
        Poisson draws ``X`` and ``Y``, energies in keV, 10″ pixels, and JSON-safe attrs
        describing the scenario and instruments, among them ``wcs``: a nominal north-up TAN
        grid centred on :data:`xfusion.sky.NOMINAL_CENTRE` (so results carry ``ra`` /
        ``dec``; ``wcs_nominal`` says the position is not real).

    Raises
    ------
    UnknownScenarioError
        Unknown scenario (a ``KeyError`` and ``ValueError``; the message lists the valid names).
    ValueError
        Scale out of range.
    """
    s = spec(name)
    g = grid(name, scale)
    scale = float(scale)
    L, l, M, N, vL, vM, vN = (g[k] for k in ("L", "l", "M", "N", "vL", "vM", "vN"))
    edges = np.linspace(s.band[0], s.band[1], L + 1)
    E = 0.5 * (edges[1:] + edges[:-1])

    rem = make_remnant(M, remnant_seed)
    Z = remnant_cube(rem, edges, lsf_sigma=0.0 if sharp else s.lsf_Y_std, nH=nH)
    if not sharp:
        Z = _blur_spatial(Z, s.psf_X_std / PIXEL_SIZE)

    R = _response_X(s, E, edges, vL)
    psf, psf_info = _psf_Y(s, M)
    aX, aY = _areas(s, E)

    voxels = (M * N * L) / (45 * 45 * s.L)
    target_X, target_Y = s.counts_X * voxels, s.counts_Y * voxels
    X1, Y1 = expected_counts(Z, R, psf, aX, aY, EXPOSURE_X, 1.0, vM, vN)
    k = target_X / X1.sum()
    Z *= k
    X_true = X1 * k
    rate_Y = Y1.sum() * k
    t_Y = max(10.0, round(target_Y / rate_Y, -1))
    Y_true = Y1 * (k * t_Y)

    rng = np.random.default_rng(seed)
    X = rng.poisson(X_true).astype(np.int64)
    Y = rng.poisson(Y_true).astype(np.int64)

    attrs = _scenario_attrs(
        s, name, seed=seed, scale=scale, remnant_seed=remnant_seed, sharp=sharp, nH=nH,
        t_Y=t_Y, targets=(target_X, target_Y), expected=(X_true.sum(), Y_true.sum()),
        areas=(aX, aY), psf_info=psf_info)
    # a nominal place on the sky (Cas A, north up), so that results carry ra/dec like real data
    from .sky import NOMINAL_CENTRE, nominal_wcs_header

    attrs["wcs_nominal"] = (f"simulated: the sky position RA {NOMINAL_CENTRE[0]}, Dec "
                            f"{NOMINAL_CENTRE[1]} deg is nominal")
    ds = make_problem(X, Y, R, psf, aX, aY, exposure_X=EXPOSURE_X, exposure_Y=t_Y,
                      energy_edges=edges, pixel_size=PIXEL_SIZE, attrs=attrs,
                      wcs_header=nominal_wcs_header((M, N), PIXEL_SIZE),
                      Z_true=Z, X_true=X_true, Y_true=Y_true)
    for v, ln in (("X_true", "expected counts of X"), ("Y_true", "expected counts of Y")):
        ds[v].attrs.update({"units": "counts", "long_name": ln})
    ds["Z_true"].attrs["long_name"] = "true photon flux per voxel"
    return ds


def _background_shape(spectrum, n: int, name: str) -> np.ndarray:
    """A background's relative spectrum over ``n`` channels (flat by default), summing to 1."""
    if spectrum is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(spectrum, dtype=float)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name}: a relative background spectrum of {n} finite, non-negative "
                         f"values (not all 0) is needed, got shape {w.shape}")
    return w / w.sum()


def add_background(ds: xr.Dataset, fraction_X: float = 0.3, fraction_Y: float = 0.5,
                   seed: int = 1, spectrum_X=None, spectrum_Y=None) -> xr.Dataset:
    r"""A simulated problem with a known, spatially flat background added to its counts.

    The background of each instrument is spread evenly over its pixels, with the relative
    spectrum ``spectrum_X`` / ``spectrum_Y`` (flat in counts per channel by default, like a
    particle background), and scaled so that it makes the fraction ``f`` of the expected
    counts: :math:`\sum B = f/(1 - f) \sum \mu_{\rm source}` (``X_true`` / ``Y_true``, or the
    counts when the problem has no truth). Its counts are drawn and added to the source's,

    .. math:: X' = X + \mathrm{Poisson}(B_X),\qquad Y' = Y + \mathrm{Poisson}(B_Y)

    (so :math:`X' \sim \mathrm{Poisson}(X_{\rm true} + B_X)`, with the source's noise the same
    as in ``ds``), and the problem records :math:`B_X, B_Y` as ``background_X`` /
    ``background_Y``. ``X_true`` / ``Y_true`` stay the source's expected counts.

    Parameters
    ----------
    ds : xarray.Dataset
        A problem (e.g. :func:`scenario`).
    fraction_X, fraction_Y : float
        Fraction of each instrument's expected counts that is background, in [0, 1).
    seed : int
        Seed of the background's Poisson draws.
    spectrum_X, spectrum_Y : array_like (l,) and (L,), optional
        Relative background spectra (any normalisation; flat by default).

    Returns
    -------
    xarray.Dataset
        The validated problem with the background in its counts and as ``background_X`` /
        ``background_Y``; attrs ``background_fraction_X`` / ``_Y``.
    """
    from .problem import with_background

    rng = np.random.default_rng(seed)
    out = ds.copy()
    bkg = {}
    for name, f, spectrum in (("X", fraction_X, spectrum_X), ("Y", fraction_Y, spectrum_Y)):
        f = float(f)
        if not 0 <= f < 1:
            raise ValueError(f"fraction_{name}: must be in [0, 1), got {f!r}")
        D = ds[name]
        ref = ds[f"{name}_true"] if f"{name}_true" in ds.data_vars else D
        n_ch, n_pix = D.shape[0], D.shape[1] * D.shape[2]
        total = f / (1 - f) * float(np.asarray(ref.values, np.float64).sum())
        per_pixel = total / n_pix * _background_shape(spectrum, n_ch, f"spectrum_{name}")
        B = np.broadcast_to(per_pixel[:, None, None], D.shape)
        counts = np.asarray(D.values) + rng.poisson(B).astype(np.asarray(D.values).dtype)
        out[name] = D.copy(data=counts)
        bkg[f"background_{name}"] = per_pixel
        out.attrs[f"background_fraction_{name}"] = f
    return with_background(out, **bkg)


def _paper_row(s: ScenarioSpec) -> dict:
    """The paper's Table 1 values for this scenario (full size)."""
    return {
        "X_shape": [s.l, 45, 45], "Y_shape": [s.L, s.m, s.m], "band_keV": list(s.band),
        "psf_std_arcsec": [s.psf_X_std, s.psf_Y_std],
        "spectral_response_std_eV": [1e3 * s.response_X_std, 1e3 * s.lsf_Y_std],
        "photon_counts": [s.counts_X, s.counts_Y],
    }
