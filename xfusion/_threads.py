"""Threads of the in-memory path: one shared block pool, and BLAS kept off its cores.

The starlet kernels, the compiled step pieces and the forward model's matrix products all run
on one pool of block threads (:func:`run_blocks`). OpenBLAS has a pool of its own whose threads
spin for a while after each product; on a small machine they then compete with the block
threads for the same cores. Measured on 2 cores (``gaussian_1kev_rebin``, ``w2d1d``): the
prox took 84 ms inside an iteration against 45 ms alone. :func:`serial_blas` (used around the
solver loop) keeps BLAS to one thread per call — through `threadpoolctl
<https://github.com/joblib/threadpoolctl>`_ when it is installed (``pip install
xfusion[fast]``); without it nothing changes — and :func:`matmul` then splits large products
into one block per core on the pool itself (the same products: μ_Y 8.3 ms, the summed
adjoint 10.9 ms, against 8.2 and 37.7 ms with BLAS's own threads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

__all__ = ["run_blocks", "each_block", "serial_blas", "blas_is_serial", "matmul"]

_POOLS: dict[int, ThreadPoolExecutor] = {}
_TLS = threading.local()
_SERIAL = {"depth": 0}
#: products with fewer multiply-adds than this run as one call (the split is not worth it)
_SPLIT_MIN = 1 << 22


def run_blocks(task: Callable, blocks: list, n_threads: int) -> None:
    """Run ``task`` on every block, on a shared pool of ``n_threads`` threads.

    Calls made from inside a pool thread (e.g. a transform used within a ``filter`` callback)
    run serially, so that the pool never waits on itself.
    """
    if n_threads <= 1 or len(blocks) <= 1 or getattr(_TLS, "in_pool", False):
        for blk in blocks:
            task(blk)
        return
    pool = _POOLS.get(n_threads)
    if pool is None:
        pool = _POOLS[n_threads] = ThreadPoolExecutor(n_threads, thread_name_prefix="xfusion",
                                                      initializer=_mark_pool_thread)
    for _ in pool.map(task, blocks):
        pass


def _mark_pool_thread() -> None:
    _TLS.in_pool = True


def each_block(fn: Callable[[int, int], object], n: int, min_block: int = 1 << 16) -> list:
    """``[fn(a, b), ...]`` over consecutive blocks ``[a, b)`` of ``range(n)``, one per core (at
    most ``n / min_block`` of them), on the pool; results in block order."""
    nb = max(1, min(os.cpu_count() or 1, n // max(min_block, 1)))
    edges = np.linspace(0, n, nb + 1).round().astype(np.int64)
    blocks = [(i, int(a), int(b)) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    out: list = [None] * nb

    def task(blk):
        out[blk[0]] = fn(blk[1], blk[2])

    run_blocks(task, blocks, nb)
    return out


@contextmanager
def serial_blas() -> Iterator[bool]:
    """Within the block, BLAS runs on the calling thread only (yields whether it could)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield False
        return
    with threadpool_limits(limits=1, user_api="blas"):
        _SERIAL["depth"] += 1
        try:
            yield True
        finally:
            _SERIAL["depth"] -= 1


def blas_is_serial() -> bool:
    """True inside :func:`serial_blas` (when threadpoolctl could limit BLAS)."""
    return _SERIAL["depth"] > 0


def matmul(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None,
           accumulate: bool = False) -> np.ndarray:
    """``A @ B`` of 2-D numpy arrays (into ``out``, or added to it with ``accumulate``).

    Inside :func:`serial_blas` a large product is split into one block of output rows (or
    columns, whichever is longer) per core, each a single-threaded BLAS call on the pool.
    """
    n, m = A.shape[0], B.shape[1]
    if out is None:
        if accumulate:
            raise ValueError("accumulate needs out")
        out = np.empty((n, m), np.result_type(A, B))
    k = os.cpu_count() or 1
    if not blas_is_serial() or k == 1 or n * m * A.shape[1] < _SPLIT_MIN:
        _product(A, B, out, accumulate)
        return out
    rows = n >= m
    edges = np.linspace(0, n if rows else m, k + 1).round().astype(np.int64)
    blocks = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    if rows:
        run_blocks(lambda b: _product(A[b[0]:b[1]], B, out[b[0]:b[1]], accumulate), blocks, k)
    else:
        run_blocks(lambda b: _product(A, B[:, b[0]:b[1]], out[:, b[0]:b[1]], accumulate),
                   blocks, k)
    return out


def _product(A, B, out, accumulate: bool) -> None:
    if accumulate:
        out += A @ B
    else:
        np.matmul(A, B, out=out)
