"""Study specs, plans, dry runs and reports without training: validation, the paper design's counts, built-
in studies, figures and pooling rules."""

import sqlite3

import pytest

from encoderlab.config import ConfigError
from encoderlab.study import load_study
from testkit import SPEC


def test_spec_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("comparisons: [[MLM, CLM]]", "comparisons: [[MLM, BERT]]"))
    with pytest.raises(ConfigError, match=r"comparison \['MLM', 'BERT'\] must name two different runs"):
        load_study(str(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text(SPEC.replace("max_steps: 3", "max_step: 3"))
    with pytest.raises(ConfigError, match="max_step"):
        load_study(str(typo))
    with pytest.raises(ConfigError, match="no such study file or built-in study"):
        load_study("no-such-study")
    assert load_study("toyworld-demo").evaluation.seeds == [0, 1, 2]

def test_every_built_in_study_resolves_to_valid_runs():
    from encoderlab.study.plan import pretrain_config
    from encoderlab.study.spec import SPEC_DIR

    names = sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))
    small = {"objectives": "toyworld-demo", "stability": "toyworld-demo"}  # the demo is both in miniature
    for study in ("objectives", "masking-ratio", "data-efficiency", "stability", "two-stage", "cpt"):
        assert f"paper-{study}" in names and small.get(study, f"toyworld-{study}") in names
    for name in names:
        spec = load_study(name)
        for run in spec.runs:
            config = pretrain_config(spec, run, shards=None)
            assert config.name == run.name and str(spec.study_dir) in str(config.run_dir)
            for source in (config.init_from, config.branch_from):
                assert source is None or source.startswith(str(spec.study_dir))
    two_stage = load_study("paper-two-stage")
    assert len(two_stage.runs) == 2 + 4 + 9 + 4 + 1  # bases, branches, splits, CLM-40k ratios, 1B 25/75

def test_multi_node_pretraining_goes_through_the_launcher_and_needs_slurm(tmp_path):
    from encoderlab.study.plan import pretrain_config
    from encoderlab.study.runner import _pretrain_command

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC + "scheduler: {kind: slurm, partition: gpu, nodes: 4, gpus_per_node: 8}\n")
    spec = load_study(str(spec_file), output_dir=str(tmp_path / "out"))
    run = spec.runs[0]
    command = _pretrain_command(spec, run, pretrain_config(spec, run, None), resume=False)
    assert command[1:5] == ["-m", "encoderlab.training.launch", "--nproc-per-node=8", "--"]
    assert command[5:8] == ["-m", "encoderlab.cli", "pretrain"]
    for bad, message in (("{kind: local, workers: 2, nodes: 2, gpus_per_node: 8}", "need kind: slurm"),
                         ("{kind: slurm, nodes: 2}", "gpus_per_node >= 1"), ("{kind: slurm, nodes: 0}", "positive")):
        spec_file.write_text(SPEC + f"scheduler: {bad}\n")
        with pytest.raises(ConfigError, match=message):
            load_study(str(spec_file))

def test_masking_ratio_and_two_stage_figures_appear_when_the_study_has_those_runs():
    from encoderlab.study.report_figures import study_figures

    def fact(run, size, ratio, share, total, single):
        return {"run": run, "step": total, "final": True, "size": size, "mask_ratio": ratio, "single_phase": single,
                "clm_share": share, "total_steps": total, "cpt_parent": None, "parent_steps": 0}

    facts = {
        "mlm20": fact("mlm20", "610m", 0.2, 0.0, 42, True), "mlm40": fact("mlm40", "610m", 0.4, 0.0, 42, True),
        "clm": fact("clm", "610m", None, 1.0, 42, True), "clm10-mlm40": fact("clm10-mlm40", "610m", 0.4, 0.25, 42, False),
        "clm10-mlm20": fact("clm10-mlm20", "610m", 0.2, 0.25, 42, False),
    }
    results = {label: {} for label in facts}
    rows = {label: {"SC": (50.0 + i, 49.0, 51.0 + i)} for i, label in enumerate(facts)}
    figures = study_figures(results, rows, facts)
    assert set(figures) == {"Score vs masking ratio (Fig. 3)", "Two-stage splits per budget (Fig. 6)",
                            "Masking ratio after CLM (Fig. 7)"}
    assert all(len(png) > 1000 for png in figures.values())

def test_dry_runs_count_the_paper_design():
    from encoderlab.study.runner import plan_study

    expected = {  # pretraining runs, evaluated checkpoints; every checkpoint: 12 tasks x 6 LRs x 5 seeds
        "paper-objectives": (6, 6), "paper-masking-ratio": (12, 12), "paper-data-efficiency": (2, 14),
        "paper-stability": (2, 2), "paper-two-stage": (20, 20), "paper-cpt": (8, 8),
    }
    for name, (runs, checkpoints) in expected.items():
        plan = plan_study(load_study(name))
        assert len(plan["pretraining_runs"]) == runs and plan["checkpoints"] == checkpoints, name
        assert plan["finetuning_runs_per_checkpoint"] == 12 * 6 * 5
    branches = {r["run"]: r["steps"] for r in plan_study(load_study("paper-two-stage"))["pretraining_runs"]}
    assert branches["610m-mlm40-12k"] == 2000 and branches["610m-clm10k-mlm40-42k"] == 32000

def test_bad_study_input(tmp_path):
    from encoderlab.evaluation.store import ResultsStore
    from encoderlab.study.runner import plan_study

    (tmp_path / "a.yaml").write_text(SPEC.replace("preset: tiny-clm,", "preset: tiny-clmm,"))
    with pytest.raises(ConfigError, match="tiny-clmm"):
        plan_study(load_study(str(tmp_path / "a.yaml")))
    (tmp_path / "b.yaml").write_text(SPEC.replace("evaluate_steps: [8]", "evaluate_steps: [50]"))
    with pytest.raises(ConfigError, match=r"run .MLM.: checkpoint_steps \[50\] are outside 1..12"):
        plan_study(load_study(str(tmp_path / "b.yaml")))
    (tmp_path / "c.yaml").write_text(SPEC.replace("tasks: [toy-sentiment, toy-ner]", "tasks: [toy-sentiment, sst3]"))
    with pytest.raises(ConfigError, match="unknown task 'sst3'"):
        plan_study(load_study(str(tmp_path / "c.yaml")))
    db = tmp_path / "old.sqlite"
    ResultsStore(db).close()
    sqlite3.connect(db).execute("UPDATE meta SET value = '0'").connection.commit()
    with pytest.raises(ValueError, match="results schema version 0, this encoderlab reads version 2"):
        ResultsStore(db)
