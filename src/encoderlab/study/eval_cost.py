"""What a study's evaluation costs before it runs: fine-tuning runs, tokens and projected device-hours.

The cost model (an estimate, stated as one in every plan):

- **Runs.** Per checkpoint, every (task, LR, seed) is a scored run. A zero-shot task (NQ, MLDR) is
  scored with the model fine-tuned on its source (MS MARCO), so it adds no training, only its test
  pass. A source's training steps are what the protocol gives its training set
  (``TaskType.training_steps``: min(max_steps, one epoch); TC one full epoch).
- **Tokens.** Training: steps x batch x the mean tokens of one example (retrieval: the query and its
  positive document). Evaluation: the validation and test examples of every scored split (capped by
  ``max_eval_examples``), and for retrieval the corpus: one pass per corpus per run, which the
  validation and test queries of the corpus share (``task_types/ir.py``); with ``retrieval_ranking:
  pool`` a pass embeds the judged pool only (still counted as ``corpus_passes``). Sizes are those of
  :mod:`encoderlab.evaluation.sizes` (declared for the paper's tasks, measured for toyworld), every
  length capped at ``max_length``. Real tokens: padding is not counted.
- **FLOPs.** Training tokens x ``ModelConfig.flops_per_token(L, head_fraction=0)`` (forward and
  backward, no LM head; ``L`` the task's mean length for the attention term); evaluation tokens x a
  third of it (forward only).
- **Device-hours.** FLOPs over the FLOP/s the device sustained in pretraining: the throughput
  table's tokens/s of the checkpoint's preset (its CLM row, else its MLM row) x that row's training
  FLOPs per token. Fine-tuning batches (32 short inputs) and evaluation batches rarely keep a device
  as busy as 12 x 2,048-token pretraining micro-batches, and padding is not counted: the projection
  is a lower bound; ``--throughput`` replaces the rows with a user's measurements.
"""

from __future__ import annotations

from encoderlab.evaluation.registry import get_task
from encoderlab.evaluation.sizes import task_size
from encoderlab.evaluation.task_types import task_type

COST_MODEL = ("estimate: training FLOPs = steps x batch x mean example tokens x flops_per_token(L, no LM head); "
              "evaluation FLOPs = examples (and corpus documents, one pass per corpus per run) x mean tokens x a "
              "third of it; device-hours at the FLOP/s the device sustained in the pretraining throughput table "
              "(padding and small-batch inefficiency not counted: a lower bound)")


def sustained_flops(table, model) -> tuple[float | None, str]:
    """The training FLOP/s the device sustained on ``model``'s preset (CLM row, else MLM), and the row used."""
    for objective in ("clm", "mlm"):
        row = table.rows.get((model.name, objective))
        if row is not None:
            rate, ratio, seq_len = row
            head = ratio if objective == "mlm" and ratio else 1.0
            return rate * model.flops_per_token(seq_len, head_fraction=head), f"{model.name}/{objective}"
    return None, f"{model.name}/clm"


def _capped(count: int, config) -> int:
    return min(count, config.max_eval_examples) if config.max_eval_examples else count


def checkpoint_cost(tasks: list[str], lrs: list[float], seeds: list[int], config, model, table) -> dict:
    """The evaluation of one checkpoint of ``model`` on ``tasks`` x ``lrs`` x ``seeds`` under the
    fine-tuning protocol ``config``: runs, tokens, corpus passes, FLOPs and device-hours, per task."""
    grid = len(lrs) * len(seeds)
    limit = config.max_length

    def flops(tokens: float, length: float, forward_only: bool) -> float:
        per_token = model.flops_per_token(max(1, round(length)), head_fraction=0.0)
        return tokens * per_token / (3 if forward_only else 1)

    def empty(name: str, runs: int) -> dict:
        return {"runs": runs, "trainings": 0, "training_steps": 0, "training_tokens": 0, "evaluation_tokens": 0,
                "corpus_passes": 0, "flops": 0.0, "size": task_size(name).source}

    def forward(row: dict, examples: int, length: float, passes: int = 0) -> None:
        row["evaluation_tokens"] += round(grid * examples * length)
        row["flops"] += grid * flops(examples * length, length, forward_only=True)
        row["corpus_passes"] += grid * passes

    def ranked(size) -> int:  # the documents one pass embeds: the corpus, or its judged pool only
        return size.pool if config.retrieval_ranking == "pool" else size.corpus

    per_task = {name: empty(name, grid) for name in tasks}
    sources = dict.fromkeys(get_task(name).zero_shot_from or name for name in tasks)
    for source in sources:  # one training per (source, LR, seed), validated on the source's validation split
        size = task_size(source)
        row = per_task.setdefault(source, empty(source, 0))  # a source only trained for its zero-shot tasks: 0 runs
        steps = task_type(get_task(source).type).training_steps(size.train, config)
        example = min(size.tokens, limit) + (min(size.doc_tokens, limit) if size.corpus else 0)
        row.update(trainings=grid, training_steps=grid * steps, training_tokens=round(grid * steps * config.batch_size
                                                                                   * example))
        row["flops"] += grid * flops(steps * config.batch_size * example, min(size.tokens, limit), forward_only=False)
        forward(row, _capped(size.validation, config), min(size.tokens, limit))
        if size.corpus:  # the source's validation queries need its corpus; its test queries share that pass
            forward(row, ranked(size), min(size.doc_tokens, limit), passes=1)
    for name in tasks:
        size, row = task_size(name), per_task[name]
        forward(row, _capped(size.test, config), min(size.tokens, limit))
        if size.corpus and name not in sources:  # a zero-shot task ranks its own corpus, once per run
            forward(row, ranked(size), min(size.doc_tokens, limit), passes=1)
    rate, row_used = sustained_flops(table, model)
    for row in per_task.values():
        row["device_hours"] = None if rate is None else row["flops"] / rate / 3600
    total = {key: sum(r[key] for r in per_task.values())
             for key in ("runs", "trainings", "training_steps", "training_tokens", "evaluation_tokens",
                         "corpus_passes", "flops")}
    total["device_hours"] = None if rate is None else total["flops"] / rate / 3600
    return {"finetuning_runs": total.pop("runs"), **total, "retrieval_ranking": config.retrieval_ranking,
            "per_task": per_task, "throughput_row": row_used,
            **({"no_throughput_for": [row_used]} if rate is None else {})}


def study_evaluation_cost(spec, configs: dict, checkpoints: dict[str, int], table) -> dict:
    """Per run (its checkpoint count x one checkpoint's cost) and for the study; ``configs``: each
    run's resolved pretraining config (its model), ``checkpoints``: how many checkpoints each run
    has evaluated."""
    evaluation, config = spec.evaluation, spec.evaluation.finetune_config()
    runs, cache = [], {}
    for name, count in checkpoints.items():
        model = configs[name].model
        key = (model.name, repr(model))
        if key not in cache:
            cache[key] = checkpoint_cost(evaluation.tasks, evaluation.lrs, evaluation.seeds, config, model, table)
        cost = cache[key]
        hours = cost["device_hours"]
        runs.append({"run": name, "checkpoints": count, "per_checkpoint": cost,
                     "device_hours": None if hours is None else count * hours})
    hours = [r["device_hours"] for r in runs]

    def total(key: str) -> int:
        return sum(r["checkpoints"] * r["per_checkpoint"][key] for r in runs)

    missing = sorted({m for r in runs for m in r["per_checkpoint"].get("no_throughput_for", [])})
    return {"runs": runs, "finetuning_runs": total("finetuning_runs"), "trainings": total("trainings"),
            "training_tokens": total("training_tokens"), "evaluation_tokens": total("evaluation_tokens"),
            "corpus_passes": total("corpus_passes"),
            "device_hours": None if any(h is None for h in hours) else sum(hours),
            "task_sizes": {t: task_size(t).as_dict() for t in dict.fromkeys(
                [*evaluation.tasks, *(get_task(t).zero_shot_from for t in evaluation.tasks if get_task(t).zero_shot_from)])},
            "cost_model": COST_MODEL, **({"no_throughput_for": missing} if missing else {})}
