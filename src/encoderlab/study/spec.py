"""Study specs: pretraining runs, the checkpoints to evaluate, the evaluation grid, comparisons."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from encoderlab import validate
from encoderlab.config import ConfigError, from_dict, load_yaml
from encoderlab.evaluation.pool import check_workers
from encoderlab.evaluation.protocol import FinetuneConfig
from encoderlab.evaluation.registry import get_task
from encoderlab.validate import check_grid, open_fraction, positive_int, repeats, safe_name, unique

SPEC_DIR = Path(__file__).parent / "specs"


@dataclass(kw_only=True)
class DataSpec:
    """Token shards the study prepares (and reuses) for its pretraining runs."""

    source: str = "toyworld"
    toyworld_documents: int = 30_000
    tokenizer: str | None = None  # a Hugging Face tokenizer; None trains a byte-level BPE
    train_tokenizer_vocab: int = 2048

    def __post_init__(self) -> None:
        positive_int(self.toyworld_documents, "data.toyworld_documents")
        positive_int(self.train_tokenizer_vocab, "data.train_tokenizer_vocab")


@dataclass(kw_only=True)
class CptSpec:
    """A run that continues pretraining from a Hugging Face decoder, as ``encoderlab cpt`` does
    (training/cpt.py): every shape from its config.json, the mask token of the study's shards
    (prepare them with the decoder's tokenizer: ``data: {tokenizer: DECODER}``), the paper's CPT
    schedule; ``overrides`` change the run as for a preset."""

    decoder: str  # a local Hugging Face decoder directory (Llama, Mistral, Qwen2/3, Gemma 2/3, OLMo 2)
    objective: Literal["mlm", "mntp"] = "mlm"
    mask_ratio: float = 0.4
    steps: int = 12_000

    def __post_init__(self) -> None:
        open_fraction(self.mask_ratio, "cpt.mask_ratio")
        positive_int(self.steps, "cpt.steps")


@dataclass(kw_only=True)
class StartSpec:
    """Where a run starts: a checkpoint of another run of this study (``{run: NAME, step: N}``) or
    a checkpoint directory outside it (``{checkpoint: DIR}``). The study's lineage is this typed
    pair, never a path parsed back: the runner turns it into the run's ``branch_from`` /
    ``init_from`` path, the job graph and the report read it as it is."""

    run: str | None = None
    step: int | None = None
    checkpoint: str | None = None

    def check(self, where: str) -> None:
        if (self.run is None) == (self.checkpoint is None):
            raise ConfigError(f"{where}: expected {{run: NAME, step: N}} (a run of this study) or "
                              "{checkpoint: DIR}, exactly one")
        if self.run is not None:
            if self.step is None:
                raise ConfigError(f"{where}: {{run: {self.run}}} needs the step of the checkpoint to start from")
            positive_int(self.step, f"{where}.step")
        elif self.step is not None:
            raise ConfigError(f"{where}: step belongs with run, not with checkpoint (a checkpoint directory "
                              "is one step already)")


START_KEYS = {"branch": "branch_from", "init": "init_from"}


@dataclass(kw_only=True)
class RunSpec:
    name: str  # the model's name in tables and figures
    preset: str = ""  # a run preset (`encoderlab pretrain --list`); a cpt run has none
    cpt: CptSpec | None = None  # instead of a preset: continued pretraining from a Hugging Face decoder
    overrides: list[str] = field(default_factory=list)  # dotted KEY=VALUE, as on the command line
    evaluate_steps: list[int] = field(default_factory=list)  # intermediate checkpoints to evaluate too
    # a baseline: the preset's architecture with the initial weights of its seed, no pretraining step
    # (study/baseline.py); fine-tuned on the same grid as the pretrained runs
    random_init: bool = False
    # a branch resumes the optimizer and schedule of a stable checkpoint (the paper's two-stage runs);
    # init takes only the weights (continued pretraining); both typed, see StartSpec
    branch: StartSpec | None = None
    init: StartSpec | None = None

    def __post_init__(self) -> None:
        safe_name(self.name, "run name")  # it names runs/<name>
        keys = [item.partition("=")[0].strip() for item in self.overrides]
        again = repeats(keys)
        if again:
            raise ConfigError(f"run {self.name!r}: overrides set {again[0]} twice; keep one (the last would win silently)")
        taken = sorted(set(keys) & {"name", "output_dir"})
        if taken:
            raise ConfigError(f"run {self.name!r}: override {taken[0]}= is the study's to set (the run's name and "
                              "studies/<study>/runs/<name>); rename the run or the study instead")
        for field_name, key in START_KEYS.items():
            start = getattr(self, field_name)
            if start is not None:
                start.check(f"run {self.name!r}: {field_name}")
                if start.run == self.name:
                    raise ConfigError(f"run {self.name!r}: {field_name} names the run itself; a run cannot start "
                                      "from itself")
            for item in self.overrides:
                name, _, value = item.partition("=")
                if name.strip() == key and value.strip() not in ("null", "None", "~"):
                    raise ConfigError(f"run {self.name!r}: override {item!r}: in a study, say where a run starts as "
                                      f"{field_name}: {{run: NAME, step: N}} or {field_name}: {{checkpoint: DIR}} "
                                      f"({key}=null clears a preset's start)")
        unique(self.evaluate_steps, f"run {self.name!r}: evaluate_steps")
        for step in self.evaluate_steps:
            positive_int(step, f"run {self.name!r}: evaluate_steps")

    def starts(self) -> dict[str, StartSpec]:
        """{"branch" / "init": where it starts}, for the starts the run has."""
        return {name: start for name in START_KEYS if (start := getattr(self, name)) is not None}

    def parents(self) -> set[str]:
        """The runs of the study this run starts from."""
        return {start.run for start in self.starts().values() if start.run is not None}


@dataclass(kw_only=True)
class EvaluationSpec:
    tasks: list[str]
    lrs: list[float]
    seeds: list[int]
    max_steps: int = 1000
    batch_size: int = 32
    max_length: int = 2048
    max_eval_examples: int | None = None
    data: dict[str, str] = field(default_factory=dict)  # task -> local directory
    protocol: dict[str, Any] = field(default_factory=dict)  # any other fine-tuning setting (FinetuneConfig)
    workers: int = 1  # fine-tuning runs at a time per evaluated checkpoint (evaluation/pool.py); no effect on results

    def __post_init__(self) -> None:
        check_workers(self.workers, "evaluation.workers")
        check_grid(self.tasks, self.lrs, self.seeds, "evaluation")
        for task in self.tasks:
            get_task(task)  # an unknown task names the known ones
        self.finetune_config()  # a bad setting fails when the spec is loaded

    def finetune_config(self) -> FinetuneConfig:
        """The fine-tuning protocol of the study: the paper's defaults with this spec's settings."""
        clash = sorted(set(self.protocol) & {"max_steps", "batch_size", "max_length", "max_eval_examples"})
        if clash:
            raise ConfigError(f"evaluation.protocol: set {clash} as evaluation.{clash[0]}, not under protocol")
        return FinetuneConfig.build({"max_steps": self.max_steps, "batch_size": self.batch_size,
                                     "max_length": self.max_length, "max_eval_examples": self.max_eval_examples,
                                     **self.protocol}, where="evaluation.protocol")


@dataclass(kw_only=True)
class SchedulerSpec:
    """Where the stages run. ``local`` with ``workers: 1`` runs in this process; ``local`` with
    more workers, or ``slurm``, submits one job per pretraining run and per evaluated checkpoint
    through ``submitit`` (pretraining jobs launch ``torchrun`` over ``gpus_per_node`` GPUs, on
    ``nodes`` nodes with SLURM: one torchrun per node, joined by a c10d rendezvous)."""

    kind: Literal["local", "slurm"] = "local"
    # local: jobs at a time ("auto": the usable cores, one torch thread each; encoderlab.threads)
    workers: int | Literal["auto"] = 1
    partition: str | None = None
    account: str | None = None
    nodes: int = 1  # slurm: nodes per pretraining job
    gpus_per_node: int = 0
    cpus_per_task: int = 8
    time_minutes: int = 24 * 60
    evaluation_gpus: int = 1

    def __post_init__(self) -> None:
        if self.workers != "auto":
            validate.count(self.workers, "scheduler.workers")
        if self.nodes < 1:
            raise ConfigError(f"scheduler.nodes: expected a positive number of nodes, got {self.nodes}")
        if self.nodes > 1 and (self.kind != "slurm" or self.gpus_per_node < 1):
            raise ConfigError(f"scheduler.nodes: {self.nodes} nodes need kind: slurm and gpus_per_node >= 1 "
                              f"(got kind: {self.kind}, gpus_per_node: {self.gpus_per_node})")


@dataclass(kw_only=True)
class StudySpec:
    name: str
    description: str = ""
    data: DataSpec | None = None
    runs: list[RunSpec]
    evaluation: EvaluationSpec
    comparisons: list[list[str]] = field(default_factory=list)  # pairs of run names to test
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    output_dir: str | None = None

    def __post_init__(self) -> None:
        safe_name(self.name, "study name")  # it names studies/<name>
        if not self.runs:
            raise ConfigError(f"study {self.name!r}: runs: expected at least one run")
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name!r}: run names must be unique, got {names}")
        for run in self.runs:
            if bool(run.preset) == (run.cpt is not None) or (run.cpt is not None and run.random_init):
                raise ConfigError(f"study {self.name!r}, run {run.name!r}: give a preset or cpt: {{decoder: DIR}} "
                                  "(continued pretraining from a Hugging Face decoder), exactly one (no random_init)")
            if run.random_init and run.evaluate_steps:
                raise ConfigError(f"study {self.name!r}, run {run.name!r}: a random_init run trains no step, so it has "
                                  f"no intermediate checkpoints to evaluate (evaluate_steps {run.evaluate_steps})")
        for pair in self.comparisons:
            if len(pair) != 2 or any(n not in names for n in pair) or pair[0] == pair[1]:
                raise ConfigError(f"study {self.name!r}: comparison {pair} must name two different runs of {names}")
        unique([tuple(sorted(pair)) for pair in self.comparisons], f"study {self.name!r}: comparisons")

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("studies") / self.name


def load_study(spec: str, output_dir: str | None = None) -> StudySpec:
    """A study from a YAML file or the name of a built-in spec (``toyworld-demo``, ...)."""
    path = Path(spec)
    if not path.is_file():
        builtin = SPEC_DIR / f"{spec}.yaml"
        if not builtin.is_file():
            known = ", ".join(sorted(p.stem for p in SPEC_DIR.glob("*.yaml")))
            raise ConfigError(f"{spec!r}: no such study file or built-in study (built-in: {known})")
        path = builtin
    raw: dict[str, Any] = load_yaml(path)
    if output_dir:
        raw["output_dir"] = output_dir
    return from_dict(StudySpec, raw, where=str(path))
