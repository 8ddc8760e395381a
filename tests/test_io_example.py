"""examples/real_data.py: files written from a simulated sky go back into a valid problem whose
counts agree with the model applied to the truth."""

import importlib.util
import os
import warnings

import numpy as np
import pytest

import xfusion as xf

HERE = os.path.dirname(__file__)


def _load():
    path = os.path.join(HERE, "..", "examples", "real_data.py")
    spec = importlib.util.spec_from_file_location("real_data_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_files_to_problem(tmp_path):
    pytest.importorskip("xfusion.simulate")
    rd = _load()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no split channels, no renormalised PSF
        # ... but the band-edge channels are named (from_files(edge_tolerance=0.05))
        warnings.filterwarnings("ignore", ".*pn.rmf: .* left out of the likelihood", UserWarning)
        out = rd.main(["--out", str(tmp_path), "--no-fuse", "--exposure-factor", "0.05"])
    ds = out["problem"]
    xf.validate(ds)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["pn.rmf", "pn.arf", "rsl.arf", "rsl_psf.fits", "pn_evt.fits", "rsl_evt.fits"])
    sim = xf.simulate.scenario("realistic_1kev_rebin", seed=0, scale=0.4)
    truth = rd.truth_on_grid(sim, np.r_[ds.energy_lo.values, ds.energy_hi.values[-1]])
    mx, my = xf.forward(ds, truth)
    # screening removed exactly the extra events: totals agree with the model within Poisson
    # noise (the PSF file is the scenario's kernel, the whole PSF of the simulated sky)
    # edge channels of X are left out (the sky here has no photons outside the band, but the
    # flat spectrum from_files assumes does): the model expects no counts there
    runs = ds.attrs["edge_channels"]                      # [[lo, hi], ...] keV, one per end
    assert len(runs) == 2 and runs[0][0] == pytest.approx(0.5) and runs[1][1] == pytest.approx(1.4)
    assert float(abs(mx.where(~ds.observed_X, 0)).max()) == 0.0
    for data, mu in ((ds.X.where(ds.observed_X, 0), mx), (ds.Y, my.where(ds.observed_Y, 0))):
        n, m = float(data.sum()), float(mu.sum())
        assert abs(n - m) < 5 * np.sqrt(m) + 0.01 * m, (n, m)
    # and so do the images of X
    img, ref = ds.X.sum("energy_coarse").values, mx.sum("energy_coarse").values
    assert np.corrcoef(img.ravel(), ref.ravel())[0, 1] > 0.98
    assert not bool(ds.observed_Y.values[xf.io.RESOLVE_PIXEL_MAP == 12][0])


def test_science_out_example_runs(tmp_path, capsys):
    """examples/science_out.py end to end on a small cube: velocity map, spectrum, fit."""
    import importlib.util

    path = os.path.join(HERE, "..", "examples", "science_out.py")
    spec = importlib.util.spec_from_file_location("science_out", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--scale", "0.25", "--draws", "2", "--out", str(tmp_path)])
    assert out["velocity"].velocity.notnull().any()
    assert 6.6 < out["fit"][2] < 6.72 and (out["fit_err"] > 0).all()
    assert sorted(os.listdir(tmp_path)) == ["bright.arf", "bright.pha", "bright.rmf",
                                            "cube.fits"]
    assert "region spectrum: line at" in capsys.readouterr().out
