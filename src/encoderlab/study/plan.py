"""A study resolved once: each run's pretraining config (preset, overrides, the study's data and its
typed lineage), the checkpoints the study evaluates, and each checkpoint's evaluation job. The
runner, ``study status`` and the report all read this one object; nothing downstream rebuilds a
config from strings or parses a run's lineage back out of a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from encoderlab.data.manifest import MANIFEST, read_manifest
from encoderlab.evaluation.job import EvaluationJob
from encoderlab.study.baseline import RANDOM_INIT_STEP, random_init_dir
from encoderlab.study.graph import start_path
from encoderlab.study.spec import START_KEYS, StudySpec
from encoderlab.training.checkpoint import checkpoint_name
from encoderlab.training.config import PretrainConfig
from encoderlab.training.cpt import study_cpt_config
from encoderlab.training.presets import load_pretrain_config


@dataclass(frozen=True)
class CheckpointRef:
    run: str
    step: int
    path: Path
    final: bool

    @property
    def key(self) -> str:
        """The checkpoint's name in jobs and timings: ``run@step``."""
        return f"{self.run}@{self.step}"

    @property
    def label(self) -> str:
        """The model's name in tables: the run for its final checkpoint, ``run@step`` otherwise."""
        return self.run if self.final else self.key


def study_shards(spec: StudySpec) -> Path | None:
    """The study's token shards when they are prepared (None before, or when it has no data)."""
    shards = spec.study_dir / "data" if spec.data is not None else None
    return shards if shards is not None and (shards / MANIFEST).is_file() else None


def pretrain_config(spec: StudySpec, run, shards: Path | None) -> PretrainConfig:
    """The resolved pretraining config of one run of the study."""
    # "{study_dir}" in an override names this study's directory
    overrides = [o.replace("{study_dir}", str(spec.study_dir)) for o in run.overrides]
    overrides += [f"{START_KEYS[name]}={start_path(spec, start)}" for name, start in run.starts().items()]
    overrides += [f"name={run.name}", f"output_dir={spec.study_dir / 'runs' / run.name}"]
    if run.cpt is not None:  # continued pretraining from a Hugging Face decoder (training/cpt.py)
        data = shards if shards is not None or spec.data is None else spec.study_dir / "data"
        kept = [f"checkpoint_steps={sorted(run.evaluate_steps)}"] if run.evaluate_steps else []
        return study_cpt_config(run.cpt, run.name, spec.study_dir / "runs" / run.name, data, overrides + kept)
    if shards is not None:
        overrides.append(f"data.source={shards}")
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


def branch_points_of(spec: StudySpec) -> dict[str, set[int]]:
    """For each run of the study, the steps its branches (runs of the study) start from."""
    points: dict[str, set[int]] = {}
    for run in spec.runs:
        if run.branch is not None and run.branch.run is not None:
            points.setdefault(run.branch.run, set()).add(run.branch.step)
    return points


@dataclass
class StudyPlan:
    """The study resolved: its shards (None before preparation), every run's config, the checkpoints
    it evaluates in order, and the evaluation job of each."""

    spec: StudySpec
    shards: Path | None
    configs: dict[str, PretrainConfig]
    checkpoints: list[CheckpointRef]

    @classmethod
    def resolve(cls, spec: StudySpec, shards: Path | None = None) -> StudyPlan:
        configs = {run.name: pretrain_config(spec, run, shards) for run in spec.runs}
        refs = []
        for run in spec.runs:
            config = configs[run.name]
            if run.random_init:  # no pretraining: one checkpoint, the initial weights
                refs.append(CheckpointRef(run.name, RANDOM_INIT_STEP, random_init_dir(config), True))
                continue
            for step in sorted(set(run.evaluate_steps) | {config.total_steps}):
                refs.append(CheckpointRef(run.name, step, config.run_dir / "checkpoints" / checkpoint_name(step),
                                          step == config.total_steps))
        return cls(spec, shards, configs, refs)

    def run(self, name: str):
        return next(r for r in self.spec.runs if r.name == name)

    def init_parent(self, name: str) -> str | None:
        """The run of the study whose weights run ``name`` continues (its typed ``init``), if any."""
        start = self.run(name).init
        return start.run if start is not None else None

    def job_file(self, ref: CheckpointRef) -> Path:
        """Where the resolved evaluation job of checkpoint ``ref`` is written."""
        return self.spec.study_dir / "jobs" / "evaluate" / f"{ref.key}.yaml"

    def evaluation_job(self, ref: CheckpointRef, threads: int | None = None) -> EvaluationJob:
        ev = self.spec.evaluation
        return EvaluationJob(checkpoint=str(ref.path), tasks=list(ev.tasks), lrs=list(ev.lrs), seeds=list(ev.seeds),
                             results=str(self.spec.study_dir / "results.sqlite"), finetune=ev.finetune_config(),
                             data=dict(ev.data), workers=ev.workers, threads=threads, label=ref.key,
                             corpus_cache=str(self.spec.study_dir / "corpus-cache"))  # shared by the checkpoints


__all__ = ["CheckpointRef", "StudyPlan", "branch_points_of", "pretrain_config", "study_shards"]
