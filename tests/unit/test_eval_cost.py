"""The evaluation priced before it runs: runs, tokens, corpus passes and device-hours per checkpoint."""

import json
import subprocess
import sys

import pytest

from encoderlab.evaluation.finetune import finetune
from encoderlab.evaluation.protocol import FinetuneConfig
from encoderlab.evaluation.sizes import PAPER_SIZES, task_size
from encoderlab.evaluation.tasks import TOYWORLD_TASKS, load_task
from encoderlab.model.config import ModelConfig
from encoderlab.study import load_study
from encoderlab.study.cost import H100_THROUGHPUT, ThroughputTable
from encoderlab.study.eval_cost import checkpoint_cost
from encoderlab.study.runner import plan_study
from testkit import FAST

PAPER = ("objectives", "masking-ratio", "data-efficiency", "stability", "two-stage", "cpt")
GRID = ([1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4], [0, 1, 2, 3, 4])


@pytest.mark.parametrize("study", PAPER)
def test_every_paper_study_prices_its_evaluation_beside_its_pretraining(study):
    plan = plan_study(load_study(f"paper-{study}"))
    evaluation = plan["evaluation"]
    assert evaluation["finetuning_runs"] == plan["finetuning_runs"] > 0
    assert evaluation["device_hours"] > 0 and plan["evaluation_device_hours"] == round(evaluation["device_hours"], 1)
    assert plan["total_device_hours"] == pytest.approx(plan["device_hours"] + plan["evaluation_device_hours"], abs=0.11)
    assert sum(r["checkpoints"] for r in evaluation["runs"]) == plan["checkpoints"]
    for run in evaluation["runs"]:
        cost = run["per_checkpoint"]
        assert cost["finetuning_runs"] == plan["finetuning_runs_per_checkpoint"]
        # ten training sets: NQ and MLDR are scored with the MS MARCO model of each (LR, seed)
        assert cost["trainings"] == 10 * 30 and cost["corpus_passes"] == 3 * 30
        assert cost["per_task"]["nq"]["trainings"] == 0 and cost["per_task"]["msmarco"]["corpus_passes"] == 30
        assert run["device_hours"] == pytest.approx(run["checkpoints"] * cost["device_hours"])
    assert set(evaluation["task_sizes"]) == set(load_study(f"paper-{study}").evaluation.tasks)
    assert "lower bound" in evaluation["cost_model"]


def test_the_counts_follow_the_protocol_and_the_declared_sizes():
    model = ModelConfig.from_name("610m")
    cost = checkpoint_cost(["msmarco", "nq", "conll2003", "sst2"], *GRID, FinetuneConfig(), model,
                           ThroughputTable.shipped())
    ms, nq, conll, sst2 = (cost["per_task"][t] for t in ("msmarco", "nq", "conll2003", "sst2"))
    size = PAPER_SIZES["msmarco"]
    # MS MARCO: 1,000 steps x 32 (query + positive); one corpus pass per run serves validation and test queries
    assert ms["training_steps"] == 30 * 1000
    assert ms["training_tokens"] == round(30 * 1000 * 32 * (size.tokens + size.doc_tokens))
    assert ms["evaluation_tokens"] == round(30 * (6_980 * 12.0)) + round(30 * 43 * 12.0) + round(30 * 8_841_823 * 80.0)
    assert nq["evaluation_tokens"] == round(30 * 3_452 * 14.0) + round(30 * 2_681_468 * 110.0)
    assert conll["training_steps"] == 30 * -(-14_041 // 32)  # TC: one full epoch, past max_steps
    assert sst2["training_steps"] == 30 * 1000
    assert cost["finetuning_runs"] == 120 and cost["trainings"] == 90
    # device-hours: FLOPs at the FLOP/s the H100 sustained on 610m CLM pretraining
    rate, _, seq = H100_THROUGHPUT[("610m", "clm")]
    sustained = rate * model.flops_per_token(seq)
    assert cost["device_hours"] == pytest.approx(cost["flops"] / sustained / 3600)
    # a capped evaluation prices fewer examples; a shorter max_length cuts long documents
    capped = checkpoint_cost(["sst2"], *GRID, FinetuneConfig(max_eval_examples=100), model, ThroughputTable.shipped())
    assert capped["per_task"]["sst2"]["evaluation_tokens"] == round(30 * 100 * 13.3) * 2
    short = checkpoint_cost(["mldr-en"], *GRID, FinetuneConfig(max_length=512), model, ThroughputTable.shipped())
    assert short["per_task"]["mldr-en"]["evaluation_tokens"] == round(30 * 800 * 15.0) + round(30 * 200_000 * 512)
    assert short["per_task"]["msmarco"]["runs"] == 0 and short["per_task"]["msmarco"]["trainings"] == 30


def test_a_preset_without_a_throughput_row_is_priced_in_tokens_and_said_to_lack_hours():
    cost = checkpoint_cost(["toy-sentiment"], [1e-3], [0], FinetuneConfig(), ModelConfig.from_name("mini"),
                           ThroughputTable.shipped())
    assert cost["device_hours"] is None and cost["no_throughput_for"] == ["mini/clm"]
    assert cost["training_tokens"] > 0 and cost["evaluation_tokens"] > 0


@pytest.mark.parametrize("name", TOYWORLD_TASKS)
def test_measured_toyworld_sizes_are_what_a_run_trains_on(tiny_checkpoint, name):
    size = task_size(name)
    result = finetune(str(tiny_checkpoint), load_task(name), lr=1e-3, seed=0, config=FAST)
    assert result.effective["train_examples"] == size.train  # IR: query-positive pairs; QA: one window each
    assert size.source.startswith("measured")


def test_dry_run_prints_the_evaluation_price(tmp_path):
    records = [{"preset": "demo", "objective": objective, "code": "encoderlab", "status": "ok", "variant": {},
                "layout": "documents", "tokens_per_s": 20_000.0, "mask_ratio": ratio, "seq_len": 256}
               for objective, ratio in (("clm", None), ("mlm", 0.4))]
    (tmp_path / "throughput.json").write_text(json.dumps({"env": {"device": "cpu"}, "records": records}))
    out = subprocess.run([sys.executable, "-m", "encoderlab.cli", "study", "run", "toyworld-demo", "--dry-run",
                          "--throughput", str(tmp_path / "throughput.json")], capture_output=True, text=True,
                         check=True).stdout
    assert "evaluate CLM" in out and "toy-retrieval" in out and "6 corpus passes" in out
    study_line = next(line for line in out.splitlines() if line.startswith("study: "))
    assert "n/a" not in study_line and "evaluation =" in study_line and "cpu-hours" in study_line


def test_pool_ranking_is_priced_at_the_judged_pool():
    model, table = ModelConfig.from_name("210m"), ThroughputTable.shipped()
    full = checkpoint_cost(["msmarco", "nq"], *GRID, FinetuneConfig(), model, table)
    pool = checkpoint_cost(["msmarco", "nq"], *GRID, FinetuneConfig(retrieval_ranking="pool"), model, table)
    assert pool["per_task"]["msmarco"]["evaluation_tokens"] == round(30 * 6_980 * 12.0) + round(30 * 43 * 12.0) \
        + round(30 * 16_697 * 80.0)
    assert pool["retrieval_ranking"] == "pool" and pool["training_tokens"] == full["training_tokens"]
    assert pool["device_hours"] < full["device_hours"] / 50
