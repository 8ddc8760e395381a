"""Chunks, persistence and memory: the dask side of the solver loop.

* :func:`plan_chunks` chooses the chunks of the cube Z from the problem's chunks: regular
  chunks, boundaries on multiples of the rebinning factors (so the block sum of Y never
  straddles two chunks), never smaller than the PSF half-width (the halo the PSF convolution
  reads from its neighbours, with a zero boundary whose adjoint is exact). Every halo exchange
  (PSF, starlet, per-chunk prox, Sobolev) goes through :mod:`xfusion.halo`.
* :func:`persist` persists and waits, so that the solver's task graph is cut every iteration.
* Stores are written by :mod:`xfusion._store` (one rule for every output).
* :func:`memory_available` / :func:`needs_cluster` decide when a problem does not fit.
"""

from __future__ import annotations

import os

import numpy as np

from .halo import is_dask

__all__ = ["is_dask", "persist", "plan_chunks", "aligned", "regular",
           "memory_available", "needs_cluster", "active_client", "to_dask"]

#: Bytes of the working set per byte of the iterate (x, x_prev, y, g, P, prox temporaries,
#: starlet coefficients of a chunk, ...): measured ~8-12 on the numpy path; 12 is conservative.
WORKING_SET_FACTOR = 12

#: A problem runs in memory when its estimated working set is below this share of free memory.
MEMORY_FRACTION = 0.5


def active_client():
    """The current ``dask.distributed`` client, or None."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def persist(*arrays):
    """Persist the dask arrays among ``arrays`` (numpy passes through) and wait for them.

    Under ``dask.distributed`` the persisted chunks live on the workers as futures; waiting
    keeps the loop in step with the cluster (one iteration's graph at a time). With the local
    schedulers ``persist`` already computes eagerly.
    """
    if not any(is_dask(a) for a in arrays):
        return arrays
    import dask

    out = dask.persist(*arrays)
    if active_client() is not None:
        from distributed import wait

        wait([a for a in out if is_dask(a)])
    return out


def aligned(n: int, size: int, factor: int, halo: int = 0) -> tuple[int, ...]:
    r"""Regular chunks covering an axis of ``n`` samples.

    Parameters
    ----------
    n : int
        Length of the axis.
    size : int
        Wanted chunk size; raised to ``halo`` and then rounded up to a multiple of ``factor``:
        :math:`s = f\,\lceil \max(\mathrm{size}, h, 1) / f \rceil`.
    factor : int
        Rebinning factor ``f`` of the axis: every chunk boundary falls on a multiple of it (so
        the block sum of Y never straddles two chunks).
    halo : int
        Smallest chunk ``h`` (the PSF half-width: the halo the convolution reads from a
        neighbour).

    Returns
    -------
    tuple of int
        :math:`\lfloor n/s \rfloor` chunks of ``s``, then the remainder :math:`r = n \bmod s`
        as a chunk of its own when :math:`r \ge h`, else added to the last full chunk (which
        grows to :math:`s + r`); ``(n,)`` when :math:`s \ge n`. Every chunk is a multiple of
        ``f`` when ``n`` is, at least ``h`` unless the axis itself is shorter, and the chunks
        sum to ``n``.
    """
    factor = max(int(factor), 1)
    halo = max(int(halo), 0)
    size = max(int(size), halo, 1)
    size = -(-size // factor) * factor
    if size >= n:
        return (int(n),)
    chunks = [size] * (n // size)
    rest = n % size
    if rest:
        if rest < halo:
            chunks[-1] += rest     # too short for the halo: merged into the chunk before it
        else:
            chunks.append(rest)
    return tuple(chunks)


def plan_chunks(ds, factors: tuple[int, int], halo: int, chunks=None):
    """Chunks of Z (energy, y, x) for a problem whose X / Y may be dask arrays.

    Parameters
    ----------
    ds : xarray.Dataset
        The problem.
    factors : (vM, vN)
        Rebinning factors of Y.
    halo : int
        PSF half-width: the smallest spatial chunk.
    chunks : dict, optional
        ``{"energy": ..., "y": ..., "x": ...}`` sizes; default: energy from Y's chunks, y / x
        from X's (or Y's times the factors), whole axes otherwise.

    Returns
    -------
    tuple of tuples, or None when neither X nor Y is chunked and no ``chunks`` are given.
    """
    L, M, N = ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"]
    X, Y = ds.X.data, ds.Y.data
    if chunks is None and not (is_dask(X) or is_dask(Y)):
        return None
    want = {"energy": L, "y": M, "x": N}
    if is_dask(Y):
        want["energy"] = max(Y.chunks[0])
        want["y"], want["x"] = max(Y.chunks[1]) * factors[0], max(Y.chunks[2]) * factors[1]
    if is_dask(X):
        want["y"], want["x"] = max(X.chunks[1]), max(X.chunks[2])
    for k, v in (chunks or {}).items():
        if k not in want:
            raise ValueError(f"chunks: unknown dimension {k!r}; use energy, y, x")
        want[k] = {"auto": 0, -1: {"energy": L, "y": M, "x": N}[k]}.get(v, v)
    if not want["energy"]:
        # "auto": about 64 MB float32 per chunk with whole images
        want["energy"] = max(1, int(16e6 // (M * N)))
    for k in ("y", "x"):
        if not want[k]:
            want[k] = {"y": M, "x": N}[k]
    return (aligned(L, want["energy"], 1),
            aligned(M, want["y"], factors[0], halo),
            aligned(N, want["x"], factors[1], halo))


def to_dask(a, chunks):
    """``a`` (numpy or dask) as a dask array with ``chunks``."""
    import dask.array as da

    return a.rechunk(chunks) if is_dask(a) else da.from_array(np.asarray(a), chunks=chunks)


def regular(a):
    """Rechunk a dask array so that every chunk but the last has the same size (Zarr needs
    it); numpy passes through."""
    if not is_dask(a):
        return a
    new = {}
    for ax, c in enumerate(a.chunks):
        if len(c) > 1 and (len(set(c[:-1])) > 1 or c[-1] > c[0]):
            new[ax] = max(c)
    return a.rechunk(new) if new else a


def memory_available() -> int:
    """Bytes of memory available to this process (psutil, else ``os.sysconf``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with distributed
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def needs_cluster(shape, dtype, fraction: float = MEMORY_FRACTION) -> bool:
    """True when the solver's estimated working set for a cube of ``shape`` does not fit in
    ``fraction`` of the available memory."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize * WORKING_SET_FACTOR
    return nbytes > fraction * memory_available()
