"""OGIP ancillary (ARF) and redistribution (RMF) response files.

Readers return labelled :class:`xarray.DataArray` objects; writers produce files that standard
tools (XSPEC, Sherpa, gammapy, jaxspec) read. The formats are those of the OGIP memo
CAL/GEN/92-002 (and its addendum 92-002a):

* ARF — a binary table ``SPECRESP`` with columns ``ENERG_LO``, ``ENERG_HI`` (keV) and
  ``SPECRESP`` (cm²), ``HDUCLAS1 = 'RESPONSE'``, ``HDUCLAS2 = 'SPECRESP'``.
* RMF — a binary table ``MATRIX`` (or ``SPECRESP MATRIX`` when the effective area is folded in)
  with ``ENERG_LO``, ``ENERG_HI``, ``N_GRP``, ``F_CHAN``, ``N_CHAN``, ``MATRIX``: row *i* holds the
  non-zero runs ("groups") of the redistribution of a photon of true energy bin *i*, each run
  starting at channel ``F_CHAN`` and ``N_CHAN`` channels long, their values concatenated in
  ``MATRIX``; plus a table ``EBOUNDS`` giving each channel's nominal energy range
  (``CHANNEL``, ``E_MIN``, ``E_MAX``). Channel numbers start at ``TLMIN`` of the ``F_CHAN``
  column (0 for XMM-Newton/EPIC and XRISM, 1 for many older missions).
* PHA — a type I spectrum, binary table ``SPECTRUM`` with ``CHANNEL`` and ``COUNTS`` (or
  ``RATE``), keywords ``EXPOSURE``, ``BACKSCAL``, ``AREASCAL`` (each keyword or column), optional
  ``QUALITY`` / ``GROUPING`` (OGIP/92-007); background spectra have ``HDUCLAS2 = 'BKG'``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
from astropy.io import fits

from ._fits import (
    FileFormatError,
    check_edges,
    column,
    column_index,
    column_unit,
    find_tables,
    fspath,
    get_table,
    hdu_names,
    open_fits,
    to_unit,
    write_atomic,
)

__all__ = ["read_arf", "write_arf", "read_rmf", "write_rmf", "rmf_extensions", "read_pha",
           "write_pha", "read_ebounds"]

MATRIX_NAMES = ("MATRIX", "SPECRESP MATRIX")
#: Column sums of a redistribution matrix above this are taken to include an effective area.
AREA_SUM_THRESHOLD = 1.01
#: Negative RMF entries no larger in size than this fraction of the matrix's largest entry are
#: rounding noise: :func:`read_rmf` sets them to 0 with a warning. Larger ones are refused.
RMF_NEGATIVE_TOLERANCE = 1e-3


def _energy_coords(lo: np.ndarray, hi: np.ndarray, dim: str = "energy_true") -> dict:
    return {
        dim: (dim, 0.5 * (lo + hi), {"units": "keV", "long_name": "true energy (bin centre)"}),
        "energy_lo": (dim, lo, {"units": "keV"}),
        "energy_hi": (dim, hi, {"units": "keV"}),
    }


def _meta(header, path: str) -> dict:
    return {
        "telescope": str(header.get("TELESCOP", "")),
        "instrument": str(header.get("INSTRUME", "")),
        "filter": str(header.get("FILTER", "")),
        "filename": path,
    }


# --------------------------------------------------------------------------------------- ARF
def read_arf(path) -> xr.DataArray:
    """Read an OGIP ancillary response file (effective area versus true energy).

    Parameters
    ----------
    path : str or path-like
        The ARF. The extension is found by ``EXTNAME = 'SPECRESP'`` or, failing that, by
        ``HDUCLAS2 = 'SPECRESP'``.

    Returns
    -------
    xarray.DataArray
        Dims ``('energy_true',)``, values in cm²; coords ``energy_true`` (bin centres),
        ``energy_lo``, ``energy_hi`` (keV); attrs ``units``, ``telescope``, ``instrument``,
        ``filter``, ``filename``.

    Raises
    ------
    FileFormatError
        A truncated or corrupt file, missing extension or column, units that are not energy /
        area, bins that do not increase, negative or non-finite areas (the message counts them
        and gives the first energy).

    Notes
    -----
    Energies in eV or MeV and areas in m² are converted. Columns without ``TUNIT`` are taken as
    keV and cm² (the OGIP defaults).
    """
    path = fspath(path)
    with open_fits(path) as hdul:
        hdu = get_table(hdul, path, ("SPECRESP",), "SPECRESP (ARF)", hduclas=("SPECRESP",))
        lo = to_unit(column(hdu, "ENERG_LO", path), column_unit(hdu, "ENERG_LO"), "keV", "keV",
                     path, "column ENERG_LO")
        hi = to_unit(column(hdu, "ENERG_HI", path), column_unit(hdu, "ENERG_HI"), "keV", "keV",
                     path, "column ENERG_HI")
        area = to_unit(column(hdu, "SPECRESP", path), column_unit(hdu, "SPECRESP"), "cm2",
                       "cm2", path, "column SPECRESP")
        meta = _meta(hdu.header, path)
    check_edges(lo, hi, path, "SPECRESP (ENERG_LO, ENERG_HI)")
    bad = ~np.isfinite(area)
    if bad.any():
        i = int(np.argmax(bad))
        raise FileFormatError(f"{path}: column SPECRESP has {int(bad.sum())} non-finite effective "
                              f"areas (the first at {lo[i]:.6g}–{hi[i]:.6g} keV)")
    if (area < 0).any():
        i = int(np.argmin(area))
        raise FileFormatError(f"{path}: column SPECRESP has {int((area < 0).sum())} negative "
                              f"effective areas (min {area[i]:.6g} cm2 at {lo[i]:.6g}–{hi[i]:.6g} "
                              f"keV)")
    return xr.DataArray(area, dims=("energy_true",), coords=_energy_coords(lo, hi),
                        name="specresp", attrs={"units": "cm2", **meta})


def write_arf(
    path,
    energ_lo: Sequence[float],
    energ_hi: Sequence[float],
    specresp: Sequence[float],
    telescope: str = "",
    instrument: str = "",
    filter: str = "NONE",
    overwrite: bool = False,
) -> str:
    """Write an OGIP ARF (``SPECRESP`` extension), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    energ_lo, energ_hi : array_like (n,)
        True-energy bin edges in keV.
    specresp : array_like (n,)
        Effective area in cm².
    telescope, instrument, filter : str
        ``TELESCOP``, ``INSTRUME``, ``FILTER`` keywords.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.
    """
    lo, hi = np.asarray(energ_lo, float), np.asarray(energ_hi, float)
    area = np.asarray(specresp, float)
    if not (lo.shape == hi.shape == area.shape) or lo.ndim != 1:
        raise ValueError(f"energ_lo, energ_hi, specresp must be 1-D of one length, got "
                         f"{lo.shape}, {hi.shape}, {area.shape}")
    check_edges(lo, hi, fspath(path), "energ_lo/energ_hi")
    cols = [
        fits.Column("ENERG_LO", "E", unit="keV", array=lo),
        fits.Column("ENERG_HI", "E", unit="keV", array=hi),
        fits.Column("SPECRESP", "E", unit="cm**2", array=area),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECRESP")
    h = hdu.header
    for k, v in (("TELESCOP", telescope), ("INSTRUME", instrument), ("FILTER", filter),
                 ("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "SPECRESP"),
                 ("HDUVERS", "1.1.0"), ("ARFVERSN", "1992a")):
        h[k] = v
    return write_atomic(fits.HDUList([_primary(telescope, instrument), hdu]), path, overwrite)


def _primary(telescope: str, instrument: str) -> fits.PrimaryHDU:
    p = fits.PrimaryHDU()
    p.header["TELESCOP"] = telescope
    p.header["INSTRUME"] = instrument
    p.header["CREATOR"] = "xfusion.io"
    return p


# --------------------------------------------------------------------------------------- RMF
def rmf_extensions(path) -> list[tuple[int, str]]:
    """List the matrix extensions of an RMF as ``(HDU index, EXTNAME)`` pairs, in file order."""
    path = fspath(path)
    with open_fits(path) as hdul:
        return [(i, str(hdul[i].header.get("EXTNAME", ""))) for i in
                find_tables(hdul, MATRIX_NAMES, ("RSP_MATRIX",))]


def _select_matrix(hdul: fits.HDUList, path: str, extension) -> fits.BinTableHDU:
    idx = find_tables(hdul, MATRIX_NAMES, ("RSP_MATRIX",))
    idx = [i for i in idx if str(hdul[i].header.get("EXTNAME", "")).upper() != "EBOUNDS"]
    if not idx:
        raise FileFormatError(
            f"{path}: no redistribution matrix extension (looked for EXTNAME 'MATRIX' or "
            f"'SPECRESP MATRIX', or HDUCLAS2 'RSP_MATRIX'); the file has {hdu_names(hdul)}"
        )
    if extension is None:
        return hdul[idx[0]]
    if isinstance(extension, (int, np.integer)) and not isinstance(extension, bool):
        if int(extension) not in idx:
            raise FileFormatError(f"{path}: HDU {extension} is not a matrix extension (matrix "
                                  f"extensions are HDUs {idx})")
        return hdul[int(extension)]
    if isinstance(extension, tuple):
        name, ver = extension
    else:
        name, ver = extension, None
    for i in idx:
        h = hdul[i].header
        if str(h.get("EXTNAME", "")).upper() == str(name).upper() and (
            ver is None or int(h.get("EXTVER", 1)) == int(ver)
        ):
            return hdul[i]
    have = [(hdul[i].header.get("EXTNAME"), hdul[i].header.get("EXTVER", 1)) for i in idx]
    raise FileFormatError(f"{path}: no matrix extension {extension!r} (the file has {have})")


def _as_rows(col, n_rows: int, name: str, path: str) -> list[np.ndarray]:
    """Per-row 1-D integer/float arrays from a scalar, fixed-length or variable-length column."""
    arr = col
    if isinstance(arr, np.ndarray) and arr.dtype != object and arr.ndim == 1:
        return [np.atleast_1d(v) for v in arr]
    if isinstance(arr, np.ndarray) and arr.dtype != object and arr.ndim == 2:
        return list(arr)
    if hasattr(arr, "__len__") and len(arr) == n_rows:
        return [np.atleast_1d(np.asarray(v)) for v in arr]
    raise FileFormatError(f"{path}: column {name} has an unreadable layout")


def _integers(values, name: str, path: str, ext: str, row: int | None = None) -> np.ndarray:
    """``values`` as int, refusing NaN, non-integer and negative values by name."""
    v = np.asarray(values)
    where = f"{ext} column {name}" + ("" if row is None else f" row {row}")
    if v.dtype.kind == "f" and not (np.isfinite(v).all() and (v == np.round(v)).all()):
        raise FileFormatError(f"{path}: {where} has values that are not integers (NaN or "
                              f"fractional)")
    if v.dtype.kind not in "fiub":
        raise FileFormatError(f"{path}: {where} has dtype {v.dtype}, not integers")
    if v.size and v.min() < 0:
        raise FileFormatError(f"{path}: {where} has negative values (min {v.min()})")
    return v.astype(np.int64)


def _matrix_columns(hdu: fits.BinTableHDU, path: str):
    """Number of rows, true-energy edges (keV) and the grouped ``N_GRP``, ``F_CHAN``,
    ``N_CHAN``, ``MATRIX`` columns of a matrix extension (refusing one without rows)."""
    n_rows = len(hdu.data) if hdu.data is not None else 0
    if n_rows == 0:
        raise FileFormatError(f"{path}: matrix extension {hdu.name!r} has no rows")
    lo = to_unit(column(hdu, "ENERG_LO", path), column_unit(hdu, "ENERG_LO"), "keV", "keV",
                 path, f"{hdu.name} column ENERG_LO")
    hi = to_unit(column(hdu, "ENERG_HI", path), column_unit(hdu, "ENERG_HI"), "keV", "keV",
                 path, f"{hdu.name} column ENERG_HI")
    check_edges(lo, hi, path, f"{hdu.name} (ENERG_LO, ENERG_HI)")
    n_grp = _integers(column(hdu, "N_GRP", path), "N_GRP", path, hdu.name).ravel()
    f_chan = _as_rows(column(hdu, "F_CHAN", path), n_rows, "F_CHAN", path)
    n_chan = _as_rows(column(hdu, "N_CHAN", path), n_rows, "N_CHAN", path)
    mat = _as_rows(column(hdu, "MATRIX", path), n_rows, "MATRIX", path)
    return n_rows, lo, hi, n_grp, f_chan, n_chan, mat


def _ebounds(eb: fits.BinTableHDU, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel numbers and their nominal bounds ``E_MIN``, ``E_MAX`` (keV) from ``EBOUNDS``."""
    ch = np.asarray(column(eb, "CHANNEL", path))
    if ch.dtype.kind == "f" and not np.isfinite(ch).all():
        raise FileFormatError(f"{path}: EBOUNDS column CHANNEL has NaN values")
    ch = ch.astype(int)
    e_min = to_unit(column(eb, "E_MIN", path), column_unit(eb, "E_MIN"), "keV", "keV", path,
                    "EBOUNDS column E_MIN")
    e_max = to_unit(column(eb, "E_MAX", path), column_unit(eb, "E_MAX"), "keV", "keV", path,
                    "EBOUNDS column E_MAX")
    bad = ~(np.isfinite(e_min) & np.isfinite(e_max))
    if bad.any():
        raise FileFormatError(f"{path}: EBOUNDS columns E_MIN/E_MAX have {int(bad.sum())} "
                              f"non-finite values (first at channel {ch[np.argmax(bad)]})")
    if (e_max < e_min).any():
        k = int(np.argmax(e_max < e_min))
        raise FileFormatError(f"{path}: EBOUNDS channel {ch[k]} has E_MAX {e_max[k]:.6g} < "
                              f"E_MIN {e_min[k]:.6g} keV")
    return ch, e_min, e_max


def _first_channel(hdu: fits.BinTableHDU, ch: np.ndarray, path: str) -> int:
    """First channel number: ``TLMIN`` of ``F_CHAN``, else the first ``EBOUNDS`` channel, else 1.

    Warns (at :func:`read_rmf`'s caller) when ``TLMIN`` and ``EBOUNDS`` disagree.
    """
    h = hdu.header
    tl = f"TLMIN{column_index(hdu, 'F_CHAN')}"
    if tl in h:
        first = int(h[tl])
    elif len(ch):
        first = int(ch[0])
    else:
        first = 1
    if len(ch) and int(ch[0]) != first:
        warnings.warn(f"{path}: {tl} = {first} but EBOUNDS starts at channel {ch[0]}; "
                      f"using {tl}", UserWarning, stacklevel=3)
    return first


def _dense_matrix(n_rows: int, detchans: int, dtype, n_grp: np.ndarray, f_chan, n_chan, mat,
                  first: int, path: str, ext: str) -> np.ndarray:
    """The dense (n_rows, detchans) matrix from its channel groups, checking each group."""
    dense = np.zeros((n_rows, detchans), dtype=dtype)
    for i in range(n_rows):
        g = n_grp[i]
        if g <= 0:
            continue
        fc = _integers(f_chan[i], "F_CHAN", path, ext, i)
        nc = _integers(n_chan[i], "N_CHAN", path, ext, i)
        m = mat[i]
        if len(fc) < g or len(nc) < g:
            raise FileFormatError(f"{path}: {ext} row {i} has N_GRP = {g} but only {len(fc)} "
                                  f"F_CHAN / {len(nc)} N_CHAN entries")
        pos = 0
        for k in range(g):
            start, n = int(fc[k]) - first, int(nc[k])
            if start < 0 or start + n > detchans:
                raise FileFormatError(
                    f"{path}: {ext} row {i} group {k} covers channels {int(fc[k])}.."
                    f"{int(fc[k]) + n - 1}, outside {first}..{first + detchans - 1}"
                )
            if pos + n > len(m):
                raise FileFormatError(f"{path}: {ext} row {i} has {len(m)} MATRIX values, fewer "
                                      f"than its groups need")
            dense[i, start:start + n] = m[pos:pos + n]
            pos += n
    return dense


def _check_matrix_values(dense: np.ndarray, path: str, ext: str) -> None:
    """Refuse non-finite values and negative values beyond :data:`RMF_NEGATIVE_TOLERANCE`;
    set smaller negative values to 0 in place, warning (at :func:`read_rmf`'s caller)."""
    bad = ~np.isfinite(dense)
    if bad.any():
        raise FileFormatError(f"{path}: {ext} column MATRIX has {int(bad.sum())} NaN or infinite "
                              f"values (the first in row {int(np.argmax(bad.any(axis=1)))})")
    neg = dense < 0
    if neg.any():
        worst, peak = float(dense.min()), float(np.abs(dense).max())
        what = (f"{ext} column MATRIX has {int(neg.sum())} negative values (the most negative "
                f"{worst:.3g}, the largest value {peak:.3g})")
        if -worst > RMF_NEGATIVE_TOLERANCE * peak:
            raise FileFormatError(f"{path}: {what}, beyond RMF_NEGATIVE_TOLERANCE = "
                                  f"{RMF_NEGATIVE_TOLERANCE:g} of the largest value")
        warnings.warn(f"{path}: {what}, within RMF_NEGATIVE_TOLERANCE = "
                      f"{RMF_NEGATIVE_TOLERANCE:g} of the largest value; set to 0",
                      UserWarning, stacklevel=3)
        dense[neg] = 0


def read_rmf(path, extension=None, dtype=np.float64) -> xr.DataArray:
    """Read an OGIP redistribution matrix as a dense (energy_true, channel) DataArray.

    Parameters
    ----------
    path : str or path-like
        The RMF (or RSP).
    extension : None, int, str or (str, int)
        Which matrix extension to read when the file has several: ``None`` (default) takes the
        first one in file order; an int is an HDU index; a str an EXTNAME (``'MATRIX'``,
        ``'SPECRESP MATRIX'``); a tuple ``(EXTNAME, EXTVER)``. :func:`rmf_extensions` lists them.
    dtype : numpy dtype
        Dtype of the dense matrix (float64 by default; float32 halves the memory).

    Returns
    -------
    xarray.DataArray
        Dims ``('energy_true', 'channel')``: the probability that a photon in true-energy bin
        *i* is recorded in channel *k* (or, for a ``SPECRESP MATRIX`` with the area folded in,
        area × probability in cm²). Coords: ``energy_true`` (centres), ``energy_lo``,
        ``energy_hi`` (keV); ``channel`` (the channel *numbers*, starting at the ``TLMIN`` of
        ``F_CHAN``), ``e_min``, ``e_max`` (keV, from ``EBOUNDS``). Attrs: ``telescope``,
        ``instrument``, ``filename``, ``extension``, ``first_channel``, ``hduclas3``,
        ``includes_area`` (True for ``HDUCLAS3 = 'FULL'`` or column sums above
        :data:`AREA_SUM_THRESHOLD`).

    Raises
    ------
    FileFormatError
        A truncated or corrupt file, no matrix or ``EBOUNDS`` extension, missing columns, wrong
        units, NaN or infinite matrix values or channel bounds, ``E_MAX < E_MIN``, negative or
        non-integer ``N_GRP``/``F_CHAN``/``N_CHAN``, a group that runs past the last channel,
        inconsistent channel counts, or negative matrix values beyond
        :data:`RMF_NEGATIVE_TOLERANCE` of the largest value.

    Warns
    -----
    UserWarning
        Negative matrix values no larger in size than :data:`RMF_NEGATIVE_TOLERANCE` times the
        largest value (rounding noise): they are set to 0; the message names the file, counts
        them and gives the most negative.

    Notes
    -----
    ``F_CHAN``, ``N_CHAN`` and ``MATRIX`` may be scalars, fixed-length or variable-length
    arrays. The first channel number is ``TLMIN`` of ``F_CHAN`` when present, else the first
    ``CHANNEL`` of ``EBOUNDS``, else 1 (the OGIP default). The dense matrix has
    ``n_energy × DETCHANS`` entries: an EPIC-pn RMF (4096 channels) is ~100 MB in float64.
    """
    path = fspath(path)
    with open_fits(path) as hdul:
        hdu = _select_matrix(hdul, path, extension)
        eb = get_table(hdul, path, ("EBOUNDS",), "EBOUNDS", hduclas=("EBOUNDS",))
        h = hdu.header
        n_rows, lo, hi, n_grp, f_chan, n_chan, mat = _matrix_columns(hdu, path)
        ch, e_min, e_max = _ebounds(eb, path)
        detchans = int(h.get("DETCHANS", len(ch)))
        if len(ch) != detchans:
            raise FileFormatError(f"{path}: EBOUNDS has {len(ch)} channels but {hdu.name} "
                                  f"DETCHANS = {detchans}")
        first = _first_channel(hdu, ch, path)
        meta = _meta(h, path)
        hduclas3 = str(h.get("HDUCLAS3", "")).strip().upper()
        ext = str(h.get("EXTNAME", ""))

    dense = _dense_matrix(n_rows, detchans, dtype, n_grp, f_chan, n_chan, mat, first, path, ext)
    _check_matrix_values(dense, path, ext)
    sums = dense.sum(axis=1)
    includes_area = hduclas3 == "FULL" or bool(sums.max() > AREA_SUM_THRESHOLD)
    coords = _energy_coords(lo, hi)
    coords.update({
        "channel": ("channel", np.arange(first, first + detchans)),
        "e_min": ("channel", e_min, {"units": "keV"}),
        "e_max": ("channel", e_max, {"units": "keV"}),
    })
    return xr.DataArray(
        dense, dims=("energy_true", "channel"), coords=coords, name="matrix",
        attrs={**meta, "extension": ext, "first_channel": first, "hduclas3": hduclas3,
               "includes_area": includes_area, "units": "cm2" if includes_area else ""},
    )


def _groups(row: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(start, length) of runs of entries above ``threshold`` in ``row``."""
    keep = np.abs(row) > threshold
    if not keep.any():
        return []
    d = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def _objects(rows: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array holding one array per row (for variable-length FITS columns)."""
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        out[i] = r
    return out


def _grouped_columns(M: np.ndarray, threshold: float, first_channel: int,
                     variable_length: bool) -> tuple[np.ndarray, list[fits.Column]]:
    """``N_GRP`` and the ``F_CHAN``, ``N_CHAN``, ``MATRIX`` columns of the grouped layout."""
    n_e, n_c = M.shape
    groups = [_groups(M[i], threshold) for i in range(n_e)]
    n_grp = np.array([len(g) for g in groups], dtype=np.int16 if n_c < 32768 else np.int32)
    fch = [np.array([s + first_channel for s, _ in g], dtype=np.int32) for g in groups]
    nch = [np.array([n for _, n in g], dtype=np.int32) for g in groups]
    val = [np.concatenate([M[i, s:s + n] for s, n in g]).astype(np.float32) if g else
           np.zeros(0, np.float32) for i, g in enumerate(groups)]
    if variable_length:
        return n_grp, [
            fits.Column("F_CHAN", "PJ()", array=_objects(fch)),
            fits.Column("N_CHAN", "PJ()", array=_objects(nch)),
            fits.Column("MATRIX", "PE()", array=_objects(val)),
        ]
    gmax = max(1, int(n_grp.max()) if n_e else 1)
    vmax = max(1, max((v.size for v in val), default=1))
    F = np.zeros((n_e, gmax), np.int32)
    N = np.zeros((n_e, gmax), np.int32)
    V = np.zeros((n_e, vmax), np.float32)
    for i in range(n_e):
        F[i, :fch[i].size] = fch[i]
        N[i, :nch[i].size] = nch[i]
        V[i, :val[i].size] = val[i]
    return n_grp, [fits.Column("F_CHAN", f"{gmax}J", array=F),
                   fits.Column("N_CHAN", f"{gmax}J", array=N),
                   fits.Column("MATRIX", f"{vmax}E", array=V)]


def _matrix_hdu(lo: np.ndarray, hi: np.ndarray, M: np.ndarray, first_channel: int,
                threshold: float, extname: str, variable_length: bool,
                keys: tuple) -> fits.BinTableHDU:
    """The matrix extension of :func:`write_rmf`, with the common keywords ``keys``."""
    n_c = M.shape[1]
    n_grp, cols = _grouped_columns(M, threshold, first_channel, variable_length)
    cols = [
        fits.Column("ENERG_LO", "E", unit="keV", array=lo),
        fits.Column("ENERG_HI", "E", unit="keV", array=hi),
        fits.Column("N_GRP", "I" if n_grp.dtype == np.int16 else "J", array=n_grp),
        *cols,
    ]
    mhdu = fits.BinTableHDU.from_columns(cols, name=extname.upper())
    h = mhdu.header
    full = extname.upper() == "SPECRESP MATRIX"
    for k, v in (*keys, ("HDUCLAS2", "RSP_MATRIX"),
                 ("HDUCLAS3", "FULL" if full else "REDIST"), ("HDUVERS", "1.3.0"),
                 ("LO_THRES", float(threshold))):
        h[k] = v
    i_f = column_index(mhdu, "F_CHAN")
    h[f"TLMIN{i_f}"] = int(first_channel)
    h[f"TLMAX{i_f}"] = int(first_channel + n_c - 1)
    return mhdu


def _ebounds_hdu(emin: np.ndarray, emax: np.ndarray, first_channel: int,
                 keys: tuple) -> fits.BinTableHDU:
    """The ``EBOUNDS`` extension of :func:`write_rmf`, with the common keywords ``keys``."""
    n_c = emin.size
    ch = np.arange(first_channel, first_channel + n_c, dtype=np.int32)
    ehdu = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "J", array=ch),
        fits.Column("E_MIN", "E", unit="keV", array=emin),
        fits.Column("E_MAX", "E", unit="keV", array=emax),
    ], name="EBOUNDS")
    eh = ehdu.header
    for k, v in (*keys, ("HDUCLAS2", "EBOUNDS"), ("HDUVERS", "1.2.0")):
        eh[k] = v
    eh["TLMIN1"] = int(first_channel)
    eh["TLMAX1"] = int(first_channel + n_c - 1)
    return ehdu


def write_rmf(
    path,
    energ_lo: Sequence[float],
    energ_hi: Sequence[float],
    matrix,
    e_min: Sequence[float],
    e_max: Sequence[float],
    first_channel: int = 1,
    telescope: str = "",
    instrument: str = "",
    filter: str = "NONE",
    threshold: float = 0.0,
    extname: str = "MATRIX",
    variable_length: bool = True,
    overwrite: bool = False,
) -> str:
    """Write an OGIP RMF (``MATRIX`` + ``EBOUNDS``) in the compact grouped layout, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    energ_lo, energ_hi : array_like (n_energy,)
        True-energy bin edges (keV).
    matrix : array_like (n_energy, n_channel)
        Redistribution probabilities (rows: true energy; columns: channels).
    e_min, e_max : array_like (n_channel,)
        Nominal channel energy bounds (keV) for ``EBOUNDS``.
    first_channel : int
        Number of the first channel (``TLMIN`` of ``F_CHAN``): 0 or 1 in practice.
    telescope, instrument, filter : str
        Header keywords.
    threshold : float
        Entries with ``|value| <= threshold`` are not stored (``LO_THRES``).
    extname : {'MATRIX', 'SPECRESP MATRIX'}
        Name of the matrix extension; ``'SPECRESP MATRIX'`` marks ``HDUCLAS3 = 'FULL'``
        (area included).
    variable_length : bool
        Store ``F_CHAN``, ``N_CHAN``, ``MATRIX`` as variable-length arrays (default, compact);
        False writes fixed-length arrays padded to the longest row.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.
    """
    lo, hi = np.asarray(energ_lo, float), np.asarray(energ_hi, float)
    M = np.asarray(matrix, float)
    emin, emax = np.asarray(e_min, float), np.asarray(e_max, float)
    if M.ndim != 2 or M.shape != (lo.size, emin.size):
        raise ValueError(f"matrix must have shape (n_energy, n_channel) = ({lo.size}, "
                         f"{emin.size}), got {M.shape}")
    check_edges(lo, hi, fspath(path), "energ_lo/energ_hi")
    if extname.upper() not in MATRIX_NAMES:
        raise ValueError(f"extname must be one of {MATRIX_NAMES}, got {extname!r}")
    n_c = M.shape[1]
    keys = (("TELESCOP", telescope), ("INSTRUME", instrument), ("FILTER", filter),
            ("CHANTYPE", "PI"), ("DETCHANS", n_c), ("HDUCLASS", "OGIP"),
            ("HDUCLAS1", "RESPONSE"))
    mhdu = _matrix_hdu(lo, hi, M, first_channel, threshold, extname, variable_length, keys)
    ehdu = _ebounds_hdu(emin, emax, first_channel, keys)
    hdul = fits.HDUList([_primary(telescope, instrument), mhdu, ehdu])
    return write_atomic(hdul, path, overwrite)


# --------------------------------------------------------------------------------------- PHA
def read_ebounds(path) -> xr.DataArray:
    """Read only the ``EBOUNDS`` extension (channel energies) of an RMF or PHA file.

    Cheaper than :func:`read_rmf` for a large response (a Resolve RMF has 60 000 channels:
    its dense matrix does not fit, its ``EBOUNDS`` does).

    Returns
    -------
    xarray.DataArray
        The channel numbers (dims ``('channel',)``) with coords ``e_min``, ``e_max`` (keV);
        attrs ``filename``.

    Raises
    ------
    FileFormatError
        No ``EBOUNDS`` extension, missing columns, non-finite or reversed bounds.
    """
    path = fspath(path)
    with open_fits(path) as hdul:
        eb = get_table(hdul, path, ("EBOUNDS",), "EBOUNDS", hduclas=("EBOUNDS",))
        ch, e_min, e_max = _ebounds(eb, path)
    return xr.DataArray(ch, dims=("channel",),
                        coords={"channel": ch, "e_min": ("channel", e_min, {"units": "keV"}),
                                "e_max": ("channel", e_max, {"units": "keV"})},
                        name="ebounds", attrs={"filename": path})


def _pha_scale(hdu: fits.BinTableHDU, name: str, n: int, path: str) -> tuple[np.ndarray, bool]:
    """``BACKSCAL`` / ``AREASCAL`` per channel: the column if there is one, else the keyword
    (1 when absent); and whether it was a column."""
    cols = [c.name.upper() for c in hdu.columns]
    if name in cols:
        v, per_channel = np.asarray(column(hdu, name, path), float).ravel(), True
    else:
        v, per_channel = np.full(n, float(hdu.header.get(name, 1.0))), False
    if v.shape != (n,):
        raise FileFormatError(f"{path}: column {name} has {v.size} values for {n} channels")
    if not np.isfinite(v).all() or (v <= 0).any():
        bad = ~np.isfinite(v) | (v <= 0)
        raise FileFormatError(f"{path}: {name} must be positive and finite, got "
                              f"{v[np.argmax(bad)]!r} ({int(bad.sum())} channels)")
    return v, per_channel


def _pha_counts(hdu: fits.BinTableHDU, exposure: float, path: str) -> tuple[np.ndarray, str]:
    """``COUNTS``, or ``RATE`` × ``EXPOSURE``, per channel (float64), and which it was."""
    cols = [c.name.upper() for c in hdu.columns]
    if "COUNTS" in cols:
        v, what = np.asarray(column(hdu, "COUNTS", path), float), "COUNTS"
    elif "RATE" in cols:
        unit = column_unit(hdu, "RATE")
        if unit and unit.strip().lower() not in ("count/s", "counts/s", "count s-1",
                                                   "counts s-1", "cts/s", "s-1", "1/s",
                                                   "s**-1", "count/sec"):
            raise FileFormatError(f"{path}: column RATE has unit {unit!r}; expected count/s")
        v, what = np.asarray(column(hdu, "RATE", path), float) * exposure, "RATE"
    else:
        raise FileFormatError(f"{path}: extension {hdu.name!r} has neither a COUNTS nor a RATE "
                              f"column (columns: {', '.join(cols)})")
    if v.ndim != 1:
        raise FileFormatError(f"{path}: column {what} holds {v.shape[0]} spectra (a type II "
                              f"PHA file); write the background spectrum as a type I file")
    bad = ~np.isfinite(v)
    if bad.any():
        raise FileFormatError(f"{path}: column {what} has {int(bad.sum())} non-finite values")
    if (v < 0).any():
        raise FileFormatError(f"{path}: column {what} has {int((v < 0).sum())} negative values "
                              f"(min {v.min():.6g}); a background spectrum is counts (is it a "
                              f"net, background-subtracted spectrum?)")
    return v, what


def read_pha(path) -> xr.DataArray:
    r"""Read an OGIP type I PHA spectrum (e.g. a background spectrum) as counts per channel.

    Parameters
    ----------
    path : str or path-like
        The PHA file. The spectrum is the extension ``SPECTRUM`` (or ``HDUCLAS1 =
        'SPECTRUM'``); its channel energies are the file's ``EBOUNDS`` extension if it has
        one (else give them to :func:`xfusion.io.background_spectrum`).

    Returns
    -------
    xarray.DataArray
        Counts (float64; ``RATE`` × ``EXPOSURE`` for a rate spectrum), dims ``('channel',)``
        with the channel numbers of ``CHANNEL``; coords ``backscal`` and ``areascal`` per
        channel (the columns, or the keywords repeated; 1 when absent, the OGIP default) and
        ``e_min``, ``e_max`` (keV) from ``EBOUNDS`` when present. Attrs ``exposure`` (s),
        ``backscal_column``, ``areascal_column`` (bool), ``column`` (``COUNTS`` or
        ``RATE``), ``hduclas2`` (``BKG``, ``TOTAL``, ...), ``telescope``, ``instrument``,
        ``filter``, ``filename``, ``bad_quality`` (channels with ``QUALITY`` > 0),
        ``grouped`` (whether a ``GROUPING`` column groups channels).

    Raises
    ------
    FileFormatError
        No spectrum extension, no ``CHANNEL`` or no ``COUNTS``/``RATE`` column, a type II file
        (several spectra), non-finite or negative counts, no positive ``EXPOSURE``,
        non-positive ``BACKSCAL`` / ``AREASCAL``, ``EBOUNDS`` channels that do not match.

    Notes
    -----
    ``GROUPING`` and ``QUALITY`` are not applied: every channel is read as it is (a background
    model is wanted per channel; grouping is for fitting statistics). ``bad_quality`` counts
    the flagged channels so that a caller can drop them. ``STAT_ERR`` / ``SYS_ERR`` are not
    read (the background is taken as known).
    """
    path = fspath(path)
    with open_fits(path) as hdul:
        hdu = get_table(hdul, path, ("SPECTRUM",), "SPECTRUM (PHA)", hduclas=("SPECTRUM",))
        h = hdu.header
        cols = [c.name.upper() for c in hdu.columns]
        exposure = h.get("EXPOSURE", hdul[0].header.get("EXPOSURE"))
        try:
            exposure = float(exposure)
        except (TypeError, ValueError):
            raise FileFormatError(f"{path}: no usable EXPOSURE keyword in {hdu.name!r} (got "
                                  f"{exposure!r})") from None
        if not np.isfinite(exposure) or exposure <= 0:
            raise FileFormatError(f"{path}: EXPOSURE must be positive, got {exposure!r}")
        ch = np.asarray(column(hdu, "CHANNEL", path))
        if ch.ndim != 1:
            raise FileFormatError(f"{path}: column CHANNEL holds {ch.shape[0]} spectra (a type "
                                  f"II PHA file); write the spectrum as a type I file")
        ch = ch.astype(int)
        counts, what = _pha_counts(hdu, exposure, path)
        backscal, bcol = _pha_scale(hdu, "BACKSCAL", ch.size, path)
        areascal, acol = _pha_scale(hdu, "AREASCAL", ch.size, path)
        if "QUALITY" in cols:
            bad_quality = int((np.asarray(column(hdu, "QUALITY", path)) > 0).sum())
        else:       # a QUALITY keyword holds for every channel
            bad_quality = ch.size if int(h.get("QUALITY", 0) or 0) > 0 else 0
        grouped = "GROUPING" in cols and bool(
            (np.asarray(column(hdu, "GROUPING", path)) == -1).any())
        meta = _meta(h, path)
        hduclas2 = str(h.get("HDUCLAS2", "")).strip().upper()
        ebounds = None
        if find_tables(hdul, ("EBOUNDS",), ("EBOUNDS",)):
            eb = get_table(hdul, path, ("EBOUNDS",), "EBOUNDS", hduclas=("EBOUNDS",))
            ebounds = _ebounds(eb, path)
    coords: dict = {"channel": ch, "backscal": ("channel", backscal),
                    "areascal": ("channel", areascal)}
    if ebounds is not None:
        ech, e_min, e_max = ebounds
        index = {int(c): i for i, c in enumerate(ech)}
        missing = [int(c) for c in ch if int(c) not in index]
        if missing:
            raise FileFormatError(f"{path}: EBOUNDS has no energies for {len(missing)} of the "
                                  f"spectrum's channels (e.g. channel {missing[0]})")
        sel = np.array([index[int(c)] for c in ch], dtype=int)
        coords["e_min"] = ("channel", e_min[sel], {"units": "keV"})
        coords["e_max"] = ("channel", e_max[sel], {"units": "keV"})
    return xr.DataArray(counts, dims=("channel",), coords=coords, name="counts",
                        attrs={"units": "counts", "exposure": exposure, "column": what,
                               "backscal_column": bcol, "areascal_column": acol,
                               "hduclas2": hduclas2, "bad_quality": bad_quality,
                               "grouped": grouped, **meta})


def write_pha(
    path,
    counts: Sequence[float],
    exposure: float,
    backscal=1.0,
    areascal=1.0,
    e_min: Sequence[float] | None = None,
    e_max: Sequence[float] | None = None,
    first_channel: int = 0,
    hduclas2: str = "BKG",
    telescope: str = "",
    instrument: str = "",
    filter: str = "NONE",
    overwrite: bool = False,
) -> str:
    """Write an OGIP type I PHA spectrum (``SPECTRUM``, and ``EBOUNDS`` if given), atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    counts : array_like (n,)
        Counts per channel (``COUNTS``, 64-bit real; ``POISSERR = T``).
    exposure : float
        ``EXPOSURE`` (s).
    backscal, areascal : float or array_like (n,)
        ``BACKSCAL`` / ``AREASCAL``: a keyword when scalar, a column per channel when an array.
    e_min, e_max : array_like (n,), optional
        Channel energies (keV) for an ``EBOUNDS`` extension.
    first_channel : int
        Number of the first channel (0 for EPIC and Resolve).
    hduclas2 : str
        ``'BKG'`` (a background spectrum, default), ``'TOTAL'`` or ``'NET'``.
    telescope, instrument, filter : str
        Header keywords.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.
    """
    c = np.asarray(counts, float)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {c.shape}")
    if not np.isfinite(exposure) or exposure <= 0:
        raise ValueError(f"exposure must be positive and finite, got {exposure!r}")
    n = c.size
    ch = np.arange(first_channel, first_channel + n, dtype=np.int32)
    cols = [fits.Column("CHANNEL", "J", array=ch),
            fits.Column("COUNTS", "D", unit="count", array=c)]
    keys = {}
    for name, v in (("BACKSCAL", backscal), ("AREASCAL", areascal)):
        a = np.asarray(v, float)
        if a.ndim == 0:
            keys[name] = float(a)
        elif a.shape == (n,):
            cols.append(fits.Column(name, "E", array=a))
        else:
            raise ValueError(f"{name.lower()} must be a number or {n} values, got shape "
                             f"{a.shape}")
    spec = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = spec.header
    h["TLMIN1"], h["TLMAX1"] = int(first_channel), int(first_channel + n - 1)
    for k, v in (("TELESCOP", telescope), ("INSTRUME", instrument), ("FILTER", filter),
                 ("EXPOSURE", float(exposure)), *keys.items(), ("CORRSCAL", 0.0),
                 ("CORRFILE", "none"), ("HDUCLASS", "OGIP"), ("HDUCLAS1", "SPECTRUM"),
                 ("HDUCLAS2", hduclas2.upper()), ("HDUCLAS3", "COUNT"),
                 ("HDUCLAS4", "TYPE:I"), ("HDUVERS", "1.2.1"), ("CHANTYPE", "PI"),
                 ("DETCHANS", n), ("POISSERR", True), ("SYS_ERR", 0), ("QUALITY", 0),
                 ("GROUPING", 0)):
        h[k] = v
    hdus = [_primary(telescope, instrument), spec]
    if (e_min is None) != (e_max is None):
        raise ValueError("give both e_min and e_max, or neither")
    if e_min is not None:
        lo, hi = np.asarray(e_min, float), np.asarray(e_max, float)
        if lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f"e_min, e_max must have {n} values, got {lo.shape}, {hi.shape}")
        keys_eb = (("TELESCOP", telescope), ("INSTRUME", instrument), ("FILTER", filter),
                   ("CHANTYPE", "PI"), ("DETCHANS", n), ("HDUCLASS", "OGIP"),
                   ("HDUCLAS1", "RESPONSE"))
        hdus.append(_ebounds_hdu(lo, hi, first_channel, keys_eb))
    return write_atomic(fits.HDUList(hdus), path, overwrite)
