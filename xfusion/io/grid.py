"""Celestial pixel grids: building them, subdividing them and checking that two of them line up.

A fusion problem needs Y's coarse pixels to be exact ``vM × vN`` blocks of Z's (= X's) fine
pixels on the sky. :func:`check_alignment` verifies this numerically for any two celestial WCS
(it maps the coarse grid through the sky into the fine grid and fits an affine map) and refuses,
naming the fault, grids that are rotated or flipped relative to each other, whose pixel ratio is
not an integer, whose pixel edges are offset by a fraction of a fine pixel, whose projections
differ (tangent points far enough apart to distort the mapping), or that do not cover each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..problem import ProblemError

__all__ = ["make_wcs", "as_wcs", "subdivide_wcs", "pixel_scale", "grid_rotation",
           "check_alignment", "offsets", "ALIGN_TOL"]

#: Tolerance of :func:`check_alignment`, in fine pixels, anywhere in the field.
ALIGN_TOL = 0.01


def make_wcs(centre: Sequence[float], pixel_size: float, shape: Sequence[int],
             rotation: float = 0.0, projection: str = "TAN") -> WCS:
    """A celestial image WCS with square pixels, centred on ``centre``.

    Parameters
    ----------
    centre : (ra, dec) in degrees
        Sky position of the image centre (the tangent point).
    pixel_size : float
        Pixel size in arcsec.
    shape : (ny, nx)
        Image shape; the centre falls at the middle of the image (a pixel corner for even sizes).
    rotation : float
        Position angle (deg) of the image's +y axis, east of north; 0 is north up, east left.
        (This is ``-CROTA2`` for the usual ``CDELT1 < 0``.)
    projection : str
        Three-letter FITS projection code.

    Returns
    -------
    astropy.wcs.WCS
    """
    ny, nx = (int(s) for s in shape)
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [float(centre[0]), float(centre[1])]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-pixel_size / 3600.0, pixel_size / 3600.0]
    t = np.deg2rad(rotation)
    w.wcs.pc = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.pixel_shape = (nx, ny)
    return w


def as_wcs(obj, what: str = "wcs") -> WCS:
    """Turn a WCS, a FITS header or a header string into a 2-D celestial :class:`WCS`."""
    if isinstance(obj, WCS):
        w = obj
    elif isinstance(obj, fits.Header):
        w = WCS(obj)
    elif isinstance(obj, str):
        w = WCS(fits.Header.fromstring(obj, sep="\n"))
    else:
        raise TypeError(f"{what}: expected an astropy WCS, a FITS Header or a header string, "
                        f"got {type(obj).__name__}")
    w = w.celestial
    if w.naxis != 2 or not w.has_celestial:
        raise ProblemError(f"{what}: not a 2-D celestial WCS")
    return w


def pixel_scale(w: WCS) -> tuple[float, float]:
    """Pixel sizes (arcsec) along the grid's y and x axes at the reference pixel."""
    m = w.pixel_scale_matrix
    return float(np.hypot(m[0, 1], m[1, 1]) * 3600), float(np.hypot(m[0, 0], m[1, 0]) * 3600)


def grid_rotation(w: WCS) -> float:
    """Angle (deg) of the grid's +y axis east of north at the reference pixel."""
    m = w.pixel_scale_matrix  # d(lon, lat)/d(x, y)
    # direction of the +y axis on the sky: east = d lon / dy (times cos dec), north = d lat / dy
    east, north = m[0, 1], m[1, 1]
    return float(np.rad2deg(np.arctan2(east, north)))


def subdivide_wcs(w: WCS, v: int) -> WCS:
    """The WCS of the grid whose pixels are ``v × v`` subdivisions of ``w``'s pixels.

    A coarse pixel ``P`` (FITS, 1-based) covers fine pixels whose 1-based centres are
    ``(P - 1) v + 1 … P v``; hence ``CRPIX_fine = (CRPIX - 0.5) v + 0.5`` and ``CDELT / v``.
    """
    v = int(v)
    f = w.deepcopy()
    f.wcs.crpix = (np.asarray(w.wcs.crpix) - 0.5) * v + 0.5
    if w.wcs.has_cd():
        f.wcs.cd = np.asarray(w.wcs.cd) / v
    else:
        f.wcs.cdelt = np.asarray(w.wcs.cdelt) / v
    if w.pixel_shape is not None:
        f.pixel_shape = tuple(int(s) * v for s in w.pixel_shape)
    return f


def offsets(n: int, step: float) -> np.ndarray:
    """Pixel-centre offsets (arcsec) from the image centre: ``(i - (n - 1) / 2) · step``."""
    return (np.arange(n) - (n - 1) / 2.0) * step


def check_alignment(wcs_fine, shape_fine: Sequence[int], wcs_coarse, shape_coarse: Sequence[int],
                    tol: float = ALIGN_TOL) -> tuple[int, int]:
    """Check that the coarse grid's pixels are whole blocks of the fine grid's pixels.

    Parameters
    ----------
    wcs_fine, wcs_coarse : WCS, Header or header string
        Celestial WCS of Z's (X's) grid and of Y's grid.
    shape_fine, shape_coarse : (ny, nx)
        Image shapes.
    tol : float
        Largest misplacement allowed anywhere in the field, in fine pixels.

    Returns
    -------
    (vM, vN) : tuple of int
        The spatial rebinning factors.

    Raises
    ------
    ProblemError
        Naming what cannot be aligned: a flip, a rotation (with its angle), a non-integer pixel
        ratio (with the ratio), a fractional offset of the pixel edges, a distortion from
        different tangent points or projections, or grids that do not cover each other exactly
        (with the offset / shape that would).
    """
    wf, wc = as_wcs(wcs_fine, "fine grid"), as_wcs(wcs_coarse, "coarse grid")
    Mf, Nf = (int(s) for s in shape_fine)
    mc, nc = (int(s) for s in shape_coarse)
    # sample the coarse grid: its pixel corners (edges) and centres
    yy, xx = np.meshgrid(np.linspace(-0.5, mc - 0.5, min(mc, 8) + 1),
                         np.linspace(-0.5, nc - 0.5, min(nc, 8) + 1), indexing="ij")
    xc, yc = xx.ravel(), yy.ravel()
    lon, lat = wc.wcs_pix2world(xc, yc, 0)
    xf, yf = wf.wcs_world2pix(lon, lat, 0)
    if not (np.isfinite(xf).all() and np.isfinite(yf).all()):
        raise ProblemError("the coarse grid does not project into the fine grid's projection "
                           "(the two fields are too far apart on the sky)")
    A = np.column_stack([xc, yc, np.ones_like(xc)])
    cx, *_ = np.linalg.lstsq(A, xf, rcond=None)
    cy, *_ = np.linalg.lstsq(A, yf, rcond=None)
    J = np.array([[cx[0], cx[1]], [cy[0], cy[1]]])  # d(fine x, y) / d(coarse x, y)
    det = np.linalg.det(J)
    span = max(mc, nc)  # coarse pixels across the field
    if det < 0:
        raise ProblemError("the two grids are mirror images of each other (one has its x axis "
                           "reversed); flip one of them before fusing")
    theta = np.rad2deg(np.arctan2(J[1, 0] - J[0, 1], J[0, 0] + J[1, 1]))
    s = np.sqrt(det)
    if abs(np.deg2rad(theta)) * s * span > tol:
        raise ProblemError(
            f"the coarse grid is rotated by {theta:.4g}° relative to the fine grid (a roll "
            f"between them, or tangent points far apart); the pixels cannot be aligned. Bin X's "
            f"events on a grid with the same orientation as Y's "
            f"(xf.io.from_files does this; or xf.io.subdivide_wcs(wcs_Y, v))"
        )
    resid = np.hypot(xf - A @ cx, yf - A @ cy)
    if resid.max() > tol:
        raise ProblemError(
            f"the two grids' projections differ (different tangent points or projection types): "
            f"the mapping between them is distorted by up to {resid.max():.3g} fine pixels. Build "
            f"both on one tangent point (xf.io.subdivide_wcs)"
        )
    sy, sx = np.hypot(J[0, 1], J[1, 1]), np.hypot(J[0, 0], J[1, 0])
    vM, vN = int(round(sy)), int(round(sx))
    for v, sv, ax in ((vM, sy, "y"), (vN, sx, "x")):
        if v < 1 or abs(sv - v) * span > tol:
            raise ProblemError(
                f"the pixel ratio along {ax} is {sv:.6g}, not an integer: a coarse pixel must be a "
                f"whole number of fine pixels (choose a fine pixel size that divides the coarse "
                f"one, e.g. {pixel_scale(wc)[1 if ax == 'x' else 0] / max(v, 1):.6g} arcsec)"
            )
    # coarse pixel edge -0.5 must land on a fine pixel edge: fine = -0.5 + k
    ox = cx[2] - (vN - 1) / 2.0
    oy = cy[2] - (vM - 1) / 2.0
    for o, ax in ((ox, "x"), (oy, "y")):
        if abs(o - round(o)) > tol:
            raise ProblemError(
                f"the coarse pixel edges fall {o - np.floor(o):.4g} of a fine pixel off the fine "
                f"pixel edges along {ax} (reference points or tangent points that do not map to "
                f"whole pixels); shift the fine grid's CRPIX by that fraction"
            )
    kx, ky = int(round(ox)), int(round(oy))
    if (kx, ky) != (0, 0) or (Mf, Nf) != (vM * mc, vN * nc):
        raise ProblemError(
            f"the fine grid ({Mf}×{Nf}) must cover the coarse grid ({mc}×{nc}) exactly, i.e. be "
            f"{vM * mc}×{vN * nc} pixels starting at the coarse grid's corner; it starts "
            f"{ky}, {kx} fine pixels (y, x) away. Use xf.io.subdivide_wcs(wcs_Y, {vN})"
        )
    return vM, vN
