"""The console script, run as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

from encoderlab.model import build_encoder, save_checkpoint


@pytest.fixture(autouse=True)
def _in_a_folder_of_its_own(tmp_path, monkeypatch):
    """Commands run where a user would run them, in a folder of their own: a relative output (runs/,
    out/) lands in the test's tmp_path, never in the repository or another worker's folder."""
    monkeypatch.chdir(tmp_path)


def run(*args, check=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "encoderlab.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_commands():
    out = run("--help").stdout
    for command in ("model", "export", "import", "smoke"):
        assert command in out


def test_model_info_reports_the_paper_counts():
    out = run("model", "info", "610m").stdout
    assert "607.9M body+embedding" in out and "755.6M with the untied LM head" in out
    info = json.loads(run("model", "info", "1b", "--json").stdout)
    assert info["parameters"]["total_with_head"] == 1_409_482_944
    assert "210m" in run("model", "list").stdout


def test_model_info_accepts_overrides_and_yaml(tmp_path):
    info = json.loads(run("model", "info", "tiny", "--set", "num_layers=5", "--json").stdout)
    assert info["config"]["num_layers"] == 5
    spec = tmp_path / "m.yaml"
    spec.write_text("preset: mini\nvocab_size: 1000\n")
    assert json.loads(run("model", "info", str(spec), "--json").stdout)["config"]["vocab_size"] == 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (("model", "info", "61m"), "unknown model preset '61m'"),
        (("model", "info", "tiny", "--set", "layers=3"), "unknown field(s) 'layers'"),
        (("import", "/nonexistent/dir", "out"), "/nonexistent/dir: directory not found"),
    ],
)
def test_bad_input_gives_a_clear_error(args, message):
    proc = run(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_export_then_import_on_the_command_line(tmp_path, tiny_config):
    ckpt = save_checkpoint(build_encoder(tiny_config, seed=0), tmp_path / "ckpt")
    run("export", str(ckpt), str(tmp_path / "hf"), "--target", "llama")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert "imported" in run("import", str(tmp_path / "hf"), str(tmp_path / "back")).stdout
    proc = run("export", str(ckpt), str(tmp_path / "hf"), check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_smoke_run_trains_in_both_modes():
    proc = run("smoke", "--preset", "tiny", "--steps", "30", "--batch-size", "4", "--seq-len", "64", "--lr", "3e-3")
    assert "causal: loss" in proc.stdout and "bidirectional: loss" in proc.stdout


def test_pretrain_lists_presets_and_rejects_bad_configs(tmp_path):
    listing = run("pretrain", "--list").stdout
    for name in ("610m-clm10k-mlm40-42k", "1b-mlm40-42k", "610m-mlm40-12k", "610m-clm-dec42k-mlm40-64k", "tiny-clm"):
        assert name in listing
    bad = run("pretrain", "tiny-clm", "schedule.warmpu_steps=3", check=False)
    assert bad.returncode == 2 and "unknown key 'schedule.warmpu_steps'" in bad.stderr
    paper = run("pretrain", "610m-clm-42k", "--output", str(tmp_path / "x"), check=False)
    assert paper.returncode == 2 and "not a shard directory (no manifest.json)" in paper.stderr
    missing = run("pretrain", str(tmp_path / "nothing"), "--resume", check=False)
    assert missing.returncode == 2 and "neither a YAML file nor a run preset" in missing.stderr


def test_pretrain_runs_and_resumes_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    first = run("pretrain", "tiny-mlm40", "phases.0.steps=12", "schedule.warmup_steps=2", "schedule.decay_steps=2",
                "--output", str(out), "--no-progress")
    assert f"final checkpoint: {out}/checkpoints/step-000012" in first.stdout
    again = run("pretrain", str(out), "--resume", "--no-progress")  # already complete: nothing to redo
    assert "step-000012" in again.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 4


def test_data_prepare_then_pretrain_on_the_shards(tmp_path):
    shards = tmp_path / "shards"
    out = run("data", "prepare", "toyworld", "--toyworld-documents", "1500", "--train-tokenizer", "400",
              "-o", str(shards), "--no-progress").stdout
    assert "1,500 documents" in out and "mask id 3" in out
    again = run("data", "prepare", "toyworld", "--toyworld-documents", "1500", "--train-tokenizer", "400",
                "-o", str(shards), "--no-progress").stdout
    assert "1,500 documents" in again  # complete: nothing redone
    inspect = json.loads(run("data", "inspect", str(shards), "--seq-len", "128").stdout)
    assert inspect["packing (seq_len 128)"]["documents"] == 1500
    run("pretrain", "tiny-clm", f"data.source={shards}", "model.vocab_size=512", "phases.0.steps=6",
        "schedule.warmup_steps=1", "schedule.decay_steps=2", "--output", str(tmp_path / "run"), "--no-progress")
    assert (tmp_path / "run" / "checkpoints" / "step-000006" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoints" / "step-000006" / "tokenizer.json").is_file()  # self-contained
    small = run("pretrain", "tiny-clm", f"data.source={shards}", "model.vocab_size=300", check=False)
    assert small.returncode == 2 and "more than the model's vocab_size 300" in small.stderr


def test_toyworld_export_and_tokenizer_training(tmp_path):
    out = run("data", "toyworld", str(tmp_path / "tasks")).stdout
    assert "bag_of_words_nb_accuracy" in out and (tmp_path / "tasks" / "toy-ner" / "train.jsonl").is_file()
    run("tokenizer", "train", "toyworld", "--toyworld-documents", "500", "--vocab-size", "350", "-o", str(tmp_path / "tok"))
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
