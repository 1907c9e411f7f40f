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
    from encoderlab.data import iter_documents, load_tokenizer, parse_source, prepare, train_tokenizer

    shards = spec.study_dir / "data"
    source = parse_source(spec.data.source, toyworld_documents=spec.data.toyworld_documents)
    tokenizer_dir = shards / "tokenizer"
    if spec.data.tokenizer:
        tokenizer, name = load_tokenizer(spec.data.tokenizer), spec.data.tokenizer
    elif (tokenizer_dir / "tokenizer.json").is_file():
        tokenizer, name = load_tokenizer(str(tokenizer_dir)), str(tokenizer_dir)
    else:
        tokenizer = train_tokenizer(iter_documents(source), spec.data.train_tokenizer_vocab, tokenizer_dir)
        name = str(tokenizer_dir)
    if spec.data.tokenizer and not (tokenizer_dir / "tokenizer_config.json").is_file():
        tokenizer.save_pretrained(tokenizer_dir)
    prepare(source, tokenizer, name, shards, progress=progress)
    return shards


def pretrain_config(spec: StudySpec, run, shards: Path | None):
    from encoderlab.training import load_pretrain_config

    # "{study_dir}" in an override names this study's directory (e.g. a CPT run's init_from)
    overrides = [o.replace("{study_dir}", str(spec.study_dir)) for o in run.overrides]
    overrides += [f"name={run.name}", f"output_dir={spec.study_dir / 'runs' / run.name}"]
    if shards is not None:
        overrides.append(f"data.source={shards}")
        tokenizer = json.loads((shards / "manifest.json").read_text())["tokenizer"]
        overrides.append(f"model.vocab_size={max(tokenizer['vocab_size'], 8)}")
    if run.evaluate_steps:
        overrides.append(f"checkpoint_steps={sorted(set(run.evaluate_steps))}")
    return load_pretrain_config(run.preset, overrides)


def checkpoints_of(spec: StudySpec, shards: Path | None) -> list[CheckpointRef]:
    refs = []
    for run in spec.runs:
        config = pretrain_config(spec, run, shards)
        directory = config.run_dir / "checkpoints"
        for step in sorted(set(run.evaluate_steps) | {config.total_steps}):
            refs.append(CheckpointRef(run.name, step, directory / f"step-{step:06d}", step == config.total_steps))
    return refs


def run_study(spec: StudySpec, progress: bool = True, log=print) -> Path:
    from encoderlab.evaluation.finetune import FinetuneConfig
    from encoderlab.evaluation.sweep import run_sweep
    from encoderlab.study.report import write_report
    from encoderlab.training import pretrain
    from encoderlab.training.checkpoint import latest_checkpoint

    study_dir = spec.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    timings = _read_timings(study_dir)
    started = time.perf_counter()
    log(f"[study {spec.name}] data")
    shards = prepare_study_data(spec, progress)
    timings["data_s"] = timings.get("data_s", 0.0) + time.perf_counter() - started
    for run in spec.runs:
        config = pretrain_config(spec, run, shards)
        final = config.run_dir / "checkpoints" / f"step-{config.total_steps:06d}" / "model.safetensors"
        if final.is_file():
            log(f"[study {spec.name}] pretrain {run.name}: done")
            continue
        resume = latest_checkpoint(config.run_dir / "checkpoints") is not None
        log(f"[study {spec.name}] pretrain {run.name} ({run.preset}, {config.total_steps} steps"
            f"{', resuming' if resume else ''})")
        started = time.perf_counter()
        pretrain(config, resume=resume, progress=progress)
        timings.setdefault("pretrain_s", {})[run.name] = time.perf_counter() - started
        _write_timings(study_dir, timings)
    ev = spec.evaluation
    finetune_config = FinetuneConfig(max_steps=ev.max_steps, batch_size=ev.batch_size, max_length=ev.max_length,
                                     max_eval_examples=ev.max_eval_examples)
    for ref in checkpoints_of(spec, shards):
        log(f"[study {spec.name}] evaluate {ref.run} step {ref.step}: {len(ev.tasks)} tasks x {len(ev.lrs)} LRs x "
            f"{len(ev.seeds)} seeds")
        started = time.perf_counter()
        run_sweep(str(ref.path), ev.tasks, ev.lrs, ev.seeds, study_dir / "results.sqlite", finetune_config,
                  local_dirs=ev.data, progress=progress)
        key = f"{ref.run}@{ref.step}"
        timings.setdefault("evaluate_s", {})[key] = timings.get("evaluate_s", {}).get(key, 0.0) + time.perf_counter() - started
        _write_timings(study_dir, timings)
    return write_report(spec, shards, timings)


def study_status(spec: StudySpec) -> list[dict]:
    """What is done, partial or missing, per run and checkpoint (no work is started)."""
    import sqlite3

    from encoderlab.evaluation.store import model_fingerprint
    from encoderlab.training.checkpoint import latest_checkpoint

    shards = spec.study_dir / "data" if spec.data is not None else None
    if shards is not None and not (shards / "manifest.json").is_file():
        return [{"stage": "data", "status": "not prepared"}]
    rows = []
    db = spec.study_dir / "results.sqlite"
    expected = len(spec.evaluation.tasks) * len(spec.evaluation.lrs) * len(spec.evaluation.seeds)
    for ref in checkpoints_of(spec, shards):
        if not (ref.path / "model.safetensors").is_file():
            latest = latest_checkpoint(ref.path.parent)
            state = f"pretraining: at {latest.name}" if latest else "pretraining: not started"
            rows.append({"run": ref.run, "step": ref.step, "status": state})
            continue
        done = diverged = 0
        if db.is_file():
            fingerprint = model_fingerprint(ref.path)
            with sqlite3.connect(db) as connection:
                done, diverged = connection.execute(
                    "SELECT COUNT(*), SUM(status = 'diverged') FROM runs WHERE model_fingerprint = ?", (fingerprint,)
                ).fetchone()
        rows.append({"run": ref.run, "step": ref.step,
                     "status": f"evaluated {done}/{expected} runs" + (f" ({diverged} diverged)" if diverged else "")})
    return rows


def _read_timings(study_dir: Path) -> dict:
    path = study_dir / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_timings(study_dir: Path, timings: dict) -> None:
    from encoderlab.io import atomic_write_text

    atomic_write_text(study_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
