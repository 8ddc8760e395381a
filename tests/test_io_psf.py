"""PSF images: flux-conserving resampling onto Z's pixels, centring, rotation, energy bands."""

import numpy as np
import pytest
from astropy.io import fits

import xfusion as xf
from xfusion.io import FileFormatError


def gauss_image(n, pixel, sy, sx, cy=None, cx=None):
    cy = (n - 1) / 2 if cy is None else cy
    cx = (n - 1) / 2 if cx is None else cx
    yy, xx = np.mgrid[0:n, 0:n]
    return np.exp(-0.5 * (((yy - cy) * pixel / sy) ** 2 + ((xx - cx) * pixel / sx) ** 2))


def moments(p, pixel=1.0):
    h = p.shape[-1] // 2
    g = np.arange(-h, h + 1) * pixel
    yy, xx = np.meshgrid(g, g, indexing="ij")
    my, mx = (p * yy).sum(), (p * xx).sum()
    return my, mx, (p * (yy - my) ** 2).sum(), (p * (xx - mx) ** 2).sum(), \
        (p * (yy - my) * (xx - mx)).sum()


def test_resample_matches_pixel_integrated_gaussian():
    img = gauss_image(241, 0.25, 6.0, 6.0)  # 0.25" sampling, sigma 6"
    p, enclosed = xf.io.resample_psf(img, 0.25, 3.0, size=15)
    ref = xf.kernels.gaussian_psf(6.0, size=15, pixel_size=3.0)
    assert p.shape == (15, 15) and p.sum() == pytest.approx(enclosed, rel=1e-12)
    np.testing.assert_allclose(p, ref, atol=2e-4)
    assert enclosed == pytest.approx(1.0, abs=2e-3)


def king_image(n, pixel, rc, beta):
    """King profile sampled on an n×n grid, normalised over the whole plane (sums to the
    fraction of the PSF inside the image)."""
    g = (np.arange(n) - (n - 1) / 2) * pixel
    r2 = g[:, None] ** 2 + g[None, :] ** 2
    return (1 + r2 / rc**2) ** (-beta) * pixel**2 / (np.pi * rc**2 / (beta - 1))


def king_box_fraction(half, rc, beta, n=4000):
    """Fraction of a King PSF inside the square |y|, |x| < half (fine quadrature)."""
    g = (np.arange(n) + 0.5) / n * half
    r2 = g[:, None] ** 2 + g[None, :] ** 2
    return 4 * ((1 + r2 / rc**2) ** (-beta)).sum() * (half / n) ** 2 / (np.pi * rc**2 / (beta - 1))


def test_resample_keeps_the_king_fraction_inside_the_kernel():
    """PSF wings are not put back into the core: a King PSF (r_c 20", beta 1.5) on a 150" kernel
    keeps the fraction of its flux inside the kernel (~0.8), not 1."""
    rc, beta = 20.0, 1.5
    img = king_image(401, 1.0, rc, beta)  # 401" box, normalised to the full PSF
    p, enclosed = xf.io.resample_psf(img, 1.0, 10.0, size=15, total=1.0)
    expect = king_box_fraction(75.0, rc, beta)
    assert 0.7 < expect < 0.9
    assert p.sum() == pytest.approx(enclosed, rel=1e-12)
    assert enclosed == pytest.approx(expect, abs=1e-3)
    # default: the image is the whole PSF, so the kernel keeps its share of the image's flux
    q, f = xf.io.resample_psf(img, 1.0, 10.0, size=15)
    assert f == pytest.approx(expect / king_box_fraction(200.5, rc, beta), abs=1e-3)
    np.testing.assert_allclose(q * img.sum(), p, rtol=1e-12)
    with pytest.raises(ValueError, match="total"):
        xf.io.resample_psf(img, 1.0, 10.0, size=15, total=0.5 * img.sum())


def test_from_files_crop_keeps_the_fraction(tmp_path):
    """A kernel wider than twice Z's image is cropped without renormalising."""
    from xfusion.io.assemble import _psf_on_grid
    from xfusion.io.psf import psf_on_grid, read_psf_images

    rc, beta = 20.0, 1.5
    path = xf.io.write_psf(tmp_path / "king.fits", king_image(401, 1.0, rc, beta), pixel_size=1.0)
    full = xf.io.psf_from_fits(path, 10.0, total=1.0)  # covers the whole image: 41 × 41
    assert full.shape == (41, 41)
    assert full.attrs["enclosed"] == pytest.approx(king_box_fraction(200.5, rc, beta), abs=1e-3)
    E = np.linspace(0.5, 1.5, 5)
    grid = psf_on_grid(read_psf_images(path), 10.0, total=1.0)
    arr, src = _psf_on_grid(grid, 10.0, E, (9, 12), None, 0.0, None)
    assert arr.shape == (19, 19) and src == "array"
    assert arr.sum() == pytest.approx(king_box_fraction(95.0, rc, beta), abs=1e-3)
    # from a file (taken as the whole PSF): the crop keeps its share of the file's flux
    arr, src = _psf_on_grid(path, 10.0, E, (9, 12), None, 0.0, None)
    assert src == str(path)
    assert arr.sum() == pytest.approx(
        king_box_fraction(95.0, rc, beta) / king_box_fraction(200.5, rc, beta), abs=1e-3)


def test_default_size_is_odd_and_keeps_all_flux():
    img = gauss_image(101, 1.0, 5.0, 5.0)
    p, enclosed = xf.io.resample_psf(img, 1.0, 4.0)
    assert p.shape[0] % 2 == 1 and p.shape[0] * 4.0 >= 101
    assert enclosed == pytest.approx(1.0, abs=1e-12)


def test_centroid_centring_of_an_offset_psf():
    img = gauss_image(81, 1.0, 4.0, 4.0, cy=30.0, cx=47.0)
    p, _ = xf.io.resample_psf(img, 1.0, 2.0, size=21)
    my, mx, *_ = moments(p, 2.0)
    assert abs(my) < 1e-6 and abs(mx) < 1e-6
    q, _ = xf.io.resample_psf(img, 1.0, 2.0, size=21, centre="image")  # off-centre on purpose
    my, mx, *_ = moments(q, 2.0)
    assert my == pytest.approx(-10.0, abs=0.1) and mx == pytest.approx(7.0, abs=0.1)


@pytest.mark.parametrize("angle", [90.0, 30.0])
def test_rotation_is_counter_clockwise(angle):
    img = gauss_image(161, 0.5, 2.0, 8.0)  # elongated along x
    p, _ = xf.io.resample_psf(img, 0.5, 1.0, size=61, rotation=angle)
    _, _, vy, vx, cxy = moments(p)
    t = np.deg2rad(angle)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # acts on (x, y)
    cov = R @ np.diag([8.0**2, 2.0**2]) @ R.T  # in (x, y)
    pix = 1.0 / 12 + 0.25 / 12  # pixel integration adds variance
    assert vx == pytest.approx(cov[0, 0] + pix, rel=0.03, abs=0.1)
    assert vy == pytest.approx(cov[1, 1] + pix, rel=0.03, abs=0.1)
    assert cxy == pytest.approx(cov[0, 1], rel=0.03, abs=0.1)


def test_psf_from_fits_single_and_energy_dependent(tmp_path):
    a, b = gauss_image(61, 1.0, 3.0, 3.0), gauss_image(61, 1.0, 8.0, 8.0)
    one = xf.io.write_psf(tmp_path / "one.fits", a, pixel_size=1.0)
    p = xf.io.psf_from_fits(one, 5.0, energy_edges=np.linspace(1, 8, 8))
    assert p.dims == ("psf_y", "psf_x") and p.shape[0] % 2 == 1
    assert float(p.sum()) == pytest.approx(1.0)
    two = xf.io.write_psf(tmp_path / "two.fits", [a, b], pixel_size=1.0, energies=[1.5, 6.5])
    edges = np.linspace(1.0, 8.0, 15)  # centres 1.25 ... 7.75
    p = xf.io.psf_from_fits(two, 5.0, energy_edges=edges)
    assert p.dims == ("energy", "psf_y", "psf_x") and p.sizes["energy"] == 14
    np.testing.assert_allclose(p.sum(("psf_y", "psf_x")), 1.0)
    narrow = p.isel(energy=0).values
    wide = p.isel(energy=-1).values
    centres = 0.5 * (edges[1:] + edges[:-1])
    for j, e in enumerate(centres):  # nearest image energy: boundary at 4 keV
        np.testing.assert_allclose(p.isel(energy=j).values, narrow if e < 4.0 else wide)
    assert moments(wide, 5.0)[2] > 4 * moments(narrow, 5.0)[2]
    # explicit bands override "nearest"
    bands = xf.io.write_psf(tmp_path / "bands.fits", [a, b], pixel_size=1.0,
                            energies=[1.5, 6.0], energy_bands=[(0.0, 5.0), (5.0, 20.0)])
    p = xf.io.psf_from_fits(bands, 5.0, energy_edges=edges)
    for j, e in enumerate(centres):
        np.testing.assert_allclose(p.isel(energy=j).values, narrow if e < 5.0 else wide)
    with pytest.raises(ValueError, match="energy_edges"):
        xf.io.psf_from_fits(two, 5.0)


def test_pixel_scale_from_keywords(tmp_path):
    img = gauss_image(61, 1.0, 3.0, 3.0)
    for keys in ({"CDELT1": -0.5, "CDELT2": 0.5, "CUNIT1": "arcsec", "CUNIT2": "arcsec"},
                 {"CD1_1": -0.5 / 3600, "CD2_2": 0.5 / 3600},
                 {"PIXSCALE": 0.5}):
        h = fits.PrimaryHDU(img)
        h.header.update(keys)
        h.writeto(tmp_path / "k.fits", overwrite=True)
        p = xf.io.psf_from_fits(tmp_path / "k.fits", 1.0, size=11)
        # sigma 3 image pixels of 0.5" = 1.5" on 1" output pixels
        assert moments(p.values)[2] == pytest.approx(1.5**2 + 1 / 12 + 0.25 / 12, rel=0.02)


def test_bad_psf_files(tmp_path):
    img = gauss_image(21, 1.0, 3.0, 3.0)
    fits.PrimaryHDU(img).writeto(tmp_path / "noscale.fits")
    with pytest.raises(FileFormatError, match="noscale.fits.*no pixel size"):
        xf.io.psf_from_fits(tmp_path / "noscale.fits", 1.0)
    assert xf.io.psf_from_fits(tmp_path / "noscale.fits", 1.0, psf_pixel_size=1.0).sum() > 0
    neg = img.copy()
    neg[0, 0] = -1
    xf.io.write_psf(tmp_path / "neg.fits", neg, pixel_size=1.0)
    with pytest.raises(FileFormatError, match="neg.fits.*negative"):
        xf.io.psf_from_fits(tmp_path / "neg.fits", 1.0)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("A", "E", array=[1.0])])]).writeto(tmp_path / "table.fits")
    with pytest.raises(FileFormatError, match="table.fits: no image HDU"):
        xf.io.psf_from_fits(tmp_path / "table.fits", 1.0)
    xf.io.write_psf(tmp_path / "two.fits", [img, img], pixel_size=1.0)
    with pytest.raises(FileFormatError, match="ENERGY"):
        xf.io.psf_from_fits(tmp_path / "two.fits", 1.0, energy_edges=[1, 2, 3])
