"""The fusion problem as one :class:`xarray.Dataset`: construction, validation, Zarr I/O.

Schema (also in docs/api.md)
----------------------------
=============  =======================================  ===============================================
variable       dims                                     meaning
=============  =======================================  ===============================================
``X``          (energy_coarse, y, x)                    counts, fine pixels; attrs ``exposure`` (s)
``Y``          (energy, y_coarse, x_coarse)             counts, fine channels; attrs ``exposure`` (s)
``response_X`` (energy_coarse, energy)                  P(channel c | true energy E) on Z's grid
``psf_Y``      (psf_y, psf_x) or (energy, psf_y, psf_x) Y's PSF on Z's pixels, odd sizes, sums to ≤ 1
                                                        (the fraction of the PSF inside the kernel)
``arf_X``      (energy) or (energy, y, x)               effective area of X's instrument (cm²)
``arf_Y``      (energy) or (energy, y, x)               effective area of Y's instrument (cm²)
=============  =======================================  ===============================================

Optional: ``background_X`` (energy_coarse, y, x) and ``background_Y`` (energy, y_coarse, x_coarse),
the known expected background counts in each bin of X and Y (counts, like the data): the model's
expected counts are then ``K Z + B`` (docs/model.md). Refused when negative, NaN/Inf, of another
dtype than real numbers, or on other dims (:func:`validate`); :func:`make_problem` and
:func:`with_background` also take a 1-D spectrum per pixel (the same in every pixel).

Faults that raise :class:`ProblemError` (in :func:`validate`): a missing variable or exposure,
wrong dims, an empty (size-0) axis, values that are not real numbers (bool, complex, string,
object dtypes), spatial grids that do not line up (non-integer factor, coarse pixel centres that
are not the means of whole groups of fine pixels), an energy grid whose factor ``L / l`` is not an
integer, negative / non-integer / non-finite / all-zero counts, a PSF with an even size, negative
or non-finite values, a sum above 1 + 1e-6 or not above 0 (a PSF sums to at most 1: the
fraction of its flux inside the kernel; what falls outside is lost from Y's field), negative or non-finite
response, response columns summing above 1, non-positive, non-finite or non-numeric exposure,
negative, non-finite or all-zero effective area, and negative or non-finite ``Z_true`` /
``X_true`` / ``Y_true``. Coordinates: ``energy`` and ``energy_coarse`` must be finite, positive,
strictly increasing, in keV (a ``units`` attribute other than ``keV``, or values above
:data:`MAX_ENERGY_KEV`, i.e. apparently eV, are refused); ``energy_lo < energy_hi`` and each bin
contains its centre; ``y``, ``x``, ``y_coarse``, ``x_coarse`` must be finite, strictly monotonic,
in arcsec (a ``units`` attribute other than ``arcsec``, or a pixel smaller than
:data:`MIN_PIXEL_ARCSEC`, i.e. apparently degrees, are refused). :func:`make_problem` also
refuses, by name, an input whose shape does not fit X's ``(l, M, N)`` and Y's ``(L, m, n)``.
An optional ``observed_X`` coordinate (``energy_coarse``; the X channels used, docs/model.md) must
be boolean, one entry per channel, and keep at least one channel.
:func:`open_problem` refuses a store with missing chunk or metadata files (:func:`check_store`),
which would otherwise read as fill values.

Faults that warn and are fixed (in :func:`make_problem` only, never silently in :func:`validate`):
a PSF whose sum exceeds 1 by at most 1 % is renormalised (a :class:`UserWarning` says by how much);
integer-valued float counts are accepted as they are. Energy-grid *misalignment* (coarse channel
centres that are not the means of their fine channels) only warns: the mapping from true energy to
X's channels is ``response_X`` itself, so the coordinate is descriptive.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Mapping

import numpy as np
import xarray as xr

from ._errors import ProblemError
from .operators.rebin import Factors, rebin_factors

__all__ = [
    "ProblemError",
    "Factors",
    "make_problem",
    "validate",
    "rebin_factors",
    "open_problem",
    "save_problem",
    "check_store",
    "REQUIRED",
    "BACKGROUND",
    "with_background",
]


REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "X": (("energy_coarse", "y", "x"),),
    "Y": (("energy", "y_coarse", "x_coarse"),),
    "response_X": (("energy_coarse", "energy"),),
    "psf_Y": (("psf_y", "psf_x"), ("energy", "psf_y", "psf_x")),
    "arf_X": (("energy",), ("energy", "y", "x")),
    "arf_Y": (("energy",), ("energy", "y", "x")),
}

PSF_SUM_TOL = 1e-6
RESPONSE_SUM_TOL = 1e-6
#: highest plausible photon energy (keV); larger values suggest energies in eV
MAX_ENERGY_KEV = 500.0
#: smallest plausible pixel size (arcsec); smaller steps suggest offsets in degrees
MIN_PIXEL_ARCSEC = 1e-2
#: optional variables of simulated problems and their dims
TRUTH: dict[str, tuple[str, ...]] = {
    "Z_true": ("energy", "y", "x"),
    "X_true": ("energy_coarse", "y", "x"),
    "Y_true": ("energy", "y_coarse", "x_coarse"),
}
#: optional known backgrounds (expected counts in each bin of X and Y) and their dims
BACKGROUND: dict[str, tuple[str, ...]] = {
    "background_X": ("energy_coarse", "y", "x"),
    "background_Y": ("energy", "y_coarse", "x_coarse"),
}


def _values(a):
    """Return numpy values of a DataArray / array (computing dask arrays)."""
    a = a.data if isinstance(a, xr.DataArray) else a
    return np.asarray(a)


def _check_dtype(name: str, dtype, what: str = "values") -> None:
    """Refuse a dtype that is not real numeric (bool, complex, string, object, datetime)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        raise ProblemError(f"{name}: {what} must be real numbers (integer or float), "
                           f"got dtype {dtype}")


def _check_not_empty(name: str, dims, shape) -> None:
    for d, s in zip(dims, shape):
        if s == 0:
            raise ProblemError(f"{name}: empty (shape {tuple(shape)}, axis {d!r} has size 0)")


def _check_coordinates(ds: xr.Dataset) -> None:
    """Refuse energy and spatial coordinates that are non-finite, unordered or in wrong units."""
    for c in ("energy", "energy_coarse"):
        if c not in ds.coords:
            continue
        units = ds[c].attrs.get("units")
        if units is not None and str(units) != "keV":
            raise ProblemError(f"{c}: units {units!r}, expected 'keV'")
        e = np.asarray(ds[c].values)
        _check_dtype(c, e.dtype, "energies")
        if not np.isfinite(e).all():
            raise ProblemError(f"{c}: non-finite energies (NaN or Inf); expected bin centres "
                               f"in keV")
        if (e <= 0).any():
            raise ProblemError(f"{c}: energies must be positive, got min {e.min():.6g} keV")
        if e.size > 1 and (np.diff(e) <= 0).any():
            i = int(np.argmax(np.diff(e) <= 0))
            what = "duplicated" if e[i + 1] == e[i] else "decreasing"
            raise ProblemError(f"{c}: energies must increase strictly, {what} at index {i + 1} "
                               f"({e[i]:.6g} then {e[i + 1]:.6g} keV)")
        if e.max() > MAX_ENERGY_KEV:
            raise ProblemError(f"{c}: energies up to {e.max():.6g} keV are implausible "
                               f"(above {MAX_ENERGY_KEV:g} keV); expected keV, are they in eV?")
    if "energy" in ds.coords:
        e = np.asarray(ds["energy"].values, dtype=float)
        bounds = {}
        for c in ("energy_lo", "energy_hi"):
            if c not in ds.coords:
                continue
            if ds[c].dims != ("energy",):
                raise ProblemError(f"{c}: dims {ds[c].dims}, expected ('energy',)")
            units = ds[c].attrs.get("units")
            if units is not None and str(units) != "keV":
                raise ProblemError(f"{c}: units {units!r}, expected 'keV'")
            _check_dtype(c, ds[c].dtype, "energies")
            b = np.asarray(ds[c].values, dtype=float)
            if not np.isfinite(b).all():
                raise ProblemError(f"{c}: non-finite bin edges (NaN or Inf)")
            if (b < 0).any():
                raise ProblemError(f"{c}: negative bin edge (min {b.min():.6g} keV)")
            bounds[c] = b
        if len(bounds) == 2:
            lo, hi = bounds["energy_lo"], bounds["energy_hi"]
            if (lo >= hi).any():
                i = int(np.argmax(lo >= hi))
                raise ProblemError(f"energy_lo: must be below energy_hi, bin {i} has "
                                   f"{lo[i]:.6g} >= {hi[i]:.6g} keV")
        tol = 1e-9 * max(1.0, float(np.abs(e).max()))
        if "energy_lo" in bounds and (bounds["energy_lo"] > e + tol).any():
            i = int(np.argmax(bounds["energy_lo"] > e + tol))
            raise ProblemError(f"energy_lo: bin {i} starts at {bounds['energy_lo'][i]:.6g} keV, "
                               f"above its centre energy {e[i]:.6g} keV")
        if "energy_hi" in bounds and (bounds["energy_hi"] < e - tol).any():
            i = int(np.argmax(bounds["energy_hi"] < e - tol))
            raise ProblemError(f"energy_hi: bin {i} ends at {bounds['energy_hi'][i]:.6g} keV, "
                               f"below its centre energy {e[i]:.6g} keV")
    for c in ("y", "x", "y_coarse", "x_coarse"):
        if c not in ds.coords:
            continue
        units = ds[c].attrs.get("units")
        if units is not None and str(units) != "arcsec":
            raise ProblemError(f"{c}: units {units!r}, expected 'arcsec' (offsets of pixel "
                               f"centres)")
        v = np.asarray(ds[c].values)
        _check_dtype(c, v.dtype, "pixel centres")
        if not np.isfinite(v).all():
            raise ProblemError(f"{c}: non-finite pixel centres (NaN or Inf); expected arcsec")
        if v.size < 2:
            continue
        d = np.diff(v.astype(float))
        if not ((d > 0).all() or (d < 0).all()):
            i = int(np.argmax(d == 0)) if (d == 0).any() else int(np.argmax(d * d[0] <= 0))
            what = "duplicated" if d[i] == 0 else "out of order"
            raise ProblemError(f"{c}: pixel centres must be strictly monotonic, {what} at "
                               f"index {i + 1} ({v[i]:.6g} then {v[i + 1]:.6g} arcsec)")
        step = float(np.abs(d).min())
        if step < MIN_PIXEL_ARCSEC:
            raise ProblemError(f"{c}: pixel size {step:.4g} arcsec is implausible (below "
                               f"{MIN_PIXEL_ARCSEC:g}); expected arcsec, are they in degrees?")


def _check_counts(ds: xr.Dataset, name: str) -> None:
    v = _values(ds[name])
    if v.size == 0:
        raise ProblemError(f"{name}: empty cube (shape {v.shape})")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise ProblemError(f"{name}: counts must be real numbers, got dtype {v.dtype}")
    if np.issubdtype(v.dtype, np.floating):
        bad = ~np.isfinite(v)
        if bad.any():
            raise ProblemError(f"{name}: {int(bad.sum())} non-finite values (NaN or Inf) in counts")
        if (v != np.round(v)).any():
            raise ProblemError(f"{name}: counts must be whole numbers; found non-integer values "
                               f"(e.g. {v[v != np.round(v)].flat[0]!r})")
    if (v < 0).any():
        raise ProblemError(f"{name}: {int((v < 0).sum())} negative counts (min {v.min()})")
    if not v.any():
        raise ProblemError(f"{name}: no counts at all (the cube is all zeros)")
    exp = ds[name].attrs.get("exposure")
    if exp is None:
        raise ProblemError(f"{name}: missing exposure (set {name}.attrs['exposure'] in seconds)")
    try:
        if isinstance(exp, (bool, np.bool_, str, bytes)):
            raise TypeError
        exp = float(exp)
    except (TypeError, ValueError):
        raise ProblemError(f"{name}: exposure {exp!r} is not a number") from None
    if not np.isfinite(exp) or exp <= 0:
        raise ProblemError(f"{name}: exposure must be positive and finite, got {exp}")


def validate(ds: xr.Dataset) -> Factors:
    """Check that ``ds`` is a well-formed fusion problem (the schema above).

    Parameters
    ----------
    ds : xarray.Dataset
        The problem.

    Returns
    -------
    Factors
        The rebinning factors ``(vL, vM, vN)``.

    Raises
    ------
    ProblemError
        Naming the variable and the fault (see the module docstring for the list).
    """
    if not isinstance(ds, xr.Dataset):
        raise ProblemError(f"a fusion problem is an xarray.Dataset, got {type(ds).__name__}")
    for name, allowed in REQUIRED.items():
        if name not in ds.data_vars:
            raise ProblemError(f"{name}: missing variable (a fusion problem needs "
                               f"{', '.join(REQUIRED)})")
        if ds[name].dims not in allowed:
            raise ProblemError(f"{name}: dims {ds[name].dims}, expected one of {allowed}")
        _check_not_empty(name, ds[name].dims, ds[name].shape)
        _check_dtype(name, ds[name].dtype, "counts" if name in ("X", "Y") else "values")
    for name, dims in TRUTH.items():
        if name in ds.data_vars:
            if ds[name].dims != dims:
                raise ProblemError(f"{name}: dims {ds[name].dims}, expected {dims}")
            _check_dtype(name, ds[name].dtype)
    _check_coordinates(ds)
    _check_observed_X(ds)
    f = rebin_factors(ds)
    _check_counts(ds, "X")
    _check_counts(ds, "Y")

    psf = _values(ds["psf_Y"])
    if psf.shape[-2] % 2 == 0 or psf.shape[-1] % 2 == 0:
        raise ProblemError(f"psf_Y: sizes must be odd so the PSF has a centre pixel, "
                           f"got {psf.shape[-2:]}")
    if not np.isfinite(psf).all():
        raise ProblemError("psf_Y: non-finite values")
    if (psf < 0).any():
        raise ProblemError(f"psf_Y: negative values (min {psf.min():.3g})")
    sums = np.atleast_1d(psf.sum(axis=(-2, -1)))
    if sums.max() > 1 + PSF_SUM_TOL:
        i = int(sums.argmax())
        raise ProblemError(
            f"psf_Y: must sum to at most 1 over (psf_y, psf_x) (the fraction of the PSF inside "
            f"the kernel), sums to {sums[i]:.8g}"
            + (f" at energy index {i} (range {sums.min():.6g}..{sums.max():.6g})"
               if psf.ndim == 3 else "")
            + "; normalise it (xf.problem.normalise_psf)"
        )
    if sums.min() <= 0:
        i = int(sums.argmin())
        raise ProblemError(
            f"psf_Y: sums to {sums[i]:.8g}" + (f" at energy index {i}" if psf.ndim == 3 else "")
            + "; a PSF must hold a positive fraction of the flux inside the kernel"
        )
    if psf.shape[-2] > 2 * ds.sizes["y"] + 1 or psf.shape[-1] > 2 * ds.sizes["x"] + 1:
        raise ProblemError(f"psf_Y: kernel {psf.shape[-2:]} is larger than twice the image "
                           f"({ds.sizes['y']}, {ds.sizes['x']})")

    R = _values(ds["response_X"])
    if not np.isfinite(R).all():
        raise ProblemError("response_X: non-finite values")
    if (R < 0).any():
        raise ProblemError(f"response_X: negative probabilities (min {R.min():.3g})")
    col = R.sum(axis=0)
    if col.max() > 1 + RESPONSE_SUM_TOL:
        i = int(col.argmax())
        raise ProblemError(
            f"response_X: column for energy index {i} sums to {col[i]:.8g} > 1 (a photon cannot "
            f"be detected with probability above 1)"
        )
    for name in ("arf_X", "arf_Y"):
        a = _values(ds[name])
        if not np.isfinite(a).all():
            raise ProblemError(f"{name}: non-finite effective area")
        if (a < 0).any():
            raise ProblemError(f"{name}: negative effective area (min {a.min():.3g} cm²)")
        if not a.any():
            raise ProblemError(f"{name}: effective area is zero everywhere")
    _check_backgrounds(ds)
    for name in TRUTH:
        if name in ds.data_vars:
            t = _values(ds[name])
            if not np.isfinite(t).all():
                raise ProblemError(f"{name}: non-finite values (NaN or Inf)")
            if (t < 0).any():
                raise ProblemError(f"{name}: negative values (min {t.min():.3g}); a flux or an "
                                   f"expected count cannot be negative")
    return f


def _check_observed_X(ds: xr.Dataset) -> None:
    """Refuse an ``observed_X`` coordinate that is not one boolean per X channel, or that leaves
    no channel in the likelihood."""
    if "observed_X" not in ds.coords:
        return
    obs = ds.coords["observed_X"]
    if obs.dims != ("energy_coarse",):
        raise ProblemError(f"observed_X: dims {obs.dims}, expected ('energy_coarse',): one "
                           f"flag per X channel")
    if obs.dtype != bool:
        raise ProblemError(f"observed_X: dtype {obs.dtype}, expected bool (True: the channel "
                           f"is used, False: left out of the likelihood)")
    if "X" in ds.data_vars and obs.shape != (ds.X.shape[0],):
        raise ProblemError(f"observed_X: shape {obs.shape}, expected ({ds.X.shape[0]},) "
                           f"(X has {ds.X.shape[0]} channels)")
    if not bool(np.asarray(obs.values).any()):
        raise ProblemError(f"observed_X: all {obs.size} of X's channels are left out (all "
                           f"False); at least one must be used")
def _check_backgrounds(ds: xr.Dataset) -> None:
    """Refuse a ``background_X`` / ``background_Y`` on other dims, not of real numbers,
    non-finite or negative (expected background counts are finite and ≥ 0)."""
    for name, dims in BACKGROUND.items():
        if name not in ds.data_vars:
            continue
        if ds[name].dims != dims:
            raise ProblemError(f"{name}: dims {ds[name].dims}, expected {dims} (expected "
                               f"background counts in each bin of "
                               f"{'X' if name.endswith('X') else 'Y'})")
        _check_dtype(name, ds[name].dtype)
        b = _values(ds[name])
        bad = ~np.isfinite(b)
        if bad.any():
            raise ProblemError(f"{name}: {int(bad.sum())} non-finite values (NaN or Inf); "
                               f"expected background counts are finite")
        if (b < 0).any():
            raise ProblemError(f"{name}: {int((b < 0).sum())} negative values (min "
                               f"{b.min():.3g}); expected background counts cannot be negative")


def _background_da(value, name: str, shape: tuple[int, int, int]) -> xr.DataArray:
    r"""A background as a (channel, y, x) DataArray of float64 expected counts.

    ``value`` is the cube itself (``shape``, or a DataArray on the variable's dims) or a 1-D
    spectrum ``b`` of ``shape[0]`` channels, the expected background counts of *one pixel*
    of the instrument's grid (X: one Z pixel; Y: one Y pixel), put in every pixel:
    :math:`B[c, i, j] = b[c]` (a spatially flat background).
    """
    dims = BACKGROUND[name]
    if isinstance(value, xr.DataArray):
        if value.ndim == 1:
            arr = np.asarray(value.values)
        elif set(value.dims) == set(dims):
            arr = np.asarray(value.transpose(*dims).values)
        else:
            raise ProblemError(f"{name}: dims {value.dims}, expected {dims} or one channel "
                               f"axis (a spectrum per pixel)")
    else:
        arr = np.asarray(value)
    _check_dtype(name, arr.dtype)
    if arr.shape == (shape[0],):
        arr = np.broadcast_to(np.asarray(arr, float)[:, None, None], shape)
    elif arr.shape != shape:
        raise ProblemError(f"{name}: shape {arr.shape}, expected {shape} or ({shape[0]},) "
                           f"(a spectrum of expected counts per pixel, put in every pixel)")
    attrs = {"units": "counts",
             "long_name": f"expected background counts of {'X' if name.endswith('X') else 'Y'}"}
    if isinstance(value, xr.DataArray) and isinstance(value.attrs.get("source"), str):
        attrs["source"] = value.attrs["source"]       # e.g. the PHA file it was read from
    return xr.DataArray(np.array(arr, dtype=float), dims=dims, attrs=attrs)


def with_background(ds: xr.Dataset, background_X=None, background_Y=None) -> xr.Dataset:
    r"""The problem ``ds`` with known backgrounds added (or replaced), validated.

    The expected counts become :math:`\mu_X = K_X Z + B_X` and :math:`\mu_Y = K_Y Z + B_Y`
    (docs/model.md); ``fuse`` then fits Z to the counts with the background included.

    Parameters
    ----------
    ds : xarray.Dataset
        A fusion problem.
    background_X : array_like (l, M, N) or (l,), or DataArray, optional
        Expected background counts in each bin of X (counts, like ``X``), or a spectrum of
        ``l`` expected counts per X pixel, the same in every pixel (a flat background; e.g.
        :func:`xfusion.io.background_spectrum`).
    background_Y : array_like (L, m, n) or (L,), or DataArray, optional
        Likewise for Y (a spectrum per Y pixel).

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``background_X`` / ``background_Y``.

    Raises
    ------
    ProblemError
        A background of the wrong shape or dims, negative or non-finite.
    """
    out = ds.copy()
    sizes = ds.sizes
    for name, value, shape in (
            ("background_X", background_X,
             (sizes["energy_coarse"], sizes["y"], sizes["x"])),
            ("background_Y", background_Y,
             (sizes["energy"], sizes["y_coarse"], sizes["x_coarse"]))):
        if value is not None:
            out[name] = _background_da(value, name, shape)
    validate(out)
    return out


def _as_da(value, dims, name, coords=None, attrs=None) -> xr.DataArray:
    if isinstance(value, xr.DataArray):
        if value.dims != tuple(dims):
            raise ProblemError(f"{name}: dims {value.dims}, expected {tuple(dims)}")
        da = value.copy()
        if attrs:
            da.attrs.update(attrs)
        return da
    arr = np.asarray(value)
    if arr.ndim != len(dims):
        raise ProblemError(f"{name}: expected {len(dims)}-D array with dims {tuple(dims)}, "
                           f"got shape {arr.shape}")
    return xr.DataArray(arr, dims=dims, attrs=dict(attrs or {}))


def _check_shapes(L: int, l: int, M: int, N: int, m: int, n: int, **arrays) -> None:
    """Refuse, by name, an input of :func:`make_problem` whose shape does not fit X's and Y's.

    X's shape gives ``(l, M, N)`` and Y's ``(L, m, n)``; every other input must agree (before
    xarray aligns them, which would fail without naming the variable).
    """
    expected = {
        "response_X": [(l, L)],
        "arf_X": [(L,), (L, M, N)],
        "arf_Y": [(L,), (L, M, N)],
        "Z_true": [(L, M, N)],
        "X_true": [(l, M, N)],
        "Y_true": [(L, m, n)],
    }
    for name, a in arrays.items():
        if a is None or name not in expected and name != "psf_Y":
            continue
        a = a if isinstance(a, xr.DataArray) else np.asarray(a)
        shape = tuple(a.shape)
        _check_dtype(name, a.dtype)
        if name == "psf_Y":
            if len(shape) == 2 or (len(shape) == 3 and shape[0] == L):
                _check_not_empty(name, ("psf_y", "psf_x"), shape[-2:])
                continue
            ok = f"(ky, kx) or ({L}, ky, kx)"
        else:
            if shape in expected[name]:
                continue
            ok = " or ".join(str(e) for e in expected[name])
        raise ProblemError(f"{name}: shape {shape}, expected {ok} (X is {(l, M, N)} = "
                           f"(l, M, N), Y is {(L, m, n)} = (L, m, n))")


def _centres(n: int, step: float, start: float | None = None) -> np.ndarray:
    if start is None:
        return (np.arange(n) - (n - 1) / 2) * step
    return start + step * (np.arange(n) + 0.5)


def normalise_psf(psf: np.ndarray) -> np.ndarray:
    """Return ``psf / psf.sum()`` over its last two axes."""
    psf = np.asarray(psf, dtype=float)
    s = psf.sum(axis=(-2, -1), keepdims=True)
    if (s <= 0).any():
        raise ProblemError("psf_Y: sums to zero or less; cannot normalise")
    return psf / s


def _counts(X, Y, exposure_X, exposure_Y) -> tuple[xr.DataArray, xr.DataArray]:
    """X and Y as counts DataArrays with their exposures (attrs), checked for emptiness and
    dtype."""
    Xd = _as_da(X, ("energy_coarse", "y", "x"), "X")
    Yd = _as_da(Y, ("energy", "y_coarse", "x_coarse"), "Y")
    for d, e, name in ((Xd, exposure_X, "X"), (Yd, exposure_Y, "Y")):
        if e is not None:
            try:
                if isinstance(e, (bool, np.bool_, str, bytes)):
                    raise TypeError
                d.attrs["exposure"] = float(e)
            except (TypeError, ValueError):
                raise ProblemError(f"{name}: exposure {e!r} is not a number (pass "
                                   f"exposure_{name}=seconds)") from None
        d.attrs.setdefault("units", "counts")
        if "exposure" not in d.attrs:
            raise ProblemError(f"{name}: missing exposure (pass exposure_{name}=seconds)")
        _check_not_empty(name, d.dims, d.shape)
        _check_dtype(name, d.dtype, "counts")
    return Xd, Yd


def _energy_axis(Yd: xr.DataArray, L: int, energy, energy_edges) -> tuple[np.ndarray, np.ndarray]:
    """Z's energy bin centres and edges: from ``energy_edges``, ``energy``, Y's coordinate or a
    placeholder (1 eV steps), the edges halfway between centres when not given."""
    if energy_edges is not None:
        edges = np.asarray(energy_edges, dtype=float)
        if edges.shape != (L + 1,):
            raise ProblemError(f"energy_edges: expected {L + 1} edges for {L} channels, "
                               f"got {edges.shape}")
        if (np.diff(edges) <= 0).any():
            raise ProblemError("energy_edges: must increase strictly")
        energy = 0.5 * (edges[1:] + edges[:-1])
    if energy is None and "energy" in Yd.coords:
        energy = Yd["energy"].values
    if energy is None:
        energy = 1e-3 * (np.arange(L) + 1.0)
    energy = np.asarray(energy, dtype=float)
    if energy.shape != (L,):
        raise ProblemError(f"energy: expected {L} centres (Y has {L} channels), got {energy.shape}")
    if energy_edges is None:
        mid = 0.5 * (energy[1:] + energy[:-1]) if L > 1 else np.array([])
        first = energy[0] - (mid[0] - energy[0]) if L > 1 else energy[0] - 5e-4
        last = energy[-1] + (energy[-1] - mid[-1]) if L > 1 else energy[0] + 5e-4
        edges = np.concatenate([[first], mid, [last]])
    return energy, edges


def _coarse_energy_axis(energy: np.ndarray, L: int, l: int, energy_coarse) -> np.ndarray:
    """X's channel centres: given, or the means of ``L // l`` consecutive Z bins."""
    if l == 0 or L % l:
        raise ProblemError(f"energy / energy_coarse: fine size {L} (Y's channels) is not a whole "
                           f"multiple of coarse size {l} (X's channels)")
    if energy_coarse is None:
        energy_coarse = energy.reshape(l, L // l).mean(axis=1)
    energy_coarse = np.asarray(energy_coarse, dtype=float)
    if energy_coarse.shape != (l,):
        raise ProblemError(f"energy_coarse: expected {l} centres (X has {l} channels), got "
                           f"{energy_coarse.shape}")
    return energy_coarse


def _pixel_axes(fine: tuple[int, int], coarse: tuple[int, int], y, x, pixel_size):
    """Fine pixel centres ``y``, ``x`` (given or centred on 0) and the coarse ones (block means);
    refuses a coarse image that does not tile the fine one."""
    (M, N), (m, n) = fine, coarse
    if y is None:
        y = _centres(M, pixel_size)
    if x is None:
        x = _centres(N, pixel_size)
    y, x = np.asarray(y, float), np.asarray(x, float)
    if y.shape != (M,) or x.shape != (N,):
        raise ProblemError(f"y, x: expected {M} and {N} pixel centres, got {y.shape}, {x.shape}")
    if M % m or N % n:
        raise ProblemError(f"Y: coarse image {m}×{n} does not tile X's fine image {M}×{N} "
                           f"(y/x vs y_coarse/x_coarse: not a whole multiple)")
    yc = y.reshape(m, M // m).mean(1)
    xc = x.reshape(n, N // n).mean(1)
    return y, x, yc, xc


def _psf_array(psf_Y) -> np.ndarray:
    """Y's PSF as a float array, renormalised with a warning (at :func:`make_problem`'s caller)
    when its sum exceeds 1 by more than :data:`PSF_SUM_TOL` and at most 1 %. A sum below 1 is
    kept: it is the fraction of the PSF inside the kernel (the wings are lost from Y's field)."""
    psf = np.asarray(psf_Y.values if isinstance(psf_Y, xr.DataArray) else psf_Y, dtype=float)
    s = psf.sum(axis=(-2, -1))
    off = (s - 1).max() if psf.size else np.inf
    if PSF_SUM_TOL < off <= 0.01:
        warnings.warn(f"psf_Y sums to {np.atleast_1d(s)[0]:.6g}, not 1; renormalised",
                      UserWarning, stacklevel=3)
        psf = normalise_psf(psf)
    return psf


def _area(a) -> xr.DataArray:
    """An effective area (cm²) over energy, or over (energy, y, x)."""
    a = np.asarray(a.values if isinstance(a, xr.DataArray) else a, dtype=float)
    dims = ("energy",) if a.ndim == 1 else ("energy", "y", "x")
    return xr.DataArray(a, dims=dims, attrs={"units": "cm2"})


def _add_truth(data: dict, truth: dict) -> None:
    """Add the optional ``Z_true``, ``X_true``, ``Y_true`` to ``data``, refusing other names."""
    truth_dims = {"Z_true": ("energy", "y", "x"), "X_true": ("energy_coarse", "y", "x"),
                  "Y_true": ("energy", "y_coarse", "x_coarse")}
    for k, v in truth.items():
        if k not in truth_dims:
            raise TypeError(f"make_problem() got an unexpected keyword argument {k!r}")
        data[k] = _as_da(v, truth_dims[k], k)
    if "Z_true" in data:
        data["Z_true"].attrs["units"] = "photon cm-2 s-1"


def make_problem(
    X,
    Y,
    response_X,
    psf_Y,
    arf_X,
    arf_Y,
    exposure_X: float | None = None,
    exposure_Y: float | None = None,
    energy=None,
    energy_edges=None,
    y=None,
    x=None,
    pixel_size: float = 10.0,
    energy_coarse=None,
    wcs_header: str | None = None,
    attrs: Mapping | None = None,
    observed_X=None,
    background_X=None,
    background_Y=None,
    **truth,
) -> xr.Dataset:
    """Build and validate a fusion problem from arrays or DataArrays.

    Parameters
    ----------
    X : array_like, shape (l, M, N)
        Counts of the fine-pixel instrument (e.g. XMM-Newton/EPIC).
    Y : array_like, shape (L, m, n)
        Counts of the fine-spectrum instrument (e.g. XRISM/Resolve).
    response_X : array_like, shape (l, L)
        Probability that a photon of true energy ``E_j`` is recorded in X's channel ``c``
        (spectral response and channel rebinning in one matrix; see :func:`xfusion.kernels`).
    psf_Y : array_like, shape (ky, kx) or (L, ky, kx)
        Y's PSF sampled on Z's pixels; odd sizes; normalised to 1.
    arf_X, arf_Y : array_like, shape (L,) or (L, M, N)
        Effective areas in cm² on Z's grid.
    exposure_X, exposure_Y : float, optional
        Exposures in s (taken from ``X.attrs['exposure']`` when X is a DataArray).
    energy : array_like (L,), optional
        Bin centres in keV; derived from ``energy_edges`` if given, else 1..L eV steps.
    energy_edges : array_like (L + 1,), optional
        Bin edges in keV, stored as ``energy_lo`` / ``energy_hi`` coordinates.
    y, x : array_like, optional
        Fine pixel centres (arcsec); default: ``pixel_size`` steps centred on 0.
    energy_coarse : array_like (l,), optional
        X's channel centres (keV); default: means of groups of ``L / l`` fine channels.
    wcs_header : str, optional
        Celestial WCS of Z's grid as a FITS header string (stored in attrs).
    attrs : mapping, optional
        Extra JSON-safe attributes of the problem.
    observed_X : array_like (l,) of bool, optional
        The X channels used in the likelihood (stored as the ``observed_X`` coordinate); the
        others have expected counts 0 and their counts are ignored (e.g. edge channels fed by
        photons from outside the band, :func:`xfusion.io.observed_channels`). Default: all.
    background_X : array_like (l, M, N) or (l,), optional
        Known expected background counts in each bin of X (counts, as X), or a spectrum of
        expected background counts in *one X pixel*, the same in every pixel (a spatially
        flat background). See :func:`with_background`.
    background_Y : array_like (L, m, n) or (L,), optional
        Likewise for Y (a 1-D spectrum is per Y pixel, put in every Y pixel).
    **truth
        Optional ``Z_true``, ``X_true``, ``Y_true`` arrays for simulated problems.

    Returns
    -------
    xarray.Dataset
        A validated problem.
    """
    Xd, Yd = _counts(X, Y, exposure_X, exposure_Y)
    L, m, n = Yd.shape
    l, M, N = Xd.shape
    _check_shapes(L, l, M, N, m, n, response_X=response_X, psf_Y=psf_Y, arf_X=arf_X,
                  arf_Y=arf_Y, **truth)
    energy, edges = _energy_axis(Yd, L, energy, energy_edges)
    energy_coarse = _coarse_energy_axis(energy, L, l, energy_coarse)
    y, x, yc, xc = _pixel_axes((M, N), (m, n), y, x, pixel_size)
    psf = _psf_array(psf_Y)
    psf_dims = ("psf_y", "psf_x") if psf.ndim == 2 else ("energy", "psf_y", "psf_x")
    data = {
        "X": Xd,
        "Y": Yd,
        "response_X": _as_da(np.asarray(response_X, dtype=float), ("energy_coarse", "energy"),
                             "response_X"),
        "psf_Y": xr.DataArray(psf, dims=psf_dims),
        "arf_X": _area(arf_X),
        "arf_Y": _area(arf_Y),
    }
    _add_truth(data, truth)
    for name, value, shape in (("background_X", background_X, (l, M, N)),
                               ("background_Y", background_Y, (L, m, n))):
        if value is not None:
            data[name] = _background_da(value, name, shape)
    coords = {
        "energy": ("energy", energy, {"units": "keV", "long_name": "true energy (bin centre)"}),
        "energy_lo": ("energy", edges[:-1], {"units": "keV"}),
        "energy_hi": ("energy", edges[1:], {"units": "keV"}),
        "energy_coarse": ("energy_coarse", energy_coarse,
                          {"units": "keV", "long_name": "X channel centre"}),
        "y": ("y", y, {"units": "arcsec"}),
        "x": ("x", x, {"units": "arcsec"}),
        "y_coarse": ("y_coarse", yc, {"units": "arcsec"}),
        "x_coarse": ("x_coarse", xc, {"units": "arcsec"}),
    }
    ds = xr.Dataset(data)
    ds = ds.drop_vars([c for c in coords if c in ds.coords]).assign_coords(coords)
    if observed_X is not None:
        ds = ds.assign_coords(observed_X=_observed_X_coord(observed_X, l))
    ds.attrs.update({"title": "xfusion problem", "schema": "xfusion-problem/1"})
    if wcs_header is not None:
        ds.attrs["wcs"] = str(wcs_header)
    if attrs:
        ds.attrs.update(attrs)
    validate(ds)
    return ds


def _observed_X_coord(observed_X, l: int) -> tuple:
    """``observed_X`` as a coordinate on ``energy_coarse``, refused (by name) unless it is one
    boolean per X channel."""
    obs = np.asarray(observed_X.values if isinstance(observed_X, xr.DataArray) else observed_X)
    if obs.dtype != bool:
        raise ProblemError(f"observed_X: dtype {obs.dtype}, expected bool (True: the channel "
                           f"is used)")
    if obs.shape != (l,):
        raise ProblemError(f"observed_X: shape {obs.shape}, expected ({l},) (X has {l} "
                           f"channels)")
    return ("energy_coarse", obs, {"long_name": "X channel used in the likelihood (False: "
                                                "left out, e.g. a band-edge channel)"})


def _json_safe(attrs: Mapping, where: str) -> None:
    for k, v in attrs.items():
        try:
            json.dumps(v)
        except TypeError:
            raise ProblemError(f"{where}: attribute {k!r} of type {type(v).__name__} is not "
                               f"JSON-safe and cannot go into a Zarr store") from None


def save_problem(ds: xr.Dataset, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Write a problem to a Zarr store atomically (temporary store, then rename).

    Parameters
    ----------
    ds : xarray.Dataset
    path : str or path-like
        Directory of the Zarr store.
    overwrite : bool
        Replace an existing store — only a problem store written by xfusion; anything else
        at ``path`` is refused (:class:`xfusion.OutputError`), as is an existing store
        without ``overwrite`` (:class:`xfusion.OutputExistsError`, a ``FileExistsError``).
    """
    from ._store import write_store

    path = os.fspath(path)
    _json_safe(ds.attrs, "Dataset")
    for name, v in ds.variables.items():
        _json_safe(v.attrs, str(name))
    # Chunk layouts remembered from a store this problem was opened from no longer fit once it is
    # rechunked or subset (to_zarr would refuse); let the new store follow the data instead.
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {k: e for k, e in v.encoding.items()
                      if k not in ("chunks", "preferred_chunks", "shards")}
    # write_store writes every chunk, even one of fill values only, so that open_problem can
    # tell a missing chunk file (a partial copy) from zeros
    return write_store(ds, path, "problem", overwrite=overwrite)


_META_FILES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as e:
        raise ProblemError(f"{what}: unreadable metadata {path} ({e})") from None
    if not isinstance(doc, dict):
        raise ProblemError(f"{what}: metadata {path} is not a JSON object")
    return doc


def _chunk_layout(meta: dict, v3: bool) -> tuple[tuple[int, ...], tuple[int, ...], str, str]:
    """Shape, chunk (or shard) shape, key prefix and separator of one array's chunk files."""
    shape = tuple(int(s) for s in meta.get("shape", ()))
    if v3:
        chunks = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", shape)
        enc = meta.get("chunk_key_encoding", {"name": "default"})
        conf = enc.get("configuration") or {}
        if enc.get("name") == "v2":
            return shape, tuple(chunks), "", conf.get("separator", ".")
        return shape, tuple(chunks), "c", conf.get("separator", "/")
    return shape, tuple(meta.get("chunks", shape)), "", meta.get("dimension_separator") or "."


def _expected_keys(shape, chunks, prefix: str, sep: str) -> list[str]:
    grid = [-(-s // max(int(c), 1)) for s, c in zip(shape, chunks)]
    if not shape:
        return [prefix or "0"]
    keys = []
    for idx in itertools.product(*(range(g) for g in grid)):
        parts = ([prefix] if prefix else []) + [str(i) for i in idx]
        keys.append(sep.join(parts))
    return keys


def _present_keys(adir: str) -> set[str]:
    out = set()
    for d, _, files in os.walk(adir):
        rel = os.path.relpath(d, adir)
        for f in files:
            if f in _META_FILES:
                continue
            key = f if rel == "." else os.path.join(rel, f)
            out.add(key.replace(os.sep, "/"))
    return out


def check_store(path: str | os.PathLike) -> None:
    """Check that a Zarr directory store holds every chunk file its arrays' metadata promise.

    A missing chunk file (a partial copy, a failed transfer) would otherwise be read as the
    array's fill value: silently zero data. Zarr v3 (what :func:`save_problem` writes) and v2
    directory stores are checked; :func:`save_problem` writes every chunk, even one of fill
    values only, so a missing file always means loss.

    Raises
    ------
    ProblemError
        Naming the array and its missing chunk files, or the missing metadata file.
    """
    path = os.fspath(path)
    v3 = os.path.isfile(os.path.join(path, "zarr.json"))
    if not v3 and not any(os.path.isfile(os.path.join(path, f)) for f in (".zgroup", ".zmetadata")):
        raise ProblemError(f"{path}: not a Zarr store (no zarr.json, .zgroup or .zmetadata at its "
                           f"root); a damaged or partial copy?")
    mfile = "zarr.json" if v3 else ".zarray"
    consolidated: dict[str, dict] = {}
    if v3:
        root = _read_json(os.path.join(path, "zarr.json"), "store root")
        cm = root.get("consolidated_metadata") or {}
        for name, meta in (cm.get("metadata") or {}).items():
            if isinstance(meta, dict) and meta.get("node_type") == "array":
                consolidated[name] = meta
    elif os.path.isfile(os.path.join(path, ".zmetadata")):
        zm = _read_json(os.path.join(path, ".zmetadata"), "store root").get("metadata") or {}
        for key, meta in zm.items():
            if key.endswith("/.zarray"):
                consolidated[key[: -len("/.zarray")]] = meta
    arrays: dict[str, dict] = {}
    for name in consolidated:
        adir = os.path.join(path, *name.split("/"))
        if not os.path.isfile(os.path.join(adir, mfile)):
            raise ProblemError(f"{name}: array metadata {name}/{mfile} is missing from the store "
                               f"{path} (a damaged or partial copy)")
    for d in sorted(os.listdir(path)):
        adir = os.path.join(path, d)
        if d.startswith(".") or not os.path.isdir(adir):
            continue
        mpath = os.path.join(adir, mfile)
        if os.path.isfile(mpath):
            meta = _read_json(mpath, d)
            if not v3 or meta.get("node_type") == "array":
                arrays[d] = meta
        elif not v3 and os.path.isfile(os.path.join(adir, ".zgroup")):
            continue
        elif _present_keys(adir):
            raise ProblemError(f"{d}: array metadata {d}/{mfile} is missing from the store "
                               f"{path} (a damaged or partial copy)")
    for name, meta in {**consolidated, **arrays}.items():
        adir = os.path.join(path, *name.split("/"))
        shape, chunks, prefix, sep = _chunk_layout(meta, v3)
        expected = _expected_keys(shape, chunks, prefix, sep)
        present = _present_keys(adir)
        missing = [k for k in expected if k not in present]
        if missing:
            shown = ", ".join(f"{name}/{k}" for k in missing[:3]) + (", ..." if len(missing) > 3
                                                                     else "")
            raise ProblemError(f"{name}: {len(missing)} of {len(expected)} chunk files missing "
                               f"from the store {path} ({shown}); a partial copy or failed "
                               f"transfer, which would read as fill values (a store written "
                               f"by to_zarr without write_empty_chunks=True also lacks chunks "
                               f"of fill values only: rewrite it with xf.save_problem)")


def open_problem(path: str | os.PathLike, chunks=None, validate_problem: bool = True) -> xr.Dataset:
    """Open a problem stored in Zarr.

    Parameters
    ----------
    path : str or path-like
    chunks : None, dict or "auto"
        ``None`` loads into memory (numpy); a dict gives dask arrays with those chunks.
    validate_problem : bool
        Run :func:`validate` (default). The store's completeness (:func:`check_store`: every
        array's metadata and chunk files present) is checked either way.

    Raises
    ------
    FileNotFoundError
        No store at ``path``.
    ProblemError
        A damaged store (missing metadata or chunk files, naming the variable) or, with
        ``validate_problem``, a problem that does not validate.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no Zarr store at {path}")
    if os.path.isdir(path):
        check_store(path)
    ds = xr.open_zarr(path, chunks=chunks, consolidated=None)
    if chunks is None:
        ds = ds.load()
    from ._store import MARK

    ds.attrs.pop(MARK, None)    # how the store was written, not part of the problem
    if validate_problem:
        validate(ds)
    return ds
