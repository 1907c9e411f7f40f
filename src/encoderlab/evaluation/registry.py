"""The task registry: one declarative :class:`TaskSpec` per dataset of the paper and per toyworld
task (hub id, splits, labels, metric, the local files tried), and :class:`TaskData`, a task's
loaded rows. Loading them is :mod:`encoderlab.evaluation.tasks`, whose docstring tables the files
tried per task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from encoderlab.config import ConfigError
from encoderlab.evaluation.formats import CONLL_TAGS, UNER_TAGS

__all__ = ["BEIR_CORPUS", "BEIR_QRELS", "BEIR_QUERIES", "MLDR_FILES", "PAPER_TASKS", "REGISTRY", "TOYWORLD_TASKS",
           "Files", "TaskData", "TaskSpec", "get_task", "split_train95"]

TaskType = Literal["sc", "tc", "qa", "ir"]
ONTONOTES_LABEL2ID = {
    "O": 0, "B-CARDINAL": 1, "B-DATE": 2, "I-DATE": 3, "B-PERSON": 4, "I-PERSON": 5, "B-NORP": 6, "B-GPE": 7,
    "I-GPE": 8, "B-LAW": 9, "I-LAW": 10, "B-ORG": 11, "I-ORG": 12, "B-PERCENT": 13, "I-PERCENT": 14, "B-ORDINAL": 15,
    "B-MONEY": 16, "I-MONEY": 17, "B-WORK_OF_ART": 18, "I-WORK_OF_ART": 19, "B-FAC": 20, "B-TIME": 21,
    "I-CARDINAL": 22, "B-LOC": 23, "B-QUANTITY": 24, "I-QUANTITY": 25, "I-NORP": 26, "I-LOC": 27, "B-PRODUCT": 28,
    "I-TIME": 29, "B-EVENT": 30, "I-EVENT": 31, "I-FAC": 32, "B-LANGUAGE": 33, "I-PRODUCT": 34, "I-ORDINAL": 35,
    "I-LANGUAGE": 36,
}
ONTONOTES_TAGS = tuple(sorted(ONTONOTES_LABEL2ID, key=ONTONOTES_LABEL2ID.get))
SPLIT_SEED = 42
Files = tuple[tuple[str, str], ...]  # (file name or glob pattern, reader), tried in order


def HUB(name: str, *official: tuple[str, str]) -> Files:
    """The hub-schema files of hub split ``name``, then the official ones."""
    patterns = (f"{name}.jsonl", f"{name}.jsonl.gz", f"{name}.parquet", f"{name}-*.parquet", f"*-{name}.parquet",
                f"{name}/*.parquet")
    return tuple((p, "rows") for p in patterns) + official


BEIR_QRELS = {"train": ("train.tsv",), "validation": ("dev.tsv", "validation.tsv"), "test": ("test.tsv",)}
BEIR_CORPUS: Files = (("corpus.jsonl", "rows"), ("corpus.jsonl.gz", "rows"))
BEIR_QUERIES: Files = (("queries.jsonl", "rows"), ("queries.jsonl.gz", "rows"))
MLDR_FILES: dict[str, Files] = {split: tuple((f"{stem}{ext}", "rows") for ext in (".jsonl", ".jsonl.gz", ".parquet"))
                                for split, stem in (("corpus", "corpus"), ("validation", "dev"), ("test", "test"))}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: TaskType
    hub_id: str | None = None
    hub_config: str | None = None
    revision: str | None = None
    text_fields: tuple[str, ...] = ()  # sc: one field, or two joined by pair_template
    pair_template: str | None = None
    label_names: tuple[str, ...] = ()
    split_rule: Literal["train95", "own"] = "own"
    hub_splits: dict[str, str] = field(default_factory=dict)  # our split -> hub split name
    metric: str = "accuracy"
    zero_shot_from: str | None = None  # evaluated with the model fine-tuned on this task
    tags_field: str = "ner_tags"  # tc: tner/ontonotes5 calls it "tags"
    toyworld: bool = False
    files: dict[str, Files] = field(default_factory=dict)  # our split -> local files tried (see the module doc)
    subdirs: tuple[str, ...] = ()  # where the official archive unpacks to, tried after local_dir itself
    required_splits: tuple[str, ...] = ()  # ir: the qrels splits that must exist (the others in hub_splits may)

    @property
    def category(self) -> str:
        return self.type.upper()


def _glue(name: str, fields: tuple[str, ...], labels: tuple[str, ...], template: str | None, subdir: str,
          **kw) -> TaskSpec:
    test = kw.pop("test_split", "validation")
    dev = {"validation": "dev.tsv", "validation_matched": "dev_matched.tsv",
           "validation_mismatched": "dev_mismatched.tsv"}[test]
    files = {"train": HUB("train", ("train.tsv", "tsv")), "test": HUB(test, (f"{test}.tsv", "tsv"), (dev, "tsv"))}
    return TaskSpec(name=name, type="sc", hub_id="nyu-mll/glue", hub_config=kw.pop("config", name), text_fields=fields,
                    pair_template=template, label_names=labels, split_rule="train95",
                    hub_splits={"train": "train", "test": test}, metric="accuracy", files=files, subdirs=(subdir,),
                    **kw)


def _own(official: dict[str, Files]) -> dict[str, Files]:
    return {split: HUB(split, *official[split]) for split in ("train", "validation", "test")}


OWN_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
NLI = ("entailment", "neutral", "contradiction")
REGISTRY: dict[str, TaskSpec] = {spec.name: spec for spec in [
    _glue("sst2", ("sentence",), ("negative", "positive"), None, "SST-2"),
    _glue("mnli", ("premise", "hypothesis"), NLI, "Premise: {premise}\nHypothesis: {hypothesis}", "MNLI",
          test_split="validation_matched"),
    _glue("mnli-mismatched", ("premise", "hypothesis"), NLI, "Premise: {premise}\nHypothesis: {hypothesis}", "MNLI",
          config="mnli", test_split="validation_mismatched"),
    _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
          "Question 1: {question1}\nQuestion 2: {question2}", "QQP"),
    TaskSpec(name="conll2003", type="tc", hub_id="eriktks/conll2003", revision="refs/convert/parquet",
             label_names=CONLL_TAGS, hub_splits=OWN_SPLITS, metric="entity_f1",
             files=_own({"train": (("train.txt", "conll"),), "validation": (("validation.txt", "conll"),
                         ("valid.txt", "conll")), "test": (("test.txt", "conll"),)})),
    TaskSpec(name="ontonotes5", type="tc", hub_id="tner/ontonotes5", label_names=ONTONOTES_TAGS, tags_field="tags",
             hub_splits=OWN_SPLITS, metric="entity_f1", subdirs=("dataset",),
             files=_own({"train": (("train.json", "rows"), ("train0*.json", "rows")),
                         "validation": (("valid.json", "rows"),), "test": (("test.json", "rows"),)})),
    TaskSpec(name="uner-en", type="tc", hub_id="universalner/universal_ner", hub_config="en_ewt",
             revision="refs/convert/parquet", label_names=UNER_TAGS, hub_splits=OWN_SPLITS, metric="entity_f1",
             files=_own({s: ((f"{s}.iob2", "iob2"), (f"en_ewt-ud-{u}.iob2", "iob2"))
                         for s, u in (("train", "train"), ("validation", "dev"), ("test", "test"))})),
    TaskSpec(name="squad", type="qa", hub_id="rajpurkar/squad", hub_config="plain_text", split_rule="train95",
             hub_splits={"train": "train", "test": "validation"}, metric="squad_v1",
             files={"train": HUB("train", ("train-v1.1.json", "squad")),
                    "test": HUB("validation", ("dev-v1.1.json", "squad"))}),
    TaskSpec(name="squad_v2", type="qa", hub_id="rajpurkar/squad_v2", hub_config="squad_v2", split_rule="train95",
             hub_splits={"train": "train", "test": "validation"}, metric="squad_v2",
             files={"train": HUB("train", ("train-v2.0.json", "squad")),
                    "test": HUB("validation", ("dev-v2.0.json", "squad"))}),
    TaskSpec(name="record", type="qa", hub_id="aps/super_glue", hub_config="record", revision="refs/convert/parquet",
             split_rule="train95", hub_splits={"train": "train", "test": "validation"}, metric="record",
             files={"train": HUB("train"), "test": HUB("validation", ("val.jsonl", "rows"))}, subdirs=("ReCoRD",)),
    TaskSpec(name="msmarco", type="ir", hub_id="BeIR/msmarco", hub_splits={"train": "train", "validation": "validation",
             "test": "test"}, metric="ndcg@10", required_splits=("train", "validation", "test"), subdirs=("msmarco",)),
    TaskSpec(name="nq", type="ir", hub_id="BeIR/nq", hub_splits={"test": "test"}, metric="ndcg@10",
             zero_shot_from="msmarco", required_splits=("test",), subdirs=("nq",)),
    TaskSpec(name="mldr-en", type="ir", hub_id="Shitao/MLDR", hub_config="en", hub_splits={"validation": "dev",
             "test": "test"}, metric="ndcg@10", zero_shot_from="msmarco", required_splits=("test",),
             subdirs=("mldr-v1.0-en",)),
    # toyworld: built in, offline, same schemas
    TaskSpec(name="toy-sentiment", type="sc", text_fields=("sentence",), label_names=("negative", "positive"),
             metric="accuracy", toyworld=True),
    TaskSpec(name="toy-nli", type="sc", text_fields=("premise", "hypothesis"),
             pair_template="Premise: {premise}\nHypothesis: {hypothesis}",
             label_names=("entailment", "neutral", "contradiction"), metric="accuracy", toyworld=True),
    TaskSpec(name="toy-ner", type="tc", label_names=CONLL_TAGS, metric="entity_f1", toyworld=True),
    TaskSpec(name="toy-qa", type="qa", metric="squad_v2", toyworld=True),
    TaskSpec(name="toy-retrieval", type="ir", metric="ndcg@10", toyworld=True,
             required_splits=("train", "validation", "test")),
]}
PAPER_TASKS = ("sst2", "mnli", "qqp", "conll2003", "ontonotes5", "uner-en", "squad", "squad_v2", "record",
               "msmarco", "nq", "mldr-en")
TOYWORLD_TASKS = ("toy-sentiment", "toy-nli", "toy-ner", "toy-qa", "toy-retrieval")


def get_task(name: str) -> TaskSpec:
    if name not in REGISTRY:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(REGISTRY)}")
    return REGISTRY[name]


@dataclass
class TaskData:
    """Rows per split in the hub schema; retrieval adds its corpus, queries and qrels."""

    spec: TaskSpec
    splits: dict[str, list[dict]] = field(default_factory=dict)
    corpus: list[dict] | None = None
    queries: dict[str, list[dict]] | None = None
    qrels: dict[str, dict[str, dict[str, int]]] | None = None


def split_train95(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """95% / 5% of the official train split, with the fixed split seed 42 (never the run seed)."""
    order = list(range(len(rows)))
    random.Random(SPLIT_SEED).shuffle(order)
    cut = int(round(0.95 * len(rows)))
    return [rows[i] for i in sorted(order[:cut])], [rows[i] for i in sorted(order[cut:])]
