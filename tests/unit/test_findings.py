"""The paper-findings section, the random-init baseline and summary.json.

Verdicts are checked on per-seed scores whose right answer is known (a clear win, a clear loss,
noise, a margin), then on a real results database filled through the store's public API for
checkpoints of a study (known answers again, read back through the report), and once end to end
on a tiny study that pretrains, fine-tunes and reports."""

import json
import math

import numpy as np
import pytest

from encoderlab.evaluation.stats import RunScore, lr_spread_by_seed, paired_seed_test, summarize, verdict
from encoderlab.study import load_study
from encoderlab.study.findings import FINDINGS, evaluate_findings, evaluate_pair

SEEDS = [0, 1, 2, 3, 4]


def test_verdicts_on_known_per_seed_scores():
    rng = np.random.default_rng(0)
    base = {s: 70 + 3 * rng.standard_normal() for s in SEEDS}  # seed effects shared by both models (paired)

    def shifted(delta, noise=0.3, seed=1):
        r = np.random.default_rng(seed)
        return {s: v + delta + noise * r.standard_normal() for s, v in base.items()}

    win = paired_seed_test(shifted(5.0), base)
    assert verdict(win) == "reproduced" and win["p_value"] < 0.001 and win["ci_low"] > 0 and win["n"] == 5
    loss = paired_seed_test(shifted(-5.0), base)
    assert verdict(loss) == "contradicted" and loss["difference"] < 0
    noise = paired_seed_test(shifted(0.0, noise=2.0), base)
    assert verdict(noise) == "inconclusive" and noise["p_value"] > 0.05
    # non-inferiority: within the margin (slightly worse) is "competitive"; far below it is not
    assert verdict(paired_seed_test(shifted(-0.3, noise=0.1), base, margin=1.0)) == "reproduced"
    assert verdict(paired_seed_test(shifted(-3.0, noise=0.1), base, margin=1.0)) == "contradicted"
    assert verdict(paired_seed_test(shifted(-1.0, noise=1.0), base, margin=1.0)) == "inconclusive"
    # pairing is by seed: only common seeds count, and one seed is no test
    partial = paired_seed_test({0: 80.0, 1: 81.0, 7: 0.0}, {0: 70.0, 1: 72.0, 9: 100.0})
    assert partial["seeds"] == [0, 1] and partial["differences"] == [10.0, 9.0]
    one = paired_seed_test({0: 80.0}, {0: 70.0})
    assert math.isnan(one["p_value"]) and verdict(one) == "inconclusive"
    # a constant difference over seeds is decisive; none at all is not
    assert paired_seed_test({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})["p_value"] == 0.0
    assert verdict(paired_seed_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})) == "inconclusive"


def test_lr_spread_is_per_seed_and_skips_diverged_runs():
    runs = [RunScore(1e-3, 0, 50, 50), RunScore(3e-4, 0, 40, 42), RunScore(1e-4, 0, 30, 30),
            RunScore(1e-3, 1, 50, 55), RunScore(3e-4, 1, math.nan, math.nan), RunScore(1e-4, 1, 50, 51),
            RunScore(1e-3, 2, math.nan, math.nan), RunScore(3e-4, 2, 40, 40)]
    assert lr_spread_by_seed(runs) == {0: 20, 1: 4}  # seed 2 has one finite LR: no spread


# -- a results database with known answers --------------------------------------------------------

LRS = [1e-3, 3e-4]
TASKS = ["toy-sentiment", "toy-nli", "toy-ner", "toy-qa", "toy-retrieval"]
STUDY = """
name: known-answers
runs:
  - {name: CLM, preset: tiny-clm, overrides: [phases.0.steps=12, schedule.warmup_steps=2, schedule.decay_steps=2]}
  - {name: MLM, preset: tiny-mlm40, overrides: [phases.0.steps=12, schedule.warmup_steps=2, schedule.decay_steps=2]}
  - {name: CLM-MLM, preset: tiny-clm-mlm40,
     overrides: [phases.0.steps=6, phases.1.steps=6, schedule.warmup_steps=2, schedule.decay_steps=2]}
  - {name: random-init, preset: tiny-mlm40, random_init: true}
evaluation:
  tasks: [toy-sentiment, toy-nli, toy-ner, toy-qa, toy-retrieval]
  lrs: [1.0e-3, 3.0e-4]
  seeds: [0, 1, 2, 3, 4]
  max_steps: 3
  batch_size: 8
  max_length: 96
  protocol: {max_question_tokens: 16, doc_stride: 32, tc_full_epoch: false}
"""
# test score at the best LR per model and category; the other LR scores ``LOW_LR_DROP`` less
MEANS = {"MLM": {"SC": 80, "TC": 90, "QA": 30, "IR": 50}, "CLM": {"SC": 70, "TC": 89.8, "QA": 40, "IR": 50},
         "CLM-MLM": {"SC": 80, "TC": 90, "QA": 30, "IR": 50}, "random-init": {"SC": 10, "TC": 10, "QA": 10, "IR": 10}}
LOW_LR_DROP = {"MLM": 20.0, "CLM": 1.0, "CLM-MLM": 20.0, "random-init": 0.0}
CATEGORY = {"toy-sentiment": "SC", "toy-nli": "SC", "toy-ner": "TC", "toy-qa": "QA", "toy-retrieval": "IR"}


def _scores(model, task, seed):
    rng = np.random.default_rng([SEEDS.index(seed), TASKS.index(task), list(MEANS).index(model)])
    # the seed's effect (small: seeds of different models are not paired by the inference procedure)
    shared = 0.1 * np.random.default_rng([seed, TASKS.index(task)]).standard_normal()
    best = MEANS[model][CATEGORY[task]] + shared + 0.2 * rng.standard_normal()
    return {1e-3: best, 3e-4: best - LOW_LR_DROP[model] + 0.2 * rng.standard_normal()}


def _known_study(root):
    from encoderlab.evaluation.protocol import protocol_id, protocol_identity
    from encoderlab.evaluation.store import ResultsStore, RunRecord, model_fingerprint
    from encoderlab.model import ModelConfig, build_encoder, save_checkpoint
    from encoderlab.study.baseline import write_random_init
    from encoderlab.study.plan import StudyPlan

    (root / "spec.yaml").write_text(STUDY)
    spec = load_study(str(root / "spec.yaml"), output_dir=str(root / "out"))
    identity = protocol_identity(spec.evaluation.finetune_config(), "fp32")
    with ResultsStore(spec.study_dir / "results.sqlite") as store:
        plan = StudyPlan.resolve(spec)
        for index, ref in enumerate(plan.checkpoints):
            run = next(r for r in spec.runs if r.name == ref.run)
            if run.random_init:
                write_random_init(plan.configs[run.name], run.preset)
            else:  # stands in for a pretrained checkpoint: the report needs its weights' fingerprint only
                save_checkpoint(build_encoder(ModelConfig.from_name("tiny"), seed=index + 1), ref.path)
            fingerprint = model_fingerprint(ref.path)
            for task in TASKS:
                for seed in SEEDS:
                    for lr, score in _scores(ref.run, task, seed).items():
                        store.add(RunRecord(
                            model_fingerprint=fingerprint, model_name=str(ref.path), dataset=task, lr=lr, seed=seed,
                            protocol_version=protocol_id(identity), data_fingerprint=f"data-{task}", status="ok",
                            validation_score=score, test_score=score, protocol=identity))
    return spec


@pytest.fixture(scope="module")
def known_study(tmp_path_factory):
    from encoderlab.study.report import write_report

    from encoderlab.study.plan import StudyPlan

    spec = _known_study(tmp_path_factory.mktemp("known"))
    write_report(StudyPlan.resolve(spec))
    return spec


def test_findings_from_a_results_database_with_known_answers(known_study):
    summary = json.loads((known_study.study_dir / "summary.json").read_text())
    verdicts = {(f["id"], f["a"], f["b"]): f["verdict"] for f in summary["findings"]}
    assert verdicts[("mlm>clm:SC", "MLM", "CLM")] == "reproduced"  # 80 vs 70
    assert verdicts[("mlm>clm:QA", "MLM", "CLM")] == "contradicted"  # 30 vs 40
    assert verdicts[("mlm>clm:IR", "MLM", "CLM")] == "inconclusive"  # equal, noise
    assert verdicts[("clm>=mlm:TC", "CLM", "MLM")] == "reproduced"  # 0.2 below, margin 1
    assert verdicts[("clm-lr-stable", "MLM", "CLM")] == "reproduced"  # spreads 20 vs 1
    for category in ("SC", "TC", "QA", "IR"):  # CLM-MLM scores like MLM: nothing to decide
        assert verdicts[(f"clm->mlm>mlm:{category}", "CLM-MLM", "MLM")] == "inconclusive"
    for model in ("CLM", "MLM", "CLM-MLM"):
        assert verdicts[("pretrained>random", model, "random-init")] == "reproduced"
    # no intermediate checkpoints and no CPT runs: those findings are omitted, not "inconclusive"
    assert not any(f["id"].startswith(("cpt", "clm>mlm:early")) for f in summary["findings"])
    assert not any(f["a"] == "random-init" or (f["b"] == "random-init" and not f["id"].startswith("pretrained"))
                   for f in summary["findings"])
    sc = next(f for f in summary["findings"] if f["id"] == "mlm>clm:SC")
    assert sc["tasks"] == ["toy-sentiment", "toy-nli"] and sc["n"] == 5 and sc["seeds"] == SEEDS
    assert sc["a_mean"] == pytest.approx(80, abs=1.5) and 0 < sc["p"] < 0.05 and "p_holm" in sc
    assert sc["difference"] == pytest.approx(10, abs=0.5) and sc["ci_low"] < 10 < sc["ci_high"]
    spread = next(f for f in summary["findings"] if f["id"] == "clm-lr-stable")
    assert spread["a_mean"] == pytest.approx(20, abs=0.5) and spread["b_mean"] == pytest.approx(1, abs=0.5)


def test_report_shows_the_findings_in_markdown_and_html(known_study):
    markdown = (known_study.study_dir / "report.md").read_text()
    section = markdown.split("## Paper findings")[1].split("\n## ")[0]
    assert "Welch-Satterthwaite" in section and "| MLM beats CLM on sequence classification |" in section
    assert "tokens/parameter (paper: 163)" in section  # every verdict with its regime
    assert "| MLM | CLM | toy-sentiment, toy-nli |" in section and "**contradicted**" in section
    assert "| random-init (baseline: not pretrained) |" in markdown.split("## Score per fine-tuning LR")[0]
    html = (known_study.study_dir / "report.html").read_text()
    findings_html = html.split('<div id="findings">')[1].split("</div>")[0]
    assert "<td><b>reproduced at " in findings_html and "<td><b>contradicted at " in findings_html


def test_summary_json_schema_and_numbers_match_the_database(known_study):
    from encoderlab.evaluation.store import ResultsStore, model_fingerprint
    from encoderlab.evaluation.sweep import run_scores

    path = known_study.study_dir / "summary.json"
    summary = json.loads(path.read_text())
    assert set(summary) >= {"models", "findings", "protocol", "study", "lrs", "seeds", "categories"}
    assert set(summary["models"]) == {"CLM", "MLM", "CLM-MLM", "random-init"}
    assert summary["protocol"]["max_steps"] == 3 and summary["seeds"] == SEEDS
    entry = summary["models"]["CLM"]["toy-qa"]
    assert {"mean", "ci_low", "ci_high", "seeds"} <= set(entry) and len(entry["seeds"]) == 5
    with ResultsStore(path.parent / "results.sqlite", create=False) as store:
        ref = path.parent / "runs" / "CLM" / "checkpoints" / "step-000012"
        expected = summarize(run_scores(store.records(model_fingerprint(ref), "toy-qa")))
    assert entry["mean"] == pytest.approx(expected.mean) and entry["ci_low"] == pytest.approx(expected.ci_low)
    assert [s["score"] for s in entry["seeds"]] == pytest.approx(expected.per_seed) and entry["lr"] == expected.lr
    assert {f["claim"] for f in summary["findings"]} <= {f.claim for f in FINDINGS}
    assert all({"claim", "verdict", "p"} <= set(f) for f in summary["findings"])
    assert not list(path.parent.glob(".summary.json.tmp-*"))  # written through a temporary file and a rename


def test_random_init_is_seeded_traceable_and_costs_nothing(known_study, tmp_path):
    import dataclasses

    from encoderlab.evaluation.store import model_fingerprint
    from encoderlab.model import load_checkpoint
    from encoderlab.model.checkpoint import read_checkpoint_meta
    from encoderlab.study.baseline import write_random_init
    from encoderlab.study.plan import pretrain_config
    from encoderlab.study.runner import plan_study

    spec = known_study
    run = next(r for r in spec.runs if r.random_init)
    config = pretrain_config(spec, run, None)
    first = spec.study_dir / "runs" / "random-init" / "checkpoints" / "step-000000"
    again = write_random_init(dataclasses.replace(config, output_dir=str(tmp_path / "again")), run.preset)
    assert model_fingerprint(again) == model_fingerprint(first)  # the same weights on every rerun
    other = write_random_init(dataclasses.replace(config, output_dir=str(tmp_path / "seed1"), seed=1), run.preset)
    assert model_fingerprint(other) != model_fingerprint(first)
    assert read_checkpoint_meta(first)["random_init"] == {**read_checkpoint_meta(first)["random_init"],
                                                          "seed": 0, "preset": "tiny-mlm40", "pretraining_steps": 0}
    from encoderlab.model import build_encoder

    initial = build_encoder(config.model, seed=config.seed).state_dict()  # what a pretraining run starts from
    assert all((load_checkpoint(first).state_dict()[k] == v).all() for k, v in initial.items())
    plan = {r["run"]: r for r in plan_study(spec)["pretraining_runs"]}
    assert plan["random-init"]["steps"] == 0 and plan["random-init"]["checkpoints"] == 1


def test_findings_never_compare_runs_of_different_data():
    from encoderlab.study.findings import Finding

    def entry(model, group, scores):
        runs = [RunScore(1e-3, s, v, v) for s, v in scores.items()]
        return {"summary": summarize(runs), "runs": runs, "model": model, "group": group}

    finding = Finding(id="x", claim="A beats B on SC", paper="", a="mlm", b="clm", category="SC")
    a = {s: 80.0 + s for s in SEEDS}
    b = {s: 70.0 + s for s in SEEDS}
    results = {"A": {"toy-sentiment": entry("A", ("p", "d1"), a), "toy-nli": entry("A", ("p", "d1"), a)},
               "B": {"toy-sentiment": entry("B", ("p", "d2"), b), "toy-nli": entry("B", ("p", "d1"), b)}}
    row = evaluate_pair(finding, results, "A", "B", ["toy-sentiment", "toy-nli"])
    assert row["tasks"] == ["toy-nli"] and "toy-sentiment" in row["skipped"][0]
    results["B"]["toy-nli"]["group"] = ("other protocol", "d1")
    assert evaluate_pair(finding, results, "A", "B", ["toy-sentiment", "toy-nli"]) is None
    facts = {"A": {"size": "tiny", "step": 12, "final": True, "parent_steps": 0, "objectives": ["mlm"],
                   "mask_ratio": 0.4, "cpt_parent": None},
             "B": {"size": "tiny", "step": 12, "final": True, "parent_steps": 0, "objectives": ["clm"],
                   "mask_ratio": None, "cpt_parent": None}}
    assert evaluate_findings(results, facts, ["toy-sentiment", "toy-nli"], [finding]) == []
    facts["B"]["step"] = 24  # different budgets are never paired either
    results["B"]["toy-nli"]["group"] = ("p", "d1")
    assert evaluate_findings(results, facts, ["toy-nli"], [finding]) == []


def test_toyworld_paper_can_test_every_finding_of_the_paper():
    """The miniature of the six studies has, for every claim, a pair of comparable models."""
    from encoderlab.study.findings import FINDINGS, _pairs
    from encoderlab.study.plan import StudyPlan
    from encoderlab.study.report import _run_facts
    from encoderlab.study.spec import load_study

    spec = load_study("toyworld-paper")
    facts = _run_facts(StudyPlan.resolve(spec))
    assert set(facts) == {"CLM@40", "CLM", "MLM-40@40", "MLM-40", "MLM-20", "MLM-50", "CLM60-MLM180", "CLM120-MLM120",
                          "CLM+CPT-MLM-40", "MLM-40+CPT-MLM-40", "random-init"}
    for finding in FINDINGS:
        assert _pairs(finding, facts), finding.id
    early = next(f for f in FINDINGS if f.id == "clm>mlm:early")
    assert _pairs(early, facts) == [("CLM@40", "MLM-40@40")]
    cpt = next(f for f in FINDINGS if f.id == "cpt<-clm>cpt<-mlm:SC")
    assert _pairs(cpt, facts) == [("CLM+CPT-MLM-40", "MLM-40+CPT-MLM-40")]
    assert spec.evaluation.lrs == [3.0e-4, 1.0e-3, 3.0e-3]


def test_study_run_prints_the_scores_and_each_verdict_with_its_regime(tmp_path, capsys):
    from encoderlab.cli.study import _print_findings

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({
        "models": {"CLM": {"toy-qa": {"mean": 88.33, "ci_low": 80.0, "ci_high": 96.66}}},
        "held_out": {"CLM": {"toy-qa": {"held_out": {"mean": 71.5}}}},
        "findings": [
            {"claim": "MLM beats CLM on question answering", "verdict": "contradicted", "a": "MLM-40", "b": "CLM",
             "a_mean": 42.33, "b_mean": 88.33, "p": 0.0143, "p_holm": 0.03, "items": "all items",
             "regime_text": "at 1.13 tokens/parameter (paper: 163)"},
            {"claim": "CLM is ahead of MLM early", "verdict": "inconclusive", "a": "CLM@40", "b": "MLM-40@40",
             "a_mean": None, "b_mean": None, "p": None, "p_holm": None, "items": "all items",
             "regime_text": "at 0.06 tokens/parameter (paper: 163)"}]}))
    _print_findings(summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("test scores (x100)") and "toy-qa" in lines[1]
    assert lines[2].split() == ["CLM", "88.3", "±", "8.3", "[71.5]"]
    assert lines[3].startswith("paper findings")
    assert lines[4] == ("  contradicted at 1.13 tokens/parameter (paper: 163): MLM beats CLM on question answering "
                        "(MLM-40 vs CLM: 42.33 vs 88.33, all items, p (Holm) 0.03)")
    assert lines[5] == ("  inconclusive at 0.06 tokens/parameter (paper: 163): CLM is ahead of MLM early "
                        "(CLM@40 vs MLM-40@40, all items, p (Holm) n/a)")
