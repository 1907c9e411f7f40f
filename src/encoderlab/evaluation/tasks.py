"""Loading the tasks of the registry (:mod:`encoderlab.evaluation.registry`: each dataset of the paper
is one declarative entry, toyworld tasks too).

Splits follow the paper's protocol, fixed across seeds: GLUE, SQuAD and ReCoRD use 95% of the
official train split for training and the other 5% for validation (split seed 42), and the
official validation (dev) split as test; their official test files are unlabelled and never read.
Token classification uses its own train/validation/test. MS MARCO trains on its train qrels
(query, positive passage pairs), selects the LR on its dev queries (qrels ``validation``, 6,980
queries) and tests on qrels ``test`` (TREC-DL 2019, 43 queries, graded); NQ and MLDR are not
trained on: the MS MARCO model is tested on them. A retrieval task's train, validation and test
query sets must be disjoint (checked when loading).

Every entry loads from the hub (``datasets``, pinned revision where the canonical repo needs one)
or from a local folder (``local_dir``, ``--data TASK=DIR``): the folder the user downloaded, in the
dataset's official layout, or files in the hub schema. Per split, the names below are tried in
order in the folder, then in the subfolder the official archive unpacks to (given per task); the
first that exists is read (a ``*`` pattern reads all its matches, sorted, as one split). A split
that is not found is a ConfigError listing every name tried. In every task, ``HUB(name)`` means the
hub-schema files ``name.jsonl``, ``name.jsonl.gz``, ``name.parquet`` and the hub's parquet shards
``name-*.parquet``, ``*-name.parquet``, ``name/*.parquet``.

======================  ===========  ======================================================================
task (subfolder)        our split    files tried
======================  ===========  ======================================================================
sst2 (``SST-2/``)       train        HUB(train), ``train.tsv`` (GLUE: ``sentence<TAB>label``)
                        test         HUB(validation), ``validation.tsv``, ``dev.tsv`` (GLUE's dev)
qqp (``QQP/``)          train        HUB(train), ``train.tsv`` (GLUE: ``id qid1 qid2 question1 question2
                                     is_duplicate``)
                        test         HUB(validation), ``validation.tsv``, ``dev.tsv``
mnli (``MNLI/``)        train        HUB(train), ``train.tsv`` (GLUE: ``index promptID pairID genre ...
                                     sentence1 sentence2 label1 gold_label``, string labels)
                        test         HUB(validation_matched), ``validation_matched.tsv``, ``dev_matched.tsv``
mnli-mismatched         train/test   as mnli, but test = HUB(validation_mismatched),
                                     ``validation_mismatched.tsv``, ``dev_mismatched.tsv``
conll2003               train        HUB(train), ``train.txt`` (``tok POS CHUNK NER``, IOB2)
                        validation   HUB(validation), ``validation.txt``, ``valid.txt``
                        test         HUB(test), ``test.txt``
ontonotes5              train        HUB(train), ``train.json``, ``train0*.json`` (tner: JSON lines with
(``dataset/``)                       ``tokens`` and ``tags`` or ``ner_tags``, TNER's label ids)
                        validation   HUB(validation), ``valid.json``
                        test         HUB(test), ``test.json``
uner-en                 train        HUB(train), ``train.iob2``, ``en_ewt-ud-train.iob2``
                        validation   HUB(validation), ``validation.iob2``, ``en_ewt-ud-dev.iob2``
                        test         HUB(test), ``test.iob2``, ``en_ewt-ud-test.iob2``
squad                   train        HUB(train), ``train-v1.1.json`` (official nested JSON)
                        test         HUB(validation), ``dev-v1.1.json``
squad_v2                train        HUB(train), ``train-v2.0.json``
                        test         HUB(validation), ``dev-v2.0.json`` (unanswerable: empty answers)
record (``ReCoRD/``)    train        HUB(train) (``train.jsonl`` in the hub's schema or SuperGLUE's)
                        test         HUB(validation), ``val.jsonl`` (SuperGLUE's ReCoRD jsonl)
msmarco, nq (BEIR:      corpus       ``corpus.jsonl``, ``corpus.jsonl.gz`` (``_id``, ``title``, ``text``)
``msmarco/``, ``nq/``)  queries      ``queries.jsonl``, ``queries.jsonl.gz`` (``_id``, ``text``)
                        train        ``qrels/train.tsv`` (msmarco only; header ``query-id corpus-id score``)
                        validation   ``qrels/dev.tsv``, ``qrels/validation.tsv`` (msmarco only)
                        test         ``qrels/test.tsv``
mldr-en                 corpus       ``corpus.jsonl``, ``corpus.jsonl.gz``, ``corpus.parquet`` (docid, text)
(``mldr-v1.0-en/``)     validation   ``dev.jsonl``, ``dev.jsonl.gz``, ``dev.parquet`` (optional)
                        test         ``test.jsonl``, ``test.jsonl.gz``, ``test.parquet`` (query_id, query,
                                     positive_passages); or a BEIR folder as nq (``qrels/test.tsv``,
                                     optional ``qrels/dev.tsv``)
======================  ===========  ======================================================================

Retrieval needs: msmarco train, validation and test; nq test only; mldr-en test (its dev, when
present, only joins the judged pool, as in the paper). Every query id of a qrels split must be in
the queries, and the splits' query sets must be disjoint, or loading fails. The readers of these
formats are in :mod:`encoderlab.evaluation.formats`.
"""

from __future__ import annotations

from pathlib import Path

from encoderlab.config import ConfigError
from encoderlab.evaluation.formats import (check_unique, read_beir_qrels, read_conll,
                                           read_glue_tsv, read_iob2, read_rows, read_squad_json, record_rows_to_hub)
from encoderlab.evaluation.registry import (BEIR_CORPUS, BEIR_QRELS, BEIR_QUERIES, MLDR_FILES, PAPER_TASKS, REGISTRY,
                                            TOYWORLD_TASKS, Files, TaskData, TaskSpec, get_task, split_train95)
from encoderlab.evaluation.task_types import task_type
from encoderlab.data.toyworld import World

__all__ = ["PAPER_TASKS", "REGISTRY", "TOYWORLD_TASKS", "TaskData", "TaskSpec", "get_task", "load_task", "read_conll",
           "read_iob2", "split_train95"]


# -- local files ----------------------------------------------------------------------------------
def _find(folder: Path, spec: TaskSpec, files: Files) -> tuple[list[Path], str, list[str]]:
    """The first of ``files`` found in ``folder`` or its official subfolders: (paths, reader, names tried)."""
    tried = []
    for prefix in ("", *(f"{d}/" for d in spec.subdirs)):
        for pattern, reader in files:
            tried.append(prefix + pattern)
            paths = sorted(p for p in folder.glob(prefix + pattern) if p.is_file())
            if paths:
                return paths, reader, tried
    return [], "", tried


def _read(spec: TaskSpec, path: Path, reader: str) -> list[dict]:
    if reader == "tsv":
        return read_glue_tsv(path, spec.text_fields, spec.label_names)
    if reader == "conll":
        return read_conll(path)
    if reader == "iob2":
        return read_iob2(path)
    if reader == "squad":
        return read_squad_json(path)
    return read_rows(path)


def _locate(spec: TaskSpec, folder: Path) -> dict[str, tuple[list[Path], str]]:
    """The files of every split, found before any is read (a missing split is reported first)."""
    found = {}
    for split in spec.hub_splits:
        paths, reader, tried = _find(folder, spec, spec.files[split])
        if not paths:
            official = {"test": " (our test is the official validation/dev split; the official test files are "
                                "unlabelled and never read)"}.get(split, "") if spec.split_rule == "train95" else ""
            raise ConfigError(f"{folder}: no {split} split for task {spec.name!r}{official}; tried {', '.join(tried)}")
        found[split] = (paths, reader)
    return found


def _check_dir(local_dir) -> Path:
    folder = Path(local_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such directory (local_dir / --data TASK=DIR)")
    return folder


# -- rows --------------------------------------------------------------------------------------
def _normalise(spec: TaskSpec, rows: list[dict], where: str) -> list[dict]:
    if spec.name == "record":
        return _record_to_squad(record_rows_to_hub(rows, where))
    return task_type(spec.type).normalise(spec, rows, where)


def _check_rows(spec: TaskSpec, split: str, rows: list[dict], where: str) -> list[dict]:
    """The rows of one split, checked (and normalised) by the task's type."""
    if not rows:
        raise ConfigError(f"{where}: split {split!r} of task {spec.name!r} is empty")
    kind = task_type(spec.type)
    missing = [f for f in kind.required_fields(spec) if f not in rows[0]]
    if missing:
        raise ConfigError(f"{where}: rows of task {spec.name!r} lack {missing}; columns are {sorted(rows[0])}")
    for number, row in enumerate(rows, start=1):
        kind.check_row(spec, row, f"{where}: row {number}")
    kind.check_rows(spec, rows, where)
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
    if spec.toyworld and local_dir is not None:
        raise ConfigError(f"task {name!r} is built in (toyworld) and reads no files, so --data {name}={local_dir} would "
                          "be ignored; for your own files use the paper task of the same schema (e.g. sst2, mnli, "
                          "conll2003, squad_v2, msmarco)")
    if spec.toyworld:
        task = World(seed=toyworld_seed).tasks()[name]
        if task_type(spec.type).layout == "corpus":
            return _ir_from_tables(spec, task["corpus"], task["queries"], task["qrels"], {}, f"toyworld:{name}")
        data.splits = {k: _check_rows(spec, k, v, f"toyworld:{name}") for k, v in task["splits"].items()}
        return data
    if task_type(spec.type).layout == "corpus":
        if local_dir is None:
            return _ir_from_hub(spec)
        folder = _check_dir(local_dir)
        own = _is_beir(folder) or any((folder / n).is_file() for n, _ in BEIR_CORPUS + MLDR_FILES["corpus"])
        base = folder if own else next((folder / d for d in spec.subdirs if (folder / d).is_dir()), folder)
        if spec.name == "mldr-en" and not _is_beir(base):
            return _ir_from_mldr_files(spec, base)
        return _ir_from_beir(spec, base)
    raw: dict[str, list[dict]] = {}
    where: dict[str, str] = {}
    located = _locate(spec, _check_dir(local_dir)) if local_dir is not None else {}
    for ours, hub in spec.hub_splits.items():
        if local_dir is not None:
            paths, reader = located[ours]
            rows, where[ours] = [r for p in paths for r in _read(spec, p, reader)], ", ".join(map(str, paths))
        else:
            rows, where[ours] = _load_hub_split(spec, hub), f"hf:{spec.hub_id}:{hub}"
        raw[ours] = _check_rows(spec, ours, _normalise(spec, rows, where[ours]), where[ours])
    if spec.split_rule == "train95":
        raw["train"], raw["validation"] = split_train95(raw["train"])
        for split in ("train", "validation"):
            if not raw[split]:
                raise ConfigError(f"{where['train']}: {len(raw['train'])} train rows leave the {split} split of "
                                  f"task {name!r} empty (95% / 5% of the official train split)")
    data.splits = raw
    return data


def _load_hub_split(spec: TaskSpec, split: str) -> list[dict]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(spec.hub_id, spec.hub_config, split=split, revision=spec.revision)
    except Exception as err:
        raise ConfigError(
            f"task {spec.name!r}: could not load hf:{spec.hub_id} ({spec.hub_config}, split {split}): "
            f"{type(err).__name__}: {err}. Offline, download the files and pass local_dir (the official layout "
            "or hub-schema files; see encoderlab.evaluation.tasks)"
        ) from None
    return list(dataset)


# -- retrieval ------------------------------------------------------------------------------------
def _is_beir(folder: Path) -> bool:
    return (folder / "qrels").is_dir()


def _ir_from_tables(spec, corpus, queries, qrels_rows, sources: dict[str, str], where: str) -> TaskData:
    """Qrels tables per split, checked: the required splits are there and the query sets are disjoint
    (the LR must not be selected on test queries, nor trained on them)."""
    qrels = {}
    for split, rows in qrels_rows.items():
        table: dict[str, dict[str, int]] = {}
        for row in rows:
            table.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
        if not table:
            raise ConfigError(f"{sources.get(split, where)}: the {split} qrels of task {spec.name!r} are empty")
        qrels[split] = table
    absent = [s for s in spec.required_splits if s not in qrels]
    if absent:
        raise ConfigError(f"{where}: task {spec.name!r} needs the qrels splits {list(spec.required_splits)}; "
                          f"missing {absent}")
    _check_corpus(spec, corpus, qrels, sources, where)
    splits = list(qrels)
    for i, first in enumerate(splits):
        for second in splits[i + 1:]:
            shared = qrels[first].keys() & qrels[second].keys()
            if shared:
                raise ConfigError(
                    f"task {spec.name!r}: the {first} qrels ({sources.get(first, where)}) and the {second} qrels "
                    f"({sources.get(second, where)}) share {len(shared)} query ids (e.g. {min(shared)!r}); the "
                    "splits must be disjoint (a validation split equal to test would select the LR on test)")
    return TaskData(spec, corpus=corpus, queries=queries, qrels=qrels)


def _check_corpus(spec, corpus: list[dict], qrels: dict[str, dict[str, dict[str, int]]], sources: dict[str, str],
                  where: str) -> None:
    """A corpus the qrels can be scored against: not empty, unique ids, every judged document in it,
    every query of a split with at least one relevant (score > 0) document. A judged document
    missing from the corpus can never be retrieved and an all-irrelevant query scores 0 whatever
    the model: both would lower the score silently."""
    corpus_where = sources.get("corpus", where)
    if not corpus:
        raise ConfigError(f"{corpus_where}: the corpus of task {spec.name!r} is empty")
    ids = [str(d["_id"]) for d in corpus]
    check_unique(ids, "corpus id", corpus_where)
    known = set(ids)
    for split, table in qrels.items():
        judged = {doc for docs in table.values() for doc in docs}
        missing = sorted(judged - known)
        if missing:
            raise ConfigError(f"{sources.get(split, where)}: the {split} qrels of task {spec.name!r} judge "
                              f"{len(missing)} document(s) that are not in the corpus ({corpus_where}), e.g. "
                              f"{missing[0]!r}; a missing document can never be retrieved (use the corpus these "
                              "qrels were made for)")
        unjudged = sorted(q for q, docs in table.items() if not any(score > 0 for score in docs.values()))
        if unjudged:
            raise ConfigError(f"{sources.get(split, where)}: {len(unjudged)} query(ies) of the {split} qrels of task "
                              f"{spec.name!r} have no relevant document (score > 0), e.g. {unjudged[0]!r}; such a "
                              "query scores 0 whatever the model: drop it from the qrels")


def _split_queries(spec, all_queries: dict[str, dict], qrels_rows: dict[str, list[dict]], sources: dict[str, str],
                   queries_where: str) -> dict[str, list[dict]]:
    """The queries of each qrels split; a query id of the qrels absent from the queries is an error."""
    queries = {}
    for split, rows in qrels_rows.items():
        wanted = {str(r["query-id"]) for r in rows}
        missing = sorted(wanted - all_queries.keys())
        if missing:
            raise ConfigError(f"{sources.get(split, split)}: {len(missing)} of the {len(wanted)} query ids of the "
                              f"{split} qrels of task {spec.name!r} are not in {queries_where} (e.g. {missing[0]!r})")
        queries[split] = [all_queries[q] for q in sorted(wanted)]
    return queries


def _ir_from_mldr_rows(spec: TaskSpec, corpus_rows: list[dict], split_rows: dict[str, list[dict]],
                       sources: dict[str, str], where: str) -> TaskData:
    """Shitao/MLDR's schema (query_id, query, positive_passages; corpus: docid, text) -> BEIR tables."""
    try:
        corpus = [{"_id": str(r["docid"]), "title": "", "text": r["text"]} for r in corpus_rows]
        queries = {s: [{"_id": str(r["query_id"]), "text": r["query"]} for r in rows] for s, rows in split_rows.items()}
        qrels = {s: [{"query-id": str(r["query_id"]), "corpus-id": str(p["docid"]), "score": 1}
                     for r in rows for p in r["positive_passages"]] for s, rows in split_rows.items()}
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{where}: task {spec.name!r}: not MLDR's schema (corpus: docid, text; queries: query_id, "
                          f"query, positive_passages [{{docid, text}}]): missing {err}") from None
    if not corpus:
        raise ConfigError(f"{where}: the corpus of task {spec.name!r} is empty")
    return _ir_from_tables(spec, corpus, queries, qrels, sources, where)


def _ir_from_mldr_files(spec: TaskSpec, folder: Path) -> TaskData:
    found, sources = {}, {}
    for split in ("corpus", "validation", "test"):
        paths, _, tried = _find(folder, spec, MLDR_FILES[split])
        if not paths and split != "validation":
            raise ConfigError(f"{folder}: no MLDR {split} file for task {spec.name!r}; tried {', '.join(tried)} "
                              "(or a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv)")
        if paths:
            found[split] = [row for path in paths for row in read_rows(path)]
            sources[split] = ", ".join(str(p) for p in paths)
    corpus = found.pop("corpus")
    return _ir_from_mldr_rows(spec, corpus, found, sources, str(folder))


def _ir_from_hub(spec: TaskSpec) -> TaskData:
    from datasets import load_dataset

    try:
        if spec.name == "mldr-en":  # Shitao/MLDR is a loading script: read its json files
            url = "hf://datasets/Shitao/MLDR/mldr-v1.0-en/{}.jsonl.gz"
            corpus = list(load_dataset("json", data_files=url.format("corpus"), split="train"))
            rows = {ours: list(load_dataset("json", data_files=url.format(theirs), split="train"))
                    for ours, theirs in spec.hub_splits.items()}
            return _ir_from_mldr_rows(spec, corpus, rows, {}, f"hf:{spec.hub_id}")
        corpus = list(load_dataset(spec.hub_id, "corpus", split="corpus"))
        all_queries = {str(q["_id"]): q for q in load_dataset(spec.hub_id, "queries", split="queries")}
        qrels = {ours: list(load_dataset(f"{spec.hub_id}-qrels", split=theirs))
                 for ours, theirs in spec.hub_splits.items()}
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"task {spec.name!r}: could not load hf:{spec.hub_id} ({type(err).__name__}: {err}). Offline, pass a "
            "local folder in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv)"
        ) from None
    sources = {ours: f"hf:{spec.hub_id}-qrels:{theirs}" for ours, theirs in spec.hub_splits.items()}
    queries = _split_queries(spec, all_queries, qrels, sources, f"hf:{spec.hub_id}:queries")
    return _ir_from_tables(spec, corpus, queries, qrels, sources, f"hf:{spec.hub_id}")


def _ir_from_beir(spec: TaskSpec, folder: Path) -> TaskData:
    tables = {}
    for what, files in (("corpus", BEIR_CORPUS), ("queries", BEIR_QUERIES)):
        paths, _, tried = _find(folder, spec, files)
        if not paths:
            raise ConfigError(f"{folder}: no {what} file for task {spec.name!r} (BEIR layout); "
                              f"tried {', '.join(tried)}")
        tables[what] = (read_rows(paths[0]), str(paths[0]))
    (corpus, corpus_file), (query_rows, queries_file) = tables["corpus"], tables["queries"]
    for rows, path, columns in ((corpus, corpus_file, ("_id", "text")), (query_rows, queries_file, ("_id", "text"))):
        if rows and any(c not in rows[0] for c in columns):
            raise ConfigError(f"{path}: BEIR rows need {list(columns)}; the first row has {sorted(rows[0])}")
    check_unique([str(q["_id"]) for q in query_rows], "query id", queries_file)
    all_queries = {str(q["_id"]): q for q in query_rows}
    qrels_rows, sources = {}, {"corpus": corpus_file}
    for split in spec.hub_splits:
        candidates = [folder / "qrels" / name for name in BEIR_QRELS[split]]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            if split in spec.required_splits:
                raise ConfigError(f"{folder}: task {spec.name!r} needs its {split} qrels: none of "
                                  f"{', '.join('qrels/' + p.name for p in candidates)} found (BEIR layout: "
                                  "qrels/train.tsv, qrels/dev.tsv, qrels/test.tsv)")
            continue
        qrels_rows[split], sources[split] = read_beir_qrels(path), str(path)
    queries = _split_queries(spec, all_queries, qrels_rows, sources, queries_file)
    return _ir_from_tables(spec, corpus, queries, qrels_rows, sources, str(folder))
