"""Starlet transforms (isotropic undecimated B3-spline wavelets) and their l1 prox helpers.

The public names are re-exported here. The modules, each importing only those above it:

==============  ==========================================================================
``folding``     boundary folding of the B3 smoothing, its edge matrices, the cascade's halo
``_jit``        the optional compiled (numba) kernels of the 2-D–1-D prox and the k map
``smoothing``   one dilated smoothing along one axis; the per-thread scratch buffers
``segments``    the multi-scale kernels on one segment and the consumers of their bands
``stats``       samples, median, MAD noise scale, soft thresholding, the brightness k map
``transforms``  :class:`Starlet2D`, :class:`Starlet1D`, :class:`Starlet2D1D` and their numpy
                (blocks on threads) and dask (chunks with halos) drivers
``bands``       :class:`StarletBands`: a transform seen as a flat list of bands
==============  ==========================================================================
"""

from .bands import StarletBands, starlet_bands
from .folding import B3_KERNEL, starlet_depth
from .smoothing import release_scratch
from .stats import brightness_k, lattice_sample, mad_sigma, median, soft_threshold, subsample
from .transforms import Starlet1D, Starlet2D, Starlet2D1D

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
