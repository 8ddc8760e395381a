"""Base class for the linear operators of the forward model."""

from __future__ import annotations

import numpy as np

from ..halo import is_dask

__all__ = ["LinearOperator", "Chain", "is_dask"]




class LinearOperator:
    """A linear map between (energy, y, x)-shaped arrays with an exact adjoint.

    Subclasses set ``shape_in`` / ``shape_out`` and implement :meth:`forward` and :meth:`adjoint`.
    Both keep the input's floating dtype (float32 in, float32 out) and accept numpy or dask
    arrays.
    """

    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]

    def forward(self, z):
        raise NotImplementedError

    def adjoint(self, y):
        raise NotImplementedError

    def __call__(self, z):
        return self.forward(z)

    def squared(self) -> LinearOperator:
        """The operator with every matrix entry squared, ``K ∘ K`` (for diagonal curvature:
        ``diag(Kᵀ H K) = (K∘K)ᵀ diag(H)``)."""
        raise NotImplementedError(f"{type(self).__name__} has no squared form")

    def __matmul__(self, other: LinearOperator) -> Chain:
        return Chain([other, self])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shape_in} -> {self.shape_out})"


class Chain(LinearOperator):
    """Composition ``ops[-1] ∘ … ∘ ops[0]`` (``ops[0]`` is applied first)."""

    def __init__(self, ops: list[LinearOperator]):
        flat: list[LinearOperator] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Chain) else [op])
        for a, b in zip(flat[:-1], flat[1:], strict=False):
            if tuple(a.shape_out) != tuple(b.shape_in):
                raise ValueError(f"cannot chain {a!r} into {b!r}: shapes do not match")
        self.ops = flat
        self.shape_in, self.shape_out = flat[0].shape_in, flat[-1].shape_out

    def squared(self) -> Chain:
        return Chain([op.squared() for op in self.ops])

    def forward(self, z):
        for op in self.ops:
            z = op.forward(z)
        return z

    def adjoint(self, y):
        for op in reversed(self.ops):
            y = op.adjoint(y)
        return y


def float_dtype(a) -> np.dtype:
    """The floating dtype an operator returns for input ``a`` (float32 stays float32)."""
    dt = np.dtype(a.dtype)
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)
