"""``xfusion assemble``: event lists and calibration files to a problem store, the same problem
as :func:`xfusion.io.from_files` gives."""

import numpy as np
import pytest

import xfusion as xf
from xfusion.cli import main

from .test_io_assemble import BAND, PITCH, VL, L, V, build, files  # noqa: F401 (fixture)

# the fixture's RMF reaches beyond 8 keV: its last channel is a band-edge channel
pytestmark = pytest.mark.filterwarnings("ignore:.*channels left out of the likelihood")


def _argv(f, out, *extra):
    return ["assemble", str(f["events_X"]), str(f["events_Y"]), "--rmf-x", str(f["rmf"]),
            "--arf-x", str(f["arf_X"]), "--arf-y", str(f["arf_Y"]), "--psf-y", str(f["psf"]),
            "--band", f"{BAND[0]},{BAND[1]}", "--n-energy", str(L), "--vl", str(VL),
            "--pixel-size", str(PITCH / V), "--out", str(out), *extra]


def test_assemble_writes_the_problem_from_files_gives(files, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "p.zarr"
    assert main(_argv(files, out)) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "X " in said and "roll" in said
    got, ref = xf.open_problem(out), build(files)
    for name in ("X", "Y", "response_X", "psf_Y", "arf_X", "arf_Y"):
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    np.testing.assert_array_equal(got.observed_Y, ref.observed_Y)
    np.testing.assert_array_equal(got.observed_X, ref.observed_X)  # band-edge channels
    assert not got.observed_X.values.all()
    assert got.attrs["wcs"] == ref.attrs["wcs"]
    assert got.X.attrs["exposure"] == ref.X.attrs["exposure"]


def test_assemble_passes_reader_options_and_exposure(files, tmp_path):  # noqa: F811
    out = tmp_path / "p.zarr"
    assert main(_argv(files, out, "--exposure-y", "1e4", "--option-y", "exclude_pixels=[12,0]",
                      "--option-x", "flag_mask=null")) == 0
    got = xf.open_problem(out)
    ref = build(files, options_Y={"exposure": 1e4, "exclude_pixels": [12, 0]},
                options_X={"flag_mask": None})
    np.testing.assert_array_equal(got.Y.values, ref.Y.values)
    assert got.Y.attrs["exposure"] == 1e4
    assert int((~got.observed_Y.values).sum()) == 2
    assert main(_argv(files, tmp_path / "all.zarr", "--edge-tolerance", "0")) == 0
    assert "observed_X" not in xf.open_problem(tmp_path / "all.zarr").coords


def test_assemble_refuses_bad_options(files, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit):  # argparse: usage error
        main(_argv(files, tmp_path / "p.zarr", "--option-x", "pattern_max"))
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(_argv(files, tmp_path / "p.zarr", "--exposure-y", "10",
                      "--option-y", "exposure=20")) == 2
    assert "both given" in capsys.readouterr().err
    assert not (tmp_path / "p.zarr").exists()


def test_assemble_names_a_missing_file_and_a_bad_band(files, tmp_path, capsys):  # noqa: F811
    argv = _argv(files, tmp_path / "p.zarr")
    argv[argv.index("--arf-y") + 1] = str(tmp_path / "nope.arf")
    assert main(argv) == 2
    assert "--arf-y: no such file" in capsys.readouterr().err
    argv = _argv(files, tmp_path / "p.zarr")
    argv[argv.index("--band") + 1] = "2.0"
    assert main(argv) == 2
    assert "--band must be 2 comma-separated numbers" in capsys.readouterr().err
    argv = _argv(files, tmp_path / "p.zarr")
    argv[argv.index("--pixel-size") + 1] = str(PITCH / 4.5)
    assert main(argv) == 2
    assert "is not an integer" in capsys.readouterr().err



def test_assemble_folds_an_exposure_map_into_xs_area(files, tmp_path):  # noqa: F811
    from .test_io_assemble import array_wcs

    wz = xf.io.subdivide_wcs(array_wcs(), V)
    img = np.full((6 * V, 6 * V), 0.9 * 4e4)
    img[:, : 3 * V] = 0.5 * 4e4  # half the field exposed half as long
    emap = xf.io.write_expmap(tmp_path / "pn_expmap.fits", img, wz)
    out = tmp_path / "p.zarr"
    assert main(_argv(files, out, "--expmap-x", str(emap))) == 0
    got = xf.open_problem(out)
    ref = build(files, expmap_X=str(emap))
    np.testing.assert_array_equal(got.arf_X.values, ref.arf_X.values)
    assert got.arf_X.dims == ("energy", "y", "x")
    np.testing.assert_allclose(got.arf_X.values[0, 0, [0, -1]], [500 * 0.5, 500 * 0.9],
                               rtol=1e-5)


def test_assemble_reads_background_spectra(files, tmp_path):  # noqa: F811
    pn = xf.io.write_pha(tmp_path / "pn_bkg.pha", np.full(2400, 3.0), 2e4, backscal=100.0)
    rsl = xf.io.write_pha(tmp_path / "rsl_bkg.pha", np.full(24000, 0.7), 9e4, backscal=1.0)
    out = tmp_path / "p.zarr"
    assert main(_argv(files, out, "--background-x", str(pn), "--background-option-x",
                      "backscal=25", "--background-y", str(rsl), "--background-option-y",
                      "pixels=35")) == 0
    got = xf.open_problem(out)
    ref = build(files, background_X=str(pn), background_options_X={"backscal": 25},
                background_Y=str(rsl), background_options_Y={"pixels": 35})
    for name in ("background_X", "background_Y"):
        np.testing.assert_array_equal(got[name].values, ref[name].values)
    assert float(got.background_X.max()) > 0
