"""A tiny study end to end: findings, summary and the random-init baseline."""

import json

from encoderlab.study import load_study, run_study

TINY = """
name: tiny-findings
data: {source: toyworld, toyworld_documents: 1500, train_tokenizer_vocab: 400}
runs:
  - {name: CLM, preset: tiny-clm, overrides: [phases.0.steps=8, schedule.warmup_steps=2, schedule.decay_steps=2]}
  - {name: MLM, preset: tiny-mlm40, overrides: [phases.0.steps=8, schedule.warmup_steps=2, schedule.decay_steps=2]}
  - {name: CLM-MLM, preset: tiny-clm-mlm40,
     overrides: [phases.0.steps=4, phases.1.steps=4, schedule.warmup_steps=2, schedule.decay_steps=2]}
  - {name: random-init, preset: tiny-mlm40, random_init: true}
evaluation:
  tasks: [toy-sentiment, toy-ner]
  lrs: [1.0e-3, 3.0e-4]
  seeds: [0, 1]
  max_steps: 2
  batch_size: 8
  max_length: 96
  max_eval_examples: 16
  protocol: {tc_full_epoch: false}
"""

def test_tiny_study_end_to_end_has_findings_summary_and_random_init(tmp_path):
    from encoderlab.study import study_status

    (tmp_path / "spec.yaml").write_text(TINY)
    spec = load_study(str(tmp_path / "spec.yaml"), output_dir=str(tmp_path / "out"))
    messages = []
    run_study(spec, progress=False, log=messages.append)
    assert any("random init random-init (tiny-mlm40, seed 0)" in m for m in messages)
    out = spec.study_dir
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"CLM", "MLM", "CLM-MLM", "random-init"}
    ids = {f["id"] for f in summary["findings"]}
    assert {"mlm>clm:SC", "clm>=mlm:TC", "clm-lr-stable", "clm->mlm>mlm:SC", "pretrained>random"} <= ids
    assert all(f["verdict"] in ("reproduced", "contradicted", "inconclusive") for f in summary["findings"])
    assert all(f["n"] == 2 for f in summary["findings"])
    markdown = (out / "report.md").read_text()
    assert "## Paper findings" in markdown and "| random-init (baseline: not pretrained) |" in markdown
    for finding in summary["findings"]:  # the report and the summary say the same
        assert f"**{finding['verdict']}** {finding['regime_text']} |" in markdown
    assert not (out / "runs" / "random-init" / "metrics.jsonl").exists()  # nothing was trained
    assert all("evaluated 8/8" in row["status"] for row in study_status(spec))
    messages.clear()
    run_study(spec, progress=False, log=messages.append)  # rerun: the same baseline, nothing repeated
    assert json.loads((out / "summary.json").read_text())["findings"] == summary["findings"]
