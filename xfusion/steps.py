r"""Step-size strategies of the proximal-gradient solver: the metric and the backtracking rule.

A strategy decides, for :class:`xfusion.solver.FISTA`,

* the **metric** :math:`P` (a diagonal scaling of the gradient step, or none):
  :math:`v = y - s\,P\odot\nabla f(y)`;
* the **first step** :math:`s_0`;
* whether a trial step is **accepted** (backtracking halves :math:`s` until it is);
* how the step **grows** after an iteration that needed no halving.

Two strategies:

:class:`EMBacktracking` (the default of :func:`xfusion.fuse`, ``metric="em"``)
    :math:`P = x / K^{\mathsf T}\mathbf 1`, the metric in which a unit step is the EM
    (Richardson–Lucy) update; with a smooth penalty :math:`s`,
    :math:`P = 1/(K^{\mathsf T}\mathbf 1/x + L_s)` (De Pierro's combination, :math:`L_s` a
    separable majorant of :math:`\nabla^2 s`). The natural step is 1: it starts there, doubles
    after a step accepted at the first try and is capped at 1 (so every voxel stays positive).
    A trial step is accepted when the quadratic model bounds the objective, or — the quadratic
    model is not a majorizer in this metric — on a sufficient decrease along the step
    (Armijo, :data:`ARMIJO`). The momentum point is floored voxel by voxel
    (:attr:`positive_momentum`), so that :math:`P` stays positive.

:class:`QuadraticBacktracking` (``metric="jacobi"`` or no metric)
    :math:`P = 1/H` with :math:`H_j = \sum_i K_{ij}^2 h_i` and
    :math:`h_i = \max(1/\mu_i, D_i/\mu_i^2)` (expected and observed Poisson curvature) plus the
    smooth penalty's diagonal, or :math:`P = 1` without a metric. The first step is the
    secant estimate of 1/curvature without a metric, else 1; a step is accepted when the
    quadratic model bounds the objective; it grows by 5 % after a first-try acceptance.

Both accept within a slack of :math:`\max(10^{-12}, 4\epsilon)\,|f(y)|` (the working
precision's rounding of the objective).
"""

from __future__ import annotations

import math

import numpy as np

from ._step_ops import em_metric, mean_abs
from .functionals import total

__all__ = ["StepSize", "EMBacktracking", "QuadraticBacktracking", "step_size", "ARMIJO"]

#: sufficient-decrease constant of the EM-metric step test
ARMIJO = 1e-4
#: step growth after a step accepted at the first try, with the EM metric (capped at 1)
GROW_EM = 2.0
#: step growth after a step accepted at the first try, with the quadratic test alone
GROW = 1.05


def _vdot(a, b) -> float:
    return total(a * b)


class StepSize:
    """The interface of a step-size strategy (see the module docstring)."""

    #: the name recorded in the result's attrs (``metric``)
    name: str = ""
    #: whether the strategy scales steps by a diagonal metric
    uses_metric: bool = False
    #: whether the momentum point must stay positive (floored voxel by voxel)
    positive_momentum: bool = False

    def metric(self, solver, mu, x):
        """The diagonal metric at ``x`` (expected counts ``mu``), or None."""
        return None

    def initial(self, solver, x, mu) -> float:
        """The first trial step at the starting point."""
        return 1.0

    def accept(self, f_new: float, f_y: float, gd: float, dd: float, step: float,
               slack: float) -> bool:
        r"""Whether the trial step passes: :math:`f(x^+) \le f(y) + \langle g, d\rangle +
        \langle d, P^{-1}d\rangle / 2s` (within ``slack``), or the step did not move."""
        bound = f_y + gd + dd / (2 * step)
        return f_new <= bound + slack * abs(f_y) or dd == 0

    def grow(self, step: float, tries: int) -> float:
        """The step of the next iteration after this one took ``tries`` trials."""
        return step * GROW if tries == 1 else step


class EMBacktracking(StepSize):
    """EM metric, unit natural step, quadratic or Armijo acceptance (module docstring)."""

    name = "em"
    uses_metric = True
    positive_momentum = True

    def metric(self, solver, mu, x):
        colsum = solver.likelihood.colsum()
        xm = mean_abs(x)
        smooth = solver.smooth
        L = smooth.lipschitz() if smooth is not None else None
        if L is not None:
            # EM for the likelihood, a separable majorant (row sums of |∇²s|) for the smooth
            # penalty: P = 1 / (Kᵀ1 / x + L_s) (De Pierro's combination)
            xf = np.maximum(x, 1e-6 * xm)
            return (xf / (colsum + xf * L)).astype(solver.dtype, copy=False)
        return em_metric(x, colsum, 1e-6 * xm, solver.dtype)

    def accept(self, f_new, f_y, gd, dd, step, slack) -> bool:
        # the quadratic model is not a majorizer in the EM metric (the EM surrogate is a
        # Kullback–Leibler one): a sufficient decrease along the step is accepted too; the
        # quadratic test alone halved lrs's step from 1 to 2e-6 after a momentum step whose
        # decrease was 0.2 % of the model's, and the run then crept on at that step
        if super().accept(f_new, f_y, gd, dd, step, slack):
            return True
        return gd < 0 and f_new <= f_y + ARMIJO * gd

    def grow(self, step: float, tries: int) -> float:
        # the natural step is 1: after a halving (typically at a momentum point with a steep
        # gradient) it comes back within a few iterations; at 1.05 per iteration lr/lrs crept
        # along at 1e-3 steps and the stopping rule fired far from the minimum
        if tries == 1:
            step *= GROW_EM
        return min(step, 1.0)  # the EM step keeps every voxel positive


class QuadraticBacktracking(StepSize):
    """Jacobi metric (``metric="jacobi"``) or none (``metric=None``), quadratic acceptance."""

    def __init__(self, metric: str | None = "jacobi"):
        if metric not in (None, "jacobi"):
            raise ValueError(f"metric must be 'jacobi' or None, got {metric!r}")
        self.name = metric or ""
        self.uses_metric = metric is not None

    def metric(self, solver, mu, x):
        if not self.uses_metric:
            return None
        H = solver.likelihood.curvature(mu)
        d = solver.smooth.diag() if solver.smooth is not None else None
        if d is not None:
            H = H + d
        Hm = float(H.mean(dtype=np.float64))
        P = 1.0 / np.maximum(H, 1e-4 * Hm)
        return P.astype(solver.dtype)

    def initial(self, solver, x, mu) -> float:
        """Secant estimate of 1 / curvature along a gradient-scaled perturbation (no metric);
        1 with the Jacobi metric."""
        if self.uses_metric:
            return 1.0
        g = solver.value_and_grad(mu, x)[1]
        gn = math.sqrt(_vdot(g, g))
        xn = math.sqrt(_vdot(x, x))
        if gn == 0 or not np.isfinite(gn):
            return 1.0
        d = g * (1e-3 * max(xn, 1e-30) / gn)
        mu_d = solver.likelihood.forward(x + d)
        g2 = solver.value_and_grad(mu_d, x + d)[1]
        curv = _vdot(g2 - g, d) / max(_vdot(d, d), 1e-300)
        return 1.0 / curv if curv > 0 and np.isfinite(curv) else 1e-3 * xn / gn


def step_size(metric: str | None) -> StepSize:
    """The strategy of a ``metric`` name: ``"em"``, ``"jacobi"`` or None."""
    if metric == "em":
        return EMBacktracking()
    if metric in ("jacobi", None):
        return QuadraticBacktracking(metric)
    raise ValueError(f"metric must be 'jacobi', 'em' or None, got {metric!r}")
