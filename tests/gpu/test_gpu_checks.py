"""benchmarks/gpu_checks.py: its checks pass on a CUDA device and skip cleanly without one (the GPU tier)."""

import subprocess
import sys

import pytest
import torch

from testkit import ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: benchmarks/gpu_checks.py runs its checks instead")
def test_gpu_checks_skip_cleanly_without_a_gpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_checks.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "no CUDA device" in proc.stdout

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_checks_pass_on_a_gpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_checks.py")], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
