r"""The HIFReD iteration: accelerated proximal gradient with automatic steps.

Problem (docs/index.md), over the cube Z or low-rank coefficients W (Z = V W):

.. math::

    \min_x\; f(x) + \varphi(x),\qquad
    f(x) = \mathcal L_P(X \mid \mu_X(x)) + \mathcal L_P(Y \mid \mu_Y(x)) + s(x)

with the Poisson deviances :math:`\mathcal L_P`, an optional smooth penalty ``s`` (Sobolev) and a
prox-friendly term φ (positivity, l1 of starlet coefficients).

Method: FISTA (Beck & Teboulle 2009) with

* **backtracking** on the quadratic upper bound — the Poisson term is not globally Lipschitz,
  so the step is found, never given: it starts from a secant estimate of the curvature, halves
  when the bound fails and grows by 5 % after each step that passed at the first try;
* **adaptive restart** (O'Donoghue & Candès 2015): momentum is reset when the objective rises;
* a **positive momentum point** with the EM metric: :math:`y = \max(x_k + \beta(x_k -
  x_{k-1}),\, \theta x_k)` with :math:`\theta` = ``momentum_floor`` (0.1), so that the metric
  :math:`P = y / K^{\mathsf T}1` stays positive; its expected counts are extrapolated and
  corrected for the voxels the floor raised (0.1–2 % of them), column by column
  (:meth:`~xfusion.operators.ForwardModel.forward_sparse`), or recomputed where the model has
  no column form. Capping β globally instead, so that no voxel goes negative,
  switches momentum off in practice (some voxel is always about to reach 0) — measured: the
  capped run was identical to plain proximal gradient;
* otherwise expected counts are **extrapolated**, not recomputed: the model is linear, so
  :math:`\mu(y_{k+1}) = \mu(x_{k+1}) + \beta(\mu(x_{k+1}) - \mu(x_k))`.

The loop is written with array operations only, so the same code runs on numpy and dask arrays
(persisted every iteration so the task graph stays bounded). Stopping: relative objective
change below ``tol`` for ``patience`` consecutive iterations (while a wavelet regularizer's
metric is held: the net change over ``HELD_WINDOW`` iterations, per iteration), or ``max_iter``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._step_ops import em_metric, mean_abs, momentum_point, scaled_step, step_products
from ._threads import serial_blas
from .functionals import PoissonLoss, total
from .operators.base import is_dask

__all__ = ["SolverError", "SolverState", "FISTA", "ProgressBar", "Checkpointer"]

# checkpoints live in their own module; these names stay importable from here
from .checkpoint import Checkpointer, load_state, save_state  # noqa: E402,F401


class SolverError(RuntimeError):
    """The iteration cannot go on (non-finite objective, a step that cannot be found)."""


def _vdot(a, b) -> float:
    return total(a * b)


def _persist(*arrays):
    # dask arrays are persisted (and waited for under dask.distributed) so that every
    # iteration starts from materialised chunks and the task graph stays bounded; numpy
    # arrays pass through untouched (the in-memory path does not change).
    from ._dask import persist

    return persist(*arrays)


@dataclass
class SolverState:
    """Everything the iteration needs to continue exactly where it stopped."""

    x: object
    x_prev: object
    t: float = 1.0
    step: float = 0.0
    iteration: int = 0
    history: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    calm: int = 0
    converged: bool = False
    reg_state: dict = field(default_factory=dict)
    metric: object = None


class ProgressBar:
    """One-line progress (iteration, objective, relative change, step) on stderr.

    Updates at most every ``interval`` seconds; works in terminals, notebooks and under
    ``dask.distributed`` (it runs in the client process, where the loop is).
    """

    def __init__(self, max_iter: int, interval: float = 0.5, stream=None):
        self.max_iter = max_iter
        self.interval = interval
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._t0 = time.perf_counter()

    def __call__(self, state: SolverState, rel: float, force: bool = False) -> None:
        self._state = (state, rel)
        now = time.perf_counter()
        if not force and now - self._last < self.interval and state.iteration < self.max_iter:
            return
        self._last = now
        rate = state.iteration / max(now - self._t0, 1e-9)
        self.stream.write(
            f"\rHIFReD iter {state.iteration:6d}/{self.max_iter}  objective "
            f"{state.history[-1]:.8e}  rel.change {rel:.2e}  step {state.step:.2e}  "
            f"{rate:6.1f} it/s "
        )
        self.stream.flush()

    def close(self) -> None:
        if getattr(self, "_state", None) is not None:
            self(*self._state, force=True)  # show the final iteration
        self.stream.write("\n")
        self.stream.flush()


#: sufficient-decrease constant of the EM-metric step test (see ``FISTA.run``)
ARMIJO = 1e-4
#: the momentum point's expected counts are corrected column by column while the floor moves at
#: most this fraction of the voxels (above it one forward model is cheaper)
SPARSE_MAX = 0.02
#: step growth after a step accepted at the first try, with the EM metric (capped at 1)
GROW = 2.0
#: once the metric is held (a fixed threshold-then-reconstruct map), the momentum weight is
#: capped at this value and the objective restart is off (see ``FISTA.held``)
HELD_BETA_MAX = 0.9
#: default patience: consecutive iterations with a relative objective change below ``tol``
PATIENCE = 5
#: default patience while the metric is held: the memory of momentum capped at β is
#: ~1/(1 − β) iterations, and a shorter calm spell can be a dip of the relative change
HELD_PATIENCE = 10
#: while the metric is held the relative change is taken over this many iterations (per
#: iteration): the surrogate objective of the held map jitters from step to step
HELD_WINDOW = 10


class FISTA:
    """Accelerated proximal gradient for the fusion objective (see module docstring).

    Parameters
    ----------
    param : FullCube or LowRank
        Maps the unknown to expected counts and back.
    X, Y : arrays
        Counts.
    regularizer : object
        With ``value(x)``, ``prox(v, step)``, optional ``smooth`` (value/grad),
        ``adapt(v, step, iteration)``, ``state()`` / ``set_state(dict)``.
    tol : float
        Relative objective change under which the run counts as converged.
    patience : int, optional
        Consecutive iterations below ``tol`` needed to stop. Default :data:`PATIENCE` (5),
        and :data:`HELD_PATIENCE` (10) while the metric is held (see ``freeze_metric``).
    max_iter : int
    callbacks : list of callables ``cb(state, rel)``
    checkpointer : Checkpointer, optional
    momentum : bool
        FISTA extrapolation (default); ``False`` gives plain proximal gradient with the same
        backtracking, a second solver to cross-check the first.
    momentum_floor : float
        With the EM metric the momentum point is floored at ``momentum_floor * x`` voxel by
        voxel, so it stays positive (default 0.1).
    freeze_metric : bool
        Keep the metric P fixed once a regularizer whose prox depends on the metric
        (``metric_dependent``, e.g. :class:`~xfusion.regularizers.StarletL1`) reports
        ``frozen`` (its thresholds were set from the P of that iteration), so the iteration
        becomes one fixed scaled forward–backward map (default). Measured on
        ``realistic_1kev_rebin`` (scale 0.5, ``w2d1d``): with P following the iterate NMSE
        wandered from 12.87 dB at 90 iterations to 12.67 dB at 900, with objective jumps;
        with P frozen it rose to 13.29 dB at 50 and moved 0.15 dB over the next 550
        (docs/solver.md). :func:`xfusion.fuse` asks for it with ``w2d1d`` only. While the
        metric is held the iteration is a fixed map whose reported objective is a surrogate
        (threshold-then-reconstruct is not the prox of the l1 term), so momentum is no longer
        restarted when that objective rises; its weight is capped at :data:`HELD_BETA_MAX`
        instead (measured: restarting on the surrogate switched momentum off for good, and
        ``w2d1d`` crept towards its fixed point for over a thousand iterations), the
        default patience is :data:`HELD_PATIENCE`, and the relative change the stop counts
        is the net change over :data:`HELD_WINDOW` iterations, per iteration (the surrogate
        jitters from step to step; callbacks receive this figure).
    eps : float
        Floor of the Poisson quadratic extension (counts).
    """

    def __init__(self, param, X, Y, regularizer, tol: float = 1e-6, patience: int | None = None,
                 max_iter: int = 2000, callbacks: list[Callable] | None = None,
                 checkpointer: Checkpointer | None = None, eps: float = 1e-6,
                 dtype=np.float32, momentum: bool = True, metric: str | None = "jacobi",
                 momentum_floor: float = 0.1, freeze_metric: bool = True):
        self.param = param
        self.lossX = PoissonLoss(X, eps, dtype)
        self.lossY = PoissonLoss(Y, eps, dtype)
        # chunked counts are read once and kept on the workers (they are 1/32–1/64 of Z)
        self.lossX.D, self.lossY.D = _persist(self.lossX.D, self.lossY.D)
        self.reg = regularizer
        self.smooth = getattr(regularizer, "smooth", None)
        self.tol = float(tol)
        self.patience = None if patience is None else int(patience)
        self.max_iter = int(max_iter)
        self.callbacks = list(callbacks or [])
        self.checkpointer = checkpointer
        self.dtype = np.dtype(dtype)
        self.momentum = bool(momentum)
        if not 0 < momentum_floor < 1:
            raise ValueError(f"momentum_floor must be in (0, 1), got {momentum_floor!r}")
        self.momentum_floor = float(momentum_floor)
        self._slack = max(1e-12, 4 * float(np.finfo(self.dtype).eps))
        if metric not in (None, "jacobi", "em"):
            raise ValueError(f"metric must be 'jacobi', 'em' or None, got {metric!r}")
        self.metric = metric
        self.freeze_metric = bool(freeze_metric)

    # -- pieces ------------------------------------------------------------------
    def f(self, mu, x) -> float:
        v = self.lossX.value(mu[0]) + self.lossY.value(mu[1])
        if self.smooth is not None:
            v += self.smooth.value(x)
        return v

    def grad(self, mu, x):
        return self.value_and_grad(mu, x)[1]

    def value_and_grad(self, mu, x):
        """f and its gradient at ``x`` whose expected counts are ``mu``."""
        fx, gx = self.lossX.value_and_grad(mu[0])
        fy, gy = self.lossY.value_and_grad(mu[1])
        g = self.param.adjoint(gx.astype(self.dtype, copy=False),
                               gy.astype(self.dtype, copy=False))
        v = fx + fy
        if self.smooth is not None:
            v += self.smooth.value(x)
            g = g + self.smooth.grad(x)
        return v, g

    def objective(self, x, mu=None) -> float:
        mu = self.param.forward(x) if mu is None else mu
        return self.f(mu, x) + self.reg.value(x)

    def initial_step(self, x, mu, g) -> float:
        """Secant estimate of 1 / curvature along a gradient-scaled perturbation."""
        gn = math.sqrt(_vdot(g, g))
        xn = math.sqrt(_vdot(x, x))
        if gn == 0 or not np.isfinite(gn):
            return 1.0
        d = g * (1e-3 * max(xn, 1e-30) / gn)
        mu_d = self.param.forward(x + d)
        g2 = self.grad(mu_d, x + d)
        curv = _vdot(g2 - g, d) / max(_vdot(d, d), 1e-300)
        return 1.0 / curv if curv > 0 and np.isfinite(curv) else 1e-3 * xn / gn

    def diagonal_metric(self, mu, x):
        r"""Diagonal scaling :math:`P` of the gradient step at ``x`` (recomputed every step).

        ``"jacobi"``: :math:`P = 1/H` with :math:`H_j = \sum_i K_{ij}^2 h_i` and
        :math:`h_i = \max(1/\mu_i, D_i/\mu_i^2)` (expected and observed Poisson curvature, μ
        floored), plus the smooth penalty's diagonal.
        ``"em"``: :math:`P = x/(K^{\mathsf T}\mathbf 1)`, the metric in which a unit gradient
        step is the EM (Richardson–Lucy) update; it vanishes as a voxel approaches 0, so steps
        never drive an expected count to 0 where there are counts.
        """
        if self.metric == "em":
            if not hasattr(self, "_colsum"):
                if is_dask(self.lossX.D):  # chunked like the counts, kept on the workers
                    import dask.array as da

                    ones = (da.ones_like(self.lossX.D), da.ones_like(self.lossY.D))
                else:
                    ones = (np.ones(self.param.model.shape_X, self.dtype),
                            np.ones(self.param.model.shape_Y, self.dtype))
                cs = self.param.adjoint(*ones)
                self._colsum, = _persist(
                    np.maximum(cs, 1e-30 * float(cs.max())).astype(self.dtype))
            xm = mean_abs(x)
            if self.smooth is not None and hasattr(self.smooth, "lipschitz"):
                # EM for the likelihood, a separable majorant (row sums of |∇²s|) for the
                # smooth penalty: P = 1 / (Kᵀ1 / x + L_s) (De Pierro's combination)
                xf = np.maximum(x, 1e-6 * xm)
                return (xf / (self._colsum + xf * self.smooth.lipschitz())).astype(
                    self.dtype, copy=False)
            return em_metric(x, self._colsum, 1e-6 * xm, self.dtype)

        def curv(m, loss):
            floor = 0.01 * max(float(loss.D.mean()), 1e-12)
            mm = np.maximum(m, floor)
            return np.maximum(1.0 / mm, loss.D / (mm * mm)).astype(self.dtype)

        H = self.param.curvature(curv(mu[0], self.lossX), curv(mu[1], self.lossY))
        if self.smooth is not None and hasattr(self.smooth, "diag"):
            H = H + self.smooth.diag()
        Hm = float(H.mean(dtype=np.float64))
        P = 1.0 / np.maximum(H, 1e-4 * Hm)
        return P.astype(self.dtype)

    # -- run ---------------------------------------------------------------------
    def run(self, x0=None, state: SolverState | None = None) -> SolverState:
        """Iterate from ``x0`` (or continue ``state``) until converged or ``max_iter``.

        In memory the loop runs with BLAS on one thread per call and the large products split
        over the block threads instead (:mod:`xfusion._threads`: BLAS's spinning threads had
        slowed the prox ~2× on two cores); chunked (dask) runs leave threads to dask.
        """
        if is_dask(x0 if state is None else state.x):
            return self._iterate(x0, state)
        with serial_blas():
            return self._iterate(x0, state)

    def _iterate(self, x0, state: SolverState | None) -> SolverState:
        if state is None:
            x0 = x0.astype(self.dtype)
            st = SolverState(x=x0, x_prev=x0)
        else:
            st = state
            st.x = st.x.astype(self.dtype)
            st.x_prev = st.x_prev.astype(self.dtype)
            if st.reg_state and hasattr(self.reg, "set_state"):
                self.reg.set_state(st.reg_state)
        x, x_prev = _persist(st.x, st.x_prev)
        st.x, st.x_prev = x, x_prev
        mu_x = tuple(_persist(*self.param.forward(x)))
        mu_xp = tuple(_persist(*self.param.forward(x_prev))) if state is not None else mu_x
        if state is None:
            if self.metric:
                st.metric = self.diagonal_metric(mu_x, x)
                st.step = 1.0
            else:
                g0 = self.grad(mu_x, x)
                st.step = self.initial_step(x, mu_x, g0)
            st.history.append(self.objective(x, mu_x))
        P = st.metric
        # momentum from the stored (t, x_prev): y = x + beta (x - x_prev)
        y, mu_y = self._extrapolate(self._capped(self._beta_from(st)), x, x_prev, mu_x, mu_xp)
        if not np.isfinite(st.history[-1]):
            raise SolverError(f"the objective at the starting point is {st.history[-1]} "
                              f"(non-finite): the initial cube or the data contain NaN/Inf")
        while st.iteration < self.max_iter and not st.converged:
            f_y, g = self.value_and_grad(mu_y, y)
            hold = P is not None and self.held()
            if self.metric and not hold:
                st.metric = P = self.diagonal_metric(mu_y, y)
            g, P = _persist(g, P)  # (dask: each is read several times below)
            st.metric = P
            if not np.isfinite(f_y):
                raise SolverError(f"objective became non-finite ({f_y}) at iteration "
                                  f"{st.iteration}; stopping")
            tries = 0
            while True:
                tries += 1
                v = scaled_step(y, g, P, st.step)
                x_new = self.reg.prox(v, st.step, P)
                x_new, = _persist(x_new)
                mu_new = tuple(_persist(*self.param.forward(x_new)))
                f_new = self.f(mu_new, x_new)
                dd, gd = step_products(x_new, y, g, P)
                if not np.isfinite(f_new) and np.isfinite(f_y) and tries < 60:
                    st.step *= 0.5
                    continue
                # slack: expected counts are held in the working precision (float32 by
                # default), so f is known only to ~eps·|f|; a stricter test could fail on
                # rounding alone
                bound = f_y + gd + dd / (2 * st.step)
                if f_new <= bound + self._slack * abs(f_y) or dd == 0:
                    break
                # with the EM metric the quadratic model is not a majorizer (the EM surrogate
                # is a Kullback-Leibler one); there a sufficient decrease along the step
                # (Armijo, c = 1e-4) is accepted too — measured: the quadratic test alone
                # halved lrs's step from 1 to 2e-6 after a momentum step whose decrease was
                # 0.2 % of the model's, and the run then crept on at that step
                if self.metric == "em" and gd < 0 and f_new <= f_y + ARMIJO * gd:
                    break
                st.step *= 0.5
                if tries >= 60:
                    raise SolverError(f"no step satisfies the descent condition after 60 "
                                      f"halvings at iteration {st.iteration} (step "
                                      f"{st.step:.3e}); the data or model may be inconsistent")
            F = f_new + self.reg.value(x_new)
            if not np.isfinite(F):
                raise SolverError(f"objective became {F} at iteration {st.iteration + 1}; "
                                  f"check the inputs for NaN/Inf or zero effective area where "
                                  f"there are counts")
            F_old = st.history[-1]
            rel = abs(F_old - F) / max(abs(F), 1e-300)
            if hold and len(st.history) >= HELD_WINDOW:
                # the trend of the surrogate, not its step-to-step jitter (measured on
                # realistic_1kev_rebin: it rose in half the steps, ~2e-6 each, with no net
                # change, so a per-step test stopped at 395 or 704 iterations by chance)
                rel = abs(st.history[-HELD_WINDOW] - F) / (HELD_WINDOW * max(abs(F), 1e-300))
            # (held metric: the objective is a surrogate of a fixed map; no restart on it)
            restart = F > F_old and not hold
            st.iteration += 1
            st.history.append(F)
            st.steps.append(st.step)
            st.calm = st.calm + 1 if rel < self.tol else 0
            if st.calm >= self.needed_calm() and getattr(self.reg, "frozen", True):
                st.converged = True
            if tries == 1:
                # with the EM metric the natural step is 1: after a halving (typically at a
                # momentum point with a steep gradient) it comes back within a few
                # iterations (measured: at 1.05 per iteration lr/lrs crept along at 1e-3
                # steps and the stopping rule fired far from the minimum)
                st.step *= GROW if self.metric == "em" else 1.05
            if self.metric == "em":
                st.step = min(st.step, 1.0)  # the EM step keeps every voxel positive
            # momentum
            if restart or not self.momentum:
                st.t = 1.0
                beta = 0.0
            else:
                t_new = 0.5 * (1 + math.sqrt(1 + 4 * st.t * st.t))
                beta = (st.t - 1) / t_new
                st.t = t_new
            st.x_prev, st.x = x, x_new
            mu_xp, mu_x = mu_x, mu_new
            x_prev, x = x, x_new
            if hasattr(self.reg, "end_iteration"):
                self.reg.end_iteration(st.iteration)
            # capped by the state after end_iteration, as a resumed run caps it
            y, mu_y = self._extrapolate(self._capped(beta), x, x_prev, mu_x, mu_xp)
            if hasattr(self.reg, "state"):
                st.reg_state = self.reg.state()
            for cb in self.callbacks:
                cb(st, rel)
            if self.checkpointer is not None:
                self.checkpointer(st)
        if self.checkpointer is not None:
            self.checkpointer(st, force=True)
        return st

    def held(self) -> bool:
        """Whether the metric is held: the regularizer's thresholds depend on the metric and
        are frozen (and ``freeze_metric``), so each step applies one fixed map."""
        return bool(self.freeze_metric and self.metric
                    and getattr(self.reg, "metric_dependent", False)
                    and getattr(self.reg, "frozen", False))

    def needed_calm(self) -> int:
        """Consecutive calm iterations needed to stop now (the patience in force)."""
        if self.patience is not None:
            return self.patience
        return HELD_PATIENCE if self.held() else PATIENCE

    def _capped(self, beta: float) -> float:
        return min(beta, HELD_BETA_MAX) if self.held() else beta

    def _extrapolate(self, beta: float, x, x_prev, mu_x, mu_xp):
        """The momentum point ``y`` and its expected counts."""
        if not beta:
            return x, mu_x
        if self.metric == "em":
            # floored voxel by voxel (a global cap on β would switch momentum off); the floor
            # makes y non-linear in (x, x_prev): its expected counts are those of the linear
            # extrapolation plus those of the (few) raises the floor made, when the model can
            # apply itself to a sparse cube, else recomputed
            if not is_dask(x) and hasattr(self.param, "forward_sparse"):
                y, index, values = momentum_point(x, x_prev, beta, self.momentum_floor, True)
                if index.size <= SPARSE_MAX * y.size:
                    dmu = self.param.forward_sparse(index, values)
                    if dmu is not None:
                        return y, tuple((a + beta * (a - b)) + d
                                        for a, b, d in zip(mu_x, mu_xp, dmu, strict=True))
                return y, tuple(self.param.forward(y))
            y, = _persist(momentum_point(x, x_prev, beta, self.momentum_floor))
            return y, tuple(_persist(*self.param.forward(y)))
        y = x + beta * (x - x_prev)
        mu_y = tuple(a + beta * (a - b) for a, b in zip(mu_x, mu_xp))
        y, *mu_y = _persist(y, *mu_y)
        return y, tuple(mu_y)

    @staticmethod
    def _beta_from(st: SolverState) -> float:
        """Momentum weight implied by the stored ``t`` (the value used after the last step)."""
        if st.iteration == 0 or st.t <= 1.0:
            return 0.0
        # t was updated to t_new at the end of the last step: beta = (t_old - 1) / t_new,
        # with t_old recovered from t_new = (1 + sqrt(1 + 4 t_old²)) / 2.
        t_new = st.t
        t_old = math.sqrt(max(((2 * t_new - 1) ** 2 - 1) / 4, 0.0))
        return (t_old - 1) / t_new
