"""Bad problems are refused by name: a table of broken inputs for make_problem, validate and
open_problem, each with the exception class and a message that names the broken variable.

Every case starts from one small good problem (``tiny_problem``: L=24, l=6, 9×12 fine pixels,
3×4 coarse pixels) and breaks one thing. The good problem itself passes every route (see
``test_good_problem_passes``), so each refusal below is caused by the breakage.
"""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

import xfusion as xf

from .conftest import tiny_problem

PE = xf.ProblemError


@pytest.fixture(scope="module")
def base():
    return tiny_problem()


@pytest.fixture(scope="module")
def stores(base, tmp_path_factory):
    """Good stores written once: save_problem's (zarr v3, one chunk per array), a chunked one
    (Y in three energy chunks) and a zarr v2 one (xarray's own writer)."""
    root = tmp_path_factory.mktemp("stores")
    out = {"v3": os.fspath(root / "v3.zarr"), "v3c": os.fspath(root / "v3c.zarr"),
           "v2": os.fspath(root / "v2.zarr")}
    xf.save_problem(base, out["v3"])
    xf.save_problem(base.chunk({"energy": 8}), out["v3c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base.chunk({"energy": 8}).to_zarr(out["v2"], zarr_format=2, consolidated=True)
    return out


# -- how to break a problem --------------------------------------------------------------------


def _args(ds):
    return dict(
        X=ds.X.values, Y=ds.Y.values, response_X=ds.response_X.values, psf_Y=ds.psf_Y.values,
        arf_X=ds.arf_X.values, arf_Y=ds.arf_Y.values, exposure_X=2e3, exposure_Y=5e3,
        energy=ds.energy.values,
    )


def mk(**changes):
    """make_problem with some arguments replaced; a callable value gets the argument dict
    (after earlier changes) and returns the new value; None deletes the argument."""

    def run(ds, stores):
        a = _args(ds)
        for k, v in changes.items():
            v = v(a) if callable(v) else v
            if v is None:
                a.pop(k, None)
            else:
                a[k] = v
        return xf.make_problem(**a)

    return run


def val(mutate):
    """validate(mutate(copy of the good problem))."""

    def run(ds, stores):
        return xf.validate(mutate(ds.copy(deep=True)))

    return run


def store(damage, kind="v3"):
    """open_problem(validate_problem=False) of a copy of a good store damaged by ``damage``:
    the store check alone must refuse it (validation is off)."""

    def run(ds, stores, tmp_path):
        path = os.fspath(tmp_path / "damaged.zarr")
        shutil.copytree(stores[kind], path)
        damage(path)
        return xf.open_problem(path, validate_problem=False)

    run.needs_tmp = True
    return run


def _put(name, fn, dtype=None):
    """Replace variable ``name`` with fn(copy of its values) (attrs kept)."""

    def mutate(ds):
        v = ds[name].values.copy()
        if dtype is not None:
            v = v.astype(dtype)
        v = fn(v)
        if v is None:
            raise AssertionError("fn must return the array")
        return ds.assign({name: xr.DataArray(v, dims=ds[name].dims, attrs=ds[name].attrs)})

    return mutate


def _arr(name, fn, dtype=None):
    """A make_problem argument replaced by fn(copy of it)."""

    def change(a):
        v = np.array(a[name], copy=True)
        if dtype is not None:
            v = v.astype(dtype)
        return fn(v)

    return change


def _at(i, value):
    def fn(v):
        v.flat[i] = value
        return v

    return fn


def _times(k):
    return lambda v: v * k


def _coord(name, fn, **attrs):
    def mutate(ds):
        c = ds[name]
        new = fn(np.asarray(c.values, dtype=float).copy())
        return ds.assign_coords({name: (c.dims, new, {**c.attrs, **attrs})})

    return mutate


def _exposure(name, value):
    def mutate(ds):
        if value is _DROP:
            del ds[name].attrs["exposure"]
        else:
            ds[name].attrs["exposure"] = value
        return ds

    return mutate


_DROP = object()


def _swap(i, j):
    def fn(v):
        v[[i, j]] = v[[j, i]]
        return v

    return fn


def _dup_last(v):
    v[-1] = v[-2]
    return v


def _rm_chunk(name, which=0):
    """Remove the ``which``-th chunk file (sorted) of array ``name``."""

    def damage(path):
        adir = os.path.join(path, name)
        files = sorted(os.path.relpath(os.path.join(d, f), adir) for d, _, fs in os.walk(adir)
                       for f in fs if f not in ("zarr.json", ".zarray", ".zattrs"))
        os.remove(os.path.join(adir, files[which]))

    return damage


def _rm(rel):
    def damage(path):
        p = os.path.join(path, rel)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    return damage


def _garble(rel):
    def damage(path):
        with open(os.path.join(path, rel), "w") as fh:
            fh.write("{not json")

    return damage


def _psf_stack(n):
    return lambda a: np.stack([a["psf_Y"]] * n)


def _psf(p):
    return lambda ds: ds.assign(psf_Y=(("psf_y", "psf_x"), p))


def _negative_psf(v):
    v[2, 2] += v[0, 0] + 0.01
    v[0, 0] = -0.01  # still sums to 1
    return v


def _response_above_one(v):
    v[:, 12] *= 1.01
    return v


# -- the table -----------------------------------------------------------------------------------

NAN, INF = np.nan, np.inf
SHAPES = r"X is \(6, 9, 12\) = \(l, M, N\), Y is \(24, 3, 4\) = \(L, m, n\)"

CASES = [
    # ---- make_problem: X ----
    ("mk X NaN", mk(X=_arr("X", _at(1, NAN), float)), PE, r"^X: 1 non-finite"),
    ("mk X Inf", mk(X=_arr("X", _at(2, INF), float)), PE, r"^X: 1 non-finite"),
    ("mk X negative", mk(X=_arr("X", _at(3, -1))), PE, r"^X: 1 negative counts"),
    ("mk X non-integer", mk(X=_arr("X", _at(5, 2.5), float)), PE, r"^X: counts must be whole"),
    ("mk X complex", mk(X=_arr("X", lambda v: v, complex)), PE,
     r"^X: counts must be real numbers.*complex128"),
    ("mk X bool", mk(X=_arr("X", lambda v: v > 3)), PE, r"^X: counts must be real.*bool"),
    ("mk X string", mk(X=_arr("X", lambda v: v, str)), PE, r"^X: counts must be real.*<U"),
    ("mk X empty", mk(X=lambda a: a["X"][:, :0]), PE, r"^X: empty \(shape \(6, 0, 12\), axis 'y'"),
    ("mk X 2-D", mk(X=lambda a: a["X"][0]), PE, r"^X: expected 3-D array"),
    ("mk X one row short", mk(X=lambda a: a["X"][:, :-1]), PE,
     r"^Y: coarse image 3×4 does not tile X's fine image 8×12"),
    ("mk X exposure missing", mk(exposure_X=None), PE, r"^X: missing exposure"),
    ("mk X exposure zero", mk(exposure_X=0.0), PE, r"^X: exposure must be positive"),
    ("mk X exposure negative", mk(exposure_X=-5.0), PE, r"^X: exposure must be positive"),
    ("mk X exposure NaN", mk(exposure_X=NAN), PE, r"^X: exposure must be positive.*nan"),
    ("mk X exposure Inf", mk(exposure_X=INF), PE, r"^X: exposure must be positive.*inf"),
    ("mk X exposure text", mk(exposure_X="long"), PE, r"^X: exposure 'long' is not a number"),
    ("mk X exposure bool", mk(exposure_X=True), PE, r"^X: exposure True is not a number"),
    # ---- make_problem: Y ----
    ("mk Y NaN", mk(Y=_arr("Y", _at(1, NAN), float)), PE, r"^Y: 1 non-finite"),
    ("mk Y Inf", mk(Y=_arr("Y", _at(2, -INF), float)), PE, r"^Y: 1 non-finite"),
    ("mk Y negative", mk(Y=_arr("Y", _at(3, -2))), PE, r"^Y: 1 negative counts"),
    ("mk Y non-integer", mk(Y=_arr("Y", _at(5, 0.5), np.float32)), PE,
     r"^Y: counts must be whole"),
    ("mk Y complex", mk(Y=_arr("Y", lambda v: v, np.complex64)), PE,
     r"^Y: counts must be real.*complex64"),
    ("mk Y object", mk(Y=_arr("Y", lambda v: v, object)), PE, r"^Y: counts must be real.*object"),
    ("mk Y empty", mk(Y=lambda a: a["Y"][:0]), PE, r"^Y: empty \(shape \(0, 3, 4\), axis 'energy'"),
    ("mk Y all zero", mk(Y=_arr("Y", lambda v: 0 * v)), PE, r"^Y: no counts"),
    ("mk Y one channel short", mk(Y=lambda a: a["Y"][:-1]), PE,
     r"^response_X: shape \(6, 24\), expected \(6, 23\).*Y is \(23, 3, 4\)"),
    ("mk Y one row short", mk(Y=lambda a: a["Y"][:, :-1]), PE,
     r"^Y: coarse image 2×4 does not tile"),
    ("mk Y exposure missing", mk(exposure_Y=None), PE, r"^Y: missing exposure"),
    ("mk Y exposure NaN", mk(exposure_Y=NAN), PE, r"^Y: exposure must be positive"),
    ("mk Y exposure negative", mk(exposure_Y=-1), PE, r"^Y: exposure must be positive"),
    ("mk Y exposure list", mk(exposure_Y=[1.0, 2.0]), PE, r"^Y: exposure \[1.0, 2.0\] is not a"),
    # ---- make_problem: response_X ----
    ("mk response_X NaN", mk(response_X=_arr("response_X", _at(7, NAN))), PE,
     r"^response_X: non-finite"),
    ("mk response_X Inf", mk(response_X=_arr("response_X", _at(7, INF))), PE,
     r"^response_X: non-finite"),
    ("mk response_X negative", mk(response_X=_arr("response_X", _at(7, -0.1))), PE,
     r"^response_X: negative probabilities"),
    ("mk response_X column > 1", mk(response_X=_arr("response_X", _response_above_one)), PE,
     r"^response_X: column for energy index 12 sums to .* > 1"),
    ("mk response_X complex", mk(response_X=_arr("response_X", lambda v: v, complex)), PE,
     r"^response_X: values must be real numbers.*complex"),
    ("mk response_X string", mk(response_X=_arr("response_X", lambda v: v, str)), PE,
     r"^response_X: values must be real numbers"),
    ("mk response_X one energy short", mk(response_X=lambda a: a["response_X"][:, :-1]), PE,
     rf"^response_X: shape \(6, 23\), expected \(6, 24\) \({SHAPES}\)"),
    ("mk response_X one channel short", mk(response_X=lambda a: a["response_X"][:-1]), PE,
     r"^response_X: shape \(5, 24\), expected \(6, 24\)"),
    ("mk response_X transposed", mk(response_X=lambda a: a["response_X"].T), PE,
     r"^response_X: shape \(24, 6\), expected \(6, 24\)"),
    # ---- make_problem: psf_Y ----
    ("mk psf_Y NaN", mk(psf_Y=_arr("psf_Y", _at(0, NAN))), PE, r"^psf_Y: non-finite"),
    ("mk psf_Y Inf", mk(psf_Y=_arr("psf_Y", _at(0, INF))), PE, r"^psf_Y: non-finite"),
    ("mk psf_Y negative", mk(psf_Y=_arr("psf_Y", _negative_psf)), PE, r"^psf_Y: negative"),
    ("mk psf_Y sums to 1.5", mk(psf_Y=_arr("psf_Y", _times(1.5))), PE,
     r"^psf_Y: must sum to at most 1.*1\.5"),
    ("mk psf_Y zero", mk(psf_Y=_arr("psf_Y", _times(0))), PE, r"^psf_Y: sums to 0"),
    ("mk psf_Y even size", mk(psf_Y=lambda a: a["psf_Y"][:4] / a["psf_Y"][:4].sum()), PE,
     r"^psf_Y: sizes must be odd"),
    ("mk psf_Y complex", mk(psf_Y=_arr("psf_Y", lambda v: v, complex)), PE,
     r"^psf_Y: values must be real numbers"),
    ("mk psf_Y 1-D", mk(psf_Y=lambda a: a["psf_Y"][2]), PE, r"^psf_Y: shape \(5,\), expected"),
    ("mk psf_Y one slice short", mk(psf_Y=_psf_stack(23)), PE,
     r"^psf_Y: shape \(23, 5, 5\), expected \(ky, kx\) or \(24, ky, kx\)"),
    ("mk psf_Y empty", mk(psf_Y=np.zeros((0, 0))), PE, r"^psf_Y: empty"),
    # ---- make_problem: arf_X, arf_Y ----
    ("mk arf_X NaN", mk(arf_X=_arr("arf_X", _at(1, NAN))), PE, r"^arf_X: non-finite"),
    ("mk arf_X Inf", mk(arf_X=_arr("arf_X", _at(1, INF))), PE, r"^arf_X: non-finite"),
    ("mk arf_X negative", mk(arf_X=_arr("arf_X", _at(3, -1.0))), PE,
     r"^arf_X: negative effective area"),
    ("mk arf_X zero", mk(arf_X=_arr("arf_X", _times(0))), PE, r"^arf_X: effective area is zero"),
    ("mk arf_X complex", mk(arf_X=_arr("arf_X", lambda v: v, complex)), PE,
     r"^arf_X: values must be real numbers.*complex"),
    ("mk arf_X bool", mk(arf_X=_arr("arf_X", lambda v: v > 0)), PE,
     r"^arf_X: values must be real numbers.*bool"),
    ("mk arf_X one energy short", mk(arf_X=lambda a: a["arf_X"][:-1]), PE,
     rf"^arf_X: shape \(23,\), expected \(24,\) or \(24, 9, 12\) \({SHAPES}\)"),
    ("mk arf_X one energy long", mk(arf_X=lambda a: np.r_[a["arf_X"], 1.0]), PE,
     r"^arf_X: shape \(25,\), expected \(24,\)"),
    ("mk arf_X vignetted one column short",
     mk(arf_X=lambda a: np.ones((24, 9, 11))), PE, r"^arf_X: shape \(24, 9, 11\), expected"),
    ("mk arf_Y NaN", mk(arf_Y=_arr("arf_Y", _at(1, NAN))), PE, r"^arf_Y: non-finite"),
    ("mk arf_Y negative", mk(arf_Y=_arr("arf_Y", _at(1, -3.0))), PE,
     r"^arf_Y: negative effective area"),
    ("mk arf_Y zero", mk(arf_Y=_arr("arf_Y", _times(0))), PE, r"^arf_Y: effective area is zero"),
    ("mk arf_Y one energy short", mk(arf_Y=lambda a: a["arf_Y"][:-1]), PE,
     r"^arf_Y: shape \(23,\), expected \(24,\) or \(24, 9, 12\)"),
    ("mk arf_Y string", mk(arf_Y=_arr("arf_Y", lambda v: v, str)), PE,
     r"^arf_Y: values must be real numbers"),
    # ---- make_problem: energy grid ----
    ("mk energy decreasing", mk(energy=lambda a: a["energy"][::-1]), PE,
     r"^energy: energies must increase strictly, decreasing at index 1"),
    ("mk energy two swapped", mk(energy=_arr("energy", _swap(5, 6))), PE,
     r"^energy: energies must increase strictly, decreasing at index 6"),
    ("mk energy duplicated", mk(energy=_arr("energy", _dup_last)), PE,
     r"^energy: energies must increase strictly, duplicated at index 23"),
    ("mk energy in eV", mk(energy=_arr("energy", _times(1e3))), PE,
     r"^energy: energies up to 730 keV are implausible.*expected keV, are they in eV\?"),
    ("mk energy NaN", mk(energy=_arr("energy", _at(4, NAN))), PE, r"^energy: non-finite"),
    ("mk energy negative", mk(energy=lambda a: a["energy"] - 0.6), PE,
     r"^energy: energies must be positive"),
    ("mk energy one short", mk(energy=lambda a: a["energy"][:-1]), PE,
     r"^energy: expected 24 centres \(Y has 24 channels\), got \(23,\)"),
    ("mk energy_edges decreasing", mk(energy=None, energy_edges=np.linspace(1.0, 0.5, 25)), PE,
     r"^energy_edges: must increase strictly"),
    ("mk energy_edges one short", mk(energy=None, energy_edges=np.linspace(0.5, 1.0, 24)), PE,
     r"^energy_edges: expected 25 edges for 24 channels"),
    ("mk energy_edges in eV", mk(energy=None, energy_edges=np.linspace(500, 1000, 25)), PE,
     r"^energy: energies up to .* keV are implausible.*eV"),
    ("mk energy_coarse decreasing",
     mk(energy_coarse=lambda a: a["energy"].reshape(6, 4).mean(1)[::-1]), PE,
     r"^energy_coarse: energies must increase strictly"),
    ("mk energy_coarse in eV", mk(energy_coarse=lambda a: 1e3 * a["energy"].reshape(6, 4).mean(1)),
     PE, r"^energy_coarse: energies up to .* implausible.*eV"),
    ("mk energy_coarse one short", mk(energy_coarse=lambda a: a["energy"][:5]), PE,
     r"^energy_coarse: expected 6 centres \(X has 6 channels\), got \(5,\)"),
    # ---- make_problem: spatial grid ----
    ("mk y in degrees", mk(y=(np.arange(9) - 4) * 10 / 3600), PE,
     r"^y: pixel size 0.002778 arcsec is implausible.*expected arcsec, are they in degrees\?"),
    ("mk x in degrees", mk(x=(np.arange(12) - 5.5) * 10 / 3600), PE, r"^x: pixel size .*degrees"),
    ("mk pixel_size in degrees", mk(pixel_size=10 / 3600), PE, r"^y: pixel size .*degrees"),
    ("mk pixel_size zero", mk(pixel_size=0.0), PE, r"^y: pixel centres must be strictly "
                                                      r"monotonic, duplicated at index 1"),
    ("mk pixel_size NaN", mk(pixel_size=NAN), PE, r"^y: non-finite pixel centres"),
    ("mk y two swapped", mk(y=_swap(2, 3)(10.0 * np.arange(9))), PE,
     r"^y: pixel centres must be strictly monotonic, out of order"),
    ("mk x duplicated", mk(x=_dup_last(10.0 * np.arange(12))), PE,
     r"^x: pixel centres must be strictly monotonic, duplicated at index 11"),
    ("mk y one short", mk(y=10.0 * np.arange(8)), PE, r"^y, x: expected 9 and 12 pixel centres"),
    ("mk y Inf", mk(y=_at(0, -INF)(10.0 * np.arange(9))), PE, r"^y: non-finite pixel centres"),
    # ---- make_problem: truth ----
    ("mk Z_true one energy short", mk(Z_true=np.ones((23, 9, 12))), PE,
     r"^Z_true: shape \(23, 9, 12\), expected \(24, 9, 12\)"),
    ("mk Z_true NaN", mk(Z_true=_at(0, NAN)(np.ones((24, 9, 12)))), PE, r"^Z_true: non-finite"),
    ("mk Z_true negative", mk(Z_true=-np.ones((24, 9, 12))), PE, r"^Z_true: negative values"),
    ("mk Z_true complex", mk(Z_true=np.ones((24, 9, 12), complex)), PE,
     r"^Z_true: values must be real"),
    ("mk X_true wrong shape", mk(X_true=np.ones((24, 9, 12))), PE,
     r"^X_true: shape \(24, 9, 12\), expected \(6, 9, 12\)"),
    ("mk Y_true wrong shape", mk(Y_true=np.ones((24, 3, 3))), PE,
     r"^Y_true: shape \(24, 3, 3\), expected \(24, 3, 4\)"),
    ("mk Y_true Inf", mk(Y_true=_at(5, INF)(np.ones((24, 3, 4)))), PE, r"^Y_true: non-finite"),
    # ---- validate: counts and exposures ----
    ("val X NaN", val(_put("X", _at(1, NAN), float)), PE, r"^X: 1 non-finite"),
    ("val X negative", val(_put("X", _at(1, -1))), PE, r"^X: 1 negative counts"),
    ("val X non-integer", val(_put("X", _at(1, 0.25), float)), PE, r"^X: counts must be whole"),
    ("val X complex", val(_put("X", lambda v: v, complex)), PE,
     r"^X: counts must be real.*complex"),
    ("val X bool", val(_put("X", lambda v: v > 2)), PE, r"^X: counts must be real.*bool"),
    ("val X string", val(_put("X", lambda v: v, str)), PE, r"^X: counts must be real.*<U"),
    ("val X empty", val(lambda ds: ds.isel(y=slice(0, 0))), PE, r"^X: empty .*axis 'y'"),
    ("val Y Inf", val(_put("Y", _at(2, INF), float)), PE, r"^Y: 1 non-finite"),
    ("val Y complex", val(_put("Y", lambda v: v, complex)), PE, r"^Y: counts must be real"),
    ("val Y empty", val(lambda ds: ds.isel(energy=slice(0, 0))), PE, r"^Y: empty .*'energy'"),
    ("val Y exposure missing", val(_exposure("Y", _DROP)), PE, r"^Y: missing exposure"),
    ("val Y exposure NaN", val(_exposure("Y", NAN)), PE, r"^Y: exposure must be positive"),
    ("val Y exposure zero", val(_exposure("Y", 0)), PE, r"^Y: exposure must be positive"),
    ("val X exposure negative", val(_exposure("X", -3.0)), PE, r"^X: exposure must be positive"),
    ("val X exposure text", val(_exposure("X", "2000")), PE, r"^X: exposure '2000' is not a"),
    ("val X exposure bool", val(_exposure("X", True)), PE, r"^X: exposure True is not a number"),
    # ---- validate: response, PSF, effective areas ----
    ("val response_X NaN", val(_put("response_X", _at(3, NAN))), PE, r"^response_X: non-finite"),
    ("val response_X negative", val(_put("response_X", _at(3, -1e-3))), PE,
     r"^response_X: negative"),
    ("val response_X column > 1", val(_put("response_X", _response_above_one)), PE,
     r"^response_X: column for energy index 12"),
    ("val response_X complex", val(_put("response_X", lambda v: v, complex)), PE,
     r"^response_X: values must be real"),
    ("val response_X transposed", val(lambda ds: ds.assign(response_X=ds.response_X.T)), PE,
     r"^response_X: dims"),
    ("val psf_Y NaN", val(_put("psf_Y", _at(4, NAN))), PE, r"^psf_Y: non-finite"),
    ("val psf_Y negative", val(_put("psf_Y", _negative_psf)), PE, r"^psf_Y: negative"),
    ("val psf_Y sums to 2", val(_put("psf_Y", _times(2.0))), PE,
     r"^psf_Y: must sum to at most 1.*2"),
    ("val psf_Y sums to 0", val(_put("psf_Y", _times(0.0))), PE, r"^psf_Y: sums to 0"),
    ("val psf_Y complex", val(_put("psf_Y", lambda v: v, complex)), PE,
     r"^psf_Y: values must be real"),
    ("val psf_Y even size", val(_psf(np.full((4, 4), 1 / 16))), PE, r"^psf_Y: sizes must be odd"),
    ("val psf_Y empty", val(_psf(np.zeros((0, 3)))), PE, r"^psf_Y: empty .*'psf_y'"),
    ("val arf_X NaN", val(_put("arf_X", _at(0, NAN))), PE, r"^arf_X: non-finite"),
    ("val arf_X negative", val(_put("arf_X", _at(0, -1.0))), PE, r"^arf_X: negative"),
    ("val arf_X complex", val(_put("arf_X", lambda v: v, complex)), PE,
     r"^arf_X: values must be real"),
    ("val arf_Y Inf", val(_put("arf_Y", _at(0, INF))), PE, r"^arf_Y: non-finite"),
    ("val arf_Y bool", val(_put("arf_Y", lambda v: v > 0)), PE, r"^arf_Y: values must be real"),
    ("val arf_Y zero", val(_put("arf_Y", _times(0))), PE, r"^arf_Y: effective area is zero"),
    # ---- validate: coordinates ----
    ("val energy decreasing", val(_coord("energy", lambda v: v[::-1])), PE,
     r"^energy: energies must increase strictly, decreasing"),
    ("val energy duplicated", val(_coord("energy", _dup_last)), PE,
     r"^energy: energies must increase strictly, duplicated at index 23"),
    ("val energy in eV", val(_coord("energy", _times(1e3))), PE,
     r"^energy: energies up to 730 keV are implausible.*eV"),
    ("val energy units eV", val(_coord("energy", lambda v: v, units="eV")), PE,
     r"^energy: units 'eV', expected 'keV'"),
    ("val energy NaN", val(_coord("energy", _at(0, NAN))), PE, r"^energy: non-finite"),
    ("val energy zero", val(_coord("energy", _at(0, 0.0))), PE, r"^energy: energies must be pos"),
    ("val energy_lo above energy_hi",
     val(lambda ds: ds.assign_coords(energy_lo=ds.energy_hi, energy_hi=ds.energy_lo)), PE,
     r"^energy_lo: must be below energy_hi, bin 0"),
    ("val energy_lo NaN", val(_coord("energy_lo", _at(3, NAN))), PE, r"^energy_lo: non-finite"),
    ("val energy_lo above centre", val(_coord("energy_lo", _at(3, 0.532))), PE,
     r"^energy_lo: bin 3 starts at 0.532 keV, above its centre"),
    ("val energy_hi below centre", val(_coord("energy_hi", _at(3, 0.528))), PE,
     r"^energy_hi: bin 3 ends at 0.528 keV, below its centre"),
    ("val energy_hi in eV units", val(_coord("energy_hi", _times(1e3), units="eV")), PE,
     r"^energy_hi: units 'eV', expected 'keV'"),
    ("val energy_lo negative", val(_coord("energy_lo", _at(0, -0.1))), PE,
     r"^energy_lo: negative bin edge"),
    ("val energy_coarse decreasing", val(_coord("energy_coarse", lambda v: v[::-1])), PE,
     r"^energy_coarse: energies must increase strictly"),
    ("val energy_coarse in eV", val(_coord("energy_coarse", _times(1e3))), PE,
     r"^energy_coarse: energies up to .* implausible.*eV"),
    ("val energy_coarse units", val(_coord("energy_coarse", lambda v: v, units="eV")), PE,
     r"^energy_coarse: units 'eV', expected 'keV'"),
    ("val y in degrees", val(_coord("y", lambda v: v / 3600)), PE,
     r"^y: pixel size .* arcsec is implausible.*degrees"),
    ("val x in degrees", val(_coord("x", lambda v: v / 3600)), PE, r"^x: pixel size .*degrees"),
    ("val x_coarse in degrees", val(_coord("x_coarse", lambda v: v / 3600)), PE,
     r"^x_coarse: pixel size .*degrees"),
    ("val y units deg", val(_coord("y", lambda v: v, units="deg")), PE,
     r"^y: units 'deg', expected 'arcsec'"),
    ("val y two swapped", val(_coord("y", _swap(0, 1))), PE,
     r"^y: pixel centres must be strictly monotonic, out of order"),
    ("val x duplicated", val(_coord("x", _dup_last)), PE,
     r"^x: pixel centres must be strictly monotonic, duplicated"),
    ("val y_coarse NaN", val(_coord("y_coarse", _at(1, NAN))), PE, r"^y_coarse: non-finite"),
    ("val x_coarse units", val(_coord("x_coarse", lambda v: v, units="degree")), PE,
     r"^x_coarse: units 'degree', expected 'arcsec'"),
    # ---- validate: truth ----
    ("val Z_true NaN", val(_put("Z_true", _at(0, NAN))), PE, r"^Z_true: non-finite"),
    ("val Z_true negative", val(_put("Z_true", _at(0, -1.0))), PE, r"^Z_true: negative"),
    ("val Z_true complex", val(_put("Z_true", lambda v: v, complex)), PE,
     r"^Z_true: values must be real"),
    ("val Z_true transposed", val(lambda ds: ds.assign(Z_true=ds.Z_true.transpose("x", "y",
                                                                                  "energy"))),
     PE, r"^Z_true: dims \('x', 'y', 'energy'\), expected"),
    # ---- open_problem: missing chunk files (save_problem's zarr v3 store) ----
    *[(f"open {v} chunk missing", store(_rm_chunk(v)), PE,
       rf"^{v}: 1 of 1 chunk files missing from the store .*\({v}/c/0"
       + r".*a partial copy or failed transfer")
      for v in ("X", "Y", "response_X", "psf_Y", "arf_X", "arf_Y", "Z_true", "energy",
                "energy_lo", "energy_hi", "energy_coarse", "y", "x", "y_coarse", "x_coarse")],
    ("open Y middle chunk missing", store(_rm_chunk("Y", 1), "v3c"), PE,
     r"^Y: 1 of 3 chunk files missing .*\(Y/c/1/0/0\)"),
    ("open Y all chunks missing", store(_rm("Y/c"), "v3c"), PE,
     r"^Y: 3 of 3 chunk files missing .*\(Y/c/0/0/0, Y/c/1/0/0, Y/c/2/0/0\)"),
    # ---- open_problem: damaged metadata ----
    *[(f"open {v} zarr.json missing", store(_rm(f"{v}/zarr.json")), PE,
       rf"^{v}: array metadata {v}/zarr.json is missing from the store")
      for v in ("X", "Y", "psf_Y", "arf_Y", "energy")],
    ("open Y directory missing", store(_rm("Y")), PE,
     r"^Y: array metadata Y/zarr.json is missing"),
    ("open Y zarr.json garbled", store(_garble("Y/zarr.json")), PE, r"^Y: unreadable metadata"),
    ("open root zarr.json missing", store(_rm("zarr.json")), PE,
     r"damaged\.zarr: not a Zarr store \(no zarr.json"),
    ("open root zarr.json garbled", store(_garble("zarr.json")), PE,
     r"^store root: unreadable metadata"),
    # ---- open_problem: zarr v2 stores ----
    ("open v2 Y chunk missing", store(_rm("Y/1.0.0"), "v2"), PE,
     r"^Y: 1 of 3 chunk files missing .*\(Y/1\.0\.0\)"),
    ("open v2 arf_Y chunk missing", store(_rm("arf_Y/0"), "v2"), PE,
     r"^arf_Y: 1 of 3 chunk files missing .*\(arf_Y/0\)"),
    ("open v2 X .zarray missing", store(_rm("X/.zarray"), "v2"), PE,
     r"^X: array metadata X/\.zarray is missing"),
    ("open v2 .zmetadata and Y/.zarray missing",
     store(lambda p: (_rm(".zmetadata")(p), _rm("Y/.zarray")(p)), "v2"), PE,
     r"^Y: array metadata Y/\.zarray is missing"),
]


@pytest.mark.parametrize("action, exc, pattern", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_refused(base, stores, tmp_path, action, exc, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. misaligned energy_coarse
        with pytest.raises(exc, match=pattern):
            if getattr(action, "needs_tmp", False):
                action(base, stores, tmp_path)
            else:
                action(base, stores)


def test_table_is_large_and_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60


def test_messages_are_one_line(base, stores, tmp_path):
    for name, action, _, _ in CASES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if getattr(action, "needs_tmp", False):
                    shutil.rmtree(tmp_path / "damaged.zarr", ignore_errors=True)
                    action(base, stores, tmp_path)
                else:
                    action(base, stores)
            except PE as e:
                assert "\n" not in str(e), name
            else:
                raise AssertionError(f"{name}: not refused")


# -- the good problem passes every route, so each refusal above comes from its breakage ---------


def test_good_problem_passes(base, stores, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        xf.make_problem(**_args(base))
        xf.validate(base.copy(deep=True))
    for kind in ("v3", "v3c", "v2"):
        store(lambda p: None, kind)(base, stores, tmp_path / kind)
    xr.testing.assert_identical(xf.open_problem(stores["v3"]), base)


def test_empty_chunks_are_written(base, tmp_path):
    # a chunk holding only fill values (zeros) must still be a file: a missing file means loss
    ds = base.copy(deep=True)
    ds["Y"].values[8:16] = 0
    ds["Z_true"].values[:] = 0
    path = tmp_path / "p.zarr"
    xf.save_problem(ds.chunk({"energy": 8}), path)
    assert sorted(os.listdir(path / "Y" / "c")) == ["0", "1", "2"]
    assert os.path.isfile(path / "Z_true" / "c" / "1" / "0" / "0")
    xr.testing.assert_identical(xf.open_problem(path), ds)


def test_store_check_reads_consolidated_metadata(stores):
    # the consolidated metadata lists every array the store check looks for
    doc = json.loads(open(os.path.join(stores["v3"], "zarr.json")).read())
    names = set(doc["consolidated_metadata"]["metadata"])
    assert {"X", "Y", "psf_Y", "energy", "y_coarse"} <= names
