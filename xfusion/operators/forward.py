"""The composed forward model μ_X(Z), μ_Y(Z) (docs/model.md) and its adjoints."""

from __future__ import annotations

import math

import numpy as np

from .._threads import matmul
from .base import Chain, LinearOperator, float_dtype, is_dask
from .exposure import Exposure
from .psf import PSFConvolution
from .rebin import SpatialRebin
from .separable import KroneckerSpatial
from .spectral import SpectralResponse

__all__ = ["ForwardModel", "SpatialMatrix", "DENSE_MAX_ENTRIES"]

#: The Y-side spatial operator (PSF then block sum) is stored as a dense (m·n × M·N) matrix
#: when it has at most this many entries; larger images use FFTs (see docs/benchmarks.md).
DENSE_MAX_ENTRIES = 1_500_000


class SpatialMatrix(LinearOperator):
    r"""A spatial linear map applied identically to every energy slice, as a dense matrix.

    ``out[e] = A @ z[e].ravel()``; adjoint ``A^T``. Built from any energy-independent spatial
    operator by applying it to the identity basis, so it equals that operator to rounding.
    """

    def __init__(self, A: np.ndarray, shape_in: tuple[int, int, int],
                 shape_out: tuple[int, int, int]):
        self.A = np.asarray(A, dtype=np.float64)
        self.shape_in, self.shape_out = tuple(shape_in), tuple(shape_out)
        self._cache: dict = {}

    @classmethod
    def from_operator(cls, op: LinearOperator) -> SpatialMatrix:
        L, M, N = op.shape_in
        eye = np.eye(M * N).reshape(M * N, M, N)
        sub = _with_energy(op, M * N)
        cols = sub.forward(eye)  # (MN, m, n): column q of A is the image of basis q
        A = cols.reshape(M * N, -1).T
        return cls(A, op.shape_in, op.shape_out)

    def squared(self) -> SpatialMatrix:
        return SpatialMatrix(self.A**2, self.shape_in, self.shape_out)

    def _mats(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._cache:
            self._cache[dtype] = (np.ascontiguousarray(self.A.T, dtype), self.A.astype(dtype))
        return self._cache[dtype]

    def _apply(self, z, mat, shape_out):
        if is_dask(z):
            dt = float_dtype(z)
            if z.numblocks[1] > 1 or z.numblocks[2] > 1:
                # a dense spatial matrix needs whole images: merge y/x chunks (fuse picks the
                # FFT path instead when the cube is chunked in y/x)
                z = z.rechunk({1: -1, 2: -1})
            out_chunks = (z.chunks[0],) + tuple((s,) for s in shape_out[1:])
            return z.map_blocks(lambda b: self._apply(b, mat, (b.shape[0],) + shape_out[1:]),
                                dtype=dt, chunks=out_chunks,
                                meta=np.empty((0, 0, 0), dt))
        L = z.shape[0]
        return matmul(np.asarray(z).reshape(L, -1), mat).reshape((L,) + tuple(shape_out[1:]))

    def forward(self, z):
        return self._apply(z, self._mats(float_dtype(z))[0], self.shape_out)

    def adjoint(self, y):
        return self._apply(y, self._mats(float_dtype(y))[1], self.shape_in)


def _with_energy(op: LinearOperator, L: int) -> LinearOperator:
    """Rebuild an energy-independent spatial chain for a different number of slices."""
    ops = op.ops if isinstance(op, Chain) else [op]
    new = []
    for o in ops:
        if isinstance(o, PSFConvolution):
            new.append(PSFConvolution(o.kernels[0], (L,) + o.shape_in[1:]))
        elif isinstance(o, SpatialRebin):
            new.append(SpatialRebin((L,) + o.shape_in[1:], o.v[1], o.v[2]))
        else:
            raise TypeError(f"cannot densify {o!r}")
    return Chain(new)


def _head(op: LinearOperator) -> tuple[LinearOperator, list[LinearOperator]]:
    """The first operator of a chain (the one that reads Z) and the rest."""
    ops = op.ops if isinstance(op, Chain) else [op]
    return ops[0], ops[1:]


def _sparse_forward(op: LinearOperator, C, dtype):
    """``op.forward`` of the cube held by the sparse (L × M·N) matrix ``C``; the first operator
    of a chain is applied column by column (exposure: a rescaling of the nonzeros), the rest to
    its (small) dense output. ``None`` where that is not possible."""
    first, rest = _head(op)
    L, M, N = first.shape_in
    if isinstance(first, Exposure):
        w = np.broadcast_to(first.w(dtype), (L, M, N)).reshape(L, M * N)
        e = np.repeat(np.arange(L), np.diff(C.indptr))
        C = C.copy()
        C.data = C.data * w[e, C.indices]
        return _sparse_forward(Chain(rest), C, dtype) if rest else None
    if isinstance(first, SpectralResponse):
        RT = first.matrix(dtype)[1]                       # (L, l)
        out = np.ascontiguousarray((C.T @ RT).T).reshape(first.shape_out)
    elif isinstance(first, SpatialMatrix):
        out = np.asarray(C @ first._mats(dtype)[0]).reshape(first.shape_out)
    elif isinstance(first, KroneckerSpatial) and M * N * math.prod(
            first.shape_out[1:]) <= DENSE_MAX_ENTRIES:
        out = np.asarray(C @ first.dense_T(dtype)).reshape(first.shape_out)
    else:
        return None
    for o in rest:
        out = o.forward(out)
    return out.astype(dtype, copy=False)


class PixelMask(LinearOperator):
    """Multiply every energy slice by a fixed (m, n) 0/1 mask (pixels that were not observed)."""

    def __init__(self, mask, shape: tuple[int, int, int]):
        self.mask = np.asarray(mask, dtype=np.float64)
        if self.mask.shape != tuple(shape[1:]):
            raise ValueError(f"mask {self.mask.shape} does not match the image {shape[1:]}")
        self.shape_in = self.shape_out = tuple(shape)

    def squared(self) -> PixelMask:
        return self

    def forward(self, z):
        return z * self.mask.astype(float_dtype(z))[None]

    adjoint = forward


def _masked_rows(R, mask):
    r""":math:`O_X \odot R_X`: the response with the rows of unused channels set to 0 (the
    response itself when every channel is used or no mask is given)."""
    if mask is None:
        return R
    mask = np.asarray(mask)
    R = np.asarray(R)
    if mask.shape != R.shape[:1]:
        raise ValueError(f"mask_X has shape {mask.shape}, expected ({R.shape[0]},): one entry "
                         f"per X channel")
    if mask.all():
        return R
    return np.where(mask.astype(bool)[:, None], R, 0.0).astype(R.dtype, copy=False)


class ForwardModel:
    r"""Expected counts of both instruments for a cube Z of shape (L, M, N).

    .. math::

        \mu_X(Z) = R_X\,(t_X A_X \odot Z), \qquad
        \mu_Y(Z) = R_{MN}\,B_Y\,(t_Y A_Y \odot Z)

    with :math:`R_X` = ``response_X`` (spectral response and channel sum, l × L), :math:`B_Y` the
    PSF convolution and :math:`R_{MN}` the ``vM × vN`` block sum.

    Parameters
    ----------
    response_X : ndarray (l, L)
    psf_Y : ndarray (ky, kx) or (L, ky, kx)
    arf_X, arf_Y : ndarray (L,) or (L, M, N)
    exposure_X, exposure_Y : float
    shape : tuple (L, M, N)
    factors : tuple (vM, vN)
    mask_Y : ndarray (m, n) of bool, optional
        Y pixels that were observed; the others (e.g. Resolve's calibration pixel) are left out
        of the likelihood (their expected counts are set to 0 and their counts ignored). Read
        from an ``observed_Y`` coordinate by :meth:`from_dataset`.
    spatial : {"auto", "dense", "fft", "separable"}
        How to apply :math:`R_{MN} B_Y`: a dense (m·n × M·N) matrix (fast for small images),
        FFT convolution then block sum (any size), a short sum of Kronecker products
        (:class:`~xfusion.operators.separable.KroneckerSpatial`, for an energy-independent PSF
        of rank ≤ 2 such as a Gaussian: the cheapest where it applies), or ``"auto"``
        (separable where it applies, else dense when the matrix has at most
        :data:`DENSE_MAX_ENTRIES` entries and the PSF does not depend on energy, else FFTs).
    mask_X : ndarray (l,) of bool, optional
        X channels that are used; the others (e.g. edge channels fed by photons from outside
        Z's band) are left out of the likelihood: their rows of :math:`R_X` are zeroed, so
        their expected counts are 0, :math:`O_X \odot R_X` with :math:`O_X` the 0/1 mask.
        Read from an ``observed_X`` coordinate by :meth:`from_dataset`.
    """

    def __init__(self, response_X, psf_Y, arf_X, arf_Y, exposure_X: float, exposure_Y: float,
                 shape: tuple[int, int, int], factors: tuple[int, int], spatial: str = "auto",
                 mask_Y=None, mask_X=None):
        L, M, N = shape
        self.shape = tuple(shape)
        response_X = _masked_rows(response_X, mask_X)
        self.exp_X = Exposure(exposure_X, arf_X, shape)
        self.exp_Y = Exposure(exposure_Y, arf_Y, shape)
        self.resp_X = SpectralResponse(response_X, (M, N))
        self.psf = PSFConvolution(psf_Y, shape)
        self.rebin = SpatialRebin(shape, *factors)
        blur = Chain([self.psf, self.rebin])
        m, n = self.rebin.shape_out[1:]
        if spatial not in ("auto", "dense", "fft", "separable"):
            raise ValueError(f"spatial must be 'auto', 'dense', 'fft' or 'separable', got "
                             f"{spatial!r}")
        kron = None
        if spatial in ("auto", "separable") and not self.psf.energy_dependent:
            kron = KroneckerSpatial.from_psf(self.psf.kernels[0], shape, *factors)
        if spatial == "separable" and kron is None:
            raise ValueError("spatial='separable' needs a PSF that does not depend on energy "
                             "and whose kernel has rank ≤ 2 (e.g. a Gaussian)")
        if spatial == "auto":
            small = (m * n) * (M * N) <= DENSE_MAX_ENTRIES
            spatial = ("separable" if kron is not None
                       else "dense" if small and not self.psf.energy_dependent else "fft")
        if spatial == "separable":
            blur = kron
        if spatial == "dense":
            if self.psf.energy_dependent:
                raise ValueError("spatial='dense' needs a PSF that does not depend on energy")
            blur = SpatialMatrix.from_operator(blur)
        self.spatial_method = spatial
        if mask_Y is not None and not np.all(np.asarray(mask_Y)):
            blur = Chain([blur, PixelMask(mask_Y, (L, m, n))])
        self.blur_Y = blur
        # an effective area that depends on energy only commutes with the spatial operators
        # and folds into the spectral matrix: Z is then read once per instrument instead of
        # twice (measured: μ_X 6.4 → 3.6 ms, μ_Y 11.8 → 8.9 ms on 2400×45×45 float32)
        if self.exp_X.energy_only:
            self.op_X: LinearOperator = SpectralResponse(
                self.resp_X.R * self.exp_X.weights[None, :, 0, 0], (M, N))
        else:
            self.op_X = Chain([self.exp_X, self.resp_X])
        if self.exp_Y.energy_only:
            self.op_Y: LinearOperator = Chain(
                [blur, Exposure(exposure_Y, np.reshape(arf_Y, -1), (L, m, n))])
        else:
            self.op_Y = Chain([self.exp_Y, blur])
        self.shape_X = self.op_X.shape_out
        self.shape_Y = self.op_Y.shape_out

    @classmethod
    def from_dataset(cls, ds, spatial: str = "auto") -> ForwardModel:
        """Build the model of a validated problem Dataset."""
        from .rebin import rebin_factors

        f = rebin_factors(ds)
        shape = (ds.sizes["energy"], ds.sizes["y"], ds.sizes["x"])
        return cls(
            np.asarray(ds["response_X"].values), np.asarray(ds["psf_Y"].values),
            np.asarray(ds["arf_X"].values), np.asarray(ds["arf_Y"].values),
            float(ds["X"].attrs["exposure"]), float(ds["Y"].attrs["exposure"]),
            shape, (f.vM, f.vN), spatial=spatial,
            mask_Y=(np.asarray(ds.coords["observed_Y"].values, bool)
                    if "observed_Y" in ds.coords else None),
            mask_X=(np.asarray(ds.coords["observed_X"].values, bool)
                    if "observed_X" in ds.coords else None),
        )

    #: chunks of Z on the dask path (None: numpy, or whatever the input has)
    chunks = None

    def set_chunks(self, chunks) -> None:
        """Record Z's dask chunks so that operators producing Z-sized arrays from smaller ones
        (the spectral adjoint, the low-rank synthesis) chunk their output like Z."""
        self.chunks = None if chunks is None else tuple(tuple(c) for c in chunks)
        for op in (self.resp_X, self.op_X):
            if isinstance(op, SpectralResponse):
                op.energy_chunks = None if chunks is None else self.chunks[0]
        if hasattr(self, "_sq"):
            del self._sq

    def mu_X(self, Z):
        """Expected counts of X, shape (l, M, N)."""
        return self.op_X.forward(Z)

    def mu_Y(self, Z):
        """Expected counts of Y, shape (L, m, n)."""
        return self.op_Y.forward(Z)

    def adjoint_X(self, r):
        """:math:`\\mu_X^*(r) = t_X A_X \\odot R_X^T r`."""
        return self.op_X.adjoint(r)

    def adjoint_Y(self, r):
        """:math:`\\mu_Y^*(r) = t_Y A_Y \\odot B_Y^* R_{MN}^* r`."""
        return self.op_Y.adjoint(r)

    def adjoint(self, rX, rY):
        r""":math:`\mu_X^*(r_X) + \mu_Y^*(r_Y)`, the gradient of a function of both expected
        counts.

        On numpy input with the dense Y matrix and energy-only effective areas the two
        Z-sized products are written into one output (the second added block by block), so the
        sum costs no pass of its own; otherwise :meth:`adjoint_X` + :meth:`adjoint_Y`.
        """
        fx, fy = _head(self.op_X), _head(self.op_Y)
        if (is_dask(rX) or is_dask(rY) or not isinstance(fx[0], SpectralResponse)
                or not isinstance(fy[0], (SpatialMatrix, KroneckerSpatial))):
            return self.adjoint_X(rX) + self.adjoint_Y(rY)
        for o in reversed(fx[1]):
            rX = o.adjoint(rX)
        for o in reversed(fy[1]):
            rY = o.adjoint(rY)
        dt = np.result_type(float_dtype(rX), float_dtype(rY))
        rX, rY = np.asarray(rX, dt), np.asarray(rY, dt)
        L, M, N = self.shape
        out = matmul(fx[0].matrix(dt)[1], rX.reshape(rX.shape[0], -1))
        if isinstance(fy[0], KroneckerSpatial):
            fy[0].adjoint_into(rY, out=out.reshape(L * M, N), accumulate=True)
        else:
            matmul(rY.reshape(L, -1), fy[0]._mats(dt)[1], out=out, accumulate=True)
        return out.reshape(L, M, N)

    def curvature(self, hX, hY):
        r"""Diagonal of the Gauss-Newton curvature.

        .. math:: \mu_X^* \mathrm{diag}(h_X) \mu_X + \mu_Y^* \mathrm{diag}(h_Y) \mu_Y
        """
        if not hasattr(self, "_sq"):
            self._sq = (self.op_X.squared(), self.op_Y.squared())
        return self._sq[0].adjoint(hX) + self._sq[1].adjoint(hY)

    def forward(self, Z):
        """Return ``(mu_X, mu_Y)``."""
        return self.mu_X(Z), self.mu_Y(Z)

    def forward_sparse(self, index, values):
        r"""``(mu_X, mu_Y)`` of a cube that is zero except at the flat ``index`` (into Z's
        C-order raveling) where it holds ``values``, without forming the cube.

        Each nonzero costs one column of each operator (``l`` + ``m·n`` multiply-adds), so a
        cube with a few thousand nonzeros costs ~1/10 of :meth:`forward` (the solver uses it for
        the few voxels its momentum floor moves). Returns ``None`` when an operator has no
        column-wise form (FFT PSFs); the caller then forms the cube and calls :meth:`forward`.
        """
        import scipy.sparse as sp

        L, M, N = self.shape
        index = np.asarray(index, dtype=np.int64)
        values = np.asarray(values)
        e, p = np.divmod(index, M * N)
        C = sp.csr_matrix((values, (e, p)), shape=(L, M * N))
        out = tuple(_sparse_forward(op, C, values.dtype) for op in (self.op_X, self.op_Y))
        return None if any(o is None for o in out) else out
