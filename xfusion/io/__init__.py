"""Mission data in: OGIP responses (ARF, RMF), FITS event lists, PSF images, and their assembly
into a fusion problem.

>>> import xfusion as xf
>>> arf = xf.io.read_arf("pn.arf")                      # doctest: +SKIP
>>> rmf = xf.io.read_rmf("pn.rmf")                      # doctest: +SKIP
>>> ds = xf.io.from_files(events_X="pn_evt.fits", events_Y="rsl_evt.fits", rmf_X="pn.rmf",
...                       arf_X="pn.arf", arf_Y="rsl.arf", psf_Y="rsl_psf.fits",
...                       energy_band=(6.0, 7.0), n_energy=200, vL=20,
...                       pixel_size=5.0)               # doctest: +SKIP

See ``docs/real_data.md``.
"""

from ._fits import FileFormatError
from .assemble import area_on_grid, from_files, overlap_matrix, response_from_rmf, split_rsp
from .background import background_spectrum
from .edges import DEFAULT_EDGE_TOLERANCE, observed_channels, out_of_band_fraction
from .events import (
    EPIC_SKY_PIXEL,
    FLAG_ALL,
    RESOLVE_CHANNEL_WIDTH,
    RESOLVE_PIXEL_MAP,
    RESOLVE_PIXEL_PITCH,
    detect_instrument,
    read_events,
    write_events,
)
from .export import ExportError, spectrum_paths, write_fits_cube, write_spectrum
from .exposure import (
    area_from_expmaps,
    expmap_on_grid,
    in_intervals,
    intersect_intervals,
    interval_length,
    merge_intervals,
    pixel_exposure,
    read_expmap,
    read_gti,
    write_expmap,
)
from .grid import (
    as_wcs,
    check_alignment,
    grid_rotation,
    make_wcs,
    pixel_scale,
    subdivide_wcs,
)
from .ogip import (
    read_arf,
    read_ebounds,
    read_pha,
    read_rmf,
    rmf_extensions,
    write_arf,
    write_pha,
    write_rmf,
)
from .psf import psf_from_fits, psf_on_grid, read_psf_images, resample_psf, write_psf

__all__ = [
    "FileFormatError",
    "read_arf", "write_arf", "read_rmf", "write_rmf", "rmf_extensions",
    "read_events", "write_events", "detect_instrument",
    "EPIC_SKY_PIXEL", "FLAG_ALL", "RESOLVE_CHANNEL_WIDTH", "RESOLVE_PIXEL_MAP",
    "RESOLVE_PIXEL_PITCH",
    "make_wcs", "as_wcs", "subdivide_wcs", "pixel_scale", "grid_rotation", "check_alignment",
    "psf_from_fits", "psf_on_grid", "read_psf_images", "resample_psf", "write_psf",
    "response_from_rmf", "area_on_grid", "split_rsp", "overlap_matrix", "from_files",
    "out_of_band_fraction", "observed_channels", "DEFAULT_EDGE_TOLERANCE",
    "write_fits_cube", "write_spectrum", "spectrum_paths", "ExportError",
    "read_gti", "merge_intervals", "intersect_intervals", "interval_length", "in_intervals",
    "pixel_exposure", "read_expmap", "write_expmap", "expmap_on_grid", "area_from_expmaps",
    "read_pha", "write_pha", "read_ebounds", "background_spectrum",
]
