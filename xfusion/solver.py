r"""The HIFReD iteration: accelerated proximal gradient with automatic steps.

Problem (docs/model.md), over the cube Z or low-rank coefficients W (Z = V W):

.. math::

    \min_x\; f(x) + \varphi(x),\qquad
    f(x) = \mathcal L_P(X \mid \mu_X(x)) + \mathcal L_P(Y \mid \mu_Y(x)) + s(x)

with the Poisson deviances :math:`\mathcal L_P` (:class:`~xfusion.likelihood.PoissonLikelihood`),
an optional smooth penalty ``s`` (e.g. :class:`~xfusion.functionals.Sobolev`) and a
prox-friendly term φ (positivity, l1 of starlet coefficients), all passed in.

The solver has the shape of PyLops' and SCICO's: :meth:`FISTA.setup` prepares a
:class:`SolverState`, :meth:`FISTA.step` runs one iteration, :meth:`FISTA.run` loops until a
stopping rule fires or ``max_iter``. What varies is passed in as objects:

* the **step size** (:mod:`xfusion.steps`): the metric P and the backtracking rule
  (:class:`~xfusion.steps.EMBacktracking` by default, or
  :class:`~xfusion.steps.QuadraticBacktracking`);
* the **stopping rule** (:class:`RelativeChange`);
* **callbacks** ``cb(state, rel)`` after every iteration, with an optional ``finish(state)``
  at the end of the run: progress (:class:`ProgressBar`), checkpoints
  (:class:`~xfusion.checkpoint.Checkpointer`);
* the **guard** on non-finite objectives (:class:`FiniteGuard`).

Method: FISTA (Beck & Teboulle 2009) with

* **backtracking**: the Poisson term is not globally Lipschitz, so the step is found, never
  given (the strategy's first step, halved until accepted, grown after a first-try success);
* **adaptive restart** (O'Donoghue & Candès 2015): momentum is reset when the objective rises;
* with a strategy that needs it (the EM metric), a **positive momentum point**
  :math:`y = \max(x_k + \beta(x_k - x_{k-1}),\, \theta x_k)` with :math:`\theta` =
  ``momentum_floor`` (0.1), so that :math:`P = y / K^{\mathsf T}1` stays positive; its expected
  counts are extrapolated and corrected for the voxels the floor raised (0.1–2 % of them),
  column by column (:meth:`~xfusion.operators.ForwardModel.forward_sparse`), or recomputed
  where the model has no column form. Capping β globally instead, so that no voxel goes
  negative, switches momentum off in practice (some voxel is always about to reach 0);
* otherwise expected counts are **extrapolated**, not recomputed: the model is linear, so
  :math:`\mu(y_{k+1}) = \mu(x_{k+1}) + \beta(\mu(x_{k+1}) - \mu(x_k))`;
* **holding the metric**: once a regularizer whose prox depends on the metric
  (``hold_metric``, e.g. :class:`~xfusion.regularizers.StarletL1` for ``w2d1d``) has frozen
  its thresholds, P is kept fixed, so each step applies one fixed scaled forward–backward
  map (docs/solver.md). The reported objective is then a surrogate (threshold-then-reconstruct
  is not the prox of the l1 term): momentum is no longer restarted on it but capped at
  :data:`HOLD_BETA_MAX`, the default patience is :data:`HOLD_PATIENCE` and the relative change
  is taken over :data:`HOLD_WINDOW` iterations (per iteration).

The loop is written with array operations only, so the same code runs on numpy and dask arrays
(persisted every iteration so the task graph stays bounded).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._dask import is_dask, persist
from ._step_ops import momentum_point, scaled_step, step_products
from ._threads import serial_blas
from .steps import EMBacktracking, StepSize

__all__ = ["SolverError", "SolverState", "FISTA", "RelativeChange", "FiniteGuard",
           "ProgressBar", "Checkpointer", "PATIENCE", "HOLD_PATIENCE", "HOLD_WINDOW",
           "HOLD_BETA_MAX"]

# checkpoints live in their own module; these names stay importable from here
from .checkpoint import Checkpointer, load_state, save_state  # noqa: E402,F401

#: the momentum point's expected counts are corrected column by column while the floor moves at
#: most this fraction of the voxels (above it one forward model is cheaper)
SPARSE_MAX = 0.02
#: once the metric is held, the momentum weight is capped at this value and the objective
#: restart is off (see :meth:`FISTA.holding_metric`)
HOLD_BETA_MAX = 0.9
#: default patience: consecutive iterations with a relative objective change below ``tol``
PATIENCE = 5
#: default patience while the metric is held: the memory of momentum capped at β is
#: ~1/(1 − β) iterations, and a shorter quiet spell can be a dip of the relative change
HOLD_PATIENCE = 10
#: while the metric is held the relative change is taken over this many iterations (per
#: iteration): the surrogate objective of the held map jitters from step to step
HOLD_WINDOW = 10
#: halvings of a trial step before the solver gives up
MAX_HALVINGS = 60


class SolverError(RuntimeError):
    """The iteration cannot go on (non-finite objective, a step that cannot be found)."""


@dataclass
class SolverState:
    """Everything the iteration needs to continue exactly where it stopped.

    ``quiet`` counts the consecutive iterations whose relative change was below the
    tolerance (the stopping rule fires when it reaches the patience).
    """

    x: object
    x_prev: object
    t: float = 1.0
    step: float = 0.0
    iteration: int = 0
    history: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    quiet: int = 0
    converged: bool = False
    reg_state: dict = field(default_factory=dict)
    metric: object = None


class RelativeChange:
    r"""Stop when :math:`|F_{k-1} - F_k| / |F_k| <` ``tol`` for ``patience`` iterations in a row.

    While the metric is held (:meth:`FISTA.holding_metric`) the change is the net change
    over :data:`HOLD_WINDOW` iterations, per iteration,
    :math:`|F_{k-W} - F_k| / (W |F_k|)` — the trend of the surrogate objective, not its
    step-to-step jitter (on ``realistic_1kev_rebin`` it rose in half the steps, ~2e-6 each,
    with no net change, so a per-step test stopped at 395 or 704 iterations by chance) — and
    the default patience is :data:`HOLD_PATIENCE`. A regularizer still adapting its thresholds
    (``frozen`` False) never lets the run stop.

    Parameters
    ----------
    tol : float
        Relative change under which an iteration counts as quiet.
    patience : int, optional
        Quiet iterations needed; default :data:`PATIENCE` (5), or :data:`HOLD_PATIENCE`
        (10) while the metric is held.
    """

    def __init__(self, tol: float = 1e-6, patience: int | None = None):
        self.tol = float(tol)
        self.patience = None if patience is None else int(patience)

    def change(self, history: list[float], F: float, holding: bool) -> float:
        """The relative change the rule counts for a new objective ``F`` after ``history``."""
        rel = abs(history[-1] - F) / max(abs(F), 1e-300)
        if holding and len(history) >= HOLD_WINDOW:
            rel = abs(history[-HOLD_WINDOW] - F) / (HOLD_WINDOW * max(abs(F), 1e-300))
        return rel

    def needed(self, holding: bool) -> int:
        """Quiet iterations needed to stop now (the patience in force)."""
        if self.patience is not None:
            return self.patience
        return HOLD_PATIENCE if holding else PATIENCE

    def __call__(self, state: SolverState, rel: float, holding: bool, settled: bool) -> bool:
        """Count the iteration just recorded in ``state``; True when the run has converged."""
        state.quiet = state.quiet + 1 if rel < self.tol else 0
        return state.quiet >= self.needed(holding) and settled


class FiniteGuard:
    """Stops the run with a :class:`SolverError` naming the likely cause when the objective
    is not finite (at the start, at a momentum point, after a step)."""

    def start(self, F: float) -> None:
        if not np.isfinite(F):
            raise SolverError(f"the objective at the starting point is {F} (non-finite): the "
                              f"initial cube or the data contain NaN/Inf")

    def momentum_point(self, f_y: float, iteration: int) -> None:
        if not np.isfinite(f_y):
            raise SolverError(f"objective became non-finite ({f_y}) at iteration "
                              f"{iteration}; stopping")

    def step(self, F: float, iteration: int) -> None:
        if not np.isfinite(F):
            raise SolverError(f"objective became {F} at iteration {iteration}; check the "
                              f"inputs for NaN/Inf or zero effective area where there are "
                              f"counts")


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
        self._state = None

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

    def finish(self, state: SolverState | None = None) -> None:
        """Show the final iteration and end the line."""
        if self._state is not None:
            self(*self._state, force=True)
        self.stream.write("\n")
        self.stream.flush()

    close = finish


class FISTA:
    """Accelerated proximal gradient for the fusion objective (see the module docstring).

    Parameters
    ----------
    likelihood : PoissonLikelihood
        The data term (:mod:`xfusion.likelihood`): expected counts, value and gradient.
    regularizer : Functional
        The prox-friendly term φ (:mod:`xfusion.regularizers`, :mod:`xfusion.functionals`):
        ``value``, ``prox(v, step, metric)``, ``prox_value``, and the adaptive hooks
        ``frozen``, ``end_iteration``, ``state``/``set_state``, ``hold_metric``.
    smooth : Functional, optional
        A smooth penalty s added to the likelihood (``value``, ``grad``; ``lipschitz`` and
        ``diag`` for the metrics).
    step : StepSize, optional
        Step-size strategy; default :class:`~xfusion.steps.EMBacktracking`.
    stop : RelativeChange, optional
        Stopping rule; default ``RelativeChange(1e-6)`` with the default patience.
    max_iter : int
        Upper bound on iterations (default 3000, as :func:`xfusion.fuse`).
    callbacks : list of callables ``cb(state, rel)``
        Called after every iteration, in order; ``cb.finish(state)`` at the end of
        :meth:`run` where defined (e.g. :class:`ProgressBar`, a
        :class:`~xfusion.checkpoint.Checkpointer`).
    momentum : bool
        FISTA extrapolation (default); ``False`` gives plain proximal gradient with the same
        backtracking, a second solver to cross-check the first.
    momentum_floor : float
        With a strategy that needs a positive momentum point, it is floored at
        ``momentum_floor * x`` voxel by voxel (default 0.1).
    hold_metric : bool
        Hold the metric once a regularizer that asks for it (``regularizer.hold_metric``)
        has frozen its thresholds (default True; see the module docstring).
    """

    def __init__(self, likelihood, regularizer, smooth=None, *, step: StepSize | None = None,
                 stop: RelativeChange | None = None, max_iter: int = 3000,
                 callbacks: list[Callable] | None = None, momentum: bool = True,
                 momentum_floor: float = 0.1, hold_metric: bool = True):
        self.likelihood = likelihood
        self.param = likelihood.param
        self.dtype = likelihood.dtype
        self.reg = regularizer
        self.smooth = smooth
        self.step_size = EMBacktracking() if step is None else step
        self.stop = RelativeChange() if stop is None else stop
        self.max_iter = int(max_iter)
        self.callbacks = list(callbacks or [])
        self.guard = FiniteGuard()
        self.momentum = bool(momentum)
        if not 0 < momentum_floor < 1:
            raise ValueError(f"momentum_floor must be in (0, 1), got {momentum_floor!r}")
        self.momentum_floor = float(momentum_floor)
        self.hold_metric = bool(hold_metric)
        self._slack = max(1e-12, 4 * float(np.finfo(self.dtype).eps))
        self.state: SolverState | None = None

    # -- the objective -------------------------------------------------------------
    def f(self, mu, x) -> float:
        """The smooth part f at ``x`` whose expected counts are ``mu``."""
        v = self.likelihood.value(mu)
        if self.smooth is not None:
            v += self.smooth.value(x)
        return v

    def value_and_grad(self, mu, x):
        """f and its gradient at ``x`` whose expected counts are ``mu``."""
        v, g = self.likelihood.value_and_grad(mu)
        if self.smooth is not None:
            v += self.smooth.value(x)
            g = g + self.smooth.grad(x)
        return v, g

    def objective(self, x, mu=None) -> float:
        """f + φ at ``x``."""
        mu = self.likelihood.forward(x) if mu is None else mu
        return self.f(mu, x) + self.reg.value(x)

    def holding_metric(self) -> bool:
        """Whether the metric is held now: the regularizer asks for it (``hold_metric``) and
        its thresholds are frozen, the solver allows it, and the strategy has a metric."""
        return bool(self.hold_metric and self.step_size.uses_metric
                    and getattr(self.reg, "hold_metric", False) and self.reg.frozen)

    # -- setup / step / run ----------------------------------------------------------
    def setup(self, x0=None, state: SolverState | None = None) -> SolverState:
        """Start from ``x0`` or continue ``state``: the first metric, step and objective, and
        the momentum point of the next step."""
        if state is None:
            x0 = x0.astype(self.dtype)
            st = SolverState(x=x0, x_prev=x0)
        else:
            st = state
            st.x = st.x.astype(self.dtype)
            st.x_prev = st.x_prev.astype(self.dtype)
            if st.reg_state:
                self.reg.set_state(st.reg_state)
        x, x_prev = persist(st.x, st.x_prev)
        st.x, st.x_prev = x, x_prev
        mu_x = tuple(persist(*self.likelihood.forward(x)))
        mu_xp = tuple(persist(*self.likelihood.forward(x_prev))) if state is not None else mu_x
        if state is None:
            if self.step_size.uses_metric:
                st.metric = self.step_size.metric(self, mu_x, x)
            st.step = self.step_size.initial(self, x, mu_x)
            st.history.append(self.objective(x, mu_x))
        self._mu = (mu_x, mu_xp)
        self._y = self._extrapolate(self._capped(self._beta_from(st)), x, x_prev, mu_x, mu_xp)
        self.guard.start(st.history[-1])
        self.state = st
        return st

    def step(self) -> float:
        """One iteration from the prepared momentum point; returns the relative change the
        stopping rule counted."""
        st = self.state
        x = st.x
        mu_x, _ = self._mu
        y, mu_y = self._y
        P = st.metric
        f_y, g = self.value_and_grad(mu_y, y)
        hold = P is not None and self.holding_metric()
        if self.step_size.uses_metric and not hold:
            P = self.step_size.metric(self, mu_y, y)
        g, P = persist(g, P)  # (dask: each is read several times below)
        st.metric = P
        self.guard.momentum_point(f_y, st.iteration)
        x_new, mu_new, f_new, tries = self._search(y, g, P, f_y, st)
        F = f_new + self.reg.prox_value(x_new)
        self.guard.step(F, st.iteration + 1)
        rel = self.stop.change(st.history, F, hold)
        # (held metric: the objective is a surrogate of a fixed map; no restart on it)
        restart = F > st.history[-1] and not hold
        st.iteration += 1
        st.history.append(F)
        st.steps.append(st.step)
        if self.stop(st, rel, self.holding_metric(), self.reg.frozen):
            st.converged = True
        st.step = self.step_size.grow(st.step, tries)
        # momentum
        if restart or not self.momentum:
            st.t = 1.0
            beta = 0.0
        else:
            t_new = 0.5 * (1 + math.sqrt(1 + 4 * st.t * st.t))
            beta = (st.t - 1) / t_new
            st.t = t_new
        st.x_prev, st.x = x, x_new
        self._mu = (mu_new, mu_x)
        self.reg.end_iteration(st.iteration)
        # capped by the state after end_iteration, as a resumed run caps it
        self._y = self._extrapolate(self._capped(beta), x_new, x, mu_new, mu_x)
        st.reg_state = self.reg.state()
        for cb in self.callbacks:
            cb(st, rel)
        return rel

    def run(self, x0=None, state: SolverState | None = None) -> SolverState:
        """Iterate from ``x0`` (or continue ``state``) until converged or ``max_iter``.

        In memory the loop runs with BLAS on one thread per call and the large products split
        over the block threads instead (:mod:`xfusion._threads`: BLAS's spinning threads had
        slowed the prox ~2× on two cores); chunked (dask) runs leave threads to dask.
        """
        if is_dask(x0 if state is None else state.x):
            return self._loop(x0, state)
        with serial_blas():
            return self._loop(x0, state)

    def _loop(self, x0, state):
        st = self.setup(x0, state)
        while st.iteration < self.max_iter and not st.converged:
            self.step()
        for cb in self.callbacks:
            finish = getattr(cb, "finish", None)
            if finish is not None:
                finish(st)
        return st

    # -- pieces --------------------------------------------------------------------
    def _search(self, y, g, P, f_y: float, st: SolverState):
        """Backtracking: the prox of a gradient step from ``y``, halved until accepted."""
        tries = 0
        while True:
            tries += 1
            v = scaled_step(y, g, P, st.step)
            x_new, = persist(self.reg.prox(v, st.step, P))
            mu_new = tuple(persist(*self.likelihood.forward(x_new)))
            f_new = self.f(mu_new, x_new)
            dd, gd = step_products(x_new, y, g, P)
            if not np.isfinite(f_new) and np.isfinite(f_y) and tries < MAX_HALVINGS:
                st.step *= 0.5
                continue
            # slack: expected counts are held in the working precision (float32 by default),
            # so f is known only to ~eps·|f|; a stricter test could fail on rounding alone
            if self.step_size.accept(f_new, f_y, gd, dd, st.step, self._slack):
                return x_new, mu_new, f_new, tries
            st.step *= 0.5
            if tries >= MAX_HALVINGS:
                raise SolverError(f"no step satisfies the descent condition after "
                                  f"{MAX_HALVINGS} halvings at iteration {st.iteration} (step "
                                  f"{st.step:.3e}); the data or model may be inconsistent")

    def _capped(self, beta: float) -> float:
        return min(beta, HOLD_BETA_MAX) if self.holding_metric() else beta

    def _extrapolate(self, beta: float, x, x_prev, mu_x, mu_xp):
        """The momentum point ``y`` and its expected counts."""
        if not beta:
            return x, mu_x
        if self.step_size.positive_momentum:
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
                return y, self.likelihood.forward(y)
            y, = persist(momentum_point(x, x_prev, beta, self.momentum_floor))
            return y, tuple(persist(*self.likelihood.forward(y)))
        y = x + beta * (x - x_prev)
        mu_y = tuple(a + beta * (a - b) for a, b in zip(mu_x, mu_xp))
        y, *mu_y = persist(y, *mu_y)
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
