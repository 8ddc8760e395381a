"""Test helpers shipped with the library (use them on your own operators too)."""

from __future__ import annotations

import numpy as np

__all__ = ["assert_adjoint", "adjoint_error"]


def _rand(rng, shape, dtype, positive=False):
    a = rng.standard_normal(shape)
    return (np.abs(a) if positive else a).astype(dtype)


def adjoint_error(op, shape_in=None, shape_out=None, dtype=np.float64, seed: int = 0,
                  forward=None, adjoint=None) -> float:
    r"""Relative dot-product error :math:`|\langle Az, y\rangle - \langle z, A^*y\rangle|
    / (\|Az\|\,\|y\|)`, computed in float64 from results obtained in ``dtype``.

    Parameters
    ----------
    op : object with ``forward``/``adjoint`` (and ``shape_in``/``shape_out``), or None
        When None, pass ``forward`` and ``adjoint`` callables and both shapes.
    """
    rng = np.random.default_rng(seed)
    fwd = forward or op.forward
    adj = adjoint or op.adjoint
    shape_in = tuple(shape_in or op.shape_in)
    shape_out = tuple(shape_out or op.shape_out)
    z = _rand(rng, shape_in, dtype)
    y = _rand(rng, shape_out, dtype)
    Az = np.asarray(fwd(z))
    Ay = np.asarray(adj(y))
    if Az.shape != shape_out or Ay.shape != shape_in:
        raise AssertionError(f"shapes: forward gave {Az.shape} (expected {shape_out}), "
                             f"adjoint gave {Ay.shape} (expected {shape_in})")
    if Az.dtype != np.dtype(dtype) or Ay.dtype != np.dtype(dtype):
        raise AssertionError(f"dtype: input {np.dtype(dtype)}, forward gave {Az.dtype}, "
                             f"adjoint gave {Ay.dtype}")
    lhs = np.vdot(Az.astype(np.float64), y.astype(np.float64))
    rhs = np.vdot(z.astype(np.float64), Ay.astype(np.float64))
    scale = np.linalg.norm(Az.astype(np.float64)) * np.linalg.norm(y.astype(np.float64))
    return float(abs(lhs - rhs) / max(scale, np.finfo(float).tiny))


def assert_adjoint(op, shape_in=None, shape_out=None, dtype=np.float64, rtol: float | None = None,
                   seed: int = 0, forward=None, adjoint=None) -> float:
    """Assert that ``op.adjoint`` is the adjoint of ``op.forward`` (dot-product test).

    Parameters
    ----------
    op : operator with ``forward``, ``adjoint``, ``shape_in``, ``shape_out``
    dtype : numpy dtype
        Inputs are drawn in this dtype; outputs must keep it.
    rtol : float, optional
        Default 1e-10 for float64, 1e-4 for float32.

    Returns
    -------
    float
        The relative error.
    """
    if rtol is None:
        rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    err = adjoint_error(op, shape_in, shape_out, dtype, seed, forward, adjoint)
    if not err <= rtol:
        raise AssertionError(f"adjoint test failed for {op!r}: relative error {err:.3e} > {rtol}")
    return err
