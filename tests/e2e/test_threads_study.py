"""The thread policy in a local study: a job graph with one thread per job."""

import json
import shutil

import pytest

from encoderlab.threads import ENV, POLICY, usable_cores

GRAPH = """
name: graph
data: {source: toyworld, toyworld_documents: 1500, train_tokenizer_vocab: 400}
runs:
  - {name: CLM, preset: tiny-clm, overrides: [phases.0.steps=6, schedule.warmup_steps=1, schedule.decay_steps=2]}
  - {name: MLM, preset: tiny-mlm40, overrides: [phases.0.steps=6, schedule.warmup_steps=1, schedule.decay_steps=2]}
  - name: CLM-MLM
    preset: tiny-clm-mlm40
    branch: {run: CLM, step: 3}
    overrides: [phases.0.steps=3, phases.1.steps=3, schedule.warmup_steps=1, schedule.decay_steps=2]
  - {name: random-init, preset: tiny-mlm40, random_init: true}
evaluation:
  tasks: [toy-sentiment]
  lrs: [1.0e-3]
  seeds: [0, 1]
  max_steps: 2
  batch_size: 8
  max_length: 64
  max_eval_examples: 16
scheduler: {kind: local, workers: auto}
"""

@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for the provenance")
def test_local_study_runs_as_a_job_graph_with_one_thread_per_job(tmp_path, monkeypatch):
    from encoderlab.study import load_study, run_study

    monkeypatch.delenv(ENV, raising=False)  # the policy's own choice, not an inherited one

    (tmp_path / "spec.yaml").write_text(GRAPH)
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out"))
    messages = []
    run_study(spec, progress=False, log=messages.append, workers=2)
    started = [m for m in messages if " submitted" in m]
    done = [m for m in messages if ": done (" in m]
    order = messages.index
    # the branch starts only after its parent is trained; a checkpoint's evaluation after its run
    branch = next(m for m in started if "(CLM-MLM)" in m)
    assert order(branch) > order(next(m for m in done if "pretrain CLM:" in m))
    evaluation = next(m for m in started if "(MLM@6)" in m)
    assert order(evaluation) > order(next(m for m in done if "pretrain MLM:" in m))
    assert any("a branch from CLM step 3: trains 3" in m for m in messages)
    assert any("jobs done, about" in m for m in done)  # the ETA
    for name in ("CLM", "MLM", "CLM-MLM"):  # every job ran with the policy's one thread
        records = [json.loads(line) for line in (spec.study_dir / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert {r["threads"] for r in records} == {1}
    timings = json.loads((spec.study_dir / "timings.json").read_text())
    assert timings["execution"] == {"scheduler": "local", "workers": 2, "threads": 1, "cores": usable_cores(),
                                    "source": POLICY}
    summary = json.loads((spec.study_dir / "summary.json").read_text())
    assert summary["provenance"]["execution"]["threads"] == 1 and summary["provenance"]["cpu"]
    assert summary["provenance"]["torch"] and "git_revision" in summary["provenance"]
    import sqlite3

    rows = sqlite3.connect(spec.study_dir / "results.sqlite").execute("SELECT provenance FROM runs").fetchall()
    assert rows and all(json.loads(p)["execution"] == {"workers": 1, "threads": 1} for (p,) in rows)
