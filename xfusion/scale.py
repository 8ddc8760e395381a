"""Scaling out. ``xf.cluster``: a dask cluster for :func:`xfusion.fuse`, on this machine or
through a batch system (SLURM, PBS) with ``dask-jobqueue``.

>>> cluster = xf.cluster("slurm", cores=32, memory="128GB", walltime="04:00:00",
...                      account="myproj", queue="regular")             # doctest: +SKIP
>>> print(cluster.job_script())                                         # doctest: +SKIP
>>> cluster.scale(jobs=4)                                               # doctest: +SKIP
>>> with Client(cluster) as client:                                     # doctest: +SKIP
...     Z = xf.fuse(xf.open_problem("big.zarr", chunks={"energy": 128}),
...                 client=client, output="fused.zarr")

The keyword names are dask-jobqueue's current ones (≥ 0.8): ``cores``, ``memory``,
``processes``, ``walltime``, ``queue``, ``account``, ``job_extra_directives``,
``job_script_prologue``, ``worker_extra_args``, ``local_directory``, ``log_directory``.
"""

from __future__ import annotations

__all__ = ["cluster"]

_KINDS = ("local", "slurm", "pbs")


def cluster(kind: str = "local", **kwargs):
    """Start a dask cluster of the given ``kind``.

    Parameters
    ----------
    kind : {"local", "slurm", "pbs"}
        ``"local"``: :class:`distributed.LocalCluster` (keywords ``n_workers``,
        ``threads_per_worker``, ``memory_limit``, ...; without them it is sized to the machine).
        ``"slurm"`` / ``"pbs"``: :class:`dask_jobqueue.SLURMCluster` / ``PBSCluster``; nothing
        is submitted until ``cluster.scale(...)`` or ``cluster.adapt(...)``.
    **kwargs
        Passed to the cluster class. For the batch systems ``cores`` and ``memory`` (per job)
        are required by dask-jobqueue; ``processes`` (workers per job) defaults to about
        √cores there. xfusion's kernels are single-threaded per chunk, so several processes
        per job with few threads each work well (docs/scaling.md).

    Returns
    -------
    distributed.deploy.Cluster
        Use it with ``distributed.Client(cluster)`` and pass the client to :func:`fuse`.
    """
    kind = str(kind).lower()
    if kind == "local":
        from distributed import LocalCluster

        return LocalCluster(**kwargs)
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    try:
        import dask_jobqueue
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"xf.cluster({kind!r}) needs dask-jobqueue: pip install "
                          f"'xfusion[hpc]' (or pip install dask-jobqueue)") from e
    if "cores" not in kwargs or "memory" not in kwargs:
        raise TypeError(f"xf.cluster({kind!r}) needs cores= and memory= (per job)")
    for old, new in (("job_extra", "job_extra_directives"), ("env_extra", "job_script_prologue"),
                     ("extra", "worker_extra_args"), ("project", "account")):
        if old in kwargs:
            raise TypeError(f"{old}= is dask-jobqueue's old name; use {new}=")
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    return cls(**kwargs)
