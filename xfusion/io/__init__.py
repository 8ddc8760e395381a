"""Reading mission data: OGIP responses, event lists, PSFs, and assembling a fusion problem."""
from ._fits import FileFormatError
from .ogip import read_arf, read_rmf, rmf_extensions, write_arf, write_rmf

__all__ = ["FileFormatError", "read_arf", "read_rmf", "rmf_extensions", "write_arf", "write_rmf"]
