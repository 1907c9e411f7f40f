"""The task registry on fixtures in the exact hub schemas, and on the genuine files in ../shared."""

import json
from pathlib import Path

import pytest

from encoderlab.config import ConfigError
from encoderlab.evaluation.tasks import PAPER_TASKS, REGISTRY, TOYWORLD_TASKS, load_task, read_conll, read_iob2, split_train95
from testkit import SHARED



def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


FIXTURES = {
    "sst2": {"train": [{"sentence": f"a fine film {i} ", "label": i % 2, "idx": i} for i in range(40)],
             "validation": [{"sentence": "dull . ", "label": 0, "idx": 0}]},
    "mnli": {"train": [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3, "idx": i} for i in range(40)],
             "validation_matched": [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}]},
    "qqp": {"train": [{"question1": f"q{i}?", "question2": f"r{i}?", "label": i % 2, "idx": i} for i in range(40)],
            "validation": [{"question1": "a?", "question2": "b?", "label": 1, "idx": 0}]},
    "conll2003": {s: [{"id": "0", "tokens": ["EU", "rejects", "German", "call"], "pos_tags": [22, 42, 16, 21],
                       "chunk_tags": [11, 21, 11, 12], "ner_tags": [3, 0, 7, 0]}] for s in ("train", "validation", "test")},
    "ontonotes5": {s: [{"tokens": ["Obama", "visited", "Paris", "."], "tags": [4, 0, 7, 0]}]
                   for s in ("train", "validation", "test")},
    "uner-en": {s: [{"idx": "x-1", "text": "Ana went home", "tokens": ["Ana", "went", "home"], "ner_tags": [1, 0, 0],
                     "annotator": ["a", "a", "a"]}] for s in ("train", "validation", "test")},
    "squad": {"train": [{"id": str(i), "title": "T", "context": "Paris is in France.", "question": "Where is Paris?",
                         "answers": {"text": ["France"], "answer_start": [12]}} for i in range(40)],
              "validation": [{"id": "v", "title": "T", "context": "Oslo is in Norway.", "question": "Where is Oslo?",
                              "answers": {"text": ["Norway", "Norway"], "answer_start": [11, 11]}}]},
    "squad_v2": {"train": [{"id": str(i), "title": "T", "context": "Paris is in France.", "question": "Who?",
                            "answers": {"text": [], "answer_start": []}} for i in range(40)],
                 "validation": [{"id": "v", "title": "T", "context": "c", "question": "q",
                                 "answers": {"text": [], "answer_start": []}}]},
    "record": {s: [{"passage": "Obama met Merkel in Berlin.\n@highlight\nTalks", "query": "@placeholder met Merkel",
                    "entities": ["Obama", "Merkel", "Berlin"],
                    "entity_spans": [{"text": "Obama", "start": 0, "end": 5}, {"text": "Merkel", "start": 10, "end": 16},
                                     {"text": "Berlin", "start": 20, "end": 26}],
                    "answers": ["Obama"], "idx": {"passage": i, "query": 0}} for i in range(20)]
               for s in ("train", "validation")},
}


def _beir(folder: Path, splits: list[str]) -> None:
    """A BEIR folder: split i's qrels hold queries q{2i} and q{2i+1} (disjoint splits, as BEIR's)."""
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(5)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(2 * len(splits))])
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(splits):
        (folder / "qrels" / f"{split}.tsv").write_text(
            f"query-id\tcorpus-id\tscore\nq{2 * i}\td1\t1\nq{2 * i + 1}\td3\t1\n")


def test_all_twelve_paper_datasets_are_registered():
    assert len(PAPER_TASKS) == 12 and all(name in REGISTRY for name in PAPER_TASKS)
    categories = {REGISTRY[n].category for n in PAPER_TASKS}
    assert categories == {"SC", "TC", "QA", "IR"}
    assert REGISTRY["nq"].zero_shot_from == "msmarco" and REGISTRY["mldr-en"].zero_shot_from == "msmarco"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_hub_schema_fixtures_load(tmp_path, name):
    for split, rows in FIXTURES[name].items():
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    data = load_task(name, local_dir=tmp_path)
    spec = REGISTRY[name]
    if spec.split_rule == "train95":
        train_rows = len(FIXTURES[name]["train"])
        assert len(data.splits["train"]) == round(0.95 * train_rows)
        assert len(data.splits["train"]) + len(data.splits["validation"]) == train_rows
    assert set(data.splits) == {"train", "validation", "test"}
    first = data.splits["test"][0]
    if spec.type == "tc":
        assert len(first["tokens"]) == len(first["ner_tags"])
    if name == "record":
        assert first["answers"]["text"] == ["Obama"] and first["answers"]["answer_start"] == [0]


@pytest.mark.parametrize("name, splits", [("msmarco", ["train", "dev", "test"]), ("nq", ["test"]),
                                         ("mldr-en", ["test"])])
def test_beir_layout_loads(tmp_path, name, splits):
    _beir(tmp_path, splits)
    data = load_task(name, local_dir=tmp_path)
    assert len(data.corpus) == 5
    ours = {"dev": "validation"}
    for i, split in enumerate(splits):
        assert data.qrels[ours.get(split, split)] == {f"q{2 * i}": {"d1": 1}, f"q{2 * i + 1}": {"d3": 1}}
        assert [q["_id"] for q in data.queries[ours.get(split, split)]] == [f"q{2 * i}", f"q{2 * i + 1}"]


def test_split_is_fixed_by_seed_42_not_the_run_seed():
    rows = [{"i": i} for i in range(100)]
    assert split_train95(rows) == split_train95(rows)
    train, validation = split_train95(rows)
    assert len(train) == 95 and len(validation) == 5 and not {r["i"] for r in train} & {r["i"] for r in validation}


def test_bad_task_input(tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'sst3'"):
        load_task("sst3")
    write_jsonl(tmp_path / "train.jsonl", [{"sentence": "x", "label": 5, "idx": 0}] * 20)
    write_jsonl(tmp_path / "validation.jsonl", [{"sentence": "x", "label": 0, "idx": 0}])
    with pytest.raises(ConfigError, match=r"label 5 outside \['negative', 'positive'\]"):
        load_task("sst2", local_dir=tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"text": "x", "label": 0}] * 20)
    with pytest.raises(ConfigError, match=r"lack \['sentence'\]"):
        load_task("sst2", local_dir=tmp_path)
    (tmp_path / "validation.jsonl").unlink()
    with pytest.raises(ConfigError, match="no test"):
        load_task("sst2", local_dir=tmp_path)


def test_toyworld_tasks_load_through_the_same_path():
    for name in TOYWORLD_TASKS:
        data = load_task(name)
        if REGISTRY[name].type == "ir":
            assert data.corpus and data.qrels["test"]
        else:
            assert set(data.splits) == {"train", "validation", "test"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared datasets not available")
def test_genuine_files_in_their_official_formats(tmp_path):
    rows = read_conll(SHARED / "conll2003" / "train.txt")
    assert len(rows) == 14_041 and rows[0]["tokens"][:2] == ["EU", "rejects"]
    assert len(read_conll(SHARED / "conll2003" / "valid.txt")) == 3_250
    assert len(read_conll(SHARED / "conll2003" / "test.txt")) == 3_453
    uner = read_iob2(SHARED / "uner_en_ewt" / "en_ewt-ud-dev.iob2")
    assert len(uner) == 2_001 and all(len(r["tokens"]) == len(r["ner_tags"]) for r in uner)
    # SST-2 as GLUE ships it (tsv): train = the two train parts, test = the official validation
    import shutil

    shutil.copy(SHARED / "sst2" / "validation.tsv", tmp_path / "validation.tsv")
    lines = (SHARED / "sst2" / "train_part.tsv").read_text().splitlines()
    lines += (SHARED / "sst2" / "train_rest.tsv").read_text().splitlines()[1:]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    data = load_task("sst2", local_dir=tmp_path)
    assert len(data.splits["test"]) == 872 and sum(r["label"] for r in data.splits["test"]) == 444
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 67_349
    conll = tmp_path / "conll"
    conll.mkdir()
    for ours, theirs in (("train", "train"), ("validation", "valid"), ("test", "test")):
        shutil.copy(SHARED / "conll2003" / f"{theirs}.txt", conll / f"{ours}.txt")
    assert len(load_task("conll2003", local_dir=conll).splits["test"]) == 3_453


def test_mldr_hub_schema_is_converted(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"docid": "doc-0", "text": "long text"}, {"docid": "doc-1", "text": "x"}])
    write_jsonl(tmp_path / "test.jsonl", [{"query_id": "q-0", "query": "what?", "negative_passages": [],
                                           "positive_passages": [{"docid": "doc-1", "text": "x"}]}])
    data = load_task("mldr-en", local_dir=tmp_path)
    assert data.qrels["test"] == {"q-0": {"doc-1": 1}} and data.queries["test"] == [{"_id": "q-0", "text": "what?"}]
    assert [d["_id"] for d in data.corpus] == ["doc-0", "doc-1"]
