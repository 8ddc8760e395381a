"""What the solver iterates on: the full cube Z, or low-rank coefficients W with Z = V W.

A parametrization maps the unknown ``x`` to the expected counts ``(μ_X, μ_Y)`` and a pair of
count-space gradients back to the gradient in ``x`` (the adjoint). Both are linear, so the solver
can extrapolate expected counts instead of recomputing them.
"""

from __future__ import annotations

import numpy as np

from .operators import ForwardModel
from .operators.base import is_dask
from .operators.spectral import apply_energy_matrix

__all__ = ["FullCube", "LowRank", "nmf_subspace", "choose_rank", "subspace_fit",
           "RANKS"]


class FullCube:
    """``x = Z`` of shape (L, M, N)."""

    def __init__(self, model: ForwardModel):
        self.model = model
        self.shape = model.shape

    def forward(self, x):
        return self.model.mu_X(x), self.model.mu_Y(x)

    def adjoint(self, gX, gY):
        return self.model.adjoint(gX, gY)

    def forward_sparse(self, index, values):
        """:meth:`forward` of an ``x`` that is zero but at the flat ``index`` (or ``None``, see
        :meth:`xfusion.operators.ForwardModel.forward_sparse`)."""
        return self.model.forward_sparse(index, values)

    def to_cube(self, x):
        return x

    def from_cube(self, Z):
        return Z

    def curvature(self, hX, hY):
        """Diagonal of ``Kᵀ diag(h) K`` (Jacobi preconditioner)."""
        return self.model.curvature(hX, hY)


def _per_area(a: np.ndarray, w) -> np.ndarray:
    """``a / w`` with w = t_Y A_Y along ``a``'s first axis ((L,)) or of ``a``'s shape; zero
    where the area is zero."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 1:
        w = w.reshape((-1,) + (1,) * (a.ndim - 1))
    return np.divide(a, w, out=np.zeros(np.broadcast_shapes(a.shape, w.shape)), where=w > 0)


def nmf_subspace(Y, weights, rank: int, n_iter: int | None = None, seed: int = 0,
                 divergence: str = "frobenius", background=None) -> np.ndarray:
    r"""Non-negative spectral subspace (L × r) of Y, columns summing to 1.

    Parameters
    ----------
    Y : array (L, m, n)
        Counts of the fine-spectrum instrument.
    weights : array (L,)
        :math:`t_Y A_Y` per channel.
    rank : int
    n_iter : int, optional
        Iterations: 500 HALS sweeps for ``"frobenius"``, 400 multiplicative updates for
        ``"kl"`` by default.
    seed : int
        Seed of the positive random start (the result is deterministic).
    divergence : {"frobenius", "kl"}
        ``"frobenius"`` (default): the least-squares factorisation of Y's flux spectra,
        :math:`\min_{V,H\ge0}\lVert Y/(t_Y A_Y) - V H\rVert_F^2`, by hierarchical
        alternating least squares (HALS; Cichocki & Phan 2009: each column of V and row of H
        in turn is the exact non-negative minimiser with the others fixed). ``"kl"``: the
        Poisson maximum-likelihood factorisation of the counts,
        :math:`Y \approx \mathrm{diag}(t_Y A_Y)\,V H`, by multiplicative updates (Lee & Seung
        2001).
    background : array (L, m, n), optional
        Known expected background counts of Y. ``"frobenius"`` factorises the
        background-subtracted flux :math:`(Y - B_Y)/(t_Y A_Y)` (not clipped: least squares
        needs no positivity of the data, and clipping would bias faint channels up);
        ``"kl"`` fits :math:`Y \approx \mathrm{diag}(t_Y A_Y)\,V H + B_Y`. Without it the
        spectra would spend components on describing the background.

    Notes
    -----
    Unlike the paper's PCA basis, a non-negative basis keeps :math:`Z = VW \ge 0` whenever
    :math:`W \ge 0`, so positivity stays a simple projection and expected counts never turn
    negative. Least squares on the flux is the default because it is the criterion the
    cube is judged by (its squared error) and, like the paper's PCA, weighs bright spectra by
    their flux; the Poisson factorisation spends components on describing faint pixels'
    counts. Measured at full size with rank 10 (docs/solver.md): the least-squares basis
    describes the true cube of ``realistic_1kev_rebin`` better (non-negative projection
    12.1 dB against 11.1) and raises ``lr`` / ``lrs`` / ``lrw2d`` there from 9.23 / 9.65 /
    9.67 to 9.72 / 10.25 / 10.26 dB NMSE.
    """
    Y = np.asarray(Y, dtype=np.float64)
    L = Y.shape[0]
    D = Y.reshape(L, -1)
    w = np.asarray(weights, dtype=np.float64).reshape(L)
    rank = int(rank)
    if not 1 <= rank <= min(D.shape):
        raise ValueError(f"rank must be between 1 and {min(D.shape)} (the number of Y pixels "
                         f"or channels), got {rank}")
    if divergence not in ("frobenius", "kl"):
        raise ValueError(f"divergence must be 'frobenius' or 'kl', got {divergence!r}")
    rng = np.random.default_rng(seed)
    tiny = 1e-12
    Bf = _background_matrix(background, D.shape)
    if divergence == "frobenius":
        F = D if Bf is None else D - Bf
        V, H = _hals(_per_area(F, w), rank, 500 if n_iter is None else int(n_iter), rng)
    else:
        Bk = 0.0 if Bf is None else Bf
        A = w[:, None] * (0.5 + rng.random((L, rank)))
        H = (D.sum(0, keepdims=True) / max(A.sum(), 1e-300)) * (
            0.5 + rng.random((rank, D.shape[1])))
        for _ in range(400 if n_iter is None else int(n_iter)):
            # (R.T @ A).T instead of A.T @ R: the transposed-left product is slow in some BLAS
            R = D / np.maximum(A @ H + Bk, tiny)
            H *= (R.T @ A).T / np.maximum(A.sum(0)[:, None], tiny)
            R = D / np.maximum(A @ H + Bk, tiny)
            A *= (R @ np.ascontiguousarray(H.T)) / np.maximum(H.sum(1)[None, :], tiny)
        V = _per_area(A, w)
    norm = np.maximum(V.sum(0), 1e-300)
    order = np.argsort(-(H.sum(1) * V.sum(0)))     # by total flux of each component
    return (V / norm)[:, order]


def _background_matrix(background, shape: tuple[int, int]) -> np.ndarray | None:
    """A background of Y as the (L, pixels) float64 matrix of Y's counts, or None."""
    if background is None:
        return None
    B = np.asarray(background, dtype=np.float64)
    if B.size != shape[0] * shape[1] or B.shape[0] != shape[0]:
        raise ValueError(f"background: shape {B.shape} does not match Y's counts "
                         f"({shape[0]} channels × {shape[1]} pixels)")
    return B.reshape(shape)


def _hals(F: np.ndarray, rank: int, n_iter: int, rng) -> tuple[np.ndarray, np.ndarray]:
    r"""Least-squares NMF :math:`F \approx V H` (V: L × r, H: r × p, both ≥ 0) by HALS.

    Each sweep updates every row of H, then every column of V, by the exact minimiser in
    that block with the rest fixed, clipped at a small positive floor (so no component dies):
    :math:`H_k \leftarrow \max(\epsilon, H_k + [V^{\mathsf T}F - V^{\mathsf T}V H]_k
    / (V^{\mathsf T}V)_{kk})`, and likewise for V with :math:`F H^{\mathsf T}` and
    :math:`H H^{\mathsf T}`.
    """
    L, p = F.shape
    scale = max(float(F.mean()), 1e-300)
    V = scale * (0.5 + rng.random((L, rank)))
    H = 0.5 + rng.random((rank, p))
    floor = 1e-12 * scale
    for _ in range(n_iter):
        VtV, VtF = V.T @ V, V.T @ F
        for k in range(rank):
            H[k] = np.maximum(1e-12, H[k] + (VtF[k] - VtV[k] @ H) / max(VtV[k, k], 1e-300))
        HHt, FHt = H @ H.T, F @ H.T
        for k in range(rank):
            V[:, k] = np.maximum(floor, V[:, k] + (FHt[:, k] - V @ HHt[:, k])
                                 / max(HHt[k, k], 1e-300))
    return V, H


def subspace_fit(Y, weights, V, n_coef: int = 100, background=None) -> dict:
    r"""Goodness of fit of Y's counts by the spectra V with the best non-negative coefficients.

    Every pixel's coefficients H (r × pixels) are fitted by Poisson EM (``n_coef``
    multiplicative updates from the clipped least-squares solution) to
    :math:`Y \approx \mathrm{diag}(t_Y A_Y)\,V H + B_Y` (:math:`B_Y` = ``background``,
    Y's known expected background counts, or 0); returns
    :func:`xfusion.goodness.goodness_of_fit` of Y given that fit.
    """
    from .goodness import goodness_of_fit

    Y = np.asarray(Y, dtype=np.float64)
    D = Y.reshape(Y.shape[0], -1)
    Bf = _background_matrix(background, D.shape)
    A = np.asarray(weights, dtype=np.float64).reshape(-1)[:, None] * np.asarray(V, np.float64)
    if Bf is None:
        H = np.maximum(np.linalg.lstsq(A, D, rcond=None)[0], 1e-12)
        colsum = np.maximum(A.sum(0)[:, None], 1e-300)
        for _ in range(int(n_coef)):
            H *= (A.T @ (D / np.maximum(A @ H, 1e-12))) / colsum
        return goodness_of_fit(D, A @ H)
    H = np.maximum(np.linalg.lstsq(A, D - Bf, rcond=None)[0], 1e-12)
    colsum = np.maximum(A.sum(0)[:, None], 1e-300)
    for _ in range(int(n_coef)):
        H *= (A.T @ (D / np.maximum(A @ H + Bf, 1e-12))) / colsum
    return goodness_of_fit(D, A @ H, background=Bf)


#: candidate ranks of :func:`choose_rank` (``fuse(rank="auto")``), tried in this order
RANKS = (5, 10, 15, 20, 25, 30, 40)


def choose_rank(Y, weights, ranks=RANKS, n_iter: int | None = None, seed: int = 0,
                n_coef: int = 100, max_pixels: int = 1024,
                background=None) -> tuple[int, np.ndarray, list[dict]]:
    r"""The smallest rank whose NMF spectra describe Y's counts to the noise.

    For each candidate r (ascending) the subspace of :func:`nmf_subspace` is learnt, every Y
    pixel's coefficients are refitted by Poisson EM (``n_coef`` updates), and the C-statistic
    of Y against its expectation under that fit is computed (:mod:`xfusion.goodness`). The
    first r with :math:`C \le E[C]` is chosen (else the largest candidate).

    Parameters
    ----------
    Y : array (L, m, n)
        Counts of the fine-spectrum instrument.
    weights : array (L,)
        :math:`t_Y A_Y` per channel.
    ranks : sequence of int
        Candidates; those above the number of Y pixels or channels are skipped.
    max_pixels : int
        When Y has more pixels, the search runs on Y binned b × b (the smallest b that brings
        it to at most this many; edge rows and columns that do not fill a bin are left out)
        and the subspace of the chosen rank is then learnt from the full Y. Binning adds
        counts per bin, which makes the test stricter, not looser; measured on
        ``gaussian_1kev`` and ``gaussian_6kev`` (45 × 45 Y pixels, 3 × 3 bins): the same
        rank (20) in 5–6 s instead of ~2 min.
    background : array (L, m, n), optional
        Y's known expected background counts: the subspaces are learnt from the
        background-subtracted flux and the fits include the background
        (:func:`nmf_subspace`, :func:`subspace_fit`); binned with Y.

    Returns
    -------
    rank : int
    V : array (L, rank)
        The chosen subspace (as :func:`nmf_subspace` returns it).
    trials : list of dict
        ``{"rank", "ratio", "z"}`` per rank tried: C/E[C] and (C − E[C])/σ.

    Notes
    -----
    Measured (``benchmarks/bench_rank.py``, least-squares subspace): C/E at r = 10 is 0.99 on
    ``gaussian_1kev_rebin`` but 1.74 on ``realistic_1kev_rebin`` (1.06 at 20, 0.93 at 30),
    where a larger rank gains 2–3 dB NMSE (docs/benchmarks.md). The test ignores the degrees
    of freedom the fit uses, so it errs towards smaller ranks.
    """
    Y = np.asarray(Y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    L, m, n = Y.shape
    b = 1
    while (m // b) * (n // b) > max_pixels and min(m, n) // (b + 1) >= 1:
        b += 1
    def binned(a):
        return a if b == 1 else a[:, :m // b * b, :n // b * b].reshape(
            L, m // b, b, n // b, b).sum(axis=(2, 4))

    Ys = binned(Y)
    Bs = None if background is None else binned(
        _background_matrix(background, (L, m * n)).reshape(L, m, n))
    D = Ys.reshape(L, -1)
    cands = sorted({int(r) for r in ranks if 1 <= int(r) <= min(D.shape)})
    if not cands:
        raise ValueError(f"no candidate rank in {tuple(ranks)} is between 1 and "
                         f"{min(D.shape)} (the number of Y pixels or channels)")
    trials = []
    for r in cands:
        V = nmf_subspace(Ys, w, r, n_iter=n_iter, seed=seed, background=Bs)
        g = subspace_fit(Ys, w, V, n_coef, background=Bs)
        trials.append({"rank": r, "ratio": g["ratio"],
                       "z": (g["cstat"] - g["expected"]) / g["sigma"] if g["sigma"] else 0.0})
        if g["cstat"] <= g["expected"]:
            break
    if b > 1:
        V = nmf_subspace(Y, w, r, n_iter=n_iter, seed=seed, background=background)
    return r, V, trials


class LowRank:
    r"""``x = W`` of shape (r, M, N) with :math:`Z = V W` (V: L × r, non-negative columns summing
    to 1, :func:`nmf_subspace`).

    When the effective areas depend on energy only and the PSF does not depend on energy,
    the model factorises:

    .. math::

        \mu_X = (R_X\,\mathrm{diag}(t_X A_X)\,V)\,W,\qquad
        \mu_Y = (t_Y A_Y \odot V)\,[R_{MN} B_Y W]

    so the spatial operators act on r images instead of L. Otherwise Z is formed explicitly.
    """

    def __init__(self, model: ForwardModel, V: np.ndarray, dtype=np.float64):
        self.model = model
        L, M, N = model.shape
        V = np.asarray(V, dtype=np.float64)
        if V.shape[0] != L:
            raise ValueError(f"subspace has {V.shape[0]} energies, Z has {L}")
        self.V = V.astype(dtype)
        self.Vt = np.ascontiguousarray(self.V.T)
        self.rank = V.shape[1]
        self.shape = (self.rank, M, N)
        self.factorised = (model.exp_X.energy_only and model.exp_Y.energy_only
                           and not model.psf.energy_dependent)
        if self.factorised:
            wX = model.exp_X.weights[:, 0, 0]
            wY = model.exp_Y.weights[:, 0, 0]
            self.KX = (model.resp_X.R @ (wX[:, None] * V)).astype(dtype)      # (l, r)
            self.KXt = np.ascontiguousarray(self.KX.T)
            self.KY = (wY[:, None] * V).astype(dtype)                          # (L, r)
            self.KYt = np.ascontiguousarray(self.KY.T)

    def forward(self, W):
        if self.factorised:
            return (apply_energy_matrix(self.KX, W),
                    apply_energy_matrix(self.KY, self.model.blur_Y.forward(W), self._ech))
        Z = self.to_cube(W)
        return self.model.mu_X(Z), self.model.mu_Y(Z)

    @property
    def _ech(self):
        """Energy chunks of Z on the dask path (W is (r, M, N), r small, one chunk)."""
        ch = getattr(self.model, "chunks", None)
        return None if ch is None else ch[0]

    def adjoint(self, gX, gY):
        if self.factorised:
            return (apply_energy_matrix(self.KXt, gX)
                    + self.model.blur_Y.adjoint(apply_energy_matrix(self.KYt, gY)))
        return apply_energy_matrix(self.Vt, self.model.adjoint(gX, gY))

    def curvature(self, hX, hY):
        """Diagonal of ``Kᵀ diag(h) K`` in W (exact when factorised; else the V∘V bound)."""
        if self.factorised:
            if not hasattr(self, "_sq"):
                self._sq = (np.ascontiguousarray((self.KX**2).T),
                            np.ascontiguousarray((self.KY**2).T), self.model.blur_Y.squared())
            KX2t, KY2t, B2 = self._sq
            return apply_energy_matrix(KX2t, hX) + B2.adjoint(apply_energy_matrix(KY2t, hY))
        return apply_energy_matrix(np.ascontiguousarray((self.V**2).T),
                                   self.model.curvature(hX, hY))

    def to_cube(self, W):
        return apply_energy_matrix(self.V, W, self._ech)

    def from_cube(self, Z):
        """Least-squares coefficients of Z in the subspace (``V⁺ Z``)."""
        if not hasattr(self, "_pinv"):
            self._pinv = np.linalg.pinv(self.V.astype(np.float64)).astype(self.V.dtype)
        W = apply_energy_matrix(self._pinv, Z)
        return W if is_dask(W) else np.ascontiguousarray(W)
