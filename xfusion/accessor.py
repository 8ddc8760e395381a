"""The ``.hifred`` Dataset accessor: thin, stateless hand-offs to the public functions."""

from __future__ import annotations

import xarray as xr

from .fusion import Regularizer

__all__ = ["HifredAccessor"]


@xr.register_dataset_accessor("hifred")
class HifredAccessor:
    """``ds.hifred.validate()``, ``ds.hifred.forward(Z)``, ``ds.hifred.fuse(...)``.

    Holds nothing but the Dataset; every method calls the function of the same name in
    :mod:`xfusion`.
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def validate(self):
        """See :func:`xfusion.validate`."""
        from .problem import validate

        return validate(self._ds)

    def forward(self, Z, spatial: str = "auto", background: bool = True):
        """See :func:`xfusion.forward`."""
        from .model import forward

        return forward(self._ds, Z, spatial=spatial, background=background)

    def fuse(self, regularizer: Regularizer = "w2d1d", **kwargs) -> xr.DataArray:
        """See :func:`xfusion.fuse` (same arguments)."""
        from .fusion import fuse

        return fuse(self._ds, regularizer, **kwargs)

    def save(self, path, overwrite: bool = False):
        """See :func:`xfusion.save_problem`."""
        from .problem import save_problem

        return save_problem(self._ds, path, overwrite=overwrite)
