"""The shared block pool and the BLAS-serial matrix product."""

from __future__ import annotations

import numpy as np
import pytest

from xfusion import _threads as T


@pytest.mark.parametrize("shape", [(40, 7, 90), (90, 7, 40), (3, 5, 2)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_split_product_equals_one_product(shape, accumulate, monkeypatch):
    pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(T, "_SPLIT_MIN", 0)        # split even tiny products
    monkeypatch.setattr(T.os, "cpu_count", lambda: 3)
    n, k, m = shape
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    C0 = rng.standard_normal((n, m))
    with T.serial_blas() as serial:
        assert serial and T.blas_is_serial()
        from threadpoolctl import threadpool_info

        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
        out = C0.copy() if accumulate else None
        got = T.matmul(A, B, out=out, accumulate=accumulate)
    assert not T.blas_is_serial()
    np.testing.assert_allclose(got, (C0 if accumulate else 0) + A @ B, rtol=1e-13, atol=1e-13)


def test_accumulate_needs_an_output():
    with pytest.raises(ValueError, match="accumulate needs out"):
        T.matmul(np.ones((2, 2)), np.ones((2, 2)), accumulate=True)


def test_pool_runs_every_block_once_and_nested_calls_serially():
    seen = []

    def task(b):
        seen.append(b)
        T.run_blocks(lambda c: seen.append((b, c)), [0, 1], 2)  # from a pool thread: serial

    T.run_blocks(task, list(range(5)), 2)
    assert sorted(s for s in seen if isinstance(s, int)) == list(range(5))
    assert sorted(s for s in seen if isinstance(s, tuple)) == [(b, c) for b in range(5)
                                                               for c in (0, 1)]
