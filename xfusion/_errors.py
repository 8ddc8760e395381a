"""Exceptions shared by modules that must not import each other.

:class:`ProblemError` is raised by the Dataset schema (:mod:`xfusion.problem`) and by the
rebinning factors (:mod:`xfusion.operators.rebin`, which does not import the schema); its
public home is :mod:`xfusion.problem` (and ``xf.ProblemError``).
"""

from __future__ import annotations

__all__ = ["ProblemError"]


class ProblemError(ValueError):
    """A fusion problem that cannot be fused as given; the message names the variable and fault."""


ProblemError.__module__ = "xfusion.problem"  # its public home, as shown in tracebacks
