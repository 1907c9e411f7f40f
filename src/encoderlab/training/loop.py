"""The pretraining loop: phases, WSD schedule, gradient accumulation, checkpoints, exact resume.

One optimizer step consumes a global batch of samples in the run's fixed order (see
``training.data``). The loss is token-weighted over the whole global batch: every rank first
counts the tokens it will predict (masks are deterministic, so counting first is exact), the
counts are summed across ranks, and each micro-batch contributes ``loss_sum / global_count``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from torch import nn

from encoderlab.config import ConfigError
from encoderlab.io import atomic_write_text
from encoderlab.model import CheckpointError, ModelConfig, build_encoder, load_checkpoint
from encoderlab.model.checkpoint import read_checkpoint_meta, read_safetensors
from encoderlab.model.config import FAMILY_FIELDS
from encoderlab.objectives import objective_parts
from encoderlab.training import distributed as D
from encoderlab.training.checkpoint import (
    TrainingState,
    check_branch_point,
    clean_stale_temporaries,
    complete_checkpoints,
    latest_checkpoint,
    load_optimizer_state,
    load_rng_state,
    read_training_state,
    resolve_data_start,
    resolve_latest,
    rotate_checkpoints,
    save_training_checkpoint,
)
from encoderlab.training.config import PretrainConfig
from encoderlab.training.data import build_source, micro_batches, shard_tokenizer
from encoderlab.training.lock import RunLock, RunLockedError
from encoderlab.training.outputs import claim, removal_note, remove_owned
from encoderlab.training.phases import build_objectives, frozen_parameters
from encoderlab.training.metrics import MetricsLogger, peak_bf16_flops, truncate_metrics
from encoderlab.training.schedule import wsd_lr

ARCHITECTURE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                       "intermediate_size", "rope_theta", "rope_scaling", "norm_eps", *FAMILY_FIELDS)
# Settings that do not change the trajectory of a run: a resume may change them.
NON_TRAJECTORY_KEYS = ("log_every", "tensorboard", "wandb", "wandb_project", "checkpoint_every", "keep_last",
                       "output_dir", "compile", "checkpoint_steps", "sparse_head")


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite loss, out of memory, ...)."""


def _architecture(config: ModelConfig) -> dict:
    return {name: getattr(config, name) for name in ARCHITECTURE_FIELDS}


def _check_same_architecture(expected: ModelConfig, found: ModelConfig, source: str) -> None:
    a, b = _architecture(expected), _architecture(found)
    diff = {k: (b[k], a[k]) for k in a if a[k] != b[k]}
    if diff:
        details = ", ".join(f"{k}: checkpoint {v[0]!r} vs run {v[1]!r}" for k, v in diff.items())
        raise CheckpointError(f"{source}: checkpoint of a different model shape ({details})")


def _trajectory(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NON_TRAJECTORY_KEYS}


# What a run writes in its directory (recorded in its outputs.json, encoderlab.training.outputs):
# --overwrite removes what the previous run recorded there, and nothing else, before a new run.
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "tensorboard", "config.yaml")


def _inside(path: str | Path, directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


def preflight(config: PretrainConfig, world_size: int):
    """The checks of a run that need no model: the batch splits over the processes, the data opens,
    the shards' tokenizer is theirs. Returns (accumulation steps, the sample source, the tokenizer
    directory checkpoints carry). ``cpt`` runs them before it writes its start."""
    per_step = config.micro_batch_size * world_size
    if config.global_batch_samples % per_step:
        raise ConfigError(
            f"run {config.name!r}: the global batch of {config.global_batch_samples} samples is not divisible by "
            f"micro_batch_size {config.micro_batch_size} x {world_size} processes"
        )
    source = build_source(config.data, config.model)  # fails fast, before the model
    return config.global_batch_samples // per_step, source, shard_tokenizer(config.data, source)


class Trainer:
    """One run. Everything is validated here, before anything is written; :meth:`run` writes."""

    def __init__(self, config: PretrainConfig, ctx: D.DistributedContext, resume: bool = False,
                 progress: bool = True, overwrite: bool = False):
        config = resolve_data_start(config)
        self.config = config
        self.ctx = ctx
        self.progress = progress and ctx.is_main
        self.run_dir = config.run_dir
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.overwrite = overwrite
        self.notes: list[str] = []  # printed by the main process when the run starts
        self._check_output(resume, overwrite)
        self.accumulation, self.source, self.tokenizer_dir = preflight(config, ctx.world_size)
        self._check_data()
        device = ctx.device
        bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        self.precision = "bf16" if bf16 else "fp32"
        start_from = self._find_start(resume)
        self.start_step = self.start_state["step"] if self.start_state else 0
        self._build(start_from, resume)
        self.objectives = build_objectives(config)
        self.frozen = [frozen_parameters(self.model, phase) for phase in config.phases]
        self._by_objective: dict[str, torch.Tensor] = {}  # a mixture's loss sum and targets per objective
        self.peak_flops = peak_bf16_flops(device)
        ends, self.phase_ends = 0, set()
        for phase in config.phases:
            ends += phase.steps
            self.phase_ends.add(ends)

    def _check_output(self, resume: bool, overwrite: bool) -> None:
        """The run directory may be written: resumed, replaced (never a start inside it), or new."""
        config = self.config
        if resume and overwrite:
            raise ConfigError(f"run {config.name!r}: resume and overwrite are exclusive (continue the run in "
                              f"{self.run_dir}, or replace it)")
        existing = complete_checkpoints(self.checkpoint_dir)
        if existing and not resume and not overwrite:
            names = ", ".join(p.name for p in existing[-3:])
            raise FileExistsError(
                f"{self.run_dir}: already holds a run ({len(existing)} checkpoint(s), up to {names}); continue it "
                "with --resume, replace it with --overwrite, or choose another --output"
            )
        if overwrite:
            for key in ("init_from", "branch_from"):
                source = getattr(config, key)
                if source and _inside(source, self.run_dir):
                    raise ConfigError(f"run {config.name!r}: {key} {source} lies inside {self.run_dir}, which "
                                      "--overwrite would delete; copy it elsewhere first")

    def _check_data(self) -> None:
        """Notes what the user should know of the data: no tokenizer to carry, an order that repeats."""
        config = self.config
        if self.tokenizer_dir is None and config.data.source != "synthetic":
            self.notes.append(f"warning: {Path(config.data.source) / 'tokenizer'} has no tokenizer (no "
                              "tokenizer_config.json); the checkpoints will carry none")
        available = len(self.source) if hasattr(self.source, "__len__") else None
        needed = config.data.offset + config.total_steps * config.global_batch_samples
        if available is not None and needed > available and self.ctx.is_main:
            print(f"warning: run {config.name!r} reads {needed} samples but {config.data.source} holds {available}; "
                  f"the order repeats after {available} samples ({needed / available:.2f} epochs)", flush=True)

    def _find_start(self, resume: bool) -> Path | None:
        """Where the run starts: fresh (None), resumed or branched (full state, in ``self.start_state``)
        or initialised (weights only, ``init_from``: read by :meth:`_build_model`)."""
        config = self.config
        start_from, self.start_state = None, None
        if resume:
            start_from, note = resolve_latest(self.checkpoint_dir)
            if start_from is None:
                raise CheckpointError(f"{self.run_dir}: nothing to resume (no complete checkpoint in "
                                      f"{self.checkpoint_dir})")
            if note:
                self.notes.append(f"note: {note}")
            self.start_state = read_training_state(start_from)
            saved, now = _trajectory(self.start_state["run_config"]), _trajectory(config.to_dict())
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            if changed:
                raise ConfigError(f"{start_from}: cannot resume with a changed run config (differs in: {', '.join(changed)})")
        elif config.branch_from:
            start_from = Path(config.branch_from)
            self.start_state = read_training_state(start_from)
            self._check_branch(start_from)
        return start_from

    def _build(self, start_from: Path | None, resume: bool) -> None:
        """The model (wrapped for DDP/FSDP2) and its AdamW, with the start's state loaded."""
        config, device = self.config, self.ctx.device
        model = self._build_model(start_from)
        if config.compile:
            for layer in model.layers:
                layer.compile()
        self.bare_model = model
        self.model = D.wrap_model(model, self.ctx, config.parallelism)
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.optimizer.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=config.schedule.lr, betas=tuple(config.optimizer.betas), eps=config.optimizer.eps,
            fused=device.type == "cuda",
        )
        if self.start_state is not None:
            D.load_full_states(self.model, self.optimizer, self._saved_weights(start_from),
                               load_optimizer_state(start_from))
            if resume:
                load_rng_state(start_from)

    def _check_branch(self, source: Path) -> None:
        config, state = self.config, self.start_state
        parent = state["run_config"]
        if not isinstance(parent.get("model"), dict):
            raise CheckpointError(f"{source}: its trainer state records no model config (run_config.model)")
        _check_same_architecture(config.model, ModelConfig.from_dict(parent["model"]), str(source))
        k = state["step"]
        if not k < config.total_steps - config.schedule.decay_steps + 1:
            raise ConfigError(
                f"{source}: branch point step {k} is not before the decay of this {config.total_steps}-step run "
                f"(decay starts at step {config.total_steps - config.schedule.decay_steps})"
            )
        # the same trajectory up to k: a stable-phase checkpoint, same data, optimizer, warmup, phases
        check_branch_point(config.to_dict(), parent, k, where=str(source))

    def _saved_weights(self, path: Path) -> dict[str, torch.Tensor]:
        return read_safetensors(path / "model.safetensors")  # a truncated file is a CheckpointError naming it

    def _build_model(self, start_from: Path | None) -> nn.Module:
        config, device = self.config, self.ctx.device
        if start_from is not None:  # weights come from the checkpoint; check the shape now
            meta = read_checkpoint_meta(start_from)
            _check_same_architecture(config.model, ModelConfig.from_dict(meta["model"]), str(start_from))
            return build_encoder(config.model).to(device)
        if config.init_from:
            source = Path(config.init_from)
            meta = read_checkpoint_meta(source)
            _check_same_architecture(config.model, ModelConfig.from_dict(meta["model"]), str(source))
            initial = load_checkpoint(source)
            model = build_encoder(config.model)
            model.load_state_dict(initial.state_dict())
            return model.to(device)
        return build_encoder(config.model, seed=config.seed).to(device)

    # -- the loop ---------------------------------------------------------------------------
    def _count_targets(self, work: list, step: int) -> torch.Tensor:
        """The step's targets over every rank: the (objective, rows, weight) parts of this rank's
        micro-batches, a weight-0 part (a mixture's empty half) counting none."""
        count = sum(part.num_targets(batch, step) for part, batch, weight in work if weight).to(torch.float64)
        # at least 1: a global batch of pure padding contributes nothing instead of 0/0
        return D.all_reduce_sum(count).clamp_min(1.0)

    def _train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        config, ctx = self.config, self.ctx
        phase_index, _ = config.phase_at(step)
        objective = self.objectives[phase_index]
        lr = wsd_lr(step, config.total_steps, config.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = micro_batches(self.source, step, config.global_batch_samples, config.micro_batch_size,
                                ctx.rank, ctx.world_size, ctx.device, vocab_size=config.model.vocab_size,
                                offset=config.data.offset)
        self._real_tokens += sum((b.document_ids >= 0).sum() if b.document_ids is not None else b.input_ids.numel()
                                 for b in batches)
        # one forward/backward per (micro-batch, objective part): one part, except in a mixture phase
        work = [part for batch in batches for part in objective_parts(objective, batch, step)]
        global_count = self._count_targets(work, step)
        loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
        is_ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        for index, (part, batch, weight) in enumerate(work):
            last = index == len(work) - 1
            sync = contextlib.nullcontext()
            if is_ddp and not last:
                sync = self.model.no_sync()
            elif hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2
                self.model.set_requires_gradient_sync(last)
            with sync:
                with self.autocast:
                    out = part(self.model, batch, step)
                part_loss = out.loss_sum if weight == 1.0 else out.loss_sum * weight
                # DDP/FSDP average gradients over ranks; scaling by the world size turns that
                # average into the token-weighted mean over the global batch.
                (part_loss * ctx.world_size / global_count).backward()
            loss_sum += part_loss.detach()
            if part is not objective:  # a mixture's part: its loss and targets, per objective (every rank
                # holds both keys, weight-0 parts adding nothing: the record all-reduces them)
                totals = self._by_objective.setdefault(part.name, torch.zeros(2, dtype=torch.float64,
                                                                               device=ctx.device))
                totals += torch.stack([part_loss.detach().to(torch.float64),
                                       out.num_targets.to(torch.float64) * (1.0 if weight else 0.0)])
        D.all_reduce_sum(loss_sum)
        for parameter in self.frozen[phase_index]:  # frozen: no update, no weight decay, not in the norm
            parameter.grad = None
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.optimizer.grad_clip)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP2
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum / global_count, grad_norm, torch.tensor(lr)

    def _save(self, step: int, kept: bool) -> Path | None:
        model_state = D.full_model_state(self.model)
        optimizer_state = D.full_optimizer_state(self.model, self.optimizer)
        path, error = None, None
        if self.ctx.is_main:
            samples = step * self.config.global_batch_samples
            state = TrainingState(step=step, samples_seen=samples, tokens_seen=samples * self.config.data.seq_len,
                                  run_config=self.config.to_dict(), kept=kept)
            try:
                path = save_training_checkpoint(self.checkpoint_dir, model_state, self.config.model, optimizer_state,
                                                state, tokenizer_dir=self.tokenizer_dir,
                                                tokenizer=getattr(self.source, "manifest", {}).get("tokenizer"))
                # once the run is complete its rolling checkpoints serve no resume: only kept ones stay
                rotate_checkpoints(self.checkpoint_dir, 0 if step == self.config.total_steps else self.config.keep_last)
            except Exception as err:  # noqa: BLE001 (re-raised below, once every rank knows)
                error = err  # every rank stops, instead of the others waiting at a barrier for ever
        failed = D.all_reduce_sum(torch.tensor(0.0 if error is None else 1.0, device=self.ctx.device))
        if error is not None:
            raise error
        if failed.item():
            raise TrainingError(f"the main process could not write checkpoint step {step}; stopping")
        return path

    def _prepare_run_dir(self) -> None:
        """Main process, before the first step: replace (--overwrite) or tidy the run directory."""
        run_dir = self.run_dir
        if self.overwrite:
            removed = remove_owned(run_dir)  # what the previous run wrote; a user's files stay
            if removed:
                print(removal_note(run_dir, removed), flush=True)
        claim(run_dir, *(n for n in RUN_OUTPUTS if n != "tensorboard" or self.config.tensorboard))
        run_dir.mkdir(parents=True, exist_ok=True)
        stale = clean_stale_temporaries(self.checkpoint_dir)
        if stale:
            print(f"removed {len(stale)} stale temporary checkpoint file(s)/director(ies) left by an interrupted "
                  f"write in {self.checkpoint_dir}: {', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}",
                  flush=True)
        dropped = truncate_metrics(run_dir / "metrics.jsonl", self.start_step)
        if dropped:
            print(f"metrics.jsonl: dropped {dropped} record(s) of steps after step {self.start_step}, where this run "
                  "starts (or unreadable), so each step is logged once", flush=True)

    def run(self) -> Path:
        config, ctx = self.config, self.ctx
        total = config.total_steps
        logger = None
        if ctx.is_main:
            for note in self.notes:
                print(note, flush=True)
            self._prepare_run_dir()
            atomic_write_text(self.run_dir / "config.yaml", config.to_yaml())
            logger = MetricsLogger(self.run_dir, config.name, config.to_dict(), config.tensorboard, config.wandb,
                                   config.wandb_project, start_step=self.start_step)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.start_step, desc=config.name, unit="step", dynamic_ncols=True)
        interval_start, interval_steps = time.perf_counter(), 0
        self._real_tokens = torch.zeros((), dtype=torch.int64, device=ctx.device)  # this rank's, since the last record
        final = None
        nonfinite = torch.zeros((), dtype=torch.bool, device=ctx.device)
        interval_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)
        try:
            for step in range(self.start_step, total):
                try:
                    loss, grad_norm, lr = self._train_step(step)
                except torch.OutOfMemoryError:
                    raise TrainingError(
                        f"out of memory at step {step} with micro_batch_size {config.micro_batch_size}; try a smaller "
                        "micro_batch_size (gradient accumulation keeps the global batch the same)"
                    ) from None
                nonfinite |= ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
                interval_loss += loss
                interval_steps += 1
                done = step + 1
                kept = done in config.checkpoint_steps or done == total
                save = kept or done % config.checkpoint_every == 0
                phase_end = done in self.phase_ends  # a record never mixes two phases
                if done % config.log_every == 0 or save or phase_end:
                    if bool(nonfinite):  # checked before anything is saved: the last checkpoint stays good
                        raise TrainingError(
                            f"non-finite loss or gradient norm by step {done} (loss {loss.item()}, grad norm "
                            f"{grad_norm.item()}); stopping. The last good checkpoint is "
                            f"{latest_checkpoint(self.checkpoint_dir)}"
                        )
                    record = self._record(step, interval_loss / interval_steps, grad_norm, lr, interval_steps,
                                          interval_start)
                    if logger is not None:
                        logger.log(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                        tok_s=f"{record['tokens_per_s']:,.0f}", phase=record["phase"])
                    interval_start, interval_steps = time.perf_counter(), 0
                    interval_loss.zero_()
                if save:
                    path = self._save(done, kept)
                    if done == total:
                        final = path
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        return final if final is not None else self.checkpoint_dir / f"step-{total:06d}"

    def _record(self, step: int, loss, grad_norm, lr, steps: int, started: float) -> dict:
        """The metrics record of the ``steps`` optimizer steps up to ``step`` (0-based), begun at ``started``."""
        config, ctx = self.config, self.ctx
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        elapsed = time.perf_counter() - started
        tokens_per_s = steps * config.global_batch_tokens / elapsed
        real = D.all_reduce_sum(self._real_tokens.to(torch.float64)).item()  # non-padding, all ranks
        self._real_tokens.zero_()
        _, phase = config.phase_at(step)
        # the fraction of positions the LM head computes (a dense MLM head: all of them); a ratio that
        # changes over the phase counts at its mean over the record's steps
        ratio = config.mask_ratio_at(step)
        masked = phase.masked_objective if phase.objective == "mixture" else phase.objective
        f = 1.0 if phase.objective == "clm" or (masked == "mlm" and not config.sparse_head) else (
            ratio if phase.mask_ratio_end is None
            else sum(config.mask_ratio_at(s) for s in range(step + 1 - steps, step + 1)) / steps)
        if phase.objective == "mixture":  # the expected head fraction: CLM samples predict every position
            f = phase.clm_fraction + (1 - phase.clm_fraction) * f
        flops = config.model.flops_per_token(config.data.seq_len, head_fraction=f)
        record = {
            # loss: mean over the steps since the last record (token-weighted per step)
            "step": step + 1, "phase": phase.label, "loss": loss.item(), "lr": lr.item(),
            "grad_norm": grad_norm.item(), "tokens_per_s": tokens_per_s,
            "tokens_seen": (step + 1) * config.global_batch_tokens, "head_fraction": f,
            # real (non-padding) input tokens: per step (mean since the last record) and per second
            "real_tokens_per_step": real / steps, "real_tokens_per_s": real / elapsed,
            "mfu": (tokens_per_s / ctx.world_size * flops / self.peak_flops) if self.peak_flops else None,
            "precision": self.precision, "world_size": ctx.world_size, "threads": torch.get_num_threads(),
        }
        if ratio is not None:
            record["mask_ratio"] = ratio  # in force at this record's last step
        for name, totals in sorted(self._by_objective.items()):  # a mixture: each objective's own loss
            loss_part, targets = D.all_reduce_sum(totals).tolist()
            record[f"loss_{name}"] = loss_part / targets if targets else None
            record[f"targets_{name}"] = int(targets)
        self._by_objective.clear()
        if ctx.device.type == "cuda":
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
            record["peak_tflops_per_device"] = self.peak_flops / 1e12 if self.peak_flops else None
        return record



def pretrain(config: PretrainConfig, resume: bool = False, progress: bool = True, overwrite: bool = False) -> Path:
    """Runs (or resumes) ``config``; returns the final checkpoint directory.

    A run directory that already holds checkpoints is refused unless ``resume`` (continue it) or
    ``overwrite`` (delete its checkpoints, metrics and config, then start again).
    """
    ctx = D.init_distributed()
    lock, trainer = RunLock(config.run_dir), None
    try:
        _lock_run_dir(lock, ctx)  # before anything reads or replaces the directory (--overwrite included)
        trainer = Trainer(config, ctx, resume=resume, progress=progress, overwrite=overwrite)
        if lock.took_over:
            trainer.notes.append(f"note: {config.run_dir}: {lock.took_over}")
        final = trainer.run()
        D.barrier()  # on success only: no rank tears its side down while another still talks to it
        return final
    finally:
        # The wrapped model (DDP's reducer, FSDP2's hooks) keeps the process group's backend alive; left
        # to interpreter exit, gloo's worker threads are torn down with the interpreter and the process
        # can abort ("terminate called without an active exception"). Free it, then destroy the group.
        del trainer
        lock.release(remove_if_unused=True)
        D.shutdown_distributed()


def _lock_run_dir(lock: RunLock, ctx: D.DistributedContext) -> None:
    """The main process locks the run directory; every rank learns the outcome, so all stop together."""
    error = None
    if ctx.is_main:
        try:
            lock.acquire()
        except RunLockedError as err:
            error = err
    failed = D.all_reduce_sum(torch.tensor(0.0 if error is None else 1.0, device=ctx.device))
    if error is not None:
        raise error
    if failed.item():
        raise RunLockedError(f"{lock.run_dir}: in use by another process (the main process could not lock it)")

