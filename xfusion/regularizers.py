r"""Regularizers φ of the fusion objective (DESIGN.md §1) with the solver's interface.

Each regularizer has ``value(x)``, ``prox(v, step)`` (the prox of ``step·φ`` plus any
constraint), an optional ``smooth`` part (value / grad, folded into the gradient step), and for
the data-driven thresholds ``adapt`` / ``state`` / ``set_state``.

Wavelet thresholds
------------------
Starlet detail coefficients are soft-thresholded at :math:`k\,\sigma_b`, where
:math:`\sigma_b = \sigma\,\|\psi_b\|` is the noise level of band ``b`` (``σ`` from the MAD of the
finest band of the current gradient step, ``‖ψ_b‖`` the band's noise gain) and ``k`` is a constant
or varies per voxel with the brightness of the coarse scale (k → k_max in dim voxels, → k_min in
bright ones; :func:`xfusion.wavelets.brightness_k`). As in the paper the thresholds follow the
iterate during the first ``adapt_iter`` iterations; they are then **frozen** as weights
:math:`\lambda_b = k\sigma_b/\alpha` of a fixed objective
:math:`\varphi(x) = \sum_b \lambda_b \|W_b x\|_1`, so the run converges to a well-defined point
and the stopping rule measures a real objective. The prox of the analysis l1 norm of a redundant
transform has no closed form; we use the standard approximation — threshold the coefficients,
reconstruct by the starlet inverse — and evaluate φ on the thresholded coefficients.
"""

from __future__ import annotations

import numpy as np

from .functionals import Positivity, Sobolev, soft_threshold, total

__all__ = ["NoRegularizer", "SmoothOnly", "StarletL1", "REGULARIZERS"]

REGULARIZERS = ("w2d1d", "lrs", "lrw2d", "lr", "none")


class NoRegularizer:
    """φ = 0 with an optional positivity constraint."""

    frozen = True

    def __init__(self, positive: bool = True):
        self.positive = positive

    def value(self, x) -> float:
        return 0.0

    def prox(self, v, step: float):
        return Positivity().prox(v, step) if self.positive else v


class SmoothOnly(NoRegularizer):
    """A smooth penalty (e.g. :class:`~xfusion.functionals.Sobolev`) handled by the gradient."""

    def __init__(self, smooth: Sobolev, positive: bool = False):
        super().__init__(positive)
        self.smooth = smooth


def _mad_sigma(w) -> float:
    w = np.asarray(w)
    return float(np.median(np.abs(w - np.median(w))) / 0.6745)


class StarletL1:
    r"""l1 norm of starlet detail coefficients, weighted by noise-scaled thresholds.

    Parameters
    ----------
    transform : object
        A starlet transform with ``forward``, ``inverse``, ``detail_bands``, ``coarse_band``
        and ``noise_gains`` (see :mod:`xfusion.wavelets`).
    k : float or "auto"
        Threshold in units of the band noise; ``"auto"`` varies it per voxel with brightness
        between ``k_range``.
    positive : bool
        Project onto x ≥ 0 after reconstruction (for Z; not for low-rank coefficients).
    adapt_iter : int
        Iterations during which thresholds follow the iterate before being frozen.
    per_slice : bool
        Estimate σ separately for each leading index (each low-rank component).
    """

    def __init__(self, transform, k: float | str = "auto", k_range=(0.5, 3.0),
                 positive: bool = True, adapt_iter: int = 20, per_slice: bool = False):
        self.T = transform
        self.k = k
        self.k_range = tuple(float(v) for v in k_range)
        self.positive = positive
        self.adapt_iter = int(adapt_iter)
        self.per_slice = per_slice
        self.frozen = adapt_iter <= 0
        self.sigma = None        # noise per band, shape (n_bands, [slices])
        self.kmap = None         # per-voxel k (or scalar)
        self.step_ref = None
        self._last = (None, 0.0)

    # -- thresholds --------------------------------------------------------------
    def _estimate(self, coeffs) -> None:
        gains = self.T.noise_gains
        fin = self.T.finest(coeffs)
        if self.per_slice:
            s = np.array([_mad_sigma(fin[i]) for i in range(fin.shape[0])])
            s = s / gains[self.T.finest_index]
            self.sigma = gains[:, None] * s[None, :]
        else:
            s = _mad_sigma(fin) / gains[self.T.finest_index]
            self.sigma = gains * s
        if self.k == "auto":
            from .wavelets import brightness_k

            self.kmap = np.asarray(brightness_k(self.T.coarse(coeffs), *self.k_range),
                                   dtype=fin.dtype)
        else:
            self.kmap = float(self.k)

    def _thresh(self, b: int, scale: float):
        s = self.sigma[b]
        if self.per_slice:
            s = s.reshape((-1,) + (1,) * (self.T.ndim_data - 1))
        return (scale * s) * self.kmap

    def adapt(self, v, step: float, iteration: int) -> None:
        if self.frozen:
            return
        self._estimate(self.T.forward(v))
        self.step_ref = step
        if iteration + 1 >= self.adapt_iter:
            self.frozen = True

    # -- interface ---------------------------------------------------------------
    def prox(self, v, step: float):
        c = self.T.forward(v)
        if self.sigma is None:
            self._estimate(c)
            self.step_ref = step
        scale = step / self.step_ref
        val = 0.0
        for b in self.T.detail_bands:
            th = self._thresh(b, scale)
            cb = soft_threshold(self.T.band(c, b), th)
            self.T.set_band(c, b, cb)
            val += total(np.abs(cb) * th) / step
        x = self.T.inverse(c)
        if self.positive:
            x = np.maximum(x, 0)
        self._last = (x, val)
        return x

    def value(self, x) -> float:
        last, val = self._last
        if x is last:
            return val
        c = self.T.forward(x)
        scale = 1.0 / self.step_ref if self.step_ref else 0.0
        return sum(total(np.abs(self.T.band(c, b)) * self._thresh(b, scale))
                   for b in self.T.detail_bands) if self.sigma is not None else 0.0

    def state(self) -> dict:
        out = {"frozen": np.array(int(self.frozen))}
        if self.sigma is not None:
            out["sigma"] = np.asarray(self.sigma)
            out["kmap"] = np.asarray(self.kmap)
            out["step_ref"] = np.array(self.step_ref)
        return out

    def set_state(self, s: dict) -> None:
        self.frozen = bool(int(np.asarray(s["frozen"])))
        if "sigma" in s:
            self.sigma = np.asarray(s["sigma"])
            km = np.asarray(s["kmap"])
            self.kmap = float(km) if km.ndim == 0 else km
            self.step_ref = float(np.asarray(s["step_ref"]))
