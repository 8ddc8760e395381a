"""Starlet transforms (isotropic undecimated B3-spline wavelets) and their l1 prox helpers.

``transforms`` holds the transforms, their drivers and the prox helpers, ``bands`` the view of
a transform as a flat list of bands, ``_jit`` the optional compiled (numba) kernels; the
public names are re-exported here.
"""

from .bands import StarletBands, starlet_bands
from .transforms import (
    B3_KERNEL,
    Starlet1D,
    Starlet2D,
    Starlet2D1D,
    brightness_k,
    lattice_sample,
    mad_sigma,
    median,
    release_scratch,
    soft_threshold,
    starlet_depth,
    subsample,
)

__all__ = [
    "B3_KERNEL",
    "Starlet1D",
    "Starlet2D",
    "Starlet2D1D",
    "StarletBands",
    "starlet_bands",
    "starlet_depth",
    "release_scratch",
    "mad_sigma",
    "median",
    "soft_threshold",
    "subsample",
    "lattice_sample",
    "brightness_k",
]
