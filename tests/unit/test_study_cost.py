"""A study's cost before it runs; CPT continues its parent's data; real tokens of variable-length steps."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from encoderlab.config import ConfigError
from encoderlab.study import load_study
from encoderlab.study.cost import H100_THROUGHPUT
from encoderlab.study.runner import plan_study
from encoderlab.training import PretrainConfig, apply_overrides, pretrain, run_preset
from encoderlab.training.data import micro_batches
from encoderlab.training.distributed import DistributedContext
from encoderlab.training.loop import Trainer

PAPER = ("objectives", "masking-ratio", "data-efficiency", "stability", "two-stage", "cpt")


def tiny(name: str, out: Path, *overrides: str) -> PretrainConfig:
    return PretrainConfig.from_dict(apply_overrides(run_preset(name).to_dict(), [f"output_dir={out}", *overrides]))


def test_dry_run_json_prices_every_paper_study():
    out = subprocess.run([sys.executable, "-m", "encoderlab.cli", "study", "run", "paper-cpt", "--dry-run", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(plan_study(load_study("paper-cpt"))))  # one JSON object only
    for study in PAPER:
        plan = plan_study(load_study(f"paper-{study}"))
        assert plan["device_hours"] > 0 and plan["finetuning_runs"] > 0, study
        assert plan["pretraining_steps"] == sum(r["steps"] for r in plan["pretraining_runs"])
        assert plan["pretraining_tokens"] == plan["pretraining_steps"] * 2_359_296  # packed: every token real
    two_stage = plan_study(load_study("paper-two-stage"))
    assert two_stage["pretraining_steps"] == 256_000
    # a 610m CLM 42k run: 42k x 2.36M tokens at the measured 99,658 tokens/s of one H100
    clm = next(r for r in two_stage["pretraining_runs"] if r["run"] == "610m-clm-42k")
    assert clm["device_hours"] == pytest.approx(42_000 * 2_359_296 / H100_THROUGHPUT[("610m", "clm")][0] / 3600)


def test_human_dry_run_shows_steps_tokens_and_hours_per_stage():
    out = subprocess.run([sys.executable, "-m", "encoderlab.cli", "study", "run", "paper-two-stage", "--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    assert "pretraining: 20 runs, 256,000 optimizer steps (branches counted once)" in out
    assert "H100-hours projected" in out and "fine-tuning: 20 checkpoints x 360 runs" in out
    assert "32000 steps, branch at step 10000" in out


def test_throughput_override_from_a_benchmarks_file(tmp_path):
    record = {"preset": "610m", "objective": "clm", "code": "encoderlab", "status": "ok", "variant": {},
              "layout": "documents", "tokens_per_s": 2 * H100_THROUGHPUT[("610m", "clm")][0], "mask_ratio": None,
              "seq_len": 2048}
    (tmp_path / "throughput.json").write_text(json.dumps({"env": {"gpu": "MyGPU"}, "records": [record]}))
    base = plan_study(load_study("paper-stability"))
    mine = plan_study(load_study("paper-stability"), throughput=str(tmp_path / "throughput.json"))
    rows = {r["run"]: r for r in base["pretraining_runs"]}, {r["run"]: r for r in mine["pretraining_runs"]}
    assert rows[1]["610m-clm"]["device_hours"] == pytest.approx(rows[0]["610m-clm"]["device_hours"] / 2)
    assert rows[1]["610m-mlm40"]["device_hours"] == rows[0]["610m-mlm40"]["device_hours"]  # not measured: shipped
    assert mine["device"] == "MyGPU"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not a pretrain_throughput.py output"):
        plan_study(load_study("paper-stability"), throughput=str(tmp_path / "bad.json"))


def test_cpt_continues_after_the_parents_data_by_default(tmp_path):
    short = ["phases.0.steps=6", "schedule.warmup_steps=1", "schedule.decay_steps=2"]
    parent = pretrain(tiny("tiny-clm", tmp_path / "clm", *short), progress=False)
    ctx = DistributedContext()
    cpt = Trainer(tiny("tiny-clm-dec-mlm40", tmp_path / "cpt", *short, f"init_from={parent}"), ctx, progress=False)
    assert cpt.config.data.offset == 6 * 8 and cpt.config.data.start == "continue"  # 6 steps x 8 samples
    first = micro_batches(cpt.source, 0, 8, 4, 0, 1, ctx.device, offset=cpt.config.data.offset)[0]
    assert first.sample_index[0].item() == 48  # the parent read samples 0..47
    cpt.run()
    recorded = yaml.safe_load((tmp_path / "cpt" / "config.yaml").read_text())["data"]
    assert recorded["start"] == "continue" and recorded["offset"] == 48
    # a CPT of the CPT continues after both
    grand = Trainer(tiny("tiny-clm-dec-mlm40", tmp_path / "cpt2", *short,
                         f"init_from={tmp_path / 'cpt' / 'checkpoints' / 'step-000006'}"), ctx, progress=False)
    assert grand.config.data.offset == 96
    zero = Trainer(tiny("tiny-clm-dec-mlm40", tmp_path / "z", *short, f"init_from={parent}", "data.start=zero"),
                   ctx, progress=False)
    assert zero.config.data.offset == 0
    with pytest.raises(ConfigError, match=r"init_from .*step 6\) was trained on other data \(seed: parent 0 vs run 5\)"
                                          r".*data.start=zero"):
        Trainer(tiny("tiny-clm-dec-mlm40", tmp_path / "d", *short, f"init_from={parent}", "data.seed=5"), ctx,
                progress=False)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from encoderlab.data import iter_documents, parse_source, prepare
    from encoderlab.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("vl")
    tokenizer = train_tokenizer(iter_documents(parse_source("toyworld", toyworld_documents=600)), 400,
                                root / "tokenizer")
    prepare(parse_source("toyworld", toyworld_documents=600), tokenizer, "toy", root / "shards", progress=False)
    return root / "shards"


def test_variable_length_samples_are_packed_and_real_tokens_reported(tmp_path, shards):
    from encoderlab.data.packed import PackedDataset
    from encoderlab.training.data import PackedCuts

    unpacked = PackedDataset(shards, 128, seed=0, variable_length=True)
    packed = PackedCuts(PackedDataset(shards, 128, seed=0))
    # row i of the packed source holds both pieces of one cut sequence; the cut is a document boundary
    pieces = {}
    for index in range(len(unpacked)):
        ids, docs = unpacked.sample(index)
        real = ids[docs >= 0]
        pieces[tuple(real.tolist())] = docs[docs >= 0]
    for index in range(8):
        ids, docs = packed.sample(index)
        assert (docs >= 0).sum() == 128 or index == len(packed) - 1
        boundaries = np.flatnonzero(np.diff(docs) != 0) + 1
        found = [b for b in boundaries if tuple(ids[:b].tolist()) in pieces and tuple(ids[b:].tolist()) in pieces]
        assert found, index  # the two unpacked samples of that sequence, back to back
    # metrics: real tokens per step; packed = every token, unpacked ~ half
    vocab = json.loads((shards / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    per_step = {}
    for pack in (True, False):
        config = tiny("tiny-mlm40", tmp_path / f"p{pack}", "phases.0.steps=4", "schedule.warmup_steps=1",
                      "schedule.decay_steps=1", "log_every=2", f"data.source={shards}", "data.variable_length=true",
                      f"data.pack={str(pack).lower()}", f"model.vocab_size={vocab}", "model.mask_token_id=3")
        pretrain(config, progress=False)
        records = [json.loads(line) for line in (tmp_path / f"p{pack}" / "metrics.jsonl").read_text().splitlines()]
        assert all(r["real_tokens_per_s"] > 0 for r in records)
        per_step[pack] = np.mean([r["real_tokens_per_step"] for r in records])
    assert per_step[True] == 8 * 128  # every token of the 8 x 128 step is real
    assert 0.3 < per_step[False] / per_step[True] < 0.7  # one piece per row: ~half padding
