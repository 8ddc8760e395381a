"""Private FITS helpers shared by the readers and writers of :mod:`xfusion.io`.

Everything here raises :class:`FileFormatError` with the file name and the fault in the message,
so a user who hands us a wrong file learns which one and why.
"""

from __future__ import annotations

import bz2
import gzip
import os
import warnings
from collections.abc import Iterable, Sequence

import astropy.units as u
import numpy as np
from astropy.io import fits

from .._atomic import atomic_path

__all__ = ["FileFormatError"]


class FileFormatError(ValueError):
    """A file that cannot be used as given; the message names the file and the fault."""


def fspath(path) -> str:
    """Return ``path`` as a string (accepts path-like objects)."""
    return os.fspath(path)


def open_fits(path) -> fits.HDUList:
    """Open a FITS file read-only, turning failures into :class:`FileFormatError`.

    Every header is read at once and the file is checked against them: a file shorter than its
    headers say (the data of an HDU cut short) or with bytes after its last complete HDU that are
    not padding (a header cut short) is refused as truncated or corrupt.
    """
    path = fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # the size checks below replace astropy's truncation / extra-bytes warnings
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            warnings.filterwarnings("ignore", message=".*truncated")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, IndexError) as exc:
        raise FileFormatError(f"{path}: not a readable FITS file ({exc})") from None
    try:
        _check_size(hdul, path)
    except BaseException:
        hdul.close()
        raise
    return hdul


def _check_size(hdul: fits.HDUList, path: str) -> None:
    """Refuse a file whose length does not match its headers (see :func:`open_fits`)."""
    if not len(hdul):
        raise FileFormatError(f"{path}: not a readable FITS file (no HDU)")
    compression = getattr(hdul.fileinfo(0)["file"], "compression", None)
    opener = {None: open, "gzip": gzip.open, "bzip2": bz2.open}.get(compression)
    if opener is None:
        return  # another compression: astropy's own checks only
    if compression is None:
        size = os.path.getsize(path)
    else:  # offsets refer to the decompressed stream
        size = 0
        try:
            with opener(path, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    size += len(chunk)
        except (EOFError, OSError) as exc:
            raise FileFormatError(f"{path}: truncated or corrupt {compression} file ({exc})"
                                  ) from None
    end = 0
    for i, h in enumerate(hdul):
        info = hdul.fileinfo(i)
        need = int(info["datLoc"]) + int(h.size)  # h.size: the data's bytes, unpadded
        if size < need:
            name = h.header.get("EXTNAME", "PRIMARY" if i == 0 else f"#{i}")
            raise FileFormatError(
                f"{path}: truncated or corrupt FITS file: HDU #{i} ({name}) needs {need} bytes "
                f"but the file has {size}"
            )
        end = int(info["datLoc"]) + int(info["datSpan"])
    if size > end:
        with opener(path, "rb") as fh:
            fh.seek(end)
            rest = fh.read()
        if rest.strip(b"\0 "):
            raise FileFormatError(
                f"{path}: truncated or corrupt FITS file: {len(rest)} bytes after the last "
                f"complete HDU (#{len(hdul) - 1}) are not a complete HDU"
            )


def hdu_names(hdul: fits.HDUList) -> list[str]:
    """EXTNAMEs of all HDUs (``'PRIMARY'`` for the first), for error messages."""
    return [str(h.header.get("EXTNAME", "PRIMARY" if i == 0 else f"#{i}")) for i, h in
            enumerate(hdul)]


def find_tables(hdul: fits.HDUList, names: Iterable[str] = (), hduclas: Iterable[str] = ()):
    """Indices of binary tables whose EXTNAME is in ``names`` or HDUCLAS1/2 in ``hduclas``."""
    names = {n.upper() for n in names}
    hduclas = {c.upper() for c in hduclas}
    out = []
    for i, h in enumerate(hdul):
        if not isinstance(h, fits.BinTableHDU):
            continue
        name = str(h.header.get("EXTNAME", "")).strip().upper()
        cls = {str(h.header.get(k, "")).strip().upper() for k in ("HDUCLAS1", "HDUCLAS2")}
        if name in names or cls & hduclas:
            out.append(i)
    return out


def get_table(hdul: fits.HDUList, path: str, names: Sequence[str], what: str,
              hduclas: Iterable[str] = ()) -> fits.BinTableHDU:
    """The first table HDU named one of ``names`` (or with HDUCLAS in ``hduclas``), else error."""
    idx = find_tables(hdul, names, hduclas)
    if not idx:
        raise FileFormatError(
            f"{path}: no {what} extension (looked for EXTNAME {' or '.join(map(repr, names))}); "
            f"the file has {hdu_names(hdul)}"
        )
    return hdul[idx[0]]


def column(hdu: fits.BinTableHDU, name: str, path: str):
    """Column ``name`` of a table HDU (case-insensitive), else :class:`FileFormatError`."""
    cols = [c.name.upper() for c in hdu.columns]
    if name.upper() not in cols:
        raise FileFormatError(
            f"{path}: extension {hdu.name!r} has no column {name!r} (columns: {', '.join(cols)})"
        )
    return hdu.data[name]


def column_unit(hdu: fits.BinTableHDU, name: str) -> str | None:
    """TUNIT of a column, or None."""
    for c in hdu.columns:
        if c.name.upper() == name.upper():
            return c.unit.strip() if c.unit else None
    return None


def column_index(hdu: fits.BinTableHDU, name: str) -> int:
    """1-based FITS column number of ``name``."""
    for i, c in enumerate(hdu.columns):
        if c.name.upper() == name.upper():
            return i + 1
    raise KeyError(name)


_UNIT_ALIASES = {
    "kev": "keV", "ev": "eV", "mev": "MeV", "cm2": "cm2", "cm**2": "cm2", "cm^2": "cm2",
    "cm 2": "cm2", "m2": "m2", "m**2": "m2", "m^2": "m2",
}


def to_unit(values, unit_str: str | None, target: str, default: str | None, path: str,
            what: str) -> np.ndarray:
    """Convert ``values`` given in ``unit_str`` to ``target``.

    A missing unit means ``default`` (if ``default`` is None a missing unit is an error). A unit
    that cannot be parsed or is not convertible to ``target`` is a :class:`FileFormatError`.
    """
    values = np.asarray(values, dtype=float)
    if not unit_str:
        if default is None:
            raise FileFormatError(f"{path}: {what} has no unit (TUNIT); expected {target}")
        unit_str = default
    key = unit_str.strip()
    key = _UNIT_ALIASES.get(key.lower(), key)
    try:
        unit = u.Unit(key, format="fits")
    except ValueError:
        try:
            unit = u.Unit(key)
        except ValueError:
            raise FileFormatError(f"{path}: {what} has unit {unit_str!r}, which is not a unit "
                                  f"(expected {target})") from None
    try:
        return (values * unit).to_value(target)
    except u.UnitConversionError:
        raise FileFormatError(f"{path}: {what} has unit {unit_str!r}; expected something "
                              f"convertible to {target}") from None


def check_edges(lo, hi, path: str, what: str) -> None:
    """Bins must be finite, have ``lo < hi`` and increase."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if lo.size == 0:
        raise FileFormatError(f"{path}: {what} has no rows")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise FileFormatError(f"{path}: {what} has non-finite bin edges")
    if (hi <= lo).any():
        i = int(np.argmax(hi <= lo))
        raise FileFormatError(f"{path}: {what} bin {i} has upper edge {hi[i]} <= lower edge "
                              f"{lo[i]}")
    if (np.diff(lo) <= 0).any():
        raise FileFormatError(f"{path}: {what} bins do not increase")


def write_atomic(hdul: fits.HDUList, path, overwrite: bool) -> str:
    """Write ``hdul`` to a temporary file in the target directory, then ``os.replace`` it.

    The file gets the permissions an ordinary ``open(path, 'w')`` would give it: those of the
    file it replaces, else ``0o666`` less the process umask (``0o644`` with umask ``022``).
    """
    path = fspath(path)
    with atomic_path(path, overwrite, suffix=".fits") as tmp:
        hdul.writeto(tmp, overwrite=True, checksum=True)
    return path


def header_str(header) -> str | None:
    """A FITS header (or None) as a string for JSON-safe attrs."""
    return None if header is None else header.tostring(sep="\n")
