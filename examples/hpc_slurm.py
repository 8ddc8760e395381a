"""Fuse a large problem on a SLURM cluster with dask-jobqueue (nothing here is site-specific
except the keywords passed to ``xf.cluster``; adapt queue / account / memory to your site).

    python examples/hpc_slurm.py problem.zarr fused.zarr --jobs 4
    python examples/hpc_slurm.py problem.zarr fused.zarr --dry-run   # print the job script

Each SLURM job runs ``processes`` dask workers; xfusion's kernels are single-threaded per
chunk, so several processes per job with a few threads each work well. The problem is read
lazily from Zarr in energy chunks of whole images, the iterate stays on the workers
(persisted every iteration), checkpoints and the result go to Zarr.
"""

import argparse

import xfusion as xf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("problem")
    ap.add_argument("output")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--regularizer", default="w2d1d")
    ap.add_argument("--energy-chunk", type=int, default=128)
    ap.add_argument("--dry-run", action="store_true", help="print the job script and stop")
    a = ap.parse_args()

    cluster = xf.cluster(
        "slurm",
        cores=32,                    # per job
        processes=8,                 # dask workers per job (4 threads each)
        memory="128GB",              # per job, split between its workers
        walltime="04:00:00",
        queue="regular",
        account="myproject",
        job_extra_directives=["--constraint=cpu"],
        job_script_prologue=["source ~/venvs/xfusion/bin/activate"],
        local_directory="$TMPDIR",   # spill space on the node
    )
    if a.dry_run:
        print(cluster.job_script())
        cluster.close()
        return
    from distributed import Client

    cluster.scale(jobs=a.jobs)
    with Client(cluster) as client:
        client.wait_for_workers(1)
        ds = xf.open_problem(a.problem, chunks={"energy": a.energy_chunk})
        Z = xf.fuse(ds, a.regularizer, client=client, output=a.output,
                    checkpoint=a.output + ".ckpt", checkpoint_every=50)
        print(Z.attrs["iterations"], "iterations, converged:", bool(Z.attrs["converged"]))
    cluster.close()


if __name__ == "__main__":
    main()
