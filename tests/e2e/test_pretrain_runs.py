"""Pretraining runs to their end on CPU: the three setups with falling loss, decay branches equal to the
run trained to that budget, compiled blocks, continued pretraining from an export."""

from pathlib import Path

import pytest
import torch

from encoderlab.model import export_hf, import_hf, load_checkpoint
from encoderlab.training import pretrain
from testkit import records, tiny, weights


def assert_loss_falls(run_dir: Path, phase: str) -> None:
    losses = [r["loss"] for r in records(run_dir) if r["phase"] == phase]
    assert len(losses) >= 3 and losses[-1] < 0.9 * losses[0], (phase, losses)

def test_clm_mlm_and_two_stage_train_with_falling_loss(tmp_path):
    for name, phases in (("tiny-clm", ["clm"]), ("tiny-mlm40", ["mlm40"]), ("tiny-clm-mlm40", ["clm", "mlm40"])):
        final = pretrain(tiny(name, tmp_path / name), progress=False)
        assert final == tmp_path / name / "checkpoints" / "step-000060"
        for phase in phases:
            assert_loss_falls(tmp_path / name, phase)
        assert load_checkpoint(final).config.name == "tiny"  # a plain model checkpoint too

def test_continued_pretraining_from_an_exported_and_imported_checkpoint(tmp_path):
    clm = pretrain(tiny("tiny-clm", tmp_path / "clm"), progress=False)
    export_hf(clm, tmp_path / "hf", "llama")
    import_hf(tmp_path / "hf", tmp_path / "imported", mask_token_id=3)
    config = tiny("tiny-clm-dec-mlm40", tmp_path / "cpt", f"init_from={tmp_path / 'imported'}")
    final = pretrain(config, progress=False)
    assert_loss_falls(tmp_path / "cpt", "mlm40")
    first = records(tmp_path / "cpt")[0]
    assert first["lr"] < config.schedule.lr  # CPT re-warms up with its own schedule
    assert not torch.equal(weights(final)["embed.weight"], weights(clm)["embed.weight"])

def test_decay_branch_equals_the_run_trained_to_that_budget(tmp_path):
    schedule = ["schedule.warmup_steps=6", "schedule.decay_steps=12"]
    long = tiny("tiny-mlm40", tmp_path / "long", *schedule, "checkpoint_steps=[24]")
    pretrain(long, progress=False)
    stable = tmp_path / "long" / "checkpoints" / "step-000024"
    branch = tiny("tiny-mlm40", tmp_path / "branch", *schedule, "phases.0.steps=36", f"branch_from={stable}")
    short = tiny("tiny-mlm40", tmp_path / "short", *schedule, "phases.0.steps=36")
    branch_final, short_final = pretrain(branch, progress=False), pretrain(short, progress=False)
    assert records(tmp_path / "branch")[0]["step"] > 24  # the branch ran only the last 12 steps
    for name, tensor in weights(short_final).items():
        torch.testing.assert_close(weights(branch_final)[name], tensor, rtol=0, atol=0)

def test_compiled_blocks_train_like_eager_ones(tmp_path):
    common = ["phases.0.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=1", "log_every=1"]
    pretrain(tiny("tiny-mlm40", tmp_path / "eager", *common), progress=False)
    pretrain(tiny("tiny-mlm40", tmp_path / "compiled", *common, "compile=true"), progress=False)
    eager, compiled = records(tmp_path / "eager"), records(tmp_path / "compiled")
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], rel=1e-4)
