"""The problem schema: validation faults, accepted variants, make_problem fixes, Zarr round trip."""

import os
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xfusion as xf

from .conftest import tiny_problem

VALIDATORS = {
    "validate": lambda ds: xf.validate(ds),
    "accessor": lambda ds: ds.hifred.validate(),
}


@pytest.fixture(params=list(VALIDATORS))
def check(request):
    return VALIDATORS[request.param]


@pytest.fixture(scope="module")
def base():
    return tiny_problem()


def _set(ds, name, values, dims=None):
    """Copy of ``ds`` with variable ``name`` replaced (attrs kept)."""
    attrs = dict(ds[name].attrs)
    dims = dims or ds[name].dims
    ds = ds.drop_vars(name).copy(deep=True)
    ds[name] = xr.DataArray(np.asarray(values), dims=dims, attrs=attrs)
    return ds


def _counts(name, fn):
    def f(ds):
        v = ds[name].values.astype(float)
        fn(v)
        return _set(ds, name, v)

    return f


def _attr(name, key, value):
    def f(ds):
        ds = ds.copy(deep=True)
        if value is _DROP:
            del ds[name].attrs[key]
        else:
            ds[name].attrs[key] = value
        return ds

    return f


_DROP = object()


def _drop_x_column(ds):
    return ds.isel(x=slice(0, ds.sizes["x"] - 1))


def _shift_y_coarse(ds):
    return ds.assign_coords(y_coarse=ds.y_coarse + 7.0)


def _drop_energy_channel(ds):
    return ds.isel(energy=slice(0, ds.sizes["energy"] - 1))


def _set_psf(psf):
    return lambda ds: _set(ds, "psf_Y", psf, dims=("psf_y", "psf_x"))


def _even_psf(ds):
    p = xf.kernels.gaussian_psf(1.3, size=5)[:4]
    return _set_psf(p / p.sum())(ds)  # normalised: only the size is wrong


def _scaled_psf(s):
    return lambda ds: _set(ds, "psf_Y", ds.psf_Y.values * s)


def _negative_psf(ds):
    p = ds.psf_Y.values.copy()
    p[2, 2] += p[0, 0] + 0.01
    p[0, 0] = -0.01  # still sums to 1
    return _set(ds, "psf_Y", p)


def _response_above_one(ds):
    R = ds.response_X.values.copy()
    j = ds.sizes["energy"] // 2
    R[:, j] *= 1.01
    return _set(ds, "response_X", R)


def _arf(name, fn):
    def f(ds):
        a = ds[name].values.copy()
        fn(a)
        return _set(ds, name, a)

    return f


def _neg(v):
    v.flat[3] = -1.0


def _frac(v):
    v.flat[5] = 2.5


def _nan(v):
    v.flat[1] = np.nan


def _inf(v):
    v.flat[2] = np.inf


def _zero(v):
    v[...] = 0


FAULTS = {
    # name: (mutation, regex on the message)
    "X transposed": (lambda ds: ds.assign(X=ds.X.transpose("x", "y", "energy_coarse")),
                     r"^X: dims"),
    "Y transposed": (lambda ds: ds.assign(Y=ds.Y.transpose("energy", "x_coarse", "y_coarse")),
                     r"^Y: dims"),
    "response_X transposed": (lambda ds: ds.assign(response_X=ds.response_X.T),
                              r"^response_X: dims"),
    "psf_Y 1-D": (lambda ds: _set(ds, "psf_Y", np.ones(1), dims=("psf_y",)), r"^psf_Y: dims"),
    "arf_X wrong dim": (lambda ds: _set(ds, "arf_X", np.ones(9), dims=("y",)), r"^arf_X: dims"),
    "arf_X transposed": (lambda ds: tiny_problem(vignetting=True).pipe(
        lambda d: d.assign(arf_X=d.arf_X.transpose("y", "x", "energy"))), r"^arf_X: dims"),
    "non-integer spatial factor": (_drop_x_column, r"x / x_coarse.*not a whole multiple"),
    "misaligned y_coarse": (_shift_y_coarse, r"y_coarse vs y.*do not line up"),
    "non-integer energy factor": (_drop_energy_channel,
                                  r"energy / energy_coarse.*not a whole multiple"),
    "X negative": (_counts("X", _neg), r"^X: .*negative counts"),
    "Y negative": (_counts("Y", _neg), r"^Y: .*negative counts"),
    "X non-integer": (_counts("X", _frac), r"^X: counts must be whole numbers"),
    "Y non-integer": (_counts("Y", _frac), r"^Y: counts must be whole numbers"),
    "X NaN": (_counts("X", _nan), r"^X: .*non-finite"),
    "Y NaN": (_counts("Y", _nan), r"^Y: .*non-finite"),
    "X Inf": (_counts("X", _inf), r"^X: .*non-finite"),
    "Y Inf": (_counts("Y", _inf), r"^Y: .*non-finite"),
    "X all zero": (_counts("X", _zero), r"^X: no counts"),
    "Y all zero": (_counts("Y", _zero), r"^Y: no counts"),
    "psf even size": (_even_psf, r"^psf_Y: sizes must be odd"),
    "psf sums to 1.01": (_scaled_psf(1.01), r"^psf_Y: must sum to at most 1.*1\.01"),
    "psf sums to 0": (_scaled_psf(0.0), r"^psf_Y: sums to 0"),
    "psf negative": (_negative_psf, r"^psf_Y: negative"),
    "psf NaN": (_set_psf(np.full((3, 3), np.nan)), r"^psf_Y: non-finite"),
    "response column > 1": (_response_above_one, r"^response_X: column .*12.* > 1"),
    "response negative": (lambda ds: _set(ds, "response_X", -ds.response_X.values),
                          r"^response_X: negative"),
    "X exposure missing": (_attr("X", "exposure", _DROP), r"^X: missing exposure"),
    "Y exposure missing": (_attr("Y", "exposure", _DROP), r"^Y: missing exposure"),
    "X exposure zero": (_attr("X", "exposure", 0.0), r"^X: exposure must be positive"),
    "Y exposure zero": (_attr("Y", "exposure", 0), r"^Y: exposure must be positive"),
    "X exposure negative": (_attr("X", "exposure", -10.0), r"^X: exposure must be positive"),
    "Y exposure NaN": (_attr("Y", "exposure", float("nan")), r"^Y: exposure must be positive"),
    "X exposure Inf": (_attr("X", "exposure", float("inf")), r"^X: exposure must be positive"),
    "X exposure text": (_attr("X", "exposure", "long"), r"^X: exposure 'long' is not a number"),
    "arf_X negative": (_arf("arf_X", _neg), r"^arf_X: negative effective area"),
    "arf_Y negative": (_arf("arf_Y", _neg), r"^arf_Y: negative effective area"),
    "arf_X NaN": (_arf("arf_X", _nan), r"^arf_X: non-finite effective area"),
    "arf_Y Inf": (_arf("arf_Y", _inf), r"^arf_Y: non-finite effective area"),
    "arf_Y zero": (_arf("arf_Y", _zero), r"^arf_Y: effective area is zero"),
}


@pytest.mark.parametrize("name", list(xf.problem.REQUIRED))
def test_missing_variable(base, check, name):
    ds = base.drop_vars(name)
    with pytest.raises(xf.ProblemError, match=rf"^{name}: missing variable"):
        check(ds)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_refused(base, check, fault):
    mutate, pattern = FAULTS[fault]
    ds = mutate(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. energy misalignment after isel
        with pytest.raises(xf.ProblemError, match=pattern):
            check(ds)


def test_base_is_untouched_by_fault_builders(base):
    # the mutations must copy, or the fault tests would poison each other
    xf.validate(base)


def test_not_a_dataset():
    with pytest.raises(xf.ProblemError, match="xarray.Dataset"):
        xf.validate(np.zeros(3))


def test_problem_error_is_value_error():
    assert issubclass(xf.ProblemError, ValueError)


# -- accepted problems ---------------------------------------------------------------------------


def test_valid_problem(check, base):
    f = check(base)
    assert (f.vL, f.vM, f.vN) == (4, 3, 3)
    assert f == xf.rebin_factors(base)


def test_make_problem_coordinates(base):
    assert base.energy.attrs["units"] == "keV"
    assert base.energy_coarse.attrs["units"] == "keV"
    for c in ("y", "x", "y_coarse", "x_coarse"):
        assert base[c].attrs["units"] == "arcsec"
    # coarse pixel centres are the means of the fine ones
    np.testing.assert_allclose(base.y_coarse, base.y.values.reshape(3, 3).mean(1))
    np.testing.assert_allclose(base.energy_coarse, base.energy.values.reshape(6, 4).mean(1))
    # bin edges bracket the centres and tile the band
    np.testing.assert_allclose(base.energy_hi.values[:-1], base.energy_lo.values[1:])
    assert (base.energy_lo < base.energy).all() and (base.energy < base.energy_hi).all()
    assert base.X.attrs["exposure"] == 2e3 and base.Y.attrs["exposure"] == 5e3


def test_energy_dependent_psf(check):
    ds = tiny_problem(psf_energy=True)
    assert ds.psf_Y.dims == ("energy", "psf_y", "psf_x")
    check(ds)


def test_energy_dependent_psf_one_bad_slice(check):
    ds = tiny_problem(psf_energy=True)
    p = ds.psf_Y.values.copy()
    p[7] *= 1.2
    with pytest.raises(xf.ProblemError, match=r"^psf_Y: must sum to at most 1"):
        check(_set(ds, "psf_Y", p))


def test_vignetted_effective_area(check):
    ds = tiny_problem(vignetting=True)
    assert ds.arf_X.dims == ("energy", "y", "x")
    check(ds)


def test_float_whole_counts_accepted(check, base):
    ds = _set(base, "X", base.X.values.astype(float))
    ds = _set(ds, "Y", ds.Y.values.astype(np.float32))
    check(ds)


def _args(ds):
    return dict(
        X=ds.X.values, Y=ds.Y.values, response_X=ds.response_X.values, psf_Y=ds.psf_Y.values,
        arf_X=ds.arf_X.values, arf_Y=ds.arf_Y.values, exposure_X=2e3, exposure_Y=5e3,
        energy=ds.energy.values,
    )


def test_make_problem_renormalises_psf_within_one_percent(base):
    args = _args(base)
    args["psf_Y"] = args["psf_Y"] * 1.005
    with pytest.warns(UserWarning, match=r"psf_Y sums to 1\.005.*renormalised"):
        ds = xf.make_problem(**args)
    assert ds.psf_Y.sum().item() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(ds.psf_Y, base.psf_Y, rtol=1e-12)


def test_make_problem_refuses_psf_off_by_ten_percent(base):
    args = _args(base)
    args["psf_Y"] = args["psf_Y"] * 1.1
    with pytest.raises(xf.ProblemError, match=r"^psf_Y: must sum to at most 1"):
        xf.make_problem(**args)


def test_validate_does_not_renormalise(base):
    ds = _scaled_psf(1.005)(base)
    with pytest.raises(xf.ProblemError, match="psf_Y"):
        xf.validate(ds)


def test_make_problem_needs_exposure(base):
    args = _args(base)
    del args["exposure_Y"]
    with pytest.raises(xf.ProblemError, match=r"^Y: missing exposure"):
        xf.make_problem(**args)


def test_make_problem_non_integer_factors(base):
    args = _args(base)
    args["X"] = args["X"][:, :, :-1]
    with pytest.raises(xf.ProblemError, match="not a whole multiple"):
        xf.make_problem(**args)
    args = _args(base)
    args["X"] = args["X"][:-1]
    args["response_X"] = args["response_X"][:-1]
    with pytest.raises(xf.ProblemError, match="energy.*not a whole multiple"):
        xf.make_problem(**args)


def test_energy_misalignment_only_warns(base, check):
    args = _args(base)
    ec = base.energy_coarse.values + 0.013  # more than one fine channel (10 eV) off
    with pytest.warns(UserWarning, match="energy_coarse vs energy"):
        ds = xf.make_problem(**args, energy_coarse=ec)
    np.testing.assert_allclose(ds.energy_coarse, ec)
    with pytest.warns(UserWarning, match="energy_coarse vs energy"):
        check(ds)


def test_energy_edges_become_coordinates(base):
    args = _args(base)
    del args["energy"]
    edges = 0.495 + 0.01 * np.arange(25)
    ds = xf.make_problem(**args, energy_edges=edges)
    np.testing.assert_allclose(ds.energy_lo, edges[:-1])
    np.testing.assert_allclose(ds.energy_hi, edges[1:])
    np.testing.assert_allclose(ds.energy, base.energy)
    with pytest.raises(xf.ProblemError, match="energy_edges"):
        xf.make_problem(**args, energy_edges=edges[:-1])


# -- Zarr ------------------------------------------------------------------------------------------


@pytest.fixture
def rich():
    """A problem with every kind of attribute we promise to keep."""
    return tiny_problem(vignetting=True).assign_attrs(
        wcs="CTYPE1  = 'RA---TAN'\nCRVAL1  = 83.63", observer={"name": "x", "ids": [1, 2]},
        seed=0, flag=True,
    )


def test_zarr_round_trip(tmp_path, rich):
    path = tmp_path / "p.zarr"
    assert xf.save_problem(rich, path) == os.fspath(path)
    back = xf.open_problem(path)
    xr.testing.assert_identical(back, rich)
    for name in back.variables:
        assert back[name].dtype == rich[name].dtype, name
        assert not isinstance(back[name].data, da.Array), name
    assert back.energy.attrs["units"] == "keV"
    assert back.attrs["wcs"] == rich.attrs["wcs"]


def test_zarr_round_trip_via_accessor(tmp_path, base):
    path = tmp_path / "q.zarr"
    base.hifred.save(path)
    xr.testing.assert_identical(xf.open_problem(path), base)


def test_zarr_round_trip_energy_psf(tmp_path):
    ds = tiny_problem(psf_energy=True)
    xf.save_problem(ds, tmp_path / "p.zarr")
    xr.testing.assert_identical(xf.open_problem(tmp_path / "p.zarr"), ds)


@pytest.mark.filterwarnings("ignore:The specified chunks separate")
def test_open_chunked(tmp_path, rich):
    path = tmp_path / "p.zarr"
    xf.save_problem(rich, path)
    lazy = xf.open_problem(path, chunks={"energy": 8})
    for name in ("Y", "response_X", "arf_X", "Z_true"):
        assert isinstance(lazy[name].data, da.Array), name
        assert lazy[name].chunks[lazy[name].dims.index("energy")] == (8, 8, 8), name
    assert isinstance(lazy.X.data, da.Array)
    xr.testing.assert_identical(lazy.load(), rich)


@pytest.mark.filterwarnings("ignore:The specified chunks separate")
def test_resave_chunked_problem(tmp_path, base):
    # stored chunk layouts remembered in .encoding must not stop a rechunked / subset problem
    # from being saved again, over its own store or elsewhere
    path = tmp_path / "p.zarr"
    xf.save_problem(base, path)
    lazy = xf.open_problem(path, chunks={"energy": 5})
    enc = dict(lazy.Y.encoding)
    xf.save_problem(lazy, path, overwrite=True)
    assert lazy.Y.encoding == enc  # the caller's Dataset is not modified
    xr.testing.assert_identical(xf.open_problem(path), base)
    sub = xf.open_problem(path).isel(energy=slice(0, 12), energy_coarse=slice(0, 3))
    xf.save_problem(sub, tmp_path / "sub.zarr")
    xr.testing.assert_identical(xf.open_problem(tmp_path / "sub.zarr"), sub)
    assert sorted(os.listdir(tmp_path)) == ["p.zarr", "sub.zarr"]


def test_open_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError):
        xf.open_problem(tmp_path / "nope.zarr")


def test_open_validates(tmp_path, base):
    bad = _attr("X", "exposure", -1.0)(base)
    path = tmp_path / "bad.zarr"
    xf.save_problem(bad, path)
    with pytest.raises(xf.ProblemError, match="^X: exposure"):
        xf.open_problem(path)
    assert xf.open_problem(path, validate_problem=False).X.attrs["exposure"] == -1.0


def test_no_silent_overwrite(tmp_path, base):
    path = tmp_path / "p.zarr"
    xf.save_problem(base, path)
    other = base.assign_attrs(title="other")
    with pytest.raises(FileExistsError):
        xf.save_problem(other, path)
    with pytest.raises(FileExistsError):
        other.hifred.save(path)
    assert xf.open_problem(path).attrs["title"] == "xfusion problem"
    xf.save_problem(other, path, overwrite=True)
    xr.testing.assert_identical(xf.open_problem(path), other)
    assert sorted(os.listdir(tmp_path)) == ["p.zarr"]


@pytest.mark.parametrize(
    "where, key, value",
    [
        ("dataset", "history", np.arange(3)),
        ("dataset", "meta", {"tags": {"a", "b"}}),
        ("X", "mask", np.ones((2, 2))),
        ("energy", "when", object()),
    ],
)
def test_non_json_attr_refused(tmp_path, base, where, key, value):
    ds = base.copy()
    if where == "dataset":
        ds.attrs[key] = value
    else:
        ds[where].attrs[key] = value
    path = tmp_path / "p.zarr"
    with pytest.raises(xf.ProblemError, match=rf"attribute '{key}'.*not JSON-safe"):
        xf.save_problem(ds, path)
    assert os.listdir(tmp_path) == []


def _interrupting_to_zarr(monkeypatch):
    real = xr.Dataset.to_zarr
    calls = []

    def to_zarr(self, store, *args, **kwargs):
        calls.append(os.fspath(store))
        real(self[["X"]], store, *args, **kwargs)  # write part of it ...
        raise KeyboardInterrupt("simulated interruption")  # ... then die

    monkeypatch.setattr(xr.Dataset, "to_zarr", to_zarr)
    return calls


def test_interrupted_save_leaves_nothing(tmp_path, base, monkeypatch):
    calls = _interrupting_to_zarr(monkeypatch)
    path = tmp_path / "p.zarr"
    with pytest.raises(KeyboardInterrupt):
        xf.save_problem(base, path)
    assert calls and calls[0] != os.fspath(path)  # wrote to a temporary store
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_interrupted_overwrite_keeps_old_store(tmp_path, base, monkeypatch):
    path = tmp_path / "p.zarr"
    xf.save_problem(base, path)
    before = {p: (path / p).read_bytes() for p in _files(path)}
    _interrupting_to_zarr(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        xf.save_problem(base.assign_attrs(title="new"), path, overwrite=True)
    monkeypatch.undo()
    assert {p: (path / p).read_bytes() for p in _files(path)} == before
    assert sorted(os.listdir(tmp_path)) == ["p.zarr"]
    xr.testing.assert_identical(xf.open_problem(path), base)


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


# -- PSF wings: a kernel summing below 1 -------------------------------------------------------


@pytest.mark.parametrize("spatial", ["dense", "separable", "fft"])
def test_psf_summing_below_one_loses_its_wings(base, spatial):
    """A PSF summing to 0.9 (the fraction inside the kernel) is valid, and Y's expected counts of
    a flat patch far from the edges are 0.9× those with the full PSF: the wings are lost."""
    ds9 = _scaled_psf(0.9)(base)
    xf.validate(ds9)
    Z = np.zeros((base.sizes["energy"], base.sizes["y"], base.sizes["x"]))
    Z[:, 3:6, 3:9] = 1.0  # ≥ 2 pixels (the kernel's half size) from every edge
    _, y1 = xf.forward(base, Z, spatial=spatial)
    mx9, y9 = xf.forward(ds9, Z, spatial=spatial)
    assert float(y9.sum()) == pytest.approx(0.9 * float(y1.sum()), rel=1e-10)
    mx1, _ = xf.forward(base, Z, spatial=spatial)
    np.testing.assert_allclose(mx9, mx1)  # X does not see Y's PSF


def test_psf_energy_dependent_sums_below_one(check):
    ds = tiny_problem(psf_energy=True)
    p = ds.psf_Y.values.copy()
    p[7] *= 0.8
    check(_set(ds, "psf_Y", p))
    p[3] *= 1.01
    with pytest.raises(xf.ProblemError, match=r"^psf_Y: must sum to at most 1.*1\.01.*index 3"):
        check(_set(ds, "psf_Y", p))


def test_make_problem_keeps_a_psf_summing_below_one(base):
    args = _args(base)
    args["psf_Y"] = args["psf_Y"] * 0.995
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # not renormalised
        ds = xf.make_problem(**args)
    assert ds.psf_Y.sum().item() == pytest.approx(0.995, rel=1e-12)
