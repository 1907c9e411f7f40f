"""Pretraining runs on CPU: the four setups, decay branches, resume, bad input."""


import pytest
import torch

from encoderlab.config import ConfigError
from encoderlab.model import CheckpointError, load_checkpoint, save_checkpoint
from encoderlab.training import TrainingError, pretrain
from encoderlab.training.distributed import DistributedContext
from encoderlab.training.loop import Trainer
from testkit import records, tiny, weights


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny("tiny-clm", tmp_path / "run", "checkpoint_every=10", "log_every=3")
    trainer = Trainer(config, DistributedContext(), progress=False)
    objective = trainer.objectives[0]

    class Poisoned:  # the real objective, with a NaN loss from step 24 on
        num_targets = staticmethod(objective.num_targets)

        def __call__(self, model, batch, step):
            out = objective(model, batch, step)
            if step >= 24:
                out.loss_sum = out.loss_sum * float("nan")
            return out

    trainer.objectives[0] = Poisoned()
    with pytest.raises(TrainingError, match=r"non-finite loss.*by step 27.*step-000020"):
        trainer.run()
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step-000020"
    assert all(torch.isfinite(t).all() for t in weights(checkpoints / "step-000020").values())


def test_resume_and_branch_refuse_what_they_cannot_continue(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(tiny("tiny-clm", tmp_path / "empty"), resume=True, progress=False)
    first = pretrain(tiny("tiny-clm", tmp_path / "run", "phases.0.steps=10", "schedule.warmup_steps=2",
                          "schedule.decay_steps=2"), progress=False)
    with pytest.raises(ConfigError, match=r"cannot resume with a changed run config \(differs in: schedule\)"):
        pretrain(tiny("tiny-clm", tmp_path / "run", "phases.0.steps=10", "schedule.warmup_steps=2",
                      "schedule.decay_steps=2", "schedule.lr=0.01"), resume=True, progress=False)
    model_only = save_checkpoint(load_checkpoint(first), tmp_path / "model-only")
    with pytest.raises(CheckpointError, match="without training state"):
        pretrain(tiny("tiny-clm", tmp_path / "b1", f"branch_from={model_only}"), progress=False)
    with pytest.raises(ConfigError, match="branch point step 10 is not before the decay"):
        pretrain(tiny("tiny-clm", tmp_path / "b2", "phases.0.steps=11", "schedule.warmup_steps=2",
                      "schedule.decay_steps=5", f"branch_from={first}"), progress=False)
    with pytest.raises(CheckpointError, match=r"different model shape \(num_layers: checkpoint 2 vs run 3\)"):
        pretrain(tiny("tiny-clm", tmp_path / "b3", "model.num_layers=3", f"init_from={first}"), progress=False)
    with pytest.raises(CheckpointError, match="not an encoderlab checkpoint|no config.json"):
        pretrain(tiny("tiny-clm", tmp_path / "b4", f"init_from={tmp_path}"), progress=False)


def test_tensorboard_logging_or_a_clear_error(tmp_path):
    config = tiny("tiny-clm", tmp_path / "tb", "phases.0.steps=6", "schedule.warmup_steps=1", "schedule.decay_steps=1",
                  "tensorboard=true")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs the `tensorboard` package"):
            pretrain(config, progress=False)
        return
    pretrain(config, progress=False)
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))


def test_loss_chunk_size_changes_memory_not_the_training(tmp_path):
    common = ["phases.0.steps=4", "phases.1.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=1", "log_every=1"]
    pretrain(tiny("tiny-clm-mlm40", tmp_path / "default", *common), progress=False)
    pretrain(tiny("tiny-clm-mlm40", tmp_path / "small", *common, "loss_chunk_size=16"), progress=False)
    default, small = records(tmp_path / "default"), records(tmp_path / "small")
    assert len(default) == 8 and [r["loss"] for r in small] == pytest.approx([r["loss"] for r in default], rel=1e-5)
    with pytest.raises(ConfigError, match="loss_chunk_size must be a positive"):
        tiny("tiny-clm", tmp_path / "bad", "loss_chunk_size=0")


def test_sparse_head_from_the_run_config_changes_compute_not_the_training(tmp_path):
    """sparse_head=false is the authors' dense MLM head (logits everywhere, unselected ones ignored):
    the same losses, and the MFU's head fraction counts the work the dense head does."""
    common = ["phases.0.steps=4", "phases.1.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=1", "log_every=1"]
    pretrain(tiny("tiny-clm-mlm40", tmp_path / "sparse", *common), progress=False)
    dense_config = tiny("tiny-clm-mlm40", tmp_path / "dense", *common, "sparse_head=false")
    assert dense_config.sparse_head is False
    pretrain(dense_config, progress=False)
    sparse, dense = records(tmp_path / "sparse"), records(tmp_path / "dense")
    assert [r["loss"] for r in dense] == pytest.approx([r["loss"] for r in sparse], rel=1e-5)
    assert [r["head_fraction"] for r in sparse] == [1.0] * 4 + [0.4] * 4
    assert [r["head_fraction"] for r in dense] == [1.0] * 8
    with pytest.raises(ConfigError, match="sparse_head=false applies to MLM phases only"):
        tiny("tiny-mlm40", tmp_path / "bad", "phases.0.objective=mntp", "sparse_head=false")
    with pytest.raises(ConfigError, match="sparse_head"):
        tiny("tiny-mlm40", tmp_path / "bad", "sparse_head=maybe")


def test_a_completed_run_keeps_its_declared_checkpoints_and_drops_the_rolling_one(tmp_path):
    """A rolling checkpoint serves resumption only: a study's finished run kept one (step-000133)
    beside the checkpoints it declared. Once the run is complete it goes (step 6 here)."""
    from encoderlab.training.checkpoint import complete_checkpoints

    short = ["phases.0.steps=8", "schedule.warmup_steps=1", "schedule.decay_steps=2", "checkpoint_every=3",
             "checkpoint_steps=[4]"]
    final = pretrain(tiny("tiny-clm", tmp_path / "run", *short), progress=False)
    assert [p.name for p in complete_checkpoints(final.parent)] == ["step-000004", "step-000008"]
