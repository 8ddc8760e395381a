"""The ``xfusion`` command line: demo, simulate, fuse, metrics and its error handling."""

import json
import os

import pytest
import xarray as xr

from xfusion.cli import PLOTS, main

ROWS = ("fused", "X only", "Y only")
METRICS = ("NMSE", "aSAM", "acSSIM", "ERGAS")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--scale", "0.2", "--max-iter", "30", "--out", str(out), "--quiet"]) == 0
    return out


def test_demo_writes_everything(demo_out, capsys):
    for name in ("problem.zarr", "fused.zarr", "metrics.json"):
        assert (demo_out / name).exists(), name
    doc = json.loads((demo_out / "metrics.json").read_text())
    assert set(doc["metrics"]) == set(ROWS)
    for row in ROWS:
        assert set(doc["metrics"][row]) == set(METRICS)
        assert isinstance(doc["metrics"][row]["NMSE"], float)
    assert doc["solver"]["regularizer"] == "lrs"
    assert 1 <= doc["solver"]["iterations"] <= 30
    assert doc["ergas_ratio"] == pytest.approx(1 / 3)
    assert doc["problem"] == {"scenario": "gaussian_1kev_rebin", "seed": 0, "scale": 0.2}
    pytest.importorskip("matplotlib")
    for png in PLOTS.values():
        p = demo_out / png
        assert p.exists() and p.stat().st_size > 1000, png
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_stores_round_trip(demo_out):
    import xarray as xr

    import xfusion as xf

    ds = xf.open_problem(demo_out / "problem.zarr")
    Z = xr.open_zarr(demo_out / "fused.zarr")["Z"]
    assert Z.dims == ("energy", "y", "x")
    assert Z.shape == ds.Z_true.shape
    assert isinstance(Z.attrs["objective_history"], list)
    assert len(Z.attrs["objective_history"]) >= Z.attrs["iterations"]


def test_simulate_fuse_metrics(tmp_path, capsys):
    prob, fused, js = tmp_path / "p.zarr", tmp_path / "f.zarr", tmp_path / "m.json"
    assert main(["simulate", "gaussian_1kev", "--scale", "0.1", "--seed", "3",
                 "--out", str(prob)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["fuse", str(prob), "--out", str(fused), "--regularizer", "none",
                 "--max-iter", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "iterations" in out and "X only" in out and "NMSE" in out
    assert "fit: C-statistic vs its expectation" in out   # the goodness of fit, per instrument
    assert main(["metrics", str(fused), str(prob), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "fused" in out and "Y only" in out
    doc = json.loads(js.read_text())
    assert set(doc["metrics"]) == set(ROWS)
    assert doc["ergas_ratio"] == 1.0  # no spatial rebinning in gaussian_1kev
    assert doc["solver"]["regularizer"] == "none"
    # simulate again over the same store: refused, then replaced with --overwrite
    assert main(["simulate", "gaussian_1kev", "--scale", "0.1", "--out", str(prob), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["simulate", "gaussian_1kev", "--scale", "0.1", "--out", str(prob), "-q",
                 "--overwrite"]) == 0


def test_fuse_checkpoint_and_resume(tmp_path, capsys):
    prob, ck = tmp_path / "p.zarr", tmp_path / "ck.zarr"
    assert main(["simulate", "gaussian_1kev_rebin", "--scale", "0.1", "--out", str(prob)]) == 0
    assert main(["fuse", str(prob), "--out", str(tmp_path / "a.zarr"), "--regularizer", "none",
                 "--max-iter", "4", "--checkpoint", str(ck), "-q"]) == 0
    assert ck.exists()
    assert main(["fuse", str(prob), "--out", str(tmp_path / "b.zarr"), "--regularizer", "none",
                 "--max-iter", "6", "--resume", str(ck), "-q"]) == 0


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_unknown_scenario_exits_2(tmp_path, capsys):
    assert main(["simulate", "no_such_scenario", "--out", str(tmp_path / "p.zarr")]) == 2
    _one_line_error(capsys, "no_such_scenario", "gaussian_1kev_rebin")
    assert main(["demo", "--scenario", "gaussian_2kev", "--out", str(tmp_path / "d"), "-q"]) == 2
    _one_line_error(capsys, "gaussian_2kev")


def test_missing_file_exits_2(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.zarr")
    assert main(["fuse", missing, "--out", str(tmp_path / "f.zarr")]) == 2
    _one_line_error(capsys, "nowhere.zarr")
    assert main(["metrics", missing, missing]) == 2
    _one_line_error(capsys, "nowhere.zarr")


def test_bad_store_and_refusals_exit_2(tmp_path, capsys):
    not_zarr = tmp_path / "notes"
    not_zarr.mkdir()
    (not_zarr / "keep.txt").write_text("precious")
    # a directory that is not a Zarr store is neither read as a problem nor overwritten
    assert main(["fuse", str(not_zarr), "--out", str(tmp_path / "f.zarr")]) == 2
    _one_line_error(capsys, "notes")
    assert main(["simulate", "gaussian_1kev", "--scale", "0.1", "--out", str(not_zarr)]) == 2
    _one_line_error(capsys, "not a store written by xfusion")
    assert (not_zarr / "keep.txt").read_text() == "precious"


def test_invalid_problem_exits_2(tmp_path, capsys):
    import xfusion as xf

    ds = xf.simulate.scenario("gaussian_1kev_rebin", scale=0.1)
    bad = ds.assign(X=ds.X.copy(data=-ds.X.values - 1))
    path = tmp_path / "bad.zarr"
    bad.to_zarr(path, consolidated=False)
    assert main(["fuse", str(path), "--out", str(tmp_path / "f.zarr"), "-q"]) == 2
    _one_line_error(capsys, "X")


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "xfusion" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


def test_plotting_functions_take_axes(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    import numpy as np

    from xfusion import plotting

    rng = np.random.default_rng(0)
    cube = rng.gamma(2.0, 1.0, (20, 9, 9))
    fig, axs = plt.subplots(1, 4)
    plotting.amplitude_maps({"a": cube, "b": cube * 2}, axs[:2])
    plotting.spectra({"truth": cube}, [(1, 1)], axs[2], energy=np.linspace(0.5, 1.4, 20))
    plotting.objective_curve([-3.0, -4.0, -4.5, -4.5], axs[3])  # negative: relative axis
    plt.close(fig)
    (b, d) = plotting.pick_pixels(cube.sum(0))
    assert cube.sum(0)[b] == cube.sum(0).max()
    p = tmp_path / "sam.png"
    plotting.sam_map(rng.uniform(0, 1, (9, 9)), str(p))
    assert p.exists()
    with pytest.raises(ValueError, match="dims"):
        plotting.amplitude_maps({"a": cube[0]}, str(tmp_path / "x.png"))


def test_interrupt_exits_130_with_resume_hint(tmp_path, capsys, monkeypatch):
    import xfusion.fusion

    prob, ck = tmp_path / "p.zarr", tmp_path / "ck.zarr"
    assert main(["simulate", "gaussian_1kev_rebin", "--scale", "0.1", "--out", str(prob)]) == 0
    ck.mkdir()  # as if a checkpoint had been written before the interruption

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(xfusion.fusion, "fuse", interrupted)
    assert main(["fuse", str(prob), "--out", str(tmp_path / "f.zarr"),
                 "--checkpoint", str(ck)]) == 130
    _one_line_error(capsys, "interrupted", f"--resume {ck}")


def test_rank_argument_takes_a_number_or_auto():
    import argparse

    from xfusion.cli import _rank_arg

    assert _rank_arg("auto") == "auto" and _rank_arg("12") == 12
    for bad in ("0", "-3", "ten", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="rank"):
            _rank_arg(bad)


def test_uncertainty_export_and_plot_commands(tmp_path, capsys):
    """From a fused store to bootstrap errors, a FITS cube, a region spectrum, a line map and
    the plots, each step one command."""
    from astropy.io import fits

    p, f, e = (str(tmp_path / n) for n in ("p.zarr", "f.zarr", "e.zarr"))
    assert main(["simulate", "gaussian_6kev", "--scale", "0.15", "--out", p, "-q"]) == 0
    assert main(["fuse", p, "--out", f, "--regularizer", "lrs", "--rank", "3", "-q",
                 "--max-iter", "30"]) == 0
    assert main(["uncertainty", p, f, "--out", e, "--draws", "3", "-q"]) == 0
    assert "3 bootstrap refits" in capsys.readouterr().out
    err = xr.open_zarr(e)
    assert err["Z_draws"].sizes["draw"] == 3 and (err["Z_err"] >= 0).all()
    cube, pha, lm = (str(tmp_path / n) for n in ("cube.fits", "s.pha", "lm.fits"))
    assert main(["export", f, "--errors", e, "--fits", cube, "--spectrum", pha,
                 "--box", "1:4,1:4", "--line-map", lm, "--line", "6.7"]) == 0
    with fits.open(cube) as h:
        assert h[0].data.shape == tuple(xr.open_zarr(f)["Z"].shape)
    with fits.open(pha) as h:
        assert "STAT_ERR" in h["SPECTRUM"].columns.names
    with fits.open(lm) as h:
        assert {"VELOCITY", "VELOCITY"[:8]} <= {x.name for x in h}
        assert h["VELOCITY"].header["CTYPE1"].startswith("RA")
    capsys.readouterr()
    # existing outputs are refused without --overwrite, in one line
    assert main(["export", f, "--fits", cube]) == 2
    _one_line_error(capsys, "exists", "overwrite")
    assert main(["export", f, "--spectrum", pha, "--overwrite"]) == 2
    _one_line_error(capsys, "exactly one region")
    out = tmp_path / "plots"
    assert main(["plot", f, "--problem", p, "--errors", e, "--line", "6.7", "--pixel", "2,2",
                 "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["amplitude_maps.png", "error_maps.png", "sam_map.png",
                                       "spectra.png", "velocity_maps.png"]
    assert main(["plot", f, "--at", "1,2", "--out", str(out)]) == 2     # not in the field
    _one_line_error(capsys, "--at 1,2 falls outside the image")
