"""Timings of the starlet transforms (``xfusion.starlet``) and of the alternatives tried.

Run::

    PYTHONPATH=. python benchmarks/bench_starlet.py [--repeat 9] [--quick]

Every case is timed ``repeat`` times, interleaved round-robin with the other cases of its group
(so that a burst of load from other processes hits all of them alike); the table shows the
minimum and the median wall time per call and the minimum process CPU time (all threads), in
milliseconds, with the load average. float32 throughout.

Methods
-------
``xfusion``
    the library: B3 kernel as four dilated two-tap sums on flattened contiguous arrays, exact
    folded boundary rows from small matrices, cache-sized energy blocks on a thread pool.
``xfusion 1 thread``
    the same with ``n_threads=1``.
``ndimage``
    ``scipy.ndimage.correlate1d`` (``mode='mirror'``) for every dilated smoothing (forward only:
    its adjoint is not the same filter near the borders).
``compiled``
    :mod:`xfusion.starlet._jit` (numba, ``xfusion[fast]``): the ``threshold`` of
    :class:`~xfusion.starlet.Starlet2D1D` with each spectral smoothing fused with its band's
    thresholding (the "prox fused" rows use it when numba is installed; "numpy kernels" rows
    switch it off with ``XFUSION_JIT=0``).
``matrices``
    each smoothing as an explicit operator: dense (M×M), (N×N) folded matrices applied with
    ``matmul`` on the image axes and a scipy.sparse CSR (L×L) matrix on the energy axis; the
    adjoint is the transposed matrices (exact by construction).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy import ndimage as ndi

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from xfusion import starlet as W  # noqa: E402
from xfusion.starlet.folding import _folded_matrix  # noqa: E402

# ------------------------------------------------------------------------------------------------
# alternatives
# ------------------------------------------------------------------------------------------------


def _kernel(d: int) -> np.ndarray:
    k = np.zeros(4 * d + 1, np.float32)
    k[::d] = W.B3_KERNEL
    return k


def ndimage_forward(z: np.ndarray, axes: tuple[int, ...], J: int) -> np.ndarray:
    out = np.empty((J + 1,) + z.shape, z.dtype)
    c = z
    for j in range(1, J + 1):
        n = c
        for ax in axes:
            n = ndi.correlate1d(n, _kernel(1 << (j - 1)), axis=ax, mode="mirror")
        np.subtract(c, n, out=out[j - 1])
        c = n
    out[J] = c
    return out


def ndimage_forward_2d1d(z: np.ndarray, J2: int, J1: int) -> np.ndarray:
    b2 = ndimage_forward(z, (1, 2), J2)
    return np.stack([ndimage_forward(b, (0,), J1) for b in b2])


class MatrixStarlet2D1D:
    """Reference 2-D–1-D starlet with explicit folded matrices (dense spatial, sparse energy)."""

    def __init__(self, shape: tuple[int, int, int], J2: int, J1: int):
        L, M, N = shape
        self.J2, self.J1 = J2, J1
        self.Gy = [_folded_matrix(M, 1 << j, "mirror").astype(np.float32) for j in range(J2)]
        self.Gx = [_folded_matrix(N, 1 << j, "mirror").astype(np.float32) for j in range(J2)]
        self.GL = [sp.csr_matrix(_folded_matrix(L, 1 << j, "mirror").astype(np.float32))
                   for j in range(J1)]
        self.GLT = [g.T.tocsr() for g in self.GL]

    def _s2(self, c, j, T=False):
        Gy, Gx = self.Gy[j], self.Gx[j]
        if T:
            Gy, Gx = Gy.T, Gx.T
        return np.matmul(Gy, np.matmul(c, Gx.T))

    def _s1(self, c, j, T=False):
        G = (self.GLT if T else self.GL)[j]
        return (G @ c.reshape(c.shape[0], -1)).reshape(c.shape)

    def forward(self, z):
        out = np.empty((self.J2 + 1, self.J1 + 1) + z.shape, z.dtype)
        b2 = []
        c = z
        for j in range(self.J2):
            n = self._s2(c, j)
            b2.append(c - n)
            c = n
        b2.append(c)
        for b, band in enumerate(b2):
            c = band
            for j in range(self.J1):
                n = self._s1(c, j)
                np.subtract(c, n, out=out[b, j])
                c = n
            out[b, self.J1] = c
        return out

    def _adj(self, c, smooth, J):
        t = c[J]
        for j in range(J, 0, -1):
            t = c[j - 1] + smooth(t - c[j - 1], j - 1, True)
        return t

    def adjoint(self, c):
        u = np.stack([self._adj(c[b], self._s1, self.J1) for b in range(self.J2 + 1)])
        return self._adj(u, self._s2, self.J2)


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------


def timeit_group(cases: dict, repeat: int) -> dict:
    """Interleaved timing: returns {name: (min_ms, median_ms, min_cpu_ms)}.

    ``cpu`` is the process CPU time (all threads): on a machine shared with other jobs it
    shows what a single-threaded case costs when it has a core to itself.
    """
    for f in cases.values():      # warm-up (caches, workspaces, thread pool)
        f()
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, f in cases.items():
            c0 = time.process_time()
            t0 = time.perf_counter()
            f()
            wall[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.process_time() - c0) * 1e3)
    return {k: (min(wall[k]), float(np.median(wall[k])), min(cpu[k])) for k in cases}


def show(title: str, res: dict) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{title}   (load average {load:.1f})")
    print(f"  {'case':<46s} {'min ms':>9s} {'median ms':>10s} {'cpu ms':>8s}")
    for k, (mn, md, cp) in res.items():
        print(f"  {k:<46s} {mn:9.1f} {md:10.1f} {cp:8.1f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="skip the slow alternatives")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, float32, repeat={args.repeat}")

    # -- Starlet2D1D(2, 3) on (2400, 45, 45) -------------------------------------------------
    shape = (2400, 45, 45)
    z = rng.random(shape, dtype=np.float32)
    T = W.Starlet2D1D(2, 3)
    T1 = W.Starlet2D1D(2, 3, n_threads=1)
    c = T.forward(z)
    cbuf = np.empty_like(c)
    zbuf = np.empty_like(z)
    thr = np.float32(0.05)
    coarse = T.coarse_index

    tdict = {idx: thr for idx in np.ndindex(3, 4) if idx != coarse}
    kvox = (thr * W.brightness_k(T.forward(z)[coarse])).astype(np.float32)
    tmap = {idx: kvox for idx in tdict}

    def shrink(index, band, loc):
        if index != coarse:
            W.soft_threshold(band, thr, out=band)

    def prox_unfused(TT):
        cc = TT.forward(z, out=cbuf)
        for idx in np.ndindex(*cc.shape[:2]):
            if idx != coarse:
                W.soft_threshold(cc[idx], thr, out=cc[idx])
        return TT.inverse(cc, out=zbuf)

    def numpy_kernels(fn):
        """Run ``fn`` with the compiled 2-D–1-D kernels switched off (XFUSION_JIT=0)."""
        def run():
            old = os.environ.get("XFUSION_JIT")
            os.environ["XFUSION_JIT"] = "0"
            try:
                return fn()
            finally:
                if old is None:
                    del os.environ["XFUSION_JIT"]
                else:
                    os.environ["XFUSION_JIT"] = old
        return run

    from xfusion.starlet import StarletBands, _jit
    B = StarletBands(T, shape)
    jit = "compiled" if _jit.available() else "numpy (numba absent)"
    cases = {
        "forward (out= preallocated)": lambda: T.forward(z, out=cbuf),
        "forward (new array)": lambda: T.forward(z),
        "adjoint (out=)": lambda: T.adjoint(c, out=zbuf),
        "inverse (out=)": lambda: T.inverse(c, out=zbuf),
        "forward + adjoint (out=)": lambda: (T.forward(z, out=cbuf), T.adjoint(cbuf, out=zbuf)),
        "forward + inverse (out=)": lambda: (T.forward(z, out=cbuf), T.inverse(cbuf, out=zbuf)),
        "prox: forward, soft-threshold, inverse": lambda: prox_unfused(T),
        "prox fused: filter(z, soft-threshold)": lambda: T.filter(z, shrink, out=zbuf),
        "prox fused: threshold(z, scalar t)": lambda: T.threshold(z, tdict, out=zbuf),
        "prox fused: threshold(z, per-voxel t)": lambda: T.threshold(z, tmap, out=zbuf),
        "prox fused: threshold(z, per-voxel t) + l1": lambda: T.threshold(z, tmap, out=zbuf,
                                                                           return_l1=True),
        f"{jit}: threshold(z, per-voxel t) + l1": lambda: T.threshold(z, tmap, out=zbuf,
                                                                      return_l1=True),
        "numpy kernels: threshold(z, per-voxel t) + l1": numpy_kernels(
            lambda: T.threshold(z, tmap, out=zbuf, return_l1=True)),
        f"{jit}: finest + coarse bands": lambda: B.finest_and_coarse(z),
        "numpy kernels: finest + coarse bands": numpy_kernels(lambda: B.finest_and_coarse(z)),
        "1 thread: forward (out=)": lambda: T1.forward(z, out=cbuf),
        "1 thread: adjoint (out=)": lambda: T1.adjoint(c, out=zbuf),
        "1 thread: inverse (out=)": lambda: T1.inverse(c, out=zbuf),
        "1 thread: threshold(z, scalar t)": lambda: T1.threshold(z, tdict, out=zbuf),
    }
    show("Starlet2D1D(2, 3), (2400, 45, 45) float32 — xfusion", timeit_group(cases, args.repeat))

    if not args.quick:
        Mt = MatrixStarlet2D1D(shape, 2, 3)
        alt = {
            "matrices: forward": lambda: Mt.forward(z),
            "matrices: adjoint": lambda: Mt.adjoint(c),
            "ndimage: forward": lambda: ndimage_forward_2d1d(z, 2, 3),
        }
        show("Starlet2D1D(2, 3), (2400, 45, 45) float32 — alternatives",
             timeit_group(alt, max(3, args.repeat // 3)))
        err_m = np.abs(Mt.forward(z) - c).max()
        err_n = np.abs(ndimage_forward_2d1d(z, 2, 3) - c).max()
        print(f"  max |difference| to xfusion: matrices {err_m:.1e}, ndimage {err_n:.1e}")

    # -- Starlet2D(2) ----------------------------------------------------------------------------
    for shp in ((10, 45, 45), (2048, 64, 64)):
        z2 = rng.random(shp, dtype=np.float32)
        S = W.Starlet2D(2)
        S1 = W.Starlet2D(2, n_threads=1)
        c2 = S.forward(z2)
        cb2 = np.empty_like(c2)
        zb2 = np.empty_like(z2)
        cases = {
            "forward (out=)": lambda S=S, z2=z2, cb2=cb2: S.forward(z2, out=cb2),
            "adjoint (out=)": lambda S=S, c2=c2, zb2=zb2: S.adjoint(c2, out=zb2),
            "inverse (out=)": lambda S=S, c2=c2, zb2=zb2: S.inverse(c2, out=zb2),
            "1 thread: forward (out=)": lambda S1=S1, z2=z2, cb2=cb2: S1.forward(z2, out=cb2),
            "1 thread: adjoint (out=)": lambda S1=S1, c2=c2, zb2=zb2: S1.adjoint(c2, out=zb2),
        }
        if not args.quick:
            cases["ndimage: forward"] = lambda z2=z2: ndimage_forward(z2, (1, 2), 2)
        reps = args.repeat if shp[0] > 100 else 10 * args.repeat
        show(f"Starlet2D(2), {shp} float32", timeit_group(cases, reps))


if __name__ == "__main__":
    main()
