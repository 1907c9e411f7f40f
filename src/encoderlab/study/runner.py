"""Runs a study locally: prepare data, pretrain each run, evaluate its checkpoints, write the report.

Every stage skips what is already done (complete shards, final checkpoints, result rows with the
same fingerprint), and a pretraining run that was interrupted resumes from its latest checkpoint,
so an interrupted study continues with nothing lost or repeated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.evaluation.task_types import check_protocol_fits
from encoderlab.evaluation.registry import get_task
from encoderlab.study.graph import check_run_graph, run_parents
from encoderlab.study.jobs import job_state, latest_jobs, run_jobs, run_local_graph, wait_while_running
from encoderlab.study.plan import StudyPlan, study_shards
from encoderlab.study.spec import StudySpec
from encoderlab.data import iter_documents, parse_source, prepare
from encoderlab.data.tokenizer import short_vocabulary_note, tokenizer_for_shards
from encoderlab.evaluation.protocol import protocol_identity, settings_of
from encoderlab.evaluation.store import ResultsStore, model_fingerprint
from encoderlab.io import atomic_write_text
from encoderlab.study.baseline import write_random_init
from encoderlab.study.eval_cost import study_evaluation_cost
from encoderlab.study.cost import ThroughputTable, run_cost
from encoderlab.study.report import write_report
from encoderlab.threads import POLICY, apply, resolve
from encoderlab.training import pretrain
from encoderlab.training.checkpoint import (check_branch_point, checkpoint_name, complete_checkpoints,
                                           latest_checkpoint, read_training_state)
from encoderlab.training.cpt import _decoder_mask, write_study_cpt_start
from encoderlab.training.lock import describe, lock_status


def prepare_study_data(spec: StudySpec, progress: bool, log=print) -> Path | None:
    """The study's token shards, prepared (or reused) once for all its runs."""
    if spec.data is None:
        return None
    shards = spec.study_dir / "data"
    source = parse_source(spec.data.source, toyworld_documents=spec.data.toyworld_documents)
    tokenizer, name, origin = tokenizer_for_shards(shards, name=spec.data.tokenizer,
                                                   train_vocab=spec.data.train_tokenizer_vocab,
                                                   documents=iter_documents(source))
    prepare(source, tokenizer, name, shards, mask_origin=origin, progress=progress, wait=True)
    note = short_vocabulary_note(tokenizer, None if spec.data.tokenizer else spec.data.train_tokenizer_vocab)
    if note:
        log(f"[study {spec.name}] data: {note}")
    return shards


def plan_study(spec: StudySpec, throughput: str | None = None) -> dict:
    """Validates ``spec`` without running anything and counts what it will run: pretraining steps
    (a branch counts only the steps after its branch point), real tokens, projected device-hours
    (:mod:`encoderlab.study.cost`; ``throughput``: a benchmarks output file replacing the shipped
    H100 figures it measures) and fine-tuning runs."""
    check_run_graph(spec)  # who starts from whom: before any config is resolved
    _check_cpt_tokenizers(spec)
    table = ThroughputTable.shipped()
    if throughput:
        table = table.updated_from(throughput)
    check_protocol_fits(spec.evaluation.tasks, spec.evaluation.finetune_config())
    sources = {get_task(t).zero_shot_from for t in spec.evaluation.tasks} - {None}
    for task, directory in spec.evaluation.data.items():  # what the real run would reject, rejected now
        if task not in spec.evaluation.tasks and task not in sources:
            raise ConfigError(f"study {spec.name!r}: evaluation.data names {task!r}, which the study does not evaluate "
                              f"(tasks: {', '.join(spec.evaluation.tasks)})")
        if get_task(task).toyworld:
            raise ConfigError(f"study {spec.name!r}: evaluation.data names the built-in task {task!r}, which reads no files")
        if not Path(directory).is_dir():
            raise ConfigError(f"study {spec.name!r}: evaluation.data {task}: directory {directory} not found")
    # before data preparation the vocabulary comes from the presets; unknown presets and keys fail here
    configs = StudyPlan.resolve(spec, study_shards(spec)).configs
    pretraining = []
    for run in spec.runs:
        config = configs[run.name]
        if run.random_init:
            pretraining.append(_random_init_plan(spec, run, config))
            continue
        bad = [s for s in run.evaluate_steps if not 0 < s < config.total_steps]
        if bad:
            raise ConfigError(f"study {spec.name!r}, run {run.name!r}: evaluate_steps {bad} are not intermediate steps "
                              f"of its {config.total_steps} steps")
        first = _check_branch(spec, run, config, configs)  # a branch runs only the steps after its branch point
        cost = run_cost(config, first, table)
        pretraining.append({"run": run.name, "preset": run.preset, "steps": cost["steps"], "tokens": cost["tokens"],
                            "device_hours": cost["device_hours"], "branch_from_step": first or None,
                            "phases": " -> ".join(f"{p.label} {p.steps}" for p in config.phases),
                            "checkpoints": len(run.evaluate_steps) + 1,
                            **({"no_throughput_for": cost["no_throughput_for"]} if cost["no_throughput_for"] else {})})
    checkpoints = sum(p["checkpoints"] for p in pretraining)
    grid = len(spec.evaluation.tasks) * len(spec.evaluation.lrs) * len(spec.evaluation.seeds)
    hours = [p["device_hours"] for p in pretraining]
    pretraining_hours = None if any(h is None for h in hours) else round(sum(hours), 1)
    evaluation = study_evaluation_cost(spec, configs, {p["run"]: p["checkpoints"] for p in pretraining}, table)
    evaluation_hours = evaluation["device_hours"]
    return {"study": spec.name, "pretraining_runs": pretraining, "checkpoints": checkpoints,
            "finetuning_runs_per_checkpoint": grid, "finetuning_runs": checkpoints * grid,
            "pretraining_steps": sum(p["steps"] for p in pretraining),
            "pretraining_tokens": sum(p["tokens"] for p in pretraining),
            "device_hours": pretraining_hours, "evaluation": evaluation,
            "evaluation_device_hours": None if evaluation_hours is None else round(evaluation_hours, 1),
            "total_device_hours": None if pretraining_hours is None or evaluation_hours is None
            else round(pretraining_hours + evaluation_hours, 1),
            "device": table.device, "throughput_source": table.source}


def _random_init_plan(spec: StudySpec, run, config) -> dict:

    if config.init_from or config.branch_from:
        raise ConfigError(f"study {spec.name!r}, run {run.name!r}: a random_init run starts from no checkpoint "
                          f"(init_from {config.init_from}, branch_from {config.branch_from})")
    return {"run": run.name, "preset": run.preset, "steps": 0, "tokens": 0, "device_hours": 0.0,
            "branch_from_step": None, "phases": f"random init (seed {config.seed}), no pretraining", "checkpoints": 1}


def _check_branch(spec: StudySpec, run, config, configs: dict) -> int:
    """The step a run branches from (0 for a run from scratch), after checking the branch point:
    a stable-phase (non-decayed) checkpoint its parent keeps, on the parent's trajectory."""
    import re


    if not config.branch_from:
        return 0
    where = f"study {spec.name!r}, run {run.name!r}"
    if run.branch is not None and run.branch.run is not None:  # a run of this study: checked against its config
        parent_name, step = run.branch.run, run.branch.step
        parent = configs[parent_name]
        check_branch_point(config.to_dict(), parent.to_dict(), step, where=f"{where} (branch_from {parent_name} step {step})")
        if step not in parent.checkpoint_steps and step != parent.total_steps:
            raise ConfigError(f"{where}: branch point step {step} is not a kept checkpoint of run {parent_name!r}")
        done = complete_checkpoints(parent.run_dir / "checkpoints")
        reached = int(re.search(r"(\d+)$", done[-1].name).group(1)) if done else 0
        kept = parent.run_dir / "checkpoints" / checkpoint_name(step) / "model.safetensors"
        if reached > step and not kept.is_file():
            raise ConfigError(f"{where}: branch point step {step} of run {parent_name!r} was not kept, and that run is "
                              f"already at step {reached}; it would have to be trained again from scratch")
        return step
    path = Path(config.branch_from)
    match = re.fullmatch(r"step-(\d+)", path.name)
    if not match:
        raise ConfigError(f"{where}: branch_from {path} is not a step-N checkpoint of a run")
    if path.is_dir():  # an existing checkpoint elsewhere: checked now, not when its turn comes
        state = read_training_state(path)
        check_branch_point(config.to_dict(), state["run_config"], state["step"], where=f"{where} (branch_from {path})")
        return state["step"]
    raise ConfigError(f"{where}: branch_from {path} does not exist (a run of this study is named as "
                      "branch: {run: NAME, step: N})")


def _check_evaluation_data(plan: StudyPlan, log) -> None:
    """Loads every task the study evaluates (and the sources of its zero-shot tasks) as the
    evaluation will, so inconsistent data (evaluation.tasks.load_task's checks) is refused now."""
    started = time.perf_counter()
    job = plan.evaluation_job(plan.checkpoints[0])
    job.check_data()
    log(f"[study {plan.spec.name}] evaluation data: {len(job.task_names_to_load())} task(s) load and pass their "
        f"checks ({time.perf_counter() - started:.1f} s)")


def _check_cpt_tokenizers(spec: StudySpec) -> None:
    """A cpt run needs the study's shards made with its decoder's tokenizer: refused when the study
    trains its own tokenizer, or names another local one (compared by fingerprint)."""
    if spec.data is None:
        return
    for run in spec.runs:
        if run.cpt is None:
            continue
        where = f"study {spec.name!r}, run {run.name!r}"
        if spec.data.tokenizer is None:
            raise ConfigError(f"{where}: continues pretraining from {run.cpt.decoder}, but the study's shards would be "
                              "made with a tokenizer trained on the corpus; set data: {tokenizer: "
                              f"{run.cpt.decoder}}}")
        ours, theirs = Path(spec.data.tokenizer), Path(run.cpt.decoder)
        if ours.is_dir() and theirs.is_dir() and ours.resolve() != theirs.resolve():
            if _decoder_mask(ours)["fingerprint"] != _decoder_mask(theirs)["fingerprint"]:
                raise ConfigError(f"{where}: the study's shards are made with the tokenizer of {ours}, which is not "
                                  f"the tokenizer of its decoder {theirs}; set data: {{tokenizer: {theirs}}}")


def execution_policy(spec: StudySpec, workers: int | str | None = None, threads: int | None = None):
    """The thread policy of a study run (``encoderlab.threads``): local jobs side by side
    (``workers``, else ``scheduler.workers``; ``auto`` = usable cores) with ``threads`` each
    (default usable cores // workers); a SLURM study runs one process here."""
    if spec.scheduler.kind != "local":
        return resolve(1, threads)
    return resolve(workers if workers is not None else spec.scheduler.workers, threads)


def run_study(spec: StudySpec, progress: bool = True, log=print, workers: int | str | None = None,
              threads: int | None = None) -> Path:
    """Runs (or resumes) the study; ``workers`` / ``threads`` override the thread policy
    (:func:`execution_policy`), which is recorded in ``timings.json`` and the report."""
    plan_study(spec)  # a bad preset, task or checkpoint step fails before any work
    # bad evaluation data fails before hours of pretraining, not after
    _check_evaluation_data(StudyPlan.resolve(spec, study_shards(spec)), log)
    policy = execution_policy(spec, workers, threads)
    study_dir = spec.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    timings = _read_timings(study_dir)
    timings["execution"] = {"scheduler": spec.scheduler.kind, **policy.describe()}
    in_process = spec.scheduler.kind == "local" and policy.workers <= 1
    if in_process:  # only a user's choice is exported to the processes this one starts
        apply(policy.threads, export=policy.source != POLICY)
    started = time.perf_counter()
    log(f"[study {spec.name}] data")
    plan = StudyPlan.resolve(spec, prepare_study_data(spec, progress, log))  # resolved once, read by every stage
    timings["data_s"] = timings.get("data_s", 0.0) + time.perf_counter() - started
    pending = _pretrain_stage(plan, in_process, policy, timings, progress, log)
    if spec.scheduler.kind == "local" and not in_process:  # one graph of local jobs on the policy's slots
        _run_local(plan, pending, policy, timings, log)
    else:
        # Runs that start from another run of the study (branch, CPT) wait for it: submitted in waves.
        started = time.perf_counter()
        run_jobs(spec, "pretrain", [(name, command) for name, command, _ in pending], log,
                 run_dirs={name: run_dir for name, _, run_dir in pending})
        if pending:
            timings.setdefault("pretrain_s", {})["all_jobs"] = time.perf_counter() - started
            _write_timings(study_dir, timings)
        _evaluation_stage(plan, in_process, timings, progress, log)
    return write_report(plan, timings)


def _pretrain_stage(plan: StudyPlan, in_process: bool, policy, timings: dict, progress: bool, log) -> list[tuple]:
    """Trains (in this process) or lists as jobs (name, command, run directory) the runs not done yet."""
    spec, pending = plan.spec, []
    for run in spec.runs:
        config = plan.configs[run.name]
        if run.random_init:  # the seeded initial weights, written once (study/baseline.py)
            log(f"[study {spec.name}] random init {run.name} ({run.preset}, seed {config.seed}): "
                f"{write_random_init(config, run.preset)}")
            continue
        final = config.run_dir / "checkpoints" / checkpoint_name(config.total_steps) / "model.safetensors"
        # a run still trained by an earlier start of this study (its job, or a process holding the run
        # directory) is waited for, not started a second time
        if not final.is_file() and wait_while_running(spec, "pretrain", run.name, config.run_dir, log):
            log(f"[study {spec.name}] pretrain {run.name}: the earlier start ended")
        if final.is_file():
            log(f"[study {spec.name}] pretrain {run.name}: done")
            continue
        resume = latest_checkpoint(config.run_dir / "checkpoints") is not None
        origin = run.preset or f"cpt from {Path(run.cpt.decoder).name}"
        branch = (f", a branch from {run.branch.run} step {run.branch.step}: trains "
                  f"{config.total_steps - run.branch.step}" if run.branch is not None and run.branch.run else "")
        log(f"[study {spec.name}] pretrain {run.name} ({origin}, {config.total_steps} steps{branch}"
            f"{', resuming' if resume else ''})")
        if run.cpt is not None:  # its start: the decoder imported once, with the study's tokenizer
            write_study_cpt_start(run.cpt, config)
        if in_process:
            started = time.perf_counter()
            pretrain(config, resume=resume, progress=progress)
            timings.setdefault("pretrain_s", {})[run.name] = time.perf_counter() - started
            _write_timings(spec.study_dir, timings)
        else:
            pending.append((run.name, _pretrain_command(spec, run, config, resume, policy.threads), config.run_dir))
    return pending


def _evaluation_stage(plan: StudyPlan, in_process: bool, timings: dict, progress: bool, log) -> None:
    """Evaluates every checkpoint: in this process, or as one job each (from its job file)."""
    spec, ev, pending = plan.spec, plan.spec.evaluation, []
    for ref in plan.checkpoints:
        log(f"[study {spec.name}] evaluate {ref.run} step {ref.step}: {len(ev.tasks)} tasks x {len(ev.lrs)} LRs x "
            f"{len(ev.seeds)} seeds")
        wait_while_running(spec, "evaluate", ref.key, None, log)  # an earlier start's sweep of this checkpoint
        if not in_process:
            pending.append((ref.key, _evaluate_command(plan, ref)))
            continue
        started = time.perf_counter()
        job = plan.evaluation_job(ref)
        job.save(plan.job_file(ref))  # what ran, beside the study, as a job in another process would run it
        job.run(progress=progress)
        seconds = timings.setdefault("evaluate_s", {})
        seconds[ref.key] = seconds.get(ref.key, 0.0) + time.perf_counter() - started
        _write_timings(spec.study_dir, timings)
    started = time.perf_counter()
    run_jobs(spec, "evaluate", pending, log)
    if pending:
        timings.setdefault("evaluate_s", {})["all_jobs"] = time.perf_counter() - started
        _write_timings(spec.study_dir, timings)


def _run_local(plan: StudyPlan, pending: list[tuple], policy, timings: dict, log) -> None:
    """The local job graph: a checkpoint's evaluation starts as soon as its run is trained, and a
    branch as soon as its parent is, each on a free slot of ``policy.workers``."""
    spec = plan.spec
    parents = run_parents(spec)
    training = {name for name, _, _ in pending}
    nodes = [{"stage": "pretrain", "name": name, "command": command, "run_dir": run_dir,
              "after": parents[name] & training} for name, command, run_dir in pending]
    for ref in plan.checkpoints:
        wait_while_running(spec, "evaluate", ref.key, None, log)  # an earlier start's sweep of this checkpoint
        nodes.append({"stage": "evaluate", "name": ref.key, "command": _evaluate_command(plan, ref, policy.threads),
                      "after": {ref.run} & training})
    log(f"[study {spec.name}] {len(nodes)} jobs, {policy.workers} at a time, {policy.threads} thread(s) each "
        f"({policy.cores} usable cores)")
    started = time.perf_counter()
    seconds = run_local_graph(spec, nodes, policy.workers, log)
    for key, value in seconds.items():
        stage, name = key.split("/", 1)
        timings.setdefault(f"{stage}_s", {})[name] = value
    timings["jobs_wall_s"] = time.perf_counter() - started
    _write_timings(spec.study_dir, timings)


def _pretrain_command(spec: StudySpec, run, config, resume: bool, threads: int | None = None) -> list[str]:
    """The command of a pretraining job: ``encoderlab pretrain`` of the run's resolved config file."""
    import sys


    config_file = config.run_dir.parent / f"{run.name}.resolved.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_file, config.to_yaml())
    gpus, nodes = spec.scheduler.gpus_per_node, spec.scheduler.nodes
    if nodes > 1:  # started once per node by the scheduler; torchrun ranks span the nodes
        launcher = [sys.executable, "-m", "encoderlab.training.launch", f"--nproc-per-node={gpus}", "--"]
    elif gpus > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}"]
    else:
        launcher = [sys.executable]
    return [*launcher, "-m", "encoderlab.cli", "pretrain", str(config_file), "--no-progress",
            *(["--threads", str(threads)] if threads else []), *(["--resume"] if resume else [])]


def _evaluate_command(plan: StudyPlan, ref, threads: int | None = None) -> list[str]:
    """The command of an evaluation job: ``encoderlab evaluate --job`` of the checkpoint's resolved job file."""
    import sys

    job_file = plan.evaluation_job(ref, threads).save(plan.job_file(ref))
    return [sys.executable, "-m", "encoderlab.cli", "evaluate", "--job", str(job_file), "--no-progress"]


def study_status(spec: StudySpec) -> list[dict]:
    """What is done, partial or missing, per run and checkpoint (no work is started)."""
    wanted = settings_of(protocol_identity(spec.evaluation.finetune_config(), ""))

    shards = study_shards(spec)
    if spec.data is not None and shards is None:
        return [{"stage": "data", "status": "not prepared"}]
    rows = []
    db = spec.study_dir / "results.sqlite"
    expected = len(spec.evaluation.tasks) * len(spec.evaluation.lrs) * len(spec.evaluation.seeds)
    jobs = {stage: latest_jobs(spec.study_dir, stage) for stage in ("pretrain", "evaluate")}
    for ref in StudyPlan.resolve(spec, shards).checkpoints:
        if not (ref.path / "model.safetensors").is_file():
            latest = latest_checkpoint(ref.path.parent)
            where = f"last checkpoint {latest.name}" if latest else "no checkpoint yet"
            job = jobs["pretrain"].get(ref.run)
            # the process training the run says whether it lives (its lock), never a file's age
            held, holder = lock_status(ref.path.parent.parent)
            if job is not None:  # submitted as a job: the scheduler knows best
                state = f"pretraining: job {job['job_id']} {job_state(spec.study_dir, 'pretrain', job)}, {where}"
            elif held == "running":
                state = f"pretraining: running ({describe(holder)}), {where}"
            elif held == "unknown":
                state = f"pretraining: locked by {describe(holder)}, which cannot be checked from here, {where}"
            elif latest is None:
                state = "pretraining: not started"
            else:
                state = f"pretraining: stopped, {where}"
            rows.append({"run": ref.run, "step": ref.step, "status": state})
            continue
        done = diverged = 0
        if db.is_file():  # runs of this study's grid and protocol only (a database may hold others)
            with ResultsStore(db, create=False) as store:
                records = [r for r in store.records(model_fingerprint(ref.path)) if r.dataset in spec.evaluation.tasks
                           and r.lr in spec.evaluation.lrs and r.seed in spec.evaluation.seeds
                           and settings_of(r.protocol) == wanted]
            done, diverged = len(records), sum(r.status == "diverged" for r in records)
        status = f"evaluated {done}/{expected} runs" + (f" ({diverged} diverged)" if diverged else "")
        job = jobs["evaluate"].get(ref.key)
        if job is not None and done < expected:
            status += f"; job {job['job_id']} {job_state(spec.study_dir, 'evaluate', job)}"
        rows.append({"run": ref.run, "step": ref.step, "status": status})
    return rows


def _read_timings(study_dir: Path) -> dict:
    path = study_dir / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_timings(study_dir: Path, timings: dict) -> None:
    atomic_write_text(study_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
