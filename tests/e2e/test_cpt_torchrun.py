"""cpt under torchrun: two processes (gloo) follow the single-process run."""

import pytest
import torch

from encoderlab.model import load_checkpoint
from testkit import records


def test_cpt_through_torchrun_follows_the_single_process_run(qwen3, tmp_path):
    """Two gloo processes (FSDP2) plan the run, the first writes its start, and both train it: the
    losses and weights of the one-process run."""
    import os
    import subprocess
    import sys

    decoder, shards = qwen3
    args = ["cpt", str(decoder), "--data", str(shards), "--steps", "4", "--seq-len", "128", "--batch-tokens", "1024",
            "--micro-batch-size", "4", "--no-progress", "--set", "log_every=1", "--set", "parallelism=fsdp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for runner, out in (([], "one"), (["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"], "two")):
        proc = subprocess.run([sys.executable, *runner, "-m", "encoderlab.cli", *args, "--output", str(tmp_path / out)],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert proc.stdout.count("final checkpoint:") == 1  # the first process reports
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["world_size"] for r in two] == [2] * 4
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    a, b = (load_checkpoint(tmp_path / d / "checkpoints" / "step-000004").state_dict() for d in ("one", "two"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
