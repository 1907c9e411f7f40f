"""Local folders in the datasets' official layouts and formats, the retrieval splits, and the errors
that name the files expected. Fixtures reproduce the official files' headers and columns; the
genuine files in ../shared are used where they exist (those tests skip without them)."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from encoderlab.config import ConfigError
from encoderlab.evaluation import registry, tasks
from encoderlab.evaluation.tasks import REGISTRY, load_task
from testkit import SHARED

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared datasets not available")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)


def write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(str(v) for v in line) for line in [header, *rows]) + "\n")


# -- MS MARCO and the BEIR layout ------------------------------------------------------------------
QRELS_HEADER = "query-id\tcorpus-id\tscore\n"


def beir_folder(folder: Path, qrels: dict[str, str], queries: int = 8) -> Path:
    """corpus.jsonl, queries.jsonl and qrels/<name>.tsv as BEIR's zips hold them."""
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": f"t{i}", "text": f"doc {i}"} for i in range(6)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}", "metadata": {}}
                                           for i in range(queries)])
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for name, body in qrels.items():
        (folder / "qrels" / name).write_text(QRELS_HEADER + body)
    return folder


MSMARCO_QRELS = {"train.tsv": "q0\td0\t1\nq1\td1\t1\n", "dev.tsv": "q2\td2\t1\nq3\td3\t1\n",
                 "test.tsv": "q4\td4\t3\nq4\td5\t0\nq5\td1\t2\n"}  # TREC-DL: graded, judged negatives too


def test_msmarco_selects_on_the_dev_qrels_and_tests_on_trec_dl():
    spec = REGISTRY["msmarco"]
    assert spec.hub_splits == {"train": "train", "validation": "validation", "test": "test"}
    assert spec.required_splits == ("train", "validation", "test")
    assert REGISTRY["nq"].required_splits == ("test",) and REGISTRY["mldr-en"].required_splits == ("test",)


def test_msmarco_beir_folder_reads_dev_tsv_as_validation(tmp_path):
    data = load_task("msmarco", local_dir=beir_folder(tmp_path, MSMARCO_QRELS))
    assert data.qrels["train"] == {"q0": {"d0": 1}, "q1": {"d1": 1}}
    assert data.qrels["validation"] == {"q2": {"d2": 1}, "q3": {"d3": 1}}
    assert data.qrels["test"] == {"q4": {"d4": 3, "d5": 0}, "q5": {"d1": 2}}
    assert [q["_id"] for q in data.queries["validation"]] == ["q2", "q3"]
    assert [q["_id"] for q in data.queries["test"]] == ["q4", "q5"]


def test_msmarco_beir_folder_in_its_zip_subfolder(tmp_path):
    beir_folder(tmp_path / "msmarco", MSMARCO_QRELS)
    assert set(load_task("msmarco", local_dir=tmp_path).qrels) == {"train", "validation", "test"}


def test_a_missing_needed_qrels_split_names_the_files_expected(tmp_path):
    qrels = {k: v for k, v in MSMARCO_QRELS.items() if k != "dev.tsv"}
    with pytest.raises(ConfigError, match=r"needs its validation qrels: none of qrels/dev.tsv, qrels/validation.tsv"):
        load_task("msmarco", local_dir=beir_folder(tmp_path / "a", qrels))
    qrels = {k: v for k, v in MSMARCO_QRELS.items() if k != "test.tsv"}
    with pytest.raises(ConfigError, match=r"needs its test qrels: none of qrels/test.tsv"):
        load_task("msmarco", local_dir=beir_folder(tmp_path / "b", qrels))
    with pytest.raises(ConfigError, match=r"no corpus file .* tried corpus.jsonl, corpus.jsonl.gz"):
        load_task("nq", local_dir=tmp_path / "b" / "qrels")


def test_validation_equal_to_test_is_refused(tmp_path):
    qrels = {**MSMARCO_QRELS, "dev.tsv": MSMARCO_QRELS["test.tsv"]}
    with pytest.raises(ConfigError, match=r"validation qrels .*dev.tsv\) and the test qrels .*test.tsv\) share 2 "
                                          r"query ids \(e.g. 'q4'\)"):
        load_task("msmarco", local_dir=beir_folder(tmp_path, qrels))
    qrels = {**MSMARCO_QRELS, "train.tsv": "q0\td0\t1\nq5\td1\t1\n"}  # a test query trained on
    with pytest.raises(ConfigError, match=r"the train qrels .* share 1 query ids \(e.g. 'q5'\)"):
        load_task("msmarco", local_dir=beir_folder(tmp_path / "b", qrels))


def test_qrels_queries_absent_from_the_queries_file_are_an_error(tmp_path):
    qrels = {**MSMARCO_QRELS, "test.tsv": "q4\td4\t3\nq9\td1\t1\nq10\td2\t1\n"}
    with pytest.raises(ConfigError, match=r"test.tsv: 2 of the 3 query ids of the test qrels of task 'msmarco' "
                                          r"are not in .*queries.jsonl \(e.g. 'q10'\)"):
        load_task("msmarco", local_dir=beir_folder(tmp_path, qrels))


def test_malformed_qrels_rows_name_the_line(tmp_path):
    qrels = {**MSMARCO_QRELS, "dev.tsv": "q2\td2\t1\nq3 0 d3 1\n"}  # a TREC-format line
    with pytest.raises(ConfigError, match=r"dev.tsv:3: expected 'query-id<TAB>corpus-id<TAB>integer score'"):
        load_task("msmarco", local_dir=beir_folder(tmp_path, qrels))


def test_zero_shot_tasks_read_only_their_test_qrels(tmp_path):
    data = load_task("nq", local_dir=beir_folder(tmp_path, {"train.tsv": "q0\td0\t1\n", "test.tsv": "q4\td4\t1\n"}))
    assert data.qrels == {"test": {"q4": {"d4": 1}}} and [q["_id"] for q in data.queries["test"]] == ["q4"]
    with pytest.raises(ConfigError, match=r"task 'nq' needs its test qrels: none of qrels/test.tsv"):
        load_task("nq", local_dir=beir_folder(tmp_path / "b", {"dev.tsv": "q2\td2\t1\n"}))


def test_the_toyworld_export_loads_as_msmarco(tmp_path):
    from encoderlab.data import World, export_tasks

    export_tasks(World(seed=0), tmp_path / "toy")  # qrels/{train,validation,test}.tsv
    data = load_task("msmarco", local_dir=tmp_path / "toy" / "toy-retrieval")
    assert set(data.qrels) == {"train", "validation", "test"}
    assert not data.qrels["validation"].keys() & data.qrels["test"].keys()


def test_msmarco_from_the_hub_reads_the_dev_and_trec_dl_qrels(monkeypatch):
    import datasets

    calls = []
    qrels = {"train": [("q0", "d0")], "validation": [("q2", "d2")], "test": [("q4", "d4")]}

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        if name == "corpus":
            return [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(5)]
        if name == "queries":
            return [{"_id": f"q{i}", "text": f"query {i}"} for i in range(5)]
        return [{"query-id": q, "corpus-id": d, "score": 1} for q, d in qrels[split]]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_task("msmarco")
    assert [c for c in calls if c[0] == "BeIR/msmarco-qrels"] == [
        ("BeIR/msmarco-qrels", None, "train"), ("BeIR/msmarco-qrels", None, "validation"),
        ("BeIR/msmarco-qrels", None, "test")]
    assert data.qrels["validation"] == {"q2": {"d2": 1}} and data.qrels["test"] == {"q4": {"d4": 1}}
    qrels["test"] = [("q2", "d2")]
    with pytest.raises(ConfigError, match="share 1 query ids"):
        load_task("msmarco")
    qrels["test"] = [("q7", "d2")]
    with pytest.raises(ConfigError, match=r"1 of the 1 query ids of the test qrels .* \(e.g. 'q7'\)"):
        load_task("msmarco")


# -- MLDR --------------------------------------------------------------------------------------------
def test_mldr_official_files_gzipped_in_their_folder(tmp_path):
    folder = tmp_path / "mldr-v1.0-en"
    write_jsonl(folder / "corpus.jsonl.gz", [{"docid": f"doc-en-{i}", "text": f"long text {i}"} for i in range(4)])
    write_jsonl(folder / "dev.jsonl.gz", [{"query_id": "q-en-dev-0", "query": "which?", "negative_passages": [],
                                           "positive_passages": [{"docid": "doc-en-0", "text": "long text 0"}]}])
    write_jsonl(folder / "test.jsonl.gz", [{"query_id": f"q-en-test-{i}", "query": f"what {i}?",
                                            "negative_passages": [],
                                            "positive_passages": [{"docid": f"doc-en-{i + 1}", "text": "x"}]}
                                           for i in range(2)])
    data = load_task("mldr-en", local_dir=tmp_path)  # the repo root: mldr-v1.0-en/ is found
    assert data.qrels["test"] == {"q-en-test-0": {"doc-en-1": 1}, "q-en-test-1": {"doc-en-2": 1}}
    assert data.qrels["validation"] == {"q-en-dev-0": {"doc-en-0": 1}}  # dev: in the judged pool, as in the paper
    assert [d["_id"] for d in data.corpus] == [f"doc-en-{i}" for i in range(4)]
    (folder / "test.jsonl.gz").unlink()
    with pytest.raises(ConfigError, match=r"no MLDR test file .* tried test.jsonl, test.jsonl.gz, test.parquet"):
        load_task("mldr-en", local_dir=folder)


# -- GLUE ----------------------------------------------------------------------------------------------
MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
MNLI_LABELS = ["neutral", "entailment", "contradiction"]


def mnli_row(i: int, labels: list[str]) -> list:
    premise, hypothesis = f"The \"new\" rights are nice enough {i}", f"Everyone really likes the newest benefits {i}"
    return [i, 31193 + i, f"{31193 + i}n", "government", f"( ( The ( new rights ) ) {i} )", "( Everyone likes )",
            "(ROOT (S (NP (DT The) (JJ new) (NNS rights))))", "(ROOT (S (NP (NN Everyone))))", premise, hypothesis,
            *labels]


def glue_mnli(folder: Path) -> Path:
    write_tsv(folder / "train.tsv", MNLI_HEAD + ["label1", "gold_label"],
              [mnli_row(i, [MNLI_LABELS[i % 3]] * 2) for i in range(40)])
    for name, first in (("dev_matched.tsv", "contradiction"), ("dev_mismatched.tsv", "neutral")):
        write_tsv(folder / name, MNLI_HEAD + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
                  [mnli_row(0, [first, first, "neutral", first, "entailment", first]),
                   mnli_row(1, ["entailment"] * 6)])
    for name in ("test_matched.tsv", "test_mismatched.tsv"):  # unlabelled
        write_tsv(folder / name, MNLI_HEAD, [mnli_row(0, [])])
    return folder


def test_glue_mnli_tsv_files_map_to_the_hub_schema(tmp_path):
    glue_mnli(tmp_path / "MNLI")
    data = load_task("mnli", local_dir=tmp_path)  # GLUE's zip unpacks to MNLI/
    assert [r["label"] for r in data.splits["test"]] == [2, 0]  # entailment 0, neutral 1, contradiction 2
    first = data.splits["test"][0]
    assert first == {"premise": "The \"new\" rights are nice enough 0",
                     "hypothesis": "Everyone really likes the newest benefits 0", "label": 2, "idx": 0}
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 40
    assert sorted({r["label"] for r in data.splits["train"]}) == [0, 1, 2]
    assert [r["label"] for r in load_task("mnli-mismatched", local_dir=tmp_path).splits["test"]] == [1, 0]


def test_glue_rows_with_stray_fields_or_bad_labels_name_the_line(tmp_path):
    folder = glue_mnli(tmp_path)
    lines = (folder / "dev_matched.tsv").read_text().splitlines()
    (folder / "dev_matched.tsv").write_text("\n".join([*lines, lines[1] + "\tstray"]) + "\n")
    with pytest.raises(ConfigError, match=r"dev_matched.tsv:4: 17 tab-separated fields, the header has 16"):
        load_task("mnli", local_dir=folder)
    (folder / "dev_matched.tsv").write_text("\n".join([*lines, lines[1] + "\t\t"]) + "\n")  # empty trailing fields
    assert len(load_task("mnli", local_dir=folder).splits["test"]) == 3
    (folder / "dev_matched.tsv").write_text("\n".join([*lines, lines[1].replace("\tcontradiction", "\t-")]) + "\n")
    with pytest.raises(ConfigError, match=r"dev_matched.tsv:4: label '-' is not an integer class id nor one of "
                                          r"\['entailment', 'neutral', 'contradiction'\]"):
        load_task("mnli", local_dir=folder)


QQP_HEAD = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]


def test_glue_qqp_tsv_is_read_without_quoting(tmp_path):
    write_tsv(tmp_path / "train.tsv", QQP_HEAD, [[i, 2 * i, 2 * i + 1, f"\"How\" do I {i}?", f"Why {i}?", i % 2]
                                                 for i in range(40)])
    write_tsv(tmp_path / "dev.tsv", QQP_HEAD, [[201359, 303345, 303346, "Why are \"people\" obsessed?",
                                                 "How can I \"stop\"?", 0]])
    write_tsv(tmp_path / "test.tsv", ["id", "question1", "question2"], [[0, "a?", "b?"]])
    data = load_task("qqp", local_dir=tmp_path)
    assert data.splits["test"] == [{"question1": "Why are \"people\" obsessed?", "question2": "How can I \"stop\"?",
                                    "label": 0, "idx": 0}]
    # GLUE-baselines#5: a question broken over two lines in QQP's train.tsv
    (tmp_path / "dev.tsv").write_text("\t".join(QQP_HEAD) + "\n1\t2\t3\tWas Muhammad real?\n\tWhat evidence?\t0\n")
    with pytest.raises(ConfigError, match=r"dev.tsv:2: 4 tab-separated fields, the header has 6"):
        load_task("qqp", local_dir=tmp_path)


def test_glue_sst2_folder_uses_dev_never_the_unlabelled_test(tmp_path):
    write_tsv(tmp_path / "train.tsv", ["sentence", "label"], [[f"a fine film {i} ", i % 2] for i in range(40)])
    write_tsv(tmp_path / "dev.tsv", ["sentence", "label"], [["it 's a charming journey . ", 1], ["dull . ", 0]])
    write_tsv(tmp_path / "test.tsv", ["index", "sentence"], [[0, "uneasy mishmash of styles and genres ."]])
    data = load_task("sst2", local_dir=tmp_path)
    assert data.splits["test"] == [{"sentence": "it 's a charming journey . ", "label": 1, "idx": 0},
                                   {"sentence": "dull . ", "label": 0, "idx": 1}]
    (tmp_path / "dev.tsv").unlink()
    with pytest.raises(ConfigError, match=r"no test split for task 'sst2' \(our test is the official validation/dev "
                                          r"split; the official test files are unlabelled.*tried validation.jsonl.*"
                                          r"dev.tsv, SST-2/validation.jsonl"):
        load_task("sst2", local_dir=tmp_path)


def test_labels_that_are_not_integers_are_errors(tmp_path):
    write_tsv(tmp_path / "train.tsv", ["sentence", "label"], [["good ", 1]] * 19 + [["odd ", "1.7"]])
    write_tsv(tmp_path / "dev.tsv", ["sentence", "label"], [["dull . ", 0]])
    with pytest.raises(ConfigError, match=r"train.tsv:21: label '1.7' is not an integer class id"):
        load_task("sst2", local_dir=tmp_path)
    (tmp_path / "train.tsv").unlink()
    write_jsonl(tmp_path / "train.jsonl", [{"sentence": "x", "label": 1, "idx": i} for i in range(19)]
                + [{"sentence": "x", "label": 1.7, "idx": 19}])
    with pytest.raises(ConfigError, match=r"train.jsonl: row 20: label 1.7 is not an integer class id"):
        load_task("sst2", local_dir=tmp_path)


def test_gzipped_jsonl_and_hub_parquet_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"sentence": f"s{i} ", "label": i % 2, "idx": i} for i in range(40)]
    write_jsonl(tmp_path / "a" / "train.jsonl.gz", rows)
    write_jsonl(tmp_path / "a" / "validation.jsonl.gz", rows[:3])
    assert len(load_task("sst2", local_dir=tmp_path / "a").splits["test"]) == 3
    (tmp_path / "b").mkdir()
    for part, chunk in enumerate((rows[:25], rows[25:])):
        pq.write_table(pa.Table.from_pylist(chunk), tmp_path / "b" / f"train-{part:05d}-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "b" / "validation-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{**r, "label": -1} for r in rows[:2]]),
                   tmp_path / "b" / "test-00000-of-00001.parquet")  # the hub's unlabelled test: never read
    data = load_task("sst2", local_dir=tmp_path / "b")
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 40 and len(data.splits["test"]) == 2


@needs_shared
def test_genuine_glue_sst2_folder_with_dev_tsv(tmp_path):
    sst2 = tmp_path / "SST-2"
    sst2.mkdir()
    shutil.copy(SHARED / "sst2" / "validation.tsv", sst2 / "dev.tsv")  # GLUE's name for it
    lines = (SHARED / "sst2" / "train_part.tsv").read_text().splitlines()
    lines += (SHARED / "sst2" / "train_rest.tsv").read_text().splitlines()[1:]
    (sst2 / "train.tsv").write_text("\n".join(lines) + "\n")
    data = load_task("sst2", local_dir=tmp_path)
    assert len(data.splits["test"]) == 872 and sum(r["label"] for r in data.splits["test"]) == 444
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 67_349
    assert data.splits["test"][0]["sentence"] == "it 's a charming and often affecting journey . "


@needs_shared
def test_genuine_conll2003_folder_with_valid_txt(tmp_path):
    conll = tmp_path / "conll"
    conll.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):  # the official names, valid.txt = validation
        shutil.copy(SHARED / "conll2003" / name, conll / name)
    data = load_task("conll2003", local_dir=conll)
    assert [len(data.splits[s]) for s in ("train", "validation", "test")] == [14_041, 3_250, 3_453]


@needs_shared
def test_genuine_uner_dev_iob2_in_its_official_name(tmp_path):
    uner = tmp_path / "uner"
    uner.mkdir()
    shutil.copy(SHARED / "uner_en_ewt" / "en_ewt-ud-dev.iob2", uner / "en_ewt-ud-dev.iob2")
    for split in ("train", "test"):  # not in ../shared: small files in the same format
        (uner / f"en_ewt-ud-{split}.iob2").write_text(
            f"# sent_id = {split}-0001\n# text = Ana went home\n"
            "1\tAna\tB-PER\t-\t-\n2\twent\tO\t-\t-\n3\thome\tO\t-\t-\n\n")
    data = load_task("uner-en", local_dir=uner)
    assert len(data.splits["validation"]) == 2_001 and data.splits["test"][0]["ner_tags"] == [1, 0, 0]


# -- OntoNotes -------------------------------------------------------------------------------------
def test_ontonotes_tner_files(tmp_path):
    sentence = {"tokens": ["Phil", "Rosen", "visited", "Boston", "."], "tags": [4, 5, 0, 7, 0]}
    for name in ("train00.json", "train01.json", "valid.json", "test.json"):  # tner: JSON lines, train in parts
        write_jsonl(tmp_path / "tner" / "dataset" / name, [sentence])
    data = load_task("ontonotes5", local_dir=tmp_path / "tner")
    assert len(data.splits["train"]) == 2 and data.splits["test"][0]["ner_tags"] == [4, 5, 0, 7, 0]


def test_ontonotes_jsonl_with_ner_tags_or_neither(tmp_path):
    sentence = {"tokens": ["Phil", "Rosen", "visited", "Boston", "."], "tags": [4, 5, 0, 7, 0]}
    renamed = {"tokens": sentence["tokens"], "ner_tags": sentence["tags"]}
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / "hub" / f"{split}.jsonl", [renamed])
    assert load_task("ontonotes5", local_dir=tmp_path / "hub").splits["validation"][0]["ner_tags"] == [4, 5, 0, 7, 0]
    write_jsonl(tmp_path / "hub" / "train.jsonl", [{"tokens": ["a"], "labels": [0]}])
    with pytest.raises(ConfigError, match=r"train.jsonl: row 1 of task 'ontonotes5' has no ner_tags or tags field; "
                                          r"fields are \['labels', 'tokens'\]"):
        load_task("ontonotes5", local_dir=tmp_path / "hub")


# -- SQuAD ---------------------------------------------------------------------------------------------
def squad_json(path: Path, version: str, qas: list[dict]) -> None:
    document = {"version": version, "data": [{"title": "Normans", "paragraphs": [
        {"context": "The Normans were in Normandy, a region in France.", "qas": qas}]}]}
    path.write_text(json.dumps(document))


def test_squad_official_json_is_flattened(tmp_path):
    squad_json(tmp_path / "train-v1.1.json", "1.1", [
        {"answers": [{"answer_start": 20, "text": "Normandy"}], "question": f"Where {i}?", "id": f"t{i}"}
        for i in range(40)])
    squad_json(tmp_path / "dev-v1.1.json", "1.1", [
        {"answers": [{"answer_start": 20, "text": "Normandy"}, {"answer_start": 42, "text": "France"},
                     {"answer_start": 20, "text": "Normandy"}], "question": "In what country?", "id": "56ddde6b"}])
    data = load_task("squad", local_dir=tmp_path)
    assert data.splits["test"] == [{"id": "56ddde6b", "title": "Normans",
                                    "context": "The Normans were in Normandy, a region in France.",
                                    "question": "In what country?",
                                    "answers": {"text": ["Normandy", "France", "Normandy"],
                                                "answer_start": [20, 42, 20]}}]
    assert len(data.splits["train"]) == 38
    with pytest.raises(ConfigError, match=r"no train split for task 'squad_v2'; tried .*train-v2.0.json"):
        load_task("squad_v2", local_dir=tmp_path)


def test_squad_v2_unanswerable_questions_have_empty_answers(tmp_path):
    impossible = {"plausible_answers": [{"text": "France", "answer_start": 42}], "question": "Who ruled?",
                  "id": "5ad39d53", "answers": [], "is_impossible": True}
    answerable = {"question": "Where?", "id": "56ddde6b", "answers": [{"text": "Normandy", "answer_start": 20}],
                  "is_impossible": False}
    squad_json(tmp_path / "train-v2.0.json", "v2.0", [{**answerable, "id": f"t{i}"} for i in range(20)])
    squad_json(tmp_path / "dev-v2.0.json", "v2.0", [answerable, impossible])
    test = load_task("squad_v2", local_dir=tmp_path).splits["test"]
    assert [r["answers"] for r in test] == [{"text": ["Normandy"], "answer_start": [20]},
                                            {"text": [], "answer_start": []}]
    (tmp_path / "dev-v2.0.json").write_text(json.dumps({"version": "v2.0", "data": [{"title": "x", "paragraphs": [
        {"context": "c", "qas": [{"id": "a", "question": "q"}]}]}]}))
    with pytest.raises(ConfigError, match=r"dev-v2.0.json: not SQuAD's layout near its first question"):
        load_task("squad_v2", local_dir=tmp_path)


# -- ReCoRD ----------------------------------------------------------------------------------------
def test_record_superglue_jsonl(tmp_path):
    text = "Obama met Merkel in Berlin.\n@highlight\nObama and Merkel talk"
    row = {"source": "Daily mail", "passage": {"text": text, "entities": [
        {"start": 0, "end": 4}, {"start": 10, "end": 15}, {"start": 20, "end": 25}, {"start": 39, "end": 43}]}}
    def passage(i):
        return {**row, "idx": i, "qas": [{"query": "@placeholder met Merkel", "idx": 0,
                                          "answers": [{"start": 0, "end": 4, "text": "Obama"},
                                                      {"start": 39, "end": 43, "text": "Obama"}]}]}
    write_jsonl(tmp_path / "ReCoRD" / "train.jsonl", [passage(i) for i in range(20)])
    write_jsonl(tmp_path / "ReCoRD" / "val.jsonl", [passage(100)])
    write_jsonl(tmp_path / "ReCoRD" / "test.jsonl", [{**passage(200), "qas": [{"query": "q", "idx": 0}]}])
    data = load_task("record", local_dir=tmp_path)
    assert data.splits["test"] == [{"id": "100-0", "title": "", "context": text, "question": "@placeholder met Merkel",
                                    "answers": {"text": ["Obama"], "answer_start": [0]}}]
    assert len(data.splits["train"]) == 19


# -- the documentation ------------------------------------------------------------------------------
def test_the_module_doc_names_every_file_read():
    names = {pattern for spec in REGISTRY.values() for files in spec.files.values() for pattern, _ in files}
    names |= {n for files in registry.BEIR_QRELS.values() for n in files} | {p for p, _ in registry.BEIR_CORPUS}
    hub = {p for split in ("train", "validation", "test", "validation_matched", "validation_mismatched")
           for p, _ in registry.HUB(split)}
    undocumented = sorted(n for n in names - hub if f"``{n}``" not in tasks.__doc__ and n not in tasks.__doc__)
    assert not undocumented
    for spec in REGISTRY.values():
        assert all(f"``{d}/``" in tasks.__doc__ for d in spec.subdirs)
