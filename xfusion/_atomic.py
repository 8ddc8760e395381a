"""Atomic file writes: a temporary file beside the target, renamed onto it once complete.

Used for FITS files (:func:`xfusion.io._fits.write_atomic`) and the command line's JSON
files. Zarr stores (directories, with the replaced store set aside first) and checkpoint
pointers have their own scheme in :mod:`xfusion._store`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["atomic_path", "umask"]


def umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path, overwrite: bool = False, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside ``path``; ``os.replace`` it onto ``path`` on success.

    Parameters
    ----------
    path : str or path-like
        The file to write; its directory is created if needed.
    overwrite : bool
        Whether an existing ``path`` may be replaced (else :class:`FileExistsError`, before
        anything is created).
    suffix : str
        Suffix of the temporary file's name (``.tmp-XXXXXXXX<suffix>``).

    Notes
    -----
    The file gets the permissions an ordinary ``open(path, 'w')`` would give it: those of the
    file it replaces, else ``0o666`` less the process umask (``0o644`` with umask ``022``). If
    the body of the ``with`` block raises (or is interrupted), the temporary file is removed
    and ``path`` is left as it was.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~umask()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
