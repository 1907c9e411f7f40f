"""Pretraining inputs and run directories that must be refused or repaired before any harm: the run
directory a resume continues, runs that would be overwritten, intervals of 0, damaged weights and
configs, leftovers of killed writes, a dangling ``latest``, duplicate metrics, shards whose tokenizer
or token ids do not fit, and a disk that fills up while a checkpoint is written."""

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from encoderlab.cli import main
from encoderlab.config import ConfigError
from encoderlab.model import CheckpointError, build_encoder, export_hf, import_hf, load_checkpoint
from encoderlab.training import PretrainConfig, apply_overrides, pretrain, run_preset
from encoderlab.training.checkpoint import (
    CheckpointWriteError,
    TrainingState,
    latest_checkpoint,
    resolve_latest,
    save_training_checkpoint,
)
from encoderlab.training.distributed import DistributedContext
from encoderlab.training.loop import Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
# 6 steps, checkpoints at 3 (rolling) and 6 (final), a record per step
SHORT = ["phases.0.steps=6", "schedule.warmup_steps=1", "schedule.decay_steps=2", "checkpoint_every=3", "log_every=1"]


def tiny(out, *overrides: str, name: str = "tiny-clm") -> PretrainConfig:
    return PretrainConfig.from_dict(apply_overrides(run_preset(name).to_dict(), [f"output_dir={out}", *overrides]))


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "encoderlab.cli", *args], check=False, capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


def steps_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def interrupt_after_step_3(run_dir: Path) -> None:
    """What a run killed after its step-3 checkpoint (and a few more logged steps) leaves."""
    shutil.rmtree(run_dir / "checkpoints" / "step-000006")
    (run_dir / "checkpoints" / "latest").write_text("step-000003\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 6-step run (checkpoints step-000003 and step-000006); tests copy it. Step 3 is kept:
    a completed run removes its rolling checkpoints, and the tests cut the run back to step 3."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    pretrain(tiny(run_dir, *SHORT, "checkpoint_steps=[3]"), progress=False)
    return run_dir


def copy_run(finished: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(finished, target, symlinks=True)
    return target


# 1 -------------------------------------------------------------------------------------------
def test_resume_of_a_copied_run_directory_continues_the_copy_from_any_folder(tmp_path, finished):
    """`cp -a P Q; encoderlab pretrain Q --resume` trained P (the output_dir in Q/config.yaml), or, from
    another folder with a relative output_dir, found nothing to resume."""
    original = tmp_path / "runs" / "P"
    original.parent.mkdir()
    shutil.copytree(finished, original)
    interrupt_after_step_3(original)
    config = (original / "config.yaml").read_text()
    (original / "config.yaml").write_text(config.replace(f"output_dir: {finished}", "output_dir: runs/P"))
    assert "output_dir: runs/P" in (original / "config.yaml").read_text()
    copy = tmp_path / "moved" / "Q"
    shutil.copytree(original, copy)
    before = snapshot(original)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli("pretrain", str(copy), "--resume", "--no-progress", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"final checkpoint: {copy / 'checkpoints' / 'step-000006'}" in proc.stdout
    assert (copy / "checkpoints" / "latest").read_text().strip() == "step-000006"
    assert snapshot(original) == before  # P untouched
    assert not (elsewhere / "runs").exists()
    assert f"output_dir: {copy}" in (copy / "config.yaml").read_text()
    # the copy ends exactly where the uninterrupted run ended
    theirs, ours = load_file(str(finished / "checkpoints/step-000006/model.safetensors")), load_file(
        str(copy / "checkpoints/step-000006/model.safetensors"))
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    # --output naming another directory than the run directory is refused, not half-honoured
    proc = cli("pretrain", str(copy), "--resume", "--output", str(tmp_path / "other"), "--no-progress")
    assert proc.returncode == 2 and "names another directory" in proc.stderr
    assert not (tmp_path / "other").exists()


def test_run_directory_without_resume_and_resume_of_a_non_run_directory_are_refused(tmp_path, finished, capsys):
    assert main(["pretrain", str(finished), "--no-progress"]) == 2
    assert "is a run directory; continue it with" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", str(tmp_path / "empty"), "--resume", "--no-progress"]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err


# 2 -------------------------------------------------------------------------------------------
def test_a_fresh_run_refuses_to_replace_an_existing_run_unless_overwrite(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    before = snapshot(run_dir)
    proc = cli("pretrain", "tiny-clm", *SHORT, "--output", str(run_dir), "--no-progress")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("encoderlab: error: "), proc.stderr
    assert "already holds a run (2 checkpoint(s), up to step-000003, step-000006)" in lines[0]
    assert "--resume" in lines[0] and "--overwrite" in lines[0]
    assert snapshot(run_dir) == before  # nothing written, the kept final checkpoint included
    with pytest.raises(FileExistsError, match="already holds a run"):
        pretrain(tiny(run_dir, *SHORT), progress=False)
    with pytest.raises(ConfigError, match="exclusive"):
        pretrain(tiny(run_dir, *SHORT), resume=True, overwrite=True, progress=False)
    with pytest.raises(ConfigError, match="init_from .* lies inside .* --overwrite would delete"):
        pretrain(tiny(run_dir, "phases.0.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=1",
                      f"init_from={run_dir / 'checkpoints' / 'step-000006'}"), overwrite=True, progress=False)
    assert snapshot(run_dir) == before
    # --overwrite: the previous run goes (all of its checkpoints and records), the new one replaces it
    four = ["phases.0.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=1", "checkpoint_every=2",
            "log_every=1"]
    final = pretrain(tiny(run_dir, *four), overwrite=True, progress=False)
    assert final == run_dir / "checkpoints" / "step-000004"
    # none of the previous run's (step 3, 6); the new run's rolling step 2 went when it completed
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-000004"]
    assert steps_logged(run_dir) == [1, 2, 3, 4]


# 3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("checkpoint_every=0", "checkpoint_every must be a positive integer, got 0"),
    ("log_every=0", "log_every must be a positive integer, got 0"),
    ("log_every=-5", "log_every must be a positive integer, got -5"),
    ("keep_last=0", "keep_last must be a positive integer, got 0"),
    ("data.seq_len=0", "data.seq_len must be a positive integer, got 0"),
    ("global_batch_tokens=0", "global_batch_tokens must be a positive integer, got 0"),
    ("micro_batch_size=0", "micro_batch_size must be a positive integer, got 0"),
    ("data.mean_document_length=0", "data.mean_document_length must be a positive integer"),
    ("schedule.lr=0", "schedule.lr must be positive"),
    ("schedule.final_lr=-1e-4", "schedule.final_lr must be >= 0"),
    ("optimizer.eps=0", "optimizer.eps must be positive"),
    ("optimizer.grad_clip=0", "optimizer.grad_clip must be positive"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay must be >= 0"),
    ("optimizer.betas=[0.9, 1.0]", r"optimizer.betas must be two numbers in \[0, 1\)"),
    ("phases.0.mask_fraction=0.5", "mask_fraction \\+ random_fraction \\+ keep_fraction must be 1"),
    ("phases.0.random_fraction=-0.5", r"random_fraction -0.5: expected a fraction in \[0, 1\]"),
])
def test_intervals_counts_and_rates_are_validated_in_the_config(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny(tmp_path / "run", override, name="tiny-mlm40")


def test_a_zero_interval_is_refused_before_the_run_directory_is_written(tmp_path, capsys):
    for override in ("checkpoint_every=0", "log_every=0"):
        code = main(["pretrain", "tiny-clm", "phases.0.steps=4", "schedule.warmup_steps=1", "schedule.decay_steps=1",
                     override, "--output", str(tmp_path / "run"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and f"{override.split('=')[0]} must be a positive integer, got 0" in err
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()


# 4 -------------------------------------------------------------------------------------------
def truncate(file: Path, keep: int | None = None) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2 if keep is None else keep])


def test_truncated_weights_on_resume_export_and_import_name_the_file(tmp_path, finished, capsys):
    run_dir = copy_run(finished, tmp_path)
    interrupt_after_step_3(run_dir)
    weights = run_dir / "checkpoints" / "step-000003" / "model.safetensors"
    truncate(weights)
    with pytest.raises(CheckpointError, match=rf"{weights}: unreadable, truncated or not a safetensors file"):
        pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)
    assert latest_checkpoint(run_dir / "checkpoints") == weights.parent  # complete, but damaged: no silent fallback
    assert main(["export", str(weights.parent), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert f"{weights}: unreadable, truncated" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()

    hf = export_hf(load_checkpoint(finished / "checkpoints" / "step-000006"), tmp_path / "llama", "llama")
    truncate(hf / "model.safetensors", keep=5)
    capsys.readouterr()  # the export's progress output
    assert main(["import", str(hf), str(tmp_path / "imported")]) == 2
    err = capsys.readouterr().err
    assert f"{hf / 'model.safetensors'}: unreadable, truncated" in err and "SafetensorError" not in err
    assert not (tmp_path / "imported").exists()


class Payload:  # stands for anything that is not tensors and plain types
    pass


def test_damaged_or_pickled_optimizer_and_rng_states_are_refused_without_suggesting_weights_only_false(
        tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    interrupt_after_step_3(run_dir)
    checkpoint = run_dir / "checkpoints" / "step-000003"
    optimizer = checkpoint / "optimizer.pt"
    good = optimizer.read_bytes()
    with open(optimizer, "wb") as handle:
        pickle.dump({"state": Payload()}, handle, protocol=2)  # a plain pickle with an object
    torch.save({"state": {}, "param_groups": [], "extra": Payload()}, checkpoint / "rng.pt")
    with pytest.raises(CheckpointError) as caught:
        pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)
    assert str(optimizer) in str(caught.value) and "weights_only" not in str(caught.value)
    optimizer.write_bytes(good)
    with pytest.raises(CheckpointError, match=r"rng.pt: refused: the RNG state holds Python objects") as caught:
        pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)
    truncate(optimizer)
    with pytest.raises(CheckpointError, match=r"optimizer.pt: unreadable or truncated optimizer state"):
        pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)
    (checkpoint / "trainer_state.json").write_text('{"step": 3, ')
    # an unreadable trainer state makes the checkpoint incomplete: nothing else to resume from
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)


@pytest.mark.parametrize("key, value, message", [
    ("vocab_size", "384", r"vocab_size must be a positive integer, got '384'"),
    ("hidden_size", 64.0, r"hidden_size must be a positive integer, got 64.0"),
    ("num_key_value_heads", "2", r"num_key_value_heads must be a positive integer, got '2'"),
    ("num_hidden_layers", True, r"num_hidden_layers must be a positive integer, got True"),
    ("eos_token_id", "2", r"eos_token_id must be a non-negative integer \(or a list of them\) or null, got '2'"),
    ("rms_norm_eps", "1e-5", r"rms_norm_eps must be a positive number, got '1e-5'"),
])
def test_import_names_a_non_integer_field_of_the_hf_config(tmp_path, tiny_model, capsys, key, value, message):
    hf = export_hf(tiny_model, tmp_path / "llama", "llama")
    config = json.loads((hf / "config.json").read_text())
    config[key] = value
    (hf / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"config.json: {message}"):
        import_hf(hf, tmp_path / "out")
    capsys.readouterr()  # the export's progress output
    assert main(["import", str(hf), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and key in err
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_broken_safetensors_index(tmp_path, tiny_model):
    hf = export_hf(tiny_model, tmp_path / "llama", "llama")
    (hf / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model.safetensors.index.json: not a safetensors index"):
        import_hf(hf)
    (hf / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../elsewhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="weight_map names files outside"):
        import_hf(hf)


# 5 -------------------------------------------------------------------------------------------
def test_stale_temporaries_dangling_latest_and_duplicate_metrics_after_a_kill(tmp_path, finished, capsys):
    run_dir = copy_run(finished, tmp_path)
    checkpoints = run_dir / "checkpoints"
    shutil.rmtree(checkpoints / "step-000006")  # killed while writing step 6, after logging it
    (checkpoints / "latest").write_text("step-000006\n")  # dangling (a copy that lost it, a hand edit)
    stale_dir = checkpoints / ".step-000006.tmp-k3j2x9_q"  # what atomic_directory leaves when killed
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"\0" * 1000)
    (checkpoints / ".step-000003.old-4242").mkdir()
    (checkpoints / ".latest.tmp-a8b7c6").write_text("step-000006\n")
    unrelated = [checkpoints / ".keep-me", checkpoints / "notes.txt", checkpoints / "step-000003.tmp-user"]
    for path in unrelated:
        path.write_text("mine\n")
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "lo')  # the kill cut a line
    assert steps_logged_lenient(run_dir) == [1, 2, 3, 4, 5, 6]
    assert resolve_latest(checkpoints)[0] == checkpoints / "step-000003"

    final = pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)
    out = capsys.readouterr().out
    assert "latest names 'step-000006', which is missing or incomplete; using the newest complete checkpoint, " \
           "step-000003" in out
    assert "removed 3 stale temporary checkpoint" in out
    assert "metrics.jsonl: dropped 4 record(s) of steps after step 3" in out
    assert final == checkpoints / "step-000006"
    assert not stale_dir.exists() and not (checkpoints / ".step-000003.old-4242").exists()
    assert not (checkpoints / ".latest.tmp-a8b7c6").exists()
    assert all(path.read_text() == "mine\n" for path in unrelated)
    assert steps_logged(run_dir) == [1, 2, 3, 4, 5, 6]  # each step once
    theirs, ours = load_file(str(finished / "checkpoints/step-000006/model.safetensors")), load_file(
        str(final / "model.safetensors"))
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)


def steps_logged_lenient(run_dir: Path) -> list[int]:
    steps = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass
    return steps


def test_incomplete_latest_falls_back_and_no_complete_checkpoint_is_nothing_to_resume(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path)
    checkpoints = run_dir / "checkpoints"
    (checkpoints / "step-000006" / "rng.pt").unlink()  # incomplete (an interrupted copy)
    path, note = resolve_latest(checkpoints)
    assert path == checkpoints / "step-000003" and "missing or incomplete" in note
    (checkpoints / "latest").unlink()
    path, note = resolve_latest(checkpoints)
    assert path == checkpoints / "step-000003" and "there is no latest" in note
    shutil.rmtree(checkpoints / "step-000003")
    assert resolve_latest(checkpoints) == (None, None)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(tiny(run_dir, *SHORT), resume=True, progress=False)


# 6 -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from encoderlab.data import iter_documents, parse_source, prepare
    from encoderlab.data.tokenizer import tokenizer_for_shards

    out = tmp_path_factory.mktemp("shards") / "data"
    source = parse_source("toyworld", toyworld_documents=300)
    tokenizer, name, origin = tokenizer_for_shards(out, train_vocab=320, documents=iter_documents(source))
    prepare(source, tokenizer, name, out, mask_origin=origin, progress=False)
    return out


def shard_run(tmp_path: Path, data: Path, vocab_size: int = 320) -> PretrainConfig:
    return tiny(tmp_path / "run", f"data.source={data}", f"model.vocab_size={vocab_size}", *SHORT)


def test_training_refuses_a_tokenizer_other_than_the_shards_one(tmp_path, shards):
    from encoderlab.data import train_tokenizer

    data = tmp_path / "data"
    shutil.copytree(shards, data)
    trainer = Trainer(shard_run(tmp_path, data), DistributedContext(), progress=False)
    assert trainer.tokenizer_dir == data / "tokenizer"  # the matching tokenizer is accepted
    train_tokenizer(["another corpus entirely, " * 20, "with other words and merges " * 20], 320, tmp_path / "other")
    shutil.rmtree(data / "tokenizer")
    shutil.copytree(tmp_path / "other", data / "tokenizer")
    with pytest.raises(ConfigError, match=r"the tokenizer in .*tokenizer .* is not the one the shards were made with"):
        Trainer(shard_run(tmp_path, data), DistributedContext(), progress=False)
    assert not (tmp_path / "run").exists()


def test_token_ids_beyond_the_model_vocabulary_are_refused_before_training(tmp_path, shards):
    data = tmp_path / "data"
    shutil.copytree(shards, data)
    manifest = json.loads((data / "manifest.json").read_text())
    tokens_file = data / f"{manifest['shards'][0]['name']}.tokens.npy"
    tokens = np.load(tokens_file, mmap_mode="r+")
    tokens[5] = 400  # beyond the 320 tokens of the model (a shard that does not match its manifest)
    tokens.flush()
    del tokens
    with pytest.raises(ConfigError, match=r"holds token id 400, beyond the model's vocabulary; the model's vocab_size "
                                          r"is 320"):
        Trainer(shard_run(tmp_path, data), DistributedContext(), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_token_id_beyond_the_vocabulary_in_a_batch_names_the_sample():
    from encoderlab.training.data import SyntheticSource, micro_batches

    source = SyntheticSource(vocab_size=64, seq_len=16, mean_document_length=8, seed=0)
    micro_batches(source, 0, 4, 2, 0, 1, torch.device("cpu"), vocab_size=64)
    with pytest.raises(ConfigError, match=r"sample \d+ \(step 3\) holds token id \d+, outside the model's vocabulary "
                                          r"0\.\.19"):
        micro_batches(source, 3, 4, 2, 0, 1, torch.device("cpu"), vocab_size=20)


# 7 -------------------------------------------------------------------------------------------
def test_disk_full_while_writing_a_checkpoint_leaves_nothing_and_keeps_latest(tmp_path, tiny_config, monkeypatch):
    import safetensors.torch

    model = build_encoder(tiny_config, seed=0)
    directory = tmp_path / "checkpoints"
    state = {k: v for k, v in model.state_dict().items()}

    def save(step: int):
        return save_training_checkpoint(directory, state, tiny_config, {"state": {}, "param_groups": []},
                                        TrainingState(step=step, samples_seen=0, tokens_seen=0, run_config={}))

    save(2)
    real = safetensors.torch.save_file

    def full_disk(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])  # half written...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError) as caught:
        save(4)
    assert isinstance(caught.value, CheckpointWriteError) and caught.value.errno == errno.ENOSPC
    message = str(caught.value)
    assert f"{directory / 'step-000004'}: writing the checkpoint failed (No space left on device)" in message
    assert "latest still names step-000002" in message and "\n" not in message
    assert sorted(p.name for p in directory.iterdir()) == ["latest", "step-000002"]  # no temporary directory
    assert (directory / "latest").read_text().strip() == "step-000002"

    # torch.save reports a full disk as a RuntimeError: the same OSError, the same clean directory
    monkeypatch.setattr(safetensors.torch, "save_file", real)

    def torch_full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 2048 vs 1024\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", torch_full)
    with pytest.raises(CheckpointWriteError, match="file write failed") as caught:
        save(4)
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in directory.iterdir()) == ["latest", "step-000002"]


def test_disk_full_during_a_run_stops_it_with_the_last_good_checkpoint_latest(tmp_path, monkeypatch, capsys):
    import safetensors.torch

    real, calls = safetensors.torch.save_file, []

    def fails_second_time(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fails_second_time)
    run_dir = tmp_path / "run"
    assert main(["pretrain", "tiny-clm", *SHORT, "--output", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("encoderlab: error: "), err
    assert "step-000006: writing the checkpoint failed (No space left on device)" in err
    assert "latest still names step-000003" in err
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-000003"]
    assert (checkpoints / "latest").read_text().strip() == "step-000003"


def test_negative_seeds_are_refused_in_the_config(tmp_path):
    for override, key in (("seed=-1", "seed"), ("data.seed=-3", "data.seed")):
        with pytest.raises(ConfigError, match=rf"{key} must be a non-negative integer"):
            tiny(tmp_path / "run", override)
