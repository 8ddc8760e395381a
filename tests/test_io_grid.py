"""Sky grids: construction, subdivision, and refusal of grids that cannot be aligned."""

import numpy as np
import pytest

import xfusion as xf
from xfusion import ProblemError

C = (150.0, 2.2)


def test_make_wcs_orientation_and_scale():
    w = xf.io.make_wcs(C, 30.0, (6, 6), rotation=25.0)
    assert xf.io.pixel_scale(w) == pytest.approx((30.0, 30.0))
    assert xf.io.grid_rotation(w) == pytest.approx(25.0)
    # north-up: +y is north, +x is west (RA decreases)
    n = xf.io.make_wcs(C, 1.0, (5, 5))
    (ra0, ra1), (d0, d1) = n.wcs_pix2world([2, 3], [2, 2], 0)
    assert ra1 < ra0 and d1 == pytest.approx(d0, abs=1e-9)
    (ra0, ra1), (d0, d1) = n.wcs_pix2world([2, 2], [2, 3], 0)
    assert d1 > d0
    # the centre of the image is the tangent point
    np.testing.assert_allclose(n.wcs_pix2world([[2.0, 2.0]], 0)[0], C)


@pytest.mark.parametrize("rotation", [0.0, 33.0])
@pytest.mark.parametrize("v", [1, 3, 6])
def test_subdivided_grid_lines_up(rotation, v):
    wc = xf.io.make_wcs(C, 30.0, (6, 5), rotation=rotation)
    wf = xf.io.subdivide_wcs(wc, v)
    assert xf.io.check_alignment(wf, (6 * v, 5 * v), wc, (6, 5)) == (v, v)
    # the centre of coarse pixel (iy, ix) is the centre of its v×v block
    iy, ix = 4, 1
    sky = wc.wcs_pix2world([[ix, iy]], 0)
    fx, fy = wf.wcs_world2pix(sky, 0)[0]
    assert fx == pytest.approx(ix * v + (v - 1) / 2, abs=1e-6)
    assert fy == pytest.approx(iy * v + (v - 1) / 2, abs=1e-6)


def test_header_strings_accepted():
    wc = xf.io.make_wcs(C, 30.0, (6, 6))
    wf = xf.io.subdivide_wcs(wc, 5)
    h = wf.to_header().tostring(sep="\n")
    assert xf.io.check_alignment(h, (30, 30), wc.to_header(), (6, 6)) == (5, 5)


@pytest.mark.parametrize("fine, shape, match", [
    (xf.io.make_wcs(C, 5.0, (36, 36), rotation=10.0), (36, 36), r"rotated by -?10°"),
    (xf.io.make_wcs(C, 7.0, (36, 36)), (36, 36), r"ratio along y is 4\.28"),
    # tangent point shifted by 2.5" (half a fine pixel) east
    (xf.io.make_wcs((C[0] + 2.5 / 3600 / np.cos(np.deg2rad(C[1])), C[1]), 5.0, (36, 36)),
     (36, 36), r"0\.5 of a fine pixel off .* along x"),
    # a whole-pixel shift aligns but does not cover the coarse grid
    (xf.io.make_wcs((C[0], C[1] + 10 / 3600), 5.0, (36, 36)), (36, 36),
     r"must cover .* starts -?2, 0 fine pixels"),
    (xf.io.make_wcs(C, 5.0, (30, 36)), (30, 36), "must cover"),
    # tangent points 1.5° apart: meridians converge, the grids are rotated
    (None, (36, 36), "rotated by 0.05.*tangent points far apart"),
])
def test_refusals(fine, shape, match):
    wc = xf.io.make_wcs(C, 30.0, (6, 6))
    if fine is None:
        far = xf.io.make_wcs((C[0] + 1.5, C[1]), 5.0, (36, 36))
        # move the far tangent plane's reference pixel onto our field (same pixel grid there)
        x, y = far.wcs_world2pix([[C[0], C[1]]], 0)[0]
        far.wcs.crpix = far.wcs.crpix - [x - 17.5, y - 17.5]
        fine = far
    with pytest.raises(ProblemError, match=match):
        xf.io.check_alignment(fine, shape, wc, (6, 6))


def test_mirrored_grid_refused():
    wc = xf.io.make_wcs(C, 30.0, (6, 6))
    wf = xf.io.subdivide_wcs(wc, 2)
    wf.wcs.cdelt = [-wf.wcs.cdelt[0], wf.wcs.cdelt[1]]
    with pytest.raises(ProblemError, match="mirror"):
        xf.io.check_alignment(wf, (12, 12), wc, (6, 6))


def test_different_projections_refused_on_a_wide_field():
    wc = xf.io.make_wcs(C, 30.0, (240, 240))
    wf = xf.io.subdivide_wcs(wc, 6)
    assert xf.io.check_alignment(wf, (1440, 1440), wc, (240, 240)) == (6, 6)
    wf.wcs.ctype = ["RA---ARC", "DEC--ARC"]
    with pytest.raises(ProblemError, match="projections differ"):
        xf.io.check_alignment(wf, (1440, 1440), wc, (240, 240))
