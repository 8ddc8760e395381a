"""From responses and event files to a fusion problem.

:func:`response_from_rmf` and :func:`area_on_grid` put an RMF and an ARF on Z's energy grid;
:func:`from_files` reads everything, aligns the two instruments' pixel grids on the sky, and
returns a validated problem (:func:`xfusion.problem.make_problem`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ..problem import ProblemError, make_problem
from ._fits import FileFormatError
from .events import RESOLVE_CHANNEL_WIDTH, read_events
from .exposure import area_from_expmaps
from .grid import as_wcs, check_alignment, grid_rotation, pixel_scale, subdivide_wcs
from .ogip import read_arf, read_pha, read_rmf
from .psf import psf_from_fits

__all__ = ["response_from_rmf", "area_on_grid", "split_rsp", "overlap_matrix", "channel_shares",
           "from_files"]

#: Relative tolerance on energies when checking that a response covers a band (float32 files).
COVER_RTOL = 1e-5


def overlap_matrix(lo_out, hi_out, lo_in, hi_in) -> np.ndarray:
    """``W[i, j]``: length of the overlap of output bin ``i`` and input bin ``j`` (same unit)."""
    lo = np.maximum(np.asarray(lo_out)[:, None], np.asarray(lo_in)[None, :])
    hi = np.minimum(np.asarray(hi_out)[:, None], np.asarray(hi_in)[None, :])
    return np.clip(hi - lo, 0, None)


def channel_shares(lo, hi, edges) -> tuple[np.ndarray, int | None]:
    """``S[i, k]``: the share of channel ``[lo_i, hi_i)`` that falls in bin ``k`` of ``edges``
    (overlap / channel width; 0 for an empty channel), and the index of the first channel split
    between two bins (None when every channel lies in one bin)."""
    width = np.asarray(hi, float) - np.asarray(lo, float)
    S = overlap_matrix(lo, hi, edges[:-1], edges[1:]) / np.where(width > 0, width, np.inf)[:, None]
    split = ((S > 1e-3) & (S < 1 - 1e-3)).any(axis=1)
    return S, (int(np.argmax(split)) if split.any() else None)


def _name(da, default: str) -> str:
    if isinstance(da, (str, os.PathLike)):
        return os.fspath(da)
    return str(getattr(da, "attrs", {}).get("filename") or default)


def _names(maps) -> str:
    """File names of one or several exposure maps, comma separated (for the problem's attrs)."""
    seq = [maps] if isinstance(maps, (str, os.PathLike, xr.DataArray)) else list(maps)
    return ", ".join(_name(m, "array") for m in seq)


def _check_cover(lo, hi, edges, where: str, what: str) -> None:
    e0, e1 = float(edges[0]), float(edges[-1])
    tol = COVER_RTOL * max(abs(e0), abs(e1), 1.0)
    if lo[0] > e0 + tol or hi[-1] < e1 - tol:
        raise FileFormatError(
            f"{where}: {what} cover {lo[0]:.6g}–{hi[-1]:.6g} keV, which does not cover the "
            f"problem's band {e0:.6g}–{e1:.6g} keV"
        )


def _true_energy_weights(da: xr.DataArray, edges: np.ndarray, where: str, what: str):
    lo, hi = da["energy_lo"].values, da["energy_hi"].values
    _check_cover(lo, hi, edges, where, what)
    W = overlap_matrix(edges[:-1], edges[1:], lo, hi) / np.diff(edges)[:, None]
    cover = W.sum(axis=1)
    gap = np.abs(cover - 1) > 1e-4
    if gap.any():
        j = int(np.argmax(gap))
        raise FileFormatError(f"{where}: {what} have a gap or overlap around "
                              f"{edges[j]:.6g}–{edges[j + 1]:.6g} keV (covered {cover[j]:.4g}×)")
    return W / cover[:, None]


def _load(obj, reader, what: str) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return reader(obj)
    raise TypeError(f"{what}: expected a path or a DataArray, got {type(obj).__name__}")


def split_rsp(rmf: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Split a full response (area × redistribution, cm²) into an RMF and an effective area.

    The area of true-energy bin *i* is the row sum of the matrix (over all channels) and the
    redistribution is the row divided by it.

    Returns
    -------
    rmf : xarray.DataArray
        Probabilities (``includes_area`` False).
    area : xarray.DataArray
        Dims ``energy_true``, cm² (as :func:`xfusion.io.read_arf`).
    """
    area = rmf.sum("channel")
    safe = xr.where(area > 0, area, 1.0)
    red = (rmf / safe).assign_attrs({**rmf.attrs, "includes_area": False, "units": ""})
    area = area.assign_attrs({"units": "cm2", "filename": rmf.attrs.get("filename", ""),
                              "telescope": rmf.attrs.get("telescope", ""),
                              "instrument": rmf.attrs.get("instrument", "")})
    return red, area.rename("specresp")


def response_from_rmf(rmf, energy_edges: Sequence[float],
                      channel_edges: Sequence[float]) -> xr.DataArray:
    """Put a redistribution matrix on Z's true-energy grid and X's channel grid.

    Parameters
    ----------
    rmf : xarray.DataArray or path
        As returned by :func:`xfusion.io.read_rmf` (or a path to read).
    energy_edges : array_like (L + 1,)
        Z's energy bin edges (keV).
    channel_edges : array_like (l + 1,)
        X's channel bin edges (keV; the same edges that bin X's events).

    Returns
    -------
    xarray.DataArray
        ``response_X``, dims ``('energy_coarse', 'energy')``: the probability that a photon in
        Z's bin *j* is recorded in X's channel *c*; columns sum to at most 1 (photons landing in
        channels outside X's band are lost).

    Raises
    ------
    FileFormatError
        RMF true energies that do not cover Z's band (or have gaps), or a matrix that includes
        the effective area (split it with :func:`split_rsp`).

    Notes
    -----
    True energy: each Z bin averages the RMF rows it overlaps, weighted by overlap (a flat
    spectrum within the bin). Channels: each RMF channel (``e_min``–``e_max``) goes to the X
    channel holding it; a channel split by an X edge is shared in proportion to its overlap (a
    warning says so: choose X's edges on the RMF's channel boundaries, as
    :func:`xfusion.io.from_files` does). A channel-energy scale entirely outside X's edges is
    dropped. Column sums that exceed 1 by round-off (up to 1 %, as float32 RMFs do) are scaled
    back to 1.
    """
    rmf = _load(rmf, read_rmf, "rmf")
    where = _name(rmf, "rmf")
    if rmf.attrs.get("includes_area"):
        raise FileFormatError(f"{where}: the matrix includes the effective area (SPECRESP MATRIX "
                              f"/ HDUCLAS3 = 'FULL' / row sums > 1); split it with "
                              f"xf.io.split_rsp(rmf) and pass the area separately")
    E = np.asarray(energy_edges, float)
    C = np.asarray(channel_edges, float)
    Wt = _true_energy_weights(rmf, E, where, "RMF true energies (ENERG_LO–ENERG_HI)")
    emin, emax = rmf["e_min"].values, rmf["e_max"].values
    Wc, k = channel_shares(emin, emax, C)  # (n_channel, l)
    if k is not None:
        warnings.warn(f"{where}: X's channel edges split RMF channels (e.g. channel "
                      f"{int(rmf['channel'][k])}, {emin[k]:.6g}–{emax[k]:.6g} keV); shared in "
                      f"proportion to overlap", UserWarning, stacklevel=2)
    M = np.asarray(rmf.values, float)
    R = (Wt @ (M @ Wc)).T  # (l, L)
    R = np.clip(R, 0, None)
    col = R.sum(axis=0)
    over = col > 1
    if over.any():
        if col.max() > 1.01:
            j = int(col.argmax())
            raise FileFormatError(f"{where}: response column for {E[j]:.6g}–{E[j + 1]:.6g} keV "
                                  f"sums to {col[j]:.6g} > 1; is the area folded in?")
        R[:, over] /= col[over]
    Ec = 0.5 * (C[1:] + C[:-1])
    return xr.DataArray(
        R, dims=("energy_coarse", "energy"),
        coords={"energy_coarse": ("energy_coarse", Ec, {"units": "keV"}),
                "channel_lo": ("energy_coarse", C[:-1], {"units": "keV"}),
                "channel_hi": ("energy_coarse", C[1:], {"units": "keV"}),
                "energy": ("energy", 0.5 * (E[1:] + E[:-1]), {"units": "keV"}),
                "energy_lo": ("energy", E[:-1], {"units": "keV"}),
                "energy_hi": ("energy", E[1:], {"units": "keV"})},
        name="response_X", attrs={"source": where},
    )


def area_on_grid(arf, energy_edges: Sequence[float]) -> xr.DataArray:
    """Effective area on Z's energy grid (overlap-weighted mean over each bin).

    Parameters
    ----------
    arf : xarray.DataArray or path
        As returned by :func:`xfusion.io.read_arf` (or a path).
    energy_edges : array_like (L + 1,)
        Z's energy bin edges (keV).

    Returns
    -------
    xarray.DataArray
        Dims ``('energy',)``, cm².

    Raises
    ------
    FileFormatError
        If the ARF's energies do not cover the band or have gaps.
    """
    arf = _load(arf, read_arf, "arf")
    where = _name(arf, "arf")
    E = np.asarray(energy_edges, float)
    W = _true_energy_weights(arf, E, where, "ARF energies (ENERG_LO–ENERG_HI)")
    return xr.DataArray(W @ np.asarray(arf.values, float), dims=("energy",),
                        coords={"energy": ("energy", 0.5 * (E[1:] + E[:-1]), {"units": "keV"})},
                        name="area", attrs={"units": "cm2", "source": where})


def _z_energy_edges(energy_band, n_energy: int | None, energy_bin: float | None,
                    vL: int) -> np.ndarray:
    """Z's energy edges (keV) from the band and either the number or the width of its bins."""
    e0, e1 = (float(v) for v in energy_band)
    if not e1 > e0:
        raise ValueError(f"energy_band must be (emin, emax) with emin < emax, got {energy_band}")
    if (n_energy is None) == (energy_bin is None):
        raise ValueError("give exactly one of n_energy= and energy_bin=")
    if n_energy is None:
        L = (e1 - e0) / float(energy_bin)
        if abs(L - round(L)) > 1e-6 * L:
            raise ProblemError(f"energy_band {e0}–{e1} keV is not a whole number of "
                               f"energy_bin={energy_bin} keV bins ({L:.6g})")
        n_energy = int(round(L))
    L = int(n_energy)
    if L % int(vL):
        raise ProblemError(f"n_energy={L} is not a multiple of vL={vL}")
    return np.linspace(e0, e1, L + 1)


def _x_response(rmf_X, arf_X, rmf_extension) -> tuple[xr.DataArray, object]:
    """X's redistribution matrix and effective area, splitting the area off a full response."""
    if not isinstance(rmf_X, xr.DataArray):
        rmf_X = read_rmf(rmf_X, extension=rmf_extension)
    if rmf_X.attrs.get("includes_area"):
        if arf_X is not None:
            raise FileFormatError(f"{_name(rmf_X, 'rmf_X')}: the matrix includes the effective "
                                  f"area, and arf_X was given too (it would count twice)")
        rmf_X, arf_X = split_rsp(rmf_X)
    if arf_X is None:
        raise ValueError("arf_X= is needed (or an rmf_X with the area folded in)")
    return rmf_X, arf_X


def _z_grid(wY, shape_Y: tuple[int, int], wcs, shape, pixel_size: float | None):
    """Z's WCS and shape: Y's grid subdivided by ``pixel_size``, or the given ``wcs``/``shape``."""
    m, n = shape_Y
    if wcs is None:
        if pixel_size is None:
            raise ValueError("give pixel_size= (Z's pixel, arcsec) or wcs= and shape=")
        sy, sx = pixel_scale(wY)
        v = sx / float(pixel_size)
        if abs(v - round(v)) > 1e-6 * v or round(v) < 1:
            raise ProblemError(
                f"Y's pixels are {sx:.6g} arcsec and Z's pixel_size is {pixel_size:g} arcsec: "
                f"the ratio {v:.6g} is not an integer (try {sx / max(round(v), 1):.6g})"
            )
        v = int(round(v))
        return subdivide_wcs(wY, v), (m * v, n * v)
    wZ = as_wcs(wcs, "wcs")
    if shape is None:
        if wZ.pixel_shape is None:
            raise ValueError("shape= is needed with wcs=")
        shape = (wZ.pixel_shape[1], wZ.pixel_shape[0])
    return wZ, tuple(int(s) for s in shape)


def _area_on_z(arf, E: np.ndarray, shape_Z: tuple[int, int], y: np.ndarray, x: np.ndarray,
               what: str) -> np.ndarray:
    """An effective area on Z's grid: (L,) from an ARF (path, 1-D DataArray or array), or
    (L, M, N) from an (energy, y, x) area (DataArray or array).

    A 3-D DataArray whose first dim is ``energy_true`` (or ``energy`` with ``energy_lo``/
    ``energy_hi`` coordinates on another grid) is averaged over each Z bin like an ARF; its
    spatial dims must be ``('y', 'x')`` of Z's shape (and, if it has ``y``/``x`` coordinates,
    Z's pixel centres). A plain 3-D array must be (L, M, N).
    """
    L, (M, N) = E.size - 1, shape_Z
    ndim = getattr(arf, "ndim", None) if not isinstance(arf, (str, os.PathLike)) else 1
    if ndim is None:
        arf = np.asarray(arf, float)
        ndim = arf.ndim
    if ndim != 3:
        if isinstance(arf, np.ndarray):
            if arf.shape != (L,):
                raise ProblemError(f"{what}: shape {arf.shape}, expected ({L},) on Z's energies "
                                   f"or ({L}, {M}, {N}) = (energy, y, x)")
            return arf
        return area_on_grid(arf, E).values
    if not isinstance(arf, xr.DataArray):
        a = np.asarray(arf, float)
        if a.shape != (L, M, N):
            raise ProblemError(f"{what}: (energy, y, x) area of shape {a.shape}, expected "
                               f"({L}, {M}, {N}) = Z's (energy, y, x)")
        return a
    if tuple(arf.dims[1:]) != ("y", "x") or arf.dims[0] not in ("energy", "energy_true"):
        raise ProblemError(f"{what}: dims {arf.dims}, expected ('energy' or 'energy_true', 'y', "
                           f"'x')")
    if arf.shape[1:] != (M, N):
        raise ProblemError(f"{what}: spatial shape {arf.shape[1:]}, expected Z's ({M}, {N})")
    for dim, centres in (("y", y), ("x", x)):
        if dim in arf.coords and not np.allclose(arf[dim].values, centres, rtol=0,
                                                 atol=1e-6 * max(1.0, np.ptp(centres))):
            raise ProblemError(f"{what}: {dim} coordinates differ from Z's pixel centres "
                               f"(arcsec offsets from the image centre)")
    a = np.asarray(arf.values, float)
    if "energy_lo" in arf.coords and "energy_hi" in arf.coords:
        where = _name(arf, what)
        W = _true_energy_weights(arf, E, where, f"{what} energies (energy_lo–energy_hi)")
        return np.tensordot(W, a, axes=1)
    if arf.shape[0] != L:
        raise ProblemError(f"{what}: {arf.shape[0]} energies, expected Z's {L} (or give "
                           f"energy_lo/energy_hi coordinates to average over Z's bins)")
    return a


def _area_with_exposure(area: np.ndarray, arf, counts: xr.DataArray, expmap, E: np.ndarray,
                        wZ, shape_Z: tuple[int, int], what: str) -> np.ndarray:
    """Fold exposure maps, or the per-pixel exposure of the events' CCDs, into an area.

    ``expmap`` given: :func:`xfusion.io.area_from_expmaps` (a 1-D area only). Else a cube
    with an ``exposure_map`` coordinate (:func:`xfusion.io.read_events`, per-CCD exposure):
    ``A(E) · t(p) / t`` (Y's map is on Y's pixels: each Z pixel takes its Y pixel's).
    """
    t = float(counts.attrs["exposure"])
    if expmap is not None:
        if area.ndim != 1:
            raise ProblemError(f"{what} is already an (energy, y, x) area; exposure maps would "
                               f"count the exposure twice (give a 1-D ARF)")
        src = (read_arf(arf) if isinstance(arf, (str, os.PathLike)) else
               arf if isinstance(arf, xr.DataArray) else None)
        return area_from_expmaps(expmap, area, t, E, wZ, shape_Z, arf=src, name=what)
    if "exposure_map" not in counts.coords:
        return area
    if area.ndim != 1:
        raise ProblemError(f"{what} is an (energy, y, x) area, and the events' CCDs differ in "
                           f"exposure (exposure_map); give a 1-D ARF or pass exposure= in "
                           f"options")
    rel = np.asarray(counts["exposure_map"].values, float) / t
    M, N = shape_Z
    if rel.shape != (M, N):
        rel = np.repeat(np.repeat(rel, M // rel.shape[0], axis=0), N // rel.shape[1], axis=1)
    return area[:, None, None] * rel[None]


def _zero_area_counts(X: xr.DataArray, area: np.ndarray, what: str) -> None:
    """Warn when counts fall in pixels the area (exposure map) leaves at zero."""
    if area.ndim != 3:
        return
    dead = ~area.any(axis=0)
    n = int(np.asarray(X.values)[:, dead].sum()) if dead.any() else 0
    if n:
        warnings.warn(f"{what}: {n} counts fall in {int(dead.sum())} pixels of zero exposure "
                      f"(exposure map misaligned with the events, or made for other CCDs?); they "
                      f"are not explained by the model", UserWarning, stacklevel=3)


def _psf_on_grid(psf_Y, step: float, E: np.ndarray, shape_Z, psf_size, psf_rotation: float,
                 psf_pixel_size) -> tuple[np.ndarray, str]:
    """Y's PSF on Z's pixels (read from FITS if a path), cropped to twice Z's image, and its
    source (the file name or ``'array'``)."""
    if isinstance(psf_Y, (str, os.PathLike)):
        psf = psf_from_fits(psf_Y, step, energy_edges=E, size=psf_size, rotation=psf_rotation,
                            psf_pixel_size=psf_pixel_size)
        psf_src = os.fspath(psf_Y)
    else:
        psf = psf_Y
        psf_src = "array"
    psf_arr = np.asarray(psf.values if isinstance(psf, xr.DataArray) else psf, float)
    if psf_arr.shape[-1] > 2 * shape_Z[1] + 1 or psf_arr.shape[-2] > 2 * shape_Z[0] + 1:
        h = min(shape_Z)  # crop a kernel larger than twice the image (validate refuses those)
        cy, cx = psf_arr.shape[-2] // 2, psf_arr.shape[-1] // 2
        psf_arr = psf_arr[..., cy - h:cy + h + 1, cx - h:cx + h + 1]
        # no renormalising: the flux beyond the crop is lost from Y's field (the PSF's wings)
    return psf_arr, psf_src


def _background(value, options: Mapping | None, edges: np.ndarray, exposure: float,
                default_ebounds, what: str):
    """A background of :func:`from_files`: a PHA path made into expected counts per pixel
    (:func:`xfusion.io.background_spectrum`), anything else passed on to make_problem."""
    if value is None:
        if options:
            raise ValueError(f"{what}_options given without {what}")
        return None
    if not isinstance(value, (str, os.PathLike)):
        return value
    from .background import background_spectrum

    opts = dict(options or {})
    pha = read_pha(value)
    if "ebounds" not in opts and "e_min" not in pha.coords and default_ebounds is not None:
        opts["ebounds"] = default_ebounds
    return background_spectrum(pha, edges, exposure, **opts)


def from_files(
    events_X,
    events_Y,
    rmf_X,
    arf_X=None,
    arf_Y=None,
    psf_Y=None,
    *,
    energy_band: tuple[float, float],
    n_energy: int | None = None,
    energy_bin: float | None = None,
    vL: int,
    pixel_size: float | None = None,
    wcs=None,
    shape: Sequence[int] | None = None,
    instrument_X: str | None = None,
    instrument_Y: str | None = None,
    options_X: Mapping | None = None,
    options_Y: Mapping | None = None,
    rmf_extension=None,
    psf_rotation: float = 0.0,
    psf_size: int | None = None,
    psf_pixel_size: float | None = None,
    expmap_X=None,
    expmap_Y=None,
    edge_tolerance: float | None = 0.05,
    edge_spectrum=None,
    background_X=None,
    background_Y=None,
    background_options_X: Mapping | None = None,
    background_options_Y: Mapping | None = None,
) -> xr.Dataset:
    """Assemble a fusion problem from event files and calibration files.

    Parameters
    ----------
    events_X, events_Y : path
        Event lists of the fine-pixel (X, e.g. EPIC) and fine-spectrum (Y, e.g. Resolve)
        instruments.
    rmf_X : path or DataArray
        X's redistribution matrix (``MATRIX``), or a full response (``SPECRESP MATRIX``) when
        ``arf_X`` is None: its area is then split off (:func:`split_rsp`).
    arf_X, arf_Y : path, DataArray or array
        Effective areas (``arf_Y`` required): an ARF (1-D, averaged over Z's energy bins), or an
        (energy, y, x) area on Z's pixels (a DataArray with dims ``('energy' or 'energy_true',
        'y', 'x')``, averaged over Z's bins when it has ``energy_lo``/``energy_hi``, or an
        array of shape (L, M, N)); refused, naming the shapes, if it does not fit Z's grid.
    psf_Y : path, array or DataArray
        Y's PSF: a FITS file (resampled on Z's pixels by :func:`xfusion.io.psf_from_fits`,
        energy-dependent when it holds several energies) or an array on Z's pixels. A kernel
        wider than twice Z's image is cropped to ``2·min(M, N) + 1`` without renormalising: the
        kernel sums to the fraction of the PSF inside it (≤ 1), the rest is lost from Y's field.
    energy_band : (emin, emax)
        Z's band in keV.
    n_energy, energy_bin : int or float
        Number L of Z's energy bins, or their width (keV); one of them.
    vL : int
        Z bins per X channel (``L = vL · l``). X's channel edges are every ``vL``-th Z edge; put
        them on the RMF's channel boundaries (multiples of 5 eV for EPIC-pn) or
        :func:`response_from_rmf` warns that it splits channels.
    pixel_size : float, optional
        Z's pixel size (arcsec). Z's grid is then Y's grid with each pixel cut into
        ``v × v`` pixels, ``v = Y's pixel / pixel_size`` (must be an integer), in Y's orientation
        (X's events are binned on it through the sky, so any roll between the two is handled).
    wcs, shape : optional
        Instead of ``pixel_size``: Z's grid given explicitly; it is checked against Y's grid
        (:func:`xfusion.io.check_alignment`) and refused if it does not line up.
    instrument_X, instrument_Y : str, optional
        Event layouts (see :func:`xfusion.io.read_events`); detected by default.
    options_X, options_Y : mapping, optional
        Extra arguments to :func:`xfusion.io.read_events` (selections, ``exposure``, and for a
        non-Resolve Y its grid: ``pixel_size``, ``shape``, ``centre`` or ``wcs``).
    rmf_extension : optional
        Which matrix extension of ``rmf_X`` (see :func:`xfusion.io.read_rmf`).
    psf_rotation : float
        Rotation (deg, counter-clockwise) from the PSF image's frame to Z's grid (0 when the PSF
        is in Y's detector frame, which Z's grid follows).
    psf_size, psf_pixel_size : optional
        Passed to :func:`xfusion.io.psf_from_fits`.
    expmap_X, expmap_Y : path, DataArray or sequence of them, optional
        Exposure maps (XMM-SAS ``eexpmap`` in s, one per energy band; Chandra ``mkexpmap`` in
        cm² s; :func:`xfusion.io.read_expmap`), resampled onto Z's grid through their WCS:
        the area becomes (energy, y, x), ``ARF(E) · map(E, p) / t``
        (:func:`xfusion.io.area_from_expmaps`). The ARF must then be the on-axis area without
        vignetting. Without a map, an X whose events fall on CCDs of different live times
        (``exposure_map`` of :func:`xfusion.io.read_events`) gets ``ARF(E) · t(p) / t``.
    edge_tolerance : float or None
        X channels of which more than this share of the expected counts comes from true
        energies outside ``energy_band`` (for ``edge_spectrum``, from the whole RMF and the
        ARF: :func:`xfusion.io.observed_channels`) are left out of the likelihood, with a
        warning naming them; default 0.05. ``None`` or 0 keeps every channel.
    edge_spectrum : callable, optional
        The spectrum (photons per keV, a function of keV) for ``edge_tolerance``; default flat.
    background_X, background_Y : path, DataArray or array, optional
        Known backgrounds (docs/real_data.md#backgrounds): a background PHA file, turned into
        expected counts per pixel on X's channels (Y's: Z's energy bins) by
        :func:`xfusion.io.background_spectrum` with X's (Y's) exposure; or expected counts
        as :func:`xfusion.make_problem` takes them (a cube on the instrument's grid, or a 1-D
        spectrum per pixel, put in every pixel).
    background_options_X, background_options_Y : mapping, optional
        Arguments of :func:`xfusion.io.background_spectrum` for a PHA: ``backscal`` or
        ``pixels`` (one is needed: the file cannot know the source's BACKSCAL), ``areascal``,
        ``ebounds``. Without ``ebounds`` and an ``EBOUNDS`` extension in the PHA, X's channel
        energies are those of ``rmf_X``, and a Resolve Y's those of its PI channels
        (:data:`xfusion.io.RESOLVE_CHANNEL_WIDTH`).

    Returns
    -------
    xarray.Dataset
        A validated problem; attrs ``wcs`` (Z's grid), the source file names; a Resolve Y adds
        an ``observed_Y`` (y_coarse, x_coarse) coordinate marking the pixels that were read
        (False for the calibration pixel and excluded pixels, whose counts are 0). With
        ``edge_tolerance``, the coordinates ``observed_X`` (False: a band-edge channel left out;
        its counts are kept in ``X``) and ``out_of_band_X`` (each channel's share from outside
        the band), and attrs ``edge_tolerance`` and ``edge_channels`` (the left-out ranges, keV).

    Raises
    ------
    ProblemError
        Grids that cannot be aligned, non-integer factors.
    FileFormatError
        Bad files (named in the message).
    """
    opts_X, opts_Y = dict(options_X or {}), dict(options_Y or {})
    E = _z_energy_edges(energy_band, n_energy, energy_bin, vL)

    # X's response first: its channel boundaries fix X's channel edges
    rmf_X, arf_X = _x_response(rmf_X, arf_X, rmf_extension)
    if arf_Y is None or psf_Y is None:
        raise ValueError("arf_Y= and psf_Y= are needed")
    C = E[:: int(vL)]

    # Y: its grid is fixed (the Resolve array) or built from options_Y
    Yc = read_events(events_Y, instrument_Y, energy_edges=E, **opts_Y)
    wY = as_wcs(Yc.attrs["wcs"], "Y's grid")
    m, n = Yc.sizes["y"], Yc.sizes["x"]
    wZ, shape_Z = _z_grid(wY, (m, n), wcs, shape, pixel_size)
    vM, vN = check_alignment(wZ, shape_Z, wY, (m, n))
    wZ.pixel_shape = (shape_Z[1], shape_Z[0])

    Xc = read_events(events_X, instrument_X, energy_edges=C, wcs=wZ, shape=shape_Z, **opts_X)
    step = pixel_scale(wZ)[1]

    R = response_from_rmf(rmf_X, E, C)
    aX = _area_on_z(arf_X, E, shape_Z, Xc["y"].values, Xc["x"].values, "arf_X")
    aY = _area_on_z(arf_Y, E, shape_Z, Xc["y"].values, Xc["x"].values, "arf_Y")
    aX = _area_with_exposure(aX, arf_X, Xc, expmap_X, E, wZ, shape_Z, "arf_X")
    aY = _area_with_exposure(aY, arf_Y, Yc, expmap_Y, E, wZ, shape_Z, "arf_Y")
    _zero_area_counts(Xc, aX, "X")
    psf_arr, psf_src = _psf_on_grid(psf_Y, step, E, shape_Z, psf_size, psf_rotation,
                                    psf_pixel_size)
    bkg_X = _background(background_X, background_options_X, C, Xc.attrs["exposure"],
                        rmf_X, "background_X")
    bkg_Y = _background(background_Y, background_options_Y, E, Yc.attrs["exposure"],
                        RESOLVE_CHANNEL_WIDTH if Yc.attrs.get("layout") == "resolve" else None,
                        "background_Y")

    attrs = {
        "events_X": Xc.attrs["filename"], "events_Y": Yc.attrs["filename"],
        "rmf_X": _name(rmf_X, "array"), "arf_X": _name(arf_X, "array"),
        "arf_Y": _name(arf_Y, "array"), "psf_Y": psf_src,
        "instrument_X": Xc.attrs["instrument"], "instrument_Y": Yc.attrs["instrument"],
        **{f"expmap_{k}": _names(m) for k, m in (("X", expmap_X), ("Y", expmap_Y))
           if m is not None},
        "rotation": grid_rotation(wZ), "pixel_size": step,
    }
    for name, value in (("background_X", background_X), ("background_Y", background_Y)):
        if value is not None:
            attrs[name] = _name(value, "array")
    ds = make_problem(
        Xc.values, Yc.values, R.values, psf_arr, aX, aY,
        exposure_X=Xc.attrs["exposure"], exposure_Y=Yc.attrs["exposure"],
        energy_edges=E, y=Xc["y"].values, x=Xc["x"].values, pixel_size=step,
        energy_coarse=0.5 * (C[1:] + C[:-1]), wcs_header=Xc.attrs["wcs"], attrs=attrs,
        background_X=bkg_X, background_Y=bkg_Y,
    )
    ds = ds.assign_coords(channel_lo=("energy_coarse", C[:-1], {"units": "keV"}),
                          channel_hi=("energy_coarse", C[1:], {"units": "keV"}))
    if "observed" in Yc.coords:
        ds = ds.assign_coords(observed_Y=(("y_coarse", "x_coarse"), Yc["observed"].values,
                                          {"long_name": "Y pixel observed (False: excluded "
                                                        "or absent, counts 0)"}))
    ds.attrs["vM"], ds.attrs["vN"] = vM, vN
    if edge_tolerance:
        from .edges import mark_edge_channels

        arf_edges = arf_X
        if not isinstance(arf_X, (str, os.PathLike)) and not (
                isinstance(arf_X, xr.DataArray) and arf_X.ndim == 1
                and "energy_lo" in arf_X.coords):
            # an area on Z's grid says nothing beyond the band: a flat area over the RMF's rows
            warnings.warn("arf_X is given on Z's grid, so the band-edge channels are chosen "
                          "for a flat effective area beyond the band (pass X's ARF file, or "
                          "edge_tolerance=None)", UserWarning, stacklevel=2)
            arf_edges = xr.DataArray(np.ones(rmf_X.sizes["energy_true"]), dims=("energy_true",),
                                     coords={k: rmf_X[k] for k in ("energy_lo", "energy_hi")})

        ds = mark_edge_channels(ds, rmf_X, arf_edges, C, edge_tolerance, edge_spectrum)
    return ds
