"""Naive single-instrument baselines: what each data set alone says about Z.

* :func:`x_only` keeps X's fine pixels and spreads its coarse channels over
  the fine energy grid;
* :func:`y_only` keeps Y's fine channels and spreads its coarse pixels over
  the fine pixel grid.

Both turn counts into photon flux per voxel (photons cm^-2 s^-1) by dividing
by exposure times effective area, and return a DataArray of dims
``(energy, y, x)`` on the problem's grid.  A problem's known background
(``background_X`` / ``background_Y``, expected counts) is subtracted from the
counts first; the difference is not clipped, so that the estimate stays
unbiased (a faint voxel may come out negative).  A fusion method should beat both;
:func:`baseline_report` scores them against ``Z_true``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from .metrics import report

__all__ = ["x_only", "y_only", "baseline_report"]

Spread = Literal["counts", "flux"]


def _factor(ds: xr.Dataset, fine: str, coarse: str) -> int:
    for d in (fine, coarse):
        if d not in ds.sizes:
            raise ValueError(f"fusion problem has no dimension {d!r}; dims are {dict(ds.sizes)}")
    nf, nc = ds.sizes[fine], ds.sizes[coarse]
    if nc == 0 or nf % nc != 0:
        raise ValueError(
            f"size of {fine!r} ({nf}) is not an integer multiple of size of {coarse!r} ({nc})"
        )
    return nf // nc


def _exposure(da: xr.DataArray, name: str) -> float:
    if "exposure" not in da.attrs:
        raise ValueError(f"variable {name!r} has no 'exposure' attribute (seconds)")
    t = float(da.attrs["exposure"])
    if not t > 0:
        raise ValueError(f"exposure of {name!r} must be positive; got {t}")
    return t


def _area(ds: xr.Dataset, name: str) -> np.ndarray:
    """Effective area on Z's grid as a float64 array broadcastable to (energy, y, x)."""
    if name not in ds:
        raise ValueError(f"fusion problem has no variable {name!r}")
    a = ds[name]
    if a.dims == ("energy",):
        return np.asarray(a.values, dtype=np.float64)[:, None, None]
    if set(a.dims) == {"energy", "y", "x"}:
        return np.asarray(a.transpose("energy", "y", "x").values, dtype=np.float64)
    raise ValueError(f"{name!r} must have dims ('energy',) or ('energy', 'y', 'x'); got {a.dims}")


def _to_flux(counts: np.ndarray, exposure: float, area: np.ndarray) -> np.ndarray:
    """counts / (t * A), 0 where A == 0."""
    ta = np.broadcast_to(exposure * area, counts.shape)
    out = np.zeros(counts.shape)
    np.divide(counts, ta, out=out, where=ta != 0)
    return out


def _source_counts(ds: xr.Dataset, name: str, dims: tuple[str, ...]) -> np.ndarray:
    """Counts ``name`` in float64, less the problem's known background if it has one."""
    counts = np.asarray(ds[name].transpose(*dims).values, dtype=np.float64)
    bkg = f"background_{name}"
    if bkg in ds.data_vars:
        counts = counts - np.asarray(ds[bkg].transpose(*dims).values, dtype=np.float64)
    return counts


def _block_sum(a: np.ndarray, axis: int, v: int) -> np.ndarray:
    shape = a.shape[:axis] + (a.shape[axis] // v, v) + a.shape[axis + 1 :]
    return a.reshape(shape).sum(axis=axis + 1)


def _wrap(ds: xr.Dataset, z: np.ndarray, method: str) -> xr.DataArray:
    dims = ("energy", "y", "x")
    coords = {k: v for k, v in ds.coords.items() if set(v.dims) <= set(dims)}
    return xr.DataArray(
        z,
        dims=dims,
        coords=coords,
        name="Z",
        attrs={"units": "photon cm-2 s-1", "method": method},
    )


def x_only(ds: xr.Dataset, spread: Spread = "flux") -> xr.DataArray:
    r"""Flux cube from X alone: X's pixels, its coarse channels spread over fine ones.

    Parameters
    ----------
    ds : xarray.Dataset
        Fusion problem with ``X`` (energy_coarse, y, x) counts, ``X.attrs['exposure']``
        (s) and ``arf_X`` (energy) or (energy, y, x) in cm^2.
    spread : {"counts", "flux"}, default "flux"
        How a coarse channel is shared among its :math:`v_L` fine channels.

    Returns
    -------
    xarray.DataArray
        Dims (energy, y, x), photons cm^-2 s^-1 per voxel, attrs
        ``{'units': 'photon cm-2 s-1', 'method': 'x_only'}``; coordinates of
        ``ds`` along energy, y, x.

    Notes
    -----
    With :math:`c(e)` the coarse channel containing fine channel :math:`e` and
    :math:`X` the counts less ``background_X`` when the problem has one:

    * ``"counts"`` (default): counts are shared evenly, then converted,

      .. math:: \hat Z_{e,p} = \frac{X_{c(e),p} / v_L}{t_X A_{X,e,p}} ;

    * ``"flux"``: the flux is taken constant inside a coarse channel,

      .. math:: \hat Z_{e,p} = \frac{X_{c(e),p}}{t_X \sum_{e' \in c(e)} A_{X,e',p}} ,

      which is exact for a flux that is flat within each coarse channel
      whatever the effective area.

    The two agree when :math:`A_X` is constant within each coarse channel.
    Voxels with zero effective area (zero block-summed area for ``"flux"``)
    get 0.  ``response_X`` is not used: channel :math:`c` is assumed to hold the
    photons of fine channels :math:`c v_L \ldots (c+1) v_L - 1`, i.e. the response
    is treated as a block sum (its spectral blur is ignored).  With
    ``"counts"``, counts shared onto zero-area voxels are dropped; otherwise
    :math:`\sum t_X A_X \hat Z = \sum X`.

    X channels left out of the likelihood (``observed_X`` False, e.g. band edges fed by photons
    from outside the band) are not used: their fine channels take the flux of the nearest fine
    channel of a used X channel.
    """
    vL = _factor(ds, "energy", "energy_coarse")
    counts = _source_counts(ds, "X", ("energy_coarse", "y", "x"))
    t = _exposure(ds["X"], "X")
    A = np.broadcast_to(_area(ds, "arf_X"), (ds.sizes["energy"],) + counts.shape[1:])
    if spread == "counts":
        z = _to_flux(np.repeat(counts, vL, axis=0) / vL, t, A)
    elif spread == "flux":
        z = np.repeat(_to_flux(counts, t, _block_sum(A, 0, vL)), vL, axis=0)
    else:
        raise ValueError(f"spread must be 'counts' or 'flux'; got {spread!r}")
    if "observed_X" in ds.coords:
        z = z[_nearest_used(np.repeat(np.asarray(ds.coords["observed_X"].values, bool), vL))]
    return _wrap(ds, z, "x_only")


def _nearest_used(used: np.ndarray) -> np.ndarray:
    """For each fine channel, the index of the nearest one whose X channel is used (itself
    when used; the lower one on a tie)."""
    idx = np.arange(used.size)
    ok = np.flatnonzero(used)
    hi = np.clip(np.searchsorted(ok, idx), 0, ok.size - 1)
    lo = np.clip(hi - 1, 0, ok.size - 1)
    return np.where(np.abs(ok[lo] - idx) <= np.abs(ok[hi] - idx), ok[lo], ok[hi])


def y_only(ds: xr.Dataset, spread: Spread = "flux") -> xr.DataArray:
    r"""Flux cube from Y alone: Y's channels, its coarse pixels spread over fine ones.

    Parameters
    ----------
    ds : xarray.Dataset
        Fusion problem with ``Y`` (energy, y_coarse, x_coarse) counts,
        ``Y.attrs['exposure']`` (s) and ``arf_Y`` (energy) or (energy, y, x) in cm^2.
    spread : {"counts", "flux"}, default "flux"
        How a coarse pixel is shared among its :math:`v_M \times v_N` fine pixels.

    Returns
    -------
    xarray.DataArray
        Dims (energy, y, x), photons cm^-2 s^-1 per voxel, attrs
        ``{'units': 'photon cm-2 s-1', 'method': 'y_only'}``.

    Notes
    -----
    With :math:`P(p)` the coarse pixel containing fine pixel :math:`p` and :math:`Y`
    the counts less ``background_Y`` when the problem has one:

    * ``"counts"`` (default):
      :math:`\hat Z_{e,p} = \dfrac{Y_{e,P(p)} / (v_M v_N)}{t_Y A_{Y,e,p}}`;
    * ``"flux"``:
      :math:`\hat Z_{e,p} = \dfrac{Y_{e,P(p)}}{t_Y \sum_{p' \in P(p)} A_{Y,e,p'}}`,
      exact for a flux flat within each coarse pixel, even with vignetting.

    They agree when :math:`A_Y` depends on energy only.  Zero area gives 0.
    Y's PSF is ignored (no deconvolution).
    """
    vM = _factor(ds, "y", "y_coarse")
    vN = _factor(ds, "x", "x_coarse")
    counts = _source_counts(ds, "Y", ("energy", "y_coarse", "x_coarse"))
    t = _exposure(ds["Y"], "Y")
    shape = (counts.shape[0], ds.sizes["y"], ds.sizes["x"])
    A = np.broadcast_to(_area(ds, "arf_Y"), shape)

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, vM, axis=1), vN, axis=2)

    if spread == "counts":
        z = _to_flux(up(counts) / (vM * vN), t, A)
    elif spread == "flux":
        z = up(_to_flux(counts, t, _block_sum(_block_sum(A, 1, vM), 2, vN)))
    else:
        raise ValueError(f"spread must be 'counts' or 'flux'; got {spread!r}")
    return _wrap(ds, z, "y_only")


def baseline_report(ds: xr.Dataset, ratio: float | None = None) -> dict[str, dict[str, float]]:
    """Score both baselines against the problem's ``Z_true``.

    Parameters
    ----------
    ds : xarray.Dataset
        A simulated fusion problem (it must hold ``Z_true``).
    ratio : float, optional
        Pixel-size ratio :math:`d` for ERGAS.  By default it is derived from the
        rebinning factors: :math:`d = 1/\\sqrt{v_M v_N}` (X's pixel size over Y's,
        i.e. :math:`1/v_M` for square pixels; 1 when the pixels are the same).

    Returns
    -------
    dict
        ``{"X only": report(x_only(ds), Z_true), "Y only": report(y_only(ds), Z_true)}``,
        each a dict with keys "NMSE", "aSAM", "acSSIM", "ERGAS".

    Raises
    ------
    ValueError
        If ``ds`` has no ``Z_true`` variable.
    """
    if "Z_true" not in ds:
        raise ValueError(
            "baseline_report needs the true cube: the dataset has no 'Z_true' variable "
            f"(variables: {sorted(ds.data_vars)})"
        )
    if ratio is None:
        vM = _factor(ds, "y", "y_coarse")
        vN = _factor(ds, "x", "x_coarse")
        ratio = 1.0 / float(np.sqrt(vM * vN))
    Zt = ds["Z_true"].transpose("energy", "y", "x")
    return {
        "X only": report(x_only(ds), Zt, ratio=ratio),
        "Y only": report(y_only(ds), Zt, ratio=ratio),
    }
