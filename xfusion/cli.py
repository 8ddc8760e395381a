"""The ``xfusion`` command line.

::

    xfusion demo [--scenario gaussian_1kev_rebin] [--scale 0.5] [--regularizer lrs] [--out DIR]
    xfusion simulate NAME --out problem.zarr [--scale S] [--seed N]
    xfusion assemble EVENTS_X EVENTS_Y --rmf-x RMF [--arf-x ARF] --arf-y ARF --psf-y PSF
                     --band EMIN,EMAX (--n-energy L | --energy-bin DE) --vl V
                     (--pixel-size ARCSEC) --out problem.zarr [--option-x KEY=VALUE ...]
    xfusion fuse problem.zarr --out fused.zarr [--regularizer R] [--max-iter N]
                 [--checkpoint PATH] [--resume PATH]
    xfusion metrics fused.zarr problem.zarr [--json metrics.json]
    xfusion uncertainty problem.zarr fused.zarr --out errors.zarr [--draws 16]
    xfusion export fused.zarr [--errors errors.zarr] [--fits cube.fits]
                   [--spectrum region.pha (--box Y0:Y1,X0:X1 | --pixels 'IY,IX;...' |
                    --circle RA,DEC,R)] [--line-map lines.zarr|lines.fits --line 6.7]
    xfusion plot fused.zarr [--problem problem.zarr] [--errors errors.zarr] [--line 6.7]
                 [--at RA,DEC] [--pixel IY,IX] [--out DIR]

Errors a user can cause (a missing file, an unknown scenario, a problem that does not validate)
print one line to stderr and exit with status 2; set ``XFUSION_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence

from .options import REGULARIZERS

__all__ = ["main", "demo", "metrics_table"]

DEFAULT_SCENARIO = "gaussian_1kev_rebin"
DEFAULT_SCALE = 0.5
DEFAULT_REGULARIZER = "lrs"
PLOTS = {
    "amplitude": "amplitude_maps.png",
    "spectra": "spectra.png",
    "objective": "objective.png",
    "sam": "sam_map.png",
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- helpers
def _say(args, *msg) -> None:
    if not getattr(args, "quiet", False):
        print(*msg, flush=True)


def _write_zarr(ds, path: str, kind: str, overwrite: bool) -> str:
    """Write a store the package's one way (:func:`xfusion._store.write_store` via
    :func:`xfusion.save_problem`: refuse what may not be replaced, temporary store then
    rename, JSON-safe attrs, every chunk written)."""
    from ._store import write_store
    from .problem import save_problem

    if kind == "problem":
        return save_problem(ds, path, overwrite=overwrite)
    return write_store(ds, path, kind, overwrite=overwrite)


def _check_out(path: str, kind: str, args, inputs: dict | None = None, nbytes: int = 0):
    from ._store import check_output

    check_output(path, "--out", overwrite=args.overwrite,
                 kinds=(kind,), inputs=inputs, nbytes=nbytes, option="--overwrite")


def _open_problem(path: str):
    from .problem import open_problem, validate

    if not os.path.exists(path):
        raise CLIError(f"no such problem store: {path}")
    try:
        ds = open_problem(path, validate_problem=False)
    except Exception as e:  # noqa: BLE001 - any failure to read is the user's file
        raise CLIError(f"cannot read a fusion problem from {path}: {_one_line(e)}") from e
    validate(ds)  # ProblemError, reported as such
    return ds


def _open_fused(path: str):
    import xarray as xr

    if not os.path.exists(path):
        raise CLIError(f"no such fused-cube store: {path}")
    try:
        ds = xr.open_zarr(path, consolidated=None).load()
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"cannot read a fused cube from {path}: {_one_line(e)}") from e
    if "Z" not in ds:
        raise CLIError(f"{path} holds no variable 'Z' (variables: {sorted(ds.data_vars)}); "
                       "is it the output of 'xfusion fuse'?")
    return ds["Z"]


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, KeyError) and msg.startswith(("'", '"')) and msg.endswith(("'", '"')):
        msg = msg[1:-1]
    return " ".join(msg.split())


def ergas_ratio(ds) -> float:
    """ERGAS pixel-size ratio d = 1/sqrt(vM·vN), as :func:`xfusion.baselines.baseline_report`."""
    from .problem import rebin_factors

    f = rebin_factors(ds)
    return 1.0 / math.sqrt(f.vM * f.vN)


def _rank_arg(text: str) -> int | str:
    """``--rank``: a whole number ≥ 1 or ``auto``."""
    if text == "auto":
        return text
    try:
        r = int(text)
    except ValueError:
        r = 0
    if r < 1:
        raise argparse.ArgumentTypeError(f"rank must be a whole number ≥ 1 or 'auto', "
                                         f"got {text!r}")
    return r


def _fit_rank(ds, regularizer: str, rank: int | str, args) -> int | str:
    """The low-rank subspace cannot exceed Y's number of pixels or channels (tiny problems)."""
    if regularizer not in ("lrs", "lrw2d", "lr") or rank == "auto":
        return rank
    most = min(ds.sizes["energy"], ds.sizes["y_coarse"] * ds.sizes["x_coarse"])
    if rank > most:
        _say(args, f"note: rank {rank} > {most} (Y's pixels/channels); using rank {most}")
        return most
    return rank


def _fuse(ds, args, output: str | None = None):
    """Run :func:`xfusion.fuse` with the command line's options; say a poor fit in words."""
    from .fusion import FitWarning, fuse

    kw = {"rank": _fit_rank(ds, args.regularizer, args.rank, args), "progress": not args.quiet,
          "overwrite": getattr(args, "overwrite", False)}
    if args.max_iter is not None:
        kw["max_iter"] = args.max_iter
    if getattr(args, "tol", None) is not None:
        kw["tol"] = args.tol
    if getattr(args, "checkpoint", None):
        kw["checkpoint"] = args.checkpoint
    if getattr(args, "resume", None):
        if not os.path.exists(args.resume):
            raise CLIError(f"no checkpoint to resume from at {args.resume}")
        kw["resume"] = args.resume
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", FitWarning)
        Z = fuse(ds, args.regularizer, output=output, **kw)
    for w in seen:
        if issubclass(w.category, FitWarning):
            print(f"xfusion {args.command}: warning: {' '.join(str(w.message).split())}",
                  file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return Z


def _clean(v):
    """NaN/inf -> None so that the JSON is standard."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {k: _clean(x) for k, x in v.items()}
    return v


def _solver_summary(Z) -> dict:
    a = Z.attrs
    return {
        "regularizer": a.get("regularizer"),
        "iterations": int(a.get("iterations", 0)),
        "converged": bool(a.get("converged", 0)),
        "wall_time_s": float(a.get("wall_time", float("nan"))),
        "objective": a.get("objective"),
    }


def _solver_line(Z) -> str:
    s = _solver_summary(Z)
    conv = "converged" if s["converged"] else "NOT converged (max_iter reached)"
    line = (f"solver: {s['regularizer']}, {s['iterations']} iterations, {conv}, "
            f"{s['wall_time_s']:.2f} s wall time")
    fit = []
    for name in ("X", "Y"):
        c, e, sd = (Z.attrs.get(f"cstat_{name}{k}") for k in ("", "_expected", "_sigma"))
        if c is not None and e and sd:
            fit.append(f"{name} {c:.0f} vs {e:.0f} ± {sd:.0f} ({c / e:.2f})")
    if fit:
        line += ("\nfit: C-statistic vs its expectation under the fitted model: "
                 + ", ".join(fit))
    return line


def metrics_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table of metric rows (``{name: {"NMSE": ..., ...}}``)."""
    head = f"{'':<18}{'NMSE (dB)':>11}{'aSAM (rad)':>12}{'acSSIM':>10}{'ERGAS':>10}"
    lines = [head]

    def f(v, w, p):
        return f"{'n/a':>{w}}" if v is None or not math.isfinite(v) else f"{v:>{w}.{p}f}"

    for name, r in rows.items():
        lines.append(f"{name:<18}{f(r['NMSE'], 11, 2)}{f(r['aSAM'], 12, 4)}"
                     f"{f(r['acSSIM'], 10, 4)}{f(r['ERGAS'], 10, 4)}")
    lines.append("(NMSE: higher is better; aSAM, acSSIM = mean(1 - SSIM), ERGAS: lower is better)")
    return "\n".join(lines)


def _score(Z, ds) -> dict[str, dict[str, float]]:
    """Fused result and both single-instrument baselines against Z_true."""
    from .baselines import baseline_report
    from .metrics import report

    if "Z_true" not in ds:
        raise CLIError("the problem has no 'Z_true' (only simulated problems carry the truth); "
                       "metrics need it")
    ratio = ergas_ratio(ds)
    Zt = ds["Z_true"].transpose("energy", "y", "x")
    rows = {"fused": report(Z.transpose("energy", "y", "x"), Zt, ratio=ratio)}
    rows.update(baseline_report(ds, ratio=ratio))
    return rows


def _metrics_doc(rows, Z, ds, extra: Mapping | None = None) -> dict:
    doc = {
        "metrics": rows,
        "ergas_ratio": ergas_ratio(ds),
        "solver": _solver_summary(Z),
        "problem": {k: ds.attrs[k] for k in ("scenario", "seed", "scale") if k in ds.attrs},
    }
    doc.update(extra or {})
    return _clean(doc)


def _write_json(doc: Mapping, path: str) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (a temporary file beside it, then a rename),
    replacing an existing file."""
    from ._atomic import atomic_path

    with atomic_path(path, overwrite=True, suffix=".json") as tmp, open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(ds, Z, out: str) -> dict[str, str]:
    """The demo's PNGs in ``out``: amplitude maps, spectra at a bright and a dim pixel, the
    objective curve and SAM maps. Returns ``{kind: path}``."""
    from . import plotting
    from .baselines import x_only, y_only
    from .metrics import sam_map

    plotting.require_matplotlib()
    truth = ds["Z_true"].transpose("energy", "y", "x")
    Zx, Zy = x_only(ds), y_only(ds)
    bright, dim = plotting.pick_pixels(truth.sum("energy"))
    paths = {k: os.path.join(out, v) for k, v in PLOTS.items()}
    plotting.amplitude_maps({"truth": truth, "fused": Z, "X only": Zx, "Y only": Zy},
                            paths["amplitude"], marks=(bright, dim))
    plotting.spectra({"Y only": Zy, "X only": Zx, "truth": truth, "fused": Z}, (bright, dim),
                     paths["spectra"],
                     labels=[f"1: bright pixel (y={bright[0]}, x={bright[1]})",
                             f"2: dim pixel (y={dim[0]}, x={dim[1]})"])
    hist = list(Z.attrs.get("objective_history", []))
    first = max(0, int(Z.attrs.get("iterations", len(hist))) - len(hist) + 1)
    plt = plotting.require_matplotlib()
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    plotting.objective_curve(hist, a0, first=first, label=Z.attrs.get("regularizer"))
    plotting.objective_curve(hist, a1, first=first, relative=True)
    fig.suptitle(_solver_line(Z))
    fig.savefig(paths["objective"], dpi=110)
    plt.close(fig)
    plotting.sam_map({"fused": sam_map(Z, truth), "X only": sam_map(Zx, truth),
                      "Y only": sam_map(Zy, truth)}, paths["sam"])
    return paths


# ----------------------------------------------------------------------------- commands
def _simulate(args):
    from .simulate import scenario

    t0 = time.perf_counter()
    ds = scenario(args.name, seed=args.seed, scale=args.scale)
    if getattr(args, "background", None) is not None:
        from .simulate import add_background

        fx, fy = _floats(args.background, 2, "--background")
        ds = add_background(ds, fraction_X=fx, fraction_Y=fy, seed=args.seed + 1)
    return ds, time.perf_counter() - t0


def _sizes(ds) -> str:
    s = ds.sizes
    return (f"X {s['energy_coarse']}x{s['y']}x{s['x']}, Y {s['energy']}x{s['y_coarse']}x"
            f"{s['x_coarse']}, Z {s['energy']}x{s['y']}x{s['x']}")


def cmd_simulate(args) -> int:
    _check_out(args.out, "problem", args)
    ds, dt = _simulate(args)
    path = _write_zarr(ds, args.out, "problem", args.overwrite)
    _say(args, f"simulated {args.name} (scale {args.scale}, seed {args.seed}): {_sizes(ds)} "
               f"in {dt:.1f} s; wrote {path}")
    return 0


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--option-x``/``--option-y``: VALUE as JSON (numbers, lists, null,
    true/false), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a read_events argument), got "
                                         f"{text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def _assemble_kwargs(args) -> dict:
    """The arguments of :func:`xfusion.io.from_files` given on the command line."""
    band = _floats(args.band, 2, "--band")
    opts_X, opts_Y = dict(args.option_x or []), dict(args.option_y or [])
    for opts, value, name in ((opts_X, args.exposure_x, "X"), (opts_Y, args.exposure_y, "Y")):
        if value is not None:
            if "exposure" in opts:
                raise CLIError(f"--exposure-{name.lower()} and --option-{name.lower()} "
                               f"exposure=... both given")
            opts["exposure"] = value
    kw = dict(energy_band=tuple(band), n_energy=args.n_energy, energy_bin=args.energy_bin,
              vL=args.vl, pixel_size=args.pixel_size, instrument_X=args.instrument_x,
              instrument_Y=args.instrument_y, options_X=opts_X, options_Y=opts_Y,
              psf_rotation=args.psf_rotation, psf_size=args.psf_size,
              psf_pixel_size=args.psf_pixel_size, edge_tolerance=args.edge_tolerance or None)
    if args.expmap_x:
        kw["expmap_X"] = args.expmap_x[0] if len(args.expmap_x) == 1 else list(args.expmap_x)
    if args.expmap_y:
        kw["expmap_Y"] = args.expmap_y[0] if len(args.expmap_y) == 1 else list(args.expmap_y)
    for name in ("x", "y"):
        bkg = getattr(args, f"background_{name}")
        if bkg is not None:
            kw[f"background_{name.upper()}"] = bkg
            kw[f"background_options_{name.upper()}"] = dict(
                getattr(args, f"background_option_{name}") or [])
    if args.rmf_extension is not None:
        kw["rmf_extension"] = (int(args.rmf_extension) if args.rmf_extension.isdigit()
                               else args.rmf_extension)
    return kw


def cmd_assemble(args) -> int:
    from .io import from_files

    for what, path in (("EVENTS_X", args.events_x), ("EVENTS_Y", args.events_y),
                       ("--rmf-x", args.rmf_x), ("--arf-x", args.arf_x),
                       ("--arf-y", args.arf_y), ("--psf-y", args.psf_y),
                       ("--background-x", args.background_x),
                       ("--background-y", args.background_y),
                       *(("--expmap-x", f) for f in args.expmap_x or ()),
                       *(("--expmap-y", f) for f in args.expmap_y or ())):
        if path is not None and not os.path.exists(path):
            raise CLIError(f"{what}: no such file: {path}")
    _check_out(args.out, "problem", args)
    t0 = time.perf_counter()
    ds = from_files(args.events_x, args.events_y, args.rmf_x, args.arf_x, args.arf_y,
                    args.psf_y, **_assemble_kwargs(args))
    path = _write_zarr(ds, args.out, "problem", args.overwrite)
    _say(args, f"assembled {_sizes(ds)} in {time.perf_counter() - t0:.1f} s: "
               f"X {int(ds.X.sum())} counts in {ds.X.attrs['exposure']:.6g} s, "
               f"Y {int(ds.Y.sum())} counts in {ds.Y.attrs['exposure']:.6g} s, "
               f"PSF {ds.psf_Y.shape[-2]}x{ds.psf_Y.shape[-1]} holding "
               f"{float(ds.psf_Y.sum(('psf_y', 'psf_x')).max()):.4f}, "
               f"roll {ds.attrs['rotation']:.2f} deg; wrote {path}")
    return 0


def cmd_fuse(args) -> int:
    ds = _open_problem(args.problem)
    # xf.fuse checks --out and --checkpoint against the problem, each other and the disk
    # before solving, and writes Z atomically
    Z = _fuse(ds, args, output=args.out)
    print(_solver_line(Z))
    print(f"wrote {args.out}")
    if "Z_true" in ds:
        print(metrics_table(_score(Z.load(), ds)))
    return 0


def cmd_metrics(args) -> int:
    Z = _open_fused(args.fused)
    ds = _open_problem(args.problem)
    if Z.sizes != {"energy": ds.sizes["energy"], "y": ds.sizes["y"], "x": ds.sizes["x"]}:
        raise CLIError(f"{args.fused} has Z of sizes {dict(Z.sizes)}, which is not the grid of "
                       f"{args.problem} (energy {ds.sizes['energy']}, y {ds.sizes['y']}, "
                       f"x {ds.sizes['x']})")
    rows = _score(Z, ds)
    print(_solver_line(Z))
    print(metrics_table(rows))
    if args.json:
        _write_json(_metrics_doc(rows, Z, ds), args.json)
        print(f"wrote {args.json}")
    return 0


def demo(args) -> dict:
    """Simulate, fuse, score and plot; returns the metrics document (also in metrics.json)."""
    t_all = time.perf_counter()
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} exists and is not a directory")
    os.makedirs(out, exist_ok=True)
    problem_path = os.path.join(out, "problem.zarr")
    fused_path = os.path.join(out, "fused.zarr")

    args.name = args.scenario
    _say(args, f"[1/4] simulating {args.scenario} at scale {args.scale} (seed {args.seed})")
    ds, dt = _simulate(args)
    _write_zarr(ds, problem_path, "problem", True)   # the demo's own directory
    _say(args, f"      {_sizes(ds)}; {int(ds.X.sum())} + {int(ds.Y.sum())} counts; "
               f"{dt:.1f} s; wrote {problem_path}")

    _say(args, f"[2/4] fusing with regularizer {args.regularizer!r}")
    Z = _fuse(ds, args)
    _write_zarr(_sky().to_dataset(Z, "Z"), fused_path, "fused", True)
    _say(args, f"      wrote {fused_path}")

    _say(args, "[3/4] scoring against the truth (and the single-instrument baselines)")
    rows = _score(Z, ds)

    files = {"problem": problem_path, "fused": fused_path,
             "metrics": os.path.join(out, "metrics.json")}
    if args.no_plots:
        _say(args, "[4/4] plots skipped (--no-plots)")
    elif not _have_matplotlib():
        print("note: matplotlib is not installed, so no PNGs were written; "
              "pip install 'xfusion[plot]' to get them", file=sys.stderr)
    else:
        _say(args, "[4/4] plotting")
        files.update(write_plots(ds, Z, out))

    doc = _metrics_doc(rows, Z, ds, {
        "command": "xfusion " + " ".join(getattr(args, "argv", ["demo"])),
        "files": {k: os.path.basename(v) for k, v in files.items()},
    })
    _write_json(doc, files["metrics"])

    print()
    print(f"{args.scenario} (scale {args.scale}, seed {args.seed}): {_sizes(ds)}")
    print(_solver_line(Z))
    print(metrics_table(rows))
    print(f"(ERGAS pixel-size ratio d = {doc['ergas_ratio']:.4g})")
    print(f"wrote {', '.join(os.path.basename(p) for p in files.values())} to {out}/ "
          f"({time.perf_counter() - t_all:.1f} s in all)")
    return doc


# ----------------------------------------------------------------------------- science out
def _sky():
    from . import sky

    return sky


def _open_store(path: str, kind: str, needs: Sequence[str]):
    """A store of ``kind`` (uncertainty, lines) written by this command line."""
    import xarray as xr

    if not os.path.exists(path):
        raise CLIError(f"no such {kind} store: {path}")
    try:
        ds = xr.open_zarr(path, consolidated=None)
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"cannot read a {kind} store from {path}: {_one_line(e)}") from e
    missing = [v for v in needs if v not in ds]
    if missing:
        raise CLIError(f"{path} holds no {', '.join(missing)} (variables: "
                       f"{sorted(ds.data_vars)}); is it the output of 'xfusion {kind}'?")
    return ds


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise CLIError(f"{what} must be {n} comma-separated numbers, got {text!r}")
    return vals


def _region(args, Z):
    """The region of ``--box`` / ``--pixels`` / ``--circle`` (exactly one)."""
    given = [a for a in ("box", "pixels", "circle") if getattr(args, a, None)]
    if len(given) != 1:
        raise CLIError("--spectrum needs exactly one region: --box Y0:Y1,X0:X1, "
                       "--pixels 'IY,IX;IY,IX' or --circle RA,DEC,RADIUS_ARCSEC")
    if args.circle:
        return tuple(_floats(args.circle, 3, "--circle RA,DEC,RADIUS_ARCSEC"))
    if args.pixels:
        try:
            return [tuple(int(v) for v in p.split(",")) for p in args.pixels.split(";")
                    if p.strip()]
        except ValueError:
            raise CLIError(f"--pixels must be 'IY,IX;IY,IX;...', got {args.pixels!r}") from None
    import numpy as np

    try:
        (y0, y1), (x0, x1) = (tuple(int(v) for v in part.split(":"))
                              for part in args.box.split(","))
    except ValueError:
        raise CLIError(f"--box must be Y0:Y1,X0:X1 (0-based, end excluded), got "
                       f"{args.box!r}") from None
    ny, nx = Z.sizes["y"], Z.sizes["x"]
    if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise CLIError(f"--box {args.box} is not inside the {ny}×{nx} image")
    m = np.zeros((ny, nx), bool)
    m[y0:y1, x0:x1] = True
    return m


def _line_arg(text: str):
    try:
        return float(text)
    except ValueError:
        return text           # a line name, e.g. "Fe XXV"


def cmd_uncertainty(args) -> int:
    from ._store import check_output
    from .uncertainty import bootstrap, uncertainty

    ds = _open_problem(args.problem)
    Z = _open_fused(args.fused)
    check_output(args.out, "--out", overwrite=args.overwrite, kinds=("uncertainty",),
                 inputs={"problem": args.problem, "fused cube": args.fused},
                 option="--overwrite")
    draws = bootstrap(ds, Z, n_draws=args.draws, seed=args.seed, progress=not args.quiet)
    err = uncertainty(ds, Z, draws=draws)
    out = err.to_dataset(name="Z_err")
    out["Z_draws"] = draws
    _write_zarr(out, args.out, "uncertainty", args.overwrite)
    rel = float(err.sum() / max(float(Z.sum()), 1e-300))
    print(f"{args.draws} bootstrap refits; median per-voxel error "
          f"{float(err.median()):.3g} {Z.attrs.get('units', '')}; summed errors / summed flux "
          f"{rel:.3g}")
    print(f"wrote {args.out}")
    return 0


def _errors(args, Z):
    """(sigma, draws) from ``--errors``, checked against Z's grid, or (None, None)."""
    if not getattr(args, "errors", None):
        return None, None
    e = _open_store(args.errors, "uncertainty", ("Z_err",))
    sizes = {d: Z.sizes[d] for d in ("energy", "y", "x")}
    if {d: e["Z_err"].sizes[d] for d in ("energy", "y", "x")} != sizes:
        raise CLIError(f"{args.errors} is for a cube of sizes {dict(e['Z_err'].sizes)}, not "
                       f"{sizes} ({args.fused})")
    sigma = e["Z_err"].load()
    draws = e["Z_draws"].load() if "Z_draws" in e else None
    return sigma, draws


def _write_line_map(lm, Z, path: str, overwrite: bool) -> None:
    if path.endswith((".fits", ".fits.gz", ".fit")):
        import numpy as np
        from astropy.io import fits

        from .io._fits import write_atomic

        hdus = [fits.PrimaryHDU()]
        try:
            wh = _sky().celestial_wcs(Z).to_header()
        except ValueError:
            wh = fits.Header()
        for name, v in lm.data_vars.items():
            if set(v.dims) != {"y", "x"}:
                continue
            h = fits.ImageHDU(np.asarray(v.transpose("y", "x").values, np.float32),
                              header=wh.copy(), name=str(name).upper()[:8])
            h.header["BUNIT"] = str(v.attrs.get("units", ""))
            hdus.append(h)
        hdus[0].header["LINE"] = (float(lm.attrs.get("line", float("nan"))), "rest keV")
        write_atomic(fits.HDUList(hdus), path, overwrite)
    else:
        _write_zarr(lm, path, "lines", overwrite)


def cmd_export(args) -> int:
    Z = _open_fused(args.fused)
    if not (args.fits or args.spectrum or args.line_map):
        raise CLIError("nothing to export: give --fits, --spectrum or --line-map")
    sigma, draws = _errors(args, Z)
    if args.fits:
        from .io import write_fits_cube

        write_fits_cube(Z.load(), args.fits, sigma=sigma, overwrite=args.overwrite)
        print(f"wrote {args.fits}")
    if args.spectrum:
        from .io import write_spectrum

        files = write_spectrum(Z.load(), _region(args, Z), args.spectrum,
                               sigma=None if draws is not None else sigma, draws=draws,
                               overwrite=args.overwrite)
        print("wrote " + ", ".join(files.values() if isinstance(files, dict) else files))
    if args.line_map:
        from .lines import line_map

        lm = line_map(Z.load(), _line_arg(args.line), sigma=None if draws is not None
                      else sigma, draws=draws)
        _write_line_map(lm, Z, args.line_map, args.overwrite)
        v = lm["velocity"]
        n = int(v.notnull().sum())
        print(f"line {lm.attrs.get('line')} keV: velocity in {n} of {v.size} pixels"
              + (f", median {float(v.median()):+.0f} km/s" if n else ""))
        print(f"wrote {args.line_map}")
    return 0


def _positions(args, Z) -> list[tuple[int, int]]:
    """Pixels of ``--pixel IY,IX`` and ``--at RA,DEC`` (nearest pixel), in order."""
    import numpy as np

    out = []
    for p in args.pixel or []:
        iy, ix = (int(v) for v in _floats(p, 2, "--pixel IY,IX"))
        if not (0 <= iy < Z.sizes["y"] and 0 <= ix < Z.sizes["x"]):
            raise CLIError(f"--pixel {p} is outside the {Z.sizes['y']}×{Z.sizes['x']} image")
        out.append((iy, ix))
    for p in args.at or []:
        ra, dec = _floats(p, 2, "--at RA,DEC")
        try:
            w = _sky().celestial_wcs(Z)
        except ValueError as e:
            raise CLIError(f"--at needs a cube on the sky: {_one_line(e)}") from e
        px, py = (float(v) for v in w.world_to_pixel_values(ra, dec))
        iy, ix = int(np.round(py)), int(np.round(px))
        if not (0 <= iy < Z.sizes["y"] and 0 <= ix < Z.sizes["x"]):
            raise CLIError(f"--at {p} falls outside the image (pixel y={iy}, x={ix})")
        out.append((iy, ix))
    return out


def _plot_cubes(Z, ds) -> tuple[dict, object]:
    """The cubes the plots compare (truth if simulated, fused, X only, Y only) and the truth."""
    cubes = {"fused": Z}
    truth = None
    if ds is not None:
        from .baselines import x_only, y_only

        if "Z_true" in ds:
            truth = ds["Z_true"].transpose("energy", "y", "x")
            cubes = {"truth": truth, **cubes}
        cubes.update({"X only": x_only(ds), "Y only": y_only(ds)})
    return cubes, truth


def _plot_spectra(out: str, Z, cubes: dict, pix, sigma) -> str:
    """``spectra.png``: the cubes' spectra at ``pix``, with the fused ±1σ band if ``sigma``."""
    from . import plotting

    order = [k for k in ("Y only", "X only", "truth", "fused") if k in cubes]
    spec = {k: cubes[k] for k in order}
    p = os.path.join(out, "spectra.png")
    fig = plotting.spectra(spec, pix, p, labels=[f"{i + 1}: pixel (y={y}, x={x})"
                                                 for i, (y, x) in enumerate(pix)])
    if sigma is not None:       # the fused spectra's ±1σ band, on the same figure
        E = Z["energy"].values
        for ax, (y, x) in zip(fig.axes, pix, strict=False):
            z, e = Z.values[:, y, x], sigma.values[:, y, x]
            ax.fill_between(E, z - e, z + e, color="tab:red", alpha=0.25, lw=0,
                            label="fused ±1σ")
            ax.legend(fontsize="small")
        fig.savefig(p, dpi=110)
    return p


def _plot_sam(out: str, Z, cubes: dict, truth) -> str:
    """``sam_map.png``: the spectral angle of the fused (and baseline) cubes to the truth."""
    from . import plotting
    from .metrics import sam_map

    p = os.path.join(out, "sam_map.png")
    sams = {"fused": sam_map(Z, truth)}
    if "X only" in cubes:
        sams.update({"X only": sam_map(cubes["X only"], truth),
                     "Y only": sam_map(cubes["Y only"], truth)})
    plotting.sam_map(sams, p)
    return p


def _plot_error_maps(out: str, Z, sigma, draws) -> str:
    """``error_maps.png``: band flux, its 1σ error (bootstrap or per-voxel) and the ratio."""
    from . import plotting

    band = (draws.sum("energy").std("draw", ddof=1) if draws is not None
            else (sigma ** 2).sum("energy") ** 0.5)
    flux = Z.sum("energy")
    p = os.path.join(out, "error_maps.png")
    plotting.maps({"band flux": flux, "its error (1σ)": band,
                   "relative error": band / flux.where(flux > 0)},
                  p, units={"band flux": "photons cm⁻² s⁻¹",
                            "its error (1σ)": "photons cm⁻² s⁻¹"},
                  suptitle=f"{plotting.band_label(Z)}; "
                           + ("bootstrap" if draws is not None else "per-voxel errors"))
    return p


def _plot_velocity(out: str, Z, line: str, sigma, draws) -> str:
    """``velocity_maps.png``: velocity, its error and the flux of ``line``."""
    from . import plotting
    from .lines import line_map

    lm = line_map(Z, _line_arg(line), sigma=None if draws is not None else sigma,
                  draws=draws)
    p = os.path.join(out, "velocity_maps.png")
    plotting.maps({"velocity": lm["velocity"], "velocity error": lm["velocity_err"],
                   "line flux": lm["flux"]}, p,
                  units={"velocity": "km/s", "velocity error": "km/s",
                         "line flux": "photons cm⁻² s⁻¹"}, symmetric=("velocity",),
                  suptitle=f"line at {lm.attrs.get('line')} keV (rest)")
    return p


def cmd_plot(args) -> int:
    from . import plotting

    plotting.require_matplotlib()
    Z = _open_fused(args.fused).load()
    ds = _open_problem(args.problem) if args.problem else None
    sigma, draws = _errors(args, Z)
    os.makedirs(args.out, exist_ok=True)
    files = []
    cubes, truth = _plot_cubes(Z, ds)
    pix = _positions(args, Z) or list(plotting.pick_pixels(Z.sum("energy")))
    p = os.path.join(args.out, "amplitude_maps.png")
    plotting.amplitude_maps(cubes, p, marks=pix)
    files.append(p)
    files.append(_plot_spectra(args.out, Z, cubes, pix, sigma))
    if truth is not None:
        files.append(_plot_sam(args.out, Z, cubes, truth))
    if draws is not None or sigma is not None:
        files.append(_plot_error_maps(args.out, Z, sigma, draws))
    if args.line:
        files.append(_plot_velocity(args.out, Z, args.line, sigma, draws))
    print("wrote " + ", ".join(os.path.basename(f) for f in files) + f" to {args.out}/")
    return 0


# ----------------------------------------------------------------------------- parser
def _add_fuse_options(p: argparse.ArgumentParser, default_reg: str) -> None:
    p.add_argument("--regularizer", default=default_reg, choices=REGULARIZERS,
                   help=f"regularizer (default {default_reg})")
    p.add_argument("--max-iter", type=int, default=None,
                   help="iteration cap (default: xf.fuse's)")
    p.add_argument("--rank", type=_rank_arg, default=10,
                   help="subspace rank of lrs/lrw2d/lr, or 'auto' (the smallest rank whose "
                        "spectra describe Y to the noise); default 10, lowered on tiny problems")
    p.add_argument("--tol", type=float, default=None,
                   help="relative objective change to stop at (default: xf.fuse's)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or step lines")


def _add_demo_parser(sub) -> None:
    """The ``demo`` subcommand: simulate, fuse, score and plot a small scenario."""
    p = sub.add_parser("demo", help="simulate a small scenario, fuse it, print metrics, plot",
                       description="Simulate a scenario, fuse it, compare with the "
                                   "single-instrument baselines, write Zarr stores, "
                                   "metrics.json and PNGs to --out.")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO,
                   help=f"scenario name (default {DEFAULT_SCENARIO})")
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                   help=f"grid shrink factor (default {DEFAULT_SCALE})")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--out", default="xfusion-demo", help="output directory (default "
                                                         "./xfusion-demo)")
    p.add_argument("--no-plots", action="store_true", help="do not write PNGs")
    _add_fuse_options(p, DEFAULT_REGULARIZER)
    p.set_defaults(func=demo)


def _add_simulate_parser(sub) -> None:
    """The ``simulate`` subcommand: write a simulated scenario to a Zarr store."""
    p = sub.add_parser("simulate", help="write a simulated scenario to a Zarr store")
    p.add_argument("name", help="scenario name (see xfusion.simulate.SCENARIOS)")
    p.add_argument("--out", required=True, help="Zarr store to write (e.g. problem.zarr)")
    p.add_argument("--scale", type=float, default=1.0, help="grid shrink factor (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--background", metavar="FX,FY", default=None,
                   help="add a known flat background making these fractions of X's and Y's "
                        "counts (e.g. 0.3,0.5; xfusion.simulate.add_background)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is a problem store written by xfusion")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_simulate)


def _add_assemble_parser(sub) -> None:
    """The ``assemble`` subcommand: event lists and calibration files to a problem store."""
    p = sub.add_parser(
        "assemble", help="event lists, responses and PSF to a problem store",
        description="Read X's and Y's event lists, X's RMF and ARF, Y's ARF and PSF, bin them "
                    "on aligned grids (xf.io.from_files) and write the problem to a Zarr store "
                    "for 'xfusion fuse'.")
    p.add_argument("events_x", metavar="EVENTS_X", help="X's event list (e.g. EPIC-pn)")
    p.add_argument("events_y", metavar="EVENTS_Y", help="Y's event list (e.g. Resolve)")
    p.add_argument("--rmf-x", required=True, help="X's RMF (or a full response with the "
                                                  "area folded in, then no --arf-x)")
    p.add_argument("--arf-x", default=None, help="X's ARF")
    p.add_argument("--arf-y", required=True, help="Y's ARF")
    p.add_argument("--psf-y", required=True, help="Y's PSF image (FITS)")
    p.add_argument("--band", required=True, help="Z's band EMIN,EMAX in keV")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--n-energy", type=int, default=None, help="number L of Z's energy bins")
    g.add_argument("--energy-bin", type=float, default=None, help="width of Z's energy bins "
                                                                 "(keV)")
    p.add_argument("--vl", type=int, required=True, help="Z bins per X channel")
    p.add_argument("--pixel-size", type=float, required=True,
                   help="Z's pixel (arcsec); Y's pixel must be a whole number of them")
    p.add_argument("--instrument-x", default=None, help="X's event layout (epic, resolve, "
                                                        "generic; default: detected)")
    p.add_argument("--instrument-y", default=None, help="Y's event layout (default: detected)")
    p.add_argument("--exposure-x", type=float, default=None, help="X's exposure (s), "
                                                                  "overriding the header")
    p.add_argument("--exposure-y", type=float, default=None, help="Y's exposure (s)")
    p.add_argument("--option-x", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="another read_events argument for X (repeatable; VALUE as JSON), "
                        "e.g. pattern_max=12 or flag_mask=null")
    p.add_argument("--option-y", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="another read_events argument for Y, e.g. itype=[0,1]")
    p.add_argument("--expmap-x", action="append", metavar="FITS",
                   help="X's exposure map (eexpmap in s, mkexpmap in cm2 s; repeatable, one "
                        "per energy band): folded into X's (energy, y, x) effective area")
    p.add_argument("--expmap-y", action="append", metavar="FITS", help="Y's exposure map")
    p.add_argument("--background-x", default=None, metavar="PHA",
                   help="X's background spectrum (OGIP PHA), scaled by EXPOSURE, BACKSCAL, "
                        "AREASCAL onto every pixel (docs/real_data.md#backgrounds)")
    p.add_argument("--background-y", default=None, metavar="PHA", help="Y's background "
                                                                       "spectrum")
    p.add_argument("--background-option-x", type=_key_value, action="append",
                   metavar="KEY=VALUE", help="xf.io.background_spectrum argument for X's "
                                             "background, e.g. pixels=400 or backscal=1.2e4")
    p.add_argument("--background-option-y", type=_key_value, action="append",
                   metavar="KEY=VALUE", help="likewise for Y, e.g. pixels=35")
    p.add_argument("--edge-tolerance", type=float, default=0.05,
                   help="leave out of the likelihood X's channels of which more than this "
                        "share of the counts comes from outside the band (default 0.05; 0 "
                        "keeps every channel)")
    p.add_argument("--rmf-extension", default=None, help="name or index of X's matrix "
                                                         "extension")
    p.add_argument("--psf-rotation", type=float, default=0.0,
                   help="rotation (deg, counter-clockwise) from the PSF image to Z's grid")
    p.add_argument("--psf-size", type=int, default=None, help="PSF kernel size on Z's pixels")
    p.add_argument("--psf-pixel-size", type=float, default=None,
                   help="the PSF image's pixel (arcsec) when its header lacks it")
    p.add_argument("--out", required=True, help="Zarr store to write (e.g. problem.zarr)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is a problem store written by xfusion")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_assemble)


def _add_fuse_parser(sub) -> None:
    """The ``fuse`` subcommand: fuse a problem store into a fused-cube store."""
    p = sub.add_parser("fuse", help="fuse a problem store into a fused-cube store")
    p.add_argument("problem", help="problem Zarr store (xfusion simulate, xf.save_problem)")
    p.add_argument("--out", required=True, help="Zarr store for Z (e.g. fused.zarr)")
    p.add_argument("--checkpoint", default=None, help="write solver checkpoints to this store")
    p.add_argument("--resume", default=None, help="continue from this checkpoint (the same "
                   "problem and options; only --max-iter and --tol may change)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out / --checkpoint if they are stores of that kind written "
                        "by xfusion (never anything else)")
    _add_fuse_options(p, "w2d1d")
    p.set_defaults(func=cmd_fuse)


def _add_uncertainty_parser(sub) -> None:
    """The ``uncertainty`` subcommand: per-voxel errors by parametric bootstrap."""
    p = sub.add_parser("uncertainty", help="per-voxel errors of a fused cube (parametric "
                                          "bootstrap)")
    p.add_argument("problem", help="the problem store the cube was fused from")
    p.add_argument("fused", help="fused-cube store (xfusion fuse)")
    p.add_argument("--out", required=True, help="store for Z_err and the refits (Z_draws)")
    p.add_argument("--draws", type=int, default=16, help="bootstrap refits (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson redraws")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is an uncertainty store written by xfusion")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_uncertainty)


def _add_export_parser(sub) -> None:
    """The ``export`` subcommand: FITS cube, a region's OGIP spectrum, line maps."""
    p = sub.add_parser("export", help="a FITS cube, a region's spectrum (OGIP PHA + RMF + "
                                      "ARF) or a line map")
    p.add_argument("fused", help="fused-cube store (xfusion fuse)")
    p.add_argument("--errors", default=None, help="uncertainty store (xfusion uncertainty): "
                                                  "errors in the FITS cube, STAT_ERR, "
                                                  "velocity errors")
    p.add_argument("--fits", default=None, help="write Z as a FITS cube (celestial + "
                                                "spectral WCS)")
    p.add_argument("--spectrum", default=None, help="write the region's spectrum to this "
                                                    ".pha (with .rmf and .arf beside it)")
    p.add_argument("--box", default=None, help="region: Y0:Y1,X0:X1 (0-based pixels)")
    p.add_argument("--pixels", default=None, help="region: 'IY,IX;IY,IX;...'")
    p.add_argument("--circle", default=None, help="region: RA,DEC,RADIUS (deg, deg, arcsec)")
    p.add_argument("--line-map", default=None, help="write the line map (velocity, width, "
                                                    "flux and errors) to a Zarr store or "
                                                    ".fits")
    p.add_argument("--line", default="6.7", help="rest energy (keV) or name, e.g. 'Fe XXV' "
                                                 "(default 6.7)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=cmd_export)


def _add_plot_parser(sub) -> None:
    """The ``plot`` subcommand: maps, spectra, SAM, error and velocity maps."""
    p = sub.add_parser("plot", help="amplitude maps, spectra, SAM, error and velocity maps")
    p.add_argument("fused", help="fused-cube store (xfusion fuse)")
    p.add_argument("--out", default="xfusion-plots", help="directory for the PNGs")
    p.add_argument("--problem", default=None, help="the problem store: adds the truth (if "
                                                   "simulated) and the X-only / Y-only cubes")
    p.add_argument("--errors", default=None, help="uncertainty store: ±1σ bands, error maps")
    p.add_argument("--line", default=None, help="also velocity maps of this line (keV or "
                                                "name)")
    p.add_argument("--at", action="append", help="spectrum at RA,DEC (deg; repeatable)")
    p.add_argument("--pixel", action="append", help="spectrum at pixel IY,IX (repeatable)")
    p.set_defaults(func=cmd_plot)


def _add_metrics_parser(sub) -> None:
    """The ``metrics`` subcommand: score a fused cube against a problem's truth."""
    p = sub.add_parser("metrics", help="score a fused cube against a simulated problem's truth")
    p.add_argument("fused", help="fused Zarr store (xfusion fuse)")
    p.add_argument("problem", help="problem Zarr store with Z_true")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.set_defaults(func=cmd_metrics)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="xfusion",
        description="Hyperspectral fusion of X-ray data (HIFReD): fine pixels of one "
                    "instrument, fine spectra of another.")
    parser.add_argument("--version", action="version", version=f"xfusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo_parser(sub)
    _add_simulate_parser(sub)
    _add_assemble_parser(sub)
    _add_fuse_parser(sub)
    _add_uncertainty_parser(sub)
    _add_export_parser(sub)
    _add_plot_parser(sub)
    _add_metrics_parser(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from ._store import OutputError
    from .problem import ProblemError
    from .simulate import UnknownScenarioError

    errs: list[type[BaseException]] = [CLIError, ProblemError, UnknownScenarioError, OutputError,
                                       FileNotFoundError, FileExistsError, NotADirectoryError,
                                       PermissionError, ValueError]
    try:
        from .solver import SolverError

        errs.append(SolverError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    errors = _known_errors()
    try:
        with warnings.catch_warnings():
            # zarr 3 notes on every store it writes that consolidated metadata is not in its
            # spec; xarray reads it fine, and the note is noise on a command line.
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            r = args.func(args)
    except errors as e:
        if os.environ.get("XFUSION_DEBUG"):
            raise
        print(f"xfusion {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:         # the reader went away (| head): not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass
        return 0
    except KeyboardInterrupt:
        hint = ""
        if getattr(args, "checkpoint", None) and os.path.exists(args.checkpoint):
            hint = f"; continue with the same command plus --resume {args.checkpoint}"
        print(f"xfusion {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    return r if isinstance(r, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
