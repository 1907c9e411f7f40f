import pytest

from encoderlab.config import ConfigError
from encoderlab.training import (
    RUN_PRESETS,
    PretrainConfig,
    ScheduleConfig,
    apply_overrides,
    load_pretrain_config,
    run_preset,
    wsd_lr,
)


def test_wsd_matches_a_hand_computed_curve():
    schedule = ScheduleConfig(lr=1.0, warmup_steps=4, decay_steps=4, final_lr=0.0)
    curve = [wsd_lr(step, 12, schedule) for step in range(12)]
    assert curve == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_paper_schedule_and_two_stage_lr_curve():
    config = run_preset("610m-clm10k-mlm40-42k")
    assert [p.label for p in config.phases] == ["clm", "mlm40"] and config.total_steps == 42_000
    lr = lambda step: wsd_lr(step, config.total_steps, config.schedule)  # noqa: E731
    assert lr(0) == pytest.approx(5e-4 / 2000) and lr(1999) == 5e-4
    # the switch at 10k happens in the stable phase: MLM starts from the non-decayed CLM state
    assert lr(9_999) == lr(10_000) == 5e-4 and config.phase_at(9_999)[1].objective == "clm"
    assert config.phase_at(10_000)[1].objective == "mlm"
    assert lr(39_999) == 5e-4 and lr(40_000) == pytest.approx(5e-4 * 1999 / 2000) and lr(41_999) == 0.0


def test_decay_branch_follows_the_long_run_then_decays():
    long, branch = run_preset("610m-mlm40-42k"), run_preset("610m-mlm40-12k")
    assert branch.branch_from == "runs/610m-mlm40-42k/checkpoints/step-010000"
    assert 10_000 in long.checkpoint_steps and 20_000 in long.checkpoint_steps
    for step in range(0, 10_000, 97):
        assert wsd_lr(step, branch.total_steps, branch.schedule) == wsd_lr(step, long.total_steps, long.schedule)
    assert [wsd_lr(s, 12_000, branch.schedule) for s in (10_000, 10_999, 11_999)] == pytest.approx(
        [5e-4 * 1999 / 2000, 5e-4 * 1000 / 2000, 0.0])


def test_every_preset_is_valid_and_the_paper_grid_is_there():
    for name in RUN_PRESETS:
        run_preset(name)
    for size in ("210m", "610m", "1b"):
        assert {f"{size}-clm-42k", f"{size}-mlm20-42k", f"{size}-mlm50-42k"} <= set(RUN_PRESETS)
    two_stage = [n for n in RUN_PRESETS if n.startswith("610m-clm") and "-mlm40-" in n and "dec" not in n]
    assert len(two_stage) == 9 + 1  # 3 budgets x 3 splits, and clm40k-mlm40-42k of the masking study
    cpt = run_preset("610m-clm-dec42k-mlm40-64k")
    assert cpt.init_from == "runs/610m-clm-42k/checkpoints/step-042000" and cpt.total_steps == 22_000
    paper = run_preset("610m-mlm40-42k")
    assert paper.global_batch_tokens == 2_359_296 and paper.micro_batch_size == 12
    assert (paper.optimizer.betas, paper.optimizer.eps, paper.optimizer.weight_decay, paper.optimizer.grad_clip) == (
        [0.9, 0.95], 1e-5, 0.1, 1.0)


def _tiny(**changes):
    data = run_preset("tiny-clm").to_dict()
    data.update(changes)
    return data


def test_bad_configs_name_the_problem():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) 'phase'.*did you mean 'phases'"):
        PretrainConfig.from_dict(_tiny(phase=[]))
    with pytest.raises(ConfigError, match=r"warmup 50 \+ decay 20 steps exceed the 60 steps"):
        PretrainConfig.from_dict(_tiny(schedule={"lr": 1e-3, "warmup_steps": 50, "decay_steps": 20}))
    with pytest.raises(ConfigError, match=r"mask_ratio must be in \(0, 1\), got 1.5"):
        PretrainConfig.from_dict(_tiny(phases=[{"objective": "mlm", "steps": 60, "mask_ratio": 1.5}]))
    model = dict(_tiny()["model"], mask_token_id=None)
    with pytest.raises(ConfigError, match="MLM phases need a mask token"):
        PretrainConfig.from_dict(_tiny(model=model, phases=[{"objective": "mlm", "steps": 60, "mask_ratio": 0.4}]))
    with pytest.raises(ConfigError, match="not a multiple of micro_batch_size 3"):
        PretrainConfig.from_dict(_tiny(micro_batch_size=3))
    with pytest.raises(ConfigError, match=r"unknown key 'schedule.warmup'"):
        apply_overrides(_tiny(), ["schedule.warmup=3"])
    with pytest.raises(ConfigError, match="neither a YAML file nor a run preset"):
        load_pretrain_config("tiny-clmm")


def test_yaml_runs_start_from_presets_and_take_overrides(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("preset: tiny-clm-mlm40\nname: mine\nmodel: {preset: tiny, num_layers: 1, mask_token_id: 3}\n")
    config = load_pretrain_config(str(spec), ["phases.1.mask_ratio=0.3", "schedule.lr=0.01"])
    assert config.name == "mine" and config.model.num_layers == 1
    assert config.phases[1].mask_ratio == 0.3 and config.schedule.lr == 0.01
    typo = tmp_path / "typo.yaml"
    typo.write_text("preset: tiny-clm\nmicro_batch: 2\n")
    with pytest.raises(ConfigError, match=r"typo.yaml.*'micro_batch'"):
        load_pretrain_config(str(typo))


def test_mfu_peak_is_per_torch_device_also_where_a_card_is_several_devices():
    import torch

    from encoderlab.training.metrics import peak_bf16_flops

    cuda = torch.device("cuda", 0)  # a device object only: nothing runs on it
    assert peak_bf16_flops(torch.device("cpu")) is None
    assert peak_bf16_flops(cuda, "NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops(cuda, "NVIDIA H100 PCIe") == 756e12 and peak_bf16_flops(cuda, "NVIDIA H100 NVL") == 835e12
    # an MI250X card is two GCDs, each its own torch device: half the card's 383 TFLOP/s each
    assert peak_bf16_flops(cuda, "AMD Instinct MI250X") == 383e12 / 2
    assert peak_bf16_flops(cuda, "AMD Instinct MI250X/MI250") == 383e12 / 2
    assert peak_bf16_flops(cuda, "AMD Instinct MI250") == 362.1e12 / 2
    assert peak_bf16_flops(cuda, "AMD Instinct MI300X") == 1307.4e12
    assert peak_bf16_flops(cuda, "Some Future GPU") is None
