"""Solver checkpoints: the state of an interrupted run, and what it was a run of.

A checkpoint is a directory with two Zarr slots (``a``, ``b``) and a pointer file
(:data:`xfusion._store.POINTER`) naming the complete one (:func:`xfusion._store.write_slot`):
every write goes to the other slot and the pointer is replaced by an atomic rename once the
slot is complete, so at every instant one complete checkpoint exists and an interrupted write
leaves nothing beside it.

Each slot records, besides the iterate, the momentum and the step, the checkpoint's
*identity*: a fingerprint of the problem (:func:`problem_fingerprint`: sizes, counts, exposures
and responses) and the settings that determine the result. :func:`check_identity` refuses to
resume under a different problem or settings, naming what differs; only the stopping
settings (``max_iter``, ``tol``, ``patience``) and how the run is carried out (progress,
chunks, scheduler, checkpoint period, output) may change.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ._store import POINTER, read_pointer, store_kind, write_slot
from .operators.base import is_dask

__all__ = ["Checkpointer", "save_state", "load_state", "problem_fingerprint",
           "check_identity", "CheckpointError", "STOPPING"]

#: settings a resumed run may change (they decide when to stop, not where the run goes)
STOPPING = ("max_iter", "tol", "patience")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, incomplete, or of another problem or
    other settings (the message names what differs)."""


class Checkpointer:
    """Write the solver state to the checkpoint directory ``path`` every ``every`` iterations
    (and at the end), atomically; ``meta`` is the run's identity, stored with each state."""

    def __init__(self, path: str | os.PathLike, every: int = 50, meta: dict | None = None):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"checkpoint_every must be a whole number ≥ 1, got {every!r}")
        self.path = os.fspath(path)
        self.every = int(every)
        self.meta = dict(meta or {})

    def __call__(self, state, rel: float | None = None) -> None:
        """A solver callback: write when ``state.iteration`` is a multiple of ``every``."""
        if state.iteration > 0 and state.iteration % self.every == 0:
            save_state(self.path, state, self.meta)

    def finish(self, state) -> None:
        """Write the final state (the solver calls this at the end of the run)."""
        save_state(self.path, state, self.meta)


def save_state(path: str | os.PathLike, state, meta: dict | None = None) -> None:
    """Write ``state`` (a :class:`xfusion.solver.SolverState`) to the checkpoint directory
    ``path`` atomically (see the module docstring)."""
    import xarray as xr

    from ._dask import regular
    from ._store import MARK

    dims = [f"d{i}" for i in range(np.ndim(state.x))]
    # dask arrays are written chunk by chunk (Zarr needs regular chunks)
    ds = xr.Dataset({"x": (dims, regular(state.x)), "x_prev": (dims, regular(state.x_prev))})
    if state.metric is not None:
        ds["metric"] = (dims, regular(state.metric))
    for k, v in state.reg_state.items():
        arr = regular(v) if is_dask(v) else np.asarray(v)
        ds[f"reg_{k}"] = ([f"reg_{k}_{i}" for i in range(arr.ndim)], arr)
    ds.attrs.update({
        "t": state.t, "step": state.step, "iteration": state.iteration,
        "history": json.dumps(state.history), "steps": json.dumps(state.steps),
        "quiet": state.quiet, "converged": int(state.converged),
        "meta": json.dumps(meta or {}), "complete": 1, MARK: "checkpoint",
    })
    write_slot(os.fspath(path), lambda store: ds.to_zarr(store, mode="w", consolidated=True))


def _slot(path: str) -> str:
    """The Zarr store holding the complete state of checkpoint ``path`` (a slot directory, or
    ``path`` itself for checkpoints written as one store by earlier versions)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    if os.path.isfile(os.path.join(path, POINTER)):
        slot = read_pointer(path)
        if slot is None or not os.path.isdir(slot):
            raise CheckpointError(f"checkpoint {path}: its pointer file names no complete "
                                  f"state; not resuming from it")
        return slot
    if store_kind(path) != "checkpoint":
        raise CheckpointError(f"{path} is not an xfusion checkpoint (no {POINTER} and no "
                              f"solver state); not resuming from it")
    return path


def load_state(path: str | os.PathLike, chunks=None):
    """Read a checkpoint written by :func:`save_state`; refuse incomplete ones.

    Returns
    -------
    (SolverState, dict)
        The state and the identity it was written with (``meta``).
    """
    import xarray as xr
    import zarr

    from .solver import SolverState

    path = os.fspath(path)
    store = _slot(path)
    try:
        complete = zarr.open_group(store, mode="r").attrs.get("complete", 0)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} is unreadable ({e}); not resuming from it") \
            from e
    if not complete:
        raise CheckpointError(f"checkpoint {path} is incomplete (interrupted write); "
                              f"not using it")
    try:
        ds = xr.open_zarr(store, consolidated=None, chunks=chunks)
        if chunks is None:
            ds = ds.load()
        reg = {k[4:]: ds[k].values for k in ds.data_vars if k.startswith("reg_")}
        a = ds.attrs
        st = SolverState(x=ds["x"].data, x_prev=ds["x_prev"].data, t=float(a["t"]),
                         step=float(a["step"]), iteration=int(a["iteration"]),
                         history=json.loads(a["history"]), steps=json.loads(a["steps"]),
                         quiet=int(a["quiet"] if "quiet" in a else a["calm"]),
                         converged=bool(a["converged"]), reg_state=reg,
                         metric=ds["metric"].data if "metric" in ds else None)
        meta = json.loads(a.get("meta", "{}"))
    except (KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); "
                              f"not resuming from it") from e
    return st, meta


def _digest(h, a) -> None:
    a = np.asarray(a, dtype=np.float64)
    h.update(str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())


def problem_fingerprint(ds) -> dict:
    """A short identity of a fusion problem: sizes and hashes of its counts and responses.

    The counts are summarised by their sums along each axis (one pass over each cube, on
    dask too), so two noise draws of the same scenario differ; the responses (PSF, RMF,
    effective areas) and exposures are hashed whole. Returns
    ``{"sizes": ..., "counts": hex, "responses": hex}``.
    """
    import dask

    h = hashlib.sha256()
    sums = []
    for name in ("X", "Y"):
        D = ds[name].data
        sums += [D.sum(axis=(1, 2)), D.sum(axis=(0, 2)), D.sum(axis=(0, 1))]
    for a in dask.compute(*sums) if any(is_dask(s) for s in sums) else sums:
        _digest(h, a)
    counts = h.hexdigest()[:16]
    h = hashlib.sha256()
    for name in sorted(ds.data_vars):
        if name in ("X", "Y") or str(name).endswith("_true"):   # truth is not the problem
            continue
        v = ds[name]
        if v.size <= 50_000_000:
            _digest(h, v.values)
        else:
            _digest(h, v.sum().values)
    for name in ("X", "Y"):
        h.update(repr(ds[name].attrs.get("exposure")).encode())
    for c in ("energy", "y", "x"):
        if c in ds.coords:
            _digest(h, ds.coords[c].values)
    if "observed_X" in ds.coords:     # the X channels used (absent: all, as before)
        _digest(h, ds.coords["observed_X"].values)
    return {"sizes": {k: int(v) for k, v in ds.sizes.items()}, "counts": counts,
            "responses": h.hexdigest()[:16]}


def check_identity(path, saved: dict, wanted: dict) -> None:
    """Refuse to resume from checkpoint ``path`` when ``saved`` (its identity) differs from
    ``wanted`` in anything but the stopping settings.

    Raises
    ------
    CheckpointError
        Naming every differing setting with both values, or saying the problem differs.
    """
    if "problem" not in saved:
        raise CheckpointError(f"resume: checkpoint {path} records no problem or settings "
                              f"(written by an older version); it cannot be checked, so it is "
                              f"not used: start a new run")
    diffs = []
    if saved["problem"] != wanted["problem"]:
        what = [k for k in ("sizes", "counts", "responses")
                if saved["problem"].get(k) != wanted["problem"].get(k)]
        diffs.append(f"the problem ({' and '.join(what)} differ: it is another problem or "
                     f"another noise draw)")
    s, w = saved.get("settings", {}), wanted.get("settings", {})
    for k in sorted(set(s) | set(w)):
        if k in STOPPING:
            continue
        if s.get(k) != w.get(k):
            diffs.append(f"{k}={s.get(k)!r} there, {w.get(k)!r} here")
    if diffs:
        raise CheckpointError(f"resume: checkpoint {path} was written for a different run: "
                              + "; ".join(diffs) + " (only max_iter, tol and patience may "
                              "change when resuming)")
