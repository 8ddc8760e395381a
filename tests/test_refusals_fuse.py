"""Bad arguments, outputs that would lose data, resumes that would lie, faults mid-run.

Each case expects a named error (class and a message naming the argument or path) raised
before any solving, or a documented outcome (the data left intact, the result recoverable).
The rules are listed in docs/refusals.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import xfusion as xf
import xfusion.fusion
from xfusion import _store
from xfusion.cli import main

from .conftest import consistent_problem

FAST = dict(progress=False, max_iter=3)


@pytest.fixture(scope="module")
def ds():
    return consistent_problem(noise=True)          # L=24, M=9, N=12, Y 3×4 pixels


@pytest.fixture
def no_solve(monkeypatch):
    """Fail the test if fuse gets as far as building the model (the checks come first)."""

    def boom(*a, **k):
        raise AssertionError("fuse started solving before refusing its arguments")

    monkeypatch.setattr(xfusion.fusion, "_fuse", boom)


L, M, N = 24, 9, 12
BAD_ARGS = [
    # (id, regularizer, kwargs, message regex); every one is an xf.OptionError (ValueError)
    ("regularizer-unknown", "tv", {}, "unknown regularizer 'tv'"),
    ("regularizer-none-obj", None, {}, "unknown regularizer None"),
    ("rank-zero", "lr", {"rank": 0}, r"rank must be a whole number 1 … 12"),
    ("rank-negative", "lrs", {"rank": -1}, "rank must be"),
    ("rank-fraction", "lrw2d", {"rank": 2.5}, "rank must be"),
    ("rank-word", "lr", {"rank": "ten"}, "rank must be"),
    ("rank-too-large", "lr", {"rank": 1000}, r"Y has 24 channels and 12 pixels"),
    ("rank-nan", "lr", {"rank": float("nan")}, "rank must be"),
    ("rank-bool", "lr", {"rank": True}, "rank must be"),
    ("mu_sobolev-negative", "lrs", {"mu_sobolev": -1e-3}, r"mu_sobolev must be a finite .*≥ 0"),
    ("mu_sobolev-nan", "lrs", {"mu_sobolev": float("nan")}, "mu_sobolev must be"),
    ("mu_sobolev-inf", "lrs", {"mu_sobolev": float("inf")}, "mu_sobolev must be"),
    ("mu_sobolev-string", "lrs", {"mu_sobolev": "big"}, "mu_sobolev must be"),
    ("k-negative", "w2d1d", {"k": -1}, r"k must be a finite number ≥ 0 or 'auto'"),
    ("k-nan", "w2d1d", {"k": float("nan")}, "k must be"),
    ("k-inf", "lrw2d", {"k": float("inf")}, "k must be"),
    ("k-word", "w2d1d", {"k": "fixed"}, "k must be"),
    ("k_range-reversed", "w2d1d", {"k_range": (8, 4)}, r"k_range must be \(k_min, k_max\)"),
    ("k_range-negative", "w2d1d", {"k_range": (-1, 2)}, "k_range must be"),
    ("k_range-one", "w2d1d", {"k_range": (1,)}, "k_range must be"),
    ("k_range-three", "lrw2d", {"k_range": (1, 2, 3)}, "k_range must be"),
    ("k_range-nan", "w2d1d", {"k_range": (1, float("nan"))}, "k_range must be"),
    ("k_range-number", "w2d1d", {"k_range": 4}, "k_range must be"),
    ("J2-zero", "w2d1d", {"J2": 0}, r"J2 must be a whole number 1 … 3"),
    ("J2-negative", "lrw2d", {"J2": -1}, "J2 must be"),
    ("J2-beyond-image", "w2d1d", {"J2": 20}, r"J2 must be a whole number 1 … 3, got 20"),
    ("J2-fraction", "w2d1d", {"J2": 1.5}, "J2 must be"),
    ("J2-nan", "w2d1d", {"J2": float("nan")}, "J2 must be"),
    ("J1-zero", "w2d1d", {"J1": 0}, r"J1 must be a whole number 1 … 4"),
    ("J1-beyond-spectrum", "w2d1d", {"J1": 30}, "J1 must be a whole number 1 … 4, got 30"),
    ("J1-string", "w2d1d", {"J1": "3"}, "J1 must be"),
    ("tol-zero", "none", {"tol": 0}, r"tol must be a finite number > 0"),
    ("tol-negative", "lr", {"tol": -1e-6}, "tol must be"),
    ("tol-nan", "w2d1d", {"tol": float("nan")}, "tol must be"),
    ("tol-inf", "lrs", {"tol": float("inf")}, "tol must be"),
    ("patience-zero", "none", {"patience": 0}, r"patience must be a whole number ≥ 1"),
    ("patience-negative", "none", {"patience": -2}, "patience must be"),
    ("patience-fraction", "none", {"patience": 1.5}, "patience must be"),
    ("max_iter-zero", "none", {"max_iter": 0}, r"max_iter must be a whole number ≥ 1"),
    ("max_iter-negative", "lrs", {"max_iter": -5}, "max_iter must be"),
    ("max_iter-fraction", "lrs", {"max_iter": 2.5}, "max_iter must be"),
    ("max_iter-nan", "lrs", {"max_iter": float("nan")}, "max_iter must be"),
    ("max_iter-bool", "lrs", {"max_iter": True}, "max_iter must be"),
    ("adapt_iter-negative", "w2d1d", {"adapt_iter": -1}, r"adapt_iter must be a whole number ≥ 0"),
    ("adapt_iter-fraction", "w2d1d", {"adapt_iter": 0.5}, "adapt_iter must be"),
    ("checkpoint_every-zero", "none", {"checkpoint_every": 0}, "checkpoint_every must be"),
    ("checkpoint_every-negative", "none", {"checkpoint_every": -1}, "checkpoint_every must be"),
    ("eps-zero", "none", {"eps": 0}, r"eps must be a finite number > 0"),
    ("eps-negative", "lr", {"eps": -1e-6}, "eps must be"),
    ("eps-nan", "lr", {"eps": float("nan")}, "eps must be"),
    ("eps-inf", "w2d1d", {"eps": float("inf")}, "eps must be"),
    ("dtype-int", "none", {"dtype": "int32"}, "dtype must be float32 or float64"),
    ("dtype-half", "none", {"dtype": "float16"}, "dtype must be"),
    ("dtype-complex", "none", {"dtype": "complex64"}, "dtype must be"),
    ("dtype-nonsense", "none", {"dtype": "banana"}, "dtype must be"),
    ("spatial-unknown", "none", {"spatial": "wavelet"}, "spatial must be one of"),
    ("metric-unknown", "none", {"metric": "newton"}, "metric must be one of"),
    ("acceleration-string", "none", {"acceleration": "yes"}, "acceleration must be True or"),
    ("progress-number", "none", {"progress": 2}, "progress must be True or False"),
    ("init-shape", "none", {"init": np.ones((2, 2, 2))}, r"init: shape \(2, 2, 2\)"),
    ("init-nan", "none", {"init": np.full((L, M, N), np.nan)}, "init: 2592 voxels are NaN"),
    ("init-inf", "lr", {"init": np.full((L, M, N), np.inf)}, "init: .* NaN or Inf"),
    ("init-negative", "w2d1d", {"init": -np.ones((L, M, N))}, "init: 2592 voxels are negative"),
    ("init-complex", "none", {"init": np.ones((L, M, N), complex)}, "init: dtype complex"),
    ("init-strings", "none", {"init": np.full((L, M, N), "a")}, "init: dtype"),
    ("init-dims", "none", {"init": xr.DataArray(np.ones((L, M, N)), dims=("a", "b", "c"))},
     r"init: dims \('a', 'b', 'c'\)"),
]


@pytest.mark.parametrize("reg, kw, msg", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_argument_is_refused_by_name_before_solving(ds, no_solve, reg, kw, msg):
    with pytest.raises(xf.OptionError, match=msg):
        xf.fuse(ds, reg, **kw)


def test_good_arguments_pass_the_checks(ds):
    """The limits are reachable: J2 = 3, J1 = 4, rank = 12, k = 0 and mu_sobolev = 0 run."""
    for reg, kw in (("w2d1d", {"J2": 3, "J1": 4, "k": 0.0}), ("lrs", {"rank": 12,
                                                                       "mu_sobolev": 0.0}),
                    ("lrw2d", {"rank": 2, "J2": 3, "k_range": (0, 0)})):
        Z = xf.fuse(ds, reg, **FAST, **kw)
        assert np.isfinite(Z.values).all() and Z.attrs["iterations"] == 3


# ----------------------------------------------------------------------------- outputs
@pytest.fixture
def stored(ds, tmp_path):
    p = tmp_path / "p.zarr"
    xf.save_problem(ds, p)
    return xf.open_problem(p), p


def _tree(path) -> dict:
    """Every file under ``path`` with its bytes (to show that nothing changed)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            q = os.path.join(root, f)
            with open(q, "rb") as fh:
                out[os.path.relpath(q, path)] = fh.read()
    return out


OUTPUT_CASES = [
    # (id, how to prepare, fuse kwargs given (tmp, problem path), message regex)
    ("output-is-problem", None, lambda t, p: {"output": p}, r"output .* is the problem's store"),
    ("output-inside-problem", None, lambda t, p: {"output": p / "Z"}, "is the problem's store"),
    ("checkpoint-is-problem", None, lambda t, p: {"checkpoint": p},
     "checkpoint .* is the problem's store"),
    ("output-user-dir", "dir", lambda t, p: {"output": t / "results"},
     "a directory that is not a store written by xfusion"),
    ("output-user-file", "file", lambda t, p: {"output": t / "notes.txt"}, "exists and is a file"),
    ("checkpoint-user-dir", "dir", lambda t, p: {"checkpoint": t / "results"},
     "checkpoint .* not a store written by xfusion"),
    ("checkpoint-user-file", "file", lambda t, p: {"checkpoint": t / "notes.txt"},
     "checkpoint .* is a file"),
    ("output-user-dir-overwrite", "dir", lambda t, p: {"output": t / "results", "overwrite": True},
     "refusing to replace it"),
    ("output-user-file-overwrite", "file",
     lambda t, p: {"output": t / "notes.txt", "overwrite": True}, "refusing to replace it"),
    ("output-existing-fused", "fused", lambda t, p: {"output": t / "f.zarr"},
     r"exists \(an xfusion fused store\); pass overwrite=True"),
    ("output-over-problem-store", "problem2",
     lambda t, p: {"output": t / "q.zarr", "overwrite": True}, "an xfusion problem store"),
    ("checkpoint-existing", "ckpt", lambda t, p: {"checkpoint": t / "c.zarr"},
     r"checkpoint .* exists \(an xfusion checkpoint store\); pass overwrite=True"),
    ("checkpoint-over-fused", "fused",
     lambda t, p: {"checkpoint": t / "f.zarr", "overwrite": True}, "an xfusion fused store"),
    ("output-is-checkpoint", None,
     lambda t, p: {"output": t / "c.zarr", "checkpoint": t / "c.zarr"}, "is the checkpoint"),
    ("output-is-resume", "ckpt", lambda t, p: {"output": t / "c.zarr", "resume": t / "c.zarr"},
     "is the checkpoint to resume from"),
    ("resume-missing", None, lambda t, p: {"resume": t / "nowhere.zarr"},
     "resume: no checkpoint at"),
]


def _prepare(kind, tmp, ds):
    if kind == "dir":
        (tmp / "results").mkdir()
        (tmp / "results" / "table.csv").write_text("a,b\n1,2\n")
    elif kind == "file":
        (tmp / "notes.txt").write_text("my notes\n")
    elif kind == "fused":
        xf.fuse(ds, "none", **FAST, output=tmp / "f.zarr")
    elif kind == "problem2":
        xf.save_problem(ds, tmp / "q.zarr")
    elif kind == "ckpt":
        xf.fuse(ds, "none", **FAST, checkpoint=tmp / "c.zarr")


@pytest.mark.parametrize("kind, kw, msg", [c[1:] for c in OUTPUT_CASES],
                         ids=[c[0] for c in OUTPUT_CASES])
def test_outputs_that_would_lose_data_are_refused_before_solving(stored, tmp_path, monkeypatch,
                                                                 kind, kw, msg):
    pds, p = stored
    _prepare(kind, tmp_path, pds)
    before = _tree(tmp_path)
    monkeypatch.setattr(xfusion.fusion, "_fuse", lambda *a, **k: pytest.fail("solved"))
    with pytest.raises((xf.OutputError, FileNotFoundError), match=msg):
        xf.fuse(pds, "none", **FAST, **kw(tmp_path, p))
    assert _tree(tmp_path) == before            # nothing written, moved or deleted


def test_overwrite_replaces_only_a_store_of_its_kind(stored, tmp_path):
    pds, _ = stored
    out = tmp_path / "f.zarr"
    a = xf.fuse(pds, "none", progress=False, max_iter=2, output=out)
    b = xf.fuse(pds, "none", progress=False, max_iter=5, output=out, overwrite=True)
    assert a.attrs["iterations"] == 2 and b.attrs["iterations"] == 5
    assert xr.open_zarr(out)["Z"].attrs["iterations"] == 5
    assert _store.store_kind(out) == "fused"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]   # no litter


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_stores_follow_the_umask(ds, tmp_path, umask):
    old = os.umask(umask)
    try:
        xf.fuse(ds, "none", **FAST, output=tmp_path / "f.zarr")
        xf.save_problem(ds, tmp_path / "p.zarr")
    finally:
        os.umask(old)
    for name in ("f.zarr", "p.zarr"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o777 & ~umask


def test_unwritable_directory_is_refused_before_solving(stored, tmp_path, monkeypatch):
    pds, _ = stored
    monkeypatch.setattr(_store, "_writable", lambda d: False)
    monkeypatch.setattr(xfusion.fusion, "_fuse", lambda *a, **k: pytest.fail("solved"))
    with pytest.raises(xf.OutputError, match="is not writable"):
        xf.fuse(pds, "none", **FAST, output=tmp_path / "f.zarr")


def test_full_disk_is_refused_before_solving(stored, tmp_path, monkeypatch):
    pds, _ = stored

    monkeypatch.setattr(_store, "_free_bytes", lambda d: 1000)
    monkeypatch.setattr(xfusion.fusion, "_fuse", lambda *a, **k: pytest.fail("solved"))
    for kw in ({"output": tmp_path / "f.zarr"}, {"checkpoint": tmp_path / "c.zarr"}):
        with pytest.raises(xf.OutputError, match=r"needs about \d+ MB but .* has 0 MB free"):
            xf.fuse(pds, "none", **FAST, **kw)


def test_a_failed_final_write_keeps_the_result_and_says_where(stored, tmp_path, monkeypatch):
    """The disk fills during the final write: the error names the checkpoint, carries the
    result, and resuming from the checkpoint gives it back without iterating again."""
    pds, _ = stored
    kw = dict(progress=False, max_iter=6, dtype="float64", tol=1e-14)
    ref = xf.fuse(pds, "lrs", rank=3, **kw)
    real = xr.Dataset.to_zarr

    def full(self, store, *a, **k):
        if "Z" in self:
            raise OSError(28, "No space left on device")
        return real(self, store, *a, **k)

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    ck, out = tmp_path / "c.zarr", tmp_path / "f.zarr"
    with pytest.raises(xf.OutputError, match=r"No space left.*the final state is in the "
                                             r"checkpoint .*c\.zarr") as err:
        xf.fuse(pds, "lrs", rank=3, **kw, output=out, checkpoint=ck)
    np.testing.assert_array_equal(err.value.result.values, ref.values)
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    again = xf.fuse(pds, "lrs", rank=3, **kw, resume=ck, output=out)
    assert again.attrs["iterations"] == 6
    np.testing.assert_allclose(again.values, ref.values, rtol=1e-12)


# ----------------------------------------------------------------------------- resumes
RESUME_CASES = [
    # (id, settings of the resumed run (the checkpoint: lrs, rank 3, k 2.0 ...), message regex)
    ("k", {"regularizer": "w2d1d", "k": 12.0}, r"k=2\.0 there, 12\.0 here"),
    ("k_range", {"regularizer": "w2d1d", "k_range": (1, 9)}, r"k_range=\[4\.0, 8\.0\] there"),
    ("J1", {"regularizer": "w2d1d", "J1": 3}, "J1=2 there, 3 here"),
    ("adapt_iter", {"regularizer": "w2d1d", "adapt_iter": 9}, "adapt_iter=5 there, 9 here"),
    ("regularizer", {"regularizer": "none"}, "regularizer='w2d1d' there, 'none' here"),
    ("dtype", {"regularizer": "w2d1d", "dtype": "float32"}, "dtype='float64' there"),
    ("eps", {"regularizer": "w2d1d", "eps": 1e-3}, "eps=1e-06 there, 0.001 here"),
    ("metric", {"regularizer": "w2d1d", "metric": "jacobi"}, "metric='em' there, 'jacobi'"),
    ("acceleration", {"regularizer": "w2d1d", "acceleration": False}, "acceleration=True there"),
    ("seed", {"regularizer": "w2d1d", "seed": 7}, r"the problem \(counts differ"),
    ("counts", {"regularizer": "w2d1d", "scale": 2}, r"the problem \(counts differ"),
]


@pytest.fixture(scope="module")
def w2d1d_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    ds0 = consistent_problem(noise=True)
    kw = dict(progress=False, dtype="float64", tol=1e-14, J1=2, adapt_iter=5, k=2.0)
    xf.fuse(ds0, "w2d1d", max_iter=4, checkpoint=d / "c.zarr", **kw)
    return d / "c.zarr", kw


@pytest.mark.parametrize("change, msg", [c[1:] for c in RESUME_CASES],
                         ids=[c[0] for c in RESUME_CASES])
def test_resume_with_other_settings_or_problem_is_refused(w2d1d_checkpoint, change, msg):
    ck, kw = w2d1d_checkpoint
    change = dict(change)
    reg = change.pop("regularizer")
    seed = change.pop("seed", 0)
    ds1 = consistent_problem(noise=True, seed=seed)
    if "scale" in change:
        ds1 = ds1.assign(Y=ds1.Y * change.pop("scale"))
    with pytest.raises(xf.CheckpointError, match=msg):
        xf.fuse(ds1, reg, **{**kw, **change}, max_iter=8, resume=ck)


def test_resume_may_change_the_stopping_settings_only(w2d1d_checkpoint):
    ck, kw = w2d1d_checkpoint
    ds0 = consistent_problem(noise=True)
    ref = xf.fuse(ds0, "w2d1d", max_iter=9, **kw)
    done = xf.fuse(ds0, "w2d1d", **{**kw, "tol": 1e-13}, max_iter=9, patience=7, resume=ck)
    assert done.attrs["iterations"] == 9
    np.testing.assert_allclose(done.values, ref.values, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("what", ["dir", "problem", "fused", "bad-pointer"])
def test_resume_from_what_is_not_a_checkpoint_is_refused(stored, tmp_path, what):
    pds, p = stored
    path = {"dir": tmp_path / "d", "problem": p, "fused": tmp_path / "f.zarr",
            "bad-pointer": tmp_path / "c.zarr"}[what]
    if what == "dir":
        path.mkdir()
    elif what == "fused":
        xf.fuse(pds, "none", **FAST, output=path)
    elif what == "bad-pointer":
        xf.fuse(pds, "none", **FAST, checkpoint=path)
        (path / _store.POINTER).write_text('{"slot": "z"}')
    with pytest.raises(xf.CheckpointError, match="not an xfusion checkpoint|names no complete"):
        xf.fuse(pds, "none", **FAST, resume=path)


def test_crash_during_a_checkpoint_write_keeps_the_previous_one(ds, tmp_path, monkeypatch):
    """A write that fails half-way (here: the slot's data written, then the process dies
    before the pointer moves) leaves the previous complete checkpoint, and the next write
    clears the half-written slot: no litter."""
    ck = tmp_path / "c.zarr"
    kw = dict(progress=False, dtype="float64", tol=1e-14)
    ref = xf.fuse(ds, "lrs", rank=3, max_iter=12, **kw)
    calls = {"n": 0}
    real = _store._commit

    def die_on_second(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt       # as a kill between slot and pointer
        return real(src, dst)

    monkeypatch.setattr(_store, "_commit", die_on_second)
    with pytest.raises(KeyboardInterrupt):
        xf.fuse(ds, "lrs", rank=3, max_iter=12, checkpoint=ck, checkpoint_every=4, **kw)
    monkeypatch.setattr(_store, "_commit", real)
    st, meta = xf.checkpoint.load_state(ck)
    assert st.iteration == 4 and meta["settings"]["rank"] == 3
    done = xf.fuse(ds, "lrs", rank=3, max_iter=12, resume=ck, checkpoint=ck, **kw)
    np.testing.assert_allclose(done.values, ref.values, rtol=1e-10, atol=1e-14)
    assert sorted(os.listdir(ck)) == ["a", "b", _store.POINTER]
    assert sorted(os.listdir(tmp_path)) == ["c.zarr"]


KILL = textwrap.dedent("""
    import os, signal, sys
    import xfusion as xf
    from xfusion import _store
    sys.path.insert(0, {root!r})
    from tests.conftest import consistent_problem

    ds = consistent_problem(noise=True)
    real, n = _store._commit, [0]
    def commit(src, dst):
        n[0] += 1
        if n[0] == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)     # killed mid-checkpoint, no clean-up
        return real(src, dst)
    _store._commit = commit
    xf.fuse(ds, "w2d1d", max_iter=20, checkpoint={ck!r}, checkpoint_every=3, progress=False,
            dtype="float64", tol=1e-14, J1=2, adapt_iter=5)
""")


@pytest.mark.parametrize("kill_at", [2, 4])
def test_killed_run_resumes_to_the_uninterrupted_result(ds, tmp_path, kill_at):
    """SIGKILL in the middle of the 2nd (4th) checkpoint write; the resumed run from the
    last complete checkpoint (iteration 3, 9) ends where the uninterrupted run does."""
    ck = str(tmp_path / "c.zarr")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", KILL.format(root=root, kill_at=kill_at, ck=ck)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr
    st, _ = xf.checkpoint.load_state(ck)
    assert st.iteration == 3 * (kill_at - 1)
    kw = dict(progress=False, dtype="float64", tol=1e-14, J1=2, adapt_iter=5)
    ref = xf.fuse(ds, "w2d1d", max_iter=20, **kw)
    done = xf.fuse(ds, "w2d1d", max_iter=20, resume=ck, **kw)
    np.testing.assert_allclose(done.values, ref.values, rtol=1e-9, atol=1e-15)


def test_checkpoint_of_an_earlier_version_is_refused_not_trusted(ds, tmp_path):
    """A checkpoint without identity (one Zarr store, as written before) cannot be checked."""
    from xfusion.solver import SolverState

    st = SolverState(x=np.ones((L, M, N)), x_prev=np.ones((L, M, N)), iteration=2,
                     history=[1.0, 0.5, 0.4])
    old = tmp_path / "old.zarr"
    xr.Dataset({"x": (("a", "b", "c"), st.x), "x_prev": (("a", "b", "c"), st.x_prev)},
               attrs={"t": 1.0, "step": 1.0, "iteration": 2, "history": "[1, 0.5, 0.4]",
                      "steps": "[]", "calm": 0, "converged": 0, "complete": 1,
                      "meta": '{"regularizer": "none", "shape": [24, 9, 12]}'}).to_zarr(old)
    with pytest.raises(xf.CheckpointError, match="records no problem or settings"):
        xf.fuse(ds, "none", **FAST, resume=old)


# ----------------------------------------------------------------------------- fit quality
def test_a_result_that_fits_the_noise_warns_for_any_regularizer(ds):
    with pytest.warns(xf.FitWarning, match=r"fits [XY]'s noise: C-statistic 0\.\d\d times its "
                                           r"expectation \(-\d+ sigma\)"):
        xf.fuse(ds, "none", progress=False, tol=1e-9, max_iter=3000)


@pytest.mark.parametrize("reg", ["w2d1d", "lrs", "lrw2d", "lr"])
def test_a_result_that_cannot_explain_the_counts_warns_for_any_regularizer(ds, reg):
    """X holds a background the model leaves out: no cube explains both instruments."""
    rng = np.random.default_rng(3)
    bad = ds.assign(X=ds.X + rng.poisson(200, ds.X.shape))
    with pytest.warns(xf.FitWarning, match=rf"{reg}: the fused cube does not explain X's "
                                           r"counts: C-statistic \d+\.\d\d times .*\(\+\d+ sigma"):
        xf.fuse(bad, reg, rank=6, progress=False, max_iter=150)


def test_fit_warning_thresholds_in_both_directions():
    from xfusion.fusion import _warn_fit

    def attrs(c, e=1000.0, sd=10.0):
        return {"cstat_X": c, "cstat_X_expected": e, "cstat_X_sigma": sd}

    import warnings

    for c, warns in ((1000, False), (1240, False), (1300, True), (610, False), (590, True)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            _warn_fit(attrs(c), "w2d1d", None)
        assert bool(w) == warns, c
    with warnings.catch_warnings(record=True) as w:      # far in ratio, not in sigma
        warnings.simplefilter("always")
        _warn_fit(attrs(1400, sd=100), "lrs", None)
    assert not w


# ----------------------------------------------------------------------------- command line
def _err(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def cli_problem(tmp_path):
    p = tmp_path / "p.zarr"
    assert main(["simulate", "gaussian_1kev_rebin", "--scale", "0.1", "--out", str(p),
                 "-q"]) == 0
    return p


CLI_CASES = [
    ("out-is-problem", ["--out", "{p}"], "is the problem's store"),
    ("checkpoint-is-problem", ["--out", "{t}/f.zarr", "--checkpoint", "{p}"],
     "checkpoint {p} is the problem's store"),
    ("out-is-file", ["--out", "{t}/notes.txt"], "is a file; refusing to replace it"),
    ("out-is-user-dir", ["--out", "{t}/results"], "not a store written by xfusion"),
    ("max-iter-zero", ["--out", "{t}/f.zarr", "--max-iter", "0"], "max_iter must be"),
    ("tol-nan", ["--out", "{t}/f.zarr", "--tol", "nan"], "tol must be"),
    ("tol-negative", ["--out", "{t}/f.zarr", "--tol", "-1"], "tol must be"),
    ("resume-missing", ["--out", "{t}/f.zarr", "--resume", "{t}/none.zarr"],
     "no checkpoint to resume from"),
    ("resume-not-checkpoint", ["--out", "{t}/f.zarr", "--resume", "{t}/results"],
     "not an xfusion checkpoint"),
]


@pytest.mark.parametrize("argv, msg", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refusals_are_one_line_with_exit_2_and_touch_nothing(cli_problem, tmp_path, capsys,
                                                                 argv, msg):
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.csv").write_text("1\n")
    before = _tree(tmp_path)
    fill = {"p": str(cli_problem), "t": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    assert main(["fuse", str(cli_problem), "--regularizer", "none", "-q", *argv]) == 2
    _err(capsys, msg.format(**fill))
    assert _tree(tmp_path) == before
    xf.open_problem(cli_problem)                      # still a valid problem


def test_cli_overwrite_and_resume_rules(cli_problem, tmp_path, capsys):
    f, ck = str(tmp_path / "f.zarr"), str(tmp_path / "c.zarr")
    base = ["fuse", str(cli_problem), "--regularizer", "lrs", "--rank", "3", "-q"]
    assert main([*base, "--out", f, "--max-iter", "3", "--checkpoint", ck]) == 0
    capsys.readouterr()
    assert main([*base, "--out", f, "--max-iter", "3"]) == 2
    _err(capsys, "output", "exists", "--overwrite")
    assert main([*base, "--out", str(tmp_path / "g.zarr"), "--checkpoint", ck]) == 2
    _err(capsys, "checkpoint", "--overwrite")
    # the same checkpoint continued: allowed; another rank: refused by name
    assert main([*base, "--out", f, "--overwrite", "--max-iter", "6", "--checkpoint", ck,
                 "--resume", ck]) == 0
    capsys.readouterr()
    assert xr.open_zarr(f)["Z"].attrs["iterations"] == 6
    assert main([*base[:-3], "--rank", "2", "-q", "--out", str(tmp_path / "h.zarr"),
                 "--resume", ck]) == 2
    _err(capsys, "rank=3 there, 2 here")


def test_cli_says_a_poor_fit_in_words(cli_problem, tmp_path, capsys):
    assert main(["fuse", str(cli_problem), "--regularizer", "none", "--out",
                 str(tmp_path / "f.zarr"), "-q", "--tol", "1e-9"]) == 0
    err = capsys.readouterr().err
    assert "xfusion fuse: warning: none: the fused cube fits" in err and "noise" in err
