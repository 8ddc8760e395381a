"""Quick-look figures of a fusion result (needs matplotlib: ``pip install 'xfusion[plot]'``).

Every function takes cubes of dims ``(energy, y, x)`` (numpy arrays or DataArrays) or maps of
dims ``(y, x)``, and a *target*: a file path (the figure is written there with the Agg backend
and closed) or matplotlib Axes to draw into. Each returns the matplotlib Figure.

* :func:`amplitude_maps` -- energy-integrated flux images side by side (truth, fused, X only, ...);
* :func:`spectra` -- spectra of several cubes at given pixels (the paper's Fig. 7);
* :func:`objective_curve` -- the objective against the iteration, log scale;
* :func:`sam_map` -- the spectral angle map between a cube and the truth;
* :func:`maps` -- any (y, x) maps side by side, each with its own colour bar and unit (error
  maps, velocity maps and their errors).

:func:`pick_pixels` chooses a bright and a dim pixel for :func:`spectra`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["amplitude_maps", "spectra", "objective_curve", "sam_map", "pick_pixels", "maps",
           "band_label", "require_matplotlib"]


def require_matplotlib():
    """Import matplotlib with the Agg backend, or raise ImportError with the install hint."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install 'xfusion[plot]' (or pip install matplotlib)"
        ) from e
    if matplotlib.get_backend().lower() != "agg":
        try:
            matplotlib.use("Agg", force=False)
        except Exception:  # noqa: BLE001 - a backend already in use is fine for Axes targets
            pass
    import matplotlib.pyplot as plt

    return plt


def _cube(a: Any) -> np.ndarray:
    if hasattr(a, "dims") and "energy" in getattr(a, "dims", ()):
        a = a.transpose("energy", ...)
    a = a.data if hasattr(a, "dims") else a
    if hasattr(a, "compute") and not isinstance(a, np.ndarray):
        a = a.compute()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected a cube with dims (energy, y, x); got shape {a.shape}")
    return a


def _image(a: Any) -> np.ndarray:
    a = a.data if hasattr(a, "dims") else a
    if hasattr(a, "compute") and not isinstance(a, np.ndarray):
        a = a.compute()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a map with dims (y, x); got shape {a.shape}")
    return a


def _is_path(target: Any) -> bool:
    return isinstance(target, (str, os.PathLike))


def _axes(target: Any, n: int, figsize):
    """(figure, list of n axes, path or None) from a path, an Axes or a sequence of Axes."""
    plt = require_matplotlib()
    if target is None or _is_path(target):
        fig, axs = plt.subplots(1, n, figsize=figsize, squeeze=False, layout="constrained")
        return fig, list(axs[0]), (os.fspath(target) if target is not None else None)
    axs = list(np.ravel(target)) if isinstance(target, (Sequence, np.ndarray)) else [target]
    if len(axs) < n:
        raise ValueError(f"need {n} Axes to draw into, got {len(axs)}")
    return axs[0].figure, axs[:n], None


def _finish(fig, path: str | None, dpi: int = 110):
    if path is not None:
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        fig.savefig(path, dpi=dpi)
        import matplotlib.pyplot as plt

        plt.close(fig)
    return fig


def _extent(like: Any, shape: tuple[int, int]):
    """imshow extent in arcsec from a DataArray's y/x coordinates, else pixel indices."""
    try:
        y = np.asarray(like.coords["y"].values, dtype=float)
        x = np.asarray(like.coords["x"].values, dtype=float)
        dy = y[1] - y[0] if y.size > 1 else 1.0
        dx = x[1] - x[0] if x.size > 1 else 1.0
        return [x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2], "arcsec"
    except (AttributeError, KeyError, IndexError, TypeError):
        return [-0.5, shape[1] - 0.5, -0.5, shape[0] - 0.5], "pixel"


def pick_pixels(amplitude: Any, dim_fraction: float = 0.15) -> tuple[tuple[int, int], ...]:
    """A bright and a dim pixel of an amplitude image, as ``((yb, xb), (yd, xd))``.

    The bright pixel is the maximum. The dim one is, among pixels whose amplitude lies within
    ``[2/3, 4/3] × dim_fraction × max``, the one nearest the image centre (inside an extended
    source rather than on empty sky); if there is none, the pixel closest to that level.
    """
    a = _image(amplitude)
    yb, xb = np.unravel_index(int(np.argmax(a)), a.shape)
    level = dim_fraction * a.max()
    yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    ok = (a >= level * 2 / 3) & (a <= level * 4 / 3)
    if ok.any():
        r2 = (yy - (a.shape[0] - 1) / 2) ** 2 + (xx - (a.shape[1] - 1) / 2) ** 2
        idx = int(np.argmin(np.where(ok, r2, np.inf)))
    else:
        idx = int(np.argmin(np.abs(a - level)))
    yd, xd = np.unravel_index(idx, a.shape)
    return (int(yb), int(xb)), (int(yd), int(xd))


def amplitude_maps(cubes: Mapping[str, Any], target: Any = None, *, common_scale: bool = True,
                   marks: Sequence[tuple[int, int]] = (), cmap: str = "magma"):
    """Energy-integrated flux (sum over energy) of each cube, side by side.

    Parameters
    ----------
    cubes : mapping of title -> cube (energy, y, x)
        E.g. ``{"truth": ds.Z_true, "fused": Z, "X only": x_only(ds), "Y only": y_only(ds)}``.
    target : path, Axes or sequence of Axes
        Where to draw (one Axes per cube); a path writes a PNG.
    common_scale : bool
        One colour scale for all panels (that of the first cube), so they compare directly.
    marks : sequence of (y, x)
        Pixels to mark (e.g. those of :func:`spectra`).
    """
    plt = require_matplotlib()
    items = list(cubes.items())
    fig, axs, path = _axes(target, len(items), (3.2 * len(items) + 0.6, 3.4))
    imgs = [_cube(c).sum(axis=0) for _, c in items]
    vmin, vmax = (0.0, float(imgs[0].max())) if common_scale else (None, None)
    im = None
    for ax, (title, c), img in zip(axs, items, imgs, strict=True):
        ext, unit = _extent(c, img.shape)
        im = ax.imshow(img, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, extent=ext)
        band = band_label(c)
        ax.set_title(f"{title}\n{band}" if band else title)
        ax.set_xlabel(f"x ({unit})")
        for k, (py, px) in enumerate(marks):
            cx = ext[0] + (px + 0.5) * (ext[1] - ext[0]) / img.shape[1]
            cy = ext[2] + (py + 0.5) * (ext[3] - ext[2]) / img.shape[0]
            ax.plot(cx, cy, marker="o", mfc="none", mec="cyan", ms=8)
            ax.annotate(str(k + 1), (cx, cy), color="cyan", xytext=(5, 5),
                        textcoords="offset points")
        if not common_scale:
            plt.colorbar(im, ax=ax, shrink=0.8)
    axs[0].set_ylabel(f"y ({_extent(items[0][1], imgs[0].shape)[1]})")
    if common_scale and im is not None:
        fig.colorbar(im, ax=axs, shrink=0.8, label="photons cm⁻² s⁻¹ per pixel")
    return _finish(fig, path)


def spectra(cubes: Mapping[str, Any], pixels: Sequence[tuple[int, int]], target: Any = None, *,
            energy: Any = None, labels: Sequence[str] | None = None,
            styles: Mapping[str, Mapping] | None = None):
    """Spectra of several cubes at given pixels, one panel per pixel (the paper's Fig. 7).

    Parameters
    ----------
    cubes : mapping of label -> cube (energy, y, x)
        Drawn in order; e.g. Y only, X only, truth, fused.
    pixels : sequence of (y, x)
        Pixel indices, one panel each.
    target : path, Axes or sequence of Axes
    energy : array (energy,), optional
        Energies in keV; by default the ``energy`` coordinate of the first DataArray, else the
        channel index.
    labels : sequence of str, optional
        Panel titles (default ``"pixel (y, x)"``).
    styles : mapping of label -> matplotlib keyword arguments, optional
    """
    items = list(cubes.items())
    fig, axs, path = _axes(target, len(pixels), (6.0 * len(pixels), 3.8))
    if energy is None:
        for _, c in items:
            if hasattr(c, "coords") and "energy" in c.coords:
                energy = c.coords["energy"].values
                break
    data = [(name, _cube(c)) for name, c in items]
    xlabel = "energy (keV)"
    if energy is None:
        energy = np.arange(data[0][1].shape[0])
        xlabel = "channel"
    energy = np.asarray(energy, dtype=float)
    default = {
        "truth": {"color": "black", "lw": 1.2, "zorder": 4},
        "fused": {"color": "tab:red", "lw": 1.0, "zorder": 5},
        "X only": {"color": "tab:blue", "lw": 1.0, "alpha": 0.8, "drawstyle": "steps-mid"},
        "Y only": {"color": "tab:gray", "lw": 0.6, "alpha": 0.5},
    }
    for i, (ax, (py, px)) in enumerate(zip(axs, pixels, strict=True)):
        for name, c in data:
            st = dict(default.get(name, {"lw": 1.0}))
            if styles and name in styles:
                st.update(styles[name])
            ax.plot(energy, c[:, py, px], label=name, **st)
        ax.set_title(labels[i] if labels else f"pixel (y={py}, x={px})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("photons cm⁻² s⁻¹ per channel")
        ax.set_xlim(energy[0], energy[-1])
        ax.legend(fontsize="small")
    return _finish(fig, path)


def objective_curve(history: Any, target: Any = None, *, relative: bool = False,
                    first: int = 0, label: str | None = None):
    """The objective against the iteration, log scale.

    Parameters
    ----------
    history : sequence of float or DataArray
        The objective after every iteration, e.g. ``Z.attrs['objective_history']``;
        a fused DataArray is accepted too.
    target : path or Axes
    relative : bool
        Plot ``F_k - min F`` (the distance to the best value) instead of ``F_k``; the
        objective can be negative, which a log axis cannot show, so this is also used
        automatically when ``F`` is not positive.
    first : int
        Iteration number of the first entry (``xf.fuse`` records the starting point as
        iteration 0).
    """
    if hasattr(history, "attrs") and "objective_history" in getattr(history, "attrs", {}):
        history = history.attrs["objective_history"]
    h = np.asarray([np.nan if v is None else v for v in history], dtype=float)
    fig, axs, path = _axes(target, 1, (5.5, 3.8))
    ax = axs[0]
    it = np.arange(first, first + h.size)
    finite = h[np.isfinite(h)]
    if h.size == 0 or finite.size == 0:
        ax.text(0.5, 0.5, "no objective history", ha="center", transform=ax.transAxes)
        return _finish(fig, path)
    if relative or finite.min() <= 0:
        d = h - finite.min()
        keep = np.isfinite(d) & (d > 0)  # the best iterate itself has no distance to show
        ax.semilogy(it[keep], d[keep], label=label)
        ax.set_ylabel("objective − its minimum")
    else:
        ax.semilogy(it, h, label=label)
        ax.set_ylabel("objective")
    ax.set_xlabel("iteration")
    ax.grid(True, which="both", alpha=0.3)
    if label:
        ax.legend()
    return _finish(fig, path)


def sam_map(sam: Any, target: Any = None, *, title: str = "spectral angle",
            cmap: str = "viridis", vmax: float | None = None):
    """Map(s) of spectral angles (e.g. :func:`xfusion.metrics.sam_map`), mean in the title.

    Parameters
    ----------
    sam : array or DataArray (y, x), or mapping of title -> map
        Angles in radians; several maps are drawn side by side on one colour scale.
    target : path, Axes or sequence of Axes
    vmax : float, optional
        Top of the colour scale (default: the largest angle of all maps).
    """
    items = list(sam.items()) if isinstance(sam, Mapping) else [(title, sam)]
    imgs = [_image(m) for _, m in items]
    fig, axs, path = _axes(target, len(items), (3.6 * len(items) + 0.8, 3.6))
    if vmax is None:
        vmax = max(float(np.nanmax(i)) for i in imgs) if imgs else None
    im = None
    for ax, (name, m), img in zip(axs, items, imgs, strict=True):
        ext, unit = _extent(m, img.shape)
        im = ax.imshow(img, origin="lower", cmap=cmap, vmin=0, vmax=vmax, extent=ext)
        ax.set_title(f"{name}: mean {np.nanmean(img):.3f} rad")
        ax.set_xlabel(f"x ({unit})")
    axs[0].set_ylabel(f"y ({_extent(items[0][1], imgs[0].shape)[1]})")
    if im is not None:
        fig.colorbar(im, ax=axs, shrink=0.85, label="spectral angle (rad)")
    return _finish(fig, path)


def band_label(cube: Any) -> str:
    """``"0.50–1.50 keV"``: the band a cube covers (its ``energy`` coordinate, or its bin
    edges ``energy_lo`` / ``energy_hi``), or ``""`` without one."""
    coords = getattr(cube, "coords", {})
    if "energy_lo" in coords and "energy_hi" in coords:
        lo, hi = float(coords["energy_lo"].min()), float(coords["energy_hi"].max())
    elif "energy" in coords and coords["energy"].size:
        lo, hi = float(coords["energy"].min()), float(coords["energy"].max())
    else:
        return ""
    return f"{lo:.2f}–{hi:.2f} keV"


def maps(images: Mapping[str, Any], target: Any = None, *, units: Mapping[str, str] | None = None,
         cmaps: Mapping[str, str] | None = None, symmetric: Sequence[str] = (),
         suptitle: str | None = None, robust: bool = True):
    """(y, x) maps side by side, each with its own colour bar.

    Parameters
    ----------
    images : mapping of title -> map (y, x)
        E.g. ``{"velocity": lm.velocity, "velocity error": lm.velocity_err}``. NaN pixels
        (no measurement) are drawn blank.
    target : path, Axes or sequence of Axes
    units : mapping of title -> unit label for the colour bar, optional
    cmaps : mapping of title -> colormap name, optional (default ``viridis``)
    symmetric : titles whose colour scale is centred on 0 (``RdBu_r``), e.g. velocities
    suptitle : str, optional
    robust : bool
        Colour scales from the 1st to the 99th percentile (a few edge pixels with huge
        relative errors do not wash out the map); ``False``: the full range.
    """
    plt = require_matplotlib()
    items = list(images.items())
    fig, axs, path = _axes(target, len(items), (3.6 * len(items) + 0.6, 3.4))
    for ax, (title, m) in zip(axs, items, strict=True):
        img = _image(m)
        if img.ndim != 2:
            raise ValueError(f"maps: {title!r} has shape {img.shape}, expected (y, x)")
        ext, unit = _extent(m, img.shape)
        kw = {"cmap": (cmaps or {}).get(title, "viridis")}
        finite = img[np.isfinite(img)]
        if title in symmetric:
            a = np.abs(finite)
            lim = float(np.percentile(a, 99) if robust else a.max()) if a.size else 1.0
            kw.update(cmap="RdBu_r", vmin=-lim, vmax=lim)
        elif robust and finite.size:
            kw.update(vmin=float(np.percentile(finite, 1)), vmax=float(np.percentile(finite, 99)))
        im = ax.imshow(img, origin="lower", extent=ext, **kw)
        ax.set_title(title)
        ax.set_xlabel(f"x ({unit})")
        plt.colorbar(im, ax=ax, shrink=0.8, label=(units or {}).get(title, ""))
    axs[0].set_ylabel(f"y ({_extent(items[0][1], _image(items[0][1]).shape)[1]})")
    if suptitle:
        fig.suptitle(suptitle)
    return _finish(fig, path)
