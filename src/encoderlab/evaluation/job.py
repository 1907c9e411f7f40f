"""One evaluation job: a model, the grid (tasks x LRs x seeds), the fine-tuning protocol, the data
and where the results go, resolved once and typed. ``encoderlab evaluate`` builds one from its
flags, a study builds one per checkpoint, ``cpt --evaluate`` builds one before it trains; a job run
in another process (a local job, a SLURM job) runs from the job's resolved YAML file
(``encoderlab evaluate --job FILE``), never from a command line rebuilt from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from encoderlab.config import ConfigError, from_dict, load_yaml
from encoderlab.evaluation.pool import check_workers
from encoderlab.evaluation.protocol import FinetuneConfig
from encoderlab.evaluation.registry import get_task
from encoderlab.evaluation.task_types import check_protocol_fits
from encoderlab.io import atomic_write_text
from encoderlab.validate import check_grid, count
from encoderlab.evaluation.sweep import run_sweep
from encoderlab.evaluation.tasks import load_task

FORMAT = "encoderlab-evaluation-job"


@dataclass(kw_only=True)
class EvaluationJob:
    checkpoint: str  # an encoderlab checkpoint or a local transformers model directory
    tasks: list[str]
    lrs: list[float]
    seeds: list[int]
    results: str  # the SQLite results database (runs already there are skipped)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    data: dict[str, str] = field(default_factory=dict)  # task -> local directory
    workers: int = 1  # fine-tuning runs at a time (never changes a result)
    threads: int | None = None  # torch threads per fine-tuning process (None: the process's policy)
    label: str | None = None  # the model's name on the progress bar
    trust_remote_code: bool = False
    corpus_cache: str | None = None  # tokenized retrieval corpora (None: corpus-cache beside the results database)

    def __post_init__(self) -> None:
        where = "evaluation job"
        check_grid(self.tasks, self.lrs, self.seeds, where)
        for name in self.tasks:
            get_task(name)  # an unknown task names the known ones
        check_workers(self.workers, f"{where}: workers")
        if self.threads is not None:
            count(self.threads, f"{where}: threads")
        sources = {get_task(t).zero_shot_from for t in self.tasks} - {None}
        for name in self.data:
            if name not in self.tasks and name not in sources:
                raise ConfigError(f"{where}: data names {name!r}, which the job does not evaluate "
                                  f"(tasks: {', '.join(self.tasks)})")
        check_protocol_fits(self.tasks, self.finetune)

    def task_names_to_load(self) -> list[str]:
        """The tasks and the sources of its zero-shot tasks (trained on the source, tested on the task)."""
        names = dict.fromkeys([*self.tasks, *(get_task(t).zero_shot_from for t in self.tasks)])
        names.pop(None, None)
        return list(names)

    def check_data(self) -> None:
        """Loads every task as the evaluation will, so inconsistent data is refused before any work."""
        for name in self.task_names_to_load():
            load_task(name, local_dir=self.data.get(name))

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        """Writes the resolved job as YAML (atomically); :meth:`load` reads it back to an equal job."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvaluationJob:
        raw = load_yaml(Path(path))
        if raw.get("format") != FORMAT:
            raise ConfigError(f"{path}: not an evaluation job (expected format: {FORMAT}, written by encoderlab)")
        raw = {k: v for k, v in raw.items() if k != "format"}
        raw["finetune"] = FinetuneConfig.build(raw.get("finetune") or {}, where=f"{path}: finetune")
        return from_dict(cls, raw, where=str(path))

    def run(self, progress: bool = True) -> list[dict]:
        """Runs every (task, LR, seed) not yet in the results database; returns the summary rows."""
        return run_sweep(self.checkpoint, self.tasks, self.lrs, self.seeds, self.results, self.finetune,
                         local_dirs=self.data, progress=progress, trust_remote_code=self.trust_remote_code,
                         workers=self.workers, threads=self.threads, label=self.label, corpus_cache=self.corpus_cache)
