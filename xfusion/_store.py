"""Where xfusion writes, and the one rule it follows there.

Every store this library writes (a problem, a fused cube, a solver checkpoint, bootstrap
errors, line maps) is a Zarr store whose root carries the attribute ``xfusion_store``
(:data:`KINDS`). The rule, the same for the API and the command line:

* a path that exists is **refused** unless ``overwrite=True`` (``--overwrite``);
* even then only a store this library wrote is replaced (a store of an older version is known
  by its variables); a user's directory, a file, or another program's store is **never**
  deleted;
* an output may not be one of the run's inputs (the problem it reads, the checkpoint it
  resumes from, the other output);
* the directory must be writable, with room for the estimated size, **before** any solving;
* a store is written under a temporary name beside its target and renamed into place, so an
  interrupted write never leaves a half-written target; leftovers of an interrupted write
  (``.<name>.tmp-*``, ``.<name>.old-*``) are removed by the next write to the same target.

Checkpoints, which are rewritten every few iterations, are a directory holding two Zarr
slots and a pointer file naming the complete one (:func:`write_slot`): the pointer is replaced
by an atomic file rename only after the new slot is complete, so at every instant one complete
checkpoint exists.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile

from ._atomic import umask

__all__ = ["OutputError", "OutputExistsError", "MARK", "store_kind", "check_output",
           "same_path", "write_store", "write_slot", "read_pointer", "POINTER"]

#: root attribute naming what a store written by xfusion holds
MARK = "xfusion_store"
#: what a store written by xfusion may hold
KINDS = ("problem", "fused", "checkpoint", "uncertainty", "lines")
#: pointer file of a checkpoint directory (names the complete slot)
POINTER = "xfusion-checkpoint.json"
#: free space kept beyond the estimated size of a store (bytes)
HEADROOM = 16 * 2**20


class OutputError(OSError):
    """An output path that xfusion refuses to write (exists, is an input, not writable, no
    room), or a write that failed; the message names the path and what to do."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""


def _zattrs(path: str) -> dict | None:
    """The root attributes of a Zarr store at ``path`` (v2 or v3), or None if it is not one."""
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        f = os.path.join(path, name)
        if os.path.isfile(f):
            try:
                with open(f) as fh:
                    doc = json.load(fh)
            except (OSError, ValueError):
                return None
            return (doc.get(key) or {}) if key else doc
    if os.path.isfile(os.path.join(path, ".zgroup")):
        return {}
    return None


def _variables(path: str) -> set[str]:
    return {d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
            and not d.startswith(".")}


def store_kind(path: str | os.PathLike) -> str | None:
    """What xfusion store ``path`` is: ``"problem"``, ``"fused"``, ``"checkpoint"``, or None
    when it is not a store this library wrote (or does not exist)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    if os.path.isfile(os.path.join(path, POINTER)):
        return "checkpoint"
    attrs = _zattrs(path)
    if attrs is None:
        return None
    if attrs.get(MARK) in KINDS:
        return attrs[MARK]
    # stores written before the mark existed, known by their variables
    names = _variables(path)
    if {"X", "Y", "psf_Y"} <= names:
        return "problem"
    if {"x", "x_prev"} <= names and "complete" in attrs:
        return "checkpoint"
    if "Z" in names and not names & {"X", "Y"}:
        return "fused"
    return None


def same_path(a, b) -> bool:
    """True when two paths name the same place (or one lies inside the other)."""
    if a is None or b is None:
        return False
    ra, rb = os.path.realpath(os.fspath(a)), os.path.realpath(os.fspath(b))
    return ra == rb or ra.startswith(rb + os.sep) or rb.startswith(ra + os.sep)


def _free_bytes(directory: str) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _existing_parent(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path)) or "."
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    return parent


def check_output(path, what: str, *, overwrite: bool = False, kinds: tuple[str, ...] = (),
                 inputs: dict | None = None, nbytes: int = 0,
                 option: str = "overwrite=True (--overwrite on the command line)"):
    """Refuse an output path before any work is done (see the module's rule).

    Parameters
    ----------
    path : path-like
        Where the store will be written.
    what : str
        Its role in messages (``"output"``, ``"checkpoint"``, ``"--out"``).
    overwrite : bool
        Whether an existing store may be replaced.
    kinds : tuple of str
        The kinds of xfusion store that may be replaced (default: any).
    inputs : dict, optional
        ``{role: path}`` of the run's inputs; the output may not be, contain or lie in any.
    nbytes : int
        Estimated size of what will be written; refused when the disk has less room.
    option : str
        How the user allows replacing, named in the message (``"--overwrite"`` on the CLI).

    Raises
    ------
    OutputError
    """
    path = os.fspath(path)
    for role, p in (inputs or {}).items():
        if same_path(path, p):
            raise OutputError(f"{what} {path} is the {role} ({p}); writing there would destroy "
                              f"it: choose another path")
    if os.path.lexists(path):
        kind = store_kind(path)
        if kind is None or (kinds and kind not in kinds):
            desc = ("a file" if os.path.isfile(path) else
                    "a directory that is not a store written by xfusion" if kind is None else
                    f"an xfusion {kind} store")
            raise OutputError(f"{what} {path} exists and is {desc}; refusing to replace it "
                              f"(choose another path)")
        if not overwrite:
            raise OutputExistsError(f"{what} {path} exists (an xfusion {kind} store); pass "
                                    f"{option} to replace it")
    parent = _existing_parent(path)
    if not os.path.isdir(parent):
        raise OutputError(f"{what} {path}: {parent} is not a directory")
    if not _writable(parent):
        raise OutputError(f"{what} {path}: the directory {parent} is not writable")
    free = _free_bytes(parent)
    if free is not None and nbytes and free < nbytes + HEADROOM:
        raise OutputError(f"{what} {path}: needs about {_mb(nbytes + HEADROOM)} but "
                          f"{parent} has {_mb(free)} free")


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB"


def _sweep(parent: str, base: str) -> None:
    """Remove what interrupted writes to ``base`` left in ``parent``."""
    for p in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(base)}.tmp-*")) + \
            glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(base)}.old-*")):
        shutil.rmtree(p, ignore_errors=True)


def write_store(ds, path, kind: str, *, overwrite: bool = False, **to_zarr) -> str:
    """Write the Dataset ``ds`` to the Zarr store ``path`` atomically, marked as ``kind``.

    The store is written to ``.<name>.tmp-*`` beside ``path`` and renamed into place; an
    existing store (only one this library wrote, and only with ``overwrite``) is first renamed
    to ``.<name>.old-*`` and removed once the new one is in place.

    Raises
    ------
    OutputError
        ``path`` may not be replaced (:func:`check_output`), or the write failed (disk full,
        permissions); the message names the path and the cause.
    """
    path = os.fspath(path)
    check_output(path, kind, overwrite=overwrite, kinds=(kind,))
    parent = os.path.dirname(os.path.abspath(path)) or "."
    base = os.path.basename(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the directory {parent} for {path}: {e.strerror}") \
            from e
    _sweep(parent, base)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~umask())    # mkdtemp makes it 0700: the store follows the umask
    ds = ds.copy()
    ds.attrs[MARK] = kind
    for v in ds.variables.values():
        v.encoding = {**v.encoding, "write_empty_chunks": True}
    try:
        ds.to_zarr(tmp, mode="w", consolidated=True, **to_zarr)
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(path, os.path.join(old, "store"))
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"writing {path} failed: {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_pointer(path: str) -> str | None:
    """The complete slot of the checkpoint directory ``path`` (a path), or None."""
    try:
        with open(os.path.join(path, POINTER)) as fh:
            slot = json.load(fh)["slot"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return os.path.join(path, slot) if slot in ("a", "b") else None


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: str, pointer: str) -> None:
    """The instant a new checkpoint becomes the current one: an atomic file rename."""
    os.replace(tmp, pointer)


def _writable(directory: str) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def write_slot(path: str, write) -> str:
    """Write a new version of the checkpoint directory ``path`` with ``write(store)``.

    ``write`` fills the Zarr store it is given; it goes to the slot that is not the current
    one, and only once it returns is the pointer file replaced (an atomic rename) to name it.
    A crash at any moment leaves the previous complete slot named by the pointer; a
    half-written slot is cleared by the next write.

    Returns
    -------
    str
        The slot written.
    """
    legacy = None
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, POINTER)) \
            and _zattrs(path) is not None:
        # a checkpoint written as one store by an earlier version: set aside, removed below
        parent, base = os.path.split(os.path.abspath(path))
        legacy = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
        os.rename(path, os.path.join(legacy, "store"))
    os.makedirs(path, exist_ok=True)
    current = read_pointer(path)
    slot = "b" if current and current.endswith(os.sep + "a") else "a"
    store = os.path.join(path, slot)
    shutil.rmtree(store, ignore_errors=True)
    write(store)
    _fsync_dir(store)
    tmp = os.path.join(path, f".{POINTER}.tmp")
    with open(tmp, "w") as fh:
        json.dump({"slot": slot, "format": 1, MARK: "checkpoint"}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    _commit(tmp, os.path.join(path, POINTER))
    _fsync_dir(path)
    if legacy is not None:
        shutil.rmtree(legacy, ignore_errors=True)
    return store
