"""``encoderlab cpt``: continued MLM/MNTP pretraining from a Hugging Face decoder, then (if asked)
the evaluation sweep of ``encoderlab evaluate`` and the export of ``encoderlab export``.

Every input is checked before anything is written: the decoder (import in memory), the shards
(their tokenizer must be the decoder's), the run config, the evaluation tasks and protocol, and
the export (its target must be able to represent the architecture; its directory must be free).
Under ``torchrun`` every process plans the run, the first writes its start, and all agree on the
outcome before training; evaluation and export run on the first process once training is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from encoderlab.cli.evaluate import print_sweep
from encoderlab.config import ConfigError
from encoderlab.threads import add_threads_argument, resolve
from encoderlab.validate import OPEN_FRACTION, POSITIVE_INT, parse_grid, unique
from encoderlab.evaluation.protocol import FinetuneConfig

EXPORT_TARGETS = ("eurobert", "sentence-transformers")


def add_parsers(commands) -> None:

    cpt = commands.add_parser(
        "cpt", help="continued MLM/MNTP pretraining from a Hugging Face decoder (shapes from its config.json)",
        description="Imports HF_DECODER_DIR (Llama/SmolLM2, Mistral, Qwen2/2.5, Qwen3, Gemma 2/3, OLMo 2), takes the "
                    "mask token of the shards' tokenizer (recorded in OUTPUT/cpt.json), and continues pretraining with "
                    "the paper's CPT schedule (lr 5e-4, 200 warmup steps, decay over the last min(2000, steps/2)); "
                    "then, if asked, fine-tunes the final checkpoint on --evaluate TASKS and exports it to --export "
                    "DIR. Decoder families other than Llama export to neither EuroBERT nor sentence-transformers (no "
                    "transformers class runs them bidirectionally): --export is refused for them before training, and "
                    "the native checkpoint is their evaluation path.")
    cpt.add_argument("hf_dir", metavar="HF_DECODER_DIR", help="local Hugging Face decoder directory (safetensors)")
    cpt.add_argument("--data", required=True, metavar="SHARDS",
                     help="token shards prepared with the decoder's tokenizer (`encoderlab data prepare`)")
    cpt.add_argument("--objective", choices=["mlm", "mntp"], default="mlm")
    cpt.add_argument("--mask-ratio", type=OPEN_FRACTION, default=0.4)
    cpt.add_argument("--steps", type=POSITIVE_INT, default=12_000, help="CPT steps (default 12k, the paper's strong budget)")
    cpt.add_argument("--output", help="run directory (default runs/<decoder>-cpt-<objective><ratio>-<steps>)")
    cpt.add_argument("--seq-len", type=POSITIVE_INT, help="default min(2048, the decoder's max positions)")
    cpt.add_argument("--batch-tokens", type=POSITIVE_INT, help="global batch in tokens (default the paper's 2,359,296)")
    cpt.add_argument("--micro-batch-size", type=POSITIVE_INT)
    cpt.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="dotted run overrides right after HF_DECODER_DIR, e.g. schedule.lr=1e-4 (or --set)")
    cpt.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a dotted run override anywhere on the line, e.g. --set log_every=1")
    cpt.add_argument("--skip-tokenizer-check", action="store_true",
                     help="use shards whose tokenizer cannot be compared with the decoder's (the decoder has no "
                          "tokenizer files, or the manifest no fingerprint); recorded in cpt.json")
    cpt.add_argument("--resume", action="store_true")
    cpt.add_argument("--overwrite", action="store_true", help="replace a previous cpt run in --output")
    cpt.add_argument("--no-progress", action="store_true")
    add_threads_argument(cpt)
    ev = cpt.add_argument_group("evaluation and export of the final checkpoint")
    ev.add_argument("--evaluate", metavar="TASKS",
                    help="comma list of tasks, or 'toyworld' for the toyworld tasks (as `encoderlab evaluate --tasks`)")
    ev.add_argument("--eval-lrs", help="comma list (default: the paper's 1e-5 ... 5e-4)")
    ev.add_argument("--eval-seeds", help="comma list (default: 0,1,2,3,4)")
    ev.add_argument("--eval-results", help="SQLite results database (default OUTPUT/results.sqlite)")
    ev.add_argument("--eval-set", action="append", metavar="KEY=VALUE",
                    help="any fine-tuning protocol setting, e.g. max_steps=100 (as `encoderlab evaluate --set`)")
    ev.add_argument("--export", metavar="DIR", help="export the final checkpoint here (written atomically)")
    ev.add_argument("--export-target", choices=EXPORT_TARGETS, default="eurobert",
                    help="EuroBertForMaskedLM, or a sentence-transformers folder (mean pooling, IR prompts)")
    cpt.set_defaults(func=cmd_cpt)


def _evaluation_job(args: argparse.Namespace, results: Path):
    """The evaluation job of ``--evaluate`` (the final checkpoint is filled in after training), every
    setting checked and every task's data loaded before any training."""
    from encoderlab.evaluation.job import EvaluationJob  # start-up: loads torch
    from encoderlab.evaluation.sweep import PAPER_LRS, PAPER_SEEDS  # start-up: loads torch
    from encoderlab.evaluation.tasks import TOYWORLD_TASKS  # start-up: loads torch

    names = [t.strip() for t in args.evaluate.split(",") if t.strip()]
    tasks = [t for name in names for t in (TOYWORLD_TASKS if name == "toyworld" else (name,))]
    if not tasks:
        raise ConfigError(f"cpt --evaluate {args.evaluate!r}: expected a comma list of tasks or 'toyworld'")
    unique(tasks, "cpt --evaluate")
    lrs, seeds = parse_grid(args.eval_lrs, args.eval_seeds, PAPER_LRS, PAPER_SEEDS, "cpt", ("--eval-lrs", "--eval-seeds"))
    policy = resolve(1, None)
    job = EvaluationJob(checkpoint=str(args.output or "."), tasks=tasks, lrs=lrs, seeds=seeds, results=str(results),
                        finetune=FinetuneConfig.build({}, args.eval_set, where="cpt --eval-set"),
                        workers=policy.workers, threads=policy.threads)
    job.check_data()  # the evaluation's data, checked as the evaluation will (before any training)
    return job


def _check_export(args: argparse.Namespace, model_config) -> None:
    if not model_config.is_paper_architecture:
        raise ConfigError(
            f"cpt --export: {args.hf_dir} uses {', '.join(model_config.family_features())} (an imported decoder "
            f"family), which {args.export_target} cannot represent (no transformers class runs it bidirectionally); "
            "drop --export and use the run's native checkpoint (encoderlab evaluate takes it)")
    if Path(args.export).exists() and not args.overwrite:
        raise FileExistsError(f"cpt --export {args.export}: already exists; choose another directory or pass "
                              "--overwrite")
    if args.export_target == "sentence-transformers":
        import importlib.util

        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError("cpt --export-target sentence-transformers needs the sentence-transformers package "
                              "(pip install sentence-transformers)")


def _agree(ctx, error: BaseException | None) -> None:
    """Every process learns whether any failed (a collective: also a barrier), so all stop together."""
    import torch

    from encoderlab.training import distributed as D  # start-up: loads torch

    failed = D.all_reduce_sum(torch.tensor(0.0 if error is None else 1.0, device=ctx.device))
    if error is not None:
        raise error
    if failed.item():
        raise RuntimeError("cpt: another process failed to prepare the run (its error is in its output)")


def cmd_cpt(args: argparse.Namespace) -> int:
    from encoderlab.training import distributed as D  # start-up: loads torch
    from encoderlab.training.cpt import plan_cpt  # start-up: loads torch
    from encoderlab.training.lock import RunLock  # start-up: loads torch

    ctx = D.init_distributed()
    lock, existed = None, True
    try:
        error, plan, evaluation = None, None, None
        try:
            plan = plan_cpt(args.hf_dir, args.data, objective=args.objective, mask_ratio=args.mask_ratio,
                            steps=args.steps, output=args.output, seq_len=args.seq_len,
                            global_batch_tokens=args.batch_tokens, micro_batch_size=args.micro_batch_size,
                            overrides=[*args.overrides, *args.set], overwrite=args.overwrite, resume=args.resume,
                            world_size=ctx.world_size, check_tokenizer=not args.skip_tokenizer_check)
            if args.evaluate:
                evaluation = _evaluation_job(args, Path(args.eval_results or plan.output / "results.sqlite"))
            if args.export:
                _check_export(args, plan.model.config)
        except Exception as err:  # noqa: BLE001 - shared with the other processes, then raised
            error = err
        _agree(ctx, error)
        if ctx.is_main:  # the run's lock before anything in it is replaced; held to the end of the command
            try:
                existed = plan.output.exists()
                lock = RunLock(plan.output).acquire()
                _write_start(plan)
            except Exception as err:  # noqa: BLE001
                error = err
        _agree(ctx, error)
        final = _train(plan, args, existed)
    except BaseException:
        D.shutdown_distributed()
        if lock is not None:
            lock.release(remove_if_unused=True)
        raise
    try:
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only the first process reports, evaluates, exports
            return 0
        print(f"final checkpoint: {final}")
        if evaluation is not None:
            evaluation = dataclasses.replace(evaluation, checkpoint=str(final))
            print_sweep(evaluation, evaluation.run(progress=not args.no_progress))
        if args.export:
            from encoderlab.model import export_hf  # start-up: loads torch

            out = export_hf(final, args.export, args.export_target, overwrite=args.overwrite)
            print(f"exported {final} as {args.export_target} to {out}")
        return 0
    finally:
        if lock is not None:
            lock.release()


def _write_start(plan) -> None:
    from encoderlab.training.cpt import write_cpt_start  # start-up: loads torch
    from encoderlab.training.outputs import removal_note  # start-up: loads torch

    removed = write_cpt_start(plan)
    if removed:
        print(f"cpt: {removal_note(plan.output, removed)}", flush=True)


def _train(plan, args: argparse.Namespace, existed: bool) -> Path:
    """Trains the run; one that ends before its first checkpoint removes the start this command wrote
    (a folder it created goes entirely), so the same command can be run again as it was."""
    import shutil

    from encoderlab.training import pretrain  # start-up: loads torch
    from encoderlab.training.checkpoint import complete_checkpoints  # start-up: loads torch
    from encoderlab.training.outputs import remove_owned  # start-up: loads torch

    try:
        return pretrain(plan.config, resume=args.resume, progress=not args.no_progress)  # shuts the group down
    except BaseException:
        if int(os.environ.get("RANK", "0")) == 0 and not args.resume and not complete_checkpoints(
                plan.output / "checkpoints"):
            if not existed:
                shutil.rmtree(plan.output, ignore_errors=True)
            else:
                remove_owned(plan.output)
        raise
