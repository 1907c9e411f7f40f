"""Two-stage runs branch from the CLM run's stable checkpoint instead of retraining the CLM prefix."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from encoderlab.config import ConfigError
from encoderlab.study import load_study
from encoderlab.study.plan import pretrain_config
from encoderlab.study.runner import plan_study
from encoderlab.training import PretrainConfig, apply_overrides, pretrain, run_preset


def tiny(name: str, out: Path, *overrides: str) -> PretrainConfig:
    return PretrainConfig.from_dict(apply_overrides(run_preset(name).to_dict(), [f"output_dir={out}", *overrides]))


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def test_branched_two_stage_run_equals_the_from_scratch_two_stage_run(tmp_path):
    # CLM 60 steps keeps its stable checkpoint at 30; CLM 30 -> MLM-40 30 branches from it
    short = ["schedule.warmup_steps=2", "schedule.decay_steps=4"]
    clm = tiny("tiny-clm", tmp_path / "clm", "phases.0.steps=16", *short, "checkpoint_steps=[8]")
    pretrain(clm, progress=False)
    stable = tmp_path / "clm" / "checkpoints" / "step-000008"
    two_stage = ["phases.0.steps=8", "phases.1.steps=8", *short]
    branched = tiny("tiny-clm-mlm40", tmp_path / "branched", *two_stage, f"branch_from={stable}")
    scratch = tiny("tiny-clm-mlm40", tmp_path / "scratch", *two_stage)
    assert [p.steps for p in branched.phases] == [8, 8]
    branched_final, scratch_final = pretrain(branched, progress=False), pretrain(scratch, progress=False)
    metrics = (tmp_path / "branched" / "metrics.jsonl").read_text().splitlines()
    assert '"step": 8,' not in metrics[0] and all('"phase": "mlm40"' in line for line in metrics)  # MLM steps only
    expected = weights(scratch_final)
    got = weights(branched_final)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0)
    # the optimizer state came with the branch: the final optimizer states are identical too
    a = torch.load(branched_final / "optimizer.pt", weights_only=True)["state"]
    b = torch.load(scratch_final / "optimizer.pt", weights_only=True)["state"]
    for key in b:
        for field, value in b[key].items():
            torch.testing.assert_close(a[key][field], value, rtol=0, atol=0)


def test_branch_from_a_decayed_or_foreign_checkpoint_is_refused_before_training(tmp_path):
    short = ["schedule.warmup_steps=2", "schedule.decay_steps=4"]
    clm = tiny("tiny-clm", tmp_path / "clm", "phases.0.steps=16", *short, "checkpoint_steps=[8, 14]")
    final = pretrain(clm, progress=False)
    decayed = tmp_path / "clm" / "checkpoints" / "step-000014"  # decay starts at step 12
    with pytest.raises(ConfigError, match=r"branches from step 14 of run 'tiny-clm', a decayed checkpoint"):
        pretrain(tiny("tiny-clm-mlm40", tmp_path / "b1", "phases.0.steps=14", "phases.1.steps=10", *short,
                      f"branch_from={decayed}"), progress=False)
    with pytest.raises(ConfigError, match="not before the decay"):
        pretrain(tiny("tiny-clm-mlm40", tmp_path / "b2", "phases.0.steps=8", "phases.1.steps=8", *short,
                      f"branch_from={final}"), progress=False)
    mlm = tiny("tiny-mlm40", tmp_path / "mlm", "phases.0.steps=16", *short, "checkpoint_steps=[8]")
    pretrain(mlm, progress=False)
    with pytest.raises(ConfigError, match=r"first 8 steps are not the phases of its parent 'tiny-mlm40'"):
        pretrain(tiny("tiny-clm-mlm40", tmp_path / "b3", "phases.0.steps=8", "phases.1.steps=8", *short,
                      f"branch_from={tmp_path / 'mlm/checkpoints/step-000008'}"), progress=False)
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b3").exists()  # nothing written


SPEC = """
name: branching
runs:
  - {name: CLM, preset: tiny-clm}
  - {name: MLM, preset: tiny-mlm40}
  - {name: CLM30-MLM30, preset: tiny-clm-mlm40, branch: {run: CLM, step: 30}}
  - {name: CLM20-MLM40, preset: tiny-clm-mlm40, branch: {run: CLM, step: 20},
     overrides: [phases.0.steps=20, phases.1.steps=40]}
evaluation: {tasks: [toy-sentiment], lrs: [1.0e-3], seeds: [0], max_steps: 3}
"""


def test_study_counts_branches_once_and_keeps_their_checkpoints(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out"))
    plan = plan_study(spec)
    steps = {r["run"]: r["steps"] for r in plan["pretraining_runs"]}
    assert steps == {"CLM": 60, "MLM": 60, "CLM30-MLM30": 30, "CLM20-MLM40": 40}
    assert plan["pretraining_steps"] == 190
    assert pretrain_config(spec, spec.runs[0], None).checkpoint_steps == [20, 30]  # exactly what branches need
    assert pretrain_config(spec, spec.runs[1], None).checkpoint_steps == []


@pytest.mark.parametrize("change, message", [
    ('branch: {run: CLM, step: 30}}', None),
    ('branch: {run: CLM, step: 30}}|branch: {run: CLM, step: 55}}',
     r"run 'CLM30-MLM30'.*step 55 of run 'CLM', a decayed checkpoint"),
    ('branch: {run: CLM, step: 30}}|branch: {run: MLM, step: 30}}',
     r"run 'CLM30-MLM30'.*first 30 steps are not the phases of its parent 'MLM'"),
    ('branch: {run: CLM, step: 30}}|branch: {run: CLM, step: 70}}',
     r"run 'CLM30-MLM30'.*step 70 of run 'CLM', which has 60 steps"),
    ('branch: {run: CLM, step: 30}}|branch: {checkpoint: /nowhere/step-000030}}',
     r"run 'CLM30-MLM30'.*branch_from /nowhere/step-000030 does not exist"),
    ('branch: {run: CLM, step: 30}}|branch: {run: CLM}}', r"run 'CLM30-MLM30': branch: \{run: CLM\} needs the step"),
    ('branch: {run: CLM, step: 30}}|overrides: ["branch_from={study_dir}/runs/CLM/checkpoints/step-000030"]}',
     r"in a study, say where a run starts as branch: \{run: NAME, step: N\}"),
])
def test_bad_branch_points_fail_the_dry_run(tmp_path, change, message):
    text = SPEC
    if "|" in change:
        old, new = change.split("|")
        text = SPEC.replace(old, new, 1)
    (tmp_path / "spec.yaml").write_text(text)
    if message is None:
        plan_study(load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out")))
        return
    with pytest.raises(ConfigError, match=message):  # when the spec is loaded, or when it is planned
        plan_study(load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out")))


def test_paper_two_stage_study_branches_from_the_clm_run():
    plan = plan_study(load_study("paper-two-stage"))
    assert plan["pretraining_steps"] <= 260_000
    runs = {r["run"]: r for r in plan["pretraining_runs"]}
    assert runs["610m-clm10k-mlm40-42k"]["steps"] == 32_000 and runs["610m-clm10k-mlm40-42k"]["branch_from_step"] == 10_000
    assert runs["610m-clm40k-mlm20-42k"]["steps"] == 2_000
    spec = load_study("paper-two-stage")
    clm = pretrain_config(spec, spec.runs[0], None)
    assert {3000, 5000, 6000, 9000, 10000, 11000, 17000, 20000, 21000, 32000, 40000} == set(clm.checkpoint_steps)
    preset = run_preset("610m-clm-42k")
    assert {3000, 21000, 32000, 40000} <= set(preset.checkpoint_steps)
    assert run_preset("610m-clm21k-mlm40-42k").branch_from == "runs/610m-clm-42k/checkpoints/step-021000"
