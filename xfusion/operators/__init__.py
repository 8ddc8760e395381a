"""Forward-model operators: each has ``forward`` and an exact ``adjoint`` on (energy, y, x) arrays.

=====================  =======================================================
:class:`Exposure`      multiply by exposure × effective area (diagonal)
:class:`SpectralResponse`  (l × L) redistribution matrix along energy (RMF)
:class:`PSFConvolution`    2-D convolution per energy slice, zero boundary
:class:`SpatialRebin`  ``vM × vN`` block sum; :class:`EnergyRebin`: ``vL`` sum
:class:`SpatialMatrix` any energy-independent spatial map as a dense matrix
:class:`KroneckerSpatial`  PSF of low rank then block sum, as Σ A_r ⊗ B_r
:class:`ForwardModel`  μ_X(Z), μ_Y(Z) and their adjoints
=====================  =======================================================
"""

from .base import Chain, LinearOperator
from .exposure import Exposure
from .forward import ForwardModel, SpatialMatrix
from .psf import PSFConvolution
from .rebin import EnergyRebin, SpatialRebin
from .separable import KroneckerSpatial
from .spectral import SpectralResponse

__all__ = [
    "LinearOperator", "Chain", "Exposure", "SpectralResponse", "PSFConvolution",
    "SpatialRebin", "EnergyRebin", "SpatialMatrix", "KroneckerSpatial", "ForwardModel",
]
