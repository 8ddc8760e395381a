"""PSF images: reading them from FITS and resampling them onto Z's pixel grid.

A PSF file holds one image, or several image HDUs for several energies, each with an ``ENERGY``
keyword (keV) or ``ENERG_LO``/``ENERG_HI`` keywords. The pixel size comes from ``CDELT1/2``
(with ``CUNIT``; degrees by default), a ``CD`` matrix, or a ``PIXSCALE``/``PIXSIZE`` keyword in
arcsec — or from the ``psf_pixel_size`` argument.

Resampling integrates the image (taken as constant over each of its pixels) over the output
pixels exactly (separable overlap matrices), so flux is conserved; a rotation, when asked for,
is applied first on the input grid with bilinear interpolation. The result has odd sides and the
PSF centre on the central pixel. A PSF image is taken to hold the whole PSF (its sum over its full
extent is the PSF's total flux) unless ``total=`` gives that total in the image's units (e.g.
``total=1`` for an image normalised to the full PSF but cut before its wings end). The output sums
to the fraction of that total inside the kernel (``attrs['enclosed']``): flux beyond the kernel
is lost from Y's field, as on the sky, and is never put back into the core by renormalising.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from astropy.io import fits
from scipy import ndimage

from ._fits import FileFormatError, fspath, hdu_names, open_fits, write_atomic

__all__ = ["psf_from_fits", "resample_psf", "write_psf", "read_psf_images", "psf_on_grid"]


def _overlap(n_out: int, step_out: float, n_in: int, step_in: float, centre_in: float):
    """W[i, j]: fraction of input pixel j inside output pixel i (both centred on the PSF)."""
    out_lo = (np.arange(n_out) - (n_out - 1) / 2 - 0.5) * step_out
    in_lo = (np.arange(n_in) - centre_in - 0.5) * step_in
    lo = np.maximum(out_lo[:, None], in_lo[None, :])
    hi = np.minimum(out_lo[:, None] + step_out, in_lo[None, :] + step_in)
    return np.clip(hi - lo, 0, None) / step_in


def _centre(img: np.ndarray, centre) -> tuple[float, float]:
    if isinstance(centre, str):
        if centre == "centroid":
            tot = img.sum()
            yy, xx = np.indices(img.shape)
            return float((yy * img).sum() / tot), float((xx * img).sum() / tot)
        if centre == "peak":
            iy, ix = np.unravel_index(np.argmax(img), img.shape)
            return float(iy), float(ix)
        if centre == "image":
            return (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
        raise ValueError(f"centre must be 'centroid', 'peak', 'image' or (cy, cx), got {centre!r}")
    cy, cx = centre
    return float(cy), float(cx)


def resample_psf(
    image: np.ndarray,
    psf_pixel_size: float | Sequence[float],
    pixel_size: float,
    size: int | None = None,
    centre: str | Sequence[float] = "centroid",
    rotation: float = 0.0,
    total: float | None = None,
) -> tuple[np.ndarray, float]:
    """Resample a PSF image onto a grid of square ``pixel_size`` pixels.

    Parameters
    ----------
    image : ndarray (ny, nx)
        The PSF image (any normalisation, non-negative).
    psf_pixel_size : float or (float, float)
        Its pixel size in arcsec (or (y, x) sizes).
    pixel_size : float
        Output pixel size in arcsec (Z's pixels).
    size : int, optional
        Odd output side; default: the smallest odd size covering the whole input image.
    centre : 'centroid', 'peak', 'image' or (cy, cx)
        Where the PSF centre is in the input (0-based pixel coordinates); it lands at the centre
        of the output's central pixel.
    rotation : float
        Rotate the PSF counter-clockwise by this angle (deg; x right, y up) before resampling —
        e.g. the angle between the frame the PSF image is given in and the output grid.
    total : float, optional
        The PSF's total flux in the image's units. Default: the image's sum (the image holds the
        whole PSF). Give it when the image is cut before the wings end (``total=1`` for an image
        normalised to the full PSF); it must be at least the image's sum.

    Returns
    -------
    psf : ndarray (size, size)
        Non-negative, sums to ``enclosed`` (≤ 1): never renormalised to 1.
    enclosed : float
        Fraction of the PSF's total flux inside the output kernel.
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"PSF image must be 2-D and non-empty, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("PSF image has non-finite values")
    if (img < 0).any():
        raise ValueError(f"PSF image has negative values (min {img.min():.3g})")
    img_sum = float(img.sum())
    if img_sum <= 0:
        raise ValueError("PSF image sums to zero")
    if total is None:
        total = img_sum
    else:
        total = float(total)
        if not np.isfinite(total) or total < img_sum * (1 - 1e-6):
            raise ValueError(f"total={total!r}: must be finite and at least the PSF image's sum "
                             f"({img_sum:.8g})")
    if size is not None and (int(size) != size or size < 1 or size % 2 == 0):
        raise ValueError(f"size must be a positive odd integer, got {size}")
    py, px = (float(psf_pixel_size),) * 2 if np.ndim(psf_pixel_size) == 0 else \
        tuple(float(v) for v in psf_pixel_size)
    cy, cx = _centre(img, centre)
    if rotation:
        # pad to a square around the centre big enough for any rotation, then rotate about it
        half = int(np.ceil(np.hypot(max(cy, img.shape[0] - 1 - cy),
                                    max(cx, img.shape[1] - 1 - cx)))) + 1
        big = np.zeros((2 * half + 1, 2 * half + 1))
        oy, ox = half - int(round(cy)), half - int(round(cx))
        big[oy:oy + img.shape[0], ox:ox + img.shape[1]] = img
        cy, cx = cy + oy, cx + ox
        t = np.deg2rad(rotation)
        # output (y, x) relative to centre -> input position rotated back by -t
        m = np.array([[np.cos(t), -np.sin(t) * px / py], [np.sin(t) * py / px, np.cos(t)]])
        c = np.array([cy, cx])
        img = ndimage.affine_transform(big, m, offset=c - m @ c, order=1, mode="constant")
        img = np.clip(img, 0, None) * (img_sum / max(img.sum(), 1e-300))
    if size is None:
        half_y = max(cy + 0.5, img.shape[0] - cy - 0.5) * py
        half_x = max(cx + 0.5, img.shape[1] - cx - 0.5) * px
        size = 2 * int(np.ceil(max(half_y, half_x) / pixel_size - 0.5)) + 1
    Wy = _overlap(size, pixel_size, img.shape[0], py, cy)
    Wx = _overlap(size, pixel_size, img.shape[1], px, cx)
    out = Wy @ img @ Wx.T
    s = out.sum()
    if s <= 0:
        raise ValueError("no PSF flux falls inside the output kernel")
    out = out / total
    return out, float(min(out.sum(), 1.0))


def _pixel_size(h: fits.Header, path: str, ext: str) -> tuple[float, float]:
    scale = {"deg": 3600.0, "arcmin": 60.0, "arcsec": 1.0, "rad": 206264.80624709636}
    if "CDELT1" in h and "CDELT2" in h:
        out = []
        for i in (2, 1):
            unit = str(h.get(f"CUNIT{i}", "deg")).strip().lower() or "deg"
            if unit not in scale:
                raise FileFormatError(f"{path}[{ext}]: CUNIT{i} = {unit!r} is not an angle unit")
            out.append(abs(float(h[f"CDELT{i}"])) * scale[unit])
        return out[0], out[1]
    if "CD1_1" in h:
        cd = np.array([[h.get("CD1_1", 0.0), h.get("CD1_2", 0.0)],
                       [h.get("CD2_1", 0.0), h.get("CD2_2", 0.0)]], float)
        return (float(np.hypot(cd[0, 1], cd[1, 1]) * 3600),
                float(np.hypot(cd[0, 0], cd[1, 0]) * 3600))
    for k in ("PIXSCALE", "PIXSIZE"):
        if k in h:
            return float(h[k]), float(h[k])
    raise FileFormatError(f"{path}[{ext}]: no pixel size (CDELT1/2, CD1_1.. or PIXSCALE keyword, "
                          f"arcsec); pass psf_pixel_size=")


def read_psf_images(path, psf_pixel_size: float | None = None) -> list[dict]:
    """Read every non-empty 2-D image HDU of a PSF file.

    Returns
    -------
    list of dict
        Each with ``image`` (2-D array), ``pixel_size`` ((y, x) arcsec), ``energy`` (keV or
        None), ``energy_lo``/``energy_hi`` (keV or None), ``extension`` (name).
    """
    path = fspath(path)
    out = []
    with open_fits(path) as hdul:
        for i, h in enumerate(hdul):
            if not isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) or h.data is None:
                continue
            data = np.asarray(h.data, dtype=float)
            data = np.squeeze(data)
            name = str(h.header.get("EXTNAME", "PRIMARY" if i == 0 else f"#{i}"))
            if data.ndim != 2:
                raise FileFormatError(f"{path}[{name}]: PSF image must be 2-D, got shape "
                                      f"{data.shape}")
            hd = h.header
            ps = ((psf_pixel_size, psf_pixel_size) if psf_pixel_size is not None
                  else _pixel_size(hd, path, name))
            e = hd.get("ENERGY")
            lo, hi = hd.get("ENERG_LO"), hd.get("ENERG_HI")
            if e is None and lo is not None and hi is not None:
                e = 0.5 * (float(lo) + float(hi))
            out.append({"image": data, "pixel_size": ps, "extension": name,
                        "energy": None if e is None else float(e),
                        "energy_lo": None if lo is None else float(lo),
                        "energy_hi": None if hi is None else float(hi)})
        if not out:
            raise FileFormatError(f"{path}: no image HDU with data (HDUs: {hdu_names(hdul)})")
    for im in out:
        if not np.isfinite(im["image"]).all():
            raise FileFormatError(f"{path}[{im['extension']}]: PSF image has non-finite values")
        if (im["image"] < 0).any() or im["image"].sum() <= 0:
            raise FileFormatError(f"{path}[{im['extension']}]: PSF image has negative values or "
                                  f"no flux")
    return out


def _band_index(images: list[dict], centres: np.ndarray, path: str) -> np.ndarray:
    """For each energy, the image whose [ENERG_LO, ENERG_HI) holds it, else the nearest ENERGY."""
    if any(im["energy"] is None for im in images):
        raise FileFormatError(f"{path}: several PSF images but not all have an ENERGY (or "
                              f"ENERG_LO/ENERG_HI) keyword, so they cannot be assigned to energies")
    e = np.array([im["energy"] for im in images])
    idx = np.abs(centres[:, None] - e[None, :]).argmin(axis=1)
    for k, im in enumerate(images):
        if im["energy_lo"] is not None and im["energy_hi"] is not None:
            inside = (centres >= im["energy_lo"]) & (centres < im["energy_hi"])
            idx[inside] = k
    return idx


def psf_on_grid(images: list[dict], pixel_size: float, energy_edges=None, size: int | None = None,
                centre="centroid", rotation: float = 0.0, path: str = "<images>",
                total: float | None = None) -> xr.DataArray:
    """Resample PSF images (as from :func:`read_psf_images`) onto Z's grid; see
    :func:`psf_from_fits`."""
    res = [resample_psf(im["image"], im["pixel_size"], pixel_size, size=size, centre=centre,
                        rotation=rotation, total=total) for im in images]
    if size is None:  # one common (largest) size; pad the smaller ones
        size = max(r[0].shape[0] for r in res)
        res = [(np.pad(p, (size - p.shape[0]) // 2), f) for p, f in res]
    attrs = {"pixel_size": float(pixel_size), "units": "", "filename": path,
             "rotation": float(rotation)}
    if len(res) == 1 or energy_edges is None:
        if len(res) > 1:
            raise ValueError(f"{path}: {len(res)} PSF images; pass energy_edges= to assign them "
                             f"to energies")
        return xr.DataArray(res[0][0], dims=("psf_y", "psf_x"),
                            attrs={**attrs, "enclosed": res[0][1]})
    edges = np.asarray(energy_edges, float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    idx = _band_index(images, centres, path)
    cube = np.stack([res[k][0] for k in idx])
    return xr.DataArray(
        cube, dims=("energy", "psf_y", "psf_x"),
        coords={"energy": ("energy", centres, {"units": "keV"})},
        attrs={**attrs, "enclosed": float(min(r[1] for r in res)),
               "source_energies": [float(im["energy"]) for im in images]},
    )


def psf_from_fits(
    path,
    pixel_size: float,
    energy_edges: Sequence[float] | None = None,
    size: int | None = None,
    centre: str | Sequence[float] = "centroid",
    rotation: float = 0.0,
    psf_pixel_size: float | None = None,
    total: float | None = None,
) -> xr.DataArray:
    """Read a PSF FITS file and resample it onto Z's pixel grid.

    Parameters
    ----------
    path : str or path-like
        One PSF image, or several image HDUs with ``ENERGY`` (or ``ENERG_LO``/``ENERG_HI``)
        keywords in keV.
    pixel_size : float
        Z's pixel size (arcsec).
    energy_edges : array_like (L + 1,), optional
        Z's energy bin edges (keV). With several images, each Z bin takes the image whose
        ``[ENERG_LO, ENERG_HI)`` holds its centre, else the one with the nearest ``ENERGY``
        (piecewise constant over energy bands), giving a (energy, psf_y, psf_x) PSF.
    size : int, optional
        Odd kernel side; default covers the whole input image.
    centre : 'centroid', 'peak', 'image' or (cy, cx)
        PSF centre in the input image (default: the centroid, so the PSF does not shift flux).
    rotation : float
        Counter-clockwise rotation (deg) applied to the PSF: the angle from the frame of the PSF
        image to Z's grid. 0 when the PSF is given in the frame of Z's grid (e.g. a detector-
        frame PSF and a grid aligned with Y's detector).
    psf_pixel_size : float, optional
        The image's pixel size (arcsec) when the header has none.
    total : float, optional
        The PSF's total flux in the images' units (see :func:`resample_psf`). Default: each
        image is taken to hold the whole PSF (to sum to 1 over its full extent once normalised).

    Returns
    -------
    xarray.DataArray
        ``(psf_y, psf_x)`` or ``(energy, psf_y, psf_x)``, odd sides, each slice summing to the
        fraction of the PSF inside the kernel (≤ 1; ``attrs['enclosed']``, the smallest over
        energy); the flux beyond the kernel is lost from Y's field, not put back into the core.
    """
    path = fspath(path)
    images = read_psf_images(path, psf_pixel_size)
    return psf_on_grid(images, pixel_size, energy_edges, size, centre, rotation, path, total)


def write_psf(path, images, pixel_size: float, energies: Sequence[float] | None = None,
              energy_bands: Sequence[tuple[float, float]] | None = None,
              overwrite: bool = False) -> str:
    """Write PSF image(s) to FITS: one HDU per image, with ``CDELT`` (deg) and ``ENERGY`` (keV).

    Parameters
    ----------
    path : str or path-like
    images : ndarray (ny, nx) or sequence of them
    pixel_size : float
        Image pixel size (arcsec).
    energies : sequence of float, optional
        Energy (keV) of each image (``ENERGY`` keyword).
    energy_bands : sequence of (lo, hi), optional
        ``ENERG_LO``/``ENERG_HI`` keywords of each image.
    overwrite : bool
    """
    imgs = [np.asarray(images, float)] if np.ndim(images) == 2 else \
        [np.asarray(i, float) for i in images]
    hdus: list = []
    for k, img in enumerate(imgs):
        h = fits.PrimaryHDU(img) if k == 0 else fits.ImageHDU(img, name=f"PSF{k}")
        hd = h.header
        if k == 0:
            hd["EXTNAME"] = "PSF0"
        hd["CTYPE1"], hd["CTYPE2"] = "RA---TAN", "DEC--TAN"
        hd["CDELT1"], hd["CDELT2"] = -pixel_size / 3600, pixel_size / 3600
        hd["CUNIT1"], hd["CUNIT2"] = "deg", "deg"
        hd["CRPIX1"], hd["CRPIX2"] = (img.shape[1] + 1) / 2, (img.shape[0] + 1) / 2
        hd["CRVAL1"], hd["CRVAL2"] = 0.0, 0.0
        if energies is not None:
            hd["ENERGY"] = (float(energies[k]), "keV")
        if energy_bands is not None:
            hd["ENERG_LO"] = (float(energy_bands[k][0]), "keV")
            hd["ENERG_HI"] = (float(energy_bands[k][1]), "keV")
        hdus.append(h)
    return write_atomic(fits.HDUList(hdus), path, overwrite)
