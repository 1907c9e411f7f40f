"""Studies: spec validation, a small end-to-end study with its report, resume, status, browser rendering."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from encoderlab.study import load_study, run_study, study_status
from encoderlab.study.plan import StudyPlan
from testkit import SPEC


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    (root / "spec.yaml").write_text(SPEC)
    spec = load_study(str(root / "spec.yaml"), output_dir=str(root / "out"))
    report = run_study(spec, progress=False, log=lambda *_: None)
    return spec, report


def test_study_runs_end_to_end_and_reports(finished_study):
    spec, report = finished_study
    out = spec.study_dir
    markdown = (out / "report.md").read_text()
    assert "| model | toy-sentiment | toy-ner | SC mean | TC mean |" in markdown
    for label in ("| CLM |", "| MLM |", "| MLM@8 |", "| CPT |"):  # an intermediate checkpoint is a row of its own
        assert label in markdown
    assert "**" in markdown and "± " in markdown  # best in bold, CI half-widths
    assert "| MLM | CLM | toy-sentiment |" in markdown  # the paired comparison, with p-values
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # Fig. 2 and Fig. 5 always; Fig. 4 (MLM has an intermediate checkpoint) and Figs. 8-9 (CPT) here
    for title in ("Objective comparison (Fig. 2)", "Score vs fine-tuning LR (Fig. 5)",
                  "Score vs pretraining steps (Fig. 4)", "Continued MLM pretraining (Figs. 8-9)"):
        assert f'<img alt="{title}" src="data:image/png;base64,' in html
    assert "Score vs masking ratio" not in html  # one masking ratio only: no Fig. 3
    assert '"device_hours"' in markdown and '"pretrain":' in markdown  # provenance: time per stage
    rows = sqlite3.connect(out / "results.sqlite").execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert rows == 4 * 2 * 2 * 2  # 4 checkpoints x 2 tasks x 2 LRs x 2 seeds
    assert all("evaluated 8/8" in row["status"] for row in study_status(spec))


def test_rerunning_a_finished_study_repeats_nothing(finished_study):
    spec, _ = finished_study
    before = (spec.study_dir / "results.sqlite").stat().st_size
    messages = []
    run_study(spec, progress=False, log=messages.append)
    assert any("pretrain CLM: done" in m for m in messages)
    assert sqlite3.connect(spec.study_dir / "results.sqlite").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 32
    assert (spec.study_dir / "results.sqlite").stat().st_size >= before


def test_status_of_a_study_not_started(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "nothing"))
    assert study_status(spec) == [{"stage": "data", "status": "not prepared"}]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_renders_in_a_real_browser(finished_study, tmp_path):
    _, report = finished_study
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<h1 id="title">tiny-study</h1>' in dom.stdout and "<table>" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile2'}",
         f"--screenshot={shot}", "--window-size=1200,1600", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000  # a page with tables and two figures, not blank


def test_job_scheduler_path_with_submitit_local_workers(tmp_path):
    """The SLURM code path, with submitit's local executor: one job per run and per checkpoint."""
    one_lr = SPEC.replace("lrs: [1.0e-3, 3.0e-4]", "lrs: [1.0e-3]")  # the jobs are the point, not the grid
    (tmp_path / "spec.yaml").write_text(one_lr + "scheduler: {kind: local, workers: 2}\n")
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out"))
    messages = []
    report = run_study(spec, progress=False, log=messages.append)
    submitted = [m for m in messages if "job" in m and "submitted" in m]
    assert sum("pretrain job" in m for m in submitted) == 3 and sum("evaluate job" in m for m in submitted) == 4
    # CPT starts from CLM's final checkpoint, so it ran in a later wave than CLM
    order = [m for m in submitted if "pretrain job" in m]
    assert "(CPT)" in order[-1]
    assert sqlite3.connect(tmp_path / "out" / "results.sqlite").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 16
    assert "| CPT |" in (tmp_path / "out" / "report.md").read_text() and report.is_file()
    # every job is in the study's job log; a job that wrote its outcome reads as ended, with its log
    from encoderlab.study.runner import job_state, latest_jobs

    pretrain_jobs, evaluate_jobs = latest_jobs(spec.study_dir, "pretrain"), latest_jobs(spec.study_dir, "evaluate")
    assert set(pretrain_jobs) == {"CLM", "MLM", "CPT"} and len(evaluate_jobs) == 4
    state = job_state(spec.study_dir, "pretrain", pretrain_jobs["CLM"])
    assert state.startswith("ended (log: ") and state.endswith("_log.err)")


def test_status_reads_job_states_after_the_study_process_and_its_jobs_are_killed(tmp_path):
    """Jobs keep their ids in the study directory: status reports them running, then stopped once
    the whole process group (driver and local jobs) is SIGKILLed, with the last checkpoint."""
    long_spec = SPEC.replace("phases.0.steps=12, schedule.warmup_steps=2", "phases.0.steps=3000, checkpoint_every=5,"
                             " schedule.warmup_steps=2")
    (tmp_path / "spec.yaml").write_text(long_spec + "scheduler: {kind: local, workers: 2}\n")
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "encoderlab.cli", "study", "run", str(tmp_path / "spec.yaml"),
                               "--output", str(out), "--no-progress"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(out))
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (out / "runs" / "CLM" / "checkpoints" / "latest").is_file():
            time.sleep(0.2)
        running = {row["run"]: row["status"] for row in study_status(spec) if "step" in row}
        assert "job" in running["CLM"] and "running" in running["CLM"], running
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    deadline = time.time() + 30
    while time.time() < deadline and "running" in study_status(spec)[0]["status"]:
        time.sleep(0.2)
    stopped = {row["run"]: row["status"] for row in study_status(spec) if "step" in row}
    assert stopped["CLM"].startswith("pretraining: job ") and "stopped, last checkpoint step-" in stopped["CLM"]
    from encoderlab.training.lock import lock_status  # the training process itself is gone, not only its job

    deadline = time.time() + 30
    while time.time() < deadline and lock_status(out / "runs" / "CLM")[0] == "running":
        time.sleep(0.2)
    assert lock_status(out / "runs" / "CLM")[0] == "stale"
    assert "not started" in stopped["CPT"]  # waits for CLM: never submitted


def test_waiting_for_a_job_of_several_tasks(tmp_path):
    """A multi-node job has one task per node; the runner waits for all of them (real local jobs)."""
    import submitit
    from submitit.helpers import CommandFunction

    from encoderlab.study.jobs import wait_for_job

    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=2, tasks_per_node=2)
    ok = executor.submit(CommandFunction(["bash", "-c", "echo task $SUBMITIT_LOCAL_GLOBALID"], verbose=False))
    wait_for_job("pretrain", "two-tasks", ok)
    assert ok.results() == ["task 0", "task 1"]
    failing = executor.submit(CommandFunction(["bash", "-c", "exit $SUBMITIT_LOCAL_GLOBALID"], verbose=False))
    with pytest.raises(RuntimeError, match=r"pretrain job .* \(one-task-fails\) failed .*stderr: "):
        wait_for_job("pretrain", "one-task-fails", failing)


def test_killed_study_resumes_and_its_report_matches_the_database(tmp_path):
    import os
    import signal
    import sys
    import time

    from encoderlab.evaluation.stats import RunScore, summarize
    from encoderlab.evaluation.store import ResultsStore, model_fingerprint

    (tmp_path / "spec.yaml").write_text(SPEC)
    command = [sys.executable, "-m", "encoderlab.cli", "study", "run", str(tmp_path / "spec.yaml"), "--output",
               str(tmp_path / "out"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "out" / "results.sqlite"
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            if db.exists() and sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 2:
                break
        except sqlite3.OperationalError:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "report.md").exists()  # killed before the end
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 32
    markdown = (tmp_path / "out" / "report.md").read_text()
    with ResultsStore(db) as store:
        fingerprint = model_fingerprint(tmp_path / "out" / "runs" / "CLM" / "checkpoints" / "step-000012")
        records = store.records(fingerprint, "toy-sentiment")
    summary = summarize([RunScore(r.lr, r.seed, r.validation_score, r.test_score) for r in records])
    clm_row = next(line for line in markdown.splitlines() if line.startswith("| CLM |"))
    assert clm_row.split(" | ")[1].strip("*").startswith(f"{summary.mean:.2f} ± {(summary.ci_high - summary.ci_low) / 2:.2f}")


def test_report_never_pools_protocols_or_data(finished_study, tmp_path):
    """Runs of another protocol in the study's database are left out (and counted); runs of the same
    protocol on other data become a row of their own, never part of the study's means."""
    import dataclasses
    import shutil

    from encoderlab.evaluation.store import ResultsStore
    from encoderlab.study.report import write_report

    spec, _ = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(spec.study_dir, copy)
    spec = dataclasses.replace(spec, output_dir=str(copy))
    before = (copy / "report.md").read_text()
    clm_before = next(line for line in before.splitlines() if line.startswith("| CLM |"))
    assert "| protocol | v" in before and "| optimizer | AdamW betas (0.9, 0.95)" in before
    assert "## Per-seed scores and stability" in before and "| CLM | toy-sentiment |" in before.split("Per-seed")[1]
    with ResultsStore(copy / "results.sqlite") as store:
        records = [r for r in store.records() if r.model_name.endswith("CLM/checkpoints/step-000012")]
        for r in records:  # the same runs under another protocol, scored 0
            store.add(dataclasses.replace(r, protocol_version="other", protocol={**r.protocol, "max_steps": 99},
                                          test_score=0.0, validation_score=100.0))
    write_report(StudyPlan.resolve(spec, copy / "data"))
    after = (copy / "report.md").read_text()
    assert next(line for line in after.splitlines() if line.startswith("| CLM |")) == clm_before
    assert f"| excluded | {len(records)} run(s)" in after
    with ResultsStore(copy / "results.sqlite") as store:
        for r in records:  # same protocol, other data
            store.add(dataclasses.replace(r, data_fingerprint="feedfacecafe", test_score=0.0, validation_score=100.0))
    write_report(StudyPlan.resolve(spec, copy / "data"))
    lines = (copy / "report.md").read_text().splitlines()
    labels = {line.split(" | ")[0] for line in lines if line.startswith("| CLM [data ")}
    # one label per (task data) version: the two tasks' real data and the other data, none pooled
    assert "| CLM [data feedface, fp32]" in labels and len(labels) == 3
    assert not any(line.startswith("| CLM |") for line in lines)
