"""Runs a study locally: prepare data, pretrain each run, evaluate its checkpoints, write the report.

Every stage skips what is already done (complete shards, final checkpoints, result rows with the
same fingerprint), and a pretraining run that was interrupted resumes from its latest checkpoint,
so an interrupted study continues with nothing lost or repeated.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from encoderlab.study.jobs import (  # noqa: F401 (job_state, latest_jobs, wait_for_job: public here too)
    job_state,
    latest_jobs,
    run_jobs,
    run_local_graph,
    wait_for_job,
    wait_while_running,
)
from encoderlab.config import ConfigError
from encoderlab.study.graph import check_run_graph, run_parents, start_paths, study_parent
from encoderlab.study.spec import StudySpec


@dataclass
class CheckpointRef:
    run: str
    step: int
    path: Path
    final: bool


def prepare_study_data(spec: StudySpec, progress: bool) -> Path | None:
    if spec.data is None:
        return None
    from encoderlab.data import iter_documents, parse_source, prepare
    from encoderlab.data.tokenizer import tokenizer_for_shards

    shards = spec.study_dir / "data"
    source = parse_source(spec.data.source, toyworld_documents=spec.data.toyworld_documents)
    tokenizer, name, origin = tokenizer_for_shards(shards, name=spec.data.tokenizer,
                                                   train_vocab=spec.data.train_tokenizer_vocab,
                                                   documents=iter_documents(source))
    prepare(source, tokenizer, name, shards, mask_origin=origin, progress=progress, wait=True)
    return shards


def pretrain_config(spec: StudySpec, run, shards: Path | None):
    from encoderlab.training import load_pretrain_config

    # "{study_dir}" in an override names this study's directory (e.g. a CPT run's init_from)
    overrides = [o.replace("{study_dir}", str(spec.study_dir)) for o in run.overrides]
    overrides += [f"name={run.name}", f"output_dir={spec.study_dir / 'runs' / run.name}"]
    if run.cpt is not None:  # continued pretraining from a Hugging Face decoder (training/cpt.py)
        from encoderlab.training.cpt import study_cpt_config

        data = shards if shards is not None or spec.data is None else spec.study_dir / "data"
        kept = [f"checkpoint_steps={sorted(run.evaluate_steps)}"] if run.evaluate_steps else []
        return study_cpt_config(run.cpt, run.name, spec.study_dir / "runs" / run.name, data, overrides + kept)
    if shards is not None:
        overrides.append(f"data.source={shards}")
        from encoderlab.data.shards import read_manifest

        tokenizer = read_manifest(shards)["tokenizer"]
        overrides.append(f"model.vocab_size={max(tokenizer['vocab_size'], 8)}")
    branches = branch_points_of(spec).get(run.name, set())
    if branches:  # a branch point past the end is refused by plan_study, naming the branch
        total = load_pretrain_config(run.preset, overrides).total_steps
        branches = {s for s in branches if 0 < s <= total}
    kept = set(run.evaluate_steps) | branches
    if kept:  # exactly the checkpoints the study evaluates and its branches start from
        overrides.append(f"checkpoint_steps={sorted(kept)}")
    return load_pretrain_config(run.preset, overrides)


def _branch_source(spec: StudySpec, run) -> tuple[str, int] | None:
    """(parent run, step) when ``run`` branches (``branch_from``, set in the study) from a checkpoint
    ``{study_dir}/runs/<parent>/checkpoints/step-N`` of a run of this study; None otherwise."""
    import re

    value = start_paths(spec, run).get("branch_from")
    parent = study_parent(spec, value) if value else None
    if parent is None or parent not in {r.name for r in spec.runs}:
        return None
    relative = Path(value).resolve().relative_to((Path(spec.study_dir) / "runs" / parent).resolve())
    match = re.fullmatch(r"checkpoints/step-(\d+)", relative.as_posix())
    return (parent, int(match.group(1))) if match else None


def branch_points_of(spec: StudySpec) -> dict[str, set[int]]:
    """For each run of the study, the steps its branches (runs of the study) start from."""
    points: dict[str, set[int]] = {}
    for run in spec.runs:
        source = _branch_source(spec, run)
        if source is not None:
            points.setdefault(source[0], set()).add(source[1])
    return points


def checkpoints_of(spec: StudySpec, shards: Path | None) -> list[CheckpointRef]:
    refs = []
    from encoderlab.study.baseline import RANDOM_INIT_STEP, random_init_dir

    for run in spec.runs:
        config = pretrain_config(spec, run, shards)
        if run.random_init:  # no pretraining: one checkpoint, the initial weights
            refs.append(CheckpointRef(run.name, RANDOM_INIT_STEP, random_init_dir(config), True))
            continue
        directory = config.run_dir / "checkpoints"
        for step in sorted(set(run.evaluate_steps) | {config.total_steps}):
            refs.append(CheckpointRef(run.name, step, directory / f"step-{step:06d}", step == config.total_steps))
    return refs


def plan_study(spec: StudySpec, throughput: str | None = None) -> dict:
    """Validates ``spec`` without running anything and counts what it will run: pretraining steps
    (a branch counts only the steps after its branch point), real tokens, projected device-hours
    (:mod:`encoderlab.study.cost`; ``throughput``: a benchmarks output file replacing the shipped
    H100 figures it measures) and fine-tuning runs."""
    from encoderlab.evaluation.tasks import get_task
    from encoderlab.study.cost import ThroughputTable, run_cost

    check_run_graph(spec)  # who starts from whom: before any config is resolved
    _check_cpt_tokenizers(spec)
    table = ThroughputTable.shipped()
    if throughput:
        table = table.updated_from(throughput)
    finetune_config = spec.evaluation.finetune_config()
    for task in spec.evaluation.tasks:
        if get_task(task).type == "qa":
            finetune_config.check_qa_windows(finetune_config.max_length)
    sources = {get_task(t).zero_shot_from for t in spec.evaluation.tasks} - {None}
    for task, directory in spec.evaluation.data.items():  # what the real run would reject, rejected now
        if task not in spec.evaluation.tasks and task not in sources:
            raise ConfigError(f"study {spec.name!r}: evaluation.data names {task!r}, which the study does not evaluate "
                              f"(tasks: {', '.join(spec.evaluation.tasks)})")
        if get_task(task).toyworld:
            raise ConfigError(f"study {spec.name!r}: evaluation.data names the built-in task {task!r}, which reads no files")
        if not Path(directory).is_dir():
            raise ConfigError(f"study {spec.name!r}: evaluation.data {task}: directory {directory} not found")
    shards = spec.study_dir / "data" if spec.data is not None else None
    if shards is not None and not (shards / "manifest.json").is_file():
        shards = None  # before data preparation: vocabulary comes from the presets
    configs = {run.name: pretrain_config(spec, run, shards) for run in spec.runs}  # unknown presets and keys fail here
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
    return {"study": spec.name, "pretraining_runs": pretraining, "checkpoints": checkpoints,
            "finetuning_runs_per_checkpoint": grid, "finetuning_runs": checkpoints * grid,
            "pretraining_steps": sum(p["steps"] for p in pretraining),
            "pretraining_tokens": sum(p["tokens"] for p in pretraining),
            "device_hours": None if any(h is None for h in hours) else round(sum(hours), 1),
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

    from encoderlab.training.checkpoint import check_branch_point, complete_checkpoints, read_training_state

    if not config.branch_from:
        return 0
    where = f"study {spec.name!r}, run {run.name!r}"
    source = _branch_source(spec, run)
    if source is not None:  # a run of this study: checked against its resolved config
        parent_name, step = source
        parent = configs[parent_name]
        check_branch_point(config.to_dict(), parent.to_dict(), step, where=f"{where} (branch_from {parent_name} step {step})")
        if step not in parent.checkpoint_steps and step != parent.total_steps:
            raise ConfigError(f"{where}: branch point step {step} is not a kept checkpoint of run {parent_name!r}")
        done = complete_checkpoints(parent.run_dir / "checkpoints")
        reached = int(re.search(r"(\d+)$", done[-1].name).group(1)) if done else 0
        if reached > step and not (parent.run_dir / "checkpoints" / f"step-{step:06d}" / "model.safetensors").is_file():
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
    raise ConfigError(f"{where}: branch_from {path} does not exist and is not a checkpoint of a run of this study "
                      f"({{study_dir}}/runs/<run>/checkpoints/step-N)")


def _check_evaluation_data(spec: StudySpec, log) -> None:
    """Loads every task the study evaluates (and the sources of its zero-shot tasks) as the
    evaluation will, so inconsistent data (evaluation.tasks.load_task's checks) is refused now."""
    from encoderlab.evaluation.tasks import get_task, load_task

    started = time.perf_counter()
    names = dict.fromkeys([*spec.evaluation.tasks, *(get_task(t).zero_shot_from for t in spec.evaluation.tasks)])
    names.pop(None, None)
    for name in names:
        load_task(name, local_dir=spec.evaluation.data.get(name))
    log(f"[study {spec.name}] evaluation data: {len(names)} task(s) load and pass their checks "
        f"({time.perf_counter() - started:.1f} s)")


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
            from encoderlab.training.cpt import _decoder_mask

            if _decoder_mask(ours)["fingerprint"] != _decoder_mask(theirs)["fingerprint"]:
                raise ConfigError(f"{where}: the study's shards are made with the tokenizer of {ours}, which is not "
                                  f"the tokenizer of its decoder {theirs}; set data: {{tokenizer: {theirs}}}")


def execution_policy(spec: StudySpec, workers: int | str | None = None, threads: int | None = None):
    """The thread policy of a study run (``encoderlab.threads``): local jobs side by side
    (``workers``, else ``scheduler.workers``; ``auto`` = usable cores) with ``threads`` each
    (default usable cores // workers); a SLURM study runs one process here."""
    from encoderlab.threads import resolve

    if spec.scheduler.kind != "local":
        return resolve(1, threads)
    return resolve(workers if workers is not None else spec.scheduler.workers, threads)


def run_study(spec: StudySpec, progress: bool = True, log=print, workers: int | str | None = None,
              threads: int | None = None) -> Path:
    """Runs (or resumes) the study; ``workers`` / ``threads`` override the thread policy
    (:func:`execution_policy`), which is recorded in ``timings.json`` and the report."""
    from encoderlab.evaluation.sweep import run_sweep
    from encoderlab.study.report import write_report
    from encoderlab.threads import POLICY, apply
    from encoderlab.training import pretrain
    from encoderlab.training.checkpoint import latest_checkpoint

    plan_study(spec)  # a bad preset, task or checkpoint step fails before any work
    _check_evaluation_data(spec, log)  # bad evaluation data fails before hours of pretraining, not after
    policy = execution_policy(spec, workers, threads)
    study_dir = spec.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    timings = _read_timings(study_dir)
    timings["execution"] = {"scheduler": spec.scheduler.kind, **policy.describe()}
    in_process = spec.scheduler.kind == "local" and policy.workers <= 1
    local_jobs = spec.scheduler.kind == "local" and not in_process
    if in_process:  # only a user's choice is exported to the processes this one starts
        apply(policy.threads, export=policy.source != POLICY)
    started = time.perf_counter()
    log(f"[study {spec.name}] data")
    shards = prepare_study_data(spec, progress)
    timings["data_s"] = timings.get("data_s", 0.0) + time.perf_counter() - started
    pending, run_dirs = [], {}
    for run in spec.runs:
        config = pretrain_config(spec, run, shards)
        if run.random_init:  # the seeded initial weights, written once (study/baseline.py)
            from encoderlab.study.baseline import write_random_init

            log(f"[study {spec.name}] random init {run.name} ({run.preset}, seed {config.seed}): "
                f"{write_random_init(config, run.preset)}")
            continue
        final = config.run_dir / "checkpoints" / f"step-{config.total_steps:06d}" / "model.safetensors"
        # a run still trained by an earlier start of this study (its job, or a process holding the run
        # directory) is waited for, not started a second time
        if not final.is_file() and wait_while_running(spec, "pretrain", run.name, config.run_dir, log):
            log(f"[study {spec.name}] pretrain {run.name}: the earlier start ended")
        if final.is_file():
            log(f"[study {spec.name}] pretrain {run.name}: done")
            continue
        run_dirs[run.name] = config.run_dir
        resume = latest_checkpoint(config.run_dir / "checkpoints") is not None
        origin = run.preset or f"cpt from {Path(run.cpt.decoder).name}"
        source = _branch_source(spec, run)
        branch = (f", a branch from {source[0]} step {source[1]}: trains {config.total_steps - source[1]}"
                  if source else "")
        log(f"[study {spec.name}] pretrain {run.name} ({origin}, {config.total_steps} steps{branch}"
            f"{', resuming' if resume else ''})")
        if run.cpt is not None:  # its start: the decoder imported once, with the study's tokenizer
            from encoderlab.training.cpt import write_study_cpt_start

            write_study_cpt_start(run.cpt, config)
        if in_process:
            started = time.perf_counter()
            pretrain(config, resume=resume, progress=progress)
            timings.setdefault("pretrain_s", {})[run.name] = time.perf_counter() - started
            _write_timings(study_dir, timings)
        else:
            pending.append((run.name, _pretrain_command(spec, run, config, resume, policy.threads)))
    if local_jobs:  # pretraining and evaluation as one graph of local jobs on the policy's slots
        return _run_local(spec, shards, pending, run_dirs, policy, timings, log)
    # Runs that start from another run of the study (branch, CPT) must wait for it: submit in waves.
    started = time.perf_counter()
    run_jobs(spec, "pretrain", pending, log, run_dirs=run_dirs)
    if pending:
        timings.setdefault("pretrain_s", {})["all_jobs"] = time.perf_counter() - started
        _write_timings(study_dir, timings)
    ev = spec.evaluation
    finetune_config = ev.finetune_config()
    pending = []
    for ref in checkpoints_of(spec, shards):
        log(f"[study {spec.name}] evaluate {ref.run} step {ref.step}: {len(ev.tasks)} tasks x {len(ev.lrs)} LRs x "
            f"{len(ev.seeds)} seeds")
        key = f"{ref.run}@{ref.step}"
        wait_while_running(spec, "evaluate", key, None, log)  # an earlier start's sweep of this checkpoint
        if not in_process:
            pending.append((key, _evaluate_command(spec, ref)))
            continue
        started = time.perf_counter()
        run_sweep(str(ref.path), ev.tasks, ev.lrs, ev.seeds, study_dir / "results.sqlite", finetune_config,
                  local_dirs=ev.data, progress=progress, workers=ev.workers, label=key)
        timings.setdefault("evaluate_s", {})[key] = timings.get("evaluate_s", {}).get(key, 0.0) + time.perf_counter() - started
        _write_timings(study_dir, timings)
    started = time.perf_counter()
    run_jobs(spec, "evaluate", pending, log)
    if pending:
        timings.setdefault("evaluate_s", {})["all_jobs"] = time.perf_counter() - started
        _write_timings(study_dir, timings)
    return write_report(spec, shards, timings)


def _run_local(spec: StudySpec, shards, pending: list, run_dirs: dict, policy, timings: dict, log) -> Path:
    """The local job graph: a checkpoint's evaluation starts as soon as its run is trained, and a
    branch as soon as its parent is, each on a free slot of ``policy.workers``."""
    from encoderlab.study.report import write_report

    parents = run_parents(spec)
    training = {name for name, _ in pending}
    nodes = [{"stage": "pretrain", "name": name, "command": command, "run_dir": run_dirs[name],
              "after": parents[name] & training} for name, command in pending]
    for ref in checkpoints_of(spec, shards):
        key = f"{ref.run}@{ref.step}"
        wait_while_running(spec, "evaluate", key, None, log)  # an earlier start's sweep of this checkpoint
        nodes.append({"stage": "evaluate", "name": key, "command": _evaluate_command(spec, ref, policy.threads),
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
    return write_report(spec, shards, timings)


def _pretrain_command(spec: StudySpec, run, config, resume: bool, threads: int | None = None) -> list[str]:
    import sys

    from encoderlab.io import atomic_write_text

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


def _evaluate_command(spec: StudySpec, ref: CheckpointRef, threads: int | None = None) -> list[str]:
    import sys

    ev = spec.evaluation
    command = [sys.executable, "-m", "encoderlab.cli", "evaluate", str(ref.path), "--tasks", ",".join(ev.tasks),
               "--lrs", ",".join(repr(lr) for lr in ev.lrs), "--seeds", ",".join(map(str, ev.seeds)),
               "--results", str(spec.study_dir / "results.sqlite"), "--max-steps", str(ev.max_steps),
               "--batch-size", str(ev.batch_size), "--max-length", str(ev.max_length), "--workers", str(ev.workers),
               "--no-progress", *(["--threads", str(threads)] if threads else [])]
    if ev.max_eval_examples is not None:
        command += ["--max-eval-examples", str(ev.max_eval_examples)]
    for task, directory in ev.data.items():
        command += ["--data", f"{task}={directory}"]
    for key, value in ev.protocol.items():
        command += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: types survive
    return command


def study_status(spec: StudySpec) -> list[dict]:
    """What is done, partial or missing, per run and checkpoint (no work is started)."""
    from encoderlab.evaluation.protocol import protocol_identity, settings_of
    from encoderlab.evaluation.store import ResultsStore, model_fingerprint
    from encoderlab.training.checkpoint import latest_checkpoint
    from encoderlab.training.lock import describe, lock_status

    wanted = settings_of(protocol_identity(spec.evaluation.finetune_config(), ""))

    shards = spec.study_dir / "data" if spec.data is not None else None
    if shards is not None and not (shards / "manifest.json").is_file():
        return [{"stage": "data", "status": "not prepared"}]
    rows = []
    db = spec.study_dir / "results.sqlite"
    expected = len(spec.evaluation.tasks) * len(spec.evaluation.lrs) * len(spec.evaluation.seeds)
    jobs = {stage: latest_jobs(spec.study_dir, stage) for stage in ("pretrain", "evaluate")}
    for ref in checkpoints_of(spec, shards):
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
        job = jobs["evaluate"].get(f"{ref.run}@{ref.step}")
        if job is not None and done < expected:
            status += f"; job {job['job_id']} {job_state(spec.study_dir, 'evaluate', job)}"
        rows.append({"run": ref.run, "step": ref.step, "status": status})
    return rows


def _read_timings(study_dir: Path) -> dict:
    path = study_dir / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_timings(study_dir: Path, timings: dict) -> None:
    from encoderlab.io import atomic_write_text

    atomic_write_text(study_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
