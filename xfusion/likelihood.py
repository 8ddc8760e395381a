r"""The data term of the fusion objective: both instruments' Poisson deviances through the model.

.. math::

    \mathcal L(x) = \mathcal L_P\big(X \mid \mu_X(x) + B_X\big)
                  + \mathcal L_P\big(Y \mid \mu_Y(x) + B_Y\big),
    \qquad (\mu_X, \mu_Y) = K x

with :math:`K` the parametrization's forward map (:class:`~xfusion.parametrization.FullCube`:
the instruments' forward model on Z; :class:`~xfusion.parametrization.LowRank`: on Z = V W)
and :math:`\mathcal L_P` the deviance of :class:`~xfusion.functionals.PoissonLoss`;
:math:`B_X, B_Y` are the problem's known backgrounds (expected counts, 0 without them).

The solver works with expected counts: the model is linear, so the expected counts of a
momentum point are extrapolated from those of the last two iterates rather than recomputed.
:class:`PoissonLikelihood` therefore takes μ where a generic smooth functional would take x.
"""

from __future__ import annotations

import numpy as np

from ._dask import is_dask, persist
from .functionals import PoissonLoss

__all__ = ["PoissonLikelihood"]


class PoissonLikelihood:
    r"""Poisson deviance of the counts ``X`` and ``Y`` given the unknown ``x`` of ``param``.

    Parameters
    ----------
    param : FullCube or LowRank
        Maps the unknown to expected counts (``forward``) and gradients in count space back
        (``adjoint``); ``curvature`` for the Jacobi metric, ``forward_sparse`` (optional) for
        sparse corrections of the momentum point.
    X, Y : arrays (numpy or dask)
        Observed counts of the two instruments; chunked counts are persisted on the workers.
    eps : float
        Floor of the Poisson term's quadratic extension (counts).
    dtype : numpy dtype
        Working precision of the expected counts and gradients.
    background_X, background_Y : arrays, optional
        Known expected background counts of X and Y (shapes of X and Y, numpy or dask like
        them); the expected counts ``mu`` passed to the methods stay those of the source,
        :math:`K x`, and the losses add the background (:class:`PoissonLoss`).

    Notes
    -----
    Gradient: :math:`\nabla\mathcal L(x) = K^{\mathsf T}\,(1 - D/(\mu + B))` stacked over
    both instruments, computed in one pass over each instrument's counts
    (:meth:`PoissonLoss.value_and_grad`). The EM metric :math:`x / K^{\mathsf T}1`
    (:meth:`colsum`) needs no change: a unit step in it is the EM update with a known
    background, :math:`x \odot K^{\mathsf T}(D/(Kx + B)) / K^{\mathsf T}1`.
    """

    def __init__(self, param, X, Y, eps: float = 1e-6, dtype=np.float32,
                 background_X=None, background_Y=None):
        self.param = param
        self.dtype = np.dtype(dtype)
        self.lossX = PoissonLoss(X, eps, self.dtype, background=background_X)
        self.lossY = PoissonLoss(Y, eps, self.dtype, background=background_Y)
        # chunked counts are read once and kept on the workers (they are 1/32–1/64 of Z)
        self.lossX.D, self.lossY.D = persist(self.lossX.D, self.lossY.D)
        for loss in (self.lossX, self.lossY):
            if loss.B is not None:
                loss.B, = persist(loss.B)
        self._colsum = None

    @property
    def chunked(self) -> bool:
        """Whether the counts are dask arrays (the chunked path)."""
        return is_dask(self.lossX.D)

    def forward(self, x) -> tuple:
        """Expected counts ``(μ_X, μ_Y)`` of ``x``."""
        return tuple(self.param.forward(x))

    def value(self, mu) -> float:
        """:math:`\\mathcal L` at expected counts ``mu = (μ_X, μ_Y)``."""
        return self.lossX.value(mu[0]) + self.lossY.value(mu[1])

    def value_and_grad(self, mu):
        """:math:`\\mathcal L` and its gradient with respect to ``x`` at expected counts ``mu``."""
        fx, gx = self.lossX.value_and_grad(mu[0])
        fy, gy = self.lossY.value_and_grad(mu[1])
        g = self.param.adjoint(gx.astype(self.dtype, copy=False),
                               gy.astype(self.dtype, copy=False))
        return fx + fy, g

    def colsum(self):
        r""":math:`K^{\mathsf T}\mathbf 1` (floored at 1e-30 of its maximum), computed once;
        chunked like the counts and kept on the workers on the dask path."""
        if self._colsum is None:
            if self.chunked:
                import dask.array as da

                ones = (da.ones_like(self.lossX.D), da.ones_like(self.lossY.D))
            else:
                ones = (np.ones(self.param.model.shape_X, self.dtype),
                        np.ones(self.param.model.shape_Y, self.dtype))
            cs = self.param.adjoint(*ones)
            self._colsum, = persist(np.maximum(cs, 1e-30 * float(cs.max())).astype(self.dtype))
        return self._colsum

    def curvature(self, mu):
        r"""Diagonal of :math:`K^{\mathsf T}\,\mathrm{diag}(h)\,K` with the Poisson curvature
        :math:`h_i = \max(1/m_i, D_i/m_i^2)` at the total expected counts
        :math:`m = \mu + B` (floored at 1 % of the mean count)."""
        def h(m, loss):
            floor = 0.01 * max(float(loss.D.mean()), 1e-12)
            mm = np.maximum(loss.total(m), floor)
            return np.maximum(1.0 / mm, loss.D / (mm * mm)).astype(self.dtype)

        return self.param.curvature(h(mu[0], self.lossX), h(mu[1], self.lossY))
