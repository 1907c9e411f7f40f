"""The task registry: each dataset of the paper is one declarative entry, toyworld tasks too.

Splits follow the paper's protocol, fixed across seeds: GLUE, SQuAD and ReCoRD use 95% of the
official train split for training and the other 5% for validation (split seed 42), and the
official validation split as test; token classification and retrieval use their own splits; NQ
and MLDR are not trained on (the MS MARCO model is evaluated on them).

Every entry loads from the hub (``datasets``, pinned revision where the canonical repo needs one)
or from local files in the same schema (``local_dir``: ``train.jsonl`` / ``validation.jsonl`` /
``test.jsonl`` or ``.parquet``; BEIR layout for retrieval), for offline clusters. CoNLL-2003 and
UNER also read their official raw formats (CoNLL ``tok POS CHUNK NER`` lines, ``.iob2``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from encoderlab.config import ConfigError

TaskType = Literal["sc", "tc", "qa", "ir"]
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
UNER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
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

    @property
    def category(self) -> str:
        return self.type.upper()


def _glue(name: str, fields: tuple[str, ...], labels: tuple[str, ...], template: str | None, **kw) -> TaskSpec:
    return TaskSpec(name=name, type="sc", hub_id="nyu-mll/glue", hub_config=kw.pop("config", name), text_fields=fields,
                    pair_template=template, label_names=labels, split_rule="train95",
                    hub_splits={"train": "train", "test": kw.pop("test_split", "validation")}, metric="accuracy", **kw)


REGISTRY: dict[str, TaskSpec] = {spec.name: spec for spec in [
    _glue("sst2", ("sentence",), ("negative", "positive"), None),
    _glue("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
          "Premise: {premise}\nHypothesis: {hypothesis}", test_split="validation_matched"),
    _glue("mnli-mismatched", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
          "Premise: {premise}\nHypothesis: {hypothesis}", config="mnli", test_split="validation_mismatched"),
    _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
          "Question 1: {question1}\nQuestion 2: {question2}"),
    TaskSpec(name="conll2003", type="tc", hub_id="eriktks/conll2003", revision="refs/convert/parquet",
             label_names=CONLL_TAGS, hub_splits={"train": "train", "validation": "validation", "test": "test"},
             metric="entity_f1"),
    TaskSpec(name="ontonotes5", type="tc", hub_id="tner/ontonotes5", label_names=ONTONOTES_TAGS, tags_field="tags",
             hub_splits={"train": "train", "validation": "validation", "test": "test"}, metric="entity_f1"),
    TaskSpec(name="uner-en", type="tc", hub_id="universalner/universal_ner", hub_config="en_ewt",
             revision="refs/convert/parquet", label_names=UNER_TAGS,
             hub_splits={"train": "train", "validation": "validation", "test": "test"}, metric="entity_f1"),
    TaskSpec(name="squad", type="qa", hub_id="rajpurkar/squad", hub_config="plain_text", split_rule="train95",
             hub_splits={"train": "train", "test": "validation"}, metric="squad_v1"),
    TaskSpec(name="squad_v2", type="qa", hub_id="rajpurkar/squad_v2", hub_config="squad_v2", split_rule="train95",
             hub_splits={"train": "train", "test": "validation"}, metric="squad_v2"),
    TaskSpec(name="record", type="qa", hub_id="aps/super_glue", hub_config="record", revision="refs/convert/parquet",
             split_rule="train95", hub_splits={"train": "train", "test": "validation"}, metric="record"),
    TaskSpec(name="msmarco", type="ir", hub_id="BeIR/msmarco", hub_splits={"train": "train", "validation": "validation",
             "test": "validation"}, metric="ndcg@10"),
    TaskSpec(name="nq", type="ir", hub_id="BeIR/nq", hub_splits={"test": "test"}, metric="ndcg@10",
             zero_shot_from="msmarco"),
    TaskSpec(name="mldr-en", type="ir", hub_id="Shitao/MLDR", hub_config="en", hub_splits={"test": "test"},
             metric="ndcg@10", zero_shot_from="msmarco"),
    # toyworld: built in, offline, same schemas
    TaskSpec(name="toy-sentiment", type="sc", text_fields=("sentence",), label_names=("negative", "positive"),
             metric="accuracy", toyworld=True),
    TaskSpec(name="toy-nli", type="sc", text_fields=("premise", "hypothesis"),
             pair_template="Premise: {premise}\nHypothesis: {hypothesis}",
             label_names=("entailment", "neutral", "contradiction"), metric="accuracy", toyworld=True),
    TaskSpec(name="toy-ner", type="tc", label_names=CONLL_TAGS, metric="entity_f1", toyworld=True),
    TaskSpec(name="toy-qa", type="qa", metric="squad_v2", toyworld=True),
    TaskSpec(name="toy-retrieval", type="ir", metric="ndcg@10", toyworld=True),
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


def read_conll(path: Path) -> list[dict]:
    """CoNLL-2003 raw format: ``tok POS CHUNK NER`` lines; -DOCSTART- and blank lines end sentences."""
    rows, tokens, tags = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                rows.append({"id": str(len(rows)), "tokens": tokens, "ner_tags": tags})
            tokens, tags = [], []
            continue
        parts = line.split(" ")
        if len(parts) != 4 or parts[3] not in CONLL_TAGS:
            raise ConfigError(f"{path}:{number}: expected 'token POS CHUNK NER' with an IOB2 tag, got {line!r}")
        tokens.append(parts[0])
        tags.append(CONLL_TAGS.index(parts[3]))
    if tokens:
        rows.append({"id": str(len(rows)), "tokens": tokens, "ner_tags": tags})
    return rows


def read_iob2(path: Path) -> list[dict]:
    """UNER ``.iob2``: ``index<TAB>token<TAB>tag<TAB>...`` lines under ``# sent_id`` / ``# text`` comments."""
    rows, tokens, tags, sent_id = [], [], [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines() + [""], start=1):
        if line.startswith("# sent_id"):
            sent_id = line.split("=", 1)[1].strip()
        elif line.startswith("#"):
            continue
        elif not line.strip():
            if tokens:
                rows.append({"idx": sent_id or str(len(rows)), "tokens": tokens, "ner_tags": tags})
            tokens, tags, sent_id = [], [], None
        else:
            parts = line.split("\t")
            if len(parts) < 3 or parts[2] not in UNER_TAGS:
                raise ConfigError(f"{path}:{number}: expected 'index<TAB>token<TAB>IOB2 tag', got {line!r}")
            tokens.append(parts[1])
            tags.append(UNER_TAGS.index(parts[2]))
    return rows


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".tsv":  # GLUE's own files: a header, tab separated, no quoting
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        rows = [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]
        for index, row in enumerate(rows):
            if "label" in row:
                row["label"] = int(row["label"])
            row.setdefault("idx", index)
        return rows
    if path.suffix == ".txt":
        return read_conll(path)
    if path.suffix == ".iob2":
        return read_iob2(path)
    raise ConfigError(f"{path}: unsupported file type (expected .jsonl, .parquet, .tsv, CoNLL .txt or .iob2)")


def _local_split(local_dir: Path, split: str) -> list[dict] | None:
    for suffix in (".jsonl", ".parquet", ".tsv", ".txt", ".iob2"):
        path = local_dir / f"{split}{suffix}"
        if path.is_file():
            return _read_rows(path)
    return None


def _check_rows(spec: TaskSpec, split: str, rows: list[dict], where: str) -> list[dict]:
    if not rows:
        raise ConfigError(f"{where}: split {split!r} of task {spec.name!r} is empty")
    required = {"sc": (*spec.text_fields, "label"), "tc": ("tokens", "ner_tags"),
                "qa": ("context", "question", "answers")}.get(spec.type, ())
    missing = [f for f in required if f not in rows[0]]
    if missing and spec.name != "record":
        raise ConfigError(f"{where}: rows of task {spec.name!r} lack {missing}; columns are {sorted(rows[0])}")
    if spec.type == "sc":
        for row in rows:
            if not 0 <= int(row["label"]) < len(spec.label_names):
                raise ConfigError(f"{where}: label {row['label']} outside {list(spec.label_names)} (task {spec.name!r})")
    if spec.type == "tc":
        for row in rows:
            if any(not 0 <= t < len(spec.label_names) for t in row["ner_tags"]):
                raise ConfigError(f"{where}: a tag id outside the {len(spec.label_names)} labels of {spec.name!r}")
    return rows


def _record_to_squad(rows: list[dict]) -> list[dict]:
    """ReCoRD as extractive QA over the passage: the query with its @placeholder is the question."""
    out = []
    for row in rows:
        answers = row["answers"]
        starts = []
        for answer in answers:
            spans = [s["start"] for s in row.get("entity_spans", []) if s["text"] == answer]
            starts.append(spans[0] if spans else row["passage"].find(answer))
        out.append({"id": f"{row['idx']['passage']}-{row['idx']['query']}", "title": "", "context": row["passage"],
                    "question": row["query"], "answers": {"text": list(answers), "answer_start": starts}})
    return out


def load_task(name: str, local_dir: str | Path | None = None, toyworld_seed: int = 0) -> TaskData:
    spec = get_task(name)
    data = TaskData(spec)
    if spec.toyworld:
        from encoderlab.data.toyworld import World

        task = World(seed=toyworld_seed).tasks()[name]
        if spec.type == "ir":
            return _ir_from_tables(spec, task["corpus"], task["queries"], task["qrels"])
        data.splits = {k: _check_rows(spec, k, v, f"toyworld:{name}") for k, v in task["splits"].items()}
        return data
    if spec.type == "ir":
        if local_dir is None:
            return _ir_from_hub(spec)
        folder = Path(local_dir)
        if spec.name == "mldr-en" and not (folder / "queries.jsonl").is_file():
            return _ir_from_mldr_rows(spec, _local_split(folder, "corpus") or [], _local_split(folder, "test") or [])
        return _ir_from_beir(spec, folder)
    raw: dict[str, list[dict]] = {}
    for ours, hub in spec.hub_splits.items():
        if local_dir is not None:
            rows = _local_split(Path(local_dir), ours) or _local_split(Path(local_dir), hub)
            if rows is None:
                raise ConfigError(f"{local_dir}: no {ours} (or {hub}) file for task {name!r} "
                                  "(expected <split>.jsonl, .parquet, .tsv, .txt or .iob2)")
        else:
            rows = _load_hub_split(spec, hub)
        if spec.name == "record":
            rows = _record_to_squad(rows)
        elif spec.type == "tc" and spec.tags_field != "ner_tags":
            rows = [{**{k: v for k, v in r.items() if k != spec.tags_field}, "ner_tags": r[spec.tags_field]}
                    for r in rows]
        raw[ours] = rows
    if spec.split_rule == "train95":
        raw["train"], raw["validation"] = split_train95(raw["train"])
    where = str(local_dir) if local_dir else f"hf:{spec.hub_id}"
    data.splits = {k: _check_rows(spec, k, v, where) for k, v in raw.items()}
    return data


def _load_hub_split(spec: TaskSpec, split: str) -> list[dict]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(spec.hub_id, spec.hub_config, split=split, revision=spec.revision)
    except Exception as err:
        raise ConfigError(
            f"task {spec.name!r}: could not load hf:{spec.hub_id} ({spec.hub_config}, split {split}): "
            f"{type(err).__name__}: {err}. Offline, download the files and pass local_dir with <split>.jsonl "
            "or .parquet files in the hub schema"
        ) from None
    return list(dataset)


def _ir_from_tables(spec, corpus, queries, qrels_rows) -> TaskData:
    qrels = {}
    for split, rows in qrels_rows.items():
        table: dict[str, dict[str, int]] = {}
        for row in rows:
            table.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
        qrels[split] = table
    return TaskData(spec, corpus=corpus, queries=queries, qrels=qrels)


def _ir_from_mldr_rows(spec: TaskSpec, corpus_rows: list[dict], query_rows: list[dict]) -> TaskData:
    """Shitao/MLDR's schema (query_id, query, positive_passages; corpus: docid, text) -> BEIR tables."""
    if not corpus_rows or not query_rows:
        raise ConfigError(f"task {spec.name!r}: MLDR needs corpus rows (docid, text) and test rows "
                          "(query_id, query, positive_passages), or a BEIR folder")
    corpus = [{"_id": str(r["docid"]), "title": "", "text": r["text"]} for r in corpus_rows]
    queries = {"test": [{"_id": str(r["query_id"]), "text": r["query"]} for r in query_rows]}
    qrels = {"test": [{"query-id": str(r["query_id"]), "corpus-id": str(p["docid"]), "score": 1}
                      for r in query_rows for p in r["positive_passages"]]}
    return _ir_from_tables(spec, corpus, queries, qrels)


def _ir_from_hub(spec: TaskSpec) -> TaskData:
    from datasets import load_dataset

    try:
        if spec.name == "mldr-en":
            corpus = list(load_dataset(spec.hub_id, "corpus-en", split="corpus"))
            return _ir_from_mldr_rows(spec, corpus, list(load_dataset(spec.hub_id, spec.hub_config, split="test")))
        corpus = list(load_dataset(spec.hub_id, "corpus", split="corpus"))
        all_queries = {str(q["_id"]): q for q in load_dataset(spec.hub_id, "queries", split="queries")}
        queries, qrels = {}, {}
        for ours, theirs in spec.hub_splits.items():
            rows = list(load_dataset(f"{spec.hub_id}-qrels", split=theirs))
            qrels[ours] = rows
            queries[ours] = [all_queries[q] for q in sorted({str(r["query-id"]) for r in rows}) if q in all_queries]
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"task {spec.name!r}: could not load hf:{spec.hub_id} ({type(err).__name__}: {err}). Offline, pass a "
            "local folder in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
        ) from None
    return _ir_from_tables(spec, corpus, queries, qrels)


def _ir_from_beir(spec: TaskSpec, folder: Path) -> TaskData:
    corpus_file = folder / "corpus.jsonl"
    if not corpus_file.is_file():
        raise ConfigError(f"{folder}: no corpus.jsonl (BEIR layout expected) for task {spec.name!r}")
    corpus = _read_rows(corpus_file)
    all_queries = {str(q["_id"]): q for q in _read_rows(folder / "queries.jsonl")}
    queries, qrels_rows = {}, {}
    for split in spec.hub_splits:
        path = folder / "qrels" / f"{spec.hub_splits[split]}.tsv"
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
        rows = [dict(zip(("query-id", "corpus-id", "score"), line.split("\t"))) for line in lines if line]
        qrels_rows[split] = rows
        wanted = {r["query-id"] for r in rows}
        queries[split] = [all_queries[q] for q in sorted(wanted) if q in all_queries]
    if not qrels_rows:
        raise ConfigError(f"{folder}: no qrels/<split>.tsv for task {spec.name!r}")
    return _ir_from_tables(spec, corpus, queries, qrels_rows)
