"""The benchmark scripts run on CPU and write well-formed results (no speed is asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pretrain_throughput_runs_on_cpu_and_writes_tables(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), "--presets", "tiny", "--runs", "hf,mlm,clm",
         "--extra", "tiny:clm-plain:eager,tiny:mlm-dense:eager", "--steps", "2", "--warmup", "1", "--seq-len", "128", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "throughput.json").read_text())
    runs = {r["run"]: r for r in result["records"]}
    assert set(runs) == {"hf", "mlm", "clm", "clm-plain", "mlm-dense"}
    for record in runs.values():
        assert record["status"] == "ok" and record["tokens_per_s"] > 0 and record["timed_steps"] == 2
    assert runs["mlm"]["head_fraction"] == 0.4 and runs["clm"]["head_fraction"] == 1.0
    assert runs["mlm-dense"]["head_fraction"] == 1.0 and runs["mlm-dense"]["objective"] == "mlm-dense"
    assert runs["mlm"]["ratio_vs_hf_same_run"] > 0 and "document_isolation_cost" in runs["clm"]
    table = (tmp_path / "throughput.md").read_text()
    assert "| tiny | mlm | encoderlab | mlm | documents | sdpa | no |" in table
    assert len((tmp_path / "throughput.jsonl").read_text().splitlines()) == 5


def test_gpu_checks_skip_cleanly_without_a_gpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_checks.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "no CUDA device" in proc.stdout


def test_data_throughput_runs_and_reports_the_loader_share(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "data_throughput.py"), "--documents", "3000", "--repeats", "1",
         "--vocab-size", "500", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "data_throughput.json").read_text())
    for key in ("prepare_tokens_per_s", "loader_seq2048_tokens_per_s", "mini_train_s_per_step"):
        assert result[key] > 0
    assert 0 < result["loader_share_of_step"] < 1


def test_finetune_throughput_projects_the_protocol_cost(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "finetune_throughput.py"), "--preset", "tiny", "--steps", "2",
         "--repeats", "1", "--max-length", "128", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "finetune_throughput.json").read_text())
    assert {t["type"] for t in result["tasks"].values()} == {"SC", "SC-pair", "TC", "QA", "IR"}
    assert all(t["train_examples_per_s"] > 0 for t in result["tasks"].values())
    assert result["projected_protocol_hours_per_checkpoint"] > 0
