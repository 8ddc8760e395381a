"""Time per iteration against cube size, in memory (numpy) and chunked (dask).

Synthetic problems built directly (no scenario generator): Z is L × M × M with L = 2048
channels by default, Y is 8× coarser in space (``v = 8``), X 32× coarser in energy
(``l = L / 32``). Per-iteration time is the difference of two runs (``n1`` and ``n2``
iterations) divided by ``n2 - n1``, so the set-up (initial guess, first forward model, first
threshold estimate) is excluded.

    python benchmarks/bench_scale.py --sizes 64 128 256 --reg none w2d1d
    python benchmarks/bench_scale.py --sizes 64 128 --channels 512 --modes numpy dask

Prints a Markdown table (and ``--json`` writes the numbers; ``--plot`` a PNG).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

import xfusion as xf


def make(M: int, L: int = 2048, v: int = 8, e: int = 32, seed: int = 0):
    """A consistent synthetic problem of Z shape (L, M, M)."""
    rng = np.random.default_rng(seed)
    E = np.linspace(0.5, 8.0, L)
    R = xf.kernels.gaussian_response(E, 0.05, vL=e)
    psf = xf.kernels.gaussian_psf(1.5, size=9)
    ax = 300 * np.exp(-0.5 * ((E - 1.5) / 1.5) ** 2) + 20
    ay = 100 * np.exp(-0.5 * ((E - 2.0) / 2.0) ** 2) + 10
    yy, xx = np.mgrid[0:M, 0:M] / M
    img_a = np.exp(-((yy - 0.35) ** 2 + (xx - 0.4) ** 2) / 0.02)
    img_b = np.exp(-((yy - 0.65) ** 2 + (xx - 0.6) ** 2) / 0.01)
    spec_a = np.exp(-E / 2.0)
    spec_b = np.exp(-E / 1.0) * (1 + 5 * np.exp(-0.5 * ((E - 6.4) / 0.05) ** 2))
    Z = (spec_a[:, None, None] * img_a + spec_b[:, None, None] * img_b + 0.01).astype(np.float32)
    Z *= 1e-4
    model = xf.operators.ForwardModel(R, psf, ax, ay, 1e4, 1e4, Z.shape, (v, v), spatial="fft")
    mx, my = model.forward(Z)
    X = rng.poisson(np.maximum(mx, 0)).astype(np.int32)
    Y = rng.poisson(np.maximum(my, 0)).astype(np.int32)
    return xf.make_problem(X, Y, R, psf, ax, ay, exposure_X=1e4, exposure_Y=1e4, energy=E)


def per_iteration(ds, reg: str, n1: int, n2: int, **kw) -> float:
    t = []
    for n in (n1, n2):
        t0 = time.perf_counter()
        xf.fuse(ds, reg, max_iter=n, tol=1e-12, progress=False, **kw)
        t.append(time.perf_counter() - t0)
    return (t[1] - t[0]) / (n2 - n1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--channels", type=int, default=2048)
    ap.add_argument("--reg", nargs="+", default=["none", "w2d1d"])
    ap.add_argument("--modes", nargs="+", default=["numpy", "dask"])
    ap.add_argument("--energy-chunk", type=int, default=128,
                    help="energy chunk of the dask runs (whole images)")
    ap.add_argument("--cluster", action="store_true",
                    help="run the dask mode on LocalCluster(n_workers=2, memory_limit=1.5GB)")
    ap.add_argument("--iters", type=int, nargs=2, default=[2, 6])
    ap.add_argument("--json")
    ap.add_argument("--plot")
    a = ap.parse_args(argv)
    client = None
    if a.cluster and "dask" in a.modes:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=2, threads_per_worker=4, memory_limit="1.5GB"))
    rows = []
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"xfusion {xf.__version__}, L={a.channels}, iterations {a.iters}")
    print("| M×N×L | regularizer | mode | s / iteration | ns / voxel-iteration |")
    print("|---|---|---|---|---|")
    for M in a.sizes:
        ds = make(M, a.channels)
        nvox = a.channels * M * M
        for reg in a.reg:
            for mode in a.modes:
                kw = dict(dtype="float32")
                if mode == "dask":
                    kw["chunks"] = {"energy": a.energy_chunk}
                    if client is not None:
                        kw["client"] = client
                try:
                    s = per_iteration(ds, reg, *a.iters, **kw)
                except MemoryError as e:  # pragma: no cover - depends on the machine
                    print(f"| {M}×{M}×{a.channels} | {reg} | {mode} | failed: {e} | |")
                    continue
                rows.append(dict(M=M, L=a.channels, reg=reg, mode=mode, s_per_iter=s,
                                 ns_per_voxel_iter=1e9 * s / nvox))
                print(f"| {M}×{M}×{a.channels} | {reg} | {mode} | {s:.3f} | "
                      f"{1e9 * s / nvox:.2f} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(machine=platform.node(), rows=rows), f, indent=1)
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for reg in a.reg:
            for mode in a.modes:
                r = [x for x in rows if x["reg"] == reg and x["mode"] == mode]
                if r:
                    ax.loglog([x["M"] ** 2 * x["L"] for x in r], [x["s_per_iter"] for x in r],
                              "o-" if mode == "numpy" else "s--", label=f"{reg}, {mode}")
        ax.set_xlabel("voxels (M·N·L)")
        ax.set_ylabel("seconds per iteration")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
    if client is not None:
        client.close()
    return rows


if __name__ == "__main__":
    main()
