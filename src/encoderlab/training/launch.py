"""Multi-node launch: one ``torchrun`` per node of a scheduler job, joined by a c10d rendezvous.

The scheduler starts this module once per node (SLURM through submitit with one task per node,
or submitit's local executor for one node). Each copy reads the job's nodes from the job
environment, points torchrun's c10d rendezvous at the job's first node and runs the command
under torchrun there; torchrun then assigns ranks and world size across nodes exactly as it does
on one node, and the training code (``training.distributed``) needs nothing else.

    python -m encoderlab.training.launch --nproc-per-node 8 -- -m encoderlab.cli pretrain run.yaml
"""

from __future__ import annotations

import argparse
import subprocess
import sys

DEFAULT_PORT = 29500


def torchrun_command(*, nnodes: int, nproc_per_node: int, rendezvous_host: str, rendezvous_id: str, port: int,
                     command: list[str]) -> list[str]:
    """The torchrun invocation run on every node of a job of ``nnodes`` nodes."""
    if nnodes < 1 or nproc_per_node < 1:
        raise ValueError(f"launch: nnodes and nproc_per_node must be >= 1, got {nnodes} and {nproc_per_node}")
    if not command:
        raise ValueError("launch: no command to run (expected e.g. -- -m encoderlab.cli pretrain RUN)")
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint={rendezvous_host}:{port}", f"--rdzv-id={rendezvous_id}",
        *command,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoderlab.training.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc-per-node", type=int, required=True, help="processes (GPUs) per node")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="rendezvous port on the first node")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then what torchrun runs (e.g. -m MODULE ARGS)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    import submitit

    try:
        job = submitit.JobEnvironment()
    except RuntimeError as err:
        raise SystemExit(f"launch: not inside a SLURM or submitit job ({err}); on one machine use torchrun directly")
    full = command_for_job(job, args.nproc_per_node, args.port, command)
    print(f"[launch] node {job.node} of {job.num_nodes}, job {job.job_id}: {' '.join(full)}", flush=True)
    return subprocess.call(full)


def command_for_job(job, nproc_per_node: int, port: int, command: list[str]) -> list[str]:
    """The torchrun command for this node of ``job`` (a ``submitit.JobEnvironment``)."""
    return torchrun_command(nnodes=job.num_nodes, nproc_per_node=nproc_per_node, rendezvous_host=job.hostnames[0],
                            rendezvous_id=str(job.job_id), port=port, command=command)


if __name__ == "__main__":
    sys.exit(main())
