"""Evaluation jobs: typed, resolved once, written as YAML and read back to the same job; a job file
is run as written (options that would change it are refused), and a bad one is one error line."""

import pytest
import yaml

from encoderlab.cli import main
from encoderlab.config import ConfigError
from encoderlab.evaluation.job import EvaluationJob
from encoderlab.evaluation.protocol import FinetuneConfig


def _job(**changes) -> EvaluationJob:
    values = dict(checkpoint="ckpt", tasks=["toy-sentiment", "toy-qa"], lrs=[1e-3, 3e-4], seeds=[0, 1],
                  results="r.sqlite", finetune=FinetuneConfig.build({"max_steps": 5}, ["query_prefix=Q: "]),
                  data={}, workers=1, threads=2, label="CLM@12")
    return EvaluationJob(**{**values, **changes})


def test_a_job_file_reads_back_to_the_same_job(tmp_path):
    job = _job()
    assert EvaluationJob.load(job.save(tmp_path / "a" / "job.yaml")) == job
    assert job.finetune.query_prefix == "Q: " and job.finetune.max_steps == 5


@pytest.mark.parametrize("change, message", [
    ({"format": "something-else"}, "not an evaluation job"),
    ({"lrs": [1e-3, 1e-3]}, "lrs: 0.001 is listed twice"),
    ({"tasks": ["toy-sentiment", "nope"]}, "unknown task 'nope'"),
    ({"extra": 1}, r"unknown field\(s\) .extra. for EvaluationJob"),
    ({"finetune": {"max_stepz": 3}}, "max_stepz"),
    ({"data": {"sst2": "somewhere"}}, "data names 'sst2', which the job does not evaluate"),
    ({"workers": 0}, "workers: expected a whole number >= 1, got 0"),
])
def test_a_bad_job_file_is_refused_naming_what_is_wrong(tmp_path, change, message):
    raw = _job().to_dict() | change
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        EvaluationJob.load(path)


def test_qa_windows_are_checked_when_the_job_is_made():
    with pytest.raises(ConfigError, match="QA needs at least"):
        _job(finetune=FinetuneConfig.build({"max_length": 64}))


def test_evaluate_job_refuses_options_that_would_be_ignored(tmp_path, capsys):
    path = _job().save(tmp_path / "job.yaml")
    assert main(["evaluate", "--job", str(path), "--tasks", "toy-ner", "--set", "adam_beta2=0.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tasks, --set would be ignored" in err
    assert main(["evaluate"]) == 2
    assert "give a model directory, or --job FILE" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (["schedule.lr=1e-3", "schedule.lr=2e-3"], "overrides set schedule.lr twice"),
    (["output_dir=/elsewhere"], "override output_dir= is the study's to set"),
])
def test_a_study_run_refuses_overrides_that_would_be_lost(overrides, message):
    from encoderlab.config import from_dict
    from encoderlab.study.spec import RunSpec

    with pytest.raises(ConfigError, match=message):
        from_dict(RunSpec, {"name": "CLM", "preset": "tiny-clm", "overrides": overrides})
