"""The typed-job redesign changed how a study is resolved and run, not what it computes: a small study
(pretraining, a branch, a random-init baseline, evaluation, report) gives bit-identical fine-tuning
scores and report tables to those the code before the redesign (commit 0d9622b) wrote on this
machine (``tests/data/redesign/``: the study in the old spec format and the new, and what the old
code produced). Run once in this process's way (one process) and once as local jobs, which run
from their resolved job files."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit import ROOT

DATA = ROOT / "tests" / "data" / "redesign"
sys.path.insert(0, str(DATA))
from extract import extract  # noqa: E402

EXPECTED = json.loads((DATA / "expected.json").read_text())
# the expected bits were written on an x86-64 CPU with AVX-512 (torch's CPU kernels round differently
# with other vector units, so the comparison only holds on such a machine)
SAME_MACHINE_KIND = platform.machine() == "x86_64" and "avx512" in Path("/proc/cpuinfo").read_text() \
    if Path("/proc/cpuinfo").is_file() else False


def _run(tmp_path: Path, *extra: str) -> Path:
    study_dir = tmp_path / "parity"
    env = {**os.environ, "ENCODERLAB_THREADS": "1"}  # the expected file was made with one thread per process
    done = subprocess.run([sys.executable, "-m", "encoderlab.cli", "study", "run", str(DATA / "study.yaml"),
                           "--output", str(study_dir), "--no-progress", *extra], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return study_dir


def _same(got: dict) -> None:
    assert len(got["runs"]) == len(EXPECTED["runs"]) == 12
    for ours, theirs in zip(got["runs"], EXPECTED["runs"]):
        assert ours == theirs  # scores compared as float.hex(): bit for bit
    assert got["report_tables"] == EXPECTED["report_tables"]


def test_the_two_spec_formats_describe_the_same_study():
    before, after = (yaml.safe_load((DATA / name).read_text()) for name in ("study-before.yaml", "study.yaml"))
    start = before["runs"][1]["overrides"].pop()
    assert start == "branch_from={study_dir}/runs/CLM/checkpoints/step-000006"
    assert after["runs"][1].pop("branch") == {"run": "CLM", "step": 6}
    assert before == after


@pytest.mark.skipif(not SAME_MACHINE_KIND, reason="the expected bits are those of an AVX-512 x86-64 CPU")
def test_a_study_in_one_process_reproduces_the_code_before_the_redesign(tmp_path):
    study_dir = _run(tmp_path)
    _same(extract(study_dir))
    # the jobs it ran in this process are written beside the study as a job in another process would run them
    assert sorted(p.name for p in (study_dir / "jobs" / "evaluate").glob("*.yaml")) == [
        "CLM-MLM@12.yaml", "CLM@12.yaml", "random-init@0.yaml"]


@pytest.mark.skipif(not SAME_MACHINE_KIND, reason="the expected bits are those of an AVX-512 x86-64 CPU")
def test_a_study_as_local_jobs_runs_from_resolved_job_files_and_reproduces_it(tmp_path):
    from encoderlab.evaluation.job import EvaluationJob

    study_dir = _run(tmp_path, "--workers", "2", "--threads", "1")
    _same(extract(study_dir))
    files = sorted((study_dir / "jobs" / "evaluate").glob("*.yaml"))
    assert [f.name for f in files] == ["CLM-MLM@12.yaml", "CLM@12.yaml", "random-init@0.yaml"]
    job = EvaluationJob.load(files[1])
    assert job.checkpoint == str(study_dir / "runs" / "CLM" / "checkpoints" / "step-000012")
    assert job.tasks == ["toy-sentiment", "toy-ner"] and job.lrs == [3e-3] and job.seeds == [0, 1]
    assert job.finetune.max_steps == 12 and job.finetune.tc_full_epoch is False and job.threads == 1
    from encoderlab.study.plan import StudyPlan, study_shards
    from encoderlab.study.runner import _evaluate_command
    from encoderlab.study.spec import load_study

    spec = load_study(str(DATA / "study.yaml"), output_dir=str(study_dir))
    plan = StudyPlan.resolve(spec, study_shards(spec))
    command = _evaluate_command(plan, plan.checkpoints[0], threads=1)  # what each evaluation job runs
    assert command[1:] == ["-m", "encoderlab.cli", "evaluate", "--job", str(files[1]), "--no-progress"]
    resolved = yaml.safe_load((study_dir / "runs" / "CLM-MLM.resolved.yaml").read_text())
    assert resolved["branch_from"] == str(study_dir / "runs" / "CLM" / "checkpoints" / "step-000006")
