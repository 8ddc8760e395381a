r"""Band edges: X's channels that photons from outside Z's energy band feed.

X's response moves a photon of true energy E into channels around E. Z covers the problem's
band only, so the channels near the ends of X's band also hold photons whose true energies lie
outside it, which no Z can explain: fitted as they are, they come out as in-band flux near the
edges (docs/real_data.md#band-edges). :func:`out_of_band_fraction` measures, from the full RMF
(which extends beyond the band) and the ARF, the share of each X channel's expected counts that
comes from outside the band; :func:`observed_channels` turns it into the ``observed_X`` mask that
leaves the channels above a tolerance out of the likelihood (docs/model.md).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from ._fits import FileFormatError
from .assemble import _load, _name, _x_response, overlap_matrix
from .ogip import read_arf

__all__ = ["out_of_band_fraction", "observed_channels", "mark_edge_channels",
           "DEFAULT_EDGE_TOLERANCE"]

#: Largest share of an X channel's expected counts that may come from outside Z's band for the
#: channel to stay in the likelihood (:func:`observed_channels`, ``from_files(edge_tolerance=)``).
DEFAULT_EDGE_TOLERANCE = 0.05
#: An RMF whose first or last true-energy row still sends more than this fraction of its
#: photons into X's channels stops within the response's reach (a warning says so).
REACH_WARN = 1e-3
#: Relative tolerance on the ARF's coverage of an RMF row (float32 files).
COVER_TOL = 1e-4


def _band(energy_band) -> tuple[float, float]:
    try:
        e0, e1 = (float(v) for v in energy_band)
    except (TypeError, ValueError):
        raise ValueError(f"energy_band must be (emin, emax) in keV, got {energy_band!r}") from None
    if not (math.isfinite(e0) and math.isfinite(e1) and 0 <= e0 < e1):
        raise ValueError(f"energy_band must be (emin, emax) with 0 ≤ emin < emax (keV), got "
                         f"{energy_band!r}")
    return e0, e1


def _channel_edges(channel_edges) -> np.ndarray:
    C = np.asarray(channel_edges, dtype=float)
    if C.ndim != 1 or C.size < 2:
        raise ValueError(f"channel_edges: expected l + 1 ≥ 2 edges (keV) of X's channels, got "
                         f"shape {C.shape}")
    if not np.isfinite(C).all() or (np.diff(C) <= 0).any():
        raise ValueError("channel_edges: must be finite and increase strictly (keV)")
    return C


def _area_on_rows(arf: xr.DataArray, lo: np.ndarray, hi: np.ndarray, used: np.ndarray,
                  where: str) -> np.ndarray:
    """The ARF averaged over each RMF row (overlap-weighted); refuses an ARF that does not
    cover a row that sends photons into X's channels."""
    alo, ahi = arf["energy_lo"].values, arf["energy_hi"].values
    W = overlap_matrix(lo, hi, alo, ahi) / (hi - lo)[:, None]
    cover = W.sum(axis=1)
    bad = used & (np.abs(cover - 1) > COVER_TOL)
    if bad.any():
        j = np.flatnonzero(bad)
        raise FileFormatError(
            f"{where}: ARF energies ({alo[0]:.6g}–{ahi[-1]:.6g} keV) do not cover "
            f"{lo[j[0]]:.6g}–{hi[j[-1]]:.6g} keV, where the RMF sends photons into X's channels "
            f"({j.size} RMF rows; covered {cover[j[0]]:.4g}× at the first); the out-of-band "
            f"fraction needs the area there")
    return (W @ np.asarray(arf.values, float)) / np.where(cover > 0, cover, 1.0)


def _spectrum_on_rows(spectrum, E: np.ndarray) -> np.ndarray:
    if spectrum is None:
        return np.ones_like(E)
    if not callable(spectrum):
        raise TypeError(f"spectrum: expected a function of energy (keV) returning photons per "
                        f"keV, got {type(spectrum).__name__}")
    s = np.asarray(spectrum(E), dtype=float)
    s = np.broadcast_to(s, E.shape) if s.ndim == 0 else s
    if s.shape != E.shape:
        raise ValueError(f"spectrum: returned shape {s.shape} for {E.size} energies")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("spectrum: values must be finite and ≥ 0 (photons per keV)")
    return s


def _warn_reach(Rjc: np.ndarray, lo: np.ndarray, hi: np.ndarray, e0: float, e1: float,
                where: str) -> None:
    """Warn when the RMF's true energies stop where photons still land in X's channels: what
    lies beyond is not counted and the fractions are lower bounds."""
    reach = Rjc.sum(axis=1)
    for j, side, end in ((0, "start", lo[0]), (-1, "end", hi[-1])):
        if reach[j] > REACH_WARN:
            warnings.warn(
                f"{where}: the RMF's true energies {side} at {end:.6g} keV, where "
                f"{reach[j]:.1%} of the photons still land in X's channels ({e0:g}–{e1:g} keV "
                f"band): photons from beyond it are not counted, so the out-of-band fractions "
                f"are lower bounds (use an RMF over the instrument's whole range)",
                UserWarning, stacklevel=3)


def out_of_band_fraction(rmf, arf, energy_band: tuple[float, float],
                         channel_edges: Sequence[float],
                         spectrum: Callable[[np.ndarray], np.ndarray] | None = None
                         ) -> xr.DataArray:
    r"""The share of each X channel's expected counts that comes from outside Z's band.

    .. math::

        f_c = \frac{\sum_j s_j A_j \Delta_j (1 - w_j) R_{jc}}{\sum_j s_j A_j \Delta_j R_{jc}},
        \qquad R_{jc} = \sum_k M_{jk} W_{kc},
        \qquad w_j = \frac{|[E^{lo}_j, E^{hi}_j] \cap [e_0, e_1]|}{\Delta_j}

    over the RMF's true-energy rows j (width :math:`\Delta_j`, area :math:`A_j`: the ARF
    averaged over the row), with :math:`M_{jk}` the RMF, :math:`W_{kc}` the share of RMF
    channel k in X's channel c (by overlap of their energy ranges), :math:`s_j` the spectrum in
    photons per keV (flat by default) and :math:`w_j` the part of row j inside the band
    :math:`[e_0, e_1]`.

    Parameters
    ----------
    rmf : path or DataArray
        X's RMF (:func:`xfusion.io.read_rmf`) over its whole true-energy range, not cut to the
        band; a full response (area folded in) when ``arf`` is None.
    arf : path, DataArray or None
        X's effective area (:func:`xfusion.io.read_arf`); it must cover every true energy from
        which the RMF sends photons into X's channels.
    energy_band : (emin, emax)
        Z's band (keV).
    channel_edges : array_like (l + 1,)
        X's channel edges (keV), as for :func:`xfusion.io.response_from_rmf`.
    spectrum : callable, optional
        Photons per keV (any normalisation) as a function of energy (keV, an array of the RMF
        rows' centres); default a flat spectrum.

    Returns
    -------
    xarray.DataArray
        ``out_of_band`` (``energy_coarse``): f_c in [0, 1], 0 for a channel that receives no
        photons at all; coordinates ``energy_coarse``, ``channel_lo``, ``channel_hi`` (keV).

    Raises
    ------
    FileFormatError
        An ARF that does not cover the true energies that feed X's channels (naming the file).
    ValueError
        A band, channel edges or spectrum that are not valid.

    Warns
    -----
    UserWarning
        When the RMF's true energies stop where photons still land in X's channels (more than
        :data:`REACH_WARN` of its first or last row): the fractions are then lower bounds.
    """
    e0, e1 = _band(energy_band)
    C = _channel_edges(channel_edges)
    rmf, arf = _x_response(rmf, arf, None)
    arf = _load(arf, read_arf, "arf")
    where = _name(rmf, "rmf")
    lo = np.asarray(rmf["energy_lo"].values, float)
    hi = np.asarray(rmf["energy_hi"].values, float)
    emin, emax = rmf["e_min"].values, rmf["e_max"].values
    width = np.where(emax > emin, emax - emin, np.inf)
    Wc = overlap_matrix(emin, emax, C[:-1], C[1:]) / width[:, None]      # (n_channel, l)
    Rjc = np.asarray(rmf.values, float) @ Wc                             # (n_rows, l)
    used = Rjc.sum(axis=1) > 0
    _warn_reach(Rjc, lo, hi, e0, e1, where)
    area = _area_on_rows(arf, lo, hi, used, _name(arf, "arf"))
    s = _spectrum_on_rows(spectrum, 0.5 * (lo + hi))
    weight = s * area * (hi - lo)
    inside = overlap_matrix(lo, hi, np.array([e0]), np.array([e1]))[:, 0] / (hi - lo)
    total = weight @ Rjc
    out = (weight * (1 - inside)) @ Rjc
    frac = np.divide(out, total, out=np.zeros_like(total), where=total > 0)
    return xr.DataArray(
        np.clip(frac, 0.0, 1.0), dims=("energy_coarse",), name="out_of_band",
        coords={"energy_coarse": ("energy_coarse", 0.5 * (C[1:] + C[:-1]), {"units": "keV"}),
                "channel_lo": ("energy_coarse", C[:-1], {"units": "keV"}),
                "channel_hi": ("energy_coarse", C[1:], {"units": "keV"})},
        attrs={"long_name": "share of the channel's expected counts from outside the band",
               "energy_band": [e0, e1], "spectrum": "flat" if spectrum is None else "given",
               "source": where})


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise ValueError(f"tolerance must be a number in (0, 1], got {tolerance!r}")
    t = float(tolerance)
    if not (0 < t <= 1):
        raise ValueError(f"tolerance must be in (0, 1] (the largest out-of-band share of a "
                         f"channel's counts that is kept), got {tolerance!r}")
    return t


def observed_channels(rmf, arf, energy_band: tuple[float, float],
                      channel_edges: Sequence[float],
                      tolerance: float = DEFAULT_EDGE_TOLERANCE,
                      spectrum: Callable[[np.ndarray], np.ndarray] | None = None
                      ) -> xr.DataArray:
    r"""The ``observed_X`` mask of a problem: X's channels kept in the likelihood.

    A channel is kept when at most ``tolerance`` of its expected counts come from true
    energies outside Z's band, :math:`f_c \le` ``tolerance`` (:func:`out_of_band_fraction`);
    the others, at the band's edges, are left out (``False``).

    Parameters
    ----------
    rmf, arf, energy_band, channel_edges, spectrum
        As for :func:`out_of_band_fraction`.
    tolerance : float
        In (0, 1]; default :data:`DEFAULT_EDGE_TOLERANCE` (5 %).

    Returns
    -------
    xarray.DataArray
        Boolean ``observed_X`` (``energy_coarse``), True where the channel is used, with the
        fractions as the coordinate ``out_of_band`` and ``attrs["tolerance"]``. Pass it to
        :func:`xfusion.make_problem` as ``observed_X=``.

    Examples
    --------
    >>> obs = xf.io.observed_channels("pn.rmf", "pn.arf", (6.0, 7.0),
    ...                               np.linspace(6.0, 7.0, 51))      # doctest: +SKIP
    >>> ds = xf.make_problem(..., observed_X=obs)                     # doctest: +SKIP
    """
    t = _check_tolerance(tolerance)
    frac = out_of_band_fraction(rmf, arf, energy_band, channel_edges, spectrum)
    obs = (frac <= t).rename("observed_X")
    return obs.assign_coords(out_of_band=frac.variable).assign_attrs(
        {"long_name": "X channel used in the likelihood (False: a band-edge channel)",
         "tolerance": t, "energy_band": frac.attrs["energy_band"],
         "spectrum": frac.attrs["spectrum"], "source": frac.attrs["source"]})


def masked_ranges(obs: xr.DataArray) -> list[list[float]]:
    """The runs of left-out channels of an ``observed_X`` mask as ``[[lo, hi], ...]`` (keV)."""
    keep = np.asarray(obs.values, bool)
    lo, hi = np.asarray(obs["channel_lo"].values), np.asarray(obs["channel_hi"].values)
    runs, start = [], None
    for i, k in enumerate(np.r_[keep, True]):
        if not k and start is None:
            start = i
        elif k and start is not None:
            runs.append([float(lo[start]), float(hi[i - 1])])
            start = None
    return runs


def mark_edge_channels(ds: xr.Dataset, rmf, arf, channel_edges, tolerance: float,
                       spectrum=None) -> xr.Dataset:
    """``ds`` with the ``observed_X`` mask of :func:`observed_channels` on Z's band (and the
    fractions as ``out_of_band_X``); warns naming the channels left out, refuses a mask that
    leaves none (what ``from_files(edge_tolerance=)`` does)."""
    from ..problem import ProblemError, validate

    band = (float(ds.energy_lo.values[0]), float(ds.energy_hi.values[-1]))
    obs = observed_channels(rmf, arf, band, channel_edges, tolerance, spectrum)
    l = obs.size
    runs = masked_ranges(obs)
    where = obs.attrs["source"]
    if not bool(obs.values.any()):
        raise ProblemError(f"{where}: edge_tolerance={tolerance:g} leaves none of X's {l} "
                           f"channels (each has more than {tolerance:.0%} of its counts from "
                           f"outside {band[0]:g}–{band[1]:g} keV); widen energy_band, or pass "
                           f"edge_tolerance=None to keep them")
    if runs:
        n = int(l - obs.values.sum())
        text = ", ".join(f"{a:.4g}–{b:.4g}" for a, b in runs)
        warnings.warn(f"{where}: {n} of X's {l} channels left out of the likelihood "
                      f"(observed_X False: {text} keV): more than {tolerance:.0%} of their "
                      f"counts come from true energies outside {band[0]:g}–{band[1]:g} keV "
                      f"({obs.attrs['spectrum']} spectrum); edge_tolerance=None keeps them",
                      UserWarning, stacklevel=3)
    ds = ds.assign_coords(
        observed_X=("energy_coarse", np.asarray(obs.values, bool), {
            "long_name": "X channel used in the likelihood (False: a band-edge channel)"}),
        out_of_band_X=("energy_coarse", np.asarray(obs["out_of_band"].values, float), {
            "long_name": "share of the channel's expected counts from outside the band "
                         f"({obs.attrs['spectrum']} spectrum)"}))
    ds.attrs["edge_tolerance"] = float(obs.attrs["tolerance"])
    ds.attrs["edge_channels"] = runs
    validate(ds)
    return ds
