"""xfusion: hyperspectral image fusion for X-ray astronomy (HIFReD, Lascar et al. 2025).

>>> import xfusion as xf
>>> ds = xf.simulate.scenario("gaussian_1kev_rebin", seed=0, scale=0.2)
>>> Z = ds.hifred.fuse(regularizer="lrs")            # doctest: +SKIP
>>> xf.metrics.report(Z, ds.Z_true)                   # doctest: +SKIP
"""

from . import accessor as _accessor  # noqa: F401  (registers ds.hifred)
from . import kernels, operators, regions, sky, testing
from ._store import OutputError, OutputExistsError
from .checkpoint import CheckpointError
from .fusion import FitWarning, RankWarning, fuse
from .model import forward, forward_model
from .options import OptionError
from .problem import (
    ProblemError,
    make_problem,
    open_problem,
    rebin_factors,
    save_problem,
    validate,
    with_background,
)
from .uncertainty import bootstrap, region_error, uncertainty

__version__ = "0.1.0"

__all__ = [
    "ProblemError", "make_problem", "validate", "open_problem", "save_problem",
    "rebin_factors", "fuse", "RankWarning", "FitWarning", "OutputError", "OutputExistsError",
    "OptionError", "CheckpointError", "forward", "forward_model", "kernels", "operators", "testing",
    "sky", "regions",
    "uncertainty", "bootstrap", "region_error", "with_background",
]


def __getattr__(name):
    # Submodules written alongside (simulate, metrics, io, ...) load on first use.
    import importlib

    if name in ("simulate", "metrics", "baselines", "starlet", "io", "regularizers", "solver",
                "goodness", "lines"):
        return importlib.import_module(f".{name}", __name__)
    if name == "cluster":  # xf.cluster(kind, ...): dask / dask-jobqueue clusters (scale.py)
        return importlib.import_module(".scale", __name__).cluster
    raise AttributeError(f"module 'xfusion' has no attribute {name!r}")
