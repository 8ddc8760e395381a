r"""Halos: one recipe for every kernel that reads its neighbours' samples on chunked arrays.

A kernel that reads ``d`` samples on each side along an axis (the PSF convolution: its
half-width; the starlet: :math:`2(2^J - 1)`; the Sobolev gradient: 1) declares a *depth*
``{axis: d}``. On a dask array each chunk is then extended by ``d`` samples of its neighbours
(:func:`plan`, :meth:`Halo.extend`); the kernel runs on the extended block with numpy and
returns its *core* (the chunk's own samples). What happens at the array's ends is the
boundary:

* ``"none"``: nothing is added; the kernel applies its own exact boundary where the block
  reaches the array's end (the starlet's mirror folding), told by :meth:`Halo.frame`;
* ``0``: zeros (the PSF convolution, whose image is zero outside);
* ``"reflect"``: the edge samples mirrored (the Sobolev gradient's Neumann boundary).

Chunk sizes are checked once, here: a chunk smaller than its depth would need samples from
beyond its neighbour. With ``small="merge"`` such chunks are merged with their neighbours
(``dask.array.overlap.ensure_minimum_chunksize``, and an axis no longer than twice its depth
becomes one chunk); with ``small="raise"`` the problem is refused with the axis, the chunk and
the depth in the message (for operators that must keep the chunks they are given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["is_dask", "Halo", "plan", "map_with_halo"]


def is_dask(a) -> bool:
    """True for a dask array (without importing dask when it is not needed)."""
    return type(a).__module__.split(".")[0] == "dask"


@dataclass(frozen=True)
class Halo:
    """The chunk grid of a (rechunked) dask array and the halo its kernel reads.

    Attributes
    ----------
    chunks : tuple of tuple of int
        Chunks of the array the kernel runs on (after any merge of small chunks).
    depth : dict
        ``{axis: d}`` for the axes that receive a halo.
    boundary : str or float
        What is added at the array's ends (module docstring).
    """

    chunks: tuple[tuple[int, ...], ...]
    depth: dict[int, int]
    boundary: Any = "none"

    @property
    def numblocks(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(len(c) for c in self.chunks)

    @property
    def starts(self) -> list[np.ndarray]:
        """Global start of every chunk along each axis, with the axis length appended."""
        return [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in self.chunks]

    def _pad(self, ax: int, i: int, side: int) -> int:
        """Halo samples on ``side`` (0: low, 1: high) of chunk ``i`` of axis ``ax``."""
        d = self.depth.get(ax, 0)
        if self.boundary == "none":
            at_end = i == 0 if side == 0 else i == self.numblocks[ax] - 1
            return 0 if at_end else d
        return d

    def extend(self, a):
        """``a`` (dask, or anything ``dask.array.asarray`` takes, of the same shape), chunked
        like the plan, each chunk extended by its halo."""
        import dask.array as da
        from dask.array.overlap import overlap

        a = da.asarray(a).rechunk(self.chunks)
        if not self.depth:
            return a
        nd = a.ndim
        return overlap(a, depth={i: self.depth.get(i, 0) for i in range(nd)},
                       boundary={i: self.boundary if i in self.depth else "none"
                                 for i in range(nd)})

    def core(self, chunk_location: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
        """The slices of an extended block of ``shape`` at ``chunk_location`` that hold the
        chunk's own samples."""
        return tuple(slice(self._pad(ax, i, 0), shape[ax] - self._pad(ax, i, 1))
                     for ax, i in enumerate(chunk_location))

    def frame(self, chunk_location: tuple[int, ...], axes) -> tuple[list, list, tuple]:
        """Where an extended block lies, for a kernel with its own boundary (``"none"``).

        Returns
        -------
        edges : list of (bool, bool)
            For each of ``axes``, whether the block reaches the array's low / high end.
        core : list of (int, int)
            For each of ``axes``, the core's range in the block.
        loc : tuple of slice
            The core's global location along every axis.
        """
        starts = self.starts
        edges, core = [], []
        for ax in axes:
            i = chunk_location[ax]
            s0, s1 = int(starts[ax][i]), int(starts[ax][i + 1])
            g0, g1 = s0 - self._pad(ax, i, 0), s1 + self._pad(ax, i, 1)
            # a side is a true boundary as soon as the block reaches the array's end
            edges.append((g0 == 0, g1 == int(starts[ax][-1])))
            core.append((s0 - g0, s1 - g0))
        loc = tuple(slice(int(st[i]), int(st[i + 1]))
                    for st, i in zip(starts, chunk_location, strict=True))
        return edges, core, loc


def plan(x, depth: dict[int, int], boundary: Any = "none", *, small: str = "merge",
         every_axis: bool = False):
    """Plan the halo exchange of dask array ``x`` for a kernel of ``depth``.

    Parameters
    ----------
    x : dask.array.Array
    depth : dict
        ``{axis: d}``: samples the kernel reads on each side along ``axis``.
    boundary : "none", 0 or "reflect"
        What is added at the array's ends (module docstring).
    small : "merge" or "raise"
        What to do with a chunk smaller than its axis' depth.
    every_axis : bool
        Give the halo to every axis of ``depth``, also those in one chunk (for kernels that
        read the boundary samples, ``"reflect"``); by default only chunked axes get one.

    Returns
    -------
    x : dask.array.Array
        ``x``, small chunks merged.
    halo : Halo
    """
    from dask.array.overlap import ensure_minimum_chunksize

    if small not in ("merge", "raise"):
        raise ValueError(f"small must be 'merge' or 'raise', got {small!r}")
    dep: dict[int, int] = {}
    new_chunks: dict[int, Any] = {}
    for ax, d in depth.items():
        d = int(d)
        if d < 0 or not 0 <= ax < x.ndim:
            raise ValueError(f"halo depth {d} on axis {ax} of a {x.ndim}-d array")
        if d == 0 or (x.numblocks[ax] == 1 and not every_axis):
            continue
        if x.numblocks[ax] > 1 and small == "merge" and x.shape[ax] <= 2 * d:
            new_chunks[ax] = -1                 # too short to be worth a halo: one chunk
            if not every_axis:
                continue
        elif x.numblocks[ax] > 1 and min(x.chunks[ax]) < d:
            if small == "raise":
                raise ValueError(
                    f"chunks of {min(x.chunks[ax])} samples along axis {ax} are smaller than "
                    f"the kernel's halo of {d}; use chunks of at least {d} along that axis")
            new_chunks[ax] = ensure_minimum_chunksize(d, x.chunks[ax])
        dep[ax] = d
    if new_chunks:
        x = x.rechunk(new_chunks)
    return x, Halo(tuple(tuple(int(n) for n in c) for c in x.chunks), dep, boundary)


def map_with_halo(fn: Callable, x, depth: dict[int, int], boundary: Any = 0, *,
                  dtype=None, small: str = "raise", every_axis: bool = False):
    """``fn`` on every chunk of dask ``x`` extended by its halo, trimmed back to the chunk.

    ``fn(block, block_info=None)`` returns an array of the extended block's shape (as for
    ``dask.array.map_overlap``); ``block_info[0]["chunk-location"]`` is the chunk's place in
    the grid. Axes in one chunk get no halo unless ``every_axis``. Returns an array with the
    chunks of ``x`` (or of the merged chunks, with ``small="merge"``).
    """
    import dask.array as da

    dt = np.dtype(dtype if dtype is not None else x.dtype)
    meta = np.empty((0,) * x.ndim, dt)
    x, h = plan(x, depth, boundary, small=small, every_axis=every_axis)
    if not h.depth:
        return x.map_blocks(fn, dtype=dt, meta=meta)
    return da.map_overlap(fn, x, depth={i: h.depth.get(i, 0) for i in range(x.ndim)},
                          boundary={i: boundary if i in h.depth else "none"
                                    for i in range(x.ndim)},
                          dtype=dt, meta=meta, allow_rechunk=False)
