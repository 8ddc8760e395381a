r"""Known backgrounds from OGIP background spectra: expected counts on a problem's channels.

A background spectrum (a PHA file, :func:`xfusion.io.read_pha`) holds the counts :math:`C_c`
recorded in channel *c* over a background region, with its exposure :math:`t_b`, its
``BACKSCAL`` :math:`b_b` (the region's size, in the mission's units) and ``AREASCAL``
:math:`a_b`. The expected background counts in *one pixel* of the problem (X: one Z pixel;
Y: one Y pixel) with exposure :math:`t_s`, ``BACKSCAL`` :math:`b_s` and ``AREASCAL``
:math:`a_s` are, channel by channel (the OGIP scaling that XSPEC and Sherpa apply),

.. math::

    s_c = C_c\,\frac{t_s\, b_s\, a_s}{t_b\, b_{b,c}\, a_{b,c}}

then put on the problem's channels :math:`[E_k, E_{k+1})` by sharing each PHA channel
:math:`[e^{\min}_c, e^{\max}_c)` in proportion to its overlap (a flat spectrum inside a
channel; exact when the problem's edges fall on channel boundaries):

.. math::

    B_k = \sum_c s_c\, \frac{|[e^{\min}_c, e^{\max}_c) \cap [E_k, E_{k+1})|}
                            {e^{\max}_c - e^{\min}_c}

The file cannot know :math:`b_s` (the size of one problem pixel in its ``BACKSCAL`` units),
so it is an argument: ``backscal=`` directly, or ``pixels=``, the number of problem pixels
the background region covers (:math:`b_s = b_b / \text{pixels}`), e.g. the 35 read pixels
of Resolve's array for an array-wide non-X-ray background.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ._fits import FileFormatError
from .ogip import read_ebounds, read_pha

__all__ = ["background_spectrum", "COVER_TOL"]

#: Relative tolerance on how exactly the PHA's channels must tile each of the problem's bins
#: (float32 ``EBOUNDS``).
COVER_TOL = 1e-4


def _where(pha: xr.DataArray) -> str:
    return str(pha.attrs.get("filename") or "pha")


def _channel_energies(pha: xr.DataArray, ebounds, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Each PHA channel's energy bounds (keV), from ``ebounds`` or the PHA's own ``EBOUNDS``."""
    ch = np.asarray(pha["channel"].values, int)
    if ebounds is None:
        if "e_min" not in pha.coords:
            raise FileFormatError(
                f"{where}: the spectrum has no EBOUNDS extension; give the channel energies "
                f"with ebounds= (an RMF's path, xf.io.read_ebounds / read_rmf output, "
                f"(e_min, e_max) in keV, or a channel width in keV)")
        return (np.asarray(pha["e_min"].values, float), np.asarray(pha["e_max"].values, float))
    if isinstance(ebounds, (str, os.PathLike)):
        ebounds = read_ebounds(ebounds)
    if isinstance(ebounds, xr.DataArray):
        if "e_min" not in ebounds.coords or "channel" not in ebounds.coords:
            raise ValueError("ebounds: a DataArray needs 'channel', 'e_min' and 'e_max' "
                             "coordinates (as xf.io.read_ebounds or read_rmf return)")
        index = {int(c): i for i, c in enumerate(np.asarray(ebounds["channel"].values))}
        missing = [int(c) for c in ch if int(c) not in index]
        if missing:
            raise FileFormatError(
                f"{where}: the channel energies ({ebounds.attrs.get('filename', 'ebounds')}) "
                f"have no channel {missing[0]} ({len(missing)} of the spectrum's channels "
                f"missing): another instrument's response?")
        sel = np.array([index[int(c)] for c in ch], dtype=int)
        return (np.asarray(ebounds["e_min"].values, float)[sel],
                np.asarray(ebounds["e_max"].values, float)[sel])
    if np.ndim(ebounds) == 0:
        w = float(ebounds)
        if not np.isfinite(w) or w <= 0:
            raise ValueError(f"ebounds: a channel width must be positive (keV), got {ebounds!r}")
        return ch * w, (ch + 1) * w
    lo, hi = (np.asarray(a, float) for a in ebounds)
    if lo.shape != ch.shape or hi.shape != ch.shape:
        raise ValueError(f"ebounds: (e_min, e_max) need {ch.size} values each (one per channel "
                         f"of the spectrum), got {lo.shape}, {hi.shape}")
    return lo, hi


def _source_backscal(pha: xr.DataArray, backscal, pixels) -> np.ndarray:
    """:math:`b_s` per channel: ``backscal``, or the file's ``BACKSCAL`` / ``pixels``."""
    if (backscal is None) == (pixels is None):
        raise ValueError(
            f"{_where(pha)}: give exactly one of backscal= (the BACKSCAL of one problem pixel, "
            f"in the file's BACKSCAL units) and pixels= (how many problem pixels the "
            f"background region covers): the file cannot know the source's BACKSCAL")
    if pixels is not None:
        if isinstance(pixels, bool) or not np.isfinite(pixels) or pixels <= 0:
            raise ValueError(f"pixels: must be a positive number of pixels, got {pixels!r}")
        return np.asarray(pha["backscal"].values, float) / float(pixels)
    b = np.asarray(backscal, float)
    if not np.isfinite(b).all() or (b <= 0).any():
        raise ValueError(f"backscal: must be positive and finite, got {backscal!r}")
    return np.broadcast_to(b, pha.shape)


def _rebin(s: np.ndarray, lo: np.ndarray, hi: np.ndarray, edges: np.ndarray,
           where: str) -> np.ndarray:
    """Share each channel's expected counts among the problem's bins by overlap; refuse bins
    the channels do not tile, warn about channels split between bins."""
    from .assemble import channel_shares

    keep = hi - lo > 0
    s, lo, hi = s[keep], lo[keep], hi[keep]
    frac, c = channel_shares(lo, hi, edges)                      # (channels, bins)
    cover = (frac * (hi - lo)[:, None]).sum(axis=0) / np.diff(edges)
    bad = np.abs(cover - 1) > COVER_TOL
    if bad.any():
        k = int(np.argmax(bad))
        raise FileFormatError(
            f"{where}: the spectrum's channels ({lo.min():.6g}–{hi.max():.6g} keV) cover the "
            f"problem's bin {edges[k]:.6g}–{edges[k + 1]:.6g} keV {cover[k]:.4g} times, not "
            f"once (outside the band, a gap or overlapping channels)")
    if c is not None:
        warnings.warn(f"{where}: the problem's channel edges split the spectrum's channels "
                      f"(e.g. {lo[c]:.6g}–{hi[c]:.6g} keV); their counts are shared in "
                      f"proportion to overlap", UserWarning, stacklevel=3)
    return s @ frac


def background_spectrum(pha, channel_edges: Sequence[float], exposure: float, *,
                        backscal=None, pixels: float | None = None, areascal: float = 1.0,
                        ebounds=None) -> xr.DataArray:
    r"""Expected background counts per problem pixel on the problem's channels, from a PHA.

    Parameters
    ----------
    pha : path or DataArray
        A background spectrum (a PHA file, or :func:`xfusion.io.read_pha`'s output).
    channel_edges : array_like (n + 1,)
        The problem's channel edges (keV): X's channels (``channel_lo`` / ``channel_hi`` of a
        :func:`xfusion.io.from_files` problem, the edges that binned X's events) or Y's, which
        are Z's energy bins (``energy_lo`` / ``energy_hi``).
    exposure : float
        The source's exposure :math:`t_s` (s): the problem's ``X.attrs["exposure"]`` or
        ``Y.attrs["exposure"]``.
    backscal : float or array_like, optional
        The source's ``BACKSCAL`` :math:`b_s` for *one problem pixel*, in the file's
        ``BACKSCAL`` units: for EPIC (SAS: the region's area in (0.05″)² sky pixels) a Z pixel
        of p″ is :math:`(p/0.05)^2`.
    pixels : float, optional
        Instead of ``backscal``: the number of problem pixels the background region covers
        (:math:`b_s = b_b / \text{pixels}`), e.g. 35 for a Resolve non-X-ray background over
        the read pixels of the array.
    areascal : float
        The source's ``AREASCAL`` :math:`a_s` (default 1).
    ebounds : path, DataArray, (e_min, e_max) or float, optional
        The spectrum's channel energies, when it has no ``EBOUNDS`` extension (or to replace
        it): an RMF or PHA file (its ``EBOUNDS`` is read, :func:`xfusion.io.read_ebounds`),
        :func:`xfusion.io.read_ebounds` / :func:`xfusion.io.read_rmf` output (matched by channel
        number), two arrays in keV (one value per channel of the spectrum), or a channel width
        ``w`` in keV (channel *c* covers :math:`[c\,w, (c + 1)\,w)`, as EPIC's PI in eV, w =
        0.001, and Resolve's PI in half-eV, w = 0.0005, are read from events).

    Returns
    -------
    xarray.DataArray
        Dims ``('bin',)``, n values: the expected background counts in one problem pixel per
        channel (see the module docstring for the formula); coords ``e_lo``, ``e_hi`` (keV);
        attrs ``units = 'counts'``, ``source`` (the file), ``scale`` (the mean of
        :math:`t_s b_s a_s / (t_b b_b a_b)`). Give it to :func:`xfusion.make_problem` /
        :func:`xfusion.with_background` as ``background_X`` or ``background_Y``: it is put in
        every pixel (a spatially flat background).

    Raises
    ------
    FileFormatError
        A bad file (:func:`xfusion.io.read_pha`), no channel energies, channels that do not
        tile the problem's band.
    ValueError
        Neither or both of ``backscal`` and ``pixels``, non-positive values, edges that do
        not increase.

    Warns
    -----
    UserWarning
        The problem's channel edges split the spectrum's channels (their counts are then
        shared in proportion to overlap).
    """
    if not isinstance(pha, xr.DataArray):
        pha = read_pha(pha)
    where = _where(pha)
    edges = np.asarray(channel_edges, float)
    if edges.ndim != 1 or edges.size < 2 or not np.isfinite(edges).all() \
            or (np.diff(edges) <= 0).any():
        raise ValueError(f"channel_edges: must be at least two increasing, finite energies "
                         f"(keV), got shape {edges.shape}")
    t_s = float(exposure)
    if not np.isfinite(t_s) or t_s <= 0:
        raise ValueError(f"exposure: must be positive and finite (s), got {exposure!r}")
    a_s = float(areascal)
    if not np.isfinite(a_s) or a_s <= 0:
        raise ValueError(f"areascal: must be positive and finite, got {areascal!r}")
    lo, hi = _channel_energies(pha, ebounds, where)
    b_s = _source_backscal(pha, backscal, pixels)
    scale = (t_s * b_s * a_s) / (float(pha.attrs["exposure"])
                                 * np.asarray(pha["backscal"].values, float)
                                 * np.asarray(pha["areascal"].values, float))
    s = np.asarray(pha.values, float) * scale
    B = _rebin(s, lo, hi, edges, where)
    return xr.DataArray(B, dims=("bin",),
                        coords={"e_lo": ("bin", edges[:-1], {"units": "keV"}),
                                "e_hi": ("bin", edges[1:], {"units": "keV"})},
                        name="background",
                        attrs={"units": "counts", "source": where,
                               "scale": float(np.mean(scale)),
                               "long_name": "expected background counts per pixel"})
